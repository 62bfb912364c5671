/*
 * tls_int.h - what the files of src/tls share: the context, the connection
 * (a TLS stream), the chain cache entry, and the helpers one file offers
 * another. Included only by the files of src/tls: nothing outside it sees
 * an OpenSSL type.
 *
 * The files, one job each:
 *   ctx.c      the fixed policy; server and client contexts; session id context;
 *              ALPN (HTTP mode)
 *   load.c     server/client certificate and key, CA bundle or directory, CRLs,
 *              CRL freshness, expiry warnings
 *   verify.c   verify callbacks, CA-leaf and EKU rules, allow rules, chain cache,
 *              the union CRL check, re-judging after a reload
 *   session.c  admission record, session callbacks, shared cache, deadlines
 *   bio.c      the socket BIO (read-dry, MSG_MORE)
 *   sni.c      the server_name extension parser (pure, fuzzed)
 *   stream.c   the TLS stream: handshake, read, write, shutdown, error mapping;
 *              the peer's certificates as DER (HTTP mode)
 *   compat.c   certificate swaps inside OpenSSL's stacks, version-guarded
 *   peer.c     certificate -> struct sd_peer_cert (the peer extraction)
 */
#ifndef SD_TLS_INT_H
#define SD_TLS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sd/peer.h"
#include "sd/stream.h"
#include "sd/tls.h"

#include "peer.h" /* the peer extraction: sd_tls_peer_cert_new() */

#define SD_TLS_RECORD 16384u     /* OpenSSL's largest plaintext fragment */
#define SD_TLS_L1_SESSIONS 16384 /* OpenSSL's in-process cache, per context */

/* A verified chain, remembered so the same chain presented again within a
 * short time skips chain building and the CA signature checks. Entries live
 * in the listener's context, which a reload replaces, so a change of CAs,
 * CRLs or rules empties the cache. The TLS handshake's own proof of
 * possession (CertificateVerify) is always checked. */
#define SD_CHAIN_CACHE_SIZE 1024 /* entries per listener and worker; power of 2 */
/* A connector sees its target's few certificates: a handful of entries. */
#define SD_CHAIN_CACHE_SIZE_CONNECTOR 8
#define SD_CHAIN_CACHE_TTL 60    /* seconds */
struct sd_chain_entry {
    unsigned char key[32]; /* SHA-256 over the SHA-256 of each presented cert */
    int64_t not_before;    /* latest notBefore in the chain */
    int64_t expires;       /* earliest of: TTL, notAfter in the chain, CRL nextUpdate */
    int64_t not_after;     /* earliest notAfter in the chain */
    int rule;              /* the allow rule that admitted it */
    struct sd_policy_hit hit; /* and the name that matched it */
    int used;
    X509 *leaf;            /* the verified leaf: sessions of this chain share it */
    const struct sd_peer_cert *peer; /* its extraction: a hit extracts nothing */
};

/* A loaded CRL and the CA of the bundle that signed it (NULL: none did; it
 * can only apply to a client-sent intermediate and its signature is then
 * checked against that certificate). */
struct sd_tls_crl {
    X509_CRL *crl;
    X509 *signer;
    int delta;        /* a delta CRL (deltaCRLIndicator) */
    const char *path; /* the file it came from (the config owns the text) */
};

enum sd_tls_role { SD_TLS_SERVER = 0, SD_TLS_CLIENT = 1 };

/* A connector's session for a later connection, with when the full
 * handshake it descends from verified the server. */
struct sd_tls_sess {
    SSL_SESSION *sess;
    int64_t auth_time; /* ... and the earliest notAfter of the chain it verified */
    int64_t not_after;
};
/* How many sessions a connector keeps per worker: TLS 1.3 tickets are
 * meant to be used once (RFC 8446 C.4) and servers with a session cache
 * honour that, so each concurrent connection needs its own. Bounded: past
 * this many the oldest is dropped. */
#define SD_CONNECTOR_SESSIONS 64

struct sd_tls {
    SSL_CTX *ctx;
    enum sd_tls_role role;
    const struct sd_policy *policy; /* owned by the config; client: may be NULL */
    char *server_name;              /* client: SNI and host check; owned */
    uint32_t crl_grace_s;
    uint32_t session_lifetime_s;    /* 0: no resumption */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH]; /* session id context */
    /* Until when the CRL set is fresh: for each issuer the newest full
     * CRL's nextUpdate, the earliest of those, plus the grace; 0 = no CRL
     * with a nextUpdate. Chain cache entries and sessions end by then. */
    int64_t crl_fresh_until;
    struct sd_tls_crl *crls;
    size_t ncrls;
    struct sd_chain_entry *chains; /* verified peer chains; NULL: none kept */
    size_t chain_mask;             /* entries - 1 (a power of 2) */
    /* A connector's (sd_tls_connector_new): the server must request our
     * certificate; the session to resume next and when the full
     * handshake it descends from verified the server. Per worker: each
     * worker builds its own generation's contexts. */
    uint8_t connector;
    uint8_t sni_off;     /* client: the server name is an address: no SNI */
    struct sd_tls_sess *sessions; /* connector with resumption: a pool */
    unsigned nsessions;
    /* The certificate a connector presents, for each connection's log
     * line (which one went out is what a rotation changes): the subject
     * (RFC 2253, cut to fit) and the serial (hex, as nginx and openssl
     * print it). Empty when unknown. */
    char own_subject[256];
    char own_serial[48];
};

