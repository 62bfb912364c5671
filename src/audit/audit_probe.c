/*
 * audit_probe.c - the probes behind `steeldoor audit` (see sd/audit.h and
 * docs/audit.md).
 *
 * Each probe is one fresh TCP connection with its own time limits: connect
 * plus handshake must finish within opts.timeout_ms, and whatever is read
 * afterwards gets another opts.timeout_ms. Sockets are non-blocking and
 * every wait is a poll() against an absolute deadline, so a server that
 * drips bytes or never answers cannot hold a probe longer than that.
 *
 * The bad certificates are made here, in memory, once per run (ECDSA
 * P-256) and never written anywhere. The auditor does not have the real
 * CA's key, so a certificate that must look like it came from the real CA
 * (expired, not yet valid, serverAuth-only) is signed by a throwaway key
 * under the real CA's name: a correct server refuses it for its signature
 * before it ever looks at the dates or the EKU. Such a probe still shows
 * whether the server checks client certificates at all, not which check
 * fired; the alert the server sends is reported for that.
 *
 * The judgement rests on the handshake: whether the server sent a
 * CertificateRequest (seen by a message callback, TLS 1.3's encrypted one
 * too) and whether the handshake completed. Completed without one is an
 * open door whatever follows. After one, what the server does once the
 * handshake is over is compared with what it did to the control: only an
 * alert, or a difference, is a refusal (sd_audit_refuse).
 */
#include "sd/audit.h"
#include "sd/files.h"
#include "sd/format.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define SD_AUDIT_CURVE      "P-256"
#define SD_AUDIT_DAY        (24L * 60L * 60L)
#define SD_AUDIT_ANSWER_MAX 16384 /* bytes kept of what a server answers */
#define SD_AUDIT_REQ_MAX    2048

/* ------------------------------------------------------------------ */
/* Time                                                                */

static uint64_t sd_audit_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int sd_audit_wait(int fd, short events, uint64_t deadline)
{
    struct pollfd p;
    uint64_t now;
    int n;

    for (;;) {
        now = sd_audit_now_ms();
        if (now >= deadline)
            return 0;
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        n = poll(&p, 1, (int)(deadline - now > 60000 ? 60000 : deadline - now));
        if (n > 0)
            return 1; /* POLLERR/POLLHUP too: the next call reports it */
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Keeps only printable ASCII of untrusted bytes (a server's status line),
 * at most max characters, so a hostile answer cannot mess up the report. */
static void sd_audit_clean(char *out, size_t cap, const char *in, size_t len, size_t max)
{
    size_t i, j = 0;

    for (i = 0; i < len && j + 1 < cap && j < max; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r' || c == '\n')
            break;
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[j] = '\0';
}

/* ------------------------------------------------------------------ */
/* Certificates                                                        */

struct sd_audit_cred {
    X509 *crt;
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* sent after crt; may be NULL */
};

static void sd_audit_cred_free(struct sd_audit_cred *c)
{
    X509_free(c->crt);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    c->crt = NULL;
    c->key = NULL;
    c->chain = NULL;
}

/*
 * The input files: read whole through the snapshot reader (it never
 * blocks on a FIFO or a device, refuses anything but a regular file and
 * reads to end of file with a cap; the key's bytes are wiped when the set
 * is freed), then by sd/format.h, as serve reads them: PEM or DER, and a
 * file in another form (PKCS#12, an encrypted key, the other file of the
 * pair, a CSR) named with the command that converts it. Nothing prompts
 * for a passphrase: the auditor may run unattended.
 */
#define SD_AUDIT_SWAP "--cert and --key" /* the pair a swapped file belongs to */

/* err = "FLAG " + err: which flag gave the file the message names. */
static int sd_audit_flag_err(struct sd_err *err, const char *flag)
{
    char msg[SD_ERR_MAX];

    if (err == NULL)
        return -1;
    snprintf(msg, sizeof(msg), "%s", err->msg);
    return sd_err_set(err, "%s %s", flag, msg);
}

static int sd_audit_file(struct sd_files *fs, const char *flag, const char *path,
                         const struct sd_file **f, struct sd_err *err)
{
    if (sd_files_get(fs, path, f, err) != 0)
        return sd_audit_flag_err(err, flag);
    if ((*f)->kind != SD_FILE_REG)
        return sd_err_set(err, "%s %s: not a regular file", flag, path);
    return 0;
}

/* The control's certificate (the first) and the chain sent after it. */
static int sd_audit_take_control(X509 *x, int index, void *arg, struct sd_err *err)
{
    struct sd_audit_cred *c = arg;

    if (index == 1) {
        c->crt = x;
        return 0;
    }
    if (sk_X509_push(c->chain, x) <= 0) {
        X509_free(x);
        return sd_err_set(err, "out of memory");
    }
    return 0;
}

/* Loads the control: the certificate, any chain after it, and its key. */
static int sd_audit_load_control(const struct sd_audit_opts *o, struct sd_audit_cred *c,
                                 struct sd_err *err)
{
    struct sd_files *fs = sd_files_new();
    const struct sd_file *cf = NULL, *kf = NULL;
    int rc = -1;

    if (fs == NULL || (c->chain = sk_X509_new_null()) == NULL) {
        sd_err_set(err, "out of memory");
        goto out;
    }
    if (sd_audit_file(fs, "--cert", o->cert, &cf, err) != 0 ||
        sd_audit_file(fs, "--key", o->key, &kf, err) != 0)
        goto out;
    if (sd_format_certs_required(cf->data, cf->len, o->cert, SD_FORMAT_WANT_CERT, SD_AUDIT_SWAP,
                                 sd_audit_take_control, c, err) < 0) {
        sd_audit_flag_err(err, "--cert");
        goto out;
    }
    c->key = sd_format_key(kf->data, kf->len, o->key, SD_AUDIT_SWAP, err);
    if (c->key == NULL) {
        sd_audit_flag_err(err, "--key");
        goto out;
    }
    if (X509_check_private_key(c->crt, c->key) != 1) {
        ERR_clear_error();
        sd_err_set(err, "--key %s: this private key does not match the certificate in "
                   "--cert %s", o->key, o->cert);
        goto out;
    }
    rc = 0;
out:
    sd_files_free(fs);
    return rc;
}

static int sd_audit_take_ca(X509 *x, int index, void *arg, struct sd_err *err)
{
    int ok = X509_STORE_add_cert(arg, x);

    X509_free(x);
    return ok ? 0 : sd_err_openssl(err, "cannot add CA certificate %d", index);
}

/* Every certificate of the CA file, as a trust store. */
static X509_STORE *sd_audit_load_store(const struct sd_audit_opts *o, struct sd_err *err)
{
    struct sd_files *fs = sd_files_new();
    const struct sd_file *f = NULL;
    X509_STORE *store = X509_STORE_new();

    if (fs == NULL || store == NULL) {
        sd_err_set(err, "out of memory");
        goto fail;
    }
    if (sd_audit_file(fs, "--cacert", o->cacert, &f, err) != 0)
        goto fail;
    if (sd_format_certs_required(f->data, f->len, o->cacert, SD_FORMAT_WANT_CA, SD_AUDIT_SWAP,
                                 sd_audit_take_ca, store, err) < 0) {
        sd_audit_flag_err(err, "--cacert");
        goto fail;
    }
    sd_files_free(fs);
    return store;
fail:
    X509_STORE_free(store);
    sd_files_free(fs);
    return NULL;
}

/* A certificate name, RFC 2253, for a message. */
static void sd_audit_name(const X509_NAME *name, char *buf, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;

    buf[0] = '\0';
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_get_mem_data(b, &data);
        if (n > 0 && data != NULL)
            sd_audit_clean(buf, cap, data, (size_t)n, cap - 1);
    }
    BIO_free(b);
}

/*
 * The control must have been issued by --cacert (directly, or through
 * intermediates sent after it in --cert). The impostor CA borrows the name
 * of the control's own issuer: a control from another CA would make the
 * expired, not-yet-valid and serverauth-eku probes claim the wrong issuer
 * and test something else than they say. Dates and key usage are not
 * checked here: a control the server must refuse is the server's to refuse
 * (docs/audit.md). Returns the issuer (a new reference), or NULL with err.
 */
static X509 *sd_audit_control_issuer(const struct sd_audit_opts *o, X509_STORE *store,
                                     const struct sd_audit_cred *control, struct sd_err *err)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain;
    STACK_OF(X509_OBJECT) *objs;
    X509 *issuer = NULL;
    char have[160], want[160], holds[160];
    int e, i, n = 0, same_name = 0;

    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, control->crt, control->chain) != 1) {
        sd_err_openssl(err, "out of memory");
        goto out;
    }
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
    if (X509_verify_cert(ctx) == 1) {
        chain = X509_STORE_CTX_get0_chain(ctx);
        issuer = sk_X509_value(chain, sk_X509_num(chain) > 1 ? 1 : 0);
        if (issuer == NULL || !X509_up_ref(issuer)) {
            issuer = NULL;
            sd_err_set(err, "out of memory");
        }
        goto out;
    }
    e = X509_STORE_CTX_get_error(ctx);
    sd_audit_name(X509_get_issuer_name(control->crt), want, sizeof(want));
    sd_audit_name(X509_get_subject_name(control->crt), have, sizeof(have));
    holds[0] = '\0';
    objs = X509_STORE_get0_objects(store);
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (x == NULL)
            continue;
        if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(control->crt)) == 0)
            same_name = 1;
        if (n++ == 0)
            sd_audit_name(X509_get_subject_name(x), holds, sizeof(holds));
    }
    if (same_name)
        sd_err_set(err, "--cert %s (%s) was not issued by --cacert %s: that file holds a CA "
                   "named %s, but not the one that signed the certificate (same name, another "
                   "key). --cacert must be the CA that issued the client certificate",
                   o->cert, have, o->cacert, want);
    else
        sd_err_set(err, "--cert %s (%s) was not issued by --cacert %s (%s): its issuer is %s, "
                   "and that file holds %s%s. --cacert must be the CA that issued the client "
                   "certificate (not the CA of the server's certificate)",
                   o->cert, have, o->cacert, X509_verify_cert_error_string(e), want,
                   holds[0] != '\0' ? holds : "no certificate", n > 1 ? " and more" : "");
