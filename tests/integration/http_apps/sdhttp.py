"""HTTP-mode test helpers: a raw HTTP/1.1 client over TLS, a strict response
reader, a recording HTTP backend, certificate encodings and log lookups.

No pytest here. Every blocking operation has a deadline; every loop is
bounded in count or time. Loopback only.
"""
import base64
import hashlib
import json
import socket
import ssl
import struct
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# RFC 9110 reason phrases (and Python's older spellings, which some servers
# still send) for the statuses steeldoor answers itself.
PHRASES = {
    400: {"Bad Request"},
    405: {"Method Not Allowed"},
    408: {"Request Timeout"},
    414: {"URI Too Long", "Request-URI Too Long"},
    417: {"Expectation Failed"},
    421: {"Misdirected Request"},
    431: {"Request Header Fields Too Large"},
    501: {"Not Implemented"},
    502: {"Bad Gateway"},
    503: {"Service Unavailable"},
    504: {"Gateway Timeout"},
    505: {"HTTP Version Not Supported"},
}

# Every name steeldoor reserves (spec of issue 13), in canonical spelling,
# plus samples of the prefix families.
RESERVED = [
    "Client-Cert", "Client-Cert-Chain", "X-Forwarded-Client-Cert", "Forwarded",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Real-IP",
    "X-Client-Cert", "X-Client-Verify", "X-Client-DN", "SSL-Client-Cert",
    "X-SSL-Client-Cert", "X-SSL-Client-Verify", "X-SSL-Client-S-DN",
    "X-Steeldoor-Request-Id", "X-Steeldoor-Identity", "Steeldoor-Identity",
    "Steeldoor-Second-Factor",
]


def norm(name):
    """Header name as WSGI/CGI see it: upper case, '-' and '_' the same."""
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return name.upper().replace("-", "_")


def is_reserved(name):
    n = norm(name)
    if n.startswith("X_STEELDOOR_") or n.startswith("STEELDOOR_") or n.startswith("X_SSL_CLIENT_"):
        return True
    return n in {norm(r) for r in RESERVED}


# --------------------------------------------------------------------------
# certificates as steeldoor hands them on
# --------------------------------------------------------------------------

