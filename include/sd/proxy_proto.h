/*
 * sd/proxy_proto.h - PROXY protocol v2 headers that carry the client's
 * address and verified TLS identity to the backend.
 *
 * The backend can trust this header because only steeldoor can write it:
 * it is the first bytes steeldoor sends on a connection it opened itself,
 * before any byte from the client. Standard TLVs (HAProxy's spec) are read
 * by HAProxy, nginx and Envoy; steeldoor's own TLVs use the 0xE0-0xEF range
 * reserved for applications:
 *   0xE0 one per URI SAN (e.g. the SPIFFE ID)
 *   0xE1 one per DNS SAN
 *   0xE2 SHA-256 of the client certificate (DER), 32 raw bytes
 *   0xE3 the client certificate's subject DN, RFC 2253
 *   0xE4 the identity that admitted the client: the name that matched the
 *        allow rule (with allow-all: the SPIFFE ID, else the CN); absent
 *        for a SPKI pin without SPIFFE ID or CN
 *   0xE5 that allow rule, as logged (e.g. "uri:spiffe://example.org/ns/a", "all")
 * A certificate is refused if it has more than one SPIFFE ID or CN, so
 * those are unambiguous.
 */
#ifndef SD_PROXY_PROTO_H
#define SD_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sd/policy.h"

#define SD_PP2_TYPE_ALPN 0x01
#define SD_PP2_TYPE_AUTHORITY 0x02
#define SD_PP2_TYPE_SSL 0x20
#define SD_PP2_SUBTYPE_SSL_VERSION 0x21
#define SD_PP2_SUBTYPE_SSL_CN 0x22
#define SD_PP2_SUBTYPE_SSL_CIPHER 0x23
#define SD_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define SD_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define SD_PP2_TYPE_SD_URI 0xE0
#define SD_PP2_TYPE_SD_DNS 0xE1
#define SD_PP2_TYPE_SD_CERT_SHA256 0xE2
#define SD_PP2_TYPE_SD_SUBJECT 0xE3
#define SD_PP2_TYPE_SD_IDENTITY 0xE4
#define SD_PP2_TYPE_SD_RULE 0xE5

#define SD_PP2_CLIENT_SSL 0x01
#define SD_PP2_CLIENT_CERT_CONN 0x02
#define SD_PP2_CLIENT_CERT_SESS 0x04

/* What goes into the header; NULL / zero-length fields are left out. */
struct sd_pp2_info {
    const struct sockaddr *src; /* the client */
    const struct sockaddr *dst; /* the listener's local address */
    struct sd_name alpn;
    struct sd_name authority;   /* SNI */
    const char *version;
    const char *cipher;
    const char *sig_alg;
    const char *key_alg;
    struct sd_name cn;
    const struct sd_name *uris;
    size_t nuris;
    const struct sd_name *dns;
    size_t ndns;
    const uint8_t *cert_sha256; /* 32 bytes */
    struct sd_name subject;
    struct sd_name identity;    /* the name that matched the allow rule */
    const char *rule;           /* the allow rule, as logged */
};

/* Writes the header into out (at most cap bytes). Returns its length, or -1
 * when it does not fit or a field is longer than a TLV can carry. */
long sd_pp2_build(const struct sd_pp2_info *in, uint8_t *out, size_t cap);

/* Writes the header for an admitted peer (sd/peer.h): ALPN, authority (the
 * SNI), TLS version, cipher, signature and key algorithms, the first CN,
 * every URI and DNS SAN, the certificate's SHA-256, its subject, the
 * identity that matched and the rule. src is the client, dst the
 * listener's local address. Returns the length written into out (at most
 * cap bytes), or -1 when it does not fit, or p has no certificate or one
 * that is malformed, has no subject text or a subject too long for a TLV. */
struct sd_peer;
long sd_pp2_build_peer(const struct sd_peer *p, const struct sockaddr *src,
                       const struct sockaddr *dst, uint8_t *out, size_t cap);

#endif
