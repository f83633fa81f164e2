"""XLNet's two-stream relative attention: what is genuinely odd about the family.

Each score between a query at absolute position ``p`` and a key at position
``s`` is the sum of three terms, each with its own learned query bias:

* content:  ``(q + content_bias) . k_s``
* position: ``(q + position_bias) . R(p - s)``, with ``R`` the projected
  sinusoid of the relative distance (``relative_sinusoids``);
* segment:  ``(q + segment_bias) . segment_embed[same or different segment]``,
  only when token_type_ids are given.

The content stream ``h`` (queries are the tokens) and the query stream ``g``
(queries are ``mask_emb`` states placed at the positions ``target_mapping``
picks) share keys, values and projections; they differ only in their queries
and masks. Keys and values cover the memory (``mems``) then the tokens.

Shapes are batch-first throughout: B batch, T tokens, M memory, K = M + T
keys, P predictions, H heads, Dh head size, D model size, R relative
distances (K + T for bidirectional attention, K + 1 for unidirectional).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ... import kernels
from ...layers import FeedForward, TransformerLayer, additive, attend, merge_heads, split_heads
from .memory import LayerMemory

if TYPE_CHECKING:
    from .config import XLNetConfig


class HeadwiseLinear(nn.Module):
    """A bias-free projection stored per head, as ``weight`` of shape (D, H, Dh).

    ``to_heads=True`` maps (..., D) -> (..., H * Dh); ``to_heads=False`` maps back.
    """

    def __init__(self, dim: int, n_heads: int, head_dim: int, *, to_heads: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, n_heads, head_dim))
        self.to_heads = to_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(1)  # (D, H * Dh)
        out = kernels.routed_linear(x, w.t() if self.to_heads else w, None)  # oneDNN's, where it routes it
        if out is not None:
            return out
        return x @ w if self.to_heads else x @ w.t()


def relative_shift(scores: torch.Tensor, klen: int) -> torch.Tensor:
    """Re-index position scores from relative distances to keys.

    Column ``c`` of ``scores`` scores the distance ``d_c`` of a relative table that starts at
    ``klen`` and counts down; query ``i`` (of T) at key ``j`` needs column ``j + T - i``. Reading
    the contiguous (T, R) block with a row stride of R - 1, starting T elements in, picks exactly
    those columns without a copy. (For unidirectional tables, R = K + 1, the entries of future
    keys run into the next row; they are masked.)

    Shape: (B, H, T, R) -> (B, H, T, klen).
    """
    scores = scores.contiguous()
    b, h, t, r = scores.shape
    return scores.as_strided(
        (b, h, t, klen), (h * t * r, t * r, r - 1, 1), scores.storage_offset() + t
    )


def relative_sinusoids(
    qlen: int,
    klen: int,
    dim: int,
    *,
    bidirectional: bool,
    clamp_len: int = -1,
    bi_data: bool = False,
    batch: int = 1,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Sinusoids of the relative distances ``klen, klen - 1, ...`` down to ``-qlen + 1``
    (bidirectional) or ``0`` (unidirectional), sines then cosines, clamped to ``clamp_len`` when
    positive. ``bi_data`` gives the first half of the batch these distances and the second half
    their negation.

    Shape: (1, R, D), or (B, R, D) with ``bi_data``.
    """
    end = -qlen if bidirectional else -1
    distances = torch.arange(klen, end, -1, dtype=torch.int64, device=device).float()
    inv_freq = 1.0 / torch.pow(10000, torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim)

    def table(d: torch.Tensor) -> torch.Tensor:
        if clamp_len > 0:
            d = d.clamp(-clamp_len, clamp_len)
        angles = d[:, None] * inv_freq[None, :]  # (R, D / 2)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    if not bi_data:
        return table(distances)[None]
    if batch % 2:
        raise ValueError(f"bi_data needs an even batch size (forward and backward halves), got {batch}")
    forward, backward = table(distances), table(-distances)
    half = batch // 2
    return torch.cat([forward[None].expand(half, -1, -1), backward[None].expand(half, -1, -1)], dim=0)


