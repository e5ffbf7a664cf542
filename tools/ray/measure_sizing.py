"""Measures the per-vector figures docs/SCALE.md's sizing model starts from: bytes per item on disk and in memory, build seconds per million vectors per core, single-core QPS at recall@10 >= 0.95.

    target/ray-venv/bin/python tools/ray/measure_sizing.py --n 60000

One collection of the first N Fashion-MNIST training images (784-d, l2:
real structure, unlike random vectors, and ann-benchmarks' set) whose
items carry what ``imgsim index`` records for a photo (a 60-character path,
size, mtime_ns, blake3, format), added in one call (one HNSW graph, M 16,
ef_construction 200, built on every core: RAYON_NUM_THREADS or all), then
reopened; 1,000 test images as queries, ef swept, one thread
(RAYON_NUM_THREADS=1 in a child process), the best of 3 passes.

``--dim D`` measures the sizes and the build at another dimension instead
(an embedder's: 384 for dinov2-small, 512 for clip-b32), on seeded
clustered vectors (1,000 centres uniform in [-1, 1]^D, points N(centre,
0.1^2), cosine) and skips the sweep: random vectors have no recall to speak
of, real embeddings do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

import imgsim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_serve import FMNIST, idx_images  # noqa: E402


def clustered(n: int, dim: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(7)
    centres = rng.uniform(-1, 1, size=(1000, dim)).astype(np.float32)
    which = rng.integers(0, 1000, size=n)
    return (centres[which] + rng.normal(0, 0.1, size=(n, dim))).astype(np.float32)


def sweep(path: str) -> None:
    """Child process: recall and single-thread QPS per ef."""
    q = idx_images(FMNIST / "t10k-images-idx3-ubyte.gz", 1000)
    with imgsim.Collection.open(path) as c:
        for ef in (8, 10, 12, 16, 24, 32, 64):
            recall = float(np.mean(c.recall(q, k=10, ef=ef)))
            best = 0.0
            for _ in range(3):
                t = time.perf_counter()
                c.search(q, k=10, ef=ef)
                best = max(best, len(q) / (time.perf_counter() - t))
            print(json.dumps({"ef": ef, "recall_at_10": round(recall, 4), "qps_one_thread": round(best)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--dim", type=int, help="clustered vectors of this dimension instead (sizes and build only)")
    ap.add_argument("--sweep", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sweep:
        sweep(args.sweep)
        return
    work = Path(tempfile.mkdtemp(prefix="imgsim-sizing-"))
    try:
        if args.dim:
            base, metric = clustered(args.n, args.dim), "cosine"
        else:
            base, metric = idx_images(FMNIST / "train-images-idx3-ubyte.gz", args.n), "l2"
        dim = base.shape[1]
        paths = [f"/photos/2024/{i // 1000:04d}/IMG_{i:08d}_camera_roll_export.jpg" for i in range(args.n)]
        meta = [{"size": 3_000_000 + i, "mtime_ns": 1_700_000_000_000_000_000 + i, "blake3": f"{i:064x}",
                 "format": "jpeg"} for i in range(args.n)]
        threads = int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count() or 1))
        t = time.perf_counter()
        with imgsim.Collection.create(work / "c", dim=dim, metric="l2") as c:
            c.add(base, external_ids=paths, metadata=meta, source="file")
        build = time.perf_counter() - t
        t = time.perf_counter()
        with imgsim.Collection.open(work / "c") as c:
            reopen = time.perf_counter() - t
            st = c.stats()
        disk = sum(f.stat().st_size for f in (work / "c").rglob("*") if f.is_file())
        print(json.dumps({
            "n": len(base), "dim": dim, "threads": threads, "build_s": round(build, 2),
            "build_s_per_million_per_core": round(build / args.n * 1e6 * threads, 1),
            "reopen_s": round(reopen, 2), "disk_bytes": disk, "disk_bytes_per_item": round(disk / args.n),
            "memory_bytes_per_vector": round(st["memory_bytes_per_vector"]), "segments": st["segments"],
        }), flush=True)
        if args.dim:
            return
        env = {**os.environ, "RAYON_NUM_THREADS": "1"}
        subprocess.run([sys.executable, __file__, "--sweep", str(work / "c")], check=True, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
