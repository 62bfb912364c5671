/* Unit tests for the peer extraction (src/tls/peer.c) and its OpenSSL-free
 * consumers (src/peer.c: log fields; src/proxy_proto.c: PROXY v2 header).
 *
 * Certificates are made in-process with OpenSSL, their SAN extensions
 * written byte by byte so that hostile encodings can be tried: NUL and
 * control bytes in names, undecodable, duplicated, non-DER and empty SAN
 * extensions, too many names, ambiguous identities, a huge subject.
 *
 * The code this extraction replaced (tls.c before issue 12: identity
 * loading, subject and SAN logging, the PROXY v2 fields) is kept below as
 * an oracle, and every certificate is checked against it: same verdict,
 * same names, the same log line byte for byte, the same header. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sd/log.h"
#include "sd/peer.h"
#include "sd/policy.h"
#include "sd/proxy_proto.h"
#include "../../src/tls/peer.h"

/* ------------------------------------------------------------ the oracle */

#define LEGACY_MAX 64
struct legacy_ident {
    struct sd_name uris[LEGACY_MAX], dns[LEGACY_MAX];
    struct sd_name cns[8], ous[8];
    size_t nuris, ndns, ncns, nous;
    unsigned char *owned[16];
    size_t nowned;
    GENERAL_NAMES *gens;
    struct sd_identity id;
};

static void legacy_clear(struct legacy_ident *t)
{
    size_t i;

    for (i = 0; i < t->nowned; i++)
        OPENSSL_free(t->owned[i]);
    GENERAL_NAMES_free(t->gens);
    memset(t, 0, sizeof(*t));
}

static int legacy_attr(struct legacy_ident *t, X509_NAME *name, int nid, struct sd_name *out,
                       size_t max, size_t *n)
{
    int idx = -1;

    while ((idx = X509_NAME_get_index_by_NID(name, nid, idx)) >= 0) {
        ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, s);

        if (len < 0 || *n >= max || t->nowned >= 16) {
            OPENSSL_free(utf8);
            return -1;
        }
        t->owned[t->nowned++] = utf8;
        out[*n].s = (const char *)utf8;
        out[*n].len = (size_t)len;
        (*n)++;
    }
    return 0;
}

static int legacy_load(struct legacy_ident *t, X509 *x)
{
    X509_NAME *subj = X509_get_subject_name(x);
    int crit = -1, i;

    memset(t, 0, sizeof(*t));
    t->gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (t->gens == NULL && crit != -1)
        return -1;
    if (t->gens != NULL) {
        X509_EXTENSION *ext = X509_get_ext(x, X509_get_ext_by_NID(x, NID_subject_alt_name, -1));
        const ASN1_OCTET_STRING *raw = ext != NULL ? X509_EXTENSION_get_data(ext) : NULL;
        unsigned char *enc = NULL;
        int enclen = i2d_GENERAL_NAMES(t->gens, &enc);
        int same = raw != NULL && enclen > 0 && enclen == ASN1_STRING_length(raw) &&
                   memcmp(enc, ASN1_STRING_get0_data(raw), (size_t)enclen) == 0;
        OPENSSL_free(enc);
        if (!same || sk_GENERAL_NAME_num(t->gens) == 0)
            return -1;
    }
    for (i = 0; t->gens != NULL && i < sk_GENERAL_NAME_num(t->gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(t->gens, i);
        const ASN1_STRING *s;
        struct sd_name *list;
        size_t *n;

        if (gn->type == GEN_URI) {
            s = gn->d.uniformResourceIdentifier;
            list = t->uris;
            n = &t->nuris;
        } else if (gn->type == GEN_DNS) {
            s = gn->d.dNSName;
            list = t->dns;
            n = &t->ndns;
        } else {
            continue;
        }
        if (*n >= LEGACY_MAX)
            return -1;
        list[*n].s = (const char *)ASN1_STRING_get0_data(s);
        list[*n].len = (size_t)ASN1_STRING_length(s);
        (*n)++;
    }
    if (legacy_attr(t, subj, NID_commonName, t->cns, 8, &t->ncns) != 0 ||
        legacy_attr(t, subj, NID_organizationalUnitName, t->ous, 8, &t->nous) != 0)
        return -1;
    t->id.uris = t->uris;
    t->id.nuris = t->nuris;
    t->id.dns = t->dns;
    t->id.ndns = t->ndns;
    t->id.cns = t->cns;
    t->id.ncns = t->ncns;
    t->id.ous = t->ous;
    t->id.nous = t->nous;
    return sd_policy_identity_sane(&t->id) && sd_policy_identity_unambiguous(&t->id) ? 0 : -1;
}

static void legacy_log_subject(X509 *x, struct sd_logline *l)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                           XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB) >= 0) {
        n = BIO_get_mem_data(b, &data);
        if (n >= 0)
            sd_log_strn_bounded(l, "subject", data, (size_t)n, 768);
    }
    BIO_free(b);
}

static void legacy_log_sans(X509 *x, struct sd_logline *l)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i;

    sd_log_array_begin_bounded(l, "sans", 1280);
    for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const char *prefix = NULL;
        const ASN1_STRING *s = NULL;
        char tmp[600];
        int n;

        switch (gn->type) {
        case GEN_URI: prefix = "URI:"; s = gn->d.uniformResourceIdentifier; break;
        case GEN_DNS: prefix = "DNS:"; s = gn->d.dNSName; break;
        case GEN_EMAIL: prefix = "email:"; s = gn->d.rfc822Name; break;
        case GEN_IPADD: {
            char ip[INET6_ADDRSTRLEN] = "?";
            const ASN1_OCTET_STRING *o = gn->d.iPAddress;
            if (o->length == 4)
                inet_ntop(AF_INET, o->data, ip, sizeof(ip));
            else if (o->length == 16)
                inet_ntop(AF_INET6, o->data, ip, sizeof(ip));
            n = snprintf(tmp, sizeof(tmp), "IP:%s", ip);
            sd_log_array_strn_bounded(l, tmp, (size_t)n, 512);
            continue;
        }
        default:
            continue;
        }
        n = snprintf(tmp, sizeof(tmp), "%s", prefix);
        if (s->length > 0) {
            size_t take = (size_t)s->length < sizeof(tmp) - (size_t)n
                              ? (size_t)s->length : sizeof(tmp) - (size_t)n;
            memcpy(tmp + n, s->data, take);
            n += (int)take;
        }
        sd_log_array_strn_bounded(l, tmp, (size_t)n, 512);
    }
    sd_log_array_end(l);
    GENERAL_NAMES_free(names);
}

