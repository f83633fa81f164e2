"""Question answering (xcli_models.tasks.qa) against the oracle.

Span heads are compared with the oracle's question-answering pipeline on tiny random
checkpoints and the real tokenizers (MVP vocab.json + merges.txt, XLNet spiece.model with its
published tokenizer.json, XLM en-fr vocab + codes): same answers, same character offsets,
scores within 1e-4, with long contexts cut into windows and with impossible answers.

Where the oracle pipeline is wrong (see the qa module docstring), the comparison corrects the
oracle, not us: for XLNet (context first) its p_mask is rebuilt to keep only context tokens and
CLS, and for XLNet and XLM its null score and zeroed position are moved from position 0 to the
CLS token (``cls_fixed``); for XLM the inclusive ``end`` and the duplicate spans of overlapping
windows are adjusted (``xlm_expected``).

Beam-search heads have no oracle pipeline: they are checked against a brute-force decode of the
oracle model's own start, end and answerability layers, window by window.

Those comparisons skip without the reference. What is xcli's own (batching, question length, word
alignment, refusals, bfloat16 spans) runs on checkpoints xcli wrote (``native_checkpoints``).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from conftest import shared_path
from compare import REASON, transformers
from task_fixtures import assert_same_answers, close, native, oracle_answers, qa_checkpoint, xquad_records
from xcli_models.tasks import common
from xcli_models.tasks.qa import QAError, QAOptions, QuestionAnswerer, spaced_script



def hfqa() -> Any:
    """The oracle's question-answering pipeline module (skips without it)."""
    return pytest.importorskip("transformers.pipelines.question_answering", reason=REASON)

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4
#: option sets: defaults, top-k, long contexts in windows, impossible answers, no word alignment
OPTIONS = {
    "default": {},
    "top3": {"top_k": 3},
    "windows": {"max_seq_len": 64, "doc_stride": 16, "top_k": 4},
    "impossible": {"handle_impossible": True, "top_k": 5, "max_seq_len": 48, "doc_stride": 20},
    "tokens": {"align_to_words": False, "top_k": 3, "max_seq_len": 80, "max_answer_len": 5},
}
#: (seed, option set): every set on the first model, the window sets on the second (odd head count)
CASES = [(0, name) for name in OPTIONS] + [(1, "windows"), (1, "impossible")]


# ------------------------------------------------------------------------ data
def tokenizer_dir(family: str):
    if family == "mvp":
        root = shared_path("tokenizers", "roberta_bart_mvp")
        return transformers.MvpTokenizerFast(vocab_file=str(root / "vocab.json"), merges_file=str(root / "merges.txt"))
    if family == "xlnet":  # the published fast tokenizer (tokenizer.json), as users have it
        shared_path("tokenizers", "xlnet", "tokenizer.json")
        return transformers.XLNetTokenizerFast.from_pretrained(str(shared_path("tokenizers", "xlnet")))
    root = shared_path("tokenizers", "xlm", "enfr")
    return transformers.XLMTokenizer(
        vocab_file=str(root / "xlm-mlm-enfr-1024.vocab.json"), merges_file=str(root / "codes_enfr")
    )


