"""Secrets stay out of core files, and `--user` runs steeldoor unprivileged.

Every steeldoor process is non-dumpable with a core size limit of 0 (soft and
hard). Whether a process is dumpable is not shown in /proc/PID/status, but
the kernel makes /proc/PID/* of a non-dumpable process owned by root:root
whatever its uid: so a process running as nobody whose /proc/PID/status is
owned by root is not dumpable (a dumpable one's belongs to nobody). That is
checked on processes running as nobody: with --user (started as root) and
without (started as nobody). As root, /proc/PID/limits shows the core limit.

`--user` needs root: those tests are skipped otherwise (the CI runs as root).
"""
import grp
import os
import pwd
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

import sdlib
from conftest import assert_healthy, expect_refused, free_port, sighup_reload

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")

try:
    NOBODY = pwd.getpwnam("nobody")
    NOGROUP_GID = NOBODY.pw_gid
except KeyError:  # pragma: no cover - Debian always has it
    NOBODY = None
    NOGROUP_GID = None
needs_nobody = pytest.mark.skipif(NOBODY is None, reason="no 'nobody' account")


# --------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------

def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def core_limit(pid):
    """(soft, hard) of RLIMIT_CORE as /proc/PID/limits prints them."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                p = line[len("Max core file size"):].split()
                return p[0], p[1]
    raise AssertionError("no core line in /proc/%d/limits" % pid)


def proc_owner(pid):
    st = os.stat("/proc/%d/status" % pid)
    return st.st_uid, st.st_gid


def assert_no_core(pid, who):
    assert core_limit(pid) == ("0", "0"), "%s %d: core limit %s, expected 0 0" % (
        who, pid, core_limit(pid))


def assert_not_dumpable_as_nobody(pid, who):
    """pid runs as nobody; its /proc files must belong to root (not dumpable)."""
    st = proc_status(pid)
    assert st["Uid"].split()[0] == str(NOBODY.pw_uid), "%s %d: %s" % (who, pid, st["Uid"])
    assert proc_owner(pid) == (0, 0), (
        "%s %d runs as nobody but /proc/%d/status is owned by %s: the process is "
        "dumpable" % (who, pid, pid, proc_owner(pid)))


def assert_unprivileged(pid, who):
    st = proc_status(pid)
    u, g = str(NOBODY.pw_uid), str(NOGROUP_GID)
    assert st["Uid"].split() == [u] * 4, "%s %d: Uid %s" % (who, pid, st["Uid"])
    assert st["Gid"].split() == [g] * 4, "%s %d: Gid %s" % (who, pid, st["Gid"])
    assert st["Groups"].split() == [g], "%s %d: Groups %s" % (who, pid, st["Groups"])
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[k], 16) == 0, "%s %d: %s %s" % (who, pid, k, st[k])
    assert st["NoNewPrivs"] == "1", "%s %d: NoNewPrivs %s" % (who, pid, st["NoNewPrivs"])
    assert_no_core(pid, who)
    assert_not_dumpable_as_nobody(pid, who)


# --------------------------------------------------------------------------
# files nobody can read: a directory root:nogroup 0750, files 0640
# --------------------------------------------------------------------------

class NobodyFiles:
    """The test PKI's server files, copied where the nobody account can read
    them the way docs/config.md says: owned by root, group nogroup, 0640, in
    a directory root:nogroup 0750 (pytest's tmp_path is 0700: nobody could
    not even reach it)."""

    def __init__(self, pki):
        self.top = Path(tempfile.mkdtemp(prefix="sd-privs-"))
        os.chmod(self.top, 0o755)
        self.dir = self.top / "etc"
        self.dir.mkdir()
        self.own(self.dir, 0o750)
        self.cert = self.put("api.crt", pki.server_cert.read_bytes())
        self.key = self.put("api.key", pki.server_key.read_bytes())
        self.ca = self.put("ca.crt", pki.ca.read_bytes())
        self.other_ca = pki.other_ca.read_bytes()

    @staticmethod
    def own(path, mode):
        os.chown(path, 0, NOGROUP_GID)
        os.chmod(path, mode)

    def put(self, name, data, mode=0o640):
        """Write by rename, as deployments do, with the group and mode set first."""
        p = self.dir / name
        tmp = self.dir / (".%s.new" % name)
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        self.own(tmp, mode)
        os.replace(tmp, p)
        return p

    def remove(self):
        shutil.rmtree(self.top, ignore_errors=True)


@pytest.fixture
def nfiles(pki):
    if not ROOT or NOBODY is None:
        pytest.skip("needs root and the nobody account")
    f = NobodyFiles(pki)
    yield f
    f.remove()


def user_args(nfiles, extra=()):
    return dict(cert=nfiles.cert, key=nfiles.key, cacert=nfiles.ca, extra=list(extra))


# --------------------------------------------------------------------------
# --user, started as root
# --------------------------------------------------------------------------

@needs_root
@needs_nobody
def test_user_drops_master_and_workers(steeldoor, echo_backend, good_ctx, nfiles):
    sd = steeldoor(target=echo_backend.target, workers=2,
                   **user_args(nfiles, ["--user", "nobody"]))
    pids = sd.wait_workers(2, timeout=5)
    assert len(pids) == 2, pids
    assert_unprivileged(sd.pid, "master")
    for p in pids:
        assert_unprivileged(p, "worker")
    e = sd.wait_log(lambda e: e.get("event") == "privileges_dropped", timeout=3,
                    what="privileges_dropped")
    assert e["user"] == "nobody" and e["uid"] == NOBODY.pw_uid, e
    assert not [e for e in sd.logs() if e.get("event") == "privileges"], \
        "every file is readable by nobody, yet: %s" % sd.raw_lines()
    # mTLS works from the unprivileged workers, through every worker
    for i in range(6):
        assert_healthy(sd.port, good_ctx, payload=b"as-nobody-%d\n" % i)


@needs_root
@needs_nobody
def test_user_reloads_and_restarts_workers(steeldoor, echo_backend, good_ctx, client_ctx,
                                           nfiles, pki):
    sd = steeldoor(target=echo_backend.target, workers=2,
                   **user_args(nfiles, ["--user", "nobody", "--no-watch"]))
    pids = sd.wait_workers(2, timeout=5)
    assert len(pids) == 2, pids
    intruder = client_ctx(pki.othca_client)
    assert_healthy(sd.port, good_ctx)
    expect_refused(sd, echo_backend, intruder, sd.port, None)

    # The master, now nobody, reads the changed CA file on SIGHUP.
    nfiles.put("ca.crt", nfiles.other_ca)
    sighup_reload(sd, 2)
    assert_healthy(sd.port, intruder)
    expect_refused(sd, echo_backend, good_ctx, sd.port, None)

    # A file nobody cannot read: the reload fails (naming the file), the
    # running configuration stays.
    nfiles.put("ca.crt", nfiles.other_ca + b"\n", mode=0o600)
    sd.signal(signal.SIGHUP)
    e = sd.wait_log(lambda e: e.get("event") == "reload_failed", timeout=5,
                    what="reload_failed for an unreadable file")
    assert "ca.crt" in e["msg"] and "Permission denied" in e["msg"], e
    assert_healthy(sd.port, intruder)

    # A killed worker is replaced, forked from the unprivileged master.
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    new = sd.wait_workers(2, timeout=8, exclude=[victim])
    assert len(new) == 2 and victim not in new, (pids, new)
    for p in new:
        assert_unprivileged(p, "worker")
    assert_unprivileged(sd.pid, "master")
    for i in range(4):
        assert_healthy(sd.port, intruder, payload=b"after-restart-%d\n" % i)


@needs_root
@needs_nobody
def test_user_warns_about_unreadable_files_at_start(steeldoor, echo_backend, good_ctx,
                                                     nfiles):
    """Read as root at start, the key works; but nobody could not read it on
    a reload, which is said at once rather than at the first rotation."""
    nfiles.put("api.key", nfiles.key.read_bytes(), mode=0o600)
    sd = steeldoor(target=echo_backend.target, workers=1,
                   **user_args(nfiles, ["--user", "nobody"]))
    e = sd.wait_log(lambda e: e.get("event") == "privileges" and e.get("level") == "warn",
                    timeout=3, what="the warning about an unreadable key")
    assert e["file"] == str(nfiles.key) and e["error"] == "Permission denied", e
    assert e["user"] == "nobody", e
    assert_healthy(sd.port, good_ctx)


def _privileged_free_port():
    """A port below net.ipv4.ip_unprivileged_port_start that root can bind
    now, or None."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            start = int(f.read())
    except OSError:
        start = 1024
    for port in range(min(start, 1024) - 1, 600, -7):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    return None


