"""The admin listener (issue 16): what it serves and whom it serves.

Endpoints on a plaintext loopback admin listener: /healthz, /metrics (checked
by `promtool check metrics` and parsed by prometheus_client: every family
with its type, label values escaped), /status (certificates compared with
the files: DER SHA-256, serial, notAfter; CRLs with their exact dates), HEAD,
404, 405 with Allow, a request with a body, an oversized head (431), one
request per connection, and silent or trickling clients that must neither
block scrapes nor stay forever.

Who may reach it: every refusal at start (plaintext on a non-loopback
address, half a TLS setup, rules or CRLs without TLS, a target, two admins,
unknown keys, TLS without any allow rule) exits non-zero naming the problem
and leaves nothing listening; a mutual-TLS admin refuses a client without a
certificate, from another CA (the listeners' CA included), not matching its
allow rule, or revoked by its CRL, and nothing of its pages leaks; its CA
does not open the listeners either; a unix socket admin is 0600 by default
and curl reaches it; [::1] works; `steeldoor connect --admin` too.
"""
import datetime
import os
import socket
import stat
import subprocess
import time

import pytest

import adminlib as al
import sdlib
from conftest import build_crl, crl_pem, issue_cert, root_issuer, whole_now
from cryptography.x509.oid import ExtendedKeyUsageOID

# quote, backslash, line feed, tab and non-ASCII: the label escaping and JSON
# encoding are on trial
NAME = 'api "east"\\1\n\t-\u00e9'


def yq(s):
    """A YAML double-quoted scalar."""
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace(
        "\n", "\\n").replace("\t", "\\t")


@pytest.fixture(scope="module")
def plain(sd_bin, pki, tmp_path_factory):
    """One worker, a listener with a CRL of known dates, and a plaintext
    admin on 127.0.0.1 whose head deadline is 2 s."""
    d = tmp_path_factory.mktemp("admin-plain")
    now = whole_now()
    crl_last = now - datetime.timedelta(hours=2)
    crl_next = now + datetime.timedelta(days=3, seconds=17)
    crl = build_crl(root_issuer(pki), last_update=crl_last, next_update=crl_next, number=7)
    crlf = d / "dev.crl"
    crlf.write_bytes(crl_pem(crl))
    backend = sdlib.Backend()
    lp, ap = sdlib.free_port(), sdlib.free_port()
    cfg = d / "steeldoor.yaml"
    cfg.write_text("""workers: 1
drain-timeout: 2s
admin:
  listen: "127.0.0.1:%d"
  handshake-timeout: 2s
  idle-timeout: 2s
listeners:
  - name: %s
    listen: "127.0.0.1:%d"
    target: "%s"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    crl: "%s"
    allow-all: true
""" % (ap, yq(NAME), lp, backend.target, pki.server_cert, pki.server_key, pki.ca, crlf))
    sd = al.start_sd(sd_bin, ["serve", "--config", cfg], d, "plain", wait_ports=[lp, ap])
    sd.lp, sd.ap, sd.crl, sd.crl_last, sd.crl_next = lp, ap, crlf, crl_last, crl_next
    sd.backend = backend
    try:
        yield sd
    finally:
        try:
            al.stop_sd(sd)
        finally:
            backend.close()


# --------------------------------------------------------------------------
# endpoints
# --------------------------------------------------------------------------

def test_healthz(plain):
    r = al.get(plain.ap, "/healthz")
    assert r.status == 200 and r.body == b"ok\n", r
    assert r.get("content-type", "").startswith("text/plain"), r
    assert r.get("connection", "").lower() == "close", r
    assert r.get("cache-control") == "no-store", r
    # the query string is ignored
    r = al.get(plain.ap, "/healthz?verbose=1")
    assert r.status == 200 and r.body == b"ok\n", r


