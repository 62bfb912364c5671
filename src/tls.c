/*
 * tls.c - OpenSSL server contexts and connections (see sd/tls.h).
 *
 * Everything security-relevant is set here once per listener, before any
 * worker starts, so a connection cannot end up with weaker settings than its
 * listener, and no worker repeats file parsing or algorithm set-up.
 */
#include "sd/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* TLS 1.2 is allowed only with forward secrecy (ECDHE) and AEAD ciphers. */
#define SD_TLS12_CIPHERS                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"             \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"             \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define SD_TLS13_CIPHERS                                                     \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define SD_TLS_GROUPS "X25519:P-256:P-384"
/* Sessions (and TLS 1.3 tickets) live five minutes, as nginx's default. */
#define SD_TLS_SESSION_TIMEOUT 300

struct sd_tls {
    SSL_CTX *ctx;
};

struct sd_tls_conn {
    SSL *ssl;
    X509 *refused_leaf;  /* the leaf that failed verification, for the log */
    int verify_err;      /* first X509_V_ERR_* seen, 0 if none */
    const char *reason;  /* stable word for the log */
    const char *detail;  /* static text from OpenSSL or steeldoor */
};

void sd_tls_init(void)
{
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
}

/* ---------------------------------------------------------------- context */

static const char *sd_tls_verify_reason(int verr)
{
    switch (verr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "unknown_ca";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate_expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate_not_yet_valid";
    case X509_V_ERR_INVALID_PURPOSE:
        return "wrong_eku";
    case X509_V_ERR_CERT_REVOKED:
        return "certificate_revoked";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return "chain_too_long";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return "unknown_ca";
    default:
        return "bad_certificate";
    }
}

/*
 * Called by OpenSSL for each certificate of the client's chain, root first.
 * Records the first failure for the log; on the leaf, additionally requires
 * the extendedKeyUsage extension to list clientAuth. (RFC 5280 lets a
 * certificate without EKU be used for anything; a gateway that admits
 * programs by certificate should not accept a certificate that was never
 * issued for client authentication, so steeldoor requires it explicitly.)
 */
static int sd_tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sd_tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);

    if (ok && X509_STORE_CTX_get_error_depth(xs) == 0 && cert != NULL) {
        uint32_t flags = X509_get_extension_flags(cert);
        if (!(flags & EXFLAG_XKUSAGE) ||
            !(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT)) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
            ok = 0;
        }
    }
    if (!ok && c != NULL) {
        if (c->verify_err == 0)
            c->verify_err = X509_STORE_CTX_get_error(xs);
        if (c->refused_leaf == NULL) {
            X509 *leaf = X509_STORE_CTX_get0_cert(xs);
            if (leaf != NULL && X509_up_ref(leaf))
                c->refused_leaf = leaf;
        }
    }
    return ok;
}

static int sd_tls_check_readable(const char *path, const char *what,
                                 struct sd_err *err)
{
    struct stat st;
    FILE *f;

    if (stat(path, &st) != 0)
        return sd_err_set(err, "%s: cannot read %s: %s", path, what, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sd_err_set(err, "%s: cannot read %s: not a regular file", path, what);
    f = fopen(path, "rb");
    if (f == NULL)
        return sd_err_set(err, "%s: cannot read %s: %s", path, what, strerror(errno));
    fclose(f);
    return 0;
}

static int sd_tls_check_validity(X509 *x, const char *path, struct sd_err *err)
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
        return sd_err_set(err, "%s: server certificate expired (notAfter %s)", path, when);
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        return sd_err_set(err, "%s: server certificate is not valid yet", path);
    return 0;
}

/* Loads the CA bundle: every certificate in it must be a CA certificate
 * (a leaf in a trust bundle would silently become a trust anchor), and there
 * must be at least one. Feeds the session id context digest with each CA so
 * that sessions are bound to this trust. */
