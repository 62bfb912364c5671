/*
 * conn.c - one proxied connection as an explicit state machine.
 *
 *   HANDSHAKE --ok--> CONNECTING --ok--> PROXYING --both sides closed--> done
 *       |                  |                 |
 *    refused             error             error
 *       v
 *    LINGER (alert sent, our FIN sent, discard input briefly, then close)
 *
 * The backend is contacted only after the client's certificate verified:
 * an unauthenticated client never causes a single byte to reach the
 * protected service.
 *
 * Sockets are registered once for EPOLLIN|EPOLLOUT, edge-triggered. Each side
 * has "readable"/"writable" flags that epoll sets and an EAGAIN (or TLS
 * WANT_*) clears; sd_conn_run() keeps moving bytes while any step makes
 * progress. TLS may need to write while reading (and read while writing), so
 * each TLS operation remembers which readiness it waits for.
 */
#include "sd/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sd/gen.h"
#include "sd/log.h"
#include "sd/net.h"

#define SD_LINGER_MS 1000
#define SD_LINGER_MAX_BYTES 65536

enum sd_conn_state {
    SD_CONN_HANDSHAKE,
    SD_CONN_CONNECTING,
    SD_CONN_PROXYING,
    SD_CONN_LINGER,
};

enum sd_want { SD_WANT_READ = 0, SD_WANT_WRITE = 1 };

struct sd_conn {
    struct sd_evsrc cev; /* client socket events */
    struct sd_evsrc bev; /* backend socket events */
    struct sd_conn *prev, *next;
    struct sd_conn *dead_next; /* closed, waiting for sd_conn_reap() */
    struct sd_worker *w;
    struct sd_listener_rt *l;
    struct sd_gen *gen;                  /* the generation that admitted it */
    const struct sd_listener_conf *conf; /* its listener, in that generation */
    struct sd_tls_conn *tls;
    struct sd_buf *c2b; /* client -> backend plaintext */
    struct sd_buf *b2c; /* backend -> client plaintext */
    uint64_t bytes_in, bytes_out;
    int64_t start_ms, deadline_ms;
    int64_t handshake_ms; /* handshake done: the idle clock's start until a byte moves */
    int cfd, bfd;
    int err_no;
    uint32_t linger_bytes;
    uint8_t state;
    uint8_t c_rd, c_wr, b_rd, b_wr;   /* readiness, from epoll */
    uint8_t rd_want, wr_want, hs_want; /* what a blocked TLS op waits for */
    uint8_t c_eof;  /* client finished sending */
    uint8_t b_eof;  /* backend finished sending */
    uint8_t b_shut; /* client's EOF forwarded to backend (SHUT_WR) */
    uint8_t c_shut; /* backend's EOF forwarded to client (close_notify) */
    uint8_t closed; /* sockets closed; memory freed by sd_conn_reap() */
    uint8_t c_hup, b_hup; /* epoll saw the peer hang up on that side */
    uint8_t c2b_bulk, b2c_bulk; /* that direction filled a small buffer */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t peerlen;
};

static void sd_conn_free(struct sd_conn *c);

struct sd_conn *sd_conn_next(const struct sd_conn *c)
{
    return c->next;
}

struct sd_listener_rt *sd_conn_listener(const struct sd_conn *c)
{
    return c->l;
}

static struct sd_conn *sd_conn_of(struct sd_evsrc *ev, int backend_side)
{
    if (backend_side)
        return (struct sd_conn *)((char *)ev - offsetof(struct sd_conn, bev));
    return (struct sd_conn *)((char *)ev - offsetof(struct sd_conn, cev));
}

static int sd_conn_ready(const struct sd_conn *c, uint8_t want)
{
    return want == SD_WANT_READ ? c->c_rd : c->c_wr;
}

/* Records that a TLS operation blocked, and on what. */
static void sd_conn_blocked(struct sd_conn *c, enum sd_io io, uint8_t *want)
{
    if (io == SD_IO_WANT_READ) {
        c->c_rd = 0;
        *want = SD_WANT_READ;
    } else {
        c->c_wr = 0;
        *want = SD_WANT_WRITE;
    }
}

