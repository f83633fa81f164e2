"""SentencePiece tokenizers: XLNet, XGLM and XLM-ProphetNet.

All three run a SentencePiece model (the ``sentencepiece`` library) over plain text.
They differ in three places, each a small override here:

* text preparation before the model sees it (XLNet only: whitespace collapsing,
  quotes, accents, case; see :meth:`XLNetTokenizer.preprocess_text`);
* the id layout. XLNet uses the model's piece ids as they are. The fairseq-trained
  models (XGLM, XLM-ProphetNet) put a few tokens of their own first and shift every
  model piece by a constant; a piece the model does not know maps to the unknown
  token. :class:`SentencePieceTokenizer` handles both with ``fixed_tokens`` and
  ``id_offset``;
* where the special tokens go (``A <sep> <cls>``, ``</s> A``, ``A [SEP]``).

Offsets come from the model itself (it reports where each piece came from) and are
mapped back through any preparation step.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any, Sequence

from .base import FAIRSEQ_SPECIAL_TOKENS, Tokenizer, TokenizerError

__all__ = [
    "SPIECE_UNDERLINE",
    "SentencePieceTokenizer",
    "XGLMTokenizer",
    "XGLMTokenizerFast",
    "XLMProphetNetTokenizer",
    "XLNetTokenizer",
    "XLNetTokenizerFast",
]

#: the character SentencePiece writes for a space ("▁", U+2581)
SPIECE_UNDERLINE = "\u2581"

Span = tuple[int, int]


class SentencePieceTokenizer(Tokenizer):
    """A tokenizer whose plain-text pieces come from one SentencePiece model.

    Vocabulary ids are ``fixed_tokens`` (checked first, both ways) and otherwise
    ``model piece id + id_offset``. With a non-zero offset the model's own unknown
    piece (id 0) is not a vocabulary entry: unknown pieces map to ``unk_token``.
    """

    vocab_files = {"vocab_file": "spiece.model"}
    #: added to every model piece id to give the vocabulary id
    id_offset: int = 0

    def __init__(self, vocab_file: str | os.PathLike, *, sp_model_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        import sentencepiece

        self.vocab_file = str(vocab_file)
        # passed to SentencePieceProcessor(); e.g. enable_sampling/nbest_size/alpha turn on
        # subword regularisation, which makes tokenisation random
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.sp_model = sentencepiece.SentencePieceProcessor(**self.sp_model_kwargs)
        try:
            self.sp_model.Load(self.vocab_file)
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(f"cannot load the SentencePiece model {self.vocab_file}: {exc}") from exc
        self._fixed_to_id = self.fixed_tokens()
        self._fixed_to_token = {i: t for t, i in self._fixed_to_id.items()}
        super().__init__(**kwargs)
        self.init_kwargs = {**self.options(), "sp_model_kwargs": self.sp_model_kwargs}
        self._finish_init()

    # ---------------------------------------------------------- family hooks
    def fixed_tokens(self) -> dict[str, int]:
        """Vocabulary entries that are not model pieces (fairseq layouts), token -> id."""
        return {}

    def options(self) -> dict[str, Any]:
        """The family's own constructor options, saved in tokenizer_config.json."""
        return {}

    # ------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.sp_model) + self.id_offset

    def _token_to_id(self, token: str) -> int | None:
        if token in self._fixed_to_id:
            return self._fixed_to_id[token]
        piece_id = self.sp_model.PieceToId(token)
        if piece_id == 0 and (self.id_offset or token != self.sp_model.IdToPiece(0)):
            return None  # unknown to the model
        return piece_id + self.id_offset

    def _id_to_token(self, index: int) -> str:
        if index in self._fixed_to_token:
            return self._fixed_to_token[index]
        return self.sp_model.IdToPiece(index - self.id_offset)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens).replace(SPIECE_UNDERLINE, " ").strip()

    # ---------------------------------------------------------- tokenisation
    def _tokenize(self, text: str) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _tokenize_with_offsets(self, text: str) -> tuple[list[str], list[Span]]:
        pieces, offsets = self._encode_with_offsets(text)
        return pieces, _with_leading_space(pieces, offsets, text)

    def _encode_with_offsets(self, text: str) -> tuple[list[str], list[Span]]:
        """Model pieces of ``text`` and the character span each came from (the
        "▁" the model puts before the first word has an empty span)."""
        from sentencepiece import sentencepiece_pb2

        proto = sentencepiece_pb2.SentencePieceText()
        proto.ParseFromString(self.sp_model.encode(text, out_type="serialized_proto"))
        char_at = _byte_to_char_index(text)
        pieces = [piece.piece for piece in proto.pieces]
        offsets = [(char_at[piece.begin], char_at[piece.end]) for piece in proto.pieces]
        return pieces, offsets

    # ---------------------------------------------------------------- saving
    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, ...]:
        directory = Path(save_directory)
        if not directory.is_dir():
            raise TokenizerError(f"{directory} is not a directory")
        name = next(iter(self.vocab_files.values()))
        target = directory / ((filename_prefix + "-" if filename_prefix else "") + name)
        source = Path(self.vocab_file)
        if source.is_file():
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
        else:
            target.write_bytes(self.sp_model.serialized_model_proto())
        return (str(target),)


