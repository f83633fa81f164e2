"""ProphetNet and XLM-ProphetNet against the reference (transformers 4.56.2).

Tiny random checkpoints are built and saved by the oracle, loaded by
xcli_models, and compared output by output within 1e-4. The oracle's
relative-position projections are scaled up and its norms and n-gram
embeddings perturbed after construction, so that a mistake in the bucket
lookup, the stream layout or a norm slot shows up well above the tolerance.

XLM-ProphetNet's oracle classes are deprecated and cannot decode with a cache
(their positional embedding calls ``get_seq_length`` on the legacy tuple), so
cached decoding of an xlm-prophetnet checkpoint is compared with the
``ProphetNet*`` oracle class loaded from the same directory: same architecture,
same parameter names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from oracle import assert_close, assert_outputs_close, oracle_checkpoint, transformers

import xcli_models
from xcli_models.auto import AutoModel
from xcli_models.families.prophetnet import modeling as ours_modeling
from xcli_models.families.prophetnet.config import ProphetNetConfig, XLMProphetNetConfig
from xcli_models.layers import Cache

transformers.logging.set_verbosity_error()

KINDS = ("prophetnet", "xlm-prophetnet")
CLASSES = ("Model", "Encoder", "Decoder", "ForConditionalGeneration", "ForCausalLM")
VOCAB = 61


def prefix(kind: str) -> str:
    return "ProphetNet" if kind == "prophetnet" else "XLMProphetNet"


def oracle_class(kind: str, name: str) -> Any:
    return getattr(transformers, prefix(kind) + name)


def our_class(kind: str, name: str) -> Any:
    return getattr(xcli_models, prefix(kind) + name)


def tiny_config(kind: str, **overrides: Any) -> Any:
    values = dict(
        vocab_size=VOCAB, hidden_size=30, encoder_ffn_dim=22, decoder_ffn_dim=26,
        num_encoder_layers=2, num_decoder_layers=2, num_encoder_attention_heads=3, num_decoder_attention_heads=5,
        max_position_embeddings=40, ngram=2, num_buckets=8, relative_max_distance=12,
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
    )
    values.update(overrides)
    return oracle_class(kind, "Config")(**values)


def perturb(model: Any, seed: int) -> None:
    """Make the parts that default-initialise to something bland matter."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "relative_pos_embeddings.weight" in name:
                param.mul_(30.0)
            elif "layer_norm" in name or "ngram_embeddings" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=gen))


_BUILT: dict[tuple, tuple[Any, Path]] = {}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """(oracle model, directory) for a class, kind, seed and config overrides; built once."""

    def build(kind: str, name: str, seed: int = 0, **overrides: Any) -> tuple[Any, Path]:
        key = (kind, name, seed, tuple(sorted(overrides.items())))
        if key not in _BUILT:
            torch.manual_seed(seed)
            model = oracle_class(kind, name)(tiny_config(kind, **overrides))
            perturb(model, seed)
            directory = tmp_path_factory.mktemp(f"{kind}-{name}-{seed}")
            oracle_checkpoint(model, directory)
            _BUILT[key] = (model, directory)
        return _BUILT[key]

    return build