static void sd_conn_log(struct sd_conn *c, const char *result, const char *reason,
                        const char *detail)
{
    struct sd_logline l;
    char peer[64];

    sd_addr_format(&c->peer.sa, c->peerlen, peer, sizeof(peer));
    sd_log_begin(&l, strcmp(result, "ok") == 0 ? "info" : "warn", "conn");
    /* The verdict and the counters first: what the client controls (its
     * certificate's names) comes last and bounded, so it can never push
     * them out of a line that reached its cap. */
    sd_log_str(&l, "listener", c->conf->name);
    sd_log_str(&l, "peer", peer);
    sd_log_str(&l, "result", result);
    sd_log_str(&l, "reason", reason);
    sd_log_str(&l, "detail", detail);
    sd_log_u64(&l, "bytes_in", c->bytes_in);
    sd_log_u64(&l, "bytes_out", c->bytes_out);
    sd_log_i64(&l, "duration_ms", sd_now_ms() - c->start_ms);
    sd_tls_conn_log(c->tls, &l);
    sd_log_end(&l);
}

/* Ends a connection: logs one line and releases everything. */
static void sd_conn_finish(struct sd_conn *c, const char *result,
                           const char *reason, const char *detail)
{
    if (strcmp(result, "ok") != 0 && c->state == SD_CONN_PROXYING && !c->c_shut) {
        /* Best effort, non-blocking: tell the client we are closing, so it
         * sees a prompt, orderly close rather than waiting for a timeout. */
        (void)sd_tls_shutdown(c->tls);
    }
    sd_conn_log(c, result, reason, detail);
    sd_conn_free(c);
}

static void sd_conn_fail_errno(struct sd_conn *c, const char *reason, int err)
{
    sd_conn_finish(c, "error", reason, err != 0 ? strerror(err) : NULL);
}

/* Handshake refused: the alert is already queued on the socket. Log now,
 * then send our FIN and discard what the client still sends for a moment,
 * so that closing with unread input does not turn into a TCP reset that
 * could destroy the alert before the client reads it. */
static void sd_conn_refuse(struct sd_conn *c, const char *reason, const char *detail)
{
    sd_conn_log(c, "refused", reason, detail);
    c->state = SD_CONN_LINGER;
    c->deadline_ms = c->w->now_ms + SD_LINGER_MS;
    (void)shutdown(c->cfd, SHUT_WR);
}

/* A connection is admitted by the configuration in force when its
 * handshake completes, not by the one it was accepted under: a client must
 * not open TCP connections ahead, wait for a revocation or a rule removal,
 * and then finish its handshakes under the configuration that no longer
 * exists. If a reload happened meanwhile, the client is judged again by the
 * current generation. Returns 1 when it was refused. */
/* Would generation `now` admit c's client? NULL, or the reason it would
 * not (its listener gone: "listener_removed"). */
static const char *sd_conn_verdict(const struct sd_conn *c, struct sd_gen *now)
{
    int i = sd_gen_find_listener(now, &c->conf->listen_addr);

    return i < 0 ? "listener_removed" : sd_tls_conn_judge(c->tls, now->tls[i]);
}

static int sd_conn_rejudge(struct sd_conn *c)
{
    const char *reason;

    if (c->gen == c->w->gen)
        return 0;
    reason = sd_conn_verdict(c, c->w->gen);
    if (reason != NULL) {
        (void)sd_tls_shutdown(c->tls);
        sd_conn_refuse(c, reason, "handshake completed after a reload: the current "
                                  "configuration does not admit this client");
        return 1;
    }
    /* Admitted now too. It keeps the generation it started under: its TLS
     * state belongs to that generation's context. */
    return 0;
}

