/*
 * load.c - what a context is built from, read through the file snapshot
 * (sd/files.h): its own certificate chain and key, the CA bundle or
 * directory, the CRLs and their freshness; and the certificate expiry
 * warnings. Every file is checked here and a failure names it. Each may be
 * PEM or DER, told apart by content; a file that holds something else (a
 * PKCS#12 bundle, an encrypted key, the other file of the pair, nothing)
 * is named with what it holds and the fix, and nothing ever prompts.
 */
#include "tls_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "sd/files.h"
#include "sd/log.h"

/* Unix seconds of an ASN.1 time; 0 when it cannot be read. */
int64_t sd_tls_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* Fetches path from the snapshot as a regular file, as a memory BIO. */
static BIO *sd_tls_file_bio(struct sd_files *files, const char *path, const char *what,
                            const struct sd_file **fout, struct sd_err *err)
{
    const struct sd_file *f;
    BIO *bio;

    if (sd_files_get(files, path, &f, err) != 0)
        return NULL;
    if (f->kind != SD_FILE_REG) {
        sd_err_set(err, "%s: cannot read %s: not a regular file", path, what);
        return NULL;
    }
    bio = BIO_new_mem_buf(f->data, (int)f->len);
    if (bio == NULL)
        sd_err_set(err, "out of memory");
    if (fout != NULL)
        *fout = f;
    return bio;
}

/* ------------------------------------------------------------ formats */

/* OpenSSL's default passphrase callback prompts on the terminal: a start,
 * a reload or a check would then hang on /dev/tty (or read a passphrase
 * meant for something else). Every PEM read here gets this one instead,
 * and encrypted keys are told apart and refused before any is read. */
static int sd_tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* What a file holds, told from its bytes and never from its name: PEM
 * (every block's label counts), DER (the first decoder that takes the
 * first object), or neither. The loaders read what they were asked for
 * from it, and name what is there instead when it is something else. */
#define SD_TLS_HOLDS_CERT    0x001u /* CERTIFICATE, X509 CERTIFICATE */
#define SD_TLS_HOLDS_TRUSTED 0x002u /* OpenSSL's TRUSTED CERTIFICATE */
#define SD_TLS_HOLDS_KEY     0x004u /* an unencrypted private key */
#define SD_TLS_HOLDS_KEY_ENC 0x008u /* an encrypted private key */
#define SD_TLS_HOLDS_CRL     0x010u
#define SD_TLS_HOLDS_P12     0x020u /* PKCS#12 (.p12, .pfx) */
#define SD_TLS_HOLDS_P7      0x040u /* PKCS#7 (.p7b, .p7c) */
#define SD_TLS_HOLDS_CSR     0x080u
#define SD_TLS_HOLDS_PUBKEY  0x100u
#define SD_TLS_HOLDS_OTHER   0x200u /* PEM of another label, DER of no known kind */

enum sd_tls_fmt { SD_TLS_EMPTY, SD_TLS_PEM, SD_TLS_DER, SD_TLS_TEXT, SD_TLS_BINARY };

struct sd_tls_holds {
    enum sd_tls_fmt fmt;
    unsigned kinds;  /* SD_TLS_HOLDS_* */
    char label[48];  /* PEM: the first label of no known kind */
};

/* What the loader was asked to read; the noun goes into messages. */
enum sd_tls_want { SD_TLS_WANT_CERT, SD_TLS_WANT_KEY, SD_TLS_WANT_CA, SD_TLS_WANT_CRL };
static const char *const sd_tls_want_noun[] = {
    "a certificate", "a private key", "a CA certificate", "a CRL",
};

/* Offset of needle in data[from, len), or len. */
static size_t sd_tls_find(const unsigned char *data, size_t len, size_t from,
                          const char *needle)
{
    size_t n = strlen(needle), i;

    for (i = from; n <= len && i <= len - n; i++)
        if (data[i] == (unsigned char)needle[0] && memcmp(data + i, needle, n) == 0)
            return i;
    return len;
}

static int sd_tls_starts(const unsigned char *p, size_t left, const char *s)
{
    size_t n = strlen(s);

    return left >= n && memcmp(p, s, n) == 0;
}

/* The kind of a PEM block from its label (and, for a traditional key,
 * its "Proc-Type: 4,ENCRYPTED" header). */
static unsigned sd_tls_pem_kind(const char *label, int proc_encrypted)
{
    size_t n = strlen(label);

    if (strcmp(label, "CERTIFICATE") == 0 || strcmp(label, "X509 CERTIFICATE") == 0)
        return SD_TLS_HOLDS_CERT;
    if (strcmp(label, "TRUSTED CERTIFICATE") == 0)
        return SD_TLS_HOLDS_TRUSTED;
    if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0)
        return SD_TLS_HOLDS_KEY_ENC;
    if (n >= 11 && strcmp(label + n - 11, "PRIVATE KEY") == 0)
        return proc_encrypted ? SD_TLS_HOLDS_KEY_ENC : SD_TLS_HOLDS_KEY;
    if (strcmp(label, "X509 CRL") == 0)
        return SD_TLS_HOLDS_CRL;
    if (strcmp(label, "PKCS12") == 0)
        return SD_TLS_HOLDS_P12;
    if (strcmp(label, "PKCS7") == 0 || strcmp(label, "PKCS #7 SIGNED DATA") == 0 ||
        strcmp(label, "CMS") == 0)
        return SD_TLS_HOLDS_P7;
    if (strcmp(label, "CERTIFICATE REQUEST") == 0 ||
        strcmp(label, "NEW CERTIFICATE REQUEST") == 0)
        return SD_TLS_HOLDS_CSR;
    if (n >= 10 && strcmp(label + n - 10, "PUBLIC KEY") == 0)
        return SD_TLS_HOLDS_PUBKEY;
    if (n >= 10 && strcmp(label + n - 10, "PARAMETERS") == 0)
        return 0; /* "EC PARAMETERS" ahead of an EC key (openssl ecparam -genkey) */
    return SD_TLS_HOLDS_OTHER;
}

