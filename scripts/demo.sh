#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is needed (idempotent), build, then
# run the built-in demo machine with `tessera run`: a two-hart RISC-V cluster (tessera-cpu), a
# disk (tessera-blk) and a console (tessera-console), each its own process over one shared RAM
# memfd. The guest writes and reads the disk, talks through the console and powers off (status 0).
# Arguments go to `tessera run`: e.g. `scripts/demo.sh deploy/machines/uboot.toml` boots OpenSBI
# and U-Boot instead (type `poweroff` to leave).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec target/release/tessera run "$@"
