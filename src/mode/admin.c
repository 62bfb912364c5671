/*
 * mode/admin.c - the admin listener: steeldoor answers /healthz, /metrics,
 * /readyz and /status itself (the pages: admin_render.c, sd/admin.h).
 *
 * One request per connection, then the connection ends (Connection:
 * close): a scrape is one request every few seconds, and Prometheus,
 * curl and load balancers' health checks all take it. So the engine is a
 * line, not a loop:
 *
 *   HEAD    read the request head into a fixed 8 KiB buffer and parse it
 *           with the strict request parser (sd/http_req.h); a head that
 *           does not fit is a 431, a malformed one gets the parser's own
 *           status. Only GET and HEAD (else 405 with Allow), no body (a
 *           Content-Length above 0 or any Transfer-Encoding is a 400); the
 *           query string is ignored. The page is rendered whole, into an
 *           output capped at 8 MiB (a render that would pass it is a 500).
 *   WRITE   the response (head and body in one buffer) is written as the
 *           socket takes it.
 *   LINGER  our close_notify or FIN is sent; what the client still sends
 *           (the rest of a refused body, its own close_notify) is read and
 *           dropped until its end, 64 KiB or 1 s, so closing with unread
 *           input never turns into a TCP reset that could destroy the
 *           answer before the client reads it.
 *
 * Deadlines (sd_conn_set_deadline): the head must be complete within the
 * smaller of the listener's handshake and idle timeouts from the start
 * (trickling bytes does not push it): a client that sends nothing is
 * closed then (idle_timeout), one that sent part of a head gets a 408. A
 * client that does not read the response is closed at the idle timeout
 * after its last progress.
 *
 * The admin listener never has a backend (lazy_backend, and none is ever
 * opened). A plaintext admin listener (loopback or a unix socket only, as
 * the configuration checks) has a TCP stream; with cert, key and cacert
 * it is a TLS server stream that verifies the client like any listener.
 */
#include "sd/mode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/admin.h"
#include "sd/config.h"
#include "sd/gen.h"
#include "sd/http_req.h"
#include "sd/log.h"
#include "sd/net.h"
#include "sd/stats.h"
#include "sd/tls.h"

#define SD_ADMIN_HEAD_MAX 8192u      /* a request head; larger: 431 */
#define SD_ADMIN_HEAD_ROOM 512u      /* our response head, in front of the body */
#define SD_ADMIN_LINGER_MS 1000      /* after the response, for the client's end */
#define SD_ADMIN_LINGER_BYTES 65536u /* ... and at most this much of its input */
#define SD_ADMIN_LOG_PATH_MAX 256    /* bytes of a request target in the log */

enum sd_admin_state { SD_ADM_HEAD, SD_ADM_WRITE, SD_ADM_LINGER };

struct sd_admin {
    struct sd_conn *c;
    uint8_t state;       /* enum sd_admin_state */
    uint8_t client_eof;  /* the client finished sending (or failed while we linger) */
    uint8_t draining;    /* the worker drains: end at the next chance */
    uint8_t linger_over; /* the linger's deadline passed */
    size_t inlen;        /* bytes of in[] */
    uint64_t discarded;  /* bytes dropped while lingering */
    /* [SD_ADMIN_HEAD_ROOM) reserved, then the body: the head is written
     * just in front of the body, so the response is one buffer. */
    struct sd_admin_out out;
    size_t resp, resplen, sent; /* the response: out.data + resp, resplen bytes */
    char in[SD_ADMIN_HEAD_MAX];
};

static const char *sd_admin_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Empties the body: the reserved head room only. Returns 0, or -1 when
 * out of memory. */
static int sd_admin_body_reset(struct sd_admin *a)
{
    static const char room[SD_ADMIN_HEAD_ROOM] = { 0 };

    sd_admin_out_fini(&a->out);
    sd_admin_out_init(&a->out, SD_ADMIN_OUT_MAX + SD_ADMIN_HEAD_ROOM);
    return sd_admin_out_put(&a->out, room, sizeof(room));
}

