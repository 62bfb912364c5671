"""Every reason steeldoor can write in a connection's log line, produced by a
real client, and checked to say what happened.

Most situations run against one steeldoor with one listener per setting
(module fixture `gw`); the few that end or reload the process get their own.
After the handshake a client's misbehaviour is written as TLS records with
the keys Python's ssl module logs (`Forger`): every such test first sends one
forged application-data record and gets its echo back, so a broken forger
cannot pass for a refused record.

`test_every_reason_has_a_test` reads the reasons from their one string table
(src/reason.c), so a reason added later fails the suite until it has a test
here (or a place on the short allow-list, with the reason why it cannot be
produced from outside); `test_readme_documents_every_reason` checks that the
README documents exactly that set.
"""
import datetime
import functools
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

import sdlib
from sdlib import free_port, peer_of, rst_close, tls_connect
from conftest import CertFactory, der_san, yaml_config, _write_cert, _write_key, _now

REPO = Path(__file__).resolve().parents[2]
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

# --------------------------------------------------------------------------
# which reasons the tests cover
# --------------------------------------------------------------------------

COVERED = {}        # reason -> names of the tests that produce it
_asserted = set()   # reasons asserted by the test running now

# Reasons no client can bring about, each with why. Keep this short: a
# reason that can be produced belongs in a test.
NOT_PRODUCIBLE = {
    "out_of_memory": "a buffer allocation failed in the worker",
    "shutdown": "a worker leaves its loop with connections open only on an internal failure "
                "(epoll_wait error, or a reload snapshot it cannot load that the master could)",
    "internal_error": "re-judging after a reload could not set up an X509_STORE_CTX "
                      "(allocation failure)",
    "fd_limit": "the accept cap keeps two descriptors for every accepted connection, so the "
                "backend socket finds none only when the whole system is out of them (ENFILE)",
    "session_invalid": "defence in depth: a session without steeldoor's admission record is "
                       "never stored, so none can be resumed",
    "session_expired": "defence in depth: OpenSSL refuses to resume a session past its "
                       "lifetime before steeldoor checks it, and a full handshake follows",
}


def reason_test(*reasons):
    """Declares the reasons a test produces; the test must then assert a log
    line with each of them (through check())."""
    def deco(fn):
        for r in reasons:
            COVERED.setdefault(r, []).append(fn.__name__)

        @functools.wraps(fn)
        def run(*a, **kw):
            _asserted.clear()
            fn(*a, **kw)
            missing = set(reasons) - _asserted
            assert not missing, "%s declares %s but checked no log line with it" % (
                fn.__name__, sorted(missing))
        return run
    return deco


def check(e, result, reason, detail=None):
    """The log line e says result and reason (and detail contains detail)."""
    _asserted.add(reason)
    assert e.get("result") == result and e.get("reason") == reason, \
        "expected result=%s reason=%s, log line: %s" % (result, reason, e)
    if detail is not None:
        assert detail in (e.get("detail") or ""), "detail should mention %r: %s" % (detail, e)
    return e


def _c_reasons():
    """The reasons a connection's log line can carry: the one string table
    in src/reason.c (enum sd_reason, sd/reason.h), whose entries are the
    only way code names a reason. Returns {reason: {"reason.c"}}."""
    text = (REPO / "src" / "reason.c").read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    table = re.search(r"\bsd_reason_names\s*\[[^\]]*\]\s*=\s*\{(.*?)\};", text, flags=re.S)
    assert table, "src/reason.c: the table sd_reason_names[] = { ... }; was not found"
    entries = re.findall(r'\[\s*(SD_R_[A-Z0-9_]+)\s*\]\s*=\s*"([a-z][a-z0-9_]*)"', table.group(1))
    words = [w for _, w in entries]
    assert len(words) == len(set(words)), "a word appears twice in the table: %s" % sorted(words)
    return {w: {"reason.c"} for w in words}


def _readme_reasons():
    """The reasons README.md documents: every `word` in the `reason` row
    of the log field table (its first cell excluded)."""
    rows = [l for l in (REPO / "README.md").read_text().splitlines()
            if re.match(r"^\|\s*`reason`\s*\|", l)]
    assert len(rows) == 1, "README.md should have one `reason` row in its log field table"
    cells = rows[0].split("|")[2:]
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", "|".join(cells)))


def test_readme_documents_every_reason():
    table, readme = set(_c_reasons()), _readme_reasons()
    missing = sorted(table - readme)
    assert not missing, "reasons the code can log that README.md's `reason` row lacks: %s" % missing
    extra = sorted(readme - table)
    assert not extra, "reasons README.md's `reason` row names that src/reason.c lacks: %s" % extra


def test_every_reason_has_a_test():
    found = _c_reasons()
    # the scan must see the reasons everybody knows, or it is broken
    for known in ("unknown_ca", "client_alert", "idle_timeout", "backend_reset",
                  "drain_timeout", "handshake_timeout", "not_authorized"):
        assert known in found, "the source scan missed %r; found %s" % (known, sorted(found))
    untested = sorted(r for r in found if r not in COVERED and r not in NOT_PRODUCIBLE)
    assert not untested, ("reasons with no test in %s (add one, or put them in NOT_PRODUCIBLE "
                          "with why): %s" % (Path(__file__).name,
                                             ["%s (%s)" % (r, ", ".join(sorted(found[r])))
                                              for r in untested]))
    stale = sorted(r for r in list(COVERED) + list(NOT_PRODUCIBLE) if r not in found)
    assert not stale, "reasons tested or allowed here that the sources no longer log: %s" % stale
    both = sorted(set(COVERED) & set(NOT_PRODUCIBLE))
    assert not both, "reasons both tested and listed as not producible: %s" % both


