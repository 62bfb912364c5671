/* bench.h - the wire protocol shared by bench/loadgen.c and bench/backend.c.
 *
 * Every command from the client is BENCH_CMD_SIZE bytes: byte 0 is the
 * command, bytes 8..15 a big-endian 64-bit length (unused by 'Q').
 *
 *   'Q'        small request: the backend answers BENCH_RESP_SIZE bytes.
 *   'D' len    download: the backend sends exactly len bytes.
 *   'U' len    upload: the client then sends len bytes; the backend reads and
 *              drops them, then answers one BENCH_CMD_SIZE acknowledgement.
 *
 * Commands run one after another on a connection; the client waits for the
 * answer to one before it sends the next. Fixed sizes keep both sides free
 * of parsing, so what is measured is the proxy in between.
 *
 * The `http` phase speaks HTTP/1.1 instead (backend --http, loadgen --mode
 * http): "GET / HTTP/1.1" with a Host header and no body, answered with
 * "HTTP/1.1 200 OK" and a Content-Length of BENCH_HTTP_BODY bytes.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdint.h>

#define BENCH_CMD_SIZE 32
#define BENCH_RESP_SIZE 128

#define BENCH_CMD_REQUEST 'Q'
#define BENCH_CMD_DOWNLOAD 'D'
#define BENCH_CMD_UPLOAD 'U'

#define BENCH_HTTP_BODY 64 /* bytes of the body of the backend's HTTP answer */

static inline void bench_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static inline uint64_t bench_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

#endif
