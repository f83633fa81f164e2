"""MVP: a BART-shaped post-LN encoder-decoder, with optional layer-wise prompts.

The stack is assembled from the shared blocks: learned positions offset by 2,
``layernorm_embedding`` after the embeddings, post-LN ``TransformerLayer``\\ s.
What is MVP's own is the prompt (``Prompt``): with ``config.use_prompt`` a small
MLP turns ``prompt_length`` learned vectors into extra keys and values for every
attention layer (encoder self-attention, decoder self- and cross-attention), put
before the real ones through ``Attention``'s ``prefix`` and always visible.
``set_lightweight_tuning()`` freezes everything but these prompt modules.

Where things are: ``prompt.py`` (the prompts), ``stacks.py`` (the encoder and decoder
stacks), this file (the models and their heads).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ...generation.adapters import Parts, last_hidden_state
from ...heads import (
    CausalLMHead, Seq2SeqLMHead, SpanHead, TaskModel, head_arguments, sequence_classification_loss,
    token_classification_loss,
)
from ...layers import Linear
from ...modeling import EncoderDecoderModel, PreTrainedModel
from ...outputs import (
    BaseModelOutput,
    LMOutput,
    Seq2SeqClassifierOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    Seq2SeqSpanQAOutput,
)
from .config import MvpConfig
from .names import MVP_NAMES
from .prompt import Prompt
from .stacks import POSITION_OFFSET, MvpDecoder, MvpEncoder

__all__ = [
    "MvpForCausalLM",
    "MvpForConditionalGeneration",
    "MvpForQuestionAnswering",
    "MvpForSequenceClassification",
    "MvpModel",
    "MvpPreTrainedModel",
    "shift_tokens_right",
    "MvpEncoder", "MvpDecoder", "Prompt", "POSITION_OFFSET",
]


def shift_tokens_right(
    input_ids: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs from labels: start token first, labels moved one step right, -100 -> pad.

    Shape: (B, T) -> (B, T).
    """
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder inputs from labels")
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id must be set to build decoder inputs from labels")
    shifted = input_ids.new_empty(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


# ------------------------------------------------------------------ parts
class ClassificationHead(nn.Module):
    """``out_proj(dropout(tanh(dense(dropout(x)))))``. Shape: (B, D) -> (B, num_labels)."""

    def __init__(self, dim: int, inner_dim: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = Linear(dim, inner_dim)
        self.out_proj = Linear(inner_dim, num_labels)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(F.dropout(x, p=self.dropout, training=self.training)))
        return self.out_proj(F.dropout(x, p=self.dropout, training=self.training))


class MvpPreTrainedModel(PreTrainedModel):
    """Shared by the MVP classes: config, names, initialisation and tied embeddings.

    The encoder's and decoder's token embeddings are the ``shared`` module itself, whatever
    ``tie_word_embeddings`` says (``shared_weights``); only the output projection's tie
    (``output_ties``) follows ``tie_word_embeddings``, as in the reference.
    """

    config_class: ClassVar[type[MvpConfig]] = MvpConfig
    base_model_prefix: ClassVar[str] = "model"
    names = MVP_NAMES
    # prompts missing from a checkpoint (lightweight tuning of a plain MVP checkpoint) start fresh
    ignore_missing: ClassVar[tuple[str, ...]] = (r"(^|\.)(self|cross)_attn_prompt\.",)

    def set_lightweight_tuning(self) -> None:
        """Train only the prompts: freeze every other parameter (the head's too)."""
        if not self.config.use_prompt:
            raise ValueError("lightweight tuning trains the prompts: load or build the model with use_prompt=True")
        self.requires_grad_(False)
        for module in self.modules():
            if isinstance(module, Prompt):
                module.requires_grad_(True)


class MvpModel(EncoderDecoderModel, MvpPreTrainedModel):
    """The bare encoder-decoder; returns the decoder's last hidden states."""

    output = Seq2SeqModelOutput
    shared_weights = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}
    ignore_unexpected = (*MvpPreTrainedModel.ignore_unexpected, r"^final_logits_bias$")

    def __init__(self, config: MvpConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = MvpEncoder(config, self.shared, config.use_prompt)
        self.decoder = MvpDecoder(config, self.shared, config.use_prompt)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def decoder_inputs(
        self, input_ids: torch.Tensor | None, decoder_input_ids: torch.Tensor | None,
        decoder_inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor | None:
        if decoder_input_ids is not None or decoder_inputs_embeds is not None:
            return decoder_input_ids
        # denoising pre-training: without decoder inputs, the decoder reads input_ids shifted right
        if input_ids is None:
            raise ValueError("without decoder_input_ids or decoder_inputs_embeds, input_ids must be given")
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)


_SEQ2SEQ_TIES = {
    "model.encoder.embed_tokens.weight": "model.shared.weight",
    "model.decoder.embed_tokens.weight": "model.shared.weight",
}
#: the classifier and span heads take no cache arguments (as in the reference)
_NO_CACHE = ("past_key_values", "cache_position")


class MvpForConditionalGeneration(Seq2SeqLMHead, MvpPreTrainedModel, TaskModel):
    """MVP with its language-modelling head (logits over the vocabulary plus ``final_logits_bias``).

    With ``labels`` and no decoder inputs, the decoder reads the labels shifted right.
    """

    base_class = MvpModel
    shared_weights = _SEQ2SEQ_TIES
    output_ties = {"lm_head.weight": "model.shared.weight"}
    arguments = head_arguments(MvpModel.forward, {"decoder_inputs_embeds": ("labels",)})
    output = Seq2SeqLMOutput

    def add_head(self, config: MvpConfig) -> None:
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)

    def generation_parts(self) -> Parts:
        def head(hidden: torch.Tensor) -> torch.Tensor:
            # the bias added into the head's new logits: a batch of 8 rows' new sum over the vocabulary
            # took 0.45 ms a step, more than the sum (new memory)
            return self.lm_head(hidden).add_(self.final_logits_bias[0])

        return Parts(decoder=self.model.decoder, hidden=last_hidden_state, head=head, encoder=self.model.encoder)

    def reset_buffers(self) -> None:
        """A checkpoint without ``final_logits_bias`` means a zero bias."""
        self.final_logits_bias = torch.zeros(1, self.lm_head.out_features, dtype=self.model.shared.weight.dtype)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        if own["labels"] is not None:
            inputs["use_cache"] = False
        return super().base_inputs(inputs, own)

    def head(self, base: Seq2SeqModelOutput, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.lm_head(base.last_hidden_state) + self.final_logits_bias
        return {"loss": None if labels is None else token_classification_loss(logits, labels), "logits": logits}


class MvpForSequenceClassification(MvpPreTrainedModel, TaskModel):
    """MVP with a classifier over the decoder state at the last ``<eos>`` of each input."""

    base_class = MvpModel
    shared_weights = _SEQ2SEQ_TIES
    arguments = head_arguments(MvpModel.forward, {"decoder_inputs_embeds": ("labels",)}, drop=_NO_CACHE)
    output = Seq2SeqClassifierOutput

    def add_head(self, config: MvpConfig) -> None:
        self.classification_head = ClassificationHead(
            config.d_model, config.d_model, config.num_labels, config.classifier_dropout
        )

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        if own["labels"] is not None:
            inputs["use_cache"] = False
        own["input_ids"] = inputs.get("input_ids")
        if own["input_ids"] is None:
            raise NotImplementedError(
                f"{type(self).__name__} pools at the <eos> tokens of input_ids: inputs_embeds alone are not supported"
            )
        return inputs

    def head(
        self, base: Seq2SeqModelOutput, labels: torch.Tensor | None = None, input_ids: torch.Tensor | None = None
    ) -> dict[str, Any]:
        hidden = base.last_hidden_state  # (B, T, D)
        eos = input_ids.eq(self.config.eos_token_id).to(hidden.device)
        counts = eos.sum(1)
        if (counts != counts[0]).any():
            raise ValueError("All examples must have the same number of <eos> tokens.")
        if int(counts[0]) == 0:
            raise ValueError("MvpForSequenceClassification needs an <eos> token in every input")
        pooled = hidden[eos, :].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1, :]  # (B, D): last <eos>
        logits = self.classification_head(pooled)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return {"loss": loss, "logits": logits}


