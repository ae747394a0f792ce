#!/usr/bin/env bash
# grpo.sh — GRPO training as a loop of srlm pipelines (docs/rl.md). The whole loop is ONE optimizer
# run: iteration 1 starts it, every later iteration continues it (rl-step --continue), so AdamW's
# moments, the step counter and the LR schedule carry on across iterations.
#
#   for i in 1..N:
#     tokenize < prompts(i) | rollout --model P(i-1) -G g | score ... \
#       | rl-step --continue P(i-1) --out P(i)          (iteration 1: rl-step --model P(0))
#
# P(0) is --model; the checkpoint rl-step writes in iteration i is the policy that samples in
# iteration i+1, so every rollout comes from the weights being trained (rl-step checks it).
#
# usage: pipelines/grpo.sh --model DIR --prompts FILE --out DIR [--iters N] [-G N]
#            [--prompts-per-iter N] [--lr X] [--minibatches M] [--warmup N] [--schedule S]
#            [--temperature T] [--seed S] [--ref DIR] [--lora-rank R] [--eval FILE] [--eval-every N]
#            [--tokenize-arg A]... [--rollout-arg A]... [--score-arg A]... [--rl-arg A]...
#
#   --model DIR            starting policy (a Hugging Face directory with tokenizer.json); with
#                          --lora-rank the frozen base model
#   --prompts FILE         JSON lines with "id", "prompt" and what score needs (e.g. "answer")
#   --out DIR              DIR/iter-<i>/: the checkpoint of iteration i, samples.mp (scored
#                          rollouts) and metrics.mp (rl-step's metrics); DIR/rewards.tsv (iteration,
#                          first step, mean reward); DIR/final -> the last iteration
#   --iters N              iterations (default 10)
#   -G N                   completions per prompt (default 8)
#   --prompts-per-iter N   take the prompts N at a time, cycling through the file (default: all
#                          of them every iteration)
#   --lr X                 peak learning rate (default 1e-4)
#   --minibatches M        optimizer steps per iteration: its rollout batch split in M (default 4)
#   --warmup N             linear warm-up steps (default 8)
#   --schedule S           cosine (default; decays to lr/10 at the run's last step), linear or
#                          constant; the run has iters x M steps, which grpo.sh gives rl-step
#   --temperature T        rollout's sampling temperature (default 0.7)
#                          (these defaults are the study's recipe after SFT or KD, docs/rl.md)
#   --seed S               rollout seed of iteration i is S + i (default 1337)
#   --ref DIR              reference model for rl-step's KL penalty (pass --rl-arg --beta ...)
#   --lora-rank R          train a LoRA adapter of rank R (default: $LORA_RANK, or 0 = every
#                          weight); rollout then samples from --model + the adapter
#   --eval FILE            held-out JSON lines: greedy pass@1 of the starting policy and of every
#                          --eval-every'th iteration (and the last) goes to DIR/curve.tsv
#                          (iteration, step, greedy pass@1, its 95% interval, prompts)
#   --eval-every N         (default 2)
#   --<stage>-arg A        one extra argument for that stage (repeat for several), e.g.
#                          --score-arg --reward --score-arg correct=1,format=0.1
#                          --rl-arg --beta --rl-arg 0.04 (with --ref)
#
# Each iteration's prompts form one rollout batch (rl-step --groups-per-step = the prompts of an
# iteration), split into --minibatches steps.
# Environment: THREADS (default: rollout's and rl-step's own), MAX_NEW (eval tokens, default 160).
#
# Finished iterations (DIR/iter-<i>/DONE) are skipped, so a killed run restarts where it stopped:
# the unfinished iteration is redone from the previous one's checkpoint, which gives the same
# bits (sampling is keyed by seed, id and position). Once iteration i is done, the optimizer
# state of iteration i-1 (its state-* directory) is removed; every iteration keeps its weights.
# The tools are found on PATH; from a checkout: PATH="$PWD/bin:$PATH" pipelines/grpo.sh ...
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"

