"""`steeldoor audit` judges the open door by the handshake, not by what the
server does afterwards (issue item 8).

A server that completes a handshake without ever sending a CertificateRequest
lets anyone in, whether it then answers, closes silently or resets. A server
that asks but accepts an empty Certificate (optional client auth) does too. A
refusal counts only when the server sends a TLS alert, or treats the probe
otherwise than the control (the valid certificate).

The servers are Python `ssl` servers on 127.0.0.1, one thread per connection,
each limited in time; TLS 1.2 and TLS 1.3 each."""
import json
import socket
import ssl
import struct
import threading
import time

import pytest

import sdlib
from sdlib import run

CERT_PROBES = ("no-cert", "self-signed", "unknown-ca", "expired", "not-yet-valid",
               "serverauth-eku", "forged-signature")
BAD_CERTS = CERT_PROBES[1:]
DOORS = ("OPEN DOOR", "REFUSED LATE")
VERSIONS = ("1.2", "1.3")
HTTP_OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
           b"Connection: close\r\n\r\nok\n")
HTTP_403 = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nno\n")
LATE_S = 1.2      # "late" ending: more than a third of the audit's --timeout 2s


class TlsServer:
    """A TLS server in threads on 127.0.0.1.

    verify: "none" (never sends a CertificateRequest), "optional"
            (CERT_OPTIONAL: asks, accepts an empty Certificate, refuses a bad
            one) or "required" (CERT_REQUIRED).
    then:   what it does after a completed handshake:
            "answer"       read the request, answer HTTP 200, close
            "forbid"       read the request, answer HTTP 403 to everyone, close
            "close"        close at once: no data, no alert, no close_notify
            "reset"        SO_LINGER 0 and close at once: a TCP reset
            "refuse-app"   answer a client that presented a certificate, close
                           at once on one that did not (an application check)
            "late-if-cert" close after LATE_S with a certificate, at once without
            "late"         close after LATE_S, whoever it is
    """

    def __init__(self, pki, verify, then, version):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.minimum_version = v
        ctx.maximum_version = v
        if verify != "none":
            ctx.load_verify_locations(str(pki.ca))
            ctx.verify_mode = ssl.CERT_OPTIONAL if verify == "optional" else ssl.CERT_REQUIRED
        self.ctx = ctx
        self.then = then
        self.stop = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.handlers = []
        self.handshakes = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                raw, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(raw,), daemon=True)
            with self.lock:
                self.handlers.append(t)
            t.start()

    def _handle(self, raw):
        raw.settimeout(3.0)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # OpenSSL has sent its alert, if any
            return
        with self.lock:
            self.handshakes += 1
        try:
            mode = self.then
            has_cert = s.getpeercert(binary_form=True) is not None
            if mode == "refuse-app":
                mode = "answer" if has_cert else "close"
            elif mode == "late-if-cert":
                mode = "late" if has_cert else "close"
            if mode in ("answer", "forbid"):
                buf = b""
                deadline = time.monotonic() + 3.0
                while b"\r\n\r\n" not in buf and len(buf) < 65536 \
                        and time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                s.sendall(HTTP_OK if mode == "answer" else HTTP_403)
            elif mode == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "late":
                self.stop.wait(LATE_S)
        except (ssl.SSLError, OSError):
            pass
        finally:
            s.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.lsock.close()
        with self.lock:
            handlers = list(self.handlers)
        for t in handlers:
            t.join(5)


@pytest.fixture
def tls_server(pki):
    made = []

    def start(verify, then, version):
        s = TlsServer(pki, verify, then, version)
        made.append(s)
        return s

    yield start
    for s in made:
        s.close()


