/* fuzz_jwt.c - libFuzzer target for certificate-bound token verification
 * (src/auth/jwt.c: sd_jwt_verify), against a fixed JWKS of three keys
 * (ES256 "ec1", RS256 "rsa1", EdDSA "ed1") whose private halves are here.
 *
 * Input: one mode byte, then either a token verbatim (mode bit 0 clear),
 * or a header and a payload JSON text separated by a NUL byte (bit 0
 * set), which the target encodes and signs itself with the key chosen by
 * bits 1-2 (EC, Ed25519, RSA, or no signature) - so the claim checks
 * behind the signature are reached too. Bit 3 sets the leeway to 0.
 * Checked, whatever the input: the result is one of the enum and has a
 * word; OpenSSL's error queue is empty afterwards; kid and sub are
 * NUL-terminated printable ASCII; nothing of the claims is reported unless
 * the signature verified, and x5t only with a cnf verdict. When the
 * signature verified: one bit flipped in the signature gives
 * jwt_bad_signature; when the token passed: it is expired at exp + leeway,
 * bound to another certificate it is jwt_cnf_mismatch reporting the same
 * x5t, under another issuer jwt_wrong_issuer, and verifying it again gives
 * the same. Invariants that fail call __builtin_trap(). Seeds: valid and
 * refused tokens of each alg, and header/payload pairs to sign. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "sd/b64url.h"
#include "sd/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define NOW ((int64_t)1700000000)
#define ISS "https://idp.example/realm"
#define AUD "steeldoor"

/* Test keys, generated for this target only. */
static const char ec_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNymt3XZUfd3+2sfw\n"
    "gjamNeRi3dVjSRfVCxyI/7g+8lqhRANCAASmghi5voSV59Pfzqb1hWsmExiEi3Ex\n"
    "qdIuUETm+H3w1UrPjktuKUwsWRQQVi5ENZ2BISGY7k2dMBC0eeaGz21p\n"
    "-----END PRIVATE KEY-----\n";
static const char rsa_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDAvjI/iuZmhrGd\n"
    "FsqboXDH/YTI4I//uwHzH8Y5c5fIUcnOAa/NMBNN4CoBbeIJOiC+XsahO1FrenH+\n"
    "LyeG2Vf8EPRyWEGYPmYkzuKYiNwHggQjl/I4NqRTuOcp0QgV8BzEY91aNgFgmeJF\n"
    "q37T3T3RBUbM+PSQ1hQmA7EFAiW/FOM5c6afw/2YUocUkPlTqN6IeIAYJQKcQCqa\n"
    "gux05D5lkkcOXB1AhWrJuyI0EHvJ1oyr+R8vPi0pblQNVaqoTk7e3uLO8UiDVWSd\n"
    "fvoQ5tgCtrZSDyMb0SQdldJgPd6Xy+7HLQ/ZzTZdedsPjiemzPS79vzpNfPR4vV5\n"
    "LqCsM1xZAgMBAAECggEARLzv9apnPeRGfqQMsNE0BBbdXrh7knPSn67SxlV7qZTF\n"
    "mEMQu+gr0keiI21ZQfopiEsLop+hi2eZNNIDUju7/ajcTNU923pRekoQFN8mPUU4\n"
    "jasYVsTh+PvF8Stbq1s9HysQW6ZL+nQW9srRCeTqsVsk41/b9LVsbRw+6u7XoFvH\n"
    "LPF+GreBnOwst429wV4tpvrldjcRVGH9rV2rxXefK2iP44aCYbp5ovP6cRnctiVy\n"
    "q+ygAXfa71tTeSoavV3oqohgy2EXbfvvIX9W/gSf4Pi41htAe+kL5T6C/6eYljSB\n"
    "vvgUteAsSeqMcRZRrcI1PV8kahR/8EV270afDOEpCwKBgQDxOcehev3Ay5/auvtY\n"
    "7Q78D5aPn81rduihyBjmGK8bj6OAaJww2VyPx+U0M4nfbhRN0TNjbhij4W9W9xy4\n"
    "QG+//rwBTzQi+gZh/4IqIw4imk80EmnrZ1QP2vbEuTF44dj1QxDgzGsCnjgpYbtL\n"
    "Rmiqg179NCXAsuK+EAZZPV/ejwKBgQDMjD83ryX/EEUD7CiXUzLSX/3CvWrNMx4K\n"
    "kVlpvblC2eD1/xsR+YsI2hdeq28MH4mFjtC1iaCOcXpTxPBmhO5/+XyQ9sLnkC7j\n"
    "oFIkW1C/57+wOG0l4fW2bYUY8Xv5KxMP6OmwNJ/IqIDiO3tkdM85eRYoiax6PeDn\n"
    "qLY14XKKlwKBgAvBnyMVlWxiACZu2nUZCJPsRpA1X5OPNgM8d0ovhck4FOXbM1GG\n"
    "JmazfU4v/NYwzTiFq5V69iR2hjCc1n98VHXs+kiuDYJu4QTBqRxYnQW+s4F8LEFW\n"
    "xdgH+eLYi7qydxps7FOoYsa740zRAInIoq08vdJlSjm7/iT5LvYGcbetAoGBAK4S\n"
    "yJX982sOkH1XE/A8OKr6T/3Trzl0QCOkMKChejEfNKiE8qeoY58j4vGJGZcKm8FS\n"
    "meF0f3PZtM3ncuL8S/ATBORla9cfSBglTuJr59t5QROZ4aF0m+QlbjidAfE5rB5F\n"
    "C+MN1dExPYXKMyd5lQUHPElBaMwbLvRXCsHt28l/AoGAaNd5mTpW+h2mvWV5Yu4O\n"
    "byka0+a01fQxl8DQI8vCV1NcsWO1dtUX2i4K/ZSrlsFLtDWamnzECR9puhm1/XWr\n"
    "jTx36CvLNOBE/IsCLlUHo/xsnBLbzHFQm2fRXSuaFD9ievQzgbEJPN9nIFxXikg8\n"
    "uomB6ZguHVlwtuXCr2vWm9Q=\n"
    "-----END PRIVATE KEY-----\n";