/* sd_tls_conn_log without the SSL object: p supplies what the session
 * knew (cipher, version, sni, rule), x the certificate. */
static void legacy_log(const struct sd_peer *p, X509 *x, struct sd_logline *l)
{
    if (p->cipher != NULL) {
        sd_log_str(l, "tls_version", p->tls_version);
        sd_log_str(l, "cipher", p->cipher);
        sd_log_bool(l, "resumed", p->resumed);
    }
    if (p->alpn.len > 0) /* the field added since (issue 17) */
        sd_log_strn_bounded(l, "alpn", p->alpn.s, p->alpn.len, 512);
    if (p->rule >= 0) {
        struct legacy_ident t;
        sd_log_str_bounded(l, "rule", p->rule_text, 512);
        if (x != NULL && legacy_load(&t, x) == 0) {
            struct sd_policy_hit hit = p->hit;
            const struct sd_name *h;
            hit.rule = p->rule;
            h = sd_policy_hit_name(&t.id, &hit);
            if (h != NULL)
                sd_log_strn_bounded(l, "identity", h->s, h->len, 512);
        }
        legacy_clear(&t);
    }
    if (p->sni.s != NULL)
        sd_log_str_bounded(l, "sni", p->sni.s, 512);
    if (x != NULL) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
        const char *h = hex;

        assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
        sd_log_hex(l, "cert_sha256", md, mdlen);
        while (h != NULL && h[0] == '0' && h[1] != '\0')
            h++; /* no leading zero */
        if (h != NULL)
            sd_log_str(l, "cert_serial", h);
        OPENSSL_free(hex);
        BN_free(bn);
        legacy_log_subject(x, l);
        legacy_log_sans(x, l);
    }
}

/* sd_tls_conn_pp2 without the SSL object. */
static long legacy_pp2(const struct sd_peer *p, X509 *peer, const struct sockaddr *src,
                       const struct sockaddr *dst, uint8_t *out, size_t cap)
{
    struct sd_pp2_info in;
    struct legacy_ident t;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    BIO *b = NULL;
    char *subj = NULL;
    long n = -1, sublen;

    memset(&t, 0, sizeof(t));
    if (peer == NULL || legacy_load(&t, peer) != 0 ||
        !X509_digest(peer, EVP_sha256(), md, &mdlen) || (b = BIO_new(BIO_s_mem())) == NULL ||
        X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                           XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB) < 0)
        goto out;
    sublen = BIO_get_mem_data(b, &subj);
    memset(&in, 0, sizeof(in));
    in.src = src;
    in.dst = dst;
    in.alpn = p->alpn;
    in.authority = p->authority;
    in.version = p->tls_version;
    in.cipher = p->cipher;
    in.sig_alg = OBJ_nid2sn(X509_get_signature_nid(peer));
    in.key_alg = EVP_PKEY_get0_type_name(X509_get0_pubkey(peer));
    if (t.ncns > 0)
        in.cn = t.cns[0];
    in.uris = t.uris;
    in.nuris = t.nuris;
    in.dns = t.dns;
    in.ndns = t.ndns;
    in.cert_sha256 = md;
    in.subject.s = subj;
    in.subject.len = sublen > 0 ? (size_t)sublen : 0;
    {
        struct sd_policy_hit hit = p->hit;
        const struct sd_name *h;
        hit.rule = p->rule;
        h = sd_policy_hit_name(&t.id, &hit);
        if (h != NULL)
            in.identity = *h;
    }
    if (p->rule >= 0)
        in.rule = p->rule_text;
    n = sd_pp2_build(&in, out, cap);
out:
    BIO_free(b);
    legacy_clear(&t);
    ERR_clear_error();
    return n;
}

/* ------------------------------------------------------ making certificates */

static EVP_PKEY *key;

/* A SAN extension's value, written by hand. */
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

/* GeneralName tags (context-specific, implicit) */
#define T_EMAIL 0x81
#define T_DNS 0x82
#define T_URI 0x86
#define T_IP 0x87

static void san_reset(void)
{
    san_len = 0;
}

static void san_add(uint8_t tag, const void *v, size_t len)
{
    assert_true(san_len + len + 4 <= sizeof(san_body));
    san_len += der_head(san_body + san_len, tag, len);
    memcpy(san_body + san_len, v, len);
    san_len += len;
}

static void san_adds(uint8_t tag, const char *s)
{
    san_add(tag, s, strlen(s));
}

/* The extension value: SEQUENCE { names } (and any raw extra after it). */
static size_t san_value(uint8_t *out, size_t cap, const void *extra, size_t nextra)
{
    size_t n = der_head(out, 0x30, san_len);

    assert_true(n + san_len + nextra <= cap);
    memcpy(out + n, san_body, san_len);
    n += san_len;
    if (nextra > 0)
        memcpy(out + n, extra, nextra);
    return n + nextra;
}

struct rdn {
    const char *field;
    const char *value;
    int len; /* -1: strlen */
};

