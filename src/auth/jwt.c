/* jwt.c - certificate-bound JWT access tokens verified against a JWKS
 * (see sd/jwt.h).
 *
 * The one file of src/auth/ that sees OpenSSL and jansson. Keys become
 * EVP_PKEYs once, when the JWKS is parsed; a verify only reads them (so a
 * JWKS may be shared by threads) and allocates only inside OpenSSL (the
 * digest context, and the ECDSA_SIG of ES256) and jansson (the header and
 * the claims).
 *
 * What a verify refuses, and why, in the order it checks:
 *   - a token longer than SD_JWT_MAX_LEN, or not exactly three segments of
 *     strict base64url (sd_b64url_decode: one spelling per byte string, so
 *     a signature's text cannot be varied), or a header that is not one
 *     JSON object without duplicate members: jwt_malformed;
 *   - an alg other than ES256, RS256, EdDSA, or a "crit" header (an
 *     extension we would not honour, e.g. RFC 7797 unencoded payloads):
 *     jwt_alg_refused, before any key is looked at. The key is always the
 *     one of the JWKS (kid, or the only one usable with alg): "jwk", "jku",
 *     "x5u", "x5c" of the header are ignored, never fetched or trusted;
 *   - the signature (with the key whose kty/crv belongs to alg);
 *   - only then the claims are parsed: a signed payload is the only JSON of
 *     the token beyond its header that jansson ever sees.
 */
#include "sd/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

/* ------------------------------------------------------------ the keys */

/* The algorithms steeldoor verifies. */
enum sd_jwt_alg { SD_JWT_ALG_ES256 = 0, SD_JWT_ALG_RS256, SD_JWT_ALG_EDDSA, SD_JWT_ALG_COUNT };
static const char *const sd_jwt_alg_names[SD_JWT_ALG_COUNT] = { "ES256", "RS256", "EdDSA" };

/* What a usable key is: its kty and curve, hence the one alg it serves. */
enum sd_jwk_kind { SD_JWK_EC_P256 = 0, SD_JWK_RSA, SD_JWK_ED25519, SD_JWK_ED448 };

#define SD_JWK_EC_COORD 32        /* P-256 x, y */
#define SD_JWK_ED25519_LEN 32
#define SD_JWK_ED448_LEN 57
#define SD_JWK_RSA_MIN_BITS 2048
/* OpenSSL refuses to verify with a larger modulus (OPENSSL_RSA_MAX_MODULUS_BITS):
 * refused at parse time rather than failing every token later. */
#define SD_JWK_RSA_MAX_BITS 16384
/* OpenSSL refuses a public exponent over 64 bits with moduli over 3072
 * bits; no real key has one (65537 is three bytes). */
#define SD_JWK_RSA_E_MAX 8

struct sd_jwk {
    EVP_PKEY *pkey;                   /* owned; read-only after parse */
    enum sd_jwk_kind kind;
    int has_kid;
    char kid[SD_JWT_KID_MAX + 1];     /* printable ASCII, NUL-terminated */
    size_t kidlen;
};

struct sd_jwks {
    size_t n;
    struct sd_jwk keys[SD_JWKS_MAX_KEYS];
};

static enum sd_jwt_alg sd_jwk_alg(enum sd_jwk_kind kind)
{
    switch (kind) {
    case SD_JWK_EC_P256:
        return SD_JWT_ALG_ES256;
    case SD_JWK_RSA:
        return SD_JWT_ALG_RS256;
    case SD_JWK_ED25519:
    case SD_JWK_ED448:
        break;
    }
    return SD_JWT_ALG_EDDSA;
}

/* 1 when s[0, n) is 1..max bytes of printable ASCII (0x20..0x7E): what a
 * kid must be, so that it can be logged and compared as a C string. */