# --------------------------------------------------------------------------
# a TLS client that writes its own records after a real handshake
# --------------------------------------------------------------------------

def _p_hash(secret, seed, n, h):
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, h).digest()
        out += hmac.new(secret, a + seed, h).digest()
    return out[:n]


def _expand_label(secret, label, n, h):
    full = b"tls13 " + label
    info = n.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(h(), n, info).derive(secret)


class Forger(sdlib.RawTLS):
    """Handshakes with Python's ssl (SSLObject), then seals records of its
    own with the client's write keys from the key log: TLS 1.3 (any suite)
    or TLS 1.2 with AES-128-GCM. Reading still goes through the SSLObject,
    whose keys these records do not touch."""

    def __init__(self, ctx, port, keylog):
        self.keylog = Path(keylog)
        ctx.keylog_filename = str(self.keylog)
        self.rx = b""
        super().__init__(ctx, port)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Forger: timed out waiting for data")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.tcp_eof = True
            self.inc.write_eof()
            return
        if len(self.rx) < 8192:  # the ServerHello, for TLS 1.2's server random
            self.rx += data
        self.inc.write(data)

    def handshake(self):
        super().handshake()
        self.version, self.cipher = self.obj.version(), self.obj.cipher()[0]
        lines = [l.split() for l in self.keylog.read_text().splitlines()
                 if l and not l.startswith("#")]
        if self.version == "TLSv1.3":
            self.h = hashes.SHA384 if self.cipher.endswith("SHA384") else hashes.SHA256
            self.secret = bytes.fromhex(
                [l for l in lines if l[0] == "CLIENT_TRAFFIC_SECRET_0"][-1][2])
            self._keys13()
        else:
            cr, ms = [l for l in lines if l[0] == "CLIENT_RANDOM"][-1][1:3]
            assert self.rx[0] == 22 and self.rx[5] == 2, "no ServerHello first: %r" % self.rx[:8]
            assert "AES128-GCM" in self.cipher, self.cipher
            sr = self.rx[11:43]
            kb = _p_hash(bytes.fromhex(ms), b"key expansion" + sr + bytes.fromhex(cr), 40,
                         hashlib.sha256)
            # each side's Finished went out with sequence number 0
            self.aead, self.salt, self.seq = AESGCM(kb[0:16]), kb[32:36], 1
            self.raead, self.rsalt, self.rseq = AESGCM(kb[16:32]), kb[36:40], 1
        return self

    def open12(self, timeout=3.0):
        """TLS 1.2: reads and decrypts steeldoor's next record itself (the
        SSLObject would take a no_renegotiation warning as fatal, as a
        client that asked to renegotiate must). Returns (type, plaintext)."""
        assert not self.inc.pending, "the SSLObject holds unread bytes"
        hdr = sdlib.recv_exact(self.sock, 5, timeout)
        body = sdlib.recv_exact(self.sock, int.from_bytes(hdr[3:5], "big"), timeout)
        seq, self.rseq = self.rseq, self.rseq + 1
        aad = seq.to_bytes(8, "big") + hdr[0:3] + (len(body) - 24).to_bytes(2, "big")
        return hdr[0], self.raead.decrypt(self.rsalt + body[:8], body[8:], aad)

    def close_notify(self):
        """A close_notify with the forged keys (the SSLObject's are stale
        once records of its own were sent), then the TCP FIN."""
        self.send_record(21, b"\x01\x00")
        self.sock.shutdown(socket.SHUT_WR)

    def _keys13(self):
        n = 16 if "AES_128" in self.cipher else 32
        key = _expand_label(self.secret, b"key", n, self.h)
        self.iv = _expand_label(self.secret, b"iv", 12, self.h)
        self.aead = ChaCha20Poly1305(key) if "CHACHA" in self.cipher else AESGCM(key)
        self.seq = 0

    def seal(self, ctype, payload):
        seq, self.seq = self.seq, self.seq + 1
        if self.version == "TLSv1.3":
            inner = payload + bytes([ctype])
            hdr = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
            nonce = bytes(a ^ b for a, b in zip(self.iv, seq.to_bytes(12, "big")))
            return hdr + self.aead.encrypt(nonce, inner, hdr)
        explicit = seq.to_bytes(8, "big")
        aad = explicit + bytes([ctype]) + b"\x03\x03" + len(payload).to_bytes(2, "big")
        body = explicit + self.aead.encrypt(self.salt + explicit, payload, aad)
        return bytes([ctype]) + b"\x03\x03" + len(body).to_bytes(2, "big") + body

    def send_record(self, ctype, payload):
        self.sock.sendall(self.seal(ctype, payload))

    def key_update(self):
        """A TLS 1.3 KeyUpdate (no update requested), then the next keys."""
        self.send_record(22, b"\x18\x00\x00\x01\x00")
        self.secret = _expand_label(self.secret, b"traffic upd", self.h().digest_size, self.h)
        self._keys13()

    def echo_check(self, payload=b"forged-ping\n"):
        self.send_record(23, payload)
        got = self.recv_exact(len(payload))
        assert got == payload, "forged record not echoed: %r" % got

    def wait_closed(self, timeout=3.0):
        """Reads (and drops) until steeldoor closes; bounded by timeout."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True
        return False


# --------------------------------------------------------------------------
# one steeldoor, one listener per setting
# --------------------------------------------------------------------------

def _cert_with(f, name, key_usage=None, critical_ext=False, uris=()):
    """A client certificate from the dev CA, with a chosen keyUsage or an
    unknown critical extension (CertFactory cannot make those)."""
    key = ec.generate_private_key(ec.SECP256R1())
    ku = dict(digital_signature=True, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
              encipher_only=False, decipher_only=False)
    ku.update(key_usage or {})
    b = (x509.CertificateBuilder().subject_name(f.name(cn=name)).issuer_name(f.root_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(_now() - datetime.timedelta(hours=1))
         .not_valid_after(_now() + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(**ku), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if uris:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    if critical_ext:
        b = b.add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"),
                                                       b"\x05\x00"), critical=True)
    cert = b.sign(f.root_key, hashes.SHA256())
    _write_cert(f.dir / (name + ".crt"), cert)
    _write_key(f.dir / (name + ".key"), key)
    return (f.dir / (name + ".crt"), f.dir / (name + ".key"))


def _rst_handler(conn, backend):
    conn.recv(100)
    rst_close(conn)


@pytest.fixture(scope="module")
def gw(sd_bin, pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("reasons")
    f = CertFactory(pki, d / "certs")
    ns = SimpleNamespace()
    ns.pki, ns.f, ns.dir = pki, f, d
    # certificates and CRLs
    ns.revoked = f.client("revoked", cn="revoked")
    ns.inter = f.ca("inter")
    ns.chained = f.client("chained", cn="chained", issuer=ns.inter, chain=[ns.inter])
    ns.nul = f.client("nul", cn="nul", raw_san=der_san(uris=[b"spiffe://example.org/a\x00b"]))
    ns.subca = f.ca("subca")  # a CA certificate presented as a client's
    ns.no_sign = _cert_with(f, "no-sign", key_usage={"digital_signature": False,
                                                     "key_encipherment": True})
    ns.critical = _cert_with(f, "critical", critical_ext=True)
    # an identity too large for a PROXY v2 header in one 16 KiB buffer
    ns.big = _cert_with(f, "big", uris=["https://example.org/%02d/%s" % (i, "x" * 900)
                                        for i in range(24)])
    crl_revoking = f.crl("revoking.crl", revoked=[ns.revoked.cert])
    crl_stale = f.crl("stale.crl", last_update=_now() - datetime.timedelta(days=3),
                      next_update=_now() - datetime.timedelta(days=1))
    crl_future = f.crl("future.crl", last_update=_now() + datetime.timedelta(days=1),
                       next_update=_now() + datetime.timedelta(days=8))
    # backends
    ns.echo = sdlib.Backend()
    ns.resetting = sdlib.Backend(_rst_handler)
    dead = "127.0.0.1:%d" % sdlib.closed_port()
    names = ["open", "other", "revoking", "stalecrl", "futurecrl", "crlroot", "depth0",
             "quick", "deadend", "resetting", "pp"]
    ns.port = {n: free_port() for n in names}
    L = lambda n, **kw: dict({"name": n, "port": ns.port[n], "target": ns.echo.target}, **kw)
    listeners = [
        L("open"),
        L("other", **{"allow-all": False, "allow-uri": "spiffe://example.org/nobody"}),
        L("revoking", crl='"%s"' % crl_revoking),
        L("stalecrl", crl='"%s"' % crl_stale),
        L("futurecrl", crl='"%s"' % crl_future),
        L("crlroot", crl='"%s"' % crl_revoking),
        L("depth0", **{"verify-depth": 0}),
        L("quick", **{"handshake-timeout": "300ms", "idle-timeout": "400ms"}),
        L("deadend", target=dead),
        L("resetting", target=ns.resetting.target),
        L("pp", **{"proxy-protocol": "true"}),
    ]
    cfg = d / "steeldoor.yaml"
    cfg.write_text(yaml_config(pki, listeners, workers=1, drain="2s"))
    ns.sd = sdlib.Steeldoor(sd_bin, ["serve", "--config", cfg], d, name="gw")
    try:
        ns.sd.start(wait_ports=list(ns.port.values()))
    except BaseException:
        ns.sd.kill()
        ns.sd.close_files()
        ns.echo.close()
        ns.resetting.close()
        raise
    ns.ctx = lambda cert="good", **kw: sdlib.client_ctx(
        pki.ca, *((pki.client_cert, pki.client_key) if cert == "good" else (cert or (None, None))),
        **kw)
    ns.n = 0
    yield ns
    problems = []
    try:
        ns.sd.stop(timeout=10)
    except AssertionError as e:
        problems.append(str(e))
    finally:
        ns.sd.kill()
        ns.sd.close_files()
        ns.echo.close()
        ns.resetting.close()
    if ns.sd.sanitizer_findings():
        problems.append("sanitizer report in %s:\n%s" % (ns.sd.stderr_path,
                                                         ns.sd.stderr_text()[-6000:]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _mark(sd):
    """How many log lines sd has written so far."""
    return len(sd.raw_lines())


def _conn(sd, peer, since, listener, timeout=5.0):
    """The conn line of listener for a client at peer, written after line
    `since`. (One steeldoor serves many connections here: an earlier client,
    even steeldoor's start-up probe, may have had the same local port for
    another listener, and its line may come late.)"""
    deadline = time.monotonic() + timeout
    while True:
        for e in _logs_since(sd, since):
            if e.get("event") == "conn" and e.get("peer") == peer and \
                    e.get("listener") == listener:
                return e
        if time.monotonic() > deadline:
            raise AssertionError("no conn line for %s within %.1fs; log tail:\n%s"
                                 % (peer, timeout, "\n".join(sd.raw_lines()[-20:])))
        time.sleep(0.05)


def _logs_since(sd, since):
    out = []
    for line in sd.raw_lines()[since:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _probe_refused(sd, ctx, port, listener, server_hostname="localhost"):
    """A TLS client steeldoor must refuse: no byte of application data, cut
    off, and a conn line naming no rule. Returns that line."""
    since = _mark(sd)
    r = sdlib.probe_refused_tls(ctx, port, server_hostname=server_hostname)
    assert r["data"] == b"", "refused client received application bytes: %r" % r["data"][:200]
    assert r["error"] is not None and not str(r["error"]).startswith("TIMEOUT"), \
        "client was not cut off: %r" % r
    e = _conn(sd, "127.0.0.1:%d" % r["local_port"], since, listener)
    assert not e.get("rule"), "a refused connection names a rule: %s" % e
    return e


def _refused(gw, listener, cert, reason, detail=None, **kw):
    e = _probe_refused(gw.sd, gw.ctx(cert, **kw), gw.port[listener], listener)
    return check(e, "refused", reason, detail)


def _raw(gw, listener, data, wait=2.0):
    """Sends bytes on a plain TCP connection, reads until closed; the conn line."""
    since = _mark(gw.sd)
    s = socket.create_connection(("127.0.0.1", gw.port[listener]), timeout=wait)
    peer = peer_of(s)
    try:
        s.sendall(data)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and s.recv(4096):
            pass
    except OSError:
        pass
    finally:
        s.close()
    return _conn(gw.sd, peer, since, listener)


def _forger(gw, version, listener="open"):
    gw.n += 1
    ctx = gw.ctx(min_version=version, max_version=version)
    if version == V12:
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    since = _mark(gw.sd)
    f = Forger(ctx, gw.port[listener], gw.dir / ("keylog-%d.txt" % gw.n)).handshake()
    f.since, f.listener = since, listener
    f.echo_check()
    return f


def _forged(gw, version, act):
    """Handshake, one echoed forged record, then act(f); the conn line."""
    f = _forger(gw, version)
    try:
        act(f)
        assert f.wait_closed(), "steeldoor kept the connection open"
    finally:
        f.close()
    return _conn(gw.sd, f.peer, f.since, f.listener)


# --------------------------------------------------------------------------
# refused at the handshake: the certificate
# --------------------------------------------------------------------------

@reason_test("not_authorized")
def test_not_authorized(gw):
    _refused(gw, "other", "good", "not_authorized", "no allow rule matched")


@reason_test("malformed_identity")
def test_malformed_identity(gw):
    _refused(gw, "open", gw.nul.pair, "malformed_identity")


@reason_test("unknown_ca")
def test_unknown_ca(gw):
    _refused(gw, "open", gw.pki.othca_client, "unknown_ca")


@reason_test("certificate_expired")
def test_certificate_expired(gw):
    _refused(gw, "open", gw.pki.expired, "certificate_expired", "expired")


@reason_test("certificate_not_yet_valid")
def test_certificate_not_yet_valid(gw):
    _refused(gw, "open", gw.pki.notyet, "certificate_not_yet_valid", "not yet valid")


@reason_test("wrong_eku")
def test_wrong_eku(gw):
    _refused(gw, "open", gw.pki.serverauth, "wrong_eku")


@reason_test("wrong_key_usage")
def test_wrong_key_usage(gw):
    """clientAuth EKU, but a keyUsage that forbids signing the handshake:
    not to be blamed on the EKU."""
    _refused(gw, "open", gw.no_sign, "wrong_key_usage", "digitalSignature")


@reason_test("ca_certificate")
def test_ca_certificate(gw):
    _refused(gw, "open", (gw.subca.crt, gw.f.dir / "subca.key"), "ca_certificate")


@reason_test("bad_certificate")
def test_bad_certificate(gw):
    """An unknown critical extension: no more specific reason fits."""
    _refused(gw, "open", gw.critical, "bad_certificate", "critical extension")


@reason_test("certificate_revoked")
def test_certificate_revoked(gw):
    _refused(gw, "revoking", gw.revoked.pair, "certificate_revoked", "revoked")
    # positive control: an unrevoked client of the same CA on that listener
    with tls_connect(gw.ctx(), gw.port["revoking"]) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"


@reason_test("chain_too_long")
def test_chain_too_long(gw):
    _refused(gw, "depth0", gw.chained.pair, "chain_too_long")


@reason_test("crl_expired")
def test_crl_expired(gw):
    _refused(gw, "stalecrl", "good", "crl_expired")


@reason_test("crl_not_yet_valid")
def test_crl_not_yet_valid(gw):
    _refused(gw, "futurecrl", "good", "crl_not_yet_valid")


@reason_test("crl_missing")
def test_crl_missing(gw):
    """Only the root's CRL: the intermediate level has none."""
    _refused(gw, "crlroot", gw.chained.pair, "crl_missing")


