"""English ProphetNet's WordPiece tokenizer against the reference library's.

Offsets have no ProphetNet fast tokenizer to compare with; BERT's fast tokenizer
over the same (BERT-uncased) vocabulary does the same basic tokenisation and serves
as the reference for them.
"""

from __future__ import annotations

import copy
import random
import unicodedata
from pathlib import Path

import pytest

from conftest import shared_path
from spm_fixtures import HARD_TEXTS, tatoeba_sample
from xcli_models.tokenization import AutoTokenizer
from xcli_models.tokenization.wordpiece import ProphetNetTokenizer

transformers = pytest.importorskip("transformers", reason="the oracle (transformers==4.56.2) is a test extra")
transformers.logging.set_verbosity_error()  # the oracle's truncation warnings

VOCAB = ("tokenizers", "prophetnet", "prophetnet-large-uncased.prophetnet.tokenizer")
BUILTIN = Path(__file__).resolve().parents[2] / "xcli_models" / "data" / "builtin" / "microsoft" / "prophetnet-large-uncased"

VARIANTS = {
    "default": {},
    "cased": {"do_lower_case": False},
    "lower-keep-accents": {"strip_accents": False},
    "cased-strip-accents": {"do_lower_case": False, "strip_accents": True},
    "no-cjk-split": {"tokenize_chinese_chars": False},
    "never-split": {"never_split": ["hello", "[foo]", "don't"]},
    "no-basic": {"do_basic_tokenize": False},
}

EXTRA_TEXTS = (
    "A long paragraph for summarization.",
    "UNwant\u00e9d,running [X_SEP] next sentence",
    "hello [foo] don't HELLO [FOO]",
    "e\u0301t\u00e9 caf\u00e9 na\u00efve \u00c5ngstr\u00f6m",
    "a" * 101 + " " + "b" * 100,
    "unaffable unwanted running runs ##ing",
)


@pytest.fixture(scope="module")
def vocab() -> str:
    return str(shared_path(*VOCAB))


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request: pytest.FixtureRequest, vocab: str):
    options = VARIANTS[request.param]
    return ProphetNetTokenizer(vocab, **options), transformers.ProphetNetTokenizer(vocab, **options), options


@pytest.fixture(scope="module")
def default_pair(vocab: str):
    return ProphetNetTokenizer(vocab), transformers.ProphetNetTokenizer(vocab)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    data = shared_path("datasets", "tatoeba").parents[1]
    english = [line for name in ("deu", "fra") for line in
               (data / "datasets" / "tatoeba" / f"tatoeba.{name}-eng.eng").read_text(encoding="utf-8").split("\n")[:600:2]]
    return list(HARD_TEXTS) + list(EXTRA_TEXTS) + english + tatoeba_sample(data, per_language=60)


def _mismatches(rows: list[tuple], limit: int = 5) -> str:
    return "\n".join(repr(r) for r in rows[:limit]) + f"\n... {len(rows)} mismatches"


def test_known_ids(default_pair) -> None:
    ours, _ = default_pair
    text = "A long paragraph for summarization."
    assert ours.tokenize(text) == ["a", "long", "paragraph", "for", "sum", "##mar", "##ization", "."]
    assert ours.encode(text) == [1037, 2146, 20423, 2005, 7680, 7849, 3989, 1012, 102]
    assert ours.x_sep_token == "[X_SEP]" and ours.x_sep_token_id == 2
    assert (ours.sep_token_id, ours.pad_token_id, ours.unk_token_id, ours.mask_token_id) == (102, 0, 100, 103)
    assert ours.bos_token is None and ours.cls_token is None


def test_pieces_and_ids_match_the_oracle(pair, corpus: list[str]) -> None:
    ours, ref, _ = pair
    bad = []
    for text in corpus:
        a, b = ours.tokenize(text), ref.tokenize(text)
        if a != b or ours.convert_tokens_to_ids(a) != ref.convert_tokens_to_ids(b):
            bad.append((text, a, b))
    assert not bad, _mismatches(bad)


