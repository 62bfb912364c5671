/* Differential test of the request parser (sd_http_req_parse) and the
 * chunked decoder (sd_http_chunked_feed) of http/req.c against an oracle:
 * Debian's http-parser 2.9.4 (libhttp-parser-dev) in HTTP_REQUEST mode.
 *
 * The oracle as Debian builds it: the shared library is compiled with
 * HTTP_PARSER_STRICT=0 (it accepts "HXXP/1.1", any byte after the CR that
 * ends the head, obs-text in targets), whatever the header's default says; there is
 * no strict build in Debian, and its laxness only moves cases from "the
 * oracle refuses" to "both accept", where they are compared. It also
 * carries Debian's fix for CVE-2020-8287 (a later Transfer-Encoding field
 * clears "chunked").
 *
 * Input: a seeded PRNG (fixed seed and count: every run builds the same
 * cases) assembles inputs of one to three pipelined requests from a
 * grammar of valid and near-valid pieces: methods (known, unknown, lower
 * case, non-tokens), targets of every form with bad bytes, versions 1.0,
 * 1.1 and others, field names with odd bytes, values with CTLs, obs-text,
 * CR, LF and obs-fold, Host variants, Connection / Proxy-Connection /
 * Expect / Upgrade, Content-Length and Transfer-Encoding alone, together,
 * repeated, conflicting and obfuscated (names and values), and bodies
 * that follow the framing the generator meant: Content-Length bytes (one
 * off now and then), or chunked bodies with extensions, BWS, odd and
 * zero-padded sizes, wrong data lengths, trailers (valid and not), broken
 * line ends; a second or third request follows now and then. A third of
 * the inputs then get one mutation (a CR, LF, NUL or other byte inserted,
 * a CR removed, a random byte, a cut, a long field, about 100 more
 * fields, a request line near 8 KiB, a doubled CRLF, a line removed).
 *
 * Each request is judged by both parsers from the same offset; the
 * oracle is paused at on_message_complete, so it tells where its message
 * ends. Our side: the head parser, then the body by the framing it
 * returned (Content-Length bytes, or the chunked decoder fed in random
 * pieces). The invariant that matters for smuggling:
 *
 *   when BOTH accept a request, they agree on the method, the target, the
 *   version, every field (name, and value without its OWS), the body
 *   framing, the Content-Length, the body bytes (chunked: the decoded data),
 *   where the message ends (so where the next request starts), and
 *   keep-alive; then the next pipelined request is judged the same way.
 *
 * Outcomes:
 *   - we refuse, the oracle accepts: expected (steeldoor is stricter);
 *     tallied by sd_http_err_word and printed;
 *   - we accept, the oracle refuses (or waits), or both accept and
 *     disagree: each must be one of the documented differences below;
 *     anything else fails the test, printing the input.
 *
 * Deliberate differences. Where the oracle's side can be neutralised, it
 * is: the oracle parses a copy of the input in which the bytes it misreads
 * are replaced by bytes of the same length (so every offset is the same),
 * and the rest of the request is compared as strictly as any other; the
 * count is of neutralised inputs (or requests). Otherwise a precise
 * recogniser accepts the one difference, and the count is of such cases.
 *   method_unknown_to_oracle (neutralised: a known method of the same
 *     length in the oracle's copy; a recogniser when none exists): any
 *     token is a method for us (RFC 9110 section 9.1: methods are
 *     extensible, and case matters: "get" is not GET); http-parser knows
 *     only its fixed upper-case list. The framing of a request does not
 *     depend on its method (RFC 9112 section 6.3), CONNECT aside.
 *   te_name_prefix (neutralised: first byte of the name to 'X'):
 *     http-parser takes any field name starting with "Transfer-Encoding"
 *     ("Transfer-Encodings") for Transfer-Encoding, and with Debian's
 *     CVE-2020-8287 fix such a field clears a real "chunked": its bug. For
 *     us it is an ordinary field.
 *   proxy_connection (neutralised the same way): http-parser reads the
 *     non-standard Proxy-Connection like Connection; for us (RFC 9112) it
 *     is an ordinary field. No framing depends on it.
 *   chunk_bws_htab (recogniser: the oracle's error is an HTAB after the
 *     chunk-size digits): "5\t;ext". RFC 9112 section 7.1.1 allows BWS
 *     (SP or HTAB) before a chunk extension's ';'; http-parser knows SP
 *     only. A backend that refuses it refuses the whole request: no second
 *     reading of the length.
 *   trailer_content_length (recogniser: the oracle's Content-Length error
 *     is on a trailer line "Content-Length:"): http-parser parses trailer
 *     fields like header fields and refuses a malformed or repeated
 *     Content-Length there. Trailer fields never frame anything (RFC 9110
 *     section 6.5.1 forbids framing fields in trailers); the decoder judges
 *     their syntax only, and where the body ends is the same either way.
 *   close_oracle_misses (recogniser, keep-alive only; the body is still
 *     compared): we close, the oracle keeps alive. HTTP/1.0 with both
 *     "keep-alive" and "close" (http-parser ignores close in 1.0), or a
 *     "close" element it does not match ("close\t", ",close", a close
 *     after an empty or quoted element). Closing is the safe direction.
 * Not compared after a request that ends HTTP on the connection for
 * either side (CONNECT, an Upgrade, or Connection: close): what follows is
 * a tunnel or nothing. The oracle's keep-alive is read at the end of the
 * head (a "Connection: close" trailer changes it afterwards; not ours).
 *
 * Bugs this test found, fixed in src/http/req.c (with unit tests in
 * test_http_req.c):
 *   - CONNECT with a body-framing field: we read a Content-Length or chunked
 *     body and then a next request, http-parser (like any server that
 *     treats the bytes after a CONNECT head as the tunnel, RFC 9110
 *     section 9.3.6: CONNECT has no content) starts the tunnel right after
 *     the head: the bytes of our "next request" are tunnel data for the
 *     backend. Now refused (Content-Length other than 0: http_cl_invalid,
 *     Transfer-Encoding: http_te_invalid).
 *
 * Deterministic and bounded: about half a second (1.5 s under ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <http_parser.h>

#include "sd/http_req.h"

#define NCASES 40000
#define MAXIN 65536
#define MAXMSG 3

/* xorshift64*: fixed seed, so every run builds the same cases. */
static uint64_t rng_state = 0x7e9c0ffee5eed13ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 33) % n;
}

