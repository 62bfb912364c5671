"""Input formats (issue 17, item 2): every format a user is likely to have is
recognised by its content and either read (PEM and DER certificates, CA
certificates, CRLs and keys) or refused with a message that names the file
and gives the fix (PKCS#12, encrypted keys, swapped or mismatched files,
empty or garbage files). Nothing ever prompts for a passphrase. The same for
`steeldoor pki` and the CA files it reads.

Files are made with python-cryptography from the session's dev PKI; the
failing starts run the real binary and read its start_failed line."""
import fcntl
import json
import os
import pty
import select
import socket
import subprocess
import termios
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

import sdlib
from sdlib import free_port, run
from conftest import expect_admitted, expect_refused

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
TRAD = serialization.PrivateFormat.TraditionalOpenSSL
PLAIN = serialization.NoEncryption()
SWAPPED = "are --cert and --key swapped?"


def _key(path):
    return serialization.load_pem_private_key(path.read_bytes(), None)


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _write(path, data, mode=0o644):
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _key_bytes(key, enc=DER, fmt=PKCS8, password=None):
    crypt = serialization.BestAvailableEncryption(password) if password else PLAIN
    return key.private_bytes(enc, fmt, crypt)


@pytest.fixture
def fmt(pki, tmp_path):
    """The dev PKI's server, client and CA files in other formats."""
    d = tmp_path / "fmt"
    d.mkdir()
    skey, ckey = _key(pki.server_key), _key(pki.client_key)
    scrt, ccrt, ca = _cert(pki.server_cert), _cert(pki.client_cert), _cert(pki.ca)
    return {
        "dir": d,
        "server_der": _write(d / "server.der", scrt.public_bytes(DER)),
        "server_key_pk8_der": _write(d / "server-pk8.der", _key_bytes(skey), 0o600),
        "server_key_trad_der": _write(d / "server-ec.der", _key_bytes(skey, fmt=TRAD), 0o600),
        "client_der": _write(d / "client.der", ccrt.public_bytes(DER)),
        "client_key_der": _write(d / "client-key.der", _key_bytes(ckey), 0o600),
        "ca_der": _write(d / "ca.der", ca.public_bytes(DER)),
        "p12": _write(d / "server.pem",  # PKCS#12 by content, whatever its name
                      pkcs12.serialize_key_and_certificates(
                          b"server", skey, scrt, [ca],
                          serialization.BestAvailableEncryption(b"pw")), 0o600),
        "skey": skey, "scrt": scrt,
    }


def start_refused(sd_bin, args, cwd=None):
    """Runs the real binary (stdin at end of file, never a terminal), which
    must refuse to start; returns the message of its start_failed line."""
    r = run([sd_bin] + [str(a) for a in args], timeout=15, input=b"", cwd=cwd)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, "steeldoor started (rc %d):\n%s" % (r.returncode, err[-3000:])
    msg = _start_failed_msg(err)
    assert msg is not None, "no start_failed line:\n%s" % err[-3000:]
    return msg


def serve_cmd(pki, cert=None, key=None, cacert=None, extra=()):
    return ["serve", "--listen", "127.0.0.1:%d" % free_port(), "--target",
            "127.0.0.1:%d" % free_port(), "--cert", cert or pki.server_cert,
            "--key", key or pki.server_key, "--cacert", cacert or pki.ca, "--allow-all",
            "--workers", "1"] + list(extra)


def connect_cmd(pki, cert=None, key=None, cacert=None, listen=None, target=None):
    return ["connect", "--listen", listen or "127.0.0.1:%d" % free_port(), "--target",
            target or "127.0.0.1:%d" % free_port(), "--cert", cert or pki.client_cert,
            "--key", key or pki.client_key, "--cacert", cacert or pki.ca,
            "--server-name", "localhost", "--workers", "1", "--drain-timeout", "2s"]


