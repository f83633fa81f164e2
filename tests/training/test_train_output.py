"""What a person sees of ``xcli train``, and what a failed save leaves.

A save that fails (a full disk, made here by making the save raise) leaves an existing output
untouched and no half-written checkpoint: the last complete save is kept as ``DIR.partial``;
a state save that fails leaves the previous state whole. Progress: plain log lines with the
time left when stderr is not a terminal, and a bar showing step, epoch, loss, lr and ETA on one;
one JSON summary on stdout.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from test_cli_console import terminal
from test_cli_train import run, write_jsonl
from test_training import SENTIMENT, build

from xcli.console import console
from xcli_models.training import StateDir, output

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("base") / "xlnet", "xlnet", "XLNetModel", seed=5)[1]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", SENTIMENT)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_save_leaves_the_previous_output_untouched(tmp_path: Path, base: Path, sentiment: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    common = ("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "--max-steps", "2", "-o", str(out))
    assert run(*common).exit_code == 0
    before = _files(out)

    monkeypatch.setattr(output, "copy_tokenizer_files", _disk_full)  # after the weights were written
    result = run(*common, "--force", "--lr", "1e-2")
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert _files(out) == before
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out.partial").exists()


def test_a_later_failed_save_keeps_the_last_complete_one(tmp_path: Path, base: Path, sentiment: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = output.copy_tokenizer_files

    def second_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            _disk_full()
        return real(*args, **kwargs)

    monkeypatch.setattr(output, "copy_tokenizer_files", second_fails)
    out = tmp_path / "out"
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "--dev", str(sentiment),
                 "--eval-every", "1", "--max-steps", "4", "--lr", "1e-2", "--metric-for-best", "loss", "-o", str(out))
    if len(calls) < 2:  # the dev loss never fell after the first save: nothing failed
        pytest.skip("only one best checkpoint was saved")
    assert result.exit_code == 1
    kept = tmp_path / "out.partial"
    assert "is in" in result.stderr and kept.is_dir() and {"config.json", "model.safetensors"} <= set(_files(kept))
    assert _leftovers(tmp_path) == [] and not out.exists()


def test_a_failed_state_save_leaves_the_previous_state(tmp_path: Path, base: Path, sentiment: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    real, calls = torch.save, []

    def second_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            _disk_full()
        return real(*args, **kwargs)

    monkeypatch.setattr(output.torch, "save", second_fails)
    out = tmp_path / "out"
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "--save-every", "1",
                 "--max-steps", "3", "-o", str(out))
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    snapshot, _ = StateDir(tmp_path / "out.xcli-state").read()
    assert snapshot.meta["progress"]["step"] == 1
    assert _leftovers(tmp_path) == [] and not out.exists()


def test_plain_log_lines_and_one_summary(tmp_path: Path, base: Path, sentiment: Path) -> None:
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "--max-steps", "4",
                 "--log-every", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and json.loads(result.stdout)["steps"] == 4
    lines = [line for line in result.stderr.splitlines() if line.startswith("xcli: step ")]
    assert len(lines) == 2 and "step 2/4 (epoch 1): loss " in lines[0] and ", lr " in lines[0]
    assert "ETA " in lines[0] and "ETA" not in lines[1]  # the last step has nothing left


def test_a_terminal_gets_a_bar_with_step_epoch_loss_lr_and_eta(tmp_path: Path, base: Path, sentiment: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from xcli.commands import train

    stderr = terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    console.reset()
    from xcli_models.training import Event, TrainArgs

    reporter = train._Reporter(console, TrainArgs())
    with console.progress(total=3, unit="steps", detail=True) as bar:
        reporter.bar = bar
        for step in (1, 2, 3):
            reporter(Event("step", step, 3, 1, loss=0.5 / step, lr=1e-4, eta=125.0 * (3 - step)))
    text = stderr.getvalue()
    assert "steps" in text and "3/3" in text and "epoch 1" in text and "loss 0.1667" in text
    assert "lr 0.0001" in text and "ETA 0:00" in text
    assert train._duration(3725) == "1:02:05" and train._duration(None) == "?"


def test_mixed_precision_where_the_machine_has_it(tmp_path: Path, base: Path, sentiment: Path) -> None:
    from xcli_models.training import supports_precision

    common = ("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "--max-steps", "2")
    result = run(*common, "--mixed-precision", "fp16", "-o", str(tmp_path / "fp16"))
    assert result.exit_code == 2 and "float16 mixed precision needs a CUDA device" in result.stderr
    result = run(*common, "--mixed-precision", "bf16", "--dtype", "float16", "-o", str(tmp_path / "both"))
    assert result.exit_code == 2 and "ask for different precisions" in result.stderr
    result = run(*common, "--mixed-precision", "bf16", "-o", str(tmp_path / "bf16"))
    if supports_precision("bfloat16", "cpu") is not None:
        assert result.exit_code == 2 and "no bfloat16 instructions" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config.get("torch_dtype", config.get("dtype")) in (None, "float32")
