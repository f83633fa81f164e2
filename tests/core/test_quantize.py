"""``--quantize int8``: dynamic int8 products (xcli_models.quantize) for every family and command.

The int8 linear layer stays within its error bound of the float one and is exact in rows (a row's
result never depends on the other rows, so batch invariance holds); every head of every family
that classify, fill-mask, qa, score and generate serve runs quantized, close to float32; the
command line refuses what int8 cannot do and generate says its text may differ.
"""

from __future__ import annotations

import types

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from xcli.app import app
from xcli_models.quantize import Int8Linear, int8_available, quantize_dynamic_int8
from xcli_models.registry import capabilities, heads_for

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not int8_available(), reason="this torch has no oneDNN int8 linear"),
]
runner = CliRunner()


@pytest.mark.parametrize(("rows", "inputs", "outputs"), [(1, 64, 32), (7, 128, 384), (40, 768, 768), (3, 96, 2)])
def test_an_int8_linear_is_within_its_error_bound(rows: int, inputs: int, outputs: int) -> None:
    generator = torch.Generator().manual_seed(rows)
    linear = torch.nn.Linear(inputs, outputs)
    with torch.no_grad():
        linear.weight.normal_(generator=generator)
        linear.bias.normal_(generator=generator)
    x = torch.randn(rows, inputs, generator=generator) * 3
    layer = Int8Linear(linear.weight, linear.bias)
    with torch.inference_mode():
        exact, got = linear(x), layer(x)
    w_scale = linear.weight.abs().amax(dim=1) / 127  # (outputs,)
    x_scale = x.abs().amax(dim=1, keepdim=True) / 127  # (rows, 1)
    # |x.w - (x/sx rounded).(w/sw rounded) sx sw| <= sx/2 sum|w| + sw/2 sum|x| + n sx sw / 4
    bound = (x_scale / 2 * linear.weight.abs().sum(dim=1) + w_scale / 2 * x.abs().sum(dim=1, keepdim=True)
             + inputs * x_scale * w_scale / 4)
    assert got.shape == exact.shape and got.dtype == torch.float32
    assert bool(((got - exact).abs() <= bound * 1.001 + 1e-4).all())
    assert float((got - exact).abs().max() / exact.abs().max()) < 0.05


def test_an_int8_linear_is_exact_in_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    layer = Int8Linear(torch.randn(300, 96, generator=generator), torch.randn(300, generator=generator))
    x = torch.randn(33, 96, generator=generator)
    with torch.inference_mode():
        together = layer(x)
        alone = torch.cat([layer(x[i : i + 1]) for i in range(len(x))])
        shaped = layer(x.reshape(3, 11, 96))
    assert torch.equal(together, alone) and torch.equal(shaped.reshape(33, 300), together)


