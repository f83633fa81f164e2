"""Every head with a loss trains (issue 13, deliverable 2), and against the oracle.

Tiny random checkpoints written by xcli with real tokenizers (see test_training). Each new head
learns a small synthetic task to (near) zero loss, and (where the reference is installed: tests of
their own, on the same training run) its checkpoint loads in the oracle with our logits: span and
beam-search QA (windows labelled as ``xcli qa`` cuts them, checked by hand on a long context),
multiple choice, multi-label and regression classifiers, causal LM on packed blocks, XLNet's
permutation LM, seq2seq (MVP, ProphetNet's n-gram loss), XLM masked LM with ``langs``. ``--tune
prompts`` changes only MVP's prompts and the result loads with them active; ``--freeze-base``
changes only the head; one optimizer step equals the oracle's AdamW with its linear schedule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from compare import ATOL, assert_close, reference
from task_fixtures import saved
from test_training import NO_DROPOUT, TEXTS, build, oracle_build
from xcli.app import app
from xcli_models.tasks.qa import QuestionAnswerer
from xcli_models.training import (
    IGNORE, ExampleError, TrainArgs, Trainer, TrainingError, load_for_training, task_for,
)

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

PLACES = ["Paris", "Rome", "Berlin", "Madrid", "Vienna", "Lisbon"]
ANIMALS = ["cat", "dog", "bird"]


def qa_record(animal: str, place: str) -> dict[str, Any]:
    context = f"The {animal} lives in {place} with friends."
    return {"question": f"Where does the {animal} live?", "context": context,
            "answers": {"text": [place], "answer_start": [context.index(place)]}}


QA_RECORDS = [qa_record(a, p) for a in ANIMALS for p in PLACES]
QA_HEADS = [
    ("xlnet", "XLNetForQuestionAnsweringSimple"),
    ("xlm", "XLMForQuestionAnsweringSimple"),
    ("mvp", "MvpForQuestionAnswering"),
    ("xlnet", "XLNetForQuestionAnswering"),
    ("xlm", "XLMForQuestionAnswering"),
]
BEAM_FIELDS = ["start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits"]
LABEL_KEYS = ("labels", "start_positions", "end_positions", "is_impossible")


def trained(tmp_path: Path, family: str, class_name: str, records: list[dict[str, Any]], args: TrainArgs,
            seed: int = 0, config: dict[str, Any] | None = None, dev: bool = True,
            **options: Any) -> tuple[Any, Any, Any, Path]:
    """Build a tiny oracle checkpoint, train it on ``records`` and save the result: (result, task, examples, out)."""
    _, path = build(tmp_path / "in", family, class_name, seed=seed, **{**NO_DROPOUT[family], **(config or {})})
    tune = options.pop("tune", "all")
    loaded = load_for_training(path, device="cpu", tune=tune, task=options.get("task"))
    task = task_for(loaded.model, loaded.tokenizer, **options)
    examples = task.finish([task.encode(r) for r in records])
    trainer = Trainer(loaded.model, task, args)
    result = trainer.train(examples, examples if dev else None)
    out = saved(loaded.model, loaded.tokenizer, tmp_path / "out")
    return result, task, examples, out


def inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k not in LABEL_KEYS}


@pytest.fixture(scope="module")
def once(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``once(name, *args, **kwargs)``: :func:`trained` run once a module for each name, so that a test
    of what a run learnt and a test of the oracle loading its checkpoint share the run."""
    runs: dict[str, tuple[Any, Any, Any, Path]] = {}

    def run(name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any, Any, Path]:
        if name not in runs:
            runs[name] = trained(tmp_path_factory.mktemp(name), *args, **kwargs)
        return runs[name]

    return run


def ours_and_oracle(out: Path, class_name: str) -> tuple[Any, Any]:
    """Our model and the oracle's, loaded from ``out``; skips the test without the oracle."""
    transformers = reference()
    ours = load_for_training(out, device="cpu").model.eval()
    oracle = getattr(transformers, class_name).from_pretrained(out).eval()
    return ours, oracle


def reloaded(out: Path, class_name: str) -> Any:
    """Our model loaded back from ``out``, checked complete and of ``class_name``."""
    loaded = load_for_training(out, device="cpu")
    assert type(loaded.model).__name__ == class_name and loaded.fresh == []
    return loaded.model.eval()


# ------------------------------------------------------------ question answering
def qa_run(once: Any, family: str, class_name: str) -> tuple[Any, Any, Any, Path]:
    args = TrainArgs(epochs=25, lr=5e-3, batch_size=6, weight_decay=0.0)
    return once(f"qa-{class_name}", family, class_name, QA_RECORDS, args)


