/*
 * mode/http.c - HTTP mode: mutual TLS from the client, HTTP/1.1 to the
 * backend, the verified identity added to every request as headers that no
 * client can forge.
 *
 * One request at a time per client connection: a request head is parsed
 * (sd/http_req.h, strict), checked (Host against SNI, no CONNECT),
 * rewritten (every client copy of a reserved header removed, hop-by-hop
 * fields dropped, a chunked body re-framed, the identity headers added)
 * and sent to the backend with its body; the response head is parsed
 * (sd/http_resp.h), its hop-by-hop fields replaced by steeldoor's own
 * Connection field, and its body relayed by its framing. Only once the
 * response is complete is the next pipelined request parsed, so responses
 * go back in order and a backend never sees two requests of one client at
 * once. A request steeldoor refuses gets its own small JSON response and
 * the connection closes: nothing after a refused head is ever forwarded,
 * since where it ends is exactly what is in doubt.
 *
 * The backend connection is opened when the first request is accepted (an
 * unauthenticated or refused request never reaches the backend), stays
 * with the client connection while both keep alive, and goes back to the
 * worker's pool (sd/http_pool.h) when the client leaves, unless a PROXY v2
 * header made it this client's. A response cut short by the backend ends
 * the client connection: the client never gets a response spliced from
 * two. A 101 to an Upgrade request hands both sides to the plain byte
 * pumps (a WebSocket tunnel).
 *
 * Buffers (sd/buf.h, the worker's pool): cin holds what the client sent and
 * is not consumed yet, bout what goes to the backend, bin what the backend
 * sent, cout what goes to the client. Each is bounded; a full one stops the
 * reading that fills it (backpressure). An idle keep-alive connection holds
 * none.
 */
#include "sd/mode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sd/auth.h"
#include "sd/buf.h"
#include "sd/config.h"
#include "sd/gen.h"
#include "sd/http_ident.h"
#include "sd/http_pool.h"
#include "sd/http_req.h"
#include "sd/http_resp.h"
#include "sd/log.h"
#include "sd/net.h"
#include "sd/peer.h"
#include "sd/proxy_proto.h"
#include "sd/stats.h"
#include "sd/tls.h"

#define SD_HTTP_MAX_CERTS 8          /* leaf and intermediates handed on */
#define SD_HTTP_CERT_BYTES 32768u    /* their DER, together */
#define SD_HTTP_CONN_TOKENS 32       /* Connection options honoured per request */
#define SD_HTTP_LOG_PATH_MAX 512     /* bytes of a request target in the log */
#define SD_HTTP_CLOSE_GRACE_MS 2000  /* to deliver our own answer before closing */
#define SD_HTTP_REQUEST_ID_LEN 24

enum sd_http_qstate {
    SD_HQ_HEAD, /* waiting for (or parsing) the next request head */
    SD_HQ_BODY, /* the head went to bout; its body follows */
    SD_HQ_DONE, /* the whole request is in bout: waiting for the response */
};

enum sd_http_sstate {
    SD_HS_NONE, /* no request outstanding */
    SD_HS_HEAD, /* waiting for the response head */
    SD_HS_BODY, /* relaying its body */
    SD_HS_DONE, /* complete */
};

struct sd_http {
    struct sd_conn *c;
    struct sd_buf *cin, *bout, *bin, *cout;
    uint8_t qstate, sstate;
    uint8_t client_eof;    /* the client finished sending */
    uint8_t backend_eof;   /* the attached backend finished sending */
    uint8_t closing;       /* no more requests: end once cout is written */
    uint8_t client_keep;   /* the current exchange leaves the client connection open */
    uint8_t backend_keep;  /* ... and the backend connection reusable */
    uint8_t minor;         /* the request's HTTP/1.<minor> */
    uint8_t head_method;   /* a HEAD request: no response body */
    uint8_t upgrade;       /* the request asks for an upgrade */
    uint8_t tunnel;        /* a 101 is queued: hand over once cout is written */
    uint8_t pooled;        /* the attached backend came from the pool */
    uint8_t retryable;     /* may be sent again on a fresh connection */
    uint8_t resp_byte;     /* the backend sent a byte for this request */
    uint8_t resp_sent;     /* response bytes were queued for the client */
    uint8_t dechunk;       /* relaying a chunked response to an HTTP/1.0 client */
    uint8_t backend_ready; /* the attached backend's connect completed */
    uint8_t ident_built;
    uint8_t own;           /* the current answer is steeldoor's own */
    uint8_t draining;      /* the worker drains: no request after this one */
    enum sd_http_framing qframing;
    uint64_t qleft;
    struct sd_http_chunked qchunk;
    enum sd_http_resp_framing sframing;
    uint64_t sleft;
    struct sd_http_chunked schunk;
    uint32_t retry_len;    /* bytes of bout to send again on a retry */
    /* per request, for its log line */
    char id[SD_HTTP_REQUEST_ID_LEN + 1];
    char method[24];
    char path[SD_HTTP_LOG_PATH_MAX];
    size_t pathlen;
    uint8_t path_cut;
    int status;
    const char *why;       /* the log word of a refusal, or NULL */
    uint64_t qbytes;       /* request body bytes forwarded */
    uint64_t sbytes;       /* response bytes queued for the client */
    int64_t start_ms;
    int64_t head_ms;       /* when the first byte of the awaited head came */
    int64_t kept_ms;       /* when the attached backend finished its last exchange */
    uint64_t nrequests;
    char peer[64];         /* the client's address as the log shows it */
    /* the identity headers, built at the first request (the same for every
     * request of the connection) */
    char *ident;
    size_t identlen;
    /* the second factor (sd/auth.h): the last credential verified on this
     * connection, and what this request passed with (for its log line) */
    struct sd_auth_cache auth;
    uint8_t auth_kind;         /* enum sd_auth_kind of this request */
    char auth_who[SD_AUTH_WHO_MAX + 1];
};

static struct sd_http_pool *sd_http_pool_of_worker;

/* ------------------------------------------------------------- small bits */

static const struct sd_listener_conf *sd_http_conf(const struct sd_http *h)
{
    return sd_conn_conf(h->c);
}

static struct sd_http_pool *sd_http_pool(struct sd_conn *c)
{
    if (sd_http_pool_of_worker == NULL)
        sd_http_pool_of_worker = sd_http_pool_new(sd_conn_loop(c));
    return sd_http_pool_of_worker;
}

/* A request id: 64 random bits drawn once per worker, then a counter, so
 * ids never repeat within a worker and collide across workers only by
 * chance (2^-64). */
static void sd_http_new_id(char out[SD_HTTP_REQUEST_ID_LEN + 1])
{
    static uint64_t base;
    static uint32_t seq;
    static pid_t owner;

    if (owner != sd_log_pid()) {
        owner = sd_log_pid();
        if (getrandom(&base, sizeof(base), 0) != (ssize_t)sizeof(base))
            base = (uint64_t)owner * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)sd_now_ms();
        seq = 0;
    }
    static const char hex[] = "0123456789abcdef";
    int i;

    seq++;
    for (i = 0; i < 16; i++)
        out[i] = hex[(base >> (60 - 4 * i)) & 0xf];
    for (i = 0; i < 8; i++)
        out[16 + i] = hex[(seq >> (28 - 4 * i)) & 0xf];
    out[SD_HTTP_REQUEST_ID_LEN] = '\0';
}

static const char *sd_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Appends n bytes to b (the caller made sure they fit). */
static void sd_http_put(struct sd_buf *b, const void *p, size_t n)
{
    memcpy(b->data + b->w, p, n);
    b->w += (uint32_t)n;
}

static void sd_http_puts(struct sd_buf *b, const char *s)
{
    sd_http_put(b, s, strlen(s));
}

static void sd_http_put_name(struct sd_buf *b, struct sd_name n)
{
    sd_http_put(b, n.s, n.len);
}

/* The buffer in *slot, taken from the pool if there is none; with room for
 * at least `need` bytes (a large one if a small one cannot hold them).
 * NULL when out of memory or when even a large one cannot. */
static struct sd_buf *sd_http_buf(struct sd_http *h, struct sd_buf **slot, size_t need)
{
    struct sd_bufpool *pool = sd_conn_bufpool(h->c);

    if (*slot == NULL)
        *slot = sd_bufpool_get(pool, need > SD_BUF_SMALL);
    if (*slot == NULL)
        return NULL;
    if (sd_buf_room(*slot) < need && (*slot)->cap == SD_BUF_SMALL)
        *slot = sd_bufpool_grow(pool, *slot);
    if (sd_buf_room(*slot) < need && (*slot)->r > 0) {
        /* Room at the front, from bytes already sent. */
        struct sd_buf *b = *slot;
        memmove(b->data, b->data + b->r, b->w - b->r);
        b->w -= b->r;
        b->r = 0;
    }
    if (sd_buf_room(*slot) < need)
        return NULL;
    return *slot;
}

