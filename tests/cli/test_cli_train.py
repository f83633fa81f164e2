"""``xcli train`` in-process on tiny random checkpoints written by xcli with real tokenizers.

A classifier grown from a base checkpoint learns a separable set and its output loads in
``xcli classify`` (and in the oracle with the same logits, where it is installed); the same seed
gives the same weights;
bad records are counted, named by line and end in exit 4 (or stop the run); an existing output is
refused; usage errors; a causal LM from plain text on stdin and a seq2seq model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from compare import assert_close, reference
from conftest import shared_path
from test_training import SENTIMENT, TEXTS, build

from xcli.app import app
from xcli_models import AutoModel, AutoTokenizer

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
COMMON = ("--device", "cpu", "--threads", "1")


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["train", *args, *COMMON], input=input)


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare XLNetModel: no classifier yet."""
    return build(tmp_path_factory.mktemp("base") / "xlnet", "xlnet", "XLNetModel", seed=11)[1]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", SENTIMENT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base: Path, sentiment: Path) -> tuple[Any, Path]:
    """A sentiment classifier grown from ``base`` by ``xcli train``: (the run's result, its output)."""
    out = tmp_path_factory.mktemp("trained") / "sst"
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "--dev", str(sentiment),
                 "-o", str(out), "--lr", "1e-2", "--epochs", "10", "-b", "4", "--log-every", "4")
    return result, out


TRAINED_TEXTS = ["a great film", "an awful film", "lovely", "boring"]


def test_grown_classifier_learns_and_loads_in_classify(trained: tuple[Any, Path]) -> None:
    result, out = trained
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["output"] == str(out) and summary["model_class"] == "XLNetForSequenceClassification"
    assert summary["labels"] == ["neg", "pos"] and summary["skipped"] == 0
    assert summary["steps"] == 40 and summary["saved"] == "best" and summary["saved_step"] == summary["best_step"]
    assert summary["dev_accuracy"] == 1.0 and summary["train_loss"] < 0.3
    logged = [float(line.split("loss ")[1].split(",")[0])
              for line in result.stderr.splitlines() if "/40 (epoch" in line]
    assert len(logged) == 10 and logged[-1] < logged[0] / 2
    assert "new sequence-classification head" in result.stderr and "dev loss" in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["sst"]  # no temporary directory left

    ours = AutoModel.from_pretrained(out)
    assert ours.config.id2label == {0: "neg", 1: "pos"}
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        predicted = [int(ours(input_ids=torch.tensor([tokenizer.encode(t)])).logits.argmax(-1)) for t in TRAINED_TEXTS]
    classified = runner.invoke(app, ["classify", "-m", str(out), *COMMON, *TRAINED_TEXTS])
    assert classified.exit_code == 0, classified.stderr
    labels = [json.loads(line)["label"] for line in classified.stdout.splitlines()]
    assert labels == [ours.config.id2label[i] for i in predicted]
    assert labels == ["pos", "neg", "pos", "neg"]


def test_the_trained_classifier_loads_in_the_oracle(trained: tuple[Any, Path]) -> None:
    transformers = reference()
    result, out = trained
    assert result.exit_code == 0, result.stderr
    oracle = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    batch = tokenizer(TRAINED_TEXTS, padding=True, return_tensors="pt")
    ours = AutoModel.from_pretrained(out)
    with torch.no_grad():
        theirs = oracle(**batch).logits
        assert_close(ours(**batch).logits, theirs)
    assert oracle.config.id2label == {0: "neg", 1: "pos"}
    assert [oracle.config.id2label[int(i)] for i in theirs.argmax(-1)] == ["pos", "neg", "pos", "neg"]


