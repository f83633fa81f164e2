"""Fuzzing the record contract with hypothesis (issue 11).

Streams of generated JSONL lines of every kind (valid records, invalid JSON, invalid UTF-8, lone
surrogates as ``\\ud800`` escapes, raw control characters and NUL, BOMs, CRLF, huge and deeply
nested values, wrong types, non-standard numbers, blank lines) go (a) through the I/O layer
(``read_records`` -> ``run_records`` -> ``open_writer``, with a trivial ``process_batch``) and (b)
through ``xcli tokenize -m xlnet-base-cased`` in process, plus one real subprocess. Every run must
keep the contract: exactly one output line per non-blank input line, in order (ids and line
numbers checked); each line valid UTF-8 and RFC 8259 JSON (no NaN or Infinity); an error object
exactly for each bad record, naming its line, also on stderr; exit 4 when any record is bad, else
0; never a traceback, never "internal error".

Each kind of line says itself whether it is bad, so the expectations never come from the code
under test. The examples are derandomized (a fixed seed) and bounded: the default run fuzzes a
few thousand records in well under a minute; the ``slow`` test pushes 10,000+ through one run.
The number of records fuzzed is printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import io as stdio
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from xcli import io
from xcli.app import app
from xcli.errors import RecordsFailed
from xcli.models import builtin_root

pytestmark = pytest.mark.skipif(
    not (builtin_root() / "xlnet" / "xlnet-base-cased" / "spiece.model").exists(),
    reason="built-in xlnet-base-cased not there",
)

BOM = "\ufeff".encode()
MISSING = object()  # an output line without "id"
COUNTS = {"I/O layer": 0, "xcli tokenize": 0}
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ------------------------------------------------------------------ the lines
@dataclass(frozen=True, repr=False)
class Line:
    """One generated input line: its bytes (without end of line) and what the contract expects of it.

    ``bad_io``: an error record through the I/O layer (whose trivial processing reads the "text"
    field); ``bad_cli``: an error record from ``xcli tokenize`` (which also refuses what the
    tokenizer cannot take). ``id``: the "id" an output line must echo (MISSING for none).
    ``expect``: what a bad line's error must say (its start, from "TYPE: MESSAGE"), where known.
    ``bom_first``: the line starts with a BOM, which only the first line of a file may carry.
    """

    kind: str
    data: bytes
    bad_io: bool = False
    bad_cli: bool = False
    id: Any = MISSING
    expect: str = ""
    blank: bool = False
    bom_first: bool = False

    def __repr__(self) -> str:  # short, for hypothesis' reports: some lines are 100 kB
        data = self.data if len(self.data) <= 120 else self.data[:100] + b"..." + self.data[-20:]
        return f"Line({self.kind}, {data!r} ({len(self.data):,} bytes), bad_io={self.bad_io}, bad_cli={self.bad_cli})"


def dumps(value: Any, ascii_only: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def record(rid: str, text: Any = "t", ascii_only: bool = False, **fields: Any) -> str:
    return dumps({"id": rid, "text": text, **fields}, ascii_only)


ids = st.integers(0, 10**6).map(lambda n: f"r{n}")
texts = st.text(max_size=40)  # any code point but surrogates: controls, NUL, BOM, U+2028, astral ...
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def valid(draw: Any) -> Line:
    rid, text, extra, ascii_only = draw(ids), draw(texts), draw(json_values), draw(st.booleans())
    pair = draw(st.none() | texts)
    fields = {"extra": extra, **({"text_pair": pair} if pair is not None else {})}
    spaced = draw(st.booleans())  # JSON whitespace, CR included, between the tokens
    separators = (",\r\t ", " :\r") if spaced else (", ", ": ")
    line = json.dumps({"id": rid, "text": text, **fields}, ensure_ascii=ascii_only, separators=separators)
    return Line("valid", line.encode(), id=rid)


@st.composite
def huge(draw: Any, sizes: tuple[int, ...] = (1_000, 5_000, 20_000)) -> Line:
    rid = draw(ids)
    size = draw(st.sampled_from(sizes))
    text = (draw(st.text(min_size=1, max_size=8)) + " ") * (size // 4)
    return Line("huge", record(rid, text[:size]).encode(), id=rid)


@st.composite
def surrogate(draw: Any) -> Line:
    """A lone surrogate escape in the text, the pair's text (refused by the tokenizer) or elsewhere (echoed)."""
    rid, before, after, code = draw(ids), draw(texts), draw(texts), draw(st.integers(0xD800, 0xDFFF))
    escape = f"\\u{code:04x}"
    spliced = dumps(before)[:-1] + escape + dumps(after)[1:]
    where = draw(st.sampled_from(["text", "text_pair", "id", "extra"]))
    if where == "id":
        line = '{"id": ' + dumps(rid)[:-1] + escape + '", "text": "t"}'
        return Line("surrogate", line.encode(), id=rid + json.loads(f'"{escape}"'))
    if where == "extra":
        return Line("surrogate", ('{"id": ' + dumps(rid) + ', "text": "t", "extra": ' + spliced + "}").encode(), id=rid)
    fields = ', "text": "t", "text_pair": ' if where == "text_pair" else ', "text": '
    what = "the second text of the pair" if where == "text_pair" else "the text"
    expect = f"tokenizer_error: {what} is not valid Unicode: a lone surrogate (U+{code:04X}) at character {len(before)}"
    line = '{"id": ' + dumps(rid) + fields + spliced + "}"
    return Line("surrogate", line.encode(), bad_cli=True, id=rid, expect=expect)


