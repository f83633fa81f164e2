"""``xcli evaluate`` on tiny checkpoints written by xcli's own ``save_pretrained``.

Its metrics are ``xcli train``'s dev metrics (one implementation: ``training.evaluate``): the
same numbers as the summary of a train run whose dev set is the evaluated file, and as
``Trainer.evaluate``; token classification's entity scores are seqeval's on the model's own
predictions; QA's exact match and F1 are SQuAD's on the answers it writes with ``--predictions``;
a language model's perplexity is exp of its loss. ``--predictions`` holds one line per record in
input order (bad records: their error); bad records exit 4, a missing file exits 2.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from task_fixtures import build_native

from xcli.app import app
from xcli_models import metrics
from xcli_models.training import TrainArgs, Trainer, load_for_training, task_for

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
COMMON = ("--device", "cpu", "--threads", "1")

POSITIVE = ["good great film", "wonderful and great", "a lovely movie", "so good", "lovely", "good fun"]
NEGATIVE = ["bad awful film", "terrible and boring", "a dreadful movie", "so bad", "boring", "bad taste"]
SENTIMENT = [{"id": f"r{i}", "text": t, "label": label}
             for i, (t, label) in enumerate([(t, "pos") for t in POSITIVE] + [(t, "neg") for t in NEGATIVE])]
TAGS = {0: "O", 1: "B-ANI", 2: "I-ANI", 3: "B-LOC"}
NER = [{"tokens": ["the", "big", a, "is", "in", "the", p], "labels": ["O", "B-ANI", "I-ANI", "O", "O", "O", "B-LOC"]}
       for a in ("cat", "dog", "bird") for p in ("park", "garden")]
PLACES = ["Paris", "Rome", "Berlin"]


def qa_record(animal: str, place: str) -> dict[str, Any]:
    context = f"The {animal} lives in {place} with friends."
    return {"question": f"Where does the {animal} live?", "context": context,
            "answers": {"text": [place], "answer_start": [context.index(place)]}}


def evaluate(*args: str) -> Any:
    return runner.invoke(app, ["evaluate", *args, *COMMON])


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def library_metrics(path: Path, records: list[dict[str, Any]], batch_size: int = 8) -> dict[str, float]:
    """What the Trainer's dev evaluation gives for ``records``."""
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    trainer = Trainer(loaded.model, task, TrainArgs(batch_size=batch_size))
    return trainer.evaluate([task.encode(r) for r in records]).metrics


def summary_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("model", "task", "records", "skipped")}


def evaluated(tmp_path: Path, path: Path, records: list[dict[str, Any]],
              batch_size: int = 8) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """``xcli evaluate`` of ``records`` with ``--predictions``: its summary, whose metrics must be the
    library's, the prediction lines and the records' file."""
    data = write_jsonl(tmp_path / "d.jsonl", records)
    predictions = tmp_path / "p.jsonl"
    out = evaluate("-m", str(path), "-i", str(data), "--predictions", str(predictions), "-b", str(batch_size))
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary_metrics(summary) == pytest.approx(library_metrics(path, records, batch_size), abs=1e-6)
    return summary, [json.loads(line) for line in predictions.read_text().splitlines()], data


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_native(tmp_path_factory.mktemp("cls") / "xlnet", "XLNetForSequenceClassification", seed=3,
                        num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})


def test_classification_metrics_equal_trains_dev_metrics(tmp_path: Path, classifier: Path) -> None:
    data = write_jsonl(tmp_path / "dev.jsonl", SENTIMENT)
    trained = tmp_path / "trained"
    result = runner.invoke(app, ["train", "-m", str(classifier), "--train", str(data), "--dev", str(data), "-o",
                                 str(trained), "--max-steps", "2", "-b", "4", "--save", "last", "--lr", "1e-2",
                                 *COMMON])
    assert result.exit_code == 0, result.stderr
    dev = json.loads(result.stdout)["dev_metrics"]
    out = evaluate("-m", str(trained), "-i", str(data), "-b", "4")
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["task"] == "sequence-classification" and summary["records"] == len(SENTIMENT)
    assert summary["skipped"] == 0 and summary["model"] == str(trained)
    assert set(summary) == {"model", "task", "records", "skipped", "accuracy", "macro_f1", "loss"}
    assert summary_metrics(summary) == pytest.approx(dev, abs=1e-6)
    assert summary_metrics(summary) == pytest.approx(library_metrics(trained, SENTIMENT, 4), abs=1e-6)


