"""Trust reduction on reload reaches every connection.

When an operator takes trust away (removes a CA from the --cacert bundle,
removes an allow rule, publishes a CRL that revokes a client or one of its
intermediates) and reloads (YAML config, SIGHUP), an attacker who got in
before must not stay in: live connections that the new configuration would
not admit are closed (one conn line each, result error with a reason; the
client sees EOF), including connections admitted by session resumption, on
every worker; and a handshake that was already under way when the reload
happened is judged by the new configuration. Connections the new
configuration still admits are not disturbed.

Every file steeldoor reads lives in <tmp>/live and is replaced atomically;
the config has `watch: false`, so the reload happens exactly at SIGHUP.
"""
import datetime
import socket
import ssl
import time

import pytest

import sdlib
from sdlib import free_port, tls_connect, peer_of
from conftest import (TLS_VERSIONS, expect_admitted, expect_refused, issue_cert, build_crl,
                      crl_pem, cert_pem, atomic_write, yaml_config, tls_attempt, sighup_reload,
                      conn_owner, _now)

VERS = list(TLS_VERSIONS)
SPIFFE = "spiffe://example.org/"
YEAR = datetime.timedelta(days=365)


def closed_kind(sock, deadline):
    """How a held connection ended: 'eof' (close_notify or TCP FIN), 'reset',
    'error:...', or None when it is still open at deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            d = sock.recv(4096)
        except socket.timeout:
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return "eof"
        except ConnectionResetError:
            return "reset"
        except (ssl.SSLError, OSError) as e:
            return "error:%r" % e
        if not d:
            return "eof"
        raise AssertionError("unexpected application data on a held connection: %r" % d[:100])


class Trust:
    """Two client roots A and B, clients of each, a CA bundle, one CRL per
    CA and the config, all in <tmp>/live."""

    def __init__(self, pki, tmp_path):
        self.pki = pki
        self.live = tmp_path / "live"
        self.live.mkdir()
        out = tmp_path / "certs"
        self.out = out
        self.caA = issue_cert(out, "caA", "self", cn="trust test CA A", ca=True,
                              not_after=_now() + YEAR, eku=())
        self.caB = issue_cert(out, "caB", "self", cn="trust test CA B", ca=True,
                              not_after=_now() + YEAR, eku=())
        self.xa = issue_cert(out, "xa", self.caA, cn="xa", uris=[SPIFFE + "xa"])
        self.ya = issue_cert(out, "ya", self.caA, cn="ya", uris=[SPIFFE + "ya"])
        self.xb = issue_cert(out, "xb", self.caB, cn="xb", uris=[SPIFFE + "xb"])
        self.bundle = self.live / "clients-ca.pem"
        self.crlA = self.live / "ca-a.crl"
        self.crlB = self.live / "ca-b.crl"
        self.cfg = self.live / "steeldoor.yaml"
        atomic_write(self.bundle, cert_pem(self.caA, self.caB))
        atomic_write(self.crlA, crl_pem(build_crl(self.caA)))
        atomic_write(self.crlB, crl_pem(build_crl(self.caB)))
        self._ctx = {}

    def ctx(self, client, ver="tls13"):
        k = (client.name, ver)
        if k not in self._ctx:
            v = TLS_VERSIONS[ver]
            self._ctx[k] = sdlib.client_ctx(self.pki.ca, client.crt, client.keyfile,
                                            max_version=v, min_version=v)
        return self._ctx[k]

    def write_config(self, port, target, allow=None, crls=(), cacert=None, workers=2):
        """allow: list of SPIFFE path names for allow-uri, None for allow-all."""
        raw = ""
        if crls:
            raw += "    crl:\n" + "".join('      - "%s"\n' % c for c in crls)
        if allow is not None:
            raw += "    allow-uri:\n" + "".join('      - "%s%s"\n' % (SPIFFE, a) for a in allow)
        l = {"name": "main", "port": port, "target": target, "cacert": cacert or self.bundle,
             "allow-all": allow is None, "raw": raw}
        atomic_write(self.cfg, yaml_config(self.pki, [l], workers=workers,
                                           extra_top="watch: false"))

    def start(self, steeldoor, port):
        sd = steeldoor(args=["serve", "--config", self.cfg], wait_ports=[("127.0.0.1", port)])
        sd.port = port
        return sd


@pytest.fixture
def trust(pki, tmp_path):
    return Trust(pki, tmp_path)


def hold(ctx, port, tag, session=None):
    """An open, working connection (echo checked)."""
    s = tls_connect(ctx, port, timeout=5, session=session)
    assert sdlib.echo_roundtrip(s, b"hold-%s\n" % tag.encode()) == b"hold-%s\n" % tag.encode()
    return s


def assert_closed_by_reload(sd, held, t0, reason=None, within=3.0):
    """Every socket in held (name -> socket) is closed by the server within
    `within` s of t0 with EOF, and its conn line says result error + reason."""
    problems = []
    for name, s in held.items():
        peer = peer_of(s)
        kind = closed_kind(s, t0 + within)
        if kind != "eof":
            problems.append("%s: %s" % (name, "still open %.0fs after the reload" % within
                                        if kind is None else "ended with %s, not EOF" % kind))
            continue
        e = sd.wait_conn(peer, timeout=2)
        if e.get("result") != "error" or not e.get("reason"):
            problems.append("%s: conn line %s" % (name, e))
        elif reason is not None and e.get("reason") != reason:
            problems.append("%s: reason %r, expected %r: %s" % (name, e.get("reason"), reason, e))
    assert not problems, "live connections after a trust-reducing reload:\n" + "\n".join(problems)


def assert_untouched(sd, held):
    for name, s in held.items():
        p = b"still-%s\n" % name.encode()
        assert sdlib.echo_roundtrip(s, p, timeout=3) == p, "%s broken by the reload" % name
    peers = {peer_of(s) for s in held.values()}
    gone = [e for e in sd.conn_logs() if e.get("peer") in peers]
    assert not gone, "connections still admitted were closed: %s" % gone


def close_all(*dicts):
    for d in dicts:
        for s in d.values():
            try:
                s.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# (a) a CA removed from the bundle while its CRL stays configured
# --------------------------------------------------------------------------

def test_ca_removed_reload_succeeds_and_closes_its_connections(steeldoor, backends, trust):
    """Attack: clients of CA A hold connections while the operator drops CA A
    from the bundle but leaves A's CRL in the crl list (a common slip). The
    reload must succeed (not keep the old, trusting configuration because of
    the orphaned CRL), with a warning naming the ignored CRL; new A clients
    are refused unknown_ca; A's live connections (TLS 1.3 and 1.2) are closed;
    B's live connections keep working and new B clients are admitted."""
    be = backends()
    port = free_port()
    trust.write_config(port, be.target, crls=[trust.crlA, trust.crlB])
    sd = trust.start(steeldoor, port)
    a_held = {"xa-" + v: hold(trust.ctx(trust.xa, v), port, "xa-" + v) for v in VERS}
    b_held = {"xb-" + v: hold(trust.ctx(trust.xb, v), port, "xb-" + v) for v in VERS}
    try:
        before = len(sd.raw_lines())
        assert not [l for l in sd.raw_lines() if trust.crlA.name in l and '"warn"' in l], \
            "control: a warning about %s before the reload" % trust.crlA.name
        atomic_write(trust.bundle, cert_pem(trust.caB))
        t0 = time.monotonic()
        sighup_reload(sd, workers=2)
        warn = [l for l in sd.raw_lines()[before:] if trust.crlA.name in l and '"warn"' in l]
        assert warn, "no warning names the CRL of the removed CA (%s); log since reload:\n%s" % (
            trust.crlA.name, "\n".join(sd.raw_lines()[before:]))
        assert_closed_by_reload(sd, a_held, t0)
        assert_untouched(sd, b_held)
        for v in VERS:
            expect_refused(sd, be, trust.ctx(trust.xa, v), port, "unknown_ca")
            expect_admitted(sd, trust.ctx(trust.xb, v), port)
    finally:
        close_all(a_held, b_held)