out:
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return issuer;
}

static int sd_audit_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* Version 3, a random positive 128-bit serial, a validity window relative
 * to now (seconds), subject, issuer and public key. */
static X509 *sd_audit_cert_new(EVP_PKEY *key, const X509_NAME *subject,
                               const X509_NAME *issuer, long from, long to)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    X509 *x = X509_new();

    if (x == NULL || RAND_bytes(b, sizeof(b)) != 1)
        goto fail;
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
    bn = BN_bin2bn(b, (int)sizeof(b), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), from) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), to) == NULL ||
        X509_set_subject_name(x, subject) != 1 ||
        X509_set_issuer_name(x, issuer) != 1 ||
        X509_set_pubkey(x, key) != 1)
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

/* A self-signed CA called name, with a new key. */
static int sd_audit_make_ca(const X509_NAME *name, struct sd_audit_cred *ca)
{
    ca->key = EVP_EC_gen(SD_AUDIT_CURVE);
    if (ca->key == NULL)
        return -1;
    ca->crt = sd_audit_cert_new(ca->key, name, name, -SD_AUDIT_DAY, 30 * SD_AUDIT_DAY);
    if (ca->crt == NULL ||
        sd_audit_ext(ca->crt, ca->crt, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
        sd_audit_ext(ca->crt, ca->crt, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        sd_audit_ext(ca->crt, ca->crt, NID_subject_key_identifier, "hash") != 0 ||
        X509_sign(ca->crt, ca->key, EVP_sha256()) <= 0)
        return -1;
    return 0;
}

/*
 * A leaf with the control's subject and subjectAltName, so that a server
 * which skips the chain check but still applies its allow rules lets it in
 * just as it would let the control in. Signed by ca (NULL: self-signed).
 */
static int sd_audit_make_leaf(const X509 *control, const struct sd_audit_cred *ca,
                              long from, long to, const char *eku,
                              struct sd_audit_cred *out)
{
    const X509_NAME *subject = X509_get_subject_name(control);
    int i;

    out->key = EVP_EC_gen(SD_AUDIT_CURVE);
    if (out->key == NULL)
        return -1;
    out->crt = sd_audit_cert_new(out->key, subject,
                                 ca != NULL ? X509_get_subject_name(ca->crt) : subject,
                                 from, to);
    if (out->crt == NULL ||
        sd_audit_ext(out->crt, ca != NULL ? ca->crt : out->crt, NID_basic_constraints,
                     "critical,CA:FALSE") != 0 ||
        sd_audit_ext(out->crt, NULL, NID_key_usage, "critical,digitalSignature") != 0 ||
        sd_audit_ext(out->crt, NULL, NID_ext_key_usage, eku) != 0)
        return -1;
    i = X509_get_ext_by_NID(control, NID_subject_alt_name, -1);
    if (i >= 0 && X509_add_ext(out->crt, X509_get_ext(control, i), -1) != 1)
        return -1;
    if (X509_sign(out->crt, ca != NULL ? ca->key : out->key, EVP_sha256()) <= 0)
        return -1;
    return 0;
}

/* The control itself, byte for byte (issuer, serial, extensions), but with
 * a new key and signed by that key: only the signature gives it away. */
static int sd_audit_make_forgery(const X509 *control, struct sd_audit_cred *out)
{
    out->key = EVP_EC_gen(SD_AUDIT_CURVE);
    if (out->key == NULL)
        return -1;
    out->crt = X509_dup(control);
    if (out->crt == NULL || X509_set_pubkey(out->crt, out->key) != 1 ||
        X509_sign(out->crt, out->key, EVP_sha256()) <= 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The run                                                             */

enum sd_audit_cred_id {
    SD_AUDIT_CONTROL = 0,
    SD_AUDIT_SELF_SIGNED,
    SD_AUDIT_UNKNOWN_CA,
    SD_AUDIT_EXPIRED,
    SD_AUDIT_NOT_YET_VALID,
    SD_AUDIT_SERVER_EKU,
    SD_AUDIT_FORGED,
    SD_AUDIT_NCREDS
};

struct sd_audit_run {
    const struct sd_audit_opts *o;
    struct sd_audit_report *rep;
    X509_STORE *store;           /* --cacert, to report on the server's cert */
    X509 *ca;                    /* the control's issuer, found in --cacert */
    struct sd_audit_cred cred[SD_AUDIT_NCREDS];
    struct sd_audit_cred unknown_ca, impostor_ca;
    const char *sni;             /* default SNI; NULL for an IP literal */
    int host_is_ip;
    /* What the control got after its handshake: the baseline a refused
     * probe must differ from (see sd_audit_like_control). */
    int ctl_kind;                /* enum sd_audit_kind */
    int ctl_status;              /* its HTTP status, if any */
    int ctl_late;                /* it ended late (sd_audit_is_late) */
    char ctl_what[128];          /* what it got, for the report */
};

static int sd_audit_make_creds(struct sd_audit_run *r, struct sd_err *err)
{
    const X509 *control = r->cred[SD_AUDIT_CONTROL].crt;
    X509_NAME *unknown = X509_NAME_new();
    int rc = -1;

    if (unknown == NULL ||
        X509_NAME_add_entry_by_NID(unknown, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)"steeldoor audit", -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(unknown, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)"steeldoor audit unknown CA",
                                   -1, -1, 0) != 1 ||
        sd_audit_make_ca(unknown, &r->unknown_ca) != 0 ||
        /* the impostor wears the name of the control's issuer but has its
         * own key */
        sd_audit_make_ca(X509_get_subject_name(r->ca), &r->impostor_ca) != 0 ||
        sd_audit_make_leaf(control, NULL, -3600, SD_AUDIT_DAY, "clientAuth",
                           &r->cred[SD_AUDIT_SELF_SIGNED]) != 0 ||
        sd_audit_make_leaf(control, &r->unknown_ca, -3600, SD_AUDIT_DAY, "clientAuth",
                           &r->cred[SD_AUDIT_UNKNOWN_CA]) != 0 ||
        sd_audit_make_leaf(control, &r->impostor_ca, -30 * SD_AUDIT_DAY, -SD_AUDIT_DAY,
                           "clientAuth", &r->cred[SD_AUDIT_EXPIRED]) != 0 ||
        sd_audit_make_leaf(control, &r->impostor_ca, SD_AUDIT_DAY, 30 * SD_AUDIT_DAY,
                           "clientAuth", &r->cred[SD_AUDIT_NOT_YET_VALID]) != 0 ||
        sd_audit_make_leaf(control, &r->impostor_ca, -3600, SD_AUDIT_DAY, "serverAuth",
                           &r->cred[SD_AUDIT_SERVER_EKU]) != 0 ||
        sd_audit_make_forgery(control, &r->cred[SD_AUDIT_FORGED]) != 0) {
        sd_err_openssl(err, "cannot make the probe certificates");
        goto out;
    }
    /* The unknown CA comes along in the chain: a server that trusts any
     * root a client presents takes the bait. */
    r->cred[SD_AUDIT_UNKNOWN_CA].chain = sk_X509_new_null();
    if (r->cred[SD_AUDIT_UNKNOWN_CA].chain == NULL ||
        !X509_up_ref(r->unknown_ca.crt) ||
        sk_X509_push(r->cred[SD_AUDIT_UNKNOWN_CA].chain, r->unknown_ca.crt) <= 0) {
        sd_err_openssl(err, "cannot make the probe certificates");
        goto out;
    }
    /* The certificates that claim the control's issuer come with the
     * control's own chain, so that a server finds that issuer (an
     * intermediate, say) and refuses them for their signature, as it
     * would refuse a real forgery. */
    if (r->cred[SD_AUDIT_CONTROL].chain != NULL &&
        sk_X509_num(r->cred[SD_AUDIT_CONTROL].chain) > 0) {
        static const enum sd_audit_cred_id same_issuer[] = {
            SD_AUDIT_EXPIRED, SD_AUDIT_NOT_YET_VALID, SD_AUDIT_SERVER_EKU, SD_AUDIT_FORGED,
        };
        size_t i;
        for (i = 0; i < sizeof(same_issuer) / sizeof(same_issuer[0]); i++) {
            struct sd_audit_cred *c = &r->cred[same_issuer[i]];
            c->chain = X509_chain_up_ref(r->cred[SD_AUDIT_CONTROL].chain);
            if (c->chain == NULL) {
                sd_err_openssl(err, "cannot make the probe certificates");
                goto out;
            }
        }
    }
    rc = 0;
out:
    X509_NAME_free(unknown);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

struct sd_audit_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    uint64_t deadline;
    int alert;          /* last alert the server sent, -1 none */
    int cert_req;       /* the server sent a CertificateRequest */
    char why[160];      /* why the last step failed */
};

enum sd_audit_io {
    SD_AUDIT_IO_OK = 0,
    SD_AUDIT_IO_TIMEOUT,
    SD_AUDIT_IO_CLOSED,  /* close_notify or FIN */
    SD_AUDIT_IO_FAILED,  /* an alert, a TLS error or a reset: c->why */
};

/* The alert's name; OpenSSL 3.0 has no text for the TLS 1.3 additions. */
static const char *sd_audit_alert_name(int alert, char *buf, size_t cap)
{
    const char *s;

    switch (alert & 0xff) {
    case 109:
        return "missing extension";
    case 115:
        return "unknown PSK identity";
    case 116:
        return "certificate required";
    case 120:
        return "no application protocol";
    default:
        break;
    }
    s = SSL_alert_desc_string_long(alert);
    if (s == NULL || strcmp(s, "unknown") == 0) {
        snprintf(buf, cap, "%d", alert & 0xff);
        return buf;
    }
    return s;
}

static void sd_audit_info_cb(const SSL *ssl, int where, int ret)
{
    struct sd_audit_conn *c = SSL_get_app_data(ssl);

    if (c != NULL && (where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT &&
        (ret & 0xff) != SSL3_AD_CLOSE_NOTIFY)
        c->alert = ret;
}

/*
 * Sees every handshake message the server sends, TLS 1.3's encrypted ones
 * included (after decryption). A CertificateRequest is the server asking
 * for a client certificate: a handshake that completes without one has let
 * the client in without any certificate, whatever the server does next.
 */
static void sd_audit_msg_cb(int write_p, int version, int content_type, const void *buf,
                            size_t len, SSL *ssl, void *arg)
{
    struct sd_audit_conn *c = SSL_get_app_data(ssl);
    const unsigned char *b = buf;

    (void)version;
    (void)arg;
    if (c != NULL && !write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        b[0] == SSL3_MT_CERTIFICATE_REQUEST)
        c->cert_req = 1;
}

static void sd_audit_conn_close(struct sd_audit_conn *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

/* A TCP connection to the endpoint by c->deadline; 0, or -1 with c->why. */
static int sd_audit_tcp(const struct sd_audit_opts *o, struct sd_audit_conn *c)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, e, soerr, one = 1;
    socklen_t len;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    e = getaddrinfo(o->host, o->port, &hints, &res);
    if (e != 0) {
        snprintf(c->why, sizeof(c->why), "cannot resolve %.64s: %s", o->host, gai_strerror(e));
        return -1;
    }
    snprintf(c->why, sizeof(c->why), "no address");
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            snprintf(c->why, sizeof(c->why), "socket: %s", strerror(errno));
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            e = sd_audit_wait(fd, POLLOUT, c->deadline);
            if (e == 0) {
                snprintf(c->why, sizeof(c->why), "connect timed out");
                close(fd);
                fd = -1;
                break; /* the time is used up; no other address either */
            }
            soerr = 0;
            len = sizeof(soerr);
            if (e > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
                soerr == 0)
                break;
            errno = soerr != 0 ? soerr : errno;
        }
        snprintf(c->why, sizeof(c->why), "connect: %s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    return 0;
}

/* Protocol versions of a probe's client context. */
struct sd_audit_tls {
    int min, max;       /* 0: OpenSSL's default */
    int legacy;         /* SECLEVEL=0, for TLS 1.0/1.1 */
};

static SSL_CTX *sd_audit_ctx_new(struct sd_audit_run *r, const struct sd_audit_cred *cred,
                                 const struct sd_audit_tls *v)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        return NULL;
    if (v->legacy) {
        SSL_CTX_set_security_level(ctx, 0);
        if (SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0") != 1)
            goto fail;
    }
    if (SSL_CTX_set_min_proto_version(ctx, v->min != 0 ? v->min : TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, v->max) != 1)
        goto fail;
    SSL_CTX_set1_cert_store(ctx, r->store);
    /* The server's certificate is checked against --cacert for the report
     * (SSL_get_verify_result), never to stop a probe. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_info_callback(ctx, sd_audit_info_cb);
    SSL_CTX_set_msg_callback(ctx, sd_audit_msg_cb);
    if (cred != NULL &&
        SSL_CTX_use_cert_and_key(ctx, cred->crt, cred->key, cred->chain, 1) != 1)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Connects and prepares (does not start) a TLS client. 0, or -1 with
 * c->why; *tcp_failed tells that the endpoint could not be reached. */
static int sd_audit_open(struct sd_audit_run *r, struct sd_audit_conn *c,
                         const struct sd_audit_cred *cred, const struct sd_audit_tls *v,
                         const char *sni, SSL_SESSION *sess, int *tcp_failed)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->alert = -1;
    *tcp_failed = 0;
    c->deadline = sd_audit_now_ms() + r->o->timeout_ms;
    c->ctx = sd_audit_ctx_new(r, cred, v);
    if (c->ctx == NULL) {
        unsigned long e = ERR_peek_error();
        snprintf(c->why, sizeof(c->why), "cannot set up the client: %s",
                 e != 0 ? ERR_reason_error_string(e) : "unknown error");
        ERR_clear_error();
        return -1;
    }
    if (sd_audit_tcp(r->o, c) != 0) {
        *tcp_failed = 1;
        return -1;
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        (sni != NULL && SSL_set_tlsext_host_name(c->ssl, sni) != 1) ||
        (sess != NULL && SSL_set_session(c->ssl, sess) != 1)) {
        snprintf(c->why, sizeof(c->why), "cannot set up the client");
        ERR_clear_error();
        return -1;
    }
    if (r->host_is_ip && sni == NULL)
        (void)X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), r->o->host);
    else
        (void)SSL_set1_host(c->ssl, sni != NULL ? sni : r->o->host);
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    return 0;
}

enum sd_audit_op { SD_AUDIT_HANDSHAKE, SD_AUDIT_READ, SD_AUDIT_WRITE };

/* Runs one TLS operation to completion or c->deadline. */
static enum sd_audit_io sd_audit_step(struct sd_audit_conn *c, enum sd_audit_op op,
                                      void *buf, size_t len, size_t *done)
{
    size_t n = 0;
    int ret, e, w;

    for (;;) {
        ERR_clear_error();
        errno = 0;
        if (op == SD_AUDIT_HANDSHAKE)
            ret = SSL_do_handshake(c->ssl);
        else if (op == SD_AUDIT_READ)
            ret = SSL_read_ex(c->ssl, buf, len, &n);
        else
            ret = SSL_write_ex(c->ssl, buf, len, &n);
        if (ret == 1) {
            if (done != NULL)
                *done = n;
            return SD_AUDIT_IO_OK;
        }
        e = SSL_get_error(c->ssl, ret);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            w = sd_audit_wait(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                              c->deadline);
            if (w == 0) {
                snprintf(c->why, sizeof(c->why), "no answer");
                return SD_AUDIT_IO_TIMEOUT;
            }
            if (w < 0) {
                snprintf(c->why, sizeof(c->why), "poll: %s", strerror(errno));
                return SD_AUDIT_IO_FAILED;
            }
            continue;
        }
        if (c->alert >= 0) {
            char num[16];
            snprintf(c->why, sizeof(c->why), "alert %s",
                     sd_audit_alert_name(c->alert, num, sizeof(num)));
            ERR_clear_error();
            return SD_AUDIT_IO_FAILED;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            snprintf(c->why, sizeof(c->why), "connection closed");
            return SD_AUDIT_IO_CLOSED;
        }
        if (e == SSL_ERROR_SYSCALL) {
            if (errno == 0 || errno == EPIPE) {
                snprintf(c->why, sizeof(c->why), "connection closed");
                ERR_clear_error();
                return SD_AUDIT_IO_CLOSED;
            }
            snprintf(c->why, sizeof(c->why), "%s",
                     errno == ECONNRESET ? "connection reset" : strerror(errno));
            ERR_clear_error();
            return SD_AUDIT_IO_FAILED;
        }
        {
            unsigned long err = ERR_peek_error();
            const char *s = err != 0 ? ERR_reason_error_string(err) : NULL;
            snprintf(c->why, sizeof(c->why), "%s", s != NULL ? s : "TLS error");
        }
        ERR_clear_error();
        return SD_AUDIT_IO_FAILED;
    }
}

/* What came back after a completed handshake and a small request. */
enum sd_audit_kind {
    SD_AUDIT_GOT_ALERT,   /* a TLS alert and nothing else */
    SD_AUDIT_GOT_HTTP,    /* an HTTP status line */
    SD_AUDIT_GOT_DATA,    /* other application bytes */
    SD_AUDIT_GOT_SILENCE, /* nothing within the time limit */
    SD_AUDIT_GOT_CLOSE,   /* closed without an alert and without data */
    SD_AUDIT_GOT_RESET,   /* reset or another error, no alert */
};

struct sd_audit_answer {
    enum sd_audit_kind kind;
    uint64_t ms;              /* from the request to the end of the reading */
    int status;               /* HTTP status, when kind is GOT_HTTP */
    char line[72];            /* the status line, cleaned */
    char why[160];            /* for alerts and errors */
    char buf[SD_AUDIT_ANSWER_MAX];
    size_t len;
};

/* Is there a whole HTTP response with a Content-Length in a->buf? */
static int sd_audit_http_complete(const struct sd_audit_answer *a)
{
    const char *end, *p;
    size_t hdr;
    unsigned long cl;

    end = memmem(a->buf, a->len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    hdr = (size_t)(end - a->buf) + 4;
    for (p = a->buf; p != NULL && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
        p++;
        if ((size_t)(end - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
            cl = strtoul(p + 15, NULL, 10);
            return cl <= SD_AUDIT_ANSWER_MAX && a->len >= hdr + cl;
        }
    }
    return 0;
}

static int sd_audit_is_http(const char *buf, size_t len)
{
    return len >= 5 && memcmp(buf, "HTTP/", 5) == 0;
}

static void sd_audit_parse_status(struct sd_audit_answer *a)
{
    const char *sp;

    a->kind = SD_AUDIT_GOT_DATA;
    if (!sd_audit_is_http(a->buf, a->len))
        return;
    sp = memchr(a->buf, ' ', a->len);
    if (sp == NULL || (size_t)(sp - a->buf) + 4 > a->len)
        return;
    if (sp[1] < '1' || sp[1] > '5' || sp[2] < '0' || sp[2] > '9' ||
        sp[3] < '0' || sp[3] > '9')
        return;
    a->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    a->kind = SD_AUDIT_GOT_HTTP;
    sd_audit_clean(a->line, sizeof(a->line), a->buf, a->len, 60);
}

/*
 * Sends req after the handshake and reads what comes back within a fresh
 * time limit. With whole, reads until the server closes, a Content-Length
 * is satisfied or the buffer is full; otherwise until the first line.
 * With TLS 1.3 this is also where a server that wants a certificate says
 * so: its alert comes after the client's Finished.
 */
static void sd_audit_exchange(struct sd_audit_run *r, struct sd_audit_conn *c,
                              const char *req, int whole, struct sd_audit_answer *a)
{
    enum sd_audit_io io, wio;
    char wwhy[sizeof(c->why)];
    uint64_t t0 = sd_audit_now_ms();
    size_t n;

    a->kind = SD_AUDIT_GOT_SILENCE;
    a->ms = 0;
    a->status = 0;
    a->line[0] = '\0';
    a->why[0] = '\0';
    a->len = 0;
    c->deadline = t0 + r->o->timeout_ms;
    io = wio = sd_audit_step(c, SD_AUDIT_WRITE, (void *)req, strlen(req), &n);
    snprintf(wwhy, sizeof(wwhy), "%s", c->why);
    /* A server that refused at once may have reset the connection before
     * the request went out; its alert can still be waiting to be read. */
    if ((wio == SD_AUDIT_IO_CLOSED || wio == SD_AUDIT_IO_FAILED) && c->alert < 0)
        io = SD_AUDIT_IO_OK;
    while (io == SD_AUDIT_IO_OK && a->len < sizeof(a->buf)) {
        io = sd_audit_step(c, SD_AUDIT_READ, a->buf + a->len, sizeof(a->buf) - a->len, &n);
        if (io != SD_AUDIT_IO_OK)
            break;
        a->len += n;
        if (!whole && (!sd_audit_is_http(a->buf, a->len) ||
                       memchr(a->buf, '\n', a->len) != NULL))
            break;
        if (whole && sd_audit_http_complete(a))
            break;
    }
    a->ms = sd_audit_now_ms() - t0;
    if (wio != SD_AUDIT_IO_OK && a->len == 0 && c->alert < 0) {
        io = wio; /* nothing more to be read: the failed write tells */
        snprintf(c->why, sizeof(c->why), "%s", wwhy);
    }
    snprintf(a->why, sizeof(a->why), "%s", c->why);
    if (a->len > 0) {
        sd_audit_parse_status(a);
        return;
    }
    if (c->alert >= 0) {
        char num[16];
        a->kind = SD_AUDIT_GOT_ALERT;
        snprintf(a->why, sizeof(a->why), "alert %s",
                 sd_audit_alert_name(c->alert, num, sizeof(num)));
    } else if (io == SD_AUDIT_IO_TIMEOUT) {
        a->kind = SD_AUDIT_GOT_SILENCE;
    } else if (io == SD_AUDIT_IO_CLOSED) {
        a->kind = SD_AUDIT_GOT_CLOSE;
    } else {
        a->kind = SD_AUDIT_GOT_RESET;
    }
}

static void sd_audit_request(struct sd_audit_run *r, const char *sni, char *buf, size_t cap,
                             const char *extra)
{
    const char *host = sni != NULL ? sni : r->o->host;
    int v6 = strchr(host, ':') != NULL;

    snprintf(buf, cap,
             "GET / HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: steeldoor-audit\r\n"
             "Accept: */*\r\n%sConnection: close\r\n\r\n",
             v6 ? "[" : "", host, v6 ? "]" : "", r->o->port, extra != NULL ? extra : "");
}

/* ------------------------------------------------------------------ */
/* Report helpers                                                      */

static struct sd_audit_probe *sd_audit_add(struct sd_audit_run *r, const char *name,
                                           const char *expected)
{
    struct sd_audit_probe *p;

    if (r->rep->n >= SD_AUDIT_PROBES_MAX)
        abort(); /* a programming error: the table is fixed at compile time */
    p = &r->rep->probes[r->rep->n++];
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->expected = expected;
    p->verdict = SD_AUDIT_UNDETERMINED;
    p->cert_request = -1;
    return p;
}

static void sd_audit_set(struct sd_audit_probe *p, enum sd_audit_verdict v,
                         const char *fmt, ...) SD_PRINTF(3, 4);

static void sd_audit_set(struct sd_audit_probe *p, enum sd_audit_verdict v,
                         const char *fmt, ...)
{
    va_list ap;

    p->verdict = v;
    va_start(ap, fmt);
    vsnprintf(p->observed, sizeof(p->observed), fmt, ap);
    va_end(ap);
}

/* HTTP answers that mean "you are not welcome", as nginx gives them after
 * letting a client without a (good) certificate finish the handshake. */
static int sd_audit_refusal_status(int status)
{
    switch (status) {
    case 400: case 401: case 403: case 421: case 426: case 495: case 496: case 497:
        return 1;
    default:
        return 0;
    }
}

/* A connection that ended with neither data nor an alert. A close and a
 * reset are one kind: which of the two a client sees after the server
 * closes depends only on whether its request had arrived by then. */
static int sd_audit_is_end(int kind)
{
    return kind == SD_AUDIT_GOT_CLOSE || kind == SD_AUDIT_GOT_RESET;
}

/* The time class of an ending: at once, or only after a third of the
 * time limit (a server waiting for something, an idle timeout). */
static int sd_audit_is_late(const struct sd_audit_run *r, uint64_t ms)
{
    return ms * 3u >= (uint64_t)r->o->timeout_ms;
}

/* What came back after the handshake, in a few words. */
static void sd_audit_describe(const struct sd_audit_run *r, const struct sd_audit_answer *a,
                              char *buf, size_t cap)
{
    switch (a->kind) {
    case SD_AUDIT_GOT_ALERT:
        snprintf(buf, cap, "%.100s", a->why);
        break;
    case SD_AUDIT_GOT_HTTP:
        snprintf(buf, cap, "%.72s", a->line);
        break;
    case SD_AUDIT_GOT_DATA:
        snprintf(buf, cap, "%zu bytes back", a->len);
        break;
    case SD_AUDIT_GOT_SILENCE:
        snprintf(buf, cap, "no answer and no alert within %u ms", r->o->timeout_ms);
        break;
    case SD_AUDIT_GOT_CLOSE:
    case SD_AUDIT_GOT_RESET:
        if (sd_audit_is_late(r, a->ms))
            snprintf(buf, cap, "%.100s after %llu ms, no alert", a->why,
                     (unsigned long long)a->ms);
        else
            snprintf(buf, cap, "%.100s, no alert", a->why);
        break;
    }
}

/*
 * Did the server treat the probe exactly like the control? Then it did not
 * refuse it, whatever it did: the same kind of answer, the same HTTP
 * status, or a close/reset in the same time class as the control's.
 */
static int sd_audit_like_control(const struct sd_audit_run *r, const struct sd_audit_answer *a)
{
    if (sd_audit_is_end(r->ctl_kind) && sd_audit_is_end((int)a->kind))
        return r->ctl_late == sd_audit_is_late(r, a->ms);
    if (r->ctl_kind != (int)a->kind)
        return 0;
    if (a->kind == SD_AUDIT_GOT_HTTP)
        return r->ctl_status == a->status;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Probes                                                              */

static const struct sd_audit_tls sd_audit_modern = { 0, 0, 0 };

/*
 * The control must finish the handshake and must not be refused after it
 * by an alert. What it gets after its request is kept as the baseline the
 * refused probes are compared with. A server that never asked for a client
 * certificate has not refused the control whatever it does next; the
 * audit goes on and finds the door.
 */
static int sd_audit_control(struct sd_audit_run *r, struct sd_err *err)
{
    struct sd_audit_probe *p = sd_audit_add(r, "control", "handshake completes");
    struct sd_audit_conn c;
    struct sd_audit_answer *a = NULL;
    char req[SD_AUDIT_REQ_MAX];
    char extra[96] = "";
    long vr;
    int tcp_failed, rc = -1;
    enum sd_audit_io io;

    if (sd_audit_open(r, &c, &r->cred[SD_AUDIT_CONTROL], &sd_audit_modern, r->sni, NULL,
                      &tcp_failed) != 0) {
        p->no_connect = tcp_failed;
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", c.why);
        sd_err_set(err, "%s: %s", r->o->target, c.why);
        goto out;
    }
    io = sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL);
    p->cert_request = c.cert_req;
    if (io != SD_AUDIT_IO_OK) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "handshake failed: %s", c.why);
        sd_err_set(err, "%s: the valid certificate %s did not complete the handshake: %s",
                   r->o->target, r->o->cert, io == SD_AUDIT_IO_TIMEOUT ?
                   "timed out" : c.why);
        goto out;
    }
    snprintf(r->rep->tls_version, sizeof(r->rep->tls_version), "%s", SSL_get_version(c.ssl));
    vr = SSL_get_verify_result(c.ssl);
    if (vr != X509_V_OK)
        snprintf(extra, sizeof(extra), "; server cert not verified: %s",
                 X509_verify_cert_error_string(vr));
    a = malloc(sizeof(*a));
    if (a == NULL) {
        sd_err_set(err, "out of memory");
        goto out;
    }
    sd_audit_request(r, r->sni, req, sizeof(req), NULL);
    sd_audit_exchange(r, &c, req, 0, a);
    r->ctl_kind = (int)a->kind;
    r->ctl_status = a->status;
    r->ctl_late = sd_audit_is_late(r, a->ms);
    sd_audit_describe(r, a, r->ctl_what, sizeof(r->ctl_what));
    if (a->kind == SD_AUDIT_GOT_ALERT && c.cert_req) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "refused after the handshake: %s", a->why);
        sd_err_set(err, "%s: the valid certificate %s was refused after the handshake: %s",
                   r->o->target, r->o->cert, a->why);
        goto out;
    }
    sd_audit_set(p, SD_AUDIT_PASS, "%s; %s%s%s", r->rep->tls_version, r->ctl_what,
                 c.cert_req ? "" : "; no CertificateRequest", extra);
    rc = 0;
