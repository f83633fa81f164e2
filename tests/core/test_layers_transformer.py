"""The shared transformer layer (xcli_models/layers/transformer.py, feedforward.py): its dropouts
run in training only, drawing from the random stream exactly where ``F.dropout`` always did, and
an empty norm slot is the identity."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from xcli_models.layers import Attention, FeedForward, TransformerLayer, projections


@pytest.mark.parametrize("where", ["pre", "post"])
def test_dropout_runs_in_training_only_and_draws_as_before(where: str) -> None:
    torch.manual_seed(0)
    ffn = FeedForward(16, 32, "relu", dropout=0.25)
    layer = TransformerLayer.with_norms(where, Attention(2, **projections(16)), ffn, 16, dropout=0.25)
    x = torch.randn(2, 5, 16)

    def expected(training: bool) -> torch.Tensor:
        """The layer's arithmetic, with ``F.dropout`` called at each of its three places."""
        pre = (lambda slot, h: getattr(layer, slot)(h)) if where == "pre" else (lambda slot, h: h)
        post = (lambda slot, h: getattr(layer, slot)(h)) if where == "post" else (lambda slot, h: h)
        update, _ = layer.self_attn(pre("self_attn_pre_norm", x))
        h = post("self_attn_post_norm", x + F.dropout(update, 0.25, training))
        inner = F.dropout(ffn.act(ffn.up(pre("ffn_pre_norm", h))), 0.25, training)
        return post("ffn_post_norm", h + F.dropout(ffn.down(inner), 0.25, training))

    with torch.no_grad():
        layer.train()
        torch.manual_seed(1)
        trained = layer(x)[0]
        torch.manual_seed(1)
        assert torch.equal(trained, expected(True))
        layer.eval()
        state = torch.get_rng_state()
        evaluated = layer(x)[0]
        assert torch.equal(torch.get_rng_state(), state)  # nothing drawn outside training
        assert torch.equal(evaluated, expected(False)) and not torch.equal(evaluated, trained)
        layer.train()
        layer.dropout = ffn.dropout = 0.0  # training without dropout: the evaluation's numbers, nothing drawn
        assert torch.equal(layer(x)[0], evaluated) and torch.equal(torch.get_rng_state(), state)
