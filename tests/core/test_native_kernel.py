"""xcli's own int8 kernel for decode products (xcli_models/native.py, data/kernels/kernels.c).

The kernel computes the float product of the int8 weights (float32 inputs, not rounded), a row's
numbers never depend on the rows beside it, it is built once into the cache and loaded after, and
where it cannot be had (switched off, another processor, no compiler, a failing build) the int8
layers fall back to torch's kernels and say why.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from xcli_models import hardware, native
from xcli_models.quantize import NATIVE_BELOW_ROWS, Int8WeightOnlyLinear, per_channel_int8

needs_kernel = pytest.mark.skipif(native.int8_kernel() is None, reason=f"no native kernel here: {native._load()[1]}")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty kernel cache, the kernel neither built nor loaded in this process; restored after."""
    monkeypatch.setenv("XCLI_KERNEL_CACHE", str(tmp_path / "kernels"))
    native._load.cache_clear()
    yield tmp_path / "kernels"
    monkeypatch.undo()
    native._load.cache_clear()


@pytest.fixture(params=["AMX's tiles for many rows", "the float32 kernel for every row count"])
def many_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Both paths of many rows: AMX's int8 tiles where this machine has them (else skipped), and the
    float32 kernel (AMX turned off by its switch); the kernels loaded afresh, and again after."""
    amx = request.param.startswith("AMX")
    monkeypatch.setenv(native.AMX_SWITCH, "1" if amx else "0")
    native._load.cache_clear()
    kernels = native.int8_kernel()
    if kernels is None or kernels.amx != amx:
        pytest.skip(f"no AMX here: {native.kernel_status()}")
    yield kernels
    monkeypatch.undo()
    native._load.cache_clear()


def _weights(outputs: int, inputs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return per_channel_int8(torch.randn(outputs, inputs, generator=generator))


@pytest.mark.parametrize("outputs", [1, 7, 8, 13, 1000])
@pytest.mark.parametrize(("rows", "inputs"), [(1, 16), (2, 48), (3, 1024), (native.AMX_FROM_ROWS, 16), (15, 64),
                                              (17, 80), (NATIVE_BELOW_ROWS - 1, 32), (70, 1024)])
@pytest.mark.parametrize("with_bias", [False, True])
@needs_kernel
def test_the_kernel_gives_the_float_product_of_the_int8_weights(many_rows: native.Kernels, rows: int, inputs: int,
                                                               outputs: int, with_bias: bool) -> None:
    """Within a float32 product's error of the exact product of the int8 weights, by either path
    (AMX's: its inputs in three int8 parts, held to 2^-24 of a row's largest, summed exactly)."""
    int8, scale = _weights(outputs, inputs, seed=rows + outputs)
    x = torch.randn(rows, inputs) * 3
    bias = torch.randn(outputs) if with_bias else None
    expected = torch.nn.functional.linear(x.double(), (int8.double() * scale.double()[:, None]),
                                          None if bias is None else bias.double())
    got = native.int8_rows(x, native.block_rows(int8), scale, bias, outputs)
    assert got.shape == (rows, outputs) and got.dtype == torch.float32
    # float32 sums of `inputs` terms: a few units in the last place of the terms' magnitude
    bound = 4 * inputs * torch.finfo(torch.float32).eps * (x.abs() @ (int8.abs().float() * scale[:, None]).t())
    assert bool(((got.double() - expected).abs() <= bound.double() + 1e-6).all())


@needs_kernel
def test_a_rows_numbers_do_not_depend_on_the_rows_beside_it(many_rows: native.Kernels) -> None:
    """The float32 kernel sums each output in the same order for any row count (with AMX, for the
    counts below AMX_FROM_ROWS; from there on see the next test)."""
    int8, scale = _weights(300, 256)
    blocked = native.block_rows(int8)
    count = native.AMX_FROM_ROWS - 1 if many_rows.amx else 9
    x = torch.randn(count, 256)
    together = native.int8_rows(x, blocked, scale, None, 300)
    for i in range(count):  # alone, first and second of a pair, last of an odd count
        assert torch.equal(native.int8_rows(x[i:i + 1], blocked, scale, None, 300)[0], together[i])
        assert torch.equal(native.int8_rows(x[i:], blocked, scale, None, 300)[0], together[i])


@pytest.mark.parametrize(("outputs", "inputs"), [(1, 16), (13, 32), (64, 1024)])
def test_blocked_weights_unblock_to_themselves(outputs: int, inputs: int) -> None:
    int8, _ = _weights(outputs, inputs)
    blocked = native.block_rows(int8)
    assert blocked.shape == (-(-outputs // native.BLOCK), inputs // 16, native.BLOCK, 16)
    assert torch.equal(native.unblock_rows(blocked, outputs), int8)
    assert not bool(native.unblock_rows(blocked, blocked.shape[0] * native.BLOCK)[outputs:].any())  # zero padding


@needs_kernel
def test_the_kernel_applies_gelu_within_float32s_error(many_rows: native.Kernels) -> None:
    """GELU on the outputs (act = 1), by xcli's own polynomials for erf, against float64's exact
    GELU of the same products: within 1e-6 (1 + |x|), closer than torch's float32 GELU is (its error
    is about 1.3e-6 over this sweep), whatever the path; 5 rows take the float32 kernel, more AMX's."""
    weights = native.block_rows(torch.eye(16, dtype=torch.int8) * 127)  # outputs: the inputs, rounded
    scale = torch.full((16,), 1 / 127)
    x = torch.linspace(-12, 12, 16 * 2001).reshape(-1, 16)
    for rows in (x[:5], x[995:1000], x):
        plain = native.int8_rows(rows, weights, scale, None, 16)
        fused = native.int8_rows(rows, weights, scale, None, 16, activation="gelu")
        exact = plain.double() * 0.5 * (1 + torch.special.erf(plain.double() / 2 ** 0.5))
        assert bool(((fused.double() - exact).abs() <= 1e-6 * (1 + plain.double().abs())).all())
    odd = torch.randn(9, 48)  # 13 channels: the last block half full
    int8, scale = _weights(13, 48)
    got = native.int8_rows(odd, native.block_rows(int8), scale, None, 13, activation="gelu")
    torch.testing.assert_close(got, torch.nn.functional.gelu(native.int8_rows(odd, native.block_rows(int8), scale,
                                                                            None, 13)), atol=2e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="applies gelu after its product, not 'relu'"):
        native.int8_rows(odd, native.block_rows(int8), scale, None, 13, activation="relu")


