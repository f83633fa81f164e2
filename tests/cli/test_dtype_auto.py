"""``--dtype auto`` (bfloat16 where the processor computes it fast, else float32) and ``xcli info --processor``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from xcli.app import app
from xcli_models import hardware
from xcli_models.tasks.common import fast_dtype

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""


def with_flags(monkeypatch: pytest.MonkeyPatch, *flags: str) -> None:
    monkeypatch.setattr(hardware, "_cpu", lambda: ("Test CPU", frozenset(flags)))


def test_cpuinfo_is_read_from_the_first_processor() -> None:
    name, flags = hardware.parse_cpuinfo(CPUINFO)
    assert name == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx512_bf16", "amx_bf16", "amx_int8"} <= flags and "fpu" in flags
    assert hardware.parse_cpuinfo("") == ("", set())


@pytest.mark.parametrize(("flags", "fast"), [
    (("avx2", "avx512f", "avx512_bf16"), True), (("avx2", "amx_tile", "amx_bf16"), True),
    (("avx2", "avx512f", "avx512_vnni"), False), ((), False),
])
def test_auto_is_bfloat16_only_where_it_is_fast(monkeypatch: pytest.MonkeyPatch, flags: tuple, fast: bool) -> None:
    with_flags(monkeypatch, *flags)
    assert hardware.fast_bfloat16() is fast
    assert fast_dtype(torch.device("cpu")) == ("bfloat16" if fast and torch.backends.mkldnn.is_available()
                                               else "float32")
    described = hardware.processor()
    assert described["bfloat16"] == ("fast" if fast else "slow" if flags else "unknown")
    assert described["instructions"] == [f for f in hardware.INSTRUCTIONS if f in flags]


def run(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--no-server", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("fast", [True, False])
def test_classify_dtype_auto_runs_as_the_dtype_it_picks(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    with_flags(monkeypatch, *(("amx_bf16",) if fast else ("avx2",)))
    texts = ["a gripping, funny film", "a dull, lifeless mess", "it is"]
    picked = "bfloat16" if fast else "float32"
    assert run("classify", "-q", "--dtype", "auto", *texts) == run("classify", "-q", "--dtype", picked, *texts)


def test_info_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    with_flags(monkeypatch, "avx2", "avx512f", "amx_bf16")
    result = runner.invoke(app, ["info", "--processor"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "cpu": "Test CPU", "cores": hardware.os.cpu_count(), "instructions": ["avx2", "avx512f", "amx_bf16"],
        "bfloat16": "fast", "int8_kernels": "torch's kernels (this processor lacks avx512bw, avx512vl, fma)"}
    text = runner.invoke(app, ["info", "--processor", "-O", "text"]).stdout
    assert "bfloat16      fast (--dtype auto picks it)" in text
    assert "int8 kernels  torch's kernels (this processor lacks avx512bw, avx512vl, fma)" in text
    with_flags(monkeypatch)
    assert json.loads(runner.invoke(app, ["info", "--processor"]).stdout)["bfloat16"] == "unknown"


def test_evaluate_takes_dtype(tmp_path: Any) -> None:
    records = tmp_path / "r.jsonl"
    records.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in [
        ("a gripping, funny film", "positive"), ("a dull, lifeless mess", "negative"),
        ("the best film of the year", "positive"), ("tedious and far too long", "negative")]))
    f32 = json.loads(run("evaluate", "-q", "-m", "xcli/sentiment", "-i", str(records)))
    bf16 = json.loads(run("evaluate", "-q", "-m", "xcli/sentiment", "-i", str(records), "--dtype", "bfloat16"))
    assert f32["accuracy"] == bf16["accuracy"] == 1.0
    assert abs(bf16["loss"] - f32["loss"]) < 0.01 and bf16["loss"] != f32["loss"]  # computed in bfloat16
