/* loadgen.c - mutual-TLS load generator for `make bench`.
 *
 *   loadgen --connect IPV4:PORT --cert C --key K --cacert CA --mode MODE
 *           [--conns N] [--count N] [--time SEC] [--sync] ...   (--help)
 *
 * One process, one thread, one edge-triggered epoll loop driving many
 * non-blocking OpenSSL client connections (TLS 1.3 only, X25519 only, one
 * ciphersuite, a client certificate, the server certificate verified).
 * It speaks the protocol of bench.h to bench/backend.c through the proxy
 * under test. Modes:
 *
 *   full       connect, full handshake, one request/response, close; again.
 *              No session is ever offered.
 *   resumed    the same, offering a TLS 1.3 ticket obtained earlier (each
 *              connection slot keeps the newest ticket it was given). The
 *              fraction actually resumed is reported; below --min-resumed
 *              (default 0.9) the run fails (exit 3).
 *   keepalive  --conns persistent connections, each sending requests in a
 *              loop, one at a time.
 *   bulk       --conns connections moving data one way (--bulk-dir down:
 *              backend to client, up: client to backend) in --chunk pieces.
 *   idle       open --conns connections (handshake and one request each),
 *              report, hold them until stdin closes.
 *   tiny       --conns persistent connections, each uploading --tiny bytes at
 *              a time as that many ONE-BYTE TLS records, written in one burst
 *              (one send of all the records), then waiting for the backend's
 *              acknowledgement. What a proxy then spends per record is what
 *              a client of tiny records costs it. --count counts records.
 *   http       --conns persistent connections (ALPN http/1.1), each sending
 *              "GET / HTTP/1.1" (Host: the --servername) and reading the
 *              whole response (its Content-Length) before the next, in a
 *              loop, to a proxy in HTTP mode in front of `backend --http`.
 *              Every response must be a 200: any other status is an error,
 *              reported with the response's first bytes. --count counts
 *              requests (all connections together). --header "Name: value"
 *              (repeatable) adds a field to every request (the second-factor
 *              phases send "Authorization: Bearer ..." this way); the
 *              request is formatted once, before any connection.
 *
 * A phase ends when --count operations were started or --time seconds have
 * passed, whichever comes first; operations in flight then finish and are
 * counted. Set-up work (tickets for `resumed`, the persistent connections of
 * `keepalive` and `bulk`) happens before the phase. With --sync, the program
 * prints "ready" when set-up is done and waits for a line on stdin before
 * the phase, prints its result (one JSON line) and then waits for stdin to
 * close before it closes its connections: whoever drives it can sample the
 * server exactly around the phase.
 */
#include "bench.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_IO_CHUNK (16 * 1024)
#define LG_OP_TIMEOUT_NS (10ull * 1000000000ull)
#define LG_CLOSE_TIMEOUT_NS (2ull * 1000000000ull)
#define LG_MAX_SAMPLES (20u * 1000u * 1000u)
#define LG_HTTP_HEAD (32 * 1024) /* most bytes of an HTTP response head */
#define LG_MAX_HEADERS 8          /* --header: at most this many */
#define LG_HEADER_MAX (8 * 1024)  /* --header: bytes of one "Name: value" */

enum lg_mode {
    MODE_FULL,
    MODE_RESUMED,
    MODE_KEEPALIVE,
    MODE_BULK,
    MODE_IDLE,
    MODE_TINY,
    MODE_HTTP
};
static const char *const lg_mode_names[] = {"full", "resumed", "keepalive", "bulk",
                                            "idle", "tiny",    "http"};

enum lg_state {
    C_FREE,      /* slot unused */
    C_CONNECT,   /* TCP connect in progress */
    C_HANDSHAKE, /* SSL_connect */
    C_SEND,      /* writing a command */
    C_RECV,      /* reading a fixed-size answer */
    C_DOWN,      /* reading a download */
    C_UP,        /* writing an upload */
    C_TINY,      /* sending an upload made of one-byte records */
    C_HTTP_RECV, /* http: reading a response (head, then body) */
    C_PARKED,    /* connected, nothing to do until told */
    C_SHUTDOWN,  /* close_notify sent, waiting for the peer's close */
};

struct lg_conn {
    int fd;
    SSL *ssl;
    enum lg_state st;
    unsigned char cmd[BENCH_CMD_SIZE];
    size_t off;          /* progress within cmd or the answer */
    size_t want;         /* size of the answer being read */
    uint64_t remaining;  /* C_DOWN / C_UP */
    uint64_t t_conn;     /* when the connection started */
    uint64_t t_op;       /* when the current operation started */
    uint64_t deadline;   /* give up on the current wait after this */
    SSL_SESSION *sess;   /* resumed: the ticket this slot offers next */
    unsigned char *wire; /* tiny: the encrypted records of the current burst */
    size_t wire_len, wire_off, wire_cap;
    char *http;          /* http: the response head being read (LG_HTTP_HEAD) */
    size_t http_len;     /* bytes in http[] */
    bool http_head_done; /* the head is parsed; c->remaining is the body left */
    bool in_phase;       /* started during the measured phase */
    bool dead_noted;
};

/* Options */
static struct sockaddr_in lg_target;
static const char *lg_cert, *lg_key, *lg_cacert, *lg_servername = "localhost";
static const char *lg_ciphersuites = "TLS_AES_128_GCM_SHA256", *lg_groups = "X25519";
static enum lg_mode lg_mode = MODE_FULL;
static int lg_nconns = 16;
static uint64_t lg_count = 1000;
static double lg_time = 5.0;
static bool lg_sync, lg_upload, lg_no_cert;
static bool lg_plain; /* --plain: TCP without TLS (a client-mode proxy's caller) */
static uint64_t lg_chunk = 64ull << 20;
static uint64_t lg_tiny = 1024; /* tiny: one-byte records per burst */
static double lg_min_resumed = 0.9;
static int lg_src_rotate = 64;
static int lg_verbose_errors = 5;

