#!/usr/bin/env bash
# report.sh — turns a study directory (pipelines/study.sh) into a report: OUT/report.md,
# OUT/results.csv, OUT/curves.csv, OUT/rl-passes.csv and PNG plots of the training curves
# (gnuplot). Every figure is read from the run's own files: eval/<model>.{greedy,sampled}.json
# (evaluate --json), stages.csv (wall time per stage), the metrics streams the training tools
# wrote, and each GRPO run's rewards.tsv and curve.tsv (pipelines/grpo.sh).
#
# usage: pipelines/report.sh OUT
#
# Exit status: 0 ok, 64 usage, 66 OUT holds no evaluations.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$PATH"
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 64; }
OUT=$1
[ -d "$OUT/eval" ] || { echo "report.sh: $OUT/eval: no evaluations (run pipelines/study.sh)" >&2; exit 66; }

# method | started from (relative to the block's start) | description
METHODS=(
  "sft|start|supervised fine-tuning on the reference solutions"
  "sft-lora|start|SFT with LoRA adapters (rank 16), merged"
  "kd|start|logit distillation from the teacher's top-8 (forward KL, alpha 0.5 with CE)"
  "seqkd|start|sequence-level KD: SFT on the teacher's correct samples"
  "grpo|start|GRPO with the correctness reward"
  "sft-grpo|sft|SFT, then GRPO"
  "kd-grpo|kd|logit KD, then GRPO"
)
STARTS=(base instruct)
prefix() { [ "$1" = base ] && echo "" || echo "$1-"; }

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
pct() { awk -v v="$1" 'BEGIN { if (v == "nan" || v == "") print "–"; else printf "%.1f%%", 100 * v }'; }

csv=$OUT/results.csv
echo "start,pipeline,from,greedy_pass1,greedy_ci_low,greedy_ci_high,pass1,pass1_ci_low,pass1_ci_high,passk,passk_ci_low,passk_ci_high,majk,majk_ci_low,majk_ci_high,k,test_prompts,train_tokens,train_seconds" > "$csv"
header="| pipeline | from | greedy pass@1 [95% CI] | Δ greedy | pass@1 | pass@K | maj@K | training tokens | training s |
|---|---|---|---|---|---|---|---|---|"

# row START NAME FROM: one line of the table (and of results.csv) for eval/NAME
row() {
    local start=$1 name=$2 from=$3
    local g=$OUT/eval/$name.greedy.json s=$OUT/eval/$name.sampled.json
    [ -f "$g" ] && [ -f "$s" ] || return 0
    local k tokens secs dg
    k=$(getj "$s" '.group_size')
    tokens=$(metrics_of "$name" | jq -s 'map(.tokens) | add // 0')
    secs=$(stage_seconds "$name"); [ -n "$secs" ] || secs=0
    trip() { getj "$1" ".metrics[\"$2\"] | \"\(.value),\(.ci_low),\(.ci_high)\""; }
    echo "$start,$name,$from,$(trip "$g" pass@1),$(trip "$s" pass@1),$(trip "$s" "pass@$k"),$(trip "$s" "maj@$k"),$k,$(getj "$g" .prompts),$tokens,$secs" >> "$csv"
    fmt() { getj "$1" ".metrics[\"$2\"] | \"\(.value * 1000 | round / 10)% [\(.ci_low * 1000 | round / 10), \(.ci_high * 1000 | round / 10)]\""; }
    short() { getj "$1" ".metrics[\"$2\"].value * 1000 | round / 10"; }
    dg="–"
    if [ "$from" != "random init" ] && [ -f "$OUT/eval/$from.greedy.json" ]; then
        dg=$(jq -rn --slurpfile a "$g" --slurpfile b "$OUT/eval/$from.greedy.json" \
            '($a[0].metrics["pass@1"].value - $b[0].metrics["pass@1"].value) * 1000 | round / 10 | if . > 0 then "+\(.)" else "\(.)" end')
    fi
    printf '| %s | %s | %s | %s | %s%% | %s%% | %s%% | %s | %s |\n' "$name" "$from" "$(fmt "$g" pass@1)" "$dg" \
        "$(short "$s" pass@1)" "$(short "$s" "pass@$k")" "$(short "$s" "maj@$k")" "$tokens" "$secs"
}

