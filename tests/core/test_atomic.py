"""xcli_models.atomic: no-replace publishing and the sweep of what killed runs left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from xcli_models import atomic
from xcli_models.atomic import Work, rename_noreplace, sweep


def test_rename_noreplace_refuses_an_existing_file(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_text() == "a" and (tmp_path / "b").read_text() == "b"
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()


@pytest.mark.parametrize("native", [True, False])
def test_rename_noreplace_refuses_an_existing_directory(tmp_path, monkeypatch, native):
    if not native:
        monkeypatch.setattr(atomic, "_RENAMEAT2", None)  # the fallback path
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "keep").read_text() == "b"
    (tmp_path / "f").write_text("f")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "f", tmp_path / "b")


def test_two_works_for_one_target_one_wins(tmp_path):
    target = tmp_path / "out.jsonl"
    first, second = Work(target), Work(target)
    first.begin().write_text("first\n")
    second.begin().write_text("second\n")
    first.publish()
    with pytest.raises(FileExistsError):
        second.publish()
    kept = second.keep_partial()
    assert target.read_text() == "first\n"
    assert kept == tmp_path / "out.jsonl.partial" and kept.read_text() == "second\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.partial"]


def test_publish_replace_swaps_a_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("old")
    work = Work(target, directory=True)
    (work.begin() / "new").write_text("new")
    work.publish(replace=True)
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_live_runs_work_is_not_swept(tmp_path):
    target = tmp_path / "out"
    live = Work(target, directory=True)
    live.begin()
    assert sweep(target) == []
    assert live.path is not None and live.path.exists()
    live.discard()
    assert list(tmp_path.iterdir()) == []


def _killed_child(tmp_path, body: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from xcli_models.atomic import Work
        target = sys.argv[1]
        {body}
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], timeout=60)
    assert result.returncode == -signal.SIGKILL


def test_sweep_removes_what_a_killed_run_left(tmp_path):
    _killed_child(tmp_path, "w = Work(target, directory=True); (w.begin() / 'weights').write_bytes(b'x' * 5000)")
    [left] = list(tmp_path.iterdir())
    assert left.name.startswith(".out.xcli-") and left.name.endswith(".tmp")
    said = sweep(tmp_path / "out")
    assert len(said) == 1 and "removed" in said[0] and "killed" in said[0]
    assert list(tmp_path.iterdir()) == []


def test_sweep_restores_a_target_moved_aside_by_a_killed_run(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "weights").write_text("precious")
    os.rename(tmp_path / "out", tmp_path / ".out.xcli-1234abcd.old")  # killed between the two renames
    work = Work(tmp_path / "out", directory=True)
    work.begin()
    assert any("restored" in line for line in work.swept)
    assert (tmp_path / "out" / "weights").read_text() == "precious"
    work.discard()


def test_keep_partial_numbers_past_taken_names(tmp_path):
    target = tmp_path / "o"
    (tmp_path / "o.partial").write_text("earlier")
    work = Work(target)
    work.begin().write_text("now")
    assert work.keep_partial() == tmp_path / "o.partial.1"
    assert (tmp_path / "o.partial").read_text() == "earlier"


@pytest.mark.parametrize("directory", [False, True])
def test_published_entries_get_the_usual_permissions(tmp_path, directory):
    umask = os.umask(0o022)
    try:
        work = Work(tmp_path / "out", directory=directory)
        work.begin()
        work.publish()
    finally:
        os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == (0o755 if directory else 0o644)
