"""Text generation for records (xcli_models.tasks.generate) against the oracle's pipelines.

Tiny random checkpoints saved by transformers 4.56.2 carry real tokenizers from ../shared/data
(XGLM and XLM-ProphetNet: transformers' SentencePiece test fixture; XLNet: the real spiece.model;
ProphetNet: its English WordPiece vocabulary; MVP: the RoBERTa/BART byte-level BPE; XLM: the
en-fr BPE). The texts must equal what the reference's ``text-generation`` (causal models) and
``text2text-generation`` (encoder-decoder models) pipelines return with the same settings, for
greedy and beam search.

Oracle quirks (see the issue): the deprecated XLMProphetNet* classes have no ``generate``, so the
oracle is ProphetNetFor* (same architecture and weights) and xcli loads the checkpoint as
XLM-ProphetNet; the oracle's MvpForCausalLM crashes with its cache, so it generates uncached.
The builders here are shared with tests/cli/test_cli_generate.py.

What is xcli's own (seeded sampling, stop strings, streaming, truncation) runs on checkpoints xcli
wrote (:func:`native_build`) and needs no reference; the pipeline comparisons skip without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from conftest import shared_path
from compare import transformers
from task_fixtures import GENERATE_PROMPTS, native

from xcli_models.tasks.common import UnsupportedModel, load
from xcli_models.tasks.generate import (
    XLNET_PREFIX, GenerateOptionError, Generator, MissingField, bad_words_ids, mvp_prompt, show_separators,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LANGS = {"en": 0, "fr": 1}


# ------------------------------------------------------------------------- tokenizers
def _spm() -> str:
    return str(shared_path("tokenizers", "hf_test_fixtures", "test_sentencepiece.model"))


TOKENIZERS: dict[str, Callable[[], Any]] = {
    "xglm": lambda: transformers.XGLMTokenizer(_spm()),
    "xlm-prophetnet": lambda: transformers.XLMProphetNetTokenizer(_spm()),
    "prophetnet": lambda: transformers.ProphetNetTokenizer(
        str(shared_path("tokenizers", "prophetnet", "prophetnet-large-uncased.prophetnet.tokenizer"))
    ),
    "xlnet": lambda: transformers.XLNetTokenizer(str(shared_path("tokenizers", "xlnet", "spiece.model"))),
    "mvp": lambda: transformers.MvpTokenizer(
        str(shared_path("tokenizers", "roberta_bart_mvp", "vocab.json")),
        str(shared_path("tokenizers", "roberta_bart_mvp", "merges.txt")),
    ),
    "xlm": lambda: transformers.XLMTokenizer(
        str(shared_path("tokenizers", "xlm", "enfr", "xlm-mlm-enfr-1024.vocab.json")),
        str(shared_path("tokenizers", "xlm", "enfr", "codes_enfr")),
        lang2id=LANGS, id2lang={v: k for k, v in LANGS.items()},
    ),
}


# ------------------------------------------------------------------------ checkpoints
def _prophetnet_config(vocab: int, special: int) -> Any:
    return transformers.ProphetNetConfig(
        vocab_size=vocab, hidden_size=24, num_encoder_layers=2, num_decoder_layers=2, num_encoder_attention_heads=3,
        num_decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=40, ngram=2, num_buckets=8,
        relative_max_distance=16, max_position_embeddings=128, pad_token_id=0, bos_token_id=special,
        eos_token_id=special, decoder_start_token_id=special,
    )


def _mvp_config(vocab: int) -> Any:
    return transformers.MvpConfig(
        vocab_size=vocab, d_model=24, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
        decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=40, max_position_embeddings=128,
    )


@dataclass
class Spec:
    """A generative class: how the oracle builds it, which tokenizer it carries, how xcli names it."""

    oracle: str
    tokenizer: str
    config: Callable[[int], Any]  # vocabulary size -> oracle config
    causal: bool
    model_type: str | None = None  # config.json rewritten (XLM-ProphetNet)
    architecture: str | None = None
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)


SPECS: dict[str, Spec] = {
    "xglm": Spec("XGLMForCausalLM", "xglm", lambda v: transformers.XGLMConfig(
        vocab_size=v, d_model=24, attention_heads=3, num_layers=2, ffn_dim=40, max_position_embeddings=128), True),
    "xlm": Spec("XLMWithLMHeadModel", "xlm", lambda v: transformers.XLMConfig(
        vocab_size=v, emb_dim=24, n_heads=3, n_layers=2, causal=True, max_position_embeddings=128, n_langs=2,
        lang2id=LANGS, id2lang={v_: k for k, v_ in LANGS.items()}), True),
    "xlnet": Spec("XLNetLMHeadModel", "xlnet", lambda v: transformers.XLNetConfig(
        vocab_size=v, d_model=24, n_head=3, d_head=8, n_layer=2, d_inner=40), True),
    "mvp-causal": Spec("MvpForCausalLM", "mvp", _mvp_config, True, pipeline_kwargs={"use_cache": False}),
    "prophetnet-causal": Spec("ProphetNetForCausalLM", "prophetnet", lambda v: _prophetnet_config(v, 102), True),
    "xlm-prophetnet-causal": Spec(
        "ProphetNetForCausalLM", "xlm-prophetnet", lambda v: _prophetnet_config(v, 2), True,
        model_type="xlm-prophetnet", architecture="XLMProphetNetForCausalLM",
    ),
    "mvp": Spec("MvpForConditionalGeneration", "mvp", _mvp_config, False),
    "prophetnet": Spec("ProphetNetForConditionalGeneration", "prophetnet", lambda v: _prophetnet_config(v, 102), False),
    "xlm-prophetnet": Spec(
        "ProphetNetForConditionalGeneration", "xlm-prophetnet", lambda v: _prophetnet_config(v, 2), False,
        model_type="xlm-prophetnet", architecture="XLMProphetNetForConditionalGeneration",
    ),
}
CAUSAL = [n for n, s in SPECS.items() if s.causal]
SEQ2SEQ = [n for n, s in SPECS.items() if not s.causal]


@dataclass
class Built:
    name: str
    oracle: Any  # the oracle model (eval)
    tokenizer: Any  # the oracle's slow tokenizer
    path: Path

    @property
    def spec(self) -> Spec:
        return SPECS[self.name]

    def pipeline(self) -> Any:
        task = "text-generation" if self.spec.causal else "text2text-generation"
        return transformers.pipeline(task, model=self.oracle, tokenizer=self.tokenizer, device="cpu")

    def reference(self, texts: list[str], **settings: Any) -> list[list[str]]:
        """The oracle pipeline's texts for each prompt (a list per prompt). XLNet gets no prefix
        unless ``prefix`` is given (the pipeline's default long prefix is xcli's --xlnet-prefix)."""
        pipe = self.pipeline()
        if self.spec.oracle == "XLNetLMHeadModel":
            settings.setdefault("prefix", "")
        out = []
        for text in texts:
            result = pipe(text, **settings, **self.spec.pipeline_kwargs)
            out.append([r["generated_text"] for r in result])
        return out


_BUILT: dict[tuple[str, int], Built] = {}


def build(name: str, root: Path, seed: int = 0) -> Built:
    """A tiny random checkpoint of ``name`` with its real tokenizer, saved by the oracle (once per session).

    Every weight is perturbed so that next-token distributions are peaked (no near-ties).
    """
    key = (name, seed)
    if key not in _BUILT:
        spec = SPECS[name]
        tokenizer = TOKENIZERS[spec.tokenizer]()
        torch.manual_seed(seed)
        model = getattr(transformers, spec.oracle)(spec.config(len(tokenizer)))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        model.eval()
        directory = root / f"{name}-{seed}"
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        if spec.model_type:
            path = directory / "config.json"
            data = json.loads(path.read_text())
            data["model_type"] = spec.model_type
            data["architectures"] = [spec.architecture]
            path.write_text(json.dumps(data))
        _BUILT[key] = Built(name, model, tokenizer, directory)
    return _BUILT[key]


#: the xcli class of each spec, and what its config needs besides the tiny sizes
NATIVE = {"xglm": ("XGLMForCausalLM", {}), "xlm": ("XLMWithLMHeadModel", {"causal": True}),
          "xlnet": ("XLNetLMHeadModel", {}), "mvp-causal": ("MvpForCausalLM", {}),
          "prophetnet-causal": ("ProphetNetForCausalLM", {}), "xlm-prophetnet-causal": ("XLMProphetNetForCausalLM", {}),
          "mvp": ("MvpForConditionalGeneration", {}), "prophetnet": ("ProphetNetForConditionalGeneration", {}),
          "xlm-prophetnet": ("XLMProphetNetForConditionalGeneration", {})}


def native_build(name: str, root: Path, seed: int = 0) -> Built:
    """As :func:`build`, written by xcli's own classes (``task_fixtures.native``, weights perturbed
    alike): a Built with no oracle model, and xcli's tokenizer."""
    key = (f"native-{name}", seed)
    if key not in _BUILT:
        class_name, config = NATIVE[name]
        _, tokenizer, path = native(root / f"native-{name}-{seed}", class_name, seed, perturb=0.3, **config)
        _BUILT[key] = Built(name, None, tokenizer, path)
    return _BUILT[key]


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generate")


