"""HTTP mode's second factor, what both kinds share: a listener with API
keys AND tokens (either credential, never both at once), a key header of
its own next to tokens, --forward-credentials, the YAML keys; the
configurations steeldoor must refuse to start with (issuer and audience
missing, a setting on a tcp listener, a broken keys file or JWKS, a leeway
beyond 5m); and reloads, which an attacker waits for: a key revoked while
its keep-alive connection stays open, a JWKS key rotated out while tokens
it signed are cached on open connections, a keys file rewritten under
load, and a broken file written during the run (the old keys must keep
working, never none and never all)."""
import json
import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from sdlib import free_port
from conftest import yaml_config
from http_apps import authfix as af
from http_apps import sdhttp
from http_apps.authfix import AUD, ISS, bearer, claims_for, mint, unique
from http_apps.fixtures import flask_app  # noqa: F401

CHALLENGE = 'Bearer realm="steeldoor"'
SPIFFE_BILLING = "uri:spiffe://example.org/billing"


def billing_of(pki):
    return af.pki_client(pki, pki.client_cert, pki.client_key, "spiffe://example.org/billing")


def other_of(pki):
    return af.pki_client(pki, pki.pygood[0], pki.pygood[1], "spiffe://example.org/pygood")


# --------------------------------------------------------------------------
# both factors on one listener
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def both(sd_bin, pki, flask_app, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("both")
    es = af.Signer("ES256", "es-1")
    key = af.new_key()
    kf = af.write_keys(d / "keys.yaml", [{"id": "ci", "key": key, "bind": [SPIFFE_BILLING]}])
    jwks = af.write_jwks(d / "jwks.json", [es])
    sd = af.start_sd(sd_bin, pki, d, flask_app.target, "both",
                     ["--api-keys", kf, "--jwks", jwks, "--jwt-issuer", ISS,
                      "--jwt-audience", AUD])
    ns = SimpleNamespace(sd=sd, app=flask_app, key=key, es=es, billing=billing_of(pki),
                         other=other_of(pki))
    ns.token = mint(es, claims_for(ns.billing, sub="svc-both"))
    try:
        yield ns
    finally:
        af.stop_sd(sd)
        af.sweep_refused(flask_app)


def test_either_credential_passes(both):
    af.check_passed(af.request(both.sd.port, both.billing, unique("k"), bearer(both.key)),
                    "api-key", "ci")
    af.check_passed(af.request(both.sd.port, both.billing, unique("t"), bearer(both.token)),
                    "token", "svc-both")


def test_alternating_credentials_on_one_connection(both):
    """Each request is judged on what it carries, kind included."""
    with sdhttp.H1(both.billing.ctx, both.sd.port) as c:
        for i in range(6):
            if i % 2:
                af.check_passed(c.request("GET", "/alt-%d" % i, bearer(both.token)), "token",
                                "svc-both")
            else:
                af.check_passed(c.request("GET", "/alt-%d" % i, bearer(both.key)), "api-key",
                                "ci")


@pytest.mark.parametrize("order", ["key_first", "token_first"])
def test_key_and_token_together_400(both, order):
    path = unique("kt")
    h = bearer(both.key) + bearer(both.token)
    r = af.request(both.sd.port, both.billing, path, h if order == "key_first" else h[::-1])
    af.refused_and_unseen(both.sd, both.app, r, path, 400, "auth_multiple")


@pytest.mark.parametrize("cred,word", [
    (lambda b: None, "auth_missing"),
    (lambda b: af.new_key(), "apikey_unknown"),
    (lambda b: "a.b.c", "jwt_malformed"),
    (lambda b: af.flip_sig_bit(b.token), "jwt_bad_signature"),
    (lambda b: af.raw_jwt({"alg": "none"}, claims_for(b.billing)), "jwt_alg_refused"),
], ids=["none", "unknown_key", "garbled_token", "bad_signature", "alg_none"])
def test_refusals_with_both_configured(both, cred, word):
    path = unique("bothbad")
    c = cred(both)
    r = af.request(both.sd.port, both.billing, path, bearer(c) if c else [])
    af.refused_and_unseen(both.sd, both.app, r, path, 401, word, challenge=CHALLENGE,
                          invalid_token=True if word.startswith("jwt_") else
                          (False if word == "auth_missing" else None))


def test_stolen_key_and_token_with_both_configured(both):
    for cred, word, kind, who in ((both.key, "apikey_not_bound", "api-key", "ci"),
                                  (both.token, "jwt_cnf_mismatch", "token", "svc-both")):
        path = unique("bothstolen")
        r = af.request(both.sd.port, both.other, path, bearer(cred))
        body = af.refused_and_unseen(both.sd, both.app, r, path, 403, word)
        af.check_stolen(both.sd, body, kind, who,
                        SPIFFE_BILLING if kind == "api-key" else both.billing.sha256,
                        both.other, "both")


def test_key_header_next_to_tokens(steeldoor, flask_app, pki, tmp_path):  # noqa: F811
    """--api-key-header with --jwks: the key in its header, the token in
    Authorization; both in one request is two credentials."""
    es = af.Signer("EdDSA", "ed-1")
    key = af.new_key()
    billing = billing_of(pki)
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "hk", "key": key,
                                                 "bind": [SPIFFE_BILLING]}])
    jwks = af.write_jwks(tmp_path / "jwks.json", [es])
    sd = steeldoor(target=flask_app.target, drain="1s", name="hdrtok",
                   extra=["--http", "--api-keys", kf, "--api-key-header", "X-Api-Key",
                          "--jwks", jwks, "--jwt-issuer", ISS, "--jwt-audience", AUD])
    token = mint(es, claims_for(billing, sub="t1"))
    af.check_passed(af.request(sd.port, billing, unique("hk"), [("X-Api-Key", key)]),
                    "api-key", "hk", credential_header="HTTP_X_API_KEY")
    af.check_passed(af.request(sd.port, billing, unique("ht"), bearer(token)), "token", "t1")
    path = unique("hkt")
    r = af.request(sd.port, billing, path, [("X-Api-Key", key)] + bearer(token))
    af.refused_and_unseen(sd, flask_app, r, path, 400, "auth_multiple")
    path = unique("hnone")
    r = af.request(sd.port, billing, path)
    af.refused_and_unseen(sd, flask_app, r, path, 401, "auth_missing", challenge=CHALLENGE)


