"""HTTP mode, the backend side: response framings, keep-alive reuse from the
per-worker pool (and no reuse with --backend-pool-size 0 or
--proxy-protocol), backends that die, close, hang or say too much, and the
idle timeouts (408, 504). Scripted raw backends (http_apps/sdhttp)."""
import os
import socket
import struct
import threading
import time

import pytest

import sdlib
from sdlib import closed_port
from http_apps import sdhttp
from http_apps.fixtures import http_sd, recorder, h1  # noqa: F401
from http_apps.sdhttp import assert_refusal, build_request, wait_reason


def scripted(fn):
    """A responder that gives every request to fn(req, n) with n the
    request's global index (0-based)."""
    lock = threading.Lock()
    n = [0]

    def responder(req, backend):
        with lock:
            i = n[0]
            n[0] += 1
        return fn(req, i)
    return responder


def ok(body=b"ok", status=200, extra=b""):
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n" % (status, extra, len(body)) + body


# --------------------------------------------------------------------------
# response framings, each followed by another request on the same client
# connection (a framing read wrongly shows up there)
# --------------------------------------------------------------------------

FRAMINGS = {
    "content_length": (lambda r: ok(b"0123456789" * 100), b"0123456789" * 100, "GET"),
    "zero_length": (lambda r: ok(b""), b"", "GET"),
    "chunked": (lambda r: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n",
                b"hello world", "GET"),
    "interim_103": (lambda r: b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                    + ok(b"after-103"), b"after-103", "GET"),
    "interim_100_twice": (lambda r: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
                          + ok(b"after-1xx"), b"after-1xx", "GET"),
    "head_with_length": (lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", b"", "HEAD"),
    "head_chunked": (lambda r: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"", "HEAD"),
    "no_content_204": (lambda r: b"HTTP/1.1 204 No Content\r\n\r\n", b"", "DELETE"),
    "not_modified_304": (lambda r: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n"
                         b"ETag: \"x\"\r\n\r\n", b"", "GET"),
    "http10_backend_length": (lambda r: b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n"
                              b"Connection: keep-alive\r\n\r\nold!", b"old!", "GET"),
}


@pytest.mark.parametrize("name", list(FRAMINGS))
def test_response_framing(http_sd, recorder, h1, name):
    make, body, method = FRAMINGS[name]
    rec = recorder(scripted(lambda req, i: make(req) if i == 0 else ok(b"second")))
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        r = c.request(method, "/frame")
        assert r.body == body, "%s: body %r, expected %r (%r)" % (name, r.body[:100], body[:100], r)
        if name == "interim_103":
            assert [i.status for i in r.interim] in ([], [103]), r.interim
        r2 = c.request("GET", "/next")
        assert r2.status == 200 and r2.body == b"second", "response after %s: %r" % (name, r2)
    assert [q.target for q in rec.wait_requests(2)] == ["/frame", "/next"]


def test_close_delimited_response(http_sd, recorder, h1):
    """A response without length that ends when the backend closes: the
    client gets all of it, framed (chunked) or followed by a close."""
    big = os.urandom(200000)
    rec = recorder(scripted(lambda req, i: (b"HTTP/1.1 200 OK\r\n\r\n" + big, "close") if i == 0
                            else ok(b"second")))
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        r = c.request("GET", "/close-delimited")
        assert r.status == 200 and r.body == big, "close-delimited body cut: %d of %d bytes" % (
            len(r.body), len(big))
        if r.framing == "close":
            return
        r2 = c.request("GET", "/next")
        assert r2.body == b"second"


def test_chunked_response_streams(http_sd, recorder, h1):
    """A chunked response whose chunks come slowly: the client gets the
    first chunk before the backend sends the last."""
    first_seen = threading.Event()

    def slow(conn, req, rec):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        first_seen.wait(5)
        conn.sendall(b"4\r\nlast\r\n0\r\n\r\n")
        time.sleep(0.5)

    rec = recorder(lambda req, b: slow)
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/stream"))
        data = b""
        deadline = time.monotonic() + 3
        while b"first" not in data and time.monotonic() < deadline:
            c.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data += c.sock.recv(4096)
            except socket.timeout:
                break
        assert b"first" in data, "first chunk held back: %r" % data
        first_seen.set()


# --------------------------------------------------------------------------
# keep-alive pool
# --------------------------------------------------------------------------

def test_backend_connection_reused_across_clients(http_sd, recorder, pki):
    """--workers 1: 20 client connections one after the other share the
    backend connection; each request still carries its own client's
    identity (alternating certificates)."""
    rec = recorder()
    sd = http_sd(rec.target, workers=1)
    ctxs = [sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key),
            sdlib.client_ctx(pki.ca, *pki.pygood)]
    vals = [sdhttp.client_cert_value(pki.client_cert), sdhttp.client_cert_value(pki.pygood[0])]
    for i in range(20):
        with sdhttp.H1(ctxs[i % 2], sd.port) as c:
            r = c.request("GET", "/reuse/%d" % i)
            assert r.status == 200
    q = rec.wait_requests(20)
    assert [x.target for x in q] == ["/reuse/%d" % i for i in range(20)]
    for i, x in enumerate(q):
        assert x.all("Client-Cert") == [vals[i % 2]], \
            "request %d carried another client's identity on a reused backend connection" % i
    assert rec.count <= 2, "20 sequential requests opened %d backend connections" % rec.count
    assert len(rec.conns[0].requests) >= 10


