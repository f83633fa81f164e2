"""The engine on its own terms: cached decoding equals uncached, stop strings and lengths are
exact, streaming shows what is generated, settings come from the right places."""

from __future__ import annotations

import json

import pytest
import torch

from test_generation_parity import FAMILIES, models, ours_model, prompts, root, scenario  # noqa: F401
from xcli_models.generation import GenerationConfig, TextStream, generate
from xcli_models.generation.adapters import adapter_for
from xcli_models.families.xlnet.generation import XLNetAdapter
from xcli_models.families.xlnet.memory import ProjectedMems
from xcli_models.generation.stopping import cut_at_stop


pytestmark = pytest.mark.usefixtures("one_thread")


#: XLNet: see test_xlnet_mems_are_the_reference_scheme; ProphetNet: see test_prophetnet_uncached_is_the_reference
CACHED_FAMILIES = [n for n in FAMILIES if n != "xlnet" and "prophetnet" not in n]


@pytest.mark.parametrize("name", CACHED_FAMILIES)
@pytest.mark.parametrize("beams", [1, 3])
def test_cached_equals_uncached(name, beams, root):
    ours = ours_model(name, root, 0)
    ids, mask = prompts(name, 3, 0)
    settings = dict(max_new_tokens=9, num_beams=beams, output_scores=True, return_dict_in_generate=True,
                    eos_token_id=scenario(name, root, 3, 0, native=True)["eos_token_id"])
    cached = ours.generate(ids, attention_mask=mask, **settings)
    uncached = ours.generate(ids, attention_mask=mask, use_cache=False, **settings)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores, strict=True):
        finite = ~torch.isinf(b)
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        torch.testing.assert_close(a[finite], b[finite], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", [n for n in FAMILIES if "prophetnet" in n])
@pytest.mark.parametrize("beams", [1, 3])
def test_prophetnet_uncached_is_the_reference(name, beams, root):
    """The reference's ProphetNet decodes differently without its cache (a whole-sequence call mixes the
    predicting streams' position biases, and a cached step skips the padding mask), so its cached and
    uncached ``generate`` disagree; ours reproduces each (cached: see the parity tests)."""
    oracle, ours = models(name, root, 0)
    ids, mask = prompts(name, 3, 0)
    settings = dict(max_new_tokens=9, num_beams=beams, eos_token_id=scenario(name, root, 3, 0)["eos_token_id"],
                    use_cache=False)
    assert torch.equal(ours.generate(ids, attention_mask=mask, **settings),
                       oracle.generate(ids, attention_mask=mask, **settings))


def test_xlnet_mems_are_the_reference_scheme(root):
    """XLNet's cache is the reference's mems reuse (the last two tokens rerun): the tokens differ from
    a full rerun in general, so use_cache=False means the reference without mems (tested in parity).
    Kept projected (keys and values) or as the reference's states, the memory has the same rows."""
    ours = ours_model("xlnet", root, 0)
    ids, mask = prompts("xlnet", 1, 0)
    with torch.inference_mode():
        states_adapter = XLNetAdapter(ours, projected=False)
        states, _ = states_adapter.start(ids, mask)
        assert len(states.cache) == ours.config.n_layer and states.cache[0].shape[:2] == (ids.shape[1] + 1, 1)
        states_adapter.step(states, torch.tensor([7]))
        assert states.cache[0].shape[0] == ids.shape[1] + 2  # memory less two, plus two tokens and the dummy

        adapter = adapter_for(ours)
        projected, _ = adapter.start(ids, mask)
        assert isinstance(projected.cache, ProjectedMems) and projected.cache.length == ids.shape[1] + 1
        adapter.step(projected, torch.tensor([7]))
        assert projected.cache.length == ids.shape[1] + 2
        key = projected.cache.layers[0].cache.key
        assert key.shape == (1, ours.config.n_head, ids.shape[1] + 2, ours.config.d_head)


def test_xlnet_memory_window_keeps_its_buffer(root):
    """Past mem_len, a step drops the window's first row without copying the window to a new buffer:
    over 200 steps each layer's keys live in a few buffers (those of its growth), not 200, and the
    position table is not rebuilt. (Every step's keys are held, so that a freed buffer's address
    cannot come back as a new one's.)"""
    ours = ours_model("xlnet", root, 0, mem_len=6)
    ids, mask = prompts("xlnet", 1, 0)
    adapter = adapter_for(ours)
    held: list[list[torch.Tensor]] = [[] for _ in range(ours.config.n_layer)]
    with torch.inference_mode():
        state, _ = adapter.start(ids, mask)
        adapter.step(state, torch.tensor([7]))
        version = state.cache.positions.version
        for _ in range(200):
            adapter.step(state, torch.tensor([7]))
            assert state.cache.length == 6
            for keys, layer in zip(held, state.cache.layers):
                keys.append(layer.cache.key)
    assert all(len({k.untyped_storage().data_ptr() for k in keys}) <= 3 for keys in held)
    assert state.cache.positions.version == version


@pytest.mark.parametrize("settings", [
    dict(max_new_tokens=30), dict(max_new_tokens=16, num_beams=3, num_return_sequences=2),
    dict(max_new_tokens=30, do_sample=True, seed=3, num_return_sequences=2),
])
def test_xlnet_projected_memory_equals_recomputation(settings, root):
    """The memory kept as keys, values and projected positions gives the tokens, and the scores within
    1e-4, of re-projecting the memory's states at every step (the reference's way)."""
    ours = ours_model("xlnet", root, 0)
    ids, mask = prompts("xlnet", 3, 0)
    settings = dict(settings, output_scores=True, return_dict_in_generate=True, eos_token_id=None,
                    min_new_tokens=settings["max_new_tokens"])
    projected = ours.generate(ids, attention_mask=mask, **settings)
    ours.generation_adapter = lambda **kw: XLNetAdapter(ours, projected=False, **kw)
    try:
        states = ours.generate(ids, attention_mask=mask, **settings)
    finally:
        del ours.generation_adapter
    assert torch.equal(projected.sequences, states.sequences)
    for a, b in zip(projected.scores, states.scores, strict=True):
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        torch.testing.assert_close(a[~torch.isinf(b)], b[~torch.isinf(b)], atol=1e-4, rtol=0)


def letters(ids: list[int]) -> str:
    """A fake detokenizer: token t is the letter 'a' + t, except 3 -> "xy" and 4 -> "z."."""
    return "".join({3: "xy", 4: "z."}.get(t, chr(ord("a") + t)) for t in ids)


class ForceAt:
    """A logits processor that forces ``token`` when the sequence is ``length`` long."""

    def __init__(self, length: int, token: int) -> None:
        self.length, self.token = length, token

    def __call__(self, sequences, scores):
        if sequences.shape[1] != self.length:
            return scores
        out = torch.full_like(scores, float("-inf"))
        out[:, self.token] = 0.0
        return out


@pytest.mark.parametrize("name", ["xglm", "mvp", "prophetnet-causal"])
def test_stop_strings_are_exact(name, root):
    """A row stops at the step whose token completes a stop string, however many tokens it spans;
    the text is cut before it; the other rows go on."""
    ours = ours_model(name, root, 5)
    ids, mask = prompts(name, 3, 5)
    pad = FAMILIES[name].pad
    settings = dict(max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True, decode=letters)
    free = ours.generate(ids, attention_mask=mask, **settings)
    start = free.prompt_length
    texts = [letters(row) for row in free.sequences[:, start:].tolist()]
    stop = texts[0][5:7]  # two letters from the middle of row 0's text
    out = ours.generate(ids, attention_mask=mask, stop_strings=[stop, "never"], **settings)
    for row, text in enumerate(texts):
        got = out.sequences[row, start:].tolist()
        hit = text.find(stop)
        if hit < 0:
            assert got == free.sequences[row, start:].tolist() and out.texts[row] == text
            continue
        needed = next(n for n in range(1, len(got) + 1) if stop in letters(got[:n]))
        assert got[:needed] == free.sequences[row, start: start + needed].tolist()
        assert all(t == pad for t in got[needed:])
        assert out.texts[row] == text[:hit]
    assert texts[0].find(stop) <= 5


def test_stop_string_inside_a_token(root):
    """A stop string that ends inside a token stops at that token; the text is cut before the string."""
    assert cut_at_stop("abz.q", ["."]) == ("abz", True)
    assert cut_at_stop("abc", ["x", "c"]) == ("ab", True)
    assert cut_at_stop("abc", ["q"]) == ("abc", False)
    ours = ours_model("xglm", root, 5)
    ids, mask = prompts("xglm", 1, 5)
    start = ids.shape[1]
    force = ForceAt(start + 4, 3)  # the 5th new token is "xy"
    settings = dict(max_new_tokens=10, eos_token_id=None, return_dict_in_generate=True, decode=letters,
                    logits_processor=[force], bad_words_ids=[[3]])
    free = ours.generate(ids, attention_mask=mask, **settings)
    text = letters(free.sequences[0, start:].tolist())
    assert free.sequences[0, start + 4] == 3 and text.count("x") == 1
    out = ours.generate(ids, attention_mask=mask, stop_strings="x", **settings)
    assert out.sequences.shape[1] == start + 5 and out.sequences[0, -1] == 3
    assert out.texts[0] == text[: text.find("x")]
    before = text[text.find("x") - 1]  # a stop string spanning the token boundary: "<previous letter>x"
    out = ours.generate(ids, attention_mask=mask, stop_strings=[before + "xy"], **settings)
    assert out.sequences.shape[1] == start + 5 and out.texts[0] == text[: text.find("x") - 1]


def test_stop_strings_need_a_decoder(root):
    ours = ours_model("xglm", root, 0)
    ids, mask = prompts("xglm", 1, 0)
    with pytest.raises(ValueError, match="tokenizer"):
        ours.generate(ids, attention_mask=mask, stop_strings=["x"], max_new_tokens=3)


class FakeTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return letters([t for t in ids if not (skip_special_tokens and t < 3)])


def test_tokenizer_gives_texts_and_stop_strings(root):
    ours = ours_model("mvp", root, 5)
    ids, mask = prompts("mvp", 2, 5)
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=6, tokenizer=FakeTokenizer(),
                        return_dict_in_generate=True)
    assert out.texts == [letters([t for t in row if t >= 3]) for row in out.sequences[:, 1:].tolist()]


