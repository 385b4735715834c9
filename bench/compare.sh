#!/usr/bin/env bash
# Static vs continuous batching on the seed workload, plus the engine ceiling, on the
# GPT-2-small-shaped f16 synthetic model. From a clean checkout:
#   bench/compare.sh            # prints both tables, the ratio, and writes bench/out/*.json
# Environment: THREADS (default: all cores), SLOTS (default 3, the seed's batch size).
SLOTS=${SLOTS:-3}
source "$(dirname "$0")/common.sh"

for policy in static continuous; do
    start_daemon --slots "$SLOTS" --policy "$policy"
    wait_ready
    echo "== seed workload, $policy policy, $SLOTS slots, $THREADS threads"
    "$BATCHCTL" --socket "$SOCK" bench --workload seed --json > "$OUT/seed-$policy.json"
    stop_daemon
done

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
s = json.load(open(f"{out}/seed-static.json"))
c = json.load(open(f"{out}/seed-continuous.json"))
for name, r in (("static", s), ("continuous", c)):
    print(f"{name:<11} wall {r['wall_s']:.2f} s, {r['tokens_per_s']:.1f} tok/s, "
          f"ttft p50 {r['ttft_ms']['p50']:.0f} ms p99 {r['ttft_ms']['p99']:.0f} ms, "
          f"itl p50 {r['itl_ms']['p50']:.1f} ms p99 {r['itl_ms']['p99']:.1f} ms")
print(f"seed wall time: static {s['wall_s']:.2f} s, continuous {c['wall_s']:.2f} s, "
      f"ratio {s['wall_s'] / c['wall_s']:.2f}x")
PY

echo "== engine ceiling (in process, no socket/protocol/scheduler)"
"$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --batches 1,3,16 --tokens 64 | tee "$OUT/ceiling.txt"
