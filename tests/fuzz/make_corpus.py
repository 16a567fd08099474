#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from the test
suites and shipped files, so the seeds are reproducible and small.  Run it
from anywhere; it rewrites the seed-*.* files only: regression inputs
(crash-*, named for what they found) are kept.

    python3 tests/fuzz/make_corpus.py [path/to/JSON-Schema-Test-Suite]
"""
import glob
import hashlib
import json
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
OUT = os.path.join(ROOT, 'tests', 'fuzz', 'corpus')
JSTS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, '..', 'shared', 'jsts')
SEP = b'\n----\n'  # FUZZ_SEP in fuzz_util.h
MAX_SEED = 4096     # bytes: small seeds mutate faster


def write(target, seeds):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for f in glob.glob(os.path.join(d, 'seed-*')):
        os.remove(f)
    n = 0
    for s in seeds:
        if isinstance(s, str):
            s = s.encode()
        if len(s) > MAX_SEED:
            continue
        h = hashlib.sha1(s).hexdigest()[:12]
        with open(os.path.join(d, 'seed-' + h), 'wb') as f:
            f.write(s)
        n += 1
    print(f'{target}: {n} seeds')


def c_strings(path, func):
    """The string-literal arguments of func("name", "..." "...") calls."""
    text = open(path, encoding='utf-8').read()
    out = []
    pat = re.compile(func + r'\(\s*"[^"]*",\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)')
    for m in pat.finditer(text):
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
        raw = ''.join(parts)
        out.append(raw.encode('utf-8').decode('unicode_escape').encode('latin-1'))
    return out


def jsts_groups(limit_files=None):
    # the suite's own layout (tests/draft2020-12) or the copy in ../shared/jsts
    files = sorted(glob.glob(os.path.join(JSTS, 'tests', 'draft2020-12', '*.json')) or
                   glob.glob(os.path.join(JSTS, 'draft2020-12', '*.json')))
    for path in files[:limit_files]:
        try:
            groups = json.load(open(path, encoding='utf-8'))
        except (OSError, ValueError):
            continue
        for g in groups[:2]:  # a modest number: the first two groups per file
            yield g


def compact(v):
    return json.dumps(v, separators=(',', ':'), ensure_ascii=False)


def main():
    manifests = sorted(glob.glob(os.path.join(ROOT, 'conf.d', '*.yaml')))
    test_manifests = c_strings(os.path.join(ROOT, 'tests', 'unit', 'config', 'test_config.c'),
                               'manifest')
    conf = [open(p, 'rb').read() for p in manifests] + test_manifests
    write('config', conf[:80])
    write('foreign', [m for m in test_manifests if b'foreign:' in m] + [
        b'foreign:\n  - name: f\n    library: libc.so.6\n    symbol: abs\n    returns: int32\n'
        b'    params:\n      - { type: int32, from: /data/n }\n'
        b'      - { type: string, from: "/data/o/k~1~0/deep" }\n'
        b'      - { type: json, value: { a: [1, "x"] } }\n      - { type: event }\n'
        b'      - { type: double, from: /data/r }\n      - { type: bool, value: yes }\n'
        b'    result: { zero: ok, positive: retry, negative: reject }\n'
        b'    subscriptions:\n      - { pattern: "order.**", priority: 5 }\n',
        b'foreign:\n  - name: g\n    library: libc.so.6\n    symbol: abs\n    returns: bool\n'
        b'    params: [{ type: int64, from: /data/big }, { type: string, from: /data/s }]\n'
        b'    subscriptions: [{ pattern: "*.created" }]\n',
    ])

    schemas = sorted(glob.glob(os.path.join(ROOT, 'schemas', '*', '[0-9]*.json')))
    schemas += sorted(glob.glob(os.path.join(ROOT, 'host', 'admin', 'schemas', '*.json')))
    shipped = [open(p, 'rb').read() for p in schemas]
    groups = list(jsts_groups())
    js = [b'0' + s for s in shipped]
    js += [(b'1' if i % 2 else b'2') + compact(g['schema']).encode() for i, g in enumerate(groups)]
    write('jsonschema', js)

    pairs = []
    for g in groups:
        for t in g.get('tests', [])[:2]:
            pairs.append(compact(g['schema']).encode() + SEP + compact(t['data']).encode())
    for p in schemas[:10]:
        d = os.path.dirname(p)
        for ex in sorted(glob.glob(os.path.join(d, 'examples', '*.json')))[:2]:
            inst = json.load(open(ex, encoding='utf-8'))
            data = inst.get('data', inst) if isinstance(inst, dict) else inst
            pairs.append(open(p, 'rb').read() + SEP + compact(data).encode())
    write('validate', pairs)

    events = sorted(glob.glob(os.path.join(ROOT, 'schemas', 'cloudevents', 'examples', '*.json')))
    event_texts = [open(p, 'rb').read() for p in events]
    edge_json = [
        b'{}', b'[]', b'[1,2.5,-0,1e5,"\\u0000",true,false,null]', b'{"a":1,"a":2}',
        b'{"k\\u0000":1}', b'"\\ud83d\\ude00"', b'"\\ud800"', b'9223372036854775808',
        b'-9223372036854775808', b'1e400', b'[1\x00]', b'{"a":[{"b":{"c":[[[]]]}}]}',
        b'\xef\xbb\xbf{}', b'{"a":"\xc3\xa9\xf0\x9f\x98\x80"}', b'{"a":"\xc0\xaf"}', b'  [ ]  ',
        b'0', b'-', b'[1.]', b'[.5]', b'[01]', b'{"a" : 1 , "b":[ ]}', b'nul', b'[' * 40 + b']' * 40,
    ]
    write('fastjson', event_texts[:10] + edge_json +
          [compact(t['data']).encode() for g in groups[:60] for t in g.get('tests', [])[:1]])
    ev_valid = [e for p, e in zip(events, event_texts) if 'valid' in os.path.basename(p)]
    retry = [b'{"h":"audit/write","a":2,"ff":1700000000000,"sid":"1700000000000-0"}',
             b'{"h":"x/y","a":1,"rj":"job-1"}', b'{"a":"x"}', b'[]']
    write('event', event_texts + [ev_valid[i % len(ev_valid)] + SEP + r for i, r in enumerate(retry)]
          + [b'{"specversion":"1.0","id":"a","source":"/s","type":"a.b","time":'
             b'"2026-12-01T10:00:00.123+01:00","tenantid":"t","id":"b"}'])
    text = [e for e in event_texts]
    text += [b'{"type":"a.b","tenantid":"t"}', b' {"type":"a.b","tenantid":"t","data":{"x":[1,2]}} ',
             b'{"type":"a.b","tenantid":"t","partitionkey":"k"}',
             b'{"type":"a.b","tenantid":"t\\u0041"}', b'{"type":"a.b","tenantid":"t","data":{"a":1,"a":2}}',
             b'{"type":"a.b","tenantid":"t","time":"2026-02-30T10:00:00Z"}',
             b'{"type":"A.b","tenantid":"t"}', b'{"type":"a.b","tenantid":""}',
             b'{"type":"a.b","tenantid":"t","id":"\\u0000"}']
    write('text', text)

    router_src = open(os.path.join(ROOT, 'tests', 'unit', 'router', 'test_router.c'), encoding='utf-8').read()
    words = sorted(set(re.findall(r'"([a-z0-9.*_-]*)"', router_src)))
    pats = [w for w in words if '*' in w] or ['a.*']
    types = [w for w in words if '*' not in w] or ['a.b']
    write('router', ['\n'.join(pats[i:i + 3] + [types[i % len(types)]]) for i in range(0, len(pats), 2)]
          + [t for t in types[:10]] + ['**\napproval', 'a.**.b.**.c\n*.**\na.x.b.y.c', 'a..b\nA.b\na'])

    write('redis_url', [
        'redis://localhost', 'redis://127.0.0.1:6379/0', 'redis://:secret@host:6380/2',
        'redis://user:p%40ss@host/1', 'redis://[::1]:7000', 'redis://[::1]', 'redis://h:0',
        'redis://h:65536', 'redis://h:/', 'redis://@h', 'redis://a@b@c:1/3',
        'unix:///run/redis.sock', 'unix:///run/redis.sock?db=3', 'unix://rel', 'unix:///x?db=',
        'rediss://h', 'redis://', 'redis://[::1', 'redis://h/x', 'redis://%zz:%4@h',
    ])

    route_paths = []
    for f in sorted(glob.glob(os.path.join(ROOT, 'host', 'admin', 'routes_*.c'))):
        route_paths += re.findall(r'"(/api/v1/[^"]*)"', open(f, encoding='utf-8').read())
    paths = [p.replace('{id}', '1700000000000-0').replace('{name}', 'audit')
             .replace('{', '').replace('}', '') for p in route_paths]
    admin = [b'\x00' + p.encode() for p in paths[:40]]
    admin += [b'\x00/api/v1/dlq/%2e%2e', b'\x00/api/v1/config%00x', b'\x00/api/v1/handlers/a%2Fb/pause',
              b'\x01eyJhIjoxfQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', b'\x01', b'\x01abc',
              b'\x02100', b'\x02-5', b'\x022026-12-07T10:00:00Z', b'\x02 12', b'\x020x10',
              b'\x0399999999999999999999', b'\x03{"a":[1,{"b":"[{"}]}', b'\x03"\\"[[["',
              b'\x04application/json; charset=utf-8', b'\x04APPLICATION/JSON  ;x', b'\x04text/plain']
    admin += [b'\x03' + open(p, 'rb').read()
              for p in sorted(glob.glob(os.path.join(ROOT, 'host', 'admin', 'schemas', '*.json')))]
    write('admin', admin)


main()
