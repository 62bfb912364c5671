/*
 * sd/http_pool.h - one worker's idle keep-alive connections to backends.
 *
 * HTTP mode returns a backend connection here after a complete response
 * that leaves it reusable (keep-alive, nothing unread, nothing in flight,
 * no PROXY v2 header: that header is per client connection, so such
 * connections are never pooled), and takes one from here before opening a
 * new one. Bounded: at most `max` idle connections per target (oldest
 * closed first) and SD_HTTP_POOL_MAX in all; each is closed once idle
 * longer than its idle timeout, or as soon as the backend sends anything
 * or hangs up (a backend that speaks unasked is not at a message boundary
 * any more; one that closes is gone). The pool owns the fds it holds.
 *
 * One pool per worker process; one thread.
 */
#ifndef SD_HTTP_POOL_H
#define SD_HTTP_POOL_H

#include <stdint.h>

#include "sd/loop.h"
#include "sd/net.h"

#define SD_HTTP_POOL_MAX 4096u /* idle connections in one worker, all targets */

struct sd_http_pool;

/* A pool whose idle sockets are watched by loop (which must outlive it).
 * NULL when out of memory. */
struct sd_http_pool *sd_http_pool_new(struct sd_loop *loop);

/* Closes every idle connection and frees the pool. NULL is fine. Not from
 * a loop callback: an event of the same batch may still point into it. */
void sd_http_pool_free(struct sd_http_pool *p);

/* Parks fd, a connected, idle, non-blocking socket to target, not in any
 * epoll set (and not already parked). The pool owns fd from now on: it
 * closes it at once when max is 0 or the loop cannot watch it, and
 * otherwise after idle_ms of idleness (or earlier, see above). Parking
 * past max for target closes target's oldest, past SD_HTTP_POOL_MAX the
 * pool's oldest. target is copied. now_ms is the loop's clock. */
void sd_http_pool_put(struct sd_http_pool *p, const struct sd_addr *target, int fd,
                      uint32_t max, uint32_t idle_ms, int64_t now_ms);

/* Takes the most recently parked live connection to target (removed from
 * the pool's epoll watch; the caller owns the fd), or returns -1 when
 * there is none. Connections past their idle time, and those the backend
 * closed or wrote to since the loop last looked (seen with a MSG_PEEK that
 * consumes nothing), are closed on the way. */
int sd_http_pool_get(struct sd_http_pool *p, const struct sd_addr *target, int64_t now_ms);

/* Closes the connections idle past their time (the worker's tick). */
void sd_http_pool_expire(struct sd_http_pool *p, int64_t now_ms);

/* How many idle connections the pool holds (tests). */
unsigned sd_http_pool_count(const struct sd_http_pool *p);

#endif
