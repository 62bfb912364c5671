"""Client mode (issue 15), the rest of the issue's test list: expired server
certificate, a server that asks for but does not require a client
certificate, the no-request refusal on TLS 1.2 too, a connector CRL, nginx
with ssl_verify_client on as the server, and rotation of the client
certificate (new connections present the new one, open ones are kept)."""
import datetime
import os
import shutil
import signal
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import (atomic_write, build_crl, crl_pem, issue_cert, root_issuer, sighup_reload,
                      wait_generation)
from sdlib import free_port, recv_exact
from test_connect import connect_args, conn_lines, refused, roundtrip, connects, server  # noqa: F401

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


class PyServer:
    """A TLS echo server in a thread (Python ssl), recording the client
    certificate each connection presented (None when it presented none)."""

    def __init__(self, cert, key, verify_mode, ca=None, max_version=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.verify_mode = verify_mode
        if ca:
            self.ctx.load_verify_locations(ca)
        if max_version:
            self.ctx.maximum_version = max_version
        self.peers = []
        self.versions = []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.stop = False
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
            self.peers.append(t.getpeercert(binary_form=True))
            self.versions.append(t.version())
            t.settimeout(10)
            while True:
                data = t.recv(4096)
                if not data:
                    break
                t.sendall(data)
            t.close()
        except (ssl.SSLError, OSError):
            c.close()

    def close(self):
        self.stop = True
        self.ls.close()


@pytest.fixture
def pyservers():
    made = []

    def make(*a, **kw):
        s = PyServer(*a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def serial_of(der):
    return x509.load_der_x509_certificate(der).serial_number


def test_expired_server_certificate_refused(pki, pyservers, connects):
    crt, key = pki.expired_server
    srv = pyservers(crt, key, ssl.CERT_REQUIRED, ca=pki.ca)
    refused(pki, connects, "127.0.0.1:%d" % srv.port, "certificate_expired",
            ["--server-name", "localhost"])


def test_server_that_requests_but_does_not_require_a_cert(pki, pyservers, connects):
    """A server with CERT_OPTIONAL asks for a client certificate without
    requiring one. That is not the back door server_did_not_request_client_cert
    is about: the server asked, so steeldoor presents its certificate and the
    connection works (whether the server enforces it is the server's side)."""
    srv = pyservers(pki.server_cert, pki.server_key, ssl.CERT_OPTIONAL, ca=pki.ca)
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port,
                               ["--server-name", "localhost"]), wait=("127.0.0.1", port))
    assert roundtrip(port) == b"hello-through-connect\n"
    listening = [l for l in sd.logs() if l.get("event") == "listening"][0]
    assert listening["mode"] == "connect" and listening["cert"] == str(pki.client_cert)
    assert listening["server_name"] == "localhost" and listening["verify_rules"] == 0
    assert "client_cert_required" not in listening, listening
    client = x509.load_pem_x509_certificate(open(pki.client_cert, "rb").read())
    assert srv.peers and srv.peers[0] is not None
    assert serial_of(srv.peers[0]) == client.serial_number
    assert conn_lines(sd)[0]["result"] == "ok"


@pytest.mark.parametrize("ver", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_no_request_refused_on_each_version(pki, pyservers, connects, ver):
    srv = pyservers(pki.server_cert, pki.server_key, ssl.CERT_NONE, max_version=ver)
    line = refused(pki, connects, "127.0.0.1:%d" % srv.port,
                   "server_did_not_request_client_cert", ["--server-name", "localhost"])
    # nothing was asked for, so the log says no certificate went out
    assert "client_cert_serial" not in line and "client_cert_subject" not in line, line
    # the refusal happened on the version we forced, not a fallback
    deadline = time.monotonic() + 2
    while not srv.versions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.versions and srv.versions[0] == {
        ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[ver]


def test_connector_crl_revokes_the_server(pki, server, connects, tmp_path):
    issuer = root_issuer(pki)
    srv_cert = x509.load_pem_x509_certificate(open(pki.server_cert, "rb").read())
    crl = tmp_path / "revoked.crl"
    crl.write_bytes(crl_pem(build_crl(issuer, revoked=[srv_cert])))
    refused(pki, connects, "127.0.0.1:%d" % server.port, "certificate_revoked",
            ["--server-name", "localhost", "--crl", str(crl)])


def test_connector_crl_not_revoking_admits(pki, server, connects, tmp_path):
    crl = tmp_path / "empty.crl"
    crl.write_bytes(crl_pem(build_crl(root_issuer(pki))))
    port = free_port()
    connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % server.port,
                          ["--server-name", "localhost", "--crl", str(crl)]),
             wait=("127.0.0.1", port))
    assert roundtrip(port) == b"hello-through-connect\n"


