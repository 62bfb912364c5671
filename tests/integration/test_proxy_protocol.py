"""--proxy-protocol: every backend connection starts with a PROXY protocol v2
header carrying the client's address and identity; the client's bytes follow
unchanged. The header is parsed here independently and strictly."""
import hashlib
import ipaddress
import os
import socket
import ssl
import struct
import threading
import time

import pytest

import sdlib
from sdlib import free_port, recv_exact
from conftest import expect_admitted

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
V13 = ssl.TLSVersion.TLSv1_3
V12 = ssl.TLSVersion.TLSv1_2

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x04
PP2_TYPE_NOOP = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
SD_URI, SD_DNS, SD_SHA256, SD_DN = 0xE0, 0xE1, 0xE2, 0xE3
SD_IDENTITY, SD_RULE = 0xE4, 0xE5
ALLOWED_TOP = {PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL, SD_URI, SD_DNS, SD_SHA256, SD_DN,
               SD_IDENTITY, SD_RULE}
ALLOWED_SUB = {PP2_SUBTYPE_SSL_VERSION, PP2_SUBTYPE_SSL_CN, PP2_SUBTYPE_SSL_CIPHER,
               PP2_SUBTYPE_SSL_SIG_ALG, PP2_SUBTYPE_SSL_KEY_ALG}


class PPError(AssertionError):
    pass


def walk_tlvs(buf, what):
    """[(type, value)] from a TLV area that must be consumed exactly."""
    out = []
    i = 0
    n = len(buf)
    while i < n:
        if n - i < 3:
            raise PPError("%s: %d trailing byte(s) too short for a TLV header at offset %d: %r"
                          % (what, n - i, i, buf[i:]))
        t = buf[i]
        ln = struct.unpack(">H", buf[i + 1:i + 3])[0]
        if i + 3 + ln > n:
            raise PPError("%s: TLV type 0x%02x at offset %d claims %d bytes, only %d left"
                          % (what, t, i, ln, n - i - 3))
        out.append((t, bytes(buf[i + 3:i + 3 + ln])))
        i += 3 + ln
    return out


def parse_ppv2(hdr16, rest):
    """Parse a PROXY v2 header: hdr16 = the fixed 16 bytes, rest = the `len`
    bytes that follow. Strict: every length must add up."""
    if hdr16[:12] != SIG:
        raise PPError("bad PROXY v2 signature: %r" % hdr16[:12])
    vc, fam = hdr16[12], hdr16[13]
    ln = struct.unpack(">H", hdr16[14:16])[0]
    if vc != 0x21:
        raise PPError("version/command byte 0x%02x, expected 0x21 (v2 PROXY)" % vc)
    if ln != len(rest):
        raise PPError("length field %d != %d bytes given" % (ln, len(rest)))
    h = {"fam": fam, "len": ln}
    if fam == 0x11:
        if ln < 12:
            raise PPError("TCP4 header needs 12 address bytes, len=%d" % ln)
        h["src"] = (str(ipaddress.IPv4Address(rest[0:4])), struct.unpack(">H", rest[8:10])[0])
        h["dst"] = (str(ipaddress.IPv4Address(rest[4:8])), struct.unpack(">H", rest[10:12])[0])
        tlv = rest[12:]
    elif fam == 0x21:
        if ln < 36:
            raise PPError("TCP6 header needs 36 address bytes, len=%d" % ln)
        h["src"] = (str(ipaddress.IPv6Address(rest[0:16])), struct.unpack(">H", rest[32:34])[0])
        h["dst"] = (str(ipaddress.IPv6Address(rest[16:32])), struct.unpack(">H", rest[34:36])[0])
        tlv = rest[36:]
    else:
        raise PPError("family/protocol byte 0x%02x, expected 0x11 or 0x21" % fam)
    tlvs = walk_tlvs(tlv, "TLVs")
    h["tlvs"] = tlvs
    h["ssl"] = None
    for t, v in tlvs:
        if t == PP2_TYPE_SSL:
            if len(v) < 5:
                raise PPError("PP2_TYPE_SSL value of %d bytes (< 5)" % len(v))
            h["ssl"] = {"client": v[0], "verify": struct.unpack(">I", v[1:5])[0],
                        "sub": walk_tlvs(v[5:], "PP2_TYPE_SSL sub-TLVs")}
    return h


