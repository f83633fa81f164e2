"""Reading and writing checkpoint weights, and translating parameter names.

Weights are read without a second copy: a safetensors file is memory-mapped
and each tensor is a view into the map (its header is checked against the
file first, so a file that lies about sizes or offsets is refused, not read
past its end); a ``.bin`` is opened with ``torch.load(weights_only=True,
mmap=True)``, so nothing in it is executed. Sharded checkpoints are read
through their index file, which may only name shard files beside it. Every
weight file must be a regular file: a device, a pipe or a directory in its
place is refused before it is opened.

``NameTable`` maps a family's Hugging Face parameter names to ours and back;
the same table serves loading, saving and conversion.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from functools import lru_cache
from typing import Any, Mapping

import torch

from .catalog import BIN_INDEX, BIN_WEIGHTS, SAFE_INDEX, SAFE_WEIGHTS, has_weight_files  # noqa: F401
from .config import ConfigError, file_kind, read_json, show_value


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model built from its config."""


_SAFE_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_SAFE_NAMES = {v: k for k, v in _SAFE_DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


# ------------------------------------------------------------------- reading
def _check_regular(path: Path) -> int:
    """The size of ``path``, which must be a regular file (a link to one is followed): a device,
    a pipe or a directory in a checkpoint is refused before it is opened."""
    try:
        info = path.stat()
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} is not a regular file but {file_kind(info.st_mode)}")
    return info.st_size


def _header_entry(path: Path, name: str, info: object) -> tuple[torch.dtype, list[int], list[int]]:
    """dtype, shape and data offsets of one safetensors header entry, each checked."""
    what = f"{path}: tensor {show_value(name)}"
    if not isinstance(info, dict):
        raise CheckpointError(f"{what} has a header entry that is not a JSON object: {show_value(info)}")
    dtype = info.get("dtype")
    if not isinstance(dtype, str) or dtype not in _SAFE_DTYPES:
        raise CheckpointError(f"{what} has dtype {show_value(dtype)}, not one xcli reads ({', '.join(_SAFE_DTYPES)})")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not _whole_numbers(shape) or min(shape, default=0) < 0:
        raise CheckpointError(f"{what} has shape {show_value(shape)}, not a list of sizes (whole numbers, 0 or more)")
    if not _whole_numbers(offsets) or len(offsets) != 2:
        raise CheckpointError(f"{what} has data_offsets {show_value(offsets)}, not two whole numbers")
    return _SAFE_DTYPES[dtype], shape, offsets


