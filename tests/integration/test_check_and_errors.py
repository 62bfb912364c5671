"""serve --check and start-up errors, as a new user meets them (found by
an adversarial review of the first-hours work; each test failed before its
fix):

- `serve --check` exits non-zero on what `serve` refuses at start (an
  unknown --user, a listen address that is not this host's, an admin socket
  whose directory does not exist) and shows the start-up warnings that say
  clients will be refused (server certificate without a SAN, a CRL past its
  nextUpdate); a configuration that does not parse prints FAILED too.
- Every error about a listener names the config file, the line and the
  listener ("FILE line N: listener NAME: ..."), including the validation
  errors (a bad target) and the errors of opening its socket.
- A misspelt key gets the nearest valid one, across the flag and YAML
  spellings of the same key (`--mode http` is `--http`, `http: true` in a
  file is `mode: http`).
- A missing required value is named (exit status 1, as documented).
"""
import datetime
import json
import socket
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sdlib import free_port, run

TEST_NET = "192.0.2.1"  # RFC 5737: never an address of this host


def _pki(sd_bin, d):
    for args in (["init"], ["issue", "--name", "api", "--server", "--dns", "localhost",
                            "--ip", "127.0.0.1"]):
        r = run([sd_bin, "pki"] + args + ["--dir", str(d)], timeout=30)
        assert r.returncode == 0, r.stderr


def _listener(name, port, target=None, extra=""):
    return ("  - name: %s\n    listen: 127.0.0.1:%d\n    target: %s\n"
            "    cert: pki/api.crt\n    key: pki/api.key\n    cacert: pki/ca.crt\n"
            "    allow-all: true\n%s"
            % (name, port, target or "127.0.0.1:%d" % free_port(), extra))


def _flags(pki, listen=None, cert=None, key=None, extra=()):
    return ["--listen", listen or "127.0.0.1:%d" % free_port(), "--target",
            "127.0.0.1:%d" % free_port(), "--cert", str(cert or pki.server_cert), "--key",
            str(key or pki.server_key), "--cacert", str(pki.ca), "--allow-all",
            "--workers", "1", "--drain-timeout", "1s"] + [str(a) for a in extra]


def _start_failed(stderr):
    for line in stderr.decode(errors="replace").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "start_failed":
            return e["msg"]
    return None


