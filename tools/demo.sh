#!/usr/bin/env bash
# The main job: index a real photo folder, then ask which images look like
# one of them.
#
#   bash tools/demo.sh [FOLDER [QUERY_IMAGE]]
#
# Default FOLDER: /usr/share/backgrounds (Debian's desktop photos, installed
# here if missing). Collections go to $IMGSIM_DATA_DIR (default ./imgsim-data).
# Offline, with no pretrained weights, `imgsim index` trains an autoencoder on
# the folder first (about a minute for the default folder); online it
# downloads DINOv2-S weights once. Running it again is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
folder="${1:-/usr/share/backgrounds}"
if [ $# -eq 0 ]; then
    bash tools/install-deps.sh --photos
else
    bash tools/install-deps.sh
fi
cargo build --release
imgsim=target/release/imgsim
export IMGSIM_DATA_DIR="${IMGSIM_DATA_DIR:-$PWD/imgsim-data}"

echo "== imgsim index $folder"
status=0
"$imgsim" index "$folder" || status=$?
# 3: finished, but some files could not be indexed (listed above).
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then exit "$status"; fi

query="${2:-$(find "$folder" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) | sort | head -n 1)}"
echo
echo "== imgsim query $query -k 5 --exact"
"$imgsim" query "$query" -k 5 --exact
echo
echo "== imgsim info"
"$imgsim" info
