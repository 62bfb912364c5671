/* Unit tests for auth/jwt.c: JWKS parsing and certificate-bound token
 * verification, with real keys and real signatures (no mock).
 *
 * Keys are generated in-process (EC P-256, RSA 2048, Ed25519, Ed448, and
 * a second P-256 and an RSA 1024 for the refusals), their public parts
 * written out as JWK text, and tokens signed in C the way an identity
 * provider would (ES256 converted from DER to R || S). Every token is
 * verified from a copy that ends just before an unreadable page, so a
 * read past its length crashes the test instead of passing by luck.
 * The attacks covered: "none", HMAC keyed with the public key (PEM and
 * JWK text), a key of another type than alg, tampered bits, alternative
 * spellings (padding, '+', '/', DER signatures, 63/65-byte ES256),
 * duplicate members, and every claim check at its boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "sd/b64url.h"
#include "sd/err.h"
#include "sd/jwt.h"

#define NOW ((int64_t)1700000000)
#define ISS "https://idp.example/realm"
#define AUD "steeldoor"
#define OMIT "-" /* a claim value meaning: leave the member out */

/* --------------------------------------------------------------- state */

static EVP_PKEY *k_ec, *k_ec2, *k_rsa, *k_ed, *k_ed448, *k_rsa1024;
static struct sd_jwks *ks;      /* ec1, rsa1, ed1, ed448 */
static uint8_t cert[32];        /* the client certificate's SHA-256 */
static char cert_b64[64];
static struct sd_jwt_claims got;
static struct sd_jwt_rules rules = { ISS, AUD, SD_JWT_DEFAULT_LEEWAY_S };

#define GUARD_DATA (256u * 1024u)
static char *guard_base; /* GUARD_DATA writable bytes, then a PROT_NONE page */

/* Test memory: every string a test builds lives until the test ends
 * (release(), its teardown), so helpers can return them freely. */
#define SLOT_MAX (64u * 1024u)
static void **allocs;
static size_t nallocs, capallocs;

static void *talloc(size_t n)
{
    void *p = malloc(n);

    assert_non_null(p);
    if (nallocs == capallocs) {
        size_t cap = capallocs ? 2 * capallocs : 256;
        void **a = realloc(allocs, cap * sizeof(*a));
        assert_non_null(a);
        allocs = a;
        capallocs = cap;
    }
    allocs[nallocs++] = p;
    return p;
}

static int release(void **state)
{
    (void)state;
    while (nallocs > 0)
        free(allocs[--nallocs]);
    free(allocs);
    allocs = NULL;
    capallocs = 0;
    return 0;
}

static char *slot(void)
{
    return talloc(SLOT_MAX);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap, ap2;
    char *s;
    int n;

    va_start(ap, f);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    s = talloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, f, ap2);
    va_end(ap2);
    return s;
}

static char *b64(const void *p, size_t n)
{
    char *s = talloc(SD_B64URL_LEN(n) + 1);

    sd_b64url_encode(p, n, s);
    return s;
}

static char *b64s(const char *s)
{
    return b64(s, strlen(s));
}

/* Decodes a base64url string (with a spare byte after it); returns the
 * length. */
static size_t unb64(const char *s, size_t n, uint8_t **out)
{
    uint8_t *o = talloc(n / 4 * 3 + 4);
    long r = sd_b64url_decode(s, n, o, n / 4 * 3 + 3);

    assert_true(r >= 0);
    *out = o;
    return (size_t)r;
}

/* ----------------------------------------------------------------- JWK */

static char *bn_b64(EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    uint8_t buf[1024];
    int n;

    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    n = BN_bn2bin(bn, buf);
    BN_free(bn);
    assert_true(n > 0);
    return b64(buf, (size_t)n);
}

/* The public JWK of k as JSON text; kid NULL: none; extra: more members
 * (",\"use\":\"sig\"") or "". */
static char *jwk(EVP_PKEY *k, const char *kid, const char *extra)
{
    char *kidm = kid != NULL ? fmt(",\"kid\":\"%s\"", kid) : "";
    uint8_t pt[200];
    size_t n = sizeof(pt);

    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC:
        assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                                         sizeof(pt), &n), 1);
        assert_int_equal(n, 65);
        return fmt("{\"kty\":\"EC\",\"crv\":\"P-256\"%s,\"x\":\"%s\",\"y\":\"%s\"%s}", kidm,
                   b64(pt + 1, 32), b64(pt + 33, 32), extra);
    case EVP_PKEY_RSA:
        return fmt("{\"kty\":\"RSA\"%s,\"n\":\"%s\",\"e\":\"%s\"%s}", kidm,
                   bn_b64(k, OSSL_PKEY_PARAM_RSA_N), bn_b64(k, OSSL_PKEY_PARAM_RSA_E), extra);
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, pt, &n), 1);
        return fmt("{\"kty\":\"OKP\",\"crv\":\"%s\"%s,\"x\":\"%s\"%s}",
                   EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? "Ed25519" : "Ed448", kidm,
                   b64(pt, n), extra);
    }
    fail_msg("unexpected key type");
    return NULL;
}

/* ------------------------------------------------------------- parsing */

static unsigned nwarn;
static char last_warn[1024];

static void on_warn(void *arg, const char *text)
{
    assert_ptr_equal(arg, &nwarn);
    assert_null(strchr(text, '\n'));
    nwarn++;
    snprintf(last_warn, sizeof(last_warn), "%s", text);
}

/* Parses text as "jwks.json": 0 with *out, or -1 with err (checked set). */
static int parse(const char *text, struct sd_jwks **out, struct sd_err *err)
{
    int rc;

    memset(err, 0, sizeof(*err));
    nwarn = 0;
    last_warn[0] = '\0';
    *out = (struct sd_jwks *)&nwarn; /* must be overwritten */
    rc = sd_jwks_parse("jwks.json", text, strlen(text), out, on_warn, &nwarn, err);
    assert_int_equal(ERR_peek_error(), 0); /* nothing left queued */
    if (rc != 0) {
        assert_int_equal(rc, -1);
        assert_null(*out);
        assert_true(strncmp(err->msg, "jwks.json: ", 11) == 0);
        assert_null(strchr(err->msg, '\n'));
    } else {
        assert_non_null(*out);
        assert_true(sd_jwks_count(*out) > 0);
    }
    return rc;
}

static struct sd_jwks *parse_ok(const char *text)
{
    struct sd_jwks *k;
    struct sd_err err;

    if (parse(text, &k, &err) != 0)
        fail_msg("JWKS refused: %s", err.msg);
    return k;
}

/* Expects text refused with a message containing want. */
static void parse_bad(const char *text, const char *want)
{
    struct sd_jwks *k;
    struct sd_err err;

    if (parse(text, &k, &err) == 0) {
        sd_jwks_free(k);
        fail_msg("JWKS accepted: %s", text);
    }
    if (strstr(err.msg, want) == NULL)
        fail_msg("message '%s' lacks '%s'", err.msg, want);
}

static char *set1(const char *key)
{
    return fmt("{\"keys\":[%s]}", key);
}

/* ------------------------------------------------------------- signing */

/* The JWS signature of in with k (ES256, RS256 or EdDSA by key type), as
 * base64url. ES256 is turned from DER into R || S. */
static char *sign(EVP_PKEY *k, const char *in, size_t len)
{
    uint8_t sig[1024], rs[64];
    size_t n = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int id = EVP_PKEY_get_base_id(k);

    assert_non_null(m);
    assert_int_equal(EVP_DigestSignInit(m, &pc, id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448
                                                     ? NULL : EVP_sha256(), NULL, k), 1);
    if (id == EVP_PKEY_RSA)
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) > 0);
    assert_int_equal(EVP_DigestSign(m, sig, &n, (const uint8_t *)in, len), 1);
    EVP_MD_CTX_free(m);
    if (id == EVP_PKEY_EC) {
        const uint8_t *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        const BIGNUM *r, *s;

        assert_non_null(es);
        ECDSA_SIG_get0(es, &r, &s);
        assert_int_equal(BN_bn2binpad(r, rs, 32), 32);
        assert_int_equal(BN_bn2binpad(s, rs + 32, 32), 32);
        ECDSA_SIG_free(es);
        return b64(rs, 64);
    }
    return b64(sig, n);
}

