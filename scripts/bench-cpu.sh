#!/usr/bin/env bash
# CPU throughput benchmark: Tessera's tessera-cpu against QEMU TCG on the same bare-metal riscv64
# workloads (tests/guests/bench), side by side: Tessera with its default tiers (`--tier auto`:
# hot blocks compiled by Cranelift in the background, "jit" below), Tessera on the interpreter
# alone (`--tier interp`) and QEMU. Reports wall times, guest MIPS, the speed ratios against QEMU
# and the JIT's compile time with its share of the run; then (unless --no-linux) the Linux
# boot-to-marker ratio from scripts/bench-linux-boot.sh --boot-only. See docs/PERFORMANCE.md.
#
# Usage: scripts/bench-cpu.sh [--runs N] [--quick] [--scale N] [--markdown FILE] [WORKLOAD...]
#   --runs N         runs per emulator and workload, alternating Tessera/QEMU; the median wall
#                    time is reported (default 3; 1 with --quick)
#   --quick          smoke run: SCALE=1 (about a tenth of the work), 1 run unless --runs is given
#   --scale N        workload size (default 10: each workload takes >= 2 s on QEMU TCG)
#   --markdown FILE  also write the markdown table to FILE
#   --no-linux       skip the Linux boot measurement
#   WORKLOAD...      subset of crc32 matrix mix sort string (default: all)
# Environment: QEMU (default qemu-system-riscv64), TIMEOUT per run in seconds (default 600),
#   CARGO_TARGET_DIR.
#
# Exits non-zero if any workload fails (wrong checksum, trap, non-zero exit, timeout) on either
# emulator. Timing is reported, never asserted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
runs=""
scale=10
markdown=""
workloads=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --runs=*) runs=${1#--runs=}; shift ;;
        --quick) scale=1; quick=1; shift ;;
        --scale) scale=$2; shift 2 ;;
        --scale=*) scale=${1#--scale=}; shift ;;
        --markdown) markdown=$2; shift 2 ;;
        --markdown=*) markdown=${1#--markdown=}; shift ;;
        --no-linux) no_linux=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) workloads+=("$1"); shift ;;
    esac
done
if [ -z "$runs" ]; then
    if [ "${quick:-0}" = 1 ]; then runs=1; else runs=3; fi
fi
case "$runs" in ''|*[!0-9]*|0) echo "--runs needs a positive integer" >&2; exit 2 ;; esac
case "$scale" in ''|*[!0-9]*|0) echo "--scale needs a positive integer" >&2; exit 2 ;; esac
if [ ${#workloads[@]} -eq 0 ]; then
    workloads=(crc32 matrix mix sort string)
fi
QEMU=${QEMU:-qemu-system-riscv64}
TIMEOUT=${TIMEOUT:-600}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
command -v "$QEMU" >/dev/null || { echo "$QEMU not found (Debian package qemu-system-riscv)" >&2; exit 3; }

echo "== building tessera-cpu (release)" >&2
(cd "$ROOT" && cargo build --release -p tessera-cpu) >&2
TESSERA=$TARGET/release/tessera-cpu

OUT=$TARGET/bench-cpu/scale-$scale
echo "== building workloads (SCALE $scale) into $OUT" >&2
SCALE=$scale WORKLOADS="${workloads[*]}" sh "$ROOT/tests/guests/bench/build.sh" "$OUT" >&2
LOGS=$OUT/logs
mkdir -p "$LOGS"

# run_one LABEL LOGBASE CMD... : runs CMD, prints the wall time in seconds; returns non-zero if
# the emulator did not exit 0 or the guest did not print its OK line.
run_one() {
    local label=$1 log=$2 rc start end
    shift 2
    start=$(date +%s.%N)
    set +e
    timeout "$TIMEOUT" "$@" </dev/null >"$log.out" 2>"$log.err"
    rc=$?
    set -e
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
    if [ "$rc" -ne 0 ] || ! grep -q ': checksum 0x[0-9a-f]* OK$' "$log.out"; then
        {
            echo "FAIL: $label exited with status $rc$([ "$rc" -eq 124 ] && echo " (timeout ${TIMEOUT}s)")"
            tail -n 5 "$log.out" "$log.err" 2>/dev/null | sed 's/^/    /'
        } >&2
        return 1
    fi
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

failed=()
rows=()     # workload insns t_jit mips_jit t_interp t_qemu jit/qemu interp/qemu compile_s
for w in "${workloads[@]}"; do
    elf=$OUT/$w.elf
    j_times=()
    i_times=()
    q_times=()
    compile=()
    insns=""
    ok=1
    for r in $(seq 1 "$runs"); do
        # Rotate which emulator goes first, so none always runs on a warmer machine.
        case $((r % 3)) in
            1) order="jit interp qemu" ;;
            2) order="qemu jit interp" ;;
            *) order="interp qemu jit" ;;
        esac
        for emu in $order; do
            log=$LOGS/$w.$emu.$r
            if [ "$emu" != qemu ]; then
                if ! t=$(run_one "tessera-cpu --tier $emu $w (run $r)" "$log" \
                        "$TESSERA" --bios none --kernel "$elf" --serial stdio --stats \
                        --tier "$([ "$emu" = jit ] && echo auto || echo interp)"); then
                    ok=0; break 2
                fi
                n=$(sed -n 's/^tessera-cpu: total: \([0-9]*\) instructions.*/\1/p' "$log.err")
                if [ -z "$n" ]; then
                    echo "FAIL: tessera-cpu $w: no instruction count in --stats output" >&2
                    ok=0; break 2
                fi
                if [ -n "$insns" ] && [ "$n" != "$insns" ]; then
                    echo "warning: $w: instruction count differs between runs ($insns vs $n)" >&2
                fi
                insns=$n
                if [ "$emu" = jit ]; then
                    j_times+=("$t")
                    c=$(sed -n 's/.* \([0-9.]*\) s compiling;.*/\1/p' "$log.err" | awk '{ s += $1 } END { printf "%.3f", s }')
                    compile+=("$c")
                else
                    i_times+=("$t")
                fi
            else
                if ! t=$(run_one "qemu $w (run $r)" "$log" \
                        "$QEMU" -M virt -m 256M -smp 1 -bios none -nographic -monitor none \
                        -serial stdio -kernel "$elf"); then
                    ok=0; break 2
                fi
                q_times+=("$t")
            fi
            echo "   $w run $r: $emu ${t}s" >&2
        done
    done
    if [ "$ok" -ne 1 ]; then
        failed+=("$w")
        continue
    fi
    jt=$(printf '%s\n' "${j_times[@]}" | median)
    it=$(printf '%s\n' "${i_times[@]}" | median)
    qt=$(printf '%s\n' "${q_times[@]}" | median)
    ct=$(printf '%s\n' "${compile[@]}" | median)
    rows+=("$(awk -v w="$w" -v n="$insns" -v jt="$jt" -v it="$it" -v qt="$qt" -v ct="$ct" \
        'BEGIN { printf "%s %s %.3f %.1f %.3f %.3f %.3f %.3f %.3f\n", w, n, jt, n / jt / 1e6, it, qt, qt / jt, qt / it, ct }')")
