/*
 * sd/buf.h - fixed-size I/O buffers and a per-worker free list.
 *
 * A connection holds a buffer for a direction only while bytes are in
 * flight in that direction; an idle connection holds none. Every buffer has
 * the same fixed capacity (one TLS record), so a connection's memory is
 * bounded no matter how fast one side writes or how slowly the other reads:
 * when a buffer is full, steeldoor stops reading from the writer
 * (backpressure) instead of growing.
 */
#ifndef SD_BUF_H
#define SD_BUF_H

#include <stddef.h>
#include <stdint.h>

#define SD_BUF_SIZE 16384u /* one full TLS record of plaintext */

struct sd_buf {
    uint32_t r; /* next byte to send */
    uint32_t w; /* next free byte */
    struct sd_buf *next; /* free-list link */
    uint8_t data[SD_BUF_SIZE];
};

struct sd_bufpool {
    struct sd_buf *free;
    size_t nfree;
    size_t max_free; /* buffers kept for reuse beyond this go back to malloc */
};

void sd_bufpool_init(struct sd_bufpool *p, size_t max_free);
/* Frees every pooled buffer. */
void sd_bufpool_clear(struct sd_bufpool *p);

/* Returns an empty buffer (r = w = 0), or NULL when out of memory. */
struct sd_buf *sd_bufpool_get(struct sd_bufpool *p);
/* Returns b (may be NULL) to the pool. */
void sd_bufpool_put(struct sd_bufpool *p, struct sd_buf *b);

static inline size_t sd_buf_len(const struct sd_buf *b)
{
    return b == NULL ? 0 : b->w - b->r;
}

/* Room at the tail; moves pending bytes to the front first when that is
 * the only way to make room (cheap: at most one record). */
size_t sd_buf_room(struct sd_buf *b);

#endif
