/* b64url.c - base64url without padding (see sd/b64url.h). */
#include "sd/b64url.h"

static const char sd_b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The value of one character, or -1. */
static int sd_b64url_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

long sd_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i, o = 0, rem = len % 4;
    uint32_t acc = 0;
    int bits = 0;

    if (rem == 1 || (len / 4) * 3 + (rem ? rem - 1 : 0) > cap)
        return -1;
    for (i = 0; i < len; i++) {
        int v = sd_b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1u;
        }
    }
    /* The bits left over must be zero: otherwise another spelling of the
     * same bytes exists, and a signature's text could be varied freely. */
    if (acc != 0)
        return -1;
    return (long)o;
}

size_t sd_b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t i, o = 0;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = sd_b64url_alphabet[v >> 18];
        out[o++] = sd_b64url_alphabet[(v >> 12) & 63];
        out[o++] = sd_b64url_alphabet[(v >> 6) & 63];
        out[o++] = sd_b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = sd_b64url_alphabet[v >> 18];
        out[o++] = sd_b64url_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = sd_b64url_alphabet[v >> 18];
        out[o++] = sd_b64url_alphabet[(v >> 12) & 63];
        out[o++] = sd_b64url_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}
