"""``xcli convert --quantize int8|int4``: quantized checkpoints (xcli_models/quantized_checkpoint.py).

The stored integers and scales are those on-the-fly quantization makes, so a quantized checkpoint
gives outputs identical to ``--quantize`` on its float source (every family, XLNet's per-head
projections included, in Python and through classify, generate, score, fill-mask and qa); it is
loaded from the memory map without float weights for its projections; ``convert --dtype float32``
turns it back into a float checkpoint the reference loads; the command line says what a quantized
checkpoint cannot do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from xcli.app import app
from xcli_models import native
from xcli_models.convert import convert_checkpoint, sample_inputs
from xcli_models.hardware import fast_bfloat16
from xcli_models.loading import read_safetensors
from xcli_models.quantize import (
    Int4WeightOnlyLinear, Int8Linear, Int8WeightOnlyLinear, int8_available, quantize_dynamic_int8,
    quantize_weight_only,
)

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not int8_available(), reason="this torch has no oneDNN int8 linear"),
]
runner = CliRunner()
needs_bf16 = pytest.mark.skipif(not fast_bfloat16(), reason="weight-only kernels want a CPU with fast bfloat16")

#: sizes whose projections torch's int4 kernel takes (inputs a multiple of 64, outputs of 16), so that an
#: int4 checkpoint holds int4 weights (an LM head over an odd vocabulary stays int8, as on the fly)
SIZES = {
    "xglm": dict(d_model=64, ffn_dim=128),
    "xlnet": dict(d_model=64, d_inner=128),
    "mvp": dict(d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128),
    "prophetnet": dict(hidden_size=64, encoder_ffn_dim=128, decoder_ffn_dim=128),
    "xlm": dict(emb_dim=64),
}
CLASSES = ["XGLMForCausalLM", "XLNetLMHeadModel", "XLNetForSequenceClassification", "MvpForConditionalGeneration",
           "MvpForSequenceClassification", "ProphetNetForConditionalGeneration", "XLMWithLMHeadModel",
           "XLMForSequenceClassification"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """class name -> mode ("float", "int8", "int4") -> checkpoint directory, built on first use."""
    from task_fixtures import build_native, native_family

    root = tmp_path_factory.mktemp("quantized")
    made: dict[tuple[str, str], Path] = {}

    def get(class_name: str, mode: str = "float") -> Path:
        if (class_name, mode) not in made:
            if mode == "float":
                family = native_family(class_name)
                made[class_name, mode] = build_native(root / class_name, class_name, **SIZES[family])
            else:
                convert_checkpoint(get(class_name), root / f"{class_name}-{mode}", quantize=mode)
                made[class_name, mode] = root / f"{class_name}-{mode}"
        return made[class_name, mode]

    return get


def _outputs(model: Any) -> list[torch.Tensor]:
    from xcli_models.convert import _flatten

    with torch.inference_mode():
        out = model(**sample_inputs(model))
    return [t for key, value in out.items() for _, t in _flatten(value, key) if t.is_floating_point()]


def _on_the_fly(path: Path, mode: str, weight_only: bool) -> Any:
    from xcli_models.auto import AutoModel

    model = AutoModel.class_for(path).from_pretrained(path)
    if mode == "int8" and not weight_only:
        quantize_dynamic_int8(model)
    else:
        quantize_weight_only(model, bits=int(mode[3:]))
    return model


# ------------------------------------------------------------------------------------------- format
def test_the_stored_tensors_are_the_documented_ones(checkpoints: Any) -> None:
    source, path = checkpoints("XGLMForCausalLM"), checkpoints("XGLMForCausalLM", "int8")
    config = json.loads((path / "config.json").read_text())
    entry = config["quantization"]
    assert entry["method"] == "xcli" and entry["version"] == 2 and entry["bits"] == 8 and entry["group_size"] is None
    state, floats = read_safetensors(path / "model.safetensors"), read_safetensors(source / "model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    # blocked: 8 output channels at a time, 16 inputs of each after another (ceil(out / 8), in / 16, 8, 16)
    assert entry["modules"][q] == 8 and state[q].dtype == torch.int8 and tuple(state[q].shape) == (8, 4, 8, 16)
    rows = state[q].transpose(1, 2).reshape(64, 64)
    assert torch.equal(rows[9, 16:32], state[q][1, 1, 1])  # channel 9 = block 1, row 1; inputs 16..31 = group 1
    assert state[q + "_scale"].dtype == torch.float32 and tuple(state[q + "_scale"].shape) == (64,)
    expected = floats[q].abs().amax(dim=1) / 127
    assert torch.equal(state[q + "_scale"], expected)
    assert (rows.float() * state[q + "_scale"][:, None] - floats[q]).abs().max() <= expected.max() / 2 + 1e-7
    # embeddings, norms and biases stay float; the tied LM head has its own int8 copy
    assert state["model.embed_tokens.weight"].dtype == torch.float32
    assert state["model.layers.0.self_attn.q_proj.bias"].dtype == torch.float32
    assert state["lm_head.weight"].dtype == torch.int8 and "lm_head.weight" not in floats


def test_an_int4_checkpoint_packs_levels_in_groups_of_64(checkpoints: Any) -> None:
    from xcli_models.quantize import INT4_GROUP, unpack_int4

    source, path = checkpoints("XGLMForCausalLM"), checkpoints("XGLMForCausalLM", "int4")
    entry = json.loads((path / "config.json").read_text())["quantization"]
    assert entry["bits"] == 4 and entry["group_size"] == INT4_GROUP
    state, floats = read_safetensors(path / "model.safetensors"), read_safetensors(source / "model.safetensors")
    name = "model.layers.0.fc1.weight"  # (128, 64)
    assert entry["modules"][name] == 4 and state[name].dtype == torch.uint8 and tuple(state[name].shape) == (128, 32)
    scale, low = state[name + "_scale"], state[name + "_min"]
    assert tuple(scale.shape) == tuple(low.shape) == (128, 1)
    values = low[..., None] + unpack_int4(state[name]).float().reshape(128, 1, 64) * scale[..., None]
    assert (values.reshape(128, 64) - floats[name]).abs().max() <= scale.max() / 2 + 1e-6
    vocab = state["model.embed_tokens.weight"].shape[0]
    assert entry["modules"]["lm_head.weight"] == (4 if vocab % 16 == 0 else 8)


def test_the_quantized_weights_start_on_64_byte_boundaries(checkpoints: Any) -> None:
    path = checkpoints("XLNetLMHeadModel", "int8")
    modules = json.loads((path / "config.json").read_text())["quantization"]["modules"]
    state = read_safetensors(path / "model.safetensors")
    for name in modules:
        if state[name].numel() % 64 == 0:
            assert state[name].data_ptr() % 64 == 0, name


# --------------------------------------------------------------------------- identical to on the fly
@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("mode", ["int8", "int8-weight-only", "int4"])
def test_a_quantized_checkpoint_gives_what_on_the_fly_quantization_gives(checkpoints: Any, class_name: str,
                                                                       mode: str) -> None:
    from xcli_models.auto import AutoModel

    weight_only = mode != "int8"
    if weight_only and not fast_bfloat16():
        pytest.skip("weight-only kernels want a CPU with fast bfloat16")
    bits = mode[:4]
    path = checkpoints(class_name, bits)
    stored = AutoModel.class_for(path).from_pretrained(path, weight_only=weight_only)
    fly = _on_the_fly(checkpoints(class_name), bits, weight_only)
    kinds = {type(m) for m in stored.modules()} & {Int8Linear, Int8WeightOnlyLinear, Int4WeightOnlyLinear}
    assert kinds == {type(m) for m in fly.modules()} & {Int8Linear, Int8WeightOnlyLinear, Int4WeightOnlyLinear}
    assert not any(isinstance(m, torch.nn.Linear) for m in stored.modules())
    # the feed-forwards' GELU taken into their int8 weight-only up projections, from the file as on the fly
    taken = [m.activation for m in stored.modules() if isinstance(m, Int8WeightOnlyLinear)]
    assert taken == [m.activation for m in fly.modules() if isinstance(m, Int8WeightOnlyLinear)]
    assert ("gelu" in taken) == (mode == "int8-weight-only")
    for a, b in zip(_outputs(stored), _outputs(fly), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("class_name", CLASSES)
def test_projections_of_one_input_joined_give_what_each_gives_alone(checkpoints: Any, class_name: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-attention's queries, keys and values (ProphetNet's relative bias too) as one int8
    product (``quantize.fuse_projections``): the model's outputs, and its generated tokens and
    scores, bit for bit those of the projections computed one by one. Weight-only layers stay apart."""
    from xcli_models import quantize

    joined = _on_the_fly(checkpoints(class_name), "int8", weight_only=False)
    weight_only = _on_the_fly(checkpoints(class_name), "int8", weight_only=True)
    monkeypatch.setattr(quantize, "fuse_projections", lambda model: 0)
    alone = _on_the_fly(checkpoints(class_name), "int8", weight_only=False)
    attentions = [m for m in joined.modules() if hasattr(m, "SAME_INPUT")]
    fused = [m for m in attentions if m.together is not None]
    cross = [m for m in joined.modules() if getattr(m, "cross_attn", None) is not None]
    assert fused and len(fused) + len(cross) == len(attentions)  # every self-attention (cross-attention stays)
    assert all(m.together is None for m in alone.modules() if hasattr(m, "SAME_INPUT"))
    assert not any(hasattr(m, "SAME_INPUT") and m.together is not None for m in weight_only.modules())
    for a, b in zip(_outputs(joined), _outputs(alone), strict=True):
        assert torch.equal(a, b)
    # a role asked alone (a path that does not take them together) gives its part of the product
    name, first = next((n, m) for n, m in joined.named_modules() if m in fused)
    separate = dict(alone.named_modules())[name]
    x = torch.randn(2, 3, first.together.linear.in_features)
    with torch.inference_mode():
        for role in first.SAME_INPUT:
            assert torch.equal(getattr(first, role)(x), getattr(separate, role)(x))
    if "ForSequenceClassification" not in class_name:  # the language models: decode steps too
        ids = sample_inputs(joined)["input_ids"][:, :5]
        settings = dict(max_new_tokens=4, min_new_tokens=4, num_beams=2, output_scores=True,
                        return_dict_in_generate=True)
        with torch.inference_mode():
            a, b = joined.generate(ids, **settings), alone.generate(ids, **settings)
        assert torch.equal(a.sequences, b.sequences)
        assert all(torch.equal(x, y) for x, y in zip(a.scores, b.scores, strict=True))


