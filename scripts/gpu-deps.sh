#!/usr/bin/env bash
# Debian -dev packages for building glint on the GPU machine, which has the CUDA toolkit but no
# -dev headers and no network (DESIGN.md §2).
#   On the dev machine (network):  scripts/gpu-deps.sh download   -> .debs/*.deb (git-ignored)
#   On the GPU machine:            scripts/gpu-deps.sh unpack DIR -> DIR/usr/{include,lib/...}
# libgnutls30 is not carried: Debian's needs a libunistring the GPU machine lacks, and the machine's
# own gnutls serves libmicrohttpd.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
packages="libjansson4 libjansson-dev libpcre2-8-0 libpcre2-dev libutf8proc2 libutf8proc-dev libmicrohttpd12 libmicrohttpd-dev"
# pkg-config itself, for a machine image without it (used only when `pkg-config` is missing there)
packages="$packages pkgconf-bin libpkgconf3"

case "${1:-download}" in
download)
    mkdir -p "$root/.debs"
    cd "$root/.debs"
    apt-get download $packages
    ls -l "$root/.debs"
    # NVIDIA ModelOpt for tools/quant/crosscheck_modelopt.py (pure Python; the GPU machine has torch)
    mkdir -p "$root/.whl"
    pip download --no-deps -q -d "$root/.whl" nvidia-modelopt==0.47.0
    ls -l "$root/.whl"
    ;;
unpack)
    prefix=${2:-/tmp/deps}
    mkdir -p "$prefix"
    for deb in "$root"/.debs/*.deb; do dpkg -x "$deb" "$prefix"; done
    # libmicrohttpd.pc names gnutls as a private requirement, whose .pc the machine lacks (its
    # runtime library is there, which is all a shared link needs).
    sed -i '/^Requires.private: gnutls/d' "$prefix"/usr/lib/x86_64-linux-gnu/pkgconfig/libmicrohttpd.pc
    # The .pc files name prefix=/usr; PKG_CONFIG_SYSROOT_DIR maps them into the unpacked tree.
    # Dev symlinks (libfoo.so -> libfoo.so.N) are relative, so they resolve inside the prefix.
    echo "unpacked into $prefix"
    ;;
*)
    echo "usage: $0 [download | unpack DIR]" >&2
    exit 2
    ;;
esac
