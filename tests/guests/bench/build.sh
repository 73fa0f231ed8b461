#!/bin/sh
# Build the CPU benchmark workloads into OUTDIR (one NAME.elf per NAME.c, plus NAME.expected).
#
# Usage: build.sh OUTDIR
# Environment:
#   SCALE=N     amount of work (default 10; each workload takes >= 2 s on QEMU TCG at 10)
#   CC          riscv64 bare-metal compiler (default riscv64-unknown-elf-gcc)
#   HOSTCC      native compiler for the reference checksums (default cc)
#   WORKLOADS   space-separated subset (default: every *.c except bench_main.c)
#
# Every workload is first compiled and run natively (-DBENCH_HOST) to compute its expected
# checksum for this SCALE; the guest is then built with -DEXPECTED=<that value> and exits
# through the SiFive test finisher with 0 only if it computes the same value.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
SCALE=${SCALE:-10}
CC=${CC:-riscv64-unknown-elf-gcc}
HOSTCC=${HOSTCC:-cc}
for c in "$CC" "$HOSTCC"; do
    if ! command -v "$c" >/dev/null 2>&1; then
        echo "$c not found (riscv64: Debian package gcc-riscv64-unknown-elf)" >&2
        exit 3
    fi
done
if [ -z "${WORKLOADS:-}" ]; then
    WORKLOADS=$(cd "$SRC" && ls *.c | sed -n 's/\.c$//p' | grep -v '^bench_main$')
fi

CFLAGS="-O2 -march=rv64imac_zicsr -mabi=lp64 -mcmodel=medany -ffreestanding -nostdlib \
 -nostartfiles -static -fno-builtin -fno-tree-loop-distribute-patterns -Wall -Werror -g"
HOSTCFLAGS="-O2 -Wall -Werror -fwrapv"

mkdir -p "$OUT/host"
for w in $WORKLOADS; do
    $HOSTCC $HOSTCFLAGS -DBENCH_HOST -DSCALE="$SCALE" -I"$SRC" \
        "$SRC/bench_main.c" "$SRC/$w.c" -o "$OUT/host/$w"
    expected=$("$OUT/host/$w")
    $CC $CFLAGS -DSCALE="$SCALE" -DEXPECTED="$expected" -I"$SRC" -T "$SRC/link.ld" \
        "$SRC/crt0.S" "$SRC/bench_main.c" "$SRC/$w.c" -lgcc -Wl,--no-warn-rwx-segments \
        -o "$OUT/$w.elf"
    echo "$expected" > "$OUT/$w.expected"
    echo "built $w.elf (SCALE $SCALE, expected checksum $expected)"
done
