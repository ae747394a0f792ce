#!/usr/bin/python3
"""Reads a srlm stream with python3-msgpack (independent of srlm's decoder) and prints each
record as a JSON line (bin payloads as lists of bytes). Checks the framing: header first, end
record last with the right count; exits 1 otherwise."""
import json, sys, msgpack

def main():
    up = msgpack.Unpacker(sys.stdin.buffer, raw=False, strict_map_key=False)
    recs = list(up)
    if not recs or recs[0].get('kind') != 'header':
        sys.exit('readstream: no header')
    if recs[-1].get('kind') != 'end' or recs[-1].get('records') != len(recs) - 2:
        sys.exit('readstream: bad end record')
    def enc(o):
        if isinstance(o, bytes):
            return list(o)
        raise TypeError(type(o))
    for r in recs:
        print(json.dumps(r, default=enc, ensure_ascii=False))

if __name__ == '__main__':
    main()