static int sd_jwt_printable(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

/* The alg named by the JSON string v, or -1 (not a string, or another). */
static int sd_jwt_alg_of(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (s == NULL)
        return -1;
    for (int a = 0; a < SD_JWT_ALG_COUNT; a++)
        if (strlen(sd_jwt_alg_names[a]) == n && memcmp(s, sd_jwt_alg_names[a], n) == 0)
            return a;
    return -1;
}

/* 1 when the JSON string v is exactly lit. */
static int sd_jwt_str_is(const json_t *v, const char *lit)
{
    const char *s = json_string_value(v);

    return s != NULL && json_string_length(v) == strlen(lit) && memcmp(s, lit, strlen(lit)) == 0;
}

/* A JSON string of the JWKS as a message may show it: itself when short
 * printable ASCII, else a placeholder (no control byte reaches a log). */
static const char *sd_jwk_shown(const json_t *v)
{
    const char *s = json_string_value(v);

    if (s == NULL)
        return "(not a string)";
    if (!sd_jwt_printable(s, json_string_length(v), 40))
        return "(unprintable)";
    return s;
}

/* Decodes the base64url JSON string member `member` of jk into out[0, cap).
 * Returns the length; -1 when absent or not a string, -2 when longer than
 * cap bytes, -3 when not base64url. */
static long sd_jwk_bytes(const json_t *jk, const char *member, uint8_t *out, size_t cap)
{
    const json_t *v = json_object_get(jk, member);
    long n;

    if (!json_is_string(v))
        return -1;
    if (json_string_length(v) > SD_B64URL_LEN(cap))
        return -2;
    n = sd_b64url_decode(json_string_value(v), json_string_length(v), out, cap);
    return n < 0 ? -3 : n;
}

/* The message of a failed sd_jwk_bytes() r for member (what: "EC x"). */
static int sd_jwk_bytes_err(struct sd_err *err, const char *name, const char *who,
                            const char *what, long r, const char *size)
{
    if (r == -1)
        return sd_err_set(err, "%s: %s: %s missing or not a string", name, who, what);
    if (r == -3)
        return sd_err_set(err, "%s: %s: %s is not base64url", name, who, what);
    return sd_err_set(err, "%s: %s: %s is not %s", name, who, what, size);
}

/* The EC P-256 public key (x, y), checked to be a point of the curve (an
 * off-curve point is the invalid-curve attack's input; verification with
 * it proves nothing). NULL with err. */
static EVP_PKEY *sd_jwk_ec(const uint8_t *x, const uint8_t *y, const char *name,
                           const char *who, struct sd_err *err)
{
    uint8_t pt[1 + 2 * SD_JWK_EC_COORD];
    char group[] = "prime256v1";
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    EVP_PKEY *pkey = NULL;

    pt[0] = 0x04; /* uncompressed: 0x04 || x || y (SEC 1, 2.3.3) */
    memcpy(pt + 1, x, SD_JWK_EC_COORD);
    memcpy(pt + 1 + SD_JWK_EC_COORD, y, SD_JWK_EC_COORD);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0) {
        sd_err_openssl(err, "%s: %s: cannot build the EC key", name, who);
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0 || pkey == NULL) {
        sd_err_openssl(err, "%s: %s: EC x, y is not a point of the curve P-256", name, who);
        pkey = NULL;
        goto out;
    }
    /* fromdata already refuses an off-curve point in OpenSSL 3; the full
     * public check makes it explicit rather than an implementation detail. */
    chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (chk == NULL || EVP_PKEY_public_check(chk) != 1) {
        sd_err_openssl(err, "%s: %s: EC x, y is not a point of the curve P-256", name, who);
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* The RSA public key (n, e), big-endian magnitudes. NULL with err. */
static EVP_PKEY *sd_jwk_rsa(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen,
                            const char *name, const char *who, struct sd_err *err)
{
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    int bits;

    if (bn == NULL || be == NULL) {
        sd_err_openssl(err, "%s: %s: out of memory", name, who);
        goto out;
    }
    bits = BN_num_bits(bn);
    if (bits < SD_JWK_RSA_MIN_BITS) {
        sd_err_set(err, "%s: %s: RSA key of %d bits: under %d bits", name, who, bits,
                   SD_JWK_RSA_MIN_BITS);
        goto out;
    }
    if (bits > SD_JWK_RSA_MAX_BITS) {
        sd_err_set(err, "%s: %s: RSA key of %d bits: over %d bits", name, who, bits,
                   SD_JWK_RSA_MAX_BITS);
        goto out;
    }
    if (!BN_is_odd(bn)) {
        sd_err_set(err, "%s: %s: RSA n is even: not an RSA modulus", name, who);
        goto out;
    }
    /* e = 1 would make every message its own signature. */
    if (!BN_is_odd(be) || BN_is_one(be)) {
        sd_err_set(err, "%s: %s: RSA e is even or 1", name, who);
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        sd_err_openssl(err, "%s: %s: cannot build the RSA key", name, who);
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0 || pkey == NULL) {
        sd_err_openssl(err, "%s: %s: cannot build the RSA key", name, who);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

/* 1 when an EdDSA public key (x, little-endian y with the sign of x in the
 * top bit) is one no signature should ever be checked with: a point of
 * small order (every order dividing the cofactor) or a non-canonical
 * encoding of y (y >= p). OpenSSL verifies against such a key: for the
 * identity point, signature (R = identity, S = 0) verifies for every
 * message, so a JWKS holding one would let anyone mint tokens. The values
 * of y (sign bit ignored) of the small-order points: Ed25519 (cofactor
 * 8): 0, 1, p - 1 and the two of order 8 (libsodium's list); Ed448
 * (cofactor 4): 0, 1, p - 1. */
static int sd_jwk_eddsa_weak(const uint8_t *x, size_t len)
{
    static const uint8_t ed25519_order8[2][32] = {
        { 0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
          0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
          0x6d, 0x53, 0xfc, 0x05 },
        { 0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
          0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
          0x92, 0xac, 0x03, 0x7a },
    };
    uint8_t y[SD_JWK_ED448_LEN];
    size_t i;
    int zero = 1, one = 1, ge_pm1 = 1;

    if (len != SD_JWK_ED25519_LEN && len != SD_JWK_ED448_LEN)
        return 1;
    memcpy(y, x, len);
    /* Ed25519 keeps x's sign in bit 255; Ed448 in a whole last byte. */
    if (len == SD_JWK_ED25519_LEN)
        y[len - 1] &= 0x7f;
    else if (y[len - 1] & 0x7f)
        return 1; /* the last byte of an Ed448 key holds only x's sign */
    else
        y[len - 1] = 0;
    for (i = 0; i < len; i++) {
        zero &= y[i] == 0;
        one &= y[i] == (i == 0);
    }
    if (zero || one)
        return 1;
    if (len == SD_JWK_ED25519_LEN) {
        /* p = 2^255 - 19; y >= p - 1 means bytes ec..ff ff..ff 7f */
        for (i = 1; i < 31; i++)
            ge_pm1 &= y[i] == 0xff;
        ge_pm1 &= y[31] == 0x7f && y[0] >= 0xec;
        for (i = 0; i < 2; i++) {
            uint8_t t[32];
            memcpy(t, ed25519_order8[i], 32);
            if (memcmp(t, y, 32) == 0)
                return 1;
        }
        return ge_pm1;
    }
    /* Ed448: p = 2^448 - 2^224 - 1, y in 56 bytes (little-endian): p - 1 is
     * fe ff..ff (bytes 0-27) fe ff..ff (bytes 28-55); y >= p - 1 when the
     * top half is all ff and ... (top half ff..ff and bottom half >= fe ff..ff
     * with byte 28 == fe), or the top half is all ff with byte 28 being ff. */
    for (i = 29; i < 56; i++)
        ge_pm1 &= y[i] == 0xff;
    if (ge_pm1 && y[28] == 0xff)
        return 1;
    if (ge_pm1 && y[28] == 0xfe) {
        int low_ff = 1;
        for (i = 1; i < 28; i++)
            low_ff &= y[i] == 0xff;
        if (low_ff && y[0] >= 0xfe)
            return 1;
    }
    return 0;
}

/* The key of one JWK of a usable kind, from its members. NULL with err. */
static EVP_PKEY *sd_jwk_key(const json_t *jk, enum sd_jwk_kind kind, const char *name,
                            const char *who, struct sd_err *err)
{
    uint8_t a[SD_JWK_RSA_MAX_BITS / 8 + 1], b[SD_JWK_RSA_E_MAX];
    const char *crv = kind == SD_JWK_ED25519 ? "Ed25519" : "Ed448";
    size_t want = kind == SD_JWK_ED25519 ? SD_JWK_ED25519_LEN : SD_JWK_ED448_LEN;
    EVP_PKEY *pkey;
    long n, m;

    switch (kind) {
    case SD_JWK_EC_P256:
        /* Decoded with room to spare, so that a wrong length is told
         * apart from bad base64url. */
        n = sd_jwk_bytes(jk, "x", a, sizeof(a));
        if (n != SD_JWK_EC_COORD) {
            sd_jwk_bytes_err(err, name, who, "EC x", n < 0 ? n : -2, "32 bytes");
            return NULL;
        }
        m = sd_jwk_bytes(jk, "y", a + SD_JWK_EC_COORD, sizeof(a) - SD_JWK_EC_COORD);
        if (m != SD_JWK_EC_COORD) {
            sd_jwk_bytes_err(err, name, who, "EC y", m < 0 ? m : -2, "32 bytes");
            return NULL;
        }
        return sd_jwk_ec(a, a + SD_JWK_EC_COORD, name, who, err);
    case SD_JWK_RSA:
        n = sd_jwk_bytes(jk, "n", a, sizeof(a));
        if (n < 0) {
            sd_jwk_bytes_err(err, name, who, "RSA n", n, "of 16384 bits or less");
            return NULL;
        }
        m = sd_jwk_bytes(jk, "e", b, sizeof(b));
        if (m < 0) {
            sd_jwk_bytes_err(err, name, who, "RSA e", m, "of 64 bits or less");
            return NULL;
        }
        return sd_jwk_rsa(a, (size_t)n, b, (size_t)m, name, who, err);
    case SD_JWK_ED25519:
    case SD_JWK_ED448:
        n = sd_jwk_bytes(jk, "x", a, sizeof(a));
        if (n < 0 || (size_t)n != want) {
            char what[16], size[16];
            snprintf(what, sizeof(what), "%s x", crv);
            snprintf(size, sizeof(size), "%zu bytes", want);
            sd_jwk_bytes_err(err, name, who, what, n < 0 ? n : -2, size);
            return NULL;
        }
        if (sd_jwk_eddsa_weak(a, want)) {
            sd_err_set(err, "%s: %s: %s x is a point of small order or not canonical: "
                       "any signature could verify with it", name, who, crv);
            return NULL;
        }
        pkey = EVP_PKEY_new_raw_public_key(kind == SD_JWK_ED25519 ? EVP_PKEY_ED25519
                                                                   : EVP_PKEY_ED448,
                                           NULL, a, want);
        if (pkey == NULL)
            sd_err_openssl(err, "%s: %s: cannot build the %s key", name, who, crv);
        return pkey;
    }
    sd_err_set(err, "%s: %s: unknown key kind", name, who);
    return NULL;
}

/* Members that only a private (or symmetric) key has (RFC 7518 6.2.2,
 * 6.3.2, 6.4.1; RFC 8037 2 for OKP "d"). */
static const char *const sd_jwk_private[] = { "d", "p", "q", "dp", "dq", "qi", "oth", "k" };

/* Reads the JWK jk (keys[idx] of file name). Returns 1 with *key filled
 * (usable), 0 after one warn() (skipped), -1 with err. */
static int sd_jwk_parse(const char *name, size_t idx, const json_t *jk, struct sd_jwk *key,
                        void (*warn)(void *arg, const char *text), void *arg,
                        struct sd_err *err)
{
    char who[64 + SD_JWT_KID_MAX], text[256 + sizeof(who)];
    const json_t *kid, *kty, *use, *ops, *alg, *crv;
    const char *skip = NULL, *shown = NULL;
    int a = -1;
    enum sd_jwk_kind kind = SD_JWK_RSA;

    if (!json_is_object(jk))
        return sd_err_set(err, "%s: key %zu is not a JSON object", name, idx);
    kid = json_object_get(jk, "kid");
    if (kid != NULL && (!json_is_string(kid) ||
                        !sd_jwt_printable(json_string_value(kid), json_string_length(kid),
                                          SD_JWT_KID_MAX)))
        return sd_err_set(err, "%s: key %zu: kid is not a string of 1 to %d printable ASCII "
                          "characters", name, idx, SD_JWT_KID_MAX);
    if (kid != NULL)
        snprintf(who, sizeof(who), "key %zu (kid '%s')", idx, json_string_value(kid));
    else
        snprintf(who, sizeof(who), "key %zu", idx);

    kty = json_object_get(jk, "kty");
    if (!json_is_string(kty))
        return sd_err_set(err, "%s: %s: kty missing or not a string", name, who);
    /* A symmetric key's secret ("k") is what it is made of: skipped rather
     * than refused, as identity providers publish them in mixed sets. */
    if (sd_jwt_str_is(kty, "oct")) {
        skip = "symmetric key skipped: HMAC tokens are never accepted";
        goto skipped;
    }
    for (size_t i = 0; i < sizeof(sd_jwk_private) / sizeof(sd_jwk_private[0]); i++)
        if (json_object_get(jk, sd_jwk_private[i]) != NULL)
            return sd_err_set(err, "%s: %s holds a private key (member \"%s\"): a JWKS for "
                              "steeldoor holds public keys only", name, who,
                              sd_jwk_private[i]);

    use = json_object_get(jk, "use");
    if (use != NULL && !json_is_string(use))
        return sd_err_set(err, "%s: %s: use is not a string", name, who);
    if (use != NULL && !sd_jwt_str_is(use, "sig")) {
        skip = "skipped: use is not \"sig\"";
        shown = sd_jwk_shown(use);
        goto skipped;
    }
    ops = json_object_get(jk, "key_ops");
    if (ops != NULL) {
        int verify = 0;
        if (!json_is_array(ops))
            return sd_err_set(err, "%s: %s: key_ops is not an array", name, who);
        for (size_t i = 0; i < json_array_size(ops); i++) {
            const json_t *op = json_array_get(ops, i);
            if (!json_is_string(op))
                return sd_err_set(err, "%s: %s: key_ops holds a non-string", name, who);
            verify |= sd_jwt_str_is(op, "verify");
        }
        if (!verify) {
            skip = "skipped: key_ops has no \"verify\"";
            goto skipped;
        }
    }
    alg = json_object_get(jk, "alg");
    if (alg != NULL && !json_is_string(alg))
        return sd_err_set(err, "%s: %s: alg is not a string", name, who);
    if (alg != NULL && (a = sd_jwt_alg_of(alg)) < 0) {
        skip = "skipped: alg is not ES256, RS256 or EdDSA";
        shown = sd_jwk_shown(alg);
        goto skipped;
    }

    crv = json_object_get(jk, "crv");
    if (sd_jwt_str_is(kty, "RSA")) {
        kind = SD_JWK_RSA;
    } else if (sd_jwt_str_is(kty, "EC") || sd_jwt_str_is(kty, "OKP")) {
        int ec = sd_jwt_str_is(kty, "EC");
        if (!json_is_string(crv))
            return sd_err_set(err, "%s: %s: %s key without crv", name, who, ec ? "EC" : "OKP");
        if (ec && sd_jwt_str_is(crv, "P-256")) {
            kind = SD_JWK_EC_P256;
        } else if (!ec && sd_jwt_str_is(crv, "Ed25519")) {
            kind = SD_JWK_ED25519;
        } else if (!ec && sd_jwt_str_is(crv, "Ed448")) {
            kind = SD_JWK_ED448;
        } else {
            skip = ec ? "skipped: EC curve is not P-256"
                      : "skipped: OKP curve is not Ed25519 or Ed448";
            shown = sd_jwk_shown(crv);
            goto skipped;
        }
    } else {
        skip = "skipped: key type is not EC, RSA or OKP";
        shown = sd_jwk_shown(kty);
        goto skipped;
    }
    /* The key's own alg, when it has one, is a promise about its use: an
     * alg its type cannot serve is a broken key, not one to skip quietly. */
    if (a >= 0 && (enum sd_jwt_alg)a != sd_jwk_alg(kind))
        return sd_err_set(err, "%s: %s: alg %s does not suit a key of type %s", name, who,
                          sd_jwt_alg_names[a], json_string_value(kty));

    memset(key, 0, sizeof(*key));
    key->kind = kind;
    if (kid != NULL) {
        key->has_kid = 1;
        key->kidlen = json_string_length(kid);
        memcpy(key->kid, json_string_value(kid), key->kidlen);
        key->kid[key->kidlen] = '\0';
    }
    key->pkey = sd_jwk_key(jk, kind, name, who, err);
    return key->pkey != NULL ? 1 : -1;

skipped:
    if (warn != NULL) {
        if (shown != NULL)
            snprintf(text, sizeof(text), "%s: %s: %s ('%s')", name, who, skip, shown);
        else
            snprintf(text, sizeof(text), "%s: %s: %s", name, who, skip);
        warn(arg, text);
    }
    return 0;
}

void sd_jwks_free(struct sd_jwks *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++)
        EVP_PKEY_free(ks->keys[i].pkey);
    free(ks);
}

size_t sd_jwks_count(const struct sd_jwks *ks)
{
    return ks != NULL ? ks->n : 0;
}

int sd_jwks_parse(const char *name, const void *data, size_t len, struct sd_jwks **out,
                  void (*warn)(void *arg, const char *text), void *arg, struct sd_err *err)
{
    struct sd_jwks *ks = NULL;
    json_error_t jerr;
    json_t *root, *keys;
    size_t nkeys, skipped = 0;
    int rc = -1;

    *out = NULL;
    /* Duplicates refused: two "x" of one key are two keys. */
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jansson quotes the offending input ("near '...'"): kept to one
         * printable line, as the message goes to a log. */
        for (size_t i = 0; i < sizeof(jerr.text) && jerr.text[i] != '\0'; i++)
            if ((unsigned char)jerr.text[i] < 0x20 || (unsigned char)jerr.text[i] > 0x7e)
                jerr.text[i] = '?';
        return sd_err_set(err, "%s: line %d column %d: %s", name, jerr.line, jerr.column,
                          jerr.text);
    }
    if (!json_is_object(root)) {
        sd_err_set(err, "%s: not a JWK Set (a JSON object with \"keys\")", name);
        goto out;
    }
    keys = json_object_get(root, "keys");
    if (keys == NULL && json_object_get(root, "kty") != NULL) {
        /* One bare JWK is refused rather than guessed at: a file that
         * changes shape between reloads should not change meaning. */
        sd_err_set(err, "%s: a single JWK, not a JWK Set: write it as {\"keys\": [ ... ]}", name);
        goto out;
    }
    if (!json_is_array(keys)) {
        sd_err_set(err, "%s: no \"keys\" array", name);
        goto out;
    }
    ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        sd_err_set(err, "%s: out of memory", name);
        goto out;
    }
    nkeys = json_array_size(keys);
    for (size_t i = 0; i < nkeys; i++) {
        struct sd_jwk key;
        int r = sd_jwk_parse(name, i, json_array_get(keys, i), &key, warn, arg, err);

        if (r < 0)
            goto out;
        if (r == 0) {
            skipped++;
            continue;
        }
        if (ks->n == SD_JWKS_MAX_KEYS) {
            EVP_PKEY_free(key.pkey);
            sd_err_set(err, "%s: more than %d usable keys", name, SD_JWKS_MAX_KEYS);
            goto out;
        }
        /* Two keys under one kid: which one a token means would depend on
         * the order of the file. */
        for (size_t j = 0; key.has_kid && j < ks->n; j++) {
            if (ks->keys[j].has_kid && ks->keys[j].kidlen == key.kidlen &&
                memcmp(ks->keys[j].kid, key.kid, key.kidlen) == 0) {
                EVP_PKEY_free(key.pkey);
                sd_err_set(err, "%s: key %zu (kid '%s'): the kid of another usable key", name,
                           i, key.kid);
                goto out;
            }
        }
        ks->keys[ks->n++] = key;
    }
    if (ks->n == 0) {
        sd_err_set(err, "%s: no usable key (%zu skipped): steeldoor verifies ES256 (EC P-256), "
                   "RS256 (RSA) and EdDSA (Ed25519, Ed448) signing keys", name, skipped);
        goto out;
    }
    *out = ks;
    ks = NULL;
    rc = 0;
out:
    sd_jwks_free(ks);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------- verify */

const char *sd_jwt_result_word(enum sd_jwt_result r)
{
    static const char *const words[SD_JWT_RESULT_COUNT] = {
        [SD_JWT_OK] = "ok",
        [SD_JWT_MALFORMED] = "jwt_malformed",
        [SD_JWT_ALG] = "jwt_alg_refused",
        [SD_JWT_KID] = "jwt_unknown_key",
        [SD_JWT_SIGNATURE] = "jwt_bad_signature",
        [SD_JWT_CLAIMS] = "jwt_bad_claims",
        [SD_JWT_EXPIRED] = "jwt_expired",
        [SD_JWT_NOT_YET_VALID] = "jwt_not_yet_valid",
        [SD_JWT_ISSUER] = "jwt_wrong_issuer",
        [SD_JWT_AUDIENCE] = "jwt_wrong_audience",
        [SD_JWT_NO_CNF] = "jwt_no_cnf",
        [SD_JWT_CNF_MISMATCH] = "jwt_cnf_mismatch",
    };

    if ((unsigned)r >= SD_JWT_RESULT_COUNT)
        return "jwt_malformed";
    return words[r];
}

/* The JWS signature sig[0, n) of alg over in[0, inlen) with key. 1 when
 * it verifies. OpenSSL's error queue is left empty either way: a failed
 * verify must not surface later as the reason of an unrelated TLS call on
 * this thread. */
static int sd_jwt_sig_ok(const struct sd_jwk *key, enum sd_jwt_alg alg, const char *in,
                         size_t inlen, const uint8_t *sig, size_t n)
{
    uint8_t der[80];
    const uint8_t *s = sig;
    size_t slen = n;
    EVP_MD_CTX *mctx = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    int ok = 0;

    if (alg == SD_JWT_ALG_ES256) {
        /* JWS carries R || S, 32 bytes each (RFC 7518 3.4); OpenSSL wants
         * the DER ECDSA-Sig-Value. Any other length is refused here: a DER
         * signature passed as is would be a second spelling. */
        ECDSA_SIG *es;
        BIGNUM *r, *ss;
        unsigned char *p = der;
        int dl;

        if (n != 2 * SD_JWK_EC_COORD)
            return 0;
        es = ECDSA_SIG_new();
        r = BN_bin2bn(sig, SD_JWK_EC_COORD, NULL);
        ss = BN_bin2bn(sig + SD_JWK_EC_COORD, SD_JWK_EC_COORD, NULL);
        if (es == NULL || r == NULL || ss == NULL || !ECDSA_SIG_set0(es, r, ss)) {
            BN_free(r);
            BN_free(ss);
            ECDSA_SIG_free(es);
            goto out;
        }
        dl = i2d_ECDSA_SIG(es, NULL);
        if (dl <= 0 || (size_t)dl > sizeof(der) || i2d_ECDSA_SIG(es, &p) != dl) {
            ECDSA_SIG_free(es);
            goto out;
        }
        ECDSA_SIG_free(es);
        s = der;
        slen = (size_t)dl;
    }
    mctx = EVP_MD_CTX_new();
    if (mctx == NULL)
        goto out;
    /* EdDSA hashes inside the signature scheme: no digest is named. */
    if (EVP_DigestVerifyInit(mctx, &pctx, alg == SD_JWT_ALG_EDDSA ? NULL : EVP_sha256(), NULL,
                             key->pkey) != 1)
        goto out;
    if (alg == SD_JWT_ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
        goto out; /* PKCS#1 v1.5 named, never left to a default */
    ok = EVP_DigestVerify(mctx, s, slen, (const unsigned char *)in, inlen) == 1;
out:
    EVP_MD_CTX_free(mctx);
    if (!ok)
        ERR_clear_error();
    return ok;
}

/* A NumericDate (RFC 7519 2) of the claims: an integer or a real, 0 to
 * 2^53 (where a double stops being exact). Reals are rounded down
 * (up = 0) or up (up = 1), the side that shortens the token's life.
 * Returns 0 with *t, -1 when v is not such a number. */
static int sd_jwt_time(const json_t *v, int up, int64_t *t)
{
    const int64_t max = (int64_t)1 << 53;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > max)
            return -1;
        *t = (int64_t)i;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        int64_t i;
        if (!(d >= 0.0 && d <= (double)max)) /* NaN fails too */
            return -1;
        i = (int64_t)d; /* toward zero: down, as d >= 0 */
        if (up && (double)i < d)
            i++;
        *t = i;
        return 0;
    }
    return -1;
}

/* 1 when the JSON string v equals the C string want byte for byte. */
static int sd_jwt_str_eq(const json_t *v, const char *want)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    return s != NULL && strlen(want) == n && memcmp(s, want, n) == 0;
}

