# Starting, waiting for and stopping one batchd, for the bench scripts (sourced).
# Needs BATCHD, BATCHCTL, MODEL, SOCK and DAEMON_ARGS (flags every start gets);
# DAEMON_LOG, when set, collects the daemon's output instead of the terminal.
PID=

# Starts batchd on $SOCK with the model, $DAEMON_ARGS and the given extra flags.
start_daemon() {
    "$BATCHD" --model "$MODEL" --socket "$SOCK" "${DAEMON_ARGS[@]}" "$@" \
        >>"${DAEMON_LOG:-/dev/stdout}" 2>>"${DAEMON_LOG:-/dev/stderr}" &
    PID=$!
}

# Waits until the daemon answers status; stops the script if it exits or takes 30 s.
wait_ready() {
    for _ in $(seq 300); do
        "$BATCHCTL" --socket "$SOCK" status >/dev/null 2>&1 && return
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "batchd exited while starting" >&2
            [ -n "${DAEMON_LOG:-}" ] && tail -20 "$DAEMON_LOG" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "batchd did not start" >&2
    exit 1
}

stop_daemon() { kill "$PID"; wait "$PID" || true; PID=; }
