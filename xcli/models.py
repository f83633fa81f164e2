"""From ``--model`` to a checkpoint directory and its family, without importing torch.

``--model`` (or ``XCLI_MODEL``) may name, tried in this order:

1. a checkpoint directory (``./my-model``, ``~/ckpt``);
2. a Hugging Face id (``org/name``, or a bare ``name``) found in the local Hugging Face cache:
   ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
   ``~/.cache/huggingface/hub``; the snapshot ``refs/main`` points to, else the newest one;
3. a built-in demo model shipped in ``xcli_models/data/builtin/<org>/<name>`` (``xlnet/xlnet-base-cased``,
   or just ``xlnet-base-cased``).

The family is read from the directory's ``config.json`` (``model_type``), never guessed
from a name. Nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError, XcliError
from .invocation import current, served


@dataclass(frozen=True)
class ResolvedModel:
    """Where a ``--model`` value led."""

    #: what the user wrote
    spec: str
    path: Path
    #: "directory", "cache" or "builtin"
    origin: str
    #: config.json's model_type, or None when the directory has no config.json
    model_type: str | None

    @property
    def family(self) -> Any:
        """The :class:`xcli_models.registry.Family` of this checkpoint, or None without config.json."""
        if self.model_type is None:
            return None
        from xcli_models.registry import family_for

        return family_for(self.model_type)

    def config(self) -> dict[str, Any]:
        return _read_config(self.path) or {}


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` finds it (in the caller's
    environment: see :mod:`xcli.invocation`)."""
    caller = current()
    env = caller.env
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return caller.path(env[name])
    if env.get("HF_HOME"):
        return caller.path(env["HF_HOME"]) / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = caller.path(xdg) if xdg else caller.path("~") / ".cache"
    return base / "huggingface" / "hub"


def builtin_root() -> Path:
    """Where the built-in demo models live (inside the xcli_models package)."""
    import xcli_models  # light: its names are imported lazily

    return Path(xcli_models.__file__).resolve().parent / "data" / "builtin"


def builtin_models() -> list[str]:
    """The built-in model names, ``org/name``."""
    root = builtin_root()
    if not root.is_dir():
        return []
    return sorted(
        f"{org.name}/{model.name}"
        for org in root.iterdir()
        if org.is_dir()
        for model in org.iterdir()
        if model.is_dir() and not model.name.startswith((".", "_"))
    )


def cached_models(cache: Path | None = None) -> list[str]:
    """The model ids the hub cache holds (its ``models--ORG--NAME`` folders), sorted."""
    cache = cache or hub_cache()
    try:
        names = [p.name for p in cache.iterdir() if p.name.startswith("models--") and p.is_dir()]
    except OSError:
        return []
    return sorted("/".join(name.split("--")[1:]) for name in names if name != "models--")


def find_in_cache(model_id: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder of ``model_id`` in the hub cache, or None."""
    cache = cache or hub_cache()
    repo = cache / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit
    candidates = [p for p in snapshots.iterdir() if p.is_dir()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime)


def find_builtin(name: str) -> Path | None:
    """A built-in model by ``org/name``, or by its bare ``name`` when that is unambiguous."""
    root = builtin_root()
    if "/" in name:
        path = root / name
        return path if path.is_dir() and name in builtin_models() else None
    matches = [m for m in builtin_models() if m.split("/", 1)[1] == name]
    return root / matches[0] if len(matches) == 1 else None


def _looks_like_id(spec: str) -> bool:
    parts = spec.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not spec.startswith((".", "~")) and "\\" not in spec


#: the built-in model a command uses without ``--model`` and ``XCLI_MODEL``
DEFAULT_MODELS = {
    "classify": "xcli/sentiment",
    "fill-mask": "xcli/fill-mask",
    "generate": "xcli/shakespeare",
    "score": "xcli/shakespeare",
}


def resolve_model(spec: str | None = None, command: str | None = None) -> ResolvedModel:
    """Resolve ``--model`` (``None`` falls back to ``XCLI_MODEL``, then to ``command``'s built-in
    model, said once on stderr); a missing model is a usage error."""
    resolved = _resolve(spec, command)
    hooks = served()
    if hooks is not None:
        hooks.seen(resolved.path)
    return resolved


def _resolve(spec: str | None, command: str | None) -> ResolvedModel:
    caller = current()
    spec = spec or caller.env.get("XCLI_MODEL") or None
    default = DEFAULT_MODELS.get(command or "")
    builtin = find_builtin(default) if not spec and default is not None else None
    if builtin is not None:
        from .console import console

        console.note(f"using the built-in model {default} (demo quality; choose another with -m or XCLI_MODEL)")
        return ResolvedModel(default, builtin, "builtin", _model_type(builtin))
    if not spec:
        raise UsageError(
            "no model given",
            "pass --model DIR|ORG/NAME|BUILTIN or set XCLI_MODEL (built-in models: "
            + (", ".join(builtin_models()) or "none") + ")",
        )
    path = caller.path(spec)
    if path.is_dir():
        return ResolvedModel(spec, path.resolve(), "directory", _model_type(path))
    if path.exists():
        raise UsageError(f"--model {spec}: not a directory", "pass the checkpoint folder, not a file in it")
    if _looks_like_id(spec):
        cached = find_in_cache(spec)
        if cached is not None:
            return ResolvedModel(spec, cached, "cache", _model_type(cached))
        builtin = find_builtin(spec)
        if builtin is not None:
            return ResolvedModel(spec, builtin, "builtin", _model_type(builtin))
    known = ", ".join(builtin_models()) or "none"
    download = f"download it with `huggingface-cli download {spec}` or " if _looks_like_id(spec) and "/" in spec else ""
    raise UsageError(
        f"model {spec!r} not found (not a directory, not in the Hugging Face cache at {hub_cache()}, not built in)",
        f"{download}pass a checkpoint directory (built-in models: {known})",
    )


def _read_config(path: Path) -> dict[str, Any] | None:
    """config.json as a dict; None when there is none. Read with the model core's careful reader
    (no device, pipe or huge file is read); an unreadable one stops the run."""
    from xcli_models.config import ConfigError, read_config_json

    if not os.path.lexists(path / "config.json"):
        return None
    try:
        return read_config_json(path)
    except ConfigError as exc:
        raise XcliError(f"cannot load the checkpoint: {exc}") from None


def _model_type(path: Path) -> str | None:
    config = _read_config(path)
    if config is None:
        return None
    model_type = config.get("model_type")
    from xcli_models.registry import FAMILIES

    if not isinstance(model_type, str) or model_type not in FAMILIES:
        from xcli_models.config import show_value

        raise UsageError(
            f"{path / 'config.json'}: model_type {show_value(model_type)} is not one xcli runs",
            "supported: " + ", ".join(sorted(FAMILIES)),
        )
    return model_type
