#!/usr/bin/env bash
# Reflex against its peers under the same load, in the same run (PERF.md, "Reflex against its peers").
# Root: installs the peers from Debian's packages when missing, and Faucet from PyPI into a
# virtualenv under target/ (pinned version, see FAUCET_VERSION). Loopback only; every load
# is bounded by count and time; every peer writes only into a temporary directory that is
# removed afterwards. Benchmarks never run in `cargo test`; this script is where they run.
#
#   sudo tools/bench-peers.sh            everything: ingest, cbench, memory
#   sudo tools/bench-peers.sh ingest     reflex-load sflow into drain, reflexd, sfacctd, fastnetmon
#   sudo tools/bench-peers.sh cbench     reflex-load switch against reflexd (learn), ovs-testcontroller, Faucet
#   sudo tools/bench-peers.sh memory     reflexd's RSS under a 10M-spoofed-source flood (and sfacctd's)
#
# Settings (environment): RATES (paced datagrams/s, default "25000 50000 100000 150000"),
# STEP_SECS (seconds per paced step, default 5), FLAT_COUNT (datagrams flat out, 1000000),
# CB_SECS (seconds per cbench run, 5), SPOOF_COUNT (datagrams of the flood, 1430000 =
# 10M samples), SPOOF_RATE (datagrams/s of the flood, 100000), RSS_CAP_KB (a peer whose
# RSS passes this is stopped, 4194304), CONTROLLERS (cbench controllers, default
# "reflexd ovs-testcontroller faucet").
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
rates="${RATES:-25000 50000 100000 150000}"
step="${STEP_SECS:-5}"
flat_count="${FLAT_COUNT:-1000000}"
cb_secs="${CB_SECS:-5}"
spoof_count="${SPOOF_COUNT:-1430000}"
spoof_rate="${SPOOF_RATE:-100000}"
rss_cap="${RSS_CAP_KB:-4194304}"
controllers="${CONTROLLERS:-reflexd ovs-testcontroller faucet}"
faucet_version=1.10.12
faucet_venv=target/faucet-venv
out="target/bench-results/peers-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
summary="$out/summary.txt"
say() { echo "$*" | tee -a "$summary"; }

[ "$(id -u)" = 0 ] || { echo "bench-peers.sh: run as root (it installs the peers with apt-get)" >&2; exit 1; }

need_pkgs=()
command -v sfacctd >/dev/null || need_pkgs+=(pmacct)
command -v fastnetmon >/dev/null || need_pkgs+=(fastnetmon)
command -v ovs-testcontroller >/dev/null || need_pkgs+=(openvswitch-testcontroller)
dpkg -s nfdump >/dev/null 2>&1 || need_pkgs+=(nfdump)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v python3 >/dev/null || need_pkgs+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# fastnetmon's package may start its service (listening on 0.0.0.0:6343 if configured);
# we run our own instance only, with its own config.
systemctl stop fastnetmon 2>/dev/null || true
# Faucet (PyPI, pinned) in a virtualenv of its own. DEBINSTALL=1: as root, faucet's setup.py
# would otherwise copy its configs into /etc/faucet and create /var/log/faucet.
if [ "$("$faucet_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("faucet"))' 2>/dev/null)" != "$faucet_version" ]; then
    python3 -m venv "$faucet_venv"
    DEBINSTALL=1 "$faucet_venv/bin/pip" install -q --disable-pip-version-check "faucet==$faucet_version" >/dev/null
fi

cargo build --release --workspace --bins --quiet
bin=target/release
load="$bin/reflex-load"

say "# Reflex against its peers (tools/bench-peers.sh $what)"
say "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "nproc:   $(nproc)"
say "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
say "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
say "kernel:  $(uname -r); net.core.rmem_max $(cat /proc/sys/net/core/rmem_max)"
say "peers:   pmacct $(dpkg-query -W -f '${Version}' pmacct 2>/dev/null), nfdump $(dpkg-query -W -f '${Version}' nfdump 2>/dev/null), fastnetmon $(dpkg-query -W -f '${Version}' fastnetmon 2>/dev/null), openvswitch-testcontroller $(dpkg-query -W -f '${Version}' openvswitch-testcontroller 2>/dev/null), faucet $("$faucet_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("faucet"), "with os-ken", m.version("os-ken"))' 2>/dev/null)"
say ""