# --------------------------------------------------------------------------
# nginx (stream module, ssl_verify_client on) as the server
# --------------------------------------------------------------------------

def wait_port(port, proc, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited rc=%s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("%s did not listen on %d" % (what, port))


@pytest.mark.skipif(NGINX is None or not os.path.exists(STREAM_MODULE),
                    reason="nginx with the stream module not installed")
def test_end_to_end_through_nginx_verify_client_on(pki, echo_backend, connects, tmp_path):
    import subprocess
    d = tmp_path / "nginx"
    d.mkdir()
    port = free_port()
    log = d / "access.log"
    conf = d / "nginx.conf"
    conf.write_text("""
load_module %(mod)s;
worker_processes 1;
error_log %(d)s/error.log;
pid %(d)s/nginx.pid;
events { worker_connections 64; }
stream {
  log_format who '$ssl_client_verify|$ssl_client_s_dn|$ssl_client_serial|$bytes_received';
  access_log %(log)s who;
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate %(crt)s;
    ssl_certificate_key %(key)s;
    ssl_client_certificate %(ca)s;
    ssl_verify_client on;
    proxy_pass %(target)s;
  }
}
""" % {"mod": STREAM_MODULE, "d": d, "log": log, "port": port, "crt": pki.server_cert,
       "key": pki.server_key, "ca": pki.ca, "target": echo_backend.target})
    out = open(d / "stdout.log", "wb")
    p = subprocess.Popen([NGINX, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log"),
                          "-g", "daemon off;"], stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT)
    try:
        wait_port(port, p, "nginx")
        lport = free_port()
        sd = connects(connect_args(pki, "127.0.0.1:%d" % lport, "127.0.0.1:%d" % port,
                                   ["--server-name", "localhost"]),
                      wait=("127.0.0.1", lport))
        assert roundtrip(lport, b"through-nginx\n") == b"through-nginx\n"
        assert conn_lines(sd)[0]["result"] == "ok"
        client = x509.load_pem_x509_certificate(open(pki.client_cert, "rb").read())
        deadline = time.monotonic() + 5
        ours = []
        while not ours and time.monotonic() < deadline:
            ours = [l for l in conn_lines(sd) if l.get("bytes_in")]
            time.sleep(0.05)
        assert ours and int(ours[0]["client_cert_serial"], 16) == client.serial_number, ours
        # nginx writes the stream log line when the session ends. The port
        # probes have lines of their own with no bytes: wait_port's (TCP only,
        # NONE) and the connector's start-up wait (a caller that sent nothing)
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            lines = [l for l in text.splitlines() if not l.endswith("|0")]
            if lines:
                break
            time.sleep(0.05)
        assert lines, text
        line = lines[0]
        verify, dn, serial, nbytes = line.split("|")
        assert verify == "SUCCESS", line
        cn = client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        assert dn and (not cn or cn[0].value in dn), line
        assert int(serial, 16) == client.serial_number, line
        assert int(nbytes) == len(b"through-nginx\n"), line
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        out.close()


# --------------------------------------------------------------------------
# rotation
# --------------------------------------------------------------------------

def rotation_setup(pki, pyservers, connects, tmp_path, extra=()):
    issuer = root_issuer(pki)
    d = tmp_path / "rot"
    old = issue_cert(d, "old", issuer, uris=("spiffe://example.org/billing",))
    new = issue_cert(d, "new", issuer, uris=("spiffe://example.org/billing",))
    live_crt, live_key = d / "live.crt", d / "live.key"
    shutil.copy(old.crt, live_crt)
    shutil.copy(old.keyfile, live_key)
    os.chmod(live_key, 0o600)
    srv = pyservers(pki.server_cert, pki.server_key, ssl.CERT_REQUIRED, ca=pki.ca)
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port,
                               ["--server-name", "localhost"] + list(extra),
                               cert=str(live_crt), key=str(live_key)),
                  wait=("127.0.0.1", port))
    return old, new, live_crt, live_key, srv, port, sd


def swap_in(new, live_crt, live_key):
    # key first, then the certificate: a reload between the two fails
    # (mismatch) and keeps the old context, it never presents a mixed pair
    atomic_write(live_key, new.keyfile.read_bytes())
    os.chmod(live_key, 0o600)
    atomic_write(live_crt, new.crt.read_bytes())


