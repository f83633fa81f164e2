"""XLM's tokenizer: Moses pre-processing per language, then BPE with ``</w>`` word ends.

The pipeline for one stretch of plain text (special tokens are split out first
by the base class):

1. lower-case every character outside special tokens, when the checkpoint asks
   for ``do_lowercase_and_remove_accent`` (this happens before Moses sees the
   text, so e.g. Moses' non-breaking prefixes see "mr." rather than "Mr.");
2. words, by language: Moses (sacremoses: punctuation normalisation,
   non-printing characters dropped, tokenisation) for most languages, Jieba for
   Chinese (``zh``), PyThaiNLP for Thai (``th``), KyTea for Japanese (``ja``);
   Romanian (``ro``) also folds s/t-comma and strips its diacritics;
3. each word lower-cased and stripped of combining marks (when configured);
4. each word split by the BPE merges; the last piece of a word ends in ``</w>``.

The language is the tokenizer's ``lang`` attribute (``"en"`` unless set, e.g.
``XLMTokenizer.from_pretrained(path, lang="fr")`` or ``tokenizer.lang = "fr"``),
or ``tokenize(text, lang="fr")`` for one call. ``lang2id`` / ``id2lang`` map
language codes to the ids of the model's language embeddings.

No torch here; sacremoses, jieba and the Thai/Japanese segmenters are imported
when first needed.
"""

from __future__ import annotations

import heapq
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Sequence

from ..config import MAX_VOCAB_BYTES, read_bytes, read_json
from .base import TableVocabulary, Tokenizer, TokenizerError

__all__ = ["XLMTokenizer"]

#: XLM's ten reserved symbols; ``<special1>`` doubles as the mask token
RESERVED_SPECIALS = tuple(f"<special{i}>" for i in range(10))

# Moses' replace-unicode-punctuation table: full-width and CJK punctuation to ASCII
_UNICODE_PUNCT = str.maketrans(
    {
        "，": ",", "、": ",", "”": '"', "“": '"', "∶": ":", "：": ":", "？": "?", "《": '"', "》": '"',
        "）": ")", "！": "!", "（": "(", "；": ";", "」": '"', "「": '"', "～": "~", "’": "'", "…": "...",
        "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%",
        **{chr(0xFF10 + d): str(d) for d in range(10)},  # full-width digits
    }
)
# the two full stops also swallow the whitespace after them
_FULL_STOPS = re.compile(r"[。．]\s*")

# Sennrich's WMT16 Romanian normalisation: cedilla forms to comma forms, then no diacritics
_ROMANIAN = str.maketrans(
    {
        "\u015e": "S", "\u015f": "s", "\u0218": "S", "\u0219": "s",
        "\u0162": "T", "\u0163": "t", "\u021a": "T", "\u021b": "t",
        "\u0102": "A", "\u0103": "a", "\u00c2": "A", "\u00e2": "a", "\u00ce": "I", "\u00ee": "i",
    }
)


def replace_unicode_punct(text: str) -> str:
    """Map full-width/CJK punctuation and digits to their ASCII forms (Moses' table)."""
    return _FULL_STOPS.sub(". ", text.translate(_UNICODE_PUNCT))


def remove_non_printing_char(text: str) -> str:
    """Drop every character of a Unicode "C" category (controls, format, unassigned ...)."""
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))


def romanian_preprocessing(text: str) -> str:
    return text.translate(_ROMANIAN)


