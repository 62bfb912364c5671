/* fuzz_http_chunked.c - libFuzzer target for the chunked body decoder
 * (http/req.c). Input: the bytes after a request head, as they are.
 *
 * Invariants (__builtin_trap() when broken):
 *   - each call consumes at least one byte unless the body has ended (or
 *     nothing was given), never more than given, and reports at most one
 *     run of data, at the end of what it consumed;
 *   - the outcome (error and its reason, or end and the bytes consumed, and
 *     the data) is the same whether the input comes at once, byte by
 *     byte, or in pieces of a size taken from the input;
 *   - an ended body ends with CRLF; its bytes alone decode the same;
 *   - once refused, the decoder stays refused.
 * Each piece ends where its allocation ends (ASan sees over-reads). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/http_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

struct outcome {
    long consumed; /* bytes up to the end, or -1 when refused */
    enum sd_http_err err;
    int done;
    uint64_t sum;  /* a digest of the data and where it was */
    size_t ndata;
};

/* Decodes d[0, n) in pieces of `step` bytes (0: all at once). */
static struct outcome run(const uint8_t *d, size_t n, size_t step)
{
    struct sd_http_chunked c;
    struct outcome o = { 0, SD_HTTP_OK, 0, 1469598103934665603ull, 0 };
    size_t off = 0, cap = step == 0 || step > n ? n : step;
    /* One allocation per run; each piece is copied to its end, so reading
     * past a piece is reading past the allocation. */
    char *mem = malloc(cap ? cap : 1);

    CHECK(mem != NULL);
    sd_http_chunked_init(&c);
    while (off < n && !sd_http_chunked_done(&c)) {
        size_t piece = step == 0 || step > n - off ? n - off : step;
        char *b = mem + cap - piece;
        size_t used = 0;

        memcpy(b, d + off, piece);
        while (used < piece && !sd_http_chunked_done(&c)) {
            struct sd_name dt;
            long r = sd_http_chunked_feed(&c, b + used, piece - used, &dt);

            if (r < 0) {
                CHECK(r == SD_HTTP_ERROR && c.err > SD_HTTP_OK && c.err < SD_HTTP_E_COUNT);
                CHECK(sd_http_chunked_feed(&c, b, piece, &dt) == SD_HTTP_ERROR);
                o.consumed = -1;
                o.err = c.err;
                free(mem);
                return o;
            }
            CHECK(r > 0 && (size_t)r <= piece - used);
            CHECK(dt.len == 0 || (dt.s >= b + used && dt.s + dt.len == b + used + (size_t)r));
            for (size_t i = 0; i < dt.len; i++) {
                size_t at = off + (size_t)(dt.s - b) + i;
                o.sum = (o.sum ^ (uint8_t)dt.s[i] ^ (uint64_t)at << 8) * 1099511628211ull;
            }
            o.ndata += dt.len;
            used += (size_t)r;
        }
        off += used;
    }
    free(mem);
    o.consumed = (long)off;
    o.done = sd_http_chunked_done(&c);
    if (o.done) {
        struct sd_name dt;
        CHECK(off >= 5 && d[off - 2] == '\r' && d[off - 1] == '\n');
        CHECK(sd_http_chunked_feed(&c, (const char *)d, n, &dt) == 0);
    }
    return o;
}

static int same(struct outcome a, struct outcome b)
{
    return a.consumed == b.consumed && a.err == b.err && a.done == b.done && a.sum == b.sum &&
           a.ndata == b.ndata;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole = run(data, size, 0);

    CHECK(same(whole, run(data, size, 1)));
    if (size > 0)
        CHECK(same(whole, run(data, size, (size_t)data[0] % 13 + 2)));
    if (whole.done)
        CHECK(same(whole, run(data, (size_t)whole.consumed, 3)));
    return 0;
}