/* A self-signed certificate with the subject's RDNs in order and, if ext
 * is not NULL, that SAN extension value (copies of it). */
static X509 *mk_cert(const struct rdn *rdns, size_t nrdns, const uint8_t *ext, size_t extlen,
                     int copies)
{
    X509 *x = X509_new();
    X509_NAME *name;
    size_t i;
    int c;

    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234ABCD));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    name = X509_get_subject_name(x);
    for (i = 0; i < nrdns; i++)
        assert_true(X509_NAME_add_entry_by_txt(name, rdns[i].field, MBSTRING_UTF8,
                                               (const unsigned char *)rdns[i].value,
                                               rdns[i].len, -1, 0));
    assert_true(X509_set_issuer_name(x, name));
    assert_true(X509_set_pubkey(x, key));
    for (c = 0; ext != NULL && c < copies; c++) {
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        X509_EXTENSION *e;
        assert_true(ASN1_OCTET_STRING_set(os, ext, (int)extlen));
        e = X509_EXTENSION_create_by_NID(NULL, NID_subject_alt_name, 0, os);
        assert_non_null(e);
        assert_true(X509_add_ext(x, e, -1));
        X509_EXTENSION_free(e);
        ASN1_OCTET_STRING_free(os);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static X509 *mk_san_cert(const struct rdn *rdns, size_t nrdns)
{
    static uint8_t v[70010];
    size_t n = san_value(v, sizeof(v), NULL, 0);

    return mk_cert(rdns, nrdns, v, n, 1);
}

/* Round trip through DER, as the fuzz target and the TLS stack see it. */
static struct sd_peer_cert *from_x509(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    struct sd_peer_cert *pc, *direct;

    assert_true(len > 0);
    pc = sd_peer_cert_from_der(der, (size_t)len);
    OPENSSL_free(der);
    assert_non_null(pc);
    /* The DER entry and the X509 entry agree. */
    direct = sd_tls_peer_cert_new(x);
    assert_non_null(direct);
    assert_int_equal(pc->flags, direct->flags);
    assert_memory_equal(pc->cert_sha256, direct->cert_sha256, 32);
    assert_int_equal(pc->nsans, direct->nsans);
    sd_peer_cert_unref(direct);
    return pc;
}

/* -------------------------------------------------------- log capture */

static int fds[2];
static char line[2 * SD_LOG_LINE_MAX];

static int setup(void **state)
{
    (void)state;
    if (pipe(fds) != 0)
        return -1;
    sd_log_set_fd(fds[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(fds[0]);
    close(fds[1]);
    sd_log_set_fd(2);
    return 0;
}

/* Reads one line into buf (two lines may wait in the pipe together; the
 * rest is kept for the next call, and a missing line fails instead of
 * hanging); returns it from after "pid":N (time and pid may differ between
 * two lines). */
static char pending[4 * SD_LOG_LINE_MAX];
static size_t npending;

static const char *read_line(char *buf, size_t cap)
{
    const char *p;
    char *nl;
    size_t n;

    while ((nl = memchr(pending, '\n', npending)) == NULL) {
        struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
        ssize_t r;

        if (poll(&pfd, 1, 2000) != 1)
            fail_msg("no log line");
        r = read(fds[0], pending + npending, sizeof(pending) - npending);
        assert_true(r > 0);
        npending += (size_t)r;
    }
    n = (size_t)(nl - pending) + 1;
    assert_true(n < cap);
    memcpy(buf, pending, n);
    buf[n] = '\0';
    memmove(pending, pending + n, npending - n);
    npending -= n;
    p = strstr(buf, "\"pid\":");
    assert_non_null(p);
    p = strchr(p, ',');
    return p != NULL ? p : buf + n - 2;
}

static json_t *parse(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loadb(s, strlen(s), JSON_ALLOW_NUL, &jerr);

    if (j == NULL)
        fail_msg("not JSON (%s): %s", jerr.text, s);
    return j;
}

/* A peer as the TLS layer fills it after a handshake. */
static struct sd_peer mk_peer(const struct sd_peer_cert *pc, int rule, const char *rule_text,
                              enum sd_rule_kind kind, size_t index)
{
    struct sd_peer p;

    memset(&p, 0, sizeof(p));
    p.cert = pc;
    p.tls_version = "TLSv1.3";
    p.cipher = "TLS_AES_128_GCM_SHA256";
    p.sni = (struct sd_name){ "api.internal", 12 };
    p.authority = p.sni;
    p.alpn = (struct sd_name){ "h2", 2 };
    p.rule = rule;
    p.rule_text = rule_text;
    p.hit.rule = rule;
    p.hit.kind = kind;
    p.hit.index = index;
    return p;
}

/* The old and the new code agree on x: verdict, names, log line, header.
 * Returns the extraction (the caller unrefs it). */
static struct sd_peer_cert *check_against_oracle(X509 *x)
{
    static char a[2 * SD_LOG_LINE_MAX], b[2 * SD_LOG_LINE_MAX];
    struct sd_peer_cert *pc = from_x509(x);
    struct legacy_ident t;
    struct sd_logline l;
    struct sd_peer p;
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(8443) };
    static uint8_t h1[70000], h2[70000];
    long n1, n2;
    int bad = legacy_load(&t, x) != 0;
    int rules[2] = { -1, 0 };
    size_t i, r;

    assert_int_equal(bad, (pc->flags & SD_PEER_MALFORMED) != 0);
    if (!bad) {
        assert_int_equal(t.nuris, pc->id.nuris);
        assert_int_equal(t.ndns, pc->id.ndns);
        assert_int_equal(t.ncns, pc->id.ncns);
        assert_int_equal(t.nous, pc->id.nous);
        for (i = 0; i < t.nuris; i++) {
            assert_int_equal(t.uris[i].len, pc->id.uris[i].len);
            assert_memory_equal(t.uris[i].s, pc->id.uris[i].s, t.uris[i].len);
        }
        for (i = 0; i < t.ndns; i++) {
            assert_int_equal(t.dns[i].len, pc->id.dns[i].len);
            assert_memory_equal(t.dns[i].s, pc->id.dns[i].s, t.dns[i].len);
        }
        for (i = 0; i < t.ncns; i++) {
            assert_int_equal(t.cns[i].len, pc->id.cns[i].len);
            assert_memory_equal(t.cns[i].s, pc->id.cns[i].s, t.cns[i].len);
        }
        for (i = 0; i < t.nous; i++) {
            assert_int_equal(t.ous[i].len, pc->id.ous[i].len);
            assert_memory_equal(t.ous[i].s, pc->id.ous[i].s, t.ous[i].len);
        }
    }
    legacy_clear(&t);

    /* Refused (rule -1) and admitted by allow-all (rule 0): same line. */
    for (r = 0; r < 2; r++) {
        if (rules[r] >= 0 && bad)
            continue; /* a malformed certificate is never admitted */
        p = mk_peer(pc, rules[r], "all", SD_RULE_CN, 0);
        sd_log_begin(&l, "info", "conn");
        sd_log_str(&l, "reason", "x");
        legacy_log(&p, x, &l);
        sd_log_u64(&l, "after", 1);
        sd_log_end(&l);
        sd_log_begin(&l, "info", "conn");
        sd_log_str(&l, "reason", "x");
        sd_peer_log(&p, &l);
        sd_log_u64(&l, "after", 1);
        sd_log_end(&l);
        assert_string_equal(read_line(a, sizeof(a)), read_line(b, sizeof(b)));
        json_decref(parse(a));
        if (rules[r] >= 0) {
            n1 = legacy_pp2(&p, x, (struct sockaddr *)&src, (struct sockaddr *)&dst, h1,
                            16384);
            n2 = sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, h2,
                                   16384);
            assert_int_equal(n1, n2);
            if (n1 > 0)
                assert_memory_equal(h1, h2, (size_t)n1);
            n1 = legacy_pp2(&p, x, (struct sockaddr *)&src, (struct sockaddr *)&dst, h1,
                            sizeof(h1));
            n2 = sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, h2,
                                   sizeof(h2));
            assert_int_equal(n1, n2);
            if (n1 > 0)
                assert_memory_equal(h1, h2, (size_t)n1);
        }
    }
    return pc;
}

