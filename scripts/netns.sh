#!/usr/bin/env bash
# Three network namespaces for Arbor's client/server tests (root only):
#
#   arbor-cli  cli0 10.231.1.2 ──veth── 10.231.1.1 mid-cli  arbor-mid  mid-srv 10.231.2.1 ──veth── 10.231.2.2 srv0  arbor-srv
#
# arbor-mid forwards between the two links (cli and srv have default routes through it), so a
# client in arbor-cli reaches a server in arbor-srv directly at 10.231.2.2, or through a relay
# listening in arbor-mid at 10.231.1.1. Each namespace has lo up. Devices exist only inside the
# namespaces; nothing is added to the host's namespace.
#
# Rate: tc tbf at RATE on the egress of cli0 and srv0 (both directions of the path).
# Delay: this script first tries a `netem` qdisc on a throwaway namespace. If netem works it
#   puts `netem delay DELAY_MS/2` on the egress of mid-cli and mid-srv (round trip + DELAY_MS),
#   "netem mode"; otherwise no delay is added here and the caller runs scripts/delay_relay.py in
#   arbor-mid, "relay mode" (this kernel: no netem). `up` prints the mode it uses.
#
#   scripts/netns.sh up                 (re)create everything; tears down what it made on failure
#   scripts/netns.sh down               delete the namespaces (missing ones are ignored); processes
#                                       still running inside them are sent SIGTERM, then SIGKILL
#   scripts/netns.sh mode               print "netem" or "relay" (of the live setup, else the probe)
#   scripts/netns.sh set-delay MS       netem mode only: change the added round-trip delay
#   scripts/netns.sh status             namespaces, addresses, qdiscs
#   scripts/netns.sh exec cli|mid|srv CMD [ARG...]
#
# Environment:
#   RATE=20mbit        tbf rate (tc syntax); 0 or none = no rate limit
#   BURST=32kb         tbf bucket size;  TBF_LATENCY=100ms  tbf queue limit as latency
#   DELAY_MS=0         netem mode: added round-trip delay applied by `up`
#   NETNS_MODE=auto    auto | relay (never use netem) | netem (fail if netem is missing)
#   NETNS_PREFIX=arbor namespace names are PREFIX-cli, PREFIX-mid, PREFIX-srv
set -Eeuo pipefail

PREFIX=${NETNS_PREFIX:-arbor}
CLI=$PREFIX-cli MID=$PREFIX-mid SRV=$PREFIX-srv
RATE=${RATE:-20mbit}
BURST=${BURST:-32kb}
TBF_LATENCY=${TBF_LATENCY:-100ms}
DELAY_MS=${DELAY_MS:-0}
NETNS_MODE=${NETNS_MODE:-auto}

log() { echo "netns: $*" >&2; }
die() { log "error: $*"; exit 1; }

ns_exists() { [ -e "/run/netns/$1" ]; }

# netem works here? Try it on lo of a throwaway namespace (never on a host device).
probe_netem() {
    local probe=$PREFIX-probe-$$ ok=1
    ip netns add "$probe" 2>/dev/null || return 1
    ip -n "$probe" link set lo up 2>/dev/null &&
        ip netns exec "$probe" tc qdisc add dev lo root netem delay 1ms 2>/dev/null && ok=0
    ip netns del "$probe" 2>/dev/null || true
    return $ok
}

choose_mode() {
    case $NETNS_MODE in
        relay) echo relay ;;
        netem) probe_netem || die "NETNS_MODE=netem but the netem qdisc is unavailable"; echo netem ;;
        auto) if probe_netem; then echo netem; else echo relay; fi ;;
        *) die "NETNS_MODE must be auto, relay or netem (got '$NETNS_MODE')" ;;
    esac
}

half_ms() { awk -v d="$1" 'BEGIN { if (d !~ /^[0-9]+(\.[0-9]+)?$/) exit 1; printf "%gms", d / 2 }'; }

set_delay() {
    local half
    half=$(half_ms "$1") || die "delay must be a number of milliseconds (got '$1')"
    ip -n "$MID" link show mid-cli >/dev/null 2>&1 || die "namespaces are not up"
    ip netns exec "$MID" tc qdisc replace dev mid-cli root netem delay "$half"
    ip netns exec "$MID" tc qdisc replace dev mid-srv root netem delay "$half"
}

