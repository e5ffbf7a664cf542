"""Batch search throughput from Python next to the Rust figure, on the same
collection and ef.

`imgsim bench ann` builds a collection from base vectors, reopens it and
measures queries per second with every thread (`qps_all_threads`: the
queries spread over the rayon pool, one `Collection::search` each, fastest
of --runs passes). This script gives it seeded vectors as .npy files, then
opens the collection it left behind with the Python package and times
`Collection.search(queries, k, ef)` — the same queries in one call — the
same way (fastest of --runs), and checks both found the same neighbours
(equal recall@10). There is no Rust command that times an existing
collection, so the two run one after the other; --rounds repeats the pair
(each bench ann rebuilds the collection) and the median ratio is reported,
as a shared machine's speed drifts between runs.

    python python/bench/search_qps.py --imgsim target/release/imgsim \
        --n 100000 --dim 128 --queries 10000 --ef 64 --runs 5 --rounds 3 --out /tmp/qps

Build both optimised first: `cargo build --release --bin imgsim` and
`maturin develop --release` (or IMGSIM_PY_RELEASE=1 bash tools/python/test.sh).
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

import imgsim


def clustered(rng, n, dim, centres):
    """Gaussian clusters around `centres` (what image embeddings look like
    more than uniform noise does)."""
    pick = rng.integers(0, len(centres), size=n)
    return (centres[pick] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--imgsim", default="target/release/imgsim", help="the imgsim binary")
    p.add_argument("--n", type=int, default=100_000, help="base vectors")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--k", type=int, default=10, help="neighbours (imgsim bench ann uses 10)")
    p.add_argument("--runs", type=int, default=5, help="timed passes a side; the fastest is kept")
    p.add_argument("--rounds", type=int, default=3,
                   help="Rust-then-Python pairs (the machine's speed drifts; the median ratio is reported)")
    p.add_argument("--metric", default="l2", choices=["l2", "cosine"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default="bench-results/python-qps", help="work folder")
    args = p.parse_args()

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    centres = 2.0 * rng.standard_normal((64, args.dim))
    base_file, query_file = out / "base.npy", out / "queries.npy"
    np.save(base_file, clustered(rng, args.n, args.dim, centres))
    queries = clustered(rng, args.queries, args.dim, centres)
    np.save(query_file, queries)

    rounds = []
    for r in range(max(1, args.rounds)):
        rounds.append(one_round(args, out, base_file, query_file, queries, r))
        last = rounds[-1]
        print(
            f"round {r + 1}: Rust {last['rust_qps_all_threads']:8.0f} QPS, "
            f"Python {last['python_batch_qps']:8.0f} QPS, ratio {last['ratio']:.3f}",
            file=sys.stderr,
        )
    ratios = sorted(x["ratio"] for x in rounds)
    median = ratios[len(ratios) // 2]
    result = {
        "n": args.n, "dim": args.dim, "metric": args.metric, "queries": len(queries),
        "k": args.k, "ef": args.ef, "runs": args.runs, "threads": rounds[0]["threads"],
        "rounds": rounds,
        "median_ratio": median,
    }
    (out / "python.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.n} x {args.dim} ({args.metric}), {len(queries)} queries, k {args.k}, "
        f"ef {args.ef}, {result['threads']} threads, best of {args.runs} passes a side"
    )
    print("round  Rust qps_all_threads  Python batch QPS  ratio  recall@10 (Rust, Python)")
    for i, x in enumerate(rounds, 1):
        print(
            f"{i:5}  {x['rust_qps_all_threads']:20.0f}  {x['python_batch_qps']:16.0f}  "
            f"{x['ratio']:5.3f}  {x['rust_recall_at_10']:.4f}, {x['python_recall_at_10']:.4f}"
        )
    print(f"median ratio Python / Rust: {median:.3f}")
    if args.k == 10 and any(
        abs(x["python_recall_at_10"] - x["rust_recall_at_10"]) > 1e-9 for x in rounds
    ):
        print("warning: the two searches found different neighbours", file=sys.stderr)
        return 1
    return 0


def one_round(args, out, base_file, query_file, queries, r):
    """`imgsim bench ann` (which rebuilds the collection and measures it),
    then the same collection from Python: one pair of figures."""
    report_file = out / f"rust-{r + 1}.json"
    cmd = [
        args.imgsim, "bench", "ann", "--quiet",
        "--base", str(base_file), "--queries", str(query_file),
        "--metric", args.metric, "--ef", str(args.ef), "--runs", str(args.runs),
        "--out", str(out), "--json", str(report_file),
    ]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads(report_file.read_text())
    row = next(x for x in report["runs"] if x["ef"] == args.ef)
    rust_qps = row["qps_all_threads"]

    (collection_dir,) = out.glob("*.collection")
    with imgsim.Collection.open(collection_dir) as c:
        assert len(c) == args.n, (len(c), args.n)
        c.search(queries[:500], k=args.k, ef=args.ef)  # warm-up, as the Rust bench
        best = float("inf")
        for _ in range(max(1, args.runs)):
            t = time.perf_counter()
            c.search(queries, k=args.k, ef=args.ef)
            best = min(best, time.perf_counter() - t)
        py_qps = len(queries) / best
        recall = float(c.recall(queries, k=args.k, ef=args.ef, ties=False).mean())
    return {
        "collection": str(collection_dir),
        "threads": report["threads"],
        "rust_qps_all_threads": rust_qps,
        "python_batch_qps": py_qps,
        "ratio": py_qps / rust_qps,
        "rust_recall_at_10": row["recall_at_10"],
        "python_recall_at_10": recall,
    }


if __name__ == "__main__":
    sys.exit(main())
