"""CRLs: revoked leaves and intermediates, stale CRLs and --crl-grace, DER
CRLs, missing CRL levels, and CRL files that must stop the start."""
import datetime
import re
import shutil
from pathlib import Path

import pytest

import sdlib
from sdlib import free_port, run
from conftest import expect_admitted, expect_refused, serve_args, _now
from test_config_errors import expect_startup_failure

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def ctx_of(ca, pair):
    return sdlib.client_ctx(ca, pair[0], pair[1])


def sd_pki(sd_bin, *args):
    r = run([sd_bin, "pki"] + [str(a) for a in args], timeout=30)
    assert r.returncode == 0, "steeldoor pki %s failed: %s %s" % (
        " ".join(map(str, args)), r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    return r


@pytest.fixture
def devpki(sd_bin, tmp_path):
    """A fresh dev PKI (never the session one: we revoke in it)."""
    d = tmp_path / "devpki"
    sd_pki(sd_bin, "init", "--dir", d)
    sd_pki(sd_bin, "issue", "--dir", d, "--name", "api", "--server", "--dns", "localhost",
           "--ip", "127.0.0.1")
    for n in ("alice", "bob"):
        sd_pki(sd_bin, "issue", "--dir", d, "--name", n, "--client", "--uri",
               "spiffe://example.org/" + n)
    return d


def _dev_args(d, extra):
    return dict(cert=d / "api.crt", key=d / "api.key", cacert=d / "ca.crt", extra=extra)


def test_dev_pki_revoke_end_to_end(steeldoor, backends, sd_bin, devpki):
    d = devpki
    ca = d / "ca.crt"
    # control: a CRL that revokes nobody admits both
    sd_pki(sd_bin, "crl", "--dir", d)
    assert (d / "crl.pem").is_file()
    be = backends()
    sd = steeldoor(target=be.target, **_dev_args(d, ["--crl", d / "crl.pem"]))
    expect_admitted(sd, ctx_of(ca, (d / "bob.crt", d / "bob.key")), sd.port)
    expect_admitted(sd, ctx_of(ca, (d / "alice.crt", d / "alice.key")), sd.port)
    sd.stop()

    sd_pki(sd_bin, "revoke", "--dir", d, "--name", "bob")
    sd_pki(sd_bin, "crl", "--dir", d, "--days", "3")
    be2 = backends()
    sd2 = steeldoor(target=be2.target, **_dev_args(d, ["--crl", d / "crl.pem"]))
    e = expect_refused(sd2, be2, ctx_of(ca, (d / "bob.crt", d / "bob.key")), sd2.port,
                       "certificate_revoked")
    assert "bob" in e.get("subject", "") + str(e.get("sans", "")), e
    e = expect_admitted(sd2, ctx_of(ca, (d / "alice.crt", d / "alice.key")), sd2.port)
    assert e.get("rule") == "all", e
    assert be2.count == 1


def test_dev_pki_der_crl(steeldoor, backends, sd_bin, devpki, tmp_path):
    d = devpki
    ca = d / "ca.crt"
    sd_pki(sd_bin, "revoke", "--dir", d, "--name", "alice")
    sd_pki(sd_bin, "crl", "--dir", d)
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    der = tmp_path / "crl.der"
    der.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    be = backends()
    sd = steeldoor(target=be.target, **_dev_args(d, ["--crl", der]))
    expect_refused(sd, be, ctx_of(ca, (d / "alice.crt", d / "alice.key")), sd.port,
                   "certificate_revoked")
    expect_admitted(sd, ctx_of(ca, (d / "bob.crt", d / "bob.key")), sd.port)


def test_revoked_client_with_allow_rule(steeldoor, backends, sd_bin, devpki):
    """Revocation wins over an allow rule that matches."""
    d = devpki
    sd_pki(sd_bin, "revoke", "--dir", d, "--name", "bob")
    sd_pki(sd_bin, "crl", "--dir", d)
    be = backends()
    sd = steeldoor(target=be.target, allow_all=False,
                   **_dev_args(d, ["--crl", d / "crl.pem", "--allow-uri", "spiffe://example.org/*"]))
    expect_refused(sd, be, ctx_of(d / "ca.crt", (d / "bob.crt", d / "bob.key")), sd.port,
                   "certificate_revoked")
    e = expect_admitted(sd, ctx_of(d / "ca.crt", (d / "alice.crt", d / "alice.key")), sd.port)
    assert e.get("rule") == "uri:spiffe://example.org/*", e


# ------------------------------------------------------------ intermediates

@pytest.fixture
def inter(certs, tmp_path, pki):
    """dev CA -> int -> leaves; CA bundle = dev CA + int (so the int's CRL has
    its issuer in the bundle)."""
    i = certs.ca("int")
    good = certs.client("good", cn="good", issuer=i, chain=(i,))
    bad = certs.client("bad", cn="bad", issuer=i, chain=(i,))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + i.cert.public_bytes(serialization.Encoding.PEM))
    return i, good, bad, bundle


