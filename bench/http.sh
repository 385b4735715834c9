#!/usr/bin/env bash
# The HTTP API against batchctl on one daemon, same run: 16 concurrent clients, 32 requests
# of 32 tokens each (ignore EOS), through `batchctl bench --workload uniform` and through
# 16 curl loops streaming over the HTTP socket. Prints both aggregate rates, their ratio,
# and the most slots the HTTP run held at once (16 when its clients were batched together).
# Environment: THREADS (default: all cores), SLOTS (default: 16).
source "$(dirname "$0")/common.sh"
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
CLIENTS=16 REQUESTS=32 TOKENS=32
HTTP_SOCK=${SOCK%.sock}.http.sock
start_daemon --slots "${SLOTS:-16}" --http-socket "$HTTP_SOCK"
wait_ready

"$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients $CLIENTS \
    --requests $REQUESTS --max-tokens $TOKENS --json >"$OUT/http-batchctl.json"
socket_rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_s"])' \
    "$OUT/http-batchctl.json")

body="{\"prompt\": \"Once upon a time\", \"max_tokens\": $TOKENS, \"ignore_eos\": true, \"stream\": true}"
client() {
    for _ in $(seq $((REQUESTS / CLIENTS))); do
        curl -sN --unix-socket "$HTTP_SOCK" http://localhost/v1/completions \
            -H 'content-type: application/json' -d "$body" | grep -q '^data: \[DONE\]'
    done
}
busy=0
start=$(date +%s.%N)
pids=()
for _ in $(seq $CLIENTS); do client & pids+=($!); done
while kill -0 "${pids[0]}" 2>/dev/null; do
    b=$("$BATCHCTL" --socket "$SOCK" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["slots_busy"])')
    [ "$b" -gt "$busy" ] && busy=$b
    sleep 0.05
done
for p in "${pids[@]}"; do wait "$p"; done
end=$(date +%s.%N)
http_rate=$(python3 -c "print($REQUESTS * $TOKENS / ($end - $start))")
python3 -c "
s, h = $socket_rate, $http_rate
print(f'batchctl (socket): {s:8.1f} tok/s')
print(f'HTTP (curl, SSE):  {h:8.1f} tok/s   {h / s:.2f}x of batchctl; most slots busy at once: $busy')
"
