#!/usr/bin/env bash
# Block read throughput from a guest (tests/guests/virtio/blk_bench.c: sequential 64 KiB reads
# over a 64 MiB disk, then 20000 random 4 KiB reads; queue depth 1, polled), three ways in the
# same run:
#   tessera   tessera-cpu + tessera-blk (vhost-user)
#   qemu-vu   qemu-system-riscv64 + tessera-blk (vhost-user, memfd RAM)
#   qemu      qemu-system-riscv64 with its in-process virtio-blk
# Prints the median of --runs N (default 3) per configuration and the ratios. The guest measures
# each phase with mtime (10 MHz, the host clock on both emulators). Timing is reported, never
# asserted. Usage: scripts/bench-blk.sh [--runs N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
runs=3
[ "${1:-}" = "--runs" ] && runs=$2
case "$runs" in ''|*[!0-9]*|0) echo "--runs needs a positive integer" >&2; exit 2 ;; esac
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -p tessera-cpu -p tessera-blk) >&2
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
sh "$ROOT/tests/guests/virtio/build.sh" "$WORK/guests" >&2
ELF=$WORK/guests/blk_bench.elf
IMG=$WORK/disk.img
head -c $((64 << 20)) /dev/urandom > "$IMG"
QEMU=${QEMU:-qemu-system-riscv64}

start_blk() { # socket
    rm -f "$1"
    "$TARGET/release/tessera-blk" --socket "$1" --image "$IMG" >/dev/null 2>&1 &
    for _ in $(seq 200); do [ -S "$1" ] && return; sleep 0.02; done
    echo "tessera-blk did not start" >&2; exit 1
}
run_one() { # config -> "seq_bytes seq_ticks rand_reads rand_ticks"
    local out sock=$WORK/blk.sock
    case "$1" in
        tessera)
            start_blk "$sock"
            out=$(timeout 300 "$TARGET/release/tessera-cpu" --bios none --kernel "$ELF" --vhost-user "blk,socket=$sock" </dev/null) ;;
        qemu-vu)
            start_blk "$sock"
            out=$(timeout 300 "$QEMU" -M virt,memory-backend=mem -object memory-backend-memfd,id=mem,size=256M,share=on \
                -m 256M -smp 1 -bios none -nographic -monitor none -serial stdio \
                -global virtio-mmio.force-legacy=false -chardev "socket,id=c,path=$sock" \
                -device vhost-user-blk,chardev=c -kernel "$ELF" </dev/null) ;;
        qemu)
            out=$(timeout 300 "$QEMU" -M virt -m 256M -smp 1 -bios none -nographic -monitor none -serial stdio \
                -global virtio-mmio.force-legacy=false -drive "file=$IMG,if=none,id=d,format=raw" \
                -device virtio-blk-device,drive=d -kernel "$ELF" </dev/null) ;;
    esac
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    echo "$out" | awk '/^bench / {print $3, $5, $7, $9}'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A SEQ RAND
for cfg in tessera qemu-vu qemu; do
    seq_list=""; rand_list=""
    for r in $(seq "$runs"); do
        read -r sb st rr rt < <(run_one "$cfg")
        [ -n "${rt:-}" ] || { echo "$cfg run $r failed" >&2; exit 1; }
        seq_list+="$(awk -v b="$sb" -v t="$st" 'BEGIN {printf "%.1f\n", b / (t / 1e7) / 1e6}')"$'\n'
        rand_list+="$(awk -v n="$rr" -v t="$rt" 'BEGIN {printf "%.0f\n", n / (t / 1e7)}')"$'\n'
        echo "  $cfg run $r: seq ${sb} bytes in ${st} ticks, $rr random reads in $rt ticks" >&2
    done
    SEQ[$cfg]=$(printf "%s" "$seq_list" | median)
    RAND[$cfg]=$(printf "%s" "$rand_list" | median)
done
echo "$(date +%F) · tessera $(cd "$ROOT" && git rev-parse --short HEAD) · $($QEMU --version | head -1) · median of $runs run(s)"
echo
echo "| configuration | sequential 64 KiB reads, MB/s | random 4 KiB reads, IOPS |"
echo "|---|---:|---:|"
echo "| tessera-cpu + tessera-blk (vhost-user) | ${SEQ[tessera]} | ${RAND[tessera]} |"
echo "| QEMU + tessera-blk (vhost-user) | ${SEQ[qemu-vu]} | ${RAND[qemu-vu]} |"
echo "| QEMU, in-process virtio-blk | ${SEQ[qemu]} | ${RAND[qemu]} |"
awk -v a="${SEQ[qemu-vu]}" -v b="${SEQ[qemu]}" -v c="${RAND[qemu-vu]}" -v d="${RAND[qemu]}" \
    'BEGIN {printf "\nQEMU vhost-user path / QEMU in-process: sequential %.2f, random %.2f\n", a / b, c / d}'
