"""Allow rules (--allow-uri/-dns/-cn/-ou/-spki/-all): who is admitted, who is
refused at the handshake, what the log says, and which rule sets are config
errors. Every refusal test has a positive control on the same process."""
import base64
import hashlib
import re
import ssl
import subprocess
import time

import pytest

import sdlib
from sdlib import free_port
from conftest import der_san, expect_admitted, expect_refused, serve_args
from test_config_errors import expect_startup_failure

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

V13 = ssl.TLSVersion.TLSv1_3
V12 = ssl.TLSVersion.TLSv1_2
NOT_AUTH = "not_authorized"
NO_MATCH = "no allow rule matched"


def ctx_of(pki, leaf, version=None):
    pair = leaf.pair if hasattr(leaf, "pair") else leaf
    kw = {}
    if version is not None:
        kw = {"max_version": version, "min_version": version}
    return sdlib.client_ctx(pki.ca, pair[0], pair[1], **kw)


def rules(*pairs):
    out = []
    for flag, val in pairs:
        out += ["--" + flag] + ([val] if val is not None else [])
    return out


def serve_rules(steeldoor, backend, *pairs, **kw):
    return steeldoor(target=backend.target, allow_all=False, extra=rules(*pairs), **kw)


def refused(sd, backend, pki, leaf, reason=NOT_AUTH, version=None):
    detail = NO_MATCH if reason == NOT_AUTH else None
    return expect_refused(sd, backend, ctx_of(pki, leaf, version), sd.port, reason, detail=detail)


def admitted(sd, pki, leaf, rule, version=None):
    e = expect_admitted(sd, ctx_of(pki, leaf, version), sd.port)
    if rule is not None:
        assert e.get("rule") == rule, "admitted with rule %r, expected %r: %s" % (
            e.get("rule"), rule, e)
    return e


def spki_sha256(cert):
    return hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


# ------------------------------------------------------------------- URI rules

BILLING = "spiffe://example.org/billing"


@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
def test_uri_exact(steeldoor, backends, pki, certs, version):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", BILLING))
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING, version)
    # pygood chains fine (spiffe://example.org/pygood) but is not billing
    refused(sd, be, pki, pki.pygood, version=version)
    # no prefix / suffix matching
    refused(sd, be, pki, certs.client("billingx", cn="billingx",
                                      uris=["spiffe://example.org/billingx"]), version=version)
    refused(sd, be, pki, certs.client("billing-sub", cn="billing-sub",
                                      uris=["spiffe://example.org/billing/x"]), version=version)
    refused(sd, be, pki, certs.client("bill", cn="bill", uris=["spiffe://example.org/bill"]),
            version=version)
    # a URI rule never matches the CN, even when the CN text is the URI
    refused(sd, be, pki, certs.client("cn-is-uri", cn=BILLING), version=version)
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING, version)
    assert be.count == 2


STAR = "spiffe://example.org/ns/*/sa/web"


@pytest.mark.parametrize("uri,ok", [
    ("spiffe://example.org/ns/prod/sa/web", True),
    ("spiffe://example.org/ns/a-b_c.9/sa/web", True),
    ("spiffe://example.org/ns/prod/x/sa/web", False),      # * is ONE segment
    ("spiffe://example.org/ns//sa/web", False),            # empty segment
    ("spiffe://example.org/ns/sa/web", False),             # zero segments
    ("spiffe://example.org/ns/prod/sa/web/extra", False),  # trailing segment
    ("spiffe://example.org/ns/prod/sa/webx", False),
    ("spiffe://other.org/ns/prod/sa/web", False),          # trust domain
])
def test_uri_single_star(steeldoor, backends, pki, certs, uri, ok):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", STAR))
    leaf = certs.client("c", cn="c", uris=[uri])
    if ok:
        admitted(sd, pki, leaf, "uri:" + STAR)
    else:
        refused(sd, be, pki, leaf)
        # positive control: a matching identity is admitted by this process
        admitted(sd, pki, certs.client("ctl", cn="ctl",
                                       uris=["spiffe://example.org/ns/ctl/sa/web"]), "uri:" + STAR)


