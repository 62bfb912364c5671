/*
 * ctx.c - TLS contexts, server and client (see sd/tls.h).
 *
 * Everything security-relevant is set here once per context, before any
 * worker starts, so a connection cannot end up with weaker settings than its
 * listener, and no worker repeats file parsing or algorithm set-up. Server
 * and client contexts share one fixed policy (sd_tls_ctx_policy): there is
 * no switch to weaken it.
 */
#include "tls_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "sd/files.h"
#include "sni.h"

/* TLS 1.2 is allowed only with forward secrecy (ECDHE) and AEAD ciphers. */
#define SD_TLS12_CIPHERS                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"             \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"             \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define SD_TLS13_CIPHERS                                                     \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define SD_TLS_GROUPS "X25519:P-256:P-384"

/* Bumped whenever the fixed admission policy in these files changes (EKU,
 * CA leaves, identity rules), so that no session made under the old one
 * could ever resume under the new. */
#define SD_TLS_ADMISSION_POLICY "steeldoor-admission-2"

int sd_tls_init(struct sd_err *err)
{
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
    if (sd_tls_bio_init() != 0)
        return sd_err_openssl(err, "cannot create the socket BIO");
    return 0;
}

/* The policy every context has, server or client: versions, ciphers,
 * groups, security level, options, modes, and the verification callbacks
 * (peer certificate required, verify depth, purpose). Returns 0, or -1
 * (OpenSSL's queue says why). */
static int sd_tls_ctx_policy(struct sd_tls *tls, SSL_CTX *ctx, uint32_t verify_depth)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, SD_TLS12_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(ctx, SD_TLS13_CIPHERS) ||
        !SSL_CTX_set1_groups_list(ctx, SD_TLS_GROUPS))
        return -1;
    SSL_CTX_set_security_level(ctx, 2);
    /* IGNORE_UNEXPECTED_EOF: a TCP FIN without close_notify is treated as
     * the peer's half-close, as for a plain TCP proxy; the byte stream is
     * forwarded as is and the other side sees the FIN. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Read whole socket buffers, not one record header then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    /* The whole point of steeldoor: no certificate, no handshake. (A
     * client always gets the server's; FAIL_IF_NO_PEER_CERT is a server
     * setting.) */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       sd_tls_verify_cb);
    /* Notes a peer's renegotiation attempt for the log (sd_tls_info_cb). */
    SSL_CTX_set_info_callback(ctx, sd_tls_info_cb);
    SSL_CTX_set_verify_depth(ctx, (int)verify_depth);
    if (!SSL_CTX_set_purpose(ctx, tls->role == SD_TLS_CLIENT ? X509_PURPOSE_SSL_SERVER
                                                              : X509_PURPOSE_SSL_CLIENT))
        return -1;
    return 0;
}

/* sd_config_admission() feeds the session id context digest. A failed
 * update makes the final digest fail, which fails the context. */
static void sd_tls_sid_feed(void *arg, const void *p, size_t n)
{
    if (!EVP_DigestUpdate(arg, p, n))
        EVP_MD_CTX_reset(arg);
}

/* Runs first on every ClientHello. When the client names a server (SNI),
 * the connection's session id context becomes a digest of the listener's
 * context and that name, so a session made under one name never resumes
 * under another (the CVE-2025-23419 pattern), even on the same listener. */
