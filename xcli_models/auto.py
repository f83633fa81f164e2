"""Pick a family's config and model class from a checkpoint's config.json.

The family comes from ``model_type`` and the class from ``architectures``
(or a head the caller asks for); a folder's name is never consulted.
:func:`model_class`, :func:`checked_config` and :func:`tied_in_checkpoint` are what both
``convert`` and ``info``'s summary ask of a checkpoint directory before reading its weights.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch

from .config import Config, ConfigError, config_file, show_value
from .loading import CheckpointError
from .modeling import PreTrainedModel, check_memory, config_dict
from .registry import FAMILIES, Family, load_object

__all__ = [
    "AutoConfig", "AutoModel", "CheckpointError", "architectures", "base_class", "checked_config", "config_of", "family_of",
    "model_class", "model_classes", "tied_in_checkpoint",
]


def family_of(path: str | os.PathLike) -> tuple[Family, dict[str, Any]]:
    data = config_dict(path)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise CheckpointError(f"{path}: model_type {show_value(model_type)} is not one xcli runs ({known})")
    return FAMILIES[model_type], data


def architectures(path: str | os.PathLike, data: dict[str, Any]) -> list[str]:
    """config.json's ``architectures``: class names (none when absent)."""
    names = data.get("architectures")
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(
            f"{config_file(path)}: architectures must be a list of class names, not {show_value(names)}"
        )
    return names


def config_of(path: str | os.PathLike, cls: type[Config] | None = None) -> Config:
    """The checkpoint's config (of class ``cls``, else its family's), checked; a ``CheckpointError``
    naming config.json and the field when a value is wrong."""
    family, data = family_of(path)
    try:
        return (cls or load_object(family.config)).from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{config_file(path)}: {exc}") from None


def model_classes(family: Family) -> dict[str, type[PreTrainedModel]]:
    """Every model class of a family by name."""
    module = importlib.import_module(family.models)
    return {
        name: obj for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, PreTrainedModel) and obj.__module__ == module.__name__
        and not name.endswith("PreTrainedModel")
    }


class AutoConfig:
    @staticmethod
    def from_pretrained(path: str | os.PathLike, **overrides: Any) -> Config:
        family, data = family_of(path)
        try:
            return load_object(family.config).from_dict(data, **overrides)
        except ConfigError as exc:
            raise CheckpointError(f"{config_file(path)}: {exc}") from None


class AutoModel:
    @staticmethod
    def class_for(path: str | os.PathLike, class_name: str | None = None) -> type[PreTrainedModel]:
        """The class named by ``class_name``, else by config.json's ``architectures``."""
        family, data = family_of(path)
        classes = model_classes(family)
        wanted = [class_name] if class_name else architectures(path, data)
        for name in wanted:
            if name in classes:
                return classes[name]
        if class_name:
            raise CheckpointError(f"{path}: {family.name} has no class {class_name!r}")
        names = ", ".join(wanted) or "none"
        raise CheckpointError(f"{path}: config.json architectures ({names}) name no {family.name} class xcli has")

    @staticmethod
    def from_pretrained(path: str | os.PathLike, class_name: str | None = None, **kwargs: Any) -> PreTrainedModel:
        return AutoModel.class_for(path, class_name).from_pretrained(path, **kwargs)


# ---------------------------------------------------- the class and config of a checkpoint directory
def base_class(family: Family, model_type: str) -> type[PreTrainedModel]:
    """The family's base model (``XLMModel``, ``MvpModel`` ...) for this model_type."""
    candidates = [
        cls for name, cls in model_classes(family).items()
        if name.endswith("Model") and "Head" not in name and cls.config_class.model_type == model_type
    ]
    if not candidates:
        raise CheckpointError(f"{family.name} has no base model class for model_type {model_type!r}")
    return min(candidates, key=lambda cls: len(cls.__name__))


def model_class(path: str | os.PathLike) -> type[PreTrainedModel]:
    """The class config.json's ``architectures`` names, else (none named) the family's base model."""
    family, data = family_of(path)
    names = architectures(path, data)
    if not names:
        return base_class(family, data["model_type"])
    return AutoModel.class_for(path)


def checked_config(cls: type[PreTrainedModel], path: Path, dtype: torch.dtype | None = None) -> Config:
    """The checkpoint's config, checked, and refused when its model would not fit in memory in ``dtype``."""
    config = config_of(path, cls.config_class)
    if dtype is not None:
        check_memory(config, dtype, path)
    return config


def tied_in_checkpoint(model: PreTrainedModel, names: set[str]) -> dict[str, str]:
    """Checkpoint names (Hugging Face) of weights tied to another stored weight: ``{tied: source}``.

    Both names must be stored; names without the base-model prefix (a base checkpoint) count too.
    """
    if not model.ties_active():
        return {}
    prefix = model.base_model_prefix + "." if model.base_model_prefix else None
    out: dict[str, str] = {}
    for target, source in model.tied_weights.items():
        pair = (model.names.to_hf(target), model.names.to_hf(source))
        variants = [pair]
        if prefix:
            variants.append(tuple(n.removeprefix(prefix) for n in pair))
        for tied, kept in variants:
            if tied in names and kept in names and tied != kept:
                out[tied] = kept
                break
    return out