. tools/bench-lib.sh
py() { python3 -c "$1"; }
tree_rss_kb() {
    local total=0 p r
    for p in "$1" $(descendants "$1"); do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}
wait_udp() { # port: until a socket is bound there (at most 10 s)
    local a; a=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 100); do awk -v a="$a" '$2 == a {f = 1} END {exit !f}' /proc/net/udp && return 0; sleep 0.1; done
    return 1
}
wait_tcp_listen() { # port: until 127.0.0.1:port listens (state 0A) (at most 30 s)
    local a; a=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 300); do awk -v a="$a" '$2 == a && $4 == "0A" {f = 1} END {exit !f}' /proc/net/tcp && return 0; sleep 0.1; done
    return 1
}

# ---------------------------------------------------------------- ingest
# A receiver is started on a fresh port, then the same sender runs; a line of JSON per run
# goes to $out/ingest.jsonl: receiver, rate, sent, received, kernel drops, cpu ns/datagram.
sender() { # port rate count -> sender JSON
    "$load" sflow --target "127.0.0.1:$1" --rate "$2" --count "$3" --duration $((step * 4 + 20)) \
        --batch 64 --json --quiet
}

reflexd_conf() { # sflow-port of-port dir
    cat <<TOML
[sflow]
listen = "127.0.0.1:$1"
workers = 1
pin = false

[openflow]
listen = "127.0.0.1:$2"

[state]
dir = "$3/state"

$(cat tools/reflex-load/ingest-flows.toml)
TOML
}

fastnetmon_conf() { # port dir
    sed -e "s|^sflow = .*|sflow = on|" -e "s|^sflow_port = .*|sflow_port = $1|" \
        -e "s|^sflow_host = .*|sflow_host = 127.0.0.1|" -e "s|^enable_ban = .*|enable_ban = off|" \
        -e "s|^enable_ban_ipv6 = .*|enable_ban_ipv6 = off|" \
        -e "s|^networks_list_path = .*|networks_list_path = $2/networks_list|" \
        -e "s|^white_list_path = .*|white_list_path = $2/whitelist|" \
        -e "s|^pid_path = .*|pid_path = $2/fastnetmon.pid|" \
        -e "s|^cli_stats_file_path = .*|cli_stats_file_path = $2/fastnetmon.dat|" \
        -e "s|^cli_stats_ipv6_file_path = .*|cli_stats_ipv6_file_path = $2/fastnetmon_ipv6.dat|" \
        -e "s|^enable_api = .*|enable_api = off|" \
        -e "s|^prometheus = .*|prometheus = on|" -e "s|^prometheus_port = .*|prometheus_port = $3|" \
        -e "s|^netflow = .*|netflow = off|" -e "s|^logging_level = .*|logging_level = info|" \
        /etc/fastnetmon.conf
}

