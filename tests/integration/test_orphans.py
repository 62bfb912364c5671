"""Workers orphaned by a killed master (issue 11c).

When the master dies (kill -9), the end-of-file of each worker's control
socket used to be watched level-triggered and never consumed: the workers
spun at 100% CPU until their drain ended. They must drain quietly: open
connections keep working until they close, new ones are not taken, and the
workers then exit.
"""
import os
import signal
import time

import pytest

import sdlib
from sdlib import tls_connect, pid_alive

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    rest = st[st.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


@pytest.mark.parametrize("workers", [1, 2])
def test_orphaned_workers_drain_quietly(steeldoor, echo_backend, good_ctx, workers):
    sd = steeldoor(target=echo_backend.target, workers=workers, drain="20s")
    pids = sd.wait_workers(workers, timeout=5)
    assert len(pids) == workers, pids
    conns = [tls_connect(good_ctx, sd.port) for _ in range(2 * workers)]
    try:
        for i, c in enumerate(conns):
            assert sdlib.echo_roundtrip(c, b"before-%d\n" % i) == b"before-%d\n" % i

        os.kill(sd.pid, signal.SIGKILL)
        sd.proc.wait(5)
        # (the old code drained too, on PR_SET_PDEATHSIG's SIGTERM)
        sd.wait_log(lambda e: e.get("event") == "drain", timeout=3, what="a worker's drain")
        time.sleep(0.3)
        alive = [p for p in pids if pid_alive(p)]
        assert alive, "every worker exited at once, although connections were open"

        # ~no CPU while idle: the old workers spun on the control socket's EOF
        t0 = time.monotonic()
        before = {p: cpu_seconds(p) for p in alive}
        time.sleep(1.0)
        took = time.monotonic() - t0
        used = {p: cpu_seconds(p) - before[p] for p in alive if pid_alive(p)}
        for p, s in used.items():
            assert s < 0.1 * took, "orphaned worker %d used %.2fs of CPU in %.2fs (spinning)" % (
                p, s, took)

        # open connections still work; new ones are not taken
        for i, c in enumerate(conns):
            assert sdlib.echo_roundtrip(c, b"after-%d\n" % i, timeout=3) == b"after-%d\n" % i
        assert sdlib.tcp_connect_result("127.0.0.1", sd.port) == "refused", \
            "the orphaned workers still accept new connections"
    finally:
        for c in conns:
            c.close()

    # with their connections closed, the workers exit (well before the drain timeout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if pid_alive(p)], "orphaned workers still alive 5s after " \
        "their last connection closed"
    gone = [e for e in sd.logs() if e.get("event") == "master_gone"]
    assert len(gone) == workers and len({e["pid"] for e in gone}) == workers, \
        "expected one master_gone line per worker: %s" % gone
    oks = [e for e in sd.conn_logs() if e.get("result") == "ok"]
    assert len(oks) == len(conns), "connections not closed cleanly: %s" % sd.conn_logs()
