"""Model configuration: a family's config.json fields as attributes.

Each family's config class lists its documented fields once, in ``fields``: each
with its kind, its reference default and the other name config.json may give it
(``Field``: ``hidden_size`` for XLM's ``emb_dim`` ...), or, for a common field
(``COMMON_KINDS``), just the family's default; ``defaults``, ``kinds`` and ``aliases``
are read from it. Keys we do not know are kept and written back on save, so a
config survives a round trip through xcli unchanged. No torch here.

A config is checked before anything is built from it: when it is made, each
field named in ``kinds`` must hold a value of its kind (a size is a whole
number of at least 1, never a float, a string or a bool; a rate is a finite
number from 0 to 1 ...); when it comes from a checkpoint (``from_dict``) or a
model is built, the family's rules over several fields hold too (``d_model``
divisible by the number of heads ...). Anything else is a one-line
``ConfigError`` naming the field. ``check_memory`` refuses a model
whose estimated size (``parameter_estimate``, from the config alone) exceeds
the memory the machine has left. Checkpoint JSON files are read through
:func:`read_json`, which refuses devices, pipes and files over
``MAX_JSON_BYTES``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

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


#: kinds of the common fields (see ``KINDS``)
COMMON_KINDS: dict[str, str] = {
    "architectures": "names",
    "problem_type": "text?",
    "pad_token_id": "token",
    "bos_token_id": "token",
    "eos_token_id": "tokens",
    "sep_token_id": "token",
    "decoder_start_token_id": "token",
    "tie_word_embeddings": "flag",
    "is_encoder_decoder": "flag",
    "is_decoder": "flag",
    "add_cross_attention": "flag",
    "output_attentions": "flag",
    "output_hidden_states": "flag",
    "return_dict": "flag",
    "use_cache": "flag",
    "torch_dtype": "text?",
    "dtype": "text?",
}

#: the most layers one stack may have (the largest published models have about a hundred;
#: building a model takes time in proportion to its layers, whatever their size)
MAX_LAYERS = 1024
#: the most labels a classifier may have
MAX_LABELS = 1_000_000
#: the largest JSON file of a checkpoint that is read (config.json, a shard index ...): real ones are kilobytes
MAX_JSON_BYTES = 16 * 2**20
#: the largest vocabulary file read (a 250k-piece vocabulary with merges is ~10-20 MB)
MAX_VOCAB_BYTES = 512 * 2**20


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _token(value: Any) -> bool:
    return value is None or _whole(value) and value >= 0


#: kind -> (test, what a value of the kind is); "?" kinds also take null
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "size": (lambda v: _whole(v) and v >= 1, "a whole number of at least 1"),
    "layers": (lambda v: _whole(v) and 0 <= v <= MAX_LAYERS, f"a whole number from 0 to {MAX_LAYERS}"),
    "count": (lambda v: _whole(v) and v >= 0, "a whole number of at least 0"),
    "count?": (lambda v: v is None or _whole(v) and v >= 0, "a whole number of at least 0, or null"),
    "int": (_whole, "a whole number"),
    "token": (_token, "a token id (a whole number of at least 0) or null"),
    "tokens": (lambda v: _token(v) or isinstance(v, list) and bool(v) and all(_token(t) and t is not None for t in v),
               "a token id (a whole number of at least 0), a list of them, or null"),
    "rate": (lambda v: _finite(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "scale": (lambda v: _finite(v) and v >= 0, "a finite number of at least 0"),
    "scale?": (lambda v: v is None or _finite(v) and v > 0, "a finite number above 0, or null"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "text?": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "names": (lambda v: v is None or isinstance(v, list) and all(isinstance(n, str) for n in v),
              "a list of class names or null"),
    "ints?": (lambda v: v is None or isinstance(v, list) and all(_whole(n) and n > 0 for n in v),
              "a list of whole numbers above 0, or null"),
    "object?": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
}


#: a field without a reference default: checked when config.json has it, absent otherwise
NO_DEFAULT: Any = object()


class Field(NamedTuple):
    """A documented field of a family's config: its kind (a key of ``KINDS``), its reference
    default (``NO_DEFAULT``: none), the other name the reference reads and writes it by (its
    ``attribute_map``: ``hidden_size``, ``num_attention_heads`` ...), and the rules it keeps
    with another field, checked by ``Config.check_fields``: ``divides`` (a head count divides
    the hidden size), ``below`` (a token id indexes a table of that many rows)."""

    kind: str
    default: Any = NO_DEFAULT
    alias: str = ""
    divides: str = ""
    below: str = ""


class ConfigError(ValueError):
    """config.json is missing or unreadable, names another model type, or holds a value no model
    can be built from (each message one line, naming the field)."""


class Config:
    """Base of the family configs (``XLMConfig``, ``XGLMConfig`` ...)."""

    model_type: ClassVar[str] = ""
    #: the family's documented fields, in the reference's order: field -> ``Field(kind, default)``,
    #: or for a common field (its kind in ``COMMON_KINDS``) the family's default alone
    fields: ClassVar[dict[str, Any]] = {}
    #: documented fields of the family and their defaults (from ``fields``)
    defaults: ClassVar[dict[str, Any]] = {}
    #: alias -> field, e.g. {"hidden_size": "d_model"} (from ``fields``)
    aliases: ClassVar[dict[str, str]] = {}
    #: field -> its kind (a key of ``KINDS``), checked when present (from ``fields``; the common
    #: fields' come from ``COMMON_KINDS``)
    kinds: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fields" not in cls.__dict__:
            return
        cls.defaults, cls.kinds, cls.aliases = {}, {}, {}
        for name, field in cls.fields.items():
            if not isinstance(field, Field):
                if name not in COMMON_KINDS:
                    raise TypeError(f"{cls.__name__}.fields[{name!r}]: a family's own field is a Field(kind, default)")
                field = Field(COMMON_KINDS[name], field)
            if name not in COMMON_KINDS:
                cls.kinds[name] = field.kind
            elif field.kind != COMMON_KINDS[name]:
                raise TypeError(f"{cls.__name__}.fields[{name!r}]: a common field, of kind {COMMON_KINDS[name]!r}")
            if field.alias:
                cls.aliases[field.alias] = name
            if field.default is not NO_DEFAULT:
                cls.defaults[name] = field.default

    def __init__(self, **kwargs: Any) -> None:
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        kwargs.pop("model_type", None)
        values = {**COMMON_DEFAULTS, **copy.deepcopy(self.defaults)}
        given: dict[str, str] = {}  # field -> the key config.json named it by (an alias, maybe)
        for key, value in kwargs.items():
            field = self.aliases.get(key, key)
            values[field] = value
            given[field] = key
        for key, value in values.items():
            self._set_field(key, value)
        self._set_labels(id2label, label2id, num_labels)
        self.validate(given)

    def _set_field(self, key: str, value: Any) -> None:
        """Set one field; a key that names something else of the class (a method, ``__class__``) is refused."""
        attribute = getattr(type(self), key, None)
        if isinstance(attribute, property) and attribute.fset is not None:
            try:
                setattr(self, key, value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{key}: {exc}") from None
        elif key.startswith("__") or attribute is not None:
            raise ConfigError(f"{key!r} cannot be a field of a {type(self).__name__}: the name is taken")
        else:
            object.__setattr__(self, key, value)

    def _set_labels(self, id2label: Any, label2id: Any, num_labels: Any) -> None:
        if num_labels is not None and not (_whole(num_labels) and 0 <= num_labels <= MAX_LABELS):
            raise ConfigError(
                f"num_labels must be a whole number from 0 to {MAX_LABELS:,}, not {show_value(num_labels)}"
            )
        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a JSON object (label id -> name), not {show_value(id2label)}")
            try:
                self.id2label = {int(k): str(v) for k, v in id2label.items()}
            except ValueError:
                keys = show_value(list(id2label))
                raise ConfigError(f"id2label keys must be label ids (0, 1, ...), not {keys}") from None
            if sorted(self.id2label) != list(range(len(self.id2label))):
                raise ConfigError(f"id2label must number its labels 0 to {len(self.id2label) - 1}, "
                                  f"not {show_value(sorted(self.id2label))}")
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels if num_labels is not None else 2)}
        if num_labels is not None and num_labels != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        if label2id:
            if not isinstance(label2id, dict) or not all(_whole(v) for v in label2id.values()):
                raise ConfigError(f"label2id must be a JSON object (label name -> id), not {show_value(label2id)}")
            self.label2id = {str(k): v for k, v in label2id.items()}
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}

    # ------------------------------------------------------------- checks
    def validate(self, given: Mapping[str, str] | None = None) -> None:
        """Check every field of a known kind (done when a config is made).

        ``given`` maps a field to the key config.json named it by, for the message.
        """
        given = given or {}
        values = vars(self)
        for field, kind in {**COMMON_KINDS, **self.kinds}.items():
            if field in values:
                test, what = KINDS[kind]
                if not test(values[field]):
                    raise ConfigError(f"{given.get(field, field)} must be {what}, not {show_value(values[field])}")

    def check_fields(self) -> None:
        """The family's rules over several fields (heads dividing the hidden size ...); ``ConfigError`` if broken.

        Checked by :meth:`from_dict` (so for every checkpoint's config) and before a model is built,
        not when a config is made: as in the reference, fields may be set one by one. Here: the
        rules the ``fields`` declare, in their order; a family with more adds them after these.
        """
        for name, field in self.fields.items():
            if isinstance(field, Field) and field.divides:
                self._divisible(field.divides, name)
            if isinstance(field, Field) and field.below:
                self._below(name, field.below)

    def _divisible(self, field: str, by: str) -> None:
        value, divisor = getattr(self, field), getattr(self, by)
        if value % divisor:
            raise ConfigError(f"{field} ({value}) must be a multiple of {by} ({divisor})")

    def _below(self, field: str, limit: str, *, slack: int = 0) -> None:
        """``field`` (a token id, or null) indexes a table of ``limit`` (+ ``slack``) rows."""
        value, rows = getattr(self, field), getattr(self, limit) + slack
        if value is not None and value >= rows:
            more = f" + {slack}" if slack else ""
            raise ConfigError(f"{field} ({value}) must be below {limit}{more} ({rows})")

    # ------------------------------------------------------------- positions
    def position_limit(self) -> int | None:
        """The most tokens a sequence may have: what the position embeddings can place
        (``max_position_embeddings``; XLM's fixed sinusoidal table, MVP's learned one whose 2 extra
        rows, the BART offset, no position reads, XGLM's table that would grow but was never trained
        longer). None without a usable value. Families whose positions work otherwise override it."""
        positions = getattr(self, "max_position_embeddings", None)
        if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1:
            return None
        return positions

    # ------------------------------------------------------------- size
    def parameter_estimate(self) -> int:
        """About how many numbers the model of this config holds (parameters and fixed buffers),
        from the config alone: nothing is built. The families override this."""
        return 0

    def _head_estimate(self, dim: int, vocab: int, tied: bool = True) -> int:
        """What any head may add: an output layer (unless tied to the embeddings), its bias, and a
        few square layers and a classifier."""
        return (0 if tied else vocab * dim) + vocab + 5 * dim * dim + 8 * dim + (dim + 1) * self.num_labels

    def check_memory(self, itemsize: int = 4, dtype: str = "float32") -> None:
        """Refuse (``ConfigError``) a model whose estimated size in ``dtype`` (``itemsize`` bytes a
        number) exceeds the memory available, naming the field that makes it so large."""
        available = available_memory()
        total = self.parameter_estimate()
        if available is None or total * itemsize <= available:
            return
        culprit = ""
        sizes = [f for f, kind in self.kinds.items() if kind in ("size", "layers") and f in self.defaults]
        smallest = total
        for field in sizes:
            trial = copy.copy(self)
            object.__setattr__(trial, field, self.defaults[field])
            estimate = trial.parameter_estimate()
            if estimate < smallest:
                smallest, culprit = estimate, f"{field} {getattr(self, field)}: "
        raise ConfigError(
            f"{culprit}the model would hold about {_magnitude(total)} parameters, {_bytes(total * itemsize)} "
            f"in {dtype}, more than the {_bytes(available)} of memory available"
        )

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
        """The config of a checkpoint's config.json (as a dict), every field and rule checked."""
        config = cls(**{**data, **overrides})
        config.check_fields()
        return config

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "Config":
        data = read_config_json(path)
        model_type = data.get("model_type")
        if cls.model_type and model_type not in (cls.model_type, *getattr(cls, "also_reads", ())):
            raise ConfigError(
                f"{path}: config.json has model_type {show_value(model_type)}, not {cls.model_type!r}"
            )
        try:
            return cls.from_dict(data, **overrides)
        except ConfigError as exc:
            raise ConfigError(f"{config_file(path)}: {exc}") from None

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


def config_file(path: str | os.PathLike) -> Path:
    """The config.json of a checkpoint directory (or the file itself)."""
    file = Path(path)
    return file / "config.json" if file.is_dir() else file


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a checkpoint directory (or the file itself) as a dict."""
    file = config_file(path)
    if not os.path.lexists(file):
        raise ConfigError(f"{file.parent} has no config.json: is it a Hugging Face checkpoint directory?")
    data = read_json(file)
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a JSON object, not {show_value(data)}")
    return data


def read_json(file: str | os.PathLike, *, limit: int = MAX_JSON_BYTES, kind: str = "JSON file") -> Any:
    """A JSON file of a checkpoint (config.json, generation_config.json, a shard index ...), read with care.

    Read by :func:`read_bytes` (a regular file of at most ``limit`` bytes); raises ``ConfigError``
    saying which file and why, in one line.
    """
    path = Path(file)
    raw = read_bytes(path, limit=limit, kind=kind)
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"{path} is not valid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {_one_line(str(exc))}") from None


def read_bytes(file: str | os.PathLike, *, limit: int = MAX_JSON_BYTES, kind: str = "JSON file") -> bytes:
    """The bytes of a checkpoint's file, which must be a regular file (a link to one is followed)
    of at most ``limit`` bytes: a device (a link to /dev/zero), a pipe, a directory or a huge file
    is refused (``ConfigError``) without reading it."""
    path = Path(file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a regular file but {file_kind(info.st_mode)}")
        raw = os.read(fd, limit + 1) if info.st_size <= limit else b""
        while raw and len(raw) <= limit and (more := os.read(fd, limit + 1 - len(raw))):
            raw += more
    finally:
        os.close(fd)
    if info.st_size > limit or len(raw) > limit:
        raise ConfigError(f"{path} is larger than the {_bytes(limit)} a checkpoint's {kind} may have")
    return raw


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is ("a directory", "a pipe" ...), from its ``st_mode``."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def available_memory() -> int | None:
    """Bytes of memory this process can still take: the kernel's MemAvailable, within the cgroup's
    limit when there is one; None when neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii"))
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def show_value(value: Any) -> str:
    """A config value for a message, short: a string quoted as Python does, anything else as JSON."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON, or an int too long to print
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _bytes(n: int) -> str:
    if n >= 1024**6:
        return f"{_magnitude(n // 1024**5)} PiB"
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _magnitude(n: int) -> str:
    """``n`` to three digits, for numbers of any size (``float`` overflows past 1e308)."""
    if n.bit_length() < 1000:
        return f"{n:.3g}"
    return f"10^{int((n.bit_length() - 1) * math.log10(2))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