@needs_root
@needs_nobody
def test_reload_cannot_add_privileged_port(steeldoor, echo_backend, good_ctx, nfiles):
    low = _privileged_free_port()
    if low is None:
        pytest.skip("no privileged port (ip_unprivileged_port_start is 0?)")
    high = free_port()

    def config(ports):
        lines = ["user: nobody", "workers: 1", "drain-timeout: 3s", "watch: false",
                 "listeners:"]
        for p in ports:
            lines += ["  - name: l%d" % p, '    listen: "127.0.0.1:%d"' % p,
                      '    target: "%s"' % echo_backend.target,
                      '    cert: "%s"' % nfiles.cert, '    key: "%s"' % nfiles.key,
                      '    cacert: "%s"' % nfiles.ca, "    allow-all: true"]
        return "\n".join(lines) + "\n"

    cfg = nfiles.put("steeldoor.yaml", config([high]))
    sd = steeldoor(args=["serve", "--config", cfg], wait_ports=[("127.0.0.1", high)])
    sd.port = high
    sd.wait_workers(1, timeout=5)
    assert_unprivileged(sd.pid, "master")
    nfiles.put("steeldoor.yaml", config([high, low]))
    sd.signal(signal.SIGHUP)
    e = sd.wait_log(lambda e: e.get("event") == "reload_failed", timeout=5,
                    what="reload_failed for a privileged port")
    assert "Permission denied" in e["msg"] and "restart" in e["msg"] and \
        "ip_unprivileged_port_start" in e["msg"], e
    assert sdlib.tcp_connect_result("127.0.0.1", low) == "refused"
    assert_healthy(high, good_ctx)


