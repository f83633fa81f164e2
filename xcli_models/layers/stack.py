"""The layer loop every family's encoder and decoder runs, and their ``forward``.

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

A decode step (one token per row, a cache, nothing collected, not training) is first offered to
``fused.decode_step``, which runs the whole stack in one call of xcli's C kernels where every layer
is one they can run (int8 weight-only layers; float32 ones inside ``kernels.inference``), and
otherwise leaves the step to the loop.

``Stack`` and ``DecoderStack`` write a stack's ``forward`` once: the documented arguments
(``ENCODER_ARGUMENTS``, ``DECODER_ARGUMENTS``, or a family's own list), the switches a call
leaves None taken from the config, the head masks checked, a decoder's cache opened. What a
family does with the call (embed, mask, run the layers) is its ``run``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from ..arguments import DeclaredForward
from ..modeling import resolve_flags
from ..outputs import BaseModelOutput, ModelOutput
from .cache import Cache
from .fused import decode_step

#: the documented arguments of an encoder stack's forward (MVP, ProphetNet), in order
ENCODER_ARGUMENTS = (
    "input_ids", "attention_mask", "head_mask", "inputs_embeds", "output_attentions", "output_hidden_states",
    "return_dict",
)
#: the documented arguments of a decoder stack's forward (XGLM, MVP, ProphetNet), in order; the
#: reference's ``cache_position`` is accepted and ignored: the cache knows its length
DECODER_ARGUMENTS = (
    "input_ids", "attention_mask", "encoder_hidden_states", "encoder_attention_mask", "head_mask",
    "cross_attn_head_mask", "past_key_values", "inputs_embeds", "use_cache", "output_attentions",
    "output_hidden_states", "return_dict", "cache_position",
)


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
    step = None
    if cache is not None and states is None and self_weights is None and not training and after is None \
            and len(varying) == 1:  # a decode step our kernels may take whole (see fused.py)
        step = decode_step(layers, x, shared, cache)
    for i, layer in enumerate(layers if step is None else ()):
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
    if step is not None:
        x = step
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


class Call(SimpleNamespace):
    """One call of a stack's ``forward``: every declared argument by name (None when not given),
    ``output_attentions`` and ``output_hidden_states`` resolved to bools and, in a decoder,
    ``kv_cache`` (the ``Cache`` written to, or None) and ``past`` (the positions it held before).
    A family's ``open`` may add what its ``run`` needs (XLM: ``total``)."""

    output_attentions: bool
    output_hidden_states: bool
    kv_cache: Cache | None = None
    past: int = 0


class Stack(DeclaredForward):
    """A stack's ``forward``, written once (mixed in before the family's ``nn.Module`` base);
    as it stands, an encoder's (``ENCODER_ARGUMENTS``).

    A call is bound to ``arguments``; None switches take the config's defaults; ``head_mask``
    (and ``cross_attn_head_mask``) must have one row per layer unless ``any_head_mask``; then
    the family's ``run`` turns the ``Call`` into the output, a tuple unless ``return_dict``.
    """

    arguments: ClassVar[tuple[Any, ...]] = ENCODER_ARGUMENTS
    output: ClassVar[type[ModelOutput]] = BaseModelOutput
    #: the family also takes other head masks (XLM: one (H,) row for every layer)
    any_head_mask: ClassVar[bool] = False
    #: the attribute holding the stack's token embedding (``get_input_embeddings``)
    token_embeddings: ClassVar[str] = "embed_tokens"
    config: Any
    layers: nn.ModuleList
    training: bool

    def get_input_embeddings(self) -> nn.Module:
        return getattr(self, self.token_embeddings)

    def set_input_embeddings(self, value: nn.Module) -> None:
        setattr(self, self.token_embeddings, value)

    def run(self, call: Call) -> ModelOutput:
        """The output of one call (see ``Call``)."""
        raise NotImplementedError

    def _forward(self, *args: Any, **kwargs: Any) -> ModelOutput | tuple:
        call = Call(**self.bind_arguments(args, kwargs, defaults=True))
        call.output_attentions, call.output_hidden_states, return_dict = resolve_flags(
            self.config, call.output_attentions, call.output_hidden_states, call.return_dict
        )
        if not self.any_head_mask:
            for name in ("head_mask", "cross_attn_head_mask"):
                check_head_mask(getattr(call, name, None), len(self.layers), name)
        self.open(call)
        out = self.run(call)
        return out if return_dict else out.to_tuple()

    def open(self, call: Call) -> None:
        """Prepare the call before ``run`` (a decoder opens its cache)."""

    def run_layers(self, x: torch.Tensor, call: Call, **options: Any) -> BaseModelOutput:
        """``run_layers`` over ``self.layers`` with the call's switches and cache (see the module docstring)."""
        return run_layers(
            self.layers, x, cache=call.kv_cache, output_hidden_states=call.output_hidden_states,
            output_attentions=call.output_attentions, training=self.training, **options,
        )


class DecoderStack(Stack):
    """A decoder stack's ``forward``: ``Stack``'s, over ``DECODER_ARGUMENTS``, with ``use_cache``
    defaulting to the config's and the cache opened (``call.kv_cache``, ``call.past``); it holds
    cross-attention keys when ``encoder_hidden_states`` are given."""

    arguments = DECODER_ARGUMENTS

    def open(self, call: Call) -> None:
        use_cache = self.config.use_cache if call.use_cache is None else call.use_cache
        cross = call.encoder_hidden_states is not None
        call.kv_cache, call.past = open_cache(call.past_key_values, use_cache, len(self.layers), cross=cross)
