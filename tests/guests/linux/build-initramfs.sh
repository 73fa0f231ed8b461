#!/bin/sh
# Build the initramfs of Tessera's Linux test: a newc cpio (uncompressed: the emulated kernel
# unpacks it without spending guest time on decompression) holding
#   /init                  tests/guests/linux/init (busybox sh)
#   /bin/busybox, /bin/sh  the static busybox; /init installs the other applets at boot
#   /bin/blkbench          tests/guests/linux/blkbench.c (scripts/bench-nvme.sh runs it), built
#                          here with riscv64-unknown-elf-gcc (Debian gcc-riscv64-unknown-elf)
#   /lib/modules/*.ko      the guest kit's modules, and load-order (dependencies first)
#   /dev/console           character device 5:1, so the kernel has a console for /init
# from the guest kit that scripts/fetch-linux-guest.sh fetches.
#
# Usage: build-initramfs.sh [GUEST_DIR [OUT.cpio]]
#   GUEST_DIR  default target/guests/linux-riscv64
#   OUT.cpio   default GUEST_DIR/initramfs.cpio
# Needs cpio and gcc-riscv64-unknown-elf (Debian packages). No root needed: the device node is written into the
# archive directly, never created on the host. The output is reproducible (fixed owners and
# timestamps) and written atomically.
set -eu
SRC=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$SRC/../../.." && pwd)
GUEST=${1:-$ROOT/target/guests/linux-riscv64}
OUT=${2:-$GUEST/initramfs.cpio}
command -v cpio >/dev/null 2>&1 || { echo "build-initramfs: cpio not found (Debian package cpio)" >&2; exit 3; }
CC=${CC:-riscv64-unknown-elf-gcc}
command -v "$CC" >/dev/null 2>&1 || { echo "build-initramfs: $CC not found (Debian package gcc-riscv64-unknown-elf)" >&2; exit 3; }
for f in busybox modules/load-order; do
    [ -f "$GUEST/$f" ] || { echo "build-initramfs: $GUEST/$f missing: run scripts/fetch-linux-guest.sh" >&2; exit 1; }
done

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/tessera-initramfs-XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/root/bin" "$STAGE/root/lib/modules" "$STAGE/root/dev" "$STAGE/root/proc" \
    "$STAGE/root/sys" "$STAGE/root/mnt" "$STAGE/root/tmp"
cp "$SRC/init" "$STAGE/root/init"
cp "$GUEST/busybox" "$STAGE/root/bin/busybox"
chmod 755 "$STAGE/root/init" "$STAGE/root/bin/busybox"
ln -s busybox "$STAGE/root/bin/sh"
# Freestanding (raw syscalls): Debian ships no riscv64 Linux cross compiler, only bare metal.
"$CC" -O2 -static -nostdlib -ffreestanding -fno-builtin -fno-stack-protector \
    -march=rv64gc -mabi=lp64d -mcmodel=medany -mno-relax -Wl,--no-relax -Wl,-e,_start \
    -Wall -Wextra -Werror -o "$STAGE/root/bin/blkbench" "$SRC/blkbench.c"
while read -r m; do
    [ -n "$m" ] || continue
    [ -f "$GUEST/modules/$m" ] || { echo "build-initramfs: $GUEST/modules/$m missing" >&2; exit 1; }
    cp "$GUEST/modules/$m" "$STAGE/root/lib/modules/$m"
done <"$GUEST/modules/load-order"
cp "$GUEST/modules/load-order" "$STAGE/root/lib/modules/load-order"
find "$STAGE/root" -exec touch -h -d @0 {} +

(cd "$STAGE/root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible >"$STAGE/files.cpio")

# newc_header NAME MODE NLINK RDEVMAJOR RDEVMINOR: one newc header for an empty file, with its
# name, NUL-padded so that header + name is a multiple of 4 bytes.
newc_header() {
    namesize=$((${#1} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 "$2" 0 0 "$3" 0 0 0 0 "$4" "$5" "$namesize" 0
    printf '%s\0' "$1"
    pad=$(((4 - (110 + namesize) % 4) % 4))
    while [ "$pad" -gt 0 ]; do printf '\0'; pad=$((pad - 1)); done
}
# A second archive appended to the first (the kernel unpacks concatenated archives in order):
# /dev/console, mode 020600 (character device), then the trailer.
{
    newc_header dev/console $((0x2180)) 1 5 1
    newc_header TRAILER!!! 0 1 0 0
} >"$STAGE/console.cpio"

cat "$STAGE/files.cpio" "$STAGE/console.cpio" >"$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
echo "build-initramfs: $OUT ($(wc -c <"$OUT") bytes, $(grep -c . "$GUEST/modules/load-order") modules)"
