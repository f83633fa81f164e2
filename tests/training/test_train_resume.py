"""Resumable training: a run stopped at any step and resumed ends with the same weights, bit for bit.

In process: a trainer asked to stop hands over a snapshot; a fresh trainer restored from it
finishes with the uninterrupted run's weights, losses and best step. Through the command line:
a real ``xcli train`` killed with SIGKILL after its first saved state, or stopped with Ctrl-C
(exit 130, state saved, no output yet), continues with ``--resume`` to the uninterrupted run's
checkpoint and ``--metrics`` lines. One torch thread everywhere, dropout on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from test_cli_train import run, write_jsonl
from test_training import SENTIMENT, build

from xcli_models.training import StateDir, TrainArgs, Trainer, load_for_training, state_path, task_for

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(path: Path, events: list[Any] | None = None) -> tuple[Trainer, list[Any]]:
    loaded = load_for_training(path, labels=["neg", "pos"], device="cpu", seed=1)
    task = task_for(loaded.model, loaded.tokenizer)
    examples = [task.encode(r) for r in SENTIMENT]
    args = TrainArgs(epochs=3, batch_size=3, grad_accum=2, lr=1e-3, eval_every=2, save="best", warmup_ratio=0.2)
    return Trainer(loaded.model, task, args, callback=(events.append if events is not None else None)), examples


def test_a_restored_trainer_continues_bit_for_bit(tmp_path: Path) -> None:
    _, path = build(tmp_path / "base", "xlnet", "XLNetModel", seed=2)  # dropout on
    torch.manual_seed(0)
    whole, examples = _trainer(path)
    saved_whole: list[int] = []
    result = whole.train(examples, examples[:6], save=saved_whole.append)

    for stop_at in (1, 4, 6):  # inside the first epoch, inside the second, at an epoch's end
        torch.manual_seed(0)
        events: list[Any] = []
        first, _ = _trainer(path, events)
        snapshots: list[Any] = []

        def stop(event: Any, first: Trainer = first) -> None:
            if event.kind == "step" and event.step == stop_at:
                first.request_stop()

        first.callback = lambda event: (events.append(event), stop(event))
        stopped = first.train(examples, examples[:6], save=lambda step: None, save_state=snapshots.append)
        assert stopped.interrupted and stopped.steps == stop_at and len(snapshots) == 1

        state = StateDir(tmp_path / f"state-{stop_at}")
        state.write(snapshots[0])
        snapshot, best = state.read()
        assert best is None
        torch.manual_seed(123)  # the restored state decides, not whatever ran before
        second, _ = _trainer(path)
        second.restore(snapshot)
        saved: list[int] = []
        resumed = second.train(examples, examples[:6], save=saved.append)
        assert resumed.steps == result.steps and resumed.best_step == result.best_step
        assert resumed.train_loss == result.train_loss and resumed.dev_metrics == result.dev_metrics
        for (name, a), b in zip(whole.model.state_dict().items(), second.model.state_dict().values(), strict=True):
            assert torch.equal(a, b), (stop_at, name)


def test_a_restored_trainer_refuses_other_options_or_data(tmp_path: Path) -> None:
    _, path = build(tmp_path / "base", "xlnet", "XLNetModel", seed=2)
    first, examples = _trainer(path)
    first.request_stop()
    snapshots: list[Any] = []
    first.train(examples, examples[:6], save=lambda step: None, save_state=snapshots.append)
    other, _ = _trainer(path)
    other.args.lr = 2e-3
    other.restore(snapshots[0])
    with pytest.raises(ValueError, match=r"other options \(lr\)"):
        other.train(examples, examples[:6])
    again, _ = _trainer(path)
    again.restore(snapshots[0])
    with pytest.raises(ValueError, match="other records"):
        again.train(examples[:-1], examples[:6])


# ---------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A base checkpoint, data, the command line, and the uninterrupted run's output."""
    root = tmp_path_factory.mktemp("resume")
    _, base = build(root / "base", "xlnet", "XLNetModel", seed=6)  # dropout on
    data = write_jsonl(root / "train.jsonl", SENTIMENT)
    dev = write_jsonl(root / "dev.jsonl", SENTIMENT[::3])

    def args(out: Path) -> list[str]:
        return ["-m", str(base), "--labels", "neg,pos", "--train", str(data), "--dev", str(dev), "-o", str(out),
                "--epochs", "12", "-b", "2", "--lr", "1e-3", "--eval-every", "5", "--save-every", "2",
                "--metrics", str(out) + ".metrics.jsonl", "--seed", "5"]

    whole = root / "whole"
    result = run(*args(whole))
    assert result.exit_code == 0, result.stderr
    assert not state_path(whole).exists()  # removed once the output is published
    return {"root": root, "args": args, "whole": whole, "summary": json.loads(result.stdout)}


