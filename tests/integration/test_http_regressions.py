"""HTTP mode, regressions from the security review of the engine
(src/mode/http.c, src/conn.c): one test per bug the reviewer reproduced,
each asserting what the client, the backend and the log see, and each
failing against the code before the fix (the docstrings say how it failed).

Several bugs need steeldoor to hold bytes in its own buffers while the
kernel cannot take more: a backend that stops reading, a client that stops
reading. Linux sizes a socket's send buffer from the peer's MSS and lets
it grow to 4 MB, which would make "full" depend on the machine; so the
sockets on the far side get a small receive buffer and a 536-byte MSS
(`tighten`), and the kernel between steeldoor and them then holds ~150 KB.
Where the exact amount matters, the test measures it (/proc/net/tcp
queues) and asserts the precondition it needs, rather than trusting sizes:
a test whose setup did not corner the engine fails instead of passing
vacuously."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import sdlib
from http_apps import sdhttp
from http_apps.fixtures import http_sd, recorder, h1, _gunicorn_cmd  # noqa: F401
from http_apps.sdhttp import assert_refusal, build_request, wait_http, wait_reason

BILLING = "spiffe://example.org/billing"     # the session PKI's good client (pki.client_cert)
PYGOOD = "spiffe://example.org/pygood"       # the second client (pki.pygood)
SD_BUF_LARGE = 262144                        # include/sd/buf.h: a large buffer's capacity
TLS13_RECORD_OVERHEAD = 22                   # header 5, content type 1, AEAD tag 16


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def scripted(fn):
    """Responder giving every request to fn(req, n), n its global index."""
    lock = threading.Lock()
    n = [0]

    def responder(req, backend):
        with lock:
            i = n[0]
            n[0] += 1
        return fn(req, i)
    return responder


def ok(body=b"ok", extra=b""):
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n" % (extra, len(body)) + body


def tcp_queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the 127.0.0.1:local_port -> 127.0.0.1:remote_port
    TCP socket, from /proc/net/tcp (tx: written, not yet acknowledged by the
    peer; rx: arrived, not yet read), or None when there is no such socket."""
    want_l, want_r = "0100007F:%04X" % local_port, "0100007F:%04X" % remote_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1] == want_l and p[2] == want_r and p[3] == "01":
                tx, rx = p[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def established_from(remote_port):
    """Local port of the one established socket connected to remote_port."""
    want = "0100007F:%04X" % remote_port
    found = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[2] == want and p[3] == "01":
                found.append(int(p[1].split(":")[1], 16))
    assert len(found) == 1, "expected one connection to port %d, found %s" % (remote_port, found)
    return found[0]


def settled(fn, stable_for=0.25, timeout=6.0, step=0.02):
    """Polls fn() until its value has not changed for stable_for seconds."""
    deadline = time.monotonic() + timeout
    last = fn()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(step)
        v = fn()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= stable_for:
            return v
    raise AssertionError("never settled within %.1fs; last value %r" % (timeout, last))


def tighten(sock, rcvbuf=4096, mss=536):
    """Small receive buffer and MSS (on a listening socket: for every
    connection it accepts; on a client socket: set before connect). The
    peer's send buffer follows the MSS: ~130 KB instead of up to 4 MB."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)


class TightH1(sdhttp.H1):
    """sdhttp.H1 on a tightened socket: a client whose reading steeldoor
    can outrun by a known, small amount."""

    def __init__(self, ctx, port, timeout=10.0):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tighten(raw)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        except Exception:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.rd = sdhttp.Reader(self.sock, timeout)
        h, p = self.sock.getsockname()[:2]
        self.peer = "%s:%d" % (h, p)
        self.local_port = p


class Peer:
    """A raw backend's side of one connection: buffered, EOF-aware reads."""

    def __init__(self, conn, timeout=20.0):
        self.conn = conn
        self.buf = bytearray()
        conn.settimeout(timeout)

    def _recv(self):
        try:
            d = self.conn.recv(65536)
        except OSError:
            return False
        if not d:
            return False
        self.buf += d
        return True

    def head(self):
        """The next request head (through CRLFCRLF), or None at the end."""
        while b"\r\n\r\n" not in self.buf:
            if not self._recv():
                return None
        k = self.buf.index(b"\r\n\r\n") + 4
        out = bytes(self.buf[:k])
        del self.buf[:k]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            if not self._recv():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def wait_eof(self):
        while self._recv():
            self.buf.clear()


class Head:
    """A request head as a raw backend parses it."""

    def __init__(self, raw):
        lines = raw[:-4].decode("latin-1").split("\r\n")
        self.method, self.target, self.version = lines[0].split(" ")
        self.headers = [(k.strip().lower(), v.strip()) for k, _, v in
                        (ln.partition(":") for ln in lines[1:])]

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def get(self, name, default=None):
        v = self.all(name)
        return v[0] if v else default


def counter():
    lock = threading.Lock()
    n = [0]

    def take():
        with lock:
            n[0] += 1
            return n[0] - 1
    return take


def drain_quiet(rd, quiet=0.5):
    """Reads into the Reader until nothing comes for `quiet` seconds;
    returns how many bytes that was."""
    n0 = len(rd.all)
    for _ in range(1 << 20):
        try:
            if not rd._fill(time.monotonic() + quiet):
                break
        except TimeoutError:
            break
    return len(rd.all) - n0


def no_worker_died(sd):
    died = [e for e in sd.logs() if e.get("event") == "worker_exited"]
    assert not died, "a worker died: %s\n%s" % (died, sd.stderr_text()[-4000:])


# --------------------------------------------------------------------------
# t1: a response head rewritten into a buffer sized for the original
# --------------------------------------------------------------------------

def test_response_head_rewrite_fits_its_buffer(http_sd, recorder, h1):
    """Bug: the client's copy of a response head was written into a buffer
    sized len + 64 for a backend head of len bytes, but the copy grows by
    one byte per field written without a space after the colon, one for
    an empty reason phrase, and by steeldoor's Connection field. A
    16320-byte head with 100 'Name:value' fields took a 16 KiB buffer and
    was written 37 bytes past its end: a heap overflow that ASan reports
    (and that glibc's heap checks turned into an abort of the worker in
    the plain build), the client getting nothing. The client must get
    exactly the rewritten head and the body, and the connection go on."""
    fields = [b"Content-Length:5"] + [b"X%d:v" % k for k in range(98)]
    base = b"HTTP/1.1 200\r\n" + b"".join(f + b"\r\n" for f in fields) + b"Y:\r\n\r\n"
    fields.append(b"Y:" + b"a" * (16320 - len(base)))
    head = b"HTTP/1.1 200\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    assert len(head) == 16320 and len(fields) == 100
    expected = b"HTTP/1.1 200 \r\n" + b"".join(
        f.replace(b":", b": ", 1) + b"\r\n" for f in fields) + b"\r\n"

    rec = recorder(scripted(lambda req, i: head + b"hello" if i == 0 else ok(b"second")))
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        c.send(build_request("GET", "/big-head"))
        r = c.response()
        assert r.raw_head == expected, "response head not passed on exactly: %d bytes, " \
            "expected %d; differs at %r" % (len(r.raw_head), len(expected), next(
                (i for i, (a, b) in enumerate(zip(r.raw_head, expected)) if a != b), None))
        assert r.status == 200 and r.body == b"hello", r
        r2 = c.request("GET", "/after")
        assert r2.status == 200 and r2.body == b"second", r2
    q = rec.wait_requests(2)
    assert [x.target for x in q] == ["/big-head", "/after"]
    rid = q[0].get("X-Steeldoor-Request-Id")
    e = wait_http(sd, lambda e: e.get("request_id") == rid)
    assert e["status"] == 200 and e["path"] == "/big-head", e
    assert e["bytes_out"] == len(expected) + 5, e
    no_worker_died(sd)


# --------------------------------------------------------------------------
# t2 / t3: a backend that answers before reading the whole body
# --------------------------------------------------------------------------

SLOW_L = 270000          # body of the request answered early (6 digits, as NEXT_M)
NEXT_M = 300000
SMUG = b"GET /admin HTTP/1.1\r\nHost: localhost\r\nClient-Cert: :Zm9yZ2VkLWlkZW50aXR5:\r\n" \
       b"Content-Length: %06d\r\n\r\n"


def test_early_answer_backend_not_pooled_with_unsent_body(http_sd, backends, pki):
    """Bug (cross-client request smuggling): a backend that answers before
    reading the body (a 403 from an authorization check) while part of
    that body was still in steeldoor's buffer, unsent, got its connection
    put back in the worker's pool. The unsent bytes were dropped with the
    client's connection, so the backend, which reads and discards the
    body before the next request as HTTP/1.1 servers do, took the next
    client's first bytes for the rest of that body and parsed what
    followed as a request: a client could place a request with a forged
    Client-Cert there, and the backend took it as steeldoor's. Here the
    second request's body carries such a request exactly where the
    backend would have resumed parsing; it must stay body. The connection
    that answered early must be closed, never reused."""
    st = {"slow_head": threading.Event(), "answer": threading.Event(), "drain": threading.Event()}
    seen, ends = [], {}
    lock = threading.Lock()
    take = counter()

    def handler(conn, backend):
        idx = take()
        p = Peer(conn)
        while True:
            raw = p.head()
            if raw is None:
                ends[idx] = "eof"
                return
            q = Head(raw)
            rec = {"conn": idx, "target": q.target, "certs": q.all("client-cert"),
                   "rid": q.get("x-steeldoor-request-id"), "body": None}
            with lock:
                seen.append(rec)
            cl = int(q.get("content-length") or 0)
            if q.target == "/slow":
                st.update(eph=conn.getpeername()[1], head_len=len(raw), pre=len(p.buf))
                st["slow_head"].set()
                st["answer"].wait(10)
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nforbidden\n")
                # Only then does it read (and discard) the body: had it read at
                # once, steeldoor might have sent it all before seeing the 403,
                # and could then rightly have reused the connection.
                st["drain"].wait(10)
            body = p.exact(cl)
            if body is None:
                ends[idx] = "eof in the body of %s" % q.target
                return
            rec["body"] = body
            if q.target != "/slow":
                out = json.dumps({"path": q.target, "client_cert": q.all("client-cert"),
                                  "conn": idx, "body_len": len(body)}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(out) + out)

    b = backends(handler)
    tighten(b.sock)
    sd = http_sd(b.target, extra=["--idle-timeout", "5s"])
    ctx = sdlib.client_ctx(pki.ca, *pki.pygood)
    cert = sdhttp.client_cert_value(pki.pygood[0])

    with sdhttp.H1(ctx, sd.port, timeout=10) as c1:
        c1.send(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % SLOW_L + b"A" * SLOW_L)
        assert st["slow_head"].wait(5), "the backend never got the request head"

        def view():
            to_b, at_b = tcp_queues(st["eph"], b.port), tcp_queues(b.port, st["eph"])
            from_c, at_sd = tcp_queues(c1.local_port, sd.port), tcp_queues(sd.port, c1.local_port)
            return to_b[0], at_b[1], from_c[0], at_sd[1]
        tx_sd, rx_b, tx_c, rx_sd = settled(view, stable_for=0.3)
        assert tx_c == 0 and rx_sd == 0, \
            "precondition: steeldoor has not read the whole request (%d, %d bytes left)" \
            % (tx_c, rx_sd)
        unsent = SLOW_L - st["pre"] - tx_sd - rx_b
        assert 16384 <= unsent <= 200000, \
            "precondition: %d body bytes left in steeldoor when the backend answers" % unsent
        st["answer"].set()
        r1 = c1.response()
        assert r1.status == 403 and r1.body == b"forbidden\n", r1
        assert "close" in r1.tokens("connection"), r1
        assert c1.wait_closed(3)
    st["drain"].set()

    # The attacker's next request: at the offset where a backend still
    # expecting `unsent` bytes of the first body would parse a new request.
    off = unsent - st["head_len"]
    rest = NEXT_M - off - len(SMUG % 0)
    body2 = b"B" * off + SMUG % rest + b"C" * rest
    assert off > 0 and len(body2) == NEXT_M
    with sdhttp.H1(ctx, sd.port, timeout=10) as c2:
        c2.send(b"POST /next HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % NEXT_M + body2)
        r2 = c2.response(timeout=8)
    assert r2.status == 200, r2
    j = r2.json()
    assert j["path"] == "/next", "the answer to POST /next is the answer to a request smuggled " \
        "in its body (%r): a reused backend connection still expected the previous body" % j
    assert j["client_cert"] == [cert] and j["body_len"] == NEXT_M, j
    assert j["conn"] == 1, "POST /next went to the connection that answered early: %r" % j

    deadline = time.monotonic() + 3
    while 0 not in ends and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ends.get(0) == "eof in the body of /slow", \
        "the connection that answered early was not closed (%r)" % ends.get(0)
    with lock:
        got = list(seen)
    assert [(x["conn"], x["target"]) for x in got] == [(0, "/slow"), (1, "/next")], \
        "requests the backend parsed: %r" % [(x["conn"], x["target"], x["certs"]) for x in got]
    assert all(x["certs"] == [cert] for x in got), [x["certs"] for x in got]
    assert got[1]["body"] == body2, "POST /next body altered"
    assert not b.errors, b.errors
    e1 = wait_http(sd, lambda e: e.get("request_id") == got[0]["rid"])
    assert (e1["status"], e1["path"], e1["identity"]) == (403, "/slow", PYGOOD), e1
    e2 = wait_http(sd, lambda e: e.get("request_id") == got[1]["rid"])
    assert (e2["status"], e2["path"], e2["identity"], e2["bytes_in"]) == \
        (200, "/next", PYGOOD, NEXT_M), e2


EARLY_APP = '''"""gunicorn + Flask: /slow refuses before reading its body (an
authorization check), when the test allows it; /whoami says what it saw."""
import json
import os
import time

from flask import Flask, Response, request

app = Flask(__name__)
GO = os.environ["SD_GO_FILE"]
DONE = os.environ["SD_DONE_FILE"]
LOG = os.environ["SD_APP_LOG"]


def log(d):
    with open(LOG, "a") as f:
        f.write(json.dumps(d) + "\\n")


@app.route("/ready")
def ready():
    return "ready\\n"


def wait_for(path):
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


@app.route("/slow", methods=["POST"])
def slow():
    """Refused once GO exists, without reading the body. The response is
    complete at once but the handler returns only once DONE exists: only
    then does gunicorn read and discard the body (so steeldoor sees the
    403 before it could send the rest of the body)."""
    wait_for(GO)
    log({"path": request.path, "client_cert": request.headers.get("Client-Cert")})

    def body():
        yield b"forbidden\\n"
        wait_for(DONE)
    return Response(body(), status=403, headers={"Content-Length": "10"})


@app.route("/whoami", methods=["GET", "POST"])
def whoami():
    body = request.get_data()
    d = {"path": request.path, "client_cert": request.headers.get("Client-Cert"),
         "request_id": request.headers.get("X-Steeldoor-Request-Id"), "body_len": len(body)}
    log(d)
    return Response(json.dumps(d), mimetype="application/json")
'''


@pytest.fixture
def early_app(tmp_path):
    """gunicorn (gthread) serving EARLY_APP on a tightened listening socket
    handed over as fd://N."""
    d = tmp_path / "early"
    d.mkdir()
    (d / "early_app.py").write_text(EARLY_APP)
    go, done, log = d / "go", d / "done", d / "requests.jsonl"
    log.write_text("")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    tighten(lsock)
    lsock.listen(64)
    port = lsock.getsockname()[1]
    out = open(d / "gunicorn.log", "wb")
    env = dict(os.environ, SD_GO_FILE=str(go), SD_DONE_FILE=str(done), SD_APP_LOG=str(log),
               PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.Popen(_gunicorn_cmd() + [
        "-k", "gthread", "--threads", "4", "--keep-alive", "5", "--graceful-timeout", "1",
        "-b", "fd://%d" % lsock.fileno(), "--chdir", str(d), "early_app:app"],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        pass_fds=(lsock.fileno(),), start_new_session=True)
    lsock.close()
    try:
        deadline = time.monotonic() + 15
        while True:
            assert p.poll() is None, \
                "gunicorn exited: %s" % (d / "gunicorn.log").read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", port), 1) as s:
                    s.settimeout(1)
                    s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn not ready: %s" % (
                d / "gunicorn.log").read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(0.2)  # the readiness probes' connections are gone

        def records():
            return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        yield type("EarlyApp", (), {"port": port, "target": "127.0.0.1:%d" % port, "go": go,
                                    "done": done, "records": staticmethod(records)})
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(8)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        out.close()


def test_early_answer_through_gunicorn_next_client_not_swallowed(http_sd, early_app, h1, pki):
    """The same bug through a real WSGI server: gunicorn answers a 403
    without reading the body, keeps the connection, and before the next
    request reads and discards the rest of that body. With the connection
    pooled while steeldoor still held part of the body, the next client's
    request (another identity) became the end of the first client's body:
    it never reached the application and that client got a 504 (its bytes
    could as well have been the start of a request of the attacker's
    making). It must reach the application, once, with its own identity."""
    sd = http_sd(early_app.target, extra=["--idle-timeout", "3s"])
    mallory = sdlib.client_ctx(pki.ca, *pki.pygood)
    with sdhttp.H1(mallory, sd.port, timeout=10) as m:
        m.send(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
               b"Connection: close\r\n\r\n" % SLOW_L + b"A" * SLOW_L)
        deadline = time.monotonic() + 5
        while True:
            try:
                eph = established_from(early_app.port)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "steeldoor never connected to gunicorn"
                time.sleep(0.02)

        def view():
            to_g, at_g = tcp_queues(eph, early_app.port), tcp_queues(early_app.port, eph)
            from_m, at_sd = tcp_queues(m.local_port, sd.port), tcp_queues(sd.port, m.local_port)
            return to_g[0], at_g[1], from_m[0], at_sd[1]
        tx_sd, rx_g, tx_m, rx_sd = settled(view, stable_for=0.3)
        assert tx_m == 0 and rx_sd == 0, "precondition: steeldoor has not read the whole request"
        # gunicorn has read the head and at most one 8 KiB read of the body
        assert SLOW_L - tx_sd - rx_g - 8192 >= 16384, \
            "precondition: too little of the body left in steeldoor (%d, %d)" % (tx_sd, rx_g)
        early_app.go.write_text("go")
        r1 = m.response(timeout=8)
        assert r1.status == 403 and r1.body == b"forbidden\n", r1
        assert "close" in r1.tokens("connection"), r1
        assert m.wait_closed(3)
    early_app.done.write_text("done")

    with h1(sd.port, timeout=8) as a:
        t = time.monotonic()
        r = a.request("GET", "/whoami", timeout=6)
        took = time.monotonic() - t
    assert r.status == 200, "the next client's request was swallowed by the previous " \
        "client's body on a reused gunicorn connection: %r after %.1fs" % (r, took)
    j = r.json()
    assert j["path"] == "/whoami", j
    assert j["client_cert"] == sdhttp.client_cert_value(pki.client_cert), j
    recs = early_app.records()
    assert [x["path"] for x in recs] == ["/slow", "/whoami"], recs
    assert recs[0]["client_cert"] == sdhttp.client_cert_value(pki.pygood[0]), recs[0]
    e = wait_http(sd, lambda e: e.get("request_id") == j["request_id"])
    assert (e["status"], e["path"], e["identity"]) == (200, "/whoami", BILLING), e
    e = wait_http(sd, lambda e: e.get("path") == "/slow")
    assert (e["status"], e["identity"], e["bytes_in"]) == (403, PYGOOD, SLOW_L), e


# --------------------------------------------------------------------------
# t4: an event for a backend released earlier in the same epoll batch
# --------------------------------------------------------------------------

def test_stale_backend_event_after_release(http_sd, backends, h1):
    """Bug: a backend event harvested in the same epoll batch as a client
    event whose run finished the exchange and released that backend (not
    reusable: Connection: close; the client connection kept) was still
    dispatched: sd_conn_event -> sd_stream_readable(NULL), a NULL
    dereference that killed the worker (SIGSEGV; UBSan 'member access
    within null pointer') and every connection it held. The test makes
    both events land in one batch: the response fills every buffer up to
    the backend, the worker is stopped (SIGSTOP), the client reads (its
    socket turns writable), then the backend sends the last chunk and
    closes; the worker resumes. The worker must live, the client must get
    the whole response, and the connection must serve the next request."""
    st = {"stuck": threading.Event(), "finish": threading.Event(), "sent": 0}
    take = counter()
    chunk_len = 65536
    chunk = b"%x\r\n" % chunk_len + b"x" * chunk_len + b"\r\n"

    def handler(conn, backend):
        idx = take()
        p = Peer(conn)
        if p.head() is None:
            return
        if idx > 0:
            conn.sendall(ok(b"again"))
            p.wait_eof()
            return
        eph = conn.getpeername()[1]
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for _ in range(400):  # at most 26 MB
            conn.sendall(chunk)
            st["sent"] += chunk_len
            time.sleep(0.005)
            q = tcp_queues(eph, backend.port)
            if q and q[1] > 0:
                # steeldoor left bytes unread: it has stopped reading if they stay
                try:
                    if settled(lambda: tcp_queues(eph, backend.port), 0.15, 2.0)[1] > 0:
                        break
                except AssertionError:
                    pass
        st["stuck"].set()
        st["finish"].wait(20)
        conn.sendall(b"0\r\n\r\n")
        conn.close()

    b = backends(handler)
    sd = http_sd(b.target, workers=1, extra=["--idle-timeout", "10s"])
    worker = sd.wait_workers(1)
    assert len(worker) == 1, worker
    worker = worker[0]
    with h1(sd.port, timeout=15) as c:
        c.send(build_request("GET", "/big"))
        assert st["stuck"].wait(20), "the backend never filled steeldoor's buffers"
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(0.2)
            drained = drain_quiet(c.rd, 0.5)      # the client's socket turns writable ...
            st["finish"].set()                    # ... then the backend ends
            time.sleep(0.3)
        finally:
            os.kill(worker, signal.SIGCONT)
        assert drained >= 1 << 20, "precondition: the client drained only %d bytes" % drained
        r = c.response(timeout=10)
        assert r.status == 200 and r.framing == "chunked", r
        assert len(r.body) == st["sent"] and r.body.count(b"x") == st["sent"], \
            "body of %d bytes, the backend sent %d" % (len(r.body), st["sent"])
        r2 = c.request("GET", "/again")
        assert r2.status == 200 and r2.body == b"again", r2
    assert sdlib.pid_alive(worker) and sd.worker_pids() == [worker], "the worker was replaced"
    no_worker_died(sd)
    e = wait_http(sd, lambda e: e.get("path") == "/big")
    assert e["status"] == 200 and e["bytes_out"] > st["sent"], e
    wait_http(sd, lambda e: e.get("path") == "/again" and e.get("status") == 200)
    assert not b.errors, b.errors


# --------------------------------------------------------------------------
# t5: a pipelined response behind one the client is still reading
# --------------------------------------------------------------------------

BIGHEAD = b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 32000 + b"\r\nContent-Length: 2\r\n\r\nok"


def test_pipelined_response_waits_for_room(http_sd, backends, pki):
    """Bug: a response head was written at the tail of the client's output
    buffer, which may still hold the end of the previous (pipelined)
    response that a slow client has not read yet; when less than the
    head's length was left there, the connection failed ('out_of_memory')
    and the end of the first response was lost: the client got a cut
    response and a reset. The test builds that state exactly: the first
    response is chunked and paced until the kernel towards the (tightened)
    client is full, then one chunk leaves ~16 KiB free in the 256 KiB
    buffer, and the second response has a 32 KB head. Both responses must
    arrive whole, in order."""
    st = {"sent2": threading.Event()}
    piece = b"1000\r\n" + b"a" * 4096 + b"\r\n"
    pass_min = len(piece) + TLS13_RECORD_OVERHEAD
    last = SD_BUF_LARGE - 16384 - len(piece) - len(b"%x\r\n\r\n" % SD_BUF_LARGE) - len(b"0\r\n\r\n")

    def handler(conn, backend):
        p = Peer(conn)
        if p.head() is None:                   # GET /one (GET /two waits in steeldoor)
            return
        eph, bport, cport = conn.getpeername()[1], backend.port, st["cport"]
        st["eph"] = eph

        def to_client():      # bytes between steeldoor and the client, in the kernel
            return tcp_queues(sd.port, cport)[0] + tcp_queues(cport, sd.port)[1]

        def taken():          # steeldoor has read all the backend sent
            return tcp_queues(bport, eph)[0] == 0 and tcp_queues(eph, bport)[1] == 0

        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        base = settled(to_client, 0.1)
        n, stuck = 0, False
        for _ in range(2000):
            conn.sendall(piece)
            n += 1
            t_last, v_last = time.monotonic(), None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                v = to_client()
                if v - base >= pass_min:
                    base = v                   # all of it went on to the kernel
                    break
                if taken():
                    if v != v_last:
                        t_last, v_last = time.monotonic(), v
                    elif time.monotonic() - t_last >= 0.15:
                        stuck = True           # the rest stays in steeldoor
                        break
                time.sleep(0.003)
            else:
                raise AssertionError("steeldoor neither passed on nor kept a chunk")
            if stuck:
                break
        assert stuck and n > 1, "precondition: never filled the kernel towards the client"
        # the output buffer holds at most one piece: fill it to 16 KiB short of its capacity
        conn.sendall(b"%x\r\n" % last + b"a" * last + b"\r\n0\r\n\r\n")
        st["data"] = 4096 * n + last
        if p.head() is None:                   # GET /two, once /one is complete
            return
        conn.sendall(BIGHEAD)
        st["sent2"].set()
        p.wait_eof()

    b = backends(handler)
    sd = http_sd(b.target, extra=["--idle-timeout", "10s"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    c = TightH1(ctx, sd.port, timeout=15)
    try:
        st["cport"] = c.local_port
        c.send(build_request("GET", "/one") + build_request("GET", "/two"))
        assert st["sent2"].wait(20), "the backend never got the second request: %r" % b.errors
        # steeldoor has taken the second response (or given up)
        settled(lambda: (tcp_queues(b.port, st["eph"]), tcp_queues(st["eph"], b.port)), 0.2)
        r1 = c.response(timeout=15)
        assert r1.status == 200 and len(r1.body) == st["data"], \
            "first response cut: %d of %d body bytes" % (len(r1.body), st["data"])
        assert r1.body == b"a" * st["data"]
        r2 = c.response(timeout=10)
        assert r2.status == 200 and r2.get("X-Big") == "h" * 32000 and r2.body == b"ok", r2
        peer = c.peer
    finally:
        c.close()
    assert not b.errors, b.errors
    lines = [e for e in sdhttp.http_lines(sd)]
    assert [(e["path"], e["status"]) for e in lines] == [("/one", 200), ("/two", 200)], lines
    e = sd.wait_conn(peer)
    assert e["result"] == "ok", e


# --------------------------------------------------------------------------
# t6: no retry on a new connection without its PROXY header
# --------------------------------------------------------------------------

def test_proxy_protocol_no_retry_without_header(http_sd, recorder, h1):
    """Bug: with --proxy-protocol, a request on the client's kept backend
    connection that the backend closed without answering was sent again
    on a new connection, but without the PROXY v2 header that every
    connection must start with (the backend saw a request with no client
    address, or refused it). As documented (docs/http.md), there is no
    retry behind a PROXY header: the client gets a 502 and no other
    backend connection is opened."""
    rec = recorder(scripted(lambda req, i: ok(b"one") if i == 0 else None), proxy_protocol=True)
    sd = http_sd(rec.target, extra=["--proxy-protocol"])
    with h1(sd.port) as c:
        r = c.request("GET", "/1")
        assert r.status == 200 and r.body == b"one", r
        c.send(build_request("GET", "/2"))
        r2 = c.response()
        body = assert_refusal(r2, 502, "backend_closed")
        assert c.wait_closed(3)
    wait_reason(sd, body["request_id"], "backend_closed")
    time.sleep(0.2)
    assert not rec.errors, "a backend connection without its PROXY v2 header: %r" % rec.errors
    assert rec.count == 1, "%d backend connections for one client" % rec.count
    assert rec.conns[0].first_bytes[:12] == sdhttp.PP2_SIG
    assert [q.target for q in rec.conns[0].requests] == ["/1", "/2"]


# --------------------------------------------------------------------------
# t7 / t11: the kept backend checked before reuse
# --------------------------------------------------------------------------

def test_kept_backend_with_unsolicited_bytes_not_reused(http_sd, recorder, h1):
    """Bug: the backend connection kept for the client's next request was
    reused without looking at what the backend did meanwhile. A backend
    that, after a complete response (here to a HEAD), sent a response
    nobody asked for, had those bytes read as the answer to the next
    request: the client got 'stale!' for GET /2. The kept connection must
    be dropped, and the request answered on a new one."""
    go, sent = threading.Event(), threading.Event()
    after = {}

    def unsolicited(conn, req, rec):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")   # the HEAD answer
        go.wait(5)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstale!")
        sent.set()
        p = Peer(conn, timeout=10)
        while p._recv():
            pass
        after["bytes"] = bytes(p.buf)     # whatever steeldoor sent after the first exchange
        after["ended"] = True

    rec = recorder(scripted(lambda req, i: unsolicited if i == 0 else ok(b"right")))
    sd = http_sd(rec.target, workers=1)
    with h1(sd.port) as c:
        r = c.request("HEAD", "/1")
        assert r.status == 200 and r.body == b"", r
        go.set()
        assert sent.wait(5)
        time.sleep(0.3)
        r2 = c.request("GET", "/2")
        assert r2.status == 200 and r2.body == b"right", \
            "the kept backend's unsolicited bytes were taken for the answer: %r" % r2
    q = rec.wait_requests(2)
    assert [(x.target, x.conn) for x in q] == [("/1", 0), ("/2", 1)], q
    deadline = time.monotonic() + 3
    while "ended" not in after and time.monotonic() < deadline:
        time.sleep(0.02)
    assert after.get("ended"), "the kept connection with stray bytes was not closed"
    assert after["bytes"] == b"", "the kept connection got more: %r" % after["bytes"][:200]
    e = wait_http(sd, lambda e: e.get("request_id") == q[1].get("X-Steeldoor-Request-Id"))
    assert (e["status"], e["path"], e["bytes_out"]) == (200, "/2", len(ok(b"right"))), e


def test_kept_backend_idle_too_long_not_reused(http_sd, recorder, h1):
    """Bug: --backend-idle-timeout applied only to connections in the pool;
    the one kept for the same client's next request was reused after any
    idle time (4 s with a 1.5 s limit), though the backend's own
    keep-alive timeout may be closing it just then (the limit exists to
    stay below it): a POST cannot be retried and gets a 502. Back-to-back
    requests share the kept connection; after an idle time over the limit
    the next request goes on a new one."""
    rec = recorder()
    sd = http_sd(rec.target, workers=1, extra=["--backend-idle-timeout", "700ms"])
    with h1(sd.port) as c:
        assert c.request("POST", "/a", body=b"1").status == 200
        assert c.request("POST", "/b", body=b"2").status == 200
        time.sleep(1.4)
        r = c.request("POST", "/c", body=b"3")
        assert r.status == 200, r
    q = rec.wait_requests(3)
    assert [(x.target, x.conn) for x in q] == [("/a", 0), ("/b", 0), ("/c", 1)], \
        "backend connections used: %r" % [(x.target, x.conn) for x in q]
    assert [x.body for x in q] == [b"1", b"2", b"3"]
    assert rec.wait_ended(0, 3) == "eof", "the stale kept connection was not closed"
    e = wait_http(sd, lambda e: e.get("request_id") == q[2].get("X-Steeldoor-Request-Id"))
    assert (e["status"], e["path"], e["bytes_in"]) == (200, "/c", 1), e


# --------------------------------------------------------------------------
# t8: a backend that ends inside a response head
# --------------------------------------------------------------------------

def test_backend_end_inside_head_is_502_at_once(http_sd, recorder, h1):
    """Bug: a backend that closed after part of a response head left the
    parser waiting for more that could never come: the client got a 504
    backend_timeout only after the whole idle timeout. It must get a 502
    backend_closed at once."""
    def partial(conn, req, rec):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")

    rec = recorder(scripted(lambda req, i: partial if i == 0 else ok(b"fresh")))
    sd = http_sd(rec.target, extra=["--idle-timeout", "3s"])
    with h1(sd.port, timeout=8) as c:
        c.send(build_request("GET", "/cut-head"))
        t = time.monotonic()
        r = c.response(timeout=6)
        took = time.monotonic() - t
        body = assert_refusal(r, 502, "backend_closed")
        assert took < 1.5, "502 only after %.1fs (idle timeout 3s)" % took
        assert c.wait_closed(3)
    e = wait_reason(sd, body["request_id"], "backend_closed")
    assert e["event"] == "http" and e["status"] == 502 and e["path"] == "/cut-head", e
    assert e["duration_ms"] < 1500, e
    with h1(sd.port) as c:
        assert c.request("GET", "/fresh").body == b"fresh"


# --------------------------------------------------------------------------
# t12: bytes behind a WebSocket upgrade request
# --------------------------------------------------------------------------

def test_upgrade_with_large_leftover(http_sd, recorder, h1):
    """Bug: the bytes a client sent right behind its upgrade request (the
    first WebSocket frames) were handed to the tunnel in a small (16 KiB)
    queue; 40000 of them did not fit and the connection failed
    ('out_of_memory') right after the 101, the backend getting none of
    them. The same for bytes the backend sent in one write with its 101.
    They must all arrive, both ways, and the tunnel go on."""
    leftover = bytes(range(256)) * 156 + b"F" * 64      # 40000 bytes
    from_backend = b"S" * 40000
    st = {}

    def tunnel(backend):
        def run(conn, req, rec):
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                         + sdhttp.ws_accept(req.get("Sec-WebSocket-Key")).encode() + b"\r\n\r\n"
                         + from_backend)
            conn.settimeout(10)
            with backend.lock:
                got = bytes(rec.raw[len(req.head):])
            while len(got) < len(leftover):
                d = conn.recv(65536)
                if not d:
                    break
                got += d
            st["got"] = got
            conn.sendall(b"backend got %05d bytes" % len(got))
            while conn.recv(65536):
                pass
            rec.ended = "eof"
        return run

    rec = recorder(lambda req, backend: tunnel(backend))
    sd = http_sd(rec.target)
    with h1(sd.port) as c:
        peer = c.peer
        c.send(build_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                            ("Sec-WebSocket-Version", "13")]) + leftover)
        r = c.response()
        assert r.status == 101 and r.get("Upgrade") == "websocket", r
        got = c.rd.exact(len(from_backend))
        assert got == from_backend, "bytes behind the 101 altered"
        reply = c.rd.exact(len(b"backend got 40000 bytes"))
        assert reply == b"backend got 40000 bytes", reply
    assert st["got"] == leftover, "the backend got %d bytes behind the upgrade" % len(st["got"])
    q = rec.wait_requests(1)[0]
    e = wait_http(sd, lambda e: e.get("request_id") == q.get("X-Steeldoor-Request-Id"))
    assert (e["status"], e["path"]) == (101, "/ws"), e
    e = sd.wait_conn(peer)
    assert e["result"] == "ok", e


# --------------------------------------------------------------------------
# t13: a client that stops in the middle of its body
# --------------------------------------------------------------------------

def test_client_stalls_mid_body_is_408(http_sd, recorder, h1):
    """Bug: a client that sent a head with Content-Length: 100 and then
    only 10 bytes of body was answered 504 backend_timeout when the idle
    timeout passed, blaming a backend that was still waiting for the rest.
    It is the client's request that timed out: 408 http_request_timeout,
    and the backend connection, with its half body, is closed."""
    rec = recorder()
    sd = http_sd(rec.target, extra=["--idle-timeout", "2s"])
    with h1(sd.port, timeout=8) as c:
        c.send(b"POST /stall HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        t = time.monotonic()
        r = c.response(timeout=6)
        took = time.monotonic() - t
        body = assert_refusal(r, 408, "http_request_timeout")
        assert 1.5 < took < 4.5, "408 after %.1fs with --idle-timeout 2s" % took
        assert c.wait_closed(3)
    e = wait_reason(sd, body["request_id"], "http_request_timeout")
    assert (e["event"], e["status"], e["method"], e["path"], e["bytes_in"]) == \
        ("http", 408, "POST", "/stall", 10), e
    assert rec.wait_ended(0, 3) is not None, "the backend connection with a half body stays open"
    raw = bytes(rec.conns[0].raw)
    assert raw.startswith(b"POST /stall HTTP/1.1\r\n"), raw[:200]
    assert raw.endswith(b"\r\n\r\n0123456789"), raw[-200:]
    assert rec.reqs() == [], "the backend completed a request with a cut body"


def test_drain_closes_idle_keepalive_at_once(http_sd, recorder, h1):
    """A draining worker (SIGTERM) must not wait for idle keep-alive
    clients to leave (drain-timeout): a connection between two exchanges
    is closed at once, without a response nobody asked for."""
    rec = recorder()
    sd = http_sd(rec.target, extra=["--drain-timeout", "20s"])
    with h1(sd.port) as c:
        assert c.request("GET", "/before-drain").status == 200
        t0 = time.monotonic()
        sd.proc.send_signal(signal.SIGTERM)
        assert c.wait_closed(timeout=5.0), "idle keep-alive connection kept open while draining"
        assert time.monotonic() - t0 < 5.0
    assert sd.proc.wait(timeout=10) is not None
