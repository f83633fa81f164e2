"""The app as a whole: help, version, entry points, what it imports, completions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_cli_support import BOOT, make_fake_model, xcli_env
from xcli import __version__, completions
from xcli.app import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "tokenize" in result.stdout and "Usage: xcli" in result.stdout
    assert runner.invoke(app, ["-h"]).stdout == result.stdout


def test_no_arguments_shows_help_and_exits_2() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Usage:" in result.stdout + result.stderr


def test_command_help() -> None:
    result = runner.invoke(app, ["tokenize", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--input", "--output-format", "--offsets", "--decode", "--keep", "--on-error"):
        assert option in result.stdout


def test_every_command_hands_quiet_and_debug_to_the_console(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--quiet/--debug are plain options (no parse-time side effect): a command that takes them
    passes them to console.configure first thing, or they would silently do nothing."""
    from xcli.app import COMMANDS
    from xcli.console import console

    class Configured(Exception):
        pass

    def configure(**given: bool) -> None:
        calls.append(given)
        raise Configured  # the command goes no further (serve would start serving)

    calls: list[dict[str, bool]] = []
    monkeypatch.setattr(console, "configure", configure)
    needs = {"convert": ["src", "dst"], "train": ["--train", "train.jsonl", "-o", "out"], "merge": ["a.jsonl"],
             "vocab": ["--family", "xlm", "-o", "out"]}
    taking = [name for name in COMMANDS if "--quiet" in runner.invoke(app, [name, "--help"]).stdout]
    assert {"tokenize", "classify", "generate", "evaluate", "train", "serve"} <= set(taking)
    for name in taking:
        calls.clear()
        result = runner.invoke(app, [name, *needs.get(name, []), "--quiet", "--debug"], input="")
        assert calls == [{"quiet": True, "debug": True}], (name, result.output)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"xcli {__version__}\n"


def test_python_dash_m_xcli() -> None:
    done = subprocess.run([sys.executable, "-m", "xcli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == f"xcli {__version__}\n"


def test_console_script_if_installed() -> None:
    script = Path(sys.executable).parent / "xcli"
    if not script.exists():
        pytest.skip("the xcli script is not installed beside this python")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.stdout == f"xcli {__version__}\n"


def test_help_and_tokenize_never_import_torch(tmp_path: Path) -> None:
    """`-X importtime` lists every module imported: torch must not be one of them."""
    model = make_fake_model(tmp_path / "m")
    for args in (["--help"], ["tokenize", "--help"], ["tokenize", "-m", str(model), "hello world"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", BOOT, *args],
            capture_output=True, text=True, env=xcli_env(), cwd=tmp_path, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert "xcli.app" in imported
        assert not {name for name in imported if name == "torch" or name.startswith("torch.")}, args


def test_help_does_not_import_rich_or_the_model_core() -> None:
    code = (
        "import sys\nfrom xcli.__main__ import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'torch', 'xcli_models')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- completions
def test_committed_completions_are_current() -> None:
    for name, text in completions.render().items():
        committed = ROOT / "completions" / name
        assert committed.is_file(), f"missing {committed}: run python -m xcli.completions"
        assert committed.read_text(encoding="utf-8") == text, f"{committed} is stale: run python -m xcli.completions"


def test_completion_check_mode(tmp_path: Path) -> None:
    assert completions.main(["--check", str(tmp_path)]) == 1
    assert completions.main([str(tmp_path)]) == 0
    assert completions.main(["--check", str(tmp_path)]) == 0


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_completes_commands_options_and_choices() -> None:
    script = ROOT / "completions" / "xcli.bash"

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        code = f'source "{script}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _xcli; echo "${{COMPREPLY[*]}}"'
        return subprocess.run(["bash", "-c", code], capture_output=True, text=True).stdout.split()

    assert complete("xcli", "tok") == ["tokenize"]
    assert complete("xcli", "tokenize", "--on-error", "") == ["continue", "stop"]
    assert "--output-format" in complete("xcli", "tokenize", "--out")
    # an option whose values differ between commands completes each command's own
    assert complete("xcli", "classify", "--dtype", "") == ["float32", "bfloat16", "float16", "auto"]
    assert complete("xcli", "convert", "--dtype", "") == ["float32", "bfloat16", "float16"]
    assert complete("xcli", "models", "-O", "") == ["jsonl", "text"]
    assert complete("xcli", "generate", "--task", "") == ["summarize", "data-to-text", "qa", "question-generation",
                                                          "story", "open-dialog", "task-dialog"]
    assert complete("xcli", "classify", "--batch-size", "") == []  # a number: nothing to offer
    assert {"--model", "--aggregation", "--no-server"} <= set(complete("xcli", "classify", "--"))
    assert "--aggregation" not in complete("xcli", "qa", "--")


@pytest.mark.parametrize(("shell", "name"), [("zsh", "_xcli"), ("fish", "xcli.fish"), ("bash", "xcli.bash")])
def test_completion_scripts_parse(shell: str, name: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    done = subprocess.run([shell, "-n", str(ROOT / "completions" / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
