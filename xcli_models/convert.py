"""Checkpoint conversion with a numerical check.

``convert_checkpoint(src, dst)`` re-packs a Hugging Face checkpoint directory:
``pytorch_model.bin`` (read with ``weights_only=True``) to safetensors or back,
float casts, sharding by size with an index file, or one file again. Parameter
names are kept as they are (a converted checkpoint loads in ``transformers``
unchanged); a weight tied to another (an LM head tied to the embeddings) is
stored once, as the reference stores it. Tokenizer files and configs come
along; other frameworks' weights (``tf_model.h5`` ...) stay behind.

Everything is written into a hidden directory beside ``dst`` (an
``atomic.Work``), checked, and renamed into place only when complete, so a
failed or interrupted conversion leaves nothing at ``dst`` (and an existing
``dst`` replaced with ``overwrite=True`` survives a failure). The rename never
replaces a ``dst`` that appeared meanwhile unless ``overwrite``: of two
conversions racing for one ``dst`` exactly one wins, and the other fails and
leaves nothing. What a killed conversion left beside ``dst`` is removed by
the next one, which says so through ``warn``.

The check (:func:`verify_conversion`) reads the converted weights back from
disk and compares them, tensor by tensor, with the values the conversion
meant to write (bit for bit: a cast is deterministic); then it loads both
checkpoints with the class config.json names and runs one fixed sample input
through each, in float32 on the CPU. The outputs must be identical when no
value changed (re-packing, or a cast to a wider type), and within
``CAST_RTOL[dtype] * max(1, largest |output|)`` after a narrowing cast.

``quantize="int8"|"int4"`` writes a quantized checkpoint (the format: :mod:`xcli_models.quantized_checkpoint`);
its check compares the stored integers and scales bit for bit with a fresh quantization of the source,
then the outputs of the quantized checkpoint with those of the source quantized on the fly: they must be
identical. A quantized source converted with a ``dtype`` is dequantized (a float checkpoint the
reference loads; its outputs are checked against the quantized source's within
``QUANT_RTOL[bits] * max(1, largest |output|)``); converted without one it stays quantized (re-packed).

Nothing here prints (``xcli info``'s summary is :mod:`xcli_models.summary`).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .atomic import published_folder
from .auto import checked_config, model_class, tied_in_checkpoint
from .config import Config, read_json
from .loading import (
    BIN_INDEX, SAFE_INDEX, CheckpointError, parse_size, read_weights, write_weights,
)
from .modeling import PreTrainedModel, build_on_meta, resolve_dtype
from .quantized_checkpoint import MODES, Spec, check_tensors, dequantize_state, projections, quantize_state, spec_of
from .registry import capabilities

#: relative tolerance of the output check after a narrowing cast, by target dtype: the largest absolute
#: output difference may be this times max(1, the largest absolute output of the source)
CAST_RTOL: dict[torch.dtype, float] = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-5}
#: relative tolerance of the output check of a dequantized checkpoint against its quantized source, by bits
#: (the quantized model also rounds its inputs to int8 or bfloat16: a sanity bound, not an error bound)
QUANT_RTOL: dict[int, float] = {8: 0.1, 4: 0.5}

#: files of a checkpoint directory that are not carried along (other frameworks' weights, pickles)
_LEFT_BEHIND = (".bin", ".safetensors", ".h5", ".msgpack", ".ot", ".onnx", ".ckpt", ".pt", ".pth", ".tflite", ".pkl")
#: the sample input: rows x tokens
_SAMPLE = (2, 8)
_PRECISION = {torch.float64: 3, torch.float32: 2, torch.bfloat16: 1, torch.float16: 1}


class VerificationError(ValueError):
    """The converted checkpoint does not give what the source gives; ``check`` says how."""

    def __init__(self, message: str, check: "Check") -> None:
        super().__init__(message)
        self.check = check


@dataclass
class Check:
    """What the numerical check found."""

    model_class: str
    #: tensors compared bit for bit with what the conversion meant to write
    tensors: int = 0
    #: tensor names that differ (or are missing / unexpected), with why
    mismatched: list[str] = field(default_factory=list)
    #: the output field with the largest difference, and that difference
    output: str | None = None
    max_abs_diff: float = 0.0
    #: the largest absolute value among the source's outputs
    scale: float = 0.0
    tolerance: float = 0.0
    #: True when no weight changed value: the outputs must then be identical
    exact: bool = True
    sample: list[int] = field(default_factory=lambda: list(_SAMPLE))

    @property
    def passed(self) -> bool:
        return not self.mismatched and self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        """One line: what was compared and how it went."""
        if self.mismatched:
            more = len(self.mismatched) - 3
            shown = "; ".join(self.mismatched[:3]) + (f" and {more} more" if more > 0 else "")
            return f"{len(self.mismatched)} of {self.tensors} tensors differ from the source: {shown}"
        bound = "exact" if self.exact else f"tolerance {self.tolerance:.3g}"
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{verdict}: {self.tensors} tensors identical to the intended values; {self.model_class} outputs on a "
            f"{'x'.join(map(str, self.sample))} sample differ by at most {self.max_abs_diff:.3g} "
            f"({self.output or 'no output'}; {bound}; largest output {self.scale:.3g})"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class Conversion:
    """What ``convert_checkpoint`` wrote."""

    source: str
    destination: str
    format: str
    #: dtype of the floating-point weights written (None: each kept its own)
    dtype: str | None
    #: floating-point dtypes of the source's weights, with their tensor counts
    source_dtypes: dict[str, int]
    files: list[str]
    tensors: int
    bytes: int
    shards: int
    #: weights tied to another one and therefore stored once (name -> the weight it is tied to)
    tied: dict[str, str] = field(default_factory=dict)
    #: tensor -> how many finite values became infinite in the cast
    overflow: dict[str, int] = field(default_factory=dict)
    #: other files of the source copied as they are (tokenizer, configs, README ...)
    copied: list[str] = field(default_factory=list)
    #: files of the source not copied: its weights and their index (rewritten as ``files``), and
    #: weights of other frameworks and folders (TensorFlow, Flax, ONNX ...)
    left_behind: list[str] = field(default_factory=list)
    check: Check | None = None
    #: "int8" or "int4" for a quantized checkpoint written, else None
    quantization: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["check"] = self.check.to_json() if self.check else None
        return out


# ----------------------------------------------------------------------- the model class
def meta_model(cls: type[PreTrainedModel], config: Config, path: str | os.PathLike = "") -> PreTrainedModel:
    """The model built on the meta device: its structure without memory or initialisation."""
    return build_on_meta(cls, config, path)


# ------------------------------------------------------------------------ weights
def _prepare(
    state: Mapping[str, torch.Tensor], tied: Mapping[str, str], dtype: torch.dtype | None
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The tensors to write: tied copies left out, floats cast; and the overflow count per tensor."""
    out: dict[str, torch.Tensor] = {}
    overflow: dict[str, int] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, tensor in state.items():
        if name in tied:
            continue
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            cast = tensor.to(dtype)
            lost = int((torch.isinf(cast) & torch.isfinite(tensor)).sum())
            if lost:
                overflow[name] = lost
            tensor = cast
        elif tensor.numel():
            # storage shared with a tensor kept already (an old .bin's tie the config does not name):
            # stored twice, so that each file holds independent tensors
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if key in seen:
                tensor = tensor.clone()
            seen.add(key)
        out[name] = tensor
    return out, overflow


