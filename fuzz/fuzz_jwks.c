/* fuzz_jwks.c - libFuzzer target for JWKS parsing (src/auth/jwt.c:
 * sd_jwks_parse) and for verification with whatever key set it accepts.
 *
 * Input: the bytes of a JWKS file. Checked: a refusal returns -1 with no
 * key set and one printable line starting with the file's name; each
 * warning (one per skipped key) is one printable line naming the file and
 * a key; OpenSSL's error queue is empty afterwards; parsing twice gives
 * the same verdict, message and warnings. An accepted set holds 1 to
 * SD_JWKS_MAX_KEYS keys, and (read again by jansson) every member of its
 * "keys" array is either a key or one warning. A fixed valid token signed
 * by the Ed25519 key "ed1" of the seeds is then verified with the set: its
 * claims are all good, so only ok, jwt_alg_refused, jwt_unknown_key and
 * jwt_bad_signature may come back. Leaks are LeakSanitizer's. Invariants
 * that fail call __builtin_trap(). Seeds: JWK Sets as identity providers
 * publish them (mixed sig/enc, oct, P-384, X25519), and refused ones. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "sd/b64url.h"
#include "sd/err.h"
#include "sd/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define NAME "fuzz.jwks"
#define NOW ((int64_t)1700000000)

/* The private half of "ed1" in fuzz/corpus/jwks/ (and fuzz_jwt.c). */
static const uint8_t ed_seed[32] = {
    0xec, 0x60, 0x9c, 0xdd, 0xdd, 0xbc, 0x62, 0x93,
    0xe9, 0x01, 0xd4, 0x1a, 0x68, 0xae, 0x96, 0x71,
    0x37, 0x3d, 0xf9, 0x73, 0xaa, 0xe7, 0x53, 0xb7,
    0x3b, 0x87, 0x16, 0x0f, 0x58, 0xdb, 0x2d, 0x0d,
};

static uint8_t cert[32];
static char tok[1024];
static size_t toklen;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char hdr[] = "{\"alg\":\"EdDSA\",\"kid\":\"ed1\"}";
    char payload[400];
    uint8_t sig[64];
    size_t n, sl = sizeof(sig);
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, ed_seed, 32);
    EVP_MD_CTX *m = EVP_MD_CTX_new();

    (void)argc;
    (void)argv;
    CHECK(k != NULL && m != NULL);
    for (size_t i = 0; i < sizeof(cert); i++)
        cert[i] = (uint8_t)(0x30 + 7 * i);
    n = sd_b64url_encode(cert, sizeof(cert), payload + 300);
    CHECK(n == 43);
    snprintf(payload, 300, "{\"sub\":\"fuzz\",\"exp\":%lld,\"iss\":\"i\",\"aud\":\"a\","
             "\"cnf\":{\"x5t#S256\":\"%s\"}}", (long long)(NOW + 3600), payload + 300);
    n = sd_b64url_encode((const uint8_t *)hdr, strlen(hdr), tok);
    tok[n++] = '.';
    n += sd_b64url_encode((const uint8_t *)payload, strlen(payload), tok + n);
    CHECK(EVP_DigestSignInit(m, NULL, NULL, NULL, k) == 1);
    CHECK(EVP_DigestSign(m, sig, &sl, (const uint8_t *)tok, n) == 1);
    tok[n++] = '.';
    n += sd_b64url_encode(sig, sl, tok + n);
    toklen = n;
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(k);
    return 0;
}

/* The warnings of one parse, hashed (to compare two parses). */
struct warns {
    size_t n;
    uint64_t hash;
};

static int line_ok(const char *s)
{
    if (strncmp(s, NAME ": ", strlen(NAME) + 2) != 0)
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static void on_warn(void *arg, const char *text)
{
    struct warns *w = arg;

    CHECK(line_ok(text));
    CHECK(strncmp(text, NAME ": key ", strlen(NAME) + 6) == 0);
    w->n++;
    for (; *text != '\0'; text++)
        w->hash = (w->hash ^ (unsigned char)*text) * 0x100000001b3ull;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sd_jwks *ks = NULL, *ks2 = NULL;
    struct sd_err err, err2;
    struct warns w = { 0, 0xcbf29ce484222325ull }, w2 = w;
    int rc, rc2;

    memset(&err, 0, sizeof(err));
    memset(&err2, 0, sizeof(err2));
    CHECK(ERR_peek_error() == 0);
    rc = sd_jwks_parse(NAME, data, size, &ks, on_warn, &w, &err);
    CHECK(ERR_peek_error() == 0);
    rc2 = sd_jwks_parse(NAME, data, size, &ks2, on_warn, &w2, &err2);
    CHECK(rc == rc2 && w.n == w2.n && w.hash == w2.hash);
    CHECK(sd_jwks_count(ks) == sd_jwks_count(ks2));
    sd_jwks_free(ks2);
    if (rc != 0) {
        CHECK(rc == -1 && ks == NULL);
        CHECK(line_ok(err.msg) && strcmp(err.msg, err2.msg) == 0);
        return 0;
    }
    CHECK(ks != NULL && sd_jwks_count(ks) >= 1 && sd_jwks_count(ks) <= SD_JWKS_MAX_KEYS);
    {
        json_error_t jerr;
        json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
        json_t *keys = json_object_get(root, "keys");

        CHECK(json_is_array(keys));
        CHECK(json_array_size(keys) == sd_jwks_count(ks) + w.n);
        json_decref(root);
    }
    {
        struct sd_jwt_rules rules = { "i", "a", SD_JWT_DEFAULT_LEEWAY_S };
        struct sd_jwt_claims out;
        enum sd_jwt_result r = sd_jwt_verify(ks, &rules, tok, toklen, NOW, cert, &out);

        CHECK(ERR_peek_error() == 0);
        CHECK(r == SD_JWT_OK || r == SD_JWT_ALG || r == SD_JWT_KID || r == SD_JWT_SIGNATURE);
        if (r == SD_JWT_OK)
            CHECK(strcmp(out.sub, "fuzz") == 0 && strcmp(out.kid, "ed1") == 0);
    }
    sd_jwks_free(ks);
    return 0;
}