/* State */
static SSL_CTX *lg_ctx;
static int lg_ep = -1;
static struct lg_conn *lg_conns;
static int lg_busy;          /* connections not C_FREE and not C_PARKED */
static bool lg_running;      /* the measured phase may start new operations */
static bool lg_measuring;
static uint64_t lg_phase_start, lg_phase_deadline;
static uint64_t lg_started, lg_done, lg_bytes, lg_resumed_n, lg_connected;
static uint64_t lg_err_connect, lg_err_handshake, lg_err_io, lg_err_timeout, lg_err_closed;
static uint64_t lg_err_status; /* http: responses that were not a well-formed 200 */
static int lg_verbose_status = 3;
static char *lg_http_req; /* http: the request, formatted once (lg_setup_ctx) */
static size_t lg_http_req_len;
static const char *lg_headers[LG_MAX_HEADERS]; /* --header, validated */
static int lg_nheaders;
static uint64_t lg_close_unclean, lg_close_no_notify, lg_tickets;
static uint32_t *lg_lat;     /* latency samples, microseconds */
static size_t lg_nlat, lg_caplat;
static uint32_t *lg_hs_lat;  /* handshake latency samples (idle) */
static size_t lg_nhs, lg_caphs;
static char lg_tls_version[32], lg_tls_cipher[64], lg_tls_group[32];
static unsigned lg_src_next;
static unsigned char lg_upload_data[LG_IO_CHUNK];
static unsigned char lg_scratch[64 * 1024];

static uint64_t lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void lg_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void lg_note_error(struct lg_conn *c, uint64_t *counter, const char *what, int sslerr)
{
    (*counter)++;
    if (lg_verbose_errors > 0) {
        lg_verbose_errors--;
        unsigned long e = ERR_peek_error();
        char buf[256] = "";
        if (e)
            ERR_error_string_n(e, buf, sizeof(buf));
        fprintf(stderr, "loadgen: %s error (state %d, ssl error %d, errno %d %s)%s%s\n", what,
                (int)c->st, sslerr, errno, strerror(errno), buf[0] ? ": " : "", buf);
    }
    ERR_clear_error();
}

/* --plain: a connection's I/O without TLS, with SSL_read's and SSL_write's
 * conventions (> 0: bytes; else lg_io_error() says why, as SSL_get_error()
 * would), so that one state machine drives both kinds of connection. */
static int lg_plain_err; /* the SSL_ERROR_* of the last plain read or write */

static int lg_io_read(struct lg_conn *c, void *buf, int n)
{
    if (c->ssl)
        return SSL_read(c->ssl, buf, n);
    ssize_t r;
    do
        r = recv(c->fd, buf, (size_t)n, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        return (int)r;
    lg_plain_err = r == 0                                      ? SSL_ERROR_ZERO_RETURN
                   : (errno == EAGAIN || errno == EWOULDBLOCK) ? SSL_ERROR_WANT_READ
                                                               : SSL_ERROR_SYSCALL;
    return r == 0 ? 0 : -1;
}

static int lg_io_write(struct lg_conn *c, const void *buf, int n)
{
    if (c->ssl)
        return SSL_write(c->ssl, buf, n);
    ssize_t r;
    do
        r = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        return (int)r;
    lg_plain_err = (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ? SSL_ERROR_WANT_WRITE
                                                                       : SSL_ERROR_SYSCALL;
    return -1;
}

static int lg_io_error(struct lg_conn *c, int r)
{
    return c->ssl ? SSL_get_error(c->ssl, r) : lg_plain_err;
}

static void lg_sample(uint32_t **arr, size_t *n, size_t *cap, uint64_t ns)
{
    if (*n == *cap) {
        if (*cap >= LG_MAX_SAMPLES)
            return;
        size_t ncap = *cap ? *cap * 2 : 4096;
        uint32_t *p = realloc(*arr, ncap * sizeof(**arr));
        if (!p)
            return;
        *arr = p;
        *cap = ncap;
    }
    uint64_t us = ns / 1000;
    (*arr)[(*n)++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Counts the session tickets servers send (their number is part of what a
 * full handshake costs them); the sessions themselves are kept elsewhere. */
static int lg_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    if (lg_measuring)
        lg_tickets++;
    return 0;
}

static void lg_set_state(struct lg_conn *c, enum lg_state st)
{
    bool was_busy = c->st != C_FREE && c->st != C_PARKED;
    bool is_busy = st != C_FREE && st != C_PARKED;
    lg_busy += (int)is_busy - (int)was_busy;
    c->st = st;
}

/* Drops the connection at once (after an error, or a close that timed out). */
static void lg_drop(struct lg_conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    lg_set_state(c, C_FREE);
}

static void lg_start_conn(struct lg_conn *c);

/* idle: at most LG_IDLE_RAMP connections are being set up at a time, so
 * that 2000 connections do not overflow a listen queue at once. */
#define LG_IDLE_RAMP 64
static int lg_idle_next;

static void lg_idle_more(void)
{
    while (lg_mode == MODE_IDLE && lg_measuring && lg_idle_next < lg_nconns &&
           lg_busy < LG_IDLE_RAMP)
        lg_start_conn(&lg_conns[lg_idle_next++]);
}

/* A connection of the full/resumed loop ended (well or not): the slot
 * starts the next one while the phase runs. */
static void lg_slot_next(struct lg_conn *c)
{
    lg_idle_more();
    if ((lg_mode == MODE_FULL || lg_mode == MODE_RESUMED) && lg_running) {
        if (lg_started >= lg_count || lg_now() >= lg_phase_deadline) {
            lg_running = false;
            return;
        }
        lg_started++;
        lg_start_conn(c);
    }
}

static void lg_fail(struct lg_conn *c, uint64_t *counter, const char *what, int sslerr)
{
    lg_note_error(c, counter, what, sslerr);
    lg_drop(c);
    lg_slot_next(c);
}

static void lg_start_conn(struct lg_conn *c)
{
    uint64_t now = lg_now();
    c->t_conn = c->t_op = now;
    c->deadline = now + LG_OP_TIMEOUT_NS;
    c->in_phase = lg_measuring;
    c->dead_noted = false;
    lg_set_state(c, C_CONNECT);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        lg_fail(c, &lg_err_connect, "socket", 0);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Loopback: spread the connections over several source addresses so
     * that thousands of closes a second never run out of ephemeral ports
     * (the client, closing first, keeps each one in TIME_WAIT). */
    if (lg_src_rotate > 1 && (ntohl(lg_target.sin_addr.s_addr) >> 24) == 127) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + (lg_src_next++ % (unsigned)lg_src_rotate));
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            lg_fail(c, &lg_err_connect, "bind", 0);
            return;
        }
    }
    if (connect(c->fd, (struct sockaddr *)&lg_target, sizeof(lg_target)) < 0 &&
        errno != EINPROGRESS) {
        lg_fail(c, &lg_err_connect, "connect", 0);
        return;
    }
    /* Registered after connect(): an unconnected socket would report
     * itself writable at once. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(lg_ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        lg_fail(c, &lg_err_connect, "epoll_ctl", 0);
        return;
    }
    if (lg_plain) { /* connected (EPOLLOUT): straight to the first request */
        return;
    }
    c->ssl = SSL_new(lg_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
        !SSL_set_tlsext_host_name(c->ssl, lg_servername) || !SSL_set1_host(c->ssl, lg_servername))
        lg_die("cannot set up an SSL object");
    if (lg_mode == MODE_RESUMED && c->sess && lg_measuring)
        SSL_set_session(c->ssl, c->sess);
    SSL_set_connect_state(c->ssl);
    /* The EPOLLOUT edge tells when connect() is done; C_CONNECT then
     * checks SO_ERROR. */
}