/* The claims after the signature verified, in the order of sd/jwt.h. */
static enum sd_jwt_result sd_jwt_claims(const json_t *c, const struct sd_jwt_rules *rules,
                                        int64_t now_s, const uint8_t cert_sha256[32],
                                        struct sd_jwt_claims *out)
{
    int64_t leeway = rules->leeway_s > SD_JWT_MAX_LEEWAY_S ? SD_JWT_MAX_LEEWAY_S
                                                           : rules->leeway_s;
    const json_t *v, *cnf;
    const char *s;
    size_t n;
    int64_t exp, nbf;
    long xl;

    /* sub goes into a backend header: printable ASCII, spaces only inside. */
    v = json_object_get(c, "sub");
    s = json_string_value(v);
    n = json_string_length(v);
    if (s == NULL || !sd_jwt_printable(s, n, SD_JWT_SUB_MAX) || s[0] == ' ' || s[n - 1] == ' ')
        return SD_JWT_CLAIMS;
    memcpy(out->sub, s, n);
    out->sub[n] = '\0';

    if (sd_jwt_time(json_object_get(c, "exp"), 0, &exp) != 0)
        return SD_JWT_CLAIMS;
    out->exp = exp;
    /* exp + leeway cannot overflow (both bounded); now_s is never added to. */
    if (now_s >= exp + leeway)
        return SD_JWT_EXPIRED;
    v = json_object_get(c, "nbf");
    if (v != NULL) {
        if (sd_jwt_time(v, 1, &nbf) != 0)
            return SD_JWT_CLAIMS;
        if (now_s < nbf - leeway)
            return SD_JWT_NOT_YET_VALID;
    }
    v = json_object_get(c, "iat");
    if (v != NULL && !json_is_number(v))
        return SD_JWT_CLAIMS;

