"""xcli.io: readers, the ordered atomic writer and the batch driver, without a model."""

from __future__ import annotations

import io as stdio
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from xcli import io
from xcli.errors import OutputClosed, RecordError, RecordsFailed, StoppedOnError, UsageError


def lines_of(data: bytes, max_line: int = io.MAX_LINE_BYTES) -> list:
    return list(io.LineReader(stdio.BytesIO(data), max_line))


def fd_lines_of(tmp_path: Path, data: bytes, max_line: int = io.MAX_LINE_BYTES) -> list:
    file = tmp_path / "lines.bin"
    file.write_bytes(data)
    with open(file, "rb", buffering=0) as handle:
        return list(io.LineReader(handle, max_line))


def records_from(tmp_path: Path, data: bytes | str, fmt: str = "auto", field: str = "text", name: str = "in.txt"):
    file = tmp_path / name
    file.write_bytes(data.encode() if isinstance(data, str) else data)
    return list(io.read_records(inputs=[str(file)], input_format=fmt, field=field))


# ---------------------------------------------------------------------- lines
@pytest.mark.parametrize("reader", [lines_of, "fd"])
def test_lines_crlf_last_line_and_blank(reader, tmp_path: Path) -> None:
    data = b"a\r\nb\n\n  \nlast"
    got = lines_of(data) if reader is lines_of else fd_lines_of(tmp_path, data)
    assert got == [b"a", b"b", b"", b"  ", b"last"]


@pytest.mark.parametrize("reader", ["stream", "fd"])
def test_a_line_over_the_limit_is_dropped_and_reading_goes_on(reader, tmp_path: Path) -> None:
    data = b"short\n" + b"x" * 100_000 + b"\nafter\n"
    got = lines_of(data, 1000) if reader == "stream" else fd_lines_of(tmp_path, data, 1000)
    assert got == [b"short", io.TOO_LONG, b"after"]


def test_a_10_mb_line_is_read_whole(tmp_path: Path) -> None:
    text = "word " * (2 * 1024 * 1024)  # 10 MiB
    records = records_from(tmp_path, json.dumps({"id": 1, "text": text}) + "\n" + '{"id": 2, "text": "x"}\n')
    assert [r.id for r in records] == [1, 2]
    assert records[0].text() == text and records[0].error is None


def test_ready_tells_whether_a_line_is_waiting_in_a_pipe() -> None:
    read_end, write_end = os.pipe()
    try:
        with open(read_end, "rb", buffering=0) as handle:
            reader = io.LineReader(handle)
            lines = iter(reader)
            assert not reader.ready()
            os.write(write_end, b"one\n\ntwo\n")
            assert reader.ready()
            assert next(lines) == b"one"
            assert reader.ready()  # "two" is buffered (the blank line in between does not count)
            assert next(lines) == b""
            assert next(lines) == b"two"
            assert not reader.ready()
            os.write(write_end, b"thr")
            assert reader.ready()  # data is there, even if the line is not complete yet
            os.close(write_end)
            write_end = -1
            assert list(lines) == [b"thr"]
            assert reader.ready()
    finally:
        if write_end >= 0:
            os.close(write_end)


# -------------------------------------------------------------------- formats
def test_auto_detects_jsonl_and_skips_blank_lines(tmp_path: Path) -> None:
    records = records_from(tmp_path, '\n  \n{"id": "a", "text": "x"}\r\n\n{"text": "y"}\n')
    assert [(r.index, r.data, r.line) for r in records] == [(0, {"id": "a", "text": "x"}, 3), (1, {"text": "y"}, 5)]
    assert records[0].where.endswith("in.txt line 3")


def test_auto_detects_text_and_uses_the_field_name(tmp_path: Path) -> None:
    records = records_from(tmp_path, "\ufeffhello\n{not json at the start}\n", field="sentence")
    assert [r.data for r in records] == [{"sentence": "hello"}, {"sentence": "{not json at the start}"}]


def test_jsonl_errors_are_records(tmp_path: Path) -> None:
    records = records_from(tmp_path, '{"text": "ok"}\n{bad\n[1, 2]\n"str"\n{"text": "fine"}\n', fmt="jsonl")
    kinds = [r.error.type if r.error else None for r in records]
    assert kinds == [None, "invalid_json", "not_an_object", "not_an_object", None]
    assert [r.line for r in records] == [1, 2, 3, 4, 5]
    assert "column" in records[1].error.message
    assert "an array" in records[2].error.message


