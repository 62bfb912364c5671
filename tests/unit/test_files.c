/* Unit tests for files.c: snapshots record what was read, the disk
 * fingerprint changes exactly when contents change, and a packed snapshot
 * replays the same bytes without touching the disk. A file swapped while it
 * is read (a FIFO, a file of another size) never blocks a load and never
 * yields bytes that were not one whole file. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

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
    assert_int_equal(mkdir(p("empty"), 0700), 0);
    assert_int_equal(sd_files_get(fs, p("empty"), &f, &err), 0); /* an empty listing */
    assert_int_equal(f->kind, SD_FILE_DIR);
    assert_int_equal(f->len, 0);
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

/* A load that blocks is the bug: the watchdog ends the test run with a
 * message instead of hanging it. */
static void on_alarm(int sig)
{
    static const char msg[] = "test_files: a file load blocked (watchdog)\n";

    (void)sig;
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

static void watchdog(unsigned seconds)
{
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}

static void test_fifo_and_special_files_refused_without_blocking(void **state)
{
    struct sd_files *fs = sd_files_new();
    const struct sd_file *f;
    struct sd_err err;
    uint64_t a, b;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd_test_files_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(mkfifo(p("ca.pem"), 0600), 0); /* no writer, ever */
    watchdog(10);
    assert_int_equal(sd_files_get(fs, p("ca.pem"), &f, &err), -1);
    assert_non_null(strstr(err.msg, "not a regular file or directory"));
    assert_non_null(strstr(err.msg, "ca.pem"));
    a = sd_files_fingerprint_disk(fs); /* the reload check never blocks either */
    assert_true(a == sd_files_fingerprint(fs));
    assert_int_equal(sd_files_get(fs, "/dev/null", &f, &err), -1); /* a device */
    unlink(p("ca.pem"));
    put("ca.pem", "now a file");
    b = sd_files_fingerprint_disk(fs);
    assert_true(a != b);
    alarm(0);
    sd_files_free(fs);
    unlink(p("ca.pem"));
    rmdir(dir);
}

/* Files whose size stat() gets wrong (procfs says 0) are read to their end;
 * a file over the cap is refused, not cut. */
static void test_read_to_end_of_file_with_cap(void **state)
{
    struct sd_files *fs = sd_files_new();
    const struct sd_file *f;
    struct sd_err err;
    struct stat st;
    FILE *fp;

    (void)state;
    assert_int_equal(stat("/proc/self/status", &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(sd_files_get(fs, "/proc/self/status", &f, &err), 0);
    assert_true(f->len > 100);
    assert_non_null(memmem(f->data, f->len, "VmRSS", 5));

    snprintf(dir, sizeof(dir), "/tmp/sd_test_files_XXXXXX");
    assert_non_null(mkdtemp(dir));
    fp = fopen(p("big"), "w");
    assert_non_null(fp);
    assert_int_equal(ftruncate(fileno(fp), (off_t)SD_FILES_MAX_FILE + 1), 0);
    fclose(fp);
    assert_int_equal(sd_files_get(fs, p("big"), &f, &err), -1);
    assert_non_null(strstr(err.msg, "file too large"));
    fp = fopen(p("max"), "w");
    assert_non_null(fp);
    assert_int_equal(ftruncate(fileno(fp), (off_t)SD_FILES_MAX_FILE), 0);
    fclose(fp);
    assert_int_equal(sd_files_get(fs, p("max"), &f, &err), 0); /* exactly the cap */
    assert_int_equal(f->len, SD_FILES_MAX_FILE);
    sd_files_free(fs);
    unlink(p("big"));
    unlink(p("max"));
    rmdir(dir);
}

/* A child swaps two files at one path by rename, as fast as it can, until
 * stopped: hard links of the sources are renamed over the path. It dies
 * with this process and stops by itself after 20 s whatever happens here,
 * so a failed assertion can never leave it spinning. */
static pid_t swapper(const char *path, const char *src_a, const char *src_b)
{
    pid_t parent = getpid(), pid = fork();
    char tmp[300];
    time_t end;

    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    end = time(NULL) + 20;
    snprintf(tmp, sizeof(tmp), "%s.swap", path);
    for (unsigned i = 0; time(NULL) < end; i++) {
        unlink(tmp);
        if (link(i % 2 ? src_b : src_a, tmp) == 0)
            (void)rename(tmp, path);
    }
    _exit(0);
}

static void stop(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Two valid files of different sizes, swapped while loads run: every load
 * gets one of them whole, never the size of one and the bytes of the
 * other. And a FIFO swapped with a regular file never blocks a load.
 * (Results are checked once the swapper is stopped.) */
static void test_swaps_while_loading(void **state)
{
    static char small[64], large[8192];
    const struct sd_file *f;
    struct sd_err err;
    int i, fifos = 0, regs = 0, smalls = 0, larges = 0, mixed = 0, other = 0;
    pid_t pid;
    FILE *fp;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd_test_files_XXXXXX");
    assert_non_null(mkdtemp(dir));
    memset(small, 's', sizeof(small) - 1);
    memset(large, 'L', sizeof(large) - 1);
    fp = fopen(p("small"), "w");
    assert_non_null(fp);
    fputs(small, fp);
    fclose(fp);
    fp = fopen(p("large"), "w");
    assert_non_null(fp);
    fputs(large, fp);
    fclose(fp);
    assert_int_equal(mkfifo(p("fifo"), 0600), 0);
    put("crl.pem", small);

    watchdog(30);
    pid = swapper(p("crl.pem"), p("small"), p("large"));
    for (i = 0; i < 3000; i++) {
        struct sd_files *fs = sd_files_new();
        if (fs != NULL && sd_files_get(fs, p("crl.pem"), &f, &err) == 0) {
            int is_small = f->len == strlen(small) && memcmp(f->data, small, f->len) == 0;
            int is_large = f->len == strlen(large) && memcmp(f->data, large, f->len) == 0;
            smalls += is_small;
            larges += is_large;
            mixed += !is_small && !is_large;
        }
        sd_files_free(fs);
    }
    stop(pid);
    put("crl.pem", large);
    pid = swapper(p("crl.pem"), p("fifo"), p("large"));
    for (i = 0; i < 3000; i++) {
        struct sd_files *fs = sd_files_new();
        if (fs == NULL)
            continue;
        if (sd_files_get(fs, p("crl.pem"), &f, &err) == 0) {
            if (f->len == strlen(large))
                regs++;
            else
                other++;
        } else if (strstr(err.msg, "not a regular file") != NULL) {
            fifos++;
        }
        (void)sd_files_fingerprint_disk(fs);
        sd_files_free(fs);
    }
    stop(pid);
    alarm(0);
    unlink(p("crl.pem"));
    unlink(p("crl.pem.swap"));
    unlink(p("small"));
    unlink(p("large"));
    unlink(p("fifo"));
    rmdir(dir);
    assert_int_equal(mixed, 0); /* never the size of one, the bytes of another */
    assert_true(smalls > 0 && larges > 0);
    assert_int_equal(other, 0);
    assert_true(fifos > 0 && regs > 0);
}

/* sd_files_each callback: counts entries that still hold bytes. */
static void count_data(const struct sd_file *f, void *arg)
{
    if (f->data != NULL)
        (*(size_t *)arg)++;
}

/* The master keeps a snapshot only to notice changes: after
 * sd_files_drop_data() no file's bytes are left, the fingerprints are those
 * of before, a change on disk (even one byte, same length) is still seen,
 * and nothing can be loaded or packed from the snapshot any more. */
static void test_drop_data_keeps_digests(void **state)
{
    struct sd_files *fs = sd_files_new(), *copy;
    const struct sd_file *f, *key;
    struct sd_err err;
    uint64_t a;
    size_t held = 0;
    int fd;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd_test_files_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(mkdir(p("cas"), 0700), 0);
    put("k.pem", "-----BEGIN PRIVATE KEY-----AAAA");
    put("cas/a.pem", "ca-a");
    assert_int_equal(chmod(p("k.pem"), 0600), 0);
    assert_int_equal(sd_files_get(fs, p("k.pem"), &key, &err), 0);
    assert_int_equal(sd_files_get(fs, p("cas"), &f, &err), 0);
    assert_int_equal(sd_files_get(fs, p("gone"), &f, &err), -1);
    assert_int_equal(sd_files_has_data(fs), 1);
    a = sd_files_fingerprint(fs);
    assert_true(a == sd_files_fingerprint_disk(fs));
    /* a snapshot packed before the drop still carries the bytes */
    fd = sd_files_pack(fs, &err);
    assert_true(fd >= 0);

    sd_files_drop_data(fs);
    sd_files_each(fs, count_data, &held);
    assert_int_equal(held, 0);
    assert_null(key->data);
    assert_int_equal(key->kind, SD_FILE_REG);
    assert_int_equal(key->mode, 0600);
    assert_int_equal(key->len, 31);
    assert_int_equal(sd_files_has_data(fs), 0);
    assert_true(a == sd_files_fingerprint(fs));
    assert_true(a == sd_files_fingerprint_disk(fs));
    sd_files_drop_data(fs); /* twice is fine */
    sd_files_drop_data(NULL);
    assert_true(a == sd_files_fingerprint(fs));
    /* nothing can be loaded or packed from digests */
    assert_int_equal(sd_files_get(fs, p("k.pem"), &f, &err), -1);
    assert_int_equal(sd_files_get(fs, p("new"), &f, &err), -1);
    assert_int_equal(sd_files_pack(fs, &err), -1);

    /* changes are still detected: one byte, same length */
    put("k.pem", "-----BEGIN PRIVATE KEY-----AAAB");
    assert_true(a != sd_files_fingerprint_disk(fs));
    put("k.pem", "-----BEGIN PRIVATE KEY-----AAAA");
    assert_true(a == sd_files_fingerprint_disk(fs));
    put("cas/b.pem", "ca-b"); /* the listing changed */
    assert_true(a != sd_files_fingerprint_disk(fs));
    unlink(p("cas/b.pem"));
    assert_true(a == sd_files_fingerprint_disk(fs));
    put("gone", "appeared"); /* an error that went away */
    assert_true(a != sd_files_fingerprint_disk(fs));
    unlink(p("gone"));
    assert_true(a == sd_files_fingerprint_disk(fs));

    /* what was packed before the drop is whole, and digests agree */
    copy = sd_files_unpack(fd, &err);
    close(fd);
    assert_non_null(copy);
    assert_int_equal(sd_files_get(copy, p("k.pem"), &f, &err), 0);
    assert_memory_equal(f->data, "-----BEGIN PRIVATE KEY-----AAAA", 31);
    assert_true(f->digest == key->digest);
    assert_true(sd_files_fingerprint(copy) == a);
    sd_files_free(copy);
    sd_files_free(fs);
    unlink(p("k.pem"));
    unlink(p("cas/a.pem"));
    rmdir(p("cas"));
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_and_fingerprint),
        cmocka_unit_test(test_pack_replays_without_disk),
        cmocka_unit_test(test_unpack_rejects_garbage),
        cmocka_unit_test(test_fifo_and_special_files_refused_without_blocking),
        cmocka_unit_test(test_read_to_end_of_file_with_cap),
        cmocka_unit_test(test_swaps_while_loading),
        cmocka_unit_test(test_drop_data_keeps_digests),
    };
    return cmocka_run_group_tests_name("files", tests, NULL, NULL);
}
