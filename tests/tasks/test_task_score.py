"""Scoring texts under a language model (xcli_models.tasks.score) against the oracle's log-softmax.

Tiny random checkpoints saved by transformers 4.56.2 (the builders of tests/tasks/test_task_generate.py,
real tokenizers), for every family and language-modelling head. The expected values are computed
here from the oracle model's logits: the sum of log-softmax values of the scored tokens, for
causal models (``labels = input_ids``), XLNet left to right (a causal ``perm_mask``),
encoder-decoder targets (``labels = target``) and pseudo-log-likelihood (each token masked in
turn). Those comparisons skip without the reference; on checkpoints xcli wrote
(``test_task_generate.native_build``) and without it: batching never changes a score; bad inputs
raise the record errors the CLI reports; heads that cannot score are refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from compare import ATOL
from task_fixtures import SCORE_TEXTS, native
from task_fixtures import build as build_masked_lm
from test_task_generate import SPECS, Built, build, native_build, ours, root  # noqa: F401 - fixture

from xcli_models.tasks.common import UnsupportedModel
from xcli_models.tasks.score import ChoicesError, EmptyText, MissingTarget, Scorer, ScoreOptionError, TooLong

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = SCORE_TEXTS
TARGET = "a short target"
CAUSAL = ["xglm", "xlm", "mvp-causal", "prophetnet-causal", "xlm-prophetnet-causal"]
SEQ2SEQ = ["mvp", "prophetnet", "xlm-prophetnet"]


def scorer(built: Built, **options: Any) -> Scorer:
    task = ours(built)
    return Scorer(task.model, task.tokenizer, **options)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    return logits[0].float().log_softmax(-1)


# --------------------------------------------------------------- the oracle's numbers
def reference_causal(built: Built, text: str) -> tuple[float, int]:
    """Every token after the first, from the oracle's logits at the position before it."""
    ids = torch.tensor([built.tokenizer(text).input_ids])
    extra = {"use_cache": False} if built.spec.oracle == "MvpForCausalLM" else {}
    with torch.no_grad():
        lp = log_probs(built.oracle(ids, **extra).logits)
    n = ids.shape[1]
    return sum(float(lp[p - 1, ids[0, p]]) for p in range(1, n)), n - 1


def reference_xlnet(built: Built, text: str) -> tuple[float, int]:
    """XLNet left to right: position i sees the tokens before it; one target per position from 1."""
    ids = torch.tensor([built.tokenizer(text).input_ids])
    n = ids.shape[1]
    perm_mask = torch.ones(n, n).triu()[None]
    target_mapping = torch.eye(n)[1:][None]
    with torch.no_grad():
        lp = log_probs(built.oracle(ids, perm_mask=perm_mask, target_mapping=target_mapping).logits)
    return sum(float(lp[k, ids[0, k + 1]]) for k in range(n - 1)), n - 1


def reference_seq2seq(built: Built, text: str, target: str) -> tuple[float, int]:
    """Every target token, from the oracle's logits with ``labels`` (decoder input shifted right)."""
    ids = torch.tensor([built.tokenizer(text).input_ids])
    labels = torch.tensor([built.tokenizer(text_target=target).input_ids])
    with torch.no_grad():
        lp = log_probs(built.oracle(input_ids=ids, labels=labels).logits)
    return sum(float(lp[k, labels[0, k]]) for k in range(labels.shape[1])), labels.shape[1]


def reference_pll(model: Any, tokenizer: Any, text: str) -> tuple[float, int]:
    """Each non-special token masked in turn, scored from the others (XLNet: hidden by perm_mask)."""
    ids = tokenizer(text).input_ids
    special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    total, n = 0.0, 0
    for p in [i for i, s in enumerate(special) if not s]:
        masked = torch.tensor([[tokenizer.mask_token_id if q == p else t for q, t in enumerate(ids)]])
        with torch.no_grad():
            if type(model).__name__ == "XLNetLMHeadModel":
                perm_mask = torch.zeros(1, len(ids), len(ids))
                perm_mask[0, :, p] = 1
                target_mapping = torch.zeros(1, 1, len(ids))
                target_mapping[0, 0, p] = 1
                lp = log_probs(model(masked, perm_mask=perm_mask, target_mapping=target_mapping).logits)[0]
            else:
                lp = log_probs(model(masked).logits)[p]
        total += float(lp[ids[p]])
        n += 1
    return total, n


