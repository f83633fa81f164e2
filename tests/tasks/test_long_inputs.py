"""Long inputs in the model commands (issue 11, defects 4 and 5).

One record far longer than the model takes (200 KB of text) among normal records: every command,
every family and head answers all of them, the long one cut to the model's limit with one
warning naming its line (qa: read in windows), no "internal error"; memory stays bounded (a
subprocess under an address-space limit). The default limit per family comes from one place,
``xcli_models.tasks.common.position_limit``; an explicit length option beyond it is a usage error.

The checkpoints are tiny random models written by xcli's own ``save_pretrained`` with real
tokenizers (``task_fixtures.build_native``): no oracle needed.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from task_fixtures import build_native

import xcli_models
from test_cli_support import jsonl
from xcli.app import app
from xcli_models.tasks import common

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

_WORDS = ("the film was good and bad but the story of a long night in Paris kept me watching until the "
          "end when rain fell on old roofs").split()


def words(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(n))


#: about 200 KB of text: tens of thousands of tokens in every tokenizer
LONG = words(40_000)


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, [*args, "--device", "cpu"], input=input)


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """class name (+ config overrides) -> a saved tiny checkpoint, built once per module."""
    built: dict[Any, Path] = {}

    def get(class_name: str, **config: Any) -> Path:
        key = (class_name, tuple(sorted(config.items())))
        if key not in built:
            built[key] = build_native(tmp_path_factory.mktemp(class_name), class_name, **config)
        return built[key]

    return get


def assert_long_record_cut(result: Any, n: int, *, warned: bool = True) -> list[dict[str, Any]]:
    """All ``n`` records answered, none an error; one warning, naming line 2 (the long record)."""
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr
    out = jsonl(result.stdout)
    assert [o["id"] for o in out] == list(range(1, n + 1))
    assert not [o for o in out if "error" in o]
    warnings = [line for line in result.stderr.splitlines() if "truncated" in line or "cut to" in line]
    if warned:
        assert len(warnings) == 1 and "line 2" in warnings[0], result.stderr
    else:
        assert not warnings, result.stderr
    return out


# ----------------------------------------------------------------------- the limits
def test_position_limit_per_family() -> None:
    """XLM, MVP, XGLM: max_position_embeddings; (XLM-)ProphetNet: less the padding row and the
    n-gram stream's look-ahead; XLNet (relative positions): none."""
    limit = common.position_limit
    assert limit(xcli_models.XLMConfig(max_position_embeddings=512)) == 512
    assert limit(xcli_models.MvpConfig(max_position_embeddings=1024)) == 1024
    assert limit(xcli_models.XGLMConfig(max_position_embeddings=2048)) == 2048
    assert limit(xcli_models.ProphetNetConfig(max_position_embeddings=512, pad_token_id=0)) == 510
    assert limit(xcli_models.XLMProphetNetConfig(max_position_embeddings=512, pad_token_id=1)) == 509
    assert limit(xcli_models.XLNetConfig()) is None


def test_input_limit_defaults_to_the_model_and_refuses_more(native: Callable[..., Path]) -> None:
    mvp = common.load(native("MvpForSequenceClassification"), device="cpu")
    assert mvp.tokenizer.model_max_length == 1024
    assert common.input_limit(mvp.model, mvp.tokenizer) == 128  # the positions, below the tokenizer's 1024
    assert common.input_limit(mvp.model, mvp.tokenizer, 100) == 100
    with pytest.raises(common.LengthLimitError, match="at most 128 tokens"):
        common.input_limit(mvp.model, mvp.tokenizer, 129)
    xlnet = common.load(native("XLNetForSequenceClassification"), device="cpu")
    assert common.input_limit(xlnet.model, xlnet.tokenizer) == common.RELATIVE_DEFAULT_LIMIT == 512
    assert common.input_limit(xlnet.model, xlnet.tokenizer, 2048) == 2048  # relative positions: any length asked for


