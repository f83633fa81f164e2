"""``xcli info``: what a checkpoint is and what xcli can do with it, as one JSON object or a table."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..options import Debug, Model, OutputFormatName, Quiet

#: --output-format of the commands that print one summary object (info, convert)
SummaryFormat = Annotated[
    OutputFormatName,
    typer.Option(
        "--output-format",
        "-O",
        case_sensitive=False,
        help="jsonl: one JSON object; text: a readable table; tsv: one 'field<TAB>value' row per field.",
    ),
]


def info(
    model: Annotated[
        Optional[str],
        typer.Argument(
            metavar="MODEL",
            envvar="XCLI_MODEL",
            help="Checkpoint directory, Hugging Face id (org/name) in the local cache, or built-in name.",
            show_default=False,
        ),
    ] = None,
    model_option: Model = None,
    output_format: SummaryFormat = OutputFormatName.jsonl,
    processor: Annotated[
        bool, typer.Option("--processor", help="Describe this machine's processor instead: its instruction sets "
                           "for inference, and whether bfloat16 is fast on it (what --dtype auto picks).")
    ] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Describe a checkpoint: family, architectures, the commands it serves, parameters, dtypes,
    size on disk, vocabulary, special tokens, labels, languages (XLM) and max positions.

    Prints one JSON object; -O text prints a table. A directory without weights (a config and
    tokenizer, as the built-in models) is described too, with exit status 0: "has_weights" is
    false, "weights" null, "parameters" what config.json describes, "commands" only tokenize,
    and a warning on stderr says so. A checkpoint that cannot be read exits with 1.

    Examples:

      xcli info xlnet-base-cased

      xcli info ./my-checkpoint -O text

      xcli info -m RUCAIBox/mvp

      xcli info --processor
    """
    from ..console import console
    from ..models import resolve_model

    console.configure(quiet=quiet, debug=debug)
    if processor:
        from xcli_models.hardware import processor as describe_processor
        from xcli_models.native import kernel_status

        described = {**describe_processor(), "int8_kernels": kernel_status()}
        _print(described, output_format, lambda p: [
            ("cpu", p["cpu"] or "-"), ("cores", str(p["cores"])), ("instructions", " ".join(p["instructions"]) or "-"),
            ("bfloat16", {"fast": "fast (--dtype auto picks it)", "slow": "slow (emulated): --dtype auto keeps float32",
                          "unknown": "unknown: --dtype auto keeps float32"}[p["bfloat16"]]),
            ("int8 kernels", p["int8_kernels"])])
        return
    if model and model_option and model != model_option:
        raise typer.BadParameter(f"two models given: {model!r} and --model {model_option!r}; give one")
    resolved = resolve_model(model_option or model)
    from xcli_models.summary import summarize

    summary = {"model": resolved.spec, "origin": resolved.origin, **summarize(resolved.path)}
    if not summary["has_weights"]:
        console.warning(f"{resolved.spec} has no weights (config and tokenizer only): only tokenize can use it")
    _print(summary, output_format, table)


def _print(summary: dict[str, Any], output_format: OutputFormatName, rows_of: Any) -> None:
    """One JSON object, or its (label, text) rows as a table or TSV."""
    import sys

    from ..io import json_text

    if output_format is OutputFormatName.jsonl:
        sys.stdout.write(json_text(summary))
    else:
        rows = rows_of(summary)
        if output_format is OutputFormatName.tsv:
            sys.stdout.write("".join(f"{key}\t{value}\n" for key, value in rows))
        else:
            width = max(len(key) for key, _ in rows)
            sys.stdout.write("".join(f"{key:<{width}}  {value}\n" for key, value in rows))
    sys.stdout.flush()


def table(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (label, text) rows."""
    weights = s["weights"]
    if weights:
        stored = (
            f"{weights['format']}, {weights['shards']} file(s), {weights['tensors']} tensors, {_size(weights['bytes'])}"
        )
    else:
        stored = "none (config and tokenizer only: only tokenize can use it)"
    special = s["special_tokens"] or {}
    tokens = []
    for name, entry in special.items():
        for item in entry if isinstance(entry, list) else [entry]:
            shown = item["token"] if item["token"] is not None else "?"
            tokens.append(f"{shown} ({name.removesuffix('_token').removesuffix('_tokens')} {item['id']})")
    vocab = str(s["vocab_size"])
    if s["tokenizer"]:
        vocab += f" (tokenizer {s['tokenizer']}: {s['tokenizer_vocab_size']})"
    languages = s["languages"]
    rows = [
        ("model", f"{s['model']} ({s['origin']}: {s['path']})"),
        ("family", f"{s['family']} ({s['model_type']})"),
        ("architectures", ", ".join(s["architectures"]) or "-"),
        ("commands", ", ".join(s["commands"]) or "-"),
        ("parameters", f"{s['parameters']:,} ({_count(s['parameters'])}{'' if weights else ', from config.json'})"),
        ("dtypes", ", ".join(f"{k}: {v:,}" for k, v in s["dtypes"].items()) or "-"),
        ("quantization", _quantized(s.get("quantization"))),
        ("weights", stored),
        ("size on disk", _size(s["size_on_disk"])),
        ("vocabulary", vocab),
        ("special tokens", ", ".join(tokens) or "-"),
        ("labels", ", ".join(s["labels"]) if s["labels"] else "-"),
        ("languages", ", ".join(f"{k}={v}" for k, v in languages.items()) if languages else "-"),
        ("max positions", str(s["max_positions"]) if s["max_positions"] is not None else "unlimited (relative)"
         if s["relative_positions"] else "-"),
        ("shape", f"{s['layers']} layers, hidden {s['hidden_size']}, {s['attention_heads']} heads"),
    ]
    return rows


def _quantized(q: dict[str, Any] | None) -> str:
    if not q:
        return "none"
    held = ", ".join(f"{n} {mode}" for mode, n in q["projections"].items() if n)
    groups = f", groups of {q['group_size']}" if q["group_size"] else ""
    return f"{q['mode']} ({held or 'no'} projections{groups}; xcli convert --dtype float32 to dequantize)"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)