@reason_test("crl_invalid")
def test_crl_invalid(sd_bin, steeldoor, echo_backend, pki, certs, tmp_path):
    """Two CAs with one name and one key identifier in the bundle (a botched
    key rollover): the CRL is the new CA's, the client the old one's.
    OpenSSL finds the CRL by the issuer's name and key identifier, and its
    signature does not verify with the old key. (With different key
    identifiers the CRL is not the old CA's at all: crl_missing.)"""
    ski = x509.SubjectKeyIdentifier(b"\x5a" * 20)

    def ca(fname):
        key = ec.generate_private_key(ec.SECP256R1())
        subj = certs.name(cn="steeldoor-test rollover CA")
        cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(_now() - datetime.timedelta(days=1))
                .not_valid_after(_now() + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        _write_cert(tmp_path / (fname + ".crt"), cert)
        return SimpleNamespace(cert=cert, key=key, crt=tmp_path / (fname + ".crt"))

    old, new = ca("old"), ca("new")
    bundle = tmp_path / "rollover.crt"
    bundle.write_bytes(old.crt.read_bytes() + new.crt.read_bytes())
    crl = certs.crl("new.crl", issuer=new)
    client = certs.client("old-client", cn="old-client", issuer=old)
    sd = steeldoor(target=echo_backend.target, cacert=bundle, extra=["--crl", crl])
    ctx = sdlib.client_ctx(pki.ca, *client.pair)
    e = _probe_refused(sd, ctx, sd.port, "127.0.0.1:%d" % sd.port)
    check(e, "refused", "crl_invalid", "CRL signature")


@reason_test("no_client_certificate")
def test_no_client_certificate(gw):
    for v in (V12, V13):
        _refused(gw, "open", None, "no_client_certificate", min_version=v, max_version=v)


# --------------------------------------------------------------------------
# refused at the handshake: the protocol
# --------------------------------------------------------------------------

@reason_test("protocol_version")
def test_protocol_version(gw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = gw.ctx(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    e = _probe_refused(gw.sd, ctx, gw.port["open"], "open")
    check(e, "refused", "protocol_version", "unsupported protocol")


@reason_test("not_tls")
def test_not_tls(gw):
    for junk in (b"hello, this is not TLS\r\n", b"\x00" * 64, b"\x16\x04\x00\x00\x05hello"):
        check((_raw(gw, "open", junk)), "refused", "not_tls")


@reason_test("plaintext_http")
def test_plaintext_http(gw):
    for req in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"CONNECT x:443 HTTP/1.1\r\n\r\n"):
        check((_raw(gw, "open", req)), "refused", "plaintext_http")


@reason_test("tls_protocol_error")
def test_tls_protocol_error_in_handshake(gw):
    """TLS records, but malformed: a length beyond any record, an alert
    before the ClientHello."""
    e = (_raw(gw, "open", b"\x16\x03\x01\xff\xff" + b"a" * 100))
    check(e, "refused", "tls_protocol_error", "packet length too long")
    e = (_raw(gw, "open", b"\x15\x03\x01\x00\x02\x02\x28"))
    check(e, "refused", "tls_protocol_error", "unexpected message")


@reason_test("no_shared_cipher")
def test_no_shared_cipher(gw):
    ctx = gw.ctx(min_version=V12, max_version=V12)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    e = _probe_refused(gw.sd, ctx, gw.port["open"], "open")
    check(e, "refused", "no_shared_cipher")


@reason_test("handshake_failed")
def test_handshake_failed(gw):
    """No key exchange group in common (TLS 1.3, P-521 only): a negotiation
    failure, in OpenSSL's words."""
    ctx = gw.ctx(min_version=V13, max_version=V13)
    ctx.set_ecdh_curve("secp521r1")
    e = _probe_refused(gw.sd, ctx, gw.port["open"], "open")
    check(e, "refused", "handshake_failed", "key share")


@reason_test("client_rejected_server_cert")
def test_client_rejected_server_cert(gw):
    """The client does not trust steeldoor's certificate, or it names
    another host, and says so: logged as the client refusing steeldoor,
    not as steeldoor refusing the client."""
    for v in (V12, V13):
        ctx = sdlib.client_ctx(gw.pki.other_ca, gw.pki.client_cert, gw.pki.client_key,
                               min_version=v, max_version=v)
        e = _probe_refused(gw.sd, ctx, gw.port["open"], "open")
        check(e, "refused", "client_rejected_server_cert", "unknown CA")
        # the right CA, the wrong name
        ctx = sdlib.client_ctx(gw.pki.ca, gw.pki.client_cert, gw.pki.client_key,
                               min_version=v, max_version=v)
        e = _probe_refused(gw.sd, ctx, gw.port["open"], "open",
                           server_hostname="not-this-server.example")
        assert e.get("reason") == "client_rejected_server_cert", e


@reason_test("handshake_aborted")
def test_handshake_aborted(gw):
    """Half a ClientHello, then the client closes."""
    since = _mark(gw.sd)
    s = socket.create_connection(("127.0.0.1", gw.port["open"]), timeout=2)
    peer = peer_of(s)
    s.sendall(b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03")
    time.sleep(0.1)
    s.close()
    check(_conn(gw.sd, peer, since, "open"), "refused", "handshake_aborted")


@reason_test("tcp_check")
def test_tcp_check(gw):
    """Connect and close (or reset) without a byte, as a load balancer's TCP
    health check does: logged, but as info, not as a warning."""
    for rst in (False, True):
        since = _mark(gw.sd)
        s = socket.create_connection(("127.0.0.1", gw.port["open"]), timeout=2)
        peer = peer_of(s)
        if rst:
            sdlib.rst_close(s)
        else:
            s.close()
        e = _conn(gw.sd, peer, since, "open")
        check(e, "refused", "tcp_check")
        assert e["level"] == "info", e


@reason_test("handshake_timeout")
def test_handshake_timeout(gw):
    since = _mark(gw.sd)
    s = socket.create_connection(("127.0.0.1", gw.port["quick"]), timeout=3)
    peer = peer_of(s)
    try:
        t = time.monotonic()
        s.settimeout(3)
        try:
            assert s.recv(100) == b""
        except OSError:
            pass
        assert time.monotonic() - t < 2.5, "not closed at the 300 ms handshake timeout"
    finally:
        s.close()
    check(_conn(gw.sd, peer, since, "quick"), "refused", "handshake_timeout")


# --------------------------------------------------------------------------
# after the handshake: what the client sends
# --------------------------------------------------------------------------

@pytest.mark.parametrize("version", [V12, V13], ids=["tls12", "tls13"])
@reason_test("client_alert")
def test_client_alert(gw, version):
    e = _forged(gw, version, lambda f: f.send_record(21, b"\x02\x28"))
    check(e, "error", "client_alert", "handshake failure")
    e = _forged(gw, version, lambda f: f.send_record(21, b"\x02\x30"))
    check(e, "error", "client_alert", "unknown CA")
    e = _forged(gw, version, lambda f: f.send_record(21, b"\x02\xc8"))
    check(e, "error", "client_alert", "unknown description")
    # an unsolicited no_renegotiation warning: OpenSSL ends the connection
    e = _forged(gw, version, lambda f: f.send_record(21, b"\x01\x64"))
    check(e, "error", "client_alert", "no renegotiation")


def test_alert_level_is_ignored_in_tls13(gw):
    """TLS 1.3 ignores an alert's level (RFC 8446 6): level 3 with
    handshake_failure is that alert, not a malformed one."""
    e = _forged(gw, V13, lambda f: f.send_record(21, b"\x03\x28"))
    check(e, "error", "client_alert", "handshake failure")


def flip_last_bit(record):
    """The record with its tag's last bit flipped: always a different tag
    (overwriting the last byte with a constant left it intact one time in
    256, and the forged record then went through)."""
    return record[:-1] + bytes([record[-1] ^ 0x01])


FORGED_PROTOCOL_ERRORS = {
    # TLS 1.2 reads an alert's level: 3 is none
    "alert_level_3": (V12, lambda f: f.send_record(21, b"\x03\x28"), "unknown alert type"),
    "alert_3_bytes": (V13, lambda f: f.send_record(21, b"\x02\x28\x00"), "invalid alert"),
    "bad_mac": (V12, lambda f: f.sock.sendall(flip_last_bit(f.seal(23, b"hello"))),
                "bad record mac"),
    "bad_mac_13": (V13, lambda f: f.sock.sendall(flip_last_bit(f.seal(23, b"hello"))),
                   "bad record mac"),
    "record_overflow": (V13, lambda f: f.send_record(23, b"x" * 16385), "data length too long"),
    "unknown_record_type": (V12, lambda f: f.send_record(0x30, b"abc"), "unexpected record"),
    "ccs_after_handshake": (V12, lambda f: f.send_record(20, b"\x01"), "ccs"),
    "record_version": (V13, lambda f: f.sock.sendall(b"\x17\x03\x01" + f.seal(23, b"hi")[3:]),
                       "wrong version number"),
    "unknown_handshake_message": (V12, lambda f: f.send_record(22, b"\x63\x00\x00\x00"),
                                  "unexpected message"),
    # TLS 1.3 has no renegotiation: a ClientHello there is out of place
    "client_hello_13": (V13, lambda f: f.send_record(22, b"\x01\x00\x00\x04\x03\x03\x00\x00"),
                        "unexpected message"),
    "bad_key_update": (V13, lambda f: f.send_record(22, b"\x18\x00\x00\x01\x02"),
                       "bad key update"),
}


@pytest.mark.parametrize("case", sorted(FORGED_PROTOCOL_ERRORS))
@reason_test("tls_protocol_error")
def test_tls_protocol_error(gw, case):
    version, act, detail = FORGED_PROTOCOL_ERRORS[case]
    check(_forged(gw, version, act), "error", "tls_protocol_error", detail)


@pytest.mark.parametrize("version", [V12, V13], ids=["tls12", "tls13"])
@reason_test("tls_flood")
def test_tls_flood(gw, version):
    # OpenSSL ends it at the 5th warning alert (user_canceled) in a row ...
    e = _forged(gw, version, lambda f: [f.send_record(21, b"\x01\x5a") for _ in range(6)])
    check(e, "error", "tls_flood", "too many warn alerts")
    # ... and past 32 empty records in a row
    e = _forged(gw, version, lambda f: [f.send_record(23, b"") for _ in range(40)])
    check(e, "error", "tls_flood", "record too small")


def test_key_update_flood(gw):
    """40 KeyUpdates in a row. OpenSSL 3.0 accepts them all and the
    connection goes on (then nothing may be logged but ok); an OpenSSL that
    stops such a flood (SSL_R_TOO_MANY_KEY_UPDATES) must be logged as
    tls_flood, never as anything else."""
    f = _forger(gw, V13)
    try:
        for _ in range(40):
            f.key_update()
        try:
            f.echo_check(b"after-40-key-updates\n")
            went_on = True
            f.close_notify()
        except (EOFError, OSError, ssl.SSLError):
            went_on = False
        f.wait_closed()
    finally:
        f.close()
    e = _conn(gw.sd, f.peer, f.since, "open")
    if went_on:
        assert e.get("result") == "ok" and e.get("reason") is None, e
    else:
        assert e.get("reason") == "tls_flood" and "key update" in (e.get("detail") or ""), e


@reason_test("tls_error")
def test_tls_error(gw):
    """A TLS 1.2 record shorter than its explicit nonce and tag: OpenSSL
    3.0 raises only an internal error for it, so steeldoor cannot name the
    client's fault and logs the generic reason with OpenSSL's words."""
    e = _forged(gw, V12, lambda f: f.sock.sendall(b"\x17\x03\x03\x00\x03abc"))
    check(e, "error", "tls_error", "internal error")


# --------------------------------------------------------------------------
# renegotiation: refused, and said so only when it was one
# --------------------------------------------------------------------------

def _sclient_renegotiate(gw, port):
    """openssl s_client, TLS 1.2: handshake, then "R" (renegotiate). Returns
    its output and the client's local port."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
           "-CAfile", str(gw.pki.ca), "-cert", str(gw.pki.client_cert),
           "-key", str(gw.pki.client_key), "-tls1_2"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 5
        local = None
        while local is None and time.monotonic() < deadline and p.poll() is None:
            local = _sclient_local_port(p.pid, port)
            time.sleep(0.05)
        time.sleep(0.5)  # the handshake is done long before
        p.stdin.write(b"R\n")
        p.stdin.flush()
        out = p.communicate(timeout=5)[0].decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    return out, local


def _sclient_local_port(pid, port):
    """The local port of pid's TCP connection to 127.0.0.1:port (/proc)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
        with open("/proc/net/tcp") as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                lport = int(parts[1].split(":")[1], 16)
                rport = int(parts[2].split(":")[1], 16)
                if parts[9] in inodes and rport == port:
                    return lport
    except OSError:
        return None
    return None


def _renegotiation_noticed(e):
    assert e.get("reason") != "client_alert", (
        "the client's alert after a refused renegotiation was logged as a plain alert: "
        "is sd_tls_info_cb registered (SSL_CTX_set_info_callback in sd_tls_server_new)? %s" % e)


@reason_test("renegotiation_refused")
def test_renegotiation_refused_openssl_client(gw):
    """A real renegotiation: OpenSSL's client asks, steeldoor refuses (a
    no_renegotiation warning), the client gives up with a fatal alert."""
    since = _mark(gw.sd)
    out, local = _sclient_renegotiate(gw, gw.port["open"])
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out[-2000:]
    assert local is not None, "could not find s_client's port"
    e = _conn(gw.sd, "127.0.0.1:%d" % local, since, "open")
    _renegotiation_noticed(e)
    check(e, "error", "renegotiation_refused", "handshake failure")


@reason_test("renegotiation_refused")
def test_renegotiation_refused_forged(gw):
    """A TLS 1.2 ClientHello after the handshake, then a fatal alert."""
    def act(f):
        f.send_record(22, b"\x01\x00\x00\x04\x03\x03\x00\x00")
        time.sleep(0.2)  # steeldoor's no_renegotiation warning comes back
        f.send_record(21, b"\x02\x28")
    e = _forged(gw, V12, act)
    _renegotiation_noticed(e)
    check(e, "error", "renegotiation_refused", "handshake failure")


def test_refused_renegotiation_then_going_on_is_ok(gw):
    """The refusal does not end the connection: a client that takes the
    no_renegotiation warning and goes on is served, and closes as ok."""
    gw.n += 1
    ctx = gw.ctx(min_version=V12, max_version=V12)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    since = _mark(gw.sd)
    f = Forger(ctx, gw.port["open"], gw.dir / ("keylog-%d.txt" % gw.n)).handshake()
    f.since = since
    try:
        f.send_record(23, b"before\n")
        assert f.open12() == (23, b"before\n")
        f.send_record(22, b"\x01\x00\x00\x04\x03\x03\x00\x00")
        assert f.open12() == (21, b"\x01\x64"), "no no_renegotiation warning"
        f.send_record(23, b"still-here\n")
        assert f.open12() == (23, b"still-here\n")
        f.close_notify()
        f.wait_closed()
    finally:
        f.close()
    e = _conn(gw.sd, f.peer, f.since, "open")
    assert e.get("result") == "ok" and e.get("reason") is None, e


def test_fatal_alert_is_not_renegotiation(gw):
    """The bug this file began with: every fatal error after the handshake
    was logged as renegotiation_refused."""
    for v in (V12, V13):
        e = _forged(gw, v, lambda f: f.send_record(21, b"\x02\x28"))
        assert e.get("reason") != "renegotiation_refused", e


# --------------------------------------------------------------------------
# after the handshake: the connection's course
# --------------------------------------------------------------------------

def _until_closed(s, timeout=3.0):
    """Reads a socket until steeldoor closes it, for at most timeout."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            if not s.recv(4096):
                return
    except (OSError, ssl.SSLError):
        return


@reason_test("client_reset")
def test_client_reset(gw):
    since = _mark(gw.sd)
    s = tls_connect(gw.ctx(), gw.port["open"])
    peer = peer_of(s)
    assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    rst_close(s)
    check(_conn(gw.sd, peer, since, "open"), "error", "client_reset")


@reason_test("idle_timeout")
def test_idle_timeout(gw):
    since = _mark(gw.sd)
    with tls_connect(gw.ctx(), gw.port["quick"]) as s:
        peer = peer_of(s)
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
        _until_closed(s, 3)
    check(_conn(gw.sd, peer, since, "quick"), "error", "idle_timeout")


@reason_test("backend_connect_failed")
def test_backend_connect_failed(gw):
    since = _mark(gw.sd)
    with tls_connect(gw.ctx(), gw.port["deadend"]) as s:
        peer = peer_of(s)
        _until_closed(s)
    check(_conn(gw.sd, peer, since, "deadend"), "error", "backend_connect_failed", "refused")


@reason_test("backend_reset")
def test_backend_reset(gw):
    since = _mark(gw.sd)
    with tls_connect(gw.ctx(), gw.port["resetting"]) as s:
        peer = peer_of(s)
        s.sendall(b"hello\n")
        _until_closed(s, 3)
    check(_conn(gw.sd, peer, since, "resetting"), "error", "backend_reset", "reset")


@reason_test("proxy_header_failed")
def test_proxy_header_failed(gw):
    """24 URI SANs of 900 bytes: the identity does not fit in the PROXY v2
    header steeldoor sends ahead of the client's bytes."""
    since = _mark(gw.sd)
    with tls_connect(gw.ctx(gw.big), gw.port["pp"]) as s:
        peer = peer_of(s)
        _until_closed(s, 3)
    check(_conn(gw.sd, peer, since, "pp"), "error", "proxy_header_failed", "PROXY v2")


@reason_test("backend_connect_timeout")
def test_backend_connect_timeout(steeldoor, good_ctx):
    """A backend whose accept queue is full: its SYNs go unanswered."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
            time.sleep(0.05)
        if sdlib.tcp_connect_result("127.0.0.1", port, timeout=0.5) != "timeout":
            pytest.skip("could not make a backend connect hang on this kernel")
        sd = steeldoor(target="127.0.0.1:%d" % port, extra=["--connect-timeout", "300ms"])
        since = _mark(sd)
        with tls_connect(good_ctx, sd.port) as s:
            peer = peer_of(s)
            _until_closed(s)
        check(_conn(sd, peer, since, "127.0.0.1:%d" % sd.port), "error", "backend_connect_timeout")
    finally:
        for f in fillers:
            f.close()
        lst.close()


@reason_test("drain_timeout")
def test_drain_timeout(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, drain="300ms")
    since = _mark(sd)
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    sd.signal(signal.SIGTERM)
    rc = sd.wait_exit(5)
    sd.stopped = True
    s.close()
    assert rc == 0, "exit code %r" % rc
    check(_conn(sd, peer, since, "127.0.0.1:%d" % sd.port, timeout=1), "error", "drain_timeout")


@reason_test("listener_removed")
def test_listener_removed(steeldoor, echo_backend, good_ctx, make_config, tmp_path):
    pa, pb = free_port(), free_port()
    both = [{"name": "a", "port": pa, "target": echo_backend.target},
            {"name": "b", "port": pb, "target": echo_backend.target}]
    sd = steeldoor(config=make_config(both), wait_ports=[pa, pb])
    cfg = Path(sd.args[-1])
    since = _mark(sd)
    with tls_connect(good_ctx, pb) as s:
        peer = peer_of(s)
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
        cfg.write_text(make_config(both[:1]))
        sd.signal(signal.SIGHUP)
        _until_closed(s, 5)
    check(_conn(sd, peer, since, "b"), "error", "listener_removed")


@reason_test("server_alert")
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_server_alert(pki, sd_bin, tmp_path, version):
    # client mode: a server that requires a client certificate but trusts
    # another CA refuses ours with an alert (TLS 1.2: during the handshake;
    # TLS 1.3: just after ours completed). It is the server's verdict, not a
    # client's: server_alert, with the alert as the detail.
    import test_connect as tc
    other = tmp_path / "other-ca.crt"
    other.write_bytes(_other_ca_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(str(other))
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(0.2)
    stop = []

    def serve():
        while not stop:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = ctx.wrap_socket(c, server_side=True, do_handshake_on_connect=False)
            try:
                t.do_handshake()
            except (ssl.SSLError, OSError):
                # let the alert be read before the close (unread bytes
                # would turn the close into a reset that discards it)
                time.sleep(0.5)
            t.close()

    threading.Thread(target=serve, daemon=True).start()
    port = free_port()
    sd = sdlib.Steeldoor(sd_bin, tc.connect_args(pki, "127.0.0.1:%d" % port,
                                                 "127.0.0.1:%d" % ls.getsockname()[1],
                                                 ["--server-name", "localhost"]),
                         tmp_path, name="connect")
    try:
        sd.start(wait_ports=[("127.0.0.1", port)])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"x")
            assert s.recv(10) == b""
        line = tc.conn_lines(sd)[0]
        # the caller was accepted, then the server refused us: an error
        check(line, "error", "server_alert", "unknown CA")
    finally:
        stop.append(1)
        ls.close()
        if sd.proc is not None and sd.proc.poll() is None:
            sd.stop(timeout=10, expect_rc=None)
        sd.kill()
        sd.close_files()


def _other_ca_pem():
    """A self-signed CA certificate (PEM) that signed nothing of ours."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@reason_test("server_did_not_request_client_cert")
def test_server_did_not_request_client_cert(pki, sd_bin, tmp_path):
    # client mode: a server (Python ssl, CERT_NONE) that never asks for the
    # client certificate; the scenario lives in test_connect.py
    import test_connect as tc
    ls, stop = tc.python_server(pki.server_cert, pki.server_key, ssl.CERT_NONE)
    port = free_port()
    sd = sdlib.Steeldoor(sd_bin, tc.connect_args(pki, "127.0.0.1:%d" % port,
                                                 "127.0.0.1:%d" % ls.getsockname()[1],
                                                 ["--server-name", "localhost"]),
                         tmp_path, name="connect")
    try:
        sd.start(wait_ports=[("127.0.0.1", port)])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"x")
            assert s.recv(10) == b""
        check(tc.conn_lines(sd)[0], "error", "server_did_not_request_client_cert")
    finally:
        stop.append(1)
        ls.close()
        if sd.proc is not None and sd.proc.poll() is None:
            sd.stop(timeout=10, expect_rc=None)
        sd.kill()
        sd.close_files()
