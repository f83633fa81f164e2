"""`xcli models`: the built-in models and the local Hugging Face cache, one JSON line each, without torch."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from xcli import models as resolution
from xcli.app import app

runner = CliRunner()
BUILTIN = Path(__file__).resolve().parents[2] / "xcli_models" / "data" / "builtin"
FIELDS = ["id", "source", "family", "heads", "commands", "has_weights", "size", "path"]


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["models", *args])
    return result.exit_code, result.stdout, result.stderr


def listing(*args: str) -> list[dict[str, Any]]:
    code, out, err = run(*args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def place(repo: Path, commit: str, files: dict[str, Path]) -> Path:
    """Put ``files`` into the cache entry ``repo`` as the hub does: content in blobs/<sha256>, a
    relative link to it in snapshots/<commit>/, refs/main naming the commit."""
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


@pytest.fixture
def cached(hub: Path, tmp_path: Path) -> Path:
    """A tiny XLNet LM, saved by xcli, with the built-in XLNet tokenizer, as hub cache entry org/tiny."""
    import xcli_models

    config = xcli_models.XLNetConfig(vocab_size=32000, d_model=16, n_layer=1, n_head=2, d_inner=32)
    saved = tmp_path / "saved"
    xcli_models.XLNetLMHeadModel(config).save_pretrained(saved)
    tokenizer = BUILTIN / "xlnet" / "xlnet-base-cased"
    files = {p.name: p for p in saved.iterdir()}
    files.update({name: tokenizer / name for name in ("spiece.model", "tokenizer_config.json")})
    return place(hub / "models--org--tiny", "0123abcd", files)


def test_a_cache_entry(cached: Path) -> None:
    entries = listing("--source", "cache")
    assert len(entries) == 1
    entry = entries[0]
    assert list(entry) == FIELDS
    assert entry["id"] == "org/tiny" and entry["source"] == "cache" and entry["family"] == "xlnet"
    assert entry["heads"] == ["XLNetLMHeadModel"] and entry["has_weights"] is True
    assert entry["commands"] == ["tokenize", "fill-mask", "generate", "score", "evaluate", "convert", "train"]
    # the blobs' sizes, not the links'
    assert entry["size"] == sum((cached / name).stat().st_size for name in os.listdir(cached))
    assert entry["size"] > (cached / "model.safetensors").stat().st_size > 1000
    assert entry["path"] == str(cached)
    # the model it lists is the one -m resolves
    assert resolution.resolve_model("org/tiny").path == cached


def test_the_commands_are_those_of_xcli_info(cached: Path) -> None:
    info = json.loads(runner.invoke(app, ["info", "org/tiny"]).stdout)
    assert listing("--source", "cache")[0]["commands"] == info["commands"]


def test_without_weights_only_tokenize(hub: Path) -> None:
    tokenizer = BUILTIN / "xlnet" / "xlnet-base-cased"
    place(hub / "models--org--tok", "c0ffee", {n: tokenizer / n for n in ("config.json", "spiece.model")})
    [entry] = listing("--source", "cache")
    assert (entry["commands"], entry["has_weights"]) == (["tokenize"], False)


def test_a_broken_entry_is_listed_with_an_error(cached: Path, hub: Path) -> None:
    broken = hub / "models--aaa--broken" / "snapshots" / "deadbeef"
    broken.mkdir(parents=True)
    os.symlink("/dev/zero", broken / "config.json")  # no refs/main either
    (hub / "models--zzz--empty").mkdir()  # no snapshot at all
    (hub / "models--other--bert" / "snapshots" / "1").mkdir(parents=True)
    (hub / "models--other--bert" / "snapshots" / "1" / "config.json").write_text('{"model_type": "bert"}')
    (hub / "datasets--org--data").mkdir()  # not a model
    code, out, err = run("--source", "cache")
    assert code == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in entries] == ["aaa/broken", "org/tiny", "other/bert", "zzz/empty"]
    bad = {e["id"]: e for e in entries if "error" in e}
    assert set(bad) == {"aaa/broken", "other/bert", "zzz/empty"}
    assert "not a regular file" in bad["aaa/broken"]["error"] and bad["aaa/broken"]["path"] == str(broken)
    assert "'bert'" in bad["other/bert"]["error"] and "snapshot" in bad["zzz/empty"]["error"]
    assert all(e["commands"] == [] and e["has_weights"] is False for e in bad.values())
    code, text, err = run("--source", "cache", "-O", "text")
    assert code == 0 and "error:" in text


def test_the_builtin_models(hub: Path) -> None:
    entries = listing()
    names = resolution.builtin_models()
    assert names and [e["id"] for e in entries] == names  # the cache is empty
    for entry in entries:
        assert list(entry) == FIELDS and entry["source"] == "builtin"
        if entry["id"].startswith("xcli/"):  # the trained built-in models (tests/cli/test_builtin_models.py)
            assert entry["has_weights"] is True and {"tokenize", "evaluate"} <= set(entry["commands"])
        else:  # tokenizers only
            assert entry["commands"] == ["tokenize"] and entry["has_weights"] is False
        assert entry["size"] > 0
        assert entry["family"] == json.loads((BUILTIN / entry["id"] / "config.json").read_text())["model_type"]
    assert listing("--source", "cache") == []


def test_builtin_first_then_the_cache(cached: Path) -> None:
    entries = listing("--source", "all")
    sources = [e["source"] for e in entries]
    assert sources == ["builtin"] * (len(entries) - 1) + ["cache"]
    assert [e["source"] for e in listing("--source", "builtin")] == ["builtin"] * (len(entries) - 1)


def test_text_table(cached: Path) -> None:
    code, out, err = run("-O", "text")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "SOURCE", "FAMILY", "COMMANDS", "SIZE"]
    assert len(lines) == 1 + len(resolution.builtin_models()) + 1
    row = lines[-1]
    assert row.startswith("org/tiny ") and " cache " in row and " xlnet " in row
    size = listing("--source", "cache")[0]["size"]
    assert "tokenize, fill-mask, generate, score, evaluate, convert, train" in row and row.endswith(f" {size / 1e6:.1f} MB")
    # aligned: every column starts at the same place on every line
    for column in ("SOURCE", "FAMILY", "COMMANDS"):
        start = lines[0].index(column)
        assert all(line[start - 2:start] == "  " and line[start] != " " for line in lines)
    assert len({len(line) for line in lines}) == 1  # sizes right-aligned


def test_no_torch(cached: Path) -> None:
    code = (
        "import sys\n"
        "from xcli.__main__ import main\n"
        "sys.argv = ['xcli', 'models']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('TORCH=%s\\n' % ('torch' in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert "org/tiny" in result.stdout, result.stderr[-2000:]
    assert "TORCH=False" in result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert imported and not any(name == "torch" or name.startswith("torch.") for name in imported)