#define NELEM(a) ((uint32_t)(sizeof(a) / sizeof(a[0])))
#define PICK(a) (a[rnd(NELEM(a))])

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

/* How often a message picks a near-valid piece: 0 never (a clean message),
 * else about once in `weird` picks. Set per message. */
static uint32_t weird;

/* Picks from a[0, nvalid) (the valid pieces first in each pool) unless
 * this pick is a weird one, which picks from the whole pool. */
static const char *pickv(const char *const *a, uint32_t n, uint32_t nvalid)
{
    if (weird == 0 || rnd(weird) != 0)
        return a[rnd(nvalid)];
    return a[rnd(n)];
}

#define PICKV(a, nvalid) pickv(a, NELEM(a), nvalid)

static const char *const methods[] = {
    "GET", "GET", "GET", "POST", "POST", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH",
    "CONNECT", "M-SEARCH", "PROPFIND", "PURGE", "MKCALENDAR", "SOURCE",
    /* 17: near-valid */
    "get", "Get", "FOO", "GETX", "BREW", "X-METHOD", "POST!", "GET_", "G(T", "GE\x01T",
    "G\xc3\x89T", "", "GE T", "CONNECTX",
};
static const char *const targets[] = {
    "/", "/", "/index.html", "/a/b?c=d&e=%20", "/%41%zz", "//double", "/a?b?c", "/?", "/~x|{}",
    "/\"<>\\^`{|}", "http://example.com/x", "HTTP://EXAMPLE.COM", "https://example.com:8443/p?q",
    "http://example.com", "http://example.com?q", "http://[::1]:80/", "http://a%41b/c",
    "http://a.b-c_d~!$&'()*+,;=/",
    /* 18: near-valid */
    "/a#frag", "/a\tb", "/a\x7f", "/caf\xc3\xa9", "/a\x01", "*", "*x", "http://u@example.com/",
    "http://a:99999/", "http://a:123456/", "http://", "http:///x", "http:/x", "ftp://h/",
    "example.com:443", "a/b", "/a b", "", "http://[::1/", "http://x%zz/", "http://a\"b/",
};
static const char *const connect_targets[] = {
    "example.com:443", "[::1]:443", "[2001:db8::1]:8443", "a:1", "a.b-c:99999", "a%41:1",
    /* 6: near-valid */
    "a:", "a", "/x", "http://a:1", "u@a:443", "a:123456", "a:1/b", "[::1]", "*",
};
static const char *const versions[] = {
    "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0",
    /* 4: near-valid */
    "HTTP/0.9", "HTTP/2.0", "HTTP/1.2", "HTTP/1.10", "HTTP/1", "http/1.1", "HTTX/1.1",
    "HTTP/1.1 ", "HTTP/11", "ICE/1.0", "HTTP/1.x", "HTTP/9.9", "HTTP/1.1\t", "",
};
static const char *const seps[] = { " ", "  ", "\t", " \t" };
static const char *const eols[] = {
    "\r\n",
    /* 1: near-valid */
    "\n", "\r", "\r\r\n", " \r\n", "\n\r",
};
static const char *const hosts[] = {
    "example.com", "example.com:443", "", "[::1]:8443", "1.2.3.4", "a%41b", "a_b",
    /* 7: near-valid */
    "a b", "a, b", "u@a", "a/b", "a:x", ":80", "caf\xc3\xa9", "a:123456", "[::1", "\tx",
};
static const char *const names[] = {
    "X-A", "Accept", "User-Agent", "x_custom", "X-!#$%&'*+.^_`|~0", "Cookie", "Trailer", "TE",
    "Keep-Alive", "Content-Length2", "Transfer_Encoding", "Content_Length", "X-Transfer-Encoding",
    "Content-Lengths", "Connections", "Hostx",
    /* 16: near-valid (or names http-parser misreads) */
    "X A", "X(", "X\x80", "", "X\x01", "X ", "X\t", " X", "\tX", "X\x7f", "X\"",
    "Transfer-Encoding-X", "Transfer-Encodings",
};
static const char *const values[] = {
    "v", "", "a \t b", " \t lead and trail \t ", "caf\xc3\xa9", "\x80\xff", "close", "keep-alive",
    "100-continue", "chunked", "text/html; q=0.9", "\t", "a,b",
    /* 13: near-valid */
    "a\x01", "a\x7f", "a\rb", "a\nb", "a\r\n b", "a\r\n\tb", "a\x0b", "a\x1f",
};
static const char *const conn_names[] = {
    "Connection", "connection", "CONNECTION", "Proxy-Connection",
    /* 4: near-valid */
    "Connection ", " Connection",
};
static const char *const conn_values[] = {
    "close", "keep-alive", "Keep-Alive", "CLOSE", "upgrade", "Upgrade, close", "keep-alive, close",
    "close, keep-alive", " close ", "close\t", "\tclose", ",close", "close,", "closex", "xclose",
    "te, close", "keep-alive,upgrade", "clos", "", "a, , close", "\"x\", close", "close ,x",
    /* 22: near-valid */
    "close\r\n keep-alive", "clo\x01se",
};
static const char *const expects[] = {
    "100-continue", "100-Continue",
    /* 2: near-valid */
    "foo", "", "100-continue, x",
};
static const char *const upgrades[] = { "websocket", "h2c", "" };
static const char *const cl_names[] = {
    "Content-Length", "Content-Length", "content-length", "CONTENT-LENGTH",
    /* 4: near-valid */
    "Content-Length ", "Content-Length\t", " Content-Length", "Content_Length", "Content-Lengths",
};
static const char *const cl_values[] = {
    "0", "00", "5", "005", " 5", "5 ", "  12  ",
    /* 7: near-valid */
    "-1", "+5", "5\t", "\t5", "5 5", "5,5", "5, 5", "0x5", "", "999999999999999999",
    "1000000000000000000", "18446744073709551615", "18446744073709551616", "1e3", "\"5\"",
    "5\r\n 5", "\r\n 5", "5\x0b",
};
static const char *const te_names[] = {
    "Transfer-Encoding", "Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING",
    /* 4: near-valid */
    "Transfer-Encoding ", "Transfer-Encoding\t", " Transfer-Encoding", "Transfer_Encoding",
    "Transfer-Encodings", "X-Transfer-Encoding", "Transfer-Encoding-X",
};
static const char *const te_values[] = {
    "chunked", "chunked", "Chunked", "CHUNKED", " chunked ", "chunked ", "cHuNkEd",
    /* 7: near-valid */
    "\tchunked", "chunked\t", "gzip, chunked", "gzip,chunked", "chunked, gzip", "identity",
    "chunked;q=1", "\"chunked\"", ",chunked", "chunked,", "chunked, chunked", "xchunked",
    "chunkedx", "chunk", "chu nked", "", "chunked\x0b", "\r\n chunked", "x-gzip, chunked",
    "chunked\r\n ",
};
static const char *const body_src[] = {
    "hello world ", "0\r\n\r\n", "GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n", "X",
    "abcdefghijklmnopqrstuvwxyz0123456789", "\r\n", "5\r\nhello\r\n0\r\n\r\n",
};
static const char *const chunk_exts[] = {
    ";a=b", ";a", ";a=\"x y\"", " ;a", "\t;a", "  ;a=b", "; a = b", ";a=b;c", ";", ";a=\"\\\"\"",
    ";a\x80",
    /* 11: near-valid */
    ";a\x01", " ", "\t", ";a\rb", ";a\nb", "x", ";a\x7f", " x", "\t\t",
};
static const char *const chunk_eols[] = {
    "\r\n",
    /* 1: near-valid */
    "\n", "\r", " \r\n", "\r\r\n", "",
};
static const char *const data_ends[] = {
    "\r\n",
    /* 1: near-valid */
    "", "\n", "\r", "xx", "\n\r", "\r\r\n",
};
static const char *const trailers[] = {
    "X-T: v", "Trailer-A: 1", "X-Empty:", "Content-Length: 5", "Transfer-Encoding: gzip",
    "Connection: close", "X-Tab:\tv\t", "X-Obs: caf\xc3\xa9", "Host: x",
    /* 9: near-valid */
    "Content-Length: abc", "Content-Length:", "X : v", " X: v", "X(: v", "X: a\x01", "X: a\rb",
    "X", ": v", "X: a\nb", "\tX: v",
};
static const char *const last_chunks[] = {
    "0", "000", "0;ext=1", "0 ;e", "00000000000000000", "0\t;e",
};