class RelativeAttention(nn.Module):
    """Two-stream multi-head attention with relative positions and segments (module docstring).

    Handed its projections by role: ``query``, ``key``, ``value`` and ``position`` map
    (..., D) -> (..., H * Dh); ``output`` maps back. It returns the attention outputs after
    ``output`` (no residual, no norm: those belong to the layer).

    Shape:
        h: (B, T, D); g: (B, P, D) or None; memory: (B, M, D), or a ``LayerMemory`` (the memory's
        keys and values, and the positions projected: ``positions`` is then unused), or None;
        positions: (B|1, R, D);
        segments: (B, T, K) booleans, True where query and key lie in different segments, or None;
        mask_h, mask_g: additive, broadcastable to (B, H, T, K), or None;
        target_mapping: (B, P, T), row p one-hot on the position prediction p is made for.
        next_query: g is instead one query (B, 1, D) at the position after the tokens, which sees
        every key: what the reference's generation computes with a dummy token there that no token
        sees, without the dummy's content stream (which nothing reads); needs a ``LayerMemory``
        (the dummy's row kept as a placeholder) and no target_mapping, segments or mask_g.
        head_mask: (H,) or None. Returns h update (B, T, D), g update (B, P, D) or None, and the
        probabilities (B, H, T, K) of each stream when asked (the g stream's at token positions).
    """

    #: the projections of the tokens' rows, which ``together`` may compute as one (see ``_project``)
    SAME_INPUT = ("query", "key", "value")

    def __init__(
        self,
        n_heads: int,
        head_dim: int,
        query: nn.Module,
        key: nn.Module,
        value: nn.Module,
        output: nn.Module,
        position: nn.Module,
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.query, self.key, self.value, self.output, self.position = query, key, value, output, position
        self.together: nn.Module | None = None  # SAME_INPUT's projections in one product (as Attention's)
        self.content_bias = nn.Parameter(torch.empty(n_heads, head_dim))
        self.position_bias = nn.Parameter(torch.empty(n_heads, head_dim))
        self.segment_bias = nn.Parameter(torch.empty(n_heads, head_dim))
        self.segment_embed = nn.Parameter(torch.empty(2, n_heads, head_dim))
        self.dropout = dropout
        self.scale = head_dim**-0.5

    def _heads(self, proj: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return split_heads(proj(x), self.n_heads)  # (B, H, L, Dh)

    def _project(
        self, h: torch.Tensor, g: torch.Tensor | None, memory: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The queries of both streams (B, H, T [+ P], Dh), and the keys and values of the memory
        and the tokens (B, H, [M +] T, Dh). Where they are ``together``, one product over all those
        rows gives them: each row's numbers are its own, so the rows a projection does not need
        (queries of a memory tensor's rows, keys and values of the query stream's) change nothing
        but the work."""
        queried = h if g is None else torch.cat([h, g], dim=1)
        if self.together is None:
            source = h if memory is None else torch.cat([memory, h], dim=1)  # (B, K, D)
            return self._heads(self.query, queried), self._heads(self.key, source), self._heads(self.value, source)
        before = 0 if memory is None else memory.shape[1]
        keys = before + h.shape[1]
        q, k, v = self.together(queried if memory is None else torch.cat([memory, queried], dim=1))
        return (split_heads(q[:, before:], self.n_heads), split_heads(k[:, :keys], self.n_heads),
                split_heads(v[:, :keys], self.n_heads))

    def _bias(self, bias: torch.Tensor) -> torch.Tensor:
        return bias[None, :, None, :]  # (1, H, 1, Dh)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_pos: torch.Tensor,
        segments: torch.Tensor | None,
        mask: torch.Tensor | None,
        head_mask: torch.Tensor | None,
        output_attentions: bool,
        *,
        after: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One stream. Shape: q (B, H, T, Dh); k, v (B, H, K, Dh); k_pos (B|1, H, R, Dh).

        ``after``: q is one query at the position after the last key (K down to 1 from the keys),
        the first K rows of ``k_pos``."""
        # position and segment terms go in as an additive bias next to the mask
        klen = k.shape[2]
        if after:
            extra = torch.matmul(q + self._bias(self.position_bias), k_pos[:, :, :klen].transpose(-1, -2))
        else:
            extra = relative_shift(torch.matmul(q + self._bias(self.position_bias), k_pos.transpose(-1, -2)), klen)
        if segments is not None:
            # (B, H, T, 1, Dh) * (1, H, 1, 2, Dh) summed over Dh: a row's two dot products are rounded
            # alike in any batch (a matrix product here would pick its kernel by the batch's size)
            q_seg = (q + self._bias(self.segment_bias)).unsqueeze(-2)
            per_kind = (q_seg * self.segment_embed.permute(1, 0, 2)[None, :, None]).sum(-1)
            extra = extra + torch.where(segments[:, None], per_kind[..., 1:], per_kind[..., :1])
        extra = extra * self.scale
        if mask is not None:  # clamped: in float16 a blocked score could round to -inf, and a row of them to NaN
            extra = (extra + mask).clamp_min(torch.finfo(extra.dtype).min)
        return attend(
            q + self._bias(self.content_bias),
            k,
            v,
            mask=extra,
            scale=self.scale,
            dropout=self.dropout if self.training else 0.0,
            head_mask=head_mask,
            need_weights=output_attentions,
        )

    def forward(
        self,
        h: torch.Tensor,
        g: torch.Tensor | None,
        *,
        positions: torch.Tensor | None,
        memory: torch.Tensor | LayerMemory | None = None,
        segments: torch.Tensor | None = None,
        mask_h: torch.Tensor | None = None,
        mask_g: torch.Tensor | None = None,
        target_mapping: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        next_query: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        # the two streams' rows go through each projection together: its weights are read once
        queries, k, v = self._project(h, g, memory if isinstance(memory, torch.Tensor) else None)
        if isinstance(memory, LayerMemory):  # keys, values and positions of the memory kept projected
            k, v = memory.extend(k, v, placeholders=int(next_query))
            k_pos = memory.positions(lambda table: self._heads(self.position, table))
        else:
            assert positions is not None, "positions are needed unless the memory is projected"
            k_pos = self._heads(self.position, positions.to(h.dtype))  # (B|1, H, R, Dh)
        args = (k, v, k_pos, segments)

        t = h.shape[1]
        out_h, weights_h = self._attend(queries[:, :, :t], *args, mask_h, head_mask, output_attentions)
        if g is None:
            return self.output(merge_heads(out_h)), None, weights_h, None

        q_g = queries[:, :, t:]  # (B, H, P, Dh)
        if next_query:
            if target_mapping is not None or segments is not None or mask_g is not None:
                raise ValueError("a query after the tokens sees every key: no target_mapping, segments or mask_g")
            out_g, weights_g = self._attend(q_g, k, v, k_pos, None, None, head_mask, output_attentions, after=True)
            updates = self.output(torch.cat([merge_heads(out_h), merge_heads(out_g)], dim=1))
            return updates[:, :t], updates[:, t:], weights_h, weights_g
        if target_mapping is not None:
            q_g = torch.einsum("bhpd,bpt->bhtd", q_g, target_mapping)  # predictions -> their positions
        out_g, weights_g = self._attend(q_g, *args, mask_g, head_mask, output_attentions)
        if target_mapping is not None:
            out_g = torch.einsum("bhtd,bpt->bhpd", out_g, target_mapping)  # positions -> predictions
        updates = self.output(torch.cat([merge_heads(out_h), merge_heads(out_g)], dim=1))
        return updates[:, :t], updates[:, t:], weights_h, weights_g


class XLNetLayer(TransformerLayer):
    """A post-LN layer run over both streams with the same weights.

    Each stream goes ``x = norm(x + dropout(attn))`` then ``x = norm(x + dropout(ffn(x)))``,
    the shared layer's residual with its ``self_attn_post_norm`` and ``ffn_post_norm`` slots.

    Shape: h (B, T, D), g (B, P, D) or None; the other arguments as ``RelativeAttention``.
    Returns h, g and the attention probabilities of each stream (None unless asked).
    """

    def __init__(
        self,
        self_attn: RelativeAttention,
        ffn: FeedForward,
        *,
        self_attn_post_norm: nn.Module,
        ffn_post_norm: nn.Module,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            self_attn,  # type: ignore[arg-type]
            ffn,
            self_attn_post_norm=self_attn_post_norm,
            ffn_post_norm=ffn_post_norm,
            dropout=dropout,
        )

    def _stream(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        x = self._residual(x, update, self.self_attn_post_norm)
        return self._residual(x, self.ffn(x), self.ffn_post_norm)

    def forward(  # type: ignore[override]
        self,
        h: torch.Tensor,
        g: torch.Tensor | None,
        **attn_args: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        update_h, update_g, weights_h, weights_g = self.self_attn(h, g, **attn_args)
        if g is None:
            return self._stream(h, update_h), None, weights_h, weights_g
        # both streams' rows through one feed-forward pass (its weights read once)
        t = h.shape[1]
        both = self._stream(torch.cat([h, g], dim=1), torch.cat([update_h, update_g], dim=1))
        return both[:, :t], both[:, t:], weights_h, weights_g


def two_stream_masks(
    config: "XLNetConfig",
    qlen: int,
    mlen: int,
    attention_mask: torch.Tensor | None,
    input_mask: torch.Tensor | None,
    perm_mask: torch.Tensor | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Additive masks (B|1, 1, T, K) of the content and the query stream, or None.

    ``config`` gives ``attn_type`` and ``same_length``.

    A key is blocked by the causal pattern (``uni``), by padding, or by ``perm_mask``; in the
    content stream a token always sees itself.
    """
    klen = mlen + qlen
    query = torch.arange(qlen, device=device)[:, None] + mlen  # absolute position of each query
    key = torch.arange(klen, device=device)[None, :]
    blocked: torch.Tensor | None = None

    def join(more: torch.Tensor) -> None:
        nonlocal blocked
        blocked = more if blocked is None else blocked | more

    if config.attn_type == "uni":
        causal = key > query
        if config.same_length:  # every query sees the same number of keys
            causal = causal | (key < query - mlen)
        join(causal[None])  # (1, T, K)
    if input_mask is not None and attention_mask is not None:
        raise ValueError("pass one of input_mask (1 = padding) and attention_mask (0 = padding), not both")
    if input_mask is None and attention_mask is not None:
        input_mask = 1.0 - attention_mask.float()
    if input_mask is not None:
        padding = input_mask.to(device) > 0  # (B, T) or (B, >= K)
        if padding.shape[1] == qlen:
            padding = torch.cat([padding.new_zeros(padding.shape[0], mlen), padding], dim=1)
        elif padding.shape[1] >= klen:
            padding = padding[:, -klen:]
        else:
            raise ValueError(
                f"a padding mask of length {padding.shape[1]} fits neither the input ({qlen}) "
                f"nor memory plus input ({klen})"
            )
        join(padding[:, None, :])  # (B, 1, K)
    if perm_mask is not None:
        perm = perm_mask.to(device) > 0  # (B, T, T)
        join(torch.cat([perm.new_zeros(perm.shape[0], qlen, mlen), perm], dim=2))
    if blocked is None:
        return None, None
    blocked_h = blocked & (key != query)[None]
    return additive(~blocked_h[:, None], dtype), additive(~blocked[:, None], dtype)