def run_on_tty(args, timeout=8.0):
    """Runs args with a pseudo-terminal as stdin and as controlling
    terminal: where OpenSSL's default callback would prompt for a
    passphrase (on /dev/tty) and then wait. Returns (rc, stderr text, what
    was written to the terminal); rc is None when it had to be killed."""
    master, slave = pty.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([str(a) for a in args], stdin=slave, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=take_terminal)
    os.close(slave)
    tty = b""
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    tty += os.read(master, 4096)
                except OSError:
                    pass
        rc = p.poll()
        if rc is None:
            p.kill()
        _, err = p.communicate(timeout=5)
    finally:
        os.close(master)
    return rc, err.decode(errors="replace"), tty.decode(errors="replace")


def _start_failed_msg(err):
    for line in err.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "start_failed":
            return e.get("msg", "")
    return None


# --------------------------------------------------------------------------
# DER is read everywhere
# --------------------------------------------------------------------------

def test_der_cert_key_ca_and_crl_serve(steeldoor, backends, pki, certs, fmt):
    """Server certificate, PKCS#8 key, CA and CRL all DER: a client of the CA
    gets through, a client the DER CRL revokes is refused."""
    revoked = certs.client("der-revoked", cn="der-revoked")
    crl = certs.crl("revoked.crl.der", revoked=[revoked.cert], der=True)
    assert crl.read_bytes()[:1] == b"\x30"
    be = backends()
    sd = steeldoor(target=be.target, cert=fmt["server_der"], key=fmt["server_key_pk8_der"],
                   cacert=fmt["ca_der"], extra=["--crl", crl])
    e = expect_admitted(sd, sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key),
                        sd.port)
    assert "billing" in str(e.get("subject", "")) + str(e.get("uri", "")), e
    expect_refused(sd, be, sdlib.client_ctx(pki.ca, *revoked.pair), sd.port,
                   "certificate_revoked")
    assert be.count == 1


@pytest.mark.parametrize("which", ["ec_traditional", "rsa_traditional"])
def test_der_traditional_keys_serve(steeldoor, backends, pki, fmt, which):
    """Traditional (non-PKCS#8) DER keys, EC and RSA."""
    if which == "ec_traditional":
        cert, key = fmt["server_der"], fmt["server_key_trad_der"]
    else:
        crt, kp = pki.rsa_server
        cert = _write(fmt["dir"] / "rsa.der", _cert(crt).public_bytes(DER))
        key = _write(fmt["dir"] / "rsa-key.der", _key_bytes(_key(kp), fmt=TRAD), 0o600)
    be = backends()
    sd = steeldoor(target=be.target, cert=cert, key=key)
    expect_admitted(sd, sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key), sd.port)


def test_der_client_identity_connect(steeldoor, backends, pki, fmt):
    """connect: our client certificate, key and the server's CA as DER."""
    be = backends()
    srv = steeldoor(target=be.target)
    port = free_port()
    steeldoor(args=connect_cmd(pki, cert=fmt["client_der"], key=fmt["client_key_der"],
                               cacert=fmt["ca_der"], listen="127.0.0.1:%d" % port,
                               target="127.0.0.1:%d" % srv.port),
              wait_ports=[("127.0.0.1", port)])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"der-through-connect\n")
        assert sdlib.recv_exact(s, 20) == b"der-through-connect\n"
    # the server saw our DER client certificate
    e = srv.wait_log(lambda e: e.get("event") == "conn" and e.get("result") == "ok",
                     what="the server's conn line")
    assert "billing" in str(e.get("subject", "")) + str(e.get("uri", "")), e


# --------------------------------------------------------------------------
# PKCS#12, encrypted keys: refused with the command, never a prompt
# --------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--cert", "--key"])
def test_pkcs12_refused_with_the_commands(sd_bin, pki, fmt, flag):
    p12 = fmt["p12"]
    args = serve_cmd(pki, cert=p12 if flag == "--cert" else None,
                     key=p12 if flag == "--key" else None)
    msg = start_refused(sd_bin, args)
    assert "%s holds a PKCS#12 bundle" % p12 in msg, msg
    assert "openssl pkcs12 -in %s -nokeys -out cert.pem" % p12 in msg, msg
    assert "openssl pkcs12 -in %s -nocerts -nodes -out key.pem" % p12 in msg, msg


