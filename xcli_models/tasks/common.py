"""What the task modules share: loading a task model, batching by length, padding, inference mode.

A task (fill-mask, classify, qa ...) works on a model, its tokenizer and plain Python records.
The pieces here keep that work fast and the same for every task:

* :func:`load` builds the model (class from config.json's ``architectures``) and its tokenizer,
  on a device and in a dtype (:func:`fast_dtype`: the one ``--dtype auto`` picks); :func:`set_threads`
  sets torch's CPU threads.
* :func:`require_head` turns "this checkpoint has no such head" into a one-line
  :class:`UnsupportedModel` naming what it has (the CLI makes that a usage error).
* :func:`position_limit` is the most tokens a sequence may have in a model (what its position
  embeddings can place), the one place that knows it per family; :func:`input_limit` is the
  length inputs are cut to by default (that limit, or :data:`RELATIVE_DEFAULT_LIMIT` where
  positions are relative) and refuses a longer one asked for.
* :func:`length_batches` / :func:`map_by_length` group items into batches of at most
  ``batch_size`` (longest first, so a batch that does not fit in memory fails at once; fewer than
  ``batch_size`` for inputs over :data:`FULL_BATCH_LENGTH` tokens, see :func:`batch_capacity`),
  run them, and hand the results back in input order. The task commands batch only items of one
  length (no padding at all); generation may batch similar lengths with padding.
* :func:`pad` / :func:`collate` build padded tensors on the tokenizer's padding side (XLNet pads
  on the left, the others on the right), with the attention mask and token type ids.
* :func:`inference` (:func:`xcli_models.kernels.inference`, the one context of the CLI's model
  calls, here batch-invariant) is ``torch.inference_mode`` (no autograd bookkeeping) with oneDNN
  matrix products. **Batch invariance**: with unpadded batches and these products, a record's
  numbers are the same bits whichever records share its batch, whatever ``--batch-size``,
  however a slow input splits the rounds, in any shard of a file, and in ``xcli serve`` where
  other clients' records join the batch;
  :func:`prefetched` runs the preparation of the next chunk in a thread while the model works on
  the current one (torch releases the GIL inside its kernels, so tokenisation overlaps).

Nothing here prints.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator, Sequence, TypeVar

import torch

from .. import kernels
from ..registry import capabilities

__all__ = [
    "FULL_BATCH_LENGTH", "RELATIVE_DEFAULT_LIMIT", "LengthLimitError", "TaskModel", "UnsupportedModel",
    "batch_capacity", "collate", "inference", "input_limit", "language", "length_batches", "length_limit", "load",
    "map_by_length", "pad", "pick_device", "position_limit", "prefetched", "require_head", "set_threads",
]

#: the tokens an input of a model without absolute positions (XLNet's relative attention) is cut
#: to by default: not a limit of the model but a bound on memory, since attention grows with the
#: square of the length (a longer ``max_length`` may be asked for)
RELATIVE_DEFAULT_LIMIT = 512
#: a batch of inputs up to this many tokens holds ``batch_size`` of them; longer ones share a batch
#: with fewer (see :func:`batch_capacity`)
FULL_BATCH_LENGTH = 512

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger("xcli_models")


class UnsupportedModel(ValueError):
    """The checkpoint cannot run this task (wrong family or head); the message names what it has."""


class LengthLimitError(ValueError):
    """A length asked for is more than the model's positions can place."""


