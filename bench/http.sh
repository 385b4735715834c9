#!/usr/bin/env bash
# The HTTP API against batchctl on one daemon, same run: 16 concurrent clients, 32 requests
# of 32 tokens each (ignore EOS), through `batchctl bench --workload uniform` and through
# 16 curl loops streaming over the HTTP socket. Prints both aggregate rates, their ratio,
# and the most slots the HTTP run held at once (16 when its clients were batched together).
# ROUNDS > 1 repeats the pair, alternating which side goes first (on a noisy machine the
# order would otherwise favour one side), and prints each round and the median ratio.
# Environment: THREADS (default: all cores), SLOTS (default: 16), ROUNDS (default: 1).
source "$(dirname "$0")/common.sh"
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
CLIENTS=16 REQUESTS=32 TOKENS=32 ROUNDS=${ROUNDS:-1}
HTTP_SOCK=${SOCK%.sock}.http.sock
start_daemon --slots "${SLOTS:-16}" --http-socket "$HTTP_SOCK"
wait_ready

# Prints batchctl's aggregate tokens/s.
run_batchctl() {
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients $CLIENTS \
        --requests $REQUESTS --max-tokens $TOKENS --json >"$OUT/http-batchctl.json"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_s"])' \
        "$OUT/http-batchctl.json"
}

body="{\"prompt\": \"Once upon a time\", \"max_tokens\": $TOKENS, \"ignore_eos\": true, \"stream\": true}"
client() {
    for _ in $(seq $((REQUESTS / CLIENTS))); do
        curl -sN --unix-socket "$HTTP_SOCK" http://localhost/v1/completions \
            -H 'content-type: application/json' -d "$body" | grep -q '^data: \[DONE\]'
    done
}

# Prints the HTTP clients' aggregate tokens/s and the most slots busy at once.
run_http() {
    local busy=0 start end pids=()
    start=$(date +%s.%N)
    for _ in $(seq $CLIENTS); do client & pids+=($!); done
    # Polled without python: on a small machine a python start every poll costs the HTTP
    # side a good part of a core that the batchctl side does not pay.
    while kill -0 "${pids[0]}" 2>/dev/null; do
        b=$("$BATCHCTL" --socket "$SOCK" status --json | grep -o '"slots_busy": *[0-9]*' |
            grep -o '[0-9]*$')
        [ "${b:-0}" -gt "$busy" ] && busy=$b
        sleep 0.1
    done
    for p in "${pids[@]}"; do wait "$p"; done
    end=$(date +%s.%N)
    python3 -c "print($REQUESTS * $TOKENS / ($end - $start), $busy)"
}

ratios=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        order="batchctl first"; socket_rate=$(run_batchctl); read -r http_rate busy < <(run_http)
    else
        order="HTTP first"; read -r http_rate busy < <(run_http); socket_rate=$(run_batchctl)
    fi
    ratios+=("$(python3 -c "print($http_rate / $socket_rate)")")
    python3 -c "
s, h = $socket_rate, $http_rate
print(f'round $round ($order)')
print(f'batchctl (socket): {s:8.1f} tok/s')
print(f'HTTP (curl, SSE):  {h:8.1f} tok/s   {h / s:.2f}x of batchctl; most slots busy at once: $busy')
"
done
[ "$ROUNDS" -gt 1 ] && python3 -c "
import statistics
print(f'median HTTP/batchctl over $ROUNDS rounds: {statistics.median([$(IFS=,; echo "${ratios[*]}")]):.2f}x')
"
exit 0
