"""Handshake and idle timeouts."""
import socket
import ssl
import time

import sdlib
from sdlib import tls_connect, peer_of


def _closed_after(sock, timeout):
    sock.settimeout(timeout)
    t = time.monotonic()
    try:
        while True:
            d = sock.recv(4096)
            if not d:
                return time.monotonic() - t
    except socket.timeout:
        return None
    except OSError:
        return time.monotonic() - t


def test_handshake_timeout_silent_client(steeldoor, backends, good_ctx, healthy):
    rec = backends()
    sd = steeldoor(target=rec.target, extra=["--handshake-timeout", "1s"])
    s = socket.create_connection(("127.0.0.1", sd.port), timeout=5)
    peer = "127.0.0.1:%d" % s.getsockname()[1]
    took = _closed_after(s, 6)
    s.close()
    assert took is not None, "silent client still connected after 6 s with --handshake-timeout 1s"
    assert 0.7 < took < 3.0, "closed after %.2fs" % took
    e = sd.wait_conn(peer)
    assert e["result"] == "refused" and e["reason"] == "handshake_timeout", e
    assert rec.count == 0
    healthy(sd.port, good_ctx)


def test_handshake_timeout_is_total_not_per_read(steeldoor, backends, good_ctx):
    """A client dribbling a ClientHello byte by byte is still cut at the deadline."""
    rec = backends()
    sd = steeldoor(target=rec.target, extra=["--handshake-timeout", "1s"])
    # a real ClientHello, captured from an SSLObject
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = good_ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert len(hello) > 100
    s = socket.create_connection(("127.0.0.1", sd.port), timeout=5)
    peer = "127.0.0.1:%d" % s.getsockname()[1]
    t = time.monotonic()
    closed = None
    try:
        for i in range(40):  # at most 40 * 0.2 s = 8 s
            s.send(hello[i:i + 1])
            time.sleep(0.2)
    except OSError:
        closed = time.monotonic() - t
    if closed is None:
        took = _closed_after(s, 0.5)
        closed = None if took is None else time.monotonic() - t
    s.close()
    assert closed is not None, "dribbling client kept the handshake open for 8 s"
    assert closed < 3.5, "dribbling client cut only after %.1fs" % closed
    e = sd.wait_conn(peer)
    assert e["result"] == "refused" and e["reason"] == "handshake_timeout", e


def test_idle_timeout(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, extra=["--idle-timeout", "1s"])
    # positive control: an active connection outlives the idle timeout
    with tls_connect(good_ctx, sd.port) as s:
        for i in range(8):  # 8 * 0.3 s = 2.4 s of activity
            assert sdlib.echo_roundtrip(s, b"tick%d\n" % i) == b"tick%d\n" % i
            time.sleep(0.3)
    # an idle one is closed after ~1 s
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    took = _closed_after(s, 6)
    s.close()
    assert took is not None, "idle connection still open after 6 s with --idle-timeout 1s"
    assert 0.7 < took < 3.0, "idle close after %.2fs" % took
    e = sd.wait_conn(peer)
    assert e["result"] == "error" and e["reason"] == "idle_timeout", e
    assert e["bytes_in"] == len(b"ping-steeldoor\n")
