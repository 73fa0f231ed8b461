#!/usr/bin/env bash
# NVMe benchmark (issue 7): Debian's riscv64 Linux with our busybox initramfs
# (tests/guests/linux/, kernel command line tessera.steps=bench) runs blkbench
# (tests/guests/linux/blkbench.c) on /dev/nvme0n1: 4 KiB random reads (IOPS), sequential
# reads and writes of 128 KiB (MB/s; larger requests make QEMU 10.0's NVMe lose INTx interrupts
# here: 30 s I/O timeouts), O_DIRECT, one request at a time, SECS seconds each.
# The device is tessera-nvme over vfio-user under `tessera run` (release build), and QEMU's own
# in-process NVMe device (`-device nvme`) on the same kind of image, in the same run, RUNS runs
# each, alternating; the table shows the medians and Tessera/QEMU ratios (above 1 = Tessera
# faster).
#
# Usage: scripts/bench-nvme.sh [--runs N] [--secs S] [--harts N] [--quick] [--markdown FILE]
#   --runs N         runs per emulator (default 3; 1 with --quick)
#   --secs S         seconds per blkbench mode (default 5; 2 with --quick)
#   --harts N        guest harts (default 2)
#   --markdown FILE  also write the table to FILE (markdown)
# Environment: QEMU (default qemu-system-riscv64), TIMEOUT per run in seconds (default 300),
#   CARGO_TARGET_DIR, TESSERA_GUEST_DIR (the guest kit, default target/guests/linux-riscv64).
#
# Exit status: 0 when every run produced its numbers; 1 when one did not (with the log's tail);
# 2 usage; 3 something outside the project is missing (QEMU, the guest kit). Timing is
# reported, never asserted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
runs=""
secs=""
harts=2
quick=0
markdown=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --runs=*) runs=${1#--runs=}; shift ;;
        --secs) secs=$2; shift 2 ;;
        --secs=*) secs=${1#--secs=}; shift ;;
        --harts) harts=$2; shift 2 ;;
        --harts=*) harts=${1#--harts=}; shift ;;
        --quick) quick=1; shift ;;
        --markdown) markdown=$2; shift 2 ;;
        --markdown=*) markdown=${1#--markdown=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$runs" ] || { [ "$quick" = 1 ] && runs=1 || runs=3; }
[ -n "$secs" ] || { [ "$quick" = 1 ] && secs=2 || secs=5; }
for v in "$runs" "$secs" "$harts"; do
    case "$v" in ''|*[!0-9]*|0) echo "--runs, --secs and --harts need positive integers" >&2; exit 2 ;; esac
done
QEMU=${QEMU:-qemu-system-riscv64}
TIMEOUT=${TIMEOUT:-300}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KIT=${TESSERA_GUEST_DIR:-$ROOT/target/guests/linux-riscv64}
CMDLINE="console=ttyS0 earlycon=sbi panic=-1 tessera.steps=bench tessera.bench_dev=nvme0n1 tessera.bench_secs=$secs"
command -v "$QEMU" >/dev/null || { echo "$QEMU not found (Debian package qemu-system-riscv)" >&2; exit 3; }

echo "== guest kit" >&2
rc=0
TESSERA_GUEST_DIR=$KIT "$ROOT/scripts/fetch-linux-guest.sh" >&2 || rc=$?
[ "$rc" = 0 ] || exit "$rc"

WORK=$TARGET/bench-nvme
LOGS=$WORK/logs
mkdir -p "$LOGS"
sh "$ROOT/tests/guests/linux/build-initramfs.sh" "$KIT" "$WORK/initramfs.cpio" >&2
IMAGE=$WORK/nvme.img
rm -f "$IMAGE"
truncate -s 256M "$IMAGE"

echo "== building tessera, tessera-cpu, tessera-nvme (release)" >&2
(cd "$ROOT" && cargo build --release -p tessera -p tessera-cpu -p tessera-nvme) >&2
TESSERA=$TARGET/release/tessera

DESC=$WORK/bench-nvme.toml
cat >"$DESC" <<EOF
[machine]
name = "bench-nvme"
ram = "512M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = $harts
firmware = "$KIT/fw_dynamic.bin"
kernel = "$KIT/Image"
initrd = "$WORK/initramfs.cpio"
cmdline = "$CMDLINE"

