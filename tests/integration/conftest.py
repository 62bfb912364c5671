"""Fixtures for the steeldoor integration suite.

Run with Debian's python:  /usr/bin/python3 -m pytest tests/integration
Binary: $STEELDOOR_BIN or <repo>/build/steeldoor.
"""
import datetime
import os
import resource
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sdlib  # noqa: E402
from sdlib import Steeldoor, Backend, free_port, run  # noqa: E402,F401

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa, ed25519, ed448  # noqa: E402
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "build" / "steeldoor"


def _quiet_handle_error(self, request, client_address):
    """socketserver's default prints a traceback for every client that
    resets its connection; the tests' HTTP backends see that on purpose
    (refused clients, steeldoor closing a backend connection), so those are
    not errors. Anything else is still printed."""
    exc = sys.exc_info()[1]
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return
    _orig_handle_error(self, request, client_address)


import socketserver  # noqa: E402
_orig_handle_error = socketserver.BaseServer.handle_error
socketserver.BaseServer.handle_error = _quiet_handle_error


def pytest_configure(config):
    # 1000-connection tests need many fds; steeldoor inherits this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --------------------------------------------------------------------------
# binary
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sd_bin():
    p = Path(os.environ.get("STEELDOOR_BIN") or DEFAULT_BIN)
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail("steeldoor binary not found or not executable at %s "
                    "(build it with `make` or set STEELDOOR_BIN)" % p, pytrace=False)
    return p


# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------

def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _sig_alg(key):
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _write_cert(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca_cert, ca_key, cn, eku, not_before=None, not_after=None,
              uris=(), dns=(), ips=(), key=None):
    import ipaddress
    key = key or ec.generate_private_key(ec.SECP256R1())
    nb = not_before or (_now() - datetime.timedelta(hours=1))
    na = not_after or (_now() + datetime.timedelta(days=30))
    sans = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                                      data_encipherment=False, key_agreement=False,
                                      key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True))
    if eku is not None:  # None: no extendedKeyUsage extension at all
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                            critical=False)
    except x509.ExtensionNotFound:
        pass
    cert = b.sign(ca_key, _sig_alg(ca_key))
    return cert, key


def _find_ca_key(d, ca_cert):
    want = ca_cert.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    cands = [d / "ca.key"] + sorted(d.glob("*.key")) + sorted(d.rglob("*key*"))
    for p in cands:
        if not p.is_file():
            continue
        try:
            k = serialization.load_pem_private_key(p.read_bytes(), password=None)
        except Exception:
            continue
        if k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo) == want:
            return k
    raise AssertionError("could not find the CA private key in %s (files: %s)"
                         % (d, sorted(x.name for x in d.rglob("*"))))


