"""HTTP mode, Upgrade: a WebSocket upgrade request reaches the backend with
its identity headers (spoofed copies removed); once the backend answers
101, bytes pass both ways untouched. A backend that declines the upgrade
leaves the connection in HTTP, parsed and stripped as before."""
import os
import time

import pytest

from http_apps import sdhttp
from http_apps.fixtures import http_sd, recorder, h1  # noqa: F401
from http_apps.sdhttp import build_request, wait_http

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(path="/ws", extra=()):
    return build_request("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                       ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]
                         + list(extra))


def switch(conn, req):
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + sdhttp.ws_accept(req.get("Sec-WebSocket-Key")).encode()
                 + b"\r\n\r\n")


def raw_echo_after_101(conn, req, rec):
    switch(conn, req)
    conn.settimeout(10)
    for _ in range(100000):
        d = conn.recv(65536)
        if not d:
            rec.ended = "eof"
            return
        rec.raw += d
        conn.sendall(d)


def ws_echo_after_101(conn, req, rec):
    """A real (minimal) WebSocket echo server: unmasks client frames, echoes
    text and binary frames unmasked, answers a close."""
    switch(conn, req)
    conn.settimeout(10)

    def exact(n):
        b = b""
        while len(b) < n:
            d = conn.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b

    for _ in range(1000):
        op, data = sdhttp.ws_read_frame(exact)
        if op == 8:
            conn.sendall(sdhttp.ws_frame(data[:2], opcode=8))
            return
        conn.sendall(sdhttp.ws_frame(data, opcode=op))


def test_websocket_raw_tunnel(http_sd, recorder, h1, pki):
    rec = recorder(lambda req, b: raw_echo_after_101 if req.get("Upgrade") else sdhttp.echo_json(req, b))
    sd = http_sd(rec.target)
    with h1(sd.port, timeout=10) as c:
        peer = c.peer
        c.send(upgrade_request(extra=[("Client-Cert", ":U1BPT0ZFRA==:"),
                                      ("X_Forwarded_For", "6.6.6.6")]))
        r = c.response()
        assert r.status == 101, r
        assert r.get("Sec-WebSocket-Accept") == sdhttp.ws_accept(KEY)
        assert "websocket" in r.tokens("upgrade") and "upgrade" in r.tokens("connection"), r
        for payload in (b"raw-1", os.urandom(300000), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
            c.send(payload)
            assert c.rd.exact(len(payload), timeout=10) == payload
    q = rec.wait_requests(1)[0]
    assert q.target == "/ws"
    assert q.all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)], q.headers
    assert q.all("X-Forwarded-For") == [] and q.all("X_Forwarded_For") == []
    assert "websocket" in (q.get("Upgrade") or "").lower()
    assert "upgrade" in [t.strip().lower() for t in (q.get("Connection") or "").split(",")], \
        "the backend did not get Connection: Upgrade"
    assert q.get("Sec-WebSocket-Key") == KEY and q.get("Sec-WebSocket-Version") == "13"
    assert rec.wait_ended(0, 5) == "eof", "tunnel not closed at the backend after the client left"
    rid = q.get("X-Steeldoor-Request-Id")
    e = wait_http(sd, lambda e: e.get("request_id") == rid)
    assert e["status"] == 101, e
    e = sd.wait_conn(peer)
    assert e["result"] == "ok", e
    assert e["bytes_in"] > 300000 and e["bytes_out"] > 300000, e


def test_websocket_client_library(http_sd, recorder, good_ctx, pki):
    websocket = pytest.importorskip("websocket")
    rec = recorder(lambda req, b: ws_echo_after_101)
    sd = http_sd(rec.target)
    ws = websocket.create_connection("wss://localhost:%d/chat" % sd.port, timeout=5,
                                     sslopt={"context": good_ctx},
                                     header=["Client-Cert: :U1BPT0ZFRA==:"])
    try:
        for msg in ("hello", "x" * 70000, "last"):
            ws.send(msg)
            assert ws.recv() == msg
        ws.send_binary(b"\x00\x01\x02")
        assert ws.recv() == b"\x00\x01\x02"
    finally:
        ws.close()
    q = rec.wait_requests(1)[0]
    assert q.target == "/chat"
    assert q.all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)]


def test_upgrade_declined_stays_http(http_sd, recorder, h1, pki):
    """The backend answers the upgrade request with a plain response: the
    next bytes on the connection are a request again, parsed and stripped."""
    def declined(req, b):
        if req.get("Upgrade"):
            return b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope"
        return sdhttp.echo_json(req, b)

    rec = recorder(declined)
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(upgrade_request())
        r = c.response()
        assert r.status == 426 and r.body == b"nope", r
        c.send(b"GET /after HTTP/1.1\r\nHost: localhost\r\nClient-Cert: :U1BPT0ZFRA==:\r\n\r\n")
        r = c.response()
        assert r.status == 200, r
    q = rec.wait_requests(2)
    assert [x.target for x in q] == ["/ws", "/after"]
    assert q[1].all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)]
    assert b"U1BPT0ZFRA" not in rec.all_raw()


def test_upgrade_misdirected_never_tunnels(http_sd, recorder, h1):
    rec = recorder(lambda req, b: raw_echo_after_101)
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade")],
                             host="other.example") + b"raw bytes for the tunnel")
        sdhttp.assert_refusal(c.response(), 421, "http_misdirected")
        assert c.wait_closed(3)
    time.sleep(0.2)
    assert rec.count == 0 or rec.all_raw() == b""


def test_h2c_upgrade_is_not_a_tunnel(http_sd, recorder, h1, pki):
    """h2c smuggling: if an `Upgrade: h2c` request reached a backend that
    speaks h2c and it answered 101, the client would then talk HTTP/2 to
    the backend through an opaque tunnel, with whatever identity headers it
    likes in every stream. steeldoor must not let that upgrade happen."""
    def backend(req, b):
        if "h2c" in (req.get("Upgrade") or "").lower():
            def go(conn, r, rec):
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             b"Upgrade: h2c\r\n\r\n")
                _echo(conn, rec)
            return go
        return sdhttp.echo_json(req, b)

    rec = recorder(backend)
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/h2c", [("Upgrade", "h2c"),
                                             ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
                                             ("Connection", "Upgrade, HTTP2-Settings")]))
        r = c.response()
        assert r.status != 101, "an h2c upgrade was let through: the connection is now a " \
            "tunnel that carries no identity and strips nothing (%r)" % r
        try:
            c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            c.wait_closed(2)
        except (OSError, sdhttp.ProtocolError):
            pass
    time.sleep(0.2)
    assert b"PRI * HTTP/2.0" not in rec.all_raw(), "HTTP/2 bytes reached the backend raw"


def _echo(conn, rec):
    conn.settimeout(5)
    for _ in range(1000):
        d = conn.recv(65536)
        if not d:
            return
        rec.raw += d
        conn.sendall(d)
