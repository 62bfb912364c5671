/*
 * http/req.c - strict HTTP/1.x request heads and chunked bodies.
 *
 * The head parser works line by line: it first finds the CRLF that ends a
 * line, within the line's size limit, and only then judges the line's
 * bytes. Limits are checked before contents so that a verdict found on a
 * prefix is the verdict on any longer input (the caller can parse again
 * after every read and never sees an answer change).
 *
 * Line ends: only CRLF. RFC 9112 section 2.2 lets a recipient accept a bare
 * LF, but a gateway that does so while the backend does not (or the other
 * way round) disagrees with it on where a field ends, which is the core of
 * request smuggling; clients that send bare LF are in practice hand-written
 * attacks or test tools. A bare CR is refused as RFC 9112 requires.
 */
#include <string.h>

#include "sd/http_req.h"

static const struct {
    int status;
    const char *word;
} sd_http_errs[SD_HTTP_E_COUNT] = {
    [SD_HTTP_OK] = { 200, "http_ok" },
    [SD_HTTP_E_REQUEST_LINE] = { 400, "http_bad_request_line" },
    [SD_HTTP_E_METHOD] = { 400, "http_bad_method" },
    [SD_HTTP_E_TARGET] = { 400, "http_bad_target" },
    [SD_HTTP_E_VERSION] = { 400, "http_bad_version" },
    [SD_HTTP_E_VERSION_UNSUPP] = { 505, "http_version_unsupported" },
    [SD_HTTP_E_URI_TOO_LONG] = { 414, "http_request_line_too_long" },
    [SD_HTTP_E_HEAD_TOO_LARGE] = { 431, "http_head_too_large" },
    [SD_HTTP_E_TOO_MANY_FIELDS] = { 431, "http_too_many_fields" },
    [SD_HTTP_E_EMPTY_LINES] = { 400, "http_leading_empty_lines" },
    [SD_HTTP_E_FIELD_NAME] = { 400, "http_bad_field_name" },
    [SD_HTTP_E_WS_BEFORE_COLON] = { 400, "http_ws_before_colon" },
    [SD_HTTP_E_FIELD_VALUE] = { 400, "http_bad_field_value" },
    [SD_HTTP_E_OBS_FOLD] = { 400, "http_obs_fold" },
    [SD_HTTP_E_BARE_CR] = { 400, "http_bare_cr" },
    [SD_HTTP_E_BARE_LF] = { 400, "http_bare_lf" },
    [SD_HTTP_E_TE_AND_CL] = { 400, "http_te_and_cl" },
    [SD_HTTP_E_CL_MULTIPLE] = { 400, "http_cl_multiple" },
    [SD_HTTP_E_CL_INVALID] = { 400, "http_cl_invalid" },
    [SD_HTTP_E_TE_INVALID] = { 400, "http_te_invalid" },
    [SD_HTTP_E_TE_UNSUPPORTED] = { 501, "http_te_unsupported" },
    [SD_HTTP_E_TE_HTTP10] = { 400, "http_te_http10" },
    [SD_HTTP_E_HOST_MISSING] = { 400, "http_host_missing" },
    [SD_HTTP_E_HOST_MULTIPLE] = { 400, "http_host_multiple" },
    [SD_HTTP_E_HOST_INVALID] = { 400, "http_host_invalid" },
    [SD_HTTP_E_EXPECT] = { 417, "http_expect_unsupported" },
    [SD_HTTP_E_CHUNK_SIZE] = { 400, "http_bad_chunk_size" },
    [SD_HTTP_E_CHUNK_EXT] = { 400, "http_bad_chunk_ext" },
    [SD_HTTP_E_CHUNK_EXT_LONG] = { 400, "http_chunk_ext_too_long" },
    [SD_HTTP_E_CHUNK_DATA_END] = { 400, "http_bad_chunk_end" },
    [SD_HTTP_E_TRAILER] = { 400, "http_bad_trailer" },
    [SD_HTTP_E_TRAILER_LARGE] = { 431, "http_trailer_too_large" },
};

