#!/usr/bin/env bash
# Installs what imgsim needs from Debian that a fresh machine lacks:
# - libturbojpeg0-dev: libjpeg-turbo's TurboJPEG library, linked for scaled
#   JPEG decoding (needed to build);
# - libheif-dev: libheif 1.15 (with libde265 and dav1d), linked to decode
#   HEIC/HEIF and AVIF (needed to build);
# - libraw-dev: LibRaw 0.20, linked to develop DNG raw files (needed to build);
# - libheif-examples, libavif-bin, libjxl-tools: the encoders heif-enc,
#   avifenc and cjxl, with which the tests make HEIC, AVIF and JPEG XL files
#   (tests/common/formats.rs);
# - dataset-fashion-mnist: the Fashion-MNIST data set (benchmarks, eval);
# - chromium, and Node.js with npm: the browser test of the search page
#   (tests/browser.rs), which also needs playwright-core from npm, installed
#   into tests/browser/node_modules;
# - with --photos: gnome-backgrounds and mate-backgrounds, real photos in
#   /usr/share/backgrounds for the demo (tools/demo.sh).
# Idempotent: does nothing when everything is present.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
[ -f /usr/include/turbojpeg.h ] || need+=(libturbojpeg0-dev)
[ -f /usr/include/x86_64-linux-gnu/libheif/heif.h ] || [ -f /usr/include/libheif/heif.h ] \
    || ls /usr/include/*/libheif/heif.h >/dev/null 2>&1 || need+=(libheif-dev)
[ -f /usr/include/libraw/libraw.h ] || need+=(libraw-dev)
command -v heif-enc >/dev/null || need+=(libheif-examples)
command -v avifenc >/dev/null || need+=(libavif-bin)
command -v cjxl >/dev/null || need+=(libjxl-tools)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${1:-}" = "--photos" ]; then
    [ -d /usr/share/backgrounds/gnome ] || need+=(gnome-backgrounds)
    [ -d /usr/share/backgrounds/mate ] || need+=(mate-backgrounds)
fi
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    echo "installing ${need[*]} (Debian packages) ..."
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "installing playwright-core (npm) into tests/browser ..."
    npm install --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
