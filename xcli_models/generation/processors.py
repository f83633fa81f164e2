"""Logits processors: each maps the scores of the next token to new scores.

A processor is called as ``processor(sequences, scores)`` with the tokens so
far (the prompt, left padding included, for decoder-only models; the decoder
tokens from the start token for encoder-decoder models) and the scores of the
next token, and returns new scores; it never changes its inputs (but see
``apply``: a processor's ``in_place`` form may, where the scores are the
caller's to change). They follow
the reference's definitions and order, so greedy and beam results (which see
the processed scores) match it token for token:

penalties and bans (repetition penalty, n-gram bans, bad words, minimum
lengths, forced first/last tokens), then, when sampling, the filters
(temperature, top-k, top-p, typical-p).

Shape: sequences (R, L) for R rows (batch x beams or samples); scores (R, V) float32.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .config import GenerationConfig

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NEG_INF = -math.inf


class RepetitionPenalty:
    """Tokens already in the sequence become less likely: a score s becomes s / penalty when
    positive, s * penalty when negative (the prompt counts, padding too)."""

    def __init__(self, penalty: float) -> None:
        self.penalty = float(penalty)

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen = torch.gather(scores, 1, sequences)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, sequences, seen)


def _ngram_continuations(history: torch.Tensor, context: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the last ``n - 1`` tokens of ``context`` occurred in ``history`` as the start of an
    n-gram: the rows and the tokens that followed. Shape: history (R, S), context (R, L)."""
    if history.shape[1] < n or context.shape[1] < n - 1:
        empty = torch.empty(0, dtype=torch.long, device=history.device)
        return empty, empty
    windows = history.unfold(1, n, 1)  # (R, S - n + 1, n)
    if n > 1:
        tail = context[:, context.shape[1] - (n - 1):]  # (R, n - 1)
        match = (windows[:, :, :-1] == tail[:, None, :]).all(dim=-1)
    else:
        match = torch.ones(windows.shape[:2], dtype=torch.bool, device=history.device)
    rows, starts = match.nonzero(as_tuple=True)
    return rows, windows[rows, starts, -1]


class NoRepeatNGram:
    """No n-gram of size ``n`` occurs twice in a sequence (the prompt included)."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows, tokens = _ngram_continuations(sequences, sequences, self.n)
        out = scores.clone()
        out[rows, tokens] = NEG_INF
        return out


class EncoderNoRepeatNGram:
    """No n-gram of size ``n`` of the encoder input (the prompt, for decoder-only models) is
    repeated in the output. Row r of the scores belongs to input row r // (R / B)."""

    def __init__(self, n: int, encoder_input_ids: torch.Tensor) -> None:
        self.n = int(n)
        self.encoder_input_ids = encoder_input_ids if encoder_input_ids.dim() == 2 else encoder_input_ids[None]

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        per_input = scores.shape[0] // self.encoder_input_ids.shape[0]
        history = self.encoder_input_ids.repeat_interleave(per_input, dim=0).to(sequences.device)
        rows, tokens = _ngram_continuations(history, sequences, self.n)
        out = scores.clone()
        out[rows, tokens] = NEG_INF
        return out


class BadWords:
    """Token sequences that must not be generated: the last token of each is banned wherever the
    tokens before it were just generated (a one-token entry always). Entries that are a single
    EOS token are left out, as in the reference."""

    def __init__(self, bad_words_ids: Sequence[Sequence[int]], eos_ids: Sequence[int] = ()) -> None:
        entries = [list(seq) for seq in bad_words_ids if not (len(seq) == 1 and seq[0] in set(eos_ids))]
        self.single = sorted({seq[0] for seq in entries if len(seq) == 1})
        self.longer = [seq for seq in entries if len(seq) > 1]
        self.largest = max((t for seq in bad_words_ids for t in seq), default=-1)

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.largest >= scores.shape[-1]:
            raise ValueError(f"bad_words_ids names token {self.largest}, beyond the vocabulary ({scores.shape[-1]})")
        banned = torch.zeros_like(scores, dtype=torch.bool)
        if self.single:
            banned[:, self.single] = True
        length = sequences.shape[1]
        for seq in self.longer:
            if len(seq) > length:
                continue
            prefix = torch.tensor(seq[:-1], dtype=sequences.dtype, device=sequences.device)
            banned[:, seq[-1]] |= (sequences[:, length - len(prefix):] == prefix).all(dim=1)
        return scores.masked_fill(banned, NEG_INF)