@needs_kernel
def test_amx_is_used_wherever_the_processor_and_the_system_allow_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not turned off, on a processor with AMX whose system grants it (the library's own probe),
    the kernels use it: so a wrong AMX product (found by the check on loading) fails here instead
    of skipping the tests of AMX's path."""
    monkeypatch.delenv(native.AMX_SWITCH, raising=False)
    native._load.cache_clear()
    try:
        kernels, where = native._load()
        assert kernels is not None
        import ctypes

        ready = all(flag in native.hardware._cpu()[1] for flag in native.AMX) and ctypes.CDLL(where).xcli_amx_ready()
        assert kernels.amx == bool(ready)
    finally:
        native._load.cache_clear()


@needs_kernel
def test_a_rows_numbers_under_amx_depend_on_that_row_alone(many_rows: native.Kernels) -> None:
    """From AMX_FROM_ROWS rows on, each row's product is the same bits whatever rows come with it
    (its own scale and parts, integer sums)."""
    if not many_rows.amx:
        pytest.skip("AMX's path only (the float32 kernel's rows: test_the_kernel_keeps_rows_apart)")
    int8, scale = _weights(300, 1024, seed=3)
    blocked, bias = native.block_rows(int8), torch.randn(300)
    x = torch.randn(40, 1024) * torch.logspace(-3, 3, 40)[:, None]  # rows of very different scales
    together = native.int8_rows(x, blocked, scale, bias, 300)
    for start in range(0, 40 - native.AMX_FROM_ROWS, 5):
        part = native.int8_rows(x[start:start + native.AMX_FROM_ROWS], blocked, scale, bias, 300)
        assert torch.equal(part, together[start:start + native.AMX_FROM_ROWS])
    assert torch.equal(native.int8_rows(x.flip(0), blocked, scale, bias, 300), together.flip(0))
    x[3, 100], x[9, 7], x[20, 1023] = float("nan"), float("inf"), float("-inf")  # never made finite
    poisoned = native.int8_rows(x, blocked, scale, bias, 300)
    assert bool(poisoned[[3, 9, 20]].isnan().all())
    rest = [i for i in range(40) if i not in (3, 9, 20)]
    assert torch.equal(poisoned[rest], together[rest])


@needs_kernel
def test_the_layer_multiplies_decode_rows_by_the_kernel_and_prompts_by_amx_or_the_dequantized_weight(
        many_rows: native.Kernels) -> None:
    linear = torch.nn.Linear(64, 40)
    layer = Int8WeightOnlyLinear(linear.weight, linear.bias)
    assert layer.native and not hasattr(layer, "weight_int8")
    int8, scale = per_channel_int8(linear.weight.detach())
    assert torch.equal(layer.int8_rows(0, 40), int8)
    with torch.inference_mode():
        x = torch.randn(2, 3, 64)
        decode = layer(x)
        bias = linear.bias.detach()
        assert torch.equal(decode, native.int8_rows(x.reshape(6, 64), layer.blocked, scale, bias, 40).reshape(2, 3, 40))
        assert torch.equal(layer(x.transpose(0, 1)), decode.transpose(0, 1))  # rows not in memory order
        for width in (48, 128):  # rows of another width: refused, as nn.Linear does, never read past
            with pytest.raises(RuntimeError, match=f"rows of 64 values, not {width}"):
                layer(torch.randn(2, 3, width))
        with pytest.raises(ValueError, match="48 torch.float32 values for int8 weights of 64"):
            native.int8_rows(torch.randn(3, 48), layer.blocked, scale, bias, 40)
        for n, short in ((400, None), (40, "scale"), (40, "bias")):  # more channels than are there
            parts = {"scale": scale, "bias": bias, short: torch.ones(20)} if short else {"scale": scale, "bias": bias}
            with pytest.raises(ValueError, match="output channels asked"):
                native.int8_rows(x, layer.blocked, parts["scale"], parts["bias"], n)
        with pytest.raises(ValueError, match="rows to round"):
            native.quantize_rows(x.double())
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # the outputs stay float32 whatever the default
        try:
            assert torch.equal(native.int8_rows(x, layer.blocked, scale, bias, 40), decode)
            assert native.quantize_rows(x[0])[1].dtype == torch.float32
        finally:
            torch.set_default_dtype(previous)
        prompt = torch.randn(NATIVE_BELOW_ROWS + 5, 64)
        many = layer(prompt)
        one_by_one = torch.cat([layer(row[None]) for row in prompt])
    scale_of = one_by_one.abs().max()
    if many_rows.amx:  # our kernel up to AMX_BELOW_ROWS, as exact as float32
        assert layer.kernel_takes(native.AMX_BELOW_ROWS - 1) and not layer.kernel_takes(native.AMX_BELOW_ROWS)
        assert float((many - one_by_one).abs().max() / scale_of) < 1e-5
    else:  # the prompt's product of the dequantized weight rounds to bfloat16
        assert float((many - one_by_one).abs().max() / scale_of) < 0.01


_SPECIAL = st.sampled_from([0.0, -0.0, 1.0, float("inf"), float("-inf"), float("nan"), 3.4e38, -3.4e38])


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(rows=st.integers(1, 4), width=st.integers(1, 70), seed=st.integers(0, 2**31 - 1),
       specials=st.lists(st.tuples(st.integers(0, 10_000), _SPECIAL), max_size=6),
       levels=st.integers(1, 5))
def test_argmax_rows_gives_torchs_indices(rows: int, width: int, seed: int, specials: list[tuple[int, float]],
                                          levels: int) -> None:
    """The first of equal largest values (few levels make ties), the first NaN, infinities and
    signed zeros as torch.argmax takes them, on either side of the 16-wide vectors."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (rows, width), generator=generator).float()
    for place, value in specials:
        scores.view(-1)[place % scores.numel()] = value
    assert torch.equal(native.argmax_rows(scores), scores.argmax(dim=-1))


@needs_kernel
def test_argmax_rows_on_a_vocabulary_and_what_it_leaves_to_torch() -> None:
    scores = torch.randn(8, 256_008)
    scores[3, 200_000] = scores[3, 250_000] = scores[3].max() + 1  # a tie far into the row
    scores[5, 100_001] = float("nan")
    assert torch.equal(native.argmax_rows(scores), scores.argmax(dim=-1))
    assert torch.equal(native.argmax_rows(scores.t().contiguous().t()), scores.argmax(dim=-1))  # not in row order
    for other in (scores.double(), scores.to(torch.bfloat16), scores[0]):
        assert torch.equal(native.argmax_rows(other), other.argmax(dim=-1))  # torch's own
    with pytest.raises((RuntimeError, IndexError)):  # as torch refuses an empty row
        native.argmax_rows(torch.empty(2, 0))


@needs_kernel
def test_the_layer_binds_the_kernel_to_its_buffers_and_binds_it_again_when_they_change() -> None:
    linear = torch.nn.Linear(64, 40)
    layer = Int8WeightOnlyLinear(linear.weight, linear.bias)
    x = torch.randn(1, 1, 64)
    with torch.inference_mode():
        first = layer(x)
        bound = layer._bound
        assert bound is not None and bound.blocked is layer.blocked and torch.equal(layer(x), first)
        assert layer._bound is bound  # the same buffers: bound once
        layer.scale = layer.scale * 2  # a buffer replaced (as .to() and friends replace them)
        assert torch.allclose(layer(x), 2 * first - linear.bias.detach(), atol=1e-5)
        layer.bias = None
        assert torch.allclose(layer(x), 2 * first - 2 * linear.bias.detach(), atol=1e-5)
        copied = copy.deepcopy(layer)
        assert copied._bound is None or copied._bound.blocked is copied.blocked
        assert torch.equal(copied(x), layer(x))
        where = layer.blocked.data_ptr()
        layer.share_memory()  # moves the buffers' data, the tensors staying the same
        assert layer.blocked.data_ptr() != where and torch.equal(layer(x), copied(x))
        buffer = io.BytesIO()
        torch.save(layer, buffer)  # a whole model pickled (the bound C function is not kept)
        buffer.seek(0)
        assert torch.equal(torch.load(buffer, weights_only=False)(x), layer(x))
        with pytest.raises(ValueError, match="rows in the CPU's memory; these are on meta"):
            layer._bound(torch.empty(1, 64, device="meta"))
        with pytest.raises(ValueError, match="weights in the CPU's memory, not meta"):
            native.BoundRows(layer.blocked.to("meta"), layer.scale, None, 40)


@needs_kernel
def test_the_kernel_is_built_once_then_loaded(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = native.kernel_status()
    assert "built on the first generate or --quantize int8 run" in status
    amx = f"AMX int8 tiles from {native.AMX_FROM_ROWS} rows where the system grants them"
    assert (amx in status) == native._amx_wanted()
    monkeypatch.setenv(native.AMX_SWITCH, "0")
    assert "AMX" not in native.kernel_status()
    monkeypatch.delenv(native.AMX_SWITCH)
    assert native.int8_kernel() is not None
    built = list(fresh.glob("kernels-*.so"))
    assert len(built) == 1 and not list(fresh.glob("*.part"))
    amx = f"; AMX int8 tiles from {native.AMX_FROM_ROWS} rows" if native.int8_kernel().amx else ""
    assert native.kernel_status() == f"native ({built[0]}{amx})"
    native._load.cache_clear()

    def no_build(*_: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(native, "build", no_build)
    assert native.int8_kernel() is not None
    amx = f"; AMX int8 tiles from {native.AMX_FROM_ROWS} rows" if native.int8_kernel().amx else ""
    assert native.kernel_status() == f"native ({built[0]}{amx})"


def _fall_back(reason_part: str) -> None:
    assert native.int8_kernel() is None
    assert reason_part in native.kernel_status() and native.kernel_status().startswith("torch's kernels")
    linear = torch.nn.Linear(32, 24)
    layer = Int8WeightOnlyLinear(linear.weight, linear.bias)
    assert not layer.native and layer.weight_int8.dtype == torch.int8
    with torch.inference_mode():
        x = torch.randn(3, 32)
        exact, got = linear(x), layer(x)
    assert float((got - exact).abs().max() / exact.abs().max()) < 0.03


def test_switched_off_it_falls_back_to_torchs_kernel(fresh: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(native.SWITCH, "0")
    with caplog.at_level("WARNING", logger="xcli_models"):
        _fall_back("turned off (XCLI_NATIVE_KERNELS=0)")
    assert not fresh.exists() and not caplog.records  # asked for: nothing to say


def test_without_avx512_it_falls_back(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_cpu", lambda: ("an old cpu", frozenset({"avx2", "fma"})))
    _fall_back("this processor lacks avx512f, avx512bw, avx512vl")


def test_without_a_compiler_it_falls_back(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_cpu", lambda: ("cpu", frozenset(native.NEEDS)))
    monkeypatch.setenv("CC", str(fresh / "no-such-cc"))
    _fall_back("no C compiler")


def test_a_failing_build_falls_back_and_leaves_nothing_behind(fresh: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    compiler = tmp_path / "bad-cc"
    compiler.write_text("#!/bin/sh\necho 'kernels.c:1: error: this compiler refuses' >&2\nexit 3\n")
    compiler.chmod(0o755)
    monkeypatch.setattr(hardware, "_cpu", lambda: ("cpu", frozenset(native.NEEDS)))
    monkeypatch.setenv("CC", str(compiler))
    with caplog.at_level("WARNING", logger="xcli_models"):
        _fall_back("could not build or load it: ")
    assert "failed (exit 3): kernels.c:1: error: this compiler refuses" in native.kernel_status()
    assert list(fresh.iterdir()) == []
    assert [r.getMessage() for r in caplog.records] == [  # said once, in one line
        f"xcli's int8 kernel {native._load()[1]}; int8 layers and greedy decoding use torch's kernels (slower)"]


def test_a_cache_that_cannot_be_made_falls_back(fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # a cache under a file cannot be made, even by root
    monkeypatch.setenv("XCLI_KERNEL_CACHE", str(blocker / "kernels"))
    monkeypatch.setattr(hardware, "_cpu", lambda: ("cpu", frozenset(native.NEEDS)))
    if native._compiler() is None:
        pytest.skip("no C compiler")
    _fall_back("could not build or load it")


@needs_kernel
def test_a_kernel_that_computes_wrongly_is_not_used(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_agrees", lambda function: False)
    _fall_back("gives wrong products; not used")


def test_the_cache_follows_the_environment(tmp_path: Path) -> None:
    assert native.cache_dir({"XCLI_KERNEL_CACHE": str(tmp_path)}) == tmp_path
    assert native.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "xcli" / "kernels"
    assert native.cache_dir({}) == Path.home() / ".cache" / "xcli" / "kernels"


@pytest.mark.parametrize(("rows", "inputs"), [(1, 1), (3, 37), (5, 1024), (2, 16), (64, 768)])
@needs_kernel
def test_rows_are_rounded_to_int8_with_the_bits_torch_gives(rows: int, inputs: int) -> None:
    generator = torch.Generator().manual_seed(inputs)
    x = torch.randn(rows, inputs, generator=generator) * 10
    x[0, 0] = 127.0  # row 0: scale exactly 1, so halves are ties, rounded to even
    if inputs > 6:
        x[0, 1:7] = torch.tensor([0.5, 1.5, 2.5, -0.5, -3.5, 126.5])
    if rows > 1:
        x[1] = 0.0  # a zero row keeps the smallest scale
    if rows > 2:
        x[2, :] = 1e-40  # subnormal inputs
    q, scale = native.quantize_rows(x)
    expected_q, expected_scale = native.rounded_rows(x)
    assert q.dtype == torch.int8 and scale.shape == (rows, 1)
    assert torch.equal(q, expected_q) and torch.equal(scale, expected_scale)
    if inputs > 6:
        assert q[0, :7].tolist() == [127, 0, 2, 2, 0, -4, 126]


@needs_kernel
def test_int8_products_are_the_same_with_either_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    from xcli_models.quantize import Int8Linear, int8_available

    if not int8_available():
        pytest.skip("this torch has no oneDNN int8 linear")
    linear = torch.nn.Linear(96, 40)
    layer = Int8Linear(linear.weight, linear.bias)
    x = torch.randn(2, 7, 96)
    with torch.inference_mode():
        native_rounding = layer(x)
        monkeypatch.setattr(native, "int8_kernel", lambda: None)
        assert torch.equal(layer(x), native_rounding)


def test_generate_says_once_that_the_kernel_could_not_be_built(fresh: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """A failing build is one warning line on stderr, and the text still comes (torch's kernels)."""
    from task_fixtures import build_native
    from test_cli_support import invoke

    compiler = tmp_path / "bad-cc"
    compiler.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 4\n")
    compiler.chmod(0o755)
    monkeypatch.setattr(hardware, "_cpu", lambda: ("cpu", frozenset({*native.NEEDS, "amx_bf16"})))
    monkeypatch.setenv("CC", str(compiler))
    model = build_native(tmp_path / "m", "XGLMForCausalLM")
    result = invoke("generate", "-m", str(model), "--no-server", "--quantize", "int8", "--max-new-tokens", "3",
                    input='{"text": "hello"}\n')
    assert result.exit_code == 0 and json.loads(result.stdout)["generated_text"] is not None
    said = [line for line in result.stderr.splitlines() if "int8 kernel" in line]
    assert len(said) == 1 and "cc: internal error" in said[0] and "torch's kernels (slower)" in said[0]


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=70),
                min_size=1, max_size=5).filter(lambda rows: len({len(r) for r in rows}) == 1))
def test_any_finite_rows_round_to_the_bits_torch_gives(rows: list[list[float]]) -> None:
    """Fuzzed: extreme magnitudes, subnormals, signed zeros, ties, lengths off the 16-lane width."""
    x = torch.tensor(rows, dtype=torch.float32)
    q, scale = native.quantize_rows(x)
    expected_q, expected_scale = native.rounded_rows(x)
    assert torch.equal(q, expected_q) and torch.equal(scale, expected_scale)