def test_revoked_intermediate(steeldoor, backends, pki, certs, inter):
    i, good, bad, bundle = inter
    # control: nothing revoked -> admitted
    root_ok = certs.crl("root-ok.crl")
    int_ok = certs.crl("int-ok.crl", issuer=i)
    be = backends()
    sd = steeldoor(target=be.target, cacert=bundle, extra=["--crl", root_ok, "--crl", int_ok])
    expect_admitted(sd, ctx_of(pki.ca, good.pair), sd.port)
    sd.stop()
    # the root revokes the intermediate -> every leaf under it is refused
    root_rev = certs.crl("root-rev.crl", revoked=[i.cert])
    be2 = backends()
    sd2 = steeldoor(target=be2.target, cacert=bundle, extra=["--crl", root_rev, "--crl", int_ok])
    expect_refused(sd2, be2, ctx_of(pki.ca, good.pair), sd2.port, "certificate_revoked")
    # a client directly under the root is still fine
    expect_admitted(sd2, ctx_of(pki.ca, certs.client("direct", cn="direct").pair), sd2.port)


def test_revoked_leaf_under_intermediate(steeldoor, backends, pki, certs, inter):
    i, good, bad, bundle = inter
    root_ok = certs.crl("root-ok.crl")
    int_rev = certs.crl("int-rev.crl", issuer=i, revoked=[bad.cert])
    be = backends()
    sd = steeldoor(target=be.target, cacert=bundle, extra=["--crl", root_ok, "--crl", int_rev])
    expect_refused(sd, be, ctx_of(pki.ca, bad.pair), sd.port, "certificate_revoked")
    expect_admitted(sd, ctx_of(pki.ca, good.pair), sd.port)


def test_crl_missing_for_intermediate_level(steeldoor, backends, pki, certs, inter):
    """Only the root's CRL given: leaves under the intermediate have no CRL."""
    i, good, bad, bundle = inter
    root_ok = certs.crl("root-ok.crl")
    be = backends()
    sd = steeldoor(target=be.target, cacert=bundle, extra=["--crl", root_ok])
    expect_refused(sd, be, ctx_of(pki.ca, good.pair), sd.port, "crl_missing")
    expect_admitted(sd, ctx_of(pki.ca, certs.client("direct", cn="direct").pair), sd.port)


