"""A log reader that stops must not stop the gateway (issue 11a).

steeldoor's stderr is a pipe this test reads itself, and at times stops
reading. While it is stopped the pipe fills, and then: handshakes and echo
still work, a killed worker is restarted, SIGTERM still stops the gateway.
When reading resumes, each process reports the lines it had to drop
("log_dropped") and every line is whole, valid JSON.
"""
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import termios
import time

import sdlib
from conftest import serve_args

SAN = os.environ.get("STEELDOOR_SAN") == "1"
SLOW = 3 if SAN else 1
F_SETPIPE_SZ = 1031          # fcntl.F_SETPIPE_SZ, missing before Python 3.10
# Linux's default pipe size, set so the test does not depend on the host.
# An idle worker drains its queue one pipe-full per 250 ms tick, so a much
# smaller pipe would make the 256 KiB queues slow to drain after resuming.
PIPE_SZ = 65536
# A stalled pipe: a pipe holds whole pages, and a worker writes the lines
# of one batch of events together (up to 4 KiB, atomically), so a write
# that does not fit in the last page's room takes a fresh page: a pipe
# whose writers are stalled can hold well under its size.
STALLED = PIPE_SZ // 2
FLOOD = 6000                 # ~300-byte lines: well over 2 x (64 + 256) KiB
HANDSHAKES = 200


