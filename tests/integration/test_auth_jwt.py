"""HTTP mode's second factor, certificate-bound tokens (`serve --http --jwks
FILE --jwt-issuer ISS --jwt-audience AUD`, RFC 8705), as an attacker meets
it: every request needs `Authorization: Bearer JWT` signed by a key of the
JWKS (ES256, RS256, EdDSA), with the configured iss and aud, in its time
window, and whose cnf."x5t#S256" is the SHA-256 of the client certificate
of this very connection.

Attacked here: alg "none" (every spelling), HS256 keyed with the public key
(PEM, JWK), algorithms the key is not for, crit, unknown and ambiguous kids,
keys embedded in the header (jwk, jku), signatures by the wrong key, in DER,
with one bit flipped, over altered claims; expired and not-yet-valid
tokens (and the leeway), wrong iss and aud, no or foreign cnf, missing and
mistyped claims, duplicate members, malformed and oversized tokens; a valid
token replayed with another certificate (403 and a `stolen_credential`
warning); the per-connection cache (the next request is judged on what it
carries, and a token whose exp passes on a keep-alive connection stops
working there). Every refusal: status, reason word, WWW-Authenticate with
error="invalid_token", the `http` log line, and the Flask app never
reached."""
import json
import time
from types import SimpleNamespace

import pytest

from http_apps import authfix as af
from http_apps import sdhttp
from http_apps.authfix import AUD, DROP, ISS, bearer, claims_for, mint, unique
from http_apps.fixtures import flask_app  # noqa: F401

LISTENER = "tokened"
CHALLENGE = 'Bearer realm="steeldoor"'