/* One line per request: who asked what, and the answer. method and path
 * are what the client sent (bounded, last). */
static void sd_admin_log(struct sd_admin *a, int status, const char *why, struct sd_name method,
                         struct sd_name path)
{
    struct sd_logline l;
    socklen_t plen;
    const struct sockaddr *pa = sd_conn_peer_addr(a->c, &plen);
    char peer[64];

    sd_addr_format(pa, plen, peer, sizeof(peer));
    sd_log_begin(&l, status >= 400 ? "warn" : "info", "admin");
    sd_log_str(&l, "listener", sd_conn_conf(a->c)->name);
    sd_log_str(&l, "peer", peer);
    sd_log_u64(&l, "status", (uint64_t)status);
    sd_log_str(&l, "reason", why);
    sd_log_u64(&l, "bytes_out", a->resplen);
    if (method.len > 0) {
        sd_log_strn_bounded(&l, "method", method.s, method.len, 32);
        sd_log_strn_bounded(&l, "path", path.s, path.len, SD_ADMIN_LOG_PATH_MAX);
    }
    sd_log_end(&l);
}

/* Queues the response: its head goes in front of the body already in
 * a->out (nothing of the body when head_only: a HEAD request). extra is
 * one more header line with its CRLF, or "". From now on the connection
 * only writes, then ends. */
static void sd_admin_respond(struct sd_admin *a, int status, const char *type, int head_only,
                             const char *extra)
{
    const struct sd_listener_conf *lc = sd_conn_conf(a->c);
    size_t bodylen = a->out.len - SD_ADMIN_HEAD_ROOM;
    char head[SD_ADMIN_HEAD_ROOM];
    int n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                 "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                 "Connection: close\r\n%s\r\n",
                 status, sd_admin_status_text(status), type, bodylen, extra);
    /* Cannot be cut: every part is ours and short. */
    if (n < 0 || (size_t)n >= sizeof(head))
        n = 0;
    memcpy(a->out.data + SD_ADMIN_HEAD_ROOM - (size_t)n, head, (size_t)n);
    a->resp = SD_ADMIN_HEAD_ROOM - (size_t)n;
    a->resplen = (size_t)n + (head_only ? 0 : bodylen);
    a->sent = 0;
    a->state = SD_ADM_WRITE;
    sd_conn_set_deadline(a->c, sd_conn_now(a->c) + lc->idle_timeout_ms);
}

static int sd_admin_name_is(struct sd_name n, const char *s)
{
    return n.len == strlen(s) && memcmp(n.s, s, n.len) == 0;
}

/* steeldoor's refusal of a request: a short text body. Returns 0, or -1
 * when even that cannot be made (out of memory). */
static int sd_admin_refuse(struct sd_admin *a, int status, const char *why, struct sd_name method,
                           struct sd_name path)
{
    int is405 = status == 405;

    if (sd_admin_body_reset(a) != 0 ||
        sd_admin_out_printf(&a->out, "%d %s\n", status, sd_admin_status_text(status)) != 0)
        return -1;
    /* A HEAD is answered without a body, errors included (RFC 9110 9.3.2):
     * the client would read it as the start of the next response. A
     * refusal before the head parsed has no method, so it has a body. */
    sd_admin_respond(a, status, "text/plain; charset=utf-8", sd_admin_name_is(method, "HEAD"),
                     is405 ? "Allow: GET, HEAD\r\n" : "");
    sd_admin_log(a, status, why, method, path);
    return 0;
}

/* The path of a request target, without its query: origin form as it is,
 * absolute form from the first '/' after the authority ("/" if none). */
static struct sd_name sd_admin_path(const struct sd_http_req *req)
{
    struct sd_name p = req->target;
    size_t i;

