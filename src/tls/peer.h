/*
 * tls/peer.h - extraction of a struct sd_peer_cert from an OpenSSL X509.
 * Internal to src/tls/ (the only code that sees OpenSSL types).
 */
#ifndef SD_TLS_PEER_H
#define SD_TLS_PEER_H

#include <openssl/x509.h>

#include "sd/peer.h"

/* Extracts everything steeldoor reads about a certificate, once: its names
 * (as the allow rules see them, strictly: see sd/peer.h for what makes it
 * SD_PEER_MALFORMED), the SANs in order and the subject text for the log,
 * hashes, serial, algorithms and dates. x is only read (the caller keeps
 * it). Returns a new reference (sd_peer_cert_unref), NULL only when memory
 * ran out. Leaves no error on OpenSSL's error queue. */
struct sd_peer_cert *sd_tls_peer_cert_new(const X509 *x);

#endif