@pytest.fixture(scope="module")
def tok(sd_bin, pki, flask_app, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("jwt")
    s = SimpleNamespace(
        es1=af.Signer("ES256", "es-1"), es2=af.Signer("ES256", "es-2"),
        rs1=af.Signer("RS256", "rs-1"), ed1=af.Signer("EdDSA", "ed-1"),
        # the attacker's keys: not in the JWKS
        atk_es=af.Signer("ES256", "attacker"), atk_rs=af.Signer("RS256", "attacker", 2048),
        atk_ed=af.Signer("EdDSA", "attacker"))
    jwks = af.write_jwks(d / "jwks.json", [s.es1, s.es2, s.rs1, s.ed1])
    sd = af.start_sd(sd_bin, pki, d, flask_app.target, LISTENER,
                     ["--jwks", jwks, "--jwt-issuer", ISS, "--jwt-audience", AUD])
    s.sd, s.app, s.dir = sd, flask_app, d
    s.billing = af.pki_client(pki, pki.client_cert, pki.client_key,
                              "spiffe://example.org/billing")
    s.other = af.pki_client(pki, pki.pygood[0], pki.pygood[1], "spiffe://example.org/pygood")
    try:
        yield s
    finally:
        af.stop_sd(sd)
        af.sweep_refused(flask_app)


def refused(t, resp, path, status, word, **kw):
    """word: the reason, or a tuple of the readings the spec leaves open."""
    if isinstance(word, tuple):
        got = resp.json().get("reason") if resp.status == status else None
        assert got in word, "reason %r, expected one of %s: %r" % (got, word, resp)
        word = got
    return af.refused_and_unseen(t.sd, t.app, resp, path, status, word, **kw)


def good(t, sub="svc-orders", signer=None, **over):
    return mint(signer or t.es1, claims_for(t.billing, sub=sub, **over))


SIGNERS = ["es1", "es2", "rs1", "ed1"]


# --------------------------------------------------------------------------
# the good path
# --------------------------------------------------------------------------

@pytest.mark.parametrize("signer", SIGNERS)
def test_valid_token_reaches_backend_without_the_token(tok, signer):
    sub = "svc-" + signer
    token = good(tok, sub=sub, signer=getattr(tok, signer))
    path = unique("ok")
    r = af.request(tok.sd.port, tok.billing, path, bearer(token))
    s = af.check_passed(r, "token", sub)
    assert s["path"] == path and token.split(".")[2] not in json.dumps(s)
    e = af.http_line(tok.sd, s["environ"]["HTTP_X_STEELDOOR_REQUEST_ID"])
    assert e.get("status") == 200, e
    assert token.split(".")[2] not in tok.sd.stderr_text(), "the token was logged"


@pytest.mark.parametrize("name,over", [
    ("aud_list", {"aud": ["another-api", AUD]}),
    ("exp_within_leeway", {"exp": "NOW-10"}),
    ("nbf_within_leeway", {"nbf": "NOW+10"}),
    ("nbf_past", {"nbf": "NOW-60"}),
    ("no_iat", {"iat": DROP}),
    ("extra_claims", {"scope": "orders:read", "jti": "abc", "roles": ["x"]}),
])
def test_valid_token_variants_pass(tok, name, over):
    now = int(time.time())
    over = {k: (now + int(v[3:]) if isinstance(v, str) and v.startswith("NOW") else v)
            for k, v in over.items()}
    r = af.request(tok.sd.port, tok.billing, unique(name), bearer(good(tok, sub=name, **over)))
    af.check_passed(r, "token", name)


# --------------------------------------------------------------------------
# invalid tokens: 401, error="invalid_token"
# --------------------------------------------------------------------------

def _c(t, **over):
    return claims_for(t.billing, **over)


def _now(d=0):
    return int(time.time()) + d


INVALID = [
    # algorithm attacks: refused before any key is touched
    ("alg_none", lambda t: af.raw_jwt({"alg": "none", "typ": "JWT"}, _c(t)), "jwt_alg_refused"),
    ("alg_none_kid", lambda t: af.raw_jwt({"alg": "none", "kid": "es-1"}, _c(t)),
     "jwt_alg_refused"),
    ("alg_None", lambda t: af.raw_jwt({"alg": "None", "kid": "es-1"}, _c(t)), "jwt_alg_refused"),
    ("alg_NONE", lambda t: af.raw_jwt({"alg": "NONE", "kid": "es-1"}, _c(t)), "jwt_alg_refused"),
    ("alg_none_with_signature",
     lambda t: af.raw_jwt({"alg": "none", "kid": "es-1"}, _c(t), b"x" * 64), "jwt_alg_refused"),
    ("alg_empty", lambda t: af.raw_jwt({"alg": "", "kid": "es-1"}, _c(t)), "jwt_alg_refused"),
    ("alg_missing", lambda t: af.signed_raw(t.es1, {"kid": "es-1"}, _c(t)),
     ("jwt_alg_refused", "jwt_malformed")),
    ("hs256_es_public_pem", lambda t: af.hs256_with(
        t.es1.pub_pem, {"alg": "HS256", "typ": "JWT", "kid": "es-1"}, _c(t)), "jwt_alg_refused"),
    ("hs256_rsa_public_pem", lambda t: af.hs256_with(
        t.rs1.pub_pem, {"alg": "HS256", "typ": "JWT", "kid": "rs-1"}, _c(t)), "jwt_alg_refused"),
    ("hs256_rsa_pem_no_kid", lambda t: af.hs256_with(
        t.rs1.pub_pem, {"alg": "HS256", "typ": "JWT"}, _c(t)), "jwt_alg_refused"),
    ("hs256_jwk_json", lambda t: af.hs256_with(
        json.dumps(t.rs1.jwk()).encode(), {"alg": "HS256", "kid": "rs-1"}, _c(t)),
     "jwt_alg_refused"),
    ("hs384", lambda t: af.hs256_with(t.es1.pub_pem, {"alg": "HS384", "kid": "es-1"}, _c(t)),
     "jwt_alg_refused"),
    ("es384_on_p256", lambda t: af.signed_raw(t.es1, {"alg": "ES384", "kid": "es-1"}, _c(t)),
     "jwt_alg_refused"),
    ("ps256_on_rsa", lambda t: af.signed_raw(t.rs1, {"alg": "PS256", "kid": "rs-1"}, _c(t)),
     "jwt_alg_refused"),
    ("es256_on_rsa_kid", lambda t: af.signed_raw(t.es1, {"alg": "ES256", "kid": "rs-1"}, _c(t)),
     "jwt_alg_refused"),
    ("rs256_on_ec_kid", lambda t: af.signed_raw(t.rs1, {"alg": "RS256", "kid": "es-1"}, _c(t)),
     "jwt_alg_refused"),
    ("eddsa_on_rsa_kid", lambda t: af.signed_raw(t.ed1, {"alg": "EdDSA", "kid": "rs-1"}, _c(t)),
     "jwt_alg_refused"),
    ("crit", lambda t: af.signed_raw(t.es1, {"alg": "ES256", "kid": "es-1", "crit": ["exp"],
                                             "exp": 1}, _c(t)), "jwt_alg_refused"),
    # which key
    ("unknown_kid", lambda t: mint(t.atk_es, _c(t)), "jwt_unknown_key"),
    ("kid_traversal", lambda t: mint(t.atk_es, _c(t), kid="../../../../dev/null"),
     "jwt_unknown_key"),
    ("kid_case", lambda t: mint(t.es1, _c(t), kid="ES-1"), "jwt_unknown_key"),
    ("no_kid_two_es_keys", lambda t: mint(t.es1, _c(t), kid=False), "jwt_unknown_key"),
    ("embedded_jwk", lambda t: mint(t.atk_es, _c(t), headers={"jwk": t.atk_es.jwk()}),
     "jwt_unknown_key"),
    ("jku", lambda t: mint(t.atk_es, _c(t), headers={"jku": "https://127.0.0.1:1/jwks.json"}),
     "jwt_unknown_key"),
    # signatures
    ("wrong_key_es", lambda t: mint(t.atk_es, _c(t), kid="es-1"), "jwt_bad_signature"),
    ("wrong_key_rs", lambda t: mint(t.atk_rs, _c(t), kid="rs-1"), "jwt_bad_signature"),
    ("wrong_key_ed", lambda t: mint(t.atk_ed, _c(t), kid="ed-1"), "jwt_bad_signature"),
    ("other_jwks_key_same_alg", lambda t: mint(t.es2, _c(t), kid="es-1"), "jwt_bad_signature"),
    ("embedded_jwk_known_kid", lambda t: mint(t.atk_es, _c(t), kid="es-1",
                                              headers={"jwk": t.atk_es.jwk(kid="es-1")}),
     "jwt_bad_signature"),
    ("flipped_bit_es", lambda t: af.flip_sig_bit(mint(t.es1, _c(t))), "jwt_bad_signature"),
    ("flipped_bit_rs", lambda t: af.flip_sig_bit(mint(t.rs1, _c(t))), "jwt_bad_signature"),
    ("flipped_bit_ed", lambda t: af.flip_sig_bit(mint(t.ed1, _c(t))), "jwt_bad_signature"),
    ("flipped_last_bit_es", lambda t: af.flip_sig_bit(mint(t.es1, _c(t)), byte=63, bit=0),
     "jwt_bad_signature"),
    ("es256_der_signature", lambda t: af.signed_raw(t.es1, {"alg": "ES256", "kid": "es-1"},
                                                    _c(t), der=True), "jwt_bad_signature"),
    ("claims_swapped", lambda t: ".".join([mint(t.es1, _c(t)).split(".")[0],
                                           af.seg(_c(t, sub="admin")),
                                           mint(t.es1, _c(t)).split(".")[2]]),
     "jwt_bad_signature"),
    ("signature_of_other_token", lambda t: ".".join(
        mint(t.es1, _c(t, sub="admin")).split(".")[:2] +
        [mint(t.es1, _c(t, sub="svc")).split(".")[2]]), "jwt_bad_signature"),
    ("empty_signature", lambda t: ".".join(mint(t.es1, _c(t)).split(".")[:2]) + ".",
     ("jwt_bad_signature", "jwt_malformed")),
    # time
    ("expired", lambda t: mint(t.es1, _c(t, exp=_now(-120))), "jwt_expired"),
    ("expired_long_ago", lambda t: mint(t.es1, _c(t, exp=1)), "jwt_expired"),
    ("not_yet_valid", lambda t: mint(t.es1, _c(t, nbf=_now(300))), "jwt_not_yet_valid"),
    # iss, aud
    ("wrong_iss", lambda t: mint(t.es1, _c(t, iss="https://evil.example")), "jwt_wrong_issuer"),
    ("iss_trailing_slash", lambda t: mint(t.es1, _c(t, iss=ISS + "/")), "jwt_wrong_issuer"),
    ("no_iss", lambda t: mint(t.es1, _c(t, iss=DROP)), "jwt_wrong_issuer"),
    ("wrong_aud", lambda t: mint(t.es1, _c(t, aud="another-api")), "jwt_wrong_audience"),
    ("aud_prefix", lambda t: mint(t.es1, _c(t, aud=AUD + "-admin")), "jwt_wrong_audience"),
    ("aud_list_without", lambda t: mint(t.es1, _c(t, aud=["a", "b"])), "jwt_wrong_audience"),
    ("no_aud", lambda t: mint(t.es1, _c(t, aud=DROP)), "jwt_wrong_audience"),
    # cnf
    ("no_cnf", lambda t: mint(t.es1, claims_for(None)), "jwt_no_cnf"),
    ("cnf_empty", lambda t: mint(t.es1, _c(t, cnf={})), "jwt_no_cnf"),
    ("cnf_jkt_only", lambda t: mint(t.es1, _c(t, cnf={"jkt": af.b64u(b"k" * 32)})),
     "jwt_no_cnf"),
    ("cnf_sha1_x5t", lambda t: mint(t.es1, _c(t, cnf={"x5t": t.billing.x5t})), "jwt_no_cnf"),
    # claims
    ("no_sub", lambda t: mint(t.es1, _c(t, sub=DROP)), "jwt_bad_claims"),
    ("sub_number", lambda t: mint(t.es1, _c(t, sub=42)), "jwt_bad_claims"),
    ("sub_empty", lambda t: mint(t.es1, _c(t, sub="")), "jwt_bad_claims"),
    ("no_exp", lambda t: mint(t.es1, _c(t, exp=DROP)), "jwt_bad_claims"),
    ("exp_string", lambda t: mint(t.es1, _c(t, exp=str(_now(300)))), "jwt_bad_claims"),
    # malformed
    ("two_parts", lambda t: ".".join(mint(t.es1, _c(t)).split(".")[:2]), "jwt_malformed"),
    ("four_parts", lambda t: mint(t.es1, _c(t)) + ".AAAA", "jwt_malformed"),
    ("padding", lambda t: mint(t.es1, _c(t)) + "==", "jwt_malformed"),
    ("header_not_json", lambda t: af.signed_raw(t.es1, b"not json", _c(t)), "jwt_malformed"),
    ("header_json_array", lambda t: af.signed_raw(t.es1, b'["ES256"]', _c(t)), "jwt_malformed"),
    ("claims_json_array", lambda t: af.signed_raw(t.es1, {"alg": "ES256", "kid": "es-1"},
                                                  b'["sub"]'),
     ("jwt_malformed", "jwt_bad_claims")),
    ("header_duplicate_alg", lambda t: af.signed_raw(
        t.es1, b'{"alg":"none","alg":"ES256","kid":"es-1"}', _c(t)), "jwt_malformed"),
    ("claims_duplicate_exp", lambda t: af.signed_raw(
        t.es1, {"alg": "ES256", "kid": "es-1"},
        json.dumps(_c(t))[:-1].encode() + b',"exp":%d}' % _now(99999)),
     ("jwt_malformed", "jwt_bad_claims")),
    ("oversized", lambda t: mint(t.es1, _c(t, pad="A" * 9000)), "jwt_malformed"),
    ("an_api_key", lambda t: af.new_key(), "jwt_malformed"),
    ("not_base64", lambda t: "a$b.c$d.e$f", "jwt_malformed"),
]


@pytest.mark.parametrize("make,word", [pytest.param(m, w, id=i) for i, m, w in INVALID])
def test_invalid_token_401(tok, make, word):
    path = unique("bad")
    r = af.request(tok.sd.port, tok.billing, path, bearer(make(tok)))
    refused(tok, r, path, 401, word, challenge=CHALLENGE, invalid_token=True)


def test_no_token_401(tok):
    path = unique("none")
    r = af.request(tok.sd.port, tok.billing, path)
    refused(tok, r, path, 401, "auth_missing", challenge=CHALLENGE, invalid_token=False)


def test_two_tokens_400(tok):
    path = unique("two")
    r = af.request(tok.sd.port, tok.billing, path, bearer(good(tok)) + bearer(good(tok, "x")))
    refused(tok, r, path, 400, "auth_multiple")


# --------------------------------------------------------------------------
# a token bound to another certificate
# --------------------------------------------------------------------------

@pytest.mark.parametrize("signer", SIGNERS)
def test_token_of_another_certificate_403(tok, signer):
    """Minted for cert B (pygood), presented with cert A (billing): a valid
    token in the wrong hands. 403 and a warning naming both."""
    sub = "stolen-" + signer
    token = mint(getattr(tok, signer), claims_for(tok.other, sub=sub))
    # positive control: in the right hands it works
    af.check_passed(af.request(tok.sd.port, tok.other, unique("right"), bearer(token)),
                    "token", sub)
    path = unique("stolen")
    r = af.request(tok.sd.port, tok.billing, path, bearer(token))
    body = refused(tok, r, path, 403, "jwt_cnf_mismatch")
    af.check_stolen(tok.sd, body, "token", sub, tok.other.sha256, tok.billing, LISTENER)


def test_cnf_of_ca_certificate_403(tok, pki):
    """Bound to the CA's certificate (a public value): still not this client."""
    path = unique("ca-bound")
    r = af.request(tok.sd.port, tok.billing, path,
                   bearer(mint(tok.es1, claims_for(af.x5t(pki.ca), sub="ca-bound"))))
    refused(tok, r, path, 403, "jwt_cnf_mismatch")


# --------------------------------------------------------------------------
# keep-alive: the per-connection cache
# --------------------------------------------------------------------------

def test_many_requests_on_one_connection(tok):
    token = good(tok, "ka")
    with sdhttp.H1(tok.billing.ctx, tok.sd.port) as c:
        for i in range(30):
            af.check_passed(c.request("GET", "/tka-%d" % i, bearer(token)), "token", "ka")


FOLLOW_UPS = [
    ("nothing", lambda t, tk: [], 401, "auth_missing"),
    ("flipped_bit", lambda t, tk: bearer(af.flip_sig_bit(tk)), 401, "jwt_bad_signature"),
    ("same_header_and_sig_other_claims", lambda t, tk: bearer(".".join(
        [tk.split(".")[0], af.seg(claims_for(t.billing, sub="admin")), tk.split(".")[2]])),
     401, "jwt_bad_signature"),
    ("alg_none_same_claims", lambda t, tk: bearer(af.raw_jwt({"alg": "none"},
                                                             af.b64u_dec(tk.split(".")[1]))),
     401, "jwt_alg_refused"),
    ("expired", lambda t, tk: bearer(mint(t.es1, claims_for(t.billing, exp=_now(-120)))),
     401, "jwt_expired"),
    ("other_certificate", lambda t, tk: bearer(mint(t.es1, claims_for(t.other))), 403,
     "jwt_cnf_mismatch"),
    ("other_valid_token", lambda t, tk: bearer(mint(t.rs1, claims_for(t.billing, sub="bob"))),
     200, "bob"),
]


@pytest.mark.parametrize("make,status,word", [pytest.param(m, s, w, id=i)
                                              for i, m, s, w in FOLLOW_UPS])
def test_cache_is_per_credential(tok, make, status, word):
    token = good(tok, "alice")
    path = unique("cache")
    with sdhttp.H1(tok.billing.ctx, tok.sd.port) as c:
        for i in range(3):
            af.check_passed(c.request("GET", "/twarm-%d" % i, bearer(token)), "token", "alice")
        r = c.request("GET", path, make(tok, token))
        r.closed = c.wait_closed(1.0) if r.status >= 400 else None
    if status == 200:
        af.check_passed(r, "token", word)
    else:
        refused(tok, r, path, status, word)


def test_token_expiring_on_a_keep_alive_connection(steeldoor, flask_app, pki,  # noqa: F811
                                                   tmp_path):
    """With --jwt-leeway 0s, a token whose exp passes while its connection is
    open is refused on that connection's next request (the cache keeps the
    signature check, not the clock); nbf likewise becomes valid."""
    es = af.Signer("ES256", "k0")
    jwks = af.write_jwks(tmp_path / "jwks.json", [es])
    sd = steeldoor(target=flask_app.target, drain="1s", name="leeway0",
                   extra=["--http", "--jwks", jwks, "--jwt-issuer", ISS, "--jwt-audience", AUD,
                          "--jwt-leeway", "0s"])
    billing = af.pki_client(pki, pki.client_cert, pki.client_key, "spiffe://example.org/billing")
    exp = int(time.time()) + 2
    short = mint(es, claims_for(billing, sub="short", exp=exp))
    later = mint(es, claims_for(billing, sub="later", nbf=exp))
    with sdhttp.H1(billing.ctx, sd.port, timeout=8) as c:
        af.check_passed(c.request("GET", "/short-1", bearer(short)), "token", "short")
        af.check_passed(c.request("GET", "/short-2", bearer(short)), "token", "short")
        # without leeway, a not-yet-valid token is refused at once (new connection)
        path = unique("nbf0")
        r = af.request(sd.port, billing, path, bearer(later))
        af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_not_yet_valid",
                              invalid_token=True)
        deadline = exp + 1.2
        while time.time() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.time())))
        path = unique("expired-on-conn")
        r = c.request("GET", path, bearer(short))
        r.closed = c.wait_closed(1.0)
    af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_expired", invalid_token=True)
    af.check_passed(af.request(sd.port, billing, unique("nbf-now"), bearer(later)), "token",
                    "later")