    if (req->form == SD_HTTP_TARGET_ABSOLUTE) {
        for (i = 0; i + 2 < p.len && memcmp(p.s + i, "://", 3) != 0; i++)
            ;
        for (i = i + 3 <= p.len ? i + 3 : p.len; i < p.len && p.s[i] != '/' && p.s[i] != '?';
             i++)
            ;
        p.s += i;
        p.len -= i;
        if (p.len == 0 || p.s[0] == '?')
            return (struct sd_name){ "/", 1 };
    }
    for (i = 0; i < p.len && p.s[i] != '?'; i++)
        ;
    p.len = i;
    return p;
}

/* Answers a parsed request. Returns 0, or -1 when out of memory. */
static int sd_admin_route(struct sd_admin *a, const struct sd_http_req *req)
{
    struct sd_gen *g = sd_conn_current_gen(a->c);
    struct sd_name path = sd_admin_path(req);
    int head_only = sd_admin_name_is(req->method, "HEAD"), status = 200, rc = 0, ready = 0;
    const char *type = "application/json";

    if (!head_only && !sd_admin_name_is(req->method, "GET"))
        return sd_admin_refuse(a, 405, "admin_method_not_allowed", req->method, path);
    /* A request with a body: nothing here takes one, and where it would
     * end is no reason to wait for it. */
    if (req->framing == SD_HTTP_BODY_CHUNKED ||
        (req->framing == SD_HTTP_BODY_LENGTH && req->content_length > 0))
        return sd_admin_refuse(a, 400, "admin_body_refused", req->method, path);
    if (sd_admin_body_reset(a) != 0)
        return -1;
    if (sd_admin_name_is(path, "/healthz")) {
        /* The process answers: nothing else is asked. */
        type = "text/plain; charset=utf-8";
        rc = sd_admin_out_puts(&a->out, "ok\n");
    } else if (sd_admin_name_is(path, "/metrics")) {
        type = "text/plain; version=0.0.4; charset=utf-8";
        rc = sd_admin_metrics(sd_stats_get(), g, &a->out);
    } else if (sd_admin_name_is(path, "/readyz")) {
        rc = sd_admin_readyz(sd_stats_get(), g, sd_stats_wall_ms(), &a->out, &ready);
        status = ready ? 200 : 503;
    } else if (sd_admin_name_is(path, "/status")) {
        rc = sd_admin_status(sd_stats_get(), g, sd_stats_wall_ms(), &a->out);
    } else {
        return sd_admin_refuse(a, 404, "admin_not_found", req->method, path);
    }
    if (rc != 0)
        /* Past the 8 MiB cap, or out of memory: no partial page. */
        return sd_admin_refuse(a, 500, "admin_render_failed", req->method, path);
    sd_admin_respond(a, status, type, head_only, "");
    sd_admin_log(a, status, NULL, req->method, path);
    return 0;
}

/* Parses what came so far; answers once the head is complete or refused.
 * Returns 0, or -1 when out of memory. */
static int sd_admin_parse(struct sd_admin *a)
{
    static const struct sd_name none = { NULL, 0 };
    struct sd_http_field fields[SD_HTTP_MAX_FIELDS];
    struct sd_http_req req;
    long r = sd_http_req_parse(a->in, a->inlen, &req, fields, SD_HTTP_MAX_FIELDS);

    if (r == SD_HTTP_INCOMPLETE) {
        if (a->inlen == sizeof(a->in))
            return sd_admin_refuse(a, 431, "admin_head_too_large", none, none);
        return 0;
    }
    if (r == SD_HTTP_ERROR)
        return sd_admin_refuse(a, sd_http_err_status(req.err), sd_http_err_word(req.err), none,
                               none);
    return sd_admin_route(a, &req);
}

/* Reads the request head while the socket has bytes, answering as soon as
 * it is complete. Returns 0, or -1 with *reason (a failed read, or out of
 * memory). */
