"""HTTP mode's second factor, API keys (`serve --http --api-keys FILE`), as an
attacker meets it: every request needs `Authorization: Bearer sdk_...`
whose digest is in the keys file AND whose bind patterns admit the client
certificate of this very connection.

Attacked here: no key, a key in the wrong place (query string, cookie,
another scheme), guessed, altered, truncated and stolen-from-the-file
keys (the digest itself), expired and revoked keys, a valid key replayed
with another client certificate (403 and a `stolen_credential` warning
naming both identities), the bind patterns (uri with * and **, dns, cn,
ou, spki, other trust domains), path prefixes against dot segments and
encodings, two credentials in one request, forged X-Steeldoor-* headers,
the per-connection cache (a keep-alive connection must not make a
credential sticky or loosely matched), and pipelining behind a refusal.
Every refusal is checked four ways: status, the reason word in the body,
the `http` log line, and the Flask application never seeing the request.

Last, the README's "five commands" with `steeldoor pki`, `steeldoor apikey
new` and real curl."""
import datetime
import json
import re
from types import SimpleNamespace

import pytest

from sdlib import free_port, run
from http_apps import authfix as af
from http_apps import sdhttp
from http_apps.authfix import bearer, unique
from http_apps.fixtures import flask_app  # noqa: F401

LISTENER = "keyed"
CHALLENGE = 'Bearer realm="steeldoor"'


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def keyed(sd_bin, pki, flask_app, tmp_path_factory):  # noqa: F811
    """One listener with a keys file of every kind of entry, and a client
    certificate for every bind pattern."""
    d = tmp_path_factory.mktemp("apikeys")
    cl = {
        "billing": af.pki_client(pki, pki.client_cert, pki.client_key,
                                 "spiffe://example.org/billing"),
        "pygood": af.pki_client(pki, pki.pygood[0], pki.pygood[1],
                                "spiffe://example.org/pygood"),
        "team": af.client(pki, d, "team-alpha", uris=["spiffe://example.org/team/alpha"]),
        "team_deep": af.client(pki, d, "team-deep",
                               uris=["spiffe://example.org/team/alpha/beta"]),
        "deep_root": af.client(pki, d, "deep-root", uris=["spiffe://example.org/deep"]),
        "deep_leaf": af.client(pki, d, "deep-leaf", uris=["spiffe://example.org/deep/a/b"]),
        "evil": af.client(pki, d, "evil", uris=["spiffe://evil.example/billing"]),
        "cn": af.client(pki, d, "build-bot", cn="build-bot"),
        "ou": af.client(pki, d, "pay-1", cn="pay-1", ou="payments"),
        "dns": af.client(pki, d, "ci-host", cn="ci-host", dns=["ci.example.org"]),
    }
    now = datetime.datetime.now(datetime.timezone.utc)
    keys = {k: af.new_key() for k in ("ci", "team", "deep", "dnsk", "cnk", "ouk", "spkik",
                                      "multi", "expired", "expired2", "future", "revoked",
                                      "paths")}
    billing = "uri:spiffe://example.org/billing"
    entries = [
        {"id": "ci", "key": keys["ci"], "bind": [billing]},
        {"id": "team", "key": keys["team"], "bind": ["uri:spiffe://example.org/team/*"]},
        {"id": "deep", "key": keys["deep"], "bind": ["uri:spiffe://example.org/deep/**"]},
        {"id": "dnsk", "key": keys["dnsk"], "bind": ["dns:ci.example.org"]},
        {"id": "cnk", "key": keys["cnk"], "bind": ["cn:build-bot"]},
        {"id": "ouk", "key": keys["ouk"], "bind": ["ou:payments"]},
        {"id": "spkik", "key": keys["spkik"], "bind": ["spki:" + af.spki_hex(pki.pygood[0])]},
        {"id": "multi", "key": keys["multi"], "bind": [billing, "dns:ci.example.org"]},
        {"id": "expired", "key": keys["expired"], "bind": [billing], "expires": "2020-01-01"},
        {"id": "expired2", "key": keys["expired2"], "bind": [billing],
         "expires": _iso(now - datetime.timedelta(minutes=1))},
        {"id": "future", "key": keys["future"], "bind": [billing],
         "expires": "2099-12-31T23:59:59Z"},
        {"id": "revoked", "key": keys["revoked"], "bind": [billing],
         "revoked": _iso(now - datetime.timedelta(hours=1))},
        {"id": "paths", "key": keys["paths"], "bind": [billing], "paths": ["/invoices/", "/api"]},
    ]
    kf = af.write_keys(d / "keys.yaml", entries)
    sd = af.start_sd(sd_bin, pki, d, flask_app.target, LISTENER, ["--api-keys", kf])
    try:
        yield SimpleNamespace(sd=sd, app=flask_app, keys=keys, cl=cl, file=kf)
    finally:
        af.stop_sd(sd)
        af.sweep_refused(flask_app)