# --------------------------------------------------------------------------
# (b) allow rule removed, (c) client revoked by a new CRL
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["allow_removed", "crl_revokes", "delta_crl_revokes"])
def test_reload_closes_live_connections_no_longer_admitted(steeldoor, backends, trust, kind):
    """Attack: xa holds full-handshake and resumed connections (TLS 1.3 and
    1.2) when the operator removes the allow rule that admitted it, or
    publishes a CRL revoking it - a new full CRL, or a delta CRL added next to
    the unchanged base CRL (AD CS style). Those connections are closed
    (not_authorized / certificate_revoked); ya's are not."""
    be = backends()
    port = free_port()
    if kind == "delta_crl_revokes":
        atomic_write(trust.crlA, crl_pem(build_crl(trust.caA, number=10,
                                                   freshest="http://pki.example.org/a+.crl")))
    trust.write_config(port, be.target, allow=["xa", "ya"], crls=[trust.crlA, trust.crlB])
    sd = trust.start(steeldoor, port)
    x_held, y_held = {}, {}
    try:
        for v in VERS:
            first = tls_attempt(trust.ctx(trust.xa, v), port)
            assert first["ok"], first
            x_held["xa-full-" + v] = hold(trust.ctx(trust.xa, v), port, "xa-full-" + v)
            s = hold(trust.ctx(trust.xa, v), port, "xa-res-" + v, session=first["session"])
            assert s.session_reused, "control: xa's session did not resume (%s)" % v
            x_held["xa-resumed-" + v] = s
            y_held["ya-" + v] = hold(trust.ctx(trust.ya, v), port, "ya-" + v)
        if kind == "allow_removed":
            trust.write_config(port, be.target, allow=["ya"], crls=[trust.crlA, trust.crlB])
            reason = "not_authorized"
        elif kind == "crl_revokes":
            atomic_write(trust.crlA, crl_pem(build_crl(trust.caA, revoked=[trust.xa], number=2)))
            reason = "certificate_revoked"
        else:
            delta = trust.live / "ca-a-delta.crl"
            atomic_write(delta, crl_pem(build_crl(trust.caA, revoked=[trust.xa], number=11,
                                                  delta_of=10)))
            trust.write_config(port, be.target, allow=["xa", "ya"],
                               crls=[trust.crlA, delta, trust.crlB])
            reason = "certificate_revoked"
        t0 = time.monotonic()
        sighup_reload(sd, workers=2)
        assert_closed_by_reload(sd, x_held, t0, reason)
        assert_untouched(sd, y_held)
        for v in VERS:
            expect_refused(sd, be, trust.ctx(trust.xa, v), port, reason)
            expect_admitted(sd, trust.ctx(trust.ya, v), port)
    finally:
        close_all(x_held, y_held)