static void lg_begin_cmd(struct lg_conn *c, int cmd, uint64_t len)
{
    if (lg_mode == MODE_HTTP) { /* every operation is one GET */
        c->off = 0;
        c->t_op = lg_now();
        c->deadline = c->t_op + LG_OP_TIMEOUT_NS;
        lg_set_state(c, C_SEND);
        return;
    }
    memset(c->cmd, 0, sizeof(c->cmd));
    c->cmd[0] = (unsigned char)cmd;
    bench_put_u64(c->cmd + 8, len);
    c->off = 0;
    c->t_op = lg_now();
    c->deadline = c->t_op + LG_OP_TIMEOUT_NS;
    lg_set_state(c, C_SEND);
}

static void lg_begin_close(struct lg_conn *c)
{
    c->deadline = lg_now() + LG_CLOSE_TIMEOUT_NS;
    lg_set_state(c, C_SHUTDOWN);
    c->off = 0; /* 0: close_notify not sent yet */
}

/* What a connection does next once it is idle: within the phase, another
 * operation; otherwise it parks. */
static void lg_next_op(struct lg_conn *c)
{
    if (!lg_running || !c->in_phase) {
        lg_set_state(c, C_PARKED);
        return;
    }
    if (lg_started >= lg_count || lg_now() >= lg_phase_deadline) {
        lg_running = false;
        lg_set_state(c, C_PARKED);
        return;
    }
    if (lg_mode == MODE_KEEPALIVE || lg_mode == MODE_HTTP) {
        lg_started++;
        lg_begin_cmd(c, BENCH_CMD_REQUEST, 0);
    } else if (lg_mode == MODE_BULK) {
        uint64_t len = lg_chunk;
        if (lg_count - lg_started < len)
            len = lg_count - lg_started;
        lg_started += len;
        lg_begin_cmd(c, lg_upload ? BENCH_CMD_UPLOAD : BENCH_CMD_DOWNLOAD, len);
    } else if (lg_mode == MODE_TINY) {
        uint64_t len = lg_tiny;
        if (lg_count - lg_started < len)
            len = lg_count - lg_started;
        lg_started += len;
        lg_begin_cmd(c, BENCH_CMD_UPLOAD, len);
    } else {
        lg_set_state(c, C_PARKED);
    }
}

static void lg_handshake_done(struct lg_conn *c)
{
    uint64_t now = lg_now();
    lg_connected++;
    if (!lg_tls_version[0] && c->ssl) {
        snprintf(lg_tls_version, sizeof(lg_tls_version), "%s", SSL_get_version(c->ssl));
        snprintf(lg_tls_cipher, sizeof(lg_tls_cipher), "%s", SSL_get_cipher_name(c->ssl));
        /* the macro returns SSL_ctrl()'s long; group ids fit in an int */
        const char *g = SSL_group_to_name(c->ssl, (int)SSL_get_negotiated_group(c->ssl));
        snprintf(lg_tls_group, sizeof(lg_tls_group), "%s", g ? g : "?");
    }
    if (lg_measuring && c->in_phase && lg_mode == MODE_IDLE)
        lg_sample(&lg_hs_lat, &lg_nhs, &lg_caphs, now - c->t_conn);
    /* Every connection starts with one small request, so that the proxy
     * has opened its backend connection before anything is measured. */
    lg_begin_cmd(c, BENCH_CMD_REQUEST, 0);
    c->t_op = c->t_conn;
}

/* One command answered. */
static void lg_op_done(struct lg_conn *c)
{
    uint64_t now = lg_now();
    bool first = c->t_op == c->t_conn; /* the request right after the handshake */
    if (lg_mode == MODE_FULL || lg_mode == MODE_RESUMED) {
        if (lg_measuring && c->in_phase) {
            lg_done++;
            lg_sample(&lg_lat, &lg_nlat, &lg_caplat, now - c->t_conn);
            if (c->ssl && SSL_session_reused(c->ssl))
                lg_resumed_n++;
        }
        if (lg_mode == MODE_RESUMED) {
            /* Keep the newest ticket: some servers' tickets are single-use. */
            /* A copy, not the live connection's session object: OpenSSL
             * marks that one not resumable if the connection later ends
             * without a close_notify. */
            SSL_SESSION *s = SSL_get1_session(c->ssl);
            SSL_SESSION *copy = s && SSL_SESSION_is_resumable(s) ? SSL_SESSION_dup(s) : NULL;
            SSL_SESSION_free(s);
            if (copy) {
                SSL_SESSION_free(c->sess);
                c->sess = copy;
            }
        }
        lg_begin_close(c);
        return;
    }
    if (!first && lg_measuring && c->in_phase) {
        if (lg_mode == MODE_KEEPALIVE || lg_mode == MODE_HTTP) {
            lg_done++;
            lg_sample(&lg_lat, &lg_nlat, &lg_caplat, now - c->t_op);
        } else if (lg_mode == MODE_BULK) {
            lg_done++;
            lg_bytes += bench_get_u64(c->cmd + 8);
        } else if (lg_mode == MODE_TINY) {
            lg_done++;
            lg_bytes += bench_get_u64(c->cmd + 8); /* one byte per record */
            lg_sample(&lg_lat, &lg_nlat, &lg_caplat, now - c->t_op);
        }
    }
    lg_next_op(c);
    if (lg_mode == MODE_IDLE && first && lg_measuring && c->in_phase) {
        lg_done++;
        lg_idle_more();
    }
}

