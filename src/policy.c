/* policy.c - allow rules and their matchers (see sd/policy.h). */
#include "sd/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sd_rule {
    enum sd_rule_kind kind;
    char *value;   /* normalised rule value (DNS lowercased) */
    size_t len;
    uint8_t spki[SD_SPKI_LEN];
    char *text;    /* "kind:value" for logs */
};

struct sd_policy {
    struct sd_rule *rules;
    size_t n;
};

static const char *const sd_rule_names[] = {
    [SD_RULE_ALL] = "all", [SD_RULE_URI] = "uri", [SD_RULE_DNS] = "dns",
    [SD_RULE_CN] = "cn", [SD_RULE_OU] = "ou", [SD_RULE_SPKI] = "spki",
};

struct sd_policy *sd_policy_new(void)
{
    return calloc(1, sizeof(struct sd_policy));
}

void sd_policy_free(struct sd_policy *p)
{
    size_t i;

    if (p == NULL)
        return;
    for (i = 0; i < p->n; i++) {
        free(p->rules[i].value);
        free(p->rules[i].text);
    }
    free(p->rules);
    free(p);
}

int sd_policy_has_kind(const struct sd_policy *p, enum sd_rule_kind kind)
{
    size_t i;

    for (i = 0; p != NULL && i < p->n; i++)
        if (p->rules[i].kind == kind)
            return 1;
    return 0;
}

size_t sd_policy_count(const struct sd_policy *p)
{
    return p == NULL ? 0 : p->n;
}

const char *sd_policy_rule_text(const struct sd_policy *p, size_t index)
{
    return p != NULL && index < p->n ? p->rules[index].text : NULL;
}

/* ------------------------------------------------------------------ URIs */

/* Length of "scheme://authority", or 0 when s does not start with one. */
static size_t sd_uri_prefix_len(const char *s, size_t len)
{
    size_t i = 0, auth;

    if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                       (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-' ||
                       s[i] == '.'))
        i++;
    if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
        return 0;
    i += 3;
    auth = i;
    while (i < len && s[i] != '/') {
        if (s[i] == '*')
            return 0; /* the trust domain is never a wildcard */
        i++;
    }
    return i > auth ? i : 0;
}

int sd_policy_uri_valid(const char *s, size_t len, int allow_wildcards)
{
    size_t i, pre, seg;

    if (len == 0 || len > SD_POLICY_MAX_NAME)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Printable ASCII only; no percent-encoding (two spellings of one
         * path would let a pattern be dodged), no query or fragment. */
        if (c <= 0x20 || c >= 0x7f || c == '%' || c == '?' || c == '#' || c == '\\')
            return 0;
    }
    pre = sd_uri_prefix_len(s, len);
    if (pre == 0)
        return 0;
    if (pre == len)
        return 1;
    /* s[pre] == '/': every segment must be non-empty and not a dot segment */
    i = pre;
    while (i < len) {
        i++; /* skip '/' */
        seg = i;
        while (i < len && s[i] != '/')
            i++;
        if (i == seg)
            return 0; /* empty segment: "a//b" or a trailing '/' */
        if ((i - seg == 1 && s[seg] == '.') ||
            (i - seg == 2 && s[seg] == '.' && s[seg + 1] == '.'))
            return 0;
        if (memchr(s + seg, '*', i - seg) != NULL) {
            int star = i - seg == 1;
            int dstar = i - seg == 2 && s[seg] == '*' && s[seg + 1] == '*';
            if (!allow_wildcards || !(star || dstar))
                return 0;
            if (dstar && i != len)
                return 0; /* "**" only as the last segment */
        }
    }
    return 1;
}