def test_pkcs12_as_cacert_refused(sd_bin, pki, fmt):
    msg = start_refused(sd_bin, serve_cmd(pki, cacert=fmt["p12"]))
    assert "%s holds a PKCS#12 bundle" % fmt["p12"] in msg, msg
    assert "openssl pkcs12 -in %s -cacerts -nokeys -out ca.pem" % fmt["p12"] in msg, msg


ENCRYPTED = {
    "pkcs8_pem": (PEM, PKCS8, b"-----BEGIN ENCRYPTED PRIVATE KEY-----"),
    "traditional_pem": (PEM, TRAD, b"Proc-Type: 4,ENCRYPTED"),
    "pkcs8_der": (DER, PKCS8, None),
}


@pytest.mark.parametrize("kind", sorted(ENCRYPTED))
@pytest.mark.parametrize("mode", ["serve", "connect"])
def test_encrypted_key_refused_without_prompt(sd_bin, pki, fmt, kind, mode):
    """Run with a terminal to prompt on: steeldoor must not ask for the
    passphrase (an old build waits on /dev/tty here) and must name the
    file and the command that decrypts it."""
    enc, form, marker = ENCRYPTED[kind]
    key = _key(pki.server_key if mode == "serve" else pki.client_key)
    path = _write(fmt["dir"] / ("enc-%s.key" % kind),
                  _key_bytes(key, enc=enc, fmt=form, password=b"secret"), 0o600)
    if marker is not None:
        assert marker in path.read_bytes()
    args = serve_cmd(pki, key=path) if mode == "serve" else connect_cmd(pki, key=path)
    rc, err, tty = run_on_tty([sd_bin] + args)
    assert rc is not None, "steeldoor waited (for a passphrase?); terminal: %r" % tty
    assert "pass" not in tty.lower(), "prompted on the terminal: %r" % tty
    assert rc != 0, err
    msg = _start_failed_msg(err)
    assert msg is not None, err
    plain = fmt["dir"] / ("enc-%s-plain.key" % kind)
    assert "%s holds an encrypted private key" % path in msg, msg
    assert "never asks for a passphrase" in msg, msg
    assert "(umask 077; openssl pkey -in %s -out %s)" % (path, plain) in msg, msg


# --------------------------------------------------------------------------
# Swapped and mismatched files
# --------------------------------------------------------------------------

def test_swapped_cert_and_key(sd_bin, pki):
    msg = start_refused(sd_bin, serve_cmd(pki, cert=pki.server_key, key=pki.server_cert))
    assert "%s holds a private key, not a certificate: %s" % (pki.server_key, SWAPPED) \
        in msg, msg


def test_certificate_given_as_key(sd_bin, pki):
    msg = start_refused(sd_bin, serve_cmd(pki, key=pki.server_cert))
    assert "%s holds a certificate, not a private key: %s" % (pki.server_cert, SWAPPED) \
        in msg, msg


def test_swapped_cert_and_key_der(sd_bin, pki, fmt):
    msg = start_refused(sd_bin, serve_cmd(pki, cert=fmt["server_key_pk8_der"],
                                          key=fmt["server_der"]))
    assert "%s holds a private key, not a certificate: %s" % (fmt["server_key_pk8_der"],
                                                              SWAPPED) in msg, msg


@pytest.mark.parametrize("mode", ["serve", "connect"])
def test_mismatched_key_names_both_files(sd_bin, pki, mode):
    if mode == "serve":
        cert, key, args = pki.server_cert, pki.client_key, serve_cmd(pki, key=pki.client_key)
    else:
        cert, key = pki.client_cert, pki.server_key
        args = connect_cmd(pki, key=key)
    msg = start_refused(sd_bin, args)
    assert "%s: private key does not match the certificate in %s" % (key, cert) in msg, msg


