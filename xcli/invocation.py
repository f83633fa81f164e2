"""Who asked for this run: its command line, working folder and environment.

A command run in its own process reads these from the process (``sys.argv``, the working folder,
``os.environ``). Inside ``xcli serve`` many runs share one process, one per request thread; each
request sets its client's invocation here (a context variable, so every thread of a request sees
its own) with the hooks the server lends the run (:class:`Served`). The few places that depend on
the caller read :func:`current`: the model resolution (``--model`` relative to the client's folder,
``XCLI_MODEL`` and the Hugging Face cache variables of the client's environment), the console
(whose lines a served run sends back to its client), the model loading (warm models) and
:func:`xcli.record_command.run_record_command` (which only captures the run's ``start``).

Only the standard library: the client side of ``xcli serve`` never imports torch.
"""

from __future__ import annotations

import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

#: the environment variables a client passes to the server: the ones that decide which model loads
MODEL_ENVIRONMENT = ("XCLI_MODEL", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "HOME", "XDG_CACHE_HOME")


@dataclass
class Served:
    """What ``xcli serve`` lends a run it serves (None of it in a command's own process).

    ``say(method, *args)`` takes the console's calls (``warning``, ``note`` ...), to be replayed by
    the client's console; ``load(path, device, dtype, build)`` returns the warm model for a checkpoint
    (``build()`` loads it when there is none); ``seen(path)`` hears of each checkpoint folder
    resolved; ``captured`` receives the run's ``start`` function and
    parsed options from :func:`xcli.record_command.run_record_command`.
    """

    say: Callable[..., None]
    load: Callable[..., Any]
    captured: dict[str, Any] = field(default_factory=dict)
    #: told each checkpoint folder the run resolves (a job is built again when its files change)
    seen: Callable[[Path], Any] = lambda path: None


@dataclass(frozen=True)
class Invocation:
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    served: Served | None = None

    def path(self, spec: str) -> Path:
        """``spec`` as a path: ``~`` is the caller's home, a relative path is in the caller's folder."""
        if spec == "~" or spec.startswith("~/"):
            home = self.env.get("HOME")
            spec = (home + spec[1:]) if home else os.path.expanduser(spec)
        path = Path(spec)
        return path if path.is_absolute() else Path(self.cwd) / path


_current: ContextVar[Invocation | None] = ContextVar("xcli_invocation", default=None)


def current() -> Invocation:
    """The invocation being served, else this process's own."""
    served = _current.get()
    if served is not None:
        return served
    return Invocation(tuple(sys.argv[1:]), os.getcwd(), os.environ)


def served() -> Served | None:
    """The server's hooks when this run is served, else None."""
    invocation = _current.get()
    return invocation.served if invocation is not None else None


def enter(invocation: Invocation) -> Any:
    """Make ``invocation`` the current one (in this context); returns the token for :func:`leave`."""
    return _current.set(invocation)


def leave(token: Any) -> None:
    _current.reset(token)
