/*
 * sd/tls.h - TLS contexts and the TLS stream; with pki and audit, the only
 * code that sees OpenSSL (all of it in src/tls/, see src/tls/tls_int.h).
 *
 * Configure once, apply many times (as libtls): sd_tls_server_new() builds
 * a listener's context from its configuration, sd_tls_client_new() a
 * context for connecting to a server; both check every file and fail
 * closed. sd_tls_stream_new() applies a context to one socket as a stream
 * (sd/stream.h): accepting with a server context, connecting with a
 * client context.
 *
 * Policy that is not negotiable lives here and has no switch, the same for
 * both roles: TLS 1.2 and 1.3 only, ECDHE + AEAD only for 1.2, no
 * renegotiation, no compression, the peer's certificate required and
 * verified during the handshake, never a CA certificate as the peer, its
 * EKU required (clientAuth from a client, serverAuth from a server). A
 * server context also has a session id context unique to the listener and
 * its admission settings, so a session never resumes elsewhere.
 */
#ifndef SD_TLS_H
#define SD_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "sd/config.h"
#include "sd/err.h"
#include "sd/stream.h"

struct sd_tls;   /* a context: per listener (server) or per target (client) */
struct sd_files; /* the file snapshot every file is read from (sd/files.h) */
struct sd_sesscache;

/* Process-wide initialisation, once in the master before any context is
 * built (a second call does nothing): loads OpenSSL's strings and creates
 * the socket BIO method. Returns 0, or -1 with err. */
int sd_tls_init(struct sd_err *err);

/* Builds the server context for one listener: loads and checks the server
 * certificate chain and key (must match, must be within validity), the CA
 * bundle (must hold at least one CA certificate) and the CRLs, every file
 * read through the snapshot `files`. Returns a new context owned by the
 * caller (sd_tls_free), or NULL with err naming the file at fault. lc (its
 * policy) must outlive the context. */
struct sd_tls *sd_tls_server_new(const struct sd_listener_conf *lc,
                                 struct sd_files *files, struct sd_err *err);

/* What a client context is built from. Strings and the policy are the
 * caller's and must outlive the context (server_name is copied). */
struct sd_tls_client_conf {
    const char *cert;          /* our certificate chain (PEM, leaf first), or NULL */
    const char *key;           /* its private key (PEM) */
    const char *cacert;        /* CA bundle (file or directory): the only trust */
    const char *server_name;   /* sent as SNI; without policy, the server's
                                * certificate must carry it (host name check) */
    const struct sd_policy *policy; /* allow rules on the server's identity, or NULL */
    const char *const *crls;   /* CRL files (PEM or DER), optional */
    size_t ncrls;
    uint32_t crl_grace_s;
    uint32_t verify_depth;     /* max intermediates between leaf and root */
};

/* Builds a client context (for connecting to a server with mutual TLS):
 * the server must chain to cc->cacert only, carry EKU serverAuth, not be a
 * CA certificate, and be admitted by cc->policy or, without one, carry
 * cc->server_name (one of the two is required). No session resumption.
 * Returns a new context owned by the caller, or NULL with err. */
struct sd_tls *sd_tls_client_new(const struct sd_tls_client_conf *cc, struct sd_files *files,
                                 struct sd_err *err);

/* Builds a connector's client context (client mode, lc->mode is
 * SD_MODE_CONNECT) from its configuration: lc->cert/key are presented,
 * the server must chain to lc->cacert and match lc->policy (verify-*) or,
 * without rules, carry lc->server_name. Unlike sd_tls_client_new() the
 * server must ask for our certificate (a full handshake without a
 * CertificateRequest fails with server_did_not_request_client_cert), and
 * sessions are resumed: the context keeps the last session a verified
 * full handshake (or one resumed from it) gave, for lc->session_lifetime_ms
 * after that full handshake. lc must outlive the context. Returns a new
 * context, or NULL with err naming the connector and the file at fault. */
struct sd_tls *sd_tls_connector_new(const struct sd_listener_conf *lc, struct sd_files *files,
                                    struct sd_err *err);

/* NULL is fine. Streams made from tls must be freed first. */
void sd_tls_free(struct sd_tls *tls);

/* A TLS stream (sd/stream.h) over a connected, non-blocking socket, with
 * tls's settings: it accepts (server context) or connects (client context,
 * sending the server name). side says which end of the connection the
 * stream faces, for its failures' reasons. The caller keeps owning fd and
 * owns the stream (sd_stream_free). NULL on allocation failure. The
 * stream's peer op returns what was verified; its judge op re-judges it
 * against another server context (after a reload). */
struct sd_stream *sd_tls_stream_new(struct sd_tls *tls, int fd, enum sd_side side);