    if (!sd_jwt_str_eq(json_object_get(c, "iss"), rules->issuer))
        return SD_JWT_ISSUER;

    v = json_object_get(c, "aud");
    if (json_is_array(v)) {
        int found = 0;
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e))
                return SD_JWT_AUDIENCE; /* not "an array of strings" */
            found |= sd_jwt_str_eq(e, rules->audience);
        }
        if (!found)
            return SD_JWT_AUDIENCE;
    } else if (!sd_jwt_str_eq(v, rules->audience)) {
        return SD_JWT_AUDIENCE;
    }

    /* RFC 8705 3.1: the SHA-256 of the certificate's DER, base64url. */
    cnf = json_object_get(c, "cnf");
    v = json_object_get(cnf, "x5t#S256"); /* NULL when cnf is not an object */
    if (!json_is_string(v))
        return SD_JWT_NO_CNF;
    xl = sd_b64url_decode(json_string_value(v), json_string_length(v), out->x5t,
                          sizeof(out->x5t));
    if (xl != (long)sizeof(out->x5t)) {
        memset(out->x5t, 0, sizeof(out->x5t));
        return SD_JWT_NO_CNF;
    }
    out->has_x5t = 1;
    if (CRYPTO_memcmp(out->x5t, cert_sha256, sizeof(out->x5t)) != 0)
        return SD_JWT_CNF_MISMATCH;
    return SD_JWT_OK;
}

