"""A record: one input object, where it came from, and the read error it carries if any."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RecordError


@dataclass
class Record:
    """One input record: its fields, where it came from, and a read error if it has one."""

    index: int
    data: dict[str, Any]
    where: str  # "line 3", "data.jsonl line 3", "argument 2": for messages
    line: int | None = None  # line number in its source (None for TEXT arguments)
    error: RecordError | None = None

    @property
    def id(self) -> Any:
        return self.data.get("id")

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def text(self, name: str = "text", hint: str = "") -> str:
        """The string field ``name``; a missing or non-string field is a record error (``hint``: what to do)."""
        if name not in self.data:
            fields = ", ".join(sorted(self.data))
            found = f" (it has: {fields})" if fields else ""
            advice = f"; {hint}" if hint else ""
            raise RecordError("missing_field", f'no "{name}" field in the record{found}{advice}')
        return self._string(name)

    def optional_text(self, name: str) -> str | None:
        """The string field ``name``, or None when it is absent or null."""
        if self.data.get(name) is None:
            return None
        return self._string(name)

    def int_list(self, name: str) -> list[int]:
        """A list of integers: a JSON array, or a string of integers split by spaces/commas."""
        if name not in self.data:
            raise RecordError("missing_field", f'no "{name}" field in the record')
        value = self.data[name]
        if isinstance(value, str):
            try:
                return [int(part) for part in value.replace(",", " ").split()]
            except ValueError:
                raise RecordError("wrong_type", f'"{name}" must hold integers, got {value[:40]!r}') from None
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise RecordError("wrong_type", f'"{name}" must be an array of integers, not {json_type(value)}')

    def _string(self, name: str) -> str:
        value = self.data[name]
        if not isinstance(value, str):
            raise RecordError("wrong_type", f'"{name}" must be a string, not {json_type(value)}')
        return value


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