int sd_http_err_status(enum sd_http_err e)
{
    if ((unsigned)e >= SD_HTTP_E_COUNT)
        return 400;
    return sd_http_errs[e].status;
}

const char *sd_http_err_word(enum sd_http_err e)
{
    if ((unsigned)e >= SD_HTTP_E_COUNT)
        return "http_unknown";
    return sd_http_errs[e].word;
}

/* tchar of RFC 9110 section 5.6.2, the bytes of a token: ALPHA, DIGIT and
 * !#$%&'*+-.^_`|~, as a bitmap (one test per byte: names are hot). */
static const uint64_t tchar_map[4] = { 0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull, 0, 0 };

static int is_tchar(unsigned char c)
{
    return (int)(tchar_map[c >> 6] >> (c & 63) & 1);
}

/* A byte allowed in a field value: VCHAR, SP, HTAB, obs-text. */
static int is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Returns 1 when c is a hex digit (either case). */
static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Returns the value of the hex digit c (is_hex(c) holds). */
static unsigned hex_val(unsigned char c)
{
    if (c <= '9')
        return (unsigned)(c - '0');
    return (unsigned)((c | 0x20) - 'a' + 10);
}

/* Returns c with an ASCII capital letter lowered; other bytes as they are
 * (no locale: a header name is ASCII, 0xC0 must not match 0xE0). */
static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

