/*
 * session.c - stateful resumption: each session's admission record (in
 * its ticket_appdata), its deadline, OpenSSL's session callbacks, the
 * shared second-level cache (sesscache.c) behind OpenSSL's own, and the
 * check of a resumed session's record.
 */
#include "tls_int.h"

#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "sd/sesscache.h"

/* The shared second-level session cache, mapped by the master before it
 * forks (NULL: OpenSSL's per-process cache only). */
static struct sd_sesscache *sd_tls_cache;

void sd_tls_set_session_cache(struct sd_sesscache *cache)
{
    sd_tls_cache = cache;
}

/* Cache key: the listener's session id context, then the session id, so a
 * session is only ever found by the listener and generation that made it. */
static size_t sd_tls_cache_key(const struct sd_tls *tls, const unsigned char *id,
                               unsigned int idlen, uint8_t *key)
{
    if (idlen > SD_SESSCACHE_KEY_MAX - sizeof(tls->sid))
        idlen = SD_SESSCACHE_KEY_MAX - sizeof(tls->sid);
    memcpy(key, tls->sid, sizeof(tls->sid));
    memcpy(key + sizeof(tls->sid), id, idlen);
    return sizeof(tls->sid) + idlen;
}

/*
 * What a session was admitted with, carried in the session itself (its
 * ticket_appdata: OpenSSL serialises it with the session into the shared
 * cache and copies it to every session resumed from it):
 *   "S" 1 | auth_time (8) | not_after (8) | DER certificates...
 * auth_time is when the full handshake verified the client; a chain of
 * resumptions never moves it, so session-lifetime caps the whole chain.
 * not_after is the earliest notAfter of the verified chain. The
 * certificates are those of the verified chain, other than the leaf, that
 * the trust store does not hold (intermediates the client sent), so an open
 * resumed connection can be judged again against a new configuration.
 */
#define SD_TLS_ADM_HEAD 18
#define SD_TLS_ADM_MAX 8192

static void sd_tls_put64(unsigned char *p, int64_t v)
{
    int i;

    for (i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
        p[i] = (unsigned char)(v & 0xff);
}

static int64_t sd_tls_get64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* Reads sess's admission record into a (pointing into sess). Returns 0, or
 * -1 when sess has none. */
int sd_tls_adm_get(SSL_SESSION *sess, struct sd_tls_adm *a)
{
    void *p = NULL;
    size_t n = 0;
    const unsigned char *b;

    if (sess == NULL || !SSL_SESSION_get0_ticket_appdata(sess, &p, &n) || p == NULL ||
        n < SD_TLS_ADM_HEAD)
        return -1;
    b = p;
    if (b[0] != 'S' || b[1] != 1)
        return -1;
    a->auth_time = sd_tls_get64(b + 2);
    a->not_after = sd_tls_get64(b + 10);
    a->chain = b + SD_TLS_ADM_HEAD;
    a->chainlen = n - SD_TLS_ADM_HEAD;
    return 0;
}

/* Does the trust store of ctx hold a certificate identical to x? (X509_cmp
 * compares the SHA-1 of the DER first, then the DER itself.) */
static int sd_tls_store_has(const SSL_CTX *ctx, X509 *x)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT) *objs = store != NULL ? X509_STORE_get0_objects(store) : NULL;
    X509_OBJECT *probe = objs != NULL ? X509_OBJECT_new() : NULL;
    int found = 0;

    if (probe != NULL && X509_OBJECT_set1_X509(probe, x))
        found = X509_OBJECT_retrieve_match(objs, probe) != NULL;
    X509_OBJECT_free(probe);
    return found;
}

int sd_tls_chain_der(const SSL *ssl, unsigned char *out, size_t cap, size_t *len)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    size_t n = 0;
    int i, rc = 0;

    *len = 0;
    if (chain == NULL)
        chain = SSL_get_peer_cert_chain(ssl); /* chain cache hit: as presented */
    for (i = 0; peer != NULL && chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        unsigned char *p = out + n;
        int dl;

        if (X509_cmp(x, peer) == 0 || sd_tls_store_has(SSL_get_SSL_CTX(ssl), x))
            continue;
        dl = i2d_X509(x, NULL);
        if (dl <= 0 || (size_t)dl > cap - n) {
            rc = -1;
            break;
        }
        if (i2d_X509(x, &p) != dl) {
            rc = -1;
            break;
        }
        n += (size_t)dl;
    }
    ERR_clear_error();
    *len = n;
    return rc;
}

