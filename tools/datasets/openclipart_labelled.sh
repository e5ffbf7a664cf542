#!/usr/bin/env bash
# Assembles a labelled folder of real images for `imgsim eval --images`:
# clip art from Debian's openclipart-png, one sub-folder per label.
#
#   bash tools/datasets/openclipart_labelled.sh [OUT] [PER_LABEL]
#   SET=tune bash tools/datasets/openclipart_labelled.sh [OUT] [PER_LABEL]
#
# OUT defaults to /tmp/imgsim-labelled/openclipart (or openclipart-tune),
# PER_LABEL to 30. Labels are the Open Clip Art Library's own categories
# (the folder each drawing was filed under by its contributors). The report
# set has 12:
#   mammals birds fruit desserts roadsigns flags music sports people tools
#   maps flowers
# SET=tune gives 10 other categories, for choosing settings without looking
# at the report set:
#   office arrows stars plants vehicles education buttons food animals party
# From each category folder (not its sub-folders) the first PER_LABEL PNG
# files in byte order of their names are taken, skipping files over 1 MiB
# (a few are 100-megapixel renders). Files are copied, so the folder is the
# same on every machine with the same package version (1:0.18+dfsg-19 here).
set -euo pipefail

set_name=${SET:-report}
case "$set_name" in
    report) out=${1:-/tmp/imgsim-labelled/openclipart} ;;
    tune) out=${1:-/tmp/imgsim-labelled/openclipart-tune} ;;
    *) echo "SET must be report or tune, not '$set_name'" >&2; exit 2 ;;
esac
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

declare -A labels
if [ "$set_name" = tune ]; then
labels=(
    [office]=office
    [arrows]=shapes/arrows
    [stars]=shapes/stars
    [plants]=plants
    [vehicles]=transportation
    [education]=education
    [buttons]=computer/buttons
    [food]=food
    [animals]=animals
    [party]=recreation/party
)
else
labels=(
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
fi

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