def test_rotation_new_cert_for_new_connections_open_kept(pki, pyservers, connects, tmp_path):
    old, new, live_crt, live_key, srv, port, sd = rotation_setup(
        pki, pyservers, connects, tmp_path, ["--no-watch"])
    opened = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        opened.sendall(b"before\n")
        assert recv_exact(opened, 7) == b"before\n"
        # a second one resumes: a session under the old certificate is cached
        assert roundtrip(port, b"again\n") == b"again\n"
        assert all(serial_of(p) == old.cert.serial_number for p in srv.peers)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(l.get("resumed") for l in conn_lines(sd)):
            time.sleep(0.05)
        assert any(l.get("resumed") for l in conn_lines(sd)), conn_lines(sd)
        swap_in(new, live_crt, live_key)
        sighup_reload(sd, 1)
        n = len(srv.peers)
        # not resumed from the old session: that would be the old identity
        assert roundtrip(port, b"after\n") == b"after\n"
        assert len(srv.peers) == n + 1
        assert serial_of(srv.peers[-1]) == new.cert.serial_number
        # the log line says which certificate each connection presented
        # (hex, compared as numbers: a leading zero is the printer's choice)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(conn_lines(sd)) < 3:
            time.sleep(0.05)
        lines = conn_lines(sd)
        got = [int(l.get("client_cert_serial", "-1"), 16) for l in lines]
        assert got[-2:] == [old.cert.serial_number, new.cert.serial_number], lines
        assert set(got) <= {old.cert.serial_number, new.cert.serial_number}, lines
        assert lines[-1]["client_cert_subject"] == "CN=new", lines[-1]
        # the connection opened before the reload still carries bytes
        opened.sendall(b"still-open\n")
        assert recv_exact(opened, 11) == b"still-open\n"
    finally:
        opened.close()


def test_rotation_under_load_by_the_watcher(pki, pyservers, connects, tmp_path):
    """Callers keep connecting while the file watcher picks up the renewed
    certificate: none fails, and once the reload is in, new ones present
    the new certificate."""
    old, new, live_crt, live_key, srv, port, sd = rotation_setup(
        pki, pyservers, connects, tmp_path)
    errors, done = [], []

    def load():
        i = 0
        while not done:
            payload = b"load-%d\n" % i
            try:
                if roundtrip(port, payload) != payload:
                    errors.append("short echo %d" % i)
            except OSError as e:
                errors.append("%d: %r" % (i, e))
            i += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        swap_in(new, live_crt, live_key)
        wait_generation(sd, 2, 1, timeout=10)
        time.sleep(0.3)
    finally:
        done.append(1)
        for t in threads:
            t.join(10)
    assert not errors, errors[:5]
    n = len(srv.peers)
    assert roundtrip(port, b"last\n") == b"last\n"
    assert len(srv.peers) == n + 1 and serial_of(srv.peers[-1]) == new.cert.serial_number
    serials = {serial_of(p) for p in srv.peers}
    assert serials == {old.cert.serial_number, new.cert.serial_number}


def test_connector_crl_reload_revokes_the_server(pki, server, connects, tmp_path):
    issuer = root_issuer(pki)
    crl = tmp_path / "live.crl"
    crl.write_bytes(crl_pem(build_crl(issuer, number=1)))
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % server.port,
                               ["--server-name", "localhost", "--crl", str(crl), "--no-watch"]),
                  wait=("127.0.0.1", port))
    assert roundtrip(port) == b"hello-through-connect\n"
    srv_cert = x509.load_pem_x509_certificate(open(pki.server_cert, "rb").read())
    atomic_write(crl, crl_pem(build_crl(issuer, revoked=[srv_cert], number=2)))
    sighup_reload(sd, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"must-not-arrive\n")
        assert s.recv(100) == b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        bad = [l for l in conn_lines(sd) if l["result"] == "error"]
        if bad:
            break
        time.sleep(0.05)
    assert bad and bad[-1]["reason"] == "certificate_revoked", conn_lines(sd)


# --------------------------------------------------------------------------
# unix socket file at shutdown
# --------------------------------------------------------------------------

def start_unix(pki, connects, server, path):
    sd = connects(connect_args(pki, "unix:" + path, "127.0.0.1:%d" % server.port,
                               ["--server-name", "localhost"]))
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(path)
    return sd


def test_unix_socket_file_removed_at_shutdown(pki, server, connects, tmp_path):
    path = str(tmp_path / "gone.sock")
    sd = start_unix(pki, connects, server, path)
    sd.stop(timeout=10)
    assert not os.path.exists(path)


def test_unix_socket_file_not_ours_is_left(pki, server, connects, tmp_path):
    """Another socket put at the path after start is not removed at stop."""
    path = str(tmp_path / "swapped.sock")
    sd = start_unix(pki, connects, server, path)
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX)
    try:
        other.bind(path)
        sd.stop(timeout=10)
        assert os.path.exists(path)
    finally:
        other.close()
