"""Model configuration: a family's config.json fields as attributes.

Each family's config class lists its documented fields with their defaults in
``defaults`` and its aliases (``hidden_size`` -> ``emb_dim`` ...) in
``aliases``. Keys we do not know are kept and written back on save, so a
config survives a round trip through xcli unchanged. No torch here.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, ClassVar

#: fields every Hugging Face config carries, with the reference defaults
COMMON_DEFAULTS: dict[str, Any] = {
    "architectures": None,
    "problem_type": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "output_attentions": False,
    "output_hidden_states": False,
    "return_dict": True,
    "use_cache": True,
    "torch_dtype": None,
    "finetuning_task": None,
    "task_specific_params": None,
    "prefix": None,
}


class ConfigError(ValueError):
    """config.json is missing, unreadable, or names another model type."""


class Config:
    """Base of the family configs (``XLMConfig``, ``XGLMConfig`` ...)."""

    model_type: ClassVar[str] = ""
    #: documented fields of the family and their defaults
    defaults: ClassVar[dict[str, Any]] = {}
    #: alias -> field, e.g. {"hidden_size": "d_model"}
    aliases: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        kwargs.pop("model_type", None)
        values = {**COMMON_DEFAULTS, **copy.deepcopy(self.defaults)}
        for key, value in kwargs.items():
            values[self.aliases.get(key, key)] = value
        for key, value in values.items():
            object.__setattr__(self, key, value)
        if id2label is not None:
            self.id2label = {int(k): str(v) for k, v in dict(id2label).items()}
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels if num_labels is not None else 2)}
        if num_labels is not None and num_labels != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        self.label2id = {str(k): int(v) for k, v in label2id.items()} if label2id else {
            v: k for k, v in self.id2label.items()
        }

    # aliases read and write the field they stand for
    def __getattr__(self, name: str) -> Any:
        target = type(self).aliases.get(name)
        if target is not None:
            return getattr(self, target)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, type(self).aliases.get(name, name), value)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        self.id2label = {i: f"LABEL_{i}" for i in range(value)}
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict)

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "Config":
        return cls(**{**data, **overrides})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "Config":
        data = read_config_json(path)
        model_type = data.get("model_type")
        if cls.model_type and model_type not in (cls.model_type, *getattr(cls, "also_reads", ())):
            raise ConfigError(
                f"{path}: config.json has model_type {model_type!r}, not {cls.model_type!r}"
            )
        return cls.from_dict(data, **overrides)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "config.json"
        target.write_text(self.to_json_string(), encoding="utf-8")
        return target

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a checkpoint directory (or the file itself) as a dict."""
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    if not file.exists():
        raise ConfigError(f"{file.parent} has no config.json: is it a Hugging Face checkpoint directory?")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    return data
