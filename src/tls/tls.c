/*
 * tls.c - OpenSSL server contexts and connections (see sd/tls.h).
 *
 * Everything security-relevant is set here once per listener, before any
 * worker starts, so a connection cannot end up with weaker settings than its
 * listener, and no worker repeats file parsing or algorithm set-up.
 */
#include "sd/tls.h"

#include "sd/files.h"
#include "sd/proxy_proto.h"
#include "sd/sesscache.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
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
#define SD_TLS_L1_SESSIONS 16384 /* OpenSSL's in-process cache, per context */

/* A verified chain, remembered so the same chain presented again within a
 * short time skips chain building and the CA signature checks. Entries live
 * in the listener's context, which a reload replaces, so a change of CAs,
 * CRLs or rules empties the cache. The TLS handshake's own proof of
 * possession (CertificateVerify) is always checked. */
#define SD_CHAIN_CACHE_SIZE 1024 /* entries per listener and worker; power of 2 */
#define SD_CHAIN_CACHE_TTL 60    /* seconds */
struct sd_chain_entry {
    unsigned char key[32]; /* SHA-256 over the SHA-256 of each presented cert */
    int64_t not_before;    /* latest notBefore in the chain */
    int64_t expires;       /* earliest of: TTL, notAfter in the chain, CRL nextUpdate */
    int64_t not_after;     /* earliest notAfter in the chain */
    int rule;              /* the allow rule that admitted it */
    uint8_t hit_kind;      /* and the name that matched it */
    uint16_t hit_index;
    int used;
    X509 *leaf;            /* the verified leaf: sessions of this chain share it */
};

/* A loaded CRL and the CA of the bundle that signed it (NULL: none did; it
 * can only apply to a client-sent intermediate and its signature is then
 * checked against that certificate). */
struct sd_tls_crl {
    X509_CRL *crl;
    X509 *signer;
    int delta; /* a delta CRL (deltaCRLIndicator) */
    const char *path; /* the file it came from (the config owns the text) */
};

struct sd_tls {
    SSL_CTX *ctx;
    const struct sd_policy *policy; /* owned by the listener's config */
    uint32_t crl_grace_s;
    uint32_t session_lifetime_s;    /* 0: no resumption */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH]; /* session id context */
    /* Until when the CRL set is fresh: for each issuer the newest full
     * CRL's nextUpdate, the earliest of those, plus the grace; 0 = no CRL
     * with a nextUpdate. Chain cache entries and sessions end by then. */
    int64_t crl_fresh_until;
    struct sd_tls_crl *crls;
    size_t ncrls;
    struct sd_chain_entry *chains;
};

struct sd_tls_conn {
    SSL *ssl;
    int fd;
    int read_dry;        /* the last socket read came back short or EAGAIN */
    int hup;             /* epoll saw the peer hang up: no edge will follow */
    int read_eof;        /* the peer closed its sending side */
    int write_more;      /* more records follow this one in the same sd_tls_write */
    X509 *refused_leaf;  /* the leaf that failed verification, for the log */
    X509 *parsed_leaf;   /* OpenSSL's copy of a leaf replaced by a shared one */
    int verify_err;      /* first X509_V_ERR_* seen, 0 if none */
    int rule;            /* index of the allow rule that admitted, or -1 */
    uint8_t hit_kind;    /* which name admitted (enum sd_rule_kind) ... */
    uint16_t hit_index;  /* ... and its index among the names of that kind */
    int64_t auth_time;   /* when the full handshake verified the certificate */
    int64_t not_after;   /* earliest notAfter of the verified chain */
    char *sni;           /* server name from the ClientHello, or NULL */
    const char *reason;  /* stable word for the log */
    const char *detail;  /* static text from OpenSSL or steeldoor */
};

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

struct sd_tls_adm {
    int64_t auth_time, not_after;
    const unsigned char *chain;
    size_t chainlen;
};

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

static int sd_tls_adm_get(SSL_SESSION *sess, struct sd_tls_adm *a)
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

/* Does the trust store of ctx hold a certificate identical to x? */
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

/* Records the admission of this full handshake in sess. Returns 1 on
 * success. A chain too large to record is cut short: a later judgement of
 * the connection then fails closed. */
static int sd_tls_adm_set(SSL *ssl, SSL_SESSION *sess, const struct sd_tls_conn *c)
{
    unsigned char buf[SD_TLS_ADM_MAX];
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    size_t n = SD_TLS_ADM_HEAD;
    int i, len;

    if (chain == NULL)
        chain = SSL_get_peer_cert_chain(ssl); /* chain cache hit: as presented */
    buf[0] = 'S';
    buf[1] = 1;
    sd_tls_put64(buf + 2, c->auth_time);
    sd_tls_put64(buf + 10, c->not_after);
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        unsigned char *p = buf + n;
        if (peer == NULL || X509_cmp(x, peer) == 0 || sd_tls_store_has(SSL_get_SSL_CTX(ssl), x))
            continue;
        len = i2d_X509(x, NULL);
        if (len <= 0 || n + (size_t)len > sizeof(buf))
            break;
        i2d_X509(x, &p);
        n += (size_t)len;
    }
    ERR_clear_error();
    return SSL_SESSION_set1_ticket_appdata(sess, buf, n);
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


/* The names of a certificate, as the policy sees them. Names point into
 * OpenSSL structures and UTF-8 copies owned here; sd_tls_ident_clear()
 * releases them. More names than fit is treated as a malformed identity. */
#define SD_IDENT_MAX 64
struct sd_tls_ident {
    struct sd_name uris[SD_IDENT_MAX], dns[SD_IDENT_MAX];
    struct sd_name cns[8], ous[8];
    size_t nuris, ndns, ncns, nous;
    unsigned char *owned[16]; /* UTF-8 conversions of CN/OU */
    size_t nowned;
    uint8_t spki[SD_SPKI_LEN];
    GENERAL_NAMES *gens;
    struct sd_identity id;
};

static void sd_tls_ident_clear(struct sd_tls_ident *t)
{
    size_t i;

    for (i = 0; i < t->nowned; i++)
        OPENSSL_free(t->owned[i]);
    GENERAL_NAMES_free(t->gens);
    memset(t, 0, sizeof(*t));
}

/* Reads every CN or OU entry of name as UTF-8. Returns 0, -1 if malformed. */
static int sd_tls_ident_attr(struct sd_tls_ident *t, X509_NAME *name, int nid,
                             struct sd_name *out, size_t max, size_t *n)
{
    int idx = -1;

    while ((idx = X509_NAME_get_index_by_NID(name, nid, idx)) >= 0) {
        ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, s);

        if (len < 0 || *n >= max || t->nowned >= sizeof(t->owned) / sizeof(t->owned[0])) {
            OPENSSL_free(utf8);
            return -1;
        }
        t->owned[t->nowned++] = utf8;
        out[*n].s = (const char *)utf8;
        out[*n].len = (size_t)len;
        (*n)++;
    }
    return 0;
}

/* Extracts the identity of x. Returns 0, or -1 when the certificate's names
 * cannot be read faithfully (undecodable SAN extension, too many names):
 * such a certificate is refused rather than judged on part of its names. */