def _start(arguments: list[str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "xcli", "train", *arguments, "--device", "cpu", "--threads", "1"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_state(process: subprocess.Popen[str], state: Path) -> None:
    deadline = time.monotonic() + 120
    while not (state / "state.json").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no state was saved"
        time.sleep(0.005)


def _assert_same_result(setup: dict[str, Any], out: Path, resumed: Any) -> None:
    assert resumed.exit_code == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed_at"] >= 2 and summary["steps"] == setup["summary"]["steps"] == 96
    assert summary["best_step"] == setup["summary"]["best_step"]
    ours, theirs = load_file(str(out / "model.safetensors")), load_file(str(setup["whole"] / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    lines = Path(str(out) + ".metrics.jsonl").read_text().splitlines()
    assert lines == Path(str(setup["whole"]) + ".metrics.jsonl").read_text().splitlines()
    assert not state_path(out).exists()
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith((".", out.name))) == [
        out.name, out.name + ".metrics.jsonl"
    ]


def _signalled(setup: dict[str, Any], name: str, sig: signal.Signals) -> tuple[Path, Any]:
    """A training run into ``root/name`` sent ``sig`` once it has saved a state: its output and process."""
    out = setup["root"] / name
    process = _start(setup["args"](out))
    _wait_for_state(process, state_path(out))
    process.send_signal(sig)
    return out, process


@pytest.mark.slow
def test_killed_with_sigkill_and_resumed_equals_uninterrupted(setup: dict[str, Any]) -> None:
    out, process = _signalled(setup, "killed", signal.SIGKILL)
    process.wait()
    assert not out.exists() and state_path(out).exists()
    assert any(p.name.startswith(f".{out.name}.xcli-") for p in out.parent.iterdir())  # the killed run's work

    resumed = run(*setup["args"](out), "--resume")
    assert "xcli: warning: removed" in resumed.stderr and "left by a run that was killed" in resumed.stderr
    _assert_same_result(setup, out, resumed)


@pytest.mark.slow
def test_ctrl_c_saves_the_state_exits_130_and_resume_finishes(setup: dict[str, Any]) -> None:
    out, process = _signalled(setup, "interrupted", signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "--resume continues it" in stderr
    assert not out.exists() and (state_path(out) / "state.json").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.xcli-")]

    refused = run(*setup["args"](out))
    assert refused.exit_code == 2 and "pass --resume to continue it" in refused.stderr
    resumed = run(*setup["args"](out), "--resume")
    _assert_same_result(setup, out, resumed)


def test_resume_without_a_state_is_refused_and_a_finished_run_leaves_none(setup: dict[str, Any]) -> None:
    out = setup["root"] / "fresh"
    result = run(*setup["args"](out), "--resume")
    assert result.exit_code == 2 and "--resume: no saved state" in result.stderr
    result = run(*setup["args"](out), "--max-steps", "2", "--save-every", "1")
    assert result.exit_code == 0, result.stderr
    assert not state_path(out).exists()
