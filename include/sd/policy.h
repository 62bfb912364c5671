/*
 * sd/policy.h - who may enter: allow rules matched against a verified
 * client certificate's identity. Deny by default.
 *
 * This module sees no OpenSSL type: tls.c extracts the identity from the
 * certificate (names as byte strings with lengths, never C strings, so an
 * embedded NUL cannot shorten a name) and asks sd_policy_match().
 *
 * Rule semantics (docs/config.md has the user's view):
 *   uri   exact URI, or a pattern whose path segments may be "*" (exactly
 *         one non-empty segment) or, as the last segment only, "**" (one or
 *         more segments). Scheme and authority always compare exactly.
 *   dns   exact DNS SAN, ASCII case-insensitive; no wildcards.
 *   cn    exact subject commonName (never a SAN).
 *   ou    exact subject organizationalUnitName.
 *   spki  SHA-256 of the certificate's DER SubjectPublicKeyInfo.
 *   all   any certificate that verified.
 */
#ifndef SD_POLICY_H
#define SD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"

#define SD_POLICY_MAX_RULES 256
#define SD_POLICY_MAX_NAME 2048 /* longer names never match (SPIFFE's limit) */
#define SD_SPKI_LEN 32

enum sd_rule_kind {
    SD_RULE_ALL,
    SD_RULE_URI,
    SD_RULE_DNS,
    SD_RULE_CN,
    SD_RULE_OU,
    SD_RULE_SPKI,
};

struct sd_policy;

/* A name from a certificate: bytes and length, as found. */
struct sd_name {
    const char *s;
    size_t len;
};

struct sd_identity {
    const struct sd_name *uris;
    size_t nuris;
    const struct sd_name *dns;
    size_t ndns;
    const struct sd_name *cns;
    size_t ncns;
    const struct sd_name *ous;
    size_t nous;
    const uint8_t *spki_sha256; /* SD_SPKI_LEN bytes, or NULL */
};

/* Returns an empty policy (denies everything), or NULL when out of memory. */
struct sd_policy *sd_policy_new(void);
void sd_policy_free(struct sd_policy *p);

/* Adds a rule; value is validated and normalised here, so a bad rule stops
 * the start instead of silently never matching. Returns 0, or -1 with err. */
int sd_policy_add(struct sd_policy *p, enum sd_rule_kind kind, const char *value,
                  struct sd_err *err);

/* Checks the rule set as a whole (at least one rule; "all" alone). */
int sd_policy_check(const struct sd_policy *p, struct sd_err *err);

size_t sd_policy_count(const struct sd_policy *p);

/* Returns 1 when p has a rule of this kind (e.g. SPKI pins: only then is
 * the client's public key hashed). */
int sd_policy_has_kind(const struct sd_policy *p, enum sd_rule_kind kind);

/* The rule as logged: "uri:PATTERN", "dns:NAME", "spki:HEX", "all"... */
const char *sd_policy_rule_text(const struct sd_policy *p, size_t index);

/* Returns the index of the first rule that admits id, or -1 (deny). */
int sd_policy_match(const struct sd_policy *p, const struct sd_identity *id);

/* Which rule admitted, and by which of the identity's names: the name is
 * what steeldoor hands on (PROXY v2, logs) as "the" identity, so it is the
 * one that matched, never simply the first. For allow-all, the SPIFFE ID,
 * else the CN; for a SPKI pin, kind SD_RULE_SPKI (no name). */
struct sd_policy_hit {
    int rule;              /* index, or -1 */
    enum sd_rule_kind kind;
    size_t index;          /* into id's list of that kind */
};
int sd_policy_match_hit(const struct sd_policy *p, const struct sd_identity *id,
                        struct sd_policy_hit *hit);
/* The matched name of hit within id, or NULL (SPKI pins, allow-all without
 * SPIFFE ID or CN). Points into id. */
const struct sd_name *sd_policy_hit_name(const struct sd_identity *id,
                                         const struct sd_policy_hit *hit);

/* Returns 1 when id names one principal only: at most one SPIFFE ID (an
 * X.509-SVID has exactly one) and at most one CN. A certificate naming two
 * could be admitted as one and handed on as the other, so it is refused. */
int sd_policy_identity_unambiguous(const struct sd_identity *id);

/* Returns 1 when every name of id is free of NUL and control bytes, else 0.
 * A certificate that fails this is refused whatever the rules say. */
int sd_policy_identity_sane(const struct sd_identity *id);

/* The matchers themselves, exposed for unit tests and fuzzing. pattern is a
 * rule value that sd_policy_add() accepted; name is untrusted. */
int sd_policy_uri_match(const char *pattern, const char *name, size_t len);
int sd_policy_dns_match(const char *rule, const char *name, size_t len);
/* Validates a URI pattern (allow_wildcards) or a certificate URI. */
int sd_policy_uri_valid(const char *s, size_t len, int allow_wildcards);

#endif
