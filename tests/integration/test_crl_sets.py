"""CRL sets: a certificate that ANY loaded CRL of its issuer lists is revoked.

CAs publish a new CRL regularly, and deployments end up with several CRLs of
one issuer at once: yesterday's and today's (both still within their
validity), a base CRL and its delta CRL (the Active Directory Certificate
Services layout), a stale one left next to the fresh one. OpenSSL on its own
picks ONE CRL per issuer (the newest full CRL) and ignores delta CRLs unless
asked, so a revocation listed only in the other CRL would be silently
dropped: the attacker is a revoked client hoping steeldoor looks at the wrong
CRL. Whatever the number, order and dates of the CRL files, and whether they
come as several --crl files or one PEM bundle, a listed certificate is
refused (certificate_revoked); an unlisted one is admitted; and an expired
CRL next to a fresh one of the same issuer does not refuse everyone
(crl_expired) - the freshest CRL of an issuer decides freshness.
"""
import datetime
import shutil

import pytest

import sdlib
from conftest import (TLS_VERSIONS, expect_admitted, expect_refused, root_issuer, build_crl,
                      crl_pem, cert_pem, _now)

VERS = list(TLS_VERSIONS)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def crlset(pki, certs, tmp_path):
    """The dev CA as CRL issuer, a victim (to be revoked) and a bystander."""
    root = root_issuer(pki)
    victim = certs.client("victim", cn="victim", uris=["spiffe://example.org/victim"])
    bystander = certs.client("bystander", cn="bystander", uris=["spiffe://example.org/bystander"])
    d = tmp_path / "crls"
    d.mkdir()
    return root, victim, bystander, d


def crl_args(d, crls, layout):
    """--crl arguments for crls (in this order): one file each, or one PEM bundle."""
    if layout == "bundle":
        p = d / "bundle.pem"
        p.write_bytes(crl_pem(*crls))
        return ["--crl", p]
    out = []
    for i, c in enumerate(crls):
        p = d / ("crl-%d.pem" % i)
        p.write_bytes(crl_pem(c))
        out += ["--crl", p]
    return out


def ctx(pki, leaf, ver="tls13"):
    v = TLS_VERSIONS[ver]
    return sdlib.client_ctx(pki.ca, leaf.crt, leaf.key, max_version=v, min_version=v)


def judge(steeldoor, backends, pki, args, victim, bystander, victim_reason):
    """Start with args; the victim is refused with victim_reason (None:
    admitted), the bystander admitted; TLS 1.3 and 1.2."""
    be = backends()
    sd = steeldoor(target=be.target, extra=args)
    for ver in VERS:
        if victim_reason is None:
            expect_admitted(sd, ctx(pki, victim, ver), sd.port)
        else:
            e = expect_refused(sd, be, ctx(pki, victim, ver), sd.port, victim_reason)
            assert "victim" in e.get("subject", ""), e
        expect_admitted(sd, ctx(pki, bystander, ver), sd.port)
    return sd


# --------------------------------------------------------------------------
# two full CRLs of one issuer
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["files", "bundle"])
@pytest.mark.parametrize("order", ["older-first", "newer-first"])
@pytest.mark.parametrize("listing", ["older", "newer"])
def test_two_full_crls_any_listing_revokes(steeldoor, backends, pki, crlset, listing, order,
                                           layout):
    """Attack: the revoked client is listed in only one of two valid full CRLs
    of its issuer - the older one (as if the newer one had been issued without
    the entry, or an old CRL was kept on purpose) or the newer one. Either way,
    in either file order, as two files or one bundle: certificate_revoked."""
    root, victim, bystander, d = crlset
    now = _now()
    older = build_crl(root, revoked=[victim] if listing == "older" else [],
                      last_update=now - 2 * DAY, next_update=now + 7 * DAY, number=1)
    newer = build_crl(root, revoked=[victim] if listing == "newer" else [],
                      last_update=now - HOUR, next_update=now + 7 * DAY, number=2)
    crls = [older, newer] if order == "older-first" else [newer, older]
    judge(steeldoor, backends, pki, crl_args(d, crls, layout), victim, bystander,
          "certificate_revoked")


@pytest.mark.parametrize("layout", ["files", "bundle"])
def test_three_crls_middle_one_lists(steeldoor, backends, pki, crlset, layout):
    """Attack: three CRLs of one issuer, only the middle one (by date) lists the
    victim, and it is neither the first file nor the newest CRL."""
    root, victim, bystander, d = crlset
    now = _now()
    crls = [build_crl(root, last_update=now - HOUR, next_update=now + 7 * DAY, number=3),
            build_crl(root, last_update=now - 3 * DAY, next_update=now + 7 * DAY, number=1),
            build_crl(root, revoked=[victim], last_update=now - 2 * DAY,
                      next_update=now + 7 * DAY, number=2)]
    judge(steeldoor, backends, pki, crl_args(d, crls, layout), victim, bystander,
          "certificate_revoked")


def test_two_full_crls_neither_lists_control(steeldoor, backends, pki, crlset):
    """Control for the above: two valid CRLs of one issuer, neither listing
    the victim: both clients admitted."""
    root, victim, bystander, d = crlset
    now = _now()
    crls = [build_crl(root, last_update=now - 2 * DAY, next_update=now + 7 * DAY, number=1),
            build_crl(root, last_update=now - HOUR, next_update=now + 7 * DAY, number=2)]
    judge(steeldoor, backends, pki, crl_args(d, crls, "files"), victim, bystander, None)


