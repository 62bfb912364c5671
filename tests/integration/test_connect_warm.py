"""Client mode (issue 15): `--warm N` / `warm-max-age`, connections to the
server handshaken ahead of callers.

A warm connection is made before any caller comes, verified like any other;
a caller gets a ready one at once (its line says "warm":true) and each one
taken is replaced. One not handed out within warm-max-age (from its connect)
is closed quietly and replaced, never handed out. A failure is logged as a
conn line with "warm":true and "peer":"-", and the next attempt waits 1 s,
doubling up to 30 s. What the server sends before a caller comes (a
greeting) is kept for the caller. A reload or a drain closes those no caller
took; a reload makes new ones with the new configuration.

The warm connectors here are started without the usual readiness probe
(a TCP connect to the listen port): the probe is a caller, it would take a
warm connection and throw the upstream's counts off. They wait for the
upstream's accepts or the master's `listening` line instead."""
import datetime
import os
import shutil
import socket
import ssl
import threading
import time
from types import SimpleNamespace

import pytest
from cryptography import x509

from conftest import atomic_write, issue_cert, root_issuer, sighup_reload
from sdlib import Steeldoor, free_port, recv_exact
from test_connect import connect_args, connects  # noqa: F401

GREETING = b"220 greeting\r\n"


# --------------------------------------------------------------------------
# the upstream: a TLS server (python ssl) that records every connection
# --------------------------------------------------------------------------

class Upstream:
    """TLS echo server in threads recording each accepted connection: when
    it was accepted and handshaken, the client certificate, the bytes the
    application received, when and how it ended. Options: a greeting sent
    right after the handshake (server speaks first), and an idle timeout
    after which the server closes a connection on which nothing came."""

    def __init__(self, pki, verify_mode=ssl.CERT_REQUIRED, ca=None, greeting=b"",
                 idle_close=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self.ctx.verify_mode = verify_mode
        if verify_mode != ssl.CERT_NONE:
            self.ctx.load_verify_locations(str(ca or pki.ca))
        self.greeting = greeting
        self.idle_close = idle_close
        self.recs = []
        self.lock = threading.Lock()
        self.stopping = False
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.target = "127.0.0.1:%d" % self.port
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = SimpleNamespace(t_accept=time.monotonic(), t_hs=None, t_greeted=None,
                                  peer=None, data=bytearray(), t_closed=None, end=None,
                                  sock=c, tls=None)
            with self.lock:
                self.recs.append(rec)
            threading.Thread(target=self._one, args=(rec,), daemon=True).start()

    def _one(self, rec):
        c = rec.sock
        try:
            c.settimeout(5)
            t = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            rec.end = "handshake: %r" % e
            rec.t_closed = time.monotonic()
            c.close()
            return
        rec.tls = t
        rec.peer = t.getpeercert(binary_form=True)
        rec.t_hs = time.monotonic()
        try:
            if self.greeting:
                t.sendall(self.greeting)
                rec.t_greeted = time.monotonic()
            t.settimeout(self.idle_close or 30)
            while not self.stopping:
                try:
                    d = t.recv(65536)
                except socket.timeout:
                    rec.end = "idle"  # the server's idle timeout: it closes
                    break
                if not d:
                    rec.end = "eof"
                    break
                rec.data += d
                t.sendall(d)
        except (ssl.SSLError, OSError) as e:
            rec.end = "error: %r" % e
        finally:
            rec.t_closed = time.monotonic()
            try:
                t.close()
            except OSError:
                pass

    # -- views ---------------------------------------------------------------
    def snapshot(self):
        with self.lock:
            return list(self.recs)

    @property
    def count(self):
        return len(self.snapshot())

    def handshaken(self):
        return [r for r in self.snapshot() if r.t_hs is not None]

    def open_ones(self):
        return [r for r in self.snapshot() if r.t_closed is None]

    def with_data(self):
        return [r for r in self.snapshot() if r.data]

    def close(self):
        self.stopping = True
        try:
            self.ls.close()
        except OSError:
            pass
        for r in self.snapshot():
            for s in (r.tls, r.sock):
                if s is None:
                    continue
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        self.th.join(2)


@pytest.fixture
def upstreams(pki):
    made = []

    def make(**kw):
        u = Upstream(pki, **kw)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def wait_for(pred, timeout, what, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s %s" % (timeout, what,
                                                                               detail()))
        time.sleep(0.02)