@pytest.mark.parametrize("name", ["xglm", "mvp", "xlm-clm", "xlnet"])
def test_lengths_are_exact(name, root):
    ours = ours_model(name, root, 6)
    ids, mask = prompts(name, 3, 6)
    start = 1 if FAMILIES[name].encoder_decoder else ids.shape[1]
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=7, eos_token_id=None)
    assert out.shape[1] == start + 7
    out = ours.generate(ids, attention_mask=mask, max_length=start + 4, eos_token_id=None)
    assert out.shape[1] == start + 4
    eos = scenario(name, root, 3, 6, native=True)["eos_token_id"]
    free = ours.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos)
    assert (free[:, start:] == eos).any(), "the scenario's EOS comes up"
    for minimum in (2, 5):
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, min_new_tokens=minimum)
        new = out[:, start:]
        assert not (new[:, :minimum] == eos).any()
        for row in new.tolist():  # a row ends at its first EOS (padding after), or runs to 10 tokens
            if eos in row:
                end = row.index(eos)
                assert end >= minimum
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, min_length=start + minimum)
        assert not (out[:, start: start + minimum] == eos).any()


def test_streamer_sees_every_step(root):
    ours = ours_model("xglm", root, 0)
    ids, mask = prompts("xglm", 3, 0)
    seen = []
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=6, streamer=seen.append)
    assert torch.equal(torch.stack(seen, dim=1), out[:, ids.shape[1]:])
    with pytest.raises(ValueError, match="beam"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=3, num_beams=2, streamer=seen.append)


