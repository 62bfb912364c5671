/* Differential test of the response-head parser (http/resp.c) against an
 * oracle: Debian's http-parser 2.9.4 (libhttp-parser-dev, nodejs's archived
 * parser), on a few thousand responses built by a seeded PRNG from a
 * grammar of valid parts plus mutations (request smuggling classics:
 * repeated CL, CL+TE, obfuscated TE; CR/LF/NUL injection; whitespace
 * before the colon; obs-fold; bare LF; long lines; broken status lines).
 *
 * Rules checked:
 *   - both accept: status, version, every field name and value, framing
 *     and keep-alive agree, except the documented framing differences
 *     below;
 *   - we refuse and the oracle accepts: fine only for the documented
 *     strictness classes (our error words, listed in strict_ok[]); counts
 *     per class are printed;
 *   - we accept and the oracle refuses: never, except the documented
 *     "te_and_cl" (TE + CL: RFC 9112 6.3 lets an intermediary go by TE and
 *     drop CL, as the brief asks; http-parser 2.9.4 refuses it outright;
 *     we do not reuse the connection after one), and "te_name_prefix"
 *     (http-parser takes "Transfer-Encodings" for Transfer-Encoding: its bug).
 * Keep-alive: "connection_close_wins": with several Connection fields a
 *   "close" in any of them closes for us; the oracle goes by the last one.
 * Documented framing differences where both accept:
 *   - "body_on_204_304": http-parser reads a body on 204/304 when CL or TE
 *     says so; RFC 9110 15.3.5 / 15.4.5: these never have content.
 *   - "101_without_upgrade": http-parser only treats 101 as a switch when
 *     Upgrade and Connection: upgrade are present; for us any 101 ends
 *     HTTP on the connection (RFC 9110 15.2.2).
 * How the oracle learns the request: its API wants the caller to return 1
 * from on_headers_complete for a response to HEAD (and, as node's client
 * does, for a 1xx other than 101) and 2 for a 2xx to CONNECT; its framing
 * is then read the way http_parser.c decides it at the end of the head.
 *
 * Requests: the request parser (sd/http_req.h) and the chunked decoder are
 * compared with the same oracle in test_http_req_diff.c.
 * Deterministic: fixed seed, fixed count; bounded: about a second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <http_parser.h>

#include "sd/http_resp.h"

#define NCASES 6000
#define MAXIN 65536

/* xorshift64*: fixed seed, so every run builds the same cases. */
static uint64_t rng_state = 0x5d0095e11c0ffeeULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 33) % n;
}

#define PICK(a) (a[rnd((uint32_t)(sizeof(a) / sizeof(a[0])))])

struct input {
    char b[MAXIN];
    size_t n;
};

static void put(struct input *in, const char *s, size_t n)
{
    if (in->n + n <= MAXIN) {
        memcpy(in->b + in->n, s, n);
        in->n += n;
    }
}

static void puts_(struct input *in, const char *s)
{
    put(in, s, strlen(s));
}

/* ---- the generator ---- */

static const char *const versions[] = { "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0" };
static const char *const statuses[] = { "200", "200", "200", "201", "204", "206", "301", "304",
                                        "404", "500", "100", "101", "103" };
static const char *const reasons[] = { " OK", " Not Found", " ", "", " x y z", " \xc3\xa9t\xc3\xa9" };
static const char *const plain[] = {
    "Server: steeldoor-test", "Date: Mon, 01 Dec 2025 00:00:00 GMT", "Content-Type: text/html",
    "Cache-Control: no-cache, no-store", "X-Empty:", "Set-Cookie: a=b; Path=/", "Vary: *",
    "Connection: close", "Connection: keep-alive", "Connection: Upgrade", "Upgrade: websocket",
    "X-Trailing: v \t", "X-Tab:\tv",
};
static const char *const cl_values[] = { "0", "5", "42", "1000", "18446744073709551615", "-1", "+5",
                                         "5 5", "5, 5", "0x10", "", "99999999999999999999", "1 ",
                                         "9223372036854775807" };
static const char *const te_values[] = {
    "chunked", "chunked", "gzip, chunked", "gzip", "Chunked", "CHUNKED", "xchunked", "chunkedx",
    "chunked, x", "chunk", "chunked;a=b", "\"chunked\"", ", chunked", "chunked,", "identity",
    "gzip,chunked", "chunked , gzip", "chu nked", "",
};
static const char *const te_names[] = { "Transfer-Encoding", "transfer-encoding", "Transfer-Encoding",
                                        "Transfer_Encoding", "Transfer-Encoding ", "TE",
                                        "Transfer-Encodings" };