# --------------------------------------------------------------------------
# --cacert directories
# --------------------------------------------------------------------------

def test_cacert_directory_skips_what_is_not_a_certificate(steeldoor, backends, pki, certs,
                                                          fmt, tmp_path):
    """A README, a key and a CRL next to the CA files are skipped, one
    cacert_skipped warning each (file, why); a DER CA in the directory
    counts; clients of both CAs get through."""
    d = tmp_path / "cas"
    d.mkdir()
    (d / "dev-ca.pem").write_bytes(pki.ca.read_bytes())
    root_b = certs.ca("root-b", issuer="self")
    (d / "root-b.der").write_bytes(root_b.cert.public_bytes(DER))
    skipped = {
        d / "README": ("hello\nthese are our client CAs\n", "neither PEM nor DER"),
        d / "billing.key": (pki.client_key.read_text(), "holds a private key"),
        d / "dev.crl": (certs.crl("dev.crl").read_text(), "holds a CRL"),
    }
    for p, (text, _) in skipped.items():
        p.write_text(text)
    be = backends()
    sd = steeldoor(target=be.target, cacert=d, workers=2)
    expect_admitted(sd, sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key), sd.port)
    b_client = certs.client("b-client", cn="b-client", issuer=root_b)
    expect_admitted(sd, sdlib.client_ctx(pki.ca, *b_client.pair), sd.port)
    lines = [e for e in sd.logs() if e.get("event") == "cacert_skipped"]
    assert sorted(e.get("file") for e in lines) == sorted(str(p) for p in skipped), lines
    for e in lines:
        assert e.get("level") == "warn", e
        assert skipped[Path(e["file"])][1] in e.get("why", ""), e
        assert e["file"] in e.get("msg", ""), e


def test_cacert_directory_without_a_ca_is_an_error(sd_bin, pki, tmp_path):
    d = tmp_path / "no-cas"
    d.mkdir()
    (d / "README").write_text("nothing here yet\n")
    (d / "billing.key").write_bytes(pki.client_key.read_bytes())
    r = run([sd_bin] + serve_cmd(pki, cacert=d), timeout=15, input=b"")
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err
    msg = _start_failed_msg(err)
    assert msg is not None and "%s: CA directory contains no CA certificate" % d in msg, err
    assert err.count('"event":"cacert_skipped"') == 2, err


# --------------------------------------------------------------------------
# Empty and garbage files
# --------------------------------------------------------------------------

