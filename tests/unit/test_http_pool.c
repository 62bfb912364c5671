/* Unit tests for http/pool.c: a real sd_loop and real loopback TCP
 * connections. Each parked fd is the steeldoor side of a connection; the
 * test holds the accepted end (the "backend") and watches it for the end of
 * file (or reset) that a close by the pool sends. Time is simulated with now_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/http_pool.h"

struct fx {
    struct sd_loop loop;
    struct sd_http_pool *pool;
    int lfd;                   /* listening on 127.0.0.1, an ephemeral port */
    struct sockaddr_in laddr;
    struct sd_addr t1, t2;     /* two targets (keys only: never connected to) */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    socklen_t len = sizeof(f->laddr);
    struct sd_err err;

    assert_non_null(f);
    assert_int_equal(sd_loop_init(&f->loop), 0);
    f->pool = sd_http_pool_new(&f->loop);
    assert_non_null(f->pool);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    f->laddr.sin_family = AF_INET;
    f->laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&f->laddr, sizeof(f->laddr)), 0);
    assert_int_equal(listen(f->lfd, 64), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&f->laddr, &len), 0);
    assert_int_equal(sd_addr_parse("127.0.0.1:8080", 0, &f->t1, &err), 0);
    assert_int_equal(sd_addr_parse("127.0.0.1:8081", 0, &f->t2, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    sd_http_pool_free(f->pool);
    close(f->lfd);
    sd_loop_fini(&f->loop);
    free(f);
    return 0;
}

/* A loopback connection: *local is the non-blocking end the pool gets,
 * *remote the backend's end (blocking). */
static void pair(struct fx *f, int *local, int *remote)
{
    *local = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*local >= 0);
    assert_int_equal(connect(*local, (struct sockaddr *)&f->laddr, sizeof(f->laddr)), 0);
    *remote = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*remote >= 0);
    assert_int_equal(fcntl(*local, F_SETFL, fcntl(*local, F_GETFL) | O_NONBLOCK), 0);
}

/* Non-zero when the backend end sees, within 100 ms, that the pool closed
 * its side: end of file, or a reset when the pool's side had unread bytes
 * (the kernel's answer to closing those). */
static int peer_closed(int remote)
{
    struct pollfd pfd = {.fd = remote, .events = POLLIN};
    char b;
    ssize_t n;

    if (poll(&pfd, 1, 100) != 1)
        return 0;
    n = recv(remote, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Non-zero when the backend end is still connected with nothing pending. */
static int peer_open(int remote)
{
    char b;

    return recv(remote, &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* Non-zero when fd is open in this process. */
static int fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void noop_cb(struct sd_ev *ev, uint32_t events)
{
    (void)ev;
    (void)events;
}

/* Non-zero when fd is in the loop's epoll set (adding it again fails with
 * EEXIST): a connection handed out by get must not be. */
static int in_loop(struct fx *f, int fd)
{
    struct sd_ev ev = {.fd = fd, .mask = EPOLLIN, .cb = noop_cb};

    if (sd_loop_add(&f->loop, &ev) == 0) {
        sd_loop_del(&f->loop, &ev);
        return 0;
    }
    return errno == EEXIST;
}

/* Waits until local has something to report (bytes or FIN from remote),
 * without consuming it, so that the next sd_loop_poll sees it. */
static void wait_readable(int local)
{
    struct pollfd pfd = {.fd = local, .events = POLLIN | POLLRDHUP};

    assert_int_equal(poll(&pfd, 1, 100), 1);
}

static void test_empty(void **state)
{
    struct fx *f = *state;

    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), -1);
    sd_http_pool_expire(f->pool, INT64_MAX);
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_int_equal(sd_loop_poll(&f->loop, 0), 0);
    sd_http_pool_free(NULL);
    assert_int_equal(sd_http_pool_count(NULL), 0);
}

static void test_lifo(void **state)
{
    struct fx *f = *state;
    int l[3], r[3], i;

    for (i = 0; i < 3; i++) {
        pair(f, &l[i], &r[i]);
        sd_http_pool_put(f->pool, &f->t1, l[i], 8, 60000, 1000 + i);
    }
    assert_int_equal(sd_http_pool_count(f->pool), 3);
    assert_true(in_loop(f, l[0]) && in_loop(f, l[1]) && in_loop(f, l[2]));
    /* nothing happened on the sockets: the loop leaves them parked */
    assert_int_equal(sd_loop_poll(&f->loop, 0), 0);
    assert_int_equal(sd_http_pool_count(f->pool), 3);
    for (i = 2; i >= 0; i--) {
        int fd = sd_http_pool_get(f->pool, &f->t1, 2000);
        assert_int_equal(fd, l[i]);
        assert_false(in_loop(f, fd)); /* the caller registers it its own way */
        assert_int_equal(sd_http_pool_count(f->pool), (unsigned)i);
        assert_true(peer_open(r[i]));
        close(fd);
        close(r[i]);
    }
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 2000), -1);
}

