/*
 * worker.c - the per-process event loop (see sd/worker.h).
 *
 * One epoll set, edge-triggered; listeners, connections and a signalfd are
 * event sources. Timeouts are checked by walking the connection list at most
 * every SD_TICK_MS: cheap for the connection counts a worker holds, and it
 * keeps per-event work to setting two flags.
 */
#include "sd/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sd/files.h"
#include "sd/gen.h"
#include "sd/log.h"

#define SD_TICK_MS 250
#define SD_SESSION_EXPIRY_MS 10000 /* how often expired sessions are dropped */
#define SD_EVENTS 256
#define SD_POOL_SMALL_MAX 64 /* spare buffers kept per worker: 1 MiB ... */
#define SD_POOL_LARGE_MAX 8  /* ... plus 2 MiB */

int64_t sd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sd_worker_accept(struct sd_worker *w, struct sd_listener_rt *l)
{
    if (l->fd < 0)
        return;
    while (w->nconns < w->max_conns) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                l->paused = 0;
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* EMFILE, ENFILE, ENOBUFS...: the connection stays queued in
             * the kernel; try again on the next tick. */
            if (!l->paused)
                sd_log_msg("warn", "accept", "listener %s: accept: %s",
                           l->addr.text, strerror(errno));
            l->paused = 1;
            w->accept_retry = 1;
            return;
        }
        sd_conn_accept(w, l, fd, (struct sockaddr *)&ss, len);
    }
    l->paused = 1; /* at max-conns: resumes when a connection closes */
    w->accept_retry = 1;
}

static void sd_worker_stop_accepting(struct sd_worker *w)
{
    size_t i;

    for (i = 0; i < w->nls; i++) {
        if (w->ls[i].fd >= 0) {
            close(w->ls[i].fd);
            w->ls[i].fd = -1;
        }
    }
}

/* A snapshot from the master, which has already validated exactly these
 * bytes: build the new generation from them (never from the disk, which may
 * have changed since), swap it in for new connections, and close open
 * connections whose client the new rules or CRLs no longer admit. */
static void sd_worker_reload(struct sd_worker *w, uint64_t id, struct sd_files *files)
{
    struct sd_err err;
    struct sd_gen *g = sd_gen_load(w->src, files, id, &err);
    struct sd_conn *c, *next;
    struct sd_logline l;
    size_t i;

    if (g == NULL || sd_gen_same_listeners(w->gen, g, &err) != 0) {
        sd_log_begin(&l, "error", "reload_failed");
        sd_log_i64(&l, "worker", w->index);
        sd_log_str(&l, "msg", err.msg);
        sd_log_u64(&l, "generation", w->gen->id);
        sd_log_end(&l);
        sd_gen_unref(g);
        /* Cannot happen with a snapshot the master loaded; if it does, stop
         * rather than keep admitting by the old rules. The master restarts
         * the worker on the current configuration. */
        w->reload_broken = 1;
        return;
    }
    /* Keep the process-level settings the master started with. */
    g->cfg->workers = w->gen->cfg->workers;
    for (i = 0; i < w->nls; i++)
        w->ls[i].index = sd_gen_find_listener(g, &w->ls[i].addr);
    w->max_conns = g->cfg->max_conns;
    w->drain_timeout_ms = g->cfg->drain_timeout_ms;
    sd_gen_unref(w->gen);
    w->gen = g;
    sd_log_begin(&l, "info", "worker_reloaded");
    sd_log_i64(&l, "worker", w->index);
    sd_log_u64(&l, "generation", g->id);
    sd_log_end(&l);
    if (g->cfg->close_revoked) {
        for (c = w->conns; c != NULL; c = next) {
            next = sd_conn_next(c);
            sd_conn_judge(c, g);
        }
    }
}

static void sd_worker_on_control(struct sd_worker *w)
{
    for (;;) {
        uint64_t id = 0;
        struct iovec iov = { &id, sizeof(id) };
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct msghdr msg;
        struct cmsghdr *cm;
        struct sd_files *files;
        struct sd_err err;
        int fd = -1;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof(u.buf);
        n = recvmsg(w->ctl, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nothing more; a closed socket means the master is gone */
        cm = CMSG_FIRSTHDR(&msg);
        if (cm != NULL && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        if (fd < 0 || n != (ssize_t)sizeof(id))
            continue;
        files = sd_files_unpack(fd, &err);
        close(fd);
        if (files == NULL) {
            sd_log_msg("error", "reload_failed", "worker %d: %s", w->index, err.msg);
            w->reload_broken = 1;
            continue;
        }
        if (!w->draining)
            sd_worker_reload(w, id, files);
        sd_files_free(files);
    }
}

static void sd_worker_on_signal(struct sd_worker *w)
{
    struct signalfd_siginfo si;

    while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !w->draining) {
            w->draining = 1;
            w->drain_deadline_ms = w->now_ms + w->drain_timeout_ms;
            sd_worker_stop_accepting(w);
            {
                struct sd_logline l;
                sd_log_begin(&l, "info", "drain");
                sd_log_i64(&l, "worker", w->index);
                sd_log_u64(&l, "open_connections", w->nconns);
                sd_log_u64(&l, "drain_timeout_ms", w->drain_timeout_ms);
                sd_log_end(&l);
            }
        }
    }
}