/* One TLS connection: a struct sd_stream (first, so the stream ops reach
 * the connection by a cast) over an SSL and the steeldoor socket BIO. */
struct sd_tls_conn {
    struct sd_stream s;  /* reason and detail of a failure live here */
    SSL *ssl;
    uint8_t read_dry;    /* the last socket read came back short or EAGAIN */
    uint8_t hup;         /* epoll saw the peer hang up: no edge will follow */
    uint8_t read_eof;    /* the peer closed its sending side */
    uint8_t write_more;  /* more records follow this one in the same write */
    uint8_t reneg_pending; /* the client asked to renegotiate (sd_tls_info_cb) */
    uint8_t cert_requested; /* client role: the server sent a CertificateRequest */
    uint8_t got_bytes;   /* the peer sent at least one byte */
    int verify_err;      /* first X509_V_ERR_* seen, 0 if none */
    X509 *refused_leaf;  /* the leaf that failed verification, for the log */
    X509 *parsed_leaf;   /* OpenSSL's copy of a leaf replaced by a shared one */
    int64_t auth_time;   /* when the full handshake verified the certificate */
    int64_t not_after;   /* earliest notAfter of the verified chain */
    char *sni;           /* server name from the ClientHello, or NULL */
    struct sd_peer peer; /* what was verified; peer.cert is a reference */
};

/* What the verify callback works for when an open connection is judged
 * again against a new context, outside any handshake (no SSL object). */
struct sd_tls_judging {
    struct sd_tls_conn *c;    /* scratch: reason, rule */
    const struct sd_tls *tls; /* the context judging */
    X509 *leaf;               /* the judged connection's certificate ... */
    const struct sd_peer_cert *leaf_peer; /* ... and its extraction */
};

/* What a session was admitted with (session.c). */
struct sd_tls_adm {
    int64_t auth_time, not_after;
    const unsigned char *chain;
    size_t chainlen;
};

/* ctx.c */
int sd_tls_client_hello_cb(SSL *ssl, int *al, void *arg);
/* A connector's session for its next connection (with the time its full
 * handshake verified the server), or NULL. The caller owns the reference
 * returned (SSL_set_session() takes its own; then SSL_SESSION_free()). */
SSL_SESSION *sd_tls_connector_session(struct sd_tls *tls, int64_t *auth_time,
                                      int64_t *not_after);

/* bio.c */
int sd_tls_bio_init(void);
BIO *sd_tls_bio_new(struct sd_tls_conn *c);

/* load.c */
int sd_tls_fix_own_chain(SSL_CTX *ctx, const char *cert, struct sd_err *err);
int sd_tls_load_identity(SSL_CTX *ctx, struct sd_files *files, const char *cert,
                         const char *key, const char *role, struct sd_err *err);
int sd_tls_load_cas(SSL_CTX *ctx, struct sd_files *files, const char *path,
                    EVP_MD_CTX *sid, int client_cas, struct sd_err *err);
int sd_tls_load_crls(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                     const char *const *paths, size_t n, EVP_MD_CTX *sid,
                     struct sd_err *err);
int64_t sd_tls_time(const ASN1_TIME *t);

/* verify.c */
int sd_tls_verify_cb(int ok, X509_STORE_CTX *xs);
int sd_tls_cert_verify_cb(X509_STORE_CTX *xs, void *arg);
enum sd_reason sd_tls_verify_reason(int verr);
int sd_tls_authorize(struct sd_tls_conn *c, const struct sd_tls *tls, X509 *x,
                     const struct sd_peer_cert *known);
void sd_tls_chain_entry_clear(struct sd_chain_entry *e);
enum sd_reason sd_tls_judge(const struct sd_tls_conn *c, struct sd_tls *now);
int64_t sd_tls_auth_now(void);

/* session.c */
int sd_tls_adm_get(SSL_SESSION *sess, struct sd_tls_adm *a);
/* The intermediates of ssl's peer: the certificates of its verified chain
 * (on a chain cache hit, where OpenSSL builds none, of the chain as the
 * peer presented it) other than the peer's own certificate and those the
 * trust store holds, in chain order (the leaf's issuer first), as
 * concatenated DER into out[0, cap); *len is set to the bytes written.
 * What a session's admission record keeps and what HTTP mode hands on as
 * Client-Cert-Chain: one function, so a resumed connection gives the same
 * bytes as its full handshake did. Returns 0, or -1 when they do not all
 * fit (*len then covers the whole certificates that did). */
int sd_tls_chain_der(const SSL *ssl, unsigned char *out, size_t cap, size_t *len);
void sd_tls_session_setup(struct sd_tls *tls);
int sd_tls_resumed_admitted(struct sd_tls_conn *c, const struct sd_tls *tls);

/* stream.c */
void sd_tls_info_cb(const SSL *ssl, int where, int ret);
/* Tests only (tests/unit/test_tls_stream.c): a TLS stream over bio (a
 * memory BIO pair), which it takes; NULL on failure (bio freed). */
struct sd_stream *sd_tls_stream_new_bio(struct sd_tls *tls, BIO *bio, enum sd_side side);

#endif
