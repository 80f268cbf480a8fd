#!/usr/bin/env bash
# Installs what building, running and testing Pagezone needs, and nothing
# when it is already there: the pinned Rust toolchain with the
# x86_64-unknown-none target (rust-toolchain.toml), QEMU, Chromium with its
# WebDriver (for the browser tests), wrk and valgrind (for `make bench`'s
# HTTP figures and instruction counts)
# and binutils' objcopy, which `make kernel` splits the image's debug info
# off with; Prometheus, promtool and node_exporter (Debian packages, for
# the /metrics test) and schemathesis (pinned, from PyPI into a venv under
# the user's cache dir, never the system's Python; for the OpenAPI test).
# Called by every Makefile target that needs one of them, so
# `make run` / `make test` work on a fresh Debian machine.
#
#   .ci/deps.sh [rust] [qemu] [browser] [bench] [objcopy] [prometheus] [schemathesis]
#   (no argument: rust + qemu)
#
# The schemathesis venv is $PAGEZONE_CACHE/schemathesis-$SCHEMATHESIS_VERSION
# (PAGEZONE_CACHE defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/pagezone);
# tests/tests/openapi.rs looks for it there.
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
            # q35 boots under qboot (`-bios qboot.rom`, Debian's
            # qemu-system-data, which qemu-system-x86 depends on).
            [ -e /usr/share/qemu/qboot.rom ] || apt_install qemu-system-data
            ;;
        objcopy)
            command -v "${OBJCOPY:-objcopy}" >/dev/null || apt_install binutils
            ;;
        browser)
            { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || apt_install chromium chromium-driver
            ;;
        bench)
            command -v wrk >/dev/null || apt_install wrk
            # The instruction-count tables (benches/src/lib.rs: InstrCount).
            command -v valgrind >/dev/null || apt_install valgrind
            ;;
        prometheus)
            { command -v prometheus >/dev/null && command -v promtool >/dev/null; } || apt_install prometheus
            command -v prometheus-node-exporter >/dev/null || apt_install prometheus-node-exporter
            ;;
        schemathesis)
            # schemathesis 3.39 needs a hypothesis of its time (later ones
            # dropped an API it uses): both pinned.
            version="${SCHEMATHESIS_VERSION:-3.39.16}"
            hypothesis=6.130.0
            cache="${PAGEZONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pagezone}"
            venv="$cache/schemathesis-$version"
            if ! { [ -x "$venv/bin/st" ] && "$venv/bin/python" -c "import hypothesis, sys; sys.exit(hypothesis.__version__ != '$hypothesis')" 2>/dev/null; }; then
                command -v python3 >/dev/null || apt_install python3
                mkdir -p "$cache"
                [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv"; }
                echo "deps: installing schemathesis==$version, hypothesis==$hypothesis into $venv" >&2
                "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version" "hypothesis==$hypothesis" >&2
            fi
            ;;
        *) echo "deps: unknown component '$w'" >&2; exit 2 ;;
    esac
done
