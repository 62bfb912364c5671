"""Backend failures: down, connect timeout, reset; and client resets."""
import socket
import ssl
import threading
import time

import pytest

import sdlib
from sdlib import tls_connect, peer_of, rst_close, closed_port


def _wait_closed(s, timeout):
    """Read until the connection ends; returns (seconds, data, how)."""
    t = time.monotonic()
    data = b""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(4096)
            if not d:
                return time.monotonic() - t, data, "eof"
            data += d
    except socket.timeout:
        return time.monotonic() - t, data, "timeout"
    except (ssl.SSLError, OSError) as e:
        return time.monotonic() - t, data, repr(e)


def test_backend_down(steeldoor, good_ctx):
    port = closed_port()
    sd = steeldoor(target="127.0.0.1:%d" % port, name="down")
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    took, data, how = _wait_closed(s, 5)
    s.close()
    assert how != "timeout", "client connection not closed within 5 s with the backend down"
    assert took < 2.0, "close took %.2fs after handshake" % took
    assert data == b""
    e = sd.wait_conn(peer)
    assert e["result"] == "error" and e["reason"] == "backend_connect_failed", e
    assert "CN=billing" in e.get("subject", ""), e
    # keeps serving: bring the backend up on that port and go through
    assert sd.running()
    b = sdlib.Backend(port=port)
    try:
        with tls_connect(good_ctx, sd.port) as s2:
            assert sdlib.echo_roundtrip(s2) == b"ping-steeldoor\n"
    finally:
        b.close()


def test_backend_connect_timeout(steeldoor, good_ctx, healthy):
    # a listener whose accept queue is full: SYNs are dropped and connect() hangs
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
            time.sleep(0.05)
        probe = sdlib.tcp_connect_result("127.0.0.1", port, timeout=0.5)
        if probe != "timeout":
            pytest.skip("could not make a hanging backend connect on this kernel (%s)" % probe)
        sd = steeldoor(target="127.0.0.1:%d" % port, extra=["--connect-timeout", "1s"])
        s = tls_connect(good_ctx, sd.port)
        peer = peer_of(s)
        took, data, how = _wait_closed(s, 6)
        s.close()
        assert how != "timeout", "not closed within 6 s with --connect-timeout 1s"
        assert 0.7 < took < 3.0, "closed after %.2fs with --connect-timeout 1s" % took
        e = sd.wait_conn(peer)
        assert e["result"] == "error" and e["reason"] == "backend_connect_timeout", e
        assert sd.running()
    finally:
        for f in fillers:
            f.close()
        lst.close()


def test_backend_reset(steeldoor, backends, good_ctx):
    n = {"i": 0}

    def first_resets(conn, backend):
        n["i"] += 1
        if n["i"] == 1:
            d = conn.recv(100)
            backend.results.append(d)
            rst_close(conn)
            return
        sdlib.echo_handler(conn, backend)

    b = backends(first_resets)
    sd = steeldoor(target=b.target)
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    s.sendall(b"hello\n")
    took, data, how = _wait_closed(s, 5)
    s.close()
    assert how != "timeout", "client not closed after backend RST"
    assert took < 2.0
    assert data == b""
    assert b.results == [b"hello\n"]
    e = sd.wait_conn(peer)
    assert e["result"] == "error" and e["reason"] == "backend_reset", e
    assert sd.running()
    with tls_connect(good_ctx, sd.port) as s2:
        assert sdlib.echo_roundtrip(s2) == b"ping-steeldoor\n"


def test_client_reset(steeldoor, backends, good_ctx):
    def wait_eof(conn, backend):
        conn.sendall(b"hi\n")
        t = time.monotonic()
        try:
            while conn.recv(4096):
                pass
            backend.results.append(("eof", time.monotonic() - t))
        except OSError as e:
            backend.results.append((repr(e), time.monotonic() - t))

    b = backends(wait_eof)
    sd = steeldoor(target=b.target)
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    assert sdlib.recv_exact(s, 3) == b"hi\n"
    rst_close(s)  # SO_LINGER 0 on the TLS socket: RST, no close_notify
    res = b.wait_results(1, timeout=5)
    assert res, "backend connection not closed after client RST"
    assert res[0][1] < 2.0, res
    e = sd.wait_conn(peer)
    assert e["result"] == "error" and e["reason"] == "client_reset", e
    assert sd.running()
