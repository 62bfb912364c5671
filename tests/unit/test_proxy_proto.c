/* Unit tests for proxy_proto.c: header layout, TLV lengths, and that a
 * header which does not fit is refused rather than cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "sd/peer.h"
#include "sd/proxy_proto.h"

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Finds TLV type t in [p, end); returns its value and sets *len, or NULL. */
static const uint8_t *find_tlv(const uint8_t *p, const uint8_t *end, uint8_t t, size_t *len)
{
    while (p + 3 <= end) {
        size_t l = be16(p + 1);
        assert_true(p + 3 + l <= end);
        if (p[0] == t) {
            *len = l;
            return p + 3;
        }
        p += 3 + l;
    }
    return NULL;
}

static void test_v4_layout(void **state)
{
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(8443) };
    struct sd_name uris[2] = { { "spiffe://td/a", 13 }, { "spiffe://td/b", 13 } };
    uint8_t sha[32], out[1024];
    struct sd_pp2_info in;
    const uint8_t *v, *end;
    size_t len;
    long n;

    (void)state;
    memset(sha, 0xAB, sizeof(sha));
    inet_pton(AF_INET, "10.1.2.3", &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    memset(&in, 0, sizeof(in));
    in.src = (struct sockaddr *)&src;
    in.dst = (struct sockaddr *)&dst;
    in.authority = (struct sd_name){ "api.internal", 12 };
    in.version = "TLSv1.3";
    in.cipher = "TLS_AES_128_GCM_SHA256";
    in.cn = (struct sd_name){ "billing", 7 };
    in.uris = uris;
    in.nuris = 2;
    in.cert_sha256 = sha;
    in.subject = (struct sd_name){ "CN=billing", 10 };
    n = sd_pp2_build(&in, out, sizeof(out));
    assert_true(n > 28);
    assert_memory_equal(out, "\r\n\r\n\0\r\nQUIT\n", 12);
    assert_int_equal(out[12], 0x21);
    assert_int_equal(out[13], 0x11);
    assert_int_equal(be16(out + 14), n - 16);
    assert_memory_equal(out + 16, &src.sin_addr, 4);
    assert_memory_equal(out + 20, &dst.sin_addr, 4);
    assert_int_equal(be16(out + 24), 40000);
    assert_int_equal(be16(out + 26), 8443);
    end = out + n;
    v = find_tlv(out + 28, end, SD_PP2_TYPE_AUTHORITY, &len);
    assert_non_null(v);
    assert_int_equal(len, 12);
    assert_memory_equal(v, "api.internal", 12);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SSL, &len);
    assert_non_null(v);
    assert_int_equal(v[0], 0x07);
    assert_memory_equal(v + 1, "\0\0\0\0", 4);
    {
        size_t sl;
        const uint8_t *sv = find_tlv(v + 5, v + len, SD_PP2_SUBTYPE_SSL_CN, &sl);
        assert_non_null(sv);
        assert_int_equal(sl, 7);
        assert_memory_equal(sv, "billing", 7);
        sv = find_tlv(v + 5, v + len, SD_PP2_SUBTYPE_SSL_VERSION, &sl);
        assert_non_null(sv);
        assert_memory_equal(sv, "TLSv1.3", 7);
    }
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_CERT_SHA256, &len);
    assert_non_null(v);
    assert_int_equal(len, 32);
    assert_memory_equal(v, sha, 32);
    assert_null(find_tlv(out + 28, end, SD_PP2_TYPE_ALPN, &len)); /* absent, not empty */
}

