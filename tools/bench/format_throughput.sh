#!/usr/bin/env bash
# Decode throughput of HEIC, AVIF, JPEG XL and DNG: imgsim (its decoders in
# their child processes, one thread) beside PIL with pillow-heif,
# pillow-avif-plugin, pillow-jxl-plugin and rawpy, on the same files in the
# same run. Needs tools/ci/install-deps.sh --photos (the photos, the
# encoders); installs the Python packages into a venv under target/.
#   bash tools/bench/format_throughput.sh [N_PHOTOS] [PASSES]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-8}
passes=${2:-2}
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q pillow pillow-heif pillow-avif-plugin pillow-jxl-plugin rawpy
dir=target/format-bench
rm -rf "$dir"
"$venv/bin/python" tools/bench/pil_format_throughput.py make "$dir" "$n"
# The dev profile builds every dependency optimised (jxl-oxide, moxcms);
# libheif and LibRaw are Debian's builds either way.
cargo build -q -p imgsim-embed --example format_throughput
echo "== imgsim (libheif, jxl-oxide, LibRaw; one child process per decode)"
"${CARGO_TARGET_DIR:-target}/debug/examples/format_throughput" "$dir" "$passes"
echo "== PIL (pillow-heif, pillow-avif-plugin, pillow-jxl-plugin, rawpy)"
OMP_NUM_THREADS=1 "$venv/bin/python" tools/bench/pil_format_throughput.py bench "$dir" "$passes"
