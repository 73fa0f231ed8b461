#!/bin/sh
# Build the SBI payload: OUT_DIR/payload.elf and OUT_DIR/payload.bin (raw, for fw_jump).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
CC=${CC:-riscv64-unknown-elf-gcc}
command -v "$CC" >/dev/null 2>&1 || { echo "$CC not found: install Debian package gcc-riscv64-unknown-elf" >&2; exit 3; }
$CC -march=rv64imac_zicsr -mabi=lp64 -mcmodel=medany -O2 -ffreestanding -fno-builtin -nostdlib -nostartfiles \
    -static -Wall -Werror -T "$SRC/link.ld" -Wl,--no-warn-rwx-segments "$SRC/start.S" "$SRC/payload.c" -o "$1/payload.elf"
riscv64-unknown-elf-objcopy -O binary "$1/payload.elf" "$1/payload.bin"
