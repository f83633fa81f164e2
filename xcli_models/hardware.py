"""What the processor can do fast, read without torch (``xcli info`` stays light).

On Linux the CPU's instruction sets come from ``/proc/cpuinfo``: bfloat16 matrix products are fast
where the CPU has AVX-512 BF16 or AMX (oneDNN uses them; measured on a 2-core Xeon with AMX, torch
2.13: a 2048x768 by 768x768 product 3.7x float32's speed), and slow elsewhere (emulated). Elsewhere
(macOS, Windows) nothing is known, and ``--dtype auto`` keeps float32.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

#: the instruction sets worth naming for inference, in the order shown
INSTRUCTIONS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
#: any of these makes bfloat16 products fast
BFLOAT16 = ("avx512_bf16", "amx_bf16")


def processor_vendor() -> str:
    """``"intel"``, ``"amd"`` or ``"other"``, from the processor's model name."""
    name = _cpu()[0].lower()
    return "intel" if "intel" in name else "amd" if "amd" in name else "other"


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The first processor's model name and instruction flags in ``/proc/cpuinfo``'s text."""
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


@lru_cache(maxsize=1)
def _cpu() -> tuple[str, frozenset[str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            name, flags = parse_cpuinfo(handle.read())
    except OSError:
        name, flags = "", set()
    return name or platform.processor() or platform.machine(), frozenset(flags)


def processor() -> dict[str, Any]:
    """``{"cpu", "cores", "instructions": [...], "bfloat16": "fast"|"slow"|"unknown"}``."""
    name, flags = _cpu()
    known = bool(flags)
    return {
        "cpu": name,
        "cores": os.cpu_count(),
        "instructions": [flag for flag in INSTRUCTIONS if flag in flags],
        "bfloat16": ("fast" if fast_bfloat16() else "slow") if known else "unknown",
    }


def fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products in hardware (AVX-512 BF16 or AMX)."""
    return any(flag in _cpu()[1] for flag in BFLOAT16)