static int sd_tls_load_cas(SSL_CTX *ctx, const char *path, EVP_MD_CTX *sid,
                           struct sd_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = NULL;
    X509 *x = NULL;
    int count = 0, rc = -1, index = 0;

    if (sd_tls_check_readable(path, "CA bundle", err) != 0)
        return -1;
    bio = BIO_new_file(path, "rb");
    if (bio == NULL) {
        sd_err_openssl(err, "%s: cannot open CA bundle", path);
        goto out;
    }
    for (;;) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                break;
            }
            sd_err_openssl(err, "%s: certificate %d of the CA bundle cannot be parsed",
                           path, index + 1);
            goto out;
        }
        index++;
        if (X509_check_ca(x) != 1) {
            char subj[256];
            X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
            sd_err_set(err, "%s: certificate %d (%s) is not a CA certificate "
                       "(basicConstraints CA:TRUE missing)", path, index, subj);
            goto out;
        }
        if (!X509_STORE_add_cert(store, x) || !SSL_CTX_add_client_CA(ctx, x) ||
            !X509_digest(x, EVP_sha256(), md, &mdlen) ||
            !EVP_DigestUpdate(sid, md, mdlen)) {
            sd_err_openssl(err, "%s: cannot add CA certificate %d", path, index);
            goto out;
        }
        X509_free(x);
        x = NULL;
        count++;
    }
    if (count == 0) {
        sd_err_set(err, "%s: CA bundle contains no CA certificate", path);
        goto out;
    }
    rc = 0;
out:
    X509_free(x);
    BIO_free(bio);
    return rc;
}

static int sd_tls_load_identity(SSL_CTX *ctx, const struct sd_listener_conf *lc,
                                struct sd_err *err)
{
    struct stat st;

    if (sd_tls_check_readable(lc->cert, "certificate", err) != 0 ||
        sd_tls_check_readable(lc->key, "private key", err) != 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, lc->cert) != 1)
        return sd_err_openssl(err, "%s: cannot load certificate chain", lc->cert);
    if (sd_tls_check_validity(SSL_CTX_get0_certificate(ctx), lc->cert, err) != 0)
        return -1;
    if (SSL_CTX_use_PrivateKey_file(ctx, lc->key, SSL_FILETYPE_PEM) != 1)
        return sd_err_openssl(err, "%s: cannot load private key", lc->key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return sd_err_openssl(err, "%s: private key does not match certificate %s",
                              lc->key, lc->cert);
    if (stat(lc->key, &st) == 0 && (st.st_mode & 077) != 0)
        sd_log_msg("warn", "config", "%s: private key is readable by group or others "
                   "(mode %03o); it should be 0600", lc->key, st.st_mode & 0777);
    return 0;
}

struct sd_tls *sd_tls_server_new(const struct sd_listener_conf *lc,
                                 struct sd_err *err)
{
    struct sd_tls *tls = NULL;
    SSL_CTX *ctx = NULL;
    EVP_MD_CTX *sid = NULL;
    unsigned char sidbuf[EVP_MAX_MD_SIZE];
    unsigned int sidlen = 0;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    sid = EVP_MD_CTX_new();
    tls = calloc(1, sizeof(*tls));
    if (ctx == NULL || sid == NULL || tls == NULL ||
        !EVP_DigestInit_ex(sid, EVP_sha256(), NULL)) {
        sd_err_openssl(err, "listener %s: cannot create TLS context", lc->name);
        goto fail;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, SD_TLS12_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(ctx, SD_TLS13_CIPHERS) ||
        !SSL_CTX_set1_groups_list(ctx, SD_TLS_GROUPS)) {
        sd_err_openssl(err, "listener %s: cannot set TLS parameters", lc->name);
        goto fail;
    }
    SSL_CTX_set_security_level(ctx, 2);
    /* IGNORE_UNEXPECTED_EOF: a TCP FIN without close_notify is treated as
     * the client's half-close, as for a plain TCP proxy; the byte stream is
     * forwarded as is and the backend sees the FIN. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    /* The whole point of steeldoor: no certificate, no handshake. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       sd_tls_verify_cb);
    SSL_CTX_set_verify_depth(ctx, SD_DEFAULT_VERIFY_DEPTH);
    if (!SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT)) {
        sd_err_openssl(err, "listener %s: cannot set certificate purpose", lc->name);
        goto fail;
    }
    SSL_CTX_set_timeout(ctx, SD_TLS_SESSION_TIMEOUT);
    SSL_CTX_set_num_tickets(ctx, 1);

    if (sd_tls_load_identity(ctx, lc, err) != 0 ||
        sd_tls_load_cas(ctx, lc->cacert, sid, err) != 0)
        goto fail;

    /* Session id context: a digest of the listener's name, address and
     * trust anchors. OpenSSL refuses to resume a session whose context
     * differs, so a session from one listener never resumes on another. */
    if (!EVP_DigestUpdate(sid, lc->name, strlen(lc->name) + 1) ||
        !EVP_DigestUpdate(sid, lc->listen, strlen(lc->listen) + 1) ||
        !EVP_DigestFinal_ex(sid, sidbuf, &sidlen) ||
        !SSL_CTX_set_session_id_context(ctx, sidbuf,
                                        sidlen > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH : sidlen)) {
        sd_err_openssl(err, "listener %s: cannot set session id context", lc->name);
        goto fail;
    }
    EVP_MD_CTX_free(sid);
    tls->ctx = ctx;
    return tls;
fail:
    EVP_MD_CTX_free(sid);
    SSL_CTX_free(ctx);
    free(tls);
    return NULL;
}

