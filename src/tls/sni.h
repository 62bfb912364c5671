/*
 * sni.h - the server_name extension (RFC 6066 section 3), parsed without
 * OpenSSL: a pure function over the extension's bytes as the client sent
 * them, used by the ClientHello callback and fuzzed (fuzz/fuzz_sni.c).
 */
#ifndef SD_TLS_SNI_H
#define SD_TLS_SNI_H

#include <stddef.h>
#include <stdint.h>

#include "sd/policy.h" /* struct sd_name */

#define SD_TLS_SNI_MAX 256 /* longer names are not taken (DNS allows 253) */

/* Parses the body of a server_name extension (ext, len bytes; untrusted).
 * Returns -1 when it is not a well-formed list holding one host_name of at
 * most SD_TLS_SNI_MAX bytes (OpenSSL then rejects or ignores it itself);
 * else sets *name to the host name, pointing into ext (never past
 * ext + len), and returns 1 when the name is usable as the connection's
 * SNI (not empty, no NUL byte), 0 when it is not (the session id context
 * still takes its bytes). */
int sd_tls_sni_parse(const uint8_t *ext, size_t len, struct sd_name *name);

/* Writes name, ASCII-lowercased (DNS names compare case-insensitively),
 * to out, which has room for name->len bytes. */
void sd_tls_sni_lower(const struct sd_name *name, uint8_t *out);

#endif
