"""``xcli vocab`` and the vocabulary learners: each family's files load in xcli and in the
reference library and give the same ids; learning is deterministic; bad input loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xcli_models.tokenization import AutoTokenizer
from xcli_models.tokenization.trainers import FAMILIES, VocabularyError, learn

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SHAKESPEARE = SHARED / "text" / "tinyshakespeare.txt"

#: family -> (lower-case, the reference tokenizer class)
REFERENCE = {
    "xlnet": (False, "XLNetTokenizer"),
    "xglm": (False, "XGLMTokenizer"),
    "xlm": (True, "XLMTokenizer"),
    "mvp": (False, "MvpTokenizer"),
    "prophetnet": (True, "ProphetNetTokenizer"),
}
SENTENCES = [
    "First Citizen: Before we proceed any further, hear me speak.",
    "It's a gripping, funny film -- naïve but Über-smart!",
    "Numbers 1,234.5 and e-mail@example.com, (brackets) [and] {braces}.",
    "  spaces   and\ttabs  ",
    "Здравствуй, мир! 你好，世界。",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is absent (../shared/data is not beside the repository)")
    return SHAKESPEARE.read_text(encoding="utf-8").splitlines()[:4000]


@pytest.mark.parametrize("family", FAMILIES)
def test_learnt_files_give_the_reference_ids(family: str, corpus: list[str], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    lowercase, reference_class = REFERENCE[family]
    written = learn(family, corpus, tmp_path, size=600, lowercase=lowercase)
    (tmp_path / "config.json").write_text(json.dumps(written.complete({})))
    ours = AutoTokenizer.from_pretrained(tmp_path)
    theirs = getattr(transformers, reference_class).from_pretrained(str(tmp_path))
    assert written.vocab_size == len(ours) == len(theirs)
    for text in SENTENCES + corpus[:200]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
    # the special tokens sit where the config says
    config = json.loads((tmp_path / "config.json").read_text())
    pad = config.get("pad_token_id")
    assert ours.pad_token_id == pad


@pytest.mark.parametrize("family", FAMILIES)
def test_learning_is_deterministic(family: str, corpus: list[str], tmp_path: Path) -> None:
    first = learn(family, corpus[:1500], tmp_path / "a", size=300)
    second = learn(family, corpus[:1500], tmp_path / "b", size=300)
    assert first.files == second.files
    for name in first.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match="too small"):
        learn("xlnet", ["some text"], tmp_path, size=10)
    with pytest.raises(VocabularyError, match="no text"):
        learn("xlm", ["", "   "], tmp_path, size=100)
    with pytest.raises(VocabularyError, match="cannot learn"):
        learn("bert", ["text"], tmp_path, size=100)


def _xcli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xcli", *args], input=stdin, capture_output=True, text=True)


def test_cli_writes_a_vocabulary_and_a_config(corpus: list[str], tmp_path: Path) -> None:
    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps({"text": line}) + "\n" for line in corpus[:1000] if line.strip()))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "xlnet", "d_model": 32, "n_layer": 1, "n_head": 2, "d_inner": 64}))
    out = tmp_path / "model"
    run = _xcli("vocab", "--family", "xlnet", "--size", "300", "-i", str(records), "-o", str(out), "-c", str(config))
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["vocab_size"] == 300 and summary["files"] == ["config.json", "spiece.model", "tokenizer_config.json"]
    written = json.loads((out / "config.json").read_text())
    assert written["vocab_size"] == 300 and written["pad_token_id"] == 5 and written["d_model"] == 32
    # the result tokenizes through xcli tokenize
    run = _xcli("tokenize", "-m", str(out), "Before we proceed")
    assert run.returncode == 0 and json.loads(run.stdout)["tokens"][-2:] == ["<sep>", "<cls>"]
    # an existing folder is kept without --force
    again = _xcli("vocab", "--family", "xlnet", "--size", "300", "-i", str(records), "-o", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    assert (out / "config.json").is_file()


def test_cli_bad_records_are_named_and_counted(tmp_path: Path) -> None:
    records = tmp_path / "mixed.jsonl"
    good = [json.dumps({"text": f"line number {i} of some text to learn from"}) for i in range(200)]
    records.write_text("\n".join(good[:100] + ['{"label": 1}', "{not json", json.dumps({"tokens": ["A", "b"]})]
                                 + good[100:]) + "\n")
    out = tmp_path / "v"
    run = _xcli("vocab", "--family", "mvp", "--size", "300", "-i", str(records), "-o", str(out))
    assert run.returncode == 4, run.stderr
    assert "line 101" in run.stderr and "line 102" in run.stderr
    summary = json.loads(run.stdout)
    assert summary["skipped"] == 2 and summary["texts"] == 201
    stop = _xcli("vocab", "--family", "mvp", "--size", "300", "-i", str(records), "-o", str(tmp_path / "w"),
                 "--on-error", "stop")
    assert stop.returncode == 1 and not (tmp_path / "w").exists()


def test_cli_usage_errors(tmp_path: Path) -> None:
    run = _xcli("vocab", "--family", "bert", "-o", str(tmp_path / "x"), "-i", "-", stdin="text\n")
    assert run.returncode == 2 and "'bert' is not one of 'xlnet', 'xglm', 'xlm', 'mvp', 'prophetnet'" in run.stderr
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "xglm"}))
    run = _xcli("vocab", "--family", "xlnet", "-o", str(tmp_path / "x"), "-i", "-", "-c", str(config), stdin="text\n")
    assert run.returncode == 2 and "model_type" in run.stderr
    run = _xcli("vocab", "--family", "xlnet", "-o", str(tmp_path / "x"), "-i", "-", stdin="\n\n")
    assert run.returncode == 1 and not (tmp_path / "x").exists()
