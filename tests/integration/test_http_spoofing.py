"""HTTP mode, anti-spoofing, through a real WSGI stack: Debian's gunicorn
(gthread) running a Flask app that reports what it saw (request.headers
and the environ's HTTP_* keys). gunicorn 20.1 maps '-' and '_' to the same
environ key and joins repeated headers with ',': exactly the confusions an
attacker uses. For every variant, the application must see exactly one
Client-Cert, equal to the real certificate, and none of the attacker's
values anywhere.

The raw recorder backend is used where the exact bytes matter (the log
line, trailers)."""
import base64
import json
import time

import pytest

from http_apps import sdhttp
from http_apps.fixtures import http_sd, recorder, h1, flask_app  # noqa: F401
from http_apps.sdhttp import assert_refusal, build_request, chunked, wait_reason

ALL = "rfc9440,xfcc,forwarded,x-forwarded"
MARK = "U1BPT0ZFRA"           # base64 of "SPOOFED"
SPV = b":U1BPT0ZFRA==:"
# environ keys steeldoor itself sets with ALL (the client has no chain)
OWN_ALL = {"HTTP_CLIENT_CERT", "HTTP_X_FORWARDED_CLIENT_CERT", "HTTP_FORWARDED",
           "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_STEELDOOR_REQUEST_ID"}
_counter = [0]


def unique(prefix):
    _counter[0] += 1
    return "/%s-%d-%d" % (prefix, int(time.time() * 1000) % 100000, _counter[0])


