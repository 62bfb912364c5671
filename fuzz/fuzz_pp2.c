/* fuzz_pp2.c - libFuzzer target for the PROXY v2 header writer
 * (proxy_proto.c): a round trip through an independent parser.
 *
 * Input:
 *   byte 0        bit 0: IPv6; bit 1: certificate SHA-256 present
 *   bytes 1-3     cap of the output buffer (little-endian) % 131072
 *   then          the addresses: src, dst (4 or 16 bytes each), src port,
 *                 dst port (2 bytes each, network order as in sockaddr)
 *   byte          number of URI SANs % 5, then number of DNS SANs % 5
 *   then          the values, each as: length (2 bytes LE) % 1024, repeat
 *                 (1 byte: the bytes are repeated repeat + 1 times, so a
 *                 short input reaches the 64 KiB limits), the bytes:
 *                 alpn, authority, version, cipher, sig_alg, key_alg, cn,
 *                 subject, identity, rule, the URIs, the DNS names, and
 *                 32 bytes of certificate hash when bit 1 is set.
 *                 Missing input reads as zero bytes.
 * version, cipher, sig_alg, key_alg and rule are C strings for the writer:
 * they end at their first NUL. The output buffer is malloc'd with exactly
 * cap bytes, so a write past it is an ASan report.
 *
 * Invariants (__builtin_trap() when broken):
 *   - sd_pp2_build returns -1 exactly when the header would not fit in cap,
 *     a TLV value or the SSL TLV exceeds 65535 bytes, or the header's
 *     length field would (computed here independently); otherwise it
 *     returns the exact expected length;
 *   - the header parses with the parser below: signature, version and
 *     command, family, length field == bytes after the 16-byte preamble,
 *     addresses and ports as given, then exactly the expected TLVs in the
 *     writer's documented order, each with the value given, every length
 *     consistent and nothing past the end. */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sd/proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define MAX_SANS 4
#define NVALS (10 + 2 * MAX_SANS)

struct in_reader {
    const uint8_t *d;
    size_t left;
};

static void rd(struct in_reader *r, void *out, size_t n)
{
    size_t k = n < r->left ? n : r->left;

    memset(out, 0, n);
    memcpy(out, r->d, k);
    r->d += k;
    r->left -= k;
}

/* A value of the input, in a malloc buffer of exactly its length (+1 for
 * the NUL of the C-string fields, which is never part of the value). */
struct val {
    char *p;
    size_t len;
};

static void rd_val(struct in_reader *r, struct val *v)
{
    uint8_t h[3];
    size_t chunk, reps, i;

    rd(r, h, sizeof(h));
    chunk = ((size_t)h[0] | (size_t)h[1] << 8) % 1024;
    reps = (size_t)h[2] + 1;
    if (chunk > r->left)
        chunk = r->left;
    v->len = chunk * reps;
    v->p = malloc(v->len + 1);
    CHECK(v->p != NULL);
    for (i = 0; i < reps; i++)
        memcpy(v->p + i * chunk, r->d, chunk);
    v->p[v->len] = '\0';
    r->d += chunk;
    r->left -= chunk;
}

/* ---------------------------------------------- the expected TLV list */

struct tlv {
    uint8_t type;
    const char *v;
    size_t len;
};

static void want_name(struct tlv *w, size_t *n, uint8_t type, const struct val *v)
{
    if (v->len > 0) {
        w[*n].type = type;
        w[*n].v = v->p;
        w[*n].len = v->len;
        (*n)++;
    }
}

/* C-string fields: the writer sees them up to the first NUL. */
static void want_str(struct tlv *w, size_t *n, uint8_t type, const struct val *v)
{
    struct val c = { v->p, strlen(v->p) };

    want_name(w, n, type, &c);
}

static size_t tlv_bytes(const struct tlv *w, size_t n, int *too_long)
{
    size_t i, sum = 0;

    for (i = 0; i < n; i++) {
        if (w[i].len > 0xFFFF)
            *too_long = 1;
        sum += 3 + w[i].len;
    }
    return sum;
}

/* ------------------------------------------------- independent parser */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Checks the TLVs in [p, end) against want[0..n): same order, types,
 * lengths and values, ending exactly at end. */