static void sd_conn_start_backend(struct sd_conn *c)
{
    struct epoll_event ev;

    c->bfd = sd_net_connect(&c->conf->target_addr);
    if (c->bfd < 0) {
        int e = errno;
        c->state = SD_CONN_PROXYING; /* handshake done: close with notify */
        /* Out of descriptors, the backend was never tried: say so rather
         * than blame it. The accept cap (worker.c) makes this rare. */
        sd_conn_fail_errno(c, e == EMFILE || e == ENFILE ? "fd_limit"
                                                          : "backend_connect_failed", e);
        return;
    }
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c->bev;
    if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, c->bfd, &ev) != 0) {
        c->state = SD_CONN_PROXYING;
        sd_conn_fail_errno(c, "backend_connect_failed", errno);
        return;
    }
    c->state = SD_CONN_CONNECTING;
    c->handshake_ms = c->w->now_ms;
    c->deadline_ms = c->w->now_ms + c->conf->connect_timeout_ms;
}

/* Queues the PROXY v2 header as the first bytes to the backend. Returns 0,
 * or -1 when the connection was closed (c is freed). */
static int sd_conn_proxy_header(struct sd_conn *c)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    long n;

    if (getsockname(c->cfd, (struct sockaddr *)&local, &len) != 0) {
        sd_conn_fail_errno(c, "proxy_header_failed", errno);
        return -1;
    }
    if (c->c2b == NULL && (c->c2b = sd_bufpool_get(&c->w->pool, 0)) == NULL) {
        sd_conn_finish(c, "error", "out_of_memory", NULL);
        return -1;
    }
    n = sd_tls_conn_pp2(c->tls, &c->peer.sa, (struct sockaddr *)&local,
                        c->c2b->data, c->c2b->cap);
    if (n < 0) {
        sd_conn_finish(c, "error", "proxy_header_failed",
                       "identity does not fit in a PROXY v2 header");
        return -1;
    }
    c->c2b->w = (uint32_t)n;
    return 0;
}

/* Moves bytes both ways until nothing more can be done now.
 * Returns 1 when the connection was closed (c is freed). */
