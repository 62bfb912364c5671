/* Unit tests for http/req.c: the strict request-head parser, the chunked
 * decoder and the loose name comparison.
 *
 * Every input is placed just before an unreadable page (picohttpparser's
 * trick), so a read past the bytes given is a crash, not a silent pass.
 * Every input is also parsed at every prefix: a valid head must give
 * SD_HTTP_INCOMPLETE on each prefix, a refused one INCOMPLETE or the same
 * refusal (a verdict never changes as bytes arrive). */
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

#include "sd/http_req.h"

#define GUARD_DATA (64u * 1024u)

static char *guard_base; /* GUARD_DATA readable bytes, then a PROT_NONE page */
static struct sd_http_field fields[SD_HTTP_MAX_FIELDS];

static int setup(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, GUARD_DATA + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

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

/* Copies s[0, n) so that it ends right at the unreadable page; returns it. */
static const char *guarded(const char *s, size_t n)
{
    assert_true(n <= GUARD_DATA);
    char *p = guard_base + GUARD_DATA - n;
    memmove(p, s, n);
    return p;
}

static long gparse(const char *s, size_t n, struct sd_http_req *req, size_t maxf)
{
    return sd_http_req_parse(guarded(s, n), n, req, fields, maxf);
}

/* Parses s (whole and at each prefix); expects a complete head of
 * head_len bytes (strlen(s) when 0). Leaves the full parse in *req, its
 * names pointing into the guard area. */
static void expect_ok_n(const char *s, size_t n, size_t head_len, struct sd_http_req *req)
{
    if (head_len == 0)
        head_len = n;
    for (size_t k = 0; k < head_len; k++) {
        long r = gparse(s, k, req, SD_HTTP_MAX_FIELDS);
        if (r != SD_HTTP_INCOMPLETE)
            fail_msg("prefix %zu of %.40s...: %ld (%s)", k, s, r, sd_http_err_word(req->err));
    }
    long r = gparse(s, n, req, SD_HTTP_MAX_FIELDS);
    if (r != (long)head_len)
        fail_msg("%.60s: %ld (%s), want %zu", s, r, sd_http_err_word(req->err), head_len);
    assert_int_equal(req->err, SD_HTTP_OK);
}

static void expect_ok(const char *s, struct sd_http_req *req)
{
    expect_ok_n(s, strlen(s), 0, req);
}

/* Expects s[0, n) to be refused with e (and status / word); each prefix
 * must give INCOMPLETE or the same refusal. */
static void expect_err_n(const char *s, size_t n, enum sd_http_err e, int status, const char *word,
                         int prefixes)
{
    struct sd_http_req req;

    for (size_t k = 0; prefixes && k < n; k++) {
        long r = gparse(s, k, &req, SD_HTTP_MAX_FIELDS);
        if (r != SD_HTTP_INCOMPLETE && !(r == SD_HTTP_ERROR && req.err == e))
            fail_msg("prefix %zu of %.60s: %ld (%s)", k, s, r, sd_http_err_word(req.err));
    }
    long r = gparse(s, n, &req, SD_HTTP_MAX_FIELDS);
    if (r != SD_HTTP_ERROR || req.err != e)
        fail_msg("%.80s: %ld (%s), want %s", s, r, sd_http_err_word(req.err), word);
    assert_int_equal(sd_http_err_status(e), status);
    assert_string_equal(sd_http_err_word(e), word);
}

static void expect_err(const char *s, enum sd_http_err e, int status, const char *word)
{
    expect_err_n(s, strlen(s), e, status, word, 1);
}

static void assert_name(struct sd_name n, const char *want)
{
    if (n.len != strlen(want) || memcmp(n.s, want, n.len) != 0)
        fail_msg("got '%.*s', want '%s'", (int)n.len, n.s, want);
}

/* ---- valid requests ---- */

static void test_target_forms(void **state)
{
    struct sd_http_req req;

    (void)state;
    expect_ok("GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: example.com\r\n\r\n", &req);
    assert_name(req.method, "GET");
    assert_name(req.target, "/a/b?c=d&e=%20");
    assert_int_equal(req.form, SD_HTTP_TARGET_ORIGIN);
    assert_int_equal(req.minor, 1);
    assert_int_equal(req.nfields, 1);
    assert_name(req.fields[0].name, "Host");
    assert_name(req.fields[0].value, "example.com");
    assert_true(req.has_host);
    assert_name(req.host, "example.com");
    assert_int_equal(req.framing, SD_HTTP_BODY_NONE);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.upgrade);

    expect_ok("GET http://example.com:8080/x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_ABSOLUTE);
    expect_ok("GET HTTPS://[::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_ABSOLUTE);
    expect_ok("GET https://a.b?q HTTP/1.1\r\nHost: a.b\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_ABSOLUTE);
    expect_ok("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_AUTHORITY);
    assert_name(req.target, "db.internal:5432");
    expect_ok("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_AUTHORITY);
    expect_ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_ASTERISK);
    expect_ok("OPTIONS /x HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_ORIGIN);
    /* Any token is a method; case matters to HTTP, not to the parser. */
    expect_ok("M-SEARCH! /~x|{} HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_name(req.method, "M-SEARCH!");
    /* An empty Host is valid syntax (RFC 9110 section 7.2). */
    expect_ok("GET / HTTP/1.1\r\nHost:\r\n\r\n", &req);
    assert_true(req.has_host);
    assert_int_equal(req.host.len, 0);
}

static void test_fields(void **state)
{
    struct sd_http_req req;
    static const char in[] = "POST /up HTTP/1.1\r\n"
                             "Host: h\r\n"
                             "X-Empty:\r\n"
                             "X-Ws: \t a \t b\t \r\n"
                             "X-Utf8: caf\xc3\xa9\r\n"
                             "X!#$%&'*+-.^_`|~0: v\r\n"
                             "\r\n"
                             "body";

    (void)state;
    expect_ok_n(in, sizeof(in) - 1, sizeof(in) - 1 - 4, &req);
    assert_int_equal(req.nfields, 5);
    assert_name(req.fields[1].name, "X-Empty");
    assert_name(req.fields[1].value, "");
    assert_name(req.fields[2].value, "a \t b");
    assert_name(req.fields[3].value, "caf\xc3\xa9");
    assert_name(req.fields[4].name, "X!#$%&'*+-.^_`|~0");
    assert_true(req.fields == fields);
}

static void test_http10_and_keep_alive(void **state)
{
    struct sd_http_req req;

    (void)state;
    expect_ok("GET / HTTP/1.0\r\n\r\n", &req);
    assert_int_equal(req.minor, 0);
    assert_false(req.has_host);
    assert_false(req.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req);
    assert_true(req.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", &req);
    assert_true(req.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", &req);
    assert_false(req.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 3);
    assert_true(req.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_true(req.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n", &req);
    assert_false(req.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade,  close \r\n\r\n", &req);
    assert_false(req.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n", &req);
    assert_true(req.keep_alive);
}

static void test_framing_and_flags(void **state)
{
    struct sd_http_req req;

    (void)state;
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 0);
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  123 \r\n\r\n", &req);
    assert_int_equal(req.content_length, 123);
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n", &req);
    assert_int_equal(req.content_length, 999999999999999999ull);
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0007\r\n\r\n", &req);
    assert_int_equal(req.content_length, 7);
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_CHUNKED);
    /* Token comparison is case-insensitive: these are plain chunked. */
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: CHUNKED\r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_CHUNKED);
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING:   Chunked  \r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_CHUNKED);
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", &req);
    assert_true(req.expect_continue);
    expect_ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", &req);
    assert_false(req.expect_continue);
    expect_ok("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", &req);
    assert_true(req.upgrade);
    assert_true(req.keep_alive);
    /* Look-alike names are ordinary fields, not framing. */
    expect_ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length2: 5\r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_NONE);
}

static void test_leading_empty_lines(void **state)
{
    struct sd_http_req req;

    (void)state;
    expect_ok("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_name(req.method, "GET");
    expect_ok("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    expect_err("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_EMPTY_LINES, 400,
               "http_leading_empty_lines");
    expect_err("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf");
    expect_err("\r\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_BARE_CR, 400, "http_bare_cr");
}

static void test_pipelined(void **state)
{
    static const char in[] = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                             "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /c HTTP/1.0\r\n\r\n";
    size_t n = sizeof(in) - 1, off = 0;
    const char *g = guarded(in, n);
    struct sd_http_req req;
    const char *want[] = { "/a", "/b", "/c" };

    (void)state;
    for (int i = 0; i < 3; i++) {
        long r = sd_http_req_parse(g + off, n - off, &req, fields, SD_HTTP_MAX_FIELDS);
        assert_true(r > 0);
        assert_name(req.target, want[i]);
        off += (size_t)r;
        if (req.framing == SD_HTTP_BODY_LENGTH)
            off += req.content_length;
    }
    assert_int_equal(off, n);
    /* Nothing given (even no buffer): need more. */
    assert_int_equal(sd_http_req_parse(NULL, 0, &req, NULL, 0), SD_HTTP_INCOMPLETE);
    /* Nothing left: a fourth parse needs more. */
    assert_int_equal(sd_http_req_parse(g + off, 0, &req, fields, SD_HTTP_MAX_FIELDS), SD_HTTP_INCOMPLETE);
}

/* ---- refusals ---- */

struct bad {
    const char *in;
    size_t n; /* sizeof - 1: NUL bytes inside count */
    enum sd_http_err err;
    int status;
    const char *word;
};

#define H11 " HTTP/1.1\r\nHost: x\r\n"
#define R11 " / HTTP/1.1\r\nHost: x\r\n"
#define B(in, e, st, w) { in, sizeof(in) - 1, e, st, w }

static const struct bad bad_requests[] = {
    /* request line */
    B("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_REQUEST_LINE, 400, "http_bad_request_line"),
    B(" GET / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_REQUEST_LINE, 400, "http_bad_request_line"),
    B("GET /\r\n\r\n", SD_HTTP_E_REQUEST_LINE, 400, "http_bad_request_line"),
    B("GET\r\n\r\n", SD_HTTP_E_REQUEST_LINE, 400, "http_bad_request_line"),
    B("GET / HTTP/1.1 \r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION, 400, "http_bad_version"),
    B("GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_REQUEST_LINE, 400, "http_bad_request_line"),
    B("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_METHOD, 400, "http_bad_method"),
    B("GE\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_METHOD, 400, "http_bad_method"),
    B("G\xc3\x89T / HTTP/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_METHOD, 400, "http_bad_method"),
    /* targets */
    B("GET /a\tb" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET /a\x7f" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET /caf\xc3\xa9" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET /a\x00" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET /a#frag" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET a/b" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET *" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("OPTIONS *x" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET x.com:443" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("CONNECT /x" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("CONNECT x.com" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("CONNECT x.com:" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("CONNECT u@x.com:443" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("CONNECT http://x.com:443" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET http://" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET http:///x" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET http://user@x.com/" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET ftp://x.com/" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET http://x.com:123456/" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET http://[::1/" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    B("GET http://x%zz/" H11 "\r\n", SD_HTTP_E_TARGET, 400, "http_bad_target"),
    /* versions */
    B("GET / HTTP/1.2\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION_UNSUPP, 505, "http_version_unsupported"),
    B("GET / HTTP/2.0\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION_UNSUPP, 505, "http_version_unsupported"),
    B("GET / HTTP/0.9\r\n\r\n", SD_HTTP_E_VERSION_UNSUPP, 505, "http_version_unsupported"),
    B("GET / http/1.1\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION, 400, "http_bad_version"),
    B("GET / HTTP/1.10\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION, 400, "http_bad_version"),
    B("GET / HTTP/1\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION, 400, "http_bad_version"),
    B("GET / HTTP/1.x\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION, 400, "http_bad_version"),
    B("GET / HTTP/2\r\nHost: x\r\n\r\n", SD_HTTP_E_VERSION, 400, "http_bad_version"),
    /* line ends */
    B("GET / HTTP/1.1\nHost: x\r\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
    B("GET / HTTP/1.1\r\nHost: x\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
    B("GET / HTTP/1.1\r\nHost: x\r\n\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
    B("GET / HTTP/1.1\rHost: x\r\n\r\n", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
    B("GET / HTTP/1.1\r\nX: a\rb\r\nHost: x\r\n\r\n", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
    B("GET / HTTP/1.1\r\nHost: x\r\n\r\r", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
    /* CRLF injection: a value cannot carry a line end */
    B("GET / HTTP/1.1\r\nHost: x\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_BARE_LF, 400,
      "http_bare_lf"),
    /* field names */
    B("GET" R11 ": v\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "NoColon\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "X Y: v\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "X\x01: v\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "X\x00Y: v\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "X(Y): v\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "\xc3\xa9: v\r\n\r\n", SD_HTTP_E_FIELD_NAME, 400, "http_bad_field_name"),
    B("GET" R11 "X : v\r\n\r\n", SD_HTTP_E_WS_BEFORE_COLON, 400, "http_ws_before_colon"),
    B("GET" R11 "X\t: v\r\n\r\n", SD_HTTP_E_WS_BEFORE_COLON, 400, "http_ws_before_colon"),
    /* values */
    B("GET" R11 "X: a\x00" "b\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    B("GET" R11 "X: a\x01\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    B("GET" R11 "X: a\x1f\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    B("GET" R11 "X: a\x7f\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    B("GET" R11 "X: a\x0b\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    /* obs-fold */
    B("GET" R11 "X: a\r\n b\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
    B("GET" R11 "X: a\r\n\tb\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
    B("GET / HTTP/1.1\r\n Host: x\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
    /* Content-Length */
    B("POST" R11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", SD_HTTP_E_CL_MULTIPLE, 400, "http_cl_multiple"),
    B("POST" R11 "Content-Length: 5, 5\r\n\r\n", SD_HTTP_E_CL_MULTIPLE, 400, "http_cl_multiple"),
    B("POST" R11 "Content-Length: 5,6\r\n\r\n", SD_HTTP_E_CL_MULTIPLE, 400, "http_cl_multiple"),
    B("POST" R11 "Content-Length: 5\r\ncontent-length: 6\r\n\r\n", SD_HTTP_E_CL_MULTIPLE, 400, "http_cl_multiple"),
    B("POST" R11 "Content-Length:\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: +5\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: -1\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: 5 5\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: 0x10\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: 1e3\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: \"5\"\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length:\t5\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: 1000000000000000000\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    B("POST" R11 "Content-Length: 18446744073709551616\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
    /* Transfer-Encoding */
    B("POST" R11 "Transfer-Encoding: chunked, gzip\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked, chunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400,
      "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", SD_HTTP_E_TE_INVALID, 400,
      "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding:\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: ,chunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked,\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: gzip,,chunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: \"chunked\"\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked;q=1\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunk ed\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding:\tchunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked\t\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    B("POST" R11 "Transfer-Encoding: chunked\x0b\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    B("POST" R11 "Transfer-Encoding: \x0c" "chunked\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    B("POST" R11 "Transfer-Encoding: xchunked\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
    B("POST" R11 "Transfer-Encoding: chunkedx\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
    B("POST" R11 "Transfer-Encoding: gzip\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
    B("POST" R11 "Transfer-Encoding: gzip, chunked\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
    B("POST" R11 "Transfer-Encoding: identity\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
    B("POST" R11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501,
      "http_te_unsupported"),
    B("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_TE_HTTP10, 400, "http_te_http10"),
    /* Host */
    B("GET / HTTP/1.1\r\n\r\n", SD_HTTP_E_HOST_MISSING, 400, "http_host_missing"),
    B("GET / HTTP/1.1\r\nX-Host: x\r\n\r\n", SD_HTTP_E_HOST_MISSING, 400, "http_host_missing"),
    B("GET" R11 "Host: x\r\n\r\n", SD_HTTP_E_HOST_MULTIPLE, 400, "http_host_multiple"),
    B("GET" R11 "host: y\r\n\r\n", SD_HTTP_E_HOST_MULTIPLE, 400, "http_host_multiple"),
    B("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", SD_HTTP_E_HOST_MULTIPLE, 400, "http_host_multiple"),
    B("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", SD_HTTP_E_HOST_INVALID, 400, "http_host_invalid"),
    B("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", SD_HTTP_E_HOST_INVALID, 400, "http_host_invalid"),
    B("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", SD_HTTP_E_HOST_INVALID, 400, "http_host_invalid"),
    B("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", SD_HTTP_E_HOST_INVALID, 400, "http_host_invalid"),
    B("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", SD_HTTP_E_HOST_INVALID, 400, "http_host_invalid"),
    B("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", SD_HTTP_E_HOST_INVALID, 400, "http_host_invalid"),
    /* Expect */
    B("POST" R11 "Expect: 100-continue-x\r\n\r\n", SD_HTTP_E_EXPECT, 417, "http_expect_unsupported"),
    B("POST" R11 "Expect: 100-continue, foo\r\n\r\n", SD_HTTP_E_EXPECT, 417, "http_expect_unsupported"),
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
        const struct bad *b = &bad_requests[i];

        expect_err_n(b->in, b->n, b->err, b->status, b->word, 1);
    }
}

/* The request-smuggling classics: every one is refused before a byte of
 * body is read, so the gateway and the backend can never disagree. */
static void test_smuggling(void **state)
{
    static const char *const te_values[] = {
        " chunked",          /* plain: with CL it is CL.TE / TE.CL */
        " Chunked",
    };
    static const struct bad obfuscated[] = {
        B("POST" R11 "Transfer-Encoding : chunked\r\n\r\n", SD_HTTP_E_WS_BEFORE_COLON, 400, "http_ws_before_colon"),
        B("POST" R11 "Transfer-Encoding: xchunked\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
        B("POST" R11 "Transfer-Encoding:\tchunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
        B("POST" R11 "Transfer-Encoding: chunked\x0b\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
        B("POST" R11 "Transfer-Encoding: \"chunked\"\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
        B("POST" R11 "Transfer-Encoding: 'chunked'\r\n\r\n", SD_HTTP_E_TE_UNSUPPORTED, 501, "http_te_unsupported"),
        B("POST" R11 " Transfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
        B("POST" R11 "X: y\r\n\tTransfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
        B("POST" R11 "Transfer-Encoding:\r\n chunked\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
        B("POST" R11 "Transfer-Encoding\n: chunked\r\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("POST" R11 "X: x\nTransfer-Encoding: chunked\r\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("POST" R11 "Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n", SD_HTTP_E_TE_INVALID, 400,
          "http_te_invalid"),
        B("POST" R11 "Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
          SD_HTTP_E_TE_AND_CL, 400, "http_te_and_cl"),
        B("POST" R11 "Transfer-Encoding: chunked, identity\r\n\r\n", SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
        B("POST" R11 "Transfer-Encoding: chu\x00nked\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
        B("POST" R11 "Transfer-Encoding: chunked\rX: y\r\n\r\n", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
    };
    char in[256];

    (void)state;
    for (size_t i = 0; i < sizeof(te_values) / sizeof(te_values[0]); i++) {
        /* CL.TE and TE.CL: both orders, each refused as te_and_cl. */
        snprintf(in, sizeof(in), "POST" R11 "Content-Length: 6\r\nTransfer-Encoding:%s\r\n\r\n0\r\n\r\nX",
                 te_values[i]);
        expect_err_n(in, strlen(in), SD_HTTP_E_TE_AND_CL, 400, "http_te_and_cl", 1);
        snprintf(in, sizeof(in), "POST" R11 "Transfer-Encoding:%s\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
                 te_values[i]);
        expect_err_n(in, strlen(in), SD_HTTP_E_TE_AND_CL, 400, "http_te_and_cl", 1);
    }
    /* TE.TE: one valid TE, one obfuscated, each variant refused. */
    for (size_t i = 0; i < sizeof(obfuscated) / sizeof(obfuscated[0]); i++) {
        const struct bad *b = &obfuscated[i];
        static const char pre[] = "POST" R11, te[] = "Transfer-Encoding: chunked\r\n";
        struct sd_http_req req;

        expect_err_n(b->in, b->n, b->err, b->status, b->word, 1);
        /* The same after a valid chunked TE (TE.TE): refused too. */
        memcpy(in, pre, sizeof(pre) - 1);
        memcpy(in + sizeof(pre) - 1, te, sizeof(te) - 1);
        memcpy(in + sizeof(pre) - 1 + sizeof(te) - 1, b->in + sizeof(pre) - 1, b->n - (sizeof(pre) - 1));
        long r = gparse(in, b->n + sizeof(te) - 1, &req, SD_HTTP_MAX_FIELDS);
        assert_int_equal(r, SD_HTTP_ERROR);
    }
}

static void test_limits(void **state)
{
    static char in[40000];
    struct sd_http_req req;
    size_t n;

    (void)state;
    /* A request line of exactly 8192 bytes is accepted; 8193 is 414. */
    n = (size_t)snprintf(in, sizeof(in), "GET /");
    memset(in + n, 'a', 8192 - n - 9);
    n = 8192 - 9;
    n += (size_t)snprintf(in + n, sizeof(in) - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(gparse(in, n, &req, SD_HTTP_MAX_FIELDS), (long)n);
    assert_int_equal(req.target.len, 8192 - 4 - 9);
    memmove(in + 6, in + 5, n - 5);
    in[5] = 'a';
    expect_err_n(in, n + 1, SD_HTTP_E_URI_TOO_LONG, 414, "http_request_line_too_long", 1);
    /* A line that never ends is 414 as soon as 8193 bytes are in. */
    memset(in + 5, 'a', 9000);
    expect_err_n(in, 8193, SD_HTTP_E_URI_TOO_LONG, 414, "http_request_line_too_long", 0);
    assert_int_equal(gparse(in, 8192, &req, SD_HTTP_MAX_FIELDS), SD_HTTP_INCOMPLETE);

    /* A head of exactly 32768 bytes is accepted; one more byte is 431. */
    n = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: x\r\nX: ");
    size_t fill = SD_HTTP_MAX_HEAD - n - 4;
    memset(in + n, 'v', fill);
    n += fill;
    memcpy(in + n, "\r\n\r\n", 4);
    n += 4;
    assert_int_equal(n, SD_HTTP_MAX_HEAD);
    expect_ok_n(in, n, 0, &req);
    assert_int_equal(req.fields[1].value.len, fill);
    memmove(in + 30, in + 29, n - 29);
    expect_err_n(in, n + 1, SD_HTTP_E_HEAD_TOO_LARGE, 431, "http_head_too_large", 1);
    /* A head that never ends is 431 once it cannot fit anymore. */
    memset(in + 29, 'v', sizeof(in) - 29);
    expect_err_n(in, sizeof(in), SD_HTTP_E_HEAD_TOO_LARGE, 431, "http_head_too_large", 0);
    assert_int_equal(gparse(in, SD_HTTP_MAX_HEAD - 2, &req, SD_HTTP_MAX_FIELDS), SD_HTTP_INCOMPLETE);
    /* Many short lines: the limit holds at a line start too. */
    n = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n");
    while (n < SD_HTTP_MAX_HEAD + 10)
        n += (size_t)snprintf(in + n, sizeof(in) - n, "X:%04zu\r\n", n % 10000);
    expect_err_n(in, n, SD_HTTP_E_TOO_MANY_FIELDS, 431, "http_too_many_fields", 0);

    /* 100 fields accepted, 101 refused; fewer when the caller has fewer. */
    n = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 1; i < 100; i++)
        n += (size_t)snprintf(in + n, sizeof(in) - n, "X-%d: %d\r\n", i, i);
    memcpy(in + n, "\r\n", 2);
    expect_ok_n(in, n + 2, 0, &req);
    assert_int_equal(req.nfields, 100);
    assert_name(req.fields[99].name, "X-99");
    assert_int_equal(gparse(in, n + 2, &req, 10), SD_HTTP_ERROR);
    assert_int_equal(req.err, SD_HTTP_E_TOO_MANY_FIELDS);
    assert_int_equal(gparse(in, n + 2, &req, 1000), (long)(n + 2));
    n += (size_t)snprintf(in + n, sizeof(in) - n, "X-100: 1\r\n\r\n");
    expect_err_n(in, n, SD_HTTP_E_TOO_MANY_FIELDS, 431, "http_too_many_fields", 1);
}

/* Every refusal's status and word, and no word twice. */
static void test_err_table(void **state)
{
    (void)state;
    for (int e = 1; e < SD_HTTP_E_COUNT; e++) {
        const char *w = sd_http_err_word((enum sd_http_err)e);
        int s = sd_http_err_status((enum sd_http_err)e);

        assert_non_null(w);
        assert_int_equal(strncmp(w, "http_", 5), 0);
        assert_true(s == 400 || s == 414 || s == 417 || s == 431 || s == 501 || s == 505);
        for (int f = 1; f < e; f++)
            assert_string_not_equal(w, sd_http_err_word((enum sd_http_err)f));
    }
    assert_string_equal(sd_http_err_word(SD_HTTP_E_COUNT), "http_unknown");
    assert_int_equal(sd_http_err_status((enum sd_http_err)-1), 400);
}

static void test_name_eq_loose(void **state)
{
    (void)state;
#define N(s) ((struct sd_name){ s, sizeof(s) - 1 })
    assert_true(sd_http_name_eq_loose(N("X-Client-Cert"), N("x-client-cert")));
    assert_true(sd_http_name_eq_loose(N("X_Client_Cert"), N("x-client-cert")));
    assert_true(sd_http_name_eq_loose(N("x-client_CERT"), N("X_CLIENT-cert")));
    assert_true(sd_http_name_eq_loose(N(""), N("")));
    assert_false(sd_http_name_eq_loose(N("X-Client-Cert"), N("X-Client-Cer")));
    assert_false(sd_http_name_eq_loose(N("X-Client-Cert"), N("X.Client.Cert")));
    assert_false(sd_http_name_eq_loose(N("X-Client-Cert "), N("X-Client-Cert")));
    assert_false(sd_http_name_eq_loose(N("X-Client-Cert\0"), N("X-Client-Cert\x80")));
    /* Only ASCII letters fold: 0xC0 is not 0xE0. */
    assert_false(sd_http_name_eq_loose(N("\xc0"), N("\xe0")));
    assert_false(sd_http_name_eq_loose(N("["), N("{")));
    assert_true(sd_http_token_eq(N("ChUnKeD"), "chunked"));
    assert_false(sd_http_token_eq(N("chunked "), "chunked"));
#undef N
}

/* ---- chunked decoder ---- */

/* Decodes body[0, n) fed in pieces of `step` bytes (0: two pieces split at
 * `split`), guarded, into out; returns the bytes consumed, or -1 on error
 * with *err set. Checks that no call consumes 0 bytes before the end. */
static long decode(const char *body, size_t n, size_t step, size_t split, char *out, size_t *outlen,
                   enum sd_http_err *err, int *done)
{
    struct sd_http_chunked c;
    size_t off = 0;

    sd_http_chunked_init(&c);
    *outlen = 0;
    while (off < n && !sd_http_chunked_done(&c)) {
        size_t piece = step ? step : (off < split ? split - off : n - off);
        if (piece > n - off)
            piece = n - off;
        const char *g = guarded(body + off, piece);
        size_t used = 0;
        while (used < piece && !sd_http_chunked_done(&c)) {
            struct sd_name d;
            long r = sd_http_chunked_feed(&c, g + used, piece - used, &d);
            if (r < 0) {
                *err = c.err;
                assert_int_equal(sd_http_chunked_feed(&c, g, piece, &d), SD_HTTP_ERROR);
                return -1;
            }
            assert_true(r > 0);
            assert_true(d.len == 0 || (d.s >= g + used && d.s + d.len == g + used + (size_t)r));
            memcpy(out + *outlen, d.s, d.len);
            *outlen += d.len;
            used += (size_t)r;
        }
        off += used;
    }
    *done = sd_http_chunked_done(&c);
    return (long)off;
}

static void expect_chunked(const char *body, size_t n, size_t body_len, const char *want)
{
    static char out[20000];
    size_t outlen;
    enum sd_http_err err = SD_HTTP_OK;
    int done;

    for (size_t step = 1; step <= 3; step++) {
        long r = decode(body, n, step, 0, out, &outlen, &err, &done);
        if (r != (long)body_len || !done)
            fail_msg("step %zu: %ld (%s)", step, r, sd_http_err_word(err));
        assert_int_equal(outlen, strlen(want));
        assert_memory_equal(out, want, outlen);
    }
    for (size_t split = 0; split <= n; split++) {
        long r = decode(body, n, 0, split, out, &outlen, &err, &done);
        if (r != (long)body_len || !done)
            fail_msg("split %zu: %ld (%s)", split, r, sd_http_err_word(err));
        assert_int_equal(outlen, strlen(want));
        assert_memory_equal(out, want, outlen);
    }
    /* All but the last byte: not done, no error. */
    long r = decode(body, body_len - 1, 1, 0, out, &outlen, &err, &done);
    assert_int_equal(r, (long)body_len - 1);
    assert_false(done);
}

static void test_chunked_valid(void **state)
{
    static const char b1[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    static const char b2[] = "A;name=val;q=\"a b\"\r\n0123456789\r\n1 ; x\r\n!\r\n000\r\n\r\nGET / HTTP/1.1\r\n";
    static const char b3[] = "3\r\nabc\r\n0\r\nTrailer-A: 1\r\nX: \tv v\t\r\n\r\n";
    static const char b4[] = "0\r\n\r\n";
    static const char b5[] = "Ff\r\n";
    static char big[600];

    (void)state;
    expect_chunked(b1, sizeof(b1) - 1, sizeof(b1) - 1, "hello world");
    expect_chunked(b2, sizeof(b2) - 1, sizeof(b2) - 1 - strlen("GET / HTTP/1.1\r\n"), "0123456789!");
    expect_chunked(b3, sizeof(b3) - 1, sizeof(b3) - 1, "abc");
    expect_chunked(b4, sizeof(b4) - 1, sizeof(b4) - 1, "");
    /* 255 bytes of data, mixed-case hex. */
    size_t n = 0;
    memcpy(big, b5, 4);
    n = 4;
    memset(big + n, 'z', 255);
    n += 255;
    memcpy(big + n, "\r\n0\r\n\r\n", 7);
    n += 7;
    char want[256];
    memset(want, 'z', 255);
    want[255] = '\0';
    expect_chunked(big, n, n, want);
    /* 16 digits are accepted (the size is then just very large). */
    struct sd_http_chunked c;
    struct sd_name d;
    sd_http_chunked_init(&c);
    assert_int_equal(sd_http_chunked_feed(&c, "ffffffffffffffff\r\nab", 20, &d), 20);
    assert_int_equal(d.len, 2);
    assert_memory_equal(d.s, "ab", 2);
    assert_int_equal(c.remaining, UINT64_MAX - 2);
    /* After the end nothing more is consumed. */
    sd_http_chunked_init(&c);
    assert_int_equal(sd_http_chunked_feed(&c, "0\r\n\r\n0\r\n\r\n", 10, &d), 5);
    assert_true(sd_http_chunked_done(&c));
    assert_int_equal(sd_http_chunked_feed(&c, "0\r\n\r\n", 5, &d), 0);
    assert_int_equal(sd_http_chunked_feed(&c, "x", 0, &d), 0);
}

static void expect_chunked_err(const char *body, size_t n, enum sd_http_err e, int status, const char *word)
{
    static char out[20000];
    size_t outlen;
    enum sd_http_err err = SD_HTTP_OK;
    int done;

    for (size_t step = 1; step <= 2; step++) {
        long r = decode(body, n, step, 0, out, &outlen, &err, &done);
        if (r != -1 || err != e)
            fail_msg("%.40s step %zu: %ld (%s), want %s", body, step, r, sd_http_err_word(err), word);
    }
    long r = decode(body, n, n, 0, out, &outlen, &err, &done);
    if (r != -1 || err != e)
        fail_msg("%.40s whole: %ld (%s), want %s", body, r, sd_http_err_word(err), word);
    assert_int_equal(sd_http_err_status(e), status);
    assert_string_equal(sd_http_err_word(e), word);
}

static void test_chunked_refusals(void **state)
{
    static const struct bad bad[] = {
        B("\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("g\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("-1\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("+1\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B(" 1\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("0x5\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("5g\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("00000000000000001\r\nx\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("10000000000000000\r\n", SD_HTTP_E_CHUNK_SIZE, 400, "http_bad_chunk_size"),
        B("1\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("1\rx", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
        B("1;a\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("1 x\r\n", SD_HTTP_E_CHUNK_EXT, 400, "http_bad_chunk_ext"),
        B("1 \r\n", SD_HTTP_E_CHUNK_EXT, 400, "http_bad_chunk_ext"),
        B("1;a\x01\r\n", SD_HTTP_E_CHUNK_EXT, 400, "http_bad_chunk_ext"),
        B("1;a\x7f\r\n", SD_HTTP_E_CHUNK_EXT, 400, "http_bad_chunk_ext"),
        B("1;a\rb\r\n", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
        B("1\r\nab\r\n", SD_HTTP_E_CHUNK_DATA_END, 400, "http_bad_chunk_end"),
        B("1\r\na\n0\r\n\r\n", SD_HTTP_E_CHUNK_DATA_END, 400, "http_bad_chunk_end"),
        B("1\r\na\rx", SD_HTTP_E_CHUNK_DATA_END, 400, "http_bad_chunk_end"),
        B("0\r\n\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("0\r\n\rx", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
        B("0\r\nX: y\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("0\r\nX: y\rz\r\n", SD_HTTP_E_BARE_CR, 400, "http_bare_cr"),
        B("0\r\n X: y\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
        B("0\r\nX: y\r\n\tz\r\n\r\n", SD_HTTP_E_OBS_FOLD, 400, "http_obs_fold"),
        B("0\r\nX : y\r\n\r\n", SD_HTTP_E_WS_BEFORE_COLON, 400, "http_ws_before_colon"),
        B("0\r\n: y\r\n\r\n", SD_HTTP_E_TRAILER, 400, "http_bad_trailer"),
        B("0\r\nX\r\n\r\n", SD_HTTP_E_TRAILER, 400, "http_bad_trailer"),
        B("0\r\nX(: y\r\n\r\n", SD_HTTP_E_TRAILER, 400, "http_bad_trailer"),
        B("0\r\nX\n: y\r\n\r\n", SD_HTTP_E_BARE_LF, 400, "http_bare_lf"),
        B("0\r\nX: a\x01\r\n\r\n", SD_HTTP_E_FIELD_VALUE, 400, "http_bad_field_value"),
    };
    static char in[SD_HTTP_MAX_CHUNK_EXT + SD_HTTP_MAX_TRAILER + 64];
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_chunked_err(bad[i].in, bad[i].n, bad[i].err, bad[i].status, bad[i].word);
    /* Extensions: 4096 bytes after the size pass, 4097 do not. */
    memcpy(in, "1;", 2);
    memset(in + 2, 'e', SD_HTTP_MAX_CHUNK_EXT - 1);
    n = 1 + SD_HTTP_MAX_CHUNK_EXT;
    memcpy(in + n, "\r\nx\r\n0\r\n\r\n", 10);
    expect_chunked(in, n + 10, n + 10, "x");
    memcpy(in, "1 ;", 3);
    memset(in + 3, 'e', SD_HTTP_MAX_CHUNK_EXT - 1);
    n = 2 + SD_HTTP_MAX_CHUNK_EXT;
    memcpy(in + n, "\r\nx\r\n0\r\n\r\n", 10);
    expect_chunked_err(in, n + 10, SD_HTTP_E_CHUNK_EXT_LONG, 400, "http_chunk_ext_too_long");
    /* Trailers: bounded to SD_HTTP_MAX_TRAILER bytes, final CRLF included:
     * "X: " + k bytes + CRLF CRLF is exactly the limit. */
    size_t k = SD_HTTP_MAX_TRAILER - 7;
    memcpy(in, "0\r\nX: ", 6);
    memset(in + 6, 'v', k);
    memcpy(in + 6 + k, "\r\n\r\n", 4);
    expect_chunked(in, 10 + k, 10 + k, "");
    memset(in + 6, 'v', k + 1);
    memcpy(in + 7 + k, "\r\n\r\n", 4);
    expect_chunked_err(in, 11 + k, SD_HTTP_E_TRAILER_LARGE, 431, "http_trailer_too_large");
}

/* CONNECT has no content (RFC 9110 section 9.3.6): a backend takes what
 * follows its head for the tunnel. A body-framing field on it would make
 * us read a body and then a "next request" out of the tunnel's bytes
 * (found by test_http_req_diff: http-parser starts the tunnel at the head's
 * end). Refused, except a Content-Length of 0, which reads the same. */
static void test_connect_body(void **state)
{
    static const struct bad bad[] = {
        B("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n",
          SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
        B("CONNECT a:443 HTTP/1.0\r\nContent-Length: 1\r\n\r\n", SD_HTTP_E_CL_INVALID, 400, "http_cl_invalid"),
        B("CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", SD_HTTP_E_CL_INVALID, 400,
          "http_cl_invalid"),
        B("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          SD_HTTP_E_TE_INVALID, 400, "http_te_invalid"),
    };
    struct sd_http_req req;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_err_n(bad[i].in, bad[i].n, bad[i].err, bad[i].status, bad[i].word, 1);
    /* Content-Length: 0 frames nothing either way. */
    expect_ok("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 0\r\n\r\n", &req);
    assert_int_equal(req.form, SD_HTTP_TARGET_AUTHORITY);
    assert_int_equal(req.framing, SD_HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 0);
    expect_ok("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 00\r\n\r\n", &req);
    /* Only CONNECT: the same fields on another method frame a body. */
    expect_ok("POST http://a:443/ HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\n", &req);
    assert_int_equal(req.content_length, 5);
    expect_ok("OPTIONS * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &req);
    assert_int_equal(req.framing, SD_HTTP_BODY_CHUNKED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_http10_and_keep_alive),
        cmocka_unit_test(test_framing_and_flags),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_err_table),
        cmocka_unit_test(test_name_eq_loose),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_refusals),
        cmocka_unit_test(test_connect_body),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
