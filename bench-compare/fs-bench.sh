#!/usr/bin/env bash
# bench-compare on other file systems: loop-mounted ext4 WITH a journal and xfs, each on an
# image file under $IMG_DIR (default /var/tmp). Run as root. For each file system it
# creates the image, mkfs's and mounts it, runs bench-compare with --dir on the mount
# (holding /tmp/chunkwal-build.lock, like every build and benchmark on this machine),
# writes bench-compare/results-<fs>.json and the docs/benchmarks.md section <fs>, then
# unmounts and removes the image.
#
#   sudo bench-compare/fs-bench.sh [--setup-only] [-- bench-compare flags...]
#
# Flags after `--` go to bench-compare (default: the full run, see DEFAULT_ARGS).
# --setup-only: mkfs, mount, write and sync a file, unmount, remove; no benchmark.
# Environment: IMG_DIR (/var/tmp), SIZE (4G), FILESYSTEMS ("ext4-journal xfs"),
# CARGO_TARGET_DIR (/work/target-bench), SKIP_BUILD=1 to use an existing binary.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOCK=/tmp/chunkwal-build.lock
IMG_DIR=${IMG_DIR:-/var/tmp}
SIZE=${SIZE:-4G}
FILESYSTEMS=${FILESYSTEMS:-"ext4-journal xfs"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
BIN=$CARGO_TARGET_DIR/release/bench-compare
DEFAULT_ARGS=(--rounds 5 --reopens 1)

setup_only=0
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --setup-only) setup_only=1; shift ;;
        --) shift; args=("$@"); break ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (bench-compare flags go after --)" >&2; exit 2 ;;
    esac
done
[ ${#args[@]} -gt 0 ] || args=("${DEFAULT_ARGS[@]}")

if [ "$(id -u)" != 0 ]; then
    echo "fs-bench.sh: run as root (mkfs, mount)" >&2
    exit 1
fi

need_xfs=0
for fs in $FILESYSTEMS; do [ "$fs" = xfs ] && need_xfs=1; done
if [ $need_xfs = 1 ] && ! command -v mkfs.xfs >/dev/null; then
    apt-get update -qq && apt-get install -y -qq xfsprogs
fi

if [ $setup_only = 0 ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$HERE" && flock "$LOCK" cargo build --release)
fi

mnt=""
img=""
cleanup() {
    if [ -n "$mnt" ] && mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi
    [ -n "$mnt" ] && rmdir "$mnt" 2>/dev/null || true
    [ -n "$img" ] && rm -f "$img"
    mnt=""
    img=""
}
trap cleanup EXIT INT TERM

mkfs_for() {
    case $1 in
        ext4-journal) mkfs.ext4 -F -q "$2" ;;   # the default ext4 has a journal
        xfs) mkfs.xfs -f -q "$2" ;;
        *) echo "unknown file system $1" >&2; return 2 ;;
    esac
}

title_for() {
    case $1 in
        ext4-journal) echo "ext4 with a journal (loop-mounted $SIZE image under $IMG_DIR)" ;;
        xfs) echo "xfs (loop-mounted $SIZE image under $IMG_DIR)" ;;
    esac
}

for fs in $FILESYSTEMS; do
    img=$IMG_DIR/chunkwal-bench-$fs.img
    mnt=$IMG_DIR/chunkwal-bench-$fs.mnt
    rm -f "$img"
    truncate -s "$SIZE" "$img"
    mkfs_for "$fs" "$img"
    mkdir -p "$mnt"
    mount -o loop "$img" "$mnt"
    echo "== $fs: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS "$mnt")"
    if [ "$fs" = ext4-journal ]; then
        dumpe2fs -h "$(findmnt -n -o SOURCE "$mnt")" 2>/dev/null | grep -i 'features' || true
    fi
    if [ $setup_only = 1 ]; then
        dd if=/dev/urandom of="$mnt/probe" bs=1M count=4 conv=fdatasync status=none
        ls -l "$mnt"
    else
        flock "$LOCK" "$BIN" --dir "$mnt" --out "$HERE/results-$fs.json" \
            --section "$fs" --title "$(title_for "$fs")" "${args[@]}"
    fi
    cleanup
    echo "== $fs: unmounted, image removed"
done