def test_long_batches_hold_fewer_inputs() -> None:
    """Up to 512 tokens a batch holds batch_size inputs; beyond, its attention stays that of
    batch_size inputs of 512 tokens (the square of the length)."""
    assert common.batch_capacity(32, 512) == 32
    assert common.batch_capacity(32, 1024) == 8
    assert common.batch_capacity(32, 2048) == 2
    assert common.batch_capacity(32, 100_000) == 1
    lengths = [2048] * 3 + [1024] * 9 + [10] * 40
    sizes = [len(b) for b in common.length_batches(lengths, 32)]
    assert sizes == [2, 2, 8, 32, 8]  # a batch's first (longest) input sets its size


# -------------------------------------------------------------- every command and head
FILL_MASK = ["XLMWithLMHeadModel", "XLNetLMHeadModel", "MvpForConditionalGeneration"]


@pytest.mark.parametrize("class_name", FILL_MASK)
def test_fill_mask_cuts_a_long_record(native: Callable[..., Path], class_name: str) -> None:
    records = [{"id": 1, "text": "A <mask> film."}, {"id": 2, "text": "The <mask> was good. " + LONG},
               {"id": 3, "text": "Paris is the <mask> of France."}]
    out = assert_long_record_cut(run("fill-mask", "-m", str(native(class_name)), "-k", "2", input=lines(*records)), 3)
    assert all(len(o["predictions"]) == 1 for o in out)


def test_fill_mask_blank_beyond_the_cut_is_an_error_record(native: Callable[..., Path]) -> None:
    records = [{"id": 1, "text": "A <mask> film."}, {"id": 2, "text": LONG + " <mask>"}]
    result = run("fill-mask", "-m", str(native("XLNetLMHeadModel")), input=lines(*records))
    assert result.exit_code == 4, result.stderr
    out = jsonl(result.stdout)
    assert "predictions" in out[0] and out[1]["error"]["type"] == "mask_missing"
    assert "512 tokens" in out[1]["error"]["message"]
    assert "internal error" not in result.stderr


SEQUENCE = ["XLMForSequenceClassification", "XLNetForSequenceClassification", "MvpForSequenceClassification"]
TOKEN = ["XLMForTokenClassification", "XLNetForTokenClassification"]
CHOICE = ["XLMForMultipleChoice", "XLNetForMultipleChoice"]


@pytest.mark.parametrize("class_name", SEQUENCE + TOKEN)
def test_classify_cuts_a_long_record(native: Callable[..., Path], class_name: str) -> None:
    records = [{"id": 1, "text": "A fine film."}, {"id": 2, "text": LONG, "text_pair": "short"},
               {"id": 3, "text": "Dull."}]
    if class_name in TOKEN:
        records[1].pop("text_pair")
    out = assert_long_record_cut(run("classify", "-m", str(native(class_name)), input=lines(*records)), 3)
    assert all(("label" in o) if class_name in SEQUENCE else ("entities" in o) for o in out)


@pytest.mark.parametrize("class_name", CHOICE)
def test_multiple_choice_cuts_a_long_record(native: Callable[..., Path], class_name: str) -> None:
    records = [{"id": 1, "text": "The cat sat on the", "choices": ["mat", "moon"]},
               {"id": 2, "text": LONG, "choices": ["yes", "no " + LONG[:50_000]]},
               {"id": 3, "text": "Rain fell", "choices": ["down", "up", "sideways"]}]
    out = assert_long_record_cut(run("classify", "-m", str(native(class_name)), input=lines(*records)), 3)
    assert [len(o["scores"]) for o in out] == [2, 2, 3]


QA = ["XLMForQuestionAnsweringSimple", "XLNetForQuestionAnsweringSimple", "MvpForQuestionAnswering",
      "XLMForQuestionAnswering", "XLNetForQuestionAnswering"]