int sd_tls_client_hello_cb(SSL *ssl, int *al, void *arg)
{
    const struct sd_tls *tls = arg;
    struct sd_tls_conn *c = SSL_get_app_data(ssl);
    const unsigned char *ext = NULL;
    size_t len = 0;
    unsigned char buf[sizeof(tls->sid) + SD_TLS_SNI_MAX], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct sd_name name;
    int usable, ok;

    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len))
        return SSL_CLIENT_HELLO_SUCCESS; /* no SNI: the listener's own context */
    usable = sd_tls_sni_parse(ext, len, &name);
    if (usable < 0)
        return SSL_CLIENT_HELLO_SUCCESS; /* OpenSSL itself rejects a bad extension */
    /* Keep the name as sent: OpenSSL does not report it on a resumed TLS
     * 1.2 session, yet the backend must be told the same authority on a
     * resumed connection as on a full one. A name with a NUL is left out
     * (OpenSSL refuses it anyway). */
    if (c != NULL && usable) {
        free(c->sni);
        c->sni = strndup(name.s, name.len);
    }
    /* One-shot digest of (listener context, lowercased name): no allocation
     * on this per-handshake path. */
    memcpy(buf, tls->sid, sizeof(tls->sid));
    sd_tls_sni_lower(&name, buf + sizeof(tls->sid));
    ok = EVP_Digest(buf, sizeof(tls->sid) + name.len, md, &mdlen, EVP_sha256(), NULL) &&
         SSL_set_session_id_context(ssl, md, mdlen > SSL_MAX_SID_CTX_LENGTH
                                                  ? SSL_MAX_SID_CTX_LENGTH : mdlen);
    if (!ok) {
        ERR_clear_error();
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR; /* never fall back to a shared context */
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ALPN, server side (RFC 7301). arg is the listener's list as written,
 * comma-separated ("http/1.1" in HTTP mode, the `alpn` key on a tcp
 * listener), owned by the configuration, which outlives the context (a
 * generation frees its contexts first). The protocol selected is the first
 * of that list the client offers, wherever it stands in the client's list:
 * the server's order, as for ciphers (SSL_OP_CIPHER_SERVER_PREFERENCE). A
 * client that offers ALPN but none of them gets no ALPN at all rather than
 * a fatal no_application_protocol alert (RFC 7301 allows either): a client
 * that prefers h2 (curl, browsers) then falls back to HTTP/1.1, and the
 * handshake never fails over ALPN. OpenSSL calls this in every handshake
 * that carries the extension, resumed ones included (TLS 1.2 and 1.3), and
 * keeps the choice per connection (SSL_get0_alpn_selected), so a resumed
 * connection gets what its own ClientHello and the current list say, not
 * what the session's first connection got. A tcp listener without `alpn`
 * installs no callback: nothing is selected, as before the key existed. */
static int sd_tls_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                 const unsigned char *in, unsigned int inlen, void *arg)
{
    const char *w = arg;

    (void)ssl;
    while (*w != '\0') {
        size_t n = strcspn(w, ",");
        unsigned int i = 0;

        /* in is the client's list as sent: (length byte, name)..., which
         * OpenSSL has checked to be well formed; bounds are checked anyway. */
        while (i < inlen) {
            unsigned int m = in[i];
            if (m == 0 || m > inlen - i - 1)
                break;
            if (m == n && memcmp(in + i + 1, w, n) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)m;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + m;
        }
        w += n;
        if (*w == ',')
            w++;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* A comma-separated ALPN list (checked by the key's setter: names of 1 to
 * 255 visible characters) in the wire format SSL_CTX_set_alpn_protos
 * takes: each name after its length byte. Returns the length written (one
 * more than the text's), or 0 when the list is empty or does not fit. */
static size_t sd_tls_alpn_wire(const char *list, unsigned char *out, size_t cap)
{
    size_t len = 0;

    while (*list != '\0') {
        size_t n = strcspn(list, ",");
        if (n == 0 || n > 255 || 1 + n > cap - len)
            return 0;
        out[len] = (unsigned char)n;
        memcpy(out + len + 1, list, n);
        len += 1 + n;
        list += n;
        if (*list == ',')
            list++;
    }
    return len;
}

struct sd_tls *sd_tls_server_new(const struct sd_listener_conf *lc,
                                 struct sd_files *files, struct sd_err *err)
{
    struct sd_tls *tls = NULL;
    SSL_CTX *ctx = NULL;
    EVP_MD_CTX *sid = NULL;
    unsigned char sidbuf[EVP_MAX_MD_SIZE];
    unsigned int sidlen = 0;

    /* HTTP mode speaks HTTP/1.1 and nothing else: a list would promise a
     * protocol its engine cannot serve, so none is taken. */
    if (lc->mode == SD_MODE_HTTP && lc->alpn[0] != '\0') {
        sd_err_set(err, "alpn is a setting of tcp listeners and connectors (HTTP mode "
                        "selects http/1.1 itself)");
        return NULL;
    }
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    sid = EVP_MD_CTX_new();
    tls = calloc(1, sizeof(*tls));
    if (ctx == NULL || sid == NULL || tls == NULL ||
        !EVP_DigestInit_ex(sid, EVP_sha256(), NULL)) {
        sd_err_openssl(err, "listener %s: cannot create TLS context", lc->name);
        goto fail;
    }
    tls->role = SD_TLS_SERVER;
    if (sd_tls_ctx_policy(tls, ctx, lc->verify_depth) != 0) {
        sd_err_openssl(err, "listener %s: cannot set TLS parameters", lc->name);
        goto fail;
    }
    SSL_CTX_set_timeout(ctx, lc->session_lifetime_ms > 0
                                 ? (long)(lc->session_lifetime_ms + 999) / 1000 : 1);
    SSL_CTX_set_num_tickets(ctx, lc->session_lifetime_ms > 0 ? 1 : 0);

    if (sd_tls_load_identity(ctx, files, lc->cert, lc->key, "server", err) != 0 ||
        sd_tls_load_cas(ctx, files, lc->cacert, sid, 1, err) != 0)
        goto fail;
    tls->crl_grace_s = lc->crl_grace_s;
    if (sd_tls_load_crls(tls, ctx, files, (const char *const *)lc->crls, lc->ncrls, sid,
                         err) != 0 ||
        sd_tls_fix_own_chain(ctx, lc->cert, err) != 0)
        goto fail;
    tls->policy = lc->policy;
    tls->session_lifetime_s = lc->session_lifetime_ms == 0 ? 0
                              : (lc->session_lifetime_ms + 999) / 1000;
    SSL_CTX_set_app_data(ctx, tls);
    tls->chains = calloc(SD_CHAIN_CACHE_SIZE, sizeof(*tls->chains));
    tls->chain_mask = SD_CHAIN_CACHE_SIZE - 1;
    /* Always: it also applies every loaded CRL (sd_tls_chain_revoked). */
    SSL_CTX_set_cert_verify_callback(ctx, sd_tls_cert_verify_cb, tls);

    /* Session id context: a digest of everything that decides admission:
     * the CA certificates and CRLs (fed above as they were loaded), and
     * every admission setting of the listener (its identity, allow rules,
     * CRL grace, chain depth, session lifetime: sd_config_admission()).
     * OpenSSL refuses to resume a session whose context differs, so a
     * session resumes only on the listener and under the very settings
     * that admitted it; a reload that changes any of them ends them all. */
    sd_config_admission(lc, sd_tls_sid_feed, sid);
    if (!EVP_DigestUpdate(sid, SD_TLS_ADMISSION_POLICY, sizeof(SD_TLS_ADMISSION_POLICY)) ||
        !EVP_DigestFinal_ex(sid, sidbuf, &sidlen) ||
        !SSL_CTX_set_session_id_context(ctx, sidbuf,
                                        sidlen > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH : sidlen)) {
        sd_err_openssl(err, "listener %s: cannot set session id context", lc->name);
        goto fail;
    }
    memcpy(tls->sid, sidbuf, sizeof(tls->sid));
    SSL_CTX_set_client_hello_cb(ctx, sd_tls_client_hello_cb, tls);
    if (lc->mode == SD_MODE_HTTP)
        SSL_CTX_set_alpn_select_cb(ctx, sd_tls_alpn_select_cb, (void *)"http/1.1");
    else if (lc->alpn[0] != '\0')
        SSL_CTX_set_alpn_select_cb(ctx, sd_tls_alpn_select_cb, (void *)lc->alpn);
    tls->ctx = ctx;
    sd_tls_session_setup(tls);
    EVP_MD_CTX_free(sid);
    return tls;
fail:
    EVP_MD_CTX_free(sid);
    if (tls != NULL) {
        tls->ctx = ctx;
        sd_tls_free(tls);
    } else {
        SSL_CTX_free(ctx);
    }
    return NULL;
}

/* Is name an IPv4 or IPv6 address (not a host name)? */
static int sd_tls_is_ip(const char *name)
{
    unsigned char buf[16];

    return name != NULL &&
           (inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1);
}

struct sd_tls *sd_tls_client_new(const struct sd_tls_client_conf *cc, struct sd_files *files,
                                 struct sd_err *err)
{
    struct sd_tls *tls = NULL;
    SSL_CTX *ctx = NULL;
    EVP_MD_CTX *sid = NULL;

    ERR_clear_error();
    if (cc->policy == NULL && (cc->server_name == NULL || cc->server_name[0] == '\0')) {
        /* Chaining to the CA alone would admit any server it ever certified. */
        sd_err_set(err, "TLS client: neither a server name nor allow rules: nothing "
                        "says which server is the right one");
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    sid = EVP_MD_CTX_new(); /* fed by the loaders; unused by a client */
    tls = calloc(1, sizeof(*tls));
    if (ctx == NULL || sid == NULL || tls == NULL ||
        !EVP_DigestInit_ex(sid, EVP_sha256(), NULL)) {
        sd_err_openssl(err, "TLS client: cannot create TLS context");
        goto fail;
    }
    tls->role = SD_TLS_CLIENT;
    tls->policy = cc->policy;
    tls->crl_grace_s = cc->crl_grace_s;
    if (cc->server_name != NULL && (tls->server_name = strdup(cc->server_name)) == NULL) {
        sd_err_set(err, "out of memory");
        goto fail;
    }
    if (sd_tls_ctx_policy(tls, ctx, cc->verify_depth) != 0) {
        sd_err_openssl(err, "TLS client: cannot set TLS parameters");
        goto fail;
    }
    /* Sessions (resumption towards a backend) are a later step: none. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Without allow rules the server must carry the name asked for. */
    if (cc->policy == NULL && sd_tls_is_ip(cc->server_name)) {
        /* An address is checked against the certificate's IP SANs, and
         * never sent as SNI (RFC 6066 allows only host names there). */
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), cc->server_name)) {
            sd_err_openssl(err, "TLS client: cannot set the server address to check");
            goto fail;
        }
        tls->sni_off = 1;
    } else if (cc->policy == NULL) {
        X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx),
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), cc->server_name, 0)) {
            sd_err_openssl(err, "TLS client: cannot set the server name to check");
            goto fail;
        }
    }
    /* Our certificate is optional for the building block (a client
     * context may talk to a server that does not ask); when given, it is
     * checked as the server's is. */
    if (cc->cert != NULL &&
        sd_tls_load_identity(ctx, files, cc->cert, cc->key, "client", err) != 0)
        goto fail;
    if (cc->cacert == NULL) {
        sd_err_set(err, "TLS client: no CA bundle for the server's certificate");
        goto fail;
    }
    /* Only the given CAs: never the system's default trust store. */
    if (sd_tls_load_cas(ctx, files, cc->cacert, sid, 0, err) != 0 ||
        sd_tls_load_crls(tls, ctx, files, cc->crls, cc->ncrls, sid, err) != 0 ||
        (cc->cert != NULL && sd_tls_fix_own_chain(ctx, cc->cert, err) != 0))
        goto fail;
    SSL_CTX_set_app_data(ctx, tls);
    SSL_CTX_set_cert_verify_callback(ctx, sd_tls_cert_verify_cb, tls);
    EVP_MD_CTX_free(sid);
    tls->ctx = ctx;
    return tls;