/* The kind of the first DER object of data: the decoders are tried from
 * the strictest structure to the loosest (private keys last). */
static unsigned sd_tls_der_kind(const unsigned char *data, size_t len)
{
    const unsigned char *p;
    unsigned kind = SD_TLS_HOLDS_OTHER;
    long l = (long)len;
    void *o;

#define SD_TLS_TRY(d2i, freefn, k)                                                        \
    if (kind == SD_TLS_HOLDS_OTHER) {                                                     \
        p = data;                                                                         \
        if ((o = d2i(NULL, &p, l)) != NULL) {                                             \
            freefn(o);                                                                    \
            kind = (k);                                                                   \
        }                                                                                 \
    }
    SD_TLS_TRY(d2i_X509, X509_free, SD_TLS_HOLDS_CERT)
    SD_TLS_TRY(d2i_X509_CRL, X509_CRL_free, SD_TLS_HOLDS_CRL)
    SD_TLS_TRY(d2i_PKCS12, PKCS12_free, SD_TLS_HOLDS_P12)
    SD_TLS_TRY(d2i_X509_SIG, X509_SIG_free, SD_TLS_HOLDS_KEY_ENC) /* EncryptedPrivateKeyInfo */
    SD_TLS_TRY(d2i_PKCS7, PKCS7_free, SD_TLS_HOLDS_P7)
    SD_TLS_TRY(d2i_X509_REQ, X509_REQ_free, SD_TLS_HOLDS_CSR)
    SD_TLS_TRY(d2i_PUBKEY, EVP_PKEY_free, SD_TLS_HOLDS_PUBKEY)
    /* PKCS#8 PrivateKeyInfo, or a traditional RSA, EC or DSA key. */
    SD_TLS_TRY(d2i_AutoPrivateKey, EVP_PKEY_free, SD_TLS_HOLDS_KEY)
#undef SD_TLS_TRY
    ERR_clear_error();
    return kind;
}

/* 1 if data reads as text: UTF-8 with no control byte but tab, CR, LF. */
static int sd_tls_is_text(const unsigned char *d, size_t len)
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

static void sd_tls_holds(const struct sd_file *f, struct sd_tls_holds *h)
{
    const unsigned char *d = f->data;
    size_t len = f->len, i, at;

    memset(h, 0, sizeof(*h));
    i = 0;
    while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
        i++;
    if (i == len) {
        h->fmt = SD_TLS_EMPTY;
        return;
    }
    for (at = sd_tls_find(d, len, 0, "-----BEGIN "); at < len;
         at = sd_tls_find(d, len, at, "-----BEGIN ")) {
        char label[sizeof(h->label)];
        size_t n = 0, end, eol;
        unsigned kind;

        h->fmt = SD_TLS_PEM;
        at += 11;
        end = sd_tls_find(d, len, at, "-----");
        if (end == len)
            break;
        for (i = at; i < end && n + 1 < sizeof(label); i++)
            label[n++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
        label[n] = '\0';
        /* The line after BEGIN: RFC 1421 headers of a traditional key. */
        at = end + 5;
        while (at < len && (d[at] == '\r' || d[at] == '\n'))
            at++;
        eol = sd_tls_find(d, len, at, "\n");
        kind = sd_tls_pem_kind(label, sd_tls_starts(d + at, len - at, "Proc-Type:") &&
                                          sd_tls_find(d, eol, at, "ENCRYPTED") < eol);
        if (kind == SD_TLS_HOLDS_OTHER && h->label[0] == '\0')
            memcpy(h->label, label, n + 1);
        h->kinds |= kind;
    }
    if (h->fmt == SD_TLS_PEM)
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
            h->fmt = SD_TLS_DER;
            h->kinds = sd_tls_der_kind(d, len);
            return;
        }
    }
    h->fmt = sd_tls_is_text(d, len) ? SD_TLS_TEXT : SD_TLS_BINARY;
}

/* out[size] = path with "-plain" before its extension (key.pem ->
 * key-plain.pem): where the fix for an encrypted key writes. */