def ids(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def padded_mask(batch: int, length: int) -> torch.Tensor:
    """Row 0 full, row 1 right-padded, row 2 left-padded (when present)."""
    mask = torch.ones(batch, length, dtype=torch.long)
    if batch > 1:
        mask[1, length - 2:] = 0
    if batch > 2:
        mask[2, :2] = 0
    return mask


def compare(ours: Any, theirs: Any, **inputs: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        a, b = ours(**inputs), theirs(**inputs)
    assert_outputs_close(a, b)
    assert set(a.keys()) == set(b.keys()), f"fields {sorted(a.keys())} vs oracle {sorted(b.keys())}"
    return a, b


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize("kind", KINDS)
def test_config_defaults_and_aliases(kind: str) -> None:
    reference = oracle_class(kind, "Config")().to_dict()
    ours_cls = ProphetNetConfig if kind == "prophetnet" else XLMProphetNetConfig
    ours = ours_cls()
    for field, value in ours_cls.defaults.items():
        assert reference[field] == value, field
        assert getattr(ours, field) == value
    ours.num_attention_heads = 7
    assert ours.num_encoder_attention_heads == 7
    expected_layers = 12 if kind == "prophetnet" else 24
    assert ours.num_hidden_layers == expected_layers
    assert ours.model_type == kind


# ------------------------------------------------------------------ forward
SEQ2SEQ_CASES = [  # kind, seed, batch, source length, target length, config overrides
    ("prophetnet", 0, 3, 7, 6, {}),
    ("prophetnet", 1, 2, 9, 5, {"ngram": 3, "num_decoder_attention_heads": 3, "num_encoder_attention_heads": 5}),
    ("prophetnet", 2, 1, 4, 8, {"ngram": 1, "num_decoder_attention_heads": 1, "activation_function": "relu"}),
    ("xlm-prophetnet", 3, 3, 6, 5, {}),
    ("xlm-prophetnet", 4, 2, 5, 7, {"ngram": 4, "num_buckets": 6, "relative_max_distance": 5}),
]


@pytest.mark.parametrize("kind,seed,batch,src,tgt,overrides", SEQ2SEQ_CASES)
def test_conditional_generation(checkpoint, kind, seed, batch, src, tgt, overrides) -> None:
    ref, directory = checkpoint(kind, "ForConditionalGeneration", seed, **overrides)
    ours = our_class(kind, "ForConditionalGeneration").from_pretrained(directory)
    assert not ours.load_report.lines()
    inputs = dict(
        input_ids=ids(batch, src, seed), attention_mask=padded_mask(batch, src),
        decoder_input_ids=ids(batch, tgt, seed + 1), decoder_attention_mask=padded_mask(batch, tgt),
        labels=ids(batch, tgt, seed + 2), output_attentions=True, output_hidden_states=True,
    )
    compare(ours, ref, **inputs)
    with torch.no_grad():
        mine, theirs = ours(**inputs, return_dict=False), ref(**inputs, return_dict=False)
    assert_close(mine, theirs, what="return_dict=False tuple")


def test_conditional_generation_labels_only(checkpoint) -> None:
    """labels alone: decoder inputs are the labels shifted right (start token, -100 -> pad)."""
    ref, directory = checkpoint("prophetnet", "ForConditionalGeneration", 0)
    ours = our_class("prophetnet", "ForConditionalGeneration").from_pretrained(directory)
    labels = ids(2, 6, 9)
    labels[1, 4:] = -100
    compare(ours, ref, input_ids=ids(2, 5, 8), labels=labels, use_cache=False)


@pytest.mark.parametrize("kind", KINDS)
def test_model_with_head_masks_and_embeds(checkpoint, kind) -> None:
    ref, directory = checkpoint(kind, "Model", 5)
    ours = our_class(kind, "Model").from_pretrained(directory)
    gen = torch.Generator().manual_seed(5)
    head_mask = (torch.rand(2, 3, generator=gen) > 0.3).float()
    decoder_head_mask = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.5], [0.0, 1.0, 1.0, 0.0, 1.0]])
    cross_head_mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0], [1.0, 0.25, 1.0, 1.0, 0.0]])
    source = ids(3, 6, 5)
    compare(
        ours, ref,
        inputs_embeds=ref.word_embeddings(source).detach(), attention_mask=padded_mask(3, 6),
        decoder_input_ids=ids(3, 4, 6), head_mask=head_mask, decoder_head_mask=decoder_head_mask,
        cross_attn_head_mask=cross_head_mask, output_attentions=True, output_hidden_states=True,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_encoder(checkpoint, kind) -> None:
    ref, directory = checkpoint(kind, "Encoder", 6, num_encoder_attention_heads=5)
    ours = our_class(kind, "Encoder").from_pretrained(directory)
    compare(
        ours, ref, input_ids=ids(3, 7, 6), attention_mask=padded_mask(3, 7),
        head_mask=torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.5, 1.0]]),
        output_attentions=True, output_hidden_states=True,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_encoder", [True, False])
def test_decoder(checkpoint, kind, with_encoder) -> None:
    ref, directory = checkpoint(kind, "Decoder", 7, ngram=3)
    ours = our_class(kind, "Decoder").from_pretrained(directory)
    inputs: dict[str, Any] = dict(
        input_ids=ids(3, 6, 7), attention_mask=padded_mask(3, 6), output_attentions=True,
        output_hidden_states=True, use_cache=False,
    )
    if with_encoder:
        encoder_states = torch.randn(3, 5, 30, generator=torch.Generator().manual_seed(7))
        inputs.update(encoder_hidden_states=encoder_states, encoder_attention_mask=padded_mask(3, 5))
    compare(ours, ref, **inputs)


