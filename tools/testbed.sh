#!/usr/bin/env bash
# The classic experiment's testbed on a real Open vSwitch, without a kernel module:
# a private ovsdb-server + ovs-vswitchd (userspace datapath), bridge s1 in fail-mode secure
# speaking OpenFlow 1.3 to a controller, sFlow export, and hosts h1..hN in network
# namespaces joined to s1 by veth pairs. Test addresses live only inside the namespaces.
#
#   tools/testbed.sh up      start (idempotent: tears down leftovers first)
#   tools/testbed.sh down    stop and remove everything it made (idempotent)
#   tools/testbed.sh status  show the bridge, controller, sFlow and flows
#   tools/testbed.sh sflow   (re)configure sFlow with the current SAMPLING / POLLING
#   tools/testbed.sh reconnect   make the switch reconnect to the controller at once
#   tools/testbed.sh restart     restart ovs-vswitchd (its flow table is lost, as in a reboot)
#
# Settings (environment):
#   RUN_DIR=/tmp/reflex-testbed  HOSTS=3  SAMPLING=10  POLLING=20  HEADER=128
#   CONTROLLER=tcp:127.0.0.1:6653  SFLOW_TARGET=127.0.0.1:6343  DPID=0000000000000001
#   BRIDGE=s1  NO_SFLOW=1 (skip sFlow)  NO_CONTROLLER=1 (fail-mode standalone: a learning
#   switch with no controller)
#   ECHO_REPLY_LIMIT_MS=0  when > 0, hosts answer echo requests at most once per that many ms
#   per peer (burst 6): a flooded victim then stays below a flood threshold keyed by ipsource,
#   where otherwise its replies cross it as fast as the attacker's requests
set -euo pipefail

RUN_DIR=${RUN_DIR:-/tmp/reflex-testbed}
HOSTS=${HOSTS:-3}
SAMPLING=${SAMPLING:-10}
POLLING=${POLLING:-20}
HEADER=${HEADER:-128}
CONTROLLER=${CONTROLLER:-tcp:127.0.0.1:6653}
SFLOW_TARGET=${SFLOW_TARGET:-127.0.0.1:6343}
DPID=${DPID:-0000000000000001}
BRIDGE=${BRIDGE:-s1}

export OVS_RUNDIR=$RUN_DIR OVS_DBDIR=$RUN_DIR OVS_LOGDIR=$RUN_DIR
DB_SOCK=$RUN_DIR/db.sock
VSCTL=(ovs-vsctl --db="unix:$DB_SOCK" --timeout=10)

die() { echo "testbed: $*" >&2; exit 1; }

need() {
    [ "$(id -u)" = 0 ] || die "must run as root (namespaces, veth pairs, Open vSwitch)"
    for t in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ip; do
        command -v "$t" >/dev/null || die "$t not found: apt-get install openvswitch-switch iproute2"
    done
}

vswitchd_ctl() { ls "$RUN_DIR"/ovs-vswitchd.*.ctl 2>/dev/null | head -n1; }

down() {
    for i in $(seq 1 "$HOSTS"); do
        ip netns del "h$i" 2>/dev/null || true
        ip link del "$BRIDGE-eth$i" 2>/dev/null || true
    done
    local ctl; ctl=$(vswitchd_ctl || true)
    if [ -n "$ctl" ]; then
        timeout 10 ovs-appctl -t "$ctl" exit --cleanup 2>/dev/null || true
    fi
    for p in ovs-vswitchd ovsdb-server; do
        if [ -f "$RUN_DIR/$p.pid" ]; then
            kill "$(cat "$RUN_DIR/$p.pid")" 2>/dev/null || true
        fi
    done
    sleep 0.2
    for p in ovs-vswitchd ovsdb-server; do
        if [ -f "$RUN_DIR/$p.pid" ]; then
            kill -9 "$(cat "$RUN_DIR/$p.pid")" 2>/dev/null || true
        fi
    done
    # A crashed vswitchd leaves its datapath taps behind.
    ip link del "$BRIDGE" 2>/dev/null || true
    ip link del ovs-netdev 2>/dev/null || true
    rm -rf "$RUN_DIR"
}

set_sflow() {
    "${VSCTL[@]}" -- --if-exists clear bridge "$BRIDGE" sflow
    if [ -z "${NO_SFLOW:-}" ]; then
        "${VSCTL[@]}" -- --id=@s create sflow agent=lo target="\"$SFLOW_TARGET\"" \
            sampling="$SAMPLING" polling="$POLLING" header="$HEADER" \
            -- set bridge "$BRIDGE" sflow=@s >/dev/null
    fi
}

