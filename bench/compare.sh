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
    # Every step of the run, to price it against the engine alone below.
    "$BATCHCTL" --socket "$SOCK" trace > "$OUT/seed-$policy.trace" &
    TRACE=$!
    sleep 0.2
    "$BATCHCTL" --socket "$SOCK" bench --workload seed --json > "$OUT/seed-$policy.json"
    kill -INT $TRACE; wait $TRACE || true
    stop_daemon
done
# The engine alone at each batch size of the continuous run, decoding around the mean
# position that size's steps decoded at there: attention costs grow with the position, so a
# step at position 260 must not be priced as one at position 40.
python3 - "$OUT/seed-continuous.trace" >"$OUT/seed-positions.txt" <<'PY'
import collections, re, statistics, sys
pos = collections.defaultdict(list)
for block in open(sys.argv[1]).read().split("\nstep "):
    ps = [int(p) for p in re.findall(r"decode\(1\)\s+pos (\d+)", block)]
    if ps and "PREFILL" not in block:
        pos[len(ps)].append(statistics.mean(ps))
for b, ps in sorted(pos.items()):
    print(b, round(statistics.mean(ps)))
PY
while read -r b pos; do
    "$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --batches "$b" \
        --prompt-tokens $((pos > 16 ? pos - 16 : 1)) --tokens 32 --json >"$OUT/seed-ceiling-$b.json"
done <"$OUT/seed-positions.txt"

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
# The continuous run's own steps: how many at each batch size (sequences in the step),
# priced at bench-engine's decode step for that size at those steps' mean position, and the
# engine thread's own step time.
import re, collections
positions = dict(map(int, l.split()) for l in open(f"{out}/seed-positions.txt"))
step_ms = {p["batch"]: p["step_ms"] for b in positions for p in json.load(open(f"{out}/seed-ceiling-{b}.json"))}
steps, seqs, micros = collections.Counter(), 0, 0
for block in open(f"{out}/seed-continuous.trace").read().split("\nstep ")[0:]:
    m = re.search(r"(\d+) tokens, \d+ pass(?:es)?, ([\d.]+) ms", block)
    if not m:
        continue
    steps[block.count("\n  slot ")] += 1
    micros += float(m[2])
engine = sum(n * step_ms[b] for b, n in steps.items() if b in step_ms)
print("continuous steps by batch size: " + ", ".join(
    f"B={b}: {n} (mean position {positions.get(b, '-')}, bench-engine {step_ms.get(b, 0):.2f} ms/step)"
    for b, n in sorted(steps.items())))
print(f"engine cost of those steps (bench-engine ms/step at each B and position): {engine / 1000:.2f} s; "
      f"the daemon's own step time {micros / 1000:.2f} s; wall {c['wall_s']:.2f} s "
      f"= {c['wall_s'] * 1000 / engine:.3f}x the engine cost")
PY

echo "== engine ceiling (in process, no socket/protocol/scheduler)"
"$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --batches 1,3,16 --tokens 64 | tee "$OUT/ceiling.txt"
