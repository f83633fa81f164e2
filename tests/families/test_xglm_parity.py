"""XGLM against the reference (transformers 4.56.2): every output, loss, cache and round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.oracle import as_tensors, assert_close, assert_outputs_close, oracle_checkpoint, transformers
from xcli_models import XGLMConfig, XGLMForCausalLM, XGLMModel
from xcli_models.families.xglm.modeling import generation_position_ids
from xcli_models.layers import Cache

#: tiny shapes: odd head counts, an odd d_model (a zero column in the sinusoidal table), other activations
SHAPES = {
    "h3": dict(d_model=24, attention_heads=3, num_layers=2, ffn_dim=40),
    "h5-relu": dict(d_model=20, attention_heads=5, num_layers=3, ffn_dim=36, activation_function="relu"),
    "odd-dim-unscaled": dict(d_model=15, attention_heads=5, num_layers=2, ffn_dim=22, scale_embedding=False,
                             activation_function="gelu_new"),
}
VOCAB = 101


def oracle_config(**overrides):
    values = dict(vocab_size=VOCAB, max_position_embeddings=32, **SHAPES["h3"])
    values.update(overrides)
    return transformers.XGLMConfig(**values)


def pair(tmp_path: Path, seed: int = 0, cls: str = "XGLMForCausalLM", **overrides):
    """(oracle model, our model loaded from the oracle's save_pretrained)."""
    torch.manual_seed(seed)
    ref = getattr(transformers, cls)(oracle_config(**overrides)).eval()
    directory = oracle_checkpoint(ref, tmp_path / f"{cls}-{seed}")
    ours = {"XGLMForCausalLM": XGLMForCausalLM, "XGLMModel": XGLMModel}[cls].from_pretrained(directory)
    assert not ours.load_report.lines()
    return ref, ours


def left_padded(seed: int, lengths: list[int], pad: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, max(lengths)) left-padded with ``pad``, and their attention mask."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), width), generator=gen)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
        ids[row, : width - n] = pad
    return ids, mask


def run_both(ref, ours, **inputs):
    """Forward both models without grad; the oracle gets its own copies (it edits position_ids in place)."""
    with torch.no_grad():
        theirs = ref(**{k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
        mine = ours(**inputs)
    return mine, theirs


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("seed", [0, 1])
def test_causal_lm_every_output(tmp_path, shape, seed):
    ref, ours = pair(tmp_path, seed, **SHAPES[shape])
    ids, mask = left_padded(seed, [9, 5, 1, 7])
    labels = ids.masked_fill(mask == 0, -100)
    mine, theirs = run_both(
        ref, ours, input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True, output_hidden_states=True
    )
    assert set(mine.keys()) == set(theirs.keys())
    assert_outputs_close(mine, theirs)
    assert len(mine.hidden_states) == ref.config.num_layers + 1


@pytest.mark.parametrize("seed", [0, 3])
def test_base_model_every_output(tmp_path, seed):
    ref, ours = pair(tmp_path, seed, cls="XGLMModel", **SHAPES["h5-relu"])
    ids, mask = left_padded(seed, [4, 6, 6])
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, output_attentions=True,
                            output_hidden_states=True)
    assert_outputs_close(mine, theirs)


def test_no_mask_tuple_output_and_config_flags(tmp_path):
    ref, ours = pair(tmp_path, 2, output_hidden_states=True)
    ids, _ = left_padded(2, [6, 6])
    mine, theirs = run_both(ref, ours, input_ids=ids, return_dict=False)
    assert isinstance(mine, tuple) and len(mine) == len(theirs) == 3  # logits, cache, hidden states
    assert_close(mine, theirs)
    mine, theirs = run_both(ref, ours, input_ids=ids, use_cache=False, output_hidden_states=False)
    assert mine.past_key_values is None and mine.hidden_states is None
    assert_outputs_close(mine, theirs)


def test_head_mask_and_inputs_embeds(tmp_path):
    ref, ours = pair(tmp_path, 4, **SHAPES["h5-relu"])
    ids, mask = left_padded(4, [5, 3])
    head_mask = torch.ones(3, 5)
    head_mask[0, 1] = 0.0
    head_mask[2, [0, 4]] = 0.0
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, head_mask=head_mask, output_attentions=True)
    assert_outputs_close(mine, theirs)
    assert mine.attentions[0][:, 1].abs().max() == 0
    embeds = torch.randn(2, 5, 20)
    mine, theirs = run_both(ref, ours, inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
    assert_outputs_close(mine, theirs)
    with pytest.raises(ValueError):
        ours(input_ids=ids, inputs_embeds=embeds)


def test_labels_loss(tmp_path):
    ref, ours = pair(tmp_path, 5)
    ids, mask = left_padded(5, [7, 4, 6])
    labels = ids.clone()
    labels[0, 2] = -100
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, labels=labels)
    assert abs(mine.loss.item() - theirs.loss.item()) <= 1e-5
    mine, theirs = run_both(ref, ours, input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(11))
    assert abs(mine.loss.item() - theirs.loss.item()) <= 1e-5
    assert mine.loss.dtype == torch.float32


def test_positions_beyond_the_table(tmp_path):
    ref, ours = pair(tmp_path, 6, max_position_embeddings=8)
    ids, _ = left_padded(6, [13, 13])
    mine, theirs = run_both(ref, ours, input_ids=ids)
    assert_outputs_close(mine, theirs)


# ------------------------------------------------------------------ left padding
def test_generation_positions_under_left_padding(tmp_path):
    """With generate-style position ids a left-padded row gives the unpadded row's logits."""
    ref, ours = pair(tmp_path, 7, **SHAPES["h5-relu"])
    ids, mask = left_padded(7, [8, 3, 5])
    positions = generation_position_ids(mask)
    reference_positions = mask.long().cumsum(-1) - 1
    reference_positions.masked_fill_(mask == 0, 1)  # what the reference's generate passes
    assert torch.equal(positions, reference_positions)
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, position_ids=positions,
                            output_attentions=True, output_hidden_states=True)
    assert_outputs_close(mine, theirs)
    for row, n in enumerate([8, 3, 5]):
        with torch.no_grad():
            alone = ours(input_ids=ids[row:row + 1, -n:]).logits
        assert_close(mine.logits[row:row + 1, -n:], alone, what=f"row {row}")


