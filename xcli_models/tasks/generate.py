"""Text generation for records: prompts in, generated texts out, as the reference pipelines give them.

A :class:`Generator` wraps a loaded generative model and its tokenizer. ``prepare(text, fields)``
turns one record into a :class:`Prompt` (task template, prefix, special tokens, truncation);
``run(prompts)`` generates for a list of them, batched; ``stream(prompt, on_text)`` generates for
one prompt and hands its text out piece by piece as the tokens come.

What the texts are, per kind of model (the reference's ``text-generation`` and
``text2text-generation`` pipelines, which ``xcli generate`` reproduces):

* **causal** models (XGLMForCausalLM, XLMWithLMHeadModel, XLNetLMHeadModel, MvpForCausalLM,
  (XLM)ProphetNetForCausalLM): the prompt is tokenised with the tokenizer's special tokens, as the
  pipeline does (XGLM starts with ``</s>``, XLNet ends with ``<sep> <cls>``). The new text is the
  decoded prompt-and-continuation with the decoded prompt's characters cut off the front
  (``skip_special_tokens``, tokenization spaces cleaned up), so the continuation keeps the space
  that joins it to the prompt. ``return_full_text`` (the default for causal models, as in the
  pipeline) puts the prompt, as given, in front of it.
* **encoder-decoder** models (MvpForConditionalGeneration, (XLM)ProphetNetForConditionalGeneration):
  the input goes to the encoder; the text is the decoded output (``skip_special_tokens``, spaces
  left as they are). There is no "full text": the output is new text, not a continuation.

On top of that:

* a **prefix** goes in front of every prompt without showing in the output: the checkpoint
  config's ``prefix`` when it has one (as both pipelines do), or, for XLNet with
  ``xlnet_prefix=True``, the long passage the reference's text-generation pipeline feeds XLNet to
  give short prompts more context (:data:`XLNET_PREFIX`; the pipeline uses it by default, xcli
  only on request). The length limits count the new tokens, never the prefix.
* **MVP task templates** (``task=``): the textual instructions MVP was pre-trained with, as the
  RUCAIBox model cards use them (:data:`MVP_TASKS`).
* ProphetNet's ``[X_SEP]`` (its sentence separator) is shown as a newline in the output.
* **stop strings** end a sequence as soon as its text contains one; the text is cut just before
  it (the stop string is not part of the output).
* **scores**: each sequence's score is what the engine reports (its length-penalised sum of token
  log-probabilities; for beam search, the beam score of the reference).

Lengths: a prompt longer than the model allows is cut, keeping its end for a decoder-only model
(the continuation follows it) and its start for an encoder; ``Prompt.truncated`` says so. The
limit is ``max_input_length``, by default the model's own (``common.input_limit``: its positions,
512 tokens for XLNet); a decoder-only model with positions (all but XLNet) also keeps room for the
new tokens within them: prompt + ``max_new_tokens`` (at least one) fit its positions.

Streaming (``stream``): the pieces handed out are the text that later tokens cannot change (see
``Generator.settled_text``), so what was shown is always a prefix of the final text.

Batching: prompts of similar length share a batch (left padding for decoder-only models, right
padding for encoders), results come back in input order. Where the reference's generation does
not mask padding (XLM, XLNet, MVP and ProphetNet causal LMs place tokens by index), only prompts
of equal length share a batch, so a prompt's output never depends on the batch it ran in. With a
``seed``, every prompt samples from its own generator seeded with it: the same prompt and seed
give the same text in any batch and any run.

Nothing here prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..registry import capabilities, heads_for
from ..kernels import inference
from .common import UnsupportedModel, input_limit, language, map_by_length, pad, position_limit

__all__ = [
    "MVP_TASKS", "XLNET_PREFIX", "EmptyPrompt",
    "GenerateOptionError", "Generator", "MissingField", "Prompt", "WrongType", "bad_words_ids", "mvp_prompt",
    "show_separators",
]

#: The passage the reference text-generation pipeline puts before every XLNet prompt (Aman Rusia's
#: "XLNet speaks" method: a short prompt alone gives XLNet too little context). Exact text,
#: whitespace included, so that prompts tokenise as the reference's do.
XLNET_PREFIX = (
    "\n    In 1991, the remains of Russian Tsar Nicholas II and his family (except for Alexei and Maria) are"
    " discovered. The\n    voice of Nicholas's young son, Tsarevich Alexei Nikolaevich, narrates the remainder of"
    " the story. 1883 Western\n    Siberia, a young Grigori Rasputin is asked by his father and a group of men to"
    " perform magic. Rasputin has a vision\n    and denounces one of the men as a horse thief. Although his father"
    " initially slaps him for making such an\n    accusation, Rasputin watches as the man is chased outside and"
    " beaten. Twenty years later, Rasputin sees a vision of\n    the Virgin Mary, prompting him to become a priest."
    " Rasputin quickly becomes famous, with people, even a bishop,\n    begging for his blessing. <eod> </s> <eos>\n"
    "    "
)


class GenerateOptionError(ValueError):
    """Generation settings that cannot work together (the message names the option)."""


class MissingField(ValueError):
    """A record lacks a field its task template needs."""


class WrongType(ValueError):
    """A record field has the wrong JSON type."""


class EmptyPrompt(ValueError):
    """A prompt with no token (and a tokenizer that adds none): nothing to continue."""


# ------------------------------------------------------------------ MVP task templates
@dataclass(frozen=True)
class _Task:
    instruction: str
    #: what the record's text is, for messages and help
    text_is: str


#: MVP's task instructions, as the RUCAIBox/mvp* model cards write the inputs. Within an input,
#: " [SEP] " separates items (triples, dialogue turns) and " [X_SEP] " separates parts (an answer
#: from its passage, a question from its context, knowledge from the dialogue).
MVP_TASKS: dict[str, _Task] = {
    "summarize": _Task("Summarize: ", "the document"),
    "data-to-text": _Task("Describe the following data: ", "triples 'head | relation | tail' joined by ' [SEP] '"),
    "qa": _Task("Answer the following question: ", "the question (with an optional \"context\" field)"),
    "question-generation": _Task(
        "Generate the question based on the answer: ",
        "the passage (with an \"answer\" field), or 'answer [X_SEP] passage'",
    ),
    "story": _Task("Given the story title: ", "the title or opening"),
    "open-dialog": _Task("Given the dialog: ", "the turns joined by ' [SEP] ' (or a \"dialog\" list field)"),
    "task-dialog": _Task(
        "Given the task dialog: ", "'Belief state | Dialogue action | System response [X_SEP] user turn'"
    ),
}
_TASK_ALIASES = {"summarization": "summarize", "question-answering": "qa", "dialog": "open-dialog"}


def mvp_task_name(task: str) -> str:
    name = _TASK_ALIASES.get(task, task)
    if name not in MVP_TASKS:
        raise GenerateOptionError(f"unknown MVP task {task!r} (use one of: {', '.join(MVP_TASKS)})")
    return name


def _field(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WrongType(f'"{name}" must be a string')
    return value


def mvp_prompt(task: str, text: str | None, fields: Mapping[str, Any] | None = None) -> str:
    """The model input for one record under an MVP task template.

    ``text`` is the record's text field (None when absent); ``fields`` the whole record, for the
    tasks that combine several: ``qa`` (``question`` or the text, optional ``context``),
    ``question-generation`` (optional ``answer``, then ``context`` or the text) and ``open-dialog``
    (optional ``dialog`` list of turns and ``knowledge``).
    """
    name = mvp_task_name(task)
    fields = fields or {}
    head = MVP_TASKS[name].instruction
    if name == "qa":
        question = _field(fields, "question") or text
        if question is None:
            raise MissingField('no "question" (or text) field: the qa template needs a question')
        context = _field(fields, "context")
        return head + question + (f" [X_SEP] {context}" if context else "")
    if name == "question-generation":
        answer = _field(fields, "answer")
        passage = _field(fields, "context") or text
        if passage is None:
            raise MissingField('no "context" (or text) field: the question-generation template needs a passage')
        return head + (f"{answer} [X_SEP] {passage}" if answer else passage)
    if name == "open-dialog" and fields.get("dialog") is not None:
        turns = fields["dialog"]
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise WrongType('"dialog" must be an array of strings (the turns)')
        knowledge = _field(fields, "knowledge")
        body = " [SEP] ".join(turns)
        return head + (f"{knowledge} [X_SEP] {body}" if knowledge else body)
    if text is None:
        raise MissingField(f"no text field: the {name} template needs {MVP_TASKS[name].text_is}")
    return head + text


# ------------------------------------------------------------------------ text helpers
_X_SEP = re.compile(r"[ \t]*\[X_SEP\][ \t]*")


def show_separators(text: str) -> str:
    """ProphetNet's sentence separator ``[X_SEP]`` (and the spaces around it) as a newline."""
    return _X_SEP.sub("\n", text) if "[X_SEP]" in text else text


