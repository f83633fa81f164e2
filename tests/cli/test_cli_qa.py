"""``xcli qa`` in-process on tiny random checkpoints with the real tokenizers.

JSONL in and out against the oracle's question-answering pipeline (MVP; skipped without the
reference), the library's answers for every head, TEXT arguments with --context, bad records,
--output-format text, --top-k, and checkpoints without a question-answering head: on checkpoints
written by xcli (``task_fixtures.native``), which need no reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compare import reference
from task_fixtures import assert_same_answers, native, oracle_answers, qa_checkpoint, xquad_records
from test_cli_support import invoke as run, jsonl
from xcli_models.tasks.qa import QAOptions, QuestionAnswerer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mvp(tmp_path_factory) -> tuple[None, None, Path]:
    """(None, None, an xcli-written MVP question-answering checkpoint)."""
    return None, None, qa_checkpoint(tmp_path_factory.mktemp("cli-mvp"), "mvp")


@pytest.fixture(scope="module")
def oracle_mvp(tmp_path_factory) -> tuple[Any, Any, Path]:
    """(the oracle's MVP question-answering model, its fast tokenizer, the checkpoint it wrote)."""
    reference()
    from test_task_qa import oracle_model, tokenizer_dir

    tok = tokenizer_dir("mvp")
    model = oracle_model("mvp", "span", len(tok), 0)
    path = tmp_path_factory.mktemp("cli-oracle-mvp")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok, path


def records(n: int = 5) -> list[dict[str, Any]]:
    return [{"id": i, "question": q, "context": c} for i, (q, c) in enumerate(xquad_records()[:n])]


def as_lines(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in items)


def test_jsonl_in_jsonl_out_matches_the_oracle_pipeline(oracle_mvp) -> None:
    model, tok, path = oracle_mvp
    items = records()
    result = run("qa", "-m", str(path), "--device", "cpu", "-b", "2", "--threads", "1", input=as_lines(items))
    assert result.exit_code == 0, result.stderr
    out = jsonl(result.stdout)
    assert [o["id"] for o in out] == [r["id"] for r in items]
    pipe = reference().pipeline("question-answering", model=model, tokenizer=tok)
    for record, mine in zip(items, out, strict=True):
        theirs = oracle_answers(pipe, record["question"], record["context"], {})
        assert set(mine) == {"id", "answer", "score", "start", "end"}
        assert_same_answers([mine], theirs, record["question"])


def test_options_reach_the_decoder(oracle_mvp) -> None:
    model, tok, path = oracle_mvp
    items = records(3)
    options = {"top_k": 3, "max_seq_len": 64, "doc_stride": 16, "max_answer_len": 6, "handle_impossible": True}
    result = run(
        "qa", "-m", str(path), "--device", "cpu", "--top-k", "3", "--max-seq-len", "64", "--doc-stride", "16",
        "--max-answer-len", "6", "--handle-impossible", "--keep", "question", input=as_lines(items),
    )
    assert result.exit_code == 0, result.stderr
    pipe = reference().pipeline("question-answering", model=model, tokenizer=tok)
    for record, mine in zip(jsonl(result.stdout), items, strict=True):
        assert record["question"] == mine["question"] and len(record["answers"]) == 3
        assert record["answer"] == record["answers"][0]["answer"]
        assert_same_answers(record["answers"], oracle_answers(pipe, mine["question"], mine["context"], options), "")


def test_no_align_to_words_reaches_the_decoder(mvp) -> None:
    _, _, path = mvp
    items = records(3)
    words = jsonl(run("qa", "-m", str(path), "--no-align-to-words", "-k", "2", input=as_lines(items)).stdout)
    expected = QuestionAnswerer(*_ours(path), QAOptions(top_k=2, align_to_words=False))(
        [(r["question"], r["context"]) for r in items]
    )
    assert len(words) == len(expected) == 3
    assert [w["answers"] for w in words] == [e["answers"] for e in expected]


def _ours(path: Path) -> tuple[Any, Any]:
    from xcli_models.tasks import common

    loaded = common.load(path, device="cpu")
    return loaded.model, loaded.tokenizer


@pytest.mark.parametrize("family,head", [("xlnet", "span"), ("xlm", "span"), ("xlnet", "beam"), ("xlm", "beam")])
def test_every_head_answers_as_the_library_does(tmp_path, family: str, head: str) -> None:
    qa_checkpoint(tmp_path, family, head)
    items = records(3)
    result = run("qa", "-m", str(tmp_path), "-k", "2", "--max-seq-len", "96", input=as_lines(items))
    assert result.exit_code == 0, result.stderr
    expected = QuestionAnswerer(*_ours(tmp_path), QAOptions(top_k=2, max_seq_len=96))(
        [(r["question"], r["context"]) for r in items]
    )
    for mine, theirs in zip(jsonl(result.stdout), expected, strict=True):
        assert_same_answers(mine["answers"], theirs["answers"], family)


def test_text_arguments_are_questions_about_the_context(mvp) -> None:
    _, _, path = mvp
    context = "The Broncos beat the Panthers 24 to 10 in Santa Clara in February 2016."
    result = run("qa", "-m", str(path), "-c", context, "Who won?", "Where?", "-O", "text")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = QuestionAnswerer(*_ours(path))([("Who won?", context), ("Where?", context)])
    assert lines == [e["answer"] for e in expected]
    assert all(line in context for line in lines)
    # plain-text lines on stdin are questions too; a record's own context wins over --context
    piped = run("qa", "-m", str(path), "-c", context, input="Who won?\n")
    assert jsonl(piped.stdout)[0]["answer"] == expected[0]["answer"]
    own = run("qa", "-m", str(path), "-c", "unused", input=json.dumps({"question": "Who?", "context": context}))
    assert jsonl(own.stdout)[0]["answer"] in context


def test_field_names_can_be_changed(mvp) -> None:
    _, _, path = mvp
    record = {"q": "Who won?", "passage": "The Broncos beat the Panthers."}
    result = run("qa", "-m", str(path), "--question-field", "q", "--context-field", "passage", input=json.dumps(record))
    assert result.exit_code == 0, result.stderr
    assert jsonl(result.stdout)[0]["answer"] in record["passage"]


def test_bad_records_become_error_lines(mvp, tmp_path) -> None:
    _, _, path = mvp
    lines = "\n".join([
        json.dumps({"id": "a", "question": "Who won?", "context": "The Broncos won."}),
        "{not json",
        json.dumps({"id": "b", "question": "Who won?"}),
        json.dumps({"id": "c", "question": "", "context": "The Broncos won."}),
        json.dumps({"id": "d", "question": 3, "context": "x"}),
        json.dumps({"id": "e", "question": "x " * 500, "context": "The Broncos won."}),
        json.dumps({"id": "f", "question": "Who won?", "context": "The Broncos won."}),
    ]) + "\n"
    result = run("qa", "-m", str(path), "--max-question-len", "400", "--max-seq-len", "128", input=lines)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert len(out) == 7 and "answer" in out[0] and "answer" in out[6]
    kinds = [o.get("error", {}).get("type") for o in out]
    assert kinds == [None, "invalid_json", "missing_field", "empty_question", "wrong_type", "question_too_long", None]
    assert "line 2" in result.stderr and "--context" in out[2]["error"]["message"]
    stopped = run("qa", "-m", str(path), "--on-error", "stop", "-o", str(tmp_path / "out.jsonl"), input=lines)
    assert stopped.exit_code == 1
    assert jsonl((tmp_path / "out.jsonl.partial").read_text())[0]["id"] == "a"


def test_usage_errors(mvp, tmp_path) -> None:
    _, _, path = mvp
    bad_stride = run("qa", "-m", str(path), "--max-seq-len", "32", "--doc-stride", "40", "-c", "x", "q")
    assert bad_stride.exit_code == 2 and "--doc-stride (40) is larger than --max-seq-len (32)" in bad_stride.stderr
    assert run("qa", "-m", str(path), "--top-k", "0", "-c", "x", "q").exit_code == 2
    lang = run("qa", "-m", str(path), "--lang", "fr", "-c", "x", "q")
    assert lang.exit_code == 2 and "XLM" in lang.stderr
    native(tmp_path, "MvpForConditionalGeneration")
    wrong = run("qa", "-m", str(tmp_path), "-c", "x", "q")
    assert wrong.exit_code == 2
    assert "MvpForConditionalGeneration" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_qa_reads_the_documented_window_of_records_per_round(tmp_path, monkeypatch) -> None:
    from task_fixtures import build_native

    from xcli import io
    from xcli.model_commands import window

    path = build_native(tmp_path / "qa", "MvpForQuestionAnswering")
    seen: list[int] = []
    real = io.run_records

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(io, "run_records", spy)
    result = run("qa", "-m", str(path), "-b", "3", input=as_lines(records(2)))
    assert result.exit_code == 0, result.stderr
    assert seen == [window(3)] == [96]