def test_a_layer_packs_once_when_its_first_products_come_from_two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Int8Linear packs its weights for oneDNN on its first product; a served model's first
    products can come from two threads at once: both get the product, and it is packed once."""
    import threading
    import time

    from xcli_models import quantize

    packings = []

    def slow(int8: torch.Tensor) -> torch.Tensor:
        packings.append(1)
        time.sleep(0.05)  # the other thread arrives meanwhile
        return torch.ops.onednn.qlinear_prepack(int8, None)

    monkeypatch.setattr(quantize, "_prepack", slow)
    generator = torch.Generator().manual_seed(0)
    layer = Int8Linear(torch.randn(32, 64, generator=generator), torch.randn(32, generator=generator))
    x = torch.randn(5, 64, generator=generator)
    results: list[torch.Tensor] = []
    threads = [threading.Thread(target=lambda: results.append(layer(x))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and torch.equal(results[0], results[1]) and len(packings) == 1
    assert layer.int8 is None and torch.equal(layer(x), results[0])


def test_a_transposed_weight_is_packed_as_its_values() -> None:
    weight = torch.randn(64, 48).t()  # not contiguous, as XLNet's per-head projections
    layer = Int8Linear(weight, None)
    x = torch.randn(5, 64)
    with torch.inference_mode():
        assert float((layer(x) - x @ weight.t()).abs().max() / (x @ weight.t()).abs().max()) < 0.05


COMMANDS = [(command, name) for command in ("classify", "fill-mask", "qa", "score", "generate")
            for name in heads_for(command)]


@pytest.mark.parametrize(("command", "class_name"), COMMANDS, ids=[f"{c}-{n}" for c, n in COMMANDS])
def test_every_head_runs_quantized_close_to_float(tmp_path: Path, command: str, class_name: str) -> None:
    from task_fixtures import build_native

    model = build_native(tmp_path / "m", class_name, **({"num_labels": 3} if command == "classify" else {}))
    caps = capabilities(class_name)
    record = {"text": "The cat sat on the mat <mask> ." if command == "fill-mask" else "The cat sat on the mat."}
    if command == "qa":
        record = {"question": "Who sat?", "context": "The cat sat on the mat."}
    if command == "classify" and caps.classify == "choice":
        record["choices"] = ["on the mat", "in the sky"]
    if command == "score" and caps.generate == "seq2seq":
        record["target"] = "a cat"
    extra = {"generate": ["--max-new-tokens", "4"], "score": ["--pll"] if caps.fill_mask else []}.get(command, [])
    source = json.dumps(record) + "\n"
    args = [command, "-m", str(model), "--device", "cpu", "--no-server", *extra]
    floats = runner.invoke(app, args, input=source)
    ints = runner.invoke(app, [*args, "--quantize", "int8"], input=source)
    assert floats.exit_code == 0 and ints.exit_code == 0, ints.stderr
    a, b = json.loads(floats.stdout), json.loads(ints.stdout)
    assert a.keys() == b.keys()
    if command == "score":
        assert abs(a["logprob"] - b["logprob"]) <= 0.05 * abs(a["logprob"]) + 0.5
    if command == "generate":
        assert "may differ from float32" in ints.stderr


def test_quantized_models_are_batch_invariant_and_agree_with_float() -> None:
    texts = "".join(json.dumps({"text": t}) + "\n" for t in [
        "a gripping, funny film", "a dull, lifeless mess", "the best film of the year", "it is", "tedious",
        "an hour and a half of tedium", "warm, witty and wise", "a gripping, funny film"])
    outputs = [runner.invoke(app, ["classify", "-q", "--no-server", "--quantize", "int8", "-b", b], input=texts)
               for b in ("1", "3", "16")]
    assert outputs[0].stdout == outputs[1].stdout == outputs[2].stdout and outputs[0].stdout
    floats = runner.invoke(app, ["classify", "-q", "--no-server", "-b", "16"], input=texts).stdout
    labels = [[json.loads(line)["label"] for line in out.splitlines()] for out in (outputs[0].stdout, floats)]
    assert labels[0] == labels[1]


def test_what_int8_cannot_do_is_a_usage_error() -> None:
    result = runner.invoke(app, ["classify", "--no-server", "--quantize", "int8", "--dtype", "bfloat16", "x"])
    assert result.exit_code == 2 and "computes in float32" in result.stderr
    result = runner.invoke(app, ["classify", "--no-server", "--quantize", "int4", "x"])
    assert result.exit_code == 2
    auto = runner.invoke(app, ["classify", "-q", "--no-server", "--quantize", "int8", "--dtype", "auto", "x"])
    plain = runner.invoke(app, ["classify", "-q", "--no-server", "--quantize", "int8", "x"])
    assert auto.exit_code == 0 and auto.stdout == plain.stdout  # auto: float32 around the int8 products


def test_a_model_has_its_projections_replaced() -> None:
    from xcli_models import XLNetConfig, XLNetForSequenceClassification

    model = XLNetForSequenceClassification(XLNetConfig(vocab_size=50, d_model=16, n_layer=2, n_head=2, d_inner=24))
    replaced = quantize_dynamic_int8(model)
    assert replaced == 2 * (5 + 2) + 2  # per layer q, k, v, o, r and the two feed-forward; summary and logits
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_weight_only_int8_for_generation_is_close_to_float(monkeypatch: pytest.MonkeyPatch) -> None:
    from xcli.model_commands import quantized
    from xcli_models import XGLMConfig, XGLMForCausalLM, hardware, native
    from xcli_models.quantize import Int8WeightOnlyLinear

    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    layer = Int8WeightOnlyLinear(linear.weight, linear.bias)
    x = torch.randn(3, 5, 256, generator=generator)
    with torch.inference_mode():
        exact, got = linear(x), layer(x)
    assert got.shape == exact.shape and got.dtype == torch.float32
    assert float((got - exact).abs().max() / exact.abs().max()) < 0.03  # int8 weights, bfloat16 inputs at worst
    config = XGLMConfig(vocab_size=64, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                        max_position_embeddings=64)
    # weight-only where a weight-only kernel is fast: torch's with fast bfloat16, or xcli's own
    for fast, own, kind in ((True, False, Int8WeightOnlyLinear), (False, True, Int8WeightOnlyLinear),
                            (False, False, Int8Linear)):
        monkeypatch.setattr(hardware, "_cpu", lambda fast=fast: ("cpu", frozenset({"amx_bf16"} if fast else ())))
        stand_in = types.SimpleNamespace(amx=False)  # "our kernel is here" (its layers are only built)
        monkeypatch.setattr(native, "int8_kernel", lambda own=own: stand_in if own else None)
        model = quantized(XGLMForCausalLM(config).eval(), generating=True)
        kinds = {type(m) for m in model.modules()} & {Int8Linear, Int8WeightOnlyLinear}
        assert kinds == {kind}


def test_weight_only_int8_for_many_rows_dequantizes_to_the_same_quantized_product(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AMX's tiles, a prompt's rows (from NATIVE_BELOW_ROWS on with our kernel, from
    DEQUANTIZE_FROM_ROWS with torch's) take the bfloat16 product of the dequantized weight: the same
    int8 weights, within the float error of the row-by-row kernel, and the same numbers run to run."""
    from xcli_models import native
    from xcli_models.quantize import NATIVE_BELOW_ROWS, Int8WeightOnlyLinear

    monkeypatch.setenv(native.AMX_SWITCH, "0")
    native._load.cache_clear()
    try:
        generator = torch.Generator().manual_seed(0)
        linear = torch.nn.Linear(256, 5000)  # more outputs than a chunk
        layer = Int8WeightOnlyLinear(linear.weight, linear.bias)
        x = torch.randn(NATIVE_BELOW_ROWS + 3, 256, generator=generator)
        with torch.inference_mode():
            exact, many = linear(x), layer(x)
            one_by_one = torch.cat([layer(row[None]) for row in x])
            assert torch.equal(many, layer(x))
    finally:  # the kernels as the environment has them, for the tests after
        monkeypatch.undo()
        native._load.cache_clear()
    scale = exact.abs().max()
    assert float((many - one_by_one).abs().max() / scale) < 0.01  # two bfloat16 roundings apart at most
    assert float((many - exact).abs().max() / scale) < 0.03


