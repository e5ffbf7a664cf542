#!/usr/bin/env bash
# The benchmark: set up and run the Fashion-MNIST recall-vs-QPS sweep.
# Extra arguments go to `imgsim bench ann` (e.g. --queries 2000 --ef 10,16,32).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/ci/install-deps.sh
cargo run --release -- bench ann --dataset fashion-mnist "$@"