static void field(struct input *in, const char *name, const char *value)
{
    puts_(in, name);
    puts_(in, ": ");
    puts_(in, value);
    puts_(in, "\r\n");
}

/* One response head; *req gets the request method it answers. */
static void gen(struct input *in, enum sd_http_resp_req *req)
{
    static const enum sd_http_resp_req reqs[] = { SD_HTTP_RESP_REQ_OTHER, SD_HTTP_RESP_REQ_OTHER,
                                                  SD_HTTP_RESP_REQ_OTHER, SD_HTTP_RESP_REQ_HEAD,
                                                  SD_HTTP_RESP_REQ_CONNECT };
    char num[32];

    in->n = 0;
    *req = PICK(reqs);
    puts_(in, PICK(versions));
    puts_(in, " ");
    puts_(in, PICK(statuses));
    puts_(in, PICK(reasons));
    puts_(in, "\r\n");
    unsigned nf = rnd(6);
    for (unsigned k = 0; k < nf; k++) {
        puts_(in, PICK(plain));
        puts_(in, "\r\n");
    }
    /* Body framing fields: none, CL, TE, or both, sometimes repeated. */
    switch (rnd(8)) {
    case 0: break;
    case 1: case 2:
        snprintf(num, sizeof(num), "%u", rnd(100000));
        field(in, "Content-Length", num);
        break;
    case 3:
        field(in, "Content-Length", PICK(cl_values));
        break;
    case 4:
        field(in, PICK(te_names), PICK(te_values));
        break;
    case 5:
        field(in, "Content-Length", PICK(cl_values));
        field(in, PICK(te_names), PICK(te_values));
        break;
    case 6: /* repeated CL, equal or not */
        field(in, "Content-Length", "5");
        field(in, rnd(2) ? "content-length" : "Content-Length", rnd(2) ? "5" : "6");
        break;
    case 7: /* TE split over two fields */
        field(in, "Transfer-Encoding", PICK(te_values));
        field(in, "Transfer-Encoding", PICK(te_values));
        break;
    }
    for (unsigned k = rnd(3); k > 0; k--) {
        puts_(in, PICK(plain));
        puts_(in, "\r\n");
    }
    puts_(in, "\r\n");
    if (rnd(2))
        return;

    /* Mutations: each keeps the buffer a plausible head with one defect. */
    size_t at = in->n > 2 ? rnd((uint32_t)(in->n - 2)) : 0;
    char tmp[MAXIN];
    size_t tail;
    switch (rnd(11)) {
    case 0: { /* a byte that splits lines or strings: CR, LF, NUL, CTL */
        static const char bad[] = { '\r', '\n', '\0', '\x0b', '\x7f', '\t', ' ', ':' };
        tail = in->n - at;
        memcpy(tmp, in->b + at, tail);
        in->b[at] = PICK(bad);
        memcpy(in->b + at + 1, tmp, tail);
        in->n++;
        break;
    }
    case 1: /* space before a colon */
    case 2: { /* obs-fold: a line break inside a value */
        int colon = rnd(11) == 1;
        char *p = memchr(in->b + at, colon ? ':' : '\n', in->n - at);
        if (!p || (size_t)(p - in->b) + 2 >= in->n)
            break;
        size_t pos = (size_t)(p - in->b) + (colon ? 0 : 1);
        tail = in->n - pos;
        memcpy(tmp, in->b + pos, tail);
        const char *ins = colon ? (rnd(2) ? " " : "\t") : (rnd(2) ? " folded\r\n " : "\t");
        in->n = pos;
        puts_(in, ins);
        put(in, tmp, tail);
        break;
    }
    case 3: { /* bare LF for one CRLF */
        char *p = memchr(in->b + at, '\r', in->n - at);
        if (!p)
            break;
        memmove(p, p + 1, in->n - (size_t)(p - in->b) - 1);
        in->n--;
        break;
    }
    case 4: /* a random byte */
        in->b[at] = (char)rnd(256);
        break;
    case 5: { /* a long line: 8 KiB to 40 KiB value */
        size_t len = 8192 + rnd(32768), pos = in->n - 2;
        in->n = pos;
        puts_(in, "X-Long: ");
        while (len > 0 && in->n + 4 < MAXIN) {
            in->b[in->n++] = (char)('a' + (len % 26));
            len--;
        }
        puts_(in, "\r\n\r\n");
        break;
    }
    case 6: { /* the status line broken */
        static const char *const lines[] = { "HTTP/1.1 20 OK", "HTTP/2 200 OK", "HTTP/1.1 600 X",
                                             "HTTP/1.1 099 X", "HTTP/1.1  200 OK", "HTTP/1.12 200 OK",
                                             "http/1.1 200 OK", "HTTP/1.1 200OK", "HTTP/1.1 2000",
                                             "HTTP/1.1 200 O\x01K", "ICY 200 OK" };
        char *p = memchr(in->b, '\r', in->n);
        if (!p)
            break;
        tail = in->n - (size_t)(p - in->b);
        memcpy(tmp, p, tail);
        in->n = 0;
        puts_(in, PICK(lines));
        put(in, tmp, tail);
        break;
    }
    case 7: /* cut: an incomplete head */
        in->n = at;
        break;
    case 8: /* a smuggling classic added at the end */
        in->n -= 2;
        field(in, PICK(te_names), PICK(te_values));
        puts_(in, "\r\n");
        break;
    case 9:
        in->n -= 2;
        field(in, "Content-Length", PICK(cl_values));
        puts_(in, "\r\n");
        break;
    case 10: { /* 101 fields in all */
        in->n -= 2;
        for (int k = 0; k < 101; k++)
            puts_(in, "X-Many: 1\r\n");
        puts_(in, "\r\n");
        break;
    }
    }
}

