#!/usr/bin/env bash
# Packed vs alone on the GPT-2-small-shaped f16 synthetic model, the e2e test's scenario at
# full size: 12 greedy requests of 64 tokens through 6 slots, one with a ~600-token
# prompt prefilled in 48-token chunks while the others decode. Each request runs alone,
# then all 12 at once; prints how many differ. Extra arguments go to batchd, e.g.
# `bench/invariance.sh --deterministic` or `bench/invariance.sh --flash-attn off`.
# For the AVX2 kernels on an AVX-512 machine: RUSTFLAGS="-C target-cpu=x86-64-v3"
# CARGO_TARGET_DIR=target-avx2 bench/invariance.sh ...
source "$(dirname "$0")/common.sh"
prompts=$OUT/invariance-prompts.txt
python3 - "$prompts" <<'PY'
import sys
p = ["The capital of France is", "Today's weather is so", "In machine learning, a transformer is",
     "Once upon a time in a land far away,", "Quantum computing differs from classical computing because",
     "The history of the Roman Empire began", "Hello", "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
     "def fibonacci(n): if n < 2: return n", "Ünïcödé ✓ and emoji 🦀 are bytes too",
     "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20",
     "Continuous batching packs every running sequence into one forward pass. " * 48]
open(sys.argv[1], "w").write("\n".join(p) + "\n")
PY
start_daemon --slots 6 --prefill-chunk 48 "$@" 2>/dev/null
wait_ready
gen() { "$BATCHCTL" --socket "$SOCK" generate -f - -n 64 --ignore-eos --json; }
while IFS= read -r p; do printf '%s\n' "$p" | gen; done <"$prompts" >"$OUT/invariance-alone.jsonl"
gen <"$prompts" >"$OUT/invariance-packed.jsonl"
stop_daemon
python3 - "$OUT/invariance-alone.jsonl" "$OUT/invariance-packed.jsonl" "$*" <<'PY'
import json, sys
alone = [json.loads(l)["text"] for l in open(sys.argv[1])]
packed = [json.loads(l)["text"] for l in open(sys.argv[2])]
diff = [i for i, (a, b) in enumerate(zip(alone, packed)) if a != b]
print(f"batchd {sys.argv[3] or '(defaults)'}: {len(diff)}/{len(alone)} requests differ packed vs alone {diff}")
PY
