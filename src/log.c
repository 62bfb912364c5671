/* log.c - JSON log lines and a sink that never blocks (see sd/log.h). */
#include "sd/log.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A whole line must fit in one atomic pipe write. */
_Static_assert(SD_LOG_LINE_MAX <= PIPE_BUF, "a log line must be one atomic pipe write");

/* ============================================================ line builder */

/* Kept free at all times for what closing a line may still need: the ']'
 * of an open array, ,"truncated":true and "}\n" (20 bytes). */
#define SD_LOG_RESERVE 24
/* ,"<key>_truncated":true is the key plus this many bytes. */
#define SD_LOG_MARKER_EXTRA 18

/* Bytes a field may still take. */
static size_t sd_log_room(const struct sd_logline *l)
{
    size_t used = l->len + SD_LOG_RESERVE + l->reserve;

    return used < sizeof(l->buf) ? sizeof(l->buf) - used : 0;
}

/* Appends bytes the caller has made room for (checked against
 * sd_log_room(), or counted in SD_LOG_RESERVE / l->reserve). The bound
 * check is a last guard that should never trigger. */
static void sd_log_put(struct sd_logline *l, const char *s, size_t n)
{
    if (n > sizeof(l->buf) - l->len)
        return;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* ,"<key>_truncated":true after a bounded field that is incomplete. */
static void sd_log_marker(struct sd_logline *l, const char *key, size_t klen)
{
    sd_log_put(l, ",\"", 2);
    sd_log_put(l, key, klen);
    sd_log_put(l, "_truncated\":true", SD_LOG_MARKER_EXTRA - 2);
}

/* Length of the well-formed UTF-8 character at s (2-4 bytes), or 0 when
 * s does not start one (RFC 3629: no overlong forms, no surrogates, no
 * code point above U+10FFFF) - exactly what a JSON parser accepts. */
static size_t sd_log_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len, i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        if (s[0] == 0xe0)
            lo = 0xa0;
        else if (s[0] == 0xed)
            hi = 0x9f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        if (s[0] == 0xf0)
            lo = 0x90;
        else if (s[0] == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Appends the escaped body of s[0..n) (no quotes), at most limit bytes;
 * the caller has made room for limit bytes. A cut falls between escapes
 * and characters, never inside one. Returns how many input bytes went in
 * (n: all of them).
 *
 * Certificate names are hostile input: quotes and backslashes are escaped,
 * control bytes (C0, DEL and the C1 range U+0080-U+009F, which some
 * terminals act on) are shown as \u00XX, never interpreted, and bytes that
 * are not UTF-8 become U+FFFD, so the line stays valid JSON and a value
 * cannot forge another field or line. */
static size_t sd_log_escape(struct sd_logline *l, const char *s, size_t n, size_t limit)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, used = 0;

    while (i < n) {
        unsigned c = u[i];
        char esc[6];
        const char *out = esc;
        size_t olen, ilen = 1;
        int ctl = -1;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            olen = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            out = s + i;
            olen = 1;
        } else if (c < 0x80) {
            ctl = (int)c;
        } else if ((ilen = sd_log_utf8_len(u + i, n - i)) == 0) {
            ilen = 1;
            out = "\\ufffd";
            olen = 6;
        } else if (ilen == 2 && c == 0xc2 && u[i + 1] < 0xa0) {
            ctl = u[i + 1];
        } else {
            out = s + i;
            olen = ilen;
        }
        if (ctl >= 0) {
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[(unsigned)ctl >> 4];
            esc[5] = hex[(unsigned)ctl & 15];
            olen = 6;
        }
        if (olen > limit - used)
            break;
        memcpy(l->buf + l->len, out, olen);
        l->len += olen;
        used += olen;
        i += ilen;
    }
    return i;
}

static void sd_log_array_close_open(struct sd_logline *l);

/* "key":"value". A field that cannot even start is left out and ends the
 * line; a value cut by the end of the line is closed and ends the line; a
 * value cut at its own bound is closed and the line goes on. A bounded
 * field makes room for its marker before its value. */