@pytest.fixture
def audit(sd_bin, pki):
    """audit(port) -> (rc, report dict); --timeout 2s, at most 60 s in all."""
    def go(port, wall=60):
        r = run([sd_bin, "audit", "127.0.0.1:%d" % port, "--cacert", pki.ca,
                 "--cert", pki.client_cert, "--key", pki.client_key, "--json",
                 "--timeout", "2s"], timeout=wall)
        err = r.stderr.decode(errors="replace")
        assert not any(p in err for p in sdlib.SAN_PATTERNS), err
        try:
            rep = json.loads(r.stdout.decode())
        except ValueError:
            raise AssertionError("audit printed no JSON (rc=%d)\nstdout:%s\nstderr:%s"
                                 % (r.returncode, r.stdout.decode(errors="replace"), err))
        assert rep["exit_status"] == r.returncode, rep
        return r.returncode, rep
    return go


def probes(rep):
    return {p["name"]: p for p in rep["probes"]}


def table(rep):
    return "\n".join("%-17s %-15s %-6s %s" % (p["name"], p["verdict"],
                                              p.get("certificate_request"), p["observed"])
                     for p in rep["probes"]) + "\nresult: %s" % rep["result"]


# --------------------------------------------------------------------------
# (a) (b) (c) no client auth at all: every certificate probe gets in
# --------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("then", ["answer", "close", "reset"])
def test_no_client_auth_is_open(tls_server, audit, then, version):
    srv = tls_server("none", then, version)
    rc, rep = audit(srv.port)
    p = probes(rep)
    assert rc == 1, table(rep)
    assert p["control"]["verdict"] == "PASS", table(rep)
    assert p["control"]["certificate_request"] is False, table(rep)
    assert "no CertificateRequest" in p["control"]["observed"], table(rep)
    for name in CERT_PROBES:
        assert p[name]["verdict"] == "OPEN DOOR", table(rep)
        assert p[name]["certificate_request"] is False, table(rep)
        assert "without a CertificateRequest" in p[name]["observed"], table(rep)
        assert ("TLSv%s" % version) in p[name]["observed"], table(rep)
    assert rep["tls_version"] == "TLSv%s" % version


# --------------------------------------------------------------------------
# (d) optional client auth: asks, accepts no certificate: no-cert gets in
# --------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("then", ["answer", "close", "reset"])
def test_optional_client_auth_is_open(tls_server, audit, then, version):
    srv = tls_server("optional", then, version)
    rc, rep = audit(srv.port)
    p = probes(rep)
    assert rc == 1, table(rep)
    assert p["control"]["verdict"] == "PASS", table(rep)
    assert p["control"]["certificate_request"] is True, table(rep)
    assert p["no-cert"]["verdict"] == "OPEN DOOR", table(rep)
    assert p["no-cert"]["certificate_request"] is True, table(rep)
    if then != "answer":
        # treated exactly like the control: not a refusal
        assert "as for the control" in p["no-cert"]["observed"], table(rep)
    # a certificate that is there but bad is refused: in the handshake (TLS 1.2)
    # or by an alert right after the client's Finished (TLS 1.3)
    for name in BAD_CERTS:
        assert p[name]["verdict"] == "PASS", table(rep)
        assert "alert" in p[name]["observed"], table(rep)
    assert [n for n, x in p.items() if x["verdict"] in DOORS] == ["no-cert"], table(rep)


# --------------------------------------------------------------------------
# (e) required client auth: no door, whatever it does with the control
# --------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("then", ["answer", "close", "reset"])
def test_required_client_auth_has_no_door(tls_server, audit, then, version):
    srv = tls_server("required", then, version)
    rc, rep = audit(srv.port)
    p = probes(rep)
    assert rc == 0, table(rep)
    assert rep["result"].startswith("no open door"), table(rep)
    assert p["control"]["verdict"] == "PASS", table(rep)
    assert p["control"]["certificate_request"] is True, table(rep)
    for name in CERT_PROBES:
        assert p[name]["verdict"] == "PASS", table(rep)
        assert p[name]["certificate_request"] is True, table(rep)
        assert "alert" in p[name]["observed"], table(rep)
        if version == "1.3":
            assert "refused after TLSv1.3 Finished" in p[name]["observed"], table(rep)
        else:
            assert "refused in the handshake" in p[name]["observed"], table(rep)
    assert p["no-cert"]["observed"].endswith("alert certificate required") or \
        version == "1.2", table(rep)
    assert not [n for n, x in p.items() if x["verdict"] in DOORS], table(rep)


