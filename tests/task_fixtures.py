"""Tiny random checkpoints with real tokenizers: the one factory of the tests.

:func:`native` (and :func:`build_native`) builds a checkpoint of any family and head with xcli's
own classes and ``save_pretrained``: every test whose subject is not parity with the reference uses
it, and runs without the reference installed. The oracle builders (:func:`build`: XLM en-fr BPE,
XLNet spiece.model, the MVP/RoBERTa byte-level BPE, with vocab_size set to the tokenizer's size)
and :func:`oracle_pipeline` are for the parity tests; they skip the test where the reference is
absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from conftest import shared_path
from compare import ATOL, reference

LANGS = {"en": 0, "fr": 1}
#: prompts of three lengths for the generation tests
GENERATE_PROMPTS = ["Hello world, this is", "The cat",
                    "A much longer prompt than the others, with a comma and more words"]
#: texts of three lengths for the scoring tests
SCORE_TEXTS = ["Hello world, this is", "The cat", "A much longer text than the others, with a comma and more words"]
LABELS = {0: "B-PER", 1: "I-PER", 2: "O", 3: "B-LOC", 4: "I-LOC"}

#: tiny sizes with odd head counts
SIZES = {
    "xlm": dict(emb_dim=24, n_layers=2, n_heads=3, max_position_embeddings=128, n_langs=2, lang2id=LANGS,
                id2lang={v: k for k, v in LANGS.items()}),
    "xlnet": dict(d_model=24, n_layer=2, n_head=3, d_inner=32),
    "mvp": dict(d_model=24, encoder_layers=1, decoder_layers=1, encoder_attention_heads=3, decoder_attention_heads=3,
                encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128),
}
CONFIGS = {"xlm": "XLMConfig", "xlnet": "XLNetConfig", "mvp": "MvpConfig"}


def oracle_tokenizer(family: str) -> Any:
    """The oracle's slow tokenizer of a family, built from the real files in ../shared/data."""
    transformers = reference()
    if family == "xlm":
        return transformers.XLMTokenizer(
            str(shared_path("tokenizers", "xlm", "enfr", "xlm-mlm-enfr-1024.vocab.json")),
            str(shared_path("tokenizers", "xlm", "enfr", "codes_enfr")),
            lang2id=LANGS, id2lang={v: k for k, v in LANGS.items()},
        )
    if family == "xlnet":
        return transformers.XLNetTokenizer(str(shared_path("tokenizers", "xlnet", "spiece.model")))
    return transformers.MvpTokenizer(
        str(shared_path("tokenizers", "roberta_bart_mvp", "vocab.json")),
        str(shared_path("tokenizers", "roberta_bart_mvp", "merges.txt")),
    )


def build(directory: Path, family: str, class_name: str, seed: int = 0, **config: Any) -> tuple[Any, Any, Path]:
    """A random oracle model with the family's real tokenizer, saved to ``directory``.

    Every weight is perturbed so that predictions are far from uniform (no near-ties in top-k).
    Returns the oracle model (eval), the oracle's slow tokenizer and the directory.
    """
    transformers = reference()
    tokenizer = oracle_tokenizer(family)
    cfg = getattr(transformers, CONFIGS[family])(vocab_size=len(tokenizer), **{**SIZES[family], **config})
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer, directory


# ------------------------------------------------------------------ xcli's own builders
#: tiny sizes per family, for :func:`build_native`
NATIVE_SIZES = {
    "xlm": dict(emb_dim=16, n_layers=1, n_heads=2, max_position_embeddings=128, n_langs=2, lang2id=LANGS,
                id2lang={v: k for k, v in LANGS.items()}),
    "xlnet": dict(d_model=16, n_layer=1, n_head=2, d_inner=24),
    "mvp": dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=128),
    "xglm": dict(d_model=16, attention_heads=2, num_layers=1, ffn_dim=24, max_position_embeddings=128),
    "prophetnet": dict(hidden_size=16, num_encoder_layers=1, num_decoder_layers=1, num_encoder_attention_heads=2,
                       num_decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, ngram=2, num_buckets=8,
                       relative_max_distance=16, max_position_embeddings=128),
}
NATIVE_SIZES["xlm-prophetnet"] = NATIVE_SIZES["prophetnet"]
_NATIVE_CONFIGS = {"xlm": "XLMConfig", "xlnet": "XLNetConfig", "mvp": "MvpConfig", "xglm": "XGLMConfig",
                   "prophetnet": "ProphetNetConfig", "xlm-prophetnet": "XLMProphetNetConfig"}


