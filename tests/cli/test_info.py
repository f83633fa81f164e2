"""`xcli info`: one JSON object (or a table) describing a checkpoint, for every family.

On checkpoints xcli wrote (``test_convert.tiny_model``); the built-in models' parameter counts and
special tokens are checked against the reference (skipped without it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from compare import transformers
from test_convert import KINDS, cli, one_line_error, save_bin, tiny_model

from xcli_models.convert import convert_checkpoint
from xcli_models.summary import summarize

BUILTIN = Path(__file__).resolve().parents[2] / "xcli_models" / "data" / "builtin"
FIELDS = {
    "model", "origin", "path", "family", "model_type", "architectures", "model_class", "commands", "parameters",
    "dtypes", "config_dtype", "quantization", "has_weights", "weights", "size_on_disk", "vocab_size", "tokenizer",
    "tokenizer_vocab_size", "special_tokens", "labels", "languages", "max_positions", "relative_positions",
    "hidden_size", "layers", "attention_heads",
}
FAMILY = {"xlm": "XLM", "xlnet": "XLNet", "xglm": "XGLM", "xlm-prophetnet": "XLM-ProphetNet",
          "prophetnet": "ProphetNet", "mvp": "MVP"}
COMMANDS = {"xlm": ["fill-mask", "generate", "score"], "xlnet": ["fill-mask", "generate", "score"],
            "xglm": ["generate", "score"], "xlm-prophetnet": ["generate", "score"], "prophetnet": ["generate", "score"],
            "mvp": ["fill-mask", "generate", "score"]}


def info(*args: Any) -> dict[str, Any]:
    result = cli("info", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_family(kind: str, tmp_path: Path) -> None:
    model = tiny_model(kind)
    model.save_pretrained(tmp_path)
    out = info(tmp_path)
    assert set(out) == FIELDS
    assert out["family"] == FAMILY[kind] and out["model_type"] == kind
    assert out["architectures"] == [KINDS[kind][0]] and out["model_class"] == KINDS[kind][0]
    evaluate = ["evaluate"] if COMMANDS[kind] else []
    assert out["commands"] == [*COMMANDS[kind], *evaluate, "convert", "train"]  # no tokenizer files: no tokenize
    assert out["parameters"] == model.num_parameters()
    assert list(out["dtypes"]) == ["float32"] and out["dtypes"]["float32"] >= out["parameters"] - 64
    assert out["config_dtype"] == "float32" and out["quantization"] is None
    weights = out["weights"]
    assert out["has_weights"] is True
    assert weights["format"] == "safetensors" and weights["files"] == ["model.safetensors"] and weights["shards"] == 1
    assert weights["bytes"] == (tmp_path / "model.safetensors").stat().st_size <= out["size_on_disk"]
    assert out["vocab_size"] == model.config.vocab_size
    # XLNet's positions are relative: no limit (the reference's config says -1)
    assert out["max_positions"] == (None if kind == "xlnet" else model.config.max_position_embeddings)
    assert out["relative_positions"] is (kind == "xlnet")
    assert out["hidden_size"] == model.config.hidden_size and out["layers"] == model.config.num_hidden_layers
    assert out["languages"] is None and out["labels"] is None and out["tokenizer"] is None
    assert out["origin"] == "directory" and out["path"] == str(tmp_path.resolve())


def test_xlm_languages_labels_and_a_tied_bin(tmp_path: Path) -> None:
    model = tiny_model("xlm", class_name="XLMForSequenceClassification", id2label={0: "neg", 1: "pos", 2: "mixed"},
                         lang2id={"de": 0, "en": 1, "fr": 2}, id2lang={0: "de", 1: "en", 2: "fr"})
    save_bin(model, tmp_path)  # the tied copies stored twice, as the reference writes .bin files
    out = info(tmp_path)
    assert out["languages"] == {"de": 0, "en": 1, "fr": 2}
    assert out["labels"] == ["neg", "pos", "mixed"] and out["commands"] == ["classify", "evaluate", "convert", "train"]
    assert out["weights"]["format"] == "bin" and out["parameters"] == model.num_parameters()


def test_tied_weights_are_counted_once(tmp_path: Path) -> None:
    model = tiny_model("mvp")
    save_bin(model, tmp_path)  # the .bin holds the tied copies too, as the reference writes it
    out = info(tmp_path)
    assert out["parameters"] == model.num_parameters()
    assert out["weights"]["tensors"] == len(model.state_dict()) - 3  # lm_head and the two embed_tokens


def test_converted_checkpoints(tmp_path: Path) -> None:
    tiny_model("xglm").save_pretrained(tmp_path / "src")
    convert_checkpoint(tmp_path / "src", tmp_path / "bf16", dtype="bfloat16", max_shard_size="10kB", safe=False,
                       verify=False)
    out = summarize(tmp_path / "bf16")
    assert list(out["dtypes"]) == ["bfloat16"] and out["config_dtype"] == "bfloat16"
    assert out["weights"]["format"] == "bin" and out["weights"]["shards"] > 1
    assert out["weights"]["files"][0] == "pytorch_model-00001-of-{:05d}.bin".format(out["weights"]["shards"])


@pytest.mark.parametrize(
    ("name", "arch", "tokenizer"),
    [("xlnet/xlnet-base-cased", "XLNetLMHeadModel", "XLNetTokenizer"),
     ("RUCAIBox/mvp", "MvpForConditionalGeneration", "MvpTokenizer"),
     ("microsoft/prophetnet-large-uncased", "ProphetNetForConditionalGeneration", "ProphetNetTokenizer")],
)
def test_builtin_models_without_weights(name: str, arch: str, tokenizer: str) -> None:
    out = info(name)
    assert out["origin"] == "builtin" and out["weights"] is None and out["dtypes"] == {}
    assert out["has_weights"] is False
    assert out["architectures"] == [arch] and out["tokenizer"] == tokenizer
    assert out["commands"] == ["tokenize"]  # the model commands need weights
    config = transformers.AutoConfig.from_pretrained(BUILTIN / name)
    with torch.device("meta"):
        reference = getattr(transformers, arch)(config)
    assert out["parameters"] == reference.num_parameters()
    special = out["special_tokens"]
    theirs = transformers.AutoTokenizer.from_pretrained(BUILTIN / name)
    for attr, entry in special.items():
        if attr == "additional_special_tokens":
            assert [e["token"] for e in entry] == theirs.additional_special_tokens
        else:
            assert entry == {"token": getattr(theirs, attr), "id": getattr(theirs, attr + "_id")}, attr
    assert out["tokenizer_vocab_size"] == len(theirs)


def test_text_and_tsv_tables(tmp_path: Path) -> None:
    tiny_model("xlm", lang2id={"en": 0, "fr": 1}, n_langs=2).save_pretrained(tmp_path)
    result = cli("info", tmp_path, "-O", "text")
    assert result.exit_code == 0, result.stderr
    rows = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in result.stdout.splitlines()}
    assert rows["family"] == "XLM (xlm)" and rows["languages"] == "en=0, fr=1"
    assert rows["commands"] == "fill-mask, generate, score, evaluate, convert, train" and rows["max positions"] == "24"
    assert rows["parameters"].startswith(f"{tiny_model('xlm', n_langs=2).num_parameters():,} (")
    tsv = cli("info", tmp_path, "--output-format", "tsv")
    assert tsv.exit_code == 0 and all(line.count("\t") == 1 for line in tsv.stdout.splitlines())
    assert "weights\tsafetensors, 1 file(s)" in tsv.stdout


def test_model_from_the_hub_cache_and_xcli_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    tiny_model("xglm").save_pretrained(snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    out = info("acme/tiny")
    assert out["origin"] == "cache" and out["family"] == "XGLM" and out["model"] == "acme/tiny"
    monkeypatch.setenv("XCLI_MODEL", "acme/tiny")
    assert info()["path"] == out["path"]


def test_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCLI_MODEL", raising=False)
    result = cli("info")
    assert result.exit_code == 2 and "no model given" in one_line_error(result)
    result = cli("info", tmp_path / "missing")
    assert result.exit_code == 2 and "not found" in one_line_error(result)
    (tmp_path / "empty").mkdir()
    result = cli("info", tmp_path / "empty")
    assert result.exit_code == 1 and "no config.json" in one_line_error(result)
    shutil.copytree(BUILTIN / "RUCAIBox" / "mvp", tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"\x05")
    result = cli("info", tmp_path / "broken")
    assert result.exit_code == 1 and "truncated" in one_line_error(result)


def test_a_directory_without_weights_says_so(tmp_path: Path) -> None:
    """Exit 0 (documented: info is informational), with has_weights false, no model commands, a warning."""
    model = tiny_model("xlnet")
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    result = cli("info", tmp_path)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["has_weights"] is False and out["weights"] is None and out["dtypes"] == {}
    assert out["commands"] == [] and out["parameters"] == model.num_parameters()
    [line] = result.stderr.splitlines()
    assert line.startswith("xcli: warning:") and "has no weights" in line
    rows = dict(line.split("  ", 1) for line in cli("info", tmp_path, "-O", "text").stdout.splitlines())
    assert rows["weights"].strip().startswith("none") and "from config.json" in rows["parameters"]


def test_absurd_configs_are_refused_before_anything_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import xcli_models.config as config_module

    tiny_model("xglm").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layers": 1_000_000}))
    started = time.monotonic()
    result = cli("info", tmp_path)
    assert result.exit_code == 1 and result.stdout == ""
    assert "num_layers must be a whole number from 0 to 1024, not 1000000" in one_line_error(result)
    assert time.monotonic() - started < 10
    # a model that does not fit the memory left, in the smallest dtype: the field that makes it large is named
    (tmp_path / "config.json").write_text(json.dumps({**config, "ffn_dim": 10**8}))
    monkeypatch.setattr(config_module, "available_memory", lambda: 2**30)
    result = cli("info", tmp_path)
    message = one_line_error(result)
    assert result.exit_code == 1 and "cannot load the checkpoint" in message and "ffn_dim 100000000:" in message
    assert "bfloat16, more than the 1 GiB of memory available" in message


def test_architectures_naming_a_class_xcli_lacks(tmp_path: Path) -> None:
    tiny_model("mvp").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["MvpForTimeTravel"]}))
    result = cli("info", tmp_path)
    assert result.exit_code == 1
    assert "architectures (MvpForTimeTravel) name no MVP class xcli has" in one_line_error(result)