def test_invalid_utf8_is_a_record_error_not_a_replacement(tmp_path: Path) -> None:
    records = records_from(tmp_path, b"good\nbad \xff byte\nalso good\n", fmt="text")
    assert records[0].text() == "good" and records[2].text() == "also good"
    assert records[1].error.type == "invalid_utf8"
    assert "0xff" in records[1].error.message


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("NaN", "NaN is not a JSON number (JSON has no NaN or Infinity)"),
        ("[Infinity]", "Infinity is not a JSON number"),
        ("{\"x\": -Infinity}", "-Infinity is not a JSON number"),
        ("1e400", "the number 1e400 is out of range (a 64-bit float ends near 1.8e308)"),
        ("-2e308", "the number -2e308 is out of range"),
        ("1" + "0" * 400 + ".5", "the number 10000000000000000000... is out of range"),
        ("1" * 5000, "a number has more than 4,300 digits"),
    ],
)
def test_non_standard_numbers_are_record_errors(tmp_path: Path, literal: str, message: str) -> None:
    data = f'{{"id": "a", "text": "x"}}\n{{"id": {literal}, "text": "y"}}\n{{"id": "c", "text": "z"}}\n'
    records = records_from(tmp_path, data, fmt="jsonl")
    assert [r.error.type if r.error else r.id for r in records] == ["a", "invalid_number", "c"]
    assert records[1].error.message.startswith(message)


def test_standard_numbers_at_the_edges_are_read(tmp_path: Path) -> None:
    data = '{"a": 1.7976931348623157e308, "b": 1e-400, "c": -0.0, "d": ' + "9" * 4000 + ', "e": 5E+3}\n'
    [record] = records_from(tmp_path, data, fmt="jsonl")
    assert record.error is None
    assert record.data == {"a": 1.7976931348623157e308, "b": 0.0, "c": -0.0, "d": int("9" * 4000), "e": 5000.0}


def test_nesting_deeper_than_the_limit_is_a_record_error(tmp_path: Path) -> None:
    deepest = io.MAX_DEPTH - 1  # inside the record, which counts as one level
    lines = [
        '{"id": "a", "x": ' + "[" * 100_000,  # past the parser's recursion limit
        '{"id": "b", "x": ' + "[" * 2_000 + "]" * 2_000 + "}",
        '{"id": "c", "x": ' + "[" * deepest + "]" * deepest + "}",
        '{"id": "d", "x": ' + '{"k": ' * (deepest + 1) + "1" + "}" * (deepest + 1) + "}",
        '{"id": "e", "x": "' + "[" * 5_000 + '"}',  # brackets in a string nest nothing
    ]
    records = records_from(tmp_path, "\n".join(lines) + "\n", fmt="jsonl")
    assert [r.error.type if r.error else r.id for r in records] == ["too_deep", "too_deep", "c", "too_deep", "e"]
    assert records[0].error.message == "the JSON nests arrays and objects deeper than 100 levels"
    sink = stdio.BytesIO()  # the deepest record allowed is echoed whole
    writer = io.RecordWriter(sink, keep="x")
    writer.write(io.Record(0, records[2].data, "line 3", 3), {"ok": True})
    writer.flush()
    assert json.loads(sink.getvalue())["x"] == records[2].data["x"]


def test_tsv_uses_the_header_row(tmp_path: Path) -> None:
    records = records_from(tmp_path, "sentence\tlabel\r\na b\t1\n\nonly one column\nc\t0\n", fmt="tsv")
    assert records[0].data == {"sentence": "a b", "label": "1"}
    assert records[1].error.type == "tsv_columns"
    assert records[2].data == {"sentence": "c", "label": "0"}


def test_field_access_errors() -> None:
    record = io.Record(0, {"text": 3, "ids": [1, "2"], "s": "4, 5 6", "none": None}, "line 1", 1)
    with pytest.raises(RecordError) as missing:
        record.text("sentence", "use --field")
    assert missing.value.type == "missing_field"
    assert str(missing.value).endswith("(it has: ids, none, s, text); use --field")
    with pytest.raises(RecordError) as wrong:
        record.text()
    assert wrong.value.type == "wrong_type" and "not a number" in str(wrong.value)
    assert record.optional_text("absent") is None and record.optional_text("none") is None
    assert record.int_list("s") == [4, 5, 6]
    with pytest.raises(RecordError, match="array of integers"):
        record.int_list("ids")


