"""``xcli tokenize`` in-process (CliRunner) on the fake model, and on the built-in XLNet tokenizer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli_support import fake_model, invoke as run, jsonl  # noqa: F401 - fake_model: a fixture
from xcli.models import builtin_root



# ------------------------------------------------------------------ basics
def test_tokens_and_ids_per_text_argument(fake_model: Path) -> None:
    result = run("tokenize", "-m", str(fake_model), "Hello world", "the cat")
    assert result.exit_code == 0, result.stderr
    assert jsonl(result.stdout) == [
        {"tokens": ["<s>", "hello", "world", "</s>"], "ids": [1, 4, 5, 2]},
        {"tokens": ["<s>", "the", "cat", "</s>"], "ids": [1, 6, 7, 2]},
    ]
    assert result.stderr == ""


def test_fields_offsets_count_and_no_special_tokens(fake_model: Path) -> None:
    model = ["-m", str(fake_model)]
    result = run("tokenize", *model, "--fields", "ids,special_tokens_mask", "--offsets", "hello  world")
    assert jsonl(result.stdout) == [
        {"ids": [1, 4, 5, 2], "special_tokens_mask": [1, 0, 0, 1], "offsets": [[0, 0], [0, 5], [7, 12], [0, 0]]}
    ]
    assert jsonl(run("tokenize", *model, "--count", "a b c").stdout) == [{"count": 5}]
    assert jsonl(run("tokenize", *model, "--no-special-tokens", "a b").stdout) == [
        {"tokens": ["a", "b"], "ids": [11, 12]}
    ]
    assert run("tokenize", *model, "--fields", "tokens,nope", "a").exit_code == 2


def test_pairs_come_from_text_pair_or_pair_field(fake_model: Path) -> None:
    records = '{"text": "a", "text_pair": "b c"}\n{"s1": "a", "s2": "b"}\n'
    result = run("tokenize", "-m", str(fake_model), "--fields", "ids", input=records.splitlines()[0])
    assert jsonl(result.stdout) == [{"ids": [1, 11, 2, 12, 13, 2]}]
    result = run("tokenize", "-m", str(fake_model), "--field", "s1", "--pair-field", "s2", "--fields", "ids",
                 input=records.splitlines()[1])
    assert jsonl(result.stdout) == [{"ids": [1, 11, 2, 12, 2]}]


def test_decode_from_arrays_and_from_text(fake_model: Path) -> None:
    records = '{"id": 1, "ids": [1, 4, 5, 2]}\n{"id": 2, "text": "1 6 7 2"}\n{"id": 3, "ids": "x"}\n'
    result = run("tokenize", "-m", str(fake_model), "--decode", input=records)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert out[:2] == [{"id": 1, "text": "<s> hello world </s>"}, {"id": 2, "text": "<s> the cat </s>"}]
    assert out[2]["error"]["type"] == "wrong_type"
    result = run("tokenize", "-m", str(fake_model), "--decode", "--skip-special-tokens", "1 4 5 2")
    assert jsonl(result.stdout) == [{"text": "hello world"}]
    assert run("tokenize", "-m", str(fake_model), "--decode", "--count", "1").exit_code == 2


def test_truncation_warns_on_stderr(fake_model: Path) -> None:
    result = run("tokenize", "-m", str(fake_model), "--max-length", "3", "a b c", "a")
    assert jsonl(result.stdout) == [
        {"tokens": ["<s>", "a", "</s>"], "ids": [1, 11, 2]},
        {"tokens": ["<s>", "a", "</s>"], "ids": [1, 11, 2]},
    ]
    assert result.stderr.count("truncated to 3 tokens") == 1 and "argument 1" in result.stderr
    assert run("tokenize", "-q", "-m", str(fake_model), "--max-length", "3", "a b c").stderr == ""


def test_lang_is_refused_for_a_tokenizer_without_languages(fake_model: Path) -> None:
    result = run("tokenize", "-m", str(fake_model), "--lang", "fr", "a")
    assert result.exit_code == 2
    assert "--lang applies to XLM models" in result.stderr


# ------------------------------------------------------- records and errors
def test_bad_records_get_error_lines_and_exit_4(fake_model: Path) -> None:
    records = '{"id": "a", "text": "hello"}\n\n{bad json\n{"id": "c"}\n{"id": "d", "text": 5}\n{"id": "e", "text": "FAIL"}\n'
    result = run("tokenize", "-m", str(fake_model), "--fields", "ids", input=records)
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert [o.get("id") for o in out] == ["a", None, "c", "d", "e"]
    assert [o["error"]["type"] if "error" in o else None for o in out] == [
        None, "invalid_json", "missing_field", "wrong_type", "tokenizer_error"
    ]
    assert [o["error"]["line"] for o in out[1:]] == [3, 4, 5, 6]
    for line in (3, 4, 5, 6):
        assert f"line {line}: " in result.stderr
    assert "4 of 5 records failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_on_error_stop_exits_1_after_the_bad_record(fake_model: Path) -> None:
    result = run("tokenize", "-m", str(fake_model), "--on-error", "stop", input="hello\nFAIL\nworld\n")
    assert result.exit_code == 1
    assert [o.get("error", {}).get("type") for o in jsonl(result.stdout)] == [None, "tokenizer_error"]
    assert "stopped at line 2" in result.stderr


def test_invalid_utf8_and_crlf_input(fake_model: Path) -> None:
    result = run("tokenize", "-m", str(fake_model), "--fields", "tokens", input=b"hello\r\nbad \xff\r\nworld\r\n")
    assert result.exit_code == 4
    out = jsonl(result.stdout)
    assert out[0] == {"tokens": ["<s>", "hello", "</s>"]} and out[2] == {"tokens": ["<s>", "world", "</s>"]}
    assert out[1]["error"]["type"] == "invalid_utf8"


def test_id_and_keep_are_carried_over(fake_model: Path) -> None:
    result = run("tokenize", "-m", str(fake_model), "--fields", "ids", "--keep", "label,absent",
                 input='{"id": 9, "text": "a", "label": "x", "other": 1}\n')
    assert jsonl(result.stdout) == [{"id": 9, "label": "x", "ids": [1, 11, 2]}]


def test_tsv_input_and_text_and_tsv_output(fake_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.tsv"
    data.write_text("id\tsentence\tlabel\n1\thello world\tpos\n2\tthe cat\tneg\n")
    common = ["tokenize", "-m", str(fake_model), "-i", str(data), "--input-format", "tsv", "--field", "sentence"]
    assert run(*common, "-O", "text").stdout == "<s> hello world </s>\n<s> the cat </s>\n"
    assert run(*common, "-O", "text", "--count").stdout == "4\n4\n"
    result = run(*common, "-O", "tsv", "--keep", "label")
    assert result.stdout.splitlines() == [
        "id\tlabel\ttokens\tids\terror",
        "1\tpos\t<s> hello world </s>\t1 4 5 2\t",
        "2\tneg\t<s> the cat </s>\t1 6 7 2\t",
    ]


# ----------------------------------------------------------------- output
def test_output_file_refused_without_force(fake_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = run("tokenize", "-m", str(fake_model), "-o", str(target), "hello")
    assert result.exit_code == 0 and result.stdout == ""
    assert jsonl(target.read_text()) == [{"tokens": ["<s>", "hello", "</s>"], "ids": [1, 4, 2]}]
    result = run("tokenize", "-m", str(fake_model), "-o", str(target), "world")
    assert result.exit_code == 2 and "--force" in result.stderr
    assert run("tokenize", "-m", str(fake_model), "-o", str(target), "-f", "world").exit_code == 0
    assert jsonl(target.read_text())[0]["tokens"] == ["<s>", "world", "</s>"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-model", "out.jsonl"]


def test_a_stopped_run_keeps_its_output_as_partial(fake_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = run("tokenize", "-m", str(fake_model), "-o", str(target), "--on-error", "stop", input="a\nFAIL\nb\n")
    assert result.exit_code == 1
    assert not target.exists()
    assert len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 2
    assert "out.jsonl.partial" in result.stderr


# ------------------------------------------------------------ usage errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tokenize", "hello"], "no model given"),
        (["tokenize", "-m", "no/such-model", "hello"], "huggingface-cli download no/such-model"),
        (["tokenize", "--bogus"], "No such option"),
        (["tokenize", "-m", "x", "--input-format", "xml"], "xml"),
        (["tokenize", "-m", "x", "-i", "/no/such/file"], "no such file"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCLI_MODEL", raising=False)
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("xcli")
    assert result.stdout == ""


def test_model_from_xcli_model_and_debug_traceback(fake_model: Path) -> None:
    result = run("tokenize", "hello", env={"XCLI_MODEL": str(fake_model)})
    assert result.exit_code == 0 and jsonl(result.stdout)[0]["ids"] == [1, 4, 2]
    (fake_model / "vocab.txt").unlink()
    result = run("tokenize", "-m", str(fake_model), "hello")
    assert result.exit_code == 1
    assert "cannot load the tokenizer" in result.stderr and "Traceback" not in result.stderr
    result = run("tokenize", "-m", str(fake_model), "--debug", "hello")
    assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith("xcli: error:")
    assert "Traceback" in run("tokenize", "-m", str(fake_model), "hello", env={"XCLI_DEBUG": "1"}).stderr


# ------------------------------------------------- the built-in XLNet tokenizer
XLNET = builtin_root() / "xlnet" / "xlnet-base-cased"
needs_xlnet = pytest.mark.skipif(not (XLNET / "spiece.model").exists(), reason="built-in xlnet-base-cased not there yet")


@needs_xlnet
@pytest.mark.parametrize("name", ["xlnet/xlnet-base-cased", "xlnet-base-cased"])
def test_builtin_xlnet_tokenizes_hello_world(name: str) -> None:
    result = run("tokenize", "-m", name, "Hello world")
    assert result.exit_code == 0, result.stderr
    (out,) = jsonl(result.stdout)
    assert out["tokens"][-2:] == ["<sep>", "<cls>"] and out["ids"][-2:] == [4, 3]
    assert len(out["tokens"]) == len(out["ids"])


@needs_xlnet
def test_builtin_xlnet_matches_the_reference_tokenizer() -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.XLNetTokenizer(str(XLNET / "spiece.model"))
    texts = ["Hello world", "The quick brown fox, 1,000 times.", "naïve café — «quotes»"]
    result = run("tokenize", "-m", "xlnet-base-cased", *texts)
    for text, out in zip(texts, jsonl(result.stdout), strict=True):
        assert out["ids"] == reference(text)["input_ids"]
        assert out["tokens"] == reference.convert_ids_to_tokens(out["ids"])
    decoded = run("tokenize", "-m", "xlnet-base-cased", "--decode", "--skip-special-tokens",
                  input=json.dumps({"ids": reference("Hello world")["input_ids"]}))
    assert jsonl(decoded.stdout) == [{"text": reference.decode(reference("Hello world")["input_ids"], skip_special_tokens=True)}]


# ------------------------------------------------------ XLM and its languages
def test_lang_picks_the_moses_rules_of_an_xlm_tokenizer(tmp_path: Path) -> None:
    from conftest import shared_path

    folder = tmp_path / "xlm"
    folder.mkdir()
    (folder / "vocab.json").write_bytes(shared_path("tokenizers", "xlm", "enfr", "xlm-mlm-enfr-1024.vocab.json").read_bytes())
    (folder / "merges.txt").write_bytes(shared_path("tokenizers", "xlm", "enfr", "codes_enfr").read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "xlm", "lang2id": {"en": 0, "fr": 1}}))
    french = jsonl(run("tokenize", "-m", str(folder), "--lang", "fr", "--fields", "tokens", "C'est l'été.").stdout)
    english = jsonl(run("tokenize", "-m", str(folder), "--fields", "tokens", "C'est l'été.").stdout)
    assert french[0]["tokens"][1] == "c'</w>" and english[0]["tokens"][1:3] == ["c</w>", "'"]
    refused = run("tokenize", "-m", str(folder), "--lang", "de", "x")
    assert refused.exit_code == 2 and "not one of this model's languages" in refused.stderr


# --------------------------------------------------- hostile records (issue 11)
@needs_xlnet
@pytest.mark.parametrize("model", ["xlnet-base-cased", "microsoft/prophetnet-large-uncased", "RUCAIBox/mvp"])
def test_a_lone_surrogate_is_an_error_record_and_the_others_are_answered(model: str) -> None:
    records = (
        '{"id": "a", "text": "ok"}\n'
        '{"id": "s", "text": "x\\ud800y"}\n'
        '{"id": "p", "text": "ok", "text_pair": "\\udfff"}\n'
        '{"id": "k", "text": "fine", "note": "\\udc80"}\n'
    )
    result = run("tokenize", "-m", model, "--fields", "ids", "--keep", "note", input=records)
    assert result.exit_code == 4, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    out = [json.loads(line) for line in result.stdout_bytes.decode("utf-8").splitlines()]  # strict UTF-8
    assert [o["id"] for o in out] == ["a", "s", "p", "k"]
    assert "ids" in out[0] and "ids" in out[3] and out[3]["note"] == "\udc80"  # echoed, escaped
    assert out[1]["error"] == {
        "type": "tokenizer_error",
        "message": "the text is not valid Unicode: a lone surrogate (U+D800) at character 1",
        "line": 2,
    }
    assert out[2]["error"]["message"].startswith("the second text of the pair is not valid Unicode")
    assert "line 2: tokenizer_error" in result.stderr and "line 3: tokenizer_error" in result.stderr


@needs_xlnet
def test_deep_nesting_and_non_standard_numbers_are_error_records() -> None:
    records = "\n".join([
        '{"id": "a", "text": "ok"}',
        '{"id": "b", "text": ' + "[" * 100_000,
        '{"id": "c", "text": "ok", "x": ' + "[" * 99 + "]" * 99 + "}",  # 100 levels with the record: allowed
        '{"id": "d", "text": "ok", "x": ' + "[" * 100 + "]" * 100 + "}",
        '{"id": 1e400, "text": "ok"}',
        '{"id": "f", "text": "ok", "x": [NaN]}',
        '{"id": "g", "text": "ok", "x": -Infinity}',
        '{"id": "h", "text": "ok"}',
    ]) + "\n"
    result = run("tokenize", "-m", "xlnet-base-cased", "--fields", "ids", "--keep", "x", input=records)
    assert result.exit_code == 4, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    out = [json.loads(line, parse_constant=_no_constants) for line in result.stdout.splitlines()]
    assert [o.get("id") for o in out] == ["a", None, "c", None, None, None, None, "h"]
    assert [o["error"]["type"] if "error" in o else None for o in out] == [
        None, "too_deep", None, "too_deep", "invalid_number", "invalid_number", "invalid_number", None
    ]
    assert out[1]["error"]["message"] == "the JSON nests arrays and objects deeper than 100 levels"
    assert out[4]["error"]["message"].startswith("the number 1e400 is out of range")
    assert out[5]["error"]["message"] == "NaN is not a JSON number (JSON has no NaN or Infinity)"
    assert len(json.dumps(out[2]["x"])) == 198  # echoed whole


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} in the output: not RFC 8259 JSON")


XCLI_TOKENIZE = [sys.executable, "-m", "xcli", "tokenize", "-m", "xlnet-base-cased"]


def _size(path: Path) -> int:
    """0 for a file that went away between the listing and the look (published or removed)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mid_run(target: Path, first_line: bytes) -> "subprocess.Popen[bytes]":
    """An ``xcli tokenize -o target`` process that has written its answer to ``first_line`` and waits for more."""
    temporaries = f".{target.name}.*.tmp"  # (a run's fresh ``.new`` entry becomes its ``.tmp`` at once)
    others = set(target.parent.glob(temporaries))
    run_ = subprocess.Popen([*XCLI_TOKENIZE, "-o", str(target)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run_.stdin.write(first_line)  # and the pipe stays open: the run waits for more
        run_.stdin.flush()
        deadline = time.monotonic() + 60
        while not any(_size(p) for p in set(target.parent.glob(temporaries)) - others):
            assert time.monotonic() < deadline and run_.poll() is None, "the run never wrote its first line"
            time.sleep(0.05)
    except BaseException:
        run_.kill()
        run_.communicate()
        raise
    return run_


@needs_xlnet
def test_a_run_killed_with_sigkill_leaves_a_temporary_the_next_run_removes(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    killed = _mid_run(target, b"Hello world\n")
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(60) == -signal.SIGKILL
    killed.stdin.close()
    killed.stderr.close()
    [left] = tmp_path.glob(".out.jsonl.*")
    result = subprocess.run([*XCLI_TOKENIZE, "-o", str(target), "Goodbye"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"xcli: warning: removed {left}" in result.stderr and "killed" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert jsonl(target.read_text())[0]["tokens"] == ["▁", "Goodbye", "<sep>", "<cls>"]


@needs_xlnet
def test_two_runs_to_one_output_one_wins_the_other_keeps_a_partial(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    first = _mid_run(target, b'{"id": "first", "text": "a"}\n')
    second = _mid_run(target, b'{"id": "second", "text": "b"}\n')  # both got past the check for PATH
    _, first_err = first.communicate(timeout=60)
    _, second_err = second.communicate(timeout=60)
    assert first.returncode == 0 and jsonl(target.read_text())[0]["id"] == "first"
    assert second.returncode == 2, second_err
    assert b"another run wrote the file while this one ran" in second_err
    assert jsonl((tmp_path / "out.jsonl.partial").read_text())[0]["id"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.partial"]