static int sd_tls_ident_load(struct sd_tls_ident *t, X509 *x, int need_spki)
{
    X509_NAME *subj = X509_get_subject_name(x);
    X509_PUBKEY *pk = X509_get_X509_PUBKEY(x);
    unsigned char *der = NULL;
    unsigned int mdlen = 0;
    int crit = -1, derlen, i;

    memset(t, 0, sizeof(*t));
    t->gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (t->gens == NULL && crit != -1)
        return -1; /* present but undecodable, or present twice */
    if (t->gens != NULL) {
        /* OpenSSL's decoder ignores bytes after the GeneralNames and takes
         * non-DER forms; a name must be read one way only, so the extension
         * must be exactly the DER of what was decoded, and not empty
         * (RFC 5280 4.2.1.6). */
        X509_EXTENSION *ext = X509_get_ext(x, X509_get_ext_by_NID(x, NID_subject_alt_name, -1));
        const ASN1_OCTET_STRING *raw = ext != NULL ? X509_EXTENSION_get_data(ext) : NULL;
        unsigned char *enc = NULL;
        int enclen = i2d_GENERAL_NAMES(t->gens, &enc);
        int same = raw != NULL && enclen > 0 && enclen == ASN1_STRING_length(raw) &&
                   memcmp(enc, ASN1_STRING_get0_data(raw), (size_t)enclen) == 0;
        OPENSSL_free(enc);
        if (!same || sk_GENERAL_NAME_num(t->gens) == 0)
            return -1;
    }
    for (i = 0; t->gens != NULL && i < sk_GENERAL_NAME_num(t->gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(t->gens, i);
        const ASN1_STRING *s;
        struct sd_name *list;
        size_t *n;

        if (gn->type == GEN_URI) {
            s = gn->d.uniformResourceIdentifier;
            list = t->uris;
            n = &t->nuris;
        } else if (gn->type == GEN_DNS) {
            s = gn->d.dNSName;
            list = t->dns;
            n = &t->ndns;
        } else {
            continue;
        }
        if (*n >= SD_IDENT_MAX)
            return -1;
        list[*n].s = (const char *)ASN1_STRING_get0_data(s);
        list[*n].len = (size_t)ASN1_STRING_length(s);
        (*n)++;
    }
    if (sd_tls_ident_attr(t, subj, NID_commonName, t->cns, 8, &t->ncns) != 0 ||
        sd_tls_ident_attr(t, subj, NID_organizationalUnitName, t->ous, 8, &t->nous) != 0)
        return -1;
    if (need_spki) {
        derlen = i2d_X509_PUBKEY(pk, &der);
        if (derlen <= 0 ||
            !EVP_Digest(der, (size_t)derlen, t->spki, &mdlen, EVP_sha256(), NULL)) {
            OPENSSL_free(der);
            return -1;
        }
        OPENSSL_free(der);
    }
    t->id.uris = t->uris;
    t->id.nuris = t->nuris;
    t->id.dns = t->dns;
    t->id.ndns = t->ndns;
    t->id.cns = t->cns;
    t->id.ncns = t->ncns;
    t->id.ous = t->ous;
    t->id.nous = t->nous;
    t->id.spki_sha256 = need_spki ? t->spki : NULL;
    return sd_policy_identity_sane(&t->id) && sd_policy_identity_unambiguous(&t->id) ? 0 : -1;
}

/* Applies the listener's allow rules to the leaf x. Returns the matching
 * rule's index, or -1 with c->reason set. */
static int sd_tls_authorize(struct sd_tls_conn *c, const struct sd_tls *tls, X509 *x)
{
    struct sd_tls_ident t;
    struct sd_policy_hit hit;
    int rule;

    if (sd_tls_ident_load(&t, x, sd_policy_has_kind(tls->policy, SD_RULE_SPKI)) != 0) {
        sd_tls_ident_clear(&t);
        c->reason = "malformed_identity";
        c->detail = "certificate names are malformed or ambiguous (embedded NUL or "
                    "control byte, undecodable or too many names, more than one "
                    "SPIFFE ID or CN)";
        return -1;
    }
    rule = sd_policy_match_hit(tls->policy, &t.id, &hit);
    sd_tls_ident_clear(&t);
    if (rule < 0) {
        c->reason = "not_authorized";
        c->detail = "no allow rule matched";
    }
    c->hit_kind = (uint8_t)hit.kind;
    c->hit_index = (uint16_t)hit.index;
    return rule;
}

/* A random secret made once by the master before it forks. Session ticket
 * keys are derived from it and each listener's session id context, so all
 * workers (including ones restarted or reloaded later) encrypt and decrypt
 * the same tickets, and a ticket stops working as soon as what admitted it
 * (CAs, CRLs, rules) changes, because the context changes with it. */
static unsigned char sd_tls_secret[32];

/* ------------------------------------------------------------ socket BIO */

/* OpenSSL's socket BIO is replaced by this small one for one reason: it
 * tells the connection when a read came back short. On an edge-triggered
 * socket a short read means the kernel buffer is empty, so the connection
 * can wait for the next EPOLLIN instead of issuing a read that can only
 * return EAGAIN: one system call saved per message. */
static BIO_METHOD *sd_bio_method;

#define SD_TLS_RECORD 16384u /* OpenSSL's largest plaintext fragment */

static int sd_bio_read(BIO *b, char *buf, int len)
{
    struct sd_tls_conn *c = BIO_get_data(b);
    ssize_t r;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    /* Read dry and no readiness edge since: the read could only return
     * EAGAIN (typically OpenSSL asking for the client's next flight right
     * after sending ours). After a hang-up there is no further edge, so
     * then every read is really made. */
    if (c->read_dry && !c->hup) {
        BIO_set_retry_read(b);
        return -1;
    }
    do {
        r = recv(c->fd, buf, (size_t)len, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_read(b);
            c->read_dry = 1;
        }
        return -1;
    }
    c->read_dry = r < len; /* only the last read of an SSL_read counts */
    if (r == 0)
        c->read_eof = 1; /* OpenSSL asks BIO_CTRL_EOF to tell EOF from errors */
    return (int)r;
}

static int sd_bio_write(BIO *b, const char *buf, int len)
{
    struct sd_tls_conn *c = BIO_get_data(b);
    ssize_t w;
    int more;

    BIO_clear_retry_flags(b);
    /* A TLS 1.3 session ticket is not urgent: with MSG_MORE the kernel holds
     * it until the next bytes to this client (in practice the first
     * response) or the client's next segment, and sends both in one packet
     * instead of paying a whole loopback/network send for 79 bytes. */
    more = c->write_more || SSL_get_state(c->ssl) == TLS_ST_SW_SESSION_TICKET;
    do {
        w = send(c->fd, buf, (size_t)len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    } while (w < 0 && errno == EINTR);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return w < 0 ? -1 : (int)w;
}

static long sd_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const struct sd_tls_conn *c = BIO_get_data(b);

    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* writes are not buffered here */
    case BIO_CTRL_EOF:
        return c->read_eof;
    case BIO_C_GET_FD:
        if (ptr != NULL)
            *(int *)ptr = c->fd;
        return c->fd;
    default:
        return 0;
    }
}

static int sd_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

void sd_tls_conn_readable(struct sd_tls_conn *c, int hup)
{
    c->read_dry = 0;
    c->hup |= hup;
}

int sd_tls_conn_read_dry(struct sd_tls_conn *c)
{
    /* Only a dry socket with nothing left in OpenSSL's buffer can wait. */
    return c->read_dry && !SSL_has_pending(c->ssl);
}

int sd_tls_init(struct sd_err *err)
{
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
    sd_bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "steeldoor socket");
    if (sd_bio_method == NULL || !BIO_meth_set_read(sd_bio_method, sd_bio_read) ||
        !BIO_meth_set_write(sd_bio_method, sd_bio_write) ||
        !BIO_meth_set_ctrl(sd_bio_method, sd_bio_ctrl) ||
        !BIO_meth_set_create(sd_bio_method, sd_bio_create))
        return sd_err_openssl(err, "cannot create the socket BIO");
    if (RAND_bytes(sd_tls_secret, sizeof(sd_tls_secret)) != 1)
        return sd_err_openssl(err, "cannot get random bytes for session ticket keys");
    return 0;
}