class PipedSteeldoor:
    """steeldoor with stderr on a pipe whose reading the test controls."""

    def __init__(self, binary, args, cwd):
        r, w = os.pipe()
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SZ)
        try:
            self.proc = subprocess.Popen([str(binary)] + [str(a) for a in args],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=w, cwd=str(cwd))
        finally:
            os.close(w)  # the children hold the only write ends: EOF when all exit
        os.set_blocking(r, False)
        self.r = r
        self.pid = self.proc.pid
        self.data = bytearray()
        self.eof = False
        self.seen_workers = set()

    # -- the reader ----------------------------------------------------------
    def read_for(self, seconds):
        """Reads whatever comes for `seconds` (or until EOF)."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.r], [], [], min(left, 0.1))
            if not ready:
                continue
            try:
                chunk = os.read(self.r, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.eof = True
                break
            self.data += chunk

    def read_until(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return
            if time.monotonic() > deadline or self.eof:
                raise AssertionError("no %s within %.0fs; log tail:\n%s"
                                     % (what, timeout, self.tail()))
            self.read_for(0.1)

    def pipe_fill(self):
        """Bytes waiting in the pipe: a stopped reader leaves it full."""
        buf = bytearray(4)
        fcntl.ioctl(self.r, termios.FIONREAD, buf)
        return int.from_bytes(buf, "little")

    # -- what was read -------------------------------------------------------
    def lines(self):
        text = bytes(self.data)
        end = text.rfind(b"\n") + 1  # a line still being read is not judged yet
        return [l for l in text[:end].split(b"\n") if l]

    def events(self):
        out = []
        for raw in self.lines():
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def tail(self, n=20):
        return "\n".join(l.decode(errors="replace") for l in self.lines()[-n:])

    def workers(self):
        pids = sdlib.children_of(self.pid)
        self.seen_workers |= set(pids)
        return pids

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for p in self.seen_workers:
            if sdlib.pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        os.close(self.r)


def flood(port, n):
    """n bare TCP connections: each costs steeldoor a 'conn' line (~300 bytes)."""
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.close()


def mtls_echo(ctx, port, tag):
    """A full mTLS handshake and an echo through steeldoor; returns the peer."""
    payload = b"log-sink-%s\n" % tag.encode()
    with sdlib.tls_connect(ctx, port, timeout=5.0 * SLOW) as s:
        peer = sdlib.peer_of(s)
        got = sdlib.echo_roundtrip(s, payload, timeout=5.0 * SLOW)
    assert got == payload, "echo %r != %r" % (got, payload)
    return peer


def wait_new_worker(sd, gone, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = sd.workers()
        if len(pids) == 2 and gone not in pids:
            return pids
        time.sleep(0.05)
    raise AssertionError("killed worker %d was not replaced within %.0fs (workers now %s)"
                         % (gone, timeout, sd.workers()))


def fd_flags(pid, fd):
    """open(2) flags of a process's fd (its open file description's)."""
    with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError("no flags in /proc/%d/fdinfo/%d" % (pid, fd))


def private_nonblocking_twin(pid, fd=2):
    """Another fd of pid on the same pipe or terminal as fd, non-blocking:
    the description steeldoor opened for itself."""
    target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
    for other in os.listdir("/proc/%d/fd" % pid):
        if int(other) == fd:
            continue
        try:
            if (os.readlink("/proc/%d/fd/%s" % (pid, other)) == target
                    and fd_flags(pid, int(other)) & os.O_NONBLOCK):
                return int(other)
        except OSError:
            continue
    return None


def check_stream(data):
    """Every line whole and valid JSON with an event (a line written in
    pieces, or two lines mixed, fails here)."""
    assert data.endswith(b"\n"), "stream ends inside a line: %r" % data[-200:]
    objs = []
    for raw in data.split(b"\n")[:-1]:
        assert len(raw) < 4096, "line longer than PIPE_BUF: %r..." % raw[:200]
        try:
            obj = json.loads(raw)
        except ValueError:
            raise AssertionError("not a JSON line (interleaved or cut?): %r" % raw[:500])
        assert isinstance(obj, dict) and isinstance(obj.get("event"), str), raw[:300]
        objs.append(obj)
    return objs


def test_stopped_log_reader_does_not_stop_serving(sd_bin, pki, echo_backend, good_ctx,
                                                  tmp_path):
    port = sdlib.free_port()
    args = serve_args(pki, port, echo_backend.target,
                      extra=["--workers", "2", "--drain-timeout", "3s"])
    sd = PipedSteeldoor(sd_bin, args, tmp_path)
    try:
        # Start-up, reading as a healthy reader does.
        deadline = time.monotonic() + 15 * SLOW
        while not sdlib.tcp_accepts("127.0.0.1", port, timeout=0.3):
            assert sd.proc.poll() is None, "steeldoor exited at start:\n" + sd.tail()
            assert time.monotonic() < deadline, "steeldoor did not listen:\n" + sd.tail()
            sd.read_for(0.05)
        sd.read_until(lambda: len(sd.workers()) == 2, 10 * SLOW, "two workers")
        sd.read_for(0.3)
        mtls_echo(good_ctx, port, "warm")
        sd.read_for(0.3)

        # The reader stops. The flood fills the pipe and the queues behind it.
        flood(port, FLOOD)
        time.sleep(0.5)
        # A pipe holds whole pages: writes of up to 4 KiB (a worker writes
        # the lines of one batch of events together) may each take a page
        # of their own, so a stalled pipe can hold well under its size.
        assert sd.pipe_fill() >= STALLED, \
            "pipe not full (%d bytes): the test did not stall the writers" % sd.pipe_fill()
        # fd 2's description is shared with whoever started steeldoor: it
        # must stay blocking; steeldoor writes through one of its own.
        for pid in [sd.pid] + sd.workers():
            assert not fd_flags(pid, 2) & os.O_NONBLOCK, "O_NONBLOCK set on fd 2 of %d" % pid
            assert private_nonblocking_twin(pid) is not None, \
                "no private non-blocking description of stderr in %d" % pid

        # Serving goes on: every full mTLS handshake and echo succeeds.
        t0 = time.monotonic()
        for i in range(HANDSHAKES):
            mtls_echo(good_ctx, port, "stalled-%d" % i)
        took = time.monotonic() - t0
        assert took < 60 * SLOW, "%d handshakes took %.1fs" % (HANDSHAKES, took)

        # Supervision goes on: a killed worker is restarted.
        workers = sd.workers()
        assert len(workers) == 2, workers
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        new = wait_new_worker(sd, victim, 10 * SLOW)
        for i in range(20):  # the new worker serves too (SO_REUSEPORT spreads these)
            mtls_echo(good_ctx, port, "restarted-%d" % i)
        assert sd.pipe_fill() >= STALLED, "the reader was supposed to be stopped"

        # The reader resumes: each worker that dropped lines reports it, and
        # lines written after that are intact.
        def dropped_reported():
            return any(e.get("event") == "log_dropped" and e.get("dropped", 0) > 0
                       for e in sd.events())
        sd.read_until(dropped_reported, 10 * SLOW, "log_dropped line")
        fresh = [mtls_echo(good_ctx, port, "fresh-%d" % i) for i in range(10)]

        def fresh_logged():
            peers = {e.get("peer") for e in sd.events() if e.get("event") == "conn"
                     and e.get("result") == "ok"}
            return all(p in peers for p in fresh)
        sd.read_until(fresh_logged, 10 * SLOW, "conn lines of the connections after resuming")
        sd.read_until(lambda: any(e.get("event") == "worker_started" and
                                  e.get("worker_pid") in new for e in sd.events()),
                      10 * SLOW, "the master's worker_started line for the new worker")
        objs = check_stream(bytes(sd.data[:bytes(sd.data).rfind(b"\n") + 1]))
        drops = [e for e in objs if e["event"] == "log_dropped"]
        assert all(isinstance(e.get("dropped"), int) and e["dropped"] > 0 for e in drops), drops
        assert all(e.get("level") == "warn" for e in drops), drops
        exited = [e for e in objs if e["event"] == "worker_exited"
                  and e.get("worker_pid") == victim]
        assert exited and exited[0].get("restart") is True, \
            "master did not log the killed worker (its queue should have kept it)"
        ok_peers = [e["peer"] for e in objs if e["event"] == "conn" and e.get("result") == "ok"]
        assert len(ok_peers) == len(set(ok_peers)), "a conn line was written twice"

        # The reader stops again; SIGTERM still stops the gateway promptly.
        flood(port, FLOOD // 2)
        time.sleep(0.5)
        assert sd.pipe_fill() >= STALLED
        sd.proc.send_signal(signal.SIGTERM)
        try:
            rc = sd.proc.wait(timeout=15 * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError("steeldoor did not stop on SIGTERM with its log reader "
                                 "stopped")
        assert rc == 0, "exit code %r after SIGTERM" % rc
        # Everything that is left (the workers are gone too: EOF) is whole.
        sd.read_until(lambda: sd.eof, 10 * SLOW, "EOF on stderr (a worker still running?)")
        objs = check_stream(bytes(sd.data))
        text = bytes(sd.data).decode(errors="replace")
        found = [p for p in sdlib.SAN_PATTERNS if p in text]
        assert not found, "sanitizer report: %s\n%s" % (found, text[-6000:])
    finally:
        sd.close()


def test_stopped_terminal_does_not_stop_serving(sd_bin, pki, echo_backend, good_ctx,
                                                tmp_path):
    """stderr on a terminal nobody reads (a stopped ssh session, a paused
    tmux pane): serving goes on, and the terminal is left blocking."""
    import pty
    import tty

    port = sdlib.free_port()
    args = serve_args(pki, port, echo_backend.target,
                      extra=["--workers", "2", "--drain-timeout", "3s"])
    master_fd, slave_fd = pty.openpty()
    tty.setraw(slave_fd)  # no newline translation: the bytes are the lines
    proc = subprocess.Popen([str(sd_bin)] + [str(a) for a in args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave_fd, cwd=str(tmp_path))
    seen = set()
    data = bytearray()

    def read_pty(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master_fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master_fd, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    return False
                if not chunk:
                    return False
                data.extend(chunk)
        return True

    try:
        deadline = time.monotonic() + 15 * SLOW
        while not sdlib.tcp_accepts("127.0.0.1", port, timeout=0.3):
            assert proc.poll() is None, "steeldoor exited at start: %r" % bytes(data[-2000:])
            assert time.monotonic() < deadline, "steeldoor did not listen"
            read_pty(0.05)
        mtls_echo(good_ctx, port, "warm")
        seen |= set(sdlib.children_of(proc.pid))
        # Nobody reads the terminal from here on.
        flood(port, FLOOD // 2)
        for i in range(50):
            mtls_echo(good_ctx, port, "tty-%d" % i)
        assert not fcntl.fcntl(slave_fd, fcntl.F_GETFL) & os.O_NONBLOCK, \
            "steeldoor made the terminal it was started on non-blocking"
        seen |= set(sdlib.children_of(proc.pid))
        # Reading resumes: the drops are reported, the lines are whole.
        deadline = time.monotonic() + 10 * SLOW
        while b'"event":"log_dropped"' not in data:
            assert time.monotonic() < deadline, "no log_dropped line on the terminal"
            read_pty(0.1)
        # A terminal may take part of a line; its rest goes first once the
        # terminal takes bytes again, so keep reading while steeldoor stops
        # (a terminal still stopped at exit can keep a cut last line).
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15 * SLOW
        while proc.poll() is None:
            assert time.monotonic() < deadline, "steeldoor did not stop on SIGTERM"
            read_pty(0.1)
        assert proc.returncode == 0, proc.returncode
        os.close(slave_fd)
        slave_fd = -1
        deadline = time.monotonic() + 10 * SLOW
        while read_pty(0.1):
            assert time.monotonic() < deadline, "terminal output did not end"
        # A full terminal takes part of a line; the rest follows before any
        # other process's line (sd/log.h), so every line is whole here too.
        objs = check_stream(bytes(data))
        assert len(objs) > 100, len(objs)
        assert any(e["event"] == "log_dropped" and e.get("dropped", 0) > 0 for e in objs)
        assert objs[-1]["event"] == "stopped", objs[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for p in seen:
            if sdlib.pid_alive(p):
                os.kill(p, signal.SIGKILL)
        if slave_fd >= 0:
            os.close(slave_fd)
        os.close(master_fd)
