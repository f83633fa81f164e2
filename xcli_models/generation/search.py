"""Search strategies over an adapter: greedy / sampling, and beam search.

Both loops are the same shape: process the scores of the next token, choose,
append, check the stop conditions, and only then run the next decode step (no
forward pass is wasted after the last token). They reproduce the reference's
``generate`` decisions exactly: the same processed scores, the same
``argmax`` / ``topk`` calls (hence the same tie-breaking), the same beam
bookkeeping (the vectorised beam search of transformers 4.56: 2 x beams
candidates per step, length-penalised finished hypotheses, the
``early_stopping`` heuristics), so greedy and beam outputs are token-identical.

Sampling draws from per-row ``torch.Generator``\\ s when a seed is given (see
``row_generators``), so a row's sample depends only on its prompt, the seed and
its sample index -- not on the batch it was run in, nor on the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from .. import native
from .adapters import Adapter, State
from .config import GenerationConfig
from .processors import Processor, apply
from .stopping import Condition, is_done

#: chooses sampled tokens: (probabilities (R, V), step index) -> tokens (R,)
Sampler = Callable[[torch.Tensor, int], torch.Tensor]
#: called after every step with the tokens just chosen, (R,)
Streamer = Callable[[torch.Tensor], None]

_FAR = -1.0e9  # the reference's "never": added to scores that must lose every comparison


@dataclass
class SearchResult:
    sequences: torch.Tensor  # (R_out, L)
    sequence_scores: torch.Tensor  # (R_out,)
    scores: tuple[torch.Tensor, ...] | None  # processed next-token scores per step, (R, V) each
    beam_indices: torch.Tensor | None = None


def row_generators(
    seeds: Sequence[int] | None, samples_per_prompt: int, device: torch.device
) -> list[torch.Generator] | None:
    """One generator per row: row ``p * n + j`` (prompt p, sample j) is seeded ``seeds[p] + j``."""
    if seeds is None:
        return None
    out = []
    for seed in seeds:
        for j in range(samples_per_prompt):
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seed) + j)
            out.append(generator)
    return out


def multinomial_sampler(generators: list[torch.Generator] | None, draws: int = 1) -> Sampler:
    """Draw ``draws`` tokens per row without replacement, from each row's generator (or the global one)."""

    def sample(probs: torch.Tensor, step: int) -> torch.Tensor:
        if generators is None:
            return torch.multinomial(probs, num_samples=draws)
        if len(generators) != probs.shape[0]:
            raise ValueError(f"{len(generators)} seeded generators for {probs.shape[0]} rows")
        return torch.cat([
            torch.multinomial(row[None], num_samples=draws, generator=g) for row, g in zip(probs, generators)
        ])

    return sample


