/* Unit tests for policy.c: the allow-rule matchers, fed hostile names.
 *
 * Every untrusted name is copied so that it ends exactly where an unreadable
 * page begins (picohttpparser style): a matcher that reads one byte past a
 * name's length crashes the test instead of passing by luck. Names carry
 * their length and are never NUL-terminated. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/policy.h"

/* ------------------------------------------------------- guarded names */

#define GUARD_MAX 512

static struct {
    void *map;
    size_t len;
} guards[GUARD_MAX];
static size_t nguards;

/* Returns a read-only copy of s[0..len) whose last byte is the last byte
 * before a PROT_NONE page. len may be 0 (the pointer is then the start of
 * the unreadable page itself). */
static const char *guarded(const void *s, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + pg - 1) / pg * pg;
    uint8_t *m;

    assert_true(nguards < GUARD_MAX);
    m = mmap(NULL, data + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + data, pg, PROT_NONE), 0);
    if (len > 0)
        memcpy(m + data - len, s, len);
    if (data > 0)
        assert_int_equal(mprotect(m, data, PROT_READ), 0);
    guards[nguards].map = m;
    guards[nguards].len = data + pg;
    nguards++;
    return (const char *)(m + data - len);
}

static int guards_release(void **state)
{
    (void)state;
    while (nguards > 0) {
        nguards--;
        munmap(guards[nguards].map, guards[nguards].len);
    }
    return 0;
}

/* A name for an sd_identity, guarded. */
static struct sd_name gname(const void *s, size_t len)
{
    struct sd_name n;

    n.s = guarded(s, len);
    n.len = len;
    return n;
}

/* Literal (embedded NULs included, final NUL excluded). */
#define LIT(lit) (lit), (sizeof(lit) - 1)

static int uri_m(const char *pattern, const char *name, size_t len)
{
    return sd_policy_uri_match(pattern, guarded(name, len), len);
}

static int dns_m(const char *rule, const char *name, size_t len)
{
    return sd_policy_dns_match(rule, guarded(name, len), len);
}

static struct sd_policy *policy1(enum sd_rule_kind kind, const char *value)
{
    struct sd_policy *p = sd_policy_new();
    struct sd_err err;

    assert_non_null(p);
    err.msg[0] = '\0';
    if (sd_policy_add(p, kind, value, &err) != 0)
        fail_msg("rule '%s' refused: %s", value, err.msg);
    return p;
}

/* Returns 0 when accepted, -1 when refused (checking the error is set and
 * the policy did not grow). */
static int add(struct sd_policy *p, enum sd_rule_kind kind, const char *value)
{
    struct sd_err err;
    size_t before = sd_policy_count(p);
    int rc;

    memset(&err, 0, sizeof(err));
    rc = sd_policy_add(p, kind, value, &err);
    if (rc != 0) {
        assert_int_equal(rc, -1);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(sd_policy_count(p), before);
    } else {
        assert_int_equal(sd_policy_count(p), before + 1);
    }
    return rc;
}

static int accepted(enum sd_rule_kind kind, const char *value)
{
    struct sd_policy *p = sd_policy_new();
    int rc;

    assert_non_null(p);
    rc = add(p, kind, value);
    sd_policy_free(p);
    return rc == 0;
}

/* sd_policy_match for an identity carrying one name of one kind. */
static int match1(const struct sd_policy *p, enum sd_rule_kind list, const char *s, size_t len)
{
    struct sd_identity id;
    struct sd_name n = gname(s, len);

    memset(&id, 0, sizeof(id));
    switch (list) {
    case SD_RULE_URI: id.uris = &n; id.nuris = 1; break;
    case SD_RULE_DNS: id.dns = &n; id.ndns = 1; break;
    case SD_RULE_CN: id.cns = &n; id.ncns = 1; break;
    case SD_RULE_OU: id.ous = &n; id.nous = 1; break;
    default: fail();
    }
    return sd_policy_match(p, &id);
}

/* A single-rule policy and a single name: 1 when admitted. */
static int admits(enum sd_rule_kind kind, const char *rule, enum sd_rule_kind list,
                  const char *s, size_t len)
{
    struct sd_policy *p = policy1(kind, rule);
    int r = match1(p, list, s, len);

    sd_policy_free(p);
    assert_true(r == 0 || r == -1);
    return r == 0;
}

/* A malloc'd string of n copies of c after prefix. */
static char *longname(const char *prefix, char c, size_t total)
{
    size_t plen = strlen(prefix);
    char *s = malloc(total + 1);

    assert_non_null(s);
    assert_true(total >= plen);
    memcpy(s, prefix, plen);
    memset(s + plen, c, total - plen);
    s[total] = '\0';
    return s;
}

/* ---------------------------------------------------------------- tests */

static void test_guard_page_works(void **state)
{
    const char *g = guarded(LIT("spiffe://example.org/x"));
    pid_t pid;
    int st;

    (void)state;
    /* the harness itself: reading one byte past the name must fault */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        volatile const char *v = g;
        /* cmocka catches SIGSEGV to report a failure and go on: not here */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        _exit(v[sizeof("spiffe://example.org/x") - 1] == 'Z' ? 0 : 0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0));
}

static void test_free_null_and_empty(void **state)
{
    struct sd_policy *p = sd_policy_new();
    struct sd_identity id;
    struct sd_name n = gname(LIT("spiffe://example.org/x"));

    (void)state;
    sd_policy_free(NULL);
    assert_int_equal(sd_policy_count(NULL), 0);
    assert_non_null(p);
    assert_int_equal(sd_policy_count(p), 0);
    assert_null(sd_policy_rule_text(p, 0));
    /* an empty policy denies everything */
    memset(&id, 0, sizeof(id));
    assert_int_equal(sd_policy_match(p, &id), -1);
    id.uris = &n;
    id.nuris = 1;
    assert_int_equal(sd_policy_match(p, &id), -1);
    sd_policy_free(p);
}

