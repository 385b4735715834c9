#!/usr/bin/env bash
# batchd on CUDA: build here, run on a lent GPU machine, read the numbers back.
#
#   bench/gpu.sh stage          # here: batchd + batchctl linked against shared llama.cpp
#                               # libraries, and the same llama.cpp source, into gpu-stage/
#   bench/gpu.sh device         # on the GPU machine (its command, with gpu-stage carried):
#                               # builds llama.cpp with CUDA from that source (or unpacks
#                               # the libraries an earlier run sent back), writes the
#                               # benchmark model, runs every measurement, writes $OUT
#   bench/gpu.sh report DIR     # here: the tables from what came back in DIR
#
# The device machine has nvcc and cmake but no Rust, so the Rust binaries are built here
# with `--features dynamic-link` and load the CUDA build's libllama.so through
# LD_LIBRARY_PATH. Both sides build the llama.cpp vendored in the llama-cpp-sys-2 crate,
# so the ABI matches. `stage` trims both llama.cpp trees to the kernels the benchmark model
# runs (bench/cuda_slim.py): llama-server's CUDA build then took 130 s on an H200 machine's
# 16 cores, against 15 to 27 minutes for a whole tree (both trees at once took over 10
# minutes on an H100 machine, bench/README.md). `device` packs the libraries into
# $OUT/cuda-libs.tar.xz.* and `stage` puts them back into gpu-stage/ when they are in
# gpu-out/ (or GPU_LIBS=DIR), so later runs skip the build; so is a llama-server built
# by an earlier lease (llama-server-cuda.tar.xz.*, its bin/llama-server).
#
# Environment (device): CUDA_ARCH (default 90: H100/H200), JOBS (default: all cores),
# PARTS=all|throughput|invariance|explore|picks|engines|build|prompts|warmup|traces, or several
# of the last three with commas (default all; build, then prompts, is the realistic-prompt
# comparison with llama-server, see prompts_build; warmup, see warmup_check; traces, see
# traces);
# GPU_ONLY=1 leaves out the CPU builds and measurements of the prompts part (to fit a
# short lease), VARIANTS and TRACE_FLAGS pick the prompts part's variants and the flags
# of its traced run (see prompts). A dry run of the script without a GPU:
# GPU_CUDA=OFF SHAPE=tiny bench/gpu.sh device (CPU build, tiny model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=gpu-stage

# The llama.cpp source the llama-cpp-sys-2 crate vendors (the one batchd links against).
vendored_llama() {
    cargo metadata --format-version 1 |
        python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="llama-cpp-sys-2"))'
}

# Tars DIR/llama.cpp into OUT after trimming a copy's CUDA kernels to what the benchmark
# model (f16, head size 64) runs; extra tar flags follow.
slim_tar() { # DIR OUT [tar flags]
    local dir=$1 out=$2 tmp
    shift 2
    tmp=$(mktemp -d)
    cp -r "$dir/llama.cpp" "$tmp/"
    python3 bench/cuda_slim.py "$tmp/llama.cpp" 64 >/dev/null
    tar -C "$tmp" -czf "$out" \
        --exclude='llama.cpp/ggml/src/ggml-'{vulkan,sycl,opencl,hexagon,cann,metal,webgpu,openvino,et,virtgpu,musa,zdnn,zendnn,rpc} \
        --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/tests \
        --exclude=llama.cpp/gguf-py "$@" llama.cpp
    rm -rf "$tmp"
}

stage() {
    # llama-cpp-sys-2 0.1.161 hard-links libfoo.so (a relative symlink) next to the
    # binaries, where it dangles; a rebuild then trips over it ("File exists").
    rm -f target/gpu/release/{,examples/,deps/}lib*.so
    # Portable CPU flags (AVX2): the device's CPU is not this one.
    CARGO_TARGET_DIR=target/gpu RUSTFLAGS="-C target-cpu=x86-64-v3" \
        cargo build --release -p batchd -p batchctl --features batchd/dynamic-link
    rm -rf "$STAGE/bin" "$STAGE"/llama.cpp.tar.* && mkdir -p "$STAGE/bin"
    for b in batchd batchctl; do
        cp "target/gpu/release/$b" "$STAGE/bin/"
        strip "$STAGE/bin/$b"
    done
    cp bench/llama_batched.c "$STAGE/"
    local anchors=../shared/anchors sdist=/tmp/lcpp-src/llama_cpp_python-0.3.36/vendor
    [ -d "$sdist/llama.cpp" ] || bash "$anchors/setup.sh" >/dev/null
    # The crate's llama.cpp (what batchd links against) and llama-server, the anchor, from
    # the llama.cpp the anchors' setup script uses; both trimmed to the kernels the
    # benchmark model runs (bench/cuda_slim.py), which cuts each CUDA build to a few
    # minutes of the device's 16 cores. Backends other than CPU and CUDA, and what no
    # build target needs, stay behind.
    slim_tar "$(vendored_llama)" "$STAGE/llama.cpp.tar.gz" --exclude=llama.cpp/examples \
        --exclude=llama.cpp/tools --exclude=llama.cpp/pocs --exclude=llama.cpp/convert_hf_to_gguf.py
    slim_tar "$sdist" "$STAGE/llama-server-src.tar.gz" --exclude=llama.cpp/benches \
        --exclude=llama.cpp/conversion --exclude=llama.cpp/examples --exclude=llama.cpp/tools/ui/tests
    rm -f "$STAGE"/cuda-libs.tar.* "$STAGE"/llama-server-cuda.tar.*
    local libs=${GPU_LIBS:-gpu-out} part
    # What an earlier lease built and sent back spares this one the build.
    for part in cuda-libs llama-server-cuda; do
        if compgen -G "$libs/$part.tar.*" >/dev/null; then
            cp "$libs/$part".tar.* "$STAGE/"
            echo "staged the prebuilt $part from $libs"
        fi
    done
    cp "$anchors"/load_prompts.py "$anchors"/long_prompt.py "$STAGE/"
    # On a GPU the long prompt's first token comes within 10-20 ms: print it to 0.1 ms.
    sed -i "s|\['prompt_ms'\]/1000:.2f}s|['prompt_ms']/1000:.4f}s|" "$STAGE/long_prompt.py"
    grep -qx "/$STAGE" .git/info/exclude 2>/dev/null || echo "/$STAGE" >>.git/info/exclude
    du -sh "$STAGE"
    readelf -d "$STAGE/bin/batchd" | grep NEEDED
}

