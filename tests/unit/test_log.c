/* Unit tests for log.c: every line is one valid JSON object (checked with
 * jansson, an independent parser), hostile bytes are escaped, and a line
 * that is too long is cut but stays valid JSON; client-supplied fields
 * bounded with the _bounded calls never push out the fields after them;
 * a sink that stops taking lines never blocks the caller: lines wait in a
 * bounded queue, the overflow is counted and reported in place. */
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "sd/log.h"

static char out[2 * SD_LOG_LINE_MAX];

/* Captures what the logger writes, through a pipe. */
static int fds[2];

static int setup(void **state)
{
    (void)state;
    if (pipe(fds) != 0)
        return -1;
    sd_log_set_fd(fds[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(fds[0]);
    close(fds[1]);
    sd_log_set_fd(2);
    return 0;
}

static json_t *read_line(void)
{
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    json_error_t jerr;
    json_t *j;

    assert_true(n > 0);
    out[n] = '\0';
    assert_int_equal(out[n - 1], '\n');
    assert_null(memchr(out, '\n', (size_t)n - 1)); /* exactly one line */
    j = json_loadb(out, (size_t)n, JSON_ALLOW_NUL, &jerr);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", jerr.text, out);
    return j;
}

static void test_fields(void **state)
{
    struct sd_logline l;
    json_t *j;

    (void)state;
    sd_log_begin(&l, "info", "conn");
    sd_log_str(&l, "listener", "api");
    sd_log_u64(&l, "bytes_in", (uint64_t)INT64_MAX); /* jansson reads int64 */
    sd_log_i64(&l, "delta", -5);
    sd_log_bool(&l, "resumed", 1);
    sd_log_str(&l, "absent", NULL);
    sd_log_array_begin(&l, "sans");
    sd_log_array_strn(&l, "URI:spiffe://a/b", 16);
    sd_log_array_strn(&l, "DNS:x", 5);
    sd_log_array_end(&l);
    sd_log_end(&l);
    j = read_line();
    assert_string_equal(json_string_value(json_object_get(j, "event")), "conn");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "listener")), "api");
    assert_true(json_is_integer(json_object_get(j, "pid")));
    assert_true(json_is_string(json_object_get(j, "time")));
    assert_true(json_is_true(json_object_get(j, "resumed")));
    assert_int_equal(json_integer_value(json_object_get(j, "delta")), -5);
    assert_null(json_object_get(j, "absent"));
    assert_int_equal(json_array_size(json_object_get(j, "sans")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "sans"), 1)), "DNS:x");
    json_decref(j);
}

/* A certificate may carry quotes, newlines and NULs in its names: they must
 * neither break the line nor forge another field. */
static void test_hostile_strings(void **state)
{
    static const char evil[] = "a\"b\\c\nd\0e\x01\x7f\",\"result\":\"ok";
    struct sd_logline l;
    json_t *j;
    const char *got;
    size_t len;

    (void)state;
    sd_log_begin(&l, "warn", "conn");
    sd_log_strn(&l, "subject", evil, sizeof(evil) - 1);
    sd_log_end(&l);
    j = read_line();
    got = json_string_value(json_object_get(j, "subject"));
    len = json_string_length(json_object_get(j, "subject"));
    assert_int_equal(len, sizeof(evil) - 1);
    assert_memory_equal(got, evil, len); /* the NUL is kept, not a cut */
    assert_null(json_object_get(j, "result"));
    json_decref(j);
}