def pem_certs(path):
    """Every certificate in a PEM file, in order, as cryptography objects."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    end = b"-----END CERTIFICATE-----"
    for block in data.split(end)[:-1]:
        k = block.find(b"-----BEGIN CERTIFICATE-----")
        if k >= 0:
            out.append(x509.load_pem_x509_certificate(block[k:] + end + b"\n"))
    return out


def der_of(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def sf_binary(der):
    """RFC 8941 byte sequence, as RFC 9440 writes Client-Cert."""
    return ":" + base64.b64encode(der).decode() + ":"


def client_cert_value(path):
    return sf_binary(der_of(pem_certs(path)[0]))


def chain_value(certs):
    """RFC 9440 Client-Cert-Chain for a list of certificates (issuer of the
    leaf first)."""
    return ", ".join(sf_binary(der_of(c)) for c in certs)


def parse_sf_list(v):
    """[bytes] from a Client-Cert-Chain value; raises on anything malformed."""
    out = []
    for item in v.split(","):
        item = item.strip(" ")
        if len(item) < 2 or item[0] != ":" or item[-1] != ":":
            raise ValueError("not an sf-binary item: %r" % item[:80])
        out.append(base64.b64decode(item[1:-1], validate=True))
    return out


def xfcc_parse(v):
    """Envoy's X-Forwarded-Client-Cert: elements separated by ',', pairs by
    ';', key=value with optional double quotes (backslash escapes inside).
    Returns [[(key, value), ...], ...]; raises ValueError on bad syntax.
    Strict on purpose: a value that breaks out of its quotes shows up as an
    extra pair, which the tests then see."""
    elems, pairs = [], []
    i, n = 0, len(v)
    while i < n:
        j = i
        while j < n and v[j] != "=":
            if v[j] in ";,\"":
                raise ValueError("bad key at %d in %r" % (j, v))
            j += 1
        if j == n:
            raise ValueError("key without '=' at %d in %r" % (i, v))
        key = v[i:j].strip()
        j += 1
        if j < n and v[j] == '"':
            j += 1
            val = []
            while True:
                if j >= n:
                    raise ValueError("unterminated quote in %r" % v)
                c = v[j]
                if c == "\\" and j + 1 < n:
                    val.append(v[j + 1])
                    j += 2
                    continue
                if c == '"':
                    j += 1
                    break
                val.append(c)
                j += 1
            val = "".join(val)
        else:
            k = j
            while k < n and v[k] not in ";,":
                if v[k] == '"':
                    raise ValueError("quote inside an unquoted value in %r" % v)
                k += 1
            val = v[j:k]
            j = k
        pairs.append((key, val))
        if j < n and v[j] == ";":
            i = j + 1
        elif j < n and v[j] == ",":
            elems.append(pairs)
            pairs = []
            i = j + 1
        elif j >= n:
            i = n
        else:
            raise ValueError("junk after value at %d in %r" % (j, v))
    elems.append(pairs)
    return elems


def sha256_hex(der):
    return hashlib.sha256(der).hexdigest()


# --------------------------------------------------------------------------
# raw HTTP/1.x over TLS: reader, response parser, client
# --------------------------------------------------------------------------

class ProtocolError(AssertionError):
    pass


class Reader:
    """Buffered reads from a (TLS) socket with deadlines. Remembers every
    byte received and how the stream ended."""

    def __init__(self, sock, timeout=5.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.all = bytearray()
        self.eof = None      # None, "eof" or repr of the error that ended it

    def _fill(self, deadline):
        if self.eof is not None:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data within the deadline (have %d bytes: %r)"
                               % (len(self.buf), bytes(self.buf[:200])))
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data within the deadline (have %d bytes: %r)"
                               % (len(self.buf), bytes(self.buf[:200])))
        except (ssl.SSLError, OSError) as e:
            self.eof = repr(e)
            return False
        if not d:
            self.eof = "eof"
            return False
        self.buf += d
        self.all += d
        return True

    def until(self, marker, limit=1 << 20, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            k = self.buf.find(marker)
            if k >= 0:
                out = bytes(self.buf[:k + len(marker)])
                del self.buf[:k + len(marker)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("no %r within %d bytes: %r" % (marker, limit, bytes(self.buf[:200])))
            if not self._fill(deadline):
                raise EOFError("connection ended (%s) before %r; have %r"
                               % (self.eof, marker, bytes(self.buf[:300])))

    def exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection ended (%s) after %d of %d bytes"
                               % (self.eof, len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def to_eof(self, timeout=None, limit=1 << 24):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < limit and self._fill(deadline):
            pass
        out = bytes(self.buf)
        del self.buf[:]
        return out


class Resp:
    def __init__(self):
        self.version = self.reason = None
        self.status = None
        self.headers = []
        self.body = b""
        self.raw_head = b""
        self.raw_body = b""
        self.interim = []
        self.framing = None

    def all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.all(name)
        return v[0] if v else default

    def tokens(self, name):
        out = []
        for v in self.all(name):
            out += [t.strip().lower() for t in v.split(",") if t.strip()]
        return out

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Resp %s %s %r body=%r>" % (self.status, self.reason, self.headers,
                                            self.body[:300])


def parse_head(head):
    """Strict parse of a response head (bytes ending in CRLFCRLF)."""
    r = Resp()
    r.raw_head = head
    text = head[:-4]
    if b"\n" in text.replace(b"\r\n", b"") or b"\r" in text.replace(b"\r\n", b""):
        raise ProtocolError("bare CR or LF in a response head: %r" % head[:500])
    lines = text.split(b"\r\n")
    sl = lines[0].decode("latin-1")
    parts = sl.split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        raise ProtocolError("bad status line %r" % sl)
    r.version, r.status = parts[0], int(parts[1])
    r.reason = parts[2] if len(parts) > 2 else ""
    for ln in lines[1:]:
        s = ln.decode("latin-1")
        if ":" not in s or s[0] in " \t" or s.split(":", 1)[0] != s.split(":", 1)[0].strip():
            raise ProtocolError("bad header line %r in %r" % (s, head[:500]))
        k, v = s.split(":", 1)
        r.headers.append((k, v.strip(" \t")))
    return r


def read_chunked(rd, timeout=None):
    """Decodes a chunked body; returns (data, raw)."""
    raw = bytearray()
    data = bytearray()
    for _ in range(1 << 16):
        line = rd.until(b"\r\n", limit=8192, timeout=timeout)
        raw += line
        size_txt = line[:-2].split(b";")[0].strip()
        try:
            size = int(size_txt, 16)
        except ValueError:
            raise ProtocolError("bad chunk size line %r" % line)
        if size == 0:
            for _ in range(128):
                t = rd.until(b"\r\n", limit=8192, timeout=timeout)
                raw += t
                if t == b"\r\n":
                    return bytes(data), bytes(raw)
            raise ProtocolError("too many trailer lines")
        chunk = rd.exact(size + 2, timeout=timeout)
        raw += chunk
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF: %r" % chunk[-10:])
        data += chunk[:-2]
    raise ProtocolError("too many chunks")


def read_response(rd, method="GET", timeout=None, keep_interim=True):
    """One final response (1xx interim responses collected in .interim).
    Body per RFC 9112 section 6.3, read from the Reader rd."""
    interim = []
    for _ in range(8):
        head = rd.until(b"\r\n\r\n", limit=65536, timeout=timeout)
        r = parse_head(head)
        if 100 <= r.status < 200 and r.status != 101:
            interim.append(r)
            continue
        break
    else:
        raise ProtocolError("more than 8 interim responses")
    r.interim = interim
    te = [t for v in r.all("transfer-encoding") for t in v.lower().replace(" ", "").split(",")]
    cl = r.all("content-length")
    if method == "HEAD" or r.status in (101, 204, 304) or (method == "CONNECT" and 200 <= r.status < 300):
        r.framing = "none"
    elif te:
        if te[-1] != "chunked" or cl:
            raise ProtocolError("response with TE %r and CL %r" % (te, cl))
        r.framing = "chunked"
        r.body, r.raw_body = read_chunked(rd, timeout)
    elif cl:
        if len(cl) != 1 or not cl[0].isdigit():
            raise ProtocolError("bad Content-Length %r" % cl)
        r.framing = "length"
        r.body = r.raw_body = rd.exact(int(cl[0]), timeout=timeout)
    else:
        r.framing = "close"
        r.body = r.raw_body = rd.to_eof(timeout=timeout)
    return r


def build_request(method="GET", path="/", headers=(), body=None, host="localhost",
                  version="HTTP/1.1", cl=True):
    """Request bytes. headers: (name, value) tuples or raw bytes lines
    (without CRLF). A Content-Length is added for a body unless cl=False or
    the headers already frame it."""
    lines = [("%s %s %s" % (method, path, version)).encode("latin-1")]
    if host is not None:
        lines.append(b"Host: " + host.encode("latin-1"))
    names = []
    for h in headers:
        if isinstance(h, bytes):
            lines.append(h)
            names.append(h.split(b":", 1)[0].strip().lower())
        else:
            k, v = h
            k = k.encode("latin-1") if isinstance(k, str) else k
            v = v.encode("latin-1") if isinstance(v, str) else v
            lines.append(k + b": " + v)
            names.append(k.lower())
    if body is not None and cl and b"content-length" not in names and \
            b"transfer-encoding" not in names:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def chunked(*parts, trailers=(), ext=b""):
    """A chunked body of the given parts (bytes), each chunk line carrying
    ext (e.g. b";a=1"), then the last chunk and trailer lines."""
    out = b""
    for p in parts:
        out += b"%x%s\r\n%s\r\n" % (len(p), ext, p)
    out += b"0%s\r\n" % ext
    for t in trailers:
        out += t + b"\r\n"
    return out + b"\r\n"


class H1:
    """One TLS connection speaking raw HTTP/1.x."""

    def __init__(self, ctx, port, host="127.0.0.1", sni="localhost", timeout=5.0,
                 session=None):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        raw = socket.socket(fam, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.connect((host, port))
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=sni, session=session)
        except Exception:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.rd = Reader(self.sock, timeout)
        h, p = self.sock.getsockname()[:2]
        self.peer = ("[%s]:%d" if ":" in h else "%s:%d") % (h, p)
        self.local_port = p

    def send(self, data):
        self.sock.sendall(data)

    def response(self, method="GET", timeout=None):
        return read_response(self.rd, method=method, timeout=timeout)

    def request(self, method="GET", path="/", headers=(), body=None, host="localhost",
                version="HTTP/1.1", timeout=None):
        self.send(build_request(method, path, headers, body, host, version))
        return self.response(method, timeout)

    def wait_closed(self, timeout=3.0):
        """True when the server ends the connection within timeout without
        sending anything more; False when it stays open. Extra bytes are an
        error (a response nobody asked for)."""
        try:
            extra = self.rd.to_eof(timeout=timeout)
        except TimeoutError:
            extra = bytes(self.rd.buf)
            if extra:
                raise ProtocolError("unexpected bytes on the connection: %r" % extra[:300])
            return False
        if extra:
            raise ProtocolError("unexpected bytes before the close: %r" % extra[:300])
        return True

    @property
    def session(self):
        return self.sock.session

    @property
    def session_reused(self):
        return self.sock.session_reused

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
# the recording backend
# --------------------------------------------------------------------------

class Req:
    """One request as a backend parsed it."""

    def __init__(self):
        self.method = self.target = self.version = None
        self.headers = []
        self.head = b""
        self.body = b""
        self.raw_body = b""
        self.trailers = []
        self.conn = None
        self.seq = None
        self.error = None
        self.pending_before_response = 0

    def all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.all(name)
        return v[0] if v else default

    def names(self):
        return [k for k, _ in self.headers]

    def summary(self):
        return {"method": self.method, "target": self.target, "version": self.version,
                "headers": [[k, v] for k, v in self.headers],
                "body_b64": base64.b64encode(self.body).decode(),
                "trailers": [[k, v] for k, v in self.trailers], "conn": self.conn,
                "seq": self.seq, "error": self.error}

    def __repr__(self):
        return "<Req %s %s %s %r>" % (self.method, self.target, self.version, self.headers)


class ConnRec:
    def __init__(self, index):
        self.index = index
        self.raw = bytearray()
        self.requests = []
        self.pp = None          # the PROXY v2 header bytes, when expected
        self.first_bytes = b""
        self.ended = None       # "eof", "closed_by_us" or an error


def echo_json(req, backend):
    body = json.dumps(req.summary()).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class HttpRecorder:
    """A threaded HTTP/1.1 backend that records every byte and request it
    receives (per connection) and answers with responder(req, backend):
    bytes to send, (bytes, "close") to send and close, or None to close at
    once; or a callable(conn, req, rec) that does the answering itself.
    The default answer is a JSON echo of the request as parsed here.

    delay: seconds to wait before answering (then the bytes that arrived
    meanwhile are counted in req.pending_before_response: a backend
    reached by a pipelining proxy would see the next request there).
    proxy_protocol: expect a PROXY v2 header first on every connection."""

    def __init__(self, responder=None, delay=0.0, proxy_protocol=False, host="127.0.0.1"):
        self.responder = responder or echo_json
        self.delay = delay
        self.proxy_protocol = proxy_protocol
        self.lock = threading.Lock()
        self.conns = []
        self.requests = []
        self.errors = []
        self._stop = False
        self._socks = []
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(256)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.target = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    # -- accounting ----------------------------------------------------------
    @property
    def count(self):
        with self.lock:
            return len(self.conns)

    def all_raw(self):
        with self.lock:
            return b"".join(bytes(c.raw) for c in self.conns)

    def reqs(self):
        with self.lock:
            return list(self.requests)

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        with self.lock:
            return list(self.requests)

    def wait_ended(self, index, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if index < len(self.conns) and self.conns[index].ended is not None:
                    return self.conns[index].ended
            time.sleep(0.02)
        return None

    # -- serving -------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                rec = ConnRec(len(self.conns))
                self.conns.append(rec)
                self._socks.append(conn)
            threading.Thread(target=self._serve, args=(conn, rec), daemon=True).start()

    def _recv(self, conn, rec, buf):
        d = conn.recv(65536)
        if not d:
            return False
        with self.lock:
            rec.raw += d
            if len(rec.first_bytes) < 64:
                rec.first_bytes = bytes(rec.raw[:64])
        buf += d
        return True

    def _until(self, conn, rec, buf, marker, limit=1 << 20):
        while True:
            k = buf.find(marker)
            if k >= 0:
                out = bytes(buf[:k + len(marker)])
                del buf[:k + len(marker)]
                return out
            if len(buf) > limit or not self._recv(conn, rec, buf):
                return None

    def _exact(self, conn, rec, buf, n):
        while len(buf) < n:
            if not self._recv(conn, rec, buf):
                return None
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def _serve(self, conn, rec):
        conn.settimeout(30)
        buf = bytearray()
        try:
            if self.proxy_protocol:
                h = self._exact(conn, rec, buf, 16)
                if h is None or h[:12] != PP2_SIG:
                    raise ProtocolError("no PROXY v2 header first: %r" % h)
                rest = self._exact(conn, rec, buf, struct.unpack(">H", h[14:16])[0])
                rec.pp = h + rest
            for seq in range(100000):
                head = self._until(conn, rec, buf, b"\r\n\r\n")
                if head is None:
                    rec.ended = "eof"
                    return
                req = Req()
                req.conn, req.seq, req.head = rec.index, seq, head
                lines = head[:-4].split(b"\r\n")
                parts = lines[0].decode("latin-1").split(" ")
                if len(parts) == 3:
                    req.method, req.target, req.version = parts
                else:
                    req.error = "request line %r" % lines[0]
                for ln in lines[1:]:
                    s = ln.decode("latin-1")
                    if ":" not in s:
                        req.error = "header line %r" % s
                        continue
                    k, v = s.split(":", 1)
                    req.headers.append((k, v.strip(" \t")))
                te = ",".join(req.all("transfer-encoding")).lower()
                cl = req.all("content-length")
                if "chunked" in te:
                    raw = bytearray()
                    data = bytearray()
                    while True:
                        line = self._until(conn, rec, buf, b"\r\n", 1 << 16)
                        if line is None:
                            raise ProtocolError("EOF inside a chunked body")
                        raw += line
                        size = int(line[:-2].split(b";")[0].strip() or b"x", 16)
                        if size == 0:
                            while True:
                                t = self._until(conn, rec, buf, b"\r\n", 1 << 16)
                                if t is None:
                                    raise ProtocolError("EOF inside trailers")
                                raw += t
                                if t == b"\r\n":
                                    break
                                k, _, v = t[:-2].decode("latin-1").partition(":")
                                req.trailers.append((k, v.strip()))
                            break
                        chunk = self._exact(conn, rec, buf, size + 2)
                        if chunk is None:
                            raise ProtocolError("EOF inside a chunk")
                        raw += chunk
                        data += chunk[:-2]
                    req.body, req.raw_body = bytes(data), bytes(raw)
                elif cl:
                    n = int(cl[0])
                    b = self._exact(conn, rec, buf, n)
                    if b is None:
                        raise ProtocolError("EOF inside a body of %d bytes" % n)
                    req.body = req.raw_body = b
                with self.lock:
                    rec.requests.append(req)
                    self.requests.append(req)
                if self.delay:
                    time.sleep(self.delay)
                    conn.setblocking(False)
                    try:
                        while self._recv(conn, rec, buf):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    finally:
                        conn.setblocking(True)
                        conn.settimeout(30)
                req.pending_before_response = len(buf)
                act = self.responder(req, self)
                if callable(act):
                    act(conn, req, rec)
                    rec.ended = rec.ended or "handler"
                    return
                close = False
                if isinstance(act, tuple):
                    act, close = act[0], act[1] == "close"
                if act is None:
                    rec.ended = "closed_by_us"
                    return
                conn.sendall(act)
                conn_tokens = ",".join(req.all("connection")).lower()
                if close or "close" in conn_tokens or (req.version == "HTTP/1.0" and
                                                        "keep-alive" not in conn_tokens):
                    rec.ended = "closed_by_us"
                    return
        except Exception as e:
            with self.lock:
                self.errors.append(repr(e))
                rec.ended = rec.ended or repr(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self._socks:
                try:
                    c.close()
                except OSError:
                    pass
        self.thread.join(2)


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------

def http_lines(sd):
    return [e for e in sd.logs() if e.get("event") == "http"]


def wait_http(sd, pred, timeout=5.0, what="http log line"):
    return sd.wait_log(lambda e: e.get("event") == "http" and pred(e), timeout, what)


def wait_reason(sd, request_id, word, timeout=5.0):
    """The log line (any event) that names this request id and reason word."""
    return sd.wait_log(lambda e: e.get("request_id") == request_id and e.get("reason") == word,
                       timeout, what="log line with request_id %s and reason %s"
                       % (request_id, word))


def is_hex_id(v):
    return isinstance(v, str) and len(v) >= 8 and all(c in "0123456789abcdefABCDEF" for c in v)


def assert_refusal(resp, status, word):
    """steeldoor's own error response: status, JSON body with status, error
    (the reason phrase), reason (the log word) and request_id; JSON content
    type; Connection: close. Returns the body object."""
    assert resp.status == status, "expected %d %s, got %r" % (status, word, resp)
    ct = (resp.get("content-type") or "").split(";")[0].strip().lower()
    assert ct == "application/json", "error response Content-Type %r: %r" % (ct, resp)
    assert "close" in resp.tokens("connection"), "error response without Connection: close: %r" % resp
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("error body is not JSON: %r" % resp.body[:300])
    assert body.get("status") == status, body
    assert body.get("reason") == word, "reason %r, expected %r (%s)" % (body.get("reason"), word, body)
    assert body.get("error") in PHRASES.get(status, {resp.reason}), \
        "error %r is not the reason phrase of %d" % (body.get("error"), status)
    assert resp.reason in PHRASES.get(status, {resp.reason}), "status line reason %r" % resp.reason
    assert is_hex_id(body.get("request_id")), "request_id %r" % body.get("request_id")
    assert set(body) == {"status", "error", "reason", "request_id"}, "extra keys in %s" % body
    hid = resp.all("X-Steeldoor-Request-Id")
    assert hid in ([], [body["request_id"]]), "request id header %r != body %r" % (hid, body)
    return body


# --------------------------------------------------------------------------
# WebSocket (RFC 6455), the few bits the tests need
# --------------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(payload, opcode=1, mask=None):
    """One final frame; masked when mask (4 bytes) is given (client side)."""
    b0 = 0x80 | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        h = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        h = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return h + mask + payload
    return h + payload


def ws_read_frame(read_exact):
    """(opcode, payload) from a frame read with read_exact(n)."""
    b0, b1 = read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(8))[0]
    mask = read_exact(4) if b1 & 0x80 else None
    data = read_exact(n) if n else b""
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, data
