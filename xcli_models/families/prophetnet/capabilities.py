"""What the ProphetNet and XLM-ProphetNet heads can do (torch-free: ``xcli models`` and ``xcli info`` read it)."""

from __future__ import annotations

from ...registry import Capabilities

# sentence ends are [X_SEP] tokens
_COMMON = dict(sentence_separators=True)
_CAUSAL = Capabilities(generate="causal", train="causal-lm", unpadded=True, **_COMMON)
_SEQ2SEQ = Capabilities(generate="seq2seq", train="seq2seq", **_COMMON)

PROPHETNET_HEADS = {"ProphetNetForCausalLM": _CAUSAL, "ProphetNetForConditionalGeneration": _SEQ2SEQ}
XLM_PROPHETNET_HEADS = {"XLMProphetNetForCausalLM": _CAUSAL, "XLMProphetNetForConditionalGeneration": _SEQ2SEQ}
