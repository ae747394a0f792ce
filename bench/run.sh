#!/usr/bin/env bash
# bench/run.sh — srlm's speed benchmarks beside the PyTorch yardsticks, in one run, on this machine.
#
#   bench/run.sh [--quick] [--no-doc] [--threads "1 2"]
#
# 1. builds the tools (make) and the bench programs (build/bench/{sgemm,train,generate});
# 2. measures the machine's peak: FMA loop and BLIS sgemm (bench/sgemm.c), per thread count;
# 3. training tokens/s (bench/train.c vs bench/torch_train.py) and KV-cached generation tokens/s at
#    batch 1 and 8 (bench/generate.c vs bench/torch_generate.py), same shapes, same thread counts,
#    srlm and torch alternating so both see the same load; torch at its best setting here (at 2
#    threads both BLIS_NUM_THREADS=1 and =2 are run and the faster one is kept);
# 4. the tokenizer bench (bench/tokenize.sh, C vs the JS reference), if its inputs are there;
# 5. prints the tables and (unless --no-doc) rewrites the results section of docs/performance.md
#    (between the "results:begin" / "results:end" markers; the methodology above them is kept).
# Raw JSON lines go to build/bench/results.jsonl. --quick (about 5 minutes): fewer steps and
# tokens, the 0.5B shape with short sequences; the full run takes about half an hour.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
QUICK=0 DOC=1 THREADS="1 2"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --no-doc) DOC=0 ;;
        --threads) THREADS=$2; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
PY=/usr/bin/python3
# Idle OpenMP workers spin by default. On a shared machine a spinning worker whose partner thread
# was descheduled stalls every parallel region for a time slice: srlm's 2-thread decode fell from
# 87 to 15 tok/s (small, batch 1) under load 3 without this. torch_*.py set the same default.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
OUT=build/bench
RES=$OUT/results.jsonl
mkdir -p "$OUT"
: >"$RES"

# --- build -------------------------------------------------------------------------------------
make -s >/dev/null || echo "bench/run.sh: make failed; benchmarking the existing build/libcommon.a" >&2
[ -f build/libcommon.a ] || { echo "bench/run.sh: no build/libcommon.a" >&2; exit 70; }
LDLIBS=$(make -s --no-print-directory --eval 'print-ldlibs: ; @echo $(LDLIBS)' print-ldlibs 2>/dev/null || true)
[ -n "$LDLIBS" ] || LDLIBS="-fopenmp -lmsgpackc -lblis -lxxhash -lpcre2-8 -lutf8proc -ljansson -lm -lpthread"
for b in sgemm train generate; do
    cc -O2 -g -std=gnu11 -Wall -Wextra -fopenmp -D_GNU_SOURCE -Icommon -o "$OUT/$b" "bench/$b.c" \
        build/libcommon.a $LDLIBS
done

log() { echo "bench/run.sh: $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# run CMD...: appends its JSON line (with the load average before it) to $RES
run() {
    local l line
    l=$(load)
    line=$("$@" | tail -n 1) || { log "FAILED: $*"; return 0; }
    case $line in
        '{'*) echo "{\"load\":\"$l\",\"cmd\":\"$*\",\"r\":$line}" >>"$RES" ;;
        *) log "no JSON from: $*" ;;
    esac
}

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
FLAGS=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16)$' | tr '\n' ' ')
LOAD0=$(load)
log "$DATE, $CPU ($FLAGS), $(nproc) cpus, load $LOAD0, quick=$QUICK"

# --- shapes and sizes ----------------------------------------------------------------------------
for s in tiny small qwen0.5b; do $PY bench/torch_train.py --shape $s --print-config >"$OUT/$s.json"; done
if [ $QUICK = 1 ]; then
    TRAIN="tiny:512:2:2 small:512:2:2 qwen0.5b:64:1:1"      # shape:seq:batch:steps
    GEN="small:64 qwen0.5b:16"                              # shape:new tokens
    SGEMM="--quick"
else
    TRAIN="tiny:512:2:4 small:512:2:3 qwen0.5b:256:1:2"
    GEN="small:128 qwen0.5b:48"
    SGEMM=""
fi

# --- 1. peak ----------------------------------------------------------------------------------
for t in $THREADS; do
    log "sgemm peak, $t thread(s)"
    "$OUT/sgemm" --threads "$t" $SGEMM >"$OUT/sgemm-$t.jsonl"
    while read -r line; do echo "{\"load\":\"$(load)\",\"cmd\":\"$OUT/sgemm --threads $t $SGEMM\",\"r\":$line}"; done \
        <"$OUT/sgemm-$t.jsonl" >>"$RES"
done
peak() { sed -n 's/.*"bench":"peak".*"sgemm_peak":\([0-9.]*\).*/\1/p' "$OUT/sgemm-$1.jsonl"; }

# torch at 2+ threads: BLIS's own threads 1 and T (the faster is kept); 1 thread: 1
blas_settings() { if [ "$1" -gt 1 ]; then echo "1 $1"; else echo 1; fi; }