static void test_uri_exact(void **state)
{
    const char *pat = "spiffe://example.org/ns/prod/sa/web";

    (void)state;
    assert_true(accepted(SD_RULE_URI, pat));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/web/x")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/webx")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/we")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/web/")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa//web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/NS/prod/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/web?x=1")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/web#frag")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/%77eb")));
    assert_false(uri_m(pat, LIT("")));
    /* trust domain alone */
    assert_true(accepted(SD_RULE_URI, "spiffe://example.org"));
    assert_true(uri_m("spiffe://example.org", LIT("spiffe://example.org")));
    assert_false(uri_m("spiffe://example.org", LIT("spiffe://example.org/")));
    assert_false(uri_m("spiffe://example.org", LIT("spiffe://example.org/x")));
    assert_false(uri_m("spiffe://example.org", LIT("spiffe://example.or")));
    assert_false(uri_m("spiffe://example.org", LIT("spiffe://example.orgx")));
    /* the same through the policy */
    assert_true(admits(SD_RULE_URI, pat, SD_RULE_URI, LIT("spiffe://example.org/ns/prod/sa/web")));
    assert_false(admits(SD_RULE_URI, pat, SD_RULE_URI, LIT("spiffe://example.org/ns/prod/sa/webb")));
}

static void test_uri_star(void **state)
{
    const char *pat = "spiffe://example.org/ns/*/sa/web";
    const char *last = "spiffe://example.org/ns/*";

    (void)state;
    assert_true(accepted(SD_RULE_URI, pat));
    assert_true(accepted(SD_RULE_URI, last));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/prod/sa/web")));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/p/sa/web")));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/.../sa/web")));
    /* never zero, two or an empty segment */
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns//sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a/b/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/./sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/../sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a%2Fb/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a%2fb/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/%2e%2e/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a?/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a#/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\\b/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\0b/sa/web")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/*/sa/web")));
    /* last segment */
    assert_true(uri_m(last, LIT("spiffe://example.org/ns/x")));
    assert_false(uri_m(last, LIT("spiffe://example.org/ns")));
    assert_false(uri_m(last, LIT("spiffe://example.org/ns/")));
    assert_false(uri_m(last, LIT("spiffe://example.org/ns/x/")));
    assert_false(uri_m(last, LIT("spiffe://example.org/ns/x/y")));
    assert_false(uri_m(last, LIT("spiffe://example.org/ns//x")));
    assert_false(uri_m(last, LIT("spiffe://example.org/nsx/y")));
    assert_false(uri_m(last, LIT("spiffe://example.org/ns/x?y")));
    /* several stars */
    assert_true(accepted(SD_RULE_URI, "spiffe://example.org/*/*/*"));
    assert_true(uri_m("spiffe://example.org/*/*/*", LIT("spiffe://example.org/a/b/c")));
    assert_false(uri_m("spiffe://example.org/*/*/*", LIT("spiffe://example.org/a/b")));
    assert_false(uri_m("spiffe://example.org/*/*/*", LIT("spiffe://example.org/a/b/c/d")));
}

static void test_uri_double_star(void **state)
{
    const char *pat = "spiffe://example.org/ns/**";

    (void)state;
    assert_true(accepted(SD_RULE_URI, pat));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/a")));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/a/b")));
    assert_true(uri_m(pat, LIT("spiffe://example.org/ns/a/b/c/d/e/f")));
    /* one or more, never zero */
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/")));
    assert_false(uri_m(pat, LIT("spiffe://example.org")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/nsx/a")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/n/a")));
    /* the name is still validated below the "**" */
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a/")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns//a")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a/../../etc")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/..")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/.")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/%2e%2e/admin")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a%2F..%2Fadmin")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a?b")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a#b")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\0")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\0/b")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\x01")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\x7f")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a\n")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a b")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/caf\xc3\xa9")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/\xff")));
    assert_false(uri_m(pat, LIT("spiffe://example.org/ns/a*")));
    /* "**" right after the authority */
    assert_true(accepted(SD_RULE_URI, "spiffe://example.org/**"));
    assert_true(uri_m("spiffe://example.org/**", LIT("spiffe://example.org/a")));
    assert_false(uri_m("spiffe://example.org/**", LIT("spiffe://example.org")));
    assert_false(uri_m("spiffe://example.org/**", LIT("spiffe://example.org/")));
    /* "*" then "**" */
    assert_true(accepted(SD_RULE_URI, "spiffe://example.org/*/**"));
    assert_true(uri_m("spiffe://example.org/*/**", LIT("spiffe://example.org/a/b")));
    assert_false(uri_m("spiffe://example.org/*/**", LIT("spiffe://example.org/a")));
}

static void test_uri_trust_domain(void **state)
{
    static const char *const pats[] = {
        "spiffe://example.org/*", "spiffe://example.org/**", "spiffe://example.org/x",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        const char *pat = pats[i];

        assert_true(accepted(SD_RULE_URI, pat));
        assert_true(uri_m(pat, LIT("spiffe://example.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.org.evil/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.org")));
        assert_false(uri_m(pat, LIT("spiffe://EXAMPLE.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.ORG/x")));
        assert_false(uri_m(pat, LIT("SPIFFE://example.org/x")));
        assert_false(uri_m(pat, LIT("Spiffe://example.org/x")));
        assert_false(uri_m(pat, LIT("https://example.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://evil.example.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://xexample.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.or/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.org:443/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.org@evil/x")));
        assert_false(uri_m(pat, LIT("spiffe://evil@example.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.org./x")));
        assert_false(uri_m(pat, LIT("spiffe://example%2eorg/x")));
        assert_false(uri_m(pat, LIT("spiffe://example.org\0.evil/x")));
        assert_false(uri_m(pat, LIT("spiffe:/example.org/x")));
        assert_false(uri_m(pat, LIT("spiffe:///x")));
        assert_false(uri_m(pat, LIT("spiffe://*/x")));
        assert_false(uri_m(pat, LIT("//example.org/x")));
        assert_false(uri_m(pat, LIT("spiffe://")));
        assert_false(uri_m(pat, LIT("spiffe:")));
        assert_false(uri_m(pat, LIT("s")));
    }
    /* the trust domain is never a wildcard */
    assert_false(accepted(SD_RULE_URI, "spiffe://*/x"));
    assert_false(accepted(SD_RULE_URI, "spiffe://**/x"));
    assert_false(accepted(SD_RULE_URI, "spiffe://*"));
    assert_false(accepted(SD_RULE_URI, "spiffe://*.example.org/x"));
    assert_false(accepted(SD_RULE_URI, "spiffe://example.*/x"));
    assert_false(accepted(SD_RULE_URI, "spiffe://exa*mple.org/x"));
    assert_false(accepted(SD_RULE_URI, "*://example.org/x"));
    assert_false(accepted(SD_RULE_URI, "spif*://example.org/x"));
}

