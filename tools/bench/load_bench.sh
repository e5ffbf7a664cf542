#!/usr/bin/env bash
# Load benchmark of `imgsim serve` on loopback with wrk (Debian): queries/s
# and p50/p99 latency for search by vector and by id on the Fashion-MNIST
# collection (k = 10 at an ef giving recall@10 >= 0.95, checked through the
# API's with_recall), and by uploaded image on a photo collection, at
# several concurrencies.
#
#   bash tools/bench/load_bench.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-10}"
ef="${EF:-16}"
bash tools/ci/install-deps.sh --photos
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y -q wrk; }
cargo build --release -q
imgsim="$PWD/target/release/imgsim"
work="${WORK:-/tmp/imgsim-load}"
mkdir -p "$work/data"
# The Fashion-MNIST collection (60,000 x 784, l2), built once by bench ann.
if [ ! -d "$work/data/fashion-mnist" ]; then
    "$imgsim" --quiet bench ann --dataset fashion-mnist --ef "$ef" --runs 1 --queries 100 --out "$work/bench" >/dev/null
    mv "$work/bench/fashion-mnist-784-euclidean.collection" "$work/data/fashion-mnist"
fi
# A photo collection for uploads (the demo's: Debian's backgrounds).
if [ ! -d "$work/data/photos" ]; then
    "$imgsim" --quiet --data-dir "$work/data" index /usr/share/backgrounds --collection photos >/dev/null || [ $? -eq 3 ]
fi
# Query bodies: the 10,000 test vectors, by vector and by id.
python3 - "$work" "$ef" <<'PY'
import gzip, json, random, struct, sys
work, ef = sys.argv[1], int(sys.argv[2])
with gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz') as f:
    data = f.read()
n, rows, cols = struct.unpack('>III', data[4:16])
px = data[16:]
with open(f'{work}/vectors.jsonl', 'w') as out:
    for i in range(n):
        v = list(px[i * 784:(i + 1) * 784])
        out.write(json.dumps({'vector': v, 'k': 10, 'ef': ef}, separators=(',', ':')) + '\n')
random.seed(1)
with open(f'{work}/ids.jsonl', 'w') as out:
    for _ in range(10000):
        out.write(json.dumps({'id': random.randrange(60000), 'k': 10, 'ef': ef}) + '\n')
PY
port=18089
"$imgsim" --data-dir "$work/data" serve --bind "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
base="http://127.0.0.1:$port"
# Recall at this ef, through the API (1,000 queries with with_recall).
python3 - "$base" "$work" <<'PY'
import json, sys, urllib.request
base, work = sys.argv[1], sys.argv[2]
rs = []
with open(f'{work}/vectors.jsonl') as f:
    for i, line in enumerate(f):
        if i == 1000: break
        q = json.loads(line); q['with_recall'] = True
        req = urllib.request.Request(f'{base}/collections/fashion-mnist/search', json.dumps(q).encode(), {'content-type': 'application/json'})
        rs.append(json.load(urllib.request.urlopen(req))['recall_at_k'])
print(f"recall@10 at ef {q['ef']} over {len(rs)} queries: {sum(rs) / len(rs):.4f}")
PY
query_img=$(find /usr/share/backgrounds -iname '*.jpg' | sort | head -n 1)
printf '| search by | connections | QPS | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n'
run() { # label connections threads env...
    local label=$1 c=$2 t=$3; shift 3
    local out
    out=$(env "$@" wrk -t"$t" -c"$c" -d"${secs}s" --latency -s tools/bench/load/search.lua "$URL" 2>&1)
    local qps p50 p99
    qps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    if echo "$out" | grep -q "^status"; then echo "$out" | grep "^status" | head -3 >&2; fi
    printf '| %s | %s | %.0f | %s | %s |\n' "$label" "$c" "$qps" "$p50" "$p99"
}
URL="$base/collections/fashion-mnist/search"
for c in 1 4 16 64; do run vector "$c" "$(( c < 2 ? 1 : 2 ))" BODIES="$work/vectors.jsonl"; done
for c in 1 4 16 64; do run id "$c" "$(( c < 2 ? 1 : 2 ))" BODIES="$work/ids.jsonl"; done
URL="$base/collections/photos/search?k=10"
for c in 1 4 16; do run "image upload" "$c" "$(( c < 2 ? 1 : 2 ))" IMAGE="$query_img"; done
curl -s "$base/metrics" | grep -E "busy|recall_estimate" || true