out:
    free(a);
    sd_audit_conn_close(&c);
    return rc;
}

/*
 * A client that must be refused: without a certificate (cred NULL) or with
 * a bad one.
 *
 * Refused in the handshake is a PASS. A handshake that completes although
 * the server never sent a CertificateRequest is an OPEN DOOR, whatever the
 * server does next: it let the client in without asking who it is.
 *
 * The server asked, and the handshake completed. With TLS 1.2 the server's
 * Finished has already accepted the client: anything that comes next is at
 * best REFUSED LATE. With TLS 1.3 the server judges the client's
 * certificate (or its empty Certificate) after the client's Finished:
 * an alert is a PASS, an HTTP refusal is REFUSED LATE, data or silence is
 * an OPEN DOOR. A close or reset without an alert counts as a refusal only
 * when the control was treated otherwise; exactly like the control means
 * the server accepted the probe (an optional client certificate): OPEN DOOR.
 */
static void sd_audit_refuse(struct sd_audit_run *r, const char *name, const char *expected,
                            const struct sd_audit_cred *cred)
{
    struct sd_audit_probe *p = sd_audit_add(r, name, expected);
    struct sd_audit_conn c;
    struct sd_audit_answer *a = NULL;
    char req[SD_AUDIT_REQ_MAX];
    char what[128];
    const char *ver;
    int tcp_failed, tls13, like;
    enum sd_audit_io io;

    if (sd_audit_open(r, &c, cred, &sd_audit_modern, r->sni, NULL, &tcp_failed) != 0) {
        p->no_connect = tcp_failed;
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", c.why);
        goto out;
    }
    io = sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL);
    /* Only what the handshake itself carried tells whether the server
     * asked; c.cert_req is not looked at again after the request. */
    p->cert_request = c.cert_req;
    if (io == SD_AUDIT_IO_TIMEOUT) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "handshake did not finish within %u ms",
                     r->o->timeout_ms);
        goto out;
    }
    if (io != SD_AUDIT_IO_OK) {
        sd_audit_set(p, SD_AUDIT_PASS, "refused in the handshake: %s", c.why);
        goto out;
    }
    ver = SSL_get_version(c.ssl);
    tls13 = SSL_version(c.ssl) >= TLS1_3_VERSION;
    a = malloc(sizeof(*a));
    if (a == NULL) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "out of memory");
        goto out;
    }
    sd_audit_request(r, r->sni, req, sizeof(req), NULL);
    sd_audit_exchange(r, &c, req, 0, a);
    sd_audit_describe(r, a, what, sizeof(what));
    if (!p->cert_request) {
        sd_audit_set(p, SD_AUDIT_OPEN, "%s handshake completed without a CertificateRequest; "
                     "then %s", ver, what);
        goto out;
    }
    like = sd_audit_like_control(r, a);
    switch (a->kind) {
    case SD_AUDIT_GOT_ALERT:
        /* TLS 1.3 refuses a certificate after the client's Finished; in
         * TLS 1.2 the server had already accepted it with its own Finished. */
        if (tls13)
            sd_audit_set(p, SD_AUDIT_PASS, "refused after %s Finished: %s", ver, what);
        else
            sd_audit_set(p, SD_AUDIT_LATE, "%s handshake completed, then %s", ver, what);
        break;
    case SD_AUDIT_GOT_HTTP:
        if (!sd_audit_refusal_status(a->status))
            sd_audit_set(p, SD_AUDIT_OPEN, "%s handshake completed; %s", ver, what);
        else if (!like)
            sd_audit_set(p, SD_AUDIT_LATE, "%s handshake completed; %s", ver, what);
        else
            sd_audit_set(p, SD_AUDIT_OPEN, "%s handshake completed; %s, as for the control",
                         ver, what);
        break;
    case SD_AUDIT_GOT_DATA:
        sd_audit_set(p, SD_AUDIT_OPEN, "%s handshake completed; %zu bytes came back",
                     ver, a->len);
        break;
    case SD_AUDIT_GOT_SILENCE:
        sd_audit_set(p, SD_AUDIT_OPEN, "%s handshake completed; no alert within %u ms",
                     ver, r->o->timeout_ms);
        break;
    case SD_AUDIT_GOT_CLOSE:
    case SD_AUDIT_GOT_RESET:
        if (like)
            sd_audit_set(p, SD_AUDIT_OPEN, "%s handshake completed; %s, as for the control",
                         ver, what);
        else if (tls13)
            sd_audit_set(p, SD_AUDIT_PASS, "refused after %s Finished: %s (control: %.72s)",
                         ver, what, r->ctl_what);
        else
            sd_audit_set(p, SD_AUDIT_LATE, "%s handshake completed; then %s", ver, what);
        break;
    }
