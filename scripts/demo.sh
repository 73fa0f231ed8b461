#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is needed (idempotent), build, then
# boot Debian's OpenSBI and U-Boot on tessera-cpu with 4 harts. U-Boot's console is this
# terminal: try `version`, `bdinfo`, `dm tree`; `poweroff` (or Ctrl-C) ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec target/release/tessera-cpu --harts 4 \
    --bios /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin \
    --kernel /usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin "$@"
