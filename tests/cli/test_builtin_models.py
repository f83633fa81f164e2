"""The built-in models xcli ships (xcli/sentiment, xcli/ner, xcli/shakespeare, xcli/fill-mask):
small enough, listed, loaded, answering through every command they support, used by default
without -m, and (slow) their cards' metrics re-measured from the shipped weights."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import shared_path

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "xcli_models" / "data" / "builtin" / "xcli"
NAMES = ["sentiment", "ner", "shakespeare", "fill-mask"]
#: the commands each model answers (beyond tokenize and evaluate)
COMMANDS = {"sentiment": ["classify"], "ner": ["classify"], "shakespeare": ["generate", "score"],
            "fill-mask": ["fill-mask"]}


def xcli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "XCLI_MODEL"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "xcli", *args], capture_output=True, text=True, env=environment,
                          input=stdin)


def lines(run: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_every_model_is_shipped_small_with_its_card() -> None:
    assert sorted(p.name for p in BUILTIN.iterdir() if p.is_dir()) == sorted(NAMES)
    sizes = {name: sum(f.stat().st_size for f in (BUILTIN / name).iterdir()) for name in NAMES}
    assert all(size < 12_000_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) < 30_000_000, sizes
    for name in NAMES:
        folder = BUILTIN / name
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert card.startswith(f"# xcli/{name}") and "Demo quality, not for production" in card
        assert "xcli train" in card and "--from-scratch" in card and "## Measured by `xcli evaluate`" in card
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["records"] > 500 and metrics["skipped"] == 0
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        assert config["torch_dtype"] == "float16"


def test_models_lists_them_with_their_commands() -> None:
    listed = {entry["id"]: entry for entry in lines(xcli("models", "--source", "builtin"))}
    for name in NAMES:
        entry = listed[f"xcli/{name}"]
        assert entry["source"] == "builtin" and entry["has_weights"] is True
        assert set(COMMANDS[name]) <= set(entry["commands"]), entry
    assert {entry["family"] for name, entry in listed.items() if name.startswith("xcli/")} >= {"xlnet", "xlm", "xglm"}


def test_sentiment_is_classify_s_default_and_says_so() -> None:
    run = xcli("classify", "a gripping, funny film", "a dull, lifeless and tedious mess")
    assert [r["label"] for r in lines(run)] == ["positive", "negative"]
    assert run.stderr.count("using the built-in model xcli/sentiment") == 1
    quiet = xcli("classify", "--quiet", "a gripping, funny film")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_xcli_model_and_m_win_over_the_default() -> None:
    run = xcli("classify", "Tony Blair visited Washington .", env={"XCLI_MODEL": "xcli/ner"})
    (result,) = lines(run)
    assert "entities" in result and "built-in model" not in run.stderr
    text = "Tony Blair met Bill Clinton in Washington ."
    run = xcli("classify", "-m", "ner", "--aggregation", "first", text)
    entities = lines(run)[0]["entities"]
    assert {(e["word"], e["entity"]) for e in entities} >= {("Tony Blair", "PER"), ("Washington", "LOC")}, entities
    assert all(e["word"] == text[e["start"]:e["end"]] for e in entities)  # XLM: words with their spaces


def test_generate_and_fill_mask_defaults() -> None:
    run = xcli("generate", "ROMEO:", "--max-new-tokens", "12")
    (result,) = lines(run)
    assert result["generated_text"].startswith("ROMEO:") and len(result["generated_text"]) > len("ROMEO:")
    assert "using the built-in model xcli/shakespeare" in run.stderr
    run = xcli("fill-mask", "I have to <mask> to school tomorrow.")
    (result,) = lines(run)
    assert len(result["predictions"]) == 1 and len(result["predictions"][0]) == 5
    assert "go" in [p["token"] for p in result["predictions"][0]]
    assert "using the built-in model xcli/fill-mask" in run.stderr
    run = xcli("score", "To be, or not to be")
    (result,) = lines(run)
    assert result["logprob"] < 0 and result["tokens"] > 0
    assert "using the built-in model xcli/shakespeare" in run.stderr


def test_commands_without_a_default_still_need_a_model() -> None:
    run = xcli("qa", stdin='{"question": "who?", "context": "me"}\n')
    assert run.returncode == 2 and "no model given" in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name,records,options", [
    ("sentiment", "sst2-dev.jsonl", []),
    ("ner", "conll-testb.jsonl", []),
    ("shakespeare", "shakespeare-heldout.jsonl", []),
    ("fill-mask", "tatoeba-heldout.jsonl", ["--seed", "0"]),
])
def test_card_metrics_are_remeasured(name: str, records: str, options: list[str], tmp_path: Path) -> None:
    data = shared_path()
    if not data.is_dir():
        pytest.skip(f"{data} is absent: the datasets the cards were measured on are not here")
    spec = importlib.util.spec_from_file_location("builtin_data", ROOT / "examples" / "builtin_data.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    make = {"sentiment": builder.sst2, "ner": builder.conll, "shakespeare": builder.shakespeare,
            "fill-mask": builder.tatoeba}[name]
    make(data, tmp_path)
    measured = json.loads(xcli("evaluate", "-m", f"xcli/{name}", "-i", str(tmp_path / records), "--threads", "1",
                               *options).stdout)
    card = json.loads((BUILTIN / name / "metrics.json").read_text(encoding="utf-8"))
    for key, value in card.items():
        if isinstance(value, float):
            assert measured[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        elif key != "model":
            assert measured[key] == value, key