def test_uri_star_last_segment(steeldoor, backends, pki, certs):
    pat = "spiffe://example.org/svc/*"
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", pat))
    admitted(sd, pki, certs.client("a", cn="a", uris=["spiffe://example.org/svc/a"]), "uri:" + pat)
    for i, u in enumerate(["spiffe://example.org/svc/a/b", "spiffe://example.org/svc/",
                           "spiffe://example.org/svc", "spiffe://example.org/svcx/a"]):
        refused(sd, be, pki, certs.client("r%d" % i, cn="r%d" % i, uris=[u]))


DSTAR = "spiffe://example.org/svc/**"


@pytest.mark.parametrize("uri,ok", [
    ("spiffe://example.org/svc/a", True),
    ("spiffe://example.org/svc/a/b/c", True),
    ("spiffe://example.org/svc", False),       # ** is ONE or more
    ("spiffe://example.org/svc/", False),
    ("spiffe://example.org/svcx/a", False),
    ("spiffe://example.org/other/a", False),
    ("spiffe://evil.org/svc/a", False),
    ("spiffe://example.org.evil.org/svc/a", False),
    ("https://example.org/svc/a", False),      # scheme compares exactly
])
def test_uri_double_star(steeldoor, backends, pki, certs, uri, ok):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", DSTAR))
    leaf = certs.client("c", cn="c", uris=[uri])
    if ok:
        admitted(sd, pki, leaf, "uri:" + DSTAR)
    else:
        refused(sd, be, pki, leaf)
        admitted(sd, pki, certs.client("ctl", cn="ctl", uris=["spiffe://example.org/svc/ctl"]),
                 "uri:" + DSTAR)


def test_uri_trust_domain_mismatch(steeldoor, backends, pki, certs):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", BILLING))
    for i, u in enumerate(["spiffe://evil.org/billing", "spiffe://example.org.evil/billing",
                           "spiffe://sub.example.org/billing", "spiffe://xexample.org/billing",
                           "spiffe://example.org:8443/billing", "spiffe://user@example.org/billing",
                           "spiff://example.org/billing"]):
        refused(sd, be, pki, certs.client("td%d" % i, cn="billing", uris=[u]))
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING)


def test_uri_any_of_several_sans(steeldoor, backends, pki, certs):
    """Several URI SANs, one SPIFFE ID: the rule may match any of them, and
    the log names the one that matched, not the first."""
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", BILLING))
    leaf = certs.client("multi", cn="multi", uris=["https://example.org/other", BILLING])
    e = admitted(sd, pki, leaf, "uri:" + BILLING)
    assert e is None or e.get("identity", BILLING) == BILLING, e


@pytest.mark.parametrize("rules", [("allow-uri", BILLING), ("allow-all", None)])
def test_two_spiffe_ids_are_malformed(steeldoor, backends, pki, certs, rules):
    """An X.509-SVID has exactly one SPIFFE ID. A certificate with two could
    be admitted by one and handed on as the other: refused whatever the
    rules, even allow-all."""
    be = backends()
    sd = serve_rules(steeldoor, be, rules)
    leaf = certs.client("two-ids", cn="two", uris=["spiffe://example.org/other", BILLING])
    refused(sd, be, pki, leaf, "malformed_identity")


# Hostile URI SANs: with the broadest legal rule for the trust domain, and the
# exact rule the hostile URI would "normalise" to, none may match.
HOSTILE_URIS = {
    "dotdot": "spiffe://example.org/svc/../billing",
    "dotdot_end": "spiffe://example.org/svc/a/..",
    "dot": "spiffe://example.org/svc/./a",
    "dot_billing": "spiffe://example.org/./billing",
    "pct_dot": "spiffe://example.org/svc/%2e%2e/billing",
    "pct_letter": "spiffe://example.org/bill%69ng",
    "pct_slash": "spiffe://example.org/svc%2fa",
    "double_slash": "spiffe://example.org/svc//a",
    "double_slash_root": "spiffe://example.org//billing",
    "query": "spiffe://example.org/billing?x=1",
    "query_svc": "spiffe://example.org/svc/a?x=1",
    "fragment": "spiffe://example.org/billing#frag",
    "control": "spiffe://example.org/svc/a\x01",
    "tab": "spiffe://example.org/svc/a\tb",
    "del": "spiffe://example.org/svc/a\x7f",
    "trailing_slash": "spiffe://example.org/billing/",
}


