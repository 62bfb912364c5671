/*
 * worker.c - one worker process (see sd/worker.h).
 *
 * One event loop (sd/loop.h); listeners, connections, the signalfd and the
 * control socket are event sources, each with its own callback. Timeouts
 * are checked by walking the connection list at most every SD_TICK_MS:
 * cheap for the connection counts a worker holds, and it keeps per-event
 * work to setting two flags.
 */
#include "sd/worker.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sd/conn.h"
#include "sd/files.h"
#include "sd/gen.h"
#include "sd/log.h"
#include "sd/mode.h"
#include "sd/net.h"
#include "sd/stats.h"

#define SD_TICK_MS 250
#define SD_SESSION_EXPIRY_MS 10000 /* how often expired sessions are dropped */
#define SD_POOL_SMALL_MAX 64 /* spare buffers kept per worker: 1 MiB ... */
#define SD_POOL_LARGE_MAX 8  /* ... plus 2 MiB */
#define SD_CTL_BATCH 16      /* control messages handled per wake-up */
#define SD_FD_COUNT_MAX 65536 /* /proc/self/fd entries looked at */

struct sd_worker;

struct sd_listener_rt {
    struct sd_ev ev;     /* ev.fd -1: a free slot (never used, or its listener was removed) */
    struct sd_worker *w;
    int paused;          /* SD_PAUSE_*: accept later */
    int index;           /* this listener's index in the current generation */
    struct sd_addr addr; /* what the socket is bound to; never changes */
};

enum { SD_PAUSE_NONE = 0, SD_PAUSE_CAP, SD_PAUSE_FDS };

struct sd_worker {
    struct sd_loop loop;           /* loop.now_ms: refreshed once per loop turn */
    struct sd_gen *gen;            /* current generation: new connections use it */
    const struct sd_source *src;   /* where a reload reads the configuration */
    struct sd_ev sigev;            /* signalfd */
    struct sd_ev ctlev;            /* control socket from the master (fd -1: gone) */
    int index;
    struct sd_listener_rt *ls; /* [SD_MAX_LISTENERS]: fixed, epoll points into it */
    size_t nls;                /* slots used so far (some may be free again) */
    struct sd_conns conns; /* every open connection, for timeouts and drain */
    size_t max_conns;     /* what the configuration asks (per worker) */
    size_t conn_cap;      /* what is accepted: max_conns, less if the fd limit says so */
    size_t fds_fixed;     /* descriptors held besides connections */
    int64_t expire_sessions_ms; /* next sweep of expired TLS sessions */
    int draining;
    int64_t drain_deadline_ms;
    uint32_t drain_timeout_ms;
    int accept_retry; /* a listener is paused: retry accepting on the timer */
    int reload_broken; /* could not apply the master's configuration: exit */
    struct sd_bufpool pool;
};

/* Descriptors this process has open, or -1 when /proc cannot tell. */
static long sd_worker_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while (n < SD_FD_COUNT_MAX && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : -1; /* less the directory's own descriptor */
}

/* Sets conn_cap: max-conns, or fewer when the open-file limit cannot give
 * every connection its two descriptors (client, backend) next to those the
 * worker holds anyway. Accepting beyond that would handshake clients that
 * then cannot be connected onward; at the cap they wait in the kernel's
 * queue instead, and are accepted as connections close. */
static void sd_worker_set_cap(struct sd_worker *w)
{
    struct rlimit rl;
    size_t cap = w->max_conns, fixed = w->fds_fixed + SD_FD_RESERVE + SD_ADMIN_RESERVE,
           limit = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        limit = rl.rlim_cur > (rlim_t)SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
        if ((limit > fixed ? (limit - fixed) / 2 : 0) < cap)
            cap = limit > fixed ? (limit - fixed) / 2 : 0;
    }
    if (cap != w->conn_cap && cap < w->max_conns) {
        struct sd_logline l;
        sd_log_begin(&l, cap == 0 ? "error" : w->gen->cfg->max_conns_set ? "warn" : "info",
                     "fd_limit");
        sd_log_i64(&l, "worker", w->index);
        sd_log_u64(&l, "open_file_limit", limit);
        sd_log_u64(&l, "fds_held", fixed);
        sd_log_u64(&l, "max_conns", w->max_conns);
        sd_log_u64(&l, "accepts_at_most", cap);
        sd_log_str(&l, "msg", "each connection needs two descriptors; connections beyond "
                   "this wait in the kernel queue");
        sd_log_end(&l);
    }
    w->conn_cap = cap;
    w->conns.cap = cap;
}

