"""What the model commands (fill-mask, classify, qa, generate) share.

Loading a task model with its tokenizer (a wrong head is a usage error before any weight is
read), turning the model core's option errors into usage errors, refusing a length option beyond
the model's positions, the truncation warning, and how many records are read per round for
length-sorted batching.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

def load_task_model(
    spec: str | None, device: Any, dtype: Any, threads: int | None, *, accept: Sequence[str], what: str,
    command: str | None = None, quantize: Any = None,
) -> Any:
    """Resolve ``--model`` and load it (class from its config.json) with its tokenizer.

    A checkpoint whose head is not in ``accept`` is a usage error naming its class, raised before
    any weight is read; so is an unavailable ``--device``. Without ``spec``, ``command``'s built-in
    model (``xcli.models.DEFAULT_MODELS``). ``quantize`` ("int8"): its projections in int8
    (:mod:`xcli_models.quantize`); a quantized checkpoint (``xcli convert --quantize``) is loaded as it
    is stored, whatever ``quantize`` (another mode than its own is a usage error: :func:`quantize_mode`).
    """
    from .invocation import served
    from .models import resolve_model

    resolved = resolve_model(spec, command)
    from xcli_models.tasks import common

    from xcli_models.auto import AutoModel, family_of

    server = served()
    if server is None:  # a server keeps its own threads, whatever a client's --threads
        common.set_threads(threads)
    device_name = str(getattr(device, "value", device))
    generating = command == "generate"
    stored = stored_quantization(resolved.path)
    mode = quantize_mode(stored, quantize, command or what.partition(":")[0], resolved.path)
    dtype_name = precision(device_name, dtype, mode, generating=generating, stored=stored is not None)
    with usage_errors():
        family, _ = family_of(resolved.path)
        common.require_head(AutoModel.class_for(resolved.path).__name__, lambda name: name in accept, what, family.name)

    def build() -> Any:
        if stored is not None:  # the checkpoint's own integers, as --quantize would make them
            return common.load(resolved.path, device=device_name, dtype=dtype_name,
                               weight_only=weight_only(generating, stored))
        task = common.load(resolved.path, device=device_name, dtype=dtype_name)
        if mode is not None:
            quantized(task.model, generating=generating, bits=4 if mode == "int4" else 8)
        return task

    if server is not None:  # the server's warm copy
        # one float copy serves every command; a quantized one is kept per use where its layers differ
        # (int8 is weight-only for generate, int8 products for the others)
        use = "generate" if mode is not None and weight_only(generating, mode) else "tasks"
        return server.load(resolved.path, device_name, dtype_name, build, kind=f"{use}:{mode or 'float'}")
    return build()


def stored_quantization(path: Any) -> str | None:
    """The quantization a checkpoint holds ("int8", "int4": ``xcli convert --quantize``), or None; a
    config.json whose entry is not xcli's is a failure to load (exit 1)."""
    from xcli_models.modeling import config_dict
    from xcli_models.quantized_checkpoint import spec_of

    spec = spec_of(config_dict(path), f"{path}/config.json")
    return spec.mode if spec is not None else None


def quantize_mode(stored: str | None, quantize: Any, command: str, path: Any = "the checkpoint") -> str | None:
    """The quantization a run uses: ``--quantize``, or the checkpoint's own. A quantized checkpoint
    runs as it is: another ``--quantize`` is a usage error, and so is an int4 checkpoint outside
    generate (the int4 kernel is for generation)."""
    from .errors import UsageError

    asked = str(getattr(quantize, "value", quantize)) if quantize is not None else None
    if stored is None:
        return asked
    dequantize = f"convert it to a float checkpoint (xcli convert {path} DST --dtype float32)"
    if asked is not None and asked != stored:
        raise UsageError(f"--quantize {asked}: the checkpoint holds {stored} weights already",
                         f"leave --quantize out, or {dequantize} first")
    if stored == "int4" and command != "generate":
        raise UsageError(f"the checkpoint holds int4 weights, which only generate runs ({command} cannot)",
                         f"{dequantize}, or write an int8 one from the float checkpoint")
    return stored


def weight_only(generating: bool, bits: int | str = 8) -> bool:
    """Whether a quantized model multiplies integer weights with float inputs (generation where a
    weight-only kernel is fast: xcli's own int8 one, or torch's on a CPU that computes bfloat16 fast;
    int4 always) rather than int8 products of int8 inputs (see :func:`quantized`)."""
    from xcli_models.hardware import fast_bfloat16
    from xcli_models.native import int8_kernel

    return generating and (bits in (4, "int4") or fast_bfloat16() or int8_kernel() is not None)


