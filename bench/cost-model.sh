#!/usr/bin/env bash
# bench/cost-model.sh — the scaling model of docs/scaling.md (issue 12): predicted time and
# efficiency of data-parallel training and of a GRPO iteration on 2 to 64 nodes joined by
# 10, 25 and 100 Gb/s Ethernet, from per-node figures measured on this 2-core machine.
#
#   bench/cost-model.sh [--doc]     (--doc: into docs/scaling.md between <!-- costmodel:begin/end -->)
#
# Inputs (environment; defaults are the measured figures, docs/performance.md):
#   SMALL_TRAIN   small shape, sft-step input tokens/s per node (bench/mpi.sh, 1 process × 2
#                 threads: 400.8 and 401.8 on 2026-12-04, mean 401)
#   BIG_TRAIN     0.5B, training tokens/s per node: bench/grpo-iter.sh's optimizer step, 3804
#                 tokens in 170.2 s less its AdamW (1.25 s)
#   BIG_ROLL8, BIG_ROLL64   0.5B bf16 rollout new tokens/s per node with up to 8 / 64 sequences
#                 decoding (bench/rollout.sh, continuous batching)
#   BIG_LOAD, BIG_SAVE      0.5B model load (each model stage, every node at once) and checkpoint
#                 write (rank 0, 6.9 GB) seconds (bench/grpo-iter.sh)
#   ALPHA         per-message latency of the network, seconds (default 50e-6, TCP)
#   BW_EFF        fraction of the line rate an allreduce achieves (default 0.8)
#
# The model, per optimizer step on N nodes:
#   compute   ceil(micro-batches / N) × micro-batch tokens / (tokens/s per node)  (micro-batches
#             are dealt whole: nodes beyond the step's micro-batch count idle)
#   allreduce ring: 2 (N-1)/N × 4 P bytes / (BW_EFF × line rate) + 2 (N-1) × ALPHA   (f32 gradients)
#   AdamW     on every node over all P parameters: 1.25 s × P / 494M (the unsharded optimizer;
#             ZeRO stage 1 trades most of it for a broadcast of the updated slices)
# and a GRPO iteration adds: rollout of ceil(prompts / N) prompts on the busiest node, the two
# model loads, and rank 0's checkpoint write. Efficiency = T(1) / (N × T(N)).
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL_TRAIN=${SMALL_TRAIN:-401} BIG_TRAIN=${BIG_TRAIN:-22.5}
BIG_ROLL8=${BIG_ROLL8:-47.3} BIG_ROLL64=${BIG_ROLL64:-51.2} BIG_LOAD=${BIG_LOAD:-6.6} BIG_SAVE=${BIG_SAVE:-30.7}
ALPHA=${ALPHA:-50e-6} BW_EFF=${BW_EFF:-0.8}

model() {
    awk -v st="$SMALL_TRAIN" -v bt="$BIG_TRAIN" -v r8="$BIG_ROLL8" -v r64="$BIG_ROLL64" \
        -v load="$BIG_LOAD" -v save="$BIG_SAVE" -v alpha="$ALPHA" -v eff="$BW_EFF" '
    function ceil(x) { return x == int(x) ? x : int(x) + 1 }
    function ar(N, P, gbps) { return N == 1 ? 0 : 2 * (N - 1) / N * 4 * P / (eff * gbps * 1e9 / 8) + 2 * (N - 1) * alpha }
    function opt(P) { return 1.25 * P / 494e6 }
    # one optimizer step: nmb micro-batches of mbt tokens at rate r
    function step(N, P, nmb, mbt, r, gbps) { return ceil(nmb / N) * mbt / r + ar(N, P, gbps) + opt(P) }
    # a GRPO iteration: np prompts x G samples x nt new tokens; nmb micro-batches of mbt tokens
    function grpo(N, P, np, G, nt, nmb, mbt, gbps,   k, rr) {
        k = ceil(np / N); rr = k * G <= 8 ? r8 : r64
        return 2 * load + k * G * nt / rr + step(N, P, nmb, mbt, bt, gbps) + save
    }
    function secs(t) { return t < 10 ? sprintf("%.1f s", t) : sprintf("%.0f s", t) }
    function row(name, what, N, t1, t10, t25, t100) {
        printf "| %s | %d | %s | %s / %.2f | %s / %.2f | %s / %.2f |\n", name, N, what,
               secs(t10), t1 / (N * t10), secs(t25), t1 / (N * t25), secs(t100), t1 / (N * t100)
    }
    BEGIN {
        Ps = 30.95e6; Pb = 494.0e6
        printf "| workload | nodes | per step | 10 Gb/s: time / efficiency | 25 Gb/s | 100 Gb/s |\n|---|---|---|---|---|---|\n"
        t1 = step(1, Ps, 64, 512, st, 10)
        for (N = 2; N <= 64; N *= 2)
            row("sft-step small (30.9M), 64 × 512 tokens", sprintf("%.1f MB allreduce", 4 * Ps / 1e6), N,
                t1, step(N, Ps, 64, 512, st, 10), step(N, Ps, 64, 512, st, 25), step(N, Ps, 64, 512, st, 100))
        t1 = step(1, Pb, 64, 1024, bt, 10)
        for (N = 2; N <= 64; N *= 2)
            row("sft-step 0.5B, 64 × 1024 tokens", sprintf("%.2f GB allreduce", 4 * Pb / 1e9), N,
                t1, step(N, Pb, 64, 1024, bt, 10), step(N, Pb, 64, 1024, bt, 25), step(N, Pb, 64, 1024, bt, 100))
        # 32 prompts x G 8 x 200 new tokens; 256 sequences of ~310 tokens, 3 per 930-token micro-batch
        t1 = grpo(1, Pb, 32, 8, 200, 86, 930, 10)
        for (N = 2; N <= 64; N *= 2)
            row("GRPO iteration 0.5B, 32 prompts × G 8 × 200 tokens", "rollout + 1 step + loads + save", N,
                t1, grpo(N, Pb, 32, 8, 200, 86, 930, 10), grpo(N, Pb, 32, 8, 200, 86, 930, 25), grpo(N, Pb, 32, 8, 200, 86, 930, 100))
        printf "\nOne node (modelled from the measured rates): sft-step small %.0f s per step, 0.5B %.0f s per step; GRPO iteration %.0f s.\n",
               step(1, Ps, 64, 512, st, 10), step(1, Pb, 64, 1024, bt, 10), grpo(1, Pb, 32, 8, 200, 86, 930, 10)
    }'
}
out=$(model)
echo "$out"
if [ "${1:-}" = --doc ]; then
    f=docs/scaling.md
    awk -v t="$out" '/<!-- costmodel:begin -->/ { print; print t; skip = 1; next } /<!-- costmodel:end -->/ { skip = 0 } !skip' "$f" > "$f.tmp"
    mv "$f.tmp" "$f"
fi