@pytest.mark.parametrize("class_name", QA)
def test_qa_reads_a_long_context_in_windows(native: Callable[..., Path], class_name: str) -> None:
    """20 KB of context (thousands of tokens: dozens of windows) beside short ones."""
    records = [{"id": 1, "question": "Who wrote it?", "context": "The book was written by Jane Austen."},
               {"id": 2, "question": "What kept me watching?", "context": LONG[:20_000]},
               {"id": 3, "question": "Where?", "context": "It rained in Paris."}]
    out = assert_long_record_cut(run("qa", "-m", str(native(class_name)), input=lines(*records)), 3, warned=False)
    for record, answer in zip(records, out, strict=True):
        assert record["context"][answer["start"]:answer["end"]] == answer["answer"]


GENERATE = ["XGLMForCausalLM", "XLMWithLMHeadModel", "XLNetLMHeadModel", "MvpForCausalLM", "ProphetNetForCausalLM",
            "XLMProphetNetForCausalLM", "MvpForConditionalGeneration", "ProphetNetForConditionalGeneration",
            "XLMProphetNetForConditionalGeneration"]


@pytest.mark.parametrize("new_tokens", [None, "5"], ids=["default-length", "max-new-tokens"])
@pytest.mark.parametrize("class_name", GENERATE)
def test_generate_cuts_a_long_prompt(native: Callable[..., Path], class_name: str, new_tokens: str | None) -> None:
    records = [{"id": 1, "text": "Once upon a time"}, {"id": 2, "text": LONG}, {"id": 3, "text": "Rain fell"}]
    options = ["-N", new_tokens] if new_tokens else []
    out = assert_long_record_cut(run("generate", "-m", str(native(class_name)), *options, input=lines(*records)), 3)
    assert all(isinstance(o["generated_text"], str) for o in out)


def test_generate_prompt_leaves_room_for_the_new_tokens(native: Callable[..., Path]) -> None:
    """A learned-position decoder-only model: prompt + new tokens within its positions (ProphetNet:
    128 positions, 126 usable); more new tokens than that is a usage error."""
    path = native("ProphetNetForCausalLM")
    result = run("generate", "-m", str(path), "-N", "30", "--min-new-tokens", "30", LONG)
    assert result.exit_code == 0, result.stderr
    assert "input cut to its last 96 tokens" in result.stderr
    refused = run("generate", "-m", str(path), "-N", "126", "hello")
    assert refused.exit_code == 2 and "126" in refused.stderr and "internal error" not in refused.stderr


# ------------------------------------------------------------------- explicit lengths
@pytest.mark.parametrize("command", ["classify", "fill-mask", "generate"])
def test_max_length_beyond_the_model_is_a_usage_error(native: Callable[..., Path], command: str) -> None:
    class_name = {"classify": "MvpForSequenceClassification", "fill-mask": "XLMWithLMHeadModel",
                  "generate": "XGLMForCausalLM"}[command]
    result = run(command, "-m", str(native(class_name)), "--max-length", "4096", "a <mask> film")
    assert result.exit_code == 2, result.stderr
    assert "--max-length 4096" in result.stderr and "at most 128 tokens" in result.stderr
    assert result.stdout == ""


def test_max_length_within_the_model_cuts_there(native: Callable[..., Path]) -> None:
    path = native("MvpForSequenceClassification")
    records = [{"id": 1, "text": "fine"}, {"id": 2, "text": LONG}]
    result = run("classify", "-m", str(path), "--max-length", "40", input=lines(*records))
    assert_long_record_cut(result, 2)
    assert "line 2: truncated to 40 tokens (--max-length)" in result.stderr


def test_xlnet_default_and_a_longer_max_length(native: Callable[..., Path]) -> None:
    """XLNet has no position limit: 512 tokens by default, and an explicit --max-length above it is taken."""
    path = native("XLNetForSequenceClassification")
    records = [{"id": 1, "text": "fine"}, {"id": 2, "text": LONG}]
    default = run("classify", "-m", str(path), input=lines(*records))
    assert_long_record_cut(default, 2)
    assert "line 2: truncated to 512 tokens" in default.stderr
    longer = run("classify", "-m", str(path), "--max-length", "700", input=lines(*records))
    assert_long_record_cut(longer, 2)
    assert "line 2: truncated to 700 tokens (--max-length)" in longer.stderr


