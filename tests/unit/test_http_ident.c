/* Unit tests for http/ident.c: the `http-headers` word list, the reserved
 * header names, and the identity header lines built from a peer.
 *
 * Certificates are made in-process with OpenSSL (their SAN extension
 * written byte by byte, as in test_peer.c) and read back through
 * sd_peer_cert_from_der, as the TLS layer would; peers with bytes no
 * certificate extraction would let through (CR, LF, NUL in a subject) are
 * built by hand. Every output is checked line by line (a token, ": ", a
 * value without any CTL, CRLF), written just before an unreadable page at
 * every capacity from 0 to its length, and read back: the base64 decoded,
 * the XFCC element parsed and unescaped to the certificate's own names. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sd/err.h"
#include "sd/http_ident.h"
#include "sd/http_req.h"
#include "sd/peer.h"

#define ALL_HEADERS                                                                          \
    (SD_HTTP_H_CLIENT_CERT | SD_HTTP_H_CLIENT_CERT_CHAIN | SD_HTTP_H_XFCC |                 \
     SD_HTTP_H_FORWARDED | SD_HTTP_H_XFF | SD_HTTP_H_XFP)

/* ------------------------------------------------------------ guard area */

#define GUARD_DATA (512u * 1024u)

static char *guard_base; /* GUARD_DATA writable bytes, then a PROT_NONE page */

static int setup(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, GUARD_DATA + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);

    (void)state;
    if (m == MAP_FAILED || mprotect(m + GUARD_DATA, page, PROT_NONE) != 0)
        return -1;
    guard_base = m;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    munmap(guard_base, GUARD_DATA + (size_t)sysconf(_SC_PAGESIZE));
    return 0;
}

/* Returns n bytes that end right at the unreadable page. */
static char *guard_tail(size_t n)
{
    assert_true(n <= GUARD_DATA);
    return guard_base + GUARD_DATA - n;
}

/* ------------------------------------------------------ making certificates */

static EVP_PKEY *key;

static uint8_t san_body[70000];
static size_t san_len;

static size_t der_head(uint8_t *o, uint8_t tag, size_t len)
{
    size_t n = 0;

    o[n++] = tag;
    if (len < 0x80) {
        o[n++] = (uint8_t)len;
    } else if (len < 0x100) {
        o[n++] = 0x81;
        o[n++] = (uint8_t)len;
    } else {
        o[n++] = 0x82;
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    }
    return n;
}

#define T_DNS 0x82
#define T_URI 0x86

static void san_reset(void)
{
    san_len = 0;
}

static void san_add(uint8_t tag, const char *s, size_t len)
{
    assert_true(san_len + len + 4 <= sizeof(san_body));
    san_len += der_head(san_body + san_len, tag, len);
    memcpy(san_body + san_len, s, len);
    san_len += len;
}

static void san_adds(uint8_t tag, const char *s)
{
    san_add(tag, s, strlen(s));
}

struct rdn {
    const char *field;
    const char *value;
};

/* A self-signed certificate with these RDNs (in order) and, when any SAN
 * was added since san_reset, that SAN extension. Returns its DER
 * (OPENSSL_free) in *der. */
static int mk_cert_der(const struct rdn *rdns, size_t nrdns, unsigned char **der)
{
    static uint8_t ext[70010];
    X509 *x = X509_new();
    X509_NAME *name;
    int len;

    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234ABCD));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    name = X509_get_subject_name(x);
    for (size_t i = 0; i < nrdns; i++)
        assert_true(X509_NAME_add_entry_by_txt(name, rdns[i].field, MBSTRING_UTF8,
                                               (const unsigned char *)rdns[i].value, -1, -1,
                                               0));
    assert_true(X509_set_issuer_name(x, name));
    assert_true(X509_set_pubkey(x, key));
    if (san_len > 0) {
        size_t n = der_head(ext, 0x30, san_len);
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        X509_EXTENSION *e;

        memcpy(ext + n, san_body, san_len);
        n += san_len;
        assert_true(ASN1_OCTET_STRING_set(os, ext, (int)n));
        e = X509_EXTENSION_create_by_NID(NULL, NID_subject_alt_name, 0, os);
        assert_non_null(e);
        assert_true(X509_add_ext(x, e, -1));
        X509_EXTENSION_free(e);
        ASN1_OCTET_STRING_free(os);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    *der = NULL;
    len = i2d_X509(x, der);
    assert_true(len > 0);
    X509_free(x);
    return len;
}

/* A certificate, its DER and its extraction. */
struct cert {
    unsigned char *der;
    size_t len;
    struct sd_peer_cert *pc;
};

static struct cert mk(const struct rdn *rdns, size_t nrdns)
{
    struct cert c;

    c.len = (size_t)mk_cert_der(rdns, nrdns, &c.der);
    c.pc = sd_peer_cert_from_der(c.der, c.len);
    assert_non_null(c.pc);
    return c;
}

static void cert_free(struct cert *c)
{
    sd_peer_cert_unref(c->pc);
    OPENSSL_free(c->der);
}

static const struct rdn billing[] = {
    { "O", "Example" }, { "OU", "payments" }, { "CN", "billing" },
};

static struct cert mk_billing(void)
{
    san_reset();
    san_adds(T_URI, "spiffe://example.org/ns/a/sa/b");
    san_adds(T_DNS, "api.internal");
    return mk(billing, 3);
}

static struct cert mk_plain(const char *cn)
{
    struct rdn r[] = { { "CN", cn } };

    san_reset();
    return mk(r, 1);
}

/* ------------------------------------------------------- reading outputs */

/* Checks out[0, n) is a run of "Name: value\r\n" lines: a token, ": ", a
 * value without a CTL (CR, LF, NUL, HTAB, DEL...), CRLF. Returns the number
 * of lines. */