/* ---- the oracle ---- */

#define OMAXF 256

struct oracle {
    enum sd_http_resp_req req;
    int complete; /* on_headers_complete ran */
    size_t nf;
    struct { size_t name_off, name_len, val_off, val_len; int in_value; } f[OMAXF];
    const char *base;
    int status, minor, keep_alive, upgrade, ret;
    unsigned flags, uses_te;
    uint64_t cl;
};

static int o_field(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    /* The head is fed at once, so each name and value comes in one piece. */
    if (o->nf < OMAXF) {
        o->f[o->nf].name_off = (size_t)(at - o->base);
        o->f[o->nf].name_len = len;
        o->f[o->nf].val_len = 0;
        o->f[o->nf].val_off = 0;
        o->nf++;
    }
    return 0;
}

static int o_value(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    if (o->nf > 0 && o->nf <= OMAXF) {
        o->f[o->nf - 1].val_off = (size_t)(at - o->base);
        o->f[o->nf - 1].val_len = len;
    }
    return 0;
}

static int o_headers_complete(http_parser *p)
{
    struct oracle *o = p->data;
    o->complete = 1;
    o->status = p->status_code;
    o->minor = p->http_minor;
    o->flags = p->flags;
    o->uses_te = p->uses_transfer_encoding;
    o->cl = p->content_length;
    o->upgrade = p->upgrade;
    o->keep_alive = http_should_keep_alive(p);
    if (o->req == SD_HTTP_RESP_REQ_CONNECT && o->status / 100 == 2)
        o->ret = 2;
    else if (o->req == SD_HTTP_RESP_REQ_HEAD || (o->status / 100 == 1 && o->status != 101))
        o->ret = 1;
    return o->ret;
}

/* The oracle's framing, decided as http_parser.c does after the head. */
static enum sd_http_resp_framing o_framing(const struct oracle *o)
{
    if (o->ret == 2 || o->upgrade)
        return SD_HTTP_RESP_BODY_TUNNEL;
    if (o->ret == 1)
        return o->status / 100 == 1 ? SD_HTTP_RESP_BODY_INTERIM : SD_HTTP_RESP_BODY_NONE;
    if (o->flags & F_CHUNKED)
        return SD_HTTP_RESP_BODY_CHUNKED;
    if (o->uses_te)
        return SD_HTTP_RESP_BODY_CLOSE;
    if (o->flags & F_CONTENTLENGTH)
        return SD_HTTP_RESP_BODY_LENGTH;
    if (o->status / 100 == 1 || o->status == 204 || o->status == 304)
        return o->status / 100 == 1 ? SD_HTTP_RESP_BODY_INTERIM : SD_HTTP_RESP_BODY_NONE;
    return SD_HTTP_RESP_BODY_CLOSE;
}

/* ---- the comparison ---- */