_LOADED: dict[Path, Any] = {}


def ours(built: Built) -> Any:
    """xcli's model and tokenizer for a built checkpoint (loaded once)."""
    if built.path not in _LOADED:
        _LOADED[built.path] = load(built.path, device="cpu")
    return _LOADED[built.path]


def generator(built: Built, **options: Any) -> Generator:
    task = ours(built)
    settings = options.pop("settings", {})
    return Generator(task.model, task.tokenizer, settings=settings, **options)


PROMPTS = GENERATE_PROMPTS


# ------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", list(SPECS))
def test_greedy_and_beam_texts_equal_the_pipeline(name: str, root: Path) -> None:
    built = build(name, root)
    greedy = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}
    for settings in (greedy, {"max_new_tokens": 6, "num_beams": 3, "do_sample": False}):
        expected = built.reference(PROMPTS, **settings)
        got = generator(built, settings=settings, batch_size=2).run(
            [generator(built, settings=settings).prepare(t) for t in PROMPTS]
        )
        assert [[r["generated_text"]] for r in got] == expected, settings


def test_new_text_only_equals_the_pipeline(root: Path) -> None:
    built = build("xglm", root)
    settings = {"max_new_tokens": 6, "do_sample": False, "num_beams": 1}
    expected = built.reference(PROMPTS[:2], return_full_text=False, **settings)
    got = generator(built, settings=settings, return_full_text=False)(PROMPTS[:2])
    assert [[r["generated_text"]] for r in got] == expected
    assert not got[0]["generated_text"].startswith(PROMPTS[0])