@pytest.mark.parametrize("family,class_name", QA_HEADS, ids=[c for _, c in QA_HEADS])
def test_qa_heads_learn(once: Any, family: str, class_name: str) -> None:
    result, task, examples, out = qa_run(once, family, class_name)
    assert result.dev_loss < 0.05, result.dev_metrics
    assert result.dev_metrics["exact_match"] == 1.0 and result.dev_metrics["f1"] == 1.0
    reloaded(out, class_name)


@pytest.mark.parametrize("family,class_name", QA_HEADS, ids=[c for _, c in QA_HEADS])
def test_trained_qa_heads_load_in_the_oracle(once: Any, family: str, class_name: str) -> None:
    reference()
    _, task, examples, out = qa_run(once, family, class_name)
    ours, oracle = ours_and_oracle(out, class_name)
    batch = inputs(task.collate(examples[:5]))
    if class_name.endswith("Simple") or class_name.startswith("Mvp"):
        batch = {k: v for k, v in batch.items() if k not in ("p_mask", "cls_index")}
    with torch.no_grad():
        mine, theirs = ours(**batch), oracle(**batch)
    fields = BEAM_FIELDS if class_name in ("XLNetForQuestionAnswering", "XLMForQuestionAnswering") \
        else ["start_logits", "end_logits"]
    for name in fields:
        if name == "end_top_index":  # unlikely ends tie (within rounding): only the likely ones are ordered
            likely = theirs.end_top_log_probs > 0.01
            assert torch.equal(mine.end_top_index[likely], theirs.end_top_index[likely])
        else:
            assert_close(getattr(mine, name), getattr(theirs, name), what=name)


LONG_CONTEXT = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                "seventeen eighteen nineteen twenty")
LONG = {"question": "which number?", "context": LONG_CONTEXT,
        "answers": {"text": ["twelve thirteen"], "answer_start": [LONG_CONTEXT.index("twelve")]}}


def test_qa_windows_are_labelled_by_hand_on_a_long_context(tmp_path: Path) -> None:
    """XLNet: 16 tokens a window leave 10 for the context beside the 3 question tokens and
    <sep> <sep> <cls>; 3 shared tokens make windows start at context tokens 0, 7 and 14. The
    answer is tokens 11-12 ("▁twelve ▁thirteen"): only the second window holds it, at 4-5; the
    others point at <cls>, their last position."""
    _, path = build(tmp_path / "xlnet", "xlnet", "XLNetForQuestionAnsweringSimple")
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer, max_length=16, doc_stride=3)
    example = task.encode(LONG)
    tokens = [loaded.tokenizer.convert_ids_to_tokens(row["input_ids"]) for row in example.rows]
    assert [t[0] for t in tokens] == ["▁one", "▁eight", "▁fifteen"]
    assert example.labels == [[15, 15], [4, 5], [11, 11]]
    assert tokens[1][4:6] == ["▁twelve", "▁thirteen"]
    assert [t[-1] for t in tokens] == ["<cls>"] * 3 and [row["cls"] for row in example.rows] == [15, 15, 11]
    # the windows are the inference path's own
    answerer = QuestionAnswerer(loaded.model, loaded.tokenizer, task.qa.options)
    prepared = answerer.prepare(LONG["question"], LONG["context"])
    assert [w.input_ids for w in prepared.windows] == [row["input_ids"] for row in example.rows]
    # left padding (XLNet) moves the labels with the tokens
    batch = task.collate([example])
    ids = batch["input_ids"]
    assert ids[1, batch["start_positions"][1]] == example.rows[1]["input_ids"][4]
    assert ids[2, batch["start_positions"][2]] == loaded.tokenizer.cls_token_id
    assert batch["start_positions"].tolist() == [15, 4, 15] and batch["end_positions"].tolist() == [15, 5, 15]

    # XLM (SQuAD features, word by word): window i starts at context token 3 i; the answer is
    # tokens 12-14 ("twelve</w> thir teen</w>"); every window that holds all of it is labelled
    _, path = build(tmp_path / "xlm", "xlm", "XLMForQuestionAnswering")
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer, max_length=16, doc_stride=3)
    example = task.encode(LONG)
    assert example.labels == [[4, 4], [4, 4], [11, 13], [8, 10], [5, 7], [4, 4], [4, 4], [4, 4]]
    for row in example.rows:
        if row["start"] != row["cls"]:
            pieces = loaded.tokenizer.convert_ids_to_tokens(row["input_ids"][row["start"] : row["end"] + 1])
            assert pieces == ["twelve</w>", "thir", "teen</w>"]
    batch = task.collate([example])
    assert batch["is_impossible"].tolist() == [1, 1, 0, 0, 0, 1, 1, 1]
    assert batch["cls_index"].tolist() == [4] * 8
    assert batch["p_mask"][2].tolist() == [1, 1, 1, 1, 0] + [0] * 10 + [1]


