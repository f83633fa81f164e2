"""`xcli convert` and xcli_models.convert: round trips for every family, the numerical check,
and sources that are truncated, lying, hostile, empty or of another kind.

Tiny random checkpoints of xcli's classes are written as the reference writes ``pytorch_model.bin``
(every name of its state dict, tied weights stored twice: :func:`save_bin`); each conversion result
must load and give the model's outputs back. The oracle (transformers 4.56.2) is used where it is
the point: checkpoints it wrote convert, and the results load in it with its outputs
(``test_conversions_of_the_oracle_s_checkpoints_load_in_it``; skipped without it).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from compare import reference

import xcli_models
import xcli_models.convert as convert_module
from xcli.app import app
from xcli_models.convert import VerificationError, convert_checkpoint, verify_conversion
from xcli_models.loading import CheckpointError, read_safetensors, read_weights

runner = CliRunner()

#: one tiny configuration per family (and English ProphetNet): (class, its config class, fields)
KINDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "xlm": ("XLMWithLMHeadModel", "XLMConfig", dict(
        vocab_size=40, emb_dim=24, n_layers=2, n_heads=3, max_position_embeddings=24, n_langs=3)),
    "xlnet": ("XLNetLMHeadModel", "XLNetConfig", dict(vocab_size=47, d_model=24, n_layer=2, n_head=3, d_inner=37,
                                                      mem_len=None)),
    "xglm": ("XGLMForCausalLM", "XGLMConfig", dict(
        vocab_size=51, d_model=20, attention_heads=5, num_layers=2, ffn_dim=36, max_position_embeddings=32)),
    "xlm-prophetnet": ("XLMProphetNetForConditionalGeneration", "XLMProphetNetConfig", dict(
        vocab_size=61, hidden_size=30, encoder_ffn_dim=22, decoder_ffn_dim=26, num_encoder_layers=2,
        num_decoder_layers=2, num_encoder_attention_heads=3, num_decoder_attention_heads=5,
        max_position_embeddings=40, ngram=2, num_buckets=8, relative_max_distance=12)),
    "prophetnet": ("ProphetNetForConditionalGeneration", "ProphetNetConfig", dict(
        vocab_size=53, hidden_size=24, encoder_ffn_dim=20, decoder_ffn_dim=20, num_encoder_layers=2,
        num_decoder_layers=2, num_encoder_attention_heads=3, num_decoder_attention_heads=3,
        max_position_embeddings=30, ngram=2, num_buckets=8, relative_max_distance=12)),
    "mvp": ("MvpForConditionalGeneration", "MvpConfig", dict(
        vocab_size=64, d_model=24, encoder_layers=2, decoder_layers=1, encoder_attention_heads=3,
        decoder_attention_heads=3, encoder_ffn_dim=20, decoder_ffn_dim=28, max_position_embeddings=32,
        use_prompt=True, prompt_length=3, prompt_mid_dim=10)),
}


def tiny_model(kind: str, seed: int = 0, class_name: str | None = None, writer: str = "xcli", **config: Any) -> Any:
    """A tiny random model of xcli's classes (``writer="xcli"``) or of the oracle's (``"reference"``,
    skipped without it); weights drawn wide so that any lost or changed value shows."""
    library = xcli_models if writer == "xcli" else reference()
    name, config_class, fields = KINDS[kind]
    torch.manual_seed(seed)
    model = getattr(library, class_name or name)(getattr(library, config_class)(**{**fields, **config}))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def oracle_model(kind: str, seed: int = 0, class_name: str | None = None, **config: Any) -> Any:
    """:func:`tiny_model` of the oracle's classes."""
    return tiny_model(kind, seed, class_name, writer="reference", **config)


def save_bin(model: Any, directory: Path) -> Path:
    """``pytorch_model.bin`` as the reference writes it: every name of the state dict, a tied weight
    under each of its names (sharing one storage), and a generation_config.json beside a generating
    head's. xcli's own models are written so by hand."""
    model.save_pretrained(directory, safe_serialization=False)
    if type(model).__module__.startswith("xcli_models."):
        from xcli_models.generation.config import model_defaults
        from xcli_models.registry import capabilities

        assert [p.name for p in directory.glob("pytorch_model*")] == ["pytorch_model.bin"]
        state = {model.names.to_hf(k): v for k, v in model.state_dict().items()}
        torch.save(state, directory / "pytorch_model.bin")
        if capabilities(type(model).__name__).generate:
            model_defaults(model).save_pretrained(directory)
    return directory


