#!/usr/bin/env bash
# Installs what imgsim needs from Debian that a fresh machine lacks:
# the Fashion-MNIST data set (package dataset-fashion-mnist). Idempotent.
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "installing dataset-fashion-mnist (Debian package) ..."
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -q dataset-fashion-mnist