/* The ES256 signature of in with k, as OpenSSL's DER (wrong for JWS). */
static char *sign_der(EVP_PKEY *k, const char *in)
{
    uint8_t sig[128];
    size_t n = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();

    assert_int_equal(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(m, sig, &n, (const uint8_t *)in, strlen(in)), 1);
    EVP_MD_CTX_free(m);
    return b64(sig, n);
}

/* A token of header and payload JSON texts signed with k (NULL: empty
 * signature). */
static char *tok(const char *header, const char *payload, EVP_PKEY *k)
{
    char *in = fmt("%s.%s", b64s(header), b64s(payload));

    return fmt("%s.%s", in, k != NULL ? sign(k, in, strlen(in)) : "");
}

/* A token signed with HMAC-SHA-256 (or -384, -512) under secret. */
static char *tok_hmac(const char *header, const char *payload, const char *md,
                      const void *secret, size_t slen)
{
    char *in = fmt("%s.%s", b64s(header), b64s(payload));
    uint8_t mac[64];
    size_t n = 0;

    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, secret, slen, (const uint8_t *)in,
                              strlen(in), mac, sizeof(mac), &n));
    return fmt("%s.%s", in, b64(mac, n));
}

static const char *hdr(const char *alg, const char *kid)
{
    if (kid == NULL)
        return fmt("{\"alg\":\"%s\",\"typ\":\"at+jwt\"}", alg);
    return fmt("{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", alg, kid);
}

/* The claims as JSON text: each argument is the raw JSON of the member,
 * NULL for the default, OMIT to leave it out. */
struct cl {
    const char *sub, *exp, *nbf, *iat, *iss, *aud, *cnf, *extra;
};

static const char *claims(struct cl c)
{
    char *s;
    size_t n = 0, cap = 64;
    const char *names[] = { "sub", "exp", "nbf", "iat", "iss", "aud", "cnf" };
    const char *vals[] = {
        c.sub ? c.sub : "\"alice\"",
        c.exp ? c.exp : fmt("%lld", (long long)(NOW + 3600)),
        c.nbf ? c.nbf : OMIT,
        c.iat ? c.iat : fmt("%lld", (long long)(NOW - 10)),
        c.iss ? c.iss : "\"" ISS "\"",
        c.aud ? c.aud : "\"" AUD "\"",
        c.cnf ? c.cnf : fmt("{\"x5t#S256\":\"%s\"}", cert_b64),
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        cap += strlen(names[i]) + strlen(vals[i]) + 4;
    cap += c.extra != NULL ? strlen(c.extra) : 0;
    s = talloc(cap);
    s[n++] = '{';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(vals[i], OMIT) == 0)
            continue;
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s\":%s", n > 1 ? "," : "", names[i],
                              vals[i]);
    }
    if (c.extra != NULL)
        n += (size_t)snprintf(s + n, cap - n, "%s", c.extra);
    snprintf(s + n, cap - n, "}");
    return s;
}

#define CL(...) claims((struct cl){ __VA_ARGS__ })

/* ----------------------------------------------------------- verifying */

/* Verifies t[0, len) (copied just before an unreadable page) with keys k
 * at time now. */
static enum sd_jwt_result verify_at(const struct sd_jwks *k, const char *t, size_t len,
                                    int64_t now)
{
    char *g = guard_base + GUARD_DATA - len;
    enum sd_jwt_result r;

    assert_true(len <= GUARD_DATA);
    memcpy(g, t, len);
    memset(&got, 0xa5, sizeof(got)); /* verify must reset it */
    assert_int_equal(ERR_peek_error(), 0);
    r = sd_jwt_verify(k, &rules, g, len, now, cert, &got);
    assert_int_equal(ERR_peek_error(), 0); /* a failure leaves no error queued */
    assert_true(memchr(got.sub, '\0', sizeof(got.sub)) != NULL);
    assert_true(memchr(got.kid, '\0', sizeof(got.kid)) != NULL);
    return r;
}

static enum sd_jwt_result ver(const char *t)
{
    return verify_at(ks, t, strlen(t), NOW);
}

#define assert_ver(t, want) assert_int_equal(ver(t), (want))

/* The three segments of token t (copies). */
static void split(const char *t, char **h, char **p, char **s)
{
    const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');

    *h = fmt("%.*s", (int)(d1 - t), t);
    *p = fmt("%.*s", (int)(d2 - d1 - 1), d1 + 1);
    *s = fmt("%s", d2 + 1);
}

/* --------------------------------------------------------------- setup */

static int setup(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, GUARD_DATA + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    struct sd_err err;

    (void)state;
    if (m == MAP_FAILED || mprotect(m + GUARD_DATA, page, PROT_NONE) != 0)
        return -1;
    guard_base = m;
    k_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    k_ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    k_rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    k_ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    k_ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    if (!k_ec || !k_ec2 || !k_rsa || !k_rsa1024 || !k_ed || !k_ed448)
        return -1;
    for (size_t i = 0; i < sizeof(cert); i++)
        cert[i] = (uint8_t)(0x30 + 7 * i);
    sd_b64url_encode(cert, sizeof(cert), cert_b64);
    {
        const char *text = fmt("{\"keys\":[%s,%s,%s,%s]}", jwk(k_ec, "ec1", ""),
                               jwk(k_rsa, "rsa1", ",\"use\":\"sig\",\"alg\":\"RS256\""),
                               jwk(k_ed, "ed1", ""), jwk(k_ed448, "ed448", ""));
        if (sd_jwks_parse("jwks.json", text, strlen(text), &ks, NULL, NULL, &err) != 0) {
            fprintf(stderr, "setup: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sd_jwks_free(ks);
    EVP_PKEY_free(k_ec);
    EVP_PKEY_free(k_ec2);
    EVP_PKEY_free(k_rsa);
    EVP_PKEY_free(k_rsa1024);
    EVP_PKEY_free(k_ed);
    EVP_PKEY_free(k_ed448);
    munmap(guard_base, GUARD_DATA + (size_t)sysconf(_SC_PAGESIZE));
    return 0;
}

static void reset_rules(void)
{
    rules.issuer = ISS;
    rules.audience = AUD;
    rules.leeway_s = SD_JWT_DEFAULT_LEEWAY_S;
}

/* --------------------------------------------------------- valid tokens */

static void check_valid(const char *alg, const char *kid, EVP_PKEY *k)
{
    assert_ver(tok(hdr(alg, kid), CL(0), k), SD_JWT_OK);
    assert_string_equal(got.sub, "alice");
    assert_string_equal(got.kid, kid);
    assert_int_equal(got.exp, NOW + 3600);
    assert_int_equal(got.has_x5t, 1);
    assert_memory_equal(got.x5t, cert, 32);
}

static void test_valid_each_alg(void **state)
{
    (void)state;
    assert_int_equal(sd_jwks_count(ks), 4);
    check_valid("ES256", "ec1", k_ec);
    check_valid("RS256", "rsa1", k_rsa);
    check_valid("EdDSA", "ed1", k_ed);
    check_valid("EdDSA", "ed448", k_ed448);
    /* typ is optional, any string */
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", CL(0), k_ec), SD_JWT_OK);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"typ\":\"JWT\"}", CL(0), k_ec),
               SD_JWT_OK);
    /* Header members we never act on are ignored, an embedded key too. */
    assert_ver(tok(fmt("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"jwk\":%s}", jwk(k_ec2, NULL, "")),
                   CL(0), k_ec),
               SD_JWT_OK);
    /* A verify with out == NULL is allowed (nothing reported). */
    {
        const char *t = tok(hdr("ES256", "ec1"), CL(0), k_ec);
        assert_int_equal(sd_jwt_verify(ks, &rules, t, strlen(t), NOW, cert, NULL), SD_JWT_OK);
    }
}

/* ------------------------------------------------------------ alg attacks */

static void test_alg_none(void **state)
{
    const char *valid = tok(hdr("ES256", "ec1"), CL(0), k_ec);
    char *h, *p, *s;

    (void)state;
    split(valid, &h, &p, &s);
    assert_ver(tok(hdr("none", "ec1"), CL(0), NULL), SD_JWT_ALG);
    assert_ver(tok(hdr("none", NULL), CL(0), NULL), SD_JWT_ALG);
    assert_ver(tok("{\"alg\":\"none\"}", CL(0), NULL), SD_JWT_ALG);
    /* with a signature (a real one, of another header) */
    assert_ver(fmt("%s.%s.%s", b64s(hdr("none", "ec1")), p, s), SD_JWT_ALG);
    assert_ver(fmt("%s.%s.%s", b64s("{\"alg\":\"none\"}"), p, "AAAA"), SD_JWT_ALG);
    assert_ver(tok(hdr("None", "ec1"), CL(0), NULL), SD_JWT_ALG);
    assert_ver(tok(hdr("NONE", NULL), CL(0), NULL), SD_JWT_ALG);
    assert_string_equal(got.sub, "");
}

static void test_hmac_with_public_key(void **state)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long pemlen;
    const char *ecjwk = jwk(k_ec, "ec1", "");

    (void)state;
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k_ec), 1);
    pemlen = BIO_get_mem_data(bio, &pem);
    assert_true(pemlen > 0);
    /* The classic confusion: the verifier's public key as the HMAC secret. */
    assert_ver(tok_hmac(hdr("HS256", "ec1"), CL(0), "SHA256", pem, (size_t)pemlen),
               SD_JWT_ALG);
    assert_ver(tok_hmac(hdr("HS256", NULL), CL(0), "SHA256", pem, (size_t)pemlen), SD_JWT_ALG);
    assert_ver(tok_hmac(hdr("HS384", "ec1"), CL(0), "SHA384", pem, (size_t)pemlen),
               SD_JWT_ALG);
    assert_ver(tok_hmac(hdr("HS512", "ec1"), CL(0), "SHA512", pem, (size_t)pemlen),
               SD_JWT_ALG);
    /* ... and the JWK text itself */
    assert_ver(tok_hmac(hdr("HS256", "ec1"), CL(0), "SHA256", ecjwk, strlen(ecjwk)),
               SD_JWT_ALG);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k_rsa), 1);
    pemlen = BIO_get_mem_data(bio, &pem);
    assert_ver(tok_hmac(hdr("HS256", "rsa1"), CL(0), "SHA256", pem, (size_t)pemlen),
               SD_JWT_ALG);
    BIO_free(bio);
    /* the kid was read (for the log), nothing else */
    assert_string_equal(got.kid, "rsa1");
    assert_string_equal(got.sub, "");
    assert_int_equal(got.exp, 0);
}