def test_metrics_pass_promtool_and_parse(plain, good_ctx):
    # some traffic first, so that the counters are not all zero
    with sdlib.tls_connect(good_ctx, plain.lp) as s:
        assert sdlib.echo_roundtrip(s, b"hello-metrics\n") == b"hello-metrics\n"
    al.wait_metrics(plain.ap, lambda m: m.v("steeldoor_connections_total", listener=NAME,
                                            result="ok", reason="none") >= 1, timeout=5,
                    what="the echo connection counted")
    r = al.get(plain.ap, "/metrics")
    assert r.status == 200, r
    assert r.get("content-type") == "text/plain; version=0.0.4; charset=utf-8", r
    rc, out = al.promtool_check(r.text)
    assert rc == 0 and out.strip() == "", "promtool check metrics rc=%d:\n%s\n---\n%s" % (
        rc, out, r.text[:3000])
    m = al.Metrics(r.text)
    for fam, typ in al.EXPECTED_FAMILIES.items():
        assert fam in m.families, "family %s missing; have %s" % (fam, sorted(m.families))
        assert m.families[fam].type == typ, "%s is a %s, expected %s" % (
            fam, m.families[fam].type, typ)
    # the listener's name with its quote, backslash, LF, tab, e-acute, read back exactly
    info = {s.labels["listener"]: s.labels for s in m.find("steeldoor_listener_info")}
    assert set(info) == {NAME, "admin"}, "listener_info names: %r" % sorted(info)
    assert info[NAME]["mode"] == "tcp" and info[NAME]["listen"] == "127.0.0.1:%d" % plain.lp
    assert info["admin"]["mode"] == "admin" and \
        info["admin"]["listen"] == "127.0.0.1:%d" % plain.ap, info["admin"]
    bi = m.find("steeldoor_build_info")
    ver = subprocess.run([plain.binary, "--version"], capture_output=True,
                         timeout=10).stdout.decode().split()[1]
    assert len(bi) == 1 and bi[0].value == 1 and bi[0].labels["version"] == ver, bi
    assert bi[0].labels["openssl"].startswith("OpenSSL "), bi
    assert m.value("steeldoor_generation") == 1
    assert m.value("steeldoor_config_stale") == 0
    assert m.value("steeldoor_workers") == 1 and m.value("steeldoor_workers_configured") == 1
    start = m.value("steeldoor_start_time_seconds")
    assert abs(start - _proc_start(plain.pid)) < 2, "start time %r, the master started at %r" % (
        start, _proc_start(plain.pid))
    assert m.value("steeldoor_connections_total", listener=NAME, result="ok",
                   reason="none") >= 1
    assert m.value("steeldoor_bytes_received_total", listener=NAME) >= 14
    # histogram: buckets cumulative, ending in +Inf == _count == handshakes
    for name in (NAME, "admin"):
        bks = [s for s in m.find("steeldoor_handshake_duration_seconds_bucket", listener=name)]
        les = [s.labels["le"] for s in bks]
        assert les[-1] == "+Inf" and len(les) == len(set(les)), les
        vals = [s.value for s in bks]
        assert vals == sorted(vals), "buckets not cumulative: %s" % vals
        count = m.value("steeldoor_handshake_duration_seconds_count", listener=name)
        assert vals[-1] == count == m.total("steeldoor_handshakes_total", listener=name), (
            name, vals[-1], count)
    # a plaintext admin has no handshake; the TLS listener had at least one
    assert m.value("steeldoor_handshake_duration_seconds_count", listener="admin") == 0
    assert m.value("steeldoor_handshake_duration_seconds_count", listener=NAME) >= 1
    # the admin listener has no target: no backend family sample for it
    assert m.find("steeldoor_backend_connect_failures_total", listener="admin") == []


