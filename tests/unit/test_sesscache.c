/* Unit tests for sesscache.c: bounded entries, expiry, removal, key
 * isolation, entries of every size in the ring, and sharing across fork(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/sesscache.h"

static void test_put_get_remove(void **state)
{
    struct sd_err err;
    struct sd_sesscache *c = sd_sesscache_new(64, &err);
    uint8_t out[SD_SESSCACHE_DATA_MAX + 16], big[SD_SESSCACHE_DATA_MAX + 1];
    const uint8_t k1[] = "listenerA|id1", k2[] = "listenerB|id1";

    (void)state;
    assert_non_null(c);
    assert_int_equal(sd_sesscache_put(c, k1, sizeof(k1), (const uint8_t *)"hello", 5, 100), 0);
    assert_int_equal(sd_sesscache_get(c, k1, sizeof(k1), out, sizeof(out), 50), 5);
    assert_memory_equal(out, "hello", 5);
    /* another listener's key (same session id) finds nothing */
    assert_int_equal(sd_sesscache_get(c, k2, sizeof(k2), out, sizeof(out), 50), -1);
    /* expired entries are gone */
    assert_int_equal(sd_sesscache_get(c, k1, sizeof(k1), out, sizeof(out), 100), -1);
    assert_int_equal(sd_sesscache_get(c, k1, sizeof(k1), out, sizeof(out), 50), -1);
    /* too large: refused, not truncated; a too-small output is a miss */
    memset(big, 'x', sizeof(big));
    assert_int_equal(sd_sesscache_put(c, k1, sizeof(k1), big, sizeof(big), 100), -1);
    assert_int_equal(sd_sesscache_put(c, k1, sizeof(k1), big, SD_SESSCACHE_DATA_MAX, 100), 0);
    assert_int_equal(sd_sesscache_get(c, k1, sizeof(k1), out, 10, 50), -1);
    assert_int_equal(sd_sesscache_get(c, k1, sizeof(k1), out, sizeof(out), 50), SD_SESSCACHE_DATA_MAX);
    sd_sesscache_remove(c, k1, sizeof(k1));
    assert_int_equal(sd_sesscache_get(c, k1, sizeof(k1), out, sizeof(out), 50), -1);
    assert_int_equal(sd_sesscache_put(c, k1, 0, big, 1, 100), -1);
    sd_sesscache_free(c);
    sd_sesscache_free(NULL);
}

static void test_bounded_under_churn(void **state)
{
    struct sd_err err;
    struct sd_sesscache *c = sd_sesscache_new(16, &err);
    uint8_t key[8], out[16];
    int i, found = 0;

    (void)state;
    for (i = 0; i < 1000; i++) {
        memcpy(key, &i, sizeof(i));
        memset(key + 4, 0, 4);
        assert_int_equal(sd_sesscache_put(c, key, sizeof(key), key, sizeof(key), 1000 + i), 0);
    }
    for (i = 0; i < 1000; i++) {
        memcpy(key, &i, sizeof(i));
        if (sd_sesscache_get(c, key, sizeof(key), out, sizeof(out), 0) == (long)sizeof(key)) {
            assert_memory_equal(out, key, sizeof(key)); /* never another key's data */
            found++;
        }
    }
    assert_true(found > 0 && found <= 16);
    sd_sesscache_free(c);
}

static void test_shared_across_fork(void **state)
{
    struct sd_err err;
    struct sd_sesscache *c = sd_sesscache_new(64, &err);
    const uint8_t key[] = "k";
    uint8_t out[8];
    int status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(sd_sesscache_put(c, key, sizeof(key), (const uint8_t *)"child", 5, 100) == 0 ? 0 : 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(sd_sesscache_get(c, key, sizeof(key), out, sizeof(out), 1), 5);
    assert_memory_equal(out, "child", 5);
    sd_sesscache_free(c);
}

/* Entries of every size, far more of them than fit: each readable entry
 * is exactly what was stored under its key, and the latest put always reads
 * back whole. */
static void fill(uint8_t *buf, uint32_t seed, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 2654435761u >> (i % 24)) ^ (uint8_t)i;
}

static void test_variable_sizes_churn(void **state)
{
    struct sd_err err;
    struct sd_sesscache *c = sd_sesscache_new(32, &err);
    static uint8_t data[SD_SESSCACHE_DATA_MAX], want[SD_SESSCACHE_DATA_MAX],
        out[SD_SESSCACHE_DATA_MAX];
    static size_t lens[5000];
    uint8_t key[8];
    uint32_t i, rng = 12345;
    int found = 0;

    (void)state;
    assert_non_null(c);
    for (i = 0; i < 5000; i++) {
        size_t len;
        rng = rng * 1103515245u + 12345u;
        len = 1 + (rng >> 8) % (i % 7 == 0 ? SD_SESSCACHE_DATA_MAX : 1200);
        lens[i] = len;
        memcpy(key, &i, sizeof(i));
        memset(key + 4, 0, 4);
        fill(data, i, len);
        assert_int_equal(sd_sesscache_put(c, key, sizeof(key), data, len, 10000), 0);
        assert_int_equal(sd_sesscache_get(c, key, sizeof(key), out, sizeof(out), 0), (long)len);
        assert_memory_equal(out, data, len);
    }
    for (i = 0; i < 5000; i++) {
        long n;
        memcpy(key, &i, sizeof(i));
        memset(key + 4, 0, 4);
        n = sd_sesscache_get(c, key, sizeof(key), out, sizeof(out), 0);
        if (n < 0)
            continue;
        assert_int_equal(n, (long)lens[i]);
        fill(want, i, lens[i]);
        assert_memory_equal(out, want, lens[i]);
        found++;
    }
    assert_true(found > 0 && found <= 32);
    sd_sesscache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_remove),
        cmocka_unit_test(test_bounded_under_churn),
        cmocka_unit_test(test_shared_across_fork),
        cmocka_unit_test(test_variable_sizes_churn),
    };
    return cmocka_run_group_tests_name("sesscache", tests, NULL, NULL);
}