CONTROL_BYTE_URIS = ("control", "tab", "del")


def _hostile_leaf(certs, key, uri):
    if key == "nonascii":
        return certs.client(key, cn="hostile", raw_san=der_san(uris=[uri]))
    return certs.client(key, cn="hostile", uris=[uri])


@pytest.mark.parametrize("key", list(HOSTILE_URIS) + ["nonascii"])
def test_hostile_uri_never_matches(steeldoor, backends, pki, certs, key):
    uri = HOSTILE_URIS.get(key, b"spiffe://example.org/svc/caf\xc3\xa9")
    leaf = _hostile_leaf(certs, key, uri)
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", DSTAR), ("allow-uri", BILLING))
    if key in CONTROL_BYTE_URIS:
        # spec: "never match"; the reason may also be malformed_identity
        e = expect_refused(sd, be, ctx_of(pki, leaf), sd.port, None)
        assert e.get("reason") in (NOT_AUTH, "malformed_identity"), e
    else:
        refused(sd, be, pki, leaf)
    # positive controls: the rules do admit a clean identity...
    admitted(sd, pki, certs.client("clean", cn="clean", uris=["spiffe://example.org/svc/a/b"]),
             "uri:" + DSTAR)
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING)
    # ...and the hostile certificate itself chains (it is the rule that refuses it)
    if key in CONTROL_BYTE_URIS:
        return
    be2 = backends()
    sd2 = steeldoor(target=be2.target, allow_all=True)
    e = admitted(sd2, pki, leaf, "all")


# ------------------------------------------------------------------- DNS rules

def test_dns_case_insensitive(steeldoor, backends, pki, certs):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-dns", "PyGood.Example.ORG"))
    e = admitted(sd, pki, pki.pygood, None)
    assert (e.get("rule") or "").lower() == "dns:pygood.example.org", e
    upper = certs.client("upper", cn="upper", dns=["PYGOOD.EXAMPLE.ORG"])
    e = admitted(sd, pki, upper, None)
    assert (e.get("rule") or "").lower() == "dns:pygood.example.org", e
    # not a suffix/prefix match, no wildcard expansion from the certificate side
    for i, d in enumerate(["example.org", "x.pygood.example.org", "pygood.example.org.evil",
                           "*.example.org", "pygood.example.or"]):
        refused(sd, be, pki, certs.client("d%d" % i, cn="pygood.example.org", dns=[d]))


def test_dns_rule_never_matches_cn(steeldoor, backends, pki, certs):
    cn_only = certs.client("cnonly", cn="api.example.org")
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-dns", "api.example.org"))
    refused(sd, be, pki, cn_only)
    admitted(sd, pki, certs.client("dnsok", cn="zzz", dns=["api.example.org"]),
             "dns:api.example.org")
    # control: the same CN-only certificate is admitted by a CN rule
    be2 = backends()
    sd2 = serve_rules(steeldoor, be2, ("allow-cn", "api.example.org"))
    admitted(sd2, pki, cn_only, "cn:api.example.org")


# -------------------------------------------------------------------- CN rules

def test_cn_exact_case_sensitive(steeldoor, backends, pki, certs):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-cn", "billing"))
    admitted(sd, pki, (pki.client_cert, pki.client_key), "cn:billing")
    for i, cn in enumerate(["Billing", "BILLING", "billing2", "billin", " billing", "billing "]):
        refused(sd, be, pki, certs.client("cn%d" % i, cn=cn))


def test_cn_rule_never_matches_san(steeldoor, backends, pki, certs):
    # SAN DNS equals the rule's name, CN differs: refused
    leaf = certs.client("sanonly", cn="something-else", dns=["billing-svc"],
                        uris=["spiffe://example.org/billing-svc"])
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-cn", "billing-svc"))
    refused(sd, be, pki, leaf)
    admitted(sd, pki, certs.client("cnok", cn="billing-svc"), "cn:billing-svc")
    # control: the same certificate is admitted by the DNS rule for the name
    be2 = backends()
    sd2 = serve_rules(steeldoor, be2, ("allow-dns", "billing-svc"))
    admitted(sd2, pki, leaf, "dns:billing-svc")


# -------------------------------------------------------------------- OU rules

