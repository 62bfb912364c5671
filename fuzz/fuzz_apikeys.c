/* fuzz_apikeys.c - libFuzzer target for the API keys file and its checks
 * (src/auth/apikeys.c): sd_apikeys_parse(), sd_apikeys_find(),
 * sd_apikey_path_ok(), sd_apikeys_parse_time(), sd_apikeys_check_field().
 *
 * Input: any bytes (NULs too). The whole input is a keys file, given to
 * sd_apikeys_parse() as a file snapshot would give it; its first line (up
 * to '\n', at most 2048 bytes) is also a request target, a date and a
 * field value. Invariants; any that fails calls __builtin_trap():
 *   - a refused file: the message is one bounded line that names the file
 *     ("fuzz.yaml:") and carries no control byte (a file cannot put escape
 *     sequences on a terminal or a line break in a log);
 *   - an accepted file: at most SD_APIKEYS_MAX entries; ids of 1..64 of
 *     [A-Za-z0-9._-] and unique; digests unique; 1..16 binds, as many as
 *     the entry's policy has rules, each accepted again by check_field;
 *     at most 16 prefixes, each accepted again by check_field and admitted
 *     by path_ok as a target (a prefix that could never match is refused
 *     when read, not discovered at request time); dates 0 or after 2000;
 *     find() of the input is NULL or one of the entries;
 *   - path_ok: when a target is admitted under a prefix, its path,
 *     percent-decoded by this file's own decoder, still starts with the
 *     prefix at a segment boundary and has no '\', no "." or ".."
 *     segment (";params" ignored): a backend that decodes cannot be
 *     walked out of the prefix. A prefix accepted by check_field admits
 *     itself;
 *   - parse_time: an accepted date is after 2000 and prints back (gmtime)
 *     as the very text given: one spelling per instant.
 * Everything is freed, so LeakSanitizer sees any leak on any path. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sd/apikeys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

#define LINE_MAX_LEN 2048

static int fuzz_id_ok(const char *id)
{
    size_t i, n = strlen(id);

    if (n == 0 || n > SD_APIKEY_ID_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (!((id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= '0' && id[i] <= '9') || id[i] == '.' || id[i] == '_' || id[i] == '-'))
            return 0;
    return 1;
}

static int fuzz_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The path of t[0, n) as a naive backend sees it: after the authority of
 * an absolute form, up to '?' or '#', percent-decoded (a bad escape kept
 * as is). Returns its length in out (cap bytes), or (size_t)-1 when t has
 * no path. */