static void test_other_target(void **state)
{
    struct fx *f = *state;
    struct sd_addr unix_t;
    struct sd_err err;
    int l, r;

    pair(f, &l, &r);
    sd_http_pool_put(f->pool, &f->t1, l, 8, 60000, 0);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t2, 0), -1);
    assert_int_equal(sd_addr_parse("unix:/run/app.sock", 1, &unix_t, &err), 0);
    assert_int_equal(sd_http_pool_get(f->pool, &unix_t, 0), -1);
    assert_int_equal(sd_http_pool_count(f->pool), 1);
    assert_true(peer_open(r));
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), l);
    close(l);
    close(r);
}

/* The pool keeps its own copy of the key: a reload may free the caller's. */
static void test_key_copied(void **state)
{
    struct fx *f = *state;
    struct sd_addr *heap = malloc(sizeof(*heap)), again;
    struct sd_err err;
    int l, r;

    assert_non_null(heap);
    assert_int_equal(sd_addr_parse("[::1]:9000", 0, heap, &err), 0);
    pair(f, &l, &r);
    sd_http_pool_put(f->pool, heap, l, 8, 60000, 0);
    memset(heap, 0, sizeof(*heap));
    free(heap);
    assert_int_equal(sd_addr_parse("[::1]:9000", 0, &again, &err), 0);
    assert_int_equal(sd_http_pool_get(f->pool, &again, 0), l);
    close(l);
    close(r);
}

static void test_per_target_cap(void **state)
{
    struct fx *f = *state;
    int l[4], r[4], ol, orr, i;

    pair(f, &ol, &orr);
    sd_http_pool_put(f->pool, &f->t2, ol, 2, 60000, 0); /* another target */
    for (i = 0; i < 3; i++) {
        pair(f, &l[i], &r[i]);
        sd_http_pool_put(f->pool, &f->t1, l[i], 2, 60000, i);
    }
    /* the third put for t1 closed t1's oldest, and only it */
    assert_true(peer_closed(r[0]));
    assert_true(peer_open(r[1]) && peer_open(r[2]) && peer_open(orr));
    assert_int_equal(sd_http_pool_count(f->pool), 3);
    /* a smaller cap (a reload) closes as many as it takes, oldest first */
    pair(f, &l[3], &r[3]);
    sd_http_pool_put(f->pool, &f->t1, l[3], 1, 60000, 10);
    assert_true(peer_closed(r[1]) && peer_closed(r[2]));
    assert_true(peer_open(r[3]) && peer_open(orr));
    assert_int_equal(sd_http_pool_count(f->pool), 2);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 10), l[3]);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 10), -1);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t2, 10), ol);
    close(l[3]);
    close(ol);
    for (i = 0; i < 4; i++)
        close(r[i]);
    close(orr);
}

/* SD_HTTP_POOL_MAX in all: the oldest overall goes, whatever its target.
 * The bulk are duplicates of one socket (an fd each, one connection). */
static void test_global_cap(void **state)
{
    struct fx *f = *state;
    struct sd_addr targets[50];
    struct rlimit rl;
    struct sd_err err;
    int first_l, first_r, last_l, last_r, sp[2], fd;
    unsigned i;
    char text[32];

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < SD_HTTP_POOL_MAX + 64) {
        rl.rlim_cur = rl.rlim_max;
        if (rl.rlim_cur < SD_HTTP_POOL_MAX + 64 || setrlimit(RLIMIT_NOFILE, &rl) != 0)
            skip(); /* not enough descriptors for the test */
    }
    for (i = 0; i < 50; i++) {
        snprintf(text, sizeof(text), "10.0.0.%u:80", i + 1);
        assert_int_equal(sd_addr_parse(text, 0, &targets[i], &err), 0);
    }
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    pair(f, &first_l, &first_r);
    sd_http_pool_put(f->pool, &f->t1, first_l, SD_HTTP_POOL_MAX, 60000, 0);
    for (i = 1; i < SD_HTTP_POOL_MAX; i++) {
        fd = fcntl(sp[0], F_DUPFD_CLOEXEC, 0);
        assert_true(fd >= 0);
        sd_http_pool_put(f->pool, &targets[i % 50], fd, SD_HTTP_POOL_MAX, 60000, i);
    }
    close(sp[0]); /* the pool holds the only copies now */
    assert_int_equal(sd_http_pool_count(f->pool), SD_HTTP_POOL_MAX);
    assert_true(peer_open(first_r));
    pair(f, &last_l, &last_r);
    sd_http_pool_put(f->pool, &f->t2, last_l, SD_HTTP_POOL_MAX, 60000, SD_HTTP_POOL_MAX);
    assert_int_equal(sd_http_pool_count(f->pool), SD_HTTP_POOL_MAX);
    assert_true(peer_closed(first_r));
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), -1);
    assert_true(peer_open(last_r));
    /* free closes them all: every duplicate too, or sp[1] would see no EOF */
    sd_http_pool_free(f->pool);
    f->pool = sd_http_pool_new(&f->loop);
    assert_non_null(f->pool);
    assert_true(peer_closed(last_r));
    assert_true(peer_closed(sp[1]));
    close(first_r);
    close(last_r);
    close(sp[1]);
}