def wait_listening(sd, timeout=10.0):
    """The master's `listening` line (the socket is bound: a caller's
    connect is queued even if no worker has accepted yet). No probe."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sd.proc.poll() is not None:
            raise AssertionError("steeldoor exited at start rc=%s\n%s"
                                 % (sd.proc.returncode, sd.stderr_text()[-3000:]))
        if any(e.get("event") == "listening" for e in sd.logs()):
            return
        time.sleep(0.02)
    raise AssertionError("no listening line within %.0fs\n%s"
                         % (timeout, sd.stderr_text()[-3000:]))


def warm_args(pki, port, up, extra=(), **kw):
    return connect_args(pki, "127.0.0.1:%d" % port, up.target,
                        ["--server-name", "localhost"] + list(extra), **kw)


def call(port, payload, greeting_len=0):
    """A caller: connect, read the greeting (if any), send, read the echo.
    Returns (peer string steeldoor logs, greeting bytes, echoed bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        g = recv_exact(s, greeting_len) if greeting_len else b""
        s.sendall(payload)
        return peer, g, recv_exact(s, len(payload))


def warm_lines(sd):
    return [l for l in sd.logs() if l.get("event") == "conn" and l.get("peer") == "-"]


def all_conn_lines(sd):
    return [l for l in sd.logs() if l.get("event") == "conn"]


def caller_lines(sd):
    return [l for l in sd.logs() if l.get("event") == "conn" and l.get("peer") != "-"]


def log_time(line):
    t = datetime.datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def serial_of(der):
    return x509.load_der_x509_certificate(der).serial_number


def log_tail(sd, n=30):
    return "\n".join(sd.raw_lines()[-n:])


# --------------------------------------------------------------------------
# 1. made ahead, handed out, replaced; dropped at drain
# --------------------------------------------------------------------------

def test_warm_made_ahead_handed_out_and_replaced(pki, upstreams, connects):
    up = upstreams()
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "2"]))
    # before any caller: two connections made and handshaken ...
    wait_for(lambda: len(up.handshaken()) >= 2, 10, "2 warm connections",
             lambda: log_tail(sd))
    # ... and no more, none closed, nothing logged for them (they are not
    # connections of a caller yet)
    time.sleep(0.6)
    recs = up.snapshot()
    assert len(recs) == 2, [(r.t_accept, r.end) for r in recs]
    assert all(r.t_closed is None for r in recs), [r.end for r in recs]
    assert all(r.peer is not None for r in recs)  # our certificate went out
    assert all_conn_lines(sd) == [], all_conn_lines(sd)
    first_two = list(recs)

    peer, _, got = call(port, b"first-caller\n")
    assert got == b"first-caller\n"
    # it rode one of the two made ahead, not a new one
    used = up.with_data()
    assert len(used) == 1 and used[0] in first_two, used
    assert bytes(used[0].data) == b"first-caller\n"
    line = sd.wait_conn(peer)
    assert line["result"] == "ok", line
    assert line.get("warm") is True, line
    assert line["bytes_in"] == len(b"first-caller\n") and line["bytes_out"] == len(
        b"first-caller\n"), line
    client = x509.load_pem_x509_certificate(open(pki.client_cert, "rb").read())
    assert int(line["client_cert_serial"], 16) == client.serial_number, line

    # the one taken is replaced: a third connection, and only one
    wait_for(lambda: up.count >= 3, 5, "a replacement", lambda: log_tail(sd))
    wait_for(lambda: len(up.handshaken()) >= 3, 5, "the replacement's handshake")
    time.sleep(0.5)
    assert up.count == 3, [(r.t_accept, r.end) for r in up.snapshot()]
    assert len(up.open_ones()) == 2, [r.end for r in up.snapshot()]
    assert warm_lines(sd) == [], warm_lines(sd)

    # a second caller is warm too (the other one made ahead, or the replacement)
    peer2, _, got2 = call(port, b"second-caller\n")
    assert got2 == b"second-caller\n"
    line2 = sd.wait_conn(peer2)
    assert line2["result"] == "ok" and line2.get("warm") is True, line2
    wait_for(lambda: up.count >= 4, 5, "the second replacement")

    # drain: the warm connections no caller took are closed at once (the
    # drain does not wait for them until --drain-timeout 2s), quietly
    wait_for(lambda: len(up.handshaken()) >= 4, 5, "the second replacement's handshake")
    t0 = time.monotonic()
    sd.stop(timeout=10)
    took = time.monotonic() - t0
    assert took < 1.5, "stop took %.2fs: the drain waited for warm connections" % took
    wait_for(lambda: not up.open_ones(), 3, "the upstream to see every warm connection closed",
             lambda: str([r.end for r in up.snapshot()]))
    assert warm_lines(sd) == [], warm_lines(sd)
    assert len(up.with_data()) == 2