def send_raw(h1, sd, head_lines, path, method="GET", body=None, host_first=True, version="HTTP/1.1"):
    """Request with raw header lines (bytes, no CRLF); returns the response."""
    lines = [("%s %s %s" % (method, path, version)).encode()]
    if host_first:
        lines.append(b"Host: localhost")
    lines += head_lines
    if not host_first:
        lines.append(b"Host: localhost")
    if body is not None and not any(l.lower().startswith((b"content-length", b"transfer-encoding"))
                                    for l in head_lines):
        lines.append(b"Content-Length: %d" % len(body))
    with h1(sd.port) as c:
        c.send(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        return c.response()


def app_saw(resp):
    assert resp.status == 200, "request not answered by the app: %r" % resp
    return json.loads(resp.body)


def check_identity(seen, pki, own=OWN_ALL, extra_ok=()):
    """What every application must see: the real identity, once; no other
    reserved header; nothing of the attacker's values."""
    env = seen["environ"]
    real = sdhttp.client_cert_value(pki.client_cert)
    if "HTTP_CLIENT_CERT" in own:
        assert env.get("HTTP_CLIENT_CERT") == real, \
            "the app saw Client-Cert %r, not the real one" % env.get("HTTP_CLIENT_CERT", "")[:200]
        hdr = [v for k, v in seen["headers"] if k.lower() == "client-cert"]
        assert hdr == [real], "request.headers Client-Cert: %r" % [h[:80] for h in hdr]
    reserved = {k for k in env if sdhttp.is_reserved(k[5:])}
    assert reserved <= set(own), "reserved headers the listener does not set reached the app: %s" % (
        sorted(reserved - set(own)))
    assert set(own) <= set(env), "identity headers missing: %s" % sorted(set(own) - set(env))
    if "HTTP_X_FORWARDED_CLIENT_CERT" in own:
        el = sdhttp.xfcc_parse(env["HTTP_X_FORWARDED_CLIENT_CERT"])
        assert len(el) == 1, env["HTTP_X_FORWARDED_CLIENT_CERT"]
        hashes = [v for k, v in el[0] if k == "Hash"]
        assert hashes == [sdhttp.sha256_hex(sdhttp.der_of(sdhttp.pem_certs(pki.client_cert)[0]))]
    if "HTTP_FORWARDED" in own:
        assert env["HTTP_FORWARDED"] == "for=127.0.0.1;proto=https", env["HTTP_FORWARDED"]
    if "HTTP_X_FORWARDED_FOR" in own:
        assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1", env["HTTP_X_FORWARDED_FOR"]
    if "HTTP_X_FORWARDED_PROTO" in own:
        assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    rid = env.get("HTTP_X_STEELDOOR_REQUEST_ID", "")
    assert sdhttp.is_hex_id(rid) and "," not in rid, "request id %r" % rid
    flat = json.dumps(seen)
    for bad in (MARK, "SPOOFED", "6.6.6.6", "evil.example", "CN=admin", "deadbeef"):
        assert bad not in flat, "attacker's value %r reached the application: %s" % (bad, flat[:2000])
    return env


def spoof_line(sd, rid, timeout=5.0):
    return sd.wait_log(lambda e: e.get("event") == "spoofed_header" and e.get("request_id") == rid,
                       timeout, what="spoofed_header line for %s" % rid)


CC = b"Client-Cert: " + SPV
VARIANTS = [
    ("exact", [CC]),
    ("upper", [b"CLIENT-CERT: " + SPV]),
    ("lower", [b"client-cert: " + SPV]),
    ("mixed_case", [b"cLiEnT-cErT: " + SPV]),
    ("underscore", [b"Client_Cert: " + SPV]),
    ("underscore_upper", [b"CLIENT_CERT: " + SPV]),
    ("underscore_mixed_sep", [b"Client_Cert-Chain: " + SPV]),
    ("xfcc_underscore", [b'X_Forwarded_Client_Cert: Hash=00;Subject="CN=admin"']),
    ("xfcc", [b'X-Forwarded-Client-Cert: Hash=00;Subject="CN=admin";URI=spiffe://SPOOFED']),
    ("duplicates", [CC, CC]),
    ("duplicates_mixed", [CC, b"client_cert: SPOOFED", b"CLIENT-CERT: :U1BPT0ZFRA==:"]),
    ("fifty_copies", [b"Client%sCert: SPOOFED" % (b"-" if i % 2 else b"_") for i in range(50)]),
    ("empty", [b"Client-Cert:"]),
    ("empty_spaces", [b"Client-Cert:    "]),
    ("tab_value", [b"Client-Cert:\t" + SPV + b"\t"]),
    ("long_value", [b"Client-Cert: :" + b"U1BPT0ZFRA" * 700 + b":"]),
    ("chain", [b"Client-Cert-Chain: " + SPV + b", " + SPV]),
    ("forwarded_family", [b"Forwarded: for=6.6.6.6;proto=http;host=evil.example",
                          b"X-Forwarded-For: 6.6.6.6", b"X-Forwarded-Proto: http",
                          b"X-Forwarded-Host: evil.example", b"X-Forwarded-Port: 6666",
                          b"X-Forwarded-Prefix: /SPOOFED", b"X-Forwarded-Ssl: off",
                          b"X-Forwarded-Scheme: http", b"X-Real-IP: 6.6.6.6",
                          b"x_forwarded_for: 6.6.6.6", b"X_REAL_IP: 6.6.6.6"]),
    ("client_family", [b"X-Client-Cert: SPOOFED", b"X-Client-Verify: SUCCESS-SPOOFED",
                       b"X-Client-DN: CN=admin", b"SSL-Client-Cert: SPOOFED",
                       b"X-SSL-Client-Cert: SPOOFED", b"X-SSL-Client-Verify: SPOOFED",
                       b"X-SSL-Client-S-DN: CN=admin", b"X-SSL-Client-Anything: SPOOFED",
                       b"x_ssl_client_i_dn: CN=admin", b"SSL_Client_Cert: SPOOFED"]),
    ("steeldoor_family", [b"X-Steeldoor-Request-Id: deadbeef", b"x_steeldoor_request_id: deadbeef",
                          b"X-Steeldoor-Identity: spiffe://SPOOFED", b"Steeldoor-Identity: SPOOFED",
                          b"steeldoor_second_factor: SPOOFED", b"STEELDOOR-X: SPOOFED"]),
    ("every_reserved", [n.encode() + b": SPOOFED" for n in sdhttp.RESERVED]),
]


# the spoof placed before Host as well (first field of the request)
BEFORE_HOST = {"exact", "underscore", "duplicates_mixed", "xfcc_underscore", "every_reserved"}
SPOOF_PARAMS = [pytest.param(l, "after_host", id=i) for i, l in VARIANTS] + \
    [pytest.param(l, "before_host", id=i + "-before_host") for i, l in VARIANTS if i in BEFORE_HOST]


@pytest.mark.parametrize("lines,where", SPOOF_PARAMS)
def test_spoof_variant_gunicorn(http_sd, flask_app, h1, pki, lines, where):
    sd = http_sd(flask_app.target, headers=ALL)
    path = unique("v")
    lines = list(lines) + [b"X-Innocent: keep-me"]
    r = send_raw(h1, sd, lines, path, host_first=(where == "after_host"))
    seen = app_saw(r)
    assert seen["path"] == path
    env = check_identity(seen, pki)
    assert env.get("HTTP_X_INNOCENT") == "keep-me", "an unreserved header was lost"
    assert env.get("HTTP_HOST") == "localhost"
    assert seen["scheme"] == "https", seen["scheme"]
    # one log line for the request, naming what the client sent
    sent = [l.split(b":", 1)[0].decode() for l in lines if sdhttp.is_reserved(l.split(b":", 1)[0])]
    e = spoof_line(sd, env["HTTP_X_STEELDOOR_REQUEST_ID"])
    assert e.get("headers") == sent and e.get("count") == len(sent), \
        "spoofed_header line %s, sent %s" % (e, sent)
    time.sleep(0.1)
    n = [x for x in sd.logs() if x.get("event") == "spoofed_header"
         and x.get("request_id") == env["HTTP_X_STEELDOOR_REQUEST_ID"]]
    assert len(n) == 1, "%d spoofed_header lines for one request" % len(n)


def test_value_equal_to_real_still_removed(http_sd, flask_app, h1, pki):
    """Sending the real certificate's own value is still a client-sent copy:
    removed and logged, the app sees one."""
    sd = http_sd(flask_app.target)
    real = sdhttp.client_cert_value(pki.client_cert).encode()
    r = send_raw(h1, sd, [b"Client-Cert: " + real, b"client_cert: " + real], unique("same"))
    env = check_identity(app_saw(r), pki, own={"HTTP_CLIENT_CERT", "HTTP_X_STEELDOOR_REQUEST_ID"})
    e = spoof_line(sd, env["HTTP_X_STEELDOOR_REQUEST_ID"])
    assert e["count"] == 2, e


@pytest.mark.parametrize("headers,own", [
    (None, {"HTTP_CLIENT_CERT", "HTTP_X_STEELDOOR_REQUEST_ID"}),
    ("none", {"HTTP_X_STEELDOOR_REQUEST_ID"}),
    ("xfcc", {"HTTP_X_FORWARDED_CLIENT_CERT", "HTTP_X_STEELDOOR_REQUEST_ID"}),
], ids=["default", "none", "xfcc_only"])
def test_reserved_even_when_listener_does_not_set_them(http_sd, flask_app, h1, pki, headers, own):
    sd = http_sd(flask_app.target, headers=headers)
    lines = [n.encode() + b": SPOOFED" for n in sdhttp.RESERVED]
    lines += [b"X-Forwarded-Proto: https", b"X_Forwarded_For: 6.6.6.6", b"client_cert: SPOOFED"]
    r = send_raw(h1, sd, lines, unique("unset"))
    seen = app_saw(r)
    check_identity(seen, pki, own=own)
    # gunicorn trusts X-Forwarded-Proto from 127.0.0.1: had the client's copy
    # got through, the app would believe the scheme is https
    if "HTTP_X_FORWARDED_PROTO" not in own:
        assert seen["scheme"] == "http", "client-sent X-Forwarded-Proto reached gunicorn"


CONNECTION_ABUSE = [
    ("close_client_cert", [b"Connection: close, Client-Cert"], None),
    ("all_identity", [b"Connection: Client-Cert, Client-Cert-Chain, X-Forwarded-Client-Cert, "
                      b"Forwarded, X-Forwarded-For, X-Forwarded-Proto, X-Steeldoor-Request-Id"], None),
    ("underscore", [b"Connection: keep-alive, client_cert, x_forwarded_for"], None),
    ("two_fields", [b"Connection: keep-alive", b"Connection: Client-Cert"], None),
    ("content_length", [b"Connection: Content-Length"], b"body-kept"),
    ("transfer_encoding", [b"Connection: Transfer-Encoding", b"Transfer-Encoding: chunked"],
     b"chunk-kept"),
    ("host", [b"Connection: Host"], None),
]


@pytest.mark.parametrize("lines,body", [pytest.param(l, b, id=i) for i, l, b in CONNECTION_ABUSE])
def test_connection_header_cannot_drop_identity_or_framing(http_sd, flask_app, h1, pki, lines, body):
    sd = http_sd(flask_app.target, headers=ALL)
    path = unique("conn")
    send_body = body
    if body is not None and any(b"Transfer-Encoding: chunked" == l for l in lines):
        send_body = chunked(body[:5], body[5:])
    r = send_raw(h1, sd, lines, path, method="POST" if body else "GET", body=send_body)
    seen = app_saw(r)
    check_identity(seen, pki)
    assert seen["environ"].get("HTTP_HOST") == "localhost"
    if body is not None:

        assert base64.b64decode(seen["body_b64"]) == body, "framing lost through Connection:"
    # nothing but this request reached the app (a lost frame would make the
    # body look like a second request)
    time.sleep(0.2)
    assert [x["path"] for x in flask_app.records() if x["path"].startswith(path)] == [path]


REFUSED = [
    ("obs_fold", [b"X-Foo: a", b" Client-Cert: " + SPV], "http_obs_fold"),
    ("obs_fold_tab", [b"X-Foo: a", b"\tClient-Cert: " + SPV], "http_obs_fold"),
    ("obs_fold_on_identity", [b"Client-Cert: a", b" " + SPV], "http_obs_fold"),
    ("cr_in_value", [b"X-Foo: a\rClient-Cert: " + SPV], "http_bare_cr"),
    ("lf_in_value", [b"X-Foo: a\nClient-Cert: " + SPV], "http_bare_lf"),
    ("nul_in_value", [b"Client-Cert: a\x00" + SPV], "http_bad_field_value"),
    ("space_before_colon", [b"Client-Cert : " + SPV], "http_ws_before_colon"),
    ("tab_before_colon", [b"Client-Cert\t: " + SPV], "http_ws_before_colon"),
    ("nul_in_name", [b"Client-Cert\x00: " + SPV], "http_bad_field_name"),
]


@pytest.mark.parametrize("lines,word", [pytest.param(l, w, id=i) for i, l, w in REFUSED])
def test_malformed_spoof_refused(http_sd, flask_app, h1, lines, word):
    sd = http_sd(flask_app.target, headers=ALL)
    path = unique("bad")
    with h1(sd.port) as c:
        c.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + b"\r\n".join(lines)
               + b"\r\n\r\n")
        r = c.response()
        body = assert_refusal(r, 400, word)
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], word)
    time.sleep(0.2)
    assert not [x for x in flask_app.records() if x["path"] == path], "refused request reached the app"


