"""What XLNet's heads can do (torch-free: ``xcli models`` and ``xcli info`` read it).

Every head runs without memory at inference, and its relative positions let a ``last`` summary
pool over left-padded rows.
"""

from __future__ import annotations

from ...registry import Capabilities

_COMMON = dict(forward_options=(("use_mems", False),), relative_positions=True)

HEADS = {
    # the permutation LM: fill-mask and scoring through perm_mask/target_mapping; trains causal-lm or plm
    "XLNetLMHeadModel": Capabilities(
        fill_mask=True, generate="causal", train="causal-lm", permutation=True, unpadded=True, **_COMMON,
    ),
    "XLNetForSequenceClassification": Capabilities(classify="sequence", train="sequence-classification", **_COMMON),
    "XLNetForTokenClassification": Capabilities(classify="token", train="token-classification", **_COMMON),
    "XLNetForMultipleChoice": Capabilities(classify="choice", train="multiple-choice", **_COMMON),
    "XLNetForQuestionAnsweringSimple": Capabilities(qa="span", train="question-answering", **_COMMON),
    "XLNetForQuestionAnswering": Capabilities(qa="beam", train="question-answering", **_COMMON),
}
