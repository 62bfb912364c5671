"""Protocol policy: TLS 1.3/1.2 only, TLS 1.2 only ECDHE+AEAD, no renegotiation."""
import os
import ssl
import subprocess
import time

import pytest

import sdlib
from sdlib import run, tls_connect, peer_of
from test_refusals import assert_refused

V12 = ssl.TLSVersion.TLSv1_2


def sclient_cmd(port, pki, extra=()):
    return ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
            "-CAfile", str(pki.ca), "-cert", str(pki.client_cert), "-key", str(pki.client_key)] + list(extra)


def test_tls11_refused(steeldoor, backends, pki, good_ctx, healthy):
    rec = backends()
    sd = steeldoor(target=rec.target)
    before = len(sd.conn_logs())
    r = run(sclient_cmd(sd.port, pki, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
            input=b"", timeout=15)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0, "TLS 1.1 handshake was not refused:\n" + out
    assert "Cipher is (NONE)" in out, out
    assert "alert protocol version" in out, out
    e = sd.wait_client_conn()
    assert e["result"] == "refused" and e["reason"] == "protocol_version", e
    assert len(sd.conn_logs()) == before + 1
    time.sleep(0.2)
    assert rec.count == 0
    # positive control: the same command line with -tls1_2 works
    r = run(sclient_cmd(sd.port, pki, ["-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0"]),
            input=b"", timeout=15)
    out = r.stdout.decode(errors="replace")
    assert "Protocol  : TLSv1.2" in out, out
    healthy(sd.port, good_ctx)


def _ecdsa_or_rsa_names(rsa):
    return ("RSA" if rsa else "ECDSA")


def test_tls12_non_aead_refused(steeldoor, backends, client_ctx, pki):
    """CBC suites with the right key exchange and auth type are still refused."""
    rec = backends()
    sd = steeldoor(target=rec.target)
    a = _ecdsa_or_rsa_names(pki.server_key_is_rsa)
    for cs in ["ECDHE-%s-AES128-SHA256" % a, "ECDHE-%s-AES256-SHA384" % a,
               "ECDHE-%s-AES128-SHA" % a]:
        ctx = client_ctx(max_version=V12, min_version=V12, ciphers=cs + ":@SECLEVEL=0")
        r = sdlib.probe_refused_tls(ctx, sd.port)
        assert r["stage"] == "handshake", "cipher %s: %r" % (cs, r)
        assert_refused(sd, rec, r, None)
    # positive control: same key type, ECDHE + AEAD
    ctx = client_ctx(max_version=V12, min_version=V12, ciphers="ECDHE-%s-AES128-GCM-SHA256" % a)
    with tls_connect(ctx, sd.port) as s:
        assert s.cipher()[0] == "ECDHE-%s-AES128-GCM-SHA256" % a
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"


@pytest.fixture
def rsa_listener(steeldoor, backends, pki):
    """A listener with an RSA server certificate, so that non-ECDHE suites
    (static RSA, DHE) are possible at all and their refusal is meaningful."""
    rec = backends()
    sd = steeldoor(target=rec.target, cert=pki.rsa_server[0], key=pki.rsa_server[1])
    return sd, rec


@pytest.mark.parametrize("cs", ["AES128-GCM-SHA256", "AES256-GCM-SHA384",
                                "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-CHACHA20-POLY1305"])
def test_tls12_non_ecdhe_refused(rsa_listener, client_ctx, cs):
    sd, rec = rsa_listener
    ctx = client_ctx(max_version=V12, min_version=V12, ciphers=cs + ":@SECLEVEL=0")
    r = sdlib.probe_refused_tls(ctx, sd.port)
    assert r["stage"] == "handshake", "cipher %s: %r" % (cs, r)
    assert_refused(sd, rec, r, None)


@pytest.mark.parametrize("cs", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                                "ECDHE-RSA-CHACHA20-POLY1305"])
def test_tls12_ecdhe_aead_works_rsa(rsa_listener, client_ctx, cs):
    sd, rec = rsa_listener
    ctx = client_ctx(max_version=V12, min_version=V12, ciphers=cs)
    with tls_connect(ctx, sd.port) as s:
        peer = peer_of(s)
        assert s.cipher()[0] == cs
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    e = sd.wait_conn(peer)
    assert e["cipher"] == cs and e["tls_version"] == "TLSv1.2" and e["result"] == "ok", e


def test_tls12_ecdhe_ecdsa_aes128_gcm(steeldoor, echo_backend, client_ctx, pki):
    if pki.server_key_is_rsa:
        pytest.fail("`steeldoor pki issue --server` made an RSA key; "
                    "ECDHE-ECDSA-AES128-GCM-SHA256 needs an ECDSA server certificate")
    sd = steeldoor(target=echo_backend.target)
    ctx = client_ctx(max_version=V12, min_version=V12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with tls_connect(ctx, sd.port) as s:
        peer = peer_of(s)
        assert s.version() == "TLSv1.2" and s.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    e = sd.wait_conn(peer)
    assert e["cipher"] == "ECDHE-ECDSA-AES128-GCM-SHA256" and e["result"] == "ok", e


def _renegotiate_session(cmd, tmp_path, tag):
    """Run s_client, wait for the handshake, send 'R', then later a data line.
    Returns the combined output."""
    out_path = tmp_path / ("sclient-%s.out" % tag)
    with open(out_path, "wb") as out:
        p = subprocess.Popen(cmd + ["-msg"], stdin=subprocess.PIPE, stdout=out,
                             stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while b"Verify return code" not in out_path.read_bytes():
                if time.monotonic() > deadline or p.poll() is not None:
                    break
                time.sleep(0.05)
            p.stdin.write(b"R\n")
            p.stdin.flush()
            time.sleep(1.5)
            try:
                p.stdin.write(b"after-reneg\n")
                p.stdin.flush()
                time.sleep(0.5)
                p.stdin.close()
            except BrokenPipeError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    return out_path.read_text(errors="replace")


def _count_server_finished(out):
    # -msg lines: "<<< TLS 1.2, Handshake [length 000c], Finished"
    return sum(1 for l in out.splitlines() if l.startswith("<<<") and "Finished" in l)


def test_renegotiation_control_with_openssl_s_server(pki, tmp_path):
    """Positive control for the measurement: against `openssl s_server`, which
    is told to allow client renegotiation, "R" produces a second server Finished."""
    port = sdlib.free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", str(port), "-tls1_2",
                            "-cert", str(pki.server_cert), "-key", str(pki.server_key),
                            "-CAfile", str(pki.ca), "-Verify", "1", "-quiet", "-client_renegotiation"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sdlib.tcp_accepts("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = _renegotiate_session(sclient_cmd(port, pki, ["-tls1_2"]), tmp_path, "control")
    finally:
        srv.kill()
        srv.wait(5)
    assert "RENEGOTIATING" in out, out[-3000:]
    assert _count_server_finished(out) == 2, "control: expected 2 server Finished messages\n" + out[-3000:]


def test_renegotiation_refused(steeldoor, echo_backend, pki, tmp_path, good_ctx, healthy):
    sd = steeldoor(target=echo_backend.target)
    out = _renegotiate_session(sclient_cmd(sd.port, pki, ["-tls1_2"]), tmp_path, "sd")
    assert "Protocol  : TLSv1.2" in out, "initial handshake failed:\n" + out[-3000:]
    assert "RENEGOTIATING" in out, out[-3000:]
    n = _count_server_finished(out)
    assert n == 1, "server completed %d handshakes on one connection (renegotiation accepted)\n%s" % (
        n, out[-3000:])
    assert sd.running()
    healthy(sd.port, good_ctx)
