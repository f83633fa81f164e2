"""Where a run's results go: the checkpoint, published only when complete, and the resumable state.

Both are written through :class:`xcli_models.atomic.Work`: into a hidden locked directory beside
the target, then renamed into place in one step. A run killed at any moment therefore leaves
either the previous version or the new one, never a mixture, and what it left half-written is
swept (and reported through ``warn``) by the next run that writes the same target.

The state of a run that writes ``OUT`` lives in ``OUT.xcli-state/`` (see :class:`StateDir`):

* ``trainer.pt``: ``torch.save`` of plain tensors, dicts and lists only (the model's and the
  optimizer's state dicts, the torch and masking generators' states), read back with
  ``weights_only=True``: nothing in it is executed;
* ``state.json``: the position (step, epoch, batch within the epoch), the shuffling and Python
  generators, the schedule, the best metric so far, the options and a digest of the data;
* ``best/``: the checkpoint saved for the best evaluation so far, when there is one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import Work
from .common import TrainingError
from .loop import Snapshot

__all__ = ["CheckpointDir", "StateDir", "TOKENIZER_FILES", "copy_tokenizer_files", "state_path"]

#: files that describe a tokenizer besides its vocabulary files (which each class names)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "spiece.model", "sentencepiece.bpe.model", "prophetnet.tokenizer", "vocab.json", "merges.txt", "vocab.txt",
)
STATE_SUFFIX = ".xcli-state"

Warn = Callable[[str], None]


def copy_tokenizer_files(source: Path | None, directory: Path, tokenizer: Any) -> list[str]:
    """Copy the tokenizer files of ``source`` that ``directory`` lacks; their names.

    A tokenizer writes its own vocabulary and configuration, but not what it does not use
    (a ``tokenizer.json`` beside a slow tokenizer's files): without it another library would
    rebuild the tokenizer from the vocabulary and may cut text differently.
    """
    if source is None or not source.is_dir() or source.resolve() == directory.resolve():
        return []
    names = set(TOKENIZER_FILES) | {str(n) for n in getattr(tokenizer, "vocab_files", {}).values()}
    copied = []
    for name in sorted(names):
        origin = source / name
        if origin.is_file() and not (directory / name).exists():
            shutil.copyfile(origin, directory / name)
            copied.append(name)
    return copied


class CheckpointDir:
    """A checkpoint directory written beside ``target`` and renamed into place by :meth:`commit`.

    ``save`` may run many times (a new best); each overwrites the last. An existing ``target``
    is refused unless ``overwrite`` (and a target that is not a directory always is), and then
    replaced only when the new one is complete. ``source`` is the checkpoint the model came from:
    its tokenizer files the tokenizer does not write are copied. :meth:`discard` removes the
    work, or keeps what was saved as ``TARGET.partial``.
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False, source: str | os.PathLike | None = None,
                 warn: Warn | None = None) -> None:
        self.target = Path(target)
        check_target(self.target, overwrite)
        self.overwrite = overwrite
        self.source = Path(source) if source is not None else None
        self.warn = warn or (lambda message: None)
        self.work: Work | None = None
        self.saved = False

    @property
    def path(self) -> Path | None:
        """The directory being written (None before :meth:`begin`)."""
        return self.work.path if self.work is not None else None

    def begin(self) -> Path:
        """Create the work directory (sweeping what killed runs left beside the target)."""
        if self.work is None:
            self.work = Work(self.target, directory=True)
            self.work.begin()
            for sentence in self.work.swept:
                self.warn(sentence)
        assert self.work.path is not None
        return self.work.path

    def save(self, model: Any, tokenizer: Any) -> Path:
        """Write the model and tokenizer. Each save goes to a directory of its own, which replaces
        the last one only once complete: a save that fails (a full disk) leaves the last one
        whole, for :meth:`discard` to keep."""
        self.begin()
        fresh = Work(self.target, directory=True)
        directory = fresh.begin()
        try:
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
            copy_tokenizer_files(self.source, directory, tokenizer)
        except BaseException:
            fresh.discard()
            raise
        assert self.work is not None
        self.work.discard()
        self.work, self.saved = fresh, True
        return directory

    def restore(self, saved: Path) -> None:
        """Start from a checkpoint saved earlier (a resumed run's best so far)."""
        directory = self.begin()
        for entry in saved.iterdir():
            if entry.is_file():
                shutil.copyfile(entry, directory / entry.name)
        self.saved = True

    def commit(self) -> Path:
        """Move the saved checkpoint to ``target`` (replacing an old one only now, and only with
        ``overwrite``). :class:`FileExistsError` when another run published ``target`` meanwhile:
        the work stays, for :meth:`discard`."""
        if self.work is None or not self.saved:
            raise RuntimeError("nothing was saved")
        written = self.work.publish(replace=self.overwrite)
        self.work = None
        return written

    def discard(self, keep: bool = True) -> Path | None:
        """Remove the work directory; with ``keep`` and something saved, keep it as ``TARGET.partial``."""
        if self.work is None:
            return None
        work, self.work = self.work, None
        if keep and self.saved:
            return work.keep_partial()
        work.discard()
        return None


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that is not a directory, or that exists without ``overwrite``."""
    if target.is_symlink() or target.exists():
        if not target.is_dir():
            raise NotADirectoryError(f"{target} exists and is not a directory")
        if not overwrite:
            raise FileExistsError(f"{target} exists")


def state_path(output: str | os.PathLike) -> Path:
    """Where the resumable state of a run writing ``output`` lives: ``OUTPUT.xcli-state``."""
    output = Path(output)
    return output.with_name(output.name + STATE_SUFFIX)


class StateDir:
    """The resumable state of a run (the module docstring lists its files)."""

    def __init__(self, path: str | os.PathLike, *, warn: Warn | None = None) -> None:
        self.path = Path(path)
        self.warn = warn or (lambda message: None)

    def exists(self) -> bool:
        return (self.path / "state.json").is_file()

    def write(self, snapshot: Snapshot, best: Path | None = None) -> Path:
        """Write ``snapshot`` (and a copy of the ``best`` checkpoint) and publish it over the last."""
        work = Work(self.path, directory=True)
        directory = work.begin()
        for sentence in work.swept:
            self.warn(sentence)
        try:
            torch.save(snapshot.tensors, directory / "trainer.pt")
            (directory / "state.json").write_text(json.dumps(snapshot.meta) + "\n", encoding="utf-8")
            if best is not None:
                shutil.copytree(best, directory / "best")
            return work.publish(replace=True)
        except BaseException:
            work.discard()
            raise

    def read(self, device: torch.device | str = "cpu") -> tuple[Snapshot, Path | None]:
        """The saved snapshot and the saved best checkpoint (None when there is none)."""
        try:
            meta = json.loads((self.path / "state.json").read_text(encoding="utf-8"))
            tensors = torch.load(self.path / "trainer.pt", map_location=device, weights_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise TrainingError(f"{self.path}: the saved state cannot be read ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != 1 or not isinstance(tensors, dict):
            raise TrainingError(f"{self.path}: not a state xcli train wrote")
        best = self.path / "best"
        return Snapshot(tensors, meta), best if best.is_dir() else None

    def remove(self) -> None:
        """Delete the state (the run it belongs to has finished): renamed first to a name the
        next run's sweep removes, so that a run killed meanwhile never leaves half a state."""
        if not self.path.exists():
            return
        doomed = self.path.with_name(f".{self.path.name}.xcli-{os.urandom(4).hex()}.tmp")
        try:
            os.rename(self.path, doomed)
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
