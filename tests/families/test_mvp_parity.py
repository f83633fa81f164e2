"""MVP parity with the reference implementation (transformers 4.56.2 as the oracle).

The oracle builds tiny random MVP models (weights redrawn wide enough that masking or
prompt mistakes show), saves them, and xcli_models loads them; every output field must
agree within 1e-4, losses within 1e-5. Cached step-by-step decoding is compared with full
recomputation, and our checkpoints must load in the oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from oracle import assert_close, assert_outputs_close, oracle_checkpoint, randomize, transformers

from xcli_models.families.mvp import modeling as mvp
from xcli_models.families.mvp.config import MvpConfig
from xcli_models.layers import Cache

VOCAB = 64
PAD, BOS, EOS = 1, 0, 2
LOSS_ATOL = 1e-5

#: tiny configurations: odd head counts, unequal layer counts, prompts, scaled and untied embeddings
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": dict(
        d_model=24, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3, decoder_attention_heads=3,
        encoder_ffn_dim=20, decoder_ffn_dim=28,
    ),
    "prompt": dict(
        d_model=20, encoder_layers=3, decoder_layers=2, encoder_attention_heads=5, decoder_attention_heads=1,
        encoder_ffn_dim=12, decoder_ffn_dim=16, use_prompt=True, prompt_length=3, prompt_mid_dim=10,
    ),
    "prompt_scaled_untied": dict(
        d_model=16, encoder_layers=1, decoder_layers=3, encoder_attention_heads=2, decoder_attention_heads=4,
        encoder_ffn_dim=24, decoder_ffn_dim=8, use_prompt=True, prompt_length=5, prompt_mid_dim=6,
        scale_embedding=True, tie_word_embeddings=False, activation_function="relu",
        num_hidden_layers=3,  # the oracle sizes its decoder cache by this (see test_oracle_cache_quirk)
    ),
}
CLASSES = ["MvpModel", "MvpForConditionalGeneration", "MvpForSequenceClassification",
           "MvpForQuestionAnswering", "MvpForCausalLM"]
SEQ2SEQ = CLASSES[:4]


pytestmark = pytest.mark.usefixtures("one_thread")


def config_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    return dict(vocab_size=VOCAB, max_position_embeddings=40, **{**CONFIGS[name], **overrides})


def build(cls_name: str, cfg: str, tmp_path: Path, seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """(oracle model, our model loaded from the oracle's checkpoint), both in eval mode."""
    torch.manual_seed(seed)
    ref = getattr(transformers, cls_name)(transformers.MvpConfig(**config_kwargs(cfg, **overrides)))
    randomize(ref, seed, buffers=("final_logits_bias",))
    directory = oracle_checkpoint(ref, tmp_path / f"oracle-{cls_name}-{cfg}-{seed}")
    ours = getattr(mvp, cls_name).from_pretrained(directory)
    assert not ours.load_report.lines(), ours.load_report.lines()
    return ref, ours


def batch(seed: int, b: int = 3, t: int = 9, padding: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """<s> tokens </s> rows of different lengths, padded on ``padding``; one <eos> per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.long)
    for i in range(b):
        n = t - (i * 2) % max(t - 3, 1)  # the lengths differ; the first row is full
        real = slice(0, n) if padding == "right" else slice(t - n, t)
        row = torch.full((t,), PAD, dtype=torch.long)
        row[real] = ids[i, real]
        row[real.start] = BOS
        row[real.stop - 1] = EOS
        ids[i], mask[i, real] = row, 1
    return ids, mask


def run_both(ref: Any, ours: Any, **inputs: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        return ours(**inputs), ref(**inputs)


# ---------------------------------------------------------------------- config
def test_config_defaults_and_aliases_match_reference() -> None:
    ref = transformers.MvpConfig().to_dict()
    ours = MvpConfig()
    for key in MvpConfig.defaults:
        assert getattr(ours, key) == ref[key], key
    assert ours.num_hidden_layers == ref["num_hidden_layers"]
    assert ours.hidden_size == ours.d_model == 1024
    assert ours.num_attention_heads == ours.encoder_attention_heads
    small = MvpConfig(encoder_layers=3, hidden_size=8, num_attention_heads=2)
    assert (small.num_hidden_layers, small.d_model, small.encoder_attention_heads) == (3, 8, 2)
    assert MvpConfig(force_bos_token_to_be_generated=True).forced_bos_token_id == 0


def test_config_round_trip(tmp_path: Path) -> None:
    kwargs = config_kwargs("prompt_scaled_untied", num_labels=3)
    transformers.MvpConfig(**kwargs).save_pretrained(tmp_path / "ref")
    ours = MvpConfig.from_pretrained(tmp_path / "ref")
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.MvpConfig.from_pretrained(tmp_path / "ours").to_dict()
    expected = transformers.MvpConfig(**kwargs).to_dict()
    for key in [*MvpConfig.defaults, "num_hidden_layers", "id2label", "label2id", "tie_word_embeddings"]:
        assert back[key] == expected[key], key


# ------------------------------------------------------------- forward parity
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("cls_name", CLASSES)
def test_forward_parity(cls_name: str, cfg: str, tmp_path: Path) -> None:
    ref, ours = build(cls_name, cfg, tmp_path, seed=len(cfg))
    for seed, padding in ((1, "right"), (2, "left")):
        ids, mask = batch(seed, padding=padding)
        inputs: dict[str, Any] = dict(input_ids=ids, attention_mask=mask, output_attentions=True,
                                      output_hidden_states=True)
        if cls_name in ("MvpModel", "MvpForConditionalGeneration", "MvpForQuestionAnswering") and seed == 2:
            dec_ids, dec_mask = batch(seed + 10, t=6, padding="left")
            inputs.update(decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask)
        if cls_name == "MvpForCausalLM" and seed == 2:  # the decoder alone, with cross-attention
            enc = torch.randn(ids.shape[0], 5, ref.config.d_model, generator=torch.Generator().manual_seed(seed))
            enc_mask = torch.ones(ids.shape[0], 5, dtype=torch.long)
            enc_mask[0, 3:] = 0
            inputs.update(encoder_hidden_states=enc, encoder_attention_mask=enc_mask)
        a, b = run_both(ref, ours, **inputs)
        assert_outputs_close(a, b)
        assert list(a.keys()) == list(b.keys())


def test_oracle_cache_quirk(tmp_path: Path) -> None:
    """The oracle's cache has num_hidden_layers (= encoder_layers by default) layers, so it fails
    when the decoder is deeper; ours holds one entry per decoder layer."""
    ref, ours = build("MvpModel", "plain", tmp_path, seed=4, encoder_layers=1, decoder_layers=2)
    ids, mask = batch(4)
    with pytest.raises(IndexError), torch.no_grad():
        ref(input_ids=ids, attention_mask=mask, use_cache=True)
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask, use_cache=False)
    assert_outputs_close(a, b)
    with torch.no_grad():
        cached = ours(input_ids=ids, attention_mask=mask, use_cache=True)
    assert len(cached.past_key_values) == 2
    assert_close(cached.last_hidden_state, b.last_hidden_state)


@pytest.mark.parametrize("cls_name", CLASSES)
def test_tuple_outputs(cls_name: str, tmp_path: Path) -> None:
    ref, ours = build(cls_name, "prompt", tmp_path, seed=3)
    ids, mask = batch(4)
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask, return_dict=False, output_hidden_states=True,
                    output_attentions=True)
    assert isinstance(a, tuple) and len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_close(x, y, what=f"tuple[{i}]")


@pytest.mark.parametrize("cls_name", ["MvpModel", "MvpForCausalLM"])
def test_head_masks(cls_name: str, tmp_path: Path) -> None:
    ref, ours = build(cls_name, "prompt", tmp_path, seed=5)
    cfg = ref.config
    g = torch.Generator().manual_seed(5)
    ids, mask = batch(6)
    dec_heads = torch.rand(cfg.decoder_layers, cfg.decoder_attention_heads, generator=g).round()
    cross_heads = torch.rand(cfg.decoder_layers, cfg.decoder_attention_heads, generator=g)
    inputs: dict[str, Any] = dict(input_ids=ids, attention_mask=mask, output_attentions=True,
                                  head_mask=torch.rand(cfg.encoder_layers, cfg.encoder_attention_heads, generator=g),
                                  cross_attn_head_mask=cross_heads)
    if cls_name == "MvpModel":
        inputs["decoder_head_mask"] = dec_heads
    else:
        inputs.update(head_mask=dec_heads, encoder_hidden_states=torch.randn(3, 4, cfg.d_model, generator=g))
    a, b = run_both(ref, ours, **inputs)
    assert_outputs_close(a, b)


def test_inputs_embeds(tmp_path: Path) -> None:
    ref, ours = build("MvpModel", "prompt_scaled_untied", tmp_path, seed=7)
    g = torch.Generator().manual_seed(7)
    embeds = torch.randn(2, 6, ref.config.d_model, generator=g)
    dec_embeds = torch.randn(2, 4, ref.config.d_model, generator=g)
    a, b = run_both(ref, ours, inputs_embeds=embeds, decoder_inputs_embeds=dec_embeds, output_hidden_states=True)
    assert_outputs_close(a, b)


# ---------------------------------------------------------------------- losses
def test_lm_loss_and_label_shift(tmp_path: Path) -> None:
    ref, ours = build("MvpForConditionalGeneration", "prompt", tmp_path, seed=8)
    ids, mask = batch(8)
    labels, _ = batch(9, t=5)
    labels[1, 3:] = -100
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask, labels=labels)
    assert_close(a.loss, b.loss, atol=LOSS_ATOL, what="loss")
    assert_outputs_close(a, b)
    assert a.past_key_values is None  # labels turn the cache off
    expected = transformers.models.mvp.modeling_mvp.shift_tokens_right(labels, PAD, EOS)
    assert torch.equal(ours.prepare_decoder_input_ids_from_labels(labels), expected)


@pytest.mark.parametrize(
    "num_labels, kind", [(2, "single"), (1, "regression"), (3, "multi")]
)
def test_sequence_classification_losses(num_labels: int, kind: str, tmp_path: Path) -> None:
    ref, ours = build("MvpForSequenceClassification", "plain", tmp_path, seed=10 + num_labels, num_labels=num_labels)
    ids, mask = batch(11)
    g = torch.Generator().manual_seed(11)
    labels = {
        "single": torch.randint(0, num_labels, (3,), generator=g),
        "regression": torch.randn(3, generator=g),
        "multi": torch.randint(0, 2, (3, num_labels), generator=g).float(),
    }[kind]
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask, labels=labels)
    assert ours.config.problem_type == ref.config.problem_type
    assert_close(a.loss, b.loss, atol=LOSS_ATOL, what="loss")
    assert_outputs_close(a, b)


def test_sequence_classification_needs_equal_eos_counts(tmp_path: Path) -> None:
    ref, ours = build("MvpForSequenceClassification", "plain", tmp_path, seed=12)
    ids, mask = batch(12)
    ids[0, 3] = EOS  # two <eos> in the first row, one in the others
    for model in (ref, ours):
        with pytest.raises(ValueError, match="same number of <eos> tokens"):
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
    ids[1:, 3] = EOS  # now every row has two: pooling takes the last
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask)
    assert_outputs_close(a, b)


def test_question_answering_loss(tmp_path: Path) -> None:
    ref, ours = build("MvpForQuestionAnswering", "prompt", tmp_path, seed=13)
    ids, mask = batch(13)
    starts, ends = torch.tensor([1, 4, 50]), torch.tensor([[3], [8], [2]])  # one start beyond the input
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask, start_positions=starts, end_positions=ends)
    assert_close(a.loss, b.loss, atol=LOSS_ATOL, what="loss")
    assert_outputs_close(a, b)
    assert ours.config.num_labels == 2


def test_causal_lm_loss(tmp_path: Path) -> None:
    ref, ours = build("MvpForCausalLM", "plain", tmp_path, seed=14)
    ids, mask = batch(14, padding="left")
    labels = ids.masked_fill(mask == 0, -100)
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask, labels=labels)
    assert_close(a.loss, b.loss, atol=LOSS_ATOL, what="loss")
    assert_outputs_close(a, b)


# ------------------------------------------------------------ cached decoding
@pytest.mark.parametrize("cfg", ["plain", "prompt"])
def test_cached_decoding_matches_full_seq2seq(cfg: str, tmp_path: Path) -> None:
    ref, ours = build("MvpForConditionalGeneration", cfg, tmp_path, seed=15)
    ids, mask = batch(15, padding="left")
    dec_ids, dec_mask = batch(16, t=7, padding="left")
    full_ours, full_ref = run_both(ref, ours, input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids,
                                   decoder_attention_mask=dec_mask, use_cache=True)
    assert_outputs_close(full_ours, full_ref)  # the caches too

    with torch.no_grad():
        encoded = ours.get_encoder()(input_ids=ids, attention_mask=mask)
        past: Any = None
        steps = [slice(0, 3), *(slice(t, t + 1) for t in range(3, dec_ids.shape[1]))]  # prefill 3, then 1 by 1
        for i, step in enumerate(steps):
            out = ours(encoder_outputs=(encoded.last_hidden_state,) if i % 2 else encoded, attention_mask=mask,
                       decoder_input_ids=dec_ids[:, step], decoder_attention_mask=dec_mask[:, : step.stop],
                       past_key_values=past.to_legacy() if i == 2 else past, use_cache=True)
            real = dec_mask[:, step].bool()  # a padding query that sees no key differs, harmlessly
            assert_close(out.logits[real], full_ref.logits[:, step][real], what=f"logits at step {i}")
            past = out.past_key_values
            assert isinstance(past, Cache) and past.get_seq_length() == step.stop
    real = dec_mask.bool()
    # the reference allocates one cache layer per encoder layer (config.num_hidden_layers): those past
    # the decoder's stay empty, and are not compared
    ref_layers = full_ref.past_key_values.to_legacy_cache()
    filled = [layer for layer in ref_layers if any(t is not None for t in layer)]
    assert all(t is None for layer in ref_layers[len(filled):] for t in layer)
    layers = zip(past.to_legacy(), filled, strict=True)
    for i, (ours_layer, ref_layer) in enumerate(layers):
        for j, (x, y) in enumerate(zip(ours_layer, ref_layer, strict=True)):
            if j < 2:  # self-attention keys/values: (B, H, T, Dh), compared at real positions
                x, y = x.transpose(1, 2)[real], y.transpose(1, 2)[real]
            assert_close(x, y, what=f"cache layer {i} entry {j}")


@pytest.mark.parametrize("with_encoder", [False, True])
def test_cached_decoding_matches_full_causal_lm(with_encoder: bool, tmp_path: Path) -> None:
    # the oracle's own cache breaks in its generate(): compare steps with its uncached forward
    ref, ours = build("MvpForCausalLM", "prompt_scaled_untied", tmp_path, seed=17)
    ids, mask = batch(17, t=8, padding="left")
    extra: dict[str, Any] = {}
    if with_encoder:
        g = torch.Generator().manual_seed(17)
        extra = dict(encoder_hidden_states=torch.randn(3, 5, ref.config.d_model, generator=g),
                     encoder_attention_mask=torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [0] + [1] * 4]))
    full_ours, full_ref = run_both(ref, ours, input_ids=ids, attention_mask=mask, use_cache=False, **extra)
    assert_outputs_close(full_ours, full_ref)
    past = None
    with torch.no_grad():
        for t in range(ids.shape[1]):
            step = slice(0, 2) if t == 0 else slice(t + 1, t + 2)
            if step.start >= ids.shape[1]:
                break
            out = ours(input_ids=ids[:, step], attention_mask=mask[:, : step.stop], past_key_values=past,
                       use_cache=True, **extra)
            real = mask[:, step].bool()
            assert_close(out.logits[real], full_ref.logits[:, step][real], what=f"logits at {step}")
            past = out.past_key_values
    assert past.get_seq_length() == ids.shape[1]


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("cfg", ["plain", "prompt_scaled_untied"])
@pytest.mark.parametrize("cls_name", CLASSES)
def test_save_pretrained_loads_in_reference(cls_name: str, cfg: str, tmp_path: Path) -> None:
    _, ours = build(cls_name, cfg, tmp_path, seed=18)
    ours.save_pretrained(tmp_path / "ours")
    back, info = getattr(transformers, cls_name).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    back.eval()
    ids, mask = batch(18)
    a, b = run_both(back, ours, input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert_outputs_close(a, b)


def test_sharded_bin_round_trip(tmp_path: Path) -> None:
    _, ours = build("MvpForConditionalGeneration", "prompt", tmp_path, seed=19)
    ours.save_pretrained(tmp_path / "ours", safe_serialization=False, max_shard_size="20KB")
    again = mvp.MvpForConditionalGeneration.from_pretrained(tmp_path / "ours")
    back = transformers.MvpForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    ids, mask = batch(19)
    a, b = run_both(back, again, input_ids=ids, attention_mask=mask)
    assert_outputs_close(a, b)
    assert again.lm_head.weight is again.model.shared.weight is again.model.encoder.embed_tokens.weight


def test_base_checkpoint_into_heads(tmp_path: Path) -> None:
    build("MvpModel", "prompt", tmp_path, seed=20)
    directory = tmp_path / "oracle-MvpModel-prompt-20"
    ours = mvp.MvpForConditionalGeneration.from_pretrained(directory)
    ref = transformers.MvpForConditionalGeneration.from_pretrained(directory).eval()
    assert torch.count_nonzero(ours.final_logits_bias) == 0
    ids, mask = batch(20)
    a, b = run_both(ref, ours, input_ids=ids, attention_mask=mask)
    assert_outputs_close(a, b)
    # a task checkpoint into the base model: the head is set aside quietly, as in the reference
    _, cg = build("MvpForConditionalGeneration", "prompt", tmp_path, seed=21)
    base = mvp.MvpModel.from_pretrained(tmp_path / "oracle-MvpForConditionalGeneration-prompt-21")
    assert not base.load_report.lines()
    assert torch.equal(base.shared.weight, cg.model.shared.weight)
    # and into the causal LM, whose decoder keeps its own copy of the embeddings
    causal = mvp.MvpForCausalLM.from_pretrained(tmp_path / "oracle-MvpForConditionalGeneration-prompt-21")
    assert torch.equal(causal.model.decoder.embed_tokens.weight, cg.model.shared.weight)
    assert causal.lm_head.weight is causal.model.decoder.embed_tokens.weight
    assert any("model.encoder." in line for line in causal.load_report.lines())


# --------------------------------------------------------- lightweight tuning
def _trainable(model: Any, to_hf: Any = None) -> set[str]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {to_hf(n) for n in names} if to_hf else names


@pytest.mark.parametrize("cls_name", SEQ2SEQ)
def test_lightweight_tuning_trains_the_same_parameters(cls_name: str, tmp_path: Path) -> None:
    ref, ours = build(cls_name, "prompt", tmp_path, seed=22)
    ref.set_lightweight_tuning()
    ours.set_lightweight_tuning()
    expected = _trainable(ref)
    assert expected and all("attn_prompt" in n for n in expected)
    assert _trainable(ours, ours.names.to_hf) == expected


def test_lightweight_tuning_refusals(tmp_path: Path) -> None:
    ref, ours = build("MvpModel", "plain", tmp_path, seed=23)
    with pytest.raises(AssertionError):
        ref.set_lightweight_tuning()
    with pytest.raises(ValueError, match="use_prompt=True"):
        ours.set_lightweight_tuning()
    ref, ours = build("MvpForCausalLM", "prompt", tmp_path, seed=23)
    with pytest.raises(AttributeError):  # the reference's decoder wrapper has no prompts
        ref.set_lightweight_tuning()
    with pytest.raises(ValueError, match="no prompts"):
        ours.set_lightweight_tuning()


def test_prompts_start_fresh_on_a_plain_checkpoint(tmp_path: Path) -> None:
    """The documented recipe: load a prompt-free checkpoint with use_prompt=True, then tune the prompts."""
    _, plain = build("MvpForConditionalGeneration", "plain", tmp_path, seed=24)
    directory = tmp_path / "oracle-MvpForConditionalGeneration-plain-24"
    ours = mvp.MvpForConditionalGeneration.from_pretrained(directory, use_prompt=True, prompt_length=2)
    ref = transformers.MvpForConditionalGeneration.from_pretrained(directory, use_prompt=True, prompt_length=2)
    assert torch.equal(ours.model.decoder.layers[1].ffn.up.weight, plain.model.decoder.layers[1].ffn.up.weight)
    ours.set_lightweight_tuning()
    ref.set_lightweight_tuning()
    assert _trainable(ours, ours.names.to_hf) == _trainable(ref)
    assert ours.model.encoder.self_attn_prompt.up.weight.std() > 0


# ------------------------------------------------------------------- training
def test_dropout_is_active_in_train_mode(tmp_path: Path) -> None:
    _, ours = build("MvpForConditionalGeneration", "prompt", tmp_path, seed=25, dropout=0.3,
                    attention_dropout=0.3, activation_dropout=0.3)
    ids, mask = batch(25)
    with torch.no_grad():
        ours.eval()
        assert torch.equal(ours(input_ids=ids, attention_mask=mask).logits,
                           ours(input_ids=ids, attention_mask=mask).logits)
        ours.train()
        assert not torch.allclose(ours(input_ids=ids, attention_mask=mask).logits,
                                  ours(input_ids=ids, attention_mask=mask).logits)
        prompts = ours.model.encoder.self_attn_prompt
        assert not torch.equal(prompts()[0][0], prompts()[0][0])  # prompt dropout as in the reference
    ours.train()
    ours.set_lightweight_tuning()
    ours(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    assert ours.model.decoder.cross_attn_prompt.down.weight.grad is not None
    assert ours.model.shared.weight.grad is None


def test_fresh_model_init_and_ties() -> None:
    config = MvpConfig(**config_kwargs("prompt"))
    torch.manual_seed(0)
    model = mvp.MvpForConditionalGeneration(config)
    assert model.lm_head.weight is model.model.shared.weight is model.model.decoder.embed_tokens.weight
    assert torch.count_nonzero(model.model.shared.weight[PAD]) == 0
    assert abs(model.model.encoder.layers[0].ffn.up.weight.std().item() - config.init_std) < 0.01
    assert torch.count_nonzero(model.model.encoder.layers[0].self_attn.query.bias) == 0
    untied = mvp.MvpForConditionalGeneration(MvpConfig(**config_kwargs("prompt", tie_word_embeddings=False)))
    assert untied.lm_head.weight is not untied.model.shared.weight
    assert untied.model.encoder.embed_tokens is untied.model.shared
