#!/usr/bin/env bash
# bench/contention.sh — speed on a shared machine (issue 17): srlm and PyTorch, with 1 and N
# threads, beside 0, 1 and N busy processes (`sh -c 'while :; do :; done'`) on an N-core machine.
#
#   bench/contention.sh [--quick] [--doc] [--threads N] [--loads "0 1 N"] [--repeat R]
#
# Workloads (the issue's three; bench/shapes.h):
#   train    small shape, seq 512 × batch 2: one optimizer step per timed step (bench/train.c,
#            bench/torch_train.py)
#   decode   0.5B shape, bf16 weights, batch 8 (bench/generate.c; PyTorch decodes in f32, its
#            bench/torch_generate.py has no bf16 path: a yardstick, not the same work)
#   prefill  small shape, 4 prompts × 256 tokens (prefill_tok_per_s of the same programs)
# At each load level the busy processes start first and run through every measurement of that
# level; srlm and PyTorch alternate, workload by workload, so both see the same machine. With
# --repeat R each figure is the median of R runs. Raw JSON lines go to build/bench/contention.jsonl;
# --doc rewrites docs/performance.md between the contention:begin/end markers.
#
# The checks printed under the table are the issue's: at every load k, srlm with N threads is at
# least as fast as with 1; it keeps >= 80% of its quiet N-thread speed times its fair share
# N/(N+k); and it is ahead of PyTorch at the same load and thread count.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
QUICK=0 DOC=0 N=$(nproc) LOADS="" REPEAT=1
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --doc) DOC=1 ;;
        --threads) N=$2; shift ;;
        --loads) LOADS=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench/contention.sh: unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
[ -n "$LOADS" ] || LOADS="0 1 $N"
PY=/usr/bin/python3
OUT=build/bench
RES=$OUT/contention.jsonl
mkdir -p "$OUT"
: >"$RES"

make -s >/dev/null
LIBS=$(make -s --no-print-directory --eval 'print-ldlibs: ; @echo $(LDLIBS)' print-ldlibs)
for b in train generate; do
    cc -O2 -std=gnu11 -fopenmp -D_GNU_SOURCE -Icommon -Ibench -o "$OUT/$b" "bench/$b.c" build/libcommon.a $LIBS
done
for s in small qwen0.5b; do $PY bench/torch_train.py --shape $s --print-config >"$OUT/$s.json"; done
HAVE_TORCH=1
$PY -c 'import torch' 2>/dev/null || { HAVE_TORCH=0; echo "bench/contention.sh: no PyTorch; srlm only" >&2; }

if [ $QUICK = 1 ]; then STEPS=2 NEW=32; else STEPS=3 NEW=64; fi

busy=()
stop_busy() { for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; busy=(); }
trap stop_busy EXIT
start_busy() { for ((i = 0; i < $1; i++)); do sh -c 'while :; do :; done' & busy+=($!); done; }

# one measurement: tool workload threads load -> a JSON line with its speed (median of REPEAT)
measure() {
    local tool=$1 work=$2 t=$3 k=$4 vals=() v
    for ((r = 0; r < REPEAT; r++)); do
        case $tool/$work in
            srlm/train) v=$("$OUT/train" --config "$OUT/small.json" --threads "$t" --seq 512 --batch 2 \
                            --steps $STEPS --warmup 1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["tok_per_s"])') ;;
            torch/train) v=$($PY bench/torch_train.py --shape small --threads "$t" --seq 512 --batch 2 \
                            --steps $STEPS --warmup 1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["tok_per_s"])') ;;
            srlm/decode) v=$("$OUT/generate" --config "$OUT/qwen0.5b.json" --dtype bf16 --threads "$t" --batch 8 \
                            --new-tokens $NEW --prompt-len 32 | $PY -c 'import json,sys; print(json.load(sys.stdin)["tok_per_s"])') ;;
            torch/decode) v=$($PY bench/torch_generate.py --shape qwen0.5b --threads "$t" --batch 8 \
                            --new-tokens $NEW --prompt-len 32 | $PY -c 'import json,sys; print(json.load(sys.stdin)["tok_per_s"])') ;;
            srlm/prefill) v=$("$OUT/generate" --config "$OUT/small.json" --threads "$t" --batch 4 \
                            --new-tokens 1 --prompt-len 256 | $PY -c 'import json,sys; print(json.load(sys.stdin)["prefill_tok_per_s"])') ;;
            torch/prefill) v=$($PY bench/torch_generate.py --shape small --threads "$t" --batch 4 \
                            --new-tokens 1 --prompt-len 256 | $PY -c 'import json,sys; print(json.load(sys.stdin)["prefill_tok_per_s"])') ;;
        esac
        vals+=("$v")
    done
    v=$(printf '%s\n' "${vals[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '{"tool":"%s","work":"%s","threads":%d,"load":%d,"tok_per_s":%s}\n' "$tool" "$work" "$t" "$k" "$v" | tee -a "$RES"
}

