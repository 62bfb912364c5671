"""Review regressions for the admin listener (issue 16).

Each test names the defect it pins down; all of them fail on the build
under review (3cfe9fb) and should pass once the defect is fixed.

- test_head_of_an_error_response_has_no_body: HEAD on a missing page (404)
  or with a body (400) is answered with a body, which RFC 9110 9.3.2
  forbids (mode/admin.c sd_admin_refuse always passes head_only = 0).
- test_metrics_survive_a_large_shared_ca_bundle: a few listeners that share
  a big CA bundle push /metrics past its 8 MiB cap, and then the whole page
  is a 500: Prometheus loses every steeldoor metric, not only the
  certificate gauges (admin_render.c sd_admin_metrics_expiry: one
  steeldoor_certificate_not_after_timestamp_seconds series per CA
  certificate per listener).
- test_readyz_does_not_flap_during_reloads: a scrape that lands while the
  master is inside a stats write (sd_stats_assign at a reload) gets an
  all-zero copy of the master block (stats.c sd_stats_master_read never
  copies while seq is odd), so /readyz says "workers 0/0 alive" and 503
  although every worker runs, and /metrics counters go back to 0.
"""
import datetime
import json
import signal
import socket
import threading
import time

import pytest

import adminlib as al
import sdlib


def unique_ports(n):
    """n distinct free loopback ports (all bound at once while picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listener_yaml(pki, name, port, target, cacert=None):
    return ("  - name: %s\n    listen: \"127.0.0.1:%d\"\n    target: \"%s\"\n"
            "    cert: \"%s\"\n    key: \"%s\"\n    cacert: \"%s\"\n    allow-all: true\n"
            % (name, port, target, pki.server_cert, pki.server_key, cacert or pki.ca))


def raw_exchange(port, data, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return al.read_to_eof(s, timeout)
    finally:
        s.close()


# --------------------------------------------------------------------------
# HEAD
# --------------------------------------------------------------------------

def test_head_of_an_error_response_has_no_body(sd_bin, pki, tmp_path):
    ap, lp = unique_ports(2)
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("workers: 1\ndrain-timeout: 1s\nadmin: \"127.0.0.1:%d\"\nlisteners:\n%s"
                   % (ap, listener_yaml(pki, "web", lp, "127.0.0.1:%d" % sdlib.closed_port())))
    sd = al.start_sd(sd_bin, ["serve", "--config", cfg], tmp_path, "head", wait_ports=[ap])
    try:
        # the control: HEAD on a page has no body
        raw = raw_exchange(ap, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"", raw
        for req in (b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"):
            raw = raw_exchange(ap, req)
            head, sep, body = raw.partition(b"\r\n\r\n")
            assert sep and head.split(b" ")[1] in (b"404", b"400"), raw
            assert body == b"", (
                "a response to HEAD carries %d body bytes (%r) after its head %r: "
                "RFC 9110 9.3.2 forbids a body; a client reading it on a kept-alive "
                "connection takes it for the next response" % (len(body), body, head))
    finally:
        al.stop_sd(sd)


# --------------------------------------------------------------------------
# /metrics and a large CA bundle
# --------------------------------------------------------------------------

def _ca_bundle(path, first, n):
    """first (PEM bytes), then n self-signed CA certificates whose subjects
    are about 250 bytes long (one key: fast)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    k = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    out = [first]
    for i in range(n):
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O" * 60),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "U" * 60),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "L" * 60),
            x509.NameAttribute(NameOID.COMMON_NAME, "filler CA %06d %s" % (i, "C" * 40))])
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(k, hashes.SHA256()))
        out.append(c.public_bytes(serialization.Encoding.PEM))
    path.write_bytes(b"".join(out))


def test_metrics_survive_a_large_shared_ca_bundle(sd_bin, pki, tmp_path):
    """Four listeners trusting one bundle of 5,000 CA certificates (say a
    partner federation's roots): /metrics must still answer 200 with the
    process and connection metrics. Today it is a 500 (the page passes
    8 MiB with 20,004 certificate gauges of ~470 bytes each)."""
    bundle = tmp_path / "federation.pem"
    _ca_bundle(bundle, pki.ca.read_bytes(), 5000)
    ports = unique_ports(5)
    ap, lps = ports[0], ports[1:]
    target = "127.0.0.1:%d" % sdlib.closed_port()
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("workers: 1\ndrain-timeout: 1s\nadmin: \"127.0.0.1:%d\"\nlisteners:\n%s"
                   % (ap, "".join(listener_yaml(pki, "l%d" % i, p, target, bundle)
                                  for i, p in enumerate(lps))))
    sd = sdlib.Steeldoor(sd_bin, ["serve", "--config", cfg], tmp_path, name="bigca")
    try:
        sd.start(wait_ports=[("127.0.0.1", ap)], timeout=120)
        al.wait_until(lambda: sdlib.tcp_accepts("127.0.0.1", ap), 30, "admin accepts")
        r = al.get(ap, "/metrics", timeout=30)
        assert r.status == 200, (
            "GET /metrics with 4 listeners sharing a 5,001-certificate CA bundle: %d %r; "
            "every metric is lost, not only the certificate gauges" % (r.status, r.body[:200]))
        m = al.Metrics(r.text)
        assert m.value("steeldoor_workers") == 1
    finally:
        al.stop_sd(sd)


