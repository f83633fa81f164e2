#!/usr/bin/env bash
# Two xcli processes in a pipe: texts to ids, then ids back to texts. The first one's
# JSONL ({"ids": [...]}) is the second one's input, one record at a time.
#
#   printf 'Hello world\nNew York\n' | examples/round_trip.sh [MODEL]
set -euo pipefail
model=${1:-xlnet/xlnet-base-cased}

xcli tokenize -m "$model" --fields ids \
  | xcli tokenize -m "$model" --decode --skip-special-tokens -O text