def test_ou(steeldoor, backends, pki, certs):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-ou", "payments"))
    admitted(sd, pki, certs.client("ou1", cn="x", ou="payments", o="Example"), "ou:payments")
    admitted(sd, pki, certs.client("ou2", cn="y", ou=["infra", "payments"]), "ou:payments")
    refused(sd, be, pki, certs.client("ou3", cn="x", ou="Payments"))
    refused(sd, be, pki, certs.client("ou4", cn="x", ou="payments-eu"))
    # an OU rule never matches the CN, O or a SAN
    refused(sd, be, pki, certs.client("ou5", cn="payments"))
    refused(sd, be, pki, certs.client("ou6", cn="x", o="payments", dns=["payments"]))


# ------------------------------------------------------------------ SPKI rules

def _spki_forms(cert):
    d = spki_sha256(cert)
    h = d.hex()
    return {
        "hex_lower": h,
        "hex_upper": h.upper(),
        "colon": ":".join(h[i:i + 2] for i in range(0, 64, 2)).upper(),
        "colon_lower": ":".join(h[i:i + 2] for i in range(0, 64, 2)),
        "base64": base64.b64encode(d).decode(),
    }


@pytest.mark.parametrize("form", ["hex_lower", "hex_upper", "colon", "colon_lower", "base64"])
def test_spki_forms(steeldoor, backends, pki, certs, form):
    leaf = certs.client("spki", cn="spki-client", uris=["spiffe://example.org/spki"])
    val = _spki_forms(leaf.cert)[form]
    if form == "base64":
        assert len(val) == 44
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-spki", val))
    admitted(sd, pki, leaf, "spki:" + spki_sha256(leaf.cert).hex())
    # another key, same names: refused
    refused(sd, be, pki, certs.client("spki2", cn="spki-client", uris=["spiffe://example.org/spki"]))
    # a new certificate for the SAME key is admitted (the pin is the key, not the cert)
    again = certs.client("spki3", cn="renewed", key=leaf.key_obj)
    admitted(sd, pki, again, "spki:" + spki_sha256(leaf.cert).hex())


def test_spki_is_not_cert_hash(steeldoor, backends, pki, certs):
    """Pinning the SHA-256 of the whole certificate DER must not match."""
    leaf = certs.client("spkic", cn="spkic")
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-spki", hashlib.sha256(leaf.der).hexdigest()),
                     ("allow-cn", "control"))
    refused(sd, be, pki, leaf)
    admitted(sd, pki, certs.client("ctl", cn="control"), "cn:control")


def test_spki_rsa_key(steeldoor, backends, pki, certs):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = certs.client("rsa", cn="rsa-client", key=k)
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-spki", spki_sha256(leaf.cert).hex().upper()))
    admitted(sd, pki, leaf, "spki:" + spki_sha256(leaf.cert).hex())
    refused(sd, be, pki, (pki.client_cert, pki.client_key))


# --------------------------------------------------------- several rules OR-ed

def test_rules_are_ored(steeldoor, backends, pki, certs):
    be = backends()
    ouc = certs.client("ouc", cn="ouc", ou="ops")
    pinned = certs.client("pinned", cn="pinned")
    sd = serve_rules(steeldoor, be, ("allow-cn", "nobody"), ("allow-uri", BILLING),
                     ("allow-dns", "pygood.example.org"), ("allow-ou", "ops"),
                     ("allow-spki", spki_sha256(pinned.cert).hex()))
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING)
    admitted(sd, pki, pki.pygood, "dns:pygood.example.org")
    admitted(sd, pki, ouc, "ou:ops")
    admitted(sd, pki, pinned, "spki:" + spki_sha256(pinned.cert).hex())
    admitted(sd, pki, certs.client("nb", cn="nobody"), "cn:nobody")
    refused(sd, be, pki, certs.client("stranger", cn="stranger", ou="dev",
                                      uris=["spiffe://example.org/stranger"],
                                      dns=["stranger.example.org"]))
    assert be.count == 5


def test_allow_all_logs_rule_all(steeldoor, backends, pki):
    be = backends()
    sd = steeldoor(target=be.target, allow_all=True)
    admitted(sd, pki, (pki.client_cert, pki.client_key), "all")
    admitted(sd, pki, pki.pygood, "all")


