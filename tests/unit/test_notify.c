/* Unit tests for notify.c: the datagrams a service manager would get on
 * $NOTIFY_SOCKET (a path and an abstract name), from which process
 * (SO_PASSCRED gives the sender's pid), read once, never from a forked
 * child or a forgotten process, never blocking, and one log line for any
 * number of problems. notify.c keeps its state for the life of the
 * process, so each case runs in a child of its own. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/log.h"
#include "sd/notify.h"

/* A receiving socket, as systemd's: datagrams with the sender's creds. */
struct rx {
    int fd;
    char env[128]; /* the value of NOTIFY_SOCKET naming it */
    char path[108];
};

static void rx_open(struct rx *r, int abstract)
{
    struct sockaddr_un a;
    socklen_t len;
    static unsigned seq;
    int on = 1;

    memset(r, 0, sizeof(*r));
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    assert_int_equal(setsockopt(r->fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
    if (abstract) {
        int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "sd-test-notify-%d-%u",
                         (int)getpid(), seq++);
        snprintf(r->env, sizeof(r->env), "@%s", a.sun_path + 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    } else {
        snprintf(r->path, sizeof(r->path), "/tmp/sd-test-notify-%d-%u", (int)getpid(),
                 seq++);
        unlink(r->path);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", r->path);
        snprintf(r->env, sizeof(r->env), "%s", r->path);
        len = (socklen_t)sizeof(a);
    }
    assert_int_equal(bind(r->fd, (struct sockaddr *)&a, len), 0);
}

static void rx_close(struct rx *r)
{
    close(r->fd);
    if (r->path[0] != '\0')
        unlink(r->path);
}

/* One datagram within timeout_ms: its text and sender pid; 0 if none came. */
static int rx_recv(struct rx *r, char *buf, size_t size, pid_t *pid, int timeout_ms)
{
    struct pollfd p = { .fd = r->fd, .events = POLLIN };
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct ucred))];
    } c;
    struct iovec iov = { .iov_base = buf, .iov_len = size - 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &c,
                        .msg_controllen = sizeof(c) };
    struct cmsghdr *h;
    ssize_t n;

    if (poll(&p, 1, timeout_ms) != 1)
        return 0;
    n = recvmsg(r->fd, &m, MSG_DONTWAIT);
    assert_true(n >= 0);
    buf[n] = '\0';
    *pid = 0;
    for (h = CMSG_FIRSTHDR(&m); h != NULL; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS) {
            struct ucred u;
            memcpy(&u, CMSG_DATA(h), sizeof(u));
            *pid = u.pid;
        }
    }
    assert_true(*pid > 0);
    return 1;
}

/* Runs fn in a child with NOTIFY_SOCKET=env (NULL: unset) and its log on a
 * pipe; returns the number of "notify" log lines it wrote. The child must
 * exit 0 (a blocked send would be killed by the alarm). */
static int run_child(const char *env, void (*fn)(void *), void *arg, pid_t *child)
{
    char log[8192];
    size_t got = 0;
    int p[2], status, lines = 0;
    pid_t pid;
    char *s;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        alarm(10);
        if (env != NULL)
            setenv("NOTIFY_SOCKET", env, 1);
        else
            unsetenv("NOTIFY_SOCKET");
        sd_log_set_fd(p[1]);
        fn(arg);
        sd_log_flush();
        _exit(0);
    }
    close(p[1]);
    *child = pid;
    for (;;) {
        ssize_t n = read(p[0], log + got, sizeof(log) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    log[got] = '\0';
    close(p[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child status %d; log: %s", status, log);
    for (s = log; (s = strstr(s, "\"event\":\"notify\"")) != NULL; s++)
        lines++;
    return lines;
}

static void send_ready(void *arg)
{
    (void)arg;
    sd_notify("READY=1\nSTATUS=serving");
}

static void check_one_message(int abstract)
{
    struct rx r;
    char buf[256];
    pid_t child, from;

    rx_open(&r, abstract);
    assert_int_equal(run_child(r.env, send_ready, NULL, &child), 0);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "READY=1\nSTATUS=serving");
    assert_int_equal(from, child);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 100), 0);
    rx_close(&r);
}

static void test_path(void **state)
{
    (void)state;
    check_one_message(0);
}

static void test_abstract(void **state)
{
    (void)state;
    check_one_message(1);
}

/* The variable is read at the first call and kept: a later change of the
 * environment does not move the messages elsewhere. */
static void send_twice_moving(void *arg)
{
    sd_notify("A=1");
    setenv("NOTIFY_SOCKET", (const char *)arg, 1);
    sd_notify("B=1");
}