static void sd_worker_accept(struct sd_worker *w, struct sd_listener_rt *l)
{
    size_t cap = w->conn_cap;

    if (l->ev.fd < 0 || l->index < 0)
        return; /* a free slot (an event of this turn may still name it) */
    /* The admin listener may go SD_ADMIN_RESERVE beyond the cap: at
     * saturation, /healthz and /metrics must still answer (a liveness
     * probe timing out would restart a gateway that is only busy, and the
     * metrics would go blind during the overload they are there to show). */
    if ((size_t)l->index < w->gen->cfg->nlisteners &&
        w->gen->cfg->listeners[l->index].mode == SD_MODE_ADMIN)
        cap += SD_ADMIN_RESERVE;
    /* Bounded by the cap: every turn accepts one connection or returns. */
    while (w->conns.n < cap) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->ev.fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                l->paused = SD_PAUSE_NONE;
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* EMFILE, ENFILE, ENOBUFS...: the connection stays queued in
             * the kernel; try again on the next tick. */
            if (l->paused != SD_PAUSE_FDS)
                sd_log_msg("warn", "accept", "listener %s: accept: %s; accepting again "
                           "in %d ms", l->addr.text, strerror(errno), SD_TICK_MS);
            l->paused = SD_PAUSE_FDS;
            return;
        }
        sd_conn_accept(&w->conns, l->index, l, fd, (struct sockaddr *)&ss, len);
    }
    /* At the cap: resumes when a connection closes (sd_worker_conn_closed
     * sets accept_retry), the rest wait in the kernel queue meanwhile. */
    l->paused = SD_PAUSE_CAP;
    w->accept_retry = 1;
}

/* Accepts again on paused listeners: those paused at the cap (after a
 * connection closed), and with fds_too those paused by an accept error
 * (on the tick, so a persistent error costs one call per tick). */
static void sd_worker_resume(struct sd_worker *w, int fds_too)
{
    size_t i;

    w->accept_retry = 0;
    if (w->draining)
        return;
    for (i = 0; i < w->nls && w->conns.n < w->conn_cap + SD_ADMIN_RESERVE; i++)
        if (w->ls[i].paused == SD_PAUSE_CAP ||
            (fds_too && w->ls[i].paused == SD_PAUSE_FDS))
            sd_worker_accept(w, &w->ls[i]);
}

static void sd_worker_on_listener(struct sd_ev *ev, uint32_t events)
{
    struct sd_listener_rt *l = (struct sd_listener_rt *)((char *)ev -
                                                         offsetof(struct sd_listener_rt, ev));

    (void)events;
    if (!l->w->draining)
        sd_worker_accept(l->w, l);
}

/* A connection closed (sd_conns.on_close): a listener paused at the cap
 * accepts again at the end of this loop turn. */
static void sd_worker_conn_closed(struct sd_conns *cs)
{
    struct sd_worker *w = (struct sd_worker *)((char *)cs - offsetof(struct sd_worker, conns));
    size_t i;

    if (w->accept_retry == 0) {
        for (i = 0; i < w->nls; i++)
            if (w->ls[i].paused)
                w->accept_retry = 1;
    }
}

static void sd_worker_stop_accepting(struct sd_worker *w)
{
    size_t i;

    for (i = 0; i < w->nls; i++) {
        if (w->ls[i].ev.fd >= 0) {
            close(w->ls[i].ev.fd);
            w->ls[i].ev.fd = -1;
        }
    }
}

/* Drains: no new connections, open ones finish or meet the drain timeout. */
/* Each connector's warm connections, made up to its `warm` (not while
 * draining). */
