"""xcli_models.training: tasks, the training loop and the checkpoint it writes.

Tiny random checkpoints written by xcli's own classes (:func:`build`, the factory the training
tests share) carry real tokenizers (XLNet spiece.model, the MVP byte-level BPE, XLM en-fr BPE, the
small SentencePiece test model for XGLM and XLM-ProphetNet). Checked here: training lowers the loss
and fits a small separable set; causal models never see the token they predict; accumulated
gradients equal one big batch's; fresh heads; the masking; the schedule; weight decay groups.
Against the oracle (transformers 4.56.2, skipped without it; checkpoints of :func:`oracle_build`):
the batches the tasks build give the oracle's own losses; word labels sit on first pieces exactly
as the reference aligns them; the trained checkpoint loads in the oracle with the same logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from compare import ATOL, assert_close, reference
from conftest import shared_path
from task_fixtures import native, native_family, saved

from xcli_models.training import (
    IGNORE, CheckpointDir, Event, ExampleError, TrainArgs, Trainer, TrainingError, load_for_training, task_for,
)

LANGS = {"en": 0, "fr": 1}
#: tiny sizes, odd head counts; NO_DROPOUT makes training steps deterministic functions of the batch
SIZES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "xlnet": ("XLNetConfig", dict(d_model=24, n_layer=2, n_head=3, d_inner=32),
              dict(dropout=0.0, summary_last_dropout=0.0)),
    "mvp": ("MvpConfig", dict(d_model=24, encoder_layers=1, decoder_layers=1, encoder_attention_heads=3,
                              decoder_attention_heads=3, encoder_ffn_dim=32, decoder_ffn_dim=32,
                              max_position_embeddings=64),
            dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, classifier_dropout=0.0)),
    "xlm": ("XLMConfig", dict(emb_dim=24, n_layers=2, n_heads=3, max_position_embeddings=64, n_langs=2,
                              lang2id=LANGS, id2lang={v: k for k, v in LANGS.items()}),
            dict(dropout=0.0, attention_dropout=0.0, summary_first_dropout=0.0)),
    "xglm": ("XGLMConfig", dict(d_model=24, num_layers=2, attention_heads=3, ffn_dim=32, max_position_embeddings=64),
             dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)),
    "xlm-prophetnet": ("XLMProphetNetConfig", dict(hidden_size=24, num_encoder_layers=1, num_decoder_layers=1,
                                                   num_encoder_attention_heads=3, num_decoder_attention_heads=3,
                                                   encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                                                   ngram=2),
                       dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)),
}
NO_DROPOUT = {family: sizes[2] for family, sizes in SIZES.items()}

POSITIVE = ["good great film", "wonderful and great", "a lovely movie", "great acting, good plot", "so good",
            "lovely", "a great day", "good fun"]
NEGATIVE = ["bad awful film", "terrible and boring", "a dreadful movie", "awful acting, bad plot", "so bad",
            "boring", "an awful day", "bad taste"]
SENTIMENT = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
TEXTS = ["the cat sat on the mat", "a dog ran in the park today", "birds sing", "we like the warm sun very much"]


pytestmark = pytest.mark.usefixtures("one_thread")


def build(directory: Path, family: str, class_name: str, seed: int = 0, **config: Any) -> tuple[Any, Path]:
    """A random xcli model of :data:`SIZES` with the family's real tokenizer, written by xcli's own
    ``save_pretrained`` to ``directory``; (model, directory)."""
    assert native_family(class_name) == family, (family, class_name)
    model, _, path = native(directory, class_name, seed, sizes=SIZES[family][1], **config)
    return model, path


def oracle_tokenizer(family: str) -> Any:
    """The oracle's slow tokenizer of a family, from the real files in ../shared/data."""
    transformers = reference()
    tokenizers = shared_path("tokenizers")
    if family == "xlnet":
        return transformers.XLNetTokenizer(str(tokenizers / "xlnet" / "spiece.model"))
    if family == "mvp":
        return transformers.MvpTokenizer(str(tokenizers / "roberta_bart_mvp" / "vocab.json"),
                                         str(tokenizers / "roberta_bart_mvp" / "merges.txt"))
    if family == "xlm":
        return transformers.XLMTokenizer(str(tokenizers / "xlm" / "enfr" / "xlm-mlm-enfr-1024.vocab.json"),
                                         str(tokenizers / "xlm" / "enfr" / "codes_enfr"),
                                         lang2id=LANGS, id2lang={v: k for k, v in LANGS.items()})
    small = str(tokenizers / "hf_test_fixtures" / "test_sentencepiece.model")
    if family == "xglm":
        return transformers.XGLMTokenizer(small)
    return transformers.XLMProphetNetTokenizer(small)


