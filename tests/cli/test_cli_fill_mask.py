"""``xcli fill-mask`` in-process on tiny random checkpoints with the real tokenizers.

JSONL in, JSONL out (in input order, whatever the batching), compared with the oracle's
pipeline (a checkpoint the oracle wrote; skipped without it); on checkpoints xcli wrote: bad
records; --output-format text; targets and languages; options the model cannot honour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compare import ATOL
from task_fixtures import build, native, oracle_pipeline, per_blank

from test_cli_support import invoke as run, jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def oracle_mvp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """(the oracle's model, its tokenizer, the checkpoint it wrote); skips without the oracle."""
    return build(tmp_path_factory.mktemp("mvp") / "ckpt", "mvp", "MvpForConditionalGeneration", seed=11)


@pytest.fixture(scope="module")
def mvp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """(xcli's model, its tokenizer, the checkpoint xcli wrote)."""
    return native(tmp_path_factory.mktemp("mvp") / "native", "MvpForConditionalGeneration", 11, perturb=0.3)


@pytest.fixture(scope="module")
def xlm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return native(tmp_path_factory.mktemp("xlm") / "native", "XLMWithLMHeadModel", 12, perturb=0.3)


RECORDS = [
    {"id": "a", "text": "Paris is the <mask> of France.", "source": "geo"},
    {"id": "b", "text": "A <mask> and a <mask> walk into a much longer sentence than the first one."},
    {"id": "c", "text": "<mask>!"},
]


def test_jsonl_in_jsonl_out_matches_the_pipeline(oracle_mvp: tuple[Any, Any, Path]) -> None:
    ref_model, ref_tok, path = oracle_mvp
    lines = "".join(json.dumps(r) + "\n" for r in RECORDS)
    result = run("fill-mask", "-m", str(path), "-k", "3", "-b", "2", "--keep", "source", "--device", "cpu",
                 input=lines)
    assert result.exit_code == 0, result.stderr
    out = jsonl(result.stdout)
    assert [o["id"] for o in out] == ["a", "b", "c"]
    assert out[0]["source"] == "geo" and "source" not in out[1]
    pipe = oracle_pipeline("fill-mask", ref_model, ref_tok)
    for record, mine in zip(RECORDS, out, strict=True):
        theirs = per_blank(pipe(record["text"], top_k=3))
        assert len(mine["predictions"]) == len(theirs)
        for a, b in zip(mine["predictions"], theirs, strict=True):
            assert set(a[0]) == {"token_id", "token", "score", "sequence"}
            assert [p["token_id"] for p in a] == [int(p["token"]) for p in b]
            assert [p["sequence"] for p in a] == [p["sequence"] for p in b]
            assert max(abs(p["score"] - float(q["score"])) for p, q in zip(a, b, strict=True)) <= ATOL


def test_bad_records_get_error_lines(mvp: tuple[Any, Any, Path]) -> None:
    _, _, path = mvp
    lines = '{"id": 1, "text": "no blank"}\n{"id": 2, "text": 5}\nnot json\n{"id": 4, "text": "Hi <mask>"}\n'
    result = run("fill-mask", "-m", str(path), "--device", "cpu", input=lines)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert [o.get("error", {}).get("type") for o in out] == ["mask_missing", "wrong_type", "invalid_json", None]
    assert len(out[3]["predictions"][0]) == 5
    assert "line 1: mask_missing" in result.stderr
    stopped = run("fill-mask", "-m", str(path), "--on-error", "stop", "--device", "cpu", input=lines)
    assert stopped.exit_code == 1 and len(jsonl(stopped.stdout)) == 1


def test_text_output_is_the_best_fill_per_blank(mvp: tuple[Any, Any, Path]) -> None:
    _, _, path = mvp
    result = run("fill-mask", "-m", str(path), "-O", "text", "--device", "cpu", RECORDS[0]["text"], RECORDS[1]["text"])
    assert result.exit_code == 0, result.stderr
    full = jsonl(run("fill-mask", "-m", str(path), "--device", "cpu", RECORDS[0]["text"], RECORDS[1]["text"]).stdout)
    expected = [" ".join(blank[0]["token"].strip() for blank in o["predictions"]) for o in full]
    assert result.stdout.splitlines() == expected


def test_targets_lang_and_xlm_mask_token(xlm: tuple[Any, Any, Path]) -> None:
    _, _, path = xlm
    text = "Paris est la <mask> de la France."
    result = run("fill-mask", "-m", str(path), "--lang", "fr", "--targets", "capitale</w>,ville</w>,Montmartre",
                 "--device", "cpu", text)
    assert result.exit_code == 0, result.stderr
    predictions = jsonl(result.stdout)[0]["predictions"][0]
    assert len(predictions) == 3
    assert "Montmartre" in result.stderr and "first piece" in result.stderr
    same = run("fill-mask", "-m", str(path), "--lang", "fr", "--targets", "capitale</w>,ville</w>,Montmartre",
               "--device", "cpu", text.replace("<mask>", "<special1>"))
    assert jsonl(same.stdout) == jsonl(result.stdout)
    bad = run("fill-mask", "-m", str(path), "--lang", "xx", text)
    assert bad.exit_code == 2 and "not one of this model's languages" in bad.stderr


def test_models_without_a_masked_lm_head(tmp_path: Path, mvp: tuple[Any, Any, Path]) -> None:
    native(tmp_path / "xglm", "XGLMForCausalLM")
    result = run("fill-mask", "-m", str(tmp_path / "xglm"), "a <mask>")
    assert result.exit_code == 2
    assert "XGLMForCausalLM" in result.stderr and "masked-LM head" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    _, _, path = mvp
    lang = run("fill-mask", "-m", str(path), "--lang", "en", "a <mask>")
    assert lang.exit_code == 2 and "XLM" in lang.stderr
