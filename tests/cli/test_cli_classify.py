"""``xcli classify`` in-process on tiny random checkpoints with the real tokenizers.

Sequence heads (texts and pairs) against the text-classification pipeline, token heads against
the token-classification pipeline (checkpoints the oracle wrote; skipped without it); on checkpoints
xcli wrote: multiple choice; bad records; --output-format text and tsv; heads that do not classify.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compare import ATOL, transformers
from test_task_classify import NER_TEXTS, SENTIMENT, sequence_reference, token_reference
from task_fixtures import LABELS, build, native, oracle_pipeline

from test_cli_support import invoke as run, jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def xlnet_sst(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return build(tmp_path_factory.mktemp("sst") / "ckpt", "xlnet", "XLNetForSequenceClassification", seed=21,
                 id2label=SENTIMENT)


@pytest.fixture(scope="module")
def sst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """xcli's own sentiment checkpoint (XLNet, three labels)."""
    return native(tmp_path_factory.mktemp("sst") / "native", "XLNetForSequenceClassification", 21, id2label=SENTIMENT,
                  perturb=0.3)[2]


RECORDS = [
    {"id": 1, "text": "A gripping, beautifully shot film."},
    {"id": 2, "text": "Dull.", "text_pair": "It was not."},
    {"id": 3, "text": "I would not watch it again, even if somebody paid me to sit through all of it once more."},
]


def test_sequence_head_jsonl_matches_pipeline(xlnet_sst: tuple[Any, Any, Path]) -> None:
    ref_model, ref_tok, path = xlnet_sst
    lines = "".join(json.dumps(r) + "\n" for r in RECORDS)
    result = run("classify", "-m", str(path), "-b", "2", "--device", "cpu", input=lines)
    assert result.exit_code == 0, result.stderr
    out = jsonl(result.stdout)
    assert [o["id"] for o in out] == [1, 2, 3]
    pipe = oracle_pipeline("text-classification", ref_model, ref_tok)
    for record, mine in zip(RECORDS, out, strict=True):
        theirs = sequence_reference(pipe, record["text"], record.get("text_pair"))
        assert mine["label"] == theirs[0]["label"]
        assert list(mine["scores"]) == [t["label"] for t in theirs]
        assert max(abs(mine["scores"][t["label"]] - t["score"]) for t in theirs) <= ATOL
    top = jsonl(run("classify", "-m", str(path), "-k", "1", "--function", "sigmoid", "--device", "cpu",
                    RECORDS[0]["text"]).stdout)[0]
    theirs = sequence_reference(pipe, RECORDS[0]["text"], None, function_to_apply="sigmoid")
    assert list(top["scores"]) == [theirs[0]["label"]]
    assert abs(top["score"] - theirs[0]["score"]) <= ATOL


def test_text_and_tsv_output(sst: Path) -> None:
    path = sst
    texts = [r["text"] for r in RECORDS]
    full = jsonl(run("classify", "-m", str(path), "--device", "cpu", *texts).stdout)
    assert len(full) == 3 and all(o["label"] in SENTIMENT.values() for o in full)
    text = run("classify", "-m", str(path), "-O", "text", "--device", "cpu", *texts)
    assert text.stdout.splitlines() == [o["label"] for o in full]
    tsv = run("classify", "-m", str(path), "-O", "tsv", "--device", "cpu", *texts).stdout.splitlines()
    assert tsv[0].split("\t")[:2] == ["label", "score"] and len(tsv) == 4


def test_bad_records_and_unused_options(sst: Path) -> None:
    path = sst
    lines = '{"id": 1}\n{"id": 2, "text": "fine", "text_pair": 3}\n[1]\n{"id": 4, "text": "fine"}\n'
    result = run("classify", "-m", str(path), "--aggregation", "simple", "--device", "cpu", input=lines)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert [o.get("error", {}).get("type") for o in out] == ["missing_field", "wrong_type", "not_an_object", None]
    assert "--aggregation does not apply" in result.stderr


@pytest.fixture(scope="module")
def xlnet_ner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return build(tmp_path_factory.mktemp("ner") / "ckpt", "xlnet", "XLNetForTokenClassification", seed=22,
                 id2label=LABELS)


def test_token_head_entities_match_pipeline(xlnet_ner: tuple[Any, Any, Path]) -> None:
    ref_model, _, path = xlnet_ner
    pipe = oracle_pipeline("token-classification", ref_model, transformers.AutoTokenizer.from_pretrained(path))
    result = run("classify", "-m", str(path), "--aggregation", "simple", "--device", "cpu", *NER_TEXTS)
    assert result.exit_code == 0, result.stderr
    for text, mine in zip(NER_TEXTS, jsonl(result.stdout), strict=True):
        theirs = token_reference(pipe, text, "simple")
        assert [(e["entity"], e["word"], e["start"], e["end"]) for e in mine["entities"]] == [
            (e["entity"], e["word"], e["start"], e["end"]) for e in theirs
        ]
        assert all(set(e) == {"entity", "score", "word", "start", "end"} for e in mine["entities"])
    text = run("classify", "-m", str(path), "--aggregation", "simple", "-O", "text", "--device", "cpu", NER_TEXTS[0])
    first = jsonl(result.stdout)[0]["entities"]
    assert text.stdout.strip() == " ".join(f"{e['word']}/{e['entity']}" for e in first)


def test_multiple_choice_records(tmp_path: Path) -> None:
    path = native(tmp_path / "mc", "XLMForMultipleChoice", 23)[2]
    lines = (
        '{"id": "q1", "text": "The cat sat on the", "choices": ["mat", "moon", "dog"]}\n'
        '{"id": "q2", "text": "No choices here"}\n'
        '{"id": "q3", "text": "Pick", "choices": "ab"}\n'
        '{"id": "q4", "question": "Larger?", "options": ["an elephant", "a mouse"]}\n'
    )
    result = run("classify", "-m", str(path), "--device", "cpu", input=lines)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert out[0]["choice"] in (0, 1, 2) and abs(sum(out[0]["scores"]) - 1) < 1e-5 and len(out[0]["scores"]) == 3
    assert out[1]["error"]["type"] == "missing_field" and out[2]["error"]["type"] == "choices_missing"
    assert out[3]["error"]["type"] == "missing_field"
    fields = run("classify", "-m", str(path), "--field", "question", "--choices-field", "options", "-O", "text",
                 "--device", "cpu", input=lines.splitlines()[3])
    assert fields.exit_code == 0 and fields.stdout.strip() in ("0", "1")


def test_heads_that_do_not_classify(tmp_path: Path) -> None:
    path = native(tmp_path / "lm", "MvpForConditionalGeneration")[2]
    result = run("classify", "-m", str(path), "hello")
    assert result.exit_code == 2
    assert "MvpForConditionalGeneration" in result.stderr and len(result.stderr.strip().splitlines()) == 1
