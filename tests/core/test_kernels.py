"""xcli_models.kernels: matrix products through oneDNN give torch's numbers, and only where they may."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from xcli_models import XGLMConfig, XGLMForCausalLM, kernels

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(params=["onednn for every row count", "MKL for 1 to 3 rows"])
def mkl_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    """Both kernel choices, whatever this processor's (``kernels._MKL_ROWS`` applies on Intel processors)."""
    rows = () if request.param.startswith("onednn") else kernels._MKL_ROWS
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: rows)
    return rows


def test_products_equal_torchs(routed: list[tuple[int, ...]], mkl_rows: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(301, 257, generator=generator)
    b = torch.randn(301, generator=generator)
    x = torch.randn(1, 257, generator=generator)
    x3 = torch.randn(2, 5, 257, generator=generator)
    h = torch.randn(257, 301, generator=generator)  # a (K, N) weight used as x @ h (XLNet's projections)

    def products() -> tuple[torch.Tensor, ...]:
        return (F.linear(x, w, b), F.linear(x, w), F.linear(x3, w, b), F.linear(x3, weight=w, bias=b),
                x3 @ h, torch.matmul(x, h), F.linear(x3.bfloat16(), w.bfloat16()))

    expected = products()
    with torch.inference_mode(), kernels.onednn_matmuls():
        got = products()
    # float32 products of 1 row (three of them) stay with MKL where it is the faster; bfloat16 never does
    assert len(routed) == len(expected) - (3 if 1 in mkl_rows else 0)
    for a, e in zip(got, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        tolerance = 2e-2 if a.dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(a, e, atol=tolerance, rtol=tolerance)


def test_what_oneDNN_cannot_or_should_not_do_runs_unchanged(routed: list[tuple[int, ...]]) -> None:
    w = torch.randn(8, 4, requires_grad=True)
    x = torch.randn(3, 4)
    with kernels.onednn_matmuls():
        y = F.linear(x, w)  # needs a gradient: autograd's path
        y.sum().backward()
        assert w.grad is not None
        F.linear(x.double(), w.detach().double())  # a dtype oneDNN's matmul does not take
        F.linear(x[0], w.detach())  # one vector
        x @ torch.randn(2, 4, 3)  # not a 2-D weight
        x @ torch.randn(4)  # a vector
        with pytest.raises(RuntimeError):  # torch's own error for a bias of the wrong size
            F.linear(x, w.detach(), torch.ones(3))
        torch.backends.mkldnn.enabled = False  # the user's switch
        try:
            F.linear(x, w.detach())
        finally:
            torch.backends.mkldnn.enabled = True
    with kernels.onednn_matmuls(enabled=False):
        F.linear(x, w.detach())
    assert routed == []


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


@pytest.mark.skipif(not kernels.onednn_available(), reason="this torch has no usable oneDNN matmul")
def test_row_invariant_products_round_a_row_alike_in_any_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    w, b = torch.randn(300, 96, generator=generator), torch.randn(300, generator=generator)
    x = torch.randn(40, 96, generator=generator)
    with torch.inference_mode(), kernels.onednn_matmuls(row_invariant=True):
        alone = [F.linear(x[i : i + 1], w, b)[0] for i in range(len(x))]
        for size in (2, 3, 16, 40):
            together = torch.cat([F.linear(x[at : at + size], w, b) for at in range(0, len(x), size)])
            assert all(torch.equal(together[i], alone[i]) for i in range(len(x))), size
        vector = F.linear(x[:1].reshape(1, 1, 96), w, b)  # a lone row in any shape keeps its shape
        assert vector.shape == (1, 1, 300) and torch.equal(vector[0, 0], alone[0])


def test_few_rows_stay_with_mkl_on_intel(routed: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Where oneDNN's kernels for 1-3 rows are the slower (Intel processors), those products run torch's way,
    with torch's numbers; from 4 rows on, and in row-invariant mode always, they go through oneDNN."""
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: (1, 2, 3))
    w = torch.randn(64, 32)
    with torch.inference_mode(), kernels.onednn_matmuls():
        for rows in (1, 2, 3):
            x = torch.randn(rows, 32)
            assert torch.equal(F.linear(x, w), x @ w.t())
        assert routed == []
        F.linear(torch.randn(4, 32), w)
        F.linear(torch.randn(1, 3, 32), w.bfloat16().float())
    assert len(routed) == 1
    with torch.inference_mode(), kernels.onednn_matmuls(row_invariant=True):
        F.linear(torch.randn(1, 32), w)
    assert len(routed) == 2


def _modes() -> int:
    from torch.overrides import _get_current_function_mode_stack

    return len(_get_current_function_mode_stack())


@pytest.mark.skipif(not kernels.onednn_available(), reason="this torch has no usable oneDNN matmul")
@pytest.mark.parametrize(("rows", "routing"), [(1, False), (3, False), (4, True)])
def test_decode_steps_enter_onednns_context_only_where_it_routes_a_product(
        monkeypatch: pytest.MonkeyPatch, rows: int, routing: bool) -> None:
    """The first step runs in the context and counts; later ones run in it only if it routed a product
    (on Intel processors 1-3 rows stay with MKL: the context would only cost its Python time)."""
    monkeypatch.setattr(kernels, "_mkl_rows", lambda: (1, 2, 3))
    w = torch.randn(64, 32)
    inside: list[int] = []

    def step(x: torch.Tensor) -> torch.Tensor:
        inside.append(_modes())
        return F.linear(x, w)

    steps = kernels.DecodeSteps(True)
    with torch.inference_mode():
        x = torch.randn(rows, 32)
        results = [steps(step, x) for _ in range(4)]
    assert steps.routing is routing
    assert inside == [1] + [int(routing)] * 3
    assert all(torch.equal(r, results[0]) for r in results)
    off = kernels.DecodeSteps(False)
    with torch.inference_mode():
        off(step, x)
    assert inside[-1] == 0 and off.routing is False


@pytest.mark.parametrize(("case", "mkl_rows", "batch", "later_steps_inside"), [
    ("float32, 1-row products on Intel", (1, 2, 3), 1, False),
    ("float32, 4-row products", (1, 2, 3), 4, True),
    ("int8 weight-only, oneDNN for every row count", (), 4, False),  # its layers call no F.linear
])
def test_generate_decodes_outside_the_context_where_nothing_routes(monkeypatch: pytest.MonkeyPatch, case: str,
                                                                  mkl_rows: tuple[int, ...], batch: int,
                                                                  later_steps_inside: bool) -> None:
    """The prompt inside oneDNN's context, the first decode step too where the prompt had a product
    it could take; the later steps inside it only where that step routed a product; the tokens
    those of a run entirely without the context."""
    from xcli_models.quantize import quantize_weight_only

    monkeypatch.setattr(kernels, "_mkl_rows", lambda: mkl_rows)
    torch.manual_seed(0)
    model = XGLMForCausalLM(XGLMConfig(vocab_size=300, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                                       max_position_embeddings=64)).eval()
    if case.startswith("int8"):
        quantize_weight_only(model)
    seen: list[int] = []
    head = model.lm_head.forward  # one call per model call

    def watched(*args: object, **kwargs: object) -> object:
        seen.append(_modes())
        return head(*args, **kwargs)

    monkeypatch.setattr(model.lm_head, "forward", watched)
    ids = torch.tensor([[2, 17, 45, 99, 12]] * batch)
    tokens = model.generate(ids, max_new_tokens=6)
    inside = 1 if kernels.onednn_available() else 0
    if case.startswith("int8"):  # a prompt without a product oneDNN could take: nothing after it inside
        assert seen == [inside] + [0] * 5
        seen.clear()
        assert torch.equal(model.generate(ids, max_new_tokens=6), tokens)
        assert seen == [0] * 6  # the model's next prompts neither
    else:
        assert seen == [inside, inside] + [inside if later_steps_inside else 0] * 4  # prompt, first step, the rest
    assert torch.equal(tokens, model.generate(ids, max_new_tokens=6, onednn=False))
