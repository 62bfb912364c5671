"""`steeldoor audit` explains itself (issue 17, item 8; item 2 for its inputs).

Each door it finds names a finding and says what to change in nginx, HAProxy and
steeldoor. The advice is checked against the real servers: the audit finds the
door, the test applies the very directive the advice names, and the door is gone.
The table stays readable at 80 columns whatever the server says; a --cert that
--cacert did not issue, and input files in the wrong form, are refused with a
message that names the file and says how to convert it; the sample reports in
docs/audit.md are what the auditor prints against a real steeldoor."""
import difflib
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import sdlib
from conftest import make_ca, make_leaf, _now
from sdlib import closed_port, free_port
# peers is a fixture: imported, it serves this module's tests too
from test_audit import HAPROXY, NGINX, HeaderEcho, Proc, peers, wait_port  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "audit.md"
CERT_PROBES = ("no-cert", "self-signed", "unknown-ca", "expired", "not-yet-valid",
               "serverauth-eku", "forged-signature")
DOORS = ("OPEN DOOR", "REFUSED LATE")

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not installed")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")


# --------------------------------------------------------------------------
# running the auditor
# --------------------------------------------------------------------------

def _run(sd_bin, args, columns=None, timeout=90):
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    r = subprocess.run([str(sd_bin), "audit"] + [str(a) for a in args], env=env,
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    err = r.stderr.decode(errors="replace")
    assert not any(p in err for p in sdlib.SAN_PATTERNS), err
    return r.returncode, r.stdout.decode(errors="replace"), err


def _files(pki, cert=None, key=None, cacert=None):
    return ["--cacert", cacert or pki.ca, "--cert", cert or pki.client_cert,
            "--key", key or pki.client_key]


@pytest.fixture
def audit(sd_bin, pki):
    """audit(port, *extra, cert=, key=, cacert=) -> (rc, report, stderr), JSON."""
    def go(port, *extra, cert=None, key=None, cacert=None, timeout="2s"):
        rc, out, err = _run(sd_bin, ["127.0.0.1:%d" % port, "--json", "--timeout", timeout]
                            + _files(pki, cert, key, cacert) + list(extra))
        try:
            rep = json.loads(out)
        except ValueError:
            raise AssertionError("no JSON (rc=%d)\nstdout:%s\nstderr:%s" % (rc, out, err))
        assert rep["exit_status"] == rc, rep
        return rc, rep, err
    return go


def probes(rep):
    return {p["name"]: p for p in rep["probes"]}


def findings(rep):
    """{probe: finding id} for every probe that found a door."""
    return {p["name"]: p["finding"]["id"] for p in rep["probes"] if p["finding"]}


def table(rep):
    return "\n".join("%-17s %-15s %-24s %s" % (p["name"], p["verdict"],
                                               (p["finding"] or {}).get("id", "-"),
                                               p["observed"])
                     for p in rep["probes"]) + "\nresult: %s" % rep["result"]


def advice(rep, probe, server):
    p = probes(rep)[probe]
    assert p["finding"], "%s has no finding\n%s" % (probe, table(rep))
    for k in ("id", "what", "nginx", "haproxy", "steeldoor"):
        assert p["finding"][k], "%s: finding without %s\n%s" % (probe, k, table(rep))
    return p["finding"][server]


def every_door_explained(rep):
    """A door always carries its finding, and only a door does."""
    for p in rep["probes"]:
        assert (p["verdict"] in DOORS) == (p["finding"] is not None), table(rep)


def forged_headers(rep):
    obs = probes(rep)["identity-headers"]["observed"]
    m = re.match(r"forged (.*) reached the backend$", obs)
    assert m, obs
    return [h.strip() for h in m.group(1).split(",")]


# --------------------------------------------------------------------------
# peers: nginx and HAProxy in their own processes
# --------------------------------------------------------------------------

@pytest.fixture
def nginx(peers, pki, tmp_path):
    """nginx(server_lines, http_lines="", servers=None) -> port. One TLS server
    block on a free port answering 200, with the lines given inside it."""
    count = [0]

    def start(server_lines="", http_lines="", location="return 200 \"hello\\n\";",
              servers=None):
        count[0] += 1
        d = tmp_path / ("nginx%d" % count[0])
        d.mkdir()
        port = free_port()
        block = """
  server {
    listen 127.0.0.1:%(port)d ssl%(default)s;
    server_name %(name)s;
    ssl_certificate %(crt)s;
    ssl_certificate_key %(key)s;
    ssl_client_certificate %(ca)s;
    %(lines)s
    location / { %(location)s }
  }"""
        blocks = ""
        for i, (name, lines) in enumerate(servers or [("localhost", server_lines)]):
            blocks += block % {"port": port, "default": " default_server" if i == 0 else "",
                               "name": name, "crt": pki.server_cert, "key": pki.server_key,
                               "ca": pki.ca, "lines": lines, "location": location}
        (d / "nginx.conf").write_text("""
worker_processes 1;
error_log %(d)s/error.log;
pid %(d)s/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  %(http)s
  %(blocks)s
}
""" % {"d": d, "http": http_lines, "blocks": blocks})
        pr = peers([NGINX, "-p", d, "-c", d / "nginx.conf", "-e", d / "error.log",
                    "-g", "daemon off;"], d / "stdout.log")
        wait_port(port, pr.p, "nginx")
        return port
    return start


@pytest.fixture
def haproxy(peers, pki, tmp_path):
    """haproxy(bind_options, frontend_lines="", global_lines="", backend_port=None)
    -> port. mode http; without a backend it answers 200 itself."""
    count = [0]

    def start(bind_options, frontend_lines="", global_lines="", backend_port=None):
        count[0] += 1
        d = tmp_path / ("haproxy%d" % count[0])
        d.mkdir()
        pem = d / "server.pem"
        pem.write_bytes(pki.server_cert.read_bytes() + pki.server_key.read_bytes())
        pem.chmod(0o600)
        port = free_port()
        if backend_port is None:
            tail = "  http-request return status 200 content-type text/plain string ok\n"
        else:
            tail = ("  default_backend be\nbackend be\n  server s1 127.0.0.1:%d\n"
                    % backend_port)
        (d / "haproxy.cfg").write_text("""
global
  maxconn 100
%(glob)s
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:%(port)d ssl crt %(pem)s ca-file %(ca)s %(opts)s
%(fe)s
%(tail)s""" % {"glob": global_lines, "port": port, "pem": pem, "ca": pki.ca,
               "opts": bind_options, "fe": frontend_lines, "tail": tail})
        pr = peers([HAPROXY, "-db", "-f", d / "haproxy.cfg"], d / "haproxy.log")
        wait_port(port, pr.p, "haproxy")
        return port
    return start


@pytest.fixture
def header_echo():
    b = HeaderEcho()
    yield b
    b.close()


# --------------------------------------------------------------------------
# nginx: each mistake, its advice, and the advice applied
# --------------------------------------------------------------------------

NGINX_MISTAKES = {
    # ssl_verify_client value: (probes with that finding, the finding, words
    # the nginx advice must hold)
    "off": (CERT_PROBES, "no-client-auth", ["ssl_verify_client on;",
                                            "ssl_client_certificate"]),
    "optional": (("no-cert",), "optional-client-cert", ["ssl_verify_client on;",
                                                       "instead of optional"]),
    "optional_no_ca": (("self-signed", "unknown-ca"), "unverified-client-cert",
                       ["ssl_verify_client on;", "not optional_no_ca"]),
}


@needs_nginx
@pytest.mark.parametrize("mistake", sorted(NGINX_MISTAKES))
def test_nginx_client_auth_mistakes_are_explained(nginx, audit, mistake):
    """The finding names the mistake and the nginx directive that fixes it;
    with that directive the finding is gone. What remains is nginx's own way,
    REFUSED LATE, which the advice announces."""
    names, finding, words = NGINX_MISTAKES[mistake]
    rc, rep, _ = audit(nginx("ssl_verify_client %s;" % mistake))
    assert rc == 1, table(rep)
    every_door_explained(rep)
    f = findings(rep)
    for name in names:
        assert f.get(name) == finding, table(rep)
    text = advice(rep, names[0], "nginx")
    for w in words:
        assert w in text, text
    assert "REFUSED LATE" in text or finding == "unverified-client-cert", text
    assert "cannot happen" in advice(rep, names[0], "steeldoor")

    fix = re.search(r"ssl_verify_client \w+;", text).group(0)
    rc, rep, _ = audit(nginx(fix))
    every_door_explained(rep)
    left = set(findings(rep).values())
    assert finding not in left, table(rep)
    assert left <= {"refused-after-handshake", "plaintext-http"}, table(rep)
    for name in CERT_PROBES:
        assert probes(rep)[name]["verdict"] == "REFUSED LATE", table(rep)


@needs_nginx
def test_nginx_refused_late_says_nginx_cannot_refuse_in_the_handshake(nginx, audit):
    rc, rep, _ = audit(nginx("ssl_verify_client on;"))
    assert rc == 1, table(rep)
    f = findings(rep)
    assert {f[n] for n in CERT_PROBES} == {"refused-after-handshake"}, table(rep)
    text = advice(rep, "no-cert", "nginx")
    assert "no nginx setting refuses in the handshake" in text, text
    assert "verify required" in advice(rep, "no-cert", "haproxy")
    # nginx answers 400 to plain HTTP on its TLS port, and says so
    assert probes(rep)["plaintext-http"]["verdict"] == "REFUSED LATE", table(rep)
    assert f["plaintext-http"] == "plaintext-http", table(rep)
    assert "no directive turns it off" in advice(rep, "plaintext-http", "nginx")


@needs_nginx
def test_nginx_old_tls_advice_closes_it(nginx, audit):
    """nginx told to speak TLS 1.0 and 1.1 (and to allow their ciphers): the
    finding's ssl_protocols line, applied as written, ends it."""
    legacy = "ssl_verify_client on; ssl_ciphers DEFAULT:@SECLEVEL=0;"
    rc, rep, _ = audit(nginx(legacy + " ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;"))
    p = probes(rep)
    if p["tls1.0"]["verdict"] == "NOT DETERMINED":
        pytest.skip("this OpenSSL cannot offer TLS 1.0: %s" % p["tls1.0"]["observed"])
    for name in ("tls1.0", "tls1.1"):
        assert p[name]["verdict"] == "OPEN DOOR", table(rep)
        assert p[name]["finding"]["id"] == "old-tls", table(rep)
    directive = re.search(r"ssl_protocols [^;]+;", advice(rep, "tls1.0", "nginx")).group(0)
    assert directive == "ssl_protocols TLSv1.2 TLSv1.3;", directive

    rc, rep, _ = audit(nginx(legacy + " " + directive))
    p = probes(rep)
    for name in ("tls1.0", "tls1.1"):
        assert p[name]["verdict"] == "PASS", table(rep)
        assert p[name]["finding"] is None, table(rep)


@needs_nginx
def test_nginx_forged_headers_advice_removes_them(nginx, audit, header_echo):
    """nginx proxying to a backend passes client headers on; one empty
    proxy_set_header per header the row names, as the advice says, stops them."""
    loc = "proxy_pass http://127.0.0.1:%d; %%s" % header_echo.port
    rc, rep, _ = audit(nginx("ssl_verify_client on;", location=loc % ""), "--http")
    p = probes(rep)["identity-headers"]
    assert p["verdict"] == "OPEN DOOR", table(rep)
    assert p["finding"]["id"] == "forged-identity-headers", table(rep)
    text = advice(rep, "identity-headers", "nginx")
    template = re.search(r'proxy_set_header NAME "";', text).group(0)
    fix = " ".join(template.replace("NAME", h) for h in forged_headers(rep))

    rc, rep, _ = audit(nginx("ssl_verify_client on;", location=loc % fix), "--http")
    p = probes(rep)["identity-headers"]
    assert p["verdict"] == "PASS", table(rep)
    assert "removed or replaced" in p["observed"], table(rep)


def _nginx_has_cve_2025_23419_fix():
    out = subprocess.run([NGINX, "-v"], capture_output=True).stderr.decode()
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    v = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    if v >= (1, 27, 4) or (1, 26, 3) <= v < (1, 27, 0):
        return True
    log = Path("/usr/share/doc/nginx/changelog.Debian.gz")
    if log.is_file():
        import gzip
        return b"CVE-2025-23419" in gzip.decompress(log.read_bytes())
    return False


@needs_nginx
def test_nginx_with_the_cve_fix_refuses_cross_name_resumption(nginx, audit):
    """Two server blocks on one port, both checking client certificates. An
    nginx with the fix the advice names refuses the resumption under the other
    name (alert access denied): that is a PASS, not NOT DETERMINED."""
    if not _nginx_has_cve_2025_23419_fix():
        pytest.skip("this nginx predates the CVE-2025-23419 fix")
    # TLS 1.3: the CVE's case (nginx 1.22 offers only up to TLS 1.2 by default)
    port = nginx(servers=[("localhost", "ssl_verify_client on;"),
                          ("other.example", "ssl_verify_client on;")],
                 http_lines="ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:1m;")
    rc, rep, _ = audit(port, "--servername", "localhost", "--servername", "other.example")
    p = probes(rep)["sni-resumption"]
    assert p["verdict"] == "PASS", table(rep)
    assert p["observed"].startswith("resuming under other.example refused: alert"), table(rep)


# --------------------------------------------------------------------------
# HAProxy
# --------------------------------------------------------------------------

@needs_haproxy
def test_haproxy_verify_none_is_explained(haproxy, audit):
    rc, rep, _ = audit(haproxy("verify none"))
    assert rc == 1, table(rep)
    every_door_explained(rep)
    assert {findings(rep)[n] for n in CERT_PROBES} == {"no-client-auth"}, table(rep)
    text = advice(rep, "no-cert", "haproxy")
    assert "verify required" in text and "ca-file" in text, text
    assert "ssl_verify_client on;" in advice(rep, "no-cert", "nginx")


@needs_haproxy
def test_haproxy_ignore_err_advice_closes_it(haproxy, audit):
    rc, rep, _ = audit(haproxy("verify required ca-ignore-err all crt-ignore-err all"))
    assert rc == 1, table(rep)
    every_door_explained(rep)
    f = findings(rep)
    assert "no-cert" not in f, table(rep)
    assert {f[n] for n in CERT_PROBES[1:]} == {"unverified-client-cert"}, table(rep)
    text = advice(rep, "self-signed", "haproxy")
    assert "remove ca-ignore-err and crt-ignore-err" in text, text

    rc, rep, _ = audit(haproxy("verify required"))
    assert rc == 0 and not findings(rep), table(rep)


@needs_haproxy
def test_haproxy_sni_resumption_advice_closes_it(haproxy, audit):
    """HAProxy resumes a session under another name; the advice (both
    settings, each alone is not enough) ends resumption there."""
    names = ("--servername", "localhost", "--servername", "other.example")
    rc, rep, _ = audit(haproxy("verify required"), *names)
    p = probes(rep)["sni-resumption"]
    assert p["verdict"] == "OPEN DOOR", table(rep)
    assert p["finding"]["id"] == "sni-resumption", table(rep)
    text = advice(rep, "sni-resumption", "haproxy")
    assert "no-tls-tickets on the bind line" in text, text
    glob = re.search(r"tune\.ssl\.cachesize 0", text).group(0)
    assert "CVE-2025-23419" in advice(rep, "sni-resumption", "nginx")

    rc, rep, _ = audit(haproxy("verify required no-tls-tickets", global_lines="  " + glob),
                       *names)
    p = probes(rep)["sni-resumption"]
    assert p["verdict"] == "PASS", table(rep)
    assert rc == 0, table(rep)


@needs_haproxy
def test_haproxy_forged_headers_advice_removes_them(haproxy, audit, header_echo):
    rc, rep, _ = audit(haproxy("verify required", backend_port=header_echo.port), "--http")
    p = probes(rep)["identity-headers"]
    assert p["verdict"] == "OPEN DOOR", table(rep)
    text = advice(rep, "identity-headers", "haproxy")
    template = re.search(r"http-request del-header NAME", text).group(0)
    fix = "".join("  %s\n" % template.replace("NAME", h) for h in forged_headers(rep))

    rc, rep, _ = audit(haproxy("verify required", frontend_lines=fix,
                               backend_port=header_echo.port), "--http")
    p = probes(rep)["identity-headers"]
    assert p["verdict"] == "PASS", table(rep)
    assert rc == 0, table(rep)


# --------------------------------------------------------------------------
# steeldoor: L4 passes client headers through untouched, HTTP mode does not;
# sessions never cross names
# --------------------------------------------------------------------------

def test_steeldoor_l4_forwards_forged_headers_http_mode_removes_them(
        steeldoor, audit, header_echo):
    names = ("--servername", "localhost", "--servername", "other.example")
    sd = steeldoor(target="127.0.0.1:%d" % header_echo.port)
    rc, rep, _ = audit(sd.port, "--http", *names)
    every_door_explained(rep)
    assert findings(rep) == {"identity-headers": "forged-identity-headers"}, table(rep)
    assert probes(rep)["sni-resumption"]["verdict"] == "PASS", table(rep)
    text = advice(rep, "identity-headers", "steeldoor")
    assert "L4 mode" in text and "--http" in text, text

    sd = steeldoor(target="127.0.0.1:%d" % header_echo.port, extra=["--http"])
    rc, rep, _ = audit(sd.port, "--http", *names)
    assert rc == 0, table(rep)
    p = probes(rep)
    assert all(x["verdict"] == "PASS" for x in rep["probes"]), table(rep)
    assert "removed or replaced" in p["identity-headers"]["observed"], table(rep)


# --------------------------------------------------------------------------
# Python TLS servers for what no server above does
# --------------------------------------------------------------------------

class RawServer:
    """Threads on 127.0.0.1; handle(sock) per connection, bounded in time."""

    def __init__(self, handle):
        self.handle = handle
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(3.0)
            t = threading.Thread(target=self._one, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _one(self, c):
        try:
            self.handle(c)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.lsock.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def raw_server():
    made = []

    def start(handle):
        s = RawServer(handle)
        made.append(s)
        return s

    yield start
    for s in made:
        s.close()


def server_ctx(pki, verify=ssl.CERT_REQUIRED, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.load_verify_locations(str(pki.ca))
    ctx.verify_mode = verify
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def test_plaintext_content_is_an_open_door(raw_server, pki, audit):
    """One port for TLS and plain HTTP (a multiplexer): a 200 to plain text is
    content served without any certificate, an OPEN DOOR, not REFUSED LATE."""
    ctx = server_ctx(pki)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    def handle(c):
        first = c.recv(1, socket.MSG_PEEK)
        if first != b"\x16":
            read_head(c)
            c.sendall(ok)
            return
        s = ctx.wrap_socket(c, server_side=True)
        read_head(s)
        s.sendall(ok)
        s.close()

    srv = raw_server(handle)
    rc, rep, _ = audit(srv.port)
    p = probes(rep)["plaintext-http"]
    assert p["verdict"] == "OPEN DOOR", table(rep)
    assert p["finding"]["id"] == "plaintext-http", table(rep)
    assert "HTTP/1.1 200 OK" in p["observed"], table(rep)
    assert rc == 1, table(rep)


SSL_OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8  # OpenSSL 3; not in Python's ssl


def test_renegotiation_advice_closes_it(raw_server, pki, audit):
    """An OpenSSL server (Python's ssl) told to allow client renegotiation;
    the advice's SSL_OP_NO_RENEGOTIATION ends it."""
    def server(no_reneg):
        ctx = server_ctx(pki, version=ssl.TLSVersion.TLSv1_2)
        # OpenSSL 3 refuses a client's renegotiation unless told otherwise
        ctx.options |= SSL_OP_ALLOW_CLIENT_RENEGOTIATION
        if no_reneg:
            ctx.options |= ssl.OP_NO_RENEGOTIATION

        def handle(c):
            s = ctx.wrap_socket(c, server_side=True)
            s.settimeout(2.5)
            try:
                read_head(s)  # a renegotiation happens inside this read
            except (OSError, ssl.SSLError):
                pass
            s.close()
        return raw_server(handle)

    rc, rep, _ = audit(server(False).port)
    p = probes(rep)["renegotiation"]
    assert p["verdict"] == "OPEN DOOR", table(rep)
    assert p["finding"]["id"] == "renegotiation", table(rep)
    assert "SSL_OP_NO_RENEGOTIATION" in p["finding"]["other"]

    rc, rep, _ = audit(server(True).port)
    p = probes(rep)["renegotiation"]
    assert p["verdict"] == "PASS", table(rep)


# --------------------------------------------------------------------------
# the table: aligned, within the width, whatever the server says
# --------------------------------------------------------------------------

LONG_REASON = "Forbidden-" * 30          # one word far longer than a cell
SPACED_REASON = "Forbidden by the policy of this very long-winded server " * 4


def _long_answer_server(raw_server, pki, reason):
    """Optional client certificate; everyone gets a 403 with a long reason
    phrase: no-cert is treated like the control (a door), bad certificates are
    refused by TLS 1.3 alerts."""
    ctx = server_ctx(pki, verify=ssl.CERT_OPTIONAL)
    answer = ("HTTP/1.1 403 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
              % reason).encode()

    def handle(c):
        s = ctx.wrap_socket(c, server_side=True)
        read_head(s)
        s.sendall(answer)
        s.close()
    return raw_server(handle)


def parse_table(out):
    """-> (rows {name: (verdict column, verdict text, joined cell)}, notes
    {num: text}, lines). Rows start at column 0 with a probe name; the lines
    after a row that start with spaces belong to its HAPPENED cell."""
    lines = out.split("\n")
    head = next(i for i, l in enumerate(lines) if l.startswith("PROBE"))
    vcol = lines[head].index("VERDICT")
    hcol = lines[head].index("HAPPENED")
    rows, order, cur = {}, [], None
    i = head + 1
    while i < len(lines) and lines[i].strip():
        l = lines[i]
        if not l.startswith(" "):
            name = l[:vcol].strip()
            assert l[vcol - 2:vcol] == "  " and l[vcol] != " ", "verdict not aligned: %r" % l
            verdict = l[vcol:hcol].strip()
            rows[name] = [vcol, verdict, l[hcol:]]
            order.append(name)
            cur = name
        else:
            assert l[:hcol].strip() == "", "continuation outside its cell: %r" % l
            rows[cur][2] += " " + l[hcol:]
        i += 1
    notes = {}
    for l in lines[i:]:
        m = re.match(r"\[(\d+)\] ", l)
        if m:
            notes[int(m.group(1))] = l
    return rows, order, notes, lines


def _squash(s):
    return "".join(s.split())


@pytest.mark.parametrize("reason", [LONG_REASON, SPACED_REASON], ids=["word", "words"])
@pytest.mark.parametrize("columns", [80, None, 132])
def test_table_stays_within_the_width(sd_bin, pki, raw_server, reason, columns):
    srv = _long_answer_server(raw_server, pki, reason)
    args = ["127.0.0.1:%d" % srv.port, "--timeout", "2s"] + _files(pki)
    rc, out, err = _run(sd_bin, args, columns=columns)
    _, js, _ = _run(sd_bin, args + ["--json"])
    rep = json.loads(js)
    width = columns or 80
    assert rc == 1, out + err
    for l in out.split("\n"):
        assert len(l) <= width, "line of %d > %d columns:\n%s" % (len(l), width, out)
    rows, order, notes, _ = parse_table(out)
    assert order == [p["name"] for p in rep["probes"]], out
    for p in rep["probes"]:
        vcol, verdict, cell = rows[p["name"]]
        assert verdict.split(" [")[0] == p["verdict"], out
        # every character the server sent that the report keeps is there,
        # cut where the width says, never lost
        assert _squash(cell) == _squash(p["observed"]), (cell, p["observed"])
    # a door carries the number of its note, and each note is under the table
    refs = {int(m) for v in rows.values() for m in re.findall(r"\[(\d+)\]", v[1])}
    assert refs and refs == set(notes), out
    assert "OPEN DOOR [" in rows["no-cert"][1], out
    for label in ("nginx:", "HAProxy:", "steeldoor:"):
        assert re.search(r"^\s+%s" % label, out, re.M), out
    assert out.rstrip("\n").split("\n")[-1].startswith("result: "), out


def test_table_at_80_columns_against_steeldoor(sd_bin, pki, steeldoor, echo_backend):
    """No door: no notes, every line within 80 columns, one line per probe."""
    sd = steeldoor(target=echo_backend.target)
    rc, out, err = _run(sd_bin, ["127.0.0.1:%d" % sd.port, "--timeout", "2s"] + _files(pki),
                        columns=80)
    assert rc == 0, out + err
    assert all(len(l) <= 80 for l in out.split("\n")), out
    assert "What to change" not in out and "[1]" not in out, out
    rows, order, notes, _ = parse_table(out)
    assert len(order) == 14 and not notes, out


# --------------------------------------------------------------------------
# --cert must come from --cacert
# --------------------------------------------------------------------------

def test_cert_not_issued_by_cacert_is_refused_before_any_probe(steeldoor, echo_backend,
                                                                audit, pki):
    """Against --cacert of another CA the forgeries would borrow the wrong CA's
    name: the audit says so and stops, without a single connection."""
    sd = steeldoor(target=echo_backend.target)
    rc, rep, err = audit(sd.port, cacert=pki.other_ca)
    assert rc == 2, table(rep)
    assert rep["probes"] == [], table(rep)
    msg = rep["error"]
    assert "--cert %s" % pki.client_cert in msg and "--cacert %s" % pki.other_ca in msg, msg
    assert "was not issued by" in msg and "steeldoor-test other CA" in msg, msg
    assert msg in err
    time.sleep(0.3)
    assert sd.conn_logs() == [], sd.conn_logs()


def test_cacert_with_the_same_name_and_another_key_is_refused(audit, pki, tmp_path):
    ca_cert, ca_key = make_ca("x")
    now = _now()
    import datetime
    imp = (x509.CertificateBuilder().subject_name(pki.ca_cert_obj.subject)
           .issuer_name(pki.ca_cert_obj.subject).public_key(ca_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(days=1))
           .not_valid_after(now + datetime.timedelta(days=30))
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(ca_key, hashes.SHA256()))
    f = tmp_path / "same-name-ca.crt"
    f.write_bytes(imp.public_bytes(serialization.Encoding.PEM))
    rc, rep, _ = audit(closed_port(), cacert=f)
    assert rc == 2
    assert "was not issued by --cacert %s" % f in rep["error"], rep["error"]
    assert "another key" in rep["error"], rep["error"]


def test_control_through_an_intermediate_is_accepted(steeldoor, echo_backend, audit, certs):
    """--cert holding the leaf and its intermediate, --cacert the root: issued
    by --cacert; every probe runs and passes."""
    inter = certs.ca("audit-inter")
    leaf = certs.client("audit-leaf", cn="audit-leaf", issuer=inter, chain=[inter])
    sd = steeldoor(target=echo_backend.target)
    rc, rep, err = audit(sd.port, cert=leaf.crt, key=leaf.key)
    assert rc == 0, table(rep) + err
    for name in CERT_PROBES:
        assert probes(rep)[name]["verdict"] == "PASS", table(rep)


# --------------------------------------------------------------------------
# input files: each wrong form is named, with the command that converts it;
# that command, run as printed, gives files the auditor reads
# --------------------------------------------------------------------------

PASS = b"s3cret-pass"


@pytest.fixture(scope="module")
def forms(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("forms")
    crt = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    enc = serialization.BestAvailableEncryption(PASS)
    f = {}

    def put(name, data):
        (d / name).write_bytes(data)
        f[name] = d / name

    put("client.der", crt.public_bytes(serialization.Encoding.DER))
    put("ca.der", pki.ca_cert_obj.public_bytes(serialization.Encoding.DER))
    put("key.der", key.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    put("key-pkcs8-enc.pem", key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8, enc))
    put("key-legacy-enc.pem", key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.TraditionalOpenSSL,
                                                enc))
    put("key-enc.der", key.private_bytes(serialization.Encoding.DER,
                                         serialization.PrivateFormat.PKCS8, enc))
    put("client.p12", pkcs12.serialize_key_and_certificates(
        b"billing", key, crt, [pki.ca_cert_obj], enc))
    put("empty.pem", b"")
    return f


def _conversions(msg):
    """The shell commands a message gives (each between backquotes), with
    the passphrase supplied."""
    cmds = re.findall(r"`([^`]*)`", msg)
    assert cmds, msg
    out = []
    for cmd in cmds:
        for tool in ("openssl pkcs12 ", "openssl pkey "):
            cmd = cmd.replace(tool, tool + "-passin pass:%s " % PASS.decode())
        out.append(cmd)
    return out


# DER, as serve reads it: the auditor reads it too (it fails only at the
# closed port)
DER_CASES = {
    "der-cert": {"--cert": "client.der"},
    "der-cacert": {"--cacert": "ca.der"},
    "der-key": {"--key": "key.der"},
    "der-all": {"--cert": "client.der", "--key": "key.der", "--cacert": "ca.der"},
}


@pytest.mark.parametrize("case", sorted(DER_CASES))
def test_der_input_is_read(sd_bin, pki, forms, case):
    files = {"--cert": pki.client_cert, "--key": pki.client_key, "--cacert": pki.ca}
    for flag, name in DER_CASES[case].items():
        files[flag] = forms[name]
    args = ["127.0.0.1:%d" % closed_port(), "--timeout", "1s"] + \
        [x for kv in files.items() for x in kv]
    rc, out, err = _run(sd_bin, args)
    assert rc == 2 and "connect" in err and "refused" in err.lower(), err


# which flag gets which file, what the message must say, and the files the
# printed commands leave for (--cert, --key, --cacert), in the directory they
# run in or beside the file given ({plain}: the name with -plain before its
# extension); None: no command
INPUT_CASES = {
    "encrypted-pkcs8": ({"--key": "key-pkcs8-enc.pem"}, "holds an encrypted private key",
                        {"--key": "{dir}/key-pkcs8-enc-plain.pem"}),
    "encrypted-legacy": ({"--key": "key-legacy-enc.pem"}, "holds an encrypted private key",
                         {"--key": "{dir}/key-legacy-enc-plain.pem"}),
    "encrypted-der": ({"--key": "key-enc.der"}, "holds an encrypted private key",
                      {"--key": "{dir}/key-enc-plain.pem"}),
    "p12-cert": ({"--cert": "client.p12", "--key": "client.p12"}, "holds a PKCS#12 bundle",
                 {"--cert": "cert.pem", "--key": "key.pem"}),
    "p12-key": ({"--key": "client.p12"}, "holds a PKCS#12 bundle",
                {"--cert": "cert.pem", "--key": "key.pem"}),
    "p12-cacert": ({"--cacert": "client.p12"}, "holds a PKCS#12 bundle", {"--cacert": "ca.pem"}),
    "empty-cert": ({"--cert": "empty.pem"}, "is empty: expected a certificate", None),
    "key-as-cacert": ({"--cacert": "key.der"}, "holds a private key, not a CA certificate",
                      None),
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_input_in_the_wrong_form_is_named_with_its_conversion(sd_bin, pki, forms, tmp_path,
                                                               case):
    given, says, converted = INPUT_CASES[case]
    files = {"--cert": pki.client_cert, "--key": pki.client_key, "--cacert": pki.ca}
    for flag, name in given.items():
        files[flag] = forms[name]
    target = "127.0.0.1:%d" % closed_port()
    args = [target, "--timeout", "1s"] + [x for kv in files.items() for x in kv]
    rc, out, err = _run(sd_bin, args)
    assert rc == 2, err
    flag = sorted(given)[0] if len(given) == 1 else "--cert"
    line = err.strip().split("\n")[-1]
    assert "%s %s %s" % (flag, files[flag], says) in line, line
    if converted is None:
        return
    # the commands, run as printed (plus the passphrase), make files the
    # auditor loads: it then fails only at the closed port
    for cmd in _conversions(line):
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, timeout=30)
        assert r.returncode == 0, (cmd, r.stderr)
    for flag2, name in converted.items():
        made = name.format(dir=forms[given[flag]].parent) if "{dir}" in name else tmp_path / name
        assert Path(made).exists(), (made, line)
        if flag2 == "--key":
            assert os.stat(made).st_mode & 0o077 == 0, oct(os.stat(made).st_mode)
        files[flag2] = made
    args = [target, "--timeout", "1s"] + [x for kv in files.items() for x in kv]
    rc, out, err = _run(sd_bin, args)
    assert rc == 2 and "connect" in err and "refused" in err.lower(), err
    for flag2, name in converted.items():
        if "{dir}" in name:
            os.unlink(files[flag2])


def test_swapped_cert_and_key_name_both_files(sd_bin, pki):
    rc, out, err = _run(sd_bin, ["127.0.0.1:%d" % closed_port()] +
                        _files(pki, cert=pki.client_key, key=pki.client_cert))
    assert rc == 2
    assert ("--cert %s holds a private key, not a certificate: are --cert and --key swapped?"
            % pki.client_key) in err, err


def test_key_of_another_certificate_names_both_files(sd_bin, pki):
    rc, out, err = _run(sd_bin, ["127.0.0.1:%d" % closed_port()] +
                        _files(pki, key=pki.server_key))
    assert rc == 2
    assert ("--key %s: this private key does not match the certificate in --cert %s"
            % (pki.server_key, pki.client_cert)) in err, err


def test_encrypted_key_never_prompts_on_the_terminal(sd_bin, pki, forms):
    """With a controlling terminal, where OpenSSL's default would ask for the
    passphrase: the auditor refuses at once instead."""
    args = [str(sd_bin), "audit", "127.0.0.1:%d" % closed_port(), "--timeout", "1s"] + \
        [str(x) for x in _files(pki, key=forms["key-pkcs8-enc.pem"])]
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(args[0], args)
        finally:
            os._exit(127)
    out, deadline, status = b"", time.monotonic() + 10, None
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                out += chunk
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert status is not None, "the auditor waited on the terminal: %r" % out
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 2, (status, out)
    assert b"pass phrase" not in out.lower() and b"encrypted" in out, out


# --------------------------------------------------------------------------
# docs/audit.md: its sample reports against steeldoor are what the auditor
# prints against a real steeldoor
# --------------------------------------------------------------------------

def doc_sample(name):
    """The ```text block after <!-- audit-sample: NAME --> in docs/audit.md."""
    text = DOC.read_text()
    m = re.search(r"<!-- audit-sample: %s -->\s*```text\n(.*?)```" % re.escape(name), text,
                  re.S)
    assert m, "docs/audit.md has no sample %r" % name
    return m.group(1)


@pytest.mark.parametrize("mode", ["l4", "http"])
def test_docs_sample_reports_match_a_real_steeldoor(sd_bin, pki, steeldoor, header_echo,
                                                    mode):
    """`serve` in L4 mode passes the forged headers on (identity-headers is an
    OPEN DOOR, with its note); in HTTP mode every probe passes. Sessions never
    resume under the other name in either. The samples in the docs are these
    runs at 80 columns, with the port written as 8443."""
    extra = ["--http"] if mode == "http" else []
    sd = steeldoor(target="127.0.0.1:%d" % header_echo.port, extra=extra)
    rc, out, err = _run(sd_bin, ["127.0.0.1:%d" % sd.port] + _files(pki) +
                        ["--servername", "localhost", "--servername", "other.example",
                         "--http"], columns=80)
    assert rc == (1 if mode == "l4" else 0), out + err
    got = out.replace("127.0.0.1:%d" % sd.port, "127.0.0.1:8443")
    want = doc_sample("steeldoor-" + mode)
    assert got == want, "docs/audit.md sample steeldoor-%s differs from a real run:\n%s" % (
        mode, "\n".join(difflib.unified_diff(want.split("\n"), got.split("\n"), "docs",
                                            "real run", lineterm="")))