def oracle_build(directory: Path, family: str, class_name: str, seed: int = 0, **config: Any) -> tuple[Any, Path]:
    """As :func:`build`, by the oracle (skips without it); (the oracle's model, directory)."""
    transformers = reference()
    tokenizer = oracle_tokenizer(family)
    config_name, sizes, _ = SIZES[family]
    cfg = getattr(transformers, config_name)(vocab_size=len(tokenizer), **{**sizes, **config})
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(cfg).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, directory


def loaded(path: Path, **options: Any) -> tuple[Any, Any]:
    """Our model and its task, loaded for training on the CPU."""
    result = load_for_training(path, device="cpu", **options)
    return result.model, task_for(result.model, result.tokenizer)


# ------------------------------------------------------------------ learning
def test_sequence_classifier_learns_and_saves_the_best(tmp_path: Path) -> None:
    _, path = build(tmp_path / "base", "xlnet", "XLNetModel", seed=1)
    result = load_for_training(path, labels=["neg", "pos"], device="cpu")
    assert type(result.model).__name__ == "XLNetForSequenceClassification"
    assert any(name.startswith("logits_proj") for name in result.fresh)
    task = task_for(result.model, result.tokenizer)
    examples = [task.encode(r) for r in SENTIMENT]
    events: list[Event] = []
    trainer = Trainer(result.model, task, TrainArgs(epochs=10, lr=1e-2, batch_size=4, save="best", eval_every=10),
                      callback=events.append)
    before = trainer.evaluate(examples)
    out = tmp_path / "trained"
    checkpoint = CheckpointDir(out)
    saves: list[int] = []
    summary = trainer.train(examples, examples, save=lambda step: (saves.append(step),
                                                                   checkpoint.save(result.model, result.tokenizer)))
    checkpoint.commit()

    assert summary.steps == 40 and summary.epochs == 10
    assert summary.dev_loss < before.loss / 3
    assert summary.dev_accuracy == 1.0
    assert summary.best_step == saves[-1] == summary.saved_step
    assert [e.step for e in events if e.kind == "eval"] == [10, 20, 30, 40]
    assert [e.kind for e in events][0] == "start" and events[-1].kind == "end"

    # the saved checkpoint is the best one: it is complete, and as good as the run said
    best = load_for_training(out, labels=["neg", "pos"], device="cpu")
    assert best.fresh == [] and best.model.config.id2label == {0: "neg", 1: "pos"}
    best_task = task_for(best.model, best.tokenizer)
    reloaded = Trainer(best.model, best_task, TrainArgs(batch_size=4)).evaluate(examples)
    assert reloaded.accuracy == 1.0 and abs(reloaded.loss - summary.best_dev_loss) <= 1e-4
    assert best_task.encode(SENTIMENT[3]).input_ids == examples[3].input_ids