def test_xlnet_prefix_is_the_pipelines_and_never_shows(root: Path) -> None:
    built = build("xlnet", root)
    settings = {"max_new_tokens": 6, "do_sample": False, "num_beams": 1}
    expected = built.reference(PROMPTS[:2], prefix=XLNET_PREFIX, **settings)
    gen = generator(built, settings=settings, xlnet_prefix=True)
    prompt = gen.prepare(PROMPTS[0])
    assert len(prompt) > 100  # the passage is there for the model ...
    got = gen.run([prompt, gen.prepare(PROMPTS[1])])
    assert [[r["generated_text"]] for r in got] == expected
    assert all("Rasputin" not in r["generated_text"] for r in got)  # ... and not in the output
    plain = generator(built, settings=settings)(PROMPTS[:1])
    assert plain != got[:1]  # the default is without it (the pipeline's default has it)


def test_several_sequences_equal_the_pipeline(root: Path) -> None:
    built = build("mvp", root)
    settings = {"max_new_tokens": 5, "num_beams": 4, "num_return_sequences": 3, "do_sample": False}
    expected = built.reference(PROMPTS[:2], **settings)
    got = generator(built, settings=settings, scores=True)(PROMPTS[:2])
    for result, texts in zip(got, expected, strict=True):
        assert [s["generated_text"] for s in result["sequences"]] == texts
        assert result["generated_text"] == texts[0] and result["score"] == result["sequences"][0]["score"]
        scores = [s["score"] for s in result["sequences"]]
        assert scores == sorted(scores, reverse=True)
    with pytest.raises(GenerateOptionError, match="num_return_sequences"):
        generator(built, settings={"num_return_sequences": 2, "do_sample": False, "num_beams": 1})


@pytest.mark.parametrize("name", ["xglm", "mvp"])
def test_seed_makes_sampling_reproducible_across_runs_and_batches(name: str, root: Path) -> None:
    built = native_build(name, root)
    settings = {"max_new_tokens": 8, "do_sample": True, "top_k": 0, "temperature": 2.0, "num_return_sequences": 2}
    def texts(results: list[dict[str, Any]]) -> list[list[str]]:
        return [[s["generated_text"] for s in r["sequences"]] for r in results]

    runs = [generator(built, settings=settings, seed=7, batch_size=size)(PROMPTS) for size in (1, 3, 3)]
    assert texts(runs[0]) == texts(runs[1]) == texts(runs[2])
    assert runs[1] == runs[2]  # same batches: same numbers too (other batches: within float noise)
    samples = [t for row in texts(runs[0]) for t in row]
    assert len(set(samples)) > 1  # they are samples, not one greedy text
    other = generator(built, settings=settings, seed=8)(PROMPTS)
    assert texts(other) != texts(runs[0])