def test_the_same_seed_gives_the_same_checkpoint(tmp_path: Path, base: Path, sentiment: Path) -> None:
    def weights(name: str, seed: str) -> dict[str, torch.Tensor]:
        result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(tmp_path / name),
                     "--epochs", "1", "-b", "4", "--lr", "1e-3", "--seed", seed, "-q")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""  # --quiet
        return load_file(str(tmp_path / name / "model.safetensors"))

    one, again, other = weights("one", "7"), weights("again", "7"), weights("other", "8")
    assert all(torch.equal(one[k], again[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)


def test_bad_records_are_counted_named_and_exit_4(tmp_path: Path, base: Path) -> None:
    records: list[Any] = [
        *SENTIMENT[:4],
        "{not json",                                  # line 5
        {"text": "fine"},                             # line 6: no label
        {"text": "fine", "label": "neutral"},         # line 7: unknown label
        {"text": ["a", "list"], "label": "pos"},      # line 8: wrong type
        *SENTIMENT[-4:],
    ]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    out = tmp_path / "out"
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(data), "-o", str(out), "--max-steps", "2")
    assert result.exit_code == 4, result.stderr
    for line, kind in ((5, "invalid_json"), (6, "missing_field"), (7, "unknown_label"), (8, "wrong_type")):
        assert f"{data} line {line}: {kind}" in result.stderr
    assert "4 record(s) were skipped" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 4 and summary["train_records"] == 8 and summary["steps"] == 2
    assert (out / "model.safetensors").exists()  # trained on the good records

    stopped = tmp_path / "stopped"
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(data), "-o", str(stopped),
                 "--on-error", "stop")
    assert result.exit_code == 1
    assert f"stopped at {data} line 5" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "train.jsonl"]


def test_an_existing_output_is_refused_unless_forced(tmp_path: Path, base: Path, sentiment: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(out), "--max-steps", "1")
    result = run(*args)
    assert result.exit_code == 2
    assert "exists" in result.stderr and "--force" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    result = run(*args, "--force")
    assert result.exit_code == 0, result.stderr
    assert not (out / "notes.txt").exists() and (out / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_usage_errors(tmp_path: Path, base: Path, sentiment: Path) -> None:
    out = str(tmp_path / "out")
    cases = [
        (("-m", str(base), "--train", str(sentiment), "-o", out), 2, "pass --labels"),
        (("-m", str(base), "--labels", "neg,pos", "--train", str(tmp_path / "nope.jsonl"), "-o", out), 2,
         "no such file"),
        (("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", out, "--save", "best"), 2,
         "--save best needs --dev"),
        (("-m", str(base), "--task", "seq2seq", "--train", str(sentiment), "-o", out), 2, "has no seq2seq head"),
        (("-m", str(base), "--labels", "bad,good", "--train", str(sentiment), "-o", out), 1,
         "the model's labels are bad, good; pass --labels"),
        (("-m", str(tmp_path / "missing"), "--train", str(sentiment), "-o", out), 2, "not found"),
    ]
    for args, code, message in cases:
        result = run(*args)
        assert result.exit_code == code, (args, result.stderr)
        assert message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


GENERATIVE = [
    ("xglm", "XGLMForCausalLM", "AutoModelForCausalLM", lambda text: text),  # plain text lines
    ("mvp", "MvpForConditionalGeneration", "AutoModelForSeq2SeqLM",
     lambda text: json.dumps({"text": text, "target": text.upper()})),
]


@pytest.fixture(scope="module", params=GENERATIVE, ids=[g[1] for g in GENERATIVE])
def trained_lm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path, str]:
    """A language model trained for 6 steps from stdin: (the run's result, the base, the output, the auto class)."""
    family, class_name, auto, line = request.param
    root = tmp_path_factory.mktemp(family)
    _, path = build(root / "ckpt", family, class_name, seed=12)
    out = root / "out"
    lines = "".join(line(t) + "\n" for t in TEXTS * 2)
    result = run("-m", str(path), "--train", "-", "-o", str(out), "--max-steps", "6", "-b", "2", "--lr", "1e-2",
                 input=lines)
    return result, path, out, auto


def test_language_models_train_from_stdin(trained_lm: tuple[Any, Path, Path, str]) -> None:
    result, path, out, _ = trained_lm
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    class_name = json.loads((path / "config.json").read_text())["architectures"][0]
    assert summary["model_class"] == class_name and summary["train_records"] == 8 and summary["steps"] == 6
    ours, before = AutoModel.from_pretrained(out), AutoModel.from_pretrained(path)
    assert type(ours).__name__ == class_name and ours.load_report.lines() == []
    moved = [name for name, p in ours.state_dict().items() if not torch.equal(p, before.state_dict()[name])]
    assert moved  # the six steps changed the weights
    ids = torch.tensor([[2, 15, 27, 31, 8, 2]])
    with torch.no_grad():
        assert torch.isfinite(ours(input_ids=ids, labels=ids).loss)