# -------------------------------------------------------------------- sources
def test_text_arguments_win_over_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stream = io.read_records(["a", "b"], [str(tmp_path / "missing")])
    assert [r.data for r in stream] == [{"text": "a"}, {"text": "b"}]
    assert [r.where for r in io.read_records(["a", "b"])] == ["argument 1", "argument 2"]
    assert stream.total == 2
    assert "--input is ignored" in capsys.readouterr().err


def test_inputs_globs_and_order(tmp_path: Path) -> None:
    for name, text in [("b.txt", "two\n"), ("a.txt", "one\n"), ("c.jsonl", '{"text": "three"}\n')]:
        (tmp_path / name).write_text(text)
    stream = io.read_records(inputs=[str(tmp_path / "*.txt"), str(tmp_path / "c.jsonl")])
    assert [(r.index, r.data["text"]) for r in stream] == [(0, "one"), (1, "two"), (2, "three")]


@pytest.mark.parametrize("bad", ["missing.txt", "*.nothing", "."])
def test_bad_inputs_are_usage_errors(tmp_path: Path, bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError):
        io.read_records(inputs=[bad])


def test_nothing_to_read_from_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(stdio.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(UsageError, match="nothing to read"):
        io.read_records()
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(UsageError, match="nothing to read"):
        io.read_records()


# --------------------------------------------------------------------- writer
def rec(index: int, **data) -> io.Record:
    return io.Record(index, data, f"line {index + 1}", index + 1)


def test_writer_keeps_input_order_whatever_order_results_come_in() -> None:
    sink = stdio.BytesIO()
    writer = io.RecordWriter(sink)
    for index, written in [(2, 0), (0, 1), (3, 1), (1, 4)]:
        writer.write(rec(index, id=index), {"n": index})
        assert writer.written == written
    assert sink.getvalue() == b""  # lines wait for flush(): one write per batch
    writer.close()
    assert [json.loads(line)["n"] for line in sink.getvalue().splitlines()] == [0, 1, 2, 3]


def test_writer_id_keep_and_errors() -> None:
    sink = stdio.BytesIO()
    writer = io.RecordWriter(sink, keep="lang, text")
    writer.write(rec(0, id="x", text="t", lang="en", other=1), {"tokens": ["a"]})
    writer.write(rec(1, text="u"), RecordError("missing_field", "no"))
    writer.write(rec(2, text="\ud800"), {"echo": "\ud800"})  # a lone surrogate stays valid JSON
    writer.flush()
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert out[0] == {"id": "x", "lang": "en", "text": "t", "tokens": ["a"]}
    assert list(out[0]) == ["id", "lang", "text", "tokens"]
    assert out[1] == {"text": "u", "error": {"type": "missing_field", "message": "no", "line": 2}}
    assert out[2]["echo"] == "\ud800"


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} in the output: not RFC 8259 JSON")


def test_writer_writes_nan_and_infinity_in_a_result_as_null(capsys: pytest.CaptureFixture) -> None:
    class Tensor:  # converted by tolist(), as a torch tensor is
        def tolist(self) -> list[float]:
            return [float("nan"), 1.5]

    sink = stdio.BytesIO()
    writer = io.RecordWriter(sink)
    result = {"score": float("nan"), "scores": {"a": float("inf"), "b": 0.5}, "all": [[-float("inf")]], "t": Tensor()}
    writer.write(rec(0, id="\ud800"), result)
    writer.write(rec(1, id=2), {"score": 0.25})
    writer.flush()
    lines = sink.getvalue().decode("utf-8").splitlines()  # strict UTF-8
    out = [json.loads(line, parse_constant=_no_constants) for line in lines]
    assert out[0] == {"id": "\ud800", "score": None, "scores": {"a": None, "b": 0.5}, "all": [[None]], "t": [None, 1.5]}
    assert out[1] == {"id": 2, "score": 0.25}
    assert "line 1: NaN or Infinity in the result, written as null" in capsys.readouterr().err