static void parse_tlvs(const uint8_t *p, const uint8_t *end, const struct tlv *want, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        size_t len;

        CHECK(end - p >= 3);
        CHECK(p[0] == want[i].type);
        len = be16(p + 1);
        CHECK(len == want[i].len);
        CHECK((size_t)(end - p - 3) >= len); /* never past the end */
        CHECK(memcmp(p + 3, want[i].v, len) == 0);
        p += 3 + len;
    }
    CHECK(p == end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                     0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
    struct in_reader r = { data, size };
    struct sockaddr_in s4, d4;
    struct sockaddr_in6 s6, d6;
    struct sd_pp2_info in;
    struct sd_name uris[MAX_SANS], dns[MAX_SANS];
    struct val v[NVALS];
    struct tlv outer[4 + 2 * MAX_SANS + 4], ssl[5];
    uint8_t hdr[4], counts[2], hash[32], *out;
    size_t cap, nv = 0, nuris, ndns, nouter = 0, nssl = 0, i;
    size_t addr_len, ssl_body, expect, before = 0;
    int v6, too_long = 0;
    long got;

    rd(&r, hdr, sizeof(hdr));
    v6 = hdr[0] & 1;
    cap = ((size_t)hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16) % 131072;
    memset(&in, 0, sizeof(in));
    memset(&s4, 0, sizeof(s4));
    memset(&d4, 0, sizeof(d4));
    memset(&s6, 0, sizeof(s6));
    memset(&d6, 0, sizeof(d6));
    if (v6) {
        s6.sin6_family = d6.sin6_family = AF_INET6;
        rd(&r, &s6.sin6_addr, 16);
        rd(&r, &d6.sin6_addr, 16);
        rd(&r, &s6.sin6_port, 2);
        rd(&r, &d6.sin6_port, 2);
        in.src = (const struct sockaddr *)&s6;
        in.dst = (const struct sockaddr *)&d6;
        addr_len = 36;
    } else {
        s4.sin_family = d4.sin_family = AF_INET;
        rd(&r, &s4.sin_addr, 4);
        rd(&r, &d4.sin_addr, 4);
        rd(&r, &s4.sin_port, 2);
        rd(&r, &d4.sin_port, 2);
        in.src = (const struct sockaddr *)&s4;
        in.dst = (const struct sockaddr *)&d4;
        addr_len = 12;
    }
    rd(&r, counts, sizeof(counts));
    nuris = counts[0] % (MAX_SANS + 1);
    ndns = counts[1] % (MAX_SANS + 1);
    for (nv = 0; nv < 10 + nuris + ndns; nv++)
        rd_val(&r, &v[nv]);
    if (hdr[0] & 2) {
        rd(&r, hash, sizeof(hash));
        in.cert_sha256 = hash;
    }
    in.alpn = (struct sd_name){ v[0].p, v[0].len };
    in.authority = (struct sd_name){ v[1].p, v[1].len };
    in.version = v[2].p;
    in.cipher = v[3].p;
    in.sig_alg = v[4].p;
    in.key_alg = v[5].p;
    in.cn = (struct sd_name){ v[6].p, v[6].len };
    in.subject = (struct sd_name){ v[7].p, v[7].len };
    in.identity = (struct sd_name){ v[8].p, v[8].len };
    in.rule = v[9].p;
    for (i = 0; i < nuris; i++)
        uris[i] = (struct sd_name){ v[10 + i].p, v[10 + i].len };
    for (i = 0; i < ndns; i++)
        dns[i] = (struct sd_name){ v[10 + nuris + i].p, v[10 + nuris + i].len };
    in.uris = uris;
    in.nuris = nuris;
    in.dns = dns;
    in.ndns = ndns;

    /* What must come out, in the writer's documented order. */
    want_name(outer, &nouter, SD_PP2_TYPE_ALPN, &v[0]);
    want_name(outer, &nouter, SD_PP2_TYPE_AUTHORITY, &v[1]);
    before = nouter; /* the SSL TLV goes here */
    want_str(ssl, &nssl, SD_PP2_SUBTYPE_SSL_VERSION, &v[2]);
    want_name(ssl, &nssl, SD_PP2_SUBTYPE_SSL_CN, &v[6]);
    want_str(ssl, &nssl, SD_PP2_SUBTYPE_SSL_CIPHER, &v[3]);
    want_str(ssl, &nssl, SD_PP2_SUBTYPE_SSL_SIG_ALG, &v[4]);
    want_str(ssl, &nssl, SD_PP2_SUBTYPE_SSL_KEY_ALG, &v[5]);
    want_name(outer, &nouter, SD_PP2_TYPE_SD_IDENTITY, &v[8]);
    want_str(outer, &nouter, SD_PP2_TYPE_SD_RULE, &v[9]);
    for (i = 0; i < nuris; i++)
        want_name(outer, &nouter, SD_PP2_TYPE_SD_URI, &v[10 + i]);
    for (i = 0; i < ndns; i++)
        want_name(outer, &nouter, SD_PP2_TYPE_SD_DNS, &v[10 + nuris + i]);
    if (in.cert_sha256 != NULL) {
        outer[nouter].type = SD_PP2_TYPE_SD_CERT_SHA256;
        outer[nouter].v = (const char *)hash;
        outer[nouter].len = 32;
        nouter++;
    }
    want_name(outer, &nouter, SD_PP2_TYPE_SD_SUBJECT, &v[7]);

    ssl_body = 5 + tlv_bytes(ssl, nssl, &too_long);
    expect = 16 + addr_len + tlv_bytes(outer, nouter, &too_long) + 3 + ssl_body;

    out = malloc(cap ? cap : 1);
    CHECK(out != NULL);
    got = sd_pp2_build(&in, out, cap);
    if (too_long || ssl_body > 0xFFFF || expect - 16 > 0xFFFF || expect > cap) {
        CHECK(got == -1);
        goto done;
    }
    CHECK(got >= 0 && (size_t)got == expect);

    /* the preamble */
    CHECK(memcmp(out, sig, sizeof(sig)) == 0);
    CHECK(out[12] == 0x21);                 /* version 2, PROXY */
    CHECK(out[13] == (v6 ? 0x21 : 0x11));   /* TCP over IPv6 / IPv4 */
    CHECK(be16(out + 14) == expect - 16);
    /* the addresses */
    if (v6) {
        CHECK(memcmp(out + 16, &s6.sin6_addr, 16) == 0);
        CHECK(memcmp(out + 32, &d6.sin6_addr, 16) == 0);
        CHECK(memcmp(out + 48, &s6.sin6_port, 2) == 0);
        CHECK(memcmp(out + 50, &d6.sin6_port, 2) == 0);
    } else {
        CHECK(memcmp(out + 16, &s4.sin_addr, 4) == 0);
        CHECK(memcmp(out + 20, &d4.sin_addr, 4) == 0);
        CHECK(memcmp(out + 24, &s4.sin_port, 2) == 0);
        CHECK(memcmp(out + 26, &d4.sin_port, 2) == 0);
    }
    /* the TLVs: those before SSL, SSL with its sub-TLVs, the rest */
    {
        const uint8_t *p = out + 16 + addr_len, *end = out + expect, *ssl_end;
        size_t pre = tlv_bytes(outer, before, &too_long);

        parse_tlvs(p, p + pre, outer, before);
        p += pre;
        CHECK(end - p >= 3 + 5);
        CHECK(p[0] == SD_PP2_TYPE_SSL);
        CHECK(be16(p + 1) == ssl_body);
        CHECK((size_t)(end - p - 3) >= ssl_body);
        ssl_end = p + 3 + ssl_body;
        CHECK(p[3] == (SD_PP2_CLIENT_SSL | SD_PP2_CLIENT_CERT_CONN | SD_PP2_CLIENT_CERT_SESS));
        CHECK(p[4] == 0 && p[5] == 0 && p[6] == 0 && p[7] == 0); /* verified */
        parse_tlvs(p + 8, ssl_end, ssl, nssl);
        parse_tlvs(ssl_end, end, outer + before, nouter - before);
    }
done:
    free(out);
    for (i = 0; i < nv; i++)
        free(v[i].p);
    return 0;
}
