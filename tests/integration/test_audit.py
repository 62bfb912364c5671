"""`steeldoor audit` finds the wooden back door: against steeldoor itself, real
nginx and real HAProxy, configured safely and with the classic mistakes."""
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import sdlib
from sdlib import closed_port, free_port, run, tcp_accepts



def _which(name):
    p = shutil.which(name) or "/usr/sbin/" + name
    return p if os.access(p, os.X_OK) else None


NGINX = _which("nginx")
HAPROXY = _which("haproxy")

DOORS = ("OPEN DOOR", "REFUSED LATE")
CERT_PROBES = ("no-cert", "self-signed", "unknown-ca", "expired", "not-yet-valid",
               "serverauth-eku", "forged-signature")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _audit_wired(sd_bin):
    """Until main.c dispatches `audit`, the binary says "unknown command":
    skip rather than fail everyone's `make test` in between."""
    r = run([sd_bin, "audit", "--help"], timeout=30)
    if r.returncode != 0 and b"unknown command" in r.stderr:
        pytest.skip("`steeldoor audit` is not dispatched by src/main.c yet")


@pytest.fixture
def audit(sd_bin, pki):
    """audit(port, *extra, timeout=...) -> (rc, report dict, stderr)."""
    def go(port, *extra, host="127.0.0.1", cert=None, key=None, wall=90):
        args = [sd_bin, "audit", "%s:%d" % (host, port), "--cacert", pki.ca,
                "--cert", cert or pki.client_cert, "--key", key or pki.client_key,
                "--json", "--timeout", "2s"] + list(extra)
        r = run(args, timeout=wall)
        err = r.stderr.decode(errors="replace")
        assert not any(p in err for p in sdlib.SAN_PATTERNS), err
        try:
            rep = json.loads(r.stdout.decode())
        except ValueError:
            raise AssertionError("audit printed no JSON (rc=%d)\nstdout:%s\nstderr:%s"
                                 % (r.returncode, r.stdout.decode(errors="replace"), err))
        assert rep["exit_status"] == r.returncode, rep
        return r.returncode, rep, err
    return go


def verdicts(rep):
    return {p["name"]: p["verdict"] for p in rep["probes"]}


def table(rep):
    return "\n".join("%-17s %-15s %s" % (p["name"], p["verdict"], p["observed"])
                     for p in rep["probes"])


def wait_port(port, proc, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited during startup rc=%s" % (what, proc.returncode))
        if tcp_accepts("127.0.0.1", port, timeout=0.3):
            return
        time.sleep(0.05)
    raise AssertionError("%s did not listen on %d" % (what, port))


class HeaderEcho:
    """HTTP backend that answers every GET with the request's headers."""

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = ("ECHO %s\n%s" % (self.path, self.headers)).encode("latin-1")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def header_echo():
    b = HeaderEcho()
    yield b
    b.close()


class Proc:
    """A peer server (nginx, haproxy) started as its own foreground process."""

    def __init__(self, args, log):
        self.log = log
        self.f = open(log, "wb")
        self.p = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                  stdout=self.f, stderr=subprocess.STDOUT)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.f.close()


@pytest.fixture
def peers():
    made = []

    def start(args, log):
        pr = Proc(args, log)
        made.append(pr)
        return pr

    yield start
    for pr in made:
        pr.stop()


# --------------------------------------------------------------------------
# steeldoor
# --------------------------------------------------------------------------

def test_steeldoor_has_no_door(steeldoor, echo_backend, audit):
    sd = steeldoor(target=echo_backend.target)
    rc, rep, _ = audit(sd.port)
    v = verdicts(rep)
    assert rc == 0, table(rep)
    assert rep["result"].startswith("no open door"), rep
    # without two --servername and without --http these two cannot tell
    undetermined = {"sni-resumption", "identity-headers"}
    for name, verdict in v.items():
        want = "NOT DETERMINED" if name in undetermined else "PASS"
        assert verdict == want, "%s: %s\n%s" % (name, verdict, table(rep))
    for name in ("control",) + CERT_PROBES + ("tls1.0", "tls1.1", "plaintext-http",
                                              "renegotiation"):
        assert name in v, table(rep)
    assert rep["tls_version"] == "TLSv1.3"


