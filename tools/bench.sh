#!/usr/bin/env bash
# Reruns every figure of PERF.md: criterion benches (short settings for shared machines),
# then reflexd's ingest against the bare recvmmsg drain with the same sender, then
# (optional) mitigation latency and peers that happen to be installed. Loopback only.
#
#   tools/bench.sh                 everything, results in target/bench-results/<date>/
#   BENCH_TIME=10 tools/bench.sh   longer criterion measurement (seconds, default 3)
#   tools/bench.sh ingest          only the ingest comparison (INGEST_REPEAT=3 flat-out pairs)
#   tools/bench.sh mitigate        only mitigation latency (needs reflexd serving OpenFlow)
#   tools/bench.sh peers           only the optional peers (pmacct, nfdump, ...) if installed
#
# Benchmarks never run in `cargo test`; this script is the only place they run.
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
measure="${BENCH_TIME:-3}"
warm="${BENCH_WARMUP:-1}"
count="${INGEST_COUNT:-2000000}"
secs="${INGEST_SECS:-20}"
paced="${INGEST_PACED_RATE:-50000}"
repeat="${INGEST_REPEAT:-3}"
[ "$repeat" -ge 1 ] 2>/dev/null || repeat=1
out="target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
summary="$out/summary.txt"

say() { echo "$*" | tee -a "$summary"; }

say "# Reflex benchmarks"
say "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "nproc:   $(nproc)"
say "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
say "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
say "kernel:  $(uname -r)"
say "rustc:   $(rustc --version)"
say ""

criterion() {
    local bench="$1"
    say "## cargo bench --bench $bench -- --warm-up-time $warm --measurement-time $measure"
    cargo bench --bench "$bench" -- --warm-up-time "$warm" --measurement-time "$measure" \
        2>&1 | tee "$out/$bench.txt" | grep -E '^[a-z_]+/|time: +\[[0-9.]+ [nµm]?s|thrpt: +\[[0-9.]+ [KMG]?elem' | tee -a "$summary"
    say ""
}

# A criterion estimate in ns, the one it prints (slope, else mean); "/" in names is "_".
median_ns() {
    jq -r '(.slope.point_estimate // .mean.point_estimate)' \
        "target/criterion/$1/new/estimates.json" 2>/dev/null || echo nan
}

ratio() {
    python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}')" \
        "$1" "$2" 2>/dev/null || echo n/a
}

if [ "$what" = all ]; then
    criterion sflow_decode
    r=$(median_ns "sflow_decode/reflex"); p=$(median_ns "sflow_decode/sflow-parser")
    f=$(median_ns "sflow_decode/reflex_full_path")
    say "ratio: sflow-parser decode / reflex decode = $(ratio "$p" "$r")x"
    say "ratio: sflow-parser decode / reflex full per-sample path = $(ratio "$p" "$f")x"
    say ""
    criterion sketch
    say "ratio: exact per-key map / sketch+top-k+threshold pipeline (Zipf, 1M keys) = $(ratio "$(median_ns flow_stats/exact_hashmap_zipf)" "$(median_ns flow_stats/zipf_1m_keys)")x"
    say ""
    criterion policy
    say "ratio: full compile / event->delta (100k hosts) = $(ratio "$(median_ns policy/full_compile_auth_normal_100k)" "$(median_ns policy/event_to_delta_100k_instances)")x"
    say ""
    criterion openflow_codec
    for m in flow_mod packet_in flow_stats_reply_400 flow_stats_1000; do
        say "ratio: openflow $m decode / encode = $(ratio "$(median_ns "openflow/${m}_decode")" "$(median_ns "openflow/${m}_encode")")x"
    done
    say ""
fi

cargo build --release --workspace --bins --quiet
bin=target/release
load="$bin/reflex-load"

. tools/bench-lib.sh

sender() { # target, rate
    "$load" sflow --target "$1" --rate "$2" --count "$count" --duration "$secs" --batch 64 \
        --json --quiet
}

ingest_drain() { # rate [batch wait µs, default 0: the bare loop] [run tag] -> line
    local p wait="${2:-0}" tag="${3:-}"; p=$(port)
    "$load" drain --listen "127.0.0.1:$p" --duration $((secs + 10)) --idle 2 \
        --batch-wait-us "$wait" --json --quiet >"$out/drain-$1-$wait$tag.json" 2>/dev/null &
    local pid=$!
    sleep 0.5
    sender "127.0.0.1:$p" "$1" >"$out/send-drain-$1-$wait$tag.json"
    wait "$pid"
    local sent got cpu
    sent=$(jq .datagrams "$out/send-drain-$1-$wait$tag.json")
    got=$(jq .datagrams "$out/drain-$1-$wait$tag.json")
    cpu=$(jq .cpu_ns_per_datagram "$out/drain-$1-$wait$tag.json")
    last_cpu=$cpu
    say "drain   rate=$1 batch_wait_us=$wait: sent $sent at $(jq -r '.datagrams_per_s|floor' "$out/send-drain-$1-$wait$tag.json")/s, received $got ($(python3 -c "print(f'{100*(1-$got/$sent):.2f}')")% loss), $(printf %.0f "$cpu") ns CPU/datagram"
}

