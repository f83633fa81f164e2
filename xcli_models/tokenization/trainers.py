"""New vocabularies, learnt from text, in each family's own file layout.

A model trained from nothing needs a vocabulary fitted to its data; a small one keeps the
embedding matrix small. ``sentencepiece`` learns the SentencePiece models and ``tokenizers`` the
byte-level BPE; the word-level merges of XLM and WordPiece are learnt here (:func:`learn_merges`),
because ``tokenizers`` breaks ties between equally frequent pairs by an order that changes from
run to run once word-end or continuation markers are involved. Each learner is fed the text as
the family's tokenizer will see it, and its result laid out as that family's tokenizer reads it:

=============  ==============================  ============================================
family         learnt by                       files (special tokens first, as published)
=============  ==============================  ============================================
xlnet          sentencepiece, unigram          spiece.model: <unk> <s> </s> <cls> <sep> <pad> <mask> <eod> <eop>
xglm           sentencepiece, BPE              sentencepiece.bpe.model (<s> <pad> </s> <unk> added by the fairseq offset)
xlm            BPE here, with ``</w>``         vocab.json + merges.txt: <s> </s> <pad> <unk> <special0..9>
mvp            tokenizers, byte-level BPE      vocab.json + merges.txt: <s> <pad> </s> <unk> ... <mask>
prophetnet     BPE here, with ``##``           prophetnet.tokenizer: [PAD] [CLS] [SEP] [UNK] [MASK] [X_SEP]
=============  ==============================  ============================================

Learning is deterministic: the same text, size and options give byte-identical files.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

#: the families a vocabulary can be learnt for
FAMILIES = ("xlnet", "xglm", "xlm", "mvp", "prophetnet")


class VocabularyError(ValueError):
    """The text or the options cannot give a vocabulary (too little text, a size too small)."""


@dataclass(frozen=True)
class Vocabulary:
    """What was written: the files, and the ids a model config must agree with."""

    family: str
    directory: Path
    files: tuple[str, ...]
    #: ids the model sees: its embedding rows
    vocab_size: int
    #: config.json fields that name token ids (pad_token_id, bos_token_id, ...)
    token_ids: dict[str, int] = field(default_factory=dict)

    def complete(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with this vocabulary's size and token ids (the family's own field names)."""
        size_field = "n_words" if self.family == "xlm" else "vocab_size"
        return {**config, "model_type": config.get("model_type", self.family), size_field: self.vocab_size,
                **self.token_ids}


def learn(family: str, texts: Iterable[str], directory: str | Path, *, size: int, lowercase: bool = False) -> Vocabulary:
    """Learn a ``size``-entry vocabulary of ``family``'s kind from ``texts`` into ``directory``.

    ``size`` counts every id the model will see, special tokens included. ``lowercase`` is for
    the families whose tokenizer can lower-case (xlm, prophetnet, xlnet); the tokenizer_config.json
    written says so, so the text is lower-cased the same way when the model runs.
    """
    if family not in _LEARNERS:
        raise VocabularyError(f"cannot learn a vocabulary for {family!r}: one of {', '.join(FAMILIES)}")
    if size < 64:
        raise VocabularyError(f"a vocabulary of {size} entries is too small: 64 at least")
    lines = [text.strip() for text in texts if text.strip()]
    if not lines:
        raise VocabularyError("no text to learn a vocabulary from")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return _LEARNERS[family](lines, directory, size, lowercase)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ SentencePiece
def _sentencepiece(texts: Iterable[str], path: Path, size: int, model_type: str, **ids: Any) -> None:
    """Train a SentencePiece model on ``texts`` into ``path`` (one thread: the same result each time)."""
    import io

    import sentencepiece

    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=size, model_type=model_type,
            character_coverage=0.9995, num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
            hard_vocab_limit=False, max_sentence_length=1 << 16, minloglevel=2, **ids,
        )
    except RuntimeError as exc:  # the trainer's own complaint: too few pieces for the size, ...
        raise VocabularyError(f"sentencepiece could not learn the vocabulary: {exc}") from None
    path.write_bytes(model.getvalue())


