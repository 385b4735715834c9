# Shared setup of the bench scripts (sourced): release build, the GPT-2-small-shaped f16
# synthetic model, a temp socket, and a daemon that is stopped on exit.
# Environment: THREADS (default: all cores).
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