def native_family(class_name: str) -> str:
    """The family of an xcli model class name ("XLMProphetNetForCausalLM" -> "xlm-prophetnet")."""
    for prefix, family in (("XLMProphetNet", "xlm-prophetnet"), ("ProphetNet", "prophetnet"), ("XLNet", "xlnet"),
                           ("XLM", "xlm"), ("XGLM", "xglm"), ("Mvp", "mvp")):
        if class_name.startswith(prefix):
            return family
    raise ValueError(f"no family for {class_name}")


def native_tokenizer(family: str) -> Any:
    """xcli's tokenizer of a family: the built-in demo files, else the real files in ../shared/data."""
    import xcli_models
    from xcli.models import builtin_root
    from xcli_models.tokenization import AutoTokenizer

    builtin = {"xlnet": ("xlnet", "xlnet-base-cased"), "mvp": ("RUCAIBox", "mvp"),
               "prophetnet": ("microsoft", "prophetnet-large-uncased")}
    if family in builtin:
        return AutoTokenizer.from_pretrained(builtin_root().joinpath(*builtin[family]))
    if family == "xlm":
        return xcli_models.XLMTokenizer(
            shared_path("tokenizers", "xlm", "enfr", "xlm-mlm-enfr-1024.vocab.json"),
            shared_path("tokenizers", "xlm", "enfr", "codes_enfr"),
            lang2id=LANGS, id2lang={v: k for k, v in LANGS.items()},
        )
    spm = shared_path("tokenizers", "hf_test_fixtures", "test_sentencepiece.model")
    return (xcli_models.XGLMTokenizer if family == "xglm" else xcli_models.XLMProphetNetTokenizer)(spm)


def native(directory: Path, class_name: str, seed: int = 0, *, sizes: dict[str, Any] | None = None,
           perturb: float = 0.0, **config: Any) -> tuple[Any, Any, Path]:
    """A random xcli model of ``class_name`` with its family's real tokenizer, written by xcli's own
    ``save_pretrained`` to ``directory``; (model in eval mode, xcli tokenizer, directory).

    ``sizes`` replaces the family's tiny sizes (:data:`NATIVE_SIZES`), ``config`` overrides single
    fields; ``perturb`` adds that much Gaussian noise to every weight (predictions far from uniform,
    as the oracle builder :func:`build` makes them).
    """
    import xcli_models

    family = native_family(class_name)
    tokenizer = native_tokenizer(family)
    special = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
               "eos_token_id": tokenizer.eos_token_id}
    if family in ("prophetnet", "xlm-prophetnet"):  # [SEP] starts and ends their sequences
        sep = tokenizer.sep_token_id
        special.update(bos_token_id=sep, eos_token_id=sep, decoder_start_token_id=sep)
    elif family == "mvp":
        special["decoder_start_token_id"] = tokenizer.eos_token_id
    settings = {"vocab_size": len(tokenizer), **(NATIVE_SIZES[family] if sizes is None else sizes),
                **{k: v for k, v in special.items() if v is not None}, **config}
    model_config = getattr(xcli_models, _NATIVE_CONFIGS[family])(**settings)
    torch.manual_seed(seed)
    model = getattr(xcli_models, class_name)(model_config).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * perturb)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)
    return model, tokenizer, directory


def build_native(directory: Path, class_name: str, seed: int = 0, **config: Any) -> Path:
    """:func:`native`'s directory: a tiny random xcli checkpoint of ``class_name`` (:data:`NATIVE_SIZES`,
    ``config`` overrides the sizes)."""
    return native(directory, class_name, seed, **config)[2]