/* Writes "name: value\r\n" (the eol may be near-valid). */
static void field(struct input *in, const char *name, const char *value)
{
    puts_(in, name);
    puts_(in, ":");
    if (value[0] != '\0' && rnd(4) != 0)
        puts_(in, " ");
    puts_(in, value);
    puts_(in, PICKV(eols, 1));
}

/* Returns the value of a Content-Length the generator wrote when it is
 * plain digits (spaces around allowed) and small, else -1. */
static long small_number(const char *v)
{
    while (*v == ' ')
        v++;
    long n = 0;
    int digits = 0;
    for (; *v >= '0' && *v <= '9'; v++, digits++)
        if (digits < 7)
            n = n * 10 + (*v - '0');
    while (*v == ' ')
        v++;
    return (*v == '\0' && digits > 0 && digits <= 6) ? n : -1;
}

/* n bytes of body from one of the sources, cycled. */
static void body_bytes(struct input *in, size_t n)
{
    const char *src = PICK(body_src);
    size_t sl = strlen(src);
    for (size_t i = 0; i < n && in->n < MAXIN; i++)
        in->b[in->n++] = src[i % sl];
}

static void chunked_body(struct input *in)
{
    char line[64];
    unsigned nchunks = rnd(4);

    for (unsigned k = 0; k < nchunks; k++) {
        unsigned size = rnd(8) == 0 ? 1 + rnd(600) : 1 + rnd(40);
        switch (rnd(6)) {
        case 0: snprintf(line, sizeof(line), "%X", size); break;
        case 1: snprintf(line, sizeof(line), "%0*x", (int)(2 + rnd(16)), size); break;
        default: snprintf(line, sizeof(line), "%x", size); break;
        }
        if (rnd(150) == 0) /* 16 digits: near 2^64 (the oracle overflows) */
            snprintf(line, sizeof(line), "%xfffffffffffff%x", 1 + rnd(15), rnd(16));
        puts_(in, line);
        if (rnd(4) == 0)
            puts_(in, PICKV(chunk_exts, 11));
        if (rnd(300) == 0) { /* extensions over the 4 KiB bound */
            puts_(in, ";");
            for (unsigned i = 0; i < SD_HTTP_MAX_CHUNK_EXT; i++)
                puts_(in, "e");
        }
        puts_(in, PICKV(chunk_eols, 1));
        size_t n = size;
        if (weird && rnd(weird * 4) == 0) /* data one byte off its size */
            n = rnd(2) ? n + 1 : n - 1;
        body_bytes(in, n);
        puts_(in, PICKV(data_ends, 1));
    }
    if (rnd(12) == 0)
        return; /* no last chunk: the body is cut */
    puts_(in, rnd(5) == 0 ? PICK(last_chunks) : "0");
    puts_(in, PICKV(chunk_eols, 1));
    for (unsigned k = rnd(3) == 0 ? 1 + rnd(3) : 0; k > 0; k--) {
        puts_(in, rnd(4) == 0 ? PICK(trailers) : trailers[rnd(9)]);
        puts_(in, PICKV(eols, 1));
    }
    if (rnd(15) != 0)
        puts_(in, PICKV(eols, 1));
}

