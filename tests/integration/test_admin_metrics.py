"""The admin listener's counters against what clients really did (issue 16).

Two workers, a bounded load of admitted mTLS connections over TLS 1.3 and
1.2 (most resumed from a TLS session, as the client saw it) and of refused
ones of five kinds, with scrapes during the load: every counter must equal
what the clients counted, exactly, once everything closed (counters are per
worker in shared memory and summed by whichever worker answers the scrape).

Then: listeners whose names differ only after 128 bytes, the expiry gauges
(a CRL and a server certificate replaced on disk move their gauges; an
expired server certificate at start; a server certificate or a CRL that
expires while steeldoor runs, with and without crl-grace), HTTP mode's
responses by status, bytes and second-factor failures by kind (API keys and
JWTs), a connector's counters under its own name, and its warm connections
in connections_open.
"""
import datetime
import os
import socket
import ssl
import threading
import time

import pytest

import adminlib as al
import sdlib
from conftest import (atomic_write, build_crl, crl_pem, issue_cert, root_issuer, whole_now)
from cryptography.x509.oid import ExtendedKeyUsageOID
from http_apps import authfix as af
from http_apps import sdhttp

BILLING = "spiffe://example.org/billing"

COUNTERS = ["steeldoor_connections_accepted_total", "steeldoor_bytes_received_total",
            "steeldoor_bytes_sent_total", "steeldoor_handshake_duration_seconds_count"]


def _args(pki, lp, ap, target, rules=("--allow-uri", BILLING), workers=2, extra=()):
    return ["serve", "--listen", "127.0.0.1:%d" % lp, "--target", target, "--name", "api",
            "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
            "--workers", str(workers), "--drain-timeout", "2s",
            "--admin", "127.0.0.1:%d" % ap] + list(rules) + list(extra)


def _quiet(ap, listener="api", timeout=10.0):
    """Scrapes until every accepted connection of listener has closed and
    been counted (open 0, closed == accepted); returns that scrape."""
    return al.wait_metrics(
        ap, lambda m: m.v("steeldoor_connections_open", listener=listener) == 0 and
        m.total("steeldoor_connections_total", listener=listener) ==
        m.v("steeldoor_connections_accepted_total", listener=listener),
        timeout=timeout, what="listener %s quiet (open 0, closed == accepted)" % listener)


def _d(after, before, name, **labels):
    return after.v(name, **labels) - before.v(name, **labels)


# --------------------------------------------------------------------------
# counters under load
# --------------------------------------------------------------------------

OK_THREADS, OK_PER_THREAD = 8, 25          # 200 admitted connections
REFUSED_EACH = 6                            # per refusal kind


def test_counters_add_up_under_load(steeldoor, pki, client_ctx):
    backend = sdlib.SelectEchoBackend()
    try:
        _counters_under_load(steeldoor, pki, client_ctx, backend)
    finally:
        backend.close()