def test_forward_credentials(steeldoor, flask_app, pki, tmp_path):  # noqa: F811
    es = af.Signer("RS256", "rs-1")
    key = af.new_key()
    billing = billing_of(pki)
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "fw", "key": key,
                                                 "bind": [SPIFFE_BILLING]}])
    jwks = af.write_jwks(tmp_path / "jwks.json", [es])
    sd = steeldoor(target=flask_app.target, drain="1s", name="fwd",
                   extra=["--http", "--api-keys", kf, "--jwks", jwks, "--jwt-issuer", ISS,
                          "--jwt-audience", AUD, "--forward-credentials"])
    token = mint(es, claims_for(billing, sub="fw-sub"))
    r = af.request(sd.port, billing, unique("fk"), bearer(key))
    s = af.check_passed(r, "api-key", "fw", forwarded="Bearer " + key)
    assert af.header_values(s, "Authorization") == ["Bearer " + key], s["headers"]
    r = af.request(sd.port, billing, unique("ft"), bearer(token))
    af.check_passed(r, "token", "fw-sub", forwarded="Bearer " + token)
    # forwarding never lets a forged X-Steeldoor-* through
    r = af.request(sd.port, billing, unique("ff"),
                   [("X-Steeldoor-Key-Id", "admin")] + bearer(key))
    af.check_passed(r, "api-key", "fw", forwarded="Bearer " + key)