static void test_expire(void **state)
{
    struct fx *f = *state;
    int l[3], r[3], i;

    for (i = 0; i < 3; i++)
        pair(f, &l[i], &r[i]);
    sd_http_pool_put(f->pool, &f->t1, l[0], 8, 1000, 0);    /* idle until 1000 */
    sd_http_pool_put(f->pool, &f->t1, l[1], 8, 1000, 500);  /* until 1500 */
    sd_http_pool_put(f->pool, &f->t2, l[2], 8, 100, 500);   /* until 600 */
    sd_http_pool_expire(f->pool, 600); /* idle exactly its time: kept */
    assert_int_equal(sd_http_pool_count(f->pool), 3);
    sd_http_pool_expire(f->pool, 601);
    assert_int_equal(sd_http_pool_count(f->pool), 2);
    assert_true(peer_closed(r[2]));
    assert_true(peer_open(r[0]) && peer_open(r[1]));
    sd_http_pool_expire(f->pool, 1001);
    assert_int_equal(sd_http_pool_count(f->pool), 1);
    assert_true(peer_closed(r[0]));
    assert_true(peer_open(r[1]));
    /* get closes an expired entry on the way instead of handing it out */
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 1501), -1);
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_true(peer_closed(r[1]));
    for (i = 0; i < 3; i++)
        close(r[i]);
}

/* get skips (and closes) an expired newer entry for an older live one. */
static void test_get_skips_expired(void **state)
{
    struct fx *f = *state;
    int l[2], r[2];

    pair(f, &l[0], &r[0]);
    pair(f, &l[1], &r[1]);
    sd_http_pool_put(f->pool, &f->t1, l[0], 8, 5000, 0);
    sd_http_pool_put(f->pool, &f->t1, l[1], 8, 10, 0);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 100), l[0]);
    assert_true(peer_closed(r[1]));
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    close(l[0]);
    close(r[0]);
    close(r[1]);
}

static void test_backend_closes_while_parked(void **state)
{
    struct fx *f = *state;
    int l[2], r[2];

    pair(f, &l[0], &r[0]);
    pair(f, &l[1], &r[1]);
    sd_http_pool_put(f->pool, &f->t1, l[0], 8, 60000, 0);
    sd_http_pool_put(f->pool, &f->t1, l[1], 8, 60000, 0);
    close(r[1]);
    wait_readable(l[1]);
    assert_int_equal(sd_loop_poll(&f->loop, 100), 1);
    assert_int_equal(sd_http_pool_count(f->pool), 1);
    assert_false(fd_open(l[1]));
    assert_true(peer_open(r[0]));
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), l[0]);
    close(l[0]);
    close(r[0]);
}

static void test_backend_speaks_while_parked(void **state)
{
    struct fx *f = *state;
    int l, r;

    pair(f, &l, &r);
    sd_http_pool_put(f->pool, &f->t1, l, 8, 60000, 0);
    assert_int_equal(send(r, "HTTP/1.1 408 x\r\n", 16, 0), 16);
    wait_readable(l);
    assert_int_equal(sd_loop_poll(&f->loop, 100), 1);
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_true(peer_closed(r));
    close(r);
}

/* Before the loop has run: get's MSG_PEEK sees what epoll has not reported
 * yet, closes those, and returns the next live one. */
static void test_get_peeks(void **state)
{
    struct fx *f = *state;
    int l[3], r[3], i;
    char b;

    for (i = 0; i < 3; i++)
        pair(f, &l[i], &r[i]);
    sd_http_pool_put(f->pool, &f->t1, l[0], 8, 60000, 0); /* live */
    sd_http_pool_put(f->pool, &f->t1, l[1], 8, 60000, 0); /* will be closed */
    sd_http_pool_put(f->pool, &f->t1, l[2], 8, 60000, 0); /* will speak */
    close(r[1]);
    assert_int_equal(send(r[2], "x", 1, 0), 1);
    wait_readable(l[1]);
    wait_readable(l[2]);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), l[0]);
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_false(fd_open(l[1]));
    assert_true(peer_closed(r[2]));
    /* the live one was only peeked at: nothing of it was consumed */
    assert_int_equal(send(r[0], "y", 1, 0), 1);
    wait_readable(l[0]);
    assert_int_equal(recv(l[0], &b, 1, 0), 1);
    assert_int_equal(b, 'y');
    close(l[0]);
    close(r[0]);
    close(r[2]);
}

