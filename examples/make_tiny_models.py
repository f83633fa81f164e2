"""Make small random-weight checkpoints to try every xcli command without downloading anything.

    python examples/make_tiny_models.py DIR

writes DIR/xlnet-tiny-sst2 (XLNetForSequenceClassification, labels negative/positive),
DIR/xlnet-tiny-lm (XLNetLMHeadModel), DIR/mvp-tiny (MvpForConditionalGeneration) and
DIR/mvp-tiny-qa (MvpForQuestionAnswering), each with the real tokenizer shipped with xcli and
weights drawn with a fixed seed. They are Hugging Face checkpoint directories: `transformers`
loads them too. The weights are random, so the answers are nonsense; the plumbing is real.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from xcli.models import builtin_root
from xcli_models import (
    MvpConfig,
    MvpForConditionalGeneration,
    MvpForQuestionAnswering,
    XLNetConfig,
    XLNetForSequenceClassification,
    XLNetLMHeadModel,
)

TOKENIZERS = {
    "xlnet": builtin_root() / "xlnet" / "xlnet-base-cased",
    "mvp": builtin_root() / "RUCAIBox" / "mvp",
}
XLNET = dict(vocab_size=32000, d_model=64, n_layer=2, n_head=4, d_inner=128, pad_token_id=5, bos_token_id=1,
             eos_token_id=2)
MVP = dict(vocab_size=50267, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256,
           pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)


def save(model: torch.nn.Module, tokenizer: str, target: Path) -> None:
    model.save_pretrained(target)
    for file in TOKENIZERS[tokenizer].iterdir():
        if file.name != "config.json":
            shutil.copy(file, target / file.name)
    print(target)


def main(root: Path) -> None:
    torch.manual_seed(0)
    labels = {0: "negative", 1: "positive"}
    save(XLNetForSequenceClassification(XLNetConfig(**XLNET, id2label=labels)), "xlnet", root / "xlnet-tiny-sst2")
    save(XLNetLMHeadModel(XLNetConfig(**XLNET)), "xlnet", root / "xlnet-tiny-lm")
    save(MvpForConditionalGeneration(MvpConfig(**MVP)), "mvp", root / "mvp-tiny")
    save(MvpForQuestionAnswering(MvpConfig(**MVP)), "mvp", root / "mvp-tiny-qa")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[0] + "\nusage: python examples/make_tiny_models.py DIR")
    main(Path(sys.argv[1]))