static int sd_admin_read_head(struct sd_admin *a, struct sd_pump_side *side, uint64_t *count,
                              int *progress, enum sd_reason *reason, const char **detail)
{
    size_t n;
    enum sd_io io;

    while (a->state == SD_ADM_HEAD && !a->client_eof &&
           sd_pump_side_ready(side, side->rd_want)) {
        io = sd_stream_read(side->s, a->in + a->inlen, sizeof(a->in) - a->inlen, &n);
        if (io == SD_IO_OK) {
            a->inlen += n;
            *count += n;
            *progress = 1;
            if (!side->hup && sd_stream_read_dry(side->s))
                side->rd = 0;
            if (sd_admin_parse(a) != 0) {
                *reason = SD_R_OUT_OF_MEMORY;
                *detail = NULL;
                return -1;
            }
        } else if (io == SD_IO_EOF) {
            a->client_eof = 1;
            *progress = 1;
        } else if (io == SD_IO_ERROR) {
            *reason = side->s->reason;
            *detail = side->s->detail;
            return -1;
        } else {
            sd_pump_side_blocked(side, io, &side->rd_want);
        }
    }
    return 0;
}

/* Writes the response as far as the socket takes it. Returns 0, or -1
 * with *reason. */
static int sd_admin_write(struct sd_admin *a, struct sd_pump_side *side, uint64_t *count,
                          int *progress, enum sd_reason *reason, const char **detail)
{
    size_t n;
    enum sd_io io;

    while (a->sent < a->resplen && sd_pump_side_ready(side, side->wr_want)) {
        /* After a WANT_*, the same bytes again (and more): what TLS asks. */
        io = sd_stream_write(side->s, a->out.data + a->resp + a->sent, a->resplen - a->sent, &n);
        if (io == SD_IO_OK) {
            a->sent += n;
            *count += n;
            *progress = 1;
            if (side->s->write_full)
                side->wr = 0;
            sd_conn_set_deadline(a->c, sd_conn_now(a->c) + sd_conn_conf(a->c)->idle_timeout_ms);
        } else if (io == SD_IO_EOF || io == SD_IO_ERROR) {
            *reason = io == SD_IO_EOF ? SD_R_CLIENT_RESET : side->s->reason;
            *detail = side->s->detail;
            return -1;
        } else {
            sd_pump_side_blocked(side, io, &side->wr_want);
        }
    }
    return 0;
}

/* Reads and drops what the client still sends, until its end or the
 * linger's bounds. Returns 1 when the connection may end now. */
static int sd_admin_linger(struct sd_admin *a, struct sd_pump_side *side, uint64_t *count,
                           int *progress)
{
    size_t n;
    enum sd_io io;

    while (!a->client_eof && a->discarded < SD_ADMIN_LINGER_BYTES &&
           sd_pump_side_ready(side, side->rd_want)) {
        io = sd_stream_read(side->s, a->in, sizeof(a->in), &n);
        if (io == SD_IO_OK) {
            a->discarded += n;
            *count += n;
            *progress = 1;
            if (!side->hup && sd_stream_read_dry(side->s))
                side->rd = 0;
        } else if (io == SD_IO_EOF || io == SD_IO_ERROR) {
            /* Its end, or a reset: the answer is out either way. */
            a->client_eof = 1;
        } else {
            sd_pump_side_blocked(side, io, &side->rd_want);
        }
    }
    return a->client_eof || a->discarded >= SD_ADMIN_LINGER_BYTES || a->linger_over ||
           a->draining;
}

