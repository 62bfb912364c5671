/*
 * sd/jwt.h - certificate-bound JWT access tokens (RFC 8705, RFC 7519,
 * RFC 7515), verified against the public keys of a JWKS file (RFC 7517).
 *
 * JSON is parsed by jansson (duplicate members refused: two "alg" or two
 * "exp" are two readings of one token), signatures checked by OpenSSL.
 * Accepted algorithms: ES256 (EC P-256), RS256 (RSA >= 2048 bits), EdDSA
 * (Ed25519, Ed448). The token's alg must be one of these AND match the
 * key's type and curve (and the key's own "alg" when it has one): "none",
 * every HMAC algorithm and anything else are refused before any key is
 * touched, so a public key can never be used as an HMAC secret.
 *
 * A token is valid when: three base64url segments (no padding, no other
 * byte), a header with a supported alg and no "crit"; the key named by
 * "kid" (without kid: the only key of the JWKS usable with alg) verifies
 * the signature; the claims are an object with a string "sub" (printable
 * ASCII, 1..255 bytes), a numeric "exp" in the future (minus leeway), an
 * "nbf" (if present) in the past (plus leeway), "iss" equal to the
 * configured issuer, "aud" (a string or an array of strings) holding the
 * configured audience, and cnf."x5t#S256" (base64url of 32 bytes) equal to
 * the SHA-256 of the client certificate of this connection. The checks run
 * in that order; the first that fails is the result.
 *
 * Only src/auth/jwt.c includes OpenSSL and jansson.
 */
#ifndef SD_JWT_H
#define SD_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "sd/b64url.h"
#include "sd/err.h"

#define SD_JWT_MAX_LEN 8192   /* a longer token is malformed */
#define SD_JWKS_MAX_KEYS 64   /* usable keys per JWKS file */
#define SD_JWT_SUB_MAX 255
#define SD_JWT_KID_MAX 128
#define SD_JWT_DEFAULT_LEEWAY_S 30u
#define SD_JWT_MAX_LEEWAY_S 300u

struct sd_jwks;

/* Parses a JWKS file ({"keys": [...]}); name is its path, for messages.
 * Keys with "use" other than "sig", and key types, curves or algs steeldoor
 * does not verify with, are skipped with a warning (a JWKS exported from an
 * identity provider often holds encryption keys too); refused: bad JSON, a
 * duplicate member, a key holding private members ("d", "p", ...), an RSA
 * key under 2048 bits, a malformed usable key, two usable keys with the
 * same kid, no usable key at all, more than SD_JWKS_MAX_KEYS usable keys.
 * warn(arg, text) is called once per skipped key (may be NULL). Returns 0
 * with *out (owned by the caller), or -1 with err. */
int sd_jwks_parse(const char *name, const void *data, size_t len, struct sd_jwks **out,
                  void (*warn)(void *arg, const char *text), void *arg, struct sd_err *err);
void sd_jwks_free(struct sd_jwks *ks);
size_t sd_jwks_count(const struct sd_jwks *ks);

struct sd_jwt_rules {
    const char *issuer;   /* required value of "iss" (non-NULL) */
    const char *audience; /* a value "aud" must hold (non-NULL) */
    uint32_t leeway_s;    /* clock skew allowed on exp and nbf */
};

enum sd_jwt_result {
    SD_JWT_OK = 0,
    SD_JWT_MALFORMED,      /* jwt_malformed: not three base64url parts of JSON objects */
    SD_JWT_ALG,            /* jwt_alg_refused: none, HMAC, unsupported, crit, alg/key mismatch */
    SD_JWT_KID,            /* jwt_unknown_key: no key with this kid (or no kid and not one key) */
    SD_JWT_SIGNATURE,      /* jwt_bad_signature */
    SD_JWT_CLAIMS,         /* jwt_bad_claims: sub or exp missing or of the wrong type */
    SD_JWT_EXPIRED,        /* jwt_expired */
    SD_JWT_NOT_YET_VALID,  /* jwt_not_yet_valid */
    SD_JWT_ISSUER,         /* jwt_wrong_issuer */
    SD_JWT_AUDIENCE,       /* jwt_wrong_audience */
    SD_JWT_NO_CNF,         /* jwt_no_cnf: not certificate-bound (no cnf."x5t#S256") */
    SD_JWT_CNF_MISMATCH,   /* jwt_cnf_mismatch: bound to another certificate */
    SD_JWT_RESULT_COUNT
};

/* The log word of r ("jwt_expired"; see above). */
const char *sd_jwt_result_word(enum sd_jwt_result r);

/* What a token said, filled as far as verification got: sub and exp once
 * the signature verified, x5t once cnf was read (for SD_JWT_CNF_MISMATCH,
 * the certificate the token is bound to). */
struct sd_jwt_claims {
    char sub[SD_JWT_SUB_MAX + 1];   /* NUL-terminated */
    char kid[SD_JWT_KID_MAX + 1];   /* of the header, "" if none (printable ASCII only) */
    int64_t exp;                    /* Unix seconds */
    uint8_t x5t[32];
    int has_x5t;
};

/* Verifies token[0, len) (untrusted) at time now_s for a client whose
 * certificate's DER has SHA-256 cert_sha256. Allocation only inside jansson
 * and OpenSSL; no state kept. */
enum sd_jwt_result sd_jwt_verify(const struct sd_jwks *ks, const struct sd_jwt_rules *rules,
                                 const char *token, size_t len, int64_t now_s,
                                 const uint8_t cert_sha256[32], struct sd_jwt_claims *out);

#endif