static void sd_tls_plain_name(char *out, size_t size, const char *path)
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
static void sd_tls_say(char *buf, size_t size, const char *fmt, ...) SD_PRINTF(3, 4);
static void sd_tls_say(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* Why path is not what want asked for, from what it holds: a sentence
 * after the path ("is empty: ...", "holds a private key, not ..."), with
 * the fix when there is one. */
static void sd_tls_mistake(char *buf, size_t size, const char *path,
                           const struct sd_tls_holds *h, enum sd_tls_want want)
{
    const char *noun = sd_tls_want_noun[want];
    static const char swapped[] = "are --cert and --key swapped?";
    char plain[4096];

    switch (h->fmt) {
    case SD_TLS_EMPTY:
        sd_tls_say(buf, size, "is empty: expected %s (PEM or DER)", noun);
        return;
    case SD_TLS_TEXT:
        sd_tls_say(buf, size, "is neither PEM nor DER (it is text): expected %s", noun);
        return;
    case SD_TLS_BINARY:
        sd_tls_say(buf, size, "is neither PEM nor DER: expected %s", noun);
        return;
    case SD_TLS_PEM:
    case SD_TLS_DER:
        break;
    }
    if (h->kinds & SD_TLS_HOLDS_P12) {
        if (want == SD_TLS_WANT_CERT || want == SD_TLS_WANT_KEY)
            sd_tls_say(buf, size, "holds a PKCS#12 bundle (.p12/.pfx), which steeldoor does "
                       "not read: take the certificates out with `openssl pkcs12 -in %s "
                       "-nokeys -out cert.pem` and the key with `(umask 077; openssl pkcs12 "
                       "-in %s -nocerts -nodes -out key.pem)`", path, path);
        else
            sd_tls_say(buf, size, "holds a PKCS#12 bundle (.p12/.pfx), not %s: take its "
                       "certificates out with `openssl pkcs12 -in %s -nokeys -out ca.pem`",
                       noun, path);
    } else if (h->kinds & SD_TLS_HOLDS_KEY_ENC) {
        sd_tls_plain_name(plain, sizeof(plain), path);
        if (want == SD_TLS_WANT_KEY)
            sd_tls_say(buf, size, "holds an encrypted private key, and steeldoor never asks "
                       "for a passphrase: decrypt it once with `(umask 077; openssl pkey -in "
                       "%s -out %s)` and give that file as the key (mode 0600)", path, plain);
        else
            sd_tls_say(buf, size, "holds an encrypted private key, not %s%s%s", noun,
                       want == SD_TLS_WANT_CERT ? ": " : "",
                       want == SD_TLS_WANT_CERT ? swapped : "");
    } else if (h->kinds & SD_TLS_HOLDS_KEY) {
        sd_tls_say(buf, size, "holds a private key, not %s%s%s", noun,
                   want == SD_TLS_WANT_CERT ? ": " : "", want == SD_TLS_WANT_CERT ? swapped : "");
    } else if (h->kinds & (SD_TLS_HOLDS_CERT | SD_TLS_HOLDS_TRUSTED) &&
               want == SD_TLS_WANT_KEY) {
        sd_tls_say(buf, size, "holds a certificate, not a private key: %s", swapped);
    } else if (h->kinds & SD_TLS_HOLDS_TRUSTED) {
        sd_tls_say(buf, size, "holds an OpenSSL TRUSTED CERTIFICATE, not a plain certificate: "
                   "convert it with `openssl x509 -in %s -out ca.pem`", path);
    } else if (h->kinds & SD_TLS_HOLDS_CERT) {
        sd_tls_say(buf, size, "holds a certificate, not %s", noun);
    } else if (h->kinds & SD_TLS_HOLDS_CRL) {
        sd_tls_say(buf, size, "holds a CRL, not %s: give CRL files with --crl", noun);
    } else if (h->kinds & SD_TLS_HOLDS_P7) {
        sd_tls_say(buf, size, "holds a PKCS#7 bundle (.p7b), not %s: take its certificates "
                   "out with `openssl pkcs7 -print_certs -in %s -out certs.pem`", noun, path);
    } else if (h->kinds & SD_TLS_HOLDS_CSR) {
        sd_tls_say(buf, size, "holds a certificate signing request, not %s: have it signed "
                   "(steeldoor pki issue, or your CA) and give the certificate", noun);
    } else if (h->kinds & SD_TLS_HOLDS_PUBKEY) {
        sd_tls_say(buf, size, "holds a public key, not %s", noun);
    } else if (h->fmt == SD_TLS_PEM && h->label[0] != '\0') {
        sd_tls_say(buf, size, "holds PEM data of type \"%s\", not %s", h->label, noun);
    } else {
        sd_tls_say(buf, size, "holds %s data of no kind steeldoor reads: expected %s",
                   h->fmt == SD_TLS_PEM ? "PEM" : "DER", noun);
    }
}

/* err = "PATH <why>" (see sd_tls_mistake); returns -1. */
static int sd_tls_not_a(struct sd_err *err, const char *path, const struct sd_tls_holds *h,
                        enum sd_tls_want want)
{
    char why[SD_ERR_MAX];

    ERR_clear_error();
    sd_tls_mistake(why, sizeof(why), path, h, want);
    return sd_err_set(err, "%s %s", path, why);
}

/* The certificates of a DER file, one or more back to back, each handed to
 * fn (which takes it, success or not). Anything that is not a certificate,
 * from the first byte to the last, is an error naming the file. */
static int sd_tls_der_certs(const struct sd_file *f, const char *path,
                            int (*fn)(X509 *x, int index, void *arg, struct sd_err *err),
                            void *arg, struct sd_err *err)
{
    const unsigned char *p = f->data, *end = f->data + f->len;
    int index = 0;

    while (p < end) {
        size_t at = (size_t)(p - f->data);
        X509 *x = d2i_X509(NULL, &p, (long)(end - p));
        if (x == NULL)
            return sd_err_openssl(err, "%s: DER certificate %d (at byte %zu) cannot be "
                                  "parsed", path, index + 1, at);
        if (fn(x, ++index, arg, err) != 0)
            return -1;
    }
    return 0;
}

/* role ("server", "client") names whose certificate it is in the message. */
static int sd_tls_check_validity(X509 *x, const char *path, const char *role,
                                 struct sd_err *err)
{
    char when[64] = "?";
    BIO *b;

    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        b = BIO_new(BIO_s_mem());
        if (b != NULL) {
            int n;
            ASN1_TIME_print(b, X509_get0_notAfter(x));
            n = BIO_read(b, when, sizeof(when) - 1);
            when[n > 0 ? n : 0] = '\0';
            BIO_free(b);
        }
        return sd_err_set(err, "%s: %s certificate expired (notAfter %s)", path, role, when);
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        return sd_err_set(err, "%s: %s certificate is not valid yet", path, role);
    return 0;
}

/* One CA certificate of a bundle (sd_tls_load_ca_file). */
struct sd_tls_ca_load {
    SSL_CTX *ctx;
    const char *path;
    EVP_MD_CTX *sid;
    int client_cas;
    int count;
};

/* Adds CA certificate number index of the bundle; takes x. Every
 * certificate of a bundle must be a CA certificate (a leaf in a trust
 * bundle would silently become a trust anchor). Feeds the session id
 * context digest with it, so that sessions are bound to this trust. */
static int sd_tls_add_ca(X509 *x, int index, void *arg, struct sd_err *err)
{
    struct sd_tls_ca_load *a = arg;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;

    if (X509_check_ca(x) != 1) {
        char subj[256];
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
        sd_err_set(err, "%s: certificate %d (%s) is not a CA certificate "
                   "(basicConstraints CA:TRUE missing)", a->path, index, subj);
        goto out;
    }
    if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(a->ctx), x) ||
        (a->client_cas && !SSL_CTX_add_client_CA(a->ctx, x)) ||
        !X509_digest(x, EVP_sha256(), md, &mdlen) || !EVP_DigestUpdate(a->sid, md, mdlen)) {
        sd_err_openssl(err, "%s: cannot add CA certificate %d", a->path, index);
        goto out;
    }
    a->count++;
    rc = 0;
