"""A corpus of hostile checkpoints, written by code (no binaries are committed).

Each :class:`Case` starts from a tiny valid checkpoint of one family (random weights saved by
xcli's own ``save_pretrained``, with the tokenizer files of the built-in models, or a hand-made
BPE vocabulary for XLM) and breaks it one way: lying or truncated safetensors headers, pickles
that would run code, truncated zips, absurd or mistyped config values, config.json files that
are devices, pipes, loops or huge, shard indexes that point outside the directory, missing
files, unknown model types and classes, quantized checkpoints (``convert --quantize``) whose
config entry or integer weights and scales are wrong.

``write_valid(family, directory)`` writes the valid checkpoints, ``write(case, directory, valid)``
a case from them; ``model_command(family, directory)`` is the model command (classify, or
generate for the families without a classifier) run on it. A pickle that runs code would create
:data:`MARKER` beside the checkpoint directory: it must never appear.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

BUILTIN = Path(__file__).resolve().parents[1] / "xcli_models" / "data" / "builtin"
#: a file a malicious pickle creates, in the checkpoint's parent folder, if it is ever run
MARKER = "code-ran"

FAMILIES = ("xlnet", "mvp", "xlm", "xglm", "prophetnet")

#: the tiny valid checkpoints: class and config of each family
_VALID: dict[str, tuple[str, dict[str, Any]]] = {
    "xlnet": ("XLNetForSequenceClassification", dict(d_model=8, n_layer=1, n_head=2, d_inner=16)),
    "mvp": ("MvpForSequenceClassification", dict(
        d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=64)),
    "xlm": ("XLMForSequenceClassification", dict(
        emb_dim=8, n_layers=1, n_heads=2, max_position_embeddings=64, n_langs=1)),
    "xglm": ("XGLMForCausalLM", dict(
        d_model=8, num_layers=1, attention_heads=2, ffn_dim=16, max_position_embeddings=64)),
    "prophetnet": ("ProphetNetForConditionalGeneration", dict(
        hidden_size=8, num_encoder_layers=1, num_decoder_layers=1, num_encoder_attention_heads=2,
        num_decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=64,
        num_buckets=8, relative_max_distance=16)),
}

#: per family: the field of the hidden size, of the layer count, of the heads; the position limit (XLNet has none)
FIELDS: dict[str, tuple[str, str, str, str | None]] = {
    "xlnet": ("d_model", "n_layer", "n_head", None),
    "mvp": ("d_model", "encoder_layers", "encoder_attention_heads", "max_position_embeddings"),
    "xlm": ("emb_dim", "n_layers", "n_heads", "max_position_embeddings"),
    "xglm": ("d_model", "num_layers", "attention_heads", "max_position_embeddings"),
    "prophetnet": ("hidden_size", "num_encoder_layers", "num_decoder_attention_heads", "max_position_embeddings"),
}


def _tokenizer_files(family: str, directory: Path) -> None:
    """Tokenizer files for the family's valid checkpoint (copies of the built-in models' own)."""
    def copy(source: str, *names: str, rename: dict[str, str] | None = None) -> None:
        for name in names:
            shutil.copyfile(BUILTIN / source / name, directory / (rename or {}).get(name, name))

    if family == "xlnet":
        copy("xlnet/xlnet-base-cased", "spiece.model", "tokenizer_config.json")
    elif family == "xglm":  # any SentencePiece model serves
        copy("xlnet/xlnet-base-cased", "spiece.model", rename={"spiece.model": "sentencepiece.bpe.model"})
    elif family == "mvp":
        copy("RUCAIBox/mvp", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
    elif family == "prophetnet":
        copy("microsoft/prophetnet-large-uncased", "prophetnet.tokenizer", "tokenizer_config.json")
    else:  # xlm: a BPE vocabulary of single letters
        specials = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        vocab = {t: i for i, t in enumerate([*specials, *letters, *(f"{c}</w>" for c in letters)])}
        (directory / "vocab.json").write_text(json.dumps(vocab))
        (directory / "merges.txt").write_text("#version: 0.2\n")


def _tokenizer_size(directory: Path) -> int:
    from xcli_models.tokenization import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(directory))


def write_valid(family: str, directory: Path) -> Path:
    """A tiny valid checkpoint of ``family`` (seeded random weights) with its tokenizer files."""
    import xcli_models
    from xcli_models.registry import FAMILIES as REGISTRY, load_object

    class_name, fields = _VALID[family]
    directory.mkdir(parents=True)
    _tokenizer_files(family, directory)
    (directory / "config.json").write_text(json.dumps({"model_type": family}))  # for the tokenizer's family
    config = load_object(REGISTRY[family].config)(vocab_size=_tokenizer_size(directory), **fields)
    torch.manual_seed(0)
    getattr(xcli_models, class_name)(config).save_pretrained(directory)
    return directory


def model_command(family: str, directory: Path) -> list[str]:
    """The model command run on a checkpoint of ``family``: classify, or generate without a classifier."""
    if family in ("xglm", "prophetnet"):
        return ["generate", "-m", str(directory), "--max-new-tokens", "2", "hello world"]
    return ["classify", "-m", str(directory), "hello world"]


# ---------------------------------------------------------------------- how cases break a checkpoint
def _edit_config(**changes: Any) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        config.update(changes)
        (directory / "config.json").write_text(json.dumps(config))
    return make


def _drop_config_keys(*keys: str) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        for key in keys:
            config.pop(key, None)
        (directory / "config.json").write_text(json.dumps(config))
    return make


def _config_text(raw: bytes) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        (directory / "config.json").write_bytes(raw)
    return make


def _replace(name: str, how: str) -> Callable[[Path], None]:
    """``name`` becomes a link to /dev/zero, a link loop, a dangling link, a pipe or a directory."""
    def make(directory: Path) -> None:
        target = directory / name
        if target.exists() or target.is_symlink():
            target.unlink()
        if how == "device":
            target.symlink_to("/dev/zero")
        elif how == "loop":
            target.symlink_to(directory / f"{name}.loop")
            (directory / f"{name}.loop").symlink_to(target)
        elif how == "dangling":
            target.symlink_to(directory / "nowhere")
        elif how == "pipe":
            os.mkfifo(target)
        elif how == "directory":
            target.mkdir()
        else:  # pragma: no cover
            raise AssertionError(how)
    return make


def _huge_config(directory: Path) -> None:
    with open(directory / "config.json", "wb") as handle:  # valid JSON, 17 MiB of it
        handle.write(b'{"model_type": "xlnet", "padding": "' + b"x" * (17 * 2**20) + b'"}')


def _safetensors(directory: Path, header: Any, data: bytes = b"", *, length: int | None = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(raw) if length is None else length
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", size) + raw + data)


def _header(**entry: Any) -> Callable[[Path], None]:
    """model.safetensors with one tensor whose header entry is ``entry`` (over 64 bytes of data)."""
    def make(directory: Path) -> None:
        _safetensors(directory, {"transformer.word_embedding.weight": entry}, bytes(64))
    return make


def _safetensors_raw(header: Any, data: bytes = b"", length: int | None = None) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        _safetensors(directory, header, data, length=length)
    return make


def _truncate(name: str, keep: float) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        data = (directory / name).read_bytes()
        (directory / name).write_bytes(data[: int(len(data) * keep)])
    return make


def _weights_bytes(raw: bytes) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        (directory / "model.safetensors").write_bytes(raw)
    return make


def _as_bin(directory: Path) -> dict[str, torch.Tensor]:
    """Replace model.safetensors by pytorch_model.bin; the tensors it held."""
    from xcli_models.loading import read_safetensors

    state = {k: v.clone() for k, v in read_safetensors(directory / "model.safetensors").items()}
    (directory / "model.safetensors").unlink()
    return state


class _RunsCode:
    """Pickles as a call that creates the marker file; loading it unsafely would run it."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self) -> tuple:
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        if self.how == "eval":
            return (eval, (f"open({str(self.marker)!r}, 'w')",))
        return (open, (str(self.marker), "w"))