static void test_free_closes_all(void **state)
{
    struct fx *f = *state;
    int l[4], r[4], i;

    for (i = 0; i < 4; i++) {
        pair(f, &l[i], &r[i]);
        sd_http_pool_put(f->pool, i % 2 ? &f->t1 : &f->t2, l[i], 8, 60000, 0);
    }
    sd_http_pool_free(f->pool);
    f->pool = sd_http_pool_new(&f->loop);
    assert_non_null(f->pool);
    for (i = 0; i < 4; i++) {
        assert_true(peer_closed(r[i]));
        assert_false(fd_open(l[i]));
        close(r[i]);
    }
}

static void test_put_max_zero(void **state)
{
    struct fx *f = *state;
    int l, r;

    pair(f, &l, &r);
    sd_http_pool_put(f->pool, &f->t1, l, 0, 60000, 0);
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_true(peer_closed(r));
    assert_false(fd_open(l));
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), -1);
    close(r);
}

/* A descriptor epoll refuses (a regular file) cannot be watched: closed. */
static void test_put_unwatchable(void **state)
{
    struct fx *f = *state;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    int l, r;

    assert_true(fd >= 0);
    sd_http_pool_put(f->pool, &f->t1, fd, 8, 60000, 0);
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    assert_false(fd_open(fd));
    /* the target's record and the slot were given back: the pool works on */
    pair(f, &l, &r);
    sd_http_pool_put(f->pool, &f->t1, l, 8, 60000, 0);
    assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), l);
    close(l);
    close(r);
}

/* An event of the same epoll batch for a slot that another source's
 * callback released first (and, in the second case, reused for a live
 * connection) must neither touch freed memory nor close the new one. */
struct stale {
    struct sd_ev ev;
    struct fx *f;
    int reuse_l;         /* put in the released slot, or -1 */
    unsigned seen_count; /* pool count when the callback ran */
    int ran;
};

static void stale_cb(struct sd_ev *ev, uint32_t events)
{
    struct stale *s = (struct stale *)((char *)ev - offsetof(struct stale, ev));
    char b[8];

    (void)events;
    while (read(ev->fd, b, sizeof(b)) > 0)
        ;
    s->ran = 1;
    s->seen_count = sd_http_pool_count(s->f->pool);
    sd_http_pool_expire(s->f->pool, INT64_MAX); /* releases the slot */
    if (s->reuse_l >= 0)
        sd_http_pool_put(s->f->pool, &s->f->t1, s->reuse_l, 8, 60000, 0);
}

static void run_stale(struct fx *f, int reuse)
{
    struct stale s;
    int trig[2], l, r, l2 = -1, r2 = -1;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, trig), 0);
    memset(&s, 0, sizeof(s));
    s.ev.fd = trig[0];
    s.ev.mask = EPOLLIN;
    s.ev.cb = stale_cb;
    s.f = f;
    pair(f, &l, &r);
    if (reuse)
        pair(f, &l2, &r2);
    s.reuse_l = l2;
    assert_int_equal(sd_loop_add(&f->loop, &s.ev), 0);
    sd_http_pool_put(f->pool, &f->t1, l, 8, 60000, 0);
    /* epoll's ready list is in order of readiness: trigger first, then the
     * parked connection, so the trigger's callback runs first */
    assert_int_equal(write(trig[1], "t", 1), 1);
    assert_int_equal(send(r, "x", 1, 0), 1);
    wait_readable(l);
    assert_int_equal(sd_loop_poll(&f->loop, 100), 2);
    assert_true(s.ran);
    assert_int_equal(s.seen_count, 1); /* the parked event was still to come */
    assert_true(peer_closed(r));
    if (reuse) {
        assert_int_equal(sd_http_pool_count(f->pool), 1);
        assert_true(peer_open(r2));
        assert_int_equal(sd_http_pool_get(f->pool, &f->t1, 0), l2);
        close(l2);
        close(r2);
    }
    assert_int_equal(sd_http_pool_count(f->pool), 0);
    sd_loop_del(&f->loop, &s.ev);
    close(trig[0]);
    close(trig[1]);
    close(r);
}

static void test_stale_event_freed_slot(void **state)
{
    run_stale(*state, 0);
}

static void test_stale_event_reused_slot(void **state)
{
    run_stale(*state, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_target_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_global_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_skips_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_closes_while_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_speaks_while_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_peeks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_closes_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_max_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_unwatchable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_event_freed_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_event_reused_slot, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
