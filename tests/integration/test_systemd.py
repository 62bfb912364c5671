"""systemd's notification protocol, spoken to a socket this test holds, as
systemd would hold it: NOTIFY_SOCKET names an AF_UNIX datagram socket (a
path, or an abstract name written '@name'); SO_PASSCRED gives each
datagram's sender pid, which must be the master's (systemd takes messages
from the main pid only, and a worker must never speak for the service).

READY=1 must mean "serving": a client that connects the moment it arrives
completes a mutual-TLS exchange. A reload is RELOADING=1 (with
MONOTONIC_USEC, which systemd 253's Type=notify-reload requires) then
READY=1, also when it fails (the old configuration serves on); SIGTERM
sends STOPPING=1. A NOTIFY_SOCKET nobody listens on must not break the
start. Every wait is bounded."""
import os
import signal
import socket
import struct
import time

import pytest

import sdlib
from conftest import sighup_reload

UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class NotifySocket:
    """The receiving end: what systemd binds for a Type=notify service."""

    def __init__(self, tmp_path, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = "sd-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.got = []  # every message received: (pid, text, {var: value})

    def recv(self, timeout):
        """The next datagram within timeout seconds, or None."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
        except socket.timeout:
            return None
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = UCRED.unpack(cdata[:UCRED.size])[0]
        text = data.decode("utf-8", errors="replace")
        fields = {}
        for line in text.split("\n"):
            k, sep, v = line.partition("=")
            if sep:
                fields[k] = v
        msg = (pid, text, fields)
        self.got.append(msg)
        return msg

    def wait_for(self, var, value, timeout, sd=None):
        """Messages up to and including the first with var=value; fails after
        timeout, or at once if steeldoor exited."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s=%s within %.1fs; received %r%s" % (
                    var, value, timeout, [m[1] for m in seen],
                    "" if sd is None else "\nlog tail:\n" + "\n".join(sd.raw_lines()[-20:])))
            msg = self.recv(min(left, 0.2))
            if msg is None:
                if sd is not None and not sd.running():
                    raise AssertionError("steeldoor exited (rc %r) before %s=%s; log:\n%s" % (
                        sd.proc.returncode, var, value, "\n".join(sd.raw_lines()[-20:])))
                continue
            seen.append(msg)
            if msg[2].get(var) == value:
                return seen

    def quiet(self, duration):
        """Messages that arrive within duration (expected: none)."""
        out = []
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            msg = self.recv(deadline - time.monotonic())
            if msg is not None:
                out.append(msg)
        return out

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request, tmp_path, monkeypatch):
    """A notify socket, and NOTIFY_SOCKET naming it for the steeldoor the
    test starts (the Steeldoor helper passes the environment on)."""
    ns = NotifySocket(tmp_path, abstract=request.param == "abstract")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.env)
    yield ns
    ns.close()


def start_unwaited(steeldoor, **kw):
    """steeldoor, without the helper's own readiness probes (TCP connects to
    the port): READY=1 is the only sign of readiness this test uses."""
    return steeldoor(wait_ports=[], **kw)


def mono_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_ready_means_serving(steeldoor, echo_backend, good_ctx, notify):
    port = sdlib.free_port()
    sd = start_unwaited(steeldoor, target=echo_backend.target, port=port, workers=2)
    seen = notify.wait_for("READY", "1", timeout=15, sd=sd)
    # At once: not a retry loop. A READY sent before the listener accepts
    # and a worker serves fails right here.
    with sdlib.tls_connect(good_ctx, port, timeout=5) as s:
        assert sdlib.echo_roundtrip(s, b"ready-means-serving\n") == b"ready-means-serving\n"
    pid, text, fields = seen[-1]
    assert pid == sd.pid, "READY=1 came from pid %r, not the master %d" % (pid, sd.pid)
    assert [m for m in seen if m[2].get("READY") == "1"] == [seen[-1]], seen
    assert fields.get("STATUS"), "READY=1 without a STATUS line: %r" % text
    if "MAINPID" in fields:
        assert fields["MAINPID"] == str(sd.pid), text
    assert not [m for m in seen if m[0] != sd.pid], seen


