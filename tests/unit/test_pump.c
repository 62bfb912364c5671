/* Unit tests for pump.c and stream_tcp.c: one direction of a connection,
 * TCP streams over socketpairs (the "client" and the "backend" are the
 * test's ends). Readiness is set by hand, as epoll's edges would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sd/pump.h"
#include "sd/stream.h"

/* A connection without the gateway around it: client app <-> [client side
 * | backend side] <-> backend app. */
struct fixture {
    int capp, cgw; /* client socketpair: the test's end, the gateway's end */
    int bgw, bapp; /* backend socketpair */
    struct sd_pump_side client, backend;
    struct sd_pump up, down; /* client -> backend, backend -> client */
    struct sd_bufpool pool;
};

static void side_init(struct sd_pump_side *sd, struct sd_stream *s)
{
    memset(sd, 0, sizeof(*sd));
    sd->s = s;
    sd->rd = sd->wr = 1;
    sd->rd_want = SD_WANT_READ;
    sd->wr_want = SD_WANT_WRITE;
}

static int setup(void **state)
{
    static struct fixture f;
    int c[2], b[2];

    memset(&f, 0, sizeof(f));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) != 0)
        return -1;
    f.capp = c[0];
    f.cgw = c[1];
    f.bgw = b[0];
    f.bapp = b[1];
    side_init(&f.client, sd_stream_tcp_new(f.cgw, SD_SIDE_CLIENT));
    side_init(&f.backend, sd_stream_tcp_new(f.bgw, SD_SIDE_BACKEND));
    if (f.client.s == NULL || f.backend.s == NULL)
        return -1;
    sd_pump_init(&f.up, &f.client, &f.backend);
    sd_pump_init(&f.down, &f.backend, &f.client);
    sd_bufpool_init(&f.pool, 4, 2);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    sd_pump_fini(&f->up, &f->pool);
    sd_pump_fini(&f->down, &f->pool);
    sd_stream_free(f->client.s);
    sd_stream_free(f->backend.s);
    sd_bufpool_clear(&f->pool);
    if (f->capp >= 0)
        close(f->capp);
    if (f->bapp >= 0)
        close(f->bapp);
    close(f->cgw);
    close(f->bgw);
    return 0;
}

/* Runs both directions while anything moves, as conn.c does. Returns 0,
 * or -1 with the failing pump in *failed. */
static int run(struct fixture *f, struct sd_pump **failed)
{
    int progress, turns = 0;

    do {
        progress = 0;
        if (sd_pump_run(&f->up, &f->pool, &progress) != 0) {
            *failed = &f->up;
            return -1;
        }
        if (sd_pump_run(&f->down, &f->pool, &progress) != 0) {
            *failed = &f->down;
            return -1;
        }
        assert_true(++turns < 10000);
    } while (progress);
    return 0;
}

/* Everything readable on fd now (non-blocking), up to cap bytes. */
static size_t drain(int fd, uint8_t *out, size_t cap)
{
    size_t got = 0;
    ssize_t r;

    while (got < cap && (r = recv(fd, out + got, cap - got, 0)) > 0)
        got += (size_t)r;
    return got;
}

