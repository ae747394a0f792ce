#!/usr/bin/env node
// llama.cpp decode-speed yardstick (through node-llama-cpp's prebuilt llama.cpp, CPU only).
//
//   node bench/llamacpp/decode.mjs --model X.gguf [--threads 2] [--batch 8] [--new-tokens 64]
//        [--prompt-len 32] [--seed 1] [--temperature 0] [--kv f16|f32] [--flash-attn auto|on|off]
//        [--shape NAME] [--dtype NAME] [--verbose] [--dump-logits K] [--prompts FILE.json] [--no-mmap]
//
// --no-mmap reads the weights into anonymous memory instead of mmap-ing the file (llama.cpp's
// default is mmap).
//
// --prompts FILE.json ({"prompts": [[ids], ...]}) replaces the random prompts (batch = their count)
// and adds every sequence's generated ids to the output ("tokens"), for checking llama.cpp's greedy
// continuation against another implementation (e.g. tests/oracle/ref_model.py generate).
//
// Loads the GGUF (gpu: false), makes a context with B sequences, prefills B random prompts
// (token ids drawn with a fixed-seed PRNG) in one batch, then decodes --new-tokens tokens per
// sequence with all B sequences advancing together: every step submits one token per sequence
// concurrently (Promise.all over sequence.controlledEvaluate), and node-llama-cpp's batcher
// ("nextCycle" dispatch) packs them into ONE llama_decode of B tokens; the script counts the
// llama_decode calls and their sizes to prove it. Sampling is llama.cpp's own sampler on the
// logits of each sequence: greedy by default (--temperature 0), else temperature sampling.
// Model load and prefill are excluded from the decode time. Prints one JSON line on stdout.
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const require = createRequire(import.meta.url);

function usage(msg) {
    if (msg) process.stderr.write(`decode.mjs: ${msg}\n`);
    process.stderr.write("usage: node decode.mjs --model X.gguf [--threads T] [--batch B] [--new-tokens N] " +
        "[--prompt-len P] [--seed S] [--temperature 0] [--kv f16|f32] [--flash-attn auto|on|off] " +
        "[--shape NAME] [--dtype NAME] [--verbose] [--dump-logits K] [--prompts FILE.json] [--no-mmap]\n");
    process.exit(msg ? 2 : 0);
}

const opt = {model: null, threads: 2, batch: 1, newTokens: 64, promptLen: 32, seed: 1, temperature: 0,
    kv: "f16", flashAttn: "auto", shape: null, dtype: null, verbose: false, dumpLogits: 0, prompts: null, mmap: true};
{
    const a = process.argv.slice(2);
    for (let i = 0; i < a.length; i++) {
        const k = a[i], v = () => { if (i + 1 >= a.length) usage(`${k} needs a value`); return a[++i]; };
        switch (k) {
            case "--model": opt.model = v(); break;
            case "--threads": opt.threads = parseInt(v(), 10); break;
            case "--batch": opt.batch = parseInt(v(), 10); break;
            case "--new-tokens": opt.newTokens = parseInt(v(), 10); break;
            case "--prompt-len": opt.promptLen = parseInt(v(), 10); break;
            case "--seed": opt.seed = parseInt(v(), 10); break;
            case "--temperature": opt.temperature = parseFloat(v()); break;
            case "--kv": opt.kv = v(); break;
            case "--flash-attn": opt.flashAttn = v(); break;
            case "--shape": opt.shape = v(); break;
            case "--dtype": opt.dtype = v(); break;
            case "--prompts": opt.prompts = v(); break;
            case "--no-mmap": opt.mmap = false; break;
            case "--dump-logits": opt.dumpLogits = parseInt(v(), 10); break;
            case "--verbose": case "-v": opt.verbose = true; break;
            case "--help": case "-h": usage(); break;
            default: usage(`unknown option ${k}`);
        }
    }
    if (!opt.model) usage("--model is required");
    if (opt.prompts) {
        const o = JSON.parse(fs.readFileSync(opt.prompts, "utf8"));
        opt.prompts = Array.isArray(o) ? o : (o.prompts ?? o.seqs);
        opt.batch = opt.prompts.length;
        opt.promptLen = Math.max(...opt.prompts.map((p) => p.length));
    }
    if (!(opt.threads >= 1 && opt.batch >= 1 && opt.newTokens >= 1 && opt.promptLen >= 1)) usage("bad numbers");
    if (!["f16", "f32"].includes(opt.kv)) usage("--kv is f16 or f32");
    if (!["auto", "on", "off"].includes(opt.flashAttn)) usage("--flash-attn is auto, on or off");
}

