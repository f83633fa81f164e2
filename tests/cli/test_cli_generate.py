"""``xcli generate`` on tiny random checkpoints with real tokenizers, and against the oracle's pipelines.

JSONL in, JSONL out in input order whatever the batching; greedy and beam texts equal to the
reference pipelines (checkpoints the oracle wrote: ``oracle_built``, skipped without it); on
checkpoints xcli wrote (``lm``), without the reference: sampling reproducible with --seed across
runs and batch sizes; --stop; bad records; -O text; --stream as a real process writing into a
pipe; usage errors for what a checkpoint or an option combination cannot do.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compare import reference
from task_fixtures import GENERATE_PROMPTS as PROMPTS
from task_fixtures import native
from test_cli_support import HERE, jsonl, xcli_env

from xcli.app import app
from xcli.commands.generate import _unescape

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
#: only a guard against a hung test, never a speed requirement
HANG_GUARD_S = 120
GREEDY = ["--device", "cpu", "--greedy", "--num-beams", "1"]


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["generate", *args], input=input)


def records(*texts: str) -> str:
    return "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generate")


def build(name: str, root: Path) -> Any:
    """The oracle's checkpoint of ``name`` (``test_task_generate.build``); skips without the oracle."""
    reference()
    from test_task_generate import build as oracle_built

    return oracle_built(name, root)


#: xcli's own generating checkpoints: tiny, weights perturbed so that next tokens are far from ties
LM_CLASSES = {"xglm": ("XGLMForCausalLM", dict(d_model=24, attention_heads=3, num_layers=2, ffn_dim=40,
                                               max_position_embeddings=128)),
              "mvp": ("MvpForConditionalGeneration", dict(d_model=24, encoder_layers=2, decoder_layers=2,
                                                          encoder_attention_heads=3, decoder_attention_heads=3,
                                                          encoder_ffn_dim=40, decoder_ffn_dim=40,
                                                          max_position_embeddings=128))}


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``lm(name)``: the directory of xcli's tiny ``xglm`` or ``mvp`` checkpoint, written once."""
    paths: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in paths:
            class_name, sizes = LM_CLASSES[name]
            # seed 1: its greedy XGLM text has several words (test_stop_cuts_the_text cuts at the third)
            paths[name] = native(tmp_path_factory.mktemp(name) / name, class_name, 1, sizes=sizes, perturb=0.3)[2]
        return paths[name]

    return get


@pytest.mark.parametrize("name", ["xglm", "mvp", "xlm-prophetnet-causal"])
def test_jsonl_in_jsonl_out_equals_the_pipeline(name: str, root: Path) -> None:
    built = build(name, root)
    texts = [PROMPTS[2], PROMPTS[0], PROMPTS[1], PROMPTS[0]]  # mixed lengths, one twice
    for beams in ("1", "3"):
        result = run("-m", str(built.path), "--device", "cpu", "--greedy", "--num-beams", beams, "-N", "6", "-b", "2",
                     "--keep", "text", input=records(*texts))
        assert result.exit_code == 0, result.stderr
        out = jsonl(result.stdout)
        assert [o["id"] for o in out] == [0, 1, 2, 3] and [o["text"] for o in out] == texts
        expected = built.reference(texts, max_new_tokens=6, do_sample=False, num_beams=int(beams))
        assert [[o["generated_text"]] for o in out] == expected
        assert set(out[0]) == {"id", "text", "generated_text"}


