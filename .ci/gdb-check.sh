#!/usr/bin/env bash
# Checks what README's "Debugging" section promises, with a real gdb in
# batch mode: `make debug` boots the image halted with QEMU's gdb stub on
# :1234, and the gdb command it prints finds the symbols (in
# target/pagezone.debug, through the stripped image's .gnu_debuglink),
# sets a breakpoint on `unikernel::kmain` and stops there.
#
#   .ci/gdb-check.sh        (needs gdb; uses port 1234 like `make debug`)
#   MACHINE=microvm .ci/gdb-check.sh     the same on QEMU's microvm
# (With more than one CPU gdb says "Thread 1 hit Breakpoint 1, …".)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gdb >/dev/null || { echo "gdb-check: gdb is not installed" >&2; exit 2; }

log=$(mktemp)
setsid make debug >"$log" 2>&1 </dev/null &
pid=$!
trap 'kill -- -"$pid" 2>/dev/null || true; rm -f "$log"' EXIT

# `make debug` builds first; QEMU's command line is its last line. gdb
# retries the connection on its own (`set tcp auto-retry`) for 15 s.
for _ in $(seq 1200); do
    grep -q '^qemu-system-x86_64 ' "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.25
done
cmd=$(sed -n 's/^  \(gdb .*\)$/\1/p' "$log")
[ -n "$cmd" ] || { echo "gdb-check: make debug printed no gdb command" >&2; cat "$log" >&2; exit 1; }
echo "gdb-check: $cmd"
out=$(eval "timeout 120 ${cmd/#gdb /gdb -batch } -ex 'bt 1' -ex kill" 2>&1) || true
echo "$out"
# The image has no symbols of its own: a breakpoint that resolves to a
# source line came from target/pagezone.debug.
if readelf -S target/pagezone.elf | grep -q '\.symtab'; then
    echo "gdb-check: target/pagezone.elf is not stripped" >&2
    exit 1
fi
if grep -q '^Breakpoint 1 at 0x[0-9a-f]*: file unikernel/kernel/src/main.rs' <<<"$out" \
    && grep -Eq '^(Thread [0-9]+ hit )?Breakpoint 1, unikernel::kmain ' <<<"$out"; then
    echo "gdb-check: OK (stripped image, symbols from target/pagezone.debug, stopped in unikernel::kmain)"
else
    echo "gdb-check: FAILED" >&2
    exit 1
fi