@pytest.fixture(scope="module")
def custom(sd_bin, pki, flask_app, tmp_path_factory):  # noqa: F811
    """A listener whose keys arrive in X-Api-Key (--api-key-header)."""
    d = tmp_path_factory.mktemp("apikeys-hdr")
    key = af.new_key()
    kf = af.write_keys(d / "keys.yaml", [{"id": "hdr", "key": key,
                                          "bind": ["uri:spiffe://example.org/billing"]}])
    sd = af.start_sd(sd_bin, pki, d, flask_app.target, "keyhdr",
                     ["--api-keys", kf, "--api-key-header", "X-Api-Key"])
    try:
        yield SimpleNamespace(sd=sd, app=flask_app, key=key,
                       billing=af.pki_client(pki, pki.client_cert, pki.client_key,
                                             "spiffe://example.org/billing"))
    finally:
        af.stop_sd(sd)
        af.sweep_refused(flask_app)


def refused(k, resp, path, status, word, **kw):
    return af.refused_and_unseen(k.sd, k.app, resp, path, status, word, **kw)


# --------------------------------------------------------------------------
# the good path
# --------------------------------------------------------------------------

def test_valid_key_reaches_backend_without_the_key(keyed):
    path = unique("ok")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, bearer(keyed.keys["ci"]))
    s = af.check_passed(r, "api-key", "ci")
    assert s["path"] == path
    assert keyed.keys["ci"] not in json.dumps(s), "the key reached the backend"
    env = s["environ"]
    assert env.get("HTTP_CLIENT_CERT") == sdhttp.client_cert_value(keyed.cl["billing"].crt), \
        "identity header missing next to the second factor"
    e = af.http_line(keyed.sd, env["HTTP_X_STEELDOOR_REQUEST_ID"])
    assert e.get("status") == 200 and e.get("identity") == "spiffe://example.org/billing", e
    assert keyed.keys["ci"] not in keyed.sd.stderr_text(), "the key was logged"


def test_post_with_body_passes(keyed):
    path = unique("post")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, bearer(keyed.keys["ci"]),
                   method="POST", body=b"payload-1")
    s = af.check_passed(r, "api-key", "ci")
    assert s["method"] == "POST" and s["body_b64"] == "cGF5bG9hZC0x"


# --------------------------------------------------------------------------
# no credential, or one that is not ours
# --------------------------------------------------------------------------

NO_CREDENTIAL = [
    ("none", "", []),
    ("basic_scheme", "", [("Authorization", "Basic Y2k6c2VjcmV0")]),
    ("query_api_key", "?api_key=KEY", []),
    ("query_access_token", "?access_token=KEY", []),
    ("cookie", "", [("Cookie", "api_key=KEY")]),
    ("other_header", "", [("X-Api-Key", "KEY")]),
    ("proxy_authorization", "", [("Proxy-Authorization", "Bearer KEY")]),
]


@pytest.mark.parametrize("query,headers", [pytest.param(q, h, id=i) for i, q, h in NO_CREDENTIAL])
def test_no_credential_401(keyed, query, headers):
    """A key anywhere but in Authorization: Bearer is no key at all."""
    key = keyed.keys["ci"]
    path = unique("none")
    hdrs = [(n, v.replace("KEY", key)) for n, v in headers]
    r = af.request(keyed.sd.port, keyed.cl["billing"], path + query.replace("KEY", key), hdrs)
    refused(keyed, r, path, 401, "auth_missing", challenge=CHALLENGE, invalid_token=False)


def _mutate(key, i):
    c = key[i]
    return key[:i] + ("B" if c != "B" else "C") + key[i + 1:]


