/*
 * mode/tcp.c - L4 serve: mutual TLS (server) from the client, plain TCP to
 * the backend, bytes passed through untouched; with proxy-protocol, the
 * verified identity goes first as a PROXY v2 header (sd/proxy_proto.h).
 */
#include "sd/mode.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "sd/gen.h"
#include "sd/proxy_proto.h"
#include "sd/tls.h"

static struct sd_stream *sd_mode_tcp_stream(struct sd_gen *gen, int index, enum sd_side side,
                                            int fd)
{
    if (side == SD_SIDE_CLIENT)
        return sd_tls_stream_new(gen->tls[index], fd, SD_SIDE_CLIENT);
    return sd_stream_tcp_new(fd, SD_SIDE_BACKEND);
}

/* Queues the PROXY v2 header as the first bytes to the backend: only
 * steeldoor writes on a connection it opened, before any byte of the
 * client's, so the backend can trust it. */
static enum sd_reason sd_mode_tcp_start(struct sd_conn *c, const char **detail)
{
    struct sd_stream *client = sd_conn_stream(c, SD_SIDE_CLIENT);
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    const struct sockaddr *peer;
    struct sd_buf *b;
    socklen_t peerlen;
    long n;

    if (!sd_conn_conf(c)->proxy_protocol)
        return SD_R_NONE;
    if (getsockname(client->fd, (struct sockaddr *)&local, &len) != 0) {
        *detail = strerror(errno);
        return SD_R_PROXY_HEADER_FAILED;
    }
    if ((b = sd_conn_queue(c, SD_SIDE_BACKEND)) == NULL) {
        *detail = NULL;
        return SD_R_OUT_OF_MEMORY;
    }
    peer = sd_conn_peer_addr(c, &peerlen);
    n = sd_pp2_build_peer(sd_stream_peer(client), peer, (struct sockaddr *)&local,
                          b->data + b->w, b->cap - b->w);
    if (n < 0) {
        *detail = "identity does not fit in a PROXY v2 header";
        return SD_R_PROXY_HEADER_FAILED;
    }
    b->w += (uint32_t)n;
    return SD_R_NONE;
}

const struct sd_mode_ops sd_mode_tcp = {
    .name = "tcp",
    .verified = SD_SIDE_CLIENT,
    .stream = sd_mode_tcp_stream,
    .start = sd_mode_tcp_start,
};
