/*
 * format.c - what a certificate, key or CRL file holds, and reading it,
 * PEM or DER (sd/format.h). Everything steeldoor reads from a file goes
 * through here: serve and connect (tls/load.c), the PKI and the auditor,
 * so a file is recognised, refused and explained the same way by each.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "sd/format.h"

/* OpenSSL's default passphrase callback prompts on the terminal: a start,
 * a reload or a check would then hang on /dev/tty (or read a passphrase
 * meant for something else). Every PEM read here gets this one instead,
 * and encrypted keys are told apart and refused before any is read. */
int sd_format_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static const char *const sd_format_noun[] = {
    "a certificate", "a private key", "a CA certificate", "a CRL",
};

/* Offset of needle in data[from, len), or len. */
static size_t sd_format_find(const unsigned char *data, size_t len, size_t from,
                             const char *needle)
{
    size_t n = strlen(needle), i;

    for (i = from; n <= len && i <= len - n; i++)
        if (data[i] == (unsigned char)needle[0] && memcmp(data + i, needle, n) == 0)
            return i;
    return len;
}

static int sd_format_starts(const unsigned char *p, size_t left, const char *s)
{
    size_t n = strlen(s);

    return left >= n && memcmp(p, s, n) == 0;
}

/* The kind of a PEM block from its label (and, for a traditional key,
 * its "Proc-Type: 4,ENCRYPTED" header). */
static unsigned sd_format_pem_kind(const char *label, int proc_encrypted)
{
    size_t n = strlen(label);

    if (strcmp(label, "CERTIFICATE") == 0 || strcmp(label, "X509 CERTIFICATE") == 0)
        return SD_FORMAT_CERT;
    if (strcmp(label, "TRUSTED CERTIFICATE") == 0)
        return SD_FORMAT_TRUSTED;
    if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0)
        return SD_FORMAT_KEY_ENC;
    if (n >= 11 && strcmp(label + n - 11, "PRIVATE KEY") == 0)
        return proc_encrypted ? SD_FORMAT_KEY_ENC : SD_FORMAT_KEY;
    if (strcmp(label, "X509 CRL") == 0)
        return SD_FORMAT_CRL;
    if (strcmp(label, "PKCS12") == 0)
        return SD_FORMAT_P12;
    if (strcmp(label, "PKCS7") == 0 || strcmp(label, "PKCS #7 SIGNED DATA") == 0 ||
        strcmp(label, "CMS") == 0)
        return SD_FORMAT_P7;
    if (strcmp(label, "CERTIFICATE REQUEST") == 0 ||
        strcmp(label, "NEW CERTIFICATE REQUEST") == 0)
        return SD_FORMAT_CSR;
    if (n >= 10 && strcmp(label + n - 10, "PUBLIC KEY") == 0)
        return SD_FORMAT_PUBKEY;
    if (n >= 10 && strcmp(label + n - 10, "PARAMETERS") == 0)
        return 0; /* "EC PARAMETERS" ahead of an EC key (openssl ecparam -genkey) */
    return SD_FORMAT_OTHER;
}

/* The kind of the first DER object of data: the decoders are tried from
 * the strictest structure to the loosest (private keys last). */