static void test_uri_bad_patterns(void **state)
{
    static const char *const bad[] = {
        "",
        "spiffe",
        "spiffe:",
        "spiffe:/",
        "spiffe://",
        "spiffe:///x",
        "spiffe:/example.org/x",
        "//example.org/x",
        "1spiffe://example.org/x",
        "-spiffe://example.org/x",
        "spi_ffe://example.org/x",
        "spiffe://example.org/",
        "spiffe://example.org//x",
        "spiffe://example.org/x/",
        "spiffe://example.org/x//y",
        "spiffe://example.org/.",
        "spiffe://example.org/..",
        "spiffe://example.org/./x",
        "spiffe://example.org/../x",
        "spiffe://example.org/x/..",
        "spiffe://example.org/x/./y",
        "spiffe://example.org/%2e%2e/x",
        "spiffe://example.org/a%2Fb",
        "spiffe://example.org/a%2fb",
        "spiffe://example.org/%",
        "spiffe://example.org/x?y",
        "spiffe://example.org/x?",
        "spiffe://example.org/x#y",
        "spiffe://example.org/x#",
        "spiffe://example.org/a\\b",
        "spiffe://example.org/a b",
        "spiffe://example.org/a\tb",
        "spiffe://example.org/a\x01",
        "spiffe://example.org/a\x7f",
        "spiffe://example.org/a\n",
        "spiffe://example.org/caf\xc3\xa9",
        "spiffe://ex\xc3\xa4mple.org/x",
        " spiffe://example.org/x",
        "spiffe://example.org/x ",
        /* wildcards only as whole segments, "**" only last */
        "spiffe://example.org/**/x",
        "spiffe://example.org/**/**",
        "spiffe://example.org/***",
        "spiffe://example.org/*a",
        "spiffe://example.org/a*b",
        "spiffe://example.org/x/*x",
        "spiffe://example.org/*x/y",
        "spiffe://example.org/x*/y",
        "spiffe://example.org/x**",
        "spiffe://example.org/**x",
        "spiffe://example.org/*/",
        "spiffe://example.org/**/",
        "spiffe://example.org//**",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (accepted(SD_RULE_URI, bad[i]))
            fail_msg("URI pattern '%s' should be refused", bad[i]);
}

/* Regression: a last segment of two bytes whose second byte is '*' ("a*")
 * was taken for "**" (only s[seg + 1] was checked), so the rule was accepted
 * and then silently never matched (certificate URIs cannot contain '*'). */
static void test_uri_pattern_x_star_last_refused(void **state)
{
    static const char *const bad[] = {
        "spiffe://example.org/a*",
        "spiffe://example.org/ns/prod/w*",
        "spiffe://example.org/.*",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (accepted(SD_RULE_URI, bad[i]))
            fail_msg("URI pattern '%s' accepted (it can never match)", bad[i]);
        assert_false(sd_policy_uri_valid(bad[i], strlen(bad[i]), 1));
    }
}

static void test_uri_valid_certificate_names(void **state)
{
    (void)state;
    /* a certificate URI (allow_wildcards 0) never carries a wildcard */
    assert_true(sd_policy_uri_valid(guarded(LIT("spiffe://e/x")), 12, 0));
    assert_false(sd_policy_uri_valid(guarded(LIT("spiffe://e/*")), 12, 0));
    assert_false(sd_policy_uri_valid(guarded(LIT("spiffe://e/**")), 13, 0));
    assert_true(sd_policy_uri_valid(guarded(LIT("spiffe://e/*")), 12, 1));
    assert_false(sd_policy_uri_valid(guarded(LIT("spiffe://*/x")), 12, 1));
    assert_false(sd_policy_uri_valid(guarded("", 0), 0, 0));
    assert_false(sd_policy_uri_valid(guarded(LIT("spiffe://e/x\0")), 13, 0));
    /* a prefix of a valid URI given with a shorter length is judged alone */
    assert_true(sd_policy_uri_valid(guarded(LIT("spiffe://e")), 10, 0));
    assert_false(sd_policy_uri_valid(guarded(LIT("spiffe://")), 9, 0));
    assert_false(sd_policy_uri_valid(guarded(LIT("spiffe:/")), 8, 0));
    assert_false(sd_policy_uri_valid(guarded(LIT("s")), 1, 0));
}

static void test_uri_long_names(void **state)
{
    const char *pre = "spiffe://example.org/";
    size_t plen = strlen(pre);
    char *at = longname(pre, 'a', SD_POLICY_MAX_NAME);
    char *over = longname(pre, 'a', SD_POLICY_MAX_NAME + 1);
    char *huge = longname(pre, 'a', 65536);
    char *segs = longname(pre, 's', SD_POLICY_MAX_NAME);
    char *segs_over = longname(pre, 's', SD_POLICY_MAX_NAME + 1);
    size_t i;

    (void)state;
    /* many one-byte segments: "s/s/s/..." ending in 's' (2048 - 21 is odd) */
    for (i = plen + 1; i < SD_POLICY_MAX_NAME; i += 2)
        segs[i] = '/';
    assert_int_equal(segs[SD_POLICY_MAX_NAME - 1], 's');
    for (i = plen + 1; i < SD_POLICY_MAX_NAME + 1; i += 2)
        segs_over[i] = '/';
    segs_over[SD_POLICY_MAX_NAME] = 's';
    segs_over[SD_POLICY_MAX_NAME - 1] = 's';

    /* exactly at the limit: an exact rule is accepted and matches */
    assert_true(accepted(SD_RULE_URI, at));
    assert_true(uri_m(at, at, SD_POLICY_MAX_NAME));
    assert_true(admits(SD_RULE_URI, at, SD_RULE_URI, at, SD_POLICY_MAX_NAME));
    assert_true(uri_m("spiffe://example.org/*", at, SD_POLICY_MAX_NAME));
    assert_true(uri_m("spiffe://example.org/**", at, SD_POLICY_MAX_NAME));
    assert_true(uri_m("spiffe://example.org/**", segs, SD_POLICY_MAX_NAME));
    assert_false(uri_m("spiffe://example.org/*", segs, SD_POLICY_MAX_NAME));
    assert_true(accepted(SD_RULE_URI, segs));
    assert_true(uri_m(segs, segs, SD_POLICY_MAX_NAME));
    /* one past it: never */
    assert_false(accepted(SD_RULE_URI, over));
    assert_false(uri_m("spiffe://example.org/*", over, SD_POLICY_MAX_NAME + 1));
    assert_false(uri_m("spiffe://example.org/**", over, SD_POLICY_MAX_NAME + 1));
    assert_false(uri_m("spiffe://example.org/**", segs_over, SD_POLICY_MAX_NAME + 1));
    assert_false(uri_m(at, over, SD_POLICY_MAX_NAME + 1));
    assert_false(uri_m("spiffe://example.org/**", huge, 65536));
    assert_false(admits(SD_RULE_URI, "spiffe://example.org/**", SD_RULE_URI, huge, 65536));
    free(at);
    free(over);
    free(huge);
    free(segs);
    free(segs_over);
}

static void test_dns(void **state)
{
    struct sd_policy *p = policy1(SD_RULE_DNS, "Api.Example.COM");

    (void)state;
    assert_string_equal(sd_policy_rule_text(p, 0), "dns:api.example.com");
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.com")), 0);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("API.EXAMPLE.COM")), 0);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("aPi.ExAmPlE.cOm")), 0);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.com.")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT(".api.example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.co")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.comm")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("xapi.example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("x.api.example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("*.example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("*")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.com\0")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.com\0.evil.net")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api\0example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.com ")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.com\n")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.ex\xc3\xa4mple.com")), -1);
    /* bytes that would fold onto the name under a careless tolower */
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("\xc1pi.example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("\xe1pi.example.com")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.c\x8fm")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.c\xcfm")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("API.EXAMPLE.COM")), 0);
    assert_int_equal(match1(p, SD_RULE_DNS, LIT("api.example.%63om")), -1);
    assert_int_equal(match1(p, SD_RULE_DNS, "", 0), -1);
    sd_policy_free(p);
    /* the matcher itself, name not NUL-terminated */
    assert_true(dns_m("api.example.com", LIT("API.Example.Com")));
    assert_false(dns_m("api.example.com", LIT("api.example.com\0")));
    assert_false(dns_m("api.example.com", LIT("api.example.co")));
    assert_false(dns_m("api.example.com", "", 0));
}

