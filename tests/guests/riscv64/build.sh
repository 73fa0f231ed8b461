#!/bin/sh
# Build every riscv64 guest test program into OUT_DIR (one NAME.elf per NAME.S / NAME.c).
# Usage: build.sh OUT_DIR            (CC overrides the compiler; default riscv64-unknown-elf-gcc)
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CC=${CC:-riscv64-unknown-elf-gcc}
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "$CC not found: install Debian package gcc-riscv64-unknown-elf" >&2
    exit 3
fi
CFLAGS="-march=rv64imac_zicsr_zifencei -mabi=lp64 -nostdlib -nostartfiles -static -mcmodel=medany \
 -ffreestanding -fno-builtin -O2 -g -Wall -Werror -I$SRC/common"
mkdir -p "$OUT/common"
$CC $CFLAGS -c "$SRC/common/crt0.S" -o "$OUT/common/crt0.o"
$CC $CFLAGS -c "$SRC/common/lib.c" -o "$OUT/common/lib.o"
status=0
for f in "$SRC"/*.S "$SRC"/*.c; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    name=${name%.*}
    if ! $CC $CFLAGS -T "$SRC/common/link.ld" "$OUT/common/crt0.o" "$OUT/common/lib.o" "$f" \
        -lgcc -Wl,--no-warn-rwx-segments -o "$OUT/$name.elf"; then
        echo "build failed: $f" >&2
        status=1
    fi
done
exit $status