static void test_truncation_stays_json(void **state)
{
    static char big[3 * SD_LOG_LINE_MAX];
    struct sd_logline l;
    json_t *j;
    int round;

    (void)state;
    memset(big, 'x', sizeof(big));
    big[100] = '"'; /* escapes make the output longer than the input */
    for (round = 0; round < 4; round++) {
        sd_log_begin(&l, "info", "conn");
        if (round == 0) {
            sd_log_strn(&l, "subject", big, sizeof(big));
            sd_log_str(&l, "after", "dropped");
        } else if (round == 1) {
            sd_log_array_begin(&l, "sans");
            for (int i = 0; i < 100; i++)
                sd_log_array_strn(&l, big, 200);
            sd_log_array_end(&l);
            sd_log_u64(&l, "n", 1);
        } else if (round == 2) {
            for (int i = 0; i < 1000; i++)
                sd_log_u64(&l, "field", (uint64_t)i);
        } else {
            sd_log_strn(&l, "a", big, SD_LOG_LINE_MAX - 120);
            sd_log_array_begin(&l, "sans");
            sd_log_array_strn(&l, big, 500);
        }
        sd_log_end(&l);
        j = read_line();
        assert_true(strlen(out) <= SD_LOG_LINE_MAX);
        assert_true(json_is_true(json_object_get(j, "truncated")));
        assert_string_equal(json_string_value(json_object_get(j, "event")), "conn");
        json_decref(j);
    }
}

static void test_msg(void **state)
{
    json_t *j;

    (void)state;
    sd_log_msg("error", "config", "%s: %d", "file.pem", 42);
    j = read_line();
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "file.pem: 42");
    json_decref(j);
}

/* --------------------------------------------------------- bounded fields */

/* The bytes between the brackets of "key":[...] (or the quotes of
 * "key":"...") as they stand in the line in `out`. */
static size_t raw_len(const char *key, char open)
{
    char pat[64];
    const char *p, *q;
    int in_str = 0;

    snprintf(pat, sizeof(pat), "\"%s\":%c", key, open);
    p = strstr(out, pat);
    assert_non_null(p);
    p += strlen(pat);
    if (open == '"')
        in_str = 1;
    for (q = p; *q != '\0'; q++) {
        if (in_str && *q == '\\') {
            q++;
            continue;
        }
        if (*q == '"') {
            if (open == '"')
                return (size_t)(q - p);
            in_str = !in_str;
        } else if (!in_str && *q == ']') {
            return (size_t)(q - p);
        }
    }
    fail_msg("unterminated %s in %s", key, out);
    return 0;
}

/* The connection line's verdict must survive whatever the client put in
 * its certificate: kilobytes of subject and SANs take only their bounds. */
static void test_bounded_keeps_verdict(void **state)
{
    static char subject[6000];
    struct sd_logline l;
    json_t *j, *sans;
    char san[64];
    size_t k;
    int i, n;

    (void)state;
    memset(subject, 'S', sizeof(subject));
    sd_log_begin(&l, "warn", "conn");
    sd_log_str(&l, "listener", "api");
    sd_log_strn_bounded(&l, "subject", subject, sizeof(subject), 512);
    sd_log_array_begin_bounded(&l, "sans", 1024);
    for (i = 0; i < 300; i++) {
        n = snprintf(san, sizeof(san), "DNS:host-%03d.example.org", i);
        sd_log_array_strn_bounded(&l, san, (size_t)n, 256);
    }
    sd_log_array_end(&l);
    sd_log_str(&l, "result", "refused");
    sd_log_str(&l, "reason", "not_allowed");
    sd_log_u64(&l, "bytes_in", 0);
    sd_log_u64(&l, "bytes_out", 7);
    sd_log_i64(&l, "duration_ms", 3);
    sd_log_end(&l);
    j = read_line();
    assert_string_equal(json_string_value(json_object_get(j, "result")), "refused");
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "not_allowed");
    assert_int_equal(json_integer_value(json_object_get(j, "bytes_out")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "duration_ms")), 3);
    assert_null(json_object_get(j, "truncated")); /* the line did not run out */
    assert_true(json_is_true(json_object_get(j, "subject_truncated")));
    assert_true(json_is_true(json_object_get(j, "sans_truncated")));
    assert_int_equal(json_string_length(json_object_get(j, "subject")), 512);
    assert_true(raw_len("sans", '[') <= 1024);
    sans = json_object_get(j, "sans");
    assert_true(json_array_size(sans) > 10);
    for (k = 0; k < json_array_size(sans); k++) {
        /* Elements that did not fit are left out, never shown cut. */
        n = snprintf(san, sizeof(san), "DNS:host-%03zu.example.org", k);
        assert_string_equal(json_string_value(json_array_get(sans, k)), san);
    }
    json_decref(j);
}