static unsigned sd_format_der_kind(const unsigned char *data, size_t len)
{
    const unsigned char *p;
    unsigned kind = SD_FORMAT_OTHER;
    long l = (long)len;
    void *o;

#define SD_FORMAT_TRY(d2i, freefn, k)                                                        \
    if (kind == SD_FORMAT_OTHER) {                                                     \
        p = data;                                                                         \
        if ((o = d2i(NULL, &p, l)) != NULL) {                                             \
            freefn(o);                                                                    \
            kind = (k);                                                                   \
        }                                                                                 \
    }
    SD_FORMAT_TRY(d2i_X509, X509_free, SD_FORMAT_CERT)
    SD_FORMAT_TRY(d2i_X509_CRL, X509_CRL_free, SD_FORMAT_CRL)
    SD_FORMAT_TRY(d2i_PKCS12, PKCS12_free, SD_FORMAT_P12)
    SD_FORMAT_TRY(d2i_X509_SIG, X509_SIG_free, SD_FORMAT_KEY_ENC) /* EncryptedPrivateKeyInfo */
    SD_FORMAT_TRY(d2i_PKCS7, PKCS7_free, SD_FORMAT_P7)
    SD_FORMAT_TRY(d2i_X509_REQ, X509_REQ_free, SD_FORMAT_CSR)
    SD_FORMAT_TRY(d2i_PUBKEY, EVP_PKEY_free, SD_FORMAT_PUBKEY)
    /* PKCS#8 PrivateKeyInfo, or a traditional RSA, EC or DSA key. */
    SD_FORMAT_TRY(d2i_AutoPrivateKey, EVP_PKEY_free, SD_FORMAT_KEY)
#undef SD_FORMAT_TRY
    ERR_clear_error();
    return kind;
}

/* 1 if data reads as text: UTF-8 with no control byte but tab, CR, LF. */
static int sd_format_is_text(const unsigned char *d, size_t len)
{
    size_t i = 0, more;

    while (i < len) {
        unsigned char c = d[i++];
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
            return 0;
        if (c < 0x80)
            more = 0;
        else if (c >= 0xc2 && c < 0xe0)
            more = 1;
        else if (c >= 0xe0 && c < 0xf0)
            more = 2;
        else if (c >= 0xf0 && c < 0xf5)
            more = 3;
        else
            return 0;
        for (; more > 0; more--, i++)
            if (i >= len || (d[i] & 0xc0) != 0x80)
                return 0;
    }
    return 1;
}