def oracle_model(family: str, head: str, vocab: int, seed: int) -> Any:
    """A tiny random oracle model; seed 1 has odd head counts and one more layer."""
    torch.manual_seed(seed)
    heads, dim, layers = (4, 32, 2) if seed == 0 else (3, 30, 3)
    if family == "mvp":
        config = transformers.MvpConfig(
            vocab_size=vocab, d_model=dim, encoder_layers=layers, decoder_layers=layers,
            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=48, decoder_ffn_dim=48,
            max_position_embeddings=512, init_std=0.3,
        )
        return transformers.MvpForQuestionAnswering(config).eval()
    if family == "xlnet":
        config = transformers.XLNetConfig(
            vocab_size=vocab, d_model=dim, n_layer=layers, n_head=heads, d_inner=48, initializer_range=0.3,
            start_n_top=4, end_n_top=3,
        )
        beam = head == "beam"
        return (transformers.XLNetForQuestionAnswering if beam else transformers.XLNetForQuestionAnsweringSimple)(
            config
        ).eval()
    config = transformers.XLMConfig(
        vocab_size=vocab, emb_dim=dim, n_layers=layers, n_heads=heads, init_std=0.3, embed_init_std=0.3,
        start_n_top=4, end_n_top=3,
    )
    klass = transformers.XLMForQuestionAnswering if head == "beam" else transformers.XLMForQuestionAnsweringSimple
    return klass(config).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(family, head, seed) -> (oracle model, oracle tokenizer, our TaskModel), built once."""
    cache: dict[tuple[str, str, int], Any] = {}

    def get(family: str, head: str = "span", seed: int = 0):
        key = (family, head, seed)
        if key not in cache:
            tok = tokenizer_dir(family)
            model = oracle_model(family, head, len(tok), seed)
            path = tmp_path_factory.mktemp(f"{family}-{head}-{seed}")
            model.save_pretrained(path)
            tok.save_pretrained(path)
            cache[key] = (model, tok, common.load(path, device="cpu"))
        return cache[key]

    return get


@pytest.fixture(scope="module")
def native_checkpoints(tmp_path_factory):
    """(family, head) -> our TaskModel of a checkpoint xcli wrote (``task_fixtures.qa_checkpoint``), built once."""
    cache: dict[tuple[str, str], Any] = {}

    def get(family: str, head: str = "span"):
        if (family, head) not in cache:
            path = qa_checkpoint(tmp_path_factory.mktemp(f"native-{family}-{head}"), family, head)
            cache[family, head] = common.load(path, device="cpu")
        return cache[family, head]

    return get


# -------------------------------------------------------------- oracle helpers
def ContextFirstFixed(**kwargs: Any) -> Any:  # noqa: N802 - a class, made on first use
    """The oracle pipeline with its context-first p_mask defect fixed: only context tokens and CLS
    may be answers (the oracle gives XLNet an all-zero p_mask)."""

    class Fixed(hfqa().QuestionAnsweringPipeline):
        def preprocess(self, example, **kwargs):
            for item in super().preprocess(example, **kwargs):
                ids = item["input_ids"][0].tolist()
                cls = self.tokenizer.cls_token_id
                sequence_ids = item["encoding"].sequence_ids
                mask = [0 if seq == 0 or t == cls else 1 for seq, t in zip(sequence_ids, ids, strict=True)]
                item["p_mask"] = torch.tensor([mask])
                yield item

    return Fixed(**kwargs)


@contextlib.contextmanager
def cls_fixed(last: bool) -> Iterator[None]:
    """Make the oracle read the null score at, and zero, the CLS token instead of position 0.

    CLS is the first position the p_mask allows (question first: XLM) or the last one (context
    first: XLNet). The arrays are rotated so that CLS sits at 0, the oracle's own
    ``select_starts_ends`` runs, and the positions are rotated back.
    """
    module = hfqa()
    original = module.select_starts_ends

    def select(start, end, p_mask, attention_mask, *args):
        allowed = np.nonzero(np.asarray(p_mask)[0] == 0)[0]
        cls = int(allowed[-1] if last else allowed[0])
        length = np.asarray(p_mask).shape[-1]
        roll = lambda a: None if a is None else np.roll(np.asarray(a), -cls, axis=-1)  # noqa: E731
        starts, ends, scores, null = original(roll(start), roll(end), roll(p_mask), roll(attention_mask), *args)
        return (starts + cls) % length, (ends + cls) % length, scores, null

    module.select_starts_ends = select
    try:
        yield
    finally:
        module.select_starts_ends = original


def ours_list(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result.get("answers", [{k: result[k] for k in ("answer", "score", "start", "end")}])


def xlm_expected(theirs: list[dict[str, Any]], top_k: int) -> list[dict[str, Any]]:
    """The oracle's XLM (slow tokenizer) answers as we give them: ``end`` exclusive (the oracle
    gives the index of the last character of the final word), each span once."""
    out, seen = [], set()
    for a in theirs:
        end = a["start"] + len(a["answer"])  # contexts are single-spaced: the answer is the context's text
        if (a["start"], end) not in seen:
            seen.add((a["start"], end))
            out.append({**a, "end": end})
    return out[:top_k]


# ---------------------------------------------------------------- span heads
@pytest.mark.parametrize("seed,name", CASES)
def test_mvp_span_head_matches_the_oracle_pipeline(checkpoints, name: str, seed: int) -> None:
    model, tok, ours = checkpoints("mvp", seed=seed)
    options = OPTIONS[name]
    pipe = transformers.pipeline("question-answering", model=model, tokenizer=tok)
    records = xquad_records()
    answerer = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(**options))
    results = answerer(records, batch_size=4)
    for (question, context), result in zip(records, results, strict=True):
        assert_same_answers(ours_list(result), oracle_answers(pipe, question, context, options), f"{name}: {question}")
        assert result["answer"] == context[result["start"] : result["end"]]


@pytest.mark.parametrize("seed,name", CASES)
def test_xlnet_span_head_matches_the_oracle_pipeline(checkpoints, name: str, seed: int) -> None:
    model, tok, ours = checkpoints("xlnet", seed=seed)
    options = OPTIONS[name]
    pipe = ContextFirstFixed(model=model, tokenizer=tok)
    records = xquad_records()
    # batches of 4 windows: left padding inside each batch
    results = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(**options))(records, batch_size=4)
    with cls_fixed(last=True):
        for (question, context), result in zip(records, results, strict=True):
            expected = oracle_answers(pipe, question, context, options)
            assert_same_answers(ours_list(result), expected, f"{name}: {question}")


@pytest.mark.parametrize("name", ["default", "windows", "impossible"])
def test_xlm_span_head_matches_the_oracle_slow_pipeline(checkpoints, name: str) -> None:
    model, tok, ours = checkpoints("xlm")
    options = OPTIONS[name]
    pipe = transformers.pipeline("question-answering", model=model, tokenizer=tok)
    records = xquad_records(n_articles=2, single_spaced=True)[:5]
    results = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(**options))(records, batch_size=3)
    top_k = options.get("top_k", 1)
    with cls_fixed(last=False):
        for (question, context), result in zip(records, results, strict=True):
            theirs = oracle_answers(pipe, question, context, {**options, "top_k": top_k + 20})
            assert_same_answers(ours_list(result), xlm_expected(theirs, top_k), f"{name}: {question}")


def oracle_null_score(pipe, question: str, context: str, max_seq_len: int, doc_stride: int) -> float:
    """The oracle pipeline's null score: its own preprocess, forward and span selection, window by window."""
    null = 1e6
    example = {"question": question, "context": context}
    with torch.no_grad():
        for item in pipe.preprocess(example, max_seq_len=max_seq_len, doc_stride=doc_stride):
            out = pipe._forward(item)
            mask = out["attention_mask"].numpy()
            _, _, _, null = hfqa().select_starts_ends(out["start"], out["end"], out["p_mask"], mask, null, 1, True, 15)
    return null