int sd_http_token_eq(struct sd_name a, const char *b)
{
    size_t n = strlen(b);

    if (a.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a.s[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

int sd_http_name_eq_loose(struct sd_name a, struct sd_name b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = lower((unsigned char)a.s[i]);
        unsigned char y = lower((unsigned char)b.s[i]);

        if (x == '_')
            x = '-';
        if (y == '_')
            y = '-';
        if (x != y)
            return 0;
    }
    return 1;
}

/* Returns 1 when s[0, n) is a uri-host with an optional ":" port of at
 * most 5 digits: an IP-literal in brackets (hex digits, ':', '.', which
 * covers IPv6 and IPv4-mapped forms) or a reg-name (unreserved, sub-delims,
 * pct-encoded; an IPv4 address is one). Empty is accepted only when
 * allow_empty (Host may be empty, RFC 9110 section 7.2). userinfo ('@') is
 * never accepted: RFC 9110 deprecates it and it confuses name checks. */
static int host_port_ok(const char *s, size_t n, int allow_empty)
{
    size_t i = 0;

    if (n == 0)
        return allow_empty;
    if (s[0] == '[') {
        for (i = 1; i < n && s[i] != ']'; i++)
            if (!is_hex((unsigned char)s[i]) && s[i] != ':' && s[i] != '.')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        for (; i < n && s[i] != ':'; i++) {
            unsigned char c = (unsigned char)s[i];

            if (c == '%') {
                if (i + 2 >= n || !is_hex((unsigned char)s[i + 1]) || !is_hex((unsigned char)s[i + 2]))
                    return 0;
                i += 2;
            } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         (c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL))) {
                return 0;
            }
        }
        if (i == 0)
            return 0;
    }
    if (i == n)
        return 1;
    if (s[i] != ':' || n - i - 1 > 5)
        return 0;
    for (i++; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Finds the CRLF ending the line at p, whose CR may be at p[max] at the
 * latest. Returns 1 with *eol at the CR; 0 when end comes first (need
 * more); -1 with *err set to SD_HTTP_E_BARE_LF / SD_HTTP_E_BARE_CR when one
 * comes first, or to lim_err when the line is known to be too long. */
static int find_eol(const char *p, const char *end, size_t max, enum sd_http_err lim_err,
                    const char **eol, enum sd_http_err *err)
{
    size_t avail = (size_t)(end - p);
    size_t n = avail < max + 1 ? avail : max + 1;
    const char *cr = memchr(p, '\r', n);
    size_t upto = cr != NULL ? (size_t)(cr - p) : n;

    if (memchr(p, '\n', upto) != NULL) {
        *err = SD_HTTP_E_BARE_LF;
        return -1;
    }
    if (cr == NULL) {
        if (avail > max) {
            *err = lim_err;
            return -1;
        }
        return 0;
    }
    if (cr + 1 == end)
        return 0;
    if (cr[1] != '\n') {
        *err = SD_HTTP_E_BARE_CR;
        return -1;
    }
    *eol = cr;
    return 1;
}

/* Judges a request target t (not empty) for method m: origin-form for any
 * method, absolute-form http(s)://authority[/...], authority-form only
 * for CONNECT, asterisk-form only for OPTIONS. Returns the form, or -1. */
static int parse_target(struct sd_name m, struct sd_name t)
{
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.s[i];

        /* Visible ASCII only; '#' starts a fragment, which a client never
         * sends (RFC 9112 section 3.2), so it is refused as well. */
        if (c < 0x21 || c > 0x7e || c == '#')
            return -1;
    }
    if (m.len == 7 && memcmp(m.s, "CONNECT", 7) == 0) {
        /* authority-form: uri-host ":" port, the port required. */
        const char *colon = NULL;

        for (size_t i = t.len; i > 0; i--)
            if (t.s[i - 1] == ':') {
                colon = t.s + i - 1;
                break;
            }
        if (colon == NULL || colon + 1 == t.s + t.len || !host_port_ok(t.s, t.len, 0))
            return -1;
        return SD_HTTP_TARGET_AUTHORITY;
    }
    if (t.s[0] == '/')
        return SD_HTTP_TARGET_ORIGIN;
    if (t.len == 1 && t.s[0] == '*')
        return m.len == 7 && memcmp(m.s, "OPTIONS", 7) == 0 ? SD_HTTP_TARGET_ASTERISK : -1;
    size_t skip = 0;
    if (t.len >= 7 && sd_http_token_eq((struct sd_name){ t.s, 7 }, "http://"))
        skip = 7;
    else if (t.len >= 8 && sd_http_token_eq((struct sd_name){ t.s, 8 }, "https://"))
        skip = 8;
    if (skip == 0)
        return -1;
    size_t a = skip;
    while (a < t.len && t.s[a] != '/' && t.s[a] != '?')
        a++;
    if (!host_port_ok(t.s + skip, a - skip, 0))
        return -1;
    return SD_HTTP_TARGET_ABSOLUTE;
}

/* Parses the request line l[0, n) into req. Returns SD_HTTP_OK or why not. */
static enum sd_http_err parse_request_line(const char *l, size_t n, struct sd_http_req *req)
{
    const char *sp1 = memchr(l, ' ', n);
    if (sp1 == NULL || sp1 == l)
        return SD_HTTP_E_REQUEST_LINE;
    const char *rest = sp1 + 1, *end = l + n;
    const char *sp2 = memchr(rest, ' ', (size_t)(end - rest));
    if (sp2 == NULL || sp2 == rest)
        return SD_HTTP_E_REQUEST_LINE;

    req->method = (struct sd_name){ l, (size_t)(sp1 - l) };
    for (size_t i = 0; i < req->method.len; i++)
        if (!is_tchar((unsigned char)l[i]))
            return SD_HTTP_E_METHOD;

    req->target = (struct sd_name){ rest, (size_t)(sp2 - rest) };
    int form = parse_target(req->method, req->target);
    if (form < 0)
        return SD_HTTP_E_TARGET;
    req->form = (enum sd_http_target_form)form;

    /* HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive. */
    const char *v = sp2 + 1;
    size_t vn = (size_t)(end - v);
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return SD_HTTP_E_VERSION;
    if (v[5] != '1' || v[7] > '1')
        return SD_HTTP_E_VERSION_UNSUPP;
    req->minor = v[7] - '0';
    return SD_HTTP_OK;
}

/* What the fields said about framing and the connection, gathered over
 * the head and judged at its end. */
struct head_state {
    int ncl, nte, te_chunked, te_other, conn_close, conn_ka;
};

/* Returns the next element of the comma-separated list at *p (before end),
 * without its SP/HTAB around it, and moves *p past it and its comma. */
static struct sd_name next_elem(const char **p, const char *end)
{
    const char *s = *p, *e;

    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    e = s;
    while (e < end && *e != ',')
        e++;
    *p = e < end ? e + 1 : e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return (struct sd_name){ s, (size_t)(e - s) };
}

/* Returns 1 when n is a token: not empty, tchar bytes only. */
static int all_tchar(struct sd_name n)
{
    for (size_t i = 0; i < n.len; i++)
        if (!is_tchar((unsigned char)n.s[i]))
            return 0;
    return n.len > 0;
}

/* Transfer-Encoding, one field value v (trimmed), raw value r. Only a list
 * of tokens whose last element overall is the one and only "chunked" is
 * understood. HTAB anywhere is refused: framing fields must read the same
 * to every parser, and "Transfer-Encoding:\tchunked" is a known TE.TE
 * obfuscation some backends do not trim. Returns SD_HTTP_OK or why not. */
static enum sd_http_err field_te(struct head_state *st, struct sd_name v, struct sd_name r, int minor)
{
    if (minor == 0)
        return SD_HTTP_E_TE_HTTP10;
    if (memchr(r.s, '\t', r.len) != NULL || v.len == 0)
        return SD_HTTP_E_TE_INVALID;
    st->nte++;
    const char *p = v.s, *end = v.s + v.len;
    while (p < end) {
        struct sd_name el = next_elem(&p, end);

        if (!all_tchar(el))
            return SD_HTTP_E_TE_INVALID; /* empty, quoted, parameters */
        if (st->te_chunked)
            return SD_HTTP_E_TE_INVALID; /* chunked not last, or twice */
        if (sd_http_token_eq(el, "chunked"))
            st->te_chunked = 1;
        else
            st->te_other = 1;
    }
    if (end[-1] == ',')
        return SD_HTTP_E_TE_INVALID;
    return SD_HTTP_OK;
}

/* Content-Length: 1 to 18 digits (below 2^63), once. A list, even of equal
 * values, is refused: RFC 9110 lets a recipient merge them, a backend may
 * not, and two readings of one length is what smuggling needs. Sets
 * req->content_length; returns SD_HTTP_OK or why not. */
static enum sd_http_err field_cl(struct head_state *st, struct sd_http_req *req, struct sd_name v,
                                 struct sd_name r)
{
    if (st->ncl++ > 0 || memchr(v.s, ',', v.len) != NULL)
        return SD_HTTP_E_CL_MULTIPLE;
    if (v.len == 0 || v.len > 18 || memchr(r.s, '\t', r.len) != NULL)
        return SD_HTTP_E_CL_INVALID;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.s[i] < '0' || v.s[i] > '9')
            return SD_HTTP_E_CL_INVALID;
        n = n * 10 + (uint64_t)(v.s[i] - '0');
    }
    req->content_length = n;
    return SD_HTTP_OK;
}

