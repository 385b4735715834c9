#!/usr/bin/env bash
# What --deterministic costs: the defaults and --deterministic back to back, as A/B pairs
# (ROUNDS of them, default 3), on the GPT-2-small-shaped f16 synthetic model:
# - the engine alone (`batchd bench-engine`, in process): decode tok/s at B = 1, 2, 16;
# - the daemon (`batchctl bench --workload uniform`): 16 clients and 1 client, ~100-token
#   prompts, 64 tokens each.
# Prints one table row per pair, then the median ratio of each line.
# Environment: THREADS (default: all cores), ROUNDS.
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/common.sh"

# "decode tok/s at B=1 B=2 B=16" of one in-process run.
engine() {
    "$BATCHD" bench-engine --model "$MODEL" --threads "$THREADS" --slots 16 --batches 1,2,16 \
        --prompt-tokens 16 --tokens 64 --json "$@" 2>/dev/null |
        python3 -c 'import json, sys; print(" ".join("%.1f" % p["decode_tok_s"] for p in json.load(sys.stdin)))'
}

# "tok/s ttft_p50_ms itl_p50_ms" of one uniform run against a fresh daemon.
daemon() {
    local mode=$1
    shift
    start_daemon --slots 16 $mode 2>/dev/null
    wait_ready
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --max-tokens 64 --prompt-tokens 100 --json "$@" |
        python3 -c 'import json, sys; r = json.load(sys.stdin); print("%.1f %.0f %.1f" % (r["tokens_per_s"], r["ttft_ms"]["p50"], r["itl_ms"]["p50"]))'
    stop_daemon
}

rows=$(mktemp)
echo "| round | measure | default | --deterministic | ratio |"
echo "|---|---|---:|---:|---:|"
for round in $(seq "$ROUNDS"); do
    read -ra a <<<"$(engine)"
    read -ra b <<<"$(engine --deterministic)"
    for k in 0 1 2; do
        echo "$round|engine decode tok/s, B=$((k == 0 ? 1 : k == 1 ? 2 : 16))|${a[k]}|${b[k]}"
    done >>"$rows"
    for c in 16 1; do
        n=$((c == 16 ? 32 : 6))
        read -r at att ait <<<"$(daemon "" --clients $c --requests $n)"
        read -r bt btt bit <<<"$(daemon --deterministic --clients $c --requests $n)"
        echo "$round|daemon tok/s, C=$c|$at|$bt" >>"$rows"
        echo "$round|daemon ITL p50 ms, C=$c|$ait|$bit" >>"$rows"
        echo "$round|daemon TTFT p50 ms, C=$c|$att|$btt" >>"$rows"
    done
    tail -n 9 "$rows" | awk -F'|' '{printf "| %s | %s | %s | %s | %.2f |\n", $1, $2, $3, $4, $4 / $3}'
done
echo
echo "| measure | median ratio (--deterministic / default) over $ROUNDS pairs |"
echo "|---|---:|"
python3 - "$rows" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    _, name, a, b = line.strip().split("|")
    by.setdefault(name, []).append(float(b) / float(a))
for name, r in by.items():
    print(f"| {name} | {statistics.median(r):.2f} |")
PY
rm -f "$rows"