def _proc_start(pid):
    """When process pid started, in Unix seconds (/proc/PID/stat and btime)."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    ticks = int(st[st.rfind(")") + 2:].split()[19])
    with open("/proc/stat") as f:
        btime = int([l for l in f if l.startswith("btime")][0].split()[1])
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def test_certificate_and_crl_gauges_match_the_files(plain, pki):
    m = al.scrape(plain.ap)
    got = {(s.labels["role"], s.labels["sha256"]): s for s in
           m.find("steeldoor_certificate_not_after_timestamp_seconds", listener=NAME)}
    # "chain": what the Certificate message carries after the leaf (from the
    # file, or built from the store): compared with what a client receives
    sent = al.served_chain(plain.lp, pki.ca, pki.client_cert, pki.client_key)
    leaf = al.pem_certs(pki.server_cert)[0]
    assert al.der_sha256(sent[0]) == al.der_sha256(leaf), "the listener serves another leaf"
    want = [("server", leaf)] + [("chain", c) for c in sent[1:]] + \
        [("ca", c) for c in al.pem_certs(pki.ca)]
    assert len(got) == len(want), "gauges %s, files have %s" % (
        sorted(got), [(r, al.der_sha256(c)) for r, c in want])
    for role, c in want:
        s = got.get((role, al.der_sha256(c)))
        assert s is not None, "no %s gauge with sha256 %s: %s" % (role, al.der_sha256(c),
                                                                   sorted(got))
        assert s.value == al.not_after(c), "%s notAfter %r, file says %d" % (
            role, s.value, al.not_after(c))
        assert int(s.labels["serial"], 16) == c.serial_number, s.labels
        assert s.labels["subject"] == c.subject.rfc4514_string(), s.labels
    crls = m.find("steeldoor_crl_next_update_timestamp_seconds", listener=NAME)
    assert len(crls) == 1, crls
    assert crls[0].value == al.epoch(plain.crl_next), "CRL nextUpdate gauge %r, file %d" % (
        crls[0].value, al.epoch(plain.crl_next))
    assert crls[0].labels["file"] == str(plain.crl), crls[0].labels
    assert crls[0].labels["issuer"] == pki.ca_cert_obj.subject.rfc4514_string()


def test_status_json(plain, pki):
    r = al.get(plain.ap, "/status")
    assert r.status == 200 and r.get("content-type", "").startswith("application/json"), r
    j = r.json()
    assert j["generation"] == 1 and j["stale"] is False and j["last_reload"] is None, j
    assert j["reloads"] == {"ok": 0, "failed": 0}, j["reloads"]
    assert j["workers"] == {"configured": 1, "alive": 1, "restarts": 0}, j["workers"]
    ver = subprocess.run([plain.binary, "--version"], capture_output=True,
                         timeout=10).stdout.decode().split()[1]
    assert j["version"] == ver
    now = time.time()
    assert abs(datetime.datetime.strptime(j["now"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() - now) < 5, j["now"]
    ls = {l["name"]: l for l in j["listeners"]}
    assert set(ls) == {NAME, "admin"}, sorted(ls)
    api, adm = ls[NAME], ls["admin"]
    assert api["mode"] == "tcp" and api["tls"] is True and api["crls"] == 1, api
    assert api["target"] == plain.backend.target and api["listen"] == "127.0.0.1:%d" % plain.lp
    assert adm["tls"] is False and "target" not in adm and adm["certificates"] == [], adm
    certs = api["certificates"]
    server = [c for c in certs if c["role"] == "server"]
    assert len(server) == 1, certs
    leaf = al.pem_certs(pki.server_cert)[0]
    assert server[0]["sha256"] == al.der_sha256(leaf), (server[0], al.der_sha256(leaf))
    assert server[0]["not_after"] == al.rfc3339(al.not_after(leaf)), server[0]
    assert int(server[0]["serial"], 16) == leaf.serial_number
    assert server[0]["file"] == str(pki.server_cert)
    cas = [c for c in certs if c["role"] == "ca"]
    cafile = al.pem_certs(pki.ca)
    assert sorted(c["sha256"] for c in cas) == sorted(al.der_sha256(c) for c in cafile), cas
    assert [c["not_after"] for c in cas] == [al.rfc3339(al.not_after(c)) for c in cafile]
    assert len(api["crl_files"]) == 1, api["crl_files"]
    c = api["crl_files"][0]
    assert c["file"] == str(plain.crl) and c["delta"] is False, c
    assert c["next_update"] == al.rfc3339(al.epoch(plain.crl_next)), c
    assert c["last_update"] == al.rfc3339(al.epoch(plain.crl_last)), c
    assert c["issuer"] == pki.ca_cert_obj.subject.rfc4514_string(), c


def test_head(plain):
    g = al.get(plain.ap, "/healthz")
    h = al.request(plain.ap, "/healthz", method="HEAD")
    assert h.status == 200 and h.body == b"", h
    assert h.get("content-length") == str(len(g.body)), (h, g)
    h = al.request(plain.ap, "/status", method="HEAD")
    assert h.status == 200 and h.body == b"" and int(h.get("content-length")) > 100, h
    h = al.request(plain.ap, "/metrics", method="HEAD")
    assert h.status == 200 and h.body == b"" and int(h.get("content-length")) > 1000, h
    assert h.get("content-type", "").startswith("text/plain; version=0.0.4"), h


@pytest.mark.parametrize("path", ["/", "/nope", "/metricsx", "/METRICS", "/healthz/",
                                  "/metrics/../status", "//metrics"])
def test_unknown_path_404(plain, path):
    r = al.get(plain.ap, path)
    assert r.status == 404, r
    assert b"steeldoor_" not in r.body and b"generation" not in r.body, r


def test_absolute_form_target(plain):
    r = al.request(plain.ap, raw=b"GET http://localhost/healthz HTTP/1.1\r\nHost: localhost"
                                 b"\r\n\r\n")
    assert r.status == 200 and r.body == b"ok\n", r


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_405_with_allow(plain, method):
    r = al.request(plain.ap, "/metrics", method=method, headers=[("Content-Length", "0")])
    assert r.status == 405, r
    allow = [t.strip() for t in (r.get("allow") or "").split(",")]
    assert sorted(allow) == ["GET", "HEAD"], r
    assert b"steeldoor_" not in r.body, r


def test_refusal_delivered_despite_an_unread_body(plain):
    """A POST with a 48 KiB body: steeldoor answers 405 at once and reads the
    rest away, so the answer is not destroyed by a reset."""
    body = b"z" * (48 * 1024)
    raw = (b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
           % len(body)) + body
    for _ in range(3):
        r = al.request(plain.ap, raw=raw)
        assert r.status == 405 and r.body.startswith(b"405"), r


def test_readyz_shape(plain):
    st, j = al.wait_readyz(plain.ap, lambda st, j: st == 200, timeout=10, what="ready")
    assert [c["name"] for c in j["checks"]] == ["config", "certificates", "backends",
                                                "workers"], j
    assert all(c["ok"] is True and isinstance(c["detail"], str) for c in j["checks"]), j
    assert al.check(j, "workers")["detail"] == "1/1 alive", j
    assert al.check(j, "config")["detail"] == "generation 1; no reload yet", j
    h = al.request(plain.ap, "/readyz", method="HEAD")
    assert h.status == 200 and h.body == b"", h


@pytest.mark.parametrize("kind", ["length", "chunked"])
def test_request_with_body_refused(plain, kind):
    if kind == "length":
        raw = (b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n"
               b"hello=world")
    else:
        raw = (b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
               b"\r\n5\r\nhello\r\n0\r\n\r\n")
    r = al.request(plain.ap, raw=raw)
    assert r.status == 400, r
    assert b"steeldoor_" not in r.body, r
    assert al.get(plain.ap, "/healthz").status == 200


def test_oversized_head_431(plain):
    raw = (b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Filler: " + b"a" * 9000 +
           b"\r\n\r\n")
    t0 = time.monotonic()
    r = al.request(plain.ap, raw=raw, timeout=5)
    assert r.status == 431, r
    assert b"steeldoor_" not in r.body
    assert time.monotonic() - t0 < 3, "the 431 took %.1fs" % (time.monotonic() - t0)
    # many small headers adding up past the limit as well
    raw = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(120)) + b"\r\n"
    r = al.request(plain.ap, raw=raw, timeout=5)
    assert r.status == 431, r


def test_one_request_per_connection(plain):
    """Two pipelined requests: one answer, then the end (Connection: close)."""
    s = al.connect(plain.ap)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x"
                  b"\r\n\r\n")
        data = al.read_to_eof(s, timeout=5)
    finally:
        s.close()
    assert data.count(b"HTTP/1.1 ") == 1, data[:600]
    r = al.parse_reply(data)
    assert r.status == 200 and r.body == b"ok\n", r


def test_silent_and_slow_clients_do_not_block_scrapes(plain):
    """One worker serves the admin listener. Three silent connections and one
    that trickles half a head must not delay scrapes; the silent ones are
    closed at the head deadline (2 s) without a byte, the trickler gets a 408."""
    silent = [al.connect(plain.ap) for _ in range(3)]
    slow = al.connect(plain.ap)
    try:
        t0 = time.monotonic()
        slow.sendall(b"GET /metr")
        for i in range(5):
            t = time.monotonic()
            r = al.get(plain.ap, "/metrics", timeout=3)
            assert r.status == 200, r
            assert time.monotonic() - t < 1.0, "scrape %d took %.2fs" % (i, time.monotonic() - t)
            slow.sendall(b"i")   # trickling does not push the deadline
            time.sleep(0.1)
        for s in silent:
            data = al.read_to_eof(s, timeout=6)
            assert data == b"", "a silent client received %r" % data[:200]
        data = al.read_to_eof(slow, timeout=6)
        took = time.monotonic() - t0
        assert data.startswith(b"HTTP/1.1 408 "), data[:300]
        assert took < 4.5, "the head deadline is 2 s; the trickler was cut after %.1fs" % took
    finally:
        for s in silent + [slow]:
            s.close()
    assert al.get(plain.ap, "/healthz").status == 200


def test_many_parallel_scrapes(plain):
    """40 scrapes at once against one worker: every one answered, whole."""
    out, errs = [], []

    def one():
        try:
            r = al.get(plain.ap, "/metrics", timeout=10)
            out.append((r.status, len(al.Metrics(r.text).families)))
        except Exception as e:  # reported below
            errs.append(repr(e))

    al.run_threads([one] * 40, timeout=20)
    assert not errs, errs[:5]
    assert len(out) == 40 and all(st == 200 for st, _ in out), out
    assert len({n for _, n in out}) == 1, "scrapes with different families: %s" % out


# --------------------------------------------------------------------------
# refusals at start
# --------------------------------------------------------------------------

def _listener_yaml(pki, port, admin):
    return """workers: 1
