#!/usr/bin/env bash
# The prefix cache's "Done when", in one run on the GPT-2-small-shaped f16 synthetic model:
# the shared-prefix workload (32 requests, a ~500-token shared prefix + a distinct question,
# 32 tokens each, 16 clients) on llama-server -np 16 (its defaults, per-slot prompt cache),
# batchd with the cache off and batchd's defaults; then the uniform workload (16 clients)
# with the cache off and on. Environment: THREADS (default: all cores), ANCHORS (llama.cpp
# anchors build dir), PORT, SKIP_SERVER=1 (batchd only).
source "$(dirname "$0")/common.sh"
"$BATCHCTL" bench --workload shared-prefix --prompts-out "$OUT/prompts-shared.jsonl"

if [ -z "${SKIP_SERVER:-}" ]; then
    start_llama_server
    python3 "$SHARED/load_prompts.py" "$PORT" 16 "$OUT/prompts-shared.jsonl" 32 \
        | tee "$OUT/server-shared.txt"
    stop_llama_server
fi

run() { # NAME WORKLOAD-ARGS... -- DAEMON-FLAGS...
    local name=$1; shift
    local bench=()
    while [ "$1" != "--" ]; do bench+=("$1"); shift; done
    shift
    start_daemon "$@" 2>>"$OUT/batchd.log"
    wait_ready
    "$BATCHCTL" --socket "$SOCK" bench "${bench[@]}" --json >"$OUT/prefix-$name.json"
    stop_daemon
}
run shared-off --workload shared-prefix -- --prefix-cache-mb 0
run shared-on --workload shared-prefix --
run uniform-off --workload uniform --clients 16 -- --prefix-cache-mb 0
run uniform-on --workload uniform --clients 16 --

python3 - "$OUT" "${SKIP_SERVER:-}" <<'PY'
import json, re, sys
out, skip = sys.argv[1], sys.argv[2]
def b(name):
    return json.load(open(f"{out}/prefix-{name}.json"))
print(f"{'shared-prefix (32 x 32 tokens, 16 clients)':<44} {'wall s':>7} {'tok/s':>7} {'prompt tokens computed':>23}")
if not skip:
    t = open(f"{out}/server-shared.txt").read()
    m = re.search(r"in ([\d.]+)s -> ([\d.]+) tok/s; prompt tokens evaluated (\d+)", t)
    server_wall = float(m[1])
    print(f"{'llama-server -np 16':<44} {server_wall:>7.2f} {float(m[2]):>7.1f} {int(m[3]):>23}")
for label, name in [("batchd --prefix-cache-mb 0", "shared-off"), ("batchd defaults (prefix cache on)", "shared-on")]:
    r = b(name)
    print(f"{label:<44} {r['wall_s']:>7.2f} {r['tokens_per_s']:>7.1f} {r['prompt_tokens'] - r['cached_tokens']:>23}")
if not skip:
    print(f"batchd / llama-server wall time: {b('shared-on')['wall_s'] / server_wall:.2f}")
off, on = b("uniform-off"), b("uniform-on")
print(f"uniform (32 x 64 tokens, 16 clients): cache off {off['tokens_per_s']:.1f} tok/s, "
      f"on {on['tokens_per_s']:.1f} tok/s (on/off {on['tokens_per_s'] / off['tokens_per_s']:.3f}; "
      f"{on['cached_tokens']} tokens reused)")
PY