/* Our refusals that the oracle may accept: each a deliberate strictness. */
static const char *const strict_ok[] = {
    "http_resp_bad_line_end",         /* bare LF (and CR): RFC 9112 2.2 allows refusing */
    "http_resp_obs_fold",             /* RFC 9112 5.2: a proxy must refuse or replace it */
    "http_resp_space_before_colon",   /* RFC 9112 5.1: MUST reject (requests), no reason to differ */
    "http_resp_bad_field_value",      /* CTLs other than HTAB in a value */
    "http_resp_bad_field_name",       /* non-token bytes in a name */
    "http_resp_bad_reason",           /* CTLs in the reason */
    "http_resp_bad_status",           /* outside 100-599, or not 3 digits + SP */
    "http_resp_bad_version",          /* not HTTP/1.x */
    "http_resp_bad_transfer_encoding",/* not a list of tokens, chunked not final */
    "http_resp_bad_content_length",   /* over 2^63-1 (the oracle goes to 2^64-2) */
    "http_resp_repeated_content_length", /* never produced against an accepting oracle so far */
    "http_resp_too_many_fields",      /* over 100 fields */
    "http_resp_head_too_large",       /* over 32 KiB (the oracle's limit is 80 KiB) */
};

struct counts {
    unsigned cases, both_accept, agree, both_refuse, we_incomplete_only, oracle_incomplete_only;
    unsigned strict[SD_HTTP_RESP_E_COUNT];
    unsigned te_and_cl, body_on_204_304, upgrade_101, close_wins, te_name_prefix;
    unsigned bad; /* anything not documented */
};

static int strict_allowed(enum sd_http_resp_err e)
{
    const char *w = sd_http_resp_err_str(e);
    for (size_t i = 0; i < sizeof(strict_ok) / sizeof(strict_ok[0]); i++)
        if (strcmp(strict_ok[i], w) == 0)
            return 1;
    return 0;
}

