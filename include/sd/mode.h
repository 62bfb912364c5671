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

#include <stdint.h>
#include <sys/socket.h>

#include "sd/pump.h"
#include "sd/reason.h"
#include "sd/stream.h"

struct sd_bufpool;
struct sd_loop;

struct sd_conn;
struct sd_gen;
struct sd_auth;
struct sd_listener_conf;

/* What a mode's run step asks of its connection (see run below). */
enum sd_mode_run { SD_MODE_GO = 0, SD_MODE_TUNNEL, SD_MODE_DONE, SD_MODE_FAIL };

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
    /* Non-zero: the client side has no handshake to wait for (client
     * mode's plaintext caller): the backend is contacted at once, not at
     * the caller's first byte (the caller of a server-speaks-first
     * protocol sends nothing until it is greeted). */
    int client_plain;

    /* --- optional: a mode that speaks a protocol over the connection
     * (HTTP) instead of passing bytes through. */

    /* Non-zero: the backend is not connected before start; the mode opens
     * it itself when it has something to send (sd_conn_backend_open), and
     * may give it back and open another one later. */
    int lazy_backend;
    /* Replaces the two pumps while the connection is PROXYING: one pass,
     * moving what can move. Sets *progress when anything moved. Returns
     * SD_MODE_GO to wait for the next event, SD_MODE_TUNNEL to hand the
     * connection to the two pumps from now on (bytes already read but not
     * yet sent are queued with sd_conn_queue first: a WebSocket after its
     * 101), SD_MODE_DONE to close it ("ok"), SD_MODE_FAIL to close it
     * ("error") with *reason and *detail. */
    enum sd_mode_run (*run)(struct sd_conn *c, int *progress, enum sd_reason *reason,
                            const char **detail);
    /* The connection's deadline passed while PROXYING (not tunnelled):
     * returns 1 when the mode handled it (it answered, say 408 or 504, and
     * set a new deadline with sd_conn_set_deadline), 0 to close the
     * connection with idle_timeout as usual. */
    int (*timeout)(struct sd_conn *c);
    /* Releases the mode's per-connection state (sd_conn_mode_state), once,
     * when the connection is freed; the backend's socket, if still
     * attached, is then closed by the connection. */
    void (*fini)(struct sd_conn *c);
    /* The worker is draining (shutdown, restart): end the connection as
     * soon as it is between two exchanges (now, if it already is). */
    void (*drain)(struct sd_conn *c);
};


/* The mode of a listener: sd_mode_http for SD_MODE_HTTP, sd_mode_connect
 * for SD_MODE_CONNECT, sd_mode_admin for SD_MODE_ADMIN, else sd_mode_tcp. */
const struct sd_mode_ops *sd_mode_for(const struct sd_listener_conf *lc);

extern const struct sd_mode_ops sd_mode_tcp;
extern const struct sd_mode_ops sd_mode_http;
extern const struct sd_mode_ops sd_mode_connect;
extern const struct sd_mode_ops sd_mode_admin;

/* The worker's tick: HTTP mode closes pooled backend connections idle past
 * their time. */
void sd_mode_http_tick(int64_t now_ms);

/* --- what a mode may use of its connection (conn.c) */

/* Its listener, in the generation that admitted it. */
const struct sd_listener_conf *sd_conn_conf(const struct sd_conn *c);
/* The stream of one side (the backend's is NULL before the connect). */
struct sd_stream *sd_conn_stream(const struct sd_conn *c, enum sd_side side);
/* The worker's current generation (what /status and /metrics describe),
 * which may be newer than the one that admitted the connection; and the
 * worker's index (0..workers-1). */
struct sd_gen *sd_conn_current_gen(const struct sd_conn *c);
int sd_conn_worker(const struct sd_conn *c);
/* Its listener's counters in this worker (sd/stats.h), or NULL. */
struct sd_stats_lst *sd_conn_stats(const struct sd_conn *c);
/* The client's address. */
const struct sockaddr *sd_conn_peer_addr(const struct sd_conn *c, socklen_t *len);
/* The buffer of bytes bound for side `to`, taken from the pool if empty, to
 * queue bytes ahead of the pump's (write at ->w, within ->cap); NULL when
 * out of memory. */
struct sd_buf *sd_conn_queue(struct sd_conn *c, enum sd_side to);
/* The same with room for need bytes (a large buffer if a small one cannot
 * hold them), or NULL. */
struct sd_buf *sd_conn_queue_room(struct sd_conn *c, enum sd_side to, size_t need);
/* Sets the hook that sees the bytes bound for side `to` (NULL: none). */
void sd_conn_set_hook(struct sd_conn *c, enum sd_side to, sd_pump_hook *hook, void *arg);

/* The second factor of the connection's listener as the worker's current
 * generation has it (a reload's new keys and JWKS apply to the next request
 * of an open connection: a revoked key stops working on it), or, when
 * that generation no longer has the listener, as the generation that
 * admitted the connection. NULL: the listener has none. *gen_id is the
 * id of the generation it comes from (valid while that id is current). */
const struct sd_auth *sd_conn_auth(const struct sd_conn *c, uint64_t *gen_id);

/* --- for modes with their own engine (run above) */

/* The mode's per-connection state (NULL until set). */
void *sd_conn_mode_state(const struct sd_conn *c);
void sd_conn_set_mode_state(struct sd_conn *c, void *state);
/* One side's stream and readiness (see sd/pump.h); the backend's stream is
 * NULL while no backend is attached. */
struct sd_pump_side *sd_conn_side(struct sd_conn *c, enum sd_side side);
/* The worker's buffer pool and loop, and the loop's clock. */
struct sd_bufpool *sd_conn_bufpool(const struct sd_conn *c);
struct sd_loop *sd_conn_loop(const struct sd_conn *c);
int64_t sd_conn_now(const struct sd_conn *c);
/* Sets when sd_mode_ops.timeout is called next (loop clock, ms). */
void sd_conn_set_deadline(struct sd_conn *c, int64_t when_ms);
/* Adds to the byte counts of the connection's log line: bytes read from
 * the client, bytes written to the client. */
void sd_conn_count(struct sd_conn *c, uint64_t from_client, uint64_t to_client);
/* Attaches a backend (lazy_backend modes): fd >= 0 is a connected socket
 * taken from a pool (the connection owns it from now on); fd -1 starts a
 * connect to the listener's target. Returns SD_R_NONE, or the reason it
 * failed (backend_connect_failed, fd_limit, out_of_memory) with *detail. */
enum sd_reason sd_conn_backend_open(struct sd_conn *c, int fd, const char **detail);
/* Has the attached backend finished its connect and handshake? 1 yes, 0
 * not yet (wait for an event), -1 failed: *reason and *detail say why. */
int sd_conn_backend_ready(struct sd_conn *c, enum sd_reason *reason, const char **detail);
/* Detaches the backend: out of the loop, its stream freed. Returns its fd,
 * now the caller's (to pool or close), or -1 when none was attached. */
int sd_conn_backend_release(struct sd_conn *c);

#endif
