/*
 * sd/buf.h - bounded I/O buffers in two sizes, and a per-worker free list.
 *
 * A connection holds a buffer for a direction only while bytes are in
 * flight in that direction; an idle connection holds none. A buffer starts
 * small (one TLS record), which is all request/response traffic needs. When
 * one read fills a small buffer, the direction is carrying bulk data and
 * from then on gets a large buffer: four times fewer system calls and
 * kernel wake-ups per byte. Either way a buffer never grows past its
 * capacity, so a connection's memory is bounded (at most two large
 * buffers in L4 mode, four in HTTP mode: each direction's input and
 * output) no matter how fast one side writes or how slowly the other
 * reads: when a buffer is full, steeldoor stops reading from the writer
 * (backpressure).
 */
#ifndef SD_BUF_H
#define SD_BUF_H

#include <stddef.h>
#include <stdint.h>

#define SD_BUF_SMALL 16384u  /* one full TLS record of plaintext */
#define SD_BUF_LARGE 262144u /* sixteen records: a bulk direction's buffer */

struct sd_buf {
    uint32_t r;   /* next byte to send */
    uint32_t w;   /* next free byte */
    uint32_t cap; /* SD_BUF_SMALL or SD_BUF_LARGE */
    struct sd_buf *next; /* free-list link */
    uint8_t data[];
};

struct sd_bufpool_class {
    struct sd_buf *free;
    size_t nfree;
    size_t max_free; /* buffers kept for reuse beyond this go back to malloc */
};

struct sd_bufpool {
    struct sd_bufpool_class small, large;
};

void sd_bufpool_init(struct sd_bufpool *p, size_t max_small, size_t max_large);
/* Frees every pooled buffer. */
void sd_bufpool_clear(struct sd_bufpool *p);

/* Returns an empty buffer (r = w = 0) of SD_BUF_LARGE bytes when large,
 * else SD_BUF_SMALL; NULL when out of memory. */
struct sd_buf *sd_bufpool_get(struct sd_bufpool *p, int large);
/* Returns b (may be NULL) to the pool of its size. */
void sd_bufpool_put(struct sd_bufpool *p, struct sd_buf *b);
/* Moves the pending bytes of the small buffer b into a large one, returns
 * b to the pool and returns the large buffer. Returns b unchanged when it
 * is already large or no memory is left (the caller just goes on small). */
struct sd_buf *sd_bufpool_grow(struct sd_bufpool *p, struct sd_buf *b);

static inline size_t sd_buf_len(const struct sd_buf *b)
{
    return b == NULL ? 0 : b->w - b->r;
}

/* Room at the tail; moves pending bytes to the front first when that is
 * the only way to make room. */
size_t sd_buf_room(struct sd_buf *b);

#endif