static int sd_conn_pump(struct sd_conn *c, int *progress)
{
    struct sd_worker *w = c->w;
    enum sd_io io;
    size_t n;
    ssize_t r;

    /* client -> steeldoor (TLS read): records until the buffer is full or
     * the socket is dry, so that the backend gets them in one send */
    if (!c->c_eof && sd_conn_ready(c, c->rd_want)) {
        if (c->c2b == NULL && (c->c2b = sd_bufpool_get(&w->pool, c->c2b_bulk)) == NULL) {
            sd_conn_finish(c, "error", "out_of_memory", NULL);
            return 1;
        }
        while (sd_conn_ready(c, c->rd_want) && sd_buf_room(c->c2b) > 0) {
            io = sd_tls_read(c->tls, c->c2b->data + c->c2b->w, sd_buf_room(c->c2b), &n);
            if (io == SD_IO_OK) {
                c->c2b->w += (uint32_t)n;
                c->bytes_in += n;
                *progress = 1;
                if (c->c2b->w == c->c2b->cap && c->c2b->cap == SD_BUF_SMALL) {
                    c->c2b_bulk = 1;
                    c->c2b = sd_bufpool_grow(&w->pool, c->c2b);
                }
                /* Drained: the next EPOLLIN edge wakes us. Not once the peer
                 * has hung up: its EOF may already be queued, and it brings
                 * no further edge. Otherwise keep reading: records already
                 * in OpenSSL's read-ahead buffer cost no system call (a
                 * dry socket is not read again before its next edge), and
                 * a burst of small records then reaches the backend in one
                 * send instead of one send per record. Each turn takes at
                 * least one byte of room, so the buffer bounds the loop. */
                if (!c->c_hup && sd_tls_conn_read_dry(c->tls))
                    c->c_rd = 0;
            } else if (io == SD_IO_EOF) {
                c->c_eof = 1;
                *progress = 1;
                break;
            } else if (io == SD_IO_ERROR) {
                sd_conn_finish(c, "error", sd_tls_conn_reason(c->tls),
                               sd_tls_conn_detail(c->tls));
                return 1;
            } else {
                sd_conn_blocked(c, io, &c->rd_want);
                break;
            }
        }
    }
    /* steeldoor -> backend */
    if (sd_buf_len(c->c2b) > 0 && c->b_wr) {
        size_t want = sd_buf_len(c->c2b);
        r = send(c->bfd, c->c2b->data + c->c2b->r, want, MSG_NOSIGNAL);
        if (r > 0) {
            c->c2b->r += (uint32_t)r;
            *progress = 1;
            if ((size_t)r < want)
                c->b_wr = 0; /* socket buffer full: wait for EPOLLOUT */
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->b_wr = 0;
        } else if (r < 0 && errno != EINTR) {
            sd_conn_fail_errno(c, "backend_reset", errno);
            return 1;
        }
    }
    if (sd_buf_len(c->c2b) == 0) {
        sd_bufpool_put(&w->pool, c->c2b);
        c->c2b = NULL;
        if (c->c_eof && !c->b_shut) {
            (void)shutdown(c->bfd, SHUT_WR);
            c->b_shut = 1;
            *progress = 1;
        }
    }

    /* backend -> steeldoor */
    if (!c->b_eof && c->b_rd) {
        if (c->b2c == NULL && (c->b2c = sd_bufpool_get(&w->pool, c->b2c_bulk)) == NULL) {
            sd_conn_finish(c, "error", "out_of_memory", NULL);
            return 1;
        }
        if (sd_buf_room(c->b2c) > 0) {
            size_t room = sd_buf_room(c->b2c);
            r = recv(c->bfd, c->b2c->data + c->b2c->w, room, 0);
            if (r > 0) {
                c->b2c->w += (uint32_t)r;
                *progress = 1;
                if ((size_t)r < room && !c->b_hup)
                    c->b_rd = 0; /* drained (see the client side above) */
                if (c->b2c->w == c->b2c->cap && c->b2c->cap == SD_BUF_SMALL) {
                    c->b2c_bulk = 1;
                    c->b2c = sd_bufpool_grow(&w->pool, c->b2c);
                }
            } else if (r == 0) {
                c->b_eof = 1;
                *progress = 1;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->b_rd = 0;
            } else if (errno != EINTR) {
                sd_conn_fail_errno(c, "backend_reset", errno);
                return 1;
            }
        }
    }
    /* steeldoor -> client (TLS write) */
    if (sd_buf_len(c->b2c) > 0 && sd_conn_ready(c, c->wr_want)) {
        io = sd_tls_write(c->tls, c->b2c->data + c->b2c->r, sd_buf_len(c->b2c), &n);
        if (io == SD_IO_OK) {
            c->b2c->r += (uint32_t)n;
            c->bytes_out += n;
            *progress = 1;
        } else if (io == SD_IO_EOF || io == SD_IO_ERROR) {
            sd_conn_finish(c, "error", io == SD_IO_EOF ? "client_reset" : sd_tls_conn_reason(c->tls),
                           sd_tls_conn_detail(c->tls));
            return 1;
        } else {
            sd_conn_blocked(c, io, &c->wr_want);
        }
    }
    if (sd_buf_len(c->b2c) == 0) {
        sd_bufpool_put(&w->pool, c->b2c);
        c->b2c = NULL;
        if (c->b_eof && !c->c_shut && c->c_wr) {
            io = sd_tls_shutdown(c->tls);
            if (io == SD_IO_OK) {
                c->c_shut = 1;
                *progress = 1;
            } else if (io == SD_IO_ERROR || io == SD_IO_EOF) {
                sd_conn_finish(c, "error", sd_tls_conn_reason(c->tls), sd_tls_conn_detail(c->tls));
                return 1;
            } else {
                uint8_t ignored;
                sd_conn_blocked(c, io, &ignored);
            }
        }
    }
    if (c->b_shut && c->c_shut) {
        sd_conn_finish(c, "ok", NULL, NULL);
        return 1;
    }
    return 0;
}