class MinLength:
    """EOS is banned while the sequence is shorter than ``min_length`` tokens; with ``prompt_length``
    the count starts after the prompt (``min_new_tokens``)."""

    def __init__(self, min_length: int, eos_ids: Sequence[int], prompt_length: int = 0) -> None:
        self.min_length, self.eos_ids, self.prompt_length = int(min_length), list(eos_ids), prompt_length

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if sequences.shape[1] - self.prompt_length >= self.min_length:
            return scores
        return self.in_place(sequences, scores.clone())

    def in_place(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The same, written into ``scores`` (a copy of the vocabulary's scores is a step's largest
        allocation: 0.36 ms for MVP-large's batch of 8, measured)."""
        if sequences.shape[1] - self.prompt_length < self.min_length:
            scores[:, self.eos_ids] = NEG_INF
        return scores


class ForceToken:
    """At one length only ``token_ids`` may come next (score 0, everything else -inf): the
    forced BOS after the decoder start token, the forced EOS before ``max_length``."""

    def __init__(self, at_length: int, token_ids: int | Sequence[int]) -> None:
        self.at_length = at_length
        self.token_ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if sequences.shape[1] != self.at_length:
            return scores
        out = torch.full_like(scores, NEG_INF)
        out[:, self.token_ids] = 0.0
        return out


class Temperature:
    def __init__(self, temperature: float) -> None:
        self.temperature = float(temperature)

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """Keep the ``k`` best scores (ties with the k-th kept too)."""

    def __init__(self, k: int, min_keep: int = 1) -> None:
        self.k = max(int(k), min_keep)

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1:]
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP:
    """Nucleus filtering: keep the most likely tokens whose probabilities sum to ``p`` (at least
    ``min_keep``); the least likely tokens making up the remaining ``1 - p`` are dropped."""

    def __init__(self, p: float, min_keep: int = 1) -> None:
        self.p, self.min_keep = float(p), min_keep

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ascending, order = torch.sort(scores, descending=False)
        mass_below = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop = mass_below <= (1 - self.p)
        drop[..., -self.min_keep:] = False
        return scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)


class TypicalP:
    """Locally typical sampling: keep the tokens whose surprise is closest to the distribution's
    entropy, until their probabilities reach ``mass`` (at least ``min_keep``)."""

    def __init__(self, mass: float, min_keep: int = 1) -> None:
        self.mass, self.min_keep = float(mass), min_keep

    def __call__(self, sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(scores, dim=-1)
        entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)
        distance = (-logp - entropy).abs()
        by_distance, order = torch.sort(distance, descending=False)
        mass = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (mass < self.mass).sum(dim=1).clamp_(max=by_distance.shape[-1] - 1)
        drop = by_distance > by_distance.gather(1, last.view(-1, 1))
        drop[..., : self.min_keep] = False
        return scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)


def build_processors(
    config: GenerationConfig,
    *,
    input_length: int,
    encoder_input_ids: torch.Tensor | None,
    extra: Sequence[Processor] = (),
) -> list[Processor]:
    """The processors ``config`` asks for, in the reference's order.

    ``input_length`` is the length of the decoder input before generation (prompt or start
    token); ``config`` has absolute lengths (``GenerationConfig.resolve_lengths``).
    """
    eos = config.eos_ids
    out: list[Processor] = []
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(config.repetition_penalty))
    if config.no_repeat_ngram_size and config.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGram(config.no_repeat_ngram_size))
    encoder_ngrams = config.encoder_no_repeat_ngram_size
    if encoder_ngrams and encoder_ngrams > 0 and encoder_input_ids is not None:
        out.append(EncoderNoRepeatNGram(config.encoder_no_repeat_ngram_size, encoder_input_ids))
    if config.bad_words_ids is not None:
        out.append(BadWords(config.bad_words_ids, eos))
    if eos and config.min_length is not None and config.min_length > 0:
        out.append(MinLength(config.min_length, eos))
    if eos and config.min_new_tokens is not None and config.min_new_tokens > 0:
        out.append(MinLength(config.min_new_tokens, eos, prompt_length=input_length))
    if config.forced_bos_token_id is not None:
        out.append(ForceToken(1, config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        out.append(ForceToken(config.max_length - 1, config.forced_eos_token_id))
    # custom processors replace built-in ones of the same type, as in the reference
    for custom in extra:
        for i, built in enumerate(out):
            if type(built) is type(custom):
                out[i] = custom
                break
        else:
            out.append(custom)
    if config.do_sample:
        # beam sampling keeps one token more than there are EOS tokens, so a beam can go on
        min_keep = (len(eos) + 1 if eos else 2) if config.num_beams > 1 else 1
        if config.temperature is not None and config.temperature != 1.0:
            out.append(Temperature(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            out.append(TopK(config.top_k, min_keep))
        if config.top_p is not None and config.top_p < 1.0:
            out.append(TopP(config.top_p, min_keep))
        if config.typical_p is not None and config.typical_p < 1.0:
            out.append(TypicalP(config.typical_p, min_keep))
    return out


def apply(processors: Sequence[Processor], sequences: torch.Tensor, scores: torch.Tensor, *,
          owned: bool = False) -> torch.Tensor:
    """``scores`` through every processor in turn. ``owned``: the scores are the caller's to change
    (nothing else holds them), so that a processor with an ``in_place`` form writes into them, as it
    may into scores an earlier processor made."""
    given = scores
    for processor in processors:
        in_place = getattr(processor, "in_place", None)
        if in_place is not None and (owned or scores is not given):
            scores = in_place(sequences, scores)
        else:
            scores = processor(sequences, scores)
    return scores
