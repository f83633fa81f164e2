"""How each model is driven token by token: the family differences behind one interface.

An adapter runs a model for generation through three named functions:

* ``start(input_ids, attention_mask, decoder_input_ids)`` -- the prefill: the encoder (once,
  for encoder-decoder models) and the prompt or decoder start tokens through the decoder,
  filling the per-layer KV cache; returns the decoding state and the logits of the first
  new token (B, V);
* ``step(state, tokens)`` -- one decode step: the chosen tokens (R,) through the decoder
  over the cache; returns the next logits (R, V);
* ``reorder(state, index)`` -- keep rows ``index`` of the state (beam search; also expands
  B prompt rows into B x beams rows after the prefill, so the prompt is encoded once).

Logits are float32 and computed for the last position only (the LM head never runs over
the prompt). With ``use_cache=False`` every step recomputes the whole sequence instead, as
the reference's uncached decoding does. Both give the same tokens, except where the
reference's own cached and uncached decoding differ, and then each reproduces its
counterpart: ProphetNet (a whole-sequence decoder call mixes the predicting streams'
position biases, and a cached step applies no padding mask) and XLNet (see its adapter).

A head says how it is driven (:func:`adapter_for`): ``generation_parts()`` (where its decoder,
encoder and LM head are) for the two shared adapters here, or ``generation_adapter_class`` for
a decoding scheme of its own, kept in its family's folder.

* ``DecoderOnlyAdapter`` -- XGLMForCausalLM, MvpForCausalLM, (XLM)ProphetNetForCausalLM.
  Batches are left-padded; the attention mask grows by one column per step. Models whose
  forward takes ``position_ids`` (XGLM) get positions that skip the padding (the i-th real
  token is at position i), as the reference's ``generate`` computes them; the others place
  tokens by their index, padding included, exactly as the reference does.
* ``EncoderDecoderAdapter`` -- MvpForConditionalGeneration,
  (XLM)ProphetNetForConditionalGeneration: encoder output computed once, cross-attention
  keys and values cached once (never reordered within a beam group: its rows are equal);
  ProphetNet's LM head runs on the first predicting stream only (the one that scores the
  next token; the reference also projects the others and drops them), and a cached step runs
  no other predicting stream through the decoder (none of them feeds the first).
* ``XLMAdapter`` (``families/xlm/generation.py``) -- XLMWithLMHeadModel: a mask token appended
  at every step and scored, as the reference does, over a cache where the model is causal.
* ``XLNetAdapter`` (``families/xlnet/generation.py``) -- XLNetLMHeadModel: a dummy token after the
  sequence predicted at every step, over the reference's memory scheme.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..layers import Cache


def positions_skipping_padding(mask: torch.Tensor) -> torch.Tensor:
    """The i-th real token of a row at position i; padding at position 1 (the reference's
    generation convention). Shape: (R, L) -> (R, L)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def _accepts(module: nn.Module, name: str) -> bool:
    return name in inspect.signature(module.forward).parameters


def is_identity(index: torch.Tensor) -> bool:
    return bool(torch.equal(index, torch.arange(index.shape[0], device=index.device)))


def _reorder_self_caches(cache: Cache, index: torch.Tensor, *, with_cross: bool) -> None:
    for layer in cache:
        layer.self_attn.reorder(index)
        if with_cross and layer.cross_attn is not None:
            layer.cross_attn.reorder(index)