static int sd_tls_set_ticket_keys(SSL_CTX *ctx, const unsigned char *sid, unsigned int sidlen)
{
    unsigned char keys[64 + 32];
    unsigned int n1 = 0, n2 = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    /* 80 bytes: 16 key name, 32 HMAC key, 32 AES key. */
    ok = md != NULL &&
         EVP_DigestInit_ex(md, EVP_sha512(), NULL) &&
         EVP_DigestUpdate(md, sd_tls_secret, sizeof(sd_tls_secret)) &&
         EVP_DigestUpdate(md, sid, sidlen) && EVP_DigestUpdate(md, "tk1", 3) &&
         EVP_DigestFinal_ex(md, keys, &n1) &&
         EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
         EVP_DigestUpdate(md, sd_tls_secret, sizeof(sd_tls_secret)) &&
         EVP_DigestUpdate(md, sid, sidlen) && EVP_DigestUpdate(md, "tk2", 3) &&
         EVP_DigestFinal_ex(md, keys + 64, &n2) &&
         SSL_CTX_set_tlsext_ticket_keys(ctx, keys, 80) == 1;
    OPENSSL_cleanse(keys, sizeof(keys));
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------- SNI and sessions */

/* Runs first on every ClientHello. When the client names a server (SNI),
 * the connection's session id context becomes a digest of the listener's
 * context and that name, so a session made under one name never resumes
 * under another (the CVE-2025-23419 pattern), even on the same listener. */
static int sd_tls_client_hello_cb(SSL *ssl, int *al, void *arg)
{
    const struct sd_tls *tls = arg;
    const unsigned char *ext = NULL;
    size_t len = 0, listlen, namelen, i;
    unsigned char buf[sizeof(tls->sid) + 256], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok;

    struct sd_tls_conn *c = SSL_get_app_data(ssl);

    (void)al;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) || len < 5)
        return SSL_CLIENT_HELLO_SUCCESS; /* no SNI: the listener's own context */
    listlen = (size_t)ext[0] << 8 | ext[1];
    namelen = (size_t)ext[3] << 8 | ext[4];
    if (listlen != len - 2 || ext[2] != 0 || namelen > len - 5 || namelen > 256)
        return SSL_CLIENT_HELLO_SUCCESS; /* OpenSSL itself rejects a bad extension */
    /* Keep the name as sent: OpenSSL does not report it on a resumed TLS
     * 1.2 session, yet the backend must be told the same authority on a
     * resumed connection as on a full one. A name with a NUL is left out
     * (OpenSSL refuses it anyway). */
    if (c != NULL && namelen > 0 && memchr(ext + 5, 0, namelen) == NULL) {
        free(c->sni);
        c->sni = strndup((const char *)ext + 5, namelen);
    }
    /* One-shot digest of (listener context, lowercased name): no allocation
     * on this per-handshake path. */
    memcpy(buf, tls->sid, sizeof(tls->sid));
    for (i = 0; i < namelen; i++) /* DNS names compare case-insensitively */
        buf[sizeof(tls->sid) + i] =
            (unsigned char)((ext[5 + i] >= 'A' && ext[5 + i] <= 'Z') ? ext[5 + i] + 32
                                                                     : ext[5 + i]);
    ok = EVP_Digest(buf, sizeof(tls->sid) + namelen, md, &mdlen, EVP_sha256(), NULL) &&
         SSL_set_session_id_context(ssl, md, mdlen > SSL_MAX_SID_CTX_LENGTH
                                                  ? SSL_MAX_SID_CTX_LENGTH : mdlen);
    if (!ok) {
        ERR_clear_error();
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR; /* never fall back to a shared context */
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ------------------------------------------------------------ chain cache */

static int64_t sd_tls_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* Key of a presented chain: SHA-256 over each certificate's SHA-256. */
static int sd_tls_chain_key(STACK_OF(X509) *sk, unsigned char key[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int i, ok = md != NULL && sk != NULL && sk_X509_num(sk) > 0 &&
                EVP_DigestInit_ex(md, EVP_sha256(), NULL);

    for (i = 0; ok && i < sk_X509_num(sk); i++)
        ok = X509_digest(sk_X509_value(sk, i), EVP_sha256(), d, &dlen) &&
             EVP_DigestUpdate(md, d, dlen);
    ok = ok && EVP_DigestFinal_ex(md, key, &dlen) && dlen == 32;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static struct sd_chain_entry *sd_tls_chain_slot(struct sd_tls *tls, const unsigned char *key)
{
    size_t i = ((size_t)key[0] | (size_t)key[1] << 8) & (SD_CHAIN_CACHE_SIZE - 1);

    return &tls->chains[i];
}

static void sd_tls_chain_remember(struct sd_tls *tls, const unsigned char *key,
                                  X509_STORE_CTX *xs, const struct sd_tls_conn *c, int64_t now)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
    struct sd_chain_entry e, *slot;
    int i;

    memset(&e, 0, sizeof(e));
    memcpy(e.key, key, sizeof(e.key));
    e.rule = c->rule;
    e.hit_kind = c->hit_kind;
    e.hit_index = c->hit_index;
    e.not_after = c->not_after;
    e.expires = now + SD_CHAIN_CACHE_TTL;
    if (tls->crl_fresh_until != 0 && tls->crl_fresh_until < e.expires)
        e.expires = tls->crl_fresh_until;
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        int64_t nb = sd_tls_time(X509_get0_notBefore(x));
        int64_t na = sd_tls_time(X509_get0_notAfter(x));
        if (nb == 0 || na == 0)
            return; /* unreadable dates: do not cache */
        if (nb > e.not_before)
            e.not_before = nb;
        if (na < e.expires)
            e.expires = na;
    }
    if (chain == NULL || e.expires <= now)
        return;
    e.used = 1;
    e.leaf = X509_STORE_CTX_get0_cert(xs);
    if (e.leaf != NULL && !X509_up_ref(e.leaf))
        e.leaf = NULL;
    slot = sd_tls_chain_slot(tls, key);
    X509_free(slot->leaf);
    *slot = e;
}

/* The presented chain is byte for byte the cached one (same SHA-256 of
 * every certificate), so its freshly parsed leaf is swapped for the cached
 * object: OpenSSL then keeps that one in the session, and every connection
 * of a client holds one shared certificate instead of its own 4-5 KiB
 * parsed copy. OpenSSL takes the session's certificate from this very
 * stack (the store context's untrusted list) after verification. The
 * parsed copy stays alive until the handshake ends, as the store context
 * still points at it. */
static void sd_tls_share_leaf(struct sd_tls_conn *c, STACK_OF(X509) *sk, X509 *shared)
{
    X509 *parsed = sk != NULL && sk_X509_num(sk) > 0 ? sk_X509_value(sk, 0) : NULL;

    if (parsed == NULL || shared == NULL || parsed == shared || c->parsed_leaf != NULL ||
        X509_cmp(parsed, shared) != 0 || !X509_up_ref(shared))
        return;
    (void)sk_X509_set(sk, 0, shared);
    c->parsed_leaf = parsed;
}

/* When a full handshake authenticated its client, for session-lifetime,
 * in whole seconds as OpenSSL counts session times: rounded up, so that a
 * session lives its whole lifetime (and at most one second more), never
 * less. */
static int64_t sd_tls_auth_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec + (ts.tv_nsec > 0);
}

/* What the verify callback works for when an open connection is judged
 * again against a new context, outside any handshake (no SSL object). */
struct sd_tls_judging {
    struct sd_tls_conn *c;   /* scratch: reason, rule */
    const struct sd_tls *tls; /* the context judging */
};

/* The earliest notAfter of chain's certificates; INT64_MAX if none, 0 if
 * one cannot be read (then nothing is cached or resumed). */
static int64_t sd_tls_chain_not_after(STACK_OF(X509) *chain)
{
    int64_t min = INT64_MAX;
    int i;

    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        int64_t na = sd_tls_time(X509_get0_notAfter(sk_X509_value(chain, i)));
        if (na == 0)
            return 0;
        if (na < min)
            min = na;
    }
    return min;
}

/*
 * Is a certificate of chain (leaf first, as verified) listed as revoked by
 * any loaded CRL of its issuer? OpenSSL picks one CRL per issuer by dates
 * and order and ignores the others (and delta CRLs unless asked), so a
 * revocation in a second full CRL, or in a delta, could go unseen. Here a
 * certificate is revoked when ANY loaded CRL that its issuer really signed
 * lists it (removeFromCRL entries are not applied: a certificate on hold
 * stays refused until no loaded CRL lists it). Returns the depth of the
 * first revoked certificate, or -1.
 */
static int sd_tls_chain_revoked(const struct sd_tls *tls, STACK_OF(X509) *chain)
{
    int i, n = chain != NULL ? sk_X509_num(chain) : 0;
    size_t k;

    for (i = 0; i + 1 < n && tls->ncrls > 0; i++) {
        X509 *x = sk_X509_value(chain, i), *issuer = sk_X509_value(chain, i + 1);
        for (k = 0; k < tls->ncrls; k++) {
            const struct sd_tls_crl *r = &tls->crls[k];
            X509_REVOKED *rev = NULL;
            int from_issuer;

            if (X509_NAME_cmp(X509_CRL_get_issuer(r->crl), X509_get_subject_name(issuer)) != 0 ||
                X509_CRL_get0_by_cert(r->crl, &rev, x) != 1)
                continue;
            /* Listed. Count it only if this issuer signed the CRL: a CRL
             * from another CA of the same name is not its word. */
            if (r->signer != NULL)
                from_issuer = X509_cmp(r->signer, issuer) == 0 ||
                              EVP_PKEY_eq(X509_get0_pubkey(r->signer), X509_get0_pubkey(issuer)) == 1;
            else
                from_issuer = X509_CRL_verify(r->crl, X509_get0_pubkey(issuer)) == 1;
            if (from_issuer) {
                ERR_clear_error();
                return i;
            }
        }
    }
    ERR_clear_error();
    return -1;
}

/* Replaces X509_verify_cert() for client chains (SSL_CTX_set_cert_verify_
 * callback): a chain verified and admitted within the last minute, by this
 * same listener context, is accepted again without re-verifying; anything
 * else goes through the full verification (and sd_tls_verify_cb). */