static const uint8_t ed_seed[32] = {
    0xec, 0x60, 0x9c, 0xdd, 0xdd, 0xbc, 0x62, 0x93,
    0xe9, 0x01, 0xd4, 0x1a, 0x68, 0xae, 0x96, 0x71,
    0x37, 0x3d, 0xf9, 0x73, 0xaa, 0xe7, 0x53, 0xb7,
    0x3b, 0x87, 0x16, 0x0f, 0x58, 0xdb, 0x2d, 0x0d,
};
static const char jwks_text[] =
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec1\",\"use\":\"sig\",\"alg\""
    ":\"ES256\",\"x\":\"poIYub6ElefT386m9YVrJhMYhItxManSLlBE5vh98NU\",\"y\":\""
    "Ss-OS24pTCxZFBBWLkQ1nYEhIZjuTZ0wELR55obPbWk\"},{\"kty\":\"RSA\",\"kid\""
    ":\"rsa1\",\"n\":\"wL4yP4rmZoaxnRbKm6Fwx_2EyOCP_7sB8x_GOXOXyFHJzgGvzTA"
    "TTeAqAW3iCTogvl7GoTtRa3px_i8nhtlX_BD0clhBmD5mJM7imIjcB4IEI5fyODa"
    "kU7jnKdEIFfAcxGPdWjYBYJniRat-09090QVGzPj0kNYUJgOxBQIlvxTjOXOmn8P"
    "9mFKHFJD5U6jeiHiAGCUCnEAqmoLsdOQ-ZZJHDlwdQIVqybsiNBB7ydaMq_kfLz4"
    "tKW5UDVWqqE5O3t7izvFIg1VknX76EObYAra2Ug8jG9EkHZXSYD3el8vuxy0P2c0"
    "2XXnbD44npsz0u_b86TXz0eL1eS6grDNcWQ\",\"e\":\"AQAB\"},{\"kty\":\"OKP\",\"c"
    "rv\":\"Ed25519\",\"kid\":\"ed1\",\"x\":\"26Zeshk6ep6CoNkIe2ToFn-U_iFTd1eeY"
    "90wNU0LEw8\"}]}";

