"""HTTP mode as a new user meets it: --http and `mode: http`, TLS admission
exactly as in L4 mode, ALPN, the identity headers the backend receives
(every --http-headers word), resumed sessions, keep-alive, pipelining,
100-continue, HTTP/1.0, and the per-request log line. Real clients too:
Python ssl, curl, openssl s_client."""
import base64
import json
import os
import ssl
import subprocess
import time

import pytest

import sdlib
from sdlib import free_port, run
from conftest import TLS_VERSIONS
from http_apps import sdhttp
from http_apps.fixtures import http_sd, recorder, h1  # noqa: F401
from http_apps.sdhttp import build_request, wait_http

from cryptography import x509

IDENT = ["Client-Cert", "Client-Cert-Chain", "X-Forwarded-Client-Cert", "Forwarded",
         "X-Forwarded-For", "X-Forwarded-Proto"]


@pytest.fixture
def chain_client(certs):
    """A client certificate issued by an intermediate of an intermediate of
    the dev CA; the client sends both intermediates."""
    i1 = certs.ca("inter-1")
    i2 = certs.ca("inter-2", issuer=i1)
    leaf = certs.client("chainy", cn="chainy", uris=["spiffe://example.org/chainy"],
                        dns=["chainy.example.org"], issuer=i2, chain=(i2, i1))
    leaf.inters = [i2.cert, i1.cert]
    return leaf


def ctx_for(pki, pair, **kw):
    return sdlib.client_ctx(pki.ca, pair[0], pair[1], **kw)


def one(req, name):
    v = req.all(name)
    assert len(v) == 1, "backend saw %d %s headers: %r" % (len(v), name, req.headers)
    return v[0]


def check_xfcc(value, cert):
    der = sdhttp.der_of(cert)
    elems = sdhttp.xfcc_parse(value)
    assert len(elems) == 1, "XFCC with %d elements: %r" % (len(elems), value)
    pairs = elems[0]
    keys = [k for k, _ in pairs]
    assert set(keys) <= {"Hash", "Subject", "URI", "DNS"}, "unexpected XFCC keys: %r" % value
    assert keys.count("Hash") == 1 and keys.count("Subject") == 1, value
    d = {}
    for k, v in pairs:
        d.setdefault(k, []).append(v)
    assert d["Hash"] == [sdhttp.sha256_hex(der)], value
    assert d["Subject"] == [cert.subject.rfc4514_string()], value
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        uris, dns = [], []
    assert d.get("URI", []) == uris, value
    assert d.get("DNS", []) == dns, value
    return d


# --------------------------------------------------------------------------
# first contact
# --------------------------------------------------------------------------

def test_get_reaches_backend_with_identity(http_sd, recorder, h1, pki):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        r = c.request("GET", "/hello?x=1")
        peer = c.peer
    assert r.status == 200, r
    seen = json.loads(r.body)
    assert seen["target"] == "/hello?x=1" and seen["method"] == "GET"
    q = rec.wait_requests(1)[0]
    assert q.version == "HTTP/1.1"
    assert one(q, "Host") == "localhost"
    assert one(q, "Client-Cert") == sdhttp.client_cert_value(pki.client_cert)
    assert q.all("Client-Cert-Chain") == [], "no intermediates sent, yet Client-Cert-Chain: %r" % q
    for h in ("X-Forwarded-Client-Cert", "Forwarded", "X-Forwarded-For", "X-Forwarded-Proto"):
        assert q.all(h) == [], "default header set sent %s: %r" % (h, q)
    rid = one(q, "X-Steeldoor-Request-Id")
    assert sdhttp.is_hex_id(rid), rid
    e = wait_http(sd, lambda e: e.get("request_id") == rid)
    assert e["method"] == "GET" and e["status"] == 200, e
    assert e["path"] in ("/hello", "/hello?x=1"), e
    e = sd.wait_conn(peer)
    assert e["result"] == "ok", e