up() {
    need
    down
    mkdir -p "$RUN_DIR"
    ovsdb-tool create "$RUN_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server "$RUN_DIR/conf.db" --remote="punix:$DB_SOCK" --pidfile="$RUN_DIR/ovsdb-server.pid" \
        --detach --log-file="$RUN_DIR/ovsdb-server.log" --unixctl="$RUN_DIR/ovsdb-server.ctl" 2>/dev/null
    "${VSCTL[@]}" --no-wait init
    ovs-vswitchd "unix:$DB_SOCK" --pidfile="$RUN_DIR/ovs-vswitchd.pid" --detach \
        --log-file="$RUN_DIR/ovs-vswitchd.log" 2>/dev/null
    # In fail-mode secure an empty table drops everything: without a controller the bridge
    # must be standalone to forward.
    local fail_mode=secure
    [ -z "${NO_CONTROLLER:-}" ] || fail_mode=standalone
    "${VSCTL[@]}" add-br "$BRIDGE" -- set bridge "$BRIDGE" datapath_type=netdev \
        protocols=OpenFlow13 fail-mode="$fail_mode" other-config:datapath-id="$DPID" \
        other-config:disable-in-band=true
    for i in $(seq 1 "$HOSTS"); do
        local ns="h$i" host_if="h$i-eth0" sw_if="$BRIDGE-eth$i"
        ip netns add "$ns"
        ip link add "$sw_if" type veth peer name "$host_if" netns "$ns"
        # No IPv6 on either end: no ND/MLD in the bridge, the flow tables or sFlow.
        sysctl -qw "net.ipv6.conf.$sw_if.disable_ipv6=1" 2>/dev/null || true
        ip link set "$sw_if" up
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
        ip netns exec "$ns" ip link set lo up
        if [ "${ECHO_REPLY_LIMIT_MS:-0}" != 0 ]; then
            # 6168 is the default mask; +1 adds echo reply (type 0).
            ip netns exec "$ns" sysctl -qw net.ipv4.icmp_ratemask=6169 \
                net.ipv4.icmp_ratelimit="$ECHO_REPLY_LIMIT_MS"
        fi
        ip netns exec "$ns" ip link set "$host_if" address "$(printf '00:00:00:00:00:%02x' "$i")"
        ip netns exec "$ns" ip addr add "10.0.0.$i/24" dev "$host_if"
        ip netns exec "$ns" ip link set "$host_if" up
        # The userspace datapath drops partially checksummed TCP/UDP.
        ip netns exec "$ns" ethtool -K "$host_if" tx off >/dev/null 2>&1 || true
        "${VSCTL[@]}" add-port "$BRIDGE" "$sw_if" -- set interface "$sw_if" ofport_request="$i"
    done
    set_sflow
    if [ -z "${NO_CONTROLLER:-}" ]; then
        "${VSCTL[@]}" set-controller "$BRIDGE" "$CONTROLLER" \
            -- set controller "$BRIDGE" connection-mode=out-of-band
    fi
    local ctl_text=$CONTROLLER sflow_text="1-in-$SAMPLING to $SFLOW_TARGET"
    [ -z "${NO_CONTROLLER:-}" ] || ctl_text=none
    [ -z "${NO_SFLOW:-}" ] || sflow_text=off
    echo "testbed up: bridge $BRIDGE (dpid $DPID), hosts h1..h$HOSTS = 10.0.0.1..$HOSTS," \
        "controller $ctl_text, sFlow $sflow_text; run dir $RUN_DIR"
}

reconnect() {
    # A new target makes the switch connect at once (same target: it keeps its backoff).
    # Never through "no controller": OVS flushes the flow table when a bridge loses its
    # last controller, so del-controller + set-controller would wipe the installed rules.
    local placeholder=tcp:127.0.0.1:9
    [ "$CONTROLLER" != "$placeholder" ] || placeholder=tcp:127.0.0.1:7
    "${VSCTL[@]}" set-controller "$BRIDGE" "$placeholder" \
        -- set controller "$BRIDGE" connection-mode=out-of-band
    "${VSCTL[@]}" set-controller "$BRIDGE" "$CONTROLLER" \
        -- set controller "$BRIDGE" connection-mode=out-of-band
}

start_vswitchd() {
    ovs-vswitchd "unix:$DB_SOCK" --pidfile="$RUN_DIR/ovs-vswitchd.pid" --detach \
        --log-file="$RUN_DIR/ovs-vswitchd.log" 2>/dev/null
}

restart() {
    need
    local ctl pid=""; ctl=$(vswitchd_ctl || true)
    [ -f "$RUN_DIR/ovs-vswitchd.pid" ] && pid=$(cat "$RUN_DIR/ovs-vswitchd.pid")
    [ -n "$ctl" ] && { timeout 10 ovs-appctl -t "$ctl" exit --cleanup || true; }
    # `exit` returns before the daemon is gone, and a second one refuses to start.
    if [ -n "$pid" ]; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/ovs-vswitchd.pid" "$RUN_DIR"/ovs-vswitchd.*.ctl
    start_vswitchd
    # A write without --no-wait returns once vswitchd has applied the database.
    "${VSCTL[@]}" set bridge "$BRIDGE" other-config:restarts="$(date +%s%N)"
}

status() {
    "${VSCTL[@]}" show
    ovs-ofctl -O OpenFlow13 dump-flows "unix:$RUN_DIR/$BRIDGE.mgmt" 2>/dev/null || true
}

case "${1:-}" in
    up) up ;;
    down) need; down; echo "testbed down" ;;
    status) status ;;
    sflow) set_sflow ;;
    reconnect) reconnect ;;
    restart) restart ;;
    *) echo "usage: $0 up|down|status|sflow|reconnect|restart" >&2; exit 2 ;;
esac