static void test_other_algs(void **state)
{
    static const char *const algs[] = {
        "PS256", "ES384", "ES512", "RS384", "RS512", "ES256K", "Ed25519", "eddsa", "es256",
        "ES256 ", " ES256", "", "ES256\\u0001",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (ver(tok(hdr(algs[i], "ec1"), CL(0), k_ec)) != SD_JWT_ALG)
            fail_msg("alg '%s' not refused as such", algs[i]);
    }
    /* jansson refuses a NUL in a string: the header is no JSON it reads */
    assert_ver(tok(hdr("ES256\\u0000", "ec1"), CL(0), k_ec), SD_JWT_MALFORMED);
    /* crit: an extension we would not honour */
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"crit\":[\"exp\"],\"exp\":1}", CL(0),
                   k_ec),
               SD_JWT_ALG);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"crit\":[]}", CL(0), k_ec), SD_JWT_ALG);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"b64\":false,\"crit\":[\"b64\"]}",
                   CL(0), k_ec),
               SD_JWT_ALG);
}

static void test_alg_key_mismatch(void **state)
{
    (void)state;
    /* RS256 naming the EC key, signed with RSA: never tried with the EC key */
    assert_ver(tok(hdr("RS256", "ec1"), CL(0), k_rsa), SD_JWT_ALG);
    assert_ver(tok(hdr("ES256", "rsa1"), CL(0), k_ec), SD_JWT_ALG);
    assert_ver(tok(hdr("EdDSA", "ec1"), CL(0), k_ed), SD_JWT_ALG);
    assert_ver(tok(hdr("ES256", "ed1"), CL(0), k_ec), SD_JWT_ALG);
    assert_ver(tok(hdr("RS256", "ed448"), CL(0), k_rsa), SD_JWT_ALG);
    /* the right type, the wrong key: a signature failure */
    assert_ver(tok(hdr("ES256", "ec1"), CL(0), k_ec2), SD_JWT_SIGNATURE);
    assert_ver(tok(hdr("EdDSA", "ed1"), CL(0), k_ed448), SD_JWT_SIGNATURE);
    assert_ver(tok(hdr("EdDSA", "ed448"), CL(0), k_ed), SD_JWT_SIGNATURE);
}

/* ------------------------------------------------------------------ kid */

static void test_kid(void **state)
{
    struct sd_jwks *two, *nokid;
    const char *t;

    (void)state;
    assert_ver(tok(hdr("ES256", "nope"), CL(0), k_ec), SD_JWT_KID);
    assert_string_equal(got.kid, "nope");
    assert_ver(tok(hdr("ES256", "EC1"), CL(0), k_ec), SD_JWT_KID);
    /* no kid: the only key usable with alg */
    assert_ver(tok(hdr("ES256", NULL), CL(0), k_ec), SD_JWT_OK);
    assert_string_equal(got.kid, "");
    assert_ver(tok(hdr("RS256", NULL), CL(0), k_rsa), SD_JWT_OK);
    /* two EdDSA keys (Ed25519, Ed448): no kid is ambiguous */
    assert_ver(tok(hdr("EdDSA", NULL), CL(0), k_ed), SD_JWT_KID);

    two = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "a", ""), jwk(k_ec2, "b", "")));
    t = tok(hdr("ES256", NULL), CL(0), k_ec);
    assert_int_equal(verify_at(two, t, strlen(t), NOW), SD_JWT_KID);
    t = tok(hdr("ES256", "b"), CL(0), k_ec2);
    assert_int_equal(verify_at(two, t, strlen(t), NOW), SD_JWT_OK);
    sd_jwks_free(two);

    /* keys without kid: found without kid, never by one */
    nokid = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, NULL, ""), jwk(k_rsa, NULL, "")));
    t = tok(hdr("ES256", NULL), CL(0), k_ec);
    assert_int_equal(verify_at(nokid, t, strlen(t), NOW), SD_JWT_OK);
    t = tok(hdr("ES256", "ec1"), CL(0), k_ec);
    assert_int_equal(verify_at(nokid, t, strlen(t), NOW), SD_JWT_KID);
    t = tok(hdr("EdDSA", NULL), CL(0), k_ed);
    assert_int_equal(verify_at(nokid, t, strlen(t), NOW), SD_JWT_KID);
    sd_jwks_free(nokid);

    /* a kid of the wrong shape is a malformed header */
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":7}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":null}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"\"}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\\n\"}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"\\u00e9\"}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_string_equal(got.kid, "");
    {
        char k128[SD_JWT_KID_MAX + 2];
        memset(k128, 'k', sizeof(k128));
        k128[SD_JWT_KID_MAX] = '\0';
        assert_ver(tok(hdr("ES256", k128), CL(0), k_ec), SD_JWT_KID);
        assert_string_equal(got.kid, k128);
        k128[SD_JWT_KID_MAX] = 'k';
        k128[SD_JWT_KID_MAX + 1] = '\0';
        assert_ver(tok(hdr("ES256", k128), CL(0), k_ec), SD_JWT_MALFORMED);
    }
}

/* ------------------------------------------------------------ tampering */

/* t with one bit of its decoded segment seg (0..2) flipped at byte i. */
static char *flip(const char *t, int seg, size_t i, uint8_t bit)
{
    char *part[3];
    uint8_t *d;
    size_t n;

    split(t, &part[0], &part[1], &part[2]);
    n = unb64(part[seg], strlen(part[seg]), &d);
    assert_true(i < n);
    d[i] ^= bit;
    part[seg] = b64(d, n);
    return fmt("%s.%s.%s", part[0], part[1], part[2]);
}

