"""Declared forwards (xcli_models.arguments, layers.stack): a stack's and a task model's forward take
their documented arguments in order, show them to ``inspect.signature``, and refuse an unknown or
doubled argument as a written-out signature would."""

from __future__ import annotations

import inspect

import pytest
import torch

from xcli_models import XGLMConfig, XGLMForCausalLM
from xcli_models.layers.stack import DECODER_ARGUMENTS


@pytest.fixture(scope="module")
def model() -> XGLMForCausalLM:
    torch.manual_seed(0)
    config = XGLMConfig(vocab_size=64, d_model=16, num_layers=1, attention_heads=2, ffn_dim=32,
                        max_position_embeddings=32)
    return XGLMForCausalLM(config).eval()


def names(forward) -> list[str]:  # noqa: ANN001
    return list(inspect.signature(forward).parameters)


def test_signatures_show_the_declared_arguments_in_order(model: XGLMForCausalLM) -> None:
    stack = names(model.model.forward)
    assert stack[:3] == ["input_ids", "attention_mask", "position_ids"]  # XGLM adds position_ids second
    assert [n for n in stack if n != "position_ids"][:len(DECODER_ARGUMENTS)] == [
        getattr(a, "name", a) for a in DECODER_ARGUMENTS]
    # the head takes its base's arguments in their order, with its own where the reference puts them
    head = names(model.forward)
    assert [n for n in head if n not in ("labels", "num_items_in_batch")] == stack
    assert head.index("labels") == head.index("inputs_embeds") + 1


def test_positional_and_keyword_calls_agree(model: XGLMForCausalLM) -> None:
    ids = torch.tensor([[5, 6, 7]])
    with torch.inference_mode():
        by_keyword = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        by_position = model(ids, torch.ones_like(ids)).logits
    assert torch.equal(by_keyword, by_position)


def test_an_unknown_or_doubled_argument_is_a_type_error(model: XGLMForCausalLM) -> None:
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(TypeError, match="attention_masks"):
        model(input_ids=ids, attention_masks=torch.ones_like(ids))
    with pytest.raises(TypeError, match="input_ids"):
        model(ids, input_ids=ids)
    with pytest.raises(TypeError):
        model.model(ids, atention_mask=None)
    with pytest.raises(TypeError, match="atention_mask"):  # keywords only: the precomputed path's call
        model.model(input_ids=ids, atention_mask=None)


def _declared_classes() -> list[type]:
    import importlib
    import pkgutil

    import xcli_models.families
    from xcli_models.arguments import DeclaredForward

    for family in pkgutil.iter_modules(xcli_models.families.__path__):
        if family.ispkg:
            importlib.import_module(f"xcli_models.families.{family.name}.modeling")

    found, todo = [], [DeclaredForward]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "_signature" in vars(cls):
            found.append(cls)
    return found


def test_a_keywords_only_call_binds_as_the_signature_does() -> None:
    """``bind_arguments``' precomputed keyword path gives what ``inspect.Signature.bind`` gives."""
    classes = _declared_classes()
    assert len(classes) > 10
    for cls in classes:
        fake = object.__new__(cls)  # bind_arguments reads only class attributes
        params = list(cls._signature.parameters.values())
        names = [p.name for p in params if p.kind != inspect.Parameter.VAR_KEYWORD]
        for given in (names, names[::-2], names[1:3], []):
            kwargs = {name: object() for name in reversed(given)}
            for defaults in (False, True):
                try:
                    expected = cls._signature.bind(**kwargs)
                except TypeError:  # a required argument left out (a test's own class)
                    with pytest.raises(TypeError):
                        fake.bind_arguments((), kwargs, defaults=defaults)
                    continue
                if defaults:
                    expected.apply_defaults()
                got = fake.bind_arguments((), kwargs, defaults=defaults)
                assert list(got.items()) == list(expected.arguments.items()), (cls, given, defaults)
