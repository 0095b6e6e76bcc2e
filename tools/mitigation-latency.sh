#!/usr/bin/env bash
# Mitigation latency of the classic experiment on a real Open vSwitch, over repeated runs:
# for each run, h1 ping-floods h2 until Reflex (examples/classic.toml) clears h1 and the
# switch drops its traffic; the time from the flood's start to the block is measured three
# ways, at 1-in-10 and 1-in-100 sampling, and h2 <-> h3 are checked never to be blocked.
#
#   sudo tools/mitigation-latency.sh [OUT_DIR]      (default target/mitigation-latency)
#
# What is measured, per run (all on this machine's clock):
#   start      `date` inside h1's namespace just before it execs `ping -f` (the flood's first
#              request leaves within a fraction of a millisecond of it)
#   first_rx   the first flood request h2 received (tshark on h2's interface, kernel stamps)
#   flowmod    the switch's own report of the rule that drops h1: `ovs-ofctl --timestamp
#              monitor s1 watch:` (an OpenFlow flow monitor on the switch, ms stamps)
#   last_rx    the last flood request h2 received: from then on the datapath drops h1
#   block_ms = last_rx - start  (the headline: the flood no longer reaches its victim)
#   rule_ms  = flowmod - start  (the rule is in the switch's table)
# and reflexd's own percentiles (`reflexctl stats`: sample -> event, event -> flow-mods).
#
# Settings (environment): N=20 runs per sampling, SAMPLINGS="10 100", FLOOD_COUNT=20000
# echo requests at most per run, FLOOD_S=5 seconds at most per run, GAP_S=4 quiet seconds
# between runs (h1 re-admitted, then quiet: the threshold must have re-armed, see below). The threshold's re-arm `timeout` is set to 1 s (default 10 s) so runs can
# follow each other; nothing else differs from examples/classic.toml. A key re-arms only once
# its decayed rate has been below the threshold for `timeout`, re-admission or not: a flood
# started before that is not detected (a run that reports "not cleared", counted as missed). The victim answers every
# echo (no reply rate limit). Writes OUT_DIR/summary.json and per-run files.
#
# One Open vSwitch per machine: holds /tmp/reflex-e2e.lock (the e2e suite's flock) for the
# whole run, and removes the testbed on exit, failures included. REPORT_ONLY=1 rewrites the
# summary from an earlier OUT_DIR without running anything.
set -euo pipefail

LOCK_FILE=/tmp/reflex-e2e.lock
if [ -z "${REFLEX_E2E_LOCKED:-}" ] && [ -z "${REPORT_ONLY:-}" ]; then
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        echo "mitigation-latency: waiting for $LOCK_FILE (another Open vSwitch testbed)" >&2
        flock -w "${LOCK_WAIT:-600}" 9 || { echo "mitigation-latency: $LOCK_FILE still held" >&2; exit 1; }
    fi
    export REFLEX_E2E_LOCKED=1
fi

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-$ROOT/target/mitigation-latency}
N=${N:-20}
SAMPLINGS=${SAMPLINGS:-10 100}
FLOOD_COUNT=${FLOOD_COUNT:-20000}
FLOOD_S=${FLOOD_S:-5}
GAP_S=${GAP_S:-4}
SFLOW_PORT=${SFLOW_PORT:-6343}
OF_PORT=${OF_PORT:-6653}
export RUN_DIR=${RUN_DIR:-/tmp/reflex-latency-testbed}
export CONTROLLER=tcp:127.0.0.1:$OF_PORT SFLOW_TARGET=127.0.0.1:$SFLOW_PORT
unset ECHO_REPLY_LIMIT_MS
MGMT=unix:$RUN_DIR/s1.mgmt

[ "$(id -u)" = 0 ] || { echo "mitigation-latency: must run as root (testbed)" >&2; exit 1; }
for t in ovs-ofctl tshark awk; do
    command -v "$t" >/dev/null || { echo "mitigation-latency: $t not found (tools/test.sh installs it)" >&2; exit 1; }
done
[ "$N" -ge 1 ] && [ "$N" -le 200 ] || { echo "mitigation-latency: N must be 1..200" >&2; exit 1; }

BIN=$ROOT/target/release
CTL=("$BIN/reflexctl" --socket "$OUT/ctl.sock")
if [ -z "${REPORT_ONLY:-}" ]; then
(cd "$ROOT" && cargo build --release --workspace --bins)
rm -rf "$OUT"
mkdir -p "$OUT"
sed -e 's/^timeout = 10.0$/timeout = 1.0/' -e 's/^pin = true$/pin = false/' \
    "$ROOT/examples/classic.toml" >"$OUT/reflex.toml"