static void test_tampered(void **state)
{
    EVP_PKEY *keys[] = { k_ec, k_rsa, k_ed, k_ed448 };
    const char *hs[] = { hdr("ES256", "ec1"), hdr("RS256", "rsa1"), hdr("EdDSA", "ed1"),
                         hdr("EdDSA", "ed448") };

    (void)state;
    for (size_t k = 0; k < 4; k++) {
        const char *c0 = CL(0), *t = tok(hs[k], c0, keys[k]);
        char *h, *p, *s;
        uint8_t *d;
        size_t n;

        assert_ver(t, SD_JWT_OK);
        split(t, &h, &p, &s);
        n = unb64(s, strlen(s), &d);
        assert_ver(flip(t, 2, 0, 0x01), SD_JWT_SIGNATURE);
        assert_ver(flip(t, 2, n - 1, 0x80), SD_JWT_SIGNATURE);
        assert_ver(flip(t, 2, n / 2, 0x10), SD_JWT_SIGNATURE);
        /* payload: "alice" -> "alicd", still valid JSON, signature broken */
        assert_ver(flip(t, 1, (size_t)(strstr(c0, "alice") - c0) + 4, 0x01), SD_JWT_SIGNATURE);
        assert_string_equal(got.sub, ""); /* nothing read from an unsigned payload */
        assert_int_equal(got.exp, 0);
        /* header: another spelling of the same header */
        assert_ver(fmt("%s.%s.%s", b64s(fmt("%s ", hs[k])), p, s), SD_JWT_SIGNATURE);
        /* truncated: one byte, three bytes (4 characters), all but one */
        assert_ver(fmt("%s.%s.%s", h, p, b64(d, n - 1)), SD_JWT_SIGNATURE);
        assert_ver(fmt("%s.%s.%.*s", h, p, (int)(strlen(s) / 4 * 4 - 4), s),
                   SD_JWT_SIGNATURE);
        assert_ver(fmt("%s.%s.%s", h, p, b64(d, 1)), SD_JWT_SIGNATURE);
        /* extended by a zero byte */
        d[n] = 0;
        assert_ver(fmt("%s.%s.%s", h, p, b64(d, n + 1)), SD_JWT_SIGNATURE);
        /* empty signature */
        assert_ver(fmt("%s.%s.", h, p), SD_JWT_SIGNATURE);
        /* a signature of another token */
        assert_ver(fmt("%s.%s.%s", h, b64s(CL(.sub = "\"mallory\"")), s), SD_JWT_SIGNATURE);
    }
}

static void test_es256_forms(void **state)
{
    const char *t = tok(hdr("ES256", "ec1"), CL(0), k_ec);
    char *h, *p, *s, *in;
    uint8_t *d, sig65[65], zero[64];

    (void)state;
    split(t, &h, &p, &s);
    assert_int_equal(unb64(s, strlen(s), &d), 64);
    in = fmt("%s.%s", h, p);
    /* OpenSSL's DER form of a valid signature: not JWS */
    assert_ver(fmt("%s.%s", in, sign_der(k_ec, in)), SD_JWT_SIGNATURE);
    /* 63 bytes (leading byte of R dropped), 65 (zero prefix / suffix) */
    assert_ver(fmt("%s.%s", in, b64(d + 1, 63)), SD_JWT_SIGNATURE);
    assert_ver(fmt("%s.%s", in, b64(d, 63)), SD_JWT_SIGNATURE);
    sig65[0] = 0;
    memcpy(sig65 + 1, d, 64);
    assert_ver(fmt("%s.%s", in, b64(sig65, 65)), SD_JWT_SIGNATURE);
    memcpy(sig65, d, 64);
    sig65[64] = 0;
    assert_ver(fmt("%s.%s", in, b64(sig65, 65)), SD_JWT_SIGNATURE);
    /* R = S = 0 */
    memset(zero, 0, sizeof(zero));
    assert_ver(fmt("%s.%s", in, b64(zero, 64)), SD_JWT_SIGNATURE);
    /* and the original still passes */
    assert_ver(fmt("%s.%s", in, b64(d, 64)), SD_JWT_OK);
}

static void test_base64_forms(void **state)
{
    const char *t = tok(hdr("ES256", "ec1"), CL(0), k_ec);
    char *h, *p, *s;

    (void)state;
    split(t, &h, &p, &s);
    assert_ver(fmt("%s.%s.%s", h, p, s), SD_JWT_OK);
    /* padding, on any segment */
    assert_ver(fmt("%s=.%s.%s", h, p, s), SD_JWT_MALFORMED);
    assert_ver(fmt("%s.%s=.%s", h, p, s), SD_JWT_MALFORMED);
    assert_ver(fmt("%s.%s.%s==", h, p, s), SD_JWT_MALFORMED);
    /* the standard alphabet's '+' and '/' */
    {
        char *s2 = fmt("%s", s);
        s2[0] = '+';
        assert_ver(fmt("%s.%s.%s", h, p, s2), SD_JWT_MALFORMED);
        s2[0] = '/';
        assert_ver(fmt("%s.%s.%s", h, p, s2), SD_JWT_MALFORMED);
        char *p2 = fmt("%s", p);
        p2[3] = '+';
        assert_ver(fmt("%s.%s.%s", h, p2, s), SD_JWT_MALFORMED);
    }
    /* non-zero unused bits: another spelling of the same signature
     * (64 bytes = 86 characters, the last carrying 4 unused bits) */
    {
        char *s2 = fmt("%s", s);
        size_t n = strlen(s2);
        const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        int v = (int)(strchr(alpha, s2[n - 1]) - alpha);
        assert_int_equal(n, 86);
        s2[n - 1] = alpha[v | 1];
        assert_ver(fmt("%s.%s.%s", h, p, s2), SD_JWT_MALFORMED);
    }
    /* spaces, line breaks */
    assert_ver(fmt("%s.%s.%s ", h, p, s), SD_JWT_MALFORMED);
    assert_ver(fmt(" %s.%s.%s", h, p, s), SD_JWT_MALFORMED);
    assert_ver(fmt("%s.%s\n.%s", h, p, s), SD_JWT_MALFORMED);
    /* segments: four, two, one, empty ones */
    assert_ver(fmt("%s.%s.%s.%s", h, p, s, s), SD_JWT_MALFORMED);
    assert_ver(fmt("%s.%s.%s.", h, p, s), SD_JWT_MALFORMED);
    assert_ver(fmt("%s.%s", h, p), SD_JWT_MALFORMED);
    assert_ver(h, SD_JWT_MALFORMED);
    assert_ver(fmt(".%s.%s", p, s), SD_JWT_MALFORMED);
    assert_ver(fmt("%s..%s", h, s), SD_JWT_MALFORMED);
    assert_ver("..", SD_JWT_MALFORMED);
    assert_ver(".", SD_JWT_MALFORMED);
    assert_int_equal(verify_at(ks, "", 0, NOW), SD_JWT_MALFORMED);
    /* a token whose length excludes its last byte (no NUL terminator needed) */
    {
        char *t2 = fmt("%sX", t);
        assert_int_equal(verify_at(ks, t2, strlen(t2) - 1, NOW), SD_JWT_OK);
        assert_int_equal(verify_at(ks, t2, strlen(t2), NOW), SD_JWT_MALFORMED);
    }
    /* a NUL inside */
    {
        char *t2 = fmt("%s", t);
        size_t n = strlen(t2);
        t2[n - 3] = '\0';
        assert_int_equal(verify_at(ks, t2, n, NOW), SD_JWT_MALFORMED);
    }
}

/* --------------------------------------------------------- JSON shapes */