static size_t check_lines(const char *out, size_t n)
{
    size_t i = 0, lines = 0;

    while (i < n) {
        size_t name = i;
        while (i < n && out[i] != ':') {
            unsigned char c = (unsigned char)out[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-'))
                fail_msg("byte 0x%02x in a header name at %zu", c, i);
            i++;
        }
        assert_true(i > name);
        assert_true(i + 1 < n && out[i] == ':' && out[i + 1] == ' ');
        i += 2;
        assert_true(i < n && out[i] != ' '); /* no leading blank: nothing to trim */
        while (i < n && out[i] != '\r') {
            unsigned char c = (unsigned char)out[i];
            if (c < 0x20 || c == 0x7f)
                fail_msg("CTL 0x%02x in a header value at %zu", c, i);
            i++;
        }
        assert_true(out[i - 1] != ' ');
        assert_true(i + 1 < n && out[i] == '\r' && out[i + 1] == '\n');
        i += 2;
        lines++;
    }
    return lines;
}

/* Returns the value of the line `name` in out[0, n) (NUL-terminated copy in
 * a static buffer), or NULL when there is no such line. */
static const char *line_value(const char *out, size_t n, const char *name)
{
    static char buf[GUARD_DATA];
    size_t nl = strlen(name);
    const char *p = out, *end = out + n;

    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        assert_non_null(eol);
        if ((size_t)(eol - p) > nl + 2 && memcmp(p, name, nl) == 0 && p[nl] == ':') {
            size_t vl = (size_t)(eol - p) - nl - 2;
            memcpy(buf, p + nl + 2, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = eol + 2;
    }
    return NULL;
}

static int b64_val(char c)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c != '\0' ? strchr(a, c) : NULL;

    return p != NULL ? (int)(p - a) : -1;
}

/* Decodes padded standard base64 s[0, n) into out; returns its length, or
 * fails the test on anything but canonical base64. */
static size_t b64_decode(const char *s, size_t n, uint8_t *out)
{
    size_t o = 0;

    assert_int_equal(n % 4, 0);
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + (size_t)k] == '=' ? 0 : b64_val(s[i + (size_t)k]);
            assert_true(v[k] >= 0);
        }
        int pad = (s[i + 2] == '=') + (s[i + 3] == '=');
        assert_true(pad == 0 || i + 4 == n);
        assert_true(!(s[i + 2] == '=' && s[i + 3] != '='));
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    return o;
}

/* Checks sf-binary ":b64:" at s[0, n) decodes to der. */
static void check_binary(const char *s, size_t n, const struct sd_der *der)
{
    static uint8_t dec[GUARD_DATA];

    assert_true(n >= 2 && s[0] == ':' && s[n - 1] == ':');
    assert_int_equal(b64_decode(s + 1, n - 2, dec), der->len);
    assert_memory_equal(dec, der->p, der->len);
}

