"""xcli_models.metrics against the field's reference implementations, and dev metrics in ``train``.

Entity scores equal the ``seqeval`` package's defaults (conlleval's chunk rules) on random IOB1,
IOB2 and BIOES sequences, well-formed or not; accuracy and macro-F1 equal scikit-learn's; SQuAD
exact match and F1 equal hand-computed numbers on fixed predictions. In training: the dev
metrics a token classifier reports are seqeval's on its own predictions, ``--metrics`` writes one
line per step, ``--metric-for-best`` picks the checkpoint, perplexity is exp of the dev loss, and
bad dev or training data is reported before any work.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from test_cli_train import run, write_jsonl
from test_training import SENTIMENT, TEXTS, build

from xcli_models import metrics
from xcli_models.training import TrainArgs, Trainer, load_for_training, task_for

seqeval = pytest.importorskip("seqeval.metrics")
sklearn = pytest.importorskip("sklearn.metrics")
pytestmark = pytest.mark.usefixtures("one_thread")

SCHEMES = {
    "iob1": ["O", "I-PER", "I-LOC", "B-PER", "B-LOC"],
    "iob2": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"],
    "bioes": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_entity_scores_equal_seqeval(scheme: str) -> None:
    rng = random.Random(scheme)
    tags = SCHEMES[scheme]
    for _ in range(400):
        golds = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 4))]
        predictions = [[rng.choice(tags) if rng.random() < 0.4 else t for t in s] for s in golds]
        ours = metrics.entity_scores(golds, predictions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # seqeval warns where a score is 0 by definition
            theirs = (seqeval.precision_score(golds, predictions), seqeval.recall_score(golds, predictions),
                      seqeval.f1_score(golds, predictions))
        assert (ours["precision"], ours["recall"], ours["f1"]) == pytest.approx(theirs, abs=1e-12), (golds, predictions)


def test_entities_by_hand() -> None:
    assert metrics.entities(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5)]
    assert metrics.entities(["I-PER", "I-PER", "I-LOC", "O", "I-PER"]) == [("PER", 0, 1), ("LOC", 2, 2), ("PER", 4, 4)]
    assert metrics.entities(["S-PER", "B-LOC", "E-LOC", "E-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]
    assert metrics.entities([["B-PER"], ["I-PER"]]) == [("PER", 0, 0), ("PER", 2, 2)]  # never across sentences
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    guess = [["B-PER", "I-PER", "O", "O"]]
    assert metrics.entity_scores(gold, guess) == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert metrics.is_entity_scheme(["O", "B-PER", "I-PER"]) and not metrics.is_entity_scheme(["O", "ANIMAL"])


def test_classification_scores_equal_scikit_learn() -> None:
    rng = random.Random(1)
    for _ in range(200):
        golds = [rng.randint(0, 4) for _ in range(rng.randint(1, 30))]
        predictions = [rng.randint(0, 5) for _ in golds]
        assert metrics.accuracy(golds, predictions) == pytest.approx(sklearn.accuracy_score(golds, predictions))
        assert metrics.macro_f1(golds, predictions) == pytest.approx(
            sklearn.f1_score(golds, predictions, average="macro", zero_division=0))
    assert metrics.macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)


def test_squad_scores_by_hand() -> None:
    assert metrics.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert metrics.normalize_answer("an apple, a pear") == "apple pear"
    predictions = ["the Eiffel Tower", "Paris, France", "in 1889", "nothing"]
    golds = [["Eiffel Tower"], ["Paris"], ["1889", "in the year 1889"], ["something else"]]
    # 1: exact; 2: "paris france" vs "paris": P 1/2 R 1 -> 2/3; 3: best of "1889" (P 1/2 R 1 -> 2/3)
    # and "in year 1889" (P 1 R 2/3 -> 0.8); 4: nothing in common
    scores = metrics.squad_scores(predictions, golds)
    assert scores["exact_match"] == pytest.approx(1 / 4)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 0.8 + 0) / 4)
    assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0) and metrics.perplexity(1e6) == math.inf


# -------------------------------------------------------------------- in training
def test_token_classifier_dev_metrics_are_seqevals_on_its_predictions(tmp_path: Path) -> None:
    labels = {0: "O", 1: "B-ANI", 2: "I-ANI", 3: "B-LOC"}
    _, path = build(tmp_path / "ner", "xlm", "XLMForTokenClassification", num_labels=4, id2label=labels)
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    assert task.main_metric == "f1" and task.metric_names() == ["loss", "accuracy", "precision", "recall", "f1"]
    records = [{"tokens": ["the", "big", a, "is", "in", "the", p], "labels": ["O", "B-ANI", "I-ANI", "O", "O", "O",
                                                                              "B-LOC"]}
               for a in ("cat", "dog", "bird") for p in ("park", "garden")]
    examples = [task.encode(r) for r in records]
    trainer = Trainer(loaded.model, task, TrainArgs(batch_size=4, epochs=2, lr=5e-3))
    trainer.train(examples)
    result = trainer.evaluate(examples)

    golds, guesses = [], []
    with torch.no_grad():
        for example, record in zip(examples, records, strict=True):
            batch = task.collate([example])
            logits = loaded.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
            words = [labels[int(i)] for i, gold in zip(logits.argmax(-1), example.labels, strict=True) if gold != -100]
            golds.append(record["labels"])
            guesses.append(words)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert result.metrics["f1"] == pytest.approx(seqeval.f1_score(golds, guesses), abs=1e-12)
        assert result.metrics["precision"] == pytest.approx(seqeval.precision_score(golds, guesses), abs=1e-12)
        assert result.metrics["recall"] == pytest.approx(seqeval.recall_score(golds, guesses), abs=1e-12)
    flat = [(g, p) for gs, ps in zip(golds, guesses, strict=True) for g, p in zip(gs, ps, strict=True)]
    assert result.metrics["accuracy"] == pytest.approx(sum(g == p for g, p in flat) / len(flat))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("base") / "xlnet", "xlnet", "XLNetModel", seed=11)[1]


def test_metrics_file_has_a_line_per_step_with_dev_metrics(tmp_path: Path, base: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", SENTIMENT)
    out, log = tmp_path / "out", tmp_path / "metrics.jsonl"
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(data), "--dev", str(data), "-o", str(out),
                 "-b", "4", "--epochs", "2", "--eval-every", "3", "--metrics", str(log), "--lr", "1e-3")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 9))
    assert [line["epoch"] for line in lines] == [1] * 4 + [2] * 4
    assert all(set(line) >= {"lr", "loss"} for line in lines)
    evaluated = [line["step"] for line in lines if "dev_loss" in line]
    assert evaluated == [3, 6, 8]
    assert set(lines[2]) == {"step", "epoch", "lr", "loss", "dev_loss", "dev_accuracy", "dev_macro_f1"}
    summary = json.loads(result.stdout)
    assert summary["dev_metrics"] == {k.removeprefix("dev_"): v for k, v in lines[-1].items() if k.startswith("dev_")}
    assert summary["metric_for_best"] == "accuracy" and "macro_f1" in result.stderr


def test_metric_for_best_picks_the_checkpoint(tmp_path: Path, base: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", SENTIMENT)
    common = ("-m", str(base), "--labels", "neg,pos", "--train", str(data), "--dev", str(data), "-b", "4",
              "--epochs", "3", "--eval-every", "2", "--lr", "3e-2")
    bad = run(*common, "-o", str(tmp_path / "bad"), "--metric-for-best", "perplexity")
    assert bad.exit_code == 2 and "no metric 'perplexity'" in bad.stderr and "macro_f1" in bad.stderr
    assert not (tmp_path / "bad").exists()
    log = tmp_path / "m.jsonl"
    result = run(*common, "-o", str(tmp_path / "loss"), "--metric-for-best", "loss", "--metrics", str(log))
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    losses = {line["step"]: line["dev_loss"] for line in map(json.loads, log.read_text().splitlines())
              if "dev_loss" in line}
    best = min(losses, key=lambda step: (losses[step], step))
    assert summary["metric_for_best"] == "loss" and summary["best_step"] == best == summary["saved_step"]
    assert summary["best_metric"] == losses[best]


def test_language_models_report_perplexity(tmp_path: Path) -> None:
    _, path = build(tmp_path / "lm", "xglm", "XGLMForCausalLM", seed=3)
    data = write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in TEXTS])
    result = run("-m", str(path), "--train", str(data), "--dev", str(data), "-o", str(tmp_path / "out"),
                 "--max-steps", "2", "-b", "2")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["metric_for_best"] == "loss"
    assert summary["dev_metrics"]["perplexity"] == pytest.approx(math.exp(summary["dev_loss"]))


# ------------------------------------------------------------------ bad data, early
def test_bad_dev_data_is_an_error_before_any_work(tmp_path: Path, base: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", SENTIMENT)
    missing = run("-m", str(base), "--labels", "neg,pos", "--train", str(data), "--dev", str(tmp_path / "nope.jsonl"),
                  "-o", str(tmp_path / "out"))
    assert missing.exit_code == 2 and "--dev" in missing.stderr and "no such file" in missing.stderr
    useless = write_jsonl(tmp_path / "dev.jsonl", [{"text": "fine", "label": "neutral"}, {"text": ""}])
    result = run("-m", str(base), "--labels", "neg,pos", "--train", str(data), "--dev", str(useless),
                 "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "no usable dev records (2 skipped)" in result.stderr
    assert "training XLNetForSequenceClassification" not in result.stderr  # no plan: nothing was trained
    assert not (tmp_path / "out").exists() and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.jsonl", "train.jsonl"]


def test_bad_token_records_are_skipped_and_named(tmp_path: Path) -> None:
    _, path = build(tmp_path / "ner", "xlnet", "XLNetForTokenClassification", num_labels=3,
                    id2label={0: "O", 1: "B-X", 2: "I-X"})
    good = {"tokens": ["a", "cat", "sat"], "labels": ["O", "B-X", "O"]}
    records: list[Any] = [
        good,
        {"tokens": ["a", "cat"], "labels": ["O"]},                # line 2: count mismatch
        {"tokens": ["a", " ", "cat"], "labels": ["O", "O", "B-X"]},  # line 3: empty word
        {"tokens": ["a"], "labels": ["B-Y"]},                    # line 4: unknown label
        {"tokens": ["a"], "labels": [True]},                     # line 5: wrong label type
        {"tokens": [], "labels": []},                            # line 6: nothing
        good,
    ]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    result = run("-m", str(path), "--train", str(data), "-o", str(tmp_path / "out"), "--max-steps", "1")
    assert result.exit_code == 4, result.stderr
    for line, kind in ((2, "length_mismatch"), (3, "empty_text"), (4, "unknown_label"), (5, "wrong_type"),
                       (6, "wrong_type")):
        assert f"{data} line {line}: {kind}" in result.stderr
    assert json.loads(result.stdout)["skipped"] == 5
    stopped = run("-m", str(path), "--train", str(data), "-o", str(tmp_path / "stopped"), "--on-error", "stop")
    assert stopped.exit_code == 1 and f"stopped at {data} line 2" in stopped.stderr
    assert "training XLNet" not in stopped.stderr and not (tmp_path / "stopped").exists()