BAD_KEYS = [
    ("random", lambda k: af.new_key()),
    ("last_char", lambda k: _mutate(k["ci"], -1)),
    ("first_char_after_prefix", lambda k: _mutate(k["ci"], 4)),
    ("truncated", lambda k: k["ci"][:-1]),
    ("one_more_char", lambda k: k["ci"] + "A"),
    ("upper_cased", lambda k: k["ci"].upper()),
    ("other_prefix", lambda k: "sdx_" + k["ci"][4:]),
    ("prefix_only", lambda k: "sdk_"),
    ("digest_from_file", lambda k: af.key_digest(k["ci"])),
    ("digest_hex", lambda k: af.key_digest(k["ci"])[7:]),
    ("two_keys_glued", lambda k: k["ci"] + k["future"]),
    ("very_long", lambda k: "sdk_" + "A" * 400),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in BAD_KEYS])
def test_unknown_or_garbled_key_401(keyed, make):
    path = unique("bad")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, bearer(make(keyed.keys)))
    refused(keyed, r, path, 401, "apikey_unknown", challenge=CHALLENGE)


def test_empty_bearer_401(keyed):
    path = unique("empty")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, [("Authorization", "Bearer")])
    assert r.status == 401, r
    body = af.assert_refused(r, 401, r.json().get("reason"), challenge=CHALLENGE)
    assert body["reason"] in ("apikey_unknown", "auth_missing"), body
    af.check_logged(keyed.sd, body)
    af.never_reached(keyed.app, path)


@pytest.mark.parametrize("key_id,word", [("expired", "apikey_expired"),
                                         ("expired2", "apikey_expired"),
                                         ("revoked", "apikey_revoked")])
def test_expired_or_revoked_key_401(keyed, key_id, word):
    path = unique(key_id)
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, bearer(keyed.keys[key_id]))
    refused(keyed, r, path, 401, word, challenge=CHALLENGE)


def test_future_expiry_passes(keyed):
    r = af.request(keyed.sd.port, keyed.cl["billing"], unique("future"),
                   bearer(keyed.keys["future"]))
    af.check_passed(r, "api-key", "future")


# --------------------------------------------------------------------------
# bind patterns: the key works only with the certificates it is bound to
# --------------------------------------------------------------------------

BOUND = [
    ("ci", "billing"), ("team", "team"), ("deep", "deep_leaf"), ("dnsk", "dns"),
    ("cnk", "cn"), ("ouk", "ou"), ("spkik", "pygood"), ("multi", "billing"), ("multi", "dns"),
]


@pytest.mark.parametrize("key_id,who", BOUND, ids=["%s-%s" % b for b in BOUND])
def test_bound_key_passes(keyed, key_id, who):
    r = af.request(keyed.sd.port, keyed.cl[who], unique("bound"), bearer(keyed.keys[key_id]))
    s = af.check_passed(r, "api-key", key_id)
    assert s["environ"].get("HTTP_CLIENT_CERT") == sdhttp.client_cert_value(keyed.cl[who].crt)


NOT_BOUND = [
    ("ci", "pygood", "uri:spiffe://example.org/billing"),
    ("ci", "evil", "uri:spiffe://example.org/billing"),       # same path, other trust domain
    ("team", "team_deep", "uri:spiffe://example.org/team/*"),  # * is one segment
    ("deep", "deep_root", "uri:spiffe://example.org/deep/**"),  # ** is one or more
    ("dnsk", "billing", "dns:ci.example.org"),
    ("cnk", "dns", "cn:build-bot"),
    ("ouk", "cn", "ou:payments"),
    ("spkik", "billing", "spki:"),
    ("multi", "pygood", "uri:spiffe://example.org/billing"),
]


@pytest.mark.parametrize("key_id,who,bound_to", NOT_BOUND,
                         ids=["%s-%s" % (a, b) for a, b, _ in NOT_BOUND])
def test_stolen_key_403_and_warning(keyed, key_id, who, bound_to):
    """A valid key presented with a certificate it is not bound to: 403, and
    a warn line naming the key, what it is bound to and who used it."""
    path = unique("stolen")
    r = af.request(keyed.sd.port, keyed.cl[who], path, bearer(keyed.keys[key_id]))
    body = refused(keyed, r, path, 403, "apikey_not_bound")
    af.check_stolen(keyed.sd, body, "api-key", key_id, bound_to, keyed.cl[who], LISTENER)