/* One element of an XFCC value, unescaped. */
struct xfcc_pair {
    char key[16];
    char val[8192];
    size_t len;
    int quoted;
};

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses an XFCC element (Envoy's grammar, with our \\ and \xHH) into
 * pairs; returns how many. Fails the test on a malformed element. */
static size_t xfcc_parse(const char *v, struct xfcc_pair *pairs, size_t max)
{
    size_t np = 0;
    const char *p = v;

    while (*p != '\0') {
        struct xfcc_pair *pr;
        const char *eq = strchr(p, '=');

        assert_true(np < max);
        pr = &pairs[np++];
        memset(pr, 0, sizeof(*pr));
        assert_non_null(eq);
        assert_true((size_t)(eq - p) < sizeof(pr->key));
        memcpy(pr->key, p, (size_t)(eq - p));
        p = eq + 1;
        if (*p == '"') {
            pr->quoted = 1;
            p++;
            while (*p != '"') {
                assert_true(*p != '\0');
                assert_true(pr->len < sizeof(pr->val));
                if (*p == '\\') {
                    p++;
                    if (*p == 'x') {
                        int hi = hexv(p[1]), lo = hexv(p[2]);
                        assert_true(hi >= 0 && lo >= 0);
                        pr->val[pr->len++] = (char)(hi << 4 | lo);
                        p += 3;
                    } else {
                        assert_true(*p == '"' || *p == '\\');
                        pr->val[pr->len++] = *p++;
                    }
                } else {
                    pr->val[pr->len++] = *p++;
                }
            }
            p++;
        } else {
            while (*p != '\0' && *p != ';') {
                assert_true(*p != ',' && *p != '=' && *p != '"' && *p != '\\' && *p != ' ');
                assert_true(pr->len < sizeof(pr->val));
                pr->val[pr->len++] = *p++;
            }
        }
        if (*p == ';')
            p++;
        else
            assert_true(*p == '\0');
    }
    return np;
}

static void hex32(const uint8_t *h, char out[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Checks the XFCC line of out against pc: Hash, Subject, each URI and DNS
 * in order, nothing else. */
static void check_xfcc(const char *out, size_t n, const struct sd_peer_cert *pc)
{
    static struct xfcc_pair pairs[200];
    const char *v = line_value(out, n, "X-Forwarded-Client-Cert");
    char hash[65];
    size_t np, k = 0;

    assert_non_null(v);
    np = xfcc_parse(v, pairs, 200);
    assert_int_equal(np, (pc->subject.s != NULL ? 2u : 1u) + pc->id.nuris + pc->id.ndns);
    hex32(pc->cert_sha256, hash);
    assert_string_equal(pairs[k].key, "Hash");
    assert_int_equal(pairs[k].len, 64);
    assert_memory_equal(pairs[k].val, hash, 64);
    k++;
    if (pc->subject.s != NULL) {
        assert_string_equal(pairs[k].key, "Subject");
        assert_true(pairs[k].quoted);
        assert_int_equal(pairs[k].len, pc->subject.len);
        assert_memory_equal(pairs[k].val, pc->subject.s, pc->subject.len);
        k++;
    }
    for (size_t i = 0; i < pc->id.nuris; i++, k++) {
        assert_string_equal(pairs[k].key, "URI");
        assert_int_equal(pairs[k].len, pc->id.uris[i].len);
        assert_memory_equal(pairs[k].val, pc->id.uris[i].s, pc->id.uris[i].len);
    }
    for (size_t i = 0; i < pc->id.ndns; i++, k++) {
        assert_string_equal(pairs[k].key, "DNS");
        assert_int_equal(pairs[k].len, pc->id.dns[i].len);
        assert_memory_equal(pairs[k].val, pc->id.dns[i].s, pc->id.dns[i].len);
    }
    assert_int_equal(k, np);
}

/* ---------------------------------------------------------- building */

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 a;

    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

static struct sd_peer peer_of(const struct sd_peer_cert *pc)
{
    struct sd_peer p;

    memset(&p, 0, sizeof(p));
    p.cert = pc;
    p.rule = 0;
    return p;
}

/* Builds in into a guarded buffer at every capacity from 0 to the full
 * length + 1: each short one returns -1 and writes nothing before out or
 * at or past out + cap (the page after it is unreadable); the full one and
 * any larger return the same bytes. Returns the full output (static,
 * NUL-terminated) and its length in *len, after check_lines. */
static const char *build_all_caps(const struct sd_http_ident *in, size_t *len)
{
    static char full[GUARD_DATA];
    char *out = guard_tail(GUARD_DATA - 64);
    long n = sd_http_ident_build(in, out, GUARD_DATA - 64);

    assert_true(n >= 0);
    assert_true((size_t)n < sizeof(full));
    memcpy(full, out, (size_t)n);
    full[n] = '\0';
    for (size_t cap = 0; cap <= (size_t)n + 1; cap++) {
        char *o = guard_tail(cap);
        long r;

        memset(o - 64, 0xA5, 64 + cap);
        r = sd_http_ident_build(in, o, cap);
        for (size_t i = 0; i < 64; i++)
            assert_int_equal((unsigned char)o[(ptrdiff_t)i - 64], 0xA5);
        if (cap < (size_t)n) {
            if (r != -1)
                fail_msg("cap %zu of %ld: %ld", cap, n, r);
        } else {
            assert_int_equal(r, n);
            assert_memory_equal(o, full, (size_t)n);
        }
    }
    /* A NULL out with cap 0 is fine when nothing is to be written. */
    if (n == 0)
        assert_int_equal(sd_http_ident_build(in, NULL, 0), 0);
    check_lines(full, (size_t)n);
    *len = (size_t)n;
    return full;
}

static char *b64(const unsigned char *p, size_t n)
{
    char *s = malloc(4 * (n / 3 + 1) + 1);

    assert_non_null(s);
    EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    return s;
}

/* ------------------------------------------------------------------ tests */

static void test_parse_set(void **state)
{
    static const struct {
        const char *text;
        uint32_t set;
    } ok[] = {
        { "client-cert", SD_HTTP_H_CLIENT_CERT },
        { "client-cert-chain", SD_HTTP_H_CLIENT_CERT_CHAIN },
        { "rfc9440", SD_HTTP_H_DEFAULT },
        { "xfcc", SD_HTTP_H_XFCC },
        { "forwarded", SD_HTTP_H_FORWARDED },
        { "x-forwarded-for", SD_HTTP_H_XFF },
        { "x-forwarded-proto", SD_HTTP_H_XFP },
        { "x-forwarded", SD_HTTP_H_XFF | SD_HTTP_H_XFP },
        { "none", 0 },
        { " none ", 0 },
        { "none,none", 0 },
        { " xfcc , forwarded ", SD_HTTP_H_XFCC | SD_HTTP_H_FORWARDED },
        { "\txfcc\t,\tx-forwarded-for", SD_HTTP_H_XFCC | SD_HTTP_H_XFF },
        { "xfcc,xfcc,xfcc", SD_HTTP_H_XFCC },
        { "rfc9440,client-cert", SD_HTTP_H_DEFAULT },
        { "rfc9440,xfcc,forwarded,x-forwarded", ALL_HEADERS },
        { "client-cert,client-cert-chain,xfcc,forwarded,x-forwarded-for,x-forwarded-proto",
          ALL_HEADERS },
    };
    static const struct {
        const char *text;
        const char *needle; /* in the message */
    } bad[] = {
        { "", "empty" },
        { "   ", "empty" },
        { ",", "empty word" },
        { "xfcc,", "empty word" },
        { ",xfcc", "empty word" },
        { "xfcc,,forwarded", "empty word" },
        { "xfcc, ,forwarded", "empty word" },
        { "foo", "'foo'" },
        { "xfcc,foo", "'foo'" },
        { "XFCC", "'XFCC'" },
        { "client cert", "'client cert'" },
        { "client-cert;xfcc", "'client-cert;xfcc'" },
        { "x-forwarded-client-cert", "'x-forwarded-client-cert'" },
        { "none,xfcc", "none cannot be combined" },
        { "xfcc, none", "none cannot be combined" },
    };
    struct sd_err err;
    uint32_t set;
    char longword[300];

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        set = 0xdeadbeef;
        if (sd_http_ident_parse_set(ok[i].text, &set, &err) != 0)
            fail_msg("'%s': %s", ok[i].text, err.msg);
        assert_int_equal(set, ok[i].set);
        /* A NULL err is allowed. */
        assert_int_equal(sd_http_ident_parse_set(ok[i].text, &set, NULL), 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set = 0xdeadbeef;
        memset(&err, 0, sizeof(err));
        assert_int_equal(sd_http_ident_parse_set(bad[i].text, &set, &err), -1);
        assert_int_equal(set, 0xdeadbeef);
        if (strstr(err.msg, bad[i].needle) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, err.msg, bad[i].needle);
        assert_non_null(strstr(err.msg, "client-cert-chain")); /* the valid words */
        assert_non_null(strstr(err.msg, "x-forwarded-proto"));
        assert_int_equal(sd_http_ident_parse_set(bad[i].text, &set, NULL), -1);
    }
    assert_int_equal(sd_http_ident_parse_set(NULL, &set, &err), -1);
    /* A long bad word is quoted cut, never overflowing the message. */
    memset(longword, 'q', sizeof(longword) - 1);
    longword[sizeof(longword) - 1] = '\0';
    assert_int_equal(sd_http_ident_parse_set(longword, &set, &err), -1);
    assert_non_null(strstr(err.msg, "'qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq'..."));
    assert_true(strlen(err.msg) < SD_ERR_MAX);
}

static void test_format_set(void **state)
{
    static const char all[] =
        "client-cert,client-cert-chain,xfcc,forwarded,x-forwarded-for,x-forwarded-proto";
    char buf[128];
    struct sd_err err;

    (void)state;
    sd_http_ident_format_set(0, buf, sizeof(buf));
    assert_string_equal(buf, "none");
    sd_http_ident_format_set(SD_HTTP_H_DEFAULT, buf, sizeof(buf));
    assert_string_equal(buf, "client-cert,client-cert-chain");
    sd_http_ident_format_set(ALL_HEADERS, buf, sizeof(buf));
    assert_string_equal(buf, all);
    sd_http_ident_format_set(SD_HTTP_H_XFP | SD_HTTP_H_FORWARDED, buf, sizeof(buf));
    assert_string_equal(buf, "forwarded,x-forwarded-proto");
    sd_http_ident_format_set(1u << 30, buf, sizeof(buf)); /* no word for it */
    assert_string_equal(buf, "none");
    /* Every set round-trips through its text. */
    for (uint32_t s = 0; s <= ALL_HEADERS; s++) {
        uint32_t back = 0xdeadbeef;
        sd_http_ident_format_set(s, buf, sizeof(buf));
        if (sd_http_ident_parse_set(buf, &back, &err) != 0)
            fail_msg("%u: '%s': %s", s, buf, err.msg);
        assert_int_equal(back, s);
    }
    /* Cut to size, NUL-terminated, never past size (guarded). */
    sd_http_ident_format_set(ALL_HEADERS, guard_tail(0), 0);
    for (size_t size = 1; size <= sizeof(all) + 1; size++) {
        char *o = guard_tail(size);
        size_t want = size - 1 < sizeof(all) - 1 ? size - 1 : sizeof(all) - 1;
        sd_http_ident_format_set(ALL_HEADERS, o, size);
        assert_int_equal(strlen(o), want);
        assert_memory_equal(o, all, want);
    }
}

/* Every reserved name and what sd_http_ident_reserved names it. */
static const struct {
    const char *name;
    const char *canon;
} reserved[] = {
    { "Client-Cert", "Client-Cert" },
    { "Client-Cert-Chain", "Client-Cert-Chain" },
    { "X-Forwarded-Client-Cert", "X-Forwarded-Client-Cert" },
    { "Forwarded", "Forwarded" },
    { "X-Forwarded-For", "X-Forwarded-For" },
    { "X-Forwarded-Proto", "X-Forwarded-Proto" },
    { "X-Forwarded-Host", "X-Forwarded-Host" },
    { "X-Forwarded-Port", "X-Forwarded-Port" },
    { "X-Forwarded-Prefix", "X-Forwarded-Prefix" },
    { "X-Forwarded-Ssl", "X-Forwarded-Ssl" },
    { "X-Forwarded-Scheme", "X-Forwarded-Scheme" },
    { "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert" },
    { "X-Forwarded-Tls-Client-Cert-Info", "X-Forwarded-Tls-Client-Cert-Info" },
    { "X-Real-IP", "X-Real-IP" },
    { "X-Client-Cert", "X-Client-Cert" },
    { "X-Client-Verify", "X-Client-Verify" },
    { "X-Client-DN", "X-Client-DN" },
    { "SSL-Client-Cert", "SSL-Client-Cert" },
    { "X-SSL-Cert", "X-SSL-Cert" },
    { "X-ARR-ClientCert", "X-ARR-ClientCert" },
    { "X-SSL-Client-Cert", "X-SSL-Client-Cert" },
    { "X-Steeldoor-Request-Id", "X-Steeldoor-Request-Id" },
    { "X-SSL-Client-", "X-SSL-Client-*" },
    { "X-SSL-Client-Verify", "X-SSL-Client-*" },
    { "X-SSL-Client-S-DN", "X-SSL-Client-*" },
    { "X-SSL-Client-I-DN", "X-SSL-Client-*" },
    { "X-SSL-Client-Fingerprint", "X-SSL-Client-*" },
    { "X-Steeldoor-", "X-Steeldoor-*" },
    { "X-Steeldoor-Identity", "X-Steeldoor-*" },
    { "X-Steeldoor-Second-Factor-User", "X-Steeldoor-*" },
    { "Steeldoor-", "Steeldoor-*" },
    { "Steeldoor-Identity", "Steeldoor-*" },
    { "X-Amzn-Mtls-", "X-Amzn-Mtls-*" },
    { "X-Amzn-Mtls-Clientcert", "X-Amzn-Mtls-*" },
    { "X-Amzn-Mtls-Clientcert-Leaf", "X-Amzn-Mtls-*" },
};

/* The reference: the same set, written the slow and obvious way. */
static const char *const ref_exact[] = {
    "Client-Cert", "Client-Cert-Chain", "X-Forwarded-Client-Cert", "Forwarded",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme",
    "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info", "X-Real-IP",
    "X-Client-Cert", "X-Client-Verify", "X-Client-DN", "SSL-Client-Cert", "X-SSL-Cert",
    "X-ARR-ClientCert", "X-SSL-Client-Cert", "X-Steeldoor-Request-Id",
};
static const char *const ref_prefix[][2] = {
    { "X-SSL-Client-", "X-SSL-Client-*" },
    { "X-Steeldoor-", "X-Steeldoor-*" },
    { "Steeldoor-", "Steeldoor-*" },
    { "X-Amzn-Mtls-", "X-Amzn-Mtls-*" },
};

static const char *ref_reserved(struct sd_name n)
{
    for (size_t i = 0; i < sizeof(ref_exact) / sizeof(ref_exact[0]); i++)
        if (sd_http_name_eq_loose(n, (struct sd_name){ ref_exact[i], strlen(ref_exact[i]) }))
            return ref_exact[i];
    for (size_t i = 0; i < sizeof(ref_prefix) / sizeof(ref_prefix[0]); i++) {
        size_t pl = strlen(ref_prefix[i][0]);
        if (n.len >= pl && sd_http_name_eq_loose((struct sd_name){ n.s, pl },
                                                 (struct sd_name){ ref_prefix[i][0], pl }))
            return ref_prefix[i][1];
    }
    return NULL;
}

/* sd_http_ident_reserved on s[0, n), placed right before the unreadable
 * page (a read past n crashes). */
static const char *greserved(const char *s, size_t n)
{
    char *g = guard_tail(n);

    memmove(g, s, n);
    return sd_http_ident_reserved((struct sd_name){ g, n });
}

static void expect_same_as_ref(const char *s, size_t n)
{
    const char *got = greserved(s, n), *want = ref_reserved((struct sd_name){ s, n });

    if (got == NULL ? want != NULL : want == NULL || strcmp(got, want) != 0)
        fail_msg("'%.*s': got %s, want %s", (int)n, s, got ? got : "NULL",
                 want ? want : "NULL");
}

static void test_reserved_every_variant(void **state)
{
    char v[64];
    size_t checked = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        const char *name = reserved[i].name;
        size_t n = strlen(name), seps[8], nseps = 0;

        assert_true(n < sizeof(v));
        for (size_t k = 0; k < n; k++)
            if (name[k] == '-')
                seps[nseps++] = k;
        assert_true(nseps <= 8);
        /* Each separator '-' or '_', times five ways to case the letters. */
        for (unsigned mask = 0; mask < 1u << nseps; mask++) {
            for (int casing = 0; casing < 5; casing++) {
                memcpy(v, name, n);
                for (size_t k = 0; k < nseps; k++)
                    if (mask & 1u << k)
                        v[seps[k]] = '_';
                for (size_t k = 0; k < n; k++) {
                    unsigned char c = (unsigned char)v[k];
                    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                        continue;
                    int up = casing == 1 ? 0 : casing == 2 ? 1 : casing == 3 ? (int)(k & 1)
                           : casing == 4 ? !(k & 1) : (c >= 'A' && c <= 'Z');
                    v[k] = (char)(up ? (c & ~0x20) : (c | 0x20));
                }
                const char *got = greserved(v, n);
                if (got == NULL || strcmp(got, reserved[i].canon) != 0)
                    fail_msg("'%.*s': got %s, want %s", (int)n, v, got ? got : "NULL",
                             reserved[i].canon);
                checked++;
            }
        }
    }
    assert_true(checked > 1000);
}

static void test_reserved_near_misses(void **state)
{
    static const char *const miss[] = {
        "X-Forwarded", "Client-Certificate", "X-Forwarded-Fo", "X-SteeldoorX", "Steeldoor",
        "X-Steeldoor", "SteeldoorX-", "Client-Cert-Chains", "Client-Cer", "XForwarded-For",
        "X-Forwarded-For ", " X-Forwarded-For", "X-Forwarded-Forx", "Forwarded-For",
        "X-Real-IPv6", "X-Client-Certs", "X-Client-Cer", "SSL-Client-Certificate",
        "X-SSL-Client", "X-SSL-Clientx", "X-SSL", "X-SSL-Certs", "X-Amzn-Mtls",
        "X-Amzn-Trace-Id", "Forwarde", "Forwardedd", "ForwardeD-", "X_", "X-", "X", "",
        "Host", "Accept", "Content-Length", "Transfer-Encoding", "Connection", "Cookie",
        "User-Agent", "Sec-Fetch-Mode", "X-Request-Id", "X-Forwarded-Proto-Version",
        "Y-Forwarded-For", "X=Forwarded-For", "X.Forwarded-For", "X-Forwarded+For",
        "X Forwarded For", "Client_Cert_", "xclient-cert", "Client-Cert-Chain-",
    };
    /* Bytes that fold to a reserved name's under a careless fold ('-' | 0x20
     * is '-', but '\r' | 0x20 is '-'; '_' | 0x20 is DEL), and non-ASCII. */
    static const char bytes_miss[][24] = {
        "X\rForwarded-For", "X\x7f" "Forwarded-For", "X-Forwarded\x0d" "For",
        "X-Forwarded-F\xcf" "r", "\xd8-Forwarded-For", "X-Forwarded-\xc6or",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(miss) / sizeof(miss[0]); i++) {
        const char *got = greserved(miss[i], strlen(miss[i]));
        if (got != NULL)
            fail_msg("'%s' is not reserved, got %s", miss[i], got);
    }
    for (size_t i = 0; i < sizeof(bytes_miss) / sizeof(bytes_miss[0]); i++)
        assert_null(greserved(bytes_miss[i], strlen(bytes_miss[i])));
    /* An embedded NUL does not shorten a name. */
    assert_null(greserved("Forwarded\0", 10));
    assert_null(greserved("X-Real-IP\0x", 11));
    assert_null(sd_http_ident_reserved((struct sd_name){ NULL, 0 }));
}

/* Every single-byte edit (replace, delete, insert) of every reserved name,
 * and every prefix and extension of it, agrees with the reference. */
static void test_reserved_matches_reference(void **state)
{
    static const char alphabet[] = "-_aAzZxXcCsSfFrR0 \x7f\x0d\xc0\xff\t.:";
    char v[80];
    size_t checked = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        const char *name = reserved[i].name;
        size_t n = strlen(name);

        for (size_t k = 0; k <= n + 2; k++) { /* prefixes and extensions */
            memcpy(v, name, n);
            memset(v + n, 'q', 2);
            expect_same_as_ref(v, k);
            checked++;
        }
        for (size_t k = 0; k < n; k++) {
            for (size_t a = 0; a < sizeof(alphabet) - 1; a++) {
                memcpy(v, name, n);
                v[k] = alphabet[a]; /* replace */
                expect_same_as_ref(v, n);
                v[k] = (char)(name[k] ^ 0x20); /* the other case, or a near byte */
                expect_same_as_ref(v, n);
                memcpy(v, name, k); /* insert */
                v[k] = alphabet[a];
                memcpy(v + k + 1, name + k, n - k);
                expect_same_as_ref(v, n + 1);
                checked += 3;
            }
            memcpy(v, name, k); /* delete */
            memcpy(v + k, name + k + 1, n - k - 1);
            expect_same_as_ref(v, n - 1);
            checked++;
        }
    }
    /* Every name of up to 3 bytes over a small alphabet, and long names. */
    for (size_t a = 0; a < sizeof(alphabet); a++)
        for (size_t b = 0; b < sizeof(alphabet); b++) {
            v[0] = alphabet[a];
            v[1] = alphabet[b];
            v[2] = 'x';
            expect_same_as_ref(v, 3);
        }
    memset(v, 'x', sizeof(v));
    expect_same_as_ref(v, sizeof(v));
    assert_true(checked > 10000);
}

/* The identity headers of one certificate, each header alone and all. */
static void test_build_billing(void **state)
{
    struct cert leaf = mk_billing(), ca1 = mk_plain("intermediate one"),
                ca2 = mk_plain("intermediate two");
    struct sd_der certs[3] = { { leaf.der, leaf.len }, { ca1.der, ca1.len }, { ca2.der, ca2.len } };
    struct sd_peer peer = peer_of(leaf.pc);
    struct sockaddr_in a = v4("192.0.2.1");
    struct sd_http_ident in = { &peer, certs, 3, (struct sockaddr *)&a, sizeof(a), 0 };
    unsigned char md[32];
    char hash[65], want[16384];
    char *b0 = b64(leaf.der, leaf.len), *b1 = b64(ca1.der, ca1.len), *b2 = b64(ca2.der, ca2.len);
    const char *out;
    size_t n;

    (void)state;
    assert_int_equal(leaf.pc->flags, 0);
    assert_true(EVP_Digest(leaf.der, leaf.len, md, NULL, EVP_sha256(), NULL));
    assert_memory_equal(md, leaf.pc->cert_sha256, 32);
    hex32(md, hash);

    in.set = SD_HTTP_H_CLIENT_CERT;
    out = build_all_caps(&in, &n);
    snprintf(want, sizeof(want), "Client-Cert: :%s:\r\n", b0);
    assert_string_equal(out, want);
    check_binary(out + 13, n - 15, &certs[0]);

    in.set = SD_HTTP_H_CLIENT_CERT_CHAIN;
    out = build_all_caps(&in, &n);
    snprintf(want, sizeof(want), "Client-Cert-Chain: :%s:, :%s:\r\n", b1, b2);
    assert_string_equal(out, want);
    {
        const char *v = line_value(out, n, "Client-Cert-Chain");
        const char *comma = strstr(v, ", ");
        assert_non_null(comma);
        check_binary(v, (size_t)(comma - v), &certs[1]);
        check_binary(comma + 2, strlen(comma + 2), &certs[2]);
    }

    in.set = SD_HTTP_H_XFCC;
    out = build_all_caps(&in, &n);
    snprintf(want, sizeof(want),
             "X-Forwarded-Client-Cert: Hash=%s;Subject=\"CN=billing,OU=payments,O=Example\";"
             "URI=spiffe://example.org/ns/a/sa/b;DNS=api.internal\r\n", hash);
    assert_string_equal(out, want);
    check_xfcc(out, n, leaf.pc);

    in.set = SD_HTTP_H_FORWARDED;
    assert_string_equal(build_all_caps(&in, &n), "Forwarded: for=192.0.2.1;proto=https\r\n");
    in.set = SD_HTTP_H_XFF;
    assert_string_equal(build_all_caps(&in, &n), "X-Forwarded-For: 192.0.2.1\r\n");
    in.set = SD_HTTP_H_XFP;
    assert_string_equal(build_all_caps(&in, &n), "X-Forwarded-Proto: https\r\n");

    /* All of them, in one fixed order. */
    in.set = ALL_HEADERS;
    out = build_all_caps(&in, &n);
    snprintf(want, sizeof(want),
             "Client-Cert: :%s:\r\n"
             "Client-Cert-Chain: :%s:, :%s:\r\n"
             "X-Forwarded-Client-Cert: Hash=%s;Subject=\"CN=billing,OU=payments,O=Example\";"
             "URI=spiffe://example.org/ns/a/sa/b;DNS=api.internal\r\n"
             "Forwarded: for=192.0.2.1;proto=https\r\n"
             "X-Forwarded-For: 192.0.2.1\r\n"
             "X-Forwarded-Proto: https\r\n", b0, b1, b2, hash);
    assert_string_equal(out, want);
    assert_int_equal(check_lines(out, n), 6);
    /* The default: RFC 9440. */
    in.set = SD_HTTP_H_DEFAULT;
    out = build_all_caps(&in, &n);
    assert_int_equal(check_lines(out, n), 2);
    assert_true(strncmp(out, "Client-Cert: :", 14) == 0);

    /* No chain: no Client-Cert-Chain line, and nothing at all when that is
     * all the set asks for. */
    in.ncerts = 1;
    in.set = SD_HTTP_H_CLIENT_CERT_CHAIN;
    assert_string_equal(build_all_caps(&in, &n), "");
    in.set = SD_HTTP_H_DEFAULT;
    snprintf(want, sizeof(want), "Client-Cert: :%s:\r\n", b0);
    assert_string_equal(build_all_caps(&in, &n), want);
    /* No certificate at all: no Client-Cert either (never an empty one). */
    in.ncerts = 0;
    assert_string_equal(build_all_caps(&in, &n), "");
    in.certs = NULL;
    assert_string_equal(build_all_caps(&in, &n), "");
    /* No peer: no XFCC. */
    in.peer = NULL;
    in.set = SD_HTTP_H_XFCC;
    assert_string_equal(build_all_caps(&in, &n), "");
    in.set = 0;
    assert_string_equal(build_all_caps(&in, &n), "");

    free(b0);
    free(b1);
    free(b2);
    cert_free(&leaf);
    cert_free(&ca1);
    cert_free(&ca2);
}

static void test_build_addresses(void **state)
{
    static const struct {
        const char *ip;
        int family;
        const char *fwd, *xff; /* xff NULL: no line */
    } cases[] = {
        { "192.0.2.1", AF_INET, "for=192.0.2.1", "192.0.2.1" },
        { "0.0.0.0", AF_INET, "for=0.0.0.0", "0.0.0.0" },
        { "255.255.255.255", AF_INET, "for=255.255.255.255", "255.255.255.255" },
        { "2001:db8::1", AF_INET6, "for=\"[2001:db8::1]\"", "2001:db8::1" },
        { "::1", AF_INET6, "for=\"[::1]\"", "::1" },
        { "2001:db8:1:2:3:4:5:6", AF_INET6, "for=\"[2001:db8:1:2:3:4:5:6]\"",
          "2001:db8:1:2:3:4:5:6" },
        { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", AF_INET6,
          "for=\"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]\"",
          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
        { "::ffff:192.0.2.7", AF_INET6, "for=192.0.2.7", "192.0.2.7" },
        { "::ffff:0.0.0.0", AF_INET6, "for=0.0.0.0", "0.0.0.0" },
        /* Not mapped: IPv4-compatible (deprecated) and NAT64 stay IPv6. */
        { "::192.0.2.7", AF_INET6, "for=\"[::192.0.2.7]\"", "::192.0.2.7" },
        { "64:ff9b::192.0.2.7", AF_INET6, "for=\"[64:ff9b::c000:207]\"", "64:ff9b::c000:207" },
    };
    struct sd_peer peer;
    struct sd_http_ident in;
    char want[256];
    size_t n;

    (void)state;
    memset(&peer, 0, sizeof(peer));
    memset(&in, 0, sizeof(in));
    in.peer = &peer;
    in.set = SD_HTTP_H_FORWARDED | SD_HTTP_H_XFF | SD_HTTP_H_XFP;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_in a4;
        struct sockaddr_in6 a6;
        if (cases[i].family == AF_INET) {
            a4 = v4(cases[i].ip);
            in.client = (struct sockaddr *)&a4;
            in.clientlen = sizeof(a4);
        } else {
            a6 = v6(cases[i].ip);
            in.client = (struct sockaddr *)&a6;
            in.clientlen = sizeof(a6);
        }
        snprintf(want, sizeof(want),
                 "Forwarded: %s;proto=https\r\nX-Forwarded-For: %s\r\n"
                 "X-Forwarded-Proto: https\r\n", cases[i].fwd, cases[i].xff);
        assert_string_equal(build_all_caps(&in, &n), want);
        /* A length too short for the family: unknown. */
        in.clientlen = (socklen_t)(cases[i].family == AF_INET ? sizeof(a4) - 1 : sizeof(a6) - 1);
        assert_string_equal(build_all_caps(&in, &n),
                            "Forwarded: for=unknown;proto=https\r\n"
                            "X-Forwarded-Proto: https\r\n");
    }
    /* In a sockaddr_storage, as accept() gives it. */
    {
        struct sockaddr_storage ss;
        struct sockaddr_in6 a6 = v6("2001:db8::42");
        memset(&ss, 0x5a, sizeof(ss));
        memcpy(&ss, &a6, sizeof(a6));
        in.client = (struct sockaddr *)&ss;
        in.clientlen = sizeof(ss);
        assert_string_equal(build_all_caps(&in, &n),
                            "Forwarded: for=\"[2001:db8::42]\";proto=https\r\n"
                            "X-Forwarded-For: 2001:db8::42\r\nX-Forwarded-Proto: https\r\n");
    }
    /* A Unix socket, an unknown family, none: for=unknown and no XFF. */
    {
        struct sockaddr_un un;
        struct sockaddr_storage other;
        memset(&un, 0, sizeof(un));
        un.sun_family = AF_UNIX;
        strcpy(un.sun_path, "/run/x.sock");
        in.client = (struct sockaddr *)&un;
        in.clientlen = sizeof(un);
        assert_string_equal(build_all_caps(&in, &n),
                            "Forwarded: for=unknown;proto=https\r\nX-Forwarded-Proto: https\r\n");
        memset(&other, 0, sizeof(other));
        other.ss_family = AF_PACKET;
        in.client = (struct sockaddr *)&other;
        in.clientlen = sizeof(other);
        assert_string_equal(build_all_caps(&in, &n),
                            "Forwarded: for=unknown;proto=https\r\nX-Forwarded-Proto: https\r\n");
        in.client = NULL;
        in.clientlen = 0;
        assert_string_equal(build_all_caps(&in, &n),
                            "Forwarded: for=unknown;proto=https\r\nX-Forwarded-Proto: https\r\n");
        in.set = SD_HTTP_H_XFF;
        assert_string_equal(build_all_caps(&in, &n), "");
    }
}

/* A peer no certificate extraction would produce (a subject with CR, LF,
 * NUL, HTAB, DEL; names with every XFCC delimiter): never a raw CTL, and
 * every value reads back exactly. */
static void test_build_hostile_names(void **state)
{
    static const char subj[] = "CN=q\"t\\,\r\nX-Evil: 1\0z\x01\x7f\t\xc3\xbc;= end ";
    static const struct sd_name uris[] = {
        { "spiffe://td/a", 13 },
        { "https://x/?a=b;c,d", 18 },
        { "", 0 },
        { "sp ace", 6 },
        { "\xe2\x82\xac", 3 },
        { "a\"b\\c", 5 },
    };
    static const struct sd_name dns[] = {
        { "a.example", 9 },
        { "b\nc", 3 },
        { "\r\n\r\nGET / HTTP/1.1", 18 },
    };
    struct sd_peer_cert pc;
    struct sd_peer peer;
    struct sd_http_ident in;
    size_t n;
    const char *out;

    (void)state;
    memset(&pc, 0, sizeof(pc));
    pc.refs = 1;
    pc.subject = (struct sd_name){ subj, sizeof(subj) - 1 };
    pc.id.uris = uris;
    pc.id.nuris = sizeof(uris) / sizeof(uris[0]);
    pc.id.dns = dns;
    pc.id.ndns = sizeof(dns) / sizeof(dns[0]);
    for (uint8_t i = 0; i < 32; i++)
        pc.cert_sha256[i] = (uint8_t)(i * 9);
    peer = peer_of(&pc);
    memset(&in, 0, sizeof(in));
    in.peer = &peer;
    in.set = SD_HTTP_H_XFCC;
    out = build_all_caps(&in, &n);
    assert_string_equal(out,
        "X-Forwarded-Client-Cert: Hash=0009121b242d363f48515a636c757e879099a2abb4bdc6cfd8e1eaf3fc050e17"
        ";Subject=\"CN=q\\\"t\\\\,\\x0d\\x0aX-Evil: 1\\x00z\\x01\\x7f\\x09\xc3\xbc;= end \""
        ";URI=spiffe://td/a"
        ";URI=\"https://x/?a=b;c,d\""
        ";URI=\"\""
        ";URI=\"sp ace\""
        ";URI=\xe2\x82\xac"
        ";URI=\"a\\\"b\\\\c\""
        ";DNS=a.example"
        ";DNS=\"b\\x0ac\""
        ";DNS=\"\\x0d\\x0a\\x0d\\x0aGET / HTTP/1.1\"\r\n");
    assert_int_equal(check_lines(out, n), 1);
    check_xfcc(out, n, &pc);

    /* A subject that could not be printed: no Subject element. */
    pc.subject = (struct sd_name){ NULL, 0 };
    out = build_all_caps(&in, &n);
    assert_null(strstr(out, "Subject="));
    check_xfcc(out, n, &pc);
    /* An empty one: Subject="". */
    pc.subject = (struct sd_name){ "", 0 };
    out = build_all_caps(&in, &n);
    assert_non_null(strstr(out, ";Subject=\"\";"));
    check_xfcc(out, n, &pc);
}

/* Real certificates with awkward subjects: what OpenSSL's RFC 2253 printer
 * makes of quotes, commas, backslashes, UTF-8 and control bytes reaches the
 * XFCC Subject escaped and reads back unchanged. */
static void test_build_awkward_subjects(void **state)
{
    static const struct rdn subjects[][3] = {
        { { "CN", "a\"b,c\\d;e=f" }, { "O", "Example, Inc." }, { "OU", "x+y<z>#" } },
        { { "CN", "J\xc3\xbcrgen M\xc3\xbcller" }, { "O", "\xe6\x97\xa5\xe6\x9c\xac" },
          { "OU", " lead and trail " } },
        { { "CN", "ctl\x01\x1f\x7f" "end" }, { "O", "tab\there" }, { "OU", "cr\rlf\n" } },
        { { "CN", "\\\\\\\"\"\"" }, { "O", "=;=;," }, { "OU", "#hash" } },
    };
    struct sockaddr_in6 a = v6("2001:db8::7");

    (void)state;
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
        struct cert c;
        struct sd_peer peer;
        struct sd_der der;
        struct sd_http_ident in;
        const char *out;
        size_t n;

        san_reset();
        san_adds(T_URI, "spiffe://example.org/w,x;y=z");
        san_adds(T_DNS, "w.example");
        c.len = (size_t)mk_cert_der(subjects[i], 3, &c.der);
        c.pc = sd_peer_cert_from_der(c.der, c.len);
        assert_non_null(c.pc);
        assert_non_null(c.pc->subject.s);
        peer = peer_of(c.pc);
        der = (struct sd_der){ c.der, c.len };
        in = (struct sd_http_ident){ &peer, &der, 1, (struct sockaddr *)&a, sizeof(a),
                                     ALL_HEADERS };
        out = build_all_caps(&in, &n);
        assert_int_equal(check_lines(out, n), 5);
        check_xfcc(out, n, c.pc);
        assert_non_null(strstr(out, ";URI=\"spiffe://example.org/w,x;y=z\";DNS=w.example\r\n"));
        cert_free(&c);
    }
}

