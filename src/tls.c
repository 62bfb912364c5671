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
/* Sessions (and TLS 1.3 tickets) live five minutes, as nginx's default. */
#define SD_TLS_SESSION_TIMEOUT 300
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
    int rule;              /* the allow rule that admitted it */
    int used;
    X509 *leaf;            /* the verified leaf: sessions of this chain share it */
};

struct sd_tls {
    SSL_CTX *ctx;
    const struct sd_policy *policy; /* owned by the listener's config */
    uint32_t crl_grace_s;
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH]; /* session id context */
    int64_t crl_next_update; /* earliest nextUpdate of the CRLs, or 0 */
    struct sd_chain_entry *chains;
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

static int sd_tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    unsigned char buf[SD_SESSCACHE_DATA_MAX], *p = buf;
    uint8_t key[SD_SESSCACHE_KEY_MAX];
    unsigned int idlen = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    int len = i2d_SSL_SESSION(sess, NULL);

    if (sd_tls_cache == NULL || tls == NULL || len <= 0 || len > (int)sizeof(buf))
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
    const char *reason;  /* stable word for the log */
    const char *detail;  /* static text from OpenSSL or steeldoor */
};

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
    return sd_policy_identity_sane(&t->id) ? 0 : -1;
}

/* Applies the listener's allow rules to the leaf x. Returns the matching
 * rule's index, or -1 with c->reason set. */
static int sd_tls_authorize(struct sd_tls_conn *c, const struct sd_tls *tls, X509 *x)
{
    struct sd_tls_ident t;
    int rule;

    if (sd_tls_ident_load(&t, x, sd_policy_has_kind(tls->policy, SD_RULE_SPKI)) != 0) {
        sd_tls_ident_clear(&t);
        c->reason = "malformed_identity";
        c->detail = "certificate names are malformed (embedded NUL or control byte, "
                    "undecodable or too many names)";
        return -1;
    }
    rule = sd_policy_match(tls->policy, &t.id);
    sd_tls_ident_clear(&t);
    if (rule < 0) {
        c->reason = "not_authorized";
        c->detail = "no allow rule matched";
    }
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

    (void)al;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) || len < 5)
        return SSL_CLIENT_HELLO_SUCCESS; /* no SNI: the listener's own context */
    listlen = (size_t)ext[0] << 8 | ext[1];
    namelen = (size_t)ext[3] << 8 | ext[4];
    if (listlen != len - 2 || ext[2] != 0 || namelen > len - 5 || namelen > 256)
        return SSL_CLIENT_HELLO_SUCCESS; /* OpenSSL itself rejects a bad extension */
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
                                  X509_STORE_CTX *xs, int rule, int64_t now)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
    struct sd_chain_entry e, *slot;
    int i;

    memset(&e, 0, sizeof(e));
    memcpy(e.key, key, sizeof(e.key));
    e.rule = rule;
    e.expires = now + SD_CHAIN_CACHE_TTL;
    if (tls->crl_next_update != 0 && tls->crl_next_update < e.expires)
        e.expires = tls->crl_next_update;
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
            sd_tls_share_leaf(c, X509_STORE_CTX_get0_untrusted(xs), e->leaf);
            X509_STORE_CTX_set_error(xs, X509_V_OK);
            return 1;
        }
    }
    ok = X509_verify_cert(xs);
    if (ok > 0 && have_key && c->rule >= 0 && X509_STORE_CTX_get_error(xs) == X509_V_OK)
        sd_tls_chain_remember(tls, key, xs, c->rule, now);
    ERR_clear_error();
    return ok > 0 ? 1 : 0;
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
        if (!(flags & EXFLAG_XKUSAGE) ||
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
                               EVP_MD_CTX *sid, int *total, struct sd_err *err)
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
        return sd_tls_load_ca_file(ctx, files, path, sid, &total, err);
    for (off = 0; off < dir->len; off += strlen((const char *)dir->data + off) + 1) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, (const char *)dir->data + off);
        if (sd_files_get(files, file, &f, err) != 0)
            return -1;
        if (f->kind != SD_FILE_REG)
            continue; /* subdirectories are not read */
        if (sd_tls_load_ca_file(ctx, files, file, sid, &total, err) != 0)
            return -1;
    }
    if (total == 0)
        return sd_err_set(err, "%s: CA directory contains no CA certificate", path);
    return 0;
}