# --- 2. training ------------------------------------------------------------------------------
for spec in $TRAIN; do
    IFS=: read -r shape seq batch steps <<<"$spec"
    for t in $THREADS; do
        # --quick: the 0.5B step (about a minute with start-up) only at the largest thread count
        [ $QUICK = 1 ] && [ "$shape" = qwen0.5b ] && [ "$t" != "${THREADS##* }" ] && continue
        log "train $shape seq $seq batch $batch, $t thread(s)"
        run "$OUT/train" --config "$OUT/$shape.json" --threads "$t" --seq "$seq" --batch "$batch" \
            --steps "$steps" --warmup 1 --peak "$(peak "$t")"
        bs=$(blas_settings "$t")
        [ $QUICK = 1 ] && [ "$shape" = qwen0.5b ] && [ "$t" -gt 1 ] && bs=$t
        for b in $bs; do
            run $PY bench/torch_train.py --shape "$shape" --threads "$t" --blas-threads "$b" --seq "$seq" \
                --batch "$batch" --steps "$steps" --warmup 1
        done
    done
done

# --- 3. generation ----------------------------------------------------------------------------
for spec in $GEN; do
    IFS=: read -r shape nt <<<"$spec"
    for t in $THREADS; do
        for B in 1 8; do
            log "generate $shape batch $B, $t thread(s)"
            for dt in f32 bf16; do
                run "$OUT/generate" --config "$OUT/$shape.json" --threads "$t" --batch $B --new-tokens "$nt" \
                    --prompt-len 32 --dtype $dt
            done
            for b in $(blas_settings "$t"); do
                run $PY bench/torch_generate.py --shape "$shape" --threads "$t" --blas-threads "$b" --batch $B \
                    --new-tokens "$nt" --prompt-len 32
            done
        done
    done
done

# --- 4. tokenizer -----------------------------------------------------------------------------
TOKMD=$OUT/tokenize.md
: >"$TOKMD"
if make -s tests >/dev/null 2>&1 && [ -x build/tests/bin/test-tokenizer ]; then
    log "tokenizer"
    bench/tokenize.sh $([ $QUICK = 1 ] && echo 1 || echo 3) >"$TOKMD" 2>"$OUT/tokenize.err" ||
        { log "tokenize.sh failed (see $OUT/tokenize.err)"; : >"$TOKMD"; }
else
    log "tokenizer bench skipped (make tests failed)"
fi
LOAD1=$(load)

# --- 5. tables --------------------------------------------------------------------------------
MD=$OUT/results.md
$PY - "$RES" "$TOKMD" "$DATE" "$CPU" "$FLAGS" "$LOAD0" "$LOAD1" "$QUICK" "$0 $*" >"$MD" <<'PYEOF'
import json, sys
res, tokmd, date, cpu, flags, load0, load1, quick, cmdline = sys.argv[1:]
rows = [json.loads(l) for l in open(res) if l.strip()]
shape_of = lambda r: r["shape"].rsplit("/", 1)[-1].replace(".json", "")
P = print
P(f"Measured {date} by `bench/run.sh{' --quick' if quick == '1' else ''}` on {cpu} ({flags.strip()}), "
  f"load average {load0} at the start, {load1} at the end. The machine is shared: every figure is "
  "one run under whatever else was running; torch and srlm alternate, so both saw similar load.\n")

# peak
P("### Peak (bench/sgemm.c)\n")
P("| threads | FMA-loop peak GFLOP/s | BLIS arch | sgemm 1024² NT | sgemm 2048² NT | sgemm 2048² NN | training-like shapes (best / median) |")
P("|---|---|---|---|---|---|---|")
by_t = {}
for x in rows:
    r = x["r"]
    if r.get("bench") in ("sgemm", "fma_peak", "peak"):
        by_t.setdefault(r["threads"], []).append(r)
peaks = {}
for t, rs in sorted(by_t.items()):
    fma = next((r for r in rs if r["bench"] == "fma_peak"), {})
    pk = next((r for r in rs if r["bench"] == "peak"), {})
    peaks[t] = pk.get("sgemm_peak", 0)
    sq = [r for r in rs if r["bench"] == "sgemm" and r["what"] == "square"]
    other = "; ".join(f"{r['what']}: {r['best_gflops']:.0f} / {r['median_gflops']:.0f}"
                      for r in rs if r["bench"] == "sgemm" and r["what"] != "square")
    P(f"| {t} | {fma.get('best_gflops', 0):.1f} | {pk.get('arch', '?')} | " +
      " | ".join(f"{r['best_gflops']:.1f}" for r in sq) + f" | {other} |")
P("\nsgemm figures are GFLOP/s, best of several calls (median beside the shapes). The "
  "\"fraction of peak\" below divides by the best square sgemm rate at the same thread count.\n")

def best_torch(bench, shape, t, **kw):
    c = [x for x in rows if x["r"].get("tool") == "torch" and x["r"]["bench"] == bench and
         x["r"]["shape"] == shape and x["r"]["threads"] == t and
         all(x["r"].get(k) == v for k, v in kw.items())]
    return max(c, key=lambda x: x["r"]["tok_per_s"]) if c else None

