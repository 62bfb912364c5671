/* reason.c - the one string table of log reasons (see sd/reason.h). */
#include "sd/reason.h"

#include <stddef.h>
#include <string.h>

static const char *const sd_reason_names[SD_R_COUNT_] = {
    [SD_R_NONE] = NULL,
    [SD_R_NOT_AUTHORIZED] = "not_authorized",
    [SD_R_MALFORMED_IDENTITY] = "malformed_identity",
    [SD_R_CA_CERTIFICATE] = "ca_certificate",
    [SD_R_UNKNOWN_CA] = "unknown_ca",
    [SD_R_CERTIFICATE_EXPIRED] = "certificate_expired",
    [SD_R_CERTIFICATE_NOT_YET_VALID] = "certificate_not_yet_valid",
    [SD_R_WRONG_EKU] = "wrong_eku",
    [SD_R_WRONG_KEY_USAGE] = "wrong_key_usage",
    [SD_R_CERTIFICATE_REVOKED] = "certificate_revoked",
    [SD_R_CHAIN_TOO_LONG] = "chain_too_long",
    [SD_R_BAD_CERTIFICATE] = "bad_certificate",
    [SD_R_CRL_EXPIRED] = "crl_expired",
    [SD_R_CRL_NOT_YET_VALID] = "crl_not_yet_valid",
    [SD_R_CRL_MISSING] = "crl_missing",
    [SD_R_CRL_INVALID] = "crl_invalid",
    [SD_R_NO_CLIENT_CERTIFICATE] = "no_client_certificate",
    [SD_R_PROTOCOL_VERSION] = "protocol_version",
    [SD_R_NO_SHARED_CIPHER] = "no_shared_cipher",
    [SD_R_NOT_TLS] = "not_tls",
    [SD_R_PLAINTEXT_HTTP] = "plaintext_http",
    [SD_R_CLIENT_ALERT] = "client_alert",
    [SD_R_CLIENT_REJECTED_SERVER_CERT] = "client_rejected_server_cert",
    [SD_R_TLS_PROTOCOL_ERROR] = "tls_protocol_error",
    [SD_R_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [SD_R_HANDSHAKE_ABORTED] = "handshake_aborted",
    [SD_R_TCP_CHECK] = "tcp_check",
    [SD_R_HANDSHAKE_FAILED] = "handshake_failed",
    [SD_R_LISTENER_REMOVED] = "listener_removed",
    [SD_R_SERVER_DID_NOT_REQUEST_CLIENT_CERT] = "server_did_not_request_client_cert",
    [SD_R_SERVER_ALERT] = "server_alert",
    [SD_R_SESSION_EXPIRED] = "session_expired",
    [SD_R_SESSION_INVALID] = "session_invalid",
    [SD_R_BACKEND_CONNECT_FAILED] = "backend_connect_failed",
    [SD_R_BACKEND_CONNECT_TIMEOUT] = "backend_connect_timeout",
    [SD_R_BACKEND_RESET] = "backend_reset",
    [SD_R_FD_LIMIT] = "fd_limit",
    [SD_R_PROXY_HEADER_FAILED] = "proxy_header_failed",
    [SD_R_CLIENT_RESET] = "client_reset",
    [SD_R_TLS_FLOOD] = "tls_flood",
    [SD_R_RENEGOTIATION_REFUSED] = "renegotiation_refused",
    [SD_R_TLS_ERROR] = "tls_error",
    [SD_R_IDLE_TIMEOUT] = "idle_timeout",
    [SD_R_DRAIN_TIMEOUT] = "drain_timeout",
    [SD_R_SHUTDOWN] = "shutdown",
    [SD_R_OUT_OF_MEMORY] = "out_of_memory",
    [SD_R_INTERNAL_ERROR] = "internal_error",
};

const char *sd_reason_str(enum sd_reason r)
{
    return (unsigned)r < SD_R_COUNT_ ? sd_reason_names[r] : NULL;
}

enum sd_reason sd_reason_from_str(const char *s)
{
    unsigned i;

    for (i = 1; s != NULL && i < SD_R_COUNT_; i++)
        if (sd_reason_names[i] != NULL && strcmp(sd_reason_names[i], s) == 0)
            return (enum sd_reason)i;
    return SD_R_NONE;
}
