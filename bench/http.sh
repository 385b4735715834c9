#!/usr/bin/env bash
# The HTTP API against batchctl on one daemon, same run: 16 concurrent clients, 32 requests
# of 32 tokens each (ignore EOS), through `batchctl bench --workload uniform` and through
# curl streaming over the HTTP socket on 16 parallel connections, request i with the same
# distinct ~16-token prompt on both sides (batchctl's --prompts-out). Prints both aggregate rates, their ratio,
# and the most slots the HTTP run held at once (16 when its clients were batched together).
# ROUNDS > 1 repeats the pair, alternating which side goes first (on a noisy machine the
# order would otherwise favour one side), and prints each round and the median ratio.
# TOGETHER=N adds N rounds of 8 clients each way at the same time (see below).
# Environment: THREADS (default: all cores), SLOTS (default: 16), ROUNDS (default: 1),
# TOGETHER (default: 0).
source "$(dirname "$0")/common.sh"
command -v curl >/dev/null || { echo "needs curl (7.68 or later, for --parallel)" >&2; exit 1; }
CLIENTS=16 REQUESTS=32 TOKENS=32 ROUNDS=${ROUNDS:-1}
HTTP_SOCK=${SOCK%.sock}.http.sock
start_daemon --slots "${SLOTS:-16}" --http-socket "$HTTP_SOCK"
wait_ready

# Prompts 0..REQUESTS-1 of the uniform workload, JSON strings one a line.
"$BATCHCTL" --socket "$SOCK" bench --workload uniform --requests $REQUESTS \
    --prompts-out "$OUT/http-prompts.jsonl"
mapfile -t PROMPTS <"$OUT/http-prompts.jsonl"

# run_batchctl N R: N batchctl clients run requests 0..R-1; prints their tokens/s.
run_batchctl() {
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients "$1" --requests "$2" \
        --max-tokens $TOKENS --json >"$OUT/http-batchctl.json"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_s"])' \
        "$OUT/http-batchctl.json"
}

# run_http N FROM R: one curl running requests FROM..FROM+R-1, N at a time on their own
# connections (like batchctl bench, one process, so neither side pays a process start
# per request); prints their tokens/s and the most slots busy at once.
run_http() {
    local cfg=$OUT/http-curl.cfg busy=0 start end pid
    : >"$cfg"
    for i in $(seq "$2" $(($2 + $3 - 1))); do
        [ "$i" -gt "$2" ] && echo next >>"$cfg"
        body=$(printf '{"prompt": %s, "max_tokens": %d, "ignore_eos": true, "stream": true}' \
            "${PROMPTS[$i]}" $TOKENS | sed 's/\\/\\\\/g; s/"/\\"/g')
        printf 'url = "http://localhost/v1/completions"\nunix-socket = "%s"\n' "$HTTP_SOCK" >>"$cfg"
        printf 'header = "content-type: application/json"\ndata = "%s"\n' "$body" >>"$cfg"
    done
    start=$(date +%s.%N)
    curl -sN --no-progress-meter -Z --parallel-immediate --parallel-max "$1" --config "$cfg" \
        >"$OUT/http-sse.txt" &
    pid=$!
    # Polled without python: on a small machine a python start every poll costs the HTTP
    # side a good part of a core that the batchctl side does not pay.
    while kill -0 $pid 2>/dev/null; do
        b=$("$BATCHCTL" --socket "$SOCK" status --json | grep -o '"slots_busy": *[0-9]*' |
            grep -o '[0-9]*$')
        [ "${b:-0}" -gt "$busy" ] && busy=$b
        sleep 0.1
    done
    wait $pid
    end=$(date +%s.%N)
    ended=$(grep -c '^data: \[DONE\]' "$OUT/http-sse.txt")
    [ "$ended" -eq "$3" ] || { echo "only $ended of $3 HTTP streams ended with [DONE]" >&2; exit 1; }
    python3 -c "print($3 * $TOKENS / ($end - $start), $busy)"
}

report() { # ROUND ORDER BATCHCTL_RATE HTTP_RATE BUSY
    python3 -c "
s, h = $3, $4
print(f'round $1 ($2)')
print(f'batchctl (socket): {s:8.1f} tok/s')
print(f'HTTP (curl, SSE):  {h:8.1f} tok/s   {h / s:.2f}x of batchctl; most slots busy at once: $5')
"
}

median() { # NAME RATIO...
    local name=$1; shift
    python3 -c "import statistics; print(f'median HTTP/batchctl, $name: {statistics.median([$(IFS=,; echo "$*")]):.2f}x')"
}

ratios=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        order="batchctl first"
        socket_rate=$(run_batchctl $CLIENTS $REQUESTS)
        read -r http_rate busy < <(run_http $CLIENTS 0 $REQUESTS)
    else
        order="HTTP first"
        read -r http_rate busy < <(run_http $CLIENTS 0 $REQUESTS)
        socket_rate=$(run_batchctl $CLIENTS $REQUESTS)
    fi
    ratios+=("$(python3 -c "print($http_rate / $socket_rate)")")
    report "$round" "$order" "$socket_rate" "$http_rate" "$busy"
done
[ "$ROUNDS" -gt 1 ] && median "alternating" "${ratios[@]}"

# TOGETHER rounds: half the clients each way at once, batched in the same steps, so both
# sides see the same machine; each side's rate is its own requests over its own time.
ratios=()
for round in $(seq "${TOGETHER:-0}"); do
    half=$((CLIENTS / 2)) n=$((REQUESTS / 2))
    run_batchctl $half $n >"$OUT/http-together-batchctl" &
    read -r http_rate busy < <(run_http $half $n $n)
    wait $!
    socket_rate=$(cat "$OUT/http-together-batchctl")
    ratios+=("$(python3 -c "print($http_rate / $socket_rate)")")
    report "$round" "together, $half + $half clients" "$socket_rate" "$http_rate" "$busy"
done
[ "${TOGETHER:-0}" -gt 1 ] && median "together" "${ratios[@]}"
exit 0