/* Checks that crl was issued and signed by a CA of the bundle and adds it to
 * the store. Warns at start when it is already past its nextUpdate (every
 * client it covers is then refused until a fresh one is installed, unless
 * --crl-grace covers it). */
static int sd_tls_add_crl(SSL_CTX *ctx, struct sd_files *files, const char *path,
                          X509_CRL *crl, EVP_MD_CTX *sid, struct sd_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int i, signer_found = 0;

    for (i = 0; i < sk_X509_OBJECT_num(objs) && !signer_found; i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL && X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            signer_found = 1;
    }
    ERR_clear_error();
    if (!signer_found)
        return sd_err_set(err, "%s: CRL was not issued and signed by a CA of the --cacert bundle",
                          path);
    if (!sd_files_frozen(files) && X509_CRL_get0_nextUpdate(crl) != NULL &&
        X509_cmp_current_time(X509_CRL_get0_nextUpdate(crl)) <= 0)
        sd_log_msg("warn", "crl", "%s: CRL is past its nextUpdate; clients whose chain it "
                   "covers are refused (reason crl_expired) until a fresh CRL is installed",
                   path);
    if (!X509_STORE_add_crl(store, crl) ||
        !X509_CRL_digest(crl, EVP_sha256(), md, &mdlen) || !EVP_DigestUpdate(sid, md, mdlen))
        return sd_err_openssl(err, "%s: cannot use CRL", path);
    return 0;
}

/* Loads a CRL file: one DER CRL, or one or more PEM CRLs (CAs publish one
 * CRL each, and a bundle of them in one file is common). Every CRL in it
 * must be valid; anything else in a PEM file is an error, never skipped. */
static int sd_tls_load_crl(SSL_CTX *ctx, struct sd_files *files, const char *path,
                           EVP_MD_CTX *sid, struct sd_err *err)
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
        rc = sd_tls_add_crl(ctx, files, path, crl, sid, err);
        goto out;
    }
    while (crl != NULL) {
        n++;
        if (sd_tls_add_crl(ctx, files, path, crl, sid, err) != 0)
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
    if (!sd_files_frozen(files) && (kf->mode & 077) != 0)
        sd_log_msg("warn", "config", "%s: private key is readable by group or others "
                   "(mode %03o); it should be 0600", lc->key, kf->mode & 0777);
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
    SSL_CTX_set_verify_depth(ctx, (int)lc->verify_depth);
    if (!SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT)) {
        sd_err_openssl(err, "listener %s: cannot set certificate purpose", lc->name);
        goto fail;
    }
    SSL_CTX_set_timeout(ctx, SD_TLS_SESSION_TIMEOUT);
    SSL_CTX_set_num_tickets(ctx, 1);

    if (sd_tls_load_identity(ctx, files, lc, err) != 0 ||
        sd_tls_load_cas(ctx, files, lc->cacert, sid, err) != 0)
        goto fail;
    for (i = 0; i < lc->ncrls; i++)
        if (sd_tls_load_crl(ctx, files, lc->crls[i], sid, err) != 0)
            goto fail;
    if (lc->ncrls > 0) {
        STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
        int k;
        for (k = 0; k < sk_X509_OBJECT_num(objs); k++) {
            X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, k));
            int64_t nu = crl != NULL ? sd_tls_time(X509_CRL_get0_nextUpdate(crl)) : 0;
            if (nu != 0 && (tls->crl_next_update == 0 || nu < tls->crl_next_update))
                tls->crl_next_update = nu;
        }
        /* Check the leaf and every intermediate: a CA level without a CRL
         * from its issuer fails closed (crl_missing). */
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx),
                                    X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    /* The allow rules are part of what a session was admitted under. */
    for (i = 0; i < sd_policy_count(lc->policy); i++) {
        const char *rt = sd_policy_rule_text(lc->policy, i);
        if (!EVP_DigestUpdate(sid, rt, strlen(rt) + 1)) {
            sd_err_openssl(err, "listener %s: digest", lc->name);
            goto fail;
        }
    }
    tls->policy = lc->policy;
    tls->crl_grace_s = lc->crl_grace_s;
    SSL_CTX_set_app_data(ctx, tls);
    tls->chains = calloc(SD_CHAIN_CACHE_SIZE, sizeof(*tls->chains));
    if (tls->chains != NULL)
        SSL_CTX_set_cert_verify_callback(ctx, sd_tls_cert_verify_cb, tls);

    /* Session id context: a digest of the listener's name, address and
     * trust anchors. OpenSSL refuses to resume a session whose context
     * differs, so a session from one listener never resumes on another. */
    if (!EVP_DigestUpdate(sid, lc->name, strlen(lc->name) + 1) ||
        !EVP_DigestUpdate(sid, lc->listen, strlen(lc->listen) + 1) ||
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
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR);
    SSL_CTX_sess_set_cache_size(ctx, SD_TLS_L1_SESSIONS);
    if (sd_tls_cache != NULL) {
        SSL_CTX_sess_set_new_cb(ctx, sd_tls_new_session_cb);
        SSL_CTX_sess_set_get_cb(ctx, sd_tls_get_session_cb);
        SSL_CTX_sess_set_remove_cb(ctx, sd_tls_remove_session_cb);
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
    size_t i;

    if (tls == NULL)
        return;
    for (i = 0; tls->chains != NULL && i < SD_CHAIN_CACHE_SIZE; i++)
        X509_free(tls->chains[i].leaf);
    free(tls->chains);
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
    free(c);
}

