#!/usr/bin/env bash
# Assembles a labelled folder of real images for `imgsim eval --images`:
# clip art from Debian's openclipart-png, one sub-folder per label.
#
#   bash tools/datasets/openclipart_labelled.sh [OUT] [PER_LABEL]
#
# OUT defaults to /tmp/imgsim-labelled/openclipart, PER_LABEL to 30.
# Labels are the Open Clip Art Library's own categories (the folder each
# drawing was filed under by its contributors), 12 of them:
#   mammals birds fruit desserts roadsigns flags music sports people tools
#   maps flowers
# From each category folder (not its sub-folders) the first PER_LABEL PNG
# files in byte order of their names are taken, skipping files over 1 MiB
# (a few are 100-megapixel renders). Files are copied, so the folder is the
# same on every machine with the same package version (1:0.18+dfsg-19 here).
set -euo pipefail

out=${1:-/tmp/imgsim-labelled/openclipart}
per=${2:-30}
src=/usr/share/openclipart/png

if [ ! -d "$src" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y openclipart-png >/dev/null
    else
        echo "openclipart-png is not installed: run 'sudo apt-get install -y openclipart-png'" >&2
        exit 2
    fi
fi

declare -A labels=(
    [mammals]=animals/mammals
    [birds]=animals/birds
    [fruit]=food/fruit
    [desserts]=food/desserts
    [roadsigns]=transportation/roadsigns
    [flags]=signs_and_symbols/flags
    [music]=recreation/music
    [sports]=recreation/sports
    [people]=people
    [tools]=tools
    [maps]=geography
    [flowers]=plants/flowers
)

rm -rf "$out"
for label in "${!labels[@]}"; do
    mkdir -p "$out/$label"
    n=0
    while IFS= read -r f; do
        [ "$(stat -L -c %s "$f")" -le 1048576 ] || continue
        cp -L "$f" "$out/$label/"
        n=$((n + 1))
        [ "$n" -lt "$per" ] || break
    done < <(LC_ALL=C find "$src/${labels[$label]}" -maxdepth 1 \( -type f -o -type l \) -name '*.png' | LC_ALL=C sort)
    if [ "$n" -lt "$per" ]; then
        echo "only $n images for $label (wanted $per)" >&2
        exit 1
    fi
done
echo "$(find "$out" -type f | wc -l) images in ${#labels[@]} labels under $out"