# Builds (or unpacks) the llama.cpp libraries into $LIB and the reference bench into $BIN.
device_libs() {
    if compgen -G "$STAGE/cuda-libs.tar.xz.*" >/dev/null; then
        echo "== unpacking prebuilt llama.cpp libraries"
        cat "$STAGE"/cuda-libs.tar.xz.* | xz -d | tar -x -C "$WORK"
    elif compgen -G "$STAGE/cuda-libs.tar.gz.*" >/dev/null; then
        echo "== unpacking prebuilt llama.cpp libraries"
        cat "$STAGE"/cuda-libs.tar.gz.* | tar -xz -C "$WORK"
    else
        echo "== building llama.cpp (CUDA=$GPU_CUDA, arch $CUDA_ARCH) with $JOBS jobs"
        local t0=$SECONDS
        tar -xzf "$STAGE/llama.cpp.tar.gz" -C "$WORK"
        [ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
        local gen=()
        command -v ninja >/dev/null && gen=(-G Ninja)
        cmake -S "$WORK/llama.cpp" -B "$WORK/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
            -DGGML_CUDA="$GPU_CUDA" -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DGGML_CUDA_NCCL=OFF \
            -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
            -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=OFF >/dev/null
        cmake --build "$WORK/build" --target llama -j "$JOBS" >"$WORK/build.log" 2>&1 ||
            { tail -50 "$WORK/build.log"; exit 1; }
        mkdir -p "$LIB" "$WORK/include"
        cp -a "$WORK"/build/bin/*.so* "$LIB/"
        cp "$WORK"/llama.cpp/include/*.h "$WORK"/llama.cpp/ggml/include/*.h "$WORK/include/"
        echo "built in $((SECONDS - t0)) s"
        # Sent back for the next run, in parts the device tool accepts.
        if command -v xz >/dev/null; then
            tar -C "$WORK" -cf - lib include | xz -T0 -6 | split -b 15M -d - "$OUT/cuda-libs.tar.xz."
        else
            tar -C "$WORK" -czf - lib include | split -b 15M -d - "$OUT/cuda-libs.tar.gz."
        fi
        ls -la "$OUT"
    fi
    if [ ! -d "$WORK/include" ]; then # the prompts part's libraries come without headers
        tar -xzf "$STAGE/llama.cpp.tar.gz" -C "$WORK" llama.cpp/include llama.cpp/ggml/include
        mkdir -p "$WORK/include"
        cp "$WORK"/llama.cpp/include/*.h "$WORK"/llama.cpp/ggml/include/*.h "$WORK/include/"
    fi
    cc -O2 "$STAGE/llama_batched.c" -I "$WORK/include" -L "$LIB" -lllama -lggml-base \
        -Wl,-rpath,"$LIB" -o "$BIN/llama-batched"
}

# The realistic-prompt comparison, in two commands on one warm machine (builds persist in
# gpu-work/, which the device tool keeps between calls while the machine stays warm):
# PARTS=build compiles what it needs, then PARTS=prompts measures batchd's defaults against
# llama-server's on the GPU (64 clients, 256 x 128 tokens, prompts of about 4, 16 and 100
# tokens) and on two pinned CPU cores (16 clients, 32 x 64 tokens, ~12- and ~100-token
# prompts, one client, and 4 streams + a 900-token prompt).
cmake_build() { # SRC BUILD TARGET CUDA(ON|OFF) [extra cmake flags]
    local src=$1 build=$2 target=$3 cuda=$4
    shift 4
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA="$cuda" \
        -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "$@" >/dev/null &&
        cmake --build "$build" --target "$target" -j "$JOBS" >"$build.log" 2>&1 ||
        { tail -30 "$build.log"; return 1; }
}

# A llama-server that an earlier lease built and sent back (staged from gpu-out/).
unpack_server() {
    if [ ! -x "$PW/b-server-cuda/bin/llama-server" ] && compgen -G "$STAGE/llama-server-cuda.tar.xz.*" >/dev/null; then
        mkdir -p "$PW/b-server-cuda"
        cat "$STAGE"/llama-server-cuda.tar.xz.* | xz -d | tar -x -C "$PW/b-server-cuda"
    fi
}

# PARTS=build: the crate's llama.cpp and llama-server, with and without CUDA (GPU_ONLY:
# with), all at once, from the trimmed sources `stage` packs; a build left unfinished by
# the command's time limit goes on incrementally in the next command on a warm machine.
prompts_build() {
    [ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p "$PW"
    local t0=$SECONDS lib=(-DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
        -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=OFF)
    local variants="cpu:OFF cuda:$GPU_CUDA" jobs=()
    [ -n "${GPU_ONLY:-}" ] && variants="cuda:$GPU_CUDA"
    [ -d "$PW/crate/llama.cpp" ] || { mkdir -p "$PW/crate" && tar -xzf "$STAGE/llama.cpp.tar.gz" -C "$PW/crate"; }
    [ -d "$PW/sdist/llama.cpp" ] || { mkdir -p "$PW/sdist" && tar -xzf "$STAGE/llama-server-src.tar.gz" -C "$PW/sdist"; }
    unpack_server
    for v in $variants; do
        [ -f "$PW/lib-${v%:*}/libllama.so" ] || {
            cmake_build "$PW/crate/llama.cpp" "$PW/b-crate-${v%:*}" llama "${v#*:}" "${lib[@]}" &&
                mkdir -p "$PW/lib-${v%:*}" && cp -a "$PW/b-crate-${v%:*}"/bin/*.so* "$PW/lib-${v%:*}/" &&
                if [ "${v%:*}" = cuda ]; then # sent back for the next lease (`stage` puts it in)
                    tar -C "$PW" -cf - --transform 's,^lib-cuda,lib,' lib-cuda | xz -T0 -6 |
                        split -b 15M -d - "$OUT/cuda-libs.tar.xz."
                fi
        } &
        jobs+=($!)
        [ -x "$PW/b-server-${v%:*}/bin/llama-server" ] || {
            {
                cmake_build "$PW/sdist/llama.cpp" "$PW/b-server-${v%:*}" llama-server "${v#*:}" &&
                    if [ "${v%:*}" = cuda ]; then # sent back too, with any libraries beside it
                        (cd "$PW/b-server-cuda" && tar -cf - bin/llama-server $(ls bin/*.so* 2>/dev/null)) |
                            xz -T0 -6 | split -b 15M -d - "$OUT/llama-server-cuda.tar.xz."
                    fi
            } &
            jobs+=($!)
        }
    done
    # The builds only: a bare `wait` also waits for the log's `tee`, which never ends.
    wait "${jobs[@]}"
    ls "$PW"/lib-*/libllama.so "$PW"/b-server-*/bin/llama-server 2>/dev/null || true
    echo "built in $((SECONDS - t0)) s"
}

# llama-server on port 18080 with the model: its command line (a wrapper such as taskset
# first, if any) without the model and port; returns when it is healthy.
start_server() {
    "$@" -m "$MODEL" --port 18080 >>"$WORK/llama-server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 600); do
        curl -sf http://127.0.0.1:18080/health >/dev/null && return
        sleep 0.1
    done
    echo "llama-server did not start"; tail -20 "$WORK/llama-server.log"; return 1
}
stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

prompts() {
    local uni=("$BATCHCTL" bench --workload uniform)
    for t in 4 16 100; do
        "${uni[@]}" --requests 256 --max-tokens 128 --prompt-tokens $t --prompts-out "$RES/p-gpu-$t.jsonl"
    done
    for t in 12 100; do
        "${uni[@]}" --requests 32 --max-tokens 64 --prompt-tokens $t --prompts-out "$RES/p-cpu-$t.jsonl"
    done
    "$BATCHCTL" bench --workload shared-prefix --prompts-out "$RES/p-gpu-shared.jsonl"
    if [ -x "$PW/b-server-cuda/bin/llama-server" ]; then
        echo "== GPU: llama-server -np 64 (its defaults, every layer on the GPU)"
        start_server "$PW/b-server-cuda/bin/llama-server" -np 64 -c $((64 * 1024)) -ngl 99
        for t in 16 100; do
            python3 "$STAGE/load_prompts.py" 18080 64 "$RES/p-gpu-$t.jsonl" 128 | tee "$RES/server-gpu-$t.txt"
        done
        python3 "$STAGE/long_prompt.py" 18080 4 900 | tee "$RES/server-gpu-long.txt"
        python3 "$STAGE/load_prompts.py" 18080 16 "$RES/p-gpu-shared.jsonl" 32 | tee "$RES/server-gpu-shared.txt"
        stop_server && save
    fi
    echo "== GPU: batchd defaults, 64 slots"
    start_daemon --slots 64
    wait_ready
    "$BATCHCTL" --socket "$SOCK" status --json >"$RES/status-prompts.json"
    warm_run 64 128
    for t in 4 16 100; do
        "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients 64 --requests 256 --max-tokens 128 \
            --prompt-tokens $t --json | tee "$RES/batchd-gpu-$t.json"
    done
    "$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json | tee "$RES/batchd-gpu-long.json"
    "$BATCHCTL" --socket "$SOCK" bench --workload shared-prefix --json | tee "$RES/batchd-gpu-shared.json"
    stop_daemon && save
    start_daemon --slots 64 --prefix-cache-mb 0
    wait_ready
    "$BATCHCTL" --socket "$SOCK" bench --workload shared-prefix --json | tee "$RES/batchd-gpu-shared-off.json"
    stop_daemon && save
    # What the defaults were chosen against: the pace, one KV buffer for all, step size.
    local gpu=(gpu 64 256 128 "16 100" "$BATCHD" --model "$MODEL" --socket "$SOCK" --slots 64)
    # Every step of a ~100-token run, for reading offline where its time goes (with the
    # extra flags in TRACE_FLAGS, if any).
    # shellcheck disable=SC2086 # the flags are words
    start_daemon --slots 64 ${TRACE_FLAGS:-}
    wait_ready
    traced_run ""
    stop_daemon && save
    # VARIANTS="name:flags,..." (flags split at spaces) picks the variants.
    local v list=${VARIANTS:-"pace3:--prefill-pace 3,pace12:--prefill-pace 12,unified:--kv-unified true,warmup:--warmup on"}
    IFS=, read -ra list <<<"$list"
    for v in "${list[@]}"; do
        # shellcheck disable=SC2086 # the flags are words
        variant "${v%%:*}" "${gpu[@]}" ${v#*:}
    done
    [ -n "${GPU_ONLY:-}" ] && return
    if [ ! -x "$PW/b-server-cpu/bin/llama-server" ]; then
        [ -d "$PW/sdist/llama.cpp" ] || { mkdir -p "$PW/sdist" && tar -xzf "$STAGE/llama-server-src.tar.gz" -C "$PW/sdist"; }
        cmake_build "$PW/sdist/llama.cpp" "$PW/b-server-cpu" llama-server OFF
    fi
    echo "== CPU, two cores (taskset -c 0,1), 2 threads: llama-server -np 16 (its defaults)"
    local pin=(taskset -c 0,1)
    BATCHD_CPU=("${pin[@]}" env LD_LIBRARY_PATH="$PW/lib-cpu" "$STAGE/bin/batchd")
    start_server "${pin[@]}" "$PW/b-server-cpu/bin/llama-server" -np 16 -c $((16 * 1024)) -t 2
    for t in 12 100; do
        python3 "$STAGE/load_prompts.py" 18080 16 "$RES/p-cpu-$t.jsonl" 64 | tee "$RES/server-cpu-$t.txt"
    done
    python3 "$STAGE/load_prompts.py" 18080 1 "$RES/p-cpu-12.jsonl" 64 | tee "$RES/server-cpu-single.txt"
    python3 "$STAGE/long_prompt.py" 18080 4 900 | tee "$RES/server-cpu-long.txt"
    stop_server && save
    echo "== CPU, two cores: batchd defaults, 16 slots, 2 threads"
    "${BATCHD_CPU[@]}" --model "$MODEL" --socket "$SOCK" --threads 2 >>"$DAEMON_LOG" 2>&1 &
    PID=$!
    wait_ready
    "$BATCHCTL" --socket "$SOCK" status --json >"$RES/status-cpu.json"
    for t in 12 100; do
        "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients 16 --requests 32 --max-tokens 64 \
            --prompt-tokens $t --json | tee "$RES/batchd-cpu-$t.json"
    done
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients 1 --requests 32 --max-tokens 64 \
        --prompt-tokens 12 --json | tee "$RES/batchd-cpu-single.json"
    "$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json | tee "$RES/batchd-cpu-long.json"
    stop_daemon && save
    variant pace2 cpu 16 32 64 "12 100" "${BATCHD_CPU[@]}" --model "$MODEL" --socket "$SOCK" \
        --threads 2 --prefill-pace 2
}

# One batchd variant: NAME WHERE CLIENTS REQUESTS TOKENS "PROMPT-LENGTHS", then its command
# line; runs uniform at each prompt length and the long-prompt workload.
variant() {
    local name=$1 where=$2 clients=$3 requests=$4 tokens=$5 lens=$6
    shift 6
    "$@" >>"$DAEMON_LOG" 2>&1 &
    PID=$!
    wait_ready
    # The same warm-up run the defaults get: a cold daemon's first steps of each new shape
    # cost far more on a GPU, which made variants read slower than they are.
    warm_run "$clients" "$tokens"
    workloads "batchd-$where-%s-$name" "$clients" "$requests" "$tokens" "$lens"
    stop_daemon && save
}

# The warm-up run every measured daemon gets first: one request per client of CLIENTS,
# TOKENS tokens each, 4-token prompts; nothing kept.
warm_run() { # CLIENTS TOKENS
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients "$1" --requests "$1" \
        --max-tokens "$2" >/dev/null
}

# Every step of a ~100-token run on the running daemon (64 clients, 256 x 128 tokens),
# for reading offline where its time goes: trace-gpu-100SUFFIX.txt.gz and
# batchd-gpu-100-tracedSUFFIX.json.
traced_run() { # SUFFIX
    "$BATCHCTL" --socket "$SOCK" trace >"$RES/trace-gpu-100$1.txt" &
    local tracer=$!
    "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients 64 --requests 256 \
        --max-tokens 128 --prompt-tokens 100 --json >"$RES/batchd-gpu-100-traced$1.json"
    kill $tracer && gzip "$RES/trace-gpu-100$1.txt"
}

# The running daemon's uniform workload at each prompt length, then the long-prompt one:
# FILE-PATTERN (%s: the prompt length or `long`) CLIENTS REQUESTS TOKENS "PROMPT-LENGTHS".
workloads() {
    local pattern=$1 clients=$2 requests=$3 tokens=$4 lens=$5 t
    for t in $lens; do
        # shellcheck disable=SC2059 # the pattern is ours
        "$BATCHCTL" --socket "$SOCK" bench --workload uniform --clients "$clients" \
            --requests "$requests" --max-tokens "$tokens" --prompt-tokens "$t" --json \
            >"$RES/$(printf "$pattern" "$t").json"
    done
    # shellcheck disable=SC2059
    "$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json >"$RES/$(printf "$pattern" long).json"
}

# Packs what has been measured so far into $OUT (a run cut short still sends it back).
save() { tar -C "$WORK" -czf "$OUT/results.tar.gz" results batchd.log 2>/dev/null || true; }

# One batchd bench-engine run: NAME, then engine flags.
engine() {
    local name=$1
    shift
    local batches=1,16,64,128
    if [ "${1:-}" = --batches ]; then
        batches=$2
        shift 2
    fi
    "$BATCHD" bench-engine --model "$MODEL" --batches "$batches" --prompt-tokens 16 \
        --tokens 128 --ctx $((128 * 256)) --json "$@" >"$RES/engine-$name.json"
    python3 -c 'import json,sys; [print(sys.argv[1], p["batch"], round(p["decode_tok_s"]), "tok/s", round(p["step_ms"],3), "ms/step", round(p.get("host_pick_ms",0),3), "ms host argmax") for p in json.load(open(sys.argv[2]))]' \
        "$name" "$RES/engine-$name.json"
    save
}

# One daemon configuration: NAME, SLOTS, then daemon flags; runs uniform with as many
# clients as slots, N=128 (and C=1 and C=2×slots for the defaults).
daemon_runs() {
    local name=$1 slots=$2
    shift 2
    echo "== batchd daemon, $slots slots: $name ($*)"
    start_daemon --slots "$slots" "$@"
    wait_ready
    "$BATCHCTL" --socket "$SOCK" status --json >"$RES/status-$name.json"
    local bench=("$BATCHCTL" --socket "$SOCK" bench --workload uniform --max-tokens 128 --json)
    "${bench[@]}" --clients "$slots" --requests "$slots" >/dev/null # warm-up
    "${bench[@]}" --clients "$slots" --requests $((slots * 4)) | tee "$RES/uniform-c$slots-$name.json"
    if [ "$name" = default ]; then
        "${bench[@]}" --clients 1 --requests 8 | tee "$RES/uniform-c1-$name.json"
        "${bench[@]}" --clients $((slots * 2)) --requests $((slots * 8)) |
            tee "$RES/uniform-c$((slots * 2))-on-$slots-slots.json"
    fi
    stop_daemon
    save
}

throughput() {
    echo "== llama.cpp's own batched decode (bench/llama_batched.c, same libllama)"
    for fa in 0 1; do
        for sync in 0 1; do
            "$BIN/llama-batched" "$MODEL" --batches 1,16,64,128 --npp 16 --ntg 128 --fa $fa \
                --sync $sync --threads 1 | tee -a "$RES/llama-batched.jsonl"
        done
    done
    echo "== batchd bench-engine (the daemon's engine adapter, no socket or scheduler)"
    engine default
    engine device-sampling --device-sampling on
    engine fa-off --flash-attn off
    engine all-threads --threads "$(nproc)"
    daemon_runs default 64
    daemon_runs device-sampling 64 --device-sampling on
    daemon_runs fa-off 64 --flash-attn off
    daemon_runs all-threads 64 --threads "$(nproc)"
    daemon_runs default-128 128
}

# Settings the defaults were chosen from: threads, samplers per slot count, KV layout, and
# llama.cpp's reference waiting for each step as serving must.
explore() {
    echo "== llama.cpp reference, waiting for each step's logits"
    "$BIN/llama-batched" "$MODEL" --batches 1,16,64,128 --npp 16 --ntg 128 --fa 1 --sync 1 \
        --threads "$(nproc)" | tee -a "$RES/llama-batched.jsonl"
    "$BIN/llama-batched" "$MODEL" --batches 1,64 --npp 16 --ntg 128 --fa 1 --threads 4 \
        | tee -a "$RES/llama-batched-t4.jsonl"
    local e=(--batches 1,16,64 --slots 64 --flash-attn on)
    engine s64-device "${e[@]}" --device-sampling on
    engine s64-device-t4 "${e[@]}" --device-sampling on --threads 4
    engine s64-device-t1 "${e[@]}" --device-sampling on --threads 1
    engine s64-device-t4-unified "${e[@]}" --device-sampling on --threads 4 --kv-unified true
    engine s64-host-t4 "${e[@]}" --device-sampling off --threads 4
    engine s64-host-t1 "${e[@]}" --device-sampling off --threads 1
    daemon_runs t4 64 --threads 4
    daemon_runs t4-unified 64 --threads 4 --kv-unified true
    daemon_runs t1-host 64 --threads 1 --device-sampling off
}

# Greedy output of 32 distinct prompts, each run alone, then all packed together.
invariance_run() {
    local name=$1
    shift
    start_daemon --slots 32 "$@"
    wait_ready
    : >"$WORK/alone.jsonl"
    while IFS= read -r p; do
        "$BATCHCTL" --socket "$SOCK" generate --json -n 32 --ignore-eos "$p" >>"$WORK/alone.jsonl"
    done <"$WORK/prompts.txt"
    "$BATCHCTL" --socket "$SOCK" generate --json -n 32 --ignore-eos -f "$WORK/prompts.txt" \
        >"$WORK/packed.jsonl"
    "$BATCHCTL" --socket "$SOCK" generate --json -n 32 --ignore-eos -f "$WORK/prompts.txt" \
        >"$WORK/packed2.jsonl"
    stop_daemon
    python3 - "$name" "$WORK" <<'PY' | tee -a "$RES/invariance.jsonl"
import json, sys
name, work = sys.argv[1], sys.argv[2]
load = lambda f: [json.loads(l)["tokens"] for l in open(f"{work}/{f}")]
alone, packed, again = load("alone.jsonl"), load("packed.jsonl"), load("packed2.jsonl")
def first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
diffs = [first_diff(a, p) for a, p in zip(alone, packed)]
print(json.dumps({
    "variant": name, "requests": len(alone),
    "diverged": sum(d is not None for d in diffs),
    "first_divergence": sorted(d for d in diffs if d is not None),
    "packed_repeat_identical": packed == again,
}))
PY
}

invariance() {
    echo "== batch invariance: 32 greedy prompts alone vs packed"
    for i in $(seq 32); do echo "Request number $i asks about topic $((i * 37 % 101)) today:"; done \
        >"$WORK/prompts.txt"
    invariance_run default && save
    invariance_run fa-off --flash-attn off && save
    GGML_CUDA_CUBLAS_COMPUTE_TYPE=f32 invariance_run fa-off-cublas-f32 --flash-attn off && save
    invariance_run fa-off-kv-unified --flash-attn off --kv-unified true && save
    GGML_CUDA_CUBLAS_COMPUTE_TYPE=f32 invariance_run fa-on-cublas-f32 --flash-attn on && save
}

# PARTS=warmup: fresh daemons with --warmup on and off, alternating, ROUNDS times (default
# 4): ~16- and ~100-token prompts then the long prompt on each, no other warm-up; whether
# the daemon is still alive at the end (a CUDA illegal instruction once ended one with
# the warm-up on).
warmup_check() {
    local round w
    for round in $(seq "${ROUNDS:-4}"); do
        for w in on off; do
            start_daemon --slots 64 --warmup "$w"
            wait_ready
            # A daemon that dies leaves its files empty; the loop goes on.
            workloads "warmup-$w-$round-%s" 64 256 128 "16 100" || true
            if kill -0 "$PID" 2>/dev/null; then
                echo "warmup $w, round $round: alive"
                stop_daemon
            else
                echo "warmup $w, round $round: DIED"
                PID=
            fi
            save
        done
    done
}

# Sets `vars` to the VAR=VALUE words of WORDS (a list entry's, after its name) and
# `flags` to the others.
split_words() { # WORDS
    vars=() flags=()
    local w
    for w in $1; do
        if [[ $w == [A-Z]*=* ]]; then vars+=("$w"); else flags+=("$w"); fi
    done
}

# PARTS=engines: bench-engine at B = 16 and 64 for each of ENGINES="name:words,..."
# (VAR=VALUE words set the environment, the others are bench-engine flags), e.g. to look
# for what a step spends beyond llama.cpp's own (the throughput part's reference).
engines() {
    local v name list=${ENGINES:-"default:"}
    IFS=, read -ra list <<<"$list"
    for v in "${list[@]}"; do
        name=${v%%:*}
        split_words "${v#*:}"
        (
            for w in "${vars[@]}"; do export "${w?}"; done
            engine "$name" --batches 16,64 "${flags[@]}"
        )
    done
}

# PARTS=traces: for each of TRACES="name:words,..." (default: the defaults against the
# prefix cache off), a fresh daemon, the variants' warm-up run, then one traced ~100-token
# run with span-close times in the daemon log (RUST_LOG=batchd=trace): where the time
# between steps goes; then the long-prompt workload. Words of the form VAR=VALUE set the
# daemon's environment (e.g. GGML_CUDA_DISABLE_GRAPHS=1), the others are its flags.
traces() {
    local v w name list=${TRACES:-"defaults:,nocache:--prefix-cache-mb 0"}
    IFS=, read -ra list <<<"$list"
    for v in "${list[@]}"; do
        name=${v%%:*}
        split_words "${v#*:}"
        for w in "${vars[@]}"; do export "${w?}"; done
        RUST_LOG=batchd=trace DAEMON_LOG=$WORK/batchd-$name.log start_daemon --slots 64 "${flags[@]}"
        for w in "${vars[@]}"; do unset "${w%%=*}"; done
        wait_ready
        warm_run 64 128
        traced_run "-$name"
        "$BATCHCTL" --socket "$SOCK" bench --workload long-prompt --json >"$RES/batchd-gpu-long-traced-$name.json"
        stop_daemon
        gzip -c "$WORK/batchd-$name.log" >"$RES/batchd-$name.log.gz" && save
    done
}

device() {
    OUT=${OUT:-$PWD/gpu-out}
    mkdir -p "$OUT"
    PW=$PWD/gpu-work # kept between calls on a warm machine (ignored by git)
    WORK=$(mktemp -d /tmp/batchd-gpu-XXXXXX)
    LIB=$WORK/lib BIN=$WORK/bin RES=$WORK/results
    mkdir -p "$BIN" "$RES"
    GPU_CUDA=${GPU_CUDA:-ON} CUDA_ARCH=${CUDA_ARCH:-90} JOBS=${JOBS:-$(nproc)}
    exec > >(tee -a "$OUT/log.txt") 2>&1
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 |
        tee "$RES/gpu.txt" || true
    nproc && lscpu | grep -m1 'Model name' || true
    case ${PARTS:-all} in
    build) prompts_build && return ;;
    prompts* | warmup* | traces*)
        LIB=$PW/lib-cuda
        # Libraries an earlier lease sent back (staged from gpu-out/) spare the build.
        if [ ! -f "$LIB/libllama.so" ] && compgen -G "$STAGE/cuda-libs.tar.xz.*" >/dev/null; then
            mkdir -p "$PW" "$WORK/unpacked"
            cat "$STAGE"/cuda-libs.tar.xz.* | xz -d | tar -x -C "$WORK/unpacked"
            cp -a "$WORK/unpacked/lib" "$LIB"
        fi
        unpack_server
        ;;
    *) device_libs ;;
    esac
    export LD_LIBRARY_PATH=$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    BATCHD=$STAGE/bin/batchd BATCHCTL=$STAGE/bin/batchctl
    ldd "$BATCHD" | grep -E 'llama|ggml|not found'
    MODEL=$WORK/gpt2-small-synthetic-f16.gguf
    "$BATCHD" make-model --shape "${SHAPE:-small}" --out "$MODEL"
    SOCK=$WORK/batchd.sock DAEMON_LOG=$WORK/batchd.log
    DAEMON_ARGS=()
    source bench/daemon.sh
    trap '[ -n "$PID" ] && kill $PID 2>/dev/null; save' EXIT
    local part parts
    IFS=, read -ra parts <<<"${PARTS:-all}"
    for part in "${parts[@]}"; do
        case $part in
        all) throughput && invariance ;;
        throughput) throughput ;;
        invariance) invariance ;;
        explore) explore ;;
        prompts) prompts ;;
        warmup) warmup_check ;;
        traces) traces ;;
        picks) engine default && RAYON_NUM_THREADS=4 engine rayon4 && RAYON_NUM_THREADS=1 engine rayon1 ;;
        engines) engines ;;
        esac
    done
    echo "== done in $SECONDS s"
}