def test_yaml_listener_with_every_auth_key(steeldoor, flask_app, pki, tmp_path):  # noqa: F811
    es = af.Signer("ES256", "y-1")
    key = af.new_key()
    billing = billing_of(pki)
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "y", "key": key,
                                                 "bind": [SPIFFE_BILLING]}])
    jwks = af.write_jwks(tmp_path / "jwks.json", [es])
    port = free_port()
    cfg = yaml_config(pki, [{"name": "yauth", "port": port, "target": flask_app.target,
                             "mode": "http", "api-keys": '"%s"' % kf,
                             "api-key-header": "X-Api-Key", "jwks": '"%s"' % jwks,
                             "jwt-issuer": '"%s"' % ISS, "jwt-audience": AUD,
                             "jwt-leeway": "0s", "forward-credentials": "true"}])
    sd = steeldoor(config=cfg, wait_ports=[port])
    sd.port = port
    af.check_passed(af.request(port, billing, unique("yk"), [("X-Api-Key", key)]), "api-key",
                    "y", credential_header="HTTP_X_API_KEY", forwarded=key)
    token = mint(es, claims_for(billing, sub="ysub"))
    af.check_passed(af.request(port, billing, unique("yt"), bearer(token)), "token", "ysub",
                    forwarded="Bearer " + token)
    # jwt-leeway 0s: a token expired a second ago is refused
    path = unique("y-exp")
    r = af.request(port, billing, path, bearer(mint(es, claims_for(
        billing, exp=int(time.time()) - 2))))
    af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_expired", invalid_token=True)


# --------------------------------------------------------------------------
# configurations steeldoor refuses to start with
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cfgdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("authcfg")
    es = af.Signer("ES256", "c-1")
    ns = SimpleNamespace(dir=d, es=es, keys=af.write_keys(d / "keys.yaml", [
        {"id": "ci", "key": af.new_key(), "bind": [SPIFFE_BILLING]}]),
        jwks=af.write_jwks(d / "jwks.json", [es]))
    return ns


def base_args(pki, http=True):
    a = ["serve", "--listen", "127.0.0.1:%d" % free_port(), "--target", "127.0.0.1:9",
         "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca, "--allow-all",
         "--workers", "1"]
    return a + (["--http"] if http else [])


@pytest.mark.parametrize("given,missing", [
    (["--jwt-audience", AUD], ["jwt-issuer"]),
    (["--jwt-issuer", ISS], ["jwt-audience"]),
    ([], ["jwt-issuer", "jwt-audience"]),
], ids=["no_issuer", "no_audience", "neither"])
def test_jwks_needs_issuer_and_audience(sd_bin, pki, cfgdir, given, missing):
    rc, err = af.start_fails(sd_bin, base_args(pki) + ["--jwks", cfgdir.jwks] + given)
    # like every listener that is incomplete as a whole (no --cacert...): 1
    assert rc == 1, "rc %r (expected 1, an invalid configuration); stderr: %s" % (rc, err)
    for m in missing:
        assert m in err, "the message should name %s: %s" % (m, err)


TCP_FLAGS = [
    ("api_keys", lambda c: ["--api-keys", c.keys]),
    ("api_key_header", lambda c: ["--api-keys", c.keys, "--api-key-header", "X-Api-Key"]),
    ("jwks", lambda c: ["--jwks", c.jwks, "--jwt-issuer", ISS, "--jwt-audience", AUD]),
    ("jwt_leeway", lambda c: ["--jwks", c.jwks, "--jwt-issuer", ISS, "--jwt-audience", AUD,
                              "--jwt-leeway", "10s"]),
    ("forward_credentials", lambda c: ["--api-keys", c.keys, "--forward-credentials"]),
]


