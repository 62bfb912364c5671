"""The second factor, as an adversarial review attacked it (each test is a
repro that once succeeded):

- smuggling: a client with its own valid credential adds a second
  Authorization whose scheme is Bearer but spelled with a TAB or NBSP
  ("Bearer\\tFORGED"). A backend splitting on any whitespace reads FORGED as
  the token; steeldoor must count it as a credential (two: 400), never hand
  it on unchecked. Also two Authorization fields of different schemes;
- whoever can replace the keys file or the JWKS can add a credential: a
  file owned by another account, or in a directory others can write to
  (not sticky), is refused at start and at reload;
- a JWKS holding an Ed25519 key of small order (the identity point, under
  which the signature (identity, 0) verifies for every message) would let
  anyone mint tokens: refused;
- `--api-key-header Authorization` (keys would then be read in no form)
  and key ids differing only in case are refused.
"""
import os
import shutil
import subprocess

import pytest

from sdlib import free_port
from http_apps import authfix as af
from http_apps.authfix import AUD, ISS, bearer, claims_for, mint, unique
from http_apps.fixtures import flask_app  # noqa: F401

SPIFFE_BILLING = "uri:spiffe://example.org/billing"
NOBODY = 65534


def billing_of(pki):
    return af.pki_client(pki, pki.client_cert, pki.client_key, "spiffe://example.org/billing")


def base_args(pki, extra):
    return ["serve", "--http", "--listen", "127.0.0.1:%d" % free_port(), "--target",
            "127.0.0.1:9", "--cert", pki.server_cert, "--key", pki.server_key, "--cacert",
            pki.ca, "--allow-all", "--workers", "1"] + extra


@pytest.fixture(scope="module")
def lab(sd_bin, pki, flask_app, tmp_path_factory):  # noqa: F811
    """One listener with keys and tokens, one with a key header of its own."""
    d = tmp_path_factory.mktemp("review")
    es = af.Signer("ES256", "r-1")
    key = af.new_key()
    kf = af.write_keys(d / "keys.yaml", [{"id": "alice", "key": key, "bind": [SPIFFE_BILLING]}])
    jwks = af.write_jwks(d / "jwks.json", [es])
    both = af.start_sd(sd_bin, pki, d, flask_app.target, "review-both",
                       ["--api-keys", kf, "--jwks", jwks, "--jwt-issuer", ISS,
                        "--jwt-audience", AUD])
    hdr = af.start_sd(sd_bin, pki, d, flask_app.target, "review-hdr",
                      ["--api-keys", kf, "--api-key-header", "X-Api-Key"])
    billing = billing_of(pki)
    ns = dict(both=both, hdr=hdr, app=flask_app, key=key, es=es, billing=billing,
              token=mint(es, claims_for(billing, sub="alice")))
    try:
        yield type("Lab", (), ns)
    finally:
        af.stop_sd(both)
        af.stop_sd(hdr)
        af.sweep_refused(flask_app)


FORGED = af.raw_jwt({"alg": "none"}, {"sub": "admin"})


@pytest.mark.parametrize("sep", ["\t", "\xa0", ",", "  \t"], ids=["tab", "nbsp", "comma",
                                                                 "spaces_tab"])
@pytest.mark.parametrize("cred", ["token", "key"])
def test_second_bearer_spelled_oddly_is_refused(lab, sep, cred):
    good = lab.token if cred == "token" else lab.key
    path = unique("smuggle")
    headers = bearer(good) + [("Authorization", "Bearer" + sep + FORGED)]
    r = af.request(lab.both.port, lab.billing, path, headers)
    af.refused_and_unseen(lab.both, lab.app, r, path, 400, "auth_multiple")


def test_odd_bearer_alone_is_a_bad_credential(lab):
    path = unique("oddbearer")
    r = af.request(lab.both.port, lab.billing, path, [("Authorization", "Bearer\t" + lab.token)])
    assert r.status == 401, r


