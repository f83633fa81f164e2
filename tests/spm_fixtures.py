"""SentencePiece models for the tokenizer tests, built from the shared data.

The real XLM-R / xProphetNet SentencePiece model is not in the shared data, but its
piece list with scores is (BlingFire's export of it). ``build_xlmr_like_model``
rebuilds a unigram model of the same size and id order from that list, with the
normaliser of transformers' test model (nmt_nfkc, as XLM-R's). It is not
byte-identical to the real file (scores are rounded), but it exercises a 250k-piece
multilingual vocabulary through both our tokenizer and the oracle.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from conftest import shared_path

XLMR_DICT = ("tokenizers", "xlmr_xprophetnet_derived", "blingfire_xlm_roberta_base_pos.dict.utf8.zip")
SMALL_SPM = ("tokenizers", "hf_test_fixtures", "test_sentencepiece.model")


def read_blingfire_pieces(dict_zip: Path) -> list[tuple[str, float]]:
    """``(piece, score)`` in SentencePiece id order, from ids 3 on.

    Lines are ``piece<TAB>WORD_ID_k<TAB>score`` with k = model id + 1. The first three
    lines (BlingFire's own special tokens) and fairseq's ``<mask>`` are not model pieces.
    """
    with zipfile.ZipFile(dict_zip) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".utf8"))
        lines = archive.read(name).decode("utf-8").split("\n")
    pieces: list[tuple[str, float]] = []
    for line in lines:
        if not line:
            continue
        piece, word_id, score = line.split("\t")
        model_id = int(word_id.removeprefix("WORD_ID_")) - 1
        if model_id < 3 or piece == "<mask>":
            continue
        assert model_id == len(pieces) + 3, f"piece ids out of order at {line!r}"
        pieces.append((piece, float(score)))
    return pieces


def build_xlmr_like_model(dict_zip: Path, normalizer_model: Path, target: Path) -> Path:
    """Write a UNIGRAM SentencePiece model: ``<unk> <s> </s>`` then the listed pieces."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    source = model_pb2.ModelProto()
    source.ParseFromString(normalizer_model.read_bytes())
    model = model_pb2.ModelProto()
    model.normalizer_spec.CopyFrom(source.normalizer_spec)
    Piece = model_pb2.ModelProto.SentencePiece
    for piece, kind in (("<unk>", Piece.UNKNOWN), ("<s>", Piece.CONTROL), ("</s>", Piece.CONTROL)):
        model.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in read_blingfire_pieces(dict_zip):
        model.pieces.add(piece=piece, score=score, type=Piece.NORMAL)
    spec = model.trainer_spec
    spec.model_type = model_pb2.TrainerSpec.UNIGRAM
    spec.vocab_size = len(model.pieces)
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    target.write_bytes(model.SerializeToString())
    return target


@pytest.fixture(scope="session")
def xlmr_spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 250,000-piece XLM-R-like model, built once per session."""
    dict_zip = shared_path(*XLMR_DICT)
    normalizer = shared_path(*SMALL_SPM)
    target = tmp_path_factory.mktemp("xlmr_spm") / "sentencepiece.bpe.model"
    return build_xlmr_like_model(dict_zip, normalizer, target)


# ------------------------------------------------------------- test texts
#: Tatoeba languages the parity tests sample: many scripts, with and without spaces
TATOEBA_LANGUAGES = (
    "cmn", "yue", "jpn", "kor", "ara", "heb", "hin", "ben", "tam", "tha", "khm", "rus", "ukr",
    "ell", "deu", "fra", "spa", "por", "ita", "pol", "tur", "vie", "fin", "hun", "kat", "hye",
    "amh", "yid", "pes", "urd",
)

#: texts that tend to break tokenizers
HARD_TEXTS = (
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "a\tb\nc\r\nd",
    "  leading and trailing  ",
    "multiple   inner \t\t spaces",
    "I have 1,000,000 dollars, 2,5 apples and 3, 4,",
    "12,345,678, then 9,",
    "\uff11\uff0c\uff10\uff10\uff10 full-width digits",
    "\U0001f600 emoji \U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "e\u0301 combining, \u00f1, \u212b, \ufb01 ligature, \u00bd, \u00b2, \u2460",
    "\u4e2d\u6587\u5b57\u7b26\uff0c\u6807\u70b9\u3002\U00020000\uf900",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 123",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3",
    "\u0130stanbul \u0131 I \u00df \u1e9e",
    "\x00\x01\x07 control \x1b[31m red\x7f",
    "\ufffd replacement \ufeff bom",
    "\u200b zero width \u200d join \u00ad soft",
    "\u2028 line sep \u2029 para \x85 nel",
    "\xa0nbsp\u3000ideographic\u2009thin",
    "a <mask> b",
    "a<mask>b",
    "<mask>",
    " <mask> ",
    "<mask> <mask>",
    "<s>x</s>",
    "</s><s>",
    "<<mask>>",
    "<</s>",
    "<sep><cls>",
    "<pad> <unk>",
    "<eod> <eop>",
    "<MASK> <Mask>",
    "[SEP]",
    "[CLS] a [SEP] b [MASK] [PAD] [UNK]",
    "a[SEP]b",
    "[X_SEP] x [x_sep]",
    "<madeupword0> <madeupword6>",
    "[unused0] [unused9]",
    "``quoted'' text and ``more``",
    "'single' \"double\" \u201ccurly\u201d",
    "don't can't it's we're I'm they've",
    "U.S.A. e.g. i.e. ... \u2026",
    "x" * 120,
    "tokenization " * 400,
)


def tatoeba_sample(data: Path, per_language: int, languages=TATOEBA_LANGUAGES) -> list[str]:
    """Up to ``per_language`` lines of each language (spread over its file), English included once."""
    folder = data / "datasets" / "tatoeba"
    texts: list[str] = []
    for index, language in enumerate(languages):
        names = [f"tatoeba.{language}-eng.{language}"] + ([f"tatoeba.{language}-eng.eng"] if index == 0 else [])
        for name in names:
            file = folder / name
            if not file.exists():
                continue
            lines = file.read_text(encoding="utf-8").split("\n")
            lines = [line for line in lines if line]
            step = max(1, len(lines) // per_language)
            texts.extend(lines[::step][:per_language])
    return texts