out:
    X509_free(x);
    return rc;
}

/* Loads a CA bundle: PEM (every CERTIFICATE block), or DER (one or more
 * certificates back to back); there must be at least one. In a --cacert
 * directory (in_dir), a file with no certificate (a README, a key, a CRL,
 * a bundle emptied to remove a CA) is skipped with a cacert_skipped
 * warning naming it and what it holds: never a blocked start, or a
 * blocked reload that removes trust; *skipped counts them. */
static int sd_tls_load_ca_file(SSL_CTX *ctx, struct sd_files *files, const char *path,
                               EVP_MD_CTX *sid, int client_cas, int in_dir, int *total,
                               int *skipped, struct sd_err *err)
{
    struct sd_tls_ca_load a = {ctx, path, sid, client_cas, 0};
    const struct sd_file *f = NULL;
    struct sd_tls_holds h;
    BIO *bio = NULL;
    X509 *x = NULL;
    int rc = -1;

    bio = sd_tls_file_bio(files, path, "CA bundle", &f, err);
    if (bio == NULL)
        return -1;
    sd_tls_holds(f, &h);
    if (h.fmt == SD_TLS_PEM && (h.kinds & SD_TLS_HOLDS_CERT)) {
        for (;;) {
            x = PEM_read_bio_X509(bio, NULL, sd_tls_no_passphrase, NULL);
            if (x == NULL) {
                unsigned long e = ERR_peek_last_error();
                if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                    ERR_clear_error();
                    break;
                }
                sd_err_openssl(err, "%s: certificate %d of the CA bundle cannot be parsed",
                               path, a.count + 1);
                goto out;
            }
            if (sd_tls_add_ca(x, a.count + 1, &a, err) != 0) {
                x = NULL;
                goto out;
            }
            x = NULL;
        }
    } else if (h.fmt == SD_TLS_DER && (h.kinds & SD_TLS_HOLDS_CERT)) {
        if (sd_tls_der_certs(f, path, sd_tls_add_ca, &a, err) != 0)
            goto out;
    }
    if (a.count == 0 && in_dir) {
        char why[SD_ERR_MAX];
        char msg[SD_ERR_MAX + 4200];
        struct sd_logline l;

        ERR_clear_error();
        (*skipped)++;
        rc = 0;
        if (sd_files_frozen(files))
            goto out; /* the master warned */
        sd_tls_mistake(why, sizeof(why), path, &h, SD_TLS_WANT_CA);
        snprintf(msg, sizeof(msg), "%s %s; skipped: a --cacert directory is read for its "
                 "CA certificate files only", path, why);
        sd_log_begin(&l, "warn", "cacert_skipped");
        sd_log_str(&l, "file", path);
        sd_log_str(&l, "why", why);
        sd_log_str(&l, "msg", msg);
        sd_log_end(&l);
        goto out;
    }
    if (a.count == 0) {
        sd_tls_not_a(err, path, &h, SD_TLS_WANT_CA);
        goto out;
    }
    *total += a.count;
    rc = 0;