P("### Training step (forward + cross-entropy + backward + clip + AdamW)\n")
P("| shape | threads | tokens/step | srlm tok/s | torch tok/s (BLIS thr) | srlm / torch | srlm GFLOP/s | of sgemm peak | srlm ms fwd/loss/bwd/optim (best step) | peak RSS srlm / torch MB | load |")
P("|---|---|---|---|---|---|---|---|---|---|---|")
for x in rows:
    r = x["r"]
    if r.get("tool") != "srlm" or r["bench"] != "train":
        continue
    s = shape_of(r)
    tt = best_torch("train", s, r["threads"], seq=r["seq"], batch=r["batch"])
    ttok = tt["r"]["tok_per_s"] if tt else 0
    ph = r["phase_ms"]
    P(f"| {s} | {r['threads']} | {r['batch']}×{r['seq']} | **{r['tok_per_s']:.0f}** | "
      f"{ttok:.0f} ({tt['r']['blas_threads'] if tt else '-'}) | **{r['tok_per_s'] / ttok:.2f}×** | "
      f"{r['gflops_per_s']:.1f} | {100 * r['frac_peak']:.0f}% | "
      f"{ph['forward']:.0f} / {ph['loss']:.0f} / {ph['backward']:.0f} / {ph['optim']:.0f} | "
      f"{r['peak_rss_mb']:.0f} / {tt['r']['peak_rss_mb'] if tt else 0:.0f} | {x['load']} |"
      if ttok else f"| {s} | {r['threads']} | {r['batch']}×{r['seq']} | {r['tok_per_s']:.0f} | - | - | "
      f"{r['gflops_per_s']:.1f} | {100 * r['frac_peak']:.0f}% | | {r['peak_rss_mb']:.0f} | {x['load']} |")
P("\nGFLOP/s counts 6·(matmul parameters, lm_head included, embedding lookup not)·tokens + causal "
  "attention (bench/train.c header); the fraction divides it by the sgemm peak above.\n")

P("### Generation with the KV cache (prompt 32 tokens, random weights, sampling at temperature 1)\n")
P("| shape | threads | batch | srlm weights | srlm tok/s | torch tok/s (f32, BLIS thr) | srlm / torch | srlm ms/step | weights GB/s | srlm prefill tok/s | load |")
P("|---|---|---|---|---|---|---|---|---|---|---|")
for x in rows:
    r = x["r"]
    if r.get("tool") != "srlm" or r["bench"] != "generate":
        continue
    s = shape_of(r)
    tt = best_torch("generate", s, r["threads"], batch=r["batch"], new_tokens=r["new_tokens"])
    ttok = tt["r"]["tok_per_s"] if tt else 0
    ratio = f"**{r['tok_per_s'] / ttok:.2f}×**" if ttok else "-"
    P(f"| {s} | {r['threads']} | {r['batch']} | {r.get('dtype', 'f32')} | **{r['tok_per_s']:.1f}** | "
      f"{ttok:.1f} ({tt['r']['blas_threads'] if tt else '-'}) | {ratio} | {r['ms_per_step']:.1f} | "
      f"{r['gbytes_per_s']:.1f} | {r['prefill_tok_per_s']:.0f} | {x['load']} |")
P("\n\"weights GB/s\" = weight bytes (4 per parameter in f32, 2 in bf16) one decode step reads / "
  "step time: at batch 1 decoding is bound by memory bandwidth, so this is the figure to compare "
  "with the machine's. bf16 rows decode from bf16 weights (`rollout --dtype bf16`); torch runs f32.\n")

P("llama.cpp on this host: `bench/llamacpp/run.sh` (prebuilt llama.cpp from npm node-llama-cpp, "
  "side by side with srlm; figures under \"llama.cpp on this host\" in docs/performance.md). The "
  "issue's own llama.cpp figures were measured on another machine: small shape f32 358 / 721 tok/s "
  "(batch 1 / 8), 0.5B f32 11.7 / 58.8, bf16 17.3 at batch 1.\n")
tok = open(tokmd).read().strip()
if tok:
    P(tok.replace("### Tokenizer", "### Tokenizer", 1) + "\n")
P("Exact commands (the raw JSON lines, with the load average before each, are in "
  "build/bench/results.jsonl):\n")
P("```")
seen = set()
for x in rows:
    c = x["cmd"]
    if c not in seen:
        seen.add(c)
        P(c)
P("```")
PYEOF
cat "$MD"

if [ $DOC = 1 ]; then
    DOCF=docs/performance.md
    [ -f "$DOCF" ] || printf '# Performance\n\n<!-- results:begin -->\n<!-- results:end -->\n' >"$DOCF"
    $PY - "$DOCF" "$MD" <<'PYEOF'
import sys
doc, md = sys.argv[1:]
s = open(doc).read()
b, e = "<!-- results:begin -->", "<!-- results:end -->"
new = open(md).read().rstrip() + "\n"
if b in s and e in s:
    s = s[:s.index(b) + len(b)] + "\n" + new + s[s.index(e):]
else:
    s = s.rstrip() + "\n\n## Results\n\n" + b + "\n" + new + e + "\n"
open(doc, "w").write(s)
PYEOF
    log "rewrote the results section of $DOCF"
fi