die() { echo "grpo.sh: $*" >&2; exit 64; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

model='' prompts='' out='' iters=10 G=8 per_iter=0 seed=1337 ref='' lora=${LORA_RANK:-0}
lr=1e-4 minibatches=4 warmup=8 schedule=cosine temperature=0.7
evalf='' eval_every=2
tok_args=() roll_args=() score_args=() rl_args=()
while [ $# -gt 0 ]; do
    case $1 in -h|--help) usage; exit 0 ;; esac
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
        --model) model=$2 ;;
        --prompts) prompts=$2 ;;
        --out) out=$2 ;;
        --iters) iters=$2 ;;
        -G) G=$2 ;;
        --prompts-per-iter) per_iter=$2 ;;
        --seed) seed=$2 ;;
        --lr) lr=$2 ;;
        --minibatches) minibatches=$2 ;;
        --warmup) warmup=$2 ;;
        --schedule) schedule=$2 ;;
        --temperature) temperature=$2 ;;
        --ref) ref=$2 ;;
        --lora-rank) lora=$2 ;;
        --eval) evalf=$2 ;;
        --eval-every) eval_every=$2 ;;
        --tokenize-arg) tok_args+=("$2") ;;
        --rollout-arg) roll_args+=("$2") ;;
        --score-arg) score_args+=("$2") ;;
        --rl-arg) rl_args+=("$2") ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done
[ -n "$model" ] || die "--model DIR is required"
[ -n "$prompts" ] || die "--prompts FILE is required"
[ -n "$out" ] || die "--out DIR is required"
[ -f "$prompts" ] || { echo "grpo.sh: $prompts: no such file" >&2; exit 66; }
[ -z "$evalf" ] || [ -f "$evalf" ] || { echo "grpo.sh: $evalf: no such file" >&2; exit 66; }
for v in iters G per_iter seed lora eval_every minibatches warmup; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-}: not a number: ${!v}"
done
if [ "$iters" -lt 1 ] || [ "$G" -lt 1 ] || [ "$eval_every" -lt 1 ] || [ "$minibatches" -lt 1 ]; then
    die "--iters, -G, --minibatches and --eval-every must be >= 1"
fi
[[ $lr =~ ^[0-9.]+([eE][-+]?[0-9]+)?$ ]] || die "--lr: not a number: $lr"
[[ $temperature =~ ^[0-9.]+([eE][-+]?[0-9]+)?$ ]] || die "--temperature: not a number: $temperature"
case $schedule in cosine|linear|constant) ;; *) die "--schedule: $schedule is not cosine, linear or constant" ;; esac
ref_args=() thr_args=()
[ -n "$ref" ] && ref_args=(--ref "$ref")
[ -n "${THREADS:-}" ] && thr_args=(--threads "$THREADS")

mkdir -p "$out"
nprompts=$(grep -c . "$prompts" || true)
[ "$nprompts" -gt 0 ] || { echo "grpo.sh: $prompts: no prompts" >&2; exit 65; }
# one optimizer run: iters x minibatches steps, each iteration's prompts one rollout batch
gps=$per_iter; [ "$gps" -eq 0 ] && gps=$nprompts
steps=$((iters * minibatches))
[ "$warmup" -le "$steps" ] || die "--warmup $warmup exceeds the run's $steps steps"
sched=(--lr "$lr" --schedule "$schedule" --warmup "$warmup" --steps "$steps" --minibatches "$minibatches"
       --groups-per-step "$gps")
[ "$schedule" = constant ] || sched+=(--min-lr "$(awk -v l="$lr" 'BEGIN { print l / 10 }')")

# The prompts of iteration i: all of them, or the i-th window of --prompts-per-iter (cyclic).
prompts_of() {
    if [ "$per_iter" -eq 0 ]; then grep . "$prompts"; return; fi
    grep . "$prompts" | awk -v s=$((($1 - 1) * per_iter)) -v n="$per_iter" \
        '{ line[NR] = $0 } END { for (k = 0; k < n; k++) print line[(s + k) % NR + 1] }'
}

# The policy after iteration i, as the arguments that load it (rollout, evaluation).
policy_args() {
    local p=$model; [ "$1" -gt 0 ] && p=$out/iter-$1
    if [ "$lora" -gt 0 ]; then
        if [ "$1" -gt 0 ]; then echo "--model $model --adapter $p"; else echo "--model $model"; fi
    else echo "--model $p"; fi
}

