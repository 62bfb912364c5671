/* Unit tests for http/resp.c: every framing case, every refusal, input
 * that arrives a byte at a time, and every input placed right before an
 * unreadable page so that reading one byte too far crashes the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/http_resp.h"

/* Two pages: the second is PROT_NONE, and the input is copied to end
 * exactly where it starts. Inputs longer than a page get a larger map. */
static char *guard_map;
static size_t guard_len;

static const char *guarded(const char *s, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (n + page - 1) / page * page;

    if (data == 0)
        data = page;
    if (guard_map)
        munmap(guard_map, guard_len);
    guard_len = data + page;
    guard_map = mmap(NULL, guard_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(guard_map != MAP_FAILED);
    assert_int_equal(mprotect(guard_map + data, page, PROT_NONE), 0);
    char *p = guard_map + data - n;
    if (n)
        memcpy(p, s, n);
    return p;
}

static struct sd_http_resp_field fields[SD_HTTP_RESP_MAX_FIELDS];

static long parse_n(const char *s, size_t n, enum sd_http_resp_req req, struct sd_http_resp *r)
{
    return sd_http_resp_parse(guarded(s, n), n, req, r, fields, SD_HTTP_RESP_MAX_FIELDS);
}

static long parse(const char *s, enum sd_http_resp_req req, struct sd_http_resp *r)
{
    return parse_n(s, strlen(s), req, r);
}

/* Accepted with framing f; returns the content length. */
static uint64_t expect_ok(const char *s, enum sd_http_resp_req req, enum sd_http_resp_framing f,
                          int keep_alive)
{
    struct sd_http_resp r;
    long n = parse(s, req, &r);

    if (n != (long)strlen(s) || r.framing != f || r.keep_alive != keep_alive)
        fprintf(stderr, "input %s: n=%ld framing=%s ka=%d err=%s\n", s, n,
                sd_http_resp_framing_str(r.framing), r.keep_alive, sd_http_resp_err_str(r.err));
    assert_int_equal(n, (long)strlen(s));
    assert_int_equal(r.framing, f);
    assert_int_equal(r.keep_alive, keep_alive);
    return r.content_length;
}

static void expect_err(const char *s, size_t n, enum sd_http_resp_err e)
{
    struct sd_http_resp r;
    long got = parse_n(s, n, SD_HTTP_RESP_REQ_OTHER, &r);

    if (got != SD_HTTP_RESP_ERROR || r.err != e)
        fprintf(stderr, "input %.*s: got %ld err=%s, want %s\n", (int)n, s, got,
                sd_http_resp_err_str(r.err), sd_http_resp_err_str(e));
    assert_int_equal(got, SD_HTTP_RESP_ERROR);
    assert_int_equal(r.err, e);
}
#define EXPECT_ERR(lit, e) expect_err(lit, sizeof(lit) - 1, e)

static void test_fields_and_status(void **state)
{
    const char *s = "HTTP/1.1 404 Not Found\r\nServer: x\r\nX-Empty:\r\n"
                    "X-Ows: \t a b \t\r\n\r\nBODY";
    struct sd_http_resp r;
    long n;

    (void)state;
    n = parse(s, SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(n, (long)(strlen(s) - 4));
    assert_int_equal(r.minor, 1);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.reason.len, 9);
    assert_memory_equal(r.reason.s, "Not Found", 9);
    assert_int_equal(r.nfields, 3);
    assert_int_equal(fields[0].name.len, 6);
    assert_memory_equal(fields[0].name.s, "Server", 6);
    assert_int_equal(fields[1].value.len, 0);
    assert_int_equal(fields[2].value.len, 3);
    assert_memory_equal(fields[2].value.s, "a b", 3);
    /* Empty reason, with and without its SP; obs-text and HTAB in it. */
    expect_ok("HTTP/1.1 200 \r\n\r\n", SD_HTTP_RESP_REQ_OTHER, SD_HTTP_RESP_BODY_CLOSE, 0);
    n = parse("HTTP/1.0 200\r\n\r\n", SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(n, 16);
    assert_int_equal(r.reason.len, 0);
    assert_int_equal(r.minor, 0);
    n = parse("HTTP/1.1 599 \xc3\xa9\tok\r\n\r\n", SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(n, 22);
    assert_int_equal(r.reason.len, 5);
    assert_string_equal(sd_http_resp_err_str(SD_HTTP_RESP_E_SPACE_COLON), "http_resp_space_before_colon");
    assert_string_equal(sd_http_resp_err_str(SD_HTTP_RESP_E_NONE), "none");
    for (int e = 0; e < SD_HTTP_RESP_E_COUNT; e++)
        assert_string_not_equal(sd_http_resp_err_str((enum sd_http_resp_err)e), "unknown");
}

static void test_framing(void **state)
{
    const enum sd_http_resp_req O = SD_HTTP_RESP_REQ_OTHER, H = SD_HTTP_RESP_REQ_HEAD,
                                C = SD_HTTP_RESP_REQ_CONNECT;
    struct sd_http_resp r;

    (void)state;
    assert_int_equal(expect_ok("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", O,
                               SD_HTTP_RESP_BODY_LENGTH, 1), 42);
    assert_int_equal(expect_ok("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", O,
                               SD_HTTP_RESP_BODY_LENGTH, 1), 0);
    assert_int_equal(expect_ok("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n",
                               O, SD_HTTP_RESP_BODY_LENGTH, 1), INT64_MAX);
    expect_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", O,
              SD_HTTP_RESP_BODY_CHUNKED, 1);
    expect_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n", O,
              SD_HTTP_RESP_BODY_CHUNKED, 1);
    expect_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
              O, SD_HTTP_RESP_BODY_CHUNKED, 1);
    /* TE + CL: chunked wins, flagged, the connection is not reused. */
    parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", O, &r);
    assert_int_equal(r.framing, SD_HTTP_RESP_BODY_CHUNKED);
    assert_int_equal(r.flags, SD_HTTP_RESP_F_TE_AND_CL);
    assert_int_equal(r.keep_alive, 0);
    /* TE without final chunked: until close (RFC 9112 6.3 item 4). */
    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", O, &r);
    assert_int_equal(r.framing, SD_HTTP_RESP_BODY_CLOSE);
    assert_int_equal(r.flags, SD_HTTP_RESP_F_TE_OTHER);
    expect_ok("HTTP/1.1 200 OK\r\n\r\n", O, SD_HTTP_RESP_BODY_CLOSE, 0);
    /* No body: 204, 304, HEAD, whatever the fields say. */
    expect_ok("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", O, SD_HTTP_RESP_BODY_NONE, 1);
    expect_ok("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", O,
              SD_HTTP_RESP_BODY_NONE, 1);
    expect_ok("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", H, SD_HTTP_RESP_BODY_NONE, 1);
    expect_ok("HTTP/1.1 200 OK\r\n\r\n", H, SD_HTTP_RESP_BODY_NONE, 1);
    /* 1xx: interim, 101: tunnel; CONNECT 2xx: tunnel, CONNECT 4xx: not. */
    expect_ok("HTTP/1.1 100 Continue\r\n\r\n", O, SD_HTTP_RESP_BODY_INTERIM, 1);
    expect_ok("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", H, SD_HTTP_RESP_BODY_INTERIM, 1);
    expect_ok("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\n\r\n", O, SD_HTTP_RESP_BODY_TUNNEL, 0);
    expect_ok("HTTP/1.1 200 Connection established\r\n\r\n", C, SD_HTTP_RESP_BODY_TUNNEL, 0);
    expect_ok("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", C, SD_HTTP_RESP_BODY_LENGTH, 1);
    expect_ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", O, SD_HTTP_RESP_BODY_LENGTH, 1);
}