/* The key for a token of alg naming kid (kidlen 0: none). Returns
 * SD_JWT_OK with *key, SD_JWT_KID or SD_JWT_ALG. */
static enum sd_jwt_result sd_jwt_key(const struct sd_jwks *ks, enum sd_jwt_alg alg,
                                     const char *kid, size_t kidlen, const struct sd_jwk **key)
{
    const struct sd_jwk *found = NULL;
    size_t usable = 0;

    if (kidlen > 0) {
        for (size_t i = 0; i < ks->n; i++) {
            const struct sd_jwk *k = &ks->keys[i];
            if (k->has_kid && k->kidlen == kidlen && memcmp(k->kid, kid, kidlen) == 0) {
                /* A key of another type than alg says is the algorithm
                 * confusion attack: refused, never tried. */
                if (sd_jwk_alg(k->kind) != alg)
                    return SD_JWT_ALG;
                *key = k;
                return SD_JWT_OK;
            }
        }
        return SD_JWT_KID;
    }
    for (size_t i = 0; i < ks->n; i++) {
        if (sd_jwk_alg(ks->keys[i].kind) == alg) {
            found = &ks->keys[i];
            usable++;
        }
    }
    if (usable != 1)
        return SD_JWT_KID;
    *key = found;
    return SD_JWT_OK;
}

