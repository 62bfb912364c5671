/*
 * sd/apikeys.h - API keys bound to certificate identities (the second
 * factor's "what you know", tied to mTLS's "what you have").
 *
 * A keys file holds, per key, never the key itself but its digest, with the
 * identities it is bound to (allow-rule patterns), an optional expiry, an
 * optional revocation time and optional path prefixes. `steeldoor apikey`
 * writes it (new, revoke) and reads it (list); `serve` reads it through the
 * files snapshot, so it is watched and reloaded like certificates.
 *
 * The file is YAML, a list of mappings, one per key (docs/auth.md):
 *
 *   - id: billing-ci
 *     revoked: "2026-12-02T10:00:00Z"       # set by `apikey revoke`
 *     expires: "2027-06-30T00:00:00Z"       # optional
 *     paths: ["/invoices/"]                 # optional
 *     bind: ["uri:spiffe://example.org/billing"]
 *     digest: "sha256:9f86d081884c7d65...(64 hex)"
 *
 * (fields in any order; `apikey` writes the digest last, see cli_apikey.c)
 *
 * A bind pattern is KIND:VALUE with the kinds of the allow rules (uri, dns,
 * cn, ou, spki; the same syntax and matching, sd/policy.h); a value with
 * "://" and no kind is a URI. "all" is refused: a key bound to every
 * certificate is bound to none.
 *
 * A key is "sdk_" followed by 43 base64url characters (32 random bytes);
 * its digest is the SHA-256 of that whole text. Lookup hashes what the
 * client sent once, then compares that digest with every entry's, in
 * constant time and without stopping at a match, so neither the time nor
 * the path taken says which entry (if any) matched, or where a digest
 * differs.
 *
 * Only src/auth/apikeys.c includes OpenSSL.
 */
#ifndef SD_APIKEYS_H
#define SD_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"
#include "sd/policy.h"

#define SD_APIKEY_PREFIX "sdk_"
#define SD_APIKEY_ID_MAX 64      /* id: [A-Za-z0-9._-], 1..64 bytes */
#define SD_APIKEY_LEN_MAX 256    /* a longer credential is never a key */
#define SD_APIKEYS_MAX 10000     /* entries per file */
#define SD_APIKEY_MAX_BINDS 16
#define SD_APIKEY_MAX_PATHS 16
#define SD_APIKEY_PATH_MAX 1024

struct sd_apikey {
    char id[SD_APIKEY_ID_MAX + 1];
    uint8_t digest[32];       /* SHA-256 of the key's text */
    struct sd_policy *bind;   /* the identities it is bound to (owned) */
    char **binds;             /* the patterns as written ("uri:..."), for list and logs */
    size_t nbinds;
    int64_t expires;          /* Unix seconds; 0: never */
    int64_t revoked;          /* Unix seconds of the revocation; 0: in force */
    char **paths;             /* path prefixes ("/api/"); none: every path */
    size_t npaths;
};

struct sd_apikeys;

/* Parses a keys file's bytes; name is the file's path, for messages
 * ("keys.yaml:7: ..."). Refused: bad YAML, an unknown field, a missing
 * id/digest/bind, a bad id, digest, pattern, date or path, two entries with
 * the same id or digest, more than SD_APIKEYS_MAX entries. An empty file
 * (or an empty list) is valid: no key passes. Returns 0 with *out (owned by
 * the caller), or -1 with err. */
int sd_apikeys_parse(const char *name, const void *data, size_t len, struct sd_apikeys **out,
                     struct sd_err *err);
void sd_apikeys_free(struct sd_apikeys *k);

size_t sd_apikeys_count(const struct sd_apikeys *k);
const struct sd_apikey *sd_apikeys_at(const struct sd_apikeys *k, size_t i);

/* The entry whose digest is that of key[0, len), or NULL: constant time in
 * which entry matches (see above). Revoked and expired entries are found
 * too (the caller says why it refuses them). key is untrusted. */
const struct sd_apikey *sd_apikeys_find(const struct sd_apikeys *k, const char *key,
                                        size_t len);

/* 1 when the request target (origin-form "/a/b?q", or absolute-form
 * "https://host/a/b") may be reached with e: e has no paths, or the
 * target's path starts with one of them at a segment boundary ("/api"
 * admits "/api", "/api/x", "/api?q", never "/apix"; "/api/" admits
 * "/api/x"). A path a backend could read as another one (a "." or ".."
 * segment, also with ";params", a backslash, a percent-encoded '.', '/',
 * '\' or ';') never matches a prefix. 0 otherwise. */
int sd_apikey_path_ok(const struct sd_apikey *e, const char *target, size_t len);

/* "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SSZ" to Unix seconds.
 * Returns 0, or -1 with err naming `what`. */
int sd_apikeys_parse_time(const char *what, const char *text, int64_t *out,
                          struct sd_err *err);

/* For `steeldoor apikey` (src/cli_apikey.c), which sees no OpenSSL: */

/* A key's length: "sdk_" + base64url of 32 bytes (43 characters). */
#define SD_APIKEY_TEXT_LEN 47

/* A new key from RAND_priv_bytes into key (NUL-terminated) and its digest.
 * The caller wipes key with sd_apikeys_wipe() once it is shown. Returns 0,
 * or -1 with err. */
int sd_apikeys_generate(char key[SD_APIKEY_TEXT_LEN + 1], uint8_t digest[32],
                        struct sd_err *err);

/* OPENSSL_cleanse: wipes n bytes at p (not optimised away). */
void sd_apikeys_wipe(void *p, size_t n);

/* Validates one value as sd_apikeys_parse() would in a file: field is
 * "id", "digest", "bind", "paths" (one prefix), "expires" or "revoked".
 * Returns 0, or -1 with err ("bind: 'foo' is not a pattern (...)"). */
int sd_apikeys_check_field(const char *field, const char *value, struct sd_err *err);

#endif