fail:
    EVP_MD_CTX_free(sid);
    if (tls != NULL) {
        tls->ctx = ctx;
        sd_tls_free(tls);
    } else {
        SSL_CTX_free(ctx);
    }
    return NULL;
}

/* OpenSSL calls a client's certificate callback when, and only when, the
 * server sent a CertificateRequest (tls_prepare_client_certificate, TLS 1.2
 * and 1.3 alike; post-handshake auth is never offered), before our
 * Certificate goes out. That is the one reliable sign the server asked:
 * a server that never asks lets anyone in, whatever we present. */
static int sd_tls_connector_cert_cb(SSL *ssl, void *arg)
{
    struct sd_tls_conn *c = SSL_get_app_data(ssl);

    (void)arg;
    if (c != NULL)
        c->cert_requested = 1;
    return 1;
}

/* A new session from the server (TLS 1.2: at the end of the handshake;
 * TLS 1.3: each NewSessionTicket after it). Kept for later connections only
 * when it descends from a full handshake that verified the server and in
 * which the server asked for our certificate: a resumed connection skips
 * both checks, so the session must carry them. Returns 1 when the context
 * keeps the reference. */
static int sd_tls_connector_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct sd_tls_conn *c = SSL_get_app_data(ssl);
    struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    int64_t auth_time;

    if (c == NULL || tls == NULL || tls->sessions == NULL ||
        SSL_get_verify_result(ssl) != X509_V_OK || SSL_get0_peer_certificate(ssl) == NULL)
        return 0;
    /* When the server was verified: by the full handshake's verification
     * (or chain cache), or the one the handed-out session descends from;
     * not when this ticket arrived, which the server may delay. */
    if (!SSL_session_reused(ssl) && !c->cert_requested)
        return 0;
    auth_time = c->auth_time;
    if (auth_time == 0 || c->not_after == 0)
        return 0;
    if (tls->nsessions == SD_CONNECTOR_SESSIONS) {
        /* Full: the oldest goes (it would expire first). */
        SSL_SESSION_free(tls->sessions[0].sess);
        memmove(&tls->sessions[0], &tls->sessions[1],
                (SD_CONNECTOR_SESSIONS - 1) * sizeof(tls->sessions[0]));
        tls->nsessions--;
    }
    tls->sessions[tls->nsessions].sess = sess;
    tls->sessions[tls->nsessions].auth_time = auth_time;
    tls->sessions[tls->nsessions].not_after = c->not_after;
    tls->nsessions++;
    return 1;
}