def sample(model: Any, seed: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    inputs = {"input_ids": torch.randint(4, vocab, (2, 7), generator=gen)}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = torch.randint(4, vocab, (2, 5), generator=gen)
    return inputs


def logits(directory: Path, class_name: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Load ``directory`` with xcli (float32, as ``class_name``) and run ``inputs``: the logits."""
    model = getattr(xcli_models, class_name).from_pretrained(directory, dtype=torch.float32)
    assert not model.load_report.lines(), model.load_report.lines()
    with torch.no_grad():
        return model(**inputs).logits


def oracle_logits(directory: Path, class_name: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Load ``directory`` with the oracle (float32) and run ``inputs``: the logits."""
    model = getattr(reference(), class_name).from_pretrained(directory, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(**inputs).logits


def cli(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result: Any) -> str:
    """The run's single stderr line, which must be an error."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("xcli: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    return errors[0]


def leftovers(parent: Path, name: str) -> list[str]:
    """Hidden work directories a conversion into ``parent / name`` may have left."""
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """Per kind: xcli's model and its .bin checkpoint in the reference's layout."""
    root = tmp_path_factory.mktemp("bins")
    return {kind: (m := tiny_model(kind), save_bin(m, root / kind)) for kind in KINDS}


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trips(kind: str, bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    """bin -> safetensors -> sharded bin -> one safetensors -> bfloat16 -> float32, each checked."""
    model, src = bins[kind]
    class_name = KINDS[kind][0]
    inputs = sample(model)
    with torch.no_grad():
        expected = model(**inputs).logits

    # .bin -> safetensors: exact, tied weights stored once (as a model's own safetensors)
    safe = tmp_path / "safe"
    result = cli("convert", src, safe)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["check"]["passed"] and report["check"]["exact"] and report["check"]["max_abs_diff"] == 0.0
    assert report["check"]["mismatched"] == [] and report["check"]["tolerance"] == 0.0
    assert sorted(os.listdir(safe)) == sorted(report["files"])
    assert "model.safetensors" in report["files"] and "pytorch_model.bin" in report["left_behind"]
    model.save_pretrained(tmp_path / "own-safe")
    theirs = read_safetensors(tmp_path / "own-safe" / "model.safetensors")
    assert set(read_safetensors(safe / "model.safetensors")) == set(theirs)
    assert report["tied"] and all(name not in read_weights(safe) for name in report["tied"])
    assert torch.equal(logits(safe, class_name, inputs), expected)

    # safetensors -> .bin again, sharded with an index: the source's tensors, each tied copy stored once
    tied = report["tied"]
    sharded = tmp_path / "sharded"
    result = cli("convert", safe, sharded, "--format", "bin", "--max-shard-size", "8kB")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shards"] > 1 and report["check"]["max_abs_diff"] == 0.0
    index = json.loads((sharded / "pytorch_model.bin.index.json").read_text())
    shards: dict[str, list[str]] = {}
    for name, file in index["weight_map"].items():
        shards.setdefault(file, []).append(name)
    stored = read_weights(sharded)
    for names in shards.values():  # each shard within the limit, or a single tensor larger than it
        assert len(names) == 1 or sum(stored[n].numel() * 4 for n in names) <= 8000
    assert same_tensors(stored, {k: v for k, v in read_weights(src).items() if k not in tied})
    assert torch.equal(logits(sharded, class_name, inputs), expected)

    # unshard: one safetensors file again, bit for bit the first one
    single = tmp_path / "single"
    assert cli("convert", sharded, single).exit_code == 0
    assert sorted(p.name for p in single.iterdir() if "model" in p.name) == ["model.safetensors"]
    assert same_tensors(read_weights(single), read_weights(safe))

    # float32 -> bfloat16: within the stated tolerance, not exact
    half = tmp_path / "bf16"
    result = cli("convert", single, half, "--dtype", "bfloat16")
    assert result.exit_code == 0, result.stderr
    check = json.loads(result.stdout)["check"]
    assert check["passed"] and not check["exact"] and 0.0 < check["max_abs_diff"] <= check["tolerance"]
    assert check["tolerance"] == pytest.approx(5e-2 * max(1.0, check["scale"]))
    assert {t.dtype for t in read_weights(half).values() if t.is_floating_point()} == {torch.bfloat16}
    config = json.loads((half / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    theirs = logits(half, class_name, inputs)
    assert (theirs - expected).abs().max() <= 5e-2 * max(1.0, expected.abs().max().item())

    # bfloat16 -> float32: exact (widening), and within bfloat16 rounding of the original
    full = tmp_path / "f32"
    result = cli("convert", half, full, "--dtype", "float32")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["check"]["exact"]
    restored, first = read_weights(full), read_weights(single)
    for name, tensor in first.items():
        assert restored[name].dtype == torch.float32
        assert torch.equal(restored[name], tensor.to(torch.bfloat16).float())
        assert torch.allclose(restored[name], tensor, rtol=2**-8, atol=0)
    theirs = logits(full, class_name, inputs)
    assert (theirs - expected).abs().max() <= 5e-2 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("kind", list(KINDS))
def test_conversions_of_the_oracle_s_checkpoints_load_in_it(kind: str, tmp_path: Path) -> None:
    """The oracle's own .bin -> safetensors (its own safetensors' names), -> sharded .bin: each loads in
    the oracle with its outputs, bit for bit."""
    model = oracle_model(kind)
    src = save_bin(model, tmp_path / "src")
    class_name = KINDS[kind][0]
    inputs = sample(model)
    with torch.no_grad():
        expected = model(**inputs).logits
    safe, sharded = tmp_path / "safe", tmp_path / "sharded"
    result = cli("convert", src, safe)
    assert result.exit_code == 0, result.stderr
    model.save_pretrained(tmp_path / "oracle-safe")
    assert set(read_safetensors(safe / "model.safetensors")) == set(
        read_safetensors(tmp_path / "oracle-safe" / "model.safetensors"))
    assert torch.equal(oracle_logits(safe, class_name, inputs), expected)
    result = cli("convert", safe, sharded, "--format", "bin", "--max-shard-size", "8kB")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["shards"] > 1
    assert torch.equal(oracle_logits(sharded, class_name, inputs), expected)


#: head classes whose inputs differ (3-d multiple choice, eos-reading classifier, span heads, decoder only)
HEADS = [
    ("xlm", "XLMForQuestionAnswering", {}),
    ("xlm", "XLMForSequenceClassification", {"num_labels": 3}),
    ("xlnet", "XLNetForMultipleChoice", {}),
    ("xlnet", "XLNetForQuestionAnsweringSimple", {}),
    ("mvp", "MvpForSequenceClassification", {"num_labels": 3}),
    ("mvp", "MvpForCausalLM", {}),
    ("xlm-prophetnet", "XLMProphetNetDecoder", {}),
    ("xglm", "XGLMModel", {}),
]


@pytest.mark.parametrize(("kind", "class_name", "config"), HEADS, ids=[h[1] for h in HEADS])
def test_every_head_is_checked(kind: str, class_name: str, config: dict, tmp_path: Path) -> None:
    src = save_bin(tiny_model(kind, 1, class_name, **config), tmp_path / "src")
    result = convert_checkpoint(src, tmp_path / "dst", dtype="float16")
    assert result.check is not None and result.check.passed and result.check.model_class == class_name
    assert result.check.tensors == result.tensors and not result.check.exact


def test_a_config_without_architectures_is_checked_with_the_base_model(
    bins: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(bins["xglm"][1], src)
    config = json.loads((src / "config.json").read_text())
    del config["architectures"]
    (src / "config.json").write_text(json.dumps(config))
    result = convert_checkpoint(src, tmp_path / "dst")
    assert result.check.model_class == "XGLMModel" and result.check.passed
    # the head weight stays: names are kept as stored, only a tie the class knows is dropped
    assert "lm_head.weight" in read_weights(tmp_path / "dst")


def test_hf_cache_entry_becomes_a_standalone_directory(
    bins: dict[str, tuple[Any, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub cache layout: snapshot files are links into blobs/; the result holds real files."""
    model, src = bins["mvp"]
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-mvp"
    snapshot = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in src.iterdir():
        blob = repo / "blobs" / f"blob-{file.name}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    out = tmp_path / "standalone"
    result = cli("convert", "acme/tiny-mvp", out)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["check"]["passed"]
    assert all(p.is_file() and not p.is_symlink() for p in out.iterdir())
    assert (out / "config.json").read_bytes() == (src / "config.json").read_bytes()
    inputs = sample(model)
    with torch.no_grad():
        assert torch.equal(logits(out, "MvpForConditionalGeneration", inputs), model(**inputs).logits)


def test_tokenizer_files_and_configs_come_along(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    from xcli_models.tokenization import AutoTokenizer

    src = tmp_path / "src"
    shutil.copytree(bins["xlnet"][1], src)
    builtin = Path(__file__).resolve().parents[2] / "xcli_models" / "data" / "builtin" / "xlnet" / "xlnet-base-cased"
    for name in ("spiece.model", "tokenizer_config.json"):
        shutil.copyfile(builtin / name, src / name)
    (src / "README.md").write_text("# tiny\n")
    (src / "tf_model.h5").write_bytes(b"not carried")
    (src / ".gitattributes").write_text("*.bin filter=lfs\n")
    (src / "onnx").mkdir()

    result = convert_checkpoint(src, tmp_path / "dst", verify=False)
    dst = tmp_path / "dst"
    for name in ("spiece.model", "tokenizer_config.json", "README.md", "config.json", "generation_config.json"):
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    assert not (dst / "tf_model.h5").exists() and not (dst / "onnx").exists()
    assert set(result.left_behind) == {"pytorch_model.bin", "tf_model.h5", "onnx/"}
    assert result.check is None
    assert AutoTokenizer.from_pretrained(dst).encode("Hello world") == AutoTokenizer.from_pretrained(src).encode(
        "Hello world"
    )


# ------------------------------------------------------------------------ destination rules
def test_existing_destination_needs_force(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    src = bins["xlm"][1]
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    result = cli("convert", src, dst)
    assert result.exit_code == 2 and "--force" in one_line_error(result)
    assert os.listdir(dst) == ["keep.txt"] and result.stdout == ""

    result = cli("convert", src, dst, "--force", "-O", "text")
    assert result.exit_code == 0, result.stderr
    assert "keep.txt" not in os.listdir(dst) and (dst / "model.safetensors").exists()
    assert "check" in result.stdout and "exact" in result.stdout
    assert leftovers(tmp_path, "dst") == []


def test_in_place_conversion(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(bins["xglm"][1], ckpt)
    before = read_weights(ckpt)
    result = cli("convert", ckpt, ckpt, "--force")
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(ckpt)) == ["config.json", "generation_config.json", "model.safetensors"]
    after = read_weights(ckpt)
    assert all(torch.equal(after[k], before[k]) for k in after) and len(after) == len(before) - 1


def test_destination_inside_nothing_it_would_destroy(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    shutil.copytree(bins["xglm"][1], parent / "ckpt")
    result = cli("convert", parent / "ckpt", parent, "--force")
    assert result.exit_code == 2 and "holds the source" in one_line_error(result)
    assert (parent / "ckpt" / "pytorch_model.bin").exists()


def test_two_conversions_to_one_destination_one_wins(
    bins: dict[str, tuple[Any, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second conversion finishes while the first is checking its work: the first must not replace it."""
    first, second = bins["xlm"][1], bins["xglm"][1]
    dst = tmp_path / "dst"
    real = convert_module.verify_conversion
    raced = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(second)
            convert_checkpoint(second, dst, overwrite=True)  # the other run: it checks and publishes first
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "verify_conversion", racing)
    result = cli("convert", first, dst)
    assert result.exit_code == 2 and result.stdout == ""
    assert "another run wrote it" in one_line_error(result)
    assert json.loads((dst / "config.json").read_text())["model_type"] == "xglm"  # the winner's, untouched
    assert leftovers(tmp_path, "dst") == []

    # with --force the later one replaces it, as asked
    raced.clear()
    dst = tmp_path / "forced"
    result = cli("convert", first, dst, "--force")
    assert result.exit_code == 0, result.stderr
    assert json.loads((dst / "config.json").read_text())["model_type"] == "xlm" and leftovers(tmp_path, "forced") == []


def test_the_destination_is_as_readable_as_any_new_folder(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        convert_checkpoint(bins["xglm"][1], tmp_path / "dst", verify=False)
    finally:
        os.umask(umask)
    assert (tmp_path / "dst").stat().st_mode & 0o777 == 0o755
    # the weights too (safetensors makes private files)
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "dst").iterdir()} == {
        f.name: 0o644 for f in (tmp_path / "dst").iterdir()}


def _killed_during_conversion(src: Path, dst: Path) -> None:
    """Run ``xcli convert SRC DST`` in a child that stalls in the check, and SIGKILL it there."""
    script = textwrap.dedent(
        """
        import sys, time
        import xcli_models.convert as convert
        convert.verify_conversion = lambda *args, **kwargs: time.sleep(600)
        from xcli.__main__ import main
        main(["convert", *sys.argv[1:]])
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(src), str(dst)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".tmp") for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.")):
            assert child.poll() is None and time.monotonic() < deadline, "the conversion never started writing"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def test_what_a_killed_conversion_left_is_removed_and_said(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    src, dst = bins["xglm"][1], tmp_path / "dst"
    _killed_during_conversion(src, dst)
    [left] = leftovers(tmp_path, "dst")
    assert left.startswith(".dst.xcli-") and left.endswith(".tmp") and not dst.exists()
    assert any((tmp_path / left).iterdir())  # it had written weights

    result = cli("convert", src, dst)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("xcli: warning:")]
    assert len(warnings) == 1 and f"removed {tmp_path / left}" in warnings[0] and "killed" in warnings[0]
    assert leftovers(tmp_path, "dst") == [] and (dst / "model.safetensors").exists()


# ------------------------------------------------------------------------------- the check
def test_a_corrupted_tensor_is_caught(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    """A changed embedding row that the sample input never reads: the tensor check still sees it."""
    src = bins["xglm"][1]
    dst = tmp_path / "dst"
    convert_checkpoint(src, dst, verify=False)
    assert verify_conversion(src, dst).passed
    file = dst / "model.safetensors"
    raw = bytearray(file.read_bytes())
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    start, end = header["model.embed_tokens.weight"]["data_offsets"]
    spot = 8 + header_len + end - 4  # the last value of the last row
    raw[spot : spot + 4] = struct.pack("<f", 3.0)
    file.write_bytes(bytes(raw))
    check = verify_conversion(src, dst)
    assert not check.passed and check.mismatched[0].startswith("model.embed_tokens.weight")
    assert "1 of" in check.summary()


def test_corruption_during_conversion_fails_and_writes_nothing(
    bins: dict[str, tuple[Any, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = convert_module.write_weights

    def corrupting(state: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        name = next(k for k in state if k.endswith("layer_norm.weight"))
        return real({**state, name: state[name] + 1.0}, *args, **kwargs)

    monkeypatch.setattr(convert_module, "write_weights", corrupting)
    src = bins["mvp"][1]
    result = cli("convert", src, tmp_path / "dst")
    assert result.exit_code == 1 and result.stdout == ""
    assert "the check failed" in one_line_error(result) and "not written" in result.stderr
    assert not (tmp_path / "dst").exists() and leftovers(tmp_path, "dst") == []

    # an existing destination replaced with --force survives a failed check untouched
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "marker").write_text("old")
    result = cli("convert", src, tmp_path / "old", "--force")
    assert result.exit_code == 1 and "left as it was" in one_line_error(result)
    assert os.listdir(tmp_path / "old") == ["marker"] and leftovers(tmp_path, "old") == []


def test_the_output_comparison_is_live(bins: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    """A float16 cast with --tolerance 0: every tensor is as intended, but the outputs move."""
    result = cli("convert", bins["xlnet"][1], tmp_path / "dst", "--dtype", "float16", "--tolerance", "0")
    assert result.exit_code == 1 and "differ by at most" in one_line_error(result)
    assert not (tmp_path / "dst").exists()
    with pytest.raises(VerificationError) as excinfo:
        convert_checkpoint(bins["xlnet"][1], tmp_path / "dst", dtype="float16", tolerance=0.0)
    assert excinfo.value.check.max_abs_diff > 0 and not excinfo.value.check.mismatched


def test_overflow_is_warned_about(tmp_path: Path) -> None:
    model = tiny_model("xglm", 2)
    with torch.no_grad():
        model.model.layer_norm.bias[0] = 1e6  # fine in float32, infinite in float16
    src = save_bin(model, tmp_path / "src")
    result = cli("convert", src, tmp_path / "unchecked", "--dtype", "float16", "--no-verify")
    assert result.exit_code == 0
    assert "warning: model.layer_norm.bias: 1 value(s) too large for float16 became infinite" in result.stderr
    assert json.loads(result.stdout)["overflow"] == {"model.layer_norm.bias": 1}
    # checked, the infinite value shows in the outputs: the conversion is refused
    result = cli("convert", src, tmp_path / "checked", "--dtype", "float16")
    assert result.exit_code == 1 and "became infinite" in result.stderr
    assert not (tmp_path / "checked").exists()


def test_an_interrupted_conversion_leaves_nothing(
    bins: dict[str, tuple[Any, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = convert_module.write_weights

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_module, "write_weights", interrupted)
    result = cli("convert", bins["xlm"][1], tmp_path / "dst")
    assert result.exit_code == 130
    assert not (tmp_path / "dst").exists() and leftovers(tmp_path, "dst") == []


# ------------------------------------------------------------------------------- bad sources
def _safetensors_with_header(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _bad_source(case: str, src: Path, good: Path) -> None:
    """Turn the copy ``src`` of the good checkpoint ``good`` into a bad one."""
    shutil.copytree(good, src)
    safe = src / "model.safetensors"
    if case == "empty directory":
        shutil.rmtree(src)
        src.mkdir()
    elif case == "another model type":
        (src / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    elif case == "truncated safetensors":
        data = safe.read_bytes()
        safe.write_bytes(data[: len(data) // 2])
    elif case == "header lies about offsets":
        tensors = read_safetensors(safe)
        name = next(iter(tensors))
        size = tensors[name].numel() * 4
        _safetensors_with_header(safe, {name: {"dtype": "F32", "shape": list(tensors[name].shape),
                                               "data_offsets": [10**9, 10**9 + size]}}, bytes(size))
    elif case == "header lies about sizes":
        _safetensors_with_header(safe, {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 400]}},
                                 bytes(400))
    elif case == "header length beyond the file":
        safe.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    elif case == "truncated bin":
        safe.unlink()
        model = tiny_model("xlm")
        model.save_pretrained(src, safe_serialization=False)
        data = (src / "pytorch_model.bin").read_bytes()
        (src / "pytorch_model.bin").write_bytes(data[: len(data) * 2 // 3])
    elif case == "pickle that runs code":
        safe.unlink()
        torch.save({"transformer.embeddings.weight": _RunsCode(src.parent / "PWNED")}, src / "pytorch_model.bin")
    elif case == "raw pickle that runs code":
        safe.unlink()
        (src / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _RunsCode(src.parent / "PWNED")}, protocol=2))
    elif case == "shard index names a missing file":
        safe.unlink()
        (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-1-of-2.safetensors"}}))
    elif case == "weights of another shape":
        config = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**config, "emb_dim": 12}))
    else:  # pragma: no cover
        raise AssertionError(case)


BAD_SOURCES = {
    "empty directory": (1, "no config.json"),
    "another model type": (2, "'bert'"),
    "truncated safetensors": (1, "truncated"),
    "header lies about offsets": (1, "offsets"),
    "header lies about sizes": (1, "lies about its size"),
    "header length beyond the file": (1, "does not fit the file"),
    "truncated bin": (1, "truncated or corrupt"),
    "pickle that runs code": (1, "nothing in it was run"),
    "raw pickle that runs code": (1, "nothing in it was run"),
    "shard index names a missing file": (1, "missing"),
    "weights of another shape": (1, "do not fit config.json"),
}


@pytest.fixture(scope="module")
def good_xlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("good") / "xlm"
    tiny_model("xlm").save_pretrained(directory)
    return directory


@pytest.mark.parametrize("case", list(BAD_SOURCES))
@pytest.mark.parametrize("command", ["convert", "info"])
def test_bad_sources_give_one_line_and_no_destination(case: str, command: str, good_xlm: Path, tmp_path: Path) -> None:
    code, words = BAD_SOURCES[case]
    src = tmp_path / "src"
    _bad_source(case, src, good_xlm)
    if command == "info" and case == "weights of another shape":
        code, words = 0, ""  # info reads the files, it does not load them into a model
    args = ["convert", src, tmp_path / "dst"] if command == "convert" else ["info", src]
    result = cli(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code:
        assert words in one_line_error(result) and result.stdout == ""
    assert not (tmp_path / "dst").exists() and leftovers(tmp_path, "dst") == []
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["convert", "{tmp}/nowhere", "{tmp}/dst"], "not found"),
        (["convert", "{tmp}/file.txt", "{tmp}/dst"], "is a file"),
        (["convert", "{good}", "{tmp}/dst", "--max-shard-size", "lots"], "--max-shard-size"),
        (["convert", "{good}", "{tmp}/dst", "--dtype", "int8"], "--dtype"),
        (["convert", "{good}", "{tmp}/file.txt", "--force"], "not a directory"),
    ],
)
def test_usage_errors(args: list[str], words: str, good_xlm: Path, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    result = cli(*[a.format(tmp=tmp_path, good=good_xlm) for a in args])
    assert result.exit_code == 2 and words in one_line_error(result)
    assert not (tmp_path / "dst").exists() and (tmp_path / "file.txt").read_text() == "x"


def test_library_errors_are_checkpoint_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        convert_checkpoint(tmp_path / "empty", tmp_path / "dst")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        convert_checkpoint(tmp_path / "nothing", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