static void test_json_shapes(void **state)
{
    const char *h = hdr("ES256", "ec1");
    long long exp = (long long)(NOW + 3600);

    (void)state;
    /* duplicate members: two readings of one token */
    assert_ver(tok(h, fmt("{\"sub\":\"alice\",\"exp\":%lld,\"exp\":%lld,\"iss\":\"" ISS
                          "\",\"aud\":\"" AUD "\",\"cnf\":{\"x5t#S256\":\"%s\"}}",
                          (long long)(NOW - 3600), exp, cert_b64),
                   k_ec),
               SD_JWT_MALFORMED);
    assert_ver(tok(h, fmt("{\"sub\":\"alice\",\"exp\":%lld,\"iss\":\"" ISS "\",\"aud\":\"" AUD
                          "\",\"cnf\":{\"x5t#S256\":\"%s\",\"x5t#S256\":\"%s\"}}",
                          exp, cert_b64, cert_b64),
                   k_ec),
               SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"alg\":\"none\",\"kid\":\"ec1\"}", CL(0), k_ec),
               SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"none\",\"alg\":\"ES256\",\"kid\":\"ec1\"}", CL(0), k_ec),
               SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"kid\":\"ec2\"}", CL(0), k_ec),
               SD_JWT_MALFORMED);
    /* header: not an object, no alg, alg not a string, trailing bytes */
    assert_ver(tok("[\"ES256\"]", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("\"ES256\"", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"kid\":\"ec1\"}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":[\"ES256\"],\"kid\":\"ec1\"}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\"}x", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\"}{}", CL(0), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"typ\":1}", CL(0), k_ec),
               SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"x\":\"a\\u0000b\"}", CL(0), k_ec),
               SD_JWT_MALFORMED);
    assert_ver(tok("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"x\":\"\xff\"}", CL(0), k_ec),
               SD_JWT_MALFORMED);
    /* signed payloads that are no claims object */
    assert_ver(tok(h, "[]", k_ec), SD_JWT_MALFORMED);
    assert_ver(tok(h, "\"alice\"", k_ec), SD_JWT_MALFORMED);
    assert_ver(tok(h, "{\"sub\":\"alice\"", k_ec), SD_JWT_MALFORMED);
    assert_ver(tok(h, fmt("%s ,", CL(0)), k_ec), SD_JWT_MALFORMED);
    /* whitespace around is still one object */
    assert_ver(tok(h, fmt(" \n%s\t", CL(0)), k_ec), SD_JWT_OK);
}

/* -------------------------------------------------------------- claims */

static void test_exp(void **state)
{
    const char *h = hdr("ES256", "ec1");

    (void)state;
    /* leeway 30 s: valid while now < exp + 30 */
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)(NOW - 31))), k_ec), SD_JWT_EXPIRED);
    assert_string_equal(got.sub, "alice"); /* filled: the signature verified */
    assert_int_equal(got.exp, NOW - 31);
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)(NOW - 30))), k_ec), SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)(NOW - 29))), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)NOW)), k_ec), SD_JWT_OK);
    /* a real: rounded down */
    assert_ver(tok(h, CL(.exp = fmt("%lld.75", (long long)(NOW + 100))), k_ec), SD_JWT_OK);
    assert_int_equal(got.exp, NOW + 100);
    assert_ver(tok(h, CL(.exp = fmt("%lld.9", (long long)(NOW - 30))), k_ec), SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.exp = "1.6e9"), k_ec), SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.exp = "1.8e9"), k_ec), SD_JWT_OK);
    assert_int_equal(got.exp, 1800000000);
    /* no leeway */
    rules.leeway_s = 0;
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)NOW)), k_ec), SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)(NOW + 1))), k_ec), SD_JWT_OK);
    /* a leeway beyond SD_JWT_MAX_LEEWAY_S counts as the maximum */
    rules.leeway_s = 100000;
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)(NOW - SD_JWT_MAX_LEEWAY_S))), k_ec),
               SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.exp = fmt("%lld", (long long)(NOW - SD_JWT_MAX_LEEWAY_S + 1))), k_ec),
               SD_JWT_OK);
    reset_rules();
    /* missing or not a NumericDate */
    assert_ver(tok(h, CL(.exp = OMIT), k_ec), SD_JWT_CLAIMS);
    assert_string_equal(got.sub, "alice");
    assert_ver(tok(h, CL(.exp = fmt("\"%lld\"", (long long)(NOW + 60))), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "null"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "true"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "[1800000000]"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "-1"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "-0.5"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "9007199254740993"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "1e300"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = "9007199254740992"), k_ec), SD_JWT_OK);
    assert_int_equal(got.exp, (int64_t)1 << 53);
    /* an integer jansson cannot hold is no JSON it reads */
    assert_ver(tok(h, CL(.exp = "99999999999999999999"), k_ec), SD_JWT_MALFORMED);
    /* far clocks do not overflow */
    assert_int_equal(verify_at(ks, tok(h, CL(0), k_ec), strlen(tok(h, CL(0), k_ec)), INT64_MAX),
                     SD_JWT_EXPIRED);
    assert_int_equal(verify_at(ks, tok(h, CL(.nbf = "100"), k_ec),
                               strlen(tok(h, CL(.nbf = "100"), k_ec)), INT64_MIN),
                     SD_JWT_NOT_YET_VALID);
}

static void test_nbf_iat(void **state)
{
    const char *h = hdr("ES256", "ec1");

    (void)state;
    assert_ver(tok(h, CL(.nbf = fmt("%lld", (long long)(NOW + 31))), k_ec),
               SD_JWT_NOT_YET_VALID);
    assert_int_equal(got.exp, NOW + 3600);
    assert_ver(tok(h, CL(.nbf = fmt("%lld", (long long)(NOW + 30))), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.nbf = fmt("%lld.1", (long long)(NOW + 30))), k_ec),
               SD_JWT_NOT_YET_VALID);
    assert_ver(tok(h, CL(.nbf = fmt("%lld", (long long)(NOW - 1000))), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.nbf = "\"0\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.nbf = "-5"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.nbf = "null"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.iat = "\"yesterday\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.iat = "null"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.iat = "1.5"), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.iat = OMIT), k_ec), SD_JWT_OK);
    /* iat in the future is not checked */
    assert_ver(tok(h, CL(.iat = fmt("%lld", (long long)(NOW + 86400))), k_ec), SD_JWT_OK);
}

static void test_iss(void **state)
{
    const char *h = hdr("ES256", "ec1");

    (void)state;
    assert_ver(tok(h, CL(.iss = "\"https://evil.example/realm\""), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.iss = "\"" ISS "/\""), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.iss = "\"HTTPS://idp.example/realm\""), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.iss = "\"https://idp.example/rea\""), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.iss = "\"" ISS "\\u0000\""), k_ec), SD_JWT_MALFORMED);
    assert_ver(tok(h, CL(.iss = "[\"" ISS "\"]"), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.iss = "1"), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.iss = OMIT), k_ec), SD_JWT_ISSUER);
    rules.issuer = "https://evil.example/realm";
    assert_ver(tok(h, CL(.iss = "\"https://evil.example/realm\""), k_ec), SD_JWT_OK);
    reset_rules();
}

static void test_aud(void **state)
{
    const char *h = hdr("ES256", "ec1");

    (void)state;
    assert_ver(tok(h, CL(.aud = "\"" AUD "\""), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.aud = "[\"" AUD "\"]"), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.aud = "[\"api\",\"" AUD "\",\"other\"]"), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.aud = "[\"api\",\"other\"]"), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = "[]"), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = "[\"" AUD "\",7]"), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = "[[\"" AUD "\"]]"), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = "\"" AUD "x\""), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = "\"Steeldoor\""), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = "{\"" AUD "\":1}"), k_ec), SD_JWT_AUDIENCE);
    assert_ver(tok(h, CL(.aud = OMIT), k_ec), SD_JWT_AUDIENCE);
    /* the order: issuer before audience, audience before cnf */
    assert_ver(tok(h, CL(.aud = OMIT, .iss = OMIT), k_ec), SD_JWT_ISSUER);
    assert_ver(tok(h, CL(.aud = OMIT, .cnf = OMIT), k_ec), SD_JWT_AUDIENCE);
}

