#!/usr/bin/env bash
# Makes the virtual environment the Ray jobs run in (idempotent): Ray from
# PyPI, the test tools, and the imgsim extension built into it (optimised;
# IMGSIM_RAY_PROFILE=dev builds it unoptimised, reusing what `cargo test`
# built, as CI's short run does).
#
#   bash tools/ray/setup.sh            # prints the environment's path last
#
# The environment is $CARGO_TARGET_DIR/ray-venv (default target/ray-venv).
# The extension is installed editable (maturin develop --release), so the
# Python sources under python/imgsim, imgsim.ray included, are used in
# place; cargo rebuilds the extension when the Rust sources changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$CARGO_TARGET_DIR/ray-venv"
PYTHON="${PYTHON:-python3}"
# Pinned so that a run here and in CI use the same Ray.
RAY_VERSION="${IMGSIM_RAY_VERSION:-2.60.0}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "== ray: virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import ray, ray.data, ray.serve, blake3, multipart, requests, pytest, mypy" 2>/dev/null \
    || [ "$("$VENV/bin/python" -c 'import ray; print(ray.__version__)')" != "$RAY_VERSION" ]; then
    echo "== ray: installing ray[data,serve]==$RAY_VERSION and the tools"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "ray[data,serve]==$RAY_VERSION" "numpy>=1.21" \
        "blake3>=0.4" "python-multipart>=0.0.9" "requests>=2.31" "pytest>=7" "mypy>=1.10" "maturin>=1.9.4,<2"
fi
# Always through maturin: cargo rebuilds the extension only when the Rust
# sources changed, so the environment never runs a stale one.
profile=(--release)
[ "${IMGSIM_RAY_PROFILE:-release}" = dev ] && profile=()
echo "== ray: building the imgsim extension (${IMGSIM_RAY_PROFILE:-release}) into $VENV"
(cd python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" maturin develop --quiet "${profile[@]}")
"$VENV/bin/python" -c "import imgsim, ray; print('imgsim', imgsim.__version__, 'ray', ray.__version__)"
echo "$VENV"