@pytest.mark.parametrize("name", ["xglm", "mvp", "xlnet"])
def test_stop_strings_cut_exactly(name: str, root: Path) -> None:
    built = native_build(name, root)
    settings = {"max_new_tokens": 12, "do_sample": False, "num_beams": 1}
    plain = generator(built, settings=settings, return_full_text=False)
    first = plain.prepare(PROMPTS[0])
    out = plain._generate([first])
    new_ids = out.sequences[0, out.prompt_length:].tolist()
    full = plain.new_text(first, new_ids)
    # a stop string across a token boundary: two characters either side of where the 4th token starts
    boundary = len(plain.new_text(first, new_ids[:3]))
    stop = full[boundary - 2: boundary + 2]
    assert len(stop) == 4, full
    cut = full[: full.index(stop)]
    gen = generator(built, settings={**settings, "stop_strings": [stop, "never there"]}, return_full_text=False)
    prompt = gen.prepare(PROMPTS[0])
    out = gen._generate([prompt])
    assert gen._results([prompt], out)[0]["generated_text"] == cut
    generated = out.sequences.shape[1] - out.prompt_length
    assert generated < 12  # it stopped at the token that completed the stop string
    assert stop in gen.new_text(prompt, out.sequences[0, out.prompt_length:].tolist())
    # beams stop and cut too
    beams = generator(built, settings={**settings, "num_beams": 2, "stop_strings": [stop]}, return_full_text=False)
    assert stop not in beams(PROMPTS[:1])[0]["generated_text"]


def test_stream_pieces_add_up_to_the_text(root: Path) -> None:
    for name in ("mvp-causal", "xlm-prophetnet"):
        built = native_build(name, root)
        settings = {"max_new_tokens": 10, "do_sample": False, "num_beams": 1}
        gen = generator(built, settings=settings)
        prompt = gen.prepare(PROMPTS[0])
        pieces: list[str] = []
        result = gen.stream(prompt, pieces.append)
        assert len(pieces) > 2
        assert result["generated_text"] == gen.run([prompt])[0]["generated_text"]
        shown = "".join(pieces)
        assert result["generated_text"].startswith(shown)
        if not built.spec.causal:  # nothing to hold back without clean-up
            assert shown == result["generated_text"]
        else:  # the last word waits for the end (the caller writes it)
            assert " " not in result["generated_text"][len(shown) + 1:]
    with pytest.raises(GenerateOptionError, match="one beam"):
        generator(built, settings={**settings, "num_beams": 2}).stream(prompt, pieces.append)


def test_bad_words_are_tokenised_as_the_reference_recipe(root: Path) -> None:
    built = build("mvp", root)
    settings = {"max_new_tokens": 6, "do_sample": False, "num_beams": 1}
    plain = generator(built, settings=settings)(PROMPTS[1:2])[0]["generated_text"]
    word = plain.split()[0]
    ids = built.tokenizer([word], add_prefix_space=True, add_special_tokens=False).input_ids
    assert bad_words_ids(ours(built).tokenizer, [word]) == ids
    expected = built.reference(PROMPTS[1:2], bad_words_ids=ids, **settings)
    got = generator(built, settings={**settings, "bad_words": [word]})(PROMPTS[1:2])
    assert [[r["generated_text"]] for r in got] == expected
    assert word not in got[0]["generated_text"].split()
    xglm = build("xglm", root)
    reference = xglm.tokenizer(["world"], add_special_tokens=False).input_ids
    assert bad_words_ids(ours(xglm).tokenizer, ["world"]) == reference


def test_mvp_task_templates(root: Path) -> None:
    assert mvp_prompt("summarize", "A long text.") == "Summarize: A long text."
    assert mvp_prompt("summarization", "x") == "Summarize: x"
    assert mvp_prompt("data-to-text", "Iron Man | creator | Stan Lee") == (
        "Describe the following data: Iron Man | creator | Stan Lee"
    )
    assert mvp_prompt("qa", None, {"question": "Who?", "context": "Ann did."}) == (
        "Answer the following question: Who? [X_SEP] Ann did."
    )
    assert mvp_prompt("qa", "Who?") == "Answer the following question: Who?"
    assert mvp_prompt("question-generation", "Ann did it.", {"answer": "Ann"}) == (
        "Generate the question based on the answer: Ann [X_SEP] Ann did it."
    )
    assert mvp_prompt("story", "A dog") == "Given the story title: A dog"
    assert mvp_prompt("open-dialog", None, {"dialog": ["Hi!", "Hello."], "knowledge": "k"}) == (
        "Given the dialog: k [X_SEP] Hi! [SEP] Hello."
    )
    assert mvp_prompt("task-dialog", "System response [X_SEP] Hi") == (
        "Given the task dialog: System response [X_SEP] Hi"
    )
    with pytest.raises(MissingField):
        mvp_prompt("qa", None, {})
    with pytest.raises(GenerateOptionError, match="unknown MVP task"):
        mvp_prompt("translate", "x")
    built = build("mvp", root)
    settings = {"max_new_tokens": 5, "do_sample": False, "num_beams": 2}
    expected = built.reference(["Summarize: " + PROMPTS[2]], **settings)
    got = generator(built, settings=settings, task="summarize")([PROMPTS[2]])
    assert [[r["generated_text"]] for r in got] == expected
    with pytest.raises(UnsupportedModel, match="MVP"):
        generator(build("xglm", root), task="summarize")


