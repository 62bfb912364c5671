#!/bin/sh
# check-hardening.sh - fails unless a built binary carries the hardening the
# Makefile asks for, so a flag that silently drops (a user CFLAGS, a new
# compiler, a rule that forgets SD_ALL_*) is caught by `make test`:
#   PIE          ELF type DYN (position-independent executable)
#   full RELRO   a GNU_RELRO segment and BIND_NOW (-z relro -z now)
#   stack        __stack_chk_fail imported (-fstack-protector-strong)
#   fortify      at least one __*_chk function imported (_FORTIFY_SOURCE);
#                skipped with --no-fortify (-O0 and sanitizer builds)
#   scripts/check-hardening.sh [--no-fortify] BINARY
set -eu

fortify=1
if [ "${1:-}" = "--no-fortify" ]; then
    fortify=0
    shift
fi
bin=${1:?usage: $0 [--no-fortify] BINARY}
command -v readelf >/dev/null 2>&1 || { echo "check-hardening: readelf missing (binutils)" >&2; exit 1; }
[ -f "$bin" ] || { echo "check-hardening: $bin: no such file" >&2; exit 1; }

fail=0
bad() {
    echo "check-hardening: $bin: $*" >&2
    fail=1
}

readelf -h "$bin" | grep -Eq 'Type:[[:space:]]+DYN' || bad "not PIE (ELF type is not DYN): -fPIE/-pie missing"
readelf -lW "$bin" | grep -q 'GNU_RELRO' || bad "no GNU_RELRO segment: -Wl,-z,relro missing"
readelf -dW "$bin" | grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW|\(BIND_NOW\)' ||
    bad "not BIND_NOW (partial RELRO only): -Wl,-z,now missing"
syms=$(readelf --dyn-syms -W "$bin")
echo "$syms" | grep -q '__stack_chk_fail' || bad "no stack protector (__stack_chk_fail not imported)"
if [ "$fortify" = 1 ]; then
    echo "$syms" | grep -Eq ' __[a-z0-9_]+_chk(@|$)' ||
        bad "no fortified function (__*_chk) imported: _FORTIFY_SOURCE missing"
fi
[ "$fail" = 0 ] && echo "check-hardening: $bin: PIE, full RELRO, stack protector$([ "$fortify" = 1 ] && echo ", fortified")"
exit "$fail"