def test_warm_is_per_worker(pki, upstreams, connects):
    up = upstreams()
    port = free_port()
    args = warm_args(pki, port, up, ["--warm", "2"])
    args[args.index("--workers") + 1] = "2"
    sd = connects(args)
    wait_for(lambda: len(up.handshaken()) >= 4, 10, "2 warm connections in each of 2 workers",
             lambda: log_tail(sd))
    time.sleep(0.5)
    assert up.count == 4, [(r.t_accept, r.end) for r in up.snapshot()]


# --------------------------------------------------------------------------
# 2. warm-max-age
# --------------------------------------------------------------------------

def test_warm_max_age_replaces_and_never_hands_out_an_old_one(pki, upstreams, connects):
    up = upstreams()
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "1", "--warm-max-age", "1s"]))
    wait_for(lambda: up.handshaken(), 10, "the warm connection", lambda: log_tail(sd))
    first = up.snapshot()[0]
    max_open = 0
    while time.monotonic() < first.t_accept + 2.5:
        max_open = max(max_open, len(up.open_ones()))
        time.sleep(0.02)
    recs = up.snapshot()
    # replaced: the first one closed by steeldoor after about a second (not
    # by the server: its idle timeout is 30 s), then a new one
    assert len(recs) >= 2, [(r.t_accept - first.t_accept, r.end) for r in recs]
    assert first.t_closed is not None and first.end != "idle", first.end
    age = first.t_closed - first.t_accept
    assert 0.8 <= age <= 1.7, "closed at %.2fs with warm-max-age 1s" % age
    assert recs[1].t_accept >= first.t_closed - 0.2  # replaced after, not before
    assert max_open <= 1, "more than --warm 1 open at once: %d" % max_open
    # closed quietly: no line for an aged one
    assert all_conn_lines(sd) == [], all_conn_lines(sd)
    assert not up.with_data()

    # callers at a few points of the cycle: each rides a connection accepted
    # less than ~1.3 s before (never an aged one)
    for i, pause in enumerate((0.0, 0.45, 0.7)):
        time.sleep(pause)
        before = {id(r) for r in up.with_data()}
        t_call = time.monotonic()
        payload = b"aged-check-%d\n" % i
        peer, _, got = call(port, payload)
        assert got == payload
        used = [r for r in up.with_data() if id(r) not in before]
        assert len(used) == 1, used
        age = t_call - used[0].t_accept
        assert age < 1.3, "caller %d got a connection accepted %.2fs before" % (i, age)
        line = sd.wait_conn(peer)
        assert line["result"] == "ok", line