def test_options_reach_the_generation(root: Path) -> None:
    built = build("xglm", root)
    settings = dict(max_new_tokens=7, do_sample=False, num_beams=1, repetition_penalty=1.5, no_repeat_ngram_size=2,
                    min_new_tokens=7)
    expected = built.reference(PROMPTS[:2], return_full_text=False, **settings)
    result = run("-m", str(built.path), *GREEDY, "-N", "7", "--repetition-penalty", "1.5",
                 "--no-repeat-ngram-size", "2", "--min-new-tokens", "7", "--new-text", *PROMPTS[:2])
    assert result.exit_code == 0, result.stderr
    assert [[o["generated_text"]] for o in jsonl(result.stdout)] == expected
    # beam search settings and banned words
    word = expected[1][0].split()[-1]
    bad = built.tokenizer([word], add_special_tokens=False).input_ids
    beams = dict(max_new_tokens=6, do_sample=False, num_beams=3, length_penalty=0.5, early_stopping="never",
                 bad_words_ids=bad)
    expected = built.reference(PROMPTS[:2], **beams)
    result = run("-m", str(built.path), "--device", "cpu", "-N", "6", "--num-beams", "3", "--length-penalty", "0.5",
                 "--early-stopping", "never", "--bad-words", word, *PROMPTS[:2])
    assert result.exit_code == 0, result.stderr
    assert [[o["generated_text"]] for o in jsonl(result.stdout)] == expected
    # --max-total-length counts the prompt of a causal model, as the reference does
    encoded = built.tokenizer(PROMPTS[1], return_tensors="pt")
    length = encoded["input_ids"].shape[1] + 3
    oracle_ids = built.oracle.generate(**encoded, max_length=length, do_sample=False, num_beams=1)
    assert oracle_ids.shape[1] == length
    result = run("-m", str(built.path), *GREEDY, "--max-total-length", str(length), PROMPTS[1])
    assert jsonl(result.stdout)[0]["generated_text"] == built.tokenizer.decode(oracle_ids[0], skip_special_tokens=True)


def test_several_sequences_with_scores(root: Path) -> None:
    built = build("mvp", root)
    result = run("-m", str(built.path), "--device", "cpu", "--num-beams", "4", "-n", "3", "-N", "5", *PROMPTS[:2])
    assert result.exit_code == 0, result.stderr
    expected = built.reference(PROMPTS[:2], max_new_tokens=5, num_beams=4, num_return_sequences=3, do_sample=False)
    for out, texts in zip(jsonl(result.stdout), expected, strict=True):
        assert set(out) == {"generated_text", "sequences"}
        assert [s["generated_text"] for s in out["sequences"]] == texts and out["generated_text"] == texts[0]
        assert all(set(s) == {"generated_text", "score"} and isinstance(s["score"], float) for s in out["sequences"])
    single = run("-m", str(built.path), *GREEDY, "-N", "5", "--scores", PROMPTS[0])
    assert set(jsonl(single.stdout)[0]) == {"generated_text", "score"}


def test_seed_reproducible_across_runs_and_batch_sizes(lm: Any) -> None:
    args = ["-m", str(lm("xglm")), "--device", "cpu", "--sample", "--top-k", "0", "--top-p", "0.95", "--typical-p",
            "0.99", "-t", "2", "-N", "8", "-n", "2", "--seed", "3", "-O", "text"]
    lines = records(*PROMPTS, PROMPTS[1])
    outs = [run(*args, "-b", size, input=lines).stdout for size in ("1", "4", "4")]
    assert outs[0] == outs[1] == outs[2]
    texts = outs[0].splitlines()
    assert len(texts) == 4 and texts[1] == texts[3]  # the same prompt and seed: the same text
    assert run(*args[:-5], "--seed", "4", "-O", "text", input=lines).stdout != outs[0]


def test_stop_cuts_the_text(lm: Any) -> None:
    path = lm("xglm")
    plain = jsonl(run("-m", str(path), *GREEDY, "-N", "10", "--new-text", PROMPTS[0]).stdout)[0]["generated_text"]
    stop = plain.split()[2]
    result = run("-m", str(path), *GREEDY, "-N", "10", "--new-text", "--stop", stop, "--stop", "\\n", PROMPTS[0])
    assert jsonl(result.stdout)[0]["generated_text"] == plain[: plain.index(stop)]
    assert _unescape("a\\nb\\t\\\\n\\x") == "a\nb\t\\n\\x"


