"""Task logic on top of the models: fill-mask, classify, qa, generate, score.

Each module takes a loaded model + tokenizer and plain Python records and returns plain
Python results (no printing, no CLI); :mod:`xcli_models.tasks.common` holds the batching and
loading helpers they share.
"""


def heads_by_command() -> dict[str, tuple[str, ...]]:
    """The model classes each head command serves, from the task modules' tables (in :mod:`.classes`,
    which imports no torch: ``xcli models`` uses them)."""
    from .classes import (
        BEAM_HEADS, CHOICE_HEADS, FILL_MASK_CLASSES, GENERATE_CLASSES, SCORE_CLASSES, SEQUENCE_HEADS, SPAN_HEADS,
        TOKEN_HEADS,
    )

    return {
        "fill-mask": FILL_MASK_CLASSES,
        "classify": SEQUENCE_HEADS + TOKEN_HEADS + CHOICE_HEADS,
        "qa": SPAN_HEADS + BEAM_HEADS,
        "generate": GENERATE_CLASSES,
        "score": SCORE_CLASSES,
    }


def commands_for(architectures: list[str]) -> list[str]:
    """The head commands (fill-mask, classify, qa, generate, score) the named classes serve."""
    return [command for command, heads in heads_by_command().items() if any(a in heads for a in architectures)]


def checkpoint_commands(architectures: list[str], *, tokenizer: bool, weights: bool) -> list[str]:
    """The xcli commands a checkpoint serves: ``tokenize`` with a tokenizer; with weights, the head
    commands its classes serve, ``evaluate`` when it has such a head (it scores what the head
    predicts), ``convert`` and ``train`` (``xcli info`` and ``xcli models``)."""
    commands = ["tokenize"] if tokenizer else []
    if weights:  # the model commands need weights
        heads = commands_for(architectures)
        commands += [*heads, *(["evaluate"] if heads else []), "convert", "train"]
    return commands