static void sd_worker_warm_fill(struct sd_worker *w)
{
    size_t i;

    for (i = 0; i < w->nls && !w->draining; i++)
        if (w->ls[i].ev.fd >= 0 && w->ls[i].index >= 0)
            sd_conn_warm_fill(&w->conns, w->ls[i].index, &w->ls[i]);
}

static void sd_worker_drain(struct sd_worker *w, const char *why)
{
    struct sd_conn *c, *next;
    struct sd_logline l;

    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline_ms = w->loop.now_ms + w->drain_timeout_ms;
    sd_worker_stop_accepting(w);
    sd_conn_warm_drop(&w->conns); /* no caller will come for them */
    sd_log_begin(&l, "info", "drain");
    sd_log_i64(&l, "worker", w->index);
    sd_log_str(&l, "trigger", why);
    sd_log_u64(&l, "open_connections", w->conns.n);
    sd_log_u64(&l, "drain_timeout_ms", w->drain_timeout_ms);
    sd_log_end(&l);
    for (c = sd_conns_first(&w->conns); c != NULL; c = next) {
        next = sd_conn_next(c);
        sd_conn_drain(c); /* freed after this batch of events, by the loop */
    }
}

/* The slot serving addr, or NULL. */
static struct sd_listener_rt *sd_worker_slot_of(struct sd_worker *w, const struct sd_addr *addr)
{
    size_t i;

    for (i = 0; i < w->nls; i++)
        if (w->ls[i].ev.fd >= 0 && sd_net_same_addr(&w->ls[i].addr, addr))
            return &w->ls[i];
    return NULL;
}

/* Why socket s must not be served under generation g, or NULL when it
 * may: g has a listener of its address, the kernel agrees the socket is
 * listening on that address, and no other slot serves it already. */
static const char *sd_worker_sock_problem(struct sd_worker *w, const struct sd_gen *g,
                                          const struct sd_listen_sock *s)
{
    if (sd_gen_find_listener(g, &s->addr) < 0)
        return "the configuration has no listener on this address";
    if (!sd_net_bound_to(s->fd, &s->addr))
        return "the socket is not listening on this address";
    if (sd_worker_slot_of(w, &s->addr) != NULL)
        return "a socket for this address is already served";
    return NULL;
}

/* Takes ownership of s: serves it in a free slot, paired with g's listener
 * of its address; a socket that does not belong (see above) is closed,
 * never served. Returns -1 only when epoll refuses it. */
static int sd_worker_add_listener(struct sd_worker *w, const struct sd_gen *g,
                                  const struct sd_listen_sock *s)
{
    const char *why = sd_worker_sock_problem(w, g, s);
    struct sd_listener_rt *l = NULL;
    size_t i;

    for (i = 0; why == NULL && l == NULL && i < SD_MAX_LISTENERS; i++)
        if (w->ls[i].ev.fd < 0)
            l = &w->ls[i];
    if (why == NULL && l == NULL)
        why = "no free listener slot";
    if (why != NULL) {
        struct sd_logline ll;
        sd_log_begin(&ll, "error", "listener_refused");
        sd_log_i64(&ll, "worker", w->index);
        sd_log_str(&ll, "listen", s->addr.text);
        sd_log_u64(&ll, "generation", g->id);
        sd_log_str(&ll, "msg", why);
        sd_log_str(&ll, "result", "socket closed, not served by this worker");
        sd_log_end(&ll);
        close(s->fd);
        return 0;
    }
    if ((size_t)(l - w->ls) >= w->nls)
        w->nls = (size_t)(l - w->ls) + 1;
    l->ev.fd = s->fd;
    l->ev.mask = EPOLLIN | EPOLLET;
    l->ev.cb = sd_worker_on_listener;
    l->w = w;
    l->addr = s->addr;
    l->index = sd_gen_find_listener(g, &s->addr);
    l->paused = SD_PAUSE_NONE;
    if (sd_loop_add(&w->loop, &l->ev) != 0) {
        close(l->ev.fd);
        l->ev.fd = -1;
        return -1;
    }
    w->fds_fixed++;
    return 0;
}

/* A reload removed l's listener: a trust reduction, so its socket and its
 * open connections close now rather than live on under rules that no
 * longer exist. */