/* The DER of the peer's certificates as HTTP mode hands them on (RFC 9440
 * Client-Cert and Client-Cert-Chain): certs[0] the verified peer's own
 * certificate, then the intermediates of its verified chain that the trust
 * store does not hold (what the client sent), leaf's issuer first. A
 * resumed session gives exactly what its full handshake gave (the
 * intermediates come from the session's admission record). The bytes are
 * copied into buf[0, cap); certs[0, max) point into buf. Returns the
 * number of certificates (>= 1), 0 when s has no verified peer (not TLS, or
 * before the handshake), or -1 when they do not fit in buf or max. */
struct sd_der;
int sd_tls_stream_certs_der(const struct sd_stream *s, uint8_t *buf, size_t cap,
                            struct sd_der *certs, size_t max);

/* Sets the shared session cache used by server contexts built afterwards. */
void sd_tls_set_session_cache(struct sd_sesscache *cache);

/* Drops expired sessions from the context's in-process cache (called from
 * the worker's timer rather than by OpenSSL every 255 handshakes). */
void sd_tls_expire_sessions(struct sd_tls *tls);

/* Logs crl_expiry for each issuer whose newest CRL is within a quarter of
 * its life (at least an hour, at most within_s) of its nextUpdate, or past
 * it (level warn either way, as cert_expiry; its msg says when clients are
 * being refused). At load and periodically (master); listener names the
 * listener. */
void sd_tls_warn_crls(const struct sd_tls *tls, const char *listener, uint32_t within_s);

/* Logs a "cert_expiry" warning for each certificate of the listener (its
 * own, its chain, its CAs) that expires within within_s seconds (or has
 * expired), and cert_no_san for a server certificate without a SAN. */
void sd_tls_warn_expiry(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                        uint32_t within_s);

/* --- what a context holds, for /metrics, /readyz and /status (info.c).
 * Plain structs: the admin pages never see an OpenSSL type. */

#define SD_TLS_INFO_NAME_MAX 256  /* bytes of a name's text, NUL included */
#define SD_TLS_INFO_SERIAL_MAX 48 /* hex digits of a serial (and a sign), NUL included */

/* One certificate of a context. */
struct sd_tls_cert_info {
    /* "server": a serve or admin listener's own certificate; "client": a
     * connector's own; "chain": a certificate sent after it; "ca": a CA
     * certificate of the store (lc->cacert). Static text. */
    const char *role;
    const char *file; /* lc->cert or lc->cacert (the config's text; for a CA
                       * directory, the directory), or NULL */
    /* One RFC 2253 line, every byte above 0x7f and every control
     * character escaped (plain ASCII), cut to fit. */
    char subject[SD_TLS_INFO_NAME_MAX];
    char issuer[SD_TLS_INFO_NAME_MAX];
    char serial[SD_TLS_INFO_SERIAL_MAX]; /* upper-case hex ("" if too long) */
    char sha256[65];                     /* of the DER, lower-case hex */
    int64_t not_before, not_after;       /* Unix seconds (0: unreadable) */
};

/* One CRL of a context (a file may hold several). */
struct sd_tls_crl_info {
    const char *file; /* the CRL file it came from (lc->crls[i]'s text) */
    char issuer[SD_TLS_INFO_NAME_MAX]; /* as subject above */
    int64_t last_update;               /* Unix seconds */
    int64_t next_update;               /* Unix seconds; 0: the CRL has none */
    int delta;                         /* a delta CRL */
};

/* Called once per certificate or CRL; the struct is valid during the call
 * only. Returns 0 to go on, anything else to stop the walk. */
typedef int sd_tls_cert_fn(void *arg, const struct sd_tls_cert_info *ci);
typedef int sd_tls_crl_fn(void *arg, const struct sd_tls_crl_info *ci);

/* Gives fn every certificate of tls, the context of listener lc: its own
 * (role "server", or "client" for a connector), then the chain it sends
 * ("chain"), then the CA certificates of its store ("ca"). tls NULL (a
 * plaintext admin listener): nothing. Returns 0, or the first non-zero
 * result of fn. */
int sd_tls_info_certs(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                      sd_tls_cert_fn *fn, void *arg);
/* Gives fn every CRL of tls, in load order. Same results. */
int sd_tls_info_crls(const struct sd_tls *tls, sd_tls_crl_fn *fn, void *arg);
/* Until when tls's CRLs are fresh (Unix seconds): for each issuer its
 * newest full CRL's nextUpdate, the earliest of those, plus the listener's
 * crl-grace; from then on every client whose chain they cover is refused
 * (crl_expired). 0: no CRL with a nextUpdate (or tls NULL). */
int64_t sd_tls_info_crl_fresh_until(const struct sd_tls *tls);

/* The OpenSSL version steeldoor runs with ("OpenSSL 3.0.17 1 Jul 2025"),
 * static text. */
const char *sd_tls_openssl_version(void);

#endif
