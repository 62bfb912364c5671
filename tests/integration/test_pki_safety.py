"""`steeldoor pki` under attack (issue 11, items 3-5), always with the real binary.

3. Concurrent commands on one CA directory: no lost revocation, no reused CRL
   number, no duplicate serial, no two CAs mixed by racing inits, no reader
   ever seeing half a file, no key file ever readable by others.
4. Re-issuing a name: needs --reissue, and `revoke --name` then reaches every
   certificate the name was ever issued (steeldoor and openssl both refuse the
   old one too); `revoke --serial` reaches exactly one.
5. A CA directory or CA file that someone else owns or can write, a CA key
   that others can read, a symbolic link in place of the key: every command
   refuses, naming the path and the fix; restored, everything works again.
"""
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
import time

import pytest

import sdlib
from sdlib import run
from conftest import expect_admitted, expect_refused

from cryptography import x509
from cryptography.hazmat.primitives import serialization

SAN_MARKERS = (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:")
TIMEOUT = 60  # per command, far above the few ms one takes


def _cmd(sd_bin, args):
    return [str(sd_bin), "pki"] + [str(a) for a in args]


def _no_sanitizer(r_err, what):
    for m in SAN_MARKERS:
        assert m not in r_err, "sanitizer report from %s:\n%s" % (what, r_err.decode(errors="replace"))


def pki(sd_bin, *args, rc=0):
    r = run(_cmd(sd_bin, args), timeout=TIMEOUT)
    what = "steeldoor pki " + " ".join(map(str, args))
    _no_sanitizer(r.stderr, what)
    if rc is not None:
        assert r.returncode == rc, "%s: rc %d, expected %d\nstdout: %s\nstderr: %s" % (
            what, r.returncode, rc, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"))
    return r


def concurrently(sd_bin, arg_lists, umask=None):
    """Starts every command before waiting for any; returns their results
    (returncode, stdout, stderr) in order. umask: the children's (set in this
    process around the starts; preexec_fn is unsafe with threads running)."""
    old = os.umask(umask) if umask is not None else None
    try:
        procs = [subprocess.Popen(_cmd(sd_bin, a), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for a in arg_lists]
    finally:
        if old is not None:
            os.umask(old)
    out = []
    deadline = time.monotonic() + TIMEOUT
    try:
        for p, a in zip(procs, arg_lists):
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            _no_sanitizer(e, "steeldoor pki " + " ".join(map(str, a)))
            out.append((p.returncode, o.decode(errors="replace"), e.decode(errors="replace")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def serial_hex(path):
    return "%X" % x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def crl_of(d):
    return x509.load_pem_x509_crl((d / "crl.pem").read_bytes())


def crl_number(crl):
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def revoked_serials(crl):
    return {r.serial_number for r in crl}


def issued_index(d):
    """issued.txt as [(serial int, name)]."""
    rows = []
    for line in (d / "issued.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        rows.append((int(f[0], 16), f[2]))
    return rows


def openssl_verify(d, cert, crl=True):
    args = ["openssl", "verify", "-CAfile", d / "ca.crt"]
    if crl:
        args += ["-crl_check", "-CRLfile", d / "crl.pem"]
    r = run(args + [cert], timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


@pytest.fixture
def ca(sd_bin, tmp_path):
    d = tmp_path / "ca"
    pki(sd_bin, "init", "--dir", d)
    return d


# --------------------------------------------------------------------------
# 3. concurrency
# --------------------------------------------------------------------------

def test_concurrent_issue_and_revoke_lose_nothing(sd_bin, ca):
    names = ["n%02d" % i for i in range(20)]
    res = concurrently(sd_bin, [["issue", "--dir", ca, "--name", n, "--client"] for n in names])
    assert all(rc == 0 for rc, _, _ in res), res
    printed = [re.search(r"serial ([0-9A-F]+)", o).group(1) for _, o, _ in res]
    assert len(set(printed)) == 20, printed
    index = issued_index(ca)
    assert sorted(n for _, n in index) == names, index
    assert len({s for s, _ in index}) == 20, "duplicate serials in issued.txt: %s" % index
    serials = {n: int(serial_hex(ca / (n + ".crt")), 16) for n in names}
    assert set(serials.values()) == {s for s, _ in index}

    res = concurrently(sd_bin, [["revoke", "--dir", ca, "--name", n] for n in names])
    for rc, o, e in res:
        assert rc == 0 and "revoked 1 certificate" in o, (rc, o, e)
    pki(sd_bin, "crl", "--dir", ca)
    got = revoked_serials(crl_of(ca))
    missing = sorted(n for n in names if serials[n] not in got)
    assert not missing, "revocations reported done but missing from the CRL: %s" % missing
    assert len(got) == 20


def test_concurrent_crl_numbers_strictly_increase(sd_bin, ca):
    pki(sd_bin, "issue", "--dir", ca, "--name", "bob", "--client")
    pki(sd_bin, "revoke", "--dir", ca, "--name", "bob")
    first = pki(sd_bin, "crl", "--dir", ca).stdout.decode()
    assert "CRL number 1" in first, first

    # A reader polling crl.pem and the lists meanwhile must never see half a file.
    stop = threading.Event()
    seen = {"reads": 0, "bad": []}

    def reader():
        for _ in range(100000):  # bounded; ends much earlier via stop
            if stop.is_set():
                return
            try:
                data = (ca / "crl.pem").read_bytes()
                x509.load_pem_x509_crl(data)
                for f in ("crlnumber", "revoked.txt", "issued.txt"):
                    t = (ca / f).read_text()
                    if not t.endswith("\n"):
                        seen["bad"].append((f, t))
                seen["reads"] += 1
            except Exception as ex:  # noqa: BLE001 - any failure is the finding
                seen["bad"].append(repr(ex))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        res = concurrently(sd_bin, [["crl", "--dir", ca] for _ in range(10)])
    finally:
        stop.set()
        th.join(10)
    assert all(rc == 0 for rc, _, _ in res), res
    numbers = [int(re.search(r"CRL number (\d+)", o).group(1)) for _, o, _ in res]
    assert sorted(numbers) == list(range(2, 12)), "CRL numbers reused or skipped: %s" % numbers
    assert crl_number(crl_of(ca)) == 11
    assert (ca / "crlnumber").read_text().strip() == "11"
    assert not seen["bad"], seen["bad"][:5]
    assert seen["reads"] > 0


def test_concurrent_issue_of_one_name(sd_bin, ca):
    res = concurrently(sd_bin, [["issue", "--dir", ca, "--name", "svc", "--server"]] * 8)
    ok = [r for r in res if r[0] == 0]
    assert len(ok) == 1, "exactly one first issue of 'svc' may win: %s" % res
    for rc, _, e in res:
        if rc != 0:
            assert rc == 1 and "svc.crt" in e and "--reissue" in e, (rc, e)

    res = concurrently(sd_bin, [["issue", "--dir", ca, "--name", "svc", "--server",
                                 "--reissue"]] * 8)
    assert all(rc == 0 for rc, _, _ in res), res
    index = issued_index(ca)
    assert len(index) == 9 and {n for _, n in index} == {"svc"}, index
    assert len({s for s, _ in index}) == 9
    # The files that won are a matching pair, and the last serial recorded.
    key = serialization.load_pem_private_key((ca / "svc.key").read_bytes(), None)
    crt = x509.load_pem_x509_certificate((ca / "svc.crt").read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        crt.public_key().public_bytes(serialization.Encoding.DER, spki)
    assert crt.serial_number == index[-1][0]

    r = pki(sd_bin, "revoke", "--dir", ca, "--name", "svc")
    assert "revoked 9 certificates" in r.stdout.decode(), r.stdout
    pki(sd_bin, "crl", "--dir", ca)
    assert revoked_serials(crl_of(ca)) == {s for s, _ in index}


def test_concurrent_init_and_issue(sd_bin, tmp_path):
    d = tmp_path / "race"
    cmds = [["init", "--dir", d]] * 6 + \
           [["issue", "--dir", d, "--name", "r%d" % i, "--client"] for i in range(4)]
    res = concurrently(sd_bin, cmds)
    inits = res[:6]
    assert sum(1 for rc, _, _ in inits if rc == 0) == 1, inits
    for rc, _, e in inits:
        assert rc == 0 or "already exists" in e or "not empty" in e, e
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    ca_crt = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert ca_key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        ca_crt.public_key().public_bytes(serialization.Encoding.DER, spki), \
        "racing inits left a key and a certificate of two different CAs"
    for i, (rc, _, e) in enumerate(res[6:]):
        if rc == 0:  # an issue that ran after the init: signed by *the* CA
            code, out = openssl_verify(d, d / ("r%d.crt" % i), crl=False)
            assert code == 0, out
    # An init later never replaces it.
    before = (d / "ca.key").read_bytes()
    r = pki(sd_bin, "init", "--dir", d, rc=1)
    assert b"ca.key" in r.stderr
    assert (d / "ca.key").read_bytes() == before


def test_keys_never_readable_by_others(sd_bin, ca):
    """With umask 000, every *.key (temporary files included) is 0600 the
    whole time: a watcher lists the directory while 10 issues run."""
    stop = threading.Event()
    wide = []
    looks = [0]

    def watcher():
        for _ in range(200000):  # bounded; ends much earlier via stop
            if stop.is_set():
                return
            try:
                with os.scandir(ca) as it:
                    for e in it:
                        if ".key" in e.name or e.name == ".lock":
                            m = e.stat(follow_symlinks=False).st_mode
                            looks[0] += 1
                            if m & 0o077:
                                wide.append((e.name, oct(m)))
            except FileNotFoundError:
                pass  # an entry renamed away between listing and stat

    th = threading.Thread(target=watcher, daemon=True)
    th.start()
    try:
        res = concurrently(sd_bin, [["issue", "--dir", ca, "--name", "k%d" % i, "--client"]
                                    for i in range(10)], umask=0)
    finally:
        stop.set()
        th.join(10)
    assert all(rc == 0 for rc, _, _ in res), res
    assert not wide, "key files readable by others: %s" % wide[:5]
    assert looks[0] > 0
    for i in range(10):
        assert stat.S_IMODE(os.stat(ca / ("k%d.key" % i)).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(ca / ("k%d.crt" % i)).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(ca / "ca.key").st_mode) == 0o600


# --------------------------------------------------------------------------
# 4. re-issuing a name
# --------------------------------------------------------------------------

def test_reissue_then_revoke_refuses_old_and_new(sd_bin, steeldoor, backends, tmp_path):
    d = tmp_path / "devpki"
    pki(sd_bin, "init", "--dir", d)
    pki(sd_bin, "issue", "--dir", d, "--name", "api", "--server", "--dns", "localhost",
        "--ip", "127.0.0.1")
    for n in ("alice", "bob"):
        pki(sd_bin, "issue", "--dir", d, "--name", n, "--client", "--uri",
            "spiffe://example.org/" + n)
    keep = tmp_path / "kept"
    keep.mkdir()
    shutil.copy(d / "bob.crt", keep / "bob-v1.crt")
    shutil.copy(d / "bob.key", keep / "bob-v1.key")
    v1 = serial_hex(d / "bob.crt")

    # Without --reissue: refused, naming the existing certificate; nothing changes.
    r = pki(sd_bin, "issue", "--dir", d, "--name", "bob", "--client", rc=1)
    err = r.stderr.decode()
    assert "bob.crt" in err and v1 in err and "--reissue" in err, err
    assert (d / "bob.crt").read_bytes() == (keep / "bob-v1.crt").read_bytes()

    r = pki(sd_bin, "issue", "--dir", d, "--name", "bob", "--client", "--uri",
            "spiffe://example.org/bob", "--reissue")
    v2 = serial_hex(d / "bob.crt")
    assert v2 != v1 and v2 in r.stdout.decode()

    r = pki(sd_bin, "revoke", "--dir", d, "--name", "bob")
    assert "revoked 2 certificates" in r.stdout.decode(), r.stdout
    pki(sd_bin, "crl", "--dir", d)
    assert revoked_serials(crl_of(d)) == {int(v1, 16), int(v2, 16)}

    # openssl agrees: both of bob's certificates are revoked, alice's is fine.
    for cert in (keep / "bob-v1.crt", d / "bob.crt"):
        code, out = openssl_verify(d, cert)
        assert code != 0 and "revoked" in out, (cert, out)
    code, out = openssl_verify(d, d / "alice.crt")
    assert code == 0, out

    # And so does steeldoor.
    be = backends()
    sd = steeldoor(target=be.target, cert=d / "api.crt", key=d / "api.key",
                   cacert=d / "ca.crt", extra=["--crl", d / "crl.pem"])
    ca = d / "ca.crt"
    for pair in ((keep / "bob-v1.crt", keep / "bob-v1.key"), (d / "bob.crt", d / "bob.key")):
        expect_refused(sd, be, sdlib.client_ctx(ca, pair[0], pair[1]), sd.port,
                       "certificate_revoked")
    expect_admitted(sd, sdlib.client_ctx(ca, d / "alice.crt", d / "alice.key"), sd.port)


def test_revoke_one_serial(sd_bin, ca):
    pki(sd_bin, "issue", "--dir", ca, "--name", "carol", "--client")
    shutil.copy(ca / "carol.crt", ca.parent / "carol-v1.crt")
    first = serial_hex(ca / "carol.crt")
    pki(sd_bin, "issue", "--dir", ca, "--name", "carol", "--client", "--reissue")
    # As openssl x509 -serial prints it, or with ':' separators, any case.
    colons = ":".join(first[i:i + 2] for i in range(0, len(first), 2)).lower()
    r = pki(sd_bin, "revoke", "--dir", ca, "--serial", colons)
    assert "revoked 1 certificate" in r.stdout.decode()
    pki(sd_bin, "crl", "--dir", ca)
    assert revoked_serials(crl_of(ca)) == {int(first, 16)}
    code, out = openssl_verify(ca, ca.parent / "carol-v1.crt")
    assert code != 0 and "revoked" in out, out
    code, out = openssl_verify(ca, ca / "carol.crt")
    assert code == 0, out
    # A serial this CA never issued, and bad usage.
    r = pki(sd_bin, "revoke", "--dir", ca, "--serial", "0123", rc=1)
    assert b"issued.txt" in r.stderr
    pki(sd_bin, "revoke", "--dir", ca, "--serial", "xyz", rc=2)
    pki(sd_bin, "revoke", "--dir", ca, "--name", "carol", "--serial", first, rc=2)


# --------------------------------------------------------------------------
# 5. a CA directory others control
# --------------------------------------------------------------------------

def _every_command(d, serial):
    return [
        ["init", "--dir", d],
        ["init", "--dir", d, "--force"],
        ["issue", "--dir", d, "--name", "mallory", "--client"],
        ["revoke", "--dir", d, "--name", "api"],
        ["revoke", "--dir", d, "--serial", serial],
        ["crl", "--dir", d],
    ]


def _snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}


def _expect_refused_all(sd_bin, d, cmds, culprit, fix):
    before = _snapshot(d)
    for c in cmds:
        r = pki(sd_bin, *c, rc=None)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 1, "%s: rc %d (%s)" % (c, r.returncode, err)
        assert ("%s: " % culprit) in err and fix in err, \
            "%s: error does not name %s and '%s': %s" % (c, culprit, fix, err)
    assert _snapshot(d) == before, "a refused command changed the CA directory"


@pytest.fixture
def live_ca(sd_bin, ca):
    pki(sd_bin, "issue", "--dir", ca, "--name", "api", "--server", "--dns", "localhost")
    pki(sd_bin, "crl", "--dir", ca)
    return ca


def _works_again(sd_bin, d, serial):
    pki(sd_bin, "issue", "--dir", d, "--name", "after", "--client")
    pki(sd_bin, "revoke", "--dir", d, "--serial", serial)
    pki(sd_bin, "revoke", "--dir", d, "--name", "api")
    pki(sd_bin, "crl", "--dir", d)


def test_group_or_other_writable_dir_refused(sd_bin, live_ca):
    d = live_ca
    serial = serial_hex(d / "api.crt")
    for bits in (stat.S_IWGRP, stat.S_IWOTH):
        os.chmod(d, 0o700 | bits)
        try:
            _expect_refused_all(sd_bin, d, _every_command(d, serial), d, "chmod go-w")
        finally:
            os.chmod(d, 0o700)
    _works_again(sd_bin, d, serial)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_dir_owned_by_someone_else_refused(sd_bin, live_ca, tmp_path):
    """The attack: another user owns the directory and puts their own CA in
    it; root must not sign with it."""
    d = live_ca
    nobody = pwd.getpwnam("nobody")
    serial = serial_hex(d / "api.crt")
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    try:
        _expect_refused_all(sd_bin, d, _every_command(d, serial), d, "chown")
        # A brand-new directory the other user prepared is refused too.
        fresh = tmp_path / "theirs"
        fresh.mkdir(mode=0o700)
        os.chown(fresh, nobody.pw_uid, nobody.pw_gid)
        r = pki(sd_bin, "init", "--dir", fresh, rc=1)
        assert str(fresh).encode() in r.stderr and b"owned by uid" in r.stderr, r.stderr
        assert not (fresh / "ca.key").exists()
    finally:
        os.chown(d, 0, 0)
    _works_again(sd_bin, d, serial)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_ca_files_owned_by_someone_else_refused(sd_bin, live_ca):
    d = live_ca
    nobody = pwd.getpwnam("nobody")
    serial = serial_hex(d / "api.crt")
    issue = ["issue", "--dir", d, "--name", "mallory", "--client"]
    crl = ["crl", "--dir", d]
    revoke = ["revoke", "--dir", d, "--name", "api"]
    for f, cmds in (("ca.key", [issue, crl]), ("ca.crt", [issue, crl, revoke]),
                    ("issued.txt", [issue, revoke]), ("crlnumber", [crl])):
        os.chown(d / f, nobody.pw_uid, nobody.pw_gid)
        try:
            _expect_refused_all(sd_bin, d, cmds, d / f, "chown")
        finally:
            os.chown(d / f, 0, 0)
    _works_again(sd_bin, d, serial)


def test_open_ca_key_and_writable_files_refused(sd_bin, live_ca):
    d = live_ca
    serial = serial_hex(d / "api.crt")
    issue = ["issue", "--dir", d, "--name", "mallory", "--client"]
    crl = ["crl", "--dir", d]
    revoke = ["revoke", "--dir", d, "--name", "api"]
    # A CA key readable by others is refused (not merely warned about), as ssh does.
    for mode in (0o644, 0o640, 0o604):
        os.chmod(d / "ca.key", mode)
        try:
            _expect_refused_all(sd_bin, d, [issue, crl], d / "ca.key", "chmod 600")
        finally:
            os.chmod(d / "ca.key", 0o600)
    for f, cmds in (("ca.crt", [issue, crl, revoke]), ("issued.txt", [issue, revoke])):
        os.chmod(d / f, 0o664)
        try:
            _expect_refused_all(sd_bin, d, cmds, d / f, "chmod go-w")
        finally:
            os.chmod(d / f, 0o644)
    _works_again(sd_bin, d, serial)


def test_symlinked_ca_key_refused(sd_bin, live_ca, tmp_path):
    """No symlink games: a link in place of ca.key (to a key elsewhere, here
    even a valid one) is not followed."""
    d = live_ca
    outside = tmp_path / "elsewhere.key"
    shutil.move(str(d / "ca.key"), str(outside))
    os.symlink(outside, d / "ca.key")
    try:
        _expect_refused_all(sd_bin, d, [["issue", "--dir", d, "--name", "m", "--client"],
                                        ["crl", "--dir", d]], d / "ca.key", "symbolic link")
    finally:
        os.unlink(d / "ca.key")
        shutil.move(str(outside), str(d / "ca.key"))
    _works_again(sd_bin, d, serial_hex(d / "api.crt"))


# --------------------------------------------------------------------------
# issue 12: one URI validator for `pki issue --uri` and `serve --allow-uri`
# --------------------------------------------------------------------------

# (URI, why it is tricky). Whatever pki puts in a certificate, serve must be
# able to name exactly in an allow rule, and the other way round.
TRICKY_URIS = [
    ("spiffe://example.org/ns/default/sa/api", "a plain SPIFFE ID"),
    ("spiffe://example.org/a b", "a space"),
    ("example.org/billing", "no scheme"),
    ("urn:example:billing", "a scheme without //authority"),
    ("SPIFFE://example.org/billing", "an uppercase scheme"),
    ("spiffe://example.org/a/../b", "a '..' segment"),
    ("spiffe://example.org/a/./b", "a '.' segment"),
    ("spiffe://example.org/a//b", "an empty segment"),
    ("spiffe://example.org/a/", "a trailing '/'"),
    ("spiffe:///a", "an empty authority"),
    ("spiffe://example.org/%62illing", "a '%' escape"),
    ("https://example.org/a?x=1", "a query"),
    ("https://example.org/a#frag", "a fragment"),
    ("https://user@example.org/a", "userinfo"),
    ("https://example.org:8443/a", "a port"),
    ("https://example.org", "no path"),
    ("spiffe://example.org/" + "a" * 2027, "2048 bytes, the longest"),
    ("spiffe://example.org/" + "a" * 2028, "2049 bytes, one too many"),
    ("spiffe://example.org/caf\u00e9", "non-ASCII"),
    ("spiffe://example.org/*", "a wildcard segment"),
    ("spiffe://*/a", "a wildcard authority"),
    ("spiffe://example.org/a\\b", "a backslash"),
]


def _serve_accepts_uri(sd_bin, d, uri):
    """serve's verdict on `--allow-uri URI`, without starting: the rule is
    given together with --allow-all, which serve refuses once the rules are
    parsed ("cannot be combined"); a rule it cannot parse fails before that
    with a message about the rule. Returns True / False; anything else
    fails the test."""
    args = [str(sd_bin), "serve", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:1",
            "--cert", str(d / "api.crt"), "--key", str(d / "api.key"),
            "--cacert", str(d / "ca.crt"), "--allow-uri", uri, "--allow-all"]
    r = run(args, timeout=TIMEOUT)
    err = r.stderr.decode(errors="replace")
    _no_sanitizer(r.stderr, "serve --allow-uri")
    assert r.returncode != 0, "serve started with --allow-uri and --allow-all: %s" % err
    rule_error = "allow-uri" in err and "cannot be combined" not in err
    combined = "cannot be combined" in err
    assert rule_error != combined, "cannot tell serve's verdict on %r from: %s" % (uri, err)
    return combined


def _pki_accepts_uri(sd_bin, d, name, uri):
    r = pki(sd_bin, "issue", "--dir", d, "--name", name, "--client", "--uri", uri, rc=None)
    assert r.returncode in (0, 2), "pki issue --uri %r: rc %d: %s" % (
        uri, r.returncode, r.stderr.decode(errors="replace"))
    if r.returncode == 2:
        assert not (d / (name + ".crt")).exists(), "a refused URI left a certificate"
    return r.returncode == 0


def test_pki_and_serve_agree_on_uris(sd_bin, live_ca):
    """Every tricky URI: pki issues it exactly when serve accepts it as a
    rule without wildcards (a wildcard is a pattern for serve, never a
    certificate's URI: no rule could ever match it, so pki refuses it)."""
    disagree = []
    for i, (uri, why) in enumerate(TRICKY_URIS):
        serve_ok = _serve_accepts_uri(sd_bin, live_ca, uri)
        pki_ok = _pki_accepts_uri(sd_bin, live_ca, "u%d" % i, uri)
        want = serve_ok and "*" not in uri
        if pki_ok != want:
            disagree.append("%s (%s): pki %s, serve %s" % (
                uri[:60], why, "issues" if pki_ok else "refuses",
                "accepts" if serve_ok else "refuses"))
    assert not disagree, "pki issue --uri and serve --allow-uri disagree:\n" + "\n".join(disagree)
    # the list exercises both sides, and the wildcard case
    verdicts = [_serve_accepts_uri(sd_bin, live_ca, u) for u, _ in TRICKY_URIS]
    assert any(verdicts) and not all(verdicts)
    assert _serve_accepts_uri(sd_bin, live_ca, "spiffe://example.org/*")


def test_issued_uri_is_admitted_by_its_rule(sd_bin, live_ca, steeldoor, backends):
    """A URI pki accepted really admits the client it was issued to, by a
    rule naming it exactly; a client with another URI is refused."""
    d = live_ca
    uris = ["HTTPS://user@example.org:8443/a/b", "spiffe://example.org/" + "l" * 2027]
    for i, uri in enumerate(uris):
        assert _pki_accepts_uri(sd_bin, d, "adm%d" % i, uri)
    pki(sd_bin, "issue", "--dir", d, "--name", "other", "--client", "--uri",
        "spiffe://example.org/other")
    be = backends()
    extra = []
    for uri in uris:
        extra += ["--allow-uri", uri]
    sd = steeldoor(target=be.target, cert=d / "api.crt", key=d / "api.key",
                   cacert=d / "ca.crt", allow_all=False, extra=extra)
    ca_crt = d / "ca.crt"
    for i, uri in enumerate(uris):
        e = expect_admitted(sd, sdlib.client_ctx(ca_crt, d / ("adm%d.crt" % i),
                                                 d / ("adm%d.key" % i)), sd.port)
        if len(uri) < 100:  # a long rule is cut in the log line
            assert e.get("rule") == "uri:" + uri, e
    expect_refused(sd, be, sdlib.client_ctx(ca_crt, d / "other.crt", d / "other.key"),
                   sd.port, "not_authorized")
