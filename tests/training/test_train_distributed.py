"""``xcli train`` under torchrun: two gloo processes make one data-parallel job.

A 2-process run with ``--batch-size 8`` trains exactly as a 1-process run with ``--batch-size
16`` (dropout off): the same per-step losses, learning rates and dev metrics in ``--metrics``,
and the same final weights, within 1e-5. The records are grouped by length (the default) and do
not fill the last global batch, so that one process gets a short slice and the other none.
Only process 0 writes: one checkpoint, one ``--metrics`` file, one JSON summary on stdout. A
2-process run stopped with Ctrl-C resumes (with 2 processes; 1 is refused) to the uninterrupted
run's weights, bit for bit. The global batches are the same whatever the split.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from test_training import NEGATIVE, NO_DROPOUT, POSITIVE, build

ATOL = 1e-5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _train(cwd: Path, processes: int, *args: str) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1",
                     "--master-port", str(_free_port())]
    command = [*launcher, "-m", "xcli", "train", *args, "--threads", "1", "--device", "cpu"]
    return subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base XLNet without dropout, and 20 sentiment records of varied lengths."""
    root = tmp_path_factory.mktemp("ddp")
    build(root / "base", "xlnet", "XLNetModel", seed=3, **NO_DROPOUT["xlnet"])
    records = [{"text": t + " very" * (i % 5), "label": "pos"} for i, t in enumerate(POSITIVE)]
    records += [{"text": t + " quite" * (i % 4), "label": "neg"} for i, t in enumerate(NEGATIVE)]
    records += records[:4]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return root


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_two_processes_train_as_one_with_the_global_batch(job: Path) -> None:
    common = ("-m", "base", "--labels", "neg,pos", "--train", "train.jsonl", "--dev", "train.jsonl", "--epochs", "3",
              "--lr", "1e-3", "--warmup-ratio", "0.2", "--save", "last")
    one = _train(job, 1, *common, "-b", "16", "--metrics", "one.jsonl", "-o", "one")
    assert one.returncode == 0, one.stderr
    two = _train(job, 2, *common, "-b", "8", "--metrics", "two.jsonl", "-o", "two", "--save-every", "2")
    assert two.returncode == 0, two.stderr

    summaries = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["processes"] == 2 and summaries[0]["steps"] == 6
    assert "6 steps of 16 records (8 x 2 processes)" in two.stderr
    assert two.stderr.count("training XLNetForSequenceClassification") == 1  # process 1 keeps quiet

    lines_one, lines_two = _lines(job / "one.jsonl"), _lines(job / "two.jsonl")
    assert [line["step"] for line in lines_two] == list(range(1, 7))
    assert [sorted(a) for a in lines_one] == [sorted(b) for b in lines_two]
    for a, b in zip(lines_one, lines_two, strict=True):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, abs=ATOL), (a["step"], key)

    weights_one = load_file(job / "one" / "model.safetensors")
    weights_two = load_file(job / "two" / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        assert torch.allclose(tensor, weights_two[name], atol=ATOL, rtol=0), name
    assert sorted(p.name for p in job.iterdir() if p.name.startswith(("two", ".two"))) == ["two", "two.jsonl"]


def test_a_state_saved_by_two_processes_is_refused_by_one(job: Path, tmp_path: Path) -> None:
    from xcli_models.training import StateDir, TrainArgs, Trainer, World, load_for_training, task_for

    loaded = load_for_training(job / "base", labels=["neg", "pos"], device="cpu", seed=1)
    task = task_for(loaded.model, loaded.tokenizer)
    trainer = Trainer(loaded.model, task, TrainArgs(batch_size=8))
    snapshot = trainer.snapshot()
    snapshot.meta["world_size"] = 2
    state = StateDir(tmp_path / "out.xcli-state")
    state.write(snapshot)
    fresh = Trainer(load_for_training(job / "base", labels=["neg", "pos"], device="cpu", seed=1).model, task,
                    TrainArgs(batch_size=8), world=World())
    with pytest.raises(ValueError, match="ran as 2 processes, this one as 1 process: resume with 2"):
        fresh.restore(state.read()[0])


def test_global_batches_are_the_same_for_every_split_and_grouped_by_length(job: Path) -> None:
    from xcli_models.training import TrainArgs, Trainer, World, load_for_training, task_for

    loaded = load_for_training(job / "base", labels=["neg", "pos"], device="cpu", seed=1)
    task = task_for(loaded.model, loaded.tokenizer)
    texts = [" ".join(["good"] * (1 + (7 * i) % 23)) for i in range(200)]
    examples = [task.encode({"text": t, "label": "pos"}) for t in texts]
    index = {id(e): i for i, e in enumerate(examples)}

    def epoch(batch_size: int, world: World, group: bool = True) -> list[list[int]]:
        trainer = Trainer(loaded.model, task, TrainArgs(batch_size=batch_size, group_by_length=group, seed=7),
                          world=world)
        return [[index[id(e)] for e in batch] for batch in trainer.batches(examples)]

    alone = epoch(16, World())
    assert epoch(8, World(rank=1, size=2)) == alone == epoch(4, World(rank=0, size=4))
    assert sorted(i for batch in alone for i in batch) == list(range(200))  # each once
    assert epoch(16, World()) == alone  # the same seed: the same batches

    def padding(batches: list[list[int]]) -> int:
        return sum(len(b) * max(len(examples[i]) for i in b) - sum(len(examples[i]) for i in b) for b in batches)

    plain = epoch(16, World(), group=False)
    assert padding(alone) * 4 < padding(plain)
    assert [len(b) for b in alone].count(16) == 12  # 200 = 12 x 16 + 8
    lengths = [sorted(len(examples[i]) for i in b) for b in alone]
    assert lengths != sorted(lengths)  # the batches themselves come in a shuffled order


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_two_process_run_stopped_with_ctrl_c_resumes_to_the_uninterrupted_weights(job: Path) -> None:
    import signal
    import time

    common = ["-m", "base", "--labels", "neg,pos", "--train", "train.jsonl", "-b", "4", "--epochs", "40",
              "--lr", "1e-3", "--save-every", "1"]
    whole = _train(job, 2, *common, "-o", "whole", "--metrics", "whole.jsonl")
    assert whole.returncode == 0, whole.stderr

    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(_free_port()), "-m", "xcli", "train", *common, "-o", "cut",
                "--metrics", "cut.jsonl", "--threads", "1", "--device", "cpu"]
    process = subprocess.Popen(launcher, cwd=job, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (job / "cut.xcli-state" / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = _children(process.pid)
    assert len(workers) == 2
    for pid in workers:  # Ctrl-C as a terminal gives it to the whole job
        os.kill(pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and "the same command with --resume continues it" in stderr
    assert not (job / "cut").exists()
    step = json.loads((job / "cut.xcli-state" / "state.json").read_text())["progress"]["step"]
    assert 1 <= step < 200

    alone = _train(job, 1, *common, "-o", "cut", "--resume")
    assert alone.returncode == 2 and "ran as 2 processes, this one as 1 process" in alone.stderr

    resumed = _train(job, 2, *common, "-o", "cut", "--metrics", "cut.jsonl", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after step {step}" in resumed.stderr
    a, b = load_file(job / "whole" / "model.safetensors"), load_file(job / "cut" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)  # bit for bit
    assert (job / "whole.jsonl").read_text() == (job / "cut.jsonl").read_text()