/* Gives an empty buffer back: an idle connection holds none. */
static void sd_http_buf_idle(struct sd_http *h, struct sd_buf **slot)
{
    if (*slot != NULL && sd_buf_len(*slot) == 0) {
        sd_bufpool_put(sd_conn_bufpool(h->c), *slot);
        *slot = NULL;
    }
}

/* ------------------------------------------------------------- the logs */

static void sd_http_log_request(struct sd_http *h)
{
    const struct sd_peer *p = sd_stream_peer(sd_conn_stream(h->c, SD_SIDE_CLIENT));
    const struct sd_name *who = p != NULL ? sd_peer_identity(p) : NULL;
    struct sd_stats_lst *st = sd_conn_stats(h->c);
    struct sd_logline l;

    if (st != NULL && h->status >= SD_STATS_HTTP_MIN &&
        h->status < SD_STATS_HTTP_MIN + SD_STATS_HTTP_N)
        sd_stats_add(&st->http[h->status - SD_STATS_HTTP_MIN], 1);
    sd_log_begin(&l, h->own && h->status >= 400 ? "warn" : "info", "http");
    sd_log_str(&l, "listener", sd_http_conf(h)->name);
    sd_log_str(&l, "peer", h->peer);
    sd_log_str(&l, "request_id", h->id);
    sd_log_u64(&l, "status", (uint64_t)h->status);
    sd_log_str(&l, "reason", h->why);
    sd_log_u64(&l, "bytes_in", h->qbytes);
    sd_log_u64(&l, "bytes_out", h->sbytes);
    sd_log_i64(&l, "duration_ms", sd_conn_now(h->c) - h->start_ms);
    if (p != NULL && p->rule_text != NULL)
        sd_log_str(&l, "rule", p->rule_text);
    if (who != NULL)
        sd_log_strn_bounded(&l, "identity", who->s, who->len, 512);
    if (h->auth_kind != SD_AUTH_NONE) {
        sd_log_str(&l, "auth", h->auth_kind == SD_AUTH_KEY ? "api-key" : "token");
        if (h->auth_who[0] != '\0')
            sd_log_str(&l, h->auth_kind == SD_AUTH_KEY ? "key_id" : "token_sub", h->auth_who);
    }
    /* What the client wrote, last and bounded. */
    if (h->method[0] != '\0') {
        sd_log_str_bounded(&l, "method", h->method, 32);
        sd_log_strn_bounded(&l, "path", h->path, h->pathlen, SD_HTTP_LOG_PATH_MAX);
    }
    if (h->path_cut)
        sd_log_bool(&l, "path_truncated", 1);
    sd_log_end(&l);
}

/* One line per request that carried reserved headers: each is named as the
 * client spelled it (bounded). */
static void sd_http_log_spoofed(struct sd_http *h, const struct sd_http_field *f, size_t nf,
                                const uint8_t *spoofed, size_t count)
{
    struct sd_logline l;
    size_t i;

    sd_log_begin(&l, "warn", "spoofed_header");
    sd_log_str(&l, "listener", sd_http_conf(h)->name);
    sd_log_str(&l, "peer", h->peer);
    sd_log_str(&l, "request_id", h->id);
    sd_log_u64(&l, "count", count);
    sd_log_array_begin_bounded(&l, "headers", 1024);
    for (i = 0; i < nf; i++)
        if (spoofed[i])
            sd_log_array_strn_bounded(&l, f[i].name.s, f[i].name.len, 64);
    sd_log_array_end(&l);
    sd_log_end(&l);
}

/* ------------------------------------------------ steeldoor's own answers */

/* Queues steeldoor's own response (a small JSON body with the request id)
 * and ends the connection once it is written: after a refused request,
 * where the next one would begin is what is in doubt. why is the log word. */
static void sd_http_answer_ch(struct sd_http *h, int status, const char *why,
                              const char *challenge)
{
    char body[256], head[768];
    struct sd_buf *b;
    int bn, hn;

    if (h->id[0] == '\0')
        sd_http_new_id(h->id);
    bn = snprintf(body, sizeof(body),
                  "{\"status\":%d,\"error\":\"%s\",\"reason\":\"%s\",\"request_id\":\"%s\"}\n",
                  status, sd_http_status_text(status), why, h->id);
    hn = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n"
                  "%s%s%s" SD_HTTP_REQUEST_ID_HEADER ": %s\r\n\r\n",
                  status, sd_http_status_text(status), bn,
                  challenge != NULL ? "WWW-Authenticate: " : "",
                  challenge != NULL ? challenge : "", challenge != NULL ? "\r\n" : "", h->id);
    h->status = status;
    h->why = why;
    h->own = 1;
    h->closing = 1;
    h->client_keep = 0;
    b = sd_http_buf(h, &h->cout, (size_t)bn + (size_t)hn);
    if (b != NULL) {
        sd_http_put(b, head, (size_t)hn);
        sd_http_put(b, body, (size_t)bn);
        h->sbytes += (uint64_t)bn + (uint64_t)hn;
    }
    h->resp_sent = 1;
    if (h->start_ms == 0)
        h->start_ms = sd_conn_now(h->c);
    sd_http_log_request(h);
    h->qstate = SD_HQ_DONE;
    h->sstate = SD_HS_DONE;
    sd_conn_set_deadline(h->c, sd_conn_now(h->c) + SD_HTTP_CLOSE_GRACE_MS);
}

static void sd_http_answer(struct sd_http *h, int status, const char *why)
{
    sd_http_answer_ch(h, status, why, NULL);
}

/* ------------------------------------------------------ the backend link */

/* Lets go of the attached backend: back to the worker's pool when `keep`
 * (a complete exchange, keep-alive, nothing unread, no PROXY header),
 * otherwise closed. */
static void sd_http_backend_drop(struct sd_http *h, int keep)
{
    const struct sd_listener_conf *lc = sd_http_conf(h);
    struct sd_http_pool *pool;
    int fd = sd_conn_backend_release(h->c);

    if (fd < 0)
        return;
    sd_bufpool_put(sd_conn_bufpool(h->c), h->bin);
    h->bin = NULL;
    h->backend_eof = 0;
    h->backend_ready = 0;
    h->pooled = 0;
    if (keep && !lc->proxy_protocol && lc->backend_pool_size > 0 &&
        (pool = sd_http_pool(h->c)) != NULL) {
        sd_http_pool_put(pool, &lc->target_addr, fd, lc->backend_pool_size,
                         lc->backend_idle_timeout_ms, sd_conn_now(h->c));
        return;
    }
    close(fd);
}

/* Attaches a backend for the request about to be composed: the one kept
 * from the previous request, else a pooled one, else a new connection
 * (then, with proxy-protocol, the PROXY v2 header goes first into bout).
 * Returns 0, or -1 having answered the client (502, 503). */