# ------------------------------------------------------------------ cached decoding
@pytest.mark.parametrize("seed", [0, 8])
def test_cached_steps_equal_full_recomputation(tmp_path, seed):
    ref, ours = pair(tmp_path, seed, **SHAPES["h3"])
    ids, mask = left_padded(seed, [6, 2, 4], pad=1)
    extra = torch.randint(3, VOCAB, (3, 4), generator=torch.Generator().manual_seed(seed))
    full_ids = torch.cat([ids, extra], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(extra)], dim=1)
    full_pos = generation_position_ids(full_mask)
    with torch.no_grad():
        full = ours(input_ids=full_ids, attention_mask=full_mask, position_ids=full_pos)
    width = ids.shape[1]

    # prefill, then one token at a time through the same forward; the oracle keeps its own cache
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, position_ids=full_pos[:, :width])
    assert isinstance(mine.past_key_values, Cache)
    assert_outputs_close(mine, theirs)
    cache, their_cache = mine.past_key_values, theirs.past_key_values
    for step in range(extra.shape[1]):
        end = width + step + 1
        with torch.no_grad():
            mine = ours(input_ids=extra[:, step:step + 1], attention_mask=full_mask[:, :end],
                        position_ids=full_pos[:, end - 1:end], past_key_values=cache, output_attentions=True)
            theirs = ref(input_ids=extra[:, step:step + 1], attention_mask=full_mask[:, :end],
                         position_ids=full_pos[:, end - 1:end].clone(), past_key_values=their_cache,
                         output_attentions=True)
        assert mine.past_key_values is cache and cache.get_seq_length() == end
        assert_outputs_close(mine, theirs)
        assert_close(mine.logits[:, 0], full.logits[:, end - 1], what=f"step {step} vs full")
    # at padding positions the keys differ (a fully masked query row attends to every key of its
    # call, as in the reference); those keys are masked out of every real token's attention
    real = full_mask.bool()[:, None, :, None]
    assert_close([t * real for t in as_tensors(cache)], [t * real for t in as_tensors(full.past_key_values)],
                 what="cache vs full, real positions")


