/*
 * sd/stream.h - one side of a connection as a byte stream: plain TCP or TLS.
 *
 * A connection has two sides, each a stream; the connection moves bytes
 * between them with one single-direction pump used twice, and never knows
 * which side speaks TLS. L4 serve is TLS (server) on the client side and
 * TCP on the backend side; client mode (steeldoor connect) is TCP on the
 * client side and TLS (client) on the backend side.
 *
 * Non-blocking: every call returns an sd_io; SD_IO_WANT_READ/WRITE mean
 * "call again when the socket is readable/writable" (TLS may need to read
 * while writing, or write while reading). A failed call leaves its reason
 * in the stream (s->reason, s->detail) for the log.
 */
#ifndef SD_STREAM_H
#define SD_STREAM_H

#include <stddef.h>

#include "sd/reason.h"

enum sd_io {
    SD_IO_OK = 0,
    SD_IO_WANT_READ,
    SD_IO_WANT_WRITE,
    SD_IO_EOF,   /* the peer closed its side (close_notify, or TCP FIN) */
    SD_IO_ERROR, /* fatal: the connection is over; see s->reason */
};

/* Which end of the connection a stream faces, so that its failures name
 * the right party (client_reset, backend_reset). */
enum sd_side { SD_SIDE_CLIENT = 0, SD_SIDE_BACKEND = 1 };

struct sd_stream;
struct sd_peer;
struct sd_tls;

struct sd_stream_ops {
    const char *name; /* "tcp", "tls" */
    /* Completes the protocol's handshake (TCP: nothing to do). */
    enum sd_io (*handshake)(struct sd_stream *s);
    /* Reads up to len bytes; *n is set when SD_IO_OK (never 0). */
    enum sd_io (*read)(struct sd_stream *s, void *buf, size_t len, size_t *n);
    /* Writes up to len bytes (partial writes allowed); *n is set when
     * SD_IO_OK. After WANT_*, call again with at least the same bytes. */
    enum sd_io (*write)(struct sd_stream *s, const void *buf, size_t len, size_t *n);
    /* Ends our sending side (TLS: close_notify; TCP: FIN); reading may go
     * on. SD_IO_OK once done. */
    enum sd_io (*shutdown)(struct sd_stream *s);
    /* epoll reported the socket readable (hup: the peer hung up). */
    void (*readable)(struct sd_stream *s, int hup);
    /* After an SD_IO_OK read: 1 when the socket was read dry and nothing
     * is buffered, so the caller may wait for the next readiness edge. */
    int (*read_dry)(struct sd_stream *s);
    /* What was verified about the peer, or NULL (TCP). */
    const struct sd_peer *(*peer)(const struct sd_stream *s);
    /* After a reload: would the context `now` admit this stream's verified
     * peer if it connected now? SD_R_NONE, or the reason it would not.
     * NULL for streams that verify nobody (TCP). */
    enum sd_reason (*judge)(const struct sd_stream *s, struct sd_tls *now);
    /* Frees the stream; the caller closes the fd. */
    void (*free)(struct sd_stream *s);
};

struct sd_stream {
    const struct sd_stream_ops *ops;
    int fd;                /* owned by the caller */
    enum sd_side side;
    enum sd_reason reason; /* why the last call failed, or SD_R_NONE */
    const char *detail;    /* static text, or NULL */
    /* Set by write: the last SD_IO_OK write stopped short because the
     * socket is full, so the caller waits for the next writable edge
     * instead of paying an EAGAIN system call to learn it. A stream that
     * cannot tell (TLS: a short write may wait on reading) leaves it 0. */
    unsigned char write_full;
};

static inline enum sd_io sd_stream_handshake(struct sd_stream *s)
{
    return s->ops->handshake(s);
}
static inline enum sd_io sd_stream_read(struct sd_stream *s, void *buf, size_t len, size_t *n)
{
    return s->ops->read(s, buf, len, n);
}
static inline enum sd_io sd_stream_write(struct sd_stream *s, const void *buf, size_t len,
                                         size_t *n)
{
    return s->ops->write(s, buf, len, n);
}
static inline enum sd_io sd_stream_shutdown(struct sd_stream *s)
{
    return s->ops->shutdown(s);
}
static inline void sd_stream_readable(struct sd_stream *s, int hup)
{
    s->ops->readable(s, hup);
}
static inline int sd_stream_read_dry(struct sd_stream *s)
{
    return s->ops->read_dry(s);
}
static inline const struct sd_peer *sd_stream_peer(const struct sd_stream *s)
{
    return s->ops->peer != NULL ? s->ops->peer(s) : NULL;
}
static inline enum sd_reason sd_stream_judge(const struct sd_stream *s, struct sd_tls *now)
{
    return s->ops->judge != NULL ? s->ops->judge(s, now) : SD_R_NONE;
}
/* NULL is fine. */
static inline void sd_stream_free(struct sd_stream *s)
{
    if (s != NULL)
        s->ops->free(s);
}

/* A plain TCP stream over a connected (or connecting), non-blocking
 * socket; the caller keeps owning fd. NULL on allocation failure. */
struct sd_stream *sd_stream_tcp_new(int fd, enum sd_side side);

#endif
