/*
 * sd/b64url.h - base64url without padding (RFC 4648 section 5, as JWS
 * uses it: RFC 7515 section 2). Strict: one spelling per byte string.
 */
#ifndef SD_B64URL_H
#define SD_B64URL_H

#include <stddef.h>
#include <stdint.h>

/* Decodes in[0, len) into out[0, cap). Returns the decoded length, or -1
 * for any byte outside the alphabet (padding '=' included), a length of 1
 * mod 4, non-zero unused bits in the last character (two spellings of one
 * value), or an output larger than cap. */
long sd_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* The encoded length of n bytes (without NUL). */
#define SD_B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 == 0 ? 0 : (n) % 3 + 1))

/* Encodes in[0, len) into out, which must hold SD_B64URL_LEN(len) + 1
 * bytes; NUL-terminated, no padding. Returns the length written. */
size_t sd_b64url_encode(const uint8_t *in, size_t len, char *out);

#endif
