#!/usr/bin/env python3
"""Writes Fashion-MNIST (ann-benchmarks' fashion-mnist-784-euclidean: the 60,000 training images as
the base, the test images as queries, raw pixels as float32) as .npy files, so that
`imgsim bench ann --base` and peer_npy.py read exactly the same vectors.

  python3 tools/bench/fashion_npy.py --out /tmp/fmnist [--queries 10000]
"""
import argparse
import gzip
import os

import numpy as np

SRC = "/usr/share/datasets/fashion-mnist"


def images(name):
    with gzip.open(os.path.join(SRC, name)) as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 784).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--queries", type=int, default=10000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "base.npy"), images("train-images-idx3-ubyte.gz"))
    np.save(os.path.join(a.out, "queries.npy"), images("t10k-images-idx3-ubyte.gz")[: a.queries])
    print(f"{a.out}/base.npy, {a.out}/queries.npy")


if __name__ == "__main__":
    main()
