"""Batch invariance: a record's output line is the same bytes whichever records share its batch.

The task commands (classify, fill-mask, qa, score) batch only inputs of one length, and their
model calls round every row of a matrix product as in a product of any other size
(``xcli_models.kernels.inference(batch_invariant=True)``). So ``--batch-size``, the way a slow
pipe splits the rounds, ``--shard`` and a server's batching across clients never change a digit.

Every head of every family that these commands serve runs over records of mixed lengths (several
of one token length, so that they share batches) once with ``--batch-size 1`` and once with
batches of 3 and of 16; the outputs must be byte-identical. Checkpoints are xcli's own (no oracle).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import shared_path

from xcli.app import app
from xcli_models.registry import capabilities, heads_for

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

TEXTS = [
    "The cat sat on the mat.", "The dog sat on the rug.", "A bird sat on the rail.",
    "It rained.", "It snowed.", "Paris is the capital of France and a city of light.",
    "Rome is the capital of Italy and a city of seven hills.", "Yes", "No",
    "A gripping, funny and altogether beautifully shot film about two brothers.",
]


def _records(command: str, class_name: str) -> list[dict[str, object]]:
    if command == "fill-mask":
        return [{"text": t.replace(" sat ", " <mask> ", 1) if " sat " in t else t + " <mask>"} for t in TEXTS]
    if command == "qa":
        return [{"question": "Where did it sit?", "context": t} for t in TEXTS]
    if command == "classify" and capabilities(class_name).classify == "choice":
        return [{"text": t, "choices": ["on the mat", "in the sky", TEXTS[(i + 3) % len(TEXTS)]]}
                for i, t in enumerate(TEXTS)]
    if command == "classify" and capabilities(class_name).classify == "sequence":
        return [{"text": t, **({"text_pair": TEXTS[-1 - i]} if i % 3 == 0 else {})} for i, t in enumerate(TEXTS)]
    if command == "score" and capabilities(class_name).generate == "seq2seq":
        return [{"text": t, "target": TEXTS[(i + 1) % len(TEXTS)]} for i, t in enumerate(TEXTS)]
    return [{"text": t} for t in TEXTS]


CASES = [
    (command, name)
    for command in ("classify", "fill-mask", "qa", "score")
    for name in heads_for(command)
]


@pytest.mark.parametrize(("command", "class_name"), CASES, ids=[f"{c}-{n}" for c, n in CASES])
def test_output_does_not_depend_on_the_batch(tmp_path: Path, command: str, class_name: str) -> None:
    from task_fixtures import build_native

    path = build_native(tmp_path / "model", class_name, **({"num_labels": 3} if command == "classify" else {}))
    extra = ["--pll"] if command == "score" and capabilities(class_name).fill_mask else []
    source = "".join(json.dumps(r) + "\n" for r in _records(command, class_name))
    outputs = {}
    for size in ("1", "3", "16"):
        result = runner.invoke(app, [command, "-m", str(path), "--device", "cpu", "-b", size, *extra], input=source)
        assert result.exit_code == 0, result.stderr
        outputs[size] = result.stdout
    assert len(outputs["1"].splitlines()) == len(TEXTS)
    assert outputs["3"] == outputs["1"]
    assert outputs["16"] == outputs["1"]


@pytest.mark.parametrize("command", ["classify", "fill-mask", "score"])
def test_builtin_models_give_the_same_bytes_in_any_batch(command: str) -> None:
    dev = shared_path("datasets", "sst2", "dev.tsv")
    lines = dev.read_text(encoding="utf-8").splitlines()[1:121]
    texts = [line.split("\t")[0] for line in lines]
    if command == "fill-mask":
        texts = [" ".join(["<mask>" if i == 1 else w for i, w in enumerate(t.split())]) for t in texts]
    source = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    outputs = [runner.invoke(app, [command, "-q", "-b", size], input=source) for size in ("1", "7", "64")]
    assert all(r.exit_code == 0 for r in outputs), [r.stderr for r in outputs]
    assert len(outputs[0].stdout.splitlines()) == len(texts)
    assert outputs[1].stdout == outputs[0].stdout
    assert outputs[2].stdout == outputs[0].stdout