def test_steeldoor_refuses_by_alert(steeldoor, echo_backend, audit):
    """Against steeldoor each refused certificate is refused by TLS alert,
    never by data after the handshake."""
    sd = steeldoor(target=echo_backend.target)
    rc, rep, _ = audit(sd.port)
    assert rc == 0
    for p in rep["probes"]:
        if p["name"] in CERT_PROBES:
            assert "alert" in p["observed"], table(rep)


def test_steeldoor_sni_resumption_is_determined(steeldoor, echo_backend, audit):
    # steeldoor binds each session to the SNI it was made under (the session
    # id context includes the name), so a session never resumes under another
    # name; the auditor's positive control resumes under the same name.
    sd = steeldoor(target=echo_backend.target, workers=2)
    rc, rep, _ = audit(sd.port, "--servername", "localhost", "--servername", "other.example")
    v = verdicts(rep)
    assert v["sni-resumption"] == "PASS", table(rep)
    for name, verdict in v.items():
        if name != "identity-headers":
            assert verdict == "PASS", "%s: %s\n%s" % (name, verdict, table(rep))
    assert rc == 0


def test_table_output(sd_bin, pki, steeldoor, echo_backend):
    sd = steeldoor(target=echo_backend.target)
    r = run([sd_bin, "audit", "127.0.0.1:%d" % sd.port, "--cacert", pki.ca,
             "--cert", pki.client_cert, "--key", pki.client_key, "--timeout", "2s"],
            timeout=90)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "PROBE" in out and "VERDICT" in out
    assert "no-cert" in out and "PASS" in out
    assert "result: no open door" in out


# --------------------------------------------------------------------------
# could not run: exit 2
# --------------------------------------------------------------------------

def test_unreachable_port(audit):
    rc, rep, err = audit(closed_port())
    assert rc == 2
    assert rep["error"] and "refused" in rep["error"].lower(), rep
    assert "steeldoor audit:" in err
    assert verdicts(rep) == {"control": "NOT DETERMINED"}


