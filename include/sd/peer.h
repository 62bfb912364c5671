/*
 * sd/peer.h - who is on the other end, as verified: no OpenSSL type here.
 *
 * A connection's identity is extracted from the certificate once, when it
 * is verified (or, on resumption, from the session's certificate), into a
 * struct sd_peer_cert; allow rules, the PROXY v2 TLVs, the log line (and,
 * later, HTTP identity headers) all read that one extraction and never go
 * back to the certificate.
 *
 * struct sd_peer_cert is immutable once built and reference-counted: the
 * chain cache keeps one per verified chain, and every connection of that
 * client holds a reference to the same one. It owns all its bytes (one
 * allocation); names are byte strings with lengths, never C strings, so an
 * embedded NUL cannot shorten a name (each copy is also followed by a NUL
 * byte that is not counted in its length).
 *
 * Extraction never fails on what a client sent: a certificate whose names
 * cannot be read faithfully (undecodable, duplicated, empty or non-DER SAN
 * extension, more than SD_PEER_MAX_NAMES URI or DNS names, more than
 * SD_PEER_MAX_ATTRS CNs or OUs, a CN or OU that is not convertible to
 * UTF-8, a NUL or control byte in a name, more than one SPIFFE ID or CN) is
 * extracted as far as possible, for the log, and marked SD_PEER_MALFORMED:
 * such a client is refused whatever the rules.
 */
#ifndef SD_PEER_H
#define SD_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "sd/policy.h"

#define SD_PEER_MAX_NAMES 64 /* URI or DNS SANs; more: malformed */
#define SD_PEER_MAX_ATTRS 8  /* CNs, OUs; more: malformed */
/* SANs kept in certificate order for the log. The log's "sans" array
 * (1,280 bytes) is full long before this many names (each takes at least
 * 7 bytes), so a certificate with more is logged exactly as if all were
 * kept, "sans_truncated":true included. */
#define SD_PEER_MAX_SANS 256
/* RFC 2253 subject text longer than this is cut (SD_PEER_TRUNCATED): it is
 * what one PROXY v2 TLV can carry, so a cut subject is one that could never
 * have been handed on whole anyway. */
#define SD_PEER_MAX_SUBJECT 65535

enum {
    SD_PEER_MALFORMED = 1u << 0,  /* names unreadable or ambiguous: refuse */
    SD_PEER_TRUNCATED = 1u << 1,  /* the subject text was cut */
    SD_PEER_SANS_CAPPED = 1u << 2, /* more SANs than SD_PEER_MAX_SANS (log only) */
};

/* A SAN of a type the log shows, in certificate order. */
enum sd_san_type { SD_SAN_URI = 1, SD_SAN_DNS, SD_SAN_EMAIL, SD_SAN_IP };
struct sd_peer_san {
    enum sd_san_type type;
    struct sd_name name; /* as found; an IP as inet_ntop text, "?" if neither v4 nor v6 */
};

struct sd_peer_cert {
    unsigned refs;             /* one worker thread only: a plain count */
    uint32_t flags;            /* SD_PEER_* */
    struct sd_identity id;     /* URI, DNS SANs, CNs (UTF-8), OUs (UTF-8), SPKI:
                                * what rules read; spki_sha256 always set */
    const struct sd_peer_san *sans; /* every URI/DNS/email/IP SAN, in order */
    size_t nsans;
    const struct sd_name *emails; /* rfc822Name SANs (within the first SD_PEER_MAX_SANS) */
    size_t nemails;
    const struct sd_name *ips; /* iPAddress SANs as text (likewise) */
    size_t nips;
    struct sd_name subject;    /* RFC 2253 ("CN=billing,O=Example"), UTF-8 kept;
                                * s is NULL if it could not be printed */
    struct sd_name serial;     /* hex, upper case, no separators ("-" if negative) */
    uint8_t cert_sha256[32];   /* SHA-256 of the certificate's DER */
    uint8_t spki_sha256[32];   /* SHA-256 of its DER SubjectPublicKeyInfo */
    const char *sig_alg;       /* short names ("ecdsa-with-SHA256", "EC"), owned */
    const char *key_alg;       /*   by the extraction; NULL if unknown */
    int64_t not_before, not_after; /* Unix seconds; 0 if unreadable */
};

/* One DER-encoded certificate, as the peer sent it (bytes owned elsewhere). */
struct sd_der {
    const uint8_t *p;
    size_t len;
};

/* What was verified about one connection's peer. Owned by the connection's
 * stream; valid once its handshake has completed (cert is NULL before, and
 * stays NULL for a plain TCP stream). A refused handshake keeps the refused
 * leaf's extraction in cert, with rule -1, for the log. */
struct sd_peer {
    const struct sd_peer_cert *cert; /* a reference, or NULL */
    const char *tls_version;         /* static ("TLSv1.3"), or NULL */
    const char *cipher;              /* static, or NULL (no cipher yet: the
                                      * log then leaves out version, cipher
                                      * and resumed) */
    int resumed;
    struct sd_name sni;              /* as the ClientHello sent it (the log);
                                      * owned by the stream; s NULL if none */
    struct sd_name authority;        /* the server name the connection is for:
                                      * sni, else what OpenSSL knows of one (a
                                      * resumed TLS 1.2 session), or, for a
                                      * client, the name it asked for (PROXY v2) */
    struct sd_name alpn;             /* owned by the stream; len 0 if none */
    int rule;                        /* index of the allow rule that admitted, or -1 */
    const char *rule_text;           /* "uri:spiffe://...", owned by the policy */
    struct sd_policy_hit hit;        /* which name admitted (kind, index) */
    const char *presented_subject;   /* client role: the certificate we
                                      * presented (owned by the TLS context,
                                      * which outlives the stream), or NULL:
                                      * none was asked for or it is unknown */
    const char *presented_serial;    /* its serial, hex, or NULL */
    int64_t valid_until;             /* client role: until when (Unix time) the
                                      * server's verification holds: the
                                      * earliest notAfter of its chain, or the
                                      * CRLs' freshness if sooner; 0 unknown */
};

/* The name that admitted p (points into p->cert), or NULL (no rule, SPKI
 * pin, allow-all without SPIFFE ID or CN, malformed certificate). */
const struct sd_name *sd_peer_identity(const struct sd_peer *p);

/* Takes a reference: returns pc (NULL stays NULL). */
struct sd_peer_cert *sd_peer_cert_ref(const struct sd_peer_cert *pc);
/* Drops a reference; frees with the last one. NULL is fine. */
void sd_peer_cert_unref(const struct sd_peer_cert *pc);

/* Builds a peer certificate from exactly one DER certificate of len bytes
 * (the fuzz target's entry and the unit tests'; the TLS layer builds from
 * its parsed X509 instead, src/tls/peer.h). Returns a new reference, or
 * NULL when der is not a certificate (or has bytes after it) or memory ran
 * out. Never NULL merely for hostile names: see SD_PEER_MALFORMED. */
struct sd_peer_cert *sd_peer_cert_from_der(const uint8_t *der, size_t len);

/* Adds the peer to a connection's log line, as the connection line always
 * had it: tls_version, cipher, resumed (when a cipher is known); rule and
 * identity (when admitted); sni; subject and sans (when a certificate is
 * known, admitted or refused). Each field the client controls is bounded
 * and marked when cut (see sd/log.h). p NULL adds nothing. */
struct sd_logline;
void sd_peer_log(const struct sd_peer *p, struct sd_logline *l);

#endif