static size_t fuzz_decoded_path(const char *t, size_t n, char *out, size_t cap)
{
    size_t i = 0, o = 0;
    const char *sep;

    if (n == 0)
        return (size_t)-1;
    if (t[0] != '/') {
        sep = memchr(t, ':', n);
        if (sep == NULL || (size_t)(sep - t) + 3 > n || memcmp(sep, "://", 3) != 0)
            return (size_t)-1;
        i = (size_t)(sep - t) + 3;
        while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#')
            i++;
        if (i == n || t[i] != '/') {
            out[0] = '/';
            return 1;
        }
    }
    for (; i < n && t[i] != '?' && t[i] != '#' && o < cap; i++) {
        int hi, lo;
        if (t[i] == '%' && n - i >= 3 && (hi = fuzz_hex(t[i + 1])) >= 0 &&
            (lo = fuzz_hex(t[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = t[i];
        }
    }
    return o;
}

/* 1 when p[0, n) has no '\' and no "." or ".." segment (";x" ignored). */
static int fuzz_path_plain(const char *p, size_t n)
{
    size_t i, seg, end, plain;

    if (memchr(p, '\\', n) != NULL)
        return 0;
    for (seg = 0; seg <= n; seg = end + 1) {
        for (end = seg; end < n && p[end] != '/'; end++)
            ;
        for (plain = seg; plain < end && p[plain] != ';'; plain++)
            ;
        i = plain - seg;
        if ((i == 1 && p[seg] == '.') || (i == 2 && p[seg] == '.' && p[seg + 1] == '.'))
            return 0;
    }
    return 1;
}

/* Checks path_ok of target under prefix against the decoding oracle. */
static void fuzz_path(const char *prefix, const char *t, size_t n)
{
    static char dec[LINE_MAX_LEN + 16];
    char *paths[1];
    struct sd_apikey e;
    size_t dl, pl = strlen(prefix);

    memset(&e, 0, sizeof(e));
    paths[0] = (char *)prefix;
    e.paths = paths;
    e.npaths = 1;
    if (!sd_apikey_path_ok(&e, t, n))
        return;
    dl = fuzz_decoded_path(t, n, dec, sizeof(dec));
    CHECK(dl != (size_t)-1);
    CHECK(dl >= pl && memcmp(dec, prefix, pl) == 0);
    CHECK(prefix[pl - 1] == '/' || dl == pl || dec[pl] == '/');
    CHECK(fuzz_path_plain(dec, dl));
}

static void fuzz_time(const char *text)
{
    struct sd_err err;
    int64_t t = -1;
    time_t tt;
    struct tm tm;
    char back[32];

    if (sd_apikeys_parse_time("expires", text, &t, &err) != 0) {
        CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
        CHECK(strncmp(err.msg, "expires: ", 9) == 0);
        return;
    }
    CHECK(t >= 946684800); /* 2000-01-01 */
    tt = (time_t)t;
    CHECK(gmtime_r(&tt, &tm) != NULL);
    if (strlen(text) == 10) {
        CHECK(tm.tm_hour == 0 && tm.tm_min == 0 && tm.tm_sec == 0);
        CHECK(strftime(back, sizeof(back), "%Y-%m-%d", &tm) == 10);
    } else {
        CHECK(strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%SZ", &tm) == 20);
    }
    CHECK(strcmp(back, text) == 0);
}

static void fuzz_entries(const struct sd_apikeys *k, const uint8_t *data, size_t size)
{
    size_t i, j, n = sd_apikeys_count(k);
    const struct sd_apikey *hit;
    struct sd_err err;

    CHECK(n <= SD_APIKEYS_MAX);
    CHECK(sd_apikeys_at(k, n) == NULL);
    for (i = 0; i < n; i++) {
        const struct sd_apikey *e = sd_apikeys_at(k, i);

        CHECK(e != NULL && fuzz_id_ok(e->id));
        CHECK(e->nbinds >= 1 && e->nbinds <= SD_APIKEY_MAX_BINDS);
        CHECK(sd_policy_count(e->bind) == e->nbinds);
        CHECK(!sd_policy_has_kind(e->bind, SD_RULE_ALL));
        CHECK(e->npaths <= SD_APIKEY_MAX_PATHS);
        CHECK(e->expires == 0 || e->expires >= 946684800);
        CHECK(e->revoked == 0 || e->revoked >= 946684800);
        for (j = 0; j < e->nbinds; j++)
            CHECK(sd_apikeys_check_field("bind", e->binds[j], &err) == 0);
        for (j = 0; j < e->npaths; j++) {
            size_t pl = strlen(e->paths[j]);
            CHECK(pl >= 1 && pl <= SD_APIKEY_PATH_MAX && e->paths[j][0] == '/');
            CHECK(sd_apikeys_check_field("paths", e->paths[j], &err) == 0);
            CHECK(sd_apikey_path_ok(e, e->paths[j], pl) == 1);
        }
        /* bounded by the input's size: a fuzzed file has few entries */
        for (j = 0; j < i; j++) {
            const struct sd_apikey *o = sd_apikeys_at(k, j);
            CHECK(strcmp(o->id, e->id) != 0);
            CHECK(memcmp(o->digest, e->digest, sizeof(e->digest)) != 0);
        }
    }
    hit = sd_apikeys_find(k, (const char *)data, size);
    if (hit != NULL) {
        for (i = 0; i < n && sd_apikeys_at(k, i) != hit; i++)
            ;
        CHECK(i < n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const prefixes[] = {"/", "/api", "/api/", "/a;b", "/v1/items"};
    struct sd_apikeys *k = (struct sd_apikeys *)&k;
    struct sd_err err;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t linelen = nl != NULL ? (size_t)(nl - data) : size, i;
    char *line;

    memset(&err, 0, sizeof(err));
    if (sd_apikeys_parse("fuzz.yaml", data, size, &k, &err) != 0) {
        CHECK(k == NULL);
        CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
        CHECK(strncmp(err.msg, "fuzz.yaml", 9) == 0);
        for (i = 0; err.msg[i] != '\0'; i++)
            CHECK((unsigned char)err.msg[i] >= 0x20 && err.msg[i] != 0x7f);
    } else {
        CHECK(k != NULL);
        fuzz_entries(k, data, size);
        sd_apikeys_free(k);
    }

    if (linelen > LINE_MAX_LEN)
        linelen = LINE_MAX_LEN;
    /* The target keeps its NULs (pointer and length); the NUL-terminated
     * copy is for the string functions. */
    line = malloc(linelen + 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, linelen);
    line[linelen] = '\0';
    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        fuzz_path(prefixes[i], line, linelen);
    if (strlen(line) == linelen) {
        static const char *const fields[] = {"id", "digest", "bind", "paths", "expires",
                                             "revoked"};
        fuzz_time(line);
        for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            int ok = sd_apikeys_check_field(fields[i], line, &err) == 0;
            if (!ok)
                CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
            if (ok && i == 3) { /* an accepted prefix admits itself */
                char *p[1] = {line};
                struct sd_apikey e;
                memset(&e, 0, sizeof(e));
                e.paths = p;
                e.npaths = 1;
                CHECK(sd_apikey_path_ok(&e, line, linelen) == 1);
                fuzz_path(line, line, linelen);
            }
        }
    }
    free(line);
    return 0;
}