@st.composite
def invalid_utf8(draw: Any) -> Line:
    # bytes that no context makes valid: 0xff/0xfe, an overlong form, an encoded surrogate, a 5-byte form
    bad = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
    noise = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
    where = draw(st.sampled_from(["text", "key", "outside"]))
    before, after = draw(noise), draw(noise)
    if where == "text":
        data = b'{"id": "x", "text": "' + before + bad + after + b'"}'
    elif where == "key":
        data = b'{"' + bad + b'": 1, "text": "t"}'
    else:
        data = b'{"text": "t"}' + bad
    return Line("invalid_utf8", data, bad_io=True, bad_cli=True, expect="invalid_utf8: not valid UTF-8")


# raw control characters are invalid anywhere in JSON text, inside strings too (tab, LF, CR are whitespace)
controls = st.sampled_from([chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"])


@st.composite
def invalid_json(draw: Any) -> Line:
    rid, text = draw(ids), draw(texts)
    good = record(rid, text)
    variant = draw(st.sampled_from(["truncated", "control", "garbage", "trailing", "quotes", "bom"]))
    if variant == "truncated":  # a proper prefix of an object is never a JSON value
        line = good[: draw(st.integers(1, len(good) - 1))]
    elif variant == "control":
        cut = draw(st.integers(len('{"id": "'), len(good) - 2))
        line = good[:cut] + draw(controls) + good[cut:]
    elif variant == "garbage":
        line = "{" + draw(st.text(max_size=20)) + draw(controls) + draw(st.text(max_size=20))
    elif variant == "trailing":
        line = good + draw(st.sampled_from([",", "}", " x", "{}", ' {"text": "u"}']))
    elif variant == "quotes":
        line = good.replace('"', "'")
    else:  # only the first line of a stream may start with a BOM
        return Line("invalid_json", BOM + good.encode(), bad_io=True, bad_cli=True, expect="invalid_json: ",
                    bom_first=True)
    expect = "" if variant == "garbage" else "invalid_json: "  # garbage may hold a NaN before its fault
    return Line("invalid_json", line.replace("\n", " ").encode(), bad_io=True, bad_cli=True, expect=expect)


@st.composite
def not_an_object(draw: Any) -> Line:
    value = draw(st.lists(json_values, max_size=3) | texts | st.integers() | finite | st.none() | st.booleans())
    line = dumps(value, draw(st.booleans()))
    expect = "not_an_object: expected a JSON object"
    return Line("not_an_object", line.encode(), bad_io=True, bad_cli=True, expect=expect)


@st.composite
def deep(draw: Any) -> Line:
    """Nesting inside the record (which counts as one level): bad past io.MAX_DEPTH."""
    rid = draw(ids)
    depth = draw(st.integers(0, 150) | st.sampled_from([io.MAX_DEPTH - 1, io.MAX_DEPTH, 2_000, 20_000]))
    closed = draw(st.booleans()) or depth < io.MAX_DEPTH
    if draw(st.booleans()):
        nested = "[" * depth + ("1" + "]" * depth if closed else "")
    else:
        nested = '{"k": ' * depth + ("1" + "}" * depth if closed else "")
    line = '{"id": ' + dumps(rid) + ', "text": "t", "extra": ' + nested + ("}" if closed else "")
    bad = depth + 1 > io.MAX_DEPTH or not closed
    expect = "too_deep: " if closed else ""  # unclosed: too_deep or, short of the limit, invalid_json
    return Line("deep", line.encode(), bad_io=bad, bad_cli=bad, id=MISSING if bad else rid, expect=expect)


# literal -> the error it must give ("" for none: standard JSON that Python reads as a finite number)
NUMBERS = {
    "0": "", "-0": "", "1.5": "", "1e308": "", "-1.7976931348623157e308": "", "1e-400": "",
    "123456789012345678901234567890": "", "9" * 4300: "",
    "NaN": "invalid_number", "Infinity": "invalid_number", "-Infinity": "invalid_number",
    "1e400": "invalid_number", "-1e309": "invalid_number", "1" + "0" * 309 + ".0": "invalid_number",
    "9" * 4301: "invalid_number", "nan": "invalid_json", "+1": "invalid_json", "01": "invalid_json",
    ".5": "invalid_json",
}


@st.composite
def number(draw: Any) -> Line:
    rid = draw(ids)
    literal = draw(st.sampled_from(sorted(NUMBERS)) | finite.map(repr) | st.integers().map(str))
    error = NUMBERS.get(literal, "")
    if draw(st.booleans()):
        line, expected_id = '{"id": ' + literal + ', "text": "t"}', MISSING if error else json.loads(literal)
    else:
        line, expected_id = '{"id": ' + dumps(rid) + ', "text": "t", "extra": {"n": [' + literal + "]}}", rid
    bad = bool(error)
    return Line("number", line.encode(), bad_io=bad, bad_cli=bad, id=MISSING if bad else expected_id,
                expect=error and error + ": ")


@st.composite
def wrong_field(draw: Any) -> Line:
    rid = draw(ids)
    if draw(st.booleans()):
        line, expect = dumps({"id": rid, "txt": draw(texts)}), 'missing_field: no "text" field'
    else:
        text = draw(st.integers() | finite | st.none() | st.booleans() | st.lists(texts, max_size=2))
        line, expect = record(rid, text), 'wrong_type: "text" must be a string'
    return Line("wrong_field", line.encode(), bad_io=True, bad_cli=True, id=rid, expect=expect)


blank = st.text(alphabet=" \t\x0b\x0c", max_size=4).map(lambda s: Line("blank", s.encode(), blank=True))
lines = st.one_of(
    valid(), valid(), valid(), surrogate(), invalid_utf8(), invalid_json(), not_an_object(), deep(), number(),
    wrong_field(), blank, huge(),
)


@st.composite
def streams(draw: Any, huge_sizes: tuple[int, ...], min_lines: int = 15,
            max_lines: int = 60) -> tuple[bytes, list[tuple[int, Line]]]:
    """A stream's bytes, and its non-blank lines with their line numbers."""
    body = draw(st.lists(lines, min_size=min_lines, max_size=max_lines))
    if draw(st.integers(0, 9)) == 0:  # now and then, a whole stream of one huge record
        body = [draw(huge(huge_sizes))]
    return assemble(body, bom=draw(st.booleans()), crlf=draw(st.lists(st.booleans(), min_size=len(body),
                                                                          max_size=len(body))),
                    last_newline=draw(st.booleans()))


def assemble(body: list[Line], *, bom: bool = False, crlf: list[bool] | None = None,
             last_newline: bool = True) -> tuple[bytes, list[tuple[int, Line]]]:
    """Join lines into a stream: an optional BOM before all, CRLF or LF each, the last one perhaps bare."""
    crlf = crlf or [False] * len(body)
    chunks, numbered = [BOM if bom else b""], []
    for number_, (line, cr) in enumerate(zip(body, crlf, strict=True), 1):
        if line.bom_first and number_ == 1 and not bom:  # its BOM is the stream's: the line is fine
            line = Line("valid", line.data, id=json.loads(line.data[len(BOM):])["id"])
        chunks.append(line.data + (b"\r\n" if cr else b"\n"))
        if not line.blank:
            numbered.append((number_, line))
    data = b"".join(chunks)
    return (data if last_newline else data.rstrip(b"\n")), numbered


# ------------------------------------------------------------- the contract
def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} in the output: not RFC 8259 JSON")


def check_contract(out: bytes, err: str, exit_code: int | None, numbered: list[tuple[int, Line]], *,
                   cli: bool, where: str = "line") -> None:
    """The output lines, stderr and exit status keep the record contract for these input lines."""
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    got = [json.loads(line, parse_constant=_no_constants) for line in output_lines(out)]
    assert len(got) == len(numbered), f"{len(got)} output lines for {len(numbered)} records"
    any_bad = False
    for obj, (number_, line) in zip(got, numbered, strict=True):
        bad = line.bad_cli if cli else line.bad_io
        any_bad |= bad
        assert isinstance(obj, dict)
        context = f"line {number_} ({line.kind}): {line.data[:200]!r} -> {obj!r:.300}"
        if line.id is MISSING:
            assert "id" not in obj, context
        else:
            assert "id" in obj and _same(obj["id"], line.id), context
        if bad:
            error = obj.get("error")
            assert isinstance(error, dict) and error.get("line") == number_, context
            assert isinstance(error["type"], str) and isinstance(error["message"], str), context
            assert f"{error['type']}: {error['message']}".startswith(line.expect), context
            assert f"{where} {number_}: {error['type']}: " in err, context
        else:
            assert "error" not in obj, context
            if cli:
                assert isinstance(obj["ids"], list) and len(obj["ids"]) == len(obj["tokens"]) >= 2, context
    if exit_code is not None:
        assert exit_code == (4 if any_bad else 0), err[-2000:]


def output_lines(out: bytes) -> list[str]:
    """The lines of an output, split at LF only (U+0085 or U+2028 in a string end no line)."""
    text = out.decode("utf-8")  # strict: the whole output is valid UTF-8
    assert text == "" or text.endswith("\n")
    return text[:-1].split("\n") if text else []


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b) or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b))