def greedy_or_sample(
    adapter: Adapter,
    state: State,
    logits: torch.Tensor,
    sequences: torch.Tensor,
    *,
    config: GenerationConfig,
    processors: Sequence[Processor],
    conditions: Sequence[Condition],
    sampler: Sampler | None,
    streamer: Streamer | None = None,
    score_sequences: bool = False,
) -> SearchResult:
    """Greedy decoding (``sampler`` None) or sampling, one token per row per step.

    Shape: logits (R, V) of the first new token; sequences (R, L0) the decoder input so far.
    A finished row gets the pad token (else the first EOS) from then on. With ``output_scores``
    or ``score_sequences`` its score is the sum of the log-probabilities of its tokens under the
    processed distribution, over ``length ** length_penalty`` (the beam-search convention).
    """
    rows = sequences.shape[0]
    device = sequences.device
    fill = config.effective_pad_token_id
    stops_early = bool(config.eos_ids or config.stop_string_list)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    total = torch.zeros(rows, dtype=torch.float32, device=device)
    lengths = torch.zeros(rows, dtype=torch.float32, device=device)
    kept_scores: list[torch.Tensor] | None = [] if config.output_scores else None
    step = 0
    while True:
        scores = apply(processors, sequences, logits, owned=True)  # (each step's logits are new)
        if kept_scores is not None:
            kept_scores.append(scores)
        if sampler is None:
            tokens = native.argmax_rows(scores)  # torch.argmax's indices, faster
        else:
            tokens = sampler(F.softmax(scores, dim=-1), step).reshape(-1)
        if stops_early and fill is not None:
            tokens = torch.where(unfinished, tokens, torch.full_like(tokens, fill))
        if score_sequences or config.output_scores:  # a softmax over the vocabulary per step
            logp = torch.log_softmax(scores, dim=-1).gather(1, tokens[:, None])[:, 0]
            total += torch.where(unfinished, logp, torch.zeros_like(logp))
        lengths += unfinished.float()
        sequences = torch.cat([sequences, tokens[:, None]], dim=1)
        if streamer is not None:
            streamer(tokens)
        unfinished &= ~is_done(conditions, sequences)
        step += 1
        if not bool(unfinished.any()):
            break
        logits = adapter.step(state, tokens)
    sequence_scores = total / lengths.clamp(min=1) ** config.length_penalty
    return SearchResult(sequences, sequence_scores, tuple(kept_scores) if kept_scores is not None else None)


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (B, K') of the beam axis of ``tensor`` (B, K, ...)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def beam_search(
    adapter: Adapter,
    state: State,
    logits: torch.Tensor,
    sequences: torch.Tensor,
    *,
    config: GenerationConfig,
    processors: Sequence[Processor],
    conditions: Sequence[Condition],
    vocab_size: int,
    sampler: Sampler | None = None,
) -> SearchResult:
    """Beam search (beam sampling with ``sampler``). Shape: logits (B * K, V) for the first step;
    sequences (B * K, L0) the decoder input of every beam."""
    beams, max_length = config.num_beams, config.max_length
    early_stopping, length_penalty = config.early_stopping, config.length_penalty
    rows, prompt_length = sequences.shape
    batch = rows // beams
    device = sequences.device
    candidates = max(2, 1 + len(config.eos_ids)) * beams  # enough that `beams` of them can go on after EOS
    top_beams = torch.arange(candidates, device=device) < beams

    running = torch.full((batch, beams, max_length), _fill_id(config), dtype=torch.long, device=device)
    running[:, :, :prompt_length] = sequences.view(batch, beams, prompt_length)
    finished = running.clone()
    running_scores = torch.zeros(batch, beams, dtype=torch.float32, device=device)
    running_scores[:, 1:] = _FAR  # only the first beam may start: the beams are still identical
    finished_scores = torch.full((batch, beams), _FAR, dtype=torch.float32, device=device)
    is_finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    running_origin = torch.full((batch, beams, max_length - prompt_length), -1, dtype=torch.int32, device=device)
    finished_origin = running_origin.clone()
    batch_offset = torch.arange(batch, device=device)[:, None] * beams
    kept_scores: list[torch.Tensor] | None = [] if config.output_scores else None

    length = prompt_length
    step = 0
    while True:
        flat = running[:, :, :length].reshape(rows, length)
        log_probs = apply(processors, flat, torch.log_softmax(logits, dim=-1), owned=True)
        if kept_scores is not None:
            kept_scores.append(log_probs.clone())
        totals = (log_probs.view(batch, beams, -1) + running_scores[:, :, None]).view(batch, -1)

        # the best `candidates` continuations over all beams of each prompt
        if sampler is None:
            top_scores, top_index = torch.topk(totals, k=candidates)
        else:
            top_index = sampler(F.softmax(totals, dim=-1), step).view(batch, candidates)
            top_scores = torch.gather(totals, 1, top_index)
        source = top_index // vocab_size
        cand_sequences = _gather(running, source)
        cand_sequences[:, :, length] = top_index % vocab_size
        cand_origin = _gather(running_origin, source)
        cand_origin[:, :, length - prompt_length] = (source + batch_offset).to(cand_origin.dtype)
        hits = is_done(conditions, cand_sequences[:, :, : length + 1].reshape(batch * candidates, -1))
        hits = hits.view(batch, candidates)

        # beams that go on: the best candidates that did not just stop
        going_scores = top_scores + hits.to(torch.float32) * _FAR
        keep = torch.topk(going_scores, k=beams)[1]
        running = _gather(cand_sequences, keep)
        running_scores = _gather(going_scores, keep)
        running_origin = _gather(cand_origin, keep)

        # finished hypotheses: merge the ones that just stopped (among the top `beams`) in
        just_finished = hits & top_beams[None, :]
        final_scores = top_scores / ((length + 1 - prompt_length) ** length_penalty)
        full = torch.all(is_finished, dim=-1, keepdim=True) & (early_stopping is True)
        final_scores = final_scores + full.to(torch.float32) * _FAR
        final_scores = final_scores + (~improvable).to(torch.float32) * _FAR
        final_scores = final_scores + (~just_finished) * _FAR
        merged_scores = torch.cat([finished_scores, final_scores], dim=1)
        best = torch.topk(merged_scores, k=beams)[1]
        finished = _gather(torch.cat([finished, cand_sequences], dim=1), best)
        finished_scores = _gather(merged_scores, best)
        finished_origin = _gather(torch.cat([finished_origin, cand_origin], dim=1), best)
        is_finished = _gather(torch.cat([is_finished, just_finished], dim=1), best)

        length += 1
        step += 1
        improvable = improvable & _can_improve(config, running_scores, finished_scores, is_finished,
                                               length - prompt_length, prompt_length)
        go_on = (
            bool(torch.any(improvable))
            and not (bool(torch.all(is_finished)) and early_stopping is True)
            and not bool(torch.all(hits))
        )
        if not go_on:
            break
        origin = running_origin[:, :, length - 1 - prompt_length].reshape(-1).long()
        adapter.reorder(state, origin)
        logits = adapter.step(state, running[:, :, length - 1].reshape(-1))

    return _best_finished(config.num_return_sequences, finished, finished_scores, finished_origin, prompt_length,
                          kept_scores)