static void test_both_ways(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;
    char buf[64];

    assert_int_equal(send(f->capp, "hello", 5, 0), 5);
    assert_int_equal(send(f->bapp, "world!", 6, 0), 6);
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(recv(f->bapp, buf, sizeof(buf), 0), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(recv(f->capp, buf, sizeof(buf), 0), 6);
    assert_memory_equal(buf, "world!", 6);
    assert_int_equal(f->up.nread, 5);
    assert_int_equal(f->up.nwritten, 5);
    assert_int_equal(f->down.nread, 6);
    assert_int_equal(f->down.nwritten, 6);
    /* nothing in flight: no buffer held, none grown */
    assert_null(f->up.buf);
    assert_null(f->down.buf);
    assert_int_equal(f->up.bulk, 0);
    /* a short read left the socket dry: wait for its next edge */
    assert_int_equal(f->client.rd, 0);
    assert_int_equal(f->backend.rd, 0);
    assert_int_equal(f->up.eof + f->up.shut + f->down.eof + f->down.shut, 0);
}

/* After a hang-up the socket is read again without an edge: the EOF may
 * already be queued and brings none. */
static void test_hup_keeps_reading(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;
    char buf[8];

    f->client.hup = 1;
    assert_int_equal(send(f->capp, "abc", 3, 0), 3);
    assert_int_equal(run(f, &failed), 0);
    /* it read until EAGAIN instead: that cleared it */
    assert_int_equal(f->client.rd, 0);
    assert_int_equal(f->client.rd_want, SD_WANT_READ);
    assert_int_equal(recv(f->bapp, buf, sizeof(buf), 0), 3);
    shutdown(f->capp, SHUT_WR);
    f->client.rd = 1;
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(f->up.eof, 1);
}

/* Half-close each way: the end of one side's input becomes the other
 * side's shutdown, once every byte before it was written. */
static void test_half_close(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;
    char buf[16];

    assert_int_equal(send(f->capp, "last", 4, 0), 4);
    shutdown(f->capp, SHUT_WR);
    f->client.hup = 1; /* epoll reports the FIN with the bytes (EPOLLRDHUP) */
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(f->up.eof, 1);
    assert_int_equal(f->up.shut, 1);
    assert_int_equal(recv(f->bapp, buf, sizeof(buf), 0), 4);
    assert_int_equal(recv(f->bapp, buf, sizeof(buf), 0), 0); /* our FIN */
    /* the other direction still flows */
    assert_int_equal(send(f->bapp, "reply", 5, 0), 5);
    f->backend.rd = 1;
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(recv(f->capp, buf, sizeof(buf), 0), 5);
    assert_int_equal(f->down.shut, 0);
    shutdown(f->bapp, SHUT_WR);
    f->backend.rd = 1; /* the FIN's edge */
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(f->down.shut, 1);
    assert_int_equal(recv(f->capp, buf, sizeof(buf), 0), 0);
}

/* A direction whose read fills a small buffer is bulk from then on; a
 * buffer never grows past its size, and a full one stops the reading. */
static void test_bulk_and_backpressure(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;
    static uint8_t chunk[65536], out[1 << 21];
    size_t sent = 0, got = 0, i;
    int sz = 4096, turn;

    for (i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)(i * 7 + 3);
    /* a small kernel buffer towards the backend, so that it fills */
    assert_int_equal(setsockopt(f->bgw, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    for (turn = 0; turn < 64; turn++) {
        ssize_t r;
        if (turn > 0) {
            /* the backend app reads a little: the socket is writable */
            got += drain(f->bapp, out + got, 8192);
            f->backend.wr = 1;
        }
        while ((r = send(f->capp, chunk + sent % sizeof(chunk),
                         sizeof(chunk) - sent % sizeof(chunk), 0)) > 0)
            sent += (size_t)r;
        f->client.rd = 1;
        assert_int_equal(run(f, &failed), 0);
        /* bounded: what was read and not written fits in one buffer */
        assert_true(f->up.nread - f->up.nwritten <= SD_BUF_LARGE);
        assert_true(f->up.buf == NULL || f->up.buf->cap <= SD_BUF_LARGE);
        if (sent >= 2 * SD_BUF_LARGE)
            break;
    }
    assert_int_equal(f->up.bulk, 1);
    assert_non_null(f->up.buf);
    assert_int_equal(f->up.buf->cap, SD_BUF_LARGE);
    /* the backend is slow: its side waits for the writable edge */
    assert_int_equal(f->backend.wr, 0);
    /* now it reads everything: every byte arrives, in order */
    shutdown(f->capp, SHUT_WR);
    for (turn = 0; turn < 100000 && !f->up.shut; turn++) {
        got += drain(f->bapp, out + got, sizeof(out) - got);
        f->backend.wr = 1;
        f->client.rd = 1;
        assert_int_equal(run(f, &failed), 0);
    }
    got += drain(f->bapp, out + got, sizeof(out) - got);
    assert_int_equal(f->up.shut, 1);
    assert_int_equal(got, sent);
    assert_int_equal(f->up.nread, sent);
    assert_int_equal(f->up.nwritten, sent);
    for (i = 0; i < got; i++)
        if (out[i] != chunk[i % sizeof(chunk)])
            fail_msg("byte %zu differs", i);
    assert_null(f->up.buf); /* back to the pool when empty */
}

/* A write meeting a closed peer names the side it faces. */
static void test_reset_reasons(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;

    close(f->bapp);
    f->bapp = -1;
    assert_int_equal(send(f->capp, "x", 1, 0), 1);
    assert_int_equal(run(f, &failed), -1);
    assert_ptr_equal(failed, &f->up);
    assert_int_equal(failed->reason, SD_R_BACKEND_RESET);
    assert_string_equal(failed->detail, strerror(EPIPE));
}

static void test_client_reset_reason(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;

    close(f->capp);
    f->capp = -1;
    f->client.rd = 0; /* no edge seen yet on the client side */
    assert_int_equal(send(f->bapp, "y", 1, 0), 1);
    assert_int_equal(run(f, &failed), -1);
    assert_ptr_equal(failed, &f->down);
    assert_int_equal(failed->reason, SD_R_CLIENT_RESET);
    assert_string_equal(failed->detail, strerror(EPIPE));
}

/* The mode's hook sees the fresh bytes (and the end), may rewrite them,
 * and may end the connection. */
static size_t hook_calls, hook_fresh, hook_eofs;
static enum sd_reason upcase_hook(struct sd_pump *p, void *arg, size_t fresh)
{
    size_t i;

    assert_ptr_equal(arg, &hook_calls);
    hook_calls++;
    hook_fresh += fresh;
    if (fresh == 0) {
        assert_int_equal(p->eof, 1);
        hook_eofs++;
        return SD_R_NONE;
    }
    for (i = p->buf->w - fresh; i < p->buf->w; i++) {
        if (p->buf->data[i] == '!') {
            p->detail = "no shouting";
            return SD_R_INTERNAL_ERROR;
        }
        if (p->buf->data[i] >= 'a' && p->buf->data[i] <= 'z')
            p->buf->data[i] = (uint8_t)(p->buf->data[i] - 'a' + 'A');
    }
    return SD_R_NONE;
}

static void test_hook(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;
    char buf[16];

    hook_calls = hook_fresh = hook_eofs = 0;
    f->up.hook = upcase_hook;
    f->up.hook_arg = &hook_calls;
    assert_int_equal(send(f->capp, "quiet", 5, 0), 5);
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(recv(f->bapp, buf, sizeof(buf), 0), 5);
    assert_memory_equal(buf, "QUIET", 5);
    assert_int_equal(hook_fresh, 5);
    /* the other direction has no hook */
    assert_int_equal(send(f->bapp, "low", 3, 0), 3);
    f->backend.rd = 1;
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(recv(f->capp, buf, sizeof(buf), 0), 3);
    assert_memory_equal(buf, "low", 3);
    assert_int_equal(send(f->capp, "loud!", 5, 0), 5);
    f->client.rd = 1;
    assert_int_equal(run(f, &failed), -1);
    assert_ptr_equal(failed, &f->up);
    assert_int_equal(failed->reason, SD_R_INTERNAL_ERROR);
    assert_string_equal(failed->detail, "no shouting");
    assert_int_equal(hook_eofs, 0);
}

static void test_hook_sees_eof(void **state)
{
    struct fixture *f = *state;
    struct sd_pump *failed = NULL;

    hook_calls = hook_fresh = hook_eofs = 0;
    f->up.hook = upcase_hook;
    f->up.hook_arg = &hook_calls;
    shutdown(f->capp, SHUT_WR);
    assert_int_equal(run(f, &failed), 0);
    assert_int_equal(hook_eofs, 1);
    assert_int_equal(f->up.shut, 1);
}

/* The TCP stream itself: EOF, would-block, dry reads, full writes. */
static void test_stream_tcp(void **state)
{
    struct fixture *f = *state;
    struct sd_stream *s = f->backend.s;
    static uint8_t big[1 << 20];
    uint8_t buf[8];
    size_t n = 0;
    int sz = 4096;

    assert_string_equal(s->ops->name, "tcp");
    assert_null(sd_stream_peer(s));
    assert_int_equal(sd_stream_judge(s, NULL), SD_R_NONE);
    assert_int_equal(sd_stream_handshake(s), SD_IO_OK);
    assert_int_equal(sd_stream_read(s, buf, sizeof(buf), &n), SD_IO_WANT_READ);
    assert_int_equal(send(f->bapp, "0123456789", 10, 0), 10);
    assert_int_equal(sd_stream_read(s, buf, 4, &n), SD_IO_OK);
    assert_int_equal(n, 4);
    assert_int_equal(sd_stream_read_dry(s), 0); /* filled what was asked */
    assert_int_equal(sd_stream_read(s, buf, sizeof(buf), &n), SD_IO_OK);
    assert_int_equal(n, 6);
    assert_int_equal(sd_stream_read_dry(s), 1);
    sd_stream_readable(s, 0);
    assert_int_equal(sd_stream_read_dry(s), 0);
    /* a full socket: a short write says so */
    assert_int_equal(setsockopt(f->bgw, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    assert_int_equal(sd_stream_write(s, big, sizeof(big), &n), SD_IO_OK);
    assert_true(n < sizeof(big));
    assert_int_equal(s->write_full, 1);
    assert_int_equal(sd_stream_write(s, big, sizeof(big), &n), SD_IO_WANT_WRITE);
    assert_int_equal(sd_stream_shutdown(s), SD_IO_OK);
    shutdown(f->bapp, SHUT_WR);
    assert_int_equal(sd_stream_read(s, buf, sizeof(buf), &n), SD_IO_EOF);
    assert_int_equal(s->reason, SD_R_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hup_keeps_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_and_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_reset_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_sees_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_tcp, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN); /* a failing test must not kill the run */
    return cmocka_run_group_tests_name("pump", tests, NULL, NULL);
}