enum sd_jwt_result sd_jwt_verify(const struct sd_jwks *ks, const struct sd_jwt_rules *rules,
                                 const char *token, size_t len, int64_t now_s,
                                 const uint8_t cert_sha256[32], struct sd_jwt_claims *out)
{
    /* Room for the three decoded segments together: base64url decodes to
     * 3/4 of its length, and the segments share the token's bound. */
    uint8_t buf[SD_JWT_MAX_LEN / 4 * 3];
    struct sd_jwt_claims scratch;
    const char *dot1, *dot2, *seg[3];
    size_t seglen[3], off = 0;
    long dl[3];
    json_t *hdr = NULL, *claims = NULL;
    const json_t *v, *kid;
    const struct sd_jwk *key = NULL;
    json_error_t jerr;
    enum sd_jwt_result r = SD_JWT_MALFORMED;
    enum sd_jwt_alg alg;
    int a;

    if (out == NULL)
        out = &scratch;
    memset(out, 0, sizeof(*out));
    if (ks == NULL || rules == NULL || token == NULL || len == 0 || len > SD_JWT_MAX_LEN)
        return ks == NULL ? SD_JWT_KID : SD_JWT_MALFORMED;

    /* Exactly two dots; a fourth or fifth segment (JWE) is malformed. */
    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        return SD_JWT_MALFORMED;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return SD_JWT_MALFORMED;
    seg[0] = token;
    seglen[0] = (size_t)(dot1 - token);
    seg[1] = dot1 + 1;
    seglen[1] = (size_t)(dot2 - seg[1]);
    seg[2] = dot2 + 1;
    seglen[2] = len - (size_t)(seg[2] - token);
    /* An empty signature is let through to the alg check, so that "none"
     * is named as such whatever its signature part looks like. */
    if (seglen[0] == 0 || seglen[1] == 0)
        return SD_JWT_MALFORMED;
    for (int i = 0; i < 3; i++) {
        dl[i] = sd_b64url_decode(seg[i], seglen[i], buf + off, sizeof(buf) - off);
        if (dl[i] < 0)
            return SD_JWT_MALFORMED;
        off += (size_t)dl[i];
    }

    hdr = json_loadb((const char *)buf, (size_t)dl[0], JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(hdr))
        goto out;
    v = json_object_get(hdr, "alg");
    if (!json_is_string(v))
        goto out;
    kid = json_object_get(hdr, "kid");
    if (kid != NULL) {
        if (!json_is_string(kid) || !sd_jwt_printable(json_string_value(kid),
                                                      json_string_length(kid), SD_JWT_KID_MAX))
            goto out;
        memcpy(out->kid, json_string_value(kid), json_string_length(kid));
        out->kid[json_string_length(kid)] = '\0';
    }
    if (json_object_get(hdr, "typ") != NULL && !json_is_string(json_object_get(hdr, "typ")))
        goto out;
    r = SD_JWT_ALG;
    a = sd_jwt_alg_of(v);
    if (a < 0 || json_object_get(hdr, "crit") != NULL)
        goto out;
    alg = (enum sd_jwt_alg)a;

    r = sd_jwt_key(ks, alg, out->kid, strlen(out->kid), &key);
    if (r != SD_JWT_OK)
        goto out;
    r = SD_JWT_SIGNATURE;
    /* The signing input is the first two segments as received. */
    if (!sd_jwt_sig_ok(key, alg, token, (size_t)(dot2 - token), buf + dl[0] + dl[1],
                       (size_t)dl[2]))
        goto out;

    r = SD_JWT_MALFORMED;
    claims = json_loadb((const char *)buf + dl[0], (size_t)dl[1], JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(claims))
        goto out;
    r = sd_jwt_claims(claims, rules, now_s, cert_sha256, out);
out:
    json_decref(claims);
    json_decref(hdr);
    return r;
}