def test_a_trained_checkpoint_loads_in_the_oracle(tmp_path: Path) -> None:
    transformers = reference()
    _, path = build(tmp_path / "base", "xlnet", "XLNetModel", seed=1)
    result = load_for_training(path, labels=["neg", "pos"], device="cpu")
    task = task_for(result.model, result.tokenizer)
    examples = [task.encode(r) for r in SENTIMENT]
    Trainer(result.model, task, TrainArgs(epochs=1, lr=1e-2, batch_size=4)).train(examples)
    out = saved(result.model, result.tokenizer, tmp_path / "trained")

    reference_model = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert reference_model.config.id2label == {0: "neg", 1: "pos"}
    batch = task.collate(examples[:5])
    with torch.no_grad():
        ours = load_for_training(out, device="cpu").model(**batch).logits
        theirs = reference_model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert_close(ours, theirs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("great acting, good plot").input_ids == examples[3].input_ids


def test_token_classifier_learns(tmp_path: Path) -> None:
    _, path = build(tmp_path / "ner", "xlm", "XLMForTokenClassification", num_labels=3,
                    id2label={0: "O", 1: "ANIMAL", 2: "PLACE"})
    model, task = loaded(path)
    animals, places = ["cat", "dog", "bird", "horse"], ["park", "garden", "house", "street"]
    records = [
        {"tokens": ["the", a, "is", "in", "the", p], "labels": ["O", "ANIMAL", "O", "O", "O", "PLACE"]}
        for a in animals for p in places
    ]
    examples = [task.encode(r) for r in records]
    trainer = Trainer(model, task, TrainArgs(epochs=4, lr=1e-2, batch_size=4))
    before = trainer.evaluate(examples)
    trainer.train(examples)
    after = trainer.evaluate(examples)
    assert after.loss < before.loss / 3
    assert after.accuracy is not None and after.accuracy >= 0.95


# ------------------------------------------------------- what the tasks build
def test_word_labels_sit_on_first_pieces_as_the_reference_aligns_them(tmp_path: Path) -> None:
    _, path = build(tmp_path / "tok", "xlnet", "XLNetForTokenClassification", num_labels=2)
    _, task = loaded(path)
    words = ["Hugging", "Face", "runs", "unbelievably", "well", "!"]
    tags = [1, 1, 0, 0, 0, 0]
    example = task.encode({"tokens": words, "labels": tags})
    fast = reference().XLNetTokenizerFast(vocab_file=str(path / "spiece.model"))
    encoding = fast(words, is_split_into_words=True)
    expected, previous = [], None
    for word in encoding.word_ids():
        expected.append(IGNORE if word is None or word == previous else tags[word])
        previous = word
    assert example.input_ids == encoding.input_ids
    assert example.labels == expected
    assert example.token_type_ids == encoding.token_type_ids


def test_bad_records_raise_example_errors(tmp_path: Path) -> None:
    _, path = build(tmp_path / "mvp", "mvp", "MvpForSequenceClassification", num_labels=2,
                    id2label={0: "neg", 1: "pos"})
    _, task = loaded(path)
    cases = {
        "missing_field": [{"label": "pos"}, {"text": "fine"}],
        "wrong_type": [{"text": 3, "label": "pos"}, {"text": "fine", "label": True}, {"text": "a", "label": 1.5}],
        "unknown_label": [{"text": "fine", "label": "neutral"}, {"text": "fine", "label": 2}],
        "empty_text": [{"text": "  ", "label": "neg"}],
    }
    for kind, records in cases.items():
        for record in records:
            with pytest.raises(ExampleError) as caught:
                task.encode(record)
            assert caught.value.type == kind, record
    assert task.encode({"text": "fine", "label": 1}).labels == task.encode({"text": "fine", "label": "pos"}).labels == 1
    assert task.encode({"text": "fine", "label": "1"}).labels == 1  # TSV cells are text


CAUSAL = [
    ("xglm", "XGLMForCausalLM", {}),
    ("xlm", "XLMWithLMHeadModel", {"causal": True}),
    ("mvp", "MvpForCausalLM", {}),
    ("xlm-prophetnet", "XLMProphetNetForCausalLM", {}),
    ("xlnet", "XLNetLMHeadModel", {}),
]


@pytest.mark.parametrize("family,class_name,config", CAUSAL, ids=[c[1] for c in CAUSAL])
def test_causal_models_never_see_what_they_predict(tmp_path: Path, family: str, class_name: str,
                                                   config: dict[str, Any]) -> None:
    _, path = build(tmp_path / "lm", family, class_name, seed=2, **config)
    model, task = loaded(path)
    assert task.name == "causal-lm"
    batch = task.collate([task.encode({"text": t}) for t in TEXTS])
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    shifts_itself = class_name == "XGLMForCausalLM"  # compares logit t with label t + 1
    permutes = class_name == "XLNetLMHeadModel"  # logit t predicts token t from the tokens before it

    def predicts(p: int) -> int:
        """The input position whose token the logit at position p predicts."""
        return p if permutes else p + 1

    def counted(row: int, p: int) -> bool:
        if shifts_itself:
            return p + 1 < ids.shape[1] and bool(labels[row, p + 1] != IGNORE)
        return bool(labels[row, p] != IGNORE)

    positions = [(row, p) for row in range(ids.shape[0]) for p in range(ids.shape[1]) if counted(row, p)]
    assert positions
    for row, p in positions:  # the labels are the tokens predicted
        assert labels[row, p + 1 if shifts_itself else p] == ids[row, predicts(p)]
    with torch.no_grad():
        ours = model(**batch)
        assert torch.isfinite(ours.loss) and float(ours.loss) > 0
        for q in (1, 2, 4):  # change token q in every row: no logit that predicts token q or earlier may move
            changed = dict(batch, input_ids=ids.clone())
            changed["input_ids"][:, q] = (ids[:, q] + 7) % model.config.vocab_size
            moved = (model(**changed).logits - ours.logits).abs().amax(-1)  # (B, T)
            for row, p in positions:
                if predicts(p) <= q and mask[row, q]:
                    assert moved[row, p] <= 1e-5, (row, p, q)


@pytest.mark.parametrize("family,class_name,config", CAUSAL, ids=[c[1] for c in CAUSAL])
def test_causal_batches_give_the_oracle_loss(tmp_path: Path, family: str, class_name: str,
                                             config: dict[str, Any]) -> None:
    """The oracle gives the same loss on the same batch: same conventions for labels and masks."""
    oracle, path = oracle_build(tmp_path / "lm", family, class_name, seed=2, **config)
    model, task = loaded(path)
    batch = task.collate([task.encode({"text": t}) for t in TEXTS])
    with torch.no_grad():
        assert abs(float(model(**batch).loss) - float(oracle(**batch).loss)) <= ATOL


ORACLE_LOSSES = [
    ("mvp", "MvpForConditionalGeneration", {}, [{"text": t, "target": t.upper()} for t in TEXTS]),
    ("xlm-prophetnet", "XLMProphetNetForConditionalGeneration", {}, [{"text": t, "target": t[:9]} for t in TEXTS]),
    ("mvp", "MvpForSequenceClassification", {"num_labels": 3},
     [{"text": t, "label": i % 3} for i, t in enumerate(TEXTS)]),
    ("xlm", "XLMWithLMHeadModel", {}, [{"text": t} for t in TEXTS]),
    ("xlnet", "XLNetForSequenceClassification", {"num_labels": 1},  # regression
     [{"text": t, "label": 0.5 * i} for i, t in enumerate(TEXTS)]),
    ("xlm", "XLMForSequenceClassification", {"num_labels": 3, "problem_type": "multi_label_classification"},
     [{"text": t, "label": [i % 3, "LABEL_2"] if i % 2 else []} for i, t in enumerate(TEXTS)]),
]


@pytest.mark.parametrize("family,class_name,config,records", ORACLE_LOSSES,
                         ids=[f"{c[1]}-{c[2].get('problem_type', c[2].get('num_labels', ''))}" for c in ORACLE_LOSSES])
def test_task_batches_give_the_oracle_loss(tmp_path: Path, family: str, class_name: str, config: dict[str, Any],
                                           records: list[dict[str, Any]]) -> None:
    oracle, path = oracle_build(tmp_path / "m", family, class_name, seed=3, **config)
    model, task = loaded(path)
    batch = task.collate([task.encode(r) for r in records], torch.Generator().manual_seed(0))
    assert task.loss_items(batch) > 0
    with torch.no_grad():
        ours, theirs = model(**batch), oracle(**batch)
    assert abs(float(ours.loss) - float(theirs.loss)) <= ATOL
    assert_close(ours.logits, theirs.logits)


def test_masked_lm_hides_real_tokens_only(tmp_path: Path) -> None:
    _, path = build(tmp_path / "mlm", "xlm", "XLMWithLMHeadModel")
    _, task = loaded(path)
    assert task.name == "masked-lm"
    long = [" ".join(TEXTS[i:] + TEXTS[:i]) for i in range(len(TEXTS))]  # ~25 tokens each
    examples = [task.encode({"text": t}) for t in long * 20]
    batch = task.collate(examples, torch.Generator().manual_seed(5))
    again = task.collate(examples, torch.Generator().manual_seed(5))
    assert torch.equal(batch["input_ids"], again["input_ids"]) and torch.equal(batch["labels"], again["labels"])
    hidden = batch["labels"] != IGNORE
    original = task.collate(examples)["attention_mask"]
    assert hidden.any(-1).all()  # at least one per text
    special = torch.tensor([e.special + [1] * (hidden.shape[1] - len(e)) for e in examples]).bool()
    assert not (hidden & special).any() and not (hidden & (original == 0)).any()
    share = hidden.sum() / (~special).sum()
    assert 0.1 < float(share) < 0.25
    masked = batch["input_ids"][hidden] == task.mask_id
    assert 0.65 < float(masked.float().mean()) < 0.95


# -------------------------------------------------------------- the loop itself
@pytest.mark.parametrize("family,class_name,config,records", [
    ("xlnet", "XLNetForSequenceClassification", {}, SENTIMENT[:3] + SENTIMENT[-1:]),
    ("xlnet", "XLNetForTokenClassification", {"num_labels": 2},
     [{"tokens": t.split(), "labels": [i % 2 for i in range(len(t.split()))]} for t in TEXTS]),
    ("xglm", "XGLMForCausalLM", {}, [{"text": t} for t in TEXTS]),
], ids=["sequence", "token", "causal"])
def test_accumulated_gradients_equal_one_batch(tmp_path: Path, family: str, class_name: str,
                                               config: dict[str, Any], records: list[dict[str, Any]]) -> None:
    if class_name.endswith("SequenceClassification"):
        config = {**config, "id2label": {0: "neg", 1: "pos"}}
    _, path = build(tmp_path / "acc", family, class_name, seed=4, **{**NO_DROPOUT[family], **config})
    model, task = loaded(path)
    examples = [task.encode(r) for r in records]
    trainer = Trainer(model, task, TrainArgs(batch_size=2))

    def gradients(micro_batches: list[list[Any]]) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = trainer.accumulate(micro_batches)
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_two, two = gradients([examples[:2], examples[2:]])
    loss_one, one = gradients([examples])
    assert abs(loss_two - loss_one) <= 1e-5
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


def test_schedule_warms_up_then_decays(tmp_path: Path) -> None:
    _, path = build(tmp_path / "s", "xglm", "XGLMForCausalLM")
    model, task = loaded(path)
    examples = [task.encode({"text": t}) for t in TEXTS]
    events: list[Event] = []
    Trainer(model, task, TrainArgs(epochs=2, batch_size=1, lr=1.0, warmup_ratio=0.25), events.append).train(examples)
    rates = [e.lr for e in events if e.kind == "step"]
    assert rates == pytest.approx([0.0, 0.5, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])  # 2 warm-up steps of 8


def test_weight_decay_spares_biases_and_norms(tmp_path: Path) -> None:
    _, path = build(tmp_path / "wd", "mvp", "MvpForSequenceClassification", num_labels=2)
    model, task = loaded(path)
    trainer = Trainer(model, task, TrainArgs(weight_decay=0.1))
    decayed, spared = ({id(p) for p in g["params"]} for g in trainer.optimizer.param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(not names[i].endswith("bias") and "norm" not in names[i] for i in decayed)
    assert all(names[i].endswith("bias") or "norm" in names[i] for i in spared)
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.1, 0.0]
    assert len(decayed) + len(spared) == len(names)


# --------------------------------------------------------------- heads, labels
def test_labels_grow_or_keep_the_head(tmp_path: Path) -> None:
    built, path = build(tmp_path / "head", "xlnet", "XLNetForSequenceClassification", id2label={0: "neg", 1: "pos"})
    head = built.logits_proj.weight
    same = load_for_training(path, labels=["neg", "pos"], device="cpu")
    assert same.fresh == [] and torch.equal(same.model.logits_proj.weight, head)
    renamed = load_for_training(path, labels=["bad", "good"], device="cpu")
    assert "logits_proj.weight" in renamed.fresh and not torch.equal(renamed.model.logits_proj.weight, head)
    assert torch.equal(renamed.model.transformer.word_embedding.weight, built.transformer.word_embedding.weight)
    grown = load_for_training(path, labels=["a", "b", "c"], device="cpu")
    assert grown.model.logits_proj.weight.shape == (3, 24) and grown.model.config.id2label[2] == "c"
    token = load_for_training(path, task="token-classification", labels=["O", "X"], device="cpu")
    assert type(token.model).__name__ == "XLNetForTokenClassification"

    with pytest.raises(TrainingError, match="pass --labels"):
        load_for_training(path, task="token-classification", device="cpu")
    with pytest.raises(TrainingError, match="at least two"):
        load_for_training(path, labels=["only"], device="cpu")
    with pytest.raises(TrainingError, match="labels apply to classification"):
        load_for_training(path, task="causal-lm", labels=["a", "b"], device="cpu")
    with pytest.raises(TrainingError, match="has no seq2seq head"):
        load_for_training(path, task="seq2seq", device="cpu")


def test_heads_train_cannot_learn_are_refused(tmp_path: Path) -> None:
    _, path = build(tmp_path / "base", "xlm", "XLMModel")  # no head (every head with a loss trains)
    with pytest.raises(TrainingError, match="XLMModel, which train cannot fine-tune"):
        load_for_training(path, device="cpu")
    grown = load_for_training(path, labels=["x", "y"], device="cpu")
    assert type(grown.model).__name__ == "XLMForSequenceClassification"
    with pytest.raises(TrainingError, match="causal"):
        load_for_training(path, task="causal-lm", device="cpu")  # XLM is causal only when its config says so


def test_labels_on_a_language_model_grow_a_classifier(tmp_path: Path) -> None:
    built, path = build(tmp_path / "lm", "xlnet", "XLNetLMHeadModel")  # as XLNet checkpoints are published
    assert load_for_training(path, device="cpu").task == "causal-lm"
    grown = load_for_training(path, labels=["neg", "pos"], device="cpu")
    assert type(grown.model).__name__ == "XLNetForSequenceClassification"
    assert grown.model.load_report.unexpected == ["lm_loss.bias"]  # the LM head's own bias (its weight is tied)
    assert torch.equal(grown.model.transformer.word_embedding.weight, built.transformer.word_embedding.weight)


def test_mixed_precision_keeps_float32_weights(tmp_path: Path) -> None:
    _, path = build(tmp_path / "mp", "xglm", "XGLMForCausalLM", **NO_DROPOUT["xglm"])
    model, task = loaded(path)
    examples = [task.encode({"text": t}) for t in TEXTS]
    full = Trainer(model, task, TrainArgs()).accumulate([examples])
    model.zero_grad(set_to_none=True)
    trainer = Trainer(model, task, TrainArgs(precision="bfloat16", lr=1e-2))
    mixed = trainer.accumulate([examples])
    assert abs(mixed - full) < 0.05 * full
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    trainer.optimizer_step()
    assert model.dtype == torch.float32


# --------------------------------------------------------------------- output
def test_checkpoint_dir_is_atomic(tmp_path: Path) -> None:
    class Saves:
        def save_pretrained(self, directory: Path) -> None:
            (Path(directory) / "weights").write_text(self.value)

        value = "one"

    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("keep")
    with pytest.raises(FileExistsError):
        CheckpointDir(target)
    writer = CheckpointDir(target, overwrite=True)
    writer.save(Saves(), Saves())  # type: ignore[arg-type]
    assert (target / "old").exists()  # untouched until commit
    writer.commit()
    assert sorted(p.name for p in target.iterdir()) == ["weights"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

    interrupted = CheckpointDir(tmp_path / "late")
    interrupted.save(Saves(), Saves())  # type: ignore[arg-type]
    kept = interrupted.discard(keep=True)
    assert kept == tmp_path / "late.partial" and (kept / "weights").exists()
    assert not (tmp_path / "late").exists()
    nothing = CheckpointDir(tmp_path / "never")
    assert nothing.discard() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.partial", "out"]