out:
    /* What the door says about the server's configuration. */
    if (p->verdict == SD_AUDIT_LATE)
        p->finding = SD_AUDIT_F_LATE;
    else if (p->verdict == SD_AUDIT_OPEN)
        p->finding = !p->cert_request ? SD_AUDIT_F_NO_CLIENT_AUTH
                     : cred == NULL   ? SD_AUDIT_F_OPTIONAL
                                      : SD_AUDIT_F_UNVERIFIED;
    free(a);
    sd_audit_conn_close(&c);
}

/* TLS 1.0 / 1.1 with the valid certificate: completing is the door. */
static void sd_audit_old_version(struct sd_audit_run *r, const char *name, int version)
{
    struct sd_audit_probe *p = sd_audit_add(r, name, "refused");
    struct sd_audit_tls v = { version, version, 1 };
    struct sd_audit_conn c;
    int tcp_failed;
    enum sd_audit_io io;

    if (sd_audit_open(r, &c, &r->cred[SD_AUDIT_CONTROL], &v, r->sni, NULL,
                      &tcp_failed) != 0) {
        p->no_connect = tcp_failed;
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", c.why);
        goto out;
    }
    io = sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL);
    if (io == SD_AUDIT_IO_OK) {
        sd_audit_set(p, SD_AUDIT_OPEN, "handshake completed with %s", SSL_get_version(c.ssl));
        p->finding = SD_AUDIT_F_OLD_TLS;
    } else if (io == SD_AUDIT_IO_TIMEOUT)
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "handshake did not finish within %u ms",
                     r->o->timeout_ms);
    else if (c.alert < 0 && strstr(c.why, "no protocols available") != NULL)
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "this OpenSSL cannot offer it: %s", c.why);
    else
        sd_audit_set(p, SD_AUDIT_PASS, "refused: %s", c.why);
