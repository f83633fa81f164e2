"""The hostile-checkpoint corpus (tests/hostile_checkpoints.py) through ``xcli info``, a model
command and ``xcli convert``: each refused with exit 1 or 2 and one error line (no traceback, no
"internal error"), quickly, with nothing at the convert destination and no pickle ever run.

Most runs are in process (typer's CliRunner); a few are real subprocesses with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hostile_checkpoints import CASES, FAMILIES, MARKER, Case, model_command, write, write_valid
from xcli.app import app

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
COMMANDS = ("info", "model", "convert")

#: every error line the corpus produced, by case name (for the closing check)
MESSAGES: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def command_built_once() -> Any:
    """Typer turns the app into a click command on every ``invoke``; here, once for the ~650 runs."""
    import typer.main
    import typer.testing

    command = typer.main.get_command(app)
    real = typer.testing._get_command
    typer.testing._get_command = lambda typer_app: command if typer_app is app else real(typer_app)
    yield
    typer.testing._get_command = real


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("valid")
    return {family: write_valid(family, root / family) for family in FAMILIES}


def _args(command: str, case_family: str, directory: Path, dst: Path) -> list[str]:
    if command == "info":
        return ["info", str(directory)]
    if command == "convert":
        return ["convert", str(directory), str(dst)]
    return model_command(case_family, directory)


def _refusal(result: Any, allowed: tuple[int, ...], what: str) -> str | None:
    """Check one run against the contract; its error line (None when it succeeded, as allowed)."""
    assert result.exit_code in allowed, (what, result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, (what, result.stderr)
    if result.exit_code == 0:
        return None
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("xcli: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], (what, result.stderr)
    assert all(line.startswith(("xcli: warning:", "xcli: ")) for line in lines), (what, result.stderr)
    assert result.stdout == "", (what, result.stdout)
    return errors[0]


def run_case(case: Case, valid: dict[str, Path], tmp_path: Path) -> list[str]:
    """Write ``case``, run the three commands on it and check each; the error lines."""
    directory = write(case, tmp_path / "ckpt", valid)
    dst = tmp_path / "dst"
    messages = []
    for command in COMMANDS:
        result = runner.invoke(app, _args(command, case.family, directory, dst))
        message = _refusal(result, case.exits(command), f"{case.name}: {command}")
        if message is not None:
            messages.append(message)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst.")], case.name
        assert not dst.exists() or (command == "convert" and result.exit_code == 0), case.name
        assert not (tmp_path / MARKER).exists(), f"{case.name}: the pickle ran"
    return messages


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 100 and len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_valid_checkpoints_work(family: str, valid: dict[str, Path], tmp_path: Path) -> None:
    """The corpus starts from checkpoints every command takes: its refusals are the breakage's."""
    for command in COMMANDS:
        result = runner.invoke(app, _args(command, family, valid[family], tmp_path / "dst"))
        assert result.exit_code == 0, (command, result.stderr)
    assert (tmp_path / "dst" / "model.safetensors").exists()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_checkpoint(case: Case, valid: dict[str, Path], tmp_path: Path) -> None:
    MESSAGES[case.name] = run_case(case, valid, tmp_path)


def test_no_message_is_an_internal_error(valid: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every error line of the corpus (cases not run yet in this session are run now)."""
    for case in CASES:
        if case.name not in MESSAGES:
            MESSAGES[case.name] = run_case(case, valid, tmp_path_factory.mktemp("case"))
    messages = [m for lines in MESSAGES.values() for m in lines]
    assert len(messages) >= 2 * len(CASES)
    assert [m for m in messages if "internal error" in m or "Traceback" in m] == []
    assert all(m.startswith("xcli: error: ") and "\n" not in m for m in messages)


def test_a_class_xcli_lacks_is_a_checkpoint_failure_not_a_usage_error(valid: dict[str, Path], tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "architectures a class xcli lacks")
    directory = write(case, tmp_path / "ckpt", valid)
    result = runner.invoke(app, model_command(case.family, directory))
    message = _refusal(result, (1,), case.name)
    assert message is not None and message.startswith("xcli: error: cannot load the checkpoint: ")
    assert "architectures (XLNetForTimeTravel) name no XLNet class xcli has" in message


SUBPROCESS_CASES = {
    "config.json a link to /dev/zero": "info",
    "config.json a named pipe": "model",
    "xlnet n_layer huge": "convert",
    "pickle calling os.system": "model",
}


@pytest.mark.parametrize(("name", "command"), SUBPROCESS_CASES.items())
def test_in_a_real_process(name: str, command: str, valid: dict[str, Path], tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == name)
    directory = write(case, tmp_path / "ckpt", valid)
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("XCLI_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "xcli", *_args(command, case.family, directory, tmp_path / "dst")],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )
    result.exit_code = result.returncode  # type: ignore[attr-defined]
    message = _refusal(result, (1, 2), f"{name}: {command}")
    assert message is not None and not (tmp_path / "dst").exists() and not (tmp_path / MARKER).exists()