static void test_cnf(void **state)
{
    const char *h = hdr("ES256", "ec1");
    uint8_t other[33];

    (void)state;
    memset(other, 0x5a, sizeof(other));
    assert_ver(tok(h, CL(.cnf = OMIT), k_ec), SD_JWT_NO_CNF);
    assert_int_equal(got.has_x5t, 0);
    assert_ver(tok(h, CL(.cnf = "null"), k_ec), SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = fmt("\"%s\"", cert_b64)), k_ec), SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = "{}"), k_ec), SD_JWT_NO_CNF);
    /* the SHA-1 thumbprint is not the binding */
    assert_ver(tok(h, CL(.cnf = fmt("{\"x5t\":\"%s\"}", b64(other, 20))), k_ec), SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = fmt("{\"jkt\":\"%s\"}", cert_b64)), k_ec), SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = "{\"x5t#S256\":7}"), k_ec), SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = fmt("{\"x5t#S256\":\"%s\"}", b64(cert, 31))), k_ec),
               SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = fmt("{\"x5t#S256\":\"%s\"}", b64(other, 33))), k_ec),
               SD_JWT_NO_CNF);
    assert_ver(tok(h, CL(.cnf = fmt("{\"x5t#S256\":\"%s=\"}", cert_b64)), k_ec), SD_JWT_NO_CNF);
    assert_int_equal(got.has_x5t, 0);
    {
        /* hex, as some tools print it: 64 characters, not 43 */
        char hex[65];
        for (size_t i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", cert[i]);
        assert_ver(tok(h, CL(.cnf = fmt("{\"x5t#S256\":\"%s\"}", hex)), k_ec), SD_JWT_NO_CNF);
    }
    /* bound to another certificate: reported with its thumbprint */
    assert_ver(tok(h, CL(.cnf = fmt("{\"x5t#S256\":\"%s\"}", b64(other, 32))), k_ec),
               SD_JWT_CNF_MISMATCH);
    assert_int_equal(got.has_x5t, 1);
    assert_memory_equal(got.x5t, other, 32);
    assert_string_equal(got.sub, "alice");
    {
        uint8_t near[32];
        memcpy(near, cert, 32);
        near[31] ^= 1;
        assert_ver(tok(h, CL(.cnf = fmt("{\"x5t#S256\":\"%s\"}", b64(near, 32))), k_ec),
                   SD_JWT_CNF_MISMATCH);
    }
    /* more members of cnf are fine */
    assert_ver(tok(h, CL(.cnf = fmt("{\"jkt\":\"x\",\"x5t#S256\":\"%s\"}", cert_b64)), k_ec),
               SD_JWT_OK);
}

static void test_sub(void **state)
{
    const char *h = hdr("ES256", "ec1");
    char s255[SD_JWT_SUB_MAX + 4];

    (void)state;
    assert_ver(tok(h, CL(.sub = OMIT), k_ec), SD_JWT_CLAIMS);
    assert_int_equal(got.exp, 0); /* sub is checked first */
    assert_ver(tok(h, CL(.sub = "42"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "null"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "[\"alice\"]"), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"ali\\u0007ce\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"alice\\r\\nX-Admin: 1\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"alice\\u007f\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"al\\u00e9\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"alice\\tb\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\" alice\""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\"alice \""), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.sub = "\" \""), k_ec), SD_JWT_CLAIMS);
    assert_string_equal(got.sub, "");
    assert_ver(tok(h, CL(.sub = "\"Alice Smith <a@x>\""), k_ec), SD_JWT_OK);
    assert_string_equal(got.sub, "Alice Smith <a@x>");
    assert_ver(tok(h, CL(.sub = "\"!~\""), k_ec), SD_JWT_OK);
    assert_ver(tok(h, CL(.sub = "\"\\\"\\\\\""), k_ec), SD_JWT_OK);
    assert_string_equal(got.sub, "\"\\");
    memset(s255, 'a', sizeof(s255));
    s255[0] = '"';
    s255[SD_JWT_SUB_MAX + 1] = '"';
    s255[SD_JWT_SUB_MAX + 2] = '\0';
    assert_ver(tok(h, CL(.sub = s255), k_ec), SD_JWT_OK);
    assert_int_equal(strlen(got.sub), SD_JWT_SUB_MAX);
    s255[SD_JWT_SUB_MAX + 1] = 'a';
    s255[SD_JWT_SUB_MAX + 2] = '"';
    s255[SD_JWT_SUB_MAX + 3] = '\0';
    assert_ver(tok(h, CL(.sub = s255), k_ec), SD_JWT_CLAIMS);
}

static void test_order(void **state)
{
    const char *h = hdr("ES256", "ec1");
    const char *past = fmt("%lld", (long long)(NOW - 3600));

    (void)state;
    /* the first failing check is the result */
    assert_ver(tok(h, CL(.sub = "1", .exp = OMIT), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.exp = past, .nbf = "\"x\""), k_ec), SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.exp = past, .iss = OMIT, .aud = OMIT, .cnf = OMIT), k_ec),
               SD_JWT_EXPIRED);
    assert_ver(tok(h, CL(.nbf = fmt("%lld", (long long)(NOW + 600)), .iat = "\"x\""), k_ec),
               SD_JWT_NOT_YET_VALID);
    assert_ver(tok(h, CL(.iat = "\"x\"", .iss = OMIT), k_ec), SD_JWT_CLAIMS);
    assert_ver(tok(h, CL(.iss = OMIT, .cnf = OMIT), k_ec), SD_JWT_ISSUER);
    /* the signature before any claim */
    assert_ver(tok(h, CL(.exp = past, .sub = OMIT), k_ec2), SD_JWT_SIGNATURE);
    assert_string_equal(got.sub, "");
    assert_int_equal(got.exp, 0);
    assert_int_equal(got.has_x5t, 0);
    /* the alg before the kid */
    assert_ver(tok(hdr("HS256", "nope"), CL(0), k_ec), SD_JWT_ALG);
    /* a malformed header before the alg */
    assert_ver(tok("{\"alg\":\"none\",\"typ\":[]}", CL(0), NULL), SD_JWT_MALFORMED);
}

/* A token of exactly len bytes, valid (the claims padded). */
static char *tok_of_len(size_t len)
{
    for (size_t w = 0; w < 4; w++) {
        const char *h = fmt("{\"alg\":\"EdDSA\",\"kid\":\"ed1\"%*s}", (int)w, "");
        for (size_t pad = len * 3 / 4 - 400; pad < len; pad++) {
            char *p = talloc(pad + 1), *t;
            memset(p, 'x', pad);
            p[pad] = '\0';
            t = tok(h, CL(.extra = fmt(",\"pad\":\"%s\"", p)), k_ed);
            if (strlen(t) == len)
                return t;
            if (strlen(t) > len)
                break;
        }
    }
    fail_msg("no token of %zu bytes", len);
    return NULL;
}

static void test_length(void **state)
{
    char *t;

    (void)state;
    t = tok_of_len(SD_JWT_MAX_LEN);
    assert_int_equal(strlen(t), SD_JWT_MAX_LEN);
    assert_ver(t, SD_JWT_OK);
    t = tok_of_len(SD_JWT_MAX_LEN + 1);
    assert_ver(t, SD_JWT_MALFORMED);
    /* the length alone decides: the bytes after the limit are never read */
    {
        size_t big = 200u * 1024u;
        char *g = guard_base + GUARD_DATA - big;
        memset(g, 'A', big);
        assert_int_equal(sd_jwt_verify(ks, &rules, g, big, NOW, cert, &got), SD_JWT_MALFORMED);
    }
    /* deep nesting in the (signed) claims: refused by jansson, not a crash */
    {
        char *deep = slot();
        size_t n = 0;
        for (size_t i = 0; i < 3000; i++)
            deep[n++] = '[';
        deep[n] = '\0';
        t = tok(hdr("EdDSA", "ed1"), CL(.extra = fmt(",\"d\":%s", deep)), k_ed);
        assert_ver(t, SD_JWT_MALFORMED);
    }
}

static void test_words(void **state)
{
    static const char *const want[SD_JWT_RESULT_COUNT] = {
        "ok", "jwt_malformed", "jwt_alg_refused", "jwt_unknown_key", "jwt_bad_signature",
        "jwt_bad_claims", "jwt_expired", "jwt_not_yet_valid", "jwt_wrong_issuer",
        "jwt_wrong_audience", "jwt_no_cnf", "jwt_cnf_mismatch",
    };

    (void)state;
    for (int r = 0; r < SD_JWT_RESULT_COUNT; r++)
        assert_string_equal(sd_jwt_result_word((enum sd_jwt_result)r), want[r]);
    assert_non_null(sd_jwt_result_word(SD_JWT_RESULT_COUNT));
}

/* After failures that make OpenSSL queue errors (an RSA signature of the
 * wrong length, a bad padding), the queue is empty: verify_at checks it. */
