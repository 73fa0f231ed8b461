#!/bin/sh
# Build the TPM guests into OUT_DIR (one NAME.elf per NAME.c), with the start code and helpers of
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
for f in "$SRC"/*.c; do
    name=$(basename "$f" .c)
    $CC $CFLAGS -T "$COMMON/link.ld" "$COMMON/crt0.S" "$COMMON/lib.c" "$f" -lgcc \
        -Wl,--no-warn-rwx-segments -o "$OUT/$name.elf"
done
