"""``xcli serve``'s HTTP side: a Starlette app served by uvicorn on a Unix socket or a loopback port.

Endpoints (JSON in, JSON out; the README documents them):

- ``GET /health``: ``{"status": "ok", "version", "pid", "models": [the loaded checkpoints]}``;
- ``GET /v1/models``: what ``xcli models`` lists, each with ``"loaded"``, in the usual
  ``{"object": "list", "data": [...]}`` layout;
- ``POST /v1/run``: the command line's own protocol (:mod:`xcli.serving.wire`);
- ``POST /v1/{command}`` (tokenize, fill-mask, classify, qa, score, generate):
  ``{"args": [command-line options and TEXT arguments], "records": [objects or strings]}``;
  the answer is the JSON lines (or ``-O text``/``tsv`` lines) the command prints for them;
- ``POST /v1/completions``: the widely used completions layout for causal models (``model``,
  ``prompt``, ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``stop``, ``seed``, ``stream``).

A malformed request gets a JSON error (400) and the server goes on; a run that fails (a model that
cannot load) fails only its own requests. The work of a request runs in a thread of its own; a
client that goes away cancels what has not started. With a token, every request must carry
``Authorization: Bearer TOKEN`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import io as _io
import json
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..errors import ExitCode, RecordError, describe
from ..invocation import Served
from ..io import Record, RecordWriter, json_text
from . import wire
from .engine import COMMANDS, Cancelled, Engine, Request

#: the largest request body read (bytes)
MAX_BODY = 64 * 1024 * 1024
#: requests worked on at once (more wait for a thread: memory stays bounded under any load)
WORKERS = 32
HEARTBEAT_S = 1.0


def _error(status: int, message: str, kind: str = "bad_request", code: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"type": kind, "message": message}}
    if code is not None:
        body["error"]["exit_code"] = code
    return JSONResponse(body, status_code=status)


async def _body(request: HttpRequest) -> Any:
    """The request's JSON body (ValueError when it is too big or not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ValueError(f"the request is larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError(f"the request is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the request is not JSON: {exc}") from None


