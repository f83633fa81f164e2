"""A sixth family in one file: its config, model, heads and one registry line are all it takes.

The toy family is a tiny pre-LN causal transformer built from the shared layers, with a
sequence-classification head (pooled at the last real token) and a causal-LM head, and MVP's
byte-level BPE tokenizer. It declares what its heads can do (:class:`Capabilities`), is
registered under ``model_type`` "toy" for each test only (the fixture restores the registry),
saved with xcli's own ``save_pretrained``, and runs through ``xcli classify`` and
``xcli generate`` without a line changed anywhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from test_cli_support import jsonl
from xcli.app import app
from xcli_models import layers
from xcli_models.config import Config
from xcli_models.generation.adapters import Parts, last_hidden_state
from xcli_models.heads import TaskModel, head_arguments, sequence_classification_loss
from xcli_models.layers.stack import open_cache, run_layers
from xcli_models.modeling import PreTrainedModel, resolve_flags
from xcli_models.outputs import BaseModelOutput, ClassifierOutput, LMOutput
from xcli_models.registry import FAMILIES, Capabilities, Family, all_heads, capabilities, heads_for

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TEXTS = ["the cat sat on the mat", "a dog", "the mat sat on a cat and a dog sat on the cat"]


# ------------------------------------------------------------------------------ the family
class ToyConfig(Config):
    model_type: ClassVar[str] = "toy"
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 300, "max_position_embeddings": 64, "d_model": 16, "ffn_dim": 32, "num_layers": 2,
        "attention_heads": 2, "activation_function": "gelu", "init_std": 0.2,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    }


class ToyPreTrainedModel(PreTrainedModel):
    config_class = ToyConfig
    base_model_prefix = "model"


class ToyModel(ToyPreTrainedModel):
    """Token and position embeddings, pre-LN causal layers, a final norm. (B, T) -> (B, T, D)."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        dim = config.d_model
        self.embed_tokens = nn.Embedding(config.vocab_size, dim, config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, dim)
        self.layers = nn.ModuleList(
            layers.TransformerLayer.with_norms(
                "pre", layers.Attention(config.attention_heads, **layers.projections(dim)),
                layers.FeedForward(dim, config.ffn_dim, config.activation_function), dim,
            )
            for _ in range(config.num_layers)
        )
        self.layer_norm = nn.LayerNorm(dim)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None, past_key_values: Any = None, use_cache: bool | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        output_attentions, output_hidden_states, return_dict = resolve_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        cache, past = open_cache(past_key_values, use_cache, len(self.layers))
        length = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=input_ids.device)[None]
        hidden = self.embed_tokens(input_ids) + self.embed_positions(position_ids)
        mask = layers.decoder_mask(attention_mask, length, past + length, hidden.dtype, hidden.device)
        out = run_layers(
            self.layers, hidden, shared={"self_mask": mask}, cache=cache, output_hidden_states=output_hidden_states,
            output_attentions=output_attentions, final=self.layer_norm,
        )
        return out if return_dict else out.to_tuple()


class ToyForSequenceClassification(ToyPreTrainedModel, TaskModel):
    """Logits from the last real token's state (right padding). (B, T) -> (B, num_labels)."""

    base_class = ToyModel
    arguments = head_arguments(ToyModel.forward, {"return_dict": ("labels",)})
    head_inputs = ("labels", "attention_mask")
    output = ClassifierOutput

    def add_head(self, config: ToyConfig) -> None:
        self.score = nn.Linear(config.d_model, config.num_labels)

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        return {**inputs, "attention_mask": own["attention_mask"]}  # the head reads it too

    def head(self, base: BaseModelOutput, labels: torch.Tensor | None = None,
             attention_mask: torch.Tensor | None = None) -> dict[str, Any]:
        states = base.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)
        last = attention_mask.long().sum(-1) - 1  # (B,)
        logits = self.score(states[torch.arange(states.shape[0], device=states.device), last])
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        return {"loss": loss, "logits": logits}


class ToyForCausalLM(ToyPreTrainedModel, TaskModel):
    """The LM head tied to the token embeddings. (B, T) -> (B, T, vocab_size)."""

    base_class = ToyModel
    output_ties = {"lm_head.weight": "model.embed_tokens.weight"}
    arguments = head_arguments(ToyModel.forward, {"return_dict": ("labels",)})
    head_inputs = ("labels",)
    output = LMOutput

    def add_head(self, config: ToyConfig) -> None:
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def generation_parts(self) -> Parts:
        return Parts(decoder=self.model, hidden=last_hidden_state, head=self.lm_head)

    def head(self, base: BaseModelOutput, labels: torch.Tensor | None = None) -> dict[str, Any]:
        return {"loss": None, "logits": self.lm_head(base.last_hidden_state)}


