"""What ``xcli serve`` keeps warm and how it runs a client's records (no HTTP here: see
:mod:`xcli.serving.server`).

A client's run arrives as its command line (:mod:`xcli.serving.wire`). The engine parses it with
the very command the client ran, inside the client's :class:`~xcli.invocation.Invocation`, where
:func:`~xcli.record_command.run_record_command` only hands over the command's ``start`` and its
parsed options. ``start`` builds the :class:`~xcli.record_command.Job` (load the model, build
the task), and the engine keeps it, keyed by the command and every option that is not about
records (input, output, format ...), the client's folder and model environment:

* :class:`Models`: the checkpoints in memory, least recently used unloaded first past
  ``max_memory`` bytes of weights; a checkpoint whose files changed (size or time) loads again;
* :class:`Runs`: the built jobs (what ``start`` said on stderr is kept and said again to each
  client that opens one); a job whose checkpoint changed is built again;
* :class:`Batcher`: the task commands (classify, fill-mask, qa, score, tokenize) put the rounds of
  all clients of one job into one model call. Their numbers do not depend on the batch (see
  ``xcli_models.tasks.common``), so every client's lines are the bytes it would have written
  alone. ``generate`` runs each client's round as the client would (its decoding is not
  batch-invariant), concurrently with the others.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import UsageError, XcliError
from ..invocation import MODEL_ENVIRONMENT, Invocation, Served, enter, leave
from ..io import Record

#: commands whose rounds from different clients may share a model call (batch-invariant)
BATCHED = frozenset({"classify", "fill-mask", "qa", "score", "tokenize"})
#: the commands a server runs
COMMANDS = BATCHED | {"generate", "evaluate"}
#: options about records and messages, not about the model work: jobs are shared across them
_RECORD_OPTIONS = frozenset({"texts", "input", "input_format", "output", "output_format", "force", "keep",
                             "on_error", "quiet", "debug", "no_server", "shard"})
#: built jobs kept (least recently used dropped first)
MAX_RUNS = 64


class Cancelled(Exception):
    """The client went away: its work stops."""


def stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a checkpoint's files change: each file's name, size and modification time."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return ()
    out = []
    for entry in entries:
        try:
            info = entry.stat()
        except OSError:
            continue
        out.append((entry.name, info.st_size, info.st_mtime_ns))
    return tuple(out)


def weight_bytes(task: Any) -> int:
    model = getattr(task, "model", None)
    if model is None:
        return 0
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class _Gates:
    """Locks by key, a fixed number of them (work on one key waits for other work on it; memory
    does not grow with the keys seen)."""

    def __init__(self, count: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(count)]

    def of(self, key: Any) -> threading.Lock:
        return self._locks[hash(key) % len(self._locks)]


@dataclass
class _Model:
    task: Any
    stamp: tuple[Any, ...]
    size: int


class Models:
    """Warm checkpoints, keyed by folder, device and dtype; least recently used unloaded past
    ``max_memory`` (``forget(task)`` then drops what else holds it)."""

    def __init__(self, max_memory: int, forget: Callable[[Any], None] = lambda task: None) -> None:
        self.max_memory = max_memory
        self.forget = forget
        self._entries: OrderedDict[tuple[str, str, str, str], _Model] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = _Gates()

    def load(self, path: Path, device: str, dtype: str, build: Callable[[], Any], kind: str = "task") -> Any:
        """The warm model ``build()`` makes for this checkpoint (``kind``: what it was built for)."""
        key = (str(path), device, dtype, kind)
        with self._loading.of(key):  # one load per checkpoint at a time; the others wait for it
            now = stamp(path)
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.stamp == now:
                    self._entries.move_to_end(key)
                    return entry.task
                self._entries.pop(key, None)
            task = build()
            size = weight_bytes(task)
            with self._lock:
                self._entries[key] = _Model(task, now, size)
                evicted = self._evict(keep=key)
            for old in evicted:
                self.forget(old)
            return task

    def _evict(self, keep: tuple[str, str, str, str]) -> list[Any]:
        evicted = []
        while sum(e.size for e in self._entries.values()) > self.max_memory and len(self._entries) > 1:
            oldest = next(k for k in self._entries if k != keep)
            evicted.append(self._entries.pop(oldest).task)
        return evicted

    def loaded(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"path": k[0], "device": k[1], "dtype": k[2], "for": k[3], "bytes": e.size}
                    for k, e in self._entries.items()]


@dataclass
class _Ticket:
    items: list[Any]
    cancelled: threading.Event
    results: list[Any] | None = None
    error: BaseException | None = None
    done: bool = False


class Batcher:
    """One job's model calls: the items of all rounds waiting when the model is free go in one call.

    The first waiting thread runs the call for everyone (up to ``limit`` items); the others wait
    for their share. Rounds still being prepared (:meth:`expecting`) are waited for a moment
    (``gather_s``) before a call, so that they join it. A call that raises is run again for each
    round alone, so that each round gets its own error (and :func:`xcli.io.handle` finds the bad
    record in it).
    """

    def __init__(self, process: Callable[[list[Any]], Sequence[Any]], limit: int, gather_s: float = 0.002) -> None:
        self.process = process
        self.limit = max(1, limit)
        self.gather_s = gather_s
        self._pending: list[_Ticket] = []
        self._coming = 0  # rounds announced, not yet handed over
        self._last = (0, 0.0)  # rounds in the last call, and its seconds
        self._busy = False
        self._cv = threading.Condition()

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Around a round's preparation: a call about to start waits a moment for it."""
        with self._cv:
            self._coming += 1
        try:
            yield
        finally:
            with self._cv:
                self._coming -= 1
                self._cv.notify_all()

    def run(self, items: list[Any], cancelled: threading.Event | None = None) -> list[Any]:
        ticket = _Ticket(list(items), cancelled or threading.Event())
        with self._cv:
            self._pending.append(ticket)
            self._coming -= 1  # (handed over: no longer coming; expecting() adds it back at the end)
            self._cv.notify_all()
            while not ticket.done:
                if self._busy:
                    self._cv.wait()
                    continue
                self._busy = True
                self._gather()
                batch = self._take()
                self._cv.release()
                began = time.perf_counter()
                try:
                    self._call(batch)
                finally:
                    self._last = (len(batch), time.perf_counter() - began)
                    self._cv.acquire()
                    self._busy = False
                    self._cv.notify_all()
            self._coming += 1
        if ticket.error is not None:
            raise ticket.error
        assert ticket.results is not None
        return ticket.results

    def _gather(self) -> None:
        """Before a call (the lock held): wait for the rounds being prepared, and, when the last call
        served several clients, for theirs: rounds keep coming back while the model is free, and a
        call that starts at once serves only half of them (two halves taking turns). Waits while
        rounds keep arriving (until none came for ``gather_s`` or a twentieth of the last call's
        time), a fifth of the last call's time in all (50 ms at most); one client never waits."""
        rounds, seconds = self._last
        if rounds <= 1 and self._coming <= 0:
            return
        now = time.perf_counter()
        deadline = now + (min(0.05, seconds / 5) if rounds > 1 else self.gather_s)
        quiet = max(self.gather_s, seconds / 20)
        seen, quiet_since = len(self._pending), now
        while now < deadline:
            self._cv.wait(min(quiet, deadline - now))
            now = time.perf_counter()
            if len(self._pending) != seen:
                seen, quiet_since = len(self._pending), now
            elif self._coming <= 0 and now - quiet_since >= quiet:
                return  # nothing more came for a while

    def _take(self) -> list[_Ticket]:
        batch, size = [], 0
        while self._pending and (not batch or size + len(self._pending[0].items) <= self.limit):
            ticket = self._pending.pop(0)
            if ticket.cancelled.is_set():
                ticket.error, ticket.done = Cancelled(), True
                continue
            batch.append(ticket)
            size += len(ticket.items)
        return batch

    def _call(self, batch: list[_Ticket]) -> None:
        if not batch:
            return
        try:
            merged = [item for ticket in batch for item in ticket.items]
            results = list(self.process(merged))
            if len(results) != len(merged):
                raise RuntimeError(f"{len(merged)} items gave {len(results)} results")
            at = 0
            for ticket in batch:
                ticket.results = results[at : at + len(ticket.items)]
                at += len(ticket.items)
        except Exception:  # noqa: BLE001 - each round alone, with its own error
            if len(batch) == 1:
                self._alone(batch[0])
            else:
                for ticket in batch:
                    self._alone(ticket)
        for ticket in batch:
            ticket.done = True

    def _alone(self, ticket: _Ticket) -> None:
        try:
            ticket.results = list(self.process(ticket.items))
        except Exception as exc:  # noqa: BLE001 - handed to the round's own thread
            ticket.error = exc


