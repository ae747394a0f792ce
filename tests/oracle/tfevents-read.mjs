// tfevents-read.mjs — the independent reader of srlm's TensorBoard event files
// (common/tfevents.c): the record framing and masked CRC-32C of @roboflow/tfrecords' helpers
// (tensorFlowHelpers: crc32c, maskCrc, readInt64), and the Event / Summary protobufs decoded by
// protobufjs from the schema below, which keeps the field numbers of tensorflow/tensorboard's
// tensorboard/compat/proto/event.proto and summary.proto (only the fields srlm writes, plus the
// oneof members beside them so that a wrong field number would not decode as ours).
//
//   node tfevents-read.mjs FILE
//
// Prints one JSON line per record: the first {"record":0,"wall_time":W,"step":S,
// "file_version":"brain.Event:2"}, then for every value of every Summary
// {"record":R,"wall_time":W,"step":"S","tag":T,"value":V}. step is a decimal string (int64);
// a value that JSON cannot hold (NaN, Infinity, -Infinity) is the string JavaScript prints, and
// -0 is the string "-0". Exit 1 with a message on stderr at the first bad record: a length or data
// CRC that does not match, a truncated record, an Event that does not decode, a file that does not
// start with file_version "brain.Event:", or a Summary value that is not a simple_value.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import protobuf from "protobufjs";

const require = createRequire(import.meta.url);
const { crc32c, maskCrc, readInt64 } = require("@roboflow/tfrecords/src/tensorFlowHelpers.js");

const schema = `
syntax = "proto3";
package tensorboard;
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    bytes graph_def = 4;
    Summary summary = 5;
    bytes meta_graph_def = 9;
  }
}
message Summary {
  message Value {
    string node_name = 7;
    string tag = 1;
    oneof value {
      float simple_value = 2;
      bytes obsolete_old_style_histogram = 3;
      bytes tensor = 8;
    }
  }
  repeated Value value = 1;
}
`;
const Event = protobuf.parse(schema, { keepCase: true }).root.lookupType("tensorboard.Event");

function fail(msg) {
  process.stderr.write(`tfevents-read: ${msg}\n`);
  process.exit(1);
}

function num(v) {
  if (Object.is(v, -0)) return "-0";
  return Number.isFinite(v) ? v : String(v);
}

const file = process.argv[2];
if (!file) fail("usage: node tfevents-read.mjs FILE");
const buf = readFileSync(file);
let pos = 0;
for (let r = 0; pos < buf.length; r++) {
  if (pos + 12 > buf.length) fail(`record ${r} at byte ${pos}: truncated header`);
  const lenBytes = buf.subarray(pos, pos + 8);
  const len = readInt64(Buffer.from(lenBytes));
  if (maskCrc(crc32c(lenBytes)) !== buf.readUInt32LE(pos + 8)) fail(`record ${r} at byte ${pos}: length CRC mismatch`);
  if (pos + 16 + len > buf.length) fail(`record ${r} at byte ${pos}: truncated data (${len} bytes)`);
  const data = buf.subarray(pos + 12, pos + 12 + len);
  if (maskCrc(crc32c(data)) !== buf.readUInt32LE(pos + 12 + len)) fail(`record ${r} at byte ${pos}: data CRC mismatch`);
  pos += 16 + len;

  let ev;
  try {
    ev = Event.toObject(Event.decode(data), { longs: String, defaults: true, oneofs: true });
  } catch (e) {
    fail(`record ${r}: Event does not decode: ${e.message}`);
  }
  const head = { record: r, wall_time: num(ev.wall_time), step: ev.step };
  if (r === 0) {
    if (ev.what !== "file_version" || !ev.file_version.startsWith("brain.Event:"))
      fail(`record 0 is not a file_version Event: ${JSON.stringify(ev)}`);
    console.log(JSON.stringify({ ...head, file_version: ev.file_version }));
    continue;
  }
  if (ev.what !== "summary") fail(`record ${r}: not a Summary Event (${ev.what})`);
  for (const v of ev.summary.value) {
    if (v.value !== "simple_value") fail(`record ${r}: tag ${v.tag} holds ${v.value}, not simple_value`);
    console.log(JSON.stringify({ ...head, tag: v.tag, value: num(v.simple_value) }));
  }
}