/* Values within their bounds are whole and carry no marker. */
static void test_bounded_within_bounds(void **state)
{
    struct sd_logline l;
    json_t *j;

    (void)state;
    sd_log_begin(&l, "info", "conn");
    sd_log_str_bounded(&l, "subject", "CN=billing", 10); /* exactly the bound */
    sd_log_str_bounded(&l, "absent", NULL, 10);
    sd_log_array_begin_bounded(&l, "sans", 2 + 16 + 1 + 2 + 5); /* exactly */
    sd_log_array_strn_bounded(&l, "URI:spiffe://a/b", 16, 16);
    sd_log_array_strn_bounded(&l, "DNS:x", 5, 100);
    sd_log_array_end(&l);
    sd_log_array_begin_bounded(&l, "empty", 0);
    sd_log_array_end(&l);
    sd_log_str(&l, "result", "ok");
    sd_log_end(&l);
    j = read_line();
    assert_string_equal(json_string_value(json_object_get(j, "subject")), "CN=billing");
    assert_null(json_object_get(j, "absent"));
    assert_int_equal(json_array_size(json_object_get(j, "sans")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "empty")), 0);
    assert_null(json_object_get(j, "subject_truncated"));
    assert_null(json_object_get(j, "sans_truncated"));
    assert_null(json_object_get(j, "empty_truncated"));
    assert_null(json_object_get(j, "truncated"));
    assert_string_equal(json_string_value(json_object_get(j, "result")), "ok");
    json_decref(j);
}

/* Cutting at every possible bound: never inside an escape or a UTF-8
 * character, always a prefix of the whole value, always valid JSON. */
static void test_bounded_cut_points(void **state)
{
    static const char v[] = "a\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\x01\\\xff\xc2\x85z";
    struct sd_logline l;
    json_t *j;
    char whole[128];
    size_t wlen, max;

    (void)state;
    sd_log_begin(&l, "info", "cut");
    sd_log_strn(&l, "v", v, sizeof(v) - 1);
    sd_log_end(&l);
    j = read_line();
    wlen = json_string_length(json_object_get(j, "v"));
    assert_true(wlen < sizeof(whole));
    memcpy(whole, json_string_value(json_object_get(j, "v")), wlen);
    json_decref(j);
    for (max = 0; max <= 60; max++) {
        size_t got;

        sd_log_begin(&l, "info", "cut");
        sd_log_strn_bounded(&l, "v", v, sizeof(v) - 1, max);
        sd_log_array_begin_bounded(&l, "a", SIZE_MAX);
        sd_log_array_strn_bounded(&l, v, sizeof(v) - 1, max);
        sd_log_array_end(&l);
        sd_log_str(&l, "after", "kept");
        sd_log_end(&l);
        j = read_line();
        assert_true(raw_len("v", '"') <= max);
        got = json_string_length(json_object_get(j, "v"));
        assert_true(got <= wlen);
        assert_memory_equal(json_string_value(json_object_get(j, "v")), whole, got);
        assert_int_equal(got == wlen, json_object_get(j, "v_truncated") == NULL);
        got = json_string_length(json_array_get(json_object_get(j, "a"), 0));
        assert_memory_equal(json_string_value(json_array_get(json_object_get(j, "a"), 0)),
                            whole, got);
        assert_int_equal(got == wlen, json_object_get(j, "a_truncated") == NULL);
        assert_string_equal(json_string_value(json_object_get(j, "after")), "kept");
        json_decref(j);
    }
}

/* Bytes that are not UTF-8 cannot make the line invalid JSON; C1 control
 * characters are escaped like C0 ones; real UTF-8 is kept as it is. */