# --------------------------------------------------------------------------
# (d) the revoked intermediate comes from --cacert, not from the client
# --------------------------------------------------------------------------

@pytest.mark.parametrize("ver", VERS)
def test_revoked_trusted_intermediate_closes_connections_on_every_worker(
        steeldoor, backends, pki, trust, ver):
    """Attack: the client sends only its leaf; its intermediate I is in the
    --cacert bundle (so it is not in the chain the client presented). The
    root then revokes I. Every live connection under I must be closed - full
    handshakes and connections resumed through the shared session cache - on
    each of the 2 workers (the test finds which worker holds each socket).
    A client directly under the root keeps its connection."""
    be = backends()
    port = free_port()
    out = trust.out
    root = issue_cert(out, "rootR", "self", cn="trust test root R", ca=True,
                      not_after=_now() + YEAR, eku=())
    inter = issue_cert(out, "intI", root, cn="trust test intermediate I", ca=True,
                       not_after=_now() + YEAR, eku=())
    leaf = issue_cert(out, "under-i", inter, cn="under-i", uris=[SPIFFE + "under-i"])  # leaf only
    direct = issue_cert(out, "direct", root, cn="direct", uris=[SPIFFE + "direct"])
    bundle = trust.live / "r-bundle.pem"
    crl_r = trust.live / "r.crl"
    crl_i = trust.live / "i.crl"
    atomic_write(bundle, cert_pem(root, inter))
    atomic_write(crl_r, crl_pem(build_crl(root, number=1)))
    atomic_write(crl_i, crl_pem(build_crl(inter, number=1)))
    trust.write_config(port, be.target, crls=[crl_r, crl_i], cacert=bundle)
    sd = trust.start(steeldoor, port)
    workers = sd.wait_workers(2, timeout=5)
    assert len(workers) == 2, workers
    lctx = trust.ctx(leaf, ver)

    first = tls_attempt(lctx, port)
    assert first["ok"] and not first["reused"], first
    origin = sd.wait_conn(first["peer"]).get("pid")
    full, resumed, spare = {}, {}, []
    try:
        for i in range(40):
            if len(full) == 2 and len(resumed) == 2:
                break
            want_resumed = len(resumed) < 2 and (len(full) == 2 or i % 2 == 1)
            s = hold(lctx, port, "c%d" % i, session=first["session"] if want_resumed else None)
            if want_resumed:
                assert s.session_reused, "control: the session did not resume (try %d)" % i
            owner = conn_owner(sd, port, s.getsockname()[1])
            assert owner in workers, "socket of try %d not found in a worker (%s)" % (i, owner)
            slot = resumed if want_resumed else full
            if owner in slot:
                spare.append(s)            # kept open too: it must be closed as well
            else:
                slot[owner] = s
        assert len(full) == 2 and len(resumed) == 2, \
            "could not get a full and a resumed connection on both workers in 40 tries " \
            "(full on %s, resumed on %s)" % (sorted(full), sorted(resumed))
        assert any(w != origin for w in resumed), "no resumption through the shared cache"
        d_held = {"direct": hold(trust.ctx(direct, ver), port, "direct")}
        held = {}
        for w, s in full.items():
            held["full@%d" % w] = s
        for w, s in resumed.items():
            held["resumed@%d%s" % (w, "(shared cache)" if w != origin else "")] = s
        for i, s in enumerate(spare):
            held["spare%d" % i] = s

        atomic_write(crl_r, crl_pem(build_crl(root, revoked=[inter], number=2)))
        t0 = time.monotonic()
        sighup_reload(sd, workers=2)
        assert_closed_by_reload(sd, held, t0, "certificate_revoked")
        assert_untouched(sd, d_held)
        expect_refused(sd, be, lctx, port, "certificate_revoked")
        r = tls_attempt(lctx, port, session=first["session"])
        assert not r["ok"] and not r["reused"], "revoked client's session still works: %s" % r
    finally:
        close_all(full, resumed, {i: s for i, s in enumerate(spare)},
                  locals().get("d_held") or {})