%s
listeners:
  - name: api
    listen: "127.0.0.1:%d"
    target: "127.0.0.1:9"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    allow-all: true
""" % (admin, port, pki.server_cert, pki.server_key, pki.ca)


def _assert_refused(sd_bin, args, words, ports, cwd):
    t0 = time.monotonic()
    rc, out = al.start_fails(sd_bin, args, cwd=cwd)
    assert rc is not None, "steeldoor started (it must refuse); output:\n%s" % out[-2000:]
    assert rc != 0, "exit status 0 for a refused configuration; output:\n%s" % out[-2000:]
    assert time.monotonic() - t0 < 5
    low = out.lower()
    for w in words:
        assert w.lower() in low, "the error does not say %r:\n%s" % (w, out[-2000:])
    for p in ports:
        assert al.listening(p) == [], "port %d still listening after a refused start" % p
    return out


BACKDOOR = ["not a loopback address", "back door"]


@pytest.mark.parametrize("addr", ["0.0.0.0:%d", "[::]:%d", "host-v4", "host-v6"])
def test_flag_admin_on_network_address_refused(sd_bin, pki, tmp_path, addr):
    ap, lp = sdlib.free_port(), sdlib.free_port()
    if addr.startswith("host-"):
        want6 = addr == "host-v6"
        hs = [a for a in al.host_addresses() if (":" in a) == want6]
        # without one, a documentation address: the check is on the text, before any bind
        host = hs[0] if hs else ("2001:db8::1" if want6 else "192.0.2.1")
        addr = al.bracket(host, ap)
    else:
        addr = addr % ap
    out = _assert_refused(sd_bin, ["serve", "--listen", "127.0.0.1:%d" % lp, "--target",
                                   "127.0.0.1:9", "--cert", pki.server_cert, "--key",
                                   pki.server_key, "--cacert", pki.ca, "--allow-all",
                                   "--workers", "1", "--admin", addr],
                          ["--admin", addr] + BACKDOOR, [ap, lp], tmp_path)
    assert "cannot listen" not in out, out


ADMIN_REFUSALS = {
    # case: (admin YAML, words the error must contain)
    "plaintext_any": ('admin:\n  listen: "0.0.0.0:{ap}"', BACKDOOR),
    "plaintext_any_scalar": ('admin: "0.0.0.0:{ap}"', BACKDOOR),
    "cert_without_cacert": ('admin:\n  listen: "127.0.0.1:{ap}"\n  cert: "{crt}"\n'
                            '  key: "{key}"', ["cert, key and cacert"]),
    "cacert_only": ('admin:\n  listen: "0.0.0.0:{ap}"\n  cacert: "{ca}"',
                    ["cert, key and cacert"]),
    "allow_rule_without_tls": ('admin:\n  listen: "127.0.0.1:{ap}"\n'
                               '  allow-uri: spiffe://example.org/prometheus',
                               ["allow rules", "mutual TLS"]),
    "crl_without_tls": ('admin:\n  listen: "127.0.0.1:{ap}"\n  crl: "{ca}"',
                        ["CRLs", "mutual TLS"]),
    "target": ('admin:\n  listen: "127.0.0.1:{ap}"\n  target: "127.0.0.1:9"',
               ["'target' is not an admin key"]),
    "name": ('admin:\n  listen: "127.0.0.1:{ap}"\n  name: metrics',
             ["'name' is not an admin key"]),
    "unknown_key": ('admin:\n  listen: "127.0.0.1:{ap}"\n  colour: blue',
                    ["'colour' is not an admin key"]),
    "http_mode": ('admin:\n  listen: "127.0.0.1:{ap}"\n  mode: http', ["'mode'"]),
    "tls_without_allow_rule": ('admin:\n  listen: "127.0.0.1:{ap}"\n  cert: "{crt}"\n'
                               '  key: "{key}"\n  cacert: "{ca}"', ["no allow rule"]),
    "v4_mapped": ('admin: "[::ffff:127.0.0.1]:{ap}"', ["IPv4-mapped"]),
    "relative_unix": ('admin: "unix:admin.sock"', ["absolute"]),
}


@pytest.mark.parametrize("case", sorted(ADMIN_REFUSALS))
def test_config_admin_refused(sd_bin, pki, tmp_path, case):
    text, words = ADMIN_REFUSALS[case]
    ap, lp = sdlib.free_port(), sdlib.free_port()
    admin = text.format(ap=ap, crt=pki.server_cert, key=pki.server_key, ca=pki.ca)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_listener_yaml(pki, lp, admin))
    _assert_refused(sd_bin, ["serve", "--config", cfg], words, [ap, lp], tmp_path)
    assert not (tmp_path / "admin.sock").exists()


def test_two_admins_refused(sd_bin, pki, tmp_path):
    ap, ap2, lp = sdlib.free_port(), sdlib.free_port(), sdlib.free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_listener_yaml(pki, lp, 'admin:\n  listen: "127.0.0.1:%d"' % ap))
    _assert_refused(sd_bin, ["serve", "--config", cfg, "--admin", "127.0.0.1:%d" % ap2],
                    ["admin is given twice"], [ap, ap2, lp], tmp_path)
    # the flag twice
    _assert_refused(sd_bin, ["serve", "--listen", "127.0.0.1:%d" % lp, "--target",
                             "127.0.0.1:9", "--cert", pki.server_cert, "--key", pki.server_key,
                             "--cacert", pki.ca, "--allow-all", "--workers", "1",
                             "--admin", "127.0.0.1:%d" % ap, "--admin", "127.0.0.1:%d" % ap2],
                    ["--admin"], [ap, ap2, lp], tmp_path)
    # two admin: keys in one file
    cfg.write_text(_listener_yaml(pki, lp, 'admin: "127.0.0.1:%d"\nadmin: "127.0.0.1:%d"'
                                  % (ap, ap2)))
    _assert_refused(sd_bin, ["serve", "--config", cfg], ["admin"], [ap, ap2, lp], tmp_path)


def test_admin_on_a_listener_address_refused(sd_bin, pki, tmp_path):
    lp = sdlib.free_port()
    _assert_refused(sd_bin, ["serve", "--listen", "127.0.0.1:%d" % lp, "--target",
                             "127.0.0.1:9", "--cert", pki.server_cert, "--key", pki.server_key,
                             "--cacert", pki.ca, "--allow-all", "--workers", "1",
                             "--admin", "127.0.0.1:%d" % lp],
                    ["both listen on"], [lp], tmp_path)


def test_admin_alone_is_no_configuration(sd_bin, pki, tmp_path):
    ap = sdlib.free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text('workers: 1\nadmin: "127.0.0.1:%d"\nlisteners: []\n' % ap)
    _assert_refused(sd_bin, ["serve", "--config", cfg], ["no listener"], [ap], tmp_path)


def test_listener_named_admin_collides(sd_bin, pki, tmp_path):
    """A listener called "admin" next to the admin listener would merge their
    metrics: refused."""
    ap, lp = sdlib.free_port(), sdlib.free_port()
    _assert_refused(sd_bin, ["serve", "--listen", "127.0.0.1:%d" % lp, "--target",
                             "127.0.0.1:9", "--cert", pki.server_cert, "--key", pki.server_key,
                             "--cacert", pki.ca, "--allow-all", "--workers", "1", "--name",
                             "admin", "--admin", "127.0.0.1:%d" % ap],
                    ["admin", "twice"], [ap, lp], tmp_path)


# --------------------------------------------------------------------------
# mutual TLS admin
# --------------------------------------------------------------------------

PROM = "spiffe://example.org/prometheus"


@pytest.fixture(scope="module")
def tls_admin(sd_bin, pki, tmp_path_factory):
    """Admin on 127.0.0.1 with mutual TLS: its own CA (ops), one allow rule.
    The listener trusts the dev CA and admits only billing."""
    d = tmp_path_factory.mktemp("admin-tls")
    ops = issue_cert(d, "ops-ca", "self", ca=True, eku=())
    ops.crt = d / "ops-ca.crt"
    prom = issue_cert(d, "prom", ops, uris=[PROM])
    other = issue_cert(d, "grafana", ops, uris=["spiffe://example.org/grafana"])
    srv = issue_cert(d, "admin-srv", ops, eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                     dns=["localhost"])
    # the same identity as prometheus, revoked by the ops CA's CRL
    stolen = issue_cert(d, "prom-stolen", ops, uris=[PROM])
    crl = d / "ops.crl"
    crl.write_bytes(crl_pem(build_crl(ops, revoked=[stolen])))
    backend = sdlib.Backend()
    lp, ap = sdlib.free_port(), sdlib.free_port()
    cfg = d / "steeldoor.yaml"
    cfg.write_text("""workers: 1