/* One request (head and body) appended to in. */
static void gen_msg(struct input *in)
{
    static const uint32_t levels[] = { 0, 0, 4, 8, 16, 30 };
    char num[32];
    long want_cl = -1;
    int want_chunked = 0;

    weird = PICK(levels);
    if (rnd(10) == 0)
        for (unsigned k = 1 + rnd(5); k > 0; k--)
            puts_(in, PICKV(eols, 1));

    const char *m = PICKV(methods, 17);
    puts_(in, m);
    puts_(in, PICKV(seps, 1));
    if (strcmp(m, "CONNECT") == 0)
        puts_(in, PICKV(connect_targets, 6));
    else if (strcmp(m, "OPTIONS") == 0 && rnd(2))
        puts_(in, "*");
    else
        puts_(in, PICKV(targets, 18));
    const char *v = PICKV(versions, 4);
    if (v[0] != '\0') { /* "" leaves "GET /": HTTP/0.9 */
        puts_(in, PICKV(seps, 1));
        puts_(in, v);
    }
    puts_(in, PICKV(eols, 1));

    if (rnd(12) != 0)
        field(in, rnd(10) ? "Host" : "host", PICKV(hosts, 7));
    for (unsigned k = rnd(4); k > 0; k--)
        field(in, PICKV(names, 16), PICKV(values, 13));
    if (rnd(4) == 0)
        field(in, PICKV(conn_names, 4), PICKV(conn_values, 22));
    if (rnd(12) == 0)
        field(in, "Expect", PICKV(expects, 2));
    if (rnd(12) == 0) {
        field(in, "Upgrade", PICK(upgrades));
        if (rnd(2))
            field(in, "Connection", "Upgrade");
    }

    /* Body framing: none, CL, TE, both in either order, repeated. */
    switch (rnd(12)) {
    case 0: case 1: case 2:
        break;
    case 3: case 4: case 5:
        snprintf(num, sizeof(num), "%u", rnd(8) == 0 ? rnd(5000) : rnd(300));
        field(in, PICKV(cl_names, 4), num);
        want_cl = small_number(num);
        break;
    case 6: {
        const char *cv = PICKV(cl_values, 7);
        field(in, PICKV(cl_names, 4), cv);
        want_cl = small_number(cv);
        break;
    }
    case 7: case 8:
        field(in, PICKV(te_names, 4), PICKV(te_values, 7));
        want_chunked = 1;
        break;
    case 9: /* CL.TE or TE.CL */
        if (rnd(2)) {
            field(in, "Content-Length", PICKV(cl_values, 7));
            field(in, PICKV(te_names, 4), PICKV(te_values, 7));
        } else {
            field(in, PICKV(te_names, 4), PICKV(te_values, 7));
            field(in, "Content-Length", PICKV(cl_values, 7));
        }
        want_chunked = rnd(2) == 0;
        want_cl = want_chunked ? -1 : 5;
        break;
    case 10: /* two CL fields, equal or not */
        field(in, "Content-Length", "5");
        field(in, PICK(cl_names), rnd(2) ? "5" : "6");
        want_cl = 5;
        break;
    case 11: /* TE.TE: two TE fields */
        field(in, PICKV(te_names, 4), PICKV(te_values, 7));
        field(in, PICK(te_names), PICK(te_values));
        want_chunked = 1;
        break;
    }
    for (unsigned k = rnd(3); k > 0; k--)
        field(in, PICKV(names, 16), PICKV(values, 13));
    puts_(in, PICKV(eols, 1));

    if (want_chunked) {
        chunked_body(in);
    } else if (want_cl >= 0) {
        size_t n = (size_t)want_cl;
        if (weird && rnd(weird * 2) == 0)
            n = rnd(2) || n == 0 ? n + 1 : n - 1;
        body_bytes(in, n);
    } else if (rnd(10) == 0) {
        body_bytes(in, 1 + rnd(40)); /* stray bytes: the next "request" */
    }
}