static int sd_http_backend_get(struct sd_http *h)
{
    const struct sd_listener_conf *lc = sd_http_conf(h);
    struct sd_pump_side *b = sd_conn_side(h->c, SD_SIDE_BACKEND);
    const char *detail = NULL;
    enum sd_reason r;
    int fd = -1;

    if (b->s != NULL) {
        /* The backend kept from the previous exchange: reused only while
         * within its idle time and quiet. epoll flags anything it did
         * since (bytes nobody asked for, its end); only then is the
         * socket itself asked, without taking a byte. */
        char probe;
        int quiet = !h->backend_eof &&
                    sd_conn_now(h->c) - h->kept_ms <= (int64_t)lc->backend_idle_timeout_ms &&
                    ((!b->hup && !b->rd) ||
                     (recv(b->s->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
                      (errno == EAGAIN || errno == EWOULDBLOCK)));
        if (quiet)
            return 0;
        sd_http_backend_drop(h, 0);
    }
    if (!lc->proxy_protocol && lc->backend_pool_size > 0 && sd_http_pool(h->c) != NULL)
        fd = sd_http_pool_get(sd_http_pool(h->c), &lc->target_addr, sd_conn_now(h->c));
    r = sd_conn_backend_open(h->c, fd, &detail);
    if (r != SD_R_NONE) {
        sd_http_answer(h, r == SD_R_BACKEND_CONNECT_FAILED ? 502 : 503, sd_reason_str(r));
        return -1;
    }
    h->pooled = fd >= 0;
    h->backend_ready = 0;
    h->backend_eof = 0;
    if (fd < 0)
        sd_conn_set_deadline(h->c, sd_conn_now(h->c) + lc->connect_timeout_ms);
    if (fd < 0 && lc->proxy_protocol) {
        struct sd_stream *client = sd_conn_stream(h->c, SD_SIDE_CLIENT);
        struct sockaddr_storage local;
        socklen_t len = sizeof(local), peerlen;
        const struct sockaddr *peer = sd_conn_peer_addr(h->c, &peerlen);
        struct sd_buf *o = sd_http_buf(h, &h->bout, SD_BUF_SMALL);
        long n = -1;

        if (o != NULL && getsockname(client->fd, (struct sockaddr *)&local, &len) == 0)
            n = sd_pp2_build_peer(sd_stream_peer(client), peer, (struct sockaddr *)&local,
                                  o->data + o->w, sd_buf_room(o));
        if (n < 0) {
            sd_http_backend_drop(h, 0);
            sd_http_answer(h, 502, "proxy_header_failed");
            return -1;
        }
        o->w += (uint32_t)n;
    }
    return 0;
}

/* ------------------------------------------------------- the request side */

/* The host part of a Host value or an authority: "name", "1.2.3.4" or
 * "[v6]" without the port, and without one trailing dot. */
static struct sd_name sd_http_host_part(struct sd_name v)
{
    size_t i;

    if (v.len > 0 && v.s[0] == '[') {
        for (i = 0; i < v.len && v.s[i] != ']'; i++)
            ;
        v.len = i < v.len ? i + 1 : v.len;
        return v;
    }
    for (i = v.len; i > 0; i--) {
        if (v.s[i - 1] == ':') {
            v.len = i - 1;
            break;
        }
        if (v.s[i - 1] < '0' || v.s[i - 1] > '9')
            break;
    }
    if (v.len > 1 && v.s[v.len - 1] == '.')
        v.len--;
    return v;
}

static int sd_http_is_ip_literal(struct sd_name h)
{
    char tmp[64];
    unsigned char addr[16];

    if (h.len == 0 || h.len >= sizeof(tmp))
        return 0;
    if (h.s[0] == '[') {
        if (h.len < 3 || h.s[h.len - 1] != ']')
            return 0;
        memcpy(tmp, h.s + 1, h.len - 2);
        tmp[h.len - 2] = '\0';
        return inet_pton(AF_INET6, tmp, addr) == 1;
    }
    memcpy(tmp, h.s, h.len);
    tmp[h.len] = '\0';
    return inet_pton(AF_INET, tmp, addr) == 1;
}

/* Does the authority `v` (a Host value) name the server the TLS handshake
 * was for? With SNI, the same name (case aside, port aside); without SNI
 * the client named no server at the TLS layer, so only an IP literal can
 * agree with it. */
static int sd_http_authority_ok(const struct sd_peer *p, struct sd_name v)
{
    struct sd_name host = sd_http_host_part(v), sni;

    if (p == NULL || p->sni.s == NULL || p->sni.len == 0)
        return sd_http_is_ip_literal(host);
    sni = p->sni;
    if (sni.len > 1 && sni.s[sni.len - 1] == '.')
        sni.len--;
    return host.len == sni.len && strncasecmp(host.s, sni.s, sni.len) == 0;
}

/* The authority of an absolute-form target (scheme://authority/...), or
 * len 0 when it has none or holds userinfo. */
static struct sd_name sd_http_target_authority(struct sd_name t)
{
    struct sd_name a = { NULL, 0 };
    size_t i = 0, start;

    while (i + 2 < t.len && !(t.s[i] == ':' && t.s[i + 1] == '/' && t.s[i + 2] == '/'))
        i++;
    if (i + 2 >= t.len)
        return a;
    start = i + 3;
    for (i = start; i < t.len && t.s[i] != '/' && t.s[i] != '?' && t.s[i] != '#'; i++)
        if (t.s[i] == '@')
            return a;
    a.s = t.s + start;
    a.len = i - start;
    return a;
}

/* Fields a proxy never forwards (RFC 9110 section 7.6.1), plus those
 * steeldoor writes itself: Transfer-Encoding (a chunked body is
 * re-framed) and Expect (steeldoor answers 100 Continue itself). */
static int sd_http_hop_by_hop(struct sd_name n)
{
    switch (n.len) {
    case 2: return sd_http_token_eq(n, "te");
    case 6: return sd_http_token_eq(n, "expect");
    case 7: return sd_http_token_eq(n, "trailer") || sd_http_token_eq(n, "upgrade");
    case 10: return sd_http_token_eq(n, "connection") || sd_http_token_eq(n, "keep-alive");
    case 14: return sd_http_token_eq(n, "http2-settings");
    case 16: return sd_http_token_eq(n, "proxy-connection");
    case 17: return sd_http_token_eq(n, "transfer-encoding");
    default: return 0;
    }
}

static int sd_http_is_content_length(struct sd_name n)
{
    return n.len == 14 && sd_http_token_eq(n, "content-length");
}

/* Is name one of the Connection options (compared as loosely as the
 * reserved names: a field a WSGI server would merge with it counts)? */
static int sd_http_listed(const struct sd_name *tokens, size_t ntok, struct sd_name name)
{
    size_t j;

    for (j = 0; j < ntok; j++)
        if (sd_http_name_eq_loose(tokens[j], name))
            return 1;
    return 0;
}

static void sd_http_put_field(struct sd_buf *b, struct sd_name name, struct sd_name value)
{
    sd_http_put_name(b, name);
    sd_http_put(b, ": ", 2);
    sd_http_put_name(b, value);
    sd_http_put(b, "\r\n", 2);
}

/* The comma-separated options of the Connection fields. At most max are
 * kept; the rest are ignored (they could only name more fields to drop). */
static size_t sd_http_connection_tokens(const struct sd_http_field *f, size_t nf,
                                        struct sd_name *out, size_t max)
{
    size_t i, n = 0;

    for (i = 0; i < nf; i++) {
        const char *p, *end;
        if (!(f[i].name.len == 10 && sd_http_token_eq(f[i].name, "connection")))
            continue;
        p = f[i].value.s;
        end = p + f[i].value.len;
        while (p < end && n < max) {
            const char *q = p;
            while (q < end && *q != ',')
                q++;
            {
                struct sd_name t = { p, (size_t)(q - p) };
                while (t.len > 0 && (t.s[0] == ' ' || t.s[0] == '\t')) {
                    t.s++;
                    t.len--;
                }
                while (t.len > 0 && (t.s[t.len - 1] == ' ' || t.s[t.len - 1] == '\t'))
                    t.len--;
                if (t.len > 0)
                    out[n++] = t;
            }
            p = q < end ? q + 1 : end;
        }
    }
    return n;
}

/* Does the request ask to upgrade to WebSocket, and only to it? */
static int sd_http_upgrade_websocket(const struct sd_http_field *f, size_t nf)
{
    size_t i, n = 0;

    for (i = 0; i < nf; i++) {
        if (!(f[i].name.len == 7 && sd_http_token_eq(f[i].name, "upgrade")))
            continue;
        if (n++ > 0 || !(f[i].value.len == 9 && sd_http_token_eq(f[i].value, "websocket")))
            return 0;
    }
    return n == 1;
}

/* Builds the identity headers once per connection. Returns 0, or -1
 * having answered the client (431 when they cannot fit, 500 otherwise). */
static int sd_http_ident(struct sd_http *h)
{
    const struct sd_listener_conf *lc = sd_http_conf(h);
    struct sd_stream *client = sd_conn_stream(h->c, SD_SIDE_CLIENT);
    struct sd_der certs[SD_HTTP_MAX_CERTS];
    struct sd_http_ident in;
    uint8_t *der = NULL;
    long n;
    int nc = 0;

    if (h->ident_built)
        return 0;
    memset(&in, 0, sizeof(in));
    in.peer = sd_stream_peer(client);
    in.client = sd_conn_peer_addr(h->c, &in.clientlen);
    in.set = lc->http_headers;
    if (in.set & (SD_HTTP_H_CLIENT_CERT | SD_HTTP_H_CLIENT_CERT_CHAIN)) {
        if ((der = malloc(SD_HTTP_CERT_BYTES)) == NULL)
            goto oom;
        nc = sd_tls_stream_certs_der(client, der, SD_HTTP_CERT_BYTES, certs,
                                     SD_HTTP_MAX_CERTS);
        if (nc < 0) {
            free(der);
            sd_http_answer(h, 431, "http_identity_too_large");
            return -1;
        }
    }
    in.certs = certs;
    in.ncerts = (size_t)nc;
    if (in.peer == NULL || in.peer->cert == NULL) {
        /* Cannot happen: the handshake verified a certificate. Fail closed. */
        free(der);
        sd_http_answer(h, 500, "internal_error");
        return -1;
    }
    if ((h->ident = malloc(SD_HTTP_IDENT_MAX)) == NULL) {
        free(der);
        goto oom;
    }
    n = sd_http_ident_build(&in, h->ident, SD_HTTP_IDENT_MAX);
    free(der);
    if (n < 0) {
        sd_http_answer(h, 431, "http_identity_too_large");
        return -1;
    }
    h->identlen = (size_t)n;
    h->ident_built = 1;
    return 0;
oom:
    sd_http_answer(h, 503, "out_of_memory");
    return -1;
}

/* A valid credential from a certificate it is not bound to: most likely a
 * stolen one. Both identities are named: the credential's (key id or token
 * sub, and what it is bound to) and the client's. */
static void sd_http_log_stolen(struct sd_http *h, const struct sd_peer *p,
                               const struct sd_auth_result *ar)
{
    static const char hex[] = "0123456789abcdef";
    const struct sd_name *who = sd_peer_identity(p);
    char sha[65];
    struct sd_logline l;
    size_t i;

    for (i = 0; i < 32; i++) {
        sha[2 * i] = hex[p->cert->cert_sha256[i] >> 4];
        sha[2 * i + 1] = hex[p->cert->cert_sha256[i] & 15];
    }
    sha[64] = '\0';
    sd_log_begin(&l, "warn", "stolen_credential");
    sd_log_str(&l, "listener", sd_http_conf(h)->name);
    sd_log_str(&l, "peer", h->peer);
    sd_log_str(&l, "request_id", h->id);
    sd_log_str(&l, "reason", ar->why);
    sd_log_str(&l, "kind", ar->kind == SD_AUTH_KEY ? "api-key" : "token");
    if (ar->who != NULL)
        sd_log_str_bounded(&l, "credential", ar->who, SD_AUTH_WHO_MAX);
    /* An array, each pattern an element: a pattern cannot pass for two,
     * and a cut list says so ("bound_to_truncated"). */
    sd_log_array_begin_bounded(&l, "bound_to", 2048);
    if (ar->nbinds > 0)
        for (i = 0; i < ar->nbinds; i++)
            sd_log_array_strn_bounded(&l, ar->binds[i], strlen(ar->binds[i]), 512);
    else
        sd_log_array_strn_bounded(&l, ar->bound_to, strlen(ar->bound_to), 512);
    sd_log_array_end(&l);
    if (who != NULL)
        sd_log_strn_bounded(&l, "identity", who->s, who->len, 512);
    sd_log_str(&l, "cert_sha256", sha);
    sd_log_end(&l);
}

/* The second factor, when the listener has one (sd/auth.h). Returns the
 * index of the credential's field to drop from the request (-1: none), or
 * -2 having answered the client (400, 401, 403; 503 out of memory). */
static long sd_http_auth(struct sd_http *h, const struct sd_http_req *q,
                         const struct sd_http_field *f, size_t nf, const struct sd_peer *peer)
{
    struct sd_auth_request rq;
    struct sd_auth_result ar;
    const struct sd_auth *a = sd_conn_auth(h->c, &rq.gen);

    h->auth_kind = SD_AUTH_NONE;
    h->auth_who[0] = '\0';
    if (a == NULL)
        return -1;
    if (peer == NULL || peer->cert == NULL) {
        /* Cannot happen: the handshake verified a certificate. */
        sd_http_answer(h, 500, "internal_error");
        return -2;
    }
    rq.f = f;
    rq.nf = nf;
    rq.target = q->target;
    rq.peer = peer;
    rq.now_s = (int64_t)time(NULL);
    if (sd_auth_check(a, &h->auth, &rq, &ar) != 0) {
        sd_http_answer(h, 503, "out_of_memory");
        return -2;
    }
    h->auth_kind = (uint8_t)ar.kind;
    if (ar.who != NULL) {
        size_t n = strnlen(ar.who, sizeof(h->auth_who) - 1);
        memcpy(h->auth_who, ar.who, n);
        h->auth_who[n] = '\0';
    }
    if (ar.status != 0) {
        struct sd_stats_lst *st = sd_conn_stats(h->c);
        if (st != NULL)
            sd_stats_add(&st->auth_fail[sd_stats_auth_kind(ar.why)], 1);
        if (ar.stolen)
            sd_http_log_stolen(h, peer, &ar);
        sd_http_answer_ch(h, ar.status, ar.why, ar.challenge);
        return -2;
    }
    return sd_auth_forwards(a) ? -1 : ar.field;
}

/* A head was parsed (len bytes at the start of cin): check it, write the
 * rewritten head to bout, and set up its body. Returns 0, or -1 having
 * answered the client. */
static int sd_http_request(struct sd_http *h, const struct sd_http_req *q,
                           const struct sd_http_field *f, size_t nf, size_t len)
{
    const struct sd_peer *peer = sd_stream_peer(sd_conn_stream(h->c, SD_SIDE_CLIENT));
    struct sd_name tokens[SD_HTTP_CONN_TOKENS];
    uint8_t spoofed[SD_HTTP_MAX_FIELDS];
    size_t ntok, i, j, nspoofed = 0, need;
    int upgrade_token = 0;
    long drop;
    struct sd_buf *o;

    h->minor = (uint8_t)q->minor;
    h->head_method = q->method.len == 4 && memcmp(q->method.s, "HEAD", 4) == 0;
    h->pathlen = q->target.len < sizeof(h->path) ? q->target.len : sizeof(h->path);
    h->path_cut = q->target.len > sizeof(h->path);
    memcpy(h->path, q->target.s, h->pathlen);
    i = q->method.len < sizeof(h->method) - 1 ? q->method.len : sizeof(h->method) - 1;
    memcpy(h->method, q->method.s, i);
    h->method[i] = '\0';

    if (q->method.len == 7 && memcmp(q->method.s, "CONNECT", 7) == 0) {
        /* A reverse proxy's backend is fixed: no tunnel to elsewhere. */
        sd_http_answer(h, 405, "http_connect_refused");
        return -1;
    }
    /* One name's authorization must not reach another name's service. */
    if (q->form == SD_HTTP_TARGET_ABSOLUTE) {
        struct sd_name a = sd_http_target_authority(q->target);
        if (a.len == 0 || !sd_http_authority_ok(peer, a)) {
            sd_http_answer(h, 421, "http_misdirected");
            return -1;
        }
    }
    if (q->has_host && !sd_http_authority_ok(peer, q->host)) {
        sd_http_answer(h, 421, "http_misdirected");
        return -1;
    }
    if ((drop = sd_http_auth(h, q, f, nf, peer)) == -2)
        return -1;
    if (sd_http_ident(h) != 0)
        return -1;

    ntok = sd_http_connection_tokens(f, nf, tokens, SD_HTTP_CONN_TOKENS);
    for (j = 0; j < ntok; j++)
        if (sd_http_token_eq(tokens[j], "upgrade") && tokens[j].len == 7)
            upgrade_token = 1;
    /* Only a WebSocket upgrade becomes a tunnel: its frames are not HTTP
     * requests. An upgrade to another HTTP (h2c) would carry requests that
     * steeldoor never sees, without identity headers and with whatever the
     * client puts in them: its Upgrade field is dropped like any other
     * hop-by-hop field, and the request is served as plain HTTP/1.1. */
    h->upgrade = (uint8_t)(q->upgrade && upgrade_token && q->framing == SD_HTTP_BODY_NONE &&
                           sd_http_upgrade_websocket(f, nf));
    h->client_keep = (uint8_t)q->keep_alive;
    h->qframing = q->framing;
    h->qleft = q->framing == SD_HTTP_BODY_LENGTH ? q->content_length : 0;
    sd_http_chunked_init(&h->qchunk);
    h->retryable = (uint8_t)(q->framing == SD_HTTP_BODY_NONE && !h->upgrade &&
                             (sd_http_token_eq(q->method, "GET") ||
                              sd_http_token_eq(q->method, "HEAD") ||
                              sd_http_token_eq(q->method, "OPTIONS")));

    /* The backend first: with proxy-protocol its header precedes the head. */
    if (sd_http_backend_get(h) != 0)
        return -1;
    need = len + h->identlen + 256 + (h->auth_kind != SD_AUTH_NONE ? 64 + SD_AUTH_WHO_MAX : 0);
    if ((o = sd_http_buf(h, &h->bout, need)) == NULL) {
        sd_http_answer(h, 503, "out_of_memory");
        return -1;
    }
    h->retry_len = 0;
    if (sd_buf_len(o) != 0 || sd_http_conf(h)->proxy_protocol)
        h->retryable = 0; /* a retry sends bout from 0: it must hold this head alone
                           * (and a new connection would need its PROXY header) */
    else
        o->r = o->w = 0;
    sd_http_put_name(o, q->method);
    sd_http_put(o, " ", 1);
    sd_http_put_name(o, q->target);
    sd_http_puts(o, q->minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    memset(spoofed, 0, sizeof(spoofed));
    for (i = 0; i < nf; i++) {
        if ((long)i == drop)
            continue; /* the credential: the backend gets who it proved to be */
        if (sd_http_ident_reserved(f[i].name) != NULL) {
            spoofed[i] = 1;
            nspoofed++;
            continue;
        }
        if (sd_http_hop_by_hop(f[i].name))
            continue;
        /* Options of Connection name more hop-by-hop fields, but never
         * the framing or the Host: a client must not be able to make
         * steeldoor forward a body without its length. */
        if (!(f[i].name.len == 4 && sd_http_token_eq(f[i].name, "host")) &&
            !sd_http_is_content_length(f[i].name) && sd_http_listed(tokens, ntok, f[i].name))
            continue;
        sd_http_put_field(o, f[i].name, f[i].value);
    }
    if (q->framing == SD_HTTP_BODY_CHUNKED)
        sd_http_puts(o, "Transfer-Encoding: chunked\r\n");
    if (h->upgrade) {
        for (i = 0; i < nf; i++)
            if (f[i].name.len == 7 && sd_http_token_eq(f[i].name, "upgrade")) {
                sd_http_puts(o, "Upgrade: ");
                sd_http_put_name(o, f[i].value);
                sd_http_put(o, "\r\n", 2);
            }
        sd_http_puts(o, "Connection: Upgrade\r\n");
    } else if (q->minor == 0) {
        sd_http_puts(o, "Connection: keep-alive\r\n");
    }
    sd_http_put(o, h->ident, h->identlen);
    if (h->auth_kind == SD_AUTH_KEY) {
        sd_http_puts(o, "X-Steeldoor-Auth: api-key\r\nX-Steeldoor-Key-Id: ");
        sd_http_puts(o, h->auth_who);
        sd_http_put(o, "\r\n", 2);
    } else if (h->auth_kind == SD_AUTH_TOKEN) {
        sd_http_puts(o, "X-Steeldoor-Auth: token\r\nX-Steeldoor-Token-Sub: ");
        sd_http_puts(o, h->auth_who);
        sd_http_put(o, "\r\n", 2);
    }
    sd_http_puts(o, SD_HTTP_REQUEST_ID_HEADER ": ");
    sd_http_puts(o, h->id);
    sd_http_puts(o, "\r\n\r\n");
    if (h->retryable)
        h->retry_len = o->w;
    if (nspoofed > 0)
        sd_http_log_spoofed(h, f, nf, spoofed, nspoofed);
    if (q->expect_continue && q->minor == 1 &&
        (q->framing == SD_HTTP_BODY_CHUNKED ||
         (q->framing == SD_HTTP_BODY_LENGTH && q->content_length > 0))) {
        struct sd_buf *co = sd_http_buf(h, &h->cout, 32);
        if (co != NULL)
            sd_http_puts(co, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    h->cin->r += (uint32_t)len;
    h->qstate = q->framing == SD_HTTP_BODY_NONE ? SD_HQ_DONE : SD_HQ_BODY;
    h->sstate = SD_HS_HEAD;
    return 0;
}

/* Parses the next request head in cin, if complete. Returns 1 when one
 * was taken (or answered), 0 when more bytes are needed. */
static int sd_http_next_request(struct sd_http *h)
{
    struct sd_http_field f[SD_HTTP_MAX_FIELDS];
    struct sd_http_req q;
    long n;

    if (sd_buf_len(h->cin) == 0)
        return 0;
    n = sd_http_req_parse((const char *)h->cin->data + h->cin->r, sd_buf_len(h->cin), &q, f,
                          SD_HTTP_MAX_FIELDS);
    if (n == SD_HTTP_INCOMPLETE)
        return 0;
    /* A new exchange. */
    h->id[0] = '\0';
    h->status = 0;
    h->why = NULL;
    h->own = 0;
    h->qbytes = h->sbytes = 0;
    h->resp_byte = h->resp_sent = 0;
    h->dechunk = 0;
    h->pathlen = 0;
    h->path_cut = 0;
    h->method[0] = '\0';
    h->auth_kind = SD_AUTH_NONE;
    h->auth_who[0] = '\0';
    h->start_ms = sd_conn_now(h->c);
    h->nrequests++;
    sd_http_new_id(h->id);
    if (n == SD_HTTP_ERROR) {
        sd_http_answer(h, sd_http_err_status(q.err), sd_http_err_word(q.err));
        return 1;
    }
    (void)sd_http_request(h, &q, f, q.nfields, (size_t)n);
    return 1;
}

/* Moves request body bytes from cin to bout by the request's framing;
 * a chunked body is re-framed (its extensions and trailers dropped).
 * Returns 0, or -1 when the connection must end (*why). */
static int sd_http_request_body(struct sd_http *h, int *progress, const char **why)
{
    struct sd_buf *in = h->cin, *o;
    size_t avail;

    while (h->qstate == SD_HQ_BODY && sd_buf_len(in) > 0) {
        if ((o = sd_http_buf(h, &h->bout, 64)) == NULL)
            return 0; /* full: wait until the backend takes some */
        avail = sd_buf_len(in);
        if (h->qframing == SD_HTTP_BODY_LENGTH) {
            size_t n = avail;
            if (n > h->qleft)
                n = (size_t)h->qleft;
            if (n > sd_buf_room(o))
                n = sd_buf_room(o);
            sd_http_put(o, in->data + in->r, n);
            in->r += (uint32_t)n;
            h->qleft -= n;
            h->qbytes += n;
            *progress = 1;
            if (h->qleft == 0)
                h->qstate = SD_HQ_DONE;
            continue;
        } else {
            struct sd_name data;
            size_t room = sd_buf_room(o), lim;
            long k;
            char hex[24];
            int hn;

            if (room < 64)
                return 0;
            lim = avail < room - 32 ? avail : room - 32;
            k = sd_http_chunked_feed(&h->qchunk, (const char *)in->data + in->r, lim, &data);
            if (k < 0) {
                *why = sd_http_err_word(h->qchunk.err);
                return -1;
            }
            in->r += (uint32_t)k;
            *progress = 1;
            if (data.len > 0) {
                hn = snprintf(hex, sizeof(hex), "%zx\r\n", data.len);
                sd_http_put(o, hex, (size_t)hn);
                sd_http_put(o, data.s, data.len);
                sd_http_put(o, "\r\n", 2);
                h->qbytes += data.len;
            }
            if (sd_http_chunked_done(&h->qchunk)) {
                sd_http_puts(o, "0\r\n\r\n");
                h->qstate = SD_HQ_DONE;
            }
            if (k == 0)
                break;
        }
    }
    return 0;
}

/* ------------------------------------------------------ the response side */

/* Writes the client's copy of a response head: the backend's fields but
 * its hop-by-hop ones, then steeldoor's own Connection field. Returns 0,
 * or -1 when it cannot be queued. */
static int sd_http_response_head(struct sd_http *h, const struct sd_http_resp *s,
                                 const struct sd_http_resp_field *f, size_t len)
{
    struct sd_http_field cf[SD_HTTP_RESP_MAX_FIELDS];
    struct sd_name tokens[SD_HTTP_CONN_TOKENS];
    size_t i, ntok;
    struct sd_buf *o;
    char line[64];

    for (i = 0; i < s->nfields && i < SD_HTTP_RESP_MAX_FIELDS; i++) {
        cf[i].name = f[i].name;
        cf[i].value = f[i].value;
    }
    ntok = sd_http_connection_tokens(cf, s->nfields, tokens, SD_HTTP_CONN_TOKENS);
    /* The copy can grow: a space after each colon, a reason phrase's
     * separator, steeldoor's Connection field. */
    if ((o = sd_http_buf(h, &h->cout, len + 2 * s->nfields + 128)) == NULL)
        return -1;
    memcpy(line, "HTTP/1.1 000 ", 13); /* the parser took 3 digits, 100-599 */
    line[9] = (char)('0' + s->status / 100);
    line[10] = (char)('0' + s->status / 10 % 10);
    line[11] = (char)('0' + s->status % 10);
    sd_http_put(o, line, 13);
    sd_http_put_name(o, s->reason);
    sd_http_put(o, "\r\n", 2);
    for (i = 0; i < s->nfields; i++) {
        if (sd_http_hop_by_hop(f[i].name) &&
            !(h->sframing == SD_HTTP_RESP_BODY_CHUNKED && !h->dechunk &&
              f[i].name.len == 17 && sd_http_token_eq(f[i].name, "transfer-encoding")) &&
            !(s->status == 101 && f[i].name.len == 7 && sd_http_token_eq(f[i].name, "upgrade")))
            continue;
        if (sd_http_is_content_length(f[i].name) && h->sframing != SD_HTTP_RESP_BODY_LENGTH && h->sframing != SD_HTTP_RESP_BODY_NONE)
            continue; /* a length beside chunked (or a close) is not the framing: never
                       * hand a client two answers to "where does this end" */
        /* "Connection: Upgrade" names the field a 101 must keep. */
        if (!(s->status == 101 && f[i].name.len == 7 && sd_http_token_eq(f[i].name, "upgrade")) &&
            !sd_http_is_content_length(f[i].name) && sd_http_listed(tokens, ntok, f[i].name))
            continue;
        sd_http_put_field(o, f[i].name, f[i].value);
    }
    if (s->status == 101)
        sd_http_puts(o, "Connection: Upgrade\r\n");
    else if (s->status >= 200 && !h->client_keep)
        sd_http_puts(o, "Connection: close\r\n");
    else if (s->status >= 200 && h->minor == 0)
        sd_http_puts(o, "Connection: keep-alive\r\n");
    sd_http_put(o, "\r\n", 2);
    return 0;
}

/* Parses the response head in bin. Returns 0 to go on (or wait), -1 when
 * the connection must end (*why). */
static int sd_http_response(struct sd_http *h, int *progress, const char **why)
{
    struct sd_http_resp_field f[SD_HTTP_RESP_MAX_FIELDS];
    struct sd_http_resp s;
    size_t before;
    long n;

    n = sd_http_resp_parse((const char *)h->bin->data + h->bin->r, sd_buf_len(h->bin),
                           h->head_method ? SD_HTTP_RESP_REQ_HEAD : SD_HTTP_RESP_REQ_OTHER, &s,
                           f, SD_HTTP_RESP_MAX_FIELDS);
    if (n == SD_HTTP_RESP_INCOMPLETE)
        return 0;
    if (n == SD_HTTP_RESP_ERROR) {
        h->backend_keep = 0;
        sd_http_backend_drop(h, 0);
        if (h->resp_sent) {
            *why = sd_http_resp_err_str(s.err);
            return -1;
        }
        sd_http_answer(h, 502, sd_http_resp_err_str(s.err));
        return 0;
    }
    /* A response behind one the client is still reading may have to wait
     * for room in cout (steeldoor never grows a buffer past its cap). */
    if (sd_buf_len(h->cout) > 0 && sd_http_buf(h, &h->cout, (size_t)n + 2 * s.nfields + 128) == NULL)
        return 0;
    *progress = 1;
    if (s.framing == SD_HTTP_RESP_BODY_INTERIM) {
        /* 1xx: passed on to an HTTP/1.1 client (103 Early Hints, 100),
         * never to an HTTP/1.0 one; the final response follows. */
        h->sframing = s.framing;
        if (h->minor == 1 && sd_http_response_head(h, &s, f, (size_t)n) != 0) {
            *why = "out_of_memory";
            return -1;
        }
        h->bin->r += (uint32_t)n;
        return 0;
    }
    if (s.framing == SD_HTTP_RESP_BODY_TUNNEL) {
        if (!h->upgrade || s.status != 101) {
            h->backend_keep = 0;
            sd_http_backend_drop(h, 0);
            if (h->resp_sent) {
                *why = "http_resp_unexpected_upgrade";
                return -1;
            }
            sd_http_answer(h, 502, "http_resp_unexpected_upgrade");
            return 0;
        }
        h->sframing = s.framing;
        if (sd_http_response_head(h, &s, f, (size_t)n) != 0) {
            *why = "out_of_memory";
            return -1;
        }
        h->bin->r += (uint32_t)n;
        h->status = 101;
        h->tunnel = 1;
        h->sstate = SD_HS_DONE;
        return 0;
    }
    h->status = s.status;
    h->sframing = s.framing;
    if (h->draining)
        h->client_keep = 0; /* "Connection: close": the client goes elsewhere */
    h->sleft = s.content_length;
    h->backend_keep = (uint8_t)(s.keep_alive && h->qstate == SD_HQ_DONE);
    if (s.framing == SD_HTTP_RESP_BODY_CLOSE || h->qstate != SD_HQ_DONE)
        h->client_keep = 0; /* the end of the body is the end of the connection */
    if (s.framing == SD_HTTP_RESP_BODY_CHUNKED && h->minor == 0) {
        h->dechunk = 1; /* an HTTP/1.0 client cannot read chunked */
        h->client_keep = 0;
    }
    sd_http_chunked_init(&h->schunk);
    before = sd_buf_len(h->cout);
    if (sd_http_response_head(h, &s, f, (size_t)n) != 0) {
        *why = "out_of_memory";
        return -1;
    }
    h->sbytes += sd_buf_len(h->cout) - before;
    h->resp_sent = 1;
    h->bin->r += (uint32_t)n;
    h->sstate = s.framing == SD_HTTP_RESP_BODY_NONE ||
                        (s.framing == SD_HTTP_RESP_BODY_LENGTH && s.content_length == 0)
                    ? SD_HS_DONE
                    : SD_HS_BODY;
    return 0;
}

/* Moves response body bytes from bin to cout by the response's framing.
 * Returns 0, or -1 when the connection must end (*why). */
static int sd_http_response_body(struct sd_http *h, int *progress, const char **why)
{
    struct sd_buf *in = h->bin, *o;

    while (h->sstate == SD_HS_BODY && sd_buf_len(in) > 0) {
        size_t avail = sd_buf_len(in), n;
        if ((o = sd_http_buf(h, &h->cout, 64)) == NULL)
            return 0; /* full: the client must read first */
        if (h->sframing == SD_HTTP_RESP_BODY_LENGTH || h->sframing == SD_HTTP_RESP_BODY_CLOSE) {
            n = avail < sd_buf_room(o) ? avail : sd_buf_room(o);
            if (h->sframing == SD_HTTP_RESP_BODY_LENGTH && n > h->sleft)
                n = (size_t)h->sleft;
            sd_http_put(o, in->data + in->r, n);
            in->r += (uint32_t)n;
            h->sbytes += n;
            *progress = 1;
            if (h->sframing == SD_HTTP_RESP_BODY_LENGTH) {
                h->sleft -= n;
                if (h->sleft == 0)
                    h->sstate = SD_HS_DONE;
            }
        } else {
            struct sd_name data;
            long k;
            size_t lim = avail < sd_buf_room(o) ? avail : sd_buf_room(o);
            k = sd_http_chunked_feed(&h->schunk, (const char *)in->data + in->r, lim, &data);
            if (k < 0) {
                *why = "http_resp_bad_chunked";
                return -1;
            }
            if (h->dechunk) {
                if (data.len > 0)
                    sd_http_put(o, data.s, data.len); /* fits: data is within the k bytes */
                h->sbytes += data.len;
            } else {
                sd_http_put(o, in->data + in->r, (size_t)k);
                h->sbytes += (uint64_t)k;
            }
            in->r += (uint32_t)k;
            *progress = 1;
            if (sd_http_chunked_done(&h->schunk))
                h->sstate = SD_HS_DONE;
            if (k == 0)
                break;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ I/O */

/* Reads from side `from` into *slot while it is ready and there is room.
 * Returns 0 (with *eof set at its end), or -1 on a read error (*reason). */
static int sd_http_read(struct sd_http *h, enum sd_side from, struct sd_buf **slot,
                        uint8_t *eof, int *progress, uint64_t *count, enum sd_reason *reason,
                        const char **detail)
{
    struct sd_pump_side *side = sd_conn_side(h->c, from);
    struct sd_buf *b;
    size_t n;
    enum sd_io io;

    while (!*eof && side->s != NULL && sd_pump_side_ready(side, side->rd_want)) {
        if ((b = sd_http_buf(h, slot, 1)) == NULL)
            break;
        if (sd_buf_room(b) == 0)
            break;
        io = sd_stream_read(side->s, b->data + b->w, sd_buf_room(b), &n);
        if (io == SD_IO_OK) {
            b->w += (uint32_t)n;
            *count += n;
            *progress = 1;
            if (!side->hup && sd_stream_read_dry(side->s))
                side->rd = 0;
        } else if (io == SD_IO_EOF) {
            *eof = 1;
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

/* Writes *slot's bytes to side `to`. Returns 0, or -1 when the other end
 * is gone (*reason). */
static int sd_http_write(struct sd_http *h, enum sd_side to, struct sd_buf **slot,
                         int *progress, uint64_t *count, enum sd_reason *reason,
                         const char **detail)
{
    struct sd_pump_side *side = sd_conn_side(h->c, to);
    struct sd_buf *b = *slot;
    enum sd_io io;
    size_t n;

    while (sd_buf_len(b) > 0 && side->s != NULL && sd_pump_side_ready(side, side->wr_want)) {
        io = sd_stream_write(side->s, b->data + b->r, sd_buf_len(b), &n);
        if (io == SD_IO_OK) {
            b->r += (uint32_t)n;
            *count += n;
            *progress = 1;
            if (side->s->write_full)
                side->wr = 0;
        } else if (io == SD_IO_EOF || io == SD_IO_ERROR) {
            *reason = io == SD_IO_EOF ? (to == SD_SIDE_CLIENT ? SD_R_CLIENT_RESET
                                                              : SD_R_BACKEND_RESET)
                                      : side->s->reason;
            *detail = side->s->detail;
            return -1;
        } else {
            sd_pump_side_blocked(side, io, &side->wr_want);
        }
    }
    return 0;
}

/* The attached backend failed (a write to it, or its end before the whole
 * response). A request that may be repeated and got no response byte yet
 * on a pooled connection (which the backend may have closed just as it was
 * taken) is sent again on a new connection; otherwise the client gets 502
 * if nothing of the response was sent, or the connection ends. Returns 0,
 * or -1 when the connection must end. */
static int sd_http_backend_failed(struct sd_http *h, enum sd_reason reason)
{
    if (h->pooled && h->retryable && !h->resp_byte && h->retry_len > 0 && h->bout != NULL &&
        h->qstate == SD_HQ_DONE) {
        const char *detail;
        sd_http_backend_drop(h, 0);
        h->retryable = 0;
        if (sd_conn_backend_open(h->c, -1, &detail) == SD_R_NONE) {
            h->bout->r = 0;
            h->bout->w = h->retry_len;
            h->pooled = 0;
            sd_conn_set_deadline(h->c, sd_conn_now(h->c) + sd_http_conf(h)->connect_timeout_ms);
            return 0;
        }
    }
    h->backend_keep = 0;
    sd_http_backend_drop(h, 0);
    if (h->resp_sent)
        return -1;
    sd_bufpool_put(sd_conn_bufpool(h->c), h->bout);
    h->bout = NULL;
    sd_http_answer(h, 502, reason == SD_R_NONE ? "backend_closed" : sd_reason_str(reason));
    return 0;
}

/* ------------------------------------------------------------ the engine */

/* One exchange is complete: log it, keep or release the backend, and get
 * ready for the next request (or the end). */
static void sd_http_exchange_done(struct sd_http *h)
{
    /* Reusable only at a message boundary both ways: nothing unread from
     * it, and nothing of this request still unsent to it (a backend that
     * answered early still waits for the rest of the body, and would take
     * the next request's first bytes for it). */
    int reuse = h->backend_keep && sd_buf_len(h->bin) == 0 && sd_buf_len(h->bout) == 0 &&
                !h->backend_eof;

    if (!h->own)
        sd_http_log_request(h);
    if (!reuse || !h->client_keep)
        sd_http_backend_drop(h, reuse);
    else {
        h->pooled = 1; /* kept for the next request: a reused connection from now on */
        h->kept_ms = sd_conn_now(h->c);
    }
    if (!h->client_keep)
        h->closing = 1;
    h->qstate = SD_HQ_HEAD;
    h->sstate = SD_HS_NONE;
    h->retry_len = 0;
    h->upgrade = 0;
    sd_http_buf_idle(h, &h->bout);
    sd_http_buf_idle(h, &h->bin);
}

/* Hands the connection to the pumps after a 101: what the backend sent
 * after its head goes to the client first, what the client sent after its
 * request to the backend. */
static enum sd_mode_run sd_http_tunnel(struct sd_http *h, enum sd_reason *reason)
{
    struct sd_buf *to_client, *to_backend;
    size_t nb = sd_buf_len(h->bin), nc = sd_buf_len(h->cin);

    sd_http_log_request(h);
    if (nb > 0) {
        if ((to_client = sd_conn_queue_room(h->c, SD_SIDE_CLIENT, nb)) == NULL)
            goto oom;
        memcpy(to_client->data + to_client->w, h->bin->data + h->bin->r, nb);
        to_client->w += (uint32_t)nb;
    }
    if (nc > 0) {
        if ((to_backend = sd_conn_queue_room(h->c, SD_SIDE_BACKEND, nc)) == NULL)
            goto oom;
        memcpy(to_backend->data + to_backend->w, h->cin->data + h->cin->r, nc);
        to_backend->w += (uint32_t)nc;
    }
    /* The pumps take over: this engine's buffers are not needed any more. */
    sd_bufpool_put(sd_conn_bufpool(h->c), h->cin);
    sd_bufpool_put(sd_conn_bufpool(h->c), h->bin);
    sd_bufpool_put(sd_conn_bufpool(h->c), h->bout);
    sd_bufpool_put(sd_conn_bufpool(h->c), h->cout);
    h->cin = h->bin = h->bout = h->cout = NULL;
    return SD_MODE_TUNNEL;
oom:
    *reason = SD_R_OUT_OF_MEMORY;
    return SD_MODE_FAIL;
}

static enum sd_mode_run sd_http_run(struct sd_conn *c, int *progress, enum sd_reason *reason,
                                    const char **detail)
{
    struct sd_http *h = sd_conn_mode_state(c);
    const struct sd_listener_conf *lc = sd_conn_conf(c);
    struct sd_pump_side *bs = sd_conn_side(c, SD_SIDE_BACKEND);
    uint64_t in = 0, out = 0, ignored = 0;
    int moved = 1, rounds = 0;
    const char *why = NULL;

    /* A kept backend that hung up between exchanges is let go at once. */
    if (bs->s != NULL && h->sstate == SD_HS_NONE && h->qstate == SD_HQ_HEAD && bs->hup) {
        sd_http_backend_drop(h, 0);
        *progress = 1;
    }
    while (moved && rounds++ < 64) {
        moved = 0;
        /* 1. The client's bytes, when a request head or body is awaited. */
        if (!h->closing && h->qstate != SD_HQ_DONE && !h->tunnel) {
            size_t before = sd_buf_len(h->cin);
            if (sd_http_read(h, SD_SIDE_CLIENT, &h->cin, &h->client_eof, &moved, &in, reason,
                             detail) != 0)
                goto fail;
            if (before == 0 && sd_buf_len(h->cin) > 0 && h->qstate == SD_HQ_HEAD)
                h->head_ms = sd_conn_now(c);
        }
        /* 2. The next request, once the previous exchange is over. */
        if (!h->closing && h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE) {
            if (sd_http_next_request(h))
                moved = 1;
            else if (h->client_eof) {
                if (sd_buf_len(h->cout) == 0) {
                    /* The client is done (a partial head is dropped). Our
                     * close_notify too: without it OpenSSL drops the
                     * session, which then never resumes. */
                    sd_conn_count(c, in, out);
                    (void)sd_stream_shutdown(sd_conn_stream(c, SD_SIDE_CLIENT));
                    return SD_MODE_DONE;
                }
            } else if (h->cin != NULL && sd_buf_room(h->cin) == 0) {
                if (h->cin->cap == SD_BUF_SMALL) {
                    /* A head longer than a small buffer (up to 32 KiB). */
                    h->cin = sd_bufpool_grow(sd_conn_bufpool(c), h->cin);
                    if (h->cin->cap == SD_BUF_SMALL)
                        sd_http_answer(h, 503, "out_of_memory");
                } else {
                    /* Cannot be (the parser refuses a head over 32 KiB),
                     * but never spin. */
                    sd_http_answer(h, 431, "http_head_too_large");
                }
                moved = 1;
            }
        }
        /* 3. The request's body. */
        if (h->qstate == SD_HQ_BODY) {
            if (sd_http_request_body(h, &moved, &why) != 0) {
                if (!h->resp_sent) {
                    h->backend_keep = 0;
                    sd_http_backend_drop(h, 0);
                    sd_http_answer(h, 400, why);
                    moved = 1;
                } else {
                    *reason = SD_R_CLIENT_RESET;
                    *detail = why;
                    goto fail;
                }
            } else if (h->client_eof && h->qstate == SD_HQ_BODY && sd_buf_len(h->cin) == 0) {
                *reason = SD_R_CLIENT_RESET;
                *detail = "the client closed before the end of the request body";
                goto fail;
            }
        }
        /* 4. To the backend. */
        if (bs->s != NULL && !h->backend_ready) {
            int r = sd_conn_backend_ready(c, reason, detail);
            if (r < 0) {
                if (sd_http_backend_failed(h, *reason) != 0)
                    goto fail;
                moved = 1;
            } else if (r > 0) {
                h->backend_ready = 1;
                moved = 1;
            }
        }
        if (bs->s != NULL && h->backend_ready && sd_buf_len(h->bout) > 0 &&
            sd_http_write(h, SD_SIDE_BACKEND, &h->bout, &moved, &ignored, reason, detail) != 0) {
            if (sd_http_backend_failed(h, *reason) != 0)
                goto fail;
            moved = 1;
        }
        /* 5. From the backend, while a response is awaited. */
        if (bs->s != NULL && h->backend_ready &&
            (h->sstate == SD_HS_HEAD || h->sstate == SD_HS_BODY) && !h->tunnel) {
            size_t before = sd_buf_len(h->bin);
            if (sd_http_read(h, SD_SIDE_BACKEND, &h->bin, &h->backend_eof, &moved, &ignored,
                             reason, detail) != 0) {
                if (sd_http_backend_failed(h, *reason) != 0)
                    goto fail;
                moved = 1;
            } else if (sd_buf_len(h->bin) > before) {
                h->resp_byte = 1;
            }
        }
        if (h->sstate == SD_HS_HEAD && sd_buf_len(h->bin) > 0 && !h->tunnel) {
            if (sd_http_response(h, &moved, &why) != 0) {
                *reason = SD_R_BACKEND_RESET;
                *detail = why;
                goto fail;
            }
            if (h->sstate == SD_HS_HEAD && h->bin != NULL && sd_buf_room(h->bin) == 0 &&
                h->bin->cap == SD_BUF_SMALL) {
                h->bin = sd_bufpool_grow(sd_conn_bufpool(c), h->bin);
                if (h->bin->cap == SD_BUF_SMALL) {
                    h->backend_keep = 0;
                    sd_http_backend_drop(h, 0);
                    sd_http_answer(h, 503, "out_of_memory");
                }
                moved = 1;
            }
        }
        if (h->sstate == SD_HS_BODY && sd_http_response_body(h, &moved, &why) != 0) {
            *reason = SD_R_BACKEND_RESET;
            *detail = why;
            goto fail;
        }
        if (h->backend_eof && h->sstate == SD_HS_HEAD && sd_buf_len(h->bin) > 0 &&
            sd_buf_len(h->cout) == 0) {
            /* Its end came inside a response head (the parse above wanted
             * more): no head will ever complete. */
            if (sd_http_backend_failed(h, SD_R_NONE) != 0)
                goto fail;
            moved = 1;
        }
        if (h->backend_eof && (h->sstate == SD_HS_HEAD || h->sstate == SD_HS_BODY) &&
            sd_buf_len(h->bin) == 0) {
            if (h->sstate == SD_HS_BODY && h->sframing == SD_HTTP_RESP_BODY_CLOSE) {
                h->sstate = SD_HS_DONE;
                h->backend_keep = 0;
            } else if (h->sstate == SD_HS_HEAD && !h->resp_sent) {
                if (sd_http_backend_failed(h, SD_R_NONE) != 0)
                    goto fail;
            } else {
                *reason = SD_R_BACKEND_RESET;
                *detail = "the backend closed in the middle of a response";
                goto fail;
            }
            moved = 1;
        }
        /* 6. To the client. */
        if (sd_buf_len(h->cout) > 0 &&
            sd_http_write(h, SD_SIDE_CLIENT, &h->cout, &moved, &out, reason, detail) != 0)
            goto fail;
        /* 7. The end of an exchange, a tunnel, or the connection. */
        if (h->tunnel && sd_buf_len(h->cout) == 0) {
            sd_conn_count(c, in, out);
            return sd_http_tunnel(h, reason);
        }
        if (!h->own && h->qstate == SD_HQ_BODY && h->sstate == SD_HS_DONE && !h->tunnel) {
            /* The backend answered before the whole body (a 413, say): the
             * rest of the body has nowhere to go, and where it ends is no
             * reason to keep either connection. */
            h->backend_keep = 0;
            h->client_keep = 0;
            h->qstate = SD_HQ_DONE;
        }
        if (!h->own && h->qstate == SD_HQ_DONE && h->sstate == SD_HS_DONE && !h->tunnel) {
            sd_http_exchange_done(h);
            moved = 1;
        }
        if (h->closing && sd_buf_len(h->cout) == 0) {
            sd_conn_count(c, in, out);
            (void)sd_stream_shutdown(sd_conn_stream(c, SD_SIDE_CLIENT));
            return SD_MODE_DONE;
        }
        if (moved)
            *progress = 1;
    }
    sd_conn_count(c, in, out);
    sd_http_buf_idle(h, &h->cout);
    if (h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE)
        sd_http_buf_idle(h, &h->cin);
    if (*progress && !h->closing) {
        /* The connect timeout while a new backend connects, else idle. */
        if (bs->s != NULL && !h->backend_ready)
            ;
        else if (h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE && sd_buf_len(h->cin) > 0)
            /* A head must arrive whole within the idle timeout of its first
             * byte: trickling it byte by byte does not push the deadline. */
            sd_conn_set_deadline(c, h->head_ms + lc->idle_timeout_ms);
        else if (bs->s != NULL && h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE &&
                 lc->backend_idle_timeout_ms < lc->idle_timeout_ms)
            /* Between exchanges with a kept backend: wake when it has been
             * idle too long, to let it go (sd_http_timeout). */
            sd_conn_set_deadline(c, sd_conn_now(c) + lc->backend_idle_timeout_ms + 1);
        else
            sd_conn_set_deadline(c, sd_conn_now(c) + lc->idle_timeout_ms);
    }
    if (rounds >= 64)
        *progress = 1; /* more to do: run again */
    return SD_MODE_GO;
fail:
    sd_conn_count(c, in, out);
    if (h->status == 0 && h->nrequests > 0 && h->id[0] != '\0' && h->sstate != SD_HS_NONE &&
        !h->own) {
        h->status = 502;
        h->why = sd_reason_str(*reason);
        sd_http_log_request(h);
    }
    return SD_MODE_FAIL;
}

/* The deadline passed: a half-sent request head gets 408, a backend that
 * does not connect or answer 504; an idle keep-alive connection just ends. */
static int sd_http_timeout(struct sd_conn *c)
{
    struct sd_http *h = sd_conn_mode_state(c);
    struct sd_pump_side *bs = sd_conn_side(c, SD_SIDE_BACKEND);

    if (h == NULL || h->closing)
        return 0;
    if (h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE && sd_buf_len(h->cin) == 0 &&
        bs->s != NULL) {
        /* The kept backend's idle time is over: close it; the client's
         * own idle time runs on from its last exchange. */
        const struct sd_listener_conf *lc = sd_conn_conf(c);
        sd_http_backend_drop(h, 0);
        sd_conn_set_deadline(c, h->kept_ms + lc->idle_timeout_ms);
        return sd_conn_now(c) < h->kept_ms + lc->idle_timeout_ms;
    }
    if (h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE) {
        if (sd_buf_len(h->cin) == 0)
            return 0;
        h->nrequests++;
        h->start_ms = h->head_ms;
        h->id[0] = '\0';
        sd_http_answer(h, 408, "http_request_timeout");
        return 1;
    }
    if (h->qstate == SD_HQ_BODY && !h->resp_sent && sd_buf_len(h->cin) == 0) {
        /* The client stopped in the middle of its body. */
        h->backend_keep = 0;
        sd_http_backend_drop(h, 0);
        sd_bufpool_put(sd_conn_bufpool(c), h->bout);
        h->bout = NULL;
        sd_http_answer(h, 408, "http_request_timeout");
        return 1;
    }
    if (h->sstate == SD_HS_HEAD && !h->resp_sent) {
        const char *why = bs->s != NULL && !h->backend_ready ? "backend_connect_timeout"
                                                             : "backend_timeout";
        h->backend_keep = 0;
        sd_http_backend_drop(h, 0);
        sd_bufpool_put(sd_conn_bufpool(c), h->bout);
        h->bout = NULL;
        sd_http_answer(h, 504, why);
        return 1;
    }
    return 0;
}

static enum sd_reason sd_http_start(struct sd_conn *c, const char **detail)
{
    struct sd_http *h = calloc(1, sizeof(*h));
    const struct sockaddr *pa;
    socklen_t plen;

    if (h == NULL) {
        *detail = NULL;
        return SD_R_OUT_OF_MEMORY;
    }
    h->c = c;
    pa = sd_conn_peer_addr(c, &plen);
    sd_addr_format(pa, plen, h->peer, sizeof(h->peer));
    h->qstate = SD_HQ_HEAD;
    h->sstate = SD_HS_NONE;
    sd_conn_set_mode_state(c, h);
    return SD_R_NONE;
}

static void sd_http_fini(struct sd_conn *c)
{
    struct sd_http *h = sd_conn_mode_state(c);
    struct sd_bufpool *pool = sd_conn_bufpool(c);

    if (h == NULL)
        return;
    /* A backend between exchanges goes back to the pool. */
    if (!h->tunnel)
        sd_http_backend_drop(h, h->sstate == SD_HS_NONE && h->qstate == SD_HQ_HEAD &&
                                    h->backend_keep && sd_buf_len(h->bin) == 0 &&
                                    sd_buf_len(h->bout) == 0 && !h->backend_eof &&
                                    h->backend_ready);
    sd_bufpool_put(pool, h->cin);
    sd_bufpool_put(pool, h->bout);
    sd_bufpool_put(pool, h->bin);
    sd_bufpool_put(pool, h->cout);
    free(h->ident);
    sd_auth_cache_fini(&h->auth);
    free(h);
    sd_conn_set_mode_state(c, NULL);
}

static void sd_http_drain(struct sd_conn *c)
{
    struct sd_http *h = sd_conn_mode_state(c);

    if (h == NULL)
        return;
    h->draining = 1;
    if (h->qstate == SD_HQ_HEAD && h->sstate == SD_HS_NONE && sd_buf_len(h->cin) == 0)
        h->closing = 1; /* between exchanges: close now */
}

static struct sd_stream *sd_http_stream(struct sd_gen *gen, int index, enum sd_side side, int fd)
{
    if (side == SD_SIDE_CLIENT)
        return sd_tls_stream_new(gen->tls[index], fd, SD_SIDE_CLIENT);
    return sd_stream_tcp_new(fd, SD_SIDE_BACKEND);
}

static enum sd_reason sd_http_no_start(struct sd_conn *c, const char **detail)
{
    return sd_http_start(c, detail);
}

const struct sd_mode_ops sd_mode_http = {
    .name = "http",
    .verified = SD_SIDE_CLIENT,
    .stream = sd_http_stream,
    .start = sd_http_no_start,
    .lazy_backend = 1,
    .run = sd_http_run,
    .timeout = sd_http_timeout,
    .fini = sd_http_fini,
    .drain = sd_http_drain,
};

void sd_mode_http_tick(int64_t now_ms)
{
    if (sd_http_pool_of_worker != NULL)
        sd_http_pool_expire(sd_http_pool_of_worker, now_ms);
}