static void test_v6_and_limits(void **state)
{
    struct sockaddr_in6 src = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
    struct sockaddr_in6 dst = { .sin6_family = AF_INET6, .sin6_port = htons(2) };
    struct sockaddr_in v4 = { .sin_family = AF_INET };
    static char big[70000];
    uint8_t out[256];
    struct sd_pp2_info in;
    long n;
    size_t cap;

    (void)state;
    memset(&in, 0, sizeof(in));
    in.src = (struct sockaddr *)&src;
    in.dst = (struct sockaddr *)&dst;
    n = sd_pp2_build(&in, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal(out[13], 0x21);
    assert_int_equal(be16(out + 14), n - 16);
    /* every capacity below the real size fails; none writes past cap */
    for (cap = 0; cap < (size_t)n; cap++) {
        memset(out, 0xEE, sizeof(out));
        assert_int_equal(sd_pp2_build(&in, out, cap), -1);
        assert_int_equal(out[cap], 0xEE);
    }
    /* mixed families are refused */
    in.dst = (struct sockaddr *)&v4;
    assert_int_equal(sd_pp2_build(&in, out, sizeof(out)), -1);
    /* a value longer than a TLV can carry is refused, not truncated */
    in.dst = (struct sockaddr *)&dst;
    memset(big, 'a', sizeof(big));
    in.subject = (struct sd_name){ big, sizeof(big) };
    {
        static uint8_t huge[80000];
        assert_int_equal(sd_pp2_build(&in, huge, sizeof(huge)), -1);
    }
}

/* The header from a verified peer (sd/peer.h), built here by hand: no
 * OpenSSL is needed to hand an identity on. */
static void test_from_peer(void **state)
{
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(8443) };
    struct sd_name uris[1] = { { "spiffe://td/a", 13 } };
    struct sd_name cns[1] = { { "billing", 7 } };
    struct sd_peer_cert pc;
    struct sd_peer p;
    uint8_t out[1024];
    const uint8_t *v, *end;
    size_t len;
    long n;

    (void)state;
    memset(&pc, 0, sizeof(pc));
    pc.refs = 1;
    pc.id.uris = uris;
    pc.id.nuris = 1;
    pc.id.cns = cns;
    pc.id.ncns = 1;
    pc.subject = (struct sd_name){ "CN=billing", 10 };
    pc.sig_alg = "ecdsa-with-SHA256";
    pc.key_alg = "EC";
    memset(pc.cert_sha256, 0xAB, 32);
    memset(&p, 0, sizeof(p));
    p.cert = &pc;
    p.tls_version = "TLSv1.3";
    p.cipher = "TLS_AES_128_GCM_SHA256";
    p.sni = (struct sd_name){ "api.internal", 12 };
    p.authority = p.sni;
    p.rule = 3;
    p.rule_text = "uri:spiffe://td/*";
    p.hit = (struct sd_policy_hit){ 3, SD_RULE_URI, 0 };
    n = sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                          sizeof(out));
    assert_true(n > 28);
    end = out + n;
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_IDENTITY, &len);
    assert_non_null(v);
    assert_int_equal(len, 13);
    assert_memory_equal(v, "spiffe://td/a", 13);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_RULE, &len);
    assert_non_null(v);
    assert_memory_equal(v, "uri:spiffe://td/*", len);
    v = find_tlv(out + 28, end, SD_PP2_TYPE_SD_SUBJECT, &len);
    assert_non_null(v);
    assert_memory_equal(v, "CN=billing", len);
    assert_null(find_tlv(out + 28, end, SD_PP2_TYPE_ALPN, &len));

    /* Not admitted: no identity, no rule. */
    p.rule = -1;
    n = sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                          sizeof(out));
    assert_true(n > 28);
    assert_null(find_tlv(out + 28, out + n, SD_PP2_TYPE_SD_IDENTITY, &len));
    assert_null(find_tlv(out + 28, out + n, SD_PP2_TYPE_SD_RULE, &len));
    /* Never handed on: malformed, a cut subject, none, no peer. */
    pc.flags = SD_PEER_MALFORMED;
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, sizeof(out)), -1);
    pc.flags = SD_PEER_TRUNCATED;
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, sizeof(out)), -1);
    pc.flags = 0;
    pc.subject.s = NULL;
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, sizeof(out)), -1);
    p.cert = NULL;
    assert_int_equal(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       out, sizeof(out)), -1);
    assert_int_equal(sd_pp2_build_peer(NULL, (struct sockaddr *)&src,
                                       (struct sockaddr *)&dst, out, sizeof(out)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_layout),
        cmocka_unit_test(test_v6_and_limits),
        cmocka_unit_test(test_from_peer),
    };
    return cmocka_run_group_tests_name("proxy_proto", tests, NULL, NULL);
}