grep -q '^timeout = 1.0$' "$OUT/reflex.toml" || { echo "mitigation-latency: examples/classic.toml changed (threshold timeout)" >&2; exit 1; }
fi

PIDS=()
REFLEXD=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -z "$REFLEXD" ] || kill "$REFLEXD" 2>/dev/null || true
    [ -n "${REPORT_ONLY:-}" ] || "$HERE/testbed.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

now() { date +%s.%N; }

# Nearest-rank percentiles of the numbers on stdin: "n p50 p90 p99 max mean".
percentiles() {
    sort -g | awk '{ v[NR] = $1; s += $1 }
        function rank(p,   k) { k = int(p * NR + 0.999999); if (k < 1) k = 1; return v[k] }
        END { if (NR == 0) { print 0, "null", "null", "null", "null", "null"; exit }
              printf "%d %.1f %.1f %.1f %.1f %.1f\n", NR, rank(0.5), rank(0.9), rank(0.99), v[NR], s / NR }'
}

h1_forwards() {
    ovs-appctl -t "$(ls "$RUN_DIR"/ovs-vswitchd.*.ctl | head -n1)" ofproto/trace s1 \
        "in_port=1,icmp,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,icmp_type=8,icmp_code=0" |
        grep 'Datapath actions:' | grep -Eq '(^|[ ,:])[0-9]+($|,)'
}

h1_state() { "${CTL[@]}" --json state -e auth -i 10.0.0.1 | grep -o '"state": *"[a-z]*"' | grep -o '[a-z]*"$' | tr -d '"'; }