@pytest.mark.parametrize("family", ["mvp", "xlnet"])
def test_null_scores_match_the_oracle(checkpoints, family: str) -> None:
    model, tok, ours = checkpoints(family)
    pipe = (transformers.pipeline("question-answering", model=model, tokenizer=tok) if family == "mvp"
            else ContextFirstFixed(model=model, tokenizer=tok))
    options = QAOptions(handle_impossible=True, top_k=10**5, max_seq_len=48, doc_stride=20)  # every answer listed
    records = xquad_records(n_articles=2)
    results = QuestionAnswerer(ours.model, ours.tokenizer, options)(records, batch_size=8)
    with cls_fixed(last=family == "xlnet"):
        for (question, context), result in zip(records, results, strict=True):
            [mine] = [a for a in result["answers"] if a["answer"] == ""]
            theirs = oracle_null_score(pipe, question, context, 48, 20)
            assert (mine["start"], mine["end"]) == (0, 0) and close(mine["score"], theirs)


class MvpForQuestionAnswering(torch.nn.Module):
    """Stands in for the real class (its name picks the span decoder): logits favour position 0, MVP's CLS."""

    device = torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, use_cache=None, return_dict=True):
        logits = torch.zeros(input_ids.shape)
        logits[:, 0] = 8.0
        logits[:, 3] = 4.0
        return SimpleNamespace(start_logits=logits, end_logits=logits)