def test_crl_missing_for_second_root(steeldoor, backends, pki, certs, tmp_path):
    root_b = certs.ca("root-b", issuer="self")
    d = tmp_path / "roots"
    d.mkdir()
    shutil.copy(pki.ca, d / "a.pem")
    (d / "b.pem").write_bytes(root_b.cert.public_bytes(serialization.Encoding.PEM))
    crl_a = certs.crl("a.crl")
    be = backends()
    sd = steeldoor(target=be.target, cacert=d, extra=["--crl", crl_a])
    expect_refused(sd, be, ctx_of(pki.ca, certs.client("b", cn="b", issuer=root_b).pair),
                   sd.port, "crl_missing")
    expect_admitted(sd, ctx_of(pki.ca, certs.client("a", cn="a").pair), sd.port)
    sd.stop()
    # control: with root B's CRL too, B's client is admitted
    crl_b = certs.crl("b.crl", issuer=root_b)
    be2 = backends()
    sd2 = steeldoor(target=be2.target, cacert=d, extra=["--crl", crl_a, "--crl", crl_b])
    expect_admitted(sd2, ctx_of(pki.ca, certs.client("b2", cn="b2", issuer=root_b).pair), sd2.port)


# ------------------------------------------------------------------ stale CRLs

def _stale(certs, name="stale.crl", hours_past=3):
    return certs.crl(name, last_update=_now() - datetime.timedelta(days=10),
                     next_update=_now() - datetime.timedelta(hours=hours_past))


def test_stale_crl_refuses_everyone(steeldoor, backends, pki, certs):
    stale = _stale(certs)
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", stale])
    expect_refused(sd, be, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), sd.port,
                   "crl_expired")
    expect_refused(sd, be, ctx_of(pki.ca, pki.pygood), sd.port, "crl_expired")
    warn = [l for l in sd.raw_lines() if str(stale) in l or "stale.crl" in l]
    assert warn, "no start-up line mentions the stale CRL file:\n%s" % "\n".join(sd.raw_lines()[:20])
    assert any(re.search(r"warn", l, re.I) for l in warn), "the CRL line is not a warning: %s" % warn
    assert be.count == 0


def test_fresh_crl_control(steeldoor, backends, pki, certs):
    """Positive control for the stale test: same CA, fresh CRL -> admitted, no warning."""
    fresh = certs.crl("fresh.crl")
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", fresh])
    expect_admitted(sd, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), sd.port)
    assert not [l for l in sd.raw_lines() if "fresh.crl" in l and re.search("warn", l, re.I)]


def test_crl_grace_admits_stale(steeldoor, backends, pki, certs):
    revoked_leaf = certs.client("rv", cn="rv")
    stale_rev = certs.crl("stale-rev.crl", revoked=[revoked_leaf.cert],
                          last_update=_now() - datetime.timedelta(days=10),
                          next_update=_now() - datetime.timedelta(hours=3))
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", stale_rev, "--crl-grace", "6h"])
    expect_admitted(sd, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), sd.port)
    # the grace period does not un-revoke anybody
    expect_refused(sd, be, ctx_of(pki.ca, revoked_leaf.pair), sd.port, "certificate_revoked")


def test_crl_grace_too_short(steeldoor, backends, pki, certs):
    stale = _stale(certs)   # three hours past nextUpdate
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", stale, "--crl-grace", "1h"])
    expect_refused(sd, be, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), sd.port,
                   "crl_expired")


def test_crl_in_yaml_string_and_list(steeldoor, backends, pki, certs, inter, make_config):
    i, good, bad, bundle = inter
    root_ok = certs.crl("root-ok.crl")
    int_rev = certs.crl("int-rev.crl", issuer=i, revoked=[bad.cert])
    be = backends()
    pa, pb = free_port(), free_port()
    cfg = make_config([
        {"name": "list", "port": pa, "target": be.target, "cacert": bundle,
         "raw": '    crl:\n      - "%s"\n      - "%s"\n' % (root_ok, int_rev)},
        {"name": "str", "port": pb, "target": be.target,
         "raw": '    crl: "%s"\n    crl-grace: 6h\n' % _stale(certs)},
    ])
    sd = steeldoor(config=cfg, wait_ports=[pa, pb])
    expect_refused(sd, be, ctx_of(pki.ca, bad.pair), pa, "certificate_revoked")
    expect_admitted(sd, ctx_of(pki.ca, good.pair), pa)
    expect_admitted(sd, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), pb)