def test_encryption_key_in_jwks_not_usable(steeldoor, flask_app, pki, tmp_path):  # noqa: F811
    """A JWKS exported from an identity provider holds "use": "enc" keys
    too: they are skipped, never used to verify a signature."""
    sig = af.Signer("ES256", "sig-1")
    enc = af.Signer("RS256", "enc-1")
    jwks = af.write_jwks(tmp_path / "jwks.json", [sig],
                         extra_keys=[enc.jwk(use="enc", alg="RSA-OAEP")])
    sd = steeldoor(target=flask_app.target, drain="1s", name="encjwks",
                   extra=["--http", "--jwks", jwks, "--jwt-issuer", ISS, "--jwt-audience", AUD])
    billing = af.pki_client(pki, pki.client_cert, pki.client_key, "spiffe://example.org/billing")
    af.check_passed(af.request(sd.port, billing, unique("sig"),
                               bearer(mint(sig, claims_for(billing, sub="s")))), "token", "s")
    path = unique("enc")
    r = af.request(sd.port, billing, path, bearer(mint(enc, claims_for(billing, sub="e"))))
    af.refused_and_unseen(sd, flask_app, r, path, 401, "jwt_unknown_key", invalid_token=True)


# --------------------------------------------------------------------------
# what the token says ends up in a header and a log line
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sub", [
    "svc\r\nX-Steeldoor-Key-Id: admin",
    "svc\nX-Steeldoor-Auth: api-key",
    "svc\x00admin",
    "svc\x7f",
    "\u00e4dmin",
    "a" * 256,
], ids=["crlf_header_injection", "lf_header_injection", "nul", "del", "non_ascii", "too_long"])
def test_sub_that_cannot_be_a_header_value_refused(tok, sub):
    """sub becomes X-Steeldoor-Token-Sub: it must be printable ASCII, 1 to
    255 bytes, or the token is refused (never cut, never injected)."""
    path = unique("sub")
    r = af.request(tok.sd.port, tok.billing, path, bearer(good(tok, sub=sub)))
    # jansson refuses \u0000 in any JSON string: malformed is a fair reading
    refused(tok, r, path, 401, ("jwt_bad_claims", "jwt_malformed") if "\x00" in sub
            else "jwt_bad_claims", invalid_token=True)


