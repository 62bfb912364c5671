"""Helpers for the admin listener tests (tests/integration/test_admin*.py):
a raw HTTP/1.1 client for the admin port (TCP, TLS or a unix socket), the
Prometheus text parsed with prometheus_client and checked with promtool,
bounded polling of /metrics and /readyz, runs of steeldoor that must refuse
to start, and a bounded client load that counts what it did.

No pytest here. Every blocking operation has a deadline. Loopback only.
"""
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

import sdlib

PROMTOOL = "/usr/bin/promtool"

# family name (as prometheus_client names it: counters without _total) -> type
EXPECTED_FAMILIES = {
    "steeldoor_build_info": "gauge",
    "steeldoor_start_time_seconds": "gauge",
    "steeldoor_generation": "gauge",
    "steeldoor_config_stale": "gauge",
    "steeldoor_reloads": "counter",
    "steeldoor_workers": "gauge",
    "steeldoor_workers_configured": "gauge",
    "steeldoor_worker_restarts": "counter",
    "steeldoor_listener_info": "gauge",
    "steeldoor_connections_accepted": "counter",
    "steeldoor_connections_open": "gauge",
    "steeldoor_connections": "counter",
    "steeldoor_handshakes": "counter",
    "steeldoor_handshake_duration_seconds": "histogram",
    "steeldoor_bytes_received": "counter",
    "steeldoor_bytes_sent": "counter",
    "steeldoor_backend_connect_failures": "counter",
    "steeldoor_certificate_not_after_timestamp_seconds": "gauge",
}


# --------------------------------------------------------------------------
# HTTP over the admin socket
# --------------------------------------------------------------------------

class Reply:
    def __init__(self):
        self.status = None
        self.reason = ""
        self.headers = []
        self.body = b""
        self.raw = b""

    def get(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8")

    def __repr__(self):
        return "<Reply %s %s %r body=%r>" % (self.status, self.reason, self.headers,
                                             self.body[:400])


def connect(addr, ctx=None, timeout=5.0, server_hostname="localhost"):
    """A socket to the admin listener. addr: port (127.0.0.1), (host, port),
    or "unix:/path". With ctx: TLS (the handshake done here)."""
    if isinstance(addr, int):
        addr = ("127.0.0.1", addr)
    if isinstance(addr, str) and addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = addr[5:]
    else:
        s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET,
                          socket.SOCK_STREAM)
        target = addr
    s.settimeout(timeout)
    try:
        s.connect(target)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname=server_hostname)
            s.settimeout(timeout)
    except BaseException:
        s.close()
        raise
    return s


def read_to_eof(s, timeout=5.0, limit=16 << 20):
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("admin: no end of the response within %.1fs (got %d bytes: %r)"
                               % (timeout, len(buf), bytes(buf[:300])))
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not d:
            break
        buf += d
    return bytes(buf)


def parse_reply(raw, method="GET"):
    r = Reply()
    r.raw = raw
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("admin: response without a complete head: %r" % raw[:500])
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert parts[0] == "HTTP/1.1" and len(parts) >= 2 and parts[1].isdigit(), \
        "admin: bad status line %r" % lines[0]
    r.status = int(parts[1])
    r.reason = parts[2] if len(parts) > 2 else ""
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        assert _ and k == k.strip(), "admin: bad header line %r" % ln
        r.headers.append((k, v.strip()))
    cl = r.all("content-length")
    assert len(cl) == 1 and cl[0].isdigit(), "admin: Content-Length %r in %r" % (cl, head)
    if method == "HEAD":
        assert body == b"", "admin: a HEAD answer carries %d body bytes" % len(body)
    else:
        assert len(body) == int(cl[0]), "admin: Content-Length %s but %d body bytes" % (
            cl[0], len(body))
    r.body = body
    return r


def request(addr, path="/metrics", method="GET", headers=(), body=b"", raw=None, ctx=None,
            timeout=5.0):
    """One request (Connection: close), the whole answer read to EOF."""
    if raw is None:
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: localhost"]
        lines += ["%s: %s" % h for h in headers]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    s = connect(addr, ctx, timeout)
    try:
        s.sendall(raw)
        data = read_to_eof(s, timeout)
    finally:
        s.close()
    return parse_reply(data, method)


def get(addr, path, ctx=None, timeout=5.0):
    return request(addr, path, ctx=ctx, timeout=timeout)


# --------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------

class Metrics:
    """A scrape, parsed by prometheus_client."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def find(self, name, **labels):
        return [s for s in self.samples if s.name == name
                and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name, **labels):
        """The one sample called name with these labels (others free);
        None when there is none; an error when several match."""
        m = self.find(name, **labels)
        assert len(m) <= 1, "several samples %s%s: %s" % (name, labels, m)
        return m[0].value if m else None

    def v(self, name, default=0, **labels):
        """As value(), but a missing sample counts as default (a family
        shows a zero counter by leaving it out, e.g. a refusal reason)."""
        x = self.value(name, **labels)
        return default if x is None else x

    def total(self, name, **labels):
        return sum(s.value for s in self.find(name, **labels))


def scrape(addr, ctx=None, timeout=5.0):
    r = get(addr, "/metrics", ctx=ctx, timeout=timeout)
    assert r.status == 200, "GET /metrics: %r" % r
    return Metrics(r.text)


def wait_metrics(addr, pred, timeout=10.0, what="metrics condition", ctx=None, interval=0.1):
    """Scrapes until pred(Metrics) is true; returns that scrape."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = scrape(addr, ctx=ctx)
        try:
            if pred(last):
                return last
        except (TypeError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %.1fs; last scrape:\n%s"
                                 % (what, timeout, last.text[-6000:]))
        time.sleep(interval)