def _whole_numbers(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def read_safetensors(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file as views into a private memory map."""
    path = Path(file)
    size = _check_regular(path)
    with open(path, "rb") as handle:
        if size < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if header_len > min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"{path}: safetensors header length {header_len} does not fit the file")
        try:
            header = json.loads(handle.read(header_len))
        except RecursionError:
            raise CheckpointError(f"{path}: safetensors header is not valid JSON (nested too deeply)") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: safetensors header is not a JSON object")
        header.pop("__metadata__", None)
        data_len = size - 8 - header_len
        spans = []
        for name, info in header.items():
            dtype, shape, (start, end) = _header_entry(path, name, info)
            expected = math.prod(shape) * dtype.itemsize
            if not 0 <= start <= end or end - start != expected:
                raise CheckpointError(
                    f"{path}: header of {show_value(name)} lies about its size or offsets "
                    f"(shape {shape} {info['dtype']} needs {expected} bytes, offsets {start}..{end} "
                    f"in a data section of {data_len} bytes)"
                )
            spans.append((start, end, name, dtype, shape))
        spans.sort()
        needed = max((end for _, end, *_ in spans), default=0)
        if needed > data_len:
            raise CheckpointError(
                f"{path}: truncated safetensors file, or its header lies about offsets: "
                f"the tensors need {needed} bytes of data, the file holds {data_len}"
            )
        for (s0, e0, n0, *_), (s1, _, n1, *_) in zip(spans, spans[1:]):
            if s1 < e0:
                raise CheckpointError(f"{path}: tensors {show_value(n0)} and {show_value(n1)} overlap")
        if data_len == 0 or not spans:
            return {name: torch.empty(shape, dtype=dtype) for _, _, name, dtype, shape in spans}
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    base = 8 + header_len
    tensors: dict[str, torch.Tensor] = {}
    for start, end, name, dtype, shape in spans:
        if end == start:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(mapped, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        tensors[name] = flat.view(shape)
    return tensors


def read_bin(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A pytorch_model.bin, loaded with ``weights_only=True`` (nothing in it runs)."""
    path = Path(file)
    _check_regular(path)
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:  # pickle refusing a global, a truncated zip, ...
        raise CheckpointError(f"{path}: cannot be loaded safely ({_load_failure(exc)})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a dictionary of tensors")
    return state


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line.

    torch's own first line for a refused pickle advises ``weights_only=False``; the
    useful part (which global the pickle asked for) is further down.
    """
    lines = [_first_sentence(line.strip()) for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = next((line for line in lines[1:] if "GLOBAL" in line or "Unsupported" in line), None)
        return "it pickles objects other than tensors, and nothing in it was run" + (f": {detail}" if detail else "")
    if isinstance(exc, (EOFError, OSError)) or "zip archive" in str(exc):
        return "the file is truncated or corrupt" + (f": {lines[0]}" if lines else "")
    return lines[0] if lines else type(exc).__name__


def _first_sentence(line: str) -> str:
    """torch's messages go on with advice for its own users ("This is an internal miniz error ...")."""
    head, dot, _ = line.partition(". ")
    return head + dot.strip()


def weight_files(directory: str | os.PathLike) -> list[Path]:
    """The weight files of a checkpoint directory, in the reference's order of preference:
    model.safetensors, its shard index, pytorch_model.bin, its shard index.

    Every one must be a regular file in the directory: a shard index naming a file elsewhere
    (``../../etc/passwd``), a missing shard or a device is a ``CheckpointError``.
    """
    root = Path(directory)
    for single, index_name in ((SAFE_WEIGHTS, SAFE_INDEX), (BIN_WEIGHTS, BIN_INDEX)):
        if os.path.lexists(root / single):
            _check_regular(root / single)
            return [root / single]
        index = root / index_name
        if os.path.lexists(index):
            names = _shard_names(index)
            missing = [n for n in names if not os.path.lexists(root / n)]
            if missing:
                raise CheckpointError(f"{index}: shard file(s) missing: {_listed(missing)}")
            for name in names:
                _check_regular(root / name)
            return [root / n for n in names]
    raise CheckpointError(
        f"{root} has no weights ({SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or {BIN_INDEX})"
    )


def _shard_names(index: Path) -> list[str]:
    """The shard files a shard index names: plain file names beside it, each once."""
    try:
        data = read_json(index)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
        raise CheckpointError(f"{index}: not a valid shard index (its weight_map must map tensor names to file names)")
    names = sorted(set(weight_map.values()))
    outside = [n for n in names if n in ("", ".", "..") or Path(n).name != n or "\\" in n]
    if outside:
        raise CheckpointError(f"{index}: names files outside the checkpoint directory: {_listed(outside)}")
    if not names:
        raise CheckpointError(f"{index}: names no shard files")
    suffix = index.name.removesuffix(".index.json").rpartition(".")[2]  # safetensors or bin
    foreign = [n for n in names if not n.endswith("." + suffix)]
    if foreign:
        raise CheckpointError(f"{index}: names files that are not .{suffix} shards: {_listed(foreign)}")
    return names


def _listed(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n[:80]) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory by their stored names."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(directory):
        part = read_safetensors(file) if file.suffix == ".safetensors" else read_bin(file)
        state.update(part)
    return state


# ------------------------------------------------------------------- writing
def parse_size(value: int | str) -> int:
    """``"5GB"``, ``"200MB"``, ``"10KiB"`` or a byte count -> bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", value, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read a size from {value!r} (use e.g. 500MB or 2GB)")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    powers = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(number * powers[unit])


def shard_plan(state: Mapping[str, torch.Tensor], max_shard_size: int | str | None) -> list[list[str]]:
    """Group tensor names, in order, into shards of at most ``max_shard_size`` bytes each."""
    if max_shard_size is None:
        return [list(state)]
    limit = parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    used = 0
    for name, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and used + size > limit:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def write_weights(
    state: Mapping[str, torch.Tensor],
    directory: str | os.PathLike,
    *,
    safe: bool = True,
    max_shard_size: int | str | None = None,
    first: frozenset[str] | set[str] = frozenset(),
) -> list[Path]:
    """Write tensors as one file or as shards with an index (safetensors or .bin).

    Each file is written beside its target and renamed over it, so a checkpoint that
    is memory-mapped (the model being saved was loaded from it) is never truncated
    under the map; weight files of the same format left from an earlier save are removed.
    ``first`` (safetensors): tensors placed first in their file, each starting on a 64-byte
    boundary of the file as long as the sizes before it allow (:func:`save_aligned`).
    """
    from safetensors.torch import save_file

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in state.items()}
    groups = shard_plan(state, max_shard_size)
    single, index_name = (SAFE_WEIGHTS, SAFE_INDEX) if safe else (BIN_WEIGHTS, BIN_INDEX)
    stem, ext = single.rsplit(".", 1)
    written: list[Path] = []
    weight_map: dict[str, str] = {}
    for i, names in enumerate(groups, 1):
        name = single if len(groups) == 1 else f"{stem}-{i:05d}-of-{len(groups):05d}.{ext}"
        part = {n: state[n] for n in names}
        if safe and first:
            _write_atomically(root / name, lambda tmp: save_aligned(part, tmp, first))
        else:
            _write_atomically(root / name, lambda tmp: save_file(part, str(tmp), metadata={"format": "pt"})
                              if safe else torch.save(part, tmp))
        written.append(root / name)
        weight_map.update({n: name for n in names})
    if len(groups) > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        _write_atomically(root / index_name, lambda tmp: tmp.write_text(json.dumps(index, indent=2) + "\n",
                                                                        encoding="utf-8"))
        written.append(root / index_name)
    stale = re.compile(rf"{re.escape(stem)}(-\d{{5}}-of-\d{{5}})?\.{re.escape(ext)}|{re.escape(index_name)}")
    for old in root.iterdir():
        if old not in written and stale.fullmatch(old.name):
            old.unlink()
    return written


def save_aligned(state: Mapping[str, torch.Tensor], file: Path, first: frozenset[str] | set[str],
                 alignment: int = 64) -> None:
    """A safetensors file whose data starts on an ``alignment``-byte boundary (the header padded
    with spaces, as the format allows), ``first``'s tensors in front, those of a size that is a
    multiple of ``alignment`` before the others: each of those starts on a boundary too."""
    def key(name: str) -> tuple[bool, bool]:
        return name not in first, state[name].numel() * state[name].element_size() % alignment != 0

    order = sorted(state, key=key)  # (stable: the given order within each group)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    position = 0
    for name in order:
        size = state[name].numel() * state[name].element_size()
        header[name] = {"dtype": _SAFE_NAMES[state[name].dtype], "shape": list(state[name].shape),
                        "data_offsets": [position, position + size]}
        position += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % alignment)
    with open(file, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for name in order:
            tensor = state[name]
            if tensor.numel():
                handle.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)


def _write_atomically(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors makes private files; weights get what any new file gets
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def safetensors_dtype_name(dtype: torch.dtype) -> str:
    return _SAFE_NAMES[dtype]


# --------------------------------------------------------------- name tables
@dataclass(frozen=True)
class NameTable:
    """Rewrites between Hugging Face parameter names and ours.

    Each rule is a pair of dotted name fragments, ``(hf, ours)``; ``{i}``
    stands for a layer number. A fragment matches whole dotted segments
    anywhere in a name, and every rule is applied once, in order. For example
    ``("attentions.{i}.q_lin", "layers.{i}.self_attn.query")`` turns
    ``transformer.attentions.3.q_lin.weight`` into
    ``transformer.layers.3.self_attn.query.weight``, and back.
    """

    rules: tuple[tuple[str, str], ...] = ()

    @staticmethod
    @lru_cache(maxsize=None)
    def _compile(fragment: str) -> re.Pattern[str]:
        pattern = re.escape(fragment).replace(re.escape("{i}"), r"(?P<i>\d+)").replace(
            re.escape("{j}"), r"(?P<j>\d+)"
        )
        return re.compile(rf"(?:(?<=\.)|^){pattern}(?=\.|$)")

    def _apply(self, name: str, reverse: bool) -> str:
        for hf, ours in self.rules:
            source, target = (ours, hf) if reverse else (hf, ours)
            pattern = self._compile(source)
            name = pattern.sub(lambda m: target.format(**m.groupdict()), name)
        return name

    def to_ours(self, name: str) -> str:
        return self._apply(name, reverse=False)

    def to_hf(self, name: str) -> str:
        return self._apply(name, reverse=True)

    def __add__(self, other: "NameTable") -> "NameTable":
        return NameTable(self.rules + other.rules)


def legacy_renames(name: str) -> str:
    """Old LayerNorm parameter names (``gamma``/``beta``) -> ``weight``/``bias``."""
    if name.endswith(".gamma"):
        return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[: -len("beta")] + "bias"
    return name

