#!/usr/bin/env bash
# Graph build and search side by side on the same vectors, in one run:
# imgsim with each graph builder (native, hnsw_rs), then hnswlib and faiss
# HNSWFlat (shared/tools/ann_peers/peer_npy.py), all M = 16,
# ef_construction = 200, building on 2 threads, searching one query per
# call on 1 thread, L2.
#
#   bash tools/bench/build_vs_peers.sh fashion-mnist          # ann-benchmarks' 60,000 x 784
#   bash tools/bench/build_vs_peers.sh clustered 200000 128   # 1,000 Gaussian clusters, 1,000 queries
#   bash tools/bench/build_vs_peers.sh BASE.npy QUERIES.npy
#
# Needs the release binary (cargo build --release) and the peers' venv
# (bash ../shared/tools/ann_peers/setup.sh). Writes OUT (default
# /tmp/imgsim-build-vs-peers/<name>): imgsim-<builder>.json and .time (wall
# seconds and peak RSS from /usr/bin/time), peers.jsonl, and prints a
# summary with queries/s at recall@10 0.95 and 0.99 (log-linear between
# the sweep points around it) and ratios to the best peer. EF overrides the
# ef sweep, BUILDERS the builders run, RUNS imgsim's timed passes per ef (the
# fastest is kept; peer_npy.py times one pass after a warm-up pass).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$HOME/.cache/ann-peers/venv}
peers=${PEERS:-$root/../shared/tools/ann_peers}
ef=${EF:-16,24,32,48,64,128}
builders=${BUILDERS:-native hnsw_rs}
runs=${RUNS:-2}
imgsim=${IMGSIM:-$root/target/release/imgsim}
[ -x "$imgsim" ] || { echo "no $imgsim: run cargo build --release first" >&2; exit 2; }
[ -x "$venv/bin/python" ] || { echo "no peer venv at $venv: bash $peers/setup.sh" >&2; exit 2; }

case "${1:-}" in
    fashion-mnist)
        name=fashion-mnist
        data=${OUT:-/tmp/imgsim-build-vs-peers/$name}
        mkdir -p "$data"
        [ -f "$data/base.npy" ] || "$venv/bin/python" "$root/tools/bench/fashion_npy.py" --out "$data"
        ;;
    clustered)
        n=${2:-200000}; dim=${3:-128}
        name=clustered-${n}x${dim}
        data=${OUT:-/tmp/imgsim-build-vs-peers/$name}
        mkdir -p "$data"
        [ -f "$data/base.npy" ] || "$venv/bin/python" "$root/tools/bench/clustered_npy.py" --n "$n" --dim "$dim" --out "$data"
        ;;
    *.npy)
        name=$(basename "$1" .npy)
        data=${OUT:-/tmp/imgsim-build-vs-peers/$name}
        mkdir -p "$data"
        cp "$1" "$data/base.npy"; cp "$2" "$data/queries.npy"
        ;;
    *) sed -n 2,17p "$0"; exit 2 ;;
esac

for b in $builders; do
    echo "== imgsim, builder $b"
    /usr/bin/time -f "%e %M" -o "$data/imgsim-$b.time" \
        env RAYON_NUM_THREADS=2 "$imgsim" bench ann --base "$data/base.npy" --queries "$data/queries.npy" \
        --metric l2 --builder "$b" --ef "$ef" --runs "$runs" --out "$data/bench-$b" --json "$data/imgsim-$b.json" >/dev/null
done
echo "== peers (hnswlib, faiss)"
"$venv/bin/python" "$peers/peer_npy.py" --base "$data/base.npy" --queries "$data/queries.npy" --ef "$ef" | tee "$data/peers.jsonl"

"$venv/bin/python" - "$data" $builders <<'PY' | tee "$data/summary.md"
import json, sys
data, builders = sys.argv[1], sys.argv[2:]
rows = []
for b in builders:
    r = json.load(open(f"{data}/imgsim-{b}.json"))
    wall, kb = open(f"{data}/imgsim-{b}.time").read().split()
    rows.append((f"imgsim {b}", r["build_seconds"], int(kb) / 1024, {x["ef"]: (x["recall_at_10"], x["qps_single_thread"]) for x in r["runs"]}))
for line in open(f"{data}/peers.jsonl"):
    p = json.loads(line)
    rows.append((p["library"], p["build_s_2threads"], p["rss_delta_MiB"], {x["ef"]: (x["recall10"], x["qps_1thread_single"]) for x in p["sweep"]}))
efs = sorted(rows[0][3])
print(f"\n{data}: build on 2 threads, then recall@10 / queries per second (1 thread, one query per call)")
print("| | build s | memory MiB | " + " | ".join(f"ef {e}" for e in efs) + " |")
print("|---|---:|---:|" + "---:|" * len(efs))
for name, build, mem, sweep in rows:
    cells = " | ".join(f"{sweep[e][0]:.4f} / {sweep[e][1]:,.0f}" if e in sweep else "" for e in efs)
    print(f"| {name} | {build:.1f} | {mem:.0f} | {cells} |")
print("\nmemory: imgsim = peak RSS of the whole bench process; peers = RSS growth over the build")

import math
def qps_at(sweep, target):
    pts = sorted(sweep.values())
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            return math.exp(math.log(q0) + (target - r0) / (r1 - r0) * (math.log(q1) - math.log(q0)))
    return pts[0][1] if pts and pts[0][0] >= target else None
peers = [r for r in rows if not r[0].startswith("imgsim")]
print("\n| | build vs hnswlib | QPS at recall 0.95 | vs best peer | QPS at recall 0.99 | vs best peer |")
print("|---|---:|---:|---:|---:|---:|")
hnswlib_build = next((r[1] for r in rows if r[0] == "hnswlib"), None)
for name, build, mem, sweep in rows:
    cells = []
    for t in (0.95, 0.99):
        q = qps_at(sweep, t)
        best = max((x for x in (qps_at(p[3], t) for p in peers) if x), default=None)
        cells += [f"{q:,.0f}" if q else "not reached", f"{q / best:.2f}x" if q and best else ""]
    ratio = f"{build / hnswlib_build:.2f}x" if hnswlib_build else ""
    print(f"| {name} | {ratio} | " + " | ".join(cells) + " |")
PY