def _xlnet(texts: Iterable[str], directory: Path, size: int, lowercase: bool) -> Vocabulary:
    from .sentencepiece import XLNetTokenizer

    prepare = XLNetTokenizer.preprocess_text
    options = _Options(do_lower_case=lowercase, remove_space=True, keep_accents=False)
    _sentencepiece((prepare(options, t) for t in texts), directory / "spiece.model", size, "unigram",
                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                   control_symbols="<cls>,<sep>,<pad>,<mask>,<eod>", user_defined_symbols="<eop>")
    _write_json(directory / "tokenizer_config.json", {
        "tokenizer_class": "XLNetTokenizer", "do_lower_case": lowercase, "remove_space": True,
        "keep_accents": False, "additional_special_tokens": ["<eop>", "<eod>"], "padding_side": "left",
    })
    return Vocabulary("xlnet", directory, ("spiece.model", "tokenizer_config.json"), _spm_size(directory / "spiece.model"),
                      {"pad_token_id": 5, "bos_token_id": 1, "eos_token_id": 2})


def _xglm(texts: Iterable[str], directory: Path, size: int, lowercase: bool) -> Vocabulary:
    from .sentencepiece import XGLMTokenizer

    extra = XGLMTokenizer.id_offset + XGLMTokenizer.num_madeup_words
    path = directory / "sentencepiece.bpe.model"
    _sentencepiece((t.lower() if lowercase else t for t in texts), path, size - extra, "bpe",
                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    _write_json(directory / "tokenizer_config.json", {"tokenizer_class": "XGLMTokenizer"})
    return Vocabulary("xglm", directory, (path.name, "tokenizer_config.json"), _spm_size(path) + extra,
                      {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2})


def _spm_size(path: Path) -> int:
    import sentencepiece

    return int(sentencepiece.SentencePieceProcessor(model_file=str(path)).get_piece_size())


class _Options:
    """Stands for a tokenizer where only its options are read (XLNet's text preparation)."""

    def __init__(self, **options: Any):
        self.__dict__.update(options)


# ------------------------------------------------------------------ tokenizers
def _bpe_trainer(size: int, special: list[str], **options: Any) -> Any:
    from tokenizers import trainers

    return trainers.BpeTrainer(vocab_size=size, special_tokens=special, show_progress=False, **options)


def _learn_tokenizers(model: Any, trainer: Any, words: Iterable[str], pre_tokenizer: Any = None) -> dict[str, Any]:
    """Train a ``tokenizers`` model on pre-split ``words`` lines; the model's JSON."""
    from tokenizers import Tokenizer, pre_tokenizers

    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizer or pre_tokenizers.WhitespaceSplit()
    tokenizer.train_from_iterator(words, trainer=trainer)
    return json.loads(tokenizer.to_str())["model"]


def _write_bpe(directory: Path, vocab: dict[str, int], merges: list[Any]) -> None:
    _write_json(directory / "vocab.json", vocab)
    lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(line + "\n" for line in lines), encoding="utf-8")


