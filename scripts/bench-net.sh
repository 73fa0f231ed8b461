#!/usr/bin/env bash
# Network benchmark (issue 8): TCP throughput of Debian's riscv64 Linux guests (our busybox
# initramfs, kernel command line tessera.steps=net: busybox nc sends MIB MiB), measured by the
# sender between its TESSERA-NET-SEND-BEGIN and -END markers (guest time), in the same run:
#
#  guest -> guest over a stream socket (QEMU's -netdev stream framing):
#    Tessera: two `tessera run` machines, each a tessera-net with a stream backend;
#    QEMU:    two qemu-system-riscv64 with -netdev stream (server=on / server=off).
#  guest -> host over a tap in a network namespace of this script (a python3 receiver on
#  10.0.2.2:5000 inside it):
#    Tessera: tessera-cpu with tessera-net --backend tap (vhost-user, offloads via vnet header);
#    QEMU:    qemu-system-riscv64 -netdev tap (its in-process virtio-net).
#
# Usage: scripts/bench-net.sh [--runs N] [--mib N] [--quick] [--markdown FILE]
#   --runs N   runs per configuration (default 3; 1 with --quick)
#   --mib N    MiB per transfer (default 64; 16 with --quick)
# Environment: QEMU (default qemu-system-riscv64), TIMEOUT per machine in seconds (default 400),
#   CARGO_TARGET_DIR, TESSERA_GUEST_DIR.
# Needs root (network namespace, tap) and python3. Exit status: 0 when every run measured; 1
# when one did not (with its log's tail); 2 usage; 3 something outside the project is missing.
# Timing is reported, never asserted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
runs=""
mib=""
quick=0
markdown=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --runs=*) runs=${1#--runs=}; shift ;;
        --mib) mib=$2; shift 2 ;;
        --mib=*) mib=${1#--mib=}; shift ;;
        --quick) quick=1; shift ;;
        --markdown) markdown=$2; shift 2 ;;
        --markdown=*) markdown=${1#--markdown=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$runs" ] || { [ "$quick" = 1 ] && runs=1 || runs=3; }
[ -n "$mib" ] || { [ "$quick" = 1 ] && mib=16 || mib=64; }
for v in "$runs" "$mib"; do
    case "$v" in ''|*[!0-9]*|0) echo "--runs and --mib need positive integers" >&2; exit 2 ;; esac
done
QEMU=${QEMU:-qemu-system-riscv64}
TIMEOUT=${TIMEOUT:-400}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KIT=${TESSERA_GUEST_DIR:-$ROOT/target/guests/linux-riscv64}
command -v "$QEMU" >/dev/null || { echo "$QEMU not found (Debian package qemu-system-riscv)" >&2; exit 3; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "bench-net.sh needs root (network namespace, tap)" >&2; exit 3; }
[ -e /dev/net/tun ] || { echo "no /dev/net/tun" >&2; exit 3; }

echo "== guest kit" >&2
rc=0
TESSERA_GUEST_DIR=$KIT "$ROOT/scripts/fetch-linux-guest.sh" >&2 || rc=$?
[ "$rc" = 0 ] || exit "$rc"
WORK=$TARGET/bench-net
LOGS=$WORK/logs
mkdir -p "$LOGS"
sh "$ROOT/tests/guests/linux/build-initramfs.sh" "$KIT" "$WORK/initramfs.cpio" >&2
echo "== building tessera, tessera-cpu, tessera-net (release)" >&2
(cd "$ROOT" && cargo build --release -p tessera -p tessera-cpu -p tessera-net) >&2
BIN=$TARGET/release

NS=tessera-bench-net-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns delete "$NS" 2>/dev/null || true
}
trap cleanup EXIT

CMD="console=ttyS0 earlycon=sbi panic=-1 tessera.steps=net tessera.net_mib=$mib"
SEND="tessera.net_role=send"
RECV="tessera.net_role=recv"

# rate LOG: MB/s from the sender's markers in LOG ("-" if missing).
rate() {
    awk -v mib="$mib" '
        /^TESSERA-NET-SEND-BEGIN/ { split($2, a, "="); b = a[2] + 0 }
        /^TESSERA-NET-SEND-END/ { split($2, a, "="); e = a[2] + 0 }
        END { if (b == "" || e == "" || e <= b) print "-"; else printf "%.1f\n", mib * 1.048576 / (e - b) }' "$1"
}

fail_log() {
    { echo "FAIL: $1; log $2"; tail -n 15 "$2" | sed 's/^/    /'; } >&2
}

describe() { # NAME LINK MAC CMDLINE
    cat >"$WORK/$1.toml" <<EOF
[machine]
name = "$1"
ram = "512M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 2
firmware = "$KIT/fw_dynamic.bin"
kernel = "$KIT/Image"
initrd = "$WORK/initramfs.cpio"
cmdline = "$4"

[[device]]
id = "net0"
kind = "virtio-net"
backend = "$2"
mac = "$3"
EOF
    echo "$WORK/$1.toml"
}

pair_tessera() { # LOG_PREFIX
    local sock=$WORK/link.sock
    rm -f "$sock"
    local r s
    r=$(describe recv "stream:listen:$sock" 52:54:00:00:00:01 "$CMD tessera.net_ip=10.0.3.1/24 tessera.net_peer=10.0.3.2 $RECV")
    s=$(describe send "stream:connect:$sock" 52:54:00:00:00:02 "$CMD tessera.net_ip=10.0.3.2/24 tessera.net_peer=10.0.3.1 $SEND")
    timeout "$TIMEOUT" "$BIN/tessera" run "$r" --runtime-dir "$WORK/run-r" </dev/null >"$1-recv.log" 2>&1 &
    local rp=$!
    timeout "$TIMEOUT" "$BIN/tessera" run "$s" --runtime-dir "$WORK/run-s" </dev/null >"$1-send.log" 2>&1 || true
    wait "$rp" || true
}