@pytest.mark.parametrize("sub", ['a"quoted"\\sub', "a" * 255, "x",
                                 "user@example.org;role=admin"],
                         ids=["quotes_backslash", "255_bytes", "one_byte", "punctuation"])
def test_sub_printable_passes_verbatim(tok, sub):
    r = af.request(tok.sd.port, tok.billing, unique("subok"), bearer(good(tok, sub=sub)))
    af.check_passed(r, "token", sub)


def test_stolen_token_with_quoting_sub_logged_as_json(tok):
    sub = 'evil","identity":"spiffe://example.org/admin'
    path = unique("stolen-json")
    r = af.request(tok.sd.port, tok.billing, path,
                   bearer(mint(tok.es1, claims_for(tok.other, sub=sub))))
    body = refused(tok, r, path, 403, "jwt_cnf_mismatch")
    af.check_stolen(tok.sd, body, "token", sub, tok.other.sha256, tok.billing, LISTENER)


def test_forged_headers_with_a_token(tok):
    r = af.request(tok.sd.port, tok.billing, unique("tforge"),
                   [("X-Steeldoor-Key-Id", "admin"), ("x_steeldoor_auth", "api-key"),
                    ("X-Steeldoor-Token-Sub", "root")] + bearer(good(tok, "real-sub")))
    s = af.check_passed(r, "token", "real-sub")
    assert "admin" not in json.dumps(s) and "root" not in json.dumps(s)


