"""SIGTERM: stop accepting, drain, exit 0."""
import signal
import socket
import time

import sdlib
from sdlib import tls_connect, peer_of


def _wait_refused(port, timeout):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        r = sdlib.tcp_connect_result("127.0.0.1", port, timeout=0.3)
        if r == "refused":
            return time.monotonic() - t
        time.sleep(0.05)
    return None


def test_sigterm_idle_exits_zero_promptly(steeldoor, echo_backend):
    sd = steeldoor(target=echo_backend.target, workers=2)
    workers = sd.wait_workers(2)
    t = time.monotonic()
    sd.stop(timeout=5)
    assert time.monotonic() - t < 2.0, "idle shutdown took %.1fs" % (time.monotonic() - t)
    time.sleep(0.2)
    assert not [p for p in workers if sdlib.pid_alive(p)], "workers outlived the master"


def test_sigterm_drains_open_connection(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, workers=2, drain="30s")
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    sd.signal(signal.SIGTERM)
    took = _wait_refused(sd.port, 3)
    assert took is not None, "new connections still accepted 3 s after SIGTERM"
    assert took < 1.2, "new connections refused only after %.2fs" % took
    # the open connection still works, for a while
    for i in range(3):
        assert sdlib.echo_roundtrip(s, b"drain-%d\n" % i) == b"drain-%d\n" % i
        time.sleep(0.3)
    assert sd.running(), "exited while a connection was still open (drain-timeout 30s)"
    s.close()
    t = time.monotonic()
    rc = sd.wait_exit(5)
    assert rc is not None, "did not exit within 5 s after the last connection closed"
    assert rc == 0, "exit code %r" % rc
    assert time.monotonic() - t < 2.5
    sd.stopped = True
    e = sd.wait_conn(peer, timeout=1)
    assert e["result"] == "ok", e


def test_sigterm_drain_timeout(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, workers=2, drain="1s")
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    t = time.monotonic()
    sd.signal(signal.SIGTERM)
    rc = sd.wait_exit(6)
    took = time.monotonic() - t
    sd.stopped = True
    assert rc is not None, "still running 6 s after SIGTERM with --drain-timeout 1s and an open conn"
    assert rc == 0, "exit code %r" % rc
    assert 0.8 < took < 4.0, "exited %.2fs after SIGTERM with --drain-timeout 1s" % took
    # the client connection was closed
    s.settimeout(3)
    try:
        d = s.recv(100)
        assert d == b"", d
    except (OSError, socket.timeout) as e:
        assert not isinstance(e, socket.timeout), "client conn still open after exit"
    s.close()
    e = sd.wait_conn(peer, timeout=1)
    assert e["result"] == "error" and e["reason"] == "drain_timeout", e
