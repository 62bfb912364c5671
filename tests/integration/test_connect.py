"""Client mode (issue 15): plaintext caller -> steeldoor connect -> mutual TLS
-> server. The server is verified as strictly as serve verifies clients, and
a server that never asks for the client certificate is refused."""
import os
import socket
import ssl
import stat
import threading
import time

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from sdlib import Steeldoor, free_port, recv_exact


def connect_args(pki, listen, target, extra=(), cert=None, key=None, cacert=None):
    return ["connect", "--listen", listen, "--target", target,
            "--cert", cert or pki.client_cert, "--key", key or pki.client_key,
            "--cacert", cacert or pki.ca, "--workers", "1", "--drain-timeout", "2s"] + list(extra)


def start_connect(sd_bin, tmp_path, args, wait=None, name="conn"):
    sd = Steeldoor(sd_bin, args, tmp_path, name=name)
    sd.start(wait_ports=[wait] if wait else ())
    return sd


def roundtrip(port, payload=b"hello-through-connect\n", host="127.0.0.1"):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(payload)
        return recv_exact(s, len(payload))


def conn_lines(sd, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [l for l in sd.logs() if l.get("event") == "conn"]
        if lines:
            return lines
        time.sleep(0.05)
    return []


@pytest.fixture
def server(steeldoor, echo_backend):
    """steeldoor serve (L4) in front of an echo backend."""
    return steeldoor(target=echo_backend.target)


@pytest.fixture
def connects(sd_bin, tmp_path):
    made = []

    def make(args, wait=None):
        sd = start_connect(sd_bin, tmp_path, args, wait, name="conn%d" % len(made))
        made.append(sd)
        return sd

    yield make
    for sd in made:
        if sd.proc is not None and sd.proc.poll() is None:
            sd.stop(timeout=10, expect_rc=None)
        sd.kill()
        sd.close_files()


def test_end_to_end_identity_reaches_backend(pki, backends, steeldoor, connects):
    got = []

    def handler(conn, backend):
        data = b""
        conn.settimeout(5)
        while b"ping\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        got.append(data)
        conn.sendall(b"pong\n")
        conn.close()

    backend = backends(handler)
    srv = steeldoor(target=backend.target, extra=["--proxy-protocol"])
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % srv.port,
                               ["--server-name", "localhost"]), wait=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"ping\n")
        assert recv_exact(s, 5) == b"pong\n"
    assert got and got[0].startswith(b"\r\n\r\n\x00\r\nQUIT\n")
    assert b"spiffe://example.org/billing" in got[0]
    line = conn_lines(sd)[0]
    assert line["result"] == "ok", line
    assert "localhost" in str(line), line  # the server identity that was verified


def test_default_server_name_is_the_target_host(pki, server, connects):
    # 127.0.0.1: checked against the certificate's IP SAN, no SNI sent
    port = free_port()
    connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % server.port),
             wait=("127.0.0.1", port))
    assert roundtrip(port) == b"hello-through-connect\n"


def test_second_connection_resumes(pki, server, connects):
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, "127.0.0.1:%d" % server.port,
                               ["--server-name", "localhost"]), wait=("127.0.0.1", port))
    for _ in range(3):
        assert roundtrip(port) == b"hello-through-connect\n"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(conn_lines(sd)) < 3:
        time.sleep(0.05)
    lines = conn_lines(sd)
    assert len(lines) >= 3
    assert any(l.get("resumed") for l in lines[1:]), lines


def refused(pki, connects, target, reason, extra=(), **kw):
    port = free_port()
    sd = connects(connect_args(pki, "127.0.0.1:%d" % port, target, extra, **kw),
                  wait=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"must-not-arrive\n")
        assert s.recv(100) == b""
    line = conn_lines(sd)[0]
    assert line["result"] == "error" and line["reason"] == reason, line
    return line


def test_wrong_server_identity_refused(pki, server, connects):
    refused(pki, connects, "127.0.0.1:%d" % server.port, "not_authorized",
            ["--verify-uri", "spiffe://example.org/not-the-api"])


def test_wrong_server_name_refused(pki, server, connects):
    line = refused(pki, connects, "127.0.0.1:%d" % server.port, "not_authorized",
                   ["--server-name", "api.other.example"])
    assert line["detail"] == "hostname mismatch", line


def test_server_from_another_ca_refused(pki, server, connects):
    refused(pki, connects, "127.0.0.1:%d" % server.port, "unknown_ca",
            ["--server-name", "localhost"], cacert=pki.other_ca)


def python_server(cert, key, verify_mode, ca=None, max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = verify_mode
    if ca:
        ctx.load_verify_locations(ca)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(0.2)
    stop = []

    def loop():
        while not stop:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                t = ctx.wrap_socket(c, server_side=True)
                t.settimeout(2)
                data = t.recv(100)
                if data:
                    t.sendall(data)
                t.close()
            except (ssl.SSLError, OSError):
                c.close()

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return ls, stop


def test_server_that_never_asks_for_a_client_cert_refused(pki, connects):
    ls, stop = python_server(pki.server_cert, pki.server_key, ssl.CERT_NONE)
    try:
        refused(pki, connects, "127.0.0.1:%d" % ls.getsockname()[1],
                "server_did_not_request_client_cert", ["--server-name", "localhost"])
    finally:
        stop.append(1)
        ls.close()


def test_server_without_serverauth_refused(pki, connects, tmp_path):
    from conftest import issue_cert, root_issuer
    leaf = issue_cert(tmp_path / "noeku", "clientonly", root_issuer(pki),
                      eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), dns=("localhost",))
    ls, stop = python_server(leaf.crt, leaf.keyfile, ssl.CERT_REQUIRED, ca=pki.ca)
    try:
        refused(pki, connects, "127.0.0.1:%d" % ls.getsockname()[1], "wrong_eku",
                ["--server-name", "localhost"])
    finally:
        stop.append(1)
        ls.close()


def test_non_loopback_listen_refused(pki, sd_bin, tmp_path):
    sd = Steeldoor(sd_bin, connect_args(pki, "0.0.0.0:%d" % free_port(), "127.0.0.1:1"),
                   tmp_path, name="nonloop")
    sd.start()
    assert sd.wait_exit(10) != 0
    err = sd.stderr_text()
    assert "wooden door" in err and "loopback" in err, err
    sd.close_files()


def test_unix_listener_with_mode(pki, server, connects, tmp_path):
    path = str(tmp_path / "conn.sock")
    connects(connect_args(pki, "unix:" + path, "127.0.0.1:%d" % server.port,
                          ["--server-name", "localhost", "--listen-mode", "0660"]))
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"via-unix\n")
        assert recv_exact(s, 9) == b"via-unix\n"


def test_connectors_in_config_file(pki, server, steeldoor):
    port = free_port()
    cfg = """workers: 1
connectors:
  - name: to-api
    listen: 127.0.0.1:%d
    target: 127.0.0.1:%d
    server-name: localhost
    cert: %s
    key: %s
    cacert: %s
""" % (port, server.port, pki.client_cert, pki.client_key, pki.ca)
    steeldoor(config=cfg, wait_ports=[("127.0.0.1", port)])
    assert roundtrip(port) == b"hello-through-connect\n"
