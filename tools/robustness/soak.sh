#!/usr/bin/env bash
# Soak test of `imgsim serve` on loopback: mixed traffic (search by vector,
# id and uploaded image; adds and deletes) for MINUTES minutes with
# tools/robustness/soak.py, the server's RSS sampled every 5 s, then
# consistency checked through the API and, after the server stopped, with
# `imgsim check`.
#
#   bash tools/robustness/soak.sh [MINUTES]        # default 10
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
trap stop_server EXIT
trap 'exit 130' INT TERM
port=$(free_port)
start_server "$work" "$port" "$key"
echo "imgsim serve on 127.0.0.1:$port (pid $SERVER_PID, log $work/serve.log); query image $query"
stamp=$(date +%Y%m%d-%H%M%S)
report="$work/soak-$stamp.json"
rm -rf "$work/added"
soak_rc=0
# shellcheck disable=SC2086
python3 tools/robustness/soak.py --base "http://127.0.0.1:$port" --collection photos --api-key "$key" \
    --minutes "$minutes" --threads "${THREADS:-6}" --server-pid "$SERVER_PID" \
    --query-image "$query" --add-images "$work/added" \
    --max-rss-growth-mib "${MAX_RSS_GROWTH_MIB:-64}" --out "$report" ${SOAK_ARGS:-} || soak_rc=$?
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
[ "$server_rc" -eq 0 ] || { echo "imgsim serve exited $server_rc after SIGINT" >&2; status=1; }
[ "$check_rc" -eq 0 ] || { echo "imgsim check: exit $check_rc" >&2; status=1; }
exit $status