static int sd_tls_cert_verify_cb(X509_STORE_CTX *xs, void *arg)
{
    struct sd_tls *tls = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sd_tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    unsigned char key[32];
    int64_t now = (int64_t)time(NULL);
    int have_key = c != NULL && tls->chains != NULL &&
                   sd_tls_chain_key(X509_STORE_CTX_get0_untrusted(xs), key) == 0;
    int ok;

    if (have_key) {
        struct sd_chain_entry *e = sd_tls_chain_slot(tls, key);
        if (e->used && CRYPTO_memcmp(e->key, key, sizeof(key)) == 0 &&
            now >= e->not_before && now < e->expires) {
            c->rule = e->rule;
            c->hit_kind = e->hit_kind;
            c->hit_index = e->hit_index;
            c->auth_time = sd_tls_auth_now();
            c->not_after = e->not_after;
            sd_tls_share_leaf(c, X509_STORE_CTX_get0_untrusted(xs), e->leaf);
            X509_STORE_CTX_set_error(xs, X509_V_OK);
            return 1;
        }
    }
    ok = X509_verify_cert(xs);
    if (ok > 0 && sd_tls_chain_revoked(tls, X509_STORE_CTX_get0_chain(xs)) >= 0) {
        /* OpenSSL used one CRL per issuer; another loaded CRL lists it. */
        X509 *leaf = X509_STORE_CTX_get0_cert(xs);
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REVOKED);
        if (c != NULL) {
            c->rule = -1; /* refused: no rule admitted it */
            if (c->verify_err == 0)
                c->verify_err = X509_V_ERR_CERT_REVOKED;
            if (c->refused_leaf == NULL && leaf != NULL && X509_up_ref(leaf))
                c->refused_leaf = leaf;
        }
        ok = 0;
    }
    if (ok > 0 && have_key && c->rule >= 0 && X509_STORE_CTX_get_error(xs) == X509_V_OK)
        sd_tls_chain_remember(tls, key, xs, c, now);
    ERR_clear_error();
    return ok > 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- context */

/* Bumped whenever the fixed admission policy in this file changes (EKU,
 * CA leaves, identity rules), so that no session made under the old one
 * could ever resume under the new. */
#define SD_TLS_ADMISSION_POLICY "steeldoor-admission-2"

/* sd_config_admission() feeds the session id context digest. A failed
 * update makes the final digest fail, which fails the context. */
static void sd_tls_sid_feed(void *arg, const void *p, size_t n)
{
    if (!EVP_DigestUpdate(arg, p, n))
        EVP_MD_CTX_reset(arg);
}

/* A refused renegotiation noted by sd_tls_info_cb, until the connection's
 * end shows whether it mattered (sd_tls_io_result). Compared by address. */
static const char sd_tls_reneg_pending[] = "renegotiation_refused";

/*
 * Info callback of every listener context. It notes one thing nothing else
 * reveals: a client's renegotiation attempt, i.e. a TLS 1.2 ClientHello after
 * the handshake (the first handshake's ClientHello, and a second one after
 * a HelloRetryRequest, come before the client's Finished; TLS 1.3 has no
 * renegotiation and OpenSSL rejects a ClientHello there as an unexpected
 * message). OpenSSL refuses it by itself (SSL_OP_NO_RENEGOTIATION): it
 * answers with a no_renegotiation warning and the connection goes on. A
 * client that then gives up sends a fatal alert (OpenSSL's own client:
 * handshake_failure), which without this note could not be told from an
 * alert for any other reason. OpenSSL calls this with SSL_CB_ACCEPT_LOOP
 * before each state change, so a ClientHello it has read shows as the
 * state TLS_ST_SR_CLNT_HELLO when its answer is chosen. Other handshake
 * messages after the handshake fail earlier, as unexpected messages.
 */
static void sd_tls_info_cb(const SSL *ssl, int where, int ret)
{
    struct sd_tls_conn *c;

    (void)ret;
    if ((where & SSL_CB_ACCEPT_LOOP) != SSL_CB_ACCEPT_LOOP ||
        SSL_get_state(ssl) != TLS_ST_SR_CLNT_HELLO || SSL_get_peer_finished(ssl, NULL, 0) == 0)
        return;
    c = SSL_get_app_data(ssl);
    if (c != NULL) {
        c->reason = sd_tls_reneg_pending;
        c->detail = "client asked to renegotiate (TLS 1.2); steeldoor never renegotiates";
    }
}

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
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "crl_expired";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "crl_not_yet_valid";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "crl_missing";
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        return "crl_invalid";
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
    const struct sd_tls *tls = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);

    if (ssl == NULL) {
        /* Re-judging an open connection against a new context (no SSL). */
        const struct sd_tls_judging *j = X509_STORE_CTX_get_app_data(xs);
        if (j != NULL) {
            c = j->c;
            tls = j->tls;
        }
    }

    if (!ok && X509_STORE_CTX_get_error(xs) == X509_V_ERR_CRL_HAS_EXPIRED &&
        tls != NULL && tls->crl_grace_s > 0) {
        /* --crl-grace: a CRL a little past its nextUpdate is still used. */
        X509_CRL *crl = X509_STORE_CTX_get0_current_crl(xs);
        time_t limit = time(NULL) - (time_t)tls->crl_grace_s;
        if (crl != NULL && X509_CRL_get0_nextUpdate(crl) != NULL &&
            X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &limit) > 0)
            return 1;
    }
    if (ok && X509_STORE_CTX_get_error_depth(xs) == 0 && cert != NULL) {
        uint32_t flags = X509_get_extension_flags(cert);
        if ((flags & EXFLAG_CA) || X509_check_ca(cert) != 0) {
            /* A CA certificate (basicConstraints CA:TRUE, whatever its key
             * usage says; keyCertSign; or a v1 root) can sign certificates
             * for any name: it is never a client. */
            X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
            if (c != NULL) {
                c->reason = "ca_certificate";
                c->detail = "a CA certificate is never accepted as a client certificate";
                if (c->refused_leaf == NULL && X509_up_ref(cert))
                    c->refused_leaf = cert;
            }
            return 0;
        } else if (!(flags & EXFLAG_XKUSAGE) ||
            !(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT)) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
            ok = 0;
        } else if (c != NULL && tls != NULL) {
            /* The chain is valid: now who is it? Deny unless a rule says
             * yes. Failing here fails the handshake itself. */
            c->rule = sd_tls_authorize(c, tls, cert);
            if (c->rule < 0) {
                X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
                if (c->refused_leaf == NULL && X509_up_ref(cert))
                    c->refused_leaf = cert;
                return 0;
            }
            c->auth_time = sd_tls_auth_now();
            c->not_after = sd_tls_chain_not_after(X509_STORE_CTX_get0_chain(xs));
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
static int sd_tls_load_ca_file(SSL_CTX *ctx, struct sd_files *files, const char *path,
                               EVP_MD_CTX *sid, int in_dir, int *total, struct sd_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = NULL;
    X509 *x = NULL;
    int count = 0, rc = -1, index = 0;

    bio = sd_tls_file_bio(files, path, "CA bundle", NULL, err);
    if (bio == NULL)
        return -1;
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
    if (count == 0 && in_dir) {
        /* A directory of bundles may hold other files (a README, CRLs, a
         * bundle emptied to remove a CA): skipped, never a blocked start or
         * a blocked reload that removes trust. */
        if (!sd_files_frozen(files))
            sd_log_msg("warn", "config", "%s: no PEM certificate in this file of the CA "
                       "directory; skipped", path);
        rc = 0;
        goto out;
    }
    if (count == 0) {
        sd_err_set(err, "%s: CA bundle contains no CA certificate", path);
        goto out;
    }
    *total += count;
    rc = 0;
out:
    X509_free(x);
    BIO_free(bio);
    return rc;
}

/* --cacert: a file, or a directory whose every regular, non-hidden file is
 * a CA bundle (read in name order, so the result does not depend on the
 * directory's internal order). */
static int sd_tls_load_cas(SSL_CTX *ctx, struct sd_files *files, const char *path,
                           EVP_MD_CTX *sid, struct sd_err *err)
{
    const struct sd_file *dir, *f;
    size_t off;
    int total = 0;

    if (sd_files_get(files, path, &dir, err) != 0)
        return -1;
    if (dir->kind != SD_FILE_DIR)
        return sd_tls_load_ca_file(ctx, files, path, sid, 0, &total, err);
    for (off = 0; off < dir->len; off += strlen((const char *)dir->data + off) + 1) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, (const char *)dir->data + off);
        if (sd_files_get(files, file, &f, err) != 0)
            return -1;
        if (f->kind != SD_FILE_REG)
            continue; /* subdirectories are not read */
        if (sd_tls_load_ca_file(ctx, files, file, sid, 1, &total, err) != 0)
            return -1;
    }
    if (total == 0)
        return sd_err_set(err, "%s: CA directory contains no CA certificate", path);
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

