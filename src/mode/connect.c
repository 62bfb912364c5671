/*
 * mode/connect.c - client mode (a connector): plaintext from the local
 * caller (loopback or a unix socket), mutual TLS as a client to the
 * target, bytes passed through untouched. The verified side is the
 * backend: the log line shows the server identity the handshake verified.
 * Everything that decides whether the server is the right one (chain,
 * serverAuth, name or verify-* rules, that it asked for our certificate)
 * lives in the connector's TLS context (src/tls/ctx.c).
 */
#include "sd/mode.h"

#include "sd/gen.h"
#include "sd/tls.h"

static struct sd_stream *sd_mode_connect_stream(struct sd_gen *gen, int index,
                                                enum sd_side side, int fd)
{
    if (side == SD_SIDE_CLIENT)
        return sd_stream_tcp_new(fd, SD_SIDE_CLIENT);
    return sd_tls_stream_new(gen->tls[index], fd, SD_SIDE_BACKEND);
}

/* Nothing goes first: the server learns who calls from our certificate. */
static enum sd_reason sd_mode_connect_start(struct sd_conn *c, const char **detail)
{
    (void)c;
    *detail = NULL;
    return SD_R_NONE;
}

const struct sd_mode_ops sd_mode_connect = {
    .name = "connect",
    .verified = SD_SIDE_BACKEND,
    .stream = sd_mode_connect_stream,
    .start = sd_mode_connect_start,
    .client_plain = 1,
};
