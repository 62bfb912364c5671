/*
 * conn.c - one proxied connection as an explicit state machine.
 *
 *   HANDSHAKE --ok--> CONNECTING --ok--> PROXYING --both sides closed--> done
 *       |                  |                 |
 *    refused             error             error
 *       v
 *    LINGER (alert sent, our FIN sent, discard input briefly, then close)
 *
 * A connector's warm connection (its `warm` setting) starts without a
 * caller in CONNECTING and, its handshake done, waits in WARM; a caller
 * accepted then takes it over and it goes on to PROXYING. One waiting
 * longer than warm-max-age is closed and replaced.
 *
 * HANDSHAKE is the client side's handshake; CONNECTING the backend's
 * connect, then its handshake, then the mode's start (sd/mode.h); PROXYING
 * two single-direction pumps (sd/pump.h). The backend is contacted only
 * after the client's certificate verified: an unauthenticated client never
 * causes a single byte to reach the protected service.
 *
 * Each side is a stream (sd/stream.h) chosen by the listener's mode: this
 * file never knows which side speaks TLS. Sockets are registered once for
 * reading and writing, edge-triggered; epoll sets a side's readiness flags
 * and an operation that would block clears them (see sd/pump.h); the state
 * steps run while any of them makes progress.
 *
 * Every end goes through sd_conn_close(): one log line (none for the end of
 * a linger, whose refusal was logged when it began), then either the
 * linger or the release of everything, once.
 */
#include "sd/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sd/gen.h"
#include "sd/log.h"
#include "sd/mode.h"
#include "sd/net.h"
#include "sd/peer.h"
#include "sd/pump.h"
#include "sd/stats.h"

#define SD_LINGER_MS 1000
#define SD_LINGER_MAX_BYTES 65536
#define SD_CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

enum sd_conn_state {
    SD_CONN_HANDSHAKE,  /* the client side's handshake */
    SD_CONN_CONNECTING, /* handshake done: the backend's connect and handshake */
    SD_CONN_PROXYING,
    SD_CONN_LINGER,     /* refused: the client reads our alert, then we close */
    SD_CONN_WARM,       /* a connector's connection made ahead, waiting for a caller */
};

/* A connection's part in its connector's warm pool. */
enum sd_conn_warm {
    SD_WARM_NONE,     /* made for a caller */
    SD_WARM_POOLED,   /* made ahead, no caller yet (on cs->warm[index]'s list) */
    SD_WARM_ATTACHED, /* made ahead, then taken by a caller */
};
#define SD_WARM_BACKOFF_MIN_MS 1000u
#define SD_WARM_BACKOFF_MAX_MS 30000u

/* How a connection ends: what its line says, and what happens to it. */
enum sd_conn_end {
    SD_END_OK,       /* "ok": both directions ended */
    SD_END_ERROR,    /* "error": after the handshake; the client gets our
                        close_notify (best effort) before the close */
    SD_END_REFUSED,  /* "refused", closed at once (timeout, abort) */
    SD_END_REJECTED, /* "refused", the client was told (an alert or a
                        close_notify is queued): linger so it can read it */
    SD_END_QUIET,    /* no line: the end of a linger */
};

/* What one step returns. */
enum sd_step {
    SD_STEP_WAIT,   /* nothing more to do before the next event */
    SD_STEP_AGAIN,  /* progress: run the (possibly new) state's step again */
    SD_STEP_CLOSED, /* c was closed: do not touch it */
};

struct sd_conn_side {
    struct sd_ev ev; /* its socket (ev.fd, -1 before the backend's connect) */
    struct sd_pump_side io;
};

struct sd_conn {
    struct sd_conn_side side[2]; /* [SD_SIDE_CLIENT], [SD_SIDE_BACKEND] */
    struct sd_pump pump[2];      /* [side]: the bytes bound for that side */
    struct sd_conn *prev, *next;
    struct sd_conn *dead_next; /* closed, waiting for sd_conns_reap() */
    struct sd_conns *cs;
    const void *listener;                /* the worker's tag */
    const struct sd_mode_ops *mode;
    struct sd_gen *gen;                  /* the generation that admitted it */
    const struct sd_listener_conf *conf; /* its listener, in that generation */
    int index;                           /* ... at this index */
    int64_t start_ms, deadline_ms;
    int64_t handshake_ms; /* handshake done: the idle clock's start until a byte moves */
    uint32_t linger_bytes;
    uint8_t state;     /* enum sd_conn_state */
    uint8_t connected; /* the backend's connect completed */
    uint8_t closed;    /* sockets closed; memory freed by sd_conns_reap() */
    uint8_t tunnel;    /* a mode with its own engine handed over to the pumps */
    uint8_t warm;      /* enum sd_conn_warm */
    struct sd_conn *wprev, *wnext; /* SD_WARM_POOLED: cs->warm[index]'s list */
    void *mode_state;  /* the mode's (sd_conn_mode_state) */
    uint64_t count_in, count_out; /* bytes a mode's engine moved (sd_conn_count) */
    struct sd_stats_lst *st;      /* its listener's counters in this worker, or NULL */
    int64_t start_us;             /* monotonic, for the handshake histogram */
    uint8_t open_counted;         /* in st->open: a caller's connection (a warm
                                   * one counts once a caller takes it) */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t peerlen;
};

static void sd_conn_free(struct sd_conn *c);
static enum sd_step sd_conn_start_proxying(struct sd_conn *c);
static void sd_conn_warm_unlink(struct sd_conn *c, int failed);

int64_t sd_conn_now(const struct sd_conn *c)
{
    return c->cs->loop->now_ms;
}

/* The monotonic clock in microseconds: the handshake histogram's first
 * buckets are below the loop clock's millisecond. */
static int64_t sd_conn_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --------------------------------------------------------- the close path */

/* A backend connect ended: ok, or failed (refused, unreachable, timed
 * out), for steeldoor_backend_connect_failures_total and /readyz. */