def test_text_stream_pieces_make_the_final_text(root):
    ours = ours_model("xglm", root, 5)
    ids, mask = prompts("xglm", 2, 5)
    settings = dict(max_new_tokens=12, eos_token_id=None, decode=letters, return_dict_in_generate=True)
    free = ours.generate(ids, attention_mask=mask, **settings)
    stop = letters(free.sequences[0, free.prompt_length:].tolist())[4:6]
    pieces: dict[int, str] = {0: "", 1: ""}

    def show(row, piece):
        pieces[row] += piece

    stream = TextStream(letters, show, stop_strings=[stop])
    out = ours.generate(ids, attention_mask=mask, stop_strings=[stop], streamer=stream, **settings)
    stream.end()
    assert [pieces[0], pieces[1]] == out.texts


def test_text_stream_holds_back_incomplete_characters():
    shown = []
    decode = {(): "", (1,): "a\ufffd", (1, 2): "ab", (1, 2, 3): "abST", (1, 2, 3, 4): "abSTOP!"}
    stream = TextStream(lambda ids: decode[tuple(ids)], lambda row, piece: shown.append(piece), stop_strings=["STOP"])
    for token in (1, 2, 3, 4):
        stream(torch.tensor([token]))
    stream.end()
    assert shown == ["a", "b"] and "".join(shown) == "ab"


