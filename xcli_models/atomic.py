"""Writing a file or a directory beside its target and publishing it in one step.

Every command that writes a result (``--output``, ``convert``, ``train``) follows the same steps:

1. :meth:`Work.begin` sweeps what runs killed earlier left beside the target (see :func:`sweep`),
   then creates a hidden temporary ``.TARGET.xcli-XXXXXXXX.tmp`` (a file or a directory) and holds
   an exclusive ``flock`` on it for as long as the run lives;
2. the run writes into :attr:`Work.path`;
3. :meth:`Work.publish` flushes it to disk and renames it to the target. Without ``replace`` the
   rename never replaces anything (``renameat2(RENAME_NOREPLACE)``), so of two runs racing for one
   target exactly one wins and the other gets :class:`FileExistsError` with its work intact. With
   ``replace`` an existing target is swapped out only at this moment;
4. on failure, :meth:`Work.keep_partial` renames what was written to ``TARGET.partial`` (or
   ``.partial.1`` ...), or :meth:`Work.discard` removes it.

A run killed with SIGKILL cannot clean up, but the kernel drops its lock. :func:`sweep` tells
such leftovers (unlocked) from those of a run still going (locked): it removes the former, restores
a target that a killed run had moved aside while replacing it, and leaves the latter alone.
No torch here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

_TAG = ".xcli-"
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst`` in one step, failing with :class:`FileExistsError` if ``dst`` exists.

    Uses ``renameat2(RENAME_NOREPLACE)`` where the kernel and file system have it; otherwise a
    file is hard-linked then unlinked (also atomic), and a directory is renamed, which fails on
    an existing non-empty directory.
    """
    source, target = os.fsencode(src), os.fsencode(dst)
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, source, _AT_FDCWD, target, _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise _os_error(code, dst if code == errno.EEXIST else src)
    if os.path.isdir(src):
        if os.path.lexists(dst):
            raise _os_error(errno.EEXIST, dst)
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise _os_error(errno.EEXIST, dst) from None
            raise
        return
    os.link(src, dst)  # FileExistsError if dst exists
    os.unlink(src)


def _os_error(code: int, path: str | os.PathLike) -> OSError:
    return OSError(code, os.strerror(code), os.fspath(path)) if code != errno.EEXIST else FileExistsError(
        code, os.strerror(code), os.fspath(path)
    )


def _lock(path: Path, *, wait: bool) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``; None if another process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(target: str | os.PathLike) -> list[str]:
    """Clean up what killed runs left beside ``target``; one sentence per thing done.

    ``.TARGET.xcli-*.tmp`` (unfinished work) is removed; ``.TARGET.xcli-*.old`` (a target moved
    aside while being replaced) is put back when the target is missing, else removed. Anything
    still locked belongs to a live run and is left alone.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    done: list[str] = []
    try:
        entries = sorted(folder.glob(f".{_glob_escape(target.name)}{_TAG}*"))
    except OSError:
        return done
    for entry in entries:
        if not entry.name.endswith((".tmp", ".old")):
            continue
        fd = _lock(entry, wait=False)
        if fd is None:
            continue  # locked: a live run's, or gone already
        try:
            if entry.name.endswith(".old") and not os.path.lexists(target):
                rename_noreplace(entry, target)
                done.append(f"restored {target} from {entry.name}, left by a run that was killed while replacing it")
                continue
            size = _size(entry)
            _remove(entry)
            done.append(f"removed {entry} ({_human(size)}), left by a run that was killed")
        except OSError:
            continue
        finally:
            os.close(fd)
    return done


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.lstat().st_size


def _human(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def fsync_tree(path: Path) -> None:
    """Flush a file, or a directory's files and the directory itself, to disk."""
    paths = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    for item in [*paths, *([path] if path.is_dir() else [])]:
        _fsync(item)


