/*
 * sd/auth.h - the second factor of an HTTP listener: an API key or a
 * certificate-bound token on every request, on top of the client
 * certificate the handshake verified, and bound to it.
 *
 * Built once per generation and listener from the files the listener names
 * (api-keys, jwks), read through the files snapshot (so they are watched,
 * validated before use and swapped atomically with the rest), then read-only.
 *
 * Per request (HTTP mode, before the backend is contacted):
 *   - the credential is found: "Authorization: Bearer X" (X an API key or
 *     a JWT, told apart by form when both are configured) or the listener's
 *     api-key-header; no credential is 401, two are 400 (RFC 6750 2.);
 *   - it is verified (key digest, expiry, revocation; token signature and
 *     claims) - 401 when it fails;
 *   - it must be bound to the client certificate of this connection (key:
 *     bind patterns against the verified identity; token: cnf."x5t#S256"
 *     against the certificate's SHA-256) - 403 when it is not, logged at
 *     warn as a likely stolen credential with both identities;
 *   - a key's path prefixes must admit the request target - 403.
 * Then the credential's field is dropped from the request (unless
 * forward-credentials) and the backend gets X-Steeldoor-Auth and
 * X-Steeldoor-Key-Id or X-Steeldoor-Token-Sub (reserved names: a client's
 * copies are stripped like every identity header).
 *
 * A verified credential is remembered per connection (struct
 * sd_auth_cache): the next request with the same bytes, under the same
 * generation, skips the digest or signature; expiry and path prefixes are
 * still checked on every request. A reload (new generation) forgets it, so
 * a revoked key or a removed JWKS key stops working on open connections
 * at their next request.
 */
#ifndef SD_AUTH_H
#define SD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"
#include "sd/http_req.h"
#include "sd/peer.h"

struct sd_files;
struct sd_listener_conf;
struct sd_auth;

#define SD_AUTH_WHO_MAX 255

/* Builds lc's second factor, reading its keys file and JWKS through files.
 * *out is NULL when the listener has neither (no second factor). Returns
 * 0, or -1 with err naming the file at fault. */
int sd_auth_new(const struct sd_listener_conf *lc, struct sd_files *files,
                struct sd_auth **out, struct sd_err *err);
void sd_auth_free(struct sd_auth *a);

enum sd_auth_kind { SD_AUTH_NONE = 0, SD_AUTH_KEY, SD_AUTH_TOKEN };

/* The per-connection memory of the last verified credential. Zeroed at the
 * start; released with sd_auth_cache_fini(). */
struct sd_auth_cache {
    uint64_t gen;          /* generation it was verified under */
    const void *entry;     /* the key's entry (valid while gen is current) */
    char *cred;            /* a copy of the credential's bytes (owned) */
    size_t credlen;
    uint8_t kind;          /* enum sd_auth_kind; NONE: empty */
    int64_t expires;       /* Unix seconds, 0: never */
    char who[SD_AUTH_WHO_MAX + 1];
};
void sd_auth_cache_fini(struct sd_auth_cache *cache);

/* What one request presented, and to whom. */
struct sd_auth_request {
    const struct sd_http_field *f;
    size_t nf;
    struct sd_name target;       /* the request target, as sent */
    const struct sd_peer *peer;  /* verified client (peer->cert non-NULL) */
    int64_t now_s;               /* wall clock, Unix seconds */
    uint64_t gen;                /* the generation a is from */
};

struct sd_auth_result {
    int status;              /* 0: pass; else 400, 401 or 403 */
    const char *why;         /* log word: "auth_missing", "apikey_unknown", "jwt_expired"... */
    const char *challenge;   /* the WWW-Authenticate value of a 400/401, static */
    enum sd_auth_kind kind;  /* what was presented (NONE if nothing usable) */
    long field;              /* index of the field carrying it (dropped), -1 */
    int stolen;              /* valid, but bound to another certificate */
    const char *who;         /* key id or token sub (pass, 403), else NULL;
                              * points into the cache, a or whobuf */
    char whobuf[SD_AUTH_WHO_MAX + 1];
    char bound_to[80];       /* a token's 403: "x5t#S256:HEX" of the
                              * certificate it is bound to */
    char *const *binds;      /* a key's 403: the patterns it is bound to (in a) */
    size_t nbinds;
};

/* Judges one request (see above). Returns 0 with res filled either way;
 * -1 only when out of memory (the caller answers 503). */
int sd_auth_check(const struct sd_auth *a, struct sd_auth_cache *cache,
                  const struct sd_auth_request *rq, struct sd_auth_result *res);

/* 1 when the listener forwards the credential field to the backend. */
int sd_auth_forwards(const struct sd_auth *a);

#endif