def test_bad_records_get_error_lines(lm: Any) -> None:
    path = lm("mvp")
    lines = ('{"id": 1, "text": "fine"}\n{"id": 2, "body": "x"}\n{"id": 3, "text": 5}\nnot json\n'
             '{"id": 5, "text": "ok"}\n')
    result = run("-m", str(path), *GREEDY, "-N", "3", input=lines)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert [o.get("error", {}).get("type") for o in out] == [None, "missing_field", "wrong_type", "invalid_json", None]
    assert "line 2: missing_field" in result.stderr
    stopped = run("-m", str(path), *GREEDY, "-N", "3", "--on-error", "stop", input=lines)
    assert stopped.exit_code == 1 and len(jsonl(stopped.stdout)) == 2
    # the text of failed records is an empty line in text output
    text = run("-m", str(path), *GREEDY, "-N", "3", "-O", "text", input=lines)
    assert text.exit_code == 4 and text.stdout.split("\n")[1:4] == ["", "", ""]


def test_mvp_task_template_and_fields(root: Path) -> None:
    built = build("mvp", root)
    line = json.dumps({"question": "Who wrote it?", "context": "Ann wrote it."}) + "\n"
    result = run("-m", str(built.path), *GREEDY, "-N", "4", "--task", "qa", input=line)
    assert result.exit_code == 0, result.stderr
    expected = built.reference(["Answer the following question: Who wrote it? [X_SEP] Ann wrote it."],
                               max_new_tokens=4, do_sample=False, num_beams=1)
    assert [[o["generated_text"]] for o in jsonl(result.stdout)] == expected


def test_usage_errors(lm: Any, tmp_path: Path) -> None:
    # a checkpoint without a generative head: one line naming what it has
    native(tmp_path / "base", "XGLMModel")
    result = run("-m", str(tmp_path / "base"), "--device", "cpu", "Hello")
    assert result.exit_code == 2 and "XGLMModel" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    xglm, mvp = str(lm("xglm")), str(lm("mvp"))
    cases = [
        ([xglm, "--stream", "-O", "jsonl"], "--stream"),
        ([xglm, "--stream", "-o", str(tmp_path / "out.txt")], "--stream"),
        ([xglm, "--stream", "--num-beams", "2"], "--stream"),
        ([xglm, "--greedy", "-n", "2"], "num_return_sequences"),
        ([xglm, "--task", "summarize"], "MVP"),
        ([mvp, "--lang", "fr"], "XLM"),
        ([xglm, "-N", "500"], "positions"),
    ]
    for args, words in cases:
        result = run("-m", *args, "--device", "cpu", "Hello")
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert words in result.stderr, (args, result.stderr)
    warned = run("-m", mvp, *GREEDY, "-N", "2", "--xlnet-prefix", "--return-full-text", "Hello")
    assert warned.exit_code == 0
    assert "--xlnet-prefix does not apply" in warned.stderr and "--return-full-text does not apply" in warned.stderr


def test_stream_prints_as_it_generates(lm: Any) -> None:
    """A real process writing into a pipe: the text comes in pieces, and the bytes are those of -O text."""
    args = ["-m", str(lm("xglm")), "--device", "cpu", "-N", "100", "--min-new-tokens", "100", "--threads", "1"]
    prompts = ["Hello world", "A tab\tand a line"]
    expected = run(*args, "-O", "text", *prompts)
    assert expected.exit_code == 0, expected.stderr
    code = "import sys; from xcli.__main__ import main; main(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "generate", *args, "--stream", *prompts], cwd=HERE, env=xcli_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    chunks: list[bytes] = []
    try:
        fd = proc.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], HANG_GUARD_S)
            assert ready, "xcli wrote nothing"
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(HANG_GUARD_S) == 0, proc.stderr.read()
    finally:
        proc.kill()
    data = b"".join(chunks)
    assert data.decode() == expected.stdout
    first_line = data.split(b"\n")[0]
    assert len([c for c in chunks if c]) > 2 and len(chunks[0]) < len(first_line), "the text came in one piece"
