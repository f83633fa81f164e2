"""The options commands share, each written once: ``def cmd(model: Model = None, ...)``.

A command module imports what it needs from here; its function signature is then
its whole command line. Only typer and the standard library are imported here.
"""

from __future__ import annotations

import keyword
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def choices(name: str, *values: str) -> Any:
    """A ``str`` Enum of these values, for an option that takes one of them: each member is named
    as its value, with ``_`` for ``-`` and after a keyword (``OnErrorName.continue_``)."""
    members = {}
    for value in values:
        member = value.replace("-", "_")
        members[member + "_" if keyword.iskeyword(member) else member] = value
    return Enum(name, members, type=str, module=sys._getframe(1).f_globals["__name__"])


InputFormatName = choices("InputFormatName", "auto", "jsonl", "text", "tsv")
OutputFormatName = choices("OutputFormatName", "jsonl", "text", "tsv")
OnErrorName = choices("OnErrorName", "continue", "stop")
DeviceName = choices("DeviceName", "auto", "cpu", "cuda")
DtypeName = choices("DtypeName", "float32", "bfloat16", "float16")
QuantizeName = choices("QuantizeName", "int8", "int4")


#: the model commands' --dtype: a dtype, or auto (the fast one on this machine)
RunDtypeName = choices("RunDtypeName", *(member.value for member in DtypeName), "auto")


# ----------------------------------------------------------------- input
Texts = Annotated[
    Optional[list[str]],
    typer.Argument(
        metavar="TEXT",
        help="Texts to process, one record each. Without them, records come from --input or stdin.",
        show_default=False,
    ),
]
Input = Annotated[
    Optional[list[str]],
    typer.Option(
        "--input",
        "-i",
        metavar="PATH",
        help="Read records from PATH ('-' is stdin); repeat it or use a glob ('data/*.jsonl').",
        show_default=False,
    ),
]
InputFormat = Annotated[
    InputFormatName,
    typer.Option(
        "--input-format",
        case_sensitive=False,
        help="Input format; auto: JSONL when the first non-blank line starts with '{', else one text per line.",
    ),
]
Field = Annotated[
    str,
    typer.Option("--field", metavar="NAME", help="The record field that holds the text."),
]

# ---------------------------------------------------------------- output
Output = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Write to PATH instead of stdout (whole or not at all; see --force).",
        dir_okay=False,
        show_default=False,
    ),
]
OutputFormat = Annotated[
    OutputFormatName,
    typer.Option(
        "--output-format",
        "-O",
        case_sensitive=False,
        help="jsonl: one object per record; text: the main result only; tsv: a header row, then one row per record.",
    ),
]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite --output if it exists.")]
Keep = Annotated[
    Optional[str],
    typer.Option(
        "--keep",
        metavar="F1,F2",
        help="Copy these input fields into each output record ('id' always is).",
        show_default=False,
    ),
]
OnError = Annotated[
    OnErrorName,
    typer.Option(
        "--on-error",
        case_sensitive=False,
        help="On a bad record: continue (write an error line for it, exit 4 at the end) or stop (exit 1).",
    ),
]
Shard = Annotated[
    Optional[str],
    typer.Option(
        "--shard",
        metavar="K/N|auto",
        help="Process only every Nth record from the Kth (0-based index i with i mod N = K), each output line "
        "carrying its record number ('xcli merge' puts the N outputs back into input order); auto: K/N from "
        "torchrun (RANK, WORLD_SIZE) or Slurm (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT; SLURM_PROCID, "
        "SLURM_NTASKS).",
        show_default=False,
    ),
]

# ------------------------------------------------------------- reporting
# plain values: each command hands them to ``console.configure`` first thing (no parse-time side effect)
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error (also: XCLI_DEBUG=1).")]
NoServer = Annotated[
    bool,
    typer.Option("--no-server", help="Run the model in this process even when an `xcli serve` is there "
                 "(XCLI_SERVER, or the default socket)."),
]

# ----------------------------------------------------------------- model
Model = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        envvar="XCLI_MODEL",
        show_envvar=True,
        help="Checkpoint directory, Hugging Face id (org/name) in the local cache, or built-in name.",
        show_default=False,
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Records per batch.")]
MaxLength = Annotated[
    Optional[int],
    typer.Option(
        "--max-length",
        min=1,
        metavar="N",
        help="Truncate inputs to N tokens, special tokens included (a warning names truncated records). Model "
        "commands: at most what the model's positions take (more is a usage error), by default that limit "
        "(512 for XLNet).",
        show_default=False,
    ),
]
Device = Annotated[DeviceName, typer.Option("--device", case_sensitive=False, help="Where to run the model.")]
Dtype = Annotated[
    RunDtypeName,
    typer.Option("--dtype", case_sensitive=False, help="Weight and compute dtype. auto: bfloat16 where it is fast "
                 "(a CPU with AVX-512 BF16 or AMX, see xcli info --processor; a CUDA device with bfloat16), else "
                 "float32; its numbers differ from float32's (the README measures by how much)."),
]
Quantize = Annotated[
    Optional[QuantizeName],
    typer.Option("--quantize", case_sensitive=False, help="int8: every projection's product in 8-bit integers "
                 "(per-channel weight and per-row input scales; oneDNN, fast with AMX or VNNI): 3-4x faster "
                 "products on batches, numbers within ~1% (the README measures the accuracy it costs); generate "
                 "keeps int8 weights times bfloat16 inputs. int4 (generate, a CPU with fast bfloat16): 4-bit "
                 "weights in groups of 64, coarser. CPU only. A checkpoint written by convert --quantize runs in its "
                 "own mode without this option.", show_default=False),
]
Threads = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, metavar="N", help="CPU threads for torch.", show_default=False),
]
Lang = Annotated[
    Optional[str],
    typer.Option(
        "--lang",
        metavar="CODE",
        help="Language of the texts, for XLM models with language embeddings (en, fr, de ...).",
        show_default=False,
    ),
]
