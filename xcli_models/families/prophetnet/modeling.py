"""ProphetNet and XLM-ProphetNet: a post-LN encoder and an n-stream decoder.

Where things are: ``ngram.py`` (the n-stream self-attention: a main stream plus ``ngram``
predicting streams, relative position buckets), ``blocks.py`` (the layers, positions, and
the split of the decoder's states into streams), ``outputs.py`` (the output objects), this
file (the encoder, the decoder, the models, the LM head and its loss). The LM head reads the
predicting streams: ``logits`` come from the first (next token), ``logits_ngram`` from the others.

Prefill and each decode step run the same ``forward``; the ``Cache`` handed in
as ``past_key_values`` (main-stream keys and values per layer, plus the
encoder's keys and values for cross-attention) grows in place and is returned.

The XLM-ProphetNet classes are these classes with the XLM config class.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...heads import CausalLMHead, Seq2SeqLMHead, TaskModel, head_arguments
from ...arguments import keyword_only
from ...layers.stack import DECODER_ARGUMENTS, Call, DecoderStack, Stack
from ...modeling import EncoderDecoderModel, PreTrainedModel
from ...outputs import BaseModelOutput
from .blocks import (
    decoder_layer, encoder_layer, learned_positions, new_position_ids, padding_bias, split_streams,
)
from .config import ProphetNetConfig, XLMProphetNetConfig
from .names import PROPHETNET_NAMES
from .ngram import StreamMasks
from .outputs import (
    ProphetNetDecoderLMOutput,
    ProphetNetDecoderModelOutput,
    ProphetNetSeq2SeqLMOutput,
    ProphetNetSeq2SeqModelOutput,
)

__all__ = [
    "ProphetNetDecoder", "ProphetNetEncoder", "ProphetNetForCausalLM", "ProphetNetForConditionalGeneration",
    "ProphetNetModel", "ProphetNetPreTrainedModel",
    "XLMProphetNetDecoder", "XLMProphetNetEncoder", "XLMProphetNetForCausalLM",
    "XLMProphetNetForConditionalGeneration", "XLMProphetNetModel",
    "ProphetNetSeq2SeqLMOutput", "ProphetNetSeq2SeqModelOutput", "ProphetNetDecoderModelOutput",
    "ProphetNetDecoderLMOutput", "ngram_loss",
]

# ------------------------------------------------------------------ helpers
def ngram_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, eps: float = 0.0, disable_ngram_loss: bool = False
) -> torch.Tensor:
    """Mean cross-entropy of every predicting stream against the same labels (-100 ignored),
    label-smoothed by ``eps``; ``disable_ngram_loss`` counts the first stream only.

    Shape: logits (B, ngram, T, V); labels (B, T).
    """
    ngram, vocab = logits.shape[1], logits.shape[-1]
    targets = labels.new_full((ngram, *labels.shape), -100)
    targets[: 1 if disable_ngram_loss else ngram] = labels
    targets = targets.view(-1)
    log_probs = F.log_softmax(logits.transpose(0, 1).reshape(-1, vocab), dim=-1, dtype=torch.float32)
    loss = F.nll_loss(log_probs, targets, ignore_index=-100)
    if eps > 0.0:
        smooth = -log_probs.sum(dim=-1)[targets.ne(-100)].mean()
        loss = (1.0 - eps) * loss + eps / vocab * smooth
    return loss


def shift_right(labels: torch.Tensor, start_token_id: int | None, pad_token_id: int | None) -> torch.Tensor:
    """Decoder inputs from labels: start token first, labels moved one right, -100 -> pad."""
    if start_token_id is None or pad_token_id is None:
        raise ValueError("decoder_start_token_id and pad_token_id must be set to derive decoder inputs from labels")
    shifted = labels.new_full(labels.shape, start_token_id)
    shifted[..., 1:] = labels[..., :-1]
    shifted = shifted.masked_fill(shifted == -100, pad_token_id)
    if bool((shifted < 0).any()):
        raise ValueError("labels hold negative ids other than -100")
    return shifted


class ProphetNetPreTrainedModel(PreTrainedModel):
    config_class = ProphetNetConfig
    base_model_prefix = "prophetnet"
    names = PROPHETNET_NAMES

    def _token_embeddings(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, which: str = ""
    ) -> torch.Tensor:
        """``inputs_embeds``, or ``input_ids`` looked up in ``word_embeddings``: exactly one of them."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"pass exactly one of {which}input_ids and inputs_embeds")
        return self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds


class ProphetNetEncoder(Stack, ProphetNetPreTrainedModel):
    """Embeddings (tokens + learned positions, then a layer norm) and post-LN layers.

    Shape: input_ids (B, S) or inputs_embeds (B, S, D) -> last_hidden_state (B, S, D).
    """

    token_embeddings = "word_embeddings"

    def __init__(self, config: ProphetNetConfig, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(config)
        self.word_embeddings = (
            word_embeddings if word_embeddings is not None
            else nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        )
        self.position_embeddings = learned_positions(config)
        self.embeddings_layer_norm = nn.LayerNorm(config.hidden_size)
        self.layers = nn.ModuleList(encoder_layer(config) for _ in range(config.num_encoder_layers))
        self.post_init()

    def run(self, call: Call) -> BaseModelOutput:
        inputs_embeds = self._token_embeddings(call.input_ids, call.inputs_embeds)
        length, device, dtype = inputs_embeds.shape[1], inputs_embeds.device, inputs_embeds.dtype
        attention_mask = call.attention_mask
        mask = None if attention_mask is None else padding_bias(attention_mask.to(device), dtype)
        positions = self.position_embeddings(new_position_ids(self.position_embeddings, 0, length, device))
        hidden = self.embeddings_layer_norm(inputs_embeds + positions)
        hidden = F.dropout(hidden, p=self.config.dropout, training=self.training)
        return self.run_layers(hidden, call, shared={"self_mask": mask}, per_layer={"head_mask": call.head_mask})


class ProphetNetDecoder(DecoderStack, ProphetNetPreTrainedModel):
    """Embeddings for the main and predicting streams, then n-stream layers. ``forward`` takes
    a decoder stack's arguments (``DecoderStack``) and, by keyword, ``predict_streams`` (see ``run``).

    Shape: input_ids (B, T) or inputs_embeds (B, T, D) -> last_hidden_state (B, T, D) (main
    stream) and last_hidden_state_ngram (B, ngram * T, D) (predicting streams, stream-major).
    """

    arguments = (*DECODER_ARGUMENTS, *keyword_only("predict_streams"))
    output = ProphetNetDecoderModelOutput
    token_embeddings = "word_embeddings"

    def __init__(self, config: ProphetNetConfig, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(config)
        dim = config.hidden_size
        self.word_embeddings = (
            word_embeddings if word_embeddings is not None
            else nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_token_id)
        )
        self.position_embeddings = learned_positions(config)
        self.ngram_embeddings = nn.Embedding(config.ngram, dim)
        self.layers = nn.ModuleList(decoder_layer(config) for _ in range(config.num_decoder_layers))
        self.embeddings_layer_norm = nn.LayerNorm(dim)
        self.post_init()

    def _embed(self, inputs_embeds: torch.Tensor, past: int, streams: int) -> torch.Tensor:
        """Main stream: tokens + positions; predicting stream s (of the first ``streams``): the
        stream's embedding + the next position. Shape: (B, T, D) -> (B, (1 + streams) * T, D),
        layer-normed."""
        batch, length, dim = inputs_embeds.shape
        ids = new_position_ids(self.position_embeddings, past, length, inputs_embeds.device)
        main = inputs_embeds + self.position_embeddings(ids)
        # the reference gives the first predicting stream the last ngram embedding, stream s row s - 1
        ngram = self.config.ngram
        rows = ((torch.arange(ngram, device=inputs_embeds.device) - 1) % ngram)[:streams]
        predict = self.ngram_embeddings(rows)[:, None, :] + self.position_embeddings(ids + 1)  # (n, T, D)
        predict = predict.reshape(1, streams * length, dim).expand(batch, -1, -1)
        return self.embeddings_layer_norm(torch.cat([main, predict.to(main.dtype)], dim=1))

    def run(self, call: Call) -> ProphetNetDecoderModelOutput:
        """``predict_streams``: run only the first that many predicting streams (default: all
        ``config.ngram``). No stream depends on a later one, so those run are unchanged; generation
        needs only the first. Only for one-token calls (a longer call's bias layout mixes the
        streams, see ngram.py)."""
        config = self.config
        streams = config.ngram if call.predict_streams is None else call.predict_streams
        if not 0 < streams <= config.ngram:
            raise ValueError(f"predict_streams must be 1 .. ngram ({config.ngram}), not {call.predict_streams}")
        inputs_embeds = self._token_embeddings(call.input_ids, call.inputs_embeds, "decoder ")
        length, device, dtype = inputs_embeds.shape[1], inputs_embeds.device, inputs_embeds.dtype
        if streams < config.ngram and length > 1:
            raise ValueError(f"predict_streams is for one-token calls, not {length} tokens")
        cross = call.encoder_hidden_states is not None
        encoder_attention_mask = call.encoder_attention_mask

        masks = StreamMasks.build(
            call.attention_mask, call.past, length, streams,
            num_buckets=config.num_buckets, max_distance=config.relative_max_distance, dtype=dtype, device=device,
        )
        cross_mask = (
            padding_bias(encoder_attention_mask.to(device), dtype) if cross and encoder_attention_mask is not None
            else None
        )
        hidden = F.dropout(self._embed(inputs_embeds, call.past, streams), p=config.dropout, training=self.training)
        run = self.run_layers(
            hidden, call,
            shared={"self_mask": masks, "memory": call.encoder_hidden_states, "cross_mask": cross_mask},
            per_layer={"head_mask": call.head_mask, "cross_head_mask": call.cross_attn_head_mask},
            cross_attentions=config.add_cross_attention,
        )
        return split_streams(run, length, config.ngram > 0)


class ProphetNetModel(EncoderDecoderModel, ProphetNetPreTrainedModel):
    """Encoder and decoder sharing one word embedding.

    Shape: input_ids (B, S), decoder_input_ids (B, T) -> last_hidden_state (B, T, D),
    last_hidden_state_ngram (B, ngram * T, D).
    """

    output = ProphetNetSeq2SeqModelOutput
    decoder_fields = {"decoder_ngram_hidden_states": "hidden_states_ngram"}
    shared_weights = {
        "encoder.word_embeddings.weight": "word_embeddings.weight",
        "decoder.word_embeddings.weight": "word_embeddings.weight",
    }

    def __init__(self, config: ProphetNetConfig) -> None:
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.encoder = ProphetNetEncoder(config, self.word_embeddings)
        self.decoder = ProphetNetDecoder(config, self.word_embeddings)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = self.encoder.word_embeddings = self.decoder.word_embeddings = value


def _stream_logits(
    lm_head: nn.Module, hidden_ngram: torch.Tensor, ngram: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """LM head over the predicting streams: logits (stream 0), logits_ngram (the others) and
    all of them. Shape: (B, ngram * T, D) -> (B, T, V), (B, ngram - 1, T, V), (B, ngram, T, V)."""
    batch, total, dim = hidden_ngram.shape
    all_logits = lm_head(hidden_ngram.view(batch, ngram, total // ngram, dim))
    logits = all_logits[:, 0].contiguous()
    return logits, (all_logits[:, 1:] if ngram > 1 else None), all_logits


def _first_stream(out: Any) -> torch.Tensor:
    """The first predicting stream of a decoder output (it scores the next token). (B, T, D)."""
    length = out.last_hidden_state.shape[1]
    return out.last_hidden_state_ngram[:, :length]


class _StreamLMHead(CausalLMHead):
    """The shared ``CausalLMHead`` (tied to the word embeddings) over the predicting streams, and
    its n-gram loss, as ProphetNet's two task models share it (a mixin beside ``TaskModel``).

    In generation the decoder's first predicting stream feeds the head (it scores the next
    token), and a cached step runs that stream only.
    """

    config: ProphetNetConfig
    lm_head: nn.Linear
    head_states = staticmethod(_first_stream)
    step_options = {"predict_streams": 1}

    def add_head(self, config: ProphetNetConfig) -> None:
        super().add_head(config)
        self.disable_ngram_loss = config.disable_ngram_loss

    def head(self, base: Any, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits, logits_ngram, all_logits = _stream_logits(self.lm_head, base.last_hidden_state_ngram, self.config.ngram)
        loss = None
        if labels is not None:
            loss = ngram_loss(
                all_logits, labels.to(all_logits.device),
                eps=self.config.eps, disable_ngram_loss=self.disable_ngram_loss,
            )
        return {"loss": loss, "logits": logits, "logits_ngram": logits_ngram}


class ProphetNetForConditionalGeneration(Seq2SeqLMHead, _StreamLMHead, ProphetNetPreTrainedModel, TaskModel):
    """``ProphetNetModel`` with the LM head (tied to the word embeddings) over the predicting streams.
    With ``labels`` and no decoder inputs, the decoder reads the labels shifted right.

    Shape: input_ids (B, S), decoder_input_ids (B, T) -> logits (B, T, V), logits_ngram
    (B, ngram - 1, T, V).
    """

    base_class = ProphetNetModel
    shared_weights = {
        "prophetnet.encoder.word_embeddings.weight": "prophetnet.word_embeddings.weight",
        "prophetnet.decoder.word_embeddings.weight": "prophetnet.word_embeddings.weight",
    }
    output_ties = {"lm_head.weight": "prophetnet.word_embeddings.weight"}
    arguments = head_arguments(ProphetNetModel.forward, {"decoder_inputs_embeds": ("labels",)})
    output = ProphetNetSeq2SeqLMOutput

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_right(labels, self.config.decoder_start_token_id, self.config.pad_token_id)


class ProphetNetDecoderWrapper(nn.Module):
    """Holds the word embeddings beside the decoder, so that ``ForCausalLM`` keeps the
    reference's parameter names (``prophetnet.decoder.*``) and loads full checkpoints."""

    def __init__(self, config: ProphetNetConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.decoder = ProphetNetDecoder(config, self.word_embeddings)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.decoder(*args, **kwargs)


class ProphetNetForCausalLM(_StreamLMHead, ProphetNetPreTrainedModel, TaskModel):
    """The decoder alone with the LM head over its predicting streams (labels are not shifted:
    label t is what position t should predict).

    Shape: input_ids (B, T) -> logits (B, T, V), logits_ngram (B, ngram - 1, T, V).
    """

    base_class = ProphetNetDecoderWrapper
    shared_weights = {"prophetnet.decoder.word_embeddings.weight": "prophetnet.word_embeddings.weight"}
    output_ties = {"lm_head.weight": "prophetnet.word_embeddings.weight"}
    arguments = head_arguments(ProphetNetDecoder.forward, {"inputs_embeds": ("labels",)})
    output = ProphetNetDecoderLMOutput
    base_path = "prophetnet.decoder"

    def __init__(self, config: ProphetNetConfig) -> None:
        config = copy.deepcopy(config)
        config.is_decoder = True
        config.is_encoder_decoder = False
        super().__init__(config)


# ----------------------------------------------------- XLM-ProphetNet names
class XLMProphetNetEncoder(ProphetNetEncoder):
    config_class = XLMProphetNetConfig


class XLMProphetNetDecoder(ProphetNetDecoder):
    config_class = XLMProphetNetConfig


class XLMProphetNetModel(ProphetNetModel):
    config_class = XLMProphetNetConfig


class XLMProphetNetForConditionalGeneration(ProphetNetForConditionalGeneration):
    config_class = XLMProphetNetConfig


class XLMProphetNetForCausalLM(ProphetNetForCausalLM):
    config_class = XLMProphetNetConfig