LOOKALIKES = [
    ("cyrillic_c", "\u0421lient-Cert"),
    ("fullwidth_hyphen", "Client\uff0dCert"),
    ("non_breaking_hyphen", "Client\u2011Cert"),
    ("latin1_accent", "Cli\u00e9nt-Cert"),
]


@pytest.mark.parametrize("name", [pytest.param(n, id=i) for i, n in LOOKALIKES])
def test_unicode_lookalike_not_confused(http_sd, flask_app, h1, pki, name):
    """A name that only looks like Client-Cert is not reserved. steeldoor may
    pass it on or refuse it (a non-token name); either way the application
    never confuses it with the real header."""
    sd = http_sd(flask_app.target)
    path = unique("look")
    with h1(sd.port) as c:
        c.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
               + name.encode("utf-8") + b": " + SPV + b"\r\n\r\n")
        r = c.response()
    if r.status == 400:
        assert_refusal(r, 400, "http_bad_field_name")
        assert not [x for x in flask_app.records() if x["path"] == path]
        return
    seen = app_saw(r)
    env = seen["environ"]
    assert env.get("HTTP_CLIENT_CERT") == sdhttp.client_cert_value(pki.client_cert), env


def test_ascii_near_misses_pass_unconfused(http_sd, flask_app, h1, pki):
    sd = http_sd(flask_app.target)
    near = [b"Client-Certs: NEAR1", b"XClient-Cert: NEAR2", b"Client--Cert: NEAR3",
            b"Client-Cert2: NEAR4", b"Client.Cert: NEAR5", b"Forwarded-For: NEAR6"]
    r = send_raw(h1, sd, near, unique("near"))
    seen = app_saw(r)
    env = seen["environ"]
    assert env.get("HTTP_CLIENT_CERT") == sdhttp.client_cert_value(pki.client_cert)
    assert env.get("HTTP_CLIENT_CERTS") == "NEAR1" and env.get("HTTP_XCLIENT_CERT") == "NEAR2"
    assert env.get("HTTP_CLIENT__CERT") == "NEAR3" and env.get("HTTP_CLIENT_CERT2") == "NEAR4"
    assert env.get("HTTP_FORWARDED_FOR") == "NEAR6"
    assert not [x for x in sd.logs() if x.get("event") == "spoofed_header"
                and x.get("request_id") == env["HTTP_X_STEELDOOR_REQUEST_ID"]]


