"""MvpTokenizer(Fast) against the references (transformers' slow MvpTokenizer and fast MvpTokenizerFast).

Vocabulary: the RoBERTa/BART/MVP byte-level BPE files in shared/data (the ones
shipped as the built-in RUCAIBox/mvp tokenizer).
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_path
from xcli_models.tokenization import AutoTokenizer, TokenizerError
from xcli_models.tokenization.byte_bpe import MvpTokenizer, MvpTokenizerFast

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BUILTIN = Path(__file__).resolve().parents[2] / "xcli_models" / "data" / "builtin" / "RUCAIBox" / "mvp"
# sha256 of the shipped files (shared/data/SOURCES.md, section A)
SHA256 = {
    "vocab.json": "9e7f63c2d15d666b52e21d250d2e513b87c9b713cfa6987a82ed89e5e6e50655",
    "merges.txt": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}

# Tatoeba languages in many scripts: Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Georgian,
# Armenian, Ethiopic, Khmer, Bengali, Tamil, Han (simplified/traditional/Cantonese), kana, Hangul, Vietnamese
SCRIPTS = [
    "cmn", "yue", "jpn", "kor", "ara", "heb", "hin", "rus", "tha", "ell", "kat", "hye", "amh", "khm",
    "ben", "tam", "vie", "deu", "fra", "pol", "tur", "ukr", "urd", "pes", "yid",
]

HARD_CASES = [
    "",
    " ",
    "    ",
    "\t",
    "\n\n",
    " \t\n\r\x0b\x0c ",
    "a\tb\nc\r\nd",
    "  leading and trailing  ",
    "Hello world",
    " Hello world",
    "A long paragraph for summarization.",
    "😀👍🏽 👩‍👩‍👧 🇫🇷 ❤️ 𝄞",
    "e\u0301 a\u0300 n\u0303 \u0301 Z\u0351\u0352\u0357",
    "日本語のテキスト。中文，句子！한국어 텍스트",
    "مرحبا بالعالم",
    "שלום עולם",
    "\u202eRTL override\u202c and \u200fmark",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "\x00\x01\x07\x1b[0m\x7f\x85\xa0\xad",
    "\u200b\u200c\u200d\ufeff\u2028\u2029\u3000",
    "\ue000\U0010ffff\ufffd\ufffe",
    "don't I'll we're they've she'd It's 'quoted'",
    "HELLO'S 'S 's",
    "1,000,000.50 3-4 10:30 50% $5 €4",
    "http://example.com/a?b=c&d=e <b>bold</b> &amp;",
    "a <mask> b",
    "a<mask>b",
    "<mask>",
    " <mask>",
    "<mask> <mask>  <mask>",
    "x <mask>",
    "<s>x</s>",
    "<s> x </s>",
    "hi <s> there </s>  ",
    "<special1>",
    "<MASK> <Mask> < mask> <mask",
    "<pad><unk></s></s>",
    "<s><s>",
    "word " * 2000,
    "supercalifragilisticexpialidocious" * 40,
]


def _lines(lang3: str, n: int, seed: int = 0) -> list[str]:
    path = shared_path("datasets", "tatoeba", f"tatoeba.{lang3}-eng.{lang3}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return random.Random(seed).sample(lines, min(n, len(lines)))


def _files() -> tuple[str, str]:
    folder = shared_path("tokenizers", "roberta_bart_mvp")
    return str(folder / "vocab.json"), str(folder / "merges.txt")


def _build(add_prefix_space: bool = False):
    vocab, merges = _files()
    return (
        MvpTokenizer(vocab, merges, add_prefix_space=add_prefix_space),
        MvpTokenizerFast(vocab, merges, add_prefix_space=add_prefix_space),
        transformers.MvpTokenizer(vocab, merges, add_prefix_space=add_prefix_space),
        transformers.MvpTokenizerFast(vocab, merges, add_prefix_space=add_prefix_space),
    )


@pytest.fixture(scope="module")
def toks():
    return _build()


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = list(HARD_CASES)
    for i, lang in enumerate(SCRIPTS):
        texts += _lines(lang, 90, seed=i)
    return texts


# --------------------------------------------------------------------------- tokens and ids
def test_ids_tokens_offsets_match_references(toks, corpus):
    ours, ours_fast, slow, fast = toks
    assert len(corpus) > 2000
    for text in corpus:
        tokens = slow.tokenize(text)
        assert ours.tokenize(text) == tokens, text
        ref = fast(text, return_offsets_mapping=True)
        assert ref["input_ids"] == slow.build_inputs_with_special_tokens(slow.convert_tokens_to_ids(tokens))
        offsets = [tuple(o) for o in ref["offset_mapping"]]
        for tok in (ours, ours_fast):
            encoding = tok.encode_plus(text, return_offsets=True)
            assert encoding.input_ids == ref["input_ids"], text
            assert encoding.offsets == offsets, text
        assert ours.encode(text, add_special_tokens=False) == ref["input_ids"][1:-1]


def test_known_ids(toks):
    ours = toks[0]
    assert ours.encode("Hello world") == [0, 31414, 232, 2]
    assert ours.encode(" Hello world") == [0, 20920, 232, 2]
    assert ours.encode("A long paragraph for summarization.") == [0, 250, 251, 17818, 13, 39186, 1938, 4, 2]
    assert ours.tokenize("a <mask> b") == ["a", "<mask>", "Ġb"]  # <mask> eats the space on its left
    assert ours.tokenize("<s>x</s>") == ["<s>", "x", "</s>"]


def test_add_prefix_space(toks, corpus):
    ours, ours_fast, slow, fast = _build(add_prefix_space=True)
    for text in HARD_CASES + corpus[len(HARD_CASES) :: 12]:
        # slow: the whole text gets one space in front
        assert ours.encode(text) == slow.encode(text), text
        assert ours.tokenize(text) == slow.tokenize(text), text
        # fast: every stretch between special tokens gets one
        ref = fast(text, return_offsets_mapping=True)
        encoding = ours_fast.encode_plus(text, return_offsets=True)
        assert encoding.input_ids == ref["input_ids"], text
        assert encoding.offsets == [tuple(o) for o in ref["offset_mapping"]], text
    assert ours.encode("a<mask>b") != ours_fast.encode("a<mask>b")  # where the two references differ
    assert toks[0].tokenize("Hello", add_prefix_space=True) == ours.tokenize("Hello") == ["ĠHello"]


def test_special_tokens_match_reference(toks):
    ours, ours_fast, slow, fast = toks
    for tok in (ours, ours_fast):
        for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
            assert getattr(tok, f"{name}_token") == getattr(slow, f"{name}_token"), name
            assert getattr(tok, f"{name}_token_id") == getattr(slow, f"{name}_token_id"), name
        assert tok.all_special_tokens == slow.all_special_tokens
        assert tok.all_special_ids == slow.all_special_ids
        assert tok.get_vocab() == slow.get_vocab()
        assert len(tok) == len(slow) == 50265 and tok.vocab_size == slow.vocab_size
    assert ours.added_tokens_decoder[50264].lstrip is True
    assert ours.model_input_names == tuple(slow.model_input_names)


def test_layout_methods(toks):
    ours, _, slow, fast = toks
    a, b = [100, 101, 102], [200, 201]
    for args in ((a,), (a, b), ([],), ([], [])):
        assert ours.build_inputs_with_special_tokens(*args) == slow.build_inputs_with_special_tokens(*args)
        assert ours.build_inputs_with_special_tokens(*args) == fast.build_inputs_with_special_tokens(*args)
        assert ours.get_special_tokens_mask(*args) == slow.get_special_tokens_mask(*args)
        assert ours.create_token_type_ids_from_sequences(*args) == slow.create_token_type_ids_from_sequences(*args)
    full = slow.build_inputs_with_special_tokens(a, b) + [50264, 1]
    assert ours.get_special_tokens_mask(full, already_has_special_tokens=True) == slow.get_special_tokens_mask(
        full, already_has_special_tokens=True
    )


def _check(encoding, ref, offsets: bool = False):
    assert encoding.input_ids == ref["input_ids"]
    assert encoding.attention_mask == ref["attention_mask"]
    assert encoding.special_tokens_mask == ref["special_tokens_mask"]
    assert encoding.token_type_ids is None and "token_type_ids" not in ref  # MVP takes none
    if offsets:
        assert encoding.offsets == [tuple(o) for o in ref["offset_mapping"]]


def test_pairs_match_references(toks, corpus):
    ours, _, slow, fast = toks
    texts = corpus[len(HARD_CASES) :: 25] + HARD_CASES
    for a, b in zip(texts, reversed(texts), strict=True):
        _check(ours.encode_plus(a, b), slow(a, b, return_special_tokens_mask=True))
        if b:  # the fast reference drops an empty second text (the slow one keeps it, as we do)
            ref = fast(a, b, return_special_tokens_mask=True, return_offsets_mapping=True)
            _check(ours.encode_plus(a, b, return_offsets=True), ref, offsets=True)
        plain = slow(a, b, add_special_tokens=False, return_special_tokens_mask=True)
        _check(ours.encode_plus(a, b, add_special_tokens=False), plain)


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_matches_references(toks, side):
    ours, ours_fast, slow, fast = toks
    long = "The quick brown fox jumps over the lazy dog, again and again and again. 😀 日本語"
    short = "Short pair text here."
    for tok in toks:
        tok.truncation_side = side
    try:
        for strategy in (True, "longest_first", "only_first", "only_second"):
            for max_length in (4, 5, 8, 11, 12, 20, 40, 100):
                for a, b in ((long, short), (short, long), (long, None), (short, short + " x")):
                    options = {"truncation": strategy, "max_length": max_length}
                    if strategy in ("only_first", "only_second") and max_length <= (4 if b else 2):
                        continue  # no room at all: the slow reference leaves it, the fast one empties both, we refuse
                    if strategy == "only_second" and b is None:  # nothing to cut: left as is (the fast one raises)
                        assert ours_fast.encode(a, b, **options) == slow.encode(a, b, **options)
                        continue
                    try:  # the references refuse to empty a sequence (the slow one logs and leaves it), as we do
                        expected = fast(a, b, **options, return_special_tokens_mask=True, return_offsets_mapping=True)
                    except Exception:
                        for tok in (ours, ours_fast):
                            with pytest.raises(TokenizerError):
                                tok.encode_plus(a, b, **options)
                        continue
                    _check(ours_fast.encode_plus(a, b, **options, return_offsets=True), expected, offsets=True)
                    _check(ours.encode_plus(a, b, **options), slow(a, b, **options, return_special_tokens_mask=True))
    finally:
        for tok in toks:
            tok.truncation_side = "right"


def test_pair_truncation_where_references_differ(toks):
    ours, ours_fast, slow, fast = toks
    # both texts cut, odd budget: the slow reference favours the first text, the fast one the longer
    a, b, options = "one two three", "four five six seven", {"truncation": True, "max_length": 9}
    assert ours.encode(a, b, **options) == slow.encode(a, b, **options) == [0, 1264, 80, 130, 2, 2, 10231, 292, 2]
    assert ours_fast.encode(a, b, **options) == fast.encode(a, b, **options) == [0, 1264, 80, 2, 2, 10231, 292, 411, 2]


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_matches_references(toks, side):
    ours, _, slow, fast = toks
    texts = ["Hello world!", "A much longer sentence, with more words in it. 😀", "", "<mask>"]
    for tok in (ours, slow, fast):
        tok.padding_side = side
    try:
        for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 24}):
            got = ours(texts, **kwargs, return_offsets=True)
            expected = fast(texts, **kwargs, return_special_tokens_mask=True, return_offsets_mapping=True)
            assert slow(texts, **kwargs)["input_ids"] == expected["input_ids"]
            for i, encoding in enumerate(got):
                _check(encoding, {k: v[i] for k, v in expected.items()}, offsets=True)
        got = ours.encode_plus("a", "b", padding="max_length", max_length=10)
        _check(got, slow("a", "b", padding="max_length", max_length=10, return_special_tokens_mask=True))
    finally:
        for tok in (ours, slow, fast):
            tok.padding_side = "right"


# --------------------------------------------------------------------------- decoding
def test_decode_matches_references(toks, corpus):
    ours, ours_fast, slow, fast = toks
    texts = corpus[::7]
    for a, b in zip(texts, reversed(texts), strict=True):
        ids = slow.encode(a, b)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == slow.decode(ids, skip_special_tokens=skip), a
            assert ours_fast.decode(ids, skip_special_tokens=skip) == fast.decode(ids, skip_special_tokens=skip), a
        if a.strip() == a and "<" not in a:
            assert ours.decode(ours.encode(a), skip_special_tokens=True) == a  # byte-level BPE is lossless
        tokens = slow.tokenize(a)
        assert ours.convert_tokens_to_string(tokens) == slow.convert_tokens_to_string(tokens)
    assert ours.decode(ids, clean_up_tokenization_spaces=True) == slow.decode(ids, clean_up_tokenization_spaces=True)
    assert ours.batch_decode([slow.encode(t) for t in texts[:20]]) == slow.batch_decode([slow.encode(t) for t in texts[:20]])
    # pieces that stop inside a character decode to U+FFFD (errors="replace")
    for ids in ([36, 17], [17], [6569], [6569, 9357], [18636], [18636, 7471], [0, 18636, 2]):
        assert ours.decode(ids) == slow.decode(ids) == fast.decode(ids), ids


def test_added_tokens(toks):
    vocab, merges = _files()
    pairs = [
        (MvpTokenizer(vocab, merges), transformers.MvpTokenizer(vocab, merges)),
        (MvpTokenizerFast(vocab, merges), transformers.MvpTokenizerFast(vocab, merges)),
    ]
    text = "x<new>y héllo wörld z <mask>"
    for ours, ref in pairs:
        assert ours.add_tokens(["<new>", "héllo wörld"]) == ref.add_tokens(["<new>", "héllo wörld"]) == 2
        ids = ref.encode(text)
        assert ours.encode(text) == ids and len(ours) == len(ref) == 50267
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)


def test_split_special_tokens(toks):
    vocab, merges = _files()
    ours = MvpTokenizer(vocab, merges, split_special_tokens=True)
    ref = transformers.MvpTokenizer(vocab, merges, split_special_tokens=True)
    for text in ("a <mask> b", "<s>x</s>"):
        assert ours.encode(text) == ref.encode(text)


def test_invalid_text_is_a_tokenizer_error(toks):
    with pytest.raises(TokenizerError, match="not valid Unicode"):
        toks[0].encode("lone \ud800 surrogate")


# ------------------------------------------------------------------------ save / load
def test_save_and_reload_both_ways(toks, tmp_path):
    ours, ours_fast, slow, fast = toks
    texts = HARD_CASES[:30]
    ours.save_pretrained(tmp_path / "ours")
    ours_fast.save_pretrained(tmp_path / "ours_fast")
    slow.save_pretrained(tmp_path / "slow")
    fast.save_pretrained(tmp_path / "fast")
    for name in ("vocab.json", "merges.txt"):  # byte for byte as the slow reference writes them
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "slow" / name).read_bytes(), name
    reloaded = [MvpTokenizer.from_pretrained(tmp_path / d) for d in ("ours", "slow", "fast")]
    reloaded += [AutoTokenizer.from_pretrained(tmp_path / "ours"), MvpTokenizerFast.from_pretrained(tmp_path / "ours_fast")]
    references = [
        transformers.MvpTokenizer.from_pretrained(tmp_path / "ours"),
        transformers.AutoTokenizer.from_pretrained(tmp_path / "ours_fast"),
    ]
    assert type(references[1]).__name__ == "MvpTokenizerFast"
    for tok in reloaded:
        assert tok.added_tokens_decoder[50264].lstrip is True
    for text in texts:
        expected = slow.encode(text, "second <mask> part")
        for tok in reloaded:
            assert tok.encode(text, "second <mask> part") == expected, (type(tok), text)
        for ref in references:
            assert ref.encode(text, "second <mask> part") == expected, (type(ref), text)


def test_builtin_checkpoint_directory():
    for name, digest in SHA256.items():
        assert hashlib.sha256((BUILTIN / name).read_bytes()).hexdigest() == digest, name
    assert (BUILTIN / "LICENSE.fairseq-MIT").is_file()
    tok = AutoTokenizer.from_pretrained(BUILTIN)
    assert type(tok) is MvpTokenizer and tok.model_max_length == 1024
    assert tok.encode("Hello world <mask>") == [0, 31414, 232, 50264, 2]
    ref = transformers.AutoTokenizer.from_pretrained(BUILTIN)
    config = transformers.AutoConfig.from_pretrained(BUILTIN)
    assert config.model_type == "mvp" and config.d_model == 1024 and config.vocab_size == 50267
    assert config.encoder_layers == config.decoder_layers == 12
    for text in HARD_CASES[:30]:
        assert tok.encode(text) == ref.encode(text), text


def test_no_torch_or_transformers_at_import():
    code = (
        "import sys\n"
        "from xcli_models.tokenization import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(BUILTIN)!r})\n"
        "assert t.encode('Hello world') == [0, 31414, 232, 2]\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
