"""CLI surface: --version, --help, bad subcommands, and what `pki` writes."""
import re
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from sdlib import run


def test_version(sd_bin):
    r = run([sd_bin, "--version"], timeout=10)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    m = re.fullmatch(r"steeldoor \d+\.\d+\.\d+ \((OpenSSL [^)]+)\)\n", out)
    assert m, "unexpected --version output %r" % out
    # the library it runs with, as the library itself says it
    lib = subprocess.run(["openssl", "version"], capture_output=True, timeout=10).stdout.decode()
    assert lib.startswith(m.group(1)), (m.group(1), lib)


def test_help(sd_bin):
    r = run([sd_bin, "--help"], timeout=10)
    assert r.returncode == 0, r.stderr
    text = (r.stdout + r.stderr).decode()
    assert "serve" in text and "pki" in text, "--help does not mention the subcommands:\n" + text


def test_unknown_subcommand_fails(sd_bin):
    r = run([sd_bin, "frobnicate"], timeout=10)
    assert r.returncode != 0
    assert r.stderr.strip(), "no error message for an unknown subcommand"


def test_unknown_flag_fails(sd_bin, pki):
    r = run([sd_bin, "serve", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2",
             "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
             "--allow-all", "--no-such-flag"], timeout=10)
    assert r.returncode != 0
    assert b"no-such-flag" in r.stderr, r.stderr


def _load(p):
    return x509.load_pem_x509_certificate(p.read_bytes())


def _pub(k):
    return k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_pki_outputs(pki):
    ca = _load(pki.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    api = _load(pki.server_cert)
    san = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = api.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert api.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    billing = _load(pki.client_cert)
    san = billing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "spiffe://example.org/billing" in san.get_values_for_type(x509.UniformResourceIdentifier)
    eku = billing.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    # keys match certs
    for c, k in ((pki.server_cert, pki.server_key), (pki.client_cert, pki.client_key)):
        key = serialization.load_pem_private_key(k.read_bytes(), None)
        assert _pub(key.public_key()) == _pub(_load(c).public_key()), "%s does not match %s" % (k, c)
    # chain verifies with openssl, with the right purpose
    r = run(["openssl", "verify", "-CAfile", pki.ca, "-purpose", "sslserver", pki.server_cert])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(["openssl", "verify", "-CAfile", pki.ca, "-purpose", "sslclient", pki.client_cert])
    assert r.returncode == 0, r.stdout + r.stderr


def test_pki_issue_without_init_fails(sd_bin, tmp_path):
    r = run([sd_bin, "pki", "issue", "--dir", tmp_path / "nope", "--name", "x", "--client",
             "--uri", "spiffe://example.org/x"], timeout=10)
    assert r.returncode != 0
    assert r.stderr.strip()


# A single-valued flag given twice is refused, naming the flag: the last one
# silently winning (a wrapper script adding its own --target, a pasted line)
# is the command-line twin of a YAML key given twice.
TWICE = [
    ("--listen", "127.0.0.1:1"), ("--target", "127.0.0.1:3"), ("--cacert", "/etc/hosts"),
    ("--cert", "/etc/hosts"), ("--key", "/etc/hosts"), ("--name", "x"),
    ("--crl-grace", "1s"), ("--verify-depth", "2"), ("--idle-timeout", "1s"),
    ("--handshake-timeout", "1s"), ("--connect-timeout", "1s"), ("--session-lifetime", "1s"),
    ("--workers", "1"), ("--max-conns", "5"), ("--drain-timeout", "1s"),
    ("--expiry-warning", "1d"), ("--allow-all", None), ("--proxy-protocol", None),
]


def _base(pki):
    return ["serve", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2",
            "--cert", str(pki.server_cert), "--key", str(pki.server_key),
            "--cacert", str(pki.ca), "--allow-all"]


def test_flags_given_twice_are_refused(sd_bin, pki):
    for flag, val in TWICE:
        args = _base(pki)
        extra = [flag] + ([val] if val is not None else [])
        if flag in args:
            args += extra          # a second time
        else:
            args += extra + extra  # twice
        r = run([sd_bin] + args, timeout=10)
        assert r.returncode == 2, "%s twice: rc %d %r" % (flag, r.returncode, r.stderr)
        assert flag.encode() in r.stderr and b"more than once" in r.stderr, (flag, r.stderr)


def test_list_flags_repeat(sd_bin, pki, tmp_path):
    """Rules and CRLs are lists: repeating them is how several are given."""
    r = run([sd_bin, "serve", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2",
             "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
             "--allow-uri", "spiffe://example.org/a", "--allow-uri", "spiffe://example.org/b",
             "--allow-cn", "a", "--allow-cn", "b", "--no-such-flag"], timeout=10)
    assert b"more than once" not in r.stderr, r.stderr


def test_pki_before_init_says_to_run_init(sd_bin, tmp_path):
    """pki issue/revoke/crl without a CA: the error says to run pki init (a
    missing directory, and an empty one)."""
    missing = tmp_path / "nope"
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    for d in (missing, empty):
        for args in (["issue", "--name", "api", "--server", "--dns", "localhost"],
                     ["revoke", "--name", "api"], ["crl"]):
            r = run([sd_bin, "pki"] + args + ["--dir", str(d)], timeout=10)
            err = r.stderr.decode()
            assert r.returncode != 0, (d, args)
            assert "pki init" in err and str(d) in err, (d, args, err)
            assert "Traceback" not in err
    assert not missing.exists(), "a command other than init created the directory"