pair_qemu() { # LOG_PREFIX
    local sock=$WORK/qlink.sock
    rm -f "$sock"
    local common=(-machine virt -smp 2 -m 512M -display none -monitor none -serial stdio -no-reboot
        -bios "$KIT/fw_dynamic.bin" -kernel "$KIT/Image" -initrd "$WORK/initramfs.cpio")
    timeout "$TIMEOUT" "$QEMU" "${common[@]}" \
        -append "$CMD tessera.net_ip=10.0.3.1/24 tessera.net_peer=10.0.3.2 $RECV" \
        -netdev "stream,id=n0,server=on,addr.type=unix,addr.path=$sock" \
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01 </dev/null >"$1-recv.log" 2>&1 &
    local rp=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    timeout "$TIMEOUT" "$QEMU" "${common[@]}" \
        -append "$CMD tessera.net_ip=10.0.3.2/24 tessera.net_peer=10.0.3.1 $SEND" \
        -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$sock" \
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02 </dev/null >"$1-send.log" 2>&1 || true
    wait "$rp" || true
}

# The host end of the tap runs: a python3 receiver on 10.0.2.2:5000 that reads to EOF.
RECEIVER='import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.2.2", 5000)); s.listen(1)
c, _ = s.accept()
n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
print(n)'

host_tap() { # LOG_PREFIX EMU TAPNAME
    ip netns add "$NS" 2>/dev/null || true
    ip -n "$NS" link set lo up
    local gcmd="$CMD tessera.net_ip=10.0.2.15/24 tessera.net_peer=10.0.2.2 $SEND"
    local sock=$WORK/tap.sock
    rm -f "$sock"
    if [ "$2" = tessera ]; then
        ip netns exec "$NS" "$BIN/tessera-net" --socket "$sock" --backend "tap:$3" </dev/null >"$1-net.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 100); do [ -S "$sock" ] && ip -n "$NS" link show "$3" >/dev/null 2>&1 && break; sleep 0.1; done
    else
        ip -n "$NS" tuntap add dev "$3" mode tap vnet_hdr
    fi
    ip -n "$NS" addr add 10.0.2.2/24 dev "$3"
    ip -n "$NS" link set "$3" up
    ip netns exec "$NS" python3 -c "$RECEIVER" >"$1-host.txt" 2>&1 &
    local hp=$!
    pids+=($hp)
    sleep 0.3
    if [ "$2" = tessera ]; then
        timeout "$TIMEOUT" "$BIN/tessera-cpu" --harts 2 --ram 512M --serial stdio \
            --bios "$KIT/fw_dynamic.bin" --kernel "$KIT/Image" --initrd "$WORK/initramfs.cpio" \
            --append "$gcmd" --vhost-user "net,socket=$sock" </dev/null >"$1-send.log" 2>&1 || true
    else
        timeout "$TIMEOUT" ip netns exec "$NS" "$QEMU" -machine virt -smp 2 -m 512M -display none \
            -monitor none -serial stdio -no-reboot -bios "$KIT/fw_dynamic.bin" -kernel "$KIT/Image" \
            -initrd "$WORK/initramfs.cpio" -append "$gcmd" \
            -netdev "tap,id=n0,ifname=$3,script=no,downscript=no" \
            -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:03 </dev/null >"$1-send.log" 2>&1 || true
    fi
    wait "$hp" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
    ip netns delete "$NS" 2>/dev/null || true
}

failed=0
declare -A vals
for i in $(seq 1 "$runs"); do
    for cfg in pair-qemu pair-tessera tap-qemu tap-tessera; do
        echo "== run $i/$runs: $cfg" >&2
        log=$LOGS/$cfg-$i
        case $cfg in
            pair-qemu) pair_qemu "$log" ;;
            pair-tessera) pair_tessera "$log" ;;
            tap-qemu) host_tap "$log" qemu tapq ;;
            tap-tessera) host_tap "$log" tessera tapt ;;
        esac
        r=$(rate "$log-send.log")
        if [ "$r" = - ]; then
            fail_log "$cfg" "$log-send.log"
            failed=1
        else
            echo "   $r MB/s" >&2
            vals[$cfg]+=" $r"
        fi
    done
done

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v t="$1" -v q="$2" 'BEGIN { if (t == "-" || q == "-" || q == 0) print "-"; else printf "%.2fx", t / q }'; }
m() { echo "${vals[$1]:-}" | median; }
table() {
    echo "| TCP, busybox nc, ${mib} MiB, Linux guests, 2 harts | QEMU (in-process virtio-net) | Tessera (tessera-net, vhost-user) | Tessera/QEMU |"
    echo "|---|---:|---:|---:|"
    echo "| guest -> guest over a stream socket, MB/s | $(m pair-qemu) | $(m pair-tessera) | $(ratio "$(m pair-tessera)" "$(m pair-qemu)") |"
    echo "| guest -> host over a tap, MB/s | $(m tap-qemu) | $(m tap-tessera) | $(ratio "$(m tap-tessera)" "$(m tap-qemu)") |"
    echo
    echo "Medians of $runs run(s) each, alternating, on $(nproc) host CPUs; $("$QEMU" --version | head -1)."
}
table
[ -z "$markdown" ] || table >"$markdown"
exit "$failed"
