#!/usr/bin/env bash
# Builds the Python package (python/) into a virtual environment and runs its
# pytest suite; checks the extension crate with rustfmt and clippy first.
#
#   bash tools/python/test.sh [PYTEST ARGS...]
#
# The environment lives in $CARGO_TARGET_DIR/python-venv (made once, with
# maturin, numpy and pytest from PyPI); the extension is built in the dev
# profile into the same target folder as the workspace, so that it reuses
# the library crates cargo test built. IMGSIM_BIN (default: the debug
# imgsim, built if missing) is the CLI the parity tests compare with.
# Set IMGSIM_PY_RELEASE=1 to build the extension optimised instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$CARGO_TARGET_DIR/python-venv"
PYTHON="${PYTHON:-python3}"

echo "== python: rustfmt and clippy (python/)"
cargo fmt --manifest-path python/Cargo.toml -- --check
cargo clippy --manifest-path python/Cargo.toml --all-targets -- -D warnings

if [ ! -x "$VENV/bin/pytest" ] || [ ! -x "$VENV/bin/maturin" ]; then
    echo "== python: virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "maturin>=1.9.4,<2" "numpy>=1.21" "pytest>=7"
fi

# The tests embed real photos (Debian's gnome-backgrounds).
[ -d /usr/share/backgrounds/gnome ] || bash tools/ci/install-deps.sh --photos

echo "== python: build and install the package"
profile=()
if [ "${IMGSIM_PY_RELEASE:-0}" = 1 ]; then profile=(--release); fi
(cd python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
    maturin develop --quiet "${profile[@]}")

if [ -z "${IMGSIM_BIN:-}" ]; then
    # Built from these sources (a no-op when fresh): a stale binary would
    # make the parity tests compare against other code.
    cargo build --quiet --bin imgsim
    IMGSIM_BIN="$CARGO_TARGET_DIR/debug/imgsim"
fi
export IMGSIM_BIN

echo "== python: pytest"
# From the repository root, so that python/imgsim (the sources, without
# the built extension) does not shadow the installed package.
"$VENV/bin/pytest" -q python/tests "$@"