static void test_dns_rules(void **state)
{
    static const char *const bad[] = {
        "", ".", "..", "*.example.com", "*", "api.*.com", ".example.com", "example.com.",
        "a..b", "exa mple.com", "example.com\n", "ex\xc3\xa4mple.com", "ex%41mple.com",
        "example.com/x", "example.com:443", "user@example.com", "[::1]",
    };
    char label63[64 + 1], label64[65 + 1], n253[254], n254[255];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (accepted(SD_RULE_DNS, bad[i]))
            fail_msg("DNS rule '%s' should be refused", bad[i]);
    assert_true(accepted(SD_RULE_DNS, "localhost"));
    assert_true(accepted(SD_RULE_DNS, "a-b.example.com"));
    /* label and name lengths at and past their limits */
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'a', 64);
    label64[64] = '\0';
    assert_true(accepted(SD_RULE_DNS, label63));
    assert_false(accepted(SD_RULE_DNS, label64));
    /* 63.63.63.61 = 253 */
    memset(n253, 'b', 253);
    n253[63] = n253[127] = n253[191] = '.';
    n253[253] = '\0';
    assert_true(accepted(SD_RULE_DNS, n253));
    assert_true(admits(SD_RULE_DNS, n253, SD_RULE_DNS, n253, 253));
    memcpy(n254, n253, 253);
    n254[253] = 'b';
    n254[254] = '\0';
    assert_false(accepted(SD_RULE_DNS, n254));
    assert_false(admits(SD_RULE_DNS, n253, SD_RULE_DNS, n254, 254));
}

static void test_kinds_never_cross(void **state)
{
    const char *v = "api.example.com";
    struct sd_identity id;
    struct sd_name n = gname(v, strlen(v));
    struct sd_policy *p;

    (void)state;
    /* a DNS rule never matches a CN, OU or URI of the same text */
    assert_false(admits(SD_RULE_DNS, v, SD_RULE_CN, v, strlen(v)));
    assert_false(admits(SD_RULE_DNS, v, SD_RULE_OU, v, strlen(v)));
    assert_false(admits(SD_RULE_DNS, v, SD_RULE_URI, v, strlen(v)));
    /* a CN rule never matches a SAN, nor an OU */
    assert_false(admits(SD_RULE_CN, v, SD_RULE_DNS, v, strlen(v)));
    assert_false(admits(SD_RULE_CN, v, SD_RULE_OU, v, strlen(v)));
    assert_false(admits(SD_RULE_OU, v, SD_RULE_CN, v, strlen(v)));
    assert_false(admits(SD_RULE_OU, v, SD_RULE_DNS, v, strlen(v)));
    assert_false(admits(SD_RULE_CN, "spiffe://e/x", SD_RULE_URI, LIT("spiffe://e/x")));
    assert_false(admits(SD_RULE_URI, "spiffe://e/x", SD_RULE_CN, LIT("spiffe://e/x")));
    assert_false(admits(SD_RULE_URI, "spiffe://e/x", SD_RULE_DNS, LIT("spiffe://e/x")));
    /* and each matches its own list */
    assert_true(admits(SD_RULE_DNS, v, SD_RULE_DNS, v, strlen(v)));
    assert_true(admits(SD_RULE_CN, v, SD_RULE_CN, v, strlen(v)));
    assert_true(admits(SD_RULE_OU, v, SD_RULE_OU, v, strlen(v)));
    /* an SPKI rule ignores names; a name-only identity has no pin */
    p = policy1(SD_RULE_SPKI,
                "fbffbffeae40e0e2b82c2a5f5cf4198af2b037601a04bc13525095a4f7aa8625");
    memset(&id, 0, sizeof(id));
    id.dns = &n;
    id.ndns = 1;
    id.cns = &n;
    id.ncns = 1;
    assert_int_equal(sd_policy_match(p, &id), -1);
    sd_policy_free(p);
}