def _renumbered(first: list[str], learnt: dict[str, int], last: list[str] = ()) -> dict[str, int]:
    """``first`` at ids 0.., the learnt entries after them in their own order, then ``last``."""
    vocab = {token: i for i, token in enumerate(first)}
    for token, _ in sorted(learnt.items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    for token in last:
        vocab.setdefault(token, len(vocab))
    return vocab


def _xlm(texts: Iterable[str], directory: Path, size: int, lowercase: bool) -> Vocabulary:
    from .moses_bpe import RESERVED_SPECIALS, XLMTokenizer

    special = ["<s>", "</s>", "<pad>", "<unk>", *RESERVED_SPECIALS]
    _write_bpe(directory, _renumbered(special, {}), [])  # placeholders, for a tokenizer that only splits words
    splitter = XLMTokenizer(directory / "vocab.json", directory / "merges.txt", do_lowercase_and_remove_accent=lowercase)
    words = Counter(word for text in texts for word in splitter.words(text) if word)
    alphabet, merges = learn_merges(words, size - len(special), lambda w: [*w[:-1], w[-1] + "</w>"],
                                    lambda a, b: a + b)
    vocab = {token: i for i, token in enumerate([*special, *alphabet, *(a + b for a, b in merges)])}
    _write_bpe(directory, vocab, [f"{a} {b}" for a, b in merges])
    _write_json(directory / "tokenizer_config.json", {
        "tokenizer_class": "XLMTokenizer", "do_lowercase_and_remove_accent": lowercase,
    })
    return Vocabulary("xlm", directory, ("vocab.json", "merges.txt", "tokenizer_config.json"), len(vocab),
                      {"pad_index": 2, "unk_index": 3, "bos_index": 0, "eos_index": 1, "mask_index": 5,
                       "pad_token_id": 2, "bos_token_id": 0})


def learn_merges(
    words: Counter[str], size: int, symbols: Callable[[str], list[str]], join: Callable[[str, str], str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Byte-pair merges learnt from word counts: the alphabet (sorted) and the merges in order,
    until ``size`` entries or no pair is seen twice.

    ``symbols`` splits a word into its first symbols (XLM: the last one carries ``</w>``;
    WordPiece: all but the first carry ``##``), ``join`` makes a merged symbol. The most frequent
    adjacent pair is merged next; of equally frequent pairs the smallest (as strings) wins, so
    the result never depends on the order words were seen in.
    """
    split = {word: symbols(word) for word in sorted(words)}
    alphabet = sorted({symbol for parts in split.values() for symbol in parts})
    counts: Counter[tuple[str, str]] = Counter()
    holders: dict[tuple[str, str], set[str]] = {}
    for word, parts in split.items():
        for pair in zip(parts, parts[1:]):
            counts[pair] += words[word]
            holders.setdefault(pair, set()).add(word)
    heap = [(-n, pair) for pair, n in counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    known = set(alphabet)
    while heap and len(known) < size:
        negative, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -negative:
            continue  # stale: the pair's count changed since it was pushed
        if -negative < 2:
            break
        merges.append(pair)
        merged = join(*pair)
        known.add(merged)
        changed: set[tuple[str, str]] = set()
        for word in sorted(holders.pop(pair, ())):
            old = split[word]
            new = _merge_pair(old, pair, merged)
            for before in zip(old, old[1:]):
                counts[before] -= words[word]
                changed.add(before)
            for after in zip(new, new[1:]):
                counts[after] += words[word]
                holders.setdefault(after, set()).add(word)
                changed.add(after)
            split[word] = new
        counts.pop(pair, None)
        for other in changed:
            if counts.get(other, 0) > 0:
                heapq.heappush(heap, (-counts[other], other))
            else:
                counts.pop(other, None)
    return alphabet, merges


def _merge_pair(parts: list[str], pair: tuple[str, str], merged: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


def _mvp(texts: Iterable[str], directory: Path, size: int, lowercase: bool) -> Vocabulary:
    from tokenizers import models, pre_tokenizers

    special = ["<s>", "<pad>", "</s>", "<unk>"]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model = _learn_tokenizers(models.BPE(), _bpe_trainer(size - 1, special,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
                              (t.lower() if lowercase else t for t in texts), byte_level)
    vocab = _renumbered(special, model["vocab"], ["<mask>"])
    _write_bpe(directory, vocab, model["merges"])
    _write_json(directory / "tokenizer_config.json", {"tokenizer_class": "MvpTokenizer"})
    return Vocabulary("mvp", directory, ("vocab.json", "merges.txt", "tokenizer_config.json"), len(vocab),
                      {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2,
                       "forced_eos_token_id": 2})


def _prophetnet(texts: Iterable[str], directory: Path, size: int, lowercase: bool) -> Vocabulary:
    from tokenizers import normalizers, pre_tokenizers

    special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "[X_SEP]"]
    normal = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase or None)
    split = pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts for word, _ in split.pre_tokenize_str(normal.normalize_str(text)))
    alphabet, merges = learn_merges(words, size - len(special), lambda w: [w[0], *("##" + c for c in w[1:])],
                                    lambda a, b: a + b.removeprefix("##"))
    tokens = dict.fromkeys([*special, *alphabet, *(a + b.removeprefix("##") for a, b in merges)])
    (directory / "prophetnet.tokenizer").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    _write_json(directory / "tokenizer_config.json", {
        "tokenizer_class": "ProphetNetTokenizer", "do_lower_case": lowercase, "strip_accents": None,
    })
    return Vocabulary("prophetnet", directory, ("prophetnet.tokenizer", "tokenizer_config.json"), len(tokens),
                      {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 2, "decoder_start_token_id": 2})


_LEARNERS = {"xlnet": _xlnet, "xglm": _xglm, "xlm": _xlm, "mvp": _mvp, "prophetnet": _prophetnet}