def _byte_to_char_index(text: str) -> list[int]:
    """For each UTF-8 byte position of ``text`` (and the end), the character index."""
    if text.isascii():
        return list(range(len(text) + 1))
    index: list[int] = []
    for i, char in enumerate(text):
        index.extend([i] * len(char.encode("utf-8")))
    index.append(len(text))
    return index


def _with_leading_space(pieces: list[str], offsets: list[Span], text: str) -> list[Span]:
    """Offsets as the reference fast tokenizers give them.

    A piece that starts with "▁" covers the one blank just before its first
    character (the last one where there were several), even a blank the model
    dropped at the start of the text. A piece with no text of its own (the "▁"
    before the first word, or the second "." of a normalised "…") gets the span
    of the character it stands at.
    """
    out: list[Span] = []
    for piece, (start, end) in zip(pieces, offsets):
        if piece.startswith(SPIECE_UNDERLINE):
            first = start
            while first < end and text[first].isspace():
                first += 1
            if first > 0 and text[first - 1].isspace():
                start = first - 1
                end = max(end, first)
        if start == end and start < len(text):
            end = start + 1
        out.append((start, end))
    return out


def _lowercase_outside(text: str, protected: re.Pattern[str] | None) -> tuple[str, list[int]]:
    """Lower-case ``text`` one character at a time, leaving ``protected`` matches alone.

    One character at a time on purpose: the reference does so, so a final capital
    sigma becomes "σ", not "ς". Returns the new text and, for each of its characters
    (and the end), the position in ``text`` it came from.
    """
    out: list[str] = []
    index: list[int] = []
    last = 0

    def lower(start: int, end: int) -> None:
        chunk = text[start:end]
        if chunk.isascii():
            out.append(chunk.lower())
            index.extend(range(start, end))
            return
        for i in range(start, end):
            lowered = text[i].lower()
            out.append(lowered)
            index.extend([i] * len(lowered))

    if protected is not None:
        for match in protected.finditer(text):
            lower(last, match.start())
            out.append(match.group())
            index.extend(range(match.start(), match.end()))
            last = match.end()
    lower(last, len(text))
    index.append(len(text))
    return "".join(out), index


class _AlignedText:
    """A string that knows, for each character, the span of the original text it came from."""

    def __init__(self, chars: list[str], spans: list[Span]):
        self.chars = chars
        self.spans = spans

    @classmethod
    def of(cls, text: str) -> "_AlignedText":
        return cls(list(text), [(i, i + 1) for i in range(len(text))])

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def collapse_whitespace(self) -> "_AlignedText":
        """``" ".join(text.split())``; each joining space keeps the span of the last blank it replaces."""
        chars: list[str] = []
        spans: list[Span] = []
        blank: Span | None = None
        for char, span in zip(self.chars, self.spans):
            if char.isspace():
                blank = span
                continue
            if blank is not None and chars:
                chars.append(" ")
                spans.append(blank)
            blank = None
            chars.append(char)
            spans.append(span)
        return _AlignedText(chars, spans)

    def replace(self, old: str, new: str) -> "_AlignedText":
        text = self.text
        chars: list[str] = []
        spans: list[Span] = []
        last = 0
        while (found := text.find(old, last)) >= 0:
            chars.extend(self.chars[last:found])
            spans.extend(self.spans[last:found])
            covered = self.spans[found + len(old) - 1]  # as the fast tokenizers align a replacement
            chars.extend(new)
            spans.extend([covered] * len(new))
            last = found + len(old)
        chars.extend(self.chars[last:])
        spans.extend(self.spans[last:])
        return _AlignedText(chars, spans)

    def map_chars(self, function) -> "_AlignedText":
        chars: list[str] = []
        spans: list[Span] = []
        for char, span in zip(self.chars, self.spans):
            for new in function(char):
                chars.append(new)
                spans.append(span)
        return _AlignedText(chars, spans)


