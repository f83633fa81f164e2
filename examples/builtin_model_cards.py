"""Write the model card (README.md) of each built-in model from what its build measured.

    python examples/builtin_model_cards.py WORKDIR DEST

WORKDIR is examples/build_builtin_models.sh's work folder (the commands run, the training and
evaluation summaries); DEST holds the built-in models (xcli_models/data/builtin/xcli). Every
number in a card comes from those files: nothing is typed in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: per model: what it is for, its data and the data's terms, and how its metrics read
MODELS = {
    "sentiment": {
        "title": "sentiment: an English sentiment classifier (negative / positive)",
        "use": 'xcli classify "a gripping, funny film"',
        "data": "SST-2 (the GLUE version of the Stanford Sentiment Treebank): 67,349 training sentences; "
                "measured on its 872 dev sentences",
        "terms": "SST-2 is distributed without a stated licence, for research use; the text is lower-cased movie-"
                 "review snippets, so the model knows film reviews, not other domains",
        "metrics": [("accuracy", "SST-2 dev accuracy", "{:.1%}"), ("macro_f1", "SST-2 dev macro-F1", "{:.3f}")],
    },
    "ner": {
        "title": "ner: English named entities (PER, LOC, ORG, MISC)",
        "use": 'xcli classify -m xcli/ner --aggregation first "Tony Blair met Bill Clinton in Washington."',
        "data": "first a masked language model on unlabelled English: the words of CoNLL-2003 eng.train and "
                "Tatoeba's English training sentences (3 epochs); then its token head on CoNLL-2003 English (Reuters "
                "news, 1996) eng.train, 14,041 sentences (IOB1 tags rewritten as IOB2); best epoch chosen on "
                "eng.testa, measured on eng.testb (3,453 sentences)",
        "terms": "CoNLL-2003 annotates Reuters RCV1 text, which Reuters licenses for research only: use this model "
                 "for research and demonstration; Tatoeba sentences are CC BY 2.0 FR",
        "metrics": [("f1", "eng.testb entity F1 (seqeval, exact spans)", "{:.1%}"),
                    ("precision", "eng.testb entity precision", "{:.1%}"),
                    ("recall", "eng.testb entity recall", "{:.1%}")],
    },
    "shakespeare": {
        "title": "shakespeare: a small causal language model of Shakespeare's plays",
        "use": 'xcli generate "ROMEO:" --do-sample --seed 1 --max-new-tokens 40',
        "data": "tinyshakespeare (40,000 lines of the plays): the first 90% of its text for training, one record "
                "per speech, packed into blocks of 128 tokens; perplexity measured on the last 10%",
        "terms": "Shakespeare's text is in the public domain (the tinyshakespeare file: karpathy/char-rnn, MIT)",
        "metrics": [("perplexity", "held-out perplexity (per token of its 4,000-entry vocabulary)", "{:.1f}")],
    },
    "fill-mask": {
        "title": "fill-mask: an English masked language model",
        "use": 'xcli fill-mask "I have to <mask> to school tomorrow."',
        "data": "Tatoeba's English sentences (every English side of the 112 Tatoeba test sets, each sentence "
                "once): 65,762 for training, 3,479 (every 20th by hash) held out; lower-cased",
        "terms": "Tatoeba sentences are CC BY 2.0 FR (https://tatoeba.org, contributors of Tatoeba); the model is "
                 "shared under the same attribution terms",
        "metrics": [("accuracy", "held-out top-1 accuracy on the hidden tokens (15% of each sentence)", "{:.1%}"),
                    ("perplexity", "held-out perplexity of the hidden tokens", "{:.1f}")],
    },
}


def card(name: str, work: Path, dest: Path) -> str:
    about = MODELS[name]
    config = json.loads((dest / name / "config.json").read_text(encoding="utf-8"))
    trained = json.loads((work / f"{name}-train.json").read_text(encoding="utf-8"))
    measured = json.loads((work / f"{name}-metrics.json").read_text(encoding="utf-8"))
    vocab = json.loads((work / f"{name}-vocab.json").read_text(encoding="utf-8"))
    commands = (work / f"{name}-commands.txt").read_text(encoding="utf-8").strip()
    weights = (dest / name / "model.safetensors").stat().st_size
    size = sum(f.stat().st_size for f in (dest / name).iterdir() if f.name != "README.md")
    shape = {k: config[k] for k in ("d_model", "n_layer", "n_head", "d_inner", "emb_dim", "n_layers", "n_heads",
                                    "num_layers", "attention_heads", "ffn_dim") if k in config}
    lines = [
        f"# xcli/{name}",
        "",
        f"{about['title']}. **Demo quality, not for production**: a small model trained from nothing by "
        "`xcli train` on one CPU, so that xcli's commands answer with a real model out of the box.",
        "",
        f"    {about['use']}",
        "",
        "## Model",
        f"- {config['architectures'][0]} (`model_type` {config['model_type']}), "
        + ", ".join(f"{k} {v}" for k, v in shape.items()) + ".",
        f"- Vocabulary: {vocab['vocab_size']} entries learnt by `xcli vocab --family {vocab['family']}` from the "
        "training text.",
        f"- Weights stored in float16 ({weights / 1e6:.1f} MB; xcli loads them as float32); {size / 1e6:.1f} MB "
        "with the tokenizer files.",
        f"- Trained {trained['steps']} steps ({trained['epochs']} epochs), final training loss "
        f"{trained['train_loss']:.3f}; weights kept: {trained['saved']}.",
        "",
        "## Data and its terms",
        f"- {about['data']}.",
        f"- {about['terms']}.",
        "",
        "## Measured by `xcli evaluate`",
        "| metric | value |",
        "|---|---|",
    ]
    for key, label, fmt in about["metrics"]:
        lines.append(f"| {label} | {fmt.format(measured[key])} |")
    lines += [
        "",
        f"On {measured['records']} records. tests/cli/test_builtin_models.py re-measures these numbers from the shipped "
        "weights (a slow test).",
        "",
        "## How it was built",
        "By `examples/build_builtin_models.sh` (one thread, seed 0: the same data gives the same weights). Its "
        "commands for this model, with `xcli/" + name + "` standing for this folder:",
        "",
        "```",
        commands,
        "```",
        "",
        f"Its config.json before training is `{name}-config.json` in the script.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    work, dest = Path(sys.argv[1]), Path(sys.argv[2])
    for name in MODELS:
        if (work / f"{name}-metrics.json").is_file():  # built in this work folder
            (dest / name / "README.md").write_text(card(name, work, dest), encoding="utf-8")
            metrics = json.loads((work / f"{name}-metrics.json").read_text(encoding="utf-8"))
            metrics["model"] = f"xcli/{name}"  # not the path it was measured at
            (dest / name / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
