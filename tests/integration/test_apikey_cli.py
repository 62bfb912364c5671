"""`steeldoor apikey new|list|revoke` (issue 14), always with the real binary.

The key is printed once and never stored (only its SHA-256); the file is
0600, rewritten atomically, never half-written, never lost under 20
concurrent writers; an invalid file is never touched; a bad command line
changes nothing (exit 2); runtime failures exit 1 with "steeldoor apikey: ".
"""
import calendar
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from sdlib import run

SAN_MARKERS = (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:")
TIMEOUT = 60
KEY_RE = re.compile(r"^sdk_[A-Za-z0-9_-]{43}\n\Z")
HEADER = b"# steeldoor API keys: digests only, never keys (steeldoor apikey new|list|revoke)\n"
SPIFFE = "uri:spiffe://example.org/billing"


def _no_sanitizer(err, what):
    for m in SAN_MARKERS:
        assert m not in err, "sanitizer report from %s:\n%s" % (what, err.decode(errors="replace"))


def apikey(sd_bin, *args, rc=0, prefix=()):
    cmd = list(prefix) + [str(sd_bin), "apikey"] + [str(a) for a in args]
    r = run(cmd, timeout=TIMEOUT)
    what = "steeldoor apikey " + " ".join(map(str, args))
    _no_sanitizer(r.stderr, what)
    if rc is not None:
        assert r.returncode == rc, "%s: rc %d, expected %d\nstdout: %s\nstderr: %s" % (
            what, r.returncode, rc, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"))
    if r.returncode == 1 or r.returncode == 2:
        assert r.stderr.startswith(b"steeldoor apikey: "), r.stderr
    return r


def new_key(sd_bin, f, key_id, *extra, bind=SPIFFE):
    r = apikey(sd_bin, "new", "--file", f, "--id", key_id, "--bind", bind, *extra)
    out = r.stdout.decode()
    assert KEY_RE.match(out), repr(out)
    return out.strip()


def sha256_hex(key):
    return hashlib.sha256(key.encode()).hexdigest()


def listing(sd_bin, f):
    r = apikey(sd_bin, "list", "--file", f, "--json")
    return json.loads(r.stdout)


# --------------------------------------------------------------------- new

def test_new_prints_the_key_once_and_stores_only_its_digest(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    r = apikey(sd_bin, "new", "--file", f, "--id", "billing-ci", "--bind", SPIFFE,
               "--bind", "dns:api.example.com", "--path", "/invoices/")
    out = r.stdout.decode()
    assert KEY_RE.match(out), repr(out)  # the key and a newline, nothing else
    key = out.strip()
    assert r.stderr.decode() == ("steeldoor: key 'billing-ci' added to %s (shown once: it is "
                                 "not stored, only its SHA-256)\n" % f)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    data = f.read_bytes()
    assert data.startswith(HEADER)
    assert ('"sha256:%s"' % sha256_hex(key)).encode() in data
    assert key.encode() not in data and key[4:].encode() not in data
    assert key.encode() not in r.stderr
    # no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.yaml"]
    (e,) = listing(sd_bin, f)
    assert e == {"id": "billing-ci", "status": "active",
                 "bind": [SPIFFE, "dns:api.example.com"], "expires": None, "revoked": None,
                 "paths": ["/invoices/"]}
    # two keys are never the same
    k2 = new_key(sd_bin, f, "second")
    assert k2 != key and sha256_hex(k2).encode() in f.read_bytes()


def test_new_key_works_in_a_shell_substitution(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    r = run(["sh", "-c", 'KEY=$("$0" apikey new --file "$1" --id ci --bind cn:ci) && '
             'printf "%s" "$KEY"', sd_bin, f], timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    key = r.stdout.decode()
    assert KEY_RE.match(key + "\n")
    assert sha256_hex(key).encode() in f.read_bytes()


def test_duplicate_id_refused_and_file_unchanged(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    new_key(sd_bin, f, "ci")
    before = f.read_bytes()
    r = apikey(sd_bin, "new", "--file", f, "--id", "ci", "--bind", "cn:other", rc=1)
    assert r.stdout == b""
    assert b"key 'ci' already exists in" in r.stderr
    assert f.read_bytes() == before


def test_bad_bind_is_a_usage_error_and_touches_nothing(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    for bind, word in (("foo", b"is not a pattern (uri:..., dns:..., cn:..., ou:..., spki:...)"),
                       ("all", b"bound to none"), ("allow-all", b"bound to none"),
                       ("uri:spiffe://example.org/a/../b", b"not a valid URI pattern"),
                       ("dns:*.example.com", b"not a DNS name"),
                       ("spki:abcd", b"SHA-256")):
        r = apikey(sd_bin, "new", "--file", f, "--id", "x", "--bind", bind, rc=2)
        assert word in r.stderr, r.stderr
        assert r.stdout == b""
        assert not f.exists()  # not even created
    new_key(sd_bin, f, "ok")
    before = f.read_bytes()
    for args in (["--bind", "foo"], ["--bind", "cn:a", "--path", "api"],
                 ["--bind", "cn:a", "--path", "/a/../b"], ["--bind", "cn:a", "--path", "/a?x"],
                 ["--bind", "cn:a", "--bind", "cn:a"], ["--bind", "cn:a", "--expires", "2027-02-30"],
                 ["--bind", os.fsdecode(b"cn:\xff")]):
        r = apikey(sd_bin, "new", "--file", f, "--id", "y", *args, rc=2)
        assert r.stdout == b""
        assert f.read_bytes() == before, args


def test_usage_errors(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    r = apikey(sd_bin, rc=2)
    assert b"a command is needed" in r.stderr
    r = apikey(sd_bin, "frobnicate", rc=2)
    assert b"unknown command 'frobnicate'" in r.stderr
    r = apikey(sd_bin, "new", "--id", "a", "--bind", "cn:a", rc=2)
    assert b"--file is required" in r.stderr
    r = apikey(sd_bin, "new", "--file", f, "--bind", "cn:a", rc=2)
    assert b"--id is required" in r.stderr
    r = apikey(sd_bin, "new", "--file", f, "--id", "a", rc=2)
    assert b"--bind is required" in r.stderr
    r = apikey(sd_bin, "new", "--file", f, "--id", "a b", "--bind", "cn:a", rc=2)
    assert b"not an id" in r.stderr
    r = apikey(sd_bin, "new", "--file", f, "--id", "a", "--bind", "cn:a", "--frob", rc=2)
    assert b"unknown option '--frob'" in r.stderr
    r = apikey(sd_bin, "new", "--file", f, "--id", "a", "--bind", "cn:a", "extra", rc=2)
    assert b"unexpected argument 'extra'" in r.stderr
    apikey(sd_bin, "list", rc=2)
    apikey(sd_bin, "revoke", "--file", f, rc=2)
    assert not f.exists()
    # --help everywhere, on stdout, exit 0
    r = apikey(sd_bin, "--help")
    assert b"new" in r.stdout and b"revoke" in r.stdout
    r = apikey(sd_bin, "new", "--help")
    assert b"--bind" in r.stdout and b"comments" in r.stdout
    assert b"--json" in apikey(sd_bin, "list", "--help").stdout
    assert b"--id" in apikey(sd_bin, "revoke", "--help").stdout
    r = run([sd_bin, "--help"])
    assert b"apikey    API keys bound to client identities (steeldoor apikey --help)" in r.stdout


def test_expires(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    for past in ("2001-01-01", time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400)),
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))):
        r = apikey(sd_bin, "new", "--file", f, "--id", "a", "--bind", "cn:a",
                   "--expires", past, rc=2)
        assert b"in the past" in r.stderr
        assert not f.exists()
    new_key(sd_bin, f, "dated", "--expires", "2099-12-31")
    new_key(sd_bin, f, "timed", "--expires", "2099-01-02T03:04:05Z")
    got = {e["id"]: e["expires"] for e in listing(sd_bin, f)}
    assert got == {"dated": "2099-12-31T00:00:00Z", "timed": "2099-01-02T03:04:05Z"}


# -------------------------------------------------------------- list, revoke

def test_list_and_revoke(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    k1 = new_key(sd_bin, f, "first", "--path", "/api")
    k2 = new_key(sd_bin, f, "second", bind="spiffe://example.org/b")
    r = apikey(sd_bin, "list", "--file", f)
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["ID", "STATUS", "BOUND", "TO", "EXPIRES", "PATHS"]
    assert lines[1].split() == ["first", "active", SPIFFE, "never", "/api"]
    assert lines[2].split() == ["second", "active", "spiffe://example.org/b", "never", "(all)"]
    for k in (k1, k2):  # neither keys nor digests are shown
        assert k.encode() not in r.stdout and sha256_hex(k).encode() not in r.stdout

    before = time.time()
    r = apikey(sd_bin, "revoke", "--file", f, "--id", "first")
    assert b"revoked key 'first'" in r.stdout
    entries = {e["id"]: e for e in listing(sd_bin, f)}
    assert entries["first"]["status"] == "revoked"
    assert entries["second"]["status"] == "active"
    rev = calendar.timegm(time.strptime(entries["first"]["revoked"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before - 2 <= rev <= time.time() + 2
    # the entry stays (a use of the revoked key is logged as such)
    data = f.read_bytes()
    assert sha256_hex(k1).encode() in data and b"revoked:" in data
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    r = apikey(sd_bin, "list", "--file", f)
    assert re.search(rb"^first\s+revoked\s", r.stdout, re.M)

    # revoking twice: a note, nothing changed
    before_bytes = f.read_bytes()
    r = apikey(sd_bin, "revoke", "--file", f, "--id", "first")
    assert b"already revoked" in r.stderr
    assert f.read_bytes() == before_bytes
    # an unknown id
    r = apikey(sd_bin, "revoke", "--file", f, "--id", "nobody", rc=1)
    assert r.stderr.decode().strip() == "steeldoor apikey: no key 'nobody' in %s" % f
    assert f.read_bytes() == before_bytes
    # a missing file is not created by revoke
    r = apikey(sd_bin, "revoke", "--file", tmp_path / "none.yaml", "--id", "x", rc=1)
    assert not (tmp_path / "none.yaml").exists()


def test_list_statuses_of_a_hand_written_file(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    f.write_text('# mine\n'
                 '- id: old\n  digest: "sha256:%s"\n  bind: cn:a\n  expires: 2001-01-01\n'
                 '- id: gone\n  digest: "sha256:%s"\n  bind: [\'cn:say "hi" \\ there\']\n'
                 '  revoked: 2020-01-01\n'
                 '- id: live\n  digest: "sha256:%s"\n  bind: "ou:Z\\u00fcrich"\n'
                 % ("a" * 64, "b" * 64, "c" * 64))
    got = {e["id"]: e for e in listing(sd_bin, f)}
    assert got["old"]["status"] == "expired"
    assert got["gone"]["status"] == "revoked"
    assert got["gone"]["bind"] == ['cn:say "hi" \\ there']  # JSON escaping holds
    assert got["live"]["status"] == "active" and got["live"]["bind"] == ["ou:Z\u00fcrich"]
    # a rewrite keeps every entry exactly (quotes, backslashes, UTF-8); the
    # hand-written comment goes
    new_key(sd_bin, f, "added")
    again = {e["id"]: e for e in listing(sd_bin, f)}
    for k in ("old", "gone", "live"):
        assert again[k] == got[k]
    assert b"# mine" not in f.read_bytes()


def test_list_empty(sd_bin, tmp_path):
    for text in ("", "# nothing yet\n", "[]\n"):
        f = tmp_path / "keys.yaml"
        f.write_text(text)
        r = apikey(sd_bin, "list", "--file", f)
        assert r.stdout == b"" and r.stderr == b"no keys\n"
        r = apikey(sd_bin, "list", "--file", f, "--json")
        assert json.loads(r.stdout) == []
    r = apikey(sd_bin, "list", "--file", tmp_path / "missing.yaml", rc=1)
    assert b"missing.yaml" in r.stderr


# ------------------------------------------------------------- file safety

def test_invalid_existing_file_is_never_overwritten(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    for text, word in (("id: x\ndigest: y\n", b"must be a list"),
                       ("- id: a\n  digest: \"sha256:%s\"\n  bind: foo\n" % ("a" * 64),
                        b"is not a pattern"),
                       ("- id: a\n  colour: blue\n", b"unknown field 'colour'"),
                       ("- id: \"unclosed\n", b"YAML error")):
        f.write_text(text)
        before = f.read_bytes()
        r = apikey(sd_bin, "new", "--file", f, "--id", "b", "--bind", "cn:b", rc=1)
        assert r.stdout == b""  # no key is shown for an entry that was not stored
        assert str(f).encode() + b":" in r.stderr and word in r.stderr, r.stderr
        assert f.read_bytes() == before
        r = apikey(sd_bin, "revoke", "--file", f, "--id", "a", rc=1)
        assert f.read_bytes() == before
        r = apikey(sd_bin, "list", "--file", f, rc=1)
        assert word in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.yaml"]


def test_mode_of_an_existing_file_is_kept(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    f.write_text("[]\n")
    os.chmod(f, 0o640)
    new_key(sd_bin, f, "a")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    apikey(sd_bin, "revoke", "--file", f, "--id", "a")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    # a new file is 0600 whatever the umask lets through
    g = tmp_path / "fresh.yaml"
    old = os.umask(0)
    try:
        new_key(sd_bin, g, "a")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(g).st_mode) == 0o600


def test_symlink_refused(sd_bin, tmp_path):
    real = tmp_path / "real.yaml"
    real.write_text("[]\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    r = apikey(sd_bin, "new", "--file", link, "--id", "a", "--bind", "cn:a", rc=1)
    assert b"symbolic link" in r.stderr
    assert link.is_symlink() and real.read_text() == "[]\n"


def test_concurrent_new_loses_no_entry(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    n = 20
    procs = [subprocess.Popen([str(sd_bin), "apikey", "new", "--file", str(f), "--id",
                               "k%02d" % i, "--bind", "cn:client-%d" % i],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(n)]
    keys = []
    deadline = time.monotonic() + TIMEOUT
    try:
        for i, p in enumerate(procs):
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            _no_sanitizer(e, "apikey new k%02d" % i)
            assert p.returncode == 0, e
            assert KEY_RE.match(o.decode()), o
            keys.append(o.decode().strip())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    entries = listing(sd_bin, f)
    assert sorted(e["id"] for e in entries) == ["k%02d" % i for i in range(n)]
    data = f.read_bytes()
    for k in keys:
        assert sha256_hex(k).encode() in data
    assert len(set(keys)) == n
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.yaml"]


def test_concurrent_new_and_revoke(sd_bin, tmp_path):
    """Writers of both kinds interleave on one file: nothing is lost."""
    f = tmp_path / "keys.yaml"
    for i in range(6):
        new_key(sd_bin, f, "old%d" % i)
    args = [["new", "--file", f, "--id", "new%d" % i, "--bind", "cn:n%d" % i] for i in range(6)]
    args += [["revoke", "--file", f, "--id", "old%d" % i] for i in range(6)]
    procs = [subprocess.Popen([str(sd_bin), "apikey"] + [str(x) for x in a],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in args]
    for p in procs:
        o, e = p.communicate(timeout=TIMEOUT)
        _no_sanitizer(e, "apikey")
        assert p.returncode == 0, e
    got = {e["id"]: e["status"] for e in listing(sd_bin, f)}
    assert got == dict([("old%d" % i, "revoked") for i in range(6)] +
                       [("new%d" % i, "active") for i in range(6)])


def _nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def test_read_only_directory_fails_cleanly(sd_bin, tmp_path):
    """No write permission on the directory: `new` fails with exit 1 and a
    message naming the file, creates nothing and leaves an existing file as
    it was. Root ignores permissions, so as root the command runs as nobody
    (setpriv) in a directory under /tmp that nobody can enter."""
    prefix = ()
    if os.geteuid() == 0:
        nb = _nobody()
        if nb is None or shutil.which("setpriv") is None:
            pytest.skip("needs the user nobody and setpriv to drop root")
        prefix = ("setpriv", "--reuid=%d" % nb.pw_uid, "--regid=%d" % nb.pw_gid,
                  "--clear-groups", "--")
    d = tempfile.mkdtemp(prefix="sd-apikey-ro-")
    try:
        existing = os.path.join(d, "keys.yaml")
        with open(existing, "w") as fh:
            fh.write("[]\n")
        os.chmod(existing, 0o644)
        os.chmod(d, 0o555)
        missing = os.path.join(d, "new.yaml")
        r = apikey(sd_bin, "new", "--file", missing, "--id", "a", "--bind", "cn:a", rc=1,
                   prefix=prefix)
        assert r.stdout == b""
        assert missing.encode() in r.stderr and b"cannot create" in r.stderr, r.stderr
        assert not os.path.exists(missing)
        if os.geteuid() == 0:
            os.chmod(existing, 0o666)  # nobody may open it; the directory still refuses
        r = apikey(sd_bin, "new", "--file", existing, "--id", "a", "--bind", "cn:a", rc=1,
                   prefix=prefix)
        assert r.stdout == b""
        assert b"temporary file" in r.stderr and b"Permission denied" in r.stderr, r.stderr
        with open(existing) as fh:
            assert fh.read() == "[]\n"
        assert sorted(os.listdir(d)) == ["keys.yaml"]
    finally:
        os.chmod(d, 0o700)
        shutil.rmtree(d, ignore_errors=True)