void sd_tls_free(struct sd_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls);
}

/* ------------------------------------------------------------- connection */

struct sd_tls_conn *sd_tls_conn_new(struct sd_tls *tls, int fd)
{
    struct sd_tls_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->ssl = SSL_new(tls->ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, fd)) {
        ERR_clear_error();
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_accept_state(c->ssl);
    return c;
}

void sd_tls_conn_free(struct sd_tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    X509_free(c->refused_leaf);
    free(c);
}

/* Maps a failed handshake to a log reason. The verify callback's record is
 * the most precise; otherwise OpenSSL's first queued reason. */
static void sd_tls_conn_handshake_failed(struct sd_tls_conn *c, int sslerr)
{
    unsigned long e = ERR_peek_error();

    if (c->verify_err != 0) {
        c->reason = sd_tls_verify_reason(c->verify_err);
        c->detail = X509_verify_cert_error_string(c->verify_err);
    } else if (e != 0) {
        c->detail = ERR_reason_error_string(e);
        switch (ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            c->reason = "no_client_certificate";
            break;
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_UNKNOWN_PROTOCOL:
            c->reason = "protocol_version";
            break;
        case SSL_R_HTTP_REQUEST:
            c->reason = "plaintext_http";
            break;
        case SSL_R_NO_SHARED_CIPHER:
            c->reason = "no_shared_cipher";
            break;
        default:
            c->reason = "handshake_failed";
            break;
        }
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        c->reason = "handshake_aborted";
        c->detail = "client closed the connection during the handshake";
    } else {
        c->reason = "handshake_failed";
    }
    ERR_clear_error();
}

/* Turns SSL_get_error() into an sd_io for reads, writes and shutdown. */
static enum sd_io sd_tls_io_result(struct sd_tls_conn *c, int ret)
{
    int e = SSL_get_error(c->ssl, ret);

    switch (e) {
    case SSL_ERROR_WANT_READ:
        return SD_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SD_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return SD_IO_EOF;
    case SSL_ERROR_SYSCALL:
        if (c->reason == NULL) {
            c->reason = "client_reset";
            c->detail = errno != 0 ? strerror(errno) : "connection closed";
        }
        ERR_clear_error();
        return SD_IO_ERROR;
    default:
        if (c->reason == NULL) {
            unsigned long err = ERR_peek_error();
            /* A handshake in progress after the first one finished can only
             * be a client's renegotiation attempt, which steeldoor refuses. */
            c->reason = SSL_in_init(c->ssl) ? "renegotiation_refused" : "tls_error";
            c->detail = err != 0 ? ERR_reason_error_string(err) : NULL;
        }
        ERR_clear_error();
        return SD_IO_ERROR;
    }
}

enum sd_io sd_tls_handshake(struct sd_tls_conn *c)
{
    int ret, e;

    errno = 0;
    ret = SSL_do_handshake(c->ssl);
    if (ret == 1)
        return SD_IO_OK;
    e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ)
        return SD_IO_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return SD_IO_WANT_WRITE;
    sd_tls_conn_handshake_failed(c, e);
    return SD_IO_ERROR;
}

