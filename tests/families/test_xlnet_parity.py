"""XLNet against the oracle: tiny random checkpoints saved by transformers, loaded by xcli_models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.oracle import ATOL, assert_close, assert_outputs_close, oracle_checkpoint, transformers

from xcli_models.families.xlnet import modeling as ours_modeling
from xcli_models.families.xlnet.config import XLNetConfig

VOCAB = 97
TINY = dict(vocab_size=VOCAB, d_model=24, n_layer=2, n_head=3, d_inner=37, mem_len=None)
BASE_FIELDS = ["last_hidden_state", "mems", "hidden_states", "attentions"]

warnings.filterwarnings("ignore", category=FutureWarning)


# ------------------------------------------------------------------ helpers
def oracle_model(class_name: str, seed: int, **overrides: Any) -> Any:
    """A reference model with weights large enough that every score term matters."""
    torch.manual_seed(seed)
    config = transformers.XLNetConfig(**{**TINY, **overrides})
    model = getattr(transformers, class_name)(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name.lower():
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.3)
    return model.eval()


def pair(class_name: str, directory: Path, seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """(oracle, ours) with the same weights, ours loaded from the oracle's checkpoint."""
    ref = oracle_model(class_name, seed, **overrides)
    oracle_checkpoint(ref, directory)
    ours = getattr(ours_modeling, class_name).from_pretrained(directory)
    assert not ours.load_report.initialized and not ours.load_report.unexpected, ours.load_report.lines()
    return ref, ours


