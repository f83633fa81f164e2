"""``generate``: prompts in, sequences out, through an adapter and a search strategy.

The run, in named phases:

1. settings: the model's defaults (``config.model_defaults``) updated with the caller's
   options, lengths made absolute;
2. ``start`` (prefill): the adapter encodes the B prompts once and returns the first logits;
   the state is then expanded to B x beams (or x samples) rows by reordering, so nothing
   about the prompt is computed twice;
3. search: ``search.greedy_or_sample`` or ``search.beam_search``, one ``adapter.step`` per
   token;
4. the output: the sequences as the reference returns them (prompt + new tokens for
   decoder-only models, decoder tokens from the start token for encoder-decoder models),
   with per-sequence scores, per-step scores and decoded texts on request.

Everything runs inside ``kernels.inference``, the tasks' context: ``torch.inference_mode`` and,
on CPU, the matrix products through oneDNN (on AMD processors a decode step streams its weights ~1.7x faster
than MKL; on Intel processors products of 1 to 3 rows stay with MKL, see ``kernels._MKL_ROWS``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..outputs import ModelOutput
from .. import kernels
from ..tasks.common import position_limit
from . import search
from .adapters import Adapter, adapter_for
from .config import UNSUPPORTED, GenerationConfig, model_defaults
from .processors import Processor, build_processors
from .stopping import build_conditions, cut_at_stop

logger = logging.getLogger("xcli_models")


@dataclass
class GenerateOutput(ModelOutput):
    """What ``generate(..., return_dict_in_generate=True)`` returns.

    sequences (N, L): N = batch x num_return_sequences, prompt (or decoder start) included;
    sequences_scores (N,): the score of each sequence (``output_scores``): the length-penalised
    sum of its tokens' log-probabilities (for beam search, the beam score the reference reports);
    scores: the processed next-token scores of each step, (rows, V) each (``output_scores``);
    beam_indices (N, new tokens): the beam each token came from (beam search);
    texts (N,): the generated text without the prompt, special tokens skipped and cut before the
    first stop string (when a tokenizer or decode function was given);
    prompt_length: where the new tokens start in ``sequences``.
    """

    sequences: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    texts: list[str] | None = None
    prompt_length: int | None = None


#: options of ``generate`` that are for the adapter, not the generation config
_ADAPTER_OPTIONS = ("lang_id",)
#: reference options that only make sense to the reference's machinery; accepted and ignored
_KNOWN_ELSEWHERE = {"use_model_defaults", "synced_gpus"}


def generate(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    generation_config: GenerationConfig | None = None,
    logits_processor: Sequence[Processor] = (),
    streamer: Callable[[torch.Tensor], None] | None = None,
    tokenizer: Any = None,
    decode: Callable[[list[int]], str] | None = None,
    seed: int | Sequence[int] | None = None,
    sampler: search.Sampler | None = None,
    decoder_input_ids: torch.Tensor | None = None,
    sequence_scores: bool = False,
    onednn: bool = True,
    **options: Any,
) -> torch.Tensor | GenerateOutput:
    """Generate continuations of ``inputs`` (B, T) with ``model`` (see the module docstring).

    ``options`` are generation settings by their reference names (``max_new_tokens``,
    ``num_beams``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``typical_p``,
    ``repetition_penalty``, ``no_repeat_ngram_size``, ``bad_words_ids``, ``min_new_tokens``,
    ``stop_strings``, ``output_scores``, ``return_dict_in_generate`` ...), plus family options
    (XLM: ``lang_id``). Decoder-only prompts are left-padded, with ``attention_mask`` (1 = real
    token; inferred from the pad token when absent, as the reference does).

    ``sequence_scores``: with ``return_dict_in_generate``, fill ``sequences_scores`` without keeping
    every step's scores (``output_scores`` keeps both).

    ``seed``: sampling draws from per-row generators, prompt p's j-th sample seeded
    ``seed + j`` (or ``seed[p] + j`` with one seed per prompt), so results do not depend on the
    batch. ``sampler`` replaces the draw itself ((probabilities, step) -> tokens). ``streamer``
    is called after each greedy/sampling step with the tokens just chosen (R,).
    ``tokenizer`` (or ``decode``: ids -> text) is needed for stop strings and gives ``texts``.

    ``onednn``: on CPU, run the matrix products through oneDNN (``kernels.inference``, the tasks' context);
    False keeps torch's default (MKL).

    Returns the sequences (N, L), or a ``GenerateOutput`` with ``return_dict_in_generate``.
    """
    if inputs is None:
        inputs = options.pop("input_ids", None)
    adapter_options = {k: options.pop(k) for k in _ADAPTER_OPTIONS if k in options}
    config = _settings(model, generation_config, options)
    config.validate()
    if config.num_beams > 1 and streamer is not None:
        raise ValueError("streaming shows one sequence as it grows: use it without beam search (num_beams=1)")
    if decode is None and tokenizer is not None:
        def decode(ids: list[int]) -> str:
            return tokenizer.decode(ids, skip_special_tokens=True)

    device = _device(model)
    make_adapter = getattr(model, "generation_adapter", None) or (lambda **kw: adapter_for(model, **kw))
    adapter: Adapter = make_adapter(use_cache=bool(config.use_cache), **adapter_options)
    input_ids, attention_mask = _prompt_and_mask(inputs, attention_mask, config, device, adapter)
    batch = input_ids.shape[0]
    if adapter.is_encoder_decoder:
        start_ids = _decoder_start(model, config, batch, decoder_input_ids, device)
    else:
        start_ids = input_ids
    config = config.resolve_lengths(
        start_ids.shape[1], position_limit(model.config),
        max_length_given="max_length" in options or _explicit_max_length(generation_config),
    )
    processors = build_processors(
        config, input_length=start_ids.shape[1], encoder_input_ids=input_ids, extra=logits_processor
    )
    conditions = build_conditions(
        config.max_length, config.eos_ids, config.stop_string_list, decode, start_ids.shape[1]
    )
    with kernels.inference(onednn and device.type == "cpu"):
        state, logits = adapter.start(
            input_ids, attention_mask, start_ids if adapter.is_encoder_decoder else None
        )
        result = _search(adapter, state, logits, start_ids, config, processors, conditions, sampler=sampler,
                         seeds=_seeds(seed, batch), streamer=streamer, sequence_scores=sequence_scores)

    if not config.return_dict_in_generate:
        return result.sequences
    texts = None
    if decode is not None:
        stops = config.stop_string_list
        texts = [cut_at_stop(decode(row), stops)[0] for row in result.sequences[:, start_ids.shape[1]:].tolist()]
    return GenerateOutput(
        sequences=result.sequences,
        sequences_scores=result.sequence_scores if config.output_scores or sequence_scores else None,
        scores=result.scores,
        beam_indices=result.beam_indices,
        texts=texts,
        prompt_length=start_ids.shape[1],
    )


def _prompt_and_mask(
    inputs: Any, attention_mask: torch.Tensor | None, config: GenerationConfig, device: torch.device, adapter: Adapter
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt ids on ``device`` and their attention mask (inferred from the pad token when absent)."""
    input_ids = _prompt(inputs, config, device)
    if attention_mask is None:
        attention_mask = _infer_mask(input_ids, config)
    attention_mask = attention_mask.to(device)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match the input {tuple(input_ids.shape)}")
    if not adapter.is_encoder_decoder and input_ids.shape[0] > 1 and bool((attention_mask[:, -1] == 0).any()):
        logger.warning("a decoder-only model needs left padding: the batch is padded on the right")
    return input_ids, attention_mask


def _search(
    adapter: Adapter, state: Any, logits: torch.Tensor, start_ids: torch.Tensor, config: GenerationConfig,
    processors: Any, conditions: Any, *, sampler: search.Sampler | None, seeds: Any,
    streamer: Callable[[torch.Tensor], None] | None, sequence_scores: bool,
) -> Any:
    """Beam search, or greedy/sampling, from the first step's logits; each prompt's rows expanded
    to ``config.expand_size`` first."""
    per_prompt = config.expand_size
    sequences = start_ids
    if per_prompt > 1:
        index = torch.arange(start_ids.shape[0], device=start_ids.device).repeat_interleave(per_prompt)
        adapter.reorder(state, index)
        logits, sequences = logits.index_select(0, index), sequences.index_select(0, index)
    if config.num_beams > 1:
        if config.do_sample and sampler is None:
            sampler = search.multinomial_sampler(
                search.row_generators(seeds, 1, start_ids.device), draws=max(2, 1 + len(config.eos_ids)) * config.num_beams
            )
        return search.beam_search(
            adapter, state, logits, sequences, config=config, processors=processors, conditions=conditions,
            vocab_size=logits.shape[-1], sampler=sampler if config.do_sample else None,
        )
    if config.do_sample and sampler is None:
        sampler = search.multinomial_sampler(search.row_generators(seeds, per_prompt, start_ids.device))
    return search.greedy_or_sample(
        adapter, state, logits, sequences, config=config, processors=processors, conditions=conditions,
        sampler=sampler if config.do_sample else None, streamer=streamer, score_sequences=sequence_scores,
    )


def _settings(model: nn.Module, given: GenerationConfig | None, options: dict[str, Any]) -> GenerationConfig:
    """Model defaults < an explicit config's non-default fields < keyword options."""
    config = model_defaults(model)
    if given is not None:
        default = GenerationConfig()
        changed = {f.name: getattr(given, f.name) for f in fields(GenerationConfig)
                   if f.name != "unsupported" and getattr(given, f.name) != getattr(default, f.name)}
        config = config.updated({**changed, **given.unsupported})
    known = GenerationConfig.field_names() | set(UNSUPPORTED) | _KNOWN_ELSEWHERE
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise TypeError(f"generate() got unknown option(s): {', '.join(unknown)}")
    return config.updated({k: v for k, v in options.items() if k not in _KNOWN_ELSEWHERE})


def _explicit_max_length(given: GenerationConfig | None) -> bool:
    return given is not None and given.max_length != GenerationConfig.max_length


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _prompt(inputs: Any, config: GenerationConfig, device: torch.device) -> torch.Tensor:
    if inputs is None:
        if config.bos_token_id is None:
            raise ValueError("no prompt given and the model has no bos_token_id to start from")
        return torch.full((1, 1), int(config.bos_token_id), dtype=torch.long, device=device)
    ids = torch.as_tensor(inputs, dtype=torch.long, device=device)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must be (batch, length) with length >= 1, not {tuple(ids.shape)}")
    return ids


def _infer_mask(input_ids: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """1 where the token is not the pad token, when that can be told apart from EOS; else all ones."""
    pad = config.effective_pad_token_id
    if pad is None or pad in config.eos_ids or not bool((input_ids == pad).any()):
        return torch.ones_like(input_ids)
    return (input_ids != pad).long()


def _decoder_start(
    model: nn.Module, config: GenerationConfig, batch: int, given: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    if start is None:
        raise ValueError(f"{type(model).__name__} has no decoder_start_token_id (nor bos_token_id) to start decoding")
    if isinstance(start, (list, tuple)):
        if len(start) != batch:
            raise ValueError(f"decoder_start_token_id has {len(start)} entries for a batch of {batch}")
        first = torch.tensor(start, dtype=torch.long, device=device)[:, None]
    else:
        first = torch.full((batch, 1), int(start), dtype=torch.long, device=device)
    if given is None:
        return first
    given = torch.as_tensor(given, dtype=torch.long, device=device)
    if given.dim() == 1:
        given = given[None].expand(batch, -1)
    if bool((given[:, 0] != first[:, 0]).all()):  # the reference puts the start token in front
        given = torch.cat([first, given], dim=1)
    return given


def _seeds(seed: int | Sequence[int] | None, batch: int) -> list[int] | None:
    if seed is None:
        return None
    if isinstance(seed, int):
        return [seed] * batch
    seeds = [int(s) for s in seed]
    if len(seeds) != batch:
        raise ValueError(f"{len(seeds)} seeds for {batch} prompts")
    return seeds