drain-timeout: 2s
admin:
  listen: "127.0.0.1:%d"
  cert: "%s"
  key: "%s"
  cacert: "%s"
  allow-uri: %s
  crl: "%s"
listeners:
  - name: api
    listen: "127.0.0.1:%d"
    target: "%s"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    allow-uri: spiffe://example.org/billing
""" % (ap, srv.crt, srv.keyfile, ops.crt, PROM, crl, lp, backend.target, pki.server_cert,
       pki.server_key, pki.ca))
    sd = al.start_sd(sd_bin, ["serve", "--config", cfg], d, "tlsadmin", wait_ports=[lp, ap])
    sd.lp, sd.ap, sd.ops, sd.srv, sd.prom = lp, ap, ops, srv, prom
    sd.prom_ctx = sdlib.client_ctx(ops.crt, prom.crt, prom.keyfile)
    sd.other_ctx = sdlib.client_ctx(ops.crt, other.crt, other.keyfile)
    sd.stolen_ctx = sdlib.client_ctx(ops.crt, stolen.crt, stolen.keyfile)
    try:
        yield sd
    finally:
        try:
            al.stop_sd(sd)
        finally:
            backend.close()


def test_tls_admin_serves_the_allowed_client(tls_admin):
    m = al.scrape(tls_admin.ap, ctx=tls_admin.prom_ctx)
    info = {s.labels["listener"]: s.labels for s in m.find("steeldoor_listener_info")}
    assert info["admin"]["mode"] == "admin", info
    rc, out = al.promtool_check(m.text)
    assert rc == 0, out
    # its own certificates are gauged under listener="admin"
    roles = sorted(s.labels["role"] for s in
                   m.find("steeldoor_certificate_not_after_timestamp_seconds", listener="admin"))
    assert roles == ["ca", "chain", "server"], roles
    srv = [s for s in m.find("steeldoor_certificate_not_after_timestamp_seconds",
                             listener="admin", role="server")][0]
    assert srv.labels["sha256"] == al.der_sha256(tls_admin.srv.cert)
    assert srv.value == al.not_after(tls_admin.srv.cert)
    st = al.get(tls_admin.ap, "/status", ctx=tls_admin.prom_ctx).json()
    adm = [l for l in st["listeners"] if l["name"] == "admin"][0]
    assert adm["tls"] is True and adm["allow_rules"] == 1 and adm["crls"] == 1, adm
    e = tls_admin.wait_log(lambda e: e.get("event") == "conn" and e.get("listener") == "admin"
                           and e.get("identity") == PROM and e.get("result") == "ok",
                           what="admin conn line of the allowed client")
    assert e.get("rule") == "uri:" + PROM, e


@pytest.mark.parametrize("who,reason", [("no_cert", "no_client_certificate"),
                                        ("listener_ca_client", "unknown_ca"),
                                        ("other_ca_client", "unknown_ca"),
                                        ("not_allowed", "not_authorized"),
                                        ("revoked", "certificate_revoked")])
def test_tls_admin_refuses(tls_admin, pki, who, reason):
    ctxs = {
        "no_cert": sdlib.client_ctx(tls_admin.ops.crt),
        # the listeners' clients are nobody here: the admin has its own CA
        "listener_ca_client": sdlib.client_ctx(tls_admin.ops.crt, pki.client_cert,
                                               pki.client_key),
        "other_ca_client": sdlib.client_ctx(tls_admin.ops.crt, *pki.othca_client),
        "not_allowed": tls_admin.other_ctx,
        "revoked": tls_admin.stolen_ctx,
    }
    before = al.scrape(tls_admin.ap, ctx=tls_admin.prom_ctx)
    r = sdlib.probe_refused_tls(ctxs[who], tls_admin.ap,
                                payload=b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r["data"] == b"", "a refused admin client received %r" % r["data"][:300]
    assert r["error"] is not None and not str(r["error"]).startswith("TIMEOUT"), r
    e = tls_admin.wait_conn("127.0.0.1:%d" % r["local_port"])
    assert e.get("listener") == "admin" and e.get("result") == "refused", e
    assert e.get("reason") == reason, e

    def delta(m, name, **kw):
        return m.v(name, listener="admin", **kw) - before.v(name, listener="admin", **kw)

    # Every scrape after `before` completed a handshake; all but the one
    # answering have closed "ok" (and `before` itself). A refused handshake
    # must not count as completed: then hs would stay one ahead for good.
    al.wait_metrics(
        tls_admin.ap,
        lambda m: delta(m, "steeldoor_connections_total", result="refused", reason=reason) == 1
        and delta(m, "steeldoor_handshakes_total", kind="full") +
        delta(m, "steeldoor_handshakes_total", kind="resumed") ==
        delta(m, "steeldoor_connections_total", result="ok", reason="none"),
        timeout=5, ctx=tls_admin.prom_ctx,
        what="connections_total{admin,refused,%s} +1, and handshakes == ok closes" % reason)


def test_tls_admin_refuses_plaintext(tls_admin):
    s = socket.create_connection(("127.0.0.1", tls_admin.ap), timeout=5)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = al.read_to_eof(s, timeout=5)
    finally:
        s.close()
    assert b"steeldoor_" not in data and not data.startswith(b"HTTP/1.1 200"), data[:300]


def test_tls_admin_client_is_nobody_on_the_listener(tls_admin, pki):
    """The ops CA opens the admin, not the listeners: prometheus's certificate
    is refused by the api listener (its CA is the dev CA)."""
    ctx = sdlib.client_ctx(pki.ca, tls_admin.prom.crt, tls_admin.prom.keyfile)
    r = sdlib.probe_refused_tls(ctx, tls_admin.lp)
    assert r["data"] == b"" and r["error"] is not None, r
    e = tls_admin.wait_conn("127.0.0.1:%d" % r["local_port"])
    assert e.get("listener") == "api" and e.get("result") == "refused", e
    assert e.get("reason") == "unknown_ca", e


# --------------------------------------------------------------------------
# unix socket admin
# --------------------------------------------------------------------------

def _unix_sd(steeldoor, pki, tmp_path, admin_yaml, backend):
    lp = sdlib.free_port()
    cfg = """workers: 1