def pp_handler(conn, backend):
    """Reads and parses the header, records it, then echoes; records the raw
    bytes that followed the header."""
    rec = {"header": None, "error": None, "after": bytearray()}
    with backend.lock:
        backend.results.append(rec)
    try:
        hdr16 = recv_exact(conn, 16, timeout=5)
        if hdr16[:12] != SIG:
            raise PPError("no PROXY v2 signature; first bytes %r" % hdr16)
        ln = struct.unpack(">H", hdr16[14:16])[0]
        rest = recv_exact(conn, ln, timeout=5) if ln else b""
        rec["header"] = parse_ppv2(hdr16, rest)
    except Exception as e:
        rec["error"] = repr(e)
        return
    conn.settimeout(10)
    while True:
        d = conn.recv(65536)
        if not d:
            return
        rec["after"] += d
        conn.sendall(d)


def raw_handler(conn, backend):
    """Records every byte exactly as it arrives, and echoes it."""
    rec = {"raw": bytearray()}
    with backend.lock:
        backend.results.append(rec)
    conn.settimeout(10)
    while True:
        d = conn.recv(65536)
        if not d:
            return
        rec["raw"] += d
        conn.sendall(d)


def tlv_all(h, t):
    return [v for (tt, v) in h["tlvs"] if tt == t]


def tlv_one(h, t, what):
    vs = tlv_all(h, t)
    assert len(vs) <= 1, "%s (0x%02x) sent %d times" % (what, t, len(vs))
    return vs[0] if vs else None


def sub_one(h, t, what):
    vs = [v for (tt, v) in h["ssl"]["sub"] if tt == t]
    assert len(vs) <= 1, "SSL sub-TLV %s (0x%02x) sent %d times" % (what, t, len(vs))
    return vs[0] if vs else None


def cert_dn_rfc2253(cert):
    return cert.subject.rfc4514_string()


def cert_key_alg(cert):
    return "RSA" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "EC"