@pytest.mark.parametrize("flags", [pytest.param(f, id=i) for i, f in TCP_FLAGS])
def test_auth_flags_need_http(sd_bin, pki, cfgdir, flags):
    rc, err = af.start_fails(sd_bin, base_args(pki, http=False) + flags(cfgdir))
    assert rc not in (0, None), "a tcp listener started with %s" % flags(cfgdir)
    assert "needs --http" in err, "the message should say it needs --http: %s" % err


@pytest.mark.parametrize("key,value", [("api-keys", "KEYS"), ("jwks", "JWKS")])
def test_auth_yaml_keys_need_mode_http(sd_bin, pki, cfgdir, tmp_path, key, value):
    extra = {key: '"%s"' % (cfgdir.keys if value == "KEYS" else cfgdir.jwks)}
    if key == "jwks":
        extra.update({"jwt-issuer": '"%s"' % ISS, "jwt-audience": AUD})
    cfg = tmp_path / "tcp.yaml"
    cfg.write_text(yaml_config(pki, [dict(name="tcpauth", port=free_port(),
                                          target="127.0.0.1:9", **extra)]))
    rc, err = af.start_fails(sd_bin, ["serve", "--config", cfg])
    assert rc not in (0, None), "a tcp listener started with %s" % key
    assert "needs mode: http" in err, "the message should say it needs mode: http: %s" % err


@pytest.mark.parametrize("leeway", ["6m", "301s", "1h"])
def test_leeway_over_5m_refused(sd_bin, pki, cfgdir, leeway):
    rc, err = af.start_fails(sd_bin, base_args(pki) + ["--jwks", cfgdir.jwks, "--jwt-issuer", ISS,
                                                       "--jwt-audience", AUD, "--jwt-leeway",
                                                       leeway])
    assert rc not in (0, None) and "jwt-leeway" in err, (rc, err)


def test_leeways_accepted(steeldoor, pki, cfgdir):
    """0 and 0s (no skew allowed) up to 5m start."""
    ports = [free_port() for _ in range(4)]
    ls = [{"name": "lw%d" % i, "port": p, "target": "127.0.0.1:9", "mode": "http",
           "jwks": '"%s"' % cfgdir.jwks, "jwt-issuer": '"%s"' % ISS, "jwt-audience": AUD,
           "jwt-leeway": lw} for i, (p, lw) in enumerate(zip(ports, ["0", "0s", "5m", "300"]))]
    sd = steeldoor(config=yaml_config(pki, ls), wait_ports=ports)
    assert sd.running()


def _keys(entries):
    return af.keys_yaml(entries)


