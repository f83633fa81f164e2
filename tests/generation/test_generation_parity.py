"""Generation against the reference's ``generate`` (transformers 4.56.2): token-identical
greedy and beam search for every generative class, single prompts and padded batches, with
each logits processor.

Oracle quirks worked around (see the issue): the deprecated XLMProphetNet* classes have no
``generate``, so ProphetNetFor* (same architecture and parameter names) is the reference for
them; the reference's MvpForCausalLM crashes with its cache on, so its uncached decoding is
the reference (ours decodes with the cache).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from compare import transformers
import xcli_models

VOCAB = 16  # small, so that EOS comes up and beams finish at different lengths


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Family:
    """A generative class: the oracle class that saves the checkpoint and generates, ours that loads it."""

    oracle: str
    ours: str
    config: Any  # () -> oracle config
    pad: int
    encoder_decoder: bool = False
    oracle_kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments of the oracle's generate
    model_type: str | None = None  # rewrite config.json's model_type (XLM-ProphetNet)


#: each config's fields; ``config(library)`` builds the oracle's config, or ours from the same fields
_FIELDS = {
    "XGLMConfig": dict(vocab_size=VOCAB, d_model=24, attention_heads=3, num_layers=2, ffn_dim=40,
                       max_position_embeddings=64, init_std=0.3),
    "XLMConfig": dict(vocab_size=VOCAB, emb_dim=24, n_heads=3, n_layers=2, causal=True, max_position_embeddings=64,
                      n_langs=1, init_std=0.2, embed_init_std=0.3),
    "XLNetConfig": dict(vocab_size=VOCAB, d_model=24, n_head=3, d_head=8, n_layer=2, d_inner=40,
                        initializer_range=0.5),
    "MvpConfig": dict(vocab_size=VOCAB, d_model=24, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
                      decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=40, max_position_embeddings=64,
                      init_std=0.3),
    "ProphetNetConfig": dict(vocab_size=VOCAB, hidden_size=24, num_encoder_layers=2, num_decoder_layers=2,
                             num_encoder_attention_heads=3, num_decoder_attention_heads=3, encoder_ffn_dim=40,
                             decoder_ffn_dim=40, ngram=2, num_buckets=8, relative_max_distance=16,
                             max_position_embeddings=64, init_std=0.2),
}


def _config(name: str) -> Any:
    return lambda library=transformers, cls=None: (cls or getattr(library, name))(**_FIELDS[name])


_xglm, _xlm, _xlnet, _mvp, _prophetnet = (_config(n) for n in _FIELDS)


FAMILIES = {
    "xglm": Family("XGLMForCausalLM", "XGLMForCausalLM", _xglm, pad=1),
    "xlm-clm": Family("XLMWithLMHeadModel", "XLMWithLMHeadModel", _xlm, pad=2),
    "xlnet": Family("XLNetLMHeadModel", "XLNetLMHeadModel", _xlnet, pad=5),
    "mvp-causal": Family("MvpForCausalLM", "MvpForCausalLM", _mvp, pad=1, oracle_kwargs={"use_cache": False}),
    "mvp": Family("MvpForConditionalGeneration", "MvpForConditionalGeneration", _mvp, pad=1, encoder_decoder=True),
    "prophetnet-causal": Family("ProphetNetForCausalLM", "ProphetNetForCausalLM", _prophetnet, pad=0),
    "prophetnet": Family("ProphetNetForConditionalGeneration", "ProphetNetForConditionalGeneration", _prophetnet,
                         pad=0, encoder_decoder=True),
    "xlm-prophetnet-causal": Family("ProphetNetForCausalLM", "XLMProphetNetForCausalLM", _prophetnet, pad=0,
                                    model_type="xlm-prophetnet"),
    "xlm-prophetnet": Family("ProphetNetForConditionalGeneration", "XLMProphetNetForConditionalGeneration",
                             _prophetnet, pad=0, encoder_decoder=True, model_type="xlm-prophetnet"),
}

_CACHE: dict[tuple, tuple[Any, Any]] = {}


def models(name: str, root: Path, seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """(oracle model, our model loaded from the oracle's save_pretrained), built once per session."""
    key = (name, seed, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        family = FAMILIES[name]
        config = family.config()
        for k, v in overrides.items():
            setattr(config, k, v)
        torch.manual_seed(seed)
        oracle = getattr(transformers, family.oracle)(config).eval()
        directory = root / f"{name}-{seed}-{len(_CACHE)}"
        oracle.save_pretrained(directory)
        if family.model_type:
            path = directory / "config.json"
            data = json.loads(path.read_text())
            data["model_type"] = family.model_type
            path.write_text(json.dumps(data))
        ours = getattr(xcli_models, family.ours).from_pretrained(directory)
        assert not ours.load_report.lines()
        _CACHE[key] = (oracle, ours)
    return _CACHE[key]


_OURS: dict[tuple, Any] = {}


def ours_model(name: str, root: Path, seed: int = 0, **overrides: Any) -> Any:
    """Our model alone, written by xcli's own ``save_pretrained`` and loaded back (no oracle), built
    once per session: for the tests of the engine on its own terms."""
    key = (name, seed, tuple(sorted(overrides.items())))
    if key not in _OURS:
        family = FAMILIES[name]
        klass = getattr(xcli_models, family.ours)
        config = family.config(cls=klass.config_class)
        for k, v in overrides.items():
            setattr(config, k, v)
        torch.manual_seed(seed)
        directory = root / f"ours-{name}-{seed}-{len(_OURS)}"
        klass(config).eval().save_pretrained(directory)
        ours = klass.from_pretrained(directory)
        assert not ours.load_report.lines()
        _OURS[key] = ours
    return _OURS[key]


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generation")


def prompts(name: str, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths, left-padded (decoder-only) or right-padded (encoder input)."""
    family = FAMILIES[name]
    generator = torch.Generator().manual_seed(seed)
    lengths = [7, 4, 6, 3][:batch] if batch > 1 else [6]
    width = max(lengths)
    ids = torch.full((batch, width), family.pad, dtype=torch.long)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens = torch.randint(6, VOCAB, (n,), generator=generator)
        span = slice(0, n) if family.encoder_decoder else slice(width - n, width)
        ids[row, span], mask[row, span] = tokens, 1
    return ids, mask


def run_both(name: str, root: Path, batch: int, seed: int = 0, model_overrides: dict | None = None, **settings: Any):
    oracle, ours = models(name, root, seed, **(model_overrides or {}))
    ids, mask = prompts(name, batch, seed)
    reference = oracle.generate(ids, attention_mask=mask, **settings, **FAMILIES[name].oracle_kwargs)
    got = ours.generate(ids, attention_mask=mask, **settings)
    return reference, got


_SCENARIOS: dict[tuple, dict[str, Any]] = {}


def scenario(name: str, root: Path, batch: int, seed: int, native: bool = False) -> dict[str, Any]:
    """Settings taken from the plain greedy output so that they matter: an EOS token that some rows
    produce after a few steps (rows then end at different lengths), and bad words it contains.
    ``native``: of :func:`ours_model`'s model, else of the model :func:`models` loads."""
    key = (name, batch, seed, native)
    if key not in _SCENARIOS:
        ours = ours_model(name, root, seed) if native else models(name, root, seed)[1]
        ids, mask = prompts(name, batch, seed)
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=None, min_new_tokens=0)
        new = out[:, -10:].tolist()
        pad = FAMILIES[name].pad
        late: dict[int, int] = {}  # rows where the token first comes after a few steps
        early: dict[int, int] = {}  # rows where it comes at once
        for row in new:
            for token in set(row) - {pad}:
                first = row.index(token)
                target = late if first >= 3 else early
                target[token] = target.get(token, 0) + 1
        tokens = sorted(set(late) | set(early))
        ranked = sorted(tokens, key=lambda t: (-late.get(t, 0), early.get(t, 0), t))
        eos = ranked[0]
        frequent = max((t for t in tokens if t != eos), key=lambda t: (late.get(t, 0) + early.get(t, 0), -t), default=7)
        pairs = [(a, b) for row in new for a, b in zip(row, row[1:]) if len({a, b, eos, frequent}) == 4]
        bad = [[frequent], list(pairs[0]) if pairs else [8, 9], [10, 11, 12]]
        _SCENARIOS[key] = {"eos_token_id": eos, "bad_words_ids": bad}
    return dict(_SCENARIOS[key])


def assert_same(reference: Any, got: Any) -> None:
    if isinstance(reference, torch.Tensor):
        assert torch.equal(got, reference), f"\nours:\n{got}\noracle:\n{reference}"
        return
    assert torch.equal(got.sequences, reference.sequences), f"\nours:\n{got.sequences}\noracle:\n{reference.sequences}"
    if getattr(reference, "sequences_scores", None) is not None:
        torch.testing.assert_close(got.sequences_scores, reference.sequences_scores, atol=1e-4, rtol=0)
    if getattr(reference, "beam_indices", None) is not None and got.beam_indices is not None:
        assert torch.equal(got.beam_indices.long(), reference.beam_indices.long())


ALL = list(FAMILIES)
CAUSAL = [n for n in ALL if not FAMILIES[n].encoder_decoder]
SEQ2SEQ = [n for n in ALL if FAMILIES[n].encoder_decoder]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy(name, batch, root):
    assert_same(*run_both(name, root, batch, max_new_tokens=10))
    eos = scenario(name, root, batch, 0)["eos_token_id"]
    assert_same(*run_both(name, root, batch, max_new_tokens=10, eos_token_id=eos))


@pytest.mark.parametrize("name", ALL)
def test_beam_search(name, root):
    eos = scenario(name, root, 3, 1)["eos_token_id"]
    assert_same(*run_both(name, root, 3, seed=1, max_new_tokens=8, num_beams=3, num_return_sequences=2,
                          output_scores=True, return_dict_in_generate=True, eos_token_id=eos))


@pytest.mark.parametrize("name", ["xglm", "mvp", "prophetnet", "xlnet"])
@pytest.mark.parametrize("early_stopping,length_penalty", [(True, 0.7), ("never", 1.3), (False, -0.5)])
def test_beam_stopping_rules(name, early_stopping, length_penalty, root):
    eos = scenario(name, root, 2, 2)["eos_token_id"]
    assert_same(*run_both(name, root, 2, seed=2, max_new_tokens=9, num_beams=4, early_stopping=early_stopping,
                          length_penalty=length_penalty, num_return_sequences=4, output_scores=True,
                          return_dict_in_generate=True, eos_token_id=eos))


PROCESSORS = {
    "none": dict(),
    "repetition": dict(repetition_penalty=1.8),
    "no-repeat": dict(no_repeat_ngram_size=2),
    "encoder-no-repeat": dict(encoder_no_repeat_ngram_size=2),
    "encoder-no-repeat-1": dict(encoder_no_repeat_ngram_size=1),
    "bad-words": dict(bad_words_ids=None),  # from the scenario
    "min-new-tokens": dict(min_new_tokens=6),
    "min-length": dict(min_length=9),
    "max-length": dict(max_length=11),
    "forced-eos": dict(forced_eos_token_id=4),
    "all": dict(repetition_penalty=1.3, no_repeat_ngram_size=3, bad_words_ids=None, min_new_tokens=3),
}


def processor_settings(name: str, processor: str, root: Path, batch: int, seed: int) -> dict[str, Any]:
    settings = scenario(name, root, batch, seed)
    bad = settings.pop("bad_words_ids")
    settings.update(PROCESSORS[processor])
    if "bad_words_ids" in settings:
        settings["bad_words_ids"] = bad
    if "max_length" not in settings:
        settings["max_new_tokens"] = 9
    return settings


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("processor", list(PROCESSORS))
def test_processors_greedy(name, processor, root):
    assert_same(*run_both(name, root, 3, seed=3, **processor_settings(name, processor, root, 3, 3)))


@pytest.mark.parametrize("name", ["xglm", "mvp", "prophetnet-causal", "xlnet", "xlm-clm"])
@pytest.mark.parametrize("processor", ["none", "repetition", "no-repeat", "bad-words", "min-new-tokens", "forced-eos"])
def test_processors_beam(name, processor, root):
    settings = processor_settings(name, processor, root, 2, 4)
    settings.update(max_new_tokens=7, num_beams=3, num_return_sequences=3, output_scores=True,
                    return_dict_in_generate=True)
    assert_same(*run_both(name, root, 2, seed=4, **settings))


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_forced_bos(name, root):
    assert_same(*run_both(name, root, 3, seed=5, max_new_tokens=6, forced_bos_token_id=9))
    assert_same(*run_both(name, root, 2, seed=5, max_new_tokens=6, forced_bos_token_id=9, num_beams=2))


@pytest.mark.parametrize("name", ALL)
def test_default_length(name, root):
    """No length given: 20 new tokens, capped at the position limit (XLNet: no limit, see config.py)."""
    if name == "xlnet":  # the reference refuses (its max_length becomes -1); we make 20 tokens
        _, ours = models(name, root)
        ids, mask = prompts(name, 1)
        out = ours.generate(ids, attention_mask=mask, min_new_tokens=20)
        assert out.shape[1] == ids.shape[1] + 20
        return
    assert_same(*run_both(name, root, 2, seed=6))


@pytest.mark.parametrize("name", ["xglm", "mvp"])
def test_checkpoint_generation_defaults(name, root):
    """A checkpoint's generation settings (moved to generation_config.json by the oracle) apply."""
    overrides = dict(num_beams=3, no_repeat_ngram_size=2, length_penalty=0.5, max_length=12)
    oracle, ours = models(name, root, 7, **overrides)
    assert ours.generation_config is None or ours.generation_config.num_beams == 3
    ids, mask = prompts(name, 2, 7)
    reference = oracle.generate(ids, attention_mask=mask)
    assert_same(reference, ours.generate(ids, attention_mask=mask))
    assert ours.generation_config.num_beams == 3
    # and an explicit setting wins over the checkpoint's
    assert_same(oracle.generate(ids, attention_mask=mask, num_beams=1),
                ours.generate(ids, attention_mask=mask, num_beams=1))


def test_xlm_languages(root):
    """XLM with language embeddings: every position gets the language id (config.lang_id, or lang_id=...)."""
    oracle, ours = models("xlm-clm", root, 8, n_langs=3, use_lang_emb=True, lang_id=2)
    ids, mask = prompts("xlm-clm", 3, 8)
    assert_same(oracle.generate(ids, attention_mask=mask, max_new_tokens=8),
                ours.generate(ids, attention_mask=mask, max_new_tokens=8))
    oracle.config.lang_id = 1
    try:
        reference = oracle.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=2)
    finally:
        oracle.config.lang_id = 2
    assert_same(reference, ours.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=2, lang_id=1))