def test_decoder_without_cross_attention(checkpoint) -> None:
    ref, directory = checkpoint("prophetnet", "Decoder", 8, add_cross_attention=False)
    ours = our_class("prophetnet", "Decoder").from_pretrained(directory)
    assert ours.layers[0].cross_attn is None
    compare(ours, ref, input_ids=ids(2, 5, 8), output_attentions=True, output_hidden_states=True)


@pytest.mark.parametrize("kind", KINDS)
def test_causal_lm(checkpoint, kind) -> None:
    ref, directory = checkpoint(kind, "ForCausalLM", 9, eps=0.1)
    ours = our_class(kind, "ForCausalLM").from_pretrained(directory)
    assert ours.config.is_decoder and not ours.config.is_encoder_decoder
    labels = ids(3, 6, 10)
    labels[2, :2] = -100
    compare(
        ours, ref, input_ids=ids(3, 6, 9), attention_mask=padded_mask(3, 6), labels=labels,
        output_attentions=True, output_hidden_states=True,
    )


# ------------------------------------------------------------------- losses
@pytest.mark.parametrize("eps,disable", [(0.0, False), (0.1, False), (0.0, True), (0.2, True)])
@pytest.mark.parametrize("name", ["ForConditionalGeneration", "ForCausalLM"])
def test_losses(checkpoint, name, eps, disable) -> None:
    ref, directory = checkpoint("prophetnet", name, 11, eps=eps, disable_ngram_loss=disable, ngram=3)
    ours = our_class("prophetnet", name).from_pretrained(directory)
    labels = ids(2, 5, 12)
    labels[0, 3:] = -100
    inputs: dict[str, Any] = dict(labels=labels, use_cache=False)
    if name == "ForConditionalGeneration":
        inputs.update(input_ids=ids(2, 6, 11), decoder_input_ids=ids(2, 5, 13))
    else:
        inputs.update(input_ids=ids(2, 5, 11))
    with torch.no_grad():
        a, b = ours(**inputs), ref(**inputs)
    assert_close(a.loss, b.loss, what="loss")
    assert_close(a.logits_ngram, b.logits_ngram, what="logits_ngram")


# ------------------------------------------------------------ cached decode
def _decode_in_step(
    ours: Any, ref: Any, steps: list[torch.Tensor], *, legacy_at: int | None = None,
    fields: list[str] | None = None, ours_kwargs: dict | None = None, ref_kwargs: dict | None = None, **fixed: Any,
) -> None:
    """Run ``steps`` (a prefill chunk, then one token each) through both models' caches and
    compare every step's outputs (caches grow in place, so they are compared as they stand)."""
    key = "decoder_input_ids" if ours_kwargs and "encoder_outputs" in ours_kwargs else "input_ids"
    past_ours = past_ref = None
    length = 0
    with torch.no_grad():
        for i, chunk in enumerate(steps):
            if i == legacy_at:
                past_ours = past_ours.to_legacy()  # the reference's tuple layout is accepted too
            a = ours(**{key: chunk}, past_key_values=past_ours, use_cache=True, **(ours_kwargs or {}), **fixed)
            b = ref(**{key: chunk}, past_key_values=past_ref, use_cache=True, **(ref_kwargs or {}), **fixed)
            assert_outputs_close(a, b, fields=fields)
            length += chunk.shape[1]
            assert isinstance(a.past_key_values, Cache) and a.past_key_values.get_seq_length() == length
            past_ours, past_ref = a.past_key_values, b.past_key_values


