"""``xcli info``'s summary: a checkpoint directory at a glance, its weights read but no model built.

:func:`summarize` names the family, the class config.json's ``architectures`` picks, the commands the
checkpoint serves (:func:`xcli_models.tasks.checkpoint_commands`), parameters (from the model built on
the meta device), dtypes and files of the stored weights (a tied copy counted once), size on disk, the
tokenizer and its special tokens, labels, languages and shape. ``xcli models`` lists checkpoints from
their JSON files alone, without torch: that is :mod:`xcli_models.catalog`. Nothing here prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .auto import architectures, checked_config, family_of, model_class, tied_in_checkpoint
from .catalog import directory_size
from .config import Config
from .loading import CheckpointError, has_weight_files, read_weights, weight_files
from .modeling import build_on_meta
from .quantized_checkpoint import aligned_names, check_tensors, projections, spec_of
from .registry import capabilities
from .tasks import checkpoint_commands

#: heads whose labels (config.json's id2label) are theirs to name
_LABELLED = ("sequence", "token")


def _special_tokens(directory: Path, config: Config) -> tuple[dict[str, Any], str | None, int | None]:
    """Special tokens with their ids, the tokenizer class and its vocabulary size (None without one)."""
    from .tokenization import AutoTokenizer, TokenizerError
    from .tokenization.base import SPECIAL_TOKEN_ATTRIBUTES

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (TokenizerError, OSError, ValueError, ImportError):
        tokens = {
            key.removesuffix("_id"): {"token": None, "id": value}
            for key, value in sorted(vars(config).items())
            if key.endswith("_token_id") and isinstance(value, int) and key != "decoder_start_token_id"
        }
        return tokens, None, None
    tokens = {}
    for name in SPECIAL_TOKEN_ATTRIBUTES:
        if name == "additional_special_tokens":
            continue
        token = getattr(tokenizer, name, None)
        if isinstance(token, str):
            tokens[name] = {"token": token, "id": tokenizer.convert_tokens_to_ids(token)}
    extra = list(getattr(tokenizer, "additional_special_tokens", []) or [])
    if extra:
        tokens["additional_special_tokens"] = [
            {"token": t, "id": tokenizer.convert_tokens_to_ids(t)} for t in extra
        ]
    return tokens, type(tokenizer).__name__, len(tokenizer)


def _quantization(spec: Any) -> dict[str, Any] | None:
    """A quantized checkpoint's mode and how many projections hold int8 and int4 weights."""
    if spec is None:
        return None
    counts = {f"int{bits}": sum(1 for b in spec.modules.values() if b == bits) for bits in (8, 4)}
    return {"mode": spec.mode, "group_size": spec.to_json()["group_size"], "projections": counts}


def summarize(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint directory at a glance (the fields of ``xcli info``).

    A directory without weight files (a config and tokenizer, as the built-in demo models) is
    described too: ``has_weights`` is false, ``weights`` None, ``parameters`` what config.json
    describes, and ``commands`` only ``tokenize``. Raises ``CheckpointError`` when config.json is
    missing, names another model type or a class xcli lacks, holds a bad value or a model too large
    for this machine's memory even in bfloat16, or when a weight file is unreadable.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory")
    family, data = family_of(directory)
    cls = model_class(directory)
    config = checked_config(cls, directory, torch.bfloat16)  # the least memory any command loads it in
    names = architectures(directory, data)

    files = weight_files(directory) if has_weight_files(directory) else []
    weights: dict[str, Any] | None = None
    dtypes: dict[str, int] = {}
    model = build_on_meta(cls, config, directory)
    parameters = model.num_parameters()
    spec = spec_of(config, str(directory / "config.json"))
    if files:
        state = read_weights(directory)
        tied = tied_in_checkpoint(model, set(state))
        if spec is not None:  # a quantized head is its own copy, not its embedding
            tied = {k: v for k, v in tied.items() if k not in spec.modules}
            check_tensors(aligned_names(model, state), spec, projections(model), str(directory))
        for name, tensor in state.items():
            if name not in tied:
                key = str(tensor.dtype).removeprefix("torch.")
                dtypes[key] = dtypes.get(key, 0) + tensor.numel()
        weights = {
            "format": "safetensors" if files[0].suffix == ".safetensors" else "bin",
            "files": [f.name for f in files],
            "shards": len(files),
            "tensors": len(state) - len(tied),
            "bytes": sum(f.stat().st_size for f in files),
        }
        del state

    special, tokenizer_class, tokenizer_size = _special_tokens(directory, config)
    labelled = any(capabilities(a).classify in _LABELLED for a in names)
    default_labels = [f"LABEL_{i}" for i in range(config.num_labels)]
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    commands = checkpoint_commands(names, tokenizer=tokenizer_class is not None, weights=bool(files),
                                   bits=spec.bits if spec is not None else None)
    lang2id = getattr(config, "lang2id", None)
    max_positions = getattr(config, "max_position_embeddings", None)
    return {
        "path": str(directory),
        "family": family.name,
        "model_type": data.get("model_type"),
        "architectures": names,
        "model_class": cls.__name__,
        "commands": commands,
        "parameters": parameters,
        "dtypes": dtypes,
        "config_dtype": data.get("dtype") or data.get("torch_dtype"),
        "quantization": _quantization(spec),
        "has_weights": bool(files),
        "weights": weights,
        "size_on_disk": directory_size(directory),
        "vocab_size": getattr(config, "vocab_size", None),
        "tokenizer": tokenizer_class,
        "tokenizer_vocab_size": tokenizer_size,
        "special_tokens": special,
        "labels": labels if labelled or labels != default_labels else None,
        "languages": dict(lang2id) if isinstance(lang2id, dict) and lang2id else None,
        "max_positions": max_positions if isinstance(max_positions, int) else None,
        "relative_positions": any(capabilities(a).relative_positions for a in names),
        "hidden_size": getattr(config, "hidden_size", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "attention_heads": getattr(config, "num_attention_heads", None),
    }
