"""``--shard K/N|auto``: which share of the records this process handles.

Record ``i`` (0-based, its position in the whole input: blank lines skipped, TEXT arguments and
``--input`` files counted on) belongs to shard ``i % N``. Each of ``N`` processes runs the same
command with its own ``K``, reads the whole input, and parses and processes only its share; every
output line carries its record number, so that ``xcli merge`` can put the ``N`` outputs back into
input order (:mod:`.merging`).

``auto`` takes K and N from the environment a launcher sets, the first pair found of
:data:`LAUNCHERS`: torchrun (``RANK``, ``WORLD_SIZE``), a Slurm job array
(``SLURM_ARRAY_TASK_ID`` less ``SLURM_ARRAY_TASK_MIN``, divided by ``SLURM_ARRAY_TASK_STEP``, of
``SLURM_ARRAY_TASK_COUNT``), or the tasks of one Slurm step (``SLURM_PROCID``, ``SLURM_NTASKS``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import UsageError

#: where ``--shard auto`` looks, in order: (launcher, variable holding K, variable holding N)
LAUNCHERS = (
    ("torchrun", "RANK", "WORLD_SIZE"),
    ("a Slurm array", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
    ("Slurm tasks", "SLURM_PROCID", "SLURM_NTASKS"),
)


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n``: the records whose index ``i`` has ``i % n == k``."""

    k: int
    n: int

    def takes(self, index: int) -> bool:
        return index % self.n == self.k

    def share(self, total: int) -> int:
        """How many of ``total`` records (indices 0 .. total-1) are this shard's."""
        return len(range(self.k, total, self.n))

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def parse_shard(value: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """``"K/N"``, ``"auto"`` (K/N from ``environ``, default the process's) or None (no sharding);
    anything else, or a K/N that is no shard (N < 1, K outside 0 .. N-1), is a usage error."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() == "auto":
        return _from_launcher(os.environ if environ is None else environ)
    k, slash, n = text.partition("/")
    try:
        if not slash:
            raise ValueError
        shard = Shard(int(k), int(n))
    except ValueError:
        raise UsageError(f"--shard {value}: expected K/N (two integers, as 0/4) or auto") from None
    return _checked(shard, f"--shard {value}")


def _checked(shard: Shard, what: str) -> Shard:
    if shard.n < 1:
        raise UsageError(f"{what}: N must be at least 1")
    if not 0 <= shard.k < shard.n:
        raise UsageError(f"{what}: K must be from 0 to N-1 ({shard.n - 1})")
    return shard


def _from_launcher(environ: Mapping[str, str]) -> Shard:
    """K/N from the first launcher of :data:`LAUNCHERS` whose two variables are both set."""
    for launcher, k_name, n_name in LAUNCHERS:
        k_text, n_text = environ.get(k_name, "").strip(), environ.get(n_name, "").strip()
        if not (k_text and n_text):
            continue
        what = f"--shard auto ({launcher}: {k_name}={k_text}, {n_name}={n_text}"
        try:
            k, n = int(k_text), int(n_text)
            if k_name == "SLURM_ARRAY_TASK_ID":
                k, what = _array_position(k, environ, what)
        except ValueError:
            raise UsageError(f"{what}): not integers") from None
        return _checked(Shard(k, n), what + ")")
    looked = ", ".join(f"{k}/{n} ({launcher})" for launcher, k, n in LAUNCHERS)
    raise UsageError(f"--shard auto: none of {looked} is set", "give --shard K/N")


def _array_position(task_id: int, environ: Mapping[str, str], what: str) -> tuple[int, str]:
    """A Slurm array task's position: (id - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP."""
    low = int(environ.get("SLURM_ARRAY_TASK_MIN", "").strip() or 0)
    step = int(environ.get("SLURM_ARRAY_TASK_STEP", "").strip() or 1)
    what += f", SLURM_ARRAY_TASK_MIN={low}" + (f", SLURM_ARRAY_TASK_STEP={step}" if step != 1 else "")
    if step < 1 or (task_id - low) % step:
        raise UsageError(f"{what}): not a regular array", "use --array=0-N or --shard K/N")
    return (task_id - low) // step, what