static void sd_worker_tick(struct sd_worker *w)
{
    struct sd_conn *c, *next;
    size_t i;

    if (w->now_ms >= w->expire_sessions_ms) {
        for (i = 0; i < w->gen->cfg->nlisteners; i++)
            sd_tls_expire_sessions(w->gen->tls[i]);
        w->expire_sessions_ms = w->now_ms + SD_SESSION_EXPIRY_MS;
    }
    if (w->accept_retry && !w->draining) {
        w->accept_retry = 0;
        for (i = 0; i < w->nls; i++)
            if (w->ls[i].paused)
                sd_worker_accept(w, &w->ls[i]);
    }
    for (c = w->conns; c != NULL; c = next) {
        next = sd_conn_next(c);
        if (w->draining && w->now_ms >= w->drain_deadline_ms)
            sd_conn_abort(c, "drain_timeout");
        else
            sd_conn_check_deadline(c);
    }
}

static int sd_worker_setup(struct sd_worker *w, const int *listen_fds)
{
    const struct sd_config *cfg = w->gen->cfg;
    struct epoll_event ev;
    sigset_t set;
    size_t i;

    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return -1;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    w->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w->sigfd < 0)
        return -1;
    w->sigev.kind = SD_EV_SIGNAL;
    ev.events = EPOLLIN;
    ev.data.ptr = &w->sigev;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->sigfd, &ev) != 0)
        return -1;
    if (w->ctl >= 0) {
        w->ctlev.kind = SD_EV_CONTROL;
        ev.events = EPOLLIN;
        ev.data.ptr = &w->ctlev;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->ctl, &ev) != 0)
            return -1;
    }
    w->nls = cfg->nlisteners;
    w->ls = calloc(w->nls, sizeof(*w->ls));
    if (w->ls == NULL)
        return -1;
    for (i = 0; i < w->nls; i++) {
        struct sd_listener_rt *l = &w->ls[i];
        l->ev.kind = SD_EV_LISTENER;
        l->fd = listen_fds[i];
        l->index = (int)i;
        l->addr = cfg->listeners[i].listen_addr;
        ev.events = EPOLLIN | EPOLLET;
        ev.data.ptr = &l->ev;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->fd, &ev) != 0)
            return -1;
    }
    return 0;
}

int sd_worker_run(struct sd_gen *gen, const struct sd_source *src,
                  const int *listen_fds, int index, int ctl)
{
    struct sd_worker w;
    struct epoll_event events[SD_EVENTS];
    int64_t next_tick;
    int rc = 0;

    memset(&w, 0, sizeof(w));
    w.ep = w.sigfd = -1;
    w.index = index;
    w.ctl = ctl;
    w.gen = sd_gen_ref(gen);
    w.src = src;
    w.max_conns = gen->cfg->max_conns;
    w.drain_timeout_ms = gen->cfg->drain_timeout_ms;
    w.now_ms = sd_now_ms();
    sd_bufpool_init(&w.pool, SD_POOL_SMALL_MAX, SD_POOL_LARGE_MAX);
    if (sd_worker_setup(&w, listen_fds) != 0) {
        sd_log_msg("error", "worker", "worker %d: set-up failed: %s", index, strerror(errno));
        rc = 1;
        goto out;
    }
    next_tick = w.now_ms + SD_TICK_MS;
    for (;;) {
        int n, i, timeout;

        if (w.draining && w.nconns == 0)
            break;
        if (w.reload_broken) {
            rc = 3;
            break;
        }
        timeout = (int)(next_tick - w.now_ms);
        if (timeout < 0)
            timeout = 0;
        n = epoll_wait(w.ep, events, SD_EVENTS, timeout);
        w.now_ms = sd_now_ms();
        if (n < 0 && errno != EINTR) {
            sd_log_msg("error", "worker", "epoll_wait: %s", strerror(errno));
            rc = 1;
            break;
        }
        for (i = 0; i < n; i++) {
            struct sd_evsrc *ev = events[i].data.ptr;
            switch (ev->kind) {
            case SD_EV_LISTENER:
                if (!w.draining)
                    sd_worker_accept(&w, (struct sd_listener_rt *)ev);
                break;
            case SD_EV_CLIENT:
            case SD_EV_BACKEND:
                sd_conn_event(ev, events[i].events);
                break;
            case SD_EV_SIGNAL:
                sd_worker_on_signal(&w);
                break;
            case SD_EV_CONTROL:
                sd_worker_on_control(&w);
                break;
            }
        }
        if (w.now_ms >= next_tick) {
            sd_worker_tick(&w);
            next_tick = w.now_ms + SD_TICK_MS;
        }
        sd_conn_reap(&w);
    }
out:
    while (w.conns != NULL)
        sd_conn_abort(w.conns, "shutdown");
    sd_conn_reap(&w);
    sd_worker_stop_accepting(&w);
    sd_bufpool_clear(&w.pool);
    free(w.ls);
    sd_gen_unref(w.gen);
    if (w.sigfd >= 0)
        close(w.sigfd);
    if (w.ep >= 0)
        close(w.ep);
    if (w.ctl >= 0)
        close(w.ctl);
    return rc;
}