def _serve_refuses(sd_bin, args, cwd=None):
    """serve itself refuses args (the precondition of each --check test);
    returns its start_failed message."""
    r = subprocess.run([str(sd_bin), "serve"] + args, capture_output=True, timeout=20,
                       cwd=cwd, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    msg = _start_failed(r.stderr)
    assert msg is not None, r.stderr
    return msg


def _check(sd_bin, args, cwd=None):
    return subprocess.run([str(sd_bin), "serve", "--check"] + args, capture_output=True,
                          timeout=20, cwd=cwd, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------ --check

def test_check_refuses_an_unknown_user(sd_bin, pki):
    args = _flags(pki, extra=["--user", "sd-review17-no-such-user"])
    msg = _serve_refuses(sd_bin, args)
    assert "no such user" in msg, msg
    r = _check(sd_bin, args)
    # serve refuses this configuration at once: --check must say so
    assert r.returncode == 1, (r.returncode, r.stdout.decode(), r.stderr.decode())
    assert "configuration FAILED" in r.stdout.decode(), r.stdout
    assert "no such user" in (_start_failed(r.stderr) or ""), r.stderr


def _address_is_local(addr):
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_check_refuses_a_listen_address_not_of_this_host(sd_bin, pki):
    if _address_is_local(TEST_NET):
        pytest.skip("%s is an address of this host" % TEST_NET)
    args = _flags(pki, listen="%s:%d" % (TEST_NET, free_port()))
    msg = _serve_refuses(sd_bin, args)
    assert "Cannot assign requested address" in msg, msg
    r = _check(sd_bin, args)
    # not a busy port (which --check may not see next to a running steeldoor):
    # an address this host does not have, which no start can ever bind
    assert r.returncode == 1, (r.returncode, r.stdout.decode(), r.stderr.decode())


def test_check_refuses_an_admin_socket_in_a_missing_directory(sd_bin, pki, tmp_path):
    sock = tmp_path / "no-such-dir" / "admin.sock"
    args = _flags(pki, extra=["--admin", "unix:%s" % sock])
    msg = _serve_refuses(sd_bin, args)
    assert "No such file or directory" in msg, msg
    r = _check(sd_bin, args)
    assert r.returncode == 1, (r.returncode, r.stdout.decode(), r.stderr.decode())


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _no_san_cert_and_stale_crl(pki, d):
    """A server certificate of the session's CA without subjectAltName, its
    key, and a CRL of that CA whose nextUpdate was yesterday."""
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + datetime.timedelta(days=60))
            .sign(ca_key, hashes.SHA256()))
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(_now() - datetime.timedelta(days=8))
           .next_update(_now() - datetime.timedelta(days=1))
           .sign(ca_key, hashes.SHA256()))
    d.mkdir()
    (d / "nosan.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "nosan.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (d / "nosan.key").chmod(0o600)
    (d / "stale.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return d / "nosan.crt", d / "nosan.key", d / "stale.crl"


def test_check_shows_the_start_warnings(sd_bin, pki, tmp_path):
    cert, key, crl = _no_san_cert_and_stale_crl(pki, tmp_path / "w")
    args = _flags(pki, cert=cert, key=key, extra=["--crl", crl])
    r = _check(sd_bin, args)
    # steeldoor would start (and warn): 0 is right ...
    assert r.returncode == 0, r
    # ... but "configuration OK" alone hides that every client will refuse
    # the server's certificate and every client will be refused (crl_expired):
    # the warnings a start logs are what --check is run for
    both = r.stdout.decode() + r.stderr.decode()
    assert "subjectAltName" in both or "cert_no_san" in both, both
    assert "nextUpdate" in both or "crl_expiry" in both, both


# ------------------------------------------- errors name file, line, listener

def test_validation_errors_name_file_line_and_listener(sd_bin, tmp_path):
    _pki(sd_bin, tmp_path / "pki")
    cfg = tmp_path / "sd.yaml"
    # 'billing' is declared on line 10; its target has no port
    cfg.write_text("workers: 1\nlisteners:\n" + _listener("api", free_port()) +
                   _listener("billing", free_port(), target="127.0.0.1"))
    r = subprocess.run([str(sd_bin), "serve", "--config", str(cfg)], cwd=str(tmp_path),
                       capture_output=True, timeout=20)
    assert r.returncode != 0, r
    msg = _start_failed(r.stderr)
    assert msg is not None and "expected HOST:PORT" in msg, r.stderr
    assert ("%s line 10: listener billing: " % cfg) in msg, msg


def test_socket_errors_name_file_line_and_listener(sd_bin, tmp_path):
    _pki(sd_bin, tmp_path / "pki")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        cfg = tmp_path / "sd.yaml"
        cfg.write_text("workers: 1\nlisteners:\n" + _listener("api", free_port()) +
                       _listener("billing", port))
        r = subprocess.run([str(sd_bin), "serve", "--config", str(cfg)], cwd=str(tmp_path),
                           capture_output=True, timeout=20)
    finally:
        busy.close()
    assert r.returncode == 1, r
    msg = _start_failed(r.stderr)
    assert msg is not None and "Address already in use" in msg, r.stderr
    assert ("%s line 10: listener billing: " % cfg) in msg, msg


# -------------------------------------------------------- nearest spelling

def test_flag_spelt_as_the_yaml_key_is_suggested(sd_bin, tmp_path):
    # docs/config.md and the help say "YAML: mode: http"; the flag is --http
    r = subprocess.run([str(sd_bin), "serve", "--mode", "http"], capture_output=True,
                       timeout=20)
    assert r.returncode == 2, r
    msg = _start_failed(r.stderr) or ""
    assert "did you mean --http?" in msg, msg


def test_yaml_key_spelt_as_the_flag_is_suggested(sd_bin, tmp_path):
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("listeners:\n  - name: a\n    http: true\n")
    r = subprocess.run([str(sd_bin), "serve", "--config", str(cfg)], capture_output=True,
                       timeout=20)
    assert r.returncode == 2, r
    msg = _start_failed(r.stderr) or ""
    assert "unknown listener key 'http'" in msg and "did you mean 'mode'" in msg, msg


# ------------------------------------------------------- usage errors: 2

@pytest.mark.parametrize("drop", ["--listen", "--target", "--cacert"])
def test_missing_required_flag_is_named(sd_bin, pki, drop):
    """An incomplete listener: exit status 1 (as the README says), the
    message names the missing flag, and --check says FAILED."""
    args = _flags(pki)
    i = args.index(drop)
    del args[i:i + 2]
    r = subprocess.run([str(sd_bin), "serve"] + args, capture_output=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    msg = _start_failed(r.stderr)
    assert msg is not None and drop in msg, r.stderr
    r = _check(sd_bin, args)
    assert r.returncode == 1 and "configuration FAILED" in r.stdout.decode(), r


def test_check_of_a_file_that_does_not_parse_says_failed(sd_bin, tmp_path):
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("listeners:\n  - name: a\n    listen: [\n")
    r = _check(sd_bin, ["--config", str(cfg)])
    assert r.returncode == 2, r
    assert "%s: configuration FAILED" % cfg in r.stdout.decode(), r
    assert str(cfg) in (_start_failed(r.stderr) or ""), r.stderr


def test_check_refuses_a_connector_socket_in_a_missing_directory(sd_bin, pki, tmp_path):
    sock = tmp_path / "no-such-dir" / "c.sock"
    args = ["--listen", "unix:%s" % sock, "--target", "127.0.0.1:%d" % free_port(),
            "--cert", str(pki.client_cert), "--key", str(pki.client_key), "--cacert",
            str(pki.ca), "--verify-dns", "localhost"]
    r = subprocess.run([str(sd_bin), "connect", "--check"] + args, capture_output=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "configuration FAILED" in r.stdout.decode(), r
    msg = _start_failed(r.stderr) or ""
    assert str(sock.parent) in msg and "connector" in msg, msg