# ------------------------------------------------------- malformed identities

def _malformed_cases(certs):
    return {
        "cn_nul": (certs.client("cnnul", cn="billing\x00.evil"), ("allow-cn", "billing")),
        "ou_nul": (certs.client("ounul", cn="ou-nul", ou="payments\x00.evil"),
                   ("allow-ou", "payments")),
        "dns_nul": (certs.client("dnsnul", cn="dns-nul", dns=["billing.example.org\x00.evil.com"]),
                    ("allow-dns", "billing.example.org")),
        "uri_nul": (certs.client("urinul", cn="uri-nul",
                                 uris=["spiffe://example.org/billing\x00/evil"]),
                    ("allow-uri", BILLING)),
    }


@pytest.mark.parametrize("case", ["cn_nul", "ou_nul", "dns_nul", "uri_nul"])
def test_embedded_nul_is_malformed(steeldoor, backends, pki, certs, case):
    leaf, rule = _malformed_cases(certs)[case]
    be = backends()
    sd = serve_rules(steeldoor, be, rule)
    refused(sd, be, pki, leaf, reason="malformed_identity")
    # positive control: the clean form of the same identity is admitted
    clean = {"cn_nul": dict(cn="billing"), "ou_nul": dict(cn="ou", ou="payments"),
             "dns_nul": dict(cn="d", dns=["billing.example.org"]),
             "uri_nul": dict(cn="u", uris=[BILLING])}[case]
    admitted(sd, pki, certs.client("clean", **clean), "%s:%s" % (rule[0][6:], rule[1]))
    # even --allow-all refuses it
    be2 = backends()
    sd2 = steeldoor(target=be2.target, allow_all=True)
    refused(sd2, be2, pki, leaf, reason="malformed_identity")
    admitted(sd2, pki, (pki.client_cert, pki.client_key), "all")


def _openssl_client(port, cert, key, ca, payload=b"MALFORMED-PAYLOAD\n", wait=4.0):
    """openssl s_client sends certificates python's ssl refuses to load.
    Returns everything it printed on stdout within `wait` seconds."""
    import select
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                          "-servername", "localhost", "-CAfile", str(ca), "-cert", str(cert),
                          "-key", str(key), "-quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    try:
        p.stdin.write(payload)
        p.stdin.flush()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and payload not in out:
            r, _, _ = select.select([p.stdout], [], [], 0.1)
            if r:
                chunk = p.stdout.read1(65536)
                if not chunk:
                    break
                out += chunk
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        err = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("raw", [b"\x30\x05\x82\x10abc", b"\x04\x03abc", b"\x30\x03\x86\x05abc"],
                         ids=["truncated", "not_a_sequence", "inner_overrun"])
def test_malformed_san_extension(steeldoor, backends, pki, certs, raw):
    leaf = certs.client("badsan", cn="billing", raw_san=raw)
    be = backends()
    sd = steeldoor(target=be.target, allow_all=True)
    # positive control for the openssl client path: a good client gets its echo
    p = _openssl_client(sd.port, pki.client_cert, pki.client_key, pki.ca)
    assert b"MALFORMED-PAYLOAD" in p.stdout, "control client not echoed: %r %r" % (
        p.stdout[-300:], p.stderr[-600:])
    e = sd.wait_client_conn(lambda e: e.get("result") == "ok")
    assert e.get("rule") == "all", e
    before = be.count
    p = _openssl_client(sd.port, leaf.crt, leaf.key, pki.ca)
    assert b"MALFORMED-PAYLOAD" not in p.stdout, "malformed-SAN client got its bytes echoed"
    e = sd.wait_client_conn(lambda e: e.get("result") != "ok")
    assert e.get("result") == "refused" and e.get("reason") == "malformed_identity", e
    time.sleep(0.3)
    assert be.count == before


# ------------------------------------------------------------ resumed session

