#!/usr/bin/env bash
# Set up and run the main job on a fresh machine: build Arbor (release, native CPU), fetch the
# default target model, and generate an answer to a coding request, streaming the text.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product arbor
MODEL="${ARBOR_MODEL:-qwen2.5-coder-1.5b}"
.build/release/arbor models pull "$MODEL"
exec .build/release/arbor generate --model "$MODEL" --max-tokens "${ARBOR_MAX_TOKENS:-200}" \
    --chat "${1:-Write a Python function that checks whether a string is a palindrome, with a short docstring.}"