// node-llama-cpp runs each llama_decode and each sampling call as a libuv AsyncWorker (ggml adds
// threads-1 workers of its own inside llama_decode). Run with a libuv pool of ONE thread: the decode
// and the B sampling calls of a step are sequential anyway, the process then has at most --threads
// compute threads, and with the default pool (4) or 2 the 2-thread decode on this 2-core machine
// often ran 3x slower (steps quantized to 4 ms scheduler ticks: a second pool thread competing for
// a core). UV_THREADPOOL_SIZE must be set before libuv starts, so re-run ourselves with it set.
if (process.env.UV_THREADPOOL_SIZE !== "1") {
    const {spawnSync} = await import("node:child_process");
    const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        stdio: "inherit", env: {...process.env, UV_THREADPOOL_SIZE: "1"}});
    process.exit(r.status ?? 1);
}
const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");

// ---------------------------------------------------------------- helpers
function mulberry32(seed) {  // small deterministic PRNG for the prompts
    let t = seed >>> 0;
    return () => {
        t = (t + 0x6D2B79F5) >>> 0;
        let r = Math.imul(t ^ (t >>> 15), 1 | t);
        r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
        return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
    };
}

function median(xs) {
    const a = [...xs].sort((x, y) => x - y);
    return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
}

function taskCpuTicks() {  // per-thread utime+stime (clock ticks) of this process
    const out = new Map();
    for (const tid of fs.readdirSync("/proc/self/task")) {
        try {
            const s = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
            const rp = s.lastIndexOf(")");
            const name = s.slice(s.indexOf("(") + 1, rp);
            const f = s.slice(rp + 2).split(" ");  // f[0] = state (field 3)
            out.set(tid, {name, ticks: Number(f[11]) + Number(f[12])});  // fields 14, 15
        } catch { /* thread exited */ }
    }
    return out;
}

function packageDir(name) {  // the directory of an installed package (its exports hide package.json)
    let d = path.dirname(require.resolve(name));
    while (!fs.existsSync(path.join(d, "package.json")) ||
           JSON.parse(fs.readFileSync(path.join(d, "package.json"), "utf8")).name !== name) {
        const up = path.dirname(d);
        if (up === d) throw new Error(`cannot find the package directory of ${name}`);
        d = up;
    }
    return d;
}

function ggmlVersion() {  // ggml_version()/ggml_commit() strings, read from libggml-base.so
    try {
        const pkgDir = packageDir("@node-llama-cpp/linux-x64");
        const lib = path.join(pkgDir, "bins", "linux-x64", "libggml-base.so");
        const m = /\0(\d+\.\d+\.\d+)\0([0-9a-f]{7,40})\0/.exec(fs.readFileSync(lib).toString("latin1"));
        return m ? {ggml: m[1], commit: m[2]} : {};
    } catch {
        return {};
    }
}

const logs = [];
const llama = await getLlama({
    gpu: false,
    build: "never",            // only the shipped prebuilt binaries
    maxThreads: opt.threads,   // the instance-wide thread budget
    logLevel: LlamaLogLevel.debug,
    logger: (level, message) => {
        logs.push(message);
        if (opt.verbose) process.stderr.write(`[${level}] ${message}${message.endsWith("\n") ? "" : "\n"}`);
    },
    progressLogs: false,
    skipDownload: true
});

const t0 = performance.now();
const model = await llama.loadModel({modelPath: opt.model, gpuLayers: 0, useMmap: opt.mmap});
const loadSeconds = (performance.now() - t0) / 1000;
const vocabSize = model.fileInfo.metadata?.[model.fileInfo.metadata.general.architecture]?.vocab_size
    ?? model.fileInfo.metadata.tokenizer.ggml.tokens.length;

const perSeq = opt.promptLen + opt.newTokens + 8;
const context = await model.createContext({
    sequences: opt.batch,
    contextSize: perSeq,                       // per sequence; node-llama-cpp multiplies by sequences
    batchSize: Math.max(512, opt.batch * opt.promptLen),
    threads: {ideal: opt.threads, min: opt.threads},
    flashAttention: opt.flashAttn === "auto" ? "auto" : opt.flashAttn === "on",
    experimentalKvCacheKeyType: opt.kv.toUpperCase(),
    experimentalKvCacheValueType: opt.kv.toUpperCase(),
    ignoreMemorySafetyChecks: true
});