/* After all CRLs are loaded: until when is the set fresh? For each issuer
 * the newest full CRL decides (an old CRL lying next to a fresh one must
 * not refuse everyone), the earliest of those over all issuers, plus the
 * grace. Warns (master only) about issuers whose newest CRL is stale. */
static void sd_tls_crl_freshness(struct sd_tls *tls, struct sd_files *files)
{
    size_t i, j;

    tls->crl_fresh_until = 0;
    for (i = 0; i < tls->ncrls; i++) {
        int64_t newest = 0;
        int first = 1, no_next = 0;
        const char *newest_path = tls->crls[i].path;
        if (tls->crls[i].delta)
            continue;
        for (j = 0; j < tls->ncrls; j++) {
            int64_t nu;
            if (tls->crls[j].delta ||
                X509_NAME_cmp(X509_CRL_get_issuer(tls->crls[i].crl),
                              X509_CRL_get_issuer(tls->crls[j].crl)) != 0)
                continue;
            if (j < i) {
                first = 0; /* this issuer was done at its first CRL */
                break;
            }
            nu = sd_tls_time(X509_CRL_get0_nextUpdate(tls->crls[j].crl));
            if (nu == 0)
                no_next = 1; /* no nextUpdate: never stale */
            else if (nu > newest) {
                newest = nu;
                newest_path = tls->crls[j].path;
            }
        }
        if (!first || no_next)
            continue;
        newest += (int64_t)tls->crl_grace_s;
        if (tls->crl_fresh_until == 0 || newest < tls->crl_fresh_until)
            tls->crl_fresh_until = newest;
        if (!sd_files_frozen(files) && newest <= (int64_t)time(NULL)) {
            char issuer[256];
            sd_log_msg("warn", "crl", "%s: CRL is past its nextUpdate%s and is the newest "
                       "of %s; clients whose chain it covers are refused (reason "
                       "crl_expired) until a fresh CRL is installed", newest_path,
                       tls->crl_grace_s > 0 ? " and the grace" : "",
                       sd_tls_name_text(X509_CRL_get_issuer(tls->crls[i].crl), issuer,
                                        sizeof(issuer)));
        }
    }
}

/* Loads a CRL file: one DER CRL, or one or more PEM CRLs (CAs publish one
 * CRL each, and a bundle of them in one file is common). Every CRL in it
 * must be valid; anything else in a PEM file is an error, never skipped. */
static int sd_tls_load_crl(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                           const char *path, EVP_MD_CTX *sid, struct sd_err *err)
{
    X509_CRL *crl = NULL;
    BIO *bio = NULL;
    int n = 0, rc = -1;
    unsigned long e;

    bio = sd_tls_file_bio(files, path, "CRL", NULL, err);
    if (bio == NULL)
        return -1;
    crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    if (crl == NULL) {
        ERR_clear_error();
        (void)BIO_reset(bio);
        crl = d2i_X509_CRL_bio(bio, NULL);
        if (crl == NULL) {
            sd_err_openssl(err, "%s: not a CRL (PEM or DER)", path);
            goto out;
        }
        rc = sd_tls_add_crl(tls, ctx, files, path, crl, sid, err);
        goto out;
    }
    while (crl != NULL) {
        n++;
        if (sd_tls_add_crl(tls, ctx, files, path, crl, sid, err) != 0)
            goto out;
        X509_CRL_free(crl);
        crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
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

/* The server's certificate chain (leaf first) and key, from the snapshot. */
static int sd_tls_load_identity(SSL_CTX *ctx, struct sd_files *files,
                                const struct sd_listener_conf *lc, struct sd_err *err)
{
    const struct sd_file *kf = NULL;
    BIO *cb = NULL, *kb = NULL;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    cb = sd_tls_file_bio(files, lc->cert, "certificate", NULL, err);
    if (cb == NULL)
        goto out;
    kb = sd_tls_file_bio(files, lc->key, "private key", &kf, err);
    if (kb == NULL)
        goto out;
    x = PEM_read_bio_X509_AUX(cb, NULL, NULL, NULL);
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
        sd_err_openssl(err, "%s: cannot load certificate chain", lc->cert);
        goto out;
    }
    X509_free(x);
    while ((x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            sd_err_openssl(err, "%s: cannot load certificate chain", lc->cert);
            goto out;
        }
        x = NULL; /* owned by the context now */
    }
    {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
            ERR_clear_error();
        } else if (e != 0) {
            sd_err_openssl(err, "%s: cannot load certificate chain", lc->cert);
            goto out;
        }
    }
    if (sd_tls_check_validity(SSL_CTX_get0_certificate(ctx), lc->cert, err) != 0)
        goto out;
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        sd_err_openssl(err, "%s: cannot load private key", lc->key);
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        sd_err_openssl(err, "%s: private key does not match certificate %s", lc->key, lc->cert);
        goto out;
    }
    /* Group read is how an unprivileged account (--user) is given a key
     * root owns (root:steeldoor 0640, as Debian's ssl-cert group); any
     * access by others, or group write, is a mistake. */
    if (!sd_files_frozen(files) && (kf->mode & 027) != 0)
        sd_log_msg("warn", "config", "%s: private key is accessible to others or writable "
                   "by its group (mode %03o); it should be 0600, or 0640 for a group "
                   "that only the steeldoor account is in", lc->key, kf->mode & 0777);
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

struct sd_tls *sd_tls_server_new(const struct sd_listener_conf *lc,
                                 struct sd_files *files, struct sd_err *err)
{
    struct sd_tls *tls = NULL;
    SSL_CTX *ctx = NULL;
    EVP_MD_CTX *sid = NULL;
    unsigned char sidbuf[EVP_MAX_MD_SIZE];
    unsigned int sidlen = 0;
    size_t i;

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
    /* Read whole socket buffers, not one record header then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    /* The whole point of steeldoor: no certificate, no handshake. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       sd_tls_verify_cb);
    /* Notes a client's renegotiation attempt for the log (sd_tls_info_cb). */
    SSL_CTX_set_info_callback(ctx, sd_tls_info_cb);
    SSL_CTX_set_verify_depth(ctx, (int)lc->verify_depth);
    if (!SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT)) {
        sd_err_openssl(err, "listener %s: cannot set certificate purpose", lc->name);
        goto fail;
    }
    SSL_CTX_set_timeout(ctx, lc->session_lifetime_ms > 0
                                 ? (long)(lc->session_lifetime_ms + 999) / 1000 : 1);
    SSL_CTX_set_num_tickets(ctx, lc->session_lifetime_ms > 0 ? 1 : 0);

    if (sd_tls_load_identity(ctx, files, lc, err) != 0 ||
        sd_tls_load_cas(ctx, files, lc->cacert, sid, err) != 0)
        goto fail;
    tls->crl_grace_s = lc->crl_grace_s;
    for (i = 0; i < lc->ncrls; i++)
        if (sd_tls_load_crl(tls, ctx, files, lc->crls[i], sid, err) != 0)
            goto fail;
    if (lc->ncrls > 0) {
        size_t k;
        unsigned long flags = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
        sd_tls_crl_freshness(tls, files);
        /* Delta CRLs (the AD CS layout): OpenSSL applies them to their base
         * only when asked; sd_tls_chain_revoked() counts their revocations
         * in any case. */
        for (k = 0; k < tls->ncrls; k++)
            if (tls->crls[k].delta)
                flags |= X509_V_FLAG_USE_DELTAS;
        /* Check the leaf and every intermediate: a CA level without a CRL
         * from its issuer fails closed (crl_missing). */
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags);
    }
    tls->policy = lc->policy;
    tls->session_lifetime_s = lc->session_lifetime_ms == 0 ? 0
                              : (lc->session_lifetime_ms + 999) / 1000;
    SSL_CTX_set_app_data(ctx, tls);
    tls->chains = calloc(SD_CHAIN_CACHE_SIZE, sizeof(*tls->chains));
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
                                        sidlen > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH : sidlen) ||
        sd_tls_set_ticket_keys(ctx, sidbuf, sidlen) != 0) {
        sd_err_openssl(err, "listener %s: cannot set session id context", lc->name);
        goto fail;
    }
    memcpy(tls->sid, sidbuf, sizeof(tls->sid));
    SSL_CTX_set_client_hello_cb(ctx, sd_tls_client_hello_cb, tls);
    /* Stateful resumption: TLS 1.3 tickets and TLS 1.2 session ids refer
     * to sessions kept here (OpenSSL's in-process cache first, the shared
     * cache behind it when there are several workers), so resuming costs a
     * lookup instead of decrypting and re-parsing a ticket with the client's
     * certificate in it. */
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

