#!/usr/bin/env bash
# Builds the local stand-in for the Dockerfile's base image where no container
# registry can be reached: a minimal Debian bookworm root filesystem with
# Python 3.11 and venv (debootstrap), saved as a tarball for `docker import`.
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/consumer/base-image-$VERSION/rootfs.tar
# Idempotent: returns at once when the tarball exists. Takes a few minutes once.
# The Debian mirror is the one this machine's apt uses (override with
# DEBIAN_MIRROR). Prints the tarball's path on stdout.
set -euo pipefail

VERSION=bookworm-1   # bump when the recipe below changes
SUITE=bookworm
PACKAGES=python3,python3-venv

out="${XDG_CACHE_HOME:-$HOME/.cache}/consumer/base-image-$VERSION"
tarball="$out/rootfs.tar"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi

host_mirror() {
  # First Debian archive URI of the host's apt sources (deb822 or one-line format).
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '{for (i = 2; i <= NF; i++) if ($i !~ /^\[/) {print $i; exit}}' \
            | grep -v -- '-security' | head -n1 || true)
  fi
  echo "$uri"
}

mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in the apt sources; set DEBIAN_MIRROR" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "building the base image needs root (debootstrap)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "debootstrap missing: run 'make setup'" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
cleanup() {
  # A failed debootstrap can leave /proc, /sys or /dev mounted in the target:
  # unmount them first, and never let rm cross into another file system.
  awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r \
    | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
echo "debootstrap $SUITE into $rootfs (a few minutes, once)" >&2
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" \
      >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
fi
# What an image needs no copy of: package lists, caches, docs, and the host's
# name and resolver, which the engine provides at run time.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"
tar --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
echo "$tarball"
