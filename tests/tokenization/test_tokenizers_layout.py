"""The special-token layout of every tokenizer (``Tokenizer.layout``): where the special tokens go
around one text and a pair, the special-tokens mask and the token type ids, against the reference
on the real vocabularies."""

from __future__ import annotations

import pytest

from conftest import shared_path
from xcli_models.tokenization.byte_bpe import MvpTokenizer
from xcli_models.tokenization.moses_bpe import XLMTokenizer
from xcli_models.tokenization.sentencepiece import XGLMTokenizer, XLMProphetNetTokenizer, XLNetTokenizer
from xcli_models.tokenization.wordpiece import ProphetNetTokenizer

#: our class, the reference's class name, its files under ../shared/data/tokenizers
CASES = [
    (MvpTokenizer, "MvpTokenizer", {"vocab_file": "roberta_bart_mvp/vocab.json", "merges_file": "roberta_bart_mvp/merges.txt"}),
    (XLMTokenizer, "XLMTokenizer", {"vocab_file": "xlm/enfr/xlm-mlm-enfr-1024.vocab.json",
                                    "merges_file": "xlm/enfr/codes_enfr"}),
    (XLNetTokenizer, "XLNetTokenizer", {"vocab_file": "xlnet/spiece.model"}),
    (XGLMTokenizer, "XGLMTokenizer", {"vocab_file": "hf_test_fixtures/test_sentencepiece.model"}),
    (XLMProphetNetTokenizer, "XLMProphetNetTokenizer", {"vocab_file": "hf_test_fixtures/test_sentencepiece.model"}),
    (ProphetNetTokenizer, "ProphetNetTokenizer", {"vocab_file": "prophetnet/ProphetNet_En_vocab.txt"}),
]
LAYOUT_METHODS = ("build_inputs_with_special_tokens", "get_special_tokens_mask", "create_token_type_ids_from_sequences")


@pytest.mark.parametrize(("ours", "reference_name", "files"), CASES, ids=[c[1] for c in CASES])
def test_layout_matches_the_reference(ours: type, reference_name: str, files: dict[str, str]) -> None:
    transformers = pytest.importorskip("transformers", reason="the reference is the oracle here")
    paths = {name: str(shared_path("tokenizers", *file.split("/"))) for name, file in files.items()}
    mine, theirs = ours(**paths), getattr(transformers, reference_name)(**paths)
    for ids_0, ids_1 in [([5, 6, 7], None), ([5, 6], [8, 9, 10]), ([], None), ([], []), ([9], [])]:
        for method in LAYOUT_METHODS:
            got, want = getattr(mine, method)(ids_0, ids_1), getattr(theirs, method)(ids_0, ids_1)
            assert got == want, (method, ids_0, ids_1)
        pair = ids_1 is not None
        assert mine.num_special_tokens_to_add(pair) == theirs.num_special_tokens_to_add(pair)
    ids = mine.build_inputs_with_special_tokens([5, 6], [8])
    assert mine.get_special_tokens_mask(ids, already_has_special_tokens=True) == theirs.get_special_tokens_mask(
        ids, already_has_special_tokens=True)
