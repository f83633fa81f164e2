"""MVP's tokenizer: byte-level BPE (the GPT-2/RoBERTa/BART vocabulary) on the `tokenizers` library.

A text is cut around added and special tokens, each stretch is split by the
GPT-2 pre-tokenisation pattern, its UTF-8 bytes are spelt with the printable
byte alphabet (a space is ``Ġ``), and the merges of ``merges.txt`` join them.
Words carry their leading space, so "Hello" and " Hello" get different ids;
``add_prefix_space=True`` adds that space to a text that lacks one.

Layout: ``<s> A </s>`` and ``<s> A </s></s> B </s>``; MVP takes no token type
ids. ``<mask>`` eats the whitespace to its left, so "a <mask>" is
``a``, ``<mask>``. Offsets are character offsets with the whitespace a piece
carries trimmed off, as the reference fast tokenizer gives them.

``MvpTokenizer`` follows the reference slow tokenizer and ``MvpTokenizerFast``
the fast one where those two differ: where ``add_prefix_space=True`` puts the
space (before the whole text, or before every stretch between special tokens),
how added tokens are spaced when decoding, and how ``longest_first`` splits an
odd budget between the two texts of a pair. Ids are otherwise the same.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from ..config import MAX_VOCAB_BYTES, read_bytes, read_json
from .base import FAIRSEQ_SPECIAL_TOKENS, TableVocabulary, Tokenizer, TokenizerError

__all__ = ["MvpTokenizer", "MvpTokenizerFast", "byte_alphabet"]


@lru_cache(maxsize=None)
def byte_alphabet() -> dict[int, str]:
    """The printable character standing for each byte value.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``,
    ``®``..``ÿ``) stand for themselves; the other 68 (controls, space, soft
    hyphen ...) take the characters from U+0100 on, in byte order.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    spare = 0x100
    for b in range(256):
        if b not in table:
            table[b] = chr(spare)
            spare += 1
    return table


def _read_merges(path: str | os.PathLike) -> list[tuple[str, ...]]:
    """Merges of a ``merges.txt``: the ``#version`` header line and the text after the last newline are not merges."""
    lines = read_bytes(path, limit=MAX_VOCAB_BYTES, kind="vocabulary file").decode("utf-8").split("\n")[1:-1]
    return [tuple(line.split()) for line in lines]