def check_header(h, cert, client_sock_name, listen, version, cipher, sni, alpn=None, fam=0x11,
                 identity="allow-all", rule="all"):
    """Compare every field against what the test itself knows. identity is
    the value that admitted the client (0xE4); by default what allow-all
    hands on: the SPIFFE ID, else the CN."""
    assert h["fam"] == fam, "family 0x%02x, expected 0x%02x" % (h["fam"], fam)
    assert h["src"] == (client_sock_name[0], client_sock_name[1]), \
        "source %s != client socket %s" % (h["src"], client_sock_name[:2])
    assert h["dst"] == listen, "destination %s != listener %s" % (h["dst"], listen)
    types = [t for t, _ in h["tlvs"]]
    assert PP2_TYPE_CRC32C not in types, "CRC32C TLV must not be sent"
    unknown = sorted(set(types) - ALLOWED_TOP)
    assert not unknown, "unexpected TLV types %s" % [hex(t) for t in unknown]
    # ALPN: only if negotiated
    a = tlv_one(h, PP2_TYPE_ALPN, "ALPN")
    if alpn is None:
        assert a is None, "ALPN TLV %r sent but nothing was negotiated" % a
    else:
        assert a == alpn.encode()
    # authority = SNI
    auth = tlv_one(h, PP2_TYPE_AUTHORITY, "AUTHORITY")
    if sni is None:
        assert auth is None, "AUTHORITY TLV %r sent but the client sent no SNI" % auth
    else:
        assert auth == sni.encode(), "AUTHORITY %r != SNI %r" % (auth, sni)
    # SSL
    assert types.count(PP2_TYPE_SSL) == 1, "PP2_TYPE_SSL sent %d times" % types.count(PP2_TYPE_SSL)
    s = h["ssl"]
    assert s["client"] == 0x07, "SSL client flags 0x%02x, expected 0x07" % s["client"]
    assert s["verify"] == 0, "SSL verify %d, expected 0" % s["verify"]
    subtypes = [t for t, _ in s["sub"]]
    unknown = sorted(set(subtypes) - ALLOWED_SUB)
    assert not unknown, "unexpected SSL sub-TLV types %s" % [hex(t) for t in unknown]
    assert sub_one(h, PP2_SUBTYPE_SSL_VERSION, "VERSION") == version.encode(), s
    cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    cn = sub_one(h, PP2_SUBTYPE_SSL_CN, "CN")
    if cns:
        assert cn == cns[0].value.encode(), "CN %r != %r" % (cn, cns[0].value)
    else:
        assert cn is None, "CN sub-TLV %r for a certificate without CN" % cn
    assert sub_one(h, PP2_SUBTYPE_SSL_CIPHER, "CIPHER") == cipher.encode(), s
    assert sub_one(h, PP2_SUBTYPE_SSL_SIG_ALG, "SIG_ALG") == \
        cert.signature_algorithm_oid._name.encode(), s
    assert sub_one(h, PP2_SUBTYPE_SSL_KEY_ALG, "KEY_ALG") == cert_key_alg(cert).encode(), s
    # steeldoor's own TLVs
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        uris, dns = [], []
    assert tlv_all(h, SD_URI) == [u.encode() for u in uris], \
        "URI TLVs %r != certificate URI SANs %r" % (tlv_all(h, SD_URI), uris)
    assert tlv_all(h, SD_DNS) == [d.encode() for d in dns], \
        "DNS TLVs %r != certificate DNS SANs %r" % (tlv_all(h, SD_DNS), dns)
    der = cert.public_bytes(serialization.Encoding.DER)
    fp = tlv_one(h, SD_SHA256, "cert SHA-256")
    assert fp is not None and len(fp) == 32, "0xE2 must be 32 raw bytes: %r" % fp
    assert fp == hashlib.sha256(der).digest(), "0xE2 is not SHA-256 of the client cert DER"
    dn = tlv_one(h, SD_DN, "subject DN")
    assert dn == cert_dn_rfc2253(cert).encode(), "DN %r != %r" % (dn, cert_dn_rfc2253(cert))
    if identity == "allow-all":
        spiffe = [u for u in uris if u.lower().startswith("spiffe://")]
        identity = spiffe[0] if spiffe else (cns[0].value if cns else None)
    got = tlv_one(h, SD_IDENTITY, "identity")
    assert got == (identity.encode() if identity is not None else None), \
        "identity TLV %r, expected %r" % (got, identity)
    got = tlv_one(h, SD_RULE, "rule")
    assert got == (rule.encode() if rule is not None else None), \
        "rule TLV %r, expected %r" % (got, rule)


def _load(path):
    return x509.load_pem_x509_certificate(open(path, "rb").read())


def _one_conn(sd, be, ctx, port, host="127.0.0.1", server_hostname="localhost",
              payload=b"hello-backend\n", session=None):
    with sdlib.tls_connect(ctx, port, host=host, server_hostname=server_hostname,
                           session=session) as s:
        name = s.getsockname()
        got = sdlib.echo_roundtrip(s, payload, timeout=10)
        info = {"version": s.version(), "cipher": s.cipher()[0], "name": name,
                "alpn": s.selected_alpn_protocol(), "reused": s.session_reused,
                "session": s.session}
    assert got == payload, "echo after the header: %r != %r" % (got[:100], payload[:100])
    res = be.wait_results(1, timeout=5)
    assert res, "backend never got a connection"
    rec = res[-1]
    # the handler appends before reading; wait until it has recorded the bytes
    deadline = time.monotonic() + 5
    while rec.get("header") is None and rec.get("error") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec.get("error") is None, "backend could not parse the PROXY header: %s" % rec["error"]
    assert bytes(rec["after"]) == payload, "bytes after the header %r != %r" % (
        bytes(rec["after"])[:100], payload[:100])
    e = sd.wait_conn("[%s]:%d" % name[:2] if ":" in name[0] else "%s:%d" % name[:2])
    assert e.get("result") == "ok", e
    return rec["header"], info, e