// count llama_decode calls and the tokens in each (node-llama-cpp internals: _ctx is the addon context)
const ctxAddon = context._ctx;
let batchTokens = 0;
const decodeSizes = [];
const decodeMs = [];  // wall time of each llama_decode (addon decodeBatch call -> its promise resolves)
context._ctx = new Proxy(ctxAddon, {
    get(target, prop) {
        const v = Reflect.get(target, prop, target);
        if (typeof v !== "function") return v;
        if (prop === "initBatch") return (...a) => { batchTokens = 0; return v.apply(target, a); };
        if (prop === "addToBatch") return (...a) => { batchTokens += a[2].length; return v.apply(target, a); };
        if (prop === "decodeBatch") return async (...a) => {
            decodeSizes.push(batchTokens);
            const t = performance.now();
            try { return await v.apply(target, a); } finally { decodeMs.push(performance.now() - t); }
        };
        return v.bind(target);
    }
});

const seqs = Array.from({length: opt.batch}, () => context.getSequence());
const rand = mulberry32(opt.seed);
const prompts = opt.prompts ?? seqs.map(() => Array.from({length: opt.promptLen}, () => Math.floor(rand() * (vocabSize - 1))));
// greedy = llama.cpp's greedy sampler (argmax); temperature > 0 = node-llama-cpp's default chain
// (top-k 40, top-p 0.95, then temperature and a seeded draw)
const sampleOpts = opt.temperature > 0 ? {temperature: opt.temperature, seed: opt.seed} : {temperature: 0};
const wantProbs = opt.dumpLogits > 0;

// ---------------------------------------------------------------- prefill (one llama_decode of B*P tokens)
const tp = performance.now();
const first = await Promise.all(seqs.map((s, i) => s.controlledEvaluate(
    prompts[i].map((t, j) => j === prompts[i].length - 1
        ? [t, {generateNext: {token: true, probabilities: wantProbs, options: sampleOpts}}]
        : t))));
const prefillSeconds = (performance.now() - tp) / 1000;
const prefillCalls = decodeSizes.length;
let next = first.map((r) => r[r.length - 1].next.token);
const out = seqs.map((_, i) => [next[i]]);
if (wantProbs) {
    const top = [...first[0][prompts[0].length - 1].next.probabilities.entries()].slice(0, opt.dumpLogits);
    process.stderr.write(`decode.mjs: seq 0 prompt ${JSON.stringify(prompts[0])}\n`);
    process.stderr.write(`decode.mjs: seq 0 top-${opt.dumpLogits} next-token probabilities ${JSON.stringify(top)}\n`);
}

// ---------------------------------------------------------------- decode (N steps of B tokens)
const ticks0 = taskCpuTicks();
const cpu0 = process.cpuUsage();
const td = performance.now();
const stepMs = [];
for (let step = 1; step < opt.newTokens + 1; step++) {
    const ts = performance.now();
    // feed the token sampled at the previous step; sample the next one (the last step's
    // sampled token is discarded, so every timed step is one decode + one sample)
    const res = await Promise.all(seqs.map((s, i) => s.controlledEvaluate(
        [[next[i], {generateNext: {token: true, options: sampleOpts}}]])));
    next = res.map((r) => r[0].next.token);
    if (step < opt.newTokens) next.forEach((t, i) => out[i].push(t));
    stepMs.push(performance.now() - ts);
}
const decodeSeconds = (performance.now() - td) / 1000;
const cpu1 = process.cpuUsage(cpu0);
const ticks1 = taskCpuTicks();
const decodeSteps = decodeSizes.slice(prefillCalls);

const hz = 100;  // USER_HZ
const busy = [];
for (const [tid, {name, ticks}] of ticks1) {
    const d = (ticks - (ticks0.get(tid)?.ticks ?? 0)) / hz;
    if (d > 0.05 * decodeSeconds)
        busy.push({tid: Number(tid), name: Number(tid) === process.pid ? "main(js)" : name, cpu_s: +d.toFixed(2)});
}

const backendLog = logs.find((m) => /loaded CPU backend/.test(m)) ?? "";
const backend = (/libggml-cpu-([\w-]+)\.so/.exec(backendLog) ?? [])[1] ?? "unknown";
const repack = logs.some((m) => /CPU_REPACK model buffer size/.test(m));
const nlcPkg = JSON.parse(fs.readFileSync(path.join(packageDir("node-llama-cpp"), "package.json"), "utf8"));
const gv = ggmlVersion();

