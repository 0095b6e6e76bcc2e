# Process and socket helpers shared by tools/bench.sh and tools/bench-peers.sh (sourced).

port() { echo $((20000 + RANDOM % 30000)); }

tck=$(getconf CLK_TCK)
# CPU seconds (user + system, all threads) of a process so far; 0 once it is gone.
cpu_of() { awk -v t="$tck" '{printf "%.3f\n", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }

descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }

# CPU seconds of a process and all its descendants.
tree_cpu() {
    local total=0 p
    for p in "$1" $(descendants "$1"); do
        total=$(awk -v a="$total" -v b="$(cpu_of "$p")" 'BEGIN {printf "%.3f\n", a + b}')
    done
    echo "$total"
}

# Stops a process and its descendants: TERM, then KILL after 3 s (sfacctd's core process
# can sit with SIGTERM blocked).
stop_tree() {
    local all; all="$1 $(descendants "$1")"
    kill $all 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL $all 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Kernel drops on the UDP sockets bound to 127.0.0.1:PORT (/proc/net/udp, last column).
udp_drops() {
    awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a {d += $NF} END {print d + 0}' /proc/net/udp
}
