/*
 * compat.h - the places where steeldoor changes what OpenSSL holds, rather
 * than only asking it: two swaps of certificates inside OpenSSL's stacks,
 * so that all connections of one client share one parsed certificate
 * instead of each keeping its own 4-5 KiB copy for the session's life.
 *
 * They rely on how OpenSSL's server state machine uses those stacks, which
 * no API promises. They were checked against the OpenSSL 3.0 series
 * (Debian 12 ships 3.0.x; built and tested with 3.0.19) by reading
 * ssl/statem/statem_srvr.c (tls_process_client_certificate) and
 * ssl/ssl_cert.c (ssl_verify_cert_chain) of that series; SD_TLS_COMPAT_SWAP
 * is 1 only there. With any other OpenSSL both functions do nothing: the
 * only cost is memory, never a different verdict.
 */
#ifndef SD_TLS_COMPAT_H
#define SD_TLS_COMPAT_H

#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#if OPENSSL_VERSION_NUMBER >= 0x30000000L && OPENSSL_VERSION_NUMBER < 0x30100000L
#define SD_TLS_COMPAT_SWAP 1
#else
#define SD_TLS_COMPAT_SWAP 0
#endif

/* During verification (the cert-verify callback), on a chain cache hit:
 * puts `shared` (the cached, byte-identical leaf) in place of the freshly
 * parsed leaf at the head of sk, the store context's untrusted stack.
 * Returns the parsed leaf, whose reference the caller now owns and must
 * keep until the handshake ends, or NULL when nothing was swapped. */
X509 *sd_tls_compat_share_leaf(STACK_OF(X509) *sk, X509 *shared);

/* After a full handshake: replaces each certificate of the session's peer
 * chain that the trust store of ssl's context holds by the store's own,
 * identical object. */
void sd_tls_compat_share_chain(SSL *ssl);

#endif