def test_an_impossible_answer_wins_when_cls_is_likeliest() -> None:
    from xcli_models.tokenization.byte_bpe import MvpTokenizer

    root = shared_path("tokenizers", "roberta_bart_mvp")
    ours = MvpTokenizer(vocab_file=str(root / "vocab.json"), merges_file=str(root / "merges.txt"))
    model = MvpForQuestionAnswering()
    record = [("Who?", "Nobody knows who did it.")]  # <s> Who ? </s></s> Nobody ...: position 3 is "</s>"
    best = QuestionAnswerer(model, ours, QAOptions(handle_impossible=True, top_k=2))(record)[0]
    assert (best["answer"], best["start"], best["end"]) == ("", 0, 0)
    assert best["answers"][1]["score"] < best["score"]
    assert QuestionAnswerer(model, ours, QAOptions())(record)[0]["answer"] != ""


def test_results_do_not_depend_on_batching(native_checkpoints) -> None:
    for family in ("xlnet", "mvp", "xlm"):
        ours = native_checkpoints(family)
        records = xquad_records(n_articles=2, single_spaced=True)
        answerer = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(top_k=3, max_seq_len=72, doc_stride=24))
        one = answerer(records, batch_size=1)
        many = answerer(records, batch_size=16)
        for a, b in zip(one, many, strict=True):
            assert_same_answers(a["answers"], b["answers"], family)


def test_windows_cover_the_context_with_the_stride(checkpoints) -> None:
    _, oracle_tok, ours = checkpoints("mvp")
    question, context = xquad_records()[0]
    answerer = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(max_seq_len=64, doc_stride=16))
    prepared = answerer.prepare(question, context)
    encoded = oracle_tok(
        question, context, truncation="only_second", max_length=64, stride=16, return_overflowing_tokens=True
    )
    assert [w.input_ids for w in prepared.windows] == encoded["input_ids"]
    firsts = [w.first for w in prepared.windows]
    assert firsts[0] == 0 and all(b - a == prepared.windows[0].length - 16 for a, b in zip(firsts, firsts[1:]))
    last = prepared.windows[-1]
    assert last.first + last.length == len(prepared.spans)


def test_question_is_cut_to_max_question_len(native_checkpoints) -> None:
    ours = native_checkpoints("xlnet")
    answerer = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(max_question_len=3))
    window = answerer.prepare("one two three four five six seven", "A short context here.").windows[0]
    types = window.token_type_ids
    assert types.count(1) == 3 + 1  # three question tokens and their <sep>


def test_no_spaces_turns_word_alignment_off_by_default(native_checkpoints) -> None:
    ours = native_checkpoints("mvp")
    zh = "北京是中华人民共和国的首都，位于华北平原。"
    assert not spaced_script(zh) and spaced_script("Paris is the capital of France.")
    answerer = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(align_to_words=None, top_k=3))
    assert answerer.prepare("首都在哪里？", zh).align is False
    assert answerer.prepare("Where?", "Paris is the capital.").align is True
    for a in answerer([("首都在哪里？", zh)])[0]["answers"]:
        assert a["answer"] == zh[a["start"] : a["end"]]


# ------------------------------------------------------------------ bad input
def test_bad_records_and_options_are_refused(native_checkpoints) -> None:
    ours = native_checkpoints("mvp")
    answerer = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(max_seq_len=16, max_question_len=64))
    for question, context, kind in [
        ("", "ctx", "empty_question"),
        ("Why?", "   ", "empty_context"),
        ("a " * 40, "ctx", "question_too_long"),
    ]:
        with pytest.raises(QAError) as info:
            answerer.prepare(question, context)
        assert info.value.kind == kind
    tight = QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(max_seq_len=12, doc_stride=6))
    with pytest.raises(QAError, match="doc_stride") as info:
        tight.prepare("Who are you?", "word " * 40)
    assert info.value.kind == "window_too_small"
    with pytest.raises(ValueError, match="doc_stride"):
        QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(max_seq_len=16, doc_stride=17))
    with pytest.raises(ValueError, match="top_k"):
        QuestionAnswerer(ours.model, ours.tokenizer, QAOptions(top_k=0))
    with pytest.raises(ValueError, match="XLM"):
        QuestionAnswerer(ours.model, ours.tokenizer, lang="en")