def _expected(state: Mapping[str, torch.Tensor], name: str, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = state[name]
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (so NaNs compare equal to themselves, and -0.0 differs from 0.0)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point() and a.numel():
        as_int = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))
    return torch.equal(a, b)


def _float_dtypes(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tensor in state.values():
        if tensor.is_floating_point():
            key = str(tensor.dtype).removeprefix("torch.")
            counts[key] = counts.get(key, 0) + 1
    return counts


def is_lossless(state: Mapping[str, torch.Tensor], dtype: torch.dtype | None) -> bool:
    """Whether casting every floating tensor of ``state`` to ``dtype`` keeps every value."""
    if dtype is None:
        return True
    for tensor in state.values():
        if not tensor.is_floating_point() or tensor.dtype == dtype:
            continue
        wider = _PRECISION.get(dtype, 0) > _PRECISION.get(tensor.dtype, 0)
        if not wider:
            return False
    return True


# -------------------------------------------------------------------------- check
def sample_inputs(model: PreTrainedModel) -> dict[str, torch.Tensor | bool]:
    """A fixed input every model of the five families accepts: ``_SAMPLE`` token ids without
    special tokens, each row ending with the eos token (MVP's classifier reads it), and
    decoder ids for encoder-decoders; (1, rows, tokens) for multiple-choice heads."""
    config = model.config
    rows, length = _SAMPLE
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        length = max(2, min(length, limit - 2))
    vocab = int(config.vocab_size)
    special = {
        v for k, v in vars(config).items()
        if (k.endswith("_token_id") or k.endswith("_index")) and isinstance(v, int)
    }
    plain = [i for i in range(vocab) if i not in special] or list(range(vocab))

    def ids(salt: int) -> torch.Tensor:
        values = [plain[(7919 * (n + 1) + 31 * salt) % len(plain)] for n in range(rows * length)]
        table = torch.tensor(values, dtype=torch.long).view(rows, length)
        eos = getattr(config, "eos_token_id", None)
        if isinstance(eos, int) and 0 <= eos < vocab:
            table[:, -1] = eos
        return table

    params = inspect.signature(model.forward).parameters
    inputs: dict[str, torch.Tensor | bool] = {"input_ids": ids(0)}
    if "decoder_input_ids" in params:
        decoder = ids(1)
        start = getattr(config, "decoder_start_token_id", None)
        if isinstance(start, int) and 0 <= start < vocab:
            decoder[:, 0] = start
        inputs["decoder_input_ids"] = decoder
    if capabilities(type(model).__name__).classify == "choice":  # (B, choices, T)
        inputs = {k: v.unsqueeze(0) for k, v in inputs.items()}
    if "use_cache" in params:
        inputs["use_cache"] = False
    return inputs


def _flatten(value: Any, name: str) -> list[tuple[str, torch.Tensor]]:
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [(name, value)]
    to_legacy = getattr(value, "to_legacy", None)
    if to_legacy is not None:
        return _flatten(to_legacy(), name)
    if isinstance(value, (tuple, list)):
        return [item for i, v in enumerate(value) for item in _flatten(v, f"{name}[{i}]")]
    return []


def run_sample(
    cls: type[PreTrainedModel], directory: Path, quantize: str | None = None
) -> list[tuple[str, torch.Tensor]]:
    """Load ``directory`` as ``cls`` (float32, CPU) and run the sample input: the float outputs by name.
    ``quantize`` ("int8", "int4"): the float model quantized on the fly, as ``--quantize`` does (int8
    products where this torch has them; int4 weight-only, for generation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a head the checkpoint lacks is initialised the same way for both sides
        model = cls.from_pretrained(directory, dtype=torch.float32, device="cpu")
    # fresh, aligned memory for every weight: a memory-mapped tensor's alignment must not change the sums
    for param in model.parameters():
        param.data = param.data.clone()
    for module in model.modules():
        for key, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[key] = buffer.clone()
    if quantize is not None:
        from .quantize import quantize_model

        quantize_model(model, MODES[quantize], weight_only=quantize == "int4")  # as the checkpoint loads
    try:
        with torch.inference_mode():
            output = model(**sample_inputs(model))
    except Exception as exc:  # a config the class cannot run (e.g. a span head with num_labels != 2)
        raise CheckpointError(
            f"{directory}: {cls.__name__} cannot run the check's sample input ({type(exc).__name__}: {exc}); "
            f"convert without the check (--no-verify) if that is expected"
        ) from exc
    items = output.items() if hasattr(output, "items") else [(str(i), v) for i, v in enumerate(output)]
    return [(n, t) for key, value in items for n, t in _flatten(value, key) if t.is_floating_point()]


def _compare_outputs(
    ours: list[tuple[str, torch.Tensor]], theirs: list[tuple[str, torch.Tensor]], check: Check
) -> None:
    """Record in ``check`` the largest absolute difference between two runs' outputs, and its field."""
    if [n for n, _ in ours] != [n for n, _ in theirs]:
        check.output, check.max_abs_diff = "output fields", float("inf")
        return
    for (name, a), (_, b) in zip(ours, theirs):
        if a.shape != b.shape:
            check.output, check.max_abs_diff = name, float("inf")
            return
        if not a.numel():
            continue
        a, b = a.double(), b.double()
        finite = a[torch.isfinite(a)]
        if finite.numel():
            check.scale = max(check.scale, finite.abs().max().item())
        same_nan = torch.isnan(a) & torch.isnan(b)
        same_inf = torch.isinf(a) & (a == b)
        diff = torch.where(same_nan | same_inf, torch.zeros_like(a), (a - b).abs())
        worst = diff.max().item()
        if worst != worst:  # NaN on one side only
            worst = float("inf")
        if worst > check.max_abs_diff or check.output is None:
            check.output, check.max_abs_diff = name, worst


@dataclass
class _Plan:
    """What a conversion writes: its tensors before ties and casts, and the quantizations involved."""

    state: dict[str, torch.Tensor]
    #: weights tied to another stored one, left out (name -> the one kept)
    tied: dict[str, str]
    #: the source's quantization (None: a float checkpoint) and the result's
    source: Spec | None
    result: Spec | None

    @property
    def dequantizing(self) -> bool:
        return self.source is not None and self.result is None


def _plan(cls: type[PreTrainedModel], config: Config, src: Path, quantize: str | None,
          target: torch.dtype | None) -> _Plan:
    """Read ``src`` and decide (see the module docstring): quantize a float checkpoint, dequantize a
    quantized one converted with a dtype, or keep it (a quantized one checked)."""
    meta = meta_model(cls, config, src)
    source = spec_of(config, str(src / "config.json"))
    if source is not None and quantize is not None and quantize != source.mode:
        raise ValueError(f"{src} holds {source.mode} weights already; dequantize it first (convert --dtype float32)")
    state = read_weights(src)
    result = source
    if source is None and quantize is not None:
        state, result = quantize_state(meta, state, MODES[quantize])
    elif source is not None and target is not None:
        state, result = dequantize_state(meta, state, source, str(src)), None
    elif source is not None:  # re-packed, in the layout written today (a version-1 checkpoint's int8 blocked)
        from .quantized_checkpoint import aligned_names, current_layout

        state = aligned_names(meta, state)
        check_tensors(state, source, projections(meta), str(src))
        state, result = current_layout(state, source)
    quantized = set(result.modules) if result is not None else set()
    tied = {k: v for k, v in tied_in_checkpoint(meta, set(state)).items() if k not in quantized}
    return _Plan(state, tied, source, result)


def verify_conversion(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    tolerance: float | None = None,
    quantize: str | None = None,
) -> Check:
    """Check ``destination`` against ``source`` (see the module docstring).

    ``dtype`` is the cast the conversion applied (None: none), ``quantize`` its quantization.
    ``tolerance`` replaces the default absolute tolerance of the output comparison. Raises
    ``CheckpointError`` when either side cannot be read; returns the :class:`Check`
    (``check.passed`` says the verdict).
    """
    src, dst = Path(source), Path(destination)
    target = resolve_dtype(dtype) if dtype is not None else None
    cls = model_class(src)
    config = checked_config(cls, src, torch.float32)  # the check runs both checkpoints in float32
    plan = _plan(cls, config, src, quantize, target)
    src_state, tied = plan.state, plan.tied
    dst_state = read_weights(dst)
    check = Check(model_class=cls.__name__, exact=is_lossless(src_state, target) and not plan.dequantizing)
    wanted = [n for n in src_state if n not in tied]
    for name in wanted:
        check.tensors += 1
        if name not in dst_state:
            check.mismatched.append(f"{name} is missing")
        elif not _same_bits(_expected(src_state, name, target), dst_state[name]):
            got = dst_state[name]
            check.mismatched.append(f"{name} ({str(got.dtype).removeprefix('torch.')} {list(got.shape)}) "
                                    f"is not what was meant to be written")
    check.mismatched += [f"{name} should not be there" for name in dst_state if name not in src_state or name in tied]
    del src_state, dst_state, plan.state
    reference = run_sample(cls, src, quantize if plan.source is None else None)
    converted = run_sample(model_class(dst), dst)
    _compare_outputs(reference, converted, check)
    if tolerance is not None:
        check.tolerance = float(tolerance)
    elif plan.dequantizing:
        check.tolerance = QUANT_RTOL[plan.source.bits] * max(1.0, check.scale)  # type: ignore[union-attr]
    elif check.exact:
        check.tolerance = 0.0
    else:
        check.tolerance = CAST_RTOL.get(target, 1e-2) * max(1.0, check.scale)  # type: ignore[arg-type]
    return check


# --------------------------------------------------------------------- conversion
def carried_files(directory: Path) -> tuple[list[Path], list[str]]:
    """Files of a checkpoint that come along (tokenizer files, configs, README ...), and those left behind."""
    carried, left = [], []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_file():
            left.append(entry.name + "/")
        elif entry.name in (SAFE_INDEX, BIN_INDEX) or entry.name.endswith(_LEFT_BEHIND):
            left.append(entry.name)
        else:
            carried.append(entry)
    return carried, left


def _set_config_dtype(file: Path, dtype: torch.dtype) -> None:
    data = read_json(file)
    name = str(dtype).removeprefix("torch.")
    keys = [k for k in ("torch_dtype", "dtype") if k in data] or ["torch_dtype"]
    for key in keys:
        data[key] = name
    file.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _set_config(file: Path, dtype: torch.dtype | None, spec: Spec | None) -> None:
    """config.json's dtype set to ``dtype`` (None: kept) and its ``quantization`` entry to ``spec``'s
    (None: removed, a float checkpoint)."""
    from .quantized_checkpoint import KEY

    if dtype is not None:
        _set_config_dtype(file, dtype)
    data = read_json(file)
    if spec is None and KEY not in data:
        return
    if spec is None:
        del data[KEY]
    else:
        data[KEY] = spec.to_json()
    file.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_options(src: Path, dtype: torch.dtype | str | None, max_shard_size: int | str | None,
                   quantize: str | None, safe: bool) -> torch.dtype | None:
    """The options of a conversion checked (a ``CheckpointError`` or ``ValueError``); the target dtype."""
    if not src.is_dir():
        raise CheckpointError(f"{src} is not a checkpoint directory")
    target = resolve_dtype(dtype) if dtype is not None else None
    if target is not None and target not in CAST_RTOL:
        raise ValueError(f"cannot convert to {target} (use float32, bfloat16 or float16)")
    if max_shard_size is not None and parse_size(max_shard_size) <= 0:
        raise ValueError("max_shard_size must be positive")
    if quantize is None:
        return target
    if quantize not in MODES:
        raise ValueError(f"cannot quantize to {quantize!r} (use int8 or int4)")
    if not safe:
        raise ValueError("a quantized checkpoint is written as safetensors")
    if target is not None:
        raise ValueError("a quantized checkpoint keeps its float weights (embeddings, norms, biases) as the "
                         "source has them: it takes no dtype")
    return target


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    if dst.exists() or dst.is_symlink():
        if not dst.is_dir():
            raise FileExistsError(f"{dst} exists and is not a directory")
        if not overwrite:
            raise FileExistsError(f"{dst} exists")
    real_src, real_dst = src.resolve(), dst.resolve()
    if real_src != real_dst and real_dst in real_src.parents:
        raise FileExistsError(f"{dst} holds the source checkpoint {src}; pick another destination")


def convert_checkpoint(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    safe: bool = True,
    dtype: torch.dtype | str | None = None,
    max_shard_size: int | str | None = None,
    verify: bool = True,
    tolerance: float | None = None,
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    quantize: str | None = None,
) -> Conversion:
    """Convert the checkpoint directory ``source`` into ``destination`` (see the module docstring).

    ``safe``: safetensors (else ``pytorch_model.bin``); ``dtype``: cast floating-point weights
    (float32, bfloat16, float16); ``max_shard_size``: shard with an index (``"500MB"``), else
    one file; ``verify``: run :func:`verify_conversion` before ``destination`` appears.
    ``notify`` is told each stage in a few words, ``warn`` each tensor whose values overflow the cast
    and each leftover of a killed run that was removed (a sentence starting "removed" or "restored").
    ``quantize`` ("int8", "int4"; safetensors, no ``dtype``): a quantized checkpoint; a quantized
    source with a ``dtype`` is dequantized (see the module docstring).

    Raises ``CheckpointError`` (source unreadable, not of a family xcli runs, a model too large
    for the memory available), ``FileExistsError`` (``destination`` exists, or appeared during
    the conversion, and ``overwrite`` is false), ``ValueError`` (bad dtype or size) and
    :class:`VerificationError` (the check failed; nothing is written).
    """
    say = notify or (lambda message: None)
    src, dst = Path(source), Path(destination)
    target = _check_options(src, dtype, max_shard_size, quantize, safe)
    _check_destination(src, dst, overwrite)
    cls = model_class(src)
    config = checked_config(cls, src, torch.float32 if verify else target)

    say(f"reading {src}")
    source_dtypes = _float_dtypes(read_weights(src))
    if quantize is not None:
        say(f"quantizing the projections to {quantize}")
    plan = _plan(cls, config, src, quantize, target)
    tied = plan.tied
    if plan.dequantizing:
        say(f"dequantizing the {plan.source.mode} projections")  # type: ignore[union-attr]
    if target is not None:
        say(f"casting to {str(target).removeprefix('torch.')}")
    prepared, overflow = _prepare(plan.state, tied, target)
    plan.state = {}
    first = set(plan.result.modules) if plan.result is not None else set()
    for name, count in overflow.items():
        (warn or say)(f"{name}: {count} value(s) too large for {str(target).removeprefix('torch.')} became infinite")

    try:
        with published_folder(dst, replace=overwrite, warn=warn or say) as folder:
            say(f"writing {'safetensors' if safe else 'pytorch_model.bin'} into {dst}")
            written = write_weights(prepared, folder, safe=safe, max_shard_size=max_shard_size, first=first)
            n_tensors = len(prepared)
            n_bytes = sum(t.numel() * t.element_size() for t in prepared.values())
            del prepared
            carried, left_behind = carried_files(src)
            for file in carried:
                shutil.copyfile(file, folder / file.name)
            if (folder / "config.json").exists():
                _set_config(folder / "config.json", target, plan.result)
            check = None
            if verify:
                say("checking the converted checkpoint against the source")
                check = verify_conversion(src, folder, dtype=target, tolerance=tolerance, quantize=quantize)
                if not check.passed:
                    raise VerificationError(f"the converted checkpoint does not match {src}: {check.summary()}",
                                            check)
    except FileExistsError:
        raise FileExistsError(f"{dst} exists: another run wrote it while this one was converting") from None
    shards = sum(1 for f in written if not f.name.endswith(".json"))
    return Conversion(
        source=str(src),
        destination=str(dst),
        format="safetensors" if safe else "bin",
        dtype=str(target).removeprefix("torch.") if target is not None else None,
        source_dtypes=source_dtypes,
        files=sorted([f.name for f in written] + [f.name for f in carried]),
        tensors=n_tensors,
        bytes=n_bytes,
        shards=shards,
        tied=tied,
        overflow=overflow,
        copied=[f.name for f in carried],
        left_behind=left_behind,
        check=check,
        quantization=plan.result.mode if plan.result is not None else None,
    )