@pytest.fixture(scope="session")
def pki(sd_bin, tmp_path_factory):
    """Good PKI made with `steeldoor pki`, plus bad certs made with cryptography."""
    d = tmp_path_factory.mktemp("pki")
    steps = [
        ["pki", "init", "--dir", d],
        ["pki", "issue", "--dir", d, "--name", "api", "--server", "--dns", "localhost",
         "--ip", "127.0.0.1"],
        ["pki", "issue", "--dir", d, "--name", "billing", "--client", "--uri",
         "spiffe://example.org/billing"],
    ]
    for s in steps:
        r = run([sd_bin] + s, timeout=30)
        if r.returncode != 0:
            pytest.fail("`steeldoor %s` failed rc=%d\nstdout:%s\nstderr:%s" % (
                " ".join(map(str, s)), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")), pytrace=False)
    for f in ("ca.crt", "api.crt", "api.key", "billing.crt", "billing.key"):
        if not (d / f).is_file():
            pytest.fail("steeldoor pki did not write %s (dir has %s)" % (
                f, sorted(x.name for x in d.iterdir())), pytrace=False)

    ca_cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    ca_key = _find_ca_key(d, ca_cert)
    bad = d / "bad"
    bad.mkdir()
    ns = SimpleNamespace(dir=d, ca=d / "ca.crt", server_cert=d / "api.crt",
                         server_key=d / "api.key", client_cert=d / "billing.crt",
                         client_key=d / "billing.key", bad=bad)

    def leaf(name, **kw):
        cert, key = make_leaf(ca_cert, ca_key, name, **kw)
        _write_cert(bad / (name + ".crt"), cert)
        _write_key(bad / (name + ".key"), key)
        return bad / (name + ".crt"), bad / (name + ".key")

    now = _now()
    # positive control: a client cert made by *this* generator that is valid
    ns.pygood = leaf("pygood", eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
                     uris=["spiffe://example.org/pygood"], dns=["pygood.example.org"])
    ns.expired = leaf("expired", eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
                      not_before=now - datetime.timedelta(days=30),
                      not_after=now - datetime.timedelta(days=1))
    ns.notyet = leaf("notyet", eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
                     not_before=now + datetime.timedelta(days=1),
                     not_after=now + datetime.timedelta(days=30))
    ns.serverauth = leaf("serverauth", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    # no EKU extension: RFC 5280 reads it as "any use"; steeldoor requires clientAuth
    ns.no_eku = leaf("no-eku", eku=None, uris=["spiffe://example.org/no-eku"])
    # server-side certs for startup-error and cipher tests
    ns.expired_server = leaf("expired-server", eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                             dns=["localhost"], ips=["127.0.0.1"],
                             not_before=now - datetime.timedelta(days=30),
                             not_after=now - datetime.timedelta(days=1))
    ns.rsa_server = leaf("rsa-server", eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                         dns=["localhost"], ips=["127.0.0.1"],
                         key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    # another CA and a client from it
    other_cert, other_key = make_ca("steeldoor-test other CA")
    _write_cert(bad / "other-ca.crt", other_cert)
    _write_key(bad / "other-ca.key", other_key)
    c, k = make_leaf(other_cert, other_key, "intruder", eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
                     uris=["spiffe://example.org/billing"])
    _write_cert(bad / "intruder.crt", c)
    _write_key(bad / "intruder.key", k)
    ns.othca_client = (bad / "intruder.crt", bad / "intruder.key")
    ns.other_ca = bad / "other-ca.crt"
    # an impostor CA with the *same* subject name as the good CA
    imp_cert, imp_key = make_ca("x")
    imp_cert = (x509.CertificateBuilder().subject_name(ca_cert.subject).issuer_name(ca_cert.subject)
                .public_key(imp_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(imp_key, hashes.SHA256()))
    c, k = make_leaf(imp_cert, imp_key, "impostor", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    _write_cert(bad / "impostor.crt", c)
    _write_key(bad / "impostor.key", k)
    ns.impostor = (bad / "impostor.crt", bad / "impostor.key")
    # garbage / mismatching keys
    (bad / "garbage.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    ns.garbage_key = bad / "garbage.key"
    ns.ca_cert_obj = ca_cert
    ns.server_key_is_rsa = isinstance(
        serialization.load_pem_private_key((d / "api.key").read_bytes(), None), rsa.RSAPrivateKey)
    return ns


# --------------------------------------------------------------------------
# steeldoor processes
# --------------------------------------------------------------------------

def serve_args(pki, port, target, name=None, allow_all=True, host="127.0.0.1",
               cert=None, key=None, cacert=None, extra=()):
    listen = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    a = ["serve", "--listen", listen, "--target", target,
         "--cert", cert or pki.server_cert, "--key", key or pki.server_key,
         "--cacert", cacert or pki.ca]
    if allow_all:
        a.append("--allow-all")
    if name:
        a += ["--name", name]
    return a + list(extra)


@pytest.fixture
def steeldoor(sd_bin, pki, tmp_path):
    """Factory: steeldoor(target=..., port=None, **kw) -> running Steeldoor.

    kw: name, workers, extra (list), args (full arg list, overrides), wait_ports,
        config (YAML text -> written to tmp and passed with --config)."""
    started = []
    counter = [0]

    def start(target=None, port=None, name=None, workers=1, extra=(), args=None,
              wait_ports=None, config=None, host="127.0.0.1", drain="3s", **kw):
        counter[0] += 1
        if config is not None:
            cfg = tmp_path / ("steeldoor-%d.yaml" % counter[0])
            cfg.write_text(config)
            args = ["serve", "--config", cfg]
            wait_ports = wait_ports or ()
        elif args is None:
            port = port or free_port(host)
            ex = list(extra)
            if workers is not None and "--workers" not in ex:
                ex += ["--workers", str(workers)]
            if drain and "--drain-timeout" not in ex:
                ex += ["--drain-timeout", drain]
            args = serve_args(pki, port, target, name=name, host=host, extra=ex, **kw)
            if wait_ports is None:
                wait_ports = [(host, port)]
        sd = Steeldoor(sd_bin, args, tmp_path, name="sd%d" % counter[0])
        sd.port = port
        started.append(sd)
        sd.start(wait_ports=wait_ports or ())
        return sd

    yield start

    problems = []
    for sd in started:
        if sd.proc is None:
            continue
        if sd.proc.poll() is None and not sd.stopped:
            try:
                sd.stop(timeout=10, expect_rc=None)
                if sd.returncode != 0:
                    problems.append("steeldoor %s exited %r on SIGTERM at teardown"
                                    % (sd.stderr_path.name, sd.returncode))
            except AssertionError as e:
                problems.append(str(e))
        sd.kill()
        sd.close_files()
        f = sd.sanitizer_findings()
        if f:
            problems.append("sanitizer report in %s: %s\n%s" % (
                sd.stderr_path, f, sd.stderr_text()[-6000:]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# backends and clients
# --------------------------------------------------------------------------

@pytest.fixture
def backends():
    """Factory for threaded backends; all closed at teardown."""
    made = []

    def make(handler=None, **kw):
        b = Backend(handler, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def echo_backend(backends):
    return backends()


@pytest.fixture
def client_ctx(pki):
    def make(cert="good", **kw):
        if cert == "good":
            cert = (pki.client_cert, pki.client_key)
        if cert is None:
            return sdlib.client_ctx(pki.ca, **kw)
        return sdlib.client_ctx(pki.ca, cert[0], cert[1], **kw)
    return make


@pytest.fixture
def good_ctx(client_ctx):
    return client_ctx()


def assert_healthy(port, ctx, payload=b"health-check\n", host="127.0.0.1"):
    """A fresh valid client can still pass bytes through the proxy."""
    with sdlib.tls_connect(ctx, port, host=host) as s:
        got = sdlib.echo_roundtrip(s, payload)
    assert got == payload, "proxy not healthy: echo %r != %r" % (got, payload)


@pytest.fixture
def healthy():
    return assert_healthy


def yaml_config(pki, listeners, workers=1, drain="3s", max_conns=None, extra_top=""):
    """Build a steeldoor YAML config. listeners: list of dicts with keys
    name, port, target and optional overrides (cert, key, cacert, allow-all,
    handshake-timeout, ...). Extra raw YAML lines per listener: key 'raw'."""
    lines = []
    if workers is not None:
        lines.append("workers: %d" % workers)
    if drain:
        lines.append("drain-timeout: %s" % drain)
    if max_conns is not None:
        lines.append("max-conns: %d" % max_conns)
    if extra_top:
        lines.append(extra_top.rstrip("\n"))
    lines.append("listeners:")
    for l in listeners:
        l = dict(l)
        lines.append("  - name: %s" % l.pop("name"))
        lines.append('    listen: "%s"' % l.pop("listen", "127.0.0.1:%d" % l.pop("port", 0)))
        lines.append('    target: "%s"' % l.pop("target"))
        lines.append('    cert: "%s"' % l.pop("cert", pki.server_cert))
        lines.append('    key: "%s"' % l.pop("key", pki.server_key))
        lines.append('    cacert: "%s"' % l.pop("cacert", pki.ca))
        if l.pop("allow-all", True):
            lines.append("    allow-all: true")
        raw = l.pop("raw", "")
        for k, v in l.items():
            lines.append("    %s: %s" % (k, v))
        if raw:
            lines.append(raw.rstrip("\n"))
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_config(pki):
    def mk(listeners, **kw):
        return yaml_config(pki, listeners, **kw)
    return mk


# --------------------------------------------------------------------------
# identity helpers (allow rules, chains, CRLs, PROXY protocol) - additive
# --------------------------------------------------------------------------

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der_san(uris=(), dns=()):
    """Raw DER of a GeneralNames SEQUENCE; values are bytes, written verbatim
    (lets tests put bytes in a SAN that python-cryptography would refuse)."""
    body = b""
    for u in uris:
        u = u if isinstance(u, bytes) else u.encode("latin-1")
        body += b"\x86" + der_len(len(u)) + u
    for d in dns:
        d = d if isinstance(d, bytes) else d.encode("latin-1")
        body += b"\x82" + der_len(len(d)) + d
    return b"\x30" + der_len(len(body)) + body


class CertFactory:
    """Issues certificates and CRLs with python-cryptography into a directory.
    issuer=None means the good dev CA of the `pki` fixture (loaded from ca.key)."""

    def __init__(self, pki, outdir):
        from cryptography.x509.oid import ExtensionOID  # noqa: F401
        self.pki = pki
        self.dir = Path(outdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root_cert = pki.ca_cert_obj
        self.root_key = _find_ca_key(pki.dir, pki.ca_cert_obj)
        self.root = SimpleNamespace(cert=self.root_cert, key=self.root_key, crt=pki.ca, name="ca")

    @staticmethod
    def name(cn=None, ou=None, o=None, c=None):
        attrs = []
        if c is not None:
            attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, c))
        if o is not None:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
        for u in ([ou] if isinstance(ou, str) else (ou or [])):
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u))
        if cn is not None:
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        return x509.Name(attrs)

    def _aki(self, b, issuer_cert, issuer_key):
        try:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                critical=False)
        except x509.ExtensionNotFound:
            pass
        return b

    def ca(self, fname, cn=None, issuer=None):
        """A root (issuer='self') or an intermediate CA (issuer=None -> dev CA)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subj = self.name(cn=cn or ("steeldoor-test " + fname))
        if issuer == "self":
            icert, ikey, iname = None, key, subj
        else:
            issuer = issuer or self.root
            icert, ikey, iname = issuer.cert, issuer.key, issuer.cert.subject
        b = (x509.CertificateBuilder().subject_name(subj).issuer_name(iname)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(_now() - datetime.timedelta(days=1))
             .not_valid_after(_now() + datetime.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                            critical=False))
        if icert is not None:
            b = self._aki(b, icert, ikey)
        cert = b.sign(ikey, hashes.SHA256())
        _write_cert(self.dir / (fname + ".crt"), cert)
        _write_key(self.dir / (fname + ".key"), key)
        return SimpleNamespace(cert=cert, key=key, crt=self.dir / (fname + ".crt"), name=fname,
                               issuer=issuer if issuer != "self" else None)

    def client(self, fname, cn=None, ou=None, o=None, c=None, subject=None, uris=(), dns=(),
               raw_san=None, key=None, issuer=None, chain=()):
        """A client cert; writes fname.crt (leaf, then `chain` CA certs) and fname.key.
        raw_san: DER bytes used verbatim as the subjectAltName extension value."""
        from cryptography.x509.oid import ExtensionOID
        issuer = issuer or self.root
        key = key or ec.generate_private_key(ec.SECP256R1())
        subj = subject if subject is not None else self.name(cn=cn, ou=ou, o=o, c=c)
        b = (x509.CertificateBuilder().subject_name(subj).issuer_name(issuer.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(_now() - datetime.timedelta(hours=1))
             .not_valid_after(_now() + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                                          data_encipherment=False, key_agreement=False,
                                          key_cert_sign=False, crl_sign=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False))
        if raw_san is not None:
            b = b.add_extension(x509.UnrecognizedExtension(
                ExtensionOID.SUBJECT_ALTERNATIVE_NAME, raw_san), critical=False)
        else:
            sans = [x509.UniformResourceIdentifier(u) for u in uris]
            sans += [x509.DNSName(d) for d in dns]
            if sans:
                b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        b = self._aki(b, issuer.cert, issuer.key)
        cert = b.sign(issuer.key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM)
        for ca in chain:
            pem += ca.cert.public_bytes(serialization.Encoding.PEM)
        (self.dir / (fname + ".crt")).write_bytes(pem)
        _write_key(self.dir / (fname + ".key"), key)
        return SimpleNamespace(cert=cert, key_obj=key, crt=self.dir / (fname + ".crt"),
                               key=self.dir / (fname + ".key"), pair=(self.dir / (fname + ".crt"),
                                                                        self.dir / (fname + ".key")),
                               der=cert.public_bytes(serialization.Encoding.DER))

    def crl(self, fname, issuer=None, revoked=(), last_update=None, next_update=None,
            der=False, sign_key=None):
        """CRL from issuer (default: dev CA) revoking the given cert objects."""
        issuer = issuer or self.root
        lu = last_update or (_now() - datetime.timedelta(hours=1))
        nu = next_update or (_now() + datetime.timedelta(days=7))
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
             .last_update(lu).next_update(nu)
             .add_extension(x509.CRLNumber(1), critical=False))
        b = self._aki(b, issuer.cert, issuer.key)
        for c in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(c.serial_number)
                .revocation_date(_now() - datetime.timedelta(minutes=30)).build())
        crl = b.sign(sign_key or issuer.key, hashes.SHA256())
        p = self.dir / fname
        p.write_bytes(crl.public_bytes(serialization.Encoding.DER if der
                                       else serialization.Encoding.PEM))
        return p


@pytest.fixture
def certs(pki, tmp_path):
    return CertFactory(pki, tmp_path / "certs")


def expect_admitted(sd, ctx, port, host="127.0.0.1", payload=b"admit-me\n",
                    server_hostname="localhost", session=None):
    """Connect, echo once through the proxy, close; return the conn log line."""
    with sdlib.tls_connect(ctx, port, host=host, server_hostname=server_hostname,
                           session=session) as s:
        got = sdlib.echo_roundtrip(s, payload)
        peer = sdlib.peer_of(s)
        sess, reused = s.session, s.session_reused
    assert got == payload, "echo through the proxy: %r != %r" % (got, payload)
    e = sd.wait_conn(peer)
    assert e.get("result") == "ok", "admitted connection logged as %s" % e
    e["_session"], e["_reused"] = sess, reused
    return e


def expect_refused(sd, backend, ctx, port, reason, host="127.0.0.1", detail=None):
    """The client must never get app data nor reach the backend; the conn line
    says result=refused with the given reason (None: any). Returns the line."""
    before = backend.count if backend is not None else 0
    r = sdlib.probe_refused_tls(ctx, port, host=host)
    assert r["data"] == b"", "refused client received application bytes: %r" % r["data"][:200]
    assert r["error"] is not None and not str(r["error"]).startswith("TIMEOUT"), \
        "client was not cut off (handshake accepted?): %r" % r
    peer = ("[%s]:%d" if ":" in host else "%s:%d") % (host, r["local_port"])
    e = sd.wait_conn(peer)
    assert e.get("result") == "refused", "expected a refusal, log line: %s" % e
    if reason is not None:
        assert e.get("reason") == reason, "reason %r, expected %r; line %s" % (
            e.get("reason"), reason, e)
    if detail is not None:
        assert e.get("detail") == detail, "detail %r, expected %r; line %s" % (
            e.get("detail"), detail, e)
    assert "rule" not in e or e.get("rule") in (None, ""), "refused conn names a rule: %s" % e
    if backend is not None:
        time.sleep(0.3)
        assert backend.count == before, "backend got a connection from a refused client"
    return e


# --------------------------------------------------------------------------
# admission over time: certificates and CRLs with exact dates, resumption
# attempts that never raise, reload waits, which worker holds a connection.
# Used by test_session_admission, test_crl_sets, test_trust_reduction and
# test_identity_unambiguous - additive
# --------------------------------------------------------------------------
import ssl as _ssl  # noqa: E402

TLS_VERSIONS = {"tls13": _ssl.TLSVersion.TLSv1_3, "tls12": _ssl.TLSVersion.TLSv1_2}


def whole_now():
    """Now (UTC) rounded down to the second: certificate and CRL times have a
    resolution of one second, so deadlines computed from this are exact."""
    return _now().replace(microsecond=0)


def sleep_until(epoch, cap=30.0):
    """Sleep until time.time() >= epoch (never more than cap seconds)."""
    left = epoch - time.time()
    if left > 0:
        time.sleep(min(left, cap))


def root_issuer(pki):
    """The session PKI's dev CA as an issuer for issue_cert / build_crl."""
    return SimpleNamespace(cert=pki.ca_cert_obj, key=_find_ca_key(pki.dir, pki.ca_cert_obj),
                           crt=pki.ca)


def issue_cert(outdir, fname, issuer, cn=None, subject=None, not_before=None, not_after=None,
               ca=False, path_length=None, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), uris=(),
               dns=(), key_cert_sign=None, chain=(), key=None):
    """One certificate with exact dates, written as outdir/fname.crt (the
    certificate, then the PEM of each issuer in `chain`) and outdir/fname.key.
    issuer: a namespace with .cert and .key, or "self" for a root.
    ca=True gives basicConstraints CA:TRUE (key_cert_sign defaults to ca)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    key = key or ec.generate_private_key(ec.SECP256R1())
    if subject is None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or fname)])
    if issuer == "self":
        iname, ikey, icert = subject, key, None
    else:
        iname, ikey, icert = issuer.cert.subject, issuer.key, issuer.cert
    if key_cert_sign is None:
        key_cert_sign = ca
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(iname)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before or (_now() - datetime.timedelta(hours=1)))
         .not_valid_after(not_after or (_now() + datetime.timedelta(days=30)))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                        critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=key_cert_sign,
                                      crl_sign=key_cert_sign, encipher_only=False,
                                      decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    sans = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if icert is not None:
        try:
            ski = icert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False)
        except x509.ExtensionNotFound:
            pass
    cert = b.sign(ikey, hashes.SHA256())
    crt, kp = outdir / (fname + ".crt"), outdir / (fname + ".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM) +
                    b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in chain))
    _write_key(kp, key)
    return SimpleNamespace(cert=cert, key=key, key_obj=key, crt=crt, keyfile=kp, pair=(crt, kp),
                           name=fname)


def build_crl(issuer, revoked=(), last_update=None, next_update=None, number=1,
              delta_of=None, freshest=None):
    """A CRL signed by issuer (namespace with .cert, .key) with exact dates.
    revoked: certificate objects (or namespaces with .cert). number: CRLNumber.
    delta_of: base CRL number -> a delta CRL (critical deltaCRLIndicator).
    freshest: URL -> a FreshestCRL extension (where the delta is published,
    as AD CS writes in its base CRLs). Returns the CRL object."""
    lu = last_update or (_now() - datetime.timedelta(hours=1))
    nu = next_update or (_now() + datetime.timedelta(days=7))
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
         .last_update(lu).next_update(nu)
         .add_extension(x509.CRLNumber(number), critical=False))
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                            critical=False)
    except x509.ExtensionNotFound:
        pass
    if delta_of is not None:
        b = b.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if freshest is not None:
        b = b.add_extension(x509.FreshestCRL([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(freshest)], relative_name=None,
            reasons=None, crl_issuer=None)]), critical=False)
    for c in revoked:
        c = getattr(c, "cert", c)
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(c.serial_number)
            .revocation_date(lu - datetime.timedelta(minutes=5)).build())
    return b.sign(issuer.key, hashes.SHA256())


def crl_pem(*crls):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)


def cert_pem(*certs_):
    return b"".join(getattr(c, "cert", c).public_bytes(serialization.Encoding.PEM)
                    for c in certs_)


_atomic_counter = [0]


def atomic_write(path, data):
    """Replace path by rename, as deployments do (never a half-written file)."""
    path = Path(path)
    _atomic_counter[0] += 1
    tmp = path.with_name(".%s.new%d" % (path.name, _atomic_counter[0]))
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def version_ctx(ca, pair, ver):
    """Client context pinned to one TLS version ("tls13" / "tls12")."""
    v = TLS_VERSIONS[ver]
    return sdlib.client_ctx(ca, pair[0], pair[1], max_version=v, min_version=v)


def tls_attempt(ctx, port, session=None, server_hostname="localhost", payload=b"attempt\n",
                timeout=4.0, host="127.0.0.1"):
    """One connection that never raises. Returns a dict: ok (two echo round
    trips worked), reused, error, data (application bytes received), peer,
    session (the connection's session when ok; TLS 1.3 tickets arrive with
    the first response, hence the round trips)."""
    out = {"ok": False, "reused": None, "error": None, "data": b"", "peer": None,
           "session": None}
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.connect((host, port))
    except OSError as e:
        raw.close()
        out["error"] = "connect: %r" % e
        return out
    out["peer"] = "%s:%d" % (host, raw.getsockname()[1])
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except (_ssl.SSLError, OSError) as e:
        raw.close()
        out["error"] = "handshake: %r" % e
        return out
    try:
        out["reused"] = s.session_reused
        s.settimeout(timeout)
        s.sendall(payload)
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < len(payload) and time.monotonic() < deadline:
            c = s.recv(4096)
            if not c:
                out["error"] = "EOF"
                break
            data += c
        out["data"] = data
        if data == payload:
            s.sendall(b"2\n")
            if sdlib.recv_exact(s, 2, timeout) == b"2\n":
                out["ok"] = True
                out["session"] = s.session
                out["reused"] = s.session_reused
    except (_ssl.SSLError, OSError, EOFError, TimeoutError) as e:
        out["error"] = repr(e)
    finally:
        s.close()
    return out


def wait_generation(sd, gen, workers, timeout=5.0):
    """The master's 'reloaded' line for generation gen, then 'worker_reloaded'
    for gen from every worker. Fails at once on a 'reload_failed' line."""
    deadline = time.monotonic() + timeout
    while True:
        logs = sd.logs()
        failed = [e for e in logs if e.get("event") == "reload_failed"]
        assert not failed, "reload failed: %s" % failed
        m = [e for e in logs if e.get("event") == "reloaded" and e.get("generation") == gen
             and e.get("pid") == sd.pid]
        w = {e.get("worker") for e in logs if e.get("event") == "worker_reloaded"
             and e.get("generation") == gen}
        if m and len(w) >= workers:
            return m[0]
        if time.monotonic() > deadline:
            raise AssertionError("no reload to generation %d within %.1fs (workers seen %s); "
                                 "log tail:\n%s" % (gen, timeout, sorted(w),
                                                    "\n".join(sd.raw_lines()[-25:])))
        time.sleep(0.05)


def sighup_reload(sd, workers, timeout=5.0):
    """SIGHUP, then wait for the next generation in the master and every worker."""
    gens = [e.get("generation") for e in sd.logs() if e.get("event") == "reloaded"
            and e.get("pid") == sd.pid]
    nxt = (max(gens) if gens else 1) + 1
    sd.signal(signal.SIGHUP)
    return wait_generation(sd, nxt, workers, timeout)


def _proc_tcp_inode(local_port, remote_port):
    """Inode of the IPv4 socket 127.0.0.1:local_port <-> 127.0.0.1:remote_port."""
    want_l = "0100007F:%04X" % local_port
    want_r = "0100007F:%04X" % remote_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1] == want_l and p[2] == want_r:
                return p[9]
    return None


def conn_owner(sd, listen_port, client_port, timeout=2.0):
    """PID of the worker holding the accepted socket of a client connection
    (found through /proc/net/tcp and the workers' fd tables), or None."""
    deadline = time.monotonic() + timeout
    while True:
        inode = _proc_tcp_inode(listen_port, client_port)
        if inode is not None:
            target = "socket:[%s]" % inode
            for pid in sd.worker_pids():
                try:
                    fds = os.listdir("/proc/%d/fd" % pid)
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                            return pid
                    except OSError:
                        continue
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def wait_peer_closed(sock, deadline):
    """True if the server closed a held TLS connection (EOF, close_notify or
    reset) before deadline, False if it is still open; data is an error."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            d = sock.recv(4096)
        except socket.timeout:
            return False
        except (_ssl.SSLError, OSError):
            return True
        if not d:
            return True
        raise AssertionError("unexpected application data on a held connection: %r" % d[:100])
