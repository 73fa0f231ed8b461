#!/usr/bin/env bash
# Linux boot benchmark (issue 6): Debian's riscv64 kernel with our busybox initramfs
# (tests/guests/linux/) on Tessera (`tessera run`, release build) and on qemu-system-riscv64, with
# the same devices (virtio-mmio blk with an ext4 image, virtio-console as hvc0), 1G of RAM.
#
#  1. boot: wall time from starting the emulator to /init's TESSERA-LINUX-BOOTED line on the
#     serial console (kernel command line tessera.steps=boot: /init powers off right after it),
#     RUNS runs each, alternating, side by side with the ratio Tessera/QEMU of the medians.
#  2. insmod-all: guest time (/proc/uptime) between TESSERA-INSMOD-BEGIN and TESSERA-INSMOD-END,
#     i.e. loading every module of the kit's load-order (each insmod makes all harts rendezvous:
#     stop_machine, text patching, remote fences), with 2 and 4 harts, on an idle host and with
#     one CPU-bound job (`yes >/dev/null`) running on the host; the median of RUNS runs.
#
# Usage: scripts/bench-linux-boot.sh [--runs N] [--harts N] [--quick] [--qemu-only] [--boot-only]
#                                    [--markdown FILE]
#   --runs N         runs per emulator and configuration (default 3; 1 with --quick)
#   --harts N        harts for the boot measurement (default 2, as the issue's QEMU reference)
#   --quick          one run each
#   --qemu-only      do not build or run Tessera
#   --boot-only      skip the insmod-all measurements
#   --markdown FILE  also write the tables to FILE (markdown)
# Environment: QEMU (default qemu-system-riscv64), TIMEOUT per run in seconds (default 600),
#   CARGO_TARGET_DIR, TESSERA_GUEST_DIR (the guest kit, default target/guests/linux-riscv64).
#
# The guest kit comes from scripts/fetch-linux-guest.sh (run first; exit 3 there = no guest).
# Exit status: 0 when every run reached its markers; 1 when any did not (Tessera's failures are
# reported with the serial log's tail, and its remaining runs skipped, the QEMU numbers are still
# printed); 2 usage; 3 something outside the project is missing (QEMU, the guest). Timing is
# reported, never asserted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
runs=""
boot_harts=2
quick=0
qemu_only=0
boot_only=0
markdown=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --runs=*) runs=${1#--runs=}; shift ;;
        --harts) boot_harts=$2; shift 2 ;;
        --harts=*) boot_harts=${1#--harts=}; shift ;;
        --quick) quick=1; shift ;;
        --qemu-only) qemu_only=1; shift ;;
        --boot-only) boot_only=1; shift ;;
        --markdown) markdown=$2; shift 2 ;;
        --markdown=*) markdown=${1#--markdown=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$runs" ]; then
    if [ "$quick" = 1 ]; then runs=1; else runs=3; fi
fi
case "$runs" in ''|*[!0-9]*|0) echo "--runs needs a positive integer" >&2; exit 2 ;; esac
case "$boot_harts" in ''|*[!0-9]*|0) echo "--harts needs a positive integer" >&2; exit 2 ;; esac
QEMU=${QEMU:-qemu-system-riscv64}
TIMEOUT=${TIMEOUT:-600}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KIT=${TESSERA_GUEST_DIR:-$ROOT/target/guests/linux-riscv64}
CMDLINE="console=ttyS0 earlycon=sbi panic=-1"
command -v "$QEMU" >/dev/null || { echo "$QEMU not found (Debian package qemu-system-riscv)" >&2; exit 3; }
PATH=$PATH:/usr/sbin:/sbin
command -v mkfs.ext4 >/dev/null || { echo "mkfs.ext4 not found (Debian package e2fsprogs)" >&2; exit 3; }

echo "== guest kit" >&2
rc=0
TESSERA_GUEST_DIR=$KIT "$ROOT/scripts/fetch-linux-guest.sh" >&2 || rc=$?
[ "$rc" = 0 ] || exit "$rc"

WORK=$TARGET/bench-linux
LOGS=$WORK/logs
mkdir -p "$LOGS"
sh "$ROOT/tests/guests/linux/build-initramfs.sh" "$KIT" "$WORK/initramfs.cpio" >&2
rm -f "$WORK/disk.img"
truncate -s 64M "$WORK/disk.img"
mkfs.ext4 -q -F -L tessera "$WORK/disk.img"
nmods=$(grep -c . "$KIT/modules/load-order")
kver=$(sed -n 's/.*kernel=\([^ ]*\).*/\1/p' "$KIT/MANIFEST.txt" | head -1)

