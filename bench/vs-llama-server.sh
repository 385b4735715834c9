#!/usr/bin/env bash
# batchd's defaults against llama-server's defaults, back to back in one run, on the
# GPT-2-small-shaped f16 synthetic model, with the same prompts: uniform (32 x 64 tokens,
# 16 clients) with ~12- and ~100-token prompts, one client, and the long-prompt workload
# (4 streams + a 900-token prompt). llama-server comes from ../shared/anchors (built on
# first use). Environment: THREADS (default: all cores), ANCHORS (build dir), PORT,
# BATCHD_FLAGS (extra flags for batchd, e.g. to compare a setting), SKIP_SERVER=1 (batchd only),
# ROUNDS (default 3).
source "$(dirname "$0")/common.sh"
read -r -a EXTRA <<<"${BATCHD_FLAGS:-}"
RUNS=(prompt12 prompt100 single)
declare -A CLIENTS=([prompt12]=16 [prompt100]=16 [single]=1)
declare -A TOKENS=([prompt12]=12 [prompt100]=100 [single]=12)
for r in "${RUNS[@]}"; do
    "$BATCHCTL" bench --workload uniform --requests 32 --max-tokens 64 \
        --prompt-tokens "${TOKENS[$r]}" --prompts-out "$OUT/prompts-$r.jsonl"
done

# One round of each, alternating, ROUNDS times (default 3): this machine's timing drifts by
# ±10% over minutes, so each round's ratio compares neighbours and the median is reported.
server_round() { # ROUND
    start_llama_server
    for r in "${RUNS[@]}"; do
        python3 "$SHARED/load_prompts.py" "$PORT" "${CLIENTS[$r]}" "$OUT/prompts-$r.jsonl" 64 \
            | tee "$OUT/server-$r-$1.txt"
    done
    python3 "$SHARED/long_prompt.py" "$PORT" 4 900 | tee "$OUT/server-long-$1.txt"
    stop_llama_server
}
batchd_round() { # ROUND
    echo "== batchd defaults ${EXTRA[*]}, $THREADS threads"
    start_daemon "${EXTRA[@]}" 2>>"$OUT/batchd.log"
    wait_ready
    for r in "${RUNS[@]}"; do
        "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients "${CLIENTS[$r]}" \
            --requests 32 --max-tokens 64 --prompt-tokens "${TOKENS[$r]}" --json >"$OUT/batchd-$r-$1.json"
    done
    "$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json >"$OUT/batchd-long-$1.json"
    stop_daemon
    # What the kernels allow, no scheduler involved: B sequences of 12 prompt tokens
    # prefilled together, then 64 tokens decoded together.
    "$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --batches 1,16 \
        --prompt-tokens 12 --tokens 64 --json >"$OUT/ceiling-$1.json" 2>>"$OUT/batchd.log"
}
ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
    [ -n "${SKIP_SERVER:-}" ] || server_round "$round"
    batchd_round "$round"
done

python3 - "$OUT" "${SKIP_SERVER:-}" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, skip, rounds = sys.argv[1], sys.argv[2], range(1, int(sys.argv[3]) + 1)
def server(name, k):
    if skip:
        return None
    text = open(f"{out}/server-{name}-{k}.txt").read()
    if name == "long":
        m = re.search(r"first token after ([\d.]+)s.*ITL p50 ([\d.]+) ms p99 ([\d.]+) ms", text)
        return float(m[1]) * 1000, float(m[3]) / float(m[2])
    return float(re.search(r"-> ([\d.]+) tok/s", text)[1])
def batchd(name, k):
    return json.load(open(f"{out}/batchd-{name}-{k}.json"))
def cell(b, s):
    return f"{s:.1f} / {b:.1f} = {b / s:.2f}" if s else f"{b:.1f}"
def median(xs):
    return f"{statistics.median(xs):.2f}" if xs and None not in xs else "-"
rows = [("16 clients, ~12-token prompts (tok/s)", "prompt12"),
        ("16 clients, ~100-token prompts (tok/s)", "prompt100"),
        ("1 client, ~12-token prompts (tok/s)", "single")]
head = "| workload | " + " | ".join(f"round {k}: llama-server / batchd" for k in rounds) + " | median ratio |"
print(head)
print("|---" * (len(rounds) + 2) + "|")
for label, name in rows:
    cells, ratios = [], []
    for k in rounds:
        b, s = batchd(name, k)["tokens_per_s"], server(name, k)
        cells.append(cell(b, s))
        ratios.append(b / s if s else None)
    print(f"| {label} | " + " | ".join(cells) + f" | {median(ratios)} |")
ceil = [{p["batch"]: p["e2e_tok_s"] for p in json.load(open(f"{out}/ceiling-{k}.json"))} for k in rounds]
print("| engine ceiling, B = 16 / B = 1 (bench-engine: prefill + decode, tok/s) | "
      + " | ".join(f"{c[16]:.1f} / {c[1]:.1f}" for c in ceil) + " | |")
cells, ratios, itl = [], [], []
for k in rounds:
    lp, s = batchd("long", k), server("long", k)
    b = lp["long_ttft_ms"] / 1000
    cells.append(f"{s[0] / 1000:.2f} / {b:.2f} = {b * 1000 / s[0]:.2f}" if s else f"{b:.2f}")
    ratios.append(b * 1000 / s[0] if s else None)
    itl.append((lp["streams_itl_ratio"], s[1] if s else None))
print(f"| 900-token prompt's first token (s; ratio: batchd / llama-server) | " + " | ".join(cells)
      + f" | {median(ratios)} |")
print("| streams' ITL p99/p50 while it is in flight (llama-server / batchd) | "
      + " | ".join(f"{s:.1f} / {b:.2f}" if s else f"{b:.2f}" for b, s in itl)
      + f" | batchd {statistics.median(b for b, _ in itl):.2f} |")
PY
