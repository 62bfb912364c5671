"""ALPN (issue 17, item 7). HTTP mode selects http/1.1 and nothing else (a
client offering only h2 gets no ALPN, not an alert); a tcp listener selects
from its `alpn` list, in the list's order, and nothing without the key; the
selected protocol reaches the backend as PP2_TYPE_ALPN (absent when none)
and the conn log line as `alpn`; a resumed connection negotiates again; a
connector offers its `alpn` list to the server. Real clients: Python ssl,
curl, openssl s_client."""
import socket
import ssl
import struct
import subprocess
import time

import pytest

import sdlib
from sdlib import HttpEchoBackend, free_port, peer_of, recv_exact

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_ALPN = 0x01
PP2_TYPE_SSL = 0x20
VERSIONS = {"tls13": ssl.TLSVersion.TLSv1_3, "tls12": ssl.TLSVersion.TLSv1_2}
PAYLOAD = b"alpn-ping\n"


# ------------------------------------------------------------------ helpers

def pp2_tlvs(conn, hdr):
    """Reads the rest of a PROXY v2 header whose first 16 bytes are hdr;
    returns its TLVs [(type, value)], every length checked."""
    assert hdr[:12] == SIG, "no PROXY v2 signature: %r" % hdr
    assert hdr[12] == 0x21 and hdr[13] == 0x11, "not v2 PROXY over TCP4: %r" % hdr[12:14]
    rest = recv_exact(conn, struct.unpack(">H", hdr[14:16])[0], timeout=5)
    tlv, out, i = rest[12:], [], 0
    while i < len(tlv):
        assert len(tlv) - i >= 3, "truncated TLV header at %d" % i
        t, n = tlv[i], struct.unpack(">H", tlv[i + 1:i + 3])[0]
        assert i + 3 + n <= len(tlv), "TLV 0x%02x overruns the header" % t
        out.append((t, bytes(tlv[i + 3:i + 3 + n])))
        i += 3 + n
    return out


def pp_handler(conn, backend):
    """Records the header's TLVs (or the error), then echoes. A connection
    that sends nothing (the master's probe of an idle target) is no
    client's and is not recorded."""
    try:
        first = recv_exact(conn, 16, timeout=5)
    except (EOFError, TimeoutError, OSError):
        return
    rec = {"tlvs": None, "error": None, "data": b""}
    with backend.lock:
        backend.results.append(rec)
    try:
        rec["tlvs"] = pp2_tlvs(conn, first)
    except Exception as e:  # noqa: BLE001 - reported by the test
        rec["error"] = repr(e)
        return
    conn.settimeout(10)
    while True:
        d = conn.recv(65536)
        if not d:
            return
        rec["data"] += d
        conn.sendall(d)