CONTENTS = {
    "empty": (b"", "is empty: expected %s (PEM or DER)"),
    "blank": (b"\n  \n", "is empty: expected %s (PEM or DER)"),
    "text": (b"These are the notes of the deployment.\n", "is neither PEM nor DER (it is text): "
             "expected %s"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is neither PEM nor DER: expected %s"),
}
NOUNS = {"--cert": "a certificate", "--key": "a private key", "--cacert": "a CA certificate",
         "--crl": "a CRL"}


@pytest.mark.parametrize("content", sorted(CONTENTS))
@pytest.mark.parametrize("flag", sorted(NOUNS))
def test_empty_and_garbage_files(sd_bin, pki, tmp_path, flag, content):
    data, text = CONTENTS[content]
    path = _write(tmp_path / ("file-%s" % content), data, 0o600)
    kw = {"--cert": {"cert": path}, "--key": {"key": path}, "--cacert": {"cacert": path},
          "--crl": {"extra": ["--crl", path]}}[flag]
    msg = start_refused(sd_bin, serve_cmd(pki, **kw))
    assert "%s %s" % (path, text % NOUNS[flag]) in msg, msg


def test_other_kinds_named(sd_bin, pki, fmt):
    """A public key as --key, a certificate as --crl."""
    cases = [
        (serve_cmd(pki, key=_write(fmt["dir"] / "pub.pem", fmt["skey"].public_key()
                                   .public_bytes(PEM, serialization.PublicFormat
                                                 .SubjectPublicKeyInfo))),
         "pub.pem holds a public key, not a private key"),
        (serve_cmd(pki, extra=["--crl", pki.ca]), "%s holds a certificate, not a CRL" % pki.ca),
    ]
    for args, want in cases:
        msg = start_refused(sd_bin, args)
        assert want in msg, msg


# --------------------------------------------------------------------------
# steeldoor pki: its CA files
# --------------------------------------------------------------------------

@pytest.fixture
def ca_dir(sd_bin, tmp_path):
    d = tmp_path / "ca"
    r = run([sd_bin, "pki", "init", "--dir", d], timeout=15)
    assert r.returncode == 0, r.stderr
    return d


def _replace(path, data, mode):
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _issue(sd_bin, d):
    return run([sd_bin, "pki", "issue", "--dir", d, "--name", "svc", "--server", "--dns",
                "svc.example"], timeout=15, input=b"")


def test_pki_reads_a_der_ca(sd_bin, ca_dir):
    ca_crt, ca_key = _cert(ca_dir / "ca.crt"), _key(ca_dir / "ca.key")
    _replace(ca_dir / "ca.crt", ca_crt.public_bytes(DER), 0o644)
    _replace(ca_dir / "ca.key", _key_bytes(ca_key, fmt=TRAD), 0o600)
    r = _issue(sd_bin, ca_dir)
    assert r.returncode == 0, r.stderr
    leaf = _cert(ca_dir / "svc.crt")
    ca_crt.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes,
                               ec.ECDSA(leaf.signature_hash_algorithm))
    assert leaf.issuer == ca_crt.subject


def test_pki_encrypted_ca_key_refused_without_prompt(sd_bin, ca_dir):
    key = ca_dir / "ca.key"
    _replace(key, _key_bytes(_key(key), enc=PEM, password=b"secret"), 0o600)
    rc, err, tty = run_on_tty([sd_bin, "pki", "issue", "--dir", ca_dir, "--name", "svc",
                               "--server"])
    assert rc is not None, "steeldoor pki waited (for a passphrase?); terminal: %r" % tty
    assert "pass" not in tty.lower(), "prompted on the terminal: %r" % tty
    assert rc == 1, err
    assert "%s holds an encrypted private key" % key in err, err
    assert "(umask 077; openssl pkey -in %s -out %s.plain)" % (key, key) in err, err
    assert not (ca_dir / "svc.crt").exists()


def test_pki_swapped_and_wrong_ca_files(sd_bin, ca_dir, fmt):
    crt, key = ca_dir / "ca.crt", ca_dir / "ca.key"
    good_crt, good_key = crt.read_bytes(), key.read_bytes()
    _replace(crt, good_key, 0o644)
    _replace(key, good_crt, 0o600)
    r = _issue(sd_bin, ca_dir)
    assert r.returncode == 1
    assert ("%s holds a private key, not a certificate: are ca.crt and ca.key swapped?"
            % crt) in r.stderr.decode(), r.stderr
    _replace(crt, good_crt, 0o644)
    r = _issue(sd_bin, ca_dir)
    assert r.returncode == 1
    assert ("%s holds a certificate, not a private key: are ca.crt and ca.key swapped?"
            % key) in r.stderr.decode(), r.stderr
    _replace(key, good_key, 0o600)
    _replace(crt, fmt["p12"].read_bytes(), 0o644)
    r = _issue(sd_bin, ca_dir)
    assert r.returncode == 1
    assert "%s holds a PKCS#12 bundle" % crt in r.stderr.decode(), r.stderr
    assert "openssl pkcs12 -in %s -nokeys -out cert.pem" % crt in r.stderr.decode()
    _replace(crt, b"", 0o644)
    r = _issue(sd_bin, ca_dir)
    assert r.returncode == 1
    assert "%s is empty: expected a certificate (PEM or DER)" % crt in r.stderr.decode()
    _replace(crt, good_crt, 0o644)
    r = _issue(sd_bin, ca_dir)
    assert r.returncode == 0, r.stderr