GOOD_DIGEST = af.key_digest(af.new_key())
BAD_KEYS_FILES = [
    ("invalid_yaml", "- id: ci\n  digest: [unclosed\n"),
    ("mapping_not_list", "ci:\n  digest: %s\n" % GOOD_DIGEST),
    ("no_digest", '- id: ci\n  bind: ["%s"]\n' % SPIFFE_BILLING),
    ("no_bind", '- id: ci\n  digest: "%s"\n' % GOOD_DIGEST),
    ("digest_not_hex", '- id: ci\n  digest: "sha256:%s"\n  bind: ["%s"]\n' % ("z" * 64,
                                                                              SPIFFE_BILLING)),
    ("digest_short", '- id: ci\n  digest: "sha256:abcd"\n  bind: ["%s"]\n' % SPIFFE_BILLING),
    ("digest_md5", '- id: ci\n  digest: "md5:%s"\n  bind: ["%s"]\n' % ("a" * 32, SPIFFE_BILLING)),
    ("key_in_clear", '- id: ci\n  key: "%s"\n  bind: ["%s"]\n' % (af.new_key(), SPIFFE_BILLING)),
    ("unknown_field", '- id: ci\n  digest: "%s"\n  bind: ["%s"]\n  admin: true\n'
     % (GOOD_DIGEST, SPIFFE_BILLING)),
    ("bind_all", '- id: ci\n  digest: "%s"\n  bind: ["all"]\n' % GOOD_DIGEST),
    ("bind_bad_kind", '- id: ci\n  digest: "%s"\n  bind: ["ip:127.0.0.1"]\n' % GOOD_DIGEST),
    ("bad_date", '- id: ci\n  digest: "%s"\n  bind: ["%s"]\n  expires: "2027-13-45"\n'
     % (GOOD_DIGEST, SPIFFE_BILLING)),
    ("duplicate_id", '- id: ci\n  digest: "%s"\n  bind: ["%s"]\n- id: ci\n  digest: "%s"\n'
     '  bind: ["%s"]\n' % (GOOD_DIGEST, SPIFFE_BILLING, af.key_digest(af.new_key()),
                           SPIFFE_BILLING)),
    ("duplicate_digest", '- id: a\n  digest: "%s"\n  bind: ["%s"]\n- id: b\n  digest: "%s"\n'
     '  bind: ["%s"]\n' % (GOOD_DIGEST, SPIFFE_BILLING, GOOD_DIGEST, SPIFFE_BILLING)),
    ("id_with_crlf", '- id: "ci\\r\\nX-Steeldoor-Auth: token"\n  digest: "%s"\n  bind: ["%s"]\n'
     % (GOOD_DIGEST, SPIFFE_BILLING)),
    ("id_with_space", '- id: "c i"\n  digest: "%s"\n  bind: ["%s"]\n' % (GOOD_DIGEST,
                                                                         SPIFFE_BILLING)),
    ("missing_file", None),
    ("a_directory", "DIR"),
]


@pytest.mark.parametrize("content", [pytest.param(c, id=i) for i, c in BAD_KEYS_FILES])
def test_bad_keys_file_refused_at_start(sd_bin, pki, tmp_path, content):
    kf = tmp_path / "keys.yaml"
    if content == "DIR":
        kf.mkdir()
    elif content is not None:
        af.atomic_write(kf, content)
    rc, err = af.start_fails(sd_bin, base_args(pki) + ["--api-keys", kf])
    assert rc not in (0, None), "started with a bad keys file (%s)" % rc
    assert str(kf) in err, "the message should name %s: %s" % (kf, err)


def _jwk_rsa1024():
    return af.Signer("RS256", "small", bits=1024).jwk()


BAD_JWKS = [
    ("invalid_json", lambda: '{"keys": [ {"kty": "EC", }'),
    ("not_an_object", lambda: "[]"),
    ("no_keys_member", lambda: "{}"),
    ("empty_keys", lambda: '{"keys": []}'),
    ("private_ec", lambda: json.dumps({"keys": [af.Signer("ES256", "p").jwk(private=True)]})),
    ("private_rsa", lambda: json.dumps({"keys": [af.Signer("RS256", "p").jwk(private=True)]})),
    ("private_okp", lambda: json.dumps({"keys": [af.Signer("EdDSA", "p").jwk(private=True)]})),
    ("private_among_public", lambda: json.dumps({"keys": [
        af.Signer("ES256", "a").jwk(), af.Signer("ES256", "b").jwk(private=True)]})),
    ("rsa_1024", lambda: json.dumps({"keys": [_jwk_rsa1024()]})),
    ("symmetric_only", lambda: json.dumps({"keys": [{"kty": "oct", "kid": "h",
                                                     "k": af.b64u(b"s" * 32)}]})),
    ("enc_only", lambda: json.dumps({"keys": [af.Signer("RS256", "e").jwk(use="enc",
                                                                          alg="RSA-OAEP")]})),
    ("duplicate_kid", lambda: json.dumps({"keys": [af.Signer("ES256", "same").jwk(),
                                                   af.Signer("ES256", "same").jwk()]})),
    ("ec_point_missing_y", lambda: json.dumps({"keys": [
        {k: v for k, v in af.Signer("ES256", "noy").jwk().items() if k != "y"}]})),
    ("missing_file", None),
    ("a_directory", "DIR"),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in BAD_JWKS])
