#!/bin/sh
# Build the demo firmware into OUT_DIR/demo.elf (stripped, no debug info), with the start code
# and helpers of tests/guests/riscv64/common and the polled virtio driver of tests/guests/virtio.
# The committed deploy/demo/demo.elf comes from: sh deploy/demo/build.sh deploy/demo
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")" && pwd)
COMMON=$SRC/../../tests/guests/riscv64/common
VIRTIO=$SRC/../../tests/guests/virtio
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CC=${CC:-riscv64-unknown-elf-gcc}
STRIP=${STRIP:-riscv64-unknown-elf-strip}
command -v "$CC" >/dev/null 2>&1 || { echo "$CC not found: install Debian package gcc-riscv64-unknown-elf" >&2; exit 3; }
CFLAGS="-march=rv64imac_zicsr_zifencei -mabi=lp64 -nostdlib -nostartfiles -static -mcmodel=medany \
 -ffreestanding -fno-builtin -Os -Wall -Werror -I$COMMON -I$VIRTIO"
$CC $CFLAGS -T "$COMMON/link.ld" "$COMMON/crt0.S" "$COMMON/lib.c" "$VIRTIO/virtio.c" "$SRC/demo.c" -lgcc \
    -Wl,--no-warn-rwx-segments -Wl,--build-id=none -o "$OUT/demo.elf"
$STRIP --strip-all "$OUT/demo.elf"
