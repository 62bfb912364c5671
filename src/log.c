/* log.c - JSON log lines (see sd/log.h). */
#include "sd/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int sd_log_fd = 2;

void sd_log_set_fd(int fd)
{
    sd_log_fd = fd;
}

/* Reserve room for the closing "}\n" and a "truncated" marker. */
#define SD_LOG_RESERVE 24

/* Once a line is truncated nothing more is added to it: each field either
 * appears whole, or (for a long string) cut and closed, or not at all. */
static void sd_log_raw(struct sd_logline *l, const char *s, size_t n)
{
    if (l->truncated)
        return;
    if (l->len + n + SD_LOG_RESERVE > sizeof(l->buf)) {
        l->truncated = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Writes a JSON string. Returns 0 when at least the opening quote was
 * written (the string is then always closed), -1 when nothing was. */
static int sd_log_escaped(struct sd_logline *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    sd_log_raw(l, "\"", 1);
    if (l->truncated)
        return -1;
    for (i = 0; i < n && !l->truncated; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sd_log_raw(l, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            /* Control bytes (including NUL from hostile certificates) are
             * shown, never interpreted, so a log line cannot be forged. */
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            sd_log_raw(l, esc, 6);
        } else {
            sd_log_raw(l, (const char *)&c, 1);
        }
    }
    if (l->truncated) {
        /* Keep the line valid JSON: close the string that was cut. */
        l->buf[l->len++] = '"';
        return 0;
    }
    sd_log_raw(l, "\"", 1);
    if (l->truncated)
        l->buf[l->len++] = '"';
    return 0;
}

/* Starts a field; returns the offset to roll back to if it does not fit. */
static size_t sd_log_key(struct sd_logline *l, const char *key)
{
    size_t mark = l->len;

    sd_log_raw(l, ",\"", 2);
    sd_log_raw(l, key, strlen(key)); /* keys are steeldoor's own words */
    sd_log_raw(l, "\":", 2);
    return mark;
}

static void sd_log_rollback(struct sd_logline *l, size_t mark)
{
    if (l->truncated)
        l->len = mark;
}

void sd_log_begin(struct sd_logline *l, const char *level, const char *event)
{
    struct timespec ts;
    struct tm tm;
    char tbuf[64];
    int n;

    l->len = 0;
    l->truncated = 0;
    l->in_array = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(tbuf, sizeof(tbuf), "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    sd_log_raw(l, tbuf, (size_t)n);
    sd_log_str(l, "level", level);
    sd_log_str(l, "event", event);
    sd_log_i64(l, "pid", (int64_t)getpid());
}

void sd_log_str(struct sd_logline *l, const char *key, const char *value)
{
    if (value == NULL)
        return;
    sd_log_strn(l, key, value, strlen(value));
}

void sd_log_strn(struct sd_logline *l, const char *key, const char *value, size_t n)
{
    size_t mark = sd_log_key(l, key);

    if (l->truncated || sd_log_escaped(l, value, n) != 0)
        sd_log_rollback(l, mark);
}

void sd_log_u64(struct sd_logline *l, const char *key, uint64_t value)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, value);

    size_t mark = sd_log_key(l, key);

    sd_log_raw(l, num, (size_t)n);
    sd_log_rollback(l, mark);
}

void sd_log_i64(struct sd_logline *l, const char *key, int64_t value)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, value);

    size_t mark = sd_log_key(l, key);

    sd_log_raw(l, num, (size_t)n);
    sd_log_rollback(l, mark);
}

void sd_log_bool(struct sd_logline *l, const char *key, int value)
{
    size_t mark = sd_log_key(l, key);

    sd_log_raw(l, value ? "true" : "false", value ? 4 : 5);
    sd_log_rollback(l, mark);
}

void sd_log_array_begin(struct sd_logline *l, const char *key)
{
    size_t mark = sd_log_key(l, key);

    sd_log_raw(l, "[", 1);
    sd_log_rollback(l, mark);
    l->in_array = !l->truncated;
    l->array_first = 1;
}

void sd_log_array_strn(struct sd_logline *l, const char *value, size_t n)
{
    size_t mark = l->len;

    if (!l->in_array || l->truncated)
        return;
    if (!l->array_first)
        sd_log_raw(l, ",", 1);
    if (l->truncated || sd_log_escaped(l, value, n) != 0)
        sd_log_rollback(l, mark);
    l->array_first = 0;
}

void sd_log_array_end(struct sd_logline *l)
{
    if (!l->in_array)
        return;
    /* Room for the bracket is reserved even on a truncated line. */
    l->buf[l->len++] = ']';
    l->in_array = 0;
}

void sd_log_end(struct sd_logline *l)
{
    ssize_t w;
    size_t off = 0;

    if (l->in_array)
        sd_log_array_end(l);
    if (l->truncated) {
        /* SD_LOG_RESERVE bytes were kept free for exactly this. */
        memcpy(l->buf + l->len, ",\"truncated\":true", 17);
        l->len += 17;
    }
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    while (off < l->len) {
        w = write(sd_log_fd, l->buf + off, l->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* a log sink that is gone must not stop the proxy */
        off += (size_t)w;
    }
}

void sd_log_msg(const char *level, const char *event, const char *fmt, ...)
{
    struct sd_logline l;
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sd_log_begin(&l, level, event);
    sd_log_str(&l, "msg", msg);
    sd_log_end(&l);
}