/* tiny: encrypts c->remaining one-byte records into c->wire, all at once,
 * so that they leave in one send (as a client batching small writes would
 * put them on the wire). The records go through a memory BIO swapped in
 * for the socket's write side for the burst; the sequence numbers stay
 * those of the connection. Returns 0, or -1. */
static int lg_tiny_encrypt(struct lg_conn *c)
{
    BIO *sock = SSL_get_wbio(c->ssl), *mem = BIO_new(BIO_s_mem());
    const unsigned char one = 't';
    uint64_t i;
    char *data;
    long n;
    int rc = -1;

    if (mem == NULL || !BIO_up_ref(sock)) {
        BIO_free(mem);
        return -1;
    }
    SSL_set0_wbio(c->ssl, mem); /* the SSL now owns mem */
    for (i = 0; i < c->remaining; i++)
        if (SSL_write(c->ssl, &one, 1) != 1)
            goto out;
    n = BIO_get_mem_data(mem, &data);
    if (n <= 0)
        goto out;
    if ((size_t)n > c->wire_cap) {
        unsigned char *p = realloc(c->wire, (size_t)n);
        if (p == NULL)
            goto out;
        c->wire = p;
        c->wire_cap = (size_t)n;
    }
    memcpy(c->wire, data, (size_t)n);
    c->wire_len = (size_t)n;
    c->wire_off = 0;
    rc = 0;
out:
    SSL_set0_wbio(c->ssl, sock); /* frees mem, the socket BIO is back */
    return rc;
}

/* http: reports a response that is not what it must be, with its first
 * bytes (printable, the rest escaped), for the first few. */
static void lg_http_bad(struct lg_conn *c, const char *why)
{
    lg_err_status++;
    if (lg_verbose_status > 0) {
        lg_verbose_status--;
        char shown[400];
        size_t o = 0;
        for (size_t i = 0; i < c->http_len && i < 200 && o + 5 < sizeof(shown); i++) {
            unsigned char ch = (unsigned char)c->http[i];
            if (ch == '\r')
                o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\r");
            else if (ch == '\n')
                o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\n");
            else if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
                o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x", ch);
            else
                shown[o++] = (char)ch;
        }
        shown[o] = '\0';
        fprintf(stderr, "loadgen: http: %s; the response began: \"%s\"%s\n", why, shown,
                c->http_len > 200 ? "..." : "");
    }
    lg_drop(c);
}

/* http: the value of the first header `name` (lower case, with its colon)
 * in head[0, len), spaces trimmed; NULL when there is none. */
static const char *lg_http_field(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *end = head + len;
    const char *p = memchr(head, '\n', len); /* after the status line */
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            return NULL;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* http: parses the response head in c->http once it is complete. Returns 1
 * when it was (c->remaining then holds the body bytes still to read), 0
 * when more bytes are needed, -1 when the response is not a 200 with a
 * Content-Length (the connection is dropped and counted). */
static int lg_http_parse_head(struct lg_conn *c)
{
    const char *h = c->http;
    const char *end = c->http_len >= 4 ? memmem(h, c->http_len, "\r\n\r\n", 4) : NULL;
    if (!end) {
        if (c->http_len == LG_HTTP_HEAD) {
            lg_http_bad(c, "response head over 32 KiB");
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)(end - h) + 4;
    if (head_len < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ') {
        lg_http_bad(c, "not an HTTP/1.x response");
        return -1;
    }
    if (memcmp(h + 9, "200", 3) != 0 || (head_len > 12 && h[12] != ' ' && h[12] != '\r')) {
        char why[64];
        snprintf(why, sizeof(why), "status %.3s, not 200", h + 9);
        lg_http_bad(c, why);
        return -1;
    }
    size_t vlen;
    if (lg_http_field(h, head_len, "transfer-encoding:", &vlen)) {
        lg_http_bad(c, "a Transfer-Encoding response (this load generator reads Content-Length)");
        return -1;
    }
    const char *v = lg_http_field(h, head_len, "content-length:", &vlen);
    uint64_t cl = 0;
    if (!v || vlen == 0 || vlen > 12) {
        lg_http_bad(c, "no usable Content-Length");
        return -1;
    }
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9') {
            lg_http_bad(c, "a malformed Content-Length");
            return -1;
        }
        cl = cl * 10 + (uint64_t)(v[i] - '0');
    }
    uint64_t have = c->http_len - head_len;
    if (have > cl) {
        lg_http_bad(c, "more bytes than the response's Content-Length");
        return -1;
    }
    c->remaining = cl - have;
    c->http_head_done = true;
    if (lg_measuring && c->in_phase)
        lg_bytes += cl;
    return 1;
}