class MvpForQuestionAnswering(MvpPreTrainedModel, TaskModel):
    """MVP with a span head (start and end logits) on the decoder states."""

    base_class = MvpModel
    shared_weights = _SEQ2SEQ_TIES
    head_inputs = ("start_positions", "end_positions")
    arguments = head_arguments(MvpModel.forward, {"encoder_outputs": head_inputs}, drop=_NO_CACHE)
    output = Seq2SeqSpanQAOutput

    def __init__(self, config: MvpConfig) -> None:
        config.num_labels = 2
        super().__init__(config)

    def add_head(self, config: MvpConfig) -> None:
        self.qa_outputs = SpanHead(config.d_model)

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        if own["start_positions"] is not None and own["end_positions"] is not None:
            inputs["use_cache"] = False
        return inputs

    def head(self, base: Seq2SeqModelOutput, **own: torch.Tensor | None) -> dict[str, Any]:
        return self.qa_outputs.predict(base.last_hidden_state, **own)


class _DecoderOnly(nn.Module):
    """Holds the decoder under ``model.decoder``, where the reference keeps it."""

    def __init__(self, config: MvpConfig) -> None:
        super().__init__()
        self.decoder = MvpDecoder(config)  # no prompts, its own token embeddings

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.decoder(*args, **kwargs)


class MvpForCausalLM(CausalLMHead, MvpPreTrainedModel, TaskModel):
    """The MVP decoder alone as a causal language model (cross-attention only with encoder states).

    As in the reference, this decoder has no prompts, and the loss compares the logits at
    position t with ``labels[t]`` (the caller shifts the labels).
    """

    base_class = _DecoderOnly
    output_ties = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
    arguments = head_arguments(MvpDecoder.forward, {"inputs_embeds": ("labels",)})
    output = LMOutput
    base_path = "model.decoder"

    def __init__(self, config: MvpConfig) -> None:
        config.is_decoder = True
        config.is_encoder_decoder = False
        super().__init__(config)

    def set_lightweight_tuning(self) -> None:
        # the reference's method fails here too (its decoder wrapper has no prompts to tune)
        raise ValueError("MvpForCausalLM has no prompts to tune: use MvpForConditionalGeneration with use_prompt=True")

    def _align_prefix(self, state: dict[str, torch.Tensor], expected: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A sequence-to-sequence checkpoint keeps the decoder's token embeddings as ``shared``."""
        state = super()._align_prefix(state, expected)
        if "model.decoder.embed_tokens.weight" not in state and "model.shared.weight" in state:
            state = {**state, "model.decoder.embed_tokens.weight": state["model.shared.weight"]}
            del state["model.shared.weight"]
        return state

    def head(self, base: BaseModelOutput, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.lm_head(base.last_hidden_state)
        return {"loss": None if labels is None else token_classification_loss(logits, labels), "logits": logits}