def test_warm_max_age_below_server_idle_timeout_no_dead_handout(pki, upstreams, connects):
    """The server closes a connection idle for 1.5 s; with warm-max-age 1s
    steeldoor replaces each before that, so callers that come after longer
    pauses than the server's timeout never get a dead one."""
    up = upstreams(idle_close=1.5)
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "1", "--warm-max-age", "1s"]))
    wait_for(lambda: up.handshaken(), 10, "the warm connection", lambda: log_tail(sd))
    # ten callers over ~4 s; two pauses longer than the server's timeout
    offsets = [0.0, 0.15, 0.3, 2.0, 2.1, 2.25, 3.95, 4.0, 4.1, 4.2]
    t0 = time.monotonic()
    errors, peers = [], []
    for i, off in enumerate(offsets):
        left = t0 + off - time.monotonic()
        if left > 0:
            time.sleep(left)
        payload = b"caller-%d-%s\n" % (i, b"x" * i)
        try:
            peer, _, got = call(port, payload)
            peers.append(peer)
            if got != payload:
                errors.append("caller %d: %r" % (i, got))
        except (OSError, EOFError, TimeoutError) as e:
            errors.append("caller %d: %r" % (i, e))
    assert not errors, "%s\n%s" % (errors, log_tail(sd))
    for p in peers:
        line = sd.wait_conn(p)
        assert line["result"] == "ok", line
    # steeldoor closed each aged one before the server's timeout did: the
    # server never cut one, so no warm connection failed
    ends = [r.end for r in up.snapshot()]
    assert "idle" not in ends, ends
    assert warm_lines(sd) == [], warm_lines(sd)
    assert any(l.get("warm") for l in caller_lines(sd)), caller_lines(sd)


# --------------------------------------------------------------------------
# 3. server speaks first
# --------------------------------------------------------------------------

def test_warm_keeps_the_servers_greeting_for_the_caller(pki, upstreams, connects):
    up = upstreams(greeting=GREETING)
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "1"]))
    wait_for(lambda: any(r.t_greeted for r in up.snapshot()), 10, "the greeting sent",
             lambda: log_tail(sd))
    time.sleep(0.3)  # steeldoor has read it by now, with no caller
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        # the greeting comes first, before the caller says anything
        assert recv_exact(s, len(GREETING)) == GREETING
        s.sendall(b"EHLO caller\r\n")
        assert recv_exact(s, 13) == b"EHLO caller\r\n"
    line = sd.wait_conn(peer)
    assert line["result"] == "ok" and line.get("warm") is True, line
    assert line["bytes_out"] == len(GREETING) + 13 and line["bytes_in"] == 13, line
    # the caller rode the connection that sent the greeting
    assert len(up.with_data()) == 1 and up.with_data()[0] is up.snapshot()[0]
    # the replacement greets too; the next caller gets its greeting, once
    wait_for(lambda: sum(1 for r in up.snapshot() if r.t_greeted) >= 2, 5, "2nd greeting")
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert recv_exact(s, len(GREETING)) == GREETING
        s.sendall(b"QUIT\r\n")
        assert recv_exact(s, 6) == b"QUIT\r\n"


def test_warm_keeps_a_greeting_larger_than_a_buffer(pki, upstreams, connects):
    """A greeting larger than what steeldoor reads ahead (one buffer; the
    rest stays in the socket) reaches the caller whole and in order."""
    big = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(300 * 1024)) + b"\r\n"
    up = upstreams(greeting=big)
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "1"]))
    wait_for(lambda: up.handshaken(), 10, "the warm connection", lambda: log_tail(sd))
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        got = recv_exact(s, len(big), timeout=10)
        assert got == big, "greeting differs at byte %d" % next(
            i for i in range(len(big)) if got[i] != big[i])
        s.sendall(b"after-big\n")
        assert recv_exact(s, 10) == b"after-big\n"
    line = sd.wait_conn(peer)
    assert line["result"] == "ok" and line.get("warm") is True, line
    assert line["bytes_out"] == len(big) + 10, line


# --------------------------------------------------------------------------
# 4. failures and backoff
# --------------------------------------------------------------------------

