"""When a sequence is finished: its length, an EOS token, or a stop string in its text.

Each condition is called as ``condition(sequences)`` with the tokens so far
(R, L) and answers, per row, whether that row is done (R,) bool.

Stop strings are exact: a row stops at the step whose token makes the decoded
text of the generated tokens (the prompt not included, special tokens
skipped) contain one of the strings, however many tokens the string spans and
wherever the token boundaries fall. ``cut_at_stop`` then cuts the text just
before the first stop string, which is therefore not part of the result; the
tokens are kept up to and including the one that completed the string.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Condition = Callable[[torch.Tensor], torch.Tensor]
Decode = Callable[[list[int]], str]


class MaxLength:
    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        return torch.full((sequences.shape[0],), sequences.shape[1] >= self.max_length, device=sequences.device)


class EosToken:
    def __init__(self, eos_ids: Sequence[int]) -> None:
        self.eos_ids = torch.tensor(list(eos_ids), dtype=torch.long)

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        return torch.isin(sequences[:, -1], self.eos_ids.to(sequences.device))


class StopStrings:
    """Done when the decoded generated text contains one of ``stop_strings``."""

    def __init__(self, stop_strings: Sequence[str], decode: Decode, prompt_length: int) -> None:
        if not stop_strings or any(not isinstance(s, str) or not s for s in stop_strings):
            raise ValueError("stop strings must be non-empty strings")
        if decode is None:
            raise ValueError("stop strings need a tokenizer (or a decode function) to read the generated text")
        self.stop_strings = list(stop_strings)
        self.decode = decode
        self.prompt_length = prompt_length

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        rows = sequences[:, self.prompt_length:].tolist()
        done = [any(s in self.decode(row) for s in self.stop_strings) for row in rows]
        return torch.tensor(done, dtype=torch.bool, device=sequences.device)


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    found = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


def build_conditions(
    max_length: int, eos_ids: Sequence[int], stop_strings: Sequence[str], decode: Decode | None, prompt_length: int
) -> list[Condition]:
    out: list[Condition] = [MaxLength(max_length)]
    if stop_strings:
        out.append(StopStrings(stop_strings, decode, prompt_length))  # type: ignore[arg-type]
    if eos_ids:
        out.append(EosToken(eos_ids))
    return out


def is_done(conditions: Sequence[Condition], sequences: torch.Tensor) -> torch.Tensor:
    done = torch.zeros(sequences.shape[0], dtype=torch.bool, device=sequences.device)
    for condition in conditions:
        done |= condition(sequences)
    return done
