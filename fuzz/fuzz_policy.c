/* fuzz_policy.c - libFuzzer target for the allow-rule matchers (policy.c).
 *
 * Input layout:
 *   byte 0        rule kind (value % 6: all, uri, dns, cn, ou, spki)
 *   bytes 1..NUL  the rule value, given to sd_policy_add() as a C string
 *   after the NUL the untrusted certificate name, any bytes (NULs too);
 *                 without a NUL the name is a copy of the rule value.
 *
 * The name is copied into a malloc'd buffer of exactly its length and never
 * NUL-terminated, so ASan reports any read past it. Invariants that fail
 * call __builtin_trap(); docs/fuzzing.md lists them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

/* ---------------------------------------------- reference implementations
 * Written from the header's semantics, independently of policy.c. */

static int ref_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* End of "scheme://authority" (index of the first path '/' or len), or 0. */
static size_t ref_prefix(const char *s, size_t len)
{
    size_t i = 1, a;

    if (len == 0 || !ref_alpha((unsigned char)s[0]))
        return 0;
    while (i < len && (ref_alpha((unsigned char)s[i]) || (s[i] >= '0' && s[i] <= '9') ||
                       s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i + 3 > len || s[i] != ':' || s[i + 1] != '/' || s[i + 2] != '/')
        return 0;
    a = i += 3;
    while (i < len && s[i] != '/') {
        if (s[i] == '*')
            return 0;
        i++;
    }
    return i == a ? 0 : i;
}

static int ref_uri_valid(const char *s, size_t len, int wild)
{
    size_t i, pre;

    if (len == 0 || len > SD_POLICY_MAX_NAME)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '%' || c == '?' || c == '#' || c == '\\')
            return 0;
    }
    if ((pre = ref_prefix(s, len)) == 0)
        return 0;
    /* s[i] == '/' at the top of each turn: one segment per turn */
    for (i = pre; i < len;) {
        size_t start = i + 1, end = start, n;

        while (end < len && s[end] != '/')
            end++;
        n = end - start;
        i = end;
        if (n == 0)
            return 0;
        if (n == 1 && s[start] == '.')
            return 0;
        if (n == 2 && s[start] == '.' && s[start + 1] == '.')
            return 0;
        if (memchr(s + start, '*', n) == NULL)
            continue;
        if (!wild)
            return 0;
        if (n == 1)
            continue;
        if (n == 2 && s[start] == '*' && s[start + 1] == '*' && end == len)
            continue;
        return 0;
    }
    return 1;
}

/* Segment-by-segment match of a valid pattern against a name. */
static int ref_uri_match(const char *pat, size_t plen, const char *name, size_t len)
{
    size_t pp, np, pi, ni;

    if (!ref_uri_valid(name, len, 0))
        return 0;
    pp = ref_prefix(pat, plen);
    np = ref_prefix(name, len);
    if (pp == 0 || pp != np || memcmp(pat, name, pp) != 0)
        return 0;
    pi = pp;
    ni = np;
    while (pi < plen) {
        size_t ps = pi + 1, pe = ps, ns = ni + 1, ne;

        while (pe < plen && pat[pe] != '/')
            pe++;
        if (ni >= len)
            return 0; /* pattern has a segment the name lacks ("**" too) */
        if (pe - ps == 2 && pat[ps] == '*' && pat[ps + 1] == '*')
            return 1;
        ne = ns;
        while (ne < len && name[ne] != '/')
            ne++;
        if (!(pe - ps == 1 && pat[ps] == '*') &&
            (pe - ps != ne - ns || memcmp(pat + ps, name + ns, pe - ps) != 0))
            return 0;
        pi = pe;
        ni = ne;
    }
    return ni == len;
}

static char ref_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static int ref_dns_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;

    if (alen != blen)
        return 0;
    for (i = 0; i < alen; i++)
        if (ref_lower(a[i]) != ref_lower(b[i]))
            return 0;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* ------------------------------------------------------------- the target */

static const char *const kind_names[] = { "all", "uri", "dns", "cn", "ou", "spki" };