static void test_cn_ou(void **state)
{
    struct sd_policy *p = sd_policy_new();
    char *at = longname("", 'c', SD_POLICY_MAX_NAME);
    char *over = longname("", 'c', SD_POLICY_MAX_NAME + 1);

    (void)state;
    assert_int_equal(add(p, SD_RULE_CN, "Build Bot"), 0);
    assert_int_equal(add(p, SD_RULE_OU, "J\xc3\xbcrgen's team"), 0);
    assert_string_equal(sd_policy_rule_text(p, 0), "cn:Build Bot");
    assert_string_equal(sd_policy_rule_text(p, 1), "ou:J\xc3\xbcrgen's team");
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build Bot")), 0);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("build bot")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build Bot ")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build Bo")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build Bot\0")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build Bot\0evil")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build\0Bot")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, LIT("Build Bot\r\n")), -1);
    assert_int_equal(match1(p, SD_RULE_CN, "", 0), -1);
    assert_int_equal(match1(p, SD_RULE_OU, LIT("J\xc3\xbcrgen's team")), 1);
    /* NFD spelling of the same text is other bytes: no match */
    assert_int_equal(match1(p, SD_RULE_OU, LIT("Ju\xcc\x88rgen's team")), -1);
    assert_int_equal(match1(p, SD_RULE_OU, LIT("J\xc3\xbcrgen's team\0")), -1);
    assert_int_equal(match1(p, SD_RULE_OU, LIT("J\xc3\xbcrgen's tea")), -1);
    sd_policy_free(p);
    /* refused rule values */
    assert_false(accepted(SD_RULE_CN, ""));
    assert_false(accepted(SD_RULE_CN, "a\nb"));
    assert_false(accepted(SD_RULE_CN, "a\x7f"));
    assert_false(accepted(SD_RULE_CN, "\x1b[31m"));
    assert_false(accepted(SD_RULE_OU, ""));
    assert_false(accepted(SD_RULE_OU, "\t"));
    /* length limits */
    assert_true(accepted(SD_RULE_CN, at));
    assert_false(accepted(SD_RULE_CN, over));
    assert_false(accepted(SD_RULE_OU, over));
    assert_true(admits(SD_RULE_CN, at, SD_RULE_CN, at, SD_POLICY_MAX_NAME));
    assert_false(admits(SD_RULE_CN, at, SD_RULE_CN, over, SD_POLICY_MAX_NAME + 1));
    assert_false(admits(SD_RULE_CN, at, SD_RULE_CN, at, SD_POLICY_MAX_NAME - 1));
    free(at);
    free(over);
}

static void test_identity_sane(void **state)
{
    static const struct {
        const char *s;
        size_t len;
        int sane;
    } cases[] = {
        { LIT("api.example.com"), 1 },
        { LIT("J\xc3\xbcrgen"), 1 },
        { LIT("\xff\xfe\x80"), 1 },
        { LIT("a b ~"), 1 },
        { LIT(""), 1 },
        { LIT("\0"), 0 },
        { LIT("api.example.com\0"), 0 },
        { LIT("api.example.com\0.evil"), 0 },
        { LIT("\0api"), 0 },
        { LIT("a\x01"), 0 },
        { LIT("a\x1f"), 0 },
        { LIT("a\x7f"), 0 },
        { LIT("a\tb"), 0 },
        { LIT("a\r\nb"), 0 },
        { LIT("\x1b[2J"), 0 },
    };
    struct sd_policy *all = policy1(SD_RULE_ALL, NULL);
    struct sd_name good = gname(LIT("fine"));
    size_t i, l;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (l = 0; l < 4; l++) {
            struct sd_identity id;
            struct sd_name pair[2];

            pair[0] = good;
            pair[1] = gname(cases[i].s, cases[i].len);
            memset(&id, 0, sizeof(id));
            /* the bad name second, after a good one, in each list */
            switch (l) {
            case 0: id.uris = pair; id.nuris = 2; break;
            case 1: id.dns = pair; id.ndns = 2; break;
            case 2: id.cns = pair; id.ncns = 2; break;
            default: id.ous = pair; id.nous = 2; break;
            }
            if (sd_policy_identity_sane(&id) != cases[i].sane)
                fail_msg("case %zu list %zu: sane should be %d", i, l, cases[i].sane);
            /* an insane identity is refused even by allow-all */
            assert_int_equal(sd_policy_match(all, &id), cases[i].sane ? 0 : -1);
            guards_release(NULL);
            good = gname(LIT("fine"));
        }
    }
    sd_policy_free(all);
}

/* One principal only: at most one SPIFFE ID (scheme in any case) and at
 * most one CN; other URIs, DNS names and OUs may be many. */