/* Judges one header line l[0, n) (no CRLF, not empty) and records it as
 * field f, and what it means in req and st. Returns SD_HTTP_OK or why not. */
static enum sd_http_err parse_field(const char *l, size_t n, struct sd_http_req *req,
                                    struct head_state *st, struct sd_http_field *f)
{
    if (l[0] == ' ' || l[0] == '\t')
        return SD_HTTP_E_OBS_FOLD;
    const char *colon = memchr(l, ':', n);
    if (colon == NULL || colon == l)
        return SD_HTTP_E_FIELD_NAME;
    if (colon[-1] == ' ' || colon[-1] == '\t')
        return SD_HTTP_E_WS_BEFORE_COLON;
    struct sd_name name = { l, (size_t)(colon - l) };
    if (!all_tchar(name))
        return SD_HTTP_E_FIELD_NAME;

    struct sd_name raw = { colon + 1, n - name.len - 1 };
    for (size_t i = 0; i < raw.len; i++)
        if (!is_value_byte((unsigned char)raw.s[i]))
            return SD_HTTP_E_FIELD_VALUE;
    const char *s = raw.s, *e = raw.s + raw.len;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    struct sd_name v = { s, (size_t)(e - s) };
    f->name = name;
    f->value = v;

    /* The fields that decide framing, routing and the connection. Names are
     * matched exactly (case aside): "Transfer_Encoding" is just a field. */
    if (sd_http_token_eq(name, "content-length"))
        return field_cl(st, req, v, raw);
    if (sd_http_token_eq(name, "transfer-encoding"))
        return field_te(st, v, raw, req->minor);
    if (sd_http_token_eq(name, "host")) {
        if (req->has_host)
            return SD_HTTP_E_HOST_MULTIPLE;
        if (!host_port_ok(v.s, v.len, 1))
            return SD_HTTP_E_HOST_INVALID;
        req->has_host = 1;
        req->host = v;
        return SD_HTTP_OK;
    }
    if (sd_http_token_eq(name, "connection")) {
        const char *p = v.s;
        while (p < v.s + v.len) {
            struct sd_name el = next_elem(&p, v.s + v.len);
            if (sd_http_token_eq(el, "close"))
                st->conn_close = 1;
            else if (sd_http_token_eq(el, "keep-alive"))
                st->conn_ka = 1;
        }
        return SD_HTTP_OK;
    }
    if (sd_http_token_eq(name, "expect")) {
        /* Only 100-continue is defined; anything else is answered 417
         * (RFC 9110 section 10.1.1) rather than passed on unknown. An
         * HTTP/1.0 client cannot read a 100 response: ignored there. */
        if (!sd_http_token_eq(v, "100-continue"))
            return SD_HTTP_E_EXPECT;
        req->expect_continue = req->minor == 1;
        return SD_HTTP_OK;
    }
    if (sd_http_token_eq(name, "upgrade"))
        req->upgrade = 1;
    return SD_HTTP_OK;
}