def test_yaml_mode_http(steeldoor, recorder, make_config, h1, pki):
    rec = recorder()
    port = free_port()
    cfg = make_config([{"name": "web", "port": port, "target": rec.target, "mode": "http",
                        "http-headers": '"rfc9440, xfcc"', "backend-pool-size": 4,
                        "backend-idle-timeout": "2s"}])
    sd = steeldoor(config=cfg, wait_ports=[port])
    with h1(port) as c:
        r = c.request("GET", "/yaml")
    assert r.status == 200, r
    q = rec.wait_requests(1)[0]
    assert one(q, "Client-Cert") == sdhttp.client_cert_value(pki.client_cert)
    check_xfcc(one(q, "X-Forwarded-Client-Cert"), sdhttp.pem_certs(pki.client_cert)[0])
    wait_http(sd, lambda e: e.get("path") == "/yaml")


def test_yaml_header_list_form(steeldoor, recorder, make_config, h1):
    rec = recorder()
    port = free_port()
    cfg = make_config([{"name": "web", "port": port, "target": rec.target, "mode": "http",
                        "http-headers": "[forwarded, x-forwarded]"}])
    steeldoor(config=cfg, wait_ports=[port])
    with h1(port) as c:
        assert c.request("GET", "/yaml-list").status == 200
    q = rec.wait_requests(1)[0]
    assert one(q, "Forwarded") == "for=127.0.0.1;proto=https"
    assert one(q, "X-Forwarded-For") == "127.0.0.1" and one(q, "X-Forwarded-Proto") == "https"
    assert q.all("Client-Cert") == []


@pytest.mark.parametrize("flag", [["--http-headers", "xfcc"], ["--backend-pool-size", "4"],
                                  ["--backend-idle-timeout", "2s"]])
def test_http_flags_need_http_mode(sd_bin, pki, recorder, flag):
    """An HTTP setting on an L4 listener is refused at start, never ignored."""
    rec = recorder()
    args = ["serve", "--listen", "127.0.0.1:%d" % free_port(), "--target", rec.target,
            "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
            "--allow-all"] + flag
    r = run([sd_bin] + args, timeout=10)
    assert r.returncode != 0, "%s accepted without --http" % flag
    assert b"http" in r.stderr.lower(), r.stderr


def test_l4_listener_next_to_http_listener_unchanged(steeldoor, recorder, backends, make_config,
                                                     good_ctx, h1):
    """mode: tcp (the default) still passes bytes untouched, next to an HTTP
    listener in the same process."""
    rec = recorder()
    echo = backends()
    p1, p2 = free_port(), free_port()
    cfg = make_config([{"name": "web", "port": p1, "target": rec.target, "mode": "http"},
                       {"name": "raw", "port": p2, "target": echo.target}])
    steeldoor(config=cfg, wait_ports=[p1, p2])
    payload = b"GET / HTTP/1.1\r\nHost: other.example\r\nClient-Cert: x\r\n\r\n"
    with sdlib.tls_connect(good_ctx, p2) as s:
        assert sdlib.echo_roundtrip(s, payload) == payload
    with h1(p1) as c:
        assert c.request("GET", "/web").status == 200


# --------------------------------------------------------------------------
# TLS: refusals never get an HTTP response, ALPN
# --------------------------------------------------------------------------

@pytest.mark.parametrize("who,reason", [("none", "no_client_certificate"),
                                        ("other_ca", "unknown_ca"),
                                        ("not_allowed", "not_authorized")])
@pytest.mark.parametrize("ver", list(TLS_VERSIONS))
def test_refused_client_gets_alert_not_http(http_sd, recorder, pki, who, reason, ver):
    rec = recorder()
    v = TLS_VERSIONS[ver]
    if who == "not_allowed":
        sd = http_sd(rec.target, allow_all=False,
                     extra=["--allow-uri", "spiffe://example.org/someone-else"])
        ctx = ctx_for(pki, (pki.client_cert, pki.client_key), max_version=v, min_version=v)
    elif who == "other_ca":
        sd = http_sd(rec.target)
        ctx = ctx_for(pki, pki.othca_client, max_version=v, min_version=v)
    else:
        sd = http_sd(rec.target)
        ctx = sdlib.client_ctx(pki.ca, max_version=v, min_version=v)
    req = build_request("GET", "/must-not-arrive")
    res = sdlib.probe_refused_tls(ctx, sd.port, payload=req)
    assert res["data"] == b"", "refused client got bytes: %r" % res["data"][:300]
    assert res["error"] and not str(res["error"]).startswith("TIMEOUT"), res
    e = sd.wait_conn("127.0.0.1:%d" % res["local_port"])
    assert e["result"] == "refused" and e["reason"] == reason, e
    time.sleep(0.3)
    assert rec.count == 0 and rec.all_raw() == b"", "backend reached by a refused client"
    assert not [x for x in sdhttp.http_lines(sd)], "http line for a refused handshake"
    # positive control: the good client gets through this very listener
    if who == "not_allowed":
        return
    with sdhttp.H1(ctx_for(pki, (pki.client_cert, pki.client_key)), sd.port) as c:
        assert c.request("GET", "/ok").status == 200


