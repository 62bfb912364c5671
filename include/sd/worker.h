/*
 * sd/worker.h - one worker process: an edge-triggered epoll loop that owns
 * its listening sockets (one per listener, bound with SO_REUSEPORT) and all
 * the connections accepted on them. Workers share nothing and take no locks.
 */
#ifndef SD_WORKER_H
#define SD_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "sd/buf.h"
#include "sd/config.h"
#include "sd/tls.h"

/* What an epoll event points at; the first member of every event source. */
enum sd_ev_kind { SD_EV_LISTENER = 1, SD_EV_CLIENT, SD_EV_BACKEND, SD_EV_SIGNAL, SD_EV_CONTROL };
struct sd_evsrc {
    uint8_t kind;
};

struct sd_listener_rt {
    struct sd_evsrc ev;
    int fd;
    int paused;          /* at max-conns or out of fds: accept later */
    int index;           /* this listener's index in the current generation */
    struct sd_addr addr; /* what the socket is bound to; never changes */
};

struct sd_gen;
struct sd_source;

struct sd_conn;

struct sd_worker {
    int ep;
    struct sd_gen *gen;            /* current generation: new connections use it */
    const struct sd_source *src;   /* where a reload reads the configuration */
    struct sd_evsrc sigev;
    int sigfd;
    struct sd_evsrc ctlev;
    int ctl;                       /* control socket from the master */
    int index;
    struct sd_listener_rt *ls;
    size_t nls;
    struct sd_conn *conns; /* every open connection, for timeouts and drain */
    size_t nconns;
    struct sd_conn *dead; /* closed in this loop turn, freed at its end */
    size_t max_conns;
    int64_t now_ms; /* monotonic, refreshed once per loop turn */
    int64_t expire_sessions_ms; /* next sweep of expired TLS sessions */
    int draining;
    int64_t drain_deadline_ms;
    uint32_t drain_timeout_ms;
    int accept_retry; /* a listener is paused: retry accepting on the timer */
    int reload_broken; /* could not apply the master's configuration: exit */
    struct sd_bufpool pool;
};

/* Runs worker `index` until it has drained after SIGTERM. listen_fds[i] is
 * this worker's socket for gen->cfg->listeners[i]. Takes a reference on gen.
 * On its control socket `ctl` the master sends validated configuration
 * snapshots; the worker builds each into a new generation (from src's
 * arguments and the snapshot's bytes) and swaps it in. Returns the process
 * exit status. */
int sd_worker_run(struct sd_gen *gen, const struct sd_source *src,
                  const int *listen_fds, int index, int ctl);

/* Monotonic milliseconds. */
int64_t sd_now_ms(void);

/* Connection life cycle (conn.c), called by the worker loop. */
void sd_conn_accept(struct sd_worker *w, struct sd_listener_rt *l, int fd,
                    const struct sockaddr *peer, socklen_t peerlen);
/* Handles epoll events for a connection's client or backend socket. */
void sd_conn_event(struct sd_evsrc *src, uint32_t events);
/* Applies the connection's deadline if it has passed (timeouts, drain). */
void sd_conn_check_deadline(struct sd_conn *c);
/* After a reload to `now`: closes c if its client is no longer admitted. */
void sd_conn_judge(struct sd_conn *c, struct sd_gen *now);
/* Ends the connection now with result "error" and the given reason. */
void sd_conn_abort(struct sd_conn *c, const char *reason);
struct sd_conn *sd_conn_next(const struct sd_conn *c);
/* Frees the connections closed during this loop turn. */
void sd_conn_reap(struct sd_worker *w);

#endif