def test_pool_size_zero_no_reuse(http_sd, recorder, good_ctx):
    rec = recorder()
    sd = http_sd(rec.target, workers=1, extra=["--backend-pool-size", "0"])
    for i in range(20):
        with sdhttp.H1(good_ctx, sd.port) as c:
            assert c.request("GET", "/nopool/%d" % i).status == 200
    rec.wait_requests(20)
    assert rec.count == 20, "--backend-pool-size 0: %d backend connections for 20 requests" % rec.count
    # and each of them was closed by steeldoor, not left hanging
    for i in range(20):
        assert rec.wait_ended(i, 3) is not None, "backend connection %d left open" % i


def test_backend_idle_timeout_closes_pooled(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target, extra=["--backend-idle-timeout", "300ms"])
    with h1(sd.port) as c:
        assert c.request("GET", "/idle").status == 200
    t = time.monotonic()
    how = rec.wait_ended(0, 4)
    took = time.monotonic() - t
    assert how == "eof", "pooled backend connection not closed after its idle timeout (%r)" % how
    assert took < 2.5, "closed after %.1fs with --backend-idle-timeout 300ms" % took


def test_backend_closing_idle_connections(http_sd, recorder, good_ctx):
    """A backend that closes kept-alive connections soon after answering
    (without saying so): requests that come later never land on a dead
    pooled connection."""
    def close_soon(conn, req, rec):
        conn.sendall(sdhttp.echo_json(req, None))
        time.sleep(0.05)

    rec = recorder(lambda req, b: close_soon)
    sd = http_sd(rec.target, workers=1)
    for i in range(8):
        time.sleep(0.25)
        with sdhttp.H1(good_ctx, sd.port) as c:
            r = c.request("GET", "/late/%d" % i)
            assert r.status == 200, "request %d after the backend closed its idle connection: %r" % (i, r)
    assert rec.count == 8


