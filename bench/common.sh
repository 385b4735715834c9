# Shared setup of the bench scripts (sourced): release build, the GPT-2-small-shaped f16
# synthetic model, a temp socket, a daemon that is stopped on exit, and llama-server.
# Environment: THREADS (default: all cores), ANCHORS (llama-server's build dir), PORT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS=${THREADS:-$(nproc)}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --bins -q
BATCHD=${CARGO_TARGET_DIR:-target}/release/batchd
BATCHCTL=${CARGO_TARGET_DIR:-target}/release/batchctl
MODEL=$OUT/gpt2-small-synthetic-f16.gguf
[ -f "$MODEL" ] || "$BATCHD" make-model --shape small --out "$MODEL"

SOCK=$(mktemp -u /tmp/batchd-bench-XXXXXX.sock)
DAEMON_ARGS=(--threads "$THREADS")
source bench/daemon.sh
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -f "$SOCK"; }
trap cleanup EXIT

# llama-server from ../shared/anchors (built on first use into $ANCHORS) with the model and
# -np 16, its defaults otherwise, on $PORT; returns once it is healthy.
ANCHORS=${ANCHORS:-/tmp/lcpp-build}
PORT=${PORT:-18080}
SHARED=$(cd .. && pwd)/shared/anchors
SERVER=
start_llama_server() {
    bash "$SHARED/setup.sh" "$ANCHORS" >/dev/null
    echo "== llama-server -np 16 (its defaults), $THREADS threads"
    "$ANCHORS/bin/llama-server" -m "$MODEL" --port "$PORT" -np 16 -c $((16 * 1024)) \
        -t "$THREADS" >"$OUT/llama-server.log" 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true; cleanup; true' EXIT
    until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
}
stop_llama_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
