"""Helpers for the steeldoor integration suite (no pytest imports here).

Everything here talks to the real binary over loopback with real TLS.
Every blocking operation carries a timeout.
"""
import datetime
import hashlib
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

SAN_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


# --------------------------------------------------------------------------
# ports / sockets
# --------------------------------------------------------------------------

def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def closed_port(host="127.0.0.1"):
    """A port on which nothing listens (bound then released)."""
    return free_port(host)


def tcp_accepts(host, port, timeout=0.5):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


def tcp_connect_result(host, port, timeout=1.0):
    """'ok' | 'refused' | 'timeout' | 'error:<errno>'"""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "ok"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "error:%s" % e.errno
    finally:
        s.close()


def rst_close(sock):
    """Close a socket with an RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# --------------------------------------------------------------------------
# TLS client contexts
# --------------------------------------------------------------------------

def client_ctx(ca, cert=None, key=None, max_version=None, min_version=None,
               ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    if max_version is not None:
        ctx.maximum_version = max_version
    if min_version is not None:
        ctx.minimum_version = min_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_connect(ctx, port, host="127.0.0.1", server_hostname="localhost",
                timeout=5.0, session=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.socket(fam, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    raw.connect((host, port))
    s = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    s.settimeout(timeout)
    return s


def peer_of(sock):
    """The 'peer' string steeldoor should log for a client socket."""
    h, p = sock.getsockname()[:2]
    if ":" in h:
        return "[%s]:%d" % (h, p)
    return "%s:%d" % (h, p)


def recv_exact(sock, n, timeout=5.0):
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("recv_exact: got %d of %d bytes" % (len(buf), n))
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("recv_exact: EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def echo_roundtrip(sock, payload=b"ping-steeldoor\n", timeout=5.0):
    sock.sendall(payload)
    got = recv_exact(sock, len(payload), timeout)
    return got


def probe_refused_tls(ctx, port, host="127.0.0.1", timeout=5.0, payload=b"HELLO\n",
                      server_hostname="localhost"):
    """Try a TLS connection that the server must refuse.

    Returns a dict: {'stage': 'handshake'|'read', 'error': repr, 'data': bytes,
    'local_port': int}.  data is every application byte ever received (must
    be empty).  With TLS 1.3 the client can finish its side of the handshake
    before the server's alert arrives, so we also write and read."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.socket(fam, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    raw.connect((host, port))
    local_port = raw.getsockname()[1]
    out = {"stage": None, "error": None, "data": b"", "local_port": local_port,
           "version": None}
    try:
        try:
            s = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except (ssl.SSLError, OSError) as e:
            out["stage"] = "handshake"
            out["error"] = repr(e)
            return out
        out["version"] = s.version()
        s.settimeout(timeout)
        data = b""
        deadline = time.monotonic() + timeout
        try:
            s.sendall(payload)
            while time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    out["error"] = "EOF"
                    break
                data += chunk
            else:
                out["error"] = "TIMEOUT (connection stayed open)"
        except (ssl.SSLError, OSError) as e:
            out["error"] = repr(e)
        out["stage"] = "read"
        out["data"] = data
        s.close()
        return out
    finally:
        raw.close()


# --------------------------------------------------------------------------
# Raw TLS client on SSLObject + MemoryBIO, for half-close / FIN control
# --------------------------------------------------------------------------

