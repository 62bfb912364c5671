"""File swaps against the real binary: what someone who may write to a
watched directory can do, and what deployment tools do.

- A FIFO renamed back and forth over the CA, CRL and config paths while
  steeldoor runs must never block the master: afterwards a good file is
  applied by itself, SIGHUP reloads, a killed worker is restarted and SIGTERM
  stops it, each promptly; every reload_failed on the way names the FIFO.
- Two valid files of different sizes swapped rapidly must never be reported
  as a parse error (size of one, bytes of the other).
- Swaps that change what a path names without touching the file itself
  reload by themselves (no SIGHUP) and the new CA applies: a directory
  symlink re-pointed (`current -> releases/v2`, renamed into place as deploy
  tools do), a symlink inside a chain of symlinks re-pointed, Kubernetes'
  `..data` swap, a watched directory deleted and made again.

Every wait is bounded (5 s); the attack loops are bounded in time and count.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from sdlib import free_port
from conftest import yaml_config, tls_attempt, cert_pem

WAIT = 5.0            # every wait for a reaction of steeldoor
SWAP_SECONDS = 3.0    # how long an attack loop runs at most
SWAP_MAX = 300000     # and how many swaps it makes at most
SPIFFE = "spiffe://example.org/"

# The attacker: a separate process (real parallelism on a 2-core machine)
# that swaps each target path with another name in turn, atomically
# (renameat2 RENAME_EXCHANGE: one system call per swap, as fast as it
# gets), so a path is always exactly one of the two files. Where the
# exchange is not available, a hard link of the other file is renamed over
# the path instead. Bounded in time and count.
ATTACK = r"""
import ctypes, os, sys, time
dur, limit, tmpdir = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pairs = [a.split("=", 1) for a in sys.argv[4:]]   # target=other
renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
def exchange(a, b):
    return renameat2 is not None and renameat2(-100, a.encode(), -100, b.encode(), 2) == 0
use_exchange = exchange(pairs[0][0], pairs[0][1]) and exchange(pairs[0][0], pairs[0][1])
tmp = os.path.join(tmpdir, ".swap-tmp")
srcs = [(t, [os.path.join(tmpdir, ".swap-a%d" % i), os.path.join(tmpdir, ".swap-b%d" % i)])
        for i, (t, o) in enumerate(pairs)]
if not use_exchange:
    for (t, o), (_, (a, b)) in zip(pairs, srcs):
        os.link(t, a)
        os.link(o, b)
end, n = time.monotonic() + dur, 0
while n < limit and time.monotonic() < end:
    for i, (target, other) in enumerate(pairs):
        if use_exchange:
            exchange(target, other)
            continue
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.link(srcs[i][1][n % 2 == 0], tmp)
        os.rename(tmp, target)
    n += 1