static void test_utf8_and_controls(void **state)
{
    static const char v[] = "\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xc2\x9b|"
                            "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e|\xe2\x82";
    static const char want[] = "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xc2\x9b|"
                               "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e|\xef\xbf\xbd\xef\xbf\xbd";
    struct sd_logline l;
    json_t *j;

    (void)state;
    sd_log_begin(&l, "info", "utf8");
    sd_log_strn(&l, "v", v, sizeof(v) - 1);
    sd_log_end(&l);
    j = read_line();
    assert_non_null(strstr(out, "|\\u009b|")); /* CSI shown, not sent to a terminal */
    assert_int_equal(json_string_length(json_object_get(j, "v")), sizeof(want) - 1);
    assert_memory_equal(json_string_value(json_object_get(j, "v")), want, sizeof(want) - 1);
    json_decref(j);
}

/* Random calls with random bytes and bounds: every line is one valid JSON
 * object within SD_LOG_LINE_MAX; a line that did not run out of room has
 * every field that was added to it. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void test_random_lines_stay_json(void **state)
{
    static char bytes[8192];
    int round, op;

    (void)state;
    for (round = 0; round < 3000; round++) {
        struct sd_logline l;
        json_t *j;
        int nops = (int)(rnd() % 12);

        for (size_t i = 0; i < sizeof(bytes); i++)
            bytes[i] = (char)(rnd() % 4 == 0 ? rnd() : 'a' + rnd() % 26);
        sd_log_begin(&l, "info", "fuzz");
        for (op = 0; op < nops; op++) {
            size_t n = (size_t)(rnd() % (rnd() % 2 ? 64 : sizeof(bytes)));
            size_t max = (size_t)(rnd() % 3000);
            const char *p = bytes + rnd() % (sizeof(bytes) - n + 1);
            char key[16];

            snprintf(key, sizeof(key), "k%d", op);
            switch (rnd() % 6) {
            case 0: sd_log_strn(&l, key, p, n); break;
            case 1: sd_log_strn_bounded(&l, key, p, n, max); break;
            case 2: sd_log_u64(&l, key, rnd() >> 1); break; /* jansson: int64 */
            case 3:
            case 4: {
                int k, ne = (int)(rnd() % 40);
                if (rnd() % 2)
                    sd_log_array_begin_bounded(&l, key, max);
                else
                    sd_log_array_begin(&l, key);
                for (k = 0; k < ne; k++) {
                    size_t en = (size_t)(rnd() % 300);
                    sd_log_array_strn_bounded(&l, bytes + rnd() % (sizeof(bytes) - en), en,
                                              (size_t)(rnd() % 400));
                }
                if (rnd() % 4)
                    sd_log_array_end(&l); /* else sd_log_end closes it */
                break;
            }
            default: sd_log_bool(&l, key, (int)(rnd() % 2)); break;
            }
        }
        sd_log_str(&l, "end", "x");
        sd_log_end(&l);
        j = read_line();
        assert_true(strlen(out) <= SD_LOG_LINE_MAX);
        if (!json_is_true(json_object_get(j, "truncated")))
            assert_non_null(json_object_get(j, "end"));
        json_decref(j);
    }
}

/* ------------------------------------------------------------------ sink */

/* A pipe of one page whose reader has stopped; the test reads the read
 * end without blocking once it wants the lines. */
static void stalled_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
}

static void log_seq(int seq, size_t pad)
{
    static char fill[1024];
    struct sd_logline l;

    memset(fill, 'p', sizeof(fill));
    sd_log_begin(&l, "info", "seq");
    sd_log_i64(&l, "seq", seq);
    sd_log_strn(&l, "pad", fill, pad < sizeof(fill) ? pad : sizeof(fill));
    sd_log_end(&l);
}

/* The reader resumes: reads (and flushes) until the logger has nothing
 * left. Returns a malloc'd buffer of everything read. */