def test_alpn_offers_http11(http_sd, recorder, pki):
    rec = recorder()
    sd = http_sd(rec.target)
    ctx = ctx_for(pki, (pki.client_cert, pki.client_key))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with sdhttp.H1(ctx, sd.port) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/alpn").status == 200
    # without ALPN: still HTTP/1.1
    with sdhttp.H1(ctx_for(pki, (pki.client_cert, pki.client_key)), sd.port) as c:
        assert c.sock.selected_alpn_protocol() is None
        assert c.request("GET", "/no-alpn").status == 200


def test_openssl_s_client_alpn(http_sd, recorder, pki):
    rec = recorder()
    sd = http_sd(rec.target)
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % sd.port, "-servername", "localhost",
         "-alpn", "h2,http/1.1", "-cert", str(pki.client_cert), "-key", str(pki.client_key),
         "-CAfile", str(pki.ca), "-verify_return_error", "-crlf", "-ign_eof"],
        input=b"GET /s-client HTTP/1.1\nHost: localhost\nConnection: close\n\n",
        capture_output=True, timeout=20)
    out = p.stdout.decode(errors="replace")
    assert "ALPN protocol: http/1.1" in out, out[-3000:]
    assert "HTTP/1.1 200" in out, out[-3000:]
    assert [q.target for q in rec.wait_requests(1)] == ["/s-client"]


def test_curl(http_sd, recorder, pki):
    rec = recorder()
    sd = http_sd(rec.target)
    r = run(["curl", "-sS", "--max-time", "10", "--resolve", "localhost:%d:127.0.0.1" % sd.port,
             "--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key,
             "-H", "Client-Cert: :U1BPT0ZFRA==:", "-H", "X-Forwarded-For: 6.6.6.6",
             "-w", "\n%{http_code} %{http_version}", "-d", "from-curl",
             "https://localhost:%d/curl" % sd.port], timeout=20)
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.decode().rpartition("\n")
    assert tail == "200 1.1", tail
    seen = json.loads(body)
    assert seen["target"] == "/curl" and base64.b64decode(seen["body_b64"]) == b"from-curl"
    q = rec.wait_requests(1)[0]
    assert q.all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)], q
    assert q.all("X-Forwarded-For") == [], q
    assert b"U1BPT0ZFRA" not in rec.all_raw() and b"6.6.6.6" not in rec.all_raw()


# --------------------------------------------------------------------------
# identity headers
# --------------------------------------------------------------------------

HEADER_SETS = {
    None: {"Client-Cert", "Client-Cert-Chain"},
    "rfc9440": {"Client-Cert", "Client-Cert-Chain"},
    "client-cert": {"Client-Cert"},
    "client-cert-chain": {"Client-Cert-Chain"},
    "xfcc": {"X-Forwarded-Client-Cert"},
    "forwarded": {"Forwarded"},
    "x-forwarded-for": {"X-Forwarded-For"},
    "x-forwarded-proto": {"X-Forwarded-Proto"},
    "x-forwarded": {"X-Forwarded-For", "X-Forwarded-Proto"},
    "none": set(),
    "client-cert, xfcc ,forwarded,x-forwarded": {"Client-Cert", "X-Forwarded-Client-Cert",
                                                  "Forwarded", "X-Forwarded-For",
                                                  "X-Forwarded-Proto"},
    "rfc9440,xfcc,forwarded,x-forwarded-for,x-forwarded-proto": set(IDENT),
}


