"""Resumption never outlives admission.

A resumed TLS session skips certificate verification, so an attacker who kept
a session (or a chain of sessions, each resumption handing out a fresh TLS
1.3 ticket) could keep getting in after the certificate that admitted it has
expired, after the CRL that vouched for it went stale, after the listener's
session lifetime, or after a reload that changed what admission means. Each
test below keeps a session and tries exactly that; steeldoor must fall back
to a full handshake, judged afresh (and refused when a full handshake would
be refused now).

Times are whole seconds (X.509 resolution) computed from the wall clock; the
certificates, CRLs and lifetimes are a few seconds long so that each test
waits only a few seconds.
"""
import datetime
import time

import pytest

from sdlib import free_port
from conftest import (TLS_VERSIONS, whole_now, sleep_until, root_issuer, issue_cert, build_crl,
                      crl_pem, cert_pem, atomic_write, version_ctx, tls_attempt, sighup_reload,
                      yaml_config)
from test_config_errors import expect_startup_failure

VERS = list(TLS_VERSIONS)
BILLING = "spiffe://example.org/billing"


def good_pair(pki):
    return (pki.client_cert, pki.client_key)


def check_full(sd, r, what):
    """r (a tls_attempt result) is an admitted full handshake."""
    assert r["ok"], "%s: not admitted: %s" % (what, r)
    assert not r["reused"], "%s: unexpectedly resumed: %s" % (what, r)
    e = sd.wait_conn(r["peer"])
    assert e.get("result") == "ok" and e.get("resumed") is False, "%s: log line %s" % (what, e)
    return e


def check_resumed(sd, r, what):
    assert r["ok"], "%s: not admitted: %s" % (what, r)
    e = sd.wait_conn(r["peer"])
    assert r["reused"], "%s: the session was not resumed (control): %s; log line %s" % (
        what, r, e)
    assert e.get("result") == "ok" and e.get("resumed") is True, "%s: log line %s" % (what, e)
    return e


def check_refused_not_resumed(sd, r, reason, what):
    """A connection offering a saved session: not resumed, refused with reason,
    no application byte reached the client."""
    e = sd.wait_conn(r["peer"])
    assert not r["reused"], "%s: the saved session RESUMED: %s; log line %s" % (what, r, e)
    assert not r["ok"] and r["data"] == b"", "%s: the client was admitted: %s; log line %s" % (
        what, r, e)
    assert e.get("resumed") is not True, "%s: log says resumed: %s" % (what, e)
    assert e.get("result") == "refused" and e.get("reason") == reason, \
        "%s: expected refused/%s, log line %s" % (what, reason, e)
    return e


def in_time(deadline, what):
    """The steps before an expiry must be done before it, or the test proves nothing."""
    assert time.time() < deadline, "%s took until %.2fs past the deadline: machine too slow " \
                                   "for this test" % (what, time.time() - deadline)