const ftype = model.fileInfo.metadata.general.file_type;
const dtype = opt.dtype ?? ({0: "f32", 1: "f16", 32: "bf16"}[ftype] ?? `ftype${ftype}`);
const arch = model.fileInfo.metadata.general.architecture;
const md = model.fileInfo.metadata[arch];
const shape = opt.shape ?? `${arch} L${md.block_count} d${md.embedding_length} V${vocabSize}`;

// weight bytes one decode step streams (as bench/generate.c counts them: every matrix once, the
// embedding only as the (tied or untied) output projection)
let weightBytes = null;
if (model.fileInfo.tensorInfo) {
    const ti = model.fileInfo.tensorInfo;
    const hasOutput = ti.some((t) => t.name === "output.weight");
    const esize = {0: 4, 1: 2, 30: 2};
    weightBytes = ti.filter((t) => t.dimensions.length >= 2 && (t.name !== "token_embd.weight" || !hasOutput))
        .reduce((n, t) => n + t.dimensions.reduce((a, b) => a * Number(b), 1) * (esize[t.ggmlType] ?? NaN), 0);
}

const result = {
    tool: "llama.cpp",
    bench: "generate",
    shape,
    dtype,
    threads: opt.threads,
    batch: opt.batch,
    prompt_len: opt.promptLen,
    new_tokens: opt.newTokens,
    tok_per_s: +(opt.batch * opt.newTokens / decodeSeconds).toFixed(2),
    ms_per_step: +(1000 * decodeSeconds / opt.newTokens).toFixed(3),
    ms_per_step_min: +Math.min(...stepMs).toFixed(3),
    ms_per_step_median: +median(stepMs).toFixed(3),
    tok_per_s_median: +(opt.batch * 1000 / median(stepMs)).toFixed(2),
    first_step_ms: +stepMs[0].toFixed(3),
    tok_per_s_best: +(opt.batch * 1000 / Math.min(...stepMs)).toFixed(2),
    gbytes_per_s: weightBytes ? +(weightBytes / (decodeSeconds / opt.newTokens) / 1e9).toFixed(1) : null,
    prefill_tok_per_s: +(prompts.reduce((n, p) => n + p.length, 0) / prefillSeconds).toFixed(1),
    decode_s: +decodeSeconds.toFixed(4),
    llama_decode_s: +(decodeMs.slice(prefillCalls).reduce((a, b) => a + b, 0) / 1000).toFixed(4),
    llama_decode_ms_median: +median(decodeMs.slice(prefillCalls)).toFixed(3),
    tok_per_s_llama_decode_only: +(opt.batch * opt.newTokens * 1000 /
        decodeMs.slice(prefillCalls).reduce((a, b) => a + b, 0)).toFixed(2),
    prefill_s: +prefillSeconds.toFixed(4),
    load_s: +loadSeconds.toFixed(3),
    sampling: opt.temperature > 0 ? `temperature ${opt.temperature}, top-k 40, top-p 0.95` : "greedy",
    llama_decode_calls: {prefill: decodeSizes.slice(0, prefillCalls), decode: decodeSteps.length,
        decode_tokens_per_call: [...new Set(decodeSteps)]},
    cpu_util: +((cpu1.user + cpu1.system) / 1e6 / decodeSeconds).toFixed(2),
    busy_threads: busy,
    ctx_threads: context.currentThreads,
    flash_attn: context.flashAttention === "auto"
        ? `auto (${logs.some((m) => /Flash Attention enabled/.test(m)) ? "enabled" : "disabled"})`
        : context.flashAttention,
    kv_cache: opt.kv,
    mmap: opt.mmap,
    cpu_backend: backend,
    weight_repack: repack,
    first_tokens: out[0].slice(0, 8),
    ...(opt.prompts ? {tokens: out} : {}),
    version: {
        "node-llama-cpp": nlcPkg.version,
        "llama.cpp": llama.llamaCppRelease?.release,
        commit: gv.commit, ggml: gv.ggml, build: llama.buildType
    }
};
process.stdout.write(JSON.stringify(result) + "\n");
if (opt.verbose) {
    process.stderr.write(`system info: ${llama.systemInfo}\n`);
    process.stderr.write(`step ms: ${stepMs.map((x) => x.toFixed(2)).join(" ")}\n`);
    process.stderr.write(`llama_decode ms: ${decodeMs.map((x) => x.toFixed(2)).join(" ")}\n`);
}

await context.dispose();
await model.dispose();
await llama.dispose();