# ---------------------------------------------------------------- qa on few positions
@pytest.fixture(scope="module")
def mvp_qa_256(native: Callable[..., Path]) -> Path:
    """As examples/make_tiny_models.py's mvp-tiny-qa: 256 positions (its tokenizer says 1024)."""
    return native("MvpForQuestionAnswering", max_position_embeddings=256)


def test_qa_on_256_positions_answers_a_5000_character_context(mvp_qa_256: Path) -> None:
    context = words(1_000, seed=1)[:5_000]
    records = [{"id": 1, "question": "Who wrote it?", "context": "The book was written by Jane Austen."},
               {"id": 2, "question": "What fell on the roofs?", "context": context}]
    out = assert_long_record_cut(run("qa", "-m", str(mvp_qa_256), input=lines(*records)), 2, warned=False)
    assert context[out[1]["start"]:out[1]["end"]] == out[1]["answer"] != ""
    fits = run("qa", "-m", str(mvp_qa_256), "--max-seq-len", "256", "--doc-stride", "64", input=lines(*records))
    assert fits.exit_code == 0, fits.stderr


def test_qa_max_seq_len_beyond_the_model_is_a_usage_error(mvp_qa_256: Path) -> None:
    result = run("qa", "-m", str(mvp_qa_256), "--max-seq-len", "384", "-c", "It rained.", "What?")
    assert result.exit_code == 2, result.stderr
    assert "--max-seq-len 384" in result.stderr and "at most 256 tokens" in result.stderr


def test_qa_question_longer_than_the_window(mvp_qa_256: Path) -> None:
    """Cut to --max-question-len (64) by default; a --max-question-len that leaves no room for the
    context makes that record an error record, the others are answered."""
    question = words(3_000, seed=2) + "?"
    records = [{"id": 1, "question": question, "context": "It rained in Paris."},
               {"id": 2, "question": "Where?", "context": "It rained in Paris."}]
    cut = run("qa", "-m", str(mvp_qa_256), input=lines(*records))
    assert cut.exit_code == 0, cut.stderr
    assert [o["answer"] != "" for o in jsonl(cut.stdout)] == [True, True]
    too_long = run("qa", "-m", str(mvp_qa_256), "--max-question-len", "300", input=lines(*records))
    assert too_long.exit_code == 4, too_long.stderr
    out = jsonl(too_long.stdout)
    assert out[0]["error"]["type"] == "question_too_long" and "answer" in out[1]
    assert "internal error" not in too_long.stderr


# ------------------------------------------------------------------- bounded memory
#: the address space the subprocess gets: a few GB (the run needs well under 2)
_MEMORY_CAP = 3 * 1024**3


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_CAP, _MEMORY_CAP))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS")
def test_classify_memory_stays_bounded(native: Callable[..., Path], tmp_path: Path) -> None:
    """Three 60 KB records among short ones, under a 3 GB address-space cap: every record answered
    (unbounded, XLNet's attention over ~14,000 tokens alone wants more than the cap)."""
    records = [{"id": i + 1, "text": words(14_000, seed=i) if i % 2 else "a fine film"} for i in range(7)]
    assert sum(len(r["text"]) > 60_000 for r in records) == 3
    source = tmp_path / "records.jsonl"
    source.write_text(lines(*records), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "xcli", "classify", "-m", str(native("XLNetForSequenceClassification")),
         "--device", "cpu", "--threads", "1", "-i", str(source)],
        capture_output=True, text=True, env=env, preexec_fn=_cap_memory, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = jsonl(done.stdout)
    assert [o["id"] for o in out] == list(range(1, 8)) and all("label" in o for o in out)
    assert done.stderr.count("truncated to 512 tokens") == 3
