#!/bin/sh
# demo.sh - `make run`: a dev PKI, a demo backend, steeldoor in front of it,
# one request that passes with a client certificate and one refused without.
# Stays up until Ctrl-C when run from a terminal; otherwise stops by itself.
set -eu
cd "$(dirname "$0")/.."
SD=build/steeldoor
DIR=demo
PKI=$DIR/pki
LISTEN_PORT=${DEMO_PORT:-8443}
BACKEND_PORT=${DEMO_BACKEND_PORT:-8080}

mkdir -p "$DIR/www"
if [ ! -f "$PKI/ca.crt" ]; then
    $SD pki init --dir "$PKI"
    $SD pki issue --dir "$PKI" --name api --server --dns localhost --ip 127.0.0.1
    $SD pki issue --dir "$PKI" --name billing --client --uri spiffe://example.org/billing
fi
echo "hello from the protected service" > "$DIR/www/index.html"

pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for port in "$LISTEN_PORT" "$BACKEND_PORT"; do
    if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port))!=0)"; then
        echo "steeldoor demo: port $port is in use; set DEMO_PORT / DEMO_BACKEND_PORT" >&2
        exit 1
    fi
done

python3 -m http.server "$BACKEND_PORT" --bind 127.0.0.1 --directory "$DIR/www" \
    >"$DIR/backend.log" 2>&1 &
pids="$pids $!"
$SD serve --listen "127.0.0.1:$LISTEN_PORT" --target "127.0.0.1:$BACKEND_PORT" \
    --cert "$PKI/api.crt" --key "$PKI/api.key" --cacert "$PKI/ca.crt" --allow-all \
    --name demo 2>"$DIR/steeldoor.log" &
pids="$pids $!"

i=0
until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$BACKEND_PORT/" &&
      grep -q '"event":"worker_started"' "$DIR/steeldoor.log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 50 ]; then
        echo "steeldoor demo: did not start; see $DIR/steeldoor.log:" >&2
        cat "$DIR/steeldoor.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo
echo "== steeldoor listens on https://localhost:$LISTEN_PORT -> http://127.0.0.1:$BACKEND_PORT"
echo
echo "\$ curl --cacert $PKI/ca.crt --cert $PKI/billing.crt --key $PKI/billing.key https://localhost:$LISTEN_PORT/"
curl -sS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/billing.crt" --key "$PKI/billing.key" \
    "https://localhost:$LISTEN_PORT/"
echo "   -> passed: the client certificate was verified during the handshake"
echo
echo "\$ curl --cacert $PKI/ca.crt https://localhost:$LISTEN_PORT/      # no client certificate"
if curl -sS --max-time 5 --cacert "$PKI/ca.crt" "https://localhost:$LISTEN_PORT/"; then
    echo "steeldoor demo: the request without a certificate was NOT refused" >&2
    exit 1
fi
echo "   -> refused during the TLS handshake; the backend never saw it"
sleep 0.3
echo
echo "== steeldoor's log ($DIR/steeldoor.log), one JSON line per connection:"
grep '"event":"conn"' "$DIR/steeldoor.log" || true
echo
if [ -t 0 ]; then
    echo "steeldoor keeps running; try the commands above. Ctrl-C to stop."
    wait
fi
