"""xcli.console (stderr: colour, quiet, progress) and xcli.errors (the message table)."""

from __future__ import annotations

import errno
import io as stdio
import sys

import pytest

from xcli.console import WARNINGS_SHOWN, Console
from xcli.errors import ExitCode, OutputClosed, RecordError, UsageError, describe, snake_case


class Terminal(stdio.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """sys.stderr as a terminal, for the rest of the test (call it in the test body:
    pytest swaps sys.stderr between a fixture's setup and the test's call)."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.delenv("XCLI_DEBUG", raising=False)
    return stream


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    console = Console()
    console.error("bad")
    assert "\033[" in stderr.getvalue() and "bad" in stderr.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    stderr.truncate(0), stderr.seek(0)
    console.error("bad")
    assert stderr.getvalue() == "xcli: error: bad\n"


def test_quiet_keeps_errors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console()
    console.quiet = True
    console.warning("w")
    console.note("n")
    console.error("e")
    assert stderr.getvalue() == "xcli: error: e\n"


def test_counted_warnings_print_a_few_then_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console()
    for n in range(10):
        console.counted_warning("truncated", f"record {n} truncated")
    console.summarize_warnings({"truncated": "truncated to --max-length"})
    lines = stderr.getvalue().splitlines()
    assert len(lines) == WARNINGS_SHOWN + 1
    assert lines[-1] == "xcli: warning: 10 records in all: truncated to --max-length"


def test_a_closed_stderr_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(stdio.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", Closed())
    Console().error("nobody listens")  # no exception


def test_progress_bar_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console()
    with console.progress(total=None) as bar:
        bar.advance(3)
        console.warning("during the bar")
    text = stderr.getvalue()
    assert "records" in text and "3" in text and "during the bar" in text
    monkeypatch.setattr(sys, "stderr", stdio.StringIO())  # not a terminal: nothing at all
    with console.progress(total=5) as bar:
        bar.advance(5)
    assert sys.stderr.getvalue() == ""


def test_debug_prints_the_traceback_first(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    monkeypatch.setenv("XCLI_DEBUG", "1")
    console = Console()
    try:
        raise ValueError("deep")
    except ValueError as exc:
        console.exception(exc, "one line")
    text = stderr.getvalue()
    assert text.index("Traceback") < text.index("one line")


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (UsageError("no model", "pass -m"), ExitCode.USAGE, "no model; pass -m"),
        (OutputClosed(), ExitCode.BROKEN_PIPE, "output pipe closed"),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.bin"), ExitCode.FAILURE,
         "No such file or directory: x.bin"),
        (MemoryError(), ExitCode.FAILURE, "out of memory (try a smaller --batch-size or --max-length)"),
        (type("TokenizerError", (ValueError,), {})("no\nvocab"), ExitCode.FAILURE, "cannot load the tokenizer: no vocab"),
        (RuntimeError("weird"), ExitCode.FAILURE, "internal error: RuntimeError: weird (run again with --debug"),
    ],
)
def test_the_message_table(exc: BaseException, code: ExitCode, message: str) -> None:
    got_code, got_message = describe(exc)
    assert got_code == code and got_message.startswith(message) and "\n" not in got_message


def test_record_errors_from_exceptions() -> None:
    assert snake_case("TokenizerError") == "tokenizer_error"
    error = RecordError.from_exception(KeyError("k"))
    assert error.to_json() == {"type": "key_error", "message": "'k'"}


def test_model_core_warnings_are_xcli_warnings_and_quiet_silences_them(tmp_path) -> None:
    import json as _json

    from typer.testing import CliRunner

    from task_fixtures import build_native
    from xcli.app import app

    path = build_native(tmp_path / "lm", "XLNetLMHeadModel")
    config = _json.loads((path / "config.json").read_text())
    config["architectures"] = ["XLNetForSequenceClassification"]  # its head is not in the weights
    (path / "config.json").write_text(_json.dumps(config))
    runner = CliRunner()
    loud = runner.invoke(app, ["classify", "-m", str(path), "a text"])
    assert loud.exit_code == 0, loud.stderr
    warnings = [line for line in loud.stderr.splitlines() if "newly initialised" in line or "initiali" in line]
    assert warnings and all(line.startswith("xcli: warning: ") for line in warnings), loud.stderr
    quiet = runner.invoke(app, ["classify", "-m", str(path), "--quiet", "a text"])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr


def test_a_failed_tensor_allocation_is_out_of_memory_not_an_internal_error() -> None:
    exc = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)"
    )
    code, message = describe(exc)
    assert code == ExitCode.FAILURE and message.startswith("out of memory") and "internal error" not in message