def test_warm_failure_logged_backed_off_and_caller_refused(pki, upstreams, connects):
    up = upstreams(verify_mode=ssl.CERT_NONE)  # never asks for a client certificate
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "1"]))
    wait_listening(sd)
    wait_for(lambda: warm_lines(sd), 10, "a warm failure line", lambda: log_tail(sd))
    first = time.monotonic()
    time.sleep(3.5)
    lines = warm_lines(sd)
    for l in lines:
        assert l["result"] == "error", l
        assert l["reason"] == "server_did_not_request_client_cert", l
        assert l.get("warm") is True and l["peer"] == "-", l
    # attempts at 0, 1, 3 s (then 7, 15, 30...): over ~3.5 s at most a few,
    # never one per tick; and it does retry
    assert 2 <= len(lines) <= 4, "%d warm attempts in %.1fs:\n%s" % (
        len(lines), time.monotonic() - first, "\n".join(map(str, lines)))
    ts = [log_time(l) for l in lines]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert gaps[0] >= 0.75, gaps
    if len(gaps) >= 2:
        assert gaps[1] >= 1.6, "backoff did not double: gaps %s" % gaps
    # the server's application never got a byte
    assert not up.with_data()

    # a caller is refused too, on its own line, for the same reason
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        s.settimeout(5)
        s.sendall(b"must-not-arrive\n")
        assert s.recv(100) == b""
    line = sd.wait_conn(peer)
    assert line["result"] == "error", line
    assert line["reason"] == "server_did_not_request_client_cert", line
    assert not line.get("warm"), line
    time.sleep(0.3)
    assert not up.with_data(), [bytes(r.data) for r in up.with_data()]


def test_warm_failures_of_one_round_back_off_once(pki, upstreams, connects):
    """--warm 3 against a server that is refused: the first three attempts
    fail together; the next attempt waits 1 s (the documented first pause),
    not 1 s doubled once per connection of the round (4 s here; with
    --warm 64 a single failed round would pause 30 s)."""
    up = upstreams(verify_mode=ssl.CERT_NONE)
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "3"]))
    wait_listening(sd)
    wait_for(lambda: len(warm_lines(sd)) >= 3, 10, "the first round of 3 failures",
             lambda: log_tail(sd))
    first_round = warm_lines(sd)[:3]
    t_last = max(log_time(l) for l in first_round)
    try:
        wait_for(lambda: len(warm_lines(sd)) >= 4, 2.2, "a retry 1 s after the first failures")
    except AssertionError:
        raise AssertionError("no warm retry within 2.2 s of a round of 3 failures (the pause "
                             "should be 1 s); warm lines:\n%s" % "\n".join(
                                 map(str, warm_lines(sd))))
    gap = log_time(warm_lines(sd)[3]) - t_last
    assert 0.75 <= gap <= 1.7, "first retry after %.2fs" % gap


def test_warm_refused_by_the_server_backs_off_doubling(pki, upstreams, connects):
    """TLS 1.3: the server's verdict on our certificate comes after our side
    of the handshake is done, so the warm connection is ready before the
    server's alert ends it. Such failures back off too, doubling: attempts
    at 0, 1, 3 s, not one a second."""
    up = upstreams(ca=pki.other_ca)  # requires a client cert, but not from our CA
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "1"]))
    wait_listening(sd)
    wait_for(lambda: warm_lines(sd), 10, "a warm failure line", lambda: log_tail(sd))
    time.sleep(4.3)
    lines = warm_lines(sd)
    for l in lines:
        assert l["result"] == "error" and l.get("warm") is True and l["peer"] == "-", l
    assert not up.with_data()
    ts = [log_time(l) for l in lines]
    gaps = [round(b - a, 2) for a, b in zip(ts, ts[1:])]
    assert len(lines) >= 2, lines
    # doubling: 0, 1, 3 (next at 7) -> 3 attempts in ~4.3 s; one a second -> 5
    assert len(lines) <= 3 and (len(gaps) < 2 or gaps[1] >= 1.6), (
        "%d warm attempts in ~4.3 s, gaps %s (backoff not doubling); first line: %s"
        % (len(lines), gaps, lines[0]))


# --------------------------------------------------------------------------
# 5. reload: the warm connections are made again with the new certificate
# --------------------------------------------------------------------------