tables=""
for st in "${STARTS[@]}"; do
    p=$(prefix "$st")
    [ -f "$OUT/eval/$st.greedy.json" ] || continue
    t="$header
$(row "$st" "$st" "$([ "$st" = base ] && echo "random init" || echo base)")"
    for m in "${METHODS[@]}"; do
        IFS='|' read -r name from desc <<<"$m"
        [ "$from" = start ] && from=$st || from=$p$from
        t+="
$(row "$st" "$p$name" "$from")"
    done
    tables+="
### Starting from the $st student

$t
"
done
teacher_row=$(row teacher teacher "random init")

# ---------------------------------------------------------------------------------------------
# GRPO: learning curves (held-out greedy pass@1 per step), reward per step, reward per pass.

RL_RUNS=()
for st in "${STARTS[@]}"; do
    p=$(prefix "$st")
    for r in grpo sft-grpo kd-grpo; do [ -f "$OUT/$p$r/rewards.tsv" ] && RL_RUNS+=("$p$r"); done
done
mkdir -p "$OUT/plots"
echo "run,iteration,step,greedy_pass1,ci_low,ci_high" > "$OUT/curves.csv"
echo "run,pass,iterations,mean_reward" > "$OUT/rl-passes.csv"
n_rl=$(grep -c . "$OUT/rl-prompts.jsonl" 2>/dev/null || echo 0)
passes_md=""
for r in ${RL_RUNS[@]+"${RL_RUNS[@]}"}; do
    [ -f "$OUT/$r/curve.tsv" ] && tail -n +2 "$OUT/$r/curve.tsv" | awk -F'\t' -v r="$r" -v OFS=, '{ print r, $1, $2, $3, $4, $5 }' >> "$OUT/curves.csv"
    tail -n +2 "$OUT/$r/curve.tsv" 2>/dev/null | cut -f2,3 > "$OUT/plots/$r.curve.tsv" || true
    # reward of each optimizer step (its rollout batch's mean), and its moving average over the
    # last 32 steps (a pass through the study's prompts: 8 iterations of 4 steps)
    metrics_of "$r" | jq -r '"\(.step)\t\(.reward // .reward_mean // "nan")"' \
        | awk -F'\t' -v W=32 '{ w[NR % W] = $2; n = NR < W ? NR : W; s = 0; for (k in w) s += w[k]; print $1 "\t" $2 "\t" s / n }' \
        > "$OUT/plots/$r.reward.tsv"
    # whole passes through the prompt set: iterations whose prompt windows tile it once
    ppi=$(to-json "$OUT/$r/iter-1/samples.mp" 2>/dev/null | jq -s '[.[] | select(.kind == "sample")] | (length / (map(.sample) | max + 1))' 2>/dev/null || echo 0)
    if [ "$n_rl" -gt 0 ] && [ "${ppi%.*}" -gt 0 ] 2>/dev/null && [ $((n_rl % ${ppi%.*})) = 0 ]; then
        ipp=$((n_rl / ${ppi%.*}))
        awk -F'\t' -v ipp="$ipp" -v r="$r" -v OFS=, '{ p = int(($1 - 1) / ipp); s[p] += $3; c[p]++; if (p > m) m = p }
            END { for (p = 0; p <= m; p++) if (c[p] == ipp) print r, p + 1, c[p], s[p] / c[p] }' "$OUT/$r/rewards.tsv" >> "$OUT/rl-passes.csv"
    fi
    first=$(awk -F, -v r="$r" '$1 == r { print $4; exit }' "$OUT/rl-passes.csv")
    last=$(awk -F, -v r="$r" '$1 == r { v = $4 } END { print v }' "$OUT/rl-passes.csv")
    npass=$(awk -F, -v r="$r" '$1 == r' "$OUT/rl-passes.csv" | wc -l)
    c0=$(tail -n +2 "$OUT/$r/curve.tsv" 2>/dev/null | head -n 1 | cut -f3)
    c1=$(tail -n 1 "$OUT/$r/curve.tsv" 2>/dev/null | cut -f3)
    best=$(tail -n +2 "$OUT/$r/curve.tsv" 2>/dev/null | sort -t$'\t' -k3,3g | tail -n 1 | cut -f3)
    passes_md+="| $r | $npass | $(pct "$first") | $(pct "$last") | $(pct "$c0") | $(pct "$best") | $(pct "$c1") |