def test_reload_and_stop(steeldoor, echo_backend, good_ctx, notify):
    sd = start_unwaited(steeldoor, target=echo_backend.target, workers=2)
    notify.wait_for("READY", "1", timeout=15, sd=sd)
    sd.wait_workers(2)
    before = mono_usec()
    sighup_reload(sd, workers=2, timeout=10)
    seen = notify.wait_for("READY", "1", timeout=10, sd=sd)
    after = mono_usec()
    assert seen[0][2].get("RELOADING") == "1", \
        "the first message after SIGHUP is not RELOADING=1: %r" % [m[1] for m in seen]
    usec = seen[0][2].get("MONOTONIC_USEC")
    assert usec is not None and usec.isdigit(), "RELOADING=1 without MONOTONIC_USEC: %r" % (
        seen[0][1],)
    assert before <= int(usec) <= after, "MONOTONIC_USEC %s not within [%d, %d]: not " \
        "CLOCK_MONOTONIC in microseconds" % (usec, before, after)
    assert [m[2].get("RELOADING") for m in seen].count("1") == 1, seen
    # still serving after the reload
    with sdlib.tls_connect(good_ctx, sd.port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    sd.signal(signal.SIGTERM)
    seen = notify.wait_for("STOPPING", "1", timeout=10, sd=None)
    assert sd.wait_exit(15) == 0, "exit code %r after SIGTERM" % sd.proc.returncode
    sd.stopped = True
    assert not [m for m in notify.got if m[0] != sd.pid], \
        "messages from another pid than the master's: %r" % notify.got


def test_failed_reload_still_ready(steeldoor, echo_backend, make_config, notify, good_ctx):
    port = sdlib.free_port()
    sd = start_unwaited(steeldoor, config=make_config(
        [{"name": "api", "port": port, "target": echo_backend.target}],
        extra_top="watch: false"))  # this reload is the SIGHUP's alone
    notify.wait_for("READY", "1", timeout=15, sd=sd)
    cfg = sd.args[sd.args.index("--config") + 1]
    with open(cfg, "a") as f:
        f.write("no-such-key: 1\n")
    sd.signal(signal.SIGHUP)
    seen = notify.wait_for("READY", "1", timeout=10, sd=sd)
    assert seen[0][2].get("RELOADING") == "1", [m[1] for m in seen]
    sd.wait_log(lambda e: e.get("event") == "reload_failed", timeout=5)
    # systemd would otherwise wait in "reloading" until its timeout, and the
    # old configuration does serve:
    with sdlib.tls_connect(good_ctx, port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    assert not [m for m in notify.got if m[0] != sd.pid], notify.got


def test_no_worker_ever_notifies(steeldoor, echo_backend, notify):
    """Workers forked before the first message, a worker restarted after it,
    reloads and the drain: every datagram is the master's."""
    sd = start_unwaited(steeldoor, target=echo_backend.target, workers=3)
    notify.wait_for("READY", "1", timeout=15, sd=sd)
    workers = sd.wait_workers(3)
    assert len(workers) == 3, workers
    os.kill(workers[0], signal.SIGKILL)
    sd.wait_log(lambda e: e.get("event") in ("worker_restarted", "worker_started")
                and e.get("worker_pid") not in workers, timeout=10, what="a restarted worker")
    new = sd.wait_workers(3, exclude=[workers[0]])
    assert workers[0] not in new
    sighup_reload(sd, workers=3, timeout=10)
    notify.wait_for("READY", "1", timeout=10, sd=sd)
    sd.signal(signal.SIGTERM)
    notify.wait_for("STOPPING", "1", timeout=10)
    assert sd.wait_exit(15) == 0
    sd.stopped = True
    notify.got += notify.quiet(0.3)
    pids = {m[0] for m in notify.got}
    assert pids == {sd.pid}, "senders %r, master %d, workers %r" % (pids, sd.pid,
                                                                     sorted(sd.known_workers))
    kinds = [k for m in notify.got for k in ("READY", "RELOADING", "STOPPING")
             if m[2].get(k) == "1"]
    assert kinds == ["READY", "RELOADING", "READY", "STOPPING"], notify.got


@pytest.mark.parametrize("where", ["/nonexistent-dir/notify.sock", "@sd-test-nobody-listens",
                                   "relative/notify.sock"])
def test_notify_socket_nobody_listens(steeldoor, echo_backend, good_ctx, monkeypatch, where):
    monkeypatch.setenv("NOTIFY_SOCKET", where)
    sd = steeldoor(target=echo_backend.target, workers=2)
    with sdlib.tls_connect(good_ctx, sd.port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    sighup_reload(sd, workers=2, timeout=10)
    with sdlib.tls_connect(good_ctx, sd.port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    sd.stop(timeout=10)
    # Said once (READY, RELOADING, READY and STOPPING could not be sent), by
    # the master, and never from a worker.
    lines = [e for e in sd.logs() if e.get("event") == "notify"]
    assert len(lines) == 1, lines
    assert lines[0].get("pid") == sd.pid and lines[0].get("level") == "warn", lines