def test_trained_language_models_load_in_the_oracle(trained_lm: tuple[Any, Path, Path, str]) -> None:
    transformers = reference()
    result, _, out, auto = trained_lm
    assert result.exit_code == 0, result.stderr
    oracle = getattr(transformers, auto).from_pretrained(out).eval()
    ours = AutoModel.from_pretrained(out)
    ids = torch.tensor([[2, 15, 27, 31, 8, 2]])
    with torch.no_grad():
        assert_close(ours(input_ids=ids, labels=ids).logits, oracle(input_ids=ids, labels=ids).logits)


# ------------------------------------------------------------------ defects found by new users
def test_tokenizer_files_the_tokenizer_does_not_write_are_carried_over(tmp_path: Path, sentiment: Path) -> None:
    _, path = build(tmp_path / "fast", "xlnet", "XLNetModel", seed=11)
    shutil.copyfile(shared_path("tokenizers", "xlnet", "tokenizer.json"), path / "tokenizer.json")  # xcli writes none
    out = tmp_path / "out"
    result = run("-m", str(path), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(out), "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    assert (out / "tokenizer.json").read_bytes() == (path / "tokenizer.json").read_bytes()
    assert (out / "spiece.model").read_bytes() == (path / "spiece.model").read_bytes()


def test_the_oracle_s_fast_tokenizer_files_are_carried_over(tmp_path: Path, sentiment: Path) -> None:
    transformers = reference()  # writes the fast tokenizer's tokenizer.json, and reads both back
    _, path = build(tmp_path / "fast", "xlnet", "XLNetModel", seed=11)
    transformers.XLNetTokenizerFast(vocab_file=str(path / "spiece.model")).save_pretrained(path)
    assert (path / "tokenizer.json").is_file()
    out = tmp_path / "out"
    result = run("-m", str(path), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(out), "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    assert (out / "tokenizer.json").read_bytes() == (path / "tokenizer.json").read_bytes()
    assert (out / "spiece.model").read_bytes() == (path / "spiece.model").read_bytes()
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    assert theirs.is_fast and theirs("a gripping, funny film").input_ids == transformers.AutoTokenizer.from_pretrained(
        path)("a gripping, funny film").input_ids


def test_an_output_that_is_a_file_is_a_usage_error_even_with_force(tmp_path: Path, base: Path,
                                                                   sentiment: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_text("mine")
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(target), "--force")
    assert result.exit_code == 2
    assert "is a file: train writes a checkpoint directory" in result.stderr and "pass --force" not in result.stderr
    assert target.read_text() == "mine"


def test_one_step_is_one_step(tmp_path: Path, base: Path, sentiment: Path) -> None:
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(tmp_path / "o"),
                 "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    assert "on 16 records: 1 step of 8 records" in result.stderr
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(tmp_path / "p"),
                 "--max-steps", "2", "-b", "1", "--grad-accum", "3")
    assert "2 steps of 3 records (1 x 3 accumulated)" in result.stderr


def test_what_a_killed_run_left_is_removed_and_reported(tmp_path: Path, base: Path, sentiment: Path) -> None:
    out = tmp_path / "out"
    left = tmp_path / ".out.xcli-0badc0de.tmp"
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"\0" * 2048)
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(out), "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    assert f"xcli: warning: removed {left} (2.0 KiB), left by a run that was killed" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_of_two_runs_for_one_output_the_later_keeps_its_result_as_partial(
        tmp_path: Path, base: Path, sentiment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xcli_models import training

    out = tmp_path / "out"
    train = training.Trainer.train

    def meanwhile(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = train(self, *args, **kwargs)
        out.mkdir()  # another run published first
        (out / "theirs").write_text("theirs")
        return result

    monkeypatch.setattr(training.Trainer, "train", meanwhile)
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(sentiment), "-o", str(out), "--max-steps", "1")
    assert result.exit_code == 2
    assert f"--output {out} was written by another run meanwhile" in result.stderr
    assert f"this run's checkpoint is in {out}.partial" in result.stderr
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert (tmp_path / "out.partial" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.partial"]


def test_a_diverged_loss_is_written_as_null_not_nan(tmp_path) -> None:
    from types import SimpleNamespace

    from xcli.commands.train import _MetricsFile

    metrics = _MetricsFile(tmp_path / "metrics.jsonl", None)
    metrics.event(SimpleNamespace(kind="step", step=1, epoch=1, lr=1e-3, loss=float("nan")))
    metrics.flush()
    metrics.handle.close()
    line = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in line and json.loads(line)["loss"] is None
