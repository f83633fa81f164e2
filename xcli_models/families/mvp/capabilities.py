"""What MVP's heads can do (torch-free: ``xcli models`` and ``xcli info`` read it).

No head takes ``token_type_ids``, every inference call runs without a cache, and the
classification head pools at the last ``</s>``.
"""

from __future__ import annotations

from ...registry import Capabilities

_COMMON = dict(forward_options=(("use_cache", False),), token_types=False)

HEADS = {
    "MvpForConditionalGeneration": Capabilities(
        fill_mask=True, generate="seq2seq", train="seq2seq", task_templates=True, **_COMMON,
    ),
    "MvpForSequenceClassification": Capabilities(
        classify="sequence", train="sequence-classification", pools_at_eos=True, **_COMMON,
    ),
    "MvpForQuestionAnswering": Capabilities(qa="span", train="question-answering", **_COMMON),
    "MvpForCausalLM": Capabilities(generate="causal", train="causal-lm", unpadded=True, task_templates=True, **_COMMON),
}
