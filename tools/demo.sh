#!/usr/bin/env bash
# The main job: index a real photo folder, then ask which images look like
# one of them.
#
#   bash tools/demo.sh [FOLDER [QUERY_IMAGE]]
#
# Default FOLDER: /usr/share/backgrounds (Debian's desktop photos, installed
# here if missing). The collection (`default`) goes where every imgsim command
# looks for it: $IMGSIM_DATA_DIR when set, else the platform data directory
# (~/.local/share/imgsim on Linux), so a plain `imgsim query` afterwards
# finds it.
# Offline, with no pretrained weights, `imgsim index` trains an embedder on
# the folder first (three minutes for the default folder on 2 cores); online it
# downloads DINOv2-S weights once. Running it again is incremental.
set -euo pipefail
# Paths given relative to where the script was started from stay so after
# the cd to the repository root.
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
folder="$(abs "${1:-/usr/share/backgrounds}")"
query="${2:+$(abs "$2")}"
if [ -n "${IMGSIM_DATA_DIR:-}" ]; then export IMGSIM_DATA_DIR="$(abs "$IMGSIM_DATA_DIR")"; fi
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
    bash tools/ci/install-deps.sh --photos
else
    bash tools/ci/install-deps.sh
fi
cargo build --release
imgsim=target/release/imgsim
if [ -n "${IMGSIM_DATA_DIR:-}" ]; then
    where="$IMGSIM_DATA_DIR (IMGSIM_DATA_DIR)"
else
    where="the platform data directory (${XDG_DATA_HOME:-$HOME/.local/share}/imgsim on Linux)"
fi
echo "collections go to $where"

echo "== imgsim index $folder"
status=0
"$imgsim" index "$folder" || status=$?
# 3: finished, but some files could not be indexed (listed above).
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then exit "$status"; fi

query="${query:-$(find "$folder" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) | sort | head -n 1)}"
echo
echo "== imgsim query $query -k 5 --exact"
"$imgsim" query "$query" -k 5 --exact
echo
echo "== imgsim info"
"$imgsim" info
