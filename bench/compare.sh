#!/usr/bin/env bash
# Static vs continuous batching on the seed workload, plus the engine ceiling, on the
# GPT-2-small-shaped f16 synthetic model. From a clean checkout:
#   bench/compare.sh            # prints both tables, the ratio, and writes bench/out/*.json
# Environment: THREADS (default: all cores), SLOTS (default 3, the seed's batch size).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
SLOTS=${SLOTS:-3}
OUT=bench/out
mkdir -p "$OUT"

cargo build --release --bins -q
BATCHD=target/release/batchd
BATCHCTL=target/release/batchctl
MODEL=$OUT/gpt2-small-synthetic-f16.gguf
[ -f "$MODEL" ] || "$BATCHD" make-model --shape small --out "$MODEL"

SOCK=$(mktemp -u /tmp/batchd-bench-XXXXXX.sock)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -f "$SOCK"; }
trap cleanup EXIT

start() { # policy
    "$BATCHD" --model "$MODEL" --socket "$SOCK" --slots "$SLOTS" --threads "$THREADS" --policy "$1" &
    PID=$!
    for _ in $(seq 300); do [ -S "$SOCK" ] && "$BATCHCTL" --socket "$SOCK" status >/dev/null 2>&1 && return; sleep 0.1; done
    echo "batchd did not start" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" || true; PID=; }

for policy in static continuous; do
    start "$policy"
    echo "== seed workload, $policy policy, $SLOTS slots, $THREADS threads"
    "$BATCHCTL" --socket "$SOCK" bench --workload seed
    "$BATCHCTL" --socket "$SOCK" bench --workload seed --json > "$OUT/seed-$policy.json"
    stop
done

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
s = json.load(open(f"{out}/seed-static.json"))
c = json.load(open(f"{out}/seed-continuous.json"))
print(f"seed wall time: static {s['wall_s']:.2f} s, continuous {c['wall_s']:.2f} s, "
      f"ratio {s['wall_s'] / c['wall_s']:.2f}x")
print(f"seed tok/s:     static {s['tokens_per_s']:.1f}, continuous {c['tokens_per_s']:.1f}")
PY

echo "== engine ceiling (in process, no socket/protocol/scheduler)"
"$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --batches 1,3,16 --tokens 64 | tee "$OUT/ceiling.txt"