static void sd_worker_remove_listener(struct sd_worker *w, struct sd_listener_rt *l,
                                      uint64_t gen_id)
{
    struct sd_conn *c, *next;
    struct sd_logline ll;
    uint64_t n = 0;

    for (c = sd_conns_first(&w->conns); c != NULL; c = next) {
        next = sd_conn_next(c);
        if (sd_conn_listener(c) == l) {
            sd_conn_abort(c, SD_R_LISTENER_REMOVED);
            n++;
        }
    }
    close(l->ev.fd);
    l->ev.fd = -1;
    l->index = -1;
    l->paused = SD_PAUSE_NONE;
    if (w->fds_fixed > 0)
        w->fds_fixed--;
    sd_log_begin(&ll, "info", "listener_removed");
    sd_log_i64(&ll, "worker", w->index);
    sd_log_str(&ll, "listen", l->addr.text);
    sd_log_u64(&ll, "generation", gen_id);
    sd_log_u64(&ll, "closed_connections", n);
    sd_log_end(&ll);
}

static void sd_worker_close_socks(const struct sd_listen_sock *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i].fd >= 0)
            close(s[i].fd);
}

/* Points each listener of the current generation at this worker's block
 * of its counters (sd/stats.h), found by the listener's name, which the
 * master registered before it told the workers of the generation. */
static void sd_worker_bind_stats(struct sd_worker *w)
{
    struct sd_stats *st = sd_stats_get();
    size_t i;

    memset(w->conns.stats, 0, sizeof(w->conns.stats));
    for (i = 0; i < w->gen->cfg->nlisteners; i++)
        w->conns.stats[i] = sd_stats_lst(st, w->index,
                                         sd_stats_slot(st, w->gen->cfg->listeners[i].name));
}

/* A snapshot from the master, which has already validated exactly these
 * bytes: build the new generation from them (never from the disk, which may
 * have changed since), pair every listener with its socket by address (the
 * ones this worker has, and `add`, the sockets of listeners the reload
 * adds), close the sockets and connections of removed listeners, swap the
 * generation in for new connections, and close open connections whose
 * client the new rules or CRLs no longer admit. Takes ownership of add. */
static void sd_worker_reload(struct sd_worker *w, uint64_t id, struct sd_files *files,
                             const struct sd_listen_sock *add, size_t nadd)
{
    struct sd_err err;
    struct sd_gen *g = sd_gen_load(w->src, files, id, &err);
    struct sd_conn *c, *next;
    struct sd_logline l;
    size_t i, j;

    if (g == NULL)
        goto broken;
    /* Check everything before changing anything. */
    for (i = 0; i < nadd; i++) {
        const char *why = sd_worker_sock_problem(w, g, &add[i]);
        for (j = 0; why == NULL && j < i; j++)
            if (sd_net_same_addr(&add[j].addr, &add[i].addr))
                why = "sent twice";
        if (why != NULL) {
            sd_err_set(&err, "new socket for %s: %s", add[i].addr.text, why);
            goto broken;
        }
    }
    for (i = 0; i < g->cfg->nlisteners; i++) {
        const struct sd_addr *a = &g->cfg->listeners[i].listen_addr;
        int found = sd_worker_slot_of(w, a) != NULL;
        for (j = 0; !found && j < nadd; j++)
            found = sd_net_same_addr(&add[j].addr, a);
        if (!found) {
            sd_err_set(&err, "listener %s: no socket for %s", g->cfg->listeners[i].name,
                       g->cfg->listeners[i].listen);
            goto broken;
        }
    }
    /* Keep the process-level settings the master started with. */
    g->cfg->workers = w->gen->cfg->workers;
    for (i = 0; i < w->nls; i++)
        if (w->ls[i].ev.fd >= 0 && sd_gen_find_listener(g, &w->ls[i].addr) < 0)
            sd_worker_remove_listener(w, &w->ls[i], g->id);
    for (i = 0; i < nadd; i++) {
        if (sd_worker_add_listener(w, g, &add[i]) != 0) {
            sd_err_set(&err, "new socket for %s: epoll: %s", add[i].addr.text,
                       strerror(errno));
            add += i + 1;
            nadd -= i + 1;
            goto broken;
        }
    }
    for (i = 0; i < w->nls; i++)
        if (w->ls[i].ev.fd >= 0)
            w->ls[i].index = sd_gen_find_listener(g, &w->ls[i].addr);
    w->max_conns = g->cfg->max_conns;
    w->drain_timeout_ms = g->cfg->drain_timeout_ms;
    sd_worker_set_cap(w);
    sd_gen_unref(w->gen);
    w->gen = g;
    w->conns.gen = g;
    sd_worker_bind_stats(w);
    /* Warm connections were made with the old certificates and rules. */
    sd_conn_warm_drop(&w->conns);
    sd_worker_warm_fill(w);
    sd_log_begin(&l, "info", "worker_reloaded");
    sd_log_i64(&l, "worker", w->index);
    sd_log_u64(&l, "generation", g->id);
    sd_log_u64(&l, "listeners_added", nadd);
    sd_log_end(&l);
    if (g->cfg->close_revoked) {
        for (c = sd_conns_first(&w->conns); c != NULL; c = next) {
            next = sd_conn_next(c);
            sd_conn_judge(c, g);
        }
    }
    return;
broken:
    sd_log_begin(&l, "error", "reload_failed");
    sd_log_i64(&l, "worker", w->index);
    sd_log_str(&l, "msg", err.msg);
    sd_log_u64(&l, "generation", w->gen->id);
    sd_log_end(&l);
    sd_worker_close_socks(add, nadd);
    sd_gen_unref(g);
    /* Cannot happen with a snapshot the master loaded; if it does, stop
     * rather than keep admitting by the old rules. The master restarts
     * the worker on the current configuration and sockets. */
    w->reload_broken = 1;
}