def _counters_under_load(steeldoor, pki, client_ctx, backend):
    lp, ap = sdlib.free_port(), sdlib.free_port()
    sd = steeldoor(args=_args(pki, lp, ap, backend.target),
                   wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
    base = _quiet(ap)
    good13 = client_ctx()
    # two threads speak TLS 1.2 (resumption by ticket there too)
    good12 = client_ctx(max_version=ssl.TLSVersion.TLSv1_2)
    kinds = {
        "no_client_certificate": client_ctx(cert=None),
        "unknown_ca": client_ctx(cert=pki.othca_client),
        "not_authorized": client_ctx(cert=pki.pygood),   # same CA, not billing
        "certificate_expired": client_ctx(cert=pki.expired),
        "plaintext_http": None,
    }
    load = al.Load()

    def admitted(t):
        sess = None
        ctx = good12 if t < 2 else good13
        for i in range(OK_PER_THREAD):
            payload = bytes([65 + t]) * (50 + 37 * i + t)   # sizes differ: sums are exact
            # every fourth connection starts afresh; the others resume the last session
            s = al.ok_conn(load, ctx, lp, payload, session=None if i % 4 == 0 else sess)
            sess = s or sess

    def refused(kind):
        for _ in range(REFUSED_EACH):
            if kinds[kind] is None:
                al.plaintext_conn(load, lp, kind)
            else:
                al.refused_conn(load, kinds[kind], lp, kind)

    scrapes, scrape_err = [], []
    stop = threading.Event()

    def scraper():
        while not stop.is_set():
            t = time.monotonic()
            try:
                m = al.scrape(ap, timeout=3)
            except Exception as e:  # reported below
                scrape_err.append(repr(e))
                return
            scrapes.append((time.monotonic() - t, m))
            time.sleep(0.05)

    sc = threading.Thread(target=scraper, daemon=True)
    sc.start()
    try:
        al.run_threads([lambda t=t: admitted(t) for t in range(OK_THREADS)] +
                       [lambda k=k: refused(k) for k in kinds], timeout=60)
    finally:
        stop.set()
        sc.join(5)
    assert not load.failed, "client failures: %s" % load.failed[:10]
    n_ok = OK_THREADS * OK_PER_THREAD
    assert load.ok == n_ok
    assert load.refused == {k: REFUSED_EACH for k in kinds}, load.refused
    assert load.resumed > n_ok // 4, "too few resumptions to test their counting: %d" % \
        load.resumed

    # scrapes during the load: answered, quickly, and never going back
    assert not scrape_err, scrape_err
    assert len(scrapes) >= 3, "only %d scrapes during the load" % len(scrapes)
    slow = [t for t, _ in scrapes if t > 2.0]
    assert not slow, "scrapes during the load took %s s" % slow
    seq = [base] + [m for _, m in scrapes]
    for name in COUNTERS + ["steeldoor_handshakes_total", "steeldoor_connections_total"]:
        vals = [m.total(name, listener="api") for m in seq]
        assert vals == sorted(vals), "%s went back during the load: %s" % (name, vals)

    end = _quiet(ap)
    n_refused = sum(load.refused.values())
    assert load.connected == n_ok + n_refused
    assert _d(end, base, "steeldoor_connections_accepted_total", listener="api") == \
        load.connected
    assert _d(end, base, "steeldoor_connections_total", listener="api", result="ok",
              reason="none") == n_ok
    for kind, n in load.refused.items():
        assert _d(end, base, "steeldoor_connections_total", listener="api", result="refused",
                  reason=kind) == n, kind
    closed = end.total("steeldoor_connections_total", listener="api") - \
        base.total("steeldoor_connections_total", listener="api")
    assert closed == load.connected, "closed connections %d, clients made %d" % (
        closed, load.connected)
    assert _d(end, base, "steeldoor_connections_total", listener="api", result="error") == 0
    full = _d(end, base, "steeldoor_handshakes_total", listener="api", kind="full")
    resumed = _d(end, base, "steeldoor_handshakes_total", listener="api", kind="resumed")
    assert resumed == load.resumed, "resumed handshakes: steeldoor says %d, clients saw %d" % (
        resumed, load.resumed)
    assert full + resumed == n_ok, "handshakes full %d + resumed %d != %d admitted" % (
        full, resumed, n_ok)
    assert _d(end, base, "steeldoor_handshake_duration_seconds_count", listener="api") == n_ok
    assert _d(end, base, "steeldoor_handshake_duration_seconds_bucket", listener="api",
              le="+Inf") == n_ok
    hs_sum = _d(end, base, "steeldoor_handshake_duration_seconds_sum", listener="api")
    assert 0 < hs_sum < n_ok * 5.0, hs_sum
    assert _d(end, base, "steeldoor_bytes_received_total", listener="api") == load.sent
    assert _d(end, base, "steeldoor_bytes_sent_total", listener="api") == load.received
    assert end.v("steeldoor_connections_open", listener="api") == 0
    assert _d(end, base, "steeldoor_backend_connect_failures_total", listener="api") == 0
    # both workers took connections (the sum is over two blocks, not one)
    pids = {e.get("pid") for e in sd.conn_logs() if e.get("listener") == "api"}
    assert len(pids) == 2, "connections were served by %d worker(s): %s" % (len(pids), pids)
    # the conn lines say the same as the counters
    def ok_lines():
        return [e for e in sd.conn_logs() if e.get("listener") == "api"
                and e.get("result") == "ok"]
    try:
        al.wait_until(lambda: len(ok_lines()) >= n_ok, 5, "conn lines")
    except AssertionError:
        pass
    lines = ok_lines()
    assert len(lines) == n_ok and sum(1 for e in lines if e.get("resumed")) == resumed, \
        (len(lines), sum(1 for e in lines if e.get("resumed")), n_ok, resumed)
    rc, out = al.promtool_check(end.text)
    assert rc == 0, out


def test_scrapes_under_load_from_both_workers_agree(steeldoor, pki, client_ctx, echo_backend):
    """With two workers, consecutive scrapes may be answered by either: each
    sums both blocks, so with no traffic every scrape gives the same numbers."""
    lp, ap = sdlib.free_port(), sdlib.free_port()
    sd = steeldoor(args=_args(pki, lp, ap, echo_backend.target, rules=["--allow-all"]),
                   wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
    good = client_ctx()
    load = al.Load()
    al.run_threads([lambda: [al.ok_conn(load, good, lp, b"x" * 100) for _ in range(10)]
                    for _ in range(4)], timeout=30)
    assert load.ok == 40, load.failed
    _quiet(ap)
    seen = []
    for _ in range(12):
        m = al.scrape(ap)
        seen.append(tuple(m.v(n, listener="api") for n in COUNTERS))
    assert len(set(seen)) == 1, "idle scrapes disagree: %s" % sorted(set(seen))
    # and the scrapes were answered by both workers
    pids = {e.get("pid") for e in sd.logs() if e.get("event") == "admin"}
    assert len(pids) == 2, "admin requests answered by %s" % pids


def test_long_listener_names_keep_their_own_counters(steeldoor, pki, client_ctx,
                                                     echo_backend):
    """Two listeners whose names differ only after their 128th byte: each
    must have its own counters (the configuration takes such names; the
    counter rows key on the name)."""
    stem = "svc-" + "x" * 130
    names = [stem + "-alpha", stem + "-beta"]
    l1, l2, ap = sdlib.free_port(), sdlib.free_port(), sdlib.free_port()
    lst = "".join("""  - name: %s
    listen: "127.0.0.1:%d"
    target: "%s"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    allow-all: true
""" % (n, p, echo_backend.target, pki.server_cert, pki.server_key, pki.ca)
                  for n, p in zip(names, (l1, l2)))
    steeldoor(config='workers: 1\ndrain-timeout: 2s\nadmin: "127.0.0.1:%d"\nlisteners:\n%s'
              % (ap, lst), wait_ports=[("127.0.0.1", ap)])
    good = client_ctx()
    for i in range(3):
        with sdlib.tls_connect(good, l1) as s:
            assert sdlib.echo_roundtrip(s, b"only-alpha\n") == b"only-alpha\n"
    m = al.wait_metrics(ap, lambda m: m.v("steeldoor_connections_total", listener=names[0],
                                          result="ok", reason="none") >= 3, timeout=5,
                        what="alpha's three connections")
    got = {n: m.v("steeldoor_connections_accepted_total", listener=n) for n in names}
    assert got == {names[0]: 3, names[1]: 0}, \
        "accepted_total: alpha %d, beta %d (beta had no connection)" % (got[names[0]],
                                                                        got[names[1]])


# --------------------------------------------------------------------------
# expiry gauges and readiness
# --------------------------------------------------------------------------

def test_crl_gauge_follows_the_file(steeldoor, pki, tmp_path, echo_backend):
    ca = root_issuer(pki)
    now = whole_now()
    nu1 = now + datetime.timedelta(days=2, seconds=11)
    nu2 = now + datetime.timedelta(days=5, hours=3, seconds=29)
    live = tmp_path / "live"
    crl = live / "dev.crl"
    live.mkdir()
    atomic_write(crl, crl_pem(build_crl(ca, next_update=nu1, number=1)))
    crt, key = live / "srv.crt", live / "srv.key"
    atomic_write(crt, pki.server_cert.read_bytes())
    atomic_write(key, pki.server_key.read_bytes())
    os.chmod(key, 0o600)
    lp, ap = sdlib.free_port(), sdlib.free_port()
    args = _args(pki, lp, ap, echo_backend.target, rules=["--allow-all"], workers=1,
                 extra=["--crl", crl])
    args[args.index("--cert") + 1], args[args.index("--key") + 1] = crt, key
    steeldoor(args=args, wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])

    def gauge(m):
        s = m.find("steeldoor_crl_next_update_timestamp_seconds", listener="api")
        assert len(s) == 1, s
        assert s[0].labels["file"] == str(crl), s[0].labels
        assert s[0].labels["issuer"] == pki.ca_cert_obj.subject.rfc4514_string(), s[0].labels
        return s[0].value

    assert gauge(al.scrape(ap)) == al.epoch(nu1)
    # a newer CRL with another nextUpdate: the watcher reloads, the gauge moves
    atomic_write(crl, crl_pem(build_crl(ca, next_update=nu2, number=2)))
    m = al.wait_metrics(ap, lambda m: gauge(m) != al.epoch(nu1), timeout=10,
                        what="the CRL gauge after the file changed")
    assert gauge(m) == al.epoch(nu2), "gauge %r, file says %d" % (gauge(m), al.epoch(nu2))
    assert m.value("steeldoor_generation") == 2 and m.value("steeldoor_config_stale") == 0
    assert m.value("steeldoor_reloads_total", result="ok") == 1
    st = al.get(ap, "/status").json()
    api = [l for l in st["listeners"] if l["name"] == "api"][0]
    assert [c["next_update"] for c in api["crl_files"]] == [al.rfc3339(al.epoch(nu2))], api
    assert st["generation"] == 2 and st["last_reload"]["result"] == "ok", st

    # the server certificate rotated on disk: its gauge follows, the old one is gone
    na = now + datetime.timedelta(days=9, seconds=41)
    new = issue_cert(tmp_path / "new", "srv2", ca, eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                     dns=["localhost"], not_after=na)
    atomic_write(key, new.keyfile.read_bytes())
    atomic_write(crt, new.crt.read_bytes())
    m = al.wait_metrics(ap, lambda m: m.value("steeldoor_generation") >= 3 and
                        m.find("steeldoor_certificate_not_after_timestamp_seconds",
                               listener="api", role="server",
                               sha256=al.der_sha256(new.cert)), timeout=10,
                        what="the new server certificate's gauge")
    srv = m.find("steeldoor_certificate_not_after_timestamp_seconds", listener="api",
                 role="server")
    assert len(srv) == 1 and srv[0].value == al.epoch(na), srv
    assert int(srv[0].labels["serial"], 16) == new.cert.serial_number, srv
    assert m.value("steeldoor_config_stale") == 0


def test_expired_server_certificate_refused_at_start(sd_bin, pki, tmp_path):
    """steeldoor refuses to start with an expired server certificate (it does
    not start and report it in /readyz): exit 1, the file named."""
    lp, ap = sdlib.free_port(), sdlib.free_port()
    crt, key = pki.expired_server
    args = ["serve", "--listen", "127.0.0.1:%d" % lp, "--target", "127.0.0.1:9", "--cert", crt,
            "--key", key, "--cacert", pki.ca, "--allow-all", "--workers", "1",
            "--admin", "127.0.0.1:%d" % ap]
    rc, out = al.start_fails(sd_bin, args, cwd=tmp_path)
    assert rc not in (None, 0), "started with an expired server certificate:\n%s" % out[-2000:]
    assert str(crt) in out and "expired" in out, out[-2000:]
    assert al.listening(ap) == [] and al.listening(lp) == []


def test_server_certificate_expiring_while_running_fails_readyz(steeldoor, pki, tmp_path,
                                                                 echo_backend):
    now = whole_now()
    na = now + datetime.timedelta(seconds=4)
    c = issue_cert(tmp_path, "soon", root_issuer(pki), eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                   dns=["localhost"], not_before=now - datetime.timedelta(days=1),
                   not_after=na)
    lp, ap = sdlib.free_port(), sdlib.free_port()
    args = ["serve", "--listen", "127.0.0.1:%d" % lp, "--target", echo_backend.target,
            "--name", "api", "--cert", c.crt, "--key", c.keyfile, "--cacert", pki.ca,
            "--allow-all", "--workers", "1", "--admin", "127.0.0.1:%d" % ap]
    steeldoor(args=args, wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
    st, j = al.wait_readyz(ap, lambda st, j: al.check(j, "backends")["ok"], timeout=10,
                           what="backend probed")
    assert st == 200 and al.check(j, "certificates")["ok"], j
    m = al.scrape(ap)
    assert m.value("steeldoor_certificate_not_after_timestamp_seconds", listener="api",
                   role="server") == al.epoch(na)
    time.sleep(max(0.0, al.epoch(na) - time.time() + 0.3))
    st, j = al.readyz(ap)
    ck = al.check(j, "certificates")
    assert st == 503 and not ck["ok"], j
    assert "listener api" in ck["detail"] and "CN=soon" in ck["detail"] and \
        "expired" in ck["detail"] and str(c.crt) in ck["detail"], ck
    for other in ("config", "backends", "workers"):
        assert al.check(j, other)["ok"], j


@pytest.mark.parametrize("grace", [None, "1h"])
def test_stale_crl_fails_readyz(steeldoor, pki, tmp_path, echo_backend, grace):
    """A CRL that passes its nextUpdate while steeldoor runs: /readyz 503,
    the certificates check naming the CRL; clients it covers are refused.
    With crl-grace, readiness and admission agree the other way: still
    ready, still admitted."""
    ca = root_issuer(pki)
    now = whole_now()
    nu = now + datetime.timedelta(seconds=4)
    crl = tmp_path / "dev.crl"
    crl.write_bytes(crl_pem(build_crl(ca, last_update=now - datetime.timedelta(hours=1),
                                      next_update=nu)))
    lp, ap = sdlib.free_port(), sdlib.free_port()
    extra = ["--crl", crl] + (["--crl-grace", grace] if grace else [])
    sd = steeldoor(args=_args(pki, lp, ap, echo_backend.target, rules=["--allow-all"],
                              workers=1, extra=extra),
                   wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
    st, j = al.wait_readyz(ap, lambda st, j: al.check(j, "backends")["ok"], timeout=10,
                           what="backend probed")
    assert st == 200, j
    time.sleep(max(0.0, al.epoch(nu) - time.time() + 0.3))
    st, j = al.readyz(ap)
    good = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    if grace:
        assert st == 200 and al.check(j, "certificates")["ok"], j
        with sdlib.tls_connect(good, lp) as s:
            assert sdlib.echo_roundtrip(s, b"in-grace\n") == b"in-grace\n"
        return
    ck = al.check(j, "certificates")
    assert st == 503 and not ck["ok"], j
    assert "listener api" in ck["detail"] and str(crl) in ck["detail"] and \
        "nextUpdate" in ck["detail"], ck
    assert al.rfc3339(al.epoch(nu)) in ck["detail"], ck
    m = al.scrape(ap)
    assert m.value("steeldoor_crl_next_update_timestamp_seconds", listener="api") == al.epoch(nu)
    # what readyz says is what clients get
    r = sdlib.probe_refused_tls(good, lp)
    assert r["data"] == b"", r
    e = sd.wait_conn("127.0.0.1:%d" % r["local_port"])
    assert e.get("reason") == "crl_expired", e


# --------------------------------------------------------------------------
# HTTP mode: responses by status, second-factor failures by kind
# --------------------------------------------------------------------------

def _by_path(req, backend):
    if req.target == "/a/close":
        return None                      # the backend hangs up: steeldoor answers 502
    code = {"/a/404": 404, "/a/500": 500, "/a/204": 204}.get(req.target, 200)
    if code == 204:
        return b"HTTP/1.1 204 No Content\r\n\r\n"
    body = b"status %d\n" % code
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (code, len(body), body)


def test_http_responses_and_auth_failures(steeldoor, pki, tmp_path):
    rec = sdhttp.HttpRecorder(_by_path)
    try:
        _http_counts(steeldoor, pki, tmp_path, rec)
    finally:
        rec.close()


def _http_counts(steeldoor, pki, tmp_path, rec):
    key = af.new_key()
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": key, "bind": [
        "uri:" + BILLING]}])
    lp, ap = sdlib.free_port(), sdlib.free_port()
    args = _args(pki, lp, ap, rec.target, rules=["--allow-all"], workers=2,
                 extra=["--http", "--api-keys", kf])
    steeldoor(args=args, wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
    base = _quiet(ap)
    ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
    good = ("Authorization", "Bearer " + key)
    want, sent, received, conns = {}, 0, 0, 0

    def one(c, raw, code, method="GET"):
        nonlocal sent, received
        c.send(raw)
        r = c.response(method)
        assert r.status == code, (raw[:200], r)
        want[code] = want.get(code, 0) + 1
        sent += len(raw)
        received += len(r.raw_head) + len(r.raw_body)
        return r

    def req(path, hdrs):
        return sdhttp.build_request("GET", path, hdrs)

    # five requests on one keep-alive connection: five responses
    with sdhttp.H1(ctx, lp) as c:
        conns += 1
        for path, code in (("/a/ok", 200), ("/a/404", 404), ("/a/ok", 200), ("/a/204", 204),
                           ("/a/500", 500)):
            one(c, req(path, [good]), code)
    plan = ([("/a/ok", [good], 200)] * 4 + [("/a/close", [good], 502)] * 2 +
            [("/a/ok", [], 401)] * 4 +                                           # auth_missing
            [("/a/ok", [("Authorization", "Bearer " + af.new_key())], 401)] * 5)   # unknown
    for path, hdrs, code in plan:
        with sdhttp.H1(ctx, lp) as c:
            conns += 1
            one(c, req(path, hdrs), code)
    # a request steeldoor itself refuses as malformed (a space in a field name)
    with sdhttp.H1(ctx, lp) as c:
        conns += 1
        one(c, b"GET /a/ok HTTP/1.1\r\nHost: localhost\r\nBad Field: x\r\n\r\n", 400)
    end = _quiet(ap)
    got = {int(s.labels["code"]): _d(end, base, "steeldoor_http_responses_total",
                                     listener="api", code=s.labels["code"])
           for s in end.find("steeldoor_http_responses_total", listener="api")}
    got = {k: v for k, v in got.items() if v}
    assert got == want, "http_responses_total by code %s, clients saw %s" % (got, want)
    assert _d(end, base, "steeldoor_auth_failures_total", listener="api",
              kind="auth_missing") == 4
    assert _d(end, base, "steeldoor_auth_failures_total", listener="api",
              kind="apikey_unknown") == 5
    others = {s.labels["kind"]: s.value for s in
              end.find("steeldoor_auth_failures_total", listener="api")
              if s.labels["kind"] not in ("auth_missing", "apikey_unknown")}
    assert not any(others.values()), others
    assert set(others) >= {"apikey_revoked", "jwt_expired", "other"}, sorted(others)
    # refused and malformed requests never reached the application
    # (a GET whose backend hung up may be tried again on a fresh connection)
    seen = sorted(r.target for r in rec.reqs() if r.target != "/a/close")
    assert seen == sorted(["/a/ok"] * 6 + ["/a/404", "/a/204", "/a/500"]), seen
    assert _d(end, base, "steeldoor_connections_accepted_total", listener="api") == conns
    assert _d(end, base, "steeldoor_bytes_received_total", listener="api") == sent, \
        "bytes_received_total: steeldoor %d, the clients sent %d" % (
            _d(end, base, "steeldoor_bytes_received_total", listener="api"), sent)
    assert _d(end, base, "steeldoor_bytes_sent_total", listener="api") == received, \
        "bytes_sent_total: steeldoor %d, the clients received %d" % (
            _d(end, base, "steeldoor_bytes_sent_total", listener="api"), received)
    assert end.value("steeldoor_listener_info", listener="api", mode="http") == 1
    # the admin listener and a TCP listener have no HTTP or auth samples
    assert end.find("steeldoor_http_responses_total", listener="admin") == []
    assert end.find("steeldoor_auth_failures_total", listener="admin") == []
    rc, out = al.promtool_check(end.text)
    assert rc == 0, out


def test_jwt_failures_by_kind(steeldoor, pki, tmp_path):
    """Tokens refused for different reasons land under their own kinds."""
    rec = sdhttp.HttpRecorder(_by_path)
    try:
        signer, stranger = af.Signer("ES256", "es-1"), af.Signer("ES256", "es-x")
        jwks = af.write_jwks(tmp_path / "jwks.json", [signer])
        lp, ap = sdlib.free_port(), sdlib.free_port()
        steeldoor(args=_args(pki, lp, ap, rec.target, rules=["--allow-all"], workers=1,
                             extra=["--http", "--jwks", jwks, "--jwt-issuer", af.ISS,
                                    "--jwt-audience", af.AUD]),
                  wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
        base = _quiet(ap)
        ctx = sdlib.client_ctx(pki.ca, pki.client_cert, pki.client_key)
        who = af.pki_client(pki, pki.client_cert, pki.client_key, BILLING)
        now = int(time.time())
        plan = [
            (af.mint(signer, af.claims_for(who)), 200, None),
            (af.mint(signer, af.claims_for(who)), 200, None),
            (af.mint(signer, af.claims_for(who, iat=now - 900, exp=now - 600)), 401,
             "jwt_expired"),
            (af.mint(signer, af.claims_for(who, aud="someone-else")), 401,
             "jwt_wrong_audience"),
            (af.mint(signer, af.claims_for(who, aud="someone-else")), 401,
             "jwt_wrong_audience"),
            (af.mint(stranger, af.claims_for(who)), 401, "jwt_unknown_key"),
            ("not.a.token", 401, "jwt_malformed"),
        ]
        want = {}
        for tok, code, kind in plan:
            with sdhttp.H1(ctx, lp) as c:
                r = c.request("GET", "/a/ok", headers=[("Authorization", "Bearer " + tok)])
            assert r.status == code, (kind, r)
            if kind:
                want[kind] = want.get(kind, 0) + 1
        end = _quiet(ap)
        got = {s.labels["kind"]: _d(end, base, "steeldoor_auth_failures_total", listener="api",
                                    kind=s.labels["kind"])
               for s in end.find("steeldoor_auth_failures_total", listener="api")}
        assert {k: v for k, v in got.items() if v} == want, (got, want)
        assert _d(end, base, "steeldoor_http_responses_total", listener="api", code="401") == \
            sum(want.values())
        assert _d(end, base, "steeldoor_http_responses_total", listener="api", code="200") == 2
    finally:
        rec.close()


# --------------------------------------------------------------------------
# a connector's counters
# --------------------------------------------------------------------------

def test_connector_counters(steeldoor, pki, tmp_path, echo_backend):
    lp, cp, ap = sdlib.free_port(), sdlib.free_port(), sdlib.free_port()
    cfg = """workers: 2
drain-timeout: 2s
admin: "127.0.0.1:%d"
listeners:
  - name: api
    listen: "127.0.0.1:%d"
    target: "%s"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    allow-uri: %s
connectors:
  - name: to-api
    listen: "127.0.0.1:%d"
    target: "127.0.0.1:%d"
    server-name: localhost
    cert: "%s"
    key: "%s"
    cacert: "%s"
""" % (ap, lp, echo_backend.target, pki.server_cert, pki.server_key, pki.ca, BILLING, cp, lp,
       pki.client_cert, pki.client_key, pki.ca)
    steeldoor(config=cfg, wait_ports=[("127.0.0.1", lp), ("127.0.0.1", cp), ("127.0.0.1", ap)])
    base_api = _quiet(ap, "api")
    base = _quiet(ap, "to-api")
    n, sent = 12, 0
    for i in range(n):
        payload = b"c%d-" % i * (10 + i)
        with socket_conn(cp) as s:
            s.sendall(payload)
            assert sdlib.recv_exact(s, len(payload)) == payload
        sent += len(payload)
    _quiet(ap, "to-api")
    end = _quiet(ap, "api")
    info = end.find("steeldoor_listener_info", listener="to-api")
    assert len(info) == 1 and info[0].labels["mode"] == "connect", info
    assert info[0].labels["listen"] == "127.0.0.1:%d" % cp
    for name, want in (("steeldoor_connections_accepted_total", n),
                       ("steeldoor_bytes_received_total", sent),
                       ("steeldoor_bytes_sent_total", sent)):
        assert _d(end, base, name, listener="to-api") == want, name
    assert _d(end, base, "steeldoor_connections_total", listener="to-api", result="ok",
              reason="none") == n
    hs = _d(end, base, "steeldoor_handshakes_total", listener="to-api", kind="full") + \
        _d(end, base, "steeldoor_handshakes_total", listener="to-api", kind="resumed")
    assert hs == n and \
        _d(end, base, "steeldoor_handshake_duration_seconds_count", listener="to-api") == n
    # its TLS peer, the api listener, saw the same connections
    assert _d(end, base_api, "steeldoor_connections_accepted_total", listener="api") == n
    assert _d(end, base_api, "steeldoor_connections_total", listener="api", result="ok",
              reason="none") == n
    assert _d(end, base_api, "steeldoor_handshakes_total", listener="api", kind="resumed") == \
        _d(end, base, "steeldoor_handshakes_total", listener="to-api", kind="resumed")
    # its certificate is ours as a client
    roles = {s.labels["role"] for s in
             end.find("steeldoor_certificate_not_after_timestamp_seconds", listener="to-api")}
    assert "client" in roles and "server" not in roles, roles
    st = al.get(ap, "/status").json()
    c = [l for l in st["listeners"] if l["name"] == "to-api"][0]
    assert c["mode"] == "connect" and "verify_rules" in c, c


def socket_conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def test_warm_connector_open_gauge(steeldoor, pki, echo_backend):
    """docs/operations.md: steeldoor_connections_open is "accepted and not yet
    closed". A connector's warm connections (made ahead, before any caller)
    are not accepted connections: with no caller the gauge must say 0, and
    with two callers held open, 2."""
    lp, cp, ap = sdlib.free_port(), sdlib.free_port(), sdlib.free_port()
    cfg = """workers: 1
drain-timeout: 2s
admin: "127.0.0.1:%d"
listeners:
  - name: api
    listen: "127.0.0.1:%d"
    target: "%s"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    allow-all: true
connectors:
  - name: to-api
    listen: "127.0.0.1:%d"
    target: "127.0.0.1:%d"
    server-name: localhost
    cert: "%s"
    key: "%s"
    cacert: "%s"
    warm: 2
""" % (ap, lp, echo_backend.target, pki.server_cert, pki.server_key, pki.ca, cp, lp,
       pki.client_cert, pki.client_key, pki.ca)
    steeldoor(config=cfg, wait_ports=[("127.0.0.1", lp), ("127.0.0.1", ap)])
    # the warm connections are up once the api listener has admitted two
    al.wait_metrics(ap, lambda m: m.v("steeldoor_connections_open", listener="api") >= 2,
                    timeout=5, what="two warm connections held by the api listener")

    def open_vs_accounted(m):
        acc = m.v("steeldoor_connections_accepted_total", listener="to-api")
        closed = m.total("steeldoor_connections_total", listener="to-api")
        return m.v("steeldoor_connections_open", listener="to-api"), acc - closed

    m = al.scrape(ap)
    got, want = open_vs_accounted(m)
    assert want == 0
    assert got == want, ("connections_open{listener=\"to-api\"} is %d with no caller "
                         "connected (accepted - closed = %d): warm connections are counted "
                         "as open" % (got, want))
    callers = [socket_conn(cp) for _ in range(2)]
    try:
        for i, c in enumerate(callers):
            c.sendall(b"held-%d\n" % i)
            assert sdlib.recv_exact(c, 7) == b"held-%d\n" % i
        m = al.wait_metrics(ap, lambda m: m.v("steeldoor_connections_accepted_total",
                                              listener="to-api") == 2, timeout=5,
                            what="two callers accepted")
        time.sleep(0.3)   # the connector makes new warm connections meanwhile
        got, want = open_vs_accounted(al.scrape(ap))
        assert (got, want) == (2, 2), "open %d with %d callers connected" % (got, want)
    finally:
        for c in callers:
            c.close()