# Starts receiver $1 listening on 127.0.0.1:$2 in dir $3; prints its pid.
start_receiver() {
    local name=$1 p=$2 dir=$3
    case "$name" in
        drain)
            "$load" drain --listen "127.0.0.1:$p" --duration $((step * 4 + 40)) --idle 3 --json --quiet \
                >"$dir/drain.json" 2>/dev/null & ;;
        reflexd)
            reflexd_conf "$p" "$(port)" "$dir" >"$dir/r.toml"
            REFLEX_LOG=warn "$bin/reflexd" --config "$dir/r.toml" --control "$dir/ctl.sock" \
                >/dev/null 2>"$dir/log" & ;;
        sfacctd)
            printf '%s\n' "sfacctd_ip: 127.0.0.1" "sfacctd_port: $p" "sfacctd_pipe_size: 33554432" \
                "plugins: print" "aggregate: src_host" "print_refresh_time: 60" \
                "print_output: csv" "print_output_file: $dir/out.csv" "daemonize: false" \
                "pidfile: $dir/sfacctd.pid" "logfile: $dir/sfacctd.log" >"$dir/sfacctd.conf"
            sfacctd -f "$dir/sfacctd.conf" >/dev/null 2>"$dir/log" & ;;
        fastnetmon)
            # The sender's sources (10.0.0.0 + rank) and destinations (10.200.0.0/16); a /8
            # would make fastnetmon allocate 12 GB of per-host counters.
            printf '%s\n' 10.0.0.0/16 10.200.0.0/16 >"$dir/networks_list"; : >"$dir/whitelist"
            fastnetmon_conf "$p" "$dir" "$(port)" >"$dir/fastnetmon.conf"
            grep '^prometheus_port' "$dir/fastnetmon.conf" | awk '{print $3}' >"$dir/prom_port"
            fastnetmon --configuration_file "$dir/fastnetmon.conf" --log_file "$dir/fastnetmon.log" \
                --disable_pid_logic >/dev/null 2>"$dir/log" & ;;
    esac
    echo $!
}

# fastnetmon's own count (its Prometheus endpoint): flow samples processed, divided by the
# 7 flow samples of every datagram this sender makes = datagrams; or "".
fastnetmon_count() {
    local pp; pp=$(cat "$1/prom_port")
    python3 - "$pp" <<'PY' 2>/dev/null || true
import sys, urllib.request
t = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
for line in t.splitlines():
    if line.startswith("#"):
        continue
    name = line.split()[0]
    if name == "fastnetmon_total_simple_packets_processed":
        print(round(float(line.split()[-1]) / 7)); break
PY
}

ingest_one() { # receiver rate count
    local name=$1 rate=$2 count=$3 p dir pid; p=$(port); dir=$(mktemp -d /tmp/reflex-peers.XXXXXX)
    pid=$(start_receiver "$name" "$p" "$dir")
    if ! wait_udp "$p"; then
        say "  $name: did not bind 127.0.0.1:$p ($(tail -1 "$dir/log" 2>/dev/null))"; stop_tree "$pid"; rm -rf "$dir"; return
    fi
    sleep 1
    local c0 d0 r0; c0=$(tree_cpu "$pid"); d0=$(udp_drops "$p"); r0=$(tree_rss_kb "$pid")
    sender "$p" "$rate" "$count" >"$dir/send.json"
    # Let the receiver finish its backlog: until its CPU stops moving (at most 10 s).
    local prev=-1 now; for _ in $(seq 20); do sleep 0.5; now=$(tree_cpu "$pid"); [ "$now" = "$prev" ] && break; prev=$now; done
    local c1 d1 own=""; c1=$(tree_cpu "$pid"); d1=$(udp_drops "$p")
    local rss; rss=$(tree_rss_kb "$pid")
    case "$name" in
        reflexd) own=$("$bin/reflexctl" --socket "$dir/ctl.sock" --json stats | jq .sflow.datagrams) ;;
        fastnetmon) own=$(fastnetmon_count "$dir") ;;
    esac
    if [ "$name" = drain ]; then # it stops by itself 3 s after the last datagram
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        own=$(jq .datagrams "$dir/drain.json")
    else stop_tree "$pid"; fi
    local sent rate_sent drops got; sent=$(jq .datagrams "$dir/send.json"); rate_sent=$(jq -r '.datagrams_per_s|floor' "$dir/send.json")
    drops=$((d1 - d0))
    # Received: the tool's own counter when it has one, else sent - kernel drops.
    got=${own:-$((sent - drops))}; [ "$got" = null ] && got=$((sent - drops))
    # The drain reports its own CPU from its first datagram on (getrusage).
    local cpu; if [ "$name" = drain ]; then cpu=$(jq .cpu_s "$dir/drain.json"); else cpu=$(py "print(round($c1 - $c0, 3))"); fi
    local line; line=$(jq -cn --arg n "$name" --argjson rate "$rate" --argjson sent "$sent" --argjson sr "$rate_sent" \
        --argjson got "$got" --argjson drops "$drops" --argjson cpu "$cpu" --arg own "${own:-}" --argjson rss "$rss" --argjson rss0 "$r0" \
        '{receiver:$n, rate:$rate, sent:$sent, sent_per_s:$sr, received:$got, own_counter:($own != ""), kernel_drops:$drops,
          loss_pct:(100*(1-$got/$sent)), cpu_s:$cpu, cpu_ns_per_datagram:(1e9*$cpu/([$got,1]|max)), rss_kb:$rss, rss_kb_before:$rss0}')
    echo "$line" >>"$out/ingest.jsonl"
    say "  $(echo "$line" | jq -r '"\(.receiver|.+"          "|.[0:10]) rate \(.rate) sent \(.sent) at \(.sent_per_s)/s, received \(.received)\(if .own_counter then "" else " (= sent - drops)" end), loss \(.loss_pct*100|round/100)%, kernel drops \(.kernel_drops), \(.cpu_ns_per_datagram|round) ns CPU/datagram, RSS \(.rss_kb) kB"')"
    rm -rf "$dir"
}