def test_writer_text_and_tsv_formats() -> None:
    text = stdio.BytesIO()
    writer = io.RecordWriter(text, fmt="text")
    writer.write(rec(0), {"tokens": ["a", "b\tc"], "ids": [1, 2]})
    writer.write(rec(1), RecordError("x", "y"))
    writer.write(rec(2), {"text": "two\nlines"})
    writer.flush()
    assert text.getvalue() == b"a b\\tc\n\ntwo\\nlines\n"

    tsv = stdio.BytesIO()
    writer = io.RecordWriter(tsv, fmt="tsv", keep="label", columns=["tokens", "offsets"])
    writer.write(rec(0, id=7, label="pos"), {"tokens": ["a", "b"], "offsets": [[0, 1], [2, 3]]})
    writer.write(rec(1, id=8), RecordError("bad", "it\tbroke"))
    writer.flush()
    assert tsv.getvalue().decode().splitlines() == [
        "id\tlabel\ttokens\toffsets\terror",
        "7\tpos\ta b\t[[0, 1], [2, 3]]\t",
        "8\t\t\t\tbad: it\\tbroke",
    ]


def test_closed_pipe_becomes_output_closed() -> None:
    class Closed(stdio.BytesIO):
        def write(self, data: bytes) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    writer = io.RecordWriter(Closed())
    writer.write(rec(0), {"a": 1})  # kept until the batch is flushed
    with pytest.raises(OutputClosed):
        writer.flush()


def test_output_file_is_written_whole_and_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with io.open_writer(target) as writer:
        writer.write(rec(0), {"a": 1})
        writer.flush()
        assert not target.exists()  # only the temporary file so far
    assert target.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_existing_output_is_refused_without_force(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("precious\n")
    with pytest.raises(UsageError, match="--force"):
        with io.open_writer(target):
            pass
    assert target.read_text() == "precious\n"
    with io.open_writer(target, force=True) as writer:
        writer.write(rec(0), {"a": 1})
    assert target.read_text() == '{"a": 1}\n'


@pytest.mark.parametrize("bad", ["missing-dir/out.jsonl", "."])
def test_output_in_a_missing_folder_or_a_folder_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError):
        with io.open_writer(tmp_path / bad):
            pass


def test_a_failed_run_keeps_what_was_written_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with io.open_writer(target, force=True) as writer:
            writer.write(rec(0), {"a": 1})
            writer.write(rec(2), {"a": 3})  # waits for record 1, which never comes
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"  # untouched
    assert (tmp_path / "out.jsonl.partial").read_text() == '{"a": 1}\n'
    with pytest.raises(RuntimeError):  # nothing written: nothing kept
        with io.open_writer(tmp_path / "other.jsonl"):
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.partial"]


def test_two_runs_racing_for_one_output_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """Another run publishes the same PATH at the worst moment: after our check, just before our rename."""
    from xcli_models import atomic

    target = tmp_path / "out.jsonl"

    def other_run_first(rename):
        def renamed(src, dst, *args):
            if Path(dst) == target and not target.exists():
                target.write_text('{"run": "other"}\n')
            return rename(src, dst, *args)
        return renamed

    monkeypatch.setattr(os, "replace", other_run_first(os.replace))
    monkeypatch.setattr(atomic, "rename_noreplace", other_run_first(atomic.rename_noreplace))
    with pytest.raises(UsageError, match="another run wrote the file while this one ran") as lost:
        with io.open_writer(target) as writer:
            writer.write(rec(0), {"run": "this"})
    assert lost.value.exit_code == 2 and "--force" in str(lost.value)
    assert target.read_text() == '{"run": "other"}\n'
    assert (tmp_path / "out.jsonl.partial").read_text() == '{"run": "this"}\n'
    assert "1 record(s) it wrote are in" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.partial"]