class _Events:
    """A thread's events, handed to the response's async stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def put(self, event: dict[str, Any] | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def lines(self, cancelled: threading.Event) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(self.queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield b"\n"  # still working
                    continue
                if event is None:
                    return
                yield wire.dumps(event) + b"\n"
        finally:
            cancelled.set()  # the answer is over: finished, or the client went away


class Server:
    """The app and what it serves with."""

    def __init__(self, engine: Engine, token: str | None = None) -> None:
        self.engine = engine
        self.token = token
        self.started = time.time()
        self.rounds = 0  # client rounds run (records processed for the command line)
        self.cancelled = 0  # rounds stopped because their client went away
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/run", self.run, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/{command}", self.command, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="xcli-serve")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.token is not None and not self._authorized(scope):
            response = _error(401, "a bearer token is needed (Authorization: Bearer TOKEN)", "unauthorized")
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Any) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        expected = f"Bearer {self.token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    # ------------------------------------------------------------------ reading
    async def health(self, request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid(),
                             "uptime_s": round(time.time() - self.started, 3), "rounds": self.rounds,
                             "cancelled": self.cancelled,
                             "models": self.engine.loaded()})

    async def models(self, request: HttpRequest) -> Response:
        from ..commands.models import list_models

        loaded = {m["path"] for m in self.engine.loaded()}
        entries = await asyncio.to_thread(list_models, "all")
        data = [{**entry, "object": "model", "owned_by": entry.get("source", "xcli"),
                 "loaded": str(entry.get("path")) in loaded} for entry in entries]
        return JSONResponse({"object": "list", "data": data})

    # ------------------------------------------------------------------ running
    async def run(self, request: HttpRequest) -> Response:
        """The command line's protocol: events as JSON lines, heartbeats while working."""
        try:
            exchange = Request.from_json(await _body(request), wire.record_in)
        except ValueError as exc:
            return _error(400, str(exc))
        events = _Events(asyncio.get_running_loop())
        self.pool.submit(self._work, exchange, events.put)
        return StreamingResponse(events.lines(exchange.cancelled), media_type="application/x-ndjson")

    def _hooks(self, exchange: Request) -> Served:
        """What a served run borrows: its console calls kept for the client, the warm models."""
        return Served(say=lambda *call: exchange.said.append(list(call)), load=self.engine.models.load)

    def _work(self, exchange: Request, put: Callable[[dict[str, Any] | None], None]) -> None:
        """One exchange, in its own thread: open the run, or run a round."""
        hooks = self._hooks(exchange)
        try:
            parsed = self.engine.parse(exchange, hooks)
            if "measure" in parsed[0]:  # evaluate: all the records at once
                self.rounds += 1
                summary, outputs = self.engine.measure(exchange, hooks, parsed[0]["measure"])
                answer = {"measured": {"summary": summary, "outputs": [wire.result_out(o) for _, o in outputs]}}
                for call in exchange.said:
                    put({"say": call})
                put(answer)
                return
            run = self.engine.run_for(exchange, hooks, parsed)
            if not exchange.records:
                said, answer = run.said, {"opened": {"batch_size": run.job.batch_size}}
            else:
                exchange.said.clear()  # what building the job said was said when the run opened
                self.rounds += 1

                def piece(text: str | None) -> None:
                    if exchange.cancelled.is_set():  # the client is gone: stop generating
                        raise Cancelled()
                    put({"piece": text})

                results = self.engine.handle(exchange, hooks, run, piece)
                said, answer = exchange.said, {"results": [wire.result_out(r) for r in results]}
            for call in said:
                put({"say": call})
            put(answer)
        except Cancelled:
            self.cancelled += 1
        except Exception as exc:  # noqa: BLE001 - the run's failure, the client's to report
            for call in exchange.said:
                put({"say": call})
            code, message = describe(exc)
            put({"failed": {"code": int(code), "message": message, "traceback": traceback.format_exc(limit=20)}})
        finally:
            put({"done": True})
            put(None)

    async def command(self, request: HttpRequest) -> Response:
        """``POST /v1/{command}``: the lines the command prints for the records given."""
        command = request.path_params["command"]
        if command not in COMMANDS:
            return _error(404, f"no such command: {command} (the server runs {', '.join(sorted(COMMANDS))})",
                          "not_found")
        try:
            body = await _body(request)
            argv, records = _command_request(command, body)
        except ValueError as exc:
            return _error(400, str(exc))
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._lines, argv, records)

    def _lines(self, argv: list[str], records: list[Record]) -> Response:
        exchange = Request(argv, os.getcwd(), {}, records)
        hooks = self._hooks(exchange)
        try:
            parsed = self.engine.parse(exchange, hooks)
            if "measure" in parsed[0]:  # evaluate: its metrics object
                summary, _ = self.engine.measure(exchange, hooks, parsed[0]["measure"])
                return Response(json_text(summary), media_type="application/x-ndjson")
            run = self.engine.run_for(exchange, hooks, parsed)
            streams = hooks.captured["streams"]
            if not records:
                records[:] = _argument_records(streams)
                exchange.records = records
            results = self.engine.handle(exchange, hooks, run, lambda piece: None)
            sink = _io.BytesIO()
            writer = RecordWriter(sink, fmt=streams.output_format, keep=streams.keep,
                                  text_of=hooks.captured.get("text_of"), columns=hooks.captured.get("columns"))
            for record, result in zip(records, results, strict=True):
                writer.write(record, result)
            writer.close()
        except Exception as exc:  # noqa: BLE001 - one line, as the command would say it
            code, message = describe(exc)
            return _error(400 if code == ExitCode.USAGE else 500, message, "run_failed", int(code))
        media = "application/x-ndjson" if writer.fmt == "jsonl" else "text/plain; charset=utf-8"
        return Response(sink.getvalue(), media_type=media)

    async def completions(self, request: HttpRequest) -> Response:
        from .completions import parse, stream, whole

        try:
            body = await _body(request)
            query = parse(body)
        except ValueError as exc:
            return _error(400, str(exc))
        if query.stream:
            events = _Events(asyncio.get_running_loop())
            exchange = Request(query.argv(stream=True), os.getcwd(), {}, query.records())
            self.pool.submit(self._work, exchange, events.put)
            return StreamingResponse(stream(query, events.lines(exchange.cancelled)),
                                     media_type="text/event-stream")
        response = await asyncio.get_running_loop().run_in_executor(self.pool, self._lines, query.argv(stream=False),
                                                                     query.records())
        return whole(query, response)


def _command_request(command: str, body: Any) -> tuple[list[str], list[Record]]:
    """``{"args": [...], "records": [...]}`` -> the command line and the records (ValueError if bad)."""
    if not isinstance(body, dict):
        raise ValueError('the request must be a JSON object: {"args": [...], "records": [...]}')
    args, records = body.get("args", []), body.get("records", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError('"args" must be an array of strings (the command\'s options)')
    if not isinstance(records, list):
        raise ValueError('"records" must be an array of objects or strings')
    out = []
    for i, value in enumerate(records):
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict):
            out.append(Record(i, {}, f"record {i + 1}", None, RecordError("not_an_object", "a record must be an "
                                                                         "object or a string")))
            continue
        out.append(Record(i, value, f"record {i + 1}", None))
    return [command, *args], out


def _argument_records(streams: Any) -> list[Record]:
    """The TEXT arguments of a command line, as the command makes them records."""
    return [Record(i, {streams.field: text}, f"argument {i + 1}") for i, text in enumerate(streams.texts or [])]
