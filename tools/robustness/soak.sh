#!/usr/bin/env bash
# Soak test of `imgsim serve` on loopback: mixed traffic (search by vector,
# id and uploaded image; adds and deletes) for MINUTES minutes with
# tools/robustness/soak.py, the server's RSS sampled every 5 s, then
# consistency checked through the API and, after the server stopped, with
# `imgsim check`.
#
# A live library at the same time (LIVE=1, the default): the server also
# watches a folder ($WORK/watched) that receives FEED photos (default 100)
# spread over the first 80% of the run, and `imgsim index` of a new folder
# of NEW photos (default 400) runs through the server from the first
# minute. The photos are seeded crops of the machine's real photos
# (examples/photo_variants.rs, from $PHOTOS_DIR and /usr/share/wallpapers).
# soak.py then waits for all NEW + FEED file items, checks that the counts
# add up, and holds search latency to MAX_SEARCH_P99_MS (50) in every minute
# and MAX_SEARCH_MS (250) at worst.
#
#   bash tools/robustness/soak.sh [MINUTES]        # default 10
#   LIVE=0 bash tools/robustness/soak.sh 10        # the service's traffic alone
#
# Environment: WORK (default /tmp/imgsim-soak; each run serves a fresh copy,
# $WORK/data, of the photo collection built once in PRISTINE, default
# /tmp/imgsim-photos, shared with tools/robustness/schemathesis.sh;
# KEEP_DATA=1 reuses $WORK/data, so what runs add accumulates), THREADS (6),
# MAX_RSS_GROWTH_MIB (64), SOAK_ARGS (more tools/robustness/soak.py flags),
# IMGSIM (another binary).
# Builds nothing when target/release/imgsim exists. Exit status: non-zero
# when soak.py found errors, inconsistencies or RSS growth, when the server
# did not stop cleanly, or when `imgsim check` reports an inconsistency.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/robustness/lib-collection.sh
minutes="${1:-10}"
work="${WORK:-/tmp/imgsim-soak}"
key="soak-key"
mkdir -p "$work"
imgsim_binary
photo_collection "$work"
query=$(query_image)
[ -n "$query" ] || { echo "no JPEG under $PHOTOS_DIR" >&2; exit 1; }
live="${LIVE:-1}"
new_n="${NEW:-400}"
feed_n="${FEED:-100}"
serve_args=()
live_args=()
if [ "$live" = 1 ]; then
    # The photos: NEW for `imgsim index`, then FEED for the watched folder.
    if [ ! -f "$work/photos/.complete-$((new_n + feed_n))" ]; then
        cargo build --release -q --example photo_variants
        rm -rf "$work/photos" && mkdir -p "$work/photos"
        target/release/examples/photo_variants "$work/photos/all" "$((new_n + feed_n))" \
            "$PHOTOS_DIR" /usr/share/wallpapers
        touch "$work/photos/.complete-$((new_n + feed_n))"
    fi
    rm -rf "$work/new" "$work/feed" "$work/watched"
    mkdir -p "$work/new" "$work/feed" "$work/watched"
    mapfile -t all < <(find "$work/photos/all" -name '*.jpg' | sort)
    cp "${all[@]:0:$new_n}" "$work/new/"
    cp "${all[@]:$new_n:$feed_n}" "$work/feed/"
    # The server may read files under $work only.
    printf '[server]\nlibrary_roots = ["%s"]\n' "$work" >"$work/soak.toml"
    export IMGSIM_CONFIG="$work/soak.toml"
    serve_args=(--watch "$work/watched" --collection photos)
    live_args=(--expect-file-items "$((new_n + feed_n))")
fi
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_server
}
trap stop_all EXIT
trap 'exit 130' INT TERM
port=$(free_port)
start_server "$work" "$port" "$key" "${serve_args[@]}"
echo "imgsim serve on 127.0.0.1:$port (pid $SERVER_PID, log $work/serve.log); query image $query"
stamp=$(date +%Y%m%d-%H%M%S)
report="$work/soak-$stamp.json"
rm -rf "$work/added"
index_rc=0
if [ "$live" = 1 ]; then
    # `imgsim index` through the running server (it finds it by the data
    # directory's owner record), from the first minute.
    (
        sleep 30
        rc=0
        "$IMGSIM" --quiet --data-dir "$work/data" index "$work/new" --collection photos \
            >"$work/index-new.log" 2>&1 || rc=$?
        echo "$rc" >"$work/index-new.rc"
    ) &
    pids+=($!)
    # The watched folder receives FEED photos over the first 80% of the run.
    (
        gap=$(python3 -c "print(max(0.05, $minutes * 60 * 0.8 / max(1, $feed_n)))")
        for f in "$work"/feed/*.jpg; do
            cp "$f" "$work/watched/"
            sleep "$gap"
        done
    ) &
    pids+=($!)
fi
soak_rc=0
# shellcheck disable=SC2086
python3 tools/robustness/soak.py --base "http://127.0.0.1:$port" --collection photos --api-key "$key" \
    --minutes "$minutes" --threads "${THREADS:-6}" --server-pid "$SERVER_PID" \
    --query-image "$query" --add-images "$work/added" \
    --max-search-p99-ms "${MAX_SEARCH_P99_MS:-50}" --max-search-ms "${MAX_SEARCH_MS:-250}" \
    "${live_args[@]}" \
    --max-rss-growth-mib "${MAX_RSS_GROWTH_MIB:-64}" --out "$report" ${SOAK_ARGS:-} || soak_rc=$?
if [ "$live" = 1 ]; then
    wait "${pids[@]}" 2>/dev/null || true
    index_rc=$(cat "$work/index-new.rc" 2>/dev/null || echo missing)
    echo "== imgsim index $work/new through the server: exit $index_rc"
    tail -n 5 "$work/index-new.log"
    echo "== the server's watcher and maintenance (/stats)"
    python3 -c 'import json, sys, urllib.request; s = json.load(urllib.request.urlopen(sys.argv[1])); print(json.dumps({k: s.get(k) for k in ("count", "segments", "tombstones", "appendable", "maintenance", "watch")}, indent=1))' \
        "http://127.0.0.1:$port/collections/photos/stats" || true
fi
stop_server
echo "server stopped (exit $SERVER_RC); report $report"
server_rc=$SERVER_RC
check_rc=0
if "$IMGSIM" check --help >/dev/null 2>&1; then
    echo "== imgsim check --collection photos --json"
    "$IMGSIM" --data-dir "$work/data" check --collection photos --json | tee "$work/check-$stamp.json" || check_rc=${PIPESTATUS[0]}
    echo "imgsim check: exit $check_rc"
else
    echo "warning: this imgsim has no \`check\` command; skipping the offline consistency check" >&2
fi
status=0
[ "$soak_rc" -eq 0 ] || { echo "soak.py: exit $soak_rc" >&2; status=1; }
[ "$index_rc" = 0 ] || { echo "imgsim index through the server: exit $index_rc" >&2; status=1; }
[ "$server_rc" -eq 0 ] || { echo "imgsim serve exited $server_rc after SIGINT" >&2; status=1; }
[ "$check_rc" -eq 0 ] || { echo "imgsim check: exit $check_rc" >&2; status=1; }
exit $status
