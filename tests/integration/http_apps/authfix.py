"""Helpers for the second-factor tests (tests/integration/test_auth_*.py):
API keys and their keys file, JWKS files and tokens (minted with PyJWT, or
built by hand for the attacks PyJWT refuses to make), client certificates
for the bind patterns, a module-scoped steeldoor, requests that carry a
credential, and the checks of steeldoor's 400/401/403 answers and log lines.

No pytest here. Every blocking operation has a deadline. Loopback only.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import jwt as pyjwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

import sdlib
from http_apps import sdhttp

ISS = "https://issuer.steeldoor.test"
AUD = "steeldoor-orders"
KEY_RE = re.compile(r"sdk_[A-Za-z0-9_-]{43}")
PHRASE = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
# every log word of the second factor (the spec); a refusal's reason must be one
WORDS = {"auth_missing", "auth_multiple", "apikey_unknown", "apikey_expired", "apikey_revoked",
         "apikey_not_bound", "apikey_path_denied", "jwt_malformed", "jwt_alg_refused",
         "jwt_unknown_key", "jwt_bad_signature", "jwt_bad_claims", "jwt_expired",
         "jwt_not_yet_valid", "jwt_wrong_issuer", "jwt_wrong_audience", "jwt_no_cnf",
         "jwt_cnf_mismatch"}
_counter = [0]


def unique(prefix):
    """A request path no other test uses (the app's log is searched by path)."""
    _counter[0] += 1
    return "/%s-%d-%d" % (prefix, int(time.time() * 1000) % 1000000, _counter[0])


# --------------------------------------------------------------------------
# base64url, API keys and the keys file
# --------------------------------------------------------------------------

def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_dec(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key():
    """A key as `steeldoor apikey new` makes them: sdk_ + 43 base64url chars."""
    k = "sdk_" + b64u(os.urandom(32))
    assert KEY_RE.fullmatch(k)
    return k


def key_digest(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _q(s):
    return json.dumps(s)   # a JSON string is a YAML double-quoted scalar


def keys_yaml(entries):
    """The YAML of a keys file. entries: dicts with id, key (or digest),
    bind (list), and optional expires, paths, revoked; raw: extra lines."""
    out = []
    for e in entries:
        out.append("- id: %s" % _q(e["id"]))
        out.append("  digest: %s" % _q(e.get("digest") or key_digest(e["key"])))
        out.append("  bind: [%s]" % ", ".join(_q(b) for b in e["bind"]))
        for f in ("expires", "revoked"):
            if e.get(f):
                out.append("  %s: %s" % (f, _q(e[f])))
        if e.get("paths"):
            out.append("  paths: [%s]" % ", ".join(_q(p) for p in e["paths"]))
        if e.get("raw"):
            out.append(e["raw"])
    return ("\n".join(out) + "\n") if out else "[]\n"


_atomic = [0]


def atomic_write(path, data, mode=0o600):
    """Replace path by rename (never a half-written file), mode 0600."""
    path = Path(path)
    _atomic[0] += 1
    tmp = path.with_name(".%s.new%d" % (path.name, _atomic[0]))
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def write_keys(path, entries):
    return atomic_write(path, keys_yaml(entries))


def cli_new_key(sd_bin, keys_file, key_id, binds, expires=None, paths=()):
    """`steeldoor apikey new`; returns the key it printed (once, on stdout)."""
    cmd = [sd_bin, "apikey", "new", "--file", keys_file, "--id", key_id]
    for b in binds:
        cmd += ["--bind", b]
    if expires:
        cmd += ["--expires", expires]
    for p in paths:
        cmd += ["--path", p]
    r = sdlib.run(cmd, timeout=20)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, "apikey new rc=%d\nstdout:%s\nstderr:%s" % (
        r.returncode, out, r.stderr.decode(errors="replace"))
    keys = KEY_RE.findall(out)
    assert len(keys) == 1, "apikey new should print one key, stdout: %r" % out
    return keys[0]


def cli_revoke(sd_bin, keys_file, key_id):
    r = sdlib.run([sd_bin, "apikey", "revoke", "--file", keys_file, "--id", key_id], timeout=20)
    assert r.returncode == 0, "apikey revoke rc=%d\nstdout:%s\nstderr:%s" % (
        r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    return r


# --------------------------------------------------------------------------
# client certificates
# --------------------------------------------------------------------------

def cert_der(path):
    return sdhttp.der_of(sdhttp.pem_certs(path)[0])


def cert_sha256_hex(path):
    return hashlib.sha256(cert_der(path)).hexdigest()


def x5t(path):
    """cnf."x5t#S256" for the certificate in path (RFC 8705 3.1)."""
    return b64u(hashlib.sha256(cert_der(path)).digest())


def spki_hex(path):
    c = sdhttp.pem_certs(path)[0]
    return hashlib.sha256(c.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def client(pki, outdir, fname, cn=None, ou=None, uris=(), dns=()):
    """A client certificate from the session's dev CA; .pair, .crt, .ctx,
    .identity (what steeldoor names it with allow-all: SPIFFE ID, else CN)."""
    from conftest import issue_cert, root_issuer
    attrs = []
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn or fname))
    c = issue_cert(outdir, fname, root_issuer(pki), subject=x509.Name(attrs), uris=uris,
                   dns=dns)
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    return SimpleNamespace(pair=c.pair, crt=c.crt, key=c.keyfile, name=fname,
                           ctx=sdlib.client_ctx(pki.ca, c.crt, c.keyfile),
                           identity=spiffe[0] if spiffe else (cn or fname),
                           sha256=cert_sha256_hex(c.crt), x5t=x5t(c.crt))


def pki_client(pki, crt, key, identity):
    return SimpleNamespace(pair=(crt, key), crt=crt, key=key, name=Path(crt).stem,
                           ctx=sdlib.client_ctx(pki.ca, crt, key), identity=identity,
                           sha256=cert_sha256_hex(crt), x5t=x5t(crt))


# --------------------------------------------------------------------------
# JWKS and tokens
# --------------------------------------------------------------------------

class Signer:
    """A signing key: alg ES256 (P-256), RS256 (RSA) or EdDSA (Ed25519)."""

    def __init__(self, alg, kid, bits=2048):
        self.alg, self.kid = alg, kid
        if alg == "ES256":
            self.priv = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            self.priv = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        elif alg == "EdDSA":
            self.priv = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        self.pub = self.priv.public_key()
        self.pem = self.priv.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        self.pub_pem = self.pub.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self, private=False, **extra):
        """The public JWK (RFC 7517/7518/8037); private=True adds "d" (and
        the CRT members of RSA): what a careless export puts in a JWKS."""
        if self.alg == "ES256":
            n = self.pub.public_numbers()
            k = {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")),
                 "y": b64u(n.y.to_bytes(32, "big"))}
            if private:
                k["d"] = b64u(self.priv.private_numbers().private_value.to_bytes(32, "big"))
        elif self.alg == "RS256":
            n = self.pub.public_numbers()
            k = {"kty": "RSA", "n": b64u(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                 "e": b64u(n.e.to_bytes(3, "big"))}
            if private:
                p = self.priv.private_numbers()

                def enc(v):
                    return b64u(v.to_bytes((v.bit_length() + 7) // 8, "big"))
                k.update(d=enc(p.d), p=enc(p.p), q=enc(p.q), dp=enc(p.dmp1), dq=enc(p.dmq1),
                         qi=enc(p.iqmp))
        else:
            raw = self.pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            k = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
            if private:
                k["d"] = b64u(self.priv.private_bytes(serialization.Encoding.Raw,
                                                      serialization.PrivateFormat.Raw,
                                                      serialization.NoEncryption()))
        k.update(kid=self.kid, use="sig", alg=self.alg)
        k.update(extra)
        return k

    def sign(self, signing_input):
        """The JWS signature of signing_input (bytes), as RFC 7518 encodes it."""
        if self.alg == "ES256":
            der = self.priv.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "RS256":
            return self.priv.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return self.priv.sign(signing_input)

    def sign_der(self, signing_input):
        """ES256 signature in ASN.1 DER (what JWS forbids)."""
        return self.priv.sign(signing_input, ec.ECDSA(hashes.SHA256()))


def jwks_json(signers=(), extra_keys=()):
    return json.dumps({"keys": [s.jwk() for s in signers] + list(extra_keys)}, indent=1)


def write_jwks(path, signers=(), extra_keys=()):
    return atomic_write(path, jwks_json(signers, extra_keys), mode=0o644)


DROP = object()   # claims_for(..., claim=DROP): leave that claim out


def claims_for(who, sub="svc-orders", ttl=300, **over):
    """Good claims for client `who` (namespace with .x5t, or an x5t string, or
    None for no cnf). over: claims to set; a value of DROP removes it."""
    now = int(time.time())
    c = {"sub": sub, "iss": ISS, "aud": AUD, "iat": now, "exp": now + ttl}
    if sub is DROP:
        del c["sub"]
    if who is not None:
        c["cnf"] = {"x5t#S256": who if isinstance(who, str) else who.x5t}
    for k, v in over.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def mint(signer, claims, kid=True, headers=None):
    """A token minted by PyJWT. kid: True (the signer's), False (none) or a string."""
    h = dict(headers or {})
    if kid is True:
        h["kid"] = signer.kid
    elif kid:
        h["kid"] = kid
    return pyjwt.encode(claims, signer.pem, algorithm=signer.alg, headers=h or None)


def seg(obj):
    """A base64url JWT segment of a dict (compact JSON) or of raw bytes/str."""
    if isinstance(obj, (dict, list)):
        obj = json.dumps(obj, separators=(",", ":"))
    return b64u(obj)


def raw_jwt(header, claims, sig=b""):
    """header.claims.signature with whatever the attack needs: dicts are
    JSON-encoded, bytes/str are taken verbatim (then base64url), sig is bytes."""
    return "%s.%s.%s" % (seg(header), seg(claims), b64u(sig))


def signed_raw(signer, header, claims, der=False):
    """A token whose header and claims are exactly as given, signed by signer."""
    si = ("%s.%s" % (seg(header), seg(claims))).encode()
    sig = signer.sign_der(si) if der else signer.sign(si)
    return si.decode() + "." + b64u(sig)


def hs256_with(secret, header, claims):
    """The classic key-confusion token: HMAC-SHA256 keyed with `secret`
    (e.g. the verifier's public key PEM). PyJWT refuses to make it."""
    si = ("%s.%s" % (seg(header), seg(claims))).encode()
    return si.decode() + "." + b64u(hmac.new(secret, si, hashlib.sha256).digest())


def flip_sig_bit(token, byte=10, bit=0):
    """The same token with one bit of its decoded signature flipped (so
    the change survives base64url's trailing bits)."""
    h, c, s = token.split(".")
    raw = bytearray(b64u_dec(s))
    raw[byte % len(raw)] ^= 1 << bit
    return "%s.%s.%s" % (h, c, b64u(bytes(raw)))


# --------------------------------------------------------------------------
# steeldoor
# --------------------------------------------------------------------------

def serve_args(pki, port, target, name, extra=(), workers=1, drain="2s"):
    return ["serve", "--listen", "127.0.0.1:%d" % port, "--target", target,
            "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
            "--allow-all", "--name", name, "--http", "--workers", str(workers),
            "--drain-timeout", drain] + list(extra)


def start_sd(sd_bin, pki, workdir, target, name, extra=(), workers=1):
    """A steeldoor in HTTP mode for a whole module; stop it with stop_sd."""
    port = sdlib.free_port()
    sd = sdlib.Steeldoor(sd_bin, serve_args(pki, port, target, name, extra, workers),
                         workdir, name=name)
    sd.port = port
    sd.name = name
    try:
        sd.start(wait_ports=[("127.0.0.1", port)])
    except Exception:
        sd.kill()
        sd.close_files()
        raise
    return sd


def stop_sd(sd):
    """SIGTERM, exit 0, no sanitizer report (raises AssertionError otherwise)."""
    problems = []
    try:
        if sd.proc.poll() is None:
            sd.stop(timeout=10, expect_rc=None)
            if sd.returncode != 0:
                problems.append("steeldoor %s exited %r on SIGTERM" % (sd.name, sd.returncode))
        else:
            problems.append("steeldoor %s died during the module (rc=%r)\n%s" % (
                sd.name, sd.proc.returncode, sd.stderr_text()[-3000:]))
    except AssertionError as e:
        problems.append(str(e))
    finally:
        sd.kill()
        sd.close_files()
    f = sd.sanitizer_findings()
    if f:
        problems.append("sanitizer report in %s: %s\n%s" % (sd.stderr_path, f,
                                                            sd.stderr_text()[-6000:]))
    if problems:
        raise AssertionError("\n".join(problems))


def start_fails(sd_bin, args, timeout=6.0):
    """Runs `steeldoor ARGS` that must refuse to start. Returns (rc, stderr);
    rc None when it was still running after timeout (then it is stopped)."""
    p = subprocess.Popen([str(sd_bin)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, err.decode(errors="replace") + out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
        return None, err.decode(errors="replace")


def generation(sd):
    gens = [e.get("generation") for e in sd.logs() if e.get("event") == "reloaded"
            and e.get("pid") == sd.pid]
    return max(gens) if gens else 1


def wait_reload(sd, after_gen, workers=1, timeout=6.0):
    """Waits for the reload that follows generation after_gen, in the master
    and every worker; fails at once on a reload_failed line."""
    from conftest import wait_generation
    return wait_generation(sd, after_gen + 1, workers, timeout)


def wait_reload_failed(sd, count_before, timeout=6.0):
    """Waits for a reload_failed line beyond the count_before first ones."""
    deadline = time.monotonic() + timeout
    while True:
        f = [e for e in sd.logs() if e.get("event") == "reload_failed"]
        if len(f) > count_before:
            return f[count_before]
        if time.monotonic() > deadline:
            raise AssertionError("no reload_failed line within %.1fs; log tail:\n%s"
                                 % (timeout, "\n".join(sd.raw_lines()[-20:])))
        time.sleep(0.05)


def reload_failed_count(sd):
    return len([e for e in sd.logs() if e.get("event") == "reload_failed"])


# --------------------------------------------------------------------------
# requests and what came of them
# --------------------------------------------------------------------------

def bearer(cred):
    return [("Authorization", "Bearer " + cred)]


def request(port, who, path, headers=(), method="GET", body=None, timeout=5.0):
    """One request on a new connection; returns the response. who: a
    namespace with .ctx (a client), or an ssl context."""
    ctx = getattr(who, "ctx", who)
    with sdhttp.H1(ctx, port, timeout=timeout) as c:
        c.send(sdhttp.build_request(method, path, headers, body))
        r = c.response(method)
        r.closed = c.wait_closed(1.0) if r.status >= 400 else None
        r.peer = c.peer
        return r


def seen(resp):
    """What the Flask app saw (the request reached it)."""
    assert resp.status == 200, "request not answered by the app: %r" % resp
    return json.loads(resp.body)


def env_of(resp):
    return seen(resp)["environ"]


def header_values(seen_obj, name):
    return [v for k, v in seen_obj["headers"] if k.lower() == name.lower()]


def check_passed(resp, kind, who_value, credential_header="HTTP_AUTHORIZATION",
                 forwarded=None):
    """The backend got the request with X-Steeldoor-Auth and the key id or
    token sub, each once, and (by default) without the credential."""
    s = seen(resp)
    env = s["environ"]
    assert env.get("HTTP_X_STEELDOOR_AUTH") == kind, \
        "X-Steeldoor-Auth %r, expected %r; environ %s" % (env.get("HTTP_X_STEELDOOR_AUTH"),
                                                           kind, env)
    assert header_values(s, "X-Steeldoor-Auth") == [kind], s["headers"]
    name = "X-Steeldoor-Key-Id" if kind == "api-key" else "X-Steeldoor-Token-Sub"
    other = "X-Steeldoor-Token-Sub" if kind == "api-key" else "X-Steeldoor-Key-Id"
    assert header_values(s, name) == [who_value], \
        "%s at the backend: %r, expected [%r]" % (name, header_values(s, name), who_value)
    assert env.get(sdhttp.norm("HTTP_" + name)) == who_value, env
    assert header_values(s, other) == [] and sdhttp.norm("HTTP_" + other) not in env, \
        "backend got %s for a %s: %s" % (other, kind, s["headers"])
    if forwarded is None:
        assert credential_header not in env, \
            "the credential reached the backend (%s=%r) without --forward-credentials" % (
                credential_header, env.get(credential_header))
    else:
        assert env.get(credential_header) == forwarded, \
            "forwarded credential %r, expected %r" % (env.get(credential_header), forwarded)
    rid = env.get("HTTP_X_STEELDOOR_REQUEST_ID")
    assert sdhttp.is_hex_id(rid), rid
    return s


def assert_refused(resp, status, word, challenge=None, invalid_token=None):
    """steeldoor's own 400/401/403: status and phrase, the JSON body with
    the log word, Connection: close and the connection really closed;
    401s carry WWW-Authenticate (challenge: a prefix it must start with;
    invalid_token: error="invalid_token" must / must not be in it)."""
    assert resp.status == status, "expected %d %s, got %r" % (status, word, resp)
    assert resp.reason == PHRASE[status], "status line %d %r" % (status, resp.reason)
    ct = (resp.get("content-type") or "").split(";")[0].strip().lower()
    assert ct == "application/json", "Content-Type %r: %r" % (ct, resp)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("body is not JSON: %r" % resp.body[:300])
    assert body.get("reason") == word, "reason %r, expected %r (%s)" % (body.get("reason"),
                                                                        word, body)
    assert body.get("status") == status and body.get("error") == PHRASE[status], body
    assert sdhttp.is_hex_id(body.get("request_id")), body
    assert set(body) == {"status", "error", "reason", "request_id"}, "keys of %s" % body
    assert "close" in resp.tokens("connection"), "no Connection: close: %r" % resp
    if getattr(resp, "closed", None) is not None:
        assert resp.closed, "connection left open after a refused request"
    www = resp.all("WWW-Authenticate")
    if status == 401:
        assert len(www) == 1, "401 needs one WWW-Authenticate, got %r" % www
        if challenge is not None:
            assert www[0].startswith(challenge), "WWW-Authenticate %r, expected %r..." % (
                www[0], challenge)
        if invalid_token is True:
            assert 'error="invalid_token"' in www[0], "WWW-Authenticate %r" % www[0]
        elif invalid_token is False:
            assert "error=" not in www[0], "WWW-Authenticate %r for a missing credential" % www[0]
    return body


def wait_line(sd, pred, timeout=5.0, what="log line"):
    """sd.wait_log with a finer poll (the line is usually written by the time
    the response arrives)."""
    deadline = time.monotonic() + timeout
    while True:
        for e in sd.logs():
            if pred(e):
                return e
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %.1fs; log tail:\n%s"
                                 % (what, timeout, "\n".join(sd.raw_lines()[-25:])))
        time.sleep(0.01)


def http_line(sd, rid, timeout=5.0):
    return wait_line(sd, lambda e: e.get("event") == "http" and e.get("request_id") == rid,
                     timeout, what="http line of request %s" % rid)


def check_logged(sd, body):
    """The request's http log line has the response's status and reason."""
    e = http_line(sd, body["request_id"])
    assert e.get("status") == body["status"] and e.get("reason") == body["reason"], \
        "http line %s for response %s" % (e, body)
    return e


def stolen_line(sd, rid, timeout=5.0):
    return wait_line(sd, lambda e: e.get("event") == "stolen_credential"
                     and e.get("request_id") == rid, timeout,
                     what="stolen_credential line for request %s" % rid)


def check_stolen(sd, body, kind, credential, bound_to_has, holder, listener):
    """The warn line of a valid credential used with another certificate."""
    e = stolen_line(sd, body["request_id"])
    assert e.get("level") == "warn", e
    assert e.get("listener") == listener, e
    assert isinstance(e.get("peer"), str) and e["peer"].startswith("127.0.0.1:"), e
    assert e.get("kind") == kind, e
    assert e.get("credential") == credential, e
    assert bound_to_has.lower() in str(e.get("bound_to", "")).lower(), \
        "bound_to %r should name %r: %s" % (e.get("bound_to"), bound_to_has, e)
    assert e.get("identity") == holder.identity, "identity %r, the client is %r: %s" % (
        e.get("identity"), holder.identity, e)
    assert str(e.get("cert_sha256", "")).lower().replace(":", "") == holder.sha256, \
        "cert_sha256 %r, the client's is %s" % (e.get("cert_sha256"), holder.sha256)
    return e


_REFUSED = []   # (app, path) of every refusal, swept again at module teardown


def sweep_refused(app, settle=0.3):
    """Raises if any path refused earlier in the module reached the app
    after all (a forwarded request slower than never_reached's settle)."""
    time.sleep(settle)
    mine = [p for a, p in _REFUSED if a is app]
    _REFUSED[:] = [(a, p) for a, p in _REFUSED if a is not app]
    raw = {(r.get("raw_uri") or "").split("?")[0] for r in app.records()}
    raw |= {r["path"] for r in app.records()}
    late = [p for p in mine if p in raw]
    if late:
        raise AssertionError("refused requests reached the backend after all: %s" % late[:10])


def never_reached(app, path, settle=0.02, before=None):
    """The Flask app handled no request for path: neither its decoded path
    nor the target as sent (RAW_URI, also with a query) is path. before: the
    app's request count taken before the request, for paths other tests
    use too ("/"). (A request steeldoor forwarded would be logged by the
    app within milliseconds on loopback.)"""
    time.sleep(settle)
    recs = app.records()
    if before is not None:
        assert len(recs) == before, "a refused request reached the backend: %s" % [
            (g["method"], g["raw_uri"]) for g in recs[before:before + 3]]
        return
    _REFUSED.append((app, path))
    got = [r for r in recs if r["path"] == path or (r.get("raw_uri") or "") == path
           or (r.get("raw_uri") or "").startswith(path + "?")]
    assert not got, "a refused request reached the backend: %s" % [
        (g["method"], g["raw_uri"]) for g in got[:3]]


def refused_and_unseen(sd, app, resp, path, status, word, before=None, **kw):
    """A refusal in full: the answer, its log line, and nothing at the app."""
    body = assert_refused(resp, status, word, **kw)
    check_logged(sd, body)
    never_reached(app, path, before=before)
    return body