static void sd_conn_backend_result(struct sd_conn *c, int ok)
{
    struct sd_stats_lst *st = c->st;

    if (st == NULL)
        return;
    if (!ok)
        sd_stats_add(&st->backend_fail, 1);
    sd_stats_seti(ok ? &st->backend_ok_ms : &st->backend_fail_ms, sd_stats_wall_ms());
}

/* The counters of a connection that ends with a line: one per line, by
 * the line's result and reason, and its bytes (counted at the close, as
 * the line counts them: a scrape sees a long connection's bytes when it
 * ends). */
static void sd_conn_count_closed(struct sd_conn *c, enum sd_conn_end end, enum sd_reason reason)
{
    struct sd_stats_lst *st = c->st;
    enum sd_stats_result res = end == SD_END_OK      ? SD_STATS_OK
                               : end == SD_END_ERROR ? SD_STATS_ERROR
                                                     : SD_STATS_REFUSED;

    if (st == NULL)
        return;
    sd_stats_add(&st->closed[res][(unsigned)reason < SD_R_COUNT_ ? reason : SD_R_INTERNAL_ERROR],
                 1);
    sd_stats_add(&st->bytes_from_client, c->pump[SD_SIDE_BACKEND].nread + c->count_in);
    sd_stats_add(&st->bytes_to_client, c->pump[SD_SIDE_CLIENT].nwritten + c->count_out);
    if (reason == SD_R_BACKEND_CONNECT_TIMEOUT)
        sd_conn_backend_result(c, 0);
}

static void sd_conn_log(struct sd_conn *c, enum sd_conn_end end, enum sd_reason reason,
                        const char *detail)
{
    const struct sd_stream *verified = c->side[c->mode->verified].io.s;
    const char *result = end == SD_END_OK ? "ok" : end == SD_END_ERROR ? "error" : "refused";
    struct sd_logline l;
    char peer[64];

    if (c->peerlen > 0)
        sd_addr_format(&c->peer.sa, c->peerlen, peer, sizeof(peer));
    else
        memcpy(peer, "-", 2); /* a warm connection no caller took */
    /* A TCP health check (connect, close) is routine, not a warning. */
    sd_log_begin(&l, end == SD_END_OK || reason == SD_R_TCP_CHECK ? "info" : "warn", "conn");
    /* The verdict and the counters first: what the client controls (its
     * certificate's names) comes last and bounded, so it can never push
     * them out of a line that reached its cap. */
    sd_log_str(&l, "listener", c->conf->name);
    sd_log_str(&l, "peer", peer);
    sd_log_str(&l, "result", result);
    sd_log_str(&l, "reason", sd_reason_str(reason));
    sd_log_str(&l, "detail", detail);
    sd_log_u64(&l, "bytes_in", c->pump[SD_SIDE_BACKEND].nread + c->count_in);
    sd_log_u64(&l, "bytes_out", c->pump[SD_SIDE_CLIENT].nwritten + c->count_out);
    sd_log_i64(&l, "duration_ms", sd_now_ms() - c->start_ms);
    if (c->warm != SD_WARM_NONE)
        sd_log_bool(&l, "warm", 1);
    /* Where its bytes went (or were to go): the listener's target. */
    if (c->conf->target != NULL && c->state != SD_CONN_HANDSHAKE && c->state != SD_CONN_LINGER)
        sd_log_str(&l, "backend", c->conf->target);
    sd_peer_log(verified != NULL ? sd_stream_peer(verified) : NULL, &l);
    sd_log_end(&l);
    sd_conn_count_closed(c, end, reason);
}

/* Ends c, the one way every connection ends: logs its line (see enum
 * sd_conn_end), then lingers (SD_END_REJECTED) or releases everything.
 * Returns SD_STEP_CLOSED when c is gone, SD_STEP_WAIT when it lingers. */
static enum sd_step sd_conn_close(struct sd_conn *c, enum sd_conn_end end,
                                  enum sd_reason reason, const char *detail)
{
    struct sd_conn_side *client = &c->side[SD_SIDE_CLIENT];

    if (c->state == SD_CONN_LINGER)
        end = SD_END_QUIET; /* its refusal was logged when the linger began */
    if (client->io.s == NULL && end == SD_END_REJECTED)
        end = SD_END_ERROR; /* a warm connection: no caller to tell */
    if ((end == SD_END_ERROR || end == SD_END_REJECTED) && c->state != SD_CONN_HANDSHAKE &&
        client->io.s != NULL && !c->pump[SD_SIDE_CLIENT].shut) {
        /* Best effort, non-blocking: tell the client we are closing, so it
         * sees a prompt, orderly close rather than waiting for a timeout. */
        (void)sd_stream_shutdown(client->io.s);
    }
    if (end != SD_END_QUIET)
        sd_conn_log(c, end, reason, detail);
    if (end == SD_END_REJECTED) {
        /* The alert (or close_notify) is queued on the socket. Send our FIN
         * and discard what the client still sends for a moment, so that
         * closing with unread input does not turn into a TCP reset that
         * could destroy the alert before the client reads it. */
        c->state = SD_CONN_LINGER;
        c->deadline_ms = sd_conn_now(c) + SD_LINGER_MS;
        (void)shutdown(client->ev.fd, SHUT_WR);
        return SD_STEP_WAIT;
    }
    sd_conn_free(c);
    return SD_STEP_CLOSED;
}

/* Closes the connection's sockets and releases its resources at once; the
 * struct itself is freed by sd_conns_reap() after the current batch of
 * events, since a later event of the same batch may still point at it. */