tessera_ok=1
TESSERA=$TARGET/release/tessera
if [ "$qemu_only" = 0 ]; then
    echo "== building tessera, tessera-cpu, tessera-blk, tessera-console (release)" >&2
    if ! (cd "$ROOT" && cargo build --release -p tessera -p tessera-cpu -p tessera-blk -p tessera-console) >&2; then
        echo "Tessera: the release build failed; measuring QEMU only" >&2
        tessera_ok=0
    fi
else
    tessera_ok=0
fi

load_pid=""
stop_load() {
    if [ -n "$load_pid" ]; then
        kill "$load_pid" 2>/dev/null || true
        wait "$load_pid" 2>/dev/null || true
        load_pid=""
    fi
}
trap stop_load EXIT
start_load() {
    yes >/dev/null &
    load_pid=$!
}

# describe HARTS STEPS: the Tessera description for one configuration (printed path).
describe() {
    local f=$WORK/linux-$1-$2.toml
    cat >"$f" <<EOF
[machine]
name = "bench-linux"
ram = "1G"

[[cluster]]
name = "app"
isa = "riscv64"
harts = $1
firmware = "$KIT/fw_dynamic.bin"
kernel = "$KIT/Image"
initrd = "$WORK/initramfs.cpio"
cmdline = "$CMDLINE tessera.steps=$2"

[[device]]
id = "disk0"
kind = "virtio-blk"
image = "$WORK/disk.img"

[[device]]
id = "hvc0"
kind = "virtio-console"
output = "file:$WORK/hvc0-tessera.log"
EOF
    echo "$f"
}

# run_guest EMU HARTS STEPS LOG: one boot. Prints "WALL_TO_BOOTED UPTIME_BOOTED INSMOD_SECONDS"
# (INSMOD_SECONDS is - unless STEPS is insmod); returns 1 if a marker is missing or the
# emulator did not exit 0.
run_guest() {
    local emu=$1 harts=$2 steps=$3 log=$4 start rc
    local cmd
    if [ "$emu" = qemu ]; then
        cmd=("$QEMU" -machine virt -smp "$harts" -m 1G -display none -monitor none -serial stdio
            -no-reboot -bios "$KIT/fw_dynamic.bin" -kernel "$KIT/Image" -initrd "$WORK/initramfs.cpio"
            -append "$CMDLINE tessera.steps=$steps" -global virtio-mmio.force-legacy=false
            -drive "file=$WORK/disk.img,format=raw,if=none,id=disk0" -device virtio-blk-device,drive=disk0
            -chardev "file,id=hvc0,path=$WORK/hvc0-qemu.log" -device virtio-serial-device
            -device virtconsole,chardev=hvc0)
    else
        cmd=("$TESSERA" run "$(describe "$harts" "$steps")" --runtime-dir "$WORK/run")
    fi
    rm -f "$log.booted"
    start=$(date +%s.%N)
    set +e
    timeout "$TIMEOUT" "${cmd[@]}" </dev/null 2>"$log.err" | while IFS= read -r line; do
        case $line in TESSERA-LINUX-BOOTED*) date +%s.%N >"$log.booted" ;; esac
        printf '%s\n' "$line"
    done >"$log"
    rc=${PIPESTATUS[0]}
    set -e
    local up_booted ib ie wall insmod=-
    up_booted=$(sed -n 's/^TESSERA-LINUX-BOOTED uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
    if [ "$rc" -ne 0 ] || [ ! -f "$log.booted" ] || ! grep -q '^TESSERA-LINUX-DONE' "$log"; then
        {
            echo "FAIL: $emu ($harts harts, steps=$steps) exited with status $rc$([ "$rc" -eq 124 ] && echo " (timeout ${TIMEOUT}s)"); log $log"
            tail -n 15 "$log" | sed 's/^/    /'
            tail -n 5 "$log.err" | sed 's/^/    stderr: /'
        } >&2
        return 1
    fi
    wall=$(awk -v s="$start" -v e="$(cat "$log.booted")" 'BEGIN { printf "%.2f", e - s }')
    if [ "$steps" = insmod ]; then
        ib=$(sed -n 's/^TESSERA-INSMOD-BEGIN uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
        ie=$(sed -n 's/^TESSERA-INSMOD-END uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
        insmod=$(awk -v b="$ib" -v e="$ie" 'BEGIN { printf "%.2f", e - b }')
    fi
    echo "$wall $up_booted $insmod"
}

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v t="$1" -v q="$2" 'BEGIN { if (t == "-" || q == "-" || q == 0) print "-"; else printf "%.2fx", t / q }'; }

failed=0
# one EMU HARTS STEPS LOG: one run; on success sets r_wall, r_up, r_insmod and returns 0. A
# Tessera failure skips Tessera's remaining runs.
one() {
    local r
    if [ "$1" = tessera ] && [ "$tessera_ok" = 0 ]; then return 1; fi
    echo "   $1, $2 harts, $(basename "$4")" >&2
    if r=$(run_guest "$@"); then
        read -r r_wall r_up r_insmod <<<"$r"
        return 0
    fi
    failed=1
    if [ "$1" = tessera ]; then
        echo "Tessera: did not reach the markers; skipping its remaining runs" >&2
        tessera_ok=0
    fi
    return 1
}

out=$WORK/results.md
: >"$out"
emit() { printf '%s\n' "$*" | tee -a "$out"; }
list() { echo "${1:- -}" | sed 's/^ //; s/ /, /g'; }

# How many host cores other work keeps busy right now: /proc/stat sampled over one second while
# no emulator of ours runs (the load average would still count our previous run).
host_busy() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2]; t = busy + idle;
        printf "%.1f of %d cores", (t > 0 ? n * busy / t : 0), n }'
}