for k in $LOADS; do
    start_busy "$k"
    sleep 1
    for w in train decode prefill; do
        for t in 1 "$N"; do
            measure srlm $w "$t" "$k"
            [ $HAVE_TORCH = 1 ] && measure torch $w "$t" "$k"
        done
    done
    stop_busy
done

$PY - "$RES" "$N" "$DOC" "$(cpu_name=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); echo ${cpu_name# })" <<'EOF'
import json, sys, datetime, re
rows = [json.loads(l) for l in open(sys.argv[1])]
N, doc, cpu = int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
loads = sorted({r["load"] for r in rows})
get = lambda tool, w, t, k: next((r["tok_per_s"] for r in rows if (r["tool"], r["work"], r["threads"], r["load"]) == (tool, w, t, k)), None)
names = {"train": "train small, seq 512 × 2 (tok/s)", "decode": "decode 0.5B bf16, batch 8 (tok/s; PyTorch f32)",
         "prefill": "prefill small, 4 × 256 (tok/s)"}
out = []
P = out.append
P(f"Measured {datetime.date.today()} on {cpu}, {N} cores; busy processes `sh -c 'while :; do :; done'`; "
  f"fair share of N threads beside k busy processes: N/(N+k).\n")
P("| workload | tool | threads | " + " | ".join(f"{k} busy" for k in loads) + " |")
P("|---|---|---|" + "---|" * len(loads))
for w in ("train", "decode", "prefill"):
    for tool in ("srlm", "torch"):
        for t in (1, N):
            v = [get(tool, w, t, k) for k in loads]
            if all(x is None for x in v): continue
            P(f"| {names[w]} | {'srlm' if tool == 'srlm' else 'PyTorch'} | {t} | " +
              " | ".join("—" if x is None else f"{x:g}" for x in v) + " |")
P("")
P("Checks (the issue's targets), srlm with N threads at each load k:\n")
P("| workload | k | N threads ÷ 1 thread | ÷ (quiet × N/(N+k)) | ÷ PyTorch (N threads) |")
P("|---|---|---|---|---|")
for w in ("train", "decode", "prefill"):
    q = get("srlm", w, N, 0)
    for k in loads:
        a, b, tp = get("srlm", w, N, k), get("srlm", w, 1, k), get("torch", w, N, k)
        if a is None: continue
        fs = a / (q * N / (N + k)) if q else float("nan")
        P(f"| {w} | {k} | {a / b:.2f} | {fs:.2f} | " + ("—" if not tp else f"{a / tp:.2f}") + " |")
text = "\n".join(out)
print(text)
if doc:
    p = "docs/performance.md"
    s = open(p).read()
    b, e = "<!-- contention:begin -->", "<!-- contention:end -->"
    if b in s:
        s = re.sub(re.escape(b) + ".*?" + re.escape(e), lambda _: b + "\n" + text + "\n" + e, s, flags=re.S)
    else:
        s += "\n" + b + "\n" + text + "\n" + e + "\n"
    open(p, "w").write(s)
EOF
