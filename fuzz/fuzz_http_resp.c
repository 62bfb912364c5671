/* fuzz_http_resp.c - libFuzzer target for the response-head parser
 * (http/resp.c).
 *
 * Input: byte 0 chooses the request the response answers (% 3: GET, HEAD,
 * CONNECT); byte 1 the caller's field array: below 200 the full one, 200-254
 * 0-7 entries, 255 one more than the cap;
 * the rest is the response bytes, copied into a malloc'd buffer of exactly
 * that size so a read past the end is an ASan report.
 *
 * Invariants (__builtin_trap() when broken):
 *   - the result is a byte count in (0, min(len, MAX_HEAD)], INCOMPLETE or
 *     ERROR with a known err; INCOMPLETE only when len < MAX_HEAD;
 *   - on success every name, value and the reason lie within the head,
 *     names are non-empty, values do not start or end with SP/HTAB, the
 *     head ends in CRLF CRLF, nfields <= the array size, and the framing
 *     and keep-alive follow the documented rules;
 *   - split stability: the head alone gives the same result; every
 *     sampled prefix gives INCOMPLETE (accepted input) or INCOMPLETE or
 *     the same error (refused input). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/http_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static int within(struct sd_name n, const char *buf, size_t len)
{
    return n.s >= buf && n.len <= len && (size_t)(n.s - buf) <= len - n.len;
}

static int same(const struct sd_http_resp *a, const struct sd_http_resp *b,
                const struct sd_http_resp_field *fa, const struct sd_http_resp_field *fb)
{
    if (a->status != b->status || a->minor != b->minor || a->nfields != b->nfields ||
        a->framing != b->framing || a->content_length != b->content_length ||
        a->keep_alive != b->keep_alive || a->flags != b->flags ||
        a->reason.len != b->reason.len)
        return 0;
    for (size_t i = 0; i < a->nfields; i++)
        if (fa[i].name.len != fb[i].name.len || fa[i].value.len != fb[i].value.len)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sd_http_resp_field f1[SD_HTTP_RESP_MAX_FIELDS + 1], f2[SD_HTTP_RESP_MAX_FIELDS + 1];
    static const enum sd_http_resp_req reqs[3] = { SD_HTTP_RESP_REQ_OTHER, SD_HTTP_RESP_REQ_HEAD,
                                                   SD_HTTP_RESP_REQ_CONNECT };
    struct sd_http_resp r1, r2;

    if (size < 2)
        return 0;
    enum sd_http_resp_req req = reqs[data[0] % 3];
    /* Mostly the full array; sometimes a small one (or one larger than the
     * cap, which must still stop at SD_HTTP_RESP_MAX_FIELDS). */
    size_t maxf = data[1] < 200 ? SD_HTTP_RESP_MAX_FIELDS : (size_t)(data[1] - 200) % 8;
    if (data[1] == 255)
        maxf = SD_HTTP_RESP_MAX_FIELDS + 1;
    size_t len = size - 2;
    char *buf = malloc(len ? len : 1);
    CHECK(buf);
    if (len)
        memcpy(buf, data + 2, len);

    long n = sd_http_resp_parse(buf, len, req, &r1, f1, maxf);
    CHECK(n == SD_HTTP_RESP_ERROR || n == SD_HTTP_RESP_INCOMPLETE || n > 0);
    if (n == SD_HTTP_RESP_INCOMPLETE)
        CHECK(len < SD_HTTP_RESP_MAX_HEAD);
    if (n == SD_HTTP_RESP_ERROR)
        CHECK(r1.err > SD_HTTP_RESP_E_NONE && r1.err < SD_HTTP_RESP_E_COUNT);
    if (n > 0) {
        size_t h = (size_t)n;
        CHECK(h <= len && h <= SD_HTTP_RESP_MAX_HEAD && h >= 4);
        CHECK(memcmp(buf + h - 4, "\r\n\r\n", 4) == 0);
        CHECK(r1.status >= 100 && r1.status <= 599);
        CHECK(within(r1.reason, buf, h));
        CHECK(r1.nfields <= maxf && r1.nfields <= SD_HTTP_RESP_MAX_FIELDS);
        for (size_t i = 0; i < r1.nfields; i++) {
            CHECK(within(f1[i].name, buf, h) && f1[i].name.len > 0);
            CHECK(within(f1[i].value, buf, h));
            if (f1[i].value.len) {
                char a = f1[i].value.s[0], z = f1[i].value.s[f1[i].value.len - 1];
                CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t');
            }
            for (size_t k = 0; k < f1[i].value.len; k++)
                CHECK(f1[i].value.s[k] != '\r' && f1[i].value.s[k] != '\n' && f1[i].value.s[k] != 0);
        }
        if (r1.framing == SD_HTTP_RESP_BODY_CLOSE || r1.framing == SD_HTTP_RESP_BODY_TUNNEL)
            CHECK(r1.keep_alive == 0);
        if (r1.status / 100 == 1)
            CHECK(r1.framing == (r1.status == 101 ? SD_HTTP_RESP_BODY_TUNNEL
                                                  : SD_HTTP_RESP_BODY_INTERIM));
        else if (req == SD_HTTP_RESP_REQ_HEAD || r1.status == 204 || r1.status == 304)
            CHECK(r1.framing == SD_HTTP_RESP_BODY_NONE ||
                  (req == SD_HTTP_RESP_REQ_CONNECT && r1.framing == SD_HTTP_RESP_BODY_TUNNEL));
        if (r1.framing != SD_HTTP_RESP_BODY_LENGTH)
            CHECK(r1.content_length == 0);

        /* The head alone, in its own exact-size buffer, gives the same. */
        char *head = malloc(h);
        CHECK(head);
        memcpy(head, buf, h);
        CHECK(sd_http_resp_parse(head, h, req, &r2, f2, maxf) == n);
        CHECK(same(&r1, &r2, f1, f2));
        free(head);
    }
    /* Prefixes: 16 spread over the input plus the last few bytes (every
     * one would make the target quadratic). */
    size_t end = n > 0 ? (size_t)n : len;
    for (size_t s = 0; s < 20 && end > 0; s++) {
        size_t k = s < 16 ? end * s / 16 : end - (s - 15);
        if (k >= end)
            continue;
        long p = sd_http_resp_parse(buf, k, req, &r2, f2, maxf);
        if (n > 0 || n == SD_HTTP_RESP_INCOMPLETE)
            CHECK(p == SD_HTTP_RESP_INCOMPLETE);
        else
            CHECK(p == SD_HTTP_RESP_INCOMPLETE || (p == SD_HTTP_RESP_ERROR && r2.err == r1.err));
    }
    free(buf);
    return 0;
}