receivers="drain reflexd sfacctd fastnetmon"
if [ "$what" = all ] || [ "$what" = ingest ]; then
    say "## ingest: the same sender (reflex-load sflow --batch 64, 924-byte datagrams of 7 samples, 4 agents, Zipf over 10k sources) into each receiver in turn"
    say "nfdump: Debian 12's nfdump $(dpkg-query -W -f '${Version}' nfdump) ships $(dpkg -L nfdump | grep -c '/sfcapd$' || true) sfcapd binaries (only NetFlow/IPFIX nfcapd): not measurable"
    for rate in $rates; do
        say "### paced at $rate datagrams/s, $((rate * step)) datagrams"
        for r in $receivers; do ingest_one "$r" "$rate" $((rate * step)); done
    done
    say "### flat out (--rate 0), $flat_count datagrams"
    for r in $receivers; do ingest_one "$r" 0 "$flat_count"; done
    say ""
fi

# ---------------------------------------------------------------- cbench
reactive_conf() { # of-port dir
    cat <<TOML
[sflow]
listen = "127.0.0.1:$(port)"
workers = 1
pin = false

[openflow]
listen = "127.0.0.1:$1"

[state]
dir = "$2/state"

[[module]]
name = "auth"
key = "ipv4"
initial = "authenticated"
[module.states]
authenticated = "identity"
clear = "if_(match(eth_type=0x0800), drop, identity)"

[policy]
main = "auth >> learn"
TOML
}

# Faucet's config for datapaths 1..N (the emulator's dpids), ports 1-4 (its default
# --ports) untagged on VLAN 100. max_hosts 0 = no limit on the VLAN and the ports (defaults
# 256 and 255 would ban learning after that many of the emulator's 100k source MACs);
# ignore_learn_ins 0 = answer every PACKET_IN (default 10 drops about one in ten while
# learning, a load-shedding the other controllers do not do).
faucet_conf() { # switches
    printf '%s\n' "vlans:" "  bench:" "    vid: 100" "    max_hosts: 0" "dps:"
    for i in $(seq "$1"); do
        printf '%s\n' "  s$i:" "    dp_id: $i" "    hardware: \"Open vSwitch\"" "    ignore_learn_ins: 0" \
            "    interface_ranges:" "      1-4: {native_vlan: bench, max_hosts: 0}"
    done
}