@pytest.mark.parametrize("words", list(HEADER_SETS), ids=lambda w: str(w).replace(" ", ""))
def test_header_sets(http_sd, recorder, h1, pki, chain_client, words):
    rec = recorder()
    sd = http_sd(rec.target, headers=words)
    want = HEADER_SETS[words]
    ctx = ctx_for(pki, chain_client.pair)
    # every identity header spoofed: whatever the set, the client's copies go
    spoof = [(h, "SPOOFED") for h in IDENT]
    with h1(sd.port, ctx=ctx) as c:
        assert c.request("GET", "/set", headers=spoof).status == 200
    q = rec.wait_requests(1)[0]
    for h in IDENT:
        n = len(q.all(h))
        assert n == (1 if h in want else 0), "--http-headers %r: %d %s header(s): %r" % (
            words, n, h, q.headers)
    assert b"SPOOFED" not in rec.all_raw()
    exp = {
        "Client-Cert": sdhttp.sf_binary(chain_client.der),
        "Client-Cert-Chain": sdhttp.chain_value(chain_client.inters),
        "Forwarded": "for=127.0.0.1;proto=https",
        "X-Forwarded-For": "127.0.0.1",
        "X-Forwarded-Proto": "https",
    }
    for h in want:
        if h == "X-Forwarded-Client-Cert":
            check_xfcc(one(q, h), chain_client.cert)
        else:
            assert one(q, h) == exp[h], "%s: %r != %r" % (h, one(q, h), exp[h])
    assert sdhttp.is_hex_id(one(q, "X-Steeldoor-Request-Id"))


def test_bad_header_word_refused_at_start(sd_bin, pki, recorder, tmp_path):
    rec = recorder()
    port = free_port()
    args = ["serve", "--http", "--http-headers", "client-cert,x-client-secret",
            "--listen", "127.0.0.1:%d" % port, "--target", rec.target, "--cert", pki.server_cert,
            "--key", pki.server_key, "--cacert", pki.ca, "--allow-all"]
    r = run([sd_bin] + args, timeout=10)
    assert r.returncode != 0, "a bad --http-headers word was accepted"
    assert b"x-client-secret" in r.stderr, r.stderr


def test_client_cert_chain_order(http_sd, recorder, h1, pki, chain_client):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port, ctx=ctx_for(pki, chain_client.pair)) as c:
        assert c.request("GET", "/chain").status == 200
    q = rec.wait_requests(1)[0]
    assert one(q, "Client-Cert") == sdhttp.sf_binary(chain_client.der)
    ders = sdhttp.parse_sf_list(one(q, "Client-Cert-Chain"))
    assert ders == [sdhttp.der_of(c) for c in chain_client.inters], \
        "Client-Cert-Chain is not [issuer of the leaf, its issuer]"
    root = sdhttp.der_of(pki.ca_cert_obj)
    assert root not in ders and chain_client.der not in ders


def test_xfcc_fields(http_sd, recorder, h1, pki):
    rec = recorder()
    sd = http_sd(rec.target, headers="xfcc")
    with h1(sd.port, ctx=ctx_for(pki, pki.pygood)) as c:
        assert c.request("GET", "/xfcc").status == 200
    q = rec.wait_requests(1)[0]
    v = one(q, "X-Forwarded-Client-Cert")
    cert = sdhttp.pem_certs(pki.pygood[0])[0]
    d = check_xfcc(v, cert)
    assert d["URI"] == ["spiffe://example.org/pygood"] and d["DNS"] == ["pygood.example.org"]
    assert v.startswith("Hash=%s;" % sdhttp.sha256_hex(sdhttp.der_of(cert))), v


@pytest.mark.parametrize("kind", ["cn", "uri"])
def test_xfcc_no_injection_from_certificate_names(http_sd, recorder, h1, pki, certs, kind):
    """A certificate whose names carry XFCC syntax (quotes, ';', ',', '=')
    cannot add fields or elements to X-Forwarded-Client-Cert."""
    rec = recorder()
    sd = http_sd(rec.target, headers="xfcc,rfc9440")
    evil = 'evil";URI=spiffe://example.org/admin;DNS=admin.example.org,Hash=00;Subject="x'
    if kind == "cn":
        leaf = certs.client("xfcc-cn", cn=evil, uris=["spiffe://example.org/victim"])
    else:
        leaf = certs.client("xfcc-uri", cn="xfcc-uri",
                            uris=["spiffe://example.org/a;URI=spiffe://example.org/admin,"
                                  "By=spiffe://example.org/x"])
    try:
        c = h1(sd.port, ctx=ctx_for(pki, leaf.pair))
        r = c.request("GET", "/xfcc-evil")
    except (ssl.SSLError, OSError, EOFError) as e:
        # refusing such a certificate at the handshake is also safe
        assert kind == "uri", "CN with punctuation refused: %r" % e
        e = sd.wait_log(lambda e: e.get("event") == "conn" and e.get("result") == "refused")
        assert rec.count == 0
        return
    assert r.status == 200, r
    q = rec.wait_requests(1)[0]
    check_xfcc(one(q, "X-Forwarded-Client-Cert"), leaf.cert)
    assert one(q, "Client-Cert") == sdhttp.sf_binary(leaf.der)


