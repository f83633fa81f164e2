"""RFC 8259 JSON, both ways: a JSONL line read strictly (no NaN/Infinity, no out-of-range number,
no nesting past :data:`MAX_DEPTH`) and an object written as one line of valid JSON in valid UTF-8."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from ..errors import RecordError

#: the deepest nesting of arrays and objects in a JSONL record, the record itself counting as 1;
#: a deeper one becomes a ``too_deep`` record error
MAX_DEPTH = 100


def _out_of_range(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        shown = literal if len(literal) <= 24 else literal[:20] + "..."
        raise RecordError("invalid_number", f"the number {shown} is out of range (a 64-bit float ends near 1.8e308)")
    return value


def _not_a_number(name: str) -> Any:
    raise RecordError("invalid_number", f"{name} is not a JSON number (JSON has no NaN or Infinity)")


#: RFC 8259 JSON only: Python's json module also takes NaN, Infinity and -Infinity, and turns a
#: literal like 1e400 into inf; either would come back out, echoed in "id", as invalid JSON
_DECODER = json.JSONDecoder(parse_float=_out_of_range, parse_constant=_not_a_number)


def parse_json(raw: bytes, text: str) -> Any:
    """A JSONL line's value; a :class:`RecordError` when it is not standard JSON or nests too deep.

    Depth is limited so that no record can exhaust the parser's (or the writer's) recursion:
    past ~1,000 levels ``json`` raises RecursionError, which would stop the whole run.
    """
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        raise _too_deep() from None
    except RecordError:
        raise
    except json.JSONDecodeError as exc:
        raise RecordError("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError:  # the only other one: int() refusing more digits than Python converts (3.10.7+)
        limit = sys.get_int_max_str_digits()  # type: ignore[attr-defined]
        raise RecordError("invalid_number", f"a number has more than {limit:,} digits") from None
    # fewer brackets than the limit (the usual case) cannot nest deeper than it: no walk needed
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise _too_deep()
    return data


def _too_deep() -> RecordError:
    return RecordError("too_deep", f"the JSON nests arrays and objects deeper than {MAX_DEPTH} levels")


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists and dicts more than ``limit`` deep (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


def json_default(value: Any) -> Any:
    for method in ("tolist", "item"):  # tensors and numpy values
        if hasattr(value, method):
            return getattr(value, method)()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def json_line(obj: dict[str, Any]) -> bytes:
    """One line of RFC 8259 JSON in UTF-8; ValueError for NaN or Infinity (see :func:`nulled`)."""
    try:
        return (json.dumps(obj, ensure_ascii=False, allow_nan=False, default=json_default) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: escaped, the line stays valid UTF-8
        return (json.dumps(obj, allow_nan=False, default=json_default) + "\n").encode("ascii")


def json_text(obj: dict[str, Any]) -> str:
    """``obj`` as one line of RFC 8259 JSON (with its newline), NaN and Infinity as null: for the
    one-object summaries of ``info``, ``convert`` and ``train``, which no record writer formats."""
    try:
        return json_line(obj).decode("utf-8")
    except ValueError:
        return json_line(nulled(obj)).decode("utf-8")


def nulled(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with each NaN, Infinity and -Infinity (anywhere inside it) replaced by None."""
    text = json.dumps(obj, ensure_ascii=False, default=json_default)  # writes them as NaN, Infinity ...
    return json.loads(text, parse_constant=lambda name: None)  # ... which read back as null
