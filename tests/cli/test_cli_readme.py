"""The README's console examples and examples/*.sh run as shown."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_path
from test_cli_support import xcli_env
from xcli.models import builtin_root

ROOT = Path(__file__).resolve().parents[2]
if not (builtin_root() / "xlnet" / "xlnet-base-cased" / "spiece.model").exists():
    pytest.skip("the built-in xlnet-base-cased tokenizer is not there yet", allow_module_level=True)

#: runs xcli from this checkout with this python, whatever is on PATH
PREAMBLE = f'xcli() {{ "{sys.executable}" -m xcli "$@"; }}\nexport -f xcli\n'


def console_examples(markdown: str) -> list[tuple[str, str]]:
    """(command, expected stdout) for each ``$ command`` line in the ```console blocks."""
    examples: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", markdown, flags=re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


def bash(script: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(["bash", "-c", PREAMBLE + script], capture_output=True, text=True, cwd=cwd,
                          env=xcli_env(), timeout=600, **feed)


def test_readme_console_examples(tmp_path: Path) -> None:
    examples = console_examples((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(examples) >= 8
    for command, expected in examples:  # in order: later ones use files earlier ones made
        if re.search(r"\bjq\b", command) and shutil.which("jq") is None:
            continue
        done = bash(command, tmp_path)
        assert done.stdout == expected, f"$ {command}\n{done.stderr}"


def test_example_round_trip(tmp_path: Path) -> None:
    done = bash(f'"{ROOT}/examples/round_trip.sh"', tmp_path, stdin="Hello world\nNew York is big.\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello world\nNew York is big.\n"


def test_example_token_stats(tmp_path: Path) -> None:
    data = shared_path("datasets", "sst2", "dev.tsv")
    done = bash(f'"{ROOT}/examples/token_stats.sh" "{data}"', tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"records 872  longest \d+  mean [\d.]+  over 64: \d+\n", done.stdout)


def test_example_tour(tmp_path: Path) -> None:
    """examples/tour.sh: the built-in models, then qa, info, convert and train on tiny checkpoints."""
    done = bash(f'PATH="{Path(sys.executable).parent}:$PATH" "{ROOT}/examples/tour.sh" "{tmp_path / "demo"}"', tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 11, lines
    assert json.loads(lines[0])["label"] == "positive"
    assert {(e["word"], e["entity"]) for e in json.loads(lines[1])["entities"]} >= {("Washington", "LOC"), ("Tony Blair", "PER")}
    assert len(json.loads(lines[2])["predictions"][0]) == 3
    assert lines[3].startswith("ROMEO:") and len(lines[3]) > len("ROMEO:")
    assert json.loads(lines[4])["choice"] == 0
    assert json.loads(lines[5])["id"] == 7 and "answer" in json.loads(lines[5])
    assert lines[6].startswith("model") and lines[7].startswith("family")
    assert json.loads(lines[9])["check"]["passed"] is True
    assert json.loads(lines[10])["steps"] == 2
    assert (tmp_path / "demo" / "trained" / "model.safetensors").exists()
