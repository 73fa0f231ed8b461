#!/usr/bin/env bash
# Fetch the riscv64 Linux guest that tests/tests/linux.rs, scripts/bench-linux-boot.sh and
# deploy/machines/linux.toml boot: Debian's distribution kernel (a raw RISC-V `Image`), the
# modules the initramfs loads (with their dependencies, listed dependencies-first in
# modules/load-order), a static busybox and OpenSBI's fw_dynamic.bin.
#
# Usage: scripts/fetch-linux-guest.sh [--force] [--archive]
#   --force    fetch again even when the output is complete
#   --archive  ignore the local cache, fetch from Debian's archive
#
# Sources, in this order:
#   1. A local cache laid out like ../shared/guests/riscv64 (Image.xz, busybox, modules/ with
#      load-order, opensbi/, MANIFEST.txt with sha256 sums): every file is checked against the
#      cache's MANIFEST.txt before it is used. CI uses this and needs no network.
#   2. Debian's archive: the mirror this machine's apt already uses, suite $SUITE (default sid),
#      with apt running on a private state directory (nothing is installed on the host; the
#      archive's signature is checked with debian-archive-keyring).
# fw_dynamic.bin comes from the cache's opensbi/ (OpenSBI 1.9) when present, else from the host's
# Debian `opensbi` package.
#
# Output (default target/guests/linux-riscv64/): Image, busybox, fw_dynamic.bin, modules/*.ko,
# modules/load-order, MANIFEST.txt (where everything came from) and SHA256SUMS. Idempotent: when
# the output is complete, its SHA256SUMS verify and the cache has not changed, nothing is fetched.
# Then, for deploy/machines/linux.toml: initramfs.cpio (tests/guests/linux/build-initramfs.sh;
# rebuilt when it is older than its sources) and disk.img (a 64 MiB ext4 image, made once and
# never overwritten).
#
# Environment: TESSERA_GUEST_DIR (output), TESSERA_GUEST_CACHE (cache; default
#   ../shared/guests/riscv64 beside the repository), SUITE, KVER (kernel ABI-flavour, e.g.
#   7.2.13+deb14-riscv64; default: what linux-image-riscv64 depends on), MIRROR.
# Exit status: 0 done (or already up to date); 3 no cache and the archive is unreachable (callers
# such as the Linux test skip on 3); anything else is a failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${TESSERA_GUEST_DIR:-$ROOT/target/guests/linux-riscv64}
CACHE=${TESSERA_GUEST_CACHE:-$ROOT/../shared/guests/riscv64}
SUITE=${SUITE:-sid}
HOST_FW=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin
# The modules the guest needs; their dependencies are added, dependencies first.
ROOT_MODULES="virtio_mmio virtio_blk virtio_net virtio_rng ext4 nvme tpm_tis_spi spi-sifive"

force=0
use_cache=1
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1 ;;
        --archive) use_cache=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch-linux-guest: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "fetch-linux-guest: $*"; }
die() { echo "fetch-linux-guest: error: $*" >&2; exit 1; }

# A raw RISC-V Linux Image has "RISCV\0\0\0" at 0x30 and "RSC\x05" at 0x38.
is_riscv_image() { [ "$(od -An -c -j 48 -N 5 "$1" | tr -d ' ')" = "RISCV" ]; }

cache_ok() { [ "$use_cache" = 1 ] && [ -f "$CACHE/MANIFEST.txt" ] && [ -f "$CACHE/modules/load-order" ]; }
cache_id() { sha256sum "$CACHE/MANIFEST.txt" | cut -d' ' -f1; }

# One fetch at a time (tests and benchmarks may call this concurrently).
mkdir -p "$(dirname "$OUT")"
exec 9>"$OUT.lock"
flock 9

