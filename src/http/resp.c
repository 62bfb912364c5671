/*
 * resp.c - the strict HTTP/1.x response-head parser (sd/http_resp.h).
 *
 * One left-to-right pass over at most SD_HTTP_RESP_MAX_HEAD bytes checks
 * the syntax and records the fields; a second pass over the recorded
 * fields (only once the head is complete) decides the framing. Each
 * syntax error is raised at the byte that causes it, which is what makes a
 * prefix's result either INCOMPLETE or the whole input's result.
 */
#include "sd/http_resp.h"

#include <string.h>

/* Scan state: the buffer and how far this head may reach. */
struct scan {
    const char *buf;
    size_t limit; /* min(len, SD_HTTP_RESP_MAX_HEAD) */
    int capped;   /* limit is the head cap, not the end of the input */
};

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar and the SP/HTAB allowed between them: VCHAR, obs-text. */
static int is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int eq_nocase(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);

    if (len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (a != b)
            return 0;
    }
    return 1;
}

/* Result when the scan needs byte i and does not have it: past the head
 * cap that is an error (the head is too large whatever follows), before
 * it only "more bytes, please". */
static long need_more(const struct scan *sc, struct sd_http_resp *out)
{
    if (sc->capped) {
        out->err = SD_HTTP_RESP_E_HEAD_TOO_LARGE;
        return SD_HTTP_RESP_ERROR;
    }
    return SD_HTTP_RESP_INCOMPLETE;
}

static long fail(struct sd_http_resp *out, enum sd_http_resp_err e)
{
    out->err = e;
    return SD_HTTP_RESP_ERROR;
}

/* A CR at *i must be followed by LF; on success *i is past the LF. Returns 0,
 * or the parse result to hand back. */
static long crlf(const struct scan *sc, size_t *i, struct sd_http_resp *out)
{
    if (*i + 1 >= sc->limit)
        return need_more(sc, out);
    if (sc->buf[*i + 1] != '\n')
        return fail(out, SD_HTTP_RESP_E_LINE_END);
    *i += 2;
    return 0;
}

/* "HTTP/1.x NNN reason CRLF". The SP and reason are optional together: the
 * reason carries nothing (RFC 9112 4: a client SHOULD ignore it), and
 * common servers send "HTTP/1.1 200\r\n". */
static long status_line(const struct scan *sc, size_t *pi, struct sd_http_resp *out)
{
    static const char prefix[] = "HTTP/1.";
    const char *b = sc->buf;
    size_t i = 0;

    for (; i < sizeof(prefix) - 1; i++) {
        if (i >= sc->limit)
            return need_more(sc, out);
        if (b[i] != prefix[i])
            return fail(out, SD_HTTP_RESP_E_VERSION);
    }
    if (i >= sc->limit)
        return need_more(sc, out);
    if (b[i] < '0' || b[i] > '9')
        return fail(out, SD_HTTP_RESP_E_VERSION);
    out->minor = b[i++] - '0';
    if (i >= sc->limit)
        return need_more(sc, out);
    if (b[i++] != ' ')
        return fail(out, SD_HTTP_RESP_E_VERSION);
    out->status = 0;
    for (int d = 0; d < 3; d++, i++) {
        if (i >= sc->limit)
            return need_more(sc, out);
        /* RFC 9110 15: values outside 100-599 are invalid. */
        if (b[i] < (d == 0 ? '1' : '0') || b[i] > (d == 0 ? '5' : '9'))
            return fail(out, SD_HTTP_RESP_E_STATUS);
        out->status = out->status * 10 + (b[i] - '0');
    }
    if (i >= sc->limit)
        return need_more(sc, out);
    if (b[i] == ' ') {
        i++;
    } else if (b[i] != '\r') {
        /* "2000", "200x", or a bare LF: the status is not 3 digits + SP. */
        return fail(out, b[i] == '\n' ? SD_HTTP_RESP_E_LINE_END : SD_HTTP_RESP_E_STATUS);
    }
    size_t start = i;
    for (;; i++) {
        if (i >= sc->limit)
            return need_more(sc, out);
        unsigned char c = (unsigned char)b[i];
        if (c == '\r')
            break;
        if (c == '\n')
            return fail(out, SD_HTTP_RESP_E_LINE_END);
        if (!is_value_byte(c))
            return fail(out, SD_HTTP_RESP_E_REASON);
    }
    out->reason.s = b + start;
    out->reason.len = i - start;
    long r = crlf(sc, &i, out);
    if (r)
        return r;
    *pi = i;
    return 0;
}