ingest_reflexd() { # rate, workers [batch wait µs, default 100 as in reflexd] [run tag] -> line
    local p dir wait="${3:-100}" tag="${4:-}"; p=$(port); dir=$(mktemp -d)
    cat >"$dir/r.toml" <<TOML
[sflow]
listen = "127.0.0.1:$p"
workers = $2
pin = false
batch_wait_us = $wait

$(cat tools/reflex-load/ingest-flows.toml)
TOML
    REFLEX_LOG=warn "$bin/reflexd" --config "$dir/r.toml" --control "$dir/ctl.sock" \
        --state-dir "$dir/state" --openflow "127.0.0.1:$(port)" 2>"$dir/log" &
    local pid=$!
    for _ in $(seq 100); do "$bin/reflexctl" --socket "$dir/ctl.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
    local cpu0; cpu0=$(cpu_of "$pid")
    sender "127.0.0.1:$p" "$1" >"$out/send-reflexd-$1-$2-$wait$tag.json"
    local got=-1 prev=-2
    while [ "$got" != "$prev" ]; do
        prev=$got; sleep 1
        got=$("$bin/reflexctl" --socket "$dir/ctl.sock" --json stats | jq .sflow.datagrams)
    done
    local cpu1; cpu1=$(cpu_of "$pid")
    "$bin/reflexctl" --socket "$dir/ctl.sock" --json stats >"$out/reflexd-$1-$2-$wait$tag.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    local sent; sent=$(jq .datagrams "$out/send-reflexd-$1-$2-$wait$tag.json")
    local nspd; nspd=$(python3 -c "print(f'{1e9*($cpu1-$cpu0)/max($got,1):.0f}')")
    last_cpu=$nspd
    say "reflexd rate=$1 workers=$2 batch_wait_us=$wait: sent $sent at $(jq -r '.datagrams_per_s|floor' "$out/send-reflexd-$1-$2-$wait$tag.json")/s, counted $got ($(python3 -c "print(f'{100*(1-$got/$sent):.2f}')")% loss, kernel drops $(jq .sflow.kernel_drops "$out/reflexd-$1-$2-$wait$tag.json")), $nspd ns CPU/datagram (incl. the 1 s settle polls)"
}

# A peer collector fed by the same sender; received = sent - kernel socket drops.
peer_ingest() { # name rate
    local name=$1 rate=$2 p dir; p=$(port); dir=$(mktemp -d)
    case "$name" in
        sfacctd)
            printf '%s\n' "sfacctd_ip: 127.0.0.1" "sfacctd_port: $p" "sfacctd_pipe_size: 33554432" \
                "plugins: print" "aggregate: src_host" "print_refresh_time: 60" \
                "print_output: csv" "print_output_file: $dir/out.csv" "daemonize: false" \
                >"$dir/sfacctd.conf"
            sfacctd -f "$dir/sfacctd.conf" >/dev/null 2>"$dir/log" & ;;
        sfcapd) sfcapd -b 127.0.0.1 -p "$p" -w "$dir" >/dev/null 2>"$dir/log" & ;;
    esac
    local pid=$!
    sleep 1.5
    local c0 d0; c0=$(tree_cpu "$pid"); d0=$(udp_drops "$p")
    sender "127.0.0.1:$p" "$rate" >"$out/send-$name-$rate.json"
    sleep 2
    local c1 d1; c1=$(tree_cpu "$pid"); d1=$(udp_drops "$p")
    stop_tree "$pid"
    rm -rf "$dir"
    local sent got; sent=$(jq .datagrams "$out/send-$name-$rate.json"); got=$((sent - (d1 - d0)))
    say "$name rate=$rate: sent $sent at $(jq -r '.datagrams_per_s|floor' "$out/send-$name-$rate.json")/s, received $got (sent - socket drops; $(python3 -c "print(f'{100*(1-$got/$sent):.2f}')")% loss), $(python3 -c "print(f'{1e9*($c1-$c0)/max($got,1):.0f}')") ns CPU/datagram"
}

