/*
 * sd/mode.h - what a listener does with a connection: its mode.
 *
 * Every mode has the same connection life (conn.c): the client side's
 * handshake, the backend's connect and handshake, then the mode's start,
 * then two byte pumps. A mode decides:
 * - which stream speaks on each side (L4 serve: TLS server to the client,
 *   TCP to the backend; client mode: the reverse, with a TLS client), and
 *   which side's peer was verified (the log line, re-judging at reload);
 * - what happens between "backend connected" and the pumps (L4: the PROXY
 *   v2 header), and optionally what happens to the bytes of a direction
 *   (HTTP mode: parse requests, strip and inject headers) through the
 *   pump's hook (sd_conn_set_hook).
 *
 * Modes see a connection only through the functions below.
 */
#ifndef SD_MODE_H
#define SD_MODE_H

#include <sys/socket.h>

#include "sd/pump.h"
#include "sd/reason.h"
#include "sd/stream.h"

struct sd_conn;
struct sd_gen;
struct sd_listener_conf;

struct sd_mode_ops {
    const char *name; /* "tcp" */
    /* The side whose peer the handshake verified: its stream's peer is
     * logged and judged again after a reload. */
    enum sd_side verified;
    /* A new stream over fd for side `side` of a connection of listener
     * `index` in generation gen (the caller keeps fd); NULL when out of
     * memory. */
    struct sd_stream *(*stream)(struct sd_gen *gen, int index, enum sd_side side, int fd);
    /* Runs once both sides' handshakes are done and the backend is
     * connected, before any byte is pumped. Returns SD_R_NONE, or the
     * reason to close the connection with *detail (static text or NULL). */
    enum sd_reason (*start)(struct sd_conn *c, const char **detail);
};

/* The mode of a listener (today every listener is "tcp"). */
const struct sd_mode_ops *sd_mode_for(const struct sd_listener_conf *lc);

extern const struct sd_mode_ops sd_mode_tcp;

/* --- what a mode may use of its connection (conn.c) */

/* Its listener, in the generation that admitted it. */
const struct sd_listener_conf *sd_conn_conf(const struct sd_conn *c);
/* The stream of one side (the backend's is NULL before the connect). */
struct sd_stream *sd_conn_stream(const struct sd_conn *c, enum sd_side side);
/* The client's address. */
const struct sockaddr *sd_conn_peer_addr(const struct sd_conn *c, socklen_t *len);
/* The buffer of bytes bound for side `to`, taken from the pool if empty, to
 * queue bytes ahead of the pump's (write at ->w, within ->cap); NULL when
 * out of memory. */
struct sd_buf *sd_conn_queue(struct sd_conn *c, enum sd_side to);
/* Sets the hook that sees the bytes bound for side `to` (NULL: none). */
void sd_conn_set_hook(struct sd_conn *c, enum sd_side to, sd_pump_hook *hook, void *arg);

#endif