static struct sd_jwks *ks;
static EVP_PKEY *k_ec, *k_rsa, *k_ed;
static uint8_t cert[32]; /* the client certificate's SHA-256: 0x30 + 7 i */

/* A token with room past SD_JWT_MAX_LEN, so that the limit is crossed. */
#define TOK_MAX (SD_JWT_MAX_LEN + 256)
static char tok[TOK_MAX + 1];

static EVP_PKEY *pem_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k;

    CHECK(b != NULL);
    k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    CHECK(k != NULL);
    return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    k_ec = pem_key(ec_pem);
    k_rsa = pem_key(rsa_pem);
    k_ed = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, ed_seed, sizeof(ed_seed));
    CHECK(k_ed != NULL);
    CHECK(sd_jwks_parse("fuzz.jwks", jwks_text, strlen(jwks_text), &ks, NULL, NULL, NULL) == 0);
    CHECK(sd_jwks_count(ks) == 3);
    for (size_t i = 0; i < sizeof(cert); i++)
        cert[i] = (uint8_t)(0x30 + 7 * i);
    return 0;
}

/* The JWS signature of in[0, n) with k into sig (ES256 as R || S).
 * Returns its length. */
static size_t sign(EVP_PKEY *k, const char *in, size_t n, uint8_t *sig, size_t cap)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int id = EVP_PKEY_get_base_id(k);
    size_t len = cap;

    CHECK(m != NULL);
    CHECK(EVP_DigestSignInit(m, &pc, id == EVP_PKEY_ED25519 ? NULL : EVP_sha256(), NULL, k) == 1);
    if (id == EVP_PKEY_RSA)
        CHECK(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) > 0);
    CHECK(EVP_DigestSign(m, sig, &len, (const uint8_t *)in, n) == 1);
    EVP_MD_CTX_free(m);
    if (id == EVP_PKEY_EC) {
        const uint8_t *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
        const BIGNUM *r, *s;

        CHECK(es != NULL);
        ECDSA_SIG_get0(es, &r, &s);
        CHECK(BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32);
        ECDSA_SIG_free(es);
        len = 64;
    }
    return len;
}

/* Builds b64(h).b64(p).b64(sig) in tok; returns its length, 0 when it
 * would not fit. */
static size_t build(const uint8_t *h, size_t hl, const uint8_t *p, size_t pl, EVP_PKEY *k)
{
    uint8_t sig[512];
    size_t n, sl = 0;

    if (SD_B64URL_LEN(hl) + SD_B64URL_LEN(pl) + 2 + SD_B64URL_LEN(sizeof(sig)) > TOK_MAX)
        return 0;
    n = sd_b64url_encode(h, hl, tok);
    tok[n++] = '.';
    n += sd_b64url_encode(p, pl, tok + n);
    if (k != NULL)
        sl = sign(k, tok, n, sig, sizeof(sig));
    tok[n++] = '.';
    n += sd_b64url_encode(sig, sl, tok + n);
    return n;
}