/* Drives one connection until it would block. */
static void lg_drive(struct lg_conn *c, uint32_t events)
{
    for (;;) {
        int r, e;
        switch (c->st) {
        case C_FREE:
            return;
        case C_PARKED:
            if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !c->dead_noted) {
                c->dead_noted = true;
                lg_note_error(c, &lg_err_closed, "peer closed a held connection", 0);
            }
            return;
        case C_CONNECT: {
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr) {
                errno = soerr;
                lg_fail(c, &lg_err_connect, "connect", 0);
                return;
            }
            if (!c->ssl) { /* --plain */
                lg_handshake_done(c);
                break;
            }
            lg_set_state(c, C_HANDSHAKE);
            break;
        }
        case C_HANDSHAKE:
            r = SSL_connect(c->ssl);
            if (r == 1) {
                lg_handshake_done(c);
                break;
            }
            e = lg_io_error(c, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            lg_fail(c, &lg_err_handshake, "handshake", e);
            return;
        case C_SEND:
            if (lg_mode == MODE_HTTP) {
                r = lg_io_write(c, lg_http_req + c->off, (int)(lg_http_req_len - c->off));
                if (r <= 0) {
                    e = lg_io_error(c, r);
                    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                        return;
                    lg_fail(c, &lg_err_io, "write", e);
                    return;
                }
                c->off += (size_t)r;
                if (c->off < lg_http_req_len)
                    break;
                if (!c->http && !(c->http = malloc(LG_HTTP_HEAD)))
                    lg_die("out of memory");
                c->http_len = 0;
                c->http_head_done = false;
                lg_set_state(c, C_HTTP_RECV);
                break;
            }
            r = lg_io_write(c, c->cmd + c->off, (int)(sizeof(c->cmd) - c->off));
            if (r <= 0) {
                e = lg_io_error(c, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                lg_fail(c, &lg_err_io, "write", e);
                return;
            }
            c->off += (size_t)r;
            if (c->off < sizeof(c->cmd))
                break;
            c->off = 0;
            if (c->cmd[0] == BENCH_CMD_DOWNLOAD) {
                c->remaining = bench_get_u64(c->cmd + 8);
                lg_set_state(c, C_DOWN);
            } else if (c->cmd[0] == BENCH_CMD_UPLOAD) {
                c->remaining = bench_get_u64(c->cmd + 8);
                c->wire_len = c->wire_off = 0;
                lg_set_state(c, lg_mode == MODE_TINY ? C_TINY : C_UP);
            } else {
                c->want = BENCH_RESP_SIZE;
                lg_set_state(c, C_RECV);
            }
            break;
        case C_RECV:
            r = lg_io_read(c, lg_scratch, (int)(c->want - c->off));
            if (r <= 0) {
                e = lg_io_error(c, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                lg_fail(c, &lg_err_io, c->t_op == c->t_conn ? "first read" : "read", e);
                return;
            }
            c->off += (size_t)r;
            if (c->off == c->want)
                lg_op_done(c);
            break;
        case C_HTTP_RECV:
            if (c->http_head_done && c->remaining == 0) {
                lg_op_done(c);
                break;
            }
            if (c->http_head_done)
                r = lg_io_read(c, lg_scratch,
                             c->remaining < sizeof(lg_scratch) ? (int)c->remaining
                                                               : (int)sizeof(lg_scratch));
            else
                r = lg_io_read(c, c->http + c->http_len, (int)(LG_HTTP_HEAD - c->http_len));
            if (r <= 0) {
                e = lg_io_error(c, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                lg_fail(c, &lg_err_io, c->t_op == c->t_conn ? "first read" : "read", e);
                return;
            }
            if (c->http_head_done) {
                c->remaining -= (uint64_t)r;
                break;
            }
            c->http_len += (size_t)r;
            if (lg_http_parse_head(c) < 0)
                return; /* dropped; a persistent connection is not replaced */
            break;
        case C_DOWN:
            if (c->remaining == 0) {
                lg_op_done(c);
                break;
            }
            r = lg_io_read(c, lg_scratch,
                         c->remaining < sizeof(lg_scratch) ? (int)c->remaining
                                                           : (int)sizeof(lg_scratch));
            if (r <= 0) {
                e = lg_io_error(c, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                lg_fail(c, &lg_err_io, "bulk read", e);
                return;
            }
            c->remaining -= (uint64_t)r;
            c->deadline = lg_now() + LG_OP_TIMEOUT_NS;
            break;
        case C_UP:
            if (c->remaining == 0) {
                c->off = 0;
                c->want = BENCH_CMD_SIZE;
                lg_set_state(c, C_RECV);
                break;
            }
            r = lg_io_write(c, lg_upload_data,
                          c->remaining < sizeof(lg_upload_data) ? (int)c->remaining
                                                                : (int)sizeof(lg_upload_data));
            if (r <= 0) {
                e = lg_io_error(c, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                lg_fail(c, &lg_err_io, "bulk write", e);
                return;
            }
            c->remaining -= (uint64_t)r;
            c->deadline = lg_now() + LG_OP_TIMEOUT_NS;
            break;
        case C_TINY:
            if (c->wire_len == 0 && lg_tiny_encrypt(c) != 0) {
                lg_fail(c, &lg_err_io, "tiny records", 0);
                return;
            }
            while (c->wire_off < c->wire_len) {
                ssize_t w = send(c->fd, c->wire + c->wire_off, c->wire_len - c->wire_off,
                                 MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    return; /* the EPOLLOUT edge brings us back */
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    lg_fail(c, &lg_err_io, "tiny send", 0);
                    return;
                }
                c->wire_off += (size_t)w;
                c->deadline = lg_now() + LG_OP_TIMEOUT_NS;
            }
            c->off = 0;
            c->want = BENCH_CMD_SIZE;
            lg_set_state(c, C_RECV);
            break;
        case C_SHUTDOWN:
            if (c->off == 0 && !c->ssl) { /* --plain: our FIN, then wait for theirs */
                shutdown(c->fd, SHUT_WR);
                c->off = 1;
                break;
            }
            if (c->off == 0) {
                r = SSL_shutdown(c->ssl);
                if (r < 0) {
                    e = lg_io_error(c, r);
                    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                        return;
                    ERR_clear_error();
                    lg_close_unclean++;
                    lg_drop(c);
                    lg_slot_next(c);
                    return;
                }
                c->off = 1;
                break;
            }
            /* Wait for the peer's close_notify or EOF, so that the server
             * sees an orderly close, not a reset. */
            r = lg_io_read(c, lg_scratch, (int)sizeof(lg_scratch));
            if (r > 0)
                break;
            e = lg_io_error(c, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_SSL &&
                ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                lg_close_no_notify++; /* a TCP close without close_notify */
            else if (e != SSL_ERROR_ZERO_RETURN)
                lg_close_unclean++;
            ERR_clear_error();
            lg_drop(c);
            lg_slot_next(c);
            return;
        }
    }
}

static void lg_check_timeouts(void)
{
    uint64_t now = lg_now();
    for (int i = 0; i < lg_nconns; i++) {
        struct lg_conn *c = &lg_conns[i];
        if (c->st == C_FREE || c->st == C_PARKED || now < c->deadline)
            continue;
        if (c->st == C_SHUTDOWN) {
            lg_close_unclean++;
            lg_drop(c);
            lg_slot_next(c);
        } else {
            errno = ETIMEDOUT;
            lg_fail(c, &lg_err_timeout, "timeout", 0);
        }
    }
}

/* Runs the loop until no connection is busy (or `limit` passes). */
static void lg_loop(uint64_t limit)
{
    struct epoll_event evs[512];
    uint64_t next_check = lg_now() + 100000000ull;
    while (lg_busy > 0) {
        uint64_t now = lg_now();
        if (now >= limit)
            break;
        if (lg_running && now >= lg_phase_deadline)
            lg_running = false;
        if (now >= next_check) {
            lg_check_timeouts();
            next_check = now + 100000000ull;
        }
        int n = epoll_wait(lg_ep, evs, 512, 50);
        if (n < 0 && errno != EINTR)
            lg_die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            lg_drive(evs[i].data.ptr, evs[i].events);
    }
}

static int lg_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double lg_pct(uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void lg_wait_stdin_line(void)
{
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return;
}

static void lg_wait_stdin_eof(void)
{
    char buf[256];
    while (fread(buf, 1, sizeof(buf), stdin) > 0)
        ;
}

static void lg_usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --connect IPV4:PORT --cert FILE --key FILE --cacert FILE\n"
            "               --mode full|resumed|keepalive|bulk|idle|tiny|http [options]\n"
            "  --conns N          concurrent connections (default 16)\n"
            "  --count N          full/resumed: connections; keepalive, http: requests;\n"
            "                     bulk: bytes (K/M/G suffixes); idle: unused (default 1000)\n"
            "  --time SEC         phase time limit (default 5)\n"
            "  --bulk-dir down|up bulk direction (default down: backend to client)\n"
            "  --chunk BYTES      bulk: bytes per command (default 64M)\n"
            "  --tiny N           tiny: one-byte records per burst (default 1024);\n"
            "                     --count then counts records\n"
            "  --min-resumed F    resumed: fail below this fraction (default 0.9)\n"
            "  --servername NAME  SNI, the name the server certificate must carry, and\n"
            "                     the Host of http requests (default localhost)\n"
            "  --ciphersuites S   TLS 1.3 suites offered (default TLS_AES_128_GCM_SHA256)\n"
            "  --groups G         key exchange groups offered (default X25519)\n"
            "  --src-rotate N     loopback: source addresses 127.0.0.1..N (default 64)\n"
            "  --header \"N: V\"    http: a field added to every request (repeatable, at\n"
            "                     most 8, each at most 8 KiB, no CR, LF or NUL)\n"
            "  --no-client-cert   send no client certificate (to check it is refused)\n"
            "  --plain            plain TCP, no TLS (full, keepalive, bulk, idle only; no\n"
            "                     --cert, --key, --cacert): the caller of a client-mode\n"
            "                     proxy, which does the TLS towards its target\n"
            "  --sync             print \"ready\", wait for a stdin line, run, print the\n"
            "                     result, wait for stdin EOF, then close\n"
            "Prints one JSON line. Exit: 0 ok, 1 failure, 2 usage, 3 resumption below\n"
            "--min-resumed.\n");
}

static uint64_t lg_parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) {
        lg_usage(stderr);
        exit(2);
    }
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1048576.0; end++; break;
    case 'g': case 'G': v *= 1073741824.0; end++; break;
    default: break;
    }
    if (*end) {
        lg_usage(stderr);
        exit(2);
    }
    return (uint64_t)v;
}

/* --header "Name: value": a token name (RFC 9110 tchar), a colon, a value
 * of visible characters, spaces and tabs only (no CR, LF, NUL or other
 * control character that could split or end the request head). */
static void lg_add_header(const char *h)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t len = strlen(h), i = 0;
    if (lg_nheaders == LG_MAX_HEADERS)
        lg_die("--header: at most %d", LG_MAX_HEADERS);
    if (len > LG_HEADER_MAX)
        lg_die("--header: %zu bytes, at most %d", len, LG_HEADER_MAX);
    while (i < len && (((h[i] | 0x20) >= 'a' && (h[i] | 0x20) <= 'z') ||
                       (h[i] >= '0' && h[i] <= '9') || strchr(tchar, h[i])))
        i++;
    if (i == 0 || i == len || h[i] != ':')
        lg_die("--header: \"Name: value\" wanted (a token name, then a colon)");
    for (i++; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            lg_die("--header: a control character (CR, LF, ...) in the value of %.*s",
                   (int)(strchr(h, ':') - h), h);
    }
    lg_headers[lg_nheaders++] = h;
}

