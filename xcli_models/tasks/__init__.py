"""Task logic on top of the models: fill-mask, classify, qa, generate.

Each module takes a loaded model + tokenizer and plain Python records and returns plain
Python results (no printing, no CLI); :mod:`xcli_models.tasks.common` holds the batching and
loading helpers they share.
"""


def heads_by_command() -> dict[str, tuple[str, ...]]:
    """The model classes each head command serves, from the task modules' own tables."""
    from .classify import CHOICE_HEADS, SEQUENCE_HEADS, TOKEN_HEADS
    from .fill_mask import FILL_MASK_CLASSES
    from .generate import GENERATE_CLASSES
    from .qa import BEAM_HEADS, SPAN_HEADS

    return {
        "fill-mask": FILL_MASK_CLASSES,
        "classify": SEQUENCE_HEADS + TOKEN_HEADS + CHOICE_HEADS,
        "qa": SPAN_HEADS + BEAM_HEADS,
        "generate": GENERATE_CLASSES,
    }
