"""Idle timeout after the backend connect (issue 9).

The deadline set for the backend connect used to stay in force once the
connect completed, so a connection that was quiet after its handshake was
cut at the connect timeout (logged idle_timeout) instead of the idle timeout.
The idle clock must run from the handshake, then from the last byte in
either direction.

Timeline with --connect-timeout 1s --idle-timeout 3s (t = 0 at the
handshake): a quiet connection must survive t = 2 s and be closed at about
3 s; a connection whose client (or backend) sends a byte at 1.5, 3 and 4.5 s
must be closed at about 7.5 s, well after 3 s.
"""
import select
import socket
import ssl
import time

import pytest

CONNECT_S, IDLE_S = 1.0, 3.0
TICKS = (1.5, 3.0, 4.5)  # when the active side sends one byte
SLACK = 1.0              # the worker checks deadlines every 250 ms


def _sink(conn, backend):
    n = 0
    while True:
        d = conn.recv(65536)
        if not d:
            break
        n += len(d)
    with backend.lock:
        backend.results.append(n)


def _ticker(conn, backend):
    """Sends one byte at each TICKS offset after the connect, then stays
    quiet, reading until the proxy closes."""
    t0 = time.monotonic()
    for t in TICKS:
        left = t0 + t - time.monotonic()
        if left > 0:
            time.sleep(left)
        conn.sendall(b"T")
    conn.settimeout(IDLE_S + 10)
    while conn.recv(65536):
        pass


class Conn:
    def __init__(self, name, ctx, port, send_ticks):
        self.name = name
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.t0 = time.monotonic()
        self.version = self.s.version()
        self.peer = "127.0.0.1:%d" % self.s.getsockname()[1]
        self.s.setblocking(False)
        self.todo = list(send_ticks)
        self.got = []       # (t, bytes) received
        self.closed = None  # t of EOF / close

    def step(self, now):
        if self.closed is None and self.todo and now - self.t0 >= self.todo[0]:
            self.todo.pop(0)
            try:
                self.s.send(b"c")
            except (ssl.SSLError, OSError):
                self.closed = now - self.t0

    def on_readable(self, now):
        for _ in range(16):  # bounded: at most 16 records per wake-up
            try:
                d = self.s.recv(4096)
            except (ssl.SSLWantReadError, BlockingIOError):
                return
            except (ssl.SSLError, OSError):
                d = b""
            if not d:
                self.closed = now - self.t0
                return
            self.got.append((now - self.t0, d))


def _drive(conns, limit_s):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and any(c.closed is None for c in conns):
        now = time.monotonic()
        for c in conns:
            c.step(now)
        live = [c for c in conns if c.closed is None]
        r = [c for c in live if c.s.pending()]
        if not r:
            r, _, _ = select.select([c.s for c in live], [], [], 0.05)
            r = [c for c in live if c.s in r]
        now = time.monotonic()
        for c in r:
            c.on_readable(now)
    for c in conns:
        c.s.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_idle_timeout_runs_from_handshake_and_last_byte(steeldoor, backends, client_ctx,
                                                        workers):
    sink, ticker = backends(_sink), backends(_ticker)
    extra = ["--connect-timeout", "1s", "--idle-timeout", "3s"]
    sd_sink = steeldoor(target=sink.target, workers=workers, extra=extra)
    sd_tick = steeldoor(target=ticker.target, workers=workers, extra=extra)
    conns = []
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(max_version=ver, min_version=ver)
        conns += [Conn("quiet", ctx, sd_sink.port, ()),
                  Conn("client-sends", ctx, sd_sink.port, TICKS),
                  Conn("backend-sends", ctx, sd_tick.port, ())]
    _drive(conns, TICKS[-1] + IDLE_S + 4)

    for c in conns:
        what = "%s over %s" % (c.name, c.version)
        assert c.closed is not None, "%s: still open %.1fs after its handshake" % (
            what, TICKS[-1] + IDLE_S + 4)
        if c.name == "quiet":
            # The old code cut it at the connect timeout (1 s).
            assert c.closed > CONNECT_S + SLACK, (
                "%s: closed after %.2fs: the connect timeout (%.0fs) acted as the idle "
                "timeout (%.0fs)" % (what, c.closed, CONNECT_S, IDLE_S))
            assert IDLE_S - 0.3 < c.closed < IDLE_S + SLACK, (
                "%s: closed after %.2fs, expected ~%.0fs" % (what, c.closed, IDLE_S))
        else:
            last = TICKS[-1]
            assert last + IDLE_S - 0.5 < c.closed < last + IDLE_S + SLACK, (
                "%s: closed after %.2fs; the last byte moved at ~%.1fs, idle timeout "
                "%.0fs" % (what, c.closed, last, IDLE_S))
        if c.name == "backend-sends":
            assert b"".join(d for _, d in c.got) == b"T" * len(TICKS), (what, c.got)
        sd = sd_tick if c.name == "backend-sends" else sd_sink
        e = sd.wait_conn(c.peer)
        assert e["result"] == "error" and e["reason"] == "idle_timeout", (what, e)
        assert e["bytes_in"] == (len(TICKS) if c.name == "client-sends" else 0), (what, e)
        assert e["bytes_out"] == (len(TICKS) if c.name == "backend-sends" else 0), (what, e)
    # every byte the clients sent reached the sink
    assert sorted(sink.wait_results(4)) == [0, 0, len(TICKS), len(TICKS)], sink.results
