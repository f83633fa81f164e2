"""The base of every model class: build from config.json, load, tie, save.

``from_pretrained`` builds the model on the meta device (no memory, no random
init), then assigns the checkpoint's tensors as the parameters themselves, so
a float32 safetensors checkpoint is used straight from its memory map and
never copied. It is loud about anything that does not fit: a tensor whose
shape disagrees, or a missing weight of the base model, is a
``CheckpointError``; a missing head weight is initialised (as the reference
does when a base checkpoint is loaded into a task model) and named in
``model.load_report``, and so is every checkpoint tensor the model has no use
for.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .arguments import DeclaredForward
from .config import Config, ConfigError, config_file, read_config_json
from .loading import CheckpointError, NameTable, legacy_renames, read_weights, write_weights
from .outputs import BaseModelOutput, ModelOutput

logger = logging.getLogger("xcli_models")

_DTYPES = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
    "float64": torch.float64,
}


def resolve_dtype(dtype: torch.dtype | str | None, config: Config | None = None) -> torch.dtype:
    """A dtype from a torch dtype or a name; ``"auto"`` takes the checkpoint's own."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        # transformers >= 4.56 writes "dtype" (and prefers it), older versions "torch_dtype"
        stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        return resolve_dtype(str(stored).removeprefix("torch.") if stored else None)
    try:
        return _DTYPES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)") from None


@dataclass
class LoadReport:
    """What ``from_pretrained`` did not take one-to-one from the checkpoint."""

    initialized: list[str] = field(default_factory=list)  # head weights the checkpoint lacked
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors the model has no place for
    #: "name: [checkpoint shape] -> [model shape]", left out under ignore_mismatched_sizes (and initialised)
    mismatched: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.mismatched:
            out.append(f"re-initialised (shape differs from the checkpoint): {', '.join(self.mismatched)}")
        if self.initialized:
            out.append(f"newly initialised (not in the checkpoint): {', '.join(self.initialized)}")
        if self.unexpected:
            out.append(f"unused checkpoint tensors: {', '.join(self.unexpected)}")
        return out


class _NoInitOnMeta(TorchFunctionMode):
    """While a model is built for loading: in-place initialisation of meta tensors does nothing.

    There is nothing to initialise on the meta device, and the first ``normal_`` there costs
    seconds (torch imports its Python reference kernels for it) in every process that loads.
    """

    _INIT = frozenset({
        "normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
        "xavier_normal_", "orthogonal_", "constant_", "zeros_", "ones_", "fill_", "zero_",
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self._INIT:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))  # torch.nn.init passes kwargs
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def resolve_flags(
    config: Config, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
) -> tuple[bool, bool, bool]:
    """A forward's output switches, each None replaced by the config's default
    (``return_dict`` by ``use_return_dict``)."""
    return (
        config.output_attentions if output_attentions is None else output_attentions,
        config.output_hidden_states if output_hidden_states is None else output_hidden_states,
        config.use_return_dict if return_dict is None else return_dict,
    )


def as_encoder_output(value: Any) -> BaseModelOutput:
    """``encoder_outputs`` as a caller passed them: our output, the reference's, a tuple or a tensor."""
    if isinstance(value, BaseModelOutput):
        return value
    if isinstance(value, torch.Tensor):
        return BaseModelOutput(last_hidden_state=value)
    if hasattr(value, "last_hidden_state"):
        return BaseModelOutput(
            last_hidden_state=value.last_hidden_state,
            hidden_states=getattr(value, "hidden_states", None),
            attentions=getattr(value, "attentions", None),
        )
    value = tuple(value)
    return BaseModelOutput(
        last_hidden_state=value[0],
        hidden_states=value[1] if len(value) > 1 else None,
        attentions=value[2] if len(value) > 2 else None,
    )


