"""--model resolution: directories, the Hugging Face cache, built-in names, XCLI_MODEL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xcli import models
from xcli.errors import ExitCode, UsageError


def checkpoint(folder: Path, model_type: str | None = "xlnet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if model_type is not None:
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def cache_entry(hub: Path, model_id: str, *commits: str, main: str | None = None) -> Path:
    repo = hub / ("models--" + model_id.replace("/", "--"))
    for number, commit in enumerate(commits):
        snap = checkpoint(repo / "snapshots" / commit)
        os.utime(snap, (1_000_000 + number, 1_000_000 + number))
    if main:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(main + "\n")
    return repo / "snapshots"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.delenv("XCLI_MODEL", raising=False)
    return folder


def test_a_directory(tmp_path: Path, hub: Path) -> None:
    found = models.resolve_model(str(checkpoint(tmp_path / "ckpt", "mvp")))
    assert (found.origin, found.model_type, found.family.name) == ("directory", "mvp", "MVP")


def test_the_family_comes_from_config_json_not_the_name(tmp_path: Path, hub: Path) -> None:
    found = models.resolve_model(str(checkpoint(tmp_path / "xlnet-base-cased", "xglm")))
    assert found.family.name == "XGLM"
    assert models.resolve_model(str(checkpoint(tmp_path / "bare", None))).model_type is None


def test_cache_follows_refs_main(hub: Path) -> None:
    snapshots = cache_entry(hub, "org/name", "aaa", "bbb", main="aaa")
    found = models.resolve_model("org/name")
    assert (found.origin, found.path) == ("cache", snapshots / "aaa")


def test_cache_without_refs_takes_the_newest_snapshot(hub: Path) -> None:
    snapshots = cache_entry(hub, "org/name", "old", "new")
    assert models.resolve_model("org/name").path == snapshots / "new"


def test_cache_location_from_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert models.hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.hub_cache() == tmp_path / "xdg" / "huggingface" / "hub"


def test_builtin_by_full_and_bare_name(hub: Path) -> None:
    names = models.builtin_models()
    if not names:
        pytest.skip("no built-in model yet")
    full = names[0]
    found = models.resolve_model(full)
    assert found.origin == "builtin" and found.path == models.builtin_root() / full
    bare = full.split("/", 1)[1]
    if sum(n.endswith("/" + bare) for n in names) == 1:
        assert models.resolve_model(bare).path == found.path


def test_the_cache_wins_over_a_builtin_of_the_same_name(hub: Path) -> None:
    names = models.builtin_models()
    if not names:
        pytest.skip("no built-in model yet")
    snapshots = cache_entry(hub, names[0], "abc", main="abc")
    assert models.resolve_model(names[0]).path == snapshots / "abc"


def test_xcli_model_is_the_default(tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = checkpoint(tmp_path / "ckpt")
    monkeypatch.setenv("XCLI_MODEL", str(folder))
    assert models.resolve_model(None).path == folder.resolve()


@pytest.mark.parametrize(
    ("spec", "message"),
    [(None, "no model given"), ("org/missing", "huggingface-cli download org/missing"), ("missing", "not found")],
)
def test_missing_models_are_usage_errors(spec: str | None, message: str, hub: Path) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        models.resolve_model(spec)
    assert caught.value.exit_code == ExitCode.USAGE


def test_a_file_or_an_unknown_model_type_is_a_usage_error(tmp_path: Path, hub: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        models.resolve_model(str(checkpoint(tmp_path / "c") / "config.json"))
    with pytest.raises(UsageError, match="bert"):
        models.resolve_model(str(checkpoint(tmp_path / "bert", "bert")))