fetched=0
# Up to date? The sums verify, and the output came from the same source we would use now.
if [ "$force" = 0 ] && [ -f "$OUT/SHA256SUMS" ] && [ -f "$OUT/MANIFEST.txt" ] &&
    (cd "$OUT" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1); then
    recorded=$(sed -n 's/^cache-manifest-sha256=//p' "$OUT/MANIFEST.txt")
    if cache_ok; then
        if [ "$recorded" = "$(cache_id)" ]; then
            say "up to date in $OUT (from the cache $CACHE); --force fetches again"
            fetched=1
        fi
    elif [ "$use_cache" = 0 ] || [ -z "$recorded" ]; then
        say "up to date in $OUT ($(sed -n 's/^source=//p' "$OUT/MANIFEST.txt")); --force fetches again"
        fetched=1
    else
        say "up to date in $OUT (the cache it came from is gone); --force fetches again"
        fetched=1
    fi
fi

from_cache() {
    say "using the local cache $CACHE"
    # Check every file we take against the cache's own manifest.
    local files=(Image.xz busybox) m
    while read -r m; do [ -n "$m" ] && files+=("modules/$m"); done <"$CACHE/modules/load-order"
    [ -f "$CACHE/opensbi/fw_dynamic.bin" ] && files+=(opensbi/fw_dynamic.bin)
    local f want got
    for f in "${files[@]}"; do
        [ -f "$CACHE/$f" ] || die "$CACHE/$f is listed but missing"
        want=$(awk -v f="$f" '$2 == f {print $1}' "$CACHE/MANIFEST.txt")
        [ -n "$want" ] || die "$CACHE/MANIFEST.txt has no sha256 for $f"
        got=$(sha256sum "$CACHE/$f" | cut -d' ' -f1)
        [ "$want" = "$got" ] || die "$CACHE/$f: sha256 $got, MANIFEST.txt says $want"
    done
    say "verified ${#files[@]} files against $CACHE/MANIFEST.txt"
    xz -dc "$CACHE/Image.xz" >"$NEW/Image"
    cp "$CACHE/busybox" "$NEW/busybox"
    while read -r m; do [ -n "$m" ] && cp "$CACHE/modules/$m" "$NEW/modules/$m"; done <"$CACHE/modules/load-order"
    cp "$CACHE/modules/load-order" "$NEW/modules/load-order"
    {
        echo "source=cache $(cd "$CACHE" && pwd)"
        echo "cache-manifest-sha256=$(cache_id)"
        sed -e '/^[0-9a-f]\{64\} /d' -e 's/^/cache: /' "$CACHE/MANIFEST.txt"
    } >"$NEW/MANIFEST.txt"
    if [ -f "$CACHE/opensbi/fw_dynamic.bin" ]; then
        cp "$CACHE/opensbi/fw_dynamic.bin" "$NEW/fw_dynamic.bin"
        echo "fw_dynamic.bin=cache opensbi/fw_dynamic.bin" >>"$NEW/MANIFEST.txt"
    fi
}