one_sampling() {
    local sampling=$1 dir=$OUT/1-in-$1
    mkdir -p "$dir"
    "$BIN/reflexd" --config "$OUT/reflex.toml" --control "$OUT/ctl.sock" --state-dir "$dir/state" \
        --sflow "127.0.0.1:$SFLOW_PORT" --openflow "127.0.0.1:$OF_PORT" --workers 2 \
        2>"$dir/reflexd.log" &
    REFLEXD=$!
    for _ in $(seq 100); do "${CTL[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
    "${CTL[@]}" ping >/dev/null
    SAMPLING=$sampling "$HERE/testbed.sh" up
    for i in 1 2 3; do "${CTL[@]}" event -i "10.0.0.$i" -e auth -V authenticated >/dev/null; done
    for _ in $(seq 100); do h1_forwards && break; sleep 0.1; done
    h1_forwards || { echo "mitigation-latency: h1 never forwarded" >&2; exit 1; }
    ip netns exec h1 ping -c 1 -W 1 10.0.0.2 >/dev/null
    ip netns exec h2 ping -c 1 -W 1 10.0.0.3 >/dev/null

    # The switch's flow table changes, as the switch reports them.
    ovs-ofctl --timestamp -O OpenFlow13 --unixctl="$RUN_DIR/ofctl-monitor.ctl" monitor "$MGMT" watch: \
        >"$dir/monitor.txt" 2>&1 &
    PIDS+=($!)
    # What reached the victim from the attacker.
    ip netns exec h2 tshark -q -n -i h2-eth0 -f "icmp and src host 10.0.0.1" \
        -a duration:$((N * (FLOOD_S + 8) + 60)) -w "$dir/h2.pcapng" 2>"$dir/tshark.err" &
    local cap=$!
    PIDS+=($cap)
    for _ in $(seq 150); do grep -q "Capturing on" "$dir/tshark.err" 2>/dev/null && break; sleep 0.1; done
    # h2 <-> h3 all along, 5/s each way.
    local secs=$((N * (FLOOD_S + 6) + 30))
    ip netns exec h2 ping -n -q -i 0.2 -W 1 -w "$secs" 10.0.0.3 >"$dir/h2-h3.txt" 2>&1 &
    local m23=$!
    ip netns exec h3 ping -n -q -i 0.2 -W 1 -w "$secs" 10.0.0.2 >"$dir/h3-h2.txt" 2>&1 &
    local m32=$!
    PIDS+=($m23 $m32)
    sleep 1

    for i in $(seq 1 "$N"); do
        "${CTL[@]}" event -i 10.0.0.1 -e auth -V authenticated >/dev/null
        for _ in $(seq 200); do h1_forwards && break; sleep 0.02; done
        sleep "$GAP_S"
        local t_auth; t_auth=$(now)
        ip netns exec h1 sh -c "date +%s.%N >'$dir/start.$i'; exec ping -f -q -n -c $FLOOD_COUNT -w $FLOOD_S 10.0.0.2" \
            >"$dir/flood.$i.txt" 2>&1 &
        local flood=$!
        local blocked=""
        for _ in $(seq $((FLOOD_S * 100))); do
            if [ "$(h1_state)" = clear ]; then blocked=1; break; fi
            sleep 0.01
        done
        # Let the rule settle, then stop the flood (its -c and -w bound it anyway).
        sleep 0.3
        kill -INT "$flood" 2>/dev/null || true
        wait "$flood" 2>/dev/null || true
        echo "$t_auth" >"$dir/armed.$i"
        if [ -n "$blocked" ]; then echo 1 >"$dir/blocked.$i"; else
            echo 0 >"$dir/blocked.$i"
            echo "run $i (1-in-$sampling): h1 was not cleared within $FLOOD_S s" >&2
        fi
        printf 'run %d (1-in-%s): %s\n' "$i" "$sampling" "$(grep -h 'packets transmitted' "$dir/flood.$i.txt" || echo '?')"
    done
    sleep 1
    "${CTL[@]}" --json stats >"$dir/stats.json"
    "${CTL[@]}" --json events -n 1000 >"$dir/events.json"
    "${CTL[@]}" --json state >"$dir/state.json" 2>/dev/null || true
    kill -INT "$m23" "$m32" 2>/dev/null || true
    wait "$m23" "$m32" 2>/dev/null || true
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    PIDS=()
    kill "$REFLEXD" 2>/dev/null || true
    wait "$REFLEXD" 2>/dev/null || true
    REFLEXD=""
    "$HERE/testbed.sh" down >/dev/null

    # Per run: the victim's first and last flood request after the start.
    tshark -n -r "$dir/h2.pcapng" -Y "icmp.type == 8" -T fields -e frame.time_epoch >"$dir/rx.txt" 2>/dev/null
    # Flow monitor: "2026-12-02 00:55:01.123: ONFST_FLOW_MONITOR reply ..." then one line per
    # change. h1's block is the rule that passed it deleted (the `ip` drop below then takes
    # its packets) or a drop for it added; keep the times of those.
    awk '/^20[0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9:.]+: / { ts = $1 " " substr($2, 1, length($2) - 1); next }
         /nw_src=10\.0\.0\.1[ ,]/ && ((/actions=drop/ && /event=(ADDED|MODIFIED)/) || /event=DELETED/) { print ts }' "$dir/monitor.txt" |
        while read -r d; do date -d "$d" +%s.%N; done >"$dir/flowmods.txt"
    : >"$dir/runs.txt"
    for i in $(seq 1 "$N"); do
        # A run whose flood was never blocked has no latency (its last request is the end).
        if [ "$(cat "$dir/blocked.$i")" != 1 ]; then echo "$i $(cat "$dir/start.$i") - - - 0" >>"$dir/runs.txt"; continue; fi
        local start; start=$(cat "$dir/start.$i")
        local next=9999999999
        [ ! -f "$dir/start.$((i + 1))" ] || next=$(cat "$dir/start.$((i + 1))")
        awk -v s="$start" -v e="$next" -v run="$i" -v fm="$dir/flowmods.txt" '
            BEGIN { while ((getline x < fm) > 0) if (x + 0 >= s - 0.001 && x + 0 < e && f == "") f = x }
            $1 + 0 >= s - 0.001 && $1 + 0 < e { if (first == "") first = $1; last = $1; n++ }
            END { printf "%d %.6f %s %s %s %d\n", run, s, (first == "" ? "-" : first), (f == "" ? "-" : f), (last == "" ? "-" : last), n }' \
            "$dir/rx.txt" >>"$dir/runs.txt"
    done
}

# REPORT_ONLY=1: only the summary, from an earlier run's OUT_DIR.
[ -n "${REPORT_ONLY:-}" ] || for s in $SAMPLINGS; do one_sampling "$s"; done

