"""Client mode (issue 15): sessions, the server's chain and reloads.

- a POOL of client sessions per connector and worker: concurrent callers
  each resume (TLS 1.3 tickets are single-use on a server with a session
  cache, such as steeldoor serve);
- a server that ends the connection itself (its close_notify first, or a
  bare FIN after ours) leaves its session resumable;
- TLS 1.2 servers: resumption, and rotation of our client certificate;
- the certificates sent are exactly as before SSL_MODE_NO_AUTO_CHAIN
  (leaf + intermediate from the file; a leaf alone completed from the CA
  store), and a chain through an intermediate verifies against the root
  only (an intermediate alone is not a trust anchor);
- a reload whose CRL revokes the server closes open connections to it;
- the chain cache never skips the server's proof of its key: a server
  presenting the very chain verified a moment before, but signing with
  another private key, is refused.
"""
import base64
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import (atomic_write, build_crl, crl_pem, issue_cert, root_issuer, sighup_reload,
                      wait_peer_closed)
from sdlib import free_port, recv_exact
from test_connect import connect_args, roundtrip, connects, server  # noqa: F401

REVOKED_DETAIL = "open connection closed after reload: server no longer admitted"
SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT_AUTH = (ExtendedKeyUsageOID.CLIENT_AUTH,)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def callers(sd):
    """connect's conn lines (a start-up probe's, if any, left out)."""
    return sd.conn_logs()


