"""A conn line says which certificate, which name and which backend: the SNI
the client sent, the SHA-256 and serial of the certificate that was
verified, and the backend address its bytes went to."""
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import sdlib
from sdlib import tls_connect, peer_of


def test_conn_line_names_cert_sni_and_backend(steeldoor, echo_backend, good_ctx, client_ctx, pki):
    target = "127.0.0.1:%d" % echo_backend.port
    sd = steeldoor(target=target)
    with tls_connect(good_ctx, sd.port, server_hostname="localhost", timeout=3) as s:
        peer = peer_of(s)
        assert sdlib.echo_roundtrip(s, b"fields\n") == b"fields\n"
    e = sd.wait_conn(peer)
    der = x509.load_pem_x509_certificate(open(pki.client_cert, "rb").read()).public_bytes(
        serialization.Encoding.DER)
    cert = x509.load_der_x509_certificate(der)
    assert e["result"] == "ok", e
    assert e["sni"] == "localhost", e
    assert e["cert_sha256"] == hashlib.sha256(der).hexdigest(), e
    assert e["cert_serial"] == "%X" % cert.serial_number, e
    assert e["backend"] == target, e

    # refused at the handshake: the backend was never contacted, so not named
    r = sdlib.probe_refused_tls(client_ctx(None), sd.port)
    e = sd.wait_conn("127.0.0.1:%d" % r["local_port"])
    assert e["result"] == "refused" and "backend" not in e and "cert_sha256" not in e, e