# --------------------------------------------------------------------------
# 1a. the certificate (leaf or intermediate) expires while a session is saved
# --------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
def test_resumption_stops_when_certificate_expires(steeldoor, backends, pki, tmp_path, workers):
    """Attack: a client whose certificate (or whose intermediate CA) expires in
    ~4 s takes a session, then comes back after expiry with that session (and
    with the newest one a resumption gave it). Before expiry: full handshake
    and resumption admitted. Just after notAfter (0.3 s into the second where
    OpenSSL already refuses a full handshake - checked first, as the
    reference): no resumption, refused certificate_expired, the backend sees
    nothing; TLS 1.3 and 1.2, every worker."""
    be = backends()
    sd = steeldoor(target=be.target, workers=workers)
    root = root_issuer(pki)
    out = tmp_path / "short"
    na = whole_now() + datetime.timedelta(seconds=4)
    deadline = na.timestamp()
    leaf = issue_cert(out, "short-leaf", root, cn="short-leaf",
                      uris=["spiffe://example.org/short-leaf"], not_after=na)
    inter = issue_cert(out, "short-int", root, cn="short-lived intermediate", ca=True,
                       not_after=na)
    under = issue_cert(out, "under-int", inter, cn="under-int",
                       uris=["spiffe://example.org/under-int"], chain=(inter,))
    clients = {"leaf": leaf, "intermediate": under}

    saved = {}
    for cname, c in clients.items():
        for ver in VERS:
            ctx = version_ctx(pki.ca, c.pair, ver)
            what = "%s/%s" % (cname, ver)
            full = tls_attempt(ctx, sd.port)
            check_full(sd, full, what + " full handshake before expiry")
            r = tls_attempt(ctx, sd.port, session=full["session"])
            check_resumed(sd, r, what + " resumption before expiry")
            saved[(cname, ver)] = (ctx, [full["session"], r["session"] or full["session"]])
    in_time(deadline - 0.2, "handshakes before the certificates expire")
    count = be.count

    # Just past notAfter (OpenSSL: a certificate is expired from the second of
    # its notAfter on): a full handshake is refused now - the reference - and
    # so must every saved session be, without resuming.
    sleep_until(deadline + 0.3)
    for (cname, ver), (ctx, sessions) in saved.items():
        t = time.time()
        r = tls_attempt(ctx, sd.port)
        assert not r["ok"], "control: a full handshake of %s/%s at notAfter + %.2fs was " \
                            "admitted: %s" % (cname, ver, t - deadline, sd.wait_conn(r["peer"]))
        check_refused_not_resumed(sd, r, "certificate_expired", "%s/%s full handshake at "
                                  "notAfter + %.2fs" % (cname, ver, t - deadline))
        for i in range(2):                 # twice each: with 2 workers, both may be hit
            for j, s in enumerate(sessions):
                t = time.time()
                r = tls_attempt(ctx, sd.port, session=s)
                check_refused_not_resumed(sd, r, "certificate_expired",
                                          "%s/%s at notAfter + %.2fs (notAfter %s), session %d "
                                          "try %d" % (cname, ver, t - deadline, na.isoformat(),
                                                      j, i))
    assert be.count == count, "the backend got a connection from an expired client"
    # control: a valid client is still admitted
    for ver in VERS:
        check_full(sd, tls_attempt(version_ctx(pki.ca, good_pair(pki), ver), sd.port),
                   "valid client after the expiry (%s)" % ver)


# --------------------------------------------------------------------------
# 1b. the CRL goes stale (nextUpdate passes, then nextUpdate + grace)
# --------------------------------------------------------------------------