# --------------------------------------------------------------------------- set-up
def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch's intra-op work (None: leave torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when available, else the CPU; otherwise the device named.

    CUDA without an index, in a process that torchrun started (``LOCAL_RANK`` set), is this
    process's own GPU ``cuda:LOCAL_RANK``, made the current device: ``torchrun --nproc-per-node N``
    then runs N processes on N GPUs, not all on the first."""
    name = str(getattr(name, "value", name) or "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnsupportedModel("--device cuda: no CUDA device is available (use --device cpu)")
    local = os.environ.get("LOCAL_RANK", "").strip()
    if name == "cuda" and local.isdigit():
        if int(local) >= torch.cuda.device_count():
            raise UnsupportedModel(f"LOCAL_RANK={local} (torchrun): this machine has {torch.cuda.device_count()} "
                                   "CUDA device(s); start at most that many processes per node")
        torch.cuda.set_device(int(local))
        return torch.device("cuda", int(local))
    return torch.device(name)


def fast_dtype(device: torch.device) -> str:
    """The dtype ``--dtype auto`` means on ``device``: bfloat16 where its products are fast in it
    (a CUDA device with bfloat16; a CPU with AVX-512 BF16 or AMX: :mod:`xcli_models.hardware`),
    else float32."""
    from ..hardware import fast_bfloat16

    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu":
        return "bfloat16" if fast_bfloat16() and torch.backends.mkldnn.is_available() else "float32"
    return "float32"


@dataclass
class TaskModel:
    """A loaded checkpoint: the model (eval mode), its tokenizer, and what they are."""

    model: Any
    tokenizer: Any
    #: config.json's model_type ("xlm", "xlnet", "mvp" ...)
    model_type: str
    #: the model class name ("XLNetForSequenceClassification" ...)
    class_name: str

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device


def load(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    accept: Callable[[str], bool] | None = None,
    what: str = "this task",
    weight_only: bool | None = None,
) -> TaskModel:
    """The checkpoint's model (class from config.json) and tokenizer, ready for inference.

    ``accept(class_name)`` says whether the checkpoint's class can run the task; when it
    cannot, :class:`UnsupportedModel` is raised before any weight is read. ``weight_only``:
    for a quantized checkpoint, which int8 layers (see ``PreTrainedModel.from_pretrained``).
    """
    from ..auto import AutoModel, family_of
    from ..tokenization import AutoTokenizer

    family, data = family_of(path)
    klass = AutoModel.class_for(path)
    if accept is not None:
        require_head(klass.__name__, accept, what, family.name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = klass.from_pretrained(path, dtype=dtype, device=pick_device(device), weight_only=weight_only)
    model.eval()
    return TaskModel(model, tokenizer, str(data.get("model_type")), klass.__name__)


def require_head(class_name: str, accept: Callable[[str], bool], what: str, family: str = "") -> None:
    """Raise :class:`UnsupportedModel` unless ``accept(class_name)``."""
    if not accept(class_name):
        owner = f" ({family})" if family else ""
        raise UnsupportedModel(f"the checkpoint holds {class_name}{owner}, which cannot do {what}")


def language(model: Any, tokenizer: Any, lang: str | None) -> int | None:
    """Apply ``lang`` (XLM) to ``tokenizer``; the id to pass as ``langs``, or None.

    One rule for every task: a tokenizer without languages refuses it (:class:`UnsupportedModel`),
    a language the tokenizer does not list is a ``TokenizerError`` naming those it has, and a model
    without language embeddings gets a warning (the language then only picks the tokenizer's rules,
    e.g. Moses for that language or Chinese word splitting).
    """
    if lang is None:
        return None
    name = type(model).__name__
    if not hasattr(tokenizer, "lang_id"):
        raise UnsupportedModel(f"lang applies to XLM models; {name} has no languages")
    if getattr(tokenizer, "lang2id", None) and lang not in tokenizer.lang2id:
        tokenizer.lang_id(lang)  # raises, naming the languages it has
    tokenizer.lang = lang
    config = model.config
    takes_langs = "langs" in capabilities(name).needs  # a head that declares it takes language ids (XLM)
    if takes_langs and getattr(config, "use_lang_emb", False) and getattr(config, "n_langs", 1) > 1:
        return tokenizer.lang_id(lang)
    logger.warning("%s has no language embeddings: lang %r only picks the tokenizer's rules for it", name, lang)
    return None


def position_limit(config: Any) -> int | None:
    """The most tokens a sequence may have in a model of ``config``: its family's rule
    (``Config.position_limit``: learned or fixed position tables, ProphetNet's offset, None for
    XLNet's relative positions; inputs then get :data:`RELATIVE_DEFAULT_LIMIT` by default, see
    :func:`input_limit`). A config without the method (not xcli's) has no known limit."""
    method = getattr(type(config), "position_limit", None)
    return config.position_limit() if callable(method) else None


def input_limit(model: Any, tokenizer: Any, max_length: int | None = None, *, option: str = "max_length") -> int:
    """The most tokens an input may have: ``max_length`` when given, else the model's own limit.

    The default is :func:`position_limit` (:data:`RELATIVE_DEFAULT_LIMIT` where the model has
    none), lowered to the tokenizer's ``model_max_length`` when that is smaller. A ``max_length``
    beyond the position limit raises :class:`LengthLimitError` naming ``option``; where positions
    are relative (XLNet) any length may be asked for; so may it of a model without a config.
    """
    limit = position_limit(getattr(model, "config", None))
    if max_length is not None:
        if max_length < 1:
            raise LengthLimitError(f"{option} must be at least 1 (got {max_length})")
        if limit is not None and max_length > limit:
            raise LengthLimitError(
                f"{option} {max_length} is more than {type(model).__name__} takes: at most {limit} tokens "
                "(its position embeddings)"
            )
        return max_length
    default = RELATIVE_DEFAULT_LIMIT if limit is None else limit
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, (int, float)) and 0 < tokenizer_limit < default:
        default = int(tokenizer_limit)
    return default