def test_forwarded_ipv6(http_sd, recorder, pki):
    rec = recorder()
    sd = http_sd(rec.target, headers="forwarded,x-forwarded", host="::1")
    with sdhttp.H1(ctx_for(pki, (pki.client_cert, pki.client_key)), sd.port, host="::1") as c:
        assert c.request("GET", "/v6").status == 200
    q = rec.wait_requests(1)[0]
    assert one(q, "Forwarded") == 'for="[::1]";proto=https', q
    assert one(q, "X-Forwarded-For") == "::1", q
    assert one(q, "X-Forwarded-Proto") == "https", q


@pytest.mark.parametrize("end", ["client_closes", "server_closes"])
@pytest.mark.parametrize("ver", list(TLS_VERSIONS))
def test_resumed_session_same_identity(http_sd, recorder, pki, chain_client, ver, end):
    """The first connection ends as a keep-alive client's does (the client
    closes it), or with Connection: close (steeldoor closes it); either way
    its session resumes, and the resumed connection's requests carry the
    same Client-Cert and Client-Cert-Chain as the full handshake's."""
    rec = recorder()
    sd = http_sd(rec.target)
    v = TLS_VERSIONS[ver]
    ctx = ctx_for(pki, chain_client.pair, max_version=v, min_version=v)
    with sdhttp.H1(ctx, sd.port) as c:
        assert c.request("GET", "/full").status == 200
        if end == "server_closes":
            assert c.request("GET", "/full2", headers=[("Connection", "close")]).status == 200
            assert c.wait_closed(3)
        else:
            assert c.request("GET", "/full2").status == 200
        sess, reused = c.session, c.session_reused
    assert not reused and sess is not None
    time.sleep(0.1)
    with sdhttp.H1(ctx, sd.port, session=sess) as c:
        assert c.session_reused, "session did not resume (%s, %s; it does in L4 mode)" % (ver, end)
        assert c.request("GET", "/resumed", headers=[("Client-Cert", ":U1BPT0Y=:")]).status == 200
    q = rec.wait_requests(3)
    full, resumed = q[0], q[2]
    assert resumed.target == "/resumed"
    for h in ("Client-Cert", "Client-Cert-Chain"):
        assert resumed.all(h) == full.all(h) and len(full.all(h)) == 1, \
            "%s differs on the resumed session (%s): %r vs %r" % (h, ver, resumed.all(h),
                                                                 full.all(h))
    assert one(resumed, "Client-Cert") == sdhttp.sf_binary(chain_client.der)
    assert one(resumed, "Client-Cert-Chain") == sdhttp.chain_value(chain_client.inters)
    ids = [one(x, "X-Steeldoor-Request-Id") for x in q]
    assert len(set(ids)) == 3, ids


# --------------------------------------------------------------------------
# connection behaviour
# --------------------------------------------------------------------------

