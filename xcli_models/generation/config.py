"""Generation settings: the reference's ``GenerationConfig`` fields that xcli runs.

Where the values come from, highest priority first:

1. keyword arguments to ``generate`` (and an explicit ``generation_config``);
2. the checkpoint's ``generation_config.json`` when it has one, otherwise the
   generation fields of its ``config.json`` (``num_beams``, ``forced_eos_token_id``,
   the special token ids ...), as the reference reads a checkpoint;
3. the reference's global defaults (``max_length=20``, ``top_k=50`` ...).

``resolve_lengths`` turns ``max_new_tokens`` / ``min_new_tokens`` / the
default 20 new tokens into absolute ``max_length`` / ``min_length`` exactly as
the reference does, with one deliberate difference: a model without a
position limit (XLNet reports -1) is not capped at it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from ..config import read_json

logger = logging.getLogger("xcli_models")

GENERATION_CONFIG_NAME = "generation_config.json"

#: fields the reference knows but xcli does not run, with the value that leaves them off
UNSUPPORTED: dict[str, Any] = {
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "penalty_alpha": None,
    "constraints": None,
    "force_words_ids": None,
    "guidance_scale": None,
    "sequence_bias": None,
    "encoder_repetition_penalty": 1.0,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "min_p": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "max_time": None,
    "watermarking_config": None,
    "prompt_lookup_num_tokens": None,
    "assistant_early_exit": None,
    "token_healing": False,
    "prefill_chunk_size": None,
}

#: keys of a generation_config.json that carry no setting
_METADATA = {"transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash"}


@dataclass
class GenerationConfig:
    """How to generate (the reference's field names and defaults)."""

    # lengths (absolute lengths count the prompt of decoder-only models, the decoder start token of
    # encoder-decoder models)
    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    # strategy
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    early_stopping: bool | str = False
    length_penalty: float = 1.0
    use_cache: bool = True
    # sampling filters (applied in this order after the processors below, when sampling)
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    typical_p: float | None = 1.0
    # logits processors
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    bad_words_ids: list[list[int]] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    # stopping
    stop_strings: str | list[str] | None = None
    # special tokens
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | list[int] | None = None
    # outputs
    output_scores: bool = False
    return_dict_in_generate: bool = False
    #: reference fields xcli does not run, when set to something other than "off"
    unsupported: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ building
    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)} - {"unsupported"}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = False) -> "GenerationConfig":
        """Known fields from ``data``; unknown keys are ignored, unsupported ones kept aside
        (``strict``: an unsupported setting is a ``ValueError``)."""
        config = cls()
        return config.updated(data, strict=strict)

    def updated(self, values: dict[str, Any], *, strict: bool = True) -> "GenerationConfig":
        """A copy with ``values`` applied (see ``from_dict`` for ``strict``)."""
        known = self.field_names()
        out = replace(self, unsupported=dict(self.unsupported))
        for key, value in values.items():
            if key in known:
                setattr(out, key, copy.deepcopy(value))
            elif key in UNSUPPORTED:
                if value == UNSUPPORTED[key] or value is None:
                    out.unsupported.pop(key, None)
                elif strict:
                    raise ValueError(f"generation option {key!r} is not supported by xcli")
                else:
                    out.unsupported[key] = value
        return out

    @classmethod
    def from_model_config(cls, config: Any) -> "GenerationConfig":
        """The generation fields a model's config.json carries (None values left at the defaults)."""
        names = cls.field_names() | set(UNSUPPORTED)
        values = {}
        for name in sorted(names):
            try:
                value = getattr(config, name)
            except AttributeError:
                continue
            if value is not None:
                values[name] = value
        return cls.from_dict(values)

    @classmethod
    def from_pretrained(cls, path: str | Path, model_config: Any = None) -> "GenerationConfig":
        """A checkpoint's defaults: its generation_config.json, else its config's generation fields."""
        file = Path(path)
        if file.is_dir():
            file = file / GENERATION_CONFIG_NAME
        if os.path.lexists(file):
            data = read_json(file)  # a ConfigError (a ValueError) for a device, a huge file, bad JSON
            if not isinstance(data, dict):
                raise ValueError(f"{file} must hold a JSON object")
            return cls.from_dict({k: v for k, v in data.items() if k not in _METADATA})
        if model_config is None:
            return cls()
        return cls.from_model_config(model_config)

    def to_dict(self) -> dict[str, Any]:
        """The settings that differ from the defaults, with the tokens, as generation_config.json holds them."""
        default = GenerationConfig()
        out = {}
        for name in sorted(self.field_names()):
            value = getattr(self, name)
            if value != getattr(default, name) or name.endswith("token_id") and value is not None:
                out[name] = copy.deepcopy(value)
        out.update(copy.deepcopy(self.unsupported))
        return out

    def save_pretrained(self, directory: str | Path) -> Path:
        target = Path(directory) / GENERATION_CONFIG_NAME
        target.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return target

    # ----------------------------------------------------------- queries
    @property
    def eos_ids(self) -> list[int]:
        return _id_list(self.eos_token_id)

    @property
    def stop_string_list(self) -> list[str]:
        if self.stop_strings is None:
            return []
        return [self.stop_strings] if isinstance(self.stop_strings, str) else list(self.stop_strings)

    @property
    def effective_pad_token_id(self) -> int | None:
        """The token finished rows are filled with: pad, else the first EOS (the reference's rule)."""
        if self.pad_token_id is not None:
            return int(self.pad_token_id)
        eos = self.eos_ids
        return eos[0] if eos else None

    @property
    def expand_size(self) -> int:
        return max(self.num_beams, self.num_return_sequences)

    def validate(self) -> None:
        """Refuse settings that cannot work (one-line messages naming the option)."""
        if self.unsupported:
            names = ", ".join(sorted(self.unsupported))
            raise ValueError(f"generation option(s) not supported by xcli: {names}")
        _positive_int(self.num_beams, "num_beams")
        _positive_int(self.num_return_sequences, "num_return_sequences")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError(
                "greedy search returns one sequence: num_return_sequences > 1 needs num_beams > 1 or sampling"
            )
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) must not exceed num_beams "
                             f"({self.num_beams})")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be true, false or \"never\", not {self.early_stopping!r}")
        for name in ("max_new_tokens", "min_new_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if self.max_new_tokens == 0:
            raise ValueError("max_new_tokens must be at least 1")
        if self.do_sample:
            if not self.temperature or self.temperature <= 0:
                raise ValueError(f"temperature must be > 0 when sampling, not {self.temperature!r} "
                                 "(use greedy decoding instead of temperature 0)")
            if self.top_k is not None and self.top_k < 0:
                raise ValueError(f"top_k must be >= 0, not {self.top_k}")
            for name in ("top_p", "typical_p"):
                value = getattr(self, name)
                if value is not None and not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, not {self.repetition_penalty}")
        for name in ("no_repeat_ngram_size", "encoder_no_repeat_ngram_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        if self.bad_words_ids is not None:
            ok = isinstance(self.bad_words_ids, list) and self.bad_words_ids and all(
                isinstance(seq, list) and seq and all(isinstance(t, int) and t >= 0 for t in seq)
                for seq in self.bad_words_ids
            )
            if not ok:
                raise ValueError("bad_words_ids must be a non-empty list of non-empty lists of token ids")

    def resolve_lengths(
        self, input_length: int, max_positions: int | None, *, max_length_given: bool
    ) -> "GenerationConfig":
        """Absolute ``max_length`` / ``min_length`` for a decoder input of ``input_length`` tokens.

        ``max_new_tokens`` wins over ``max_length``; with neither given explicitly and the
        default 20, generation makes 20 new tokens, capped at the model's position limit
        (when it has one). ``min_new_tokens`` likewise sets ``min_length``.
        """
        out = replace(self)
        if out.max_new_tokens is not None:
            out.max_length = out.max_new_tokens + input_length
        elif not max_length_given and out.max_length == GenerationConfig.max_length:
            out.max_length = out.max_length + input_length
            if max_positions is not None and max_positions > 0:
                out.max_length = min(out.max_length, max_positions)
        if out.min_new_tokens is not None:
            out.min_length = out.min_new_tokens + input_length
        if input_length >= out.max_length:
            raise ValueError(
                f"the input is {input_length} tokens but max_length is {out.max_length}: "
                "raise max_length or set max_new_tokens"
            )
        return out


def _positive_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _id_list(value: int | Sequence[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def model_defaults(model: Any) -> GenerationConfig:
    """The generation defaults of a loaded model (cached on it as ``generation_config``)."""
    cached = getattr(model, "generation_config", None)
    if isinstance(cached, GenerationConfig):
        return cached
    source = getattr(model, "name_or_path", None)
    if source and Path(source, GENERATION_CONFIG_NAME).is_file():
        defaults = GenerationConfig.from_pretrained(source)
    else:
        defaults = GenerationConfig.from_model_config(model.config)
    if defaults.unsupported:
        logger.warning("ignoring generation default(s) xcli does not run: %s", ", ".join(sorted(defaults.unsupported)))
        defaults.unsupported = {}
    try:
        model.generation_config = defaults
    except AttributeError:  # a model that does not take attributes: no caching
        pass
    return defaults
