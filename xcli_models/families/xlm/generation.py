"""How generation drives XLMWithLMHeadModel (see :mod:`xcli_models.generation.adapters`).

The reference appends a mask token (and language ids) at every step and scores the next token
at the mask's position, without a cache. In a causal XLM no earlier position sees the mask, so
we run the new token and the mask over the cache and drop the mask's keys again: same tokens,
one token of work per step. The reference passes no attention mask: a row with a pad token
anywhere has its last positions zeroed, so its next-token logits are the LM head of a zero
vector; we reproduce that directly. Non-causal (MLM) checkpoints recompute everything each step.
"""

from __future__ import annotations

import torch
from torch import nn

from ...generation.adapters import Adapter, State, is_identity

__all__ = ["XLMAdapter"]


class XLMAdapter(Adapter):
    """XLMWithLMHeadModel (see the module docstring)."""

    def __init__(self, model: nn.Module, *, use_cache: bool = True, lang_id: int | None = None) -> None:
        super().__init__(model, use_cache=use_cache)
        config = model.config
        self.transformer = model.transformer
        self.cached = use_cache and bool(config.causal)
        self.mask_id = config.mask_token_id
        self.pad_id = config.pad_index
        self.lang_id = config.lang_id if lang_id is None else lang_id

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.pred_layer(hidden[:, None])[0][:, 0].float()  # (R, D) -> (R, V)

    def _run(self, state: State, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` end with the mask token; its keys are dropped from the cache again."""
        ids = torch.cat([ids, ids.new_full((ids.shape[0], 1), self.mask_id)], dim=1)
        langs = None if self.lang_id is None else torch.full_like(ids, self.lang_id)
        kept = None
        if self.cached:
            kept = (state.cache.get_seq_length() if state.cache is not None else 0) + ids.shape[1] - 1
        out = self.transformer(
            ids, langs=langs, past_key_values=state.cache, use_cache=self.cached, return_dict=True
        )
        if self.cached:
            state.cache = out.past_key_values
            state.cache.crop(kept)
        dead = state.extra["dead"] | (ids[:, -1] == self.pad_id)  # a pad token anywhere zeroes the last position
        hidden = out.last_hidden_state[:, -1]
        hidden = hidden.masked_fill(dead[:, None], 0.0)
        return self._head(hidden)

    def start(self, input_ids, attention_mask, decoder_input_ids=None):
        state = State(ids=input_ids, extra={"dead": (input_ids == self.pad_id).any(dim=1)})
        return state, self._run(state, input_ids)

    def step(self, state, tokens):
        state.ids = torch.cat([state.ids, tokens[:, None]], dim=1)
        state.extra["dead"] = state.extra["dead"] | (tokens == self.pad_id)
        return self._run(state, tokens[:, None] if self.cached else state.ids)

    def reorder(self, state, index):
        super().reorder(state, index)
        if index.shape[0] != state.extra["dead"].shape[0] or not is_identity(index):
            state.extra["dead"] = state.extra["dead"].index_select(0, index)