@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
def test_resumed_session_logs_rule(steeldoor, backends, pki, version):
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-cn", "nobody"), ("allow-uri", BILLING))
    ctx = ctx_of(pki, (pki.client_cert, pki.client_key), version)
    sess = None
    with sdlib.tls_connect(ctx, sd.port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
        assert sdlib.echo_roundtrip(s, b"again\n") == b"again\n"
        sess, peer = s.session, sdlib.peer_of(s)
    e = sd.wait_conn(peer)
    assert e["result"] == "ok" and e.get("resumed") is False and e.get("rule") == "uri:" + BILLING, e
    with sdlib.tls_connect(ctx, sd.port, session=sess) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
        reused, peer = s.session_reused, sdlib.peer_of(s)
    assert reused, "session did not resume (control)"
    e = sd.wait_conn(peer)
    assert e.get("resumed") is True, e
    assert e.get("rule") == "uri:" + BILLING, "resumed connection log line lacks the rule: %s" % e


# ------------------------------------------------------------------- YAML config

def _yaml_listener(make_config, be, port, raw):
    return make_config([{"name": "rules", "port": port, "target": be.target,
                         "allow-all": False, "raw": raw}])


def test_yaml_string_forms(steeldoor, backends, pki, certs, make_config):
    be = backends()
    port = free_port()
    sd = steeldoor(config=_yaml_listener(make_config, be, port,
                                         '    allow-uri: "%s"\n    allow-cn: ouc\n' % BILLING),
                   wait_ports=[port])
    sd.port = port
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING)
    admitted(sd, pki, certs.client("ouc", cn="ouc"), "cn:ouc")
    refused(sd, be, pki, pki.pygood)


def test_yaml_list_forms(steeldoor, backends, pki, certs, make_config):
    be = backends()
    port = free_port()
    pinned = certs.client("pinned", cn="pinned")
    raw = ("    allow-uri:\n"
           '      - "spiffe://example.org/nothing"\n'
           '      - "spiffe://example.org/billing"\n'
           "    allow-dns: [nothing.example.org, pygood.example.org]\n"
           "    allow-ou:\n      - ops\n"
           "    allow-spki:\n      - \"%s\"\n" % base64.b64encode(spki_sha256(pinned.cert)).decode())
    sd = steeldoor(config=_yaml_listener(make_config, be, port, raw), wait_ports=[port])
    sd.port = port
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING)
    admitted(sd, pki, pki.pygood, "dns:pygood.example.org")
    admitted(sd, pki, certs.client("ops", cn="o", ou="ops"), "ou:ops")
    admitted(sd, pki, pinned, "spki:" + spki_sha256(pinned.cert).hex())
    refused(sd, be, pki, certs.client("stranger", cn="stranger"))


def test_yaml_rules_per_listener(steeldoor, backends, pki, certs, make_config):
    be = backends()
    pa, pb = free_port(), free_port()
    cfg = make_config([
        {"name": "a", "port": pa, "target": be.target, "allow-all": False,
         "raw": '    allow-uri: "%s"\n' % BILLING},
        {"name": "b", "port": pb, "target": be.target, "allow-all": False,
         "raw": "    allow-dns: pygood.example.org\n"},
    ])
    sd = steeldoor(config=cfg, wait_ports=[pa, pb])
    sd.port = pa
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:" + BILLING)
    refused(sd, be, pki, pki.pygood)
    sd.port = pb
    admitted(sd, pki, pki.pygood, "dns:pygood.example.org")
    refused(sd, be, pki, (pki.client_cert, pki.client_key))


# ----------------------------------------------------------------- config errors

BAD_RULES = {
    "no_rule": ([], r"allow"),
    "allow_all_plus_uri": (["--allow-all", "--allow-uri", BILLING], r"allow-all"),
    "allow_all_plus_cn": (["--allow-all", "--allow-cn", "billing"], r"allow-all"),
    "wildcard_trust_domain": (["--allow-uri", "spiffe://*/x"], r"spiffe://\*/x|trust domain|authority"),
    "wildcard_trust_domain_dstar": (["--allow-uri", "spiffe://**/x"], r"spiffe://\*\*/x|trust domain|authority"),
    "double_star_not_last": (["--allow-uri", "spiffe://example.org/**/x"], r"\*\*|allow-uri"),
    "partial_star_td": (["--allow-uri", "spiffe://*.example.org/x"], r"trust domain|authority|\*"),
    "dns_star": (["--allow-dns", "*.example.org"], r"\*|wildcard|allow-dns"),
    "dns_star_mid": (["--allow-dns", "a*.example.org"], r"\*|wildcard|allow-dns"),
    "spki_short_hex": (["--allow-spki", "ab" * 31 + "a"], r"allow-spki|spki|SHA-?256"),
    "spki_long_hex": (["--allow-spki", "ab" * 33], r"allow-spki|spki|SHA-?256"),
    "spki_not_hex": (["--allow-spki", "zz" * 32], r"allow-spki|spki|SHA-?256"),
    "spki_bad_b64_len": (["--allow-spki", base64.b64encode(b"x" * 31).decode()], r"allow-spki|spki|SHA-?256"),
    "spki_empty": (["--allow-spki", ""], r"allow-spki|spki|SHA-?256"),
    "uri_empty": (["--allow-uri", ""], r"allow-uri|uri"),
}


