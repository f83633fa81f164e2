"""A decode step through a whole stack in one call of our kernels (xcli_models/layers/fused.py).

The step gives what the layers give as modules, to float32 rounding: the same hidden states, the
same keys and values written into the cache, the same scores and tokens from generation, for pre-
and post-norm layers, cross-attention to an encoder, a padding mask, beams and batches (AMX's tiles
from their row count on); it is taken for int8 weight-only stacks, and for float32 ones where
``kernels.inference`` sends float32 products to our kernel; every call it cannot serve runs the
modules.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from xcli_models import MvpConfig, MvpForConditionalGeneration, XGLMConfig, XGLMForCausalLM, kernels, native
from xcli_models.layers import Attention, Cache, FeedForward, TransformerLayer, fused, projections, run_layers
from xcli_models.quantize import quantize_weight_only

pytestmark = pytest.mark.skipif(native.int8_kernel() is None, reason=f"no native kernel here: {native._load()[1]}")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every fused step taken (the kernels' ``decode_layers`` counted)."""
    found = native.int8_kernel()
    taken: list[int] = []
    real = found.decode_layers

    def counted(*arguments):
        taken.append(arguments[5])
        return real(*arguments)

    monkeypatch.setattr(found, "decode_layers", counted)
    return taken


def _switch(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    monkeypatch.setenv(fused.SWITCH, "1" if on else "0")


def _xglm(seed: int = 0, *, int8: bool = True) -> XGLMForCausalLM:
    torch.manual_seed(seed)
    config = XGLMConfig(vocab_size=96, d_model=48, num_layers=3, attention_heads=4, ffn_dim=80,
                        max_position_embeddings=128)
    model = XGLMForCausalLM(config).eval()
    if int8:
        quantize_weight_only(model)
    return model


def _mvp(seed: int = 0, *, int8: bool) -> MvpForConditionalGeneration:
    """MVP: post-norm decoder layers with cross-attention to the encoder."""
    torch.manual_seed(seed)
    config = MvpConfig(vocab_size=96, d_model=48, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=80, decoder_ffn_dim=80, max_position_embeddings=64)
    model = MvpForConditionalGeneration(config).eval()
    for norm in (m for m in model.modules() if isinstance(m, nn.LayerNorm)):  # not the identity they start as
        nn.init.normal_(norm.weight, 1.0, 0.2)
        nn.init.normal_(norm.bias, 0.0, 0.2)
    for layer in model.model.decoder.layers:  # scores far from 0, so that their scale and mask tell
        for attention in (layer.self_attn, layer.cross_attn):
            nn.init.normal_(attention.query.weight, 0.0, 0.3)
            nn.init.normal_(attention.key.weight, 0.0, 0.3)
    if int8:
        quantize_weight_only(model)
    return model


def _steps(model: XGLMForCausalLM, monkeypatch: pytest.MonkeyPatch, on: bool, ids: torch.Tensor,
           mask: torch.Tensor | None, follow: torch.Tensor) -> tuple[list[torch.Tensor], Cache]:
    """A prompt (the modules), then the tokens of ``follow`` (B, steps) one step at a time, in a
    command's context (``kernels.inference``): each step's logits, and the cache after."""
    _switch(monkeypatch, on)
    logits = []
    with kernels.inference():
        out = model(ids, attention_mask=mask, use_cache=True)
        cache = out.past_key_values
        for i in range(follow.shape[1]):
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            positions = None if mask is None else (mask.long().cumsum(-1) - 1).clamp_min(0)[:, -1:]
            out = model(follow[:, i:i + 1], attention_mask=mask, position_ids=positions, past_key_values=cache,
                        use_cache=True)
            logits.append(out.logits)
    return logits, cache


@pytest.mark.parametrize("batch", [1, 3, native.AMX_FROM_ROWS + 2])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("int8", [True, False])
def test_a_step_gives_the_layers_numbers_and_cache(monkeypatch: pytest.MonkeyPatch, calls: list[int], batch: int,
                                                    padded: bool, int8: bool) -> None:
    """Every decode step of an XGLM, int8 or float32, is taken whole (batch 9, int8: AMX's tiles
    where the processor has them), with the logits and the cached keys and values of the modules to
    float32 rounding, left padding included."""
    model = _xglm(int8=int8)
    generator = torch.Generator().manual_seed(batch)
    ids = torch.randint(4, 96, (batch, 6), generator=generator)
    mask = None
    if padded:
        mask = torch.ones(batch, 6, dtype=torch.long)
        mask[0, :3] = 0  # left padding: the first row's first three keys blocked
    follow = torch.randint(4, 96, (batch, 5), generator=generator)
    apart, apart_cache = _steps(model, monkeypatch, False, ids, mask, follow)
    assert calls == []
    whole, whole_cache = _steps(model, monkeypatch, True, ids, mask, follow)
    assert calls == [batch] * 5
    for a, w in zip(apart, whole, strict=True):
        torch.testing.assert_close(w, a, atol=2e-5, rtol=1e-5)
    for a, w in zip(apart_cache, whole_cache, strict=True):
        assert w.self_attn.length == a.self_attn.length == 11
        torch.testing.assert_close(w.self_attn.key, a.self_attn.key, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(w.self_attn.value, a.self_attn.value, atol=2e-5, rtol=1e-5)


def test_float32_steps_are_taken_only_where_the_context_sends_products_to_our_kernel(
        monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    """Float32 layers keep torch's own products outside ``kernels.inference`` (and in its
    row-invariant form, the tasks'), so the step is not taken there; int8 layers take it anywhere."""
    ids, follow = torch.tensor([[5, 9, 3, 7]]), torch.tensor([[4, 8]])
    model = _xglm(int8=False)
    for context in (torch.inference_mode, lambda: kernels.inference(batch_invariant=True)):
        with context():
            model(follow[:, :1], past_key_values=model(ids, use_cache=True).past_key_values, use_cache=True)
    assert calls == []
    with torch.inference_mode():
        model = _xglm()
        model(follow[:, :1], past_key_values=model(ids, use_cache=True).past_key_values, use_cache=True)
    assert calls == [1]


@pytest.mark.parametrize("int8", [True, False])
@pytest.mark.parametrize("beams", [1, 2])
def test_encoder_decoder_steps_attend_to_the_encoder_as_the_modules_do(
        monkeypatch: pytest.MonkeyPatch, calls: list[int], int8: bool, beams: int) -> None:
    """MVP's decode steps (post-norm layers, cross-attention to the encoder's cached keys and
    values under its padding mask) give the modules' scores at every step, and their tokens."""
    model = _mvp(int8=int8)
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(4, 96, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded input: its last keys blocked in the cross-attention
    out = {}
    for on in (False, True):
        _switch(monkeypatch, on)
        out[on] = model.generate(ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, num_beams=beams,
                                 do_sample=False, output_scores=True, return_dict_in_generate=True)
    assert len(calls) == 5 and set(calls) == {3 * beams}
    assert torch.equal(out[True].sequences, out[False].sequences)
    for a, w in zip(out[False].scores, out[True].scores, strict=True):
        torch.testing.assert_close(w, a, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("beams", [1, 3])
def test_generation_gives_the_same_tokens(monkeypatch: pytest.MonkeyPatch, calls: list[int], beams: int) -> None:
    """Greedy and beam search (the cache reordered between steps) give the modules' tokens."""
    model = _xglm(seed=1)
    ids = torch.randint(4, 96, (2, 5), generator=torch.Generator().manual_seed(1))
    out = {}
    for on in (False, True):
        _switch(monkeypatch, on)
        with torch.inference_mode():
            out[on] = model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False, num_beams=beams)
    assert torch.equal(out[True], out[False])
    assert len(calls) == 11 and set(calls) == {2 * beams}


def _post_norm_stack(dim: int = 48, heads: int = 4, *, eps: float = 1e-5) -> nn.ModuleList:
    """Two post-norm layers (XLM's and MVP's placement), the second's first norm without a weight
    or bias and with a score scale of its own; head_dim 12, not a multiple of the kernel's 16 lanes."""
    torch.manual_seed(2)
    layers = nn.ModuleList()
    for i in range(2):
        attention = Attention(heads, **projections(dim), scale=0.3 if i else None)
        layer = TransformerLayer.with_norms("post", attention, FeedForward(dim, 80, "gelu"), dim, eps=eps)
        layers.append(layer)
    layers[1].self_attn_post_norm = nn.LayerNorm(dim, eps=1e-3, elementwise_affine=False)
    for norm in (m for m in layers.modules() if isinstance(m, nn.LayerNorm) and m.weight is not None):
        nn.init.normal_(norm.weight, 1.0, 0.2)
        nn.init.normal_(norm.bias, 0.0, 0.2)
    quantize_weight_only(layers)
    return layers.eval()


def _run(layers: nn.ModuleList, x: torch.Tensor, cache: Cache, mask: torch.Tensor | None, **options) -> torch.Tensor:
    with torch.inference_mode():
        return run_layers(layers, x, shared={"self_mask": mask}, cache=cache, **options).last_hidden_state


def _prefilled(layers: nn.ModuleList, prompt: torch.Tensor) -> Cache:
    cache = Cache(len(layers))
    steps = prompt.shape[1]
    causal = torch.full((steps, steps), torch.finfo(torch.float32).min).triu(1)[None, None]
    _run(layers, prompt, cache, causal)
    return cache


@pytest.mark.parametrize("mask_rows", [None, 1, 2])
@pytest.mark.parametrize("dropped", [0, 2])
def test_post_norm_layers_masks_and_a_sliding_window(monkeypatch: pytest.MonkeyPatch, calls: list[int],
                                                     mask_rows: int | None, dropped: int) -> None:
    """Post-norm layers (a norm without weight or bias among them) with a scale of their own, an
    additive mask for every row or one row for all (a key blocked, a row with every key blocked:
    zeros, as torch's attention gives them), and a cache whose first steps were dropped (a sliding
    window) give the modules' numbers."""
    layers = _post_norm_stack()
    generator = torch.Generator().manual_seed(3)
    prompt = torch.randn(2, 4, 48, generator=generator)
    x = torch.randn(2, 1, 48, generator=generator)
    mask = None
    if mask_rows is not None:
        mask = torch.zeros(mask_rows, 1, 1, 6 - dropped)
        mask[0, ..., 1] = torch.finfo(torch.float32).min
        if mask_rows == 2:
            mask[1] = float("-inf")
    results = {}
    for on in (False, True):
        _switch(monkeypatch, False)
        cache = _prefilled(layers, prompt)
        _run(layers, torch.randn(2, 1, 48, generator=torch.Generator().manual_seed(5)), cache, None)
        for layer_cache in cache:  # the buffers are the cache's own now: dropping moves their start
            layer_cache.self_attn.drop_front(dropped)
        _switch(monkeypatch, on)
        results[on] = (_run(layers, x, cache, mask), cache)
    assert len(calls) == 1
    torch.testing.assert_close(results[True][0], results[False][0], atol=2e-5, rtol=1e-5)
    for a, w in zip(results[False][1], results[True][1], strict=True):
        assert w.self_attn.length == a.self_attn.length == 6 - dropped
        torch.testing.assert_close(w.self_attn.key, a.self_attn.key, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(w.self_attn.value, a.self_attn.value, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["switched off", "attention weights asked", "head mask", "hidden states asked",
                                  "gradients on", "a float32 layer", "two tokens", "a mask of another length",
                                  "encoder states", "a norm's weight of another size"])
def test_calls_it_cannot_serve_run_the_modules(monkeypatch: pytest.MonkeyPatch, calls: list[int], case: str) -> None:
    """Whatever the step cannot serve runs the layers as modules, with their numbers; nothing is
    written into the cache twice."""
    layers = _post_norm_stack()
    generator = torch.Generator().manual_seed(4)
    prompt, x = torch.randn(2, 4, 48, generator=generator), torch.randn(2, 1, 48, generator=generator)
    options: dict = {}
    shared: dict = {"self_mask": None}
    if case == "switched off":
        _switch(monkeypatch, False)
    elif case == "attention weights asked":
        options["output_attentions"] = True
    elif case == "head mask":
        options["per_layer"] = {"head_mask": torch.ones(2, 4)}
    elif case == "hidden states asked":
        options["output_hidden_states"] = True
    elif case == "a float32 layer":
        layers = copy.deepcopy(layers)
        layers[1].ffn.down = nn.Linear(80, 48)
    elif case == "two tokens":
        x = torch.randn(2, 2, 48, generator=generator)
        shared["self_mask"] = torch.zeros(1, 1, 2, 6)
    elif case == "a mask of another length":
        shared["self_mask"] = torch.zeros(1, 1, 1, 7)
    elif case == "encoder states":  # (these layers have no cross-attention to give them to)
        shared["memory"] = torch.randn(2, 3, 48, generator=generator)
    cache = _prefilled(layers, prompt)
    length = cache.get_seq_length()
    if case == "gradients on":
        with torch.enable_grad():
            out = run_layers(layers, x, shared=shared, cache=cache, **options).last_hidden_state
    elif case == "a mask of another length":
        with pytest.raises(RuntimeError):  # the modules' own complaint, not a step of the kernels
            _run(layers, x, cache, shared["self_mask"], **options)
        out = None
    elif case == "a norm's weight of another size":  # never read past its end: the modules complain
        layers[0].ffn_post_norm.weight = nn.Parameter(torch.ones(40))
        with pytest.raises(RuntimeError):
            _run(layers, x, cache, None, **options)
        out = None
    else:
        out = run_layers(layers, x, shared=shared, cache=cache, **options).last_hidden_state
    assert calls == []
    if out is not None:
        assert cache.get_seq_length() == length + x.shape[1]
        expected = _run(layers, x, _prefilled(layers, prompt), shared["self_mask"], **options)
        torch.testing.assert_close(out, expected)


def test_a_quantized_checkpoints_steps_are_taken_whole(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                       calls: list[int]) -> None:
    """An int8 checkpoint (``xcli convert --quantize int8``) loaded for generation (int8 weights
    times float inputs, as ``generate`` loads it) runs its decode steps as one call too, with the
    tokens of on-the-fly quantization."""
    from xcli_models.auto import AutoModel
    from xcli_models.convert import convert_checkpoint

    _xglm(int8=False).save_pretrained(tmp_path / "float")
    convert_checkpoint(tmp_path / "float", tmp_path / "int8", quantize="int8")
    stored = AutoModel.class_for(tmp_path / "int8").from_pretrained(tmp_path / "int8", weight_only=True)
    ids = torch.tensor([[5, 9, 3, 7], [2, 8, 8, 1]])
    tokens = stored.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert len(calls) == 5
    assert torch.equal(tokens, _xglm().generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False))
