"""Trust anchors and chains: --cacert as a directory of roots, intermediates
sent by the client, and --verify-depth."""
import re
import shutil

import pytest

import sdlib
from sdlib import free_port
from conftest import expect_admitted, expect_refused, serve_args, _write_cert
from test_config_errors import expect_startup_failure

from cryptography.hazmat.primitives import serialization


def ctx_of(pki, leaf):
    return sdlib.client_ctx(pki.ca, leaf.pair[0], leaf.pair[1])


def _pem(*objs):
    return b"".join(o.cert.public_bytes(serialization.Encoding.PEM) for o in objs)


@pytest.fixture
def two_roots(certs, tmp_path, pki):
    """dir with the dev CA and a second root; a third root outside it."""
    root_b = certs.ca("root-b", issuer="self")
    root_c = certs.ca("root-c", issuer="self")
    d = tmp_path / "cadir"
    d.mkdir()
    shutil.copy(pki.ca, d / "dev-ca.pem")
    (d / "second.crt").write_bytes(_pem(root_b))
    # hidden files are not read: the third CA hides here
    (d / ".hidden.pem").write_bytes(_pem(root_c))
    return d, root_b, root_c


def test_cacert_directory_two_roots(steeldoor, backends, pki, certs, two_roots):
    d, root_b, root_c = two_roots
    a_client = certs.client("a-client", cn="a-client")
    b_client = certs.client("b-client", cn="b-client", issuer=root_b)
    c_client = certs.client("c-client", cn="c-client", issuer=root_c)
    be = backends()
    sd = steeldoor(target=be.target, cacert=d)
    e = expect_admitted(sd, ctx_of(pki, a_client), sd.port)
    assert e.get("rule") == "all", e
    e = expect_admitted(sd, ctx_of(pki, b_client), sd.port)
    assert "b-client" in e.get("subject", ""), e
    expect_refused(sd, be, ctx_of(pki, c_client), sd.port, "unknown_ca")
    expect_refused(sd, be, sdlib.client_ctx(pki.ca, *pki.othca_client), sd.port, "unknown_ca")
    assert be.count == 2


def test_cacert_directory_control_single_file(steeldoor, backends, pki, certs, two_roots):
    """Control: with --cacert the dev CA file only, the second root's client is refused
    (so the directory test really exercises the second root)."""
    d, root_b, _ = two_roots
    b_client = certs.client("b-client", cn="b-client", issuer=root_b)
    be = backends()
    sd = steeldoor(target=be.target)
    expect_refused(sd, be, ctx_of(pki, b_client), sd.port, "unknown_ca")
    expect_admitted(sd, ctx_of(pki, certs.client("a", cn="a")), sd.port)


def test_cacert_directory_with_bundle_file(steeldoor, backends, pki, certs, tmp_path):
    """A file in the directory may hold several CA certificates."""
    root_b = certs.ca("root-b", issuer="self")
    root_c = certs.ca("root-c", issuer="self")
    d = tmp_path / "cadir2"
    d.mkdir()
    (d / "bundle.pem").write_bytes(pki.ca.read_bytes() + _pem(root_b, root_c))
    be = backends()
    sd = steeldoor(target=be.target, cacert=d)
    for i, r in enumerate((certs.root, root_b, root_c)):
        expect_admitted(sd, ctx_of(pki, certs.client("x%d" % i, cn="x%d" % i, issuer=r)), sd.port)
    expect_refused(sd, be, sdlib.client_ctx(pki.ca, *pki.othca_client), sd.port, "unknown_ca")


def test_cacert_directory_non_ca_is_error(sd_bin, pki, tmp_path):
    d = tmp_path / "cadir-bad"
    d.mkdir()
    shutil.copy(pki.ca, d / "ca.pem")
    shutil.copy(pki.client_cert, d / "leaf.pem")
    port = free_port()
    err = expect_startup_failure(sd_bin, serve_args(pki, port, "127.0.0.1:%d" % free_port(),
                                                    cacert=d, extra=["--workers", "1"]),
                                 tmp_path, watch_ports=[port])
    assert "leaf.pem" in err, "message should name the offending file:\n" + err


