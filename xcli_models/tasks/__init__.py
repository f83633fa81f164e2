"""Task logic on top of the models: fill-mask, classify, qa.

Each module takes a loaded model + tokenizer and plain Python records and returns plain
Python results (no printing, no CLI); :mod:`xcli_models.tasks.common` holds the batching and
loading helpers they share.
"""
