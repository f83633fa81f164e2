"""``--lang``: one rule for every model command (classify, fill-mask, qa, generate).

A tokenizer without languages refuses it (usage error), a language the tokenizer does not list is
a usage error naming those it has, and a model without language embeddings takes it with one
warning (the language then only picks the tokenizer's rules).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from task_fixtures import build_native
from xcli.app import app

runner = CliRunner()
XLM_HEADS = {
    "classify": "XLMForSequenceClassification",
    "fill-mask": "XLMWithLMHeadModel",
    "generate": "XLMWithLMHeadModel",
    "qa": "XLMForQuestionAnsweringSimple",
}
TEXT = {"classify": "a text", "fill-mask": "a <mask> text", "generate": "a text", "qa": None}
QA_RECORD = json.dumps({"question": "what?", "context": "a short context"}) + "\n"


def invoke(command: str, path: Path, *options: str):
    args = [command, "-m", str(path), *options]
    if command == "generate":
        args += ["--max-new-tokens", "2"]
    if TEXT[command] is None:
        return runner.invoke(app, args, input=QA_RECORD)
    return runner.invoke(app, [*args, TEXT[command]])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """(class, with language embeddings) -> a tiny XLM checkpoint."""
    made = {}
    for name in sorted(set(XLM_HEADS.values())):
        for embeddings in (True, False):
            path = tmp_path_factory.mktemp(name)
            extra = {} if embeddings else {"use_lang_emb": False}
            made[name, embeddings] = build_native(path, name, is_encoder=True, causal=False, **extra)
    return made


@pytest.mark.parametrize("command", sorted(XLM_HEADS))
def test_a_language_the_tokenizer_lacks_is_a_usage_error(checkpoints, command) -> None:
    result = invoke(command, checkpoints[XLM_HEADS[command], True], "--lang", "xx")
    assert result.exit_code == 2, result.stderr
    assert "not one of this model's languages" in result.stderr and "en" in result.stderr


@pytest.mark.parametrize("command", sorted(XLM_HEADS))
def test_a_model_without_language_embeddings_warns_once(checkpoints, command) -> None:
    result = invoke(command, checkpoints[XLM_HEADS[command], False], "--lang", "fr")
    assert result.exit_code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "no language embeddings" in line]
    assert len(warned) == 1 and warned[0].startswith("xcli: warning: "), result.stderr
    quiet = invoke(command, checkpoints[XLM_HEADS[command], True], "--lang", "fr")
    assert quiet.exit_code == 0 and "no language embeddings" not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize(
    "command,head",
    [("classify", "XLNetForSequenceClassification"), ("fill-mask", "XLNetLMHeadModel"),
     ("generate", "XLNetLMHeadModel"), ("qa", "XLNetForQuestionAnsweringSimple")],
)
def test_a_tokenizer_without_languages_refuses_lang(tmp_path, command, head) -> None:
    path = build_native(tmp_path / "m", head)
    result = invoke(command, path, "--lang", "en")
    assert result.exit_code == 2, result.stderr
    assert "XLM" in result.stderr and "internal error" not in result.stderr


def test_train_follows_the_same_rule(checkpoints, tmp_path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(["a b", "c d"])))
    plain = checkpoints["XLMForSequenceClassification", False]
    base = ["train", "-m", str(plain), "--train", str(data), "--max-steps", "1", "--batch-size", "2"]
    warned = runner.invoke(app, [*base, "-o", str(tmp_path / "out1"), "--lang", "fr"])
    assert warned.exit_code == 0, warned.stderr
    assert sum("no language embeddings" in line for line in warned.stderr.splitlines()) == 1, warned.stderr
    refused = runner.invoke(app, [*base, "-o", str(tmp_path / "out2"), "--lang", "xx"])
    assert refused.exit_code == 2 and "not one of this model's languages" in refused.stderr, refused.stderr