# ------------------------------------------------------------ (a) the I/O layer
def trivial_batch(records: list[io.Record]) -> list[dict[str, Any]]:
    """Reads the text (a missing or mistyped one fails its record) and answers with it, sometimes with a NaN."""
    return [{"echo": r.text(), "score": float("nan") if len(r.text()) % 3 == 0 else 0.5} for r in records]


def through_io_layer(data: bytes, numbered: list[tuple[int, Line]], batch_size: int, prepare: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.jsonl", Path(folder) / "out.jsonl"
        source.write_bytes(data)
        err = stdio.StringIO()
        failed = False
        with contextlib.redirect_stderr(err):
            records = io.read_records(inputs=[str(source)], input_format="jsonl")
            with io.open_writer(target, keep="extra") as writer:
                summary = io.run_records(
                    records, trivial_batch, writer, batch_size=batch_size,
                    prepare=(lambda r: (r.text(), r)[1]) if prepare else None,
                )
            try:
                io.finish(summary)
            except RecordsFailed:
                failed = True
        check_contract(target.read_bytes(), err.getvalue(), 4 if failed else 0, numbered, cli=False,
                       where=f"{source} line")
        assert sorted(p.name for p in Path(folder).iterdir()) == ["in.jsonl", "out.jsonl"]
        for obj in (json.loads(line) for line in output_lines(target.read_bytes())):
            if "echo" in obj:
                assert obj["score"] == (None if len(obj["echo"]) % 3 == 0 else 0.5)
    COUNTS["I/O layer"] += len(numbered)


@settings(FUZZ, max_examples=150)
@given(streams(huge_sizes=(100_000, 1_000_000)), st.integers(1, 70), st.booleans())
def test_io_layer_keeps_the_contract(stream: tuple[bytes, list], batch_size: int, prepare: bool) -> None:
    through_io_layer(*stream, batch_size, prepare)


# ------------------------------------------------------- (b) xcli tokenize
TOKENIZE = ["tokenize", "-m", "xlnet-base-cased", "--input-format", "jsonl", "--keep", "extra"]


def through_tokenize(data: bytes, numbered: list[tuple[int, Line]], offsets: bool = False) -> None:
    result = CliRunner().invoke(app, [*TOKENIZE, *(["--offsets"] if offsets else [])], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    check_contract(result.stdout_bytes, result.stderr, result.exit_code, numbered, cli=True)
    COUNTS["xcli tokenize"] += len(numbered)


@settings(FUZZ, max_examples=60)
@given(streams(huge_sizes=(50_000, 100_000)), st.booleans())
def test_tokenize_keeps_the_contract(stream: tuple[bytes, list], offsets: bool) -> None:
    through_tokenize(*stream, offsets=offsets)


ONE_OF_EACH = [
    Line("valid", record("a", "Hello world").encode(), id="a"),
    Line("blank", b"  \t", blank=True),
    Line("surrogate", b'{"id": "s", "text": "x\\ud800y"}', bad_cli=True, id="s"),
    Line("surrogate", b'{"id": "k", "text": "ok", "extra": "\\udfff"}', id="k"),
    Line("invalid_utf8", b'{"id": "u", "text": "\xff"}', bad_io=True, bad_cli=True),
    Line("invalid_json", b'{"id": "j", "text": "a\x00b"}', bad_io=True, bad_cli=True),
    Line("invalid_json", BOM + record("b").encode(), bad_io=True, bad_cli=True),
    Line("not_an_object", b"[1, 2]", bad_io=True, bad_cli=True),
    Line("deep", b'{"id": "d", "text": "t", "extra": ' + b"[" * 100_000, bad_io=True, bad_cli=True),
    Line("number", b'{"id": 1e400, "text": "t"}', bad_io=True, bad_cli=True),
    Line("number", b'{"id": "n", "text": "t", "extra": NaN}', bad_io=True, bad_cli=True),
    Line("wrong_field", record("w", 5).encode(), bad_io=True, bad_cli=True, id="w"),
    Line("huge", record("h", "word " * 20_000).encode(), id="h"),
    Line("valid", record("z", "the end\r\n\u2028\ufeff").encode(), id="z"),
]


def test_tokenize_in_a_real_process_keeps_the_contract() -> None:
    data, numbered = assemble(ONE_OF_EACH, bom=True, crlf=[i % 2 == 0 for i in range(len(ONE_OF_EACH))],
                              last_newline=False)
    result = subprocess.run([sys.executable, "-m", "xcli", *TOKENIZE], input=data, capture_output=True, timeout=120)
    check_contract(result.stdout, result.stderr.decode("utf-8", "replace"), result.returncode, numbered, cli=True)
    COUNTS["xcli tokenize"] += len(numbered)


# ------------------------------------------------- 10,000+ records in one run
@pytest.mark.slow
def test_ten_thousand_generated_records_in_one_run() -> None:
    body: list[Line] = []

    @settings(FUZZ, max_examples=500)
    @given(st.lists(lines, min_size=25, max_size=25))
    def collect(chunk: list[Line]) -> None:
        body.extend(chunk)

    collect()
    data, numbered = assemble(body, bom=True)
    assert len(numbered) >= 10_000
    through_tokenize(data, numbered)
    through_io_layer(data, numbered, batch_size=64, prepare=False)


# ------------------------------------------------------------------ the count
@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and any(COUNTS.values()):
        counts = ", ".join(f"{n:,} through {what}" for what, n in COUNTS.items())
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ntest_io_fuzz: records fuzzed: {counts}")