static void sd_conn_run(struct sd_conn *c)
{
    int progress;
    enum sd_io io;

    do {
        progress = 0;
        switch (c->state) {
        case SD_CONN_HANDSHAKE:
            if (!sd_conn_ready(c, c->hs_want))
                return;
            io = sd_tls_handshake(c->tls);
            if (io == SD_IO_OK) {
                /* The client's first bytes usually come after its Finished:
                 * when the handshake read the socket dry, wait for their
                 * edge instead of reading EAGAIN first. */
                if (!c->c_hup && sd_tls_conn_read_dry(c->tls))
                    c->c_rd = 0;
                if (sd_conn_rejudge(c))
                    return; /* refused by a configuration newer than its start */
                sd_conn_start_backend(c);
                return; /* continues when the backend connect completes */
            }
            if (io == SD_IO_ERROR || io == SD_IO_EOF) {
                sd_conn_refuse(c, sd_tls_conn_reason(c->tls), sd_tls_conn_detail(c->tls));
                progress = 1; /* drain what is already readable */
                break;
            }
            sd_conn_blocked(c, io, &c->hs_want);
            return;
        case SD_CONN_CONNECTING: {
            int e;
            if (!c->b_wr)
                return;
            /* A failed connect always reports EPOLLERR/EPOLLHUP; without
             * them the connect succeeded and SO_ERROR need not be read. */
            e = c->b_hup ? sd_net_connect_result(c->bfd) : 0;
            if (e != 0) {
                c->state = SD_CONN_PROXYING;
                sd_conn_fail_errno(c, "backend_connect_failed", e);
                return;
            }
            c->state = SD_CONN_PROXYING;
            /* The connect deadline is over: from now on the idle timeout
             * applies, counted from the handshake until a byte moves (each
             * pump with progress pushes it on). Without this a quiet
             * connection (a pooled one, say) would be cut at the connect
             * timeout. */
            c->deadline_ms = c->handshake_ms + c->conf->idle_timeout_ms;
            if (c->conf->proxy_protocol && sd_conn_proxy_header(c) != 0)
                return;
            progress = 1;
            break;
        }
        case SD_CONN_PROXYING:
            if (sd_conn_pump(c, &progress))
                return;
            if (progress)
                c->deadline_ms = c->w->now_ms + c->conf->idle_timeout_ms;
            break;
        case SD_CONN_LINGER: {
            char sink[4096];
            ssize_t r;
            if (!c->c_rd)
                return;
            r = recv(c->cfd, sink, sizeof(sink), 0);
            if (r > 0) {
                c->linger_bytes += (uint32_t)r;
                if (c->linger_bytes > SD_LINGER_MAX_BYTES) {
                    sd_conn_free(c);
                    return;
                }
                progress = 1;
            } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                c->c_rd = 0;
            } else if (r == 0 || errno != EINTR) {
                sd_conn_free(c);
                return;
            }
            break;
        }
        }
    } while (progress);
}

void sd_conn_event(struct sd_evsrc *src, uint32_t events)
{
    int backend_side = src->kind == SD_EV_BACKEND;
    struct sd_conn *c = sd_conn_of(src, backend_side);

    if (c->closed)
        return; /* closed earlier in this batch of events */
    /* Errors and hang-ups are reported through the next read or write, so
     * they simply make both directions worth trying. */
    if (events & (EPOLLERR | EPOLLHUP)) {
        events |= EPOLLIN | EPOLLOUT;
    }
    if (backend_side) {
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            c->b_hup = 1;
        if (events & (EPOLLIN | EPOLLRDHUP))
            c->b_rd = 1;
        if (events & EPOLLOUT)
            c->b_wr = 1;
    } else {
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            c->c_hup = 1;
        if (events & (EPOLLIN | EPOLLRDHUP)) {
            c->c_rd = 1;
            if (c->tls != NULL)
                sd_tls_conn_readable(c->tls, c->c_hup);
        }
        if (events & EPOLLOUT)
            c->c_wr = 1;
    }
    sd_conn_run(c);
}