out:
    sd_audit_conn_close(&c);
}

/* A plain-text HTTP request on the TLS port. */
static void sd_audit_plaintext(struct sd_audit_run *r)
{
    struct sd_audit_probe *p = sd_audit_add(r, "plaintext-http", "no HTTP answer");
    struct sd_audit_conn c;
    char req[SD_AUDIT_REQ_MAX];
    char buf[512];
    char line[72];
    size_t len = 0;
    ssize_t n;
    int w;

    memset(&c, 0, sizeof(c));
    c.fd = -1;
    c.deadline = sd_audit_now_ms() + r->o->timeout_ms;
    if (sd_audit_tcp(r->o, &c) != 0) {
        p->no_connect = 1;
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", c.why);
        return;
    }
    sd_audit_request(r, r->sni, req, sizeof(req), NULL);
    /* A few hundred bytes always fit in an empty socket buffer. */
    if (send(c.fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
        sd_audit_set(p, SD_AUDIT_PASS, "refused: %s", strerror(errno));
        goto out;
    }
    c.deadline = sd_audit_now_ms() + r->o->timeout_ms;
    while (len < sizeof(buf) && memchr(buf, '\n', len) == NULL) {
        w = sd_audit_wait(c.fd, POLLIN, c.deadline);
        if (w <= 0)
            break;
        n = recv(c.fd, buf + len, sizeof(buf) - len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            if (len == 0) {
                sd_audit_set(p, SD_AUDIT_PASS, "%s without an HTTP answer",
                             n == 0 ? "closed" : "reset");
                goto out;
            }
            break;
        }
        len += (size_t)n;
        if ((unsigned char)buf[0] == 0x15) /* a TLS alert record */
            break;
    }
    if (len == 0)
        sd_audit_set(p, SD_AUDIT_PASS, "no answer within %u ms", r->o->timeout_ms);
    else if ((unsigned char)buf[0] == 0x15)
        sd_audit_set(p, SD_AUDIT_PASS, "TLS alert, no HTTP");
    else if (sd_audit_is_http(buf, len)) {
        /* A 2xx is content served without TLS; anything else (a refusal,
         * a redirect to https) is an HTTP server reading plain text on the
         * TLS port: past the TLS layer, but no further. */
        const char *sp = memchr(buf, ' ', len);
        int ok2xx = sp != NULL && (size_t)(sp - buf) + 1 < len && sp[1] == '2';
        sd_audit_clean(line, sizeof(line), buf, len, 60);
        sd_audit_set(p, ok2xx ? SD_AUDIT_OPEN : SD_AUDIT_LATE, "HTTP answered without TLS: %s",
                     line);
        p->finding = SD_AUDIT_F_PLAINTEXT;
    } else
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%zu non-TLS, non-HTTP bytes came back", len);
out:
    sd_audit_conn_close(&c);
}

/*
 * Ends a connection as a well-behaved client does: its close_notify, then
 * whatever the server still sends, up to the server's own close_notify or
 * the end of the stream, for at most a third of the time limit. An OpenSSL
 * server that frees a connection before it has sent its close_notify drops
 * that connection's session from its cache (ssl_clear_bad_session): an
 * abrupt close here would decide by a race whether the next connection
 * finds a session to resume at all.
 */
static void sd_audit_close_cleanly(struct sd_audit_run *r, struct sd_audit_conn *c)
{
    char buf[4096];
    size_t n;

    c->deadline = sd_audit_now_ms() + r->o->timeout_ms / 3;
    ERR_clear_error();
    if (SSL_shutdown(c->ssl) < 0) {
        ERR_clear_error();
        return;
    }
    while (sd_audit_step(c, SD_AUDIT_READ, buf, sizeof(buf), &n) == SD_AUDIT_IO_OK)
        ;
    ERR_clear_error();
}

/* One connection with the control under sni, resuming sess if given:
 * 0 done (*reused set, *out the session when out is non-NULL), -2 the
 * server refused the handshake with an alert, -1 failed otherwise; why
 * says what happened. */
static int sd_audit_session(struct sd_audit_run *r, const char *sni, SSL_SESSION *sess,
                            int *reused, SSL_SESSION **out, char *why, size_t cap)
{
    struct sd_audit_conn c;
    struct sd_audit_answer *a = NULL;
    char req[SD_AUDIT_REQ_MAX];
    int tcp_failed, rc = -1;

    *reused = 0;
    if (sd_audit_open(r, &c, &r->cred[SD_AUDIT_CONTROL], &sd_audit_modern, sni, sess,
                      &tcp_failed) != 0 ||
        sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL) != SD_AUDIT_IO_OK) {
        snprintf(why, cap, "%s", c.why);
        if (c.ssl != NULL && c.alert >= 0)
            rc = -2;
        goto out;
    }
    *reused = SSL_session_reused(c.ssl);
    /* One exchange so that TLS 1.3 NewSessionTicket messages are read. */
    a = malloc(sizeof(*a));
    if (a == NULL) {
        snprintf(why, cap, "out of memory");
        goto out;
    }
    sd_audit_request(r, sni, req, sizeof(req), NULL);
    sd_audit_exchange(r, &c, req, 0, a);
    if (out != NULL) {
        /* A copy: SSL_free() of a connection that was not shut down marks
         * its own session as not resumable. */
        SSL_SESSION *cur = SSL_get0_session(c.ssl);
        *out = cur != NULL ? SSL_SESSION_dup(cur) : NULL;
        if (*out != NULL && !SSL_SESSION_is_resumable(*out)) {
            SSL_SESSION_free(*out);
            *out = NULL;
        }
    }
    sd_audit_close_cleanly(r, &c);
    rc = 0;
out:
    free(a);
    sd_audit_conn_close(&c);
    return rc;
}

