"""Task logic on top of the models: fill-mask, classify, qa, generate, score.

Each module takes a loaded model + tokenizer and plain Python records and returns plain
Python results (no printing, no CLI); :mod:`xcli_models.tasks.common` holds the batching and
loading helpers they share.
"""


def heads_by_command() -> dict[str, tuple[str, ...]]:
    """The model classes each head command serves, as the families declare them (the registry
    imports no torch: ``xcli models`` uses it)."""
    from ..registry import HEAD_COMMANDS, heads_for

    return {command: heads_for(command) for command in HEAD_COMMANDS}


def commands_for(architectures: list[str]) -> list[str]:
    """The head commands (fill-mask, classify, qa, generate, score) the named classes serve."""
    from ..registry import HEAD_COMMANDS, capabilities

    served = {command for name in architectures for command in capabilities(name).commands}
    return [command for command in HEAD_COMMANDS if command in served]


def checkpoint_commands(architectures: list[str], *, tokenizer: bool, weights: bool, bits: "int | None" = None) -> list[str]:
    """The xcli commands a checkpoint serves: ``tokenize`` with a tokenizer; with weights, the head
    commands its classes serve, ``evaluate`` when it has such a head (it scores what the head
    predicts), ``convert`` and ``train`` (``xcli info`` and ``xcli models``). ``bits``: those of a
    quantized checkpoint (config.json's ``quantization``), which does not train, and with 4 only generates."""
    commands = ["tokenize"] if tokenizer else []
    if weights:  # the model commands need weights
        heads = commands_for(architectures)
        if bits == 4:
            heads = [c for c in heads if c == "generate"]
        commands += [*heads, *(["evaluate"] if heads and bits != 4 else []), "convert",
                     *(["train"] if bits is None else [])]
    return commands