def _decode_steps(model: Any, steps: list[torch.Tensor], **fixed: Any) -> list[Any]:
    key = "decoder_input_ids" if "encoder_outputs" in fixed else "input_ids"
    outs, past = [], None
    with torch.no_grad():
        for chunk in steps:
            outs.append(model(**{key: chunk}, past_key_values=past, use_cache=True, **fixed))
            past = outs[-1].past_key_values
    return outs


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_decoding_matches_oracle(checkpoint, kind) -> None:
    _, directory = checkpoint(kind, "ForConditionalGeneration", 12, ngram=3)
    ours = our_class(kind, "ForConditionalGeneration").from_pretrained(directory)
    ref = transformers.ProphetNetForConditionalGeneration.from_pretrained(directory).eval()
    source, mask, target = ids(3, 7, 12), padded_mask(3, 7), ids(3, 6, 13)
    with torch.no_grad():
        encoded_ours = ours.get_encoder()(source, attention_mask=mask)
        encoded_ref = ref.get_encoder()(source, attention_mask=mask)
    _decode_in_step(
        ours, ref, [target[:, :2]] + [target[:, i:i + 1] for i in range(2, 6)],
        legacy_at=3,
        fields=[
            "logits", "logits_ngram", "past_key_values", "decoder_hidden_states", "decoder_ngram_hidden_states",
            "decoder_attentions", "decoder_ngram_attentions", "cross_attentions",
        ],
        ours_kwargs=dict(encoder_outputs=encoded_ours),
        ref_kwargs=dict(encoder_outputs=encoded_ref),
        attention_mask=mask, output_attentions=True, output_hidden_states=True,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_decoding_causal_lm(checkpoint, kind) -> None:
    _, directory = checkpoint(kind, "ForCausalLM", 13)
    ours = our_class(kind, "ForCausalLM").from_pretrained(directory)
    ref = transformers.ProphetNetForCausalLM.from_pretrained(directory).eval()
    prompt = ids(2, 8, 14)
    steps = [prompt[:, :3]] + [prompt[:, i:i + 1] for i in range(3, 8)]
    _decode_in_step(ours, ref, steps, legacy_at=2, output_hidden_states=True, output_attentions=True)


def test_incremental_decoding_equals_full_recomputation(checkpoint) -> None:
    """Cached steps give the logits of recomputing the whole prefix.

    With ngram=1 and one decoder head: for larger shapes the reference's uncached
    predicting-stream bias layout differs from its decode step's (see ngram.py), so
    there the two agree only to the oracle's own cached-vs-full difference.
    """
    ref, directory = checkpoint("prophetnet", "ForConditionalGeneration", 14, ngram=1, num_decoder_attention_heads=1)
    ours = our_class("prophetnet", "ForConditionalGeneration").from_pretrained(directory)
    source, mask, target = ids(2, 6, 15), padded_mask(2, 6), ids(2, 7, 16)
    with torch.no_grad():
        encoded = ours.get_encoder()(source, attention_mask=mask)
        steps = _decode_steps(ours, [target[:, i:i + 1] for i in range(7)], encoder_outputs=encoded, attention_mask=mask)
        full = ours(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=target, use_cache=False)
        oracle_full = ref(input_ids=source, attention_mask=mask, decoder_input_ids=target, use_cache=False)
    stepped = torch.cat([s.logits for s in steps], dim=1)
    assert_close(stepped, full.logits, what="cached vs full logits")
    assert_close(full.logits, oracle_full.logits, what="full logits vs oracle")


def test_decoder_runs_only_the_first_predicting_streams_when_asked(checkpoint) -> None:
    """A one-token step with ``predict_streams=k`` gives the first k streams of the full step."""
    _, directory = checkpoint("prophetnet", "ForConditionalGeneration", 12, ngram=3)
    ours = our_class("prophetnet", "ForConditionalGeneration").from_pretrained(directory)
    decoder = ours.get_decoder()
    source, mask, target = ids(3, 7, 12), padded_mask(3, 7), ids(3, 4, 13)
    with torch.no_grad():
        memory = ours.get_encoder()(source, attention_mask=mask).last_hidden_state
        fixed = dict(encoder_hidden_states=memory, encoder_attention_mask=mask, use_cache=True)
        past = decoder(target[:, :3], **fixed).past_key_values
        step = target[:, 3:]
        full = decoder(step, past_key_values=_copy_cache(past), **fixed)
        for k in (1, 2, 3):
            few = decoder(step, past_key_values=_copy_cache(past), predict_streams=k, **fixed)
            assert few.last_hidden_state_ngram.shape[1] == k
            assert_close(few.last_hidden_state, full.last_hidden_state, what=f"main stream, {k} streams")
            assert_close(few.last_hidden_state_ngram, full.last_hidden_state_ngram[:, :k], what=f"{k} streams")
        with pytest.raises(ValueError, match="one-token"):
            decoder(target, predict_streams=1, use_cache=False, encoder_hidden_states=memory)
        with pytest.raises(ValueError, match="predict_streams"):
            decoder(step, predict_streams=4, use_cache=False, encoder_hidden_states=memory)


def _copy_cache(cache: Cache) -> Cache:
    """A cache that a step extends into new buffers (the legacy views are exactly full)."""
    return Cache.coerce(cache.to_legacy(), len(cache), cross=True)


# ------------------------------------------------------------- save / load
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", CLASSES)
def test_save_pretrained_loads_in_oracle(checkpoint, tmp_path, kind, name) -> None:
    _, directory = checkpoint(kind, name, 15)
    ours = our_class(kind, name).from_pretrained(directory)
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == kind and config["architectures"] == [prefix(kind) + name]
    ref = oracle_class(kind, name).from_pretrained(tmp_path).eval()
    inputs: dict[str, Any] = dict(input_ids=ids(2, 5, 15), attention_mask=padded_mask(2, 5))
    if name in ("Model", "ForConditionalGeneration"):
        inputs.update(decoder_input_ids=ids(2, 4, 16), use_cache=False)
    elif name != "Encoder":
        inputs.update(use_cache=False)
    compare(ours, ref, **inputs)


def test_untied_lm_head_round_trip(checkpoint, tmp_path) -> None:
    ref, directory = checkpoint("prophetnet", "ForConditionalGeneration", 16, tie_word_embeddings=False)
    ours = our_class("prophetnet", "ForConditionalGeneration").from_pretrained(directory)
    assert ours.lm_head.weight is not ours.prophetnet.word_embeddings.weight
    assert ours.prophetnet.encoder.word_embeddings.weight is ours.prophetnet.word_embeddings.weight
    inputs = dict(input_ids=ids(2, 5, 17), decoder_input_ids=ids(2, 4, 18), use_cache=False)
    compare(ours, ref, **inputs)
    ours.save_pretrained(tmp_path)
    compare(ours, transformers.ProphetNetForConditionalGeneration.from_pretrained(tmp_path).eval(), **inputs)


def test_causal_lm_from_seq2seq_checkpoint(checkpoint) -> None:
    """A full checkpoint loads into the decoder-only class (encoder weights reported unused)."""
    _, directory = checkpoint("prophetnet", "ForConditionalGeneration", 0)
    ours = our_class("prophetnet", "ForCausalLM").from_pretrained(directory)
    assert ours.load_report.unexpected and all(".encoder." in n for n in ours.load_report.unexpected)
    ref = transformers.ProphetNetForCausalLM.from_pretrained(directory).eval()
    compare(ours, ref, input_ids=ids(2, 5, 19), use_cache=False)


@pytest.mark.parametrize("kind", KINDS)
def test_auto_model_reads_architectures(checkpoint, kind) -> None:
    _, directory = checkpoint(kind, "ForCausalLM", 13)
    model = AutoModel.from_pretrained(directory)
    assert type(model) is our_class(kind, "ForCausalLM")
    assert type(model.config) is (ProphetNetConfig if kind == "prophetnet" else XLMProphetNetConfig)


# ----------------------------------------------------------------- training
def test_train_mode_dropout_and_gradients(checkpoint) -> None:
    _, directory = checkpoint("prophetnet", "ForConditionalGeneration", 0)
    model = our_class("prophetnet", "ForConditionalGeneration").from_pretrained(directory)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    inputs = dict(input_ids=ids(2, 6, 20), labels=ids(2, 5, 21))
    torch.manual_seed(0)
    first = model(**inputs)
    second = model(**inputs)
    assert not torch.allclose(first.logits, second.logits), "dropout is not active in train mode"
    first.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["prophetnet.decoder.layers.0.self_attn.relative_bias.weight"].abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs).logits)


def test_ngram_loss_helper_shapes() -> None:
    logits = torch.randn(2, 3, 4, 11)
    labels = torch.randint(0, 11, (2, 4))
    full = ours_modeling.ngram_loss(logits, labels)
    first_only = ours_modeling.ngram_loss(logits, labels, disable_ngram_loss=True)
    expected = torch.nn.functional.cross_entropy(logits[:, 0].reshape(-1, 11), labels.reshape(-1))
    assert torch.allclose(first_only, expected, atol=1e-6)
    assert full.shape == first_only.shape == ()