print(n)
"""


def attack(tmpdir, pairs, seconds=SWAP_SECONDS, limit=SWAP_MAX, sd=None):
    """Runs the swap loop to its end; returns how many rounds it made.
    pairs: (target, other) paths in tmpdir, swapped in each round. With sd,
    SIGHUP it every 20 ms meanwhile: each reload reads every file again, so
    many more reads meet a swap than the 200 ms debounce alone allows."""
    args = [sys.executable, "-c", ATTACK, str(seconds), str(limit), str(tmpdir)]
    args += ["%s=%s" % (t, o) for t, o in pairs]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + seconds + 20
        while p.poll() is None and time.monotonic() < deadline:
            if sd is not None:
                sd.signal(signal.SIGHUP)
            time.sleep(0.02)
        out, err = p.communicate(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err.decode(errors="replace")
    return int(out.split()[-1])


_n = [0]


def atomic_write(path, data):
    _n[0] += 1
    tmp = path.with_name(".%s.new%d" % (path.name, _n[0]))
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def relink(target, link):
    """ln -sfn target link, as deploy tools do it: a new symlink renamed over
    the old one, so the name never disappears."""
    _n[0] += 1
    tmp = link.with_name(".%s.new%d" % (link.name, _n[0]))
    os.symlink(target, tmp)
    os.replace(tmp, link)


def master(sd, event):
    return [e for e in sd.logs() if e.get("event") == event and e.get("pid") == sd.pid]


def wait_until(what, pred, sd, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.1fs; log tail:\n%s"
                                 % (what, timeout, "\n".join(sd.raw_lines()[-20:])))
        time.sleep(0.05)


class Trust:
    """Two client CAs (A, B), a client of each, CRLs of each, and clients'
    contexts; admitted(port) tells which of the two clients get in."""

    def __init__(self, certs, pki):
        from sdlib import client_ctx
        self.certs = certs
        self.caA = certs.ca("swapA", issuer="self", cn="swap test CA A")
        self.caB = certs.ca("swapB", issuer="self", cn="swap test CA B, with a longer name")
        self.xa = certs.client("xa", cn="xa", uris=[SPIFFE + "xa"], issuer=self.caA)
        self.xb = certs.client("xb", cn="xb", uris=[SPIFFE + "xb"], issuer=self.caB)
        self.other = certs.client("other", cn="other", issuer=self.caA)
        self.ctx_a = client_ctx(pki.ca, self.xa.crt, self.xa.key)
        self.ctx_b = client_ctx(pki.ca, self.xb.crt, self.xb.key)

    def ca_pem(self, *cas):
        return cert_pem(*(c.cert for c in cas))

    def crl(self, *issuers, revoked=()):
        """A CRL file with one CRL of each issuer (every CA level needs
        one); revoked: clients of the first issuer to list."""
        out = b""
        for i, issuer in enumerate(issuers):
            p = self.certs.crl("tmp-%s.crl" % issuer.name, issuer=issuer,
                               revoked=[r.cert for r in revoked] if i == 0 else [])
            out += p.read_bytes()
        return out

    def admitted(self, port):
        return (tls_attempt(self.ctx_a, port, timeout=3)["ok"],
                tls_attempt(self.ctx_b, port, timeout=3)["ok"])

    def wait_admitted(self, sd, port, want, what):
        """Waits until exactly `want` (a, b) is what steeldoor admits."""
        return wait_until(what, lambda: self.admitted(port) == want, sd)


@pytest.fixture
def trust(certs, pki):
    return Trust(certs, pki)


def config(pki, port, target, cacert, crl=None, workers=1):
    l = {"name": "main", "port": port, "target": target, "cacert": cacert}
    if crl is not None:
        l["crl"] = '"%s"' % crl
    return yaml_config(pki, [l], workers=workers, drain="2s")


def start(steeldoor, cfg, port):
    return steeldoor(args=["serve", "--config", cfg], wait_ports=[("127.0.0.1", port)])


# --------------------------------------------------------------------------
# 1. swaps while steeldoor reads
# --------------------------------------------------------------------------

def test_fifo_swaps_never_block_the_master(steeldoor, backends, pki, trust, tmp_path):
    be = backends()
    port = free_port()
    live = tmp_path / "live"
    live.mkdir()
    ca, crl, cfg = live / "ca.pem", live / "crl.pem", live / "steeldoor.yaml"
    atomic_write(ca, trust.ca_pem(trust.caA))
    atomic_write(crl, trust.crl(trust.caA))
    cfg_text = config(pki, port, be.target, ca, crl, workers=2)
    atomic_write(cfg, cfg_text)
    good = {p: p.read_bytes() for p in (ca, crl, cfg)}
    fifos = {p: live / (".fifo-" + p.name) for p in good}   # the attacker's
    for f in fifos.values():
        os.mkfifo(f)

    sd = start(steeldoor, cfg, port)
    workers = sd.wait_workers(2, timeout=WAIT)
    assert len(workers) == 2
    assert trust.admitted(port) == (True, False)      # control

    rounds = attack(live, list(fifos.items()), sd=sd)
    assert rounds > 100, "the attack loop made only %d swaps" % rounds

    # Each path is a FIFO or the good file now; put the good ones back and
    # add CA B: applied by itself, without a signal.
    for p, data in good.items():
        atomic_write(p, data)
    atomic_write(crl, trust.crl(trust.caA, trust.caB))
    atomic_write(ca, trust.ca_pem(trust.caA, trust.caB))
    trust.wait_admitted(sd, port, (True, True), "CA B added after the FIFO swaps")

    # SIGHUP still reloads, promptly
    n = len(master(sd, "reloaded"))
    sd.signal(signal.SIGHUP)
    wait_until("a reload on SIGHUP after the FIFO swaps",
               lambda: [e for e in master(sd, "reloaded")[n:] if e.get("trigger") == "SIGHUP"],
               sd)
    # a killed worker is restarted
    os.kill(workers[0], signal.SIGKILL)
    wait_until("worker restarted after the FIFO swaps",
               lambda: [e for e in master(sd, "worker_started")
                        if e.get("worker_pid") not in workers], sd)
    assert trust.admitted(port) == (True, True)

    # every failed reload on the way was for a real problem: the FIFO
    for e in master(sd, "reload_failed"):
        msg = e.get("msg", "")
        assert "not a regular file or directory" in msg and \
            any(str(p) in msg for p in good), "reload_failed for something else: %s" % e

    # and SIGTERM stops it, promptly
    sd.stop(timeout=WAIT)


def test_swapped_sizes_never_fail_a_good_reload(steeldoor, backends, pki, trust, tmp_path):
    """Every file at every moment is valid (the CA bundle is one CA or two,
    the CRL revokes nobody or someone else): no reload may fail."""
    be = backends()
    port = free_port()
    live = tmp_path / "live"
    live.mkdir()
    ca, crl, cfg = live / "ca.pem", live / "crl.pem", live / "steeldoor.yaml"
    # Each path swapped with a valid file of another size. The larger CA
    # bundle starts with CA B, whose name is longer than A's: the size of
    # the small file is no whole number of its certificates.
    other = {ca: live / ".ca-other", crl: live / ".crl-other"}
    small = {ca: trust.ca_pem(trust.caA), crl: trust.crl(trust.caA, trust.caB)}
    large = {ca: trust.ca_pem(trust.caB, trust.caA),
             crl: trust.crl(trust.caA, trust.caB, revoked=[trust.other])}
    # (with CA B absent, its CRL is ignored with a warning: no failure)
    for p in (ca, crl):
        assert len(small[p]) < len(large[p])
        atomic_write(p, small[p])
        other[p].write_bytes(large[p])
    atomic_write(cfg, config(pki, port, be.target, ca, crl))
    sd = start(steeldoor, cfg, port)
    assert trust.admitted(port) == (True, False)      # control

    rounds = attack(live, list(other.items()), seconds=2.5, sd=sd)
    assert rounds > 100, "the attack loop made only %d swaps" % rounds
    atomic_write(ca, large[ca])                       # the final state: both CAs
    trust.wait_admitted(sd, port, (True, True), "the final CA bundle applied")
    # let the last debounced check run, then judge
    time.sleep(0.5)
    assert master(sd, "reloaded"), "no reload at all during the swaps"
    assert not master(sd, "reload_failed"), \
        "a swap between two good files was reported as a failure: %s" % \
        master(sd, "reload_failed")[:3]


# --------------------------------------------------------------------------
# 2. swaps that change what a path names
# --------------------------------------------------------------------------

def _release(trust, root, name, ca):
    d = root / "releases" / name
    d.mkdir(parents=True)
    (d / "ca.pem").write_bytes(trust.ca_pem(ca))
    (d / "crl.pem").write_bytes(trust.crl(ca))
    return d


def test_directory_symlink_swap_reloads_by_itself(steeldoor, backends, pki, trust, tmp_path):
    be = backends()
    port = free_port()
    live = tmp_path / "live"
    _release(trust, live, "v1", trust.caA)
    _release(trust, live, "v2", trust.caB)
    relink("releases/v1", live / "current")
    cfg = tmp_path / "steeldoor.yaml"
    atomic_write(cfg, config(pki, port, be.target, live / "current" / "ca.pem",
                             live / "current" / "crl.pem"))
    sd = start(steeldoor, cfg, port)
    assert trust.admitted(port) == (True, False)      # control

    relink("releases/v2", live / "current")           # the deploy
    wait_until("a reload by itself after current -> releases/v2",
               lambda: master(sd, "reloaded"), sd)
    assert master(sd, "reloaded")[0].get("trigger") == "files changed"
    trust.wait_admitted(sd, port, (False, True), "the CA of releases/v2 applied")
    # and back (a rollback), still by itself
    relink("releases/v1", live / "current")
    trust.wait_admitted(sd, port, (True, False), "the rollback to releases/v1 applied")
    assert not master(sd, "reload_failed"), master(sd, "reload_failed")


def test_symlink_in_a_chain_of_symlinks_reloads_by_itself(steeldoor, backends, pki, trust,
                                                          tmp_path):
    """current -> links/slot -> ../releases/v1 (a link to a link): re-pointing
    the inner link changes what current/ca.pem names."""
    be = backends()
    port = free_port()
    live = tmp_path / "live"
    _release(trust, live, "v1", trust.caA)
    _release(trust, live, "v2", trust.caB)
    (live / "links").mkdir()
    relink("../releases/v1", live / "links" / "slot")
    relink("links/slot", live / "current")
    # the CA file itself is a symlink too: a link to a file through two
    # directory links
    relink("current/ca.pem", live / "ca.pem")
    cfg = tmp_path / "steeldoor.yaml"
    atomic_write(cfg, config(pki, port, be.target, live / "ca.pem",
                             live / "current" / "crl.pem"))
    sd = start(steeldoor, cfg, port)
    assert trust.admitted(port) == (True, False)      # control

    relink("../releases/v2", live / "links" / "slot")
    trust.wait_admitted(sd, port, (False, True), "the inner link re-pointed to releases/v2")
    assert master(sd, "reloaded")[0].get("trigger") == "files changed"
    # a change in the release no longer named is no change
    n = len(master(sd, "reloaded"))
    atomic_write(live / "releases" / "v1" / "ca.pem", trust.ca_pem(trust.caA, trust.caB))
    time.sleep(0.8)
    assert len(master(sd, "reloaded")) == n, "a file no longer configured caused a reload"
    # the one now named is
    atomic_write(live / "releases" / "v2" / "crl.pem", trust.crl(trust.caA, trust.caB))
    atomic_write(live / "releases" / "v2" / "ca.pem", trust.ca_pem(trust.caA, trust.caB))
    trust.wait_admitted(sd, port, (True, True), "a change inside releases/v2")
    assert not master(sd, "reload_failed"), master(sd, "reload_failed")


def test_kubernetes_data_swap_reloads_by_itself(steeldoor, backends, pki, trust, tmp_path):
    """The kubelet's layout: ca.pem -> ..data/ca.pem, ..data -> ..<timestamp>;
    an update writes a new timestamped directory, renames a new ..data link
    over the old one, and deletes the old directory."""
    be = backends()
    port = free_port()
    vol = tmp_path / "vol"
    vol.mkdir()
    for ts, ca in (("..2024_01_01", trust.caA), ("..2024_02_01", trust.caB)):
        (vol / ts).mkdir()
        (vol / ts / "ca.pem").write_bytes(trust.ca_pem(ca))
        (vol / ts / "crl.pem").write_bytes(trust.crl(ca))
    relink("..2024_01_01", vol / "..data")
    relink("..data/ca.pem", vol / "ca.pem")
    relink("..data/crl.pem", vol / "crl.pem")
    cfg = tmp_path / "steeldoor.yaml"
    atomic_write(cfg, config(pki, port, be.target, vol / "ca.pem", vol / "crl.pem"))
    sd = start(steeldoor, cfg, port)
    assert trust.admitted(port) == (True, False)      # control

    relink("..2024_02_01", vol / "..data")
    shutil.rmtree(vol / "..2024_01_01")
    trust.wait_admitted(sd, port, (False, True), "the ..data swap")
    assert master(sd, "reloaded")[0].get("trigger") == "files changed"
    assert not master(sd, "reload_failed"), master(sd, "reload_failed")


@pytest.mark.parametrize("layout", ["files", "ca_directory"])
@pytest.mark.parametrize("how", ["mkdir", "rename"])
def test_deleted_and_recreated_directory_reloads_by_itself(steeldoor, backends, pki, trust,
                                                           tmp_path, layout, how):
    """A directory holding the CA bundle and CRL (or a --cacert directory) is
    deleted, then made again with new files: in place (mkdir, then the
    files) or by renaming a prepared directory into place. Reloads by
    itself; a reload_failed on the way (the files are missing for a while)
    names the missing path."""
    be = backends()
    port = free_port()
    trust_dir = tmp_path / "etc" / "trust"
    trust_dir.mkdir(parents=True)
    atomic_write(trust_dir / "ca.pem", trust.ca_pem(trust.caA))
    atomic_write(trust_dir / "crl.pem", trust.crl(trust.caA))
    cacert = trust_dir if layout == "ca_directory" else trust_dir / "ca.pem"
    crl = None if layout == "ca_directory" else trust_dir / "crl.pem"
    cfg = tmp_path / "steeldoor.yaml"
    atomic_write(cfg, config(pki, port, be.target, cacert, crl))
    sd = start(steeldoor, cfg, port)
    assert trust.admitted(port) == (True, False)      # control

    shutil.rmtree(trust_dir)
    # the deletion is seen (the files are gone: a failed reload, old CA kept)
    wait_until("a reload_failed for the deleted directory",
               lambda: master(sd, "reload_failed"), sd)
    assert trust.admitted(port) == (True, False)
    time.sleep(0.6)      # the new directory comes later, after every re-check
    if how == "mkdir":
        trust_dir.mkdir()
        time.sleep(0.3)      # let steeldoor see the empty directory first
        atomic_write(trust_dir / "ca.pem", trust.ca_pem(trust.caB))
        if crl is not None:
            atomic_write(trust_dir / "crl.pem", trust.crl(trust.caB))
    else:
        staging = tmp_path / "etc" / ".trust-staging"
        staging.mkdir()
        (staging / "ca.pem").write_bytes(trust.ca_pem(trust.caB))
        if crl is not None:
            (staging / "crl.pem").write_bytes(trust.crl(trust.caB))
        os.rename(staging, trust_dir)
    trust.wait_admitted(sd, port, (False, True), "the recreated directory's new CA")
    assert master(sd, "reloaded")[-1].get("trigger") == "files changed"
    for e in master(sd, "reload_failed"):
        assert str(trust_dir) in e.get("msg", ""), "reload_failed for something else: %s" % e
    # and the new directory is watched: a later change is seen as well
    if crl is not None:
        atomic_write(crl, trust.crl(trust.caA, trust.caB))
    atomic_write(trust_dir / "ca.pem", trust.ca_pem(trust.caA, trust.caB))
    trust.wait_admitted(sd, port, (True, True), "a change in the recreated directory")
