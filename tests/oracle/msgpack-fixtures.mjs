// msgpack-fixtures.mjs — independent msgpack references for the stream tests (tests/cli/stream.sh,
// tests/unit/test-rec.c). Nothing here uses srlm's C code: the encodings come from the npm
// msgpack-test-suite and @msgpack/msgpack.
//
//   node msgpack-fixtures.mjs suite OUT.mp OUT.jsonl
//       Every encoding of msgpack-test-suite (233 of 85 values) as a srlm stream: one record
//       {kind:"case", name:"<file>#<value>/<encoding>", value:<the suite's bytes, spliced in>}
//       per encoding, and OUT.jsonl with the JSON each record must decode to under to-json's
//       encoding (docs/stream-tools.md): float encodings of a number are reals, bin is
//       {"bin_base64"}, ext and timestamps {"ext_type","ext_base64"}, ints above 2^63-1 {"uint64"}.
//   node msgpack-fixtures.mjs encode OUT.mp
//       A stream written by @msgpack/msgpack (floats, unicode, bin, tensors as bin, big ints).
//   node msgpack-fixtures.mjs check-encoded < to-json-output
//       Checks that to-json printed the `encode` stream's values.
//   node msgpack-fixtures.mjs decode-check FILE.mp FILE.jsonl
//       Decodes FILE.mp with @msgpack/msgpack and checks every record equals the JSON line,
//       reading tensors' bin data back into numbers (f32 compared after Math.fround).
//   node msgpack-fixtures.mjs random SEED N
//       N pseudo-random bytes on stdout from a fixed xorshift generator (hostile-input tests).
//   node msgpack-fixtures.mjs mutate SEED FILE
//       FILE with a few bytes changed at pseudo-random places, on stdout.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { encode, decodeMulti, ExtData } from '@msgpack/msgpack';

const require = createRequire(import.meta.url);

const hexBytes = (h) => (h === '' ? [] : h.split('-').map((x) => parseInt(x, 16)));
const b64 = (bytes) => Buffer.from(bytes).toString('base64');

// The JSON text to-json prints for a real: the shortest round-trip digits, ".0" if integral.
function realText(x) {
    let s = String(x);
    if (Object.is(x, -0)) s = '-0';
    return /[.e]/.test(s) ? s : s + '.0';
}

// Expected to-json JSON text for one suite case.
function expectedText(c, hex) {
    const bytes = hexBytes(hex);
    const lead = bytes[0];
    if ('nil' in c) return 'null';
    if ('bool' in c) return String(c.bool);
    if ('binary' in c) return JSON.stringify({ bin_base64: b64(hexBytes(c.binary)) });
    if ('string' in c) return JSON.stringify(c.string);
    if ('number' in c || 'bignum' in c) {
        if (lead === 0xca || lead === 0xcb) return realText(Number(c.bignum ?? c.number));
        const big = BigInt(c.bignum ?? c.number);
        return big > 2n ** 63n - 1n ? JSON.stringify({ uint64: big.toString() }) : big.toString();
    }
    if ('array' in c) return JSON.stringify(c.array);
    if ('map' in c) return JSON.stringify(c.map);
    if ('timestamp' in c || 'ext' in c) {
        // fixext d4..d8: type then data; ext8/16/32: length, type, data.
        const lenBytes = { 0xc7: 1, 0xc8: 2, 0xc9: 4 }[lead] ?? 0;
        const type = (bytes[1 + lenBytes] << 24) >> 24;
        return JSON.stringify({ ext_type: type, ext_base64: b64(bytes.slice(2 + lenBytes)) });
    }
    throw new Error('unknown suite case ' + JSON.stringify(c));
}

const header = (producer) => ({ kind: 'header', schema: 'srlm.test', schema_version: 1,
                                producer: { name: producer, version: '1' } });

