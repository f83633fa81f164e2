"""Extractive question answering: a span of the context for each question.

A record is a ``question`` and a ``context``; the answer is
``{"answer", "score", "start", "end"}`` with ``start``/``end`` character offsets into the
context (``context[start:end] == answer``), plus the ``top_k`` best as ``"answers"``.

**Span heads** (``XLMForQuestionAnsweringSimple``, ``XLNetForQuestionAnsweringSimple``,
``MvpForQuestionAnswering``) are decoded as the reference question-answering pipeline does:

1. *Windows.* The question (cut to ``max_question_len`` tokens) and the context are laid out
   as the tokenizer lays out a pair: question first where the tokenizer pads on the right
   (``<s> Q </s></s> C </s>`` for MVP), context first where it pads on the left
   (``C <sep> Q <sep> <cls>`` for XLNet). A context longer than ``max_seq_len`` allows is cut
   into windows of as many tokens as fit, consecutive windows sharing ``doc_stride`` tokens.
   ``max_seq_len`` is at most what the model's positions take (``common.input_limit``; by
   default the smaller of that and 384), so a context of any length is answered.
2. *Scores.* In each window the start and end logits of every token that is neither a
   context token nor the CLS token are set to -10000, each is turned into probabilities by
   a softmax, and the CLS token's ``p_start * p_end`` is the window's *null score*; then the
   CLS token's probabilities are set to 0. A span ``(s, e)`` of context tokens with
   ``s <= e < s + max_answer_len`` scores ``p_start[s] * p_end[e]``; each window gives its
   ``2 * top_k + 10`` best spans (``top_k`` without ``align_to_words``).
3. *Answers.* A span becomes characters of the context: with ``align_to_words``, from the
   start of the word holding its first token to the end of the word holding its last token
   (words as the reference fast tokenizer cuts them: whitespace-separated for XLNet, the
   GPT-2 pattern for MVP); otherwise from its first token's offset to its last token's.
   Spans with the same text (case-insensitively) merge, their scores summed, the first one's
   offsets kept. With ``handle_impossible``, an empty answer ``{"answer": "", "start": 0,
   "end": 0}`` scored with the smallest null score of the windows competes with them.
   ``align_to_words=None`` decides per record: on, unless most of the context's letters are in a
   script written without spaces (Chinese, Japanese, Thai ...), where words would be whole phrases.

**Where this differs from the reference pipeline**, which gets these wrong:

* The null score and the token whose probabilities are zeroed are the CLS token's (the first
  special token whose id is ``cls_token_id``), not position 0's. For MVP they are the same;
  for XLNet (CLS last) the reference instead zeroes the first context token and reads the
  null score there, and it lets question and separator tokens be answers (its ``p_mask`` is
  all zeros when the context comes first): here only context tokens can be.
* A window gives only real spans (``s <= e``, inside the context, score above zero); the
  reference pads short candidate lists with zero-score entries, even ``s > e`` ones.
* ``max_question_len`` is applied to every tokenizer (the reference ignores it with fast
  tokenizers, and fails on a question that leaves no room for the context).
* XLNet offsets are those of the published ``tokenizer.json`` of xlnet-base-cased (a piece's
  leading blank is not part of it).

**XLM** has no fast tokenizer, so its reference pipeline takes the SQuAD feature builder's
path, and so does this module: the context is split into words at whitespace, each word is
tokenised on its own, the question is cut to ``max_question_len`` tokens, window ``i`` holds
the context tokens from ``i * doc_stride`` on (for XLM, ``doc_stride`` is the step between
windows, as there), and an answer is always whole words (``align_to_words`` has no effect).
Unlike the reference's, ``end`` is exclusive (the reference gives the index of the last
character, or of the last blank after it) and the answer is the context's own text rather
than its words joined by single spaces; the same span found twice (overlapping windows, two
tokens of one word) counts once, with its better score; and the CLS token (the first
``</s>``, the one the reference keeps unmasked) gives the null score and cannot start or end
an answer (the reference reads position 0, and fails with a KeyError when it picks that
``</s>``).

**Beam-search heads** (``XLMForQuestionAnswering``, ``XLNetForQuestionAnswering``) have no
reference pipeline. Windows are built as above; the model gets ``p_mask`` (1 for every token
but the context tokens and the CLS token) and ``cls_index``, and returns its
``start_n_top`` best starts, for each the ``end_n_top`` best ends, and an answerability logit.
Each pair ``(start i, end j)`` inside the context with ``s <= e < s + max_answer_len``
is a candidate scored ``start_prob * end_prob``; candidates become character spans as for
span heads, the same span counts once (its best score), and with ``handle_impossible`` the
empty answer is scored ``sigmoid(cls_logits)`` (the probability that the question has no
answer), the smallest over the windows.

Nothing here prints; the CLI (``xcli qa``) maps options and records onto :class:`QuestionAnswerer`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

from ..registry import capabilities
from . import common

__all__ = [
    "Prepared", "QAError", "QAOptionError", "QAOptions", "QuestionAnswerer", "Window",
    "spaced_script", "supports",
]

#: the logit given to tokens that cannot be part of an answer (the reference's value)
_MASKED = -10000.0
#: SQuAD's whitespace: where the XLM path splits a context into words
_SQUAD_WHITESPACE = re.compile("[^ \t\r\n\u202f]+")


def supports(class_name: str) -> bool:
    """Whether a model class can answer questions (a span or a beam-search head)."""
    return capabilities(class_name).qa is not None


class QAError(ValueError):
    """A record cannot be answered: empty question or context, or a question too long for a window.

    ``kind`` names the problem (``empty_question``, ``empty_context``, ``question_too_long``,
    ``window_too_small``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class QAOptionError(ValueError):
    """Options that cannot work together, or a language the model does not have."""


@dataclass(frozen=True)
class QAOptions:
    """How questions are cut into windows and answers chosen (see the module docstring)."""

    top_k: int = 1
    #: tokens shared by consecutive windows (XLM: the step between windows); None: min(max_seq_len // 2, 128)
    doc_stride: int | None = None
    max_answer_len: int = 15
    #: tokens per window, special tokens included (at most the model's limit, ``common.input_limit``);
    #: None: min(that limit, 384)
    max_seq_len: int | None = None
    max_question_len: int = 64
    handle_impossible: bool = False
    #: None: per record, on unless the context is mostly in a script written without spaces (CJK, Thai ...)
    align_to_words: bool | None = True

    def check(self) -> None:
        for name in ("top_k", "max_answer_len", "max_question_len"):
            if getattr(self, name) < 1:
                raise QAOptionError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.max_seq_len is not None and self.max_seq_len < 1:
            raise QAOptionError(f"max_seq_len must be at least 1 (got {self.max_seq_len})")
        if self.doc_stride is not None and self.doc_stride < 0:
            raise QAOptionError(f"doc_stride must not be negative (got {self.doc_stride})")


@dataclass
class Window:
    """One model input: a stretch of the context with the question.

    ``context_start`` is the position of the stretch's first token in ``input_ids``,
    ``first`` that token's index among all the context's tokens, ``length`` the stretch's
    length, ``cls`` the position of the CLS token.
    """

    input_ids: list[int]
    token_type_ids: list[int] | None
    context_start: int
    first: int
    length: int
    cls: int


@dataclass
class Prepared:
    """A question ready for the model: its windows and how context tokens map to characters.

    ``spans[t]`` is the character span of context token ``t`` (for XLM: of its word), and
    ``words[t]`` the index of the word it belongs to.
    """

    context: str
    spans: list[tuple[int, int]]
    words: list[int]
    align: bool = True
    windows: list[Window] = field(default_factory=list)


class QuestionAnswerer:
    """Answers questions with a QA model and its tokenizer (see the module docstring).

    ``prepare(question, context)`` tokenises one record (no torch; raises :class:`QAError`
    for a record that cannot be answered); ``answer(prepared, batch_size)`` runs the model on
    their windows, longest first, ``batch_size`` windows per call, and returns one result per
    record in order; ``__call__`` does both.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        options: QAOptions | None = None,
        *,
        lang: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options = options or QAOptions()
        options.check()
        class_name = type(model).__name__
        common.require_head(class_name, supports, "question answering")
        self.beam = capabilities(class_name).qa == "beam"
        if options.max_seq_len is not None:
            self.max_seq_len = common.input_limit(model, tokenizer, options.max_seq_len, option="max_seq_len")
        else:
            self.max_seq_len = min(common.input_limit(model, tokenizer), 384)
        self.doc_stride = options.doc_stride if options.doc_stride is not None else min(self.max_seq_len // 2, 128)
        if self.doc_stride > self.max_seq_len:
            raise QAOptionError(f"doc_stride ({self.doc_stride}) is larger than max_seq_len ({self.max_seq_len})")
        self.question_first = getattr(tokenizer, "padding_side", "right") == "right"
        self.by_words = not _has_offsets(tokenizer)
        if self.by_words and self.doc_stride < 1:
            raise QAOptionError("doc_stride must be at least 1 for this tokenizer (it is the step between windows)")
        self.token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.lang_id = common.language(model, tokenizer, lang)
        self._word_splitter = _word_splitter(tokenizer, self.by_words)

    # ------------------------------------------------------------------ preparation
    def prepare(self, question: str, context: str) -> Prepared:
        """Tokenise a record and cut it into windows."""
        if not isinstance(question, str) or not question.strip():
            raise QAError("empty_question", "the question is empty")
        if not isinstance(context, str) or not context.strip():
            raise QAError("empty_context", "the context is empty")
        tok = self.tokenizer
        question_ids = tok.encode(question, add_special_tokens=False)[: self.options.max_question_len]
        if self.by_words:
            ids, spans, words = self._tokenize_by_words(context)
        else:
            encoding = tok.encode_plus(context, add_special_tokens=False, return_offsets=True)
            ids = list(encoding.input_ids)
            spans = _reference_offsets(tok, context, encoding.offsets)
            words = _word_ids(spans, self._word_splitter(context))
        if not ids:
            raise QAError("empty_context", "the context has no tokens")
        budget = self.max_seq_len - tok.num_special_tokens_to_add(pair=True) - len(question_ids)
        if budget <= 0:
            raise QAError(
                "question_too_long",
                f"the question takes {len(question_ids)} tokens and leaves no room for the context in "
                f"{self.max_seq_len} (raise max_seq_len or lower max_question_len)"
            )
        align = self.options.align_to_words
        prepared = Prepared(context, spans, words, align=spaced_script(context) if align is None else align)
        for first, length in self._stretches(len(ids), budget):
            prepared.windows.append(self._window(question_ids, ids, first, length))
        return prepared

    def _tokenize_by_words(self, context: str) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        """XLM: each whitespace-separated word tokenised on its own; every token spans its word."""
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        words: list[int] = []
        for number, match in enumerate(_SQUAD_WHITESPACE.finditer(context)):
            pieces = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(match.group()))
            ids.extend(pieces)
            spans.extend([match.span()] * len(pieces))
            words.extend([number] * len(pieces))
        return ids, spans, words

    def _stretches(self, n: int, budget: int) -> list[tuple[int, int]]:
        """``(first, length)`` of each window's stretch of the ``n`` context tokens."""
        if self.by_words:  # SQuAD features: window i starts at i * doc_stride
            out = []
            start = 0
            while start < n:
                out.append((start, min(n - start, budget)))
                if n - start <= budget:
                    break
                start += self.doc_stride
            return out
        if n <= budget:
            return [(0, n)]
        if self.doc_stride >= budget:
            raise QAError(
                "window_too_small",
                f"the context windows hold {budget} tokens beside this question, not more than doc_stride "
                f"({self.doc_stride}): raise max_seq_len or lower doc_stride"
            )
        out = []
        for start in range(0, n, budget - self.doc_stride):
            out.append((start, min(budget, n - start)))
            if start + budget >= n:
                break
        return out

    def _window(self, question_ids: list[int], ids: list[int], first: int, length: int) -> Window:
        tok = self.tokenizer
        stretch = ids[first : first + length]
        # lay the pair out with markers to find where the question, the context and CLS land
        q_mark, c_mark = [-1] * len(question_ids), [-2] * length
        pair = (q_mark, c_mark) if self.question_first else (c_mark, q_mark)
        layout = tok.build_inputs_with_special_tokens(*pair)
        context_start = layout.index(-2) if length else 0
        cls_id = tok.cls_token_id
        cls = next((i for i, t in enumerate(layout) if t == cls_id), 0)
        source = iter(question_ids), iter(stretch)
        input_ids = [next(source[0]) if t == -1 else next(source[1]) if t == -2 else t for t in layout]
        types = None
        if self.token_types:
            first_seq, second_seq = (question_ids, stretch) if self.question_first else (stretch, question_ids)
            types = tok.create_token_type_ids_from_sequences(first_seq, second_seq)
        return Window(input_ids, types, context_start, first, length, cls)

    # --------------------------------------------------------------------- running
    def __call__(self, records: Iterable[tuple[str, str]], batch_size: int = 32) -> list[dict[str, Any]]:
        """Answer ``(question, context)`` pairs; one result per pair, in order."""
        return self.answer([self.prepare(q, c) for q, c in records], batch_size)

    def answer(self, prepared: Sequence[Prepared], batch_size: int = 32) -> list[dict[str, Any]]:
        """Run the model on the windows of ``prepared`` and decode one result per record."""
        windows = [(i, w) for i, item in enumerate(prepared) for w in item.windows]
        outputs: list[Any] = [None] * len(windows)
        with common.inference():
            lengths = [len(w.input_ids) for _, w in windows]
            # windows of one length per batch: no padding, the same bits in any batch
            for batch in common.length_batches(lengths, batch_size, lengths):
                for index, out in zip(batch, self._forward([windows[i][1] for i in batch])):
                    outputs[index] = out
        per_record: list[list[tuple[Window, Any]]] = [[] for _ in prepared]
        for (i, window), out in zip(windows, outputs):
            per_record[i].append((window, out))
        decode = self._decode_beam if self.beam else self._decode_spans
        return [decode(item, per_record[i]) for i, item in enumerate(prepared)]

    def _forward(self, windows: list[Window]) -> list[Any]:
        """The model's outputs for each window, unpadded, on the CPU."""
        model = self.model
        device = model.device
        batch = common.collate(windows, self.tokenizer, device=device, token_types=self.token_types)
        kwargs: dict[str, Any] = dict(batch)
        if self.lang_id is not None:
            kwargs["langs"] = torch.full_like(batch["input_ids"], self.lang_id)
        width = batch["input_ids"].shape[1]
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        pads = [width - len(w.input_ids) if left else 0 for w in windows]
        kwargs.update(capabilities(type(model).__name__).forward_options)
        if not self.beam:
            out = model(**kwargs, return_dict=True)
            start = out.start_logits.float().cpu()
            end = out.end_logits.float().cpu()
            return [
                (start[row, p : p + len(w.input_ids)], end[row, p : p + len(w.input_ids)])
                for row, (w, p) in enumerate(zip(windows, pads))
            ]
        p_mask = torch.ones(len(windows), width)
        for row, (w, p) in enumerate(zip(windows, pads)):
            p_mask[row, p + w.context_start : p + w.context_start + w.length] = 0.0
            p_mask[row, p + w.cls] = 0.0
        cls_index = torch.tensor([p + w.cls for w, p in zip(windows, pads)])
        p_mask = p_mask.to(device=device, dtype=model.dtype)
        out = model(**kwargs, p_mask=p_mask, cls_index=cls_index.to(device), return_dict=True)
        fields = [
            out.start_top_log_probs.float().cpu(), out.start_top_index.cpu(),
            out.end_top_log_probs.float().cpu(), out.end_top_index.cpu(), out.cls_logits.float().cpu(),
        ]
        return [tuple([*(f[row] for f in fields[:4]), fields[4][row], p]) for row, p in enumerate(pads)]

    # -------------------------------------------------------------------- decoding
    def _char_span(self, item: Prepared, window: Window, a: int, b: int) -> tuple[int, int]:
        """Characters of context tokens ``a..b`` (inclusive), aligned to whole words when asked."""
        if item.align and not self.by_words:
            lo, hi = window.first, window.first + window.length - 1
            words = item.words
            while a > lo and words[a - 1] == words[a]:
                a -= 1
            while b < hi and words[b + 1] == words[b]:
                b += 1
        return item.spans[a][0], item.spans[b][1]

    def _decode_spans(self, item: Prepared, results: list[tuple[Window, Any]]) -> dict[str, Any]:
        opts = self.options
        per_window = opts.top_k * 2 + 10 if (item.align or self.by_words) else opts.top_k
        answers: list[dict[str, Any]] = []
        seen: dict[Any, dict[str, Any]] = {}
        null = None
        for window, (start_logits, end_logits) in results:
            p_start = _probabilities(start_logits, window)
            p_end = _probabilities(end_logits, window)
            window_null = float(p_start[window.cls] * p_end[window.cls])
            null = window_null if null is None else min(null, window_null)
            c0, n = window.context_start, window.length
            scores = p_start[c0 : c0 + n, None] * p_end[None, c0 : c0 + n]  # (n, n): start x end
            scores = torch.triu(torch.tril(scores, opts.max_answer_len - 1))
            flat = scores.flatten()
            top = torch.topk(flat, min(per_window, flat.numel()))
            for score, index in zip(top.values.tolist(), top.indices.tolist()):
                if score <= 0.0:
                    break
                s, e = divmod(index, n)
                a, b = window.first + s, window.first + e
                self._add(answers, seen, item, window, a, b, score, merge=not self.by_words)
        return self._result(answers, null)

    def _decode_beam(self, item: Prepared, results: list[tuple[Window, Any]]) -> dict[str, Any]:
        opts = self.options
        answers: list[dict[str, Any]] = []
        seen: dict[Any, dict[str, Any]] = {}
        null = None
        for window, (start_probs, start_index, end_probs, end_index, cls_logit, pad) in results:
            window_null = float(torch.sigmoid(cls_logit))
            null = window_null if null is None else min(null, window_null)
            k = start_index.numel()
            c0, c1 = window.context_start, window.context_start + window.length
            candidates = []
            for j in range(end_index.numel() // k):  # end_top_* are end-rank major: [j * k + i]
                for i in range(k):
                    s = int(start_index[i]) - pad
                    e = int(end_index[j * k + i]) - pad
                    if c0 <= s <= e < c1 and e - s < opts.max_answer_len:
                        candidates.append((float(start_probs[i] * end_probs[j * k + i]), s, e))
            candidates.sort(key=lambda c: -c[0])
            for score, s, e in candidates:
                first = window.first - c0
                self._add(answers, seen, item, window, first + s, first + e, score, merge=False)
        return self._result(answers, null)

    def _add(
        self, answers: list[dict[str, Any]], seen: dict[Any, dict[str, Any]], item: Prepared, window: Window,
        a: int, b: int, score: float, *, merge: bool,
    ) -> None:
        """Add a candidate: the same text sums into the first (``merge``), else the same span keeps its best."""
        start, end = self._char_span(item, window, a, b)
        text = item.context[start:end]
        key: Any = text.lower() if merge else (start, end)
        known = seen.get(key)
        if known is None:
            seen[key] = answer = {"answer": text, "score": score, "start": start, "end": end}
            answers.append(answer)
        elif merge:
            known["score"] += score
        else:
            known["score"] = max(known["score"], score)

    def _result(self, answers: list[dict[str, Any]], null: float | None) -> dict[str, Any]:
        if self.options.handle_impossible and null is not None:
            answers.append({"answer": "", "score": null, "start": 0, "end": 0})
        ranked = sorted(answers, key=lambda a: a["score"], reverse=True)[: self.options.top_k]
        best = ranked[0] if ranked else {"answer": "", "score": 0.0, "start": 0, "end": 0}
        result = dict(best)
        if self.options.top_k > 1:
            result["answers"] = ranked
        return result


# ----------------------------------------------------------------------- helpers
#: scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, CJK, kana
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)


def spaced_script(text: str) -> bool:
    """False when most of ``text``'s letters are in a script written without spaces (Chinese, Japanese, Thai ...)."""
    letters = sum(1 for c in text if c.isalpha())
    return not letters or len(_UNSPACED.findall(text)) * 2 <= letters

def _probabilities(logits: torch.Tensor, window: Window) -> torch.Tensor:
    """Softmax over the context tokens and CLS (the others at -10000). Shape: (T,)."""
    allowed = torch.zeros(logits.shape[0], dtype=torch.bool)
    allowed[window.context_start : window.context_start + window.length] = True
    allowed[window.cls] = True
    return torch.softmax(torch.where(allowed, logits, torch.tensor(_MASKED)), dim=-1)


def _has_offsets(tokenizer: Any) -> bool:
    """Whether the tokenizer gives character offsets (XLM's does not)."""
    try:
        tokenizer.encode_plus("a b", add_special_tokens=False, return_offsets=True)
    except (NotImplementedError, ValueError):
        return False
    return True


def _reference_offsets(tokenizer: Any, text: str, offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token offsets as the reference fast tokenizer gives them to its QA pipeline.

    SentencePiece tokenizers (XLNet) report a "▁" piece as covering the blank before it; the
    published tokenizer.json does not, and a "▁" piece on its own covers the next character.
    """
    if getattr(tokenizer, "sp_model", None) is None:
        return [tuple(span) for span in offsets]  # type: ignore[misc]
    out = []
    for start, end in offsets:
        if start < end and text[start].isspace():
            while start < end and text[start].isspace():
                start += 1
            if start == end and start < len(text):
                end = start + 1
        out.append((start, end))
    return out


def _word_splitter(tokenizer: Any, by_words: bool):
    """``text -> [(start, end), ...]``: words as the reference fast tokenizer's pre-tokenizer cuts them."""
    own = getattr(tokenizer, "word_spans", None)
    if callable(own):
        return own
    if by_words:
        return lambda text: [m.span() for m in _SQUAD_WHITESPACE.finditer(text)]
    from ..tokenization.byte_bpe import MvpTokenizer

    if isinstance(tokenizer, MvpTokenizer):
        from tokenizers import pre_tokenizers  # byte-level BPE: the GPT-2 pattern

        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        return lambda text: [span for _, span in byte_level.pre_tokenize_str(text)]
    return lambda text: [m.span() for m in re.finditer(r"\S+", text)]


def _word_ids(spans: Sequence[tuple[int, int]], words: Sequence[tuple[int, int]]) -> list[int]:
    """The word each token belongs to (a token outside every word is a word of its own)."""
    starts = [s for s, _ in words]
    out = []
    for start, end in spans:
        at = start if start < end else start - 1  # an empty span stands just after its text
        k = bisect.bisect_right(starts, at) - 1
        out.append(k if k >= 0 and at < words[k][1] else -1 - len(out))
    return out