def test_two_authorization_fields_of_any_schemes_are_refused(lab):
    path = unique("twoauthz")
    headers = [("Authorization", "Basic YWRtaW46YWRtaW4=")] + bearer(lab.key)
    r = af.request(lab.both.port, lab.billing, path, headers)
    af.refused_and_unseen(lab.both, lab.app, r, path, 400, "auth_multiple")


@pytest.mark.parametrize("value", ["Bearer\tsdk_" + "A" * 43, "Bearer\xa0" + FORGED,
                                   "Bearer sdk_" + "B" * 43])
def test_key_header_listener_never_forwards_an_unchecked_bearer_key(lab, value):
    path = unique("hdrsmuggle")
    headers = [("X-Api-Key", lab.key), ("Authorization", value)]
    r = af.request(lab.hdr.port, lab.billing, path, headers)
    af.refused_and_unseen(lab.hdr, lab.app, r, path, 400, "auth_multiple")


def test_key_header_listener_leaves_the_backends_authorization(lab):
    path = unique("hdrown")
    r = af.request(lab.hdr.port, lab.billing, path,
                   [("X-Api-Key", lab.key), ("Authorization", "Bearer backend-session")])
    s = af.seen(r)
    assert af.header_values(s, "Authorization") == ["Bearer backend-session"]
    assert af.header_values(s, "X-Steeldoor-Key-Id") == ["alice"]


# ------------------------------------------------------------ file trust

def _as_nobody(path):
    os.chown(path, NOBODY, NOBODY)


@pytest.mark.parametrize("which", ["api-keys", "jwks"])
def test_file_owned_by_another_account_is_refused(sd_bin, pki, tmp_path, which):
    es = af.Signer("ES256", "o-1")
    f = (af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                                 "bind": [SPIFFE_BILLING]}])
         if which == "api-keys" else af.write_jwks(tmp_path / "jwks.json", [es]))
    os.chmod(f, 0o644)
    _as_nobody(f)
    extra = ["--" + which, f] + ([] if which == "api-keys" else
                                 ["--jwt-issuer", ISS, "--jwt-audience", AUD])
    rc, err = af.start_fails(sd_bin, base_args(pki, extra))
    assert rc not in (0, None), "started with %s owned by uid %d" % (f, NOBODY)
    assert str(f) in err and "owned by uid %d" % NOBODY in err, err


@pytest.mark.parametrize("mode,ok", [(0o777, False), (0o775, False), (0o1777, True),
                                     (0o755, True)])
def test_directory_others_can_write_is_refused(sd_bin, pki, tmp_path, mode, ok):
    d = tmp_path / "keysdir"
    d.mkdir()
    f = af.write_keys(d / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                         "bind": [SPIFFE_BILLING]}])
    os.chmod(d, mode)
    rc, err = af.start_fails(sd_bin, base_args(pki, ["--api-keys", f]), timeout=2.0)
    if ok:
        assert rc is None, "refused to start (rc %r): %s" % (rc, err)
    else:
        assert rc not in (0, None), "started with %s in a %o directory" % (f, mode)
        assert "can be changed by others" in err and str(d) in err, err


def test_reload_to_a_file_another_account_replaced_fails(sd_bin, pki, flask_app,  # noqa: F811
                                                         tmp_path):
    key = af.new_key()
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": key,
                                                 "bind": [SPIFFE_BILLING]}])
    sd = af.start_sd(sd_bin, pki, tmp_path, flask_app.target, "review-reload",
                     ["--api-keys", kf])
    try:
        billing = billing_of(pki)
        assert af.request(sd.port, billing, unique("before"), bearer(key)).status == 200
        before = af.reload_failed_count(sd)
        evil = af.new_key()
        tmp = tmp_path / "evil.yaml"
        af.write_keys(tmp, [{"id": "evil", "key": evil, "bind": [SPIFFE_BILLING]}])
        os.chmod(tmp, 0o644)
        _as_nobody(tmp)
        os.replace(tmp, kf)
        af.wait_reload_failed(sd, before)
        assert af.request(sd.port, billing, unique("evil"), bearer(evil)).status == 401
        assert af.request(sd.port, billing, unique("still"), bearer(key)).status == 200
    finally:
        af.stop_sd(sd)


