#!/usr/bin/env bash
# batchd's defaults against llama-server's defaults, back to back in one run, on the
# GPT-2-small-shaped f16 synthetic model, with the same prompts: uniform (32 x 64 tokens,
# 16 clients) with ~12- and ~100-token prompts, one client, and the long-prompt workload
# (4 streams + a 900-token prompt). llama-server comes from ../shared/anchors (built on
# first use). Environment: THREADS (default: all cores), ANCHORS (build dir), PORT,
# BATCHD_FLAGS (extra flags for batchd, e.g. to compare a setting), SKIP_SERVER=1 (batchd only).
source "$(dirname "$0")/common.sh"
read -r -a EXTRA <<<"${BATCHD_FLAGS:-}"
RUNS=(prompt12 prompt100 single)
declare -A CLIENTS=([prompt12]=16 [prompt100]=16 [single]=1)
declare -A TOKENS=([prompt12]=12 [prompt100]=100 [single]=12)
for r in "${RUNS[@]}"; do
    "$BATCHCTL" bench --workload uniform --requests 32 --max-tokens 64 \
        --prompt-tokens "${TOKENS[$r]}" --prompts-out "$OUT/prompts-$r.jsonl"
done

if [ -z "${SKIP_SERVER:-}" ]; then
    start_llama_server
    for r in "${RUNS[@]}"; do
        python3 "$SHARED/load_prompts.py" "$PORT" "${CLIENTS[$r]}" "$OUT/prompts-$r.jsonl" 64 \
            | tee "$OUT/server-$r.txt"
    done
    python3 "$SHARED/long_prompt.py" "$PORT" 4 900 | tee "$OUT/server-long.txt"
    stop_llama_server
fi

echo "== batchd defaults ${EXTRA[*]}, $THREADS threads"
start_daemon "${EXTRA[@]}" 2>>"$OUT/batchd.log"
wait_ready
for r in "${RUNS[@]}"; do
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients "${CLIENTS[$r]}" \
        --requests 32 --max-tokens 64 --prompt-tokens "${TOKENS[$r]}" --json >"$OUT/batchd-$r.json"
done
"$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json >"$OUT/batchd-long.json"
stop_daemon

python3 - "$OUT" "${SKIP_SERVER:-}" <<'PY'
import json, re, sys
out, skip = sys.argv[1], sys.argv[2]
def server(name):
    if skip:
        return None
    text = open(f"{out}/server-{name}.txt").read()
    if name == "long":
        m = re.search(r"first token after ([\d.]+)s.*ITL p50 ([\d.]+) ms p99 ([\d.]+) ms", text)
        return float(m[1]) * 1000, float(m[3]) / float(m[2])
    return float(re.search(r"-> ([\d.]+) tok/s", text)[1])
rows = [("16 clients, ~12-token prompts", "prompt12"), ("16 clients, ~100-token prompts", "prompt100"),
        ("1 client, ~12-token prompts", "single")]
print(f"{'workload (32 x 64 tokens)':<32} {'llama-server':>13} {'batchd':>9} {'ratio':>7}")
for label, name in rows:
    b = json.load(open(f"{out}/batchd-{name}.json"))["tokens_per_s"]
    s = server(name)
    print(f"{label:<32} {s if s else float('nan'):>13.1f} {b:>9.1f} {b / s if s else float('nan'):>7.2f}")
lp = json.load(open(f"{out}/batchd-long.json"))
s = server("long")
print(f"long prompt ({lp['long_prompt_tokens']} tokens) first token: batchd {lp['long_ttft_ms']:.0f} ms"
      + (f", llama-server {s[0]:.0f} ms (ratio {lp['long_ttft_ms'] / s[0]:.2f})" if s else ""))
print(f"streams' ITL p99/p50 while it is in flight: batchd {lp['streams_itl_ratio']:.2f} "
      f"(p50 {lp['streams_itl_ms']['p50']:.1f} ms)" + (f", llama-server {s[1]:.2f}" if s else ""))
PY
