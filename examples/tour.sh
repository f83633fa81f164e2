#!/usr/bin/env bash
# A tour of the model commands on tiny random checkpoints (answers are nonsense; the plumbing is real).
# usage: examples/tour.sh [DIR]   (DIR defaults to a fresh temporary directory)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$(mktemp -d)}
python "$here/make_tiny_models.py" "$dir" >/dev/null

echo "a gripping, funny film" | xcli classify -m "$dir/xlnet-tiny-sst2"
xcli fill-mask -m "$dir/xlnet-tiny-lm" --top-k 2 "Paris is the <mask> of France."
echo '{"id": 7, "question": "Who wrote it?", "context": "The book was written by Jane Austen in 1813."}' \
  | xcli qa -m "$dir/mvp-tiny-qa"
xcli generate -m "$dir/xlnet-tiny-lm" --max-new-tokens 4 -O text "Once upon a time"
xcli info -m "$dir/mvp-tiny" -O text | head -n 3
xcli convert "$dir/mvp-tiny" "$dir/mvp-tiny-bf16" --dtype bfloat16 --quiet
printf '{"text": "great", "label": "positive"}\n{"text": "awful", "label": "negative"}\n' \
  | xcli train -m "$dir/xlnet-tiny-sst2" --train - --output "$dir/trained" --max-steps 2 --threads 1 2>/dev/null
