"""The generic loading and saving machinery (xcli_models.loading / modeling / auto), on tiny XGLM checkpoints.

The layouts (safetensors, shards, .bin, bfloat16) as xcli writes them and as the reference writes
them, zero-copy loading, base <-> task checkpoints, AutoModel, and a one-line CheckpointError for
every kind of broken or hostile checkpoint. The checkpoints are xcli's own, so these tests run
without the reference; it is used only where it is the point (the layouts it writes, xcli's
checkpoints loading in it, the published configs), and those tests skip without it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from compare import assert_close, reference
from xcli_models import AutoConfig, AutoModel, CheckpointError, XGLMConfig, XGLMForCausalLM, XGLMModel
from xcli_models.loading import read_safetensors, weight_files

TINY = dict(vocab_size=97, d_model=24, ffn_dim=40, num_layers=2, attention_heads=3, max_position_embeddings=32)


def tiny(seed: int = 0, cls: str = "XGLMForCausalLM", writer: str = "xcli", **overrides):
    """A random tiny XGLM model of xcli's (``writer="xcli"``) or of the reference's, in eval mode."""
    import xcli_models

    library = xcli_models if writer == "xcli" else reference()
    torch.manual_seed(seed)
    return getattr(library, cls)(library.XGLMConfig(**{**TINY, **overrides})).eval()


def saved(tmp_path: Path, name: str = "ckpt", seed: int = 0, cls: str = "XGLMForCausalLM", save=None,
          writer: str = "xcli", **overrides):
    """(the model, the directory it was saved to with ``save`` kwargs) by ``writer``'s ``save_pretrained``."""
    model = tiny(seed, cls, writer, **overrides)
    directory = tmp_path / name
    model.save_pretrained(directory, **(save or {}))
    return model, directory


#: the two libraries whose checkpoints xcli loads; the reference's skip where it is absent
WRITERS = pytest.mark.parametrize("writer", ["xcli", "reference"])