def assert_score(result: dict[str, Any], expected: tuple[float, int]) -> None:
    logprob, n = expected
    assert result["tokens"] == n
    assert abs(result["logprob"] - logprob) <= ATOL, (result["logprob"], logprob)
    assert abs(result["mean_logprob"] - logprob / n) <= ATOL
    assert math.isclose(result["perplexity"], math.exp(-logprob / n), rel_tol=1e-3)


# ------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", CAUSAL)
def test_causal_scores_equal_the_oracles_log_softmax(name: str, root: Path) -> None:
    built = build(name, root)
    results = scorer(built, batch_size=2)(TEXTS)
    for text, result in zip(TEXTS, results, strict=True):
        assert_score(result, reference_causal(built, text))


def test_xlnet_left_to_right_equals_the_oracle(root: Path) -> None:
    built = build("xlnet", root)
    results = scorer(built, batch_size=2)(TEXTS)
    for text, result in zip(TEXTS, results, strict=True):
        assert_score(result, reference_xlnet(built, text))


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_encoder_decoder_targets_equal_the_oracle(name: str, root: Path) -> None:
    built = build(name, root)
    score = scorer(built, batch_size=2)
    targets = [TARGET, "another, longer target with more words in it", "x"]
    results = score.run([score.prepare(t, target=g) for t, g in zip(TEXTS, targets, strict=True)])
    for text, target, result in zip(TEXTS, targets, results, strict=True):
        assert_score(result, reference_seq2seq(built, text, target))


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An XLM masked LM (causal: false), saved by the oracle with the en-fr tokenizer."""
    return build_masked_lm(tmp_path_factory.mktemp("score-mlm"), "xlm", "XLMWithLMHeadModel")


@pytest.mark.parametrize("name", ["xlm-mlm", "xlnet", "mvp"])
def test_pseudo_log_likelihood_equals_the_oracle(name: str, masked_lm: Any, root: Path) -> None:
    if name == "xlm-mlm":
        model, tokenizer, path = masked_lm
        from xcli_models.tasks.common import load

        task = load(path, device="cpu")
        score = Scorer(task.model, task.tokenizer, pll=True, batch_size=3)
    else:
        built = build(name, root)
        model, tokenizer = built.oracle, built.tokenizer
        score = scorer(built, pll=True, batch_size=3)
    results = score(TEXTS[:2])
    for text, result in zip(TEXTS[:2], results, strict=True):
        assert_score(result, reference_pll(model, tokenizer, text))


# ------------------------------------------------------------------------- choices
def test_choices_score_the_continuation_only(root: Path) -> None:
    built = build("xglm", root)
    score = scorer(built)
    text, choices = "The cat sat on the", ["mat", "moon and the stars"]
    result = score.run([score.prepare(text, choices=choices)])[0]
    assert set(result) == {"choice", "scores", "logprobs", "tokens"}
    whole = [reference_causal(built, f"{text} {c}") for c in choices]
    context = reference_causal(built, text)
    for k, (logprob, n) in enumerate(whole):
        assert result["tokens"][k] == n - context[1]
        assert abs(result["logprobs"][k] - (logprob - context[0])) <= ATOL
    assert result["scores"] == result["logprobs"]
    assert result["choice"] == max(range(2), key=lambda k: result["logprobs"][k])
    by_mean = scorer(built, by="mean")
    ranked = by_mean.run([by_mean.prepare(text, choices=choices)])[0]
    means = [s / n for s, n in zip(ranked["logprobs"], ranked["tokens"], strict=True)]
    assert ranked["scores"] == pytest.approx(means) and ranked["choice"] == max(range(2), key=lambda k: means[k])


def test_encoder_decoder_choices_are_targets(root: Path) -> None:
    built = build("mvp", root)
    score = scorer(built)
    choices = ["yes", "no, certainly not"]
    result = score.run([score.prepare(TEXTS[0], choices=choices)])[0]
    for k, choice in enumerate(choices):
        logprob, n = reference_seq2seq(built, TEXTS[0], choice)
        assert result["tokens"][k] == n and abs(result["logprobs"][k] - logprob) <= ATOL


def test_xlnet_and_pll_choices(root: Path) -> None:
    built = native_build("xlnet", root)
    for options in ({}, {"pll": True}):
        score = scorer(built, **options)
        result = score.run([score.prepare("The cat sat on the", choices=["mat", "big red mat"])])[0]
        assert result["tokens"][0] >= 1 and result["tokens"][1] > result["tokens"][0]
        assert result["choice"] in (0, 1)


# ------------------------------------------------------------------------ batching
@pytest.mark.parametrize("name", ["xglm", "xlm", "xlnet", "mvp", "prophetnet-causal", "xlm-prophetnet"])
def test_batching_never_changes_a_score(name: str, root: Path) -> None:
    built = native_build(name, root)
    texts = [TEXTS[2], TEXTS[1], TEXTS[0], TEXTS[1] + " and a tail", TEXTS[2][:20], "Yes"] + TEXTS
    results = {}
    for size in (1, 8):
        score = scorer(built, batch_size=size)
        items = [score.prepare(t, target=t[::-1]) if score.needs_target else score.prepare(t) for t in texts]
        results[size] = score.run(items)
    for one, many in zip(results[1], results[8], strict=True):
        assert one["tokens"] == many["tokens"]
        assert abs(one["logprob"] - many["logprob"]) <= 1e-5


@pytest.fixture(scope="module")
def native_masked_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An XLM masked LM (causal: false) written by xcli with the en-fr tokenizer."""
    return native(tmp_path_factory.mktemp("score-mlm-native"), "XLMWithLMHeadModel", perturb=0.3)


