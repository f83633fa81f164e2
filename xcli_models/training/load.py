"""Loading a model for training: its class for the task, its labels, its tokenizer; or fresh weights."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..auto import AutoConfig, AutoModel, family_of, model_classes
from ..loading import BIN_INDEX, BIN_WEIGHTS, SAFE_INDEX, SAFE_WEIGHTS
from ..modeling import PreTrainedModel, resolve_dtype
from ..tasks.common import pick_device
from ..registry import capabilities
from .common import CLASSIFICATION, TASKS, TrainingError
from .tasks import learns_plm, task_of

def _class_for_task(path: Path, task: str, config: Any) -> type[PreTrainedModel]:
    family, data = family_of(path)
    model_type = data.get("model_type")
    classes = {
        name: cls for name, cls in sorted(model_classes(family).items())
        if cls.config_class.model_type == model_type
    }
    # question answering: the span head first, as the reference's AutoModelForQuestionAnswering picks it
    for name, cls in sorted(classes.items(), key=lambda item: capabilities(item[0]).qa != "span"):
        if _learns(name, config, task):
            return cls
    has = sorted({t for name in classes if (t := task_of(name, config))})
    extra = ""
    if task == "causal-lm" and "masked-lm" in has or task == "masked-lm" and "causal-lm" in has:
        extra = " (an XLM checkpoint is a causal LM when its config.json says \"causal\": true)"
    raise TrainingError(
        f"{family.name} has no {task} head{extra}; its checkpoints can learn: {', '.join(has) or 'nothing'}"
    )


def _learns(class_name: str, config: Any, task: str) -> bool:
    """Whether a model class learns ``task`` (XLNet's LM head learns plm too)."""
    return task_of(class_name, config) == task or (task == "plm" and learns_plm(class_name))


#: what ``tune`` may name: every weight, the head only (the base model frozen), MVP's prompts only
TUNE = ("all", "head", "prompts")


@dataclass
class Loaded:
    """What :func:`load_for_training` built."""

    model: PreTrainedModel
    tokenizer: Any
    task: str
    #: head weights initialised here (not taken from the checkpoint), by reference name
    fresh: list[str] = field(default_factory=list)
    #: every weight was initialised here (``from_scratch``, or a directory without weights)
    scratch: bool = False
    #: the weights that learn (requires_grad), by reference name; the others are frozen
    trainable: list[str] = field(default_factory=list)


def has_weights(path: str | os.PathLike) -> bool:
    """Whether a checkpoint directory holds weights (a config-only directory does not)."""
    return any((Path(path) / name).exists() for name in (SAFE_WEIGHTS, SAFE_INDEX, BIN_WEIGHTS, BIN_INDEX))


def fresh_model(cls: type[PreTrainedModel], config: Any, *, seed: int | None = None,
                dtype: str | torch.dtype | None = None, device: str | torch.device | None = "cpu") -> PreTrainedModel:
    """A model of ``cls`` whose every weight is drawn as the reference initialises the family
    (each family's constructor does; see its ``post_init``/``init_weights``), after
    ``torch.manual_seed(seed)`` when a seed is given. In eval mode, like a loaded model."""
    if seed is not None:
        torch.manual_seed(seed)
    return cls(config).to(device=device, dtype=resolve_dtype(dtype, config)).eval()


def load_for_training(
    path: str | os.PathLike,
    *,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = "auto",
    from_scratch: bool = False,
    seed: int | None = None,
    tune: str = "all",
    inference: bool = False,
) -> Loaded:
    """The checkpoint's model for ``task`` (None: its own head's), its tokenizer and labels.

    ``labels`` (classification only) names the classes; when they differ from the checkpoint's
    ``id2label`` the head is initialised afresh. A classification head the checkpoint lacks
    needs ``labels``. With ``from_scratch``, or when the directory has a config.json and
    tokenizer files but no weights, every weight is drawn afresh as the reference initialises
    that family (after ``torch.manual_seed(seed)`` when a seed is given), so that a model of any
    family can be trained from nothing. Raises :class:`TrainingError` when the checkpoint
    cannot learn ``task``.

    ``tune`` says which weights learn (see :func:`freeze`): ``"all"``, ``"head"`` (the base model
    frozen) or ``"prompts"`` (MVP lightweight prompt tuning: ``use_prompt`` is switched on, the
    prompts a checkpoint lacks start afresh, and only they learn; the saved config keeps
    ``use_prompt``, so the reference loads the result with its prompts active).

    A quantized checkpoint (``xcli convert --quantize``) cannot learn: a :class:`TrainingError`
    unless ``inference`` (evaluation), which gets the quantized model.
    """
    from ..tokenization import AutoTokenizer

    directory = Path(path)
    scratch = from_scratch or not has_weights(directory)
    config = AutoConfig.from_pretrained(directory)
    if tune not in TUNE:
        raise TrainingError(f"tune must be one of {', '.join(TUNE)}, not {tune!r}")
    stored = getattr(config, "quantization", None)
    if stored is not None and not inference and not scratch:
        raise TrainingError(f"{directory} holds quantized weights, which cannot learn; convert it to a float "
                            f"checkpoint first (xcli convert {directory} DST --dtype float32)")
    had_prompts = bool(getattr(config, "use_prompt", False))
    if tune == "prompts":
        if "use_prompt" not in type(config).defaults:  # a family whose config has prompts (MVP)
            raise TrainingError(f"prompt tuning is MVP's (use_prompt); this is a {config.model_type} model")
        config.use_prompt = True
    own = AutoModel.class_for(directory) if config.architectures else None
    own_task = task_of(own.__name__, config) if own is not None else None
    task = _pick_task(task, own, own_task, labels)
    cls = own if own is not None and own_task == task else _class_for_task(directory, task, config)
    relabel = _set_labels(config, task, own, own_task, labels)
    target = pick_device(device)
    if scratch:
        model = fresh_model(cls, config, seed=seed, dtype=dtype, device=target)
        model.name_or_path = str(directory)  # its generation_config.json travels with the result
        fresh = [model.names.to_hf(name) for name, _ in model.named_parameters()]
    else:
        model = cls.from_pretrained(directory, config=config, dtype=dtype, device=target,
                                    ignore_mismatched_sizes=relabel)
        # new labels: the whole head starts afresh (not only the part whose shape changed)
        fresh = _reset_head(model) if relabel else list(model.load_report.initialized)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    trainable = freeze(model, tune)
    if tune == "prompts" and not had_prompts and not scratch:  # the checkpoint had none: they start afresh
        fresh = [*fresh, *(name for name in trainable if name not in fresh)]
    return Loaded(model, tokenizer, task, fresh, scratch, trainable)


def freeze(model: PreTrainedModel, tune: str) -> list[str]:
    """Let only part of the model learn; the reference names of the weights that do.

    ``"all"``: every weight. ``"head"``: the weights outside the base model (those under
    ``base_model_prefix`` are frozen; a head tied to the input embeddings keeps them frozen).
    ``"prompts"``: only MVP's prompt modules (``self_attn_prompt``, ``cross_attn_prompt``), as the
    reference's ``set_lightweight_tuning`` leaves them (its heads frozen too).
    """
    if tune == "head":
        if not model.base_model_prefix:
            raise TrainingError(f"{type(model).__name__} has no head apart from its base model")
        prefix = model.base_model_prefix + "."
        learns = lambda name: not name.startswith(prefix)  # noqa: E731
    elif tune == "prompts":
        learns = lambda name: "_attn_prompt." in name  # noqa: E731
    else:
        learns = lambda name: True  # noqa: E731
    for name, param in model.named_parameters():
        param.requires_grad_(learns(name))
    trainable = [model.names.to_hf(name) for name, param in model.named_parameters() if param.requires_grad]
    if not trainable:
        where = {"head": " outside its base model", "prompts": " in prompts"}.get(tune, "")
        raise TrainingError(f"{type(model).__name__} has no weights{where} to train")
    return trainable


def _pick_task(task: str | None, own: type | None, own_task: str | None, labels: Sequence[str] | None) -> str:
    """The task asked for, else the checkpoint's head's (a classifier when labels are given)."""
    if task is None:
        if labels and own_task not in CLASSIFICATION:  # a base or LM checkpoint: grow a classifier
            task = "sequence-classification"
        elif own_task is None:
            have = own.__name__ if own is not None else "no head (config.json lists no architectures)"
            raise TrainingError(
                f"the checkpoint holds {have}, which train cannot fine-tune; pick a task with --task "
                f"({', '.join(TASKS)}), or pass --labels to grow a sequence classifier"
            )
        else:
            task = own_task
    if task not in TASKS:
        raise TrainingError(f"unknown task {task!r} (use one of: {', '.join(TASKS)})")
    return task


def _set_labels(config: Any, task: str, own: type | None, own_task: str | None,
                labels: Sequence[str] | None) -> bool:
    """Put ``labels`` into the config; True when the classifier must start afresh."""
    if task not in CLASSIFICATION:
        if labels is not None:
            raise TrainingError(f"labels apply to classification; a {task} model learns from text")
        return False
    if labels is None:
        if own_task != task:
            raise TrainingError(
                f"the checkpoint holds {own.__name__ if own else 'no head'}, not a {task} head",
                hint="pass --labels a,b,c to grow one",
            )
        return False
    current = [config.id2label[i] for i in sorted(config.id2label)]
    labels = [str(label) for label in labels]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise TrainingError("labels must name at least two different classes")
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    return own_task != task or labels != current


def _reset_head(model: PreTrainedModel) -> list[str]:
    """Initialise the weights outside the base model (a classifier) afresh; their reference names."""
    if not model.base_model_prefix:
        raise TrainingError(f"{type(model).__name__} has no head apart from its base model")
    prefix = model.base_model_prefix + "."
    names = [name for name, _ in model.named_parameters() if not name.startswith(prefix)]
    for name in names:
        model._init_tensor(name, model.get_parameter(name).data)
    return [model.names.to_hf(name) for name in names]
