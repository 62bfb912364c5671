"""Leftovers must never block a reload that removes trust.

An operator removes a CA by emptying (or replacing) its file in a --cacert
directory, and leaves its CRL in the CRL list. Before, either leftover made
the whole reload fail, and the removed CA kept admitting clients. Now the
reload takes effect (with warnings naming the leftovers), new clients of the
removed CA are refused, and its live connections are closed; the remaining
CA's clients are not disturbed.
"""
import signal
import time

import pytest

import sdlib
from conftest import expect_admitted, expect_refused


def _pem(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _ctx(pki, client, ver=None):
    v = {"1.2": sdlib.ssl.TLSVersion.TLSv1_2, "1.3": sdlib.ssl.TLSVersion.TLSv1_3}.get(ver)
    return sdlib.client_ctx(pki.ca, client.crt, client.key, max_version=v, min_version=v)


def _reloaded(sd, after):
    """Waits for a successful reload logged after index `after` of the log."""
    e = sd.wait_log(lambda e: e.get("event") in ("reloaded", "reload_failed")
                    and sd.logs().index(e) >= after, timeout=5.0,
                    what="reloaded or reload_failed")
    assert e["event"] == "reloaded", "the reload was refused: %s" % e
    # every worker applies it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(x.get("event") == "worker_reloaded" and x.get("generation") == e["generation"]
               for x in sd.logs()):
            return e
        time.sleep(0.05)
    raise AssertionError("no worker applied generation %s" % e["generation"])


@pytest.fixture
def two_cas(certs, tmp_path):
    a = certs.ca("leftA", issuer="self", cn="leftover test CA A")
    b = certs.ca("leftB", issuer="self", cn="leftover test CA B")
    ca_dir = tmp_path / "cas"
    ca_dir.mkdir()
    (ca_dir / "a.pem").write_bytes(_pem(a.cert))
    (ca_dir / "b.pem").write_bytes(_pem(b.cert))
    ca_a = certs.client("left-a", cn="left-a", uris=["spiffe://example.org/left-a"], issuer=a)
    ca_b = certs.client("left-b", cn="left-b", uris=["spiffe://example.org/left-b"], issuer=b)
    crl_a = certs.crl("left-a.crl", issuer=a)
    crl_b = certs.crl("left-b.crl", issuer=b)
    return a, b, ca_dir, ca_a, ca_b, crl_a, crl_b


def test_non_certificate_file_in_ca_dir_is_skipped(steeldoor, backends, pki, two_cas):
    """A README next to the CA bundles is skipped with a warning, not fatal."""
    a, b, ca_dir, ca_a, ca_b, _, _ = two_cas
    (ca_dir / "README").write_text("these are our client CAs\n")
    be = backends()
    sd = steeldoor(target=be.target, cacert=ca_dir)
    sd.wait_log(lambda e: e.get("level") == "warn" and "README" in e.get("msg", ""),
                what="warning naming README")
    expect_admitted(sd, _ctx(pki, ca_a), sd.port)
    expect_admitted(sd, _ctx(pki, ca_b), sd.port)


@pytest.mark.parametrize("ver", ["1.2", "1.3"])
@pytest.mark.parametrize("workers", [1, 2])
def test_removing_a_ca_with_leftover_crl_takes_effect(steeldoor, backends, pki, two_cas,
                                                      ver, workers):
    """CA A's bundle file is emptied while its CRL stays in the CRL list:
    the reload succeeds, A's new clients are refused (unknown_ca), A's live
    connection is closed, B keeps working, live and new."""
    a, b, ca_dir, ca_a, ca_b, crl_a, crl_b = two_cas
    be = backends()
    sd = steeldoor(target=be.target, cacert=ca_dir, workers=workers,
                   extra=["--crl", crl_a, "--crl", crl_b])
    live_a = sdlib.tls_connect(_ctx(pki, ca_a, ver), sd.port)
    live_b = sdlib.tls_connect(_ctx(pki, ca_b, ver), sd.port)
    try:
        assert sdlib.echo_roundtrip(live_a, b"a-before\n") == b"a-before\n"
        assert sdlib.echo_roundtrip(live_b, b"b-before\n") == b"b-before\n"
        mark = len(sd.logs())
        (ca_dir / "a.pem").write_bytes(b"")
        sd.signal(signal.SIGHUP)
        _reloaded(sd, mark)
        assert any(e.get("event") == "crl_ignored" and "left-a.crl" in e.get("msg", "")
                   for e in sd.logs()), "no crl_ignored warning naming the leftover CRL"
        expect_refused(sd, be, _ctx(pki, ca_a, ver), sd.port, "unknown_ca")
        expect_admitted(sd, _ctx(pki, ca_b, ver), sd.port)
        # A's live connection is closed by the reload; B's still echoes
        live_a.settimeout(5)
        got = b""
        try:
            live_a.sendall(b"a-after\n")
            got = live_a.recv(100)
        except OSError:
            got = b""
        assert got == b"", "the removed CA's live connection still carries data: %r" % got
        assert sdlib.echo_roundtrip(live_b, b"b-after\n") == b"b-after\n"
        closed = sd.wait_log(lambda e: e.get("event") == "conn" and e.get("result") == "error"
                             and e.get("reason") == "unknown_ca"
                             and "left-a" in e.get("subject", ""),
                             what="conn line closing the removed CA's live connection")
        assert "reload" in closed.get("detail", ""), closed
    finally:
        live_a.close()
        live_b.close()