/* Mutations over the whole input: each keeps it plausible with one defect. */
static void mutate(struct input *in)
{
    static char tmp[MAXIN];
    size_t at = in->n > 2 ? rnd((uint32_t)(in->n - 2)) : 0, tail;

    switch (rnd(9)) {
    case 0: { /* a byte that splits lines or strings */
        static const char bad[] = { '\r', '\n', '\0', '\x0b', '\x7f', '\t', ' ', ':', '\x80', ';', ',' };
        if (in->n + 1 > MAXIN)
            break;
        tail = in->n - at;
        memcpy(tmp, in->b + at, tail);
        in->b[at] = PICK(bad);
        memcpy(in->b + at + 1, tmp, tail);
        in->n++;
        break;
    }
    case 1: { /* bare LF for one CRLF */
        char *p = memchr(in->b + at, '\r', in->n - at);
        if (!p)
            break;
        memmove(p, p + 1, in->n - (size_t)(p - in->b) - 1);
        in->n--;
        break;
    }
    case 2: /* a random byte */
        if (in->n > 0)
            in->b[at] = (char)rnd(256);
        break;
    case 3: /* cut */
        in->n = at;
        break;
    case 4: { /* a long field (8 to 40 KiB) as the first field */
        char *p = memchr(in->b, '\n', in->n);
        if (!p)
            break;
        size_t pos = (size_t)(p - in->b) + 1, len = 8192 + rnd(32768);
        tail = in->n - pos;
        memcpy(tmp, in->b + pos, tail);
        in->n = pos;
        puts_(in, "X-Long: ");
        while (len-- > 0 && in->n + tail + 2 < MAXIN)
            in->b[in->n++] = (char)('a' + (len % 26));
        puts_(in, "\r\n");
        put(in, tmp, tail);
        break;
    }
    case 5: { /* 100 or 101 more fields */
        char *p = memchr(in->b, '\n', in->n);
        if (!p)
            break;
        size_t pos = (size_t)(p - in->b) + 1;
        tail = in->n - pos;
        memcpy(tmp, in->b + pos, tail);
        in->n = pos;
        for (unsigned k = 98 + rnd(4); k > 0; k--)
            puts_(in, "X-Many: 1\r\n");
        put(in, tmp, tail);
        break;
    }
    case 6: { /* a long request line (8 KiB give or take) */
        char *p = memchr(in->b, ' ', in->n);
        if (!p)
            break;
        size_t pos = (size_t)(p - in->b) + 1, len = 8150 + rnd(100);
        tail = in->n - pos;
        memcpy(tmp, in->b + pos, tail);
        in->n = pos;
        puts_(in, "/");
        while (len-- > 0 && in->n + tail < MAXIN)
            in->b[in->n++] = 'p';
        put(in, tmp, tail);
        break;
    }
    case 7: { /* a CRLF doubled: the head ends early */
        char *p = memchr(in->b + at, '\n', in->n - at);
        if (!p || in->n + 2 > MAXIN)
            break;
        size_t pos = (size_t)(p - in->b) + 1;
        tail = in->n - pos;
        memcpy(tmp, in->b + pos, tail);
        in->n = pos;
        puts_(in, "\r\n");
        put(in, tmp, tail);
        break;
    }
    case 8: { /* a line removed */
        char *p = memchr(in->b + at, '\n', in->n - at);
        if (!p)
            break;
        char *q = memchr(p + 1, '\n', in->n - (size_t)(p + 1 - in->b));
        if (!q)
            break;
        memmove(p + 1, q + 1, in->n - (size_t)(q + 1 - in->b));
        in->n -= (size_t)(q - p);
        break;
    }
    }
}

static void gen(struct input *in)
{
    static const char *const simple[] = {
        "GET /second HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n",
        "POST /third HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "\r\nGET /after-crlf HTTP/1.0\r\n\r\n",
    };

    in->n = 0;
    gen_msg(in);
    for (unsigned k = rnd(3) == 0 ? 1 + rnd(2) : 0; k > 0; k--) {
        if (rnd(2))
            puts_(in, PICK(simple));
        else
            gen_msg(in);
    }
    if (rnd(3) == 0)
        mutate(in);
}

/* ---- the oracle ---- */

#define OMAXF 512

struct oracle {
    const char *base; /* the oracle's copy of the input */
    const char *orig; /* the input, at the same offsets */
    int begun, headers; /* on_message_begin / on_headers_complete ran */
    size_t url_off, url_len;
    size_t nf;
    struct { size_t name_off, name_len, val_off, val_len; } f[OMAXF];
    unsigned method, major, minor, flags, uses_te, upgrade, keep_alive;
    uint64_t cl;
    size_t nbody;
    char body[MAXIN];
};

static int o_begin(http_parser *p)
{
    struct oracle *o = p->data;
    o->begun = 1;
    return 0;
}

static int o_url(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    if (o->url_len == 0)
        o->url_off = (size_t)(at - o->base);
    o->url_len += len; /* one buffer: the pieces are contiguous */
    return 0;
}

static int o_field(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    if (o->headers || o->nf >= OMAXF) /* trailers are not compared */
        return 0;
    o->f[o->nf].name_off = (size_t)(at - o->base);
    o->f[o->nf].name_len = len;
    o->f[o->nf].val_off = 0;
    o->f[o->nf].val_len = 0;
    o->nf++;
    return 0;
}

static int o_value(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    if (o->headers || o->nf == 0 || o->nf > OMAXF)
        return 0;
    o->f[o->nf - 1].val_off = (size_t)(at - o->base);
    o->f[o->nf - 1].val_len = len;
    return 0;
}

static int o_headers_complete(http_parser *p)
{
    struct oracle *o = p->data;
    o->headers = 1;
    o->method = p->method;
    o->major = p->http_major;
    o->minor = p->http_minor;
    o->flags = p->flags;
    o->uses_te = p->uses_transfer_encoding;
    o->cl = p->content_length;
    o->keep_alive = (unsigned)http_should_keep_alive(p);
    return 0;
}

static int o_body(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    memcpy(o->body + o->nbody, o->orig + (at - o->base), len);
    o->nbody += len;
    return 0;
}

static int o_message_complete(http_parser *p)
{
    http_parser_pause(p, 1); /* execute returns: its count is where the message ends */
    return 0;
}

