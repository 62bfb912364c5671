/* backend.c - the service behind every proxy in `make bench`.
 *
 *   backend --listen ADDR:PORT [--http]
 *
 * One process, one thread, one edge-triggered epoll loop, plain TCP. It
 * speaks the fixed-size protocol in bench.h: a small fixed answer to each
 * 'Q', exactly len bytes for 'D' len, and drops len bytes then acknowledges
 * for 'U' len. It does as little as it can so that the proxy in front of it
 * is what a benchmark measures. Runs until SIGTERM or SIGINT.
 *
 * With --http it is an HTTP/1.1 keep-alive service instead (the `http`
 * phase): it reads each request head (up to the empty line; a request body
 * announced by Content-Length is read and dropped) and answers
 * "HTTP/1.1 200 OK" with a BENCH_HTTP_BODY-byte body, keeping the
 * connection open. A request that does not carry a Client-Cert header (the
 * client certificate every proxy under test must set) gets a 400 instead, so
 * that a proxy configured without it fails the phase rather than being
 * measured doing less. Pipelined requests are answered in order.
 * Transfer-Encoding in a request, or a head over BACKEND_HTTP_HEAD bytes,
 * gets 400 and a close.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKEND_CHUNK (64 * 1024)

#define BACKEND_HTTP_HEAD (64 * 1024) /* most bytes of a request head (--http) */
#define BACKEND_HTTP_OUT 4096         /* answers queued on one connection (--http) */

enum backend_state { ST_CMD, ST_REPLY, ST_DOWN, ST_UP };

/* --http: one connection's request bytes and queued answers. */
struct backend_http {
    size_t in_len;      /* bytes in in[] */
    size_t scan;        /* in[0, scan) holds no complete head end */
    uint64_t skip;      /* request body bytes still to drop */
    size_t out_len, out_off;
    bool closing;       /* close once out[] is sent */
    char out[BACKEND_HTTP_OUT];
    char in[BACKEND_HTTP_HEAD];
};

struct backend_conn {
    int fd;
    enum backend_state st;
    unsigned char cmd[BENCH_CMD_SIZE];
    size_t cmd_len;
    const unsigned char *reply; /* ST_REPLY: what to send, and how far */
    size_t reply_len, reply_off;
    uint64_t remaining;         /* ST_DOWN / ST_UP: bytes still to move */
    struct backend_http *http;  /* --http only */
};

static unsigned char backend_resp[BENCH_RESP_SIZE];
static unsigned char backend_ack[BENCH_CMD_SIZE];
static unsigned char backend_data[BACKEND_CHUNK];
static unsigned char backend_scratch[BACKEND_CHUNK];
static volatile sig_atomic_t backend_stop;
static bool backend_http_mode;
/* --http: the three answers, made once at start. */
static char backend_http_ok[128 + BENCH_HTTP_BODY], backend_http_no_cert[160],
    backend_http_bad[160];
static size_t backend_http_ok_len, backend_http_no_cert_len, backend_http_bad_len;

static void backend_on_signal(int sig)
{
    (void)sig;
    backend_stop = 1;
}

static void backend_close(struct backend_conn *c)
{
    close(c->fd);
    free(c->http);
    free(c);
}

/* --http: the first field line of head[0, len) named `name` (lower case,
 * with its colon), case-insensitively; its value (spaces trimmed) in
 * *val, *vlen. Returns 1 when found, else 0. */
static int backend_http_field(const char *head, size_t len, const char *name, const char **val,
                              size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *end = head + len;
    const char *p = memchr(head, '\n', len); /* skip the request line */
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *val = v;
            *vlen = (size_t)(e - v);
            return 1;
        }
        p = eol;
    }
    return 0;
}

static int backend_http_queue(struct backend_http *h, const char *resp, size_t len)
{
    if (BACKEND_HTTP_OUT - h->out_len < len)
        return -1;
    memcpy(h->out + h->out_len, resp, len);
    h->out_len += len;
    return 0;
}

/* --http: answers every complete request head in h->in (in order), as far
 * as the output queue has room; drops request bodies. */