def test_xlnets_joined_projections_take_memory_and_both_streams(checkpoints: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """XLNet's one product covers the memory's, the tokens' and the query stream's rows, each
    projection taking the rows it needs: with ``mems``, a ``perm_mask`` and a ``target_mapping``,
    bit for bit what the projections give one by one."""
    from xcli_models import quantize

    joined = _on_the_fly(checkpoints("XLNetLMHeadModel"), "int8", weight_only=False)
    monkeypatch.setattr(quantize, "fuse_projections", lambda model: 0)
    alone = _on_the_fly(checkpoints("XLNetLMHeadModel"), "int8", weight_only=False)
    ids = sample_inputs(joined)["input_ids"][:, :6]
    perm = torch.zeros(ids.shape[0], 6, 6)
    perm[:, :, -1] = 1.0  # nobody sees the last token, which is predicted
    mapping = torch.zeros(ids.shape[0], 1, 6)
    mapping[:, 0, -1] = 1.0
    with torch.inference_mode():
        outs = []
        for model in (joined, alone):
            first = model(ids, use_mems=True)
            outs.append(model(ids, mems=first.mems, perm_mask=perm, target_mapping=mapping, use_mems=True))
    assert torch.equal(outs[0].logits, outs[1].logits)
    assert all(torch.equal(a, b) for a, b in zip(outs[0].mems, outs[1].mems, strict=True))


def test_xlnet_per_head_projections_are_stored_as_their_products(checkpoints: Any) -> None:
    from xcli_models.quantize import _Headwise

    path = checkpoints("XLNetForSequenceClassification", "int8")
    state = read_safetensors(path / "model.safetensors")
    assert tuple(state["transformer.layer.0.rel_attn.q"].shape) == (8, 4, 8, 16)  # (H * Dh, D), blocked
    from xcli_models import XLNetForSequenceClassification

    model = XLNetForSequenceClassification.from_pretrained(path)
    attention = model.transformer.layers[0].self_attn
    assert all(isinstance(getattr(attention, role), _Headwise) for role in ("output", "position"))
    # q, k and v as one product of their joined weights, each role a slice of it
    assert [getattr(attention, role).index for role in ("query", "key", "value")] == [0, 1, 2]
    assert attention.together.linear.out_features == 3 * 64


RUNS = [("classify", "XLNetForSequenceClassification", "int8"), ("classify", "MvpForSequenceClassification", "int8"),
        ("classify", "XLMForSequenceClassification", "int8"), ("generate", "XGLMForCausalLM", "int8"),
        ("generate", "XLNetLMHeadModel", "int8"), ("generate", "MvpForConditionalGeneration", "int8"),
        ("generate", "ProphetNetForConditionalGeneration", "int8"), ("generate", "XGLMForCausalLM", "int4"),
        ("generate", "XLNetLMHeadModel", "int4"), ("score", "XGLMForCausalLM", "int8"),
        ("fill-mask", "XLNetLMHeadModel", "int8"), ("fill-mask", "MvpForConditionalGeneration", "int8"),
        ("qa", "MvpForQuestionAnswering", "int8"), ("qa", "XLNetForQuestionAnsweringSimple", "int8")]


@pytest.mark.parametrize(("command", "class_name", "mode"), RUNS, ids=["-".join(r) for r in RUNS])
def test_commands_print_the_same_from_the_checkpoint_and_on_the_fly(checkpoints: Any, command: str,
                                                                     class_name: str, mode: str) -> None:
    if mode == "int4" and not fast_bfloat16():
        pytest.skip("int4 wants a CPU with fast bfloat16")
    texts = ["The cat sat on the mat.", "A gripping, funny film about nothing at all", "no"]
    records = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    if command == "fill-mask":
        records = records.replace("mat", "<mask>").replace("film", "<mask>").replace("no", "<mask>")
    if command == "qa":
        records = "".join(json.dumps({"question": "Who sat?", "context": t}) + "\n" for t in texts)
    extra = ["--max-new-tokens", "6"] if command == "generate" else []
    args = [command, "--no-server", *extra, "-m"]
    fly = runner.invoke(app, [*args, str(checkpoints(class_name)), "--quantize", mode], input=records)
    stored = runner.invoke(app, [*args, str(checkpoints(class_name, mode))], input=records)
    again = runner.invoke(app, [*args, str(checkpoints(class_name, mode)), "--quantize", mode], input=records)
    assert fly.exit_code == stored.exit_code == again.exit_code == 0, stored.stderr
    assert stored.stdout == fly.stdout == again.stdout and len(stored.stdout.splitlines()) == 3
    if command == "generate":
        assert f"an {mode} checkpoint: the generated text may differ" in stored.stderr


# -------------------------------------------------------------------------------------------- loading
def _mapped_files() -> list[tuple[int, int, str]]:
    spans = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            spans.append((start, end, parts[5]))
    return spans


def _version_1(path: Path, directory: Path) -> Path:
    """``path`` (an int8 checkpoint) as xcli wrote it before version 2: every int8 weight (out, in)."""
    import shutil

    from xcli_models.loading import write_weights

    shutil.copytree(path, directory)
    config = json.loads((directory / "config.json").read_text())
    config["quantization"]["version"] = 1
    (directory / "config.json").write_text(json.dumps(config))
    state = dict(read_safetensors(path / "model.safetensors"))
    for name in config["quantization"]["modules"]:
        if state[name].dim() == 4:
            state[name] = native.unblock_rows(state[name], state[name + "_scale"].shape[0]).clone()
    write_weights(state, directory, first=set(config["quantization"]["modules"]))
    return directory


def _assert_mapped(path: Path, pointers: list[int]) -> None:
    file = str((path / "model.safetensors").resolve())
    spans = [(s, e) for s, e, name in _mapped_files() if name == file]
    assert all(any(s <= p < e for s, e in spans) for p in pointers), "an int8 weight was copied out of the memory map"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
@pytest.mark.skipif(native.int8_kernel() is None, reason="xcli's int8 kernel cannot be had here")
def test_weight_only_int8_layers_use_the_memory_map(checkpoints: Any) -> None:
    """The blocked int8 weights a generating model multiplies are the file's pages, not a copy; the
    model holds no float copy of any quantized projection."""
    from xcli_models import XGLMForCausalLM

    path = checkpoints("XGLMForCausalLM", "int8")
    model = XGLMForCausalLM.from_pretrained(path, weight_only=True)
    layers = [m for m in model.modules() if isinstance(m, Int8WeightOnlyLinear)]
    assert len(layers) >= 6 and all(layer.native for layer in layers)
    _assert_mapped(path, [layer.blocked.data_ptr() for layer in layers])
    floats = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    assert floats < embedding + 64 * 64  # embeddings, positions and norms: no projection weight in float


@pytest.mark.parametrize("kernel", ["xcli's", "torch's"])
def test_a_version_1_checkpoint_loads_to_the_same_model(checkpoints: Any, tmp_path: Path, kernel: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Int8 weights stored (out, in), as before version 2: the same outputs as the blocked checkpoint
    (torch's kernel uses them from the memory map); ``convert`` re-packs them into version 2."""
    from xcli_models import XGLMForCausalLM

    if kernel == "torch's":
        if not fast_bfloat16():
            pytest.skip("torch's weight-only kernel wants a CPU with fast bfloat16")
        monkeypatch.setattr(native, "int8_kernel", lambda: None)
    elif native.int8_kernel() is None:
        pytest.skip("xcli's int8 kernel cannot be had here")
    path = checkpoints("XGLMForCausalLM", "int8")
    old = _version_1(path, tmp_path / "v1")
    for weight_only in (False, True):
        before = XGLMForCausalLM.from_pretrained(old, weight_only=weight_only)
        after = XGLMForCausalLM.from_pretrained(path, weight_only=weight_only)
        for a, b in zip(_outputs(before), _outputs(after), strict=True):
            assert torch.equal(a, b)
    if kernel == "torch's" and Path("/proc/self/maps").exists():
        _assert_mapped(old, [m.weight_int8.data_ptr() for m in before.modules() if isinstance(m, Int8WeightOnlyLinear)])
    repacked = convert_checkpoint(old, tmp_path / "v2")
    assert repacked.check.passed and repacked.quantization == "int8"
    assert json.loads((tmp_path / "v2" / "config.json").read_text())["quantization"]["version"] == 2
    written, expected = read_safetensors(tmp_path / "v2" / "model.safetensors"), read_safetensors(path / "model.safetensors")
    assert written.keys() == expected.keys() and all(torch.equal(written[k], expected[k]) for k in expected)


def test_from_pretrained_gives_the_quantized_model(checkpoints: Any) -> None:
    from xcli_models import XLNetForSequenceClassification

    path = checkpoints("XLNetForSequenceClassification", "int8")
    model = XLNetForSequenceClassification.from_pretrained(path)
    assert {type(m) for m in model.modules()} & {Int8Linear, Int8WeightOnlyLinear} == {Int8Linear}
    assert model.load_report.lines() == []
    with pytest.raises(Exception, match="runs on the CPU"):
        XLNetForSequenceClassification.from_pretrained(path, device="meta")
    with pytest.raises(ValueError, match="cannot be saved"):
        model.save_pretrained(path.parent / "saved")


# ------------------------------------------------------------------------------------------ back to float
@pytest.mark.parametrize("class_name", ["XGLMForCausalLM", "XLNetLMHeadModel", "MvpForConditionalGeneration"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_dequantized_checkpoints_load_in_the_reference(checkpoints: Any, tmp_path: Path, class_name: str,
                                                       mode: str) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    from xcli_models.auto import AutoModel

    back = tmp_path / "float"
    result = convert_checkpoint(checkpoints(class_name, mode), back, dtype="float32")
    assert result.quantization is None and result.check is not None and result.check.passed
    config = json.loads((back / "config.json").read_text())
    assert "quantization" not in config
    ours = AutoModel.class_for(back).from_pretrained(back)
    theirs = getattr(transformers, class_name).from_pretrained(back).eval()
    inputs = sample_inputs(ours)
    with torch.inference_mode():
        a, b = ours(**inputs).logits, theirs(**inputs).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    quantized = AutoModel.class_for(checkpoints(class_name, mode)).from_pretrained(checkpoints(class_name, mode))
    assert (_outputs(quantized)[0] - a).abs().max() <= 0.1 * max(1.0, float(a.abs().max()))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantizing_a_dequantized_checkpoint_gives_the_same_integers(checkpoints: Any, tmp_path: Path,
                                                                     mode: str) -> None:
    first = checkpoints("XLNetLMHeadModel", mode)
    convert_checkpoint(first, tmp_path / "float", dtype="float32")
    convert_checkpoint(tmp_path / "float", tmp_path / "again", quantize=mode)
    a, b = read_safetensors(first / "model.safetensors"), read_safetensors(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        if a[name].is_floating_point():
            assert torch.allclose(a[name], b[name], rtol=1e-6, atol=1e-7), name
        else:
            assert torch.equal(a[name], b[name]), name


def test_a_quantized_checkpoint_repacks_into_shards(checkpoints: Any, tmp_path: Path) -> None:
    result = convert_checkpoint(checkpoints("XGLMForCausalLM", "int8"), tmp_path / "s", max_shard_size="200kB")
    assert result.quantization == "int8" and result.shards > 1 and result.check.exact and result.check.passed


# ------------------------------------------------------------------------------------------- command line
def test_convert_quantize_through_the_command_line(checkpoints: Any, tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(checkpoints("XLNetForSequenceClassification")), str(tmp_path / "q"),
                                 "--quantize", "int8"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["quantization"] == "int8" and summary["check"]["exact"] and summary["check"]["passed"]
    shown = runner.invoke(app, ["info", str(tmp_path / "q"), "-O", "text"])
    assert shown.exit_code == 0 and "int8 (" in shown.stdout and "projections" in shown.stdout
    data = json.loads(runner.invoke(app, ["info", str(tmp_path / "q")]).stdout)
    assert data["quantization"]["mode"] == "int8" and "train" not in data["commands"]


def _usage(args: list[str], needle: str, records: str | None = None) -> None:
    result = runner.invoke(app, args, input=records)
    assert result.exit_code == 2, (args, result.exit_code, result.stderr)
    assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_what_a_quantized_checkpoint_cannot_do_is_a_usage_error(checkpoints: Any, tmp_path: Path) -> None:
    int8, int4 = checkpoints("XGLMForCausalLM", "int8"), checkpoints("XGLMForCausalLM", "int4")
    source = checkpoints("XGLMForCausalLM")
    _usage(["generate", "--no-server", "-m", str(int8), "--quantize", "int4", "hi"], "holds int8 weights already")
    _usage(["score", "--no-server", "-m", str(int4), "hi"], "--dtype float32")
    _usage(["generate", "--no-server", "-m", str(int8), "--dtype", "bfloat16", "hi"], "an int8 checkpoint computes")
    _usage(["convert", str(int8), str(tmp_path / "x"), "--quantize", "int4"], "holds int8 weights already")
    _usage(["convert", str(source), str(tmp_path / "x"), "--quantize", "int8", "--format", "bin"], "safetensors")
    _usage(["convert", str(source), str(tmp_path / "x"), "--quantize", "int8", "--dtype", "bfloat16"], "no --dtype")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "LABEL_0"}\n')
    _usage(["train", "--train", str(tmp_path / "train.jsonl"), "-o", str(tmp_path / "t"), "-m",
            str(checkpoints("XLNetForSequenceClassification", "int8")), "--device", "cpu"], "cannot learn")
    assert not (tmp_path / "x").exists()


def test_evaluate_runs_an_int8_checkpoint(checkpoints: Any) -> None:
    records = "".join(json.dumps({"text": t, "label": "LABEL_1"}) + "\n" for t in ["good", "bad film", "fine"])
    path = checkpoints("XLNetForSequenceClassification")
    fly = runner.invoke(app, ["evaluate", "--no-server", "-i", "-", "-m", str(path), "--quantize", "int8"],
                        input=records)
    stored = runner.invoke(app, ["evaluate", "--no-server", "-i", "-", "-m",
                                 str(checkpoints("XLNetForSequenceClassification", "int8"))], input=records)
    assert fly.exit_code == stored.exit_code == 0, stored.stderr
    assert json.loads(fly.stdout)["accuracy"] == json.loads(stored.stdout)["accuracy"]


def test_an_int4_checkpoint_without_its_minima_is_refused_in_one_line(checkpoints: Any, tmp_path: Path) -> None:
    """(The hostile corpus, tests/hostile_checkpoints.py, breaks int8 checkpoints; its tiny shapes hold no int4.)"""
    import shutil

    from safetensors.torch import save_file

    broken = tmp_path / "int4"
    shutil.copytree(checkpoints("XGLMForCausalLM", "int4"), broken)
    state = {k: v.clone() for k, v in read_safetensors(broken / "model.safetensors").items()}
    del state["model.layers.0.fc1.weight_min"]
    save_file(state, str(broken / "model.safetensors"))
    for args in (["generate", "--no-server", "-m", str(broken), "hi"], ["info", str(broken)],
                 ["convert", str(broken), str(tmp_path / "back"), "--dtype", "float32"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and result.stdout == "", (args, result.stderr)
        lines = result.stderr.splitlines()
        assert lines[-1] == "xcli: error: cannot load the checkpoint: " + (
            f"{broken}: model.layers.0.fc1.weight_min is missing (int4 weights need it)"), result.stderr
    assert not (tmp_path / "back").exists()


def test_a_base_model_reads_a_quantized_task_checkpoint(checkpoints: Any) -> None:
    """As from a float checkpoint: the head's weights are reported unused, the rest is what --quantize makes."""
    from xcli_models import XGLMModel

    stored = XGLMModel.from_pretrained(checkpoints("XGLMForCausalLM", "int8"))
    fly = XGLMModel.from_pretrained(checkpoints("XGLMForCausalLM"))
    quantize_dynamic_int8(fly)
    assert stored.load_report.unexpected == ["lm_head.weight", "lm_head.weight_scale"]
    ids = torch.tensor([[5, 9, 13, 2]])
    with torch.inference_mode():
        assert torch.equal(stored(input_ids=ids).last_hidden_state, fly(input_ids=ids).last_hidden_state)