/* Returns 1 when m is one of http-parser's methods. */
static int oracle_knows_method(struct sd_name m)
{
#define XX(num, name, string)                                                                      \
    if (m.len == sizeof(#string) - 1 && memcmp(m.s, #string, m.len) == 0)                        \
        return 1;
    HTTP_METHOD_MAP(XX)
#undef XX
    return 0;
}

/* Returns one of the oracle's methods (CONNECT aside) of length n, or NULL. */
static const char *same_length_method(size_t n)
{
    static const char *const by_len[] = { NULL, NULL, NULL, "GET", "POST", "PATCH", "DELETE",
                                          "OPTIONS", "PROPFIND", "PROPPATCH", "MKCALENDAR",
                                          "UNSUBSCRIBE" };
    return n < NELEM(by_len) ? by_len[n] : NULL;
}

/* ---- our side ---- */

struct ours {
    long head;
    struct sd_http_req req;
    int body;                 /* 1 the message ended, 0 need more, -1 refused */
    enum sd_http_err body_err;
    size_t end;               /* with body == 1: offset just past the message */
    size_t nbody;
    char data[MAXIN];
};

static struct sd_http_field ofields[SD_HTTP_MAX_FIELDS];

/* Parses the request at in->b + off: the head, then its body. */
static void ours_parse(struct ours *u, const struct input *in, size_t off)
{
    u->nbody = 0;
    u->body = 0;
    u->body_err = SD_HTTP_OK;
    u->head = sd_http_req_parse(in->b + off, in->n - off, &u->req, ofields, SD_HTTP_MAX_FIELDS);
    if (u->head <= 0)
        return;
    size_t p = off + (size_t)u->head;
    if (u->req.framing == SD_HTTP_BODY_NONE) {
        u->body = 1;
        u->end = p;
    } else if (u->req.framing == SD_HTTP_BODY_LENGTH) {
        if (u->req.content_length <= in->n - p) {
            memcpy(u->data, in->b + p, (size_t)u->req.content_length);
            u->nbody = (size_t)u->req.content_length;
            u->body = 1;
            u->end = p + (size_t)u->req.content_length;
        }
    } else {
        /* The decoder, fed in random pieces (1 to 64 bytes, or the rest). */
        struct sd_http_chunked c;
        sd_http_chunked_init(&c);
        while (p < in->n && !sd_http_chunked_done(&c)) {
            size_t piece = rnd(4) == 0 ? in->n - p : 1 + rnd(64);
            if (piece > in->n - p)
                piece = in->n - p;
            size_t used = 0;
            while (used < piece && !sd_http_chunked_done(&c)) {
                struct sd_name d;
                long r = sd_http_chunked_feed(&c, in->b + p + used, piece - used, &d);
                if (r < 0) {
                    u->body = -1;
                    u->body_err = c.err;
                    return;
                }
                assert_true(r > 0);
                assert_true(d.len == 0 || (d.s >= in->b + p + used &&
                                           d.s + d.len == in->b + p + used + (size_t)r));
                memcpy(u->data + u->nbody, d.s, d.len);
                u->nbody += d.len;
                used += (size_t)r;
            }
            p += used;
        }
        if (sd_http_chunked_done(&c)) {
            u->body = 1;
            u->end = p;
        }
    }
}

/* ---- the comparison ---- */

enum klass {
    /* we accept, the oracle refuses */
    K_METHOD_UNKNOWN,
    K_TE_NAME_PREFIX,
    K_CHUNK_BWS_HTAB,
    K_TRAILER_CL,
    /* keep-alive */
    K_CLOSE_ORACLE_MISSES,
    K_PROXY_CONNECTION,
    K_COUNT
};

static const char *const klass_names[K_COUNT] = {
    "method_unknown_to_oracle", "te_name_prefix", "chunk_bws_htab", "trailer_content_length",
    "close_oracle_misses", "proxy_connection",
};

struct counts {
    unsigned inputs, messages, agree, agree_chunked, agree_length, agree_pipelined;
    unsigned both_refuse, we_wait_oracle_refuses, we_refuse_oracle_waits, both_wait;
    unsigned strict[SD_HTTP_E_COUNT];
    unsigned klass[K_COUNT];
    unsigned bad;
};

static const struct input *cur;

static void report(const char *what)
{
    fprintf(stderr, "MISMATCH (%s) on %zu bytes: \"", what, cur->n);
    for (size_t i = 0; i < cur->n && i < 400; i++) {
        unsigned char c = (unsigned char)cur->b[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\"\n", cur->n > 400 ? "..." : "");
}

/* A tchar (RFC 9110 section 5.6.2). */
static int all_tchar_byte(unsigned char b)
{
    return (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') ||
           (b != 0 && strchr("!#$%&'*+-.^_`|~", b) != NULL);
}

static int name_is(const char *s, size_t n, const char *want)
{
    return sd_http_token_eq((struct sd_name){ s, n }, want);
}

/* Our head has a Connection element "close" (SP/HTAB trimmed) that the
 * oracle did not see, or is HTTP/1.0 with both keep-alive and close. */
static int close_oracle_misses(const struct sd_http_req *r, const struct oracle *o)
{
    int close = 0, ka = 0;
    for (size_t i = 0; i < r->nfields; i++) {
        if (!name_is(r->fields[i].name.s, r->fields[i].name.len, "connection"))
            continue;
        const char *p = r->fields[i].value.s, *end = p + r->fields[i].value.len;
        while (p < end) {
            const char *e = memchr(p, ',', (size_t)(end - p));
            if (e == NULL)
                e = end;
            const char *s = p, *t = e;
            while (s < t && (*s == ' ' || *s == '\t'))
                s++;
            while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            close |= name_is(s, (size_t)(t - s), "close");
            ka |= name_is(s, (size_t)(t - s), "keep-alive");
            p = e < end ? e + 1 : e;
        }
    }
    if (!close)
        return 0;
    return !(o->flags & F_CONNECTION_CLOSE) || (r->minor == 0 && ka);
}

/* The line of in holding offset at starts with a Content-Length field;
 * at the start of a line, the line before (http-parser refuses an empty
 * value when it sees the next line's first byte). */
static int line_is_content_length(const struct input *in, size_t at)
{
    size_t s = at;
    if (s > 0 && in->b[s - 1] == '\n')
        s--;
    while (s > 0 && in->b[s - 1] != '\n')
        s--;
    return in->n - s >= 15 && sd_http_token_eq((struct sd_name){ in->b + s, 15 }, "content-length:");
}

/* The oracle's error at `at` is an HTAB after a chunk-size's digits. */
static int chunk_htab_bws(const struct input *in, size_t at)
{
    if (at >= in->n || in->b[at] != '\t' || at == 0)
        return 0;
    size_t s = at;
    while (s > 0 && (in->b[s - 1] == ' ' || in->b[s - 1] == '\t'))
        s--;
    if (s == 0)
        return 0;
    unsigned char d = (unsigned char)in->b[s - 1];
    return ((d >= '0' && d <= '9') || ((d | 0x20) >= 'a' && (d | 0x20) <= 'f'));
}

/* The oracle's copy of the input, with its known name bugs made harmless:
 * a field name that starts with "Transfer-Encoding" and goes on (it takes
 * "Transfer-Encodings" for Transfer-Encoding, and with Debian's CVE fix
 * such a field clears a real "chunked"), and every Proxy-Connection name
 * (it reads that non-standard field as Connection). Their first byte
 * becomes 'X': the same length, so every offset is the same in both. */
static struct input oin;

static int at_name(const struct input *in, size_t i, const char *name)
{
    size_t n = strlen(name);
    return (i == 0 || in->b[i - 1] == '\n') && in->n - i >= n &&
           sd_http_token_eq((struct sd_name){ in->b + i, n }, name);
}

static void neutralise(struct counts *c, const struct input *in)
{
    int te = 0, pc = 0;

    memcpy(oin.b, in->b, in->n);
    oin.n = in->n;
    for (size_t i = 0; i < in->n; i++) {
        if (at_name(in, i, "transfer-encoding") && i + 17 < in->n && in->b[i + 17] != ':' &&
            all_tchar_byte((unsigned char)in->b[i + 17])) {
            oin.b[i] = 'X';
            te = 1;
        } else if (at_name(in, i, "proxy-connection")) {
            oin.b[i] = 'X';
            pc = 1;
        }
    }
    c->klass[K_TE_NAME_PREFIX] += (unsigned)te;
    c->klass[K_PROXY_CONNECTION] += (unsigned)pc;
}

static void bad(struct counts *c, const char *what)
{
    report(what);
    c->bad++;
}

/* Judges one input: its requests in turn while both agree. */
static void one(struct counts *c, const struct input *in)
{
    static struct oracle o;
    static struct ours u;
    http_parser_settings s;
    http_parser p;
    size_t off = 0;

    cur = in;
    c->inputs++;
    neutralise(c, in);
    http_parser_settings_init(&s);
    s.on_message_begin = o_begin;
    s.on_url = o_url;
    s.on_header_field = o_field;
    s.on_header_value = o_value;
    s.on_headers_complete = o_headers_complete;
    s.on_body = o_body;
    s.on_message_complete = o_message_complete;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &o;

    for (int msg = 0; msg < MAXMSG && off < in->n; msg++) {
        ours_parse(&u, in, off);
        c->messages++;
        /* A method we accept and the oracle does not know: the oracle's copy
         * gets a known one of the same length (not CONNECT), so the rest of
         * the request is still compared. */
        const char *subst = NULL;
        if (u.head > 0 && !oracle_knows_method(u.req.method)) {
            subst = same_length_method(u.req.method.len);
            if (subst != NULL) {
                memcpy(oin.b + (u.req.method.s - in->b), subst, u.req.method.len);
                c->klass[K_METHOD_UNKNOWN]++;
            }
        }

        memset(&o, 0, offsetof(struct oracle, body));
        o.base = oin.b;
        o.orig = in->b;
        size_t used = http_parser_execute(&p, &s, oin.b + off, in->n - off);
        enum http_errno oe = HTTP_PARSER_ERRNO(&p);
        int o_done = oe == HPE_PAUSED;
        int o_err = !o_done && oe != HPE_OK;
        /* The oracle refuses the transfer coding after on_headers_complete. */
        int o_head_ok = o.headers && !(o_err && oe == HPE_INVALID_TRANSFER_ENCODING);
        size_t o_at = off + used; /* with o_err: the offending byte */

        /* ---- the heads ---- */
        if (u.head == SD_HTTP_ERROR) {
            if (o_head_ok)
                c->strict[u.req.err]++;
            else if (o_err)
                c->both_refuse++;
            else
                c->we_refuse_oracle_waits++;
            return;
        }
        if (u.head == SD_HTTP_INCOMPLETE) {
            if (o_head_ok)
                bad(c, "we wait for the head, the oracle accepts it");
            else if (o_err)
                c->we_wait_oracle_refuses++;
            else
                c->both_wait++;
            return;
        }
        const struct sd_http_req *r = &u.req;
        if (!o_head_ok) {
            if (!o_err) {
                bad(c, "we accept the head, the oracle waits");
            } else if (oe == HPE_INVALID_METHOD && subst == NULL && !oracle_knows_method(r->method)) {
                c->klass[K_METHOD_UNKNOWN]++;
            } else {
                fprintf(stderr, "oracle: %s\n", http_errno_name(oe));
                bad(c, "we accept the head, the oracle refuses it");
            }
            return;
        }

        /* Both accept the head: the same reading of it. */
        const char *om = http_method_str((enum http_method)o.method);
        if (strlen(om) != r->method.len || memcmp(subst ? subst : r->method.s, om, r->method.len) != 0) {
            bad(c, "method");
            return;
        }
        if (o.url_len != r->target.len || o.url_off != (size_t)(r->target.s - in->b)) {
            bad(c, "target");
            return;
        }
        if (o.major != 1 || (int)o.minor != r->minor) {
            bad(c, "version");
            return;
        }
        int same = o.nf == r->nfields;
        for (size_t i = 0; same && i < r->nfields; i++) {
            /* The oracle keeps trailing OWS in values; RFC 9112 section 5
             * says it is not part of the value. */
            size_t vl = o.f[i].val_len;
            while (vl > 0 && (oin.b[o.f[i].val_off + vl - 1] == ' ' || oin.b[o.f[i].val_off + vl - 1] == '\t'))
                vl--;
            same = o.f[i].name_len == ofields[i].name.len &&
                   o.f[i].name_off == (size_t)(ofields[i].name.s - in->b) && vl == ofields[i].value.len &&
                   (vl == 0 || o.f[i].val_off == (size_t)(ofields[i].value.s - in->b));
        }
        if (!same) {
            bad(c, "fields");
            return;
        }

        /* Framing as the oracle decides it at the end of the head: a
         * CONNECT (or an upgrade without a body) ends at the head. */
        int o_tunnel = p.upgrade && (o.method == HTTP_CONNECT ||
                                     (!(o.flags & F_CHUNKED) && (o.cl == 0 || o.cl == UINT64_MAX)));
        enum sd_http_framing of = o_tunnel ? SD_HTTP_BODY_NONE
                                  : (o.flags & F_CHUNKED) ? SD_HTTP_BODY_CHUNKED
                                  : o.cl != UINT64_MAX && o.cl != 0 ? SD_HTTP_BODY_LENGTH
                                                                    : SD_HTTP_BODY_NONE;
        /* "Content-Length: 0" and no body field frame the same message. */
        enum sd_http_framing uf = r->framing == SD_HTTP_BODY_LENGTH && r->content_length == 0
                                      ? SD_HTTP_BODY_NONE
                                      : r->framing;
        if (of != uf || (of == SD_HTTP_BODY_LENGTH && o.cl != r->content_length)) {
            fprintf(stderr, "framing: ours %d (%llu), oracle %d (%llu)%s\n", (int)r->framing,
                    (unsigned long long)r->content_length, (int)of, (unsigned long long)o.cl,
                    o_tunnel ? ", tunnel" : "");
            bad(c, "framing");
            return;
        }
        /* Keep-alive, unless the connection leaves HTTP after this one. */
        int leaves_http = p.upgrade || r->upgrade || o.method == HTTP_CONNECT;
        if (!leaves_http && (int)o.keep_alive != r->keep_alive) {
            if (!r->keep_alive && close_oracle_misses(r, &o)) {
                c->klass[K_CLOSE_ORACLE_MISSES]++;
                leaves_http = 1; /* we close: the body is still compared */
            } else {
                fprintf(stderr, "keep-alive: ours %d, oracle %u\n", r->keep_alive, o.keep_alive);
                bad(c, "keep-alive");
                return;
            }
        }

        /* ---- the bodies ---- */
        if (u.body == 1 && o_done) {
            if (u.end != o_at) {
                fprintf(stderr, "end: ours %zu, oracle %zu\n", u.end, o_at);
                bad(c, "message end");
                return;
            }
            if (u.nbody != o.nbody || memcmp(u.data, o.body, u.nbody) != 0) {
                bad(c, "body bytes");
                return;
            }
            c->agree++;
            c->agree_chunked += r->framing == SD_HTTP_BODY_CHUNKED;
            c->agree_length += r->framing == SD_HTTP_BODY_LENGTH;
            c->agree_pipelined += msg > 0;
            if (leaves_http || !r->keep_alive)
                return;
            http_parser_pause(&p, 0);
            off = u.end;
            continue;
        }
        if (u.body == 1) {
            if (!o_err) {
                bad(c, "we end the body, the oracle waits");
            } else if (oe == HPE_INVALID_CHUNK_SIZE && r->framing == SD_HTTP_BODY_CHUNKED &&
                       chunk_htab_bws(in, o_at)) {
                c->klass[K_CHUNK_BWS_HTAB]++;
            } else if ((oe == HPE_INVALID_CONTENT_LENGTH || oe == HPE_UNEXPECTED_CONTENT_LENGTH) &&
                       r->framing == SD_HTTP_BODY_CHUNKED && o_at > off + (size_t)u.head &&
                       line_is_content_length(in, o_at)) {
                c->klass[K_TRAILER_CL]++;
            } else {
                fprintf(stderr, "oracle: %s at %zu\n", http_errno_name(oe), o_at);
                bad(c, "we accept the body, the oracle refuses it");
            }
            return;
        }
        if (u.body == -1) {
            if (o_done)
                c->strict[u.body_err]++;
            else if (o_err)
                c->both_refuse++;
            else
                c->we_refuse_oracle_waits++;
            return;
        }
        /* We need more of the body. */
        if (o_done) {
            fprintf(stderr, "oracle ends at %zu\n", o_at);
            bad(c, "we wait for the body, the oracle ends it");
        } else if (o_err) {
            c->we_wait_oracle_refuses++;
        } else {
            c->both_wait++;
        }
        return;
    }
}

static void test_requests(void **state)
{
    static struct input in;
    struct counts c;

    (void)state;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < NCASES; i++) {
        gen(&in);
        one(&c, &in);
    }
    printf("http_req_diff: %u inputs, %u requests judged; both accept and agree %u (Content-Length "
           "bodies %u, chunked bodies %u, pipelined after the first %u); both refuse %u; we wait, "
           "oracle refuses %u; we refuse, oracle waits %u; both wait %u; undocumented %u\n",
           c.inputs, c.messages, c.agree, c.agree_length, c.agree_chunked, c.agree_pipelined,
           c.both_refuse, c.we_wait_oracle_refuses, c.we_refuse_oracle_waits, c.both_wait, c.bad);
    printf("http_req_diff documented differences:\n");
    for (int k = 0; k < K_COUNT; k++)
        printf("  %-36s %u\n", klass_names[k], c.klass[k]);
    printf("http_req_diff we refuse, oracle accepts (deliberate strictness):\n");
    unsigned strict = 0;
    for (int e = 1; e < SD_HTTP_E_COUNT; e++)
        if (c.strict[e]) {
            printf("  %-36s %u\n", sd_http_err_word((enum sd_http_err)e), c.strict[e]);
            strict += c.strict[e];
        }
    assert_int_equal(c.bad, 0);
    /* The generator must reach each kind of outcome, or the test proves little. */
    assert_true(c.agree > NCASES / 10);
    assert_true(c.agree_chunked > NCASES / 100 && c.agree_length > NCASES / 100);
    assert_true(c.agree_pipelined > NCASES / 100);
    assert_true(strict > NCASES / 10 && c.both_refuse > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
    };
    return cmocka_run_group_tests_name("http_req_diff", tests, NULL, NULL);
}
