/*
 * pump.c - one direction of a connection: from stream -> buffer -> to
 * stream (see sd/pump.h).
 */
#include "sd/pump.h"

void sd_pump_init(struct sd_pump *p, struct sd_pump_side *from, struct sd_pump_side *to)
{
    p->from = from;
    p->to = to;
    p->buf = NULL;
    p->nread = p->nwritten = 0;
    p->hook = NULL;
    p->hook_arg = NULL;
    p->reason = SD_R_NONE;
    p->detail = NULL;
    p->bulk = p->eof = p->shut = 0;
}

struct sd_buf *sd_pump_buf(struct sd_pump *p, struct sd_bufpool *pool)
{
    if (p->buf == NULL)
        p->buf = sd_bufpool_get(pool, p->bulk);
    return p->buf;
}

void sd_pump_fini(struct sd_pump *p, struct sd_bufpool *pool)
{
    sd_bufpool_put(pool, p->buf);
    p->buf = NULL;
}

static int sd_pump_fail(struct sd_pump *p, enum sd_reason reason, const char *detail)
{
    p->reason = reason;
    p->detail = detail;
    return -1;
}

/* from -> buffer: records (or segments) until the buffer is full or the
 * socket is dry, so that `to` gets them in one write. */
static int sd_pump_read(struct sd_pump *p, struct sd_bufpool *pool, int *progress)
{
    struct sd_pump_side *from = p->from;
    size_t fresh = 0, n;
    enum sd_io io;
    int ended = 0;

    if (sd_pump_buf(p, pool) == NULL)
        return sd_pump_fail(p, SD_R_OUT_OF_MEMORY, NULL);
    while (sd_pump_side_ready(from, from->rd_want) && sd_buf_room(p->buf) > 0) {
        io = sd_stream_read(from->s, p->buf->data + p->buf->w, sd_buf_room(p->buf), &n);
        if (io == SD_IO_OK) {
            p->buf->w += (uint32_t)n;
            p->nread += n;
            fresh += n;
            *progress = 1;
            if (p->buf->w == p->buf->cap && p->buf->cap == SD_BUF_SMALL) {
                p->bulk = 1;
                p->buf = sd_bufpool_grow(pool, p->buf);
            }
            /* Drained: the next readable edge wakes us. Not once the peer
             * has hung up: its EOF may already be queued, and it brings no
             * further edge. Otherwise keep reading: TLS records already in
             * OpenSSL's read-ahead buffer cost no system call (a dry socket
             * is not read again before its next edge), and a burst of small
             * records then leaves in one write instead of one per record.
             * Each turn takes at least one byte of room, so the buffer
             * bounds the loop. */
            if (!from->hup && sd_stream_read_dry(from->s))
                from->rd = 0;
        } else if (io == SD_IO_EOF) {
            p->eof = 1;
            ended = 1;
            *progress = 1;
            break;
        } else if (io == SD_IO_ERROR) {
            return sd_pump_fail(p, from->s->reason, from->s->detail);
        } else {
            sd_pump_side_blocked(from, io, &from->rd_want);
            break;
        }
    }
    if (p->hook != NULL && (fresh > 0 || ended)) {
        enum sd_reason r = p->hook(p, p->hook_arg, fresh);
        if (r != SD_R_NONE)
            return sd_pump_fail(p, r, p->detail);
    }
    return 0;
}

/* buffer -> to: one write of everything pending (a TLS stream cuts it into
 * records itself). */
static int sd_pump_write(struct sd_pump *p, int *progress)
{
    struct sd_pump_side *to = p->to;
    enum sd_io io;
    size_t n;

    io = sd_stream_write(to->s, p->buf->data + p->buf->r, sd_buf_len(p->buf), &n);
    if (io == SD_IO_OK) {
        p->buf->r += (uint32_t)n;
        p->nwritten += n;
        *progress = 1;
        if (to->s->write_full)
            to->wr = 0; /* socket buffer full: wait for the writable edge */
    } else if (io == SD_IO_EOF) {
        /* The other end closed while we still had bytes for it. */
        return sd_pump_fail(p, to->s->side == SD_SIDE_CLIENT ? SD_R_CLIENT_RESET
                                                             : SD_R_BACKEND_RESET,
                            to->s->detail);
    } else if (io == SD_IO_ERROR) {
        return sd_pump_fail(p, to->s->reason, to->s->detail);
    } else {
        sd_pump_side_blocked(to, io, &to->wr_want);
    }
    return 0;
}

int sd_pump_run(struct sd_pump *p, struct sd_bufpool *pool, int *progress)
{
    struct sd_pump_side *to = p->to;
    enum sd_io io;

    if (!p->eof && sd_pump_side_ready(p->from, p->from->rd_want) &&
        sd_pump_read(p, pool, progress) != 0)
        return -1;
    if (sd_buf_len(p->buf) > 0 && sd_pump_side_ready(to, to->wr_want) &&
        sd_pump_write(p, progress) != 0)
        return -1;
    if (sd_buf_len(p->buf) > 0)
        return 0;
    /* Nothing in flight: an idle direction holds no buffer. */
    sd_bufpool_put(pool, p->buf);
    p->buf = NULL;
    if (p->eof && !p->shut && to->wr) {
        /* Half-close: the end of this direction's input reaches `to`. */
        io = sd_stream_shutdown(to->s);
        if (io == SD_IO_OK) {
            p->shut = 1;
            *progress = 1;
        } else if (io == SD_IO_ERROR || io == SD_IO_EOF) {
            return sd_pump_fail(p, to->s->reason, to->s->detail);
        } else {
            /* Tried again on the next writable edge, whatever it waits for. */
            uint8_t ignored;
            sd_pump_side_blocked(to, io, &ignored);
        }
    }
    return 0;
}
