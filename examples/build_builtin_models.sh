#!/usr/bin/env bash
# Rebuild xcli's built-in models from ../shared/data, from nothing, with xcli commands:
#
#     bash examples/build_builtin_models.sh [WORKDIR [NAME...]]
#
# NAME: sentiment, ner, shakespeare, fill-mask (default: all four; two runs with other names and
# work folders may go side by side).
#
# For each model: `xcli vocab` learns a small vocabulary from the training text and completes a
# config.json, `xcli train --from-scratch` trains it, `xcli convert --dtype float16` stores the
# weights in 16 bits (xcli loads them as float32), `xcli evaluate` measures it on held-out data,
# and the model card (README.md beside the weights) is written with those measured numbers.
# The records are made from the datasets by the small Python steps below (format only).
#
# Deterministic: one thread, fixed seeds: the same data gives the same weights, byte for byte,
# on the same CPU and torch. Takes about 40 minutes of one CPU core (2-core Xeon, torch 2.13).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${XCLI_SHARED_DATA:-$here/../shared/data}"
work="${1:-$(mktemp -d)}"
shift $(( $# > 0 ? 1 : 0 ))
names=("${@:-sentiment ner shakespeare fill-mask}")
names=(${names[*]})
wanted() { [[ " ${names[*]} " == *" $1 "* ]]; }
dest="$here/xcli_models/data/builtin/xcli"
xcli=(python -m xcli)
mkdir -p "$work" "$dest"
cd "$work"
echo "work folder: $work" >&2

# ------------------------------------------------------------------ records (format only)
python "$here/examples/builtin_data.py" "$data" "$work"

# ------------------------------------------------------------------ one model
# build NAME FAMILY VOCAB_SIZE VOCAB_OPTIONS CONFIG_JSON TRAIN DEV -- TRAIN_OPTIONS...
build() {
    local name=$1 family=$2 size=$3 vocab_options=$4 config=$5 train=$6 dev=$7
    shift 8
    echo "== $name" >&2
    printf '%s\n' "$config" > "$name-config.json"
    : > "$name-commands.txt"
    # shellcheck disable=SC2086
    run "$name" vocab --family "$family" --size "$size" $vocab_options -i "$train" -o "$name-init" \
        -c "$name-config.json" --force > "$name-vocab.json"
    run "$name" train -m "$name-init" --from-scratch --train "$train" --dev "$dev" -o "$name-trained" --force \
        --threads 1 --seed 0 "$@" > "$name-train.json"
    run "$name" convert "$name-trained" "xcli/$name" --dtype float16 --force > "$name-convert.json"
}

# run NAME XCLI_ARGS...: run xcli, noting the command line for NAME's model card (xcli/NAME: the built-in folder)
run() {
    local name=$1
    shift
    echo "xcli $*" >> "$name-commands.txt"
    local args=("${@/#xcli\//$dest/}")
    "${xcli[@]}" "${args[@]}"
}

wanted sentiment && build sentiment xlnet 8000 --lowercase '{"model_type": "xlnet", "architectures": ["XLNetForSequenceClassification"],
  "d_model": 128, "n_layer": 2, "n_head": 4, "d_inner": 512, "use_mems_eval": false,
  "id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 0, "positive": 1}}' \
    sst2-train.jsonl sst2-dev.jsonl -- --epochs 2 --lr 5e-4 --warmup-ratio 0.1 --batch-size 32
wanted sentiment && run sentiment evaluate -m xcli/sentiment -i sst2-dev.jsonl --threads 1 > sentiment-metrics.json

wanted ner && build ner xlm 8000 "" '{"model_type": "xlm", "architectures": ["XLMForTokenClassification"],
  "emb_dim": 192, "n_layers": 4, "n_heads": 4, "dropout": 0.3, "attention_dropout": 0.1,
  "max_position_embeddings": 256, "causal": false, "n_langs": 1, "use_lang_emb": false,
  "id2label": {"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC", "4": "I-LOC", "5": "B-ORG", "6": "I-ORG",
               "7": "B-MISC", "8": "I-MISC"},
  "label2id": {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4, "B-ORG": 5, "I-ORG": 6, "B-MISC": 7,
               "I-MISC": 8}}' \
    conll-train.jsonl conll-testa.jsonl -- --epochs 12 --lr 1e-3 --warmup-ratio 0.1 --batch-size 32
wanted ner && run ner evaluate -m xcli/ner -i conll-testb.jsonl --threads 1 > ner-metrics.json

wanted shakespeare && build shakespeare xglm 4000 "" '{"model_type": "xglm", "architectures": ["XGLMForCausalLM"],
  "d_model": 192, "num_layers": 3, "attention_heads": 4, "ffn_dim": 768, "max_position_embeddings": 512,
  "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "layerdrop": 0.0, "scale_embedding": true}' \
    shakespeare-train.jsonl shakespeare-heldout.jsonl -- --epochs 12 --lr 2e-3 --warmup-ratio 0.05 \
    --batch-size 16 --pack 128 --save last
wanted shakespeare && run shakespeare evaluate -m xcli/shakespeare -i shakespeare-heldout.jsonl --threads 1 > shakespeare-metrics.json

wanted fill-mask && build fill-mask xlm 6000 --lowercase '{"model_type": "xlm", "architectures": ["XLMWithLMHeadModel"],
  "emb_dim": 192, "n_layers": 3, "n_heads": 4, "dropout": 0.1, "attention_dropout": 0.1,
  "max_position_embeddings": 256, "causal": false, "n_langs": 1, "use_lang_emb": false}' \
    tatoeba-train.jsonl tatoeba-heldout.jsonl -- --epochs 3 --lr 1e-3 --warmup-ratio 0.05 --batch-size 64
wanted fill-mask && run fill-mask evaluate -m xcli/fill-mask -i tatoeba-heldout.jsonl --threads 1 --seed 0 > fill-mask-metrics.json

# ------------------------------------------------------------------ model cards
python "$here/examples/builtin_model_cards.py" "$work" "$dest"
du -sh "$dest"/* >&2