void sd_tls_free(struct sd_tls *tls)
{
    size_t i;

    if (tls == NULL)
        return;
    for (i = 0; tls->chains != NULL && i < SD_CHAIN_CACHE_SIZE; i++)
        X509_free(tls->chains[i].leaf);
    free(tls->chains);
    for (i = 0; i < tls->ncrls; i++) {
        X509_CRL_free(tls->crls[i].crl);
        X509_free(tls->crls[i].signer);
    }
    free(tls->crls);
    SSL_CTX_free(tls->ctx);
    free(tls);
}

/* ------------------------------------------------------------- connection */

struct sd_tls_conn *sd_tls_conn_new(struct sd_tls *tls, int fd)
{
    struct sd_tls_conn *c = calloc(1, sizeof(*c));
    BIO *bio;

    if (c == NULL)
        return NULL;
    c->ssl = SSL_new(tls->ctx);
    c->fd = fd;
    bio = c->ssl != NULL ? BIO_new(sd_bio_method) : NULL;
    if (bio == NULL) {
        ERR_clear_error();
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio); /* the SSL owns the BIO from here */
    c->rule = -1;
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
    X509_free(c->parsed_leaf);
    free(c->sni);
    free(c);
}

/* Empties OpenSSL's error queue and returns its first entry from the SSL
 * library, else its first entry: the record layer and state machine name
 * what the client did, and a failed record decryption, for one, first
 * queues the cipher's own "cipher operation failed". */
static unsigned long sd_tls_take_error(void)
{
    unsigned long e, first = 0, ssl = 0;
    int i;

    for (i = 0; i < 64 && (e = ERR_get_error()) != 0; i++) { /* the queue holds 16 */
        if (first == 0)
            first = e;
        if (ssl == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL)
            ssl = e;
    }
    ERR_clear_error();
    return ssl != 0 ? ssl : first;
}

/* The log reason for an OpenSSL error that says what the client sent, in
 * the handshake or after it, with *detail; NULL for any other error. */
static const char *sd_tls_client_fault(unsigned long e, const char **detail)
{
    int r = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;

    *detail = e != 0 ? ERR_reason_error_string(e) : NULL;
    /* A fatal alert from the client is raised as SSL_AD_REASON_OFFSET plus
     * its description (close_notify, 0, is no error). In TLS 1.3 every
     * alert but close_notify and user_canceled is fatal, whatever level
     * the record says. */
    if (r > SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256) {
        const char *name = SSL_alert_desc_string_long(r - SSL_AD_REASON_OFFSET);
        *detail = strcmp(name, "unknown") != 0 ? name : "alert with an unknown description";
        return "client_alert";
    }
    switch (r) {
    case SSL_R_NO_RENEGOTIATION:
        /* a no_renegotiation warning steeldoor never asked for: OpenSSL
         * ends the connection as for a fatal alert */
        *detail = "no renegotiation (warning alert)";
        return "client_alert";
    case SSL_R_TOO_MANY_WARN_ALERTS: /* warning alerts (or user_canceled) in a row */
    case SSL_R_RECORD_TOO_SMALL:     /* empty records in a row */
    case SSL_R_TOO_MANY_KEY_UPDATES: /* TLS 1.3 KeyUpdates in a row */
        return "tls_flood";
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST: /* "CONNECT host:port", as sent to a proxy */
        return "plaintext_http";
    /* records the client framed, encrypted or ordered wrongly */
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_DATA_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_COMPRESSED_LENGTH_TOO_LONG:
    case SSL_R_BAD_DECOMPRESSION:
    case SSL_R_BAD_RECORD_TYPE:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_DECRYPTION_FAILED:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_INVALID_ALERT:
    case SSL_R_UNKNOWN_ALERT_TYPE:
    case SSL_R_CCS_RECEIVED_EARLY:
    case SSL_R_UNEXPECTED_CCS_MESSAGE:
    case SSL_R_BAD_CHANGE_CIPHER_SPEC:
    case SSL_R_INVALID_CCS_MESSAGE:
    case SSL_R_DATA_BETWEEN_CCS_AND_FINISHED:
    case SSL_R_NOT_ON_RECORD_BOUNDARY:
    /* handshake messages that are malformed or out of order */
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_BAD_HANDSHAKE_LENGTH:
    case SSL_R_EXCESSIVE_MESSAGE_SIZE:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_LENGTH_TOO_LONG:
    case SSL_R_BAD_LENGTH:
    case SSL_R_BAD_PACKET:
    case SSL_R_BAD_PACKET_LENGTH:
    case SSL_R_BAD_EXTENSION:
    case SSL_R_PARSE_TLSEXT:
    case SSL_R_CLIENTHELLO_TLSEXT:
    case SSL_R_EXT_LENGTH_MISMATCH:
    case SSL_R_UNSOLICITED_EXTENSION:
    case SSL_R_BAD_KEY_UPDATE:
    case SSL_R_BAD_KEY_SHARE:
    case SSL_R_BAD_ECPOINT:
    case SSL_R_BAD_LEGACY_VERSION:
    case SSL_R_CERT_LENGTH_MISMATCH:
    case SSL_R_WRONG_SIGNATURE_LENGTH:
        return "tls_protocol_error";
    default:
        return NULL;
    }
}

/* Maps a failed handshake to a log reason. The verify callback's record is
 * the most precise; otherwise what OpenSSL queued about the client. */
static void sd_tls_conn_handshake_failed(struct sd_tls_conn *c, int sslerr)
{
    int sys = errno; /* the socket's error, if that is what ended it */
    unsigned long e = sd_tls_take_error();

    if (c->reason != NULL) {
        /* set by the allow rules (not_authorized, malformed_identity) */
    } else if (c->verify_err != 0 && c->refused_leaf != NULL &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_INVALID)) {
        /* OpenSSL could not decode an extension (e.g. the SAN) of the
         * leaf, and so could not even build its chain. */
        c->reason = "malformed_identity";
        c->detail = "certificate has an undecodable extension";
    } else if (c->verify_err == X509_V_ERR_INVALID_PURPOSE && c->refused_leaf != NULL &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_XKUSAGE) &&
               (X509_get_extended_key_usage(c->refused_leaf) & XKU_SSL_CLIENT) &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_KUSAGE) &&
               !(X509_get_key_usage(c->refused_leaf) & (KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT))) {
        /* The EKU is right, but the keyUsage extension does not let the
         * key sign (or agree on) a handshake: OpenSSL's purpose check says
         * only "unsupported certificate purpose", which wrong_eku would
         * misname. */
        c->reason = "wrong_key_usage";
        c->detail = "keyUsage has neither digitalSignature nor keyAgreement";
    } else if (c->verify_err != 0) {
        c->reason = sd_tls_verify_reason(c->verify_err);
        c->detail = X509_verify_cert_error_string(c->verify_err);
    } else if (e != 0) {
        const char *detail = ERR_reason_error_string(e);
        const char *reason = NULL;

        switch (ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            reason = "no_client_certificate";
            break;
        case SSL_R_UNSUPPORTED_PROTOCOL: /* TLS 1.1 and older, SSL 3 */
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_UNKNOWN_PROTOCOL:     /* an SSL 2 ClientHello */
            reason = "protocol_version";
            break;
        case SSL_R_WRONG_VERSION_NUMBER:
            /* Before any record was understood this is OpenSSL's verdict
             * on bytes that do not look like TLS at all (it then sends no
             * alert); later it is a record with a changed version. */
            if (SSL_get_state(c->ssl) == TLS_ST_BEFORE) {
                reason = "not_tls";
                detail = "the client's first bytes are not a TLS record";
            }
            break;
        case SSL_R_NO_SHARED_CIPHER:
            reason = "no_shared_cipher";
            break;
        default:
            break;
        }
        if (reason == NULL)
            reason = sd_tls_client_fault(e, &detail);
        /* anything else: a negotiation OpenSSL could not complete (no
         * common group or signature algorithm, a bad CertificateVerify
         * signature, ...), in OpenSSL's words */
        c->reason = reason != NULL ? reason : "handshake_failed";
        c->detail = detail;
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        c->reason = "handshake_aborted";
        c->detail = sys == ECONNRESET ? strerror(sys)
                                      : "client closed the connection during the handshake";
    } else {
        c->reason = "handshake_failed";
    }
}

