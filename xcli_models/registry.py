"""model_type -> family: where its config, tokenizer, model classes and head declarations live.

Entries name modules by dotted path and are imported only when used, so that
reading this table (as `xcli tokenize` does) never imports torch. Each family declares
what its head classes can do (:class:`Capabilities`, in its torch-free ``capabilities``
module); commands, tasks, training, generation, convert and info ask :func:`heads_for` and
:func:`capabilities` rather than keeping tables of class names. A new family is a folder
plus one line in :data:`FAMILIES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


#: the head commands, in the order ``xcli models`` and ``xcli info`` list them, and the
#: :class:`Capabilities` field that says whether (and how) a head serves each
HEAD_COMMANDS = {"fill-mask": "fill_mask", "classify": "classify", "qa": "qa", "generate": "generate",
                 "score": "generate"}
#: the kinds of each task, in the order their heads are listed
_KINDS = {"classify": ("sequence", "token", "choice"), "qa": ("span", "beam"), "generate": ("causal", "seq2seq")}


@dataclass(frozen=True)
class Capabilities:
    """What one head class can do, declared next to its family (torch-free: ``xcli models`` reads it).

    The task fields say which command serves the head and how; the quirk fields name the few
    ways a head's inputs differ from the common case, so that no task asks for a class name.
    """

    #: fill-mask: a masked-LM head
    fill_mask: bool = False
    #: classify: "sequence", "token" or "choice" (multiple choice)
    classify: str | None = None
    #: qa: "span" (start/end logits) or "beam" (the beam-search SQuAD head)
    qa: str | None = None
    #: generate (and score): "causal" (continue the prompt) or "seq2seq" (write a new text from the input)
    generate: str | None = None
    #: the task ``train`` fine-tunes it for ("sequence-classification", "causal-lm" ...); with
    #: ``causal_flag`` a "causal-lm" head is a "masked-lm" one when config.json's ``causal`` is false
    train: str | None = None
    #: config.json's ``causal`` says whether this LM head is causal or masked (XLM)
    causal_flag: bool = False
    #: extra inputs it takes: "langs" (language ids, XLM)
    needs: tuple[str, ...] = ()
    #: keyword arguments every inference call passes (XLNet: no memory; MVP: no cache)
    forward_options: tuple[tuple[str, Any], ...] = ()
    #: it takes ``token_type_ids`` (MVP does not)
    token_types: bool = True
    #: relative positions: left padding leaves its pooled "last" vector unchanged (XLNet)
    relative_positions: bool = False
    #: classification pools at the last ``</s>``: rows of a batch must hold as many of them (MVP)
    pools_at_eos: bool = False
    #: an XLNet permutation LM: predicts through ``perm_mask``/``target_mapping`` (fill-mask, score,
    #: train's "plm", generate's XLNet prefix)
    permutation: bool = False
    #: generation places tokens by index, padding included, or masks no padding: only prompts of
    #: equal length share a batch
    unpadded: bool = False
    #: generate takes MVP's task templates (``--task``: a task's instruction before the input)
    task_templates: bool = False
    #: its texts mark sentence ends with ``[X_SEP]``, which generate shows as newlines (ProphetNet)
    sentence_separators: bool = False
    #: the causal-LM loss shifts the labels itself (XGLM compares logits t with label t + 1)
    shifts_labels: bool = False

    @property
    def commands(self) -> tuple[str, ...]:
        """The head commands that serve it, in the order ``xcli models`` lists them."""
        return tuple(command for command, field_name in HEAD_COMMANDS.items() if getattr(self, field_name))


#: no capability: a class the registry does not list (a base model)
NOTHING = Capabilities()


@dataclass(frozen=True)
class Family:
    name: str
    #: "module:Class" of the config class
    config: str
    #: "module:Class" of the tokenizer class, and of alternatives by tokenizer_class name
    tokenizer: str
    #: module holding the model classes (names as in the reference documentation)
    models: str
    #: "module:NAME" of the dict of head class name -> :class:`Capabilities` (a torch-free module)
    heads: str = ""
    tokenizers_by_class: dict[str, str] = field(default_factory=dict)


def in_folder(name: str, folder: str, config: str, tokenizer: str, heads: str = "HEADS",
              **alternatives: str) -> Family:
    """A family kept in ``xcli_models/families/FOLDER`` as the others are: ``config.py`` holds
    ``config``, ``modeling.py`` the model classes, ``capabilities.py`` the ``heads`` table;
    ``tokenizer`` ("module:Class" under :mod:`xcli_models.tokenization`) and the alternatives
    by ``tokenizer_class`` name."""
    package = f"xcli_models.families.{folder}"
    return Family(name=name, config=f"{package}.config:{config}", tokenizer=f"xcli_models.tokenization.{tokenizer}",
                  models=f"{package}.modeling", heads=f"{package}.capabilities:{heads}",
                  tokenizers_by_class={k: f"xcli_models.tokenization.{v}" for k, v in alternatives.items()})


#: the families by model_type; their order is the order heads are listed in (messages, ``xcli models``)
FAMILIES: dict[str, Family] = {
    "xglm": in_folder("XGLM", "xglm", "XGLMConfig", "sentencepiece:XGLMTokenizer"),
    "xlm": in_folder("XLM", "xlm", "XLMConfig", "moses_bpe:XLMTokenizer"),
    "xlnet": in_folder("XLNet", "xlnet", "XLNetConfig", "sentencepiece:XLNetTokenizer"),
    "mvp": in_folder("MVP", "mvp", "MvpConfig", "byte_bpe:MvpTokenizer"),
    "prophetnet": in_folder("ProphetNet", "prophetnet", "ProphetNetConfig", "wordpiece:ProphetNetTokenizer",
                            "PROPHETNET_HEADS", XLMProphetNetTokenizer="sentencepiece:XLMProphetNetTokenizer"),
    "xlm-prophetnet": in_folder("XLM-ProphetNet", "prophetnet", "XLMProphetNetConfig",
                                "sentencepiece:XLMProphetNetTokenizer", "XLM_PROPHETNET_HEADS",
                                ProphetNetTokenizer="wordpiece:ProphetNetTokenizer"),
}


def load_object(ref: str) -> Any:
    """Import ``"package.module:Name"`` and return ``Name``."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise KeyError(f"model_type {model_type!r} is not supported (xcli runs: {known})") from None


def family_heads(family: Family) -> dict[str, Capabilities]:
    """A family's head classes by name, with what each can do (imports no torch)."""
    return load_object(family.heads) if family.heads else {}


def all_heads() -> dict[str, Capabilities]:
    """Every head class xcli has, by name, families in registry order."""
    return {name: caps for family in FAMILIES.values() for name, caps in family_heads(family).items()}


def capabilities(class_name: str) -> Capabilities:
    """What the named head class can do (:data:`NOTHING` for a class no family lists)."""
    return all_heads().get(class_name, NOTHING)


def heads_for(command: str, *kinds: str) -> tuple[str, ...]:
    """The head classes a command serves (``kinds``: only these kinds of it, e.g. "span"),
    grouped by kind in the order given, then by family."""
    field_name = HEAD_COMMANDS[command]
    heads = all_heads()
    if not kinds:
        kinds = _KINDS.get(field_name, (True,))
    return tuple(
        name for kind in kinds for name, caps in heads.items() if getattr(caps, field_name) == kind
    )
