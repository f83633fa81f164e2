"""Task heads and their losses, shared by the families, and ``TaskModel``: the base model,
then a head, so a family's task classes declare only what their head adds.

The losses follow the reference's definitions exactly: a sequence classifier
picks regression (one label), single-label (integer labels) or multi-label
(float labels) unless ``config.problem_type`` says; span QA averages the
start and end cross-entropies, with positions outside the sequence ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, make_dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .arguments import Arguments, DeclaredForward, arguments_of, inserted
from .config import Config
from .kernels import Linear
from .layers.activations import activation
from .loading import NameTable
from .modeling import PreTrainedModel
from .outputs import ModelOutput


# ------------------------------------------------------------ task models: base, then head
def head_arguments(
    base: Callable[..., Any],
    after: Mapping[str, Sequence[str]],
    drop: Sequence[str] = (),
) -> Arguments:
    """A task model's forward arguments: those the base model's ``forward`` takes by position,
    with the head's own inserted after the argument each key of ``after`` names, less ``drop``."""
    return inserted(arguments_of(base), after, drop)


def head_output(
    name: str,
    head_fields: Sequence[str],
    base: type[ModelOutput],
    *,
    leave_out: Sequence[str] = ("last_hidden_state",),
    doc: str = "",
    module: str = __name__,
) -> type[ModelOutput]:
    """A task model's output class: the head's fields first (each None by default), then the base
    output's fields less ``leave_out`` (hidden states, attentions, caches), in order.

    Example: ``head_output("XLNetLMHeadModelOutput", ("loss", "logits"), XLNetModelOutput)`` has
    loss, logits, mems, hidden_states, attentions.
    """
    own = [(field_name, Any, None) for field_name in head_fields]
    carried = [(f.name, f.type, None) for f in fields(base) if f.name not in leave_out]
    return make_dataclass(
        name, own + carried, bases=(ModelOutput,), namespace={"__doc__": doc or None, "__module__": module}
    )


class TaskModel(DeclaredForward, PreTrainedModel):
    """A task model: the base model, then a head. Subclasses declare only what they add.

    * ``base_class``: built from the config as ``self.<base_model_prefix>``; then ``add_head``
      builds the head's modules and ``post_init`` initialises and ties;
    * ``arguments``: the forward's arguments in positional order (the base model's with the
      head's own among them, see ``head_arguments``; names or ``inspect.Parameter``\\ s);
      ``extra_kwargs`` also accepts other keyword arguments and hands them to the base model;
    * ``head_inputs``: the arguments that are the head's own, handed to ``head``, not to the base
      (``labels`` unless the class says otherwise);
    * ``head``: the head's output fields from the base model's output;
    * ``output``: the output class, built from ``head``'s fields and, for every other field, the
      base output's field of the same name (hidden states, attentions, caches ...);
    * ``base_path``: the submodule run as the base model, when not ``base_model_prefix``;
    * ``base_inputs``: a hook to adjust the base model's inputs (labels -> decoder inputs ...).

    ``forward`` binds a call to ``arguments`` as a plain Python signature would (an unknown or
    doubled argument is a TypeError), and ``inspect.signature(model.forward)`` shows them.
    """

    base_class: ClassVar[Callable[..., nn.Module]]
    head_inputs: ClassVar[tuple[str, ...]] = ("labels",)
    output: ClassVar[type[ModelOutput]] = ModelOutput
    base_path: ClassVar[str] = ""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_class(config))
        self.add_head(config)
        self.post_init()

    def add_head(self, config: Config) -> None:
        """Build the head's modules."""
        raise NotImplementedError

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        """The base model's keyword arguments, from the call's (``own``: the head's, may be added to)."""
        return inputs

    def head(self, base: Any, **own: Any) -> dict[str, Any]:
        """The head's output fields, from the base model's output and the head's own arguments."""
        raise NotImplementedError

    def base_module(self) -> nn.Module:
        """The module run as the base model."""
        return self.get_submodule(self.base_path or self.base_model_prefix)

    # the token embeddings are the base model's
    def get_input_embeddings(self) -> nn.Module:
        return self.base_module().get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.base_module().set_input_embeddings(value)

    def _forward(self, *args: Any, **kwargs: Any) -> ModelOutput | tuple:
        inputs = self.bind_arguments(args, kwargs)
        extra = inputs.pop("kwargs", {}) if self.extra_kwargs else {}
        return_dict = inputs.pop("return_dict", None)
        own = {name: inputs.pop(name, None) for name in self.head_inputs}
        inputs = self.base_inputs(inputs, own)
        base = self.base_module()(**inputs, **extra, return_dict=True)
        result = self.head(base, **own)
        carried = {
            f.name: getattr(base, f.name) for f in fields(self.output) if f.name not in result and hasattr(base, f.name)
        }
        out = self.output(**result, **carried)
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        return out if return_dict else out.to_tuple()