def test_qa_records_without_answers_point_at_cls_and_bad_answers_are_refused(tmp_path: Path) -> None:
    _, path = build(tmp_path / "xlnet", "xlnet", "XLNetForQuestionAnswering")
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    none = task.encode({**QA_RECORDS[0], "answers": {"text": [], "answer_start": []}})
    assert all(row["start"] == row["end"] == row["cls"] for row in none.rows)
    assert task.collate([none])["is_impossible"].tolist() == [1.0]
    wrong = {**QA_RECORDS[0], "answers": {"text": ["Rome"], "answer_start": [3]}}
    with pytest.raises(ExampleError, match="not at answer_start 3") as caught:
        task.encode(wrong)
    assert caught.value.type == "answer_mismatch"
    for answers, kind in (([], "wrong_type"), ({"text": ["Paris"]}, "wrong_type"),
                          ({"text": ["Paris"], "answer_start": [1, 2]}, "length_mismatch")):
        with pytest.raises(ExampleError) as caught:
            task.encode({**QA_RECORDS[0], "answers": answers})
        assert caught.value.type == kind


# ------------------------------------------------------------ multiple choice
def mc_records() -> list[dict[str, Any]]:
    out = []
    for i, (animal, place) in enumerate((a, p) for a in ANIMALS for p in PLACES[:4]):
        choices = [animal, place] if i % 2 else [place, animal]
        out.append({"question": "Which one is an animal?", "choices": choices, "label": choices.index(animal)})
    out[0]["label"] = out[0]["choices"][out[0]["label"]]  # the right choice's text works too
    return out


CHOICE_HEADS = [("xlm", "XLMForMultipleChoice"), ("xlnet", "XLNetForMultipleChoice")]


def mc_run(once: Any, family: str, class_name: str) -> tuple[Any, Any, Any, Path]:
    args = TrainArgs(epochs=30, lr=5e-3, batch_size=4, weight_decay=0.0)
    return once(f"mc-{class_name}", family, class_name, mc_records(), args)


@pytest.mark.parametrize("family,class_name", CHOICE_HEADS)
def test_multiple_choice_learns(once: Any, family: str, class_name: str) -> None:
    result, task, examples, out = mc_run(once, family, class_name)
    assert result.dev_loss < 0.1 and result.dev_metrics["accuracy"] == 1.0
    ours = reloaded(out, class_name)
    batch = task.collate(examples[:4])
    assert batch["input_ids"].shape[:2] == (4, 2)
    with torch.no_grad():
        assert ours(**batch).logits.argmax(-1).tolist() == batch["labels"].tolist()


@pytest.mark.parametrize("family,class_name", CHOICE_HEADS)
def test_trained_multiple_choice_loads_in_the_oracle(once: Any, family: str, class_name: str) -> None:
    reference()
    _, task, examples, out = mc_run(once, family, class_name)
    ours, oracle = ours_and_oracle(out, class_name)
    batch = task.collate(examples[:4])
    with torch.no_grad():
        mine, theirs = ours(**batch), oracle(**batch)
    assert_close(mine.logits, theirs.logits)
    assert abs(float(mine.loss) - float(theirs.loss)) <= ATOL


# ------------------------------------------------- sequence classification kinds
def multi_label_run(once: Any) -> tuple[Any, Any, Any, Path]:
    words = ["red", "green", "blue"]
    records = [{"text": " and ".join(w for k, w in enumerate(words) if mask >> k & 1) + " things",
                "label": [w for k, w in enumerate(words) if mask >> k & 1]} for mask in range(1, 8)] * 2
    config = {"num_labels": 3, "problem_type": "multi_label_classification",
              "id2label": dict(enumerate(words)), "label2id": {w: i for i, w in enumerate(words)}}
    args = TrainArgs(epochs=60, lr=5e-3, batch_size=4, weight_decay=0.0)
    return once("multi", "xlm", "XLMForSequenceClassification", records, args, config=config)


def regression_run(once: Any) -> tuple[Any, Any, Any, Path]:
    sizes = ["tiny", "small", "big", "huge"]
    records = [{"text": f"a {s} {thing}", "label": float(i)} for i, s in enumerate(sizes)
               for thing in ("box", "house", "tree")]
    args = TrainArgs(epochs=40, lr=5e-3, batch_size=4, weight_decay=0.0)
    return once("reg", "xlnet", "XLNetForSequenceClassification", records, args, config={"num_labels": 1})