def lowercase_and_remove_accent(words: Sequence[str]) -> list[str]:
    """Lower-case the words and drop combining marks (category Mn) after NFD.

    The words are joined with spaces and split again, as XLM's own tool does,
    so a word holding a space comes back as several.
    """
    text = unicodedata.normalize("NFD", " ".join(words).lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return text.lower().split(" ")


#: words of more symbols than this are merged by :func:`merge_by_rounds` (same pieces, n log n)
LONG_WORD = 64


def merge_by_rounds(symbols: list[str], ranks: dict[tuple[str, ...], int]) -> list[str]:
    """BPE merges of one word, as the plain loop in ``bpe`` makes them, in O(n log n).

    The plain loop finds the best-ranked adjacent pair and merges every occurrence of it left to
    right, then looks again: quadratic in the word's length, so a 64 KB word without spaces took
    minutes. Here the pairs wait in a heap keyed by (rank, position) over a linked list of
    symbols; each round pops every entry of the best rank (all occurrences of one pair, left to
    right), merges those still current, and only then adds the pairs the merges made, exactly as
    the plain loop's next pass would see them. A merged symbol is longer than both its parts, so
    an entry whose symbols changed is recognised as stale and skipped.
    """
    n = len(symbols)
    sym = list(symbols)
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = [(ranks[pair], i, *pair) for i, pair in enumerate(zip(sym, sym[1:])) if pair in ranks]
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        merged: list[int] = []
        while heap and heap[0][0] == rank:
            _, i, first, second = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j >= n or sym[i] != first or sym[j] != second:
                continue  # stale: a neighbour was merged since this entry was made
            sym[i] = first + second
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            merged.append(i)
        for i in merged:
            for left, right in ((prv[i], i), (i, nxt[i])):
                if left >= 0 and right < n and (sym[left], sym[right]) in ranks:
                    heapq.heappush(heap, (ranks[sym[left], sym[right]], left, sym[left], sym[right]))
    return [s for s, keep in zip(sym, alive) if keep]


def _read_merges(path: str | os.PathLike) -> dict[tuple[str, ...], int]:
    """Merge ranks from a ``merges.txt``/fastBPE ``codes`` file: the first two fields of each line.

    Like the reference, the text after the last newline is not read (files end
    with a newline), and a pair listed twice keeps its later rank.
    """
    lines = read_bytes(path, limit=MAX_VOCAB_BYTES, kind="vocabulary file").decode("utf-8").split("\n")[:-1]
    return {tuple(line.split()[:2]): rank for rank, line in enumerate(lines)}


class XLMTokenizer(TableVocabulary, Tokenizer):
    """XLM tokenizer: Moses (or Jieba/PyThaiNLP/KyTea) words, then ``</w>`` BPE.

    Layout: ``<s> A </s>`` and ``<s> A </s> B </s>``; token type ids are 0 up to
    the first ``</s>`` and 1 after it.
    """

    vocab_files = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ("input_ids", "token_type_ids", "attention_mask")
    default_special_tokens = {
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "</s>",
        "mask_token": "<special1>",
    }
    layout = ("bos A sep", "bos A sep B:1 sep:1")
    #: token type id of padding
    pad_token_type_id = 0
    #: words whose BPE pieces are remembered (the cache starts over when full)
    bpe_cache_size = 100_000

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        merges_file: str | os.PathLike,
        *,
        lang2id: dict[str, int] | None = None,
        id2lang: dict[Any, str] | None = None,
        do_lowercase_and_remove_accent: bool = True,
        lang: str = "en",
        additional_special_tokens: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if additional_special_tokens is None:
            additional_special_tokens = list(RESERVED_SPECIALS)
        super().__init__(additional_special_tokens=additional_special_tokens, **kwargs)
        try:
            self.encoder: dict[str, int] = read_json(vocab_file, limit=MAX_VOCAB_BYTES, kind="vocabulary file")
            self.bpe_ranks = _read_merges(merges_file)
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot read XLM vocabulary files: {exc}") from exc
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.do_lowercase_and_remove_accent = bool(do_lowercase_and_remove_accent)
        self.lang2id = dict(lang2id) if lang2id is not None else None
        self.id2lang = {int(i): code for i, code in id2lang.items()} if id2lang is not None else None
        if self.lang2id is not None and self.id2lang is None:
            self.id2lang = {i: code for code, i in self.lang2id.items()}
        if self.id2lang is not None and self.lang2id is None:
            self.lang2id = {code: i for i, code in self.id2lang.items()}
        if len(self.lang2id or {}) != len(self.id2lang or {}):
            raise TokenizerError("lang2id and id2lang must list the same languages")
        self.lang = lang
        self.init_kwargs = {
            "lang2id": self.lang2id,
            "id2lang": self.id2lang,
            "do_lowercase_and_remove_accent": self.do_lowercase_and_remove_accent,
        }
        self._bpe_cache: dict[str, list[str]] = {}
        self._moses_normalizers: dict[str, Any] = {}
        self._moses_tokenizers: dict[str, Any] = {}
        self._keep_case_pattern: re.Pattern[str] | None = None
        self._ja_segmenter: Any = None
        self._finish_init()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "XLMTokenizer":
        """As the base class; languages missing from tokenizer_config.json come from config.json."""
        directory = Path(path)
        config = directory / "config.json"
        if "lang2id" not in overrides and "id2lang" not in overrides and config.is_file():
            from .base import read_tokenizer_config

            tok_config = read_tokenizer_config(directory) if directory.is_dir() else {}
            if tok_config.get("lang2id") is None and tok_config.get("id2lang") is None:
                try:
                    model_config = read_json(config)
                except ValueError as exc:  # ConfigError: not a regular file, too large, not JSON
                    raise TokenizerError(str(exc)) from None
                for name in ("lang2id", "id2lang"):
                    if isinstance(model_config.get(name), dict):
                        overrides[name] = model_config[name]
        return super().from_pretrained(path, **overrides)  # type: ignore[return-value]

    # ------------------------------------------------------------ languages
    @property
    def do_lower_case(self) -> bool:
        return self.do_lowercase_and_remove_accent

    def lang_id(self, lang: str | None = None) -> int:
        """Id of a language's embedding (``lang`` defaults to the tokenizer's ``lang``)."""
        lang = self.lang if lang is None else lang
        if not self.lang2id:
            raise TokenizerError("this XLM tokenizer does not list its languages (no lang2id)")
        if lang not in self.lang2id:
            known = ", ".join(self.lang2id)
            raise TokenizerError(f"language {lang!r} is not one of this model's languages ({known})")
        return self.lang2id[lang]

    # ------------------------------------------------------- tokenisation
    def tokenize(self, text: str, lang: str | None = None, bypass_tokenizer: bool = False) -> list[str]:
        """Pieces of ``text`` in language ``lang`` (default: the ``lang`` attribute).

        ``bypass_tokenizer=True`` takes ``text`` as already segmented (split on
        whitespace, no Moses, no accent stripping) and only applies BPE. Like the
        reference, a language the model does not list is not refused here
        (``lang_id`` refuses it).
        """
        return super().tokenize(text, lang=lang, bypass_tokenizer=bypass_tokenizer)

    def prepare_for_tokenization(self, text: str) -> str:
        """Lower-case the text, character by character, leaving special tokens as typed."""
        if not self.do_lowercase_and_remove_accent:
            return text
        if self._keep_case_pattern is None:
            keep = list(self.all_special_tokens)
            keep += [t.content for t in self._added_decoder.values() if not t.special and t.normalized]
            self._keep_case_pattern = re.compile("|".join(re.escape(t) for t in keep)) if keep else None
        if self._keep_case_pattern is None:
            return _lower_each(text)
        out: list[str] = []
        last = 0
        for match in self._keep_case_pattern.finditer(text):
            out.append(_lower_each(text[last : match.start()]))
            out.append(match.group())
            last = match.end()
        out.append(_lower_each(text[last:]))
        return "".join(out)

    def _rebuild_added(self) -> None:
        super()._rebuild_added()
        self._keep_case_pattern = None

    def _tokenize(self, text: str, lang: str | None = None, bypass_tokenizer: bool = False) -> list[str]:
        words = text.split() if bypass_tokenizer else self.words(text, lang)
        pieces: list[str] = []
        for word in words:
            if word:
                pieces.extend(self.bpe(word))
        return pieces

    def words(self, text: str, lang: str | None = None) -> list[str]:
        """The words BPE is applied to: the language's segmenter, then lower case without accents
        when the tokenizer does that."""
        words = self._segment(text, self.lang if lang is None else lang)
        return lowercase_and_remove_accent(words) if self.do_lowercase_and_remove_accent else words

    def _segment(self, text: str, lang: str) -> list[str]:
        """Words of ``text`` by the language's own segmenter."""
        if lang == "zh":
            jieba = _import_jieba()
            text = self.moses_pipeline(" ".join(jieba.cut(text)), lang)
            return text.split()
        text = self.moses_pipeline(text, lang)
        if lang == "th":
            return list(_thai_word_tokenize()(text))
        if lang == "ja":
            return self._japanese_words(text)
        if lang == "ro":
            text = romanian_preprocessing(text)
        return self._moses_tokenizer(lang).tokenize(text, return_str=False, escape=False)

    def moses_pipeline(self, text: str, lang: str) -> str:
        """Unicode punctuation to ASCII, Moses punctuation normalisation, non-printing characters out."""
        text = replace_unicode_punct(text)
        normalizer = self._moses_normalizers.get(lang)
        if normalizer is None:
            normalizer = self._moses_normalizers[lang] = _sacremoses().MosesPunctNormalizer(lang=lang)
        return remove_non_printing_char(normalizer.normalize(text))

    def _moses_tokenizer(self, lang: str) -> Any:
        tokenizer = self._moses_tokenizers.get(lang)
        if tokenizer is None:
            tokenizer = self._moses_tokenizers[lang] = _sacremoses().MosesTokenizer(lang=lang)
        return tokenizer

    def _japanese_words(self, text: str) -> list[str]:
        if self._ja_segmenter is None:
            try:
                import Mykytea  # type: ignore[import-not-found]
            except ImportError as exc:
                raise TokenizerError(
                    "XLM Japanese (lang='ja') needs KyTea: build and install KyTea "
                    "(https://github.com/neubig/kytea, prefix $HOME/local), then `pip install kytea` (module Mykytea)"
                ) from exc
            model = Path.home() / "local" / "share" / "kytea" / "model.bin"
            try:
                self._ja_segmenter = Mykytea.Mykytea(f"-model {model}")
            except Exception as exc:  # KyTea reports a missing model in its own way
                raise TokenizerError(f"KyTea could not load its model {model}: {exc}") from exc
        return list(self._ja_segmenter.getWS(text))

    def bpe(self, word: str) -> list[str]:
        """BPE pieces of one word; the last piece carries ``</w>``."""
        cached = self._bpe_cache.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + "</w>"]
        ranks = self.bpe_ranks
        if len(symbols) > LONG_WORD:
            symbols = merge_by_rounds(symbols, ranks)
        while len(symbols) > 1:
            # the adjacent pair with the best (lowest) rank is merged everywhere, left to right
            best = min(zip(symbols, symbols[1:]), key=lambda pair: ranks.get(pair, float("inf")))
            if best not in ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        # a piece can only hold a space when the word did (bypass/Thai words): split there, as the reference
        pieces = " ".join(symbols).split(" ")
        if len(self._bpe_cache) >= self.bpe_cache_size:  # bounded, for endless streams of new words
            self._bpe_cache.clear()
        self._bpe_cache[word] = pieces
        return pieces

    # ----------------------------------------------------------- decoding
    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens).replace("</w>", " ").strip()

    # ------------------------------------------------------------- saving
    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, ...]:
        ordered = sorted(self.bpe_ranks.items(), key=lambda item: item[1])
        return self._save_bpe_files(save_directory, filename_prefix, (" ".join(pair) for pair, _ in ordered))


def _lower_each(text: str) -> str:
    """Lower-case character by character (no final sigma, unlike ``str.lower`` on a word)."""
    return "".join(map(str.lower, text))


def _sacremoses() -> Any:
    try:
        import sacremoses
    except ImportError as exc:
        raise TokenizerError("XLMTokenizer needs sacremoses: `pip install sacremoses`") from exc
    return sacremoses


def _import_jieba() -> Any:
    import logging

    try:
        import jieba
    except ImportError as exc:
        raise TokenizerError("XLM Chinese (lang='zh') needs Jieba: `pip install jieba`") from exc
    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter on stderr
    return jieba


def _thai_word_tokenize() -> Any:
    try:
        from pythainlp.tokenize import word_tokenize  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TokenizerError("XLM Thai (lang='th') needs PyThaiNLP: `pip install pythainlp`") from exc
    return word_tokenize