def test_encodings_pairs_and_decoding(pair, corpus: list[str]) -> None:
    ours, ref, _ = pair
    texts = corpus[:: max(1, len(corpus) // 250)]
    bad = []
    for a, b in zip(texts, texts[1:] + [None], strict=True):
        mine = ours.encode_plus(a, b)
        theirs = ref(a, b, return_special_tokens_mask=True)
        if (mine.input_ids, mine.attention_mask, mine.special_tokens_mask) != (
            theirs["input_ids"], theirs["attention_mask"], theirs["special_tokens_mask"]
        ):
            bad.append((a, b, mine.input_ids, theirs["input_ids"]))
        assert ours.encode(a, b, add_special_tokens=False) == ref.encode(a, b, add_special_tokens=False)
        for options in ({}, {"skip_special_tokens": True}, {"clean_up_tokenization_spaces": False},
                        {"spaces_between_special_tokens": False}):
            if ours.decode(theirs["input_ids"], **options) != ref.decode(theirs["input_ids"], **options):
                bad.append((a, b, options, ours.decode(theirs["input_ids"], **options)))
    assert not bad, _mismatches(bad)


def test_special_token_layout_functions(default_pair) -> None:
    ours, ref = default_pair
    for ids_0, ids_1 in (([], None), ([5], None), ([5, 6, 7], None), ([], []), ([5], [6]), ([5, 6, 7], [8, 9])):
        assert ours.build_inputs_with_special_tokens(ids_0, ids_1) == ref.build_inputs_with_special_tokens(ids_0, ids_1)
        assert ours.get_special_tokens_mask(ids_0, ids_1) == ref.get_special_tokens_mask(ids_0, ids_1)
        assert ours.create_token_type_ids_from_sequences(ids_0, ids_1) == ref.create_token_type_ids_from_sequences(ids_0, ids_1)
    ids = ref.encode("a [MASK] b", "c [PAD]")
    assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == ref.get_special_tokens_mask(
        ids, already_has_special_tokens=True
    )
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    assert ours.vocab_size == ref.vocab_size and len(ours) == len(ref)
    assert ours.get_vocab() == ref.get_vocab()
    assert list(ours.model_input_names) == list(ref.model_input_names)


def test_decode_random_ids(default_pair) -> None:
    ours, ref = default_pair
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(ref.vocab_size) if rng.random() > 0.2 else rng.choice(ref.all_special_ids + [2])
               for _ in range(rng.randrange(1, 20))]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), ids
        tokens = ref.convert_ids_to_tokens(ids)
        assert ours.convert_ids_to_tokens(ids) == tokens
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens)


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_and_padding(default_pair, corpus: list[str], side: str) -> None:
    ours, ref = default_pair
    ours.truncation_side = ref.truncation_side = ours.padding_side = ref.padding_side = side
    try:
        texts = [t for t in corpus[::53] if len(t) > 20][:16]
        for a, b in zip(texts, texts[1:]):
            len_a, len_b = len(ref.tokenize(a)), len(ref.tokenize(b))
            for max_length in (2, 3, 6, 2 + (len_a + len_b) // 2, len_a + len_b + 5):
                for strategy in ("longest_first", "only_first", "only_second"):
                    remove = len_a + len_b + 2 - max_length
                    if strategy == "only_first" and remove >= len_a or strategy == "only_second" and remove >= len_b:
                        continue
                    kwargs = {"truncation": strategy, "max_length": max_length}
                    mine = ours.encode_plus(a, b, **kwargs)
                    theirs = ref(a, b, return_special_tokens_mask=True, **kwargs)
                    assert mine.input_ids == theirs["input_ids"], (a, b, kwargs)
                    assert mine.special_tokens_mask == theirs["special_tokens_mask"], (a, b, kwargs)
        for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 50}):
            mine = ours(texts, **kwargs)
            theirs = ref(texts, return_special_tokens_mask=True, **kwargs)
            for name in ("input_ids", "attention_mask", "special_tokens_mask"):
                assert [getattr(e, name) for e in mine] == theirs[name], (kwargs, name)
    finally:
        ours.truncation_side = ref.truncation_side = ours.padding_side = ref.padding_side = "right"


def _bert_comparable(text: str) -> bool:
    # BERT's fast normaliser does not compose (NFC) before stripping accents
    return unicodedata.is_normalized("NFC", text)