@needs_root
@needs_nobody
@pytest.mark.parametrize("spec, words", [
    ("no-such-user-sd", "no such user"),
    ("nobody:no-such-group-sd", "no such group"),
    ("root", "uid 0"),
    ("nobody:root", "group 0"),
    ("", "NAME"),
])
def test_user_refused_at_start(sd_bin, pki, spec, words):
    port = free_port()
    r = sdlib.run([sd_bin, "serve", "--listen", "127.0.0.1:%d" % port, "--target",
                   "127.0.0.1:9", "--cert", pki.server_cert, "--key", pki.server_key,
                   "--cacert", pki.ca, "--allow-all", "--user", spec], timeout=20)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0 and words in err, (r.returncode, err)
    assert sdlib.tcp_connect_result("127.0.0.1", port) == "refused"


# --------------------------------------------------------------------------
# no core files, with or without --user
# --------------------------------------------------------------------------

def test_no_core_files_without_user(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, workers=2)
    pids = sd.wait_workers(2, timeout=5)
    assert len(pids) == 2, pids
    for p in [sd.pid] + pids:
        assert_no_core(p, "process")
    if ROOT:
        sd.wait_log(lambda e: e.get("event") == "privileges" and e.get("user") == "root",
                    timeout=3, what="the note that steeldoor runs as root")
    assert_healthy(sd.port, good_ctx)


def _as_nobody(sd_bin, nfiles, port, target, extra=()):
    """A Steeldoor started as nobody (setpriv execs it: same pid)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    args = ["--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOGROUP_GID, "--clear-groups",
            str(sd_bin), "serve", "--listen", "127.0.0.1:%d" % port, "--target", target,
            "--cert", nfiles.cert, "--key", nfiles.key, "--cacert", nfiles.ca,
            "--allow-all", "--workers", "2", "--drain-timeout", "3s"] + list(extra)
    return sdlib.Steeldoor(setpriv, args, nfiles.top, name="as-nobody")


@needs_root
@needs_nobody
@pytest.mark.parametrize("extra", [(), ("--user", "nobody")], ids=["plain", "user-self"])
def test_started_unprivileged_is_not_dumpable(sd_bin, echo_backend, good_ctx, nfiles, extra):
    """Started as nobody (no root at any time): still not dumpable, no core;
    --user naming the account it already runs as is accepted."""
    port = free_port()
    sd = _as_nobody(sd_bin, nfiles, port, echo_backend.target, extra)
    try:
        sd.start(wait_ports=[("127.0.0.1", port)])
        pids = sd.wait_workers(2, timeout=5)
        assert len(pids) == 2, pids
        for p in [sd.pid] + pids:
            assert_no_core(p, "process")
            assert_not_dumpable_as_nobody(p, "process")
            if extra:
                st = proc_status(p)
                assert st["NoNewPrivs"] == "1" and int(st["CapEff"], 16) == 0, st
        assert_healthy(port, good_ctx)
        sd.stop(timeout=10)
    finally:
        sd.kill()
        sd.close_files()
    assert not sd.sanitizer_findings(), sd.stderr_text()[-4000:]


@needs_root
@needs_nobody
def test_user_other_than_self_needs_root(sd_bin, echo_backend, nfiles):
    port = free_port()
    sd = _as_nobody(sd_bin, nfiles, port, echo_backend.target, ("--user", "daemon"))
    try:
        sd.start()
        rc = sd.wait_exit(20)
        err = sd.stderr_text()
    finally:
        sd.kill()
        sd.close_files()
    assert rc not in (None, 0) and "not as root" in err, (rc, err)
    assert sdlib.tcp_connect_result("127.0.0.1", port) == "refused"