def test_pll_batching_never_changes_a_score(native_masked_lm: Any) -> None:
    from xcli_models.tasks.common import load

    task = load(native_masked_lm[2], device="cpu")
    runs = [Scorer(task.model, task.tokenizer, pll=True, batch_size=size)(TEXTS) for size in (1, 8)]
    for one, many in zip(*runs, strict=True):
        assert abs(one["logprob"] - many["logprob"]) <= 1e-5


# -------------------------------------------------------------------------- errors
def test_bad_inputs_are_record_errors(root: Path) -> None:
    score = scorer(native_build("xglm", root))
    with pytest.raises(EmptyText):
        score.prepare("")
    with pytest.raises(EmptyText):
        score.prepare("   ")
    with pytest.raises(ChoicesError):
        score.prepare("text", choices=[])
    with pytest.raises(ChoicesError):
        score.prepare("text", choices=["a", 3])
    with pytest.raises(EmptyText):
        score.prepare("text", choices=["a", ""])
    with pytest.raises(TooLong, match="at most 128"):
        score.prepare("word " * 300)
    with pytest.raises(TooLong, match="at most 10"):
        scorer(native_build("xglm", root), max_length=10).prepare(TEXTS[2])
    with pytest.raises(MissingTarget):
        scorer(native_build("mvp", root)).prepare("text")
    with pytest.raises(EmptyText):
        scorer(native_build("prophetnet-causal", root)).prepare("")


def test_heads_that_cannot_score_are_refused(native_masked_lm: Any, root: Path) -> None:
    from xcli_models.tasks.common import load

    task = load(native_masked_lm[2], device="cpu")
    with pytest.raises(UnsupportedModel, match="pll"):
        Scorer(task.model, task.tokenizer)  # a masked LM needs pll
    with pytest.raises(UnsupportedModel, match="masked-LM head"):
        scorer(native_build("xglm", root), pll=True)
    with pytest.raises(ScoreOptionError):
        scorer(native_build("xglm", root), by="median")
