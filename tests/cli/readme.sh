# tests/cli/readme.sh — the README's worked example, run as it is written (issue 15: every command
# the README shows must do what its text says when pasted). The indented lines of the section
# "A worked example" are extracted, joined where they continue with "\", and run with `bash -e`
# in a directory that looks like a checkout (bin, pipelines, examples). Then what the text says
# is checked: SFT and GRPO checkpoints, one optimizer run of 16 x 4 steps, the learning curve at
# iterations 0, 8 and 16, the two evaluations on the 200 held-out problems, and the look-at line.
. "$(dirname "$0")/../lib.sh"
export OMP_WAIT_POLICY=PASSIVE
cd "$TMP"
ln -s "$TOP/bin" bin; ln -s "$TOP/pipelines" pipelines; ln -s "$TOP/examples" examples
awk '/^## A worked example/ { on = 1; next } on && /^## / { on = 0 } on && /^    / { sub(/^    /, ""); print }' \
    "$TOP/README.md" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' > example.sh
[ "$(grep -c '^grpo.sh' example.sh)" = 1 ] && ok || bad "the README's example has no grpo.sh command: $(head -c 300 example.sh)"
if bash -e example.sh > example.out 2> example.err; then ok; else bad "the README's example failed: $(tail -n 3 example.err)"; fi
[ -f runs/sft/model.safetensors ] && [ -f runs/grpo/final/model.safetensors ] && ok || bad "SFT or GRPO checkpoint missing"
expect_eq "$(to-json --no-frame runs/grpo/iter-16/metrics.mp | jq -c 'select(.kind == "metrics") | .step' | tail -n 1)" 64 \
    "GRPO: one optimizer run of 16 iterations x 4 steps"
expect_eq "$(tail -n +2 runs/grpo/curve.tsv | cut -f1 | tr '\n' ' ')" "0 8 16 " "the learning curve's points"
for e in sft grpo; do
    expect_eq "$(jq -r '.prompts' runs/eval-$e.greedy.json)" 200 "eval-$e: 200 held-out problems"
    jq -e '.metrics["pass@4"].value >= 0 and .metrics["maj@4"].value >= 0' runs/eval-$e.sampled.json > /dev/null \
        && ok || bad "eval-$e: pass@4 / maj@4 missing"
done
echo "readme: greedy pass@1 sft $(jq '.metrics["pass@1"].value' runs/eval-sft.greedy.json)," \
     "grpo $(jq '.metrics["pass@1"].value' runs/eval-grpo.greedy.json); curve $(tail -n +2 runs/grpo/curve.tsv | cut -f3 | tr '\n' ' ')" >&2
# the look-at lines
look=$(grep -o "to-json runs/grpo/iter-1/samples.mp | jq -c '[^']*'" "$TOP/README.md" | head -n 1)
[ -n "$look" ] && [ "$(bash -c "$look" | wc -l)" = 256 ] && ok || bad "the README's look-at command: $look"
[ "$(to-json --csv runs/grpo/iter-1/metrics.mp | wc -l)" = 5 ] && ok || bad "to-json --csv of an iteration's metrics: a header and 4 rows"
finish
