"""``POST /v1/completions``: the completions layout many client tools speak, on ``xcli generate``.

A request ``{"model", "prompt": TEXT | [TEXT...], "max_tokens": 16, "temperature": 1.0,
"top_p": 1.0, "n": 1, "stop": TEXT | [TEXT...], "seed", "stream": false}`` becomes the command
line ``generate -m MODEL --new-text --max-new-tokens N ...`` (``temperature`` 0: greedy; otherwise
sampling at that temperature) over one record per prompt, and its results become
``{"id", "object": "text_completion", "created", "model", "choices": [{"text", "index",
"logprobs": null, "finish_reason": null}]}``: choice ``i * n + j`` is prompt ``i``'s ``j``-th
sequence. xcli does not report why a sequence ended, so ``finish_reason`` is null. With
``"stream": true`` the text comes as server-sent events (``data: {...}`` per piece, then
``data: [DONE]``); streaming takes one sequence per prompt (``n`` 1).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from starlette.responses import JSONResponse, Response

from ..io import Record


@dataclass(frozen=True)
class Query:
    model: str | None
    prompts: list[str]
    max_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: list[str]
    seed: int | None
    stream: bool

    def argv(self, stream: bool) -> list[str]:
        argv = ["generate", "--new-text", "--max-new-tokens", str(self.max_tokens)]
        if self.model:
            argv += ["-m", self.model]
        if self.temperature > 0:
            argv += ["--sample", "--temperature", repr(self.temperature)]
        if self.top_p < 1:
            argv += ["--top-p", repr(self.top_p)]
        if self.n > 1:
            argv += ["--num-return-sequences", str(self.n)]
        for stop in self.stop:
            argv += ["--stop", stop.replace("\\", "\\\\")]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        return argv + (["--stream"] if stream else [])

    def records(self) -> list[Record]:
        return [Record(i, {"text": p}, f"prompt {i + 1}") for i, p in enumerate(self.prompts)]


def _number(body: dict[str, Any], name: str, default: Any, kind: type, low: float) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ValueError(f'"{name}" must be a{"n integer" if kind is int else " number"}')
    if value < low:
        raise ValueError(f'"{name}" must be at least {low}')
    return kind(value)


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f'"{name}" must be a string or a non-empty array of strings')


def parse(body: Any) -> Query:
    """The request (ValueError naming what is wrong)."""
    if not isinstance(body, dict):
        raise ValueError("the request must be a JSON object")
    prompts = _strings(body.get("prompt"), "prompt")
    if not prompts:
        raise ValueError('"prompt" is needed')
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError('"model" must be a string')
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError('"seed" must be an integer')
    query = Query(model or None, prompts, _number(body, "max_tokens", 16, int, 1),
                  _number(body, "temperature", 1.0, float, 0), _number(body, "top_p", 1.0, float, 0),
                  _number(body, "n", 1, int, 1), _strings(body.get("stop"), "stop"), seed, bool(body.get("stream")))
    if query.stream and query.n > 1:
        raise ValueError('"stream" takes one sequence per prompt ("n": 1)')
    return query


def _envelope(query: Query, choices: list[dict[str, Any]], ident: str, created: int) -> dict[str, Any]:
    return {"id": ident, "object": "text_completion", "created": created, "model": query.model or "xcli/shakespeare",
            "choices": choices}


def _choice(text: str, index: int) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": None}


def whole(query: Query, response: Response) -> Response:
    """The generate command's lines -> one completions object."""
    if response.status_code != 200:
        return response
    choices = []
    for i, line in enumerate(bytes(response.body).decode("utf-8").splitlines()):
        out = json.loads(line)
        if "error" in out:
            return JSONResponse({"error": {**out["error"], "prompt": i}}, status_code=400)
        texts = [s["generated_text"] for s in out["sequences"]] if "sequences" in out else [out["generated_text"]]
        choices += [_choice(text, i * query.n + j) for j, text in enumerate(texts)]
    return JSONResponse(_envelope(query, choices, f"cmpl-{uuid.uuid4().hex}", int(time.time())))


async def stream(query: Query, lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The --stream pieces -> server-sent events."""
    ident, created, index = f"cmpl-{uuid.uuid4().hex}", int(time.time()), -1
    streamed: list[str] = []  # each prompt's text sent so far

    def chunk(text: str, at: int) -> bytes:
        return b"data: " + json.dumps(_envelope(query, [_choice(text, at)], ident, created)).encode() + b"\n\n"

    async for line in lines:
        if not line.strip():
            yield b": working\n\n"
            continue
        event = json.loads(line)
        if "piece" in event:
            if event["piece"] is None:
                index += 1
                streamed.append("")
                continue
            streamed[index] += event["piece"]
            yield chunk(event["piece"], index)
        elif "failed" in event:
            error = {"type": "run_failed", "message": event["failed"]["message"]}
            yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        elif "results" in event:
            for i, result in enumerate(event["results"]):
                if "error" in result:
                    kind, message = result["error"]
                    error = {"type": kind, "message": message, "prompt": i}
                    yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
                    continue
                text, shown = result["ok"]["generated_text"], streamed[i] if i < len(streamed) else ""
                if text.startswith(shown) and len(text) > len(shown):  # what the last pieces held back
                    yield chunk(text[len(shown):], i)
    yield b"data: [DONE]\n\n"