static void test_error_queue(void **state)
{
    const char *t = tok(hdr("RS256", "rsa1"), CL(0), k_rsa);
    char *h, *p, *s;
    uint8_t *d;
    size_t n;

    (void)state;
    split(t, &h, &p, &s);
    n = unb64(s, strlen(s), &d);
    assert_ver(fmt("%s.%s.%s", h, p, b64(d, n - 1)), SD_JWT_SIGNATURE);
    d[0] ^= 0x40;
    assert_ver(fmt("%s.%s.%s", h, p, b64(d, n)), SD_JWT_SIGNATURE);
    memset(d, 0xff, n);
    assert_ver(fmt("%s.%s.%s", h, p, b64(d, n)), SD_JWT_SIGNATURE);
    /* and a later valid verify is unaffected */
    assert_ver(t, SD_JWT_OK);
}

/* ---------------------------------------------------------------- JWKS */

static void test_jwks_mixed(void **state)
{
    struct sd_jwks *k;
    const char *t;

    (void)state;
    k = parse_ok(fmt("{\"keys\":[%s,%s,%s,%s,%s,%s,%s,%s,%s,%s]}",
                     jwk(k_ec, "ec1", ",\"use\":\"sig\",\"alg\":\"ES256\""),
                     jwk(k_rsa, "enc1", ",\"use\":\"enc\""),
                     "{\"kty\":\"oct\",\"kid\":\"h1\",\"k\":\"c2VjcmV0c2VjcmV0\"}",
                     jwk(k_rsa, "rsa1", ",\"key_ops\":[\"verify\"],\"x5c\":[\"MIIB\"]"),
                     "{\"kty\":\"EC\",\"kid\":\"p384\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}",
                     "{\"kty\":\"OKP\",\"kid\":\"x1\",\"crv\":\"X25519\",\"x\":\"AA\"}",
                     jwk(k_rsa, "oaep", ",\"alg\":\"RSA-OAEP\""),
                     jwk(k_ec2, "wrap", ",\"key_ops\":[\"wrapKey\",\"encrypt\"]"),
                     "{\"kty\":\"AKP\",\"kid\":\"pq\",\"pub\":\"AA\"}",
                     jwk(k_ed, "ed1", ",\"alg\":\"EdDSA\",\"use\":\"sig\"")));
    assert_int_equal(sd_jwks_count(k), 3);
    assert_int_equal(nwarn, 7);
    assert_true(strstr(last_warn, "jwks.json: key 8 (kid 'pq')") == last_warn);
    t = tok(hdr("RS256", "rsa1"), CL(0), k_rsa);
    assert_int_equal(verify_at(k, t, strlen(t), NOW), SD_JWT_OK);
    t = tok(hdr("RS256", "enc1"), CL(0), k_rsa);
    assert_int_equal(verify_at(k, t, strlen(t), NOW), SD_JWT_KID);
    t = tok_hmac(hdr("HS256", "h1"), CL(0), "SHA256", "secretsecret", 12);
    assert_int_equal(verify_at(k, t, strlen(t), NOW), SD_JWT_ALG);
    sd_jwks_free(k);

    /* one warning each, naming the file, the key and why */
    k = parse_ok(fmt("{\"keys\":[%s,{\"kty\":\"oct\",\"k\":\"AA\"}]}", jwk(k_ec, "a", "")));
    assert_int_equal(nwarn, 1);
    assert_string_equal(last_warn,
                        "jwks.json: key 1: symmetric key skipped: HMAC tokens are never accepted");
    sd_jwks_free(k);
    k = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "a", ""), jwk(k_rsa, "e", ",\"use\":\"enc\"")));
    assert_int_equal(nwarn, 1);
    assert_non_null(strstr(last_warn, "jwks.json: key 1 (kid 'e'): "));
    assert_non_null(strstr(last_warn, "'enc'"));
    sd_jwks_free(k);
    /* warn may be NULL */
    {
        struct sd_err err;
        const char *text = fmt("{\"keys\":[%s,{\"kty\":\"oct\",\"k\":\"AA\"}]}",
                               jwk(k_ec, "a", ""));
        assert_int_equal(sd_jwks_parse("j", text, strlen(text), &k, NULL, NULL, &err), 0);
        assert_int_equal(sd_jwks_count(k), 1);
        sd_jwks_free(k);
    }
    /* keys without kid may be several; extra members are ignored */
    k = parse_ok(fmt("{\"keys\":[%s,%s],\"other\":1}", jwk(k_ec, NULL, ""),
                     jwk(k_ec2, NULL, "")));
    assert_int_equal(sd_jwks_count(k), 2);
    sd_jwks_free(k);
    sd_jwks_free(NULL);
    assert_int_equal(sd_jwks_count(NULL), 0);
}

static void test_jwks_private(void **state)
{
    uint8_t z[32] = { 1 };
    const char *d = fmt(",\"d\":\"%s\"", b64(z, 32));

    (void)state;
    parse_bad(set1(jwk(k_ec, "k1", d)), "jwks.json: key 0 (kid 'k1') holds a private key");
    parse_bad(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "a", ""), jwk(k_ed, NULL, d)),
              "key 1 holds a private key (member \"d\")");
    parse_bad(set1(jwk(k_rsa, "r", ",\"p\":\"AQAB\"")), "(member \"p\")");
    parse_bad(set1(jwk(k_rsa, "r", ",\"qi\":\"AQAB\"")), "(member \"qi\")");
    parse_bad(set1(jwk(k_rsa, "r", ",\"oth\":[]")), "(member \"oth\")");
    parse_bad(set1(jwk(k_ec, "r", ",\"k\":\"AQAB\"")), "(member \"k\")");
    /* also on a key that would be skipped: it is a leak either way */
    parse_bad(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "a", ""), jwk(k_rsa, "e", ",\"use\":\"enc\","
                                                              "\"d\":\"AQAB\"")),
              "holds a private key");
    parse_bad(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "a", ""),
                  "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"AA\"}"),
              "holds a private key");
}