function suite(outMp, outJsonl) {
    const s = require('msgpack-test-suite/dist/msgpack-test-suite.json');
    const parts = [encode(header('msgpack-fixtures.mjs'))];
    const lines = [JSON.stringify(header('msgpack-fixtures.mjs'))];
    let n = 0;
    for (const file of Object.keys(s)) {
        s[file].forEach((c, i) => c.msgpack.forEach((hex, j) => {
            const name = `${file}#${i}/${j}`;
            parts.push(Uint8Array.of(0x83), encode('kind'), encode('case'), encode('name'), encode(name),
                       encode('value'), Uint8Array.from(hexBytes(hex)));
            lines.push(`{"kind":"case","name":${JSON.stringify(name)},"value":${expectedText(c, hex)}}`);
            n++;
        }));
    }
    parts.push(encode({ kind: 'end', records: n }));
    lines.push(JSON.stringify({ kind: 'end', records: n }));
    fs.writeFileSync(outMp, Buffer.concat(parts.map((p) => Buffer.from(p))));
    fs.writeFileSync(outJsonl, lines.join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------
// an independent encoder, and checks of to-json's reading of it

const f32 = [0.1, -1.5, 3.4028234663852886e38, 1e-45, 0, 2.5];
const f32bytes = new Uint8Array(Float32Array.from(f32).buffer);
const i32 = [-2147483648, -1, 0, 7, 2147483647, 151643];
const i32bytes = new Uint8Array(Int32Array.from(i32).buffer);
const encodedRecords = [
    header('@msgpack/msgpack'),
    { kind: 'example', id: 'ünï-💡', tokens: [1, 2, 300, 70000], x: 0.1, y: -2.5e-300, z: 1e300,
      nested: { a: [[], {}, [null, true, false]], 'key with space': '' } },
    { kind: 'example', logprobs: { dtype: 'f32', shape: [2, 3], data: f32bytes },
      ids: { dtype: 'i32', shape: [6], data: i32bytes }, raw: Uint8Array.of(0, 1, 255),
      big: 2n ** 64n - 1n, neg: -(2n ** 63n), text: 'line\nbreak\t"quoted"\\ \u0001' },
    { kind: 'end', records: 2 },
];

function encodeStream(out) {
    const parts = encodedRecords.map((r) => encode(r, { useBigInt64: true }));
    fs.writeFileSync(out, Buffer.concat(parts.map((p) => Buffer.from(p))));
}

function fail(msg) {
    console.error('msgpack-fixtures: ' + msg);
    process.exit(1);
}

// Compares a JSON value parsed from to-json (numbers as text for exactness) with what was encoded.
function sameAsEncoded(got, want, path) {
    if (want instanceof Uint8Array) {
        if (got?.bin_base64 !== b64(want)) fail(`${path}: bin ${JSON.stringify(got)}`);
        return;
    }
    if (typeof want === 'bigint') {
        const ok = want > 2n ** 63n - 1n ? got?.uint64 === want.toString() : BigInt(got) === want;
        if (!ok) fail(`${path}: ${JSON.stringify(got)} != ${want}`);
        return;
    }
    if (want && typeof want === 'object' && want.dtype) {
        const view = want.dtype === 'f32' ? new Float32Array(want.data.buffer) : new Int32Array(want.data.buffer);
        if (got.dtype !== want.dtype || JSON.stringify(got.shape) !== JSON.stringify(want.shape)) fail(`${path}: tensor header`);
        view.forEach((v, k) => {
            const x = want.dtype === 'f32' ? Math.fround(got.data[k]) : got.data[k];
            if (x !== v) fail(`${path}.data[${k}]: ${got.data[k]} != ${v}`);
        });
        return;
    }
    if (Array.isArray(want) || (want && typeof want === 'object')) {
        const keys = Object.keys(want);
        if (JSON.stringify(Object.keys(got)) !== JSON.stringify(keys)) fail(`${path}: keys ${Object.keys(got)} != ${keys}`);
        keys.forEach((k) => sameAsEncoded(got[k], want[k], `${path}.${k}`));
        return;
    }
    if (!Object.is(got, want)) fail(`${path}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
}

function checkEncoded() {
    const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l !== '');
    if (lines.length !== encodedRecords.length) fail(`${lines.length} lines, want ${encodedRecords.length}`);
    lines.forEach((l, i) => {
        // JSON.parse would round big integers: read them as BigInt first.
        const v = JSON.parse(l.replace(/"neg":(-?\d+)/, '"neg":"$1"'));
        if ('neg' in v) v.neg = BigInt(v.neg);
        sameAsEncoded(v, encodedRecords[i], `record ${i + 1}`);
    });
    console.log(`check-encoded: ${lines.length} records ok`);
}

// ---------------------------------------------------------------------------------------------
// an independent decoder of from-json's output

function fromTensor(t) {
    const bytes = t.data;
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const a = t.dtype === 'f32' ? new Float32Array(buf) : t.dtype === 'i32' ? new Int32Array(buf) : new Uint8Array(buf);
    return Array.from(a);
}

function sameAsJson(got, want, path) {
    if (want && typeof want === 'object' && !Array.isArray(want)) {
        if ('uint64' in want && Object.keys(want).length === 1) {
            if (typeof got !== 'bigint' || got.toString() !== want.uint64) fail(`${path}: ${got} != ${want.uint64}`);
            return;
        }
        if ('ext_type' in want && 'ext_base64' in want && Object.keys(want).length === 2) {
            if (!(got instanceof ExtData) || got.type !== want.ext_type || b64(got.data) !== want.ext_base64) fail(`${path}: ext`);
            return;
        }
        if ('bin_base64' in want && Object.keys(want).length === 1) {
            if (!(got instanceof Uint8Array) || b64(got) !== want.bin_base64) fail(`${path}: bin`);
            return;
        }
        if (Array.isArray(want.data) && want.dtype && want.shape && Object.keys(want).length === 3) {
            if (!(got.data instanceof Uint8Array)) fail(`${path}: tensor data is not bin`);
            const vals = fromTensor(got);
            const nf = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
            want.data.forEach((w, k) => {
                const x = typeof w === 'string' ? nf[w] : want.dtype === 'f32' ? Math.fround(w) : w;
                if (!Object.is(vals[k], x)) fail(`${path}.data[${k}]: ${vals[k]} != ${x}`);
            });
            return;
        }
    }
    if (want && typeof want === 'object') {
        const keys = Object.keys(want);
        if (JSON.stringify(Object.keys(got ?? {})) !== JSON.stringify(keys)) fail(`${path}: keys differ`);
        keys.forEach((k) => sameAsJson(got[k], want[k], `${path}.${k}`));
        return;
    }
    // 64-bit encodings decode as bigint; JSON.parse rounds beyond 2^53 alike on both sides.
    if (typeof got === 'bigint') got = Number(got);
    if (got !== want) fail(`${path}: ${got} != ${want}`);
}

function decodeCheck(mp, jsonl) {
    const recs = [...decodeMulti(fs.readFileSync(mp), { useBigInt64: true })];
    const lines = fs.readFileSync(jsonl, 'utf8').split('\n').filter((l) => l.trim() !== '');
    if (recs.length !== lines.length) fail(`${recs.length} records, ${lines.length} lines`);
    lines.forEach((l, i) => sameAsJson(recs[i], JSON.parse(l), `record ${i + 1}`));
    console.log(`decode-check: ${recs.length} records ok`);
}

// ---------------------------------------------------------------------------------------------
// deterministic hostile bytes

function xorshift(seed) {
    let x = BigInt(seed) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn || 1n;
    return () => {
        x ^= (x << 13n) & 0xffffffffffffffffn;
        x ^= x >> 7n;
        x ^= (x << 17n) & 0xffffffffffffffffn;
        return Number(x & 0xffn);
    };
}

function random(seed, n) {
    const next = xorshift(seed);
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = next();
    process.stdout.write(out);
}

function mutate(seed, file) {
    const next = xorshift(seed);
    const b = Buffer.from(fs.readFileSync(file));
    const k = 1 + (next() % 4);
    for (let i = 0; i < k; i++) {
        const pos = ((next() << 16) | (next() << 8) | next()) % b.length;
        b[pos] = next();
    }
    process.stdout.write(b);
}

const [cmd, a, b] = process.argv.slice(2);
switch (cmd) {
case 'suite': suite(a, b); break;
case 'encode': encodeStream(a); break;
case 'check-encoded': checkEncoded(); break;
case 'decode-check': decodeCheck(a, b); break;
case 'random': random(a, Number(b)); break;
case 'mutate': mutate(a, b); break;
default: fail('usage: msgpack-fixtures.mjs suite|encode|check-encoded|decode-check|random|mutate ...');
}
