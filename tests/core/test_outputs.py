"""Output objects: each lists its fields in the reference's order (``return_dict=False`` tuples and
``out[i]`` depend on it), and reads by attribute, key and position."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xcli_models import outputs

#: our output class -> (reference module, its class with the same fields)
SAME_FIELDS = {
    "BaseModelOutput": ("modeling_outputs", "BaseModelOutputWithPastAndCrossAttentions"),
    "Seq2SeqModelOutput": ("modeling_outputs", "Seq2SeqModelOutput"),
    "LMOutput": ("modeling_outputs", "CausalLMOutputWithCrossAttentions"),
    "Seq2SeqLMOutput": ("modeling_outputs", "Seq2SeqLMOutput"),
    "ClassifierOutput": ("modeling_outputs", "SequenceClassifierOutput"),
    "Seq2SeqClassifierOutput": ("modeling_outputs", "Seq2SeqSequenceClassifierOutput"),
    "SpanQAOutput": ("modeling_outputs", "QuestionAnsweringModelOutput"),
    "Seq2SeqSpanQAOutput": ("modeling_outputs", "Seq2SeqQuestionAnsweringModelOutput"),
    "BeamQAOutput": ("models.xlm.modeling_xlm", "XLMForQuestionAnsweringOutput"),
}


@pytest.mark.parametrize("name", sorted(SAME_FIELDS))
def test_fields_come_in_the_references_order(name: str) -> None:
    import importlib

    pytest.importorskip("transformers", reason="the reference is the oracle here")
    module, reference = SAME_FIELDS[name]
    theirs = getattr(importlib.import_module(f"transformers.{module}"), reference)
    assert [f.name for f in dataclasses.fields(getattr(outputs, name))] == [f.name for f in dataclasses.fields(theirs)]


def test_an_output_reads_by_attribute_key_and_position_counting_only_set_fields() -> None:
    logits, hidden = torch.ones(2), (torch.zeros(1),)
    out = outputs.Seq2SeqLMOutput(logits=logits, encoder_hidden_states=hidden)
    assert out.to_tuple() == (logits, hidden) and out[1] is hidden and out["logits"] is logits
    assert out.keys() == ["logits", "encoder_hidden_states"] and len(out) == 2 and "loss" not in out
    with pytest.raises(KeyError):
        out["loss"]


def test_the_derived_encoder_decoder_output_has_the_written_ones_fields() -> None:
    """seq2seq_output (which ProphetNet's encoder-decoder output uses) and the parts the generic
    outputs are written from describe one layout."""
    derived = outputs.seq2seq_output("Derived", outputs.BaseModelOutput, module=__name__)
    assert [f.name for f in dataclasses.fields(derived)] == [
        f.name for f in dataclasses.fields(outputs.Seq2SeqModelOutput)]
