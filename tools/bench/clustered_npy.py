#!/usr/bin/env python3
"""Writes seeded clustered Gaussian vectors as .npy files: a base set and queries drawn from the
same mixture, for `imgsim bench ann --base ... --queries ...` and peer_npy.py side by side.

  python3 tools/bench/clustered_npy.py --n 200000 --dim 128 --centres 1000 --queries 1000 --out /tmp/c200k
writes /tmp/c200k/base.npy (n x dim float32) and /tmp/c200k/queries.npy. Centres are uniform in
[-1, 1]^dim, points are centre + N(0, sigma^2) in every dimension (sigma 0.25 by default).
"""
import argparse
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--centres", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    centres = rng.uniform(-1.0, 1.0, (a.centres, a.dim)).astype(np.float32)
    os.makedirs(a.out, exist_ok=True)
    for name, count in (("base", a.n), ("queries", a.queries)):
        out = np.empty((count, a.dim), np.float32)
        for s in range(0, count, 65536):
            e = min(count, s + 65536)
            which = rng.integers(0, a.centres, e - s)
            out[s:e] = centres[which] + rng.normal(0.0, a.sigma, (e - s, a.dim)).astype(np.float32)
        np.save(os.path.join(a.out, f"{name}.npy"), out)
        print(f"{a.out}/{name}.npy: {count} x {a.dim}")


if __name__ == "__main__":
    main()