/* One field line at *pi (not the empty line, not a fold). */
static long field_line(const struct scan *sc, size_t *pi, struct sd_http_resp_field *f,
                       struct sd_http_resp *out)
{
    const char *b = sc->buf;
    size_t i = *pi, start = i;

    for (;; i++) {
        if (i >= sc->limit)
            return need_more(sc, out);
        unsigned char c = (unsigned char)b[i];
        if (c == ':')
            break;
        /* "Name : v" is how one parser sees "Name" and another "Name ". */
        if (c == ' ' || c == '\t')
            return fail(out, i > start ? SD_HTTP_RESP_E_SPACE_COLON : SD_HTTP_RESP_E_FIELD_NAME);
        if (!is_tchar(c))
            return fail(out, SD_HTTP_RESP_E_FIELD_NAME);
    }
    if (i == start)
        return fail(out, SD_HTTP_RESP_E_FIELD_NAME);
    f->name.s = b + start;
    f->name.len = i - start;
    i++;
    for (;; i++) { /* leading OWS */
        if (i >= sc->limit)
            return need_more(sc, out);
        if (b[i] != ' ' && b[i] != '\t')
            break;
    }
    start = i;
    size_t end = i; /* one past the last byte that is not SP/HTAB */
    for (;; i++) {
        if (i >= sc->limit)
            return need_more(sc, out);
        unsigned char c = (unsigned char)b[i];
        if (c == '\r')
            break;
        if (c == '\n')
            return fail(out, SD_HTTP_RESP_E_LINE_END);
        if (!is_value_byte(c))
            return fail(out, SD_HTTP_RESP_E_FIELD_VALUE);
        if (c != ' ' && c != '\t')
            end = i + 1;
    }
    f->value.s = b + start;
    f->value.len = end - start;
    long r = crlf(sc, &i, out);
    if (r)
        return r;
    *pi = i;
    return 0;
}

/* Content-Length: 1*DIGIT below 2^63 (so it fits an off_t). No list form
 * ("5, 5"), no sign, no spaces: anything else is refused. */
static int parse_cl(const struct sd_name *v, uint64_t *out)
{
    uint64_t n = 0;

    if (v->len == 0)
        return -1;
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->s[i];
        if (c < '0' || c > '9')
            return -1;
        if (n > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(c - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t)(c - '0');
    }
    *out = n;
    return 0;
}

/* Walks the comma-separated list in v, calling back with each element
 * trimmed of OWS; empty elements are skipped (RFC 9110 5.6.1). */
struct list_it {
    const char *p, *end;
};

static int list_next(struct list_it *it, struct sd_name *el)
{
    while (it->p < it->end) {
        const char *s = it->p, *e;
        const char *comma = memchr(s, ',', (size_t)(it->end - s));
        e = comma ? comma : it->end;
        it->p = comma ? comma + 1 : it->end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s) {
            el->s = s;
            el->len = (size_t)(e - s);
            return 1;
        }
    }
    return 0;
}

static int is_token(const struct sd_name *n)
{
    for (size_t i = 0; i < n->len; i++)
        if (!is_tchar((unsigned char)n->s[i]))
            return 0;
    return n->len > 0;
}