static enum sd_mode_run sd_admin_run(struct sd_conn *c, int *progress, enum sd_reason *reason,
                                     const char **detail)
{
    struct sd_admin *a = sd_conn_mode_state(c);
    struct sd_pump_side *side = sd_conn_side(c, SD_SIDE_CLIENT);
    enum sd_mode_run ret = SD_MODE_GO;
    uint64_t in = 0, out = 0;

    if (a->state == SD_ADM_HEAD) {
        if (sd_admin_read_head(a, side, &in, progress, reason, detail) != 0) {
            ret = SD_MODE_FAIL;
            goto out;
        }
        /* The client left (a partial head is dropped), or the worker
         * drains and no request has begun. */
        if (a->state == SD_ADM_HEAD && (a->client_eof || (a->draining && a->inlen == 0))) {
            ret = SD_MODE_DONE;
            goto out;
        }
    }
    if (a->state == SD_ADM_WRITE) {
        if (sd_admin_write(a, side, &out, progress, reason, detail) != 0) {
            ret = SD_MODE_FAIL;
            goto out;
        }
        if (a->sent == a->resplen) {
            /* Our end (close_notify, or FIN) right after the response:
             * Connection: close said so. */
            (void)sd_stream_shutdown(side->s);
            a->state = SD_ADM_LINGER;
            sd_conn_set_deadline(c, sd_conn_now(c) + SD_ADMIN_LINGER_MS);
            *progress = 1;
        }
    }
    if (a->state == SD_ADM_LINGER && sd_admin_linger(a, side, &in, progress))
        ret = SD_MODE_DONE;
out:
    sd_conn_count(c, in, out);
    return ret;
}

/* The deadline passed: see the top of the file. */
static int sd_admin_timeout(struct sd_conn *c)
{
    static const struct sd_name none = { NULL, 0 };
    struct sd_admin *a = sd_conn_mode_state(c);

    if (a == NULL)
        return 0;
    switch (a->state) {
    case SD_ADM_HEAD:
        /* Nothing sent: closed as idle. Part of a head: told why. */
        if (a->inlen == 0)
            return 0;
        return sd_admin_refuse(a, 408, "admin_request_timeout", none, none) == 0;
    case SD_ADM_LINGER:
        a->linger_over = 1;
        return 1; /* the next run ends it, "ok": the answer was delivered */
    default:
        return 0; /* a client that does not read: idle_timeout */
    }
}

static enum sd_reason sd_admin_start(struct sd_conn *c, const char **detail)
{
    const struct sd_listener_conf *lc = sd_conn_conf(c);
    struct sd_admin *a = calloc(1, sizeof(*a));
    uint32_t limit;

    if (a == NULL) {
        *detail = NULL;
        return SD_R_OUT_OF_MEMORY;
    }
    a->c = c;
    a->state = SD_ADM_HEAD;
    sd_admin_out_init(&a->out, SD_ADMIN_OUT_MAX + SD_ADMIN_HEAD_ROOM);
    sd_conn_set_mode_state(c, a);
    /* The whole head within this, from now: trickling does not push it. */
    limit = lc->handshake_timeout_ms < lc->idle_timeout_ms ? lc->handshake_timeout_ms
                                                            : lc->idle_timeout_ms;
    sd_conn_set_deadline(c, sd_conn_now(c) + limit);
    return SD_R_NONE;
}

static void sd_admin_fini(struct sd_conn *c)
{
    struct sd_admin *a = sd_conn_mode_state(c);

    if (a == NULL)
        return;
    sd_admin_out_fini(&a->out);
    free(a);
    sd_conn_set_mode_state(c, NULL);
}

static void sd_admin_drain(struct sd_conn *c)
{
    struct sd_admin *a = sd_conn_mode_state(c);

    /* A request under way is answered first; then the end, as always. */
    if (a != NULL)
        a->draining = 1;
}

static struct sd_stream *sd_admin_stream(struct sd_gen *gen, int index, enum sd_side side,
                                         int fd)
{
    if (side != SD_SIDE_CLIENT)
        return NULL; /* no backend, ever */
    if (gen->tls[index] != NULL)
        return sd_tls_stream_new(gen->tls[index], fd, SD_SIDE_CLIENT);
    return sd_stream_tcp_new(fd, SD_SIDE_CLIENT);
}

const struct sd_mode_ops sd_mode_admin = {
    .name = "admin",
    .verified = SD_SIDE_CLIENT,
    .stream = sd_admin_stream,
    .start = sd_admin_start,
    .lazy_backend = 1,
    .run = sd_admin_run,
    .timeout = sd_admin_timeout,
    .fini = sd_admin_fini,
    .drain = sd_admin_drain,
};