def precision(device: str, dtype: Any, quantize: str | None, generating: bool = False, stored: bool = False) -> str:
    """The dtype a run computes in on ``device`` (an unavailable device is a usage error): ``--dtype``,
    with auto the fast one there (float32 around int8 products), checked against ``--quantize``
    (or, ``stored``, the checkpoint's quantization)."""
    from xcli_models.tasks import common

    name = str(getattr(dtype, "value", dtype))
    with usage_errors():
        picked = common.pick_device(device)
    if name == "auto":
        name = "float32" if quantize is not None else common.fast_dtype(picked)
    if quantize is not None:
        check_quantize(quantize, picked, name, generating=generating, stored=stored)
    return name


def check_quantize(mode: str, device: Any, dtype: str, generating: bool = False, stored: bool = False) -> None:
    """--quantize runs on the CPU, computing in float32 around its integer products; int4 is for
    generate, on a CPU that computes bfloat16 fast (its kernel takes bfloat16 inputs). ``stored``:
    the checkpoint's own quantization, named as such."""
    from xcli_models.hardware import fast_bfloat16

    from .errors import UsageError

    what = f"an {mode} checkpoint" if stored else f"--quantize {mode}"
    if mode == "int4" and not generating:
        raise UsageError("--quantize int4 (4-bit weights) is for generate", "use --quantize int8")
    if mode == "int4" and not fast_bfloat16():
        raise UsageError(f"{what} needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX; see xcli info "
                         "--processor)", "convert it to float32 (xcli convert --dtype float32)" if stored
                         else "use --quantize int8")
    if device.type != "cpu":
        raise UsageError(f"{what} runs on the CPU (this run's device: {device.type})", "add --device cpu")
    if dtype != "float32":
        raise UsageError(f"{what} computes in float32 around its integer products: it takes no --dtype "
                         f"{dtype}", "leave --dtype out")


def quantized(model: Any, generating: bool = False, bits: int = 8) -> Any:
    """``model`` with its projections quantized (a failure if this torch cannot): weight-only for
    ``generating`` (:func:`weight_only`: decode steps read the weights, a quarter or an eighth of
    the bytes); otherwise int8 products of int8 inputs."""
    from xcli_models.quantize import quantize_model

    quantize_model(model, bits, weight_only(generating, bits))
    return model


@contextmanager
def usage_errors() -> Iterator[None]:
    """Options the model cannot honour (wrong head, unknown language or target) are usage errors;
    a checkpoint that cannot be loaded (a class xcli lacks, a bad config.json) stays a failure (exit 1)."""
    from xcli_models.config import ConfigError
    from xcli_models.loading import CheckpointError
    from xcli_models.tasks.common import UnsupportedModel
    from xcli_models.tokenization import TokenizerError

    from .errors import UsageError

    try:
        yield
    except (CheckpointError, ConfigError):
        raise
    except (UnsupportedModel, TokenizerError) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        if type(exc).__module__.startswith("xcli_models"):  # the task's own option checks
            raise UsageError(str(exc)) from None
        raise


def check_length(task: Any, value: int | None, option: str = "--max-length") -> None:
    """A length option longer than the model's positions take is a usage error naming the option.

    The limit is ``xcli_models.tasks.common.position_limit``'s; XLNet (relative positions) has
    none, so any length may be asked of it.
    """
    from xcli_models.tasks.common import position_limit

    from .errors import UsageError

    limit = position_limit(task.config)
    if value is not None and limit is not None and value > limit:
        raise UsageError(
            f"{option} {value} is more than {task.class_name} takes: at most {limit} tokens (its position embeddings)",
            f"leave {option} out to use that limit",
        )


def warn_truncated(record: Any, item: Any, limit: int | None, given: bool = True) -> None:
    """A counted warning when a record's input was cut to the length limit (``given``: by
    --max-length, else by its default, the model's limit)."""
    if getattr(item, "truncated", False):
        from .console import console

        why = "--max-length" if given else "the default --max-length for this model"
        console.counted_warning("truncated", f"{record.where}: truncated to {limit} tokens ({why})")


def window(batch_size: int) -> int:
    """Records read per round: many batches' worth, so that batches of similar lengths can be formed.

    Sorting 32 batches' worth by length leaves about 5% padding on SST-2 sentences, where input
    order pads 96% (8 batches' worth: 17%). Fewer are taken whenever no more input is ready (see
    ``xcli.io.batching.batches``), so a slow producer still gets each answer at once; memory stays bounded
    by this number of records.
    """
    return batch_size * 32