@dataclass
class Run:
    """A built job and what its building said on stderr."""

    job: Any
    said: list[list[Any]]
    paths: dict[str, tuple[Any, ...]]  # the checkpoints it read, with their stamps
    tasks: list[Any] = field(default_factory=list)  # the warm models it holds
    batcher: Batcher | None = None


@dataclass
class Request:
    """One client exchange: its command line, folder, environment and records."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    records: list[Record]
    said: list[list[Any]] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_json(cls, body: Any, make_record: Callable[[Any], Record]) -> "Request":
        if not isinstance(body, dict):
            raise ValueError("the request must be a JSON object")
        argv, cwd, env = body.get("argv"), body.get("cwd", "/"), body.get("env", {})
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError('"argv" must be a non-empty array of strings (the command first)')
        if argv[0] not in COMMANDS:
            raise ValueError(f"the server runs {', '.join(sorted(COMMANDS))}, not {argv[0]!r}")
        if not isinstance(cwd, str) or not os.path.isabs(cwd):
            raise ValueError('"cwd" must be an absolute path')
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError('"env" must be an object of strings')
        env = {k: v for k, v in env.items() if k in MODEL_ENVIRONMENT}
        records = body.get("records", [])
        if not isinstance(records, list):
            raise ValueError('"records" must be an array')
        return cls(argv, cwd, env, [make_record(r) for r in records])


class Engine:
    """Parses a client's command line, keeps the jobs and models warm, and runs rounds."""

    def __init__(self, max_memory: int) -> None:
        self.models = Models(max_memory, self._forget)
        self._runs: OrderedDict[Any, Run] = OrderedDict()
        self._lock = threading.Lock()
        self._building = _Gates()
        self._pieces = threading.local()

    # --------------------------------------------------------------- a client's command line
    def parse(self, request: Request, hooks: Served) -> tuple[Any, dict[str, Any]]:
        """The command's ``start`` and the key of its job, from the client's command line."""
        token = enter(Invocation(tuple(request.argv), request.cwd, request.env, hooks))
        try:
            self._program().main(args=list(request.argv), prog_name="xcli", standalone_mode=False)
        except XcliError:
            raise  # the command's own check (an HTTP client's options)
        except Exception as exc:  # noqa: BLE001 - a click usage error, or a line this server cannot read
            message = getattr(exc, "format_message", lambda: str(exc))()
            raise UsageError(f"xcli {request.argv[0]}: {' '.join(message.split())}",
                             "see 'xcli {} --help' (a command line the server should read: is it another "
                             "xcli version?)".format(request.argv[0])) from None
        finally:
            leave(token)
        captured = hooks.captured
        if "start" not in captured and "measure" not in captured:
            raise UsageError(f"the server does not run '{request.argv[0]}'")
        params = {k: v for k, v in captured["params"].items() if k not in _RECORD_OPTIONS}
        key = (request.argv[0], json.dumps(params, sort_keys=True, default=str), request.cwd,
               tuple(sorted(request.env.items())))
        return captured, {"key": key, "streaming": bool(params.get("stream"))}

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one engine per server
    def _program(self) -> Any:
        """The command line's click group (built once: typer builds it anew on each call)."""
        from typer.main import get_command

        from ..app import app

        return get_command(app)

    def measure(self, request: Request, hooks: Served, measure: Callable[[Any], Any]) -> Any:
        """``evaluate``'s model side on all the client's records, in the client's invocation."""
        token = enter(Invocation(tuple(request.argv), request.cwd, request.env, hooks))
        try:
            return measure(request.records)
        finally:
            leave(token)

    def run_for(self, request: Request, hooks: Served, parsed: tuple[Any, dict[str, Any]] | None = None) -> Run:
        """The warm job for this command line (built now if it is not, or if its checkpoint changed)."""
        captured, info = parsed or self.parse(request, hooks)
        key = info["key"]
        run = self._fresh(key)
        if run is not None:
            return run
        with self._building.of(key):
            run = self._fresh(key)  # built by another request meanwhile?
            if run is not None:
                return run
            run = self._build(request, hooks, captured, info)
            with self._lock:
                self._runs[key] = run
                self._runs.move_to_end(key)
                while len(self._runs) > MAX_RUNS:
                    self._runs.popitem(last=False)
            return run

    def _fresh(self, key: Any) -> Run | None:
        """The built job of ``key`` if its checkpoints' files have not changed since."""
        with self._lock:
            run = self._runs.get(key)
        if run is None or any(stamp(Path(p)) != s for p, s in run.paths.items()):
            return None
        with self._lock:
            if key in self._runs:
                self._runs.move_to_end(key)
        return run

    def _build(self, request: Request, hooks: Served, captured: dict[str, Any], info: dict[str, Any]) -> Run:
        """``start`` in the client's invocation; the checkpoints it resolves and loads are noted."""
        run = Run(None, [], {})
        load, seen = hooks.load, hooks.seen

        def remember(path: Path, device: str, dtype: str, build: Callable[[], Any], kind: str = "task") -> Any:
            run.paths[str(path)] = stamp(path)
            task = load(path, device, dtype, build, kind)
            run.tasks.append(task)
            return task

        hooks.load = remember
        hooks.seen = lambda path: run.paths.setdefault(str(path), stamp(path))
        token = enter(Invocation(tuple(request.argv), request.cwd, request.env, hooks))
        try:
            run.job = captured["start"](self._emit)
        finally:
            leave(token)
            hooks.load, hooks.seen = load, seen
        run.said = list(request.said)
        if request.argv[0] in BATCHED and not info["streaming"]:
            run.batcher = Batcher(run.job.process, run.job.batch_size)
        return run

    def _forget(self, task: Any) -> None:
        """A model was unloaded: so are the jobs built on it (they are built again when asked for)."""
        with self._lock:
            for key in [k for k, run in self._runs.items() if any(t is task for t in run.tasks)]:
                del self._runs[key]

    # --------------------------------------------------------------- rounds
    def _emit(self, piece: str | None) -> None:
        """``generate --stream`` pieces, to the client whose round runs in this thread."""
        target = getattr(self._pieces, "target", None)
        if target is not None:
            target(piece)

    def handle(self, request: Request, hooks: Served, run: Run, pieces: Callable[[str | None], None]) -> list[Any]:
        """One result per record of the round (a dict or a RecordError)."""
        from ..io import handle

        def process(items: list[Any]) -> Sequence[Any]:
            if request.cancelled.is_set():
                raise Cancelled()
            if run.batcher is not None:
                return run.batcher.run(items, request.cancelled)
            return run.job.process(items)

        self._pieces.target = pieces
        token = enter(Invocation(tuple(request.argv), request.cwd, request.env, hooks))
        try:
            if run.batcher is None:
                return handle(request.records, run.job.prepare, process)
            with run.batcher.expecting():
                return handle(request.records, run.job.prepare, process)
        finally:
            leave(token)
            self._pieces.target = None

    def loaded(self) -> list[dict[str, Any]]:
        return self.models.loaded()
