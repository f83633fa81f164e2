"""Every family against the reference on the CLI's kernel path (``xcli_models.kernels.inference``).

The family parity tests call the models directly. A command calls them inside
``kernels.inference()``: ``torch.inference_mode`` with the matrix products through oneDNN on CPU
(the tasks enter it as ``tasks.common.inference``, ``generate`` through the engine). Here each
family's heads that commands use (fill-mask / score / generate's LM heads, classify's sequence
heads) are loaded the way a command loads them (``AutoModel``: the class config.json names) from a
tiny random checkpoint the reference saved, run inside that same context, and compared with the
reference within the family parity tests' tolerance. The products are checked to have gone
through oneDNN, so the path measured is the path the CLI runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from oracle import ATOL, assert_outputs_close, oracle_checkpoint, randomize, transformers
from xcli_models import kernels
from xcli_models.auto import AutoModel
from xcli_models.tasks.common import inference

pytestmark = pytest.mark.usefixtures("one_thread")
transformers.logging.set_verbosity_error()

VOCAB = 61
EOS = 2


def _xlm(**kw: Any) -> Any:
    return transformers.XLMConfig(vocab_size=VOCAB, emb_dim=24, n_layers=2, n_heads=3, n_langs=2,
                                  max_position_embeddings=32, pad_index=1, pad_token_id=1, **kw)


def _xlnet(**kw: Any) -> Any:
    return transformers.XLNetConfig(vocab_size=VOCAB, d_model=24, n_layer=2, n_head=3, d_inner=37, mem_len=None, **kw)


def _xglm(**kw: Any) -> Any:
    return transformers.XGLMConfig(vocab_size=VOCAB, d_model=24, attention_heads=3, num_layers=2, ffn_dim=40,
                                   max_position_embeddings=32, **kw)


def _prophetnet(kind: str) -> Callable[..., Any]:
    def config(**kw: Any) -> Any:
        return getattr(transformers, f"{kind}Config")(
            vocab_size=VOCAB, hidden_size=30, encoder_ffn_dim=22, decoder_ffn_dim=26, num_encoder_layers=2,
            num_decoder_layers=2, num_encoder_attention_heads=3, num_decoder_attention_heads=5,
            max_position_embeddings=40, ngram=2, num_buckets=8, relative_max_distance=12, **kw)
    return config


def _mvp(**kw: Any) -> Any:
    return transformers.MvpConfig(vocab_size=VOCAB, max_position_embeddings=40, d_model=24, encoder_layers=2,
                                  decoder_layers=2, encoder_attention_heads=3, decoder_attention_heads=3,
                                  encoder_ffn_dim=20, decoder_ffn_dim=28, **kw)


#: (reference class, its config, padding side, extra inputs, the output fields compared)
CASES: dict[str, tuple[str, Callable[..., Any], str, tuple[str, ...], list[str]]] = {
    "xlm-lm": ("XLMWithLMHeadModel", _xlm, "right", ("langs",), ["logits"]),
    "xlm-classify": ("XLMForSequenceClassification", _xlm, "right", ("langs",), ["logits"]),
    "xlnet-lm": ("XLNetLMHeadModel", _xlnet, "left", (), ["logits"]),
    "xlnet-classify": ("XLNetForSequenceClassification", _xlnet, "left", (), ["logits"]),
    "xglm-lm": ("XGLMForCausalLM", _xglm, "left", (), ["logits"]),
    "prophetnet-seq2seq": ("ProphetNetForConditionalGeneration", _prophetnet("ProphetNet"), "right", ("decoder",),
                           ["logits", "logits_ngram"]),
    "xlm-prophetnet-seq2seq": ("XLMProphetNetForConditionalGeneration", _prophetnet("XLMProphetNet"), "right",
                               ("decoder",), ["logits", "logits_ngram"]),
    "mvp-seq2seq": ("MvpForConditionalGeneration", _mvp, "right", ("decoder",), ["logits"]),
    "mvp-classify": ("MvpForSequenceClassification", _mvp, "none", (), ["logits"]),
}


def inputs(padding: str, extra: tuple[str, ...], seed: int) -> dict[str, torch.Tensor]:
    """Ids (3, 9) of rows 9, 6 and 4 tokens long padded on ``padding`` (none: all full, each row
    ending in one </s>, as a sequence-classification head of an encoder-decoder wants)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    if padding == "none":
        ids[:, -1] = EOS
    else:
        for row, n in enumerate([9, 6, 4]):
            pad = slice(0, 9 - n) if padding == "left" else slice(n, 9)
            mask[row, pad] = 0
            ids[row, pad] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if "langs" in extra:
        out["langs"] = torch.randint(0, 2, ids.shape, generator=g)
    if "decoder" in extra:
        out["decoder_input_ids"] = torch.randint(3, VOCAB, (3, 5), generator=g)
    return out



class _WeightProducts(TorchFunctionMode):
    """Records the matrix products of ``model``'s weights that reach torch's own kernels (``F.linear``
    and the matmuls; oneDNN's are called as ``torch.ops`` and are not seen here)."""

    PRODUCTS = (F.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.addmm,
                torch.einsum)

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.weights = {p.data_ptr(): name for name, p in model.named_parameters() if p.dim() >= 2}
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in self.PRODUCTS:
            for arg in (*args, *(kwargs or {}).values()):
                if isinstance(arg, torch.Tensor) and arg.data_ptr() in self.weights:
                    self.seen.append(self.weights[arg.data_ptr()])
        return func(*args, **(kwargs or {}))


def test_the_tasks_enter_the_one_kernel_context(monkeypatch: pytest.MonkeyPatch) -> None:
    entered: list[dict[str, Any]] = []
    real = kernels.inference

    def spy(*args: Any, **kwargs: Any) -> Any:
        entered.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "inference", spy)
    with inference():
        pass
    assert entered == [{"batch_invariant": True}]  # the tasks' numbers never depend on their batch


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_on_the_cli_kernel_path_match_the_reference(
    tmp_path: Path, routed: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch, case: str, seed: int
) -> None:
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: ())  # every product oneDNN may take, on any processor
    class_name, config, padding, extra, fields = CASES[case]
    torch.manual_seed(seed)
    ref = getattr(transformers, class_name)(config()).eval()
    randomize(ref, seed)
    directory = oracle_checkpoint(ref, tmp_path / case)
    ours = AutoModel.from_pretrained(directory).eval()  # the class config.json names, as a command loads it
    assert type(ours).__name__ == class_name and not ours.load_report.lines(), ours.load_report.lines()

    batch = inputs(padding, extra, seed)
    with torch.no_grad():
        theirs = ref(**{k: v.clone() for k, v in batch.items()})
    with kernels.inference(), _WeightProducts(ours) as unrouted:  # what every command's model call runs in
        mine = ours(**batch)

    if kernels.onednn_available():
        assert routed, "no product went through oneDNN: this is not the CLI's path"
        # ... and every product of a weight
        assert unrouted.seen == [], f"products of weights torch computed: {unrouted.seen}"
    assert_outputs_close(mine, theirs, fields=fields, atol=ATOL)