/* CVE-2025-23419 pattern: a session made under one name must not resume
 * under another, whose rules for client certificates may differ. */
static void sd_audit_sni_resumption(struct sd_audit_run *r)
{
    struct sd_audit_probe *p = sd_audit_add(r, "sni-resumption", "not resumed under B");
    const char *na, *nb;
    SSL_SESSION *sess = NULL;
    char why[160];
    int reused, rc;

    if (r->o->n_names < 2) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "needs --servername A --servername B");
        return;
    }
    na = r->o->names[0];
    nb = r->o->names[1];
    if (sd_audit_session(r, na, NULL, &reused, &sess, why, sizeof(why)) != 0) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "no session under %s: %s", na, why);
        goto out;
    }
    if (sess == NULL) {
        sd_audit_set(p, SD_AUDIT_PASS, "no resumable session was issued under %s", na);
        goto out;
    }
    rc = sd_audit_session(r, nb, sess, &reused, NULL, why, sizeof(why));
    if (rc == -2) {
        /* Refused rather than resumed: what nginx does since its fix for
         * CVE-2025-23419. */
        sd_audit_set(p, SD_AUDIT_PASS, "resuming under %s refused: %s", nb, why);
        goto out;
    }
    if (rc != 0) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "resumption under %s failed: %s", nb, why);
        goto out;
    }
    if (reused) {
        sd_audit_set(p, SD_AUDIT_OPEN, "session from %s resumed under %s", na, nb);
        p->finding = SD_AUDIT_F_SNI_RESUMPTION;
        goto out;
    }
    /* For the report: does it resume at all? */
    if (sd_audit_session(r, na, sess, &reused, NULL, why, sizeof(why)) == 0 && reused)
        sd_audit_set(p, SD_AUDIT_PASS, "full handshake under %s (resumes under %s)", nb, na);
    else
        sd_audit_set(p, SD_AUDIT_PASS, "full handshake under %s (no resumption at all)", nb);