# ------------------------------------------------------------ bad CRL files

def _bad_crl_start(sd_bin, pki, tmp_path, crl, extra=()):
    port = free_port()
    args = serve_args(pki, port, "127.0.0.1:%d" % free_port(),
                      extra=["--crl", crl, "--workers", "1"] + list(extra))
    return expect_startup_failure(sd_bin, args, tmp_path, watch_ports=[port])


def test_bad_crl_garbage(sd_bin, pki, tmp_path):
    p = tmp_path / "garbage.crl"
    p.write_bytes(b"-----BEGIN X509 CRL-----\nbm90IGEgY3Js\n-----END X509 CRL-----\n")
    err = _bad_crl_start(sd_bin, pki, tmp_path, p)
    assert "garbage.crl" in err, err


def test_bad_crl_random_bytes(sd_bin, pki, tmp_path):
    p = tmp_path / "random.der"
    p.write_bytes(bytes(range(256)) * 4)
    err = _bad_crl_start(sd_bin, pki, tmp_path, p)
    assert "random.der" in err, err


def test_bad_crl_empty_file(sd_bin, pki, tmp_path):
    p = tmp_path / "empty.crl"
    p.write_bytes(b"")
    err = _bad_crl_start(sd_bin, pki, tmp_path, p)
    assert "empty.crl" in err, err


def test_bad_crl_missing_file(sd_bin, pki, tmp_path):
    err = _bad_crl_start(sd_bin, pki, tmp_path, tmp_path / "nope" / "missing.crl")
    assert "missing.crl" in err, err


def _crl_ignored(sd, fname):
    e = sd.wait_log(lambda e: e.get("event") == "crl_ignored" and fname in e.get("msg", ""),
                    what="crl_ignored warning naming %s" % fname)
    assert e["level"] == "warn", e


def test_crl_of_other_ca_is_ignored_not_admitting(steeldoor, backends, pki, certs, client_ctx):
    """A CRL from a CA that is not in --cacert (e.g. the leftover of a CA just
    removed) cannot concern any admitted client: it is ignored with a
    warning naming the file, not fatal. The dev CA then has no CRL at all,
    so its clients fail closed (crl_missing): ignoring never admits."""
    other = certs.ca("foreign", issuer="self")
    p = certs.crl("foreign.crl", issuer=other)
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", p])
    _crl_ignored(sd, "foreign.crl")
    expect_refused(sd, be, client_ctx("good"), sd.port, "crl_missing")


def test_bad_crl_signature(sd_bin, pki, certs, tmp_path):
    """Issuer name of the dev CA, signed with another key."""
    other = certs.ca("forger", issuer="self")
    p = certs.crl("forged.crl", sign_key=other.key)
    err = _bad_crl_start(sd_bin, pki, tmp_path, p)
    assert "forged.crl" in err, err


def test_crl_of_other_ca_second_of_two(steeldoor, backends, pki, certs, client_ctx):
    """The dev CA's CRL and a leftover CRL of another CA: the leftover is
    ignored with a warning, the dev CA's clients are admitted as before."""
    good = certs.crl("good.crl")
    other = certs.ca("foreign2", issuer="self")
    bad = certs.crl("foreign2.crl", issuer=other)
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", good, "--crl", bad])
    _crl_ignored(sd, "foreign2.crl")
    expect_admitted(sd, client_ctx("good"), sd.port)


