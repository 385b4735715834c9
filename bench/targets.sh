#!/usr/bin/env bash
# The measurement issue's targets in one run, on the GPT-2-small-shaped f16 synthetic model:
# the in-process engine ceiling, then the daemon (uniform C=1 and C=16, long-prompt) and
# startup-to-first-token, back to back on the same machine. Writes bench/out/*.json and
# prints a summary. Environment: THREADS (default: all cores), SLOTS (default 16).
SLOTS=${SLOTS:-16}
source "$(dirname "$0")/common.sh"

echo "== engine ceiling: B sequences of 4 prompt tokens, 64 generated each ($THREADS threads)"
"$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --slots "$SLOTS" \
    --batches 1,4,8,16,32 --prompt-tokens 4 --tokens 64 --json > "$OUT/ceiling.json"
python3 - "$OUT/ceiling.json" <<'PY'
import json, sys
print("    B   prefill tok/s   decode tok/s   ms/step   prefill+decode tok/s")
for p in json.load(open(sys.argv[1])):
    print(f"{p['batch']:>5} {p['prefill_tok_s']:>15.1f} {p['decode_tok_s']:>14.1f} "
          f"{p['step_ms']:>9.2f} {p['e2e_tok_s']:>22.1f}")
PY

# Startup: from exec to the first generated token, batchd cold (model mmapped from cache).
start=$(date +%s.%N)
start_daemon --slots "$SLOTS" 2>/dev/null
until "$BATCHCTL" --socket "$SOCK" generate "Hello" --max-tokens 1 >/dev/null 2>&1; do sleep 0.005; done
end=$(date +%s.%N)
python3 -c "print(f'== start to first token: {($end - $start) * 1000:.0f} ms')" | tee "$OUT/startup.txt"

echo "== daemon: uniform, 1 client"
"$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients 1 --requests 4 --max-tokens 64 --json > "$OUT/uniform-c1.json"
echo "== daemon: uniform, 16 clients"
"$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients 16 --requests 64 --max-tokens 64 --json > "$OUT/uniform-c16.json"
echo "== daemon: long prompt while 4 streams decode"
"$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json > "$OUT/long-prompt.json"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
ceiling = {p["batch"]: p for p in json.load(open(f"{out}/ceiling.json"))}
c1 = json.load(open(f"{out}/uniform-c1.json"))
c16 = json.load(open(f"{out}/uniform-c16.json"))
lp = json.load(open(f"{out}/long-prompt.json"))
def line(name, daemon, b):
    dec, e2e = ceiling[b]["decode_tok_s"], ceiling[b]["e2e_tok_s"]
    print(f"{name:<12} daemon {daemon:7.1f} tok/s | ceiling B={b}: decode-only {dec:7.1f} "
          f"(ratio {daemon / dec:.3f}), prefill+decode {e2e:7.1f} (ratio {daemon / e2e:.3f})")
line("uniform C=1", c1["tokens_per_s"], 1)
line("uniform C=16", c16["tokens_per_s"], 16)
s = lp["streams_itl_ms"]
print(f"long-prompt  streams' inter-token latency p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, "
      f"p99/p50 {lp['streams_itl_ratio']:.2f}; long prompt ({lp['long_prompt_tokens']} tokens) "
      f"first token after {lp['long_ttft_ms']:.0f} ms")
PY