# --------------------------------------------------------------------------
# path prefixes: "/invoices/" and "/api"
# --------------------------------------------------------------------------

PATHS_OK = ["/invoices/1", "/invoices/a/b?x=1", "/api", "/api/", "/api/x", "/api?q=1",
            "/api/x/y;v=1", "https://localhost/api/x"]
PATHS_DENIED = ["/invoices", "/invoicesx/1", "/apix", "/api2/x", "/API/x", "/", "/admin",
                "/api/../admin", "/api/./x", "/api/x/../../admin", "/api/..;/admin",
                "/api/%2e%2e/admin", "/api/%2E%2E/admin", "/api%2fadmin", "/api%2Fx",
                "/api/%5c..%5cadmin", "/invoices/%2e%2e/admin", "/api/x/..",
                "//api/x", "/%61pi/x", "https://localhost/admin",
                "https://localhost/api/../admin"]


@pytest.mark.parametrize("path", PATHS_OK)
def test_key_path_prefix_admits(keyed, path):
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, bearer(keyed.keys["paths"]))
    af.check_passed(r, "api-key", "paths")


@pytest.mark.parametrize("path", PATHS_DENIED)
def test_key_path_prefix_refuses(keyed, path):
    """Outside the key's prefixes, or a path a backend could read as another
    one: 403 apikey_path_denied (not a stolen credential: no warning)."""
    before = len(keyed.app.records())
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, bearer(keyed.keys["paths"]))
    body = refused(keyed, r, path, 403, "apikey_path_denied", before=before)
    assert not [e for e in keyed.sd.logs() if e.get("event") == "stolen_credential"
                and e.get("request_id") == body["request_id"]]


def test_key_without_paths_reaches_every_path(keyed):
    for p in ("/", "/admin", "/invoices/1"):
        af.check_passed(af.request(keyed.sd.port, keyed.cl["billing"], p,
                                   bearer(keyed.keys["ci"])), "api-key", "ci")


# --------------------------------------------------------------------------
# two credentials, forged steeldoor headers
# --------------------------------------------------------------------------

MULTIPLE = [
    ("same_twice", lambda k: bearer(k["ci"]) * 2),
    ("two_valid", lambda k: bearer(k["ci"]) + bearer(k["future"])),
    ("valid_and_unknown", lambda k: bearer(k["ci"]) + bearer(af.new_key())),
    ("unknown_then_valid", lambda k: bearer(af.new_key()) + bearer(k["ci"])),
    ("case_variants", lambda k: [("Authorization", "Bearer " + k["ci"]),
                                 ("authorization", "bearer " + k["future"])]),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in MULTIPLE])
def test_two_credentials_400(keyed, make):
    """Which one would steeldoor check and which one would the app read?
    Neither: 400 auth_multiple."""
    path = unique("multi")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, make(keyed.keys))
    refused(keyed, r, path, 400, "auth_multiple")


SPOOF = [("X-Steeldoor-Key-Id", "admin"), ("x_steeldoor_key_id", "admin"),
         ("X-STEELDOOR-KEY-ID", "admin"), ("X-Steeldoor-Auth", "token"),
         ("x-steeldoor-auth", "token"), ("X-Steeldoor-Token-Sub", "root"),
         ("X_Steeldoor_Token_Sub", "root")]


def test_forged_steeldoor_headers_replaced(keyed):
    r = af.request(keyed.sd.port, keyed.cl["billing"], unique("forge"),
                   SPOOF + bearer(keyed.keys["ci"]))
    s = af.check_passed(r, "api-key", "ci")
    flat = json.dumps(s)
    assert "admin" not in flat and "root" not in flat, "a forged value reached the app: %s" % flat


def test_forged_steeldoor_headers_without_key_401(keyed):
    path = unique("forge-nokey")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path, SPOOF)
    refused(keyed, r, path, 401, "auth_missing", challenge=CHALLENGE)


# --------------------------------------------------------------------------
# keep-alive: the per-connection cache
# --------------------------------------------------------------------------

def test_many_requests_on_one_connection(keyed):
    with sdhttp.H1(keyed.cl["billing"].ctx, keyed.sd.port) as c:
        for i in range(30):
            r = c.request("GET", "/ka-%d" % i, bearer(keyed.keys["ci"]))
            s = af.check_passed(r, "api-key", "ci")
            assert s["path"] == "/ka-%d" % i


