"""ProphetNet's n-stream self-attention: the part of the family that is its own.

The decoder carries ``1 + ngram`` streams of T positions, concatenated on the
time axis as ``[main | predict_0 | ... | predict_{ngram-1}]``:

* the main stream is ordinary causal self-attention over the tokens so far;
* predicting stream s at position i is fed only a position (and a stream
  embedding). Its queries see the main stream's keys ``0 .. i - s`` (and
  always key 0) plus its own key at i, never another predicting position;
  it is trained on position i's label (token i + 1), so stream s predicts
  s + 1 tokens past what it sees. ``logits`` come from stream 0.

Every score gets a relative position bias: a linear map of the query's hidden
state to one value per (bucket, head), read at the T5-style bucket of the
key's offset (one-directional: keys ahead of the query share bucket 0).
Only the main stream's keys and values are cached, since predicting streams
never look at earlier predicting positions.

Reference behaviour kept for parity (transformers 4.56.2, which the checkpoints
and ``generate`` are measured against):

* A decode step (cached keys present) applies no padding mask and no
  ``- s`` offset: every predicting stream sees all main keys ``0 .. i``. The
  first stream (the one ``logits`` come from) is unaffected by the latter.
* The predicting streams' relative bias is computed in (position, stream,
  head) order and read back in (stream, head, position) order
  (``_predict_bias``). For one-token calls the two orders agree, so decode
  steps are unaffected; a longer uncached call mixes biases across positions
  exactly as the reference does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...layers import KVCache, attend, split_heads


def relative_buckets(offsets: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5-style one-directional buckets of ``key - query`` offsets.

    Keys at or ahead of the query fall in bucket 0; a key d positions back is
    in bucket d while d < num_buckets // 2, then in logarithmically wider
    buckets up to ``max_distance`` and beyond (the last bucket).
    Shape: any -> same, int64.
    """
    distance = (-offsets).clamp(min=0)
    exact = num_buckets // 2
    # the reference's float32 expression, term for term, so bucket edges agree exactly
    wide = exact + torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (
        num_buckets - exact
    )
    wide = wide.clamp(max=num_buckets - 1).long()
    return torch.where(distance < exact, distance, wide)