def test_settings_priority(root, tmp_path):
    oracle, ours = models("mvp", root, 7, num_beams=3, no_repeat_ngram_size=2, length_penalty=0.5, max_length=12)
    defaults = ours.generation_config or GenerationConfig.from_pretrained(ours.name_or_path)
    assert (defaults.num_beams, defaults.no_repeat_ngram_size, defaults.max_length) == (3, 2, 12)
    assert defaults.forced_eos_token_id == 2 and defaults.decoder_start_token_id == 2
    explicit = GenerationConfig(num_beams=2)
    ids, mask = prompts("mvp", 2, 7)
    a = ours.generate(ids, attention_mask=mask, generation_config=explicit)
    b = oracle.generate(ids, attention_mask=mask, num_beams=2)
    assert torch.equal(a, b)
    # a config.json's fields (checkpoints without generation_config.json)
    config = GenerationConfig.from_model_config(ours.config)
    assert config.decoder_start_token_id == 2 and config.eos_token_id == 2


def test_generation_config_files(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({
        "num_beams": 4, "eos_token_id": [2, 3], "transformers_version": "4.56.2", "_from_model_config": True,
        "diversity_penalty": 0.0, "num_beam_groups": 1,
    }))
    config = GenerationConfig.from_pretrained(tmp_path)
    assert config.num_beams == 4 and config.eos_ids == [2, 3] and not config.unsupported
    config.save_pretrained(tmp_path)
    again = GenerationConfig.from_pretrained(tmp_path)
    assert again == config
    with pytest.raises(ValueError, match="not supported"):
        config.updated({"num_beam_groups": 2})
    resolved = GenerationConfig().resolve_lengths(5, 16, max_length_given=False)
    assert resolved.max_length == 16  # 20 new tokens, capped at the position limit
    assert GenerationConfig().resolve_lengths(5, -1, max_length_given=False).max_length == 25
    assert GenerationConfig(max_new_tokens=3).resolve_lengths(5, 16, max_length_given=True).max_length == 8
    with pytest.raises(ValueError, match="max_length"):
        GenerationConfig(max_length=4).resolve_lengths(5, None, max_length_given=True)


@pytest.mark.parametrize("settings, message", [
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(bad_words_ids=[[]]), "bad_words_ids"),
    (dict(diversity_penalty=0.5, num_beam_groups=2), "not supported"),
])
def test_refused_settings(settings, message, root):
    ours = ours_model("xglm", root, 0)
    ids, mask = prompts("xglm", 1, 0)
    with pytest.raises(ValueError, match=message):
        ours.generate(ids, attention_mask=mask, max_new_tokens=3, **settings)


def test_unknown_option_and_model_without_head(root):
    ours = ours_model("xglm", root, 0)
    ids, mask = prompts("xglm", 1, 0)
    with pytest.raises(TypeError, match="num_beam"):
        ours.generate(ids, attention_mask=mask, num_beam=3)
    with pytest.raises(ValueError, match="cannot generate"):
        generate(ours.model, ids)


