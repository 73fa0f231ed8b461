#!/bin/sh
# Build the TPM guests into OUT_DIR (one NAME.elf per NAME.c; tis.h is their shared TIS code).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")" && pwd)
exec sh "$SRC/../riscv64/common/build-c.sh" "$SRC" "$1"