IDS = torch.tensor([[5, 9, 33, 2, 17, 60], [1, 1, 4, 8, 15, 16]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


def same_outputs(ours, ref, atol: float = 1e-4) -> None:
    with torch.no_grad():
        mine = ours(input_ids=IDS.to(ours.device), attention_mask=MASK.to(ours.device), output_hidden_states=True)
        theirs = ref(input_ids=IDS, attention_mask=MASK, output_hidden_states=True)
    for name in ("logits", "last_hidden_state", "hidden_states"):
        if name in theirs:
            assert_close(getattr(mine, name).cpu() if name != "hidden_states" else [t.cpu() for t in mine[name]],
                         theirs[name], atol=atol, what=name)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message and len(message) < 600, message
    return message


# ------------------------------------------------------------------ layouts xcli and the reference write
@WRITERS
def test_single_safetensors(tmp_path, writer):
    ref, directory = saved(tmp_path, writer=writer)
    assert [p.name for p in weight_files(directory)] == ["model.safetensors"]
    ours = XGLMForCausalLM.from_pretrained(directory)
    assert not ours.training and not ours.load_report.lines()
    same_outputs(ours, ref)


@WRITERS
def test_sharded_safetensors(tmp_path, writer):
    ref, directory = saved(tmp_path, save=dict(max_shard_size="20KB"), writer=writer)
    files = weight_files(directory)
    assert len(files) > 2 and (directory / "model.safetensors.index.json").exists()
    same_outputs(XGLMForCausalLM.from_pretrained(directory), ref)


@WRITERS
@pytest.mark.parametrize("shard", [None, "20KB"])
def test_pytorch_model_bin(tmp_path, shard, writer):
    save = dict(safe_serialization=False, **({"max_shard_size": shard} if shard else {}))
    ref, directory = saved(tmp_path, save=save, writer=writer)
    names = {p.name for p in weight_files(directory)}
    assert all(n.endswith(".bin") for n in names) and (len(names) > 1) == bool(shard)
    same_outputs(XGLMForCausalLM.from_pretrained(directory), ref)


@WRITERS
def test_bfloat16_checkpoint_and_dtype_argument(tmp_path, writer):
    ref = tiny(1, writer=writer).to(torch.bfloat16)
    directory = tmp_path / "bf16"
    ref.save_pretrained(directory)
    assert read_safetensors(directory / "model.safetensors")["model.embed_tokens.weight"].dtype == torch.bfloat16

    ours = XGLMForCausalLM.from_pretrained(directory)  # float32 unless asked
    assert ours.dtype == torch.float32
    widened = tiny(1, writer=writer)  # the saved bfloat16 weights, widened
    widened.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    same_outputs(ours, widened)

    auto = XGLMForCausalLM.from_pretrained(directory, dtype="auto")  # the checkpoint's own dtype
    assert {p.dtype for p in auto.parameters()} == {torch.bfloat16}
    same_outputs(auto, ref, atol=0.05)

    half = XGLMForCausalLM.from_pretrained(directory, dtype="float16")
    assert half.dtype == torch.float16 and half.lm_head.weight is half.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.isfinite(half(input_ids=IDS, attention_mask=MASK).logits).all()
    with pytest.raises(ValueError, match="unknown dtype"):
        XGLMForCausalLM.from_pretrained(directory, dtype="int3")


def test_device_argument(tmp_path):
    ref, directory = saved(tmp_path)
    ours = XGLMForCausalLM.from_pretrained(directory, device="cpu")
    assert {p.device.type for p in ours.parameters()} == {"cpu"}
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for device='cuda'")
    gpu = XGLMForCausalLM.from_pretrained(directory, device="cuda")
    assert {t.device.type for t in [*gpu.parameters(), *gpu.buffers()]} == {"cuda"}
    same_outputs(gpu, ref)


def test_config_argument_and_overrides(tmp_path):
    ref, directory = saved(tmp_path)
    ours = XGLMForCausalLM.from_pretrained(directory, output_hidden_states=True)
    with torch.no_grad():
        assert len(ours(input_ids=IDS).hidden_states) == TINY["num_layers"] + 1
    config = XGLMConfig.from_pretrained(directory, use_cache=False)
    ours = XGLMForCausalLM.from_pretrained(directory, config=config)
    with torch.no_grad():
        assert ours(input_ids=IDS).past_key_values is None


# ------------------------------------------------------------------ zero copy
def _file_mappings(file: Path) -> list[tuple[int, int]]:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    target = str(file.resolve())
    spans = []
    for line in maps.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == target:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            spans.append((start, end))
    return spans


@pytest.mark.parametrize("shard", [None, "20KB"])
def test_float32_safetensors_load_is_zero_copy(tmp_path, shard):
    """Every parameter's storage lies inside a memory map of a checkpoint file: nothing was copied."""
    _, directory = saved(tmp_path, save=dict(max_shard_size=shard) if shard else None)
    ours = XGLMForCausalLM.from_pretrained(directory)
    spans = [span for file in weight_files(directory) for span in _file_mappings(file)]
    assert spans, "no memory map of the checkpoint is open"
    for name, param in ours.named_parameters():
        ptr = param.untyped_storage().data_ptr()
        assert any(start <= ptr < end for start, end in spans), f"{name} was copied out of the map"
    assert ours.lm_head.weight is ours.model.embed_tokens.weight  # tied, not copied
    # the copy-on-write map keeps the file itself unchanged when parameters are trained in place
    before = (directory / "model.safetensors").read_bytes() if not shard else None
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(1.0)
    if before is not None:
        assert (directory / "model.safetensors").read_bytes() == before


def test_save_over_the_mapped_checkpoint(tmp_path):
    """Saving into the directory a model was loaded from (and mapped) must not pull the file from under it."""
    ref, directory = saved(tmp_path)
    ours = XGLMForCausalLM.from_pretrained(directory)
    ours.save_pretrained(directory, max_shard_size="20KB")
    assert not (directory / "model.safetensors").exists()  # the stale single file is gone
    same_outputs(ours, ref)
    same_outputs(XGLMForCausalLM.from_pretrained(directory), ref)
    ours.save_pretrained(directory)  # and back to one file: the stale shards and index go
    left = sorted(p.name for p in directory.iterdir())
    assert left == ["config.json", "model.safetensors"]  # (xcli writes generation_config.json only when it has one)
    same_outputs(XGLMForCausalLM.from_pretrained(directory), ref)


# ------------------------------------------------------------------ what xcli writes
@pytest.mark.parametrize(
    "save", [{}, {"max_shard_size": "20KB"}, {"safe_serialization": False}, {"safe_serialization": False,
                                                                              "max_shard_size": "20KB"}],
    ids=["safetensors", "sharded", "bin", "sharded-bin"],
)
def test_saved_checkpoints_load_in_the_reference(tmp_path, save):
    ref, directory = saved(tmp_path, writer="reference")
    ours = XGLMForCausalLM.from_pretrained(directory)
    out = tmp_path / "ours"
    ours.save_pretrained(out, **save)
    reloaded, info = reference().XGLMForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    same_outputs(ours, reloaded.eval())
    same_outputs(XGLMForCausalLM.from_pretrained(out), ref)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["XGLMForCausalLM"] and config["dtype"] == "float32"
    assert config["transformers_version"] == "4.56.2"  # keys xcli does not know survive


def test_bfloat16_save(tmp_path):
    _, directory = saved(tmp_path)
    out = tmp_path / "bf16"
    XGLMForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).save_pretrained(out)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert read_safetensors(out / "model.safetensors")["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert XGLMForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16


def test_bfloat16_save_loads_in_the_reference(tmp_path):
    _, directory = saved(tmp_path)
    out = tmp_path / "bf16"
    XGLMForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).save_pretrained(out)
    assert reference().XGLMForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16


# ------------------------------------------------------------------ base <-> task checkpoints
def test_base_checkpoint_into_the_lm_class(tmp_path):
    base, directory = saved(tmp_path, cls="XGLMModel")
    ours = XGLMForCausalLM.from_pretrained(directory)
    assert not ours.load_report.lines()  # the head is tied to the embeddings: nothing is missing
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    with torch.no_grad():
        states = base(input_ids=IDS, attention_mask=MASK).last_hidden_state
        assert_close(ours(input_ids=IDS, attention_mask=MASK).logits, states @ base.embed_tokens.weight.T,
                     what="logits of the tied head")

    base, directory = saved(tmp_path, "untied", cls="XGLMModel", tie_word_embeddings=False)
    ours = XGLMForCausalLM.from_pretrained(directory)
    assert ours.load_report.initialized == ["lm_head.weight"] and not ours.load_report.unexpected
    assert "lm_head.weight" in ours.load_report.lines()[0]
    with torch.no_grad():
        assert_close(ours.model(input_ids=IDS, attention_mask=MASK).last_hidden_state,
                     base(input_ids=IDS, attention_mask=MASK).last_hidden_state, what="base states")
    assert 0.01 < ours.lm_head.weight.std().item() < 0.03  # init_std 0.02, as the reference initialises


def test_lm_checkpoint_into_the_base_class(tmp_path):
    ref, directory = saved(tmp_path, tie_word_embeddings=False)
    ours = XGLMModel.from_pretrained(directory)
    assert ours.load_report.unexpected == ["lm_head.weight"] and not ours.load_report.initialized
    same_outputs(ours, ref.model)
    out = tmp_path / "base"
    ours.save_pretrained(out)
    assert "layers.0.fc1.weight" in read_safetensors(out / "model.safetensors")  # no "model." prefix, as the reference
    same_outputs(XGLMModel.from_pretrained(out), ref.model)


def test_base_and_lm_checkpoints_cross_load_as_in_the_reference(tmp_path):
    """What the reference reports and computes for the same cross loads."""
    transformers = reference()
    _, directory = saved(tmp_path, cls="XGLMModel", writer="reference")
    theirs = transformers.XGLMForCausalLM.from_pretrained(directory).eval()
    same_outputs(XGLMForCausalLM.from_pretrained(directory), theirs)

    _, directory = saved(tmp_path, "untied", cls="XGLMModel", writer="reference", tie_word_embeddings=False)
    assert XGLMForCausalLM.from_pretrained(directory).load_report.initialized == ["lm_head.weight"]
    _, info = transformers.XGLMForCausalLM.from_pretrained(directory, output_loading_info=True)
    assert info["missing_keys"] == ["lm_head.weight"]

    _, directory = saved(tmp_path, "lm", writer="reference", tie_word_embeddings=False)
    ours = XGLMModel.from_pretrained(directory)
    assert ours.load_report.unexpected == ["lm_head.weight"]
    theirs, info = transformers.XGLMModel.from_pretrained(directory, output_loading_info=True)
    assert info["unexpected_keys"] == ["lm_head.weight"]
    same_outputs(ours, theirs.eval())
    out = tmp_path / "base"
    ours.save_pretrained(out)
    same_outputs(transformers.XGLMModel.from_pretrained(out).eval(), theirs)


def test_unexpected_tensors_are_reported_and_known_extras_ignored(tmp_path):
    from safetensors.torch import save_file

    ref, directory = saved(tmp_path)
    state = dict(read_safetensors(directory / "model.safetensors"))
    state["model.extra_adapter.weight"] = torch.zeros(3)
    state["model.embed_positions.weights"] = torch.zeros(34, 24)  # the table older checkpoints stored
    save_file({k: v.clone() for k, v in state.items()}, str(directory / "model.safetensors"))
    ours = XGLMForCausalLM.from_pretrained(directory)
    assert ours.load_report.unexpected == ["model.extra_adapter.weight"]
    same_outputs(ours, ref)


# ------------------------------------------------------------------ AutoModel
def test_automodel_reads_config_not_folder_name(tmp_path):
    _, lm_dir = saved(tmp_path, name="XGLMModel")  # a misleading folder name
    assert type(AutoModel.from_pretrained(lm_dir)) is XGLMForCausalLM
    assert isinstance(AutoConfig.from_pretrained(lm_dir), XGLMConfig)

    _, base_dir = saved(tmp_path, name="xglm-for-causal-lm", cls="XGLMModel")
    assert type(AutoModel.from_pretrained(base_dir)) is XGLMModel
    assert type(AutoModel.from_pretrained(base_dir, class_name="XGLMForCausalLM")) is XGLMForCausalLM

    config = json.loads((base_dir / "config.json").read_text())
    config["architectures"] = ["XGLMForSequenceClassification"]
    (base_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as excinfo:
        AutoModel.from_pretrained(base_dir)
    assert "architectures" in one_line_error(excinfo)


# ------------------------------------------------------------------ broken and hostile checkpoints
def test_truncated_safetensors(tmp_path):
    _, directory = saved(tmp_path)
    file = directory / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "truncated" in one_line_error(excinfo)
    file.write_bytes(data[:20])  # cut inside the header
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    one_line_error(excinfo)


def _write_raw_safetensors(file: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    "header, data, words",
    [
        ({"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, bytes(16), "truncated"),
        ({"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}, bytes(64), "lies about its size"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(16), "lies about its size"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24), "overlap"),
        ({"a": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}}, bytes(16),
         "has dtype 'F33', not one xcli reads"),
    ],
    ids=["beyond-the-end", "wrong-size", "reversed", "overlap", "unknown-dtype"],
)
def test_safetensors_header_that_lies(tmp_path, header, data, words):
    _, directory = saved(tmp_path)
    _write_raw_safetensors(directory / "model.safetensors", header, data)
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert words in one_line_error(excinfo)
    file = directory / "model.safetensors"
    file.write_bytes(struct.pack("<Q", 10**12) + b"{}")  # a header length beyond the file
    with pytest.raises(CheckpointError) as excinfo:
        read_safetensors(file)
    one_line_error(excinfo)


def test_tensor_of_the_wrong_shape(tmp_path):
    _, directory = saved(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["ffn_dim"] = 48
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    message = one_line_error(excinfo)
    assert "do not fit config.json" in message and "fc1.weight" in message and "[40, 24]" in message


def test_checkpoint_of_another_model_type(tmp_path):
    _, directory = saved(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "xlm"}))
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "'xlm'" in one_line_error(excinfo)

    # config.json says xglm, but the tensors are another model's
    from safetensors.torch import save_file

    (directory / "config.json").write_text(json.dumps(config))
    save_file({"transformer.embeddings.weight": torch.zeros(97, 24)}, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "none of the model's weights" in one_line_error(excinfo)


def test_missing_base_weight(tmp_path):
    from safetensors.torch import save_file

    for cls, model_cls, prefix in [("XGLMForCausalLM", XGLMForCausalLM, "model."), ("XGLMModel", XGLMModel, "")]:
        _, directory = saved(tmp_path, name=cls, cls=cls)
        state = {k: v.clone() for k, v in read_safetensors(directory / "model.safetensors").items()}
        del state[f"{prefix}layers.1.fc2.bias"]
        save_file(state, str(directory / "model.safetensors"))
        with pytest.raises(CheckpointError) as excinfo:
            model_cls.from_pretrained(directory)
        assert "missing" in one_line_error(excinfo) and "layers.1.fc2.bias" in str(excinfo.value)


def test_directory_without_weights_or_config(tmp_path):
    _, directory = saved(tmp_path)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "has no weights" in one_line_error(excinfo)
    (directory / "config.json").unlink()
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "config.json" in one_line_error(excinfo)
    with pytest.raises(CheckpointError):
        XGLMForCausalLM.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError) as excinfo:
        AutoModel.from_pretrained(directory)
    one_line_error(excinfo)


def test_shard_index_naming_a_missing_shard(tmp_path):
    _, directory = saved(tmp_path, save=dict(max_shard_size="20KB"))
    sorted(directory.glob("model-*.safetensors"))[-1].unlink()
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "missing" in one_line_error(excinfo)


class _Payload:
    """Pickles as a call to ``open(marker, "w")``: loading it unsafely creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    _, directory = saved(tmp_path, save=dict(safe_serialization=False))
    marker = tmp_path / "code-ran"
    payload = directory / "pytorch_model.bin"
    torch.save({"model.embed_tokens.weight": torch.zeros(97, 24), "model.extra": _Payload(marker)}, payload)

    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "cannot be loaded safely" in one_line_error(excinfo)
    assert not marker.exists(), "loading the checkpoint ran code from it"

    # the payload is live: an unsafe load (never done by xcli) does run it
    handle = torch.load(payload, weights_only=False)["model.extra"]
    handle.close()
    assert marker.exists()


# ------------------------------------------------------------------ configs checked before anything is built
def _family_classes():
    from xcli_models.auto import model_classes
    from xcli_models.registry import FAMILIES, load_object

    for model_type, family in FAMILIES.items():
        config_class = load_object(family.config)
        yield model_type, config_class, [c for c in model_classes(family).values() if c.config_class is config_class]


def test_published_configs_pass_the_checks():
    """The reference's defaults (the published base models' shapes)."""
    transformers = reference()
    checked = 0
    for model_type, config_class, _ in _family_classes():
        config_class.from_dict(transformers.AutoConfig.for_model(model_type).to_dict())
        checked += 1
    assert checked >= 6  # every family (six today)


def test_default_and_builtin_configs_pass_the_checks():
    from pathlib import Path as _Path

    from xcli_models.auto import AutoConfig

    families = list(_family_classes())
    assert len(families) >= 6  # every family (six today)
    for _, config_class, _ in families:
        config_class()
    builtin = _Path(__file__).resolve().parents[2] / "xcli_models" / "data" / "builtin"
    configs = sorted(builtin.glob("*/*/config.json"))
    assert configs
    for config in configs:
        AutoConfig.from_pretrained(config.parent)


SMALL = {
    "xlm": dict(vocab_size=300, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=64, n_langs=2),
    "xlnet": dict(vocab_size=300, d_model=32, n_layer=2, n_head=4, d_inner=48),
    "xglm": dict(vocab_size=300, d_model=32, attention_heads=4, num_layers=2, ffn_dim=48,
                 max_position_embeddings=64),
    "xlm-prophetnet": dict(vocab_size=300, hidden_size=32, encoder_ffn_dim=48, decoder_ffn_dim=40,
                           num_encoder_layers=2, num_decoder_layers=1, num_encoder_attention_heads=4,
                           num_decoder_attention_heads=2, max_position_embeddings=64),
    "mvp": dict(vocab_size=300, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=40, max_position_embeddings=64,
                use_prompt=True, prompt_length=3, prompt_mid_dim=10),
}
SMALL["prophetnet"] = SMALL["xlm-prophetnet"]


def test_the_parameter_estimate_bounds_every_class():
    """From above, and within about twice the real count (a decoder alone counts its encoder too)."""
    from xcli_models.modeling import _NoInitOnMeta

    for model_type, config_class, classes in _family_classes():
        config = config_class(**SMALL[model_type])
        for cls in classes:
            with torch.device("meta"), _NoInitOnMeta():
                model = cls(config)
            real = model.num_parameters() + sum(b.numel() for b in model.buffers())
            assert real <= config.parameter_estimate() <= 2.2 * real, cls.__name__


BAD_VALUES = [
    # (model_type, field, value, words)
    ("xlnet", "d_model", "64", "d_model must be a whole number of at least 1, not '64'"),
    ("xlnet", "d_model", 64.5, "d_model must be a whole number of at least 1, not 64.5"),
    ("xlnet", "d_model", -64, "not -64"),
    ("xlnet", "d_model", True, "not true"),
    ("xlnet", "n_layer", 1_000_000, "n_layer must be a whole number from 0 to 1024"),
    ("xlnet", "n_head", 5, "d_model (32) must be a multiple of n_head (5)"),
    ("xlnet", "dropout", 2.0, "dropout must be a number from 0 to 1"),
    ("xlnet", "dropout", float("nan"), "dropout must be a number from 0 to 1, not NaN"),
    ("xlnet", "attn_type", ["bi"], "attn_type must be a string"),
    ("xlnet", "mem_len", -5, "mem_len must be a whole number of at least 0, or null"),
    ("xlm", "hidden_size", None, "hidden_size must be a whole number of at least 1, not null"),  # an alias
    ("xlm", "pad_index", 300, "pad_index (300) must be below vocab_size (300)"),
    ("xlm", "layer_norm_eps", float("inf"), "layer_norm_eps must be a finite number"),
    ("xlm", "asm_cutoffs", [10, "x"], "asm_cutoffs must be a list of whole numbers"),
    ("xglm", "max_position_embeddings", 0, "max_position_embeddings must be a whole number of at least 1"),
    ("xglm", "use_cache", "yes", "use_cache must be true or false"),
    ("xglm", "eos_token_id", [2, -1], "eos_token_id must be a token id"),
    ("xglm", "architectures", "XGLMModel", "architectures must be a list of class names"),
    ("xlm-prophetnet", "num_buckets", 1, "num_buckets (1) must be at least 2"),
    ("xlm-prophetnet", "ngram", 0, "ngram must be a whole number of at least 1"),
    ("prophetnet", "num_hidden_layers", 12, "num_hidden_layers cannot be set"),
    ("mvp", "prompt_length", {"n": 3}, 'prompt_length must be a whole number of at least 1, not {"n": 3}'),
    ("mvp", "decoder_attention_heads", 5, "d_model (32) must be a multiple of decoder_attention_heads (5)"),
    ("mvp", "num_labels", 10**12, "num_labels must be a whole number from 0 to 1,000,000"),
    ("mvp", "id2label", {"0": "a", "7": "b"}, "id2label must number its labels 0 to 1"),
    ("mvp", "id2label", {"x": "a"}, "id2label keys must be label ids"),
    ("mvp", "label2id", {"a": "zero"}, "label2id must be a JSON object (label name -> id)"),
    ("mvp", "__class__", 5, "'__class__' cannot be a field of a MvpConfig"),
    ("mvp", "to_dict", 5, "'to_dict' cannot be a field of a MvpConfig"),
]


@pytest.mark.parametrize(("model_type", "field", "value", "words"), BAD_VALUES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]!r}"[:60] for c in BAD_VALUES])
def test_config_values_are_checked(model_type, field, value, words):
    from xcli_models.config import ConfigError
    from xcli_models.registry import FAMILIES, load_object

    config_class = load_object(FAMILIES[model_type].config)
    with pytest.raises(ConfigError) as excinfo:
        config_class.from_dict({**SMALL[model_type], field: value})  # as config.json gives it
    assert words in one_line_error(excinfo)


def test_a_bad_config_value_is_a_checkpoint_error_naming_the_file(tmp_path):
    _, directory = saved(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "d_model": "24"}))
    for load in (XGLMForCausalLM.from_pretrained, AutoModel.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(CheckpointError) as excinfo:
            load(directory)
        message = one_line_error(excinfo)
        assert message == f"{directory / 'config.json'}: d_model must be a whole number of at least 1, not '24'"


def test_a_model_too_large_for_the_memory_left_is_refused_before_reading(tmp_path, monkeypatch):
    import xcli_models.config as config_module
    import xcli_models.modeling as modeling

    _, directory = saved(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "vocab_size": 10**7}))
    monkeypatch.setattr(modeling, "read_weights", lambda directory: pytest.fail("weights were read"))
    monkeypatch.setattr(config_module, "available_memory", lambda: 100 * 2**20)
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    message = one_line_error(excinfo)
    assert "vocab_size 10000000: the model would hold about 2.5e+08 parameters, 954 MiB in float32" in message
    assert message.endswith("more than the 100 MiB of memory available")
    with pytest.raises(CheckpointError, match="477 MiB in bfloat16"):
        XGLMForCausalLM.from_pretrained(directory, dtype="bfloat16")


def test_available_memory_is_known_here():
    from xcli_models.config import available_memory

    assert 0 < available_memory() < 2**50


# ------------------------------------------------------------------ JSON files read with care
def _special_json(tmp_path, kind):
    import os

    file = tmp_path / "config.json"
    if kind == "device":
        file.symlink_to("/dev/zero")
    elif kind == "pipe":
        os.mkfifo(file)
    elif kind == "directory":
        file.mkdir()
    elif kind == "loop":
        file.symlink_to(tmp_path / "other.json")
        (tmp_path / "other.json").symlink_to(file)
    elif kind == "dangling":
        file.symlink_to(tmp_path / "nowhere.json")
    elif kind == "huge":
        with open(file, "wb") as handle:
            handle.write(b"{" + b" " * (16 * 2**20) + b"}")
    elif kind == "deep":
        file.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "not utf-8":
        file.write_bytes(b'{"model_type": "\xff"}')
    return file


JSON_CASES = {
    "device": "is not a regular file but a character device",
    "pipe": "is not a regular file but a pipe",
    "directory": "is not a regular file but a directory",
    "loop": "cannot be read: Too many levels of symbolic links",
    "dangling": "cannot be read: No such file or directory",
    "huge": "is larger than the 16 MiB a checkpoint's JSON file may have",
    "deep": "is not valid JSON: nested too deeply",
    "not utf-8": "is not valid JSON",
}


@pytest.mark.parametrize("kind", list(JSON_CASES))
def test_json_files_are_read_with_care(tmp_path, kind):
    from xcli_models.config import ConfigError, read_json

    file = _special_json(tmp_path, kind)
    with pytest.raises(ConfigError) as excinfo:
        read_json(file)
    assert one_line_error(excinfo).startswith(str(file)) and JSON_CASES[kind] in str(excinfo.value)


def test_a_config_json_that_is_a_device(tmp_path):
    _, directory = saved(tmp_path)
    (directory / "config.json").unlink()
    (directory / "config.json").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "is not a regular file but a character device" in one_line_error(excinfo)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "sub/model.safetensors"])
def test_a_shard_index_naming_files_outside_the_directory(tmp_path, name):
    _, directory = saved(tmp_path, save=dict(max_shard_size="20KB"))
    index = directory / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.embed_tokens.weight"] = name
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as excinfo:
        weight_files(directory)
    message = one_line_error(excinfo)
    assert "names files outside the checkpoint directory" in message and repr(name) in message


def test_weight_files_must_be_regular_files(tmp_path):
    import os

    _, directory = saved(tmp_path)
    (directory / "model.safetensors").unlink()
    os.mkfifo(directory / "model.safetensors")  # reading it would wait forever
    with pytest.raises(CheckpointError) as excinfo:
        XGLMForCausalLM.from_pretrained(directory)
    assert "model.safetensors is not a regular file but a pipe" in one_line_error(excinfo)
