#!/bin/sh
# deps.sh - installs the Debian packages steeldoor needs for a purpose, when
# run as root; otherwise prints the exact command to run and fails.
#   scripts/deps.sh build|run|test|bench|fuzz
set -eu

build="gcc make pkg-config libssl-dev libyaml-dev libjansson-dev openssl"
case "${1:-build}" in
build) want="$build" ;;
run)   want="$build curl python3" ;;
test)  want="$build binutils curl python3 python3-pytest python3-cryptography libcmocka-dev libjansson-dev libhttp-parser-dev procps iproute2 nginx-light haproxy gunicorn python3-flask python3-websocket python3-jwt prometheus python3-prometheus-client mandoc man-db systemd" ;;
bench) want="$build curl python3 nginx-light libnginx-mod-stream haproxy stunnel4" ;;
fuzz)  want="$build clang libclang-rt-14-dev libjansson-dev" ;;
*) echo "usage: $0 build|run|test|bench|fuzz" >&2; exit 2 ;;
esac

# libFuzzer ships in clang's runtime package; a clang without it (or a
# broken one) fails here with a clear message, not in the middle of a build.
check_fuzz() {
    [ "${1:-build}" = fuzz ] || return 0
    tmp=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        > "$tmp/t.c"
    if ! clang -fsanitize=fuzzer,address,undefined -o "$tmp/t" "$tmp/t.c" 2>"$tmp/err" ||
       ! "$tmp/t" -runs=1 >/dev/null 2>&1; then
        echo "steeldoor: clang cannot build a libFuzzer target (clang -fsanitize=fuzzer):" >&2
        cat "$tmp/err" >&2
        rm -rf "$tmp"
        exit 1
    fi
    rm -rf "$tmp"
}

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    check_fuzz "${1:-build}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "steeldoor: missing Debian packages:$missing" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "steeldoor: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Debian's service policy may try to start daemons (nginx, haproxy) on
# install; the benchmark starts its own copies, so their services stay off.
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
check_fuzz "${1:-build}"
