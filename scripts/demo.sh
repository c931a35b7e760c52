#!/usr/bin/env bash
# Set up and run the main job on a fresh machine: build Arbor (release, native CPU), fetch the
# default pair (draft qwen2.5-coder-0.5b, target qwen2.5-coder-1.5b), and answer a coding request
# with speculative decoding (the router picks the drafter: prompt lookup, the suffix tree, the draft
# model, or the suffix tree and the draft model merged), streaming the text (the output is the target's own; the speculation
# statistics go to stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
swift build -c release --product arbor
MODEL="${ARBOR_MODEL:-qwen2.5-coder-1.5b}"
DRAFT="${ARBOR_DRAFT:-qwen2.5-coder-0.5b}"
.build/release/arbor models pull "$MODEL" "$DRAFT"
exec .build/release/arbor generate --model "$MODEL" --drafter auto --draft "$DRAFT" --max-tokens "${ARBOR_MAX_TOKENS:-200}" \
    --chat "${1:-Write a Python function that checks whether a string is a palindrome, with a short docstring.}"
