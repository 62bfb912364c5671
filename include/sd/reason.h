/*
 * sd/reason.h - why a connection ended or was refused: a closed set.
 *
 * Every reason a connection's log line can carry is one value of this enum,
 * and src/reason.c holds its one string table. Code never writes a reason
 * as a string literal, so the set is known at compile time: the README
 * documents every one (a test reads the table and the README), and a test
 * produces every one that a client can bring about.
 */
#ifndef SD_REASON_H
#define SD_REASON_H

enum sd_reason {
    SD_R_NONE = 0, /* no reason: the connection ended normally */
    /* refused at the handshake: the client's certificate */
    SD_R_NOT_AUTHORIZED,
    SD_R_MALFORMED_IDENTITY,
    SD_R_CA_CERTIFICATE,
    SD_R_UNKNOWN_CA,
    SD_R_CERTIFICATE_EXPIRED,
    SD_R_CERTIFICATE_NOT_YET_VALID,
    SD_R_WRONG_EKU,
    SD_R_WRONG_KEY_USAGE,
    SD_R_CERTIFICATE_REVOKED,
    SD_R_CHAIN_TOO_LONG,
    SD_R_BAD_CERTIFICATE,
    SD_R_CRL_EXPIRED,
    SD_R_CRL_NOT_YET_VALID,
    SD_R_CRL_MISSING,
    SD_R_CRL_INVALID,
    SD_R_NO_CLIENT_CERTIFICATE,
    /* refused at the handshake: the protocol */
    SD_R_PROTOCOL_VERSION,
    SD_R_NO_SHARED_CIPHER,
    SD_R_NOT_TLS,
    SD_R_PLAINTEXT_HTTP,
    SD_R_CLIENT_ALERT,
    /* the client's alert says it refused our certificate (unknown CA,
     * bad name, expired): steeldoor was refused, not the client */
    SD_R_CLIENT_REJECTED_SERVER_CERT,
    SD_R_TLS_PROTOCOL_ERROR,
    SD_R_HANDSHAKE_TIMEOUT,
    SD_R_HANDSHAKE_ABORTED,
    SD_R_TCP_CHECK, /* connect and close, no byte: logged at info */
    SD_R_HANDSHAKE_FAILED,
    SD_R_LISTENER_REMOVED,
    /* client mode: the server let us in without our certificate; the
     * server sent an alert (it refused our certificate, say) */
    SD_R_SERVER_DID_NOT_REQUEST_CLIENT_CERT,
    SD_R_SERVER_ALERT,
    /* resumed sessions (defence in depth) */
    SD_R_SESSION_EXPIRED,
    SD_R_SESSION_INVALID,
    /* after the handshake */
    SD_R_BACKEND_CONNECT_FAILED,
    SD_R_BACKEND_CONNECT_TIMEOUT,
    SD_R_BACKEND_RESET,
    SD_R_FD_LIMIT,
    SD_R_PROXY_HEADER_FAILED,
    SD_R_CLIENT_RESET,
    SD_R_TLS_FLOOD,
    SD_R_RENEGOTIATION_REFUSED,
    SD_R_TLS_ERROR,
    SD_R_IDLE_TIMEOUT,
    SD_R_DRAIN_TIMEOUT,
    SD_R_SHUTDOWN,
    SD_R_OUT_OF_MEMORY,
    SD_R_INTERNAL_ERROR,
    SD_R_COUNT_ /* keep last */
};

/* The reason's word for the log ("not_authorized"), or NULL for SD_R_NONE
 * and out-of-range values. The strings are static. */
const char *sd_reason_str(enum sd_reason r);

/* The reason whose word is s, or SD_R_NONE (tests and tools). */
enum sd_reason sd_reason_from_str(const char *s);

#endif