static char *drain_all(int rfd, size_t *len)
{
    size_t cap = 4 * SD_LOG_QUEUE_MAX, n = 0;
    char *buf = malloc(cap);
    int idle = 0, rounds;

    assert_non_null(buf);
    for (rounds = 0; rounds < 1000000 && idle < 3; rounds++) {
        int pending = sd_log_flush();
        ssize_t r = read(rfd, buf + n, cap - n);

        if (r > 0) {
            n += (size_t)r;
            idle = 0;
            continue;
        }
        assert_true(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        if (!pending)
            idle++;
    }
    assert_true(idle >= 3);
    *len = n;
    return buf;
}

/* Every line whole and valid JSON; "seq" lines in order, each gap filled
 * by a log_dropped line in its place that counts exactly the lines
 * missing there; in all, every line of 0..total-1 written or counted. */
static void check_stream(const char *buf, size_t len, int total, int *seen,
                         uint64_t *reported)
{
    const char *p = buf, *end = buf + len;
    int expect = 0;

    *seen = 0;
    *reported = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        json_error_t jerr;
        json_t *j;
        const char *ev;

        assert_non_null(nl); /* no partial line at the end */
        assert_true(nl + 1 - p <= SD_LOG_LINE_MAX);
        j = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        if (j == NULL)
            fail_msg("not JSON (%s): %.*s", jerr.text, (int)(nl - p), p);
        ev = json_string_value(json_object_get(j, "event"));
        assert_non_null(ev);
        if (strcmp(ev, "log_dropped") == 0) {
            json_int_t d = json_integer_value(json_object_get(j, "dropped"));
            assert_true(d > 0);
            assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
            expect += (int)d;
            *reported += (uint64_t)d;
        } else {
            assert_string_equal(ev, "seq");
            assert_int_equal(json_integer_value(json_object_get(j, "seq")), expect);
            expect++;
            (*seen)++;
        }
        json_decref(j);
        p = nl + 1;
    }
    assert_int_equal(expect, total);
}

/* The reader stops: nothing blocks, the queue stays within its cap, the
 * overflow is counted; the reader resumes: queued lines come out in order,
 * the drop report where the lines went missing, then new lines directly. */
static void test_stalled_pipe_drops_and_reports(void **state)
{
    int p[2], seen;
    uint64_t reported;
    size_t len;
    char *buf;
    int i;

    (void)state;
    stalled_pipe(p);
    sd_log_set_fd(p[1]);
    assert_int_equal(sd_log_flush_timeout(-1), -1); /* nothing waits */
    for (i = 0; i < 2000; i++)
        log_seq(i, 300);
    assert_true(sd_log_dropped() > 0);
    assert_true(sd_log_queued() <= SD_LOG_QUEUE_MAX);
    assert_true(sd_log_queued() > SD_LOG_QUEUE_MAX - 1024); /* it filled up */
    assert_int_equal(sd_log_flush_timeout(-1), SD_LOG_RETRY_MS);
    assert_int_equal(sd_log_flush_timeout(5000), SD_LOG_RETRY_MS);
    assert_int_equal(sd_log_flush_timeout(10), 10);
    buf = drain_all(p[0], &len);
    check_stream(buf, len, 2000, &seen, &reported);
    assert_true(reported > 0);
    assert_true(seen > 500);
    assert_int_equal(sd_log_queued(), 0);
    assert_int_equal(sd_log_dropped(), 0);
    assert_int_equal(sd_log_flush_timeout(-1), -1);
    free(buf);
    /* Writing has resumed: a new line goes straight out. */
    log_seq(2000, 10);
    assert_int_equal(sd_log_queued(), 0);
    assert_true(read(p[0], out, sizeof(out)) > 0);
    assert_non_null(strstr(out, "\"seq\":2000,"));
    sd_log_set_fd(fds[1]);
    close(p[0]);
    close(p[1]);
}

/* A slow reader that keeps reading a little at a time: drops and reports
 * may alternate, but the stream stays whole and every line is accounted
 * for. */
