"""xcli.record_command: the run every record command makes (read -> open -> start -> run -> write -> finish)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xcli.errors import RecordError, RecordsFailed, UsageError
from xcli.record_command import Job, RecordIO, run_record_command


def streams(texts: list[str] | None, output: Path, **changes: Any) -> RecordIO:
    fields = dict(texts=texts, inputs=None, input_format="auto", field="text", output=output, output_format="jsonl",
                  force=False, keep=None, on_error="continue")
    return RecordIO(**{**fields, **changes})


def lengths(seen: list[Any]) -> Any:
    """A start function: each text's length, in rounds of 2; the text "bad" fails its record."""
    def start(writer: Any) -> Job:
        seen.append(writer)

        def prepare(record: Any) -> str:
            text = record.text("text")
            if text == "bad":
                raise RecordError("bad_text", "not this one")
            return text

        return Job(prepare, lambda items: [{"n": len(text)} for text in items], 2)

    return start


def test_each_record_gets_its_line_in_order_and_a_failed_one_means_exit_4(tmp_path: Path) -> None:
    out, seen = tmp_path / "out.jsonl", []
    with pytest.raises(RecordsFailed) as failed:
        run_record_command(streams(["a", "bad", "ccc"], out), lengths(seen))
    assert failed.value.exit_code == 4 and len(seen) == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3
    assert lines[0] == {"n": 1} and lines[1]["error"]["type"] == "bad_text" and lines[2] == {"n": 3}


def test_all_good_records_finish_quietly(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run_record_command(streams(["a", "bb"], out), lengths([]))
    assert out.read_text() == '{"n": 1}\n{"n": 2}\n'


def test_an_existing_output_is_refused_before_anything_is_loaded(tmp_path: Path) -> None:
    out, seen = tmp_path / "out.jsonl", []
    out.write_text("kept\n")
    with pytest.raises(UsageError):
        run_record_command(streams(["a"], out), lengths(seen))
    assert seen == [] and out.read_text() == "kept\n"