def test_multi_label_and_regression_learn(once: Any) -> None:
    result, _, _, out = multi_label_run(once)
    assert result.dev_metrics["macro_f1"] == 1.0 and result.dev_metrics["accuracy"] == 1.0
    assert result.dev_loss < 0.1
    assert reloaded(out, "XLMForSequenceClassification").config.problem_type == "multi_label_classification"

    result, _, _, out = regression_run(once)
    assert set(result.dev_metrics) == {"loss", "mse", "pearson", "spearman"}
    assert result.dev_metrics["mse"] == pytest.approx(result.dev_loss) and result.dev_loss < 0.05
    assert result.dev_metrics["pearson"] > 0.99 and result.dev_metrics["spearman"] > 0.95
    assert reloaded(out, "XLNetForSequenceClassification").config.num_labels == 1


def test_trained_multi_label_and_regression_load_in_the_oracle(once: Any) -> None:
    reference()
    _, task, examples, out = multi_label_run(once)
    ours, oracle = ours_and_oracle(out, "XLMForSequenceClassification")
    assert oracle.config.problem_type == "multi_label_classification"
    batch = task.collate(examples[:4])
    with torch.no_grad():
        assert_close(ours(**batch).logits, oracle(**inputs(batch)).logits)

    _, task, examples, out = regression_run(once)
    ours, oracle = ours_and_oracle(out, "XLNetForSequenceClassification")
    batch = task.collate(examples[:4])
    with torch.no_grad():
        assert_close(ours(**batch).logits, oracle(**inputs(batch)).logits)


