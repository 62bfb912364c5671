/*
 * sd/err.h - steeldoor's one error convention.
 *
 * Every function that can fail returns int: 0 on success, -1 on failure.
 * On failure it fills the caller's struct sd_err with one line of text that
 * names the object at fault (a file, a flag, an address), e.g.
 *   "pki/api.key: private key does not match certificate pki/api.crt".
 * The caller either adds context and passes it up, or prints it and stops.
 * A NULL err is allowed and means "the caller does not want the message".
 *
 * Hot-path code (per connection, per byte) does not use sd_err; it returns
 * small enums and records a reason code for the connection log instead.
 */
#ifndef SD_ERR_H
#define SD_ERR_H

#include <stddef.h>

#define SD_ERR_MAX 512

struct sd_err {
    char msg[SD_ERR_MAX];
};

#if defined(__GNUC__)
#define SD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define SD_MUST_CHECK __attribute__((warn_unused_result))
#else
#define SD_PRINTF(a, b)
#define SD_MUST_CHECK
#endif

/* Formats the message into err (when err is non-NULL) and returns -1, so a
 * failing path can say `return sd_err_set(err, "...", ...);`. */
int sd_err_set(struct sd_err *err, const char *fmt, ...) SD_PRINTF(2, 3);

/* Prefixes err's message with "prefix: " (when err is non-NULL); returns -1. */
int sd_err_prefix(struct sd_err *err, const char *prefix);

/* Appends the reasons queued by OpenSSL (if any) to err's message and
 * clears OpenSSL's error queue; returns -1. Defined in ossl_err.c, one of
 * the few files that may include OpenSSL. */
int sd_err_openssl(struct sd_err *err, const char *fmt, ...) SD_PRINTF(2, 3);

#endif