def rec_with(be, payload, timeout=5.0):
    """The recorded connection that carried payload (a connector's own
    readiness probe makes one that carries nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in be.wait_results(1, timeout=0.1):
            if r["data"].startswith(payload):
                return r
        time.sleep(0.02)
    raise AssertionError("no backend connection carried %r" % payload)


def alpn_tlv(rec):
    """The PP2_TYPE_ALPN value of a recorded header, or None; at most one."""
    deadline = time.monotonic() + 5
    while rec["tlvs"] is None and rec["error"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec["error"] is None, "backend could not parse the PROXY header: %s" % rec["error"]
    assert rec["tlvs"] is not None, "no PROXY header within 5 s"
    types = [t for t, _ in rec["tlvs"]]
    assert types.count(PP2_TYPE_SSL) == 1, "not a steeldoor header: %r" % rec["tlvs"]
    vals = [v for t, v in rec["tlvs"] if t == PP2_TYPE_ALPN]
    assert len(vals) <= 1, "PP2_TYPE_ALPN sent %d times" % len(vals)
    return vals[0] if vals else None


def ctx_with(pki, offers, version=None):
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key,
                           max_version=version, min_version=version)
    if offers is not None:
        ctx.set_alpn_protocols(offers)
    return ctx


def l4_conn(sd, ctx, session=None):
    """One echo connection; returns (selected ALPN, reused, session, log line)."""
    with sdlib.tls_connect(ctx, sd.port, session=session) as s:
        assert sdlib.echo_roundtrip(s, PAYLOAD) == PAYLOAD
        # a second round trip lets a TLS 1.3 ticket land before s.session is read
        assert sdlib.echo_roundtrip(s, b"again\n") == b"again\n"
        got = (s.selected_alpn_protocol(), s.session_reused, s.session, peer_of(s))
    e = sd.wait_conn(got[3])
    assert e.get("result") == "ok", e
    return got[0], got[1], got[2], e


def http_get(sd, ctx, path="/alpn"):
    """One HTTP/1.1 request over TLS; returns (selected ALPN, log line)."""
    with sdlib.tls_connect(ctx, sd.port) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        alpn, peer = s.selected_alpn_protocol(), peer_of(s)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"ECHO GET " + path.encode() in data, data[:400]
    return alpn, sd.wait_conn(peer)


@pytest.fixture
def http_backend():
    b = HttpEchoBackend()
    yield b
    b.close()


@pytest.fixture
def l4(steeldoor, backends):
    """Factory: l4(alpn=None) -> (steeldoor tcp listener with --proxy-protocol
    [and --alpn alpn], its PROXY v2 recording backend)."""
    def start(alpn=None, extra=()):
        be = backends(pp_handler)
        ex = ["--proxy-protocol"] + (["--alpn", alpn] if alpn is not None else []) + list(extra)
        return steeldoor(target=be.target, extra=ex), be
    return start


# ---------------------------------------------------------------- HTTP mode

def test_http_mode_selects_http11_never_h2(steeldoor, http_backend, pki):
    sd = steeldoor(target=http_backend.target, extra=["--http"])
    for offers in (["h2", "http/1.1"], ["http/1.1", "h2"], ["http/1.1"]):
        alpn, e = http_get(sd, ctx_with(pki, offers))
        assert alpn == "http/1.1", (offers, alpn)
        assert e.get("alpn") == "http/1.1", e
    # only protocols steeldoor cannot serve: no ALPN, the handshake goes on
    # (no no_application_protocol alert) and the client speaks HTTP/1.1
    for offers in (["h2"], ["h2", "h3", "spdy/3.1"], None):
        alpn, e = http_get(sd, ctx_with(pki, offers), path="/fallback")
        assert alpn is None, (offers, alpn)
        assert "alpn" not in e, e


def test_http_mode_curl(steeldoor, http_backend, pki):
    """curl (built with nghttp2) offers h2 first and gets http/1.1;
    --http1.1 offers http/1.1 alone."""
    sd = steeldoor(target=http_backend.target, extra=["--http"])
    base = ["curl", "-sS", "-v", "--max-time", "10", "--cacert", str(pki.ca),
            "--cert", str(pki.client_cert), "--key", str(pki.client_key),
            "--resolve", "localhost:%d:127.0.0.1" % sd.port]
    url = "https://localhost:%d/curl" % sd.port
    for flags, offered in (([], "h2"), (["--http1.1"], "http/1.1")):
        p = subprocess.run(base + flags + [url], capture_output=True, timeout=20)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 0, err[-2000:]
        assert p.stdout.startswith(b"ECHO GET /curl"), p.stdout[:200]
        assert "ALPN: offers %s" % offered in err, err[-2000:]
        assert "ALPN: server accepted http/1.1" in err, err[-2000:]
        assert "HTTP/2" not in err, err[-2000:]


def test_http_mode_refuses_the_alpn_key(sd_bin, pki, tmp_path):
    r = sdlib.run([sd_bin, "serve", "--listen", "127.0.0.1:%d" % free_port(),
                   "--target", "127.0.0.1:9", "--cert", pki.server_cert,
                   "--key", pki.server_key, "--cacert", pki.ca, "--allow-all",
                   "--http", "--alpn", "http/1.1", "--check"], cwd=tmp_path)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err
    assert "alpn is a setting of tcp listeners" in err, err


# ----------------------------------------------------------------- L4 mode

def test_l4_list_selects_in_the_lists_order(l4, pki):
    sd, be = l4("h2,http/1.1")
    cases = [
        (["http/1.1", "h2"], "h2"),   # the list's order, not the client's
        (["h2", "http/1.1"], "h2"),
        (["http/1.1"], "http/1.1"),
        (["acme-tls/1", "http/1.1"], "http/1.1"),
        (["h3", "spdy/3.1"], None),   # none of the list: no ALPN, no alert
        (None, None),                 # no ALPN offered
    ]
    for i, (offers, want) in enumerate(cases):
        alpn, _, _, e = l4_conn(sd, ctx_with(pki, offers))
        assert alpn == want, (offers, alpn)
        assert e.get("alpn") == want, (offers, e)
        rec = be.wait_results(i + 1)[i]
        assert alpn_tlv(rec) == (want.encode() if want else None), (offers, rec["tlvs"])


def test_l4_without_the_key_selects_nothing(l4, pki):
    sd, be = l4()
    alpn, _, _, e = l4_conn(sd, ctx_with(pki, ["h2", "http/1.1"]))
    assert alpn is None
    assert "alpn" not in e, e
    assert alpn_tlv(be.wait_results(1)[0]) is None


def test_l4_yaml_list_and_openssl_s_client(steeldoor, backends, make_config, pki):
    be = backends(pp_handler)
    port = free_port()
    cfg = make_config([{"name": "l4", "port": port, "target": be.target,
                        "raw": "    proxy-protocol: true\n    alpn: [h2, http/1.1]\n"}])
    sd = steeldoor(config=cfg, wait_ports=[port])
    for offers, want in (("http/1.1,h2", "ALPN protocol: h2"),
                         ("http/1.1", "ALPN protocol: http/1.1"),
                         ("h3", "No ALPN negotiated")):
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
             "-servername", "localhost", "-alpn", offers, "-cert", str(pki.client_cert),
             "-key", str(pki.client_key), "-CAfile", str(pki.ca), "-verify_return_error"],
            input=b"", capture_output=True, timeout=20)
        out = p.stdout.decode(errors="replace")
        assert want in out, (offers, out[-3000:])
    assert [alpn_tlv(r) for r in be.wait_results(3)] == [b"h2", b"http/1.1", None]


@pytest.mark.parametrize("ver", list(VERSIONS))
def test_resumed_connection_negotiates_again(l4, pki, ver):
    """A session whose full handshake selected h2 resumes (TLS 1.3: a PSK
    ticket; TLS 1.2: the session cache) with what the resumed ClientHello
    offers: http/1.1, then nothing; never the session's h2."""
    sd, be = l4("h2,http/1.1")
    ctx = ctx_with(pki, ["h2", "http/1.1"], VERSIONS[ver])
    alpn, reused, sess, e = l4_conn(sd, ctx)
    assert (alpn, reused, e.get("alpn"), e.get("resumed")) == ("h2", False, "h2", False), e
    steps = [(["http/1.1"], "http/1.1"), ([], None), (["h2"], "h2")]
    for i, (offers, want) in enumerate(steps):
        ctx.set_alpn_protocols(offers)  # the same context: its sessions stay usable
        alpn, reused, sess, e = l4_conn(sd, ctx, session=sess)
        assert reused, "step %d did not resume (%s)" % (i, ver)
        assert e.get("resumed") is True, e
        assert alpn == want, (ver, offers, alpn)
        assert e.get("alpn") == want, e
        rec = be.wait_results(i + 2)[i + 1]
        assert alpn_tlv(rec) == (want.encode() if want else None), (ver, offers, rec["tlvs"])