void sd_conn_accept(struct sd_worker *w, struct sd_listener_rt *l, int fd,
                    const struct sockaddr *peer, socklen_t peerlen)
{
    struct sd_conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev;

    if (c == NULL) {
        close(fd);
        return;
    }
    c->gen = sd_gen_ref(w->gen);
    c->conf = &c->gen->cfg->listeners[l->index];
    c->cev.kind = SD_EV_CLIENT;
    c->bev.kind = SD_EV_BACKEND;
    c->w = w;
    c->l = l;
    c->cfd = fd;
    c->bfd = -1;
    c->start_ms = w->now_ms;
    c->deadline_ms = w->now_ms + c->conf->handshake_timeout_ms;
    c->state = SD_CONN_HANDSHAKE;
    c->hs_want = SD_WANT_READ;
    c->rd_want = SD_WANT_READ;
    c->wr_want = SD_WANT_WRITE;
    if (peerlen > sizeof(c->peer))
        peerlen = sizeof(c->peer);
    memcpy(&c->peer, peer, peerlen);
    c->peerlen = peerlen;
    c->tls = sd_tls_conn_new(c->gen->tls[l->index], fd);
    if (c->tls == NULL) {
        close(fd);
        sd_gen_unref(c->gen);
        free(c);
        return;
    }
    /* TCP_NODELAY comes from the listening socket (see sd_net_listen). */
    /* Link first, so sd_conn_free() can always unlink. */
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c->cev;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        sd_conn_free(c);
        return;
    }
}

void sd_conn_check_deadline(struct sd_conn *c)
{
    if (c->w->now_ms < c->deadline_ms)
        return;
    switch (c->state) {
    case SD_CONN_HANDSHAKE:
        sd_conn_log(c, "refused", "handshake_timeout", NULL);
        sd_conn_free(c);
        break;
    case SD_CONN_CONNECTING:
        c->state = SD_CONN_PROXYING;
        sd_conn_finish(c, "error", "backend_connect_timeout", NULL);
        break;
    case SD_CONN_PROXYING:
        sd_conn_finish(c, "error", "idle_timeout", NULL);
        break;
    case SD_CONN_LINGER:
        sd_conn_free(c);
        break;
    }
}

void sd_conn_judge(struct sd_conn *c, struct sd_gen *now)
{
    const char *reason;

    /* A connection whose listener is gone is closed by the worker itself
     * (listener_removed), with the listener. */
    if (c->closed || c->gen == now ||
        (c->state != SD_CONN_CONNECTING && c->state != SD_CONN_PROXYING) ||
        sd_gen_find_listener(now, &c->conf->listen_addr) < 0)
        return;
    reason = sd_conn_verdict(c, now);
    if (reason == NULL)
        return;
    if (c->state == SD_CONN_CONNECTING)
        c->state = SD_CONN_PROXYING;
    sd_conn_finish(c, "error", reason,
                   "open connection closed after reload: client no longer admitted");
}

void sd_conn_abort(struct sd_conn *c, const char *reason)
{
    if (c->state == SD_CONN_LINGER) {
        sd_conn_free(c);
        return;
    }
    if (c->state == SD_CONN_HANDSHAKE) {
        sd_conn_log(c, "refused", reason, NULL);
        sd_conn_free(c);
        return;
    }
    if (c->state == SD_CONN_CONNECTING)
        c->state = SD_CONN_PROXYING;
    sd_conn_finish(c, "error", reason, NULL);
}

/* Closes the connection's sockets and releases its resources at once; the
 * struct itself is freed by sd_conn_reap() after the current batch of epoll
 * events, since a later event of the same batch may still point at it. */
static void sd_conn_free(struct sd_conn *c)
{
    struct sd_worker *w = c->w;

    /* close() also removes the fds from epoll (they are never dup'ed). */
    if (c->bfd >= 0)
        close(c->bfd);
    close(c->cfd);
    sd_tls_conn_free(c->tls);
    sd_bufpool_put(&w->pool, c->c2b);
    sd_bufpool_put(&w->pool, c->b2c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->nconns--;
    if (w->accept_retry == 0) {
        size_t i;
        for (i = 0; i < w->nls; i++)
            if (w->ls[i].paused)
                w->accept_retry = 1;
    }
    c->closed = 1;
    c->tls = NULL;
    sd_gen_unref(c->gen);
    c->gen = NULL;
    c->c2b = c->b2c = NULL;
    c->prev = NULL;
    /* c->next is left intact so that a walk of the list can go on. */
    c->dead_next = w->dead;
    w->dead = c;
}

void sd_conn_reap(struct sd_worker *w)
{
    while (w->dead != NULL) {
        struct sd_conn *c = w->dead;
        w->dead = c->dead_next;
        free(c);
    }
}