void sd_format_sniff(const void *data, size_t len, struct sd_format *h)
{
    const unsigned char *d = data;
    size_t i, at;

    memset(h, 0, sizeof(*h));
    i = 0;
    while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
        i++;
    if (i == len) {
        h->enc = SD_FORMAT_EMPTY;
        return;
    }
    for (at = sd_format_find(d, len, 0, "-----BEGIN "); at < len;
         at = sd_format_find(d, len, at, "-----BEGIN ")) {
        char label[sizeof(h->label)];
        size_t n = 0, end, eol;
        unsigned kind;

        h->enc = SD_FORMAT_PEM;
        at += 11;
        end = sd_format_find(d, len, at, "-----");
        if (end == len)
            break;
        for (i = at; i < end && n + 1 < sizeof(label); i++)
            label[n++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
        label[n] = '\0';
        /* The line after BEGIN: RFC 1421 headers of a traditional key. */
        at = end + 5;
        while (at < len && (d[at] == '\r' || d[at] == '\n'))
            at++;
        eol = sd_format_find(d, len, at, "\n");
        kind = sd_format_pem_kind(label, sd_format_starts(d + at, len - at, "Proc-Type:") &&
                                          sd_format_find(d, eol, at, "ENCRYPTED") < eol);
        if (kind == SD_FORMAT_OTHER && h->label[0] == '\0')
            memcpy(h->label, label, n + 1);
        h->kinds |= kind;
    }
    if (h->enc == SD_FORMAT_PEM)
        return;
    /* DER: an ASN.1 SEQUENCE (everything read here is one) whose encoded
     * length fits in the file. */
    {
        const unsigned char *p = d;
        long olen = 0;
        int tag = 0, cls = 0, r = ASN1_get_object(&p, &olen, &tag, &cls, (long)len);
        ERR_clear_error();
        if (!(r & 0x80) && tag == V_ASN1_SEQUENCE && cls == V_ASN1_UNIVERSAL &&
            (r & V_ASN1_CONSTRUCTED)) {
            h->enc = SD_FORMAT_DER;
            h->kinds = sd_format_der_kind(d, len);
            return;
        }
    }
    h->enc = sd_format_is_text(d, len) ? SD_FORMAT_TEXT : SD_FORMAT_BINARY;
}

/* out[size] = path with "-plain" before its extension (key.pem ->
 * key-plain.pem): where the fix for an encrypted key writes. */
static void sd_format_plain_name(char *out, size_t size, const char *path)
{
    const char *base = strrchr(path, '/'), *dot;

    base = base != NULL ? base + 1 : path;
    dot = strrchr(base, '.');
    if (dot == NULL || dot == base)
        snprintf(out, size, "%s-plain.pem", path);
    else /* what openssl pkey writes is PEM: a .der name would mislead */
        snprintf(out, size, "%.*s-plain%s", (int)(dot - path), path,
                 strcasecmp(dot, ".der") == 0 ? ".pem" : dot);
}

/* snprintf for messages: a long path cuts the message, never overflows. */
static void sd_format_say(char *buf, size_t size, const char *fmt, ...) SD_PRINTF(3, 4);
static void sd_format_say(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* Why path is not what want asked for, from what it holds: a sentence
 * after the path ("is empty: ...", "holds a private key, not ..."), with
 * the fix when there is one. */
void sd_format_why(char *buf, size_t size, const char *path, const struct sd_format *h,
                   enum sd_format_want want, const char *swap)
{
    const char *noun = sd_format_noun[want];
    char swapped[160] = "";
    char plain[4096];

    if (swap != NULL)
        snprintf(swapped, sizeof(swapped), "are %s swapped?", swap);

    switch (h->enc) {
    case SD_FORMAT_EMPTY:
        sd_format_say(buf, size, "is empty: expected %s (PEM or DER)", noun);
        return;
    case SD_FORMAT_TEXT:
        sd_format_say(buf, size, "is neither PEM nor DER (it is text): expected %s", noun);
        return;
    case SD_FORMAT_BINARY:
        sd_format_say(buf, size, "is neither PEM nor DER: expected %s", noun);
        return;
    case SD_FORMAT_PEM:
    case SD_FORMAT_DER:
        break;
    }
    if (h->kinds & SD_FORMAT_P12) {
        if (want == SD_FORMAT_WANT_CERT || want == SD_FORMAT_WANT_KEY)
            sd_format_say(buf, size, "holds a PKCS#12 bundle (.p12/.pfx), which steeldoor does "
                          "not read: take the certificates out with `openssl pkcs12 -in %s "
                          "-nokeys -out cert.pem` and the key with `(umask 077; openssl pkcs12 "
                          "-in %s -nocerts -nodes -out key.pem)`", path, path);
        else
            sd_format_say(buf, size, "holds a PKCS#12 bundle (.p12/.pfx), not %s: take its "
                          "CA certificates out with `openssl pkcs12 -in %s -cacerts -nokeys "
                          "-out ca.pem`", noun, path);
    } else if (h->kinds & SD_FORMAT_KEY_ENC) {
        sd_format_plain_name(plain, sizeof(plain), path);
        if (want == SD_FORMAT_WANT_KEY)
            sd_format_say(buf, size, "holds an encrypted private key, and steeldoor never asks "
                          "for a passphrase: decrypt it once with `(umask 077; openssl pkey -in "
                          "%s -out %s)` and give that file as the key (mode 0600)", path, plain);
        else
            sd_format_say(buf, size, "holds an encrypted private key, not %s%s%s", noun,
                          want == SD_FORMAT_WANT_CERT && swap != NULL ? ": " : "",
                          want == SD_FORMAT_WANT_CERT ? swapped : "");
    } else if (h->kinds & SD_FORMAT_KEY) {
        sd_format_say(buf, size, "holds a private key, not %s%s%s", noun,
                      want == SD_FORMAT_WANT_CERT && swap != NULL ? ": " : "",
                      want == SD_FORMAT_WANT_CERT ? swapped : "");
    } else if (h->kinds & (SD_FORMAT_CERT | SD_FORMAT_TRUSTED) &&
               want == SD_FORMAT_WANT_KEY) {
        sd_format_say(buf, size, "holds a certificate, not a private key%s%s",
                      swap != NULL ? ": " : "", swapped);
    } else if (h->kinds & SD_FORMAT_TRUSTED) {
        sd_format_say(buf, size, "holds an OpenSSL TRUSTED CERTIFICATE, not a plain certificate: "
                      "convert it with `openssl x509 -in %s -out ca.pem`", path);
    } else if (h->kinds & SD_FORMAT_CERT) {
        sd_format_say(buf, size, "holds a certificate, not %s", noun);
    } else if (h->kinds & SD_FORMAT_CRL) {
        sd_format_say(buf, size, "holds a CRL, not %s", noun);
    } else if (h->kinds & SD_FORMAT_P7) {
        sd_format_say(buf, size, "holds a PKCS#7 bundle (.p7b), not %s: take its certificates "
                      "out with `openssl pkcs7 -print_certs -in %s -out certs.pem`", noun, path);
    } else if (h->kinds & SD_FORMAT_CSR) {
        sd_format_say(buf, size, "holds a certificate signing request, not %s: have it signed "
                      "(steeldoor pki issue, or your CA) and give the certificate", noun);
    } else if (h->kinds & SD_FORMAT_PUBKEY) {
        sd_format_say(buf, size, "holds a public key, not %s", noun);
    } else if (h->enc == SD_FORMAT_PEM && h->label[0] != '\0') {
        sd_format_say(buf, size, "holds PEM data of type \"%s\", not %s", h->label, noun);
    } else {
        sd_format_say(buf, size, "holds %s data of no kind steeldoor reads: expected %s",
                      h->enc == SD_FORMAT_PEM ? "PEM" : "DER", noun);
    }
}

int sd_format_not(struct sd_err *err, const char *path, const struct sd_format *f,
                  enum sd_format_want want, const char *swap)
{
    char why[SD_ERR_MAX];

    ERR_clear_error();
    sd_format_why(why, sizeof(why), path, f, want, swap);
    return sd_err_set(err, "%s %s", path, why);
}

/* 1 when OpenSSL's last error is PEM's "no start line": the end of the
 * blocks of the wanted kind, not a broken one. Clears it then. */
static int sd_format_pem_done(void)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        ERR_clear_error();
        return 1;
    }
    return 0;
}

