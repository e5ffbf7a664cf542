"""Checks the sharded service on Ray Serve against one collection holding every vector, survives a dead replica, names a missing shard, and measures the fan-out overhead.

Runs inside tools/ray/cluster.sh (RAY_ADDRESS set, two nodes):

    bash tools/ray/cluster.sh -- python tools/ray/check_serve.py --n 20000 --queries 300 --fanout 2,4,8

Vectors: the first N Fashion-MNIST training images (784-d, l2, as
ann-benchmarks), split by id into 4 shard collections (HNSW graphs built)
and also kept whole in one collection; queries: the test images. It
deploys ``python -m imgsim.ray serve`` (4 shards x 2 replicas) and checks
over HTTP: exact=true answers equal the whole collection's exact top 10
(paths and scores); recall@10 at the default ef (computed by the service
across all shards) is at least --min-recall; a query by id leaves the item
out; batches (JSON and binary) answer as single searches; with one replica
of shard-00 killed every answer still comes from all 4 shards; with
shard-03 gone (its folder renamed, its replicas killed) answers are 503
naming it, or with partial=true name it in ``missing_shards``. With
--photo-shards (the output of check_index.py --work) it also searches by
uploaded photo and compares with ``imgsim index``'s collection. Then, for
each --fanout count of shards (1 replica each), the per-query overhead
(the ingress's took_ms minus the slowest shard's search) at p50 and p99.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log  # noqa: E402

import imgsim  # noqa: E402
from imgsim.ray.serve import ServeOptions, run_serve  # noqa: E402
from imgsim.ray.shards import global_id, shard_name  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def idx_images(path: Path, n: int) -> npt.NDArray[np.float32]:
    """The first ``n`` images of an idx3 file as float32 rows."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    count, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    n = min(n, count)
    return np.frombuffer(raw, dtype=np.uint8, offset=16, count=n * rows * cols).reshape(n, rows * cols).astype(np.float32)


def build(base: npt.NDArray[np.float32], folder: Path, shards: int) -> None:
    """``shards`` collections of ``base`` in ``folder`` (row i to shard i %
    shards, external id ``fmnist-i``), graphs built."""
    folder.mkdir(parents=True)
    for s in range(shards):
        rows = np.arange(s, len(base), shards)
        with imgsim.Collection.create(folder / shard_name(s), dim=base.shape[1], metric="l2") as c:
            c.add(base[rows], external_ids=[f"fmnist-{i}" for i in rows])
            c.seal()


def post(url: str, **kw: Any) -> requests.Response:
    return requests.post(url, timeout=60, **kw)


def wait_ready(base_url: str, name: str, shards: int, count: int) -> None:
    deadline = time.time() + 180
    last = ""
    while time.time() < deadline:
        try:
            r = requests.get(f"{base_url}/collections/{name}/stats", timeout=10)
            st = r.json()
            if r.ok and st["count"] == count and not st["missing_shards"] and len(st["shards"]) == shards:
                log(f"service ready: {count} vectors in {shards} shards "
                    f"(replica copy of a shard took {max(s['copy_seconds'] for s in st['shards']):.2f} s)")
                return
            last = json.dumps(st)[:300]
        except (requests.RequestException, ValueError, KeyError) as e:
            last = str(e)
        time.sleep(1)
    sys.exit(f"the service did not come up: {last}")


def replicas_of(deployment: str, expected: int) -> List[Dict[str, Any]]:
    """The ``info()`` of each live replica of a deployment of app
    ``imgsim`` (asked until ``expected`` distinct processes answered)."""
    from ray import serve

    handle = serve.get_deployment_handle(deployment, app_name="imgsim")
    seen: Dict[int, Dict[str, Any]] = {}
    for _ in range(200):
        info = handle.info.remote().result(timeout_s=10)
        seen[info["pid"]] = info
        if len(seen) >= expected:
            break
    return list(seen.values())