def bad_words_ids(tokenizer: Any, words: Sequence[str]) -> list[list[int]]:
    """Token sequences for ``words`` as the reference documents building ``bad_words_ids``:
    each word tokenised alone without special tokens, with the leading space a word has inside a
    sentence for byte-level BPE (``add_prefix_space=True``); SentencePiece adds its own."""
    out: list[list[int]] = []
    for word in words:
        if not word:
            raise GenerateOptionError("--bad-words: an empty word cannot be banned")
        if hasattr(tokenizer, "add_prefix_space"):  # byte-level BPE
            ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word, add_prefix_space=True))
        else:
            ids = tokenizer.encode(word, add_special_tokens=False)
        if not ids:
            raise GenerateOptionError(f"--bad-words: {word!r} gives no token to ban")
        out.append(list(ids))
    return out


# ---------------------------------------------------------------------------- prompts
@dataclass
class Prompt:
    """One record, ready to generate from."""

    #: the prompt as the record gave it (template applied, prefix not): what full text starts with
    text: str
    #: what the model reads: prefix + text, special tokens, truncated to the limit
    input_ids: list[int]
    #: characters of the decoded ``input_ids`` (causal models: where the new text starts)
    prompt_chars: int = 0
    #: True when the input was cut to fit the length limit
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)