def test_keepalive_many_requests(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        for i in range(10):
            r = c.request("POST", "/ka/%d" % i, body=b"b%d" % i)
            assert r.status == 200
            assert json.loads(r.body)["target"] == "/ka/%d" % i
    q = rec.wait_requests(10)
    assert [x.body for x in q] == [b"b%d" % i for i in range(10)]
    assert len({x.get("X-Steeldoor-Request-Id") for x in q}) == 10
    assert rec.count == 1, "10 requests on one client connection used %d backend connections" % rec.count


def test_large_bodies_both_ways(http_sd, recorder, h1):
    big = os.urandom(3 << 20)

    def reply(req, backend):
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(req.body) + req.body[::-1]

    rec = recorder(reply)
    sd = http_sd(rec.target)
    with h1(sd.port, timeout=20) as c:
        r = c.request("PUT", "/big", body=big, timeout=20)
    assert r.status == 200 and r.body == big[::-1]
    assert rec.wait_requests(1)[0].body == big


def test_pipelining_order(http_sd, recorder, h1):
    """Three requests in one write: three answers in order, each from the
    backend, which sees one request at a time."""
    rec = recorder(delay=0.15)
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/p1") + build_request("POST", "/p2", body=b"two") +
               build_request("GET", "/p3"))
        rs = [c.response() for _ in range(3)]
    assert [json.loads(r.body)["target"] for r in rs] == ["/p1", "/p2", "/p3"]
    q = rec.wait_requests(3)
    assert [x.target for x in q] == ["/p1", "/p2", "/p3"]
    assert q[1].body == b"two"
    assert [x.pending_before_response for x in q] == [0, 0, 0], \
        "the backend received the next request before it answered (pipelined to the backend)"


def test_many_pipelined_requests(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port, timeout=10) as c:
        c.send(b"".join(build_request("GET", "/pl/%d" % i) for i in range(50)))
        got = [json.loads(c.response().body)["target"] for _ in range(50)]
    assert got == ["/pl/%d" % i for i in range(50)]


