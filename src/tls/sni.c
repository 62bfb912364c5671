/* sni.c - the server_name extension parser (see sni.h). No OpenSSL, no
 * allocation, no state: it only returns a pointer into the caller's bytes. */
#include "sni.h"

#include <string.h>

int sd_tls_sni_parse(const uint8_t *ext, size_t len, struct sd_name *name)
{
    size_t listlen, namelen;

    /* list length (2) | name type (1, host_name = 0) | name length (2) | name */
    if (ext == NULL || len < 5)
        return -1;
    listlen = (size_t)ext[0] << 8 | ext[1];
    namelen = (size_t)ext[3] << 8 | ext[4];
    if (listlen != len - 2 || ext[2] != 0 || namelen > len - 5 || namelen > SD_TLS_SNI_MAX)
        return -1;
    name->s = (const char *)ext + 5;
    name->len = namelen;
    return namelen > 0 && memchr(ext + 5, 0, namelen) == NULL ? 1 : 0;
}

void sd_tls_sni_lower(const struct sd_name *name, uint8_t *out)
{
    size_t i;

    for (i = 0; i < name->len; i++) {
        unsigned char ch = (unsigned char)name->s[i];
        out[i] = (uint8_t)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
}