def kill(pid: int) -> None:
    """SIGKILL a replica's process (ours: this PID namespace's), and wait for it to go."""
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    sys.exit(f"process {pid} outlived SIGKILL")


def pct(xs: List[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


def check_vectors(url: str, name: str, union: imgsim.Collection, queries: npt.NDArray[np.float32],
                  min_recall: float) -> None:
    k = 10
    # exact=true: the merged top 10 is the whole collection's exact top 10.
    ids, dist = union.search(queries, k=k, exact=True)
    for q in range(len(queries)):
        r = post(f"{url}/collections/{name}/search", json={"vector": queries[q].tolist(), "k": k, "exact": True})
        r.raise_for_status()
        got = [(h["path"], h["score"]) for h in r.json()["results"]]
        want = [(str(union.item(int(i))["external_id"]), float(str(np.float32(d)))) for i, d in zip(ids[q], dist[q])]
        if got != want:
            sys.exit(f"query {q}, exact: the service answered {got}, the whole collection {want}")
    log(f"OK exact=true: {len(queries)} merged top-{k} lists equal the whole collection's exact top {k} "
        "(paths and scores)")
    # Recall at the default ef, across shards, as the service reports it.
    recalls, union_recall = [], union.recall(queries, k=k)
    for q in range(len(queries)):
        r = post(f"{url}/collections/{name}/search", json={"vector": queries[q].tolist(), "k": k, "with_recall": True})
        r.raise_for_status()
        a = r.json()
        want_exact = [str(union.item(int(i))["external_id"]) for i in ids[q]]
        if [h["path"] for h in a["exact"]] != want_exact:
            sys.exit(f"query {q}: the service's exact list differs from the whole collection's")
        recalls.append(a["recall_at_k"])
    mean = float(np.mean(recalls))
    log(f"RECALL@{k} at the default ef {a['ef']}: sharded service {mean:.4f} over {len(queries)} queries "
        f"(min {min(recalls):.2f}); one collection holding all: {float(np.mean(union_recall)):.4f}")
    if mean < min_recall:
        sys.exit(f"recall {mean:.4f} is below {min_recall}")
    # By id: the item itself is left out.
    gid = global_id(2, 5)
    r = post(f"{url}/collections/{name}/search", json={"id": gid, "k": k, "exact": True})
    r.raise_for_status()
    if gid in [h["id"] for h in r.json()["results"]] or len(r.json()["results"]) != k:
        sys.exit(f"a query by id {gid} answered {r.json()['results']}")
    r = post(f"{url}/collections/{name}/search", json={"id": global_id(2, 10**9)})
    if r.status_code != 404:
        sys.exit(f"an unknown id answered {r.status_code}, not 404")
    # Batches answer as single searches.
    singles = [post(f"{url}/collections/{name}/search?k=5", json={"vector": queries[q].tolist(), "exact": True}).json()
               for q in range(3)]
    batch = post(f"{url}/collections/{name}/search/batch?k=5",
                 json={"searches": [{"vector": queries[q].tolist(), "exact": True} for q in range(3)]}).json()
    binary = post(f"{url}/collections/{name}/search/batch?k=5&exact=true", data=queries[:3].astype("<f4").tobytes(),
                  headers={"Content-Type": "application/x-imgsim-f32le"}).json()
    for q in range(3):
        want_r = singles[q]["results"]
        if batch["results"][q]["results"] != want_r or binary["results"][q]["results"] != want_r:
            sys.exit(f"batch answer {q} differs from the single search's")
    bad = post(f"{url}/collections/{name}/search", json={"vector": [1.0, 2.0]})
    if bad.status_code != 400 or "784" not in bad.json()["error"]["message"]:
        sys.exit(f"a short vector answered {bad.status_code} {bad.text}")
    log("OK by id (left out; unknown id 404), JSON and binary batches equal single searches, bad vector 400")


def check_failures(url: str, name: str, out: Path, queries: npt.NDArray[np.float32]) -> None:
    # One replica of shard-00 dies: its other replica answers.
    victims = replicas_of("shard-00", 2)
    if len(victims) < 2:
        sys.exit(f"shard-00 has {len(victims)} live replicas, expected 2")
    kill(victims[0]["pid"])
    log(f"killed replica pid {victims[0]['pid']} of shard-00 (node {victims[0]['node_id'][:8]}); "
        f"the other, pid {victims[1]['pid']}, is on node {victims[1]['node_id'][:8]}")
    for q in range(50):
        r = post(f"{url}/collections/{name}/search", json={"vector": queries[q].tolist(), "k": 10})
        if r.status_code != 200 or r.json()["shards"]["answered"] != 4:
            sys.exit(f"after a replica died, query {q} answered {r.status_code} {r.text[:300]}")
    log("OK one replica of shard-00 killed: 50 searches right after it all answered by all 4 shards")

    # shard-03 gone: no replica can start again.
    src = out / "shard-03"
    gone = out / "shard-03.gone"
    src.rename(gone)
    try:
        for info in replicas_of("shard-03", 2):
            kill(info["pid"])
        log("shard-03's folder renamed and both its replicas killed")
        time.sleep(1)
        r = post(f"{url}/collections/{name}/search", json={"vector": queries[0].tolist(), "k": 10})
        msg = r.json().get("error", {}).get("message", "")
        if r.status_code != 503 or "shard-03" not in msg:
            sys.exit(f"with shard-03 gone the answer was {r.status_code} {r.text[:300]}")
        log(f"OK with shard-03 gone: 503, {msg[:160]}...")
        r = post(f"{url}/collections/{name}/search?partial=true", json={"vector": queries[0].tolist(), "k": 10})
        a = r.json()
        if r.status_code != 200 or a.get("missing_shards") != ["shard-03"] or a["shards"]["answered"] != 3:
            sys.exit(f"partial=true with shard-03 gone answered {r.status_code} {r.text[:300]}")
        if any(h["id"] >> 40 == 3 for h in a["results"]):
            sys.exit("a partial answer holds shard-03's items")
        log(f"OK partial=true: 200, missing_shards {a['missing_shards']}, {len(a['results'])} results from 3 shards")
    finally:
        gone.rename(src)


def check_photos(url: str, photo_shards: Path, photo_ref: Path) -> None:
    """Search by uploaded photo: the same list as imgsim index's collection."""
    name = photo_shards.name
    with imgsim.Collection.open(photo_ref / "ref") as ref:
        e = ref.embedder()
        paths = [str(ref.item(int(i))["external_id"]) for i in ref.ids()[:3]]
        for p in paths:
            data = Path(p).read_bytes()
            ids, dist = ref.search(e.embed_bytes([data]), k=10, exact=True)
            want = [(str(ref.item(int(i))["external_id"]), float(str(np.float32(1) - np.float32(d))))
                    for i, d in zip(ids[0], dist[0])]
            r = post(f"{url}/collections/{name}/search?k=10&exact=true", data=data,
                     headers={"Content-Type": "image/jpeg"})
            r.raise_for_status()
            got = [(h["path"], h["score"]) for h in r.json()["results"]]
            if got != want:
                sys.exit(f"uploaded {p}: the service answered {got[:3]}..., imgsim index's collection {want[:3]}...")
            m = post(f"{url}/collections/{name}/search?k=10&exact=true", files={"image": ("q.jpg", data)})
            if [(h["path"], h["score"]) for h in m.json()["results"]] != want:
                sys.exit(f"uploaded {p} as multipart: another answer")
    bad = post(f"{url}/collections/{name}/search", data=b"\xff\xd8\xff\xe0broken", headers={"Content-Type": "image/jpeg"})
    if bad.status_code not in (415, 422):
        sys.exit(f"a damaged upload answered {bad.status_code} {bad.text[:200]}")
    log(f"OK photos: 3 uploads (raw and multipart) answered as imgsim index's collection answers them "
        f"(exact top 10, paths and scores); a damaged upload {bad.status_code}")


def fanout(url: str, name: str, queries: npt.NDArray[np.float32], shards: int) -> Dict[str, float]:
    """Per-query latencies of single JSON searches on one connection."""
    s = requests.Session()
    took, slowest, client = [], [], []
    for q in range(len(queries)):
        t = time.perf_counter()
        r = s.post(f"{url}/collections/{name}/search", json={"vector": queries[q].tolist(), "k": 10}, timeout=60)
        client.append((time.perf_counter() - t) * 1e3)
        a = r.json()
        took.append(a["took_ms"])
        slowest.append(max(a["shards"]["search_ms"]))
    over = [t - m for t, m in zip(took, slowest)]
    res = {
        "shards": shards, "queries": len(queries),
        "overhead_p50_ms": pct(over, 50), "overhead_p99_ms": pct(over, 99),
        "slowest_shard_p50_ms": pct(slowest, 50), "client_p50_ms": pct(client, 50), "client_p99_ms": pct(client, 99),
        "qps_one_connection": len(queries) / (sum(client) / 1e3),
    }
    log("FANOUT " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="Fashion-MNIST training vectors")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--min-recall", type=float, default=0.95)
    ap.add_argument("--fanout", default="", help="shard counts to measure the fan-out overhead with, e.g. 2,4,8")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--photo-shards", type=Path)
    ap.add_argument("--photo-ref", type=Path)
    args = ap.parse_args()

    from ray import serve

    url = f"http://127.0.0.1:{args.port}"
    work = Path(tempfile.mkdtemp(prefix="imgsim-ray-serve-"))
    try:
        base = idx_images(FMNIST / "train-images-idx3-ubyte.gz", args.n)
        queries = idx_images(FMNIST / "t10k-images-idx3-ubyte.gz", args.queries)
        t = time.perf_counter()
        with imgsim.Collection.create(work / "union", dim=784, metric="l2") as u:
            u.add(base, external_ids=[f"fmnist-{i}" for i in range(len(base))])
            u.seal()
        log(f"one collection of {len(base)} vectors built in {time.perf_counter() - t:.1f} s")
        out = work / "fmnist4"
        build(base, out, 4)
        # The command, detached: the service outlives it.
        cmd = [sys.executable, "-m", "imgsim.ray", "serve", "--collections", str(out), "--replicas", "2",
               "--port", str(args.port), "--shard-timeout", "2", "--replica-dir", str(work / "replicas"), "--detach"]
        subprocess.run(cmd, check=True)
        wait_ready(url, "fmnist4", 4, len(base))
        with imgsim.Collection.open(work / "union") as union:
            check_vectors(url, "fmnist4", union, queries, args.min_recall)
        check_failures(url, "fmnist4", out, queries)
        if args.photo_shards is not None and args.photo_ref is not None:
            serve.delete("imgsim")
            run_serve(ServeOptions(collections=args.photo_shards, replicas=1, port=args.port, detach=True,
                                   replica_dir=work / "replicas"))
            with imgsim.Collection.open(args.photo_ref / "ref") as ref:
                n = len(ref)
            wait_ready(url, args.photo_shards.name, len(list(args.photo_shards.glob("shard-*"))), n)
            check_photos(url, args.photo_shards, args.photo_ref)
        results = []
        for count in [int(x) for x in args.fanout.split(",") if x]:
            serve.delete("imgsim")
            folder = work / f"fmnist{count}-fanout"
            build(base, folder, count)
            run_serve(ServeOptions(collections=folder, replicas=1, port=args.port, detach=True,
                                   replica_dir=work / "replicas"))
            wait_ready(url, folder.name, count, len(base))
            fanout(url, folder.name, queries, count)  # warm-up pass
            results.append(fanout(url, folder.name, queries, count))
        if results:
            print(json.dumps(results, indent=1))
        log("check_serve: all checks passed")
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