if [ "$what" = all ] || [ "$what" = ingest ]; then
    say "## ingest: the same sender (reflex-load sflow --batch 64, 7 samples/datagram, $count datagrams or ${secs}s) into the bare drain and into reflexd"
    # Flat out the ratio moves by ±15 % from run to run on a shared VM: pairs of runs,
    # alternating, and the median ratio.
    ratios=()
    for i in $(seq "$repeat"); do
        ingest_drain 0 0 "-run$i"
        d=$last_cpu
        ingest_reflexd 0 1 100 "-run$i"
        ratios+=("$(ratio "$last_cpu" "$d")")
    done
    say "ratio: reflexd / bare drain flat out, run by run: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (repeat + 1) / 2 ))p")x"
    ingest_drain "$paced"
    d=$last_cpu
    ingest_reflexd "$paced" 1
    say "ratio: reflexd / bare drain at $paced/s: $(ratio "$last_cpu" "$d")x"
    ingest_reflexd 0 2
    # The receive pause on both sides, and reflexd without it.
    ingest_drain 0 100
    ingest_reflexd 0 1 0
    say "(rate=0 is flat out; sender and receiver share the machine's $(nproc) cores)"
    say ""
fi

if [ "$what" = all ] || [ "$what" = mitigate ]; then
    say "## mitigate: reflex-load mitigate against reflexd --config tools/reflex-load/mitigate.toml"
    dir=$(mktemp -d); sp=$(port); op=$(port)
    REFLEX_LOG=warn "$bin/reflexd" --config tools/reflex-load/mitigate.toml --sflow "127.0.0.1:$sp" \
        --openflow "127.0.0.1:$op" --control "$dir/ctl.sock" --state-dir "$dir/state" 2>"$dir/log" &
    pid=$!
    for _ in $(seq 100); do "$bin/reflexctl" --socket "$dir/ctl.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
    if "$load" mitigate --controller "127.0.0.1:$op" --target "127.0.0.1:$sp" --attacks 20 \
        --connect-timeout 5 --json --quiet >"$out/mitigate.json" 2>"$out/mitigate.err"; then
        say "blocked $(jq .blocked "$out/mitigate.json")/$(jq .attacks "$out/mitigate.json");" \
            "from first attack datagram (ms): $(jq -c .from_first_ms "$out/mitigate.json");" \
            "from deciding datagram (ms): $(jq -c .from_decision_ms "$out/mitigate.json")"
    else
        say "skipped: $(tail -1 "$out/mitigate.err")"
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    say ""
fi

if [ "$what" = all ] || [ "$what" = peers ]; then
    say "## optional peers (run only when installed; none is installed by this script)"
    if command -v sfacctd >/dev/null; then
        for rate in 0 "$paced"; do peer_ingest sfacctd "$rate"; done
        say "(pmacct sfacctd 1 core process + print plugin, aggregate src_host; its socket buffer is capped at net.core.rmem_max = $(cat /proc/sys/net/core/rmem_max) bytes)"
    else
        say "pmacct (sfacctd): not installed, skipped"
    fi
    if command -v sfcapd >/dev/null; then
        for rate in 0 "$paced"; do peer_ingest sfcapd "$rate"; done
    else
        say "nfdump (sfcapd): not installed, skipped (Debian's nfdump package ships no sfcapd)"
    fi
    command -v fastnetmon >/dev/null || say "FastNetMon: not installed, skipped"
    if command -v ovs-testcontroller >/dev/null; then
        # cbench against OVS's learning-switch test controller, with the same emulator that
        # will measure reflexd's OpenFlow server.
        p=$(port); d=$(mktemp -d)
        OVS_RUNDIR="$d" ovs-testcontroller -O OpenFlow13 "ptcp:$p:127.0.0.1" >/dev/null 2>"$d/log" &
        pid=$!; sleep 0.5
        for mode in throughput latency; do
            "$load" switch --controller "127.0.0.1:$p" --mode "$mode" --duration 5 --json --quiet \
                >"$out/cbench-ovs-testcontroller-$mode.json" || true
        done
        stop_tree "$pid"; rm -rf "$d"
        t="$out/cbench-ovs-testcontroller-throughput.json"; l="$out/cbench-ovs-testcontroller-latency.json"
        say "ovs-testcontroller cbench throughput (1 switch): $(jq -r '.responses_per_s|floor' "$t") responses/s, per second $(jq -c .per_second "$t")"
        say "ovs-testcontroller cbench latency (1 switch): $(jq -r '.responses_per_s|floor' "$l") round trips/s, RTT us $(jq -c '.rtt_us|{p50,p90,p99,max}' "$l")"
        say "ratio: throughput / latency-mode rate (pipelining gain) = $(ratio "$(jq .responses_per_s "$t")" "$(jq .responses_per_s "$l")")x"
    else
        say "ovs-testcontroller: not installed, skipped"
    fi
    say "Faucet: measured by tools/bench-peers.sh cbench (installs it into a virtualenv)"
fi

say ""
say "results: $out"
