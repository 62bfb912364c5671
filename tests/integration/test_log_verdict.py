"""Client-controlled names can never push the verdict out of a log line.

A certificate with kilobytes of SANs (or a huge subject, or a long SNI)
used to make the connection's line reach its 4 KiB cap and lose result,
reason, bytes and duration. The verdict and the counters now come first,
what the client sent comes last and bounded, and a cut field is marked
"<key>_truncated": true.
"""
import json

import pytest

import sdlib
from conftest import expect_admitted, expect_refused


def _names(n, width, tag):
    return ["%s%03d.%s.example.org" % (tag, i, "x" * width) for i in range(n)]


def _raw_lines(sd):
    return [l for l in sd.raw_lines() if '"event":"conn"' in l]


def _check_line(sd, e, want_result, want_reason):
    # the raw line is valid JSON and within the cap
    raw = [l for l in _raw_lines(sd) if ('"peer":"%s"' % e["peer"]) in l]
    assert len(raw) == 1, raw
    assert len(raw[0].encode()) <= 4096, len(raw[0])
    json.loads(raw[0])
    assert e["result"] == want_result, e
    if want_reason is not None:
        assert e["reason"] == want_reason, e
    for k in ("listener", "peer", "bytes_in", "bytes_out", "duration_ms"):
        assert k in e, "verdict field %s pushed out: %s" % (k, raw[0][:300])


@pytest.mark.parametrize("ver", ["1.2", "1.3"])
def test_refused_self_signed_with_kilobytes_of_sans(steeldoor, backends, pki, certs, ver):
    """A self-signed certificate (refused: unknown_ca) with 60 DNS SANs of
    ~200 bytes: the refusal's line keeps result and reason, and says the
    SANs were cut."""
    rogue = certs.ca("rogue-log", issuer="self")
    leaf = certs.client("many-sans-refused", cn="c" * 60, dns=_names(60, 180, "r"),
                        issuer=rogue)
    be = backends()
    sd = steeldoor(target=be.target)
    v = {"1.2": sdlib.ssl.TLSVersion.TLSv1_2, "1.3": sdlib.ssl.TLSVersion.TLSv1_3}[ver]
    ctx = sdlib.client_ctx(pki.ca, leaf.crt, leaf.key, max_version=v, min_version=v)
    e = expect_refused(sd, be, ctx, sd.port, "unknown_ca")
    _check_line(sd, e, "refused", "unknown_ca")
    assert e.get("sans_truncated") is True, e
    assert len(e.get("sans", [])) < 60, e


def test_admitted_with_many_long_names(steeldoor, backends, pki, certs):
    """An admitted client with 60 long DNS SANs and a long subject: the
    ok line keeps bytes and duration; the names are marked as cut."""
    leaf = certs.client("many-sans-ok", cn="n" * 60, o="o" * 60, ou="u" * 60,
                        dns=_names(60, 150, "a"))
    be = backends()
    sd = steeldoor(target=be.target)
    ctx = sdlib.client_ctx(pki.ca, leaf.crt, leaf.key)
    e = expect_admitted(sd, ctx, sd.port)
    _check_line(sd, e, "ok", None)
    assert e["bytes_in"] > 0 and e["bytes_out"] > 0, e
    assert e.get("sans_truncated") is True, e
    assert e.get("rule") == "all", e