static void test_slow_reader_accounts_every_line(void **state)
{
    static char sink[8192];
    int p[2], i, seen;
    uint64_t reported;
    size_t len, total = 0, cap = 8 * SD_LOG_QUEUE_MAX;
    char *buf = malloc(cap), *rest;

    (void)state;
    assert_non_null(buf);
    stalled_pipe(p);
    sd_log_set_fd(p[1]);
    for (i = 0; i < 6000; i++) {
        log_seq(i, (size_t)(i % 700));
        if (i % 7 == 0) {
            ssize_t r = read(p[0], sink, (size_t)(i % 5000) + 1);
            if (r > 0) {
                assert_true(total + (size_t)r <= cap);
                memcpy(buf + total, sink, (size_t)r);
                total += (size_t)r;
            }
        }
    }
    rest = drain_all(p[0], &len);
    assert_true(total + len <= cap);
    memcpy(buf + total, rest, len);
    free(rest);
    check_stream(buf, total + len, 6000, &seen, &reported);
    assert_true(reported > 0);
    free(buf);
    sd_log_set_fd(fds[1]);
    close(p[0]);
    close(p[1]);
}

/* A stream socket may take part of a line: the rest goes first, lines
 * never interleave or break. */
static void test_stream_socket_partial_lines(void **state)
{
    int sv[2], i, seen, small = 1;
    uint64_t reported;
    size_t len;
    char *buf;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    sd_log_set_fd(sv[0]);
    for (i = 0; i < 3000; i++)
        log_seq(i, (size_t)(i * 37 % 1000));
    assert_true(sd_log_queued() > 0);
    buf = drain_all(sv[1], &len);
    check_stream(buf, len, 3000, &seen, &reported);
    free(buf);
    sd_log_set_fd(fds[1]);
    close(sv[0]);
    close(sv[1]);
}

/* A datagram sink gets one line per message. */
static void test_datagram_one_line_per_message(void **state)
{
    int sv[2], i, got = 0, rounds;
    char msg[2 * SD_LOG_LINE_MAX];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    sd_log_set_fd(sv[0]);
    for (i = 0; i < 100; i++)
        log_seq(i, 100);
    for (rounds = 0; rounds < 100000; rounds++) {
        int pending = sd_log_flush();
        ssize_t r = recv(sv[1], msg, sizeof(msg), 0);

        if (r > 0) {
            assert_int_equal(msg[r - 1], '\n');
            assert_null(memchr(msg, '\n', (size_t)r - 1));
            got++;
        } else if (!pending) {
            break;
        }
    }
    assert_int_equal(got, 100); /* 100 lines fit the queue: none dropped */
    sd_log_set_fd(fds[1]);
    close(sv[0]);
    close(sv[1]);
}

/* A forked worker must not write the lines its master had queued: the
 * master still writes them, once. */
static void test_after_fork_no_duplicates(void **state)
{
    int p[2], i, status, seen;
    uint64_t reported;
    size_t len;
    char *buf;
    pid_t pid;

    (void)state;
    stalled_pipe(p);
    sd_log_set_fd(p[1]);
    for (i = 0; i < 100; i++)
        log_seq(i, 300);
    assert_true(sd_log_queued() > 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const struct timespec ms = { 0, 1000000L };
        int ok;

        sd_log_after_fork();
        ok = sd_log_queued() == 0 && sd_log_dropped() == 0;
        /* The parent's reader resumes while this child keeps flushing:
         * whatever the child still held would now go out a second time. */
        for (i = 0; i < 300; i++) {
            (void)sd_log_flush();
            nanosleep(&ms, NULL);
        }
        _exit(ok ? 0 : 1);
    }
    buf = drain_all(p[0], &len);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    {
        ssize_t r = read(p[0], buf + len, 4 * SD_LOG_QUEUE_MAX - len);
        if (r > 0)
            len += (size_t)r; /* anything the child wrote late */
    }
    check_stream(buf, len, 100, &seen, &reported); /* a duplicate breaks the order */
    assert_int_equal(seen, 100);
    free(buf);
    sd_log_set_fd(fds[1]);
    close(p[0]);
    close(p[1]);
}

