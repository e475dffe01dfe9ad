#!/usr/bin/env python3
"""Build a differential-testing corpus for tandem-injection vs libinjection.

    gen/difftest.py corpus CRS_TESTS_DIR N_RANDOM SEED > inputs.hex

Writes hex-encoded inputs, one per line:
  * every string value in the CRS regression corpus (URIs, bodies, headers), raw,
    percent-decoded, and split into decoded parameter values;
  * N_RANDOM generated inputs: random concatenations of SQL/HTML fragments, random
    mutations of the CRS strings, and random bytes.

`gen/difftest.sh` feeds the same file to the C library and to the Rust port and diffs.
"""
import os
import random
import sys
import urllib.parse

import yaml

FRAGMENTS = [
    "'", '"', '`', ' ', '  ', '\t', '\n', '\x00', '\xa0', '(', ')', ',', ';', '.', '-', '--', '#', '/*', '*/',
    '/*!', '\\', '\\N', '@', '@@', '$', '$$', '$a$', '{', '}', '[', ']', ':', '::', '=', '<', '>', '<=>',
    '!', '!=', '||', '&&', '&', '|', '^', '~', '+', '*', '%', '?', '1', '0', '0x1f', '0b1', '1.e', '1e5',
    '1.2f', '.5', "x'41'", "b'01'", "N'a'", "E'a'", "q'[a]'", "nq'(a)'", "U&'a'", 'select', 'SELECT',
    'union', 'UNION ALL', 'or', 'OR', 'and', 'AND', 'not', 'NOT IN', 'in', 'like', 'NOT LIKE', 'from',
    'where', 'sleep', 'benchmark', 'user', 'USER', 'database', 'version', 'char', 'concat', 'if', 'IF',
    'into', 'INTO OUTFILE', 'waitfor', 'delay', 'exec', 'xp_cmdshell', 'sp_password', 'collate',
    'utf8_bin', 'int', 'varchar', 'cast', 'as', 'null', 'NULL', 'true', 'drop', 'table', 'foo', 'bar',
    'admin', 'a', 'abc', 'x.y', 'select.1', 'select`a`', '`foo`', '``',
    '<', '>', '</', '/>', '<!--', '-->', '--!>', '<!DOCTYPE', '<![CDATA[', ']]>', '<?', '<%', '%>',
    'script', 'img', 'svg', 'iframe', 'a', 'div', 'xss', 'style', 'src', 'href', 'onerror', 'onload',
    'onmouseover', 'onx', 'style=', 'xmlns', 'xlink:href', 'attributename', 'formaction', '=',
    'javascript:', 'JaVaScRiPt:', 'vbscript:', 'data:', 'view-source:', '&#106;', '&#x6A;', '&#x6a',
    '&#0000106', '&amp;', '&colon;', 'alert(1)', '[if', 'xml', 'import', 'ENTITY', '\xff', '\x80',
    '\r', '\x0b', '\x0c', '\x01',
]


def strings_in(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


def decoded_variants(s):
    raw = s.encode('utf-8', 'surrogateescape')
    yield raw
    dec = urllib.parse.unquote_to_bytes(s.replace('+', ' '))
    yield dec
    for sep in ('&', ';'):
        for part in s.split(sep):
            if '=' in part:
                k, _, v = part.partition('=')
                yield urllib.parse.unquote_to_bytes(v.replace('+', ' '))
                yield urllib.parse.unquote_to_bytes(k.replace('+', ' '))
    if '?' in s:
        q = s.split('?', 1)[1]
        for part in q.split('&'):
            k, _, v = part.partition('=')
            yield urllib.parse.unquote_to_bytes(v.replace('+', ' '))


def crs_strings(root):
    seen = set()
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith('.yaml'):
                continue
            with open(os.path.join(dirpath, f), encoding='utf-8', errors='surrogateescape') as fh:
                try:
                    doc = yaml.safe_load(fh)
                except yaml.YAMLError:
                    continue
            for s in strings_in(doc):
                for v in decoded_variants(s):
                    if v and v not in seen and len(v) < 20000:
                        seen.add(v)
                        yield v


def main():
    root, n, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    base = list(crs_strings(root))
    out = sys.stdout
    for b in base:
        out.write(b.hex() + '\n')
    frags = [f.encode('latin-1') for f in FRAGMENTS]
    for i in range(n):
        kind = i % 4
        if kind in (0, 1):
            k = rng.randint(1, 12)
            b = b''.join(rng.choice(frags) for _ in range(k))
        elif kind == 2 and base:
            b = bytearray(rng.choice(base)[:400])
            for _ in range(rng.randint(1, 4)):
                op = rng.randint(0, 2)
                p = rng.randint(0, len(b)) if b else 0
                if op == 0:
                    b[p:p] = rng.choice(frags)
                elif op == 1 and b:
                    del b[p:p + rng.randint(1, 4)]
                else:
                    b[p:p] = bytes([rng.randint(0, 255)])
            b = bytes(b)
        else:
            b = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 40)))
        if b:
            out.write(b.hex() + '\n')


if __name__ == '__main__':
    main()