static void check_uri(const struct sd_policy *p, const char *pat, size_t plen, const char *name,
                      size_t len, int sane)
{
    struct sd_identity id;
    struct sd_name n = { name, len };
    int r = sd_policy_uri_match(pat, name, len);
    char *w;
    size_t i, wl;

    CHECK(r == 0 || r == 1);
    CHECK(r == ref_uri_match(pat, plen, name, len));
    if (r) {
        CHECK(len <= SD_POLICY_MAX_NAME);
        CHECK(memchr(name, '\0', len) == NULL);
        CHECK(memchr(name, '*', len) == NULL);
        CHECK(sd_policy_uri_valid(name, len, 0));
    }
    /* the policy agrees with the matcher (a URI-only identity) */
    memset(&id, 0, sizeof(id));
    id.uris = &n;
    id.nuris = 1;
    CHECK(sd_policy_match(p, &id) == ((r && sane) ? 0 : -1));
    /* an exact pattern always matches itself */
    if (memchr(pat, '*', plen) == NULL) {
        w = malloc(plen);
        CHECK(w != NULL);
        memcpy(w, pat, plen);
        CHECK(sd_policy_uri_match(pat, w, plen) == 1);
        free(w);
        CHECK(r == (len == plen && memcmp(pat, name, len) == 0));
    }
    /* every accepted pattern matches something: each '*' or '**' segment
     * replaced by "x" (stays within the length limit: never longer) */
    w = malloc(plen);
    CHECK(w != NULL);
    for (i = wl = 0; i < plen; i++) {
        if (pat[i] == '*') {
            w[wl++] = 'x';
            while (i + 1 < plen && pat[i + 1] == '*')
                i++;
        } else {
            w[wl++] = pat[i];
        }
    }
    CHECK(sd_policy_uri_match(pat, w, wl) == 1);
    free(w);
}

static void check_names(const struct sd_policy *p, enum sd_rule_kind kind, const char *text,
                        const char *pat, size_t plen, const char *name, size_t len, int sane)
{
    struct sd_identity id;
    struct sd_name n = { name, len };
    const char *rule = text + strlen(kind_names[kind]) + 1;
    int expect;

    memset(&id, 0, sizeof(id));
    switch (kind) {
    case SD_RULE_DNS:
        CHECK(strlen(rule) == plen && ref_dns_equal(rule, plen, pat, plen));
        for (size_t i = 0; i < plen; i++)
            CHECK(!(rule[i] >= 'A' && rule[i] <= 'Z'));
        expect = ref_dns_equal(rule, plen, name, len);
        CHECK(sd_policy_dns_match(rule, name, len) == expect);
        CHECK(sd_policy_dns_match(rule, pat, plen) == 1);
        id.dns = &n;
        id.ndns = 1;
        break;
    case SD_RULE_CN:
    case SD_RULE_OU:
        CHECK(strcmp(rule, pat) == 0);
        expect = len == plen && memcmp(pat, name, len) == 0;
        if (kind == SD_RULE_CN) {
            id.cns = &n;
            id.ncns = 1;
        } else {
            id.ous = &n;
            id.nous = 1;
        }
        break;
    default:
        return;
    }
    if (expect)
        CHECK(memchr(name, '\0', len) == NULL && len <= SD_POLICY_MAX_NAME);
    CHECK(sd_policy_match(p, &id) == ((expect && sane) ? 0 : -1));
}

/* A rule never matches a name from another list: put the name everywhere
 * except the rule's own list. */
static void check_no_cross(const struct sd_policy *p, enum sd_rule_kind kind, const char *name,
                           size_t len)
{
    struct sd_identity id;
    struct sd_name n = { name, len };

    if (kind == SD_RULE_ALL)
        return;
    memset(&id, 0, sizeof(id));
    if (kind != SD_RULE_URI) { id.uris = &n; id.nuris = 1; }
    if (kind != SD_RULE_DNS) { id.dns = &n; id.ndns = 1; }
    if (kind != SD_RULE_CN) { id.cns = &n; id.ncns = 1; }
    if (kind != SD_RULE_OU) { id.ous = &n; id.nous = 1; }
    CHECK(sd_policy_match(p, &id) == -1);
}