static void sd_log_field(struct sd_logline *l, const char *key, const char *value,
                         size_t n, size_t max, int bounded)
{
    size_t klen = strlen(key); /* keys are steeldoor's own words */
    size_t marker = bounded ? klen + SD_LOG_MARKER_EXTRA : 0;
    size_t room, limit, done;

    sd_log_array_close_open(l);
    if (l->truncated)
        return;
    if (klen + 6 + marker > sd_log_room(l)) { /* ,"key":"" */
        l->truncated = 1;
        return;
    }
    sd_log_put(l, ",\"", 2);
    sd_log_put(l, key, klen);
    sd_log_put(l, "\":\"", 3);
    room = sd_log_room(l) - 1 - marker; /* >= 0 by the check above */
    limit = max < room ? max : room;
    done = sd_log_escape(l, value, n, limit);
    sd_log_put(l, "\"", 1);
    if (done < n) {
        if (limit == room)
            l->truncated = 1; /* the line ran out, not (only) the bound */
        if (bounded)
            sd_log_marker(l, key, klen);
    }
}

/* "key":<text> for numbers and booleans: whole or not at all. */
static void sd_log_scalar(struct sd_logline *l, const char *key, const char *text, size_t n)
{
    size_t klen = strlen(key);

    sd_log_array_close_open(l);
    if (l->truncated)
        return;
    if (klen + 4 + n > sd_log_room(l)) { /* ,"key": */
        l->truncated = 1;
        return;
    }
    sd_log_put(l, ",\"", 2);
    sd_log_put(l, key, klen);
    sd_log_put(l, "\":", 2);
    sd_log_put(l, text, n);
}

/* The second the cached timestamp text is for (sd_log_begin). */
static time_t sd_log_second;
static char sd_log_second_text[48];
static size_t sd_log_second_len;