static void lg_parse_args(int argc, char **argv)
{
    const char *connect_to = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            lg_usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--sync")) {
            lg_sync = true;
            continue;
        }
        if (!strcmp(a, "--plain")) {
            lg_plain = true;
            continue;
        }
        if (!strcmp(a, "--no-client-cert")) {
            lg_no_cert = true;
            continue;
        }
        if (i + 1 >= argc) {
            lg_usage(stderr);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--connect")) connect_to = v;
        else if (!strcmp(a, "--cert")) lg_cert = v;
        else if (!strcmp(a, "--key")) lg_key = v;
        else if (!strcmp(a, "--cacert")) lg_cacert = v;
        else if (!strcmp(a, "--servername")) lg_servername = v;
        else if (!strcmp(a, "--ciphersuites")) lg_ciphersuites = v;
        else if (!strcmp(a, "--groups")) lg_groups = v;
        else if (!strcmp(a, "--conns")) lg_nconns = atoi(v);
        else if (!strcmp(a, "--count")) lg_count = lg_parse_size(v);
        else if (!strcmp(a, "--time")) lg_time = atof(v);
        else if (!strcmp(a, "--chunk")) lg_chunk = lg_parse_size(v);
        else if (!strcmp(a, "--tiny")) lg_tiny = lg_parse_size(v);
        else if (!strcmp(a, "--min-resumed")) lg_min_resumed = atof(v);
        else if (!strcmp(a, "--src-rotate")) lg_src_rotate = atoi(v);
        else if (!strcmp(a, "--header")) lg_add_header(v);
        else if (!strcmp(a, "--bulk-dir")) {
            if (strcmp(v, "up") && strcmp(v, "down")) {
                lg_usage(stderr);
                exit(2);
            }
            lg_upload = !strcmp(v, "up");
        } else if (!strcmp(a, "--mode")) {
            size_t m;
            for (m = 0; m < sizeof(lg_mode_names) / sizeof(lg_mode_names[0]); m++)
                if (!strcmp(v, lg_mode_names[m]))
                    break;
            if (m == sizeof(lg_mode_names) / sizeof(lg_mode_names[0])) {
                lg_usage(stderr);
                exit(2);
            }
            lg_mode = (enum lg_mode)m;
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n", a);
            lg_usage(stderr);
            exit(2);
        }
    }
    if (!connect_to || (!lg_plain && (!lg_cert || !lg_key || !lg_cacert)) || lg_nconns <= 0 || lg_time <= 0 ||
        lg_chunk == 0 || lg_tiny == 0 || lg_tiny > (1u << 20)) {
        lg_usage(stderr);
        exit(2);
    }
    if (lg_plain && lg_mode != MODE_FULL && lg_mode != MODE_KEEPALIVE && lg_mode != MODE_BULK &&
        lg_mode != MODE_IDLE)
        lg_die("--plain is for --mode full, keepalive, bulk or idle");
    if (lg_nheaders && lg_mode != MODE_HTTP)
        lg_die("--header is for --mode http");
    char host[64];
    const char *colon = strrchr(connect_to, ':');
    if (!colon || (size_t)(colon - connect_to) >= sizeof(host))
        lg_die("bad --connect %s", connect_to);
    memcpy(host, connect_to, (size_t)(colon - connect_to));
    host[colon - connect_to] = '\0';
    lg_target.sin_family = AF_INET;
    lg_target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &lg_target.sin_addr) != 1 || lg_target.sin_port == 0)
        lg_die("bad --connect %s (IPv4:PORT)", connect_to);
}

