"""xcli.record_command: the run every record command makes (read -> open -> start -> run -> write -> finish)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import pytest
import typer

from xcli.errors import RecordError, RecordsFailed, UsageError
from xcli.options import Lang
from xcli.record_command import Job, ModelOptions, RecordIO, run_record_command


#: a shared option declared otherwise by one command (a string instead of a number)
Workers = Annotated[Optional[str], typer.Option("--threads", metavar="NAME")]


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


def test_command_line_adds_the_shared_options_and_hands_over_built_bundles(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command declares its own options; command_line adds the shared ones of the bundles it
    asks for (with this command's changes), configures the console and builds the bundles."""
    import inspect

    from typer.testing import CliRunner

    from xcli.console import console
    from xcli.record_command import DROP, Option, command_line

    configured: list[dict[str, bool]] = []
    monkeypatch.setattr(console, "configure", lambda **given: configured.append(given))
    got: dict[str, Any] = {}

    @command_line(batch_size=32, max_length=DROP, threads=Option(Workers, None))
    def toy(lang: Lang = None, *, streams: RecordIO, run: ModelOptions, server: bool) -> None:
        got.update(lang=lang, streams=streams, run=run, server=server)

    names = list(inspect.signature(toy).parameters)
    assert names[:3] == ["texts", "model", "lang"] and names[-3:] == ["quiet", "debug", "no_server"]
    assert "max_length" not in names and {"streams", "run", "server"}.isdisjoint(names)
    app = typer.Typer()
    app.command()(toy)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["toy", "-m", "x", "--threads", "fr", "-O", "text", "-q", "--no-server", "a", "b"])
    assert result.exit_code == 0, result.output
    assert got["server"] is False and configured == [{"quiet": True, "debug": False}]
    assert got["run"] == ModelOptions("x", got["run"].device, got["run"].dtype, "fr", 32, None, None)
    assert got["streams"].texts == ["a", "b"] and got["streams"].output_format.value == "text"
    CliRunner().invoke(app, ["toy"], input="")
    assert got["server"] is True and got["run"].batch_size == 32 and got["run"].model is None


@pytest.mark.parametrize("command", ["tokenize", "fill-mask", "classify", "qa", "score", "generate", "evaluate"])
def test_every_record_command_takes_no_server(command: str) -> None:
    """--no-server reaches the run (fill-mask and tokenize once dropped it)."""
    import importlib
    import inspect

    from xcli.app import COMMANDS

    module, name = COMMANDS[command].split(":")
    function = getattr(importlib.import_module(f"xcli.commands.{module}"), name)
    assert "no_server" in inspect.signature(function).parameters
    assert "server" in inspect.signature(function.__wrapped__).parameters
