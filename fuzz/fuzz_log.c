/* fuzz_log.c - libFuzzer target for the log line builder (log.c): the
 * escaping and bounding of client-supplied bytes.
 *
 * Input: a sequence of records, each adding one field to one log line:
 *   byte 0        operation, value % 5:
 *                 0 sd_log_strn_bounded  1 sd_log_strn  2 bounded array
 *                 3 sd_log_u64           4 unbounded array
 *   bytes 1-2     bound (little-endian) % 4600 (fields and bounded arrays)
 *   bytes 3-4     value length (little-endian) % 4096, cut to what is left;
 *                 for arrays: byte 3 % 9 is the number of elements, each
 *                 then one bound byte (255: none; ignored in an unbounded
 *                 array) and one length byte
 *   then          the value bytes (any bytes: NULs, invalid UTF-8, quotes)
 * At most 16 fields per line. Every value sits in a malloc buffer of
 * exactly its length, so ASan reports a read past it.
 *
 * The line goes through the real sink (a pipe) and is checked
 * (__builtin_trap() when an invariant breaks; docs/fuzzing.md lists them):
 *   - one line, ending in '\n', at most SD_LOG_LINE_MAX bytes;
 *   - valid JSON (jansson) and an object with time, level, event, pid;
 *   - each string field decodes to a prefix of its value with every byte
 *     that is not UTF-8 replaced by U+FFFD (so escaping loses nothing but
 *     invalid bytes), whole unless marked: "<key>_truncated" (bounded) or
 *     "truncated" (the line ran out);
 *   - a bounded field's escaped text takes at most its bound;
 *   - array elements keep their order, each a prefix of its value;
 *     elements are missing or cut only with a marker;
 *   - once a field is missing, every later field is missing too and the
 *     line says "truncated":true. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sd/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define MAX_FIELDS 16
#define MAX_ELEMS 8
#define NO_BOUND 255

enum op { OP_BOUNDED, OP_STRN, OP_ARRAY_BOUNDED, OP_U64, OP_ARRAY };

struct value {
    unsigned char *p; /* exactly len bytes */
    size_t len;
    size_t max;       /* SIZE_MAX: no bound */
};

struct field {
    enum op op;
    char key[8];
    size_t max;
    uint64_t num;
    struct value v[MAX_ELEMS];
    size_t n;
};

static int sink_rd = -1;

/* ------------------------------------------------------------ reference */

/* RFC 3629 length of the UTF-8 character at s, or 0 (written from the RFC,
 * independently of log.c). */
static size_t ref_utf8(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len, i;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1fu;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0fu;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
        return 0; /* overlong */
    if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

/* The value as a JSON parser must give it back: invalid bytes as U+FFFD.
 * out has room for 3 * len bytes. */
static size_t ref_decoded(const unsigned char *s, size_t len, unsigned char *out)
{
    size_t i = 0, o = 0;

    while (i < len) {
        size_t c = ref_utf8(s + i, len - i);
        if (c == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, c);
            o += c;
            i += c;
        }
    }
    return o;
}

/* Is the decoded JSON string got a prefix (whole: equal) of value v? */
static int ref_prefix(const struct value *v, json_t *got, int whole)
{
    unsigned char *want;
    size_t wlen, glen;
    int ok;

    if (!json_is_string(got))
        return 0;
    glen = json_string_length(got);
    want = malloc(3 * v->len + 1);
    CHECK(want != NULL);
    wlen = ref_decoded(v->p, v->len, want);
    ok = glen <= wlen && memcmp(want, json_string_value(got), glen) == 0 &&
         (!whole || glen == wlen);
    free(want);
    return ok;
}

/* Length of the escaped text of field key's string value in the raw line,
 * or (size_t)-1 when the field is not there as a string. */
