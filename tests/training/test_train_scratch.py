"""Training from nothing: ``--from-scratch`` and config-only directories.

Fresh weights must be drawn as the reference draws them for each family and head: the same
constants (zero biases, unit norms, XLM's sinusoidal table) exactly, and the same distribution
for the random ones (mean and spread within what sampling allows). Checked against the oracle's
freshly built models of the same config (skipped without the reference); then a config-only
directory (written by xcli) trains end to end and ``xcli info`` and ``xcli classify`` load the result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from compare import reference
from test_cli_train import COMMON, run, write_jsonl
from test_training import SENTIMENT, build

from xcli.app import app
from xcli_models import AutoConfig, AutoModel
from xcli_models.training import fresh_model, has_weights, load_for_training

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

CLASSES = [
    ("xlnet", "XLNetForSequenceClassification", {}),
    ("xlnet", "XLNetLMHeadModel", {}),
    ("xlnet", "XLNetForQuestionAnswering", {}),
    ("mvp", "MvpForConditionalGeneration", {}),
    ("mvp", "MvpForSequenceClassification", {"use_prompt": True, "prompt_length": 4, "prompt_mid_dim": 16}),
    ("xlm", "XLMWithLMHeadModel", {}),
    ("xlm", "XLMForTokenClassification", {"sinusoidal_embeddings": True}),
    ("xlm", "XLMForQuestionAnswering", {}),
    ("xglm", "XGLMForCausalLM", {}),
    ("xlm-prophetnet", "XLMProphetNetForConditionalGeneration", {}),
    ("xlm-prophetnet", "XLMProphetNetForCausalLM", {}),
]


def _reference(path: Path, class_name: str, seed: int) -> dict[str, torch.Tensor]:
    transformers = reference()
    config = transformers.AutoConfig.from_pretrained(path)
    torch.manual_seed(seed)
    return {k: v.detach().float() for k, v in getattr(transformers, class_name)(config).state_dict().items()}


@pytest.mark.parametrize("family,class_name,config", CLASSES, ids=[f"{c[1]}{'-' + next(iter(c[2])) if c[2] else ''}"
                                                                   for c in CLASSES])
def test_fresh_weights_are_drawn_as_the_reference_draws_them(tmp_path: Path, family: str, class_name: str,
                                                              config: dict[str, Any]) -> None:
    _, path = build(tmp_path / "m", family, class_name, **config)
    ours = fresh_model(AutoModel.class_for(path), AutoConfig.from_pretrained(path), seed=3)
    weights = {k: v.detach().float() for k, v in ours.hf_state_dict().items()}
    first, second = _reference(path, class_name, 0), _reference(path, class_name, 1)
    checked = 0
    for name, mine in weights.items():
        if name not in first:
            continue  # a buffer the reference keeps under another name, or not at all
        theirs, again = first[name], second[name]
        assert mine.shape == theirs.shape, name
        if torch.equal(theirs, again):  # a constant: zeros, ones, a sinusoidal table
            assert torch.equal(mine, theirs), name
        else:
            n, spread = theirs.numel(), float(theirs.std())
            assert abs(float(mine.std()) - spread) <= 6 * spread / math.sqrt(2 * n) + 1e-6, name
            assert abs(float(mine.mean()) - float(theirs.mean())) <= 8 * spread / math.sqrt(n), name
        checked += 1
    assert checked >= len(first) * 0.8


def test_the_seed_decides_the_fresh_weights(tmp_path: Path) -> None:
    _, path = build(tmp_path / "m", "xglm", "XGLMForCausalLM")
    one, again, other = (load_for_training(path, from_scratch=True, seed=s, device="cpu").model for s in (5, 5, 6))
    theirs = load_for_training(path, device="cpu").model
    name = next(n for n, p in one.named_parameters() if p.dim() == 2 and "embed" not in n)
    assert torch.equal(one.get_parameter(name), again.get_parameter(name))
    assert not torch.equal(one.get_parameter(name), other.get_parameter(name))
    assert not torch.equal(one.get_parameter(name), theirs.get_parameter(name))  # not the checkpoint's


@pytest.fixture
def config_only(tmp_path: Path) -> Path:
    """A directory with config.json and tokenizer files, and no weights."""
    _, path = build(tmp_path / "config-only", "xlnet", "XLNetModel", seed=4)
    (path / "model.safetensors").unlink()
    assert not has_weights(path)
    return path


def test_a_config_only_directory_trains_end_to_end(tmp_path: Path, config_only: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", SENTIMENT)
    out = tmp_path / "new"
    result = run("-m", str(config_only), "--labels", "neg,pos", "--train", str(data), "--dev", str(data), "-o",
                 str(out), "--lr", "1e-2", "--epochs", "8", "-b", "4", "--seed", "9")
    assert result.exit_code == 0, result.stderr
    assert "every weight initialised here" in result.stderr and "has no weights" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["from_scratch"] is True and summary["model_class"] == "XLNetForSequenceClassification"
    assert summary["dev_accuracy"] >= 0.9

    info = runner.invoke(app, ["info", "-m", str(out)])
    assert info.exit_code == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["family"].lower().startswith("xlnet") and "classify" in json.dumps(described)
    classified = runner.invoke(app, ["classify", "-m", str(out), *COMMON, "a great film", "an awful film"])
    assert classified.exit_code == 0, classified.stderr
    assert [json.loads(line)["label"] for line in classified.stdout.splitlines()] == ["pos", "neg"]
    trained = AutoModel.from_pretrained(out)
    assert type(trained).__name__ == "XLNetForSequenceClassification" and trained.load_report.lines() == []
    assert trained.config.id2label == {0: "neg", 1: "pos"}


def test_from_scratch_ignores_the_checkpoints_weights(tmp_path: Path) -> None:
    _, path = build(tmp_path / "ckpt", "xlnet", "XLNetForSequenceClassification", seed=1,
                    id2label={0: "neg", 1: "pos"})
    data = write_jsonl(tmp_path / "train.jsonl", SENTIMENT[:4])
    outputs = {}
    for name, extra in (("tuned", ()), ("scratch", ("--from-scratch",))):
        result = run("-m", str(path), "--train", str(data), "-o", str(tmp_path / name), "--max-steps", "1",
                     "--lr", "1e-9", *extra)
        assert result.exit_code == 0, result.stderr
        outputs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    start = load_file(str(path / "model.safetensors"))
    key = "transformer.word_embedding.weight"
    assert torch.allclose(outputs["tuned"][key], start[key], atol=1e-6)
    assert not torch.allclose(outputs["scratch"][key], start[key], atol=1e-3)
