/* Unit tests for watch.c: every change that alters what a configured path
 * names is reported (a directory symlink swapped, a symlink in a chain
 * re-pointed, Kubernetes' ..data swap, a directory deleted and made again,
 * a path that appears later), changes elsewhere are not, and the watch
 * table stays within its caps. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/files.h"
#include "sd/watch.h"

static char base[64];

static const char *p(const char *name)
{
    static char buf[8][512];
    static int k;

    k = (k + 1) % 8;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", base, name);
    return buf[k];
}

static void put(const char *name, const char *text)
{
    char tmp[512];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", p(name));
    f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, p(name)), 0); /* as deployments replace files */
}

/* ln -sfn target name, the way deploy tools do it: a new symlink renamed
 * over the old one, so the name is never missing. */
static void relink(const char *target, const char *name)
{
    char tmp[512];

    snprintf(tmp, sizeof(tmp), "%s.new", p(name));
    unlink(tmp);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(rename(tmp, p(name)), 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 if the watch reports a relevant change within ms milliseconds. */
static int changed_within(struct sd_watch *w, int ms)
{
    int64_t end = now_ms() + ms;

    for (;;) {
        struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
        int64_t left = end - now_ms();
        if (left <= 0)
            return 0;
        if (poll(&pfd, 1, (int)left) > 0 && sd_watch_read(w))
            return 1;
    }
}

/* Drains what is pending (the events of a multi-step setup). */
static void settle(struct sd_watch *w)
{
    while (changed_within(w, 50))
        ;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the previous test's directory and makes a new one. */
static void fresh_base(void)
{
    if (base[0] != '\0')
        nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(base, sizeof(base), "/tmp/sd_test_watch_XXXXXX");
    assert_non_null(mkdtemp(base));
}

/* A snapshot of the given paths (read as a load would), and a watch on it. */
static struct sd_files *watch_paths(struct sd_watch *w, const char **paths, int n)
{
    struct sd_files *fs = sd_files_new();
    const struct sd_file *f;
    struct sd_err err;
    int i;

    assert_non_null(fs);
    for (i = 0; i < n; i++)
        (void)sd_files_get(fs, paths[i], &f, &err); /* missing paths too */
    assert_int_equal(sd_watch_open(w, &err), 0);
    sd_watch_set(w, fs);
    return fs;
}

static void test_directory_symlink_swap(void **state)
{
    struct sd_watch w;
    struct sd_files *fs;
    const char *paths[1];

    (void)state;
    fresh_base();
    assert_int_equal(mkdir(p("releases"), 0700), 0);
    assert_int_equal(mkdir(p("releases/v1"), 0700), 0);
    assert_int_equal(mkdir(p("releases/v2"), 0700), 0);
    put("releases/v1/ca.pem", "ca-1");
    put("releases/v2/ca.pem", "ca-2");
    relink("releases/v1", "current");
    paths[0] = p("current/ca.pem");
    fs = watch_paths(&w, paths, 1);
    settle(&w);

    put("unrelated", "x"); /* a name nobody configured */
    assert_false(changed_within(&w, 200));
    relink("releases/v2", "current"); /* the deploy */
    assert_true(changed_within(&w, 2000));
    /* the watch followed: v1 no longer matters, v2 does */
    put("releases/v1/ca.pem", "ca-1b");
    assert_false(changed_within(&w, 200));
    put("releases/v2/ca.pem", "ca-2b");
    assert_true(changed_within(&w, 2000));
    sd_watch_close(&w);
    sd_watch_close(&w); /* twice is safe */
    sd_files_free(fs);
}

static void test_nested_symlinks(void **state)
{
    struct sd_watch w;
    struct sd_files *fs;
    const char *paths[1];

    (void)state;
    fresh_base();
    assert_int_equal(mkdir(p("a"), 0700), 0);
    assert_int_equal(mkdir(p("b"), 0700), 0);
    assert_int_equal(mkdir(p("links"), 0700), 0);
    put("a/crl.pem", "crl-a");
    put("b/crl.pem", "crl-b");
    /* top -> links/mid -> ../a (a link to a link to a directory) */
    relink("../a", "links/mid");
    relink("links/mid", "top");
    paths[0] = p("top/crl.pem");
    fs = watch_paths(&w, paths, 1);
    settle(&w);

    relink("../b", "links/mid"); /* the inner link re-pointed */
    assert_true(changed_within(&w, 2000));
    put("a/crl.pem", "crl-a2");
    assert_false(changed_within(&w, 200));
    put("b/crl.pem", "crl-b2");
    assert_true(changed_within(&w, 2000));
    sd_watch_close(&w);
    sd_files_free(fs);
}

static void test_kubernetes_data_swap(void **state)
{
    struct sd_watch w;
    struct sd_files *fs;
    const char *paths[1];

    (void)state;
    fresh_base();
    assert_int_equal(mkdir(p("..2024_01"), 0700), 0);
    assert_int_equal(mkdir(p("..2024_02"), 0700), 0);
    put("..2024_01/ca.crt", "one");
    put("..2024_02/ca.crt", "two");
    relink("..2024_01", "..data");
    relink("..data/ca.crt", "ca.crt");
    paths[0] = p("ca.crt");
    fs = watch_paths(&w, paths, 1);
    settle(&w);

    relink("..2024_02", "..data");
    assert_true(changed_within(&w, 2000));
    sd_watch_close(&w);
    sd_files_free(fs);
}

static void test_directory_deleted_and_recreated(void **state)
{
    struct sd_watch w;
    struct sd_files *fs;
    const char *paths[2];

    (void)state;
    fresh_base();
    assert_int_equal(mkdir(p("cas"), 0700), 0);
    put("cas/a.pem", "ca-a");
    paths[0] = p("cas");
    paths[1] = p("cas/a.pem");
    fs = watch_paths(&w, paths, 2);
    settle(&w);

    assert_int_equal(unlink(p("cas/a.pem")), 0);
    assert_int_equal(rmdir(p("cas")), 0);
    assert_true(changed_within(&w, 2000));
    settle(&w);
    assert_int_equal(mkdir(p("cas"), 0700), 0); /* seen through the parent */
    assert_true(changed_within(&w, 2000));
    settle(&w);
    put("cas/b.pem", "ca-b"); /* and the new directory is watched again */
    assert_true(changed_within(&w, 2000));
    sd_watch_close(&w);
    sd_files_free(fs);
}

static void test_missing_ancestors_watched_until_they_appear(void **state)
{
    struct sd_watch w;
    struct sd_files *fs;
    const char *paths[1];

    (void)state;
    fresh_base();
    paths[0] = p("x/y/z/key.pem");
    fs = watch_paths(&w, paths, 1); /* nothing of it exists yet */
    settle(&w);

    assert_int_equal(mkdir(p("x"), 0700), 0);
    assert_true(changed_within(&w, 2000));
    assert_int_equal(mkdir(p("x/y"), 0700), 0);
    assert_true(changed_within(&w, 2000));
    assert_int_equal(mkdir(p("x/y/z"), 0700), 0);
    assert_true(changed_within(&w, 2000));
    put("x/y/z/other", "-");
    assert_false(changed_within(&w, 200));
    put("x/y/z/key.pem", "key");
    assert_true(changed_within(&w, 2000));
    /* a whole tree moved away and back: the ancestors' watches are lost
     * (IN_MOVE_SELF) and taken again */
    assert_int_equal(rename(p("x"), p("x.old")), 0);
    assert_true(changed_within(&w, 2000));
    settle(&w);
    put("x.old/y/z/key.pem", "key2"); /* no longer what the path names */
    assert_false(changed_within(&w, 200));
    assert_int_equal(rename(p("x.old"), p("x")), 0);
    assert_true(changed_within(&w, 2000));
    settle(&w);
    put("x/y/z/key.pem", "key3");
    assert_true(changed_within(&w, 2000));
    sd_watch_close(&w);
    sd_files_free(fs);
}

static void test_relative_path_and_dotdot(void **state)
{
    struct sd_watch w;
    struct sd_files *fs;
    const char *paths[1];
    char cwd[512];

    (void)state;
    fresh_base();
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(mkdir(p("d"), 0700), 0);
    assert_int_equal(mkdir(p("e"), 0700), 0);
    put("e/f.pem", "f");
    assert_int_equal(chdir(p("d")), 0);
    paths[0] = "./../e/f.pem";
    fs = watch_paths(&w, paths, 1);
    settle(&w);
    put("e/f.pem", "f2");
    assert_true(changed_within(&w, 2000));
    put("d/f.pem", "not this one");
    assert_false(changed_within(&w, 200));
    assert_int_equal(chdir(cwd), 0);
    sd_watch_close(&w);
    sd_files_free(fs);
}

/* More directories than the table holds: no overflow, the first ones are
 * still watched, and a symlink loop ends. */
static void test_caps(void **state)
{
    enum { N = SD_WATCH_MAX_DIRS + 20 };
    static const char *paths[N + 1];
    static char names[N][32];
    struct sd_watch w;
    struct sd_files *fs;
    int i;

    (void)state;
    fresh_base();
    for (i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "d%03d", i);
        assert_int_equal(mkdir(p(names[i]), 0700), 0);
        snprintf(names[i], sizeof(names[i]), "d%03d/f", i);
        paths[i] = strdup(p(names[i]));
    }
    relink("loop2", "loop1");
    relink("loop1", "loop2");
    paths[N] = strdup(p("loop1/f"));
    fs = watch_paths(&w, paths, N + 1);
    settle(&w);
    put(names[0], "changed");
    assert_true(changed_within(&w, 2000));
    sd_watch_close(&w);
    sd_files_free(fs);
    for (i = 0; i <= N; i++)
        free((void *)paths[i]);
}

static void test_closed_watch_is_inert(void **state)
{
    struct sd_watch w;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.fd = -1;
    sd_watch_set(&w, NULL); /* watching off: nothing is touched */
    assert_int_equal(sd_watch_read(&w), 0);
    sd_watch_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory_symlink_swap),
        cmocka_unit_test(test_nested_symlinks),
        cmocka_unit_test(test_kubernetes_data_swap),
        cmocka_unit_test(test_directory_deleted_and_recreated),
        cmocka_unit_test(test_missing_ancestors_watched_until_they_appear),
        cmocka_unit_test(test_relative_path_and_dotdot),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_closed_watch_is_inert),
    };
    int rc = cmocka_run_group_tests_name("watch", tests, NULL, NULL);

    if (base[0] != '\0')
        nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
