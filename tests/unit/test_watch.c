/* Unit tests for watch.c: the fingerprint changes exactly when a file's
 * content (or presence) changes, including files inside a CA directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <cmocka.h>

#include "sd/watch.h"

static char dir[64];

static void put(const char *name, const char *text)
{
    char path[256], tmp[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.tmp", dir);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* as deployments replace files */
}

static void test_fingerprint(void **state)
{
    struct sd_config *cfg = sd_config_new();
    struct sd_listener_conf *l;
    struct sd_err err;
    char p[5][256];
    uint64_t a, b;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd_test_watch_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(p[0], sizeof(p[0]), "%s/s.crt", dir);
    snprintf(p[1], sizeof(p[1]), "%s/s.key", dir);
    snprintf(p[2], sizeof(p[2]), "%s/cas", dir);
    snprintf(p[3], sizeof(p[3]), "%s/crl.pem", dir);
    assert_int_equal(mkdir(p[2], 0700), 0);
    put("s.crt", "cert-1");
    put("s.key", "key-1");
    put("cas/a.pem", "ca-a");
    put("crl.pem", "crl-1");
    l = sd_config_add_listener(cfg, &err);
    assert_non_null(l);
    assert_int_equal(sd_config_set_str(&l->cert, p[0], &err), 0);
    assert_int_equal(sd_config_set_str(&l->key, p[1], &err), 0);
    assert_int_equal(sd_config_set_str(&l->cacert, p[2], &err), 0);
    assert_int_equal(sd_config_add_crl(l, p[3], &err), 0);

    a = sd_watch_fingerprint(cfg);
    assert_true(a == sd_watch_fingerprint(cfg)); /* stable */
    utime(p[0], NULL);                           /* a touch is no change */
    assert_true(a == sd_watch_fingerprint(cfg));
    put("s.crt", "cert-2");
    b = sd_watch_fingerprint(cfg);
    assert_true(a != b);
    put("cas/b.pem", "ca-b");                    /* a new CA in the directory */
    a = sd_watch_fingerprint(cfg);
    assert_true(a != b);
    put("cas/.hidden", "ignored");               /* hidden files are not read */
    assert_true(a == sd_watch_fingerprint(cfg));
    put("crl.pem", "crl-2");
    b = sd_watch_fingerprint(cfg);
    assert_true(a != b);
    snprintf(p[4], sizeof(p[4]), "%s/crl.pem", dir);
    unlink(p[4]);                                /* a vanished file is a change */
    assert_true(b != sd_watch_fingerprint(cfg));
    sd_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests_name("watch", tests, NULL, NULL);
}
