#!/usr/bin/env bash
# Fuzzes imgsim with cargo fuzz (libFuzzer + AddressSanitizer) for a bounded
# time per target: image preprocessing, the HEIF/AVIF/JPEG XL/DNG decoders
# (in process, so that ASan sees their crashes), the IDX / fvecs / npy readers, and
# search request parsing (fuzz/fuzz_targets/). Needs a nightly toolchain
# (rustup toolchain install nightly) and cargo-fuzz (installed if missing).
# Crashes land in fuzz/artifacts/<target>/; the corpus grows in
# fuzz/corpus/<target>/ (seeded by tools/robustness/fuzz_seeds.py: small
# valid files of every kind).
#
#   bash tools/robustness/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(preprocess decoders idx fvecs npy search_request)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup run nightly rustc --version >/dev/null 2>&1 || {
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }
cp -n Cargo.lock fuzz/Cargo.lock 2>/dev/null || true
# A known leak inside Debian's libheif, contained in production by the
# decoding child process: see fuzz/lsan-suppressions.txt.
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan-suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
python3 tools/robustness/fuzz_seeds.py fuzz/seeds
cargo +nightly fuzz build -O
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
    log="fuzz/$t.log"
    echo "== $t for ${secs} s"
    # -rss_limit_mb: the preprocessing limits keep a decode under 64 MiB;
    # a leak or a bomb that escapes them shows up as an RSS crash.
    if cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result="no crash"
    else
        result="CRASH (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    summary+=("| $t | ${secs} | ${execs:-?} | ${cov:-?} | $corpus | $result |")
done
echo
echo "| target | seconds | executions | coverage (edges) | corpus files | result |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${summary[@]}"
exit $status