[[device]]
id = "nvme0"
kind = "nvme"
image = "$IMAGE"
serial = "BENCH0001"
EOF

# run_guest EMU LOG: one boot; prints "RANDREAD_IOPS SEQREAD_MBPS SEQWRITE_MBPS".
run_guest() {
    local emu=$1 log=$2 rc cmd
    if [ "$emu" = qemu ]; then
        cmd=("$QEMU" -machine virt -smp "$harts" -m 512M -display none -monitor none -serial stdio
            -no-reboot -bios "$KIT/fw_dynamic.bin" -kernel "$KIT/Image" -initrd "$WORK/initramfs.cpio"
            -append "$CMDLINE" -drive "file=$IMAGE,format=raw,if=none,id=nvm"
            -device nvme,drive=nvm,serial=BENCH0001)
    else
        cmd=("$TESSERA" run "$DESC" --runtime-dir "$WORK/run")
    fi
    set +e
    timeout "$TIMEOUT" "${cmd[@]}" </dev/null >"$log" 2>"$log.err"
    rc=$?
    set -e
    local rr sr sw
    rr=$(sed -n 's/.*BLKBENCH mode=randread .* iops=\([0-9]*\).*/\1/p' "$log" | head -1)
    sr=$(sed -n 's/.*BLKBENCH mode=seqread .* mbps=\([0-9]*\).*/\1/p' "$log" | head -1)
    sw=$(sed -n 's/.*BLKBENCH mode=seqwrite .* mbps=\([0-9]*\).*/\1/p' "$log" | head -1)
    if [ "$rc" -ne 0 ] || [ -z "$rr" ] || [ -z "$sr" ] || [ -z "$sw" ]; then
        {
            echo "FAIL: $emu exited with status $rc; log $log"
            tail -n 15 "$log" | sed 's/^/    /'
            tail -n 5 "$log.err" | sed 's/^/    stderr: /'
        } >&2
        return 1
    fi
    echo "$rr $sr $sw"
}

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v t="$1" -v q="$2" 'BEGIN { if (t == "-" || q == "-" || q == 0) print "-"; else printf "%.2fx", t / q }'; }

failed=0
declare -A vals
for emu in qemu tessera; do vals[$emu.rr]=""; vals[$emu.sr]=""; vals[$emu.sw]=""; done
for i in $(seq 1 "$runs"); do
    for emu in qemu tessera; do
        echo "== run $i/$runs: $emu" >&2
        if r=$(run_guest "$emu" "$LOGS/$emu-$i.log"); then
            read -r rr sr sw <<<"$r"
            echo "   randread 4K ${rr} IOPS, seqread ${sr} MB/s, seqwrite ${sw} MB/s" >&2
            vals[$emu.rr]+=" $rr"; vals[$emu.sr]+=" $sr"; vals[$emu.sw]+=" $sw"
        else
            failed=1
        fi
    done
done

m() { echo "${vals[$1]}" | median; }
table() {
    echo "| NVMe, Linux guest, $harts harts, QD1, O_DIRECT, ${secs} s each | QEMU \`-device nvme\` | Tessera \`tessera-nvme\` (vfio-user) | Tessera/QEMU |"
    echo "|---|---:|---:|---:|"
    echo "| 4 KiB random read, IOPS | $(m qemu.rr) | $(m tessera.rr) | $(ratio "$(m tessera.rr)" "$(m qemu.rr)") |"
    echo "| 128 KiB sequential read, MB/s | $(m qemu.sr) | $(m tessera.sr) | $(ratio "$(m tessera.sr)" "$(m qemu.sr)") |"
    echo "| 128 KiB sequential write, MB/s | $(m qemu.sw) | $(m tessera.sw) | $(ratio "$(m tessera.sw)" "$(m qemu.sw)") |"
    echo
    echo "Medians of $runs run(s) each, alternating, on $(nproc) host CPUs; $("$QEMU" --version | head -1)."
}
table
[ -z "$markdown" ] || table >"$markdown"
exit "$failed"
