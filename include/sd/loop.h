/*
 * sd/loop.h - a worker's event loop (in the manner of Redis's ae): every
 * event source (a listening socket, one side of a connection, the signalfd,
 * the control socket) embeds a struct sd_ev that carries its descriptor,
 * the events it waits for and its own callback. The loop calls the
 * callback; it never knows what kind of source it is, so a new kind (an
 * admin socket, say) is a new callback, not a new case in a switch.
 *
 * epoll only (steeldoor runs on Linux); the masks are epoll's own bits.
 * Timers are not the loop's business: the worker walks its connections'
 * deadlines on a coarse tick (see worker.c), which is cheaper than a timer
 * per connection for the counts a worker holds.
 */
#ifndef SD_LOOP_H
#define SD_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

/* An event source. Embedded in its owner, which finds itself again from
 * ev with container_of arithmetic (offsetof); ev must not move while it is
 * registered. */
struct sd_ev;
typedef void sd_ev_cb(struct sd_ev *ev, uint32_t events);
struct sd_ev {
    int fd;        /* owned by the source's owner, not by the loop */
    uint32_t mask; /* EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLET, ... */
    sd_ev_cb *cb;  /* called with the events epoll reported */
};

struct sd_loop {
    int ep;         /* the epoll descriptor, or -1 */
    int64_t now_ms; /* monotonic, refreshed after every wait */
};

/* Creates the epoll set. Returns 0, or -1 with errno. */
int sd_loop_init(struct sd_loop *lp);
/* Closes the epoll set; the sources' descriptors stay open. */
void sd_loop_fini(struct sd_loop *lp);

/* Registers ev->fd for ev->mask. Returns 0, or -1 with errno. */
int sd_loop_add(struct sd_loop *lp, struct sd_ev *ev);
/* Changes what ev waits for to ev->mask. Returns 0, or -1 with errno. */
int sd_loop_mod(struct sd_loop *lp, struct sd_ev *ev);
/* Unregisters ev. Closing a descriptor that was never dup'ed unregisters
 * it too (what connections rely on: no system call for this). */
int sd_loop_del(struct sd_loop *lp, struct sd_ev *ev);

/* Waits up to timeout_ms (0: do not wait) for events, refreshes now_ms
 * and runs the callback of each source that has events, in the order
 * epoll reported them. A callback may close any source, its own included;
 * a source freed during the batch must stay in memory until the batch is
 * over (a later event of the same batch may still point at it): owners
 * defer the free (see sd_conns_reap). Returns the number of events, 0 on
 * a timeout or a signal, -1 with errno on failure. */
int sd_loop_poll(struct sd_loop *lp, int timeout_ms);

/* Monotonic milliseconds. */
int64_t sd_now_ms(void);

#endif