/* ------------------------------------------------------------------ tests */

static const struct rdn spiffe_subject[] = {
    { "O", "Example", -1 }, { "OU", "payments", -1 }, { "CN", "billing", -1 },
};

static X509 *mk_spiffe(void)
{
    san_reset();
    san_adds(T_URI, "spiffe://example.org/ns/a/sa/b");
    san_adds(T_DNS, "api.internal");
    return mk_san_cert(spiffe_subject, 3);
}

static void test_normal_spiffe(void **state)
{
    X509 *x = mk_spiffe();
    struct sd_peer_cert *pc = check_against_oracle(x);
    unsigned char md[32], *der = NULL;
    unsigned int mdlen = 0;
    int derlen;
    time_t now = time(NULL);

    (void)state;
    assert_int_equal(pc->flags, 0);
    assert_int_equal(pc->refs, 1);
    assert_int_equal(pc->id.nuris, 1);
    assert_int_equal(pc->id.uris[0].len, 30);
    assert_memory_equal(pc->id.uris[0].s, "spiffe://example.org/ns/a/sa/b", 30);
    assert_int_equal(pc->id.ndns, 1);
    assert_memory_equal(pc->id.dns[0].s, "api.internal", 12);
    assert_int_equal(pc->id.ncns, 1);
    assert_string_equal(pc->id.cns[0].s, "billing");
    assert_int_equal(pc->id.nous, 1);
    assert_string_equal(pc->id.ous[0].s, "payments");
    assert_int_equal(pc->nsans, 2);
    assert_int_equal(pc->sans[0].type, SD_SAN_URI);
    assert_ptr_equal(pc->sans[0].name.s, pc->id.uris[0].s); /* stored once */
    assert_int_equal(pc->sans[1].type, SD_SAN_DNS);
    assert_int_equal(pc->nemails, 0);
    assert_int_equal(pc->nips, 0);
    assert_string_equal(pc->subject.s, "CN=billing,OU=payments,O=Example");
    assert_int_equal(pc->subject.len, strlen("CN=billing,OU=payments,O=Example"));
    assert_string_equal(pc->serial.s, "1234ABCD");
    assert_string_equal(pc->sig_alg, "ecdsa-with-SHA256");
    assert_string_equal(pc->key_alg, "EC");
    assert_true(pc->not_before >= (int64_t)now - 5 && pc->not_before <= (int64_t)now + 5);
    assert_int_equal(pc->not_after - pc->not_before, 3600);

    /* Hashes, computed independently. */
    assert_true(X509_digest(x, EVP_sha256(), md, &mdlen));
    assert_memory_equal(pc->cert_sha256, md, 32);
    derlen = i2d_PUBKEY(key, &der);
    assert_true(derlen > 0);
    assert_true(EVP_Digest(der, (size_t)derlen, md, &mdlen, EVP_sha256(), NULL));
    OPENSSL_free(der);
    assert_memory_equal(pc->spki_sha256, md, 32);
    assert_ptr_equal(pc->id.spki_sha256, pc->spki_sha256);

    /* References. */
    assert_ptr_equal(sd_peer_cert_ref(pc), pc);
    assert_int_equal(pc->refs, 2);
    sd_peer_cert_unref(pc);
    assert_int_equal(pc->refs, 1);
    assert_null(sd_peer_cert_ref(NULL));
    sd_peer_cert_unref(NULL);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

/* The policy reads the extraction as it read the old identity. */
static void test_rules_read_extraction(void **state)
{
    X509 *x = mk_spiffe();
    struct sd_peer_cert *pc = from_x509(x);
    struct sd_policy *pol = sd_policy_new();
    struct sd_policy_hit hit;
    struct sd_err err;
    char hex[65];
    size_t i;

    (void)state;
    for (i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", pc->spki_sha256[i]);
    assert_int_equal(sd_policy_add(pol, SD_RULE_DNS, "other.internal", &err), 0);
    assert_int_equal(sd_policy_add(pol, SD_RULE_SPKI, hex, &err), 0);
    assert_int_equal(sd_policy_match_hit(pol, &pc->id, &hit), 1);
    assert_int_equal(hit.kind, SD_RULE_SPKI);
    sd_policy_free(pol);
    pol = sd_policy_new();
    assert_int_equal(sd_policy_add(pol, SD_RULE_URI, "spiffe://example.org/ns/*/sa/b", &err), 0);
    assert_int_equal(sd_policy_match_hit(pol, &pc->id, &hit), 0);
    {
        struct sd_peer p = mk_peer(pc, 0, sd_policy_rule_text(pol, 0), hit.kind, hit.index);
        const struct sd_name *id = sd_peer_identity(&p);
        assert_non_null(id);
        assert_ptr_equal(id, &pc->id.uris[0]);
        p.rule = -1;
        assert_null(sd_peer_identity(&p));
        assert_null(sd_peer_identity(NULL));
    }
    sd_policy_free(pol);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static void expect_malformed(X509 *x)
{
    struct sd_peer_cert *pc = check_against_oracle(x);

    assert_true(pc->flags & SD_PEER_MALFORMED);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static void test_nul_in_names(void **state)
{
    static const char uri[] = "spiffe://td/a\0.evil";
    static const char dns[] = "good.example\0.evil";
    static const char cn[] = "billing\0admin";
    struct rdn subj[] = { { "CN", cn, (int)sizeof(cn) - 1 } };
    struct sd_peer_cert *pc;
    X509 *x;

    (void)state;
    san_reset();
    san_add(T_URI, uri, sizeof(uri) - 1);
    x = mk_san_cert(spiffe_subject, 1);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->id.nuris, 1);
    assert_int_equal(pc->id.uris[0].len, sizeof(uri) - 1); /* kept with its NUL */
    assert_memory_equal(pc->id.uris[0].s, uri, sizeof(uri) - 1);
    sd_peer_cert_unref(pc);
    X509_free(x);

    san_reset();
    san_add(T_DNS, dns, sizeof(dns) - 1);
    x = mk_san_cert(spiffe_subject, 1);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->id.dns[0].len, sizeof(dns) - 1);
    sd_peer_cert_unref(pc);
    X509_free(x);

    x = mk_cert(subj, 1, NULL, 0, 0);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->id.ncns, 1);
    assert_int_equal(pc->id.cns[0].len, sizeof(cn) - 1);
    assert_memory_equal(pc->id.cns[0].s, cn, sizeof(cn) - 1);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static void test_control_byte(void **state)
{
    struct rdn subj[] = { { "OU", "pay\x1bments", -1 } };

    (void)state;
    san_reset();
    san_adds(T_URI, "spiffe://td/a\x01" "b");
    expect_malformed(mk_san_cert(spiffe_subject, 1));
    expect_malformed(mk_cert(subj, 1, NULL, 0, 0));
}

static void test_bad_san_extensions(void **state)
{
    static const uint8_t undecodable[] = { 0x30, 0x07, 0x86, 0x09, 'a', ':', 'b' };
    static const uint8_t not_seq[] = { 0x04, 0x01, 0x00 };
    static const uint8_t longform[] = { 0x30, 0x07, 0x82, 0x81, 0x04, 'a', '.', 'b', 'c' };
    static const uint8_t empty[] = { 0x30, 0x00 };
    static const uint8_t trailing_extra[] = { 0x00 };
    static uint8_t v[128];
    struct sd_peer_cert *pc;
    size_t n;
    X509 *x;

    (void)state;
    /* Undecodable: logged with no SANs, never admitted. */
    x = mk_cert(spiffe_subject, 3, undecodable, sizeof(undecodable), 1);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->nsans, 0);
    assert_int_equal(pc->id.ncns, 1); /* the subject is still read, for the log */
    sd_peer_cert_unref(pc);
    X509_free(x);
    expect_malformed(mk_cert(spiffe_subject, 3, not_seq, sizeof(not_seq), 1));

    /* Present twice (even identical). */
    san_reset();
    san_adds(T_URI, "spiffe://td/a");
    n = san_value(v, sizeof(v), NULL, 0);
    expect_malformed(mk_cert(spiffe_subject, 3, v, n, 2));

    /* Non-DER: a long-form length; trailing bytes after the names. The
     * names that did decode are kept for the log. */
    x = mk_cert(spiffe_subject, 3, longform, sizeof(longform), 1);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->nsans, 1);
    sd_peer_cert_unref(pc);
    X509_free(x);
    n = san_value(v, sizeof(v), trailing_extra, sizeof(trailing_extra));
    x = mk_cert(spiffe_subject, 3, v, n, 1);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->id.nuris, 1);
    sd_peer_cert_unref(pc);
    X509_free(x);

    /* Empty. */
    expect_malformed(mk_cert(spiffe_subject, 3, empty, sizeof(empty), 1));
}