class Generator:
    """Generate texts with a model and its tokenizer (see the module docstring).

    ``settings`` are generation options by the reference's names (``max_new_tokens``,
    ``num_beams``, ``do_sample``, ``temperature``, ``stop_strings`` ...), and ``bad_words`` (words,
    turned into ``bad_words_ids`` by :func:`bad_words_ids`); None values are left to the
    checkpoint's defaults. ``return_full_text`` None: the pipelines' default (causal: True).
    ``scores``: every result carries its sequence's ``score``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        settings: Mapping[str, Any] | None = None,
        return_full_text: bool | None = None,
        task: str | None = None,
        lang: str | None = None,
        xlnet_prefix: bool = False,
        max_input_length: int | None = None,
        batch_size: int = 8,
        seed: int | None = None,
        scores: bool = False,
    ) -> None:
        name = type(model).__name__
        self.capabilities = caps = capabilities(name)
        if caps.generate is None:
            heads = ", ".join(heads_for("generate"))
            raise UnsupportedModel(f"generate needs a language-modelling head ({heads}); the checkpoint is a {name}")
        if batch_size < 1:
            raise GenerateOptionError("batch_size must be at least 1")
        self.model, self.tokenizer = model, tokenizer
        self.class_name = name
        self.causal = caps.generate == "causal"
        self.model_type = str(getattr(model.config, "model_type", ""))
        self.batch_size = batch_size
        self.seed = seed
        self.scores = scores
        self.return_full_text = self.causal if return_full_text is None else bool(return_full_text) and self.causal
        self.task = None
        if task is not None:
            if not caps.task_templates:
                raise UnsupportedModel(f"task templates are MVP's; this is a {name}")
            self.task = mvp_task_name(task)
        self.adapter_options: dict[str, Any] = {}
        lang_id = language(model, tokenizer, lang)
        if lang_id is not None:
            self.adapter_options["lang_id"] = lang_id
        self.prefix = self._prefix(xlnet_prefix)
        self.settings = self._settings(settings or {})
        self.config = self._check(self.settings)
        self.limit = self._input_limit(max_input_length)
        self.separators = caps.sentence_separators
        #: things a user should know about this set-up (the CLI shows them as warnings)
        self.warnings: list[str] = []
        if caps.causal_flag and not getattr(model.config, "causal", False):
            self.warnings.append(
                "the checkpoint is a masked LM (causal: false): it generates as the reference does, recomputing "
                "every step, but its texts are unlikely to be fluent"
            )

    # ------------------------------------------------------------ set-up
    def _prefix(self, xlnet_prefix: bool) -> str:
        if xlnet_prefix and self.capabilities.permutation:
            return XLNET_PREFIX
        prefix = getattr(self.model.config, "prefix", None)
        return prefix if isinstance(prefix, str) else ""

    def _settings(self, given: Mapping[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in given.items() if v is not None}
        stops = settings.get("stop_strings")
        if stops is not None:
            stops = [stops] if isinstance(stops, str) else list(stops)
            if not stops or any(not isinstance(s, str) or not s for s in stops):
                raise GenerateOptionError("stop strings must be non-empty")
            settings["stop_strings"] = stops
        words = settings.pop("bad_words", None)
        if words:
            settings["bad_words_ids"] = [*settings.get("bad_words_ids", []), *bad_words_ids(self.tokenizer, words)]
        return settings

    def _check(self, settings: dict[str, Any]) -> Any:
        """The settings over the checkpoint's defaults, refused now (one line) if they cannot work."""
        from ..generation.config import GenerationConfig, model_defaults

        unknown = sorted(set(settings) - GenerationConfig.field_names())
        if unknown:
            raise GenerateOptionError(f"unknown generation option(s): {', '.join(unknown)}")
        defaults = model_defaults(self.model)
        if defaults.pad_token_id is None and self.tokenizer.pad_token_id is not None and "pad_token_id" not in settings:
            # the pipelines' rule: the tokenizer's pad token when the model names none
            settings["pad_token_id"] = self.tokenizer.pad_token_id
        try:
            config = defaults.updated(dict(settings))
            config.validate()
        except ValueError as exc:
            raise GenerateOptionError(str(exc)) from None
        positions = position_limit(self.model.config)
        if positions is not None:
            if config.max_new_tokens is not None and config.max_new_tokens >= positions:
                raise GenerateOptionError(
                    f"the model's positions take at most {positions} tokens: max_new_tokens must be below that"
                )
            if "max_length" in settings and config.max_new_tokens is None and config.max_length > positions:
                raise GenerateOptionError(
                    f"the model's positions take at most {positions} tokens: max_length must not exceed that"
                )
        return config

    def _input_limit(self, max_input_length: int | None) -> int:
        """The most tokens a prompt may have: ``max_input_length``, else the model's limit
        (``common.input_limit``), and, for a decoder-only model, room for at least one new token
        (all of max_new_tokens when given) within its positions and within max_length."""
        limit = input_limit(self.model, self.tokenizer, max_input_length, option="max_input_length")
        if self.causal:
            positions = position_limit(self.model.config)
            if positions is not None:
                limit = min(limit, positions - (self.config.max_new_tokens or 1))
            if self.config.max_new_tokens is None and "max_length" in self.settings:
                limit = min(limit, self.config.max_length - 1)
        if limit < self.tokenizer.num_special_tokens_to_add() + 1:
            raise GenerateOptionError(f"no room for a prompt: at most {limit} input tokens fit with these lengths")
        return limit

    @property
    def streams(self) -> bool:
        """Whether ``stream`` can show the text as it grows (one sequence, no beams)."""
        return self.config.num_beams == 1 and self.config.num_return_sequences == 1

    # ------------------------------------------------------------ inputs
    def prepare(self, text: str | None, fields: Mapping[str, Any] | None = None) -> Prompt:
        """Tokenise one record: its text (``fields``: the whole record, for task templates)."""
        if self.task is not None:
            text = mvp_prompt(self.task, text, fields)
        elif text is None:
            raise MissingField("no text to generate from")
        tok = self.tokenizer
        ids = tok.encode(self.prefix + text)
        truncated = False
        if len(ids) > self.limit:
            content = tok.encode(self.prefix + text, add_special_tokens=False)
            budget = self.limit - tok.num_special_tokens_to_add()
            # a continuation follows the end of the prompt: keep the end; an encoder keeps the start
            content = content[len(content) - budget:] if self.causal else content[:budget]
            ids = tok.build_inputs_with_special_tokens(content)
            truncated = True
        if not ids:
            raise EmptyPrompt("the prompt gives no token to start from")
        chars = len(self._decode(ids)) if self.causal else 0
        return Prompt(text, list(ids), chars, truncated)

    def _decode(self, ids: Sequence[int]) -> str:
        # the pipelines' decoding: text-generation cleans tokenization spaces up, text2text does not
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=self.causal)

    def _present(self, text: str) -> str:
        return show_separators(text) if self.separators else text

    def new_text(self, prompt: Prompt, new_ids: Sequence[int]) -> str:
        """The text of ``new_ids`` generated after ``prompt``, stop string not cut."""
        if self.causal:
            return self._present(self._decode([*prompt.input_ids, *new_ids])[prompt.prompt_chars:])
        return self._present(self._decode(new_ids))

    def finish(self, prompt: Prompt, text: str) -> str:
        """The output text: cut before the first stop string, the prompt in front for full text."""
        from ..generation.stopping import cut_at_stop

        stops = self.config.stop_string_list
        if stops:
            text = cut_at_stop(text, stops)[0]
        return prompt.text + text if self.return_full_text else text

    # ------------------------------------------------------------- model
    def run(self, prompts: Sequence[Prompt]) -> list[dict[str, Any]]:
        """One result per prompt, in order: ``{"generated_text"}``, plus ``"score"`` (``scores``)
        and ``"sequences": [{"generated_text", "score"}, ...]`` when several are returned."""
        # heads whose reference generation places tokens by index, padding included (or masks no
        # padding at all): a padded batch would change their outputs, so only prompts of one length
        exact = self.capabilities.unpadded or (self.causal and "max_length" in self.settings)
        return map_by_length(list(prompts), self._run_batch, self.batch_size, padded=not exact)

    def _generate(self, prompts: list[Prompt], streamer: Any = None) -> Any:
        from ..generation import generate

        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        side = "left" if self.causal else "right"
        device = self.model.device
        ids = pad([p.input_ids for p in prompts], pad_id, side=side, device=device)
        mask = pad([[1] * len(p) for p in prompts], 0, side=side, device=device)
        options = dict(self.settings)
        decode = None
        if self.config.stop_string_list:
            def decode(new_ids: list[int]) -> str:
                return self._present(self._decode(new_ids))
        with inference():
            return generate(
                self.model, ids, attention_mask=mask, seed=self.seed, decode=decode, streamer=streamer,
                return_dict_in_generate=True, sequence_scores=True, **options, **self.adapter_options,
            )

    def _results(self, prompts: list[Prompt], out: Any) -> list[dict[str, Any]]:
        per_prompt = self.config.num_return_sequences
        start = out.prompt_length
        rows = out.sequences[:, start:].tolist()
        scores = out.sequences_scores.tolist() if out.sequences_scores is not None else [None] * len(rows)
        results = []
        for i, prompt in enumerate(prompts):
            sequences = [
                {"generated_text": self.finish(prompt, self.new_text(prompt, rows[j])), "score": scores[j]}
                for j in range(i * per_prompt, (i + 1) * per_prompt)
            ]
            result: dict[str, Any] = {"generated_text": sequences[0]["generated_text"]}
            if self.scores:
                result["score"] = sequences[0]["score"]
            if per_prompt > 1:
                result["sequences"] = sequences
            results.append(result)
        return results

    def _run_batch(self, prompts: list[Prompt]) -> list[dict[str, Any]]:
        return self._results(prompts, self._generate(prompts))

    def stream(self, prompt: Prompt, on_text: Callable[[str], None]) -> dict[str, Any]:
        """Generate for one prompt, handing ``on_text`` each new piece of the output text as its
        tokens come (the prompt first, for full text). The pieces add up to a prefix of the
        result's ``generated_text``; the caller writes the rest (the last word, usually)."""
        from ..generation import TextStream

        if not self.streams:
            raise GenerateOptionError("streaming shows one sequence as it grows: use one beam and one sequence")
        if self.return_full_text:
            on_text(prompt.text)
        stream = TextStream(
            lambda ids: self.settled_text(prompt, ids), lambda row, piece: on_text(piece),
            stop_strings=self.config.stop_string_list, stop_tokens=self.config.eos_ids,
        )
        out = self._generate([prompt], streamer=stream)
        stream.end()
        return self._results([prompt], out)[0]

    def settled_text(self, prompt: Prompt, new_ids: Sequence[int]) -> str:
        """The part of the new text that later tokens cannot change, for streaming.

        Cleaning tokenization spaces up (causal models' decoding) removes a space when what
        follows it turns out to be punctuation or a contraction (``" ."``, ``" ' "``, ``" n't"``
        ...), so the text from its last space on is held back; only spaces are ever removed, so
        everything before it stays. Without clean-up the whole text is settled (an incomplete
        character is held back by the stream itself).
        """
        text = self.new_text(prompt, new_ids)
        if not self.causal:
            return text
        cut = text.rfind(" ")
        return text if cut < 0 else text[:cut]

    def __call__(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return self.run([self.prepare(t) for t in texts])