static void test_identity_unambiguous(void **state)
{
    struct sd_name one[1] = { { "spiffe://td/a", 13 } };
    struct sd_name two[3] = { { "spiffe://td/a", 13 }, { "https://x/", 10 },
                              { "SPIFFE://td/b", 13 } };
    struct sd_name other[2] = { { "https://x/", 10 }, { "urn:a", 5 } };
    struct sd_name cns[2] = { { "a", 1 }, { "b", 1 } };
    struct sd_identity id;

    (void)state;
    memset(&id, 0, sizeof(id));
    assert_int_equal(sd_policy_identity_unambiguous(&id), 1);
    id.uris = one;
    id.nuris = 1;
    assert_int_equal(sd_policy_identity_unambiguous(&id), 1);
    id.uris = two;
    id.nuris = 2;
    assert_int_equal(sd_policy_identity_unambiguous(&id), 1);
    id.nuris = 3;
    assert_int_equal(sd_policy_identity_unambiguous(&id), 0);
    id.uris = other;
    id.nuris = 2;
    id.dns = cns;
    id.ndns = 2;
    id.ous = cns;
    id.nous = 2;
    id.cns = cns;
    id.ncns = 1;
    assert_int_equal(sd_policy_identity_unambiguous(&id), 1);
    id.ncns = 2;
    assert_int_equal(sd_policy_identity_unambiguous(&id), 0);
}

/* A SPKI hash present in the identity (the peer extraction always computes
 * it) changes nothing for rules of other kinds. */
static void test_spki_present_without_pin(void **state)
{
    static const uint8_t spki[SD_SPKI_LEN] = { 1, 2, 3 };
    struct sd_name cn = { "billing", 7 };
    struct sd_policy *p = policy1(SD_RULE_CN, "other");
    struct sd_identity id;

    (void)state;
    memset(&id, 0, sizeof(id));
    id.cns = &cn;
    id.ncns = 1;
    assert_int_equal(sd_policy_match(p, &id), -1);
    id.spki_sha256 = spki;
    assert_int_equal(sd_policy_match(p, &id), -1);
    sd_policy_free(p);
}

static void test_nul_never_matches(void **state)
{
    struct sd_policy *p = sd_policy_new();
    static const uint8_t pin[SD_SPKI_LEN] = { 0xfb, 0xff, 0xbf, 0xfe };
    struct sd_identity id;
    struct sd_name u = gname(LIT("spiffe://example.org/web\0"));
    struct sd_name d = gname(LIT("api.example.com\0.evil.net"));
    struct sd_name c = gname(LIT("admin\0"));
    struct sd_name o = gname(LIT("ops\0x"));

    (void)state;
    assert_int_equal(add(p, SD_RULE_URI, "spiffe://example.org/web"), 0);
    assert_int_equal(add(p, SD_RULE_DNS, "api.example.com"), 0);
    assert_int_equal(add(p, SD_RULE_CN, "admin"), 0);
    assert_int_equal(add(p, SD_RULE_OU, "ops"), 0);
    memset(&id, 0, sizeof(id));
    id.uris = &u;
    id.nuris = 1;
    id.dns = &d;
    id.ndns = 1;
    id.cns = &c;
    id.ncns = 1;
    id.ous = &o;
    id.nous = 1;
    assert_int_equal(sd_policy_identity_sane(&id), 0);
    assert_int_equal(sd_policy_match(p, &id), -1);
    /* even with a pin that does match, a NUL in a name refuses */
    assert_int_equal(add(p, SD_RULE_SPKI,
                         "fbffbffe00000000000000000000000000000000000000000000000000000000"), 0);
    id.spki_sha256 = pin;
    assert_int_equal(sd_policy_match(p, &id), -1);
    id.uris = NULL;
    id.nuris = id.ndns = id.ncns = id.nous = 0;
    assert_int_equal(sd_policy_match(p, &id), 4);
    /* the matchers alone refuse too */
    assert_false(uri_m("spiffe://example.org/web", LIT("spiffe://example.org/web\0")));
    assert_false(uri_m("spiffe://example.org/**", LIT("spiffe://example.org/web\0")));
    assert_false(dns_m("api.example.com", LIT("api.example.com\0.evil.net")));
    sd_policy_free(p);
}

/* fb ff bf fe (so base64 has '+' and '/') then sha256("steeldoor")[0..28) */
#define PIN_HEX "fbffbffeae40e0e2b82c2a5f5cf4198af2b037601a04bc13525095a4f7aa8625"
#define PIN_HEX_UP "FBFFBFFEAE40E0E2B82C2A5F5CF4198AF2B037601A04BC13525095A4F7AA8625"
#define PIN_HEX_COLONS \
    "FB:FF:BF:FE:AE:40:E0:E2:B8:2C:2A:5F:5C:F4:19:8A:F2:B0:37:60:1A:04:BC:13:52:50:95:A4:F7:AA:86:25"
#define PIN_HEX_COLONS_LOWER \
    "fb:ff:bf:fe:ae:40:e0:e2:b8:2c:2a:5f:5c:f4:19:8a:f2:b0:37:60:1a:04:bc:13:52:50:95:a4:f7:aa:86:25"
#define PIN_B64 "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiU="
#define PIN_B64URL "-_-__q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiU="

static const uint8_t pin_bytes[SD_SPKI_LEN] = {
    0xfb, 0xff, 0xbf, 0xfe, 0xae, 0x40, 0xe0, 0xe2, 0xb8, 0x2c, 0x2a, 0x5f, 0x5c, 0xf4, 0x19, 0x8a,
    0xf2, 0xb0, 0x37, 0x60, 0x1a, 0x04, 0xbc, 0x13, 0x52, 0x50, 0x95, 0xa4, 0xf7, 0xaa, 0x86, 0x25,
};