def test_default_positions_follow_the_cache_and_legacy_tuples(tmp_path):
    """Without position_ids a step continues at the cached length (the reference's forward);
    past_key_values may be the reference's tuple layout."""
    ref, ours = pair(tmp_path, 9)
    ids, _ = left_padded(9, [7, 7])
    with torch.no_grad():
        full = ours(input_ids=ids)
        prefix = ours(input_ids=ids[:, :5])
        legacy = prefix.past_key_values.to_legacy()
        step = ours(input_ids=ids[:, 5:], past_key_values=legacy)
        their_prefix = ref(input_ids=ids[:, :5])
        from_their_cache = ours(input_ids=ids[:, 5:], past_key_values=their_prefix.past_key_values)
        their_step = ref(input_ids=ids[:, 5:], past_key_values=their_prefix.past_key_values)
    assert_close(step.logits, full.logits[:, 5:], what="two-token step vs full")
    assert_outputs_close(step, their_step)
    assert_outputs_close(from_their_cache, their_step)  # the reference's DynamicCache is accepted too


# ------------------------------------------------------------------ cross-attention
def test_cross_attention(tmp_path):
    ref, ours = pair(tmp_path, 10, add_cross_attention=True, **SHAPES["h5-relu"])
    ids, mask = left_padded(10, [5, 3])
    memory = torch.randn(2, 6, 20, generator=torch.Generator().manual_seed(10))
    memory_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    cross_head_mask = torch.ones(3, 5)
    cross_head_mask[1, 2] = 0.0
    inputs = dict(encoder_hidden_states=memory, encoder_attention_mask=memory_mask)
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, cross_attn_head_mask=cross_head_mask,
                            output_attentions=True, output_hidden_states=True, labels=ids, **inputs)
    assert_outputs_close(mine, theirs)
    assert len(mine.cross_attentions) == 3

    with torch.no_grad():  # the cross keys are computed once and reused in later steps
        full = ours(input_ids=ids, attention_mask=mask, **inputs)
        first = ours(input_ids=ids[:, :3], attention_mask=mask[:, :3], **inputs)
        cache = first.past_key_values
        keys = cache[0].cross_attn.key.data_ptr()
        their_first = ref(input_ids=ids[:, :3], attention_mask=mask[:, :3], **inputs)
        their_cache = their_first.past_key_values
        for t in range(3, 5):
            step = ours(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=cache, **inputs)
            their_step = ref(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=their_cache,
                             **inputs)
            assert_outputs_close(step, their_step)  # self and cross caches included
            assert_close(step.logits[:, 0], full.logits[:, t], what=f"cross step {t}")
    assert cache[0].cross_attn.key.data_ptr() == keys
    assert len(their_step.past_key_values.to_legacy_cache()[0]) == 4
    with pytest.raises(ValueError, match="add_cross_attention"):
        pair(tmp_path / "plain", 10)[1](input_ids=ids, encoder_hidden_states=memory)


# ------------------------------------------------------------------ saving, training, config
@pytest.mark.parametrize("tie", [True, False])
def test_save_pretrained_loads_in_the_reference(tmp_path, tie):
    ref, ours = pair(tmp_path, 11, tie_word_embeddings=tie)
    out = tmp_path / "ours"
    ours.save_pretrained(out)
    reloaded = transformers.XGLMForCausalLM.from_pretrained(out).eval()
    ids, mask = left_padded(11, [6, 4])
    mine, theirs = run_both(reloaded, ours, input_ids=ids, attention_mask=mask, labels=ids, output_hidden_states=True)
    assert_outputs_close(mine, theirs)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as stored:
        assert ("lm_head.weight" in stored.keys()) == (not tie)
        assert set(stored.keys()) <= set(ref.state_dict())
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tie


