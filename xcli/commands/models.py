"""``xcli models``: the models xcli can load without a path (built in, in the Hugging Face cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..options import Debug, Quiet, choices


SourceName = choices("SourceName", "builtin", "cache", "all")
ListFormatName = choices("ListFormatName", "jsonl", "text")


def models(
    source: Annotated[
        SourceName,
        typer.Option("--source", case_sensitive=False, help="Which models: built in, in the Hugging Face cache, or all."),
    ] = SourceName.all,
    output_format: Annotated[
        ListFormatName,
        typer.Option(
            "--output-format", "-O", case_sensitive=False,
            help="jsonl: one JSON object per model; text: an aligned table (id, source, family, commands, size).",
        ),
    ] = ListFormatName.jsonl,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """List the models -m/--model takes without a path: the built-in ones, then the local Hugging
    Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) by id.

    One JSON object per model: id, source (builtin/cache), family (config.json's model_type),
    heads (its architectures), the commands that accept it, has_weights, size (bytes on disk) and
    path. Only JSON files are read (no weights, no torch), so it is fast. An entry that cannot be
    read (a broken cache folder, a model type xcli does not run) is listed with an "error" field;
    the exit status stays 0.

    Examples:

      xcli models

      xcli models --source cache -O text

      xcli models | jq -r 'select(.has_weights) | .id'
    """
    import sys

    from ..console import console
    from ..io import json_text

    console.configure(quiet=quiet, debug=debug)
    entries = list_models(source.value)
    if output_format is ListFormatName.jsonl:
        for entry in entries:
            sys.stdout.write(json_text(entry))
    else:
        sys.stdout.write(table(entries))
    sys.stdout.flush()


def list_models(source: str = "all") -> list[dict[str, Any]]:
    """The entries, built-in models first, then the cache's by id."""
    from .. import models as resolution

    entries = []
    if source in ("builtin", "all"):
        root = resolution.builtin_root()
        entries += [_entry(name, "builtin", root / name) for name in resolution.builtin_models()]
    if source in ("cache", "all"):
        cache = resolution.hub_cache()
        for model_id in resolution.cached_models(cache):
            try:
                snapshot = resolution.find_in_cache(model_id, cache)
            except (OSError, ValueError) as exc:
                error = f"cannot read its cache folder: {exc}"
            else:
                if snapshot is not None:
                    entries.append(_entry(model_id, "cache", snapshot))
                    continue
                error = "no snapshot to load (no snapshots/<revision>/ folder)"
            repo = cache / ("models--" + model_id.replace("/", "--"))
            entries.append(_entry(model_id, "cache", repo, error))
    return entries


def _entry(model_id: str, source: str, path: Path, error: str | None = None) -> dict[str, Any]:
    from xcli_models.catalog import describe

    entry: dict[str, Any] = {"id": model_id, "source": source}
    fields: dict[str, Any] = {"family": None, "heads": [], "commands": [], "has_weights": False, "size": 0}
    if error is None:
        try:
            fields = describe(path)
        except (OSError, ValueError) as exc:  # ConfigError: unreadable or unsupported config.json
            error = str(exc)
    entry.update(fields)
    entry["path"] = str(path)
    if error is not None:
        entry["error"] = error
    return entry


def table(entries: list[dict[str, Any]]) -> str:
    """The entries as an aligned table with a header row."""
    from .info import _size

    rows = [("ID", "SOURCE", "FAMILY", "COMMANDS", "SIZE")]
    for e in entries:
        commands = f"error: {e['error']}" if "error" in e else ", ".join(e["commands"]) or "-"
        rows.append((e["id"], e["source"], e["family"] or "-", commands, _size(e["size"])))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4].rjust(8) + "\n"
        for row in rows
    )
