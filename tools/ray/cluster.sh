#!/usr/bin/env bash
# Runs one command against a two-node Ray cluster made for it on this
# machine, inside a private network and PID namespace, then tears it down.
#
#   bash tools/ray/cluster.sh [--cpus N] [--port P] -- COMMAND [ARGS...]
#
# The namespace has only the loopback interface, so Ray (which looks for a
# non-loopback address and would advertise it) sees 127.0.0.1 alone and no
# packet can leave the machine. Both nodes run there: the head
# (--node-ip-address=127.0.0.1, GCS on port P, default 6380, no dashboard)
# and a second raylet joining it, each with N CPUs (default 1) and its own
# ports. COMMAND runs in the namespace with RAY_ADDRESS=127.0.0.1:P and:
#   IMGSIM_RAY_NODE2_PORT  node_manager_port of the second node's raylet
#                          (tools/ray/kill_raylet.py finds its pid with it)
#   IMGSIM_RAY_TMP         the cluster's temporary folder
# Teardown always happens: `ray stop` (it only sees this PID namespace's
# processes), and the kernel ends whatever is left when the namespace's
# first process exits. Usage statistics are off (RAY_USAGE_STATS_ENABLED=0).
# The exit status is COMMAND's.
#
# Needs root (unshare) and the environment of tools/ray/setup.sh
# ($CARGO_TARGET_DIR/ray-venv, or IMGSIM_RAY_VENV).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${IMGSIM_RAY_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/ray-venv}"

if [ "${1:-}" != "--inside-namespace" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "tools/ray/cluster.sh: needs root (it makes a network namespace with unshare)" >&2
        exit 2
    fi
    if [ ! -x "$VENV/bin/ray" ]; then
        echo "tools/ray/cluster.sh: no Ray environment at $VENV; run bash tools/ray/setup.sh first" >&2
        exit 2
    fi
    # --kill-child: the namespace (and with it every Ray process) ends if
    # this script is killed.
    exec unshare --net --pid --fork --mount-proc --kill-child \
        bash "$0" --inside-namespace "$@"
fi
shift

CPUS=1
PORT=6380
while [ $# -gt 0 ]; do
    case "$1" in
        --cpus) CPUS="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "tools/ray/cluster.sh: unknown option $1 (usage: cluster.sh [--cpus N] [--port P] -- COMMAND...)" >&2; exit 2 ;;
    esac
done
if [ $# -eq 0 ]; then
    echo "tools/ray/cluster.sh: no command given (usage: cluster.sh [--cpus N] [--port P] -- COMMAND...)" >&2
    exit 2
fi

# The only interface must be loopback: refuse to start Ray anywhere else.
ifaces="$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | tr '\n' ' ')"
if [ "$ifaces" != "lo " ]; then
    echo "tools/ray/cluster.sh: the namespace has interfaces other than lo ($ifaces); not starting Ray" >&2
    exit 3
fi
ip link set lo up

export PATH="$VENV/bin:$PATH"
export RAY_USAGE_STATS_ENABLED=0
export RAY_ADDRESS="127.0.0.1:$PORT"
export IMGSIM_RAY_NODE2_PORT=$((PORT + 20))
# Short: Ray's Unix socket paths live under it (107-byte limit).
export IMGSIM_RAY_TMP="/tmp/imgsim-ray-$PORT-$$"
mkdir -p "$IMGSIM_RAY_TMP"

teardown() {
    ray stop --force >/dev/null 2>&1 || true
    rm -rf "$IMGSIM_RAY_TMP"
}
trap teardown EXIT

# Object stores kept small: two nodes share this machine's memory.
STORE=$((512 * 1024 * 1024))
echo "== ray: head node (127.0.0.1:$PORT, $CPUS CPU)"
ray start --head --node-ip-address=127.0.0.1 --port="$PORT" \
    --include-dashboard=false --num-cpus="$CPUS" --num-gpus=0 \
    --object-store-memory="$STORE" --temp-dir="$IMGSIM_RAY_TMP" \
    --node-manager-port=$((PORT + 10)) --object-manager-port=$((PORT + 11)) \
    --dashboard-agent-listen-port=$((PORT + 12)) --dashboard-agent-grpc-port=$((PORT + 13)) \
    --metrics-export-port=$((PORT + 14)) --runtime-env-agent-port=$((PORT + 15)) \
    --min-worker-port=20000 --max-worker-port=20999 \
    --disable-usage-stats >"$IMGSIM_RAY_TMP/head.log" 2>&1 \
    || { cat "$IMGSIM_RAY_TMP/head.log" >&2; exit 4; }
echo "== ray: second node ($CPUS CPU)"
ray start --address="$RAY_ADDRESS" --node-ip-address=127.0.0.1 \
    --num-cpus="$CPUS" --num-gpus=0 --object-store-memory="$STORE" \
    --node-manager-port="$IMGSIM_RAY_NODE2_PORT" --object-manager-port=$((PORT + 21)) \
    --dashboard-agent-listen-port=$((PORT + 22)) --dashboard-agent-grpc-port=$((PORT + 23)) \
    --metrics-export-port=$((PORT + 24)) --runtime-env-agent-port=$((PORT + 25)) \
    --min-worker-port=21000 --max-worker-port=21999 \
    --disable-usage-stats >"$IMGSIM_RAY_TMP/node2.log" 2>&1 \
    || { cat "$IMGSIM_RAY_TMP/node2.log" >&2; exit 4; }

# Both nodes alive before the command runs.
for _ in $(seq 60); do
    nodes="$(ray status --address="$RAY_ADDRESS" 2>/dev/null | grep -c '^ *1 node_' || true)"
    [ "$nodes" = 2 ] && break
    sleep 1
done
ray status --address="$RAY_ADDRESS" | sed -n '/Node status/,/Resources/p' | sed '/^$/d'
if [ "$nodes" != 2 ]; then
    echo "tools/ray/cluster.sh: the cluster has $nodes live node(s), not 2" >&2
    exit 4
fi

echo "== ray: running: $*"
set +e
"$@"
rc=$?
set -e
echo "== ray: command exited with $rc; stopping the cluster"
exit "$rc"
