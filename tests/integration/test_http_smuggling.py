"""HTTP mode, request smuggling: every request whose framing two parsers
could read differently is refused with steeldoor's own JSON error and the
connection closed; neither it nor anything sent behind it ever reaches the
backend. Valid framings are delivered exactly, re-framed.

The backend here is a raw recorder (http_apps/sdhttp.HttpRecorder) that
keeps every byte it receives: "never reached the backend" is asserted on
those bytes, after a control request has gone through on a fresh
connection (so anything smuggled would have arrived by then)."""
import os
import time

import pytest

from http_apps import sdhttp
from http_apps.fixtures import http_sd, recorder, h1  # noqa: F401
from http_apps.sdhttp import build_request, chunked, assert_refusal, wait_reason

H = b"Host: localhost\r\n"


def smug(tag):
    return b"GET /smuggled-" + tag + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"


def control(h1, sd, rec, tag):
    """A clean request on a new connection: reaches the backend with the
    real identity. Returns the backend's view of it."""
    with h1(sd.port) as c:
        r = c.request("GET", "/control-" + tag)
    assert r.status == 200, r
    got = [q for q in rec.wait_requests(1) if q.target == "/control-" + tag]
    assert len(got) == 1, "control request not seen once by the backend: %r" % rec.reqs()
    assert len(got[0].all("Client-Cert")) == 1, got[0]
    return got[0]


def assert_never_reached(rec, *markers):
    time.sleep(0.05)  # callers run a control request first: anything smuggled has arrived
    raw = rec.all_raw()
    for m in markers:
        assert m not in raw, "backend received %r; everything it got:\n%r" % (m, raw[:3000])
    for q in rec.reqs():
        for m in markers:
            assert m.decode() not in (q.target or ""), "backend parsed a request %r" % q


def refuse(h1, sd, rec, raw, statuses, tag, body_level=False):
    """Sends raw (one write), expects one refusal from statuses (a dict
    status -> set of words), then the close; the backend never saw the
    refused request (head-level) nor the smuggled one."""
    with h1(sd.port) as c:
        c.send(raw)
        r = c.response()
        assert r.status in statuses, "expected one of %s, got %r" % (statuses, r)
        body = r.json() if r.body[:1] == b"{" else {}
        word = body.get("reason")
        assert word in statuses[r.status], "reason %r not in %s (%r)" % (
            word, statuses[r.status], r)
        assert_refusal(r, r.status, word)
        assert c.wait_closed(3), "connection still open after a %d refusal" % r.status
    wait_reason(sd, body["request_id"], word)
    if not body_level:
        # the backend is connected only for a request that is forwarded
        assert rec.count == 0, "a refused first request opened a backend connection"
    control(h1, sd, rec, tag.decode())
    markers = [b"/smuggled-" + tag]
    if not body_level:
        markers.append(b"/r-" + tag)
    assert_never_reached(rec, *markers)
    if body_level:
        # the head may have been forwarded before the body turned out bad:
        # then that backend connection must have been abandoned, never
        # completed nor reused
        for q in rec.reqs():
            assert q.target != "/r-" + tag.decode(), "refused request completed at the backend: %r" % q
        for i, cr in enumerate(list(rec.conns)):
            if b"/r-" + tag in cr.raw:
                assert rec.wait_ended(i, 3) is not None, \
                    "backend connection that carried the refused head stays open"
                assert b"/control-" not in cr.raw, "that backend connection was reused"
    return r


def req_line(tag, method=b"POST", version=b"HTTP/1.1"):
    return method + b" /r-" + tag + b" " + version + b"\r\n"


def S(status, *words):
    return {status: set(words)}


def S2(*pairs):
    out = {}
    for s, w in pairs:
        out.setdefault(s, set()).add(w)
    return out


TE_REFUSED = S2((400, "http_te_invalid"), (501, "http_te_unsupported"))


