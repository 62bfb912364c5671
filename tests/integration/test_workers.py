"""Worker processes: count, and restart after kill -9."""
import os
import signal
import time

import pytest

import sdlib
from sdlib import tls_connect


@pytest.mark.parametrize("n", [1, 3])
def test_worker_count(steeldoor, echo_backend, good_ctx, n):
    sd = steeldoor(target=echo_backend.target, workers=n)
    pids = sd.wait_workers(n, timeout=5)
    assert len(pids) == n, "expected %d workers, children of master: %s" % (n, pids)
    for i in range(2 * n + 2):
        with tls_connect(good_ctx, sd.port) as s:
            assert sdlib.echo_roundtrip(s, b"w%d\n" % i) == b"w%d\n" % i


def test_default_worker_count_is_core_count(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, workers=None)
    cores = {os.cpu_count(), len(os.sched_getaffinity(0))}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(sd.worker_pids()) not in cores:
        time.sleep(0.05)
    assert len(sd.worker_pids()) in cores, "workers %s, cores %s" % (sd.worker_pids(), cores)


def test_worker_restart_after_kill9(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, workers=2)
    pids = sd.wait_workers(2, timeout=5)
    assert len(pids) == 2, pids
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    new = sd.wait_workers(2, timeout=5, exclude=[victim])
    assert len(new) == 2 and victim not in new, "worker not replaced: before %s after %s" % (pids, new)
    assert pids[1] in new, "the surviving worker was replaced too: %s -> %s" % (pids, new)
    assert sd.running(), "master died after a worker was killed"
    # service continues: every one of 20 fresh connections works
    time.sleep(0.2)
    fails = []
    for i in range(20):
        try:
            with tls_connect(good_ctx, sd.port) as s:
                assert sdlib.echo_roundtrip(s, b"after-kill-%d\n" % i) == b"after-kill-%d\n" % i
        except Exception as e:
            fails.append(repr(e))
    assert not fails, "%d of 20 connections failed after a worker restart: %s" % (len(fails), fails[:3])
    e = sd.wait_log(lambda e: e.get("event") == "worker_exited", timeout=3, what="worker_exited event")


def _inode_for_peer(server_port, client_port):
    """Inode of the server-side socket local=server_port, remote=client_port."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            loc, rem, inode = parts[1], parts[2], parts[9]
            if (int(loc.split(":")[1], 16) == server_port and
                    int(rem.split(":")[1], 16) == client_port and inode != "0"):
                return inode
    return None


def _owner(pids, server_port, client_port):
    ino = _inode_for_peer(server_port, client_port)
    if not ino:
        return None
    needle = "socket:[%s]" % ino
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == needle:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


def test_killed_worker_does_not_break_other_workers_connections(steeldoor, echo_backend, good_ctx):
    """Connections held by the surviving worker keep working."""
    sd = steeldoor(target=echo_backend.target, workers=2)
    pids = sd.wait_workers(2, timeout=5)
    assert len(pids) == 2
    conns = [tls_connect(good_ctx, sd.port) for _ in range(12)]
    try:
        for c in conns:
            assert sdlib.echo_roundtrip(c) == b"ping-steeldoor\n"
        owners = [_owner(pids, sd.port, c.getsockname()[1]) for c in conns]
        assert all(o in pids for o in owners), "could not map connections to workers: %s" % owners
        victim = max(pids, key=lambda p: owners.count(p) if owners.count(p) < 12 else -1)
        survivors = [c for c, o in zip(conns, owners) if o != victim]
        assert survivors
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.5)
        for c in survivors:
            assert sdlib.echo_roundtrip(c, timeout=3) == b"ping-steeldoor\n"
    finally:
        for c in conns:
            c.close()