static void test_read_once(void **state)
{
    struct rx r1, r2;
    char buf[64];
    pid_t child, from;

    (void)state;
    rx_open(&r1, 0);
    rx_open(&r2, 1);
    assert_int_equal(run_child(r1.env, send_twice_moving, r2.env, &child), 0);
    assert_int_equal(rx_recv(&r1, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "A=1");
    assert_int_equal(rx_recv(&r1, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "B=1");
    assert_int_equal(rx_recv(&r2, buf, sizeof(buf), &from, 100), 0);
    rx_close(&r1);
    rx_close(&r2);
}

/* A process forked after the first call (a worker restarted after READY)
 * sends nothing; the one that read the variable still does. */
static void send_fork_send(void *arg)
{
    pid_t pid;
    int status;

    (void)arg;
    sd_notify("MASTER=1");
    pid = fork();
    if (pid == 0) {
        sd_notify("WORKER=1");
        _exit(0);
    }
    waitpid(pid, &status, 0);
    sd_notify("MASTER=2");
}

static void test_forked_child_silent(void **state)
{
    struct rx r;
    char buf[64];
    pid_t child, from;

    (void)state;
    rx_open(&r, 0);
    assert_int_equal(run_child(r.env, send_fork_send, NULL, &child), 0);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "MASTER=1");
    assert_int_equal(from, child);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "MASTER=2");
    assert_int_equal(from, child);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 100), 0);
    rx_close(&r);
}

/* A worker forked before the master's first call forgets. */
static void send_after_forget(void *arg)
{
    (void)arg;
    sd_notify_forget();
    sd_notify("READY=1");
    sd_notify_reloading();
}

static void test_forget(void **state)
{
    struct rx r;
    char buf[64];
    pid_t child, from;

    (void)state;
    rx_open(&r, 0);
    assert_int_equal(run_child(r.env, send_after_forget, NULL, &child), 0);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 300), 0);
    rx_close(&r);
}

static void test_unset(void **state)
{
    pid_t child;

    (void)state;
    assert_int_equal(run_child(NULL, send_ready, NULL, &child), 0);
    assert_int_equal(run_child("", send_ready, NULL, &child), 0);
}

/* Problems are logged once, and never stop or block the caller. */
static void send_three(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 3; i++) {
        errno = EBADF;
        sd_notify("READY=1");
        assert_int_equal(errno, EBADF); /* the caller's errno is kept */
    }
}

static void test_problems_logged_once(void **state)
{
    static const char *const bad[] = {
        "/nonexistent-dir/notify", /* nobody listens */
        "relative/notify",         /* neither a path nor '@' */
        "@",                       /* an empty abstract name */
        NULL,                      /* longer than sun_path: filled below */
    };
    char toolong[160];
    size_t i;
    pid_t child;

    (void)state;
    memset(toolong, 'x', sizeof(toolong) - 1);
    toolong[0] = '/';
    toolong[sizeof(toolong) - 1] = '\0';
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(run_child(bad[i] != NULL ? bad[i] : toolong, send_three, NULL, &child),
                         1);
    toolong[0] = '@';
    assert_int_equal(run_child(toolong, send_three, NULL, &child), 1);
}

/* A manager that stops reading: the queue fills, sends fail at once with
 * EAGAIN (the alarm in run_child catches a blocking send), one log line. */
static void send_many(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 5000; i++)
        sd_notify("STATUS=filling the queue of a manager that does not read");
}

static void test_never_blocks(void **state)
{
    struct rx r;
    pid_t child;

    (void)state;
    rx_open(&r, 0);
    assert_int_equal(run_child(r.env, send_many, NULL, &child), 1);
    rx_close(&r);
}

static uint64_t mono_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void send_reloading(void *arg)
{
    (void)arg;
    sd_notify_reloading();
}

static void test_reloading(void **state)
{
    struct rx r;
    char buf[128];
    pid_t child, from;
    uint64_t before, after, usec;
    char *end;

    (void)state;
    rx_open(&r, 1);
    before = mono_usec();
    assert_int_equal(run_child(r.env, send_reloading, NULL, &child), 0);
    after = mono_usec();
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 2000), 1);
    assert_int_equal(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27), 0);
    errno = 0;
    usec = strtoull(buf + 27, &end, 10);
    assert_int_equal(errno, 0);
    assert_true(*end == '\0' && end != buf + 27);
    assert_true(usec >= before && usec <= after);
    rx_close(&r);
}

/* sd_notifyf cuts a text that is too long after its last whole line. */
static void send_long(void *arg)
{
    char pad[SD_NOTIFY_MAX + 100];

    (void)arg;
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    sd_notifyf("READY=1\nSTATUS=%d listeners\nX=%s", 3, pad);
    sd_notifyf("%s", pad);   /* one line, too long: nothing */
    sd_notifyf("%s", "ok=1"); /* then a short one */
}

static void test_notifyf_cut(void **state)
{
    struct rx r;
    char buf[2 * SD_NOTIFY_MAX];
    pid_t child, from;

    (void)state;
    rx_open(&r, 0);
    assert_int_equal(run_child(r.env, send_long, NULL, &child), 1);
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "READY=1\nSTATUS=3 listeners");
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 2000), 1);
    assert_string_equal(buf, "ok=1");
    assert_int_equal(rx_recv(&r, buf, sizeof(buf), &from, 100), 0);
    rx_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_abstract),
        cmocka_unit_test(test_read_once),
        cmocka_unit_test(test_forked_child_silent),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_unset),
        cmocka_unit_test(test_problems_logged_once),
        cmocka_unit_test(test_never_blocks),
        cmocka_unit_test(test_reloading),
        cmocka_unit_test(test_notifyf_cut),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
