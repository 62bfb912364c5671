/*
 * info.c - what a context holds, told in steeldoor's own plain structs
 * (sd/tls.h): its own certificate and the chain it sends, the CA
 * certificates of its store, its CRLs and until when they are fresh; and
 * the OpenSSL version. For /metrics, /readyz and /status (admin_render.c),
 * which must not see an OpenSSL type.
 *
 * Read-only: a context is shared by every connection of its generation,
 * so nothing here changes it. Every time is read with ASN1_TIME_to_tm
 * (sd_tls_time), never by parsing the printed text.
 */
#include "tls_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

/* name as one RFC 2253 line into out[0, cap) (cut to fit). Bytes above
 * 0x7f and control characters are escaped (ASN1_STRFLGS_RFC2253 has
 * ESC_MSB and ESC_CTRL), so the text is plain ASCII: safe in a label, a
 * JSON string and a log line as it is. "" when it cannot be printed. */
static void sd_tls_info_name(const X509_NAME *name, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n = 0;

    out[0] = '\0';
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0)
        n = BIO_read(b, out, (int)cap - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
}

static void sd_tls_info_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Fills ci from x (role and file are the caller's). Returns 0, or -1
 * when the DER cannot be digested (the certificate is then left out). */
static int sd_tls_info_fill(X509 *x, struct sd_tls_cert_info *ci)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    BIGNUM *bn;
    char *hex;

    sd_tls_info_name(X509_get_subject_name(x), ci->subject, sizeof(ci->subject));
    sd_tls_info_name(X509_get_issuer_name(x), ci->issuer, sizeof(ci->issuer));
    /* The serial in upper-case hex, as openssl x509 -serial and nginx's
     * $ssl_client_serial print it; "" if it does not fit (RFC 5280 allows
     * 20 octets: 40 digits and a sign fit). */
    ci->serial[0] = '\0';
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) != NULL) {
        if ((hex = BN_bn2hex(bn)) != NULL) {
            if (strlen(hex) < sizeof(ci->serial))
                memcpy(ci->serial, hex, strlen(hex) + 1);
            OPENSSL_free(hex);
        }
        BN_free(bn);
    }
    if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32)
        return -1;
    sd_tls_info_hex(md, mdlen, ci->sha256);
    ci->not_before = sd_tls_time(X509_get0_notBefore(x));
    ci->not_after = sd_tls_time(X509_get0_notAfter(x));
    return 0;
}

/* One certificate to fn; returns fn's result (0: go on). */
static int sd_tls_info_one(X509 *x, const char *role, const char *file, sd_tls_cert_fn *fn,
                           void *arg)
{
    struct sd_tls_cert_info ci;

    memset(&ci, 0, sizeof(ci));
    ci.role = role;
    ci.file = file;
    if (sd_tls_info_fill(x, &ci) != 0)
        return 0;
    return fn(arg, &ci);
}

int sd_tls_info_certs(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                      sd_tls_cert_fn *fn, void *arg)
{
    STACK_OF(X509_OBJECT) *objs;
    STACK_OF(X509) *chain = NULL;
    X509 *leaf;
    int i, rc = 0;

    if (tls == NULL)
        return 0;
    leaf = SSL_CTX_get0_certificate(tls->ctx);
    if (leaf != NULL)
        rc = sd_tls_info_one(leaf, lc->mode == SD_MODE_CONNECT ? "client" : "server",
                             lc->cert, fn, arg);
    /* The chain our Certificate message carries after the leaf: from the
     * file, or built once from the store (sd_tls_fix_own_chain), which may
     * then end with the root. */
    if (rc == 0 && leaf != NULL && SSL_CTX_get0_chain_certs(tls->ctx, &chain) == 1)
        for (i = 0; rc == 0 && chain != NULL && i < sk_X509_num(chain); i++)
            rc = sd_tls_info_one(sk_X509_value(chain, i), "chain", lc->cert, fn, arg);
    /* The store holds the CA certificates of lc->cacert (and the CRLs,
     * which are not certificates: skipped here, see sd_tls_info_crls). */
    objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(tls->ctx));
    for (i = 0; rc == 0 && i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL)
            rc = sd_tls_info_one(ca, "ca", lc->cacert, fn, arg);
    }
    ERR_clear_error();
    return rc;
}

int sd_tls_info_crls(const struct sd_tls *tls, sd_tls_crl_fn *fn, void *arg)
{
    struct sd_tls_crl_info ci;
    size_t i;
    int rc = 0;

    if (tls == NULL)
        return 0;
    for (i = 0; rc == 0 && i < tls->ncrls; i++) {
        X509_CRL *crl = tls->crls[i].crl;

        memset(&ci, 0, sizeof(ci));
        ci.file = tls->crls[i].path;
        ci.delta = tls->crls[i].delta;
        sd_tls_info_name(X509_CRL_get_issuer(crl), ci.issuer, sizeof(ci.issuer));
        ci.last_update = sd_tls_time(X509_CRL_get0_lastUpdate(crl));
        ci.next_update = sd_tls_time(X509_CRL_get0_nextUpdate(crl)); /* NULL: 0 */
        rc = fn(arg, &ci);
    }
    ERR_clear_error();
    return rc;
}

int64_t sd_tls_info_crl_fresh_until(const struct sd_tls *tls)
{
    return tls != NULL ? tls->crl_fresh_until : 0;
}

const char *sd_tls_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}
