/*
 * sd/pump.h - moves bytes one way, from one stream to another, through a
 * bounded buffer. A connection uses two: client -> backend and backend ->
 * client; neither knows whether a side speaks TLS or plain TCP.
 *
 * Readiness is per side (struct sd_pump_side), shared by both pumps of a
 * connection: epoll sets rd/wr (edge-triggered), an operation that would
 * block clears the one it waits for. A TLS operation may wait on the other
 * direction of its socket (a read that must write, a write that must read),
 * so each side remembers what its blocked read, write and handshake wait
 * for (rd_want, wr_want, hs_want).
 *
 * What the pump keeps from the single-purpose code it replaces:
 * - it reads until the buffer is full or the socket is dry, so the writer
 *   gets one large write; a dry socket (read_dry) is not read again before
 *   its next edge, except after a hang-up, whose EOF brings no further edge;
 * - a buffer is held only while bytes are in flight: small (SD_BUF_SMALL)
 *   at first, large from the moment one fills (bulk traffic), back to the
 *   pool when empty (sd/buf.h);
 * - a full buffer stops the reading (backpressure): memory stays bounded;
 * - end of input is forwarded once the buffer is empty (half-close): the
 *   other stream's shutdown (TCP: FIN, TLS: close_notify).
 */
#ifndef SD_PUMP_H
#define SD_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "sd/buf.h"
#include "sd/reason.h"
#include "sd/stream.h"

enum sd_want { SD_WANT_READ = 0, SD_WANT_WRITE = 1 };

/* One side of a connection: its stream and its socket's readiness. */
struct sd_pump_side {
    struct sd_stream *s;
    uint8_t rd, wr;  /* readiness, from epoll; cleared when an operation blocks */
    uint8_t hup;     /* epoll saw the peer hang up */
    uint8_t rd_want, wr_want, hs_want; /* SD_WANT_*: what a blocked op waits for */
};

/* Marks the side ready (or not) from epoll's events: hup, readable,
 * writable. A readable socket is told to its stream (sd_stream_readable). */
static inline void sd_pump_side_events(struct sd_pump_side *sd, int hup, int rd, int wr)
{
    if (hup)
        sd->hup = 1;
    if (rd) {
        sd->rd = 1;
        sd_stream_readable(sd->s, sd->hup);
    }
    if (wr)
        sd->wr = 1;
}

/* Is the side ready for what an operation waits for (SD_WANT_*)? */
static inline int sd_pump_side_ready(const struct sd_pump_side *sd, uint8_t want)
{
    return want == SD_WANT_READ ? sd->rd : sd->wr;
}

/* Records that an operation on the side blocked (io: SD_IO_WANT_READ or
 * SD_IO_WANT_WRITE): clears that readiness and stores it in *want. */
static inline void sd_pump_side_blocked(struct sd_pump_side *sd, enum sd_io io, uint8_t *want)
{
    if (io == SD_IO_WANT_READ) {
        sd->rd = 0;
        *want = SD_WANT_READ;
    } else {
        sd->wr = 0;
        *want = SD_WANT_WRITE;
    }
}

struct sd_pump;
/* A mode's look at the bytes of one direction (HTTP mode: requests), called
 * after the pump read: the last `fresh` of the buffer's pending bytes,
 * p->buf->data[p->buf->r .. p->buf->w), are new (fresh 0: the input just
 * ended, p->eof). It may rewrite the pending bytes in place, within
 * p->buf->cap, moving p->buf->w. Returns SD_R_NONE to go on, else the
 * reason to close the connection (with p->detail, static text or NULL).
 * NULL (plain L4) costs nothing. */
typedef enum sd_reason sd_pump_hook(struct sd_pump *p, void *arg, size_t fresh);

struct sd_pump {
    struct sd_pump_side *from, *to;
    struct sd_buf *buf;  /* bytes read from `from`, not yet written to `to`, or NULL */
    uint64_t nread;      /* bytes read from `from` */
    uint64_t nwritten;   /* bytes written to `to` */
    sd_pump_hook *hook;  /* NULL, or see above */
    void *hook_arg;
    enum sd_reason reason; /* why sd_pump_run failed */
    const char *detail;
    uint8_t bulk; /* this direction filled a small buffer: large from now on */
    uint8_t eof;  /* `from` finished sending */
    uint8_t shut; /* ... and that end was forwarded to `to` (its shutdown) */
};

/* Starts a pump from -> to (both sides outlive it); no buffer yet. */
void sd_pump_init(struct sd_pump *p, struct sd_pump_side *from, struct sd_pump_side *to);

/* The pump's buffer, taken from the pool if it has none yet (for a mode
 * that queues bytes ahead of the stream's, such as a PROXY header). NULL
 * when out of memory. */
struct sd_buf *sd_pump_buf(struct sd_pump *p, struct sd_bufpool *pool);

/* One pass of this direction: reads while `from` is ready and there is
 * room, writes once if `to` is ready and bytes wait, forwards the end of
 * input once all is written. Sets *progress when anything moved; the
 * caller runs both directions again while anything does. Returns 0, or -1 when the connection must end: p->reason and p->detail
 * say why (the failing stream's reason; client_reset or backend_reset when
 * a write meets the end of the other side; out_of_memory; the hook's). */
int sd_pump_run(struct sd_pump *p, struct sd_bufpool *pool, int *progress);

/* Returns the pump's buffer to the pool. */
void sd_pump_fini(struct sd_pump *p, struct sd_bufpool *pool);

#endif
