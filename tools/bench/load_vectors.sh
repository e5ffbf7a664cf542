#!/usr/bin/env bash
# Load benchmark of search by vector through `imgsim serve`, one server and
# one collection (Fashion-MNIST, 60,000 x 784, L2, as load_bench.sh builds
# it), four ways at 16 connections with wrk: a JSON vector per request
# (`/search`, application/json), a binary vector per request (`/search`,
# application/x-imgsim-f32le), and batches of PER (32) searches per request
# (`/search/batch`, JSON and binary). Before the load, recall@10 is measured
# through each path (1,000 test queries with with_recall) and the binary
# answers are compared with the JSON ones. Figures are queries per second
# (a batch request counts its PER queries) and the ratio to the JSON row.
#
#   bash tools/bench/load_vectors.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-10}"
rounds="${2:-1}"
ef="${EF:-16}"
per="${PER:-32}"
conns="${CONNS:-16}"
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y -q wrk; }
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || bash tools/ci/install-deps.sh
cargo build --release -q
imgsim="$PWD/target/release/imgsim"
work="${WORK:-/tmp/imgsim-load}"
mkdir -p "$work/data"
if [ ! -d "$work/data/fashion-mnist" ]; then
    "$imgsim" --quiet bench ann --dataset fashion-mnist --ef "$ef" --runs 1 --queries 100 --out "$work/bench" >/dev/null
    mv "$work/bench/fashion-mnist-784-euclidean.collection" "$work/data/fashion-mnist"
fi
# Query bodies from the 10,000 test vectors: JSON one per line, binary f32
# (all in one file), JSON batches of $per one per line.
python3 - "$work" "$per" <<'PY'
import gzip, json, struct, sys
work, per = sys.argv[1], int(sys.argv[2])
with gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz') as f:
    data = f.read()
n = struct.unpack('>I', data[4:8])[0]
px = data[16:]
vs = [list(px[i * 784:(i + 1) * 784]) for i in range(n)]
with open(f'{work}/vectors.json.lines', 'w') as out:
    for v in vs:
        out.write(json.dumps({'vector': v}, separators=(',', ':')) + '\n')
with open(f'{work}/vectors.f32', 'wb') as out:
    for v in vs:
        out.write(struct.pack('<784f', *v))
with open(f'{work}/batches.json.lines', 'w') as out:
    for b in range(n // per):
        out.write(json.dumps({'searches': [{'vector': v} for v in vs[b * per:(b + 1) * per]]}, separators=(',', ':')) + '\n')
PY
port="${PORT:-18090}"
"$imgsim" --data-dir "$work/data" serve --bind "127.0.0.1:$port" 2>"$work/serve-vectors.log" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve-vectors.log" >&2; exit 1; }
base="http://127.0.0.1:$port/collections/fashion-mnist"
params="k=10&ef=$ef"
# Recall@10 through each path, and the binary answers against the JSON ones.
python3 - "$base" "$params" "$work" "$per" <<'PY'
import json, struct, sys, urllib.request
base, params, work, per = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
vs = []
with open(f'{work}/vectors.f32', 'rb') as f:
    raw = f.read(1000 * 784 * 4)
vs = [list(struct.unpack_from('<784f', raw, i * 784 * 4)) for i in range(1000)]
def post(path, body, ctype):
    req = urllib.request.Request(f'{base}/{path}?{params}&with_recall=true', body, {'content-type': ctype})
    return json.load(urllib.request.urlopen(req))
f32 = 'application/x-imgsim-f32le'
js = [post('search', json.dumps({'vector': v}).encode(), 'application/json') for v in vs]
bi = [post('search', struct.pack('<784f', *v), f32) for v in vs]
bj, bb = [], []
for b in range(0, 1000, per):
    chunk = vs[b:b + per]
    bj += post('search/batch', json.dumps({'searches': [{'vector': v} for v in chunk]}).encode(), 'application/json')['results']
    bb += post('search/batch', b''.join(struct.pack('<784f', *v) for v in chunk), f32)['results']
ids = lambda a: [r['id'] for r in a['results']]
for name, answers in [('JSON vector', js), ('binary vector', bi), (f'JSON batch of {per}', bj), (f'binary batch of {per}', bb)]:
    r = [a['recall_at_k'] for a in answers]
    same = sum(ids(a) == ids(j) for a, j in zip(answers, js))
    print(f'recall@10 at {params} over {len(r)} queries, {name}: {sum(r) / len(r):.4f} '
          f'(same results as JSON: {same}/{len(js)})')
PY
printf '\n| search by | per request | connections | requests/s | queries/s | vs JSON | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
json_qps=""
run() { # label per lua env...
    local label=$1 n=$2 lua=$3; shift 3
    local out
    out=$(env "$@" wrk -t2 -c"$conns" -d"${secs}s" --latency -s "tools/bench/load/$lua" "$URL" 2>&1)
    local rps p50 p99 qps ratio
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    if echo "$out" | grep -q "^status\|Non-2xx"; then echo "$out" | grep "^status\|Non-2xx" | head -3 >&2; fi
    qps=$(awk -v r="$rps" -v n="$n" 'BEGIN {printf "%.0f", r * n}')
    [ -n "$json_qps" ] || json_qps=$qps
    ratio=$(awk -v q="$qps" -v j="$json_qps" 'BEGIN {printf "%.2f", q / j}')
    printf '| %s | %s | %s | %.0f | %s | %s | %s | %s |\n' "$label" "$n" "$conns" "$rps" "$qps" "$ratio" "$p50" "$p99"
}
for round in $(seq "$rounds"); do
    echo "round $round: $(uptime)"
    json_qps=""
    URL="$base/search?$params"
    run "vector, JSON" 1 search.lua BODIES="$work/vectors.json.lines"
    run "vector, binary f32" 1 vectors.lua VECTORS="$work/vectors.f32" DIM=784 PER=1
    URL="$base/search/batch?$params"
    run "batch, JSON" "$per" search.lua BODIES="$work/batches.json.lines"
    run "batch, binary f32" "$per" vectors.lua VECTORS="$work/vectors.f32" DIM=784 PER="$per"
done
# Single searches beside batches: one connection of JSON single searches,
# alone and then while binary batches load the server at $conns connections.
single() { # wrk output of $secs s of JSON single searches on one connection
    BODIES="$work/vectors.json.lines" wrk -t1 -c1 -d"${secs}s" --latency -s tools/bench/load/search.lua "$base/search?$params" 2>&1
}
lat() { awk '/Requests\/sec/ {q=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2} END {printf "%.0f queries/s, p50 %s, p99 %s", q, p50, p99}'; }
echo
echo "single JSON searches, 1 connection, alone: $(single | lat)"
VECTORS="$work/vectors.f32" DIM=784 PER="$per" wrk -t2 -c"$conns" -d"$((secs + 2))s" -s tools/bench/load/vectors.lua "$base/search/batch?$params" >"$work/batches-beside.txt" 2>&1 &
batches=$!
sleep 1
echo "single JSON searches, 1 connection, beside binary batches of $per at $conns connections: $(single | lat)"
wait $batches
echo "  (the batches meanwhile: $(awk -v n="$per" '/Requests\/sec/ {printf "%.0f queries/s", $2 * n}' "$work/batches-beside.txt"))"
curl -s "http://127.0.0.1:$port/metrics" | grep -E "busy|timeouts|recall_estimate" || true