/* The control socket reached its end (or failed): the master is gone.
 * Its end-of-file stays readable forever, so it leaves epoll at once
 * (watched level-triggered it would wake the loop without end), and the
 * worker drains: nobody would restart or reconfigure it any more. */
static void sd_worker_master_gone(struct sd_worker *w, const char *why)
{
    struct sd_logline l;

    (void)sd_loop_del(&w->loop, &w->ctlev);
    close(w->ctlev.fd);
    w->ctlev.fd = -1;
    if (w->fds_fixed > 0)
        w->fds_fixed--;
    sd_log_begin(&l, "warn", "master_gone");
    sd_log_i64(&l, "worker", w->index);
    sd_log_str(&l, "msg", why);
    sd_log_str(&l, "result", "draining: open connections go on until they close or the "
               "drain timeout");
    sd_log_end(&l);
    sd_worker_drain(w, "master_gone");
}

static void sd_worker_on_control(struct sd_ev *ev, uint32_t events)
{
    struct sd_worker *w = (struct sd_worker *)((char *)ev - offsetof(struct sd_worker, ctlev));
    int turn;

    (void)events;
    /* Bounded per wake-up; edge or not, epoll reports the rest again
     * (the control socket is level-triggered). */
    for (turn = 0; turn < SD_CTL_BATCH && w->ctlev.fd >= 0; turn++) {
        struct sd_ctl_msg m;
        struct iovec iov = { &m, sizeof(m) };
        union {
            char buf[CMSG_SPACE(sizeof(int) * (1 + SD_MAX_LISTENERS))];
            struct cmsghdr align;
        } u;
        struct sd_listen_sock add[SD_MAX_LISTENERS];
        int fds[1 + SD_MAX_LISTENERS];
        struct msghdr msg;
        struct cmsghdr *cm;
        struct sd_files *files;
        struct sd_err err;
        size_t nfds = 0, i;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof(u.buf);
        n = recvmsg(w->ctlev.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            sd_worker_master_gone(w, n == 0 ? "control socket closed"
                                            : strerror(errno));
            return;
        }
        for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
            size_t k, nin;
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            nin = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (k = 0; k < nin; k++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
                if (nfds < sizeof(fds) / sizeof(fds[0]))
                    fds[nfds++] = fd;
                else
                    close(fd);
            }
        }
        if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
            (size_t)n < SD_CTL_MSG_SIZE(0) || m.nadd > SD_MAX_LISTENERS ||
            (size_t)n != SD_CTL_MSG_SIZE(m.nadd) || nfds != 1 + (size_t)m.nadd) {
            /* Descriptors lost on the way (out of them, say) or a message
             * that is not the master's: this worker cannot follow the
             * reload; it exits and the master starts a current one. */
            sd_log_msg("error", "reload_failed", "worker %d: unusable control message "
                       "(%zd bytes, %zu descriptors, flags %#x)", w->index, n, nfds,
                       (unsigned)msg.msg_flags);
            for (i = 0; i < nfds; i++)
                close(fds[i]);
            w->reload_broken = 1;
            continue;
        }
        for (i = 0; i < m.nadd; i++) {
            add[i].fd = fds[1 + i];
            add[i].addr = m.add[i];
            /* Text from the master; make sure it ends within the field. */
            add[i].addr.text[sizeof(add[i].addr.text) - 1] = '\0';
        }
        files = sd_files_unpack(fds[0], &err);
        close(fds[0]);
        if (files == NULL) {
            sd_log_msg("error", "reload_failed", "worker %d: %s", w->index, err.msg);
            sd_worker_close_socks(add, m.nadd);
            w->reload_broken = 1;
            continue;
        }
        if (!w->draining)
            sd_worker_reload(w, m.gen_id, files, add, m.nadd);
        else
            sd_worker_close_socks(add, m.nadd);
        sd_files_free(files);
    }
}