static void sd_conn_free(struct sd_conn *c)
{
    struct sd_conns *cs = c->cs;
    int i;

    if (c->mode->fini != NULL)
        c->mode->fini(c);
    if (c->warm == SD_WARM_POOLED)
        sd_conn_warm_unlink(c, c->state != SD_CONN_WARM || c->deadline_ms > sd_conn_now(c));
    /* close() also removes the fds from epoll (they are never dup'ed). */
    for (i = SD_SIDE_BACKEND; i >= SD_SIDE_CLIENT; i--) {
        if (c->side[i].ev.fd >= 0)
            close(c->side[i].ev.fd);
        c->side[i].ev.fd = -1;
    }
    for (i = SD_SIDE_CLIENT; i <= SD_SIDE_BACKEND; i++) {
        sd_stream_free(c->side[i].io.s);
        c->side[i].io.s = NULL;
        sd_pump_fini(&c->pump[i], cs->pool);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        cs->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    cs->n--;
    if (c->open_counted)
        sd_stats_addi(&c->st->open, -1);
    c->closed = 1;
    sd_gen_unref(c->gen);
    c->gen = NULL;
    c->prev = NULL;
    /* c->next is left intact so that a walk of the list can go on. */
    c->dead_next = cs->dead;
    cs->dead = c;
    if (cs->on_close != NULL)
        cs->on_close(cs);
}

/* ------------------------------------------------------------- admission */

/* Would generation `now` admit c's verified peer? SD_R_NONE, or the reason
 * it would not (its listener gone: listener_removed). */
static enum sd_reason sd_conn_verdict(const struct sd_conn *c, struct sd_gen *now)
{
    int i = sd_gen_find_listener(now, &c->conf->listen_addr);

    if (i < 0)
        return SD_R_LISTENER_REMOVED;
    /* An admin listener switched between plaintext and mutual TLS on the
     * same address: what admitted its open connections no longer exists
     * (and a TLS stream cannot be judged by no context). */
    if ((now->tls[i] == NULL) != (c->gen->tls[c->index] == NULL))
        return SD_R_LISTENER_REMOVED;
    if (now->tls[i] == NULL)
        return SD_R_NONE; /* a plaintext admin listener verifies nobody */
    return sd_stream_judge(c->side[c->mode->verified].io.s, now->tls[i]);
}

/* Side `side` finished its handshake. The client's first bytes usually
 * come after its Finished: when the handshake read the socket dry, wait
 * for their edge instead of reading EAGAIN first.
 *
 * A connection is admitted by the configuration in force when its
 * handshake completes, not by the one it was accepted under: a client must
 * not open TCP connections ahead, wait for a revocation or a rule removal,
 * and then finish its handshakes under the configuration that no longer
 * exists. If a reload happened meanwhile, the verified peer is judged again
 * by the current generation. Returns 1 when c was refused (it lingers). */
static int sd_conn_handshake_done(struct sd_conn *c, enum sd_side side)
{
    struct sd_pump_side *io = &c->side[side].io;
    enum sd_reason reason;

    if (!io->hup && sd_stream_read_dry(io->s))
        io->rd = 0;
    if (side == c->mode->verified && c->st != NULL) {
        const struct sd_peer *p = sd_stream_peer(io->s); /* NULL: plain TCP, no TLS */
        int64_t us = sd_conn_now_us() - c->start_us;
        if (p != NULL)
            sd_stats_handshake(c->st, p->resumed, us > 0 ? (uint64_t)us : 0);
    }
    if (side != c->mode->verified || c->gen == c->cs->gen)
        return 0;
    reason = sd_conn_verdict(c, c->cs->gen);
    if (reason != SD_R_NONE) {
        (void)sd_conn_close(c, SD_END_REJECTED, reason,
                            side == SD_SIDE_BACKEND
                                ? "handshake completed after a reload: the current "
                                  "configuration does not admit this server"
                                : "handshake completed after a reload: the current "
                                  "configuration does not admit this client");
        return 1;
    }
    /* Admitted now too. It keeps the generation it started under: its TLS
     * state belongs to that generation's context. */
    return 0;
}

/* ------------------------------------------------------------ the states */

static enum sd_step sd_conn_start_backend(struct sd_conn *c)
{
    struct sd_conn_side *b = &c->side[SD_SIDE_BACKEND];
    int fd = sd_net_connect(&c->conf->target_addr);

    if (fd < 0) {
        int e = errno;
        /* Out of descriptors, the backend was never tried: say so rather
         * than blame it. The accept cap (worker.c) makes this rare. */
        if (e != EMFILE && e != ENFILE)
            sd_conn_backend_result(c, 0);
        return sd_conn_close(c, SD_END_ERROR,
                             e == EMFILE || e == ENFILE ? SD_R_FD_LIMIT
                                                        : SD_R_BACKEND_CONNECT_FAILED,
                             e != 0 ? strerror(e) : NULL);
    }
    b->ev.fd = fd; /* closed with the connection from now on */
    b->io.s = c->mode->stream(c->gen, c->index, SD_SIDE_BACKEND, fd);
    if (b->io.s == NULL)
        return sd_conn_close(c, SD_END_ERROR, SD_R_OUT_OF_MEMORY, NULL);
    if (sd_loop_add(c->cs->loop, &b->ev) != 0) {
        int e = errno;
        return sd_conn_close(c, SD_END_ERROR, SD_R_BACKEND_CONNECT_FAILED,
                             e != 0 ? strerror(e) : NULL);
    }
    c->handshake_ms = sd_conn_now(c);
    c->deadline_ms = c->handshake_ms + c->conf->connect_timeout_ms;
    return SD_STEP_AGAIN; /* waits for the connect's writable edge */
}

static enum sd_step sd_conn_step_handshake(struct sd_conn *c)
{
    struct sd_pump_side *io = &c->side[SD_SIDE_CLIENT].io;
    enum sd_io r;

    if (!sd_pump_side_ready(io, io->hs_want))
        return SD_STEP_WAIT;
    r = sd_stream_handshake(io->s);
    if (r == SD_IO_OK) {
        c->state = SD_CONN_CONNECTING;
        if (sd_conn_handshake_done(c, SD_SIDE_CLIENT))
            return SD_STEP_WAIT; /* refused by a configuration newer than its start */
        if (c->mode->lazy_backend)
            return sd_conn_start_proxying(c);
        return sd_conn_start_backend(c);
    }
    if (r == SD_IO_ERROR || r == SD_IO_EOF) {
        (void)sd_conn_close(c, SD_END_REJECTED, io->s->reason, io->s->detail);
        return SD_STEP_AGAIN; /* drain what is already readable */
    }
    sd_pump_side_blocked(io, r, &io->hs_want);
    return SD_STEP_WAIT;
}

/* Both sides are ready (or, for a lazy_backend mode, the client's): the
 * mode starts, then bytes move. */
static enum sd_step sd_conn_start_proxying(struct sd_conn *c)
{
    const char *detail = NULL;
    enum sd_reason reason;

    c->state = SD_CONN_PROXYING;
    /* The connect deadline is over: from now on the idle timeout applies,
     * counted from the handshake until a byte moves (each step with
     * progress pushes it on). Without this a quiet connection (a pooled
     * one, say) would be cut at the connect timeout. */
    if (c->handshake_ms == 0)
        c->handshake_ms = sd_conn_now(c);
    c->deadline_ms = c->handshake_ms + c->conf->idle_timeout_ms;
    reason = c->mode->start(c, &detail);
    if (reason != SD_R_NONE)
        return sd_conn_close(c, SD_END_ERROR, reason, detail);
    return SD_STEP_AGAIN;
}

static enum sd_step sd_conn_step_connecting(struct sd_conn *c)
{
    struct sd_conn_side *b = &c->side[SD_SIDE_BACKEND];
    enum sd_io r;

    if (!c->connected) {
        int e;
        if (!b->io.wr)
            return SD_STEP_WAIT;
        /* A failed connect always reports EPOLLERR/EPOLLHUP; without them
         * the connect succeeded and SO_ERROR need not be read. */
        e = b->io.hup ? sd_net_connect_result(b->ev.fd) : 0;
        sd_conn_backend_result(c, e == 0);
        if (e != 0)
            return sd_conn_close(c, SD_END_ERROR, SD_R_BACKEND_CONNECT_FAILED, strerror(e));
        c->connected = 1;
    }
    /* The backend's handshake (plain TCP: nothing to do). */
    if (!sd_pump_side_ready(&b->io, b->io.hs_want))
        return SD_STEP_WAIT;
    r = sd_stream_handshake(b->io.s);
    if (r == SD_IO_ERROR || r == SD_IO_EOF)
        return sd_conn_close(c, SD_END_ERROR, b->io.s->reason, b->io.s->detail);
    if (r != SD_IO_OK) {
        sd_pump_side_blocked(&b->io, r, &b->io.hs_want);
        return SD_STEP_WAIT;
    }
    if (sd_conn_handshake_done(c, SD_SIDE_BACKEND))
        return SD_STEP_WAIT;
    if (c->warm == SD_WARM_POOLED) {
        /* Ready: waits for a caller, at most warm-max-age from its start
         * (the server's idle clock started with the connection), and never
         * past the end of what verified the server (its certificate's
         * notAfter, the CRLs' freshness): a caller must not get a
         * connection a handshake now would refuse. */
        const struct sd_peer *p = sd_stream_peer(b->io.s);
        c->state = SD_CONN_WARM;
        c->deadline_ms = c->start_ms + c->conf->warm_max_age_ms;
        if (p != NULL && p->valid_until > 0) {
            int64_t end = sd_conn_now(c) + (p->valid_until - (int64_t)time(NULL)) * 1000;
            if (end < c->deadline_ms)
                c->deadline_ms = end;
        }
        return SD_STEP_AGAIN;
    }
    return sd_conn_start_proxying(c);
}

/* A warm connection waiting for a caller. What the server sends meanwhile
 * (TLS 1.3 session tickets, consumed by the stream; a greeting of a
 * server-speaks-first protocol, kept for the caller, up to one buffer,
 * the rest left in the socket) is read; its end or an error (the server's
 * idle timeout, or its verdict on our certificate, which TLS 1.3 sends
 * after our handshake is done) closes it. */
static enum sd_step sd_conn_step_warm(struct sd_conn *c)
{
    struct sd_conn_side *b = &c->side[SD_SIDE_BACKEND];
    struct sd_pump *p = &c->pump[SD_SIDE_CLIENT];
    struct sd_buf *buf;
    size_t n = 0;
    enum sd_io r;

    if (!sd_pump_side_ready(&b->io, b->io.rd_want))
        return SD_STEP_WAIT;
    if ((buf = sd_pump_buf(p, c->cs->pool)) == NULL)
        return sd_conn_close(c, SD_END_ERROR, SD_R_OUT_OF_MEMORY, NULL);
    if (sd_buf_room(buf) == 0)
        return SD_STEP_WAIT; /* full: the caller reads the rest */
    r = sd_stream_read(b->io.s, buf->data + buf->w, sd_buf_room(buf), &n);
    if (r == SD_IO_OK) {
        buf->w += (uint32_t)n;
        p->nread += n;
        return SD_STEP_AGAIN;
    }
    if (r == SD_IO_EOF || r == SD_IO_ERROR)
        return sd_conn_close(c, SD_END_ERROR,
                             r == SD_IO_EOF || b->io.s->reason == SD_R_NONE ? SD_R_BACKEND_RESET
                                                                           : b->io.s->reason,
                             r == SD_IO_EOF ? "the server closed a warm connection before a "
                                              "caller came (is warm-max-age below its idle "
                                              "timeout?)"
                                            : b->io.s->detail);
    sd_pump_side_blocked(&b->io, r, &b->io.rd_want);
    return SD_STEP_WAIT;
}

static enum sd_step sd_conn_step_proxying(struct sd_conn *c)
{
    /* Client -> backend first, then backend -> client. */
    static const enum sd_side order[2] = { SD_SIDE_BACKEND, SD_SIDE_CLIENT };
    int progress = 0;
    size_t i;

    if (c->mode->run != NULL && !c->tunnel) {
        enum sd_reason reason = SD_R_NONE;
        const char *detail = NULL;
        switch (c->mode->run(c, &progress, &reason, &detail)) {
        case SD_MODE_GO:
            if (!progress)
                return SD_STEP_WAIT;
            return SD_STEP_AGAIN; /* the engine manages its own deadlines */
        case SD_MODE_TUNNEL:
            c->tunnel = 1;
            c->deadline_ms = sd_conn_now(c) + c->conf->idle_timeout_ms;
            return SD_STEP_AGAIN;
        case SD_MODE_DONE:
            return sd_conn_close(c, SD_END_OK, SD_R_NONE, NULL);
        case SD_MODE_FAIL:
        default:
            return sd_conn_close(c, SD_END_ERROR, reason, detail);
        }
    }
    for (i = 0; i < 2; i++) {
        struct sd_pump *p = &c->pump[order[i]];
        if (sd_pump_run(p, c->cs->pool, &progress) != 0)
            return sd_conn_close(c, SD_END_ERROR, p->reason, p->detail);
    }
    if (c->pump[SD_SIDE_BACKEND].shut && c->pump[SD_SIDE_CLIENT].shut)
        return sd_conn_close(c, SD_END_OK, SD_R_NONE, NULL);
    if (!progress)
        return SD_STEP_WAIT;
    c->deadline_ms = sd_conn_now(c) + c->conf->idle_timeout_ms;
    return SD_STEP_AGAIN;
}

/* Refused: discards the client's input (below the TLS layer: it is over)
 * until its FIN, a cap, or the linger deadline. */
static enum sd_step sd_conn_step_linger(struct sd_conn *c)
{
    struct sd_conn_side *client = &c->side[SD_SIDE_CLIENT];
    char sink[4096];
    ssize_t r;

    if (!client->io.rd)
        return SD_STEP_WAIT;
    r = recv(client->ev.fd, sink, sizeof(sink), 0);
    if (r > 0) {
        c->linger_bytes += (uint32_t)r;
        if (c->linger_bytes > SD_LINGER_MAX_BYTES)
            return sd_conn_close(c, SD_END_QUIET, SD_R_NONE, NULL);
        return SD_STEP_AGAIN;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        client->io.rd = 0;
        return SD_STEP_WAIT;
    }
    if (r == 0 || errno != EINTR)
        return sd_conn_close(c, SD_END_QUIET, SD_R_NONE, NULL);
    return SD_STEP_WAIT;
}

/* The state table: each state's step, and how its timeout and an abort
 * end the connection. */
static const struct sd_conn_state_info {
    enum sd_step (*step)(struct sd_conn *c);
    enum sd_conn_end timeout_end;
    enum sd_reason timeout_reason;
    enum sd_conn_end abort_end;
} sd_conn_states[] = {
    [SD_CONN_HANDSHAKE] = { sd_conn_step_handshake, SD_END_REFUSED, SD_R_HANDSHAKE_TIMEOUT,
                            SD_END_REFUSED },
    [SD_CONN_CONNECTING] = { sd_conn_step_connecting, SD_END_ERROR,
                             SD_R_BACKEND_CONNECT_TIMEOUT, SD_END_ERROR },
    [SD_CONN_PROXYING] = { sd_conn_step_proxying, SD_END_ERROR, SD_R_IDLE_TIMEOUT,
                           SD_END_ERROR },
    [SD_CONN_LINGER] = { sd_conn_step_linger, SD_END_QUIET, SD_R_NONE, SD_END_QUIET },
    /* Too old to hand out: closed without a line, and replaced. */
    [SD_CONN_WARM] = { sd_conn_step_warm, SD_END_QUIET, SD_R_NONE, SD_END_QUIET },
};

static void sd_conn_run(struct sd_conn *c)
{
    while (sd_conn_states[c->state].step(c) == SD_STEP_AGAIN)
        ;
}

/* ---------------------------------------------------------------- events */

static void sd_conn_event(struct sd_conn *c, struct sd_conn_side *side, uint32_t events)
{
    if (c->closed)
        return; /* closed earlier in this batch of events */
    if (side->io.s == NULL)
        return; /* a backend a mode released earlier in this batch */
    /* Errors and hang-ups are reported through the next read or write, so
     * they simply make both directions worth trying. */
    if (events & (EPOLLERR | EPOLLHUP))
        events |= EPOLLIN | EPOLLOUT;
    sd_pump_side_events(&side->io, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0,
                        (events & (EPOLLIN | EPOLLRDHUP)) != 0, (events & EPOLLOUT) != 0);
    sd_conn_run(c);
}

static void sd_conn_on_client(struct sd_ev *ev, uint32_t events)
{
    struct sd_conn *c =
        (struct sd_conn *)((char *)ev - offsetof(struct sd_conn, side[SD_SIDE_CLIENT].ev));

    sd_conn_event(c, &c->side[SD_SIDE_CLIENT], events);
}

static void sd_conn_on_backend(struct sd_ev *ev, uint32_t events)
{
    struct sd_conn *c =
        (struct sd_conn *)((char *)ev - offsetof(struct sd_conn, side[SD_SIDE_BACKEND].ev));

    sd_conn_event(c, &c->side[SD_SIDE_BACKEND], events);
}

/* ---------------------------------------------------------- the worker's */

/* A connection of listener `index` of cs->gen, with neither side's socket
 * yet, linked into cs's list; NULL when out of memory. */
static struct sd_conn *sd_conn_new(struct sd_conns *cs, int index, const void *listener)
{
    struct sd_conn *c = calloc(1, sizeof(*c));
    int i;

    if (c == NULL)
        return NULL;
    c->cs = cs;
    c->listener = listener;
    c->index = index;
    c->gen = sd_gen_ref(cs->gen);
    c->conf = &c->gen->cfg->listeners[index];
    c->mode = sd_mode_for(c->conf);
    for (i = SD_SIDE_CLIENT; i <= SD_SIDE_BACKEND; i++) {
        c->side[i].ev.fd = -1;
        c->side[i].ev.mask = SD_CONN_EVENTS;
        c->side[i].io.rd_want = SD_WANT_READ;
        c->side[i].io.wr_want = SD_WANT_WRITE;
    }
    c->side[SD_SIDE_CLIENT].ev.cb = sd_conn_on_client;
    c->side[SD_SIDE_BACKEND].ev.cb = sd_conn_on_backend;
    /* Who speaks first in a handshake: the client (TLS's ClientHello); we
     * are the client towards the backend. */
    c->side[SD_SIDE_CLIENT].io.hs_want = c->mode->client_plain ? SD_WANT_WRITE : SD_WANT_READ;
    c->side[SD_SIDE_BACKEND].io.hs_want = SD_WANT_WRITE;
    sd_pump_init(&c->pump[SD_SIDE_BACKEND], &c->side[SD_SIDE_CLIENT].io,
                 &c->side[SD_SIDE_BACKEND].io);
    sd_pump_init(&c->pump[SD_SIDE_CLIENT], &c->side[SD_SIDE_BACKEND].io,
                 &c->side[SD_SIDE_CLIENT].io);
    c->start_ms = cs->loop->now_ms;
    /* Linked at once, so sd_conn_free() can always unlink. */
    c->next = cs->head;
    if (cs->head != NULL)
        cs->head->prev = c;
    cs->head = c;
    cs->n++;
    c->st = cs->stats[index];
    if (c->st != NULL)
        c->start_us = sd_conn_now_us();
    return c;
}

/* c is a caller's connection from now on: steeldoor_connections_open
 * counts it until it is freed (warm ones no caller took are not open
 * connections of the listener). */
static void sd_conn_count_open(struct sd_conn *c)
{
    if (c->st == NULL || c->open_counted)
        return;
    c->open_counted = 1;
    sd_stats_addi(&c->st->open, 1);
}

/* Gives fd's caller a warm connection of connector `index`: one that is
 * ready, made under the generation in force and younger than warm-max-age.
 * Returns 0 (fd is the connection's now), or -1 (none; fd untouched). */
static int sd_conn_warm_attach(struct sd_conns *cs, int index, int fd,
                               const struct sockaddr *peer, socklen_t peerlen)
{
    struct sd_conn_side *client;
    struct sd_conn *c;
    int64_t now = cs->loop->now_ms;

    for (c = cs->warm[index].head; c != NULL; c = c->wnext)
        if (c->state == SD_CONN_WARM && c->gen == cs->gen && now < c->deadline_ms)
            break;
    if (c == NULL)
        return -1;
    client = &c->side[SD_SIDE_CLIENT];
    client->io.s = c->mode->stream(c->gen, index, SD_SIDE_CLIENT, fd);
    if (client->io.s == NULL)
        return -1;
    client->ev.fd = fd;
    if (sd_loop_add(cs->loop, &client->ev) != 0) {
        sd_stream_free(client->io.s);
        client->io.s = NULL;
        client->ev.fd = -1;
        return -1;
    }
    sd_conn_warm_unlink(c, 0);
    c->warm = SD_WARM_ATTACHED;
    sd_conn_count_open(c);
    if (peerlen > sizeof(c->peer))
        peerlen = sizeof(c->peer);
    memcpy(&c->peer, peer, peerlen);
    c->peerlen = peerlen;
    /* Its line and its idle clock start with the caller. Bytes the
     * stream may hold already (read ahead with a ticket) are looked for
     * at once; a new socket is writable. */
    c->start_ms = now;
    c->handshake_ms = now;
    c->side[SD_SIDE_BACKEND].io.rd = 1;
    client->io.wr = 1;
    if (sd_conn_start_proxying(c) == SD_STEP_AGAIN)
        sd_conn_run(c);
    return 0;
}

void sd_conn_accept(struct sd_conns *cs, int index, const void *listener, int fd,
                    const struct sockaddr *peer, socklen_t peerlen)
{
    struct sd_conn *c;

    if (cs->stats[index] != NULL)
        sd_stats_add(&cs->stats[index]->accepted, 1);
    if (cs->warm[index].head != NULL && sd_conn_warm_attach(cs, index, fd, peer, peerlen) == 0) {
        sd_conn_warm_fill(cs, index, listener); /* one was taken: replace it */
        return;
    }
    if ((c = sd_conn_new(cs, index, listener)) != NULL)
        sd_conn_count_open(c);
    if (c == NULL) {
        /* Not a connection yet: nothing to log, as when the kernel's
         * queue overflows. */
        close(fd);
        return;
    }
    c->deadline_ms = c->start_ms + c->conf->handshake_timeout_ms;
    c->state = SD_CONN_HANDSHAKE;
    if (peerlen > sizeof(c->peer))
        peerlen = sizeof(c->peer);
    memcpy(&c->peer, peer, peerlen);
    c->peerlen = peerlen;
    /* TCP_NODELAY comes from the listening socket (see sd_net_listen). */
    c->side[SD_SIDE_CLIENT].ev.fd = fd; /* closed with the connection from now on */
    c->side[SD_SIDE_CLIENT].io.s = c->mode->stream(c->gen, index, SD_SIDE_CLIENT, fd);
    if (c->side[SD_SIDE_CLIENT].io.s == NULL ||
        sd_loop_add(cs->loop, &c->side[SD_SIDE_CLIENT].ev) != 0)
        (void)sd_conn_close(c, SD_END_QUIET, SD_R_NONE, NULL);
}

/* ------------------------------------------------------- warm connections */

/* Takes c off its connector's warm list. failed: it ended before it was
 * handed out or aged out: the next attempts wait, twice as long as after
 * the previous round's failure (the connections of one round failing
 * together count once). Otherwise the server took it (a TLS 1.3 server
 * judges our certificate after our handshake is done, so reaching WARM
 * is not yet success): the pause is forgotten. */
static void sd_conn_warm_unlink(struct sd_conn *c, int failed)
{
    struct sd_conns_warm *w = &c->cs->warm[c->index];

    if (c->wprev != NULL)
        c->wprev->wnext = c->wnext;
    else
        w->head = c->wnext;
    if (c->wnext != NULL)
        c->wnext->wprev = c->wprev;
    c->wprev = c->wnext = NULL;
    w->n--;
    c->warm = SD_WARM_NONE;
    if (!failed) {
        w->backoff_ms = 0;
    } else if (c->cs->loop->now_ms >= w->retry_ms) {
        w->backoff_ms = w->backoff_ms == 0 ? SD_WARM_BACKOFF_MIN_MS
                        : w->backoff_ms >= SD_WARM_BACKOFF_MAX_MS / 2 ? SD_WARM_BACKOFF_MAX_MS
                                                                     : w->backoff_ms * 2;
        w->retry_ms = c->cs->loop->now_ms + w->backoff_ms;
    }
}

void sd_conn_warm_fill(struct sd_conns *cs, int index, const void *listener)
{
    const struct sd_listener_conf *conf = &cs->gen->cfg->listeners[index];
    struct sd_conns_warm *w = &cs->warm[index];
    struct sd_conn *c;

    if (conf->mode != SD_MODE_CONNECT)
        return;
    /* Warm connections count against the worker's cap like any other;
     * they never take the last place, which is a caller's. */
    while (w->n < conf->warm && cs->loop->now_ms >= w->retry_ms && cs->n + 1 < cs->cap) {
        if ((c = sd_conn_new(cs, index, listener)) == NULL)
            return;
        c->warm = SD_WARM_POOLED;
        c->wnext = w->head;
        if (w->head != NULL)
            w->head->wprev = c;
        w->head = c;
        w->n++;
        c->state = SD_CONN_CONNECTING;
        if (sd_conn_start_backend(c) == SD_STEP_CLOSED)
            return; /* logged; the pause is set */
    }
}

void sd_conn_warm_drop(struct sd_conns *cs)
{
    size_t i;

    for (i = 0; i < SD_MAX_LISTENERS; i++) {
        while (cs->warm[i].head != NULL)
            (void)sd_conn_close(cs->warm[i].head, SD_END_QUIET, SD_R_NONE, NULL);
        cs->warm[i].backoff_ms = 0;
        cs->warm[i].retry_ms = 0;
    }
}

void sd_conn_check_deadline(struct sd_conn *c)
{
    const struct sd_conn_state_info *st = &sd_conn_states[c->state];

    if (sd_conn_now(c) < c->deadline_ms)
        return;
    if (c->state == SD_CONN_PROXYING && !c->tunnel && c->mode->timeout != NULL &&
        c->mode->timeout(c)) {
        sd_conn_run(c); /* it may have queued an answer */
        return;
    }
    (void)sd_conn_close(c, st->timeout_end, st->timeout_reason, NULL);
}

void sd_conn_judge(struct sd_conn *c, struct sd_gen *now)
{
    enum sd_reason reason;

    /* A connection whose listener is gone is closed by the worker itself
     * (listener_removed), with the listener. */
    if (c->closed || c->gen == now ||
        (c->state != SD_CONN_CONNECTING && c->state != SD_CONN_PROXYING) ||
        sd_gen_find_listener(now, &c->conf->listen_addr) < 0)
        return;
    /* A connector's server is verified by the backend's handshake: until
     * it ends there is nothing to judge (its end judges it against the
     * generation then in force: sd_conn_handshake_done). */
    if (c->mode->verified == SD_SIDE_BACKEND && c->state != SD_CONN_PROXYING)
        return;
    reason = sd_conn_verdict(c, now);
    if (reason == SD_R_NONE)
        return;
    (void)sd_conn_close(c, SD_END_ERROR, reason,
                        c->mode->verified == SD_SIDE_BACKEND
                            ? "open connection closed after reload: server no longer admitted"
                            : "open connection closed after reload: client no longer admitted");
}

void sd_conn_drain(struct sd_conn *c)
{
    if (c->closed || c->state != SD_CONN_PROXYING || c->tunnel || c->mode->drain == NULL)
        return;
    c->mode->drain(c);
    sd_conn_run(c);
}

void sd_conn_abort(struct sd_conn *c, enum sd_reason reason)
{
    (void)sd_conn_close(c, sd_conn_states[c->state].abort_end, reason, NULL);
}

struct sd_conn *sd_conn_next(const struct sd_conn *c)
{
    return c->next;
}

const void *sd_conn_listener(const struct sd_conn *c)
{
    return c->listener;
}

void sd_conns_reap(struct sd_conns *cs)
{
    while (cs->dead != NULL) {
        struct sd_conn *c = cs->dead;
        cs->dead = c->dead_next;
        free(c);
    }
}

/* ------------------------------------------------------------ the mode's */

const struct sd_listener_conf *sd_conn_conf(const struct sd_conn *c)
{
    return c->conf;
}

const struct sd_auth *sd_conn_auth(const struct sd_conn *c, uint64_t *gen_id)
{
    const struct sd_gen *g = c->cs->gen;
    int i = g == c->gen ? c->index : sd_gen_find_listener(g, &c->conf->listen_addr);

    if (i < 0) {
        g = c->gen;
        i = c->index;
    }
    *gen_id = g->id;
    return g->auth[i];
}

struct sd_gen *sd_conn_current_gen(const struct sd_conn *c)
{
    return c->cs->gen;
}

int sd_conn_worker(const struct sd_conn *c)
{
    return c->cs->worker;
}

struct sd_stats_lst *sd_conn_stats(const struct sd_conn *c)
{
    return c->st;
}

struct sd_stream *sd_conn_stream(const struct sd_conn *c, enum sd_side side)
{
    return c->side[side].io.s;
}

const struct sockaddr *sd_conn_peer_addr(const struct sd_conn *c, socklen_t *len)
{
    *len = c->peerlen;
    return &c->peer.sa;
}

struct sd_buf *sd_conn_queue(struct sd_conn *c, enum sd_side to)
{
    return sd_pump_buf(&c->pump[to], c->cs->pool);
}

struct sd_buf *sd_conn_queue_room(struct sd_conn *c, enum sd_side to, size_t need)
{
    struct sd_pump *p = &c->pump[to];
    struct sd_buf *b = sd_pump_buf(p, c->cs->pool);

    if (b != NULL && sd_buf_room(b) < need && b->cap == SD_BUF_SMALL) {
        p->buf = b = sd_bufpool_grow(c->cs->pool, b);
        p->bulk = 1;
    }
    return b != NULL && sd_buf_room(b) >= need ? b : NULL;
}

void sd_conn_set_hook(struct sd_conn *c, enum sd_side to, sd_pump_hook *hook, void *arg)
{
    c->pump[to].hook = hook;
    c->pump[to].hook_arg = arg;
}

void *sd_conn_mode_state(const struct sd_conn *c)
{
    return c->mode_state;
}

void sd_conn_set_mode_state(struct sd_conn *c, void *state)
{
    c->mode_state = state;
}

struct sd_pump_side *sd_conn_side(struct sd_conn *c, enum sd_side side)
{
    return &c->side[side].io;
}

struct sd_bufpool *sd_conn_bufpool(const struct sd_conn *c)
{
    return c->cs->pool;
}

struct sd_loop *sd_conn_loop(const struct sd_conn *c)
{
    return c->cs->loop;
}

void sd_conn_set_deadline(struct sd_conn *c, int64_t when_ms)
{
    c->deadline_ms = when_ms;
}

void sd_conn_count(struct sd_conn *c, uint64_t from_client, uint64_t to_client)
{
    c->count_in += from_client;
    c->count_out += to_client;
}

enum sd_reason sd_conn_backend_open(struct sd_conn *c, int fd, const char **detail)
{
    struct sd_conn_side *b = &c->side[SD_SIDE_BACKEND];
    int pooled = fd >= 0;

    *detail = NULL;
    if (b->ev.fd >= 0) {
        if (pooled)
            close(fd);
        *detail = "a backend is already attached";
        return SD_R_BACKEND_CONNECT_FAILED;
    }
    if (!pooled && (fd = sd_net_connect(&c->conf->target_addr)) < 0) {
        int e = errno;
        if (e != EMFILE && e != ENFILE)
            sd_conn_backend_result(c, 0);
        *detail = e != 0 ? strerror(e) : NULL;
        return e == EMFILE || e == ENFILE ? SD_R_FD_LIMIT : SD_R_BACKEND_CONNECT_FAILED;
    }
    memset(&b->io, 0, sizeof(b->io));
    b->io.rd_want = SD_WANT_READ;
    b->io.wr_want = SD_WANT_WRITE;
    b->io.hs_want = SD_WANT_WRITE;
    b->io.s = c->mode->stream(c->gen, c->index, SD_SIDE_BACKEND, fd);
    if (b->io.s == NULL) {
        close(fd);
        return SD_R_OUT_OF_MEMORY;
    }
    b->ev.fd = fd;
    if (sd_loop_add(c->cs->loop, &b->ev) != 0) {
        int e = errno;
        (void)sd_conn_backend_release(c);
        close(fd);
        *detail = e != 0 ? strerror(e) : NULL;
        return SD_R_BACKEND_CONNECT_FAILED;
    }
    /* A pooled socket is connected and, idle, writable now: the request
     * goes out at once rather than after the edge the add reports. */
    c->connected = (uint8_t)pooled;
    b->io.wr = (uint8_t)pooled;
    return SD_R_NONE;
}

int sd_conn_backend_ready(struct sd_conn *c, enum sd_reason *reason, const char **detail)
{
    struct sd_conn_side *b = &c->side[SD_SIDE_BACKEND];
    enum sd_io r;

    if (b->ev.fd < 0 || b->io.s == NULL) {
        *reason = SD_R_BACKEND_CONNECT_FAILED;
        *detail = "no backend attached";
        return -1;
    }
    if (!c->connected) {
        int e;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        if (!b->io.wr)
            return 0;
        /* Asked of the socket, not taken from the flags: an event of the
         * backend this connection had before, released in the same batch
         * of events, may have set them on this one. */
        e = sd_net_connect_result(b->ev.fd);
        if (e != 0) {
            sd_conn_backend_result(c, 0);
            *reason = SD_R_BACKEND_CONNECT_FAILED;
            *detail = strerror(e);
            return -1;
        }
        if (getpeername(b->ev.fd, (struct sockaddr *)&sa, &salen) != 0) {
            b->io.wr = 0; /* still connecting: its writable edge will come */
            b->io.hup = 0;
            return 0;
        }
        sd_conn_backend_result(c, 1);
        c->connected = 1;
    }
    if (!sd_pump_side_ready(&b->io, b->io.hs_want))
        return 0;
    r = sd_stream_handshake(b->io.s);
    if (r == SD_IO_ERROR || r == SD_IO_EOF) {
        *reason = b->io.s->reason;
        *detail = b->io.s->detail;
        return -1;
    }
    if (r != SD_IO_OK) {
        sd_pump_side_blocked(&b->io, r, &b->io.hs_want);
        return 0;
    }
    return 1;
}

int sd_conn_backend_release(struct sd_conn *c)
{
    struct sd_conn_side *b = &c->side[SD_SIDE_BACKEND];
    int fd = b->ev.fd;

    if (fd < 0)
        return -1;
    (void)sd_loop_del(c->cs->loop, &b->ev);
    sd_stream_free(b->io.s);
    b->io.s = NULL;
    b->ev.fd = -1;
    c->connected = 0;
    memset(&b->io, 0, sizeof(b->io));
    b->io.rd_want = SD_WANT_READ;
    b->io.wr_want = SD_WANT_WRITE;
    b->io.hs_want = SD_WANT_WRITE;
    return fd;
}