@pytest.mark.parametrize("case", list(BAD_RULES))
def test_rule_config_errors_cli(sd_bin, pki, tmp_path, case):
    extra, msg = BAD_RULES[case]
    port = free_port()
    args = serve_args(pki, port, "127.0.0.1:%d" % free_port(), allow_all=False,
                      extra=extra + ["--workers", "1"])
    err = expect_startup_failure(sd_bin, args, tmp_path, watch_ports=[port])
    assert re.search(msg, err, re.I), "message does not explain the problem (%s):\n%s" % (msg, err)


def test_rule_config_cli_positive_control(steeldoor, backends, pki):
    """The good forms of the rules above start fine."""
    be = backends()
    sd = serve_rules(steeldoor, be, ("allow-uri", "spiffe://example.org/**"),
                     ("allow-uri", "spiffe://example.org/*/x"), ("allow-dns", "a.example.org"),
                     ("allow-cn", "c"), ("allow-ou", "o"), ("allow-spki", "ab" * 32),
                     ("allow-spki", base64.b64encode(b"x" * 32).decode()))
    admitted(sd, pki, (pki.client_cert, pki.client_key), "uri:spiffe://example.org/**")


YAML_BAD = {
    "no_rule": ("", r"allow"),
    "allow_all_plus_rule": ('    allow-all: true\n    allow-cn: billing\n', r"allow-all"),
    "wildcard_td": ('    allow-uri: "spiffe://*/x"\n', r"spiffe://\*/x|trust domain|authority"),
    "dns_star_in_list": ('    allow-dns:\n      - ok.example.org\n      - "*.example.org"\n',
                         r"\*|wildcard|allow-dns"),
    "spki_bad": ('    allow-spki: "abcd"\n', r"allow-spki|spki|SHA-?256"),
    "not_string": ('    allow-cn:\n      x: y\n', r"allow-cn"),
}


@pytest.mark.parametrize("case", list(YAML_BAD))
def test_rule_config_errors_yaml(sd_bin, pki, tmp_path, make_config, case):
    raw, msg = YAML_BAD[case]
    port = free_port()
    cfg = make_config([{"name": "x", "port": port, "target": "127.0.0.1:%d" % free_port(),
                        "allow-all": False, "raw": raw}])
    p = tmp_path / "bad.yaml"
    p.write_text(cfg)
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, watch_ports=[port])
    assert re.search(msg, err, re.I), "message does not explain the problem (%s):\n%s" % (msg, err)


@pytest.mark.parametrize("allow", ["all", "uri"])
def test_malformed_san_trailing_garbage(steeldoor, backends, pki, certs, allow):
    """A SAN extension whose value has bytes after the GeneralNames SEQUENCE is
    not valid DER (OpenSSL's own parser tolerates it, the client can send it)."""
    leaf = certs.client("trailing", cn="billing", raw_san=der_san(uris=[BILLING]) + b"\x00\x00")
    be = backends()
    if allow == "all":
        sd = steeldoor(target=be.target, allow_all=True)
        ctl_rule = "all"
    else:
        sd = serve_rules(steeldoor, be, ("allow-uri", BILLING))
        ctl_rule = "uri:" + BILLING
    refused(sd, be, pki, leaf, reason="malformed_identity")
    # control: the same SAN without the trailing bytes, written the same raw way
    clean = certs.client("clean-raw", cn="billing", raw_san=der_san(uris=[BILLING]))
    admitted(sd, pki, clean, ctl_rule)
