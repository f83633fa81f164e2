"""A checkpoint directory at a glance from its JSON files alone, without torch (``xcli models``).

:func:`describe` reads config.json (and tokenizer_config.json) with the careful reader of
:mod:`xcli_models.config`, looks which weight and tokenizer files are there, and sums the size on
disk; no weight is read and nothing is printed. The weight file names live here too, so that
:mod:`xcli_models.loading` and this module agree on them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import ConfigError, read_json, show_value

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


def has_weight_files(directory: str | os.PathLike) -> bool:
    """Whether the directory holds any of the weight files or shard indexes (good or not)."""
    root = Path(directory)
    return any(os.path.lexists(root / name) for name in (SAFE_WEIGHTS, SAFE_INDEX, BIN_WEIGHTS, BIN_INDEX))


def directory_size(directory: str | os.PathLike) -> int:
    """Bytes on disk of the files under ``directory``, following the hub cache's links to blobs."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def has_tokenizer(directory: str | os.PathLike) -> bool:
    """Whether the directory names a tokenizer xcli has and holds its vocabulary files."""
    from .tokenization import TokenizerError, tokenizer_class_for

    root = Path(directory)
    try:
        cls = tokenizer_class_for(root)
    except (TokenizerError, OSError, ValueError, ImportError):
        return False
    return all(os.path.lexists(root / name) for name in cls.vocab_files.values())


def describe(directory: str | os.PathLike) -> dict[str, Any]:
    """``family`` (config.json's model_type), ``heads`` (its architectures), ``commands``,
    ``has_weights`` and ``size`` (bytes on disk) of a checkpoint directory.

    Raises ``ConfigError`` (one line, naming the file) when config.json is missing, unreadable (not
    a regular file, too large, not JSON), names a model type xcli does not run, or lists bad
    architectures.
    """
    from .registry import FAMILIES
    from .tasks import checkpoint_commands

    root = Path(directory)
    file = root / "config.json"
    if not os.path.lexists(file):
        raise ConfigError(f"{file} is missing")
    data = read_json(file)
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ConfigError(
            f"{file}: model_type {show_value(model_type)} is not one xcli runs (supported: {', '.join(sorted(FAMILIES))})"
        )
    heads = data.get("architectures")
    if heads is None:
        heads = []
    if not isinstance(heads, list) or not all(isinstance(h, str) for h in heads):
        raise ConfigError(f"{file}: architectures must be a list of class names, not {show_value(heads)}")
    weights = has_weight_files(root)
    quantized = data.get("quantization")
    return {
        "family": model_type,
        "heads": heads,
        "commands": checkpoint_commands(heads, tokenizer=has_tokenizer(root), weights=weights,
                                        bits=quantized.get("bits") if isinstance(quantized, dict) else None),
        "has_weights": weights,
        "size": directory_size(root),
    }
