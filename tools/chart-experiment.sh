#!/usr/bin/env bash
# The chart of the classic experiment on a real Open vSwitch: h1 ping-floods h2, Reflex
# detects it from sFlow and clears h1, and the chart shows h1's packet rate over time as
# Reflex estimated it and as the switch's port counters saw it, the threshold line and
# the moment of the block.
#
#   sudo tools/chart-experiment.sh [OUT_DIR]      (default target/chart-experiment)
#
# Writes OUT_DIR/reflex.jsonl (reflexctl record), OUT_DIR/ovs.jsonl (port 1 rx counters
# via ovs-ofctl dump-ports), OUT_DIR/chart.png, and the daemon's log. Uses tools/testbed.sh
# (its settings apply: SAMPLING, POLLING, RUN_DIR, ...) and removes the testbed on exit.
# Settings: THRESHOLD=100 (frames/s), LEAD_S=3 (quiet seconds before the flood),
# FLOOD_S=8 (flood length, bounded), FLOOD_COUNT=50000 (echo requests at most),
# RECORD_S=14, OVS_INTERVAL=0.1 (port counter polls), SFLOW_PORT=6343, OF_PORT=6653, SIZE=1200x600.
#
# The victim answers every echo (no reply rate limit): the default `ddos` filter leaves
# echo replies out, so only the flooding host crosses the threshold.
#
# One Open vSwitch per machine: the script holds /tmp/reflex-e2e.lock (flock, the e2e
# suite's lock) for its whole run; LOCK_WAIT=600 seconds at most.
set -euo pipefail

LOCK_FILE=/tmp/reflex-e2e.lock
if [ -z "${REFLEX_E2E_LOCKED:-}" ]; then
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        echo "chart-experiment: waiting for $LOCK_FILE (another Open vSwitch testbed)" >&2
        flock -w "${LOCK_WAIT:-600}" 9 || { echo "chart-experiment: $LOCK_FILE still held" >&2; exit 1; }
    fi
    export REFLEX_E2E_LOCKED=1
fi

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-$ROOT/target/chart-experiment}
THRESHOLD=${THRESHOLD:-100}
LEAD_S=${LEAD_S:-3}
FLOOD_S=${FLOOD_S:-8}
FLOOD_COUNT=${FLOOD_COUNT:-50000}
SIZE=${SIZE:-1200x600}
OVS_INTERVAL=${OVS_INTERVAL:-0.1}
RECORD_S=${RECORD_S:-14}
SFLOW_PORT=${SFLOW_PORT:-6343}
OF_PORT=${OF_PORT:-6653}
export RUN_DIR=${RUN_DIR:-/tmp/reflex-chart-testbed}
export SAMPLING=${SAMPLING:-10}
export CONTROLLER=tcp:127.0.0.1:$OF_PORT SFLOW_TARGET=127.0.0.1:$SFLOW_PORT
BRIDGE=${BRIDGE:-s1}

[ "$(id -u)" = 0 ] || { echo "chart-experiment: must run as root (testbed)" >&2; exit 1; }
command -v ovs-ofctl >/dev/null || { echo "chart-experiment: apt-get install openvswitch-switch" >&2; exit 1; }

(cd "$ROOT" && cargo build --release --workspace --bins)
BIN=$ROOT/target/release
CTL=("$BIN/reflexctl" --socket "$OUT/ctl.sock")
mkdir -p "$OUT"
rm -f "$OUT/reflex.jsonl" "$OUT/ovs.jsonl" "$OUT/chart.png"

# The classic experiment (hosts start cleared) with the chosen threshold.
sed "s/^value = 100.0$/value = $THRESHOLD/" "$ROOT/examples/classic.toml" >"$OUT/reflex.toml"

REFLEXD=""
POLLER=""
cleanup() {
    [ -z "$POLLER" ] || kill "$POLLER" 2>/dev/null || true
    [ -z "$REFLEXD" ] || kill "$REFLEXD" 2>/dev/null || true
    "$HERE/testbed.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The controller first: OVS backs off 1, 2, 4, 8 s when it finds none.
"$BIN/reflexd" --config "$OUT/reflex.toml" --control "$OUT/ctl.sock" --state-dir "$OUT/state" \
    --sflow "127.0.0.1:$SFLOW_PORT" --openflow "127.0.0.1:$OF_PORT" --workers 2 \
    2>"$OUT/reflexd.log" &
REFLEXD=$!
for _ in $(seq 100); do "${CTL[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
"${CTL[@]}" ping

"$HERE/testbed.sh" up
# Hosts start cleared in the classic experiment: let them in.
for i in 1 2 3; do "${CTL[@]}" event -i "10.0.0.$i" -e auth -V authenticated; done
for _ in $(seq 100); do
    "${CTL[@]}" --json switches 2>/dev/null | grep -q dpid && break
    sleep 0.2
done
"${CTL[@]}" switches || echo "chart-experiment: no switch connected (is the OpenFlow server in this build?)" >&2
ip netns exec h1 ping -c 2 -W 1 10.0.0.2 >/dev/null && echo "h1 -> h2 works before the flood"

"${CTL[@]}" record --flow ddos --key 10.0.0.1 --out "$OUT/reflex.jsonl" \
    --duration "$RECORD_S" --interval 0.05 &
RECORDER=$!

# OVS's view: h1's port (1) rx packet counter, as a rate, every OVS_INTERVAL s.
(
    prev_t="" prev_n=""
    while kill -0 "$RECORDER" 2>/dev/null; do
        t=$(date +%s.%N)
        n=$(ovs-ofctl -O OpenFlow13 dump-ports "unix:$RUN_DIR/$BRIDGE.mgmt" 1 2>/dev/null |
            grep -o 'rx pkts=[0-9]*' | head -n1 | cut -d= -f2 || true)
        if [ -n "$n" ] && [ -n "$prev_n" ]; then
            awk -v t="$t" -v pt="$prev_t" -v n="$n" -v pn="$prev_n" \
                'BEGIN { if (t > pt) printf "{\"t\": %.3f, \"ovs_rate\": %.1f}\n", t, (n - pn) / (t - pt) }' \
                >>"$OUT/ovs.jsonl"
        fi
        [ -z "$n" ] || { prev_t=$t; prev_n=$n; }
        sleep "$OVS_INTERVAL"
    done
) &
POLLER=$!

sleep "$LEAD_S"
echo "flooding h2 from h1 for $FLOOD_S s"
ip netns exec h1 timeout $((FLOOD_S + 5)) ping -f -q -c "$FLOOD_COUNT" -w "$FLOOD_S" 10.0.0.2 || true
if ip netns exec h2 ping -c 2 -W 1 10.0.0.3 >/dev/null; then
    echo "h2 -> h3 still works after the block"
else
    echo "chart-experiment: h2 -> h3 FAILED after the block" >&2
fi
wait "$RECORDER"
wait "$POLLER" 2>/dev/null || true
POLLER=""
"${CTL[@]}" events
"${CTL[@]}" state

"$BIN/reflexctl" chart "$OUT/reflex.jsonl" "$OUT/ovs.jsonl" -o "$OUT/chart.png" --size "$SIZE" \
    --title "h1 (10.0.0.1) ping flood: Reflex estimate vs OVS port counters"
echo "chart: $OUT/chart.png"
