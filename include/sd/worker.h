/*
 * sd/worker.h - one worker process: an event loop (sd/loop.h) that owns
 * its listening sockets (one per listener, bound with SO_REUSEPORT) and all
 * the connections accepted on them (sd/conn.h). Workers share nothing and
 * take no locks. What the master needs: the start and the control messages.
 */
#ifndef SD_WORKER_H
#define SD_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "sd/config.h"
#include "sd/loop.h" /* sd_now_ms() */
#include "sd/tls.h"

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
/* Connections only the admin listener may open beyond max-conns (one
 * descriptor each), so it answers when the worker is at its cap. */
#define SD_ADMIN_RESERVE 16
/* What a worker holds besides its connections, for the master's estimate
 * at start: stdin/out/err, epoll, signalfd, control socket, listeners. */
#define SD_FD_FIXED(nls) (6u + (nls) + SD_FD_RESERVE)

struct sd_gen;
struct sd_source;

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

#endif
