"""A fake model for CLI plumbing tests, usable in-process and in subprocesses.

``FakeTokenizer`` splits on whitespace over a small vocabulary, wraps a text in ``<s>`` ...
``</s>``, gives character offsets, and fails on the word ``FAIL`` (a per-record tokenizer
error). ``make_fake_model(dir)`` writes a checkpoint folder whose config.json names the
test-only model_type ``xcli-fake``; ``install()`` registers that family, and subprocesses
start through :data:`BOOT`, which installs it before running xcli.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xcli_models.registry import FAMILIES
from xcli_models.tokenization import Tokenizer, TokenizerError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL_TYPE = "xcli-fake"
WORDS = ["<pad>", "<s>", "</s>", "<unk>", "hello", "world", "the", "cat", "sat", "on", "mat", "a", "b", "c"]
# a copy of a real entry, so that fields the registry gains later keep sensible values
FAKE_FAMILY = dataclasses.replace(
    FAMILIES["xlnet"], name="Fake", tokenizer="test_cli_support:FakeTokenizer", tokenizers_by_class={}
)

@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake checkpoint folder, its family registered for this test only."""
    monkeypatch.setitem(FAMILIES, MODEL_TYPE, FAKE_FAMILY)
    monkeypatch.delenv("XCLI_MODEL", raising=False)
    monkeypatch.delenv("XCLI_DEBUG", raising=False)
    return make_fake_model(tmp_path / "fake-model")


#: python -c BOOT ARGS... runs xcli with the fake family registered
BOOT = "import sys, test_cli_support as s; s.install(); from xcli.__main__ import main; main(sys.argv[1:])"


class FakeTokenizer(Tokenizer):
    vocab_files = {"vocab_file": "vocab.txt"}
    default_special_tokens = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}

    def __init__(self, vocab_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.words = Path(vocab_file).read_text(encoding="utf-8").split("\n")[:-1]
        self.index = {w: i for i, w in enumerate(self.words)}
        self._finish_init()

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def _tokenize(self, text: str, **options: Any) -> list[str]:
        if "FAIL" in text:
            raise TokenizerError("the fake tokenizer cannot encode FAIL")
        return text.lower().split()

    def tokenize_with_offsets(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        return self._tokenize(text), spans

    def _token_to_id(self, token: str) -> int | None:
        return self.index.get(token)

    def _id_to_token(self, index: int) -> str:
        return self.words[index]

    def build_inputs_with_special_tokens(self, ids_0: list[int], ids_1: list[int] | None = None) -> list[int]:
        out = [self.bos_token_id, *ids_0, self.eos_token_id]
        return out if ids_1 is None else [*out, *ids_1, self.eos_token_id]

    def get_special_tokens_mask(self, ids_0, ids_1=None, already_has_special_tokens=False):  # noqa: ANN001
        if already_has_special_tokens:
            return super().get_special_tokens_mask(ids_0, ids_1, True)
        mask = [1, *[0] * len(ids_0), 1]
        return mask if ids_1 is None else [*mask, *[0] * len(ids_1), 1]


def install() -> None:
    """Register the fake family (idempotent), for good: only for the subprocesses :data:`BOOT` starts
    (a test in this process uses the ``fake_model`` fixture, which undoes it)."""
    FAMILIES[MODEL_TYPE] = FAKE_FAMILY


def make_fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": MODEL_TYPE}))
    (folder / "vocab.txt").write_text("".join(w + "\n" for w in WORDS), encoding="utf-8")
    return folder


def invoke(*args: str, input: str | bytes | None = None, env: dict | None = None) -> Any:
    """``xcli ARGS`` in this process (typer's CliRunner): the result's exit_code, stdout, stderr."""
    from typer.testing import CliRunner

    from xcli.app import app

    return CliRunner().invoke(app, list(args), input=input, env=env)


def jsonl(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a command's JSONL output."""
    return [json.loads(line) for line in text.splitlines()]


def xcli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("XCLI_MODEL", None)
    env.pop("XCLI_DEBUG", None)
    env.update(extra)
    return env


def _interruptible() -> None:
    """In the child: Ctrl-C back to its default, even when the test run itself ignores it (a
    background job of a shell), so that the child's Python turns SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def xcli_process(*args: str, **popen: Any) -> subprocess.Popen:
    """xcli (with the fake family) as a subprocess; pipes unless told otherwise."""
    popen.setdefault("stdin", subprocess.PIPE)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("env", xcli_env())
    popen.setdefault("preexec_fn", _interruptible)
    return subprocess.Popen([sys.executable, "-c", BOOT, *args], **popen)


# ---------------------------------------------------------------- the fake's own checks
def test_fake_tokenizer_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, MODEL_TYPE, FAKE_FAMILY)  # for this test only: never left registered
    from xcli_models.tokenization import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_fake_model(tmp_path))
    encoding = tokenizer.encode_plus("Hello world zebra", return_offsets=True)
    assert tokenizer.convert_ids_to_tokens(encoding.input_ids) == ["<s>", "hello", "world", "<unk>", "</s>"]
    assert encoding.offsets == [(0, 0), (0, 5), (6, 11), (12, 17), (0, 0)]
    assert tokenizer.decode(encoding.input_ids, skip_special_tokens=True) == "hello world"
    assert tokenizer.decode(encoding.input_ids) == "<s> hello world <unk> </s>"