out:
    SSL_SESSION_free(sess);
}

/* A client-initiated renegotiation in TLS 1.2 with the control. */
static void sd_audit_renegotiation(struct sd_audit_run *r)
{
    struct sd_audit_probe *p = sd_audit_add(r, "renegotiation", "refused");
    struct sd_audit_tls v = { TLS1_2_VERSION, TLS1_2_VERSION, 0 };
    struct sd_audit_conn c;
    int tcp_failed;
    enum sd_audit_io io;

    if (sd_audit_open(r, &c, &r->cred[SD_AUDIT_CONTROL], &v, r->sni, NULL,
                      &tcp_failed) != 0) {
        p->no_connect = tcp_failed;
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", c.why);
        goto out;
    }
    io = sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL);
    if (io == SD_AUDIT_IO_TIMEOUT) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "TLS 1.2 handshake did not finish within %u ms",
                     r->o->timeout_ms);
        goto out;
    }
    if (io != SD_AUDIT_IO_OK) {
        sd_audit_set(p, SD_AUDIT_PASS, "TLS 1.2 refused (%s): nothing to renegotiate", c.why);
        goto out;
    }
    if (!SSL_get_secure_renegotiation_support(c.ssl)) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "server lacks secure renegotiation (RFC 5746); "
                     "not tried");
        goto out;
    }
    if (SSL_renegotiate(c.ssl) != 1) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "this client cannot start a renegotiation");
        ERR_clear_error();
        goto out;
    }
    c.deadline = sd_audit_now_ms() + r->o->timeout_ms;
    io = sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL);
    if (io == SD_AUDIT_IO_OK && !SSL_renegotiate_pending(c.ssl)) {
        sd_audit_set(p, SD_AUDIT_OPEN, "renegotiation completed");
        p->finding = SD_AUDIT_F_RENEGOTIATION;
    } else if (io == SD_AUDIT_IO_TIMEOUT)
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "no answer within %u ms", r->o->timeout_ms);
    else if (io == SD_AUDIT_IO_OK)
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "renegotiation still pending");
    else
        sd_audit_set(p, SD_AUDIT_PASS, "refused: %s", c.why);
