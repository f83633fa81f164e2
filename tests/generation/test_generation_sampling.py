"""Sampling against the reference: the filtered distribution of every step (the processed
scores) equals the oracle's, and draws are reproducible from a seed whatever the batch."""

from __future__ import annotations

import pytest
import torch

from test_generation_parity import ALL, FAMILIES, models, prompts, root, scenario  # noqa: F401

SETTINGS = {
    "plain": dict(),  # the reference's default top_k=50 applies
    "temperature": dict(temperature=0.7, top_k=0),
    "top-k": dict(top_k=4),
    "top-p": dict(top_p=0.6, top_k=0),
    "typical-p": dict(typical_p=0.5, top_k=0),
    "everything": dict(temperature=1.3, top_k=6, top_p=0.8, typical_p=0.9, repetition_penalty=1.5,
                       no_repeat_ngram_size=2),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def oracle_sample(name, root, batch, seed, **settings):
    oracle, ours = models(name, root, seed)
    ids, mask = prompts(name, batch, seed)
    torch.manual_seed(1234)
    reference = oracle.generate(ids, attention_mask=mask, do_sample=True, output_scores=True,
                                return_dict_in_generate=True, **settings, **FAMILIES[name].oracle_kwargs)
    return ours, ids, mask, reference


def assert_same_distribution(ours_scores, oracle_scores):
    assert len(ours_scores) == len(oracle_scores)
    for step, (a, b) in enumerate(zip(ours_scores, oracle_scores, strict=True)):
        assert torch.equal(torch.isinf(a), torch.isinf(b)), f"step {step}: different tokens filtered out"
        finite = ~torch.isinf(b)
        torch.testing.assert_close(a[finite], b[finite], atol=1e-4, rtol=0, msg=f"step {step}")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_filtered_distribution_matches(name, setting, root):
    """Follow the oracle's draws (a sampler that returns its tokens) and compare every step's scores."""
    settings = dict(SETTINGS[setting], max_new_tokens=8, eos_token_id=scenario(name, root, 3, 0)["eos_token_id"])
    if setting == "everything":
        settings["num_return_sequences"] = 2
    ours, ids, mask, reference = oracle_sample(name, root, 3, 0, **settings)
    start = reference.sequences.shape[1] - len(reference.scores)

    def follow(probs, step):
        return reference.sequences[:, start + step]

    got = ours.generate(ids, attention_mask=mask, do_sample=True, output_scores=True, return_dict_in_generate=True,
                        sampler=follow, **settings)
    assert torch.equal(got.sequences, reference.sequences)
    assert_same_distribution(got.scores, reference.scores)


@pytest.mark.parametrize("name", ["xglm", "mvp", "xlnet", "prophetnet-causal"])
def test_global_generator_draws_like_the_reference(name, root):
    """Without a seed the draws come from torch's global generator, in the reference's order:
    the same global seed gives the reference's samples (sampling and beam sampling)."""
    oracle, ours = models(name, root, 1)
    ids, mask = prompts(name, 3, 1)
    for settings in (dict(top_k=5, num_return_sequences=2), dict(num_beams=3, top_p=0.9)):
        torch.manual_seed(99)
        reference = oracle.generate(ids, attention_mask=mask, do_sample=True, max_new_tokens=7, **settings,
                                    **FAMILIES[name].oracle_kwargs)
        torch.manual_seed(99)
        got = ours.generate(ids, attention_mask=mask, do_sample=True, max_new_tokens=7, **settings)
        assert torch.equal(got, reference)


@pytest.mark.parametrize("name", ["xglm", "mvp", "prophetnet"])
def test_seed_reproducible_across_runs_and_batches(name, root):
    """(Not XLM: as in the reference, a padded XLM row scores nothing but the LM head's bias.)"""
    _, ours = models(name, root, 2)
    ids, mask = prompts(name, 3, 2)
    settings = dict(do_sample=True, max_new_tokens=8, top_k=0, temperature=1.5, num_return_sequences=2, seed=7)
    whole = ours.generate(ids, attention_mask=mask, **settings)
    assert torch.equal(whole, ours.generate(ids, attention_mask=mask, **settings))
    for row in range(3):  # each prompt alone gives the rows it got in the batch
        keep = mask[row].bool()
        alone = ours.generate(ids[row, keep][None], **settings)
        new = alone.shape[1] - int(keep.sum()) if not FAMILIES[name].encoder_decoder else None
        batch_rows = whole[2 * row: 2 * row + 2]
        if FAMILIES[name].encoder_decoder:
            assert torch.equal(alone, batch_rows[:, : alone.shape[1]])
        else:
            assert torch.equal(alone[:, -new:], batch_rows[:, ids.shape[1]: ids.shape[1] + new])
    other = ours.generate(ids, attention_mask=mask, **{**settings, "seed": 8})
    assert not torch.equal(whole, other)
    per_prompt = ours.generate(ids, attention_mask=mask, **{**settings, "seed": [7, 8, 7]})
    pad = FAMILIES[name].pad
    assert [_strip(r, pad) for r in per_prompt[:2]] == [_strip(r, pad) for r in whole[:2]]
    assert [_strip(r, pad) for r in per_prompt[4:]] == [_strip(r, pad) for r in whole[4:]]


def _strip(row: torch.Tensor, pad: int) -> list[int]:
    values = row.tolist()
    while values and values[-1] == pad:
        values.pop()
    return values


def test_seeded_beam_sampling_reproducible(root):
    _, ours = models("mvp", root, 3)
    ids, mask = prompts("mvp", 2, 3)
    settings = dict(do_sample=True, num_beams=3, max_new_tokens=6, seed=11, num_return_sequences=2)
    assert torch.equal(ours.generate(ids, attention_mask=mask, **settings),
                       ours.generate(ids, attention_mask=mask, **settings))