/* Records e in req; returns SD_HTTP_ERROR. */
static long fail(struct sd_http_req *req, enum sd_http_err e)
{
    req->err = e;
    return SD_HTTP_ERROR;
}

long sd_http_req_parse(const char *buf, size_t len, struct sd_http_req *req,
                       struct sd_http_field *fields, size_t max_fields)
{
    const char *p = buf, *end = NULL, *eol = NULL;
    enum sd_http_err err = SD_HTTP_OK;
    struct head_state st = { 0 };
    size_t empty = 0;
    int r;

    memset(req, 0, sizeof(*req));
    req->fields = fields;
    if (len == 0)
        return SD_HTTP_INCOMPLETE; /* (buf may then be NULL) */
    end = buf + len;
    if (max_fields > SD_HTTP_MAX_FIELDS)
        max_fields = SD_HTTP_MAX_FIELDS;

    /* RFC 9112 section 2.2: a server SHOULD ignore at least one empty line
     * before the request line (some clients send a CRLF after a body). */
    for (;;) {
        if (p == end)
            return SD_HTTP_INCOMPLETE;
        if (*p == '\n')
            return fail(req, SD_HTTP_E_BARE_LF);
        if (*p != '\r')
            break;
        if (p + 1 == end)
            return SD_HTTP_INCOMPLETE;
        if (p[1] != '\n')
            return fail(req, SD_HTTP_E_BARE_CR);
        if (++empty > SD_HTTP_MAX_EMPTY_LINES)
            return fail(req, SD_HTTP_E_EMPTY_LINES);
        p += 2;
    }

    r = find_eol(p, end, SD_HTTP_MAX_REQUEST_LINE, SD_HTTP_E_URI_TOO_LONG, &eol, &err);
    if (r <= 0)
        return r == 0 ? SD_HTTP_INCOMPLETE : fail(req, err);
    err = parse_request_line(p, (size_t)(eol - p), req);
    if (err != SD_HTTP_OK)
        return fail(req, err);
    p = eol + 2;