def test_warm_reload_new_client_cert(pki, upstreams, connects, tmp_path):
    issuer = root_issuer(pki)
    d = tmp_path / "rot"
    a = issue_cert(d, "cert-a", issuer, uris=("spiffe://example.org/billing",))
    b = issue_cert(d, "cert-b", issuer, uris=("spiffe://example.org/billing",))
    live_crt, live_key = d / "live.crt", d / "live.key"
    shutil.copy(a.crt, live_crt)
    shutil.copy(a.keyfile, live_key)
    os.chmod(live_key, 0o600)
    up = upstreams()
    port = free_port()
    sd = connects(warm_args(pki, port, up, ["--warm", "2", "--no-watch"],
                            cert=str(live_crt), key=str(live_key)))
    wait_for(lambda: len(up.handshaken()) >= 2, 10, "2 warm connections", lambda: log_tail(sd))
    assert {serial_of(r.peer) for r in up.handshaken()} == {a.cert.serial_number}
    # a caller that holds its (warm) connection across the reload
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        held.sendall(b"held-before\n")
        assert recv_exact(held, 12) == b"held-before\n"
        wait_for(lambda: len(up.handshaken()) >= 3, 5, "the replacement")
        time.sleep(0.2)
        old = up.snapshot()

        # key first, then the certificate (never a mismatched pair read)
        atomic_write(live_key, b.keyfile.read_bytes())
        os.chmod(live_key, 0o600)
        atomic_write(live_crt, b.crt.read_bytes())
        sighup_reload(sd, 1)

        # the two no caller took are closed; two new ones present B
        held_rec = [r for r in old if r.data]
        assert len(held_rec) == 1
        idle_old = [r for r in old if not r.data]
        wait_for(lambda: all(r.t_closed is not None for r in idle_old), 5,
                 "the old warm connections closed at the reload",
                 lambda: str([r.end for r in idle_old]))
        new_ones = lambda: [r for r in up.handshaken() if r not in old]  # noqa: E731
        wait_for(lambda: len(new_ones()) >= 2, 5, "2 new warm connections", lambda: log_tail(sd))
        time.sleep(0.3)
        assert len([r for r in up.snapshot() if r not in old]) == 2
        assert {serial_of(r.peer) for r in new_ones()} == {b.cert.serial_number}

        # the next caller presents B, on a warm connection made after the reload
        peer, _, got = call(port, b"after-reload\n")
        assert got == b"after-reload\n"
        used = [r for r in up.with_data() if r not in old]
        assert len(used) == 1 and serial_of(used[0].peer) == b.cert.serial_number
        line = sd.wait_conn(peer)
        assert line["result"] == "ok" and line.get("warm") is True, line
        assert int(line["client_cert_serial"], 16) == b.cert.serial_number, line
        assert line.get("client_cert_subject") == "CN=cert-b", line

        # the caller's connection opened before the reload is kept, with A
        held.sendall(b"held-after\n")
        assert recv_exact(held, 11) == b"held-after\n"
        assert serial_of(held_rec[0].peer) == a.cert.serial_number
        assert held_rec[0].t_closed is None
    finally:
        held.close()
    assert warm_lines(sd) == [], warm_lines(sd)


# --------------------------------------------------------------------------
# 6. YAML
# --------------------------------------------------------------------------

def connector_yaml(pki, port, target, more):
    return """workers: 1
connectors:
  - name: to-api
    listen: 127.0.0.1:%d
    target: %s
    server-name: localhost
    cert: %s
    key: %s
    cacert: %s
%s""" % (port, target, pki.client_cert, pki.client_key, pki.ca, more)