def test_trailer_spoof_never_reaches_app(http_sd, flask_app, h1, pki):
    sd = http_sd(flask_app.target, headers=ALL)
    path = unique("trailer")
    body = chunked(b"hello ", b"world", trailers=[b"Client-Cert: " + SPV,
                                                   b"X-Forwarded-For: 6.6.6.6"])
    r = send_raw(h1, sd, [b"Transfer-Encoding: chunked", b"Trailer: Client-Cert"], path,
                 method="POST", body=body)
    seen = app_saw(r)
    check_identity(seen, pki)

    assert base64.b64decode(seen["body_b64"]) == b"hello world"


def test_trailers_dropped_raw(http_sd, recorder, h1, pki):
    rec = recorder()
    sd = http_sd(rec.target)
    body = chunked(b"abc", trailers=[b"Client-Cert: " + SPV, b"X-Steeldoor-Request-Id: deadbeef"])
    with h1(sd.port) as c:
        c.send(b"POST /tr HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        assert c.response().status == 200
    q = rec.wait_requests(1)[0]
    assert q.body == b"abc" and q.trailers == [], q.trailers
    assert MARK.encode() not in rec.all_raw() and b"deadbeef" not in rec.all_raw()
    assert q.all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)]


def test_http10_spoof(http_sd, flask_app, h1, pki):
    sd = http_sd(flask_app.target, headers=ALL)
    path = unique("h10")
    r = send_raw(h1, sd, [CC, b"client_cert: SPOOFED", b"X-Forwarded-For: 6.6.6.6"], path,
                 version="HTTP/1.0")
    check_identity(app_saw(r), pki)