static void backend_http_parse(struct backend_http *h)
{
    for (;;) {
        if (h->skip) {
            size_t n = h->in_len < h->skip ? h->in_len : (size_t)h->skip;
            memmove(h->in, h->in + n, h->in_len - n);
            h->in_len -= n;
            h->skip -= n;
            h->scan = 0;
            if (h->skip)
                return;
        }
        /* room for any of the answers (each well under 256 bytes) */
        if (h->closing || BACKEND_HTTP_OUT - h->out_len < 256 + BENCH_HTTP_BODY)
            return;
        size_t from = h->scan > 3 ? h->scan - 3 : 0;
        const char *end = h->in_len >= 4 ? memmem(h->in + from, h->in_len - from, "\r\n\r\n", 4)
                                         : NULL;
        if (!end) {
            h->scan = h->in_len;
            if (h->in_len == sizeof(h->in)) { /* a head too large to be ours */
                backend_http_queue(h, backend_http_bad, backend_http_bad_len);
                h->closing = true;
            }
            return;
        }
        size_t head_len = (size_t)(end - h->in) + 4;
        const char *v;
        size_t vlen;
        uint64_t body = 0;
        if (backend_http_field(h->in, head_len, "transfer-encoding:", &v, &vlen)) {
            backend_http_queue(h, backend_http_bad, backend_http_bad_len);
            h->closing = true;
            return;
        }
        if (backend_http_field(h->in, head_len, "content-length:", &v, &vlen)) {
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9' || body > (UINT64_MAX - 9) / 10) {
                    backend_http_queue(h, backend_http_bad, backend_http_bad_len);
                    h->closing = true;
                    return;
                }
                body = body * 10 + (uint64_t)(v[i] - '0');
            }
        }
        /* Every proxy under test must hand on the client certificate. */
        if (backend_http_field(h->in, head_len, "client-cert:", &v, &vlen) && vlen >= 16)
            backend_http_queue(h, backend_http_ok, backend_http_ok_len);
        else
            backend_http_queue(h, backend_http_no_cert, backend_http_no_cert_len);
        memmove(h->in, h->in + head_len, h->in_len - head_len);
        h->in_len -= head_len;
        h->scan = 0;
        h->skip = body;
    }
}

/* --http: as backend_drive. */
static int backend_http_drive(struct backend_conn *c)
{
    struct backend_http *h = c->http;
    for (;;) {
        ssize_t n;
        if (h->out_off < h->out_len) {
            n = send(c->fd, h->out + h->out_off, h->out_len - h->out_off, MSG_NOSIGNAL);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            h->out_off += (size_t)n;
            if (h->out_off < h->out_len)
                continue;
            h->out_off = h->out_len = 0;
            if (h->closing)
                return -1;
            backend_http_parse(h); /* requests that waited for room */
            continue;
        }
        if (h->closing || h->in_len == sizeof(h->in)) /* (a full buffer is answered) */
            return -1;
        n = recv(c->fd, h->in + h->in_len, sizeof(h->in) - h->in_len, 0);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0)
            return -1;
        h->in_len += (size_t)n;
        backend_http_parse(h);
    }
}

/* Moves the connection as far as the socket allows. Returns -1 when it is
 * finished (closed by the peer or an error), 0 when it waits for an event.
 * Edge-triggered: every path returns 0 only after EAGAIN. */