cbench_one() { # controller mode switches extra-flag
    local ctl=$1 mode=$2 n=$3 flag=${4:-} p dir pid emu=""; p=$(port); dir=$(mktemp -d /tmp/reflex-peers.XXXXXX)
    case "$ctl" in
        reflexd)
            reactive_conf "$p" "$dir" >"$dir/r.toml"
            REFLEX_LOG=warn "$bin/reflexd" --config "$dir/r.toml" --control "$dir/ctl.sock" 2>"$dir/log" & ;;
        ovs-testcontroller)
            timeout $((cb_secs + 30)) ovs-testcontroller -O OpenFlow13 --unixctl="$dir/ctl" -vconsole:warn \
                "ptcp:$p:127.0.0.1" >/dev/null 2>"$dir/log" & ;;
        faucet)
            # Faucet answers only what its pipeline sends: the emulator walks it (--pipeline).
            emu=--pipeline
            faucet_conf "$n" >"$dir/faucet.yaml"
            # Our own os-ken config (faucet's default is /etc/faucet/ryu.conf), same echo settings.
            printf '%s\n' "[DEFAULT]" "echo_request_interval=3" "maximum_unreplied_echo_requests=5" >"$dir/ryu.conf"
            FAUCET_CONFIG="$dir/faucet.yaml" FAUCET_LOG="$dir/faucet.log" FAUCET_EXCEPTION_LOG="$dir/faucet_exception.log" \
                FAUCET_LOG_LEVEL=WARNING FAUCET_EVENT_SOCK=0 FAUCET_PROMETHEUS_ADDR=127.0.0.1 FAUCET_PROMETHEUS_PORT="$(port)" \
                PATH="$PWD/$faucet_venv/bin:$PATH" timeout $((cb_secs + 60)) "$faucet_venv/bin/faucet" \
                --ryu-config-file="$dir/ryu.conf" --ryu-ofp-listen-host=127.0.0.1 --ryu-ofp-tcp-listen-port="$p" \
                >/dev/null 2>"$dir/log" & ;;
    esac
    pid=$!
    if [ "$ctl" = faucet ] && ! wait_tcp_listen "$p"; then
        say "  $ctl $mode switches=$n $flag: did not listen on 127.0.0.1:$p ($(tail -1 "$dir/log" 2>/dev/null))"
        stop_tree "$pid"; rm -rf "$dir"; return
    fi
    sleep 1
    local c0; c0=$(tree_cpu "$pid")
    # shellcheck disable=SC2086
    "$load" switch --controller "127.0.0.1:$p" --mode "$mode" --switches "$n" --duration "$cb_secs" \
        $flag $emu --json --quiet >"$dir/sw.json" 2>"$dir/sw.err" || true
    local c1; c1=$(tree_cpu "$pid")
    stop_tree "$pid"
    if ! jq -e .responses "$dir/sw.json" >/dev/null 2>&1; then
        say "  $ctl $mode switches=$n $flag: failed: $(tail -1 "$dir/sw.err")"; rm -rf "$dir"; return
    fi
    local line; line=$(jq -c --arg c "$ctl" --arg f "$flag" --argjson cpu "$(py "print(round($c1 - $c0, 3))")" \
        '{controller:$c, mode, switches, buffered, pipeline, responses, measured_s, responses_per_s, cpu_s:$cpu,
          responses_per_cpu_s:(.responses/([$cpu,0.001]|max)), packet_outs:.counters.packet_outs, flow_mods:.counters.flow_mods,
          packet_ins_sent:.counters.packet_ins_sent, per_second, rtt_us, packet_in_origin, closed}' "$dir/sw.json")
    if [ "$ctl" = faucet ] && [ -s "$dir/faucet_exception.log" ]; then
        say "  faucet exception log: $(tail -1 "$dir/faucet_exception.log")"
    fi
    echo "$line" >>"$out/cbench.jsonl"
    say "  $(echo "$line" | jq -r '"\(.controller|.+"                  "|.[0:18]) \(.mode) switches=\(.switches) buffered=\(.buffered): \(.responses_per_s|round) responses/s (\(.packet_outs) packet-outs, \(.flow_mods) flow-mods), controller CPU \(.cpu_s) s = \(.responses_per_cpu_s|round) responses per CPU-second\(if .rtt_us then ", RTT p50 \(.rtt_us.p50) us p99 \(.rtt_us.p99) us" else "" end); PACKET_IN from table \(.packet_in_origin.table_id) cookie \(.packet_in_origin.cookie) reason \(.packet_in_origin.reason) vlan \(.packet_in_origin.vlan)"')"
    rm -rf "$dir"
}