out:
    X509_free(x);
    BIO_free(bio);
    return rc;
}

/* --cacert: a file, or a directory whose every regular, non-hidden file is
 * a CA bundle (read in name order, so the result does not depend on the
 * directory's internal order). */
int sd_tls_load_cas(SSL_CTX *ctx, struct sd_files *files, const char *path,
                    EVP_MD_CTX *sid, int client_cas, struct sd_err *err)
{
    const struct sd_file *dir, *f;
    size_t off;
    int total = 0, skipped = 0;

    if (sd_files_get(files, path, &dir, err) != 0)
        return -1;
    if (dir->kind != SD_FILE_DIR)
        return sd_tls_load_ca_file(ctx, files, path, sid, client_cas, 0, &total, &skipped,
                                   err);
    for (off = 0; off < dir->len; off += strlen((const char *)dir->data + off) + 1) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, (const char *)dir->data + off);
        if (sd_files_get(files, file, &f, err) != 0)
            return -1;
        if (f->kind != SD_FILE_REG)
            continue; /* subdirectories are not read */
        if (sd_tls_load_ca_file(ctx, files, file, sid, client_cas, 1, &total, &skipped,
                                err) != 0)
            return -1;
    }
    if (total == 0)
        return sd_err_set(err, "%s: CA directory contains no CA certificate (PEM or DER)%s",
                          path, skipped > 0 ? "; every file in it was skipped (see the "
                                              "cacert_skipped warnings)" : "");
    return 0;
}

#define SD_TLS_MAX_CRL_OBJECTS 4096 /* CRLs per listener, over all files */

static char *sd_tls_name_text(const X509_NAME *n, char *buf, int len)
{
    X509_NAME_oneline(n, buf, len);
    return buf;
}

/* Finds the CA of the bundle that signed crl and adds it to the store and
 * to the listener's CRL list. A CRL whose issuer is not a CA of the bundle
 * (typically a leftover of a CA just removed from --cacert) is kept with a
 * warning: it cannot admit anyone and only ever applies to a client that
 * presents that issuer as an intermediate, where its signature is checked
 * against that certificate. A CRL that names a CA of the bundle but does
 * not verify with it is corrupt or forged: an error. */
static int sd_tls_add_crl(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                          const char *path, X509_CRL *crl, EVP_MD_CTX *sid,
                          struct sd_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509 *signer = NULL;
    int i, named = 0;
    char issuer[256];

    for (i = 0; i < sk_X509_OBJECT_num(objs) && signer == NULL; i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca == NULL || X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) != 0)
            continue;
        named = 1;
        if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            signer = ca;
    }
    ERR_clear_error();
    sd_tls_name_text(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
    if (signer == NULL && named)
        return sd_err_set(err, "%s: CRL of %s does not verify with that CA's key in the "
                          "--cacert bundle (corrupt, forged, or from another CA of the "
                          "same name)", path, issuer);
    if (signer == NULL && !sd_files_frozen(files))
        sd_log_msg("warn", "crl_ignored", "%s: CRL issuer %s is not a CA of the --cacert "
                   "bundle (a CA removed from it?); the CRL is ignored unless a client "
                   "presents that issuer as an intermediate", path, issuer);
    if (tls->ncrls >= SD_TLS_MAX_CRL_OBJECTS)
        return sd_err_set(err, "%s: too many CRLs for one listener (at most %d)", path,
                          SD_TLS_MAX_CRL_OBJECTS);
    if (tls->ncrls % 16 == 0) {
        struct sd_tls_crl *more = realloc(tls->crls, (tls->ncrls + 16) * sizeof(*more));
        if (more == NULL)
            return sd_err_set(err, "out of memory");
        tls->crls = more;
    }
    if (!X509_STORE_add_crl(store, crl) ||
        !X509_CRL_digest(crl, EVP_sha256(), md, &mdlen) || !EVP_DigestUpdate(sid, md, mdlen) ||
        !X509_CRL_up_ref(crl) || (signer != NULL && !X509_up_ref(signer)))
        return sd_err_openssl(err, "%s: cannot use CRL", path);
    tls->crls[tls->ncrls].crl = crl;
    tls->crls[tls->ncrls].signer = signer;
    tls->crls[tls->ncrls].delta = X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0;
    tls->crls[tls->ncrls].path = path;
    tls->ncrls++;
    return 0;
}

/* CRL i, if it is the first full CRL of its issuer in tls: that issuer's
 * newest nextUpdate (*next, Unix seconds, 0: one of them has none, so the
 * issuer is never stale), the file it is in and its lastUpdate. Returns 0
 * for the first CRL of an issuer, -1 for any other (done at the first). */
