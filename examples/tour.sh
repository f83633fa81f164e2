#!/usr/bin/env bash
# A tour of the commands: the built-in models answer for real (classify, fill-mask, generate, score);
# qa, info, convert and train run on tiny random checkpoints (their answers are noise, the plumbing is real).
# usage: examples/tour.sh [DIR]   (DIR defaults to a fresh temporary directory)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$(mktemp -d)}

# the built-in models (xcli models lists them); without -m each command uses its own
xcli classify --quiet "a gripping, funny film"
xcli classify -m xcli/ner --aggregation first "Tony Blair met Bill Clinton in Washington ."
xcli fill-mask --quiet --top-k 3 "I have to <mask> to school tomorrow."
xcli generate --quiet --max-new-tokens 16 -O text "ROMEO:"
echo '{"text": "To be, or not to be:", "choices": ["that is the question", "the refrigerator is open"]}' \
  | xcli score --quiet

# tiny random checkpoints for the rest
python "$here/make_tiny_models.py" "$dir" >/dev/null
echo '{"id": 7, "question": "Who wrote it?", "context": "The book was written by Jane Austen in 1813."}' \
  | xcli qa -m "$dir/mvp-tiny-qa"
xcli info -m "$dir/mvp-tiny" -O text | head -n 3
xcli convert "$dir/mvp-tiny" "$dir/mvp-tiny-bf16" --dtype bfloat16 --quiet
printf '{"text": "great", "label": "positive"}\n{"text": "awful", "label": "negative"}\n' \
  | xcli train -m "$dir/xlnet-tiny-sst2" --train - --output "$dir/trained" --max-steps 2 --threads 1 2>/dev/null
