#!/usr/bin/env bash
# report.sh — turns a study directory (pipelines/study.sh) into a report: OUT/report.md,
# OUT/results.csv and PNG plots of the training curves (gnuplot). Every figure is read from the
# run's own files: eval/<model>.{greedy,sampled}.json (evaluate --json), stages.csv (wall time per
# stage) and the metrics streams the training tools wrote.
#
#   pipelines/report.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$PATH"
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 64; }
OUT=$1
[ -d "$OUT/eval" ] || { echo "report.sh: $OUT/eval: no evaluations (run pipelines/study.sh)" >&2; exit 66; }

# name | started from | training stages whose metrics count (dirs under OUT) | description
PIPES=(
  "base|random init|base|the student after a short SFT warm-up: the starting point"
  "teacher|random init|teacher|the larger teacher, trained with SFT"
  "sft|base|sft|supervised fine-tuning on the reference solutions"
  "sft-lora|base|sft-lora|SFT with LoRA adapters (rank 16), merged"
  "kd|base|kd|logit distillation from the teacher's top-8 (forward KL, alpha 0.5 with CE)"
  "seqkd|base|seqkd|sequence-level KD: SFT on the teacher's correct samples"
  "grpo|base|grpo|GRPO with the correctness reward"
  "sft-grpo|sft|sft-grpo|SFT, then GRPO"
  "kd-grpo|kd|kd-grpo|logit KD, then GRPO"
)

# Metrics records of a training directory, as JSON lines.
metrics_of() {
    local d=$OUT/$1
    if [ -d "$d/iter-1" ]; then
        for ((i = 1; ; i++)); do [ -f "$d/iter-$i/metrics.mp" ] || break; to-json --no-frame "$d/iter-$i/metrics.mp"; done
    else
        for f in "$d"/metrics*.mp; do [ -f "$f" ] && to-json --no-frame "$f"; done
    fi | grep '"kind":"metrics"' || true
}
stage_seconds() { awk -F, -v s="$1" '$1 == s { print $2 }' "$OUT/stages.csv" | tail -n 1; }
getj() { jq -r "$2" "$1" 2>/dev/null || echo nan; }

csv=$OUT/results.csv
echo "pipeline,from,greedy_pass1,greedy_ci_low,greedy_ci_high,pass1,pass1_ci_low,pass1_ci_high,passk,passk_ci_low,passk_ci_high,majk,majk_ci_low,majk_ci_high,k,test_prompts,train_tokens,train_seconds" > "$csv"
table="| pipeline | from | greedy pass@1 [95% CI] | pass@1 | pass@K | maj@K | training tokens | training s |
|---|---|---|---|---|---|---|---|"
for p in "${PIPES[@]}"; do
    IFS='|' read -r name from stage desc <<<"$p"
    g=$OUT/eval/$name.greedy.json s=$OUT/eval/$name.sampled.json
    [ -f "$g" ] && [ -f "$s" ] || continue
    k=$(getj "$s" '.group_size')
    tokens=$(metrics_of "$stage" | jq -s 'map(.tokens) | add // 0')
    secs=$(stage_seconds "$name"); [ -n "$secs" ] || secs=$(stage_seconds "$stage"); [ -n "$secs" ] || secs=0
    row() { getj "$1" ".metrics[\"$2\"] | \"\(.value),\(.ci_low),\(.ci_high)\""; }
    echo "$name,$from,$(row "$g" pass@1),$(row "$s" pass@1),$(row "$s" "pass@$k"),$(row "$s" "maj@$k"),$k,$(getj "$g" .prompts),$tokens,$secs" >> "$csv"
    fmt() { getj "$1" ".metrics[\"$2\"] | \"\(.value * 1000 | round / 10)% [\(.ci_low * 1000 | round / 10), \(.ci_high * 1000 | round / 10)]\""; }
    short() { getj "$1" ".metrics[\"$2\"].value * 1000 | round / 10"; }
    table+="
| $name | $from | $(fmt "$g" pass@1) | $(short "$s" pass@1)% | $(short "$s" "pass@$k")% | $(short "$s" "maj@$k")% | $tokens | $secs |"
done

# Curves: loss per step of the supervised stages, reward and KL per GRPO step.
mkdir -p "$OUT/plots"
for st in teacher base sft sft-lora kd seqkd; do
    metrics_of "$st" | jq -r '"\(.step)\t\(.loss)"' > "$OUT/plots/$st.loss.tsv"
done
for st in grpo sft-grpo kd-grpo; do
    metrics_of "$st" | jq -r '"\(input_line_number)\t\(.reward_mean // "nan")\t\(.kl // "nan")"' > "$OUT/plots/$st.rl.tsv"
done
# KL is only plotted when some GRPO stage had a reference model (otherwise it is all nan).
has_kl=$(cat "$OUT"/plots/*.rl.tsv 2>/dev/null | awk -F'\t' '$3 != "nan" && $3 != "" { print "yes"; exit }')
plots=""
if command -v gnuplot >/dev/null; then
    gnuplot 2>"$OUT/plots/gnuplot.log" <<EOF || echo "report.sh: gnuplot failed (see $OUT/plots/gnuplot.log)" >&2
set terminal pngcairo size 900,500 noenhanced
set output "$OUT/plots/loss.png"
set title "training loss (cross-entropy or KD objective) per optimizer step"
set xlabel "step"; set ylabel "loss"; set logscale y; set grid
plot for [s in "teacher base sft sft-lora kd seqkd"] "$OUT/plots/".s.".loss.tsv" using 1:2 with lines title s
set output "$OUT/plots/reward.png"
unset logscale y
set title "GRPO: mean reward of the rollout batch per optimizer step"
set ylabel "reward"
plot for [s in "grpo sft-grpo kd-grpo"] "$OUT/plots/".s.".rl.tsv" using 1:2 with lines title s
$([ -n "$has_kl" ] && printf '%s\n' "set output \"$OUT/plots/kl.png\"" \
    'set title "GRPO: KL to the reference per optimizer step"' 'set ylabel "KL"' \
    "plot for [s in \"grpo sft-grpo kd-grpo\"] \"$OUT/plots/\".s.\".rl.tsv\" using 1:3 with lines title s")
EOF
    plots="![loss](plots/loss.png)
![reward](plots/reward.png)"
    [ -n "$has_kl" ] && plots+="
![kl](plots/kl.png)"
else
    plots="(gnuplot not installed: the curves are in plots/*.tsv)"
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cat > "$OUT/report.md" <<EOF
# srlm study report

The study of Zhuang et al. (2025) on the embedded arithmetic task (examples/arith, make-task):
a student (examples/arith/student.json) post-trained by each method from the same base model, and
evaluated on $(getj "$OUT/eval/base.greedy.json" .prompts) held-out problems. Greedy pass@1 has a
Wilson interval; pass@1 / pass@K / maj@K come from K sampled completions per problem
(temperature 0.7). Training tokens are the trained (target) tokens of the stage's own optimizer
steps; seconds are the stage's wall time, including generation for GRPO and sequence-level KD.

$table

Machine: $cpu, $(nproc) cores; threads ${THREADS:-2}; seed ${SEED:-1337}; scale ${SCALE:-1};
$(date -u +%Y-%m-%d). Made by pipelines/study.sh; the numbers are in results.csv.

$plots

Pipelines:
$(for p in "${PIPES[@]}"; do IFS='|' read -r name from stage desc <<<"$p"; echo "- **$name**: $desc."; done)
EOF
echo "report.sh: $OUT/report.md" >&2
