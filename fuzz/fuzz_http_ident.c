/* fuzz_http_ident.c - libFuzzer target for the identity headers of HTTP
 * mode (src/http/ident.c) built from a certificate's extraction
 * (src/tls/peer.c), and for the reserved-name lookup.
 *
 * Input: one DER certificate. When it parses, every header is built from
 * it (as the leaf and, twice, as the chain; the client's address chosen by
 * its hash) and must be a run of "Name: value\r\n" lines with no CTL in any
 * value, its XFCC element must read back to the certificate's own subject
 * and names, and a capacity one byte short must be refused without a
 * write past it (the buffer is allocated to exactly that size, so ASan
 * sees any). Whatever the input, its first bytes are also looked up as a
 * header name: the verdict must not change with case or '_' for '-', and
 * a hit must be the name (or prefix) it reports. Invariants that fail call
 * __builtin_trap(). Seeds: the certificates of fuzz/corpus/peer/. */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sd/http_ident.h"
#include "sd/http_req.h"
#include "sd/peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define OUT_MAX (2u * 1024u * 1024u)
static char out[OUT_MAX];

/* ----------------------------------------------------------- reserved */

static unsigned char fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (unsigned char)(c | 0x20);
    return c == '_' ? (unsigned char)'-' : c;
}

static void check_reserved(const uint8_t *data, size_t size)
{
    char a[64], b[64];
    size_t n = size < sizeof(a) ? size : sizeof(a);
    const char *r, *ra, *rb;

    r = sd_http_ident_reserved((struct sd_name){ (const char *)data, n });
    for (size_t i = 0; i < n; i++) {
        unsigned char c = fold(data[i]);
        a[i] = (char)c; /* lower case, '-' */
        b[i] = (char)(c >= 'a' && c <= 'z' ? (c & ~0x20) : c == '-' ? '_' : c);
    }
    ra = sd_http_ident_reserved((struct sd_name){ a, n });
    rb = sd_http_ident_reserved((struct sd_name){ b, n });
    CHECK(r == ra && r == rb);
    if (r != NULL) {
        size_t rl = strlen(r);
        int prefix = r[rl - 1] == '*';
        size_t cmp = prefix ? rl - 1 : rl;

        CHECK(prefix ? n >= cmp : n == cmp);
        CHECK(sd_http_name_eq_loose((struct sd_name){ (const char *)data, cmp },
                                    (struct sd_name){ r, cmp }));
    }
}

/* ------------------------------------------------------------- output */

/* Checks out[0, n) is "Name: value\r\n" lines of the known names, no CTL
 * in a value; returns the XFCC value (in out) and its length, if any. */