FOLLOW_UPS = [
    # (what the next request carries, status, reason or key id)
    ("nothing", lambda k: [], 401, "auth_missing"),
    ("altered", lambda k: bearer(_mutate(k["ci"], -2)), 401, "apikey_unknown"),
    ("truncated", lambda k: bearer(k["ci"][:-1]), 401, "apikey_unknown"),
    ("revoked", lambda k: bearer(k["revoked"]), 401, "apikey_revoked"),
    ("expired", lambda k: bearer(k["expired"]), 401, "apikey_expired"),
    ("not_bound", lambda k: bearer(k["dnsk"]), 403, "apikey_not_bound"),
    ("other_valid", lambda k: bearer(k["future"]), 200, "future"),
]


@pytest.mark.parametrize("make,status,word", [pytest.param(m, s, w, id=i)
                                              for i, m, s, w in FOLLOW_UPS])
def test_cache_is_per_credential(keyed, make, status, word):
    """After three good requests on a connection, the fourth is judged on
    what it carries: the remembered key is neither sticky nor loosely
    matched."""
    path = unique("cache")
    with sdhttp.H1(keyed.cl["billing"].ctx, keyed.sd.port) as c:
        for i in range(3):
            af.check_passed(c.request("GET", "/warm-%d" % i, bearer(keyed.keys["ci"])),
                            "api-key", "ci")
        r = c.request("GET", path, make(keyed.keys))
        r.closed = c.wait_closed(1.0) if r.status >= 400 else None
    if status == 200:
        af.check_passed(r, "api-key", word)
    else:
        refused(keyed, r, path, status, word)


def test_paths_checked_on_every_request_of_a_connection(keyed):
    path = "/apix-" + unique("p")[1:]
    with sdhttp.H1(keyed.cl["billing"].ctx, keyed.sd.port) as c:
        af.check_passed(c.request("GET", "/api/one", bearer(keyed.keys["paths"])), "api-key",
                        "paths")
        r = c.request("GET", path, bearer(keyed.keys["paths"]))
        r.closed = c.wait_closed(1.0)
    refused(keyed, r, path, 403, "apikey_path_denied")


def test_pipelined_request_without_key_refused(keyed):
    p1, p2 = unique("pipe-ok"), unique("pipe-nokey")
    with sdhttp.H1(keyed.cl["billing"].ctx, keyed.sd.port) as c:
        c.send(sdhttp.build_request("GET", p1, bearer(keyed.keys["ci"])) +
               sdhttp.build_request("GET", p2))
        a = c.response()
        b = c.response()
        b.closed = c.wait_closed(1.0)
    assert af.seen(a)["path"] == p1
    refused(keyed, b, p2, 401, "auth_missing")


def test_request_pipelined_behind_a_refusal_never_runs(keyed):
    """A refused request closes the connection: a good request pipelined
    behind it is never forwarded."""
    p1, p2 = unique("pipe-bad"), unique("pipe-behind")
    with sdhttp.H1(keyed.cl["billing"].ctx, keyed.sd.port) as c:
        c.send(sdhttp.build_request("GET", p1, bearer(af.new_key())) +
               sdhttp.build_request("GET", p2, bearer(keyed.keys["ci"])))
        a = c.response()
        a.closed = c.wait_closed(2.0)
    refused(keyed, a, p1, 401, "apikey_unknown")
    af.never_reached(keyed.app, p2)


# --------------------------------------------------------------------------
# --api-key-header
# --------------------------------------------------------------------------

def test_custom_header_carries_the_key(custom):
    r = af.request(custom.sd.port, custom.billing, unique("hdr"), [("X-Api-Key", custom.key)])
    af.check_passed(r, "api-key", "hdr", credential_header="HTTP_X_API_KEY")


def test_custom_header_missing_401_names_it(custom):
    path = unique("hdr-none")
    r = af.request(custom.sd.port, custom.billing, path)
    body = af.refused_and_unseen(custom.sd, custom.app, r, path, 401, "auth_missing")
    www = r.get("WWW-Authenticate")
    assert 'realm="steeldoor"' in www and "x-api-key" in www.lower(), \
        "the challenge should name the key's header: %r" % www
    assert body["reason"] == "auth_missing"


