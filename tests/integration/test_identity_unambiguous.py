"""The identity steeldoor admits is the identity it hands on, unambiguously.

A certificate that names two principals can be admitted as one and read by
the backend as the other: two SPIFFE IDs (an X.509-SVID has exactly one),
two CNs, or a CA certificate presented as a client leaf (a CA can mint any
name it likes). Such certificates are refused whatever the rules
(malformed_identity, ca_certificate). And with --proxy-protocol the header
says which name matched which rule - TLV 0xE4 the matched value, 0xE5 the
rule text as logged - so a backend never has to guess (the first SAN is not
necessarily the one that was checked); the conn log line carries the same
value as "identity". The SNI (AUTHORITY TLV) is there on resumed sessions
too, TLS 1.2 included.
"""
import ipaddress
import struct
import time

import pytest

from sdlib import recv_exact
from conftest import (TLS_VERSIONS, expect_admitted, expect_refused, root_issuer, issue_cert,
                      version_ctx, tls_attempt)

from cryptography import x509
from cryptography.x509.oid import NameOID

VERS = list(TLS_VERSIONS)
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_AUTHORITY = 0x02
SD_MATCHED = 0xE4
SD_RULE = 0xE5
MALFORMED = "malformed_identity"


# --------------------------------------------------------------------------
# PROXY v2 parsing (strict, independent of steeldoor's code)
# --------------------------------------------------------------------------

def _tlvs(buf):
    out, i = [], 0
    while i < len(buf):
        assert len(buf) - i >= 3, "truncated TLV header at %d: %r" % (i, buf[i:])
        t, ln = buf[i], struct.unpack(">H", buf[i + 1:i + 3])[0]
        assert i + 3 + ln <= len(buf), "TLV 0x%02x overruns the header" % t
        out.append((t, bytes(buf[i + 3:i + 3 + ln])))
        i += 3 + ln
    return out


def pp_handler(conn, backend):
    """Parses the PROXY v2 header, records {'tlvs', 'src'} (or 'error'), echoes."""
    rec = {"tlvs": None, "error": None}
    with backend.lock:
        backend.results.append(rec)
    try:
        h = recv_exact(conn, 16, timeout=5)
        assert h[:12] == SIG, "no PROXY v2 signature: %r" % h
        assert h[12] == 0x21 and h[13] == 0x11, "not a v2 PROXY TCP4 header: %r" % h[12:14]
        rest = recv_exact(conn, struct.unpack(">H", h[14:16])[0], timeout=5)
        rec["src"] = (str(ipaddress.IPv4Address(rest[0:4])), struct.unpack(">H", rest[8:10])[0])
        rec["tlvs"] = _tlvs(rest[12:])
    except Exception as e:  # recorded; the test fails on it
        rec["error"] = repr(e)
        return
    while True:
        d = conn.recv(65536)
        if not d:
            return
        conn.sendall(d)


def one_tlv(tlvs, t):
    vs = [v for tt, v in tlvs if tt == t]
    assert len(vs) == 1, "TLV 0x%02x present %d times (expected once): %s" % (
        t, len(vs), [(hex(a), b) for a, b in tlvs])
    return vs[0]


