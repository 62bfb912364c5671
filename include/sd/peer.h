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
 * embedded NUL cannot shorten a name.
 *
 * Extraction never fails on what a client sent: a certificate whose names
 * cannot be read faithfully (undecodable or non-DER SAN extension, more than
 * SD_PEER_MAX_NAMES names of one type, a NUL or control byte in a name, more
 * than one SPIFFE ID or CN) is extracted as far as possible, for the log,
 * and marked SD_PEER_MALFORMED: such a client is refused whatever the rules.
 */
#ifndef SD_PEER_H
#define SD_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "sd/policy.h"

#define SD_PEER_MAX_NAMES 64     /* per SAN type; more: malformed */
#define SD_PEER_MAX_ATTRS 8      /* CNs, OUs; more: malformed */
#define SD_PEER_MAX_SUBJECT 4096 /* RFC 2253 text longer than this is cut */

enum {
    SD_PEER_MALFORMED = 1u << 0, /* names unreadable or ambiguous: refuse */
    SD_PEER_TRUNCATED = 1u << 1, /* the subject text was cut (log only) */
};

struct sd_peer_cert {
    unsigned refs;
    uint32_t flags;            /* SD_PEER_* */
    struct sd_identity id;     /* URI, DNS SANs, CNs, OUs, SPKI: what rules read */
    const struct sd_name *emails; /* rfc822Name SANs */
    size_t nemails;
    const struct sd_name *ips; /* iPAddress SANs, as text ("10.0.0.1", "::1") */
    size_t nips;
    struct sd_name subject;    /* RFC 2253 ("CN=billing,O=Example"), UTF-8 */
    struct sd_name serial;     /* hex, upper case, no separators */
    uint8_t cert_sha256[32];   /* SHA-256 of the certificate's DER */
    uint8_t spki_sha256[32];   /* SHA-256 of its DER SubjectPublicKeyInfo */
    const char *sig_alg;       /* static short names, or NULL */
    const char *key_alg;
    int64_t not_before, not_after; /* Unix seconds; 0 if unreadable */
};

/* What was verified about one connection's peer. Owned by the connection's
 * stream; valid once its handshake has completed (cert is NULL before, and
 * stays NULL for a plain TCP stream). A refused handshake keeps the refused
 * leaf's extraction in cert, with rule -1, for the log. */
struct sd_peer {
    const struct sd_peer_cert *cert; /* a reference, or NULL */
    const char *tls_version;         /* static ("TLSv1.3"), or NULL */
    const char *cipher;              /* static, or NULL */
    int resumed;
    struct sd_name sni;              /* owned by the stream; len 0 if none */
    struct sd_name alpn;             /* owned by the stream; len 0 if none */
    int rule;                        /* index of the allow rule that admitted, or -1 */
    const char *rule_text;           /* "uri:spiffe://...", owned by the policy */
    struct sd_policy_hit hit;        /* which name admitted */
};

/* The name that admitted p (points into p->cert), or NULL (SPKI pin,
 * allow-all without SPIFFE ID or CN, not admitted). */
const struct sd_name *sd_peer_identity(const struct sd_peer *p);

struct sd_peer_cert *sd_peer_cert_ref(const struct sd_peer_cert *pc);
/* Drops a reference; frees with the last one. NULL is fine. */
void sd_peer_cert_unref(const struct sd_peer_cert *pc);

/* Builds a peer certificate from DER bytes (the fuzz target's entry and
 * the unit tests'; the TLS layer builds from its parsed X509 instead).
 * Returns a new reference, or NULL when der is not a certificate or memory
 * ran out. Never NULL merely for hostile names: see SD_PEER_MALFORMED. */
struct sd_peer_cert *sd_peer_cert_from_der(const uint8_t *der, size_t len);

/* Adds the peer to a connection's log line: tls_version, cipher, resumed,
 * rule, identity, sni, subject, sans, cert_sha256, serial; each field the
 * client controls is bounded (see sd/log.h). */
struct sd_logline;
void sd_peer_log(const struct sd_peer *p, struct sd_logline *l);

#endif
