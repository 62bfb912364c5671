/*
 * sd/tls.h - the TLS server side, the only place (with pki.c) that sees OpenSSL.
 *
 * Configure once, apply many times (as libtls): sd_tls_server_new() builds a
 * listener's context from its configuration, checks every file and fails
 * closed; sd_tls_conn_new() applies it to one accepted socket.
 *
 * Policy that is not negotiable lives here and has no switch: TLS 1.2 and
 * 1.3 only, ECDHE + AEAD only for 1.2, no renegotiation, no compression, a
 * client certificate required and verified during the handshake, EKU
 * clientAuth required, and a session id context unique to the listener so a
 * session never resumes on another listener.
 *
 * Non-blocking I/O: every call returns an sd_io; SD_IO_WANT_READ/WRITE mean
 * "call again when the socket is readable/writable" (TLS may need to read
 * while writing, or write while reading).
 */
#ifndef SD_TLS_H
#define SD_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sd/config.h"
#include "sd/err.h"
#include "sd/log.h"
#include "sd/stream.h"

struct sd_tls;      /* per listener, shared by its connections */
struct sd_tls_conn; /* per connection */


/* Builds the server context for one listener: loads and checks the server
 * certificate chain and key (must match, must be within validity), the CA
 * bundle (must hold at least one CA certificate), every file read through
 * the snapshot `files` (see sd/files.h). Returns a new context
 * owned by the caller, or NULL with err naming the file at fault. */
struct sd_files;
struct sd_tls *sd_tls_server_new(const struct sd_listener_conf *lc,
                                 struct sd_files *files, struct sd_err *err);
void sd_tls_free(struct sd_tls *tls);

/* Wraps an accepted, non-blocking socket. The caller keeps owning fd.
 * Returns NULL on allocation failure. */
struct sd_tls_conn *sd_tls_conn_new(struct sd_tls *tls, int fd);
void sd_tls_conn_free(struct sd_tls_conn *c);

enum sd_io sd_tls_handshake(struct sd_tls_conn *c);
/* Reads up to len bytes of plaintext; *n is set when SD_IO_OK. */
enum sd_io sd_tls_read(struct sd_tls_conn *c, void *buf, size_t len, size_t *n);
/* Writes up to len bytes (partial writes allowed); *n is set when SD_IO_OK.
 * After WANT_*, call again with at least the same bytes (they may move). */
enum sd_io sd_tls_write(struct sd_tls_conn *c, const void *buf, size_t len,
                        size_t *n);
/* After an SD_IO_OK read: 1 when the socket was read dry and OpenSSL holds
 * nothing more, so the caller may wait for the next readiness edge. */
int sd_tls_conn_read_dry(struct sd_tls_conn *c);
/* Tells c that epoll reported its socket readable (hup: the peer hung up).
 * After a read came back short, c makes no further read system call until
 * this is called, since the edge-triggered socket can only be empty. */
void sd_tls_conn_readable(struct sd_tls_conn *c, int hup);

/* Sends close_notify (our half-close); reading may continue afterwards.
 * Returns SD_IO_OK once sent. */
enum sd_io sd_tls_shutdown(struct sd_tls_conn *c);

/* Drops expired sessions from the context's in-process cache (called from
 * the worker's timer rather than by OpenSSL every 255 handshakes). */
void sd_tls_expire_sessions(struct sd_tls *tls);

/* Why the connection failed, as a stable word for the log ("unknown_ca",
 * "no_client_certificate", ...), or NULL; detail is free text or NULL. */
const char *sd_tls_conn_reason(const struct sd_tls_conn *c);
const char *sd_tls_conn_detail(const struct sd_tls_conn *c);

/* Writes a PROXY protocol v2 header for this (handshaken) connection: src
 * is the client, dst the listener's local address. Returns its length, or
 * -1 when it cannot be built within cap bytes. */
long sd_tls_conn_pp2(const struct sd_tls_conn *c, const struct sockaddr *src,
                     const struct sockaddr *dst, uint8_t *out, size_t cap);

/* Adds tls_version, cipher, resumed, subject and sans to a log line. */
void sd_tls_conn_log(const struct sd_tls_conn *c, struct sd_logline *l);

/* Process-wide initialisation, once in the master before any context is
 * built: loads OpenSSL's strings and draws the ticket-key secret. */
int sd_tls_init(struct sd_err *err);

struct sd_sesscache;
/* Sets the shared session cache used by contexts built afterwards. */
void sd_tls_set_session_cache(struct sd_sesscache *cache);

/* After a reload, or when a handshake completes after one: would the
 * listener's new context `now` admit the client of c if it connected now?
 * The full verification runs again (trust store, CRLs, dates, depth, EKU,
 * identity and allow rules) from the chain verification built, for full and
 * resumed connections alike; verdicts are cached in now's chain cache.
 * Returns NULL when it would, else the reason ("unknown_ca",
 * "certificate_revoked", "not_authorized", ...). */
const char *sd_tls_conn_judge(const struct sd_tls_conn *c, struct sd_tls *now);

/* Logs a "cert_expiry" warning for each server or client-CA certificate of
 * the listener that expires within within_s seconds (or has expired). */
void sd_tls_warn_expiry(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                        uint32_t within_s);

/* A TLS stream (sd/stream.h) over an accepted, non-blocking socket, with
 * tls's settings; the caller keeps owning fd. NULL on allocation failure. */
struct sd_stream *sd_tls_stream_new(struct sd_tls *tls, int fd, enum sd_side side);
/* TEMPORARY (until sd_peer is wired): the stream's sd_tls_conn. */
struct sd_tls_conn *sd_tls_stream_conn(struct sd_stream *s);

#endif