def _pickle(how: str, *, raw: bool = False) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        state: dict[str, Any] = dict(_as_bin(directory))
        state["transformer.mask_emb"] = _RunsCode(directory.parent / MARKER, how)
        if raw:  # a bare pickle, not torch's zip
            (directory / "pytorch_model.bin").write_bytes(pickle.dumps(state, protocol=2))
        else:
            torch.save(state, directory / "pytorch_model.bin")
    return make


def _bin(transform: Callable[[dict[str, torch.Tensor]], Any]) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        torch.save(transform(_as_bin(directory)), directory / "pytorch_model.bin")
    return make


def _bin_bytes(transform: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        torch.save(_as_bin(directory), directory / "pytorch_model.bin")
        data = (directory / "pytorch_model.bin").read_bytes()
        (directory / "pytorch_model.bin").write_bytes(transform(data))
    return make


def _zip_without_data(directory: Path) -> None:
    """A torch zip whose tensor records are gone: the pickle names storages that are not there."""
    torch.save(_as_bin(directory), directory / "pytorch_model.bin")
    source = directory / "pytorch_model.bin"
    kept = directory / "kept.zip"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(kept, "w") as new:
        for item in old.infolist():
            if "/data/" not in item.filename:
                new.writestr(item, old.read(item))
    kept.replace(source)


def _index(weight_map: Any, *, name: str = "model.safetensors.index.json") -> Callable[[Path], None]:
    """No weights but a shard index holding ``weight_map`` (or these bytes)."""
    def make(directory: Path) -> None:
        for single in ("model.safetensors", "pytorch_model.bin"):
            (directory / single).unlink(missing_ok=True)
        raw = weight_map if isinstance(weight_map, bytes) else json.dumps({"weight_map": weight_map}).encode()
        (directory / name).write_bytes(raw)
    return make


def _index_with(change: Callable[[dict[str, str]], Any]) -> Callable[[Path], None]:
    """A real shard index, its weight_map changed by ``change``."""
    def make(directory: Path) -> None:
        from xcli_models.loading import read_safetensors, write_weights

        state = {k: v.clone() for k, v in read_safetensors(directory / "model.safetensors").items()}
        (directory / "model.safetensors").unlink()
        write_weights(state, directory, max_shard_size="40kB")
        index = json.loads((directory / "model.safetensors.index.json").read_text())
        index["weight_map"] = change(index["weight_map"])
        (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return make


def _first_to(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    def change(weight_map: dict[str, str]) -> dict[str, str]:
        first = sorted(weight_map)[0]
        return {**weight_map, first: name}
    return change


def _shard_replaced(how: str) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        _index_with(lambda m: m)(directory)
        shard = sorted(directory.glob("model-*.safetensors"))[0]
        _replace(shard.name, how)(directory)
    return make


def _truncate_last_shard(directory: Path) -> None:
    _truncate(sorted(directory.glob("model-*.safetensors"))[-1].name, 0.5)(directory)


def _foreign_tensors(directory: Path) -> None:
    from safetensors.torch import save_file

    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(4, 8)}, str(directory / "model.safetensors"))


def _tensors_changed(change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        from safetensors.torch import save_file
        from xcli_models.loading import read_safetensors

        state = {k: v.clone() for k, v in read_safetensors(directory / "model.safetensors").items()}
        save_file(change(state), str(directory / "model.safetensors"))
    return make


def _without(fragment: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    return lambda state: {k: v for k, v in state.items() if fragment not in k}


def _reshaped(fragment: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    return lambda state: {k: (torch.zeros(3, 5) if fragment in k else v) for k, v in state.items()}


def _empty(directory: Path) -> None:
    shutil.rmtree(directory)
    directory.mkdir()


def _keep_only(*names: str) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        for entry in directory.iterdir():
            if entry.name not in names:
                entry.unlink()
    return make


def _both(*makes: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        for step in makes:
            step(directory)
    return make


# ------------------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One hostile checkpoint: the valid ``family`` checkpoint broken by ``make``."""

    name: str
    family: str
    make: Callable[[Path], None]
    #: exit statuses a command ("info", "model", "convert") may end with, where not 1 or 2 (info
    #: describes without loading the weights into a model, so a checkpoint whose tensors do not
    #: fit its config, or one without weights, is described with exit 0)
    allowed: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def exits(self, command: str) -> tuple[int, ...]:
        return self.allowed.get(command, (1, 2))


def _value_cases() -> list[Case]:
    """Absurd and mistyped values for every kind of numeric field, in every family."""
    cases = []
    kinds = {"huge": 10**12, "negative": -8, "float": 8.5, "float NaN": float("nan"), "string": "8", "bool": True,
             "null": None, "list": [8], "object": {"value": 8}}
    for family in FAMILIES:
        hidden, layers, heads, positions = FIELDS[family]
        for kind, value in kinds.items():
            cases.append(Case(f"{family} {hidden} {kind}", family, _edit_config(**{hidden: value})))
        for kind in ("huge", "negative", "string", "float"):
            value = 10**6 if kind == "huge" else kinds[kind]
            cases.append(Case(f"{family} {layers} {kind}", family, _edit_config(**{layers: value})))
        cases.append(Case(f"{family} vocab_size 0", family, _edit_config(vocab_size=0)))
        cases.append(Case(f"{family} vocab_size beyond memory", family, _edit_config(vocab_size=10**13)))
        cases.append(Case(f"{family} {heads} does not divide {hidden}", family, _edit_config(**{heads: 3})))
        if positions:
            cases.append(Case(f"{family} {positions} negative", family, _edit_config(**{positions: -1})))
        cases.append(Case(f"{family} num_labels huge", family, _edit_config(num_labels=10**12)))
        cases.append(Case(f"{family} dropout 5", family, _edit_config(dropout=5)))
    return cases


def _config_cases() -> list[Case]:
    return [
        Case("config.json not JSON", "xlnet", _config_text(b"{model_type: xlnet")),
        Case("config.json empty", "xlnet", _config_text(b"")),
        Case("config.json a JSON array", "xlnet", _config_text(b'["xlnet"]')),
        Case("config.json a JSON string", "xlnet", _config_text(b'"xlnet"')),
        Case("config.json invalid UTF-8", "xlnet", _config_text(b'{"model_type": "xl\xffnet"}')),
        Case("config.json nested 100000 deep", "xlnet",
             _config_text(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        Case("config.json a directory", "xlnet", _replace("config.json", "directory")),
        Case("config.json a link to /dev/zero", "xlnet", _replace("config.json", "device")),
        Case("config.json a link loop", "xlnet", _replace("config.json", "loop")),
        Case("config.json a dangling link", "xlnet", _replace("config.json", "dangling")),
        Case("config.json a named pipe", "xlnet", _replace("config.json", "pipe")),
        Case("config.json larger than 16 MiB", "xlnet", _huge_config),
        Case("config.json missing", "xlnet", lambda d: (d / "config.json").unlink()),
        Case("model_type unknown", "xlnet", _edit_config(model_type="bert")),
        Case("model_type missing", "xlnet", _drop_config_keys("model_type")),
        Case("model_type a list", "xlnet", _edit_config(model_type=["xlnet"])),
        Case("model_type an object", "mvp", _edit_config(model_type={"name": "mvp"})),
        Case("architectures a class xcli lacks", "xlnet", _edit_config(architectures=["XLNetForTimeTravel"])),
        Case("architectures another family's class", "mvp", _edit_config(architectures=["XLNetLMHeadModel"])),
        Case("architectures a string", "xlnet", _edit_config(architectures="XLNetForSequenceClassification")),
        Case("architectures a number", "mvp", _edit_config(architectures=7)),
        Case("architectures a list of objects", "xlm", _edit_config(architectures=[{"name": "XLMModel"}])),
        Case("id2label keys not ids", "xlnet", _edit_config(id2label={"neg": "0", "pos": "1"})),
        Case("id2label with a gap", "mvp", _edit_config(id2label={"0": "a", "5": "b"}, label2id={"a": 0, "b": 5})),
        Case("id2label a list", "xlm", _edit_config(id2label=["a", "b"])),
        Case("label2id values not ids", "xlnet", _edit_config(label2id={"LABEL_0": "zero", "LABEL_1": "one"})),
        Case("num_labels a string", "mvp", _edit_config(num_labels="2")),
        Case("a key named __class__", "xlnet", _edit_config(**{"__class__": "XLNetConfig"})),
        Case("a key naming a method", "mvp", _edit_config(to_dict=1)),
        Case("xlnet d_head disagrees", "xlnet", _edit_config(d_head=3)),
        Case("xlnet attn_type unknown", "xlnet", _edit_config(attn_type="sideways")),
        Case("xlnet ff_activation unknown", "xlnet", _edit_config(ff_activation="sparkle")),
        Case("xlnet ff_activation a list", "xlnet", _edit_config(ff_activation=["gelu"])),
        Case("xlnet summary_type attn", "xlnet", _edit_config(summary_type="attn")),
        Case("xlnet mem_len negative", "xlnet", _edit_config(mem_len=-1)),
        Case("xlm is_encoder false", "xlm", _edit_config(is_encoder=False)),
        Case("xlm asm without cutoffs", "xlm", _edit_config(asm=True, architectures=["XLMWithLMHeadModel"])),
        Case("xlm pad_index beyond the vocabulary", "xlm", _edit_config(pad_index=10**6)),
        Case("xlm n_langs 0", "xlm", _edit_config(n_langs=0)),
        Case("xlm layer_norm_eps infinite", "xlm", _edit_config(layer_norm_eps=float("inf"))),
        Case("xglm activation_function unknown", "xglm", _edit_config(activation_function="sparkle")),
        Case("xglm pad_token_id beyond the positions", "xglm", _edit_config(pad_token_id=10**6)),
        Case("mvp prompts beyond memory", "mvp",
             _edit_config(use_prompt=True, prompt_length=10**6, prompt_mid_dim=10**9)),
        Case("mvp use_prompt a string", "mvp", _edit_config(use_prompt="false")),
        Case("mvp eos_token_id negative", "mvp", _edit_config(eos_token_id=-2)),
        Case("prophetnet num_buckets 1", "prophetnet", _edit_config(num_buckets=1)),
        Case("prophetnet ngram 0", "prophetnet", _edit_config(ngram=0)),
        Case("prophetnet relative_max_distance below the exact buckets", "prophetnet",
             _edit_config(relative_max_distance=2)),
        Case("prophetnet num_hidden_layers set", "prophetnet", _edit_config(num_hidden_layers=2)),
    ]


_EMBEDDING = "transformer.word_embedding.weight"


def _weight_cases() -> list[Case]:
    info_describes = {"info": (0,)}
    return [
        Case("safetensors empty", "xlnet", _weights_bytes(b"")),
        Case("safetensors 7 bytes", "xlnet", _weights_bytes(b"\x05" * 7)),
        Case("safetensors truncated", "xlnet", _truncate("model.safetensors", 0.5)),
        Case("safetensors header cut", "xlnet", _truncate("model.safetensors", 0.0005)),
        Case("safetensors header length beyond the file", "xlnet", _safetensors_raw({}, length=10**9)),
        Case("safetensors header length 2**63", "xlnet", _safetensors_raw(b"{}", length=2**63)),
        Case("safetensors header not JSON", "xlnet", _safetensors_raw(b"{not json", bytes(16))),
        Case("safetensors header a list", "xlnet", _safetensors_raw(b"[1, 2]", bytes(16))),
        Case("safetensors header a number", "xlnet", _safetensors_raw(b"12345678", bytes(16))),
        Case("safetensors header invalid UTF-8", "xlnet", _safetensors_raw(b'{"\xff": 1}', bytes(16))),
        Case("safetensors header nested deep", "xlnet", _safetensors_raw(b"[" * 50_000 + b"]" * 50_000)),
        Case("safetensors header entry a list", "xlnet", _safetensors_raw({_EMBEDDING: [1, 2]}, bytes(16))),
        Case("safetensors dtype unknown", "xlnet", _header(dtype="F8_E9", shape=[4, 4], data_offsets=[0, 16])),
        Case("safetensors dtype a list", "xlnet", _header(dtype=["F32"], shape=[4, 4], data_offsets=[0, 64])),
        Case("safetensors dtype missing", "xlnet", _header(shape=[4, 4], data_offsets=[0, 64])),
        Case("safetensors shape negative", "xlnet", _header(dtype="F32", shape=[-4, -4], data_offsets=[0, 64])),
        Case("safetensors shape fractional", "xlnet", _header(dtype="F32", shape=[4.5, 4], data_offsets=[0, 64])),
        Case("safetensors shape strings", "xlnet", _header(dtype="F32", shape=["4", "4"], data_offsets=[0, 64])),
        Case("safetensors shape huge", "xlnet", _header(dtype="F32", shape=[2**40, 2**40], data_offsets=[0, 64])),
        Case("safetensors shape a number", "xlnet", _header(dtype="F32", shape=16, data_offsets=[0, 64])),
        Case("safetensors offsets huge", "xlnet", _header(dtype="F32", shape=[4, 4], data_offsets=[2**62, 2**62 + 64])),
        Case("safetensors offsets reversed", "xlnet", _header(dtype="F32", shape=[4, 4], data_offsets=[64, 0])),
        Case("safetensors offsets negative", "xlnet", _header(dtype="F32", shape=[4, 4], data_offsets=[-64, 0])),
        Case("safetensors offsets three", "xlnet", _header(dtype="F32", shape=[4, 4], data_offsets=[0, 32, 64])),
        Case("safetensors size lies", "xlnet", _header(dtype="F32", shape=[1000, 1000], data_offsets=[0, 64])),
        Case("safetensors ranges overlap", "xlnet", _safetensors_raw(
            {_EMBEDDING: {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
             "transformer.mask_emb": {"dtype": "F32", "shape": [8], "data_offsets": [16, 48]}}, bytes(48))),
        Case("safetensors a directory", "xlnet", _replace("model.safetensors", "directory")),
        Case("safetensors a link to /dev/zero", "xlnet", _replace("model.safetensors", "device")),
        Case("safetensors a link loop", "xlnet", _replace("model.safetensors", "loop")),
        Case("safetensors a dangling link", "xlnet", _replace("model.safetensors", "dangling")),
        Case("safetensors a named pipe", "xlnet", _replace("model.safetensors", "pipe")),
        Case("tensors of another model", "xlnet", _foreign_tensors, info_describes),
        Case("a base weight missing", "xlnet", _tensors_changed(_without("layer.0.ff")), info_describes),
        Case("weights of the wrong shape", "xlnet", _tensors_changed(_reshaped("mask_emb")), info_describes),
        Case("weights of the wrong shape (mvp)", "mvp", _edit_config(encoder_ffn_dim=24), info_describes),
        Case("weights of the wrong shape (xglm)", "xglm", _edit_config(ffn_dim=24), info_describes),
        Case("weights of the wrong shape (prophetnet)", "prophetnet", _edit_config(decoder_ffn_dim=24),
             info_describes),
        Case("weights of the wrong shape (xlm)", "xlm", _edit_config(n_langs=3), info_describes),
        Case("pickle calling os.system", "xlnet", _pickle("system")),
        Case("pickle calling eval", "xlnet", _pickle("eval")),
        Case("pickle calling open", "xlnet", _pickle("open")),
        Case("raw pickle calling os.system", "xlnet", _pickle("system", raw=True)),
        Case("raw pickle calling open", "xlnet", _pickle("open", raw=True)),
        Case("bin truncated zip", "xlnet", _bin_bytes(lambda data: data[: len(data) * 2 // 3])),
        Case("bin zip with its directory cut off", "xlnet", _bin_bytes(lambda data: data[:-30])),
        Case("bin garbage", "xlnet", _bin_bytes(lambda data: b"\x80\x02garbage" + bytes(100))),
        Case("bin zip without tensor data", "xlnet", _zip_without_data),
        Case("bin a list of tensors", "xlnet", _bin(lambda state: list(state.values()))),
        Case("bin a dict of numbers", "xlnet", _bin(lambda state: {k: 1 for k in state})),
        Case("bin a link to /dev/zero", "xlnet", _both(_bin(lambda s: s), _replace("pytorch_model.bin", "device"))),
        Case("bin a named pipe", "xlnet", _both(_bin(lambda s: s), _replace("pytorch_model.bin", "pipe"))),
    ]


def _index_cases() -> list[Case]:
    bin_index = "pytorch_model.bin.index.json"
    return [
        Case("shard index names a missing shard", "xlnet", _index({"w": "model-00001-of-00009.safetensors"})),
        Case("shard index points at ../../etc/passwd", "xlnet", _index_with(_first_to("../../etc/passwd"))),
        Case("shard index points at /etc/passwd", "xlnet", _index_with(_first_to("/etc/passwd"))),
        Case("shard index points at ..", "xlnet", _index_with(_first_to(".."))),
        Case("shard index points into a subfolder", "xlnet", _index_with(_first_to("sub/model.safetensors"))),
        Case("shard index points at config.json", "xlnet", _index_with(_first_to("config.json"))),
        Case("shard index names no file", "xlnet", _index({})),
        Case("shard index not JSON", "xlnet", _index(b"{weight_map")),
        Case("shard index a list", "xlnet", _index(b"[]")),
        Case("shard index weight_map a list", "xlnet", _index(["model.safetensors"])),
        Case("shard index weight_map numbers", "xlnet", _index({"w": 1})),
        Case("shard index a link to /dev/zero", "xlnet", _both(_index_with(lambda m: m),
                                                                _replace("model.safetensors.index.json", "device"))),
        Case("shard index larger than 16 MiB", "xlnet",
             _index(b'{"weight_map": {}, "pad": "' + b"x" * 17 * 2**20 + b'"}')),
        Case("shard a link to /dev/zero", "xlnet", _shard_replaced("device")),
        Case("shard a named pipe", "xlnet", _shard_replaced("pipe")),
        Case("shard truncated", "xlnet", _both(_index_with(lambda m: m), _truncate_last_shard)),
        Case("bin shard index points outside", "xlnet", _index({"w": "../pytorch_model.bin"}, name=bin_index)),
    ]


def _directory_cases() -> list[Case]:
    return [
        Case("empty directory", "xlnet", _empty),
        Case("tokenizer files only", "xlnet", _keep_only("spiece.model", "tokenizer_config.json")),
        Case("weights only", "xlnet", _keep_only("model.safetensors")),
        Case("no weights", "xlnet", lambda d: (d / "model.safetensors").unlink(), {"info": (0,)}),
        Case("no weights (mvp)", "mvp", lambda d: (d / "model.safetensors").unlink(), {"info": (0,)}),
    ]


def _tokenizer_cases() -> list[Case]:
    """Tokenizer files that are devices, loops or pipes: never read until memory runs out (convert,
    which needs no tokenizer, may succeed and leave such a file behind; info may describe the rest)."""
    files = {"xlnet": ("tokenizer_config.json",),
             "mvp": ("tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")}
    return [
        Case(f"{name} {how} ({family})", family, _replace(name, how), {"info": (0, 1, 2), "convert": (0, 1, 2)})
        for family, names in files.items() for name in names for how in ("device", "pipe", "loop")
    ]


def _quantized(mode: str, *breaks: Callable[[Path], None]) -> Callable[[Path], None]:
    """The valid checkpoint quantized (``convert --quantize``) in place, then broken by ``breaks``."""
    def make(directory: Path) -> None:
        from xcli_models.convert import convert_checkpoint

        made = directory.with_name(directory.name + "-quantized")
        convert_checkpoint(directory, made, quantize=mode, verify=False)
        shutil.rmtree(directory)
        made.rename(directory)
        for step in breaks:
            step(directory)
    return make


def _quantization(**changes: Any) -> Callable[[Path], None]:
    """config.json's quantization entry changed (a value None: the key removed)."""
    def make(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        entry = config["quantization"]
        for key, value in changes.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        (directory / "config.json").write_text(json.dumps(config))
    return make


def _first_quantized(change: Callable[[str, dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    """The tensors of the first quantized weight config.json names changed by ``change(name, state)``."""
    def make(directory: Path) -> None:
        from safetensors.torch import save_file
        from xcli_models.loading import read_safetensors

        name = sorted(json.loads((directory / "config.json").read_text())["quantization"]["modules"])[0]
        state = {k: v.clone() for k, v in read_safetensors(directory / "model.safetensors").items()}
        change(name, state)
        save_file(state, str(directory / "model.safetensors"))
    return make


def _quantized_cases() -> list[Case]:
    """Quantized checkpoints whose config entry or integer tensors are wrong, in a classifier (XLNet:
    per-head projections) and a generator (XGLM: weight-only int8)."""
    def drop(suffix: str) -> Callable[[str, dict[str, torch.Tensor]], None]:
        return lambda name, state: state.pop(name + suffix)

    def replace(suffix: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[str, dict], None]:
        return lambda name, state: state.__setitem__(name + suffix, make(state[name + suffix]))

    breaks: dict[str, Callable[[Path], None]] = {
        "a scale missing": _first_quantized(drop("_scale")),
        "a weight missing": _first_quantized(drop("")),
        "a scale of the wrong shape": _first_quantized(replace("_scale", lambda t: torch.ones(3))),
        "a scale of one value": _first_quantized(replace("_scale", lambda t: t[:1].clone())),
        "a scale in float16": _first_quantized(replace("_scale", lambda t: t.half())),
        "a scale that is NaN": _first_quantized(replace("_scale", lambda t: torch.full_like(t, float("nan")))),
        "a weight in float32": _first_quantized(replace("", lambda t: t.float())),
        "a weight in uint8": _first_quantized(replace("", lambda t: t.view(torch.uint8))),
        "a weight transposed": _first_quantized(replace("", lambda t: torch.zeros(t.shape[1], t.shape[0] + 1,
                                                                              dtype=t.dtype))),
        "bits 3": _quantization(bits=3),
        "bits 16": _quantization(bits=16),
        "bits a string": _quantization(bits="8"),
        "bits true": _quantization(bits=True),
        "bits missing": _quantization(bits=None),
        "group_size 32": _quantization(group_size=32),
        "method another library's": _quantization(method="gptq"),
        "version 3": _quantization(version=3),
        "version 2.0": _quantization(version=2.0),
        "version 1 over blocked weights": _quantization(version=1),
        "modules a list": _quantization(modules=["lm_head.weight"]),
        "modules naming an embedding": _quantization(modules={"transformer.word_embedding.weight": 8,
                                                              "model.embed_tokens.weight": 8}),
        "modules claiming int4 in an int8 checkpoint": _modules(lambda modules: {k: 4 for k in modules}),
        "modules with bits a string": _modules(lambda modules: {k: "8" for k in modules}),
        "modules leaving one out": _modules(lambda modules: dict(sorted(modules.items())[1:])),
        "the entry a string": _edit_config(quantization="int8"),
    }
    cases = [Case(f"{family} quantized: {name}", family, _quantized("int8", make))
             for family in ("xlnet", "xglm") for name, make in breaks.items()]
    # (these tiny shapes are ones the int4 kernel cannot take: an int4 checkpoint of them holds int8 weights)
    cases.append(Case("xglm quantized int4: a weight claimed int4 that the kernel cannot take", "xglm",
                      _quantized("int4", _modules(lambda modules: {k: 4 for k in modules}))))
    return cases


def _modules(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def make(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        config["quantization"]["modules"] = change(config["quantization"]["modules"])
        (directory / "config.json").write_text(json.dumps(config))
    return make


CASES: list[Case] = [
    *_value_cases(), *_config_cases(), *_weight_cases(), *_index_cases(), *_directory_cases(), *_tokenizer_cases(),
    *_quantized_cases(),
]


def write(case: Case, directory: Path, valid: dict[str, Path]) -> Path:
    """Write ``case`` into ``directory`` from the valid checkpoints ``valid`` (family -> directory)."""
    shutil.copytree(valid[case.family], directory)
    case.make(directory)
    return directory