def test_second_pipelined_request_spoof(http_sd, flask_app, h1, pki):
    """The parser starts clean for every request on a connection."""
    sd = http_sd(flask_app.target, headers=ALL)
    p1, p2 = unique("pipe1"), unique("pipe2")
    with h1(sd.port) as c:
        c.send(build_request("GET", p1) +
               build_request("GET", p2, [("CLIENT_CERT", SPV.decode()),
                                         ("X-Forwarded-For", "6.6.6.6")]))
        a = app_saw(c.response())
        b = app_saw(c.response())
    assert (a["path"], b["path"]) == (p1, p2)
    check_identity(a, pki)
    check_identity(b, pki)
    assert a["environ"]["HTTP_X_STEELDOOR_REQUEST_ID"] != b["environ"]["HTTP_X_STEELDOOR_REQUEST_ID"]


def test_spoofed_header_log_line(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(b"GET /s1 HTTP/1.1\r\nHost: localhost\r\nCLIENT_CERT: a\r\nx-forwarded-for: b\r\n"
               b"X-Other: keep\r\nX-Steeldoor-Foo: c\r\n\r\n")
        assert c.response().status == 200
        assert c.request("GET", "/clean").status == 200
        c.send(b"GET /s2 HTTP/1.1\r\nHost: localhost\r\nForwarded: for=x\r\n\r\n")
        assert c.response().status == 200
    q = rec.wait_requests(3)
    ids = [x.get("X-Steeldoor-Request-Id") for x in q]
    assert q[0].get("X-Other") == "keep"
    e = spoof_line(sd, ids[0])
    assert e["headers"] == ["CLIENT_CERT", "x-forwarded-for", "X-Steeldoor-Foo"], e
    assert e["count"] == 3 and e.get("level") == "warn", e
    e = spoof_line(sd, ids[2])
    assert e["headers"] == ["Forwarded"] and e["count"] == 1, e
    time.sleep(0.2)
    assert not [x for x in sd.logs() if x.get("event") == "spoofed_header"
                and x.get("request_id") == ids[1]], "spoofed_header line for a clean request"
    assert len([x for x in sd.logs() if x.get("event") == "spoofed_header"]) == 2


def test_hop_by_hop_fields_not_forwarded(http_sd, recorder, h1, pki):
    """Fields that belong to the client's connection (and those it names in
    Connection) stop at steeldoor; end-to-end ones and the identity pass."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(b"GET /hop HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Private-Hop\r\n"
               b"X-Private-Hop: 1\r\nKeep-Alive: timeout=99\r\nTE: trailers\r\n"
               b"Proxy-Connection: keep-alive\r\nX-End-To-End: 2\r\n\r\n")
        assert c.response().status == 200
    q = rec.wait_requests(1)[0]
    for h in ("X-Private-Hop", "Keep-Alive", "TE", "Proxy-Connection"):
        assert q.all(h) == [], "hop-by-hop %s forwarded: %r" % (h, q.headers)
    assert q.all("X-End-To-End") == ["2"]
    assert q.all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)]