# ------------------------------------------------------------ weak JWKS keys

ED25519_WEAK = {
    "identity": "01" + "00" * 31,
    "zero_signed": "00" * 31 + "80",
    "p_minus_1": "ec" + "ff" * 30 + "7f",
    "p_noncanonical": "ed" + "ff" * 30 + "7f",
    "order8": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
}


@pytest.mark.parametrize("name", sorted(ED25519_WEAK))
def test_jwks_ed25519_small_order_key_refused(sd_bin, pki, tmp_path, name):
    jwk = {"kty": "OKP", "crv": "Ed25519", "kid": "weak",
           "x": af.b64u(bytes.fromhex(ED25519_WEAK[name]))}
    f = tmp_path / "jwks.json"
    af.atomic_write(f, ('{"keys": [%s]}' % __import__("json").dumps(jwk)).encode(), 0o644)
    rc, err = af.start_fails(sd_bin, base_args(pki, ["--jwks", f, "--jwt-issuer", ISS,
                                                     "--jwt-audience", AUD]))
    assert rc not in (0, None), "a JWKS with a weak Ed25519 key was accepted"
    assert "small order" in err, err


# ------------------------------------------------------------ config words

def test_api_key_header_authorization_refused(sd_bin, pki, tmp_path):
    f = af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                                "bind": [SPIFFE_BILLING]}])
    rc, err = af.start_fails(sd_bin, base_args(pki, ["--api-keys", f, "--api-key-header",
                                                     "authorization"]))
    assert rc not in (0, None) and "Authorization" in err, (rc, err)


def test_key_ids_differing_in_case_refused(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    p = subprocess.run([str(sd_bin), "apikey", "new", "--file", str(f), "--id", "ci",
                        "--bind", SPIFFE_BILLING], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    before = f.read_bytes()
    p = subprocess.run([str(sd_bin), "apikey", "new", "--file", str(f), "--id", "CI",
                        "--bind", SPIFFE_BILLING], capture_output=True, timeout=20)
    assert p.returncode != 0 and p.stdout == b"", "a second key 'CI' was made: %r" % p
    assert f.read_bytes() == before


# ------------------------------------------------------------ second review

def test_ancestor_directory_of_another_account_is_refused(sd_bin, pki, tmp_path):
    """keys.yaml (root, 0600) in conf/ (root, 0755) in shared/ owned by
    another account: it can rename conf/ away and put a link in its place."""
    shared = tmp_path / "shared"
    conf = shared / "conf"
    conf.mkdir(parents=True)
    f = af.write_keys(conf / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                            "bind": [SPIFFE_BILLING]}])
    os.chown(shared, NOBODY, NOBODY)
    rc, err = af.start_fails(sd_bin, base_args(pki, ["--api-keys", f]))
    assert rc not in (0, None), "started with an ancestor owned by uid %d" % NOBODY
    assert str(shared) in err and "changed by others" in err, err


def test_symlink_into_a_directory_others_control_is_refused(sd_bin, pki, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    real = af.write_keys(evil / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                              "bind": [SPIFFE_BILLING]}])
    os.chown(evil, NOBODY, NOBODY)
    safe = tmp_path / "safe"
    safe.mkdir()
    link = safe / "keys.yaml"
    link.symlink_to(real)
    rc, err = af.start_fails(sd_bin, base_args(pki, ["--api-keys", link]))
    assert rc not in (0, None), "started with a link into a directory of uid %d" % NOBODY
    assert str(evil) in err, err