def _fill_id(config: GenerationConfig) -> int:
    """What fills a beam's unused positions: the reference's pad, unless it is 0 or unset (then the
    first end id; -1 without one)."""
    if not config.eos_ids:
        return -1
    return config.pad_token_id if config.pad_token_id else config.eos_ids[0]


def _can_improve(config: GenerationConfig, running_scores: torch.Tensor, finished_scores: torch.Tensor,
                 is_finished: torch.Tensor, generated: int, prompt_length: int) -> torch.Tensor:
    """Per prompt (B, 1): can its best running beam still beat its worst finished one? ``generated``:
    the tokens each beam has grown so far."""
    if config.early_stopping == "never" and config.length_penalty > 0.0:
        best_length = config.max_length - prompt_length  # the best a beam may yet reach
    else:
        best_length = generated
    best_running = running_scores[:, :1] / (best_length ** config.length_penalty)
    worst_finished = torch.where(is_finished, torch.min(finished_scores, dim=1, keepdim=True)[0], _FAR)
    return torch.any(best_running > worst_finished, dim=-1, keepdim=True)


def _best_finished(returned: int, finished: torch.Tensor, finished_scores: torch.Tensor,
                   finished_origin: torch.Tensor, prompt_length: int,
                   kept_scores: list[torch.Tensor] | None) -> SearchResult:
    """The ``returned`` best finished hypotheses of each prompt, cut to the longest one generated."""
    batch = finished.shape[0]
    sequences_out = finished[:, :returned].reshape(batch * returned, -1)
    scores_out = finished_scores[:, :returned].reshape(-1)
    origin_out = finished_origin[:, :returned].reshape(batch * returned, -1)
    generated = int(((origin_out + 1).bool()).sum(dim=1).max())
    return SearchResult(
        sequences_out[:, : prompt_length + generated],
        scores_out,
        tuple(kept_scores) if kept_scores is not None else None,
        origin_out[:, :generated],
    )