static int sd_tls_crl_newest(const struct sd_tls *tls, size_t i, int64_t *next,
                             const char **path, int64_t *last)
{
    size_t j;

    *next = 0;
    *path = tls->crls[i].path;
    *last = 0;
    if (tls->crls[i].delta)
        return -1;
    for (j = 0; j < tls->ncrls; j++) {
        int64_t nu;
        if (tls->crls[j].delta ||
            X509_NAME_cmp(X509_CRL_get_issuer(tls->crls[i].crl),
                          X509_CRL_get_issuer(tls->crls[j].crl)) != 0)
            continue;
        if (j < i)
            return -1; /* this issuer was done at its first CRL */
        nu = sd_tls_time(X509_CRL_get0_nextUpdate(tls->crls[j].crl));
        if (nu == 0) {
            *next = 0; /* no nextUpdate: never stale */
            return 0;
        }
        if (nu > *next) {
            *next = nu;
            *path = tls->crls[j].path;
            *last = sd_tls_time(X509_CRL_get0_lastUpdate(tls->crls[j].crl));
        }
    }
    return 0;
}

/* After all CRLs are loaded: until when is the set fresh? For each issuer
 * the newest full CRL decides (an old CRL lying next to a fresh one must
 * not refuse everyone), the earliest of those over all issuers, plus the
 * grace. */
static void sd_tls_crl_freshness(struct sd_tls *tls, struct sd_files *files)
{
    size_t i;

    (void)files;
    tls->crl_fresh_until = 0;
    for (i = 0; i < tls->ncrls; i++) {
        int64_t newest, last;
        const char *path;
        if (sd_tls_crl_newest(tls, i, &newest, &path, &last) != 0 || newest == 0)
            continue;
        newest += (int64_t)tls->crl_grace_s;
        if (tls->crl_fresh_until == 0 || newest < tls->crl_fresh_until)
            tls->crl_fresh_until = newest;
    }
}

void sd_tls_warn_crls(const struct sd_tls *tls, uint32_t within_s)
{
    int64_t now = (int64_t)time(NULL);
    size_t i;

    for (i = 0; tls != NULL && i < tls->ncrls; i++) {
        int64_t next, last, window;
        const char *path;
        char issuer[256];
        struct sd_logline l;

        if (sd_tls_crl_newest(tls, i, &next, &path, &last) != 0 || next == 0)
            continue;
        /* Warned a quarter of its life ahead (a 7-day CRL: 42 hours), at
         * least an hour, at most expiry-warning. */
        window = last > 0 && next > last ? (next - last) / 4 : 86400;
        if (window < 3600)
            window = 3600;
        if (window > (int64_t)within_s)
            window = (int64_t)within_s;
        if (next - now > window)
            continue;
        sd_tls_name_text(X509_CRL_get_issuer(tls->crls[i].crl), issuer, sizeof(issuer));
        sd_log_begin(&l, "warn", "crl_expiry"); /* as cert_expiry, expired or not */
        sd_log_str(&l, "file", path);
        sd_log_str(&l, "issuer", issuer);
        sd_log_i64(&l, "seconds_left", next - now);
        if (tls->crl_grace_s > 0)
            sd_log_u64(&l, "grace_s", tls->crl_grace_s);
        sd_log_str(&l, "msg",
                   next + (int64_t)tls->crl_grace_s <= now
                       ? "the newest CRL of this issuer is past its nextUpdate: clients "
                         "whose chain it covers are refused (crl_expired) until a fresh CRL "
                         "is installed (steeldoor pki crl, or your CA's)"
                       : "the newest CRL of this issuer reaches its nextUpdate soon: install "
                         "a fresh one before then (steeldoor pki crl, or your CA's; the file "
                         "is watched), or clients whose chain it covers are refused");
        sd_log_end(&l);
    }
}

/* Loads a CRL file: one DER CRL, or one or more PEM CRLs (CAs publish one
 * CRL each, and a bundle of them in one file is common). Every CRL in it
 * must be valid; a file without one names what it holds instead. */
static int sd_tls_load_crl(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                           const char *path, EVP_MD_CTX *sid, struct sd_err *err)
{
    const struct sd_file *f = NULL;
    struct sd_tls_holds h;
    X509_CRL *crl = NULL;
    BIO *bio = NULL;
    int n = 0, rc = -1;
    unsigned long e;

    bio = sd_tls_file_bio(files, path, "CRL", &f, err);
    if (bio == NULL)
        return -1;
    sd_tls_holds(f, &h);
    if (!(h.kinds & SD_TLS_HOLDS_CRL) || (h.fmt != SD_TLS_PEM && h.fmt != SD_TLS_DER)) {
        sd_tls_not_a(err, path, &h, SD_TLS_WANT_CRL);
        goto out;
    }
    if (h.fmt == SD_TLS_DER) {
        crl = d2i_X509_CRL_bio(bio, NULL);
        if (crl == NULL) {
            sd_err_openssl(err, "%s: the DER CRL cannot be parsed", path);
            goto out;
        }
        rc = sd_tls_add_crl(tls, ctx, files, path, crl, sid, err);
        goto out;
    }
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, sd_tls_no_passphrase, NULL)) != NULL) {
        n++;
        if (sd_tls_add_crl(tls, ctx, files, path, crl, sid, err) != 0)
            goto out;
        X509_CRL_free(crl);
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        sd_err_openssl(err, "%s: CRL number %d of the file is not a valid PEM CRL", path,
                       n + 1);
        goto out;
    }
    ERR_clear_error();
    rc = 0;
out:
    X509_CRL_free(crl);
    BIO_free(bio);
    return rc;
}

