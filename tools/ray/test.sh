#!/usr/bin/env bash
# Runs the Ray checks on a two-node cluster made inside a private network
# namespace (tools/ray/cluster.sh): the indexing job against imgsim index,
# the sharded service, then the indexing job with a raylet killed mid-run.
#
#   bash tools/ray/test.sh            # 400 photos, throughput ratio >= 0.8, 20,000 vectors, fan-out 2/4/8 shards
#   bash tools/ray/test.sh --short    # CI: 48 photos, 8,000 vectors, no timing target (about 3 minutes)
#
# Needs root (network namespace). Makes the environment with
# tools/ray/setup.sh. IMGSIM_BIN: the imgsim command the job is compared
# with and creates shards with (default: built here, release, or debug for
# --short, matching the extension's build). IMGSIM_RAY_PHOTOS: a folder of
# JPEG photos (default /tmp/imgsim-photo-crops; made with the photo_folder
# example from /usr/share/backgrounds when it holds too few).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

SHORT=0
case "${1:-}" in
    --short) SHORT=1 ;;
    "") ;;
    *) echo "usage: tools/ray/test.sh [--short]" >&2; exit 2 ;;
esac

# The short run (CI) builds the extension unoptimised: it reuses the
# workspace's debug build, and 48 photos need no speed.
if [ "$SHORT" = 1 ]; then export IMGSIM_RAY_PROFILE="${IMGSIM_RAY_PROFILE:-dev}"; fi
bash tools/ray/setup.sh >/dev/null
VENV="$CARGO_TARGET_DIR/ray-venv"

if [ -z "${IMGSIM_BIN:-}" ]; then
    # Built from these sources in the extension's profile (a no-op when
    # fresh), so that a stale binary never stands in for the reference.
    if [ "${IMGSIM_RAY_PROFILE:-release}" = dev ]; then
        cargo build --quiet --bin imgsim
        IMGSIM_BIN="$CARGO_TARGET_DIR/debug/imgsim"
    else
        cargo build --quiet --release --bin imgsim
        IMGSIM_BIN="$CARGO_TARGET_DIR/release/imgsim"
    fi
fi
# A copy: a build running meanwhile may replace the file.
WORK="$(mktemp -d /tmp/imgsim-ray-test-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cp "$IMGSIM_BIN" "$WORK/imgsim"
export IMGSIM_BIN="$WORK/imgsim"

if [ "$SHORT" = 1 ]; then
    COUNT=48; N=8000; QUERIES=100; RATIO=0; FANOUT=""; KILL_AFTER=0
else
    COUNT=400; N=20000; QUERIES=300; RATIO=0.8; FANOUT=2,4,8; KILL_AFTER=64
fi
PHOTOS="${IMGSIM_RAY_PHOTOS:-/tmp/imgsim-photo-crops}"
have=0
# (find fails on a missing folder, which pipefail would make fatal.)
[ -d "$PHOTOS" ] && have="$(find "$PHOTOS" -maxdepth 1 -name '*.jpg' | wc -l)"
if [ "$have" -lt "$COUNT" ]; then
    [ -d /usr/share/backgrounds/gnome ] || bash tools/ci/install-deps.sh --photos
    echo "== ray: making $COUNT photos in $PHOTOS"
    profile=(); [ "$SHORT" = 1 ] || profile=(--release)
    cargo run --quiet "${profile[@]}" -p imgsim-pipeline --example photo_folder -- \
        /usr/share/backgrounds "$PHOTOS" "$COUNT"
fi
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || bash tools/ci/install-deps.sh

echo "== ray: checks on a two-node cluster (photos $COUNT, vectors $N)"
bash tools/ray/cluster.sh -- bash -c "
    set -e
    python tools/ray/check_index.py --photos '$PHOTOS' --count $COUNT --min-ratio $RATIO --work '$WORK/index'
    python tools/ray/check_serve.py --n $N --queries $QUERIES --fanout '$FANOUT' \
        --photo-shards '$WORK/index/sharded' --photo-ref '$WORK/index/ref-data'
    python tools/ray/check_index.py --photos '$PHOTOS' --count $COUNT --kill-raylet \
        --kill-after $KILL_AFTER --work '$WORK/kill'
"
echo "== ray: all checks passed"
