"""HTTP mode, Host against SNI: a request naming another server than the one
the TLS handshake was for gets 421 Misdirected Request and never reaches
the backend; the same name in another case or with a port is fine; without
SNI only an IP-literal Host is. The dev server certificate has DNS
localhost and IP 127.0.0.1."""
import time

import pytest

from http_apps.fixtures import http_sd, recorder, h1  # noqa: F401
from http_apps.sdhttp import assert_refusal, wait_reason


def misdirected(h1, sd, rec, raw, sni="localhost", marker=None):
    with h1(sd.port, sni=sni) as c:
        c.send(raw)
        r = c.response()
        body = assert_refusal(r, 421, "http_misdirected")
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], "http_misdirected")
    time.sleep(0.2)
    if marker:
        assert marker not in rec.all_raw(), "misdirected request reached the backend"
    return body


def allowed(h1, sd, rec, raw, target, sni="localhost"):
    with h1(sd.port, sni=sni) as c:
        c.send(raw)
        r = c.response()
        assert r.status == 200, "request refused: %r" % r
    assert target in [q.target for q in rec.wait_requests(1)]


MISDIRECTED = [
    ("other_host", b"GET /m1 HTTP/1.1\r\nHost: other.example\r\n\r\n", b"/m1"),
    ("other_host_port", b"GET /m2 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", b"/m2"),
    ("suffix", b"GET /m3 HTTP/1.1\r\nHost: localhost.other.example\r\n\r\n", b"/m3"),
    ("prefix", b"GET /m4 HTTP/1.1\r\nHost: evil-localhost\r\n\r\n", b"/m4"),
    ("ip_under_name_sni", b"GET /m5 HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n", b"/m5"),
    ("absolute_other", b"GET https://other.example/m6 HTTP/1.1\r\nHost: localhost\r\n\r\n",
     b"/m6"),
    ("absolute_other_http", b"GET http://other.example/m7 HTTP/1.1\r\nHost: localhost\r\n\r\n",
     b"/m7"),
    ("absolute_same_host_other",
     b"GET https://localhost/m8 HTTP/1.1\r\nHost: other.example\r\n\r\n", b"/m8"),
    ("http10_other", b"GET /m10 HTTP/1.0\r\nHost: other.example\r\n\r\n", b"/m10"),
]


@pytest.mark.parametrize("raw,marker", [pytest.param(r, m, id=i) for i, r, m in MISDIRECTED])
def test_misdirected(http_sd, recorder, h1, raw, marker):
    rec = recorder()
    sd = http_sd(rec.target)
    misdirected(h1, sd, rec, raw + b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n", marker=marker)
    # control on the same listener: the right name passes
    allowed(h1, sd, rec, b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n", "/ok")
    assert b"/smuggled" not in rec.all_raw()


ALLOWED = [
    ("exact", b"GET /a1 HTTP/1.1\r\nHost: localhost\r\n\r\n", "/a1"),
    ("upper", b"GET /a2 HTTP/1.1\r\nHost: LOCALHOST\r\n\r\n", "/a2"),
    ("mixed_port", b"GET /a3 HTTP/1.1\r\nHost: LocalHost:8443\r\n\r\n", "/a3"),
    ("port_443", b"GET /a4 HTTP/1.1\r\nHost: localhost:443\r\n\r\n", "/a4"),
    ("absolute_same", b"GET https://localhost/a5 HTTP/1.1\r\nHost: localhost\r\n\r\n",
     "https://localhost/a5"),
    ("http10_no_host", b"GET /a6 HTTP/1.0\r\n\r\n", "/a6"),
]


@pytest.mark.parametrize("raw,target", [pytest.param(r, t, id=i) for i, r, t in ALLOWED])
def test_same_name_allowed(http_sd, recorder, h1, raw, target):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(raw)
        r = c.response()
        assert r.status == 200, r
    q = rec.wait_requests(1)
    assert q and q[0].all("Client-Cert"), q
    assert q[0].target in (target, target.replace("https://localhost", "")), q[0]


def test_no_sni_ip_host_allowed_name_refused(http_sd, recorder, h1, good_ctx):
    """Connecting to 127.0.0.1 by address: Python sends no SNI for an IP
    (the certificate's IP SAN is still verified)."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port, sni="127.0.0.1") as c:
        peer = c.peer
        r = c.request("GET", "/ip1", host="127.0.0.1:%d" % sd.port)
        assert r.status == 200, r
        r = c.request("GET", "/ip2", host="127.0.0.1")
        assert r.status == 200, r
    e = sd.wait_conn(peer)
    assert not e.get("sni"), "client sent an SNI after all: %s" % e
    assert [q.target for q in rec.wait_requests(2)] == ["/ip1", "/ip2"]
    misdirected(h1, sd, rec, b"GET /ip-name HTTP/1.1\r\nHost: localhost\r\n\r\n", sni="127.0.0.1",
                marker=b"/ip-name")


def test_misdirect_on_kept_alive_connection(http_sd, recorder, h1):
    """The check is per request: the second request on the connection,
    naming another host, is refused after a good first one."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        assert c.request("GET", "/first").status == 200
        c.send(b"GET /second HTTP/1.1\r\nHost: other.example\r\n\r\n")
        assert_refusal(c.response(), 421, "http_misdirected")
        assert c.wait_closed(3)
    time.sleep(0.2)
    assert [q.target for q in rec.reqs()] == ["/first"]
    assert b"/second" not in rec.all_raw()


@pytest.mark.parametrize("host", ["localhost:443", "other.example:443", "127.0.0.1:22"])
def test_connect_refused(http_sd, recorder, h1, host):
    """CONNECT would make steeldoor a forward proxy (and a 2xx turns the
    connection into an opaque tunnel): refused, 405 (or 421 for another
    name), never forwarded."""
    rec = recorder(lambda req, b: b"HTTP/1.1 200 Connection established\r\n\r\n")
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host)).encode()
               + b"GET /inside-tunnel HTTP/1.1\r\nHost: localhost\r\nClient-Cert: :U1BPT0Y=:\r\n\r\n")
        r = c.response(method="CONNECT")
        assert r.status in (405, 421), r
        assert_refusal(r, r.status, "http_connect_refused" if r.status == 405 else "http_misdirected")
        assert c.wait_closed(3)
    time.sleep(0.2)
    assert b"CONNECT" not in rec.all_raw() and b"/inside-tunnel" not in rec.all_raw()


@pytest.mark.parametrize("target", ["https://localhost@other.example/u1", "https://other.example@localhost/u2",
                                    "http://localhost:443@other.example/u3"])
def test_absolute_form_userinfo_refused(http_sd, recorder, h1, target):
    """userinfo makes two readings of one authority possible: refused (400
    http_bad_target, or 421), never forwarded."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target).encode())
        r = c.response()
        assert r.status in (400, 421), r
        assert_refusal(r, r.status, "http_bad_target" if r.status == 400 else "http_misdirected")
        assert c.wait_closed(3)
    time.sleep(0.2)
    assert rec.all_raw() == b""