# --------------------------------------------------------------------------
# (e) a handshake under way during the reload is judged by the new config
# --------------------------------------------------------------------------

@pytest.mark.parametrize("ver", VERS)
@pytest.mark.parametrize("stage", ["tcp", "client_hello"])
@pytest.mark.parametrize("change", ["allow_removed", "ca_removed"])
def test_handshake_straddling_reload_judged_by_new_config(steeldoor, backends, trust, change,
                                                          stage, ver):
    """Attack: open the TCP connection (stage tcp) or even send the
    ClientHello and receive the server's flight (stage client_hello) BEFORE a
    tightening reload, finish the handshake AFTER it, hoping the connection
    is judged by the configuration it started under. It must be refused (the
    allow rule for xa is gone: not_authorized; or CA A is gone) and the
    backend must receive nothing. Control: the same steps without a reload
    are admitted."""
    be = backends()
    port = free_port()

    def config(tight):
        if change == "allow_removed":
            trust.write_config(port, be.target, allow=["ya"] if tight else ["xa", "ya"])
        else:
            atomic_write(trust.bundle, cert_pem(trust.caB) if tight
                         else cert_pem(trust.caA, trust.caB))
            trust.write_config(port, be.target, allow=["xa", "ya", "xb"])

    config(False)
    sd = trust.start(steeldoor, port)
    ctx = trust.ctx(trust.xa, ver)

    def begin():
        t = sdlib.RawTLS(ctx, port, timeout=5)
        if stage == "client_hello":
            try:
                t.obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            t._flush()                        # the ClientHello goes out now
            # Collect the server's flight, but do not process it yet: the
            # client's certificate must only leave after the reload.
            got = 0
            deadline = time.monotonic() + 2
            t.sock.settimeout(0.3)
            while time.monotonic() < deadline:
                try:
                    d = t.sock.recv(65536)
                except socket.timeout:
                    if got:
                        break
                    continue
                if not d:
                    break
                t.inc.write(d)
                got += len(d)
            t.sock.settimeout(5)
            assert got > 0, "no server flight came back for the ClientHello"
        time.sleep(0.3)                       # the worker has accepted it
        return t

    def finish(t):
        """Complete the handshake and try to talk; returns (data, error)."""
        data, err = b"", None
        try:
            t.handshake()
            t.send(b"straddle\n")
            deadline = time.monotonic() + 3
            while len(data) < 9 and time.monotonic() < deadline:
                d = t.recv(timeout=max(0.05, deadline - time.monotonic()))
                if not d:
                    err = "eof"
                    break
                data += d
        except (ssl.SSLError, OSError, TimeoutError, EOFError) as e:
            err = repr(e)
        return data, err

    # control: the same steps, no reload -> admitted
    t = begin()
    try:
        data, err = finish(t)
        assert data == b"straddle\n", "control: not admitted without a reload: %r %r" % (
            data, err)
    finally:
        t.close()
    count = be.count
    assert count == 1

    t = begin()
    try:
        config(True)
        sighup_reload(sd, workers=2)
        data, err = finish(t)
        peer = t.peer
    finally:
        t.close()
    assert data == b"", "a handshake begun before the reload got application data: %r" % data
    e = sd.wait_conn(peer)
    assert e.get("result") == "refused", \
        "a handshake begun before a tightening reload was not refused: %s" % e
    if change == "allow_removed":
        assert e.get("reason") == "not_authorized", e
    else:
        assert e.get("reason"), e
    time.sleep(0.3)
    assert be.count == count, "the backend got a connection from the straddling handshake"
    # and a fresh handshake of xa is refused as well (the reload is in force)
    expect_refused(sd, be, ctx, port, "not_authorized" if change == "allow_removed"
                   else "unknown_ca")