static void sd_worker_on_signal(struct sd_ev *ev, uint32_t events)
{
    struct sd_worker *w = (struct sd_worker *)((char *)ev - offsetof(struct sd_worker, sigev));
    struct signalfd_siginfo si;

    (void)events;
    while (read(w->sigev.fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            sd_worker_drain(w, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void sd_worker_tick(struct sd_worker *w)
{
    struct sd_conn *c, *next;
    size_t i;

    sd_log_flush(); /* lines a stalled log reader left queued */
    if (w->loop.now_ms >= w->expire_sessions_ms) {
        for (i = 0; i < w->gen->cfg->nlisteners; i++)
            if (w->gen->tls[i] != NULL) /* a plaintext admin listener has none */
                sd_tls_expire_sessions(w->gen->tls[i]);
        w->expire_sessions_ms = w->loop.now_ms + SD_SESSION_EXPIRY_MS;
    }
    sd_worker_resume(w, 1);
    sd_worker_warm_fill(w);
    sd_mode_http_tick(w->loop.now_ms);
    for (c = sd_conns_first(&w->conns); c != NULL; c = next) {
        next = sd_conn_next(c);
        if (w->draining && w->loop.now_ms >= w->drain_deadline_ms)
            sd_conn_abort(c, SD_R_DRAIN_TIMEOUT);
        else
            sd_conn_check_deadline(c);
    }
}

static int sd_worker_setup(struct sd_worker *w, const struct sd_listen_sock *socks,
                           size_t nsocks)
{
    const struct sd_config *cfg = w->gen->cfg;
    sigset_t set;
    size_t i;
    long nfds;

    if (sd_loop_init(&w->loop) != 0)
        return -1;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    w->sigev.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w->sigev.fd < 0)
        return -1;
    w->sigev.mask = EPOLLIN;
    w->sigev.cb = sd_worker_on_signal;
    if (sd_loop_add(&w->loop, &w->sigev) != 0)
        return -1;
    if (w->ctlev.fd >= 0) {
        /* Level-triggered: a wake-up handles a bounded batch of messages. */
        w->ctlev.mask = EPOLLIN;
        w->ctlev.cb = sd_worker_on_control;
        if (sd_loop_add(&w->loop, &w->ctlev) != 0)
            return -1;
    }
    /* A fixed table: epoll events point into it, and a reload may add
     * listeners (up to the configuration's limit). */
    w->ls = calloc(SD_MAX_LISTENERS, sizeof(*w->ls));
    if (w->ls == NULL)
        return -1;
    for (i = 0; i < SD_MAX_LISTENERS; i++) {
        w->ls[i].ev.fd = -1;
        w->ls[i].index = -1;
    }
    w->nls = 0;
    for (i = 0; i < nsocks; i++)
        if (sd_worker_add_listener(w, w->gen, &socks[i]) != 0)
            return -1;
    for (i = 0; i < cfg->nlisteners; i++)
        if (sd_worker_slot_of(w, &cfg->listeners[i].listen_addr) == NULL)
            sd_log_msg("error", "listener_refused", "worker %d: listener %s: no socket for "
                       "%s; this worker does not serve it", w->index, cfg->listeners[i].name,
                       cfg->listeners[i].listen);
    /* What this process holds besides connections, counted rather than
     * guessed (inherited descriptors, the log sink...). */
    nfds = sd_worker_count_fds();
    w->fds_fixed = nfds > 0 ? (size_t)nfds : 6 + w->nls;
    sd_worker_set_cap(w);
    return 0;
}

int sd_worker_run(struct sd_gen *gen, const struct sd_source *src,
                  const struct sd_listen_sock *socks, size_t nsocks, int index, int ctl)
{
    struct sd_worker w;
    int64_t next_tick;
    int rc = 0;

    memset(&w, 0, sizeof(w));
    w.loop.ep = -1;
    w.sigev.fd = -1;
    w.index = index;
    w.ctlev.fd = ctl;
    w.gen = sd_gen_ref(gen);
    w.src = src;
    w.max_conns = gen->cfg->max_conns;
    w.conn_cap = w.max_conns;
    w.conns.cap = w.conn_cap;
    w.drain_timeout_ms = gen->cfg->drain_timeout_ms;
    w.loop.now_ms = sd_now_ms();
    sd_bufpool_init(&w.pool, SD_POOL_SMALL_MAX, SD_POOL_LARGE_MAX);
    w.conns.loop = &w.loop;
    w.conns.pool = &w.pool;
    w.conns.gen = w.gen;
    w.conns.worker = index;
    sd_worker_bind_stats(&w);
    w.conns.on_close = sd_worker_conn_closed;
    if (sd_worker_setup(&w, socks, nsocks) != 0) {
        sd_log_msg("error", "worker", "worker %d: set-up failed: %s", index, strerror(errno));
        rc = 1;
        goto out;
    }
    sd_worker_warm_fill(&w);
    next_tick = w.loop.now_ms + SD_TICK_MS;
    sd_log_hold(1);
    for (;;) {
        int timeout;

        if (w.draining && w.conns.n == 0)
            break;
        if (w.reload_broken) {
            rc = 3;
            break;
        }
        timeout = (int)(next_tick - w.loop.now_ms);
        if (timeout < 0)
            timeout = 0;
        if (sd_loop_poll(&w.loop, timeout) < 0) {
            sd_log_msg("error", "worker", "epoll_wait: %s", strerror(errno));
            rc = 1;
            break;
        }
        if (w.loop.now_ms >= next_tick) {
            sd_worker_tick(&w);
            next_tick = w.loop.now_ms + SD_TICK_MS;
        }
        sd_conns_reap(&w.conns);
        (void)sd_log_flush(); /* the batch's lines, in one write */
        /* Connections closed in this turn: clients waiting in the kernel
         * queue of a listener paused at the cap are taken now, not on the
         * next tick. */
        if (w.accept_retry && w.conns.n < w.conn_cap)
            sd_worker_resume(&w, 0);
    }
out:
    sd_log_hold(0);
    (void)sd_log_flush();
    while (sd_conns_first(&w.conns) != NULL)
        sd_conn_abort(sd_conns_first(&w.conns), SD_R_SHUTDOWN);
    sd_conns_reap(&w.conns);
    sd_worker_stop_accepting(&w);
    sd_bufpool_clear(&w.pool);
    free(w.ls);
    sd_gen_unref(w.gen);
    if (w.sigev.fd >= 0)
        close(w.sigev.fd);
    sd_loop_fini(&w.loop);
    if (w.ctlev.fd >= 0)
        close(w.ctlev.fd);
    return rc;
}