def test_no_prompt_starts_from_bos(root):
    oracle, ours = models("xglm", root, 0)
    assert torch.equal(ours.generate(max_new_tokens=5), oracle.generate(max_new_tokens=5))


def test_attention_mask_inferred_from_padding(root):
    oracle, ours = models("xglm", root, 0)
    ids, _ = prompts("xglm", 3, 0)
    assert torch.equal(ours.generate(ids, max_new_tokens=5), oracle.generate(ids, max_new_tokens=5))


def test_sequence_scores(root):
    """Greedy/sampling scores: the length-penalised sum of the tokens' log-probabilities."""
    ours = ours_model("xglm", root, 0)
    ids, mask = prompts("xglm", 2, 0)
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None, output_scores=True,
                        return_dict_in_generate=True, length_penalty=1.0)
    new = out.sequences[:, ids.shape[1]:]
    steps = [torch.log_softmax(s, -1).gather(1, new[:, i: i + 1])[:, 0] for i, s in enumerate(out.scores)]
    logp = torch.stack(steps, 1)
    torch.testing.assert_close(out.sequences_scores, logp.sum(1) / 5)


def test_defaults_from_config_json_alone(root, tmp_path):
    """An older checkpoint keeps its generation settings in config.json (no generation_config.json):
    they apply, as the reference reads them."""
    from tests.oracle import transformers
    import xcli_models

    oracle, _ = models("xglm", root, 0)
    oracle.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").unlink()
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(num_beams=2, no_repeat_ngram_size=2, max_length=13, length_penalty=0.8)
    (tmp_path / "config.json").write_text(json.dumps(data))
    ours = xcli_models.XGLMForCausalLM.from_pretrained(tmp_path)
    reference = transformers.XGLMForCausalLM.from_pretrained(tmp_path).eval()
    ids, mask = prompts("xglm", 2, 0)
    assert torch.equal(ours.generate(ids, attention_mask=mask), reference.generate(ids, attention_mask=mask))
    assert ours.generation_config.num_beams == 2 and ours.generation_config.max_length == 13


def test_sequence_scores_without_step_scores(root):
    ours = ours_model("mvp", root, 0)
    ids, mask = prompts("mvp", 2, 0)
    settings = dict(max_new_tokens=5, return_dict_in_generate=True)
    full = ours.generate(ids, attention_mask=mask, output_scores=True, **settings)
    light = ours.generate(ids, attention_mask=mask, sequence_scores=True, **settings)
    assert light.scores is None and light.sequences_scores is not None
    torch.testing.assert_close(light.sequences_scores, full.sequences_scores)


def test_processors_write_into_scores_only_where_they_are_the_callers_to_change():
    """MinLength bans EOS into the scores it is given only through ``apply(..., owned=True)`` (a
    search step's own logits) or into scores an earlier processor made; called alone, or through
    ``apply`` without ``owned``, it leaves its input as it was."""
    from xcli_models.generation.processors import MinLength, RepetitionPenalty, apply

    sequences = torch.tensor([[1, 2, 3]])
    scores = torch.arange(6.0)[None]
    ban = MinLength(5, eos_ids=[4])
    assert torch.equal(ban(sequences, scores), torch.tensor([[0.0, 1, 2, 3, float("-inf"), 5]]))
    assert torch.equal(apply([ban], sequences, scores), ban(sequences, scores))
    assert torch.equal(scores, torch.arange(6.0)[None])  # not written into
    made = apply([RepetitionPenalty(2.0), ban], sequences, scores)  # the penalty's new scores: banned in place
    assert torch.equal(made, torch.tensor([[0.0, 0.5, 1, 1.5, float("-inf"), 5]]))
    assert torch.equal(scores, torch.arange(6.0)[None])
    owned = scores.clone()
    assert apply([ban], sequences, owned, owned=True) is owned and owned[0, 4] == float("-inf")
    assert apply([MinLength(3, eos_ids=[4])], sequences, scores, owned=True) is scores  # long enough: untouched
    assert torch.equal(scores, torch.arange(6.0)[None])