/* Maps a failed handshake to a log reason. The verify callback's record is
 * the most precise; otherwise OpenSSL's first queued reason. */
static void sd_tls_conn_handshake_failed(struct sd_tls_conn *c, int sslerr)
{
    unsigned long e = ERR_peek_error();

    if (c->reason != NULL) {
        /* set by the allow rules (not_authorized, malformed_identity) */
    } else if (c->verify_err != 0 && c->refused_leaf != NULL &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_INVALID)) {
        /* OpenSSL could not decode an extension (e.g. the SAN) of the
         * leaf, and so could not even build its chain. */
        c->reason = "malformed_identity";
        c->detail = "certificate has an undecodable extension";
    } else if (c->verify_err != 0) {
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

/* Is x listed by a CRL of store from x's issuer? */
static int sd_tls_revoked_in(X509_STORE *store, X509 *x)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    int i;

    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        X509_REVOKED *rev = NULL;
        if (crl != NULL &&
            X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(x)) == 0 &&
            X509_CRL_get0_by_cert(crl, &rev, x) == 1)
            return 1;
    }
    return 0;
}

const char *sd_tls_conn_judge(const struct sd_tls_conn *c, const struct sd_tls *now)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
    X509_STORE *store = SSL_CTX_get_cert_store(now->ctx);
    struct sd_tls_ident t;
    int i, rule;

    if (peer == NULL)
        return NULL;
    if (sd_tls_ident_load(&t, peer, sd_policy_has_kind(now->policy, SD_RULE_SPKI)) != 0) {
        sd_tls_ident_clear(&t);
        return "malformed_identity";
    }
    rule = sd_policy_match(now->policy, &t.id);
    sd_tls_ident_clear(&t);
    if (rule < 0)
        return "not_authorized";
    if (sd_tls_revoked_in(store, peer))
        return "certificate_revoked";
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++)
        if (sd_tls_revoked_in(store, sk_X509_value(chain, i)))
            return "certificate_revoked";
    return NULL;
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
    const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
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
    n = sd_pp2_build(&in, out, cap);
out:
    BIO_free(b);
    sd_tls_ident_clear(&t);
    ERR_clear_error();
    return n;
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

    if (c->rule >= 0) {
        const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
        sd_log_str(l, "rule", sd_policy_rule_text(tls->policy, (size_t)c->rule));
    }
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