def test_warm_in_yaml_connectors(pki, upstreams, steeldoor):
    up = upstreams()
    port = free_port()
    sd = steeldoor(config=connector_yaml(pki, port, up.target,
                                         "    warm: 1\n    warm-max-age: 1s\n"))
    wait_for(lambda: up.handshaken(), 10, "the warm connection", lambda: log_tail(sd))
    first = up.snapshot()[0]
    # warm-max-age from the file applies: replaced after about a second
    wait_for(lambda: up.count >= 2, 3, "a replacement at warm-max-age 1s", lambda: log_tail(sd))
    assert first.t_closed is not None and first.t_closed - first.t_accept < 1.7
    wait_for(lambda: up.open_ones() and up.open_ones()[0].t_hs, 3, "the new warm connection")
    time.sleep(0.1)
    peer, _, got = call(port, b"yaml-warm\n")
    assert got == b"yaml-warm\n"
    line = sd.wait_conn(peer)
    assert line["result"] == "ok" and line.get("warm") is True, line
    assert warm_lines(sd) == []


def refused_config(sd_bin, tmp_path, name, args):
    sd = Steeldoor(sd_bin, args, tmp_path, name=name)
    sd.start()
    try:
        rc = sd.wait_exit(10)
        assert rc is not None and rc != 0, "started (rc=%r):\n%s" % (rc, sd.stderr_text())
        return sd.stderr_text()
    finally:
        sd.kill()
        sd.close_files()


def test_warm_out_of_range_refused_at_start(pki, sd_bin, tmp_path):
    cfg = tmp_path / "warm65.yaml"
    cfg.write_text(connector_yaml(pki, free_port(), "127.0.0.1:1", "    warm: 65\n"))
    err = refused_config(sd_bin, tmp_path, "warm65", ["serve", "--config", cfg])
    assert "warm" in err and "65" in err and "64" in err, err
    err = refused_config(sd_bin, tmp_path, "warm65cli",
                         connect_args(pki, "127.0.0.1:%d" % free_port(), "127.0.0.1:1",
                                      ["--warm", "65"]))
    assert "--warm" in err and "64" in err, err
    err = refused_config(sd_bin, tmp_path, "warmneg",
                         connect_args(pki, "127.0.0.1:%d" % free_port(), "127.0.0.1:1",
                                      ["--warm", "-1"]))
    assert "warm" in err, err


def test_warm_on_a_listener_refused(pki, sd_bin, tmp_path):
    cfg = tmp_path / "listener-warm.yaml"
    cfg.write_text("""workers: 1
listeners:
  - name: api
    listen: 127.0.0.1:%d
    target: 127.0.0.1:1
    cert: %s
    key: %s
    cacert: %s
    allow-all: true
    warm: 1
""" % (free_port(), pki.server_cert, pki.server_key, pki.ca))
    err = refused_config(sd_bin, tmp_path, "lwarm", ["serve", "--config", cfg])
    assert "'warm'" in err and "connectors" in err, err
    err = refused_config(sd_bin, tmp_path, "lwarmcli",
                         ["serve", "--listen", "127.0.0.1:%d" % free_port(),
                          "--target", "127.0.0.1:1", "--cert", pki.server_cert,
                          "--key", pki.server_key, "--cacert", pki.ca, "--allow-all",
                          "--warm", "1"])
    assert "--warm" in err, err


# --------------------------------------------------------------------------
# 7. unix socket listen
# --------------------------------------------------------------------------

def test_warm_on_a_unix_listen_socket(pki, upstreams, connects, tmp_path):
    up = upstreams()
    path = str(tmp_path / "warm.sock")
    sd = connects(connect_args(pki, "unix:" + path, up.target,
                               ["--server-name", "localhost", "--warm", "1"]))
    wait_for(lambda: os.path.exists(path), 10, "the unix socket", lambda: log_tail(sd))
    wait_for(lambda: up.handshaken(), 10, "the warm connection", lambda: log_tail(sd))
    time.sleep(0.1)
    warm_rec = up.snapshot()[0]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"via-unix-warm\n")
        assert recv_exact(s, 14) == b"via-unix-warm\n"
    assert up.with_data() == [warm_rec]
    lines = wait_for(lambda: caller_lines(sd), 5, "the caller's line")
    assert lines[0]["result"] == "ok" and lines[0].get("warm") is True, lines
    wait_for(lambda: up.count >= 2, 5, "the replacement")
    assert warm_lines(sd) == []