def test_xlm_masked_lm(root):
    """A non-causal XLM (an MLM checkpoint) generates as the reference does: everything rerun each step."""
    oracle, ours = models("xlm-clm", root, 9, causal=False)
    ids, mask = prompts("xlm-clm", 3, 9)
    assert_same(oracle.generate(ids, attention_mask=mask, max_new_tokens=6),
                ours.generate(ids, attention_mask=mask, max_new_tokens=6))


def test_xlnet_without_mems(root):
    """use_mems_eval=False: the reference reruns the whole sequence each step, and so do we."""
    oracle, ours = models("xlnet", root, 10, use_mems_eval=False)
    ids, mask = prompts("xlnet", 2, 10)
    assert_same(oracle.generate(ids, attention_mask=mask, max_new_tokens=6),
                ours.generate(ids, attention_mask=mask, max_new_tokens=6))


@pytest.mark.parametrize("batch", [1, 3])
def test_xlnet_long_generation(batch, root):
    """Many steps over the projected memory (keys, values and positions kept across steps, see
    families/xlnet/memory.py): greedy, beams, and sampling along the reference's draws, left-padded rows."""
    oracle, ours = models("xlnet", root, 12)
    ids, mask = prompts("xlnet", batch, 12)
    settings = dict(max_new_tokens=40, min_new_tokens=40)
    assert_same(oracle.generate(ids, attention_mask=mask, **settings), ours.generate(ids, attention_mask=mask, **settings))
    beams = dict(max_new_tokens=24, num_beams=3, num_return_sequences=2, output_scores=True, return_dict_in_generate=True)
    assert_same(oracle.generate(ids, attention_mask=mask, **beams), ours.generate(ids, attention_mask=mask, **beams))
    torch.manual_seed(99)
    sampled = oracle.generate(ids, attention_mask=mask, do_sample=True, top_k=0, output_scores=True,
                              return_dict_in_generate=True, **settings)
    start = sampled.sequences.shape[1] - len(sampled.scores)
    got = ours.generate(ids, attention_mask=mask, do_sample=True, top_k=0, output_scores=True,
                        return_dict_in_generate=True, sampler=lambda probs, step: sampled.sequences[:, start + step],
                        **settings)
    assert torch.equal(got.sequences, sampled.sequences)
    for a, b in zip(got.scores, sampled.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("overrides", [dict(mem_len=6), dict(mem_len=9, reuse_len=2), dict(clamp_len=4)])
def test_xlnet_memory_settings(overrides, root):
    """A memory window shorter than the sequence (mem_len), reuse_len, clamped distances: the rows the
    reference keeps, over many steps."""
    oracle, ours = models("xlnet", root, 13, **overrides)
    ids, mask = prompts("xlnet", 3, 13)
    for settings in (dict(max_new_tokens=20), dict(max_new_tokens=12, num_beams=2)):
        assert_same(oracle.generate(ids, attention_mask=mask, **settings),
                    ours.generate(ids, attention_mask=mask, **settings))


def test_mvp_with_prompts(root):
    """MVP checkpoints with (layer-wise) prompts generate with the prompts in every attention."""
    oracle, ours = models("mvp", root, 11, use_prompt=True, prompt_length=3, prompt_mid_dim=10)
    ids, mask = prompts("mvp", 3, 11)
    assert_same(oracle.generate(ids, attention_mask=mask, max_new_tokens=8),
                ours.generate(ids, attention_mask=mask, max_new_tokens=8))
    assert_same(oracle.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=3),
                ours.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=3))


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_decoder_prefix(name, root):
    """decoder_input_ids given: the start token is put in front when missing, generation continues them."""
    oracle, ours = models(name, root)
    ids, mask = prompts(name, 2)
    prefix = torch.tensor([[8, 9], [10, 11]])
    assert_same(oracle.generate(ids, attention_mask=mask, decoder_input_ids=prefix, max_new_tokens=5),
                ours.generate(ids, attention_mask=mask, decoder_input_ids=prefix, max_new_tokens=5))


def test_save_round_trip_keeps_generation_defaults(root, tmp_path):
    """save_pretrained writes the generation defaults; the reference loads them and generates the same."""
    oracle, ours = models("mvp", root, 7, num_beams=3, no_repeat_ngram_size=2, length_penalty=0.5, max_length=12)
    ours.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "generation_config.json").is_file()
    again = transformers.MvpForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    assert again.generation_config.num_beams == 3 and again.generation_config.no_repeat_ngram_size == 2
    ids, mask = prompts("mvp", 2, 7)
    assert_same(again.generate(ids, attention_mask=mask), ours.generate(ids, attention_mask=mask))
    shutil.rmtree(tmp_path / "saved")