@pytest.mark.parametrize("headers", [
    pytest.param(lambda k: [("X-Api-Key", k), ("Authorization", "Bearer " + k)], id="both_places"),
    pytest.param(lambda k: [("X-Api-Key", k), ("x-api-key", k)], id="header_twice"),
    pytest.param(lambda k: [("X-Api-Key", k), ("X_Api_Key", af.new_key())], id="underscore_twin"),
])
def test_custom_header_two_credentials_400(custom, headers):
    path = unique("hdr-multi")
    r = af.request(custom.sd.port, custom.billing, path, headers(custom.key))
    af.refused_and_unseen(custom.sd, custom.app, r, path, 400, "auth_multiple")


def test_custom_header_underscore_spelling_never_reaches_app(custom):
    """gunicorn hands X_Api_Key to the app as HTTP_X_API_KEY, the very name
    the key has: steeldoor must treat it as the key's header (check it,
    then drop it) - the app never reads an unchecked value there."""
    path = unique("hdr-us")
    r = af.request(custom.sd.port, custom.billing, path, [("X_Api_Key", custom.key)])
    if r.status == 200:
        af.check_passed(r, "api-key", "hdr", credential_header="HTTP_X_API_KEY")
    else:
        af.refused_and_unseen(custom.sd, custom.app, r, path, r.status, r.json()["reason"])
    path = unique("hdr-us-bad")
    r = af.request(custom.sd.port, custom.billing, path, [("X_Api_Key", af.new_key())])
    af.refused_and_unseen(custom.sd, custom.app, r, path, 401, "apikey_unknown")


# --------------------------------------------------------------------------
# the README's five commands, with real curl
# --------------------------------------------------------------------------

def _curl(port, d, cert, path, headers=()):
    cmd = ["curl", "-sS", "--max-time", "10", "--resolve", "localhost:%d:127.0.0.1" % port,
           "--cacert", d / "ca.crt", "--cert", d / (cert + ".crt"), "--key", d / (cert + ".key"),
           "-D", "-", "-w", "\n%{http_code}"]
    for h in headers:
        cmd += ["-H", h]
    r = run(cmd + ["https://localhost:%d%s" % (port, path)], timeout=20)
    assert r.returncode == 0, "curl rc=%d: %s" % (r.returncode, r.stderr.decode(errors="replace"))
    out = r.stdout.decode(errors="replace")
    text, _, code = out.rpartition("\n")
    head, _, body = text.partition("\r\n\r\n")
    return int(code), head, body


def test_five_commands_with_curl(sd_bin, steeldoor, flask_app, tmp_path):  # noqa: F811
    d = tmp_path / "pki"
    for step in (["pki", "init", "--dir", d],
                 ["pki", "issue", "--dir", d, "--name", "api", "--server", "--dns", "localhost",
                  "--ip", "127.0.0.1"],
                 ["pki", "issue", "--dir", d, "--name", "billing", "--client", "--uri",
                  "spiffe://example.org/billing"],
                 ["pki", "issue", "--dir", d, "--name", "shipping", "--client", "--uri",
                  "spiffe://example.org/shipping"]):
        r = run([sd_bin] + step, timeout=30)
        assert r.returncode == 0, "steeldoor %s: %s" % (step[:2], r.stderr.decode(errors="replace"))
    kf = d / "keys.yaml"
    key = af.cli_new_key(sd_bin, kf, "billing-ci", ["uri:spiffe://example.org/billing"])
    text = kf.read_text()
    assert key not in text and af.key_digest(key) in text, \
        "the keys file must hold the digest, never the key:\n%s" % text
    port = free_port()
    sd = steeldoor(args=["serve", "--listen", "127.0.0.1:%d" % port, "--target", flask_app.target,
                         "--cert", d / "api.crt", "--key", d / "api.key", "--cacert", d / "ca.crt",
                         "--allow-all", "--http", "--api-keys", kf, "--workers", "1",
                         "--drain-timeout", "2s"],
                   wait_ports=[("127.0.0.1", port)])
    p_ok, p_none, p_other = unique("curl-ok"), unique("curl-none"), unique("curl-other")

    code, head, body = _curl(port, d, "billing", p_ok, ["Authorization: Bearer " + key])
    assert code == 200, (code, head, body)
    seen = json.loads(body)
    assert seen["path"] == p_ok
    env = seen["environ"]
    assert env.get("HTTP_X_STEELDOOR_AUTH") == "api-key", env
    assert env.get("HTTP_X_STEELDOOR_KEY_ID") == "billing-ci", env
    assert "HTTP_AUTHORIZATION" not in env, env

    code, head, body = _curl(port, d, "billing", p_none)
    assert code == 401, (code, head, body)
    assert re.search(r'(?im)^www-authenticate: Bearer realm="steeldoor"', head), head
    assert json.loads(body)["reason"] == "auth_missing", body

    code, head, body = _curl(port, d, "shipping", p_other, ["Authorization: Bearer " + key])
    assert code == 403, (code, head, body)
    b = json.loads(body)
    assert b["reason"] == "apikey_not_bound", body
    e = af.stolen_line(sd, b["request_id"])
    assert e.get("credential") == "billing-ci" and e.get("identity") == \
        "spiffe://example.org/shipping", e
    for p in (p_none, p_other):
        af.never_reached(flask_app, p, settle=0.1)