# --------------------------------------------------------------------------
# compared with the control: a different ending is a refusal, the same is not
# --------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_refused_by_the_application_differs_from_control(tls_server, audit, version):
    """Optional at the TLS layer; the application answers a client with a
    certificate and closes on one without. TLS 1.3: the close right after the
    client's Finished is a refusal (the control was answered). TLS 1.2: the
    server's Finished had accepted the client first: REFUSED LATE."""
    srv = tls_server("optional", "refuse-app", version)
    rc, rep = audit(srv.port)
    p = probes(rep)
    obs = p["no-cert"]["observed"]
    assert p["no-cert"]["certificate_request"] is True, table(rep)
    assert "as for the control" not in obs, table(rep)
    if version == "1.3":
        assert p["no-cert"]["verdict"] == "PASS", table(rep)
        assert "refused after TLSv1.3 Finished" in obs and "control: HTTP/1.1 200" in obs, \
            table(rep)
        assert rc == 0, table(rep)
    else:
        assert p["no-cert"]["verdict"] == "REFUSED LATE", table(rep)
        assert rc == 1, table(rep)


@pytest.mark.parametrize("version", VERSIONS)
def test_same_http_refusal_as_control_is_open(tls_server, audit, version):
    """A 403 that the control gets too is not a refusal of the probe."""
    srv = tls_server("optional", "forbid", version)
    rc, rep = audit(srv.port)
    p = probes(rep)
    assert p["control"]["verdict"] == "PASS", table(rep)
    assert "403" in p["control"]["observed"], table(rep)
    assert p["no-cert"]["verdict"] == "OPEN DOOR", table(rep)
    assert "403" in p["no-cert"]["observed"], table(rep)
    assert "as for the control" in p["no-cert"]["observed"], table(rep)
    for name in BAD_CERTS:
        assert p[name]["verdict"] == "PASS", table(rep)
    assert rc == 1, table(rep)


@pytest.mark.parametrize("version", VERSIONS)
def test_same_ending_at_another_time_is_a_refusal(tls_server, audit, version):
    """The control is closed only after a while, the probe at once: the server
    told them apart."""
    srv = tls_server("optional", "late-if-cert", version)
    rc, rep = audit(srv.port)
    p = probes(rep)
    assert "after" in p["control"]["observed"] and "ms, no alert" in \
        p["control"]["observed"], table(rep)
    want = "PASS" if version == "1.3" else "REFUSED LATE"
    assert p["no-cert"]["verdict"] == want, table(rep)
    assert rc == (0 if version == "1.3" else 1), table(rep)


@pytest.mark.parametrize("version", VERSIONS)
def test_same_ending_at_the_same_time_is_open(tls_server, audit, version):
    """Everyone is closed after the same wait: the probe was treated like the
    control, not refused."""
    srv = tls_server("optional", "late", version)
    t0 = time.monotonic()
    rc, rep = audit(srv.port)
    p = probes(rep)
    assert p["no-cert"]["verdict"] == "OPEN DOOR", table(rep)
    assert "as for the control" in p["no-cert"]["observed"], table(rep)
    assert rc == 1, table(rep)
    assert time.monotonic() - t0 < 50


# --------------------------------------------------------------------------
# (f) steeldoor itself
# --------------------------------------------------------------------------

def test_steeldoor_asks_and_refuses(steeldoor, echo_backend, audit):
    """steeldoor sends a CertificateRequest and refuses every bad client by an
    alert. The auditor always offers TLS 1.3, so it negotiates TLS 1.3 with
    steeldoor; steeldoor's TLS 1.2 refusals are covered by test_refusals.py."""
    sd = steeldoor(target=echo_backend.target)
    rc, rep = audit(sd.port)
    p = probes(rep)
    assert rc == 0, table(rep)
    assert p["control"]["certificate_request"] is True, table(rep)
    for name in CERT_PROBES:
        assert p[name]["verdict"] == "PASS", table(rep)
        assert p[name]["certificate_request"] is True, table(rep)
        assert "alert" in p[name]["observed"], table(rep)