def test_resumption_stops_when_crl_expires(steeldoor, backends, pki, tmp_path):
    """Attack: sessions taken while the CRL was fresh are replayed after its
    nextUpdate. Listener g0 (crl-grace 0, the default): 0.3 s past nextUpdate
    a full handshake is refused crl_expired (the reference), and the saved
    sessions must not resume and are refused crl_expired. Listener g2
    (crl-grace 2s): still admitted then, and 0.3 s past nextUpdate + 2 s the
    same as g0. 2 workers: the sessions come back through either worker (and
    the shared cache)."""
    be = backends()
    root = root_issuer(pki)
    nu = whole_now() + datetime.timedelta(seconds=4)
    crl = tmp_path / "short.crl"
    crl.write_bytes(crl_pem(build_crl(root, last_update=nu - datetime.timedelta(hours=1),
                                      next_update=nu)))
    p0, p2 = free_port(), free_port()
    cfg = yaml_config(pki, [
        # an explicit 0, the default
        {"name": "g0", "port": p0, "target": be.target, "crl": '"%s"' % crl, "crl-grace": "0"},
        {"name": "g2", "port": p2, "target": be.target, "crl": '"%s"' % crl, "crl-grace": "2s"},
    ], workers=2)
    sd = steeldoor(config=cfg, wait_ports=[p0, p2])
    deadline = nu.timestamp()

    saved = {}
    for port, lname in ((p0, "g0"), (p2, "g2")):
        for ver in VERS:
            ctx = version_ctx(pki.ca, good_pair(pki), ver)
            full = tls_attempt(ctx, port)
            check_full(sd, full, "%s/%s full handshake, CRL fresh" % (lname, ver))
            r = tls_attempt(ctx, port, session=full["session"])
            check_resumed(sd, r, "%s/%s resumption, CRL fresh" % (lname, ver))
            saved[(lname, ver)] = (ctx, port, [full["session"], r["session"] or full["session"]])
    in_time(deadline - 0.2, "handshakes before the CRL's nextUpdate")
    count = be.count

    def stale(lname, when):
        """A full handshake is refused now (the reference), and every saved
        session is refused without resuming."""
        for ver in VERS:
            ctx, port, sessions = saved[(lname, ver)]
            t = time.time()
            r = tls_attempt(ctx, port)
            assert not r["ok"], "control: a full handshake on %s/%s at nextUpdate + %.2fs was " \
                                "admitted: %s" % (lname, ver, t - deadline, sd.wait_conn(r["peer"]))
            check_refused_not_resumed(sd, r, "crl_expired", "%s/%s full handshake at "
                                      "nextUpdate + %.2fs" % (lname, ver, t - deadline))
            for i, s in enumerate(sessions * 2):
                t = time.time()
                r = tls_attempt(ctx, port, session=s)
                check_refused_not_resumed(sd, r, "crl_expired",
                                          "%s/%s at nextUpdate + %.2fs (%s, nextUpdate %s), "
                                          "try %d" % (lname, ver, t - deadline, when,
                                                      nu.isoformat(), i))

    # Just past nextUpdate (OpenSSL: a CRL is stale from the second of its
    # nextUpdate on): g2 (grace 2 s) still admits, g0 refuses
    sleep_until(deadline + 0.3)
    for ver in VERS:
        ctx, port, sessions = saved[("g2", ver)]
        r = tls_attempt(ctx, port, session=sessions[0])
        assert r["ok"], "g2/%s: refused within the 2 s CRL grace: %s %s" % (
            ver, r, sd.wait_conn(r["peer"]))
        count += 1
    in_time(deadline + 1.9, "checks within the CRL grace")
    stale("g0", "no grace")
    assert be.count == count, "backend connections: %d, expected %d" % (be.count, count)

    # just past nextUpdate + grace: g2 refuses too
    sleep_until(deadline + 2.3)
    stale("g2", "grace 2s")
    assert be.count == count, "the backend got a connection after the CRL went stale"


