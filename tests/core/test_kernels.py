"""xcli_models.kernels: matrix products through oneDNN give torch's numbers, and only where they may."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.nn import functional as F

from xcli_models import MvpConfig, MvpForConditionalGeneration, XGLMConfig, XGLMForCausalLM, kernels, native
from xcli_models.families.xlnet.attention import HeadwiseLinear

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(autouse=True)
def onednn_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN's routing alone (xcli's float32 kernel, which takes a few rows first, left out), but
    in the tests of that kernel (``with_native``)."""
    if "with_native" not in request.fixturenames:
        monkeypatch.setattr(kernels, "_native_kernels", lambda: None)


@pytest.fixture
def with_native() -> native.Kernels:
    """xcli's float32 kernel in the route, where it can be had."""
    found = native.int8_kernel()
    if found is None:
        pytest.skip(f"no native kernels here: {native._load()[1]}")
    return found


@pytest.fixture(params=["onednn for every row count", "MKL for 1 to 3 rows"])
def mkl_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    """Both kernel choices, whatever this processor's (``kernels._MKL_ROWS`` applies on Intel processors)."""
    rows = () if request.param.startswith("onednn") else kernels._MKL_ROWS
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: rows)
    return rows


def _linear(w: torch.Tensor, b: torch.Tensor | None = None) -> kernels.Linear:
    """A :class:`kernels.Linear` holding ``w`` (N, K) and ``b``."""
    layer = kernels.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return layer


