/*
 * sd/config.h - the gateway's configuration, built once and then read-only.
 *
 * A config comes from command-line flags (one listener) or a YAML file (many
 * listeners); both produce the same struct and go through the same
 * sd_config_validate(), so every rule is enforced in one place. Both set
 * each key through the one table of keys (sd/config_keys.h).
 *
 * Client authentication is not configurable: every listener requires and
 * verifies a client certificate at the handshake. There is deliberately no
 * field for "optional" client auth or a plaintext listener.
 */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"
#include "sd/net.h"
#include "sd/policy.h"

#define SD_MAX_LISTENERS 64
#define SD_MAX_WORKERS 64

#define SD_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u
#define SD_DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define SD_DEFAULT_IDLE_TIMEOUT_MS 300000u
/* A TLS session, and every session resumed from it, lives at most this long
 * after the full handshake that verified the client (nginx's default). */
#define SD_DEFAULT_SESSION_LIFETIME_MS 300000u
/* Below the usual backend keep-alive timeouts (gunicorn: 2 s; Go, Node:
 * 5 s): a pooled connection the backend is about to close is not reused. */
#define SD_DEFAULT_BACKEND_IDLE_TIMEOUT_MS 1500u
#define SD_DEFAULT_BACKEND_POOL_SIZE 16u
#define SD_MAX_BACKEND_POOL_SIZE 1024u
#define SD_DEFAULT_DRAIN_TIMEOUT_MS 30000u
#define SD_DEFAULT_MAX_CONNS 10000u
#define SD_DEFAULT_VERIFY_DEPTH 3 /* intermediates between leaf and root */
#define SD_MAX_VERIFY_DEPTH 16
#define SD_MAX_CRLS 64
#define SD_DEFAULT_JWT_LEEWAY_S 30u
#define SD_MAX_JWT_LEEWAY_S 300u
#define SD_DEFAULT_EXPIRY_WARNING_S (7u * 86400u)
#define SD_DEFAULT_LISTEN_MODE 0600u /* a connector's unix socket: its owner only */
#define SD_MAX_WARM 64u                  /* warm connections per connector and worker */
#define SD_DEFAULT_WARM_MAX_AGE_MS 15000u /* below common servers' idle timeouts */
#define SD_MAX_ALPN 255 /* bytes of an alpn list as written (sd_listener_conf.alpn) */

/* SD_MODE_CONNECT is a connector (client mode, `connectors:` in YAML,
 * `steeldoor connect`): plaintext accepted on loopback or a unix socket,
 * mutual TLS as a client to the target. It shares the listener's struct,
 * generation, worker and connection life; only its mode differs. */
/* SD_MODE_ADMIN is the admin listener (`admin:` in YAML, --admin): it
 * answers /metrics, /healthz, /readyz and /status itself (mode/admin.c),
 * has no target, and is plaintext only on loopback or a unix socket, else
 * mutual TLS with its own CA and allow rules (docs/operations.md). */
enum sd_listener_mode { SD_MODE_TCP = 0, SD_MODE_HTTP = 1, SD_MODE_CONNECT = 2,
                        SD_MODE_ADMIN = 3 };
#define SD_ADMIN_NAME "admin" /* the admin listener's name (logs, metrics) */