def test_weight_only_int8_takes_the_feed_forwards_gelu_into_its_up_projection() -> None:
    """quantize_weight_only: each feed-forward block's GELU is applied by its up projection (our
    kernel, as it writes the outputs; torch's GELU on the other paths), the outputs within float32
    rounding of the block applying it itself, for decode rows and a prompt's."""
    import copy

    from xcli_models import XGLMConfig, XGLMForCausalLM
    from xcli_models.layers.feedforward import FeedForward
    from xcli_models.quantize import Int8WeightOnlyLinear, fuse_activations, quantize_weight_only

    torch.manual_seed(0)
    config = XGLMConfig(vocab_size=64, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                        max_position_embeddings=64)
    model = XGLMForCausalLM(config).eval()
    quantize_weight_only(model)
    blocks = [m for m in model.modules() if isinstance(m, FeedForward)]
    assert len(blocks) == 2 and all(b.up.activation == "gelu" and b.act is not F.gelu for b in blocks)
    apart = copy.deepcopy(model)
    for block in (b for b in apart.modules() if isinstance(b, FeedForward)):
        block.up.activation, block.act = None, F.gelu
    assert fuse_activations(model) == 0  # taken in once
    for ids in (torch.tensor([[5, 9, 3]]), torch.randint(3, 64, (2, 40))):  # decode-sized, a prompt's rows
        with torch.inference_mode():
            torch.testing.assert_close(model(ids).logits, apart(ids).logits, atol=1e-5, rtol=1e-5)
    layer = blocks[0].up
    x = torch.randn(300, 32)
    assert type(layer) is Int8WeightOnlyLinear and not layer.kernel_takes(x.shape[0])
    with torch.inference_mode():
        many = layer(x)  # past our kernel's rows: the dequantized product, then torch's GELU
        few = torch.cat([layer(x[i:i + 1]) for i in range(0, 300, 50)])
        torch.testing.assert_close(many[::50], few, atol=0.05, rtol=0.05)  # bfloat16 inputs there
        layer.activation = None
        torch.testing.assert_close(F.gelu(torch.cat([layer(x[i:i + 1]) for i in range(0, 300, 50)])), few,
                                   atol=2e-6, rtol=1e-6)