def test_force_replaces_a_file_that_appeared_during_the_run(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with io.open_writer(target, force=True) as writer:
        writer.write(rec(0), {"a": 1})
        target.write_text("appeared\n")
    assert target.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_leftovers_of_a_killed_run_are_removed_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    left = tmp_path / ".out.jsonl.xcli-deadbeef.tmp"  # unlocked: its run is gone
    left.write_text('{"a": 0}\n')
    with io.open_writer(tmp_path / "out.jsonl") as writer:
        writer.write(rec(0), {"a": 1})
    err = capsys.readouterr().err
    assert f"xcli: warning: removed {left} (9 bytes), left by a run that was killed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# --------------------------------------------------------------------- driver
class Stream(list):
    """Records with a scripted answer to ready()."""

    def __init__(self, records, ready_after=()):
        super().__init__(records)
        self.ready_after = set(ready_after)
        self.position = 0
        self.total = None

    def __iter__(self):
        for self.position, record in enumerate(list.__iter__(self)):
            yield record

    def ready(self) -> bool:
        return self.position not in self.ready_after


def test_batches_are_cut_when_no_more_input_is_ready() -> None:
    records = Stream([rec(i) for i in range(7)], ready_after={1})
    sizes = [len(b) for b in io.batches(records, 3)]
    assert sizes == [2, 3, 2]


def test_run_records_maps_in_order_and_isolates_bad_records() -> None:
    records = [rec(i, text=t) for i, t in enumerate(["a", "bad", "c", "boom", "e"])]
    records.append(io.Record(5, {}, "line 6", 6, RecordError("invalid_json", "nope")))
    seen_batches = []

    def prepare(record: io.Record) -> str:
        if record.text() == "bad":
            raise RecordError("bad_text", "bad text")
        return record.text()

    def process(items: list[str]) -> list[dict]:
        seen_batches.append(list(items))
        if "boom" in items:
            raise ValueError("boom in the batch")
        return [{"upper": item.upper()} for item in reversed(items)][::-1]

    sink = stdio.BytesIO()
    summary = io.run_records(records, process, io.RecordWriter(sink), prepare=prepare, batch_size=4)
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [o.get("upper") or o["error"]["type"] for o in out] == ["A", "bad_text", "C", "value_error", "E", "invalid_json"]
    assert seen_batches[0] == ["a", "c", "boom"]  # then one by one to find the culprit
    assert ["boom"] in seen_batches and ["a"] in seen_batches
    assert (summary.records, summary.failed) == (6, 3)
    with pytest.raises(RecordsFailed, match="3 of 6 records failed"):
        io.finish(summary)


def test_on_error_stop_writes_the_bad_record_then_stops(capsys: pytest.CaptureFixture) -> None:
    records = [rec(0, text="a"), rec(1), rec(2, text="c")]
    sink = stdio.BytesIO()
    with pytest.raises(StoppedOnError, match="line 2"):
        io.run_records(records, lambda items: [{"ok": 1} for _ in items], io.RecordWriter(sink),
                       prepare=lambda r: r.text(), on_error="stop")
    assert [json.loads(line).get("error", {}).get("type") for line in sink.getvalue().splitlines()] == [
        None, "missing_field"
    ]
    assert "line 2: missing_field" in capsys.readouterr().err


def test_an_unexpected_exception_stops_the_run() -> None:
    def process(items):
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        io.run_records([rec(0)], process, io.RecordWriter(stdio.BytesIO()))


def test_output_of_a_record_is_flushed_before_more_input_is_read() -> None:
    """With a pipe that holds one line, the answer is out while xcli waits for the next."""
    read_end, write_end = os.pipe()
    flushed = threading.Event()

    class Sink(stdio.BytesIO):
        def flush(self) -> None:
            if self.getvalue():
                flushed.set()

    def producer() -> None:
        os.write(write_end, b"first\n")
        flushed.wait(60)  # the second line comes only once the first answer is out
        os.write(write_end, b"second\n")
        os.close(write_end)

    thread = threading.Thread(target=producer)
    thread.start()
    with open(read_end, "rb", buffering=0) as handle:
        stream = io.RecordStream([io.sources._Lines("-", "text", "text")])
        stream.sources[0]._open = lambda: (handle, False)  # type: ignore[method-assign]
        sink = Sink()
        io.run_records(stream, lambda items: [{"t": r.text()} for r in items], io.RecordWriter(sink), batch_size=32)
    thread.join()
    assert flushed.is_set()
    assert sink.getvalue() == b'{"t": "first"}\n{"t": "second"}\n'


def test_json_text_is_always_rfc_8259() -> None:
    text = io.json_text({"loss": float("nan"), "best": [float("inf"), 1.5], "name": "x"})
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "loss": None, "best": [None, 1.5], "name": "x"}
