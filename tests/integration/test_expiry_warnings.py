"""Expiry never surprises: a CRL near its nextUpdate is warned about at
load (like certificates), one past it says clients are refused, a fresh one
is quiet;
a server certificate without any SAN is warned about at start."""
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import make_ca, make_leaf, _now, _write_cert, _write_key
from sdlib import Steeldoor, free_port


def _crl(ca, key, last, nxt):
    return (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
            .last_update(last).next_update(nxt)
            .add_extension(x509.CRLNumber(1), critical=False)
            .sign(key, hashes.SHA256()))


def _start(sd_bin, tmp_path, name, crl=None, server_sans=True, grace=None):
    ca, cakey = make_ca("expiry test CA")
    kw = dict(dns=["localhost"], ips=["127.0.0.1"]) if server_sans else {}
    srv, srvkey = make_leaf(ca, cakey, "server-%s" % name, [ExtendedKeyUsageOID.SERVER_AUTH], **kw)
    d = tmp_path / name
    d.mkdir()
    _write_cert(d / "ca.crt", ca)
    _write_cert(d / "srv.crt", srv)
    _write_key(d / "srv.key", srvkey)
    port = free_port()
    args = ["serve", "--listen", "127.0.0.1:%d" % port, "--target", "127.0.0.1:%d" % free_port(),
            "--cert", d / "srv.crt", "--key", d / "srv.key", "--cacert", d / "ca.crt",
            "--allow-all", "--workers", "1", "--no-watch"]
    if crl is not None:
        (d / "crl.pem").write_bytes(crl(ca, cakey).public_bytes(serialization.Encoding.PEM))
        args += ["--crl", d / "crl.pem"]
    if grace:
        args += ["--crl-grace", grace]
    sd = Steeldoor(sd_bin, args, d, name="sd")
    sd.start(wait_ports=[port])
    return sd, d


def _events(sd, event):
    return [e for e in sd.logs() if e.get("event") == event]


def test_crl_expiry_warnings(sd_bin, tmp_path):
    h = datetime.timedelta(hours=1)
    cases = {
        # a day-old CRL with 2 hours left: within a quarter of its life
        "soon": (lambda ca, k: _crl(ca, k, _now() - 24 * h, _now() + 2 * h), "warn"),
        # past its nextUpdate: clients are refused
        "stale": (lambda ca, k: _crl(ca, k, _now() - 48 * h, _now() - h), "warn"),
        # a fresh 7-day CRL: nothing to say
        "fresh": (lambda ca, k: _crl(ca, k, _now() - h, _now() + 7 * 24 * h), None),
    }
    for name, (crl, level) in cases.items():
        sd, d = _start(sd_bin, tmp_path, name, crl=crl)
        try:
            ev = _events(sd, "crl_expiry")
            if level is None:
                assert ev == [], ev
                continue
            assert len(ev) == 1 and ev[0]["level"] == level, ev
            assert ev[0]["file"] == str(d / "crl.pem") and "expiry test CA" in ev[0]["issuer"], ev
            left = ev[0]["seconds_left"]
            assert (6000 < left <= 7200) if name == "soon" else (-3700 < left < -3500), ev
            assert "steeldoor pki crl" in ev[0]["msg"], ev
            assert ("refused (crl_expired)" in ev[0]["msg"]) == (name == "stale"), ev
        finally:
            sd.stop()
            sd.close_files()


def test_stale_crl_within_grace_is_a_warning(sd_bin, tmp_path):
    sd, _ = _start(sd_bin, tmp_path, "grace",
                   crl=lambda ca, k: _crl(ca, k, _now() - 48 * datetime.timedelta(hours=1),
                                          _now() - datetime.timedelta(minutes=10)),
                   grace="1h")
    try:
        ev = _events(sd, "crl_expiry")
        assert len(ev) == 1 and ev[0]["level"] == "warn" and ev[0]["grace_s"] == 3600, ev
    finally:
        sd.stop()
        sd.close_files()


def test_server_cert_without_san_is_warned(sd_bin, tmp_path):
    for sans in (False, True):
        sd, d = _start(sd_bin, tmp_path, "san-%s" % sans, server_sans=sans)
        try:
            ev = _events(sd, "cert_no_san")
            if sans:
                assert ev == [], ev
            else:
                assert len(ev) == 1 and ev[0]["file"] == str(d / "srv.crt"), ev
                assert "subjectAltName" in ev[0]["msg"], ev
        finally:
            sd.stop()
            sd.close_files()
