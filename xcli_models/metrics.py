"""Evaluation metrics by their fields' standard definitions, on plain Python values.

Shared by ``train`` (dev evaluation, ``--metrics``) and any command that scores predictions
against gold labels. Nothing here needs torch; every score is a fraction in [0, 1] (SQuAD's
script prints percentages: multiply by 100 to compare).

* Classification: :func:`accuracy`, :func:`macro_f1` (the unweighted mean of the per-class F1
  over every class seen in the gold or the predicted labels, a class never predicted and never
  correct scoring 0, as scikit-learn's ``average="macro"`` does).
* Entities: :func:`entities` reads the spans of IOB1, IOB2, IOE and BIOES tag sequences with the
  CoNLL evaluation script's rules (conlleval, and the ``seqeval`` package's default mode), so
  that a sequence a tagger gets half right is read as the script reads it: a chunk starts at
  ``B``/``S``, at an ``I``/``E`` after ``O``/``E``/``S``, or where the type changes; it ends
  after ``E``/``S``, before ``B``/``S``/``O``, or where the type changes.
  :func:`entity_scores` gives micro-averaged precision, recall and F1 over exact (type, start,
  end) matches.
* Regression: :func:`mse`, :func:`pearson` (linear correlation), :func:`spearman` (Pearson
  of the ranks, ties given their mean rank, as SciPy's ``spearmanr``).
* Language models: :func:`perplexity` is ``exp`` of the mean per-token loss.
* Extractive QA: :func:`squad_scores`, exact match and token F1 after SQuAD v1.1's answer
  normalisation (lower case, no punctuation, no articles a/an/the, single spaces), each
  question scored against its best-matching gold answer.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Hashable, Iterable, Sequence

__all__ = [
    "accuracy", "binary_f1", "entities", "entity_scores", "is_entity_scheme", "macro_f1", "normalize_answer", "perplexity",
    "squad_exact_match", "squad_f1", "squad_scores", "LOWER_IS_BETTER", "mse", "pearson", "spearman",
]

#: metrics where a smaller value is better (for picking the best checkpoint)
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "mse"})


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


# ------------------------------------------------------------------ classification
def accuracy(golds: Sequence[Hashable], predictions: Sequence[Hashable]) -> float:
    """Share of predictions equal to their gold label."""
    _same_length(golds, predictions)
    return _ratio(sum(g == p for g, p in zip(golds, predictions)), len(golds))


def macro_f1(golds: Sequence[Hashable], predictions: Sequence[Hashable]) -> float:
    """Mean F1 over every class in ``golds`` or ``predictions`` (each class weighs the same)."""
    _same_length(golds, predictions)
    classes = set(golds) | set(predictions)
    if not classes:
        return 0.0
    scores = []
    for label in classes:
        tp = sum(g == label and p == label for g, p in zip(golds, predictions))
        fp = sum(g != label and p == label for g, p in zip(golds, predictions))
        fn = sum(g == label and p != label for g, p in zip(golds, predictions))
        scores.append(_f1(_ratio(tp, tp + fp), _ratio(tp, tp + fn)))
    return sum(scores) / len(scores)


def binary_f1(golds: Sequence[bool], predictions: Sequence[bool]) -> float:
    """F1 of the positive class of a yes/no decision (0 when there is no positive anywhere)."""
    _same_length(golds, predictions)
    tp = sum(bool(g) and bool(p) for g, p in zip(golds, predictions))
    fp = sum(not g and bool(p) for g, p in zip(golds, predictions))
    fn = sum(bool(g) and not p for g, p in zip(golds, predictions))
    return _f1(_ratio(tp, tp + fp), _ratio(tp, tp + fn))


def _same_length(golds: Sequence[Any], predictions: Sequence[Any]) -> None:
    if len(golds) != len(predictions):
        raise ValueError(f"{len(golds)} gold labels but {len(predictions)} predictions")


# ------------------------------------------------------------------------ entities
_PREFIXES = frozenset("BIESO")


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; a bare prefix has type ``"_"``."""
    if tag in ("O", "."):
        return tag, ""
    prefix, rest = tag[:1], tag[1:]
    kind = rest[1:] if rest[:1] in ("-", "_") else rest
    return prefix, kind or "_"