def promtool_check(text):
    """`promtool check metrics` on text: (returncode, output)."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


# --------------------------------------------------------------------------
# /readyz
# --------------------------------------------------------------------------

def readyz(addr, ctx=None):
    r = get(addr, "/readyz", ctx=ctx)
    assert r.status in (200, 503), "GET /readyz: %r" % r
    assert r.get("content-type", "").startswith("application/json"), r
    j = r.json()
    assert j["ready"] is (r.status == 200), "ready %r with status %d" % (j["ready"], r.status)
    return r.status, j


def check(j, name):
    c = [c for c in j["checks"] if c["name"] == name]
    assert len(c) == 1, "readyz has no (or several) %r checks: %s" % (name, j)
    return c[0]


def wait_readyz(addr, pred, timeout=15.0, what="readyz condition", ctx=None, interval=0.2):
    """Polls /readyz until pred(status, json); returns (status, json)."""
    deadline = time.monotonic() + timeout
    while True:
        st, j = readyz(addr, ctx)
        if pred(st, j):
            return st, j
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %.1fs; last /readyz: %d %s"
                                 % (what, timeout, st, json.dumps(j)))
        time.sleep(interval)


# --------------------------------------------------------------------------
# steeldoor that must not start
# --------------------------------------------------------------------------

def start_fails(sd_bin, args, cwd=None, timeout=8.0):
    """Runs steeldoor ARGS, which must refuse to start. Returns (rc, output);
    rc None when it was still running after timeout (it is stopped then)."""
    p = subprocess.Popen([str(sd_bin)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=str(cwd) if cwd else None)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, err.decode(errors="replace") + out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
        for c in sdlib.children_of(p.pid):
            try:
                os.kill(c, 9)
            except OSError:
                pass
        return None, err.decode(errors="replace") + out.decode(errors="replace")


# --------------------------------------------------------------------------
# certificates
# --------------------------------------------------------------------------

def pem_certs(path):
    """Every certificate of a PEM file, in order."""
    import re
    from cryptography import x509
    data = open(path, "rb").read()
    return [x509.load_pem_x509_certificate(b) for b in re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)]


def der_sha256(cert):
    from cryptography.hazmat.primitives import serialization
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def epoch(dt):
    return int(dt.timestamp())


def not_after(cert):
    try:
        return epoch(cert.not_valid_after_utc)
    except AttributeError:  # cryptography < 42
        import datetime
        return epoch(cert.not_valid_after.replace(tzinfo=datetime.timezone.utc))


def rfc3339(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# --------------------------------------------------------------------------
# a bounded client load through a TCP listener with an echo backend
# --------------------------------------------------------------------------

class Load:
    """Counts everything the clients did. Every field is exact: each
    connection is one TCP connect (counted when it succeeded), then either a
    refused handshake or an admitted one with one echo of a known size."""

    def __init__(self):
        self.lock = threading.Lock()
        self.connected = 0      # TCP connects that succeeded
        self.ok = 0             # admitted, echo matched, closed by us
        self.resumed = 0        # of those, session_reused as the client saw it
        self.refused = {}       # kind -> refusals seen (no app data, cut off)
        self.failed = []        # anything else (error text)
        self.sent = 0           # application bytes we sent on admitted connections
        self.received = 0       # application bytes we received

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def ok_conn(load, ctx, port, payload, session=None, timeout=5.0, times=None):
    """One admitted connection: handshake, one echo of payload, close.
    Returns the session to resume from (or None). Raises nothing. times: a
    list to which the moment of success is appended."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.connect(("127.0.0.1", port))
    except OSError as e:
        raw.close()
        with load.lock:
            load.failed.append("connect: %r" % e)
        return None
    load.add(connected=1)
    s = None
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        s.settimeout(timeout)
        s.sendall(payload)
        got = sdlib.recv_exact(s, len(payload), timeout)
        if got != payload:
            raise AssertionError("echo mismatch")
        sess = s.session
        load.add(ok=1, resumed=1 if s.session_reused else 0, sent=len(payload),
                 received=len(got))
        if times is not None:
            times.append(time.monotonic())
        return sess
    except Exception as e:  # counted, the caller asserts on load.failed
        with load.lock:
            load.failed.append("%s: %r" % ("handshake" if s is None else "echo", e))
        return None
    finally:
        (s or raw).close()