def _in_nested_model(model: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` of ``model`` belongs to a ``PreTrainedModel`` nested in it."""
    parts = name.split(".")[:-1]
    module = model
    for part in parts:
        module = getattr(module, part)
        if isinstance(module, PreTrainedModel):
            return True
    return False


def _short_list(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class PreTrainedModel(nn.Module):
    """Base class of all xcli models (see the module docstring)."""

    config_class: ClassVar[type[Config]] = Config
    #: attribute holding the base model in task models ("model", "transformer", ...)
    base_model_prefix: ClassVar[str] = ""
    #: Hugging Face name <-> our name rules of the family
    names: ClassVar[NameTable] = NameTable()
    #: our parameter name -> the parameter it is by construction, whatever the config says
    #: (encoder and decoder reading one embedding module)
    shared_weights: ClassVar[dict[str, str]] = {}
    #: our parameter name -> the input embedding it is tied to when ``ties_output()`` (the LM head)
    output_ties: ClassVar[dict[str, str]] = {}
    #: regexes over Hugging Face names: checkpoint tensors accepted silently when unused
    ignore_unexpected: ClassVar[tuple[str, ...]] = (r"(^|\.)position_ids$",)
    #: regexes over our names: weights that may be absent from a checkpoint without a report
    ignore_missing: ClassVar[tuple[str, ...]] = ()
    main_input_name: ClassVar[str] = "input_ids"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.load_report = LoadReport()
        #: the checkpoint directory ``from_pretrained`` read (its generation_config.json is the default)
        self.name_or_path: str | None = None
        #: generation defaults (a ``generation.GenerationConfig``), read on first use
        self.generation_config: Any = None

    # --------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        seen: set[int] = set()
        total = 0
        for p in self.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    def post_init(self) -> None:
        """Finish construction: initialise this model's own weights, then tie."""
        self.init_weights()
        self.tie_weights()

    # ------------------------------------------------------ init and ties
    def init_weights(self) -> None:
        """Draw this model's own weights as the reference does (``_init_tensor`` each, in order).

        Weights inside a nested model (a task model's base) are left alone: that model drew
        them when it was built. Nothing is drawn on the meta device.
        """
        own = [(name, p) for name, p in self.named_parameters() if not _in_nested_model(self, name)]
        if not own or own[0][1].is_meta:
            return
        for name, param in own:
            self._init_tensor(name, param.data)

    def ties_output(self) -> bool:
        """Whether the output embedding is tied to the input embedding (``output_ties``)."""
        return bool(getattr(self.config, "tie_word_embeddings", True))

    @property
    def tied_weights(self) -> dict[str, str]:
        """Every tie that holds for this model and config: our name -> the parameter it is."""
        ties = dict(self.shared_weights)
        if self.ties_output():
            ties.update(self.output_ties)
        return ties

    def ties_active(self) -> bool:
        """Whether any weight of this model is tied to another."""
        return bool(self.tied_weights)

    def tie_weights(self) -> None:
        for target, source in self.tied_weights.items():
            owner_name, _, attr = target.rpartition(".")
            owner = self.get_submodule(owner_name) if owner_name else self
            if getattr(owner, "is_quantized", False):  # a quantized head keeps its own integer copy
                continue
            setattr(owner, attr, self.get_parameter(source))

    def init_std(self) -> float:
        for name in ("init_std", "initializer_range", "init_range"):
            value = getattr(self.config, name, None)
            if isinstance(value, (int, float)):
                return float(value)
        return 0.02

    def _init_tensor(self, name: str, tensor: torch.Tensor) -> None:
        """Initialise one weight the checkpoint lacked (as freshly built heads are)."""
        owner_name, _, attr = name.rpartition(".")
        owner = self.get_submodule(owner_name) if owner_name else self
        with torch.no_grad():
            if attr == "bias" or isinstance(owner, nn.LayerNorm) and attr != "weight":
                tensor.zero_()
            elif isinstance(owner, nn.LayerNorm):
                tensor.fill_(1.0)
            else:
                tensor.normal_(0.0, self.init_std())
                padding_idx = getattr(owner, "padding_idx", None)
                if isinstance(owner, nn.Embedding) and padding_idx is not None:
                    tensor[padding_idx].zero_()

    # -------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        config: Config | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        ignore_mismatched_sizes: bool = False,
        weight_only: bool | None = None,
        **config_overrides: Any,
    ) -> "PreTrainedModel":
        """Load a Hugging Face checkpoint directory (see the module docstring).

        ``ignore_mismatched_sizes``: a checkpoint tensor whose shape disagrees with the model
        (a classifier head built for other labels) is left out and its weight initialised, as
        a missing head weight is, instead of failing; ``load_report.mismatched`` names them.

        A quantized checkpoint (``xcli convert --quantize``, :mod:`xcli_models.quantized_checkpoint`)
        gives the quantized model, on the CPU: its projections made from the stored integers,
        ``weight_only`` choosing int8 weights times bfloat16 inputs (generation) over int8 products
        (None: int8 products for int8 checkpoints, weight-only for int4).
        """
        directory = Path(path)
        if not directory.is_dir():
            raise CheckpointError(f"{directory} is not a checkpoint directory")
        if config is None:
            try:
                config = cls.config_class.from_pretrained(directory, **config_overrides)
            except ConfigError as exc:  # no config.json, bad JSON, another model_type, a bad value
                raise CheckpointError(str(exc)) from exc
        target_dtype = resolve_dtype(dtype, config)
        target_device = torch.device(device) if device is not None else torch.device("cpu")
        check_memory(config, target_dtype, directory)  # and the config's rules, if it was given
        state = read_weights(directory)
        model = build_on_meta(cls, config, directory)
        spec = _quantization(config, directory, target_device)
        if spec is not None:
            from .quantized_checkpoint import install

            state = install(model, state, spec, weight_only, str(directory))
        model._assign_checkpoint(state, target_dtype, target_device, str(directory), ignore_mismatched_sizes)
        if spec is not None:
            from .quantized_checkpoint import quantize_rest

            quantize_rest(model, spec, weight_only)
        model.eval()
        model.name_or_path = str(directory)
        return model

    def _assign_checkpoint(
        self, state: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device, where: str,
        ignore_mismatched_sizes: bool = False,
    ) -> None:
        expected = self.state_dict(keep_vars=True)
        hf_state = self._align_prefix({legacy_renames(k): v for k, v in state.items()}, expected)
        ties = self.tied_weights
        report = LoadReport()
        assigned: dict[str, torch.Tensor] = {}
        mismatched: list[str] = []
        left_out: set[str] = set()  # mismatched, under ignore_mismatched_sizes
        for hf_name, tensor in hf_state.items():
            ours = self.names.to_ours(hf_name)
            slot = expected.get(ours)
            if slot is None:
                if not any(re.search(p, hf_name) for p in self.ignore_unexpected):
                    report.unexpected.append(hf_name)
                continue
            if tuple(tensor.shape) != tuple(slot.shape):
                if ignore_mismatched_sizes:
                    report.mismatched.append(f"{hf_name}: {list(tensor.shape)} -> {list(slot.shape)}")
                    left_out.add(ours)
                    continue
                mismatched.append(f"{hf_name} is {list(tensor.shape)} in the checkpoint, {list(slot.shape)} in the model")
                continue
            if tensor.is_floating_point() and tensor.dtype != dtype:
                tensor = tensor.to(dtype)
            elif not tensor.is_floating_point() and slot.dtype != tensor.dtype:
                tensor = tensor.to(slot.dtype)
            assigned[ours] = tensor.to(device)
        if mismatched:
            raise CheckpointError(
                f"{where}: {len(mismatched)} tensor(s) do not fit config.json: {_short_list(mismatched, 3)}"
            )
        # absent buffers are rebuilt by their module's reset_buffers(), not loaded
        missing = [
            name for name, slot in expected.items()
            if name not in assigned and name not in ties and isinstance(slot, nn.Parameter)
        ]
        reported = [m for m in missing if not any(re.search(p, m) for p in self.ignore_missing)]
        prefix = self.base_model_prefix
        # in a base model (no "<prefix>." names) every weight is a base weight
        is_base = not prefix or not any(name.startswith(prefix + ".") for name in expected)
        base_missing = [m for m in reported if (is_base or m.startswith(prefix + ".")) and m not in left_out]
        if base_missing:
            if not assigned:
                raise CheckpointError(
                    f"{where}: none of the model's weights are in the checkpoint; is it a {type(self).__name__} "
                    f"checkpoint of another family or version?"
                )
            raise CheckpointError(
                f"{where}: {len(base_missing)} weight(s) missing from the checkpoint: "
                f"{_short_list([self.names.to_hf(m) for m in base_missing])}"
            )
        self.load_state_dict(assigned, strict=False, assign=True)
        for name in missing:
            slot = expected[name]
            fresh = torch.empty(slot.shape, dtype=dtype if slot.is_floating_point() else slot.dtype, device=device)
            self._init_tensor(name, fresh)
            owner_name, _, attr = name.rpartition(".")
            owner = self.get_submodule(owner_name) if owner_name else self
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=slot.requires_grad))
            if name in reported and name not in left_out:
                report.initialized.append(self.names.to_hf(name))
        self._materialize_buffers(device, dtype)
        self.tie_weights()
        self.load_report = report
        for line in report.lines():
            logger.warning("%s: %s", where, line)

    def _align_prefix(self, state: dict[str, torch.Tensor], expected: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Load a base checkpoint into a task model and a task checkpoint into a base model."""
        prefix = self.base_model_prefix
        if not prefix:
            return state
        dotted = prefix + "."
        model_has = any(self.names.to_hf(k).startswith(dotted) for k in expected)
        ckpt_has = any(k.startswith(dotted) for k in state)
        if model_has and not ckpt_has:
            return {dotted + k: v for k, v in state.items()}
        if not model_has and ckpt_has:
            return {k.removeprefix(dotted): v for k, v in state.items()}
        return state

    def _materialize_buffers(self, device: torch.device, dtype: torch.dtype) -> None:
        """Rebuild buffers computed at construction (they were made on the meta device)."""
        for module in self.modules():
            if any(b.is_meta for b in module.buffers(recurse=False)):
                reset = getattr(module, "reset_buffers", None)
                if reset is None:
                    raise RuntimeError(f"{type(module).__name__} has meta buffers but no reset_buffers()")
                reset()
        for name, buffer in self.named_buffers():
            owner_name, _, attr = name.rpartition(".")
            owner = self.get_submodule(owner_name) if owner_name else self
            if buffer.device != device:
                owner._buffers[attr] = buffer.to(device)

    # --------------------------------------------------------------- saving
    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters under their Hugging Face names, tied copies left out."""
        ties = self.tied_weights
        return {self.names.to_hf(k): v for k, v in self.state_dict().items() if k not in ties}

    def save_pretrained(
        self, path: str | os.PathLike, *, safe_serialization: bool = True, max_shard_size: int | str | None = None
    ) -> list[Path]:
        """Write config.json and the weights in a layout the reference library loads unchanged.

        A quantized model (``--quantize``, or loaded from a quantized checkpoint) is refused with a
        ValueError: its integer layers hold no float weights to write (``xcli convert --quantize``
        writes quantized checkpoints)."""
        if any(getattr(module, "is_quantized", False) for module in self.modules()):
            raise ValueError("a quantized model cannot be saved as a float checkpoint: save the float model, then "
                             "quantize the checkpoint (xcli convert --quantize)")
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.torch_dtype = str(self.dtype).removeprefix("torch.")
        self.config.dtype = self.config.torch_dtype  # the name transformers >= 4.56 reads first
        files = write_weights(self.hf_state_dict(), directory, safe=safe_serialization, max_shard_size=max_shard_size)
        saved = [self.config.save_pretrained(directory), *files]
        source = Path(self.name_or_path) if self.name_or_path else None
        if self.generation_config is not None or source is not None and (source / "generation_config.json").is_file():
            from .generation.config import model_defaults

            saved.append(model_defaults(self).save_pretrained(directory))
        return saved

    # ----------------------------------------------------------- generation
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Generate text: greedy, beam search or sampling (see ``xcli_models.generation.generate``)."""
        from .generation import generate

        return generate(self, *args, **kwargs)

    #: a head with a decoding scheme of its own names its ``generation.Adapter`` class here (XLM,
    #: XLNet); the others say where their parts are (``generation_parts``)
    generation_adapter_class: Any = None

    def generation_parts(self) -> Any:
        """Where a generating head's decoder, encoder and LM head are (a ``generation.adapters.Parts``)
        for the shared adapters; None: this class does not generate."""
        return None

    def generation_adapter(self, **options: Any) -> Any:
        """How ``generate`` drives this model (a ``generation.Adapter``), from ``generation_adapter_class``
        or ``generation_parts``."""
        from .generation.adapters import adapter_for

        return adapter_for(self, **options)


def _quantization(config: Config, directory: Path, device: torch.device) -> Any:
    """config.json's ``quantization`` entry, checked (a ``quantized_checkpoint.Spec``), or None."""
    if getattr(config, "quantization", None) is None:
        return None
    from .quantized_checkpoint import spec_of

    spec = spec_of(config, str(config_file(directory)))
    if device.type != "cpu":
        raise CheckpointError(f"{directory}: a quantized checkpoint ({spec.mode}) runs on the CPU, not {device.type}")
    return spec


def check_memory(config: Config, dtype: torch.dtype, directory: str | os.PathLike) -> None:
    """A ``CheckpointError`` when ``config`` breaks its family's rules, or its model would not fit
    in memory in ``dtype``."""
    try:
        config.check_fields()
        config.check_memory(dtype.itemsize, str(dtype).removeprefix("torch."))
    except ConfigError as exc:
        raise CheckpointError(f"{config_file(directory)}: {exc}") from None


#: the documented arguments of an encoder-decoder model's forward, in order; the reference's
#: ``cache_position`` is accepted for compatibility: the cache knows its length
SEQ2SEQ_ARGUMENTS = (
    "input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "head_mask",
    "decoder_head_mask", "cross_attn_head_mask", "encoder_outputs", "past_key_values", "inputs_embeds",
    "decoder_inputs_embeds", "use_cache", "output_attentions", "output_hidden_states", "return_dict",
    "cache_position",
)


class EncoderDecoderModel(DeclaredForward, PreTrainedModel):
    """An encoder and a decoder that reads its states (MVP, ProphetNet).

    ``forward`` takes ``SEQ2SEQ_ARGUMENTS``, runs ``self.encoder`` (unless ``encoder_outputs``
    are given: ours, the reference's, a tuple or a tensor), then ``self.decoder`` over its last
    hidden state, and returns ``output``: each ``encoder_*`` field from the encoder's output,
    every other field from the decoder's field of the same name less a ``decoder_`` prefix (or
    as ``decoder_fields`` renames it). ``decoder_inputs`` is the hook for decoder inputs the
    caller left out.

    Shape: input_ids (B, S), decoder_input_ids (B, T) -> last_hidden_state (B, T, D).
    """

    arguments = SEQ2SEQ_ARGUMENTS
    output: ClassVar[type[ModelOutput]]
    #: output field -> the decoder output's field, where dropping ``decoder_`` does not name it
    decoder_fields: ClassVar[dict[str, str]] = {}

    encoder: nn.Module
    decoder: nn.Module

    def get_encoder(self) -> nn.Module:
        """The encoder stack (``self.encoder``)."""
        return self.encoder

    def get_decoder(self) -> nn.Module:
        """The decoder stack (``self.decoder``)."""
        return self.decoder

    def decoder_inputs(
        self, input_ids: torch.Tensor | None, decoder_input_ids: torch.Tensor | None,
        decoder_inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor | None:
        return decoder_input_ids

    def _forward(self, *args: Any, **kwargs: Any) -> ModelOutput | tuple:
        call = SimpleNamespace(**self.bind_arguments(args, kwargs, defaults=True))
        decoder_input_ids = self.decoder_inputs(call.input_ids, call.decoder_input_ids, call.decoder_inputs_embeds)
        flags = {"output_attentions": call.output_attentions, "output_hidden_states": call.output_hidden_states}
        encoder_outputs = call.encoder_outputs
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=call.input_ids, attention_mask=call.attention_mask, head_mask=call.head_mask,
                inputs_embeds=call.inputs_embeds, return_dict=True, **flags,
            )
        encoded = as_encoder_output(encoder_outputs)
        decoded = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=call.decoder_attention_mask,
            encoder_hidden_states=encoded.last_hidden_state,
            encoder_attention_mask=call.attention_mask,
            head_mask=call.decoder_head_mask,
            cross_attn_head_mask=call.cross_attn_head_mask,
            past_key_values=call.past_key_values,
            inputs_embeds=call.decoder_inputs_embeds,
            use_cache=call.use_cache,
            return_dict=True,
            **flags,
        )
        values = {}
        for f in fields(self.output):
            if f.name.startswith("encoder_"):
                values[f.name] = getattr(encoded, f.name.removeprefix("encoder_"))
            else:
                values[f.name] = getattr(decoded, self.decoder_fields.get(f.name, f.name.removeprefix("decoder_")))
        out = self.output(**values)
        return_dict = self.config.use_return_dict if call.return_dict is None else call.return_dict
        return out if return_dict else out.to_tuple()


def build_on_meta(cls: type[PreTrainedModel], config: Config, directory: str | os.PathLike) -> PreTrainedModel:
    """``cls(config)`` on the meta device: the structure without memory or initialisation.

    A config the class refuses while building (an unknown activation, an option it does not
    implement) is a ``CheckpointError`` naming config.json.
    """
    try:
        with torch.device("meta"), _NoInitOnMeta():
            return cls(config)
    except (ValueError, NotImplementedError) as exc:
        raise CheckpointError(f"{config_file(directory)}: {cls.__name__} cannot be built from it: {exc}") from exc


def config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """config.json as a dict, with a one-line error when it cannot be read."""
    try:
        return read_config_json(path)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
