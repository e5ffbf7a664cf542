#!/usr/bin/env python3
"""Resident memory of a fresh process that opens a collection and searches it:
what serving a (quantized) collection keeps in memory, apart from whatever
built it. Needs the imgsim Python package (bash tools/python/test.sh builds it).

  python tools/bench/search_rss.py COLLECTION [--queries 1000] [--ef 128] [--k 10] [--cache-bytes N]

Queries are stored vectors plus small seeded noise. Prints VmRSS, RssAnon
(heap: codes, graph, ids) and RssFile (memory-mapped vectors read by
rescoring, and the program's code) after opening and after the queries,
and search_anon_bytes: the anonymous memory opening and searching added to
the process (RssAnon after the queries less RssAnon before opening).
"""
import argparse
import json

import numpy as np

import imgsim


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("collection")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--cache-bytes", type=int, default=None,
                    help="sled's cache ([storage] cache_bytes; default 64 MiB)")
    a = ap.parse_args()
    before = status()
    c = imgsim.Collection.open(a.collection, cache_bytes=a.cache_bytes)
    opened = status()
    ids = c.ids()
    rng = np.random.default_rng(7)
    pick = rng.choice(len(ids), size=a.queries, replace=False)
    q = np.stack([c.vector(int(ids[i])) for i in pick]).astype(np.float32)
    q += rng.normal(0, 0.01, q.shape).astype(np.float32)
    want = ids[pick]
    # The id list (8 bytes an item) is this script's, not the search's.
    del ids
    found, _ = c.search(q, a.k, ef=a.ef)
    searched = status()
    stats = c.stats()
    print(json.dumps({
        "collection": a.collection,
        "quantization": stats["params"]["quantization"] if "params" in stats else None,
        "index_memory_bytes": stats.get("memory_bytes"),
        "cache_bytes": a.cache_bytes,
        "before_open": before,
        "after_open": opened,
        "after_queries": searched,
        # What opening and searching added to the process (the interpreter
        # and numpy were resident before).
        "search_anon_bytes": searched["RssAnon"] - before["RssAnon"],
        "self_found": float(np.mean(found[:, 0] == want)),
    }, indent=1))


if __name__ == "__main__":
    main()