# --------------------------------------------------------------------------
# where else a key could hide, and what Connection could drop
# --------------------------------------------------------------------------

def test_key_in_a_trailer_is_no_key(keyed):
    """Fields of a chunked body's trailer are not request headers: a key
    there authenticates nothing (and never reaches the app)."""
    path = unique("trailer")
    with sdhttp.H1(keyed.cl["billing"].ctx, keyed.sd.port) as c:
        c.send(("POST %s HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                "Trailer: Authorization\r\n\r\n" % path).encode() +
               sdhttp.chunked(b"body", trailers=[b"Authorization: Bearer " +
                                                 keyed.keys["ci"].encode()]))
        r = c.response("POST")
        r.closed = c.wait_closed(1.0)
    refused(keyed, r, path, 401, "auth_missing")


def test_connection_header_naming_the_auth_fields(keyed):
    """Naming Authorization and steeldoor's own fields in Connection: the
    request is either judged without a key (401) or passes with steeldoor's
    fields intact - never forwarded without them, never with the key."""
    path = unique("conn")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path,
                   [("Connection", "keep-alive, Authorization, X-Steeldoor-Auth, "
                                   "X-Steeldoor-Key-Id")] + bearer(keyed.keys["ci"]))
    if r.status == 401:
        refused(keyed, r, path, 401, "auth_missing")
    else:
        af.check_passed(r, "api-key", "ci")


def test_resumed_session_keeps_the_binding(keyed):
    """A resumed TLS session is the same certificate: the key bound to it
    passes, a key bound to another certificate is still stolen."""
    billing = keyed.cl["billing"]
    with sdhttp.H1(billing.ctx, keyed.sd.port) as c:
        af.check_passed(c.request("GET", "/rs-1", bearer(keyed.keys["ci"])), "api-key", "ci")
        af.check_passed(c.request("GET", "/rs-2", bearer(keyed.keys["ci"])), "api-key", "ci")
        sess = c.session
    assert sess is not None
    with sdhttp.H1(billing.ctx, keyed.sd.port, session=sess) as c:
        assert c.session_reused, "the session did not resume"
        af.check_passed(c.request("GET", "/rs-3", bearer(keyed.keys["ci"])), "api-key", "ci")
    path = unique("rs-stolen")
    with sdhttp.H1(billing.ctx, keyed.sd.port, session=sess) as c:
        assert c.session_reused, "the session did not resume"
        r = c.request("GET", path, bearer(keyed.keys["dnsk"]))
        r.closed = c.wait_closed(1.0)
    body = refused(keyed, r, path, 403, "apikey_not_bound")
    af.check_stolen(keyed.sd, body, "api-key", "dnsk", "dns:ci.example.org", billing, LISTENER)


def test_websocket_upgrade_needs_the_key_too(keyed):
    """An upgrade becomes a tunnel steeldoor no longer reads: the request
    that opens it is judged like any other."""
    path = unique("ws")
    r = af.request(keyed.sd.port, keyed.cl["billing"], path,
                   [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("Sec-WebSocket-Version", "13")])
    refused(keyed, r, path, 401, "auth_missing")