# Greedy pass@1 of the policy after iteration i on --eval, appended to DIR/curve.tsv once.
eval_point() {
    local i=$1 step=0
    [ -n "$evalf" ] || return 0
    [ -f "$out/curve.tsv" ] || printf 'iteration\tstep\tgreedy_pass1\tci_low\tci_high\tprompts\n' > "$out/curve.tsv"
    awk -F'\t' -v i="$i" 'NR > 1 && $1 == i { f = 1 } END { exit !f }' "$out/curve.tsv" && return 0
    [ "$i" -gt 0 ] && step=$(to-json "$out/iter-$i/metrics.mp" | jq -s '[.[] | select(.kind == "metrics") | .step] | max // 0')
    # shellcheck disable=SC2046
    tokenize --tokenizer "$model" ${tok_args[@]+"${tok_args[@]}"} < "$evalf" \
        | ${mpi[@]+"${mpi[@]}"} rollout $(policy_args "$i") --greedy -G 1 --max-new-tokens "${MAX_NEW:-160}" --seed "$seed" -q \
            ${thr_args[@]+"${thr_args[@]}"} \
        | score ${score_args[@]+"${score_args[@]}"} \
        | evaluate --greedy --json -q > "$out/eval-$i.json"
    jq -r --arg i "$i" --arg s "$step" '.metrics["pass@1"] as $m | "\($i)\t\($s)\t\($m.value)\t\($m.ci_low)\t\($m.ci_high)\t\(.prompts)"' \
        "$out/eval-$i.json" >> "$out/curve.tsv"
    echo "grpo.sh: held-out greedy pass@1 after iteration $i: $(jq '.metrics["pass@1"].value' "$out/eval-$i.json")" >&2
}

eval_point 0
for ((i = 1; i <= iters; i++)); do
    dir=$out/iter-$i
    if [ -f "$dir/DONE" ]; then continue; fi
    mkdir -p "$dir"
    start=(--model "$model")
    [ "$lora" -gt 0 ] && start+=(--lora-rank "$lora")
    [ "$i" -gt 1 ] && start+=(--continue "$out/iter-$((i - 1))")
    # shellcheck disable=SC2046
    prompts_of "$i" \
        | tokenize --tokenizer "$model" ${tok_args[@]+"${tok_args[@]}"} \
        | ${mpi[@]+"${mpi[@]}"} rollout $(policy_args $((i - 1))) -G "$G" --temperature "$temperature" --seed $((seed + i)) \
            ${thr_args[@]+"${thr_args[@]}"} ${roll_args[@]+"${roll_args[@]}"} \
        | score ${score_args[@]+"${score_args[@]}"} \
        | tee "$dir/samples.mp" \
        | ${mpi[@]+"${mpi[@]}"} rl-step "${start[@]}" --out "$dir" "${sched[@]}" ${ref_args[@]+"${ref_args[@]}"} \
            ${thr_args[@]+"${thr_args[@]}"} ${rl_args[@]+"${rl_args[@]}"} \
        > "$dir/metrics.mp"
    # mean reward of the iteration's samples, and the run's step its first update took
    r=$(to-json --no-frame "$dir/samples.mp" | jq -s '[.[] | select(.kind == "sample") | .reward] | if length > 0 then add / length else null end')
    s=$(to-json --no-frame "$dir/metrics.mp" | jq -s '[.[] | select(.kind == "metrics") | .step] | min // "none"')
    printf '%d\t%s\t%s\n' "$i" "$s" "$r" >> "$out/rewards.tsv"
    echo "grpo.sh: iteration $i/$iters (step $s): mean reward $r -> $dir" >&2
    touch "$dir/DONE"
    # the moments of the previous iteration are superseded by this one's
    [ "$i" -gt 1 ] && rm -rf "$out/iter-$((i - 1))"/state-*
    if [ $((i % eval_every)) = 0 ] || [ "$i" = "$iters" ]; then eval_point "$i"; fi
done
ln -sfn "iter-$iters" "$out/final"