    for (;;) {
        /* The head, final CRLF included, ends at buf + SD_HTTP_MAX_HEAD at
         * the latest, so a line's CR is at SD_HTTP_MAX_HEAD - 2 at most. */
        size_t off = (size_t)(p - buf), lim = SD_HTTP_MAX_HEAD - 2;
        if (off > lim)
            return p == end ? SD_HTTP_INCOMPLETE : fail(req, SD_HTTP_E_HEAD_TOO_LARGE);
        r = find_eol(p, end, lim - off, SD_HTTP_E_HEAD_TOO_LARGE, &eol, &err);
        if (r <= 0)
            return r == 0 ? SD_HTTP_INCOMPLETE : fail(req, err);
        if (eol == p)
            break;
        if (req->nfields >= max_fields)
            return fail(req, SD_HTTP_E_TOO_MANY_FIELDS);
        err = parse_field(p, (size_t)(eol - p), req, &st, &fields[req->nfields]);
        if (err != SD_HTTP_OK)
            return fail(req, err);
        req->nfields++;
        p = eol + 2;
    }
    p = eol + 2;

    if (st.nte > 0 && st.ncl > 0)
        return fail(req, SD_HTTP_E_TE_AND_CL);
    if (st.nte > 0) {
        if (st.te_other)
            return fail(req, SD_HTTP_E_TE_UNSUPPORTED);
        req->framing = SD_HTTP_BODY_CHUNKED;
    } else if (st.ncl > 0) {
        req->framing = SD_HTTP_BODY_LENGTH;
    }
    /* CONNECT has no content (RFC 9110 section 9.3.6): a backend takes the
     * bytes after its head for the tunnel, so reading a body there and then
     * a next request would be a second reading of the same bytes. Only a
     * Content-Length of 0 reads the same both ways. */
    if (req->form == SD_HTTP_TARGET_AUTHORITY && req->framing != SD_HTTP_BODY_NONE &&
        !(req->framing == SD_HTTP_BODY_LENGTH && req->content_length == 0))
        return fail(req, req->framing == SD_HTTP_BODY_CHUNKED ? SD_HTTP_E_TE_INVALID : SD_HTTP_E_CL_INVALID);
    if (req->minor == 1 && !req->has_host)
        return fail(req, SD_HTTP_E_HOST_MISSING);
    req->keep_alive = req->minor == 1 ? !st.conn_close : (st.conn_ka && !st.conn_close);
    return (long)(p - buf);
}

/* Chunked decoder states; 0 is the start, so a zeroed struct is ready. */
enum {
    CH_SIZE0,    /* first hex digit of a chunk-size */
    CH_SIZE,     /* more digits, ';', BWS or CR */
    CH_SIZE_BWS, /* SP/HTAB after the size: more of it or ';' */
    CH_EXT,      /* chunk extensions up to CR */
    CH_SIZE_LF,  /* LF ending the chunk line */
    CH_DATA,
    CH_DATA_CR,  /* CRLF after the data */
    CH_DATA_LF,
    CH_TR_START, /* start of a trailer line (or the final CRLF) */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_END_LF,
    CH_DONE,
    CH_ERROR
};

void sd_http_chunked_init(struct sd_http_chunked *c)
{
    memset(c, 0, sizeof(*c));
}

int sd_http_chunked_done(const struct sd_http_chunked *c)
{
    return c->state == CH_DONE;
}

/* Makes c refuse from now on with e; returns SD_HTTP_ERROR. */
static long ch_fail(struct sd_http_chunked *c, enum sd_http_err e)
{
    c->state = CH_ERROR;
    c->err = e;
    return SD_HTTP_ERROR;
}

long sd_http_chunked_feed(struct sd_http_chunked *c, const char *buf, size_t len,
                          struct sd_name *data)
{
    size_t i = 0;

