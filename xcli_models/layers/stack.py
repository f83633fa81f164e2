"""The layer loop every family's encoder and decoder runs.

``run_layers`` takes the embedded input through a stack of layers and collects
what the outputs report: the hidden state before every layer and after the
last, and each layer's attention probabilities. What varies between families
is passed in, not branched on:

* ``shared``: keyword arguments every layer receives (masks, encoder states);
* ``per_layer``: keyword arguments indexed by layer (head masks, prompts, the
  layer caches of a ``Cache``); a None entry means "none for any layer";
* ``layerdrop``: in training, each layer is skipped with this probability (one
  ``torch.rand`` draw per layer, made only in training); None draws nothing;
* ``dropped_attention``: a skipped layer leaves None among the attentions
  (BART-style encoders) instead of nothing (decoders);
* ``after``: applied to the output of every layer that ran (XLM multiplies the
  padding mask in, MVP's encoder keeps float16 overflow out);
* ``final``: applied once after the loop, before the last hidden state is
  collected (XGLM's final layer norm).

A layer returns ``(x, self_attention, cross_attention)``, as ``TransformerLayer`` does.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..outputs import BaseModelOutput
from .cache import Cache


def run_layers(
    layers: nn.ModuleList,
    x: torch.Tensor,
    *,
    shared: Mapping[str, Any] | None = None,
    per_layer: Mapping[str, Any] | None = None,
    cache: Cache | None = None,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
    cross_attentions: bool = False,
    layerdrop: float | None = None,
    training: bool = False,
    dropped_attention: bool = False,
    after: Callable[[torch.Tensor], torch.Tensor] | None = None,
    final: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> BaseModelOutput:
    """Run ``x`` through ``layers`` (see the module docstring).

    ``cross_attentions``: collect the cross-attention probabilities too (with ``output_attentions``).

    Shape: x (B, T, D) -> last_hidden_state (B, T, D); hidden_states: L + 1 tensors (B, T, D);
    attentions and cross_attentions: one entry per layer (per layer that ran, unless
    ``dropped_attention``), whatever the layers return. ``past_key_values`` is ``cache``.
    """
    shared = dict(shared or {})
    varying = {name: values for name, values in (per_layer or {}).items() if values is not None}
    if cache is not None:
        varying["cache"] = cache
    states: tuple[torch.Tensor, ...] | None = () if output_hidden_states else None
    self_weights: tuple[Any, ...] | None = () if output_attentions else None
    cross_weights: tuple[Any, ...] | None = () if output_attentions and cross_attentions else None
    for i, layer in enumerate(layers):
        if states is not None:
            states += (x,)
        if layerdrop is not None and training and bool(torch.rand([]) < layerdrop):  # LayerDrop
            if dropped_attention and self_weights is not None:
                self_weights += (None,)
            continue
        x, attention, cross = layer(
            x, **shared, **{name: values[i] for name, values in varying.items()}, output_attentions=output_attentions
        )
        if after is not None:
            x = after(x)
        if self_weights is not None:
            self_weights += (attention,)
        if cross_weights is not None:
            cross_weights += (cross,)
    if final is not None:
        x = final(x)
    if states is not None:
        states += (x,)
    return BaseModelOutput(
        last_hidden_state=x,
        past_key_values=cache,
        hidden_states=states,
        attentions=self_weights,
        cross_attentions=cross_weights,
    )


def open_cache(
    past_key_values: Any, use_cache: bool | None, n_layers: int, *, cross: bool = False
) -> tuple[Cache | None, int]:
    """The cache a call writes to (None without ``use_cache`` or ``past_key_values``) and how
    many positions it already holds. ``past_key_values`` may be a ``Cache`` or the reference's
    tuple layout (see ``Cache.coerce``)."""
    if not use_cache and past_key_values is None:
        return None, 0
    cache = Cache.coerce(past_key_values, n_layers, cross=cross)
    return cache, cache.get_seq_length()


def check_head_mask(head_mask: torch.Tensor | None, n_layers: int, name: str = "head_mask") -> None:
    """A per-layer head mask must have one row per layer."""
    if head_mask is not None and head_mask.shape[0] != n_layers:
        raise ValueError(f"{name} must have one row per layer ({n_layers}), not {head_mask.shape[0]}")