/* The framing and keep-alive from the complete head (RFC 9112 6.3, 9.3). */
static long semantics(enum sd_http_resp_req req, struct sd_http_resp *out,
                      const struct sd_http_resp_field *fields)
{
    int have_cl = 0, have_te = 0, chunked = 0, conn_close = 0, conn_ka = 0;
    uint64_t cl = 0;

    for (size_t k = 0; k < out->nfields; k++) {
        const struct sd_http_resp_field *f = &fields[k];
        struct list_it it = { f->value.s, f->value.s + f->value.len };
        struct sd_name el;

        if (eq_nocase(f->name.s, f->name.len, "content-length")) {
            /* Even two equal copies are refused: RFC 9110 8.6 lets a
             * recipient accept them, but a peer that repeats the field is
             * one that may not agree with us on which copy counts. */
            if (have_cl)
                return fail(out, SD_HTTP_RESP_E_CL_REPEATED);
            if (parse_cl(&f->value, &cl) < 0)
                return fail(out, SD_HTTP_RESP_E_CL);
            have_cl = 1;
        } else if (eq_nocase(f->name.s, f->name.len, "transfer-encoding")) {
            int any = 0;
            /* An empty element ("gzip, chunked,") is legal list syntax but
             * http-parser reads "chunked," as not chunked: refused. */
            const char *v = f->value.s, *ve = f->value.s + f->value.len;
            for (const char *q = v; q < ve; q++) {
                if (*q != ',')
                    continue;
                const char *a = q, *z = q + 1;
                while (a > v && (a[-1] == ' ' || a[-1] == '\t'))
                    a--;
                while (z < ve && (*z == ' ' || *z == '\t'))
                    z++;
                if (a == v || z == ve || *z == ',')
                    return fail(out, SD_HTTP_RESP_E_TE);
            }
            /* Several TE fields form one list, in order. Every element is
             * a bare token: a parameter or quoted string is how
             * "chunked;x" gets read as chunked by one hop only. chunked
             * must be the last coding and appear once (RFC 9112 6.1). */
            while (list_next(&it, &el)) {
                if (!is_token(&el) || chunked)
                    return fail(out, SD_HTTP_RESP_E_TE);
                chunked = eq_nocase(el.s, el.len, "chunked");
                any = 1;
            }
            if (!any)
                return fail(out, SD_HTTP_RESP_E_TE);
            have_te = 1;
        } else if (eq_nocase(f->name.s, f->name.len, "connection")) {
            while (list_next(&it, &el)) {
                if (eq_nocase(el.s, el.len, "close"))
                    conn_close = 1;
                else if (eq_nocase(el.s, el.len, "keep-alive"))
                    conn_ka = 1;
            }
        }
    }

    out->keep_alive = !conn_close && (out->minor >= 1 || conn_ka);
    /* RFC 9112 6.3: TE overrides CL. Such a message "ought to be handled
     * as an error"; the connection is not reused, so whatever the backend
     * meant cannot leak into the next response (whatever the status). */
    if (have_te && have_cl) {
        out->flags |= SD_HTTP_RESP_F_TE_AND_CL;
        out->keep_alive = 0;
    }
    if (out->status / 100 == 1) {
        out->framing = out->status == 101 ? SD_HTTP_RESP_BODY_TUNNEL : SD_HTTP_RESP_BODY_INTERIM;
    } else if (req == SD_HTTP_RESP_REQ_CONNECT && out->status / 100 == 2) {
        out->framing = SD_HTTP_RESP_BODY_TUNNEL;
    } else if (req == SD_HTTP_RESP_REQ_HEAD || out->status == 204 || out->status == 304) {
        out->framing = SD_HTTP_RESP_BODY_NONE;
    } else if (have_te) {
        out->framing = chunked ? SD_HTTP_RESP_BODY_CHUNKED : SD_HTTP_RESP_BODY_CLOSE;
        if (!chunked)
            out->flags |= SD_HTTP_RESP_F_TE_OTHER;
    } else if (have_cl) {
        out->framing = SD_HTTP_RESP_BODY_LENGTH;
        out->content_length = cl;
    } else {
        out->framing = SD_HTTP_RESP_BODY_CLOSE;
    }
    if (out->framing == SD_HTTP_RESP_BODY_CLOSE || out->framing == SD_HTTP_RESP_BODY_TUNNEL)
        out->keep_alive = 0;
    return 0;
}