static size_t raw_value_len(const char *line, size_t len, const char *key)
{
    char pat[32];
    const char *at, *end = line + len;
    size_t plen = (size_t)snprintf(pat, sizeof(pat), ",\"%s\":\"", key), n = 0;

    at = memmem(line, len, pat, plen);
    if (at == NULL)
        return (size_t)-1;
    for (at += plen; at < end && *at != '"'; at++, n++) {
        if (*at == '\\') {
            at++;
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------------------ the target */

static size_t take(const uint8_t **d, size_t *left, size_t n, uint8_t *out)
{
    size_t k = n < *left ? n : *left;

    memset(out, 0, n);
    memcpy(out, *d, k);
    *d += k;
    *left -= k;
    return k;
}

static void value_from(struct value *v, const uint8_t **d, size_t *left, size_t len)
{
    if (len > *left)
        len = *left;
    v->p = malloc(len ? len : 1);
    CHECK(v->p != NULL);
    memcpy(v->p, *d, len);
    v->len = len;
    *d += len;
    *left -= len;
}

static size_t parse(const uint8_t *d, size_t left, struct field *fs)
{
    size_t n = 0, i;

    while (left > 0 && n < MAX_FIELDS) {
        struct field *f = &fs[n];
        uint8_t h[5];

        memset(f, 0, sizeof(*f));
        take(&d, &left, sizeof(h), h);
        f->op = (enum op)(h[0] % 5);
        snprintf(f->key, sizeof(f->key), "f%zu", n);
        f->max = ((size_t)h[1] | (size_t)h[2] << 8) % 4600;
        switch (f->op) {
        case OP_BOUNDED:
        case OP_STRN:
            f->n = 1;
            f->v[0].max = f->op == OP_BOUNDED ? f->max : SIZE_MAX;
            value_from(&f->v[0], &d, &left, ((size_t)h[3] | (size_t)h[4] << 8) % 4096);
            break;
        case OP_U64:
            f->num = (uint64_t)h[1] << 40 | (uint64_t)h[3] << 8 | h[4];
            break;
        case OP_ARRAY_BOUNDED:
        case OP_ARRAY:
            f->n = h[3] % (MAX_ELEMS + 1);
            for (i = 0; i < f->n; i++) {
                uint8_t e[2];
                take(&d, &left, sizeof(e), e);
                /* element bounds only in bounded arrays: only those mark
                 * a cut element (sd/log.h) */
                f->v[i].max = e[0] == NO_BOUND || f->op == OP_ARRAY ? SIZE_MAX : e[0];
                value_from(&f->v[i], &d, &left, e[1]);
            }
            break;
        }
        n++;
    }
    return n;
}

static void emit(struct sd_logline *l, const struct field *f)
{
    size_t i;

    switch (f->op) {
    case OP_BOUNDED:
        sd_log_strn_bounded(l, f->key, (const char *)f->v[0].p, f->v[0].len, f->max);
        break;
    case OP_STRN:
        sd_log_strn(l, f->key, (const char *)f->v[0].p, f->v[0].len);
        break;
    case OP_U64:
        sd_log_u64(l, f->key, f->num);
        break;
    case OP_ARRAY_BOUNDED:
    case OP_ARRAY:
        if (f->op == OP_ARRAY_BOUNDED)
            sd_log_array_begin_bounded(l, f->key, f->max);
        else
            sd_log_array_begin(l, f->key);
        for (i = 0; i < f->n; i++) {
            if (f->v[i].max == SIZE_MAX)
                sd_log_array_strn(l, (const char *)f->v[i].p, f->v[i].len);
            else
                sd_log_array_strn_bounded(l, (const char *)f->v[i].p, f->v[i].len,
                                          f->v[i].max);
        }
        sd_log_array_end(l);
        break;
    }
}

/* Checks one field of the parsed line; returns 0 when it is absent. */
static int check_field(json_t *root, const char *line, size_t len, const struct field *f,
                       int truncated)
{
    char mkey[24];
    json_t *got = json_object_get(root, f->key);
    int marked;
    size_t i, n;

    snprintf(mkey, sizeof(mkey), "%s_truncated", f->key);
    marked = json_is_true(json_object_get(root, mkey));
    if (got == NULL) {
        CHECK(!marked);
        return 0;
    }
    switch (f->op) {
    case OP_U64:
        CHECK(json_is_integer(got) && (uint64_t)json_integer_value(got) == f->num);
        CHECK(!marked);
        break;
    case OP_BOUNDED:
    case OP_STRN:
        CHECK(ref_prefix(&f->v[0], got, 0));
        if (f->op == OP_STRN)
            CHECK(!marked);
        if (!marked && !truncated)
            CHECK(ref_prefix(&f->v[0], got, 1));
        if (f->op == OP_BOUNDED)
            CHECK(raw_value_len(line, len, f->key) <= f->max);
        break;
    case OP_ARRAY_BOUNDED:
    case OP_ARRAY:
        CHECK(json_is_array(got));
        n = json_array_size(got);
        CHECK(n <= f->n);
        if (f->op == OP_ARRAY)
            CHECK(!marked);
        for (i = 0; i < n; i++) {
            json_t *e = json_array_get(got, i);
            CHECK(ref_prefix(&f->v[i], e, 0));
            /* an unmarked, untruncated element is whole; a bound cuts */
            if (!marked && !truncated)
                CHECK(ref_prefix(&f->v[i], e, 1));
        }
        if (!marked && !truncated)
            CHECK(n == f->n);
        break;
    }
    return 1;
}

static void sink_open(void)
{
    int p[2];

    if (sink_rd >= 0)
        return;
    CHECK(pipe(p) == 0);
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
    sink_rd = p[0];
    sd_log_set_fd(p[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct field fs[MAX_FIELDS];
    static char line[2 * SD_LOG_LINE_MAX];
    struct sd_logline l;
    json_error_t jerr;
    json_t *root;
    size_t n, i, len = 0;
    int truncated, absent = 0;
    ssize_t r;

    sink_open();
    n = parse(data, size, fs);
    sd_log_begin(&l, "info", "fuzz");
    for (i = 0; i < n; i++)
        emit(&l, &fs[i]);
    sd_log_end(&l);
    while ((r = read(sink_rd, line + len, sizeof(line) - len)) > 0)
        len += (size_t)r;

    CHECK(len > 0 && len <= SD_LOG_LINE_MAX);
    CHECK(line[len - 1] == '\n');
    CHECK(memchr(line, '\n', len - 1) == NULL);
    root = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
    CHECK(root != NULL && json_is_object(root));
    CHECK(json_is_string(json_object_get(root, "time")));
    CHECK(json_is_string(json_object_get(root, "level")));
    CHECK(json_is_string(json_object_get(root, "event")));
    CHECK(json_is_integer(json_object_get(root, "pid")));
    truncated = json_is_true(json_object_get(root, "truncated"));
    for (i = 0; i < n; i++) {
        if (!check_field(root, line, len, &fs[i], truncated)) {
            CHECK(truncated); /* a field is missing only when the line ran out */
            absent = 1;
        } else {
            CHECK(!absent); /* nothing after the first missing field */
        }
    }
    json_decref(root);
    for (i = 0; i < n; i++)
        for (size_t k = 0; k < fs[i].n; k++)
            free(fs[i].v[k].p);
    return 0;
}