static void test_keep_alive(void **state)
{
    const enum sd_http_resp_req O = SD_HTTP_RESP_REQ_OTHER;

    (void)state;
    expect_ok("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", O,
              SD_HTTP_RESP_BODY_LENGTH, 0);
    expect_ok("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: x, CLOSE\r\n\r\n", O,
              SD_HTTP_RESP_BODY_LENGTH, 0);
    expect_ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", O, SD_HTTP_RESP_BODY_LENGTH, 0);
    expect_ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n", O,
              SD_HTTP_RESP_BODY_LENGTH, 1);
    expect_ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", O, SD_HTTP_RESP_BODY_CLOSE, 0);
    expect_ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive, close\r\n\r\n",
              O, SD_HTTP_RESP_BODY_LENGTH, 0);
    expect_ok("HTTP/1.9 200 OK\r\nContent-Length: 1\r\n\r\n", O, SD_HTTP_RESP_BODY_LENGTH, 1);
}

static void test_refusals(void **state)
{
    (void)state;
    EXPECT_ERR("HTTP/2.0 200 OK\r\n\r\n", SD_HTTP_RESP_E_VERSION);
    EXPECT_ERR("HTTP/1.x 200 OK\r\n\r\n", SD_HTTP_RESP_E_VERSION);
    EXPECT_ERR("http/1.1 200 OK\r\n\r\n", SD_HTTP_RESP_E_VERSION);
    EXPECT_ERR("HTTP/1.1  200 OK\r\n\r\n", SD_HTTP_RESP_E_STATUS);
    EXPECT_ERR("HTTP/1.10 200 OK\r\n\r\n", SD_HTTP_RESP_E_VERSION);
    EXPECT_ERR("HTTP/1.1 20 OK\r\n\r\n", SD_HTTP_RESP_E_STATUS);
    EXPECT_ERR("HTTP/1.1 2000 OK\r\n\r\n", SD_HTTP_RESP_E_STATUS);
    EXPECT_ERR("HTTP/1.1 099 OK\r\n\r\n", SD_HTTP_RESP_E_STATUS);
    EXPECT_ERR("HTTP/1.1 600 OK\r\n\r\n", SD_HTTP_RESP_E_STATUS);
    EXPECT_ERR("HTTP/1.1 200 O\x01K\r\n\r\n", SD_HTTP_RESP_E_REASON);
    EXPECT_ERR("HTTP/1.1 200 O\x7fK\r\n\r\n", SD_HTTP_RESP_E_REASON);
    EXPECT_ERR("HTTP/1.1 200 O\0K\r\n\r\n", SD_HTTP_RESP_E_REASON);
    EXPECT_ERR("HTTP/1.1 200 O\rK\r\n\r\n", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200 OK\n\r\n", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200\n\r\n", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\n\r\n", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\r\n\n", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\r\n\rX", SD_HTTP_RESP_E_LINE_END);
    EXPECT_ERR("HTTP/1.1 200 OK\r\n: b\r\n\r\n", SD_HTTP_RESP_E_FIELD_NAME);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA(b: c\r\n\r\n", SD_HTTP_RESP_E_FIELD_NAME);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", SD_HTTP_RESP_E_FIELD_NAME);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA\0B: c\r\n\r\n", SD_HTTP_RESP_E_FIELD_NAME);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", SD_HTTP_RESP_E_SPACE_COLON);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length\t: 5\r\n\r\n", SD_HTTP_RESP_E_SPACE_COLON);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", SD_HTTP_RESP_E_OBS_FOLD);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n", SD_HTTP_RESP_E_OBS_FOLD);
    EXPECT_ERR("HTTP/1.1 200 OK\r\n Transfer-Encoding: chunked\r\n\r\n", SD_HTTP_RESP_E_OBS_FOLD);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", SD_HTTP_RESP_E_FIELD_VALUE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: b\x0b\r\n\r\n", SD_HTTP_RESP_E_FIELD_VALUE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nA: \x7f\r\n\r\n", SD_HTTP_RESP_E_FIELD_VALUE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
               SD_HTTP_RESP_E_CL_REPEATED);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
               SD_HTTP_RESP_E_CL_REPEATED);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
               SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
               SD_HTTP_RESP_E_CL);
    /* A malformed CL is refused even where it would not count (204). */
    EXPECT_ERR("HTTP/1.1 204 OK\r\nContent-Length: x\r\n\r\n", SD_HTTP_RESP_E_CL);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
               SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
               SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chun ked\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: , ,\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked,\r\n\r\n", SD_HTTP_RESP_E_TE);
    EXPECT_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n", SD_HTTP_RESP_E_TE);
}