def test_products_equal_torchs(routed: list[tuple[int, ...]], mkl_rows: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(301, 257, generator=generator)
    b = torch.randn(301, generator=generator)
    x = torch.randn(1, 257, generator=generator)
    x3 = torch.randn(2, 5, 257, generator=generator)
    with_bias, without, half = _linear(w, b), _linear(w), _linear(w.bfloat16())
    headwise = HeadwiseLinear(257, 7, 43)  # XLNet's per-head projection (x @ W, W (K, H, Dh))
    torch.nn.init.normal_(headwise.weight, generator=generator)

    def products() -> tuple[torch.Tensor, ...]:
        return (with_bias(x), without(x), with_bias(x3), half(x3.bfloat16()), headwise(x3), headwise(x))

    expected = (F.linear(x, w, b), F.linear(x, w), F.linear(x3, w, b), F.linear(x3.bfloat16(), w.bfloat16()),
                x3 @ headwise.weight.detach().flatten(1), x @ headwise.weight.detach().flatten(1))
    with torch.inference_mode():
        assert all(torch.equal(a, e) for a, e in zip(products(), expected, strict=True))  # outside: torch's own
        assert routed == []
        with kernels.onednn_matmuls() as route:
            got = products()
    # float32 products of 1 row (three of them) stay with MKL where it is the faster; bfloat16 never does
    assert len(routed) == route.routed == len(expected) - (3 if 1 in mkl_rows else 0)
    for a, e in zip(got, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        tolerance = 2e-2 if a.dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)


def test_what_oneDNN_cannot_or_should_not_do_runs_unchanged(routed: list[tuple[int, ...]]) -> None:
    w = torch.randn(8, 4)
    layer, x = _linear(w), torch.randn(5, 4)  # 5 rows: oneDNN's on any processor where it may
    with kernels.onednn_matmuls():
        y = layer(x)  # its weight needs a gradient: autograd's path
        y.sum().backward()
        assert layer.weight.grad is not None
        with torch.no_grad():
            _linear(w.double())(x.double())  # a dtype oneDNN's matmul does not take
            layer(x[0])  # one vector
            F.linear(x, w)  # a product outside the layers: torch's own
            torch.backends.mkldnn.enabled = False  # the user's switch
            try:
                layer(x)
            finally:
                torch.backends.mkldnn.enabled = True
            with kernels.onednn_matmuls(enabled=False):  # switched off inside an open block
                layer(x)
        with pytest.raises(RuntimeError):  # torch's own error for a bias of the wrong size
            kernels.routed_linear(x, w, torch.ones(3)) or F.linear(x, w, torch.ones(3))
    assert routed == []
    with torch.no_grad(), kernels.onednn_matmuls():
        layer(x)
    assert len(routed) == int(kernels.onednn_available())


def test_the_route_is_this_threads(routed: list[tuple[int, ...]]) -> None:
    """A block open in one thread routes nothing of another's (as torch's own modes and
    inference_mode are per thread)."""
    layer, x = _linear(torch.randn(8, 4)), torch.randn(5, 4)
    with torch.no_grad(), kernels.onednn_matmuls():
        other = threading.Thread(target=lambda: layer(x))
        other.start()
        other.join()
        assert routed == []
        layer(x)
    assert len(routed) == 1


def test_generate_gives_the_same_tokens_through_oneDNN(routed: list[tuple[int, ...]]) -> None:
    torch.manual_seed(0)
    config = XGLMConfig(vocab_size=300, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                        max_position_embeddings=64)
    model = XGLMForCausalLM(config).eval()
    ids = torch.tensor([[2, 17, 45, 99, 12], [1, 1, 2, 33, 7]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    for settings in (dict(max_new_tokens=8), dict(max_new_tokens=8, num_beams=3)):
        plain = model.generate(ids, attention_mask=mask, onednn=False, **settings)
        assert routed == []
        fast = model.generate(ids, attention_mask=mask, **settings)
        assert routed, "generate did not use oneDNN"
        assert torch.equal(fast, plain)
        routed.clear()
        with kernels.inference():  # a command's context around it: onednn=False still means torch's own
            assert torch.equal(model.generate(ids, attention_mask=mask, onednn=False, **settings), plain)
        assert routed == []


@pytest.mark.skipif(not kernels.onednn_available(), reason="this torch has no usable oneDNN matmul")
def test_row_invariant_products_round_a_row_alike_in_any_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    layer = _linear(torch.randn(300, 96, generator=generator), torch.randn(300, generator=generator))
    x = torch.randn(40, 96, generator=generator)
    with torch.inference_mode(), kernels.onednn_matmuls(row_invariant=True):
        alone = [layer(x[i : i + 1])[0] for i in range(len(x))]
        for size in (2, 3, 16, 40):
            together = torch.cat([layer(x[at : at + size]) for at in range(0, len(x), size)])
            assert all(torch.equal(together[i], alone[i]) for i in range(len(x))), size
        vector = layer(x[:1].reshape(1, 1, 96))  # a lone row in any shape keeps its shape
        assert vector.shape == (1, 1, 300) and torch.equal(vector[0, 0], alone[0])


def test_few_rows_stay_with_mkl_on_intel(routed: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Where oneDNN's kernels for 1-3 rows are the slower (Intel processors), those products run torch's way,
    with torch's numbers; from 4 rows on, and in row-invariant mode always, they go through oneDNN."""
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: (1, 2, 3))
    w = torch.randn(64, 32)
    layer = _linear(w)
    with torch.inference_mode(), kernels.onednn_matmuls():
        for rows in (1, 2, 3):
            x = torch.randn(rows, 32)
            assert torch.equal(layer(x), x @ w.t())
        assert routed == []
        layer(torch.randn(4, 32))
        _linear(w.bfloat16())(torch.randn(1, 3, 32).bfloat16())
    assert len(routed) == 2
    with torch.inference_mode(), kernels.onednn_matmuls(row_invariant=True):
        layer(torch.randn(1, 32))
    assert len(routed) == 3


@pytest.mark.parametrize(("batch", "decode_steps_routed"), [(1, False), (4, True)])
def test_generate_routes_the_decode_steps_products_of_four_rows_or_more(
        routed: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch, batch: int,
        decode_steps_routed: bool) -> None:
    """The prompt's products through oneDNN; a decode step's too from 4 rows on, where on Intel
    processors 1-3 rows stay with MKL; the tokens those of a run without oneDNN."""
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: (1, 2, 3))
    torch.manual_seed(0)
    model = XGLMForCausalLM(XGLMConfig(vocab_size=300, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                                       max_position_embeddings=64)).eval()
    ids = torch.tensor([[2, 17, 45, 99, 12]] * batch)
    tokens = model.generate(ids, max_new_tokens=6)
    # the prompt: 2 layers of 6 projections on 5 rows a sequence, the LM head on the last row of each;
    # then 5 steps of those 13 products on a row a sequence
    assert len(routed) == 2 * 6 + decode_steps_routed + 5 * 13 * decode_steps_routed
    assert torch.equal(tokens, model.generate(ids, max_new_tokens=6, onednn=False))


@pytest.mark.parametrize(("outputs", "inputs"), [(301, 257), (7, 16), (1, 1), (64, 4096)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_a_few_float32_rows_go_to_xclis_kernel_within_float32s_error(
        with_native: native.Kernels, routed: list[tuple[int, ...]], native_products: list[tuple[int, ...]],
        outputs: int, inputs: int, with_bias: bool) -> None:
    """Up to native.F32_ROWS float32 rows, in any leading shape, go to xcli's float32 kernel, each
    output within a float32 sum's error of the exact product (every group of channels, a last group
    of fewer, inputs not a multiple of 16); more rows go to oneDNN."""
    generator = torch.Generator().manual_seed(outputs + inputs)
    w = torch.randn(outputs, inputs, generator=generator)
    b = torch.randn(outputs, generator=generator) if with_bias else None
    layer = _linear(w, b)
    counts = [1, 2, 3, 4, 5, 7, 8, 9, 15, native.F32_ROWS]
    with torch.inference_mode(), kernels.onednn_matmuls():
        for rows in counts:
            x = torch.randn(rows, inputs, generator=generator) * 3
            x = x.reshape(1, rows, inputs) if rows % 2 else x
            got = layer(x)
            exact = F.linear(x.double(), w.double(), None if b is None else b.double())
            bound = 4 * inputs * torch.finfo(torch.float32).eps * (x.abs() @ w.abs().t()).double() + 1e-6
            assert got.shape == exact.shape and got.dtype == torch.float32
            assert bool(((got.double() - exact).abs() <= bound).all()), rows
        assert routed == []
        layer(torch.randn(native.F32_ROWS + 1, inputs, generator=generator))
    assert len(native_products) == len(counts) and len(routed) == 1


def test_what_xclis_float32_kernel_leaves_to_onednn(with_native: native.Kernels, routed: list[tuple[int, ...]],
                                                    native_products: list[tuple[int, ...]]) -> None:
    """bfloat16, a weight that is a transposed view (XLNet's per-head projection onto the heads),
    row-invariant blocks (the tasks'), products that need a gradient, and blocks not open."""
    w = torch.randn(40, 32)
    layer, x = _linear(w), torch.randn(5, 32)  # (5 rows: oneDNN's on any processor, not MKL's)
    headwise = HeadwiseLinear(32, 4, 8)
    with torch.inference_mode():
        layer(x)
        with kernels.onednn_matmuls():
            _linear(w.bfloat16())(x.bfloat16())
            headwise(x)
        with kernels.onednn_matmuls(row_invariant=True):
            layer(x)
    assert native_products == [] and len(routed) == 3
    with kernels.onednn_matmuls():
        layer(x).sum().backward()
    assert native_products == [] and layer.weight.grad is not None


def test_a_rows_numbers_under_xclis_float32_kernel_do_not_depend_on_the_rows_beside_it(
        with_native: native.Kernels) -> None:
    """Every output is summed in the same order for any number of rows (the channel groups change
    with it)."""
    generator = torch.Generator().manual_seed(0)
    layer = _linear(torch.randn(203, 100, generator=generator), torch.randn(203, generator=generator))
    x = torch.randn(native.F32_ROWS, 100, generator=generator)
    with torch.inference_mode(), kernels.onednn_matmuls():
        alone = torch.cat([layer(x[i:i + 1]) for i in range(len(x))])
        for size in (2, 3, 5, 8, native.F32_ROWS):
            together = torch.cat([layer(x[at:at + size]) for at in range(0, len(x), size)])
            assert torch.equal(together, alone), size


@pytest.mark.parametrize("family", ["xglm", "mvp"])
def test_generate_gives_the_same_tokens_through_xclis_float32_kernel(
        with_native: native.Kernels, native_products: list[tuple[int, ...]], family: str) -> None:
    """Decode steps (a batch, beams; MVP's cross-attention too) through xcli's float32 kernel give
    the tokens of torch's own products."""
    torch.manual_seed(0)
    if family == "xglm":
        model = XGLMForCausalLM(XGLMConfig(vocab_size=300, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                                           max_position_embeddings=64)).eval()
    else:
        model = MvpForConditionalGeneration(MvpConfig(
            vocab_size=300, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)).eval()
    ids = torch.tensor([[2, 17, 45, 99, 12], [1, 1, 2, 33, 7]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    for settings in (dict(max_new_tokens=8, min_new_tokens=8), dict(max_new_tokens=8, num_beams=3)):
        native_products.clear()
        fast = model.generate(ids, attention_mask=mask, **settings)
        assert len(native_products) > 8
        assert torch.equal(fast, model.generate(ids, attention_mask=mask, onednn=False, **settings))
