"""XLM against the reference (the oracle): every class, several seeds and shapes, caches, round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.oracle import ATOL, assert_close, assert_outputs_close, oracle_checkpoint, transformers

import xcli_models.families.xlm.modeling as xlm
from xcli_models.families.xlm.config import XLMConfig
from xcli_models.layers import Cache, positions_from_mask

VOCAB, PAD = 40, 2
BASE = dict(vocab_size=VOCAB, max_position_embeddings=24, pad_index=PAD, pad_token_id=PAD, n_langs=3)


def ref_config(**kw: Any) -> Any:
    return transformers.XLMConfig(**{**BASE, "emb_dim": 24, "n_layers": 2, "n_heads": 3, **kw})


def make(cls_name: str, tmp_path: Path, seed: int = 0, **cfg: Any) -> tuple[Any, Any]:
    """A random reference model of ``cls_name`` (every parameter perturbed), saved and loaded by us."""
    torch.manual_seed(seed)
    ref = getattr(transformers, cls_name)(ref_config(**cfg))
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if not (cfg.get("sinusoidal_embeddings") and "position_embeddings" in name):
                p.add_(torch.randn_like(p) * 0.2)
    directory = oracle_checkpoint(ref, tmp_path / f"{cls_name}-{seed}")
    ours = getattr(xlm, cls_name).from_pretrained(directory)
    assert ours.load_report.lines() == []
    return ref.eval(), ours


def batch(seed: int, b: int = 3, t: int = 7, pad_rows: bool = True) -> dict[str, torch.Tensor]:
    """Right-padded ids (no pad id inside the real tokens), its mask, langs and token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(PAD + 1, VOCAB, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    if pad_rows:
        for row in range(1, b):
            n = int(torch.randint(1, t - 1, (1,), generator=g))
            ids[row, n:], mask[row, n:] = PAD, 0
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "langs": torch.randint(0, 3, (b, t), generator=g),
        "token_type_ids": torch.randint(0, 3, (b, t), generator=g),
    }


