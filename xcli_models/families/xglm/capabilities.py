"""What XGLM's head can do (torch-free: ``xcli models`` and ``xcli info`` read it)."""

from __future__ import annotations

from ...registry import Capabilities

HEADS = {
    # its loss compares logits t with label t + 1 itself
    "XGLMForCausalLM": Capabilities(generate="causal", train="causal-lm", shifts_labels=True),
}
