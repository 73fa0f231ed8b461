#!/bin/sh
# Build every NAME.c of SRC_DIR into OUT_DIR/NAME.elf with the start code and helpers of this
# folder (crt0.S, lib.c, link.ld); EXTRA .c files of SRC_DIR (shared helpers, e.g. virtio.c) are
# linked into each program instead of being programs themselves.
#
# Usage: build-c.sh SRC_DIR OUT_DIR [EXTRA.c ...]   (CC: default riscv64-unknown-elf-gcc)
set -eu
[ $# -ge 2 ] || { echo "usage: $0 SRC_DIR OUT_DIR [EXTRA.c ...]" >&2; exit 2; }
SRC=$(cd "$1" && pwd)
COMMON=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
shift 2
CC=${CC:-riscv64-unknown-elf-gcc}
command -v "$CC" >/dev/null 2>&1 || { echo "$CC not found: install Debian package gcc-riscv64-unknown-elf" >&2; exit 3; }
CFLAGS="-march=rv64imac_zicsr_zifencei -mabi=lp64 -nostdlib -nostartfiles -static -mcmodel=medany \
 -ffreestanding -fno-builtin -O2 -g -Wall -Werror -I$COMMON -I$SRC"
extras=""
for e in "$@"; do extras="$extras $SRC/$e"; done
for f in "$SRC"/*.c; do
    name=$(basename "$f")
    case " $* " in *" $name "*) continue ;; esac
    # shellcheck disable=SC2086
    $CC $CFLAGS -T "$COMMON/link.ld" "$COMMON/crt0.S" "$COMMON/lib.c" $extras "$f" -lgcc \
        -Wl,--no-warn-rwx-segments -o "$OUT/${name%.c}.elf"
done
