#!/usr/bin/env bash
# Token counts of a TSV data set (a header row, the text in the "sentence" column):
# records, longest, mean, and how many would be cut at 64 tokens.
#
#   examples/token_stats.sh DATA.tsv [MODEL]
#   examples/token_stats.sh ../shared/data/datasets/sst2/dev.tsv xlnet/xlnet-base-cased
set -euo pipefail
data=${1:?usage: $0 DATA.tsv [MODEL]}
model=${2:-xlnet/xlnet-base-cased}

xcli tokenize -m "$model" -i "$data" --input-format tsv --field sentence --count -O text \
  | awk '{ n++; sum += $1; if ($1 > max) max = $1; if ($1 > 64) long++ }
         END { printf "records %d  longest %d  mean %.1f  over 64: %d\n", n, max, sum / n, long }'
