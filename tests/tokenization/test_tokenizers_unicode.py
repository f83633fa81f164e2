"""Every tokenizer refuses text that is not valid Unicode, the same way, on every way in (issue 11).

A lone surrogate (from a JSON ``"\\ud800"`` escape) used to stop a whole run inside sentencepiece
("Unable to cast Python instance ... to C++ type"), or was silently dropped by the WordPiece
tokenizer. Now each raises ``TokenizerError`` naming the position, and each command turns it into
an error record for that record only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from conftest import shared_path
from spm_fixtures import SMALL_SPM
from xcli.app import app
from xcli.models import builtin_root
from xcli_models.tokenization import AutoTokenizer, Tokenizer, TokenizerError
from xcli_models.tokenization.base import check_text
from xcli_models.tokenization.byte_bpe import MvpTokenizerFast
from xcli_models.tokenization.moses_bpe import XLMTokenizer
from xcli_models.tokenization.sentencepiece import XGLMTokenizer, XLMProphetNetTokenizer

BUILTIN = builtin_root()


def _builtin(*parts: str) -> Callable[[], Tokenizer]:
    return lambda: AutoTokenizer.from_pretrained(BUILTIN.joinpath(*parts))


def _small_spm(cls: type) -> Callable[[], Tokenizer]:
    return lambda: cls(str(shared_path(*SMALL_SPM)))


def _xlm() -> Tokenizer:
    vocab = shared_path("tokenizers", "xlm", "enfr", "xlm-mlm-enfr-1024.vocab.json")
    return XLMTokenizer(str(vocab), str(shared_path("tokenizers", "xlm", "enfr", "codes_enfr")))


TOKENIZERS = {
    "xlnet": _builtin("xlnet", "xlnet-base-cased"),
    "mvp": _builtin("RUCAIBox", "mvp"),
    "mvp-fast": lambda: MvpTokenizerFast.from_pretrained(BUILTIN / "RUCAIBox" / "mvp"),
    "prophetnet": _builtin("microsoft", "prophetnet-large-uncased"),
    "xglm": _small_spm(XGLMTokenizer),
    "xlm-prophetnet": _small_spm(XLMProphetNetTokenizer),
    "xlm": _xlm,
}

CALLS: dict[str, Callable[[Tokenizer, str], Any]] = {
    "tokenize": lambda tok, text: tok.tokenize(text),
    "tokenize_with_offsets": lambda tok, text: tok.tokenize_with_offsets(text),
    "encode": lambda tok, text: tok.encode(text),
    "encode_plus offsets": lambda tok, text: tok.encode_plus(text, return_offsets=True),
    "batch": lambda tok, text: tok(["fine", text], padding=True),
    "keyword": lambda tok, text: tok.encode_plus(text=text),
}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return TOKENIZERS[request.param]()


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_lone_surrogate_is_refused_with_its_position(tokenizer: Tokenizer, call: str) -> None:
    with pytest.raises(TokenizerError) as refused:
        CALLS[call](tokenizer, "ab\ud800c")
    assert str(refused.value) == "the text is not valid Unicode: a lone surrogate (U+D800) at character 2"


def test_the_second_text_of_a_pair_is_checked_too(tokenizer: Tokenizer) -> None:
    for call in (lambda: tokenizer.encode("fine", "\udfff"), lambda: tokenizer(["a"], ["\udc00b"])):
        with pytest.raises(TokenizerError, match=r"^the second text of the pair is not valid Unicode: .* character 0$"):
            call()


def test_valid_unicode_still_goes_through(tokenizer: Tokenizer) -> None:
    text = "naïve café 😀 \u2028 \ufeff 漢字 \x00 e\u0301"  # astral, separators, BOM, NUL, combining
    assert tokenizer.encode(text) == tokenizer.encode_plus(text).input_ids
    assert tokenizer.tokenize(text)


def test_a_subclass_overriding_a_way_in_is_still_checked() -> None:
    base = TOKENIZERS["prophetnet"]()

    class Shortcut(type(base)):  # type: ignore[misc]
        def tokenize(self, text: str, **options: Any) -> list[str]:
            return list(text)  # skips the base class entirely

    shortcut = Shortcut.from_pretrained(BUILTIN / "microsoft" / "prophetnet-large-uncased")
    assert shortcut.tokenize("ab") == ["a", "b"]
    with pytest.raises(TokenizerError, match="U\\+DBFF"):
        shortcut.tokenize("\udbff")


def test_check_text_fast_path_and_non_strings() -> None:
    check_text("plain ascii")
    check_text("ünïcödé 😀")
    check_text(None)  # not a string: not its business (the record layer reports wrong types)
    with pytest.raises(TokenizerError, match="at character 3$"):
        check_text("😀😀😀\udc80")  # characters, not UTF-16 units or bytes


# -------------------------------------------------- model commands on XLNet
@pytest.fixture(scope="module")
def tiny_xlnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from xcli_models import XLNetConfig, XLNetForSequenceClassification, XLNetLMHeadModel

    root = tmp_path_factory.mktemp("tiny")
    config = dict(vocab_size=32000, d_model=16, n_layer=1, n_head=2, d_inner=32, pad_token_id=5, bos_token_id=1,
                  eos_token_id=2)
    torch.manual_seed(0)
    models = {
        "sst": XLNetForSequenceClassification(XLNetConfig(**config, id2label={0: "negative", 1: "positive"})),
        "lm": XLNetLMHeadModel(XLNetConfig(**config)),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        for file in (BUILTIN / "xlnet" / "xlnet-base-cased").iterdir():
            if file.name != "config.json":
                shutil.copy(file, root / name / file.name)
    return root


@pytest.mark.parametrize(("command", "model", "extra"), [
    ("classify", "sst", []),
    ("generate", "lm", ["--max-new-tokens", "2"]),
])
def test_model_commands_give_an_error_record_for_a_surrogate(tiny_xlnet: Path, command: str, model: str,
                                                             extra: list[str]) -> None:
    records = '{"id": "a", "text": "a fine film"}\n{"id": "s", "text": "x\\ud800y"}\n{"id": "c", "text": "dull"}\n'
    result = CliRunner().invoke(app, [command, "-m", str(tiny_xlnet / model), "--device", "cpu", *extra],
                                input=records)
    assert result.exit_code == 4, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", "s", "c"]
    assert "error" not in out[0] and "error" not in out[2]
    assert out[1]["error"]["type"] == "tokenizer_error" and "U+D800) at character 1" in out[1]["error"]["message"]