#: what the toy heads can do (a real family keeps this in its torch-free capabilities.py)
HEADS = {
    "ToyForSequenceClassification": Capabilities(classify="sequence", train="sequence-classification",
                                                 token_types=False),
    "ToyForCausalLM": Capabilities(generate="causal", train="causal-lm", token_types=False),
}

#: the one registry line
TOY = Family(
    name="Toy", config=f"{__name__}:ToyConfig", tokenizer="xcli_models.tokenization.byte_bpe:MvpTokenizer",
    models=__name__, heads=f"{__name__}:HEADS",
)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def toy_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy family registered for one test; monkeypatch restores the registry afterwards."""
    monkeypatch.setitem(FAMILIES, "toy", TOY)
    monkeypatch.delenv("XCLI_MODEL", raising=False)


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xcli_models.tokenization.trainers import learn

    directory = tmp_path_factory.mktemp("toy-vocab")
    learn("mvp", TEXTS * 4 + ["hello world, a toy family runs here"], directory, size=ToyConfig.defaults["vocab_size"])
    return directory


def save(model: PreTrainedModel, vocabulary: Path, directory: Path) -> Path:
    model.save_pretrained(directory)
    for file in vocabulary.iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    return directory


# ------------------------------------------------------------------------------ tests
def test_the_registry_lists_the_toy_heads_only_while_registered(toy_family: None) -> None:
    assert heads_for("classify", "sequence")[-1] == "ToyForSequenceClassification"
    assert "ToyForSequenceClassification" in heads_for("classify")
    assert heads_for("generate", "causal")[-1] == "ToyForCausalLM"
    assert capabilities("ToyForCausalLM").commands == ("generate", "score")
    from xcli_models.tasks import commands_for

    assert commands_for(["ToyForSequenceClassification"]) == ["classify"]


def test_no_toy_is_left_registered() -> None:
    assert "toy" not in FAMILIES
    assert not any(name.startswith("Toy") for name in all_heads())


def test_classify(toy_family: None, vocabulary: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ToyConfig(id2label={0: "calm", 1: "wild"})
    path = save(ToyForSequenceClassification(config).eval(), vocabulary, tmp_path / "toy-classifier")
    assert json.loads((path / "config.json").read_text())["architectures"] == ["ToyForSequenceClassification"]

    result = runner.invoke(app, ["classify", "-m", str(path), "-b", "2", "--device", "cpu", *TEXTS])
    assert result.exit_code == 0, result.stderr
    out = jsonl(result.stdout)
    assert len(out) == len(TEXTS)

    from xcli_models.auto import AutoModel
    from xcli_models.tokenization import AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    for text, mine in zip(TEXTS, out, strict=True):
        ids = torch.tensor([tokenizer.encode(text)])
        with torch.no_grad():
            probs = model(ids).logits[0].softmax(-1)
        assert mine["label"] == config.id2label[int(probs.argmax())]
        assert mine["scores"][mine["label"]] == pytest.approx(float(probs.max()), abs=1e-5)

    info = runner.invoke(app, ["info", str(path)])  # info and convert ask the registry too
    assert info.exit_code == 0, info.stderr
    assert json.loads(info.stdout)["commands"] == ["tokenize", "classify", "evaluate", "convert", "train"]


def test_generate(toy_family: None, vocabulary: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = save(ToyForCausalLM(ToyConfig()).eval(), vocabulary, tmp_path / "toy-lm")

    args = ["generate", "-m", str(path), "--device", "cpu", "--max-new-tokens", "5", "--greedy"]
    result = runner.invoke(app, [*args, "-b", "2", *TEXTS])
    assert result.exit_code == 0, result.stderr
    out = jsonl(result.stdout)
    assert len(out) == len(TEXTS)
    # a causal head: the prompt, then the new tokens
    assert all(o["generated_text"].startswith(text) and len(o["generated_text"]) > len(text)
               for o, text in zip(out, TEXTS, strict=True))

    # batching (left padding, positions that skip it) never changes a text: one prompt at a time agrees
    alone = [jsonl(runner.invoke(app, [*args, text]).stdout)[0] for text in TEXTS]
    assert [o["generated_text"] for o in alone] == [o["generated_text"] for o in out]