# --------------------------------------------------------------------------
# 1c. session-lifetime counts from the FULL handshake
# --------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2], ids=["cli-workers1", "yaml-workers2"])
def test_session_lifetime_bounds_resumption_chain(steeldoor, backends, pki, tmp_path, workers):
    """Attack: keep a session alive forever by resuming before it ages out and
    taking the new session (TLS 1.3 hands out a fresh ticket on every
    resumption). With session-lifetime 3s the chain must stop resuming once
    the FULL handshake is more than 3 s old: resumptions at ~0.8 s and ~1.6 s
    work, at ~4.4 s the connection is a full handshake (resumed false), still
    admitted; and that new full handshake starts a new lifetime (control).
    workers1: `--session-lifetime 3s`; workers2: YAML `session-lifetime: 3s`."""
    be = backends()
    if workers == 1:
        sd = steeldoor(target=be.target, workers=1, extra=["--session-lifetime", "3s"])
        port = sd.port
    else:
        port = free_port()
        cfg = yaml_config(pki, [{"name": "life", "port": port, "target": be.target,
                                 "session-lifetime": "3s"}], workers=2)
        sd = steeldoor(config=cfg, wait_ports=[port])
    ctxs = {v: version_ctx(pki.ca, good_pair(pki), v) for v in VERS}

    t0 = time.monotonic()
    latest = {}
    for v in VERS:
        r = tls_attempt(ctxs[v], port)
        check_full(sd, r, "%s full handshake" % v)
        latest[v] = r["session"]

    def at(offset):
        left = t0 + offset - time.monotonic()
        if left > 0:
            time.sleep(left)

    for step, offset in enumerate((0.8, 1.6)):
        at(offset)
        for v in VERS:
            t = time.monotonic() - t0
            r = tls_attempt(ctxs[v], port, session=latest[v])
            check_resumed(sd, r, "%s resumption %d at %.2fs after the full handshake"
                          % (v, step + 1, t))
            latest[v] = r["session"] or latest[v]
        assert time.monotonic() - t0 < offset + 0.6, "resumption step too slow"
    # around the limit: whatever happens, keep only sessions that came from
    # resumptions, so the chain stays rooted in the first full handshake
    for offset in (2.4, 3.2):
        at(offset)
        for v in VERS:
            r = tls_attempt(ctxs[v], port, session=latest[v])
            assert r["ok"], "%s: refused at ~%.1fs: %s" % (v, offset, r)
            if r["reused"]:
                latest[v] = r["session"] or latest[v]
    at(4.4)
    for v in VERS:
        r = tls_attempt(ctxs[v], port, session=latest[v])
        assert r["ok"], "%s: not admitted by a full handshake after the lifetime: %s" % (v, r)
        assert not r["reused"], "%s: a session chain rooted in a full handshake %.1fs ago " \
                                "still RESUMES (session-lifetime 3s)" % (v, time.monotonic() - t0)
        e = sd.wait_conn(r["peer"])
        assert e.get("resumed") is False and e.get("result") == "ok", e
        # control: the new full handshake's session resumes right away
        r2 = tls_attempt(ctxs[v], port, session=r["session"])
        check_resumed(sd, r2, "%s resumption of the new full handshake's session" % v)


@pytest.mark.parametrize("source", ["cli", "yaml"])
def test_session_lifetime_zero_disables_resumption(steeldoor, backends, pki, source):
    """Attack surface removed: with session-lifetime 0 no session ever resumes
    (every connection verifies the certificate), yet clients are admitted."""
    be = backends()
    if source == "cli":
        sd = steeldoor(target=be.target, workers=2, extra=["--session-lifetime", "0"])
        port = sd.port
    else:
        port = free_port()
        cfg = yaml_config(pki, [{"name": "nolife", "port": port, "target": be.target,
                                 "session-lifetime": "0"}], workers=2)
        sd = steeldoor(config=cfg, wait_ports=[port])
    for v in VERS:
        ctx = version_ctx(pki.ca, good_pair(pki), v)
        r = tls_attempt(ctx, port)
        check_full(sd, r, "%s first connection" % v)
        sess = r["session"]
        for i in range(4):
            r = tls_attempt(ctx, port, session=sess)
            check_full(sd, r, "%s connection %d with a saved session (lifetime 0)" % (v, i))
            sess = r["session"] or sess


def test_session_lifetime_invalid_value_refused(sd_bin, pki, tmp_path):
    """A typo in the lifetime must stop the start, naming the setting, rather
    than silently fall back to some lifetime."""
    port = free_port()
    args = ["serve", "--listen", "127.0.0.1:%d" % port, "--target", "127.0.0.1:%d" % free_port(),
            "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
            "--allow-all", "--workers", "1", "--session-lifetime", "five minutes"]
    err = expect_startup_failure(sd_bin, args, tmp_path, watch_ports=[port])
    assert "session-lifetime" in err, err


# --------------------------------------------------------------------------
# 2. a reload that changes an admission setting invalidates old sessions
# --------------------------------------------------------------------------

RELOAD_CASES = {
    # kind: (resumes after the reload?)
    "verify-depth": False,
    "crl-grace": False,
    "session-lifetime": False,
    "cacert": False,
    "crl": False,
    "allow": False,
    "idle-timeout": True,
    "target": True,
}