# --------------------------------------------------------------------------
# resumed TLS sessions: cnf is checked against the certificate the session
# was made with
# --------------------------------------------------------------------------

def test_resumed_session_binds_to_the_same_certificate(tok):
    mine = good(tok, "resumed")
    theirs = mint(tok.es1, claims_for(tok.other, sub="theirs"))
    with sdhttp.H1(tok.billing.ctx, tok.sd.port) as c:
        af.check_passed(c.request("GET", "/full-1", bearer(mine)), "token", "resumed")
        af.check_passed(c.request("GET", "/full-2", bearer(mine)), "token", "resumed")
        sess = c.session
    assert sess is not None
    time.sleep(0.05)
    with sdhttp.H1(tok.billing.ctx, tok.sd.port, session=sess) as c:
        assert c.session_reused, "the session did not resume"
        af.check_passed(c.request("GET", "/resumed-1", bearer(mine)), "token", "resumed")
    path = unique("resumed-stolen")
    with sdhttp.H1(tok.billing.ctx, tok.sd.port, session=sess) as c:
        assert c.session_reused, "the session did not resume"
        r = c.request("GET", path, bearer(theirs))
        r.closed = c.wait_closed(1.0)
    body = refused(tok, r, path, 403, "jwt_cnf_mismatch")
    af.check_stolen(tok.sd, body, "token", "theirs", tok.other.sha256, tok.billing, LISTENER)