done

qemu_version=$("$QEMU" --version | head -n 1 | sed 's/^QEMU emulator version //')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]; then rev="$rev+dirty"; fi
header="$(date -u +%Y-%m-%d) · tessera $rev · QEMU $qemu_version (TCG) · ${cpu:-unknown CPU}, $(nproc) cores · SCALE $scale · median of $runs run(s)"

geo_j=""
geo_i=""
if [ ${#rows[@]} -gt 0 ]; then
    geo_j=$(printf '%s\n' "${rows[@]}" | awk '{ s += log($7); n++ } END { printf "%.3f", exp(s / n) }')
    geo_i=$(printf '%s\n' "${rows[@]}" | awk '{ s += log($8); n++ } END { printf "%.3f", exp(s / n) }')
fi

md=$(
    echo "$header"
    echo
    echo "| workload | guest instructions | JIT wall s | JIT MIPS | interp wall s | QEMU wall s | JIT speed / QEMU | interp speed / QEMU | compiling s (share) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${rows[@]}"; do
        # shellcheck disable=SC2086
        set -- $row
        share=$(awk -v c="$9" -v t="$3" 'BEGIN { printf "%.0f%%", 100 * c / t }')
        echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 | $9 ($share) |"
    done
    [ -n "$geo_j" ] && echo "| **geometric mean** | | | | | | **$geo_j** | **$geo_i** | |"
    for f in "${failed[@]}"; do echo "| $f | FAILED | | | | | | | |"; done
    echo
    echo "Speed / QEMU = QEMU wall time / Tessera wall time (above 1: Tessera is faster). JIT = \`--tier auto\`; compiling = time spent in Cranelift (on the background thread) and its share of the JIT run's wall time."
)
echo
echo "$md"
if [ -n "$markdown" ]; then
    echo "$md" >"$markdown"
fi

if [ "${no_linux:-0}" != 1 ]; then
    echo "== Linux boot to /init (scripts/bench-linux-boot.sh --boot-only)" >&2
    linux_md=$(mktemp)
    if bash "$ROOT/scripts/bench-linux-boot.sh" --boot-only --runs "$runs" --markdown "$linux_md" >&2; then
        echo
        cat "$linux_md"
        if [ -n "$markdown" ]; then
            { echo; cat "$linux_md"; } >>"$markdown"
        fi
    else
        failed+=("linux-boot")
    fi
    rm -f "$linux_md"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED workloads: ${failed[*]} (logs in $LOGS)" >&2
    exit 1
fi
