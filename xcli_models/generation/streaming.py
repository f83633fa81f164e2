"""Text as it is generated: token steps in, printable text pieces out.

``TextStream`` is a ``generate(..., streamer=...)`` callback. It keeps each
row's new tokens, decodes them after every step and hands ``on_text(row,
piece)`` the text added since the last call. A piece is held back while the
text ends in an incomplete character (byte-level BPE gives U+FFFD until the
rest of the bytes arrive) or could still be the start of a stop string, so
what is streamed is exactly a prefix of the final text, stop string excluded.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


class TextStream:
    def __init__(
        self,
        decode: Callable[[list[int]], str],
        on_text: Callable[[int, str], None],
        *,
        stop_strings: Sequence[str] = (),
        stop_tokens: Sequence[int] = (),
    ) -> None:
        self.decode = decode
        self.on_text = on_text
        self.stop_strings = [s for s in stop_strings if s]
        self.stop_tokens = set(stop_tokens)
        self.tokens: list[list[int]] = []
        self.shown: list[int] = []  # characters already handed out, per row
        self.done: list[bool] = []

    def __call__(self, tokens: torch.Tensor) -> None:
        values = tokens.tolist()
        if not self.tokens:
            self.tokens = [[] for _ in values]
            self.shown = [0] * len(values)
            self.done = [False] * len(values)
        for row, token in enumerate(values):
            if self.done[row]:
                continue
            if token in self.stop_tokens:
                self.done[row] = True
                self._flush(row, final=True)
                continue
            self.tokens[row].append(token)
            self._flush(row, final=False)

    def end(self) -> None:
        """Hand out what was held back (call once generation has returned)."""
        for row in range(len(self.tokens)):
            if not self.done[row]:
                self._flush(row, final=True)

    def _flush(self, row: int, *, final: bool) -> None:
        text = self.decode(self.tokens[row])
        cut = [i for i in (text.find(s) for s in self.stop_strings) if i >= 0]
        if cut:
            text, final = text[: min(cut)], True
            self.done[row] = True
        limit = len(text)
        if not final:
            while limit and text[limit - 1] == "\ufffd":
                limit -= 1
            for stop in self.stop_strings:  # a stop string may be starting at the end
                for k in range(min(len(stop) - 1, limit), 0, -1):
                    if text[limit - k: limit] == stop[:k]:
                        limit -= k
                        break
        if limit > self.shown[row]:
            self.on_text(row, text[self.shown[row]: limit])
            self.shown[row] = limit