class TokenClassifierHead:
    """A head (mixed in before ``TaskModel``): a linear ``classifier`` over every token, after
    dropout of ``config.<dropout_field>`` when the class names one; labels -100 are ignored.

    Shape: last hidden state (B, T, D) -> logits (B, T, num_labels); labels (B, T).
    """

    #: the config field holding the dropout before the classifier ("": none)
    dropout_field: ClassVar[str] = ""
    config: Config
    training: bool

    def add_head(self, config: Config) -> None:
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def head(self, base: Any, labels: torch.Tensor | None = None) -> dict[str, Any]:
        hidden = base.last_hidden_state
        if self.dropout_field:
            hidden = F.dropout(hidden, p=getattr(self.config, self.dropout_field), training=self.training)
        logits = self.classifier(hidden)
        loss = None if labels is None else token_classification_loss(logits, labels)
        return {"loss": loss, "logits": logits}


class CausalLMHead:
    """A linear LM head ``lm_head`` (no bias) over the base model's last hidden states, mixed in
    before ``TaskModel`` (the class ties it with ``output_ties``); ``generate`` runs the base
    module as the decoder (``get_decoder`` where the class has one), then the head.

    A head that reads other states of the decoder's output (ProphetNet's predicting streams)
    names them in ``head_states``, and what a cached step passes the decoder in ``step_options``.

    Shape: last hidden state (B, T, D) -> logits (B, T, vocab_size).
    """

    #: picks the states that feed the head from the decoder's output, (B, T, D)
    #: (``generation.adapters.Parts.hidden``; a ``staticmethod``); None: its ``last_hidden_state``
    head_states: ClassVar[Any] = None
    #: keyword arguments for the decoder on a cached one-token step (``Parts.step_options``)
    step_options: ClassVar[Mapping[str, Any]] = {}

    def add_head(self, config: Config) -> None:
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_decoder(self) -> nn.Module:
        """The decoder: the base module the head reads (a decoder stack, or a decoder-only model);
        an encoder-decoder head (``Seq2SeqLMHead``, mixed in before) gives the base model's."""
        return self.base_module()  # type: ignore[attr-defined]

    def generation_parts(self) -> Any:
        from .generation.adapters import Parts, last_hidden_state

        encoder = self.get_encoder() if hasattr(self, "get_encoder") else None  # an encoder-decoder model's
        return Parts(
            decoder=self.get_decoder(), hidden=self.head_states or last_hidden_state, head=self.lm_head,
            encoder=encoder, step_options=dict(self.step_options),
        )