# --------------------------------------------------------------------------
# base CRL + delta CRL (AD CS layout)
# --------------------------------------------------------------------------

DELTA_URL = "http://pki.example.org/crl/dev-ca+.crl"


def base_and_delta(root, victim, listing):
    now = _now()
    base = build_crl(root, revoked=[victim] if listing == "base" else [],
                     last_update=now - DAY, next_update=now + 7 * DAY, number=10,
                     freshest=DELTA_URL)
    delta = build_crl(root, revoked=[victim] if listing == "delta" else [],
                      last_update=now - HOUR, next_update=now + DAY, number=11, delta_of=10)
    return base, delta


@pytest.mark.parametrize("layout", ["files", "bundle"])
@pytest.mark.parametrize("order", ["base-first", "delta-first"])
@pytest.mark.parametrize("listing", ["delta", "base", "none"])
def test_base_and_delta_crl(steeldoor, backends, pki, crlset, listing, order, layout):
    """Attack: the issuer revoked the client after its last base CRL, so only
    the delta CRL (deltaCRLIndicator -> base CRL number 10, base carrying a
    FreshestCRL pointer, as AD CS publishes them) lists it. The delta must
    count: certificate_revoked. Also when only the base lists it; and when
    neither does, the client is admitted (control)."""
    root, victim, bystander, d = crlset
    base, delta = base_and_delta(root, victim, listing)
    crls = [base, delta] if order == "base-first" else [delta, base]
    judge(steeldoor, backends, pki, crl_args(d, crls, layout), victim, bystander,
          None if listing == "none" else "certificate_revoked")


# --------------------------------------------------------------------------
# stale CRL next to a fresh one of the same issuer
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["files", "bundle"])
@pytest.mark.parametrize("order", ["stale-first", "fresh-first"])
def test_stale_crl_next_to_fresh_does_not_refuse_everyone(steeldoor, backends, pki, crlset,
                                                          order, layout):
    """An operator leaves last week's (expired) CRL next to today's. The fresh
    CRL of the issuer decides freshness: nobody is refused crl_expired; the
    clients are admitted."""
    root, victim, bystander, d = crlset
    now = _now()
    stale = build_crl(root, last_update=now - 10 * DAY, next_update=now - 3 * HOUR, number=1)
    fresh = build_crl(root, last_update=now - HOUR, next_update=now + 7 * DAY, number=2)
    crls = [stale, fresh] if order == "stale-first" else [fresh, stale]
    judge(steeldoor, backends, pki, crl_args(d, crls, layout), victim, bystander, None)


@pytest.mark.parametrize("order", ["stale-first", "fresh-first"])
def test_stale_crl_listing_still_revokes(steeldoor, backends, pki, crlset, order):
    """Attack: the revocation is only in the older, already expired CRL; the
    fresh CRL of the same issuer does not repeat it. A revocation does not
    end when the CRL that published it expires: certificate_revoked."""
    root, victim, bystander, d = crlset
    now = _now()
    stale = build_crl(root, revoked=[victim], last_update=now - 10 * DAY,
                      next_update=now - 3 * HOUR, number=1)
    fresh = build_crl(root, last_update=now - HOUR, next_update=now + 7 * DAY, number=2)
    crls = [stale, fresh] if order == "stale-first" else [fresh, stale]
    judge(steeldoor, backends, pki, crl_args(d, crls, "files"), victim, bystander,
          "certificate_revoked")


def test_only_stale_crl_still_refuses_control(steeldoor, backends, pki, crlset):
    """Control: with only the expired CRL, its clients are refused crl_expired
    (so the tests above really depend on the fresh CRL)."""
    root, victim, bystander, d = crlset
    now = _now()
    stale = build_crl(root, last_update=now - 10 * DAY, next_update=now - 3 * HOUR, number=1)
    be = backends()
    sd = steeldoor(target=be.target, extra=crl_args(d, [stale], "files"))
    for leaf in (victim, bystander):
        expect_refused(sd, be, ctx(pki, leaf), sd.port, "crl_expired")


def test_freshness_is_per_issuer(steeldoor, backends, pki, certs, crlset, tmp_path):
    """Attack: a fresh CRL of ANOTHER issuer must not make a stale CRL look
    fresh. Two roots: the dev CA's only CRL is stale, root B's is fresh. Dev
    CA clients: crl_expired; root B clients: admitted."""
    root, victim, bystander, d = crlset
    root_b = certs.ca("root-b", issuer="self")
    b_client = certs.client("b-client", cn="b-client", issuer=root_b)
    cadir = tmp_path / "roots"
    cadir.mkdir()
    shutil.copy(pki.ca, cadir / "dev.pem")
    (cadir / "b.pem").write_bytes(cert_pem(root_b))
    now = _now()
    stale = build_crl(root, last_update=now - 10 * DAY, next_update=now - 3 * HOUR, number=1)
    fresh_b = build_crl(root_b, last_update=now - HOUR, next_update=now + 7 * DAY, number=5)
    be = backends()
    sd = steeldoor(target=be.target, cacert=cadir,
                   extra=crl_args(d, [stale, fresh_b], "bundle"))
    expect_refused(sd, be, ctx(pki, bystander), sd.port, "crl_expired")
    expect_admitted(sd, ctx(pki, b_client), sd.port)