if [ "$what" = all ] || [ "$what" = cbench ]; then
    say "## cbench: reflex-load switch (PACKET_IN per unique source MAC) against reflexd (auth >> learn, hosts authenticated), ovs-testcontroller -O OpenFlow13 and Faucet $faucet_version (VLAN 100 untagged on ports 1-4, emulator --pipeline), ${cb_secs}s each, back to back"
    for cfg in "throughput 1" "throughput 16" "throughput 16 --buffered" "latency 1" "latency 16"; do
        # shellcheck disable=SC2086
        set -- $cfg
        for c in $controllers; do cbench_one "$c" "$1" "$2" "${3:-}"; done
    done
    say ""
fi

# ---------------------------------------------------------------- memory
rss_run() { # receiver -> samples VmRSS every 0.5 s during the spoofed flood
    local name=$1 p dir pid; p=$(port); dir=$(mktemp -d /tmp/reflex-peers.XXXXXX)
    pid=$(start_receiver "$name" "$p" "$dir")
    wait_udp "$p" || { say "  $name did not bind"; stop_tree "$pid"; rm -rf "$dir"; return; }
    sleep 1
    local series=() t0; t0=$(date +%s.%N)
    "$load" sflow --target "127.0.0.1:$p" --rate "$spoof_rate" --count "$spoof_count" \
        --duration $((spoof_count / spoof_rate + 20)) --batch 64 --sources 10000 \
        --attack "spoofed:at=0,rate=1000000000" --json --quiet >"$dir/send.json" &
    local spid=$! capped=""
    while kill -0 "$spid" 2>/dev/null; do
        local r; r=$(tree_rss_kb "$pid")
        series+=("$(py "print(f'{$(date +%s.%N) - $t0:.1f}')"):$r")
        if [ "$r" -gt "$rss_cap" ]; then capped="stopped at RSS $r kB > cap $rss_cap kB"; kill "$spid"; break; fi
        sleep 0.5
    done
    wait "$spid" 2>/dev/null || true
    for _ in 1 2 3 4; do sleep 0.5; series+=("$(py "print(f'{$(date +%s.%N) - $t0:.1f}')"):$(tree_rss_kb "$pid")"); done
    local own=""
    [ "$name" = reflexd ] && own=$("$bin/reflexctl" --socket "$dir/ctl.sock" --json stats | jq -c '{datagrams: .sflow.datagrams, flow_samples: .sflow.flow_samples, kernel_drops: .sflow.kernel_drops}')
    stop_tree "$pid"
    local s; s=$(printf '%s\n' "${series[@]}" | awk -F: '{print $2}')
    say "  $name: spoofed samples sent $(jq .attack_samples "$dir/send.json" 2>/dev/null) in $(jq .datagrams "$dir/send.json" 2>/dev/null) datagrams at $(jq -r '.datagrams_per_s|floor' "$dir/send.json" 2>/dev/null)/s ${own:+; reflexd counted $own} ${capped:+; $capped}"
    say "  $name VmRSS kB (t s:kB): ${series[*]}"
    say "  $name VmRSS first $(echo "$s" | head -1) kB, min $(echo "$s" | sort -n | head -1), max $(echo "$s" | sort -n | tail -1), last $(echo "$s" | tail -1)"
    printf '%s\n' "${series[@]}" >"$out/rss-$name.txt"
    rm -rf "$dir"
}

if [ "$what" = all ] || [ "$what" = memory ]; then
    say "## memory: VmRSS during a flood of $spoof_count datagrams x 7 samples, each sample from a new random (spoofed) source, at $spoof_rate datagrams/s"
    for r in reflexd sfacctd; do rss_run "$r"; done
    say ""
fi

say "results: $out"