@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
def test_header_fields_dev_client(steeldoor, backends, pki, version):
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key,
                           max_version=version, min_version=version)
    h, info, e = _one_conn(sd, be, ctx, sd.port)
    check_header(h, _load(pki.client_cert), info["name"], ("127.0.0.1", sd.port),
                 info["version"], info["cipher"], "localhost")
    assert info["version"] == {V13: "TLSv1.3", V12: "TLSv1.2"}[version]
    assert e.get("cipher") in (None, info["cipher"]), e
    assert be.count == 1


@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
def test_header_fields_rich_cert(steeldoor, backends, pki, certs, version):
    leaf = certs.client("rich", cn="pp-client", ou="payments", o="Example Corp", c="US",
                        uris=["spiffe://example.org/ns/prod/sa/pp", "urn:example:second"],
                        dns=["pp.example.org", "pp-alt.example.net"])
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, leaf.crt, leaf.key, max_version=version, min_version=version)
    h, info, _ = _one_conn(sd, be, ctx, sd.port)
    check_header(h, leaf.cert, info["name"], ("127.0.0.1", sd.port), info["version"],
                 info["cipher"], "localhost")
    assert tlv_one(h, SD_DN, "DN") == b"CN=pp-client,OU=payments,O=Example Corp,C=US"
    assert len(tlv_all(h, SD_URI)) == 2 and len(tlv_all(h, SD_DNS)) == 2