# --------------------------------------------------------------------------
# the CRL of a removed intermediate still revokes when a client presents it
# --------------------------------------------------------------------------

def test_removed_intermediate_crl_still_revokes_client_sent_chain(steeldoor, backends, trust):
    """Attack: the operator removes intermediate I from the bundle (its CRL
    stays configured, so the reload succeeds with a warning). A client whose
    leaf I revoked now sends I itself in its chain - I still chains to the
    trusted root R - hoping that I's CRL was dropped with I. It must be
    refused (revoked, or at worst crl_missing), never admitted."""
    be = backends()
    port = free_port()
    out = trust.out
    root = issue_cert(out, "rootR2", "self", cn="trust test root R2", ca=True,
                      not_after=_now() + YEAR, eku=())
    inter = issue_cert(out, "intI2", root, cn="trust test intermediate I2", ca=True,
                       not_after=_now() + YEAR, eku=())
    revoked = issue_cert(out, "revoked-under-i2", inter, cn="revoked-under-i2",
                         uris=[SPIFFE + "revoked"], chain=(inter,))
    bundle = trust.live / "r2-bundle.pem"
    crl_r = trust.live / "r2.crl"
    crl_i = trust.live / "i2.crl"
    atomic_write(bundle, cert_pem(root, inter))
    atomic_write(crl_r, crl_pem(build_crl(root, number=1)))
    atomic_write(crl_i, crl_pem(build_crl(inter, revoked=[revoked], number=1)))
    trust.write_config(port, be.target, crls=[crl_r, crl_i], cacert=bundle)
    sd = trust.start(steeldoor, port)
    for v in VERS:
        expect_refused(sd, be, trust.ctx(revoked, v), port, "certificate_revoked")
    atomic_write(bundle, cert_pem(root))
    sighup_reload(sd, workers=2)
    for v in VERS:
        for _ in range(2):
            e = expect_refused(sd, be, trust.ctx(revoked, v), port, None)
            assert e.get("reason") in ("certificate_revoked", "crl_missing"), e