# Summary.
{
    echo "{"
    echo "  \"machine\": \"$(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\","
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"ovs\": \"$(ovs-vswitchd --version | head -n1)\","
    echo "  \"runs_per_sampling\": $N, \"flood_count_max\": $FLOOD_COUNT, \"flood_s_max\": $FLOOD_S,"
    echo "  \"samplings\": {"
    first_s=1
    for s in $SAMPLINGS; do
        dir=$OUT/1-in-$s
        [ -n "$first_s" ] || echo ","
        first_s=""
        block=$(awk '$5 != "-" { printf "%.1f\n", ($5 - $2) * 1e3 }' "$dir/runs.txt" | percentiles)
        rule=$(awk '$4 != "-" { printf "%.1f\n", ($4 - $2) * 1e3 }' "$dir/runs.txt" | percentiles)
        first=$(awk '$3 != "-" { printf "%.1f\n", ($3 - $2) * 1e3 }' "$dir/runs.txt" | percentiles)
        since_first=$(awk '$5 != "-" { printf "%.1f\n", ($5 - $3) * 1e3 }' "$dir/runs.txt" | percentiles)
        rule_first=$(awk '$4 != "-" && $3 != "-" { printf "%.1f\n", ($4 - $3) * 1e3 }' "$dir/runs.txt" | percentiles)
        sent=$( (grep -h 'packets transmitted' "$dir"/flood.*.txt || true) | awk '{ s += $1 } END { print s + 0 }')
        missing=$(awk '$4 == "-" || $5 == "-"' "$dir/runs.txt" | wc -l)
        missed=$( (grep -l '^0$' "$dir"/blocked.* 2>/dev/null || true) | wc -l)
        # The flood's own rate until the block, as the victim saw it.
        pps=$(awk '$3 != "-" && $5 != "-" && $5 > $3 { printf "%.0f\n", ($6 - 1) / ($5 - $3) }' "$dir/runs.txt" | percentiles)
        m23=$( (grep -h 'packets transmitted' "$dir/h2-h3.txt" || true) | awk '{ print $1 "/" $4 }')
        m32=$( (grep -h 'packets transmitted' "$dir/h3-h2.txt" || true) | awk '{ print $1 "/" $4 }')
        others=$( (grep -o '"key": *"10\.0\.0\.[23]"' "$dir/events.json" || true) | wc -l)
        lat=$(tr -d '\n' <"$dir/stats.json" | grep -o '"latency": *{[^}]*}' | head -n1 | sed 's/"latency": *//')
        rlat=$(tr -d '\n' <"$dir/stats.json" | grep -o '"reaction_latency": *{[^}]*}' | head -n1 | sed 's/"reaction_latency": *//')
        js() { set -- $1; echo "{\"n\": $1, \"p50\": $2, \"p90\": $3, \"p99\": $4, \"max\": $5, \"mean\": $6}"; }
        echo "    \"$s\": {"
        echo "      \"block_ms\": $(js "$block"),"
        echo "      \"rule_ms\": $(js "$rule"),"
        echo "      \"first_rx_ms\": $(js "$first"),"
        echo "      \"block_since_first_rx_ms\": $(js "$since_first"),"
        echo "      \"rule_since_first_rx_ms\": $(js "$rule_first"),"
        echo "      \"flood_pps_until_block\": $(js "$pps"),"
        echo "      \"runs_without_a_measure\": $missing,"
        echo "      \"floods_not_blocked\": $missed,"
        echo "      \"flood_requests_sent\": $sent,"
        echo "      \"h2_to_h3_received\": \"${m23:-?}\", \"h3_to_h2_received\": \"${m32:-?}\","
        echo "      \"events_for_h2_h3\": $others,"
        echo "      \"reflexd_event_latency_us\": ${lat:-null},"
        echo "      \"reflexd_reaction_latency_us\": ${rlat:-null}"
        printf "    }"
    done
    echo
    echo "  }"
    echo "}"
} >"$OUT/summary.json"

for s in $SAMPLINGS; do
    dir=$OUT/1-in-$s
    echo "== 1-in-$s: $N runs (ms from flood start; n p50 p90 p99 max mean)"
    echo "  block (last request at h2):  $(awk '$5 != "-" { printf "%.1f\n", ($5 - $2) * 1e3 }' "$dir/runs.txt" | percentiles)"
    echo "  rule in the switch (monitor): $(awk '$4 != "-" { printf "%.1f\n", ($4 - $2) * 1e3 }' "$dir/runs.txt" | percentiles)"
    echo "  flood rate until the block (pps): $(awk '$3 != "-" && $5 != "-" && $5 > $3 { printf "%.0f\n", ($6 - 1) / ($5 - $3) }' "$dir/runs.txt" | percentiles)"
    echo "  block since the first request at h2: $(awk '$5 != "-" { printf "%.1f\n", ($5 - $3) * 1e3 }' "$dir/runs.txt" | percentiles)"
    echo "  rule since the first request at h2:  $(awk '$4 != "-" && $3 != "-" { printf "%.1f\n", ($4 - $3) * 1e3 }' "$dir/runs.txt" | percentiles)"
    echo "  first request at h2:          $(awk '$3 != "-" { printf "%.1f\n", ($3 - $2) * 1e3 }' "$dir/runs.txt" | percentiles)"
    echo "  floods not blocked within FLOOD_S: $( (grep -l '^0$' "$dir"/blocked.* 2>/dev/null || true) | wc -l)"
    echo "  h2->h3 $(grep -h 'packets transmitted' "$dir/h2-h3.txt" || echo '?')"
    echo "  h3->h2 $(grep -h 'packets transmitted' "$dir/h3-h2.txt" || echo '?')"
    echo "  ddos events for h2/h3: $( (grep -o '"key": *"10\.0\.0\.[23]"' "$dir/events.json" || true) | wc -l)"
done
echo "summary: $OUT/summary.json"