def test_proxy_protocol_one_backend_connection_per_client(http_sd, recorder, pki):
    rec = recorder(proxy_protocol=True)
    sd = http_sd(rec.target, workers=1, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    ports = []
    for i in range(3):
        with sdhttp.H1(ctx, sd.port) as c:
            ports.append(c.local_port)
            assert c.request("GET", "/pp/%d/a" % i).status == 200
            assert c.request("GET", "/pp/%d/b" % i).status == 200
    rec.wait_requests(6)
    assert rec.count == 3, "%d backend connections for 3 clients with --proxy-protocol" % rec.count
    assert not rec.errors, rec.errors
    for i, cr in enumerate(rec.conns):
        assert cr.first_bytes[:12] == sdhttp.PP2_SIG, "connection %d does not start with PROXY v2" % i
        assert [q.target for q in cr.requests] == ["/pp/%d/a" % i, "/pp/%d/b" % i]
        src_port = struct.unpack(">H", cr.pp[16 + 8:16 + 10])[0]
        assert src_port == ports[i], "PROXY header of connection %d names client port %d, not %d" % (
            i, src_port, ports[i])
        assert all(q.all("Client-Cert") for q in cr.requests)


# --------------------------------------------------------------------------
# failing backends
# --------------------------------------------------------------------------

def test_backend_dies_mid_response(http_sd, recorder, h1):
    def die(conn, req, rec):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        time.sleep(0.05)
        conn.shutdown(socket.SHUT_RDWR)

    rec = recorder(scripted(lambda req, i: die if i == 0 else ok(b"fresh")))
    sd = http_sd(rec.target, workers=1)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/dying"))
        with pytest.raises((EOFError, sdhttp.ProtocolError)):
            c.response()
        got = bytes(c.rd.all)
        assert c.rd.eof is not None or c.wait_closed(3), "client connection left open"
        assert got.count(b"HTTP/1.1") <= 1, "a second response spliced in: %r" % got
        assert b"fresh" not in got
        assert len(got) < 1000
    with h1(sd.port) as c:
        r = c.request("GET", "/after-death")
        assert r.status == 200 and r.body == b"fresh", r
    assert rec.count == 2, "the dead backend connection was reused (%d connections)" % rec.count


def test_backend_closes_before_responding(http_sd, recorder, h1):
    rec = recorder(scripted(lambda req, i: None if i == 0 else ok(b"fresh")))
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/no-answer"))
        r = c.response()
        assert r.status == 502, r
        body = assert_refusal(r, 502, r.json().get("reason"))
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], body["reason"])
    with h1(sd.port) as c:
        assert c.request("GET", "/fresh").body == b"fresh"


def test_backend_not_listening(http_sd, h1):
    sd = http_sd("127.0.0.1:%d" % closed_port())
    with h1(sd.port) as c:
        peer = c.peer
        c.send(build_request("GET", "/nobody-home"))
        r = c.response()
        body = assert_refusal(r, 502, "backend_connect_failed")
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], "backend_connect_failed")
    sd.wait_conn(peer)


def test_backend_never_answers_504(http_sd, recorder, h1):
    def hang(conn, req, rec):
        """Reads (never answers) until steeldoor gives up on it."""
        conn.settimeout(8)
        try:
            rec.ended = "eof" if conn.recv(1) == b"" else "data"
        except socket.timeout:
            rec.ended = "still-open"
        except OSError as e:
            rec.ended = "eof-" + repr(e)

    rec = recorder(lambda req, b: hang)
    sd = http_sd(rec.target, extra=["--idle-timeout", "2s"])
    with h1(sd.port, timeout=8) as c:
        c.send(build_request("GET", "/hang"))
        t = time.monotonic()
        r = c.response(timeout=7)
        took = time.monotonic() - t
        body = assert_refusal(r, 504, r.json().get("reason"))
        assert 1.5 < took < 4.5, "504 after %.1fs with --idle-timeout 2s" % took
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], body["reason"])
    ended = rec.wait_ended(0, 4)
    assert ended is not None and ended.startswith("eof"), \
        "the hung backend connection was not closed after the 504 (%r)" % ended


def test_client_stalls_mid_head_408(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target, extra=["--idle-timeout", "2s"])
    with h1(sd.port, timeout=8) as c:
        c.send(b"GET /stall HTTP/1.1\r\nHost: loc")
        t = time.monotonic()
        r = c.response(timeout=7)
        took = time.monotonic() - t
        body = assert_refusal(r, 408, r.json().get("reason"))
        assert 1.5 < took < 4.5, "408 after %.1fs with --idle-timeout 2s" % took
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], body["reason"])
    assert rec.count == 0 and rec.all_raw() == b""


def test_idle_keepalive_connection_closed_quietly(http_sd, recorder, h1):
    """Between requests there is nothing to time out: after the idle timeout
    the connection closes without a 408 that a client could take for the
    answer to its next request."""
    rec = recorder()
    sd = http_sd(rec.target, extra=["--idle-timeout", "2s"])
    with h1(sd.port, timeout=8) as c:
        assert c.request("GET", "/then-idle").status == 200
        assert c.wait_closed(5), "idle keep-alive connection not closed after --idle-timeout 2s"


