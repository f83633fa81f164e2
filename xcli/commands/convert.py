"""``xcli convert``: checkpoint to checkpoint (formats, dtypes, shards), written atomically and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..options import Debug, DtypeName, OutputFormatName, QuantizeName, Quiet, choices
from .info import SummaryFormat


_WARNINGS = {"overflow": "tensors with values too large for the new dtype"}


WeightFormat = choices("WeightFormat", "safetensors", "bin")


Src = Annotated[
    str,
    typer.Argument(
        metavar="SRC",
        help="Checkpoint directory, Hugging Face id (org/name) in the local cache, or built-in name.",
        show_default=False,
    ),
]
Dst = Annotated[
    Path,
    typer.Argument(metavar="DST", help="Directory to write (must not exist, unless --force).", show_default=False),
]
Format = Annotated[WeightFormat, typer.Option("--format", case_sensitive=False, help="Weight file format to write.")]
CastDtype = Annotated[
    Optional[DtypeName],
    typer.Option(
        "--dtype",
        case_sensitive=False,
        help="Cast floating-point weights (default: keep each tensor's dtype).",
        show_default=False,
    ),
]
MaxShardSize = Annotated[
    Optional[str],
    typer.Option(
        "--max-shard-size",
        metavar="SIZE",
        help="Split the weights into shards of at most SIZE (500MB, 2GB, 10GiB) with an index file; "
        "without it, one file.",
        show_default=False,
    ),
]
Verify = Annotated[
    bool,
    typer.Option(
        "--verify/--no-verify",
        help="Check the result before it appears: every tensor as intended, and the same outputs "
        "on a sample input (identical, or within the cast's tolerance).",
    ),
]
Tolerance = Annotated[
    Optional[float],
    typer.Option(
        "--tolerance",
        min=0.0,
        metavar="ATOL",
        help="Largest absolute output difference the check accepts (default: 0 when no value changes; "
        "after a narrowing cast 5e-2 (bfloat16) or 1e-2 (float16) times max(1, largest output)).",
        show_default=False,
    ),
]
ReplaceDst = Annotated[bool, typer.Option("--force", "-f", help="Replace DST if it exists.")]
QuantizeTo = Annotated[
    Optional[QuantizeName],
    typer.Option(
        "--quantize",
        case_sensitive=False,
        help="Write a quantized checkpoint (safetensors): every projection's weights as int8 with a scale per "
        "output channel, or int4 in groups of 64 (generate only), rounded exactly as a command's --quantize "
        "does; embeddings, norms and biases stay float. Every command loads it as it is; convert it with "
        "--dtype float32 to get a float checkpoint back.",
        show_default=False,
    ),
]


def convert(
    src: Src,
    dst: Dst,
    format: Format = WeightFormat.safetensors,
    dtype: CastDtype = None,
    max_shard_size: MaxShardSize = None,
    verify: Verify = True,
    tolerance: Tolerance = None,
    force: ReplaceDst = False,
    quantize: QuantizeTo = None,
    output_format: SummaryFormat = OutputFormatName.jsonl,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert a checkpoint: .bin <-> safetensors, dtype casts, sharding and unsharding, quantization.

    A cache entry (org/name) becomes a standalone directory; tokenizer files and configs come
    along; a weight tied to another is stored once. DST is written beside itself and renamed
    into place only when complete and checked, so a failure leaves no DST (and an existing
    one, with --force, untouched); a DST that another run created meanwhile is not replaced
    (exit 2) unless --force. What a killed run left beside DST is removed, with a warning.
    Prints one JSON object describing the result.

    Examples:

      xcli convert ./xlm-ckpt ./xlm-safe

      xcli convert facebook/xglm-564M ./xglm-bf16 --dtype bfloat16

      xcli convert ./big ./big-sharded --max-shard-size 2GB --format bin

      xcli convert facebook/xglm-564M ./xglm-int8 --quantize int8

      xcli convert ./xglm-int8 ./xglm-float --dtype float32
    """
    from ..console import console
    from ..errors import UsageError, XcliError
    from ..models import resolve_model

    console.configure(quiet=quiet, debug=debug)
    target = _check_paths(src, dst, force)
    source = resolve_model(src)

    from xcli_models.convert import VerificationError, convert_checkpoint

    _check_shard_size(max_shard_size)
    _check_quantize(quantize, format, dtype, source.path)
    try:
        result = convert_checkpoint(
            source.path,
            target,
            safe=format is WeightFormat.safetensors,
            dtype=dtype.value if dtype else None,
            max_shard_size=max_shard_size,
            verify=verify,
            tolerance=tolerance,
            overwrite=force,
            notify=console.note,
            warn=_warn,
            quantize=quantize.value if quantize else None,
        )
    except VerificationError as exc:
        console.summarize_warnings(_WARNINGS)
        kept = "left as it was" if target.exists() else "not written"
        raise XcliError(f"the check failed, {dst} {kept}: {exc.check.summary()}") from exc
    except FileExistsError as exc:
        raise UsageError(f"DST {dst}: {exc}") from None

    console.summarize_warnings(_WARNINGS)
    if result.check is not None:
        console.note(f"check {result.check.summary()}")
    summary = {"model": src, **result.to_json()}
    _emit(summary, output_format)


