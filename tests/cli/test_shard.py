"""``--shard K/N|auto`` on every record command and ``xcli merge``: K/N from the command line or a
launcher's environment; each shard reads the whole input and parses and processes its own records;
its lines carry their record numbers; merging the shards' outputs gives, byte for byte, what one
unsharded run writes (also run as the README shows it, over GNU parallel or xargs)."""

from __future__ import annotations

import importlib.util
import io as stdio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import shared_path
from test_cli_support import fake_model, xcli_env  # noqa: F401 - fixture
from xcli import io
from xcli.app import app
from xcli.errors import UsageError
from xcli.io import Record, RecordWriter, Shard, parse_shard, read_records

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
RECORD_COMMANDS = ["tokenize", "fill-mask", "classify", "qa", "generate", "score"]


def run(*args: str, input: str | bytes | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


# ------------------------------------------------------------ K/N and auto
def test_k_of_n_takes_every_nth_record() -> None:
    shard = parse_shard(" 1/3 ")
    assert shard == Shard(1, 3) and str(shard) == "1/3"
    assert [i for i in range(8) if shard.takes(i)] == [1, 4, 7]
    assert [Shard(k, 3).share(7) for k in range(3)] == [3, 2, 2]
    assert parse_shard("0/1") == Shard(0, 1) and parse_shard(None) is None


@pytest.mark.parametrize("value", ["", "1", "a/2", "1/b", "2/2", "3/2", "-1/2", "0/0", "0/-2", "1/2/3", "1.0/2"])
def test_a_k_n_that_is_no_shard_is_a_one_line_usage_error(value: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_shard(value, environ={})
    assert str(error.value).startswith(f"--shard {value}:") and "\n" not in str(error.value)


@pytest.mark.parametrize(("environ", "shard"), [
    ({"RANK": "3", "WORLD_SIZE": "4"}, Shard(3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "5"}, Shard(2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, Shard(3, 4)),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, Shard(1, 2)),
    # torchrun first (it may run inside a Slurm job), then the array, then the step's tasks
    ({"RANK": "0", "WORLD_SIZE": "2", "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, Shard(0, 2)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
     Shard(1, 3)),
    ({"RANK": "1", "SLURM_PROCID": "2", "SLURM_NTASKS": "3"}, Shard(2, 3)),  # RANK alone is no pair
])
def test_auto_takes_k_n_from_the_launcher(environ: dict[str, str], shard: Shard) -> None:
    assert parse_shard("auto", environ=environ) == shard


def test_auto_without_a_launcher_names_what_it_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as error:
        parse_shard("auto", environ={"LOCAL_RANK": "0"})
    message = str(error.value)
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_PROCID",
                 "SLURM_NTASKS", "--shard K/N"):
        assert name in message
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_PROCID",
                 "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert run("tokenize", "--shard", "auto", "a").exit_code == 2  # the process's own environment
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parse_shard("auto") == Shard(1, 2)


@pytest.mark.parametrize(("environ", "said"), [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "not integers"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "K must be from 0 to N-1"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "N must be at least 1"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID=5"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, "not a regular"),
])
def test_auto_with_values_that_are_no_shard_says_which(environ: dict[str, str], said: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_shard("auto", environ=environ)
    assert str(error.value).startswith("--shard auto (") and said in str(error.value)


# ------------------------------------------------------------ what a shard reads
def test_a_shard_takes_its_records_by_their_index_in_the_whole_stream(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tsv", tmp_path / "b.txt"
    first.write_text("text\tid\nr0\t0\n\nr1\t1\nr2\t2\n", encoding="utf-8")  # header and blank line not counted
    second.write_text("r3\n\n\nr4\nr5\nr6\n", encoding="utf-8")
    inputs = [str(first), str(second)]
    everything = [(r.index, r.get("text")) for r in read_records(inputs=inputs, input_format="auto")]
    assert everything[:3] == [(0, "text\tid"), (1, "r0\t0"), (2, "r1\t1")]  # auto: one text per line
    tsv = read_records(inputs=[str(first)], input_format="tsv", shard=Shard(1, 2))
    assert [(r.index, r.data) for r in tsv] == [(1, {"text": "r1", "id": "1"})]
    for k in range(3):
        records = list(read_records(inputs=inputs, shard=Shard(k, 3)))
        assert [(r.index, r.get("text")) for r in records] == everything[k::3]
    texts = read_records(["a", "b", "c", "d", "e"], shard=Shard(1, 2))
    assert texts.total == 2 and [(r.index, r.where) for r in texts] == [(1, "argument 2"), (3, "argument 4")]


def test_a_shard_parses_only_its_own_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(9)), encoding="utf-8")
    parsed: list[str] = []
    real = io.sources.parse_json
    monkeypatch.setattr(io.sources, "parse_json", lambda raw, text: parsed.append(text) or real(raw, text))
    records = list(read_records(inputs=[str(data)], shard=Shard(2, 3)))
    assert [r.get("text") for r in records] == ["t2", "t5", "t8"] and len(parsed) == 3


def test_an_empty_object_keeps_its_record_number_and_merges_back() -> None:
    sink = stdio.BytesIO()
    writer = RecordWriter(sink, shard=Shard(1, 2))
    writer.write(Record(3, {}, "argument 4"), {})
    writer.write(Record(1, {"id": 7}, "argument 2"), {"n": 1})
    writer.close()
    assert sink.getvalue() == b'{"record": 1, "id": 7, "n": 1}\n{"record": 3}\n'
    out = io.LineWriter(stdio.BytesIO())
    io.merge_shards([("s1", stdio.BytesIO(sink.getvalue())), ("s0", stdio.BytesIO(b'{"record": 0, "n": 0}\n'
                                                                                     b'{"record": 2, "n": 2}\n'))], out)
    out.close()
    assert out.sink.getvalue() == b'{"n": 0}\n{"id": 7, "n": 1}\n{"n": 2}\n{}\n'


# ------------------------------------------------------------ tokenize end to end
def write_inputs(folder: Path) -> list[str]:
    """Two input files: JSONL records with ids (the first three good, so each of up to 3 shards
    starts with an id, as TSV headers need), blank lines, and bad records of several kinds."""
    first, second = folder / "part-a.jsonl", folder / "part-b.jsonl"
    good = [{"id": i, "text": text} for i, text in enumerate(["hello world", "the cat", "a b c", "world"])]
    lines = [json.dumps(r) for r in good[:3]] + ["", '{"id": 9, "text": "FAIL here"}', "{not json", "[1, 2]"]
    first.write_text("\n".join(lines) + "\n", encoding="utf-8")
    second.write_bytes(b'{"id": 10, "text": 5}\n\n' + json.dumps(good[3]).encode() + b'\n{"id": 11, "text": "\xff"}\n'
                       + b"".join(json.dumps({"id": 20 + i, "text": "hello " * i}).encode() + b"\n" for i in range(7)))
    return [str(first), str(second)]


def merged(tmp_path: Path, args: list[str], n: int, *, merge_args: tuple[str, ...] = ()) -> tuple[Any, list[Path]]:
    """Run ``args`` as N shards (each to its own file), then merge the files, last shard first."""
    parts = [tmp_path / f"shard{k}-of-{n}" for k in range(n)]
    for k, part in enumerate(parts):
        done = run(*args, "--shard", f"{k}/{n}", "-o", str(part), "--force")
        assert done.exit_code in (0, 4), done.stderr
    return run("merge", *map(str, reversed(parts)), *merge_args), parts


@pytest.mark.parametrize("fmt", ["jsonl", "text", "tsv"])
@pytest.mark.parametrize("n", [2, 3])
def test_shards_merge_to_the_bytes_of_one_unsharded_run(fake_model: Path, tmp_path: Path, fmt: str, n: int) -> None:
    args = ["tokenize", "-m", str(fake_model), "-O", fmt, "--keep", "text", "--quiet"]
    for path in write_inputs(tmp_path):
        args += ["-i", path]
    whole = run(*args)
    assert whole.exit_code == 4 and whole.stdout_bytes.count(b"\n") == 16 + (fmt == "tsv")
    done, parts = merged(tmp_path, args, n)
    assert done.exit_code == 0, done.stderr
    assert done.stdout_bytes == whole.stdout_bytes
    assert done.stderr == ""


def test_each_line_of_a_shard_carries_its_record_number(fake_model: Path, tmp_path: Path) -> None:
    texts = ["hello", "FAIL", "the cat", "world"]
    jsonl = run("tokenize", "-m", str(fake_model), "--fields", "ids", "--shard", "1/2", *texts)
    assert jsonl.exit_code == 4
    assert jsonl.stdout.splitlines()[0].startswith('{"record": 1, "error": {"type": "tokenizer_error"')
    assert jsonl.stdout.splitlines()[1] == '{"record": 3, "ids": [1, 5, 2]}'
    text = run("tokenize", "-m", str(fake_model), "-O", "text", "--fields", "ids", "--shard", "1/2", *texts)
    assert text.stdout == "1\t\n3\t1 5 2\n"
    tsv = run("tokenize", "-m", str(fake_model), "-O", "tsv", "--fields", "ids", "--shard", "0/2", *texts)
    assert tsv.stdout == "record\tids\terror\n0\t1 4 2\t\n2\t1 6 7 2\t\n"
    empty = run("tokenize", "-m", str(fake_model), "--shard", "5/6", *texts)
    assert empty.exit_code == 0 and empty.stdout == ""


def test_a_failed_first_record_and_text_input_shard_and_merge(fake_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("FAIL first\n\nhello\nthe cat\n\nworld\nFAIL again\nhello world\n", encoding="utf-8")
    for fmt in ("jsonl", "text"):
        args = ["tokenize", "-m", str(fake_model), "-i", str(data), "-O", fmt, "--quiet"]
        whole = run(*args)
        for n in (2, 4):
            done, _ = merged(tmp_path, args, n)
            assert done.exit_code == 0 and done.stdout_bytes == whole.stdout_bytes, (fmt, n)


# ------------------------------------------------------------ merge
def shard_files(tmp_path: Path, fake_model: Path, fmt: str = "jsonl", n: int = 2) -> list[Path]:
    parts = [tmp_path / f"p{k}.{fmt}" for k in range(n)]
    for k, part in enumerate(parts):
        run("tokenize", "-m", str(fake_model), "-O", fmt, "--fields", "ids", "--shard", f"{k}/{n}", "-o", str(part),
            "hello", "the cat", "world", "hello world", "cat")
    return parts


def test_keep_record_keeps_the_numbers(fake_model: Path, tmp_path: Path) -> None:
    parts = shard_files(tmp_path, fake_model)
    done = run("merge", "--keep-record", *map(str, parts))
    assert [json.loads(line)["record"] for line in done.stdout.splitlines()] == [0, 1, 2, 3, 4]
    assert done.stdout.splitlines()[1] == '{"record": 1, "ids": [1, 6, 7, 2]}'
    parts = shard_files(tmp_path, fake_model, "tsv")
    done = run("merge", "--keep-record", *map(str, parts))
    assert done.stdout.splitlines()[:3] == ["record\tids\terror", "0\t1 4 2\t", "1\t1 6 7 2\t"]
    assert run("merge", *map(str, parts)).stdout.splitlines()[:2] == ["ids\terror", "1 4 2\t"]


def test_merge_reads_stdin_and_writes_a_file_only_with_force(fake_model: Path, tmp_path: Path) -> None:
    parts = shard_files(tmp_path, fake_model)
    whole = run("tokenize", "-m", str(fake_model), "--fields", "ids", "hello", "the cat", "world", "hello world", "cat")
    target = tmp_path / "all.jsonl"
    done = run("merge", str(parts[0]), "-", "-o", str(target), input=parts[1].read_bytes())
    assert done.exit_code == 0 and done.stdout == "" and target.read_bytes() == whole.stdout_bytes
    again = run("merge", *map(str, parts), "-o", str(target))
    assert again.exit_code == 2 and "--force" in again.stderr
    target.write_text("old\n")
    assert run("merge", *map(str, parts), "-o", str(target), "--force").exit_code == 0
    assert target.read_bytes() == whole.stdout_bytes
    assert run("merge", str(parts[0]), str(parts[0])).exit_code == 2  # given twice
    missing = run("merge", str(parts[0]), str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "nope.jsonl: no such file" in missing.stderr
    assert run("merge").exit_code == 2


def test_empty_shards_and_files_merge(fake_model: Path, tmp_path: Path) -> None:
    parts = shard_files(tmp_path, fake_model, "tsv", n=7)  # shards 5 and 6 get no record
    assert parts[6].read_bytes() == b""
    whole = run("tokenize", "-m", str(fake_model), "-O", "tsv", "--fields", "ids", "hello", "the cat", "world",
                "hello world", "cat")
    assert run("merge", *map(str, parts)).stdout_bytes == whole.stdout_bytes
    assert run("merge", str(parts[6])).stdout_bytes == b""


@pytest.mark.parametrize(("lines", "said"), [
    ({"a": '{"record": 0, "n": 0}\n{"n": 1}\n'}, "a line 2: no record number"),
    ({"a": 'hello\n'}, "a line 1: no record number"),
    ({"a": '{"record": 0, "n": 0}\n{"record": 2, "n": 2}\n{"record": 1, "n": 1}\n'},
     "a line 3: record 1 after record 2"),
    ({"a": '{"record": 0, "n": 0}\n{"record": 2, "n": 2}\n', "b": '{"record": 1}\n{"record": 2}\n'},
     "record 2 is in both a (line 2) and b (line 2)"),
    ({"a": '{"record": 0, "n": 0}\n', "b": "1\ttext\n"}, "a holds jsonl lines but b text"),
    ({"a": "record\tid\terror\n0\t1\t\n", "b": "record\terror\n1\t\n"}, "b: its TSV header differs from a's"),
])
def test_merge_errors_name_the_file_and_line_and_keep_what_was_written(
    tmp_path: Path, lines: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in lines.items():
        Path(name).write_text(text, encoding="utf-8")
    done = run("merge", *lines, "-o", "out.jsonl")
    assert done.exit_code == 1 and said in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) <= 2  # the error, and where the lines written so far are
    assert not Path("out.jsonl").exists()
    written = Path("out.jsonl.partial")
    if "after record" in said or "in both" in said:
        assert written.read_text() == '{"n": 0}\n' + ('{}\n' if "in both" in said else "") + '{"n": 2}\n'
    on_stdout = run("merge", *lines)
    assert on_stdout.exit_code == 1 and on_stdout.stdout == (written.read_text() if written.exists() else "")


def test_missing_records_are_named_with_exit_4(tmp_path: Path) -> None:
    lines = "".join(f'{{"record": {i}, "n": {i}}}\n' for i in (1, 2, 5, 9, 10, 12, 20))
    (tmp_path / "a").write_text(lines, encoding="utf-8")
    target = tmp_path / "out.jsonl"
    done = run("merge", str(tmp_path / "a"), "-o", str(target))
    assert done.exit_code == 4
    assert "14 record(s) missing from the merge (0, 3, 4, 6, 7, ...): was a shard's output left out?" in done.stderr
    assert target.read_text().splitlines() == [f'{{"n": {i}}}' for i in (1, 2, 5, 9, 10, 12, 20)]


def test_merge_ends_quietly_when_stdout_closes(tmp_path: Path) -> None:
    part = tmp_path / "a"
    with part.open("w", encoding="utf-8") as handle:
        for i in range(60_000):
            handle.write(f'{{"record": {i}, "text": "{"x" * 80}"}}\n')
    merge = subprocess.Popen([sys.executable, "-m", "xcli", "merge", str(part)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=xcli_env())
    assert merge.stdout is not None and merge.stderr is not None
    assert merge.stdout.readline().startswith(b'{"text": "xxx')
    merge.stdout.close()
    assert merge.wait(timeout=120) == 141 and merge.stderr.read() == b""


# ------------------------------------------------------------ every record command
def test_every_record_command_takes_shard() -> None:
    for command in RECORD_COMMANDS:
        done = run(command, "--help")
        assert "--shard K/N|auto" in done.stdout, command
        refused = run(command, "--shard", "3/3", "-m", "nowhere", "some text")
        assert refused.exit_code == 2 and "--shard 3/3: K must be from 0 to N-1 (2)" in refused.stderr, command
    assert "--shard" not in run("evaluate", "--help").stdout


def test_generate_stream_does_not_number_lines() -> None:
    done = run("generate", "--stream", "--shard", "0/2", "ROMEO:")
    assert done.exit_code == 2 and "--stream" in done.stderr and "--shard" in done.stderr


@pytest.fixture(scope="module")
def tiny_qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MvpForQuestionAnswering checkpoint (examples/make_tiny_models.py)."""
    spec = importlib.util.spec_from_file_location("make_tiny_models", ROOT / "examples" / "make_tiny_models.py")
    assert spec is not None and spec.loader is not None
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    folder = tmp_path_factory.mktemp("tiny") / "mvp-tiny-qa"
    tiny.save(tiny.MvpForQuestionAnswering(tiny.MvpConfig(**tiny.MVP)), "mvp", folder)
    return folder


QA_RECORDS = "".join(json.dumps({"id": i, "question": q, "context": c}) + "\n" for i, (q, c) in enumerate([
    ("Who went?", "Ann went to Paris in May."), ("Where to?", "Bob flew to Rome."), ("When?", "It rained on Monday."),
    ("What?", "A cat sat."), ("Who?", "Carl and Dana met at noon."),
]))
MODEL_RUNS = {  # built-in models where the command has one (no -m)
    "classify": ["a gripping, funny film", "a dull mess", "fine", "the worst", "moving and wise"],
    "fill-mask": ["I have to <mask> to school.", "The <mask> is red.", "She <mask> home.", "A <mask> day."],
    "generate": ["ROMEO:", "JULIET:", "To be", "My lord"],
    "score": ["To be, or not to be", "My lord, I come", "xq zzv", "Good night"],
}


@pytest.mark.parametrize("command", [*MODEL_RUNS, "qa"])
def test_model_commands_shard_and_merge_to_one_run(command: str, tmp_path: Path, tiny_qa: Path) -> None:
    """One record per batch (-b 1): every run computes each record alone, so the bytes must agree."""
    args = [command, "--threads", "1", "-b", "1", "--quiet"]
    if command == "generate":
        args += ["--max-new-tokens", "6"]
    if command == "qa":
        args += ["-m", str(tiny_qa)]
        data = tmp_path / "qa.jsonl"
        data.write_text(QA_RECORDS, encoding="utf-8")
        args += ["-i", str(data)]
    else:
        args += MODEL_RUNS[command]
    whole = run(*args)
    assert whole.exit_code == 0, whole.stderr
    done, parts = merged(tmp_path, args, 2)
    assert json.loads(parts[1].read_text().splitlines()[0])["record"] == 1
    assert done.exit_code == 0 and done.stdout_bytes == whole.stdout_bytes


# ------------------------------------------------------------ many processes, as the README shows
def readme_commands() -> tuple[str, str]:
    """The README's GNU parallel run over 2 local processes, and its merge."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Many processes and machines", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and commands[0].startswith("parallel ") and commands[1].startswith("xcli merge ")
    return commands[0], commands[1]


def gnu_parallel() -> bool:
    if shutil.which("parallel") is None:
        return False
    version = subprocess.run(["parallel", "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return "GNU parallel" in version.stdout


def test_parallel_processes_give_the_bytes_of_one_run(tmp_path: Path) -> None:
    """The README's 2 processes of classify (the built-in model, 200 SST-2 sentences) and their
    merge; with the default batch size, so each record's batch differs between the runs."""
    rows = shared_path("datasets", "sst2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:201]
    (tmp_path / "sentences.txt").write_text("".join(row.split("\t")[0] + "\n" for row in rows), encoding="utf-8")
    shim = tmp_path / "bin" / "xcli"  # `xcli` runs this checkout with this python
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m xcli "$@"\n')
    shim.chmod(0o755)
    env = xcli_env(PATH=f"{shim.parent}:{xcli_env()['PATH']}", HOME=str(tmp_path))
    sharded, merge = readme_commands()
    if not gnu_parallel():  # the same two processes with xargs
        command = sharded.removeprefix("parallel ").rsplit(" ::: ", 1)[0]
        sharded = f"printf '0\\n1\\n' | xargs -P 2 -I{{}} {command}"
    for script in (sharded.replace("parallel ", "parallel --will-cite ", 1), merge):
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{script}\n{done.stderr}"
    output = merge.split(">")[-1].strip()
    one = subprocess.run([str(shim), "classify", "--threads", "1", "-i", "sentences.txt"], cwd=tmp_path, env=env,
                         capture_output=True, timeout=600)
    assert one.returncode == 0, one.stderr
    assert (tmp_path / output).read_bytes().count(b"\n") == 200
    assert (tmp_path / output).read_bytes() == one.stdout


# ------------------------------------------------------------ torchrun: a GPU per process
def test_cuda_under_torchrun_is_the_process_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from xcli_models.tasks import common

    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert common.pick_device("cuda") == torch.device("cuda", 1) and chosen == [1]
    assert common.pick_device("auto") == torch.device("cuda", 1)
    assert common.pick_device("cuda:0") == torch.device("cuda", 0) and common.pick_device("cpu").type == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(common.UnsupportedModel, match="LOCAL_RANK=2"):
        common.pick_device("cuda")
    monkeypatch.delenv("LOCAL_RANK")
    assert common.pick_device("cuda") == torch.device("cuda")
