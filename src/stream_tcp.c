/*
 * stream_tcp.c - the plain TCP stream (see sd/stream.h): the backend side
 * of L4 serve, the client side of client mode.
 *
 * One system call per operation and nothing buffered: what the kernel
 * takes or gives is the result. Failures name the side the stream faces
 * (backend_reset / client_reset) with the system's message as detail.
 */
#include "sd/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sd_tcp_stream {
    struct sd_stream s;
    unsigned char dry; /* the last read came back short: the socket is empty */
};

static enum sd_io sd_tcp_fail(struct sd_stream *s, int err)
{
    s->reason = s->side == SD_SIDE_BACKEND ? SD_R_BACKEND_RESET : SD_R_CLIENT_RESET;
    s->detail = strerror(err);
    return SD_IO_ERROR;
}

static enum sd_io sd_tcp_handshake(struct sd_stream *s)
{
    (void)s;
    return SD_IO_OK;
}

static enum sd_io sd_tcp_read(struct sd_stream *s, void *buf, size_t len, size_t *n)
{
    struct sd_tcp_stream *t = (struct sd_tcp_stream *)s;
    ssize_t r;

    do
        r = recv(s->fd, buf, len, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        *n = (size_t)r;
        /* Less than asked: the edge-triggered socket is empty now. */
        t->dry = (size_t)r < len;
        return SD_IO_OK;
    }
    if (r == 0)
        return SD_IO_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return SD_IO_WANT_READ;
    return sd_tcp_fail(s, errno);
}

static enum sd_io sd_tcp_write(struct sd_stream *s, const void *buf, size_t len, size_t *n)
{
    ssize_t r;

    do
        r = send(s->fd, buf, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        *n = (size_t)r;
        s->write_full = (size_t)r < len; /* the socket buffer took what it could */
        return SD_IO_OK;
    }
    if (r == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
        return SD_IO_WANT_WRITE;
    return sd_tcp_fail(s, errno);
}

static enum sd_io sd_tcp_shutdown(struct sd_stream *s)
{
    /* Our FIN. A peer that already reset makes this fail; the failure then
     * shows on the next read or write, where it names the side. */
    (void)shutdown(s->fd, SHUT_WR);
    return SD_IO_OK;
}

static void sd_tcp_readable(struct sd_stream *s, int hup)
{
    (void)hup;
    ((struct sd_tcp_stream *)s)->dry = 0;
}

static int sd_tcp_read_dry(struct sd_stream *s)
{
    return ((struct sd_tcp_stream *)s)->dry;
}

static void sd_tcp_free(struct sd_stream *s)
{
    free(s);
}

static const struct sd_stream_ops sd_tcp_ops = {
    .name = "tcp",
    .handshake = sd_tcp_handshake,
    .read = sd_tcp_read,
    .write = sd_tcp_write,
    .shutdown = sd_tcp_shutdown,
    .readable = sd_tcp_readable,
    .read_dry = sd_tcp_read_dry,
    .peer = NULL,  /* nobody verified */
    .judge = NULL, /* nothing to judge again */
    .free = sd_tcp_free,
};

struct sd_stream *sd_stream_tcp_new(int fd, enum sd_side side)
{
    struct sd_tcp_stream *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->s.ops = &sd_tcp_ops;
    t->s.fd = fd;
    t->s.side = side;
    t->s.reason = SD_R_NONE;
    return &t->s;
}
