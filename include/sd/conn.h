/*
 * sd/conn.h - proxied connections: what the worker sees of them.
 *
 * A connection has two sides, each a stream (sd/stream.h): side 0 faces
 * the client, side 1 the backend. Its listener's mode (sd/mode.h) chooses
 * the streams and runs between "handshakes done, backend connected" and
 * the byte pumps (sd/pump.h). The worker hands every connection the same
 * struct sd_conns: the loop, the buffer pool, the current generation; it
 * never looks inside a connection.
 */
#ifndef SD_CONN_H
#define SD_CONN_H

#include <stddef.h>
#include <sys/socket.h>

#include "sd/buf.h"
#include "sd/config.h"
#include "sd/loop.h"
#include "sd/reason.h"

struct sd_conn;
struct sd_gen;

/* One worker's connections and what they need from it. The worker fills
 * the public part once (gen again after each reload); the rest belongs
 * to conn.c. */
struct sd_conns {
    struct sd_loop *loop;      /* their sockets' events; loop->now_ms is the clock */
    struct sd_bufpool *pool;   /* their buffers */
    struct sd_gen *gen;        /* current generation: admits at handshake, re-judges */
    size_t cap;                /* the worker's connection cap (warm ones count) */
    int worker;                /* the worker's index (its block of sd/stats.h) */
    /* Each listener's counters in this worker, by listener index of gen
     * (set by the worker with each generation; NULL entries count nothing). */
    struct sd_stats_lst *stats[SD_MAX_LISTENERS];
    /* Called each time a connection closes (the worker may accept again
     * when a listener waits at its cap). */
    void (*on_close)(struct sd_conns *cs);
    /* conn.c's */
    struct sd_conn *head; /* every open connection */
    size_t n;
    struct sd_conn *dead; /* closed during this batch of events */
    /* Each connector's warm connections (by listener index of gen): made
     * ahead, no caller yet, handshaking or ready. */
    struct sd_conns_warm {
        struct sd_conn *head;
        uint32_t n;
        uint32_t backoff_ms; /* after a failure: wait this long, doubling */
        int64_t retry_ms;    /* ... until then */
    } warm[SD_MAX_LISTENERS];
};

/* Takes an accepted, non-blocking socket fd (ownership too: it is closed
 * on failure) from the listener at index `index` of cs->gen. `listener`
 * is the caller's tag for that listener (see sd_conn_listener); peer is
 * the client's address. On failure (memory) the client is dropped
 * silently, as a kernel queue overflow would. */
void sd_conn_accept(struct sd_conns *cs, int index, const void *listener, int fd,
                    const struct sockaddr *peer, socklen_t peerlen);

/* A connector (listener `index` of cs->gen, `listener` its worker tag)
 * with `warm` N: opens connections to its server until N are made ahead
 * of callers (after a failure, not before a growing pause). A caller
 * accepted by sd_conn_accept() gets a ready one when there is one. No-op
 * for other listeners. */
void sd_conn_warm_fill(struct sd_conns *cs, int index, const void *listener);

/* Closes every warm connection that has no caller (a reload: they were
 * made under the old configuration; draining: none is needed). */
void sd_conn_warm_drop(struct sd_conns *cs);

/* Closes c if its deadline has passed (handshake, connect, idle timeouts;
 * the end of a linger). */
void sd_conn_check_deadline(struct sd_conn *c);

/* After a reload to `now`: closes c if its client is no longer admitted. A
 * connection whose listener is gone is left to sd_conn_abort. */
void sd_conn_judge(struct sd_conn *c, struct sd_gen *now);

/* Ends c now: "refused" during the handshake, "error" after it, with
 * reason (listener_removed, drain_timeout, shutdown). */
void sd_conn_abort(struct sd_conn *c, enum sd_reason reason);

/* The worker started draining: a connection whose mode knows where one
 * exchange ends (HTTP) ends at the next such point instead of waiting for
 * the client to leave; others are left to end by themselves. */
void sd_conn_drain(struct sd_conn *c);

/* Iteration over the open connections: first, then next (a closed
 * connection's next stays valid until sd_conns_reap). */
static inline struct sd_conn *sd_conns_first(const struct sd_conns *cs)
{
    return cs->head;
}
struct sd_conn *sd_conn_next(const struct sd_conn *c);

/* The `listener` tag c was accepted with. */
const void *sd_conn_listener(const struct sd_conn *c);

/* Frees the connections closed since the last call: after each batch of
 * events, since a later event of the batch may still point at one. */
void sd_conns_reap(struct sd_conns *cs);

#endif