struct sd_listener_conf {
    char *name;      /* for logs; defaults to the listen text */
    char *listen;    /* text as given */
    char *target;    /* text as given */
    char *cert;      /* server certificate chain (PEM) */
    char *key;       /* server private key (PEM) */
    char *cacert;    /* CA bundle (file or directory) client certificates chain to */
    struct sd_policy *policy; /* allow rules; deny by default */
    char *crls[SD_MAX_CRLS];  /* CRL files (PEM or DER) */
    size_t ncrls;
    uint32_t crl_grace_s;     /* accept a CRL this long past its nextUpdate */
    uint32_t verify_depth;    /* max intermediates between leaf and root */
    int proxy_protocol;       /* send a PROXY v2 header to the backend */
    uint32_t handshake_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t session_lifetime_ms; /* 0: no resumption */
    /* ALPN protocol names (RFC 7301), comma-separated, each checked by
     * the key's setter; "" (the default): none. A tcp listener selects
     * the first of them that the client offers (this order, not the
     * client's); a connector offers them to the server. HTTP mode takes
     * no list: it selects http/1.1 (src/tls/ctx.c). Held here, not
     * allocated: nothing to free. */
    char alpn[SD_MAX_ALPN + 1];
    /* What the listener speaks to its backend (sd/mode.h): SD_MODE_TCP
     * (L4, the default) or SD_MODE_HTTP (HTTP/1.1 with identity headers). */
    uint8_t mode;
    /* Which HTTP-only keys were given (the bits of the table's http_only):
     * sd_config_validate() refuses them on a tcp listener, even when given
     * with their default value, so no setting is silently ignored. */
    uint16_t http_given;
    uint32_t http_headers;           /* HTTP mode: SD_HTTP_H_* (sd/http_ident.h) */
    uint32_t backend_idle_timeout_ms; /* HTTP mode: idle pooled backend connections */
    uint32_t backend_pool_size;       /* HTTP mode: idle backend connections kept per
                                       * target and worker (0: no reuse) */
    /* HTTP mode's second factor (sd/auth.h): none unless a file is named. */
    char *api_keys;                  /* keys file (sd/apikeys.h), or NULL */
    char *api_key_header;            /* header keys arrive in; NULL: Authorization: Bearer */
    char *jwks;                      /* JWKS file for tokens (sd/jwt.h), or NULL */
    char *jwt_issuer;                /* required "iss" (required with jwks) */
    char *jwt_audience;              /* required "aud" (required with jwks) */
    uint32_t jwt_leeway_s;           /* clock skew allowed on exp/nbf */
    int forward_credentials;         /* pass the credential's field to the backend */
    /* Connector only (SD_MODE_CONNECT): cert/key are ours, cacert and the
     * rules (policy, from verify-*) judge the server. */
    char *server_name;               /* SNI and, without rules, the name the
                                      * server's certificate must carry;
                                      * default: the target's host */
    uint32_t listen_mode;            /* file mode of a unix listen socket */
    uint32_t warm;                   /* connections kept handshaken ahead, per worker */
    uint32_t warm_max_age_ms;        /* ... and how long one may wait for a caller */
    uint32_t line;                   /* where the config file declares it (1-based),
                                      * 0: from flags; for errors */
    struct sd_addr listen_addr; /* filled by sd_config_validate */
    struct sd_addr target_addr; /* filled by sd_config_validate */
};

struct sd_config {
    struct sd_listener_conf listeners[SD_MAX_LISTENERS];
    size_t nlisteners;
    int workers;               /* 0 = one per online core */
    uint32_t drain_timeout_ms;
    uint32_t max_conns;        /* per worker */
    int max_conns_set;         /* given by the user (not the default) */
    char *source;              /* config file path, or NULL for flags */
    int watch;                 /* reload when a file changes (inotify) */
    int close_revoked;         /* on reload, close connections no longer admitted */
    uint32_t expiry_warning_s; /* warn about certificates expiring within this */
    char *user;                /* NAME[:GROUP] to run as after binding, or NULL */
    /* --admin ADDR / `admin: ADDR`: a plaintext admin listener's address
     * (loopback or unix only); sd_config_validate() turns it into the
     * SD_MODE_ADMIN listener and frees it. The `admin:` mapping adds that
     * listener directly (with mutual TLS if it names cert, key, cacert). */
    char *admin;
};

/* "tcp" or "http": the word a listener's mode is written as (static);
 * "?" for a value that is neither. */
const char *sd_config_mode_name(unsigned mode);

/* Returns a config with defaults and no listener; NULL on allocation failure.
 * The caller owns it and frees it with sd_config_free(). */
struct sd_config *sd_config_new(void);
void sd_config_free(struct sd_config *cfg);
/* Frees every listener of cfg (used when a config file replaces flags). */
void sd_config_drop_listeners(struct sd_config *cfg);