report() {
    local dir=${1:?report DIR}
    local res
    res=$(mktemp -d)
    tar -xzf "$dir/results.tar.gz" -C "$res"
    python3 - "$res/results" <<'PY'
import json, sys, os
r = sys.argv[1]
def jl(f):
    p = os.path.join(r, f)
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def js(f):
    p = os.path.join(r, f)
    return json.load(open(p)) if os.path.exists(p) else None
print(open(os.path.join(r, "gpu.txt")).read().strip())
ref = {(x["batch"], x["fa"], x.get("sync", 0)): x for x in jl("llama-batched.jsonl")}
names = ["default", "device-sampling", "fa-off", "all-threads"]
eng = {n: {p["batch"]: p for p in js(f"engine-{n}.json") or []} for n in names}
f = lambda x: f"{x['decode_tok_s']:,.0f} ({x['step_ms']:.2f} ms)" if x else "—"
print("\n| B | llama.cpp FA on, queued | llama.cpp FA on, waits each step | engine defaults "
      "| engine --device-sampling on | engine --threads all | llama.cpp FA off, waits | engine --flash-attn off |")
print("|---|---|---|---|---|---|---|---|")
for b in sorted({k[0] for k in ref} | set(eng["default"])):
    print(f"| {b} | {f(ref.get((b, 1, 0)))} | {f(ref.get((b, 1, 1)))} | {f(eng['default'].get(b))} "
          f"| {f(eng['device-sampling'].get(b))} | {f(eng['all-threads'].get(b))} "
          f"| {f(ref.get((b, 0, 1)))} | {f(eng['fa-off'].get(b))} |")
print("\n| daemon | tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms |")
print("|---|---|---|---|")
for name, fn in [("64 slots, uniform C=64 N=128, defaults", "uniform-c64-default.json"),
                 ("64 slots, C=64, --device-sampling on", "uniform-c64-device-sampling.json"),
                 ("64 slots, C=64, --flash-attn off", "uniform-c64-fa-off.json"),
                 ("64 slots, C=64, --threads all cores", "uniform-c64-all-threads.json"),
                 ("64 slots, C=1, defaults", "uniform-c1-default.json"),
                 ("64 slots, C=128, defaults", "uniform-c128-on-64-slots.json"),
                 ("128 slots, C=128, defaults", "uniform-c128-default-128.json")]:
    x = js(fn)
    if x:
        print(f"| {name} | {x['tokens_per_s']:,.0f} | {x['ttft_ms']['p50']:.1f} / {x['ttft_ms']['p99']:.1f} "
              f"| {x['itl_ms']['p50']:.2f} / {x['itl_ms']['p99']:.2f} |")
st = js("status-default.json")
if st:
    print(f"\nstatus (defaults): backend {st['backend']} on {st['device']}, {st['gpu_layers']} layers offloaded, "
          f"device sampling {st['device_sampling']}")
def server(f):
    p = os.path.join(r, f)
    if not os.path.exists(p):
        return None
    import re
    t = open(p).read()
    m = re.search(r"-> ([\d.]+) tok/s", t)
    if m:
        return float(m[1])
    m = re.search(r"first token after ([\d.]+)s.*ITL p50 ([\d.]+) ms p99 ([\d.]+) ms", t)
    return (float(m[1]) * 1000, float(m[2]), float(m[3])) if m else None
for where, n, lens in (("gpu", "64 clients, 256 x 128 tokens", (4, 16, 100)), ("cpu", "16 clients, 32 x 64 tokens, 2 pinned cores", (12, 100))):
    if not js(f"batchd-{where}-{lens[1]}.json"):
        continue
    variants = sorted({f.split(f"batchd-{where}-{lens[-1]}-")[1][:-5] for f in os.listdir(r)
                       if f.startswith(f"batchd-{where}-{lens[-1]}-")})
    print(f"\n{where.upper()}: {n}; tok/s (TTFT p99 ms, ITL p50 / p99 ms)")
    print("| prompt tokens | llama-server | batchd defaults | ratio | " + " | ".join(f"batchd {v}" for v in variants) + " |")
    print("|---|---|---|---|" + "---|" * len(variants))
    cell = lambda x: f"{x['tokens_per_s']:,.0f} ({x['ttft_ms']['p99']:.0f}, {x['itl_ms']['p50']:.1f} / {x['itl_ms']['p99']:.1f})" if x else "—"
    for t in lens:
        b, sv = js(f"batchd-{where}-{t}.json"), server(f"server-{where}-{t}.txt")
        ratio = f"{b['tokens_per_s'] / sv:.2f}" if b and sv else "—"
        print(f"| ~{t} | {f'{sv:,.0f}' if sv else '—'} | {cell(b)} | {ratio} | "
              + " | ".join(cell(js(f"batchd-{where}-{t}-{v}.json")) for v in variants) + " |")
    single, ssingle = js(f"batchd-{where}-single.json"), server(f"server-{where}-single.txt")
    if single and ssingle:
        print(f"| 1 client, ~12 | {ssingle:,.0f} | {cell(single)} | {single['tokens_per_s'] / ssingle:.2f} |")
    lp, slp = js(f"batchd-{where}-long.json"), server(f"server-{where}-long.txt")
    lcell = lambda x: f"first token {x['long_ttft_ms']:.0f} ms, streams p99/p50 {x['streams_itl_ratio']:.2f} (p50 {x['streams_itl_ms']['p50']:.1f} ms)" if x else "—"
    print(f"\nlong prompt (4 streams + 900 tokens): llama-server " + (f"first token {slp[0]:.0f} ms, streams p99/p50 {slp[2] / slp[1]:.2f} (p50 {slp[1]:.1f} ms)" if slp else "—"))
    print(f"  batchd defaults: {lcell(lp)}" + (f"; first-token ratio {lp['long_ttft_ms'] / slp[0]:.2f}" if lp and slp else ""))
    for v in variants:
        print(f"  batchd {v}: {lcell(js(f'batchd-{where}-long-{v}.json'))}")
inv = jl("invariance.jsonl")
if inv:
    print("\n| variant | diverged of 32 | first divergence (token index) | packed twice identical |")
    print("|---|---|---|---|")
    for x in inv:
        print(f"| {x['variant']} | {x['diverged']} | {x['first_divergence']} | {x['packed_repeat_identical']} |")
warm = sorted(f for f in os.listdir(r) if f.startswith("warmup-") and f.endswith("-16.json"))
if warm:
    print("\n| --warmup, round | ~16-token tok/s | ~100-token tok/s | long prompt first token ms |")
    print("|---|---|---|---|")
    for f in warm:
        stem = f[:-len("-16.json")]
        x16, x100, xl = (js(f"{stem}-{t}.json") if os.path.getsize(os.path.join(r, f"{stem}-{t}.json")) else None
                         for t in ("16", "100", "long"))
        cell = lambda x, k: f"{x[k]:,.0f}" if x else "failed"
        print(f"| {stem[7:].replace('-', ', ')} | {cell(x16, 'tokens_per_s')} | {cell(x100, 'tokens_per_s')} | {cell(xl, 'long_ttft_ms')} |")
import gzip, re, collections
traced = sorted(f[len("trace-gpu-100-"):-len(".txt.gz")] for f in os.listdir(r)
                if f.startswith("trace-gpu-100-") and f.endswith(".txt.gz"))
if traced:
    print("\n| traced ~100-token run | tok/s | wall s | steps | in steps s | steps of 2+ passes (mean) "
          "| between steps s | saves s (n) | streaming s | long prompt: first token ms, streams' p99/p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
unit = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
long_cell = lambda x: f"{x['long_ttft_ms']:.1f}, {x['streams_itl_ratio']:.2f}" if x else "—"
for name in traced:
    steps = [(float(m[2]), int(m[1])) for m in re.finditer(
        r"^step \d+: \d+ tokens, (\d+) pass(?:es)?, ([\d.]+) ms", gzip.open(
            os.path.join(r, f"trace-gpu-100-{name}.txt.gz"), "rt").read(), re.M)]
    mixed = sum(1 for _, p in steps if p > 1)
    passes = sum(p for _, p in steps if p > 1)
    x = js(f"batchd-gpu-100-traced-{name}.json") or {}
    span = collections.defaultdict(float); n = collections.Counter()
    log = os.path.join(r, f"batchd-{name}.log.gz")
    if os.path.exists(log):
        for line in gzip.open(log, "rt", errors="replace"):
            m = re.search(r"TRACE (\S+): \S+: close time\.busy=([\d.]+)(ns|µs|ms|s) ",
                          re.sub(r"\x1b\[[0-9;]*m", "", line))
            if m:
                k = re.sub(r"\{.*", "", m[1].split(":")[0])
                span[k] += float(m[2]) * unit[m[3]]; n[k] += 1
    wall, inside = x.get("wall_s", 0), sum(ms for ms, _ in steps) / 1000
    print(f"| {name} | {x.get('tokens_per_s', 0):,.0f} | {wall:.2f} | {len(steps)} | {inside:.2f} "
          f"| {mixed} ({passes / max(mixed, 1):.2f}) | {wall - inside:.2f} | {span['save']:.2f} ({n['save']}) "
          f"| {span['stream']:.2f} | {long_cell(js(f'batchd-gpu-long-traced-{name}.json'))} |")
if traced:
    print("(saves and streaming: whole daemon log, its warm-up run included)")
PY
}

case ${1:-} in
stage) stage ;;
device) device ;;
report) report "${2:-gpu-out}" ;;
*)
    sed -n '2,21p' "$0"
    exit 2
    ;;
esac