@dataclass
class Parts:
    """Where a model's decoder, encoder and LM head are.

    ``decoder`` is called with input_ids, attention_mask, past_key_values, use_cache,
    return_dict (and encoder_hidden_states / encoder_attention_mask, position_ids when it
    takes them); ``hidden`` picks the states that feed the head from its output (B, T, D);
    ``head`` maps (R, D) states to (R, V) logits; ``step_options`` go to the decoder on a
    cached one-token step (ProphetNet: run only the predicting stream that scores).
    """

    decoder: nn.Module
    hidden: Callable[[Any], torch.Tensor]
    head: Callable[[torch.Tensor], torch.Tensor]
    encoder: nn.Module | None = None
    step_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class State:
    """What a decode step needs besides the model (rows = batch x beams or samples)."""

    ids: torch.Tensor  # (R, L) tokens fed so far (decoder tokens for encoder-decoder models)
    mask: torch.Tensor | None = None  # (R, L) 1 = real token, for decoder-only models
    cache: Any = None  # a layers.Cache (or XLNet's mems), None when uncached
    memory: torch.Tensor | None = None  # encoder states (R, S, D)
    memory_mask: torch.Tensor | None = None  # (R, S)
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """The interface (see the module docstring)."""

    is_encoder_decoder = False

    def __init__(self, model: nn.Module, *, use_cache: bool = True) -> None:
        self.model = model
        self.use_cache = use_cache

    def start(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> tuple[State, torch.Tensor]:
        raise NotImplementedError

    def step(self, state: State, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reorder(self, state: State, index: torch.Tensor) -> None:
        expanding = index.shape[0] != state.ids.shape[0]
        if not expanding and is_identity(index):  # beams kept their places: nothing to move
            return
        state.ids = state.ids.index_select(0, index)
        if state.mask is not None:
            state.mask = state.mask.index_select(0, index)
        if expanding:  # encoder rows differ only between prompts, never within a beam group
            if state.memory is not None:
                state.memory = state.memory.index_select(0, index)
            if state.memory_mask is not None:
                state.memory_mask = state.memory_mask.index_select(0, index)
        if isinstance(state.cache, Cache):
            _reorder_self_caches(state.cache, index, with_cross=expanding)


class DecoderOnlyAdapter(Adapter):
    def __init__(self, model: nn.Module, parts: Parts, *, use_cache: bool = True) -> None:
        super().__init__(model, use_cache=use_cache)
        self.parts = parts
        self.takes_positions = _accepts(model, "position_ids") and _accepts(parts.decoder, "position_ids")

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Decoder over ``ids`` (the new tokens, or all of them when uncached); next-token logits."""
        kwargs: dict[str, Any] = dict(self.parts.step_options) if cache is not None and ids.shape[1] == 1 else {}
        if self.takes_positions:
            kwargs["position_ids"] = positions_skipping_padding(mask)[:, -ids.shape[1]:]
        out = self.parts.decoder(
            input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=self.use_cache,
            return_dict=True, **kwargs,
        )
        hidden = self.parts.hidden(out)[:, -1]  # (R, D)
        return self.parts.head(hidden).float(), out.past_key_values if self.use_cache else None

    def start(self, input_ids, attention_mask, decoder_input_ids=None):
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device).long()
        logits, cache = self._run(input_ids, mask, None)
        return State(ids=input_ids, mask=mask, cache=cache), logits

    def step(self, state, tokens):
        state.ids = torch.cat([state.ids, tokens[:, None]], dim=1)
        state.mask = torch.cat([state.mask, state.mask.new_ones(state.mask.shape[0], 1)], dim=1)
        new = tokens[:, None] if state.cache is not None else state.ids
        logits, state.cache = self._run(new, state.mask, state.cache)
        return logits


class EncoderDecoderAdapter(Adapter):
    is_encoder_decoder = True

    def __init__(self, model: nn.Module, parts: Parts, *, use_cache: bool = True) -> None:
        super().__init__(model, use_cache=use_cache)
        if parts.encoder is None:
            raise ValueError(f"{type(model).__name__}: an encoder-decoder adapter needs the encoder")
        self.parts = parts

    def _run(self, state: State, ids: torch.Tensor) -> torch.Tensor:
        stepping = state.cache is not None and ids.shape[1] == 1
        out = self.parts.decoder(
            input_ids=ids, attention_mask=None, encoder_hidden_states=state.memory,
            encoder_attention_mask=state.memory_mask, past_key_values=state.cache, use_cache=self.use_cache,
            return_dict=True, **(self.parts.step_options if stepping else {}),
        )
        state.cache = out.past_key_values if self.use_cache else None
        return self.parts.head(self.parts.hidden(out)[:, -1]).float()

    def start(self, input_ids, attention_mask, decoder_input_ids=None):
        if decoder_input_ids is None:
            raise ValueError("encoder-decoder generation needs decoder_input_ids (the decoder start token)")
        encoded = self.parts.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        state = State(ids=decoder_input_ids, memory=encoded.last_hidden_state, memory_mask=attention_mask)
        return state, self._run(state, decoder_input_ids)

    def step(self, state, tokens):
        state.ids = torch.cat([state.ids, tokens[:, None]], dim=1)
        return self._run(state, tokens[:, None] if state.cache is not None else state.ids)


# ------------------------------------------------------------- which adapter
def last_hidden_state(out: Any) -> torch.Tensor:
    """The decoder's output states (B, T, D): what feeds the LM head of most models (``Parts.hidden``)."""
    return out.last_hidden_state


def adapter_for(model: nn.Module, *, use_cache: bool = True, **options: Any) -> Adapter:
    """The adapter that drives ``model`` (``options``: family settings such as XLM's ``lang_id``).

    A head that generates either names an adapter of its own (``generation_adapter_class``: XLM,
    XLNet) or says where its parts are (``generation_parts()``: the decoder-only and
    encoder-decoder adapters drive it).
    """
    own = getattr(model, "generation_adapter_class", None)
    if own is not None:
        return own(model, use_cache=use_cache, **options)
    parts = model.generation_parts() if hasattr(model, "generation_parts") else None  # a plain nn.Module: none
    if parts is None:
        from ..registry import heads_for

        raise ValueError(
            f"{type(model).__name__} cannot generate text: use a model with a language-modelling head "
            f"({', '.join(sorted(heads_for('generate')))})"
        )
    if options:
        raise ValueError(f"{type(model).__name__} takes no generation option(s) {', '.join(sorted(options))}")
    kind = EncoderDecoderAdapter if parts.encoder is not None else DecoderOnlyAdapter
    return kind(model, parts, use_cache=use_cache)
