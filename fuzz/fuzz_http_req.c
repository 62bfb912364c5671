/* fuzz_http_req.c - libFuzzer target for the request-head parser
 * (http/req.c). Input: the bytes a client sent, as they are.
 *
 * Invariants (__builtin_trap() when broken):
 *   - the result is a head length in [1, size], SD_HTTP_INCOMPLETE, or
 *     SD_HTTP_ERROR with a known reason;
 *   - of a complete head, every name lies within the head and follows the
 *     grammar: the method and field names are tokens, the target is
 *     visible ASCII, values hold no CTL but HTAB and are trimmed, the
 *     version is 1.0 or 1.1, at most 100 fields, chunked only in 1.1, and
 *     HTTP/1.1 has exactly one Host;
 *   - the verdict does not depend on how the bytes arrive: the head alone
 *     parses the same (same length, same names at the same offsets), and
 *     prefixes of it are INCOMPLETE; a prefix of refused input is
 *     INCOMPLETE or the same refusal.
 * Every parse reads a malloc'd copy of exactly the bytes given, so an
 * over-read is an ASan report. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/http_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static struct sd_http_field f1[SD_HTTP_MAX_FIELDS], f2[SD_HTTP_MAX_FIELDS];

static int tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_in(struct sd_name n, const char *b, size_t len)
{
    CHECK(n.s >= b && n.len <= len && (size_t)(n.s - b) <= len - n.len);
}

/* Parses a malloc'd copy of d[0, n); returns the result, *req filled with
 * names relative to *copy (freed by the caller). */
static long parse_copy(const uint8_t *d, size_t n, struct sd_http_req *req, struct sd_http_field *f,
                       char **copy)
{
    *copy = malloc(n ? n : 1);
    CHECK(*copy != NULL);
    if (n)
        memcpy(*copy, d, n);
    return sd_http_req_parse(*copy, n, req, f, SD_HTTP_MAX_FIELDS);
}

static void check_head(const char *b, long r, const struct sd_http_req *q)
{
    size_t len = (size_t)r;

    CHECK(q->err == SD_HTTP_OK);
    CHECK(q->minor == 0 || q->minor == 1);
    CHECK(q->nfields <= SD_HTTP_MAX_FIELDS && len <= SD_HTTP_MAX_HEAD);
    check_in(q->method, b, len);
    CHECK(q->method.len > 0);
    for (size_t i = 0; i < q->method.len; i++)
        CHECK(tchar((unsigned char)q->method.s[i]));
    check_in(q->target, b, len);
    CHECK(q->target.len > 0 && q->target.len <= SD_HTTP_MAX_REQUEST_LINE);
    for (size_t i = 0; i < q->target.len; i++)
        CHECK(q->target.s[i] > 0x20 && q->target.s[i] < 0x7f);
    for (size_t i = 0; i < q->nfields; i++) {
        struct sd_name nm = q->fields[i].name, v = q->fields[i].value;

        check_in(nm, b, len);
        check_in(v, b, len);
        CHECK(nm.len > 0);
        for (size_t k = 0; k < nm.len; k++)
            CHECK(tchar((unsigned char)nm.s[k]));
        for (size_t k = 0; k < v.len; k++) {
            unsigned char c = (unsigned char)v.s[k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (v.len)
            CHECK(v.s[0] != ' ' && v.s[0] != '\t' && v.s[v.len - 1] != ' ' && v.s[v.len - 1] != '\t');
        CHECK(sd_http_name_eq_loose(nm, nm));
        if (i > 0)
            CHECK(sd_http_name_eq_loose(nm, q->fields[i - 1].name) ==
                  sd_http_name_eq_loose(q->fields[i - 1].name, nm));
    }
    if (q->framing == SD_HTTP_BODY_CHUNKED)
        CHECK(q->minor == 1);
    if (q->minor == 1)
        CHECK(q->has_host);
    if (q->has_host)
        check_in(q->host, b, len);
    CHECK(q->keep_alive == 0 || q->keep_alive == 1);
    CHECK(b[len - 1] == '\n' && b[len - 2] == '\r');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sd_http_req q1, q2;
    char *b1, *b2;
    long r = parse_copy(data, size, &q1, f1, &b1);

    CHECK(r == SD_HTTP_INCOMPLETE || r == SD_HTTP_ERROR || (r > 0 && (size_t)r <= size));
    if (r == SD_HTTP_ERROR) {
        CHECK(q1.err > SD_HTTP_OK && q1.err < SD_HTTP_E_COUNT);
        int st = sd_http_err_status(q1.err);
        CHECK(st >= 400 && st < 600);
        /* A prefix: INCOMPLETE or the same refusal. */
        size_t k = size / 2;
        long r2 = parse_copy(data, k, &q2, f2, &b2);
        CHECK(r2 == SD_HTTP_INCOMPLETE || (r2 == SD_HTTP_ERROR && q2.err == q1.err));
        free(b2);
    } else if (r > 0) {
        size_t len = (size_t)r;

        check_head(b1, r, &q1);
        /* The head alone: the same parse, at the same offsets. */
        long r2 = parse_copy(data, len, &q2, f2, &b2);
        CHECK(r2 == r && q2.nfields == q1.nfields && q2.framing == q1.framing &&
              q2.content_length == q1.content_length && q2.keep_alive == q1.keep_alive &&
              q2.expect_continue == q1.expect_continue && q2.upgrade == q1.upgrade &&
              q2.minor == q1.minor && q2.form == q1.form);
        CHECK(q2.method.s - b2 == q1.method.s - b1 && q2.target.s - b2 == q1.target.s - b1 &&
              q2.target.len == q1.target.len);
        for (size_t i = 0; i < q1.nfields; i++)
            CHECK(q2.fields[i].value.s - b2 == q1.fields[i].value.s - b1 &&
                  q2.fields[i].value.len == q1.fields[i].value.len);
        free(b2);
        /* Some prefixes of the head (all of them for short heads) are
         * INCOMPLETE; each is copied to the end of one allocation. */
        char *mem = malloc(len);
        size_t step = len <= 256 ? 1 : len / 61;
        CHECK(mem != NULL);
        for (size_t k = 0; k < len; k += step) {
            memcpy(mem + len - k, data, k);
            CHECK(sd_http_req_parse(mem + len - k, k, &q2, f2, SD_HTTP_MAX_FIELDS) == SD_HTTP_INCOMPLETE);
        }
        memcpy(mem + 1, data, len - 1);
        CHECK(sd_http_req_parse(mem + 1, len - 1, &q2, f2, SD_HTTP_MAX_FIELDS) == SD_HTTP_INCOMPLETE);
        free(mem);
    }
    free(b1);
    return 0;
}
