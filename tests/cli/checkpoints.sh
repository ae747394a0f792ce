# tests/cli/checkpoints.sh — Trainer-style checkpoints (issue 16 §4): --save-every N writes
# OUT/checkpoint-<step>/ directories, each a complete model that loads on its own (weights,
# config, tokenizer files, generation_config.json) with its run state; --save-total-limit keeps the
# newest K; --resume takes the newest complete checkpoint (a checkpoint-<step>/ newer than OUT's
# own, never a half-written .checkpoint-<step>.tmp) and ends bit for bit as an uninterrupted run.
# init-model and the trainers write generation_config.json.
. "$(dirname "$0")/../lib.sh"
cd "$TMP"
A=$TOP/examples/arith
init-model -q --config "$A/student.json" --tokenizer "$A" --out m --seed 1
jq -e '.eos_token_id == 421 and .pad_token_id == 421 and .do_sample == true and .temperature == 0.7' m/generation_config.json \
    > /dev/null && ok || bad "init-model: generation_config.json: $(cat m/generation_config.json 2>&1 | head -c 200)"
make-task --n 16 --seed 2 | tokenize -q --tokenizer "$A" > ex.mp
S=(--model m --lr 3e-3 --steps 7 --batch-tokens 60 --truncate --threads 1 -q)
sft-step "${S[@]}" --out full ex.mp > /dev/null
sft-step "${S[@]}" --out run --save-every 2 --save-total-limit 2 ex.mp > run.mp
expect_eq "$(cd run && ls -d checkpoint-* | tr '\n' ' ')" "checkpoint-4 checkpoint-6 " "--save-total-limit 2 keeps the newest two"
for f in model.safetensors config.json tokenizer.json tokenizer_config.json generation_config.json state-6/optimizer.safetensors state-6/trainer_state.json; do
    [ -f run/checkpoint-6/$f ] && ok || bad "checkpoint-6 lacks $f"
done
expect_rc 0 "checkpoint-6 loads as a model" -- init-model --from run/checkpoint-6 --dry-run -q
expect_same full/model.safetensors run/model.safetensors "--save-every leaves the final model unchanged"
# killed after checkpoint-6 was renamed into place but before OUT's own checkpoint: --resume
# takes checkpoint-6, not OUT's older one; a half-written .checkpoint-8.tmp is ignored
sft-step "${S[@]}" --out k --steps 4 --save-every 2 ex.mp > /dev/null
cp -r run/checkpoint-6 k/checkpoint-6
mkdir -p k/.checkpoint-8.tmp && echo junk > k/.checkpoint-8.tmp/model.safetensors
sft-step "${S[@]}" --out k --save-every 2 --resume -v ex.mp > k.mp 2> k.err
grep -q "checkpoint-6 is newer" k.err && ok || bad "--resume did not take the newest checkpoint-<step>: $(grep -i resum k.err | head -2)"
expect_same full/model.safetensors k/model.safetensors "--resume from checkpoint-6: the same weights as an uninterrupted run"
expect_eq "$(to-json --no-frame k.mp | jq -c 'select(.kind == "metrics") | .step' | tr '\n' ' ')" "7 " "--resume from checkpoint-6 makes step 7 only"
# killed after the last step's checkpoint-7/ was renamed into place but before --out's own step-7
# checkpoint: --resume loads checkpoint-7, has no step left, and must still write --out's own
# (the rl-step SIGKILL test met this at random)
sft-step "${S[@]}" --out last7 --save-every 7 ex.mp > /dev/null
sft-step "${S[@]}" --out k7 --steps 6 ex.mp > /dev/null
cp -r last7/checkpoint-7 k7/checkpoint-7
cp -r last7/state-7 k7/state-7   # its run state was written too, the weights not yet
sft-step "${S[@]}" --out k7 --resume ex.mp > /dev/null
expect_same full/model.safetensors k7/model.safetensors "--resume from the final checkpoint-7: --out's own model is step 7's"
expect_eq "$(ls -d k7/state-* | tr '\n' ' ')" "k7/state-7 " "--resume from the final checkpoint-7: one state directory, step 7's"
# killed inside the first checkpoint's write, after its run state and config.json but before the
# weights file that marks it: --resume finds no checkpoint, starts from --model, and ends as an
# uninterrupted run (config.json is written before the weights, so no state has weights without it)
sft-step "${S[@]}" --out first --steps 2 --save-every 2 ex.mp > /dev/null
[ "$(ls first/checkpoint-2/config.json first/state-2/trainer_state.json 2>/dev/null | wc -l)" = 2 ] && ok || bad "first: no checkpoint written"
rm -rf first/checkpoint-2 first/model.safetensors first/generation_config.json
sft-step "${S[@]}" --out first --resume -v ex.mp > /dev/null 2> first.err
grep -q "no checkpoint in first" first.err && ok || bad "a checkpoint without its weights was resumed: $(head -c 300 first.err)"
expect_same full/model.safetensors first/model.safetensors "--resume after a kill inside the first checkpoint: the uninterrupted run's weights"
expect_rc 64 "--save-total-limit out of range" -- sft-step "${S[@]}" --out x --save-total-limit -1 ex.mp
finish
