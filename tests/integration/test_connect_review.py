"""Client mode: regressions from an adversarial review. Each test tries the
attack or the mistake and checks it is refused:
- a resumed session, or a warm connection, must not outlive the server
  certificate's notAfter (a full handshake would refuse it);
- a reload that changes listen-mode changes the socket file's mode;
- warm connections never take the worker's last connection place;
- the log's SNI is what was sent (nothing, for an address);
- an IPv4-mapped IPv6 listen address is refused with its fix."""
import datetime
import os
import signal
import socket
import ssl
import stat
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import _find_ca_key, _now, _write_cert, _write_key, make_leaf
from sdlib import Steeldoor, free_port, run
from test_connect import connect_args, conn_lines, roundtrip, server  # noqa: F401
from test_connect_more import pyservers  # noqa: F401 (a fixture)


@pytest.fixture
def connects(sd_bin, tmp_path):
    made = []

    def make(args, wait=True):
        sd = Steeldoor(sd_bin, args, tmp_path, name="conn%d" % len(made))
        made.append(sd)
        listen = args[args.index("--listen") + 1] if "--listen" in args else None
        if wait and listen and not listen.startswith("unix:"):
            sd.start(wait_ports=[("127.0.0.1", int(listen.rsplit(":", 1)[1]))])
        else:
            sd.start()
        return sd

    yield make
    for sd in made:
        if sd.proc is not None and sd.proc.poll() is None:
            sd.stop(timeout=10, expect_rc=None)
        sd.kill()
        sd.close_files()


def short_lived_server(pki, tmp_path, seconds):
    """A server certificate (localhost, 127.0.0.1) valid for `seconds` more."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = _find_ca_key(pki.dir, ca_cert)
    cert, key = make_leaf(ca_cert, ca_key, "short", eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                          dns=["localhost"], ips=["127.0.0.1"],
                          not_before=_now() - datetime.timedelta(minutes=5),
                          not_after=_now() + datetime.timedelta(seconds=seconds))
    crt, k = tmp_path / "short.crt", tmp_path / "short.key"
    _write_cert(crt, cert)
    _write_key(k, key)
    return crt, k, cert.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp()


def wait_until(t):
    while time.time() < t:
        time.sleep(0.1)


def test_resumed_session_does_not_outlive_the_server_certificate(pki, pyservers, connects,
                                                                 tmp_path):
    crt, key, end = short_lived_server(pki, tmp_path, 5)
    srv = pyservers(crt, key, ssl.CERT_REQUIRED, ca=str(pki.ca))
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port,
                               ["--server-name", "localhost"]))
    before = len(conn_lines(sd, timeout=1.0))  # the start-up probe's line
    assert roundtrip(port) == b"hello-through-connect\n"
    assert roundtrip(port) == b"hello-through-connect\n"
    lines = new_lines(sd, before, 2)
    assert lines[-1].get("resumed") is True, lines
    wait_until(end + 1.2)
    # The session is within session-lifetime (5m), but the certificate it
    # verified has expired: no resumption; the full handshake refuses it.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"x")
        assert s.recv(10) == b""
    last = new_lines(sd, before + 2, 1)[-1]
    assert last["result"] == "error" and last["reason"] == "certificate_expired", last
    assert last.get("resumed") is not True, last


def new_lines(sd, before, n, timeout=5.0):
    """The conn lines after the first `before`, once there are n of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in sd.logs() if l.get("event") == "conn"][before:]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines


def test_warm_connection_not_handed_out_past_server_notafter(pki, pyservers, connects,
                                                             tmp_path):
    crt, key, end = short_lived_server(pki, tmp_path, 4)
    srv = pyservers(crt, key, ssl.CERT_REQUIRED, ca=str(pki.ca))
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port,
                               ["--server-name", "localhost", "--warm", "1",
                                "--warm-max-age", "1m", "--session-lifetime", "0"]))
    wait_until(end + 1.5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"x")
        assert s.recv(10) == b""
    time.sleep(0.3)
    lines = [l for l in conn_lines(sd) if l.get("peer") != "-"]
    assert lines, sd.logs()
    assert lines[-1]["result"] == "error" and lines[-1]["reason"] == "certificate_expired", lines
    assert not lines[-1].get("warm"), lines[-1]


def test_reload_changes_unix_socket_mode(pki, server, connects, tmp_path):
    path = str(tmp_path / "c.sock")
    cfg = tmp_path / "c.yaml"

    def write(mode):
        cfg.write_text(
            "workers: 1\nconnectors:\n  - name: u\n    listen: unix:%s\n"
            "    target: 127.0.0.1:%d\n    cert: %s\n    key: %s\n    cacert: %s\n"
            "    server-name: localhost\n    listen-mode: \"%s\"\n"
            % (path, server.port, pki.client_cert, pki.client_key, pki.ca, mode))

    write("0660")
    sd = connects(["serve", "--config", str(cfg)], wait=False)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    write("0600")
    sd.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while stat.S_IMODE(os.stat(path).st_mode) != 0o600 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"ping\n")
        assert s.recv(5) == b"ping\n"


def test_warm_never_takes_the_last_place(pki, pyservers, connects):
    srv = pyservers(pki.server_cert, pki.server_key, ssl.CERT_REQUIRED, ca=str(pki.ca))
    port = free_port()
    connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port,
                          ["--server-name", "localhost", "--warm", "4", "--max-conns", "2"]))
    time.sleep(0.5)
    for _ in range(3):
        assert roundtrip(port) == b"hello-through-connect\n"


def test_log_sni_absent_for_an_address_target(pki, pyservers, connects):
    srv = pyservers(pki.server_cert, pki.server_key, ssl.CERT_REQUIRED, ca=str(pki.ca))
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port))
    assert roundtrip(port) == b"hello-through-connect\n"
    line = conn_lines(sd)[0]
    assert line["result"] == "ok", line
    assert "sni" not in line, line


def test_ipv4_mapped_listen_refused(pki, sd_bin):
    r = run([sd_bin] + connect_args(pki, "[::ffff:127.0.0.1]:%d" % free_port(),
                                    "localhost:1"), timeout=10)
    assert r.returncode != 0
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert "IPv4-mapped" in err and "127.0.0.1:PORT" in err, err