int sd_format_certs(const void *data, size_t len, const char *path, enum sd_format_want want,
                    sd_format_cert_fn fn, void *arg, struct sd_err *err)
{
    struct sd_format h;
    int index = 0;

    sd_format_sniff(data, len, &h);
    if (h.enc == SD_FORMAT_DER && (h.kinds & SD_FORMAT_CERT)) {
        const unsigned char *p = data, *end = p + len;

        while (p < end) {
            size_t at = (size_t)(p - (const unsigned char *)data);
            X509 *x = d2i_X509(NULL, &p, (long)(end - p));
            if (x == NULL)
                return sd_err_openssl(err, "%s: DER certificate %d (at byte %zu) cannot be "
                                      "parsed", path, index + 1, at);
            if (fn(x, ++index, arg, err) != 0)
                return -1;
        }
        return index;
    }
    if (h.enc == SD_FORMAT_PEM &&
        ((h.kinds & SD_FORMAT_CERT) ||
         (want == SD_FORMAT_WANT_CERT && (h.kinds & SD_FORMAT_TRUSTED)))) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        X509 *x;

        if (bio == NULL)
            return sd_err_set(err, "out of memory");
        for (;;) {
            /* Our own certificate may carry OpenSSL's trust settings;
             * a CA bundle's trust is the bundle, plain certificates. */
            x = index == 0 && want == SD_FORMAT_WANT_CERT
                    ? PEM_read_bio_X509_AUX(bio, NULL, sd_format_no_passphrase, NULL)
                    : PEM_read_bio_X509(bio, NULL, sd_format_no_passphrase, NULL);
            if (x == NULL)
                break;
            if (fn(x, ++index, arg, err) != 0) {
                BIO_free(bio);
                return -1;
            }
        }
        BIO_free(bio);
        if (!sd_format_pem_done())
            return sd_err_openssl(err, "%s: certificate %d of the file cannot be parsed",
                                  path, index + 1);
        return index;
    }
    return 0;
}

