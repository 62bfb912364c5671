/* err.c - the error convention described in sd/err.h. */
#include "sd/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sd_err_set(struct sd_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int sd_err_prefix(struct sd_err *err, const char *prefix)
{
    char tmp[SD_ERR_MAX];
    size_t plen, mlen;

    if (err == NULL)
        return -1;
    /* Built by hand rather than with snprintf so that a long message is cut
     * at the end, keeping the prefix (usually a file name). */
    plen = strlen(prefix);
    if (plen > SD_ERR_MAX / 2)
        plen = SD_ERR_MAX / 2;
    memcpy(tmp, prefix, plen);
    memcpy(tmp + plen, ": ", 2);
    mlen = strnlen(err->msg, sizeof(err->msg) - 1);
    if (mlen > sizeof(tmp) - plen - 3)
        mlen = sizeof(tmp) - plen - 3;
    memcpy(tmp + plen + 2, err->msg, mlen);
    tmp[plen + 2 + mlen] = '\0';
    memcpy(err->msg, tmp, sizeof(err->msg));
    return -1;
}