@dataclass
class StreamMasks:
    """What the n-stream attention needs besides hidden states, shared by all layers of a call.

    Shape: main (B|1, 1, T, S) additive; predict (B|1, ngram, 1, T, S + T) additive, keys
    being the S main keys (cached + new) then the stream's own T keys; main_buckets (T, S);
    predict_buckets (T, S + T).
    """

    main: torch.Tensor
    predict: torch.Tensor
    main_buckets: torch.Tensor
    predict_buckets: torch.Tensor

    @classmethod
    def build(
        cls,
        attention_mask: torch.Tensor | None,
        past: int,
        length: int,
        ngram: int,
        *,
        num_buckets: int,
        max_distance: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> "StreamMasks":
        """Masks and buckets for ``length`` new positions after ``past`` cached ones.

        ``attention_mask`` (B, T) is the padding mask of the new positions; like the
        reference, it is used only when nothing is cached yet (see the module docstring).
        """
        low = torch.finfo(dtype).min
        queries = torch.arange(past, past + length, device=device)[:, None]  # (T, 1) absolute positions
        keys = torch.arange(past + length, device=device)[None, :]  # (1, S) main keys
        own = queries.T  # (1, T): a stream's own keys sit at the query positions

        def blocked(where: torch.Tensor) -> torch.Tensor:
            return torch.where(where, low, 0.0).to(dtype)

        # stream s sees main keys up to i - s (and key 0); a decode step drops the offset
        reach = torch.arange(ngram, device=device)[:, None, None] * (past == 0)  # (n, 1, 1)
        main = blocked(keys > queries)[None, None]  # (1, 1, T, S)
        predict = torch.cat(
            [blocked((keys > queries - reach) & (keys != 0)), blocked(own != queries).expand(ngram, -1, -1)],
            dim=-1,
        )[None, :, None]  # (1, n, 1, T, S + T)
        if attention_mask is not None and past == 0:
            # added on top of the causal part, as the reference does: a key both padded and
            # causally blocked ends at -inf, which shapes the rows of padded queries
            padding = (1.0 - attention_mask.to(device=device, dtype=dtype)) * low  # (B, S)
            main = main + padding[:, None, None, :]
            predict = predict + torch.cat([padding, padding.new_zeros(padding.shape[0], length)], -1)[
                :, None, None, None, :
            ]
        return cls(
            main=main,
            predict=predict,
            main_buckets=relative_buckets(keys - queries, num_buckets, max_distance),
            predict_buckets=relative_buckets(
                torch.cat([keys - queries - 1, own - queries + 1], dim=1), num_buckets, max_distance
            ),
        )


class NgramSelfAttention(nn.Module):
    """Self-attention of the main stream and the ``ngram`` predicting streams (module docstring).

    Handed its projections by role and the relative bias projection
    (``dim -> num_buckets * n_heads``, laid out bucket-major).

    Shape:
        hidden: (B, (1 + n) * T, D), streams concatenated on time, n the predicting streams
        ``mask`` (``StreamMasks``) was built for (``ngram``, or the first few of them);
        cache: the main stream's keys/values (B, H, S - T, Dh) before the call, S after.
        Returns (B, (1 + n) * T, D) and, when asked, the main stream's probabilities
        (B, H, T, S) and the predicting streams' (B, n, H, T, S + T).
    """

    #: the projections that take the hidden states, which ``together`` may compute as one
    SAME_INPUT = ("query", "key", "value", "relative_bias")

    def __init__(
        self,
        n_heads: int,
        ngram: int,
        num_buckets: int,
        query: nn.Module,
        key: nn.Module,
        value: nn.Module,
        output: nn.Module,
        relative_bias: nn.Module,
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_heads, self.ngram, self.num_buckets = n_heads, ngram, num_buckets
        self.query, self.key, self.value, self.output = query, key, value, output
        self.relative_bias = relative_bias
        self.together: nn.Module | None = None  # SAME_INPUT's projections in one product (as Attention's)
        self.dropout = dropout

    def forward(
        self,
        hidden: torch.Tensor,
        *,
        mask: StreamMasks,
        cache: KVCache | None = None,
        head_mask: torch.Tensor | None = None,
        prefix: None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        if prefix is not None:
            raise ValueError("ProphetNet's n-stream attention takes no prefix key/values")
        batch, total, dim = hidden.shape
        ngram = mask.predict.shape[1]  # the predicting streams run (the first ``ngram``; see StreamMasks)
        streams, heads = 1 + ngram, self.n_heads
        length = total // streams

        def by_stream(x: torch.Tensor) -> torch.Tensor:  # (B, (1+n)T, D) -> (B, 1+n, H, T, Dh)
            return split_heads(x, heads).view(batch, heads, streams, length, -1).transpose(1, 2)

        if self.together is not None:
            projected = self.together(hidden)
        else:
            projected = tuple(getattr(self, role)(hidden) for role in self.SAME_INPUT)
        q, k, v = (by_stream(x) for x in projected[:3])
        main_k, main_v = k[:, 0], v[:, 0]
        if cache is not None:
            main_k, main_v = cache.append(main_k, main_v)  # (B, H, S, Dh)
        keys = main_k.shape[2]
        scale = q.shape[-1] ** -0.5
        dropout = self.dropout if self.training else 0.0

        bias = projected[3].view(batch, streams, length, self.num_buckets, heads)
        main_bias = torch.gather(
            bias[:, 0].permute(0, 3, 1, 2), -1, mask.main_buckets.expand(batch, heads, length, keys)
        )  # (B, H, T, S)
        main_out, main_weights = attend(
            q[:, 0], main_k, main_v,
            mask=main_bias + mask.main,
            scale=scale,
            dropout=dropout,
            head_mask=head_mask,
            need_weights=output_attentions,
        )

        # each predicting stream attends over [main keys | its own keys]: (B, n, H, S + T, Dh)
        pred_k = torch.cat([main_k[:, None].expand(-1, ngram, -1, -1, -1), k[:, 1:]], dim=3)
        pred_v = torch.cat([main_v[:, None].expand(-1, ngram, -1, -1, -1), v[:, 1:]], dim=3)
        pred_bias = torch.gather(
            self._predict_bias(bias[:, 1:]), -1,
            mask.predict_buckets.expand(batch, ngram, heads, length, keys + length),
        )  # (B, n, H, T, S + T)
        pred_out, pred_weights = attend(
            q[:, 1:], pred_k, pred_v,
            mask=pred_bias + mask.predict,
            scale=scale,
            dropout=dropout,
            head_mask=None if head_mask is None else head_mask.view(1, 1, -1, 1, 1),
            need_weights=output_attentions,
        )

        out = torch.cat([main_out[:, None], pred_out], dim=1)  # (B, 1+n, H, T, Dh)
        out = self.output(out.permute(0, 1, 3, 2, 4).reshape(batch, total, dim))
        return out, ((main_weights, pred_weights) if output_attentions else None)

    def _predict_bias(self, bias: torch.Tensor) -> torch.Tensor:
        """The predicting streams' bias (B, n, T, buckets, H) as the reference reads it: laid out
        (B, T, n, H, buckets), then viewed as (B, n, H, T, buckets) (see the module docstring)."""
        batch, n, length, buckets, heads = bias.shape
        return bias.permute(0, 2, 1, 4, 3).reshape(batch, n, heads, length, buckets)