class RawTLS:
    """TLS client over a plain socket with explicit control of TCP FIN and
    close_notify."""

    def __init__(self, ctx, port, host="127.0.0.1", server_hostname="localhost",
                 timeout=5.0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.inc = ssl.MemoryBIO()
        self.outg = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.outg, server_side=False,
                                server_hostname=server_hostname)
        self.tcp_eof = False
        self.local_port = self.sock.getsockname()[1]

    @property
    def peer(self):
        return "127.0.0.1:%d" % self.local_port

    def _flush(self):
        data = self.outg.read()
        if data:
            self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("RawTLS: timed out waiting for data")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.tcp_eof = True
            self.inc.write_eof()
        else:
            self.inc.write(data)

    def handshake(self):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill(deadline)

    def send(self, data):
        view = memoryview(data)
        while view:
            n = self.obj.write(view)
            view = view[n:]
            self._flush()

    def recv(self, n=65536, timeout=None):
        """Returns bytes; b'' on close_notify ('close_notify') or TCP EOF.
        Sets self.last_eof to 'close_notify' or 'tcp_eof'."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            try:
                data = self.obj.read(n)
                self._flush()
                if not data:
                    # SSLObject.read returns b'' once a close_notify was received
                    self.last_eof = "close_notify"
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if self.tcp_eof:
                    self.last_eof = "tcp_eof"
                    return b""
                self._fill(deadline)
            except ssl.SSLZeroReturnError:
                self.last_eof = "close_notify"
                return b""
            except ssl.SSLEOFError:
                self.last_eof = "tcp_eof"
                return b""

    def recv_until_eof(self, timeout=None, limit=1 << 24):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        buf = bytearray()
        while len(buf) < limit:
            d = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if not d:
                return bytes(buf)
            buf += d
        return bytes(buf)

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        buf = bytearray()
        while len(buf) < n:
            d = self.recv(n - len(buf), timeout=max(0.01, deadline - time.monotonic()))
            if not d:
                raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
            buf += d
        return bytes(buf)

    def send_close_notify(self):
        """Send our close_notify but keep the TCP connection open for reading."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        self._flush()

    def send_fin(self):
        """TCP half-close (FIN) without a TLS close_notify."""
        self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# --------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------

class Backend:
    """Threaded TCP or unix-socket backend. Each accepted connection is handed
    to `handler(conn, backend)` in its own thread. Records every accept."""

    def __init__(self, handler=None, host="127.0.0.1", unix_path=None, backlog=1024, port=0):
        self.handler = handler or echo_handler
        self.accepted = []          # list of (monotonic time, peer)
        self.results = []           # handlers may append things here
        self.errors = []
        self.lock = threading.Lock()
        self.active = 0
        self.peak_active = 0
        self._stop = False
        self.conns = []
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            self.sock.bind(unix_path)
            self.unix_path = unix_path
            self.port = None
            self.target = "unix:%s" % unix_path
        else:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.port = self.sock.getsockname()[1]
            self.unix_path = None
            self.target = "%s:%d" % (host, self.port) if ":" not in host else "[%s]:%d" % (host, self.port)
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted.append((time.monotonic(), addr))
                self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()

    def _run(self, conn):
        with self.lock:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        try:
            conn.settimeout(30)
            self.handler(conn, self)
        except Exception as e:  # recorded, tests may assert on it
            with self.lock:
                self.errors.append(repr(e))
        finally:
            with self.lock:
                self.active -= 1
            try:
                conn.close()
            except OSError:
                pass

    @property
    def count(self):
        with self.lock:
            return len(self.accepted)

    def wait_count(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count >= n:
                return True
            time.sleep(0.02)
        return self.count >= n

    def wait_results(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.results) >= n:
                    return list(self.results)
            time.sleep(0.02)
        with self.lock:
            return list(self.results)

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
        self.thread.join(2)
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)


def echo_handler(conn, backend):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


class SelectEchoBackend:
    """Single-thread, selector-based echo backend for many connections."""

    def __init__(self, host="127.0.0.1"):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.target = "%s:%d" % (host, self.port)
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.accepted = 0
        self.active = 0
        self.peak_active = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        import selectors
        pending = {}
        while not self._stop:
            for key, ev in self.sel.select(0.2):
                if key.data is None:
                    while True:
                        try:
                            c, _ = self.sock.accept()
                        except (BlockingIOError, OSError):
                            break
                        c.setblocking(False)
                        self.accepted += 1
                        self.active += 1
                        self.peak_active = max(self.peak_active, self.active)
                        pending[c] = b""
                        self.sel.register(c, selectors.EVENT_READ, "c")
                    continue
                c = key.fileobj
                try:
                    if ev & selectors.EVENT_READ:
                        d = c.recv(65536)
                        if not d:
                            raise ConnectionResetError()
                        pending[c] += d
                    if pending[c]:
                        n = c.send(pending[c])
                        pending[c] = pending[c][n:]
                    self.sel.modify(c, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending[c] else 0), "c")
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self.sel.unregister(c)
                    pending.pop(c, None)
                    c.close()
                    self.active -= 1

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class HttpEchoBackend:
    """python http.server in a thread; echoes method, path and body."""

    def __init__(self):
        import http.server

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                out = b"ECHO " + self.command.encode() + b" " + self.path.encode() + b"\n" + body
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = _reply
            do_POST = _reply

            def log_message(self, *a):
                pass

        self.requests = 0
        outer = self

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request, client_address):
                outer.requests += 1
                return True

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.target = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------