def length_limit(model: Any, tokenizer: Any, max_length: int | None = None) -> int | None:
    """The most tokens a training input may have: ``max_length``, the tokenizer's and the model's
    limits (:func:`position_limit`), whichever is smallest. None: no limit."""
    limits = [max_length] if max_length else []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1e29:
        limits.append(int(tokenizer_limit))
    positions = position_limit(model.config)
    if positions is not None:
        limits.append(positions)
    return min(limits) if limits else None


# ------------------------------------------------------------------------ batching
def batch_capacity(batch_size: int, length: int) -> int:
    """How many inputs of ``length`` tokens share a batch: ``batch_size`` up to
    :data:`FULL_BATCH_LENGTH` tokens; beyond, as many as keep the batch's attention (which grows
    with the square of the length) within that of ``batch_size`` inputs of FULL_BATCH_LENGTH
    tokens, and at least one."""
    if length <= FULL_BATCH_LENGTH:
        return batch_size
    return max(1, batch_size * FULL_BATCH_LENGTH**2 // length**2)


def length_batches(
    lengths: Sequence[int], batch_size: int, groups: Sequence[Any] | None = None
) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size``, longest items first.

    Items of similar length share a batch, so little padding is computed; equal lengths keep
    their input order (the sort is stable). A batch whose longest item has more than
    :data:`FULL_BATCH_LENGTH` tokens holds fewer (:func:`batch_capacity`), so that memory stays
    bounded whatever the lengths. With ``groups`` (one hashable key per item), only items of the
    same key share a batch (e.g. MVP's classifier needs the same number of ``</s>`` in every row).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def chunks(indices: list[int]) -> list[list[int]]:
        out, at = [], 0
        while at < len(indices):
            size = batch_capacity(batch_size, lengths[indices[at]])
            out.append(indices[at : at + size])
            at += size
        return out

    if groups is None:
        return chunks(order)
    by_group: dict[Any, list[int]] = {}
    for i in order:
        by_group.setdefault(groups[i], []).append(i)
    batches = [batch for g in by_group.values() for batch in chunks(g)]
    return sorted(batches, key=lambda b: -lengths[b[0]])


def map_by_length(
    items: Sequence[T],
    run: Callable[[list[T]], Sequence[R]],
    batch_size: int,
    length: Callable[[T], int] = len,  # type: ignore[assignment]
    group: Callable[[T], Any] | None = None,
    *,
    padded: bool = False,
) -> list[R]:
    """``run`` over length-sorted batches of ``items``; one result per item, in input order.

    Only items of one ``length`` share a batch, so no batch holds padding (with :func:`inference`,
    a record's results are then the same bits in any batch); ``padded=True`` lets similar lengths
    share a padded batch instead. ``group(item)``: only items with equal keys share a batch too
    (see :func:`length_batches`).
    """
    results: list[Any] = [None] * len(items)
    lengths = [length(item) for item in items]
    if padded:
        groups = None if group is None else [group(item) for item in items]
    else:
        groups = [(n, None if group is None else group(item)) for n, item in zip(lengths, items)]
    for batch in length_batches(lengths, batch_size, groups):
        outputs = run([items[i] for i in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"a batch of {len(batch)} items gave {len(outputs)} results")
        for i, out in zip(batch, outputs):
            results[i] = out
    return results


def inference() -> ContextManager[None]:
    """The context of every task model call: :func:`xcli_models.kernels.inference`, batch-invariant."""
    return kernels.inference(batch_invariant=True)


def prefetched(chunks: Iterable[T], prepare: Callable[[T], R]) -> Iterator[R]:
    """``prepare(chunk)`` for each chunk, the next one computed in a thread meanwhile.

    While the caller works on one prepared chunk (a model call, which releases the GIL), the
    next chunk is being prepared (tokenised, padded). Exceptions come out where the chunk does.
    """
    iterator = iter(chunks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xcli-prepare") as pool:
        try:
            pending = pool.submit(prepare, next(iterator))
        except StopIteration:
            return
        for chunk in iterator:
            ready = pending.result()
            pending = pool.submit(prepare, chunk)
            yield ready
        yield pending.result()


# ------------------------------------------------------------------------- padding
def pad(
    sequences: Sequence[Sequence[int]],
    value: int,
    *,
    side: str = "right",
    length: int | None = None,
    dtype: torch.dtype = torch.long,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sequences as one (B, T) tensor, filled with ``value`` on ``side`` up to the longest (or ``length``)."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', not {side!r}")
    width = max((len(s) for s in sequences), default=0) if length is None else length
    out = torch.full((len(sequences), width), value, dtype=dtype)
    for row, seq in enumerate(sequences):
        n = min(len(seq), width)
        if n:
            values = torch.as_tensor(list(seq[:n]), dtype=dtype)
            if side == "left":
                out[row, width - n :] = values
            else:
                out[row, :n] = values
    return out if device is None else out.to(device)


def collate(
    encodings: Sequence[Any],
    tokenizer: Any,
    *,
    device: torch.device | str | None = None,
    token_types: bool | None = None,
    side: str | None = None,
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` (and ``token_type_ids``) of encodings as padded tensors.

    ``encodings`` are objects or dicts with ``input_ids`` (and optionally ``token_type_ids``);
    they are padded on ``side`` (default: the tokenizer's ``padding_side``) with its pad id, and
    token types with its ``pad_token_type_id``. ``token_types`` None: included when the
    tokenizer's ``model_input_names`` list them and the encodings have them.
    """
    side = side or getattr(tokenizer, "padding_side", "right")
    get = lambda e, k: e.get(k) if isinstance(e, dict) else getattr(e, k, None)  # noqa: E731
    ids = [get(e, "input_ids") for e in encodings]
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = 0  # masked out anyway
    batch = {
        "input_ids": pad(ids, pad_id, side=side, device=device),
        "attention_mask": pad([[1] * len(s) for s in ids], 0, side=side, device=device),
    }
    if token_types is None:
        token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    if token_types:
        types = [get(e, "token_type_ids") for e in encodings]
        if all(t is not None for t in types):
            fill = int(getattr(tokenizer, "pad_token_type_id", 0))
            batch["token_type_ids"] = pad(types, fill, side=side, device=device)
    return batch