def test_offsets_match_bert_fast(default_pair, corpus: list[str], vocab: str) -> None:
    ours, _ = default_pair
    bert = transformers.BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
    compared = 0
    bad = []
    for text in corpus:
        pieces, offsets = ours.tokenize_with_offsets(text)
        if pieces != ours.tokenize(text) or len(offsets) != len(pieces) or any(
            not 0 <= a < b <= len(text) for a, b in offsets
        ):
            bad.append(("pieces", text, pieces))
            continue
        if not _bert_comparable(text):
            continue
        theirs = bert(text, add_special_tokens=False, return_offsets_mapping=True)
        if theirs["input_ids"] != ours.convert_tokens_to_ids(pieces):
            continue
        compared += 1
        if [tuple(o) for o in theirs["offset_mapping"]] != offsets:
            bad.append((text, offsets, theirs["offset_mapping"]))
    assert compared > 1000
    assert not bad, _mismatches(bad)


def test_offsets_examples(default_pair) -> None:
    ours, _ = default_pair
    text = "Hello,  UNwant\u00e9d [SEP] e\u0301t\u00e9 \u4e2d\u6587 unaffable"
    pieces, offsets = ours.tokenize_with_offsets(text)
    assert [(p, text[a:b]) for p, (a, b) in zip(pieces, offsets, strict=True)] == [
        ("hello", "Hello"), (",", ","), ("unwanted", "UNwant\u00e9d"), ("[SEP]", "[SEP]"), ("et", "e\u0301t"),
        ("##e", "\u00e9"), ("\u4e2d", "\u4e2d"), ("\u6587", "\u6587"), ("una", "una"), ("##ffa", "ffa"), ("##ble", "ble"),
    ]
    encoding = ours.encode_plus("a b", "c", return_offsets=True)
    assert encoding.offsets == [(0, 1), (2, 3), (0, 0), (0, 1), (0, 0)]


def test_options_variants_survive_saving(pair, tmp_path: Path) -> None:
    ours, ref, options = pair
    ours.save_pretrained(tmp_path / "ours")
    ref.save_pretrained(tmp_path / "ref")
    text = "Hello [foo] don't W\u00f6rld \u4e2d\u6587 [SEP] [X_SEP] x"
    for where, tokenizer in {
        "ours<-ours": ProphetNetTokenizer.from_pretrained(tmp_path / "ours"),
        "ref<-ours": transformers.ProphetNetTokenizer.from_pretrained(tmp_path / "ours"),
        "ours<-ref": ProphetNetTokenizer.from_pretrained(tmp_path / "ref"),
        "auto<-ref": AutoTokenizer.from_pretrained(tmp_path / "ref"),
    }.items():
        assert tokenizer.encode(text) == ref.encode(text), where
        assert tokenizer.decode(ref.encode(text)) == ref.decode(ref.encode(text)), where
    assert (tmp_path / "ours" / "prophetnet.tokenizer").read_bytes() == (tmp_path / "ref" / "prophetnet.tokenizer").read_bytes()


def test_added_tokens(default_pair) -> None:
    ours, ref = copy.deepcopy(default_pair[0]), copy.deepcopy(default_pair[1])
    assert ours.add_tokens(["newword", "[new]"]) == ref.add_tokens(["newword", "[new]"])
    for text in ("a newword b[new]c", "NEWWORD [new] [SEP]"):
        assert ours.tokenize(text) == ref.tokenize(text)
        assert ours.encode(text) == ref.encode(text)
        assert ours.decode(ref.encode(text)) == ref.decode(ref.encode(text))


def test_builtin_prophetnet_large_uncased(default_pair) -> None:
    _, ref = default_pair
    tokenizer = AutoTokenizer.from_pretrained(BUILTIN)
    assert isinstance(tokenizer, ProphetNetTokenizer)
    assert tokenizer.model_max_length == 512
    assert (BUILTIN / "LICENSE").exists()
    text = "The [MASK] sat on the mat. [X_SEP] It was Caf\u00e9 time."
    assert tokenizer.encode(text) == ref.encode(text)
    assert transformers.AutoTokenizer.from_pretrained(BUILTIN).encode(text) == ref.encode(text)
    config = transformers.AutoConfig.from_pretrained(BUILTIN)
    assert (config.model_type, config.vocab_size, config.hidden_size, config.ngram) == ("prophetnet", 30522, 1024, 2)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (12, 12)
