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

# ner: a masked LM learnt first from the words of eng.train and Tatoeba's English (no labels), then
# the token head on eng.train's labels
if wanted ner; then
    echo "== ner" >&2
    : > ner-commands.txt
    printf '%s\n' '{"model_type": "xlm", "architectures": ["XLMWithLMHeadModel"], "emb_dim": 192, "n_layers": 4,
  "n_heads": 4, "dropout": 0.1, "attention_dropout": 0.1, "max_position_embeddings": 256, "causal": false,
  "n_langs": 1, "use_lang_emb": false}' > ner-config.json
    run ner vocab --family xlm --size 8000 -i ner-pretrain.jsonl -o ner-init -c ner-config.json --force \
        > ner-vocab.json
    run ner train -m ner-init --from-scratch --train ner-pretrain.jsonl -o ner-lm --force --threads 1 --seed 0 \
        --epochs 3 --lr 1e-3 --warmup-ratio 0.05 --batch-size 64 > ner-lm-train.json
    run ner train -m ner-lm --task token-classification --labels O,B-PER,I-PER,B-LOC,I-LOC,B-ORG,I-ORG,B-MISC,I-MISC \
        --train conll-train.jsonl --dev conll-testa.jsonl -o ner-trained --force --threads 1 --seed 0 \
        --epochs 10 --lr 5e-4 --warmup-ratio 0.1 --batch-size 32 > ner-train.json
    run ner convert ner-trained xcli/ner --dtype float16 --force > ner-convert.json
    run ner evaluate -m xcli/ner -i conll-testb.jsonl --threads 1 > ner-metrics.json
fi

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