def both(ref: Any, ours: Any, **inputs: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        theirs = ref(**{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
        mine = ours(**inputs)
    return mine, theirs


# ----------------------------------------------------------------------------- XLMModel
MODEL_CASES = [
    dict(seed=0),
    dict(seed=1, causal=True),
    dict(seed=2, sinusoidal_embeddings=True, gelu_activation=False),
    dict(seed=3, causal=True, sinusoidal_embeddings=True, n_heads=1, emb_dim=20),
    dict(seed=4, use_lang_emb=False, n_layers=3, n_heads=5, emb_dim=20),
    dict(seed=5, n_langs=1),
]


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_model_outputs(tmp_path: Path, case: dict) -> None:
    case = dict(case)
    seed = case.pop("seed")
    ref, ours = make("XLMModel", tmp_path, seed, **case)
    inputs = batch(seed)
    if case.get("n_langs", 3) == 1:
        inputs.pop("langs")
    flags = dict(output_hidden_states=True, output_attentions=True)
    # attention_mask; lengths; neither (non-pad count); token types and languages on or off
    assert_outputs_close(*both(ref, ours, **inputs, **flags))
    lengths = inputs["attention_mask"].sum(1)
    no_mask = {k: v for k, v in inputs.items() if k != "attention_mask"}
    assert_outputs_close(*both(ref, ours, **no_mask, lengths=lengths, **flags))
    assert_outputs_close(*both(ref, ours, input_ids=inputs["input_ids"], **flags))
    # a pad id inside the sequence: the mask comes from the count, as in the reference
    quirky = inputs["input_ids"].clone()
    quirky[0, 1] = PAD
    assert_outputs_close(*both(ref, ours, input_ids=quirky, **flags))


def test_model_inputs_embeds_position_ids_head_mask_tuple(tmp_path: Path) -> None:
    ref, ours = make("XLMModel", tmp_path, 7, n_heads=3, n_layers=3)
    inputs = batch(7, b=2, t=6)
    embeds = torch.randn(2, 6, 24)
    assert_outputs_close(*both(ref, ours, inputs_embeds=embeds, attention_mask=inputs["attention_mask"]))
    positions = torch.tensor([[5, 4, 3, 2, 1, 0], [0, 2, 4, 6, 8, 10]])
    assert_outputs_close(*both(ref, ours, **inputs, position_ids=positions))
    head_mask = torch.tensor([[1.0, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert_outputs_close(*both(ref, ours, **inputs, head_mask=head_mask, output_attentions=True))
    assert_outputs_close(*both(ref, ours, **inputs, head_mask=torch.tensor([0.0, 1.0, 1.0])))
    mine, theirs = both(ref, ours, **inputs, output_hidden_states=True, return_dict=False)
    assert isinstance(mine, tuple) and len(mine) == len(theirs) == 2
    assert_close(mine, theirs)


def test_sinusoidal_table_matches_reference_init() -> None:
    config = dict(BASE, emb_dim=22, n_layers=1, n_heads=2, sinusoidal_embeddings=True)
    torch.manual_seed(0)
    theirs = transformers.XLMModel(transformers.XLMConfig(**config)).position_embeddings.weight
    mine = xlm.XLMModel(XLMConfig(**config)).position_embeddings.weight
    assert not mine.requires_grad
    assert_close(mine, theirs, atol=1e-6)


# ----------------------------------------------------------------------------- LM head
@pytest.mark.parametrize("seed,cfg", [(0, {}), (1, {"causal": True}), (2, {"n_heads": 1, "sinusoidal_embeddings": True})])
def test_lm_head_logits_and_loss(tmp_path: Path, seed: int, cfg: dict) -> None:
    ref, ours = make("XLMWithLMHeadModel", tmp_path, seed, **cfg)
    assert ours.pred_layer.proj.weight is ours.transformer.embeddings.weight
    inputs = batch(seed)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    assert_outputs_close(*both(ref, ours, **inputs, labels=labels, output_hidden_states=True))
    assert_outputs_close(*both(ref, ours, **inputs))
    mine, theirs = both(ref, ours, **inputs, labels=labels, return_dict=False)
    assert_close(mine, theirs)


@pytest.mark.parametrize("seed", [0, 1])
def test_adaptive_softmax_head(tmp_path: Path, seed: int) -> None:
    """The reference's adaptive softmax only takes (N, D) rows, so it runs on the flattened states."""
    ref, ours = make("XLMWithLMHeadModel", tmp_path, seed, asm=True, asm_cutoffs=[8, 20], asm_div_value=2.0)
    inputs = batch(seed, b=2, t=5)
    labels = inputs["input_ids"]
    mine = ours(**inputs, labels=labels)
    with torch.no_grad():
        hidden = ref.transformer(**inputs).last_hidden_state.reshape(-1, 24)
        log_probs = ref.pred_layer.proj.log_prob(hidden).view(2, 5, VOCAB)
        loss, _ = ref.pred_layer(hidden, labels.reshape(-1))
    assert_close(mine.logits, log_probs)
    assert_close(mine.loss, loss)
    # labels of -100 are left out of the loss
    ignored = labels.clone()
    ignored[0, :2] = -100
    kept = ignored.reshape(-1) != -100
    with torch.no_grad():
        loss, _ = ref.pred_layer(hidden[kept], ignored.reshape(-1)[kept])
    assert_close(ours(**inputs, labels=ignored).loss, loss)


# ----------------------------------------------------------------------------- classifiers
@pytest.mark.parametrize(
    "seed,cfg,labels",
    [
        (0, {"num_labels": 3}, "single"),
        (1, {"num_labels": 1, "summary_type": "last", "summary_activation": "tanh"}, "regression"),
        (2, {"num_labels": 4, "summary_type": "mean", "causal": True}, "multi"),
        (3, {"num_labels": 2, "summary_type": "cls_index", "summary_use_proj": False, "emb_dim": 2, "n_heads": 1}, "single"),
        (4, {"num_labels": 3, "summary_proj_to_labels": False}, None),
    ],
)
def test_sequence_classification(tmp_path: Path, seed: int, cfg: dict, labels: str | None) -> None:
    ref, ours = make("XLMForSequenceClassification", tmp_path, seed, **cfg)
    inputs = batch(seed)
    n = ref.config.num_labels
    g = torch.Generator().manual_seed(seed)
    target = {
        "single": lambda: torch.randint(0, n, (3,), generator=g),
        "regression": lambda: torch.randn(3, generator=g),
        "multi": lambda: torch.randint(0, 2, (3, n), generator=g).float(),
        None: lambda: None,
    }[labels]()
    assert_outputs_close(*both(ref, ours, **inputs, labels=target, output_attentions=True))
    assert ours.config.problem_type == ref.config.problem_type


@pytest.mark.parametrize("seed,cfg", [(0, {}), (1, {"summary_type": "mean", "summary_activation": "tanh", "causal": True})])
def test_multiple_choice(tmp_path: Path, seed: int, cfg: dict) -> None:
    ref, ours = make("XLMForMultipleChoice", tmp_path, seed, **cfg)
    flat = batch(seed, b=6, t=5)
    inputs = {k: v.view(2, 3, 5) for k, v in flat.items()}
    labels = torch.tensor([2, 0])
    assert_outputs_close(*both(ref, ours, **inputs, labels=labels, output_hidden_states=True))
    assert_outputs_close(*both(ref, ours, inputs_embeds=torch.randn(2, 3, 5, 24)))


@pytest.mark.parametrize("seed,cfg", [(0, {"num_labels": 5}), (1, {"num_labels": 2, "causal": True, "n_heads": 1})])
def test_token_classification(tmp_path: Path, seed: int, cfg: dict) -> None:
    ref, ours = make("XLMForTokenClassification", tmp_path, seed, **cfg)
    inputs = batch(seed)
    labels = torch.randint(0, ref.config.num_labels, inputs["input_ids"].shape)
    labels[inputs["attention_mask"] == 0] = -100
    assert_outputs_close(*both(ref, ours, **inputs, labels=labels))
    mine, theirs = both(ref, ours, **inputs, return_dict=False)
    assert_close(mine, theirs)


@pytest.mark.parametrize("seed", [0, 1])
def test_question_answering_simple(tmp_path: Path, seed: int) -> None:
    ref, ours = make("XLMForQuestionAnsweringSimple", tmp_path, seed, causal=bool(seed))
    inputs = batch(seed)
    starts, ends = torch.tensor([1, 0, 30]), torch.tensor([[3], [2], [4]])  # 30: out of range, ignored
    assert_outputs_close(*both(ref, ours, **inputs, start_positions=starts, end_positions=ends))
    assert_outputs_close(*both(ref, ours, **inputs, output_hidden_states=True))


@pytest.mark.parametrize("seed,cfg", [(0, {}), (1, {"start_n_top": 3, "end_n_top": 2, "causal": True}), (2, {"start_n_top": 1, "end_n_top": 4, "n_heads": 1})])
def test_question_answering_beam(tmp_path: Path, seed: int, cfg: dict) -> None:
    ref, ours = make("XLMForQuestionAnswering", tmp_path, seed, **cfg)
    inputs = batch(seed, b=3, t=8)
    p_mask = (1 - inputs["attention_mask"]).float()
    p_mask[:, 0] = 1.0
    cls_index = torch.tensor([0, 7, 3])
    # inference: the beam, with and without p_mask / cls_index
    assert_outputs_close(*both(ref, ours, **inputs, p_mask=p_mask, cls_index=cls_index, output_attentions=True))
    assert_outputs_close(*both(ref, ours, **inputs))
    mine, theirs = both(ref, ours, **inputs, p_mask=p_mask, return_dict=False)
    assert_close(mine, theirs)
    # training: start/end cross-entropies, plus the answerability BCE when cls_index and is_impossible come
    starts, ends = torch.tensor([1, 2, 3]), torch.tensor([2, 2, 5])
    impossible = torch.tensor([0.0, 1.0, 0.0])
    assert_outputs_close(*both(ref, ours, **inputs, start_positions=starts, end_positions=ends, p_mask=p_mask))
    assert_outputs_close(*both(
        ref, ours, **inputs, start_positions=starts[:, None], end_positions=ends[:, None],
        cls_index=cls_index, is_impossible=impossible, output_hidden_states=True,
    ))


# ----------------------------------------------------------------------------- caches
def test_cached_decoding_equals_full_recomputation(tmp_path: Path) -> None:
    ref, ours = make("XLMWithLMHeadModel", tmp_path, 11, causal=True, n_heads=3)
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(PAD + 1, VOCAB, (2, 9), generator=g)
    ids[1, 7:] = PAD  # the second row ends in padding
    langs = torch.randint(0, 3, (2, 9), generator=g)
    with torch.no_grad():
        full = ref(ids, langs=langs).logits

        # new tokens only, with our Cache
        out = ours(ids[:, :4], langs=langs[:, :4], use_cache=True)
        steps, cache = [out.logits], out.past_key_values
        for t in range(4, 9):
            out = ours(ids[:, t : t + 1], langs=langs[:, t : t + 1], past_key_values=cache, use_cache=True)
            assert out.past_key_values is cache and cache.get_seq_length() == t + 1
            steps.append(out.logits)
        assert_close(torch.cat(steps, dim=1), full, what="past_key_values")

        # the reference's tuple layout goes through Cache.coerce
        out = ours(ids[:, :5], langs=langs[:, :5], use_cache=True)
        steps, legacy = [out.logits], out.past_key_values.to_legacy()
        for t in range(5, 9):
            out = ours(ids[:, t : t + 1], langs=langs[:, t : t + 1], past_key_values=legacy)
            steps.append(out.logits)
            legacy = out.past_key_values.to_legacy()
        assert_close(torch.cat(steps, dim=1), full, what="tuple past")

        # the reference's `cache` argument: the whole sequence so far, only unseen tokens run
        cache = Cache(ours.config.n_layers)
        steps = [ours(ids[:, :3], langs=langs[:, :3], cache=cache).logits]
        for t in range(3, 9):
            steps.append(ours(ids[:, : t + 1], langs=langs[:, : t + 1], cache=cache).logits)
        assert_close(torch.cat(steps, dim=1), full, what="cache=")

        # the oracle's own cache gives the same steps
        oracle_cache = transformers.EncoderDecoderCache(transformers.DynamicCache(), transformers.DynamicCache())
        theirs = [ref(ids[:, :3], langs=langs[:, :3], cache=oracle_cache).logits]
        for t in range(3, 9):
            theirs.append(ref(ids[:, : t + 1], langs=langs[:, : t + 1], cache=oracle_cache).logits)
        assert_close(torch.cat(steps, dim=1), torch.cat(theirs, dim=1), what="oracle cache")


def test_cached_decoding_left_padding(tmp_path: Path) -> None:
    """Left padding: positions from the mask, passed step by step, match the full pass with them."""
    ref, ours = make("XLMWithLMHeadModel", tmp_path, 12, causal=True, sinusoidal_embeddings=True)
    g = torch.Generator().manual_seed(12)
    ids = torch.randint(PAD + 1, VOCAB, (2, 8), generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    ids[1, :3], mask[1, :3] = PAD, 0
    positions = positions_from_mask(mask)
    with torch.no_grad():
        full = ref(ids, attention_mask=mask, position_ids=positions).logits
        out = ours(ids[:, :4], attention_mask=mask[:, :4], position_ids=positions[:, :4], use_cache=True)
        steps = [out.logits]
        for t in range(4, 8):
            out = ours(
                ids[:, t : t + 1], attention_mask=mask[:, : t + 1], position_ids=positions[:, t : t + 1],
                past_key_values=out.past_key_values, use_cache=True,
            )
            steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1), full)


# ----------------------------------------------------------------------------- saving
@pytest.mark.parametrize(
    "cls_name,cfg",
    [
        ("XLMModel", {"sinusoidal_embeddings": True}),
        ("XLMWithLMHeadModel", {}),
        ("XLMWithLMHeadModel", {"asm": True, "asm_cutoffs": [8, 20], "asm_div_value": 2.0}),
        ("XLMForSequenceClassification", {"num_labels": 3}),
        ("XLMForMultipleChoice", {}),
        ("XLMForTokenClassification", {"num_labels": 4}),
        ("XLMForQuestionAnsweringSimple", {}),
        ("XLMForQuestionAnswering", {"start_n_top": 2, "end_n_top": 3}),
    ],
)
def test_save_pretrained_loads_in_the_oracle(tmp_path: Path, cls_name: str, cfg: dict) -> None:
    ref, ours = make(cls_name, tmp_path, 21, **cfg)
    saved = tmp_path / "ours"
    ours.save_pretrained(saved)
    back = getattr(transformers, cls_name).from_pretrained(saved).eval()
    from safetensors.torch import load_file

    assert set(load_file(saved / "model.safetensors")) == set(load_file(tmp_path / f"{cls_name}-21" / "model.safetensors"))
    inputs = batch(21, b=2, t=6)
    if cls_name == "XLMForMultipleChoice":
        inputs = {k: v.view(1, 2, 6) for k, v in inputs.items()}
    if cfg.get("asm"):
        with torch.no_grad():
            a, b = ref.transformer(**inputs).last_hidden_state, back.transformer(**inputs).last_hidden_state
            assert_close(back.pred_layer.proj.log_prob(b.reshape(-1, 24)), ref.pred_layer.proj.log_prob(a.reshape(-1, 24)))
        return
    with torch.no_grad():
        assert_outputs_close(back(**inputs), ref(**inputs))


def test_base_checkpoint_into_task_model_and_back(tmp_path: Path) -> None:
    ref, ours = make("XLMWithLMHeadModel", tmp_path, 5)
    task = xlm.XLMForSequenceClassification.from_pretrained(tmp_path / "XLMWithLMHeadModel-5")
    assert any("sequence_summary.summary" in n for n in task.load_report.initialized)
    assert task.load_report.unexpected == ["pred_layer.proj.bias"]
    base = xlm.XLMModel.from_pretrained(tmp_path / "XLMWithLMHeadModel-5")
    inputs = batch(5)
    with torch.no_grad():
        assert_close(base(**inputs).last_hidden_state, ref.transformer(**inputs).last_hidden_state)
        assert_close(task.transformer(**inputs).last_hidden_state, ref.transformer(**inputs).last_hidden_state)


def test_pruned_heads_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    ref = transformers.XLMModel(ref_config(n_heads=4)).eval()
    ref.prune_heads({0: [1, 3], 1: [0]})
    ref.save_pretrained(tmp_path / "pruned")
    ours = xlm.XLMModel.from_pretrained(tmp_path / "pruned")
    assert [layer.self_attn.n_heads for layer in ours.layers] == [2, 3]
    assert_outputs_close(*both(ref, ours, **batch(3), output_attentions=True))


def test_train_mode_dropout_and_gradients(tmp_path: Path) -> None:
    _, ours = make("XLMForQuestionAnswering", tmp_path, 8, dropout=0.3, attention_dropout=0.3)
    ours.train()
    inputs = batch(8)
    kwargs = dict(start_positions=torch.tensor([1, 2, 0]), end_positions=torch.tensor([3, 2, 1]))
    torch.manual_seed(0)
    a = ours(**inputs, **kwargs).loss
    b = ours(**inputs, **kwargs).loss
    assert not torch.allclose(a, b)
    a.backward()
    assert ours.qa_outputs.end_hidden.weight.grad is not None
    ours.eval()
    with torch.no_grad():
        assert torch.equal(ours(**inputs, **kwargs).loss, ours(**inputs, **kwargs).loss)


def test_config_fields_and_aliases() -> None:
    config = XLMConfig(n_words=77, hidden_size=16, num_attention_heads=2, num_hidden_layers=3)
    assert (config.vocab_size, config.emb_dim, config.n_heads, config.n_layers) == (77, 16, 2, 3)
    assert config.n_words == 77 and config.hidden_size == 16
    reference = transformers.XLMConfig()
    for key, value in XLMConfig.defaults.items():
        if hasattr(reference, key):
            assert getattr(reference, key) == value, key
    assert ATOL == 1e-4


def test_misspelt_forward_arguments_are_refused():
    from xcli_models import XLMConfig, XLMModel, XLMWithLMHeadModel

    config = XLMConfig(vocab_size=30, emb_dim=16, n_layers=1, n_heads=2)
    ids = torch.tensor([[5, 6, 7]])
    for cls in (XLMModel, XLMWithLMHeadModel):
        with pytest.raises(TypeError, match="attention_masks"):
            cls(config)(ids, attention_masks=torch.ones(1, 3))
