#!/usr/bin/env bash
# End-to-end indexing throughput versus the embedder's own, per backbone, on
# a folder of real photos (the issue-4 target: at least 90%).
#
#   bash tools/bench/index_throughput.sh [FOLDER] [BACKBONES]
#
# FOLDER defaults to /tmp/imgsim-photo-crops, made from Debian's desktop photos by
# the photo_folder example (400 camera-sized JPEG crops) when missing.
# Weights are synthetic: the same computation as real weights, no download.
set -euo pipefail
cd "$(dirname "$0")/../.."
folder="${1:-/tmp/imgsim-photo-crops}"
backbones="${2:-dinov2-small clip-b32 resnet50 resnet18 mobilenetv4-small}"
batch=16
cargo build --release -q
if [ ! -d "$folder" ]; then
    bash tools/ci/install-deps.sh --photos
    cargo run --release -q -p imgsim-pipeline --example photo_folder -- /usr/share/backgrounds "$folder" 400
fi
imgsim=target/release/imgsim
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
printf '| backbone | model alone, batch %d (images/s) | imgsim index end to end (images/s) | ratio |\n|---|---:|---:|---:|\n' "$batch"
for b in $backbones; do
    alone=$("$imgsim" bench embed --backbones "$b" --batch-sizes "$batch" --seconds 8 | awk -v b="$b" '$1 == b { print $3 }')
    rm -rf "$data/c"
    e2e=$("$imgsim" --data-dir "$data/c" --quiet index "$folder" --backbone "$b" --weights synthetic:1 --batch-size "$batch" --json \
        | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["images_per_s"])')
    ratio=$(python3 -c "print('%.2f' % ($e2e / $alone))")
    printf '| %s | %s | %s | %s |\n' "$b" "$alone" "$e2e" "$ratio"
done