static void test_name_caps(void **state)
{
    char name[64];
    struct sd_peer_cert *pc;
    X509 *x;
    int i;

    (void)state;
    san_reset();
    for (i = 0; i < SD_PEER_MAX_NAMES; i++) {
        snprintf(name, sizeof(name), "h%d.example", i);
        san_adds(T_DNS, name);
    }
    for (i = 0; i < SD_PEER_MAX_NAMES; i++) {
        snprintf(name, sizeof(name), "https://u%d.example/", i);
        san_adds(T_URI, name);
    }
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    assert_int_equal(pc->flags & SD_PEER_MALFORMED, 0);
    assert_int_equal(pc->id.ndns, 64);
    assert_int_equal(pc->id.nuris, 64);
    assert_int_equal(pc->nsans, 128);
    sd_peer_cert_unref(pc);
    X509_free(x);

    san_adds(T_DNS, "one-more.example");
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->id.ndns, 64);
    assert_int_equal(pc->nsans, 129);
    assert_memory_equal(pc->sans[128].name.s, "one-more.example", 16);
    sd_peer_cert_unref(pc);
    X509_free(x);

    /* More SANs than are kept in order: rule names past it are still read
     * (and the log still says the list was cut). */
    san_reset();
    for (i = 0; i < 300; i++)
        san_adds(T_EMAIL, "a@b.c");
    san_adds(T_URI, "spiffe://td/late");
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    assert_int_equal(pc->flags, SD_PEER_SANS_CAPPED);
    assert_int_equal(pc->nsans, SD_PEER_MAX_SANS);
    assert_int_equal(pc->nemails, SD_PEER_MAX_SANS);
    assert_int_equal(pc->id.nuris, 1);
    assert_memory_equal(pc->id.uris[0].s, "spiffe://td/late", 16);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static void test_attr_caps_and_ambiguity(void **state)
{
    struct rdn cns[9], ous[9];
    struct sd_peer_cert *pc;
    X509 *x;
    int i;

    (void)state;
    for (i = 0; i < 9; i++) {
        cns[i] = (struct rdn){ "CN", "same", -1 };
        ous[i] = (struct rdn){ "OU", "team", -1 };
    }
    x = mk_cert(cns, 9, NULL, 0, 0);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_MALFORMED);
    assert_int_equal(pc->id.ncns, 8);
    sd_peer_cert_unref(pc);
    X509_free(x);
    expect_malformed(mk_cert(cns, 2, NULL, 0, 0)); /* two CNs */
    x = mk_cert(ous, 8, NULL, 0, 0);               /* 8 OUs: fine */
    pc = check_against_oracle(x);
    assert_int_equal(pc->flags, 0);
    assert_int_equal(pc->id.nous, 8);
    sd_peer_cert_unref(pc);
    X509_free(x);
    expect_malformed(mk_cert(ous, 9, NULL, 0, 0));

    san_reset();
    san_adds(T_URI, "spiffe://td/a");
    san_adds(T_URI, "SPIFFE://td/b");
    expect_malformed(mk_san_cert(spiffe_subject, 3)); /* two SPIFFE IDs */
}