static void lg_setup_ctx(void)
{
    lg_ctx = SSL_CTX_new(TLS_client_method());
    if (!lg_ctx || !SSL_CTX_set_min_proto_version(lg_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(lg_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(lg_ctx, lg_ciphersuites) ||
        !SSL_CTX_set1_groups_list(lg_ctx, lg_groups))
        lg_die("cannot configure TLS 1.3 (%s, %s)", lg_ciphersuites, lg_groups);
    if (!lg_no_cert && SSL_CTX_use_certificate_chain_file(lg_ctx, lg_cert) != 1)
        lg_die("cannot load %s", lg_cert);
    if (!lg_no_cert && (SSL_CTX_use_PrivateKey_file(lg_ctx, lg_key, SSL_FILETYPE_PEM) != 1 ||
                        SSL_CTX_check_private_key(lg_ctx) != 1))
        lg_die("cannot load %s", lg_key);
    if (SSL_CTX_load_verify_locations(lg_ctx, lg_cacert, NULL) != 1)
        lg_die("cannot load %s", lg_cacert);
    SSL_CTX_set_verify(lg_ctx, SSL_VERIFY_PEER, NULL);
    /* No client-side store: a session is offered only when this program
     * says so (resumed mode); the callback only counts tickets. */
    SSL_CTX_set_session_cache_mode(lg_ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(lg_ctx, lg_on_new_session);
    SSL_CTX_set_mode(lg_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (lg_mode == MODE_HTTP) {
        static const unsigned char alpn[] = "\x08http/1.1";
        if (SSL_CTX_set_alpn_protos(lg_ctx, alpn, sizeof(alpn) - 1) != 0)
            lg_die("cannot set ALPN");
        /* The request, once: the hot loop only writes these bytes. */
        size_t cap = 64 + strlen(lg_servername);
        for (int i = 0; i < lg_nheaders; i++)
            cap += strlen(lg_headers[i]) + 2;
        if (!(lg_http_req = malloc(cap)))
            lg_die("out of memory");
        int n = snprintf(lg_http_req, cap, "GET / HTTP/1.1\r\nHost: %s\r\n", lg_servername);
        if (n < 0 || (size_t)n >= cap)
            lg_die("--servername too long");
        size_t len = (size_t)n;
        for (int i = 0; i < lg_nheaders; i++) {
            size_t hl = strlen(lg_headers[i]);
            memcpy(lg_http_req + len, lg_headers[i], hl);
            memcpy(lg_http_req + len + hl, "\r\n", 2);
            len += hl + 2;
        }
        memcpy(lg_http_req + len, "\r\n", 2);
        lg_http_req_len = len + 2;
    }
}

static void lg_print_result(void)
{
    double elapsed = (double)(lg_now() - lg_phase_start) / 1e9;
    if (lg_nlat) /* (qsort wants an array, even of nothing) */
        qsort(lg_lat, lg_nlat, sizeof(*lg_lat), lg_cmp_u32);
    if (lg_nhs)
        qsort(lg_hs_lat, lg_nhs, sizeof(*lg_hs_lat), lg_cmp_u32);
    uint64_t errors = lg_err_connect + lg_err_handshake + lg_err_io + lg_err_timeout +
                      lg_err_closed + lg_err_status;
    double resumed_frac = lg_done ? (double)lg_resumed_n / (double)lg_done : 0;
    printf("{\"mode\":\"%s\",\"conns\":%d,\"ops\":%llu,\"elapsed_s\":%.4f,\"ops_per_s\":%.1f,"
           "\"p50_us\":%.0f,\"p99_us\":%.0f,\"handshake_p50_us\":%.0f,\"handshake_p99_us\":%.0f,"
           "\"bytes\":%llu,\"gib_per_s\":%.4f,\"resumed\":%llu,\"resumed_fraction\":%.4f,"
           "\"connected\":%llu,\"errors\":%llu,\"err_connect\":%llu,\"err_handshake\":%llu,"
           "\"err_io\":%llu,\"err_timeout\":%llu,\"err_peer_closed\":%llu,\"err_status\":%llu,"
           "\"unclean_close\":%llu,\"close_without_notify\":%llu,\"tickets\":%llu,"
           "\"tls_version\":\"%s\",\"cipher\":\"%s\",\"group\":\"%s\"}\n",
           lg_mode_names[lg_mode], lg_nconns, (unsigned long long)lg_done, elapsed,
           elapsed > 0 ? (double)lg_done / elapsed : 0, lg_pct(lg_lat, lg_nlat, 0.50),
           lg_pct(lg_lat, lg_nlat, 0.99), lg_pct(lg_hs_lat, lg_nhs, 0.50),
           lg_pct(lg_hs_lat, lg_nhs, 0.99), (unsigned long long)lg_bytes,
           elapsed > 0 ? (double)lg_bytes / 1073741824.0 / elapsed : 0,
           (unsigned long long)lg_resumed_n, resumed_frac, (unsigned long long)lg_connected,
           (unsigned long long)errors, (unsigned long long)lg_err_connect,
           (unsigned long long)lg_err_handshake, (unsigned long long)lg_err_io,
           (unsigned long long)lg_err_timeout, (unsigned long long)lg_err_closed,
           (unsigned long long)lg_err_status, (unsigned long long)lg_close_unclean,
           (unsigned long long)lg_close_no_notify, (unsigned long long)lg_tickets,
           lg_tls_version, lg_tls_cipher, lg_tls_group);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    lg_parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)lg_nconns + 32)
        lg_die("RLIMIT_NOFILE %llu is too low for %d connections",
               (unsigned long long)rl.rlim_cur, lg_nconns);
    memset(lg_upload_data, 'u', sizeof(lg_upload_data));
    if (!lg_plain)
        lg_setup_ctx();
    lg_ep = epoll_create1(EPOLL_CLOEXEC);
    lg_conns = calloc((size_t)lg_nconns, sizeof(*lg_conns));
    if (lg_ep < 0 || !lg_conns)
        lg_die("out of resources");
    for (int i = 0; i < lg_nconns; i++)
        lg_conns[i].fd = -1;

    /* Set-up, not measured. */
    uint64_t setup_limit = lg_now() + 60ull * 1000000000ull;
    if (lg_mode == MODE_RESUMED) {
        /* One full handshake per slot to get its first ticket. */
        for (int i = 0; i < lg_nconns; i++)
            lg_start_conn(&lg_conns[i]);
        lg_loop(setup_limit);
        int have = 0;
        for (int i = 0; i < lg_nconns; i++)
            have += lg_conns[i].sess != NULL;
        if (have == 0)
            lg_die("resumed: the server gave no resumable session (no TLS 1.3 ticket)");
    } else if (lg_mode == MODE_KEEPALIVE || lg_mode == MODE_BULK || lg_mode == MODE_TINY ||
               lg_mode == MODE_HTTP) {
        for (int i = 0; i < lg_nconns; i++)
            lg_start_conn(&lg_conns[i]);
        lg_loop(setup_limit);
        int parked = 0;
        for (int i = 0; i < lg_nconns; i++)
            parked += lg_conns[i].st == C_PARKED;
        if (parked == 0)
            lg_die("%s: no connection could be set up", lg_mode_names[lg_mode]);
    }
    lg_connected = 0;
    lg_err_connect = lg_err_handshake = lg_err_io = lg_err_timeout = lg_err_closed = 0;
    lg_err_status = 0;
    lg_close_unclean = lg_close_no_notify = 0;

    if (lg_sync) {
        printf("ready\n");
        fflush(stdout);
        lg_wait_stdin_line();
    }

    /* The measured phase. */
    lg_phase_start = lg_now();
    lg_phase_deadline = lg_phase_start + (uint64_t)(lg_time * 1e9);
    lg_measuring = lg_running = true;
    uint64_t limit = lg_phase_deadline + 30ull * 1000000000ull;
    switch (lg_mode) {
    case MODE_FULL:
    case MODE_RESUMED:
        for (int i = 0; i < lg_nconns && lg_started < lg_count; i++) {
            lg_started++;
            lg_start_conn(&lg_conns[i]);
        }
        break;
    case MODE_KEEPALIVE:
    case MODE_BULK:
    case MODE_TINY:
    case MODE_HTTP:
        for (int i = 0; i < lg_nconns; i++) {
            if (lg_conns[i].st == C_PARKED) {
                lg_conns[i].in_phase = true;
                lg_next_op(&lg_conns[i]);
                lg_drive(&lg_conns[i], 0);
            }
        }
        break;
    case MODE_IDLE:
        lg_idle_more();
        break;
    }
    lg_loop(limit);
    lg_running = false;
    lg_print_result();

    int status = 0;
    if (lg_done == 0) {
        fprintf(stderr, "loadgen: %s: nothing completed\n", lg_mode_names[lg_mode]);
        status = 1;
    } else if (lg_mode == MODE_RESUMED && (double)lg_resumed_n < lg_min_resumed * (double)lg_done) {
        fprintf(stderr,
                "loadgen: RESUMPTION FAILED: only %llu of %llu connections resumed (%.1f%%, "
                "below %.0f%%)\n",
                (unsigned long long)lg_resumed_n, (unsigned long long)lg_done,
                100.0 * (double)lg_resumed_n / (double)lg_done, 100.0 * lg_min_resumed);
        status = 3;
    }

    if (lg_sync)
        lg_wait_stdin_eof();
    /* Orderly close of whatever is still open. */
    lg_measuring = false;
    for (int i = 0; i < lg_nconns; i++) {
        struct lg_conn *c = &lg_conns[i];
        if (c->st == C_PARKED) {
            lg_begin_close(c);
            lg_drive(c, 0);
        }
    }
    lg_loop(lg_now() + 5ull * 1000000000ull);
    for (int i = 0; i < lg_nconns; i++) {
        if (lg_conns[i].st != C_FREE)
            lg_drop(&lg_conns[i]);
        SSL_SESSION_free(lg_conns[i].sess);
        free(lg_conns[i].wire);
        free(lg_conns[i].http);
    }
    free(lg_conns);
    free(lg_http_req);
    free(lg_lat);
    free(lg_hs_lat);
    SSL_CTX_free(lg_ctx);
    close(lg_ep);
    return status;
}
