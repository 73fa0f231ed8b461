#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine: installs what Tessera's build, tests and
# benchmarks need from Debian, then builds the workspace. Safe to run again.
set -euo pipefail

need_apt=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in cmake gcc-riscv64-unknown-elf opensbi u-boot-qemu device-tree-compiler xz-utils cpio e2fsprogs debian-archive-keyring swtpm swtpm-tools mtools dosfstools python3-venv dnsmasq-base; do
    have "$p" || need_apt+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! have qemu-system-riscv; then
    # Debian 12's own QEMU conflicts with the preinstalled qemu-utils from bookworm-backports:
    # take qemu-system-riscv from the backports suite of the archive this machine already uses.
    if [ ! -f /etc/apt/sources.list.d/bookworm-backports.list ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$uri" ] || uri="http://deb.debian.org/debian"
        echo "deb $uri bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    need_backports=1
else
    need_backports=0
fi

if [ ${#need_apt[@]} -gt 0 ] || [ "$need_backports" -eq 1 ]; then
    $SUDO apt-get update -q
    [ ${#need_apt[@]} -eq 0 ] || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
    [ "$need_backports" -eq 0 ] || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports qemu-system-riscv
fi

if [ "${1:-}" != "--no-build" ]; then
    cd "$(dirname "$0")/.."
    cargo build --release -p tessera -p tessera-cpu -p tessera-blk -p tessera-console -p tessera-nvme -p tessera-net
fi