def test_predictions_are_written_in_input_order(tmp_path: Path, classifier: Path) -> None:
    data = write_jsonl(tmp_path / "dev.jsonl", SENTIMENT)
    predictions = tmp_path / "predictions.jsonl"
    out = evaluate("-m", str(classifier), "-i", str(data), "--predictions", str(predictions), "-b", "3")
    assert out.exit_code == 0, out.stderr
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in SENTIMENT]
    assert [line["gold"] for line in lines] == [r["label"] for r in SENTIMENT]
    loaded = load_for_training(classifier, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    with torch.no_grad():
        for record, line in zip(SENTIMENT, lines, strict=True):
            batch = task.collate([task.encode(record)])
            logits = loaded.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
            assert line["label"] == loaded.model.config.id2label[int(logits.argmax())]
    accuracy = sum(line["label"] == line["gold"] for line in lines) / len(lines)
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(accuracy)
    again = evaluate("-m", str(classifier), "-i", str(data), "--predictions", str(predictions))
    assert again.exit_code == 2 and "exists" in again.stderr


def test_token_classification_entity_scores_are_seqevals(tmp_path: Path) -> None:
    seqeval = pytest.importorskip("seqeval.metrics")
    path = build_native(tmp_path / "ner", "XLNetForTokenClassification", seed=5, num_labels=4, id2label=TAGS,
                        label2id={v: k for k, v in TAGS.items()})
    summary, lines, _ = evaluated(tmp_path, path, NER)
    assert summary["task"] == "token-classification"

    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    guesses = []
    with torch.no_grad():
        for record in NER:
            example = task.encode(record)
            batch = task.collate([example])
            logits = loaded.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
            guesses.append([TAGS[int(i)] for i, gold in zip(logits.argmax(-1), example.labels, strict=True)
                            if gold != -100])
    golds = [r["labels"] for r in NER]
    assert [line["labels"] for line in lines] == guesses and [line["gold"] for line in lines] == golds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert summary["f1"] == pytest.approx(seqeval.f1_score(golds, guesses), abs=1e-12)
        assert summary["precision"] == pytest.approx(seqeval.precision_score(golds, guesses), abs=1e-12)
        assert summary["recall"] == pytest.approx(seqeval.recall_score(golds, guesses), abs=1e-12)


def test_qa_exact_match_and_f1_are_squads_on_its_answers(tmp_path: Path) -> None:
    path = build_native(tmp_path / "qa", "XLNetForQuestionAnsweringSimple", seed=7)
    records = [qa_record(a, p) for a in ("cat", "dog") for p in PLACES]
    summary, lines, data = evaluated(tmp_path, path, records)
    assert summary["task"] == "question-answering"
    assert [line["gold"] for line in lines] == [r["answers"]["text"] for r in records]
    em = sum(metrics.squad_exact_match(line["answer"], line["gold"]) for line in lines) / len(lines)
    f1 = sum(metrics.squad_f1(line["answer"], line["gold"]) for line in lines) / len(lines)
    assert summary["exact_match"] == pytest.approx(em) and summary["f1"] == pytest.approx(f1)
    qa = runner.invoke(app, ["qa", "-m", str(path), "-i", str(data), *COMMON])
    assert qa.exit_code == 0, qa.stderr
    assert [json.loads(line)["answer"] for line in qa.stdout.splitlines()] == [line["answer"] for line in lines]


@pytest.mark.parametrize("class_name, records", [
    ("XLNetLMHeadModel", [{"text": t} for t in ("the cat sat on the mat", "a dog ran in the park", "birds sing")]),
    ("MvpForConditionalGeneration", [{"text": "the cat sat", "target": "a cat"}, {"text": "birds", "target": "sing"}]),
])
def test_language_models_report_perplexity(tmp_path: Path, class_name: str, records: list[dict[str, Any]]) -> None:
    path = build_native(tmp_path / "lm", class_name, seed=2)
    data = write_jsonl(tmp_path / "lm.jsonl", records)
    out = evaluate("-m", str(path), "-i", str(data))
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["perplexity"] == pytest.approx(math.exp(summary["loss"]))
    assert summary_metrics(summary) == pytest.approx(library_metrics(path, records), abs=1e-6)
    refused = evaluate("-m", str(path), "-i", str(data), "--predictions", str(tmp_path / "p.jsonl"))
    assert refused.exit_code == 2 and "predicts nothing per record" in refused.stderr


def test_masked_lm_accuracy_counts_the_first_guesses_at_the_hidden_tokens(tmp_path: Path) -> None:
    path = build_native(tmp_path / "mlm", "XLMWithLMHeadModel", seed=4)
    records = [{"text": t} for t in ("the cat sat on the mat", "a dog ran in the big park", "birds sing", "hello")]
    data = write_jsonl(tmp_path / "mlm.jsonl", records)
    out = evaluate("-m", str(path), "-i", str(data), "--seed", "5", "--batch-size", "2")
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    # by hand: the same hidden tokens (seed + batch number), the model's argmax there
    from xcli_models.training.evaluation import eval_batches

    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    examples = [task.encode(r) for r in records]
    right = hidden = 0
    with torch.no_grad():
        for k, indices in enumerate(eval_batches(task, examples, 2)):
            batch = task.collate([examples[i] for i in indices], torch.Generator().manual_seed(5 + k))
            logits = loaded.model.eval()(**{n: v for n, v in batch.items() if n != "labels"}).logits
            where = batch["labels"] != -100
            right += int((logits.argmax(-1)[where] == batch["labels"][where]).sum())
            hidden += int(where.sum())
    assert hidden >= len(records) and summary["accuracy"] == pytest.approx(right / hidden)
    assert summary["perplexity"] == pytest.approx(math.exp(summary["loss"]))


def test_bad_records_are_named_skipped_and_exit_4(tmp_path: Path, classifier: Path) -> None:
    records = [SENTIMENT[0], {"id": "bad", "text": "no label"}, "{not json", SENTIMENT[6]]
    data = write_jsonl(tmp_path / "dev.jsonl", records)
    predictions = tmp_path / "p.jsonl"
    out = evaluate("-m", str(classifier), "-i", str(data), "--predictions", str(predictions))
    assert out.exit_code == 4
    assert "line 2" in out.stderr and "line 3" in out.stderr
    summary = json.loads(out.stdout)
    assert summary["records"] == 2 and summary["skipped"] == 2
    assert summary_metrics(summary) == pytest.approx(library_metrics(classifier, [SENTIMENT[0], SENTIMENT[6]]),
                                                     abs=1e-6)
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(lines) == 4 and lines[0]["id"] == "r0" and lines[3]["id"] == "r6"
    assert lines[1]["id"] == "bad" and lines[1]["error"]["line"] == 2 and lines[2]["error"]["type"] == "invalid_json"
    assert "label" in lines[0] and "gold" in lines[3]


def test_missing_file_and_no_input_are_usage_errors(tmp_path: Path, classifier: Path) -> None:
    missing = evaluate("-m", str(classifier), "-i", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "nope.jsonl" in missing.stderr
    nothing = evaluate("-m", str(classifier))
    assert nothing.exit_code == 2


@pytest.mark.parametrize("kind", ["multi_label_classification", "regression"])
def test_multi_label_and_regression_heads(tmp_path: Path, kind: str) -> None:
    if kind == "regression":
        config = dict(num_labels=1, problem_type="regression")
        records = [{"text": t, "label": float(i) / 4} for i, t in enumerate(POSITIVE[:4] + NEGATIVE[:4])]
    else:
        names = {0: "fun", 1: "sad", 2: "long"}
        config = dict(num_labels=3, problem_type=kind, id2label=names, label2id={v: k for k, v in names.items()})
        records = [{"text": t, "label": labels} for t, labels in zip(POSITIVE[:3] + NEGATIVE[:3],
                                                                    [["fun"], ["fun", "long"], [], ["sad"],
                                                                     ["sad", "long"], ["long"]], strict=True)]
    path = build_native(tmp_path / "m", "XLNetForSequenceClassification", seed=4, **config)
    summary, lines, _ = evaluated(tmp_path, path, records, batch_size=3)
    if kind == "regression":
        assert set(summary) >= {"mse", "pearson", "spearman"}
        assert [line["gold"] for line in lines] == pytest.approx([r["label"] for r in records])
        mse = sum((line["value"] - line["gold"]) ** 2 for line in lines) / len(lines)
        assert summary["mse"] == pytest.approx(mse)
    else:
        assert [line["gold"] for line in lines] == [r["label"] for r in records]
        exact = sum(sorted(line["labels"]) == sorted(line["gold"]) for line in lines) / len(lines)
        assert summary["accuracy"] == pytest.approx(exact)


def test_on_error_stop_stops_at_the_first_bad_record(tmp_path: Path, classifier: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [SENTIMENT[0], {"text": "no label"}, SENTIMENT[1]])
    out = evaluate("-m", str(classifier), "-i", str(data), "--on-error", "stop")
    assert out.exit_code == 1 and "line 2" in out.stderr and out.stdout == ""


def test_a_checkpoint_without_the_tasks_head_gets_evaluates_own_advice(tmp_path) -> None:
    from task_fixtures import build_native

    path = build_native(tmp_path / "lm", "XLNetLMHeadModel")
    data = tmp_path / "dev.jsonl"
    data.write_text('{"text": "a b", "label": 0}\n')
    result = CliRunner().invoke(app, ["evaluate", "-m", str(path), "-i", str(data), "--task", "sequence-classification"])
    assert result.exit_code == 2, result.stderr
    assert "not a sequence-classification head" in result.stderr
    assert "evaluate needs a checkpoint trained for the task" in result.stderr and "--labels" not in result.stderr