/* The most names a certificate may have: 64 URIs and 64 DNS names, in
 * order; and a big chain, at every capacity. */
static void test_build_many_sans(void **state)
{
    char name[128];
    struct cert leaf, chain[4];
    struct sd_der certs[5];
    struct sd_peer peer;
    struct sockaddr_in6 a = v6("::ffff:198.51.100.9");
    struct sd_http_ident in;
    const char *out;
    size_t n, uris = 0, dnss = 0;

    (void)state;
    san_reset();
    for (int i = 0; i < SD_PEER_MAX_NAMES; i++) {
        snprintf(name, sizeof(name), i % 3 == 0 ? "https://h%d.example/p?a=%d" :
                                                  "spiffe://example.org/w/%d", i, i);
        san_adds(T_URI, name);
        snprintf(name, sizeof(name), "h%d.example", i);
        san_adds(T_DNS, name);
    }
    leaf = mk(billing, 3);
    assert_int_equal(leaf.pc->id.nuris, SD_PEER_MAX_NAMES);
    assert_int_equal(leaf.pc->id.ndns, SD_PEER_MAX_NAMES);
    certs[0] = (struct sd_der){ leaf.der, leaf.len };
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "intermediate %d", i);
        chain[i] = mk_plain(name);
        certs[i + 1] = (struct sd_der){ chain[i].der, chain[i].len };
    }
    peer = peer_of(leaf.pc);
    in = (struct sd_http_ident){ &peer, certs, 5, (struct sockaddr *)&a, sizeof(a),
                                 ALL_HEADERS };
    out = build_all_caps(&in, &n);
    assert_int_equal(check_lines(out, n), 6);
    check_xfcc(out, n, leaf.pc);
    for (const char *p = out; (p = strstr(p, ";URI=")) != NULL; p++)
        uris++;
    for (const char *p = out; (p = strstr(p, ";DNS=")) != NULL; p++)
        dnss++;
    assert_int_equal(uris, SD_PEER_MAX_NAMES);
    assert_int_equal(dnss, SD_PEER_MAX_NAMES);
    assert_non_null(strstr(out, ";URI=\"https://h0.example/p?a=0\";URI=spiffe://example.org/w/1;"));
    assert_non_null(strstr(out, "Forwarded: for=198.51.100.9;proto=https\r\n"));
    assert_non_null(strstr(out, "X-Forwarded-For: 198.51.100.9\r\n"));
    {
        const char *v = line_value(out, n, "Client-Cert-Chain");
        for (int i = 0; i < 4; i++) {
            const char *end = strstr(v, ", ");
            size_t len = end != NULL ? (size_t)(end - v) : strlen(v);
            assert_true((end == NULL) == (i == 3));
            check_binary(v, len, &certs[i + 1]);
            v += len + 2;
        }
    }
    assert_true(n < SD_HTTP_IDENT_MAX);
    cert_free(&leaf);
    for (int i = 0; i < 4; i++)
        cert_free(&chain[i]);
}

