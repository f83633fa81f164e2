"""Classify (xcli_models.tasks.classify) against the oracle's pipelines and models.

Sequence heads (XLM, XLNet, MVP) against the text-classification pipeline, singles and pairs,
every score function; token heads against the token-classification pipeline with every
aggregation (XLNet through the fast tokenizer the oracle builds from the checkpoint; XLM's slow
reference tokenizer has no offsets, so its offsets are checked against the text); multiple
choice against the oracle model: checkpoints the oracle wrote (``task_fixtures.build``; these
tests skip without it). What is xcli's own (refusals, truncation, alignment) runs on checkpoints
xcli wrote (``task_fixtures.native``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from compare import ATOL, transformers
from task_fixtures import LABELS, build, native, oracle_pipeline

from xcli_models.tasks.classify import (
    ChoicesMissing, SequenceClassifier, TokenClassifier, _fold, align_pieces, classifier_for, default_function,
)
from xcli_models.tasks.common import UnsupportedModel, load

pytestmark = pytest.mark.usefixtures("one_thread")

SENTIMENT = {0: "negative", 1: "positive", 2: "neutral"}
TEXTS = [
    "A gripping, beautifully shot film.",
    "Dull.",
    "I would not watch it again, even if somebody paid me to sit through all of it once more.",
    "It is what it is",
]
PAIRS = [None, "The film is good.", None, "Nobody liked it, except my sister who loves long films."]


def sequence_reference(pipe: Any, text: str, pair: str | None, **kwargs: Any) -> list[dict[str, Any]]:
    inputs = {"text": text, "text_pair": pair} if pair is not None else text
    out = pipe(inputs, top_k=None, **kwargs)
    return out[0] if out and isinstance(out[0], list) else out


def assert_sequence(mine: dict[str, Any], theirs: list[dict[str, Any]], top_k: int | None = None) -> None:
    assert mine["label"] == theirs[0]["label"]
    assert abs(mine["score"] - theirs[0]["score"]) <= ATOL
    shown = theirs if top_k is None else theirs[:top_k]
    assert list(mine["scores"]) == [t["label"] for t in shown]
    assert max(abs(mine["scores"][t["label"]] - t["score"]) for t in shown) <= ATOL


SEQUENCE_CASES = [
    ("xlm", "XLMForSequenceClassification", {}),
    ("xlnet", "XLNetForSequenceClassification", {}),  # use_mems_eval stays True: we batch anyway
    ("xlnet", "XLNetForSequenceClassification", dict(summary_type="first", n_head=1, d_model=16, d_inner=20)),
    ("mvp", "MvpForSequenceClassification", {}),
]


@pytest.mark.parametrize("family,class_name,extra", SEQUENCE_CASES, ids=lambda v: str(v)[:30])
def test_sequence_heads_match_pipeline(tmp_path: Path, family: str, class_name: str, extra: dict) -> None:
    ref_model, ref_tok, path = build(tmp_path / "ckpt", family, class_name, seed=5, id2label=SENTIMENT, **extra)
    pipe = oracle_pipeline("text-classification", ref_model, ref_tok)  # one text at a time
    task = load(path, device="cpu")
    for function in (None, "sigmoid", "none"):
        classifier = classifier_for(task.model, task.tokenizer, function=function, batch_size=3)
        ours = classifier(TEXTS, PAIRS)  # singles and pairs in the same batches
        kwargs = {} if function is None else {"function_to_apply": function}
        for text, pair, mine in zip(TEXTS, PAIRS, ours, strict=True):
            assert_sequence(mine, sequence_reference(pipe, text, pair, **kwargs))
    top = classifier_for(task.model, task.tokenizer, top_k=2)(TEXTS[:2])
    for text, mine in zip(TEXTS[:2], top, strict=True):
        assert_sequence(mine, sequence_reference(pipe, text, None), top_k=2)


def test_default_function_follows_the_config(tmp_path: Path) -> None:
    ref_model, ref_tok, path = build(tmp_path / "one", "xlnet", "XLNetForSequenceClassification", num_labels=1)
    task = load(path, device="cpu")
    classifier = classifier_for(task.model, task.tokenizer)
    assert classifier.function == "sigmoid"
    pipe = oracle_pipeline("text-classification", ref_model, ref_tok)
    for text, mine in zip(TEXTS, classifier(TEXTS), strict=True):
        assert_sequence(mine, sequence_reference(pipe, text, None))
    config = task.model.config
    config.problem_type = "regression"
    assert default_function(config) == "none"
    config.problem_type = "multi_label_classification"
    config.num_labels = 3
    assert default_function(config) == "sigmoid"
    config.problem_type = None
    assert default_function(config) == "softmax"


# ------------------------------------------------------------------------ tokens
NER_TEXTS = [
    "My name is Wolfgang and I live in Berlin.",
    "Hugging Face Inc. is a company based in New York City.",
    "Zürich, naïve café — don't!",
    "short",
]


def token_reference(pipe: Any, text: str, aggregation: str) -> list[dict[str, Any]]:
    return [
        {("entity" if k == "entity_group" else k): v for k, v in e.items()}
        for e in pipe(text, aggregation_strategy=aggregation)
    ]


def assert_entities(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], offsets: bool = True) -> None:
    assert len(mine) == len(theirs), (mine, theirs)
    for a, b in zip(mine, theirs, strict=True):
        keys = ["entity", "word", "index"] + (["start", "end"] if offsets else [])
        assert {k: a.get(k) for k in keys if k in b} == {k: b[k] for k in keys if k in b}
        assert abs(a["score"] - float(b["score"])) <= ATOL


@pytest.fixture(scope="module")
def xlnet_ner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return build(tmp_path_factory.mktemp("xlnet") / "ner", "xlnet", "XLNetForTokenClassification", seed=6,
                 id2label=LABELS)


@pytest.mark.parametrize("aggregation", ["none", "simple", "first", "average", "max"])
def test_xlnet_token_head_matches_pipeline(xlnet_ner: tuple[Any, Any, Path], aggregation: str) -> None:
    ref_model, _, path = xlnet_ner
    # the tokenizer the reference builds for the checkpoint: the fast one, which has offsets
    pipe = oracle_pipeline("token-classification", ref_model, transformers.AutoTokenizer.from_pretrained(path))
    task = load(path, device="cpu")
    ours = TokenClassifier(task.model, task.tokenizer, aggregation=aggregation, batch_size=3)(NER_TEXTS)
    for text, mine in zip(NER_TEXTS, ours, strict=True):
        with pytest.warns() if aggregation in ("first", "average", "max") else _nothing():
            theirs = token_reference(pipe, text, aggregation)
        assert_entities(mine["entities"], theirs)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


@pytest.fixture(scope="module")
def xlm_ner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return build(tmp_path_factory.mktemp("xlm") / "ner", "xlm", "XLMForTokenClassification", seed=7, id2label=LABELS)


@pytest.mark.parametrize("aggregation", ["none", "simple"])
def test_xlm_token_head_matches_pipeline(xlm_ner: tuple[Any, Any, Path], aggregation: str) -> None:
    ref_model, ref_tok, path = xlm_ner
    pipe = oracle_pipeline("token-classification", ref_model, ref_tok)
    task = load(path, device="cpu")
    ours = TokenClassifier(task.model, task.tokenizer, aggregation=aggregation, batch_size=3)(NER_TEXTS)
    for text, mine in zip(NER_TEXTS, ours, strict=True):
        theirs = token_reference(pipe, text, aggregation)
        assert all(t["start"] is None for t in theirs)  # the slow reference tokenizer has no offsets
        assert_entities(mine["entities"], theirs, offsets=False)
        for entity in mine["entities"]:  # ours point at the word in the text
            piece = _fold(text[entity["start"] : entity["end"]])
            shown = entity["word"].replace("</w>", "")
            assert piece.replace(" ", "").replace("—", "-") == shown.replace(" ", "")  # Moses writes "—" as "-"


@pytest.mark.parametrize("aggregation", ["first", "average", "max"])
def test_xlm_word_strategies_use_bpe_word_ends(xlm_ner: tuple[Any, Any, Path], aggregation: str) -> None:
    _, ref_tok, path = xlm_ner
    task = load(path, device="cpu")
    text = "Hugging Face Inc. is a company based in New York City."
    tokens = TokenClassifier(task.model, task.tokenizer, aggregation="none", ignore_labels=())([text])[0]["entities"]
    words = TokenClassifier(task.model, task.tokenizer, aggregation=aggregation, ignore_labels=())
    pre = words._pre_entities(words.prepare(text), [[0.2] * len(LABELS)] * 40)
    # a word ends at each piece that carries </w>: as many words as pieces with </w>
    assert sum(not p["is_subword"] for p in pre) == sum(t["word"].endswith("</w>") for t in tokens)
    grouped = words([text])[0]["entities"]
    assert grouped and all(_fold(text[e["start"] : e["end"]]).replace(" ", "") == e["word"].replace(" ", "")
                           for e in grouped)
    assert {(e["start"], e["end"]) for e in tokens} >= {(e["start"], e["end"]) for e in grouped
                                                          if " " not in e["word"] and len(e["word"]) < 3}


def test_align_pieces_folds_case_and_accents() -> None:
    class Folding:
        do_lower_case = True
        all_special_tokens = ["<s>"]

    text = "Zürich  CAFÉ, don't — «x»"
    pieces = ["zu", "rich</w>", "cafe</w>", ",</w>", "don</w>", "'t</w>", "-</w>", '"</w>', "x</w>", '"</w>', "?</w>"]
    spans = align_pieces(Folding(), text, pieces)
    assert [text[a:b] for a, b in spans] == ["Zü", "rich", "CAFÉ", ",", "don", "'t", "—", "«", "x", "»", ""]


# ----------------------------------------------------------------------- choices
@pytest.mark.parametrize("family,class_name", [("xlm", "XLMForMultipleChoice"), ("xlnet", "XLNetForMultipleChoice")])
def test_multiple_choice_matches_oracle_model(tmp_path: Path, family: str, class_name: str) -> None:
    ref_model, ref_tok, path = build(tmp_path / "mc", family, class_name, seed=8)
    task = load(path, device="cpu")
    records = [
        ("The cat sat on the", ["mat.", "moon, which was very far away.", "dog"]),
        ("Which is larger?", ["an elephant", "a mouse"]),
        ("Pick one", ["a", "b", "c", "d"]),
    ]
    classifier = classifier_for(task.model, task.tokenizer, batch_size=2)
    ours = classifier([t for t, _ in records], [c for _, c in records])
    for (text, choices), mine in zip(records, ours, strict=True):
        enc = ref_tok([text] * len(choices), choices, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = ref_model(**{k: v[None] for k, v in enc.items()}).logits[0]
        probs = logits.softmax(-1)
        assert mine["choice"] == int(probs.argmax())
        assert max(abs(a - b) for a, b in zip(mine["scores"], probs.tolist(), strict=True)) <= ATOL
    with pytest.raises(ChoicesMissing):
        classifier.prepare("text", [])
    with pytest.raises(ChoicesMissing):
        classifier.prepare("text", ["ok", 3])


def test_heads_that_do_not_classify(tmp_path: Path) -> None:
    path = native(tmp_path / "lm", "XLMWithLMHeadModel")[2]
    task = load(path, device="cpu")
    with pytest.raises(UnsupportedModel, match="XLMWithLMHeadModel"):
        classifier_for(task.model, task.tokenizer)
    with pytest.raises(ValueError, match="aggregation"):
        TokenClassifier(task.model, task.tokenizer, aggregation="mean")
    with pytest.raises(ValueError, match="function"):
        SequenceClassifier(task.model, task.tokenizer, function="tanh")


def test_long_texts_are_cut_to_the_model(tmp_path: Path) -> None:
    path = native(tmp_path / "short", "XLMForSequenceClassification", max_position_embeddings=16)[2]
    task = load(path, device="cpu")
    classifier = classifier_for(task.model, task.tokenizer)
    item = classifier.prepare("word " * 40)
    assert item.truncated and len(item.input_ids) == 16
    assert classifier.run([item])[0]["label"] in task.model.config.id2label.values()