static int backend_drive(struct backend_conn *c)
{
    if (c->http)
        return backend_http_drive(c);
    for (;;) {
        ssize_t n;
        switch (c->st) {
        case ST_CMD:
            n = recv(c->fd, c->cmd + c->cmd_len, sizeof(c->cmd) - c->cmd_len, 0);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            if (n == 0)
                return -1;
            c->cmd_len += (size_t)n;
            if (c->cmd_len < sizeof(c->cmd))
                break;
            c->cmd_len = 0;
            if (c->cmd[0] == BENCH_CMD_REQUEST) {
                c->st = ST_REPLY;
                c->reply = backend_resp;
                c->reply_len = sizeof(backend_resp);
                c->reply_off = 0;
            } else if (c->cmd[0] == BENCH_CMD_DOWNLOAD) {
                c->st = ST_DOWN;
                c->remaining = bench_get_u64(c->cmd + 8);
            } else if (c->cmd[0] == BENCH_CMD_UPLOAD) {
                c->st = ST_UP;
                c->remaining = bench_get_u64(c->cmd + 8);
            } else {
                return -1;
            }
            break;
        case ST_REPLY:
            n = send(c->fd, c->reply + c->reply_off, c->reply_len - c->reply_off,
                     MSG_NOSIGNAL);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            c->reply_off += (size_t)n;
            if (c->reply_off == c->reply_len)
                c->st = ST_CMD;
            break;
        case ST_DOWN:
            if (c->remaining == 0) {
                c->st = ST_CMD;
                break;
            }
            n = send(c->fd, backend_data,
                     c->remaining < sizeof(backend_data) ? (size_t)c->remaining
                                                         : sizeof(backend_data),
                     MSG_NOSIGNAL);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            c->remaining -= (uint64_t)n;
            break;
        case ST_UP:
            if (c->remaining == 0) {
                c->st = ST_REPLY;
                c->reply = backend_ack;
                c->reply_len = sizeof(backend_ack);
                c->reply_off = 0;
                break;
            }
            n = recv(c->fd, backend_scratch,
                     c->remaining < sizeof(backend_scratch) ? (size_t)c->remaining
                                                            : sizeof(backend_scratch),
                     0);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            if (n == 0)
                return -1;
            c->remaining -= (uint64_t)n;
            break;
        }
    }
}

static int backend_parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    backend_http_mode = argc == 4 && strcmp(argv[3], "--http") == 0;
    if ((argc != 3 && !backend_http_mode) || strcmp(argv[1], "--listen") != 0 ||
        backend_parse_addr(argv[2], &sa) < 0) {
        fprintf(stderr, "usage: backend --listen IPV4:PORT [--http]\n");
        return 2;
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(backend_resp, 'r', sizeof(backend_resp));
    memset(backend_ack, 'a', sizeof(backend_ack));
    memset(backend_data, 'd', sizeof(backend_data));
    int hl = snprintf(backend_http_ok, sizeof(backend_http_ok),
                      "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BENCH_HTTP_BODY);
    memset(backend_http_ok + hl, 'h', BENCH_HTTP_BODY);
    backend_http_ok_len = (size_t)hl + BENCH_HTTP_BODY;
    static const char no_cert[] = "no Client-Cert header from the proxy",
                      bad[] = "unsupported request head";
    hl = snprintf(backend_http_no_cert, sizeof(backend_http_no_cert),
                  "HTTP/1.1 400 Bad Request\r\nContent-Length: %zu\r\n\r\n%s",
                  sizeof(no_cert) - 1, no_cert);
    backend_http_no_cert_len = (size_t)hl;
    hl = snprintf(backend_http_bad, sizeof(backend_http_bad),
                  "HTTP/1.1 400 Bad Request\r\nContent-Length: %zu\r\nConnection: close\r\n"
                  "\r\n%s",
                  sizeof(bad) - 1, bad);
    backend_http_bad_len = (size_t)hl;

    struct sigaction sigact;
    memset(&sigact, 0, sizeof(sigact));
    sigact.sa_handler = backend_on_signal;
    sigaction(SIGTERM, &sigact, NULL);
    sigaction(SIGINT, &sigact, NULL);
    signal(SIGPIPE, SIG_IGN);

    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
        perror("backend: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("backend: epoll");
        return 1;
    }

    struct epoll_event evs[256];
    while (!backend_stop) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno != EINTR) {
            perror("backend: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct backend_conn *c = evs[i].data.ptr;
            if (c) {
                if (backend_drive(c) < 0)
                    backend_close(c);
                continue;
            }
            for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        perror("backend: accept");
                    break;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = calloc(1, sizeof(*c));
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                c->st = ST_CMD;
                if (backend_http_mode && !(c->http = calloc(1, sizeof(*c->http)))) {
                    backend_close(c);
                    continue;
                }
                struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                          .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) {
                    backend_close(c);
                    continue;
                }
                if (backend_drive(c) < 0)
                    backend_close(c);
            }
        }
    }
    return 0;
}