# --------------------------------------------------------------- connector

def test_connector_offers_its_list(steeldoor, backends, pki, sd_bin, tmp_path):
    """steeldoor connect --alpn h2 -> tcp listener with alpn h2,http/1.1: the
    listener selects h2 (it is the only offer, though the listener prefers
    nothing else) and both log it; without --alpn the connector offers
    nothing and nothing is selected."""
    be = backends(pp_handler)
    srv = steeldoor(target=be.target, extra=["--proxy-protocol", "--alpn", "http/1.1,h2"])
    made = []
    try:
        for i, (flag, want) in enumerate(((["--alpn", "h2"], "h2"), ([], None))):
            port = free_port()
            c = sdlib.Steeldoor(sd_bin, [
                "connect", "--listen", "127.0.0.1:%d" % port,
                "--target", "127.0.0.1:%d" % srv.port, "--server-name", "localhost",
                "--cert", pki.client_cert, "--key", pki.client_key, "--cacert", pki.ca,
                "--workers", "1", "--drain-timeout", "2s"] + flag, tmp_path, name="conn%d" % i)
            made.append(c)
            c.start(wait_ports=[("127.0.0.1", port)])
            payload = b"via-connector-%s\n" % (b"h2" if want else b"without-alpn")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(payload)
                assert recv_exact(s, len(payload)) == payload
                peer = peer_of(s)
            rec = rec_with(be, payload)
            assert alpn_tlv(rec) == (want.encode() if want else None), (flag, rec["tlvs"])
            line = c.wait_conn(peer)
            assert line.get("result") == "ok", line
            assert line.get("alpn") == want, line
            # the listener's line for that connection: the same bytes in
            srv_line = srv.wait_log(lambda e: e.get("event") == "conn"
                                    and e.get("bytes_in") == len(payload),
                                    what="listener conn line")
            assert srv_line.get("alpn") == want, srv_line
    finally:
        for c in made:
            if c.running():
                c.stop(timeout=10, expect_rc=None)
            c.kill()
            c.close_files()