enum sd_io sd_tls_read(struct sd_tls_conn *c, void *buf, size_t len, size_t *n)
{
    errno = 0;
    if (SSL_read_ex(c->ssl, buf, len, n) == 1)
        return SD_IO_OK;
    return sd_tls_io_result(c, 0);
}

enum sd_io sd_tls_write(struct sd_tls_conn *c, const void *buf, size_t len,
                        size_t *n)
{
    errno = 0;
    if (SSL_write_ex(c->ssl, buf, len, n) == 1)
        return SD_IO_OK;
    return sd_tls_io_result(c, 0);
}

enum sd_io sd_tls_shutdown(struct sd_tls_conn *c)
{
    int ret;

    errno = 0;
    ret = SSL_shutdown(c->ssl);
    if (ret >= 0)
        return SD_IO_OK; /* 0: our close_notify is sent, theirs not yet seen */
    return sd_tls_io_result(c, ret);
}

const char *sd_tls_conn_reason(const struct sd_tls_conn *c)
{
    return c->reason;
}

const char *sd_tls_conn_detail(const struct sd_tls_conn *c)
{
    return c->detail;
}

/* ---------------------------------------------------------------- logging */

static void sd_tls_log_subject(X509 *x, struct sd_logline *l)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (b == NULL)
        return;
    /* RFC 2253 form ("CN=billing,O=Example"), UTF-8 kept, specials escaped. */
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        n = BIO_get_mem_data(b, &data);
        if (n >= 0)
            sd_log_strn(l, "subject", data, (size_t)n);
    }
    BIO_free(b);
}

static void sd_tls_log_sans(X509 *x, struct sd_logline *l)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i;

    sd_log_array_begin(l, "sans");
    for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const char *prefix = NULL;
        const ASN1_STRING *s = NULL;
        char tmp[600];
        int n;

        switch (gn->type) {
        case GEN_URI: prefix = "URI:"; s = gn->d.uniformResourceIdentifier; break;
        case GEN_DNS: prefix = "DNS:"; s = gn->d.dNSName; break;
        case GEN_EMAIL: prefix = "email:"; s = gn->d.rfc822Name; break;
        case GEN_IPADD: {
            char ip[INET6_ADDRSTRLEN] = "?";
            const ASN1_OCTET_STRING *o = gn->d.iPAddress;
            if (o->length == 4)
                inet_ntop(AF_INET, o->data, ip, sizeof(ip));
            else if (o->length == 16)
                inet_ntop(AF_INET6, o->data, ip, sizeof(ip));
            n = snprintf(tmp, sizeof(tmp), "IP:%s", ip);
            sd_log_array_strn(l, tmp, (size_t)n);
            continue;
        }
        default:
            continue;
        }
        /* Lengths, not C strings: an embedded NUL is logged escaped, never
         * allowed to shorten the name. */
        n = snprintf(tmp, sizeof(tmp), "%s", prefix);
        if (s->length > 0) {
            size_t take = (size_t)s->length < sizeof(tmp) - (size_t)n
                              ? (size_t)s->length : sizeof(tmp) - (size_t)n;
            memcpy(tmp + n, s->data, take);
            n += (int)take;
        }
        sd_log_array_strn(l, tmp, (size_t)n);
    }
    sd_log_array_end(l);
    GENERAL_NAMES_free(names);
}

void sd_tls_conn_log(const struct sd_tls_conn *c, struct sd_logline *l)
{
    X509 *peer;

    if (SSL_get_current_cipher(c->ssl) != NULL) {
        sd_log_str(l, "tls_version", SSL_get_version(c->ssl));
        sd_log_str(l, "cipher", SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)));
        sd_log_bool(l, "resumed", SSL_session_reused(c->ssl));
    }
    /* On resumption the certificate comes from the session, which was only
     * created after this same verification passed. */
    peer = SSL_get0_peer_certificate(c->ssl);
    if (peer == NULL)
        peer = c->refused_leaf;
    if (peer != NULL) {
        sd_tls_log_subject(peer, l);
        sd_tls_log_sans(peer, l);
    }
}
