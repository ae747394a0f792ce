#!/bin/bash
# bench/llamacpp/run.sh — the llama.cpp decode yardstick (see README.md in this directory).
#
#   bench/llamacpp/run.sh [--out DIR] [--threads "2"] [--shapes "small:64 qwen0.5b:16"] [--dtypes "f32 bf16"]
#                         [--batches "1 8"] [--reps 1] [--wait-idle] [--c] [--srlm]
#
# Makes random models of build/bench/<shape>.json with bin/init-model (f32), converts them to GGUF
# (to_gguf.py, f32 and bf16 weights), then runs decode.mjs for every shape x threads x batch x dtype.
# Each run prints one line {"load": <loadavg before the run>, "cmd": ..., "r": <decode.mjs JSON>}
# (the build/bench/results.jsonl format) on stdout and appends it to DIR/results.jsonl.
# --srlm also runs srlm's build/bench/generate (same shape, threads, batch, tokens, dtype) after each
# decode.mjs run, for ratios measured under the same conditions. --c also runs llama_decode.c
# (built into DIR from node-llama-cpp's bundled llama.cpp headers and prebuilt libraries).
# --wait-idle waits (up to 2 min) before each run until the machine was >= 90% idle for one second
# (the machine is shared; ggml's spinning threads suffer badly from any other runnable process).
# Needs: make (bin/), npm ci in bench/llamacpp (node-llama-cpp), /usr/bin/python3 with numpy, cc, git.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=build/bench/llamacpp
THREADS="2"
SHAPES="small:64 qwen0.5b:16"
DTYPES="f32 bf16"
BATCHES="1 8"
REPS=1
WAIT=0
CH=0
SRLM=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --shapes) SHAPES=$2; shift 2 ;;
        --dtypes) DTYPES=$2; shift 2 ;;
        --batches) BATCHES=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --wait-idle) WAIT=1; shift ;;
        --c) CH=1; shift ;;
        --srlm) SRLM=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
[ -d bench/llamacpp/node_modules/node-llama-cpp ] || (cd bench/llamacpp && npm ci --no-audit --no-fund)
[ -x bin/init-model ] || make -s
[ $SRLM = 0 ] || [ -x build/bench/generate ] || { echo "run.sh: build/bench/generate missing (bench/run.sh builds it)" >&2; exit 1; }

for spec in $SHAPES; do
    shape=${spec%%:*}
    cfg=build/bench/$shape.json
    [ -f "$cfg" ] || { echo "run.sh: $cfg missing (bench/run.sh writes it)" >&2; exit 1; }
    [ -f "$OUT/$shape/model.safetensors" ] || bin/init-model -q --config "$cfg" --out "$OUT/$shape"
    for dt in $DTYPES; do
        [ -f "$OUT/$shape-$dt.gguf" ] ||
            /usr/bin/python3 bench/llamacpp/to_gguf.py "$OUT/$shape" "$OUT/$shape-$dt.gguf" --dtype "$dt"
    done
done

LIB=bench/llamacpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
if [ $CH = 1 ] && [ ! -x "$OUT/llama_decode" ]; then
    [ -d "$OUT/llama.cpp-src/include" ] ||
        git -c advice.detachedHead=false clone -q bench/llamacpp/node_modules/node-llama-cpp/llama/gitRelease.bundle "$OUT/llama.cpp-src"
    cc -O2 -I"$OUT/llama.cpp-src/include" -I"$OUT/llama.cpp-src/ggml/include" -o "$OUT/llama_decode" \
        bench/llamacpp/llama_decode.c "$PWD/$LIB/libllama.v0.4.0.so" "$PWD/$LIB/libggml.v0.4.0.so" \
        "$PWD/$LIB/libggml-base.so" -Wl,-rpath,"$PWD/$LIB" -ldl -lm
fi

idle_frac() {  # fraction of CPU time idle over the next second
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local tot=0 i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    echo $(( (b[4] - a[4] + b[5] - a[5]) * 100 / (tot > 0 ? tot : 1) ))
}
wait_idle() {
    [ $WAIT = 1 ] || return 0
    local n=0
    while [ "$(idle_frac)" -lt 90 ] && [ $n -lt 120 ]; do n=$((n + 1)); done
}
run1() {  # run1 CMD...: one measurement line
    wait_idle
    local load r line
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    r=$("$@")
    line="{\"load\":\"$load\",\"cmd\":\"$*\",\"r\":$r}"
    echo "$line"
    echo "$line" >>"$OUT/results.jsonl"
}

for spec in $SHAPES; do
    shape=${spec%%:*} nt=${spec#*:}
    for t in $THREADS; do
        for B in $BATCHES; do
            for rep in $(seq "$REPS"); do
                for dt in $DTYPES; do
                    run1 node bench/llamacpp/decode.mjs --model "$OUT/$shape-$dt.gguf" --shape "$shape" \
                        --threads "$t" --batch "$B" --new-tokens "$nt" --prompt-len 32
                    if [ $SRLM = 1 ]; then
                        run1 build/bench/generate --config "build/bench/$shape.json" \
                            --threads "$t" --batch "$B" --new-tokens "$nt" --prompt-len 32 --dtype "$dt"
                    fi
                    if [ $CH = 1 ]; then
                        run1 "$OUT/llama_decode" --model "$OUT/$shape-$dt.gguf" --shape "$shape" \
                            --threads "$t" --batch "$B" --new-tokens "$nt" --prompt-len 32
                    fi
                done
            done
        done
    done
done