def test_silent_endpoint_times_out(audit):
    """A hostile endpoint that accepts TCP and never answers: exit 2, in time."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        t0 = time.monotonic()
        rc, rep, _ = audit(srv.getsockname()[1], wall=30)
        assert rc == 2
        assert "timed out" in rep["error"], rep
        assert time.monotonic() - t0 < 15
    finally:
        srv.close()


@pytest.mark.parametrize("which", ["expired", "serverauth"])
def test_control_refused(steeldoor, echo_backend, audit, pki, which):
    """The control must get in; a certificate the endpoint refuses is exit 2.
    Issued by --cacert but expired or serverAuth-only: the auditor leaves dates
    and key usage to the server (that is how they are tested on their own,
    docs/audit.md), and steeldoor refuses it. (A control that --cacert did not
    issue is refused before any probe: test_audit_explain.py.)"""
    sd = steeldoor(target=echo_backend.target)
    crt, key = getattr(pki, which)
    rc, rep, _ = audit(sd.port, cert=crt, key=key)
    assert rc == 2, table(rep)
    assert "valid certificate" in rep["error"], rep
    assert [p["name"] for p in rep["probes"]] == ["control"], table(rep)


@pytest.mark.parametrize("args", [
    [],                                            # no target
    ["127.0.0.1"],                                 # no port
    ["127.0.0.1:0"],                               # bad port
    ["127.0.0.1:443", "--timeout", "abc"],
    ["127.0.0.1:443", "--bogus"],
])
def test_bad_arguments(sd_bin, pki, args):
    r = run([sd_bin, "audit"] + args + ["--cacert", pki.ca, "--cert", pki.client_cert,
                                        "--key", pki.client_key], timeout=30)
    assert r.returncode == 2, r.stderr
    assert b"steeldoor audit:" in r.stderr


def test_missing_or_mismatched_files(sd_bin, pki):
    r = run([sd_bin, "audit", "127.0.0.1:1", "--cacert", pki.ca, "--cert", pki.client_cert],
            timeout=30)
    assert r.returncode == 2
    r = run([sd_bin, "audit", "127.0.0.1:1", "--cacert", pki.ca, "--cert", pki.client_cert,
             "--key", pki.server_key], timeout=30)
    assert r.returncode == 2
    assert b"does not match" in r.stderr


def test_help(sd_bin):
    r = run([sd_bin, "audit", "--help"], timeout=30)
    assert r.returncode == 0
    assert b"usage: steeldoor audit" in r.stdout


# --------------------------------------------------------------------------
# nginx (http, ssl on a free loopback port, its own process)
# --------------------------------------------------------------------------

def start_nginx(peers, pki, tmp_path, verify, port):
    d = tmp_path / ("nginx-" + verify)
    d.mkdir()
    conf = d / "nginx.conf"
    conf.write_text("""
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
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate %(crt)s;
    ssl_certificate_key %(key)s;
    ssl_client_certificate %(ca)s;
    ssl_verify_client %(verify)s;
    location / { return 200 "hello $ssl_client_verify\\n"; }
  }
}
""" % {"d": d, "port": port, "crt": pki.server_cert, "key": pki.server_key, "ca": pki.ca,
       "verify": verify})
    pr = peers([NGINX, "-p", d, "-c", conf, "-e", d / "error.log", "-g", "daemon off;"],
               d / "stdout.log")
    wait_port(port, pr.p, "nginx")
    return pr


needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not installed "
                                 "(scripts/deps.sh bench)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed "
                                   "(scripts/deps.sh bench)")


@needs_nginx
def test_nginx_verify_optional_no_cert_is_open(peers, pki, tmp_path, audit):
    port = free_port()
    start_nginx(peers, pki, tmp_path, "optional", port)
    rc, rep, _ = audit(port)
    v = verdicts(rep)
    assert rc == 1, table(rep)
    assert v["control"] == "PASS"
    assert v["no-cert"] == "OPEN DOOR", table(rep)
    assert "200" in [p for p in rep["probes"] if p["name"] == "no-cert"][0]["observed"]
    # bad certificates finish the handshake too and get nginx's 400 afterwards
    for name in CERT_PROBES[1:]:
        assert v[name] == "REFUSED LATE", table(rep)


@needs_nginx
def test_nginx_verify_on_refuses_late(peers, pki, tmp_path, audit):
    """`ssl_verify_client on` finishes the handshake and answers 400: a door."""
    port = free_port()
    start_nginx(peers, pki, tmp_path, "on", port)
    rc, rep, _ = audit(port)
    v = verdicts(rep)
    assert rc == 1, table(rep)
    assert v["control"] == "PASS"
    assert v["no-cert"] == "REFUSED LATE", table(rep)
    no_cert = [p for p in rep["probes"] if p["name"] == "no-cert"][0]
    assert "handshake completed" in no_cert["observed"] and "400" in no_cert["observed"]
    for name in CERT_PROBES:
        assert v[name] == "REFUSED LATE", table(rep)
    assert "OPEN DOOR" not in [v[n] for n in CERT_PROBES]
    # nginx answers plain HTTP on its TLS port ("400 The plain HTTP request...")
    assert v["plaintext-http"] == "REFUSED LATE", table(rep)
    assert v["tls1.0"] == "PASS" and v["tls1.1"] == "PASS"
    assert v["renegotiation"] == "PASS"


# --------------------------------------------------------------------------
# HAProxy (mode http, its own process)
# --------------------------------------------------------------------------

def start_haproxy(peers, pki, tmp_path, verify, port, backend_port, sanitize=True):
    d = tmp_path / ("haproxy-" + verify + ("" if sanitize else "-raw"))
    d.mkdir()
    pem = d / "server.pem"
    pem.write_bytes(pki.server_cert.read_bytes() + pki.server_key.read_bytes())
    pem.chmod(0o600)
    rules = ""
    if sanitize:
        # the safe way: drop whatever the client says, then set the real values
        rules = """
  http-request del-header X-Forwarded-Client-Cert
  http-request del-header X-SSL-Client-Cert
  http-request del-header Client-Cert
  http-request del-header X-SSL-Client-Verify
  http-request set-header X-SSL-Client-S-DN %{+Q}[ssl_c_s_dn]