"
done

# Curves: loss per step of the supervised stages.
SUP=(teacher base instruct)
for st in "${STARTS[@]}"; do p=$(prefix "$st"); SUP+=("${p}sft" "${p}sft-lora" "${p}kd" "${p}seqkd"); done
for st in "${SUP[@]}"; do metrics_of "$st" | jq -r '"\(.step)\t\(.loss)"' > "$OUT/plots/$st.loss.tsv"; done
plots=""
if command -v gnuplot >/dev/null && [ ${#RL_RUNS[@]} -gt 0 ]; then
    rl="${RL_RUNS[*]}" sup="${SUP[*]}"
    gnuplot 2>"$OUT/plots/gnuplot.log" <<EOF || echo "report.sh: gnuplot failed (see $OUT/plots/gnuplot.log)" >&2
set terminal pngcairo size 900,500 noenhanced
set key outside right
set grid
set output "$OUT/plots/loss.png"
set title "supervised stages: training loss (cross-entropy or KD objective) per optimizer step"
set xlabel "step"; set ylabel "loss"; set logscale y
plot for [s in "$sup"] "$OUT/plots/".s.".loss.tsv" using 1:2 with lines title s
unset logscale y
set output "$OUT/plots/rl-accuracy.png"
set title "GRPO learning curves: held-out greedy pass@1 per optimizer step"
set ylabel "greedy pass@1"; set yrange [0:*]
plot for [s in "$rl"] "$OUT/plots/".s.".curve.tsv" using 1:2 with linespoints title s
set output "$OUT/plots/rl-reward.png"
set title "GRPO training reward per step (thin: batch mean; thick: mean of the last 32 steps)"
set ylabel "mean reward"
plot for [s in "$rl"] "$OUT/plots/".s.".reward.tsv" using 1:2 with lines lw 0.5 notitle, \
     for [s in "$rl"] "$OUT/plots/".s.".reward.tsv" using 1:3 with lines lw 2.5 title s
EOF
    plots="![loss](plots/loss.png)
![GRPO learning curves](plots/rl-accuracy.png)
![GRPO reward](plots/rl-reward.png)"
else
    plots="(gnuplot not installed, or no GRPO run: the curves are in plots/*.tsv and curves.csv)"
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cat > "$OUT/report.md" <<EOF
# srlm study report

The study of Zhuang et al. (2025) on the embedded arithmetic task (examples/arith, make-task). As
the paper post-trains a base model and its Instruct version, two students start here: **base** (a
short supervised warm-up: a weak start) and **instruct** (base given more supervised warm-up on a
disjoint split of problems: a stronger start). Each method runs from each, and every model is
evaluated on $(getj "$OUT/eval/base.greedy.json" .prompts) held-out problems. Greedy pass@1 has a
Wilson interval; Δ greedy is the change from the row's starting point; pass@1 / pass@K / maj@K
come from K sampled completions per problem (temperature 0.7). Training tokens are the trained
(target) tokens of the stage's own optimizer steps; seconds are the stage's wall time, including
generation for GRPO (and its learning-curve evaluations) and sequence-level KD.
$tables
The teacher (examples/arith/teacher.json, SFT from random init):

$header
$teacher_row

## GRPO runs

Each GRPO run is one optimizer run across its rollout iterations (rl-step --continue). Training
reward is averaged over whole passes through the RL prompt set (single iterations take different
prompts and are not comparable); held-out greedy pass@1 comes from the run's learning curve
(curves.csv), at the start, at its best point and at the end.

| run | passes | reward, first pass | reward, last pass | greedy pass@1 at start | best | at end |
|---|---|---|---|---|---|---|
$passes_md
Machine: $cpu, $(nproc) cores; threads ${THREADS:-2}; seed ${SEED:-1337}; scale ${SCALE:-1};
$(date -u +%Y-%m-%d). Made by pipelines/study.sh; the numbers are in results.csv, curves.csv and
rl-passes.csv.

$plots

Pipelines:
$(for m in "${METHODS[@]}"; do IFS='|' read -r name from desc <<<"$m"; echo "- **$name**: $desc."; done)
EOF
echo "report.sh: $OUT/report.md" >&2