def wait_callers(sd, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = callers(sd)
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def served(sd):
    """A steeldoor serve's conn lines of connections that carried bytes
    (those of connect's start-up probe carried none)."""
    return [e for e in sd.conn_logs() if e.get("result") == "ok"
            and (e.get("bytes_in") or e.get("bytes_out"))]


def wait_served(sd, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = served(sd)
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def serial_of(der):
    return x509.load_der_x509_certificate(der).serial_number


def hexserial(line):
    return int(line.get("client_cert_serial", "-1"), 16)


def der_of(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def caller_refused(port, sd, before):
    """A caller that must get nothing: no byte back, then EOF. Returns the
    caller's conn line (the first new one after `before` lines)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        try:
            s.sendall(b"must-not-arrive\n")
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b"", "a refused caller received bytes: %r" % got
    lines = wait_callers(sd, before + 1)
    assert len(lines) > before, "no conn line for the refused caller; log:\n%s" % (
        "\n".join(sd.raw_lines()[-20:]))
    return lines[before]


class PyTLSServer:
    """A TLS server in a thread (Python ssl, CERT_REQUIRED against ca) that
    echoes. close_first: after echoing the first read it does an orderly
    TLS shutdown (close_notify) and closes, before the client closes.
    Each connection is recorded: ok, version, reused (as the server saw
    it), peer (the client certificate's DER), error. The context can be
    replaced while running (set_ctx)."""

    def __init__(self, cert, key, ca, max_version=None, min_version=None, close_first=False):
        self.ctx = self.make_ctx(cert, key, ca, max_version, min_version)
        self.close_first = close_first
        self.records = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.target = "127.0.0.1:%d" % self.port
        self.stop = False
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    @staticmethod
    def make_ctx(cert, key, ca, max_version=None, min_version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(ca))
        if max_version:
            ctx.maximum_version = max_version
        if min_version:
            ctx.minimum_version = min_version
        return ctx

    def set_ctx(self, ctx):
        self.ctx = ctx

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        rec = {"ok": False, "version": None, "reused": None, "peer": None, "error": None,
               "data": b""}
        c.settimeout(10)
        try:
            t = self.ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)
        except (ssl.SSLError, OSError) as e:
            rec["error"] = repr(e)
            with self.lock:
                self.records.append(rec)
            c.close()
            return
        rec.update(ok=True, version=t.version(), reused=t.session_reused,
                   peer=t.getpeercert(binary_form=True))
        with self.lock:
            self.records.append(rec)
        try:
            t.settimeout(10)
            while True:
                data = t.recv(4096)
                if not data:
                    rec["end"] = "close_notify"
                    break
                rec["data"] += data
                t.sendall(data)
                if self.close_first:
                    # the server ends first: its close_notify, then the
                    # socket at once (non-blocking: unwrap() sends the
                    # alert, then would wait for the client's)
                    t.setblocking(False)
                    try:
                        t.unwrap()
                        rec["end"] = "closed first, close_notify answered at once"
                    except ssl.SSLWantReadError:
                        rec["end"] = "closed first"
                    except (ssl.SSLError, OSError) as e:
                        rec["end"] = "closed first: %r" % e
                    t.close()
                    return
        except (ssl.SSLError, OSError) as e:
            rec["end"] = repr(e)
        try:
            t.close()
        except OSError:
            pass

    def served(self):
        """Records of connections that completed the handshake and carried data."""
        with self.lock:
            return [r for r in self.records if r["ok"] and r["data"]]

    def wait_served(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.served()) < n:
            time.sleep(0.02)
        return self.served()

    def close(self):
        self.stop = True
        self.ls.close()


@pytest.fixture
def pytls():
    made = []

    def make(*a, **kw):
        s = PyTLSServer(*a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def start_connector(pki, connects, target, extra=(), **kw):
    """steeldoor connect on a loopback port, verifying the server as
    localhost. No start-up probe: a caller that connects and leaves at once
    may still get its server handshake done, and its session would make
    the first real caller resume. The listening line says the socket is
    bound; callers queue in its backlog until the worker takes them."""
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, target,
                               ["--server-name", "localhost"] + list(extra), **kw))
    sd.wait_log(lambda e: e.get("event") == "listening", timeout=10,
                what="connect's listening line")
    return sd, port


# --------------------------------------------------------------------------
# (a) the session pool: concurrent callers each resume
# --------------------------------------------------------------------------

ROUNDS, WIDTH = 20, 16


def test_session_pool_concurrent_callers_resume(pki, server, connects):
    """connect -> steeldoor serve (whose session cache makes each TLS 1.3
    ticket single-use): 20 rounds of 16 simultaneous callers. From the
    second round on, at least 90% of the connections resume, by connect's
    log and by serve's alike (one shared session would resume one caller
    in each round)."""
    sd, port = start_connector(pki, connects, "127.0.0.1:%d" % server.port)
    errors = []
    for r in range(ROUNDS):
        barrier = threading.Barrier(WIDTH)

        def one(i, r=r):
            payload = b"round-%02d-caller-%02d\n" % (r, i)
            try:
                barrier.wait(5)
                got = roundtrip(port, payload)
                if got != payload:
                    errors.append("round %d caller %d: echo %r" % (r, i, got))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("round %d caller %d: %r" % (r, i, e))

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(WIDTH)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert not errors, errors[:5]
        # every line of this round is in before the next round starts, so
        # the first WIDTH lines are the first round's
        n = WIDTH * (r + 1)
        assert len(wait_callers(sd, n)) == n, callers(sd)[-3:]
        assert len(wait_served(server, n)) == n, served(server)[-3:]
    mine, theirs = callers(sd), served(server)
    assert all(l.get("result") == "ok" for l in mine), [l for l in mine if l["result"] != "ok"][:3]
    assert all(l.get("tls_version") == "TLSv1.3" for l in mine), mine[0]
    later = mine[WIDTH:]
    resumed = sum(1 for l in later if l.get("resumed") is True)
    assert resumed >= 0.9 * len(later), \
        "connect: only %d of %d connections after the first round resumed (per round: %s)" % (
            resumed, len(later),
            [sum(1 for l in mine[i:i + WIDTH] if l.get("resumed")) for i in
             range(0, len(mine), WIDTH)])
    s_later = theirs[WIDTH:]
    s_resumed = sum(1 for l in s_later if l.get("resumed") is True)
    assert s_resumed >= 0.9 * len(s_later), \
        "serve: only %d of %d connections after the first round resumed" % (
            s_resumed, len(s_later))
    # both ends count the same resumptions, over the whole run
    assert sum(1 for l in mine if l.get("resumed")) == \
        sum(1 for l in theirs if l.get("resumed")), (mine[-3:], theirs[-3:])
    # the first round started with nothing cached
    assert any(l.get("resumed") is False for l in mine[:WIDTH]), mine[:WIDTH]


# --------------------------------------------------------------------------
# (b) the server closes first
# --------------------------------------------------------------------------

ENDINGS = ["server-close-notify-first", "server-fin-after-ours"]
VERSIONS = {"tls13": ssl.TLSVersion.TLSv1_3, "tls12": ssl.TLSVersion.TLSv1_2}


@pytest.mark.parametrize("ver", list(VERSIONS))
@pytest.mark.parametrize("ending", ENDINGS)
def test_session_kept_when_the_server_ends_the_connection(pki, pytls, connects, ending, ver):
    """A Python ssl server (CERT_REQUIRED; stateless tickets, usable again)
    ends each connection itself, two ways:
    server-close-notify-first: it answers, sends its close_notify and
      closes the socket at once, before the caller (or we) closed;
    server-fin-after-ours: the caller closes, our close_notify goes out,
      and the server closes its socket without a close_notify of its own
      (what Python's SSLSocket.close() and many servers do).
    Neither is a broken connection: the session it issued stays usable, so
    of 20 callers one after the other every one but the first resumes
    (OpenSSL took such an end for a broken one and made the session
    unresumable, costing each second connection a full handshake)."""
    v = VERSIONS[ver]
    srv = pytls(pki.server_cert, pki.server_key, pki.ca, min_version=v, max_version=v,
                close_first=(ending == "server-close-notify-first"))
    sd, port = start_connector(pki, connects, srv.target)
    for i in range(20):
        payload = b"server-ends-%02d\n" % i
        assert roundtrip(port, payload) == payload, i
        # one after the other: each connection's end is in before the next caller
        assert len(wait_callers(sd, i + 1)) == i + 1, callers(sd)
        assert len(srv.wait_served(i + 1)) == i + 1
    recs = srv.served()
    want_end = "closed first" if ending == "server-close-notify-first" else "close_notify"
    # how each connection ended, as the server saw it
    assert all((r.get("end") or "").startswith(want_end) for r in recs), \
        [r.get("end") for r in recs]
    assert {r["version"] for r in recs} == {{"tls13": "TLSv1.3", "tls12": "TLSv1.2"}[ver]}
    lines = callers(sd)
    assert all(l["result"] == "ok" for l in lines), [l for l in lines if l["result"] != "ok"]
    got = [l.get("resumed") for l in lines]
    assert got == [False] + [True] * 19, "resumed per caller (connect's log): %s" % got
    assert [r["reused"] for r in recs] == [False] + [True] * 19, \
        "resumed per caller (the server's view): %s" % [r["reused"] for r in recs]


# --------------------------------------------------------------------------
# (a)(rotation) TLS 1.2: resumption and rotation of our certificate
# --------------------------------------------------------------------------

def test_tls12_server_resumes_and_rotation_presents_new_cert(pki, pytls, connects, tmp_path):
    """A TLS 1.2 server (Python ssl, CERT_REQUIRED, OpenSSL's server session
    cache): the second connection resumes. After connect's client cert is
    rotated (new files, SIGHUP) the next connection is a full handshake
    presenting the new certificate (never a resumption of the old one's
    session), later ones resume under it, and a connection opened before
    the reload keeps working with the old one."""
    issuer = root_issuer(pki)
    d = tmp_path / "rot12"
    old = issue_cert(d, "old", issuer, uris=("spiffe://example.org/billing",))
    new = issue_cert(d, "new", issuer, uris=("spiffe://example.org/billing",))
    live_crt, live_key = d / "live.crt", d / "live.key"
    atomic_write(live_crt, old.crt.read_bytes())
    atomic_write(live_key, old.keyfile.read_bytes())
    os.chmod(live_key, 0o600)
    srv = pytls(pki.server_cert, pki.server_key, pki.ca, max_version=ssl.TLSVersion.TLSv1_2)
    sd, port = start_connector(pki, connects, srv.target, ["--no-watch"],
                               cert=str(live_crt), key=str(live_key))

    assert roundtrip(port, b"first\n") == b"first\n"
    assert roundtrip(port, b"second\n") == b"second\n"
    lines = wait_callers(sd, 2)
    assert [l.get("tls_version") for l in lines] == ["TLSv1.2"] * 2, lines
    assert [l.get("resumed") for l in lines] == [False, True], lines
    recs = srv.wait_served(2)
    assert [r["version"] for r in recs] == ["TLSv1.2"] * 2, recs
    assert [r["reused"] for r in recs] == [False, True], recs
    assert {serial_of(r["peer"]) for r in recs} == {old.cert.serial_number}

    opened = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        opened.sendall(b"before-reload\n")
        assert recv_exact(opened, 14) == b"before-reload\n"
        assert len(srv.wait_served(3)) == 3
        # key first, then the certificate (a reload in between keeps the old pair)
        atomic_write(live_key, new.keyfile.read_bytes())
        os.chmod(live_key, 0o600)
        atomic_write(live_crt, new.crt.read_bytes())
        sighup_reload(sd, 1)

        assert roundtrip(port, b"after-reload\n") == b"after-reload\n"
        recs = srv.wait_served(4)
        assert len(recs) == 4, recs
        assert recs[-1]["reused"] is False, \
            "the first connection after the rotation resumed a session of the old certificate"
        assert serial_of(recs[-1]["peer"]) == new.cert.serial_number, \
            "the server did not see the new certificate"
        line = wait_callers(sd, 3)[-1]
        assert line.get("resumed") is False and hexserial(line) == new.cert.serial_number, line
        assert line.get("client_cert_subject") == "CN=new", line

        # and sessions of the new certificate resume again
        assert roundtrip(port, b"after-again\n") == b"after-again\n"
        recs = srv.wait_served(5)
        assert recs[-1]["reused"] is True and serial_of(recs[-1]["peer"]) == \
            new.cert.serial_number, recs[-1]
        line = wait_callers(sd, 4)[-1]
        assert line.get("resumed") is True and hexserial(line) == new.cert.serial_number, line

        # the connection opened before the reload still carries bytes
        opened.sendall(b"still-open\n")
        assert recv_exact(opened, 11) == b"still-open\n"
        assert len(callers(sd)) == 4, "the open connection got a conn line: %s" % callers(sd)
    finally:
        opened.close()
    line = wait_callers(sd, 5)[-1]
    assert line["result"] == "ok" and hexserial(line) == old.cert.serial_number, line


# --------------------------------------------------------------------------
# (e) the certificates sent; a chain through an intermediate CA
# --------------------------------------------------------------------------

PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def sent_chain(port, pki):
    """The certificates the server at port sends, as `openssl s_client
    -showcerts` prints them (DER each, in order)."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", "-showcerts",
                        "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                        "-CAfile", str(pki.ca)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    out = r.stdout
    certs = [x509.load_pem_x509_certificate(m.group(0)) for m in PEM_RE.finditer(out)]
    assert certs, "s_client printed no certificate (rc=%d)\n%s\n%s" % (
        r.returncode, out.decode(errors="replace")[-2000:], r.stderr.decode(errors="replace"))
    return [der_of(c) for c in certs]


@pytest.fixture
def intermediate_server(pki, certs, tmp_path):
    """dev CA -> srv-int -> a server leaf (serverAuth, DNS localhost); the
    leaf's file holds the leaf, then the intermediate."""
    inter = certs.ca("srv-int")
    leaf = issue_cert(tmp_path / "intsrv", "srv-leaf", inter, eku=SERVER_AUTH,
                      dns=("localhost",), chain=(inter,))
    return inter, leaf


def test_server_chain_through_an_intermediate(pki, steeldoor, echo_backend, connects,
                                              intermediate_server):
    inter, leaf = intermediate_server
    srv = steeldoor(target=echo_backend.target, cert=leaf.crt, key=leaf.keyfile)
    # exactly what the file holds goes out: leaf, intermediate
    assert sent_chain(srv.port, pki) == [der_of(leaf.cert), der_of(inter.cert)]

    # the root alone is the trust anchor: the intermediate comes from the server
    sd, port = start_connector(pki, connects, "127.0.0.1:%d" % srv.port)
    assert roundtrip(port) == b"hello-through-connect\n"
    line = wait_callers(sd, 1)[0]
    assert line["result"] == "ok" and "srv-leaf" in line.get("subject", ""), line

    # the intermediate alone is not one: a partial chain is no trust anchor
    sd2, port2 = start_connector(pki, connects, "127.0.0.1:%d" % srv.port, cacert=inter.crt)
    line = caller_refused(port2, sd2, 0)
    assert line["result"] == "error" and line["reason"] == "unknown_ca", line


def test_server_leaf_only_chain_completed_from_ca_store(pki, server):
    """A cert file with the leaf only: the chain is completed from the CA
    store, as OpenSSL's automatic chain did (leaf, then the CA)."""
    leaf = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    assert sent_chain(server.port, pki) == [der_of(leaf), der_of(pki.ca_cert_obj)]


def client_chain_seen(trace):
    """The certificates of the client's Certificate message in an `openssl
    s_server -trace` output (DER each, in order)."""
    records = re.split(rb"(?m)^(?=Sent Record|Received Record)", trace)
    got = [r for r in records if r.startswith(b"Received Record") and
           re.search(rb"(?m)^\s+Certificate, Length=", r)]
    assert len(got) == 1, "no single client Certificate message in the trace:\n%s" % (
        trace.decode(errors="replace")[-3000:])
    return [der_of(x509.load_pem_x509_certificate(m.group(0)))
            for m in PEM_RE.finditer(got[0])]


@pytest.mark.parametrize("kind", ["leaf-only", "leaf-and-intermediate"])
def test_connector_sends_exactly_its_chain(pki, certs, connects, tmp_path, kind):
    """What connect presents, as `openssl s_server -trace` decodes the
    client's Certificate message: a cert file with the leaf only is
    completed from the CA store (leaf, then the CA: what OpenSSL's
    automatic chain sent); leaf + intermediate in the file: exactly those."""
    if kind == "leaf-only":
        crt, key = pki.client_cert, pki.client_key
        want = [der_of(x509.load_pem_x509_certificate(crt.read_bytes())),
                der_of(pki.ca_cert_obj)]
    else:
        inter = certs.ca("cli-int")
        leaf = issue_cert(tmp_path / "cli", "cli-full", inter, eku=CLIENT_AUTH,
                          uris=("spiffe://example.org/billing",), chain=(inter,))
        crt, key = leaf.crt, leaf.keyfile
        want = [der_of(leaf.cert), der_of(inter.cert)]
    sport = free_port()
    trace = tmp_path / "s_server.out"
    with open(trace, "wb") as out:
        ss = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % sport,
                               "-cert", str(pki.server_cert), "-key", str(pki.server_key),
                               "-CAfile", str(pki.ca), "-Verify", "3", "-trace",
                               "-naccept", "1"],
                              stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while b"ACCEPT" not in trace.read_bytes():  # listening (a probe would be its one accept)
            assert ss.poll() is None and time.monotonic() < deadline, trace.read_text()
            time.sleep(0.05)
        sd, port = start_connector(pki, connects, "127.0.0.1:%d" % sport,
                                   cert=str(crt), key=str(key))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"hello-s_server\n")
            # s_server prints what it receives: the handshake and our bytes are in
            deadline = time.monotonic() + 10
            while b"hello-s_server" not in trace.read_bytes():
                assert time.monotonic() < deadline, trace.read_text()[-3000:]
                time.sleep(0.05)
        line = wait_callers(sd, 1)[0]
        assert line["result"] == "ok", line
    finally:
        ss.kill()
        ss.wait(5)
        ss.stdin.close()
    assert client_chain_seen(trace.read_bytes()) == want


# --------------------------------------------------------------------------
# (d) a reload whose CRL revokes the server closes the open connections
# --------------------------------------------------------------------------

def test_reload_revoking_the_server_closes_open_connections(pki, server, connects, tmp_path):
    issuer = root_issuer(pki)
    crl = tmp_path / "server.crl"
    atomic_write(crl, crl_pem(build_crl(issuer, number=1)))
    sd, port = start_connector(pki, connects, "127.0.0.1:%d" % server.port,
                               ["--crl", str(crl), "--no-watch"])
    # one open connection from a full handshake, one from a resumed session
    held = []
    try:
        for i in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(s)
            s.sendall(b"held-%d\n" % i)
            assert recv_exact(s, 7) == b"held-%d\n" % i

        # negative: a reload that changes nothing relevant (the same CRL,
        # written again) keeps both connections
        atomic_write(crl, crl.read_bytes())
        os.utime(crl)
        sighup_reload(sd, 1)
        time.sleep(0.5)
        for i, s in enumerate(held):
            s.sendall(b"kept-%d\n" % i)
            assert recv_exact(s, 7) == b"kept-%d\n" % i, "open connection lost on a no-op reload"
        assert callers(sd) == [], "a connection was closed by a no-op reload: %s" % callers(sd)

        # the CRL now revokes the server's certificate
        srv_cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
        atomic_write(crl, crl_pem(build_crl(issuer, revoked=[srv_cert], number=2)))
        t0 = time.monotonic()
        sighup_reload(sd, 1)
        for i, s in enumerate(held):
            assert wait_peer_closed(s, t0 + 5.0), \
                "open connection %d to the revoked server not closed within 5 s" % i
        lines = wait_callers(sd, 2)
        assert len(lines) == 2, lines
        for l in lines:
            assert l["result"] == "error" and l["reason"] == "certificate_revoked" and \
                l.get("detail") == REVOKED_DETAIL, l
        # the full handshake's connection and the resumed one alike
        assert sorted(l.get("resumed") for l in lines) == [False, True], lines
    finally:
        for s in held:
            s.close()
    # and a new caller is refused
    line = caller_refused(port, sd, 2)
    assert line["result"] == "error" and line["reason"] == "certificate_revoked", line


# --------------------------------------------------------------------------
# (c) the chain cache never skips the server's proof of its key
# --------------------------------------------------------------------------

def mismatched_key(good_key, path):
    """An EC private key file whose public point is good_key's but whose
    private scalar is another key's. OpenSSL's key/certificate match
    (X509_check_private_key, and what Python's load_cert_chain and
    s_server run) compares public keys only, so a server loads the good
    certificate with it, then signs with a key that is not the
    certificate's: the impostor that holds a copy of a verified chain."""
    other = ec.generate_private_key(ec.SECP256R1())
    der = other.private_bytes(serialization.Encoding.DER,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    fmt = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    op, gp = other.public_key().public_bytes(*fmt), good_key.public_key().public_bytes(*fmt)
    assert der.count(op) == 1
    der = der.replace(op, gp)
    path.write_bytes(b"-----BEGIN EC PRIVATE KEY-----\n" + base64.encodebytes(der) +
                     b"-----END EC PRIVATE KEY-----\n")
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("ver", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls13", "tls12"])
def test_chain_cache_does_not_skip_the_key_proof(pki, pytls, connects, tmp_path, ver):
    issuer = root_issuer(pki)
    good = issue_cert(tmp_path / "kp", "keyproof-srv", issuer, eku=SERVER_AUTH,
                      dns=("localhost",))
    bad_key = mismatched_key(good.key, tmp_path / "kp" / "impostor.key")
    srv = pytls(good.crt, good.keyfile, pki.ca, max_version=ver, min_version=ver)
    good_ctx = srv.ctx
    # the impostor's context loads: the same certificate, the wrong key
    bad_ctx = PyTLSServer.make_ctx(good.crt, bad_key, pki.ca, ver, ver)
    sd, port = start_connector(pki, connects, srv.target)

    # the chain is verified (and cached) in a full handshake
    assert roundtrip(port, b"genuine\n") == b"genuine\n"
    assert wait_callers(sd, 1)[0]["result"] == "ok"
    # the same chain from a server that cannot sign with its key: a new
    # context, so connect's session (ticket key of the old one) cannot
    # resume and the handshake is a full one
    srv.set_ctx(bad_ctx)
    n = len(srv.records)
    line = caller_refused(port, sd, 1)
    assert line["result"] != "ok", line
    assert line.get("resumed") is not True, line
    deadline = time.monotonic() + 5
    while len(srv.records) == n and time.monotonic() < deadline:
        time.sleep(0.02)
    with srv.lock:
        assert len(srv.records) == n + 1, srv.records
        last = srv.records[-1]
    assert not last["ok"], "the impostor's handshake completed: %s" % last
    assert not last["data"], last
    # control: the genuine key works again
    srv.set_ctx(good_ctx)
    assert roundtrip(port, b"genuine-again\n") == b"genuine-again\n"
    assert wait_callers(sd, 3)[2]["result"] == "ok"