static void test_spki_forms(void **state)
{
    static const char *const forms[] = {
        PIN_HEX,
        PIN_HEX_UP,
        PIN_HEX_COLONS,
        PIN_HEX_COLONS_LOWER,
        PIN_B64,
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiU",
        PIN_B64URL,
        "-_-__q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiU",
    };
    struct sd_policy *p = sd_policy_new();
    struct sd_identity id;
    uint8_t other[SD_SPKI_LEN];
    size_t i, b;
    int bit;

    (void)state;
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        if (add(p, SD_RULE_SPKI, forms[i]) != 0)
            fail_msg("pin '%s' refused", forms[i]);
        /* every spelling normalises to the same text */
        assert_string_equal(sd_policy_rule_text(p, i), "spki:" PIN_HEX);
    }
    memset(&id, 0, sizeof(id));
    assert_int_equal(sd_policy_match(p, &id), -1); /* no pin */
    id.spki_sha256 = pin_bytes;
    assert_int_equal(sd_policy_match(p, &id), 0);
    assert_int_equal(sd_policy_match(p, &id), 0); /* and again: no state */
    /* one flipped bit anywhere (first byte, last byte, in between) is refused */
    for (b = 0; b < SD_SPKI_LEN; b++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(other, pin_bytes, sizeof(other));
            other[b] ^= (uint8_t)(1u << bit);
            id.spki_sha256 = other;
            if (sd_policy_match(p, &id) != -1)
                fail_msg("pin with byte %zu bit %d flipped admitted", b, bit);
        }
    }
    sd_policy_free(p);
    /* each form alone gives the same result for the same pin */
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct sd_policy *one = policy1(SD_RULE_SPKI, forms[i]);

        id.spki_sha256 = pin_bytes;
        assert_int_equal(sd_policy_match(one, &id), 0);
        memset(other, 0, sizeof(other));
        id.spki_sha256 = other;
        assert_int_equal(sd_policy_match(one, &id), -1);
        sd_policy_free(one);
    }
}