def test_cacert_empty_directory_is_error(sd_bin, pki, tmp_path):
    d = tmp_path / "cadir-empty"
    d.mkdir()
    port = free_port()
    err = expect_startup_failure(sd_bin, serve_args(pki, port, "127.0.0.1:%d" % free_port(),
                                                    cacert=d, extra=["--workers", "1"]),
                                 tmp_path, watch_ports=[port])
    assert str(d) in err or "cadir-empty" in err, err


# --------------------------------------------------------------- intermediates

@pytest.fixture
def chain2(certs):
    """dev CA -> int1 -> int2 -> leaf, plus dev CA -> int1 -> leaf1."""
    i1 = certs.ca("int1")
    i2 = certs.ca("int2", issuer=i1)
    leaf2 = certs.client("leaf2", cn="deep", uris=["spiffe://example.org/deep"],
                         issuer=i2, chain=(i2, i1))
    leaf1 = certs.client("leaf1", cn="one", uris=["spiffe://example.org/one"],
                         issuer=i1, chain=(i1,))
    leaf1_bare = certs.client("leaf1-bare", cn="one-bare", issuer=i1)
    return i1, i2, leaf1, leaf2, leaf1_bare


def test_intermediate_sent_by_client(steeldoor, backends, pki, chain2):
    i1, i2, leaf1, leaf2, bare = chain2
    be = backends()
    sd = steeldoor(target=be.target)
    e = expect_admitted(sd, ctx_of(pki, leaf1), sd.port)
    assert "one" in e.get("subject", ""), e
    # control: the same kind of leaf without its intermediate cannot chain
    expect_refused(sd, be, ctx_of(pki, bare), sd.port, "unknown_ca")
    assert be.count == 1


def test_intermediate_with_allow_rule(steeldoor, backends, pki, chain2):
    i1, i2, leaf1, leaf2, bare = chain2
    be = backends()
    sd = steeldoor(target=be.target, allow_all=False,
                   extra=["--allow-uri", "spiffe://example.org/one"])
    e = expect_admitted(sd, ctx_of(pki, leaf1), sd.port)
    assert e.get("rule") == "uri:spiffe://example.org/one", e
    # the intermediate's name is not the client's identity
    expect_refused(sd, be, ctx_of(pki, leaf2), sd.port, "not_authorized")


def test_chain_longer_than_verify_depth(steeldoor, backends, pki, chain2):
    i1, i2, leaf1, leaf2, bare = chain2
    be = backends()
    sd = steeldoor(target=be.target, extra=["--verify-depth", "1"])
    expect_refused(sd, be, ctx_of(pki, leaf2), sd.port, "chain_too_long")
    # boundary / positive control: one intermediate is allowed with depth 1
    expect_admitted(sd, ctx_of(pki, leaf1), sd.port)


def test_chain_within_verify_depth(steeldoor, backends, pki, chain2):
    i1, i2, leaf1, leaf2, bare = chain2
    be = backends()
    sd = steeldoor(target=be.target, extra=["--verify-depth", "2"])
    e = expect_admitted(sd, ctx_of(pki, leaf2), sd.port)
    assert "deep" in e.get("subject", ""), e
    expect_admitted(sd, ctx_of(pki, leaf1), sd.port)


def test_default_verify_depth_is_3(steeldoor, backends, pki, certs):
    i1 = certs.ca("d1")
    i2 = certs.ca("d2", issuer=i1)
    i3 = certs.ca("d3", issuer=i2)
    i4 = certs.ca("d4", issuer=i3)
    three = certs.client("three", cn="three", issuer=i3, chain=(i3, i2, i1))
    four = certs.client("four", cn="four", issuer=i4, chain=(i4, i3, i2, i1))
    be = backends()
    sd = steeldoor(target=be.target)
    expect_admitted(sd, ctx_of(pki, three), sd.port)
    expect_refused(sd, be, ctx_of(pki, four), sd.port, "chain_too_long")