def test_a_model_without_a_qa_head_is_refused(tmp_path) -> None:
    native(tmp_path, "MvpForSequenceClassification")
    ours = common.load(tmp_path, device="cpu")
    with pytest.raises(common.UnsupportedModel, match="MvpForSequenceClassification"):
        QuestionAnswerer(ours.model, ours.tokenizer)


# ------------------------------------------------------------- beam-search heads
def _brute_force(
    hidden: torch.Tensor, head: Any, p_mask: torch.Tensor, cls: int, n_start: int, n_end: int
) -> tuple[list[tuple[float, int, int]], float]:
    """Every (start, end) pair the oracle head's own layers rank in its top starts x top ends,
    and P(no answer). Shape: hidden (1, T, D); p_mask (1, T)."""
    start_logits, end_layer, answer_layer = head
    start_probs = torch.softmax(start_logits(hidden, p_mask=p_mask), dim=-1)[0]
    t = hidden.shape[1]
    pairs = []
    for s in torch.topk(start_probs, n_start).indices.tolist():
        states = hidden[:, s : s + 1].expand(-1, t, -1)
        end_probs = torch.softmax(end_layer(hidden, start_states=states, p_mask=p_mask), dim=-1)[0]
        for e in torch.topk(end_probs, n_end).indices.tolist():
            pairs.append((float(start_probs[s] * end_probs[e]), s, e))
    expected = torch.einsum("t,btd->bd", start_probs, hidden)
    null = torch.sigmoid(answer_layer(hidden, start_states=expected, cls_index=torch.tensor([cls])))
    return pairs, float(null)


def _rank(found: dict[tuple[int, int], float], null: float | None, context: str, top_k: int) -> list[dict]:
    answers = [{"answer": context[s:e], "score": v, "start": s, "end": e} for (s, e), v in found.items()]
    if null is not None:
        answers.append({"answer": "", "score": null, "start": 0, "end": 0})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def xlnet_beam_brute_force(model, tok, question, context, opts: QAOptions) -> list[dict]:
    enc = tok(
        context, question, truncation="only_first", max_length=opts.max_seq_len, stride=opts.doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True,
    )
    head = (model.start_logits, model.end_logits, model.answer_class)
    found: dict[tuple[int, int], float] = {}
    nulls = []
    for i, window in enumerate(enc.encodings):
        ids, seq = window.ids, window.sequence_ids
        cls = ids.index(tok.cls_token_id)
        p_mask = torch.tensor([[0.0 if s == 0 or k == cls else 1.0 for k, s in enumerate(seq)]])
        with torch.no_grad():
            hidden = model.transformer(
                torch.tensor([ids]), token_type_ids=torch.tensor([window.type_ids]), use_mems=False
            ).last_hidden_state
            pairs, null = _brute_force(hidden, head, p_mask, cls, model.start_n_top, model.end_n_top)
        nulls.append(null)
        for score, s, e in sorted(pairs, key=lambda p: -p[0]):
            if seq[s] == 0 and seq[e] == 0 and s <= e < s + opts.max_answer_len:
                if opts.align_to_words:
                    start = window.word_to_chars(window.token_to_word(s), sequence_index=0)[0]
                    end = window.word_to_chars(window.token_to_word(e), sequence_index=0)[1]
                else:
                    start, end = window.offsets[s][0], window.offsets[e][1]
                found[(start, end)] = max(found.get((start, end), 0.0), score)
    return _rank(found, min(nulls) if opts.handle_impossible else None, context, opts.top_k)