# ===================================================================== XLNet
class XLNetTokenizer(SentencePieceTokenizer):
    """XLNet: SentencePiece with text preparation, special tokens at the end (``A <sep> <cls>``).

    Token types are 0 for the first text and its ``<sep>``, 1 for the second and its
    ``<sep>``, 2 for ``<cls>``; padding goes on the left with type id 3.
    """

    vocab_files = {"vocab_file": "spiece.model"}
    model_input_names = ("input_ids", "token_type_ids", "attention_mask")
    padding_side = "left"
    pad_token_type_id = 3
    default_special_tokens = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "<sep>",
        "pad_token": "<pad>",
        "cls_token": "<cls>",
        "mask_token": "<mask>",
    }
    # the mask behaves like a word: it takes the space before it
    default_lstrip_tokens = ("<mask>",)
    layout = ("A sep cls:2", "A sep B:1 sep:1 cls:2")

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        do_lower_case: bool = False,
        remove_space: bool = True,
        keep_accents: bool = False,
        additional_special_tokens: Sequence[Any] | None = ("<eop>", "<eod>"),
        **kwargs: Any,
    ):
        self.do_lower_case = bool(do_lower_case)
        self.remove_space = bool(remove_space)
        self.keep_accents = bool(keep_accents)
        super().__init__(vocab_file, additional_special_tokens=list(additional_special_tokens or []), **kwargs)

    def options(self) -> dict[str, Any]:
        return {"do_lower_case": self.do_lower_case, "remove_space": self.remove_space, "keep_accents": self.keep_accents}

    # ------------------------------------------------------------ preparation
    def _protected_pattern(self) -> re.Pattern[str] | None:
        """Special tokens (and normalised added tokens) that whole-text lower-casing skips."""
        contents = list(self.all_special_tokens)
        contents += [t.content for t in self._added_decoder.values() if not t.special and t.normalized]
        return re.compile("|".join(map(re.escape, contents))) if contents else None

    def prepare_for_tokenization(self, text: str) -> str:
        return self.prepare_for_tokenization_with_index(text)[0]

    def prepare_for_tokenization_with_index(self, text: str) -> tuple[str, list[int]]:
        if not self.do_lower_case:
            return text, list(range(len(text) + 1))
        return _lowercase_outside(text, self._protected_pattern())

    def preprocess_text(self, text: str) -> str:
        """XLNet's text preparation: collapse whitespace, quotes, accents, case."""
        if self.remove_space:
            text = " ".join(text.strip().split())
        text = text.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            text = unicodedata.normalize("NFKD", text)
            text = "".join(c for c in text if not unicodedata.combining(c))
        if self.do_lower_case:
            text = text.lower()
        return text

    def _preprocess_aligned(self, text: str) -> _AlignedText:
        """:meth:`preprocess_text`, keeping track of where each character came from."""
        aligned = _AlignedText.of(text)
        if self.remove_space:
            aligned = aligned.collapse_whitespace()
        aligned = aligned.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            aligned = aligned.map_chars(
                lambda c: [d for d in unicodedata.normalize("NFKD", c) if not unicodedata.combining(d)]
            )
        if self.do_lower_case:
            aligned = aligned.map_chars(str.lower)
        expected = self.preprocess_text(text)
        if len(expected) == len(aligned.chars):
            aligned.chars = list(expected)  # whole-text lower() differs from per-character only in sigma
        else:  # should not happen; keep the pieces right and spread the spans evenly
            n = max(len(expected), 1)
            aligned = _AlignedText(
                list(expected),
                [(i * len(text) // n, max((i + 1) * len(text) // n, i * len(text) // n)) for i in range(len(expected))],
            )
        return aligned

    # ---------------------------------------------------------- tokenisation
    def _split_number_pieces(self, piece: str) -> list[str] | None:
        """XLNet re-cuts a piece that ends in a comma after a digit (``"▁1,"``): the number, then ``","``."""
        if not (len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit()):
            return None
        sub = self.sp_model.EncodeAsPieces(piece[:-1].replace(SPIECE_UNDERLINE, ""))
        if piece[0] != SPIECE_UNDERLINE and sub[0][0] == SPIECE_UNDERLINE:
            sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:], *sub[1:]]
        return [*sub, piece[-1]]

    def _tokenize(self, text: str) -> list[str]:
        pieces: list[str] = []
        for piece in self.sp_model.encode(self.preprocess_text(text), out_type=str):
            split = self._split_number_pieces(piece)
            if split is None:
                pieces.append(piece)
            else:
                pieces.extend(split)
        return pieces

    def _tokenize_with_offsets(self, text: str) -> tuple[list[str], list[Span]]:
        aligned = self._preprocess_aligned(text)
        prepared = aligned.text
        model_pieces, model_offsets = self._encode_with_offsets(prepared)

        def original(start: int, end: int) -> Span:
            if not aligned.spans:
                return (0, 0)
            if start >= len(aligned.spans):
                return (aligned.spans[-1][1], aligned.spans[-1][1])
            if start == end:  # no text of its own: see _with_leading_space
                return (aligned.spans[start][0], aligned.spans[start][0])
            return (aligned.spans[start][0], aligned.spans[end - 1][1])

        pieces: list[str] = []
        offsets: list[Span] = []
        for piece, (start, end) in zip(model_pieces, model_offsets):
            split = self._split_number_pieces(piece)
            if split is None:
                pieces.append(piece)
                offsets.append(original(start, end))
                continue
            # walk the piece's characters: each sub-piece takes as many as it has
            position = start
            for i, sub in enumerate(split):
                size = len(sub.replace(SPIECE_UNDERLINE, ""))
                if sub.startswith(SPIECE_UNDERLINE) and position < end and prepared[position].isspace():
                    size += 1
                sub_end = end if i == len(split) - 1 else min(position + size, end - 1)
                pieces.append(sub)
                offsets.append(original(position, max(sub_end, position)))
                position = max(sub_end, position)
        return pieces, _with_leading_space(pieces, offsets, text)

    # -------------------------------------------------------------- decoding
    # as the reference XLNet tokenizer: every added token (special or not) is kept whole and
    # glued to its neighbours; spaces_between_special_tokens has no effect
    glues_kept_tokens = True

    def _kept_whole(self, special: set[str]) -> set[str]:
        return set(self._added_encoder)


