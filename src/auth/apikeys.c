/*
 * apikeys.c - the API keys file, key lookup and path prefixes (see
 * sd/apikeys.h).
 *
 * The file is read with libyaml's event parser: the shape is fixed (a list
 * of mappings of scalars or lists of scalars), so every event is checked
 * against what may come next and anything else is refused at its line. An
 * alias, an anchor or a tag is refused outright: each would give one text
 * two readings (a bind list shared between keys, "!!binary" bytes), and a
 * keys file decides who gets in.
 *
 * The one file about keys that includes OpenSSL (SHA-256, CRYPTO_memcmp,
 * RAND_priv_bytes, OPENSSL_cleanse), so that `steeldoor apikey`
 * (cli_apikey.c) needs none: it generates keys and wipes them through the
 * functions at the end of this file.
 */
#include "sd/apikeys.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <yaml.h>

#include "sd/b64url.h"

#define SD_APIKEYS_FILE_MAX (64u << 20) /* 10000 generous entries fit many times */
#define SD_APIKEY_ECHO_MAX 80           /* bytes of a value quoted in a message */
#define SD_APIKEY_DIGEST_PREFIX "sha256:"
#define SD_APIKEY_RAW_LEN 32

_Static_assert(SD_APIKEY_TEXT_LEN == sizeof(SD_APIKEY_PREFIX) - 1 +
                                         SD_B64URL_LEN(SD_APIKEY_RAW_LEN),
               "SD_APIKEY_TEXT_LEN is the prefix and 32 bytes in base64url");

struct sd_apikeys {
    struct sd_apikey *e;
    size_t *lines; /* where each entry starts in the file (1-based) */
    size_t n, cap;
};

/* ------------------------------------------------------------ messages */

/* s as quoted in a message: at most SD_APIKEY_ECHO_MAX bytes, every
 * control byte as '?', so a keys file cannot put escape sequences on an
 * operator's terminal or a line break in a log. */