def test_expect_100_continue(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    body = b"x" * 5000
    with h1(sd.port) as c:
        c.send(build_request("POST", "/expect", [("Expect", "100-continue"),
                                                 ("Content-Length", str(len(body)))]))
        head = c.rd.until(b"\r\n\r\n", timeout=3)
        assert head.startswith(b"HTTP/1.1 100 "), "no 100 Continue before the body: %r" % head
        time.sleep(0.1)
        assert rec.reqs() == [], "backend got a request before the body was sent"
        c.send(body)
        r = c.response()
        assert r.status == 200, r
        # the connection goes on
        assert c.request("GET", "/after-expect").status == 200
    q = rec.wait_requests(2)
    assert q[0].body == body
    assert q[0].all("Expect") == [], "backend saw Expect: %r" % q[0].headers


def test_expect_100_continue_eager_client(http_sd, recorder, h1):
    """A client that does not wait for 100 Continue: the body is still the
    body, the 100 (if any) comes before the final response."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        r = c.request("POST", "/expect-eager", headers=[("Expect", "100-continue")], body=b"eager")
        assert r.status == 200
        assert all(i.status == 100 for i in r.interim), r.interim
        assert c.request("GET", "/after").status == 200
    assert rec.wait_requests(2)[0].body == b"eager"


def test_http10_keepalive(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        r = c.request("GET", "/ten", headers=[("Connection", "keep-alive")], version="HTTP/1.0")
        assert r.status == 200
        assert "keep-alive" in r.tokens("connection"), r
        r = c.request("GET", "/ten-2", headers=[("Connection", "keep-alive")], version="HTTP/1.0")
        assert r.status == 200
        assert not c.wait_closed(0.5), "HTTP/1.0 keep-alive connection closed"
    assert [x.target for x in rec.wait_requests(2)] == ["/ten", "/ten-2"]


def test_http10_closes(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(b"GET /ten HTTP/1.0\r\n\r\n")
        r = c.response()
        assert r.status == 200, r
        assert "keep-alive" not in r.tokens("connection")
        assert c.wait_closed(3), "HTTP/1.0 without keep-alive: connection left open"
    q = rec.wait_requests(1)[0]
    assert q.all("Client-Cert"), q


def test_connection_close(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        r = c.request("GET", "/bye", headers=[("Connection", "close")])
        assert r.status == 200
        assert "close" in r.tokens("connection"), r
        assert c.wait_closed(3)


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------

def test_log_line_per_request(http_sd, recorder, h1):
    def reply(req, backend):
        st = 404 if req.target == "/missing" else 200
        body = b"x" * 321
        return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (st, len(body)) + body

    rec = recorder(reply)
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        peer = c.peer
        assert c.request("GET", "/one").status == 200
        assert c.request("POST", "/two", body=b"y" * 1000).status == 200
        assert c.request("GET", "/missing").status == 404
        c.send(b"GET /bad HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n")
        bad = sdhttp.assert_refusal(c.response(), 400, "http_cl_invalid")
    q = rec.wait_requests(3)
    ids = [x.get("X-Steeldoor-Request-Id") for x in q]
    conn = sd.wait_conn(peer)
    assert conn["result"] in ("ok", "error"), conn
    lines = {}
    for rid in ids + [bad["request_id"]]:
        lines[rid] = wait_http(sd, lambda e, rid=rid: e.get("request_id") == rid)
    expect = [("GET", "/one", 200), ("POST", "/two", 200), ("GET", "/missing", 404)]
    for rid, (m, p, st) in zip(ids, expect):
        e = lines[rid]
        assert (e["method"], e["path"], e["status"]) == (m, p, st), e
        for k in ("bytes_in", "bytes_out", "duration_ms"):
            assert isinstance(e.get(k), int) and e[k] >= 0, e
        assert e["bytes_out"] >= 321, e
        assert e.get("identity") == "spiffe://example.org/billing", e
        assert e.get("rule") == "all", e
    assert lines[ids[1]]["bytes_in"] >= 1000, lines[ids[1]]
    e = lines[bad["request_id"]]
    assert e["status"] == 400 and e.get("reason") == "http_cl_invalid", e
    time.sleep(0.2)
    mine = [e for e in sdhttp.http_lines(sd) if e.get("request_id") in lines]
    assert len(mine) == 4, "expected one http line per request: %s" % mine
    assert len(set(ids + [bad["request_id"]])) == 4


def test_log_line_survives_hostile_path_and_method(http_sd, recorder, h1):
    """Quotes, backslashes and braces in the path and an odd (valid) method
    token: the log line stays one valid JSON object with the real values."""
    rec = recorder()
    sd = http_sd(rec.target)
    path = '/log"inj\\ect\',"status":999,"identity":"admin"}{"x":"\\u0000'
    method = "X-'|~^`"
    with h1(sd.port) as c:
        r = c.request(method, path)
        assert r.status == 200, r
    q = rec.wait_requests(1)[0]
    assert (q.method, q.target) == (method, path)
    e = wait_http(sd, lambda e: e.get("request_id") == q.get("X-Steeldoor-Request-Id"))
    assert e["path"] == path and e["method"] == method, e
    assert e["status"] == 200 and e["identity"] == "spiffe://example.org/billing", e
    for line in sd.raw_lines():
        assert isinstance(json.loads(line), dict), line


def _bulky_client(pki, outdir, pad):
    """A valid client certificate made large by an opaque non-critical
    extension of `pad` bytes (names stay small: the handshake's identity
    checks have nothing to object to)."""
    import datetime
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from conftest import root_issuer, _write_key
    ca = root_issuer(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bulky")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://example.org/bulky")]), critical=False)
            .add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x04\x82" + pad.to_bytes(2, "big")
                + b"B" * pad), critical=False)
            .sign(ca.key, hashes.SHA256()))
    outdir.mkdir(parents=True, exist_ok=True)
    crt, kp = outdir / "bulky.crt", outdir / "bulky.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(kp, key)
    return (crt, kp), cert


def test_identity_too_large_refused_not_cut(http_sd, recorder, h1, pki, tmp_path):
    """A certificate whose identity headers would not fit (24 KiB) is never
    handed on cut: 431 http_identity_too_large, and the backend sees
    nothing. Controls: the same client passes with --http-headers none, and
    a certificate just under the limit passes with its whole DER."""
    pair, cert = _bulky_client(pki, tmp_path / "bulky", 20000)
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port, ctx=ctx_for(pki, pair)) as c:
        c.send(build_request("GET", "/huge"))
        r = c.response()
        sdhttp.assert_refusal(r, 431, "http_identity_too_large")
        assert c.wait_closed(3)
    time.sleep(0.2)
    assert rec.all_raw() == b"", "a request with a cut identity reached the backend"
    rec2 = recorder()
    sd2 = http_sd(rec2.target, headers="none")
    with h1(sd2.port, ctx=ctx_for(pki, pair)) as c:
        assert c.request("GET", "/huge-ok").status == 200
    pair3, cert3 = _bulky_client(pki, tmp_path / "bulky3", 12000)
    with h1(sd.port, ctx=ctx_for(pki, pair3)) as c:
        assert c.request("GET", "/big-ok").status == 200
    q = rec.wait_requests(1)[0]
    assert q.all("Client-Cert") == [sdhttp.sf_binary(sdhttp.der_of(cert3))]