def test_header_rsa_client_no_cn(steeldoor, backends, pki, certs):
    """RSA client key (KEY_ALG RSA, SIG_ALG still the CA's ECDSA) and no CN."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = certs.client("rsa-nocn", o="No CN Inc", uris=["spiffe://example.org/nocn"], key=k)
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, leaf.crt, leaf.key)
    h, info, _ = _one_conn(sd, be, ctx, sd.port)
    check_header(h, leaf.cert, info["name"], ("127.0.0.1", sd.port), info["version"],
                 info["cipher"], "localhost")
    assert sub_one(h, PP2_SUBTYPE_SSL_KEY_ALG, "KEY_ALG") == b"RSA"
    assert sub_one(h, PP2_SUBTYPE_SSL_SIG_ALG, "SIG_ALG") == b"ecdsa-with-SHA256"
    assert sub_one(h, PP2_SUBTYPE_SSL_CN, "CN") is None


def test_sni_as_authority_and_absent(steeldoor, backends, pki):
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    ctx.check_hostname = False
    cert = _load(pki.client_cert)
    h, info, _ = _one_conn(sd, be, ctx, sd.port, server_hostname="svc.internal.example")
    check_header(h, cert, info["name"], ("127.0.0.1", sd.port), info["version"], info["cipher"],
                 "svc.internal.example")
    # no SNI at all
    h, info, _ = _one_conn(sd, be, ctx, sd.port, server_hostname=None)
    check_header(h, cert, info["name"], ("127.0.0.1", sd.port), info["version"], info["cipher"],
                 None)


def test_alpn_offered_not_negotiated(steeldoor, backends, pki):
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    h, info, _ = _one_conn(sd, be, ctx, sd.port)
    check_header(h, _load(pki.client_cert), info["name"], ("127.0.0.1", sd.port),
                 info["version"], info["cipher"], "localhost", alpn=info["alpn"])


def test_payload_unchanged_large(steeldoor, backends, pki):
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    # bytes that look like another PROXY header, CRLFs, NULs, then random data
    payload = SIG + b"\x21\x11\x00\x0cPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\x00" + os.urandom(200000)
    h, info, _ = _one_conn(sd, be, ctx, sd.port, payload=payload)
    assert h["fam"] == 0x11


def test_ipv6_listener(steeldoor, backends, pki):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 not available")
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, host="::1", extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    h, info, _ = _one_conn(sd, be, ctx, sd.port, host="::1")
    check_header(h, _load(pki.client_cert), info["name"], ("::1", sd.port), info["version"],
                 info["cipher"], "localhost", fam=0x21)
    assert h["len"] >= 36


def test_resumed_session_header(steeldoor, backends, pki):
    be = backends(pp_handler)
    sd = steeldoor(target=be.target, extra=["--proxy-protocol"])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key,
                           max_version=V12, min_version=V12)
    cert = _load(pki.client_cert)
    _, info, _ = _one_conn(sd, be, ctx, sd.port)
    h, info2, e = _one_conn(sd, be, ctx, sd.port, session=info["session"])
    assert info2["reused"], "control: session did not resume"
    assert e.get("resumed") is True, e
    # the identity comes from the session: still complete and correct
    assert tlv_one(h, SD_SHA256, "sha") == hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).digest()
    assert sub_one(h, PP2_SUBTYPE_SSL_CN, "CN") == b"billing"
    assert tlv_all(h, SD_URI) == [b"spiffe://example.org/billing"]
    assert h["src"] == info2["name"][:2]


def test_without_flag_no_header(steeldoor, backends, pki):
    be = backends(raw_handler)
    sd = steeldoor(target=be.target)
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    payload = b"first-bytes-are-mine\n"
    with sdlib.tls_connect(ctx, sd.port) as s:
        assert sdlib.echo_roundtrip(s, payload) == payload
    res = be.wait_results(1)
    assert bytes(res[0]["raw"]) == payload, "backend got %r" % bytes(res[0]["raw"])[:64]


def test_flag_per_listener_in_yaml(steeldoor, backends, pki, make_config):
    be_pp = backends(pp_handler)
    be_raw = backends(raw_handler)
    pa, pb = free_port(), free_port()
    cfg = make_config([
        {"name": "with-pp", "port": pa, "target": be_pp.target, "proxy-protocol": "true"},
        {"name": "without", "port": pb, "target": be_raw.target},
    ])
    sd = steeldoor(config=cfg, wait_ports=[pa, pb])
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    h, info, e = _one_conn(sd, be_pp, ctx, pa)
    assert e.get("listener") == "with-pp"
    check_header(h, _load(pki.client_cert), info["name"], ("127.0.0.1", pa), info["version"],
                 info["cipher"], "localhost")
    with sdlib.tls_connect(ctx, pb) as s:
        assert sdlib.echo_roundtrip(s, b"plain\n") == b"plain\n"
    res = be_raw.wait_results(1)
    assert bytes(res[0]["raw"]) == b"plain\n"


def test_parser_self_check():
    """The test's own parser rejects malformed headers (so it can fail)."""
    good_rest = bytes([127, 0, 0, 1, 127, 0, 0, 1]) + struct.pack(">HH", 1, 2) + \
        bytes([0x02, 0, 1]) + b"x"
    hdr = SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(good_rest))
    h = parse_ppv2(hdr, good_rest)
    assert h["src"] == ("127.0.0.1", 1) and h["tlvs"] == [(2, b"x")]
    for bad_hdr, bad_rest in [
        (SIG[:-1] + b"X" + hdr[12:], good_rest),                       # signature
        (SIG + bytes([0x20, 0x11]) + hdr[14:], good_rest),             # LOCAL command
        (SIG + bytes([0x21, 0x12]) + hdr[14:], good_rest),             # UDP
        (hdr, good_rest + b"\x00"),                                    # length mismatch
        (SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(good_rest) + 1),
         good_rest[:-1] + bytes([0x02, 0, 5]) + b"x"),                 # TLV overrun
        (SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(good_rest) + 2),
         good_rest + b"\x02\x00"),                                     # truncated TLV header
    ]:
        with pytest.raises(PPError):
            parse_ppv2(bad_hdr, bad_rest)
    bad_ssl = good_rest[:12] + bytes([0x20, 0, 3]) + b"\x07\x00\x00"
    with pytest.raises(PPError):
        parse_ppv2(SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(bad_ssl)), bad_ssl)