def test_keys_file_cut_before_its_last_digest_fails_the_reload(sd_bin, pki, flask_app,  # noqa: F811
                                                                tmp_path):
    """A file caught half rewritten in place (an editor, cat >): the last
    entry, cut anywhere before its digest, is an error, never a key with
    fewer limits (its revocation lost)."""
    key = af.new_key()
    f = tmp_path / "keys.yaml"
    for args in (["--id", "ok", "--bind", SPIFFE_BILLING],
                 ["--id", "gone", "--bind", SPIFFE_BILLING, "--path", "/only"]):
        p = subprocess.run([str(sd_bin), "apikey", "new", "--file", str(f)] + args,
                           capture_output=True, timeout=20)
        assert p.returncode == 0, p.stderr
        if args[1] == "gone":
            gone = p.stdout.decode().strip()
        else:
            key = p.stdout.decode().strip()
    p = subprocess.run([str(sd_bin), "apikey", "revoke", "--file", str(f), "--id", "gone"],
                       capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    full = f.read_text()
    assert full.rstrip().splitlines()[-1].lstrip().startswith("digest:"), full
    sd = af.start_sd(sd_bin, pki, tmp_path, flask_app.target, "review-cut", ["--api-keys", f])
    try:
        billing = billing_of(pki)
        assert af.request(sd.port, billing, unique("gone"), bearer(gone)).status == 401
        before = af.reload_failed_count(sd)
        cut = full[:full.rindex("  digest:")]
        with open(f, "w") as out:      # in place, like an editor
            out.write(cut)
        af.wait_reload_failed(sd, before)
        assert af.request(sd.port, billing, unique("gone2"), bearer(gone)).status == 401
        assert af.request(sd.port, billing, unique("ok"), bearer(key)).status == 200
    finally:
        af.stop_sd(sd)


@pytest.mark.parametrize("target", ["/pub/%c0%ae%c0%ae/admin", "/pub/%e0%80%ae%e0%80%ae/admin",
                                    "/pub/%f0%80%80%ae%f0%80%80%ae/admin",
                                    "/pub/%ef%bc%8e%ef%bc%8e/admin"])
def test_overlong_dots_never_pass_a_path_prefix(sd_bin, pki, flask_app, tmp_path,  # noqa: F811
                                               target):
    key = af.new_key()
    kf = af.write_keys(tmp_path / "keys.yaml", [{"id": "pub", "key": key,
                                                 "bind": [SPIFFE_BILLING], "paths": ["/pub"]}])
    sd = af.start_sd(sd_bin, pki, tmp_path, flask_app.target, "review-utf8", ["--api-keys", kf])
    try:
        r = af.request(sd.port, billing_of(pki), target, bearer(key))
        af.refused_and_unseen(sd, flask_app, r, target, 403, "apikey_path_denied")
    finally:
        af.stop_sd(sd)


def test_apikey_new_with_a_closed_stdout_says_so(sd_bin, tmp_path):
    f = tmp_path / "keys.yaml"
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([str(sd_bin), "apikey", "new", "--file", str(f), "--id", "orphan",
                            "--bind", SPIFFE_BILLING], stdout=w, stderr=subprocess.PIPE,
                           timeout=20)
    finally:
        os.close(w)
    assert p.returncode == 1, "rc %r (killed by a signal?): %r" % (p.returncode, p.stderr)
    assert b"cannot print the key" in p.stderr and b"revoke" in p.stderr, p.stderr


def test_stolen_credential_bound_to_is_a_list(lab, pki):
    other = af.pki_client(pki, pki.pygood[0], pki.pygood[1], "spiffe://example.org/pygood")
    path = unique("stolenlist")
    r = af.request(lab.both.port, other, path, bearer(lab.key))
    assert r.status == 403, r
    e = af.stolen_line(lab.both, r.json()["request_id"])
    assert e["bound_to"] == [SPIFFE_BILLING], e


@pytest.mark.parametrize("name", ["Http2-Settings", "http2_settings"])
def test_api_key_header_hop_by_hop_refused(sd_bin, pki, tmp_path, name):
    f = af.write_keys(tmp_path / "keys.yaml", [{"id": "ci", "key": af.new_key(),
                                                "bind": [SPIFFE_BILLING]}])
    rc, err = af.start_fails(sd_bin, base_args(pki, ["--api-keys", f, "--api-key-header",
                                                     name]))
    assert rc not in (0, None) and "cannot carry a key" in err, (rc, err)