/* The session for a new connection of a connector, or NULL. Sessions no
 * longer resumable, or older than session-lifetime since the full handshake
 * that verified the server, or made before the CRLs went stale, are dropped.
 * Nor one past the earliest notAfter of the chain it verified: a
 * resumption skips the verification, so the certificate's end must be
 * checked here. The newest is taken out of the pool (a TLS 1.3 ticket is for one use; the
 * connection's own new ticket replaces it), except the last one, which is
 * shared: a TLS 1.2 session, or a server that accepts a ticket again, still
 * resumes, and one that does not costs the full handshake it would have
 * cost anyway. */
SSL_SESSION *sd_tls_connector_session(struct sd_tls *tls, int64_t *auth_time,
                                      int64_t *not_after)
{
    int64_t now = (int64_t)time(NULL);
    struct sd_tls_sess *s;

    while (tls->nsessions > 0) {
        s = &tls->sessions[tls->nsessions - 1];
        if (SSL_SESSION_is_resumable(s->sess) &&
            now < s->auth_time + (int64_t)tls->session_lifetime_s && now < s->not_after &&
            (tls->crl_fresh_until == 0 || now < tls->crl_fresh_until))
            break;
        /* The newest is stale: so is every older one but for a ticket
         * the server cut short; drop them one at a time. */
        SSL_SESSION_free(s->sess);
        tls->nsessions--;
    }
    if (tls->nsessions == 0)
        return NULL;
    s = &tls->sessions[tls->nsessions - 1];
    *auth_time = s->auth_time;
    *not_after = s->not_after;
    if (tls->nsessions > 1) {
        tls->nsessions--;
        return s->sess; /* the pool's reference passes to the caller */
    }
    return SSL_SESSION_up_ref(s->sess) ? s->sess : NULL;
}

