/* Unit tests for files.c: snapshots record what was read, the disk
 * fingerprint changes exactly when contents change, and a packed snapshot
 * replays the same bytes without touching the disk. */
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
#include <sys/mman.h>

#include <cmocka.h>

#include "sd/files.h"

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

static const char *p(const char *name)
{
    static char buf[4][256];
    static int k;

    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static void test_snapshot_and_fingerprint(void **state)
{
    struct sd_files *fs = sd_files_new();
    const struct sd_file *f;
    struct sd_err err;
    uint64_t a;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd_test_files_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(mkdir(p("cas"), 0700), 0);
    put("s.crt", "cert-1");
    put("cas/a.pem", "ca-a");
    put("cas/.hidden", "ignored");

    assert_int_equal(sd_files_get(fs, p("s.crt"), &f, &err), 0);
    assert_int_equal(f->kind, SD_FILE_REG);
    assert_int_equal(f->len, 6);
    assert_memory_equal(f->data, "cert-1", 6);
    assert_int_equal(sd_files_get(fs, p("cas"), &f, &err), 0);
    assert_int_equal(f->kind, SD_FILE_DIR);
    assert_string_equal((const char *)f->data, "a.pem"); /* hidden files not listed */
    assert_int_equal(sd_files_get(fs, p("missing"), &f, &err), -1);
    assert_non_null(strstr(err.msg, "missing")); /* names the file */

    a = sd_files_fingerprint(fs);
    assert_true(a == sd_files_fingerprint_disk(fs));
    utime(p("s.crt"), NULL); /* a touch is no change */
    assert_true(a == sd_files_fingerprint_disk(fs));
    put("s.crt", "cert-2");
    assert_true(a != sd_files_fingerprint_disk(fs));
    /* the snapshot keeps what it read */
    assert_int_equal(sd_files_get(fs, p("s.crt"), &f, &err), 0);
    assert_memory_equal(f->data, "cert-1", 6);
    put("s.crt", "cert-1");
    assert_true(a == sd_files_fingerprint_disk(fs));
    put("cas/b.pem", "ca-b"); /* a new CA in the directory */
    assert_true(a != sd_files_fingerprint_disk(fs));
    put("missing", "now here"); /* a file that appears */
    unlink(p("cas/b.pem"));
    assert_true(a != sd_files_fingerprint_disk(fs));
    sd_files_free(fs);
    sd_files_free(NULL);
}

static void test_pack_replays_without_disk(void **state)
{
    struct sd_files *fs = sd_files_new(), *copy;
    const struct sd_file *f;
    struct sd_err err;
    int fd;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd_test_files_XXXXXX");
    assert_non_null(mkdtemp(dir));
    put("k.pem", "secret-key");
    assert_int_equal(sd_files_get(fs, p("k.pem"), &f, &err), 0);
    assert_int_equal(sd_files_get(fs, p("nope"), &f, &err), -1);
    fd = sd_files_pack(fs, &err);
    assert_true(fd >= 0);
    put("k.pem", "changed-on-disk");
    copy = sd_files_unpack(fd, &err);
    close(fd);
    assert_non_null(copy);
    assert_int_equal(sd_files_frozen(copy), 1);
    assert_int_equal(sd_files_get(copy, p("k.pem"), &f, &err), 0);
    assert_int_equal(f->len, 10);
    assert_memory_equal(f->data, "secret-key", 10); /* the validated bytes */
    assert_int_equal(sd_files_get(copy, p("nope"), &f, &err), -1); /* same error */
    assert_int_equal(sd_files_get(copy, p("other"), &f, &err), -1); /* never reads disk */
    assert_true(sd_files_fingerprint(copy) == sd_files_fingerprint(fs));
    sd_files_free(copy);
    sd_files_free(fs);
}

static void test_unpack_rejects_garbage(void **state)
{
    struct sd_err err;
    int fd = memfd_create("t", 0);
    static const unsigned char junk[] = { 0x73, 0x66, 0x64, 0x73, 5, 0, 0, 0, 200, 0 };

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_null(sd_files_unpack(fd, &err));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_and_fingerprint),
        cmocka_unit_test(test_pack_replays_without_disk),
        cmocka_unit_test(test_unpack_rejects_garbage),
    };
    return cmocka_run_group_tests_name("files", tests, NULL, NULL);
}