/* Appends a listener with default timeouts; returns it (owned by cfg), or NULL
 * with err when SD_MAX_LISTENERS is reached. */
struct sd_listener_conf *sd_config_add_listener(struct sd_config *cfg,
                                                struct sd_err *err);

/* Adds an allow rule named by its config word ("allow-uri", "allow-all",
 * ...) to l. Returns 0, or -1 with err (unknown word or invalid value). */
int sd_config_add_rule(struct sd_listener_conf *l, const char *word,
                       const char *value, struct sd_err *err);

/* Adds a CRL file to l. Returns 0, or -1 with err. */
int sd_config_add_crl(struct sd_listener_conf *l, const char *path,
                      struct sd_err *err);

/* Replaces *slot with a copy of value. Returns 0, or -1 on allocation failure. */
int sd_config_set_str(char **slot, const char *value, struct sd_err *err);

/* Parses "500ms", "10s", "5m", "1h" or a plain number of seconds into
 * milliseconds (at most 24 h). Returns 0, or -1 with err naming what. */
int sd_config_parse_duration(const char *what, const char *text, uint32_t *ms,
                             struct sd_err *err);

/* The same, and also 0 ("0", "0s", ...), for settings where 0 means off. */
int sd_config_parse_duration_or_zero(const char *what, const char *text, uint32_t *ms,
                                     struct sd_err *err);

/* The same, in seconds, up to 10 years; also takes "7d". */
int sd_config_parse_seconds(const char *what, const char *text, uint32_t *s,
                            struct sd_err *err);

/* Parses a decimal integer in [min, max]. Returns 0, or -1 with err. */
int sd_config_parse_uint(const char *what, const char *text, uint32_t min,
                         uint32_t max, uint32_t *out, struct sd_err *err);

/* Rejects words that would weaken client authentication (optional client
 * certificates, plaintext listeners, "insecure" anything) with a message that
 * explains steeldoor has no such mode. Returns 0 when name is harmless. */
int sd_config_refuse_weakening(const char *name, struct sd_err *err);

/* Checks every listener is complete and consistent, parses addresses and
 * fills the defaults (name, workers). Does not open files: that is done when
 * the TLS contexts are built, which is where each file's error is named. */
int sd_config_validate(struct sd_config *cfg, struct sd_err *err);

/* Feeds every listener setting that can change whether a client is
 * admitted (listener identity, allow rules, CRL grace, chain depth, session
 * lifetime, and the paths of the CA bundle and CRLs) to feed(), as
 * length-prefixed fields, in a fixed order. The TLS layer adds the bytes of
 * the CA certificates and CRLs and makes a session's id context of it, so a
 * session never resumes under settings other than those that admitted it.
 * Settings that cannot change an admission (target, timeouts, PROXY
 * protocol, server certificate) are left out on purpose, so a reload that
 * changes only them keeps sessions. */
void sd_config_admission(const struct sd_listener_conf *l,
                         void (*feed)(void *arg, const void *p, size_t n), void *arg);

/* Loads a YAML config file, read through the snapshot `files`, into cfg (see
 * docs/config.md). Unknown keys are an error, so a typo never silently
 * weakens a listener. */
struct sd_files;
int sd_config_load_yaml(struct sd_config *cfg, const char *path, struct sd_files *files,
                        struct sd_err *err);

/* The same from len bytes held by the caller (at most 1 MiB); `name` is
 * the file's name in cfg->source and in messages. For the fuzz target and
 * tests; the gateway reads files only through a snapshot. */
int sd_config_load_yaml_bytes(struct sd_config *cfg, const char *name, const void *data,
                              size_t len, struct sd_err *err);

/* Prefixes err with where listener lc is written, for an error about it:
 * "FILE line N: listener NAME" (a config file; "connector", "admin
 * listener" by its mode), or "listener NAME" (flags). */
void sd_config_where(const struct sd_config *cfg, const struct sd_listener_conf *lc,
                     struct sd_err *err);

#endif
