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
    int fd;              /* -1: a free slot (never used, or its listener was removed) */
    int paused;          /* SD_PAUSE_*: accept later */
    int index;           /* this listener's index in the current generation */
    struct sd_addr addr; /* what the socket is bound to; never changes */
};

enum { SD_PAUSE_NONE = 0, SD_PAUSE_CAP, SD_PAUSE_FDS };

/* A listening socket handed to a worker, with the address the master bound
 * it to: sockets and listeners are paired by that address, never by
 * position (a reload may reorder, add or remove listeners). */
struct sd_listen_sock {
    int fd;
    struct sd_addr addr;
};

/* A reload on the control socket (SOCK_SEQPACKET, one message each): this
 * header and `nadd` addresses; SCM_RIGHTS carries the snapshot's memfd,
 * then this worker's socket for each address: the listeners the reload
 * adds. Listeners the new configuration no longer has are closed by the
 * worker on its own. */
struct sd_ctl_msg {
    uint64_t gen_id;
    uint32_t nadd;
    uint32_t reserved;
    struct sd_addr add[SD_MAX_LISTENERS];
};
#define SD_CTL_MSG_SIZE(nadd) (offsetof(struct sd_ctl_msg, add) + (nadd) * sizeof(struct sd_addr))

/* Descriptors a worker keeps free beyond those it counts (a reload's
 * snapshot and new sockets, the log sink, OpenSSL): each connection
 * needs two (client and backend), and a worker accepts no more than the
 * open-file limit can give both to. */
#define SD_FD_RESERVE 16
/* What a worker holds besides its connections, for the master's estimate
 * at start: stdin/out/err, epoll, signalfd, control socket, listeners. */
#define SD_FD_FIXED(nls) (6u + (nls) + SD_FD_RESERVE)

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
    struct sd_listener_rt *ls; /* [SD_MAX_LISTENERS]: fixed, epoll points into it */
    size_t nls;                /* slots used so far (some may be free again) */
    struct sd_conn *conns; /* every open connection, for timeouts and drain */
    size_t nconns;
    struct sd_conn *dead; /* closed in this loop turn, freed at its end */
    size_t max_conns;     /* what the configuration asks (per worker) */
    size_t conn_cap;      /* what is accepted: max_conns, less if the fd limit says so */
    size_t fds_fixed;     /* descriptors held besides connections */
    int64_t now_ms; /* monotonic, refreshed once per loop turn */
    int64_t expire_sessions_ms; /* next sweep of expired TLS sessions */
    int draining;
    int64_t drain_deadline_ms;
    uint32_t drain_timeout_ms;
    int accept_retry; /* a listener is paused: retry accepting on the timer */
    int reload_broken; /* could not apply the master's configuration: exit */
    struct sd_bufpool pool;
};

/* Runs worker `index` until it has drained after SIGTERM (or after the
 * master is gone). socks[0..nsocks) are this worker's listening sockets,
 * each with the address the master bound it to; the worker pairs each with
 * gen's listener of that address and closes (never serves) one that gen
 * has no listener for. Takes a reference on gen. On its control socket
 * `ctl` the master sends validated configuration snapshots (struct
 * sd_ctl_msg); the worker builds each into a new generation (from src's
 * arguments and the snapshot's bytes) and swaps it in. Returns the process
 * exit status. */
int sd_worker_run(struct sd_gen *gen, const struct sd_source *src,
                  const struct sd_listen_sock *socks, size_t nsocks, int index, int ctl);

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
/* The listening socket slot that accepted c. */
struct sd_listener_rt *sd_conn_listener(const struct sd_conn *c);
/* Frees the connections closed during this loop turn. */
void sd_conn_reap(struct sd_worker *w);

#endif