# ------------------------------------------------------------ language models
def test_causal_lm_packs_texts_into_blocks(tmp_path: Path) -> None:
    _, path = build(tmp_path / "xglm", "xglm", "XGLMForCausalLM")
    loaded = load_for_training(path, device="cpu")
    tokenizer = loaded.tokenizer
    task = task_for(loaded.model, tokenizer, pack=8)
    eos = tokenizer.eos_token_id
    stream = [t for text in TEXTS for t in tokenizer.encode(text, add_special_tokens=False) + [eos]]
    blocks = task.finish([task.encode({"text": t}) for t in TEXTS])
    assert [b.input_ids for b in blocks] == [stream[k : k + 8] for k in range(0, len(stream) // 8 * 8, 8)]
    assert all(len(b) == 8 for b in blocks)
    with pytest.raises(TrainingError, match="doc-stride applies to question-answering, not causal-lm"):
        task_for(loaded.model, tokenizer, pack=8, task="causal-lm", doc_stride=3, plm_predict_ratio=None)
    short = task.finish([task.encode({"text": "birds sing"})])  # no full block: the one short block
    assert [b.input_ids for b in short] == [tokenizer.encode("birds sing", add_special_tokens=False) + [eos]]



def causal_run(once: Any) -> tuple[Any, Any, Any, Path]:
    args = TrainArgs(epochs=40, lr=3e-2, batch_size=1, weight_decay=0.0)
    return once("causal", "xglm", "XGLMForCausalLM", [{"text": t} for t in TEXTS], args, pack=8)


def test_causal_lm_learns_on_packed_blocks(once: Any) -> None:
    result, task, examples, out = causal_run(once)
    assert result.dev_loss < 0.1
    assert all(len(e) == 8 for e in examples)
    reloaded(out, "XGLMForCausalLM")


def test_trained_causal_lm_loads_in_the_oracle(once: Any) -> None:
    reference()
    _, task, examples, out = causal_run(once)
    ours, oracle = ours_and_oracle(out, "XGLMForCausalLM")
    batch = task.collate(examples[:3])
    with torch.no_grad():
        assert_close(ours(**batch).logits, oracle(**batch).logits)


def plm_batch(path: Path) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    """XLNet's permutation LM on TEXTS: (loaded, task, examples, a batch drawn with seed 1)."""
    loaded = load_for_training(path, task="plm", device="cpu")
    task = task_for(loaded.model, loaded.tokenizer, task="plm", plm_predict_ratio=0.25)
    examples = [task.encode({"text": t}) for t in TEXTS]
    return loaded, task, examples, task.collate(examples, torch.Generator().manual_seed(1))


def test_plm_batches_give_the_oracle_loss(tmp_path: Path) -> None:
    oracle, path = oracle_build(tmp_path / "xlnet", "xlnet", "XLNetLMHeadModel", **NO_DROPOUT["xlnet"])
    loaded, _, _, batch = plm_batch(path)
    with torch.no_grad():
        ours, theirs = loaded.model(**batch), oracle(**batch)
    assert abs(float(ours.loss) - float(theirs.loss)) <= ATOL
    assert_close(ours.logits, theirs.logits)


def plm_run(once: Any) -> tuple[Any, Any, Any, Path]:
    # one sentence, its tokens predicted in random orders: from ln(32000) = 10.4 to near zero
    records = [{"text": TEXTS[0]}] * 4
    args = TrainArgs(epochs=60, lr=1e-2, batch_size=1, weight_decay=0.0)
    return once("plm", "xlnet", "XLNetLMHeadModel", records, args, task="plm", plm_predict_ratio=0.3)


@pytest.mark.slow
def test_trained_plm_loads_in_the_oracle(once: Any) -> None:
    reference()
    _, task, examples, out = plm_run(once)
    ours, oracle = ours_and_oracle(out, "XLNetLMHeadModel")
    batch = task.collate(examples[:2], torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(ours(**batch).logits, oracle(**batch).logits)


@pytest.mark.slow
def test_plm_draws_seeded_factorisation_orders(tmp_path: Path, once: Any) -> None:
    _, path = build(tmp_path / "xlnet", "xlnet", "XLNetLMHeadModel", **NO_DROPOUT["xlnet"])
    loaded = load_for_training(path, task="plm", device="cpu")
    assert loaded.task == "plm" and type(loaded.model).__name__ == "XLNetLMHeadModel"
    task = task_for(loaded.model, loaded.tokenizer, task="plm", plm_predict_ratio=0.25)
    examples = [task.encode({"text": t}) for t in TEXTS]
    batch = task.collate(examples, torch.Generator().manual_seed(1))
    again = task.collate(examples, torch.Generator().manual_seed(1))
    other = task.collate(examples, torch.Generator().manual_seed(2))
    assert all(torch.equal(batch[k], again[k]) for k in ("perm_mask", "target_mapping", "labels"))
    assert not torch.equal(batch["perm_mask"], other["perm_mask"])
    special = set(loaded.tokenizer.all_special_ids)
    for row, example in enumerate(examples):
        ids = batch["input_ids"][row]
        pad = len(ids) - len(example.input_ids)  # XLNet pads on the left
        n = sum(1 for t in example.input_ids if t not in special)
        mapping = batch["target_mapping"][row]
        targets = [int(mapping[k].argmax()) for k in range(mapping.shape[0]) if mapping[k].any()]
        assert len(targets) == max(1, round(0.25 * n))
        assert all(int(ids[p]) not in special and p >= pad for p in targets)
        assert batch["labels"][row, : len(targets)].tolist() == [int(ids[p]) for p in targets]
        assert (batch["labels"][row, len(targets) :] == IGNORE).all()
        perm = batch["perm_mask"][row]
        others = [p for p in range(pad, len(ids)) if p not in targets]
        for r, p in enumerate(targets):  # in their factorisation order
            assert perm[:, p][others].eq(1).all()  # the context never sees a predicted token
            assert perm[p, p] == 1 and perm[p, targets[r:]].eq(1).all()  # nor itself and those after it
            assert perm[p, targets[:r]].eq(0).all() and perm[p, others].eq(0).all()  # but those before
    with torch.no_grad():
        assert torch.isfinite(loaded.model(**batch).loss)

    result, _, _, out = plm_run(once)
    assert result.dev_loss < 1.0
    reloaded(out, "XLNetLMHeadModel")


def xlm_langs_batch(path: Path) -> tuple[Any, dict[str, Any]]:
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer, lang="fr")
    return loaded, task.collate([task.encode({"text": t}) for t in TEXTS], torch.Generator().manual_seed(0))


def test_xlm_masked_lm_passes_langs(tmp_path: Path) -> None:
    _, path = build(tmp_path / "xlm", "xlm", "XLMWithLMHeadModel", **NO_DROPOUT["xlm"])
    loaded, batch = xlm_langs_batch(path)
    assert (batch["langs"] == 1).all()
    with torch.no_grad():
        french = loaded.model(**batch)
        english = loaded.model(**{**batch, "langs": torch.zeros_like(batch["langs"])})
    assert abs(float(english.loss) - float(french.loss)) > 1e-4  # the language embedding counts


def test_xlm_masked_lm_with_langs_gives_the_oracle_loss(tmp_path: Path) -> None:
    oracle, path = oracle_build(tmp_path / "xlm", "xlm", "XLMWithLMHeadModel", **NO_DROPOUT["xlm"])
    loaded, batch = xlm_langs_batch(path)
    with torch.no_grad():
        ours, theirs = loaded.model(**batch), oracle(**batch)
    assert abs(float(ours.loss) - float(theirs.loss)) <= ATOL


SEQ2SEQ = [
    pytest.param("mvp", "MvpForConditionalGeneration", {}, marks=pytest.mark.slow),
    ("xlm-prophetnet", "XLMProphetNetForConditionalGeneration", {"eps": 0.1}),
]
SEQ2SEQ_RECORDS = [{"text": t, "target": t.split()[-1]} for t in TEXTS]


@pytest.mark.parametrize("family,class_name,config", SEQ2SEQ)
def test_seq2seq_batches_give_the_models_own_loss(tmp_path: Path, family: str, class_name: str,
                                                  config: dict[str, Any]) -> None:
    oracle, path = oracle_build(tmp_path / "ref", family, class_name, seed=2, **{**NO_DROPOUT[family], **config})
    loaded = load_for_training(path, device="cpu")
    task = task_for(loaded.model, loaded.tokenizer)
    batch = task.collate([task.encode(r) for r in SEQ2SEQ_RECORDS])
    with torch.no_grad():  # ProphetNet: label smoothing (eps) and the n-gram streams' loss, from the model
        assert abs(float(loaded.model(**batch).loss) - float(oracle(**batch).loss)) <= ATOL


def seq2seq_run(once: Any, family: str, class_name: str) -> tuple[Any, Any, Any, Path]:
    # learning (without label smoothing, which keeps the loss above zero); MVP at this rate and batch
    # size is sensitive to the first draw: seed 1's run goes below 0.1 (0.05), seed 0's stalls at 0.3
    args = TrainArgs(epochs=100 if family == "mvp" else 40, lr=1e-2, batch_size=1, weight_decay=0.0)
    return once(f"s2s-{family}", family, class_name, SEQ2SEQ_RECORDS, args, seed=1 if family == "mvp" else 0)


@pytest.mark.parametrize("family,class_name,config", SEQ2SEQ)
def test_seq2seq_learns_with_the_models_own_loss(once: Any, family: str, class_name: str,
                                                 config: dict[str, Any]) -> None:
    result, _, _, out = seq2seq_run(once, family, class_name)
    assert result.dev_loss < 0.1
    reloaded(out, class_name)


@pytest.mark.parametrize("family,class_name,config", SEQ2SEQ)
def test_trained_seq2seq_loads_in_the_oracle(once: Any, family: str, class_name: str, config: dict[str, Any]) -> None:
    reference()
    _, task, examples, out = seq2seq_run(once, family, class_name)
    ours, oracle = ours_and_oracle(out, class_name)
    batch = task.collate(examples)
    with torch.no_grad():
        assert_close(ours(**batch).logits, oracle(**batch).logits)


# ------------------------------------------------------ which weights learn
def test_prompt_tuning_changes_only_the_prompts_and_loads_with_them(tmp_path: Path) -> None:
    _, path = build(tmp_path / "mvp", "mvp", "MvpForConditionalGeneration", **NO_DROPOUT["mvp"],
                    prompt_length=3, prompt_mid_dim=16)
    assert json.loads((path / "config.json").read_text())["use_prompt"] is False
    loaded = load_for_training(path, device="cpu", tune="prompts")
    assert loaded.model.config.use_prompt
    assert loaded.trainable and all("_attn_prompt." in name for name in loaded.trainable)
    assert loaded.fresh == loaded.trainable  # the checkpoint had no prompts: they start afresh
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    task = task_for(loaded.model, loaded.tokenizer)
    examples = [task.encode({"text": t, "target": t.split()[0]}) for t in TEXTS]
    trainer = Trainer(loaded.model, task, TrainArgs(epochs=30, lr=3e-2, batch_size=1))
    start = trainer.evaluate(examples).loss
    trainer.train(examples)
    # the prompts alone steer a frozen random model only a little: the loss falls, far from zero
    assert trainer.evaluate(examples).loss < start - 0.1
    after = loaded.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("_attn_prompt." in k for k in changed)
    assert {k for k in before if "_attn_prompt." in k and k.endswith("weight")} <= changed

    out = saved(loaded.model, loaded.tokenizer, tmp_path / "out")
    back = reloaded(out, "MvpForConditionalGeneration")
    assert back.config.use_prompt
    batch = task.collate(examples)
    with torch.no_grad():
        assert_close(loaded.model.eval()(**batch).logits, back(**batch).logits)
    prompts = {k: v for k, v in back.state_dict().items() if "_attn_prompt." in k}
    assert prompts and all(torch.equal(v, after[k]) for k, v in prompts.items())  # the trained prompts came back
    with pytest.raises(TrainingError, match="prompt tuning is MVP's"):
        load_for_training(build(tmp_path / "x", "xglm", "XGLMForCausalLM")[1], device="cpu", tune="prompts")


def test_a_prompt_tuned_checkpoint_loads_in_the_oracle_with_its_prompts(tmp_path: Path) -> None:
    transformers = reference()
    _, path = build(tmp_path / "mvp", "mvp", "MvpForConditionalGeneration", **NO_DROPOUT["mvp"],
                    prompt_length=3, prompt_mid_dim=16)
    loaded = load_for_training(path, device="cpu", tune="prompts")
    task = task_for(loaded.model, loaded.tokenizer)
    examples = [task.encode({"text": t, "target": t.split()[0]}) for t in TEXTS]
    Trainer(loaded.model, task, TrainArgs(epochs=2, lr=3e-2, batch_size=1)).train(examples)
    out = saved(loaded.model, loaded.tokenizer, tmp_path / "out")
    oracle = transformers.MvpForConditionalGeneration.from_pretrained(out).eval()
    assert oracle.config.use_prompt
    batch = task.collate(examples)
    with torch.no_grad():
        assert_close(loaded.model.eval()(**batch).logits, oracle(**batch).logits)


def test_freeze_base_changes_only_the_head(tmp_path: Path) -> None:
    _, path = build(tmp_path / "xlnet", "xlnet", "XLNetForSequenceClassification", num_labels=2,
                    **NO_DROPOUT["xlnet"])
    loaded = load_for_training(path, device="cpu", tune="head")
    model = loaded.model
    assert loaded.trainable and not any(name.startswith("transformer.") for name in loaded.trainable)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = task_for(model, loaded.tokenizer)
    records = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    Trainer(model, task, TrainArgs(epochs=3, lr=1e-2, batch_size=2)).train([task.encode(r) for r in records])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    head = {k for k in before if not k.startswith(model.base_model_prefix + ".")}
    assert changed and changed <= head
    assert {k for k in head if k.endswith("weight")} <= changed


def test_one_optimizer_step_equals_the_oracle(tmp_path: Path) -> None:
    """Same weights, batch, AdamW settings (betas, eps, weight decay off biases and norms,
    clipping) and linear schedule: the weights after one step agree within 1e-6."""
    transformers = reference()
    oracle, path = oracle_build(tmp_path / "xlnet", "xlnet", "XLNetForSequenceClassification", seed=5, num_labels=3,
                                **NO_DROPOUT["xlnet"])
    loaded = load_for_training(path, device="cpu")
    model = loaded.model
    task = task_for(model, loaded.tokenizer)
    examples = [task.encode({"text": t, "label": i % 3}) for i, t in enumerate(TEXTS)]
    args = TrainArgs(max_steps=1, lr=1e-3, batch_size=len(examples), weight_decay=0.1, adam_betas=(0.85, 0.99),
                     adam_eps=1e-7, max_grad_norm=0.5)
    trainer = Trainer(model, task, args)
    decayed = {id(p) for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    hf_decayed = {model.names.to_hf(n) for n, p in model.named_parameters() if id(p) in decayed}
    trainer.train(examples)

    oracle.train()
    params = dict(oracle.named_parameters())
    groups = [{"params": [p for n, p in params.items() if n in hf_decayed], "weight_decay": 0.1},
              {"params": [p for n, p in params.items() if n not in hf_decayed], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.85, 0.99), eps=1e-7)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=1)
    batch = task.collate(examples)
    oracle(**batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(oracle.parameters(), 0.5)
    optimizer.step()
    schedule.step()

    ours = {model.names.to_hf(n): p for n, p in model.named_parameters()}
    assert set(ours) == set(params)
    saved = load_file_tensors(path)  # the weights before the step
    moved = 0
    for name, theirs in params.items():
        assert (ours[name].detach() - theirs.detach()).abs().max() <= 1e-6, name
        moved += int(not torch.equal(theirs.detach(), saved[name]))
    assert moved > len(params) // 2
    assert trainer.optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 0.0


# ------------------------------------------------------------ the command line
def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def cli(*args: str) -> Any:
    return runner.invoke(app, ["train", *args, "--device", "cpu", "--threads", "1"])


def test_cli_trains_qa_and_names_bad_answers(tmp_path: Path) -> None:
    _, path = build(tmp_path / "m", "xlnet", "XLNetForQuestionAnswering", **NO_DROPOUT["xlnet"])
    bad = {**QA_RECORDS[1], "answers": {"text": ["Rome"], "answer_start": [0]}}
    data = write_jsonl(tmp_path / "train.jsonl", [QA_RECORDS[0], bad, *QA_RECORDS[2:]])
    dev = write_jsonl(tmp_path / "dev.jsonl", QA_RECORDS[:6])
    result = cli("-m", str(path), "--train", str(data), "--dev", str(dev), "-o", str(tmp_path / "out"),
                 "--epochs", "2", "--lr", "5e-3", "-b", "6", "--max-length", "24", "--doc-stride", "4")
    assert result.exit_code == 4, result.stderr
    assert "train.jsonl line 2: answer_mismatch" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["task"] == "question-answering" and summary["train_records"] == len(QA_RECORDS) - 1
    assert set(summary["dev_metrics"]) == {"loss", "exact_match", "f1"} and summary["metric_for_best"] == "f1"
    answered = runner.invoke(app, ["qa", "-m", str(tmp_path / "out"), "--device", "cpu", "--threads", "1"],
                             input=json.dumps({"question": QA_RECORDS[0]["question"],
                                               "context": QA_RECORDS[0]["context"]}) + "\n")
    assert answered.exit_code == 0, answered.stderr
    assert set(json.loads(answered.stdout)) >= {"answer", "score", "start", "end"}


def test_cli_options_of_the_new_heads(tmp_path: Path) -> None:
    xlnet_lm = build(tmp_path / "lm", "xlnet", "XLNetLMHeadModel")[1]
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in TEXTS])
    result = cli("-m", str(xlnet_lm), "--task", "plm", "--plm-predict-ratio", "0.3", "--train", str(texts),
                 "--dev", str(texts), "-o", str(tmp_path / "plm"), "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["task"] == "plm" and "perplexity" in summary["dev_metrics"]

    result = cli("-m", str(xlnet_lm), "--pack", "6", "--train", str(texts), "-o", str(tmp_path / "packed"),
                 "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    tokenizer = load_for_training(xlnet_lm, device="cpu").tokenizer
    tokens = sum(len(tokenizer.encode(t, add_special_tokens=False)) + 1 for t in TEXTS)
    assert json.loads(result.stdout)["train_records"] == tokens // 6  # blocks, not texts

    mc = build(tmp_path / "mc", "xlm", "XLMForMultipleChoice")[1]
    choices = write_jsonl(tmp_path / "mc.jsonl", mc_records())
    result = cli("-m", str(mc), "--train", str(choices), "--dev", str(choices), "-o", str(tmp_path / "mc-out"),
                 "--epochs", "1", "--freeze-base")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["task"] == "multiple-choice" and "accuracy" in summary["dev_metrics"]
    base = load_file_tensors(mc)
    trained_weights = load_file_tensors(tmp_path / "mc-out")
    assert all(torch.equal(base[k], trained_weights[k]) for k in base if k.startswith("transformer."))

    mvp = build(tmp_path / "mvp", "mvp", "MvpForConditionalGeneration")[1]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text": t, "target": t.split()[0]} for t in TEXTS])
    result = cli("-m", str(mvp), "--tune", "prompts", "--train", str(pairs), "-o", str(tmp_path / "prompted"),
                 "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "prompted" / "config.json").read_text())["use_prompt"] is True
    result = cli("-m", str(mvp), "--tune", "prompts", "--freeze-base", "--train", str(pairs),
                 "-o", str(tmp_path / "both"))
    assert result.exit_code == 2 and "pass one" in result.stderr
    result = cli("-m", str(mvp), "--pack", "8", "--train", str(pairs), "-o", str(tmp_path / "nopack"))
    assert result.exit_code == 2 and "pack applies to causal-lm" in result.stderr


def load_file_tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_qa_and_choice_heads_grow_from_a_base_checkpoint(tmp_path: Path) -> None:
    path = build(tmp_path / "xlnet", "xlnet", "XLNetModel")[1]
    grown = load_for_training(path, task="question-answering", device="cpu")
    # the span head, as the reference's AutoModelForQuestionAnswering picks for XLNet
    assert type(grown.model).__name__ == "XLNetForQuestionAnsweringSimple"
    assert grown.fresh == ["qa_outputs.weight", "qa_outputs.bias"]
    assert type(load_for_training(path, task="multiple-choice", device="cpu").model).__name__ == \
        "XLNetForMultipleChoice"
    with pytest.raises(TrainingError, match="no multiple-choice head"):
        load_for_training(build(tmp_path / "mvp", "mvp", "MvpModel")[1], task="multiple-choice", device="cpu")


def test_regression_metrics_equal_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    from xcli_models import metrics

    golds = [0.0, 1.0, 2.0, 2.0, 3.5, 5.0, 1.0]
    predictions = [0.2, 0.8, 2.5, 1.9, 3.0, 4.0, 1.0]
    squares = [(p - g) ** 2 for g, p in zip(golds, predictions, strict=True)]
    assert metrics.mse(golds, predictions) == pytest.approx(sum(squares) / 7)
    assert metrics.pearson(golds, predictions) == pytest.approx(stats.pearsonr(golds, predictions)[0])
    assert metrics.spearman(golds, predictions) == pytest.approx(stats.spearmanr(golds, predictions)[0])
    assert metrics.pearson([1.0, 1.0], [0.0, 2.0]) != metrics.pearson([1.0, 1.0], [0.0, 2.0])  # NaN: no spread
