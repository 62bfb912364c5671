/* loop.c - the event loop (see sd/loop.h). */
#include "sd/loop.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

/* Events taken per wait: enough that a busy worker makes one epoll_wait
 * per batch of connections, small enough for the stack. */
#define SD_LOOP_EVENTS 256

int64_t sd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sd_loop_init(struct sd_loop *lp)
{
    lp->now_ms = sd_now_ms();
    lp->ep = epoll_create1(EPOLL_CLOEXEC);
    return lp->ep < 0 ? -1 : 0;
}

void sd_loop_fini(struct sd_loop *lp)
{
    if (lp->ep >= 0)
        close(lp->ep);
    lp->ep = -1;
}

static int sd_loop_ctl(struct sd_loop *lp, int op, struct sd_ev *ev)
{
    struct epoll_event e;

    e.events = ev->mask;
    e.data.ptr = ev;
    return epoll_ctl(lp->ep, op, ev->fd, &e);
}

int sd_loop_add(struct sd_loop *lp, struct sd_ev *ev)
{
    return sd_loop_ctl(lp, EPOLL_CTL_ADD, ev);
}

int sd_loop_mod(struct sd_loop *lp, struct sd_ev *ev)
{
    return sd_loop_ctl(lp, EPOLL_CTL_MOD, ev);
}

int sd_loop_del(struct sd_loop *lp, struct sd_ev *ev)
{
    return sd_loop_ctl(lp, EPOLL_CTL_DEL, ev);
}

int sd_loop_poll(struct sd_loop *lp, int timeout_ms)
{
    struct epoll_event events[SD_LOOP_EVENTS];
    int n, i;

    n = epoll_wait(lp->ep, events, SD_LOOP_EVENTS, timeout_ms);
    lp->now_ms = sd_now_ms();
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (i = 0; i < n; i++) {
        struct sd_ev *ev = events[i].data.ptr;
        ev->cb(ev, events[i].events);
    }
    return n;
}
