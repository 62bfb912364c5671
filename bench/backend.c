/* backend.c - the service behind every proxy in `make bench`.
 *
 *   backend --listen ADDR:PORT
 *
 * One process, one thread, one edge-triggered epoll loop, plain TCP. It
 * speaks the fixed-size protocol in bench.h: a small fixed answer to each
 * 'Q', exactly len bytes for 'D' len, and drops len bytes then acknowledges
 * for 'U' len. It does as little as it can so that the proxy in front of it
 * is what a benchmark measures. Runs until SIGTERM or SIGINT.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKEND_CHUNK (64 * 1024)

enum backend_state { ST_CMD, ST_REPLY, ST_DOWN, ST_UP };

struct backend_conn {
    int fd;
    enum backend_state st;
    unsigned char cmd[BENCH_CMD_SIZE];
    size_t cmd_len;
    const unsigned char *reply; /* ST_REPLY: what to send, and how far */
    size_t reply_len, reply_off;
    uint64_t remaining;         /* ST_DOWN / ST_UP: bytes still to move */
};

static unsigned char backend_resp[BENCH_RESP_SIZE];
static unsigned char backend_ack[BENCH_CMD_SIZE];
static unsigned char backend_data[BACKEND_CHUNK];
static unsigned char backend_scratch[BACKEND_CHUNK];
static volatile sig_atomic_t backend_stop;

static void backend_on_signal(int sig)
{
    (void)sig;
    backend_stop = 1;
}

static void backend_close(struct backend_conn *c)
{
    close(c->fd);
    free(c);
}

/* Moves the connection as far as the socket allows. Returns -1 when it is
 * finished (closed by the peer or an error), 0 when it waits for an event.
 * Edge-triggered: every path returns 0 only after EAGAIN. */
static int backend_drive(struct backend_conn *c)
{
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
    if (argc != 3 || strcmp(argv[1], "--listen") != 0 || backend_parse_addr(argv[2], &sa) < 0) {
        fprintf(stderr, "usage: backend --listen IPV4:PORT\n");
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