/* Turns SSL_get_error() into an sd_io for reads, writes and shutdown, and a
 * failure into the log's reason for it. (SSL_in_init() says nothing here:
 * OpenSSL sets it on every fatal error.) */
static enum sd_io sd_tls_io_result(struct sd_tls_conn *c, int ret)
{
    int sys = errno; /* the socket's error, if that is what failed */
    int e = SSL_get_error(c->ssl, ret);
    const char *reason, *detail;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        return SD_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SD_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        /* The client's close_notify. A read takes it as the end of the
         * client's data; a write or close_notify of ours reports it when
         * the socket failed after it (the client is gone), and then the
         * caller logs this. */
        c->reason = "client_reset";
        c->detail = sys != 0 && sys != EAGAIN ? strerror(sys) : "client closed the connection";
        ERR_clear_error();
        return SD_IO_EOF;
    case SSL_ERROR_SYSCALL:
        c->reason = "client_reset";
        c->detail = sys != 0 ? strerror(sys) : "connection closed";
        ERR_clear_error();
        return SD_IO_ERROR;
    default:
        reason = sd_tls_client_fault(sd_tls_take_error(), &detail);
        if (reason == NULL)
            reason = "tls_error"; /* not the client's doing, as far as OpenSSL says */
        else if (c->reason == sd_tls_reneg_pending &&
                 (strcmp(reason, "client_alert") == 0 ||
                  strcmp(reason, "tls_protocol_error") == 0))
            /* The client's answer to the refusal (an alert, or going on
             * with its handshake): the detail keeps what it sent. */
            reason = "renegotiation_refused";
        c->reason = reason;
        c->detail = detail;
        return SD_IO_ERROR;
    }
}

/* The client's chain often repeats certificates the trust store holds
 * (clients that send their root, or intermediates steeldoor also trusts).
 * Each parsed copy costs about 4.5 KiB for as long as the session lives, so
 * copies identical to a store certificate are swapped for a reference to
 * the store's object: the same certificate, shared by every connection. */
static void sd_tls_share_chain(SSL *ssl)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    X509_STORE *store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
    STACK_OF(X509_OBJECT) *objs = store != NULL ? X509_STORE_get0_objects(store) : NULL;
    X509_OBJECT *probe;
    int i;

    if (chain == NULL || objs == NULL || (probe = X509_OBJECT_new()) == NULL)
        return;
    for (i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        X509_OBJECT *o;
        X509 *same;

        if (!X509_OBJECT_set1_X509(probe, x))
            break;
        o = X509_OBJECT_retrieve_match(objs, probe);
        same = o != NULL ? X509_OBJECT_get0_X509(o) : NULL;
        if (same != NULL && same != x && X509_up_ref(same)) {
            (void)sk_X509_set(chain, i, same);
            X509_free(x);
        }
    }
    X509_OBJECT_free(probe);
}

/* Defence in depth for a resumed session: OpenSSL already refused to
 * resume it past its deadline (see sd_tls_new_session_cb), but the record
 * is checked again here, so that no path (clock rounding, a session from
 * the shared cache) resumes what a full handshake would refuse now.
 * Returns 0, or -1 with c->reason set. */
static int sd_tls_resumed_admitted(struct sd_tls_conn *c, const struct sd_tls *tls)
{
    struct sd_tls_adm a;
    int64_t now = (int64_t)time(NULL);

    if (sd_tls_adm_get(SSL_get_session(c->ssl), &a) != 0) {
        c->reason = "session_invalid";
        c->detail = "resumed session carries no admission record";
        return -1;
    }
    c->auth_time = a.auth_time;
    c->not_after = a.not_after;
    /* Deadlines are exclusive, as OpenSSL's own date checks: a certificate
     * is expired, a CRL stale, from the very second of its date. */
    if (now >= a.not_after) {
        c->reason = "certificate_expired";
        c->detail = "resumed session: a certificate of the chain has expired";
        return -1;
    }
    if (tls->crl_fresh_until != 0 && now >= tls->crl_fresh_until) {
        c->reason = "crl_expired";
        c->detail = "resumed session: the CRLs are past their nextUpdate";
        return -1;
    }
    if (now >= a.auth_time + (int64_t)tls->session_lifetime_s) {
        c->reason = "session_expired";
        c->detail = "resumed session: older than session-lifetime";
        return -1;
    }
    return 0;
}

enum sd_io sd_tls_handshake(struct sd_tls_conn *c)
{
    int ret, e;

    errno = 0;
    ret = SSL_do_handshake(c->ssl);
    if (ret == 1) {
        /* A resumed session skipped the verify callback; its certificate
         * passed the same listener's checks when the session was made (the
         * session id context binds it to this listener and its rules).
         * Apply the allow rules again anyway, for the log's rule and as
         * defence in depth. */
        if (SSL_session_reused(c->ssl)) {
            const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
            X509 *peer = SSL_get0_peer_certificate(c->ssl);
            if (peer == NULL) {
                c->reason = "no_client_certificate";
                c->detail = "resumed session without a client certificate";
                return SD_IO_ERROR;
            }
            if (sd_tls_resumed_admitted(c, tls) != 0)
                return SD_IO_ERROR;
            c->rule = sd_tls_authorize(c, tls, peer);
            if (c->rule < 0)
                return SD_IO_ERROR;
        } else {
            sd_tls_share_chain(c->ssl);
        }
        X509_free(c->parsed_leaf);
        c->parsed_leaf = NULL;
        return SD_IO_OK;
    }
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

/* One record per SSL_write_ex (SSL_MODE_ENABLE_PARTIAL_WRITE), so that
 * every record but the last of a burst goes out with MSG_MORE: the kernel
 * then queues them and pushes one large segment, with one wake-up of the
 * client, instead of one per 16 KiB record. That per-send path, not the
 * copy or the cipher, is most of the CPU a bulk transfer costs. */
enum sd_io sd_tls_write(struct sd_tls_conn *c, const void *buf, size_t len,
                        size_t *n)
{
    const unsigned char *p = buf;
    size_t done = 0, chunk, w;
    enum sd_io io = SD_IO_OK;

    errno = 0;
    while (done < len) {
        chunk = len - done > SD_TLS_RECORD ? SD_TLS_RECORD : len - done;
        c->write_more = done + chunk < len;
        w = 0;
        if (SSL_write_ex(c->ssl, p + done, chunk, &w) != 1) {
            io = sd_tls_io_result(c, 0);
            break;
        }
        done += w;
    }
    c->write_more = 0;
    *n = done;
    /* Bytes already written make this call a success; the failure, if it
     * was one, shows again on the next call. */
    return done > 0 ? SD_IO_OK : io;
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

void sd_tls_expire_sessions(struct sd_tls *tls)
{
    SSL_CTX_flush_sessions(tls->ctx, (long)time(NULL));
}

const char *sd_tls_conn_reason(const struct sd_tls_conn *c)
{
    return c->reason;
}

const char *sd_tls_conn_detail(const struct sd_tls_conn *c)
{
    return c->detail;
}

/* ------------------------------------------------------- after a reload */

/* The certificates to offer as untrusted when c's client is verified
 * again: the verified chain's (full handshake), else those recorded in the
 * session (resumed), else what the client presented. Returns a new stack
 * owning its certificates (possibly empty), or NULL on allocation failure. */
static STACK_OF(X509) *sd_tls_conn_untrusted(const struct sd_tls_conn *c)
{
    STACK_OF(X509) *out = sk_X509_new_null();
    STACK_OF(X509) *chain = SSL_get0_verified_chain(c->ssl);
    struct sd_tls_adm a;
    int i;

    if (out == NULL)
        return NULL;
    if (chain == NULL && !SSL_session_reused(c->ssl))
        chain = SSL_get_peer_cert_chain(c->ssl);
    if (chain != NULL) {
        for (i = 0; i < sk_X509_num(chain); i++) {
            X509 *x = sk_X509_value(chain, i);
            if (!X509_up_ref(x))
                goto fail;
            if (!sk_X509_push(out, x)) {
                X509_free(x);
                goto fail;
            }
        }
    } else if (sd_tls_adm_get(SSL_get_session(c->ssl), &a) == 0) {
        const unsigned char *p = a.chain, *end = a.chain + a.chainlen;
        while (p < end) {
            X509 *x = d2i_X509(NULL, &p, (long)(end - p));
            if (x == NULL)
                break;
            if (!sk_X509_push(out, x)) {
                X509_free(x);
                goto fail;
            }
        }
    }
    ERR_clear_error();
    return out;
fail:
    sk_X509_pop_free(out, X509_free);
    return NULL;
}

/*
 * Would `now` admit c's client if it connected now? The whole verification
 * runs again against the new context: its trust store (a CA removed),
 * CRLs (the leaf or any intermediate revoked, whatever the CRL layout),
 * chain depth, CRL freshness and grace, validity dates, EKU, the CA-leaf
 * and identity rules, and the allow rules. It starts from the chain that
 * verification built (so an intermediate that came from --cacert is judged
 * too), for full and resumed connections alike.
 */
const char *sd_tls_conn_judge(const struct sd_tls_conn *c, struct sd_tls *now)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE_CTX *xs = NULL;
    struct sd_tls_conn scratch;
    struct sd_tls_judging j;
    const char *reason = "internal_error";
    unsigned char key[32];
    int64_t t = (int64_t)time(NULL);
    int ok, have_key = 0;

    if (peer == NULL)
        return "no_client_certificate";
    memset(&scratch, 0, sizeof(scratch));
    scratch.rule = -1;
    j.c = &scratch;
    j.tls = now;
    untrusted = sd_tls_conn_untrusted(c);
    xs = X509_STORE_CTX_new();
    if (untrusted == NULL || xs == NULL ||
        !X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(now->ctx), peer, untrusted) ||
        !X509_STORE_CTX_set_default(xs, "ssl_client") ||
        !X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(xs), SSL_CTX_get0_param(now->ctx)))
        goto out; /* (the same set-up as OpenSSL's for a handshake) */
    /* Many connections of one client share one verdict: the new context's
     * chain cache is keyed by exactly the certificates given here. */
    if (now->chains != NULL && sk_X509_insert(untrusted, peer, 0) > 0) {
        have_key = sd_tls_chain_key(untrusted, key) == 0;
        (void)sk_X509_delete(untrusted, 0);
    }
    if (have_key) {
        const struct sd_chain_entry *e = sd_tls_chain_slot(now, key);
        if (e->used && CRYPTO_memcmp(e->key, key, sizeof(key)) == 0 &&
            t >= e->not_before && t < e->expires) {
            reason = NULL;
            goto out;
        }
    }
    X509_STORE_CTX_set_app_data(xs, &j);
    X509_STORE_CTX_set_verify_cb(xs, sd_tls_verify_cb);
    ok = X509_verify_cert(xs);
    if (ok > 0 && sd_tls_chain_revoked(now, X509_STORE_CTX_get0_chain(xs)) >= 0) {
        ok = 0;
        scratch.verify_err = X509_V_ERR_CERT_REVOKED;
    }
    if (ok > 0 && scratch.rule >= 0) {
        reason = NULL;
        if (have_key)
            sd_tls_chain_remember(now, key, xs, &scratch, t);
    }
    else if (scratch.reason != NULL)
        reason = scratch.reason;
    else if (scratch.verify_err != 0)
        reason = sd_tls_verify_reason(scratch.verify_err);
    else
        reason = sd_tls_verify_reason(X509_STORE_CTX_get_error(xs));