static void test_huge_subject(void **state)
{
    static struct rdn rdns[3000];
    static const char v[] = "organisation-with-a-long-name";
    struct sd_peer_cert *pc;
    struct sd_logline l;
    struct sd_peer p;
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
    uint8_t out[16384];
    const char *rest;
    json_t *j;
    size_t i;
    X509 *x;

    (void)state;
    for (i = 0; i < 3000; i++)
        rdns[i] = (struct rdn){ "O", v, -1 };
    rdns[0] = (struct rdn){ "CN", "billing", -1 };
    x = mk_cert(rdns, 3000, NULL, 0, 0);
    pc = check_against_oracle(x);
    assert_int_equal(pc->flags, SD_PEER_TRUNCATED);
    assert_true(pc->subject.len <= SD_PEER_MAX_SUBJECT);
    assert_true(pc->subject.len > 60000);
    assert_int_equal(pc->id.ncns, 1);

    p = mk_peer(pc, -1, NULL, SD_RULE_ALL, 0);
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    sd_log_end(&l);
    rest = read_line(line, sizeof(line));
    assert_non_null(strstr(rest, "\"subject_truncated\":true"));
    assert_true(strlen(line) < SD_LOG_LINE_MAX);
    j = parse(line);
    assert_true(strlen(json_string_value(json_object_get(j, "subject"))) <= 768);
    json_decref(j);

    /* Too long to hand on, as before: the header is refused. */
    p = mk_peer(pc, 0, "all", SD_RULE_CN, 0);
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&a6, (struct sockaddr *)&a6, out,
                                       sizeof(out)),
                     -1);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

/* The line without its certificate digest and serial (checked against
 * OpenSSL's own by the oracle test): the golden lines below stay about the
 * names. Asserts both fields are there. */
static const char *strip_cert_ids(char *rest)
{
    char *a = strstr(rest, "\"cert_sha256\":\""), *b;

    assert_non_null(a);
    b = strstr(a, "\"cert_serial\":\"");
    assert_non_null(b);
    b = strchr(b + strlen("\"cert_serial\":\""), '"');
    assert_non_null(b);
    assert_int_equal(b[1], ',');
    memmove(a, b + 2, strlen(b + 2) + 1);
    return rest;
}