static const char *check_lines(const char *o, size_t n, size_t *xfcc_len)
{
    static const char *const names[] = {
        "Client-Cert", "Client-Cert-Chain", "X-Forwarded-Client-Cert", "Forwarded",
        "X-Forwarded-For", "X-Forwarded-Proto",
    };
    const char *xfcc = NULL;
    size_t i = 0;

    while (i < n) {
        size_t name = i, k, value;
        while (i < n && o[i] != ':')
            i++;
        CHECK(i + 1 < n && o[i + 1] == ' ');
        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
            if (strlen(names[k]) == i - name && memcmp(o + name, names[k], i - name) == 0)
                break;
        CHECK(k < sizeof(names) / sizeof(names[0]));
        i += 2;
        value = i;
        while (i < n && o[i] != '\r') {
            unsigned char c = (unsigned char)o[i];
            CHECK(c >= 0x20 && c != 0x7f);
            i++;
        }
        CHECK(i + 1 < n && o[i + 1] == '\n');
        if (k == 2) {
            xfcc = o + value;
            *xfcc_len = i - value;
        }
        i += 2;
    }
    return xfcc;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Reads one XFCC value at v[*i, n) (quoted and escaped, or bare) and
 * checks it equals want. */
static void check_value(const char *v, size_t n, size_t *i, struct sd_name want)
{
    size_t k = 0, p = *i;

    if (p < n && v[p] == '"') {
        p++;
        for (;;) {
            char c;
            CHECK(p < n);
            if (v[p] == '"')
                break;
            if (v[p] == '\\') {
                CHECK(p + 1 < n);
                if (v[p + 1] == 'x') {
                    CHECK(p + 3 < n);
                    int hi = hexv(v[p + 2]), lo = hexv(v[p + 3]);
                    CHECK(hi >= 0 && lo >= 0);
                    c = (char)(hi << 4 | lo);
                    p += 4;
                } else {
                    CHECK(v[p + 1] == '"' || v[p + 1] == '\\');
                    c = v[p + 1];
                    p += 2;
                }
            } else {
                c = v[p++];
            }
            CHECK(k < want.len && want.s[k] == c);
            k++;
        }
        p++;
    } else {
        while (p < n && v[p] != ';') {
            CHECK(v[p] != ',' && v[p] != '=' && v[p] != '"' && v[p] != '\\');
            CHECK(k < want.len && want.s[k] == v[p]);
            k++;
            p++;
        }
    }
    CHECK(k == want.len);
    *i = p;
}

/* The XFCC element reads back as Hash, Subject, URIs, DNS names of pc. */
static void check_xfcc(const char *v, size_t n, const struct sd_peer_cert *pc)
{
    size_t i = 0;

    CHECK(n >= 69 && memcmp(v, "Hash=", 5) == 0);
    for (i = 5; i < 69; i++)
        CHECK(hexv(v[i]) >= 0);
    if (pc->subject.s != NULL) {
        CHECK(n - i >= 9 && memcmp(v + i, ";Subject=", 9) == 0);
        i += 9;
        CHECK(i < n && v[i] == '"');
        check_value(v, n, &i, pc->subject);
    }
    for (size_t u = 0; u < pc->id.nuris; u++) {
        CHECK(n - i >= 5 && memcmp(v + i, ";URI=", 5) == 0);
        i += 5;
        check_value(v, n, &i, pc->id.uris[u]);
    }
    for (size_t d = 0; d < pc->id.ndns; d++) {
        CHECK(n - i >= 5 && memcmp(v + i, ";DNS=", 5) == 0);
        i += 5;
        check_value(v, n, &i, pc->id.dns[d]);
    }
    CHECK(i == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sd_peer_cert *pc;
    struct sd_peer peer;
    struct sd_der certs[3];
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr_un un;
    struct sd_http_ident in;
    const char *xfcc;
    size_t xfcc_len = 0;
    long n;

    check_reserved(data, size);
    pc = sd_peer_cert_from_der(data, size);
    if (pc == NULL)
        return 0;
    memset(&peer, 0, sizeof(peer));
    peer.cert = pc;
    for (size_t i = 0; i < 3; i++)
        certs[i] = (struct sd_der){ data, size };
    memset(&in, 0, sizeof(in));
    in.peer = &peer;
    in.certs = certs;
    in.ncerts = 1 + pc->cert_sha256[1] % 3;
    in.set = pc->cert_sha256[2] & 1 ? 0x3fu : (uint32_t)pc->cert_sha256[3] & 0x3fu;
    switch (pc->cert_sha256[0] & 3) {
    case 0:
        memset(&a4, 0, sizeof(a4));
        a4.sin_family = AF_INET;
        memcpy(&a4.sin_addr, pc->cert_sha256 + 4, 4);
        in.client = (struct sockaddr *)&a4;
        in.clientlen = sizeof(a4);
        break;
    case 1:
    case 2:
        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        memcpy(&a6.sin6_addr, pc->cert_sha256 + 4, 16);
        if ((pc->cert_sha256[0] & 3) == 2) { /* IPv4-mapped */
            memset(&a6.sin6_addr, 0, 10);
            memset(a6.sin6_addr.s6_addr + 10, 0xff, 2);
        }
        in.client = (struct sockaddr *)&a6;
        in.clientlen = sizeof(a6);
        break;
    default:
        memset(&un, 0, sizeof(un));
        un.sun_family = AF_UNIX;
        in.client = (struct sockaddr *)&un;
        in.clientlen = sizeof(un);
        break;
    }

    n = sd_http_ident_build(&in, out, OUT_MAX);
    CHECK(n >= 0);
    xfcc = check_lines(out, (size_t)n, &xfcc_len);
    CHECK((xfcc != NULL) == ((in.set & SD_HTTP_H_XFCC) != 0));
    if (xfcc != NULL)
        check_xfcc(xfcc, xfcc_len, pc);

    /* One byte short, and half: refused, nothing written past the end. */
    for (int k = 0; k < 2 && n > 0; k++) {
        size_t cap = k == 0 ? (size_t)n - 1 : (size_t)n / 2;
        char *small = malloc(cap > 0 ? cap : 1);
        CHECK(small != NULL);
        CHECK(sd_http_ident_build(&in, small, cap) == -1);
        free(small);
    }
    /* Exactly enough: the same bytes. */
    if (n > 0) {
        char *exact = malloc((size_t)n);
        CHECK(exact != NULL);
        CHECK(sd_http_ident_build(&in, exact, (size_t)n) == n);
        CHECK(memcmp(exact, out, (size_t)n) == 0);
        free(exact);
    }
    sd_peer_cert_unref(pc);
    return 0;
}