int sd_policy_uri_match(const char *pattern, const char *name, size_t len)
{
    size_t plen = strlen(pattern), pre, pi, ni;

    if (!sd_policy_uri_valid(name, len, 0))
        return 0;
    pre = sd_uri_prefix_len(pattern, plen);
    if (pre == 0 || sd_uri_prefix_len(name, len) != pre || memcmp(pattern, name, pre) != 0)
        return 0;
    pi = ni = pre;
    for (;;) {
        size_t ps, pe, ns, ne;

        if (pi == plen || ni == len)
            return pi == plen && ni == len;
        ps = ++pi;
        while (pi < plen && pattern[pi] != '/')
            pi++;
        pe = pi;
        ns = ++ni;
        while (ni < len && name[ni] != '/')
            ni++;
        ne = ni;
        if (pe - ps == 2 && pattern[ps] == '*' && pattern[ps + 1] == '*')
            return 1; /* last segment by validation; the name has >= 1 here */
        if (pe - ps == 1 && pattern[ps] == '*')
            continue; /* any one segment (non-empty by validation) */
        if (pe - ps != ne - ns || memcmp(pattern + ps, name + ns, pe - ps) != 0)
            return 0;
    }
}

/* ------------------------------------------------------------------- DNS */

static int sd_dns_rule_valid(const char *s, size_t len)
{
    size_t i, label = 0;

    if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

static char sd_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int sd_policy_dns_match(const char *rule, const char *name, size_t len)
{
    size_t i;

    if (strlen(rule) != len)
        return 0;
    for (i = 0; i < len; i++)
        if (sd_lower(rule[i]) != sd_lower(name[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ SPKI */

static int sd_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int sd_b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Hex (64 digits, colons allowed) or base64 (43 chars + optional '='). */
static int sd_spki_parse(const char *s, uint8_t out[SD_SPKI_LEN])
{
    size_t i, n = 0, len = strlen(s);
    int hi = -1;

    for (i = 0; i < len; i++) {
        int v;
        if (s[i] == ':')
            continue;
        if ((v = sd_hexval(s[i])) < 0)
            break;
        if (hi < 0) {
            hi = v;
        } else {
            if (n == SD_SPKI_LEN)
                return -1;
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (i == len && n == SD_SPKI_LEN && hi < 0)
        return 0;
    /* base64: 32 bytes are 43 significant characters */
    if (len == 44 && s[43] == '=')
        len = 43;
    if (len != 43)
        return -1;
    {
        uint32_t acc = 0;
        int bits = 0;
        n = 0;
        for (i = 0; i < len; i++) {
            int v = sd_b64val(s[i]);
            if (v < 0)
                return -1;
            acc = acc << 6 | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out[n++] = (uint8_t)(acc >> bits);
            }
        }
        /* the 2 leftover bits must be zero for a canonical encoding */
        if (n != SD_SPKI_LEN || (acc & ((1u << bits) - 1)) != 0)
            return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- the set */

static int sd_text_valid(const char *s)
{
    size_t i, len = strlen(s);

    if (len == 0 || len > SD_POLICY_MAX_NAME)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

int sd_policy_add(struct sd_policy *p, enum sd_rule_kind kind, const char *value,
                  struct sd_err *err)
{
    struct sd_rule r, *grown;
    const char *name;
    size_t i, tlen;

    memset(&r, 0, sizeof(r));
    r.kind = kind;
    if ((unsigned)kind > SD_RULE_SPKI || (value == NULL && kind != SD_RULE_ALL))
        return sd_err_set(err, "invalid allow rule");
    name = sd_rule_names[kind];
    /* Rule values are echoed in errors only when printable, so a config
     * file cannot put control sequences on an operator's terminal. */
    if (kind != SD_RULE_ALL && !sd_text_valid(value))
        return sd_err_set(err, "allow-%s: must be non-empty text without control "
                          "characters (at most %d bytes)", name, SD_POLICY_MAX_NAME);
    if (p->n >= SD_POLICY_MAX_RULES)
        return sd_err_set(err, "too many allow rules (at most %d)", SD_POLICY_MAX_RULES);
    switch (kind) {
    case SD_RULE_ALL:
        value = "";
        break;
    case SD_RULE_URI:
        if (!sd_policy_uri_valid(value, strlen(value), 1))
            return sd_err_set(err, "allow-uri '%s': not a valid URI pattern (scheme://authority"
                              "/segments; '*' and a final '**' only as whole path segments; "
                              "no wildcard in the scheme or authority; no empty, '.' or '..' "
                              "segments, percent-encoding, query or fragment)", value);
        break;
    case SD_RULE_DNS:
        if (!sd_dns_rule_valid(value, strlen(value)))
            return sd_err_set(err, "allow-dns '%s': not a DNS name (wildcards are not "
                              "allowed in rules)", value);
        break;
    case SD_RULE_CN:
    case SD_RULE_OU:
        if (!sd_text_valid(value))
            return sd_err_set(err, "allow-%s: must be non-empty text without control "
                              "characters", name);
        break;
    case SD_RULE_SPKI:
        if (sd_spki_parse(value, r.spki) != 0)
            return sd_err_set(err, "allow-spki '%s': expected a SHA-256 as 64 hex digits "
                              "(colons allowed) or base64 (43 characters, or 44 with '=')",
                              value);
        break;
    }
    r.value = strdup(value);
    r.len = strlen(value);
    tlen = strlen(name) + 1 + (kind == SD_RULE_SPKI ? 2 * SD_SPKI_LEN : r.len) + 1;
    r.text = malloc(tlen);
    if (r.value == NULL || r.text == NULL)
        goto oom;
    if (kind == SD_RULE_DNS)
        for (i = 0; i < r.len; i++)
            r.value[i] = sd_lower(r.value[i]);
    if (kind == SD_RULE_ALL) {
        snprintf(r.text, tlen, "all");
    } else if (kind == SD_RULE_SPKI) {
        int off = snprintf(r.text, tlen, "spki:");
        for (i = 0; i < SD_SPKI_LEN; i++)
            off += snprintf(r.text + off, tlen - (size_t)off, "%02x", r.spki[i]);
    } else {
        snprintf(r.text, tlen, "%s:%s", name, r.value);
    }
    grown = realloc(p->rules, (p->n + 1) * sizeof(*grown));
    if (grown == NULL)
        goto oom;
    p->rules = grown;
    p->rules[p->n++] = r;
    return 0;
oom:
    free(r.value);
    free(r.text);
    return sd_err_set(err, "out of memory");
}

int sd_policy_check(const struct sd_policy *p, struct sd_err *err)
{
    size_t i;

    if (p == NULL || p->n == 0)
        return sd_err_set(err, "no allow rule: refusing to start; say who may connect "
                          "(--allow-uri, --allow-dns, --allow-cn, --allow-ou, --allow-spki, "
                          "or --allow-all for any client certificate that chains to --cacert)");
    for (i = 0; i < p->n; i++)
        if (p->rules[i].kind == SD_RULE_ALL && p->n > 1)
            return sd_err_set(err, "--allow-all cannot be combined with other allow rules "
                              "(it would make them meaningless)");
    return 0;
}

static int sd_name_has_ctl(const struct sd_name *n)
{
    size_t i;

    for (i = 0; i < n->len; i++)
        if ((unsigned char)n->s[i] < 0x20 || n->s[i] == 0x7f)
            return 1;
    return 0;
}

int sd_policy_identity_sane(const struct sd_identity *id)
{
    const struct sd_name *lists[] = { id->uris, id->dns, id->cns, id->ous };
    const size_t counts[] = { id->nuris, id->ndns, id->ncns, id->nous };
    size_t l, i;

    for (l = 0; l < 4; l++)
        for (i = 0; i < counts[l]; i++)
            if (sd_name_has_ctl(&lists[l][i]))
                return 0;
    return 1;
}

static int sd_exact(const struct sd_rule *r, const struct sd_name *n)
{
    return r->len == n->len && memcmp(r->value, n->s, n->len) == 0;
}

/* Compares pins without an early exit (they are not secret, but there is no
 * reason to leak how much of a pin matched). */
static int sd_spki_equal(const uint8_t *a, const uint8_t *b)
{
    uint8_t diff = 0;
    size_t i;

    for (i = 0; i < SD_SPKI_LEN; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

/* Is n a SPIFFE ID? (the scheme compares case-insensitively, RFC 3986) */
static int sd_is_spiffe(const struct sd_name *n)
{
    return n->len >= 9 && strncasecmp(n->s, "spiffe://", 9) == 0;
}

int sd_policy_identity_unambiguous(const struct sd_identity *id)
{
    size_t i, spiffe = 0;

    for (i = 0; i < id->nuris; i++)
        if (sd_is_spiffe(&id->uris[i]))
            spiffe++;
    return spiffe <= 1 && id->ncns <= 1;
}

/* With allow-all, no name was matched; the identity handed on is the one a
 * service would use: the SPIFFE ID, else the CN. */
static void sd_policy_default_name(const struct sd_identity *id, struct sd_policy_hit *hit)
{
    size_t i;

    for (i = 0; i < id->nuris; i++) {
        if (sd_is_spiffe(&id->uris[i])) {
            hit->kind = SD_RULE_URI;
            hit->index = i;
            return;
        }
    }
    if (id->ncns > 0) {
        hit->kind = SD_RULE_CN;
        hit->index = 0;
    }
}

int sd_policy_match_hit(const struct sd_policy *p, const struct sd_identity *id,
                        struct sd_policy_hit *hit)
{
    size_t r, i;

    hit->rule = -1;
    hit->kind = SD_RULE_ALL;
    hit->index = 0;
    if (!sd_policy_identity_sane(id))
        return -1;
    for (r = 0; r < p->n; r++) {
        const struct sd_rule *rule = &p->rules[r];
        hit->kind = rule->kind;
        switch (rule->kind) {
        case SD_RULE_ALL:
            sd_policy_default_name(id, hit);
            return hit->rule = (int)r;
        case SD_RULE_URI:
            for (i = 0; i < id->nuris; i++)
                if (sd_policy_uri_match(rule->value, id->uris[i].s, id->uris[i].len))
                    goto found;
            break;
        case SD_RULE_DNS:
            for (i = 0; i < id->ndns; i++)
                if (sd_policy_dns_match(rule->value, id->dns[i].s, id->dns[i].len))
                    goto found;
            break;
        case SD_RULE_CN:
            for (i = 0; i < id->ncns; i++)
                if (sd_exact(rule, &id->cns[i]))
                    goto found;
            break;
        case SD_RULE_OU:
            for (i = 0; i < id->nous; i++)
                if (sd_exact(rule, &id->ous[i]))
                    goto found;
            break;
        case SD_RULE_SPKI:
            i = 0;
            if (id->spki_sha256 != NULL && sd_spki_equal(rule->spki, id->spki_sha256))
                goto found;
            break;
        }
    }
    hit->kind = SD_RULE_ALL;
    return -1;
found:
    hit->index = i;
    return hit->rule = (int)r;
}

int sd_policy_match(const struct sd_policy *p, const struct sd_identity *id)
{
    struct sd_policy_hit hit;

    return sd_policy_match_hit(p, id, &hit);
}

const struct sd_name *sd_policy_hit_name(const struct sd_identity *id,
                                         const struct sd_policy_hit *hit)
{
    const struct sd_name *list = NULL;
    size_t n = 0;

    switch (hit->kind) {
    case SD_RULE_URI: list = id->uris; n = id->nuris; break;
    case SD_RULE_DNS: list = id->dns; n = id->ndns; break;
    case SD_RULE_CN: list = id->cns; n = id->ncns; break;
    case SD_RULE_OU: list = id->ous; n = id->nous; break;
    default: return NULL;
    }
    return hit->rule >= 0 && hit->index < n ? &list[hit->index] : NULL;
}