"""
    cfg = d / "haproxy.cfg"
    cfg.write_text("""
global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:%(port)d ssl crt %(pem)s ca-file %(ca)s verify %(verify)s
%(rules)s
  default_backend be
backend be
  server s1 127.0.0.1:%(bport)d
""" % {"port": port, "pem": pem, "ca": pki.ca, "verify": verify, "rules": rules,
       "bport": backend_port})
    pr = peers([HAPROXY, "-db", "-f", cfg], d / "haproxy.log")
    wait_port(port, pr.p, "haproxy")
    return pr


@needs_haproxy
def test_haproxy_verify_required_is_safe(peers, pki, tmp_path, audit, header_echo):
    port = free_port()
    start_haproxy(peers, pki, tmp_path, "required", port, header_echo.port)
    rc, rep, _ = audit(port, "--http")
    v = verdicts(rep)
    assert rc == 0, table(rep)
    for name, verdict in v.items():
        want = "NOT DETERMINED" if name == "sni-resumption" else "PASS"
        assert verdict == want, "%s: %s\n%s" % (name, verdict, table(rep))
    assert "removed or replaced" in [p for p in rep["probes"]
                                     if p["name"] == "identity-headers"][0]["observed"]


@needs_haproxy
def test_haproxy_verify_optional_no_cert_is_open(peers, pki, tmp_path, audit, header_echo):
    port = free_port()
    start_haproxy(peers, pki, tmp_path, "optional", port, header_echo.port)
    rc, rep, _ = audit(port, "--http")
    v = verdicts(rep)
    assert rc == 1, table(rep)
    assert v["no-cert"] == "OPEN DOOR", table(rep)
    # a certificate that is present but bad is still refused in the handshake
    for name in CERT_PROBES[1:]:
        assert v[name] == "PASS", table(rep)
    assert [n for n, x in v.items() if x in DOORS] == ["no-cert"], table(rep)


@needs_haproxy
def test_haproxy_forwarding_forged_headers_is_open(peers, pki, tmp_path, audit, header_echo):
    port = free_port()
    start_haproxy(peers, pki, tmp_path, "required", port, header_echo.port, sanitize=False)
    rc, rep, _ = audit(port, "--http")
    v = verdicts(rep)
    assert rc == 1, table(rep)
    assert v["identity-headers"] == "OPEN DOOR", table(rep)
    obs = [p for p in rep["probes"] if p["name"] == "identity-headers"][0]["observed"]
    assert "X-SSL-Client-S-DN" in obs
    assert [n for n, x in v.items() if x in DOORS] == ["identity-headers"], table(rep)


@needs_haproxy
def test_http_without_echo_is_not_determined(peers, pki, tmp_path, audit):
    """--http against a backend that echoes nothing cannot tell: NOT DETERMINED."""
    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        port = free_port()
        start_haproxy(peers, pki, tmp_path, "required", port, srv.server_address[1],
                      sanitize=False)
        rc, rep, _ = audit(port, "--http")
        assert verdicts(rep)["identity-headers"] == "NOT DETERMINED", table(rep)
        assert rc == 0, table(rep)
    finally:
        srv.shutdown()
        srv.server_close()