out:
    X509_STORE_CTX_free(xs);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(scratch.refused_leaf);
    ERR_clear_error();
    return reason;
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

/* ---------------------------------------------------------- PROXY header */

/* The name of t (c's peer) that admitted c, or NULL. */
static const struct sd_name *sd_tls_conn_hit(const struct sd_tls_conn *c,
                                             const struct sd_tls_ident *t)
{
    struct sd_policy_hit hit;

    hit.rule = c->rule;
    hit.kind = (enum sd_rule_kind)c->hit_kind;
    hit.index = c->hit_index;
    return sd_policy_hit_name(&t->id, &hit);
}

long sd_tls_conn_pp2(const struct sd_tls_conn *c, const struct sockaddr *src,
                     const struct sockaddr *dst, uint8_t *out, size_t cap)
{
    struct sd_pp2_info in;
    struct sd_tls_ident t;
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const unsigned char *alpn = NULL;
    unsigned int alpnlen = 0;
    const char *sni = c->sni != NULL ? c->sni
                                     : SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
    const struct sd_name *hit;
    BIO *b = NULL;
    char *subj = NULL;
    long n = -1, sublen;

    memset(&t, 0, sizeof(t));
    if (peer == NULL || sd_tls_ident_load(&t, peer, 0) != 0 ||
        !X509_digest(peer, EVP_sha256(), md, &mdlen) || (b = BIO_new(BIO_s_mem())) == NULL ||
        X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
        goto out;
    sublen = BIO_get_mem_data(b, &subj);
    memset(&in, 0, sizeof(in));
    in.src = src;
    in.dst = dst;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
    in.alpn.s = (const char *)alpn;
    in.alpn.len = alpnlen;
    in.authority.s = sni;
    in.authority.len = sni != NULL ? strlen(sni) : 0;
    in.version = SSL_get_version(c->ssl);
    in.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl));
    in.sig_alg = OBJ_nid2sn(X509_get_signature_nid(peer));
    in.key_alg = EVP_PKEY_get0_type_name(X509_get0_pubkey(peer));
    if (t.ncns > 0)
        in.cn = t.cns[0];
    in.uris = t.uris;
    in.nuris = t.nuris;
    in.dns = t.dns;
    in.ndns = t.ndns;
    in.cert_sha256 = md;
    in.subject.s = subj;
    in.subject.len = sublen > 0 ? (size_t)sublen : 0;
    hit = sd_tls_conn_hit(c, &t);
    if (hit != NULL)
        in.identity = *hit;
    if (c->rule >= 0 && tls != NULL)
        in.rule = sd_policy_rule_text(tls->policy, (size_t)c->rule);
    n = sd_pp2_build(&in, out, cap);
out:
    BIO_free(b);
    sd_tls_ident_clear(&t);
    ERR_clear_error();
    return n;
}

/* ---------------------------------------------------------------- logging */

/* Bounds of what the client controls in a connection's log line (bytes of
 * escaped JSON): the verdict, counters and TLS parameters come first and
 * always fit (SD_LOG_LINE_MAX is 4 KiB); a cut field is marked
 * "<key>_truncated":true. */
#define SD_TLS_LOG_NAME_MAX 512
#define SD_TLS_LOG_SUBJECT_MAX 768
#define SD_TLS_LOG_SANS_MAX 1280

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
            sd_log_strn_bounded(l, "subject", data, (size_t)n, SD_TLS_LOG_SUBJECT_MAX);
    }
    BIO_free(b);
}

static void sd_tls_log_sans(X509 *x, struct sd_logline *l)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i;

    sd_log_array_begin_bounded(l, "sans", SD_TLS_LOG_SANS_MAX);
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
            sd_log_array_strn_bounded(l, tmp, (size_t)n, SD_TLS_LOG_NAME_MAX);
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
        sd_log_array_strn_bounded(l, tmp, (size_t)n, SD_TLS_LOG_NAME_MAX);
    }
    sd_log_array_end(l);
    GENERAL_NAMES_free(names);
}

void sd_tls_conn_log(const struct sd_tls_conn *c, struct sd_logline *l)
{
    X509 *peer;

    /* What steeldoor decided first, then what the client sent, bounded. */
    if (SSL_get_current_cipher(c->ssl) != NULL) {
        sd_log_str(l, "tls_version", SSL_get_version(c->ssl));
        sd_log_str(l, "cipher", SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)));
        sd_log_bool(l, "resumed", SSL_session_reused(c->ssl));
    }
    if (c->rule >= 0) {
        const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
        struct sd_tls_ident t;
        X509 *x = SSL_get0_peer_certificate(c->ssl);
        memset(&t, 0, sizeof(t));
        sd_log_str_bounded(l, "rule", sd_policy_rule_text(tls->policy, (size_t)c->rule),
                           SD_TLS_LOG_NAME_MAX);
        if (x != NULL && sd_tls_ident_load(&t, x, 0) == 0) {
            const struct sd_name *hit = sd_tls_conn_hit(c, &t);
            if (hit != NULL)
                sd_log_strn_bounded(l, "identity", hit->s, hit->len, SD_TLS_LOG_NAME_MAX);
        }
        sd_tls_ident_clear(&t);
    }
    if (c->sni != NULL)
        sd_log_str_bounded(l, "sni", c->sni, SD_TLS_LOG_NAME_MAX);
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
