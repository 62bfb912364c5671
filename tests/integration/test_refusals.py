"""Clients without an acceptable certificate never complete a handshake and
never reach the backend."""
import ssl
import time

import pytest

import sdlib
from sdlib import run, tls_connect, peer_of

V13 = ssl.TLSVersion.TLSv1_3
V12 = ssl.TLSVersion.TLSv1_2

CASES = {
    # name: (pki attribute or None for no cert, expected reason(s), ca override)
    "no_cert": (None, {"no_client_certificate"}),
    "other_ca": ("othca_client", {"unknown_ca"}),
    "expired": ("expired", {"certificate_expired"}),
    "not_yet_valid": ("notyet", {"certificate_not_yet_valid"}),
    "serverauth_only_eku": ("serverauth", {"wrong_eku"}),
    "no_eku_extension": ("no_eku", {"wrong_eku"}),
    # same issuer DN as the real CA, different key: signature check must fail
    "impostor_ca_same_dn": ("impostor", None),
}


def assert_refused(sd, backend, r, reasons):
    assert r["data"] == b"", "refused client received application bytes: %r" % r["data"][:200]
    assert r["error"] is not None and not r["error"].startswith("TIMEOUT"), \
        "client was not cut off: %r" % r
    e = sd.wait_conn("127.0.0.1:%d" % r["local_port"])
    assert e["result"] == "refused", e
    if reasons is not None:
        assert e.get("reason") in reasons, "reason %r, expected %s; line %s" % (e.get("reason"), reasons, e)
    assert e.get("bytes_in", 0) == 0 and e.get("bytes_out", 0) == 0, e
    time.sleep(0.3)
    assert backend.count == 0, "backend got %d connection(s) from a refused client" % backend.count
    return e


@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_client_cert_refused(steeldoor, backends, client_ctx, pki, case, version, healthy):
    attr, reasons = CASES[case]
    rec = backends()
    sd = steeldoor(target=rec.target, name="refusals")
    ctx = client_ctx(cert=getattr(pki, attr) if attr else None,
                     max_version=version, min_version=version)
    r = sdlib.probe_refused_tls(ctx, sd.port)
    e = assert_refused(sd, rec, r, reasons)
    # positive control on the same process: a good client passes and reaches the backend
    healthy(sd.port, client_ctx(max_version=version, min_version=version))
    assert rec.count == 1


def test_no_cert_curl(steeldoor, backends, pki):
    rec = backends()
    sd = steeldoor(target=rec.target)
    before = len(sd.conn_logs())
    r = run(["curl", "-sS", "--max-time", "8", "--resolve", "localhost:%d:127.0.0.1" % sd.port,
             "--cacert", pki.ca, "-w", "%{local_port}", "-o", "/dev/null",
             "https://localhost:%d/" % sd.port], timeout=20)
    assert r.returncode != 0, "curl without a client certificate succeeded"
    assert r.returncode != 28, "curl timed out instead of being refused"
    e = sd.wait_client_conn(lambda e: e.get("result") == "refused")
    assert e["reason"] == "no_client_certificate", e
    assert len(sd.conn_logs()) == before + 1
    time.sleep(0.3)
    assert rec.count == 0


def test_curl_other_ca_refused(steeldoor, backends, pki):
    rec = backends()
    sd = steeldoor(target=rec.target)
    r = run(["curl", "-sS", "--max-time", "8", "--resolve", "localhost:%d:127.0.0.1" % sd.port,
             "--cacert", pki.ca, "--cert", pki.othca_client[0], "--key", pki.othca_client[1],
             "https://localhost:%d/" % sd.port], timeout=20)
    assert r.returncode not in (0, 28), (r.returncode, r.stderr)
    e = sd.wait_client_conn()
    assert e["result"] == "refused" and e["reason"] == "unknown_ca", e
    time.sleep(0.3)
    assert rec.count == 0