static int printable(const char *s, size_t cap)
{
    const char *end = memchr(s, '\0', cap);

    if (end == NULL)
        return 0;
    for (; s < end; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static enum sd_jwt_result run(const char *t, size_t n, const struct sd_jwt_rules *rules,
                              int64_t now, const uint8_t *c, struct sd_jwt_claims *out)
{
    enum sd_jwt_result r;
    const char *w;

    CHECK(ERR_peek_error() == 0);
    r = sd_jwt_verify(ks, rules, t, n, now, c, out);
    CHECK(ERR_peek_error() == 0);
    CHECK((unsigned)r < SD_JWT_RESULT_COUNT);
    w = sd_jwt_result_word(r);
    CHECK(w != NULL && (strncmp(w, "jwt_", 4) == 0 || (r == SD_JWT_OK && strcmp(w, "ok") == 0)));
    CHECK(printable(out->kid, sizeof(out->kid)) && printable(out->sub, sizeof(out->sub)));
    if (n > SD_JWT_MAX_LEN)
        CHECK(r == SD_JWT_MALFORMED);
    switch (r) {
    case SD_JWT_MALFORMED:
    case SD_JWT_ALG:
    case SD_JWT_KID:
    case SD_JWT_SIGNATURE:
        /* Before the signature verified, nothing of the payload is read
         * (a MALFORMED payload after it leaves sub empty too). */
        CHECK(out->sub[0] == '\0' && out->exp == 0 && !out->has_x5t);
        break;
    case SD_JWT_CLAIMS:
        CHECK(!out->has_x5t);
        break;
    default: {
        size_t sl = strlen(out->sub);
        CHECK(sl > 0 && out->sub[0] != ' ' && out->sub[sl - 1] != ' ');
        CHECK(out->has_x5t == (r == SD_JWT_OK || r == SD_JWT_CNF_MISMATCH));
        if (r == SD_JWT_CNF_MISMATCH)
            CHECK(memcmp(out->x5t, c, 32) != 0);
        if (r == SD_JWT_OK)
            CHECK(memcmp(out->x5t, c, 32) == 0 &&
                  now < out->exp + (int64_t)rules->leeway_s);
        break;
    }
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sd_jwt_rules rules = { ISS, AUD, SD_JWT_DEFAULT_LEEWAY_S };
    struct sd_jwt_claims out, again;
    enum sd_jwt_result r;
    uint8_t mode;
    size_t n;

    if (size < 1)
        return 0;
    mode = data[0];
    data++;
    size--;
    if (mode & 8)
        rules.leeway_s = 0;
    if (mode & 1) {
        const uint8_t *nul = memchr(data, '\0', size);
        EVP_PKEY *keys[4] = { k_ec, k_ed, k_rsa, NULL };
        size_t hl = nul != NULL ? (size_t)(nul - data) : size;

        n = build(data, hl, nul != NULL ? nul + 1 : data + size,
                  nul != NULL ? size - hl - 1 : 0, keys[(mode >> 1) & 3]);
        if (n == 0)
            return 0;
    } else {
        if (size > TOK_MAX)
            return 0;
        memcpy(tok, data, size);
        n = size;
    }
    tok[n] = '\0';

    /* the token exactly as long as it is: ASan sees a read past it */
    {
        char *t = malloc(n > 0 ? n : 1);
        CHECK(t != NULL);
        memcpy(t, tok, n);
        r = run(t, n, &rules, NOW, cert, &out);
        free(t);
    }

    if (r > SD_JWT_SIGNATURE) {
        /* The signature verified: with one bit flipped it must not. */
        const char *dot = memrchr(tok, '.', n);
        uint8_t sig[SD_JWT_MAX_LEN];
        long sl;
        size_t at;

        CHECK(dot != NULL);
        at = (size_t)(dot + 1 - tok);
        sl = sd_b64url_decode(dot + 1, n - at, sig, sizeof(sig));
        CHECK(sl > 0);
        sig[(size_t)sl / 2] ^= 0x04;
        if (at + SD_B64URL_LEN((size_t)sl) <= TOK_MAX) {
            size_t m = at + sd_b64url_encode(sig, (size_t)sl, tok + at);
            CHECK(run(tok, m, &rules, NOW, cert, &again) == SD_JWT_SIGNATURE);
            sig[(size_t)sl / 2] ^= 0x04;
            sd_b64url_encode(sig, (size_t)sl, tok + at);
        }
    }
    if (r == SD_JWT_OK) {
        uint8_t other[32];
        struct sd_jwt_rules iss = rules;

        CHECK(run(tok, n, &rules, NOW, cert, &again) == SD_JWT_OK);
        CHECK(strcmp(again.sub, out.sub) == 0 && strcmp(again.kid, out.kid) == 0);
        CHECK(again.exp == out.exp && again.has_x5t && memcmp(again.x5t, out.x5t, 32) == 0);
        CHECK(run(tok, n, &rules, out.exp + (int64_t)rules.leeway_s, cert, &again) ==
              SD_JWT_EXPIRED);
        memcpy(other, cert, sizeof(other));
        other[7] ^= 0x80;
        CHECK(run(tok, n, &rules, NOW, other, &again) == SD_JWT_CNF_MISMATCH);
        CHECK(memcmp(again.x5t, cert, 32) == 0);
        iss.issuer = ISS "x";
        CHECK(run(tok, n, &iss, NOW, cert, &again) == SD_JWT_ISSUER);
    }
    return 0;
}
