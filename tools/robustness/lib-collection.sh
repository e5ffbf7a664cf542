# Shared by tools/robustness/soak.sh, schemathesis.sh and watch_latency.sh
# (source it, do not run it): the release binary, the photo collection (the demo's: Debian's
# backgrounds, an autoencoder trained offline on them), a query image, a free
# loopback port, and starting and stopping `imgsim serve`.
#
# After sourcing, from the repository root:
#   imgsim_binary                 # sets IMGSIM (builds only if missing; IMGSIM=PATH overrides)
#   photo_collection "$work"      # $work/data/photos: a fresh copy of the
#                                 # pristine one ($PRISTINE), built once
#   query_image                   # prints the smallest JPEG of the photos
#   free_port                     # prints a free loopback port
#   start_server "$work" PORT KEY [ARGS]  # sets SERVER_PID; waits for /readyz (SERVE_ARGS: more arguments)
#   stop_server                   # SIGINT, wait (30 s), then SIGKILL; sets SERVER_RC

PHOTOS_DIR="${PHOTOS_DIR:-/usr/share/backgrounds}"

imgsim_binary() {
    # IMGSIM=PATH uses that binary instead (e.g. target/debug/imgsim).
    if [ -n "${IMGSIM:-}" ]; then
        [ -x "$IMGSIM" ] || { echo "IMGSIM=$IMGSIM is not an executable" >&2; return 1; }
        return 0
    fi
    IMGSIM="$PWD/target/release/imgsim"
    if [ ! -x "$IMGSIM" ]; then
        echo "building target/release/imgsim ..." >&2
        cargo build --release -q
    fi
}

photo_collection() { # WORK
    # The pristine collection, $PRISTINE/photos (default /tmp/imgsim-photos,
    # shared by the scripts), built once; every run serves a fresh copy of
    # it, $WORK/data, so what a run adds or deletes does not carry over.
    # KEEP_DATA=1 keeps an existing $WORK/data instead.
    local work=$1 pristine=${PRISTINE:-/tmp/imgsim-photos}
    mkdir -p "$work"
    if [ ! -d "$PHOTOS_DIR/gnome" ] && [ ! -d "$PHOTOS_DIR/mate" ] && [ "$PHOTOS_DIR" = /usr/share/backgrounds ]; then
        bash tools/ci/install-deps.sh --photos
    fi
    if [ ! -d "$pristine/photos" ]; then
        echo "building the photo collection $pristine/photos from $PHOTOS_DIR (trains an autoencoder offline, about a minute) ..." >&2
        rm -rf "$pristine.tmp"
        mkdir -p "$pristine.tmp"
        local rc=0
        "$IMGSIM" --quiet --data-dir "$pristine.tmp" index "$PHOTOS_DIR" --collection photos >"$work/index.log" 2>&1 || rc=$?
        # 3: finished, some files failed.
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
            cat "$work/index.log" >&2
            echo "imgsim index failed (exit $rc)" >&2
            return 1
        fi
        rm -rf "$pristine"
        mv "$pristine.tmp" "$pristine"
    fi
    if [ "${KEEP_DATA:-0}" = 1 ] && [ -d "$work/data/photos" ]; then
        return 0
    fi
    rm -rf "$work/data"
    cp -a "$pristine" "$work/data"
}

query_image() {
    find "$PHOTOS_DIR" -iname '*.jpg' -printf '%s %p\n' | sort -n | head -n 1 | cut -d' ' -f2-
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

SERVER_PID=""
SERVER_RC=""

start_server() { # WORK PORT KEY [MORE SERVE ARGS...]
    local work=$1 port=$2 key=$3
    shift 3
    # SERVE_ARGS: more `imgsim serve` arguments (e.g. --watch DIR), split on spaces.
    # shellcheck disable=SC2086
    IMGSIM_SERVER_API_KEY="$key" "$IMGSIM" --data-dir "$work/data" serve --bind "127.0.0.1:$port" "$@" ${SERVE_ARGS:-} \
        >"$work/serve.log" 2>&1 &
    SERVER_PID=$!
    local i
    # Up to 5 minutes: with --watch, the folders are indexed before it listens.
    for i in $(seq 1500); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$work/serve.log" >&2
            echo "imgsim serve exited before it was ready" >&2
            SERVER_PID=""
            return 1
        fi
        if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$port/readyz" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "imgsim serve not ready after 5 minutes" >&2
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -INT "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 300); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "imgsim serve still running 30 s after SIGINT; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    SERVER_RC=0
    wait "$SERVER_PID" 2>/dev/null || SERVER_RC=$?
    SERVER_PID=""
}
