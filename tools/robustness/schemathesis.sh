#!/usr/bin/env bash
# Property-based API tests of `imgsim serve` with schemathesis, driven by the
# service's own /openapi.json, on loopback: every operation, positive and
# negative data, all checks (no 5xx, every status code, content type, header
# and body as the schema says, invalid input rejected, valid input accepted,
# writes refused without the api-key, ...).
#
#   bash tools/robustness/schemathesis.sh [MAX_EXAMPLES]    # per operation, default 50
#
# Environment: WORK (default /tmp/imgsim-schemathesis; each run serves a
# fresh copy, $WORK/data, of the photo collection built once in PRISTINE,
# default /tmp/imgsim-photos, shared with tools/robustness/soak.sh: the
# tests add and delete images), SEED (a fixed seed, for a reproducible run), ST_ARGS (more
# `schemathesis run` flags), IMGSIM (another binary).
# Path and query parameters named `collection` are fixed to `photos`, so the
# operations reach a real collection instead of answering 404 to random
# names. Reports (JUnit XML, NDJSON events, a pytest file reproducing the
# failures) go to $WORK/report. Builds nothing when target/release/imgsim
# exists. Exit status: schemathesis's.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/robustness/lib-collection.sh
examples="${1:-50}"
work="${WORK:-/tmp/imgsim-schemathesis}"
key="schemathesis-key"
if ! command -v schemathesis >/dev/null; then
    echo "installing schemathesis (pip) ..." >&2
    python3 -m pip install -q schemathesis
fi
schemathesis --version
mkdir -p "$work"
imgsim_binary
photo_collection "$work"
trap stop_server EXIT
trap 'exit 130' INT TERM
port=$(free_port)
start_server "$work" "$port" "$key"
base="http://127.0.0.1:$port"
echo "imgsim serve on 127.0.0.1:$port (pid $SERVER_PID, log $work/serve.log)"
cat >"$work/schemathesis.toml" <<'TOML'
# Written by tools/robustness/schemathesis.sh.
[parameters]
collection = "photos"

# positive_data_acceptance: a schema-valid request must not be refused.
# Two kinds of refusal are by design and cannot be said in a static schema:
# a search vector must have the collection's dimension (400), and random
# bytes that match `format: binary` are rarely a decodable image (415, 422).
[[operations]]
include-path = "/collections/{collection}/search"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "415", "422", "503"]

[[operations]]
include-path = ["/embed", "/collections/{collection}/images"]
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "415", "422", "503"]
TOML
rm -rf "$work/report"
seed_args=()
[ -z "${SEED:-}" ] || seed_args=(--seed "$SEED")
st_rc=0
# Run from $WORK: schemathesis keeps its cache of failing cases (.schemathesis/)
# in the current directory.
# shellcheck disable=SC2086
(cd "$work" && schemathesis --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
    --checks all \
    --continue-on-failure \
    --max-examples "$examples" \
    --header "api-key: $key" \
    --workers 2 \
    --request-timeout 60 \
    --wait-for-schema 30 \
    --report junit,ndjson,pytest --report-dir "$work/report" \
    --no-color \
    "${seed_args[@]}" ${ST_ARGS:-}) 2>&1 | tee "$work/schemathesis.log" || st_rc=${PIPESTATUS[0]}
# How many test cases ran (the summary's "Test cases:" line).
echo
cases=$(awk '/^Test cases:/ {getline; sub(/^ +/, ""); print; exit}' "$work/schemathesis.log")
echo "test cases: ${cases:-unknown (no summary; see $work/schemathesis.log)}"
stop_server
echo "server stopped (exit $SERVER_RC); reports in $work/report, log $work/schemathesis.log, server log $work/serve.log"
if [ "$SERVER_RC" -ne 0 ] && [ "$st_rc" -eq 0 ]; then
    echo "imgsim serve exited $SERVER_RC after SIGINT" >&2
    st_rc=1
fi
exit "$st_rc"