void sd_log_begin(struct sd_logline *l, const char *level, const char *event)
{
    struct timespec ts;
    struct tm tm;
    char tbuf[64];
    int n;

    l->len = 0;
    l->reserve = 0;
    l->array_left = 0;
    l->array_key_off = 0;
    l->array_key_len = 0;
    l->truncated = 0;
    l->in_array = 0;
    l->array_first = 0;
    l->array_bounded = 0;
    l->array_full = 0;
    l->array_cut = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* The text up to the second changes once a second: formatted then,
     * and only the milliseconds for every line. */
    if (ts.tv_sec != sd_log_second || sd_log_second_len == 0) {
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(tbuf, sizeof(tbuf), "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
        sd_log_second_len = n > 0 && (size_t)n < sizeof(sd_log_second_text) ? (size_t)n : 0;
        memcpy(sd_log_second_text, tbuf, sd_log_second_len);
        sd_log_second = ts.tv_sec;
    }
    if (sd_log_second_len > 0) {
        long ms = ts.tv_nsec / 1000000;
        char frac[5] = { (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                         (char)('0' + ms % 10), 'Z', '"' };
        sd_log_put(l, sd_log_second_text, sd_log_second_len);
        sd_log_put(l, frac, sizeof(frac));
    } else {
        sd_log_put(l, "{", 1);
    }
    sd_log_str(l, "level", level);
    sd_log_str(l, "event", event);
    sd_log_i64(l, "pid", (int64_t)sd_log_pid());
}

void sd_log_str(struct sd_logline *l, const char *key, const char *value)
{
    if (value == NULL)
        return;
    sd_log_field(l, key, value, strlen(value), SIZE_MAX, 0);
}

void sd_log_strn(struct sd_logline *l, const char *key, const char *value, size_t n)
{
    sd_log_field(l, key, value, n, SIZE_MAX, 0);
}

void sd_log_strn_bounded(struct sd_logline *l, const char *key, const char *value,
                         size_t n, size_t max)
{
    sd_log_field(l, key, value, n, max, 1);
}

void sd_log_str_bounded(struct sd_logline *l, const char *key, const char *value,
                        size_t max)
{
    if (value == NULL)
        return;
    sd_log_field(l, key, value, strlen(value), max, 1);
}

/* Decimal digits of v at the end of num[24]; returns where they start.
 * (Every line has several numbers: printf's format parsing is most of
 * what a line costs.) */
static char *sd_log_digits(char num[24], uint64_t v)
{
    char *p = num + 24;

    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

void sd_log_hex(struct sd_logline *l, const char *key, const void *bytes, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    char buf[2 * 64];
    size_t i;

    if (n > sizeof(buf) / 2)
        n = sizeof(buf) / 2;
    for (i = 0; i < n; i++) {
        buf[2 * i] = hex[b[i] >> 4];
        buf[2 * i + 1] = hex[b[i] & 15];
    }
    sd_log_strn(l, key, buf, 2 * n);
}

void sd_log_u64(struct sd_logline *l, const char *key, uint64_t value)
{
    char num[24];
    char *p = sd_log_digits(num, value);

    sd_log_scalar(l, key, p, (size_t)(num + sizeof(num) - p));
}

void sd_log_i64(struct sd_logline *l, const char *key, int64_t value)
{
    char num[24];
    char *p = sd_log_digits(num, value < 0 ? 0 - (uint64_t)value : (uint64_t)value);

    if (value < 0)
        *--p = '-';
    sd_log_scalar(l, key, p, (size_t)(num + sizeof(num) - p));
}

void sd_log_bool(struct sd_logline *l, const char *key, int value)
{
    sd_log_scalar(l, key, value ? "true" : "false", value ? 4 : 5);
}

static void sd_log_array_open(struct sd_logline *l, const char *key, size_t max, int bounded)
{
    size_t klen = strlen(key);
    size_t marker = bounded ? klen + SD_LOG_MARKER_EXTRA : 0;

    sd_log_array_close_open(l);
    if (l->truncated)
        return;
    if (klen + 5 + marker > sd_log_room(l)) { /* ,"key":[ (']' is reserved) */
        l->truncated = 1;
        return;
    }
    sd_log_put(l, ",\"", 2);
    sd_log_put(l, key, klen);
    sd_log_put(l, "\":[", 3);
    /* The marker's room stays reserved until the array is closed, so a
     * cut found by a later element can always be recorded. */
    l->reserve = marker;
    l->in_array = 1;
    l->array_first = 1;
    l->array_bounded = bounded;
    l->array_full = 0;
    l->array_cut = 0;
    l->array_left = max;
    l->array_key_off = l->len - klen - 3;
    l->array_key_len = klen;
}

void sd_log_array_begin(struct sd_logline *l, const char *key)
{
    sd_log_array_open(l, key, SIZE_MAX, 0);
}

void sd_log_array_begin_bounded(struct sd_logline *l, const char *key, size_t max)
{
    sd_log_array_open(l, key, max, 1);
}

void sd_log_array_strn_bounded(struct sd_logline *l, const char *value, size_t n,
                               size_t max)
{
    size_t mark = l->len, over, room, budget, limit, done;

    if (!l->in_array || l->truncated || l->array_full)
        return;
    over = (l->array_first ? 0 : 1) + 2; /* comma and quotes */
    room = sd_log_room(l);
    if (room < over) {
        l->truncated = 1;
        l->array_cut = 1;
        return;
    }
    room -= over;
    if (l->array_left < over) {
        l->array_full = 1;
        l->array_cut = 1;
        return;
    }
    budget = l->array_left - over;
    limit = max;
    if (budget < limit)
        limit = budget;
    if (room < limit)
        limit = room;
    if (!l->array_first)
        sd_log_put(l, ",", 1);
    sd_log_put(l, "\"", 1);
    done = sd_log_escape(l, value, n, limit);
    sd_log_put(l, "\"", 1);
    if (done < n) {
        l->array_cut = 1;
        if (max <= budget && max <= room) {
            /* Cut at the element's own bound: shown cut, marked. */
        } else if (budget <= room) {
            /* It does not fit whole in what is left of the array: leave it
             * (and the rest) out rather than show a cut name, which could
             * read as a different, shorter identity. */
            l->len = mark;
            l->array_full = 1;
            return;
        } else {
            l->truncated = 1; /* the line ran out: cut and closed */
        }
    }
    l->array_first = 0;
    l->array_left -= l->len - mark; /* <= over + budget == array_left */
}

void sd_log_array_strn(struct sd_logline *l, const char *value, size_t n)
{
    sd_log_array_strn_bounded(l, value, n, SIZE_MAX);
}

void sd_log_array_end(struct sd_logline *l)
{
    if (!l->in_array)
        return;
    sd_log_put(l, "]", 1); /* counted in SD_LOG_RESERVE */
    l->reserve = 0;        /* ... and the marker's room was l->reserve */
    if (l->array_bounded && l->array_cut) /* the key is earlier in buf */
        sd_log_marker(l, l->buf + l->array_key_off, l->array_key_len);
    l->in_array = 0;
}

/* A field added while an array is open would land inside it: close the
 * array first, so a forgotten sd_log_array_end cannot break the line. */
static void sd_log_array_close_open(struct sd_logline *l)
{
    if (l->in_array)
        sd_log_array_end(l);
}

/* Closes the object; SD_LOG_RESERVE kept room for all of this. */
static void sd_log_close(struct sd_logline *l)
{
    if (l->in_array)
        sd_log_array_end(l);
    if (l->truncated)
        sd_log_put(l, ",\"truncated\":true", 17);
    sd_log_put(l, "}\n", 2);
}

/* ==================================================================== sink */

/* Room kept for a log_dropped report ahead of the line that follows it. */
#define SD_LOG_REPORT_MAX 256
/* At exit, wait this long between tries to write waiting lines (ns). */
#define SD_LOG_EXIT_STEP_NS (5 * 1000 * 1000L)

enum sd_log_kind {
    SD_LOG_UNSET,  /* not looked at yet: done on the first line */
    SD_LOG_PLAIN,  /* regular file, /dev/null, ...: write(2) as is */
    SD_LOG_STREAM, /* pipe or terminal, reopened non-blocking */
    SD_LOG_SOCKET  /* send(2) with MSG_DONTWAIT */
};

/* Per process (workers reset theirs after fork, sd_log_after_fork). The
 * queue q[head..tail) holds whole lines; the first may be the rest of a
 * line a stream took only part of, which must go out before anything. */
static struct {
    int fd;             /* what sd_log_set_fd named (default 2) */
    int out;            /* what is written: fd or a private reopen of it */
    int own;            /* out was opened here: close it on sd_log_set_fd */
    enum sd_log_kind kind;
    int one_per_write;  /* a datagram socket: one line per message */
    int tty;            /* a terminal: write under sd_log_tty_lock */
    int midline;        /* the last write ended inside a line */
    int exit_hook;
    int hold;           /* sd_log_hold: queue lines until the next flush */
    size_t head, tail;
    uint64_t dropped;   /* lines lost since the last report */
    char q[SD_LOG_QUEUE_MAX];
} sd_sink = { .fd = 2, .out = 2 };

static void sd_log_at_exit(void);

/* Decides how to write to the sink without ever waiting on its reader. */
static void sd_log_open(void)
{
    struct stat st;
    char path[64];
    int fl, nfd, flags;

    sd_sink.out = sd_sink.fd;
    sd_sink.own = 0;
    sd_sink.kind = SD_LOG_PLAIN;
    sd_sink.one_per_write = 0;
    sd_sink.tty = 0;
    sd_sink.midline = 0;
    if (!sd_sink.exit_hook && atexit(sd_log_at_exit) == 0)
        sd_sink.exit_hook = 1;
    if (fstat(sd_sink.fd, &st) != 0)
        return;
    if (S_ISSOCK(st.st_mode)) {
        int type = SOCK_STREAM;
        socklen_t tlen = sizeof(type);

        /* MSG_DONTWAIT is per call: the socket itself is left as it is. */
        sd_sink.kind = SD_LOG_SOCKET;
        if (getsockopt(sd_sink.fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
            type != SOCK_STREAM)
            sd_sink.one_per_write = 1; /* a message is a line for the reader */
        return;
    }
    /* A regular file or /dev/null never waits on a reader. */
    if (!S_ISFIFO(st.st_mode) && !(S_ISCHR(st.st_mode) && isatty(sd_sink.fd)))
        return;
    /* O_NONBLOCK set on fd 2 would be set on the open file description we
     * share with whoever started us (their terminal, their pipe). Opening
     * /proc/self/fd/N gives a description of our own on the same pipe or
     * terminal; O_NOCTTY keeps a terminal from becoming controlling. */
    fl = fcntl(sd_sink.fd, F_GETFL);
    flags = O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    if (fl >= 0 && (fl & O_APPEND))
        flags |= O_APPEND;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", sd_sink.fd);
    nfd = open(path, flags);
    if (nfd < 0) {
        int e = errno;

        /* kind is set: this line goes out through the plain path. */
        sd_log_msg("warn", "log_sink", "cannot reopen fd %d non-blocking (%s: %s): "
                   "a log reader that stops can stall this process",
                   sd_sink.fd, path, strerror(e));
        return;
    }
    sd_sink.out = nfd;
    sd_sink.own = 1;
    sd_sink.kind = SD_LOG_STREAM;
    sd_sink.tty = S_ISCHR(st.st_mode);
}

/* A full terminal takes part of a line from a non-blocking writer (a pipe
 * takes a write of up to PIPE_BUF whole or not at all). So on a terminal
 * each process writes only while it holds a POSIX record lock on it, taken
 * without waiting, and keeps it while the rest of a line is still to be
 * written: another process finds it taken and queues its line as if the
 * terminal were full, instead of writing into the middle of ours. POSIX
 * locks belong to the process (a forked worker does not inherit the
 * master's) and go away with it. Returns 0 when the caller may write. */
static int sd_log_tty_lock(short type)
{
    struct flock fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET; /* l_start 0, l_len 0: the whole terminal */
    if (fcntl(sd_sink.out, F_SETLK, &fl) == 0)
        return 0;
    if (type == F_UNLCK || errno == EAGAIN || errno == EACCES)
        return -1;
    sd_sink.tty = 0; /* no locks here (ENOLCK, ...): write without them */
    return 0;
}

/* One try. Returns the bytes taken, 0 when the sink is full, -1 when it
 * failed otherwise (errno set). */
static ssize_t sd_log_try(const char *p, size_t n)
{
    ssize_t w;

    if (sd_sink.tty && !sd_sink.midline && sd_log_tty_lock(F_WRLCK) != 0)
        return 0; /* another process is inside a line: wait as if full */
    do {
        if (sd_sink.kind == SD_LOG_SOCKET)
            w = send(sd_sink.out, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
            w = write(sd_sink.out, p, n);
    } while (w < 0 && errno == EINTR);
    if (w > 0)
        sd_sink.midline = p[w - 1] != '\n';
    if (sd_sink.tty && !sd_sink.midline) {
        int e = errno;

        (void)sd_log_tty_lock(F_UNLCK); /* at a line boundary: let others in */
        errno = e;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return w;
}

/* Bytes from the head of the queue for one write: whole lines, at most
 * SD_LOG_LINE_MAX (<= PIPE_BUF) in all, so a pipe takes all of them
 * atomically or none, and no other process's line lands inside one. */
static size_t sd_log_batch(void)
{
    const char *p = sd_sink.q + sd_sink.head;
    size_t avail = sd_sink.tail - sd_sink.head, n = 0;

    while (n < avail) {
        const char *nl = memchr(p + n, '\n', avail - n);
        size_t next = nl != NULL ? (size_t)(nl - p) + 1 : avail;

        if (n > 0 && next > SD_LOG_LINE_MAX)
            break;
        n = next;
        if (sd_sink.one_per_write)
            break;
    }
    return n;
}

static int sd_log_enqueue(const char *p, size_t n)
{
    size_t used = sd_sink.tail - sd_sink.head;

    if (n > SD_LOG_QUEUE_MAX - used)
        return -1;
    if (n > SD_LOG_QUEUE_MAX - sd_sink.tail) {
        /* Slide the waiting bytes to the front: at most once per pass
         * through the buffer, as head only moves when the sink takes. */
        memmove(sd_sink.q, sd_sink.q + sd_sink.head, used);
        sd_sink.head = 0;
        sd_sink.tail = used;
    }
    memcpy(sd_sink.q + sd_sink.tail, p, n);
    sd_sink.tail += n;
    return 0;
}

/* Queues the report of the lines dropped so far, where they would have
 * been. Only called when it fits (an empty queue, or room checked). */
static void sd_log_report_drops(void)
{
    struct sd_logline l;

    sd_log_begin(&l, "warn", "log_dropped");
    sd_log_u64(&l, "dropped", sd_sink.dropped);
    sd_log_str(&l, "msg", "the log sink did not keep up: this many lines of this "
                          "process were dropped here");
    sd_log_close(&l);
    if (sd_log_enqueue(l.buf, l.len) == 0)
        sd_sink.dropped = 0;
}

/* Writes what waits until the sink is full. Returns 0 when all is out
 * (reports included), 1 while lines wait, -1 when the sink failed (the
 * lines keep waiting: a full disk or a returning reader may recover). */
static int sd_log_drain(void)
{
    for (;;) {
        while (sd_sink.head < sd_sink.tail) {
            size_t n = sd_log_batch();
            ssize_t w = sd_log_try(sd_sink.q + sd_sink.head, n);

            if (w < 0 && errno == EMSGSIZE) {
                /* A datagram sink refuses this line for good: drop it
                 * rather than stop the queue behind it. */
                sd_sink.dropped++;
                sd_sink.head += n;
                continue;
            }
            if (w < 0)
                return -1;
            if (w == 0)
                return 1;
            sd_sink.head += (size_t)w;
        }
        sd_sink.head = sd_sink.tail = 0;
        if (sd_sink.dropped == 0)
            return 0;
        sd_log_report_drops(); /* the queue is empty: it fits */
    }
}

/* Hands one whole line to the sink, never waiting on it. */
static void sd_log_emit(const char *p, size_t n)
{
    ssize_t w;

    if (sd_sink.kind == SD_LOG_UNSET)
        sd_log_open();
    /* Held (a worker within one batch of events): queued, written with
     * the batch's other lines by the next sd_log_flush. A queue too full
     * for the line falls through to the usual path. */
    if (sd_sink.hold && sd_sink.dropped == 0 && sd_log_enqueue(p, n) == 0)
        return;
    if (sd_log_drain() == 0) {
        /* Nothing waits (and nothing to report): write from the line. */
        w = sd_log_try(p, n);
        if (w >= 0 && (size_t)w == n)
            return;
        if (w < 0 && errno == EMSGSIZE) {
            sd_sink.dropped++;
            return;
        }
        if (w < 0)
            w = 0;
        /* The rest of a partly written line (a terminal or a stream
         * socket may take part of one) must go out before anything else.
         * The queue is empty, so it fits. */
        (void)sd_log_enqueue(p + w, n - (size_t)w);
        return;
    }
    /* Earlier drops are reported where they happened, but only when this
     * line fits after the report too, so a queue at the edge of full does
     * not alternate between reports and drops. */
    if (sd_sink.dropped > 0 &&
        SD_LOG_QUEUE_MAX - (sd_sink.tail - sd_sink.head) >= SD_LOG_REPORT_MAX + n)
        sd_log_report_drops();
    if (sd_sink.dropped > 0 || sd_log_enqueue(p, n) != 0)
        sd_sink.dropped++;
}

/* At exit: a last try for what waits, bounded in time, so a stopped
 * reader costs a stopping process at most SD_LOG_EXIT_FLUSH_MS. */
static void sd_log_at_exit(void)
{
    const struct timespec step = { 0, SD_LOG_EXIT_STEP_NS };
    long waited_ns = 0;

    if (sd_sink.kind == SD_LOG_UNSET)
        return;
    while (sd_log_drain() == 1 && waited_ns < SD_LOG_EXIT_FLUSH_MS * 1000000L) {
        /* Sleep in steps rather than poll(POLLOUT): a pipe is writable
         * with less free room than the next batch needs. */
        nanosleep(&step, NULL);
        waited_ns += SD_LOG_EXIT_STEP_NS;
    }
}

void sd_log_set_fd(int fd)
{
    if (sd_sink.own)
        close(sd_sink.out);
    sd_sink.fd = fd;
    sd_sink.out = fd;
    sd_sink.own = 0;
    sd_sink.kind = SD_LOG_UNSET;
    sd_sink.head = sd_sink.tail = 0;
    sd_sink.dropped = 0;
    sd_sink.tty = 0;
    sd_sink.midline = 0;
}

int sd_log_flush(void)
{
    if (sd_sink.kind == SD_LOG_UNSET)
        return 0; /* nothing logged yet, nothing waits */
    return sd_log_drain() != 0;
}

int sd_log_flush_timeout(int timeout_ms)
{
    if (sd_log_flush() && (timeout_ms < 0 || timeout_ms > SD_LOG_RETRY_MS))
        return SD_LOG_RETRY_MS;
    return timeout_ms;
}

void sd_log_hold(int on)
{
    sd_sink.hold = on;
}

/* The pid, cached: a log line and a request id must not cost a system
 * call each. A fork clears the cache in the child (pthread_atfork). */
static pid_t sd_log_cached_pid;

static void sd_log_pid_forget(void)
{
    sd_log_cached_pid = 0;
}

pid_t sd_log_pid(void)
{
    static int registered;

    if (!registered) {
        registered = 1;
        (void)pthread_atfork(NULL, NULL, sd_log_pid_forget);
    }
    if (sd_log_cached_pid == 0)
        sd_log_cached_pid = getpid();
    return sd_log_cached_pid;
}

void sd_log_after_fork(void)
{
    sd_log_cached_pid = 0;
    sd_sink.head = sd_sink.tail = 0;
    sd_sink.dropped = 0;
    sd_sink.midline = 0; /* the rest of a cut line is the parent's, and so is the lock */
}

size_t sd_log_queued(void)
{
    return sd_sink.tail - sd_sink.head;
}

uint64_t sd_log_dropped(void)
{
    return sd_sink.dropped;
}

void sd_log_end(struct sd_logline *l)
{
    sd_log_close(l);
    sd_log_emit(l->buf, l->len);
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

void sd_log_fatal(const char *cmd, const char *msg)
{
    struct sd_logline l;
    int i;

    /* A person at a terminal reads a sentence; anything else (a pipe, the
     * journal, a file) gets a log line like every other, so a JSON log
     * pipeline never meets a line it cannot parse. */
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "steeldoor %s: %s\n", cmd, msg);
        return;
    }
    sd_log_begin(&l, "error", "start_failed");
    sd_log_str(&l, "command", cmd);
    sd_log_str(&l, "msg", msg);
    sd_log_end(&l);
    /* The process exits next: give a slow reader a moment, bounded. */
    for (i = 0; i < 100 && sd_log_queued() > 0; i++) {
        (void)sd_log_flush();
        if (sd_log_queued() > 0)
            (void)poll(NULL, 0, 10);
    }
}