def batch_inputs(seed: int, batch: int, length: int, *, pad: bool = True) -> dict[str, torch.Tensor]:
    """Token ids, token types and a left-padding mask (every row keeps at least two tokens)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, VOCAB, (batch, length), generator=g)
    types = torch.randint(0, 2, (batch, length), generator=g)
    mask = torch.ones(batch, length)
    if pad:
        for row in range(batch):
            n_pad = int(torch.randint(0, length - 1, (1,), generator=g)) if row else length // 2
            mask[row, :n_pad] = 0
            ids[row, :n_pad] = 5
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def perm_and_targets(seed: int, batch: int, length: int, n_predict: int = 2) -> dict[str, torch.Tensor]:
    """A random factorisation order and ``n_predict`` target positions per row."""
    g = torch.Generator().manual_seed(seed + 1000)
    perm = torch.zeros(batch, length, length)
    targets = torch.zeros(batch, n_predict, length)
    for row in range(batch):
        order = torch.randperm(length, generator=g)
        rank = torch.empty(length, dtype=torch.long)
        rank[order] = torch.arange(length)
        perm[row] = (rank[None, :] >= rank[:, None]).float()  # i may not see j unless j comes first
        for p, position in enumerate(order[-n_predict:]):
            targets[row, p, position] = 1.0
    return {"perm_mask": perm, "target_mapping": targets}


def run_both(ref: Any, ours: Any, **kwargs: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        return ours(**kwargs), ref(**kwargs)


# ------------------------------------------------------------------- config
def test_config_round_trip(tmp_path: Path) -> None:
    ours = XLNetConfig(**TINY, hidden_dropout=0.3, use_cache=False)
    assert ours.d_head == 8 and ours.hidden_size == 24 and ours.num_hidden_layers == 2 and ours.n_token == VOCAB
    assert ours.use_mems_eval is False and ours.use_cache is False
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "use_cache" not in saved and saved["d_head"] == 8 and "summary_proj_to_labels" not in saved
    theirs = transformers.XLNetConfig.from_pretrained(tmp_path)
    for key in ("d_model", "n_layer", "n_head", "d_inner", "d_head", "mem_len", "use_mems_eval", "attn_type"):
        assert getattr(theirs, key) == getattr(ours, key), key
    assert theirs.hidden_dropout == 0.3  # unknown keys survive

    defaults = transformers.XLNetConfig()
    mine = XLNetConfig()
    for key in XLNetConfig.defaults:
        assert getattr(mine, key) == getattr(defaults, key), key
    transformers.XLNetConfig(**TINY, clamp_len=7).save_pretrained(tmp_path / "ref")
    back = XLNetConfig.from_pretrained(tmp_path / "ref")
    assert back.clamp_len == 7 and back.d_head == 8
    with pytest.raises(ValueError):
        XLNetConfig(d_model=24, n_head=5)


# --------------------------------------------------------------- base model
BASE_CASES = [
    pytest.param(0, 2, 7, {}, id="bi"),
    pytest.param(1, 3, 5, dict(n_head=2, d_model=16, ff_activation="relu", untie_r=False, clamp_len=2), id="clamp-relu"),
    pytest.param(2, 4, 6, dict(bi_data=True, ff_activation="gelu_new"), id="bi_data"),
    pytest.param(3, 3, 9, dict(n_layer=3, layer_norm_eps=1e-5, same_length=True), id="3-layers"),
]


@pytest.mark.parametrize("seed,batch,length,overrides", BASE_CASES)
def test_base_model(tmp_path: Path, seed: int, batch: int, length: int, overrides: dict) -> None:
    ref, ours = pair("XLNetModel", tmp_path, seed, **overrides)
    x = batch_inputs(seed, batch, length)
    pt = perm_and_targets(seed, batch, length)
    n_head = ref.config.n_head
    head_mask = torch.ones(ref.config.n_layer, n_head)
    head_mask[0, 1] = 0.0
    variants = [
        {"input_ids": x["input_ids"]},
        x,
        {**x, **pt},
        {"input_ids": x["input_ids"], "input_mask": 1 - x["attention_mask"], **pt},
        {**x, "head_mask": head_mask},
        {**x, "head_mask": head_mask[1], **pt},
    ]
    for kwargs in variants:
        a, b = run_both(ref, ours, output_attentions=True, output_hidden_states=True, **kwargs)
        assert_outputs_close(a, b, BASE_FIELDS)
    # inputs_embeds instead of ids, and the tuple form
    embeds = ref.word_embedding(x["input_ids"]).detach()
    a, b = run_both(ref, ours, inputs_embeds=embeds, attention_mask=x["attention_mask"], return_dict=False)
    assert_close(a, b, what="tuple")


def test_uni_without_masks_matches_oracle(tmp_path: Path) -> None:
    ref, ours = pair("XLNetModel", tmp_path, 4, attn_type="uni")
    x = batch_inputs(4, 3, 6, pad=False)
    a, b = run_both(ref, ours, input_ids=x["input_ids"], token_type_ids=x["token_type_ids"], output_attentions=True)
    assert_outputs_close(a, b, BASE_FIELDS)
    ref.config.same_length = ref.same_length = ours.config.same_length = True
    a, b = run_both(ref, ours, input_ids=x["input_ids"], output_hidden_states=True)
    assert_outputs_close(a, b, BASE_FIELDS)


def test_uni_with_masks_batched(tmp_path: Path) -> None:
    """The oracle fails on uni + masks for batches over one row; xcli runs them, row by row equal."""
    ref, ours = pair("XLNetModel", tmp_path, 5, attn_type="uni")
    x = batch_inputs(5, 3, 6)
    pt = perm_and_targets(5, 3, 6)
    with pytest.raises(RuntimeError):
        ref(**x)
    for kwargs in (x, {**x, **pt}):
        with torch.no_grad():
            batched = ours(**kwargs, output_attentions=True)
        for row in range(3):
            one = {k: v[row : row + 1] for k, v in kwargs.items()}
            a, b = run_both(ref, ours, **one, output_attentions=True)
            assert_outputs_close(a, b, BASE_FIELDS)
            assert_close(batched.last_hidden_state[row : row + 1], b.last_hidden_state, what=f"row {row}")
    # masking is causal: a later token never changes an earlier one, padding never changes a real token
    ids = x["input_ids"].clone()
    with torch.no_grad():
        before = ours(input_ids=ids, attention_mask=x["attention_mask"]).last_hidden_state
        ids[:, -1] = (ids[:, -1] + 1) % VOCAB
        ids[0, 0] = 7  # row 0 is padded at the front
        after = ours(input_ids=ids, attention_mask=x["attention_mask"]).last_hidden_state
    real = x["attention_mask"].bool()
    real[:, -1] = False
    assert_close(after[real], before[real], what="causal and padding")


def test_left_padding_equals_unpadded(tmp_path: Path) -> None:
    """Real tokens of a left-padded row give the same outputs as the row alone, with mems too."""
    _, ours = pair("XLNetLMHeadModel", tmp_path, 6, mem_len=None)
    x = batch_inputs(6, 3, 7)
    nxt = batch_inputs(7, 3, 3, pad=False)
    with torch.no_grad():
        first = ours(input_ids=x["input_ids"], attention_mask=x["attention_mask"], use_mems=True)
        full_mask = torch.cat([x["attention_mask"], torch.ones(3, 3)], dim=1)
        second = ours(input_ids=nxt["input_ids"], mems=first.mems, attention_mask=full_mask, use_mems=True)
        for row in range(3):
            keep = x["attention_mask"][row].bool()
            alone = ours(input_ids=x["input_ids"][row : row + 1, keep], use_mems=True)
            assert_close(first.logits[row : row + 1, keep], alone.logits, what=f"first call row {row}")
            again = ours(input_ids=nxt["input_ids"][row : row + 1], mems=alone.mems)
            assert_close(second.logits[row : row + 1], again.logits, what=f"second call row {row}")


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(dict(mem_len=4), id="mem_len"),
        pytest.param(dict(mem_len=6, reuse_len=3), id="reuse_len"),
        pytest.param(dict(mem_len=5, attn_type="uni", clamp_len=3), id="uni"),
        pytest.param(dict(mem_len=0, bi_data=True), id="all-mems-bi_data"),
    ],
)
def test_mems_across_calls(tmp_path: Path, overrides: dict) -> None:
    ref, ours = pair("XLNetLMHeadModel", tmp_path, 8, **overrides)
    uni = overrides.get("attn_type") == "uni"
    first, second = batch_inputs(8, 2, 5, pad=not uni), batch_inputs(9, 2, 4, pad=False)
    if uni:
        first.pop("attention_mask")
    a1, b1 = run_both(ref, ours, **first, use_mems=True)
    assert_outputs_close(a1, b1, ["logits", "mems"])
    extra = {} if uni else perm_and_targets(9, 2, 4)
    second_kwargs = {**second, **extra}
    if uni:
        second_kwargs.pop("attention_mask")
    a2, b2 = run_both(ref, ours, **second_kwargs, mems=a1.mems, use_mems=True, output_attentions=True,
                      output_hidden_states=True)
    assert_outputs_close(a2, b2, ["logits", "mems", "hidden_states", "attentions"])
    # the oracle's own mems work in xcli unchanged
    a3, _ = run_both(ref, ours, **second_kwargs, mems=b1.mems, use_mems=True)
    assert_close(a3.logits, b2.logits, what="oracle mems")


# -------------------------------------------------------------------- heads
def _labels(seed: int, shape: tuple[int, ...], high: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def test_lm_head(tmp_path: Path) -> None:
    ref, ours = pair("XLNetLMHeadModel", tmp_path, 10)
    assert ours.lm_loss.weight is ours.transformer.word_embedding.weight
    x = batch_inputs(10, 3, 6)
    pt = perm_and_targets(10, 3, 6, n_predict=3)
    labels = _labels(10, (3, 6), VOCAB)
    labels[0, :3] = -100
    a, b = run_both(ref, ours, **x, labels=labels, output_hidden_states=True)
    assert_outputs_close(a, b, ["loss", "logits", "mems", "hidden_states"])
    a, b = run_both(ref, ours, **x, **pt, labels=labels[:, :3].contiguous(), output_attentions=True, return_dict=False)
    assert_close(a, b, what="tuple with target_mapping")


@pytest.mark.parametrize(
    "num_labels,kind", [(3, "single"), (1, "regression"), (4, "multi")], ids=["single", "regression", "multi"]
)
def test_sequence_classification(tmp_path: Path, num_labels: int, kind: str) -> None:
    extra = {"problem_type": "multi_label_classification"} if kind == "multi" else {}
    ref, ours = pair("XLNetForSequenceClassification", tmp_path, 11, num_labels=num_labels, **extra)
    x = batch_inputs(11, 3, 5)
    if kind == "single":
        labels = _labels(11, (3,), num_labels)
    elif kind == "regression":
        labels = torch.randn(3)
    else:
        labels = _labels(11, (3, num_labels), 2).float()
    a, b = run_both(ref, ours, **x, labels=labels)
    assert_outputs_close(a, b, ["loss", "logits", "mems"])
    a, b = run_both(ref, ours, **x, labels=labels, return_dict=False)
    assert_close(a, b, what="tuple")


def test_sequence_summary_variants(tmp_path: Path) -> None:
    for i, extra in enumerate([
        dict(summary_type="first", summary_activation=None),
        dict(summary_type="mean", summary_use_proj=False),
        dict(summary_type="cls_index", num_labels=5),
    ]):
        ref, ours = pair("XLNetForSequenceClassification", tmp_path / str(i), 12 + i, **extra)
        x = batch_inputs(12, 2, 5)
        a, b = run_both(ref, ours, **x, labels=_labels(12, (2,), ref.config.num_labels))
        assert_outputs_close(a, b, ["loss", "logits"])


def test_token_classification(tmp_path: Path) -> None:
    ref, ours = pair("XLNetForTokenClassification", tmp_path, 13, num_labels=5)
    x = batch_inputs(13, 3, 6)
    labels = _labels(13, (3, 6), 5)
    labels[x["attention_mask"] == 0] = -100
    a, b = run_both(ref, ours, **x, labels=labels, output_attentions=True)
    assert_outputs_close(a, b, ["loss", "logits", "mems", "attentions"])


def test_multiple_choice(tmp_path: Path) -> None:
    ref, ours = pair("XLNetForMultipleChoice", tmp_path, 14)
    x = batch_inputs(14, 6, 5)
    x = {k: v.view(2, 3, 5) for k, v in x.items()}
    labels = _labels(14, (2,), 3)
    a, b = run_both(ref, ours, **x, labels=labels, output_hidden_states=True)
    assert_outputs_close(a, b, ["loss", "logits", "mems", "hidden_states"])
    embeds = ref.transformer.word_embedding(x["input_ids"]).detach()
    a, b = run_both(ref, ours, inputs_embeds=embeds, input_mask=1 - x["attention_mask"], labels=labels)
    assert_outputs_close(a, b, ["loss", "logits"])


def test_question_answering_simple(tmp_path: Path) -> None:
    ref, ours = pair("XLNetForQuestionAnsweringSimple", tmp_path, 15)
    x = batch_inputs(15, 3, 7)
    starts, ends = torch.tensor([1, 9, 3]), torch.tensor([2, 4, 12])  # some beyond the sequence: ignored
    a, b = run_both(ref, ours, **x, start_positions=starts, end_positions=ends)
    assert_outputs_close(a, b, ["loss", "start_logits", "end_logits", "mems"])
    a, b = run_both(ref, ours, **x, return_dict=False)
    assert_close(a, b, what="tuple")


def test_question_answering_beam(tmp_path: Path) -> None:
    ref, ours = pair("XLNetForQuestionAnswering", tmp_path, 16, start_n_top=3, end_n_top=2)
    x = batch_inputs(16, 3, 8)
    p_mask = (1 - x["attention_mask"]).clone()
    p_mask[:, -1] = 1.0
    cls_index = torch.tensor([7, 6, 7])
    beam = ["start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits", "mems"]
    for extra in ({}, {"p_mask": p_mask, "cls_index": cls_index}):
        a, b = run_both(ref, ours, **x, **extra, output_attentions=True)
        assert_outputs_close(a, b, [*beam, "attentions"])
        a, b = run_both(ref, ours, **x, **extra, return_dict=False)
        assert_close(a, b, what="beam tuple")
    starts, ends = torch.tensor([2, 5, 7]), torch.tensor([3, 6, 7])
    impossible = torch.tensor([0.0, 1.0, 0.0])
    for extra in ({}, {"cls_index": cls_index, "is_impossible": impossible}):
        a, b = run_both(ref, ours, **x, start_positions=starts, end_positions=ends, **extra, p_mask=p_mask)
        assert_outputs_close(a, b, ["loss", "mems"])
        a, b = run_both(ref, ours, **x, start_positions=starts, end_positions=ends, **extra, return_dict=False)
        assert_close(a, b, what="loss tuple")


# ------------------------------------------------------- saving and loading
@pytest.mark.parametrize(
    "class_name",
    ["XLNetLMHeadModel", "XLNetForSequenceClassification", "XLNetForQuestionAnsweringSimple", "XLNetForQuestionAnswering"],
)
def test_save_pretrained_loads_in_oracle(tmp_path: Path, class_name: str) -> None:
    ref, ours = pair(class_name, tmp_path / "ref", 17)
    ours.save_pretrained(tmp_path / "ours")
    back = getattr(transformers, class_name).from_pretrained(tmp_path / "ours").eval()
    theirs = {k for k in ref.state_dict() if k != "lm_loss.weight"}
    assert set(ours.hf_state_dict()) == theirs
    for name, tensor in ref.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    x = batch_inputs(17, 2, 6)
    with torch.no_grad():
        assert_close(back(**x).to_tuple(), ref(**x).to_tuple(), what="reloaded oracle")
        assert_close(ours(**x).to_tuple(), back(**x).to_tuple(), what="ours vs reloaded")


def test_base_checkpoint_into_task_model(tmp_path: Path) -> None:
    ref = oracle_model("XLNetModel", 18)
    oracle_checkpoint(ref, tmp_path)
    lm = ours_modeling.XLNetLMHeadModel.from_pretrained(tmp_path)
    assert lm.load_report.initialized == ["lm_loss.bias"]
    base = ours_modeling.XLNetModel.from_pretrained(tmp_path)
    x = batch_inputs(18, 2, 5)
    with torch.no_grad():
        assert_close(lm.transformer(**x).last_hidden_state, ref(**x).last_hidden_state)
        assert_close(base(**x).last_hidden_state, ref(**x).last_hidden_state)
    # and a task checkpoint into the bare model
    task = oracle_model("XLNetForTokenClassification", 18)
    oracle_checkpoint(task, tmp_path / "task")
    bare = ours_modeling.XLNetModel.from_pretrained(tmp_path / "task")
    assert sorted(bare.load_report.unexpected) == ["classifier.bias", "classifier.weight"]


# --------------------------------------------------------------- generation
def test_next_token_logits_with_dummy_token(tmp_path: Path) -> None:
    ref, ours = pair("XLNetLMHeadModel", tmp_path, 19, mem_len=None)
    ids = batch_inputs(19, 2, 6, pad=False)["input_ids"]
    step = ours.prepare_inputs_for_generation(ids)
    expected = ref.prepare_inputs_for_generation(ids)
    assert step.keys() == expected.keys()
    assert_close([step[k] for k in ("input_ids", "perm_mask", "target_mapping")],
                 [expected[k] for k in ("input_ids", "perm_mask", "target_mapping")])
    a, b = run_both(ref, ours, **step)
    assert a.logits.shape == (2, 1, VOCAB)
    assert_outputs_close(a, b, ["logits", "mems"])


@pytest.mark.parametrize("mem_len", [None, 5])
def test_incremental_decoding_matches_oracle(tmp_path: Path, mem_len: int | None) -> None:
    """Greedy steps through prepare_inputs_for_generation and mems equal the oracle's generate.

    (XLNet's memory is not a key/value cache: with bidirectional attention the remembered states
    never saw the later tokens, so these steps differ from recomputing the whole sequence, in
    the reference as here.)
    """
    ref, ours = pair("XLNetLMHeadModel", tmp_path, 20, mem_len=mem_len)
    ids = batch_inputs(20, 2, 5, pad=False)["input_ids"]
    n_new = 4
    with torch.no_grad():
        expected = ref.generate(ids, max_new_tokens=n_new, do_sample=False, pad_token_id=5, eos_token_id=None,
                                output_logits=True, return_dict_in_generate=True)
        sequence, past = ids, None
        for i in range(n_new):
            step = ours.prepare_inputs_for_generation(sequence, past_key_values=past)
            out = ours(**step)
            assert_close(out.logits[:, -1], expected.logits[i], what=f"step {i}")
            past = out.mems
            sequence = torch.cat([sequence, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(sequence, expected.sequences)
    # beam search reorders the memory by batch row
    reordered = ours.reorder_mems(past, torch.tensor([1, 0]))
    assert torch.equal(reordered[0][:, 0], past[0][:, 1])


def test_unidirectional_decoding_equals_recomputation(tmp_path: Path) -> None:
    """With causal attention the memory is exact: each step equals recomputing the whole sequence."""
    _, ours = pair("XLNetLMHeadModel", tmp_path, 23, attn_type="uni", mem_len=None)
    sequence = batch_inputs(23, 2, 4, pad=False)["input_ids"]
    past = None
    with torch.no_grad():
        for i in range(3):
            out = ours(**ours.prepare_inputs_for_generation(sequence, past_key_values=past))
            full = ours(**ours.prepare_inputs_for_generation(sequence))
            assert_close(out.logits, full.logits, what=f"step {i}")
            past = out.mems
            sequence = torch.cat([sequence, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)


def test_decoding_with_left_padding(tmp_path: Path) -> None:
    """With the padding mask passed along, a left-padded row decodes like the row alone."""
    _, ours = pair("XLNetLMHeadModel", tmp_path, 21, mem_len=None)
    x = batch_inputs(21, 2, 6)
    with torch.no_grad():
        def decode(ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
            past, logits = None, []
            for _ in range(3):
                out = ours(**ours.prepare_inputs_for_generation(ids, past_key_values=past, attention_mask=mask))
                logits.append(out.logits[:, -1])
                past = out.mems
                ids = torch.cat([ids, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
                mask = None if mask is None else torch.cat([mask, torch.ones(mask.shape[0], 1)], dim=1)
            return ids, logits

        padded, padded_logits = decode(x["input_ids"], x["attention_mask"])
        keep = x["attention_mask"][0].bool()
        alone, alone_logits = decode(x["input_ids"][:1, keep], None)
    assert torch.equal(padded[0, -3:], alone[0, -3:])
    for got, want in zip(padded_logits, alone_logits, strict=True):
        assert_close(got[:1], want, what="padded row")


# ------------------------------------------------------------ training, errors
def test_training_mode(tmp_path: Path) -> None:
    _, ours = pair("XLNetLMHeadModel", tmp_path, 22, dropout=0.3)
    x = batch_inputs(22, 2, 6)
    labels = _labels(22, (2, 6), VOCAB)
    ours.train()
    torch.manual_seed(0)
    first = ours(**x, labels=labels)
    second = ours(**x, labels=labels)
    assert first.mems is None  # use_mems_train defaults to False
    assert (first.logits - second.logits).abs().max() > ATOL  # dropout is active
    first.loss.backward()
    no_grad = [n for n, p in ours.named_parameters() if p.grad is None]
    assert no_grad == ["transformer.mask_emb"]  # the query stream runs only with target_mapping
    assert ours.transformer.word_embedding.weight.grad is ours.lm_loss.weight.grad
    ours.eval()
    with torch.no_grad():
        assert_close(ours(**x).logits, ours(**x).logits)


def test_fresh_model_and_errors() -> None:
    config = XLNetConfig(**TINY)
    torch.manual_seed(0)
    model = ours_modeling.XLNetForQuestionAnswering(config).eval()
    attn = model.transformer.layers[0].self_attn
    assert 0.01 < attn.content_bias.std() < 0.04 and 0.01 < model.transformer.mask_emb.std() < 0.04
    ids = torch.randint(0, VOCAB, (3, 5))
    with pytest.raises(ValueError, match="one of input_mask"):
        model(ids, attention_mask=torch.ones(3, 5), input_mask=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="input_ids"):
        model()
    with pytest.raises(TypeError, match="unexpected"):
        model(ids, langs=ids)
    with pytest.raises(ValueError, match="padding mask"):
        model(ids, attention_mask=torch.ones(3, 4))
    bi = ours_modeling.XLNetModel(XLNetConfig(**TINY, bi_data=True))
    with pytest.raises(ValueError, match="even batch"):
        bi(ids)
    out = model(ids, use_cache=False)  # the reference's deprecated name for use_mems
    assert out.mems is None and out.start_top_index.shape == (3, 5)