class MvpTokenizer(TableVocabulary, Tokenizer):
    """Byte-level BPE tokenizer of MVP (RUCAIBox/mvp), ids identical to the reference's."""

    vocab_files = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ("input_ids", "attention_mask")
    default_special_tokens = {**FAIRSEQ_SPECIAL_TOKENS, "mask_token": "<mask>"}
    default_lstrip_tokens = ("<mask>",)
    layout = ("cls A sep", "cls A sep sep B sep")  # no token types: all 0
    unknown_id_is_error = True
    #: add_prefix_space puts a space before every stretch between added tokens (True) or before the text (False)
    prefix_each_stretch = False

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        merges_file: str | os.PathLike,
        *,
        errors: str = "replace",
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:
            self.encoder: dict[str, int] = read_json(vocab_file, limit=MAX_VOCAB_BYTES, kind="vocabulary file")
            self.merges = _read_merges(merges_file)
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot read MVP vocabulary files: {exc}") from exc
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.errors = errors
        self.add_prefix_space = bool(add_prefix_space)
        self.trim_offsets = bool(trim_offsets)
        self.init_kwargs = {"errors": errors, "add_prefix_space": self.add_prefix_space, "trim_offsets": self.trim_offsets}
        self._byte_decoder = {ch: b for b, ch in byte_alphabet().items()}
        self._model: Any = None
        self._backends: dict[tuple[bool, bool], tuple[Any, dict[int, int]]] = {}
        self._finish_init()

    # ------------------------------------------------------------ backend
    def _bpe_model(self) -> Any:
        if self._model is None:
            from tokenizers import models

            pairs = [m for m in self.merges if len(m) == 2]
            try:
                self._model = models.BPE(vocab=self.encoder, merges=pairs, fuse_unk=False)
            except Exception as exc:  # the Rust side rejects merges whose result is not in the vocabulary
                raise TokenizerError(f"inconsistent vocab.json / merges.txt: {exc}") from exc
        return self._model

    def _backend(self, prefix_space: bool, with_added: bool) -> tuple[Any, dict[int, int]]:
        """A `tokenizers.Tokenizer` and the map from its added-token ids to ours.

        ``with_added`` registers our added and special tokens so that they are
        cut out of the text whole (with their lstrip/rstrip/single_word rules).
        """
        key = (prefix_space, with_added)
        if key not in self._backends:
            from tokenizers import AddedToken as BackendToken
            from tokenizers import Tokenizer as Backend
            from tokenizers import decoders, pre_tokenizers, processors

            backend = Backend(self._bpe_model())
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space, use_regex=True)
            backend.decoder = decoders.ByteLevel()
            # run with add_special_tokens=False: only its offset trimming (whitespace off each piece) applies
            backend.post_processor = processors.RobertaProcessing(
                sep=(self.sep_token, self.sep_token_id),
                cls=(self.cls_token, self.cls_token_id),
                trim_offsets=self.trim_offsets,
                add_prefix_space=prefix_space,
            )
            id_map: dict[int, int] = {}
            if with_added:
                for our_id, token in sorted(self._added_decoder.items()):
                    spec = BackendToken(
                        token.content,
                        single_word=token.single_word,
                        lstrip=token.lstrip,
                        rstrip=token.rstrip,
                        normalized=token.normalized,
                        special=token.special,
                    )
                    (backend.add_special_tokens if token.special else backend.add_tokens)([spec])
                    id_map[backend.token_to_id(token.content)] = our_id
            self._backends[key] = (backend, id_map)
        return self._backends[key]

    def _rebuild_added(self) -> None:
        super()._rebuild_added()
        self.__dict__.setdefault("_backends", {}).clear()

    def _encode(self, text: str, add_prefix_space: bool | None) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and offsets of ``text`` (no special-token layout)."""
        prefix = self.add_prefix_space if add_prefix_space is None else bool(add_prefix_space)
        shift = 0
        if prefix and not self.prefix_each_stretch:
            # the slow reference prefixes the text itself, before special tokens are cut out
            if text and not text[0].isspace():
                text, shift = " " + text, 1
            prefix = False
        backend, id_map = self._backend(prefix, with_added=not self.split_special_tokens)
        try:
            encoding = backend.encode(text, add_special_tokens=False)
        except Exception as exc:  # text reaching here is valid Unicode (base.check_text)
            raise TokenizerError(f"cannot encode this text: {exc}") from exc
        ids = [id_map.get(i, i) for i in encoding.ids]
        offsets = [(max(start - shift, 0), max(end - shift, 0)) for start, end in encoding.offsets]
        return ids, offsets

    # ------------------------------------------------------- tokenisation
    def tokenize(self, text: str, add_prefix_space: bool | None = None) -> list[str]:
        """Pieces of ``text``; ``add_prefix_space`` overrides the tokenizer's setting for this call."""
        ids, _ = self._encode(text, add_prefix_space)
        return [self._one_id_to_token(i) for i in ids]

    def tokenize_with_offsets(
        self, text: str, add_prefix_space: bool | None = None
    ) -> tuple[list[str], list[tuple[int, int]]]:
        """Pieces and their ``(start, end)`` character offsets in ``text``, whitespace trimmed off."""
        ids, offsets = self._encode(text, add_prefix_space)
        return [self._one_id_to_token(i) for i in ids], offsets

    def _ids_and_offsets(self, text: str, with_offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
        ids, offsets = self._encode(text, None)
        return ids, offsets if with_offsets else None

    def _tokenize(self, text: str, **options: Any) -> list[str]:
        backend, _ = self._backend(bool(options.get("add_prefix_space", False)), with_added=False)
        return backend.encode(text, add_special_tokens=False).tokens

    # ----------------------------------------------------------- decoding
    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        data = bytearray()
        for ch in "".join(tokens):
            byte = self._byte_decoder.get(ch)
            if byte is None:  # not a byte-alphabet character (an added token): its own UTF-8
                data += ch.encode("utf-8")
            else:
                data.append(byte)
        return data.decode("utf-8", errors=self.errors)

    # ------------------------------------------------------------- saving
    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, ...]:
        lines = ["#version: 0.2", *(" ".join(merge) for merge in self.merges)]
        return self._save_bpe_files(save_directory, filename_prefix, lines)


class MvpTokenizerFast(MvpTokenizer):
    """``MvpTokenizer`` as the fast reference behaves where the two references differ.

    ``add_prefix_space`` puts a space before every stretch of text between added
    tokens, ``decode`` writes added tokens with no space around them, and
    ``longest_first`` truncation of a pair splits an odd budget the other way.
    """

    prefix_each_stretch = True

    glues_kept_tokens = True  # the fast reference ignores spaces_between_special_tokens

    def _truncate(self, ids_0, ids_1, offs_0, offs_1, budget: int, strategy: str):
        """``longest_first`` on a pair as the fast reference does it.

        Where both texts must be cut, the shorter one (the first, on a tie) keeps
        ``budget // 2`` and the other the rest; the slow reference gives the odd
        token to the first text instead.
        """
        if strategy != "longest_first" or ids_1 is None:
            return super()._truncate(ids_0, ids_1, offs_0, offs_1, budget, strategy)
        budget = max(budget, 0)
        n_0, n_1 = len(ids_0), len(ids_1)
        if n_0 + n_1 <= budget:
            return ids_0, ids_1, offs_0, offs_1, False
        shorter_first = n_0 <= n_1
        short = min(n_0, n_1)
        keep_short, keep_long = short, (short if short > budget else max(short, budget - short))
        if keep_short + keep_long > budget:
            keep_short, keep_long = budget // 2, budget - budget // 2
        keep_0, keep_1 = (keep_short, keep_long) if shorter_first else (keep_long, keep_short)

        def cut(seq, keep):
            if seq is None or len(seq) <= keep:
                return seq
            return seq[len(seq) - keep :] if self.truncation_side == "left" else seq[:keep]

        return cut(ids_0, keep_0), cut(ids_1, keep_1), cut(offs_0, keep_0), cut(offs_1, keep_1), True