def test_verify_depth_in_yaml(steeldoor, backends, pki, chain2, make_config):
    i1, i2, leaf1, leaf2, bare = chain2
    be = backends()
    pa, pb = free_port(), free_port()
    cfg = make_config([
        {"name": "shallow", "port": pa, "target": be.target, "verify-depth": 1},
        {"name": "deep", "port": pb, "target": be.target, "verify-depth": 2},
    ])
    sd = steeldoor(config=cfg, wait_ports=[pa, pb])
    expect_refused(sd, be, ctx_of(pki, leaf2), pa, "chain_too_long")
    expect_admitted(sd, ctx_of(pki, leaf2), pb)


@pytest.mark.parametrize("val", ["-1", "abc", "1x", ""])
def test_verify_depth_bad_value(sd_bin, pki, tmp_path, val):
    port = free_port()
    err = expect_startup_failure(sd_bin, serve_args(pki, port, "127.0.0.1:%d" % free_port(),
                                                    extra=["--verify-depth", val, "--workers", "1"]),
                                 tmp_path, watch_ports=[port])
    assert re.search(r"verify-depth", err), err


# ------------------------------------------- full chains and live re-judgement

def test_full_chain_client_rejudged_after_reload(steeldoor, backends, pki, certs, tmp_path):
    """A client that sends its whole chain, root included (what OpenSSL
    clients do with a chain file): steeldoor keeps one shared copy of the
    certificates it trusts anyway, yet a reload whose CRL revokes the
    client's intermediate still closes the live connection, and a client of
    another intermediate stays up."""
    from test_reload import wait_reloaded, wait_closed, CLOSED_DETAIL
    import time
    i1 = certs.ca("int1")
    i2 = certs.ca("int2")
    full = certs.client("full", cn="full", issuer=i1, chain=(i1, certs.root))
    other = certs.client("other", cn="other", issuer=i2, chain=(i2, certs.root))
    # the intermediates are trusted too, so that their CRLs are accepted
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + _pem(i1, i2))
    crl = tmp_path / "crls.pem"

    def write_crls(revoked):
        parts = [certs.crl("root.crl", revoked=revoked), certs.crl("i1.crl", issuer=i1),
                 certs.crl("i2.crl", issuer=i2)]
        tmp = tmp_path / "crls.tmp"
        tmp.write_bytes(b"".join(p.read_bytes() for p in parts))
        tmp.replace(crl)

    write_crls([])
    be = backends()
    sd = steeldoor(target=be.target, workers=2, cacert=bundle, extra=["--crl", crl])
    cf, co = ctx_of(pki, full), ctx_of(pki, other)
    s_full = [sdlib.tls_connect(cf, sd.port, timeout=5) for _ in range(3)]
    s_other = sdlib.tls_connect(co, sd.port, timeout=5)
    try:
        for i, s in enumerate(s_full + [s_other]):
            assert sdlib.echo_roundtrip(s, b"up-%d\n" % i) == b"up-%d\n" % i
        peers = [sdlib.peer_of(s) for s in s_full]
        write_crls([i1.cert])
        t0 = time.monotonic()
        wait_reloaded(sd, 2, workers=2, trigger="files changed", timeout=3)
        assert all(wait_closed(s, t0 + 3.0) for s in s_full), \
            "connections through the now revoked intermediate were not closed"
        for p in peers:
            e = sd.wait_conn(p, timeout=2)
            assert e.get("reason") == "certificate_revoked" and \
                e.get("detail") == CLOSED_DETAIL, e
        assert sdlib.echo_roundtrip(s_other, b"still\n", timeout=3) == b"still\n"
        expect_refused(sd, None, cf, sd.port, "certificate_revoked")
        expect_admitted(sd, co, sd.port)
    finally:
        for s in s_full + [s_other]:
            s.close()