long sd_http_resp_parse(const char *buf, size_t len, enum sd_http_resp_req req,
                        struct sd_http_resp *out, struct sd_http_resp_field *fields,
                        size_t max_fields)
{
    struct scan sc = { buf, len, 0 };
    size_t i = 0;
    long r;

    memset(out, 0, sizeof(*out));
    if (len >= SD_HTTP_RESP_MAX_HEAD) {
        sc.limit = SD_HTTP_RESP_MAX_HEAD;
        sc.capped = 1;
    }
    if (max_fields > SD_HTTP_RESP_MAX_FIELDS)
        max_fields = SD_HTTP_RESP_MAX_FIELDS;
    if ((r = status_line(&sc, &i, out)) != 0)
        return r;
    for (;;) {
        if (i >= sc.limit)
            return need_more(&sc, out);
        unsigned char c = (unsigned char)buf[i];
        if (c == '\r') {
            if ((r = crlf(&sc, &i, out)) != 0)
                return r;
            break;
        }
        if (c == '\n')
            return fail(out, SD_HTTP_RESP_E_LINE_END);
        /* A line starting with SP/HTAB continues the previous one (obs-fold,
         * RFC 9112 5.2) or, first of all, hides a field from some parsers. */
        if (c == ' ' || c == '\t')
            return fail(out, SD_HTTP_RESP_E_OBS_FOLD);
        if (out->nfields >= max_fields)
            return fail(out, SD_HTTP_RESP_E_TOO_MANY);
        if ((r = field_line(&sc, &i, &fields[out->nfields], out)) != 0)
            return r;
        out->nfields++;
    }
    if ((r = semantics(req, out, fields)) != 0)
        return r;
    return (long)i;
}

const char *sd_http_resp_err_str(enum sd_http_resp_err err)
{
    static const char *const words[SD_HTTP_RESP_E_COUNT] = {
        [SD_HTTP_RESP_E_NONE] = "none",
        [SD_HTTP_RESP_E_VERSION] = "http_resp_bad_version",
        [SD_HTTP_RESP_E_STATUS] = "http_resp_bad_status",
        [SD_HTTP_RESP_E_REASON] = "http_resp_bad_reason",
        [SD_HTTP_RESP_E_LINE_END] = "http_resp_bad_line_end",
        [SD_HTTP_RESP_E_FIELD_NAME] = "http_resp_bad_field_name",
        [SD_HTTP_RESP_E_SPACE_COLON] = "http_resp_space_before_colon",
        [SD_HTTP_RESP_E_OBS_FOLD] = "http_resp_obs_fold",
        [SD_HTTP_RESP_E_FIELD_VALUE] = "http_resp_bad_field_value",
        [SD_HTTP_RESP_E_HEAD_TOO_LARGE] = "http_resp_head_too_large",
        [SD_HTTP_RESP_E_TOO_MANY] = "http_resp_too_many_fields",
        [SD_HTTP_RESP_E_CL] = "http_resp_bad_content_length",
        [SD_HTTP_RESP_E_CL_REPEATED] = "http_resp_repeated_content_length",
        [SD_HTTP_RESP_E_TE] = "http_resp_bad_transfer_encoding",
    };
    if ((unsigned)err >= SD_HTTP_RESP_E_COUNT)
        return "unknown";
    return words[err];
}

const char *sd_http_resp_framing_str(enum sd_http_resp_framing f)
{
    switch (f) {
    case SD_HTTP_RESP_BODY_NONE: return "none";
    case SD_HTTP_RESP_BODY_LENGTH: return "length";
    case SD_HTTP_RESP_BODY_CHUNKED: return "chunked";
    case SD_HTTP_RESP_BODY_CLOSE: return "close";
    case SD_HTTP_RESP_BODY_INTERIM: return "interim";
    case SD_HTTP_RESP_BODY_TUNNEL: return "tunnel";
    }
    return "unknown";
}