#: the reference library's fast class gives the same ids; one class serves both names
XLNetTokenizerFast = XLNetTokenizer


# ====================================================================== XGLM
class XGLMTokenizer(SentencePieceTokenizer):
    """XGLM: fairseq layout over SentencePiece (``<s> <pad> </s> <unk>``, pieces shifted
    by one, seven ``<madeupword0..6>`` at the end); ``</s> A`` and ``</s> A </s> </s> B``."""

    vocab_files = {"vocab_file": "sentencepiece.bpe.model"}
    id_offset = 1
    num_madeup_words = 7
    default_special_tokens = FAIRSEQ_SPECIAL_TOKENS
    layout = ("sep A", "sep A sep sep B")  # no token types: all 0

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        additional_special_tokens: Sequence[Any] | None = None,
        **kwargs: Any,
    ):
        extra = list(additional_special_tokens or [])
        names = {str(t["content"]) if isinstance(t, dict) else str(t) for t in extra}
        extra += [w for w in self.madeup_words() if w not in names]
        super().__init__(vocab_file, additional_special_tokens=extra, **kwargs)

    @classmethod
    def madeup_words(cls) -> list[str]:
        return [f"<madeupword{i}>" for i in range(cls.num_madeup_words)]

    def fixed_tokens(self) -> dict[str, int]:
        fixed = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        first = len(self.sp_model) + self.id_offset
        fixed.update({word: first + i for i, word in enumerate(self.madeup_words())})
        return fixed

    @property
    def vocab_size(self) -> int:
        return len(self.sp_model) + self.id_offset + self.num_madeup_words


XGLMTokenizerFast = XGLMTokenizer


# ============================================================ XLM-ProphetNet
class XLMProphetNetTokenizer(SentencePieceTokenizer):
    """XLM-ProphetNet: ``[PAD] [CLS] [SEP] [UNK] [MASK] [unused0..9]`` first, model pieces
    shifted by 12 (so the model's first real piece, id 3, is vocabulary id 15);
    ``A [SEP]`` and ``A [SEP] B [SEP]``."""

    vocab_files = {"vocab_file": "prophetnet.tokenizer"}
    id_offset = 12
    default_special_tokens = {
        "bos_token": "[SEP]",
        "eos_token": "[SEP]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    layout = ("A sep", "A sep B sep")

    def fixed_tokens(self) -> dict[str, int]:
        fixed = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": 4}
        fixed.update({f"[unused{i}]": 5 + i for i in range(10)})
        return fixed

    def create_token_type_ids_from_sequences(self, ids_0: list[int], ids_1: list[int] | None = None) -> list[int]:
        # as the reference: all zeros, and for a pair one longer than the ids
        # (it counts three separators); the model takes no token types
        if ids_1 is None:
            return [0] * (len(ids_0) + 1)
        return [0] * (len(ids_0) + len(ids_1) + 3)
