#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the tests need (idempotent),
# checks formatting and lints, builds every binary, then runs every test (unit tests, the guest
# suite, the differential test against QEMU, firmware boots, CLI and hostile-input tests).
#
# Environment: TESSERA_DIFFTEST_SEED / TESSERA_DIFFTEST_COUNT change the differential test;
# TESSERA_GUEST_RUNNER=qemu runs the guest suite on QEMU instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build"
cargo build --workspace --bins
echo "== tests"
mkdir -p target
log=target/test-output.log
cargo test --workspace 2>&1 | tee "$log"
# One closing line over every test binary (libtest and libtest-mimic both print "test result:").
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