/* Base64 of every length around the group size, and of every byte. */
static void test_base64_lengths(void **state)
{
    static uint8_t data[600];
    struct sd_der der;
    struct sd_http_ident in;

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    memset(&in, 0, sizeof(in));
    in.certs = &der;
    in.ncerts = 1;
    in.set = SD_HTTP_H_CLIENT_CERT;
    for (size_t len = 0; len <= 10; len++) {
        size_t n;
        der = (struct sd_der){ data, len };
        const char *out = build_all_caps(&in, &n);
        char *want = b64(data, len);
        assert_int_equal(n, 13 + 2 + strlen(want) + 2);
        assert_memory_equal(out + 14, want, strlen(want));
        check_binary(out + 13, n - 15, &der);
        free(want);
    }
    for (size_t i = 0; i < 256; i++)
        data[i] = (uint8_t)i;
    der = (struct sd_der){ data, 256 };
    {
        size_t n;
        const char *out = build_all_caps(&in, &n);
        check_binary(out + 13, n - 15, &der);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_set),
        cmocka_unit_test(test_format_set),
        cmocka_unit_test(test_reserved_every_variant),
        cmocka_unit_test(test_reserved_near_misses),
        cmocka_unit_test(test_reserved_matches_reference),
        cmocka_unit_test(test_build_billing),
        cmocka_unit_test(test_build_addresses),
        cmocka_unit_test(test_build_hostile_names),
        cmocka_unit_test(test_build_awkward_subjects),
        cmocka_unit_test(test_build_many_sans),
        cmocka_unit_test(test_base64_lengths),
    };
    int rc;

    key = EVP_EC_gen("P-256");
    if (key == NULL)
        return 1;
    rc = cmocka_run_group_tests(tests, setup, teardown);
    EVP_PKEY_free(key);
    return rc;
}