drain-timeout: 2s
%s
listeners:
  - name: api
    listen: "127.0.0.1:%d"
    target: "%s"
    cert: "%s"
    key: "%s"
    cacert: "%s"
    allow-all: true
""" % (admin_yaml, lp, backend.target, pki.server_cert, pki.server_key, pki.ca)
    return steeldoor(config=cfg, wait_ports=[("127.0.0.1", lp)])


def _wait_socket(path, sd):
    al.wait_until(lambda: os.path.exists(path) or not sd.running(), 5,
                  "admin socket %s" % path)
    assert sd.running(), sd.stderr_text()[-2000:]
    return os.stat(path)


def test_unix_admin_default_mode_0600_and_curl(steeldoor, pki, tmp_path, echo_backend):
    sock = tmp_path / "admin.sock"
    sd = _unix_sd(steeldoor, pki, tmp_path, 'admin: "unix:%s"' % sock, echo_backend)
    st = _wait_socket(sock, sd)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, "admin socket mode %o" % stat.S_IMODE(st.st_mode)
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--unix-socket", str(sock),
                        "http://localhost/metrics"], capture_output=True, timeout=15)
    assert r.returncode == 0, r.stderr
    m = al.Metrics(r.stdout.decode())
    assert m.value("steeldoor_listener_info", listener="admin", mode="admin") == 1
    assert m.find("steeldoor_listener_info", listener="admin")[0].labels["listen"] == \
        "unix:%s" % sock
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                        "5", "--unix-socket", str(sock), "http://localhost/readyz"],
                       capture_output=True, timeout=15)
    assert r.stdout in (b"200", b"503"), r
    r = al.get("unix:%s" % sock, "/healthz")
    assert r.status == 200 and r.body == b"ok\n"
    sd.stop()
    assert not sock.exists(), "the admin socket file outlived steeldoor"


def test_unix_admin_listen_mode(steeldoor, pki, tmp_path, echo_backend):
    sock = tmp_path / "admin.sock"
    sd = _unix_sd(steeldoor, pki, tmp_path,
                  'admin:\n  listen: "unix:%s"\n  listen-mode: "0660"' % sock, echo_backend)
    st = _wait_socket(sock, sd)
    assert stat.S_IMODE(st.st_mode) == 0o660, "admin socket mode %o" % stat.S_IMODE(st.st_mode)
    assert al.get("unix:%s" % sock, "/healthz").status == 200


# --------------------------------------------------------------------------
# the admin listener's own accounting, IPv6 loopback, steeldoor connect
# --------------------------------------------------------------------------

def test_admin_counts_its_own_requests(plain):
    """An admin request's conn line has exactly the bytes the client sent and
    received, an "admin" line names the request, and the admin listener's
    counters are the sums of its conn lines."""
    raw = (b"GET /healthz?x=1 HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"p" * 123 +
           b"\r\n\r\n")
    s = al.connect(plain.ap)
    try:
        peer = sdlib.peer_of(s)
        s.sendall(raw)
        data = al.read_to_eof(s, timeout=5)
    finally:
        s.close()
    assert al.parse_reply(data).status == 200
    e = plain.wait_conn(peer)
    assert e.get("listener") == "admin" and e.get("result") == "ok", e
    assert e.get("bytes_in") == len(raw) and e.get("bytes_out") == len(data), (
        e, len(raw), len(data))
    a = plain.wait_log(lambda x: x.get("event") == "admin" and x.get("peer") == peer,
                       what="admin request line")
    assert a.get("status") == 200 and a.get("method") == "GET" and \
        a.get("path") == "/healthz", a

    def agrees(m):
        lines = [x for x in plain.conn_logs(include_probes=True)
                 if x.get("listener") == "admin"]
        return (m.v("steeldoor_bytes_received_total", listener="admin") ==
                sum(x.get("bytes_in", 0) for x in lines) and
                m.v("steeldoor_bytes_sent_total", listener="admin") ==
                sum(x.get("bytes_out", 0) for x in lines) and
                m.total("steeldoor_connections_total", listener="admin") == len(lines) and
                m.v("steeldoor_connections_accepted_total", listener="admin") == len(lines) + 1
                and m.v("steeldoor_connections_open", listener="admin") == 1)
    al.wait_metrics(plain.ap, agrees, timeout=5,
                    what="admin counters == sums of its conn lines (+1 open: the scrape)")


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_loopback_admin(steeldoor, pki, echo_backend):
    ap = sdlib.free_port("::1")
    steeldoor(target=echo_backend.target, extra=["--admin", "[::1]:%d" % ap])
    m = al.scrape(("::1", ap))
    assert m.value("steeldoor_listener_info", listener="admin", listen="[::1]:%d" % ap) == 1
    assert al.listening(ap) and all(a.startswith("v6:") for a in al.listening(ap)), \
        al.listening(ap)
    # loopback IPv6 only: not reachable on 127.0.0.1
    assert sdlib.tcp_connect_result("127.0.0.1", ap) == "refused"


def test_connect_subcommand_admin(sd_bin, pki, steeldoor, tmp_path, echo_backend):
    """`steeldoor connect --admin`: the connector's counters under its name
    (the listen address); the same refusal of a network address."""
    lsd = steeldoor(target=echo_backend.target, name="api")
    cp, ap = sdlib.free_port(), sdlib.free_port()
    base = ["connect", "--listen", "127.0.0.1:%d" % cp, "--target", "127.0.0.1:%d" % lsd.port,
            "--cert", pki.client_cert, "--key", pki.client_key, "--cacert", pki.ca,
            "--server-name", "localhost", "--workers", "1", "--drain-timeout", "2s"]
    _assert_refused(sd_bin, base + ["--admin", "0.0.0.0:%d" % ap], ["--admin"] + BACKDOOR,
                    [ap, cp], tmp_path)
    steeldoor(args=base + ["--admin", "127.0.0.1:%d" % ap], wait_ports=[("127.0.0.1", ap)])
    name = "127.0.0.1:%d" % cp
    for i in range(3):
        with socket.create_connection(("127.0.0.1", cp), timeout=5) as s:
            s.sendall(b"via-connector-%d\n" % i)
            assert sdlib.recv_exact(s, 16) == b"via-connector-%d\n" % i
    m = al.wait_metrics(ap, lambda m: m.v("steeldoor_connections_total", listener=name,
                                          result="ok", reason="none") == 3, timeout=5,
                        what="three connector connections counted")
    assert m.value("steeldoor_listener_info", listener=name, mode="connect") == 1
    assert m.v("steeldoor_connections_accepted_total", listener=name) == 3
    assert m.v("steeldoor_bytes_received_total", listener=name) == 48
    assert m.v("steeldoor_bytes_sent_total", listener=name) == 48
    st, j = al.readyz(ap)
    assert st == 200, j
