"""Tiny random oracle checkpoints with the real tokenizers from ../shared/data.

The builders (XLM en-fr BPE, XLNet spiece.model, the MVP/RoBERTa byte-level BPE, with vocab_size
set to the tokenizer's size) and the comparison helpers shared by the task and CLI tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from conftest import shared_path
from oracle import ATOL, transformers

LANGS = {"en": 0, "fr": 1}
LABELS = {0: "B-PER", 1: "I-PER", 2: "O", 3: "B-LOC", 4: "I-LOC"}

#: tiny sizes with odd head counts
SIZES = {
    "xlm": dict(emb_dim=24, n_layers=2, n_heads=3, max_position_embeddings=128, n_langs=2, lang2id=LANGS,
                id2lang={v: k for k, v in LANGS.items()}),
    "xlnet": dict(d_model=24, n_layer=2, n_head=3, d_inner=32),
    "mvp": dict(d_model=24, encoder_layers=1, decoder_layers=1, encoder_attention_heads=3, decoder_attention_heads=3,
                encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128),
}
CONFIGS = {"xlm": "XLMConfig", "xlnet": "XLNetConfig", "mvp": "MvpConfig"}


def oracle_tokenizer(family: str) -> Any:
    """The oracle's slow tokenizer of a family, built from the real files in ../shared/data."""
    if family == "xlm":
        return transformers.XLMTokenizer(
            str(shared_path("tokenizers", "xlm", "enfr", "xlm-mlm-enfr-1024.vocab.json")),
            str(shared_path("tokenizers", "xlm", "enfr", "codes_enfr")),
            lang2id=LANGS, id2lang={v: k for k, v in LANGS.items()},
        )
    if family == "xlnet":
        return transformers.XLNetTokenizer(str(shared_path("tokenizers", "xlnet", "spiece.model")))
    return transformers.MvpTokenizer(
        str(shared_path("tokenizers", "roberta_bart_mvp", "vocab.json")),
        str(shared_path("tokenizers", "roberta_bart_mvp", "merges.txt")),
    )


def build(directory: Path, family: str, class_name: str, seed: int = 0, **config: Any) -> tuple[Any, Any, Path]:
    """A random oracle model with the family's real tokenizer, saved to ``directory``.

    Every weight is perturbed so that predictions are far from uniform (no near-ties in top-k).
    Returns the oracle model (eval), the oracle's slow tokenizer and the directory.
    """
    tokenizer = oracle_tokenizer(family)
    cfg = getattr(transformers, CONFIGS[family])(vocab_size=len(tokenizer), **{**SIZES[family], **config})
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer, directory


def oracle_pipeline(task: str, model: Any, tokenizer: Any) -> Any:
    return transformers.pipeline(task, model=model, tokenizer=tokenizer, device="cpu")


def assert_predictions(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """One blank's predictions: same tokens and sequences, scores within ATOL."""
    assert [p["token_id"] for p in ours] == [int(p["token"]) for p in theirs]
    assert [p["token"] for p in ours] == [p["token_str"] for p in theirs]
    assert [p["sequence"] for p in ours] == [p["sequence"] for p in theirs]
    for a, b in zip(ours, theirs):
        assert abs(a["score"] - float(b["score"])) <= ATOL


def per_blank(reference: Any) -> list[list[dict[str, Any]]]:
    """The pipeline's answer for one text as one list per blank (it returns a bare list for one)."""
    return [reference] if reference and isinstance(reference[0], dict) else reference