static void test_ip_and_email(void **state)
{
    static const uint8_t v4[4] = { 10, 0, 0, 1 };
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
    static const uint8_t odd[5] = { 1, 2, 3, 4, 5 };
    struct sd_peer_cert *pc;
    struct sd_logline l;
    struct sd_peer p;
    const char *rest;
    X509 *x;

    (void)state;
    san_reset();
    san_add(T_IP, v4, sizeof(v4));
    san_adds(T_EMAIL, "ops@example.org");
    san_add(T_IP, v6, sizeof(v6));
    san_add(T_IP, odd, sizeof(odd));
    san_adds(T_DNS, "api.internal");
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    assert_int_equal(pc->flags, 0);
    assert_int_equal(pc->nsans, 5);
    assert_int_equal(pc->nips, 3);
    assert_string_equal(pc->ips[0].s, "10.0.0.1");
    assert_string_equal(pc->ips[1].s, "2001:db8::1");
    assert_string_equal(pc->ips[2].s, "?");
    assert_int_equal(pc->nemails, 1);
    assert_string_equal(pc->emails[0].s, "ops@example.org");
    assert_int_equal(pc->sans[1].type, SD_SAN_EMAIL);
    assert_int_equal(pc->id.ndns, 1);

    p = mk_peer(pc, 0, "all", SD_RULE_CN, 0);
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    sd_log_end(&l);
    rest = strip_cert_ids((char *)read_line(line, sizeof(line)));
    assert_string_equal(rest, ",\"tls_version\":\"TLSv1.3\",\"cipher\":\"TLS_AES_128_GCM_SHA256\","
                              "\"resumed\":false,\"alpn\":\"h2\",\"rule\":\"all\",\"identity\":\"billing\","
                              "\"sni\":\"api.internal\","
                              "\"subject\":\"CN=billing,OU=payments,O=Example\","
                              "\"sans\":[\"IP:10.0.0.1\",\"email:ops@example.org\","
                              "\"IP:2001:db8::1\",\"IP:?\",\"DNS:api.internal\"]}\n");
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static void test_log_normal_and_truncated(void **state)
{
    X509 *x = mk_spiffe();
    struct sd_peer_cert *pc = from_x509(x);
    struct sd_logline l;
    struct sd_peer p;
    const char *rest;
    char big[700];
    int i;

    (void)state;
    p = mk_peer(pc, 2, "uri:spiffe://example.org/ns/*/sa/b", SD_RULE_URI, 0);
    p.resumed = 1;
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    sd_log_end(&l);
    rest = strip_cert_ids((char *)read_line(line, sizeof(line)));
    assert_string_equal(rest, ",\"tls_version\":\"TLSv1.3\",\"cipher\":\"TLS_AES_128_GCM_SHA256\","
                              "\"resumed\":true,\"alpn\":\"h2\",\"rule\":\"uri:spiffe://example.org/ns/*/sa/b\","
                              "\"identity\":\"spiffe://example.org/ns/a/sa/b\","
                              "\"sni\":\"api.internal\","
                              "\"subject\":\"CN=billing,OU=payments,O=Example\","
                              "\"sans\":[\"URI:spiffe://example.org/ns/a/sa/b\","
                              "\"DNS:api.internal\"]}\n");

    /* Before the handshake: nothing but the SNI. */
    memset(&p, 0, sizeof(p));
    p.rule = -1;
    p.sni = (struct sd_name){ "x", 1 };
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    sd_peer_log(NULL, &l);
    sd_log_end(&l);
    assert_string_equal(read_line(line, sizeof(line)), ",\"sni\":\"x\"}\n");
    sd_peer_cert_unref(pc);
    X509_free(x);

    /* Long names: each SAN cut at its bound, the list at its own. */
    memset(big, 'a', sizeof(big));
    san_reset();
    for (i = 0; i < 4; i++)
        san_add(T_DNS, big, sizeof(big) - (size_t)i);
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    p = mk_peer(pc, -1, NULL, SD_RULE_ALL, 0);
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    sd_log_end(&l);
    rest = read_line(line, sizeof(line));
    assert_non_null(strstr(rest, "\"sans_truncated\":true"));
    assert_null(strstr(rest, "\"rule\""));
    sd_peer_cert_unref(pc);
    X509_free(x);

    /* Many short SANs past the ordered cap: cut, and marked. */
    san_reset();
    for (i = 0; i < 400; i++)
        san_add(T_IP, "\1\2\3\4\5", 5);
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    assert_true(pc->flags & SD_PEER_SANS_CAPPED);
    p = mk_peer(pc, -1, NULL, SD_RULE_ALL, 0);
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    sd_log_end(&l);
    rest = read_line(line, sizeof(line));
    assert_non_null(strstr(rest, "\"sans_truncated\":true"));
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static const uint8_t *find_tlv(const uint8_t *p, const uint8_t *end, uint8_t t, size_t skip,
                               size_t *len)
{
    while (p + 3 <= end) {
        size_t l = (size_t)(p[1] << 8 | p[2]);
        assert_true(p + 3 + l <= end);
        if (p[0] == t && skip-- == 0) {
            *len = l;
            return p + 3;
        }
        p += 3 + l;
    }
    return NULL;
}

static void test_pp2_round_trip(void **state)
{
    X509 *x;
    struct sd_peer_cert *pc;
    struct sd_peer p;
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(8443) };
    uint8_t out[4096];
    const uint8_t *v, *end, *ssl;
    size_t len, ssl_len;
    long n;

    (void)state;
    san_reset();
    san_adds(T_DNS, "a.internal");
    san_adds(T_URI, "spiffe://example.org/ns/a/sa/b");
    san_adds(T_DNS, "b.internal");
    x = mk_san_cert(spiffe_subject, 3);
    pc = check_against_oracle(x);
    inet_pton(AF_INET, "10.1.2.3", &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    p = mk_peer(pc, 1, "dns:b.internal", SD_RULE_DNS, 1);
    n = sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                          sizeof(out));
    assert_true(n > 28);
    assert_int_equal((size_t)(out[14] << 8 | out[15]) + 16, (size_t)n);
    end = out + n;
    v = find_tlv(out + 28, end, SD_PP2_TYPE_ALPN, 0, &len);
    assert_non_null(v);
    assert_memory_equal(v, "h2", 2);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_AUTHORITY, 0, &len);
    assert_int_equal(len, 12);
    assert_memory_equal(v, "api.internal", 12);
    ssl = find_tlv(out + 28, end, SD_PP2_TYPE_SSL, 0, &ssl_len);
    assert_non_null(ssl);
    v = find_tlv(ssl + 5, ssl + ssl_len, SD_PP2_SUBTYPE_SSL_VERSION, 0, &len);
    assert_memory_equal(v, "TLSv1.3", len);
    v = find_tlv(ssl + 5, ssl + ssl_len, SD_PP2_SUBTYPE_SSL_CN, 0, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(v, "billing", 7);
    v = find_tlv(ssl + 5, ssl + ssl_len, SD_PP2_SUBTYPE_SSL_SIG_ALG, 0, &len);
    assert_memory_equal(v, "ecdsa-with-SHA256", len);
    v = find_tlv(ssl + 5, ssl + ssl_len, SD_PP2_SUBTYPE_SSL_KEY_ALG, 0, &len);
    assert_memory_equal(v, "EC", len);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_IDENTITY, 0, &len);
    assert_int_equal(len, 10);
    assert_memory_equal(v, "b.internal", 10); /* the name that matched, not the first */
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_RULE, 0, &len);
    assert_memory_equal(v, "dns:b.internal", len);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_URI, 0, &len);
    assert_memory_equal(v, "spiffe://example.org/ns/a/sa/b", len);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_DNS, 1, &len);
    assert_memory_equal(v, "b.internal", len);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_CERT_SHA256, 0, &len);
    assert_int_equal(len, 32);
    assert_memory_equal(v, pc->cert_sha256, 32);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_SUBJECT, 0, &len);
    assert_memory_equal(v, "CN=billing,OU=payments,O=Example", len);

    /* Too small a buffer, no peer, a malformed peer: refused. */
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, (size_t)n - 1),
                     -1);
    assert_int_equal(sd_pp2_build_peer(NULL, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, sizeof(out)),
                     -1);
    sd_peer_cert_unref(pc);
    X509_free(x);
    san_reset();
    san_adds(T_URI, "spiffe://td/a");
    san_adds(T_URI, "spiffe://td/b");
    x = mk_san_cert(spiffe_subject, 3);
    pc = from_x509(x);
    p = mk_peer(pc, 0, "all", SD_RULE_URI, 0);
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, sizeof(out)),
                     -1);
    sd_peer_cert_unref(pc);
    X509_free(x);
}

