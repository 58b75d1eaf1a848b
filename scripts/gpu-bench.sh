#!/usr/bin/env bash
# Benchmarks vqgpu on a GPU machine in one go, writing one log.
#
#   scripts/gpu-bench.sh pack DIR
#       (on the build machine) builds the release binary and the test binaries and puts them in
#       DIR: DIR/vqgpu and DIR/tests.tar.xz. The GPU machine needs neither Rust nor a network.
#
#   scripts/gpu-bench.sh run [--before DIR0] [--torch TORCH_DIR] DIR LOG
#       (on the GPU machine) runs, for the build in DIR: `info`, `bench kernels`, `bench quantizer`,
#       `bench vqvae` at batch 32 and 128 (with `--profile`), `bench prior`; the same benchmarks
#       for the build in DIR0 when given (the build before a change, measured in the same run for a
#       fair comparison); the PyTorch baselines found in TORCH_DIR (torch_vqvae.py and
#       torch_quantizer.py), if any; then every test binary of DIR, and its quantizer tests up to
#       10 more times. Everything goes to LOG.
#
# Steps a build does not know (an older build without `bench prior`, say) are logged as such.
# Every step runs under a time limit, so the whole run stays inside about 10 minutes.
set -u

pack() {
    local dir=$1
    mkdir -p "$dir/tests_staging"
    cargo build --release --quiet || return 1
    cp target/release/vqgpu "$dir/vqgpu" && strip "$dir/vqgpu"
    cargo test --release --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name path; do cp "$path" "$dir/tests_staging/$name"; done
    strip "$dir"/tests_staging/*
    mv "$dir/tests_staging" "$dir/tests"
    tar -C "$dir" -cf - tests | xz -9 --lzma2=dict=192MiB >"$dir/tests.tar.xz"
    rm -rf "$dir/tests"
    ls -la "$dir"
}

# Runs "$@" under `timeout LIMIT`, logging a header, the output and the exit status.
step() {
    local limit=$1 title=$2
    shift 2
    echo "=== $title"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1
    local rc=$?
    echo "--- rc $rc, $((SECONDS - t0)) s"
}

# Whether build $1 knows the command words "${@:2}" (its --help succeeds).
knows() {
    local bin=$1
    shift
    "$bin" "$@" --help >/dev/null 2>&1
}

# Runs one test binary. If it is still running after WATCH seconds (default 60), logs the tests
# that finished, the GPU's utilisation and every thread's stack (cuda-gdb attaches to any process),
# then stops it; returns 1 in that case.
test_binary() {
    local bin=$1 watch=${2:-60} name
    name=$(basename "$bin")
    echo "=== test $name"
    local t0=$SECONDS
    "$bin" >"/tmp/test-$name.log" 2>&1 &
    local pid=$!
    local waited=0 hung=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt "$watch" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        hung=1
        echo "still running after $watch s; tests finished so far:"
        grep -E '^test ' "/tmp/test-$name.log"
        command -v nvidia-smi >/dev/null &&
            nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
        echo "thread stacks:"
        if command -v cuda-gdb >/dev/null; then
            timeout 60 cuda-gdb -p "$pid" -batch -ex "thread apply all bt 30" 2>&1 |
                grep -v '^\[New LWP' | head -600
        else
            for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(cat "$t/wchan")"; done
        fi
    fi
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local rc=$?
    grep -E '^test |test result|panicked|FAILED|failed' "/tmp/test-$name.log" | grep -v '\.\.\. ok$' | head -40
    echo "--- rc $rc, $((SECONDS - t0)) s"
    return $hung
}

benchmarks() {
    local bin=$1 label=$2
    step 60 "$label: bench kernels" "$bin" bench kernels --iters 10 --repeats 3
    step 150 "$label: bench quantizer" "$bin" bench quantizer --iters 3 --repeats 3
    local profile=() b32=(--steps 100) b128=(--steps 50)
    knows "$bin" bench vqvae --profile && profile=(--profile)
    # a build that times several runs: about as many timed steps in all, in 3 runs
    if knows "$bin" bench vqvae --repeats 3; then
        b32=(--steps 40 --repeats 3) b128=(--steps 20 --repeats 3)
    fi
    step 60 "$label: bench vqvae batch 32" "$bin" bench vqvae --batch 32 "${b32[@]}" "${profile[@]}"
    step 60 "$label: bench vqvae batch 128" "$bin" bench vqvae --batch 128 "${b128[@]}" "${profile[@]}"
    if knows "$bin" bench prior; then
        step 60 "$label: bench prior" "$bin" bench prior --profile
    else
        echo "=== $label: bench prior: this build has no bench prior"
    fi
}

run() {
    local before="" torch=""
    while [ $# -gt 2 ]; do
        case $1 in
        --before) before=$2; shift 2 ;;
        --torch) torch=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; return 2 ;;
        esac
    done
    local dir=$1 log=$2
    {
        echo "# gpu-bench $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        command -v nvidia-smi >/dev/null &&
            nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,temperature.gpu --format=csv
        step 30 "info" "$dir/vqgpu" info
        benchmarks "$dir/vqgpu" "$dir"
        [ -n "$before" ] && benchmarks "$before/vqgpu" "$before"
        if [ -n "$torch" ] && [ -f "$torch/torch_vqvae.py" ]; then
            for b in 32 128; do
                step 90 "torch vqvae batch $b" python3 "$torch/torch_vqvae.py" --bench --ema \
                    --device cuda --batch $b --steps $((6400 / b + 50))
            done
        fi
        if [ -n "$torch" ] && [ -f "$torch/torch_quantizer.py" ]; then
            step 120 "torch quantizer" python3 "$torch/torch_quantizer.py" --repeats 10
        fi
        if [ -f "$dir/tests.tar.xz" ]; then
            tar -C "$dir" -xJf "$dir/tests.tar.xz"
            for t in "$dir"/tests/*; do test_binary "$t"; done
            # the quantizer tests once deadlocked in the driver's teardown with parallel test threads:
            # run them again, up to 10 times, stopping at (and logging) the first that gets stuck
            if [ -x "$dir/tests/vq" ]; then
                for i in $(seq 10); do
                    test_binary "$dir/tests/vq" 30 >/tmp/vq-repeat.log 2>&1 && continue
                    echo "=== vq tests: run $i of at most 10 stopped making progress"
                    cat /tmp/vq-repeat.log
                    break
                done
                echo "=== vq tests repeated: $i runs"
            fi
        fi
        echo "# done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } 2>&1 | tee "$log"
}

case ${1:-} in
pack) pack "$2" ;;
run) shift; run "$@" ;;
*) sed -n '2,17p' "$0"; exit 2 ;;
esac
