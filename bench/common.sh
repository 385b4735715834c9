# Shared setup of the bench scripts (sourced): release build, the GPT-2-small-shaped f16
# synthetic model, a temp socket, and a daemon that is stopped on exit.
# Environment: THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS=${THREADS:-$(nproc)}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --bins -q
BATCHD=target/release/batchd
BATCHCTL=target/release/batchctl
MODEL=$OUT/gpt2-small-synthetic-f16.gguf
[ -f "$MODEL" ] || "$BATCHD" make-model --shape small --out "$MODEL"

SOCK=$(mktemp -u /tmp/batchd-bench-XXXXXX.sock)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -f "$SOCK"; }
trap cleanup EXIT

# Starts batchd on $SOCK with the model, $THREADS threads and the given extra flags.
start_daemon() {
    "$BATCHD" --model "$MODEL" --socket "$SOCK" --threads "$THREADS" "$@" &
    PID=$!
}

# Waits until the daemon answers status.
wait_ready() {
    for _ in $(seq 300); do
        "$BATCHCTL" --socket "$SOCK" status >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "batchd did not start" >&2
    exit 1
}

stop_daemon() { kill "$PID"; wait "$PID" || true; PID=; }
