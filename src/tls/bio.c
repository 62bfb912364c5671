/*
 * bio.c - the socket BIO under every TLS connection.
 *
 * OpenSSL's socket BIO is replaced by this small one for two reasons:
 *  - it tells the connection when a read came back short. On an
 *    edge-triggered socket a short read means the kernel buffer is empty,
 *    so the connection can wait for the next EPOLLIN instead of issuing a
 *    read that can only return EAGAIN: one system call saved per message;
 *  - it sends with MSG_MORE while more records of the same write follow,
 *    and for a TLS 1.3 session ticket, so the kernel sends one segment per
 *    burst.
 */
#include "tls_int.h"

#include <errno.h>
#include <sys/socket.h>

#include <openssl/bio.h>

static BIO_METHOD *sd_bio_method;

static int sd_bio_read(BIO *b, char *buf, int len)
{
    struct sd_tls_conn *c = BIO_get_data(b);
    ssize_t r;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    /* Read dry and no readiness edge since: the read could only return
     * EAGAIN (typically OpenSSL asking for the client's next flight right
     * after sending ours). After a hang-up there is no further edge, so
     * then every read is really made. */
    if (c->read_dry && !c->hup) {
        BIO_set_retry_read(b);
        return -1;
    }
    do {
        r = recv(c->s.fd, buf, (size_t)len, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_read(b);
            c->read_dry = 1;
        }
        return -1;
    }
    c->read_dry = r < len; /* only the last read of an SSL_read counts */
    if (r > 0)
        c->got_bytes = 1;
    if (r == 0)
        c->read_eof = 1; /* OpenSSL asks BIO_CTRL_EOF to tell EOF from errors */
    return (int)r;
}

static int sd_bio_write(BIO *b, const char *buf, int len)
{
    struct sd_tls_conn *c = BIO_get_data(b);
    ssize_t w;
    int more;

    BIO_clear_retry_flags(b);
    /* A TLS 1.3 session ticket is not urgent: with MSG_MORE the kernel holds
     * it until the next bytes to this client (in practice the first
     * response) or the client's next segment, and sends both in one packet
     * instead of paying a whole loopback/network send for 79 bytes. */
    more = c->write_more || SSL_get_state(c->ssl) == TLS_ST_SW_SESSION_TICKET;
    do {
        w = send(c->s.fd, buf, (size_t)len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    } while (w < 0 && errno == EINTR);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return w < 0 ? -1 : (int)w;
}

static long sd_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const struct sd_tls_conn *c = BIO_get_data(b);

    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* writes are not buffered here */
    case BIO_CTRL_EOF:
        return c->read_eof;
    case BIO_C_GET_FD:
        if (ptr != NULL)
            *(int *)ptr = c->s.fd;
        return c->s.fd;
    default:
        return 0;
    }
}

static int sd_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* Once per process (sd_tls_init). Returns 0, or -1 (OpenSSL's queue says
 * why). */
int sd_tls_bio_init(void)
{
    if (sd_bio_method != NULL)
        return 0;
    sd_bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "steeldoor socket");
    if (sd_bio_method == NULL || !BIO_meth_set_read(sd_bio_method, sd_bio_read) ||
        !BIO_meth_set_write(sd_bio_method, sd_bio_write) ||
        !BIO_meth_set_ctrl(sd_bio_method, sd_bio_ctrl) ||
        !BIO_meth_set_create(sd_bio_method, sd_bio_create))
        return -1;
    return 0;
}

/* A socket BIO over c's fd, reporting to c. Returns a new BIO (the caller
 * hands it to the SSL), or NULL. */
BIO *sd_tls_bio_new(struct sd_tls_conn *c)
{
    BIO *bio = sd_bio_method != NULL ? BIO_new(sd_bio_method) : NULL;

    if (bio != NULL)
        BIO_set_data(bio, c);
    return bio;
}