/* Records the admission of this full handshake in sess. Returns 1 on
 * success, 0 when the record cannot be made: then the session is never
 * resumed (sd_tls_new_session_cb). A chain too large to record makes no
 * record rather than a cut one, so that a resumed connection is judged
 * after a reload, and hands its identity on (sd_tls_stream_certs_der),
 * from the very certificates its full handshake had. */
static int sd_tls_adm_set(SSL *ssl, SSL_SESSION *sess, const struct sd_tls_conn *c)
{
    unsigned char buf[SD_TLS_ADM_MAX];
    size_t n = 0;

    buf[0] = 'S';
    buf[1] = 1;
    sd_tls_put64(buf + 2, c->auth_time);
    sd_tls_put64(buf + 10, c->not_after);
    if (sd_tls_chain_der(ssl, buf + SD_TLS_ADM_HEAD, sizeof(buf) - SD_TLS_ADM_HEAD, &n) != 0)
        return 0;
    return SSL_SESSION_set1_ticket_appdata(sess, buf, SD_TLS_ADM_HEAD + n);
}

/* The second from which a session made under tls is no longer resumable:
 * the session lifetime after the full handshake, the first notAfter of the
 * verified chain, the end of the CRL set's freshness (with grace),
 * whichever is first. OpenSSL treats a certificate as expired, and a CRL as
 * stale, from the second of its date on; so does this. Resuming is never
 * allowed where a full handshake would refuse. */
static int64_t sd_tls_session_deadline(const struct sd_tls *tls, const struct sd_tls_adm *a)
{
    int64_t d = a->auth_time + (int64_t)tls->session_lifetime_s;

    if (a->not_after < d)
        d = a->not_after;
    if (tls->crl_fresh_until != 0 && tls->crl_fresh_until < d)
        d = tls->crl_fresh_until;
    return d;
}

/* Every new session (a full handshake's, or the one a TLS 1.3 resumption
 * issues a ticket for) passes here after OpenSSL cached it: it gets its
 * admission record and a timeout that ends at its deadline, which OpenSSL
 * checks before resuming it; then it goes to the shared cache. */
static int sd_tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    SSL_CTX *sctx = SSL_get_SSL_CTX(ssl);
    const struct sd_tls *tls = SSL_CTX_get_app_data(sctx);
    const struct sd_tls_conn *c = SSL_get_app_data(ssl);
    unsigned char buf[SD_SESSCACHE_DATA_MAX], *p = buf;
    uint8_t key[SD_SESSCACHE_KEY_MAX];
    unsigned int idlen = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    struct sd_tls_adm a;
    int64_t t;
    int len;

    if (tls == NULL)
        return 0;
    if (sd_tls_adm_get(sess, &a) != 0 &&
        (c == NULL || c->auth_time == 0 || sd_tls_adm_set(ssl, sess, c) != 1 ||
         sd_tls_adm_get(sess, &a) != 0)) {
        SSL_CTX_remove_session(sctx, sess); /* no record: never resumed */
        return 0;
    }
    /* OpenSSL resumes while now <= time + timeout: the last second a
     * session may resume is the one before its deadline. */
    t = sd_tls_session_deadline(tls, &a) - 1 - (int64_t)SSL_SESSION_get_time(sess);
    if (t <= 0 || !SSL_SESSION_set_timeout(sess, (long)(t > 86400 ? 86400 : t))) {
        SSL_CTX_remove_session(sctx, sess);
        return 0;
    }
    len = i2d_SSL_SESSION(sess, NULL);
    if (sd_tls_cache == NULL || len <= 0 || len > (int)sizeof(buf))
        return 0;
    if (i2d_SSL_SESSION(sess, &p) == len)
        (void)sd_sesscache_put(sd_tls_cache, key, sd_tls_cache_key(tls, id, idlen, key),
                               buf, (size_t)len,
                               (int64_t)SSL_SESSION_get_time(sess) + SSL_SESSION_get_timeout(sess));
    OPENSSL_cleanse(buf, (size_t)len);
    return 0; /* we keep no reference to sess */
}