echo "== boot to TESSERA-LINUX-BOOTED, $boot_harts harts, $runs run(s) each" >&2
boot_load=$(host_busy)
q_walls="" t_walls="" q_up="" t_up=""
for i in $(seq 1 "$runs"); do
    # Alternate the emulators so that a change in the host's load hits both alike.
    if one qemu "$boot_harts" boot "$LOGS/qemu-$boot_harts-boot-$i"; then
        q_walls="$q_walls $r_wall" q_up="$q_up $r_up"
    fi
    if one tessera "$boot_harts" boot "$LOGS/tessera-$boot_harts-boot-$i"; then
        t_walls="$t_walls $r_wall" t_up="$t_up $r_up"
    fi
done

emit ""
emit "Linux $kver boot to /init's marker: wall seconds from starting the emulator, $boot_harts harts, 1G (host busy before: $boot_load)"
emit ""
emit "| emulator | runs (s) | median (s) | guest uptime at marker (s, median) |"
emit "|---|---|---|---|"
emit "| QEMU $("$QEMU" --version | head -1 | awk '{print $4}') | $(list "$q_walls") | $(echo "$q_walls" | median) | $(echo "$q_up" | median) |"
emit "| Tessera | $(list "$t_walls") | $(echo "$t_walls" | median) | $(echo "$t_up" | median) |"
emit ""
emit "Tessera / QEMU (median wall time to the marker): $(ratio "$(echo "$t_walls" | median)" "$(echo "$q_walls" | median)")"

if [ "$boot_only" = 0 ]; then
    echo "== insmod-all ($nmods modules), $runs run(s) each" >&2
    rows=()
    for harts in 2 4; do
        for host in idle busy; do
            [ "$host" = busy ] && start_load
            la=$(host_busy)
            qs="" ts=""
            for i in $(seq 1 "$runs"); do
                if one qemu "$harts" insmod "$LOGS/qemu-$harts-insmod-$host-$i"; then qs="$qs $r_insmod"; fi
                if one tessera "$harts" insmod "$LOGS/tessera-$harts-insmod-$host-$i"; then ts="$ts $r_insmod"; fi
            done
            stop_load
            q=$(echo "$qs" | median)
            t=$(echo "$ts" | median)
            rows+=("| $harts | $host | $la | $q | $t | $(ratio "$t" "$q") |")
        done
    done
    emit ""
    emit "insmod of all $nmods modules: guest seconds between TESSERA-INSMOD-BEGIN and -END (median of $runs); busy = one \`yes >/dev/null\` on the host ($(nproc) cores)"
    emit ""
    emit "| harts | host | host busy before (incl. the job) | QEMU (s) | Tessera (s) | Tessera / QEMU |"
    emit "|---|---|---|---|---|---|"
    for r in "${rows[@]}"; do emit "$r"; done
fi

[ -z "$markdown" ] || cp "$out" "$markdown"
echo "" >&2
echo "logs in $LOGS" >&2
exit "$failed"