def test_crl_bundle_file(steeldoor, backends, pki, certs, inter, tmp_path):
    """Several PEM CRLs in one file: every one of them is used (here the
    second one, the intermediate's, revokes a client)."""
    i, good, bad, bundle = inter
    crls = tmp_path / "all.crl"
    crls.write_bytes(certs.crl("root-ok.crl").read_bytes() +
                     certs.crl("int-rev.crl", issuer=i, revoked=[bad.cert]).read_bytes())
    be = backends()
    sd = steeldoor(target=be.target, cacert=bundle, extra=["--crl", crls])
    expect_admitted(sd, ctx_of(pki.ca, good.pair), sd.port)
    expect_refused(sd, be, ctx_of(pki.ca, bad.pair), sd.port, "certificate_revoked")
    e = sd.wait_log(lambda e: e.get("event") == "listening")
    assert e.get("crls") == 1, e  # one file


def test_crl_of_other_ca_second_in_file(steeldoor, backends, pki, certs, client_ctx, tmp_path):
    """A bundle whose second CRL is from a CA outside --cacert: that CRL is
    ignored with a warning naming the file; the first still applies."""
    other = certs.ca("foreign3", issuer="self")
    p = tmp_path / "mixed.crl"
    p.write_bytes(certs.crl("ok.crl").read_bytes() +
                  certs.crl("foreign3.crl", issuer=other).read_bytes())
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", p])
    _crl_ignored(sd, "mixed.crl")
    expect_admitted(sd, client_ctx("good"), sd.port)


def test_crl_forged_in_the_name_of_a_bundle_ca_is_fatal(sd_bin, pki, certs, tmp_path):
    """A CRL that names a CA of the bundle as issuer but does not verify
    with its key is forged or corrupt: never ignored, the start fails."""
    other = certs.ca("forger2", issuer="self")
    p = tmp_path / "mixed-forged.crl"
    p.write_bytes(certs.crl("ok3.crl").read_bytes() +
                  certs.crl("forged2.crl", sign_key=other.key).read_bytes())
    err = _bad_crl_start(sd_bin, pki, tmp_path, p)
    assert "mixed-forged.crl" in err and "does not verify" in err, err


def test_bad_crl_corrupt_second_in_file(sd_bin, pki, certs, tmp_path):
    p = tmp_path / "torn.crl"
    p.write_bytes(certs.crl("ok2.crl").read_bytes() +
                  b"-----BEGIN X509 CRL-----\nbm90IGEgY3Js\n-----END X509 CRL-----\n")
    err = _bad_crl_start(sd_bin, pki, tmp_path, p)
    assert "torn.crl" in err and "number 2" in err, err


@pytest.mark.parametrize("val", ["abc", "-1s", "1y"])
def test_bad_crl_grace(sd_bin, pki, certs, tmp_path, val):
    err = _bad_crl_start(sd_bin, pki, tmp_path, certs.crl("g.crl"), extra=["--crl-grace", val])
    assert "crl-grace" in err, err


def test_good_crl_starts_control(steeldoor, backends, pki, certs):
    """The bad-CRL tests' positive control: a valid PEM and DER CRL start fine."""
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", certs.crl("ok2.der", der=True)])
    expect_admitted(sd, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), sd.port)


def test_crl_grace_longer_than_a_day(steeldoor, backends, pki, certs):
    """CRLs are often published daily or weekly: a grace of two days (written in
    plain seconds, a valid DUR) must be accepted and cover a CRL 30h stale."""
    stale = _stale(certs, "stale30h.crl", hours_past=30)
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", stale, "--crl-grace", "172800"])
    expect_admitted(sd, ctx_of(pki.ca, (pki.client_cert, pki.client_key)), sd.port)


@pytest.mark.parametrize("val", ["0", "0s", "0ms"])
def test_crl_grace_zero_is_accepted(steeldoor, backends, client_ctx, certs, val):
    """0 is the documented default of --crl-grace, so writing it is allowed
    (it used to be refused as out of range)."""
    be = backends()
    sd = steeldoor(target=be.target, extra=["--crl", certs.crl("g0.crl"), "--crl-grace", val,
                                            "--expiry-warning", "0"])
    expect_admitted(sd, client_ctx("good"), sd.port)