def _fsync(path: Path) -> None:
    """Flush one file or directory (its entries) to disk; a failure is not worth stopping for."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Work:
    """A hidden temporary file or directory beside ``target``, locked while this run lives.

    ``directory``: make a directory (``convert``, ``train``) rather than a file (``--output``).
    ``swept`` holds the sentences :func:`sweep` said when the work began, for the caller to show.
    """

    def __init__(self, target: str | os.PathLike, *, directory: bool = False) -> None:
        self.target = Path(target)
        self.directory = directory
        self.path: Path | None = None
        self.swept: list[str] = []
        self._fd: int | None = None

    def begin(self) -> Path:
        folder = self.target.parent
        folder.mkdir(parents=True, exist_ok=True)
        self.swept = sweep(self.target)
        prefix = f".{self.target.name}{_TAG}"
        # made under a name sweep() passes over, locked, then renamed: never seen unlocked as .tmp
        if self.directory:
            fresh = Path(tempfile.mkdtemp(prefix=prefix, suffix=".new", dir=folder))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".new", dir=folder)
            os.close(fd)
            fresh = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp/mkdtemp make private entries; the result gets what any new file or folder gets
        os.chmod(fresh, (0o777 if self.directory else 0o666) & ~umask)
        self._fd = _lock(fresh, wait=True)
        self.path = fresh.with_suffix(".tmp")
        os.rename(fresh, self.path)
        return self.path

    def publish(self, *, replace: bool = False) -> Path:
        """Make the work the target: never over an existing one unless ``replace``.

        :class:`FileExistsError` when the target exists and ``replace`` is false (the work stays,
        for :meth:`keep_partial`).
        """
        if self.path is None:
            raise RuntimeError("nothing to publish: begin() was not called")
        fsync_tree(self.path)
        if not replace or not os.path.lexists(self.target):
            rename_noreplace(self.path, self.target)
        elif self.directory and self.target.is_dir() and not self.target.is_symlink():
            self._swap_directory()
        else:
            if self.target.is_dir() and not self.target.is_symlink():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(self.target))
            os.replace(self.path, self.target)
        _fsync(self.target.parent)  # the rename itself
        self.path = None
        self._release()
        return self.target

    def _swap_directory(self) -> None:
        assert self.path is not None
        old = self.target.parent / f".{self.target.name}{_TAG}{os.urandom(4).hex()}.old"
        held = _lock(self.target, wait=True)  # the lock follows the directory to its .old name
        try:
            os.rename(self.target, old)
            try:
                rename_noreplace(self.path, self.target)
            except BaseException:
                os.rename(old, self.target)
                raise
        finally:
            if held is not None:
                os.close(held)
        _remove(old)

    def keep_partial(self) -> Path | None:
        """Rename what was written to ``TARGET.partial`` (``.partial.1`` ... if taken); None if nothing."""
        if self.path is None:
            return None
        number = 0
        while True:
            kept = self.target.with_name(self.target.name + ".partial" + (f".{number}" if number else ""))
            try:
                rename_noreplace(self.path, kept)
            except FileExistsError:
                number += 1
                continue
            self.path = None
            self._release()
            return kept

    def discard(self) -> None:
        if self.path is not None:
            _remove(self.path)
            self.path = None
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def published_folder(target: str | os.PathLike, *, replace: bool, warn: Callable[[str], object]) -> Iterator[Path]:
    """A hidden folder beside ``target`` to write into (a :class:`Work`), published as ``target``
    whole when the block ends, discarded when anything in it, or the publishing, raises. ``warn``
    hears what runs killed earlier left beside ``target``. A ``target`` that appeared meanwhile
    (without ``replace``) raises FileExistsError: ``convert`` and ``vocab`` write through this."""
    work = Work(target, directory=True)
    folder = work.begin()
    for sentence in work.swept:
        warn(sentence)
    try:
        yield folder
        work.publish(replace=replace)
    except BaseException:
        work.discard()
        raise