static void test_garbage_der(void **state)
{
    static const uint8_t junk[] = { 0x30, 0x82, 0xff, 0xff, 0x01 };
    X509 *x = mk_spiffe();
    unsigned char *der = NULL, *buf;
    int len = i2d_X509(x, &der);
    struct sd_peer_cert *pc;

    (void)state;
    assert_null(sd_peer_cert_from_der(NULL, 0));
    assert_null(sd_peer_cert_from_der(junk, 0));
    assert_null(sd_peer_cert_from_der(junk, sizeof(junk)));
    assert_null(sd_peer_cert_from_der((const uint8_t *)"hello", 5));
    assert_null(sd_peer_cert_from_der(der, (size_t)len - 1)); /* cut */
    buf = malloc((size_t)len + 1);
    memcpy(buf, der, (size_t)len);
    buf[len] = 0;
    assert_null(sd_peer_cert_from_der(buf, (size_t)len + 1)); /* bytes after it */
    pc = sd_peer_cert_from_der(buf, (size_t)len);
    assert_non_null(pc);
    sd_peer_cert_unref(pc);
    assert_int_equal(ERR_peek_error(), 0); /* nothing left on the queue */
    free(buf);
    OPENSSL_free(der);
    X509_free(x);
}

/* Writes the seed corpus of fuzz/fuzz_peer.c when asked (not a test). */
static void write_der(const char *dir, const char *name, X509 *x)
{
    char path[512];
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(der, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    OPENSSL_free(der);
    X509_free(x);
}

static void write_corpus(const char *dir)
{
    static const char uri[] = "spiffe://td/a\0.evil";
    static const uint8_t v4[4] = { 10, 0, 0, 1 };
    char name[64];
    int i;

    write_der(dir, "spiffe", mk_spiffe());
    san_reset();
    for (i = 0; i < 70; i++) {
        snprintf(name, sizeof(name), "h%d.example", i);
        san_adds(T_DNS, name);
    }
    write_der(dir, "many-sans", mk_san_cert(spiffe_subject, 3));
    san_reset();
    san_add(T_URI, uri, sizeof(uri) - 1);
    san_add(T_IP, v4, sizeof(v4));
    san_adds(T_EMAIL, "ops@example.org");
    write_der(dir, "nul-uri-ip-email", mk_san_cert(spiffe_subject, 3));
    san_reset();
    san_adds(T_URI, "spiffe://td/a");
    {
        static uint8_t v[64];
        size_t n = san_value(v, sizeof(v), NULL, 0);
        write_der(dir, "san-twice", mk_cert(spiffe_subject, 3, v, n, 2));
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_spiffe),
        cmocka_unit_test(test_rules_read_extraction),
        cmocka_unit_test(test_nul_in_names),
        cmocka_unit_test(test_control_byte),
        cmocka_unit_test(test_bad_san_extensions),
        cmocka_unit_test(test_name_caps),
        cmocka_unit_test(test_attr_caps_and_ambiguity),
        cmocka_unit_test(test_huge_subject),
        cmocka_unit_test(test_ip_and_email),
        cmocka_unit_test(test_log_normal_and_truncated),
        cmocka_unit_test(test_pp2_round_trip),
        cmocka_unit_test(test_garbage_der),
    };
    int rc;

    key = EVP_EC_gen("P-256");
    if (key == NULL)
        return 1;
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        write_corpus(argv[2]);
        EVP_PKEY_free(key);
        return 0;
    }
    rc = cmocka_run_group_tests(tests, setup, teardown);
    EVP_PKEY_free(key);
    return rc;
}
