/* Unit tests for log.c: every line is one valid JSON object (checked with
 * jansson, an independent parser), hostile bytes are escaped, and a line
 * that is too long is cut but stays valid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_truncation_stays_json),
        cmocka_unit_test(test_msg),
    };
    return cmocka_run_group_tests_name("log", tests, setup, teardown);
}