def head_cases():
    """(id, builder(tag) -> raw bytes, statuses)."""
    c = []

    def add(cid, fn, st):
        c.append(pytest.param(fn, st, id=cid))

    # CL.TE and TE.CL
    add("cl_te", lambda t: req_line(t) + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nG" + smug(t), S(400, "http_te_and_cl"))
    add("te_cl", lambda t: req_line(t) + H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        + b"%x\r\n" % len(smug(t)) + smug(t) + b"\r\n0\r\n\r\n", S(400, "http_te_and_cl"))
    add("cl_te_obfuscated_te", lambda t: req_line(t) + H + b"Content-Length: 6\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\nG" + smug(t), S(400, "http_te_and_cl"))
    # Content-Length
    add("cl_twice", lambda t: req_line(t) + H + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n"
        % len(smug(t)) + smug(t), S(400, "http_cl_multiple"))
    add("cl_twice_same", lambda t: req_line(t) + H + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n"
        + smug(t), S(400, "http_cl_multiple"))
    add("cl_list", lambda t: req_line(t) + H + b"Content-Length: 1,1\r\n\r\nX" + smug(t),
        S(400, "http_cl_multiple"))
    for cid, v in (("cl_plus", b"+5"), ("cl_minus", b"-1"), ("cl_hex", b"0x10"), ("cl_empty", b""),
                   ("cl_inner_space", b"1 0"), ("cl_huge", b"9" * 30), ("cl_tab", b"\t5")):
        add(cid, (lambda v: lambda t: req_line(t) + H + b"Content-Length: " + v + b"\r\n\r\nhello"
                  + smug(t))(v), S(400, "http_cl_invalid"))
    # Transfer-Encoding other than one final chunked
    add("te_gzip", lambda t: req_line(t) + H + b"Transfer-Encoding: gzip\r\n\r\n" + smug(t),
        S(501, "http_te_unsupported"))
    for cid, v in (("te_chunked_gzip", b"chunked, gzip"), ("te_chunked_chunked", b"chunked, chunked"),
                   ("te_xchunked", b"xchunked"), ("te_chunked_tab_after", b"chunked\t"),
                   ("te_quoted", b'"chunked"'), ("te_empty_elem", b"chunked,"),
                   ("te_chunked_param", b"chunked;q=1"), ("te_identity", b"identity")):
        add(cid, (lambda v: lambda t: req_line(t) + H + b"Transfer-Encoding: " + v + b"\r\n\r\n"
                  b"0\r\n\r\n" + smug(t))(v), TE_REFUSED)
    add("te_then_x", lambda t: req_line(t) + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: x\r\n\r\n0\r\n\r\n" + smug(t), TE_REFUSED)
    add("te_space_before_colon", lambda t: req_line(t) + H + b"Transfer-Encoding : chunked\r\n\r\n"
        b"0\r\n\r\n" + smug(t), S(400, "http_ws_before_colon"))
    add("te_line_leading_space", lambda t: req_line(t) + H + b" Transfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + smug(t), S(400, "http_obs_fold"))
    add("te_first_line_leading_space", lambda t: req_line(t) + b" Transfer-Encoding: chunked\r\n" + H
        + b"\r\n0\r\n\r\n" + smug(t), S(400, "http_obs_fold"))
    add("te_after_bare_lf", lambda t: req_line(t) + H + b"X: y\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + smug(t), S(400, "http_bare_lf"))
    add("te_http10", lambda t: req_line(t, version=b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n"
        b"\r\n0\r\n\r\n" + smug(t), S(400, "http_te_http10"))
    # field syntax
    add("obs_fold", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\r\n b\r\n\r\n" + smug(t),
        S(400, "http_obs_fold"))
    add("obs_fold_tab", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\r\n\tb\r\n\r\n" + smug(t),
        S(400, "http_obs_fold"))
    add("bare_cr_value", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\rGET /smuggled-" + t
        + b" HTTP/1.1\r\n\r\n", S(400, "http_bare_cr"))
    add("bare_lf_value", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\nGET /smuggled-" + t
        + b" HTTP/1.1\r\n\r\n", S(400, "http_bare_lf"))
    add("crlf_injected_line", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\r\nGET /smuggled-" + t
        + b" HTTP/1.1\r\n\r\n", S(400, "http_bad_field_name"))
    add("bare_lf_request", lambda t: b"GET /r-" + t + b" HTTP/1.1\nHost: localhost\n\n" + smug(t),
        S(400, "http_bare_lf"))
    add("nul_value", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\x00b\r\n\r\n" + smug(t),
        S(400, "http_bad_field_value"))
    add("ctl_value", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\x01b\r\n\r\n" + smug(t),
        S(400, "http_bad_field_value"))
    add("del_value", lambda t: req_line(t, b"GET") + H + b"X-Foo: a\x7fb\r\n\r\n" + smug(t),
        S(400, "http_bad_field_value"))
    add("space_before_colon", lambda t: req_line(t, b"GET") + H + b"X-Foo : a\r\n\r\n" + smug(t),
        S(400, "http_ws_before_colon"))
    add("tab_before_colon", lambda t: req_line(t, b"GET") + H + b"X-Foo\t: a\r\n\r\n" + smug(t),
        S(400, "http_ws_before_colon"))
    add("nul_name", lambda t: req_line(t, b"GET") + H + b"X-F\x00o: a\r\n\r\n" + smug(t),
        S(400, "http_bad_field_name"))
    add("empty_name", lambda t: req_line(t, b"GET") + H + b": a\r\n\r\n" + smug(t),
        S(400, "http_bad_field_name"))
    # request line
    add("bad_method", lambda t: b"G(ET /r-" + t + b" HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S(400, "http_bad_method"))
    add("bad_target", lambda t: b"GET r-" + t + b" HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S(400, "http_bad_target"))
    add("target_fragment", lambda t: b"GET /r-" + t + b"#x HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S(400, "http_bad_target"))
    add("target_nul", lambda t: b"GET /r-" + t + b"\x00 HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S(400, "http_bad_target"))
    add("target_8bit", lambda t: b"GET /r-" + t + b"\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S(400, "http_bad_target"))
    add("two_spaces", lambda t: b"GET  /r-" + t + b" HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S2((400, "http_bad_request_line"), (400, "http_bad_target"), (400, "http_bad_method")))
    add("space_in_target", lambda t: b"GET /r-" + t + b" x HTTP/1.1\r\n" + H + b"\r\n" + smug(t),
        S2((400, "http_bad_request_line"), (400, "http_bad_version")))
    add("line_too_long", lambda t: b"GET /r-" + t + b"/" + b"a" * 9000 + b" HTTP/1.1\r\n" + H
        + b"\r\n" + smug(t), S(414, "http_request_line_too_long"))
    add("head_too_large", lambda t: req_line(t, b"GET") + H
        + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(40)) + b"\r\n" + smug(t),
        S(431, "http_head_too_large"))
    add("too_many_fields", lambda t: req_line(t, b"GET") + H
        + b"".join(b"X-F%d: v\r\n" % i for i in range(100)) + b"\r\n" + smug(t),
        S(431, "http_too_many_fields"))
    add("http20", lambda t: req_line(t, b"GET", b"HTTP/2.0") + H + b"\r\n" + smug(t),
        S(505, "http_version_unsupported"))
    add("http12", lambda t: req_line(t, b"GET", b"HTTP/1.2") + H + b"\r\n" + smug(t),
        S(505, "http_version_unsupported"))
    add("http_lower", lambda t: req_line(t, b"GET", b"http/1.1") + H + b"\r\n" + smug(t),
        S(400, "http_bad_version"))
    add("host_missing", lambda t: req_line(t, b"GET") + b"X-A: b\r\n\r\n" + smug(t),
        S(400, "http_host_missing"))
    add("host_twice", lambda t: req_line(t, b"GET") + H + H + b"\r\n" + smug(t),
        S(400, "http_host_multiple"))
    add("host_twice_other", lambda t: req_line(t, b"GET") + H + b"Host: other.example\r\n\r\n"
        + smug(t), S(400, "http_host_multiple"))
    add("host_userinfo", lambda t: req_line(t, b"GET") + b"Host: localhost@other.example\r\n\r\n"
        + smug(t), S(400, "http_host_invalid"))
    add("expect_other", lambda t: req_line(t) + H + b"Expect: 200-ok\r\nContent-Length: 0\r\n\r\n"
        + smug(t), S(417, "http_expect_unsupported"))
    return c


@pytest.mark.parametrize("build,statuses", head_cases())
def test_head_refused_nothing_forwarded(http_sd, recorder, h1, build, statuses, request):
    rec = recorder()
    sd = http_sd(rec.target)
    tag = request.node.callspec.id.encode().replace(b"_", b"-")
    refuse(h1, sd, rec, build(tag), statuses, tag)


def chunked_head(tag):
    return req_line(tag) + H + b"Transfer-Encoding: chunked\r\n\r\n"


BODY_CASES = [
    pytest.param(lambda t: b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", S(400, "http_bad_chunk_size"),
                 id="chunk_size_17_digits"),
    pytest.param(lambda t: b"1" + b"0" * 16 + b"\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n",
                 S(400, "http_bad_chunk_size"), id="chunk_size_overflow"),
    pytest.param(lambda t: b"0x5\r\nhello\r\n0\r\n\r\n", S(400, "http_bad_chunk_size"),
                 id="chunk_size_0x"),
    pytest.param(lambda t: b"-5\r\nhello\r\n0\r\n\r\n", S(400, "http_bad_chunk_size"),
                 id="chunk_size_negative"),
    pytest.param(lambda t: b"+5\r\nhello\r\n0\r\n\r\n", S(400, "http_bad_chunk_size"),
                 id="chunk_size_plus"),
    pytest.param(lambda t: b"\r\nhello\r\n0\r\n\r\n", S(400, "http_bad_chunk_size"),
                 id="chunk_size_empty"),
    pytest.param(lambda t: b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n",
                 S(400, "http_chunk_ext_too_long"), id="chunk_ext_5000"),
    pytest.param(lambda t: b"5;a=\x01\r\nhello\r\n0\r\n\r\n", S(400, "http_bad_chunk_ext"),
                 id="chunk_ext_ctl"),
    pytest.param(lambda t: b"5\r\nhelloXY0\r\n\r\n", S(400, "http_bad_chunk_end"),
                 id="chunk_data_overrun"),
    pytest.param(lambda t: b"5\nhello\r\n0\r\n\r\n", S(400, "http_bare_lf"), id="chunk_bare_lf"),
    pytest.param(lambda t: b"5\r\nhello\r\n0\r\n Client-Cert: x\r\n\r\n", S(400, "http_obs_fold"),
                 id="trailer_obs_fold"),
]


@pytest.mark.parametrize("body,statuses", BODY_CASES)
def test_bad_chunked_body_refused(http_sd, recorder, h1, body, statuses, request):
    rec = recorder()
    sd = http_sd(rec.target)
    tag = request.node.callspec.id.encode().replace(b"_", b"-")
    refuse(h1, sd, rec, chunked_head(tag) + body(tag) + smug(tag), statuses, tag, body_level=True)


def test_tab_in_transfer_encoding_is_refused(http_sd, recorder, h1):
    """"Transfer-Encoding:<HTAB>chunked" is a known TE.TE obfuscation: some
    backends do not trim the tab and would read the body by another framing.
    steeldoor refuses any HTAB in a Transfer-Encoding value (400
    http_te_invalid) rather than guess which reading the backend makes, and
    nothing of the request, nor the one behind it, reaches the backend."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(b"POST /tab HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\tchunked\r\n\r\n"
               + chunked(b"hello") + b"GET /after-tab HTTP/1.1\r\nHost: localhost\r\n"
               b"Client-Cert: :U1BPT0Y=:\r\n\r\n")
        r1 = c.response()
        assert_refusal(r1, 400, "http_te_invalid")
        assert c.wait_closed(), "the connection must close after a refused head"
    time.sleep(0.3)
    assert rec.reqs() == [], rec.reqs()
    assert b"after-tab" not in rec.all_raw()


def test_valid_chunked_is_reframed(http_sd, recorder, h1, pki):
    """Chunk extensions and trailers never reach the backend; the body does,
    byte for byte, and the backend's framing agrees with steeldoor's."""
    rec = recorder()
    sd = http_sd(rec.target)
    parts = [os.urandom(1), os.urandom(1000), os.urandom(70000), b"end"]
    body = chunked(*parts, ext=b";ext=1;name=\"v\"",
                   trailers=[b"X-Trailer: t", b"Client-Cert: :U1BPT0Y=:", b"Content-Length: 3"])
    with h1(sd.port) as c:
        c.send(b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               + body + b"GET /next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert c.response().status == 200
        assert c.response().status == 200
    q = rec.wait_requests(2)
    assert [x.target for x in q] == ["/chunked", "/next"], q
    assert q[0].body == b"".join(parts)
    assert b";ext" not in q[0].raw_body and b"name=" not in q[0].raw_body, q[0].raw_body[:200]
    assert q[0].trailers == [], "trailers reached the backend: %r" % q[0].trailers
    assert b"X-Trailer" not in rec.all_raw() and b"U1BPT0Y" not in rec.all_raw()
    assert q[0].all("Client-Cert") == [sdhttp.client_cert_value(pki.client_cert)]
    # framed one way only
    assert not (q[0].all("Content-Length") and q[0].all("Transfer-Encoding")), q[0]


def test_body_then_pipelined_request(http_sd, recorder, h1, pki):
    """A Content-Length body is exactly that long: what follows is the next
    request, parsed (spoofed identity removed, identity added)."""
    rec = recorder()
    sd = http_sd(rec.target)
    nxt = b"GET /second HTTP/1.1\r\nHost: localhost\r\nClient-Cert: :U1BPT0Y=:\r\n\r\n"
    with h1(sd.port) as c:
        c.send(b"POST /first HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello" + nxt)
        assert c.response().status == 200
        assert c.response().status == 200
    q = rec.wait_requests(2)
    assert [x.target for x in q] == ["/first", "/second"], q
    assert q[0].body == b"hello"
    real = sdhttp.client_cert_value(pki.client_cert)
    assert q[1].all("Client-Cert") == [real], q[1]


def test_body_smuggled_request_stays_body(http_sd, recorder, h1):
    """A request inside a Content-Length body is body, never a request."""
    rec = recorder()
    sd = http_sd(rec.target)
    inner = smug(b"inner")
    with h1(sd.port) as c:
        r = c.request("POST", "/outer", body=inner)
        assert r.status == 200
    q = rec.wait_requests(1)
    time.sleep(0.2)
    assert [x.target for x in rec.reqs()] == ["/outer"]
    assert q[0].body == inner


def test_request_after_connection_close_not_forwarded(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/last", [("Connection", "close")]) + smug(b"after-close"))
        r = c.response()
        assert r.status == 200
        assert c.wait_closed(3), "connection open after Connection: close"
    control(h1, sd, rec, "after-close")
    assert_never_reached(rec, b"/smuggled-after-close")


def test_percent_encoded_crlf_stays_in_target(http_sd, recorder, h1):
    rec = recorder()
    sd = http_sd(rec.target)
    target = "/a%0d%0aX-Injected:%201%0d%0a%0d%0aGET%20/smuggled-pct%20HTTP/1.1"
    with h1(sd.port) as c:
        assert c.request("GET", target).status == 200
    q = rec.wait_requests(1)
    assert q[0].target == target
    assert not q[0].all("X-Injected")
    assert_never_reached(rec, b"/smuggled-pct HTTP")


LIMIT_CASES = [
    ("fields_100", lambda: ("/many", [("X-F%d" % i, "v%d" % i) for i in range(99)])),
    ("line_8000", lambda: ("/long/" + "a" * 8000, [])),
    ("head_31k", lambda: ("/big", [("X-Pad-%d" % i, "p" * 1000) for i in range(31)])),
]


def _limit_checks(q, cases):
    for (name, mk), x in zip(cases, q):
        path, hdrs = mk()
        assert x.target == path
        for k, v in hdrs:
            assert x.get(k) == v, "%s: field %s lost" % (name, k)


def test_limits_just_inside_are_accepted(http_sd, recorder, h1):
    """Positive controls for the limits, each on a fresh connection: 100
    fields (Host + 99), a request line of ~8 KB, a head of ~31 KB (all
    under the 100-field, 8 KiB and 32 KiB limits) are forwarded whole."""
    rec = recorder()
    sd = http_sd(rec.target)
    for name, mk in LIMIT_CASES:
        path, hdrs = mk()
        with h1(sd.port) as c:
            r = c.request("GET", path, headers=hdrs)
            assert r.status == 200, "%s refused on a fresh connection: %r" % (name, r)
    _limit_checks(rec.wait_requests(3), LIMIT_CASES)


def test_limits_same_on_kept_alive_connection(http_sd, recorder, h1):
    """The limits do not shrink on a kept-alive connection: after a small
    first request, the same heads are still accepted."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        assert c.request("GET", "/small").status == 200
        for name, mk in LIMIT_CASES:
            path, hdrs = mk()
            r = c.request("GET", path, headers=hdrs)
            assert r.status == 200, "%s refused after a first request on the connection " \
                "(accepted on a fresh one): %r" % (name, r)
    _limit_checks(rec.wait_requests(4)[1:], LIMIT_CASES)


def test_pipelined_after_refusal_in_later_request(http_sd, recorder, h1):
    """Good request, bad request, smuggled one, in one write: the first is
    answered, the second refused, the third never forwarded."""
    rec = recorder()
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/good") +
               b"GET /r-late HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smug(b"late"))
        assert c.response().status == 200
        assert_refusal(c.response(), 400, "http_te_and_cl")
        assert c.wait_closed(3)
    control(h1, sd, rec, "late")
    assert_never_reached(rec, b"/r-late", b"/smuggled-late")
    assert [x.target for x in rec.reqs()] == ["/good", "/control-late"]


def test_chunk_size_limits_inside(http_sd, recorder, h1):
    """Positive controls for the chunked decoder: 16 hex digits (leading
    zeros), upper-case hex, an extension of ~4000 bytes, 5000 one-byte
    chunks: all decoded to the same body."""
    rec = recorder()
    sd = http_sd(rec.target)
    body = (b"000000000000000A\r\n0123456789\r\n" + b"1F;" + b"e" * 4000 + b"\r\n" + b"z" * 31
            + b"\r\n" + b"".join(b"1\r\n%c\r\n" % (65 + i % 26) for i in range(5000)) + b"0\r\n\r\n")
    want = b"0123456789" + b"z" * 31 + bytes(65 + i % 26 for i in range(5000))
    with h1(sd.port, timeout=10) as c:
        c.send(b"POST /limits HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        r = c.response()
        assert r.status == 200, r
    assert rec.wait_requests(1)[0].body == want