static void test_jwks_bad_keys(void **state)
{
    uint8_t pt[65];
    size_t n = sizeof(pt);
    const char *x, *y;

    (void)state;
    parse_bad(set1(jwk(k_rsa1024, "small", "")),
              "jwks.json: key 0 (kid 'small'): RSA key of 1024 bits: under 2048 bits");
    assert_int_equal(EVP_PKEY_get_octet_string_param(k_ec, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                                     sizeof(pt), &n), 1);
    x = b64(pt + 1, 32);
    y = b64(pt + 33, 32);
    /* y + 1: not on the curve */
    for (int i = 64; i >= 33; i--)
        if (++pt[i] != 0)
            break;
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"x\":\"%s\",\"y\":\"%s\"}",
                       x, b64(pt + 33, 32))),
              "jwks.json: key 0 (kid 'k1'): EC x, y is not a point of the curve P-256");
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"x\":\"%s\",\"y\":\"%s\"}",
                       b64(pt + 1, 31), y)),
              "jwks.json: key 0 (kid 'k1'): EC x is not 32 bytes");
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", x,
                       b64(pt + 1, 33))),
              "key 0: EC y is not 32 bytes");
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s=\",\"y\":\"%s\"}", x, y)),
              "EC x is not base64url");
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\"}", x)),
              "EC y missing or not a string");
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":7}", x)),
              "EC y missing or not a string");
    parse_bad(set1(fmt("{\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y)),
              "EC key without crv");
    /* EdDSA keys of small order or non-canonical: (R = identity, S = 0)
     * would verify for every message under the identity */
    {
        static const char *const weak25519[] = {
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 1: identity */
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA", /* 0, x sign set */
            "7P_______________________________________38", /* p - 1 */
            "7f_______________________________________38", /* p: non-canonical 0 */
            "JuiVj8KyJ7BFw_SJ8u-Y8NXfrAXTxjM5sTgCiG1T_AU", /* order 8 */
            "xxdqcD1N2E-6PAt2DRBnDyogU_osOczGTsf9d5KsA3o", /* order 8 */
        };
        for (size_t i = 0; i < sizeof(weak25519) / sizeof(weak25519[0]); i++)
            parse_bad(set1(fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"w\","
                               "\"x\":\"%s\"}", weak25519[i])),
                      "point of small order or not canonical");
        parse_bad(set1("{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"kid\":\"w\",\"x\":"
                       "\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"),
                  "point of small order or not canonical");
    }
    /* zeros: not a point either */
    {
        uint8_t z[32] = { 0 };
        parse_bad(set1(fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
                           b64(z, 32), b64(z, 32))),
                  "not a point of the curve P-256");
    }
    parse_bad(set1("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}"),
              "Ed25519 x is not 32 bytes");
    parse_bad(set1(jwk(k_ed, "e", ",\"crv\":\"Ed448\"")), "duplicate"); /* two crv */
    parse_bad(set1("{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AAAA\"}"),
              "Ed448 x is not 57 bytes");
    parse_bad(set1("{\"kty\":\"RSA\",\"e\":\"AQAB\"}"), "RSA n missing or not a string");
    {
        uint8_t one = 1, two = 2, nine[9] = { 1, 0, 0, 0, 0, 0, 0, 0, 1 };
        const char *nn = bn_b64(k_rsa, OSSL_PKEY_PARAM_RSA_N);
        parse_bad(set1(fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", nn, b64(&one, 1))),
                  "RSA e is even or 1");
        parse_bad(set1(fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", nn, b64(&two, 1))),
                  "RSA e is even or 1");
        parse_bad(set1(fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", nn, b64(nine, 9))),
                  "RSA e is not of 64 bits or less");
        parse_bad(set1(fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}", b64(nine, 9))),
                  "RSA key of 65 bits: under 2048 bits");
        /* an even modulus of 2048 bits */
        {
            BIGNUM *bn = NULL;
            uint8_t nb[256];
            assert_int_equal(EVP_PKEY_get_bn_param(k_rsa, OSSL_PKEY_PARAM_RSA_N, &bn), 1);
            assert_int_equal(BN_bn2binpad(bn, nb, sizeof(nb)), 256);
            BN_free(bn);
            nb[255] &= 0xfe;
            parse_bad(set1(fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}",
                               b64(nb, sizeof(nb)))),
                      "RSA n is even");
        }
    }
    /* the key's alg must suit its type */
    parse_bad(set1(jwk(k_ec, "k", ",\"alg\":\"RS256\"")),
              "key 0 (kid 'k'): alg RS256 does not suit a key of type EC");
    parse_bad(set1(jwk(k_ed, "k", ",\"alg\":\"ES256\"")), "does not suit");
    /* members of the wrong type */
    parse_bad(set1(jwk(k_ec, "k", ",\"use\":1")), "use is not a string");
    parse_bad(set1(jwk(k_ec, "k", ",\"key_ops\":\"verify\"")), "key_ops is not an array");
    parse_bad(set1(jwk(k_ec, "k", ",\"key_ops\":[1]")), "key_ops holds a non-string");
    parse_bad(set1(jwk(k_ec, "k", ",\"alg\":null")), "alg is not a string");
    parse_bad(set1("{\"kty\":1}"), "key 0: kty missing or not a string");
    parse_bad(set1("{\"crv\":\"P-256\"}"), "kty missing");
    parse_bad(set1("[]"), "key 0 is not a JSON object");
    /* kid shape */
    parse_bad(set1(jwk(k_ec, NULL, ",\"kid\":1")), "key 0: kid is not a string");
    parse_bad(set1(jwk(k_ec, "a\\nb", "")), "kid is not a string");
    parse_bad(set1(jwk(k_ec, "", "")), "kid is not a string");
    {
        char kid[SD_JWT_KID_MAX + 2];
        struct sd_jwks *k;
        memset(kid, 'k', sizeof(kid));
        kid[SD_JWT_KID_MAX] = '\0';
        k = parse_ok(set1(jwk(k_ec, kid, "")));
        sd_jwks_free(k);
        kid[SD_JWT_KID_MAX] = 'k';
        kid[SD_JWT_KID_MAX + 1] = '\0';
        parse_bad(set1(jwk(k_ec, kid, "")), "key 0: kid is not a string of 1 to 128");
    }
}

static void test_jwks_set_shape(void **state)
{
    char *keys;
    size_t n = 0;

    (void)state;
    parse_bad("", "jwks.json: line");
    parse_bad("{\"keys\":[", "jwks.json: line 1");
    parse_bad("[]", "not a JWK Set");
    parse_bad("\"keys\"", "jwks.json: line"); /* jansson reads objects and arrays only */
    parse_bad("{}", "no \"keys\" array");
    parse_bad("{\"keys\":{}}", "no \"keys\" array");
    parse_bad("{\"keys\":null}", "no \"keys\" array");
    parse_bad("{\"keys\":[]}", "no usable key (0 skipped)");
    parse_bad(jwk(k_ec, "k", ""), "a single JWK, not a JWK Set");
    parse_bad(fmt("{\"keys\":[%s],\"keys\":[]}", jwk(k_ec, "k", "")), "duplicate");
    parse_bad(set1(jwk(k_ec, "k", ",\"x\":\"AA\"")), "duplicate");
    parse_bad(fmt("{\"keys\":[%s]} x", jwk(k_ec, "k", "")), "end of file expected");
    /* the message stays one printable line whatever the input */
    parse_bad("{\"keys\":[\n\x01\x02\xff]}", "jwks.json: line 2");
    /* no usable key: everything skipped */
    parse_bad(fmt("{\"keys\":[%s,{\"kty\":\"oct\",\"k\":\"AA\"}]}",
                  jwk(k_rsa, "e", ",\"use\":\"enc\"")),
              "no usable key (2 skipped)");
    assert_int_equal(nwarn, 2);
    /* duplicate kid among usable keys; a skipped key may share it */
    parse_bad(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "k1", ""), jwk(k_ec2, "k1", "")),
              "key 1 (kid 'k1'): the kid of another usable key");
    parse_bad(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "k1", ""), jwk(k_rsa, "k1", "")),
              "the kid of another usable key");
    {
        struct sd_jwks *k = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(k_ec, "k1", ""),
                                         jwk(k_rsa, "k1", ",\"use\":\"enc\"")));
        assert_int_equal(sd_jwks_count(k), 1);
        sd_jwks_free(k);
    }
    /* SD_JWKS_MAX_KEYS usable keys, and one more */
    keys = slot();
    n += (size_t)snprintf(keys, SLOT_MAX, "{\"keys\":[");
    for (int i = 0; i < SD_JWKS_MAX_KEYS; i++)
        n += (size_t)snprintf(keys + n, SLOT_MAX - n, "%s%s", i ? "," : "",
                              jwk(k_ed, fmt("k%d", i), ""));
    snprintf(keys + n, SLOT_MAX - n, "]}");
    {
        struct sd_jwks *k = parse_ok(keys);
        assert_int_equal(sd_jwks_count(k), SD_JWKS_MAX_KEYS);
        sd_jwks_free(k);
    }
    snprintf(keys + n, SLOT_MAX - n, ",%s]}", jwk(k_ed, "last", ""));
    parse_bad(keys, "more than 64 usable keys");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_valid_each_alg, release),
        cmocka_unit_test_teardown(test_alg_none, release),
        cmocka_unit_test_teardown(test_hmac_with_public_key, release),
        cmocka_unit_test_teardown(test_other_algs, release),
        cmocka_unit_test_teardown(test_alg_key_mismatch, release),
        cmocka_unit_test_teardown(test_kid, release),
        cmocka_unit_test_teardown(test_tampered, release),
        cmocka_unit_test_teardown(test_es256_forms, release),
        cmocka_unit_test_teardown(test_base64_forms, release),
        cmocka_unit_test_teardown(test_json_shapes, release),
        cmocka_unit_test_teardown(test_exp, release),
        cmocka_unit_test_teardown(test_nbf_iat, release),
        cmocka_unit_test_teardown(test_iss, release),
        cmocka_unit_test_teardown(test_aud, release),
        cmocka_unit_test_teardown(test_cnf, release),
        cmocka_unit_test_teardown(test_sub, release),
        cmocka_unit_test_teardown(test_order, release),
        cmocka_unit_test_teardown(test_length, release),
        cmocka_unit_test_teardown(test_words, release),
        cmocka_unit_test_teardown(test_error_queue, release),
        cmocka_unit_test_teardown(test_jwks_mixed, release),
        cmocka_unit_test_teardown(test_jwks_private, release),
        cmocka_unit_test_teardown(test_jwks_bad_keys, release),
        cmocka_unit_test_teardown(test_jwks_set_shape, release),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