/* Fills tls->own_subject and own_serial from the context's certificate.
 * A name too long is cut (the log line is bounded); a failure leaves the
 * field empty: the log then leaves it out, the connection is unaffected. */
static void sd_tls_connector_own_cert(struct sd_tls *tls)
{
    X509 *x = SSL_CTX_get0_certificate(tls->ctx);
    BIO *b;
    BIGNUM *bn;
    char *hex;
    int n;

    tls->own_subject[0] = '\0';
    tls->own_serial[0] = '\0';
    if (x == NULL)
        return;
    if ((b = BIO_new(BIO_s_mem())) != NULL) {
        if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0 &&
            (n = BIO_read(b, tls->own_subject, (int)sizeof(tls->own_subject) - 1)) > 0)
            tls->own_subject[n] = '\0';
        BIO_free(b);
    }
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) != NULL) {
        if ((hex = BN_bn2hex(bn)) != NULL) {
            if (strlen(hex) < sizeof(tls->own_serial))
                memcpy(tls->own_serial, hex, strlen(hex) + 1);
            OPENSSL_free(hex);
        }
        BN_free(bn);
    }
    ERR_clear_error();
}

struct sd_tls *sd_tls_connector_new(const struct sd_listener_conf *lc, struct sd_files *files,
                                    struct sd_err *err)
{
    struct sd_tls_client_conf cc;
    struct sd_tls *tls;