class Seq2SeqLMHead:
    """What the LM heads over an encoder-decoder model share (mixed in before ``TaskModel``):
    the encoder and decoder are the base model's, and with ``labels`` and no decoder inputs
    the decoder reads the labels shifted right (the family's
    ``prepare_decoder_input_ids_from_labels``)."""

    def get_encoder(self) -> nn.Module:
        """The base model's encoder (``EncoderDecoderModel.get_encoder``)."""
        return self.base_module().get_encoder()  # type: ignore[attr-defined]

    def get_decoder(self) -> nn.Module:
        """The base model's decoder (``EncoderDecoderModel.get_decoder``)."""
        return self.base_module().get_decoder()  # type: ignore[attr-defined]

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        given = inputs.get("decoder_input_ids") is not None or inputs.get("decoder_inputs_embeds") is not None
        if own["labels"] is not None and not given:
            inputs["decoder_input_ids"] = self.prepare_decoder_input_ids_from_labels(own["labels"])
        return inputs


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: Config) -> torch.Tensor:
    """Loss of a sequence classifier. Shape: logits (B, num_labels); labels (B,) or (B, num_labels)."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over tokens; label -100 is ignored. Shape: logits (B, T, C); labels (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """Mean of start and end cross-entropies; positions beyond the sequence are ignored.

    Shape: logits (B, T); positions (B,) (or (B, 1)).
    """
    length = start_logits.shape[1]
    starts = start_positions.reshape(-1).clamp(0, length)
    ends = end_positions.reshape(-1).clamp(0, length)
    start = F.cross_entropy(start_logits, starts, ignore_index=length)
    end = F.cross_entropy(end_logits, ends, ignore_index=length)
    return (start + end) / 2


class SpanHead(nn.Module):
    """Start and end logits from one linear layer. Shape: (B, T, D) -> two (B, T)."""

    def __init__(self, dim: int, n_outputs: int = 2) -> None:
        super().__init__()
        self.proj = Linear(dim, n_outputs)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.proj(hidden).split(1, dim=-1)
        return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()

    def predict(
        self, hidden: torch.Tensor, start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """A span QA output's fields: start and end logits, and their ``span_loss`` when both
        positions are given."""
        start_logits, end_logits = self(hidden)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return {"loss": loss, "start_logits": start_logits, "end_logits": end_logits}


# ------------------------------------------------------ sequence summary (XLM, XLNet)
class SequenceSummary(nn.Module):
    """One vector per sequence from the last hidden states, as XLM's and XLNet's classifiers use.

    ``summary_type`` picks the vector: ``"last"`` token, ``"first"`` token, ``"mean"`` over the
    tokens, or ``"cls_index"`` (the token at ``cls_index``, the last one when it is not given);
    ``"attn"`` is not implemented, as in the reference. Then, in order: the first dropout, an
    optional projection ``proj`` (to ``num_labels`` when ``proj_to_labels`` and ``num_labels > 0``,
    else to ``dim``), the activation named by ``activation`` (none when empty), the last dropout.

    Reference parameter names: ``<container>.summary.{weight,bias}`` -> ``<container>.proj.*``
    (see ``summary_names``).

    Shape: hidden (B, [...,] T, D); cls_index (B, [...]) -> (B, [...,] D or num_labels).
    """

    def __init__(
        self,
        dim: int,
        *,
        summary_type: str = "last",
        use_proj: bool = False,
        proj_to_labels: bool = False,
        num_labels: int = 0,
        activation: str | None = None,
        first_dropout: float = 0.0,
        last_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if summary_type == "attn":
            raise NotImplementedError("summary_type 'attn' is not implemented (nor is it in the reference)")
        if summary_type not in ("last", "first", "mean", "cls_index"):
            raise ValueError(f"unknown summary_type {summary_type!r} (use last, first, mean or cls_index)")
        self.summary_type = summary_type
        out_dim = num_labels if proj_to_labels and num_labels > 0 else dim
        self.proj: nn.Module = Linear(dim, out_dim) if use_proj else nn.Identity()
        self.act = _activation_or_identity(activation)
        self.first_dropout = first_dropout or 0.0
        self.last_dropout = last_dropout or 0.0

    @classmethod
    def from_config(cls, config: Config, dim: int) -> "SequenceSummary":
        """Built from a config's ``summary_*`` fields (XLMConfig, XLNetConfig)."""
        return cls(
            dim,
            summary_type=getattr(config, "summary_type", "last"),
            use_proj=bool(getattr(config, "summary_use_proj", False)),
            proj_to_labels=bool(getattr(config, "summary_proj_to_labels", False)),
            num_labels=config.num_labels,
            activation=getattr(config, "summary_activation", None),
            first_dropout=float(getattr(config, "summary_first_dropout", 0.0) or 0.0),
            last_dropout=float(getattr(config, "summary_last_dropout", 0.0) or 0.0),
        )

    def forward(self, hidden: torch.Tensor, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        if self.summary_type == "last":
            out = hidden[:, -1]
        elif self.summary_type == "first":
            out = hidden[:, 0]
        elif self.summary_type == "mean":
            out = hidden.mean(dim=1)
        else:  # cls_index
            if cls_index is None:
                index = torch.full_like(hidden[..., :1, :], hidden.shape[-2] - 1, dtype=torch.long)
            else:
                index = cls_index[..., None, None].expand(*cls_index.shape, 1, hidden.shape[-1])
            out = hidden.gather(-2, index).squeeze(-2)  # (B, [...,] D)
        out = F.dropout(out, p=self.first_dropout, training=self.training)
        out = self.act(self.proj(out))
        return F.dropout(out, p=self.last_dropout, training=self.training)


def _activation_or_identity(name: str | None):
    return activation(name) if name else (lambda x: x)


def summary_names(hf: str = "sequence_summary", ours: str = "sequence_summary") -> NameTable:
    """Name rules for a ``SequenceSummary`` stored by the reference as ``<hf>.summary``."""
    return NameTable(((f"{hf}.summary", f"{ours}.proj"),))


# ------------------------------------------------ beam-search SQuAD head (XLM, XLNet)
def _mask_logits(logits: torch.Tensor, p_mask: torch.Tensor | None) -> torch.Tensor:
    """Push positions with ``p_mask`` 1 to a huge negative logit, as the reference does."""
    if p_mask is None:
        return logits
    big = 65500 if p_mask.dtype == torch.float16 else 1e30
    return logits * (1 - p_mask) - big * p_mask


@dataclass
class BeamQAHeadOutput(ModelOutput):
    """What ``BeamQAHead`` computes: the loss in training, the beam in inference."""

    loss: torch.Tensor | None = None
    start_top_log_probs: torch.Tensor | None = None
    start_top_index: torch.Tensor | None = None
    end_top_log_probs: torch.Tensor | None = None
    end_top_index: torch.Tensor | None = None
    cls_logits: torch.Tensor | None = None


class BeamQAHead(nn.Module):
    """XLNet's SQuAD head (also XLM's): start logits, end logits given a start, answerability.

    Parts, by role (reference names in brackets, see ``beam_qa_names``):
        start_proj   D -> 1                  [start_logits.dense]
        end_hidden   2D -> D, then tanh      [end_logits.dense_0]
        end_norm     LayerNorm(D)            [end_logits.LayerNorm]
        end_proj     D -> 1                  [end_logits.dense_1]
        answer_hidden 2D -> D, then tanh     [answer_class.dense_0]
        answer_proj  D -> 1, no bias         [answer_class.dense_1]

    With ``start_positions`` and ``end_positions`` it returns the training loss only: the mean of
    the start and end cross-entropies (end logits conditioned on the gold start), plus half the
    BCE of the answerability logit when ``cls_index`` and ``is_impossible`` are given. Otherwise it
    runs the beam: the top ``start_n_top`` start probabilities, for each of them the top
    ``end_n_top`` end probabilities (flattened end-major, as the reference does), and the
    answerability logit from the start-probability-weighted hidden state and the CLS state
    (``cls_index``, or the last token). The "log_probs" fields hold probabilities, as in the reference.

    Shape: hidden (B, T, D); p_mask (B, T), 1.0 = cannot be an answer token; positions, cls_index,
    is_impossible (B,). Outputs: start_top_* (B, start_n_top); end_top_* (B, start_n_top * end_n_top);
    cls_logits (B,).
    """

    def __init__(self, dim: int, *, layer_norm_eps: float = 1e-12, start_n_top: int = 5, end_n_top: int = 5) -> None:
        super().__init__()
        self.start_n_top, self.end_n_top = start_n_top, end_n_top
        self.start_proj = Linear(dim, 1)
        self.end_hidden = Linear(2 * dim, dim)
        self.end_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.end_proj = Linear(dim, 1)
        self.answer_hidden = Linear(2 * dim, dim)
        self.answer_proj = Linear(dim, 1, bias=False)

    # the three parts, usable on their own
    def start_logits(self, hidden: torch.Tensor, p_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: (B, T, D) -> (B, T)."""
        return _mask_logits(self.start_proj(hidden).squeeze(-1), p_mask)

    def end_logits(
        self, hidden: torch.Tensor, start_states: torch.Tensor, p_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Shape: hidden and start_states (B, T, [K,] D) -> (B, T[, K])."""
        x = torch.tanh(self.end_hidden(torch.cat([hidden, start_states], dim=-1)))
        return _mask_logits(self.end_proj(self.end_norm(x)).squeeze(-1), p_mask)

    def answer_logits(
        self, hidden: torch.Tensor, start_state: torch.Tensor, cls_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Shape: hidden (B, T, D), start_state (B, D), cls_index (B,) -> (B,)."""
        if cls_index is None:
            cls_state = hidden[:, -1]
        else:
            cls_state = _gather_positions(hidden, cls_index)
        x = torch.tanh(self.answer_hidden(torch.cat([start_state, cls_state], dim=-1)))
        return self.answer_proj(x).squeeze(-1)

    def forward(
        self,
        hidden: torch.Tensor,
        *,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        cls_index: torch.Tensor | None = None,
        is_impossible: torch.Tensor | None = None,
        p_mask: torch.Tensor | None = None,
    ) -> BeamQAHeadOutput:
        start_logits = self.start_logits(hidden, p_mask)
        flat = lambda t: None if t is None else (t.squeeze(-1) if t.dim() > 1 else t)  # noqa: E731
        start_positions, end_positions = flat(start_positions), flat(end_positions)
        cls_index, is_impossible = flat(cls_index), flat(is_impossible)

        if start_positions is not None and end_positions is not None:
            t = hidden.shape[1]
            gold_start = _gather_positions(hidden, start_positions)[:, None].expand(-1, t, -1)  # (B, T, D)
            end_logits = self.end_logits(hidden, gold_start, p_mask)
            loss = (F.cross_entropy(start_logits, start_positions) + F.cross_entropy(end_logits, end_positions)) / 2
            if cls_index is not None and is_impossible is not None:
                cls_logits = self.answer_logits(hidden, _gather_positions(hidden, start_positions), cls_index)
                cls_loss = F.binary_cross_entropy_with_logits(cls_logits, is_impossible.to(cls_logits.dtype))
                loss = loss + 0.5 * cls_loss
            return BeamQAHeadOutput(loss=loss)

        b, t, d = hidden.shape
        k = self.start_n_top
        start_probs = torch.softmax(start_logits, dim=-1)  # (B, T)
        start_top_probs, start_top_index = torch.topk(start_probs, k, dim=-1)  # (B, K)
        start_states = hidden.gather(1, start_top_index[..., None].expand(-1, -1, d))  # (B, K, D)
        start_states = start_states[:, None].expand(-1, t, -1, -1)  # (B, T, K, D)
        hidden_k = hidden[:, :, None].expand_as(start_states)  # (B, T, K, D)
        end_mask = None if p_mask is None else p_mask[..., None]
        end_probs = torch.softmax(self.end_logits(hidden_k, start_states, end_mask), dim=1)  # (B, T, K)
        end_top_probs, end_top_index = torch.topk(end_probs, self.end_n_top, dim=1)  # (B, end_n_top, K)
        expected_start = torch.einsum("btd,bt->bd", hidden, start_probs.to(hidden.dtype))  # (B, D)
        return BeamQAHeadOutput(
            start_top_log_probs=start_top_probs,
            start_top_index=start_top_index,
            end_top_log_probs=end_top_probs.reshape(b, k * self.end_n_top),
            end_top_index=end_top_index.reshape(b, k * self.end_n_top),
            cls_logits=self.answer_logits(hidden, expected_start, cls_index),
        )


def _gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The hidden state at one position per row. Shape: (B, T, D), (B,) -> (B, D)."""
    index = positions.long()[:, None, None].expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)


def beam_qa_names(hf: str = "", ours: str = "qa_head") -> NameTable:
    """Name rules for a ``BeamQAHead`` at ``ours`` whose reference parts sit under ``hf``.

    XLM keeps them under ``qa_outputs`` (``beam_qa_names("qa_outputs", "qa_outputs")``); XLNet
    keeps them at the top of the model (``beam_qa_names("", "qa_head")`` or wherever it sits).
    """
    pre = f"{hf}." if hf else ""
    parts = (
        ("start_logits.dense", "start_proj"),
        ("end_logits.dense_0", "end_hidden"),
        ("end_logits.LayerNorm", "end_norm"),
        ("end_logits.dense_1", "end_proj"),
        ("answer_class.dense_0", "answer_hidden"),
        ("answer_class.dense_1", "answer_proj"),
    )
    return NameTable(tuple((pre + theirs, f"{ours}.{mine}") for theirs, mine in parts))