    data->s = buf;
    data->len = 0;
    if (c->state == CH_ERROR)
        return SD_HTTP_ERROR;
    while (i < len && c->state != CH_DONE) {
        unsigned char b = (unsigned char)buf[i];

        if (c->state == CH_DATA) {
            size_t k = len - i;
            if (k > c->remaining)
                k = (size_t)c->remaining;
            data->s = buf + i;
            data->len = k;
            c->remaining -= k;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            return (long)(i + k);
        }
        if (c->state >= CH_TR_START && ++c->trailer > SD_HTTP_MAX_TRAILER)
            return ch_fail(c, SD_HTTP_E_TRAILER_LARGE);
        switch (c->state) {
        case CH_SIZE0:
            if (b == '\n')
                return ch_fail(c, SD_HTTP_E_BARE_LF);
            if (!is_hex(b))
                return ch_fail(c, SD_HTTP_E_CHUNK_SIZE);
            c->remaining = hex_val(b);
            c->count = 1;
            c->state = CH_SIZE;
            break;
        case CH_SIZE:
            if (is_hex(b)) {
                /* 16 digits fill 64 bits exactly: no overflow possible. */
                if (++c->count > SD_HTTP_MAX_CHUNK_DIGITS)
                    return ch_fail(c, SD_HTTP_E_CHUNK_SIZE);
                c->remaining = c->remaining << 4 | hex_val(b);
            } else if (b == '\r') {
                c->state = CH_SIZE_LF;
            } else if (b == ';' || b == ' ' || b == '\t') {
                c->count = 1;
                c->state = b == ';' ? CH_EXT : CH_SIZE_BWS;
            } else if (b == '\n') {
                return ch_fail(c, SD_HTTP_E_BARE_LF);
            } else {
                return ch_fail(c, SD_HTTP_E_CHUNK_SIZE);
            }
            break;
        case CH_SIZE_BWS:
        case CH_EXT:
            /* BWS is only allowed before a ';' (RFC 9112 section 7.1.1);
             * an extension's bytes are judged as a field value's. */
            if (b == '\r' && c->state == CH_EXT) {
                c->state = CH_SIZE_LF;
                break;
            }
            if (b == '\n')
                return ch_fail(c, SD_HTTP_E_BARE_LF);
            if (++c->count > SD_HTTP_MAX_CHUNK_EXT)
                return ch_fail(c, SD_HTTP_E_CHUNK_EXT_LONG);
            if (c->state == CH_SIZE_BWS) {
                if (b == ';')
                    c->state = CH_EXT;
                else if (b != ' ' && b != '\t')
                    return ch_fail(c, SD_HTTP_E_CHUNK_EXT);
            } else if (!is_value_byte(b)) {
                return ch_fail(c, SD_HTTP_E_CHUNK_EXT);
            }
            break;
        case CH_SIZE_LF:
            if (b != '\n')
                return ch_fail(c, SD_HTTP_E_BARE_CR);
            c->state = c->remaining == 0 ? CH_TR_START : CH_DATA;
            break;
        case CH_DATA_CR:
            if (b != '\r')
                return ch_fail(c, SD_HTTP_E_CHUNK_DATA_END);
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (b != '\n')
                return ch_fail(c, SD_HTTP_E_CHUNK_DATA_END);
            c->state = CH_SIZE0;
            break;
        case CH_TR_START:
            if (b == '\r')
                c->state = CH_END_LF;
            else if (b == '\n')
                return ch_fail(c, SD_HTTP_E_BARE_LF);
            else if (b == ' ' || b == '\t')
                return ch_fail(c, SD_HTTP_E_OBS_FOLD);
            else if (is_tchar(b))
                c->state = CH_TR_NAME;
            else
                return ch_fail(c, SD_HTTP_E_TRAILER);
            break;
        case CH_TR_NAME:
            if (b == ':')
                c->state = CH_TR_VALUE;
            else if (b == ' ' || b == '\t')
                return ch_fail(c, SD_HTTP_E_WS_BEFORE_COLON);
            else if (b == '\n')
                return ch_fail(c, SD_HTTP_E_BARE_LF);
            else if (!is_tchar(b))
                return ch_fail(c, SD_HTTP_E_TRAILER);
            break;
        case CH_TR_VALUE:
            if (b == '\r')
                c->state = CH_TR_LF;
            else if (b == '\n')
                return ch_fail(c, SD_HTTP_E_BARE_LF);
            else if (!is_value_byte(b))
                return ch_fail(c, SD_HTTP_E_FIELD_VALUE);
            break;
        case CH_TR_LF:
        case CH_END_LF:
            if (b != '\n')
                return ch_fail(c, SD_HTTP_E_BARE_CR);
            c->state = c->state == CH_TR_LF ? CH_TR_START : CH_DONE;
            break;
        default:
            return ch_fail(c, SD_HTTP_E_CHUNK_SIZE);
        }
        i++;
    }
    return (long)i;
}