def test_bad_jwks_refused_at_start(sd_bin, pki, tmp_path, make):
    jf = tmp_path / "jwks.json"
    if make == "DIR":
        jf.mkdir()
    elif make is not None:
        af.atomic_write(jf, make(), mode=0o644)
    rc, err = af.start_fails(sd_bin, base_args(pki) + ["--jwks", jf, "--jwt-issuer", ISS,
                                                       "--jwt-audience", AUD])
    assert rc not in (0, None), "started with a bad JWKS (%s)" % rc
    assert str(jf) in err, "the message should name %s: %s" % (jf, err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 000 file")
def test_unreadable_keys_file_refused(sd_bin, pki, tmp_path):
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                                 "bind": [SPIFFE_BILLING]}])
    os.chmod(kf, 0)
    rc, err = af.start_fails(sd_bin, base_args(pki) + ["--api-keys", kf])
    assert rc not in (0, None) and str(kf) in err, (rc, err)


# --------------------------------------------------------------------------
# reload
# --------------------------------------------------------------------------

def _poll_until_refused(c, key, timeout=6.0):
    """Requests on one open connection until one is not a 200 (bounded);
    returns (that response, number of 200s before it)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        r = c.request("GET", "/poll-%d" % n, bearer(key))
        if r.status != 200:
            r.closed = c.wait_closed(1.0)
            return r, n
        n += 1
        time.sleep(0.1)
    raise AssertionError("still 200 after %.0fs (%d requests)" % (timeout, n))


def test_revoked_key_refused_on_its_open_connection(sd_bin, steeldoor, flask_app, pki,  # noqa: F811
                                                    tmp_path):
    kf = tmp_path / "keys.yaml"
    key = af.cli_new_key(sd_bin, kf, "ci", [SPIFFE_BILLING])
    other = af.cli_new_key(sd_bin, kf, "other", [SPIFFE_BILLING])
    billing = billing_of(pki)
    sd = steeldoor(target=flask_app.target, drain="1s", name="revoke",
                   extra=["--http", "--api-keys", kf])
    with sdhttp.H1(billing.ctx, sd.port, timeout=5) as c:
        for i in range(3):
            af.check_passed(c.request("GET", "/before-%d" % i, bearer(key)), "api-key", "ci")
        af.cli_revoke(sd_bin, kf, "ci")
        t0 = time.monotonic()
        r, n = _poll_until_refused(c, key)
    body = af.assert_refused(r, 401, "apikey_revoked", challenge=CHALLENGE)
    af.check_logged(sd, body)
    assert time.monotonic() - t0 < 6
    af.never_reached(flask_app, "/poll-%d" % n)
    path = unique("revoked-new-conn")
    r = af.request(sd.port, billing, path, bearer(key))
    af.refused_and_unseen(sd, flask_app, r, path, 401, "apikey_revoked")
    af.check_passed(af.request(sd.port, billing, unique("other"), bearer(other)), "api-key",
                    "other")


def test_jwks_rotation(steeldoor, flask_app, pki, tmp_path):  # noqa: F811
    old, new = af.Signer("ES256", "2026-old"), af.Signer("EdDSA", "2026-new")
    jf = af.write_jwks(tmp_path / "jwks.json", [old])
    billing = billing_of(pki)
    sd = steeldoor(target=flask_app.target, drain="1s", name="rotate",
                   extra=["--http", "--jwks", jf, "--jwt-issuer", ISS, "--jwt-audience", AUD])
    t_old = mint(old, claims_for(billing, sub="old"))
    t_new = mint(new, claims_for(billing, sub="new"))
    port = sd.port
    c1 = sdhttp.H1(billing.ctx, port)   # will move from the old token to the new one
    c2 = sdhttp.H1(billing.ctx, port)   # keeps presenting the old token (cached)
    try:
        af.check_passed(c1.request("GET", "/r1-0", bearer(t_old)), "token", "old")
        af.check_passed(c2.request("GET", "/r2-0", bearer(t_old)), "token", "old")
        path = unique("new-before")
        r = af.request(port, billing, path, bearer(t_new))
        af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_unknown_key", invalid_token=True)

        g = af.generation(sd)
        af.write_jwks(jf, [old, new])
        af.wait_reload(sd, g)
        af.check_passed(af.request(port, billing, unique("new-added"), bearer(t_new)), "token",
                        "new")
        af.check_passed(af.request(port, billing, unique("old-still"), bearer(t_old)), "token",
                        "old")
        af.check_passed(c1.request("GET", "/r1-1", bearer(t_new)), "token", "new")
        af.check_passed(c2.request("GET", "/r2-1", bearer(t_old)), "token", "old")

        g = af.generation(sd)
        af.write_jwks(jf, [new])
        af.wait_reload(sd, g)
        # the open connections were not dropped
        af.check_passed(c1.request("GET", "/r1-2", bearer(t_new)), "token", "new")
        # the old token, verified and remembered on c2, is refused there now
        path = unique("old-cached")
        r = c2.request("GET", path, bearer(t_old))
        r.closed = c2.wait_closed(1.0)
        af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_unknown_key", invalid_token=True)
        path = unique("old-new-conn")
        r = af.request(port, billing, path, bearer(t_old))
        af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_unknown_key", invalid_token=True)
        af.check_passed(c1.request("GET", "/r1-3", bearer(t_new)), "token", "new")
    finally:
        c1.close()
        c2.close()


def test_keys_file_rewritten_under_load(steeldoor, flask_app, pki, tmp_path):  # noqa: F811
    """4 keep-alive clients use a key that stays in the file while another
    key is added and revoked 10 times: not one of their requests fails."""
    stable, flip = af.new_key(), af.new_key()
    billing = billing_of(pki)
    kf = tmp_path / "keys.yaml"
    base = [{"id": "stable", "key": stable, "bind": [SPIFFE_BILLING]}]
    af.write_keys(kf, base)
    sd = steeldoor(target=flask_app.target, drain="1s", name="load", workers=2,
                   extra=["--http", "--api-keys", kf])
    stop = threading.Event()
    results = [None] * 4
    t_end = time.monotonic() + 30

    def client(i):
        ok, fails, conn = 0, [], None
        n = 0
        while (n < 150 or not stop.is_set()) and n < 3000 and time.monotonic() < t_end:
            try:
                if conn is None:
                    conn = sdhttp.H1(billing.ctx, sd.port, timeout=5)
                r = conn.request("GET", "/load-%d-%d" % (i, n), bearer(stable))
                got = json.loads(r.body)["environ"].get("HTTP_X_STEELDOOR_KEY_ID") \
                    if r.status == 200 else None
                if r.status == 200 and got == "stable":
                    ok += 1
                else:
                    fails.append("request %d: %d %r" % (n, r.status, r.body[:200]))
                    conn.close()
                    conn = None
            except Exception as e:  # a dropped connection is a failure too
                fails.append("request %d: %r" % (n, e))
                if conn is not None:
                    conn.close()
                conn = None
            n += 1
        if conn is not None:
            conn.close()
        results[i] = (ok, fails)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    flips = []
    try:
        for k in range(10):
            g = af.generation(sd)
            entry = {"id": "flip", "key": flip, "bind": [SPIFFE_BILLING]}
            if k % 2:
                entry["revoked"] = "2026-01-01T00:00:00Z"
            af.write_keys(kf, base + [entry])
            af.wait_reload(sd, g, workers=2)
            flips.append(af.request(sd.port, billing, unique("flip"), bearer(flip)).status)
    finally:
        stop.set()
        for t in threads:
            t.join(40)
    assert all(r is not None for r in results), "a load client did not finish"
    fails = [f for _, fs in results for f in fs]
    total = sum(ok for ok, _ in results) + len(fails)
    assert total >= 600, "only %d requests were made" % total
    assert not fails, "%d of %d requests with the stable key failed: %s" % (
        len(fails), total, fails[:5])
    assert flips == [200, 401] * 5, "the flipping key's answers after each reload: %s" % flips


BROKEN = [
    ("keys_invalid_yaml", "keys", "- id: [broken\n"),
    ("keys_bind_all", "keys", None),
    ("keys_removed", "keys", "REMOVE"),
    ("jwks_private_key", "jwks", None),
    ("jwks_invalid_json", "jwks", "{\"keys\": ["),
]


@pytest.mark.parametrize("what,which,content", [pytest.param(*b, id=b[0]) for b in BROKEN])
def test_broken_file_during_run_keeps_old_credentials(steeldoor, flask_app,  # noqa: F811
                                                      pki, tmp_path, what, which, content):
    key, newkey = af.new_key(), af.new_key()
    es = af.Signer("ES256", "b-1")
    billing = billing_of(pki)
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": key,
                                                 "bind": [SPIFFE_BILLING]}])
    jf = af.write_jwks(tmp_path / "jwks.json", [es])
    sd = steeldoor(target=flask_app.target, drain="1s", name="broken",
                   extra=["--http", "--api-keys", kf, "--jwks", jf, "--jwt-issuer", ISS,
                          "--jwt-audience", AUD])
    token = mint(es, claims_for(billing, sub="tb"))
    target = kf if which == "keys" else jf
    with sdhttp.H1(billing.ctx, sd.port) as c:
        af.check_passed(c.request("GET", "/b-0", bearer(key)), "api-key", "ci")
        nfail = af.reload_failed_count(sd)
        if content == "REMOVE":
            os.unlink(target)
        elif what == "keys_bind_all":
            af.atomic_write(target, af.keys_yaml([{"id": "ci", "key": key, "bind": ["all"]}]))
        elif what == "jwks_private_key":
            af.atomic_write(target, json.dumps({"keys": [es.jwk(private=True)]}), mode=0o644)
        else:
            af.atomic_write(target, content)
        e = af.wait_reload_failed(sd, nfail)
        assert target.name in json.dumps(e), "reload_failed should name %s: %s" % (target, e)
        # SIGHUP with the file still broken: fails again, nothing changes
        sd.signal(signal.SIGHUP)
        af.wait_reload_failed(sd, nfail + 1)
        # the old key and token work, on the open connection and on new ones
        af.check_passed(c.request("GET", "/b-1", bearer(key)), "api-key", "ci")
        af.check_passed(c.request("GET", "/b-2", bearer(token)), "token", "tb")
    af.check_passed(af.request(sd.port, billing, unique("b-new"), bearer(key)), "api-key", "ci")
    af.check_passed(af.request(sd.port, billing, unique("b-tok"), bearer(token)), "token", "tb")
    if which == "keys":
        path = unique("b-bindall")
        r = af.request(sd.port, other_of(pki), path, bearer(key))
        af.refused_and_unseen(sd, flask_app, r, path, 403, "apikey_not_bound")
    # repaired (with a new key): the reload goes through
    g = af.generation(sd)
    af.write_keys(kf, [{"id": "ci", "key": key, "bind": [SPIFFE_BILLING]},
                       {"id": "new", "key": newkey, "bind": [SPIFFE_BILLING]}])
    af.write_jwks(jf, [es])
    deadline = time.monotonic() + 6
    while af.generation(sd) <= g and time.monotonic() < deadline:
        time.sleep(0.05)
    assert af.generation(sd) > g, "no reload after the file was repaired:\n%s" % "\n".join(
        sd.raw_lines()[-15:])
    af.check_passed(af.request(sd.port, billing, unique("b-fixed"), bearer(newkey)), "api-key",
                    "new")