static SSL_SESSION *sd_tls_get_session_cb(SSL *ssl, const unsigned char *id, int idlen,
                                          int *copy)
{
    const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    unsigned char buf[SD_SESSCACHE_DATA_MAX];
    const unsigned char *p = buf;
    uint8_t key[SD_SESSCACHE_KEY_MAX];
    SSL_SESSION *sess = NULL;
    long len;

    *copy = 0;
    if (sd_tls_cache == NULL || tls == NULL || idlen <= 0)
        return NULL;
    len = sd_sesscache_get(sd_tls_cache, key, sd_tls_cache_key(tls, id, (unsigned)idlen, key),
                           buf, sizeof(buf), (int64_t)time(NULL));
    if (len > 0) {
        sess = d2i_SSL_SESSION(NULL, &p, len);
        OPENSSL_cleanse(buf, (size_t)len);
    }
    ERR_clear_error();
    return sess; /* OpenSSL takes our reference (copy = 0) */
}

static void sd_tls_remove_session_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    const struct sd_tls *tls = SSL_CTX_get_app_data(ctx);
    uint8_t key[SD_SESSCACHE_KEY_MAX];
    unsigned int idlen = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);

    if (sd_tls_cache != NULL && tls != NULL)
        sd_sesscache_remove(sd_tls_cache, key, sd_tls_cache_key(tls, id, idlen, key));
}

/* Sets up stateful resumption on a server context whose session id
 * context (tls->sid) and lifetime are set. */
void sd_tls_session_setup(struct sd_tls *tls)
{
    SSL_CTX *ctx = tls->ctx;

    /* Stateful resumption: TLS 1.3 tickets and TLS 1.2 session ids refer
     * to sessions kept here (OpenSSL's in-process cache first, the shared
     * cache behind it when there are several workers), so resuming costs a
     * lookup instead of decrypting and re-parsing a ticket with the client's
     * certificate in it. No ticket keys exist: tickets are off. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* NO_AUTO_CLEAR: OpenSSL would otherwise walk the whole cache every
     * 255 handshakes; the worker's timer expires sessions instead. */
    SSL_CTX_set_session_cache_mode(ctx, tls->session_lifetime_s == 0 ? SSL_SESS_CACHE_OFF
                                        : SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR);
    SSL_CTX_sess_set_cache_size(ctx, SD_TLS_L1_SESSIONS);
    /* Always: it gives each session its admission record and deadline. */
    SSL_CTX_sess_set_new_cb(ctx, sd_tls_new_session_cb);
    if (sd_tls_cache != NULL) {
        SSL_CTX_sess_set_get_cb(ctx, sd_tls_get_session_cb);
        SSL_CTX_sess_set_remove_cb(ctx, sd_tls_remove_session_cb);
    }
}

void sd_tls_expire_sessions(struct sd_tls *tls)
{
    SSL_CTX_flush_sessions(tls->ctx, (long)time(NULL));
}

/* Defence in depth for a resumed session: OpenSSL already refused to
 * resume it past its deadline (see sd_tls_new_session_cb), but the record
 * is checked again here, so that no path (clock rounding, a session from
 * the shared cache) resumes what a full handshake would refuse now.
 * Returns 0, or -1 with c's reason set. */
int sd_tls_resumed_admitted(struct sd_tls_conn *c, const struct sd_tls *tls)
{
    struct sd_tls_adm a;
    int64_t now = (int64_t)time(NULL);

    if (sd_tls_adm_get(SSL_get_session(c->ssl), &a) != 0) {
        c->s.reason = SD_R_SESSION_INVALID;
        c->s.detail = "resumed session carries no admission record";
        return -1;
    }
    c->auth_time = a.auth_time;
    c->not_after = a.not_after;
    /* Deadlines are exclusive, as OpenSSL's own date checks: a certificate
     * is expired, a CRL stale, from the very second of its date. */
    if (now >= a.not_after) {
        c->s.reason = SD_R_CERTIFICATE_EXPIRED;
        c->s.detail = "resumed session: a certificate of the chain has expired";
        return -1;
    }
    if (tls->crl_fresh_until != 0 && now >= tls->crl_fresh_until) {
        c->s.reason = SD_R_CRL_EXPIRED;
        c->s.detail = "resumed session: the CRLs are past their nextUpdate";
        return -1;
    }
    if (now >= a.auth_time + (int64_t)tls->session_lifetime_s) {
        c->s.reason = SD_R_SESSION_EXPIRED;
        c->s.detail = "resumed session: older than session-lifetime";
        return -1;
    }
    return 0;
}
