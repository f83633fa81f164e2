"""xcli as a real process: streaming, closed pipes, signals, a terminal on stdin."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_support import BOOT, make_fake_model, xcli_env, xcli_process

#: only a guard against a hung test, never a speed requirement
HANG_GUARD_S = 120


@pytest.fixture
def model(tmp_path: Path) -> str:
    return str(make_fake_model(tmp_path / "model"))


def read_line(stream) -> bytes:
    ready, _, _ = select.select([stream], [], [], HANG_GUARD_S)
    assert ready, "xcli wrote nothing"
    return stream.readline()


def send(proc: subprocess.Popen, data: bytes) -> None:
    proc.stdin.write(data)
    proc.stdin.flush()


def test_each_answer_comes_before_the_next_input_is_given(model: str) -> None:
    proc = xcli_process("tokenize", "-m", model, "--fields", "ids")
    try:
        send(proc, b"hello\n")
        assert json.loads(read_line(proc.stdout)) == {"ids": [1, 4, 2]}
        send(proc, b'{"text": "world"}\n')  # the format was fixed by the first line: text
        assert json.loads(read_line(proc.stdout)) == {"ids": [1, 3, 3, 2]}  # two unknown words
        proc.stdin.close()
        assert proc.wait(HANG_GUARD_S) == 0
    finally:
        proc.kill()
    assert proc.stderr.read() == b""


def test_closed_pipe_ends_quietly(model: str) -> None:
    proc = xcli_process("tokenize", "-m", model)
    send(proc, b"hello\n")
    read_line(proc.stdout)
    proc.stdout.close()  # the reader goes away, like `| head -n 1`
    send(proc, b"world\n" * 1000)
    proc.stdin.close()
    assert proc.wait(HANG_GUARD_S) == 141
    assert proc.stderr.read() == b""


def test_head_in_a_shell_pipeline(model: str, tmp_path: Path) -> None:
    data = tmp_path / "many.txt"
    data.write_text("hello world\n" * 50_000)
    command = f'"{sys.executable}" -c "$BOOT" tokenize -m "{model}" -i "{data}" | head -n 3; echo "status=${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          env=xcli_env(BOOT=BOOT), timeout=HANG_GUARD_S)
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and all(json.loads(line)["ids"] == [1, 4, 5, 2] for line in lines[:3])
    assert lines[3] in ("status=141", "status=0")  # 0 only if xcli finished before head closed
    assert done.stderr == ""


def test_ctrl_c_exits_130_and_keeps_what_was_written(model: str) -> None:
    proc = xcli_process("tokenize", "-m", model, "--fields", "ids")
    send(proc, b"hello\n")
    assert json.loads(read_line(proc.stdout)) == {"ids": [1, 4, 2]}
    proc.send_signal(signal.SIGINT)  # xcli is waiting for more input
    assert proc.wait(HANG_GUARD_S) == 130
    stderr = proc.stderr.read().decode()
    assert "Traceback" not in stderr and "interrupted" in stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_the_output_file_as_partial(model: str, tmp_path: Path, sig: int) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    proc = xcli_process("tokenize", "-m", model, "-o", str(target), "--force")
    send(proc, b"hello\nworld\n")
    partial = tmp_path / "out.jsonl.partial"
    # the two lines are flushed to the temporary file before xcli waits for more input
    for _ in range(HANG_GUARD_S * 10):
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.")]
        if temps and temps[0].read_bytes().count(b"\n") == 2:
            break
        select.select([], [], [], 0.1)
    proc.send_signal(sig)
    assert proc.wait(HANG_GUARD_S) == (130 if sig == signal.SIGINT else 143)
    assert target.read_text() == "old\n"
    assert [json.loads(line)["ids"] for line in partial.read_text().splitlines()] == [[1, 4, 2], [1, 5, 2]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.")]


def test_nothing_to_read_from_a_terminal_is_a_usage_error(model: str) -> None:
    leader, follower = pty.openpty()
    try:
        proc = xcli_process("tokenize", "-m", model, stdin=follower)
        assert proc.wait(HANG_GUARD_S) == 2
        assert b"nothing to read" in proc.stderr.read()
    finally:
        os.close(leader)
        os.close(follower)


def test_typing_into_a_terminal_with_input_dash(model: str) -> None:
    leader, follower = pty.openpty()
    try:
        proc = xcli_process("tokenize", "-m", model, "-i", "-", "--fields", "ids", stdin=follower)
        os.write(leader, b"hello\n")
        assert json.loads(read_line(proc.stdout)) == {"ids": [1, 4, 2]}
        os.write(leader, b"\x04")  # Ctrl-D: end of input
        assert proc.wait(HANG_GUARD_S) == 0
    finally:
        os.close(leader)
        os.close(follower)


def test_exit_codes_and_stdout_carries_records_only(model: str) -> None:
    proc = xcli_process("tokenize", "-m", model, "--fields", "ids")
    out, err = proc.communicate(b"hello\n{oops\n", HANG_GUARD_S)  # text: "{oops" is just a text
    assert proc.returncode == 0 and err == b""
    assert [json.loads(line)["ids"] for line in out.splitlines()] == [[1, 4, 2], [1, 3, 2]]
    proc = xcli_process("tokenize", "-m", model, "--fields", "ids", "--input-format", "jsonl")
    out, err = proc.communicate(b'{"text": "hello"}\n{oops\n', HANG_GUARD_S)
    assert proc.returncode == 4
    assert json.loads(out.splitlines()[1])["error"]["type"] == "invalid_json"
    assert b"line 2: invalid_json" in err and b"Traceback" not in err
