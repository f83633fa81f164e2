"""The behaviour every xcli tokenizer shares.

A concrete tokenizer supplies five things: ``_tokenize`` (plain text -> pieces),
``_token_to_id`` / ``_id_to_token`` / ``vocab_size`` (the vocabulary; :class:`TableVocabulary`
serves a vocabulary read as a table), and the special-token ``layout`` (where the special
tokens go around one text or a pair, with their token types). This module owns everything
around them, so that all five families agree on:

* special and added tokens typed inside a text: they are split out first
  (longest match wins) and never cut into pieces; ``lstrip``/``rstrip`` on a
  token eat the whitespace beside it;
* truncation (``longest_first``, ``only_first``, ``only_second``; either side),
  padding (either side, to the longest or to ``max_length``), attention masks
  and token type ids;
* decoding (special tokens skipped on request, added tokens kept whole);
* text that is not valid Unicode (a lone surrogate, which a JSON ``"\\ud800"``
  escape or an undecodable command-line byte puts in a Python string) is refused
  with a :class:`TokenizerError` naming its position, before any backend sees it
  (see :func:`check_text`);
* ``from_pretrained`` / ``save_pretrained`` reading and writing
  ``tokenizer_config.json`` and ``special_tokens_map.json``.

Nothing here imports torch: ``xcli tokenize`` runs on this alone.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import read_json

#: the special tokens of a fairseq dictionary (MVP's BART vocabulary, XGLM): <s> starts and
#: classifies, </s> ends and separates
FAIRSEQ_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
}

SPECIAL_TOKEN_ATTRIBUTES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


class TokenizerError(ValueError):
    """A tokenizer could not be built or could not encode/decode its input."""


def check_text(text: Any, what: str = "the text") -> None:
    """Refuse a string that is not valid Unicode, naming where it goes wrong.

    A Python string can hold lone surrogates (U+D800..U+DFFF): JSON's ``"\\ud800"``
    escape makes one, so does an undecodable byte in a command-line argument. No
    tokenizer can take them, and each fails its own way: sentencepiece with an
    unreadable C++ cast error that would stop a whole run, the pure-Python ones by
    silently dropping or mangling the character. A :class:`TokenizerError` (a
    ``ValueError``) fails just the record that holds it.
    """
    if not isinstance(text, str) or text.isascii():  # isascii is O(1) on CPython strings
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise TokenizerError(
            f"{what} is not valid Unicode: a lone surrogate (U+{code:04X}) at character {exc.start}"
        ) from None


#: the methods through which text comes in, checked by :func:`check_text` in every tokenizer
TEXT_METHODS = ("tokenize", "tokenize_with_offsets", "encode_plus")
_TEXT_ARGUMENTS = {"text": "the text", "text_pair": "the second text of the pair"}


def _checks_text(method: Any) -> Any:
    """``method`` with its ``text`` (and ``text_pair``) arguments passed through :func:`check_text` first."""
    if getattr(method, "checks_text", False):
        return method
    names = list(inspect.signature(method).parameters)[1:]  # after self
    slots = [(i, name) for i, name in enumerate(names) if name in _TEXT_ARGUMENTS]

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        for i, name in slots:
            check_text(args[i] if i < len(args) else kwargs.get(name), _TEXT_ARGUMENTS[name])
        return method(self, *args, **kwargs)

    checked.checks_text = True  # type: ignore[attr-defined]
    return checked


@dataclass(frozen=True)
class AddedToken:
    """A token matched whole in raw text, before the model's own tokenisation.

    ``lstrip``/``rstrip`` make it swallow the whitespace on its left/right;
    ``single_word`` only matches it between word boundaries; ``special`` marks
    it as skippable by ``decode(skip_special_tokens=True)``.
    """

    content: str
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = True
    special: bool = False

    def __str__(self) -> str:
        return self.content

    @classmethod
    def from_json(cls, value: Any, *, special: bool = False) -> "AddedToken":
        if isinstance(value, AddedToken):
            return value
        if isinstance(value, str):
            return cls(value, special=special, normalized=not special)
        if isinstance(value, dict):
            return cls(
                value["content"],
                lstrip=bool(value.get("lstrip", False)),
                rstrip=bool(value.get("rstrip", False)),
                single_word=bool(value.get("single_word", False)),
                normalized=bool(value.get("normalized", not special)),
                special=bool(value.get("special", special)),
            )
        raise TokenizerError(f"cannot read a token from {value!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "lstrip": self.lstrip,
            "normalized": self.normalized,
            "rstrip": self.rstrip,
            "single_word": self.single_word,
            "special": self.special,
        }


@dataclass
class Encoding:
    """The result of encoding one text (or one pair).

    ``offsets`` holds ``(start, end)`` character offsets into the original
    text(s) for each id when the tokenizer can compute them (special tokens get
    ``(0, 0)``), else ``None``.
    """

    input_ids: list[int]
    attention_mask: list[int]
    token_type_ids: list[int] | None = None
    special_tokens_mask: list[int] | None = None
    offsets: list[tuple[int, int]] | None = None
    overflowing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def keys(self) -> list[str]:
        names = ["input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "offsets"]
        return [n for n in names if getattr(self, n) is not None]


@functools.lru_cache(maxsize=None)
def _parse_layout(layout: str) -> tuple[tuple[str, int], ...]:
    """A :attr:`Tokenizer.layout` string as (name, token type) pairs: "A sep B:1" -> (A, 0), (sep, 0), (B, 1)."""
    parsed = []
    for item in layout.split():
        name, _, token_type = item.partition(":")
        parsed.append((name, int(token_type or 0)))
    return tuple(parsed)


class Tokenizer:
    """Base class of all xcli tokenizers (see the module docstring)."""

    #: files this tokenizer reads from a checkpoint directory, by constructor argument name
    vocab_files: dict[str, str] = {}
    #: names the model's forward() takes; "token_type_ids" only where the family uses them
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    padding_side: str = "right"
    truncation_side: str = "right"
    #: per-family defaults for special tokens (attribute -> content)
    default_special_tokens: dict[str, str] = {}
    #: special tokens that lstrip (e.g. "<mask>" in SentencePiece families) by default
    default_lstrip_tokens: tuple[str, ...] = ()
    #: where the special tokens go around one text and around a pair: "A" and "B" stand for the
    #: texts, another name for that special token ("sep": ``sep_token_id``); ":N" gives a place
    #: token type N (default 0). Read by ``build_inputs_with_special_tokens``, the special-tokens
    #: mask and the token type ids.
    layout: tuple[str, str] = ("A", "A B")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # a subclass that overrides a way in for text (MVP's tokenize, for one) still checks it
        super().__init_subclass__(**kwargs)
        for name in TEXT_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, _checks_text(cls.__dict__[name]))

    def __init__(
        self,
        *,
        additional_special_tokens: Sequence[Any] | None = None,
        added_tokens_decoder: dict[int, AddedToken] | None = None,
        model_max_length: int | None = None,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        **special_tokens: Any,
    ) -> None:
        self.init_kwargs: dict[str, Any] = {}
        if padding_side is not None:
            self.padding_side = padding_side
        if truncation_side is not None:
            self.truncation_side = truncation_side
        self.model_max_length = model_max_length or int(1e30)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.split_special_tokens = split_special_tokens
        self._special: dict[str, AddedToken | None] = {}
        for name in SPECIAL_TOKEN_ATTRIBUTES:
            value = special_tokens.pop(name, self.default_special_tokens.get(name))
            if value is None:
                self._special[name] = None
                continue
            token = AddedToken.from_json(value, special=True)
            if token.content in self.default_lstrip_tokens and isinstance(value, str):
                token = AddedToken(token.content, lstrip=True, special=True, normalized=False)
            self._special[name] = token
        if special_tokens:
            unknown = ", ".join(sorted(special_tokens))
            raise TokenizerError(f"unknown tokenizer option(s): {unknown}")
        self.additional_special_tokens: list[str] = [
            AddedToken.from_json(t, special=True).content for t in (additional_special_tokens or [])
        ]
        self._extra_additional = [AddedToken.from_json(t, special=True) for t in (additional_special_tokens or [])]
        self._added_decoder: dict[int, AddedToken] = dict(added_tokens_decoder or {})
        self._added_encoder: dict[str, int] = {}
        self._added_pattern: re.Pattern[str] | None = None

    # ------------------------------------------------------------------ setup
    def _finish_init(self) -> None:
        """Register the special tokens as added tokens; call at the end of a subclass __init__."""
        tokens = [t for t in self._special.values() if t is not None] + self._extra_additional
        known = {t.content: i for i, t in self._added_decoder.items()}  # e.g. from added_tokens_decoder
        for token in tokens:
            token_id = self._added_encoder.get(token.content, known.get(token.content))
            if token_id is None:
                token_id = self._token_to_id(token.content)
                if token_id is None or self._id_to_token(token_id) != token.content:
                    # not in the base vocabulary: gets the next free id
                    token_id = max([self.vocab_size - 1, *self._added_decoder]) + 1
            if token_id not in self._added_decoder:
                self._added_decoder[token_id] = token
        self._rebuild_added()

    def _rebuild_added(self) -> None:
        self._added_encoder = {tok.content: i for i, tok in self._added_decoder.items()}
        contents = sorted(self._added_encoder, key=len, reverse=True)
        self._added_pattern = re.compile("|".join(map(re.escape, contents))) if contents else None

    def add_tokens(self, tokens: Iterable[str | AddedToken], special: bool = False) -> int:
        """Add tokens to the vocabulary (new ids after the last one); returns how many were new."""
        added = 0
        for value in tokens:
            token = AddedToken.from_json(value, special=special)
            if token.content in self._added_encoder or self._token_to_id(token.content) is not None:
                continue
            self._added_decoder[len(self)] = token
            added += 1
        self._rebuild_added()
        return added

    # ------------------------------------------------------ special tokens
    def __getattr__(self, name: str) -> Any:
        # bos_token / bos_token_id / ... resolved from the special-token table
        special = self.__dict__.get("_special")
        if special is not None:
            if name in special:
                token = special[name]
                return None if token is None else token.content
            if name.endswith("_id") and name[:-3] in special:
                token = special[name[:-3]]
                return None if token is None else self.convert_tokens_to_ids(token.content)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @property
    def all_special_tokens(self) -> list[str]:
        out: list[str] = []
        for token in [*(t.content for t in self._special.values() if t is not None), *self.additional_special_tokens]:
            if token not in out:
                out.append(token)
        return out

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return dict(sorted(self._added_decoder.items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return dict(self._added_encoder)

    # ------------------------------------------- what subclasses implement
    @property
    def vocab_size(self) -> int:  # size of the base vocabulary, added tokens excluded
        raise NotImplementedError

    def _tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def _token_to_id(self, token: str) -> int | None:
        """Id of a token in the base vocabulary, or None if it has none."""
        raise NotImplementedError

    def _id_to_token(self, index: int) -> str:
        raise NotImplementedError

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, ...]:
        raise NotImplementedError

    def prepare_for_tokenization(self, text: str) -> str:
        """Hook applied to a whole text before added tokens are split out."""
        return text

    # ------------------------------------------------------- tokenisation
    def get_vocab(self) -> dict[str, int]:
        vocab = {self._id_to_token(i): i for i in range(self.vocab_size)}
        vocab.update(self._added_encoder)
        return vocab

    def __len__(self) -> int:
        return max(self.vocab_size, max(self._added_decoder, default=-1) + 1)

    def _split_added(self, text: str) -> list[str]:
        """Cut ``text`` around added tokens: ``["a ", "<mask>", " b"]``."""
        if self._added_pattern is None or self.split_special_tokens:
            return [text]
        parts: list[str] = []
        last = 0
        for match in self._added_pattern.finditer(text):
            parts.append(text[last : match.start()])
            parts.append(match.group())
            last = match.end()
        parts.append(text[last:])
        return parts

    def _segments(self, text: str) -> list[tuple[str, int, int, bool]]:
        """Cut ``text`` into ``(part, start, end, is_added)`` around added tokens.

        ``lstrip``/``rstrip`` tokens eat the whitespace beside them; a ``single_word``
        token that touches a word is glued to it and tokenised as plain text. Empty
        parts are dropped. ``start``/``end`` are the part's span in ``text``.
        """
        parts = self._split_added(text)
        spans: list[list[int]] = []
        position = 0
        for part in parts:
            spans.append([position, position + len(part)])
            position += len(part)
        if len(parts) > 1:
            for i in range(1, len(parts), 2):  # odd positions are added tokens
                token = self._added_decoder[self._added_encoder[parts[i]]]
                # the whitespace a token eats counts as part of its span
                if token.rstrip:
                    stripped = parts[i + 1].lstrip()
                    spans[i + 1][0] += len(parts[i + 1]) - len(stripped)
                    spans[i][1] = spans[i + 1][0]
                    parts[i + 1] = stripped
                if token.lstrip:
                    stripped = parts[i - 1].rstrip()
                    spans[i - 1][1] -= len(parts[i - 1]) - len(stripped)
                    spans[i][0] = spans[i - 1][1]
                    parts[i - 1] = stripped
                if token.single_word and parts[i - 1] and parts[i - 1][-1] != " ":
                    parts[i - 1] += parts[i]
                    spans[i - 1][1] = spans[i][1]
                    parts[i] = ""
                elif token.single_word and parts[i + 1] and parts[i + 1][0] != " ":
                    parts[i + 1] = parts[i] + parts[i + 1]
                    spans[i + 1][0] = spans[i][0]
                    parts[i] = ""
        return [
            (part, start, end, i % 2 == 1)
            for i, (part, (start, end)) in enumerate(zip(parts, spans))
            if part
        ]

    @_checks_text
    def tokenize(self, text: str, **options: Any) -> list[str]:
        """Split ``text`` into the tokenizer's pieces, added tokens kept whole.

        ``options`` (e.g. XLM's ``lang``) go to ``_tokenize`` for each stretch of plain text.
        """
        text = self.prepare_for_tokenization(text)
        pieces: list[str] = []
        for part, _, _, is_added in self._segments(text):
            if is_added:
                pieces.append(part)
            else:
                pieces.extend(self._tokenize(part, **options))
        return pieces

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        if isinstance(tokens, str):
            return self._one_token_to_id(tokens)
        return [self._one_token_to_id(t) for t in tokens]

    def _one_token_to_id(self, token: str) -> int:
        if token in self._added_encoder:
            return self._added_encoder[token]
        index = self._token_to_id(token)
        if index is None:
            unk = self._special.get("unk_token")
            if unk is None:
                raise TokenizerError(f"token {token!r} is not in the vocabulary and there is no unknown token")
            return self._one_token_to_id(unk.content)
        return index

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> Any:
        if isinstance(ids, int):
            return self._one_id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._one_id_to_token(i) for i in ids if int(i) not in special]

    def _one_id_to_token(self, index: int) -> str:
        index = int(index)
        if index in self._added_decoder:
            return self._added_decoder[index].content
        if not 0 <= index < self.vocab_size:
            raise TokenizerError(f"id {index} is outside the vocabulary (0..{len(self) - 1})")
        return self._id_to_token(index)

    # ------------------------------------------------- special-token layout
    def _laid_out(self, ids_0: list[int], ids_1: list[int] | None) -> list[tuple[list[int], bool, int]]:
        """The parts of :attr:`layout` for these ids: (ids, whether special, token type)."""
        parts = []
        for name, token_type in _parse_layout(self.layout[ids_1 is not None]):
            if name in ("A", "B"):
                parts.append((list(ids_0 if name == "A" else ids_1 or []), False, token_type))
            else:
                parts.append(([getattr(self, f"{name}_token_id")], True, token_type))
        return parts

    def build_inputs_with_special_tokens(self, ids_0: list[int], ids_1: list[int] | None = None) -> list[int]:
        return [i for ids, _, _ in self._laid_out(ids_0, ids_1) for i in ids]

    def get_special_tokens_mask(
        self, ids_0: list[int], ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in ids_0]
        return [int(special) for ids, special, _ in self._laid_out(ids_0, ids_1) for _ in ids]

    def create_token_type_ids_from_sequences(self, ids_0: list[int], ids_1: list[int] | None = None) -> list[int]:
        return [token_type for ids, _, token_type in self._laid_out(ids_0, ids_1) for _ in ids]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return len(self.build_inputs_with_special_tokens([], [] if pair else None))

    # ------------------------------------------------------------ encoding
    def encode(self, text: str, text_pair: str | None = None, **kwargs: Any) -> list[int]:
        return self.encode_plus(text, text_pair, **kwargs).input_ids

    @_checks_text
    def encode_plus(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        padding: bool | str = False,
        return_offsets: bool = False,
    ) -> Encoding:
        """Encode one text or pair (ids, mask, types, special mask, offsets)."""
        ids_0, offs_0 = self._ids_and_offsets(text, return_offsets)
        ids_1, offs_1 = (None, None) if text_pair is None else self._ids_and_offsets(text_pair, return_offsets)
        truncated = False
        strategy = _truncation_strategy(truncation, max_length)
        if strategy is not None:
            limit = max_length if max_length is not None else self.model_max_length
            extra = self.num_special_tokens_to_add(pair=ids_1 is not None) if add_special_tokens else 0
            ids_0, ids_1, offs_0, offs_1, truncated = self._truncate(
                ids_0, ids_1, offs_0, offs_1, limit - extra, strategy
            )
        return self._assemble(ids_0, ids_1, offs_0, offs_1, add_special_tokens, padding, max_length, truncated)

    def __call__(self, text: str | list[str], text_pair: str | list[str] | None = None, **kwargs: Any) -> Any:
        if isinstance(text, str):
            return self.encode_plus(text, text_pair, **kwargs)
        pairs = text_pair if text_pair is not None else [None] * len(text)
        padding = kwargs.pop("padding", False)
        max_length = kwargs.get("max_length")
        encodings = [self.encode_plus(a, b, **kwargs) for a, b in zip(text, pairs)]
        return self.pad(encodings, padding=padding, max_length=max_length)

    def _ids_and_offsets(self, text: str, with_offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
        if with_offsets:
            pieces, offsets = self.tokenize_with_offsets(text)
            return self.convert_tokens_to_ids(pieces), offsets
        return self.convert_tokens_to_ids(self.tokenize(text)), None

    @_checks_text
    def tokenize_with_offsets(self, text: str, **options: Any) -> tuple[list[str], list[tuple[int, int]]]:
        """Pieces with ``(start, end)`` character offsets into ``text``.

        Added tokens get their own span; plain stretches go to ``_tokenize_with_offsets``,
        which tokenizers that can compute offsets implement.
        """
        if type(self)._tokenize_with_offsets is Tokenizer._tokenize_with_offsets:
            raise TokenizerError(f"{type(self).__name__} cannot compute character offsets")
        prepared, index = self.prepare_for_tokenization_with_index(text)

        def span(a: int, b: int) -> tuple[int, int]:
            # an end inside characters that one original character became still ends after it
            return index[a], max(index[a], index[b - 1] + 1 if b > a else index[b])

        pieces: list[str] = []
        offsets: list[tuple[int, int]] = []
        for part, start, end, is_added in self._segments(prepared):
            if is_added:
                pieces.append(part)
                offsets.append(span(start, end))
                continue
            part_pieces, part_offsets = self._tokenize_with_offsets(part, **options)
            pieces.extend(part_pieces)
            offsets.extend(span(start + a, start + b) for a, b in part_offsets)
        return pieces, offsets

    def _tokenize_with_offsets(self, text: str, **options: Any) -> tuple[list[str], list[tuple[int, int]]]:
        """``_tokenize`` plus each piece's ``(start, end)`` in ``text``; optional."""
        raise NotImplementedError

    def prepare_for_tokenization_with_index(self, text: str) -> tuple[str, list[int]]:
        """``prepare_for_tokenization`` plus, for each prepared character (and the end),
        its position in ``text``. Tokenizers whose hook changes lengths override this."""
        prepared = self.prepare_for_tokenization(text)
        if len(prepared) != len(text):
            raise TokenizerError(f"{type(self).__name__} cannot compute character offsets for this text")
        return prepared, list(range(len(text) + 1))

    def _truncate(self, ids_0, ids_1, offs_0, offs_1, budget: int, strategy: str):
        budget = max(budget, 0)
        total = len(ids_0) + (len(ids_1) if ids_1 is not None else 0)
        remove = total - budget
        if remove <= 0:
            return ids_0, ids_1, offs_0, offs_1, False

        def cut(seq, n):
            if seq is None or n <= 0:
                return seq
            return seq[n:] if self.truncation_side == "left" else seq[: len(seq) - n]

        if strategy == "longest_first" and ids_1 is not None:
            len_0, len_1 = len(ids_0), len(ids_1)
            first = min(abs(len_1 - len_0), remove)
            second = remove - first
            if len_0 > len_1:
                n_0, n_1 = first + second // 2, second - second // 2
            else:
                n_0, n_1 = second // 2, first + second - second // 2
            return cut(ids_0, n_0), cut(ids_1, n_1), cut(offs_0, n_0), cut(offs_1, n_1), True
        if strategy == "only_second" and ids_1 is not None:
            if len(ids_1) <= remove:  # the references refuse to empty a sequence
                raise TokenizerError("the second sequence is too short to truncate to max_length")
            return ids_0, cut(ids_1, remove), offs_0, cut(offs_1, remove), True
        if strategy == "only_second":
            return ids_0, ids_1, offs_0, offs_1, False
        if len(ids_0) <= remove:
            raise TokenizerError("the first sequence is too short to truncate to max_length")
        return cut(ids_0, remove), ids_1, cut(offs_0, remove), offs_1, True

    def _assemble(self, ids_0, ids_1, offs_0, offs_1, add_special_tokens, padding, max_length, truncated) -> Encoding:
        typed = "token_type_ids" in self.model_input_names  # (types are made only for a model that takes them)
        if add_special_tokens:
            input_ids = self.build_inputs_with_special_tokens(ids_0, ids_1)
            types = self.create_token_type_ids_from_sequences(ids_0, ids_1) if typed else None
            special_mask = self.get_special_tokens_mask(ids_0, ids_1)
        else:
            input_ids = list(ids_0) + list(ids_1 or [])
            types = [0] * len(input_ids) if typed else None  # as the reference: no segments without special tokens
            special_mask = [0] * len(input_ids)
        offsets = None
        if offs_0 is not None:
            # walk the layout: ordinary positions take the next offset in order
            ordinary = iter([*offs_0, *(offs_1 or [])])
            offsets = [(0, 0) if special else next(ordinary) for special in special_mask]
        encoding = Encoding(
            input_ids=input_ids,
            attention_mask=[1] * len(input_ids),
            token_type_ids=types,
            special_tokens_mask=special_mask,
            offsets=offsets,
            overflowing=truncated,
        )
        if padding and padding != "do_not_pad":
            target = max_length if padding == "max_length" else None
            if target is not None:
                self._pad_one(encoding, target)
        return encoding

    # ------------------------------------------------------------- padding
    def pad(self, encodings: list[Encoding], padding: bool | str = True, max_length: int | None = None) -> list[Encoding]:
        """Pad encodings in place to the longest one (or ``max_length``) on ``padding_side``."""
        if not padding or padding == "do_not_pad":
            return encodings
        if padding == "max_length" and max_length is not None:
            target = max_length
        else:
            target = max((len(e.input_ids) for e in encodings), default=0)
        for encoding in encodings:
            self._pad_one(encoding, target)
        return encodings

    def _pad_one(self, encoding: Encoding, target: int) -> None:
        missing = target - len(encoding.input_ids)
        if missing <= 0:
            return
        pad_id = self.pad_token_id
        if pad_id is None:
            raise TokenizerError("this tokenizer has no padding token")
        fills = {
            "input_ids": pad_id,
            "attention_mask": 0,
            "token_type_ids": self.pad_token_type_id,
            "special_tokens_mask": 1,
            "offsets": (0, 0),
        }
        for name, fill in fills.items():
            values = getattr(encoding, name)
            if values is None:
                continue
            filler = [fill] * missing
            setattr(encoding, name, filler + values if self.padding_side == "left" else values + filler)

    pad_token_type_id: int = 0

    # ------------------------------------------------------------ decoding
    #: decode glues the tokens it keeps whole to their neighbours, whatever
    #: ``spaces_between_special_tokens`` says (as the reference's fast MVP and its XLNet do)
    glues_kept_tokens: bool = False

    def _kept_whole(self, special: set[str]) -> set[str]:
        """The tokens decode keeps whole, apart from the pieces around them: the plain added
        tokens, and the extra special tokens outside the base vocabulary (as the reference)."""
        plain_added = {t.content for t in self._added_decoder.values() if not t.special} - special
        return plain_added | {t for t in self.additional_special_tokens if self._one_token_to_id(t) >= self.vocab_size}

    def decode(
        self,
        ids: Sequence[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        spaces_between_special_tokens: bool = True,
    ) -> str:
        special = set(self.all_special_tokens)
        kept = self._kept_whole(special)
        parts: list[str] = []
        run: list[str] = []
        for token in (self._one_id_to_token(i) for i in ids):
            if skip_special_tokens and token in special:
                continue
            if token in kept:
                if run:
                    text = self.convert_tokens_to_string(run)
                    if text:
                        parts.append(text)
                    run = []
                parts.append(token)
            else:
                run.append(token)
        if run:
            parts.append(self.convert_tokens_to_string(run))
        text = (" " if spaces_between_special_tokens and not self.glues_kept_tokens else "").join(parts)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def batch_decode(self, sequences: Iterable[Sequence[int]], **kwargs: Any) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]

    # ------------------------------------------------------ loading/saving
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "Tokenizer":
        """Build from a checkpoint directory: vocabulary files + tokenizer_config.json."""
        directory = Path(path)
        if not directory.is_dir():
            raise TokenizerError(f"{directory} is not a directory")
        kwargs = read_tokenizer_config(directory)
        for arg, filename in cls.vocab_files.items():
            file = directory / filename
            if arg not in overrides:
                kwargs[arg] = str(file) if file.exists() else None
        kwargs.update(overrides)
        return cls._from_config(kwargs)

    @classmethod
    def _from_config(cls, kwargs: dict[str, Any]) -> "Tokenizer":
        """Keep the options this class knows and build it; subclasses may translate options first."""
        import inspect

        accepted: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" in klass.__dict__:
                accepted |= set(inspect.signature(klass.__init__).parameters)
        accepted |= set(SPECIAL_TOKEN_ATTRIBUTES)
        missing = [arg for arg in cls.vocab_files if kwargs.get(arg) is None]
        if missing:
            names = ", ".join(cls.vocab_files[a] for a in missing)
            raise TokenizerError(f"tokenizer file(s) missing: {names}")
        return cls(**{k: v for k, v in kwargs.items() if k in accepted})

    def save_pretrained(self, path: str | os.PathLike) -> tuple[str, ...]:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        config = dict(self.init_kwargs)
        # plain strings, as the reference writes them (it cannot read token dicts here);
        # lstrip/rstrip and the rest travel in added_tokens_decoder
        config.update({n: t.content for n, t in self._special.items() if t is not None})
        if self.additional_special_tokens:
            config["additional_special_tokens"] = list(self.additional_special_tokens)
        config["added_tokens_decoder"] = {str(i): t.to_json() for i, t in sorted(self._added_decoder.items())}
        config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        config["tokenizer_class"] = self.hf_class_name()
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        special_map = {n: t.to_json() for n, t in self._special.items() if t is not None}
        if self.additional_special_tokens:
            special_map["additional_special_tokens"] = list(self.additional_special_tokens)
        (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, ensure_ascii=False) + "\n")
        return self.save_vocabulary(directory) + (
            str(directory / "tokenizer_config.json"),
            str(directory / "special_tokens_map.json"),
        )

    @classmethod
    def hf_class_name(cls) -> str:
        return cls.__name__