static void test_spki_rejected(void **state)
{
    static const char *const bad[] = {
        "",
        ":",
        "=",
        PIN_HEX "0",                                 /* 65 digits */
        PIN_HEX "00",                                /* 33 bytes */
        "0" PIN_HEX,
        "fbffbffeae40e0e2b82c2a5f5cf4198af2b037601a04bc13525095a4f7aa862",   /* 63 */
        "fbffbffeae40e0e2b82c2a5f5cf4198af2b037601a04bc13525095a4f7aa86",    /* 62 */
        "gbffbffeae40e0e2b82c2a5f5cf4198af2b037601a04bc13525095a4f7aa8625",  /* 'g' */
        "0x" PIN_HEX,
        PIN_HEX " ",
        " " PIN_HEX,
        PIN_HEX "\n",
        "sha256:" PIN_HEX,
        "sha256/" PIN_B64,
        /* base64: the 2 leftover bits must be zero (canonical) */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiV=",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiW",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiX",
        /* wrong lengths */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhi",      /* 42 */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiU==",   /* 45 */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiUA",    /* 44, no '=' */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhg==",    /* 31 bytes */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiUAAA=", /* 33+ bytes */
        /* characters outside either alphabet, or '=' inside */
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqh=U",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqh.U",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeq iU",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeq\xc3\xa9U",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhi:U",
        "+/+//q5A4OK4LCpfXPQZivKwN2AaBLwTUlCVpPeqhiU=\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (accepted(SD_RULE_SPKI, bad[i]))
            fail_msg("pin '%s' should be refused", bad[i]);
}

static void test_check(void **state)
{
    struct sd_policy *p = sd_policy_new();
    struct sd_err err;

    (void)state;
    memset(&err, 0, sizeof(err));
    assert_int_equal(sd_policy_check(NULL, &err), -1);
    assert_non_null(strstr(err.msg, "no allow rule"));
    memset(&err, 0, sizeof(err));
    assert_int_equal(sd_policy_check(p, &err), -1);
    assert_non_null(strstr(err.msg, "no allow rule"));
    assert_int_equal(sd_policy_check(p, NULL), -1);
    /* "all" alone is fine */
    assert_int_equal(add(p, SD_RULE_ALL, NULL), 0);
    assert_int_equal(sd_policy_check(p, &err), 0);
    /* allow-all plus another rule is refused, whatever the order */
    assert_int_equal(add(p, SD_RULE_DNS, "api.example.com"), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(sd_policy_check(p, &err), -1);
    assert_non_null(strstr(err.msg, "allow-all"));
    sd_policy_free(p);
    p = sd_policy_new();
    assert_int_equal(add(p, SD_RULE_URI, "spiffe://example.org/*"), 0);
    assert_int_equal(sd_policy_check(p, &err), 0);
    assert_int_equal(add(p, SD_RULE_CN, "x"), 0);
    assert_int_equal(sd_policy_check(p, &err), 0);
    assert_int_equal(add(p, SD_RULE_ALL, "ignored"), 0);
    assert_int_equal(sd_policy_check(p, &err), -1);
    assert_int_equal(sd_policy_check(p, NULL), -1);
    sd_policy_free(p);
    /* two "all" rules are still "all" plus another */
    p = sd_policy_new();
    assert_int_equal(add(p, SD_RULE_ALL, NULL), 0);
    assert_int_equal(add(p, SD_RULE_ALL, NULL), 0);
    assert_int_equal(sd_policy_check(p, &err), -1);
    sd_policy_free(p);
}

static void test_rule_text(void **state)
{
    struct sd_policy *p = sd_policy_new();

    (void)state;
    assert_int_equal(add(p, SD_RULE_URI, "spiffe://Example.org/NS/**"), 0);
    assert_int_equal(add(p, SD_RULE_DNS, "API.Example.com"), 0);
    assert_int_equal(add(p, SD_RULE_SPKI, PIN_B64URL), 0);
    assert_int_equal(add(p, SD_RULE_ALL, "whatever"), 0);
    assert_int_equal(add(p, SD_RULE_CN, "Build Bot"), 0);
    assert_int_equal(add(p, SD_RULE_OU, "Ops"), 0);
    assert_int_equal(add(p, SD_RULE_SPKI, PIN_HEX_COLONS), 0);
    assert_int_equal(sd_policy_count(p), 7);
    /* URIs are kept as written (exact comparison), DNS is lowercased */
    assert_string_equal(sd_policy_rule_text(p, 0), "uri:spiffe://Example.org/NS/**");
    assert_string_equal(sd_policy_rule_text(p, 1), "dns:api.example.com");
    assert_string_equal(sd_policy_rule_text(p, 2), "spki:" PIN_HEX);
    assert_string_equal(sd_policy_rule_text(p, 3), "all");
    assert_string_equal(sd_policy_rule_text(p, 4), "cn:Build Bot");
    assert_string_equal(sd_policy_rule_text(p, 5), "ou:Ops");
    assert_string_equal(sd_policy_rule_text(p, 6), "spki:" PIN_HEX);
    assert_null(sd_policy_rule_text(p, 7));
    assert_null(sd_policy_rule_text(p, (size_t)-1));
    sd_policy_free(p);
}

static void test_first_match_index(void **state)
{
    struct sd_policy *p = sd_policy_new();
    struct sd_identity id;
    struct sd_name uris[2], dns[2], cn, ou;

    (void)state;
    assert_int_equal(add(p, SD_RULE_DNS, "db.example.com"), 0);          /* 0 */
    assert_int_equal(add(p, SD_RULE_URI, "spiffe://example.org/a/*"), 0); /* 1 */
    assert_int_equal(add(p, SD_RULE_CN, "Build Bot"), 0);               /* 2 */
    assert_int_equal(add(p, SD_RULE_URI, "spiffe://example.org/**"), 0);  /* 3 */
    assert_int_equal(add(p, SD_RULE_DNS, "api.example.com"), 0);         /* 4 */
    assert_int_equal(add(p, SD_RULE_OU, "Ops"), 0);                      /* 5 */
    assert_int_equal(add(p, SD_RULE_SPKI, PIN_HEX), 0);                  /* 6 */
    assert_int_equal(add(p, SD_RULE_ALL, NULL), 0);                      /* 7 */

    uris[0] = gname(LIT("spiffe://example.org/b/c"));
    uris[1] = gname(LIT("spiffe://example.org/a/x"));
    dns[0] = gname(LIT("www.example.com"));
    dns[1] = gname(LIT("API.example.com"));
    cn = gname(LIT("Build Bot"));
    ou = gname(LIT("Ops"));

    memset(&id, 0, sizeof(id));
    assert_int_equal(sd_policy_match(p, &id), 7); /* only "all" */
    id.spki_sha256 = pin_bytes;
    assert_int_equal(sd_policy_match(p, &id), 6);
    id.ous = &ou;
    id.nous = 1;
    assert_int_equal(sd_policy_match(p, &id), 5);
    id.dns = dns;
    id.ndns = 2; /* the second DNS name matches rule 4 */
    assert_int_equal(sd_policy_match(p, &id), 4);
    id.uris = uris;
    id.nuris = 1; /* b/c: only "**" (rule 3) */
    assert_int_equal(sd_policy_match(p, &id), 3);
    id.cns = &cn;
    id.ncns = 1;
    assert_int_equal(sd_policy_match(p, &id), 2);
    id.nuris = 2; /* a/x matches rule 1 even though it is the second URI */
    assert_int_equal(sd_policy_match(p, &id), 1);
    id.ndns = 1; /* www only: still rule 1 */
    assert_int_equal(sd_policy_match(p, &id), 1);
    sd_policy_free(p);
}

static void test_max_rules(void **state)
{
    struct sd_policy *p = sd_policy_new();
    char buf[64];
    size_t i;

    (void)state;
    for (i = 0; i < SD_POLICY_MAX_RULES; i++) {
        snprintf(buf, sizeof(buf), "h%zu.example.com", i);
        assert_int_equal(add(p, SD_RULE_DNS, buf), 0);
    }
    assert_int_equal(sd_policy_count(p), SD_POLICY_MAX_RULES);
    assert_int_equal(add(p, SD_RULE_DNS, "one.too.many"), -1);
    assert_int_equal(add(p, SD_RULE_ALL, NULL), -1);
    assert_int_equal(sd_policy_count(p), SD_POLICY_MAX_RULES);
    /* the last rule is reachable and reports its index */
    snprintf(buf, sizeof(buf), "h%d.example.com", SD_POLICY_MAX_RULES - 1);
    assert_int_equal(match1(p, SD_RULE_DNS, buf, strlen(buf)), SD_POLICY_MAX_RULES - 1);
    sd_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_guard_page_works, guards_release),
        cmocka_unit_test_teardown(test_free_null_and_empty, guards_release),
        cmocka_unit_test_teardown(test_uri_exact, guards_release),
        cmocka_unit_test_teardown(test_uri_star, guards_release),
        cmocka_unit_test_teardown(test_uri_double_star, guards_release),
        cmocka_unit_test_teardown(test_uri_trust_domain, guards_release),
        cmocka_unit_test_teardown(test_uri_bad_patterns, guards_release),
        cmocka_unit_test_teardown(test_uri_pattern_x_star_last_refused, guards_release),
        cmocka_unit_test_teardown(test_uri_valid_certificate_names, guards_release),
        cmocka_unit_test_teardown(test_uri_long_names, guards_release),
        cmocka_unit_test_teardown(test_dns, guards_release),
        cmocka_unit_test_teardown(test_dns_rules, guards_release),
        cmocka_unit_test_teardown(test_kinds_never_cross, guards_release),
        cmocka_unit_test_teardown(test_cn_ou, guards_release),
        cmocka_unit_test_teardown(test_identity_sane, guards_release),
        cmocka_unit_test_teardown(test_identity_unambiguous, guards_release),
        cmocka_unit_test_teardown(test_spki_present_without_pin, guards_release),
        cmocka_unit_test_teardown(test_nul_never_matches, guards_release),
        cmocka_unit_test_teardown(test_spki_forms, guards_release),
        cmocka_unit_test_teardown(test_spki_rejected, guards_release),
        cmocka_unit_test_teardown(test_check, guards_release),
        cmocka_unit_test_teardown(test_rule_text, guards_release),
        cmocka_unit_test_teardown(test_first_match_index, guards_release),
        cmocka_unit_test_teardown(test_max_rules, guards_release),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