def test_prophetnet_separator_shows_as_a_newline(root: Path) -> None:
    assert show_separators("one . [X_SEP] two .") == "one .\ntwo ."
    assert show_separators("[X_SEP] a [X_SEP]") == "\na\n"
    built = build("prophetnet", root)
    x_sep = built.tokenizer.convert_tokens_to_ids("[X_SEP]")
    settings = {"max_new_tokens": 5, "do_sample": False, "num_beams": 1, "forced_bos_token_id": x_sep}
    expected = built.reference(PROMPTS[:1], **settings)[0][0]
    assert expected.startswith("[X_SEP] ")
    got = generator(built, settings=settings)(PROMPTS[:1])[0]["generated_text"]
    assert got == show_separators(expected) and got.startswith("\n")


def test_xlm_lang_sets_language_embeddings(root: Path) -> None:
    built = build("xlm", root)
    settings = {"max_new_tokens": 6, "do_sample": False, "num_beams": 1}
    gen = generator(built, settings=settings, lang="fr", return_full_text=False)
    prompt = gen.prepare("Le chat est")
    got = gen.run([prompt])[0]["generated_text"]
    built.oracle.config.lang_id = LANGS["fr"]
    try:
        out = built.oracle.generate(torch.tensor([prompt.input_ids]), **settings)
    finally:
        built.oracle.config.lang_id = 0
    text = built.tokenizer.decode(out[0], skip_special_tokens=True)
    assert got == text[len(built.tokenizer.decode(prompt.input_ids, skip_special_tokens=True)):]
    assert got != generator(built, settings=settings, return_full_text=False)(["Le chat est"])[0]["generated_text"]
    with pytest.raises(UnsupportedModel, match="XLM"):
        generator(build("xglm", root), lang="fr")


def test_long_prompts_are_truncated_to_fit(root: Path) -> None:
    built = native_build("xglm", root)
    gen = generator(built, settings={"max_new_tokens": 4}, max_input_length=6)
    prompt = gen.prepare(PROMPTS[2])
    whole = ours(built).tokenizer.encode(PROMPTS[2])
    assert prompt.truncated and len(prompt) == 6
    assert prompt.input_ids[0] == whole[0] and prompt.input_ids[1:] == whole[-5:]  # `</s>` start, then the end
    assert not gen.prepare("Hi").truncated
    mvp = generator(native_build("mvp", root), settings={"max_new_tokens": 4}, max_input_length=6)
    item = mvp.prepare(PROMPTS[2])
    assert item.truncated and item.input_ids[:5] == ours(native_build("mvp", root)).tokenizer.encode(PROMPTS[2])[:5]
    # a decoder-only model with learned positions keeps room for the new tokens
    xlm = generator(native_build("xlm", root), settings={"max_new_tokens": 100})
    assert xlm.limit == 128 - 100
    with pytest.raises(GenerateOptionError, match="positions"):
        generator(native_build("xlm", root), settings={"max_new_tokens": 200})


def test_streamed_text_never_takes_back_what_it_showed(root: Path) -> None:
    """Cleaning tokenization spaces up changes the end of the text as tokens come ("isn '" then
    "isn't"): what is streamed must stay a prefix of the final text."""
    from xcli_models.generation import TextStream

    built = native_build("prophetnet-causal", root)
    gen = generator(built, settings={"max_new_tokens": 4})
    prompt = gen.prepare("well")
    tok = ours(built).tokenizer
    new_ids = tok.encode("it isn't so, is it? yes .", add_special_tokens=False)
    final = gen.new_text(prompt, new_ids)
    assert "isn't" in final and "so," in final and final.endswith("yes.")
    pieces: list[str] = []
    stream = TextStream(lambda ids: gen.settled_text(prompt, ids), lambda row, piece: pieces.append(piece))
    for token in new_ids:
        stream(torch.tensor([token]))
        assert final.startswith("".join(pieces))
    stream.end()
    assert final.startswith("".join(pieces)) and len("".join(pieces)) > len(final) // 2