# --------------------------------------------------------------------------
# /readyz during reloads
# --------------------------------------------------------------------------

def test_readyz_does_not_flap_during_reloads(sd_bin, pki, tmp_path):
    """63 listeners renamed at each reload (so the master's sd_stats_assign
    reuses and zeroes rows while its seqlock is odd), 2 workers, scrapers
    on /readyz and /metrics. No worker ever stops, so /readyz must never
    say the workers are gone, and reloads_total must never go back."""
    ports = unique_ports(64)
    ap, lps = ports[0], ports[1:]
    target = "127.0.0.1:%d" % sdlib.closed_port()
    cfg = tmp_path / "sd.yaml"

    def write(gen):
        text = ("workers: 2\ndrain-timeout: 1s\nwatch: false\nadmin: \"127.0.0.1:%d\"\n"
                "listeners:\n" % ap)
        text += "".join(listener_yaml(pki, "g%d-l%d" % (gen, i), p, target)
                        for i, p in enumerate(lps))
        tmp = tmp_path / "sd.yaml.tmp"
        tmp.write_text(text)
        tmp.replace(cfg)

    write(0)
    sd = al.start_sd(sd_bin, ["serve", "--config", cfg], tmp_path, "flap", wait_ports=[ap])
    stop = threading.Event()
    problems, counts = [], {"readyz": 0, "metrics": 0}
    lock = threading.Lock()

    def readyz_loop():
        while not stop.is_set():
            try:
                r = al.get(ap, "/readyz", timeout=20)
            except (OSError, TimeoutError) as e:
                with lock:
                    problems.append("readyz: %r" % e)
                continue
            j = r.json()
            w = [c for c in j["checks"] if c["name"] == "workers"][0]
            with lock:
                counts["readyz"] += 1
                if not w["ok"] or not w["detail"].startswith("2/2"):
                    problems.append("readyz %d workers check %s" % (r.status, json.dumps(w)))

    def metrics_loop():
        last = 0
        while not stop.is_set():
            try:
                r = al.get(ap, "/metrics", timeout=20)
            except (OSError, TimeoutError) as e:
                with lock:
                    problems.append("metrics: %r" % e)
                continue
            m = al.Metrics(r.text)
            ok = m.v("steeldoor_reloads_total", result="ok")
            with lock:
                counts["metrics"] += 1
                if ok < last:
                    problems.append("steeldoor_reloads_total{result=ok} went back %d -> %d "
                                    "(workers %s, start_time %s)"
                                    % (last, ok, m.value("steeldoor_workers"),
                                       m.value("steeldoor_start_time_seconds")))
            last = max(last, ok)

    threads = [threading.Thread(target=readyz_loop, daemon=True) for _ in range(5)]
    threads.append(threading.Thread(target=metrics_loop, daemon=True))
    try:
        for t in threads:
            t.start()
        for gen in range(1, 31):
            write(gen)
            sd.signal(signal.SIGHUP)
            time.sleep(0.7)
        stop.set()
        for t in threads:
            t.join(30)
        assert counts["readyz"] > 100, counts
        flaps = [p for p in problems if "workers check" in p or "went back" in p]
        assert not flaps, ("%d of %d scrapes saw the master block zeroed (seqlock read "
                           "gave up without a copy):\n%s"
                           % (len(flaps), counts["readyz"] + counts["metrics"],
                              "\n".join(flaps[:5])))
    finally:
        stop.set()
        al.stop_sd(sd)


# --------------------------------------------------------------------------
# the admin listener at the connection cap
# --------------------------------------------------------------------------

def test_healthz_answers_when_the_listeners_are_at_max_conns(sd_bin, pki, tmp_path, good_ctx):
    """max-conns is the worker's cap over every listener, the admin listener
    included (worker.c sd_worker_accept: `while (w->conns.n < w->conn_cap)`).
    When client traffic fills it, /healthz and /metrics queue in the kernel
    like any client: a liveness probe then fails on a gateway that is merely
    busy (and gets it restarted, dropping every connection), and metrics go
    blind exactly during the overload they should show."""
    backend = sdlib.Backend()
    ap, lp = unique_ports(2)
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("workers: 1\ndrain-timeout: 1s\nmax-conns: 2\nadmin: \"127.0.0.1:%d\"\n"
                   "listeners:\n%s" % (ap, listener_yaml(pki, "web", lp, backend.target)))
    sd = al.start_sd(sd_bin, ["serve", "--config", cfg], tmp_path, "cap", wait_ports=[ap, lp])
    held = []
    try:
        assert al.get(ap, "/healthz").status == 200
        for i in range(2):
            s = sdlib.tls_connect(good_ctx, lp)
            assert sdlib.echo_roundtrip(s, b"hold-%d\n" % i) == b"hold-%d\n" % i
            held.append(s)
        try:
            r = al.get(ap, "/healthz", timeout=3)
        except (OSError, TimeoutError) as e:
            pytest.fail("GET /healthz while two client connections fill max-conns: %r; "
                        "the admin listener shares the clients' cap" % (e,))
        assert r.status == 200 and r.body == b"ok\n", r
    finally:
        for s in held:
            s.close()
        try:
            al.stop_sd(sd)
        finally:
            backend.close()
