#!/bin/sh
# Build the mailbox round-trip guests into OUT_DIR: ping.elf (cluster A, linked at 0x80000000)
# and pong.elf (cluster B, linked at 0x80800000), with the start code and helpers of
# ../riscv64/common.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")" && pwd)
COMMON=$SRC/../riscv64/common
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CC=${CC:-riscv64-unknown-elf-gcc}
command -v "$CC" >/dev/null 2>&1 || { echo "$CC not found: install Debian package gcc-riscv64-unknown-elf" >&2; exit 3; }
CFLAGS="-march=rv64imac_zicsr_zifencei -mabi=lp64 -nostdlib -nostartfiles -static -mcmodel=medany \
 -ffreestanding -fno-builtin -O2 -g -Wall -Werror -I$COMMON -I$SRC"
for pair in ping:link_a.ld pong:link_b.ld; do
    name=${pair%%:*}
    $CC $CFLAGS -L "$SRC" -T "$SRC/${pair#*:}" "$COMMON/crt0.S" "$COMMON/lib.c" "$SRC/$name.c" -lgcc \
        -Wl,--no-warn-rwx-segments -o "$OUT/$name.elf"
done