static void test_limits(void **state)
{
    static char big[SD_HTTP_RESP_MAX_HEAD + 64];
    struct sd_http_resp r;
    size_t n, k;
    long got;

    (void)state;
    /* 100 fields fit; the 101st does not; a smaller caller array wins. */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n");
    for (k = 0; k < SD_HTTP_RESP_MAX_FIELDS; k++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "F%zu: v\r\n", k);
    memcpy(big + n, "\r\n", 2);
    got = parse_n(big, n + 2, SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(got, (long)(n + 2));
    assert_int_equal(r.nfields, SD_HTTP_RESP_MAX_FIELDS);
    got = sd_http_resp_parse(guarded(big, n + 2), n + 2, SD_HTTP_RESP_REQ_OTHER, &r, fields, 3);
    assert_int_equal(got, SD_HTTP_RESP_ERROR);
    assert_int_equal(r.err, SD_HTTP_RESP_E_TOO_MANY);
    memcpy(big + n, "G: v\r\n\r\n", 8);
    expect_err(big, n + 8, SD_HTTP_RESP_E_TOO_MANY);

    /* A head of exactly SD_HTTP_RESP_MAX_HEAD bytes passes, one more fails,
     * and a long prefix without its end is refused at the cap. */
    const char *pre = "HTTP/1.1 200 OK\r\nX: ";
    size_t plen = strlen(pre);
    memset(big, 'a', sizeof(big));
    memcpy(big, pre, plen);
    memcpy(big + SD_HTTP_RESP_MAX_HEAD - 4, "\r\n\r\n", 4);
    got = parse_n(big, SD_HTTP_RESP_MAX_HEAD, SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(got, SD_HTTP_RESP_MAX_HEAD);
    got = parse_n(big, sizeof(big), SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(got, SD_HTTP_RESP_MAX_HEAD);
    memset(big + SD_HTTP_RESP_MAX_HEAD - 4, 'a', 4);
    memcpy(big + SD_HTTP_RESP_MAX_HEAD - 3, "\r\n\r\n", 4);
    expect_err(big, sizeof(big), SD_HTTP_RESP_E_HEAD_TOO_LARGE);
    got = parse_n(big, SD_HTTP_RESP_MAX_HEAD - 1, SD_HTTP_RESP_REQ_OTHER, &r);
    assert_int_equal(got, SD_HTTP_RESP_INCOMPLETE);
    memset(big + plen, 'a', sizeof(big) - plen);
    expect_err(big, SD_HTTP_RESP_MAX_HEAD, SD_HTTP_RESP_E_HEAD_TOO_LARGE);
}

/* Every prefix of an accepted head is INCOMPLETE, every prefix of a refused
 * one INCOMPLETE or the same error, and bytes after the head change
 * nothing. Each parse reads from the guarded page's edge. */
static void test_every_split(void **state)
{
    static const char *const ok[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nX: \t y \r\n\r\n",
        "HTTP/1.0 304 \r\nConnection: keep-alive\r\n\r\n",
        "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 200\r\nTransfer-Encoding: gzip,chunked\r\nContent-Length: 1\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
    };
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, x\r\n\r\n",
    };
    struct sd_http_resp r, full;
    char tmp[256];

    (void)state;
    for (size_t t = 0; t < sizeof(ok) / sizeof(ok[0]); t++) {
        size_t n = strlen(ok[t]);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(parse_n(ok[t], k, SD_HTTP_RESP_REQ_OTHER, &r), SD_HTTP_RESP_INCOMPLETE);
        assert_int_equal(parse_n(ok[t], n, SD_HTTP_RESP_REQ_OTHER, &full), (long)n);
        memcpy(tmp, ok[t], n);
        memcpy(tmp + n, "HTTP/1.1 200 OK\r\n\r\n", 19);
        assert_int_equal(parse_n(tmp, n + 19, SD_HTTP_RESP_REQ_OTHER, &r), (long)n);
        assert_int_equal(r.framing, full.framing);
        assert_int_equal(r.nfields, full.nfields);
    }
    for (size_t t = 0; t < sizeof(bad) / sizeof(bad[0]); t++) {
        size_t n = strlen(bad[t]);
        assert_int_equal(parse_n(bad[t], n, SD_HTTP_RESP_REQ_OTHER, &full), SD_HTTP_RESP_ERROR);
        for (size_t k = 0; k < n; k++) {
            long got = parse_n(bad[t], k, SD_HTTP_RESP_REQ_OTHER, &r);
            assert_true(got == SD_HTTP_RESP_INCOMPLETE ||
                        (got == SD_HTTP_RESP_ERROR && r.err == full.err));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_and_status),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_every_split),
    };
    int rc = cmocka_run_group_tests_name("http_resp", tests, NULL, NULL);
    if (guard_map)
        munmap(guard_map, guard_len);
    return rc;
}