def test_train_mode_dropout_and_gradients(tmp_path):
    _, ours = pair(tmp_path, 12, dropout=0.3, attention_dropout=0.3, activation_dropout=0.3)
    ids, mask = left_padded(12, [6, 6])
    ours.train()
    a = ours(input_ids=ids, attention_mask=mask, labels=ids)
    b = ours(input_ids=ids, attention_mask=mask, labels=ids)
    assert not torch.allclose(a.logits, b.logits)
    a.loss.backward()
    assert all(p.grad is not None for p in ours.parameters())
    ours.eval()
    with torch.no_grad():
        assert torch.equal(ours(input_ids=ids).logits, ours(input_ids=ids).logits)

    _, quiet = pair(tmp_path / "q", 12, dropout=0.0, attention_dropout=0.0)
    with torch.no_grad():
        expected = quiet(input_ids=ids, attention_mask=mask).logits
        quiet.train()
        assert_close(quiet(input_ids=ids, attention_mask=mask).logits, expected, what="train without dropout")


def test_config_fields_and_aliases():
    reference = transformers.XGLMConfig().to_dict()
    ours = XGLMConfig()
    for name, value in XGLMConfig.defaults.items():
        assert reference[name] == value, name
    documented = {"vocab_size", "max_position_embeddings", "d_model", "ffn_dim", "num_layers", "attention_heads",
                  "activation_function", "dropout", "attention_dropout", "activation_dropout", "layerdrop",
                  "init_std", "scale_embedding", "use_cache"}
    assert documented <= set(XGLMConfig.defaults)
    assert set(XGLMConfig.aliases.items()) == set(transformers.XGLMConfig.attribute_map.items())
    config = XGLMConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=3)
    assert (config.d_model, config.attention_heads, config.num_layers) == (64, 4, 3)
    assert config.hidden_size == 64 and ours.num_hidden_layers == 24


def test_fresh_model_initialisation():
    torch.manual_seed(0)
    model = XGLMForCausalLM(XGLMConfig(vocab_size=500, d_model=64, ffn_dim=64, num_layers=1, attention_heads=4))
    weight = model.model.embed_tokens.weight
    assert weight[1].abs().max() == 0 and abs(weight.std().item() - 0.02) < 0.002
    assert model.lm_head.weight is weight
    layer = model.model.layers[0]
    assert layer.self_attn.query.bias.abs().max() == 0 and torch.equal(layer.ffn_pre_norm.weight, torch.ones(64))


def test_float16_fully_masked_rows_stay_finite(tmp_path):
    """Large scores plus the float16 mask minimum overflow to -inf; the explicit attention path
    (output_attentions) must clamp them as the reference does instead of producing NaN."""
    ref, ours = pair(tmp_path, 13)
    with torch.no_grad():  # every query scores its own key very negatively: q . k = -3000 |q|^2
        for attn, query, key in ((ref.model.layers[0].self_attn, "q_proj", "k_proj"),
                                 (ours.model.layers[0].self_attn, "query", "key")):
            getattr(attn, key).weight.copy_(getattr(attn, query).weight * -3000.0)
            getattr(attn, key).bias.copy_(getattr(attn, query).bias * -3000.0)
    ref, ours = ref.half(), ours.half()
    ids, mask = left_padded(13, [6, 2])
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, output_attentions=True)
    assert torch.isfinite(theirs.logits).all() and torch.isfinite(mine.logits).all()
    with torch.no_grad():
        fast = ours(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert (mine.logits[real].float() - fast[real].float()).abs().max() < 0.05
    assert (mine.logits[real].float() - theirs.logits[real].float()).abs().max() < 0.05


def test_four_dimensional_attention_mask(tmp_path):
    """A (B, 1, T, S) mask of ones and zeros replaces the causal mask, as in the reference."""
    ref, ours = pair(tmp_path, 14)
    ids, _ = left_padded(14, [5, 5])
    mask = torch.tril(torch.ones(5, 5)).expand(2, 1, 5, 5).clone()
    mask[1, 0, 3, 1] = 0.0  # a hole
    mask[0, 0, 1, 3] = 1.0  # and a glimpse of the future
    mine, theirs = run_both(ref, ours, input_ids=ids, attention_mask=mask, output_attentions=True)
    assert_outputs_close(mine, theirs)
