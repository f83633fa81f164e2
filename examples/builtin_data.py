"""The records the built-in models are trained and measured on, made from ../shared/data.

    python examples/builtin_data.py DATA_DIR WORKDIR

Format only: each dataset as the JSONL records xcli train and xcli evaluate read. Used by
examples/build_builtin_models.sh and by the slow test that re-measures the models' cards.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator


def write(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def sst2(data: Path, work: Path) -> None:
    """SST-2: {"text", "label"} with the labels named."""
    for split in ("train", "dev"):
        with open(data / "datasets/sst2" / f"{split}.tsv", encoding="utf-8") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(rows)  # header
            write(work / f"sst2-{split}.jsonl",
                  ({"text": s.strip(), "label": ["negative", "positive"][int(label)]} for s, label in rows))


def _sentences(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    words: list[str] = []
    tags: list[str] = []
    for line in open(path, encoding="utf-8"):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                yield words, tags
            words, tags = [], []
            continue
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        yield words, tags


def iob2(tags: list[str]) -> list[str]:
    """IOB1 tags as IOB2: an entity's first word always says B- (the same entities)."""
    out: list[str] = []
    before = "O"
    for tag in tags:
        if tag.startswith("I-") and before[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        before = tag
    return out


def conll(data: Path, work: Path) -> None:
    """CoNLL-2003 English: {"tokens", "labels"} per sentence."""
    for split in ("train", "testa", "testb"):
        write(work / f"conll-{split}.jsonl",
              ({"tokens": w, "labels": iob2(t)} for w, t in _sentences(data / f"datasets/conll2003/eng.{split}")))


def shakespeare(data: Path, work: Path) -> None:
    """tinyshakespeare: one record per speech; the last 10% of the text held out."""
    text = (data / "text/tinyshakespeare.txt").read_text(encoding="utf-8")
    speeches = [b.strip() for b in text.split("\n\n") if b.strip()]
    total, seen, cut = sum(map(len, speeches)), 0, len(speeches)
    for i, speech in enumerate(speeches):
        seen += len(speech)
        if seen >= 0.9 * total:
            cut = i + 1
            break
    write(work / "shakespeare-train.jsonl", ({"text": s} for s in speeches[:cut]))
    write(work / "shakespeare-heldout.jsonl", ({"text": s} for s in speeches[cut:]))


def tatoeba(data: Path, work: Path) -> None:
    """Tatoeba's English sentences, each once; every 20th (by hash) held out."""
    english: dict[str, None] = {}
    for path in sorted(glob.glob(str(data / "datasets/tatoeba/tatoeba.*-eng.eng"))):
        for line in open(path, encoding="utf-8"):
            if line.strip():
                english.setdefault(line.strip())

    def held(sentence: str) -> bool:
        return int(hashlib.sha256(sentence.encode()).hexdigest(), 16) % 20 == 0

    write(work / "tatoeba-train.jsonl", ({"text": s} for s in english if not held(s)))
    write(work / "tatoeba-heldout.jsonl", ({"text": s} for s in english if held(s)))


def ner_pretrain(data: Path, work: Path) -> None:
    """Unlabelled English for the NER model's masked-LM stage: eng.train's words, then Tatoeba's
    training sentences (made by :func:`conll` and :func:`tatoeba` first)."""
    def texts() -> Iterator[dict[str, Any]]:
        for line in open(work / "conll-train.jsonl", encoding="utf-8"):
            yield {"text": " ".join(json.loads(line)["tokens"])}
        for line in open(work / "tatoeba-train.jsonl", encoding="utf-8"):
            yield json.loads(line)

    write(work / "ner-pretrain.jsonl", texts())


def main() -> None:
    data, work = Path(sys.argv[1]), Path(sys.argv[2])
    for make in (sst2, conll, shakespeare, tatoeba, ner_pretrain):
        make(data, work)


if __name__ == "__main__":
    main()
