"""Building blocks shared by the families: attention, caches, masks, positions, layers, the layer loop."""

from ..kernels import Linear
from .activations import activation
from .attention import Attention, attend, merge_heads, projections, split_heads
from .cache import Cache, KVCache, LayerCache
from .embeddings import LearnedPositions, SinusoidalPositions, positions_from_mask, sinusoidal_table
from .feedforward import FeedForward
from .masks import additive, causal_allowed, decoder_mask, encoder_mask, padding_allowed
from .stack import DecoderStack, Stack, run_layers
from .transformer import TransformerLayer

__all__ = [
    "Attention", "Cache", "DecoderStack", "FeedForward", "KVCache", "LayerCache", "LearnedPositions", "Linear",
    "SinusoidalPositions", "Stack", "TransformerLayer", "activation", "additive", "attend", "causal_allowed",
    "decoder_mask", "encoder_mask", "merge_heads", "padding_allowed", "positions_from_mask", "projections",
    "run_layers", "sinusoidal_table", "split_heads",
]