class TableVocabulary:
    """The vocabulary of a tokenizer that reads it as a table (MVP, XLM, ProphetNet): ``encoder``
    (token -> id) and ``decoder`` (id -> token). Mixed in before :class:`Tokenizer`. An id outside
    the table reads as the unknown token, or is an error where ``unknown_id_is_error``."""

    encoder: dict[str, int]
    decoder: dict[int, str]
    unknown_id_is_error: bool = False

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self._added_encoder}  # type: ignore[attr-defined]

    def _token_to_id(self, token: str) -> int | None:
        return self.encoder.get(token)

    def _id_to_token(self, index: int) -> str:
        token = self.decoder.get(index)
        if token is not None:
            return token
        if self.unknown_id_is_error:
            raise TokenizerError(f"id {index} is not in the vocabulary")
        return str(self.unk_token)  # type: ignore[attr-defined]

    def _save_bpe_files(self, save_directory: str | os.PathLike, filename_prefix: str | None,
                        merges: Iterable[str]) -> tuple[str, ...]:
        """Write the table as vocab.json and these lines as merges.txt (a BPE vocabulary's files)."""
        directory = Path(save_directory)
        if not directory.is_dir():
            raise TokenizerError(f"{directory} is not a directory")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_path, merges_path = directory / f"{prefix}vocab.json", directory / f"{prefix}merges.txt"
        text = json.dumps(self.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        vocab_path.write_text(text, encoding="utf-8")
        merges_path.write_text("".join(line + "\n" for line in merges), encoding="utf-8")
        return str(vocab_path), str(merges_path)


def _truncation_strategy(truncation: bool | str, max_length: int | None) -> str | None:
    if truncation is True:
        return "longest_first"
    if truncation in (False, None, "do_not_truncate"):
        return None
    if truncation in ("longest_first", "only_first", "only_second"):
        return str(truncation)
    raise TokenizerError(f"unknown truncation strategy {truncation!r}")


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces a word-level decode leaves before punctuation and English clitics."""
    for before, after in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
        (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def read_json_object(file: Path) -> dict[str, Any]:
    """A tokenizer's JSON file, which must hold an object; any fault is a :class:`TokenizerError`."""
    try:
        data = read_json(file)
    except ValueError as exc:  # ConfigError: not a regular file, too large, not JSON
        raise TokenizerError(str(exc)) from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{file} must hold a JSON object")
    return data


def read_tokenizer_config(directory: Path) -> dict[str, Any]:
    """Merge special_tokens_map.json and tokenizer_config.json (the latter wins) into kwargs."""
    kwargs: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = directory / name
        if file.exists() or file.is_symlink():  # a dangling link or a loop is refused by the reader
            kwargs.update(read_json_object(file))
    decoder = kwargs.pop("added_tokens_decoder", None)
    if decoder:
        kwargs["added_tokens_decoder"] = {int(i): AddedToken.from_json(t) for i, t in decoder.items()}
    for name in SPECIAL_TOKEN_ATTRIBUTES:
        if isinstance(kwargs.get(name), dict):
            kwargs[name] = AddedToken.from_json(kwargs[name], special=True)
    for noise in ("tokenizer_class", "auto_map", "name_or_path", "tokenizer_file", "extra_special_tokens"):
        kwargs.pop(noise, None)
    return kwargs