@pytest.mark.skipif(not __import__("xcli_models.hardware", fromlist=["x"]).fast_bfloat16(),
                    reason="int4 takes bfloat16 inputs: this CPU computes them slowly")
def test_int4_weights_for_generation() -> None:
    from xcli_models import XGLMConfig, XGLMForCausalLM, native
    from xcli_models.quantize import Int4WeightOnlyLinear, quantize_weight_only

    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(256, 128)
    x = torch.randn(2, 4, 256, generator=generator)
    with torch.inference_mode():
        exact, got = linear(x), Int4WeightOnlyLinear(linear.weight, linear.bias)(x)
    assert got.shape == exact.shape and float((got - exact).abs().max() / exact.abs().max()) < 0.15
    assert Int4WeightOnlyLinear.fits(128, 256) and not Int4WeightOnlyLinear.fits(40, 256)
    assert not Int4WeightOnlyLinear.fits(128, 96)
    config = XGLMConfig(vocab_size=72, d_model=64, num_layers=1, attention_heads=4, ffn_dim=128,
                        max_position_embeddings=64)
    torch.manual_seed(0)
    model = XGLMForCausalLM(config).eval()
    quantize_weight_only(model, bits=4)
    kinds = {type(m).__name__ for m in model.modules()}
    # the head's 72 outputs, no multiple of 16: int8 weights, by xcli's kernel where it can be had
    head = "Int8WeightOnlyLinear" if native.int8_kernel() is not None else "Int8Linear"
    assert "Int4WeightOnlyLinear" in kinds and head in kinds and type(model.lm_head).__name__ == head
    ids = torch.tensor([[2, 5, 7, 9]])
    with torch.inference_mode():
        assert model(input_ids=ids).logits.shape == (1, 4, 72)


def test_int4_is_for_generate() -> None:
    result = runner.invoke(app, ["classify", "--no-server", "--quantize", "int4", "x"])
    assert result.exit_code == 2 and "is for generate" in result.stderr


def test_evaluate_takes_quantize(tmp_path: Path) -> None:
    records = tmp_path / "r.jsonl"
    records.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in [
        ("a gripping, funny film", "positive"), ("a dull, lifeless mess", "negative"),
        ("the best film of the year", "positive"), ("tedious and far too long", "negative")]))
    args = ["evaluate", "-q", "--no-server", "-m", "xcli/sentiment", "-i", str(records)]
    floats, ints = (runner.invoke(app, [*args, *extra]) for extra in ([], ["--quantize", "int8"]))
    assert floats.exit_code == ints.exit_code == 0, ints.stderr
    f32, i8 = json.loads(floats.stdout), json.loads(ints.stdout)
    assert f32["accuracy"] == i8["accuracy"] == 1.0 and i8["loss"] != f32["loss"]
    assert abs(i8["loss"] - f32["loss"]) < 0.01
    refused = runner.invoke(app, [*args, "--quantize", "int4"])
    assert refused.exit_code == 2 and "is for generate" in refused.stderr


@pytest.mark.skipif(not __import__("xcli_models.hardware", fromlist=["x"]).fast_bfloat16(),
                    reason="int4 takes bfloat16 inputs: this CPU computes them slowly")
def test_generate_takes_int4() -> None:
    args = ["generate", "--no-server", "--max-new-tokens", "8", "ROMEO:"]
    result = runner.invoke(app, [*args, "--quantize", "int4"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["generated_text"].startswith("ROMEO:")
    assert result.stderr.count("--quantize int4: the generated text may differ from float32's") == 1