def refused_conn(load, ctx, port, kind, timeout=5.0):
    """One connection steeldoor must refuse: no application byte may come
    back, and the connection must be cut. Counted under load.refused[kind]."""
    try:
        r = sdlib.probe_refused_tls(ctx, port, timeout=timeout)
    except OSError as e:
        with load.lock:
            load.failed.append("connect (%s): %r" % (kind, e))
        return
    load.add(connected=1)
    with load.lock:
        if r["data"] != b"" or r["error"] is None or str(r["error"]).startswith("TIMEOUT"):
            load.failed.append("%s not refused: %r" % (kind, r))
        else:
            load.refused[kind] = load.refused.get(kind, 0) + 1


def plaintext_conn(load, port, kind="plaintext_http", timeout=5.0):
    """An HTTP request in plaintext to a TLS listener: it must be cut off
    without reaching the backend (no echo). Counted under load.refused[kind]."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        with load.lock:
            load.failed.append("connect (%s): %r" % (kind, e))
        return
    load.add(connected=1)
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    try:
        s.sendall(req)
        data = read_to_eof(s, timeout)
        err = None
    except (OSError, TimeoutError) as e:
        data, err = b"", e
    finally:
        s.close()
    with load.lock:
        if req in data or isinstance(err, TimeoutError):
            load.failed.append("%s not refused: %r %r" % (kind, data[:200], err))
        else:
            load.refused[kind] = load.refused.get(kind, 0) + 1


def run_threads(fns, timeout=60.0):
    """Runs each callable in its own thread; all must end within timeout."""
    ts = [threading.Thread(target=f, daemon=True) for f in fns]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in ts if t.is_alive()]
    assert not alive, "%d load threads still running after %.0fs" % (len(alive), timeout)


# --------------------------------------------------------------------------
# steeldoor for a whole module, sockets, addresses
# --------------------------------------------------------------------------

def start_sd(sd_bin, args, workdir, name, wait_ports=()):
    """A steeldoor for a whole module; stop it with stop_sd (which fails on
    a bad exit or a sanitizer report)."""
    sd = sdlib.Steeldoor(sd_bin, args, workdir, name=name)
    try:
        sd.start(wait_ports=[("127.0.0.1", p) for p in wait_ports])
    except BaseException:
        sd.kill()
        sd.close_files()
        raise
    return sd


def stop_sd(sd):
    problems = []
    try:
        if sd.proc.poll() is None:
            sd.stop(timeout=10, expect_rc=None)
            if sd.returncode != 0:
                problems.append("steeldoor exited %r on SIGTERM" % sd.returncode)
        else:
            problems.append("steeldoor died during the module (rc=%r)\n%s" % (
                sd.proc.returncode, sd.stderr_text()[-3000:]))
    except AssertionError as e:
        problems.append(str(e))
    finally:
        sd.kill()
        sd.close_files()
    f = sd.sanitizer_findings()
    if f:
        problems.append("sanitizer report in %s: %s\n%s" % (sd.stderr_path, f,
                                                            sd.stderr_text()[-6000:]))
    if problems:
        raise AssertionError("\n".join(problems))


def listening(port):
    """Local addresses with a TCP socket in LISTEN on port (/proc/net/tcp*)."""
    out = []
    for fn, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    addr, hport = p[1].rsplit(":", 1)
                    if p[3] == "0A" and int(hport, 16) == port:
                        out.append(("v6:" if v6 else "v4:") + addr)
        except OSError:
            pass
    return out


def host_addresses():
    """This host's non-loopback unicast addresses (IPv4 and global IPv6)."""
    out = []
    try:
        p = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, timeout=5)
        for line in p.stdout.decode().splitlines():
            f = line.split()
            if len(f) < 4 or f[2] not in ("inet", "inet6"):
                continue
            a = f[3].split("/")[0]
            if a.startswith("127.") or a == "::1" or a.startswith("fe80"):
                continue
            out.append(a)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def bracket(host, port):
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.1fs" % (what, timeout))
        time.sleep(interval)


def served_chain(port, ca, cert, key, timeout=10):
    """The certificates a TLS listener sends (leaf first), as
    `openssl s_client -showcerts` sees them, with a client certificate."""
    from cryptography import x509
    import re
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", "-CAfile", str(ca), "-cert", str(cert),
                        "-key", str(key), "-showcerts"], input=b"", capture_output=True,
                       timeout=timeout)
    blobs = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                       p.stdout, re.S)
    assert blobs, "s_client saw no certificate:\n%s" % (p.stdout + p.stderr).decode(
        errors="replace")[-2000:]
    return [x509.load_pem_x509_certificate(b) for b in blobs]


def wait_reloaded(sd, gen, workers, timeout=5.0):
    """The master's 'reloaded' line for generation gen, then a
    'worker_reloaded' line for gen from each worker (earlier failed reloads
    are allowed, unlike conftest.wait_generation)."""
    e = sd.wait_log(lambda e: e.get("event") == "reloaded" and e.get("generation") == gen
                    and e.get("pid") == sd.pid, timeout, what="reloaded generation %d" % gen)
    wait_until(lambda: len({x.get("worker") for x in sd.logs()
                            if x.get("event") == "worker_reloaded"
                            and x.get("generation") == gen}) >= workers, timeout,
               "worker_reloaded generation %d from %d workers" % (gen, workers))
    return e