def test_unsolicited_backend_bytes_never_spliced(http_sd, recorder, h1):
    """A backend that sends a second response nobody asked for: it must
    never become the answer to a later request."""
    poison = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"
    rec = recorder(scripted(lambda req, i: ok(b"first") + poison if i == 0 else ok(b"clean")))
    sd = http_sd(rec.target, workers=1)
    with h1(sd.port) as c:
        r = c.request("GET", "/one")
        assert r.body == b"first"
        try:
            r2 = c.request("GET", "/two")
            assert r2.body == b"clean", "spliced response: %r" % r2
        except (EOFError, sdhttp.ProtocolError):
            pass  # closing the client connection is acceptable too
    with h1(sd.port) as c:
        r3 = c.request("GET", "/three")
        assert r3.body == b"clean", "spliced response on a new client connection: %r" % r3


@pytest.mark.parametrize("resp", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX: y\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 5\r\n\r\nhello",
], ids=["cl_twice", "bare_lf", "obs_fold", "space_colon", "status", "cl_plus", "nul"])
def test_malformed_backend_response_502(http_sd, recorder, h1, resp):
    rec = recorder(scripted(lambda req, i: (resp, "close") if i == 0 else ok(b"clean")))
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/bad-resp"))
        r = c.response()
        assert r.status == 502, "malformed backend response passed on: %r" % r
        assert_refusal(r, 502, r.json().get("reason"))
        assert c.wait_closed(3)
    with h1(sd.port) as c:
        assert c.request("GET", "/clean").body == b"clean"


def test_backend_te_and_cl_response(http_sd, recorder, h1):
    """TE wins over CL (RFC 9112); the client gets one framing, and that
    backend connection is not reused."""
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" \
           b"5\r\nhello\r\n0\r\n\r\n"
    rec = recorder(scripted(lambda req, i: resp if i == 0 else ok(b"clean")))
    sd = http_sd(rec.target, workers=1)
    with h1(sd.port) as c:
        r = c.request("GET", "/te-cl")
        assert r.status in (200, 502), r
        if r.status == 200:
            assert r.body == b"hello"
        else:
            assert_refusal(r, 502, r.json().get("reason"))
    with h1(sd.port) as c:
        assert c.request("GET", "/clean").body == b"clean"
    assert rec.count == 2, "backend connection with ambiguous framing was reused"


def test_slow_head_408_from_first_byte(http_sd, recorder, h1):
    """A head trickled in one byte every 250 ms never completes: the idle
    timeout counts from its first byte, not from the last one (a slowloris
    cannot hold the connection forever)."""
    import select
    rec = recorder()
    sd = http_sd(rec.target, extra=["--idle-timeout", "2s"])
    head = b"GET /slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    with h1(sd.port, timeout=10) as c:
        t = time.monotonic()
        for i in range(len(head)):
            if time.monotonic() - t > 6 or select.select([c.sock], [], [], 0)[0] or c.sock.pending():
                break
            try:
                c.send(head[i:i + 1])
            except OSError:
                break
            time.sleep(0.25)
        r = c.response(timeout=5)
        took = time.monotonic() - t
        assert_refusal(r, 408, r.json().get("reason"))
        assert took < 4.5, "a trickled head held the connection %.1fs with --idle-timeout 2s" % took
    assert rec.all_raw() == b""


def test_concurrent_clients_keep_their_identity(http_sd, recorder, pki):
    """16 concurrent connections, two identities, two workers, pooled
    backend connections: every request carries the identity of the client
    that sent it, and every request id is unique."""
    rec = recorder()
    sd = http_sd(rec.target, workers=2)
    ctxs = {"billing": sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key),
            "pygood": sdlib.client_ctx(pki.ca, *pki.pygood)}
    vals = {"billing": sdhttp.client_cert_value(pki.client_cert),
            "pygood": sdhttp.client_cert_value(pki.pygood[0])}
    errors = []

    def client(k):
        who = "billing" if k % 2 else "pygood"
        try:
            with sdhttp.H1(ctxs[who], sd.port, timeout=10) as c:
                for i in range(10):
                    r = c.request("GET", "/cc/%d/%d" % (k, i),
                                  headers=[("X-Who", who), ("Client-Cert", ":U1BPT0Y=:")])
                    assert r.status == 200, r
        except Exception as e:
            errors.append("client %d: %r" % (k, e))

    ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    q = rec.wait_requests(160, timeout=10)
    assert len(q) == 160
    for x in q:
        assert x.all("Client-Cert") == [vals[x.get("X-Who")]], "identity crossed over: %r" % x
    assert len({x.get("X-Steeldoor-Request-Id") for x in q}) == 160, "request ids not unique"
