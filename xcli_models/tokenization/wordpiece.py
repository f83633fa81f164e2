"""English ProphetNet's tokenizer: BERT-style basic tokenisation, then WordPiece.

The vocabulary file (``prophetnet.tokenizer``) holds one token per line, the line
number being the id; it is BERT's uncased vocabulary with ``[X_SEP]`` at id 2.

Basic tokenisation, in order: drop NUL, U+FFFD and control characters and turn
whitespace into spaces; put spaces around CJK ideographs; NFC; split on
whitespace; per word, lower-case and strip accents (NFD, drop marks); split off
each punctuation character. WordPiece then cuts every word greedily into the
longest vocabulary entries, continuation pieces carrying a ``##`` prefix; a word
that cannot be cut (or is longer than 100 characters) becomes ``[UNK]``.

Offsets are computed by running the same steps over characters that remember
where in the text they came from.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .base import TableVocabulary, Tokenizer, TokenizerError

__all__ = ["BasicTokenizer", "ProphetNetTokenizer", "WordpieceTokenizer"]

Span = tuple[int, int]


# ------------------------------------------------------- character classes
def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or a Unicode space separator (Zs)."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """A Unicode "C*" character other than tab, newline and carriage return."""
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """Any ASCII character that is not a letter, digit or space, or a Unicode "P*" character."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk(char: str) -> bool:
    """A CJK Unified Ideograph (the blocks BERT treats as one word each); not kana or hangul."""
    cp = ord(char)
    return any(low <= cp <= high for low, high in _CJK_RANGES)


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


