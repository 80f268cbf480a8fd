#!/usr/bin/env bash
# Installs what building, running and testing Pagezone needs, and nothing
# when it is already there: the pinned Rust toolchain with the
# x86_64-unknown-none target (rust-toolchain.toml), QEMU, Chromium with its
# WebDriver (for the browser tests), wrk (for `make bench`'s HTTP figures)
# and binutils' objcopy, which `make kernel` splits the image's debug info
# off with. Called by every Makefile target that needs one of them, so
# `make run` / `make test` work on a fresh Debian machine.
#
#   .ci/deps.sh [rust] [qemu] [browser] [bench] [objcopy]   (no argument: rust + qemu)
set -euo pipefail
cd "$(dirname "$0")/.."

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(rust qemu)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "deps: installing ${missing[*]}" >&2
    if [ $apt_updated -eq 0 ]; then sudo_if_needed apt-get update -qq; apt_updated=1; fi
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

for w in "${want[@]}"; do
    case "$w" in
        rust)
            # Auto-install is off on these machines: install the pinned
            # toolchain (and its target) from rust-toolchain.toml explicitly.
            command -v rustup >/dev/null || { echo "deps: rustup is required (https://rustup.rs)" >&2; exit 1; }
            if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
                rustup toolchain install >&2
            fi
            ;;
        qemu)
            command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
            ;;
        objcopy)
            command -v "${OBJCOPY:-objcopy}" >/dev/null || apt_install binutils
            ;;
        browser)
            { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || apt_install chromium chromium-driver
            ;;
        bench)
            command -v wrk >/dev/null || apt_install wrk
            ;;
        *) echo "deps: unknown component '$w'" >&2; exit 2 ;;
    esac
done