/* On a terminal another process may be inside a line (it holds the
 * terminal's lock while the rest of a cut line waits): our lines wait in
 * the queue instead of landing in that gap, then come out whole. */
static void test_terminal_waits_for_other_writer(void **state)
{
    int m, s, held[2], go[2], status, seen;
    uint64_t reported;
    struct termios raw;
    char c = 0;
    size_t len;
    char *buf;
    pid_t pid;
    int i;

    (void)state;
    assert_int_equal(openpty(&m, &s, NULL, NULL, NULL), 0);
    assert_int_equal(tcgetattr(s, &raw), 0);
    cfmakeraw(&raw); /* the bytes written are the bytes read */
    assert_int_equal(tcsetattr(s, TCSANOW, &raw), 0);
    assert_int_equal(fcntl(m, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(pipe(held), 0);
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct flock fl;

        /* If the parent fails mid-test, EOF (or the alarm) ends the wait. */
        close(go[1]);
        close(held[0]);
        alarm(10);
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(s, F_SETLK, &fl) != 0)
            _exit(1);
        (void)!write(held[1], "l", 1);
        (void)!read(go[0], &c, 1); /* until the parent says go */
        _exit(0);
    }
    assert_int_equal(read(held[0], &c, 1), 1); /* the child holds the lock */
    sd_log_set_fd(s);
    for (i = 0; i < 3; i++)
        log_seq(i, 100);
    assert_true(sd_log_queued() > 0);
    assert_int_equal(sd_log_flush(), 1);
    assert_true(read(m, out, sizeof(out)) < 0 && errno == EAGAIN); /* nothing written */
    assert_int_equal(write(go[1], "g", 1), 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    buf = drain_all(m, &len);
    check_stream(buf, len, 3, &seen, &reported);
    assert_int_equal(seen, 3);
    free(buf);
    sd_log_set_fd(fds[1]);
    close(held[0]);
    close(held[1]);
    close(go[0]);
    close(go[1]);
    close(s);
    close(m);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* At exit, lines still queued get a bounded last try: a process whose log
 * reader has stopped still exits promptly. */
static void test_exit_flush_is_bounded(void **state)
{
    int p[2], status;
    int64_t t0, took;
    pid_t pid;

    (void)state;
    stalled_pipe(p);
    fflush(NULL);
    t0 = mono_ms();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int i;

        sd_log_set_fd(p[1]);
        for (i = 0; i < 100; i++)
            log_seq(i, 300);
        exit(sd_log_queued() > 0 ? 0 : 1); /* runs the exit flush */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    took = mono_ms() - t0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(took >= SD_LOG_EXIT_FLUSH_MS - 20); /* it did try */
    assert_true(took < 5000);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_truncation_stays_json),
        cmocka_unit_test(test_msg),
        cmocka_unit_test(test_bounded_keeps_verdict),
        cmocka_unit_test(test_bounded_within_bounds),
        cmocka_unit_test(test_bounded_cut_points),
        cmocka_unit_test(test_utf8_and_controls),
        cmocka_unit_test(test_random_lines_stay_json),
        cmocka_unit_test(test_stalled_pipe_drops_and_reports),
        cmocka_unit_test(test_slow_reader_accounts_every_line),
        cmocka_unit_test(test_stream_socket_partial_lines),
        cmocka_unit_test(test_datagram_one_line_per_message),
        cmocka_unit_test(test_after_fork_no_duplicates),
        cmocka_unit_test(test_terminal_waits_for_other_writer),
        cmocka_unit_test(test_exit_flush_is_bounded),
    };

    alarm(120); /* a sink that blocks would hang here: fail instead */
    return cmocka_run_group_tests_name("log", tests, setup, teardown);
}
