"""``xcli score`` on tiny random checkpoints with real tokenizers, against the oracle's log-softmax sums.

JSONL in, JSONL out in input order whatever the batching; causal texts, encoder-decoder targets and
pseudo-log-likelihood equal to the numbers tests/tasks/test_task_score.py computes from the oracle's
logits (checkpoints the oracle wrote; skipped without it); on checkpoints xcli wrote: choices
ranked; bad records (missing, empty or non-Unicode text, bad choices, too long) give error lines and
exit 4; heads that cannot score are usage errors (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compare import ATOL, reference
from task_fixtures import SCORE_TEXTS as TEXTS
from task_fixtures import build as build_masked_lm
from task_fixtures import native

from test_cli_support import jsonl
from xcli.app import app

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["score", "--device", "cpu", *args], input=input)


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def oracle_numbers() -> Any:
    """tests/tasks/test_task_score.py, whose ``reference_*`` compute scores from the oracle's logits."""
    reference()
    import test_task_score

    return test_task_score


def build(name: str, root: Path) -> Any:
    """The oracle's checkpoint of ``name`` (``test_task_generate.build``); skips without the oracle."""
    reference()
    from test_task_generate import build as oracle_built

    return oracle_built(name, root)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("score")


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An XLM masked LM (causal: false), saved by the oracle with the en-fr tokenizer."""
    return build_masked_lm(tmp_path_factory.mktemp("score-mlm"), "xlm", "XLMWithLMHeadModel")


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``lm(name)``: xcli's own causal ``xglm`` or ``xlm`` checkpoint, written once."""
    classes = {"xglm": ("XGLMForCausalLM", {}), "xlm": ("XLMWithLMHeadModel", {"causal": True})}
    paths: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in paths:
            class_name, config = classes[name]
            paths[name] = native(tmp_path_factory.mktemp(name) / name, class_name, perturb=0.3, **config)[2]
        return paths[name]

    return get


def test_texts_score_as_the_oracle_in_input_order(root: Path) -> None:
    built = build("xglm", root)
    records = [{"id": i, "text": t} for i, t in enumerate([TEXTS[2], TEXTS[0], TEXTS[1], TEXTS[0]])]
    outputs = {}
    for size in ("1", "8"):
        result = run("-m", str(built.path), "-b", size, input=lines(*records))
        assert result.exit_code == 0, result.stderr
        outputs[size] = jsonl(result.stdout)
    out = outputs["8"]
    assert [o["id"] for o in out] == [0, 1, 2, 3]
    assert set(out[0]) == {"id", "logprob", "mean_logprob", "tokens", "perplexity"}
    for record, o in zip(records, out, strict=True):
        logprob, n = oracle_numbers().reference_causal(built, record["text"])
        assert o["tokens"] == n and abs(o["logprob"] - logprob) <= ATOL
    for one, many in zip(outputs["1"], outputs["8"], strict=True):  # batching never changes a score
        assert abs(one["logprob"] - many["logprob"]) <= 1e-5


def test_encoder_decoder_scores_the_target(root: Path) -> None:
    built = build("xlm-prophetnet", root)
    records = [{"text": TEXTS[0], "summary": "a short summary"}, {"text": TEXTS[2], "summary": "yes"}]
    result = run("-m", str(built.path), "--target-field", "summary", input=lines(*records))
    assert result.exit_code == 0, result.stderr
    for record, o in zip(records, jsonl(result.stdout), strict=True):
        logprob, n = oracle_numbers().reference_seq2seq(built, record["text"], record["summary"])
        assert o["tokens"] == n and abs(o["logprob"] - logprob) <= ATOL
    missing = run("-m", str(built.path), input=lines(records[0]))
    assert missing.exit_code == 4
    assert jsonl(missing.stdout)[0]["error"]["type"] == "missing_field" and "--target-field" in missing.stderr


def test_pll_scores_a_masked_lm_and_is_required_for_it(masked_lm: Any) -> None:
    model, tokenizer, path = masked_lm
    result = run("-m", str(path), "--pll", "-O", "text", *TEXTS[:2])
    assert result.exit_code == 0, result.stderr
    for text, value in zip(TEXTS[:2], result.stdout.splitlines(), strict=True):
        assert abs(float(value) - oracle_numbers().reference_pll(model, tokenizer, text)[0]) <= ATOL
    refused = run("-m", str(path), "a text")
    assert refused.exit_code == 2 and "pll" in refused.stderr and not refused.stdout


def test_choices_are_ranked(lm: Any) -> None:
    path = lm("xlm")
    record = {"id": "q", "text": "The cat sat on the", "choices": ["mat", "moon and the stars", "mat"]}
    result = run("-m", str(path), input=lines(record))
    assert result.exit_code == 0, result.stderr
    out = jsonl(result.stdout)[0]
    assert out["id"] == "q" and set(out) == {"id", "choice", "scores", "logprobs", "tokens"}
    assert out["scores"][0] == out["scores"][2]
    assert out["choice"] == max(range(3), key=lambda k: out["scores"][k])
    by_mean = run("-m", str(path), "--by", "mean", "-O", "text", input=lines(record))
    means = [s / n for s, n in zip(out["logprobs"], out["tokens"], strict=True)]
    assert by_mean.stdout == f"{max(range(3), key=lambda k: means[k])}\n"


def test_bad_records_give_error_lines_and_exit_4(lm: Any) -> None:
    records = [
        {"id": 0, "text": "fine"}, {"id": 1}, {"id": 2, "text": ""}, {"id": 3, "text": 7},
        {"id": 4, "text": "x", "choices": "mat"}, {"id": 5, "text": "word " * 200}, {"id": 6, "text": "also fine"},
    ]
    body = lines(*records) + '{"id": 7, "text": "bad \\ud800 text"}\n'
    result = run("-m", str(lm("xglm")), "-b", "3", input=body)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert [o["id"] for o in out] == list(range(8))
    assert "logprob" in out[0] and "logprob" in out[6]
    assert [o["error"]["type"] for o in out[1:6]] + [out[7]["error"]["type"]] == [
        "missing_field", "empty_text", "wrong_type", "choices_error", "too_long", "tokenizer_error"
    ]
    assert "line 6" in result.stderr and "at most 128" in out[5]["error"]["message"]


def test_heads_and_lengths_that_cannot_be_scored_are_usage_errors(tmp_path: Path, lm: Any) -> None:
    classifier = native(tmp_path / "cls", "XLNetForSequenceClassification")[2]
    refused = run("-m", str(classifier), "a text")
    assert refused.exit_code == 2 and "language-modelling head" in refused.stderr
    too_long = run("-m", str(lm("xglm")), "--max-length", "1000", "a text")
    assert too_long.exit_code == 2 and "--max-length" in too_long.stderr
    not_masked = run("-m", str(lm("xglm")), "--pll", "a text")
    assert not_masked.exit_code == 2 and "masked-LM head" in not_masked.stderr
