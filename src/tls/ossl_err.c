/* ossl_err.c - turns OpenSSL's error queue into steeldoor's sd_err at the
 * boundary, so no caller outside the TLS files ever sees an OpenSSL type. */
#include "sd/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

int sd_err_openssl(struct sd_err *err, const char *fmt, ...)
{
    va_list ap;
    unsigned long e;
    size_t len;

    if (err == NULL) {
        ERR_clear_error();
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    /* Only the first (root-cause) reason is appended: later entries of the
     * queue are usually the same failure seen from outer layers. */
    e = ERR_peek_error();
    if (e != 0) {
        const char *reason = ERR_reason_error_string(e);
        len = strlen(err->msg);
        if (reason != NULL && len + 3 < sizeof(err->msg))
            snprintf(err->msg + len, sizeof(err->msg) - len, " (%s)", reason);
    }
    ERR_clear_error();
    return -1;
}
