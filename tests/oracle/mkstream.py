#!/usr/bin/python3
"""Writes srlm streams with python3-msgpack — an encoder independent of srlm's own — for tests.

usage: mkstream.py SCHEMA < records.jsonl > stream.msgpack
  Each input line is one data record (a JSON object); the header and end record are added.
  --no-end        omit the end record (a cut-off stream)
  --records N     claim N records in the end record (a wrong count)
  --gsm8k FILE    instead of stdin: one sample per GSM8K problem, text = the gold solution
                  (--alter: the final answer changed, so it must score 0)
"""
import json, sys, msgpack

def main():
    args = sys.argv[1:]
    schema = args.pop(0)
    no_end = '--no-end' in args
    claim = int(args[args.index('--records') + 1]) if '--records' in args else None
    recs = []
    if '--gsm8k' in args:
        path = args[args.index('--gsm8k') + 1]
        alter = '--alter' in args
        with open(path, encoding='utf-8') as f:
            for i, line in enumerate(f):
                ex = json.loads(line)
                text = ex['answer']
                if alter:
                    head, _, final = text.rpartition('####')
                    num = int(final.strip().replace(',', ''))
                    text = head + '#### ' + str(num + 1 if i % 2 == 0 else num * 10 + 3)
                recs.append({'kind': 'sample', 'id': str(i), 'sample': 0, 'group_size': 1,
                             'question': ex['question'], 'answer': ex['answer'], 'text': text})
    else:
        for line in sys.stdin:
            if line.strip():
                recs.append(json.loads(line))
    out = sys.stdout.buffer
    out.write(msgpack.packb({'kind': 'header', 'schema': schema, 'schema_version': 1,
                             'producer': {'name': 'mkstream.py', 'version': '1'}}))
    for r in recs:
        r.setdefault('kind', 'sample' if schema == 'srlm.samples' else 'example')
        out.write(msgpack.packb(r, use_bin_type=True))
    if not no_end:
        out.write(msgpack.packb({'kind': 'end', 'records': len(recs) if claim is None else claim}))

if __name__ == '__main__':
    main()