@pytest.mark.parametrize("kind", list(RELOAD_CASES))
def test_reload_invalidates_sessions_of_changed_admission(steeldoor, backends, pki, certs,
                                                          tmp_path, kind):
    """Attack: a session admitted under the old settings is replayed after a
    reload that changed them (a tighter verify-depth, a shorter CRL grace or
    session lifetime, another CA bundle, CRL or allow-rule set): it must not
    resume, the client goes through a full handshake under the new settings.
    Controls: before the reload the session resumes; a reload that changes
    only idle-timeout or target keeps sessions resumable (TLS 1.3 and 1.2,
    2 workers, several tries so both workers are asked)."""
    be, be2 = backends(), backends()
    root = root_issuer(pki)
    live = tmp_path / "live"
    live.mkdir()
    crl = live / "ca.crl"
    atomic_write(crl, crl_pem(build_crl(root, number=1)))
    ca = live / "ca.pem"
    atomic_write(ca, pki.ca.read_bytes())
    cfgp = live / "steeldoor.yaml"
    port = free_port()

    def cfg(**over):
        rules = over.pop("rules", [BILLING])
        dns = over.pop("dns", [])
        s = {"verify-depth": "3", "crl-grace": "1h", "idle-timeout": "5m",
             "target": be.target}
        s.update(over)   # session-lifetime only when the case sets it (default 5m)
        listener = {"name": "main", "port": port, "cacert": ca, "allow-all": False,
                    "crl": '"%s"' % crl,
                    "raw": "    allow-uri:\n" + "".join('      - "%s"\n' % r for r in rules) +
                    ("    allow-dns:\n" + "".join('      - "%s"\n' % d for d in dns)
                     if dns else "")}
        listener.update(s)
        return yaml_config(pki, [listener], workers=2, extra_top="watch: false")

    atomic_write(cfgp, cfg())
    sd = steeldoor(args=["serve", "--config", cfgp], wait_ports=[("127.0.0.1", port)])
    ctxs = {v: version_ctx(pki.ca, good_pair(pki), v) for v in VERS}
    saved = {}
    for v in VERS:
        full = tls_attempt(ctxs[v], port)
        check_full(sd, full, "%s full handshake before the reload" % v)
        r = tls_attempt(ctxs[v], port, session=full["session"])
        check_resumed(sd, r, "%s resumption before the reload (control)" % v)
        saved[v] = r["session"] or full["session"]

    if kind == "verify-depth":
        atomic_write(cfgp, cfg(**{"verify-depth": "2"}))
    elif kind == "crl-grace":
        atomic_write(cfgp, cfg(**{"crl-grace": "30m"}))
    elif kind == "session-lifetime":
        atomic_write(cfgp, cfg(**{"session-lifetime": "4m"}))
    elif kind == "cacert":
        other = certs.ca("other-root", issuer="self")
        atomic_write(ca, pki.ca.read_bytes() + cert_pem(other))
    elif kind == "crl":
        someone = certs.client("someone-else", cn="someone-else")
        atomic_write(crl, crl_pem(build_crl(root, revoked=[someone.cert], number=2)))
    elif kind == "allow":
        atomic_write(cfgp, cfg(dns=["batch.example.org"]))
    elif kind == "idle-timeout":
        atomic_write(cfgp, cfg(**{"idle-timeout": "4m"}))
    else:
        atomic_write(cfgp, cfg(target=be2.target))
    sighup_reload(sd, workers=2)
    time.sleep(0.2)

    resumes = RELOAD_CASES[kind]
    for v in VERS:
        for i in range(3):
            r = tls_attempt(ctxs[v], port, session=saved[v])
            assert r["ok"], "%s try %d: refused after a reload that changed %s: %s" % (
                v, i, kind, r)
            e = sd.wait_conn(r["peer"])
            if resumes:
                assert r["reused"] and e.get("resumed") is True, \
                    "%s try %d: the session did not resume after a reload that changed only " \
                    "%s (control): %s" % (v, i, kind, e)
            else:
                assert not r["reused"] and e.get("resumed") is False, \
                    "%s try %d: a session from before the reload RESUMED although %s " \
                    "changed: %s" % (v, i, kind, e)
            assert e.get("result") == "ok", e
    if kind == "target":
        assert be2.count >= 6, "resumed connections did not reach the new target"
