/*
 * sd/http_ident.h - the headers HTTP mode writes into every request it
 * forwards, and the names it reserves so that no client can send them.
 *
 * The backend trusts these headers because steeldoor removes every copy a
 * client sent of any header steeldoor can set (on any listener, whether
 * or not this one sets it), then appends its own, built from what the TLS
 * handshake verified (struct sd_peer) and the client's address. Nothing in
 * them comes from the request.
 *
 * Headers (per listener, `http-headers`; RFC 9440 by default):
 *   Client-Cert         RFC 9440: the leaf's DER as an sf-binary (:base64:)
 *   Client-Cert-Chain   RFC 9440: the intermediates the client sent, a
 *                       list of sf-binary, leaf's issuer first (omitted
 *                       when there are none)
 *   X-Forwarded-Client-Cert  Envoy's format: Hash=<hex SHA-256 of the
 *                       DER>;Subject="<RFC 2253>";URI=<uri SAN>...;DNS=...
 *   Forwarded           RFC 7239: for=<client address>;proto=https
 *   X-Forwarded-For     the client's address
 *   X-Forwarded-Proto   https
 * plus X-Steeldoor-Request-Id on every request (not optional).
 *
 * No OpenSSL type, no I/O, no allocation.
 */
#ifndef SD_HTTP_IDENT_H
#define SD_HTTP_IDENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sd/peer.h"
#include "sd/policy.h" /* struct sd_name */

struct sd_err;

/* Which headers a listener sets: a bit set. */
enum {
    SD_HTTP_H_CLIENT_CERT = 1u << 0,
    SD_HTTP_H_CLIENT_CERT_CHAIN = 1u << 1,
    SD_HTTP_H_XFCC = 1u << 2,
    SD_HTTP_H_FORWARDED = 1u << 3,
    SD_HTTP_H_XFF = 1u << 4,
    SD_HTTP_H_XFP = 1u << 5,
};
#define SD_HTTP_H_DEFAULT (SD_HTTP_H_CLIENT_CERT | SD_HTTP_H_CLIENT_CERT_CHAIN)

/* The most bytes the identity headers of one request may take; a
 * certificate whose headers would not fit is refused (431,
 * http_identity_too_large) rather than handed on cut. */
#define SD_HTTP_IDENT_MAX 24576u

/* The request id header steeldoor sets on every request. */
#define SD_HTTP_REQUEST_ID_HEADER "X-Steeldoor-Request-Id"

/* Parses the value of `http-headers`: a comma-separated list of
 * client-cert, client-cert-chain, rfc9440 (both), xfcc, forwarded,
 * x-forwarded-for, x-forwarded-proto, x-forwarded (both), or the single
 * word none. Spaces around words are allowed; a word twice is fine.
 * Returns 0 with *set, or -1 with err naming the bad word and the valid
 * ones. */
int sd_http_ident_parse_set(const char *text, uint32_t *set, struct sd_err *err);

/* Writes set as the canonical comma-separated list (for --check and logs)
 * into out (NUL-terminated, cut to size). */
void sd_http_ident_format_set(uint32_t set, char *out, size_t size);

/* If a client-sent header `name` is one steeldoor reserves, returns the
 * reserved name it matches (static, canonical spelling), else NULL. The
 * comparison is ASCII-case-insensitive with '_' and '-' the same byte
 * (sd_http_name_eq_loose), so "x_forwarded_client_cert" is caught. The
 * reserved names are every header of the list above (whatever this
 * listener sets), every name starting with "X-Steeldoor-" or
 * "Steeldoor-" (the request id, and the second-factor headers), and the
 * identity and forwarding headers other proxies set that applications
 * commonly trust (X-Forwarded-Host, X-Forwarded-Port, X-Forwarded-Prefix,
 * X-Forwarded-Ssl, X-Forwarded-Scheme, X-Real-IP, X-Client-Cert,
 * X-SSL-Client-Cert, X-SSL-Client-* , SSL-Client-Cert, X-Client-Verify,
 * X-Client-DN, and the client-certificate headers of other proxies:
 * nginx's X-SSL-Cert, Traefik's X-Forwarded-Tls-Client-Cert(-Info),
 * Azure's X-ARR-ClientCert, AWS ALB's X-Amzn-Mtls-*). A prefix match
 * returns the prefix with a '*' ("X-Steeldoor-*"), except for the names
 * listed in full (X-Steeldoor-Request-Id, X-SSL-Client-Cert). Bytes are
 * compared as they are: a name with any other byte (a trailing space) is
 * not reserved, and is not a token either (the request parser refuses
 * it). Fast: called for every field of every request. */
const char *sd_http_ident_reserved(struct sd_name name);

/* What the headers are built from. */
struct sd_http_ident {
    const struct sd_peer *peer;   /* verified client (peer->cert non-NULL) */
    const struct sd_der *certs;   /* sd_tls_stream_certs_der: [0] leaf, then chain */
    size_t ncerts;
    const struct sockaddr *client; /* the client's address (PROXY-free: the TCP peer) */
    socklen_t clientlen;
    uint32_t set;                  /* SD_HTTP_H_* */
};

/* Writes the selected headers as "Name: value\r\n" lines into out[0, cap),
 * not NUL-terminated, without the request id (the caller adds it per
 * request). Returns the number of bytes written (0 when set is empty), or
 * -1 when they do not fit in cap (nothing is ever written at or past
 * out + cap; out[0, cap) then holds a partial result to discard). Every
 * value is built only from in->peer, in->certs and in->client; a byte that
 * cannot appear in a field value (a CTL in a certificate name) is escaped,
 * never copied raw, so no certificate can inject a header line. A line
 * with nothing to say is left out, never written empty: Client-Cert when
 * ncerts is 0, Client-Cert-Chain when ncerts <= 1, XFCC when peer or
 * peer->cert is NULL, X-Forwarded-For when the address is neither IPv4
 * nor IPv6 (Forwarded then says for=unknown). in and all it points to are
 * borrowed. */
long sd_http_ident_build(const struct sd_http_ident *in, char *out, size_t cap);

#endif