/* Loads every CRL file of paths into tls and ctx (feeding sid), then
 * works out the set's freshness and turns CRL checking on for the leaf
 * and every intermediate. Returns 0, or -1 with err naming the file. */
int sd_tls_load_crls(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                     const char *const *paths, size_t n, EVP_MD_CTX *sid,
                     struct sd_err *err)
{
    unsigned long flags = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    size_t i;

    for (i = 0; i < n; i++)
        if (sd_tls_load_crl(tls, ctx, files, paths[i], sid, err) != 0)
            return -1;
    if (n == 0)
        return 0;
    sd_tls_crl_freshness(tls, files);
    /* Delta CRLs (the AD CS layout): OpenSSL applies them to their base
     * only when asked; sd_tls_chain_revoked() counts their revocations
     * in any case. */
    for (i = 0; i < tls->ncrls; i++)
        if (tls->crls[i].delta)
            flags |= X509_V_FLAG_USE_DELTAS;
    /* Check the leaf and every intermediate: a CA level without a CRL
     * from its issuer fails closed (crl_missing). */
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags);
    return 0;
}

/* The chain after our own certificate in our Certificate message, fixed
 * once per context. When the certificate file holds no chain, OpenSSL
 * would otherwise build it from the CA store on every full handshake
 * (X509_verify_cert, with its signature checks: about a tenth of a full
 * handshake's CPU); built here, the same certificates go out each time
 * and none is built again (SSL_MODE_NO_AUTO_CHAIN). A chain that cannot
 * be completed (our certificate from a CA the store does not hold) is kept
 * as far as it goes, as OpenSSL does per handshake. Call after the CAs are
 * loaded; returns 0, or -1 with err set. */
int sd_tls_fix_own_chain(SSL_CTX *ctx, const char *cert, struct sd_err *err)
{
    STACK_OF(X509) *chain = NULL;

    if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != NULL &&
        sk_X509_num(chain) > 0) {
        SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN); /* the file's chain, as given */
        return 0;
    }
    if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
                                          SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0) {
        sd_err_openssl(err, "%s: cannot build the certificate chain", cert);
        return -1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    ERR_clear_error();
    return 0;
}

/* Our own certificate chain from a DER file: the first certificate is
 * ours, the others its chain (sd_tls_der_certs). */
struct sd_tls_own_load {
    SSL_CTX *ctx;
    const char *path;
};

static int sd_tls_add_own_cert(X509 *x, int index, void *arg, struct sd_err *err)
{
    struct sd_tls_own_load *a = arg;
    int ok;

    if (index == 1) {
        ok = SSL_CTX_use_certificate(a->ctx, x) == 1;
        X509_free(x);
    } else {
        ok = SSL_CTX_add0_chain_cert(a->ctx, x) == 1; /* takes x */
        if (!ok)
            X509_free(x);
    }
    return ok ? 0 : sd_err_openssl(err, "%s: cannot load certificate chain", a->path);
}

/* Our own certificate chain, leaf first: PEM (every CERTIFICATE block) or
 * DER (certificates back to back). */