def oracle_pipeline(task: str, model: Any, tokenizer: Any) -> Any:
    return reference().pipeline(task, model=model, tokenizer=tokenizer, device="cpu")


def assert_predictions(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """One blank's predictions: same tokens and sequences, scores within ATOL."""
    assert [p["token_id"] for p in ours] == [int(p["token"]) for p in theirs]
    assert [p["token"] for p in ours] == [p["token_str"] for p in theirs]
    assert [p["sequence"] for p in ours] == [p["sequence"] for p in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a["score"] - float(b["score"])) <= ATOL


def per_blank(reference: Any) -> list[list[dict[str, Any]]]:
    """The pipeline's answer for one text as one list per blank (it returns a bare list for one)."""
    return [reference] if reference and isinstance(reference[0], dict) else reference


# ------------------------------------------------------------------ question answering
def xquad_records(n_articles: int = 3, single_spaced: bool = False) -> list[tuple[str, str]]:
    """(question, context) pairs from ../shared/data's XQuAD (English)."""
    data = json.loads(shared_path("datasets", "xquad", "xquad.en.json").read_text(encoding="utf-8"))
    records = []
    for article in data["data"][:n_articles]:
        for paragraph in article["paragraphs"][:2]:
            context = " ".join(paragraph["context"].split()) if single_spaced else paragraph["context"]
            for qa in paragraph["qas"][:2]:
                records.append((qa["question"], context))
    return records


def oracle_answers(pipe: Any, question: str, context: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """The oracle pipeline's answers, always as a list."""
    kwargs = dict(options)
    if "handle_impossible" in kwargs:
        kwargs["handle_impossible_answer"] = kwargs.pop("handle_impossible")
    out = pipe(question=question, context=context, **kwargs)
    return out if isinstance(out, list) else [out]


def close(a: float, b: float) -> bool:
    """Within 1e-4, and (scores are small products of probabilities) within 1e-4 relative too."""
    return abs(a - b) <= ATOL and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-10)


def assert_same_answers(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], what: str) -> None:
    """Same answers, offsets and order; scores :func:`close`."""
    assert [(a["answer"], a["start"], a["end"]) for a in ours] == [
        (a["answer"], a["start"], a["end"]) for a in theirs
    ], what
    for a, b in zip(ours, theirs, strict=True):
        assert close(a["score"], b["score"]), f"{what}: score {a['score']} vs {b['score']}"


#: tiny sizes with weights drawn wide (init_std 0.3), so that answers are far from ties
QA_SIZES = {
    "mvp": dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=512, init_std=0.3),
    "xlnet": dict(d_model=32, n_layer=2, n_head=4, d_inner=48, initializer_range=0.3, start_n_top=4, end_n_top=3),
    "xlm": dict(emb_dim=32, n_layers=2, n_heads=4, init_std=0.3, embed_init_std=0.3, start_n_top=4, end_n_top=3,
                n_langs=2, lang2id={"en": 0, "fr": 1}, id2lang={0: "en", 1: "fr"}),
}
QA_CLASSES = {("mvp", "span"): "MvpForQuestionAnswering", ("xlnet", "span"): "XLNetForQuestionAnsweringSimple",
              ("xlnet", "beam"): "XLNetForQuestionAnswering", ("xlm", "span"): "XLMForQuestionAnsweringSimple",
              ("xlm", "beam"): "XLMForQuestionAnswering"}


def qa_checkpoint(directory: Path, family: str, head: str = "span") -> Path:
    """A tiny question-answering checkpoint of ``family``'s ``head`` ("span" or "beam") written by xcli."""
    return native(directory, QA_CLASSES[family, head], sizes=QA_SIZES[family])[2]


def saved(model: Any, tokenizer: Any, out: Path) -> Path:
    """``model`` and ``tokenizer`` written to ``out`` as training writes a finished checkpoint."""
    from xcli_models.training import CheckpointDir

    checkpoint = CheckpointDir(out)
    checkpoint.save(model, tokenizer)
    checkpoint.commit()
    return out
