#!/usr/bin/env bash
# grpo.sh — GRPO training as a loop of srlm pipelines (docs/rl.md):
#
#   for i in 1..N:
#     tokenize < prompts(i) | rollout --model P(i-1) -G g | score ... | rl-step --model P(i-1) --out P(i)
#
# P(0) is --model; the checkpoint rl-step writes in iteration i is the policy that samples in
# iteration i+1, so every rollout comes from the weights being trained (rl-step checks it).
#
# usage: pipelines/grpo.sh --model DIR --prompts FILE --out DIR [--iters N] [-G N]
#            [--prompts-per-iter N] [--seed S] [--ref DIR]
#            [--tokenize-arg A]... [--rollout-arg A]... [--score-arg A]... [--rl-arg A]...
#
#   --model DIR            starting policy (a Hugging Face directory with tokenizer.json)
#   --prompts FILE         JSON lines with "id", "prompt" and what score needs (e.g. "answer")
#   --out DIR              DIR/iter-<i>/: the checkpoint of iteration i, samples.mp (scored
#                          rollouts) and metrics.mp (rl-step's metrics); DIR/rewards.tsv
#   --iters N              iterations (default 10)
#   -G N                   completions per prompt (default 8)
#   --prompts-per-iter N   take the prompts N at a time, cycling through the file (default: all
#                          of them every iteration)
#   --seed S               rollout seed of iteration i is S + i (default 1337)
#   --ref DIR              reference model for rl-step's KL penalty (pass --rl-arg --beta ...)
#   --<stage>-arg A        one extra argument for that stage (repeat for several), e.g.
#                          --score-arg --task --score-arg gsm8k --rl-arg --lr --rl-arg 1e-6
#
# Finished iterations (DIR/iter-<i>/DONE) are skipped, so a killed run restarts where it stopped.
# The tools are found on PATH; from a checkout: PATH="$PWD/bin:$PATH" pipelines/grpo.sh ...
set -euo pipefail

die() { echo "grpo.sh: $*" >&2; exit 64; }

model='' prompts='' out='' iters=10 G=8 per_iter=0 seed=1337 ref=''
tok_args=() roll_args=() score_args=() rl_args=()
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || case $1 in -h|--help) ;; *) die "$1 needs a value" ;; esac
    case $1 in
        --model) model=$2 ;;
        --prompts) prompts=$2 ;;
        --out) out=$2 ;;
        --iters) iters=$2 ;;
        -G) G=$2 ;;
        --prompts-per-iter) per_iter=$2 ;;
        --seed) seed=$2 ;;
        --ref) ref=$2 ;;
        --tokenize-arg) tok_args+=("$2") ;;
        --rollout-arg) roll_args+=("$2") ;;
        --score-arg) score_args+=("$2") ;;
        --rl-arg) rl_args+=("$2") ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done
[ -n "$model" ] || die "--model DIR is required"
[ -n "$prompts" ] || die "--prompts FILE is required"
[ -n "$out" ] || die "--out DIR is required"
[ -f "$prompts" ] || { echo "grpo.sh: $prompts: no such file" >&2; exit 66; }
for v in iters G per_iter seed; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-}: not a number: ${!v}"
done
if [ "$iters" -lt 1 ] || [ "$G" -lt 1 ]; then die "--iters and -G must be >= 1"; fi
ref_args=()
[ -n "$ref" ] && ref_args=(--ref "$ref")

mkdir -p "$out"
nprompts=$(grep -c . "$prompts" || true)
[ "$nprompts" -gt 0 ] || { echo "grpo.sh: $prompts: no prompts" >&2; exit 65; }

# The prompts of iteration i: all of them, or the i-th window of --prompts-per-iter (cyclic).
prompts_of() {
    if [ "$per_iter" -eq 0 ]; then grep . "$prompts"; return; fi
    grep . "$prompts" | awk -v s=$((($1 - 1) * per_iter)) -v n="$per_iter" \
        '{ line[NR] = $0 } END { for (k = 0; k < n; k++) print line[(s + k) % NR + 1] }'
}

policy=$model
for ((i = 1; i <= iters; i++)); do
    dir=$out/iter-$i
    if [ -f "$dir/DONE" ]; then policy=$dir; continue; fi
    mkdir -p "$dir"
    prompts_of "$i" \
        | tokenize --tokenizer "$policy" ${tok_args[@]+"${tok_args[@]}"} \
        | rollout --model "$policy" -G "$G" --seed $((seed + i)) ${roll_args[@]+"${roll_args[@]}"} \
        | score ${score_args[@]+"${score_args[@]}"} \
        | tee "$dir/samples.mp" \
        | rl-step --model "$policy" --out "$dir" ${ref_args[@]+"${ref_args[@]}"} ${rl_args[@]+"${rl_args[@]}"} \
        > "$dir/metrics.mp"
    # mean reward of the iteration's samples (the first metrics record holds the batch figures
    # of the first rollout batch; the samples file holds them all)
    r=$(to-json < "$dir/samples.mp" | grep '^{"kind":"sample"' | awk -F'"reward":' 'NF > 1 { split($2, a, /[,}]/); s += a[1]; n++ }
                                                       END { if (n) printf "%.4f", s / n; else print "nan" }')
    printf '%d\t%s\n' "$i" "$r" >> "$out/rewards.tsv"
    echo "grpo.sh: iteration $i/$iters: mean reward $r -> $dir" >&2
    touch "$dir/DONE"
    policy=$dir
done