static int sd_tls_load_own_chain(SSL_CTX *ctx, const struct sd_file *f, BIO *cb,
                                 const char *cert, struct sd_err *err)
{
    struct sd_tls_holds h;
    X509 *x = NULL;
    unsigned long e;

    sd_tls_holds(f, &h);
    if (h.fmt == SD_TLS_DER && (h.kinds & SD_TLS_HOLDS_CERT)) {
        struct sd_tls_own_load a = {ctx, cert};
        return sd_tls_der_certs(f, cert, sd_tls_add_own_cert, &a, err);
    }
    if (h.fmt != SD_TLS_PEM || !(h.kinds & (SD_TLS_HOLDS_CERT | SD_TLS_HOLDS_TRUSTED)))
        return sd_tls_not_a(err, cert, &h, SD_TLS_WANT_CERT);
    x = PEM_read_bio_X509_AUX(cb, NULL, sd_tls_no_passphrase, NULL);
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
        X509_free(x);
        return sd_err_openssl(err, "%s: cannot load certificate chain", cert);
    }
    X509_free(x);
    while ((x = PEM_read_bio_X509(cb, NULL, sd_tls_no_passphrase, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            return sd_err_openssl(err, "%s: cannot load certificate chain", cert);
        }
        /* owned by the context now */
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        ERR_clear_error();
    else if (e != 0)
        return sd_err_openssl(err, "%s: cannot load certificate chain", cert);
    return 0;
}

/* A private key: PEM, or DER (PKCS#8, or a traditional RSA, EC or DSA
 * key). An encrypted one is refused with the command that decrypts it,
 * before anything could ask for a passphrase. */
static EVP_PKEY *sd_tls_read_key(const struct sd_file *f, BIO *kb, const char *key_path,
                                 struct sd_err *err)
{
    struct sd_tls_holds h;
    EVP_PKEY *key = NULL;

    sd_tls_holds(f, &h);
    if ((h.fmt == SD_TLS_PEM || h.fmt == SD_TLS_DER) && (h.kinds & SD_TLS_HOLDS_KEY) &&
        !(h.kinds & SD_TLS_HOLDS_KEY_ENC)) {
        if (h.fmt == SD_TLS_PEM) {
            key = PEM_read_bio_PrivateKey(kb, NULL, sd_tls_no_passphrase, NULL);
        } else {
            const unsigned char *p = f->data;
            key = d2i_AutoPrivateKey(NULL, &p, (long)f->len);
            if (key != NULL && p != f->data + f->len) {
                EVP_PKEY_free(key);
                key = NULL;
                sd_err_set(err, "%s: bytes after the DER private key", key_path);
                return NULL;
            }
        }
        if (key == NULL)
            sd_err_openssl(err, "%s: the private key cannot be parsed", key_path);
        return key;
    }
    sd_tls_not_a(err, key_path, &h, SD_TLS_WANT_KEY);
    return NULL;
}

/* The context's own certificate chain (leaf first) and key, from the
 * snapshot; role ("server", "client") is for messages. */
int sd_tls_load_identity(SSL_CTX *ctx, struct sd_files *files, const char *cert,
                         const char *key_path, const char *role, struct sd_err *err)
{
    const struct sd_file *cf = NULL, *kf = NULL;
    BIO *cb = NULL, *kb = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    /* Nothing below reads an encrypted key, and nothing may prompt. */
    SSL_CTX_set_default_passwd_cb(ctx, sd_tls_no_passphrase);
    cb = sd_tls_file_bio(files, cert, "certificate", &cf, err);
    if (cb == NULL)
        goto out;
    kb = sd_tls_file_bio(files, key_path, "private key", &kf, err);
    if (kb == NULL)
        goto out;
    if (sd_tls_load_own_chain(ctx, cf, cb, cert, err) != 0)
        goto out;
    if (sd_tls_check_validity(SSL_CTX_get0_certificate(ctx), cert, role, err) != 0)
        goto out;
    key = sd_tls_read_key(kf, kb, key_path, err);
    if (key == NULL)
        goto out;
    /* Before SSL_CTX_use_PrivateKey, which refuses a mismatch with only
     * OpenSSL's "key values mismatch". */
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1) {
        ERR_clear_error();
        sd_err_set(err, "%s: private key does not match the certificate in %s (the key of "
                   "another certificate?)", key_path, cert);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        sd_err_openssl(err, "%s: cannot load private key", key_path);
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        sd_err_openssl(err, "%s: private key does not match certificate %s", key_path, cert);
        goto out;
    }
    /* Group read is how an unprivileged account (--user) is given a key
     * root owns (root:steeldoor 0640, as Debian's ssl-cert group); any
     * access by others, or group write, is a mistake. */
    if (!sd_files_frozen(files) && (kf->mode & 027) != 0)
        sd_log_msg("warn", "config", "%s: private key is accessible to others or writable "
                   "by its group (mode %03o); it should be 0600, or 0640 for a group "
                   "that only the steeldoor account is in", key_path, kf->mode & 0777);
    rc = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

static void sd_tls_warn_cert(X509 *x, const char *file, const char *role, uint32_t within_s)
{
    time_t limit = time(NULL) + (time_t)within_s;
    int days = 0, secs = 0;
    char subj[256];
    struct sd_logline l;

    if (X509_cmp_time(X509_get0_notAfter(x), &limit) > 0)
        return;
    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    (void)ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x));
    sd_log_begin(&l, "warn", "cert_expiry");
    sd_log_str(&l, "file", file);
    sd_log_str(&l, "role", role);
    sd_log_str(&l, "subject", subj);
    sd_log_i64(&l, "seconds_left", (int64_t)days * 86400 + secs);
    sd_log_str(&l, "msg", days * 86400 + secs <= 0 ? "certificate has expired"
                                                   : "certificate expires soon");
    sd_log_end(&l);
}

void sd_tls_warn_expiry(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                        uint32_t within_s)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(tls->ctx));
    STACK_OF(X509) *chain = NULL;
    X509 *leaf = SSL_CTX_get0_certificate(tls->ctx);
    int i;

    if (leaf != NULL)
        sd_tls_warn_cert(leaf, lc->cert, "server", within_s);
    /* Clients match the name they dialled against the SANs only (RFC 6125;
     * Go, curl, browsers, Python): a server certificate without them is
     * refused by every client, whatever its CN says. */
    if (leaf != NULL && lc->mode != SD_MODE_CONNECT &&
        X509_get_ext_by_NID(leaf, NID_subject_alt_name, -1) < 0) {
        struct sd_logline l;
        char subj[256];
        X509_NAME_oneline(X509_get_subject_name(leaf), subj, sizeof(subj));
        sd_log_begin(&l, "warn", "cert_no_san");
        sd_log_str(&l, "listener", lc->name);
        sd_log_str(&l, "file", lc->cert);
        sd_log_str(&l, "subject", subj);
        sd_log_str(&l, "msg", "the server certificate has no subjectAltName: clients ignore "
                   "the CN and will refuse it (reissue it with the names clients dial, e.g. "
                   "steeldoor pki issue --server --dns NAME --ip ADDR)");
        sd_log_end(&l);
    }
    if (SSL_CTX_get0_chain_certs(tls->ctx, &chain) == 1)
        for (i = 0; chain != NULL && i < sk_X509_num(chain); i++)
            sd_tls_warn_cert(sk_X509_value(chain, i), lc->cert, "server_chain", within_s);
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL)
            sd_tls_warn_cert(ca, lc->cacert, "client_ca", within_s);
    }
    ERR_clear_error();
}