static const char *sd_apikeys_echo(const char *s, char out[SD_APIKEY_ECHO_MAX + 4])
{
    size_t i, n = strlen(s);

    if (n > SD_APIKEY_ECHO_MAX)
        n = SD_APIKEY_ECHO_MAX;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
    }
    if (s[n] != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* ------------------------------------------------------------- fields */

static int sd_apikeys_check_id(const char *v, struct sd_err *err)
{
    char echo[SD_APIKEY_ECHO_MAX + 4];
    size_t i, n = strlen(v);

    for (i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            break;
    }
    if (n == 0 || n > SD_APIKEY_ID_MAX || i < n)
        return sd_err_set(err, "id: '%s' is not an id (1 to %d of A-Z a-z 0-9 . _ -)",
                          sd_apikeys_echo(v, echo), SD_APIKEY_ID_MAX);
    return 0;
}

/* The value of a hex digit, or -1. Digests are spelled in lower case only
 * (one spelling per digest); percent-encoding takes either case. */
static int sd_apikeys_hexval(char c, int upper_ok)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (upper_ok && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "sha256:" and 64 lowercase hex digits (one spelling per digest). */
static int sd_apikeys_parse_digest(const char *v, uint8_t out[32], struct sd_err *err)
{
    char echo[SD_APIKEY_ECHO_MAX + 4];
    const size_t plen = sizeof(SD_APIKEY_DIGEST_PREFIX) - 1;
    size_t i;

    if (strlen(v) != plen + 64 || memcmp(v, SD_APIKEY_DIGEST_PREFIX, plen) != 0)
        goto bad;
    for (i = 0; i < 32; i++) {
        int hi = sd_apikeys_hexval(v[plen + 2 * i], 0),
            lo = sd_apikeys_hexval(v[plen + 2 * i + 1], 0);
        if (hi < 0 || lo < 0)
            goto bad;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
bad:
    return sd_err_set(err, "digest: '%s' is not \"sha256:\" and 64 lowercase hex digits "
                      "(the key is never stored, only its digest: steeldoor apikey new)",
                      sd_apikeys_echo(v, echo));
}

static const struct {
    const char *name;
    enum sd_rule_kind kind;
} sd_apikeys_kinds[] = {
    {"uri", SD_RULE_URI}, {"dns", SD_RULE_DNS}, {"cn", SD_RULE_CN},
    {"ou", SD_RULE_OU},   {"spki", SD_RULE_SPKI},
};

/* Adds bind pattern v to p: "KIND:VALUE", or a URI without its kind. A
 * kind followed by "//" ("dns://x/y") is a URI of that scheme, not a kind.
 * The value is validated by sd_policy_add(), exactly as an allow rule. */
static int sd_apikeys_bind_add(struct sd_policy *p, const char *v, struct sd_err *err)
{
    char echo[SD_APIKEY_ECHO_MAX + 4];
    size_t i;

    if (strcmp(v, "all") == 0 || strcmp(v, "allow-all") == 0 || strcmp(v, "all:") == 0)
        return sd_err_set(err, "bind: '%s' is refused: a key bound to every certificate is "
                          "bound to none (name the client: uri:, dns:, cn:, ou: or spki:)", v);
    for (i = 0; i < sizeof(sd_apikeys_kinds) / sizeof(sd_apikeys_kinds[0]); i++) {
        size_t n = strlen(sd_apikeys_kinds[i].name);
        if (strncmp(v, sd_apikeys_kinds[i].name, n) == 0 && v[n] == ':' &&
            strncmp(v + n + 1, "//", 2) != 0) {
            if (sd_policy_add(p, sd_apikeys_kinds[i].kind, v + n + 1, err) != 0)
                return sd_err_prefix(err, "bind");
            return 0;
        }
    }
    if (strstr(v, "://") == NULL)
        return sd_err_set(err, "bind: '%s' is not a pattern (uri:..., dns:..., cn:..., ou:..., "
                          "spki:...)", sd_apikeys_echo(v, echo));
    if (sd_policy_add(p, SD_RULE_URI, v, err) != 0)
        return sd_err_prefix(err, "bind");
    return 0;
}

/* A path prefix: "/", printable ASCII without space, '?', '#', '%' or '\',
 * no empty, "." or ".." segment (also with ";params"): sd_apikey_path_ok()
 * never admits such a path, so such a prefix could never match. */
static int sd_apikeys_check_path(const char *v, struct sd_err *err)
{
    char echo[SD_APIKEY_ECHO_MAX + 4];
    size_t i, n = strlen(v), seg;

    if (n == 0 || v[0] != '/')
        return sd_err_set(err, "paths: '%s' does not start with '/'", sd_apikeys_echo(v, echo));
    if (n > SD_APIKEY_PATH_MAX)
        return sd_err_set(err, "paths: a prefix longer than %d bytes", SD_APIKEY_PATH_MAX);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '%' || c == '\\')
            return sd_err_set(err, "paths: '%s': a prefix is printable ASCII without spaces, "
                              "'?', '#', '%%' or '\\'", sd_apikeys_echo(v, echo));
    }
    for (seg = 1; seg <= n; seg = i + 1) {
        size_t end, plain;

        for (end = seg; end < n && v[end] != '/'; end++)
            ;
        for (plain = seg; plain < end && v[plain] != ';'; plain++)
            ;
        i = end;
        if (end == seg && end < n)
            return sd_err_set(err, "paths: '%s' has an empty segment ('//')",
                              sd_apikeys_echo(v, echo));
        if ((plain - seg == 1 && v[seg] == '.') ||
            (plain - seg == 2 && v[seg] == '.' && v[seg + 1] == '.'))
            return sd_err_set(err, "paths: '%s' has a '.' or '..' segment",
                              sd_apikeys_echo(v, echo));
    }
    return 0;
}

static int sd_apikeys_digits(const char *s, size_t n, int *out)
{
    size_t i;
    int v = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int sd_apikeys_parse_time(const char *what, const char *text, int64_t *out,
                          struct sd_err *err)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char echo[SD_APIKEY_ECHO_MAX + 4];
    size_t len = strlen(text);
    int y, mo, d, h = 0, mi = 0, s = 0, dim;
    struct tm tm;
    time_t t;

    if (len != 10 && len != 20)
        goto bad;
    if (sd_apikeys_digits(text, 4, &y) != 0 || text[4] != '-' ||
        sd_apikeys_digits(text + 5, 2, &mo) != 0 || text[7] != '-' ||
        sd_apikeys_digits(text + 8, 2, &d) != 0)
        goto bad;
    if (len == 20 && (text[10] != 'T' || sd_apikeys_digits(text + 11, 2, &h) != 0 ||
                      text[13] != ':' || sd_apikeys_digits(text + 14, 2, &mi) != 0 ||
                      text[16] != ':' || sd_apikeys_digits(text + 17, 2, &s) != 0 ||
                      text[19] != 'Z'))
        goto bad;
    /* Years from 2000: a time of 0 means "never" and must not be
     * writable; before 2000 no key of this program existed anyway. */
    if (y < 2000 || y > 9999 || mo < 1 || mo > 12)
        goto bad;
    dim = mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
    /* 24:00 and leap seconds (:60) are refused: one spelling per instant. */
    if (d < 1 || d > dim || h > 23 || mi > 59 || s > 59)
        goto bad;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    t = timegm(&tm);
    if (t == (time_t)-1 || t <= 0)
        goto bad;
    *out = (int64_t)t;
    return 0;
bad:
    return sd_err_set(err, "%s: '%s' is not a date (YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SSZ in "
                      "UTC; years 2000 to 9999)", what, sd_apikeys_echo(text, echo));
}

int sd_apikeys_check_field(const char *field, const char *value, struct sd_err *err)
{
    uint8_t digest[32];
    int64_t t;

    if (field == NULL || value == NULL)
        return sd_err_set(err, "no value");
    if (strcmp(field, "id") == 0)
        return sd_apikeys_check_id(value, err);
    if (strcmp(field, "digest") == 0)
        return sd_apikeys_parse_digest(value, digest, err);
    if (strcmp(field, "paths") == 0)
        return sd_apikeys_check_path(value, err);
    if (strcmp(field, "expires") == 0 || strcmp(field, "revoked") == 0)
        return sd_apikeys_parse_time(field, value, &t, err);
    if (strcmp(field, "bind") == 0) {
        struct sd_policy *p = sd_policy_new();
        int rc;

        if (p == NULL)
            return sd_err_set(err, "out of memory");
        rc = sd_apikeys_bind_add(p, value, err);
        sd_policy_free(p);
        return rc;
    }
    return sd_err_set(err, "unknown field '%s'", field);
}

/* ------------------------------------------------------------- parsing */

enum sd_apikeys_field {
    SD_AK_ID,
    SD_AK_DIGEST,
    SD_AK_BIND,
    SD_AK_EXPIRES,
    SD_AK_PATHS,
    SD_AK_REVOKED,
    SD_AK_NFIELDS,
};

static const char *const sd_apikeys_fields[SD_AK_NFIELDS] = {
    [SD_AK_ID] = "id",           [SD_AK_DIGEST] = "digest", [SD_AK_BIND] = "bind",
    [SD_AK_EXPIRES] = "expires", [SD_AK_PATHS] = "paths",   [SD_AK_REVOKED] = "revoked",
};

#define SD_AK_FIELD_LIST "id, digest, bind, expires, paths, revoked"

/* The event parser and the current event. */
struct sd_kp {
    yaml_parser_t parser;
    yaml_event_t ev;
    int have_ev;
    const char *name;
    struct sd_err *err;
};

static int sd_kp_fail(struct sd_kp *kp, size_t line, const char *fmt, ...) SD_PRINTF(3, 4);

/* "NAME:LINE: message"; returns -1. */
static int sd_kp_fail(struct sd_kp *kp, size_t line, const char *fmt, ...)
{
    char msg[SD_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sd_err_set(kp->err, "%s:%zu: %s", kp->name, line, msg);
}

/* Prefixes a field validator's message with "NAME:LINE"; returns -1. */
static int sd_kp_where(struct sd_kp *kp, size_t line)
{
    char where[SD_ERR_MAX];

    snprintf(where, sizeof(where), "%s:%zu", kp->name, line);
    return sd_err_prefix(kp->err, where);
}

static size_t sd_kp_line(const struct sd_kp *kp)
{
    return kp->ev.start_mark.line + 1;
}

/* Reads the next event; refuses aliases, anchors, tags and NUL bytes. */
static int sd_kp_next(struct sd_kp *kp)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;

    if (kp->have_ev) {
        yaml_event_delete(&kp->ev);
        kp->have_ev = 0;
    }
    if (!yaml_parser_parse(&kp->parser, &kp->ev))
        return sd_kp_fail(kp, kp->parser.problem_mark.line + 1, "YAML error: %s",
                          kp->parser.problem != NULL ? kp->parser.problem : "parse error");
    kp->have_ev = 1;
    switch (kp->ev.type) {
    case YAML_ALIAS_EVENT:
        return sd_kp_fail(kp, sd_kp_line(kp), "an alias ('*'): aliases and anchors are "
                          "refused, so that the file has one reading");
    case YAML_SCALAR_EVENT:
        anchor = kp->ev.data.scalar.anchor;
        tag = kp->ev.data.scalar.tag;
        if (strlen((const char *)kp->ev.data.scalar.value) != kp->ev.data.scalar.length)
            return sd_kp_fail(kp, sd_kp_line(kp), "a value contains a NUL byte");
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = kp->ev.data.sequence_start.anchor;
        tag = kp->ev.data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = kp->ev.data.mapping_start.anchor;
        tag = kp->ev.data.mapping_start.tag;
        break;
    default:
        break;
    }
    if (anchor != NULL)
        return sd_kp_fail(kp, sd_kp_line(kp), "an anchor ('&'): aliases and anchors are "
                          "refused, so that the file has one reading");
    if (tag != NULL)
        return sd_kp_fail(kp, sd_kp_line(kp), "a tag ('!'): tags are refused, so that the "
                          "file has one reading");
    return 0;
}

static const char *sd_kp_scalar(const struct sd_kp *kp)
{
    return (const char *)kp->ev.data.scalar.value;
}

/* One item of a bind or paths list, at line. */
static int sd_kp_item(struct sd_kp *kp, struct sd_apikey *e, enum sd_apikeys_field f,
                      const char *v, size_t line)
{
    char echo[SD_APIKEY_ECHO_MAX + 4];
    char ***list = f == SD_AK_BIND ? &e->binds : &e->paths;
    size_t *n = f == SD_AK_BIND ? &e->nbinds : &e->npaths;
    size_t max = f == SD_AK_BIND ? SD_APIKEY_MAX_BINDS : SD_APIKEY_MAX_PATHS;
    size_t i;

    if (*n >= max)
        return sd_kp_fail(kp, line, "%s: more than %zu entries", sd_apikeys_fields[f], max);
    /* A pattern or prefix written twice is most likely a copy of the line
     * meant to be edited into another one. */
    for (i = 0; i < *n; i++)
        if (strcmp((*list)[i], v) == 0)
            return sd_kp_fail(kp, line, "%s: '%s' is listed twice", sd_apikeys_fields[f],
                              sd_apikeys_echo(v, echo));
    if (f == SD_AK_BIND ? sd_apikeys_bind_add(e->bind, v, kp->err) != 0
                        : sd_apikeys_check_path(v, kp->err) != 0)
        return sd_kp_where(kp, line);
    if (*list == NULL && (*list = calloc(max, sizeof(**list))) == NULL)
        return sd_err_set(kp->err, "out of memory");
    if (((*list)[*n] = strdup(v)) == NULL)
        return sd_err_set(kp->err, "out of memory");
    (*n)++;
    return 0;
}

/* bind or paths: one string or a list of strings. */
static int sd_kp_list(struct sd_kp *kp, struct sd_apikey *e, enum sd_apikeys_field f)
{
    size_t line;

    if (sd_kp_next(kp) != 0)
        return -1;
    line = sd_kp_line(kp);
    if (kp->ev.type == YAML_SCALAR_EVENT)
        return sd_kp_item(kp, e, f, sd_kp_scalar(kp), line);
    if (kp->ev.type != YAML_SEQUENCE_START_EVENT)
        goto bad;
    for (;;) {
        if (sd_kp_next(kp) != 0)
            return -1;
        if (kp->ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (kp->ev.type != YAML_SCALAR_EVENT) {
            line = sd_kp_line(kp);
            goto bad;
        }
        if (sd_kp_item(kp, e, f, sd_kp_scalar(kp), sd_kp_line(kp)) != 0)
            return -1;
    }
    if (f == SD_AK_BIND && e->nbinds == 0)
        return sd_kp_fail(kp, line, "bind: an empty list; a key needs at least one pattern");
    if (f == SD_AK_PATHS && e->npaths == 0)
        return sd_kp_fail(kp, line, "paths: an empty list; leave 'paths' out to admit every "
                          "path");
    return 0;
bad:
    return sd_kp_fail(kp, line, "'%s' must be a string or a list of strings",
                      sd_apikeys_fields[f]);
}

/* id, digest, expires, revoked: one string. */
static int sd_kp_single(struct sd_kp *kp, struct sd_apikey *e, enum sd_apikeys_field f)
{
    const char *v;
    size_t line;
    int rc = 0;

    if (sd_kp_next(kp) != 0)
        return -1;
    line = sd_kp_line(kp);
    if (kp->ev.type != YAML_SCALAR_EVENT)
        return sd_kp_fail(kp, line, "'%s' must be a single string", sd_apikeys_fields[f]);
    v = sd_kp_scalar(kp);
    switch (f) {
    case SD_AK_ID:
        rc = sd_apikeys_check_id(v, kp->err);
        if (rc == 0)
            memcpy(e->id, v, strlen(v) + 1);
        break;
    case SD_AK_DIGEST:
        rc = sd_apikeys_parse_digest(v, e->digest, kp->err);
        break;
    case SD_AK_EXPIRES:
        rc = sd_apikeys_parse_time("expires", v, &e->expires, kp->err);
        break;
    case SD_AK_REVOKED:
        rc = sd_apikeys_parse_time("revoked", v, &e->revoked, kp->err);
        break;
    default:
        break;
    }
    return rc != 0 ? sd_kp_where(kp, line) : 0;
}

static void sd_apikey_fini(struct sd_apikey *e)
{
    size_t i;

    sd_policy_free(e->bind);
    for (i = 0; i < e->nbinds; i++)
        free(e->binds[i]);
    free(e->binds);
    for (i = 0; i < e->npaths; i++)
        free(e->paths[i]);
    free(e->paths);
    memset(e, 0, sizeof(*e));
}

/* One entry; the current event is its MAPPING_START. */
static int sd_kp_entry(struct sd_kp *kp, struct sd_apikeys *k)
{
    size_t line = sd_kp_line(kp);
    struct sd_apikey *e;
    unsigned seen = 0;

    if (k->n >= SD_APIKEYS_MAX)
        return sd_kp_fail(kp, line, "more than %d keys in one file", SD_APIKEYS_MAX);
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        struct sd_apikey *ne;
        size_t *nl;

        if (cap > SD_APIKEYS_MAX)
            cap = SD_APIKEYS_MAX;
        if ((ne = realloc(k->e, cap * sizeof(*ne))) == NULL)
            return sd_err_set(kp->err, "out of memory");
        k->e = ne;
        if ((nl = realloc(k->lines, cap * sizeof(*nl))) == NULL)
            return sd_err_set(kp->err, "out of memory");
        k->lines = nl;
        k->cap = cap;
    }
    /* Counted at once, so that sd_apikeys_free() releases a partial entry. */
    e = &k->e[k->n];
    memset(e, 0, sizeof(*e));
    k->lines[k->n++] = line;
    if ((e->bind = sd_policy_new()) == NULL)
        return sd_err_set(kp->err, "out of memory");
    for (;;) {
        char echo[SD_APIKEY_ECHO_MAX + 4];
        const char *name;
        size_t f;

        if (sd_kp_next(kp) != 0)
            return -1;
        if (kp->ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (kp->ev.type != YAML_SCALAR_EVENT)
            return sd_kp_fail(kp, sd_kp_line(kp), "a field name must be a word ("
                              SD_AK_FIELD_LIST ")");
        name = sd_kp_scalar(kp);
        for (f = 0; f < SD_AK_NFIELDS && strcmp(name, sd_apikeys_fields[f]) != 0; f++)
            ;
        if (f == SD_AK_NFIELDS)
            return sd_kp_fail(kp, sd_kp_line(kp), "unknown field '%s' (" SD_AK_FIELD_LIST ")",
                              sd_apikeys_echo(name, echo));
        if (seen & (1u << f))
            return sd_kp_fail(kp, sd_kp_line(kp), "'%s' is given twice in one key",
                              sd_apikeys_fields[f]);
        seen |= 1u << f;
        if (f == SD_AK_BIND || f == SD_AK_PATHS ? sd_kp_list(kp, e, (enum sd_apikeys_field)f)
                                                : sd_kp_single(kp, e, (enum sd_apikeys_field)f))
            return -1;
    }
    if (!(seen & (1u << SD_AK_ID)))
        return sd_kp_fail(kp, line, "a key without 'id'");
    if (!(seen & (1u << SD_AK_DIGEST)))
        return sd_kp_fail(kp, line, "key '%s' has no 'digest'", e->id);
    if (!(seen & (1u << SD_AK_BIND)))
        return sd_kp_fail(kp, line, "key '%s' has no 'bind': a key is bound to the "
                          "certificates it may come with", e->id);
    return 0;
}

/* The whole stream: nothing, or one document that is a list of entries
 * (an empty document, "---" alone, is an empty list). */
static int sd_kp_stream(struct sd_kp *kp, struct sd_apikeys *k)
{
    if (sd_kp_next(kp) != 0)
        return -1;
    if (kp->ev.type != YAML_STREAM_START_EVENT)
        return sd_kp_fail(kp, 1, "not a YAML stream");
    if (sd_kp_next(kp) != 0)
        return -1;
    if (kp->ev.type == YAML_STREAM_END_EVENT)
        return 0; /* empty, or comments only */
    if (sd_kp_next(kp) != 0) /* past DOCUMENT_START */
        return -1;
    switch (kp->ev.type) {
    case YAML_SEQUENCE_START_EVENT:
        for (;;) {
            if (sd_kp_next(kp) != 0)
                return -1;
            if (kp->ev.type == YAML_SEQUENCE_END_EVENT)
                break;
            if (kp->ev.type != YAML_MAPPING_START_EVENT)
                return sd_kp_fail(kp, sd_kp_line(kp), "each key must be a mapping ("
                                  SD_AK_FIELD_LIST ")");
            if (sd_kp_entry(kp, k) != 0)
                return -1;
        }
        break;
    case YAML_SCALAR_EVENT:
        if (kp->ev.data.scalar.length == 0 && kp->ev.data.scalar.plain_implicit)
            break;
        /* fall through */
    default:
        return sd_kp_fail(kp, sd_kp_line(kp), "the file must be a list of keys "
                          "(\"- id: ...\" entries, or [] for none), not a %s",
                          kp->ev.type == YAML_MAPPING_START_EVENT ? "mapping" : "single value");
    }
    if (sd_kp_next(kp) != 0) /* DOCUMENT_END */
        return -1;
    if (sd_kp_next(kp) != 0)
        return -1;
    if (kp->ev.type != YAML_STREAM_END_EVENT)
        return sd_kp_fail(kp, sd_kp_line(kp), "a second YAML document; a keys file is one "
                          "document");
    return 0;
}

struct sd_apikeys_ref {
    const struct sd_apikey *e;
    size_t line;
};

static int sd_apikeys_cmp_id(const void *a, const void *b)
{
    const struct sd_apikeys_ref *x = a, *y = b;
    int c = strcasecmp(x->e->id, y->e->id);

    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

static int sd_apikeys_cmp_digest(const void *a, const void *b)
{
    const struct sd_apikeys_ref *x = a, *y = b;
    int c = memcmp(x->e->digest, y->e->digest, sizeof(x->e->digest));

    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/* Two entries with one id, in any case (which one would `revoke` reach?
 * and a backend comparing X-Steeldoor-Key-Id case-insensitively would take
 * one for the other), or one digest
 * (one key, two sets of rights: which applies?) are refused. Sorted, so
 * 10000 entries cost no 10^8 comparisons. */
static int sd_apikeys_unique(struct sd_kp *kp, const struct sd_apikeys *k)
{
    struct sd_apikeys_ref *r;
    size_t i;
    int rc = 0;

    if (k->n < 2)
        return 0;
    if ((r = calloc(k->n, sizeof(*r))) == NULL)
        return sd_err_set(kp->err, "out of memory");
    for (i = 0; i < k->n; i++) {
        r[i].e = &k->e[i];
        r[i].line = k->lines[i];
    }
    qsort(r, k->n, sizeof(*r), sd_apikeys_cmp_id);
    for (i = 1; i < k->n && rc == 0; i++)
        if (strcasecmp(r[i - 1].e->id, r[i].e->id) == 0)
            rc = sd_kp_fail(kp, r[i].line, "id '%s' is used twice (lines %zu and %zu; ids "
                            "differ in more than case)", r[i].e->id, r[i - 1].line, r[i].line);
    if (rc == 0) {
        qsort(r, k->n, sizeof(*r), sd_apikeys_cmp_digest);
        for (i = 1; i < k->n && rc == 0; i++)
            if (memcmp(r[i - 1].e->digest, r[i].e->digest, sizeof(r[i].e->digest)) == 0)
                rc = sd_kp_fail(kp, r[i].line, "keys '%s' (line %zu) and '%s' (line %zu) have "
                                "the same digest: one key, two entries", r[i - 1].e->id,
                                r[i - 1].line, r[i].e->id, r[i].line);
    }
    free(r);
    return rc;
}

int sd_apikeys_parse(const char *name, const void *data, size_t len, struct sd_apikeys **out,
                     struct sd_err *err)
{
    static const unsigned char empty[1];
    struct sd_apikeys *k;
    struct sd_kp kp;
    int rc = -1;

    *out = NULL;
    if (name == NULL)
        name = "api-keys";
    if (len > SD_APIKEYS_FILE_MAX)
        return sd_err_set(err, "%s: larger than %u bytes", name, SD_APIKEYS_FILE_MAX);
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return sd_err_set(err, "%s: out of memory", name);
    memset(&kp, 0, sizeof(kp));
    kp.name = name;
    kp.err = err;
    if (!yaml_parser_initialize(&kp.parser)) {
        free(k);
        return sd_err_set(err, "%s: out of memory", name);
    }
    yaml_parser_set_input_string(&kp.parser, len > 0 ? data : empty, len);
    if (sd_kp_stream(&kp, k) == 0 && sd_apikeys_unique(&kp, k) == 0)
        rc = 0;
    if (kp.have_ev)
        yaml_event_delete(&kp.ev);
    yaml_parser_delete(&kp.parser);
    if (rc != 0) {
        sd_apikeys_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

void sd_apikeys_free(struct sd_apikeys *k)
{
    size_t i;

    if (k == NULL)
        return;
    for (i = 0; i < k->n; i++)
        sd_apikey_fini(&k->e[i]);
    free(k->e);
    free(k->lines);
    free(k);
}

size_t sd_apikeys_count(const struct sd_apikeys *k)
{
    return k == NULL ? 0 : k->n;
}

const struct sd_apikey *sd_apikeys_at(const struct sd_apikeys *k, size_t i)
{
    return k != NULL && i < k->n ? &k->e[i] : NULL;
}

/* -------------------------------------------------------------- lookup */

/*
 * Why constant time: an attacker who can measure how long a lookup takes
 * must learn nothing about the stored digests. A memcmp() that stops at the
 * first differing byte would tell how many leading bytes of some digest a
 * guess shares (and, the digest being of the guess, little else, but the
 * loop would also tell *which* entry matched, by stopping there, and so how
 * many keys precede it). So the guess is hashed once (its length is not
 * secret: lengths outside 1..SD_APIKEY_LEN_MAX are refused up front), then
 * compared with every entry's digest by CRYPTO_memcmp (time independent of
 * the bytes), and the matching index is folded into `found` with a mask
 * instead of a branch: every lookup runs the same instructions over all
 * entries, whatever matches. The one branch on the result is after the
 * loop, when the answer is known anyway.
 */
const struct sd_apikey *sd_apikeys_find(const struct sd_apikeys *k, const char *key,
                                        size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t i, found = 0;

    if (k == NULL || key == NULL || len == 0 || len > SD_APIKEY_LEN_MAX)
        return NULL;
    if (EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        OPENSSL_cleanse(md, sizeof(md));
        return NULL;
    }
    for (i = 0; i < k->n; i++) {
        /* diff: 0 when equal, else non-zero (any bits). */
        size_t diff = (size_t)(unsigned int)CRYPTO_memcmp(md, k->e[i].digest, 32);
        /* (diff | -diff) has its top bit set exactly when diff != 0; the
         * shift makes that 1 or 0, and minus one turns it into a mask of
         * all zeros (differs) or all ones (equal). */
        size_t mask = ((diff | (0 - diff)) >> (sizeof(size_t) * 8 - 1)) - 1;
#if defined(__GNUC__)
        /* A value barrier: the compiler may not see through the mask and
         * turn the fold below back into a branch. */
        __asm__("" : "+r"(mask));
#endif
        found |= mask & (i + 1); /* digests are unique: at most one match */
    }
    OPENSSL_cleanse(md, sizeof(md));
    return found != 0 ? &k->e[found - 1] : NULL;
}

/* --------------------------------------------------------------- paths */

/* The path of request target t[0, len): origin-form "/a?q" gives "/a";
 * absolute-form "https://host/a?q" gives "/a" ("https://host" and
 * "https://host?q", "/"). Returns 0 with *p, *plen, or -1 for any other
 * form ("*", authority-form). */
static int sd_apikey_target_path(const char *t, size_t len, const char **p, size_t *plen)
{
    size_t i = 0, start, end;

    if (len > 0 && t[0] == '/') {
        start = 0;
    } else {
        if (len == 0 || !((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z')))
            return -1;
        while (i < len && ((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
                           (t[i] >= '0' && t[i] <= '9') || t[i] == '+' || t[i] == '-' ||
                           t[i] == '.'))
            i++;
        if (len - i < 3 || memcmp(t + i, "://", 3) != 0)
            return -1;
        for (i += 3; i < len && t[i] != '/' && t[i] != '?' && t[i] != '#'; i++)
            if (t[i] == '\\') /* a URL parser may read it as the path's start */
                return -1;
        if (i == len || t[i] != '/') {
            *p = "/";
            *plen = 1;
            return 0;
        }
        start = i;
    }
    for (end = start; end < len && t[end] != '?' && t[end] != '#'; end++)
        ;
    *p = t + start;
    *plen = end - start;
    return 0;
}

/* 1 when path p[0, n) has one reading: printable ASCII, no backslash, no
 * "." or ".." segment (also as ".;x" or "..;x": servlet containers drop
 * ";params" before resolving dot segments), no percent-encoded '.', '/',
 * '\', ';', '%' (decoded twice by some) or control byte, no percent
 * sequence that is not one, no percent-encoded byte above 0x7e (overlong
 * UTF-8: lax decoders read "%c0%ae", "%e0%80%ae" and longer forms as '.';
 * NFKC normalisation reads the fullwidth "%ef%bc%8e" as '.'). Else 0: such a path could reach the
 * backend as another path than the one the prefix was compared with. */
static int sd_apikey_path_clean(const char *p, size_t n)
{
    size_t i, seg;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int hi, lo, v;

        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return 0;
        if (c != '%')
            continue;
        if (n - i < 3 || (hi = sd_apikeys_hexval(p[i + 1], 1)) < 0 ||
            (lo = sd_apikeys_hexval(p[i + 2], 1)) < 0)
            return 0;
        v = hi << 4 | lo;
        if (v == '.' || v == '/' || v == '\\' || v == ';' || v == '%' || v < 0x20 ||
            v >= 0x7f)
            return 0;
        i += 2;
    }
    for (seg = 1; seg <= n; seg = i + 1) {
        size_t plain;

        for (i = seg; i < n && p[i] != '/'; i++)
            ;
        for (plain = seg; plain < i && p[plain] != ';'; plain++)
            ;
        if ((plain - seg == 1 && p[seg] == '.') ||
            (plain - seg == 2 && p[seg] == '.' && p[seg + 1] == '.'))
            return 0;
    }
    return 1;
}

int sd_apikey_path_ok(const struct sd_apikey *e, const char *target, size_t len)
{
    const char *p;
    size_t n, i;

    if (e == NULL)
        return 0;
    if (e->npaths == 0)
        return 1;
    if (target == NULL || sd_apikey_target_path(target, len, &p, &n) != 0 ||
        !sd_apikey_path_clean(p, n))
        return 0;
    for (i = 0; i < e->npaths; i++) {
        const char *pre = e->paths[i];
        size_t pl = strlen(pre);

        /* A prefix ending in '/' is a boundary itself ("/api/" admits
         * "/api/x", not "/api"); else the path must end there or go on
         * with a new segment ("/api" admits "/api/x", never "/apix"). */
        if (pl > 0 && n >= pl && memcmp(p, pre, pl) == 0 &&
            (pre[pl - 1] == '/' || n == pl || p[pl] == '/'))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------- generation */

int sd_apikeys_generate(char key[SD_APIKEY_TEXT_LEN + 1], uint8_t digest[32],
                        struct sd_err *err)
{
    uint8_t raw[SD_APIKEY_RAW_LEN];
    const size_t plen = sizeof(SD_APIKEY_PREFIX) - 1;
    unsigned int mdlen = 0;
    int rc = 0;

    /* RAND_priv_bytes: the generator OpenSSL keeps for private keys. */
    if (RAND_priv_bytes(raw, sizeof(raw)) != 1)
        return sd_err_openssl(err, "cannot draw random bytes for a key");
    memcpy(key, SD_APIKEY_PREFIX, plen);
    if (sd_b64url_encode(raw, sizeof(raw), key + plen) + plen != SD_APIKEY_TEXT_LEN)
        rc = sd_err_set(err, "internal error: key length");
    OPENSSL_cleanse(raw, sizeof(raw));
    if (rc == 0 && (EVP_Digest(key, SD_APIKEY_TEXT_LEN, digest, &mdlen, EVP_sha256(), NULL) != 1 ||
                    mdlen != 32))
        rc = sd_err_openssl(err, "cannot compute SHA-256");
    if (rc != 0)
        OPENSSL_cleanse(key, SD_APIKEY_TEXT_LEN + 1);
    return rc;
}

void sd_apikeys_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}
