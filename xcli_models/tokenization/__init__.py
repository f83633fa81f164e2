"""Tokenizers of the five families, one module per tokenizer kind; no torch here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import FAMILIES, load_object
from .base import AddedToken, Encoding, Tokenizer, TokenizerError, read_json_object

__all__ = ["AddedToken", "AutoTokenizer", "Encoding", "Tokenizer", "TokenizerError", "tokenizer_class_for"]


def tokenizer_class_for(directory: str | Path) -> type[Tokenizer]:
    """Pick the tokenizer class of a checkpoint directory.

    config.json's ``model_type`` names the family; tokenizer_config.json's
    ``tokenizer_class`` picks among that family's tokenizers (English ProphetNet
    uses WordPiece, XLM-ProphetNet SentencePiece). Without config.json, the
    ``tokenizer_class`` alone decides.
    """
    directory = Path(directory)
    config = directory / "config.json"
    tok_config = directory / "tokenizer_config.json"
    wanted = None
    if tok_config.exists():
        wanted = read_json_object(tok_config).get("tokenizer_class")
        if isinstance(wanted, str):
            wanted = wanted.removesuffix("Fast")
    if config.exists():
        model_type = read_json_object(config).get("model_type")
        if model_type not in FAMILIES:
            known = ", ".join(sorted(FAMILIES))
            raise TokenizerError(f"{config}: model_type {model_type!r} is not supported (xcli runs: {known})")
        family = FAMILIES[model_type]
        if wanted in family.tokenizers_by_class:
            return load_object(family.tokenizers_by_class[wanted])
        return load_object(family.tokenizer)
    if wanted:
        for family in FAMILIES.values():
            for ref in (family.tokenizer, *family.tokenizers_by_class.values()):
                if ref.rsplit(":", 1)[1] == wanted:
                    return load_object(ref)
        raise TokenizerError(f"{tok_config}: tokenizer_class {wanted!r} is not one xcli supports")
    raise TokenizerError(f"{directory} has neither config.json nor tokenizer_config.json to tell its tokenizer")


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(dir)`` builds the tokenizer the checkpoint's files name."""

    @staticmethod
    def from_pretrained(path: str | Path, **overrides: Any) -> Tokenizer:
        return tokenizer_class_for(path).from_pretrained(path, **overrides)