int sd_format_certs_required(const void *data, size_t len, const char *path,
                             enum sd_format_want want, const char *swap, sd_format_cert_fn fn,
                             void *arg, struct sd_err *err)
{
    struct sd_format h;
    int n = sd_format_certs(data, len, path, want, fn, arg, err);

    if (n != 0)
        return n;
    sd_format_sniff(data, len, &h);
    return sd_format_not(err, path, &h, want, swap);
}

EVP_PKEY *sd_format_key(const void *data, size_t len, const char *path, const char *swap,
                        struct sd_err *err)
{
    struct sd_format h;
    EVP_PKEY *key = NULL;

    sd_format_sniff(data, len, &h);
    if ((h.enc != SD_FORMAT_PEM && h.enc != SD_FORMAT_DER) || !(h.kinds & SD_FORMAT_KEY) ||
        (h.kinds & SD_FORMAT_KEY_ENC)) {
        sd_format_not(err, path, &h, SD_FORMAT_WANT_KEY, swap);
        return NULL;
    }
    if (h.enc == SD_FORMAT_PEM) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        if (bio == NULL) {
            sd_err_set(err, "out of memory");
            return NULL;
        }
        key = PEM_read_bio_PrivateKey(bio, NULL, sd_format_no_passphrase, NULL);
        BIO_free(bio);
    } else {
        const unsigned char *p = data;
        key = d2i_AutoPrivateKey(NULL, &p, (long)len);
        if (key != NULL && p != (const unsigned char *)data + len) {
            EVP_PKEY_free(key);
            ERR_clear_error();
            sd_err_set(err, "%s: bytes after the DER private key", path);
            return NULL;
        }
    }
    if (key == NULL)
        sd_err_openssl(err, "%s: the private key cannot be parsed", path);
    return key;
}

int sd_format_crls(const void *data, size_t len, const char *path, sd_format_crl_fn fn,
                   void *arg, struct sd_err *err)
{
    struct sd_format h;
    X509_CRL *crl;
    BIO *bio;
    int index = 0;

    sd_format_sniff(data, len, &h);
    if (!(h.kinds & SD_FORMAT_CRL) || (h.enc != SD_FORMAT_PEM && h.enc != SD_FORMAT_DER))
        return sd_format_not(err, path, &h, SD_FORMAT_WANT_CRL, NULL);
    if (h.enc == SD_FORMAT_DER) {
        const unsigned char *p = data;
        crl = d2i_X509_CRL(NULL, &p, (long)len);
        if (crl == NULL)
            return sd_err_openssl(err, "%s: the DER CRL cannot be parsed", path);
        if (p != (const unsigned char *)data + len) {
            X509_CRL_free(crl);
            return sd_err_set(err, "%s: bytes after the DER CRL", path);
        }
        return fn(crl, 1, arg, err) != 0 ? -1 : 1;
    }
    bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL)
        return sd_err_set(err, "out of memory");
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, sd_format_no_passphrase, NULL)) != NULL) {
        if (fn(crl, ++index, arg, err) != 0) {
            BIO_free(bio);
            return -1;
        }
    }
    BIO_free(bio);
    if (!sd_format_pem_done())
        return sd_err_openssl(err, "%s: CRL number %d of the file is not a valid PEM CRL",
                              path, index + 1);
    if (index == 0) /* a BEGIN line OpenSSL does not take as one (not at a line start) */
        return sd_err_set(err, "%s: no PEM CRL could be read from it", path);
    return index;
}