# ------------------------------------------------ aligned words for offsets
class _Word:
    """A word's characters, each with the ``(start, end)`` span of the text it came from."""

    __slots__ = ("chars", "spans")

    def __init__(self, chars: list[str], spans: list[Span]):
        self.chars = chars
        self.spans = spans

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def span(self, start: int = 0, end: int | None = None) -> Span:
        end = len(self.chars) if end is None else end
        return (self.spans[start][0], self.spans[end - 1][1])

    def transform(self, whole: str, per_char) -> "_Word":
        """Replace the text by ``whole`` (a transform of the whole word), aligned through
        ``per_char`` (the same transform, one character at a time)."""
        chars: list[str] = []
        spans: list[Span] = []
        for char, span in zip(self.chars, self.spans):
            produced = per_char(char)
            chars.extend(produced)
            spans.extend([span] * len(produced))
        if len(chars) != len(whole):  # the transform is not local; spread the spans evenly
            first, last = self.span()
            n = max(len(whole), 1)
            spans = [(first + i * (last - first) // n, first + (i + 1) * (last - first) // n) for i in range(len(whole))]
        return _Word(list(whole), spans)


def _nfc_aligned(word: _Word) -> _Word:
    """NFC of a word; characters that compose together share their spans."""
    text = word.text
    normal = unicodedata.normalize("NFC", text)
    if normal == text:
        return word
    # cut the word where normalising the two sides separately changes nothing
    cuts = [0] + [k for k in range(1, len(text)) if unicodedata.normalize("NFC", text[:k]) + unicodedata.normalize("NFC", text[k:]) == normal]
    cuts.append(len(text))
    chars: list[str] = []
    spans: list[Span] = []
    for a, b in zip(cuts, cuts[1:]):
        produced = unicodedata.normalize("NFC", text[a:b])
        chars.extend(produced)
        spans.extend([word.span(a, b)] * len(produced))
    return _Word(chars, spans)


# ------------------------------------------------------ basic tokenisation
class BasicTokenizer:
    """Whitespace, punctuation and CJK splitting, lower-casing and accent stripping."""

    def __init__(
        self,
        do_lower_case: bool = True,
        never_split: Iterable[str] | None = None,
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        do_split_on_punc: bool = True,
    ):
        self.do_lower_case = do_lower_case
        self.never_split = set(never_split or ())
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        self.do_split_on_punc = do_split_on_punc

    def _normalise_word(self, word: str) -> str:
        if self.do_lower_case:
            word = word.lower()
            if self.strip_accents is not False:
                word = strip_accents(word)
        elif self.strip_accents:
            word = strip_accents(word)
        return word

    def _split_punctuation(self, word: str, never_split: set[str]) -> list[str]:
        if not self.do_split_on_punc or word in never_split:
            return [word]
        out: list[str] = []
        current = ""
        for char in word:
            if is_punctuation(char):
                if current:
                    out.append(current)
                    current = ""
                out.append(char)
            else:
                current += char
        if current:
            out.append(current)
        return out

    def tokenize(self, text: str, never_split: Iterable[str] | None = None) -> list[str]:
        never = self.never_split.union(never_split) if never_split else self.never_split
        cleaned = []
        for char in text:
            if char == "\x00" or char == "\ufffd" or is_control(char):
                continue
            if is_whitespace(char):
                cleaned.append(" ")
            elif self.tokenize_chinese_chars and is_cjk(char):
                cleaned.append(f" {char} ")
            else:
                cleaned.append(char)
        text = unicodedata.normalize("NFC", "".join(cleaned))
        words: list[str] = []
        for word in text.split():
            if word not in never:
                word = self._normalise_word(word)
            words.extend(self._split_punctuation(word, never))
        return " ".join(words).split()

    def tokenize_with_spans(self, text: str, never_split: Iterable[str] | None = None) -> list[_Word]:
        """:meth:`tokenize`, each word keeping the span of ``text`` each character came from."""
        never = self.never_split.union(never_split) if never_split else self.never_split
        # clean, space out CJK, and cut into words at once (NFC never joins across a space)
        raw: list[_Word] = []
        chars: list[str] = []
        spans: list[Span] = []

        def close() -> None:
            nonlocal chars, spans
            if chars:
                raw.append(_Word(chars, spans))
                chars, spans = [], []

        for i, char in enumerate(text):
            if char == "\x00" or char == "\ufffd" or is_control(char):
                continue
            if char.isspace():  # every whitespace the reference splits on
                close()
            elif self.tokenize_chinese_chars and is_cjk(char):
                close()
                raw.append(_Word([char], [(i, i + 1)]))
            else:
                chars.append(char)
                spans.append((i, i + 1))
        close()
        words: list[_Word] = []
        for word in raw:
            word = _nfc_aligned(word)
            # NFC may in principle produce whitespace; split again as the reference does
            for piece in _split_aligned(word, str.isspace):
                if piece.text not in never:
                    piece = self._normalise_word_aligned(piece)
                words.extend(self._split_punctuation_aligned(piece, never))
        return [w for word in words for w in _split_aligned(word, str.isspace)]

    def _normalise_word_aligned(self, word: _Word) -> _Word:
        lower = self.do_lower_case
        strip = (lower and self.strip_accents is not False) or (not lower and self.strip_accents)
        if lower:
            word = word.transform(word.text.lower(), str.lower)
        if strip:
            word = word.transform(strip_accents(word.text), strip_accents)
        return word

    def _split_punctuation_aligned(self, word: _Word, never_split: set[str]) -> list[_Word]:
        if not self.do_split_on_punc or word.text in never_split:
            return [word]
        return _split_aligned(word, is_punctuation, keep=True)


def _split_aligned(word: _Word, at: Callable[[str], bool], keep: bool = False) -> list[_Word]:
    """``word`` split at the characters ``at`` accepts, which are dropped (or ``keep``: words of their own)."""
    out: list[_Word] = []
    chars: list[str] = []
    spans: list[Span] = []
    for char, span in zip(word.chars, word.spans):
        if at(char):
            if chars:
                out.append(_Word(chars, spans))
                chars, spans = [], []
            if keep:
                out.append(_Word([char], [span]))
        else:
            chars.append(char)
            spans.append(span)
    if chars:
        out.append(_Word(chars, spans))
    return out


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece over a vocabulary."""

    def __init__(self, vocab: dict[str, int], unk_token: str, max_input_chars_per_word: int = 100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def cut(self, word: str) -> list[tuple[str, int, int]] | None:
        """``(piece, start, end)`` for each piece of ``word``, or None if it cannot be cut."""
        if len(word) > self.max_input_chars_per_word:
            return None
        out: list[tuple[str, int, int]] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            else:
                return None
            out.append((piece, start, end))
            start = end
        return out

    def tokenize(self, text: str) -> list[str]:
        pieces: list[str] = []
        for word in text.split():
            cut = self.cut(word)
            pieces.extend([self.unk_token] if cut is None else [p for p, _, _ in cut])
        return pieces


# ================================================================ ProphetNet
def load_vocab(vocab_file: str | os.PathLike) -> dict[str, int]:
    """One token per line; the line number is the id (a repeated token keeps its last line)."""
    with open(vocab_file, encoding="utf-8") as reader:
        lines = reader.readlines()
    return {line.rstrip("\n"): index for index, line in enumerate(lines)}


class ProphetNetTokenizer(TableVocabulary, Tokenizer):
    """English ProphetNet (microsoft/prophetnet-large-uncased): WordPiece, ``A [SEP]``,
    ``A [SEP] B [SEP]``; ``[X_SEP]`` separates sentences in summaries."""

    vocab_files = {"vocab_file": "prophetnet.tokenizer"}
    default_special_tokens = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "mask_token": "[MASK]",
    }
    layout = ("A sep", "A sep B:1 sep:1")

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        do_lower_case: bool = True,
        do_basic_tokenize: bool = True,
        never_split: Iterable[str] | None = None,
        x_sep_token: str = "[X_SEP]",
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        clean_up_tokenization_spaces: bool = True,
        **kwargs: Any,
    ):
        if not Path(vocab_file).is_file():
            raise TokenizerError(f"vocabulary file not found: {vocab_file}")
        self.vocab_file = str(vocab_file)
        self.vocab = load_vocab(vocab_file)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.encoder, self.decoder = self.vocab, self.ids_to_tokens  # the reference's names, and TableVocabulary's
        self.do_lower_case = do_lower_case
        self.do_basic_tokenize = do_basic_tokenize
        self.x_sep_token = str(x_sep_token)
        self.basic_tokenizer = BasicTokenizer(
            do_lower_case=do_lower_case,
            never_split=never_split,
            tokenize_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
        )
        super().__init__(clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token=str(self.unk_token))
        self.init_kwargs = {
            "do_lower_case": do_lower_case,
            "do_basic_tokenize": do_basic_tokenize,
            "never_split": list(never_split) if never_split is not None else None,
            "x_sep_token": self.x_sep_token,
            "tokenize_chinese_chars": tokenize_chinese_chars,
            "strip_accents": strip_accents,
        }
        self._finish_init()

    @property
    def x_sep_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.x_sep_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens).replace(" ##", "").strip()

    # ---------------------------------------------------------- tokenisation
    def _tokenize(self, text: str) -> list[str]:
        if not self.do_basic_tokenize:
            return self.wordpiece_tokenizer.tokenize(text)
        pieces: list[str] = []
        for word in self.basic_tokenizer.tokenize(text, never_split=self.all_special_tokens):
            if word in self.basic_tokenizer.never_split:
                pieces.append(word)
            else:
                pieces.extend(self.wordpiece_tokenizer.tokenize(word))
        return pieces

    def _tokenize_with_offsets(self, text: str) -> tuple[list[str], list[Span]]:
        if self.do_basic_tokenize:
            words = self.basic_tokenizer.tokenize_with_spans(text, never_split=self.all_special_tokens)
        else:
            words = _split_aligned(_Word(list(text), [(i, i + 1) for i in range(len(text))]), str.isspace)
        pieces: list[str] = []
        offsets: list[Span] = []
        for word in words:
            text_of_word = word.text
            if self.do_basic_tokenize and text_of_word in self.basic_tokenizer.never_split:
                cut = [(text_of_word, 0, len(text_of_word))]
            else:
                cut = self.wordpiece_tokenizer.cut(text_of_word)
            if cut is None:
                pieces.append(self.wordpiece_tokenizer.unk_token)
                offsets.append(word.span())
                continue
            for piece, start, end in cut:
                pieces.append(piece)
                offsets.append(word.span(start, end))
        return pieces, offsets

    # ---------------------------------------------------------------- saving
    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, ...]:
        directory = Path(save_directory)
        if not directory.is_dir():
            raise TokenizerError(f"{directory} is not a directory")
        target = directory / ((filename_prefix + "-" if filename_prefix else "") + self.vocab_files["vocab_file"])
        ordered: Sequence[str] = [t for t, _ in sorted(self.vocab.items(), key=lambda item: item[1])]
        with open(target, "w", encoding="utf-8") as writer:
            writer.writelines(token + "\n" for token in ordered)
        return (str(target),)