def pp_conn(sd, be, ctx, port, session=None, server_hostname="localhost"):
    """One admitted connection through a PROXY-protocol listener; returns
    (tlvs, log line, reused, session)."""
    n = len(be.results)
    r = tls_attempt(ctx, port, session=session, server_hostname=server_hostname)
    assert r["ok"], "not admitted: %s" % r
    res = be.wait_results(n + 1, timeout=5)
    assert len(res) > n, "backend never got the connection"
    rec = res[n]
    deadline = time.monotonic() + 5
    while rec["tlvs"] is None and rec["error"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec["error"] is None, "bad PROXY header: %s" % rec["error"]
    assert "%s:%d" % rec["src"] == r["peer"], "header for another connection: %s %s" % (
        rec["src"], r["peer"])
    e = sd.wait_conn(r["peer"])
    assert e.get("result") == "ok", e
    return rec["tlvs"], e, r["reused"], r["session"]


# --------------------------------------------------------------------------
# two SPIFFE IDs, two CNs
# --------------------------------------------------------------------------

TWO_IDS = {
    "two-spiffe-ids": ["spiffe://example.org/a", "spiffe://example.org/b"],
    "other-trust-domain": ["spiffe://example.org/a", "spiffe://evil.example/a"],
    "scheme-case": ["spiffe://example.org/a", "SPIFFE://example.org/admin"],
}


@pytest.mark.parametrize("case", list(TWO_IDS))
@pytest.mark.parametrize("rules", ["allow-all", "allow-uri"])
def test_two_spiffe_ids_refused(steeldoor, backends, pki, certs, case, rules):
    """Attack: a certificate carrying two SPIFFE IDs - admitted by a rule for
    the first, while the backend reads the second. Refused
    (malformed_identity) even with --allow-all, TLS 1.3 and 1.2. Control: a
    SPIFFE ID plus a non-SPIFFE URI is fine."""
    leaf = certs.client("two-" + case, cn="two-ids", uris=TWO_IDS[case])
    ok = certs.client("one-id", cn="one-id",
                      uris=["spiffe://example.org/a", "urn:example:not-spiffe"])
    be = backends()
    if rules == "allow-all":
        sd = steeldoor(target=be.target)
    else:
        sd = steeldoor(target=be.target, allow_all=False,
                       extra=["--allow-uri", "spiffe://example.org/a"])
    for ver in VERS:
        e = expect_refused(sd, be, version_ctx(pki.ca, leaf.pair, ver), sd.port, MALFORMED)
        assert "two-ids" in e.get("subject", ""), e
        expect_admitted(sd, version_ctx(pki.ca, ok.pair, ver), sd.port)


def _two_cn_subject(multi_valued):
    a = x509.NameAttribute(NameOID.COMMON_NAME, "alice")
    b = x509.NameAttribute(NameOID.COMMON_NAME, "admin")
    o = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")
    if multi_valued:
        return x509.Name([x509.RelativeDistinguishedName([o]),
                          x509.RelativeDistinguishedName([a, b])])
    return x509.Name([o, a, b])


@pytest.mark.parametrize("form", ["two-rdns", "multi-valued-rdn"])
@pytest.mark.parametrize("rules", ["allow-all", "allow-cn"])
def test_two_cns_refused(steeldoor, backends, pki, certs, form, rules):
    """Attack: subject with CN=alice and CN=admin - a CN rule matches alice,
    a backend reading "the" CN may take admin. Refused (malformed_identity)
    whatever the rules. Control: a single CN=alice is admitted."""
    leaf = certs.client("two-cn-" + form, subject=_two_cn_subject(form == "multi-valued-rdn"))
    ok = certs.client("one-cn", cn="alice")
    be = backends()
    if rules == "allow-all":
        sd = steeldoor(target=be.target)
    else:
        sd = steeldoor(target=be.target, allow_all=False, extra=["--allow-cn", "alice"])
    for ver in VERS:
        expect_refused(sd, be, version_ctx(pki.ca, leaf.pair, ver), sd.port, MALFORMED)
        expect_admitted(sd, version_ctx(pki.ca, ok.pair, ver), sd.port)


# --------------------------------------------------------------------------
# a CA certificate as client leaf
# --------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["ca-keycertsign", "ca-pathlen0-no-keycertsign"])
@pytest.mark.parametrize("rules", ["allow-all", "allow-uri"])
def test_ca_certificate_never_a_client(steeldoor, backends, pki, tmp_path, variant, rules):
    """Attack: a certificate with basicConstraints CA:TRUE, the clientAuth EKU
    and a matching SPIFFE ID, signed by the client CA, used as the client leaf
    (whoever holds a CA key can mint any identity). Refused with reason
    ca_certificate, never admitted. Control: the same names on a CA:FALSE leaf
    are admitted."""
    root = root_issuer(pki)
    uri = "spiffe://example.org/ca-client"
    if variant == "ca-keycertsign":
        leaf = issue_cert(tmp_path / "c", "ca-leaf", root, cn="ca-leaf", uris=[uri], ca=True)
    else:
        leaf = issue_cert(tmp_path / "c", "ca-leaf", root, cn="ca-leaf", uris=[uri], ca=True,
                          path_length=0, key_cert_sign=False)
    ok = issue_cert(tmp_path / "c", "plain-leaf", root, cn="plain-leaf", uris=[uri])
    be = backends()
    if rules == "allow-all":
        sd = steeldoor(target=be.target)
    else:
        sd = steeldoor(target=be.target, allow_all=False, extra=["--allow-uri", uri])
    for ver in VERS:
        expect_refused(sd, be, version_ctx(pki.ca, leaf.pair, ver), sd.port, "ca_certificate")
        expect_admitted(sd, version_ctx(pki.ca, ok.pair, ver), sd.port)


# --------------------------------------------------------------------------
# PROXY v2: the matched value and the rule
# --------------------------------------------------------------------------

# case: (rule flags, cert kwargs, expected matched value, expected rule text)
MATCH_CASES = {
    "uri-not-first-san": (
        ["--allow-uri", "spiffe://example.org/ns/*"],
        dict(cn="uri-client", uris=["urn:example:first", "spiffe://example.org/ns/svc"],
             dns=["svc.example.org"]),
        "spiffe://example.org/ns/svc", "uri:spiffe://example.org/ns/*"),
    "dns-second-san": (
        ["--allow-dns", "b.example.org"],
        dict(cn="dns-client", dns=["a.example.org", "b.example.org"]),
        "b.example.org", "dns:b.example.org"),
    "cn-rule": (
        ["--allow-cn", "cn-client"],
        dict(cn="cn-client", uris=["spiffe://example.org/cn-client"], dns=["cn.example.org"]),
        "cn-client", "cn:cn-client"),
    "second-rule": (
        ["--allow-dns", "nomatch.example.org", "--allow-uri", "spiffe://example.org/two"],
        dict(cn="two-rules", uris=["spiffe://example.org/two"], dns=["two.example.org"]),
        "spiffe://example.org/two", "uri:spiffe://example.org/two"),
    "all-spiffe": (
        ["--allow-all"],
        dict(cn="all-cn", uris=["urn:example:first", "spiffe://example.org/all"],
             dns=["all.example.org"]),
        "spiffe://example.org/all", "all"),
    "all-no-spiffe": (
        ["--allow-all"],
        dict(cn="no-spiffe-cn", uris=["urn:example:only"], dns=["nospiffe.example.org"]),
        "no-spiffe-cn", "all"),
}


@pytest.mark.parametrize("case", list(MATCH_CASES))
def test_proxy_header_carries_matched_identity(steeldoor, backends, pki, certs, case):
    """Attack surface: a backend that takes "the first URI SAN" or "the CN"
    as the identity can be handed a name that no rule checked. The header's
    TLV 0xE4 is the value that matched (not the first SAN), 0xE5 the rule text
    as logged, and the log line's "identity" equals 0xE4; with allow-all,
    0xE4 is the single SPIFFE ID, else the CN. TLS 1.3 and 1.2, and again on
    the resumed session."""
    flags, kw, matched, rule = MATCH_CASES[case]
    leaf = certs.client("m-" + case, **kw)
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, allow_all=False, extra=["--proxy-protocol"] + flags)
    for ver in VERS:
        ctx = version_ctx(pki.ca, leaf.pair, ver)
        sess = None
        for attempt in ("full", "resumed"):
            tlvs, e, reused, new = pp_conn(sd, be, ctx, sd.port, session=sess)
            assert reused == (attempt == "resumed"), "%s/%s: resumed=%s" % (ver, attempt, reused)
            what = "%s/%s/%s" % (case, ver, attempt)
            assert one_tlv(tlvs, SD_MATCHED) == matched.encode(), \
                "%s: 0xE4 %r, expected the matched value %r" % (
                    what, one_tlv(tlvs, SD_MATCHED), matched)
            assert one_tlv(tlvs, SD_RULE) == rule.encode(), \
                "%s: 0xE5 %r, expected the rule %r" % (what, one_tlv(tlvs, SD_RULE), rule)
            assert e.get("rule") == rule, "%s: log rule %r" % (what, e.get("rule"))
            assert e.get("identity") == matched, "%s: log identity %r, expected %r: %s" % (
                what, e.get("identity"), matched, e)
            sess = new


