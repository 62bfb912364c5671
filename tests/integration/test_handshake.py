"""Valid clients get through: Python ssl, curl (HTTP backend), openssl s_client.
Also checks the per-connection log line."""
import os
import socket
import ssl
import subprocess
import time

import pytest

import sdlib
from sdlib import run, tls_connect, recv_exact, peer_of


def test_python_client_echo_and_conn_log(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, name="hs")
    payload = os.urandom(3000)
    with tls_connect(good_ctx, sd.port) as s:
        peer = peer_of(s)
        version, cipher = s.version(), s.cipher()[0]
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload
        s.sendall(b"x" * 77)
        assert recv_exact(s, 77) == b"x" * 77
        time.sleep(0.3)
    assert version == "TLSv1.3", "default negotiation should be TLS 1.3, got %s" % version
    e = sd.wait_conn(peer)
    assert e["result"] == "ok", e
    assert e["listener"] == "hs"
    assert e["tls_version"] == "TLSv1.3"
    assert e["cipher"] == cipher, (e["cipher"], cipher)
    assert e["resumed"] is False
    assert "CN=billing" in e["subject"], e
    assert "URI:spiffe://example.org/billing" in e["sans"], e
    assert e["bytes_in"] == len(payload) + 77, e
    assert e["bytes_out"] == len(payload) + 77, e
    assert e["duration_ms"] >= 250, e
    assert isinstance(e.get("time"), str) and e["time"], e
    assert echo_backend.count == 1


def test_default_listener_name_is_listen_address(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target)
    with tls_connect(good_ctx, sd.port) as s:
        peer = peer_of(s)
        sdlib.echo_roundtrip(s)
    e = sd.wait_conn(peer)
    assert e["listener"] == "127.0.0.1:%d" % sd.port, e


def test_python_generated_client_cert_passes(steeldoor, echo_backend, client_ctx, pki):
    """Positive control for the cryptography-made bad certs: the same generator
    with valid parameters is accepted; SANs of several types are logged."""
    sd = steeldoor(target=echo_backend.target)
    with tls_connect(client_ctx(pki.pygood), sd.port) as s:
        peer = peer_of(s)
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    e = sd.wait_conn(peer)
    assert e["result"] == "ok"
    assert e["subject"] == "CN=pygood", e
    assert "URI:spiffe://example.org/pygood" in e["sans"], e
    assert "DNS:pygood.example.org" in e["sans"], e


def test_tls12_client_works_and_is_logged(steeldoor, echo_backend, client_ctx):
    sd = steeldoor(target=echo_backend.target)
    ctx = client_ctx(max_version=ssl.TLSVersion.TLSv1_2)
    with tls_connect(ctx, sd.port) as s:
        peer = peer_of(s)
        assert s.version() == "TLSv1.2"
        cipher = s.cipher()[0]
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    assert "ECDHE" in cipher and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    e = sd.wait_conn(peer)
    assert e["tls_version"] == "TLSv1.2" and e["cipher"] == cipher and e["result"] == "ok", e


def test_curl_http_through_proxy(steeldoor, pki):
    http = sdlib.HttpEchoBackend()
    try:
        sd = steeldoor(target=http.target)
        url = "https://localhost:%d/hello/world" % sd.port
        r = run(["curl", "-sS", "--max-time", "10", "--resolve", "localhost:%d:127.0.0.1" % sd.port,
                 "--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key,
                 "--data-binary", "curl-body-123", url], timeout=20)
        assert r.returncode == 0, "curl rc=%d %s" % (r.returncode, r.stderr.decode())
        assert r.stdout == b"ECHO POST /hello/world\ncurl-body-123", r.stdout
        # and a GET, checked against the log
        r = run(["curl", "-sS", "--max-time", "10", "--resolve", "localhost:%d:127.0.0.1" % sd.port,
                 "--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key,
                 "-o", "/dev/null", "-w", "%{http_code} %{local_port}", url], timeout=20)
        code, lport = r.stdout.decode().split()
        assert code == "200"
        e = sd.wait_conn("127.0.0.1:%s" % lport)
        assert e["result"] == "ok" and "CN=billing" in e["subject"], e
        assert e["bytes_in"] > 0 and e["bytes_out"] > 0, e
    finally:
        http.close()


def line_reply_handler(conn, backend):
    """Reads one line, answers 'ECHO:<line>' and closes."""
    buf = b""
    while b"\n" not in buf:
        d = conn.recv(4096)
        if not d:
            break
        buf += d
    conn.sendall(b"ECHO:" + buf)


def sclient(port, pki, extra=(), stdin=b"", timeout=15, cert=True):
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
           "-CAfile", pki.ca, "-verify_return_error", "-ign_eof"]
    if cert:
        cmd += ["-cert", pki.client_cert, "-key", pki.client_key]
    return run(cmd + list(extra), input=stdin, timeout=timeout)


def test_openssl_s_client(steeldoor, backends, pki):
    b = backends(line_reply_handler)
    sd = steeldoor(target=b.target)
    r = sclient(sd.port, pki, stdin=b"hello-sclient\n")
    out = r.stdout.decode(errors="replace")
    assert "ECHO:hello-sclient" in out, out + r.stderr.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in out
    assert "TLSv1.3" in out


def test_openssl_s_client_tls12_ecdhe_aead(steeldoor, backends, pki):
    cipher = "ECDHE-RSA-AES128-GCM-SHA256" if pki.server_key_is_rsa else "ECDHE-ECDSA-AES128-GCM-SHA256"
    b = backends(line_reply_handler)
    sd = steeldoor(target=b.target)
    r = sclient(sd.port, pki, extra=["-tls1_2", "-cipher", cipher], stdin=b"hello12\n")
    out = r.stdout.decode(errors="replace")
    assert "ECHO:hello12" in out, out + r.stderr.decode(errors="replace")
    assert "Cipher is %s" % cipher in out, out


def test_ipv6_listen(steeldoor, echo_backend, good_ctx):
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured on this machine")
    port = sdlib.free_port("::1")
    sd = steeldoor(target=echo_backend.target, port=port, host="::1")
    with tls_connect(good_ctx, port, host="::1") as s:
        peer = peer_of(s)
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    e = sd.wait_log(lambda e: e.get("event") == "conn" and e.get("result") == "ok"
                    and str(s_port(peer)) in e.get("peer", ""))
    assert "::1" in e["peer"], e


def s_port(peer):
    return int(peer.rsplit(":", 1)[1])


def test_unix_target(steeldoor, backends, good_ctx, tmp_path):
    b = backends(unix_path=str(tmp_path / "echo.sock"))
    sd = steeldoor(target=b.target)
    payload = os.urandom(100000)
    with tls_connect(good_ctx, sd.port) as s:
        peer = peer_of(s)
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload
    e = sd.wait_conn(peer)
    assert e["result"] == "ok" and e["bytes_in"] == len(payload), e
    assert b.count == 1