# Exit 3 when the archive cannot be reached at all (the caller may skip), 1 on any other failure.
from_archive() {
    local mirror=${MIRROR:-}
    if [ -z "$mirror" ]; then
        mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
    fi
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    say "no usable cache; fetching from Debian's archive $mirror ($SUITE)"
    local work=$NEW/.apt
    mkdir -p "$work"/{lists/partial,archives/partial,debs,x}
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || die "$keyring is missing (Debian package debian-archive-keyring)"
    echo "deb [signed-by=$keyring] $mirror $SUITE main" >"$work/sources.list"
    local apt_o=(-o APT::Architecture=riscv64 -o APT::Architectures=riscv64
        -o Dir::State::Lists="$work/lists" -o Dir::State::Status=/dev/null
        -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Cache::Archives="$work/archives" -o Dir::Cache="$work" -o Debug::NoLocking=1)
    if ! apt-get "${apt_o[@]}" -q --error-on=any update >"$work/update.log" 2>&1; then
        if grep -qiE "could not resolve|could not connect|connection failed|unable to connect|temporary failure|network is unreachable|connection timed out" "$work/update.log"; then
            sed 's/^/    /' "$work/update.log" >&2
            echo "fetch-linux-guest: Debian's archive is unreachable and there is no cache at $CACHE" >&2
            exit 3
        fi
        sed 's/^/    /' "$work/update.log" >&2
        die "apt-get update failed"
    fi
    local kver=${KVER:-}
    if [ -z "$kver" ]; then
        kver=$(apt-cache "${apt_o[@]}" depends linux-image-riscv64 |
            sed -n 's/.*Depends: linux-image-\(.*-riscv64\)$/\1/p' | head -1)
    fi
    [ -n "$kver" ] || die "could not resolve the current riscv64 kernel in $SUITE"
    say "kernel $kver"
    # Newer kernels split the image (linux-binary-*) from the modules (linux-modules-*); older
    # ones ship both in linux-image-*.
    local pkgs=(busybox-static)
    if apt-cache "${apt_o[@]}" show "linux-binary-$kver" >/dev/null 2>&1; then
        pkgs+=("linux-binary-$kver" "linux-modules-$kver")
    else
        pkgs+=("linux-image-$kver")
    fi
    (cd "$work/debs" && apt-get "${apt_o[@]}" -q download "${pkgs[@]}" >"$work/download.log" 2>&1) || {
        sed 's/^/    /' "$work/download.log" >&2
        die "apt-get download ${pkgs[*]} failed"
    }
    local d
    for d in "$work"/debs/*.deb; do
        say "unpacking $(basename "$d")"
        dpkg-deb -x "$d" "$work/x"
    done
    local mdir=$work/x/usr/lib/modules/$kver
    [ -d "$mdir" ] || mdir=$work/x/lib/modules/$kver
    [ -d "$mdir/kernel" ] || die "no modules for $kver in the packages"
    local kimg
    kimg=$(find "$work/x/boot" "$mdir" -maxdepth 1 -name "vmlinu[xz]*" -print -quit 2>/dev/null || true)
    [ -n "$kimg" ] || die "no kernel image in the packages"
    case "$(od -An -tx1 -N2 "$kimg" | tr -d ' ')" in
        1f8b) gzip -dc "$kimg" >"$NEW/Image" ;;
        *) cp "$kimg" "$NEW/Image" ;;
    esac
    local bb
    bb=$(find "$work/x/bin" "$work/x/usr/bin" -name busybox -print -quit 2>/dev/null || true)
    [ -n "$bb" ] || die "no busybox in busybox-static"
    cp "$bb" "$NEW/busybox"

    # The package leaves modules.dep to the installer: read each module's dependencies from its
    # own .modinfo "depends=" field and emit dependencies first.
    unpack() { case "$1" in *.xz) xz -dc "$1" ;; *.zst) zstd -qdc "$1" ;; *.gz) gzip -dc "$1" ;; *) cat "$1" ;; esac; }
    find_ko() { find "$mdir/kernel" \( -name "$1.ko" -o -name "$1.ko.*" \) -print -quit; }
    declare -A seen=()
    add_module() {
        local m=${1//-/_} f dep n
        [ -n "${seen[$m]:-}" ] && return 0
        seen[$m]=1
        f=$(find_ko "$m")
        [ -n "$f" ] || f=$(find_ko "${m//_/-}")
        if [ -z "$f" ]; then
            say "$1 is built into the kernel"
            return 0
        fi
        for dep in $(unpack "$f" | strings | sed -n 's/^depends=//p' | tr ',' ' '); do add_module "$dep"; done
        n=$(basename "$f")
        n=${n%.xz}; n=${n%.zst}; n=${n%.gz}
        unpack "$f" >"$NEW/modules/$n"
        echo "$n" >>"$NEW/modules/load-order"
    }
    : >"$NEW/modules/load-order"
    local m
    for m in $ROOT_MODULES; do add_module "$m"; done
    {
        echo "source=archive $mirror $SUITE"
        echo "kernel=$kver"
        for d in "$work"/debs/*.deb; do dpkg-deb -f "$d" Package Version | paste -sd' '; done
    } >"$NEW/MANIFEST.txt"
    rm -rf "$work"
}

fetch() {
    # Build the new output next to the old one and swap it in at the end, so an interrupted fetch
    # never leaves a half-written guest that looks complete.
    NEW=$(mktemp -d "$OUT.new.XXXXXX")
    chmod 755 "$NEW"
    trap 'rm -rf "$NEW"' EXIT
    mkdir -p "$NEW/modules"

    if cache_ok; then
        from_cache
    else
        [ "$use_cache" = 0 ] || say "no cache at $CACHE (TESSERA_GUEST_CACHE)"
        from_archive
    fi

    if [ ! -f "$NEW/fw_dynamic.bin" ]; then
        [ -f "$HOST_FW" ] || die "$HOST_FW is missing (Debian package opensbi; scripts/setup.sh installs it)"
        cp "$HOST_FW" "$NEW/fw_dynamic.bin"
        echo "fw_dynamic.bin=host $HOST_FW ($(dpkg-query -W -f='opensbi ${Version}' opensbi 2>/dev/null || echo 'opensbi, version unknown'))" >>"$NEW/MANIFEST.txt"
    fi

    is_riscv_image "$NEW/Image" || die "the kernel is not a raw RISC-V Image (no RISCV magic at 0x30)"
    file_type=$(od -An -c -j 1 -N 3 "$NEW/busybox" | tr -d ' ')
    [ "$file_type" = "ELF" ] || die "busybox is not an ELF file"
    [ -s "$NEW/modules/load-order" ] || die "no modules"
    chmod 755 "$NEW" "$NEW/modules" "$NEW/busybox"
    chmod 644 "$NEW/Image" "$NEW/fw_dynamic.bin" "$NEW/MANIFEST.txt" "$NEW"/modules/*
    (cd "$NEW" && find . -type f ! -name SHA256SUMS ! -name MANIFEST.txt -printf '%P\n' | sort | xargs sha256sum >SHA256SUMS)

    # The disk image is the user's data: it survives a fetch.
    [ ! -f "$OUT/disk.img" ] || mv "$OUT/disk.img" "$NEW/disk.img"
    rm -rf "$OUT"
    mv "$NEW" "$OUT"
    trap - EXIT
    say "kernel Image $(stat -c %s "$OUT/Image") bytes, busybox, fw_dynamic.bin, $(wc -l <"$OUT/modules/load-order") modules -> $OUT"
}

[ "$fetched" = 1 ] || fetch

# What deploy/machines/linux.toml boots besides the kit: the initramfs and an ext4 disk.
INITRAMFS_SRC=$ROOT/tests/guests/linux
if [ ! -f "$OUT/initramfs.cpio" ] || [ "$INITRAMFS_SRC/init" -nt "$OUT/initramfs.cpio" ] ||
    [ "$INITRAMFS_SRC/build-initramfs.sh" -nt "$OUT/initramfs.cpio" ] ||
    [ "$OUT/SHA256SUMS" -nt "$OUT/initramfs.cpio" ]; then
    sh "$INITRAMFS_SRC/build-initramfs.sh" "$OUT" "$OUT/initramfs.cpio" | sed 's/^/fetch-linux-guest: /'
else
    say "initramfs.cpio is up to date"
fi
if [ ! -f "$OUT/disk.img" ]; then
    command -v mkfs.ext4 >/dev/null 2>&1 || PATH=$PATH:/sbin:/usr/sbin
    command -v mkfs.ext4 >/dev/null 2>&1 || die "mkfs.ext4 not found (Debian package e2fsprogs)"
    rm -f "$OUT/disk.img.tmp"
    truncate -s 64M "$OUT/disk.img.tmp"
    mkfs.ext4 -q -F -L tessera "$OUT/disk.img.tmp"
    mv "$OUT/disk.img.tmp" "$OUT/disk.img"
    say "made disk.img (64 MiB, ext4)"
else
    say "disk.img exists, kept"
fi