def _check_paths(src: str, dst: Path, force: bool) -> Path:
    """SRC must not be a file; DST must be a directory to replace (with --force) or not exist yet."""
    from ..errors import UsageError

    if Path(src).expanduser().is_file():
        raise UsageError(f"SRC {src}: is a file", "pass the checkpoint directory (the one holding config.json)")
    target = dst.expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"DST {dst}: exists and is not a directory")
    if target.exists() and not force:
        raise UsageError(f"DST {dst}: exists", "pass --force to replace it")
    return target


def _check_quantize(quantize: Any, format: WeightFormat, dtype: Any, source: Any) -> None:
    """--quantize writes safetensors, keeps the float weights' dtypes, and takes a float checkpoint."""
    from ..errors import UsageError
    from ..model_commands import stored_quantization

    if quantize is None:
        return
    if format is not WeightFormat.safetensors:
        raise UsageError("--quantize writes safetensors: it takes no --format bin")
    if dtype is not None:
        raise UsageError(f"--quantize keeps the float weights (embeddings, norms, biases) as SRC has them: it "
                         f"takes no --dtype {dtype.value}", "convert the dtype first, then quantize")
    stored = stored_quantization(source)
    if stored is not None and stored != quantize.value:
        raise UsageError(f"--quantize {quantize.value}: SRC holds {stored} weights already",
                         "convert it with --dtype float32 first")


def _check_shard_size(max_shard_size: str | None) -> None:
    from xcli_models.loading import parse_size

    from ..errors import UsageError

    if max_shard_size is not None:
        try:
            if parse_size(max_shard_size) <= 0:
                raise ValueError("the size must be positive")
        except ValueError as exc:
            raise UsageError(f"--max-shard-size {max_shard_size}: {exc}") from None


def _warn(message: str) -> None:
    """The conversion's warnings: leftovers of killed runs it removed, each shown; overflowing
    tensors, counted (the first few shown)."""
    from ..console import console

    if message.startswith(("removed ", "restored ")):
        console.warning(message)
    else:
        console.counted_warning("overflow", message)


def _emit(summary: dict[str, Any], fmt: OutputFormatName) -> None:
    import sys

    from ..io import json_text

    if fmt is OutputFormatName.jsonl:
        sys.stdout.write(json_text(summary))
    else:
        check = summary["check"]
        if check is None:
            verdict = "not checked (--no-verify)"
        else:
            bound = "exact" if check["exact"] else f"tolerance {check['tolerance']:.3g}"
            verdict = f"{'ok' if check['passed'] else 'FAILED'}, max |diff| {check['max_abs_diff']:.3g} ({bound})"
        rows = [
            ("destination", summary["destination"]),
            ("format", f"{summary['format']}, {summary['shards']} file(s), {summary['tensors']} tensors"),
            ("dtype", summary["dtype"] or "kept"),
            ("quantization", summary["quantization"] or "none"),
            ("check", verdict),
        ]
        sep = "\t" if fmt is OutputFormatName.tsv else "  "
        width = 0 if fmt is OutputFormatName.tsv else max(len(k) for k, _ in rows)
        sys.stdout.write("".join(f"{k:<{width}}{sep}{v}\n" for k, v in rows))
    sys.stdout.flush()
