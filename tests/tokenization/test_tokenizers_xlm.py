"""XLMTokenizer against the reference (transformers' XLMTokenizer) on the real en-fr and en-de vocabularies.

The reference's public ``tokenize`` always segments as English; for the other
languages the oracle is its own pipeline with the language passed to its
``_tokenize`` (what ``tokenize(text, lang=...)`` meant before the keyword was
dropped), which still runs its lower-casing and special-token splitting.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_path
from xcli_models.tokenization import AutoTokenizer, TokenizerError
from xcli_models.tokenization.moses_bpe import XLMTokenizer

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# the tokenizer options of xlm-mlm-enfr-1024 / xlm-mlm-ende-1024
ENFR = {"lang2id": {"en": 0, "fr": 1}, "id2lang": {0: "en", 1: "fr"}, "do_lowercase_and_remove_accent": True}
ENDE = {"lang2id": {"de": 0, "en": 1}, "id2lang": {0: "de", 1: "en"}, "do_lowercase_and_remove_accent": True}
# xlm-mlm-17-1280 / xlm-mlm-100-1280 keep case and accents
MULTI = {"lang2id": {"en": 0, "fr": 1, "ro": 2, "zh": 3}, "do_lowercase_and_remove_accent": False}

HARD_CASES = [
    "",
    " ",
    "   \t  ",
    "\n",
    "a\tb\nc\r\nd",
    "Hello World, Mr. Smith's café costs $3.50 (or €4,00)!",
    "ΟΔΟΣ ΣΑΣ σας İstanbul ǅemal ß",
    "e\u0301 a\u0300 n\u0303 \u0301",
    "😀 👩‍👩‍👧 🇫🇷 ✓",
    "日本語のテキスト。中文，句子！",
    "مرحبا بالعالم",
    "שלום עולם",
    "\x00\x07abc\u200b\u200e\ufeffdef\x7f",
    "“quoted” ‘single’ «guillemets» — dash – en … ellipsis",
    "１２３％ （括弧） 【b】 〈c〉 ～",
    "。 x．  y",
    "l'homme qu'il aujourd'hui, c'est-à-dire",
    "don't won't I'm y'all",
    "U.S.A. e.g. No. 5 p.m.",
    "http://example.com/a?b=c&d=e <b>bold</b> &amp;",
    "1,000,000.50 3-4 10:30 50%",
    "a <special1> b",
    "<s>x</s>",
    "<SPECIAL1> and <Special3>",
    "<special1><special1>  <pad> <unk>",
    "<special10> <special>",
    "</w> x</w>",
    "word " * 400,
]


def _files(pair: str) -> tuple[str, str]:
    vocab = shared_path("tokenizers", "xlm", pair, f"xlm-mlm-{pair}-1024.vocab.json")
    codes = shared_path("tokenizers", "xlm", pair, f"codes_{pair}")
    return str(vocab), str(codes)


def _pair(pair: str, options: dict) -> tuple[XLMTokenizer, object]:
    vocab, codes = _files(pair)
    ours = XLMTokenizer(vocab, codes, **options)
    ref = transformers.XLMTokenizer(vocab_file=vocab, merges_file=codes, **options)
    return ours, ref


def _lines(lang3: str, side: str, n: int, seed: int = 0) -> list[str]:
    path = shared_path("datasets", "tatoeba", f"tatoeba.{lang3}-eng.{side}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return random.Random(seed).sample(lines, min(n, len(lines)))


def _ref_tokenize(ref, text: str, **options) -> list[str]:
    """The reference pipeline (lower-casing, special tokens, segmentation) with ``options`` for its ``_tokenize``."""
    plain = ref._tokenize
    ref._tokenize = lambda part: plain(part, **options)
    try:
        return ref.tokenize(text)
    finally:
        del ref._tokenize


@pytest.fixture(scope="module")
def enfr():
    return _pair("enfr", ENFR)


@pytest.fixture(scope="module")
def ende():
    return _pair("ende", ENDE)


@pytest.fixture(scope="module")
def multi():
    return _pair("enfr", MULTI)


# --------------------------------------------------------------------------- tokens and ids
def test_default_language_matches_reference(enfr):
    ours, ref = enfr
    texts = HARD_CASES + _lines("fra", "eng", 250) + _lines("fra", "fra", 250)
    for text in texts:
        assert ours.tokenize(text) == ref.tokenize(text), text
        assert ours.encode(text) == ref.encode(text), text
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False), text


@pytest.mark.parametrize(
    ("vocab", "lang", "lang3", "side"),
    [
        ("enfr", "en", "fra", "eng"),
        ("enfr", "fr", "fra", "fra"),
        ("ende", "de", "deu", "deu"),
        ("ende", "en", "deu", "eng"),
        ("enfr", "ro", "ron", "ron"),  # Romanian: s/t-comma folding and diacritics stripped
    ],
)
def test_language_runs_match_reference(request, vocab, lang, lang3, side):
    ours, ref = request.getfixturevalue(vocab)
    texts = _lines(lang3, side, 200, seed=1) + HARD_CASES[:22]
    for text in texts:
        expected = _ref_tokenize(ref, text, lang=lang)
        assert ours.tokenize(text, lang=lang) == expected, text
    # the attribute route (what the CLI's --lang sets) gives the same ids as the keyword route
    ours.lang = lang
    try:
        for text in texts[:40]:
            assert ours.encode(text) == ref.convert_tokens_to_ids(
                [ref.bos_token, *_ref_tokenize(ref, text, lang=lang), ref.sep_token]
            ), text
    finally:
        ours.lang = "en"


def test_romanian_folding(enfr, multi):
    text = "Şi Ţara îşi ăsta ÂNCĂ Înșiși țară"
    for ours, ref in (enfr, multi):
        for lang in ("ro", "en"):
            assert ours.tokenize(text, lang=lang) == _ref_tokenize(ref, text, lang=lang)
    ours, _ = multi  # keeps accents: only Romanian folds them
    assert ours.tokenize("îşi", lang="ro") == ours.tokenize("isi", lang="ro") != ours.tokenize("îşi", lang="en")


def test_chinese_uses_jieba_like_reference(multi):
    pytest.importorskip("jieba")
    ours, ref = multi
    luxun = shared_path("text", "zh_luxun_a_q_zhengzhuan.txt").read_text(encoding="utf-8").splitlines()
    texts = _lines("cmn", "cmn", 150, seed=2) + [line for line in luxun[:40] if line.strip()][:10]
    texts += ["我們試試看！", "Hello 世界 ABC，１２３。", "<special1>中文<s>"]
    for text in texts:
        assert ours.tokenize(text, lang="zh") == _ref_tokenize(ref, text, lang="zh"), text


def test_case_kept_without_lowercasing(multi):
    ours, ref = multi
    for text in HARD_CASES + _lines("fra", "fra", 100, seed=3):
        assert ours.tokenize(text) == ref.tokenize(text), text
        assert ours.tokenize(text, lang="fr") == _ref_tokenize(ref, text, lang="fr"), text
    assert ours.tokenize("Paris") != ours.tokenize("paris")


def test_bypass_tokenizer(enfr, multi):
    for ours, ref in (enfr, multi):
        for text in ["Déjà  vu ,  pre-segmented text", "Mr. SMITH's", "a <special1> B", ""]:
            assert ours.tokenize(text, bypass_tokenizer=True) == _ref_tokenize(ref, text, bypass_tokenizer=True)


@pytest.mark.parametrize(("lang", "module", "package"), [("th", "pythainlp", "pythainlp"), ("ja", "Mykytea", "kytea")])
def test_missing_segmenter_is_a_clear_error(enfr, monkeypatch, lang, module, package):
    ours, _ = enfr
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    if module == "pythainlp":
        monkeypatch.setitem(sys.modules, "pythainlp.tokenize", None)
    with pytest.raises(TokenizerError, match=package):
        ours.tokenize("some text", lang=lang)


# ---------------------------------------------------------------------- special tokens
def test_special_tokens_match_reference(enfr):
    ours, ref = enfr
    assert ours.mask_token == ref.mask_token == "<special1>"
    assert ours.mask_token_id == ref.mask_token_id == 5
    for name in ("bos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token_id") == getattr(ref, f"{name}_token_id"), name
    assert ours.additional_special_tokens == ref.additional_special_tokens
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    assert ours.get_vocab() == ref.get_vocab()
    assert len(ours) == len(ref) and ours.vocab_size == ref.vocab_size == 64139
    assert ours.tokenize("<SPECIAL1>") == ["<special1>"]  # lower-cased first, then matched
    assert ours.convert_ids_to_tokens([0, 1, 5, 13]) == ref.convert_ids_to_tokens([0, 1, 5, 13])


def test_layout_methods(enfr):
    ours, ref = enfr
    a, b = [20, 21, 22], [30, 31]
    for args in ((a,), (a, b), ([],), ([], [])):
        assert ours.build_inputs_with_special_tokens(*args) == ref.build_inputs_with_special_tokens(*args)
        assert ours.get_special_tokens_mask(*args) == ref.get_special_tokens_mask(*args)
        assert ours.create_token_type_ids_from_sequences(*args) == ref.create_token_type_ids_from_sequences(*args)
    full = ref.build_inputs_with_special_tokens(a, b) + [5, 2]
    assert ours.get_special_tokens_mask(full, already_has_special_tokens=True) == ref.get_special_tokens_mask(
        full, already_has_special_tokens=True
    )


def _check_encoding(ours_enc, ref_enc):
    assert ours_enc.input_ids == ref_enc["input_ids"]
    assert ours_enc.attention_mask == ref_enc["attention_mask"]
    assert ours_enc.token_type_ids == ref_enc["token_type_ids"]
    assert ours_enc.special_tokens_mask == ref_enc["special_tokens_mask"]


def test_pairs_match_reference(enfr):
    ours, ref = enfr
    eng, fra = _lines("fra", "eng", 60, seed=4), _lines("fra", "fra", 60, seed=4)
    for a, b in [*zip(eng, fra, strict=True), ("", "x"), ("a <special1> b", "<s>")]:
        for special in (True, False):
            _check_encoding(
                ours.encode_plus(a, b, add_special_tokens=special),
                ref(a, b, add_special_tokens=special, return_special_tokens_mask=True),
            )


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_matches_reference(enfr, side):
    ours, ref = enfr
    long = "The quick brown fox jumps over the lazy dog, again and again and again, said Mr. Smith."
    short = "Bonjour à tous."
    ours.truncation_side = ref.truncation_side = side
    try:
        for strategy in (True, "longest_first", "only_first", "only_second"):
            for max_length in (7, 10, 16, 30, 64):
                for a, b in ((long, short), (short, long), (long, None)):
                    try:
                        expected = ref(a, b, truncation=strategy, max_length=max_length, return_special_tokens_mask=True)
                    except ValueError:
                        continue
                    ids_a = ref.encode(a, add_special_tokens=False)
                    ids_b = ref.encode(b, add_special_tokens=False) if b else []
                    over = len(ids_a) + len(ids_b) + (3 if b else 2) - max_length
                    if strategy == "only_first" and over > 0 and len(ids_a) <= over:
                        with pytest.raises(TokenizerError):  # the reference logs and returns it untruncated
                            ours.encode_plus(a, b, truncation=strategy, max_length=max_length)
                        continue
                    if strategy == "only_second" and b and over > 0 and len(ids_b) <= over:
                        with pytest.raises(TokenizerError):
                            ours.encode_plus(a, b, truncation=strategy, max_length=max_length)
                        continue
                    _check_encoding(ours.encode_plus(a, b, truncation=strategy, max_length=max_length), expected)
    finally:
        ours.truncation_side = ref.truncation_side = "right"


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_matches_reference(enfr, side):
    ours, ref = enfr
    texts = ["Hello world!", "A much longer sentence, with more words in it.", "", "<special1>"]
    ours.padding_side = ref.padding_side = side
    try:
        got = ours(texts, padding=True)
        expected = ref(texts, padding=True, return_special_tokens_mask=True)
        for i, encoding in enumerate(got):
            _check_encoding(encoding, {k: v[i] for k, v in expected.items()})
        got = ours(texts, padding="max_length", max_length=20)
        expected = ref(texts, padding="max_length", max_length=20, return_special_tokens_mask=True)
        for i, encoding in enumerate(got):
            _check_encoding(encoding, {k: v[i] for k, v in expected.items()})
        pair = ours.encode_plus("a", "b", padding="max_length", max_length=8)
        _check_encoding(pair, ref("a", "b", padding="max_length", max_length=8, return_special_tokens_mask=True))
    finally:
        ours.padding_side = ref.padding_side = "right"


# --------------------------------------------------------------------------- decoding
def test_decode_matches_reference(enfr):
    ours, ref = enfr
    texts = HARD_CASES + _lines("fra", "fra", 80, seed=5)
    for a, b in zip(texts, reversed(texts), strict=True):
        ids = ref.encode(a, b)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), a
        assert ours.decode(ids, clean_up_tokenization_spaces=True) == ref.decode(ids, clean_up_tokenization_spaces=True)
        tokens = ref.tokenize(a)
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens)
    batch = [ref.encode(t) for t in texts[:10]]
    assert ours.batch_decode(batch, skip_special_tokens=True) == ref.batch_decode(batch, skip_special_tokens=True)


# ------------------------------------------------------------------------ save / load
def test_save_and_reload_both_ways(enfr, tmp_path):
    ours, ref = enfr
    texts = HARD_CASES[:24] + _lines("fra", "fra", 30, seed=6)
    ours.save_pretrained(tmp_path / "ours")
    ref.save_pretrained(tmp_path / "ref")
    for name in ("vocab.json", "merges.txt"):  # the vocabulary files come out byte for byte as the reference's
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    reloaded = [
        XLMTokenizer.from_pretrained(tmp_path / "ours"),
        XLMTokenizer.from_pretrained(tmp_path / "ref"),
        AutoTokenizer.from_pretrained(tmp_path / "ours"),
    ]
    ref_reloaded = transformers.XLMTokenizer.from_pretrained(tmp_path / "ours")
    for tok in reloaded:
        assert isinstance(tok, XLMTokenizer)
        assert tok.lang2id == ENFR["lang2id"] and tok.id2lang == ENFR["id2lang"]
        assert tok.do_lowercase_and_remove_accent is True
        assert tok.all_special_tokens == ref.all_special_tokens
    assert ref_reloaded.lang2id == ENFR["lang2id"]
    for text in texts:
        expected = ref.encode(text, "Et la suite.")
        assert ref_reloaded.encode(text, "Et la suite.") == expected
        for tok in reloaded:
            assert tok.encode_plus(text, "Et la suite.").input_ids == expected, text


def test_checkpoint_directory_and_languages(tmp_path):
    vocab, codes = _files("enfr")
    (tmp_path / "vocab.json").write_bytes(Path(vocab).read_bytes())
    (tmp_path / "merges.txt").write_bytes(Path(codes).read_bytes())
    config = {"model_type": "xlm", "n_langs": 2, "lang2id": ENFR["lang2id"], "id2lang": {"0": "en", "1": "fr"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(tok, XLMTokenizer)
    assert tok.lang2id == {"en": 0, "fr": 1} and tok.id2lang == {0: "en", 1: "fr"}
    assert tok.lang_id("fr") == 1 and tok.lang_id() == 0
    with pytest.raises(TokenizerError, match="en, fr"):
        tok.lang_id("de")
    fr = XLMTokenizer.from_pretrained(tmp_path, lang="fr")
    assert fr.lang == "fr" and fr.lang_id() == 1


def test_no_torch_or_transformers_at_import():
    code = (
        "import sys\n"
        "from xcli_models.tokenization.moses_bpe import XLMTokenizer\n"
        f"t = XLMTokenizer(*{_files('enfr')!r})\n"
        "assert t.encode('Hello world')[0] == 0 and len(t.tokenize('Hello world')) >= 2\n"
        "bad = [m for m in ('torch', 'transformers', 'jieba') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _plain_bpe(symbols: list[str], ranks: dict) -> list[str]:
    """The textbook loop: merge every occurrence of the best-ranked pair, left to right, again."""
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                out.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


def test_long_words_merge_as_the_plain_loop_does() -> None:
    """Words past LONG_WORD symbols take the heap path: the same pieces, real en-fr merges."""
    import random

    from xcli_models.tokenization.moses_bpe import LONG_WORD, merge_by_rounds

    vocab, codes = _files("enfr")
    ranks = XLMTokenizer(vocab, codes).bpe_ranks
    rng = random.Random(0)
    words = ["the", "nation", "al", "ism", "trans", "port", "ation", "ing", "re", "con", "struct", "ed", "a", "é"]
    samples = ["a" * 300, "ab" * 150, "aab" * 90, "x" * 65, "zzzzzzzzzz" * 20]
    samples += ["".join(rng.choice(words) for _ in range(rng.randint(15, 60))) for _ in range(60)]
    samples += ["".join(rng.choice("aeiounrstl") for _ in range(rng.randint(LONG_WORD + 1, 400))) for _ in range(60)]
    for word in samples:
        symbols = [*word[:-1], word[-1] + "</w>"]
        assert merge_by_rounds(symbols, ranks) == _plain_bpe(symbols, ranks), word


def test_a_very_long_word_is_tokenized_quickly_enough_to_finish() -> None:
    """100,000 letters without a space: the plain loop needed hours; the pieces cover the word."""
    vocab, codes = _files("enfr")
    tokenizer = XLMTokenizer(vocab, codes)
    word = "antidisestablishmentarianism" * 3600
    pieces = tokenizer.bpe(word)
    assert "".join(p.replace("</w>", "") for p in pieces) == word
