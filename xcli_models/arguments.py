"""Forward signatures declared once, as a tuple of argument names.

Many forwards take the same documented arguments: every decoder stack the same dozen, a task
model its base model's plus the head's own, the encoder-decoder models theirs. A class that
mixes in ``DeclaredForward`` lists them in ``arguments`` (in positional order) instead of
writing the signature out again; ``forward`` binds a call to them as a plain Python signature
would (an unknown or doubled argument is a TypeError), and ``inspect.signature(model.forward)``
shows them. Each argument defaults to None; its annotation is that of its name in ``TYPES``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Sequence

ARGUMENT = inspect.Parameter.POSITIONAL_OR_KEYWORD

#: argument names (or ``inspect.Parameter``\\ s), in positional order
Arguments = tuple["str | inspect.Parameter", ...]

_SWITCH = "bool | None"
#: the annotation of a declared argument, by name: a tensor (or None) unless named here
TYPES = {
    "use_cache": _SWITCH, "use_mems": _SWITCH, "output_attentions": _SWITCH, "output_hidden_states": _SWITCH,
    "return_dict": _SWITCH, "past_key_values": "Any", "encoder_outputs": "Any", "cache": "Any",
    "mems": "Sequence[torch.Tensor] | None", "predict_streams": "int | None",
    "num_items_in_batch": "int | torch.Tensor | None",
}


def as_parameter(argument: str | inspect.Parameter, kind: Any = ARGUMENT) -> inspect.Parameter:
    """A declared argument as a parameter: a name is positional-or-keyword, default None."""
    if isinstance(argument, inspect.Parameter):
        return argument
    return inspect.Parameter(argument, kind, default=None, annotation=TYPES.get(argument, "torch.Tensor | None"))


def keyword_only(*names: str) -> Arguments:
    """Arguments that may be given by keyword only (after every positional one)."""
    return tuple(as_parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names)


def arguments_of(forward: Callable[..., Any]) -> Arguments:
    """The arguments a forward takes by position (``self`` left out)."""
    params = list(inspect.signature(forward).parameters.values())[1:]
    return tuple(p for p in params if p.kind == ARGUMENT)


def inserted(
    arguments: Sequence[str | inspect.Parameter], after: Mapping[str, Sequence[str]], drop: Sequence[str] = ()
) -> Arguments:
    """``arguments`` with new ones inserted after the argument each key of ``after`` names, less ``drop``."""
    out: list[str | inspect.Parameter] = []
    for argument in arguments:
        name = as_parameter(argument).name
        if name not in drop:
            out.append(argument)
        out.extend(after.get(name, ()))
    return tuple(out)


class _KeywordBinding(NamedTuple):
    """What binding a keywords-only call needs, worked out once per signature (see ``bind_arguments``)."""

    order: tuple[str, ...]  # the names a keyword may give, in the signature's order
    names: frozenset[str]  # the same, as a set
    defaults: dict[str, Any]  # every parameter's value when not given (a ``**kwargs`` parameter: {})
    var_keyword: str | None  # the ``**kwargs`` parameter's name, if any


def keyword_binding(signature: inspect.Signature) -> _KeywordBinding | None:
    """The ``_KeywordBinding`` of ``signature``; None where a keywords-only call could bind in a way
    it does not cover (a required, positional-only or ``*args`` parameter)."""
    order: list[str] = []
    defaults: dict[str, Any] = {}
    var_keyword = None
    for param in signature.parameters.values():
        if param.kind == inspect.Parameter.VAR_KEYWORD:
            var_keyword = param.name
            defaults[param.name] = None  # a fresh {} per call
        elif param.kind in (ARGUMENT, inspect.Parameter.KEYWORD_ONLY) and param.default is not param.empty:
            order.append(param.name)
            defaults[param.name] = param.default
        else:
            return None
    return _KeywordBinding(tuple(order), frozenset(order), defaults, var_keyword)


class DeclaredForward:
    """Mixin: ``forward``'s arguments are the class's ``arguments`` (see the module docstring).

    The generated ``forward`` hands the call to ``_forward(*args, **kwargs)``, which reads it
    with ``bind_arguments``. ``extra_kwargs`` also accepts other keyword arguments (bound as
    ``kwargs``). A class that writes its own ``forward`` keeps it.
    """

    arguments: ClassVar[Arguments] = ()
    extra_kwargs: ClassVar[bool] = False
    #: what the forward returns (named in its signature)
    output: ClassVar[type] = object
    _signature: ClassVar[inspect.Signature]
    #: how a keywords-only call binds, worked out from ``_signature`` (None: always bind in full)
    _keyword_binding: ClassVar[_KeywordBinding | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.arguments or "forward" in cls.__dict__:
            return
        params = [as_parameter(a) for a in cls.arguments]
        if cls.extra_kwargs:
            params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
        cls._signature = inspect.Signature(params)
        cls._keyword_binding = keyword_binding(cls._signature)

        def forward(self: DeclaredForward, *args: Any, **kwargs: Any) -> Any:
            return self._forward(*args, **kwargs)

        forward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("self", ARGUMENT), *params], return_annotation=f"{cls.output.__name__} | tuple"
        )
        forward.__qualname__ = f"{cls.__qualname__}.forward"
        forward.__doc__ = cls.__doc__
        cls.forward = forward  # type: ignore[attr-defined]

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def bind_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, defaults: bool = False
    ) -> dict[str, Any]:
        """The call's arguments by name, in the declared order: those given, or (``defaults``)
        every declared one.

        A call by keyword only, with declared names only, is bound from the class's precomputed
        ``_keyword_binding`` (a decode step makes such calls, several per token); any other call
        (positional arguments, an unknown name, a ``**kwargs`` entry) goes through
        ``inspect.Signature.bind``, which also raises the TypeError of a bad call. Both give the
        same dict.
        """
        fast = self._keyword_binding
        if not args and fast is not None and fast.names.issuperset(kwargs):
            if not defaults:
                return {name: kwargs[name] for name in fast.order if name in kwargs}
            bound = {**fast.defaults, **kwargs}
            if fast.var_keyword is not None:
                bound[fast.var_keyword] = {}
            return bound
        bound = self._signature.bind(*args, **kwargs)
        if defaults:
            bound.apply_defaults()
        return dict(bound.arguments)
