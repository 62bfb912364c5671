"""The verified-chain cache and the shared client certificate, attacked.

A chain verified within the last minute is accepted again without chain
verification, and its parsed certificate is shared by the connections that
present it again. Both rest on the presented chain being byte for byte the
cached one. These tests first let a genuine client fill the cache, then try
what an attacker would: a look-alike certificate from a rogue CA with the
same name as the trusted one, and the genuine certificate with its signature
altered. Both must be verified from scratch and refused. They also check that
clients taking turns, with connections open at once, keep their own identity
in the log and against the rules.
"""
import base64

import sdlib
from conftest import expect_admitted, expect_refused

from cryptography.hazmat.primitives import serialization

SPIFFE = "spiffe://example.org/"


def ctx_of(pki, leaf):
    return sdlib.client_ctx(pki.ca, leaf.pair[0], leaf.pair[1])


def _pem(der):
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def test_cached_chain_does_not_admit_a_look_alike(steeldoor, backends, pki, certs):
    """Same subject, same URI SAN, issued by a self-made CA that carries the
    trusted CA's name: refused, even right after the genuine client filled
    the cache."""
    rogue = certs.ca("rogue", cn=pki.ca_cert_obj.subject.rfc4514_string().split("=", 1)[1],
                     issuer="self")
    genuine = certs.client("genuine", cn="api", uris=[SPIFFE + "api"])
    fake = certs.client("fake", cn="api", uris=[SPIFFE + "api"], issuer=rogue)
    be = backends()
    sd = steeldoor(target=be.target, allow_all=False, extra=["--allow-uri", SPIFFE + "api"])
    for _ in range(2):  # the second is a cache hit
        e = expect_admitted(sd, ctx_of(pki, genuine), sd.port)
        assert e.get("rule") == "uri:" + SPIFFE + "api", e
    expect_refused(sd, be, ctx_of(pki, fake), sd.port, "unknown_ca")
    # the genuine client is still admitted (control)
    expect_admitted(sd, ctx_of(pki, genuine), sd.port)


def test_cached_chain_does_not_admit_an_altered_signature(steeldoor, backends, pki, certs):
    """The genuine certificate and key, one bit of the CA's signature
    flipped: not the cached chain, so fully verified, and refused."""
    genuine = certs.client("genuine2", cn="api2", uris=[SPIFFE + "api2"])
    der = bytearray(genuine.der)
    der[-1] ^= 0x01  # last byte of the signature value
    bad_crt = certs.dir / "altered.crt"
    bad_crt.write_bytes(_pem(bytes(der)))
    be = backends()
    sd = steeldoor(target=be.target, allow_all=False, extra=["--allow-uri", SPIFFE + "api2"])
    for _ in range(2):
        expect_admitted(sd, ctx_of(pki, genuine), sd.port)
    bad = sdlib.client_ctx(pki.ca, bad_crt, genuine.pair[1])
    expect_refused(sd, be, bad, sd.port, None)
    expect_admitted(sd, ctx_of(pki, genuine), sd.port)


def test_clients_keep_their_own_identity(steeldoor, backends, pki, certs):
    """Two clients with the same CN and different URI SANs take turns, with
    connections of both open at once: every connection is logged with its own
    SAN and rule, and a third client the rules do not admit is refused between
    them."""
    a = certs.client("ca-a", cn="same", uris=[SPIFFE + "a"])
    b = certs.client("ca-b", cn="same", uris=[SPIFFE + "b"])
    c = certs.client("ca-c", cn="same", uris=[SPIFFE + "c"])
    be = backends()
    sd = steeldoor(target=be.target, workers=1, allow_all=False,
                   extra=["--allow-uri", SPIFFE + "a", "--allow-uri", SPIFFE + "b"])
    held = []
    try:
        for i in range(3):
            for name, leaf in (("a", a), ("b", b)):
                s = sdlib.tls_connect(ctx_of(pki, leaf), sd.port, timeout=5)
                held.append((name, s))
                assert sdlib.echo_roundtrip(s, b"%s-%d\n" % (name.encode(), i)) == \
                    b"%s-%d\n" % (name.encode(), i)
            expect_refused(sd, be, ctx_of(pki, c), sd.port, "not_authorized")
        peers = [(name, sdlib.peer_of(s)) for name, s in held]
    finally:
        for _, s in held:
            s.close()
    for name, peer in peers:
        e = sd.wait_conn(peer)
        assert e.get("result") == "ok", e
        assert e.get("sans") == ["URI:" + SPIFFE + name], e
        assert e.get("rule") == "uri:" + SPIFFE + name, e