def children_of(pid):
    """PIDs whose parent is pid (from /proc/*/stat)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: split after the last ')'
        rest = st[st.rfind(")") + 2:].split()
        state, ppid = rest[0], int(rest[1])
        if ppid == pid and state != "Z":
            out.append(int(d))
    return sorted(out)


def vm_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rfind(")") + 2] != "Z"
    except OSError:
        return False


class Steeldoor:
    """One steeldoor process started with given args, stderr to a file."""

    def __init__(self, binary, args, workdir, name="sd"):
        self.binary = str(binary)
        self.args = [str(a) for a in args]
        self.workdir = Path(workdir)
        self.stderr_path = self.workdir / ("%s.stderr.log" % name)
        self.stdout_path = self.workdir / ("%s.stdout.log" % name)
        self.proc = None
        self.probe_peers = set()
        self.known_workers = set()
        self.stopped = False
        self.returncode = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, wait_ports=(), host="127.0.0.1", timeout=10.0):
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen([self.binary] + self.args, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     cwd=str(self.workdir))
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        for port in wait_ports:
            h, p = (port if isinstance(port, tuple) else (host, port))
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        "steeldoor exited during startup with rc=%s\nargs: %s\nstderr:\n%s"
                        % (self.proc.returncode, " ".join(self.args), self.stderr_text()[-4000:]))
                lp = tcp_accepts(h, p, timeout=0.3)
                if lp:
                    self.probe_peers.add("%s:%d" % (h, lp) if ":" not in h else "[%s]:%d" % (h, lp))
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("steeldoor did not accept TCP on %s:%s within %.0fs\nstderr:\n%s"
                                         % (h, p, timeout, self.stderr_text()[-4000:]))
                time.sleep(0.05)
        if wait_ports:
            self.settle_probes(timeout=2.0)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0, expect_rc=0):
        """SIGTERM the master, wait, assert exit code."""
        if self.proc.poll() is None:
            self.worker_pids()
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        self.stopped = True
        if rc is None:
            self.kill()
            raise AssertionError("steeldoor did not exit within %.0fs of SIGTERM\nstderr tail:\n%s"
                                 % (timeout, self.stderr_text()[-3000:]))
        self.returncode = rc
        if expect_rc is not None:
            assert rc == expect_rc, "steeldoor exit code %r after SIGTERM, expected %r\nstderr tail:\n%s" % (
                rc, expect_rc, self.stderr_text()[-3000:])
        return rc

    def kill(self):
        """Last-resort cleanup: SIGKILL the master and the workers we saw."""
        pids = set(self.known_workers)
        if self.proc and self.proc.poll() is None:
            pids |= set(children_of(self.pid))
            try:
                self.proc.kill()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for p in pids:
            if pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    def close_files(self):
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f:
                f.close()

    # -- introspection -------------------------------------------------------
    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def raw_lines(self):
        return [l for l in self.stderr_text().splitlines() if l.strip()]

    def logs(self):
        out = []
        for line in self.raw_lines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def settle_probes(self, timeout=5.0):
        """Waits (bounded) until the readiness probes of start() have their
        conn lines: a test that attributes later lines by client address must
        not meet a probe's late line, since the kernel may give one of its own
        clients the port a probe used."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [(i, e) for i, e in enumerate(self.logs()) if e.get("event") == "conn"
                     and e.get("peer") in self.probe_peers]
            if self.probe_peers <= {e.get("peer") for _, e in lines}:
                # wait_conn must never take a probe's line for a client's
                self.__dict__.setdefault("_conn_lines_returned", set()).update(
                    i for i, _ in lines)
                return
            time.sleep(0.02)
        if os.environ.get("SD_DEBUG_PROBES"):
            with open(os.environ["SD_DEBUG_PROBES"], "a") as f:
                f.write("settle_probes: timed out %s\n" % self.args)

    def conn_logs(self, include_probes=False):
        """The conn lines; without include_probes, each readiness probe's
        line is left out: the first line of its peer address (start() waits
        for the probes' lines, so they come before any test traffic). Only
        the first: the kernel may give a later client the same port, and
        its line is the test's."""
        out, seen = [], set()
        for e in self.logs():
            if e.get("event") != "conn":
                continue
            peer = e.get("peer")
            if not include_probes and peer in self.probe_peers and peer not in seen:
                seen.add(peer)
                continue
            out.append(e)
        return out

    def wait_log(self, pred, timeout=5.0, what="log line"):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.logs():
                try:
                    if pred(e):
                        return e
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError("no %s matching within %.1fs; log tail:\n%s"
                                     % (what, timeout, "\n".join(self.raw_lines()[-25:])))
            time.sleep(0.05)

    def wait_client_conn(self, pred=None, timeout=5.0):
        """The first conn line of a client (not a readiness probe's: see
        conn_logs) for which pred holds."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.conn_logs():
                if pred is None or pred(e):
                    return e
            if time.monotonic() > deadline:
                raise AssertionError("no client conn line within %.1fs; log tail:\n%s"
                                     % (timeout, "\n".join(self.raw_lines()[-25:])))
            time.sleep(0.05)

    def wait_conn(self, peer, timeout=5.0):
        """The 'conn' log line for a client with local address peer: the
        first one not returned by an earlier call. The kernel may give a new
        client the local port of an earlier one, whose line would otherwise
        be taken for the new client's."""
        returned = self.__dict__.setdefault("_conn_lines_returned", set())
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.logs()):
                if i not in returned and e.get("event") == "conn" and e.get("peer") == peer:
                    returned.add(i)
                    return e
            if time.monotonic() > deadline:
                raise AssertionError("no conn line for peer %s within %.1fs; log tail:\n%s"
                                     % (peer, timeout, "\n".join(self.raw_lines()[-25:])))
            time.sleep(0.05)

    def worker_pids(self):
        pids = children_of(self.pid)
        self.known_workers |= set(pids)
        return pids

    def wait_workers(self, n, timeout=10.0, exclude=()):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in self.worker_pids()]
            if len(pids) == n and not (set(pids) & set(exclude)):
                return pids
            time.sleep(0.05)
        return self.worker_pids()

    def rss_kib(self):
        """Sum of VmRSS over the master and its workers."""
        return vm_rss_kib(self.pid) + sum(vm_rss_kib(p) for p in self.worker_pids())

    def sanitizer_findings(self):
        text = self.stderr_text()
        return [p for p in SAN_PATTERNS if p in text]


def run(cmd, timeout=30, input=None, cwd=None):
    return subprocess.run([str(c) for c in cmd], input=input, capture_output=True,
                          timeout=timeout, cwd=cwd)


# --------------------------------------------------------------------------
# Data generation for big transfers
# --------------------------------------------------------------------------

class BlockStream:
    """Cheap pseudo-random stream: a fixed 1 MiB random block whose first 8
    bytes are replaced by a block counter (so blocks differ)."""

    def __init__(self, seed_block, total):
        self.base = seed_block
        self.total = total

    def blocks(self):
        n = 0
        sent = 0
        bs = len(self.base)
        while sent < self.total:
            b = struct.pack(">Q", n) + self.base[8:]
            b = b[: min(bs, self.total - sent)]
            yield b
            sent += len(b)
            n += 1
