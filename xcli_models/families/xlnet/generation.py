"""How generation drives XLNetLMHeadModel (see :mod:`xcli_models.generation.adapters`).

As the reference runs it: a dummy token after the sequence that nothing attends to
(``perm_mask``) and that alone is predicted (``target_mapping``); with ``use_mems_eval`` each step
reruns the last two tokens and the dummy over the memory less its last two positions. (This reuse
is the reference's own approximation of a bidirectional model, so ``use_cache=False`` -- a full
rerun each step -- is the reference with ``use_mems_eval=False`` and may pick other tokens.) As in
the reference, XLNet gets no attention mask: left padding is visible to the prompt.

The memory is kept projected (``ProjectedMems``: each layer's keys and values and its projected
relative positions), so a step projects its new tokens only, where the reference re-projects the
whole context in every layer, and the dummy's content stream, which nothing reads, is not run
(``XLNetModel.next_token_states``); ``projected=False`` keeps the reference's ``mems`` of states
and runs the model's forward instead (the same tokens: the tests compare the two).
"""

from __future__ import annotations

from typing import Any

import torch

from ...generation.adapters import Adapter, State, is_identity
from .memory import ProjectedMems

__all__ = ["XLNetAdapter"]


class XLNetAdapter(Adapter):
    """XLNetLMHeadModel (see the module docstring)."""

    #: tokens rerun at each step besides the dummy (the reference's choice)
    rerun = 2

    def __init__(self, model: Any, *, use_cache: bool = True, projected: bool = True) -> None:
        super().__init__(model, use_cache=use_cache)
        self.projected = projected

    def _run(self, state: State, ids: torch.Tensor, mems: Any) -> torch.Tensor:
        batch = ids.shape[0]
        ids = torch.cat([ids, ids.new_zeros(batch, 1)], dim=1)  # the dummy next token
        length = ids.shape[1]
        perm_mask = ids.new_zeros(batch, length, length, dtype=torch.float)
        perm_mask[:, :, -1] = 1.0  # nobody sees the dummy
        target_mapping = ids.new_zeros(batch, 1, length, dtype=torch.float)
        target_mapping[:, 0, -1] = 1.0  # predict the dummy only
        out = self.model(
            ids, mems=mems, perm_mask=perm_mask, target_mapping=target_mapping,
            use_mems=None if self.use_cache else False, return_dict=True,
        )
        state.cache = out.mems if self.use_cache else None
        return out.logits[:, -1].float()

    def _run_projected(self, state: State, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model.transformer.next_token_states(ids, state.cache)  # (B, 1, D)
        return self.model.lm_loss(hidden[:, -1]).float()

    def start(self, input_ids, attention_mask, decoder_input_ids=None):
        state = State(ids=input_ids)
        config = self.model.config
        # the model keeps a memory when use_mems_eval says so; see next_token_states for the rest
        if self.use_cache and self.projected and config.use_mems_eval and not (self.model.training or config.same_length):
            state.cache = self.model.transformer.projected_mems()
            return state, self._run_projected(state, input_ids)
        return state, self._run(state, input_ids, None)

    def step(self, state, tokens):
        state.ids = torch.cat([state.ids, tokens[:, None]], dim=1)
        if isinstance(state.cache, ProjectedMems):
            state.cache.crop_end(self.rerun)
            return self._run_projected(state, state.ids[:, -self.rerun:])
        if state.cache:
            mems = tuple(m[: -self.rerun] for m in state.cache)
            return self._run(state, state.ids[:, -self.rerun:], mems)
        return self._run(state, state.ids, None)

    def reorder(self, state, index):
        if index.shape[0] == state.ids.shape[0] and is_identity(index):
            return
        state.ids = state.ids.index_select(0, index)
        if isinstance(state.cache, ProjectedMems):
            state.cache.reorder(index)
        elif state.cache:
            state.cache = tuple(m.index_select(1, index) for m in state.cache)