live_mode() {
    ip netns exec "$MID" tc qdisc show dev mid-cli 2>/dev/null | grep -q netem && echo netem || echo relay
}

# A TCP connect from namespace $1 to $2 port 9 is answered (refused or accepted) within 3 s.
reachable() {
    local err
    err=$(ip netns exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1) && return 0
    case $err in *refused*) return 0 ;; *) return 1 ;; esac
}

cmd_down() {
    local ns pids
    for ns in "$CLI" "$MID" "$SRV"; do
        ns_exists "$ns" || continue
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        if [ -n "${pids// /}" ]; then
            log "stopping processes left in $ns: $pids"
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
                sleep 0.2
            done
            pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
            # shellcheck disable=SC2086
            [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

cmd_up() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    command -v ip >/dev/null && command -v tc >/dev/null || die "needs ip and tc (iproute2)"
    local mode
    mode=$(choose_mode)
    [ "$mode" = relay ] || half_ms "$DELAY_MS" >/dev/null || die "DELAY_MS must be a number (got '$DELAY_MS')"
    cmd_down
    trap 'log "setup failed at line $LINENO; tearing down"; trap - ERR; cmd_down; exit 1' ERR

    ip netns add "$CLI"
    ip netns add "$MID"
    ip netns add "$SRV"
    for ns in "$CLI" "$MID" "$SRV"; do ip -n "$ns" link set lo up; done

    # Created directly inside the namespaces: no name can clash with a host device.
    ip link add cli0 netns "$CLI" type veth peer name mid-cli netns "$MID"
    ip link add srv0 netns "$SRV" type veth peer name mid-srv netns "$MID"

    ip -n "$CLI" addr add 10.231.1.2/24 dev cli0
    ip -n "$MID" addr add 10.231.1.1/24 dev mid-cli
    ip -n "$MID" addr add 10.231.2.1/24 dev mid-srv
    ip -n "$SRV" addr add 10.231.2.2/24 dev srv0
    ip -n "$CLI" link set cli0 up
    ip -n "$MID" link set mid-cli up
    ip -n "$MID" link set mid-srv up
    ip -n "$SRV" link set srv0 up
    ip -n "$CLI" route add default via 10.231.1.1
    ip -n "$SRV" route add default via 10.231.2.1
    ip netns exec "$MID" sysctl -qw net.ipv4.ip_forward=1

    if [ "$RATE" != 0 ] && [ "$RATE" != none ]; then
        ip netns exec "$CLI" tc qdisc replace dev cli0 root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY"
        ip netns exec "$SRV" tc qdisc replace dev srv0 root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY"
    fi
    if [ "$mode" = netem ]; then
        set_delay "$DELAY_MS"
    fi

    # cli reaches srv through mid: a TCP connect to a closed port must be refused (not time out).
    reachable "$CLI" 10.231.2.2 || { log "$CLI cannot reach 10.231.2.2"; false; }
    trap - ERR

    if [ "$mode" = netem ]; then
        echo "netns: up, mode netem (delay ${DELAY_MS} ms round trip on $MID), rate ${RATE}"
    else
        echo "netns: up, mode relay (no netem qdisc; run scripts/delay_relay.py in $MID for delay), rate ${RATE}"
    fi
}

cmd_status() {
    local ns
    for ns in "$CLI" "$MID" "$SRV"; do
        if ! ns_exists "$ns"; then echo "$ns: absent"; continue; fi
        echo "== $ns (pids: $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' '))"
        ip -n "$ns" -br addr
        ip netns exec "$ns" tc qdisc show | grep -v 'dev lo ' || true
    done
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    mode) if ns_exists "$MID"; then live_mode; else choose_mode; fi ;;
    set-delay)
        [ $# -eq 2 ] || die "usage: $0 set-delay MS"
        [ "$(live_mode)" = netem ] || die "set-delay needs netem mode (relay mode: pass --delay-ms to the relay)"
        set_delay "$2" ;;
    status) cmd_status ;;
    exec)
        [ $# -ge 3 ] || die "usage: $0 exec cli|mid|srv CMD [ARG...]"
        case $2 in cli | mid | srv) ns=$PREFIX-$2 ;; "$CLI" | "$MID" | "$SRV") ns=$2 ;; *) die "unknown namespace '$2'" ;; esac
        shift 2
        exec ip netns exec "$ns" "$@" ;;
    *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