static void check_spki(const struct sd_policy *p, const char *text, const char *name, size_t len)
{
    uint8_t pin[SD_SPKI_LEN];
    struct sd_identity id;
    size_t i;

    CHECK(strncmp(text, "spki:", 5) == 0 && strlen(text) == 5 + 2 * SD_SPKI_LEN);
    for (i = 0; i < SD_SPKI_LEN; i++) {
        int hi = hexval(text[5 + 2 * i]), lo = hexval(text[6 + 2 * i]);
        CHECK(hi >= 0 && lo >= 0);
        pin[i] = (uint8_t)(hi << 4 | lo);
    }
    memset(&id, 0, sizeof(id));
    CHECK(sd_policy_match(p, &id) == -1);
    id.spki_sha256 = pin;
    CHECK(sd_policy_match(p, &id) == 0);
    if (len == SD_SPKI_LEN) {
        id.spki_sha256 = (const uint8_t *)name;
        CHECK(sd_policy_match(p, &id) == (memcmp(pin, name, SD_SPKI_LEN) == 0 ? 0 : -1));
    }
    /* the normalised text is accepted again as the same pin */
    {
        struct sd_policy *q = sd_policy_new();
        CHECK(q != NULL);
        CHECK(sd_policy_add(q, SD_RULE_SPKI, text + 5, NULL) == 0);
        CHECK(strcmp(sd_policy_rule_text(q, 0), text) == 0);
        sd_policy_free(q);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum sd_rule_kind kind;
    const uint8_t *sep;
    char *pat, *name;
    size_t plen, len;
    struct sd_policy *p;
    struct sd_err err;
    struct sd_identity id;
    struct sd_name n;
    const char *text;
    int sane, rc;

    if (size < 1)
        return 0;
    kind = (enum sd_rule_kind)(data[0] % 6);
    data++;
    size--;
    sep = memchr(data, '\0', size);
    plen = sep != NULL ? (size_t)(sep - data) : size;
    pat = malloc(plen + 1);
    if (pat == NULL)
        return 0;
    memcpy(pat, data, plen);
    pat[plen] = '\0';
    /* the name in a buffer of exactly its length (calloc(0, 1) included) */
    len = sep != NULL ? size - plen - 1 : plen;
    name = calloc(len, 1);
    if (name == NULL && len > 0) {
        free(pat);
        return 0;
    }
    if (len > 0)
        memcpy(name, sep != NULL ? (const char *)sep + 1 : pat, len);

    /* the validator never over-reads and agrees with the reference */
    CHECK(sd_policy_uri_valid(name, len, 0) == ref_uri_valid(name, len, 0));
    CHECK(sd_policy_uri_valid(pat, plen, 1) == ref_uri_valid(pat, plen, 1));

    memset(&err, 0, sizeof(err));
    p = sd_policy_new();
    if (p == NULL)
        goto out_free;
    rc = sd_policy_add(p, kind, pat, &err);
    CHECK(rc == 0 || rc == -1);
    if (kind == SD_RULE_URI)
        CHECK((rc == 0) == ref_uri_valid(pat, plen, 1));
    if (rc != 0) {
        CHECK(err.msg[0] != '\0');
        CHECK(sd_policy_count(p) == 0);
        CHECK(sd_policy_check(p, NULL) == -1);
        goto out;
    }
    CHECK(sd_policy_count(p) == 1);
    CHECK(sd_policy_check(p, NULL) == 0);
    text = sd_policy_rule_text(p, 0);
    CHECK(text != NULL);
    CHECK(sd_policy_rule_text(p, 1) == NULL);
    if (kind == SD_RULE_ALL) {
        CHECK(strcmp(text, "all") == 0);
    } else {
        size_t kl = strlen(kind_names[kind]);
        CHECK(strncmp(text, kind_names[kind], kl) == 0 && text[kl] == ':');
    }

    memset(&id, 0, sizeof(id));
    n.s = name;
    n.len = len;
    id.uris = id.dns = id.cns = id.ous = &n;
    id.nuris = id.ndns = id.ncns = id.nous = 1;
    sane = sd_policy_identity_sane(&id);
    CHECK(sane == 0 || sane == 1);
    if (memchr(name, '\0', len) != NULL)
        CHECK(sane == 0);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            CHECK(sane == 0);
    if (!sane)
        CHECK(sd_policy_match(p, &id) == -1);
    if (kind == SD_RULE_ALL)
        CHECK(sd_policy_match(p, &id) == (sane ? 0 : -1));

    switch (kind) {
    case SD_RULE_URI:
        CHECK(strcmp(text + 4, pat) == 0);
        check_uri(p, pat, plen, name, len, sane);
        break;
    case SD_RULE_DNS:
    case SD_RULE_CN:
    case SD_RULE_OU:
        check_names(p, kind, text, pat, plen, name, len, sane);
        break;
    case SD_RULE_SPKI:
        check_spki(p, text, name, len);
        break;
    case SD_RULE_ALL:
        break;
    }
    check_no_cross(p, kind, name, len);

    /* a second rule: allow-all with anything else is refused by check */
    CHECK(sd_policy_add(p, SD_RULE_ALL, NULL, NULL) == 0);
    CHECK(sd_policy_check(p, NULL) == -1);
out:
    sd_policy_free(p);
out_free:
    free(pat);
    free(name);
    return 0;
}