static void report(const struct input *in, const char *what)
{
    fprintf(stderr, "MISMATCH (%s) on %zu bytes: \"", what, in->n);
    for (size_t i = 0; i < in->n && i < 300; i++) {
        unsigned char c = (unsigned char)in->b[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

static void one(struct counts *c, const struct input *in, enum sd_http_resp_req req)
{
    static struct sd_http_resp_field f[SD_HTTP_RESP_MAX_FIELDS];
    static struct oracle o;
    http_parser_settings s;
    http_parser p;
    struct sd_http_resp r;

    c->cases++;
    long n = sd_http_resp_parse(in->b, in->n, req, &r, f, SD_HTTP_RESP_MAX_FIELDS);

    memset(&o, 0, sizeof(o));
    o.req = req;
    o.base = in->b;
    http_parser_settings_init(&s);
    s.on_header_field = o_field;
    s.on_header_value = o_value;
    s.on_headers_complete = o_headers_complete;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &o;
    size_t used = http_parser_execute(&p, &s, in->b, in->n);
    enum http_errno oe = HTTP_PARSER_ERRNO(&p);
    /* Accepted by the oracle: the head went through with no error. What
     * follows the head (nothing here) cannot make it an error. */
    int o_ok = o.complete && oe == HPE_OK;
    int o_err = oe != HPE_OK;
    (void)used;

    if (n > 0 && !o_ok) {
        if (o_err && (r.flags & SD_HTTP_RESP_F_TE_AND_CL) && oe == HPE_UNEXPECTED_CONTENT_LENGTH) {
            c->te_and_cl++;
            return;
        }
        /* http-parser takes any name starting with "transfer-encoding"
         * ("Transfer-Encodings") for TE, then refuses it beside a CL. */
        if (oe == HPE_UNEXPECTED_CONTENT_LENGTH && memmem(in->b, in->n, "Transfer-Encodings:", 19)) {
            c->te_name_prefix++;
            return;
        }
        report(in, o_err ? http_errno_name(oe) : "oracle incomplete, we accept");
        c->bad++;
        return;
    }
    if (n == SD_HTTP_RESP_ERROR && o_ok) {
        c->strict[r.err]++;
        if (!strict_allowed(r.err)) {
            report(in, sd_http_resp_err_str(r.err));
            c->bad++;
        }
        return;
    }
    if (n == SD_HTTP_RESP_INCOMPLETE && o_ok) {
        report(in, "we wait, the oracle accepts");
        c->bad++;
        return;
    }
    if (n <= 0) {
        if (n == SD_HTTP_RESP_ERROR && o_err)
            c->both_refuse++;
        else if (n == SD_HTTP_RESP_INCOMPLETE && o_err)
            c->we_incomplete_only++;
        else if (n == SD_HTTP_RESP_ERROR)
            c->oracle_incomplete_only++;
        else
            c->both_refuse++; /* both incomplete */
        return;
    }

    /* Both accept: the same reading of the head. */
    c->both_accept++;
    int same = o.status == r.status && o.minor == r.minor && o.nf == r.nfields;
    for (size_t i = 0; same && i < r.nfields; i++) {
        /* The oracle keeps trailing OWS in values (RFC 9112 5: it is not
         * part of the value); compare without it. */
        size_t vl = o.f[i].val_len;
        while (vl > 0 && (in->b[o.f[i].val_off + vl - 1] == ' ' ||
                          in->b[o.f[i].val_off + vl - 1] == '\t'))
            vl--;
        same = o.f[i].name_len == f[i].name.len &&
               memcmp(in->b + o.f[i].name_off, f[i].name.s, f[i].name.len) == 0 &&
               vl == f[i].value.len && (vl == 0 || memcmp(in->b + o.f[i].val_off, f[i].value.s, vl) == 0);
    }
    if (!same) {
        report(in, "fields");
        c->bad++;
        return;
    }
    enum sd_http_resp_framing of = o_framing(&o);
    if ((r.status == 204 || r.status == 304) && r.framing == SD_HTTP_RESP_BODY_NONE &&
        of != SD_HTTP_RESP_BODY_NONE) {
        c->body_on_204_304++;
        return;
    }
    if (r.status == 101 && of != SD_HTTP_RESP_BODY_TUNNEL) {
        c->upgrade_101++;
        return;
    }
    if (of != r.framing || (of == SD_HTTP_RESP_BODY_LENGTH && o.cl != r.content_length)) {
        fprintf(stderr, "framing: ours %s, oracle %s\n", sd_http_resp_framing_str(r.framing),
                sd_http_resp_framing_str(of));
        report(in, "framing");
        c->bad++;
        return;
    }
    /* Keep-alive matters where a connection could carry another response:
     * we also drop it for close-delimited bodies and tunnels. */
    /* http_should_keep_alive() runs inside on_headers_complete, before our
     * answer (HEAD, 1xx, CONNECT) reaches the parser: only compared when the
     * answer was 0. "Connection: close" anywhere wins for us; the oracle
     * goes by the last Connection field (class "connection_close_wins"). */
    if (o.ret != 0)
        goto agreed;
    if (!r.keep_alive && memmem(in->b, in->n, "Connection: close", 17)) {
        c->close_wins++;
        return;
    }
    int oka = o.keep_alive && of != SD_HTTP_RESP_BODY_CLOSE && of != SD_HTTP_RESP_BODY_TUNNEL;
    if (oka != r.keep_alive) {
        fprintf(stderr, "keep-alive: ours %d, oracle %d\n", r.keep_alive, oka);
        report(in, "keep_alive");
        c->bad++;
        return;
    }
agreed:
    c->agree++;
}

static void test_responses(void **state)
{
    static struct input in;
    struct counts c;

    (void)state;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < NCASES; i++) {
        enum sd_http_resp_req req;
        gen(&in, &req);
        one(&c, &in, req);
    }
    printf("http_diff responses: %u cases; both accept %u (agree %u, documented framing "
           "differences: body_on_204_304 %u, 101_without_upgrade %u); both refuse or wait %u; "
           "we wait, oracle refuses %u; we refuse, oracle waits %u; we accept, oracle refuses "
           "(te_and_cl) %u, (te_name_prefix, an oracle bug) %u; keep-alive: connection_close_wins %u; undocumented %u\n",
           c.cases, c.both_accept, c.agree, c.body_on_204_304, c.upgrade_101, c.both_refuse,
           c.we_incomplete_only, c.oracle_incomplete_only, c.te_and_cl, c.te_name_prefix, c.close_wins, c.bad);
    printf("http_diff we refuse, oracle accepts (deliberate strictness):\n");
    for (int e = 1; e < SD_HTTP_RESP_E_COUNT; e++)
        if (c.strict[e])
            printf("  %-36s %u\n", sd_http_resp_err_str((enum sd_http_resp_err)e), c.strict[e]);
    assert_int_equal(c.bad, 0);
    /* The generator must reach each kind of outcome, or the test proves little. */
    assert_true(c.agree > NCASES / 10);
    assert_true(c.both_refuse > 0 && c.te_and_cl > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests_name("http_diff", tests, NULL, NULL);
}