out:
    sd_audit_conn_close(&c);
}

/* Identity headers a backend might trust, each with its own forged value. */
static const char *const sd_audit_headers[] = {
    "X-Forwarded-Client-Cert",
    "X-SSL-Client-Cert",
    "X-SSL-Client-S-DN",
    "X-SSL-Client-Verify",
    "Client-Cert",
};
#define SD_AUDIT_NHEADERS (sizeof(sd_audit_headers) / sizeof(sd_audit_headers[0]))

/* With --http: forged identity headers after a valid handshake. A backend
 * that echoes requests shows whether the forged values reached it. */
static void sd_audit_identity_headers(struct sd_audit_run *r)
{
    struct sd_audit_probe *p = sd_audit_add(r, "identity-headers",
                                            "forged headers not forwarded");
    struct sd_audit_conn c;
    struct sd_audit_answer *a = NULL;
    unsigned char rnd[8];
    char nonce[17];
    char values[SD_AUDIT_NHEADERS][64];
    char marker[64];
    char extra[1024];
    char req[SD_AUDIT_REQ_MAX];
    char found[160] = "";
    size_t i, off = 0, flen = 0;
    int tcp_failed, forged = 0;

    if (!r->o->http) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "needs --http");
        return;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "no random bytes");
        ERR_clear_error();
        return;
    }
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
    snprintf(marker, sizeof(marker), "sdaudit-marker-%s", nonce);
    /* Not a name any proxy reserves (steeldoor's HTTP mode removes every
     * X-Steeldoor-*): the marker must reach the backend. */
    off = (size_t)snprintf(extra, sizeof(extra), "X-Audit-Marker: %s\r\n", marker);
    for (i = 0; i < SD_AUDIT_NHEADERS; i++) {
        /* Shaped like the real thing where that is simple; each carries
         * a unique token to look for in the echo. */
        snprintf(values[i], sizeof(values[i]), "sdaudit%zuforged%s", i, nonce);
        if (i == 0)
            off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                                    "%s: Subject=\"CN=%s\";URI=spiffe://forged/%s\r\n",
                                    sd_audit_headers[i], values[i], values[i]);
        else if (i == 2)
            off += (size_t)snprintf(extra + off, sizeof(extra) - off, "%s: CN=%s\r\n",
                                    sd_audit_headers[i], values[i]);
        else if (i == 4)
            off += (size_t)snprintf(extra + off, sizeof(extra) - off, "%s: :%s:\r\n",
                                    sd_audit_headers[i], values[i]);
        else
            off += (size_t)snprintf(extra + off, sizeof(extra) - off, "%s: %s\r\n",
                                    sd_audit_headers[i], values[i]);
    }
    if (sd_audit_open(r, &c, &r->cred[SD_AUDIT_CONTROL], &sd_audit_modern, r->sni, NULL,
                      &tcp_failed) != 0) {
        p->no_connect = tcp_failed;
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", c.why);
        goto out;
    }
    if (sd_audit_step(&c, SD_AUDIT_HANDSHAKE, NULL, 0, NULL) != SD_AUDIT_IO_OK) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "handshake failed: %s", c.why);
        goto out;
    }
    a = malloc(sizeof(*a));
    if (a == NULL) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "out of memory");
        goto out;
    }
    sd_audit_request(r, r->sni, req, sizeof(req), extra);
    sd_audit_exchange(r, &c, req, 1, a);
    if (a->kind != SD_AUDIT_GOT_HTTP) {
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s", a->kind == SD_AUDIT_GOT_DATA ?
                     "the answer is not HTTP" : "no HTTP answer");
        goto out;
    }
    for (i = 0; i < SD_AUDIT_NHEADERS; i++) {
        if (memmem(a->buf, a->len, values[i], strlen(values[i])) == NULL)
            continue;
        forged++;
        if (flen < sizeof(found))
            flen += (size_t)snprintf(found + flen, sizeof(found) - flen, "%s%s",
                                     forged > 1 ? ", " : "", sd_audit_headers[i]);
    }
    if (forged > 0) {
        sd_audit_set(p, SD_AUDIT_OPEN, "forged %s reached the backend", found);
        p->finding = SD_AUDIT_F_HEADERS;
    } else if (memmem(a->buf, a->len, marker, strlen(marker)) != NULL)
        sd_audit_set(p, SD_AUDIT_PASS, "headers echoed, forged ones removed or replaced");
    else
        sd_audit_set(p, SD_AUDIT_UNDETERMINED, "%s; the backend echoes no headers", a->line);
out:
    free(a);
    sd_audit_conn_close(&c);
}

/* ------------------------------------------------------------------ */

int sd_audit_run(const struct sd_audit_opts *o, struct sd_audit_report *rep,
                 struct sd_err *err)
{
    struct sd_audit_run r;
    unsigned char addr[16];
    size_t i;
    int rc = -1;

    memset(&r, 0, sizeof(r));
    r.o = o;
    r.rep = rep;
    r.host_is_ip = inet_pton(AF_INET, o->host, addr) == 1 ||
                   inet_pton(AF_INET6, o->host, addr) == 1;
    r.sni = o->n_names > 0 ? o->names[0] : (r.host_is_ip ? NULL : o->host);
    ERR_clear_error();
    if (sd_audit_load_control(o, &r.cred[SD_AUDIT_CONTROL], err) != 0)
        goto out;
    r.store = sd_audit_load_store(o, err);
    if (r.store == NULL)
        goto out;
    r.ca = sd_audit_control_issuer(o, r.store, &r.cred[SD_AUDIT_CONTROL], err);
    if (r.ca == NULL)
        goto out;
    if (sd_audit_make_creds(&r, err) != 0)
        goto out;

    if (sd_audit_control(&r, err) != 0)
        goto out;
    sd_audit_refuse(&r, "no-cert", "refused in the handshake", NULL);
    sd_audit_refuse(&r, "self-signed", "refused in the handshake",
                    &r.cred[SD_AUDIT_SELF_SIGNED]);
    sd_audit_refuse(&r, "unknown-ca", "refused in the handshake",
                    &r.cred[SD_AUDIT_UNKNOWN_CA]);
    sd_audit_refuse(&r, "expired", "refused in the handshake", &r.cred[SD_AUDIT_EXPIRED]);
    sd_audit_refuse(&r, "not-yet-valid", "refused in the handshake",
                    &r.cred[SD_AUDIT_NOT_YET_VALID]);
    sd_audit_refuse(&r, "serverauth-eku", "refused in the handshake",
                    &r.cred[SD_AUDIT_SERVER_EKU]);
    sd_audit_refuse(&r, "forged-signature", "refused in the handshake",
                    &r.cred[SD_AUDIT_FORGED]);
    sd_audit_old_version(&r, "tls1.0", TLS1_VERSION);
    sd_audit_old_version(&r, "tls1.1", TLS1_1_VERSION);
    sd_audit_plaintext(&r);
    sd_audit_sni_resumption(&r);
    sd_audit_renegotiation(&r);
    sd_audit_identity_headers(&r);
    rc = 0;
out:
    for (i = 0; i < SD_AUDIT_NCREDS; i++)
        sd_audit_cred_free(&r.cred[i]);
    sd_audit_cred_free(&r.unknown_ca);
    sd_audit_cred_free(&r.impostor_ca);
    X509_free(r.ca);
    X509_STORE_free(r.store);
    ERR_clear_error();
    return rc;
}