# --------------------------------------------------------------------------
# PROXY v2 AUTHORITY (SNI) on full and resumed handshakes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sni", ["svc.internal.example", None], ids=["sni", "no-sni"])
@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
@pytest.mark.parametrize("ver", VERS)
def test_authority_tlv_on_resumed_sessions(steeldoor, backends, pki, ver, workers, sni):
    """Attack surface: a backend routing or authorizing on the server name
    gets it from the AUTHORITY TLV; on a resumed session (TLS 1.2 resumes by
    session id, the SNI then lives in the session) it must be there and equal
    to the full handshake's, as must the identity TLVs; without SNI there is
    no AUTHORITY TLV, resumed or not. Several resumptions, so that with 2
    workers the shared session cache is used too."""
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, workers=workers, allow_all=False,
                   extra=["--proxy-protocol", "--allow-uri", "spiffe://example.org/billing"])
    ctx = version_ctx(pki.ca, (pki.client_cert, pki.client_key), ver)
    ctx.check_hostname = False           # the server certificate names localhost only
    name = sni
    want = [name.encode()] if name else []
    tlvs, e, reused, sess = pp_conn(sd, be, ctx, sd.port, server_hostname=name)
    assert not reused
    assert [v for t, v in tlvs if t == PP2_AUTHORITY] == want, tlvs
    full = {t: v for t, v in tlvs if t in (SD_MATCHED, SD_RULE)}
    for i in range(4):
        tlvs, e, reused, new = pp_conn(sd, be, ctx, sd.port, session=sess, server_hostname=name)
        assert reused and e.get("resumed") is True, "control: resumption %d failed: %s" % (i, e)
        auth = [v for t, v in tlvs if t == PP2_AUTHORITY]
        assert auth == want, "resumed %s session %d: AUTHORITY TLVs %r, expected %r" % (
            ver, i, auth, want)
        assert {t: v for t, v in tlvs if t in (SD_MATCHED, SD_RULE)} == full, \
            "resumed session %d: identity TLVs %s differ from the full handshake's %s" % (
                i, [(hex(t), v) for t, v in tlvs if t in (SD_MATCHED, SD_RULE)], full)
        sess = new or sess