def is_entity_scheme(labels: Iterable[str]) -> bool:
    """True when every label is ``O`` or ``P-TYPE`` with P one of B, I, E, S (entity tags)."""
    seen = False
    for label in labels:
        if label == "O":
            continue
        if len(label) < 3 or label[0] not in "BIES" or label[1] not in "-_":
            return False
        seen = True
    return seen


def _ends(previous: str, previous_kind: str, tag: str, kind: str) -> bool:
    """Whether the chunk holding the previous token ends before this one."""
    if previous in ("O", "."):
        return False
    if previous in ("E", "S"):
        return True
    if tag in ("B", "S", "O"):
        return True
    return previous_kind != kind


def _starts(previous: str, previous_kind: str, tag: str, kind: str) -> bool:
    """Whether a chunk begins at this token."""
    if tag in ("O", "."):
        return False
    if tag in ("B", "S"):
        return True
    if previous in ("O", "E", "S") and tag in ("I", "E"):
        return True
    return previous_kind != kind


def entities(tags: Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, int, int]]:
    """The chunks of a tag sequence (or of sentences, numbered on as if joined) as
    ``(type, first, last)`` with inclusive token indices."""
    if tags and not isinstance(tags[0], str):
        flat: list[str] = []
        for sentence in tags:
            flat.extend([*sentence, "O"])  # no chunk runs across sentences
        tags = flat
    found: list[tuple[str, int, int]] = []
    previous, previous_kind, begin, chunk_kind = "O", "", -1, ""
    for index, tag in enumerate([*tags, "O"]):
        prefix, kind = _split_tag(str(tag))
        if _ends(previous, previous_kind, prefix, kind) and begin >= 0:
            found.append((chunk_kind, begin, index - 1))
            begin = -1
        if _starts(previous, previous_kind, prefix, kind):
            begin, chunk_kind = index, kind
        previous, previous_kind = prefix, kind
    return found


def entity_scores(golds: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity ``precision``, ``recall`` and ``f1`` over sentences of tags."""
    if len(golds) != len(predictions) or any(len(g) != len(p) for g, p in zip(golds, predictions)):
        raise ValueError("gold and predicted tag sequences differ in length")
    gold, predicted = set(entities(list(golds))), set(entities(list(predictions)))
    correct = len(gold & predicted)
    precision, recall = _ratio(correct, len(predicted)), _ratio(correct, len(gold))
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


# ----------------------------------------------------------------- language models
def perplexity(mean_loss: float) -> float:
    """``exp`` of a mean per-token negative log-likelihood (inf when it overflows)."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------- SQuAD v1.1
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer."""
    guess = normalize_answer(prediction)
    return float(any(guess == normalize_answer(gold) for gold in golds))


def squad_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token-overlap F1 of the prediction against any gold answer."""
    guess = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        truth = normalize_answer(gold).split()
        common = sum((Counter(guess) & Counter(truth)).values())
        if common:
            best = max(best, _f1(common / len(guess), common / len(truth)))
    return best


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ``exact_match`` and ``f1`` over questions, each against its list of gold answers."""
    _same_length(golds, predictions)
    n = len(predictions)
    return {
        "exact_match": _ratio(sum(squad_exact_match(p, g) for p, g in zip(predictions, golds)), n),
        "f1": _ratio(sum(squad_f1(p, g) for p, g in zip(predictions, golds)), n),
    }


# ------------------------------------------------------------------------ regression
def mse(golds: Sequence[float], predictions: Sequence[float]) -> float:
    """The mean squared difference."""
    _same_length(golds, predictions)
    return _ratio(sum((p - g) ** 2 for g, p in zip(golds, predictions)), len(golds))


def pearson(golds: Sequence[float], predictions: Sequence[float]) -> float:
    """Pearson's correlation coefficient; NaN when either side is constant (or has < 2 values)."""
    _same_length(golds, predictions)
    n = len(golds)
    if n < 2:
        return math.nan
    mean_g, mean_p = sum(golds) / n, sum(predictions) / n
    dg = [g - mean_g for g in golds]
    dp = [p - mean_p for p in predictions]
    spread = math.sqrt(sum(x * x for x in dg) * sum(y * y for y in dp))
    return sum(x * y for x, y in zip(dg, dp)) / spread if spread > 0 else math.nan


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(golds: Sequence[float], predictions: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's of the ranks."""
    _same_length(golds, predictions)
    return pearson(_ranks(golds), _ranks(predictions))