def xlm_beam_brute_force(model, tok, question, context, opts: QAOptions) -> list[dict]:
    from transformers.data.processors.squad import SquadExample, squad_convert_examples_to_features

    example = SquadExample(None, question, context, None, None, None)
    features = squad_convert_examples_to_features(
        [example], tok, max_seq_length=opts.max_seq_len, doc_stride=opts.doc_stride,
        max_query_length=opts.max_question_len, is_training=False, tqdm_enabled=False, threads=1,
    )
    word_start = {}
    for position, word in enumerate(example.char_to_word_offset):
        word_start.setdefault(word, position)
    head = (model.qa_outputs.start_logits, model.qa_outputs.end_logits, model.qa_outputs.answer_class)
    found: dict[tuple[int, int], float] = {}
    nulls = []
    for feature in features:
        with torch.no_grad():
            hidden = model.transformer(
                torch.tensor([feature.input_ids]), attention_mask=torch.tensor([feature.attention_mask]),
                token_type_ids=torch.tensor([feature.token_type_ids]),
            ).last_hidden_state
            p_mask = torch.tensor([feature.p_mask], dtype=torch.float)
            pairs, null = _brute_force(hidden, head, p_mask, feature.cls_index, model.config.start_n_top,
                                       model.config.end_n_top)
        nulls.append(null)
        words = feature.token_to_orig_map  # context token position -> word
        for score, s, e in pairs:
            if s in words and e in words and s <= e < s + opts.max_answer_len:
                first, last = words[s], words[e]
                start, end = word_start[first], word_start[last] + len(example.doc_tokens[last])
                found[(start, end)] = max(found.get((start, end), 0.0), score)
    return _rank(found, min(nulls) if opts.handle_impossible else None, context, opts.top_k)


BEAM_OPTIONS = [
    QAOptions(top_k=5, max_seq_len=384, doc_stride=128),
    QAOptions(top_k=6, max_seq_len=60, doc_stride=20, handle_impossible=True, max_answer_len=8),
]


@pytest.mark.parametrize("opts", BEAM_OPTIONS, ids=["default", "windows-impossible"])
@pytest.mark.parametrize("seed", [0, 1])
def test_xlnet_beam_head_matches_a_brute_force_decode(checkpoints, opts: QAOptions, seed: int) -> None:
    model, tok, ours = checkpoints("xlnet", "beam", seed)
    records = xquad_records(n_articles=2)
    results = QuestionAnswerer(ours.model, ours.tokenizer, opts)(records, batch_size=3)
    for (question, context), result in zip(records, results, strict=True):
        expected = xlnet_beam_brute_force(model, tok, question, context, opts)
        assert_same_answers(result["answers"], expected, question)


@pytest.mark.parametrize("opts", BEAM_OPTIONS, ids=["default", "windows-impossible"])
def test_xlm_beam_head_matches_a_brute_force_decode(checkpoints, opts: QAOptions) -> None:
    model, tok, ours = checkpoints("xlm", "beam")
    records = xquad_records(n_articles=2, single_spaced=True)[:4]
    results = QuestionAnswerer(ours.model, ours.tokenizer, opts)(records, batch_size=3)
    for (question, context), result in zip(records, results, strict=True):
        expected = xlm_beam_brute_force(model, tok, question, context, opts)
        assert_same_answers(result["answers"], expected, question)


def test_bfloat16_answers_are_spans_of_the_context_through_onednn(tmp_path, monkeypatch) -> None:
    """The README's --dtype bfloat16 path: the model in bfloat16, its products through oneDNN,
    every answer a real span of its context (the spans themselves may move: not float32)."""
    from xcli_models import kernels

    if not kernels.onednn_available():
        pytest.skip("this torch has no oneDNN matmul")
    qa_checkpoint(tmp_path, "mvp")
    half = common.load(tmp_path, device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    dtypes: list[torch.dtype] = []
    real = kernels._linear
    monkeypatch.setattr(kernels, "_linear", lambda x, w, b: (dtypes.append(w.dtype), real(x, w, b))[1])
    records = xquad_records(n_articles=1)[:6]
    results = QuestionAnswerer(half.model, half.tokenizer, QAOptions(top_k=2))(records)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    for (_, context), result in zip(records, results, strict=True):
        for answer in result["answers"]:
            assert answer["answer"] == context[answer["start"]:answer["end"]] != ""
            assert 0.0 <= answer["score"] <= 1.0