    memset(&cc, 0, sizeof(cc));
    cc.cert = lc->cert;
    cc.key = lc->key;
    cc.cacert = lc->cacert;
    cc.server_name = lc->server_name;
    cc.policy = sd_policy_count(lc->policy) > 0 ? lc->policy : NULL;
    cc.crls = (const char *const *)lc->crls;
    cc.ncrls = lc->ncrls;
    cc.crl_grace_s = lc->crl_grace_s;
    cc.verify_depth = lc->verify_depth;
    /* The caller (gen.c) says which connector, and where it is written. */
    if (cc.cert == NULL || cc.key == NULL) {
        sd_err_set(err, "a connector always presents a certificate (cert and key)");
        return NULL;
    }
    tls = sd_tls_client_new(&cc, files, err);
    if (tls == NULL)
        return NULL;
    tls->connector = 1;
    sd_tls_connector_own_cert(tls);
    if (lc->alpn[0] != '\0') {
        /* Offered in our order; the server picks (OpenSSL refuses a pick
         * we did not offer). What it picked is logged; the caller behind
         * the plaintext side is not told, so it must speak what the
         * server will pick: list one protocol unless the server's choice
         * is known. */
        unsigned char wire[SD_MAX_ALPN + 1];
        size_t wlen = sd_tls_alpn_wire(lc->alpn, wire, sizeof(wire));
        if (wlen == 0 || SSL_CTX_set_alpn_protos(tls->ctx, wire, (unsigned int)wlen) != 0) {
            sd_err_openssl(err, "connector %s: cannot set the ALPN list", lc->name);
            sd_tls_free(tls);
            return NULL;
        }
    }
    SSL_CTX_set_cert_cb(tls->ctx, sd_tls_connector_cert_cb, NULL);
    tls->session_lifetime_s = lc->session_lifetime_ms == 0
                                  ? 0 : (lc->session_lifetime_ms + 999) / 1000;
    /* The server's chain, once verified, is not verified again for a
     * minute (as a listener's clients': sd_tls_cert_verify_cb); the
     * server still proves its key in every full handshake. */
    tls->chains = calloc(SD_CHAIN_CACHE_SIZE_CONNECTOR, sizeof(*tls->chains));
    tls->chain_mask = SD_CHAIN_CACHE_SIZE_CONNECTOR - 1;
    if (tls->chains == NULL ||
        (tls->session_lifetime_s > 0 &&
         (tls->sessions = calloc(SD_CONNECTOR_SESSIONS, sizeof(*tls->sessions))) == NULL)) {
        sd_err_set(err, "out of memory");
        sd_tls_free(tls);
        return NULL;
    }
    if (tls->session_lifetime_s > 0) {
        /* The sessions kept are ours (no OpenSSL store): handed out by
         * sd_tls_connector_session() to each new stream. */
        SSL_CTX_clear_options(tls->ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(tls->ctx, SSL_SESS_CACHE_CLIENT |
                                                     SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(tls->ctx, sd_tls_connector_new_session_cb);
    }
    return tls;
}

void sd_tls_free(struct sd_tls *tls)
{
    size_t i;

    if (tls == NULL)
        return;
    for (i = 0; tls->sessions != NULL && i < tls->nsessions; i++)
        SSL_SESSION_free(tls->sessions[i].sess);
    free(tls->sessions);
    for (i = 0; tls->chains != NULL && i <= tls->chain_mask; i++)
        sd_tls_chain_entry_clear(&tls->chains[i]);
    free(tls->chains);
    for (i = 0; i < tls->ncrls; i++) {
        X509_CRL_free(tls->crls[i].crl);
        X509_free(tls->crls[i].signer);
    }
    free(tls->crls);
    free(tls->server_name);
    SSL_CTX_free(tls->ctx);
    free(tls);
}
