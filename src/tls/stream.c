/*
 * stream.c - the TLS stream (see sd/stream.h): TEMPORARY adapter over the
 * sd_tls_conn API, so the connection can move to streams while the TLS
 * files are being split. The TLS owner replaces this file.
 */
#include "sd/tls.h"

#include <stdlib.h>

#include "sd/stream.h"

struct sd_tls_stream {
    struct sd_stream s;
    struct sd_tls_conn *c;
};

static struct sd_tls_stream *sd_tls_stream_of(struct sd_stream *s)
{
    return (struct sd_tls_stream *)s;
}

static enum sd_io sd_tls_stream_result(struct sd_stream *s, enum sd_io io)
{
    if (io == SD_IO_ERROR || io == SD_IO_EOF) {
        s->reason = sd_reason_from_str(sd_tls_conn_reason(sd_tls_stream_of(s)->c));
        s->detail = sd_tls_conn_detail(sd_tls_stream_of(s)->c);
    }
    return io;
}

static enum sd_io sd_tls_stream_handshake(struct sd_stream *s)
{
    return sd_tls_stream_result(s, sd_tls_handshake(sd_tls_stream_of(s)->c));
}

static enum sd_io sd_tls_stream_read(struct sd_stream *s, void *buf, size_t len, size_t *n)
{
    return sd_tls_stream_result(s, sd_tls_read(sd_tls_stream_of(s)->c, buf, len, n));
}

static enum sd_io sd_tls_stream_write(struct sd_stream *s, const void *buf, size_t len,
                                      size_t *n)
{
    return sd_tls_stream_result(s, sd_tls_write(sd_tls_stream_of(s)->c, buf, len, n));
}

static enum sd_io sd_tls_stream_shutdown(struct sd_stream *s)
{
    return sd_tls_stream_result(s, sd_tls_shutdown(sd_tls_stream_of(s)->c));
}

static void sd_tls_stream_readable(struct sd_stream *s, int hup)
{
    sd_tls_conn_readable(sd_tls_stream_of(s)->c, hup);
}

static int sd_tls_stream_read_dry(struct sd_stream *s)
{
    return sd_tls_conn_read_dry(sd_tls_stream_of(s)->c);
}

static enum sd_reason sd_tls_stream_judge(const struct sd_stream *s, struct sd_tls *now)
{
    const struct sd_tls_stream *t = (const struct sd_tls_stream *)s;
    const char *r = sd_tls_conn_judge(t->c, now);

    return r == NULL ? SD_R_NONE : sd_reason_from_str(r);
}

static void sd_tls_stream_free(struct sd_stream *s)
{
    sd_tls_conn_free(sd_tls_stream_of(s)->c);
    free(s);
}

static const struct sd_stream_ops sd_tls_stream_ops = {
    .name = "tls",
    .handshake = sd_tls_stream_handshake,
    .read = sd_tls_stream_read,
    .write = sd_tls_stream_write,
    .shutdown = sd_tls_stream_shutdown,
    .readable = sd_tls_stream_readable,
    .read_dry = sd_tls_stream_read_dry,
    .peer = NULL,
    .judge = sd_tls_stream_judge,
    .free = sd_tls_stream_free,
};

struct sd_stream *sd_tls_stream_new(struct sd_tls *tls, int fd, enum sd_side side)
{
    struct sd_tls_stream *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->c = sd_tls_conn_new(tls, fd);
    if (t->c == NULL) {
        free(t);
        return NULL;
    }
    t->s.ops = &sd_tls_stream_ops;
    t->s.fd = fd;
    t->s.side = side;
    return &t->s;
}

/* TEMPORARY: the old log and PROXY v2 paths, until sd_peer is wired. */
struct sd_tls_conn *sd_tls_stream_conn(struct sd_stream *s)
{
    return sd_tls_stream_of(s)->c;
}
