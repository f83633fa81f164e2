"""Fill-mask (xcli_models.tasks.fill_mask) against the oracle.

Tiny random checkpoints saved by transformers 4.56.2 carry the REAL tokenizers from
../shared/data (XLM en-fr BPE, XLNet spiece.model, the MVP/RoBERTa byte-level BPE), with
vocab_size set to the tokenizer's size. XLM and MVP are compared with the oracle's fill-mask
pipeline; XLNet (no reference pipeline) with the oracle model called with the same perm_mask and
target_mapping. The builders live in task_fixtures; the tests of what is xcli's own (refusals,
batching, the helpers) use checkpoints xcli wrote and run without the oracle.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from compare import ATOL, transformers
from task_fixtures import LANGS, assert_predictions, build, native, oracle_pipeline, per_blank

from xcli_models.tasks.common import UnsupportedModel, load
from xcli_models.tasks.fill_mask import FillMask, MaskMissing, TargetError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [
    "Paris is the <mask> of France.",
    "The <mask> sat on the <mask>, and the dog barked.",
    "Hello <mask>",
    "<mask> is a word at the start of a much longer sentence than the others.",
]


# --------------------------------------------------------------------------------- XLM
@pytest.fixture(scope="module")
def xlm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return build(tmp_path_factory.mktemp("xlm") / "ckpt", "xlm", "XLMWithLMHeadModel", seed=1)


@pytest.mark.parametrize("top_k", [1, 3])
def test_xlm_matches_pipeline(xlm: tuple[Any, Any, Path], top_k: int) -> None:
    ref_model, ref_tok, path = xlm
    pipe = oracle_pipeline("fill-mask", ref_model, ref_tok)
    task = load(path, device="cpu")
    texts = TEXTS + ["The model's own token <special1> works too."]
    fill = FillMask(task.model, task.tokenizer, top_k=top_k, batch_size=3)
    ours = fill(texts)
    for text, mine in zip(texts, ours, strict=True):
        theirs = per_blank(pipe(text.replace("<mask>", "<special1>"), top_k=top_k))
        assert len(mine) == len(theirs) == text.count("<mask>") + text.count("<special1>")
        for a, b in zip(mine, theirs, strict=True):
            assert_predictions(a, b)


def test_xlm_lang_sets_language_embeddings(xlm: tuple[Any, Any, Path]) -> None:
    ref_model, ref_tok, path = xlm
    task = load(path, device="cpu")
    text = "Paris est la <mask> de la France."
    mine = FillMask(task.model, task.tokenizer, top_k=4, lang="fr")([text])[0][0]
    ref_tok.lang = "fr"
    enc = ref_tok(text.replace("<mask>", "<special1>"), return_tensors="pt")
    with torch.no_grad():
        logits = ref_model(**enc, langs=torch.full_like(enc["input_ids"], LANGS["fr"])).logits
    at = int((enc["input_ids"][0] == ref_tok.mask_token_id).nonzero()[0, 0])
    values, indices = logits[0, at].softmax(-1).topk(4)
    assert [p["token_id"] for p in mine] == indices.tolist()
    assert max(abs(p["score"] - v) for p, v in zip(mine, values.tolist(), strict=True)) <= ATOL
    # without --lang the language embedding is left out, as the reference pipeline does
    english = FillMask(task.model, task.tokenizer, top_k=4)([text])[0][0]
    assert [p["token_id"] for p in english] != [p["token_id"] for p in mine]
    with pytest.raises(ValueError, match="not one of this model's languages"):
        FillMask(task.model, task.tokenizer, lang="xx")


def test_targets_as_the_reference(xlm: tuple[Any, Any, Path], caplog: pytest.LogCaptureFixture) -> None:
    ref_model, ref_tok, path = xlm
    pipe = oracle_pipeline("fill-mask", ref_model, ref_tok)
    task = load(path, device="cpu")
    text = "Paris is the <mask> of France."
    # vocabulary entries, and a word that is not one (its first piece is used, with a warning)
    targets = ["capital</w>", "city</w>", "the</w>", "Montmartre"]
    fill = FillMask(task.model, task.tokenizer, top_k=10, targets=targets)
    assert len(fill.warnings) == 1 and "Montmartre" in fill.warnings[0]
    with caplog.at_level(logging.WARNING):
        theirs = per_blank(pipe(text.replace("<mask>", "<special1>"), targets=targets, top_k=10))
    mine = fill([text])[0]
    assert len(mine[0]) == len(theirs[0]) == 4  # top_k is cut to the number of targets
    assert_predictions(sorted(mine[0], key=lambda p: -p["score"]), theirs[0])
    with pytest.raises(TargetError):
        FillMask(task.model, task.tokenizer, targets=["   "])


def test_missing_mask_and_wrong_heads(tmp_path: Path) -> None:
    path = native(tmp_path / "xlm", "XLMWithLMHeadModel")[2]
    task = load(path, device="cpu")
    fill = FillMask(task.model, task.tokenizer)
    with pytest.raises(MaskMissing, match="<mask> or <special1>"):
        fill.prepare("no blank here")
    other = native(tmp_path / "seq", "XLMForSequenceClassification")[2]
    with pytest.raises(UnsupportedModel, match="XLMForSequenceClassification"):
        load(other, device="cpu", accept=lambda name: name in ("XLMWithLMHeadModel",), what="fill-mask")
    seq = load(other, device="cpu")
    with pytest.raises(UnsupportedModel, match="masked-LM head"):
        FillMask(seq.model, seq.tokenizer)


@pytest.mark.parametrize("class_name", ["XGLMForCausalLM", "XLMProphetNetForConditionalGeneration"])
def test_families_without_masked_lm(tmp_path: Path, class_name: str) -> None:
    native(tmp_path, class_name)
    from xcli_models.auto import AutoModel

    model = AutoModel.from_pretrained(tmp_path)

    class Tok:
        mask_token = "<mask>"

    with pytest.raises(UnsupportedModel, match=f"masked-LM head.*{class_name}"):
        FillMask(model, Tok())


# --------------------------------------------------------------------------------- MVP
@pytest.fixture(scope="module")
def mvp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return build(tmp_path_factory.mktemp("mvp") / "ckpt", "mvp", "MvpForConditionalGeneration", seed=2)


def test_mvp_matches_pipeline(mvp: tuple[Any, Any, Path]) -> None:
    ref_model, ref_tok, path = mvp
    pipe = oracle_pipeline("fill-mask", ref_model, ref_tok)
    task = load(path, device="cpu")
    ours = FillMask(task.model, task.tokenizer, top_k=3, batch_size=4)(TEXTS)
    for text, mine in zip(TEXTS, ours, strict=True):
        theirs = per_blank(pipe(text, top_k=3))
        assert len(mine) == len(theirs) == text.count("<mask>")
        for a, b in zip(mine, theirs, strict=True):
            assert_predictions(a, b)


def test_mvp_single_blank_matches_the_fast_tokenizer_pipeline(mvp: tuple[Any, Any, Path]) -> None:
    ref_model, _, path = mvp
    pipe = oracle_pipeline("fill-mask", ref_model, transformers.AutoTokenizer.from_pretrained(path))
    task = load(path, device="cpu")
    texts = [t for t in TEXTS if t.count("<mask>") == 1]
    for text, mine in zip(texts, FillMask(task.model, task.tokenizer, top_k=2)(texts), strict=True):
        assert_predictions(mine[0], per_blank(pipe(text, top_k=2))[0])


def test_batching_does_not_change_results(tmp_path: Path) -> None:
    path = native(tmp_path / "mvp", "MvpForConditionalGeneration", 2, perturb=0.3)[2]
    task = load(path, device="cpu")
    one = FillMask(task.model, task.tokenizer, top_k=2, batch_size=1)(TEXTS)
    many = FillMask(task.model, task.tokenizer, top_k=2, batch_size=8)(TEXTS)
    assert len(one) == len(many) == len(TEXTS)
    for a, b in zip(one, many, strict=True):
        for x, y in zip(a, b, strict=True):
            assert [p["token_id"] for p in x] == [p["token_id"] for p in y]
            assert max(abs(p["score"] - q["score"]) for p, q in zip(x, y, strict=True)) <= ATOL


# ------------------------------------------------------------------------------- XLNet
def xlnet_oracle(model: Any, tokenizer: Any, text: str, top_k: int) -> list[tuple[list[float], list[int]]]:
    """The oracle model on one text: every blank hidden from all tokens, one target per blank."""
    enc = tokenizer(text, return_tensors="pt")
    ids = enc["input_ids"]
    t = ids.shape[1]
    blanks = (ids[0] == tokenizer.mask_token_id).nonzero()[:, 0]
    perm_mask = torch.zeros(1, t, t)
    perm_mask[0, :, blanks] = 1.0
    target_mapping = torch.zeros(1, len(blanks), t)
    target_mapping[0, torch.arange(len(blanks)), blanks] = 1.0
    with torch.no_grad():
        logits = model(**enc, perm_mask=perm_mask, target_mapping=target_mapping).logits
    values, indices = logits[0].softmax(-1).topk(top_k)
    return list(zip(values.tolist(), indices.tolist(), strict=True))


@pytest.mark.parametrize("seed", [3, 4])
def test_xlnet_matches_oracle_with_perm_mask(tmp_path: Path, seed: int) -> None:
    config = {} if seed == 3 else dict(n_head=1, d_model=16, d_inner=20, n_layer=3)
    ref_model, ref_tok, path = build(tmp_path / "xlnet", "xlnet", "XLNetLMHeadModel", seed=seed, **config)
    task = load(path, device="cpu")
    assert task.tokenizer.padding_side == "left"
    ours = FillMask(task.model, task.tokenizer, top_k=3, batch_size=4)(TEXTS)
    for text, mine in zip(TEXTS, ours, strict=True):
        theirs = xlnet_oracle(ref_model, ref_tok, text, 3)
        assert len(mine) == len(theirs) == text.count("<mask>")
        single = len(theirs) == 1
        ids = ref_tok(text)["input_ids"]
        blanks = [i for i, t in enumerate(ids) if t == ref_tok.mask_token_id]
        for predictions, (values, indices), blank in zip(mine, theirs, blanks, strict=True):
            assert [p["token_id"] for p in predictions] == indices
            assert max(abs(p["score"] - v) for p, v in zip(predictions, values, strict=True)) <= ATOL
            for p in predictions:
                filled = list(ids)
                filled[blank] = p["token_id"]
                assert p["sequence"] == ref_tok.decode(filled, skip_special_tokens=single)
                assert p["token"] == ref_tok.decode([p["token_id"]])


# ------------------------------------------------------------------- shared helpers
def test_common_batching_helpers() -> None:
    from xcli_models.tasks import common

    lengths = [3, 5, 1, 5, 2]
    assert common.length_batches(lengths, 2) == [[1, 3], [0, 4], [2]]
    assert common.length_batches(lengths, 2, groups=[0, 1, 0, 0, 1]) == [[1, 4], [3, 0], [2]]
    seen: list[list[str]] = []

    def run(batch: list[str]) -> list[str]:
        seen.append(batch)
        return [s.upper() for s in batch]

    assert common.map_by_length(["aaa", "b", "cc", "dddd"], run, 2, padded=True) == ["AAA", "B", "CC", "DDDD"]
    assert seen == [["dddd", "aaa"], ["cc", "b"]]
    seen.clear()  # by default only items of one length share a batch
    assert common.map_by_length(["aaa", "b", "cc", "dd", "x", "ee"], run, 2) == ["AAA", "B", "CC", "DD", "X", "EE"]
    assert seen == [["aaa"], ["cc", "dd"], ["ee"], ["b", "x"]]
    assert common.pad([[1, 2], [3]], 0, side="left").tolist() == [[1, 2], [0, 3]]
    assert common.pad([[1, 2], [3]], 9).tolist() == [[1, 2], [3, 9]]
    assert list(common.prefetched([1, 2, 3], lambda x: x * 2)) == [2, 4, 6]

    class Tok:
        pad_token_id = 5
        pad_token_type_id = 3
        padding_side = "left"
        model_input_names = ("input_ids", "token_type_ids", "attention_mask")

    batch = common.collate([{"input_ids": [7, 8], "token_type_ids": [0, 2]}, {"input_ids": [9], "token_type_ids": [2]}],
                           Tok())
    assert batch["input_ids"].tolist() == [[7, 8], [5, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1], [0, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 2], [3, 2]]
    assert common.collate([{"input_ids": [1]}], Tok(), side="right")["input_ids"].tolist() == [[1]]
