#!/usr/bin/env bash
# Watch latency: serves a fresh copy of the photo collection (see
# lib-collection.sh) with `imgsim serve --watch $WORK/inbox --collection
# photos`, then runs tools/robustness/watch_latency.py: COUNT photos from
# /usr/share/backgrounds copied in, the time until each is searchable; then
# deleted, the time until each has left.
#
#   bash tools/robustness/watch_latency.sh [COUNT]     # default 100
#
# Environment: WORK (default /tmp/imgsim-watch-latency), PRISTINE, IMGSIM,
# PHOTOS_DIR as for soak.sh. The report: $WORK/watch-latency.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/robustness/lib-collection.sh
work="${WORK:-/tmp/imgsim-watch-latency}"
imgsim_binary
photo_collection "$work"
rm -rf "$work/inbox"
mkdir -p "$work/inbox"
trap stop_server EXIT
port=$(free_port)
SERVE_ARGS="--watch $work/inbox --collection photos" start_server "$work" "$port" watch-key
echo "imgsim serve --watch $work/inbox on 127.0.0.1:$port (log $work/serve.log)"
python3 tools/robustness/watch_latency.py --base "http://127.0.0.1:$port" --collection photos \
    --dir "$work/inbox" --photos "$PHOTOS_DIR" --count "${1:-100}" --out "$work/watch-latency.json"
