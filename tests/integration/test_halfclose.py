"""Half-close in both directions."""
import hashlib
import os
import socket
import time

import pytest

from sdlib import RawTLS


def read_all_then_reply(conn, backend):
    """Reads to EOF, then replies with a digest of what it got, then closes."""
    buf = bytearray()
    while True:
        d = conn.recv(65536)
        if not d:
            break
        buf += d
    backend.results.append(("eof", bytes(buf), time.monotonic()))
    time.sleep(0.2)  # the reply clearly comes after the EOF
    conn.sendall(b"REPLY:%d:%s\n" % (len(buf), hashlib.sha256(buf).hexdigest().encode()))
    conn.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("how", ["close_notify", "close_notify_and_fin", "fin"])
def test_client_half_close(steeldoor, backends, good_ctx, how):
    b = backends(read_all_then_reply)
    sd = steeldoor(target=b.target)
    payload = os.urandom(200000)
    with RawTLS(good_ctx, sd.port) as c:
        c.handshake()
        c.send(payload)
        if how.startswith("close_notify"):
            c.send_close_notify()
        if how.endswith("fin"):
            c.send_fin()
        res = b.wait_results(1, timeout=5)
        assert res, "backend did not see EOF after the client's %s (errors %s)" % (how, b.errors)
        assert res[0][1] == payload, "backend got %d of %d bytes" % (len(res[0][1]), len(payload))
        reply = c.recv_until_eof(timeout=5)
        want = b"REPLY:%d:%s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
        assert reply == want, "after client %s, reply %r (expected %r)" % (how, reply[:100], want)
    e = sd.wait_conn(c.peer)
    assert e["result"] == "ok", e
    assert e["bytes_in"] == len(payload) and e["bytes_out"] == len(want), e


def shut_then_read(conn, backend):
    """Sends a greeting, shuts down its write side, then reads to EOF."""
    conn.sendall(b"GREETING\n")
    conn.shutdown(socket.SHUT_WR)
    buf = bytearray()
    while True:
        d = conn.recv(65536)
        if not d:
            break
        buf += d
    backend.results.append(("eof", bytes(buf)))


def test_backend_half_close(steeldoor, backends, good_ctx):
    b = backends(shut_then_read)
    sd = steeldoor(target=b.target)
    late = os.urandom(100000)
    with RawTLS(good_ctx, sd.port) as c:
        c.handshake()
        assert c.recv_exact(9) == b"GREETING\n"
        t = time.monotonic()
        d = c.recv(timeout=5)
        assert d == b"", "expected EOF after backend SHUT_WR, got %r" % d[:50]
        assert time.monotonic() - t < 3
        eof_kind = c.last_eof
        # the client can still send after the backend's EOF, and it arrives
        time.sleep(0.2)
        c.send(late)
        c.send_close_notify()
        res = b.wait_results(1, timeout=5)
        assert res, "backend never saw EOF from client (client saw %s); errors %s" % (eof_kind, b.errors)
        assert res[0][1] == late, "backend got %d of %d bytes sent after its SHUT_WR (client saw %s)" % (
            len(res[0][1]), len(late), eof_kind)
    e = sd.wait_conn(c.peer)
    assert e["result"] == "ok", e
    assert e["bytes_in"] == len(late) and e["bytes_out"] == 9, e


def test_backend_eof_is_signalled_with_close_notify(steeldoor, backends, good_ctx):
    """A backend EOF must reach the client as a TLS close_notify, not a bare TCP
    FIN (which a TLS client cannot tell from truncation)."""
    b = backends(shut_then_read)
    sd = steeldoor(target=b.target)
    with RawTLS(good_ctx, sd.port) as c:
        c.handshake()
        assert c.recv_exact(9) == b"GREETING\n"
        assert c.recv(timeout=5) == b""
        assert c.last_eof == "close_notify", "client saw %s instead of close_notify" % c.last_eof
