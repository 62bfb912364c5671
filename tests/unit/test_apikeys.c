/* Unit tests for src/auth/apikeys.c: the keys file (every refusal for its
 * own reason, named at its line), the constant-time lookup, the path
 * prefixes against an attacker's request targets, the dates.
 *
 * Untrusted inputs of sd_apikeys_find() and sd_apikey_path_ok() (a key, a
 * request target: pointer and length, never NUL-terminated) are copied so
 * that they end exactly where an unreadable page begins: reading one byte
 * past the length crashes the test instead of passing by luck. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "sd/apikeys.h"

/* ------------------------------------------------------- guarded bytes */

#define GUARD_MAX 256

static struct {
    void *map;
    size_t len;
} guards[GUARD_MAX];
static size_t nguards;

static const char *guarded(const void *s, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + pg - 1) / pg * pg;
    uint8_t *m;

    if (nguards == GUARD_MAX) { /* recycle: tests use a few at a time */
        while (nguards > 0) {
            nguards--;
            munmap(guards[nguards].map, guards[nguards].len);
        }
    }
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

/* ------------------------------------------------------------- helpers */

#define H64(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
               c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define DIG_A "\"sha256:" H64("a") "\""
#define DIG_B "\"sha256:" H64("b") "\""
#define DIG_C "\"sha256:" H64("c") "\""

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 0;

    assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(len, 32);
}

static void hex32(const uint8_t d[32], char out[65])
{
    size_t i;

    for (i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static struct sd_apikeys *parse_ok(const char *text)
{
    struct sd_apikeys *k = NULL;
    struct sd_err err = {{0}};

    if (sd_apikeys_parse("keys.yaml", text, strlen(text), &k, &err) != 0)
        fail_msg("refused: %s\n--- text:\n%s", err.msg, text);
    assert_non_null(k);
    return k;
}

/* Parsing text fails; the message names the file and line (0: any line)
 * and contains word. */
static void parse_bad(const char *text, size_t textlen, size_t line, const char *word)
{
    struct sd_apikeys *k = (struct sd_apikeys *)&k; /* must be reset to NULL */
    struct sd_err err;
    char prefix[64];
    size_t i;

    memset(&err, 0, sizeof(err));
    if (sd_apikeys_parse("keys.yaml", text, textlen, &k, &err) == 0) {
        sd_apikeys_free(k);
        fail_msg("accepted, expected '%s':\n%s", word, text);
    }
    assert_null(k);
    if (line != 0)
        snprintf(prefix, sizeof(prefix), "keys.yaml:%zu: ", line);
    else
        snprintf(prefix, sizeof(prefix), "keys.yaml");
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || strstr(err.msg, word) == NULL)
        fail_msg("for:\n%s\nexpected '%s' and '%s' in: %s", text, prefix, word, err.msg);
    for (i = 0; err.msg[i] != '\0'; i++)
        if ((unsigned char)err.msg[i] < 0x20)
            fail_msg("control byte in the message: %s", err.msg);
}

#define BAD(text, line, word) parse_bad((text), sizeof(text) - 1, (line), (word))

/* ------------------------------------------------------------- parsing */

static void test_parse_all_fields(void **state)
{
    static const char text[] =
        "# a comment\n"
        "- id: billing-ci\n"
        "  digest: " DIG_A "\n"
        "  bind: [\"uri:spiffe://example.org/billing\", \"dns:API.Example.com\"]\n"
        "  expires: \"2027-06-30T00:00:00Z\"\n"
        "  paths: [\"/invoices/\", \"/v1\"]\n"
        "  revoked: 2026-12-02T10:00:00Z\n"
        "- id: A.b_c-9\n"
        "  digest: sha256:" H64("0") "\n"
        "  bind: spiffe://example.org/x/*   # no kind: a URI\n"
        "- id: \"pins\"\n"
        "  digest: " DIG_B "\n"
        "  bind:\n"
        "    - cn:Build Bot\n"
        "    - ou:Ops\n"
        "    - spki:" H64("a") "\n"
        "  paths: /\n"
        "  expires: 2027-01-31\n";
    struct sd_apikeys *k;
    const struct sd_apikey *e;
    size_t i;

    (void)state;
    k = parse_ok(text);
    assert_int_equal(sd_apikeys_count(k), 3);
    e = sd_apikeys_at(k, 0);
    assert_string_equal(e->id, "billing-ci");
    for (i = 0; i < 32; i++)
        assert_int_equal(e->digest[i], 0xaa);
    assert_int_equal(e->nbinds, 2);
    assert_string_equal(e->binds[0], "uri:spiffe://example.org/billing");
    assert_string_equal(e->binds[1], "dns:API.Example.com");
    assert_int_equal(sd_policy_count(e->bind), 2);
    assert_string_equal(sd_policy_rule_text(e->bind, 1), "dns:api.example.com");
    assert_int_equal(e->expires, 1814313600); /* 2027-06-30 */
    assert_int_equal(e->revoked, 1796205600); /* 2026-12-02T10:00:00Z */
    assert_int_equal(e->npaths, 2);
    assert_string_equal(e->paths[0], "/invoices/");
    assert_string_equal(e->paths[1], "/v1");

    e = sd_apikeys_at(k, 1);
    assert_string_equal(e->id, "A.b_c-9");
    assert_int_equal(e->nbinds, 1);
    assert_string_equal(sd_policy_rule_text(e->bind, 0), "uri:spiffe://example.org/x/*");
    assert_int_equal(e->expires, 0);
    assert_int_equal(e->revoked, 0);
    assert_int_equal(e->npaths, 0);
    for (i = 0; i < 32; i++)
        assert_int_equal(e->digest[i], 0);

    e = sd_apikeys_at(k, 2);
    assert_string_equal(e->id, "pins");
    assert_int_equal(e->nbinds, 3);
    assert_true(sd_policy_has_kind(e->bind, SD_RULE_CN));
    assert_true(sd_policy_has_kind(e->bind, SD_RULE_OU));
    assert_true(sd_policy_has_kind(e->bind, SD_RULE_SPKI));
    assert_int_equal(e->npaths, 1);
    assert_string_equal(e->paths[0], "/");
    assert_int_equal(e->expires, 1801353600); /* 2027-01-31, midnight UTC */

    assert_null(sd_apikeys_at(k, 3));
    sd_apikeys_free(k);
}

static void test_parse_empty(void **state)
{
    static const char *const empties[] = {
        "", "\n", "   \n\n", "# only comments\n# here\n", "[]", "[]\n# none yet\n",
        "---\n", "--- []\n", "---\n[]\n...\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        struct sd_apikeys *k = parse_ok(empties[i]);
        assert_int_equal(sd_apikeys_count(k), 0);
        assert_null(sd_apikeys_at(k, 0));
        sd_apikeys_free(k);
    }
    /* NULL data with length 0 is an empty file too */
    {
        struct sd_apikeys *k = NULL;
        struct sd_err err;
        assert_int_equal(sd_apikeys_parse("keys.yaml", NULL, 0, &k, &err), 0);
        assert_int_equal(sd_apikeys_count(k), 0);
        sd_apikeys_free(k);
    }
}

static void test_free_null_and_accessors(void **state)
{
    (void)state;
    sd_apikeys_free(NULL);
    assert_int_equal(sd_apikeys_count(NULL), 0);
    assert_null(sd_apikeys_at(NULL, 0));
    assert_null(sd_apikeys_find(NULL, "sdk_x", 5));
    assert_int_equal(sd_apikey_path_ok(NULL, "/", 1), 0);
}

static void test_parse_shape_refused(void **state)
{
    (void)state;
    BAD("id: x\ndigest: " DIG_A "\n", 1, "must be a list");
    BAD("{}", 1, "must be a list");
    BAD("hello\n", 1, "must be a list");
    BAD("\"\"\n", 1, "must be a list");
    BAD("~\n", 1, "must be a list");
    BAD("- just-a-string\n", 1, "must be a mapping");
    BAD("- [a, b]\n", 1, "must be a mapping");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n---\n- id: b\n", 4,
        "second YAML document");
    BAD("[]\n---\n[]\n", 2, "second YAML document");
    BAD("- id: a\n  digest: \"unclosed\n", 0, "YAML error");
    BAD("- id: a\n  bind: [dns:a.example\n", 0, "YAML error");
    BAD("- id: a\n\tdigest: x\n", 0, "YAML error");
    BAD("- id: a\n  ? [k]\n  : v\n", 2, "field name");
    /* invalid UTF-8 is a YAML error, not a string */
    BAD("- id: \"\xff\"\n", 0, "YAML error");
}

static void test_parse_one_reading(void **state)
{
    (void)state;
    /* aliases, anchors and tags: refused wherever they are */
    BAD("- &e\n  id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n", 1, "anchor");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: &b [dns:a.example]\n"
        "- id: b\n  digest: " DIG_B "\n  bind: *b\n", 3, "anchor");
    BAD("- id: *x\n", 1, "alias");
    BAD("- id: !!str a\n  digest: " DIG_A "\n  bind: dns:a.example\n", 1, "tag");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: !!seq [dns:a.example]\n", 3, "tag");
    BAD("!!seq\n- id: a\n", 1, "tag");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: ! dns:a.example\n", 3, "tag");
    /* a NUL escape would cut the value short */
    BAD("- id: \"a\\0b\"\n  digest: " DIG_A "\n  bind: dns:a.example\n", 1, "NUL");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: \"dns:a.example\\0.evil\"\n", 3, "NUL");
}

static void test_parse_fields_refused(void **state)
{
    (void)state;
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  role: admin\n", 4,
        "unknown field 'role'");
    BAD("- id: a\n  Id: b\n", 2, "unknown field 'Id'");
    BAD("- id: a\n  id: b\n  digest: " DIG_A "\n  bind: dns:a.example\n", 2, "twice");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  bind: dns:b.example\n", 4,
        "twice");
    /* missing fields: named at the entry's line */
    BAD("- digest: " DIG_A "\n  bind: dns:a.example\n", 1, "without 'id'");
    BAD("- id: a\n  bind: dns:a.example\n", 1, "no 'digest'");
    BAD("- id: x\n  digest: " DIG_A "\n  bind: dns:x.example\n"
        "- id: a\n  digest: " DIG_B "\n", 4, "no 'bind'");
    BAD("- {}\n", 1, "without 'id'");
    /* shapes of values */
    BAD("- id: [a]\n", 1, "single string");
    BAD("- id: a\n  digest: {x: 1}\n", 2, "single string");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: {uri: x}\n", 3, "string or a list");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: [[dns:a.example]]\n", 3, "string or a list");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  paths: [{a: b}]\n", 4,
        "string or a list");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: []\n", 3, "at least one");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  paths: []\n", 4,
        "empty list");
}

static void test_parse_id_digest_refused(void **state)
{
    (void)state;
    BAD("- id: a b\n", 1, "not an id");
    BAD("- id: \"\"\n", 1, "not an id");
    BAD("- id:\n", 1, "not an id");
    BAD("- id: a/b\n", 1, "not an id");
    BAD("- id: caf\xc3\xa9\n", 1, "not an id");
    BAD("- id: " H64("x") "y\n", 1, "not an id"); /* 65 bytes */
    {
        struct sd_apikeys *k = parse_ok("- id: " H64("x") "\n  digest: " DIG_A
                                        "\n  bind: dns:a.example\n");
        assert_int_equal(strlen(sd_apikeys_at(k, 0)->id), 64);
        sd_apikeys_free(k);
    }
    BAD("- id: a\n  digest: " H64("a") "\n", 2, "sha256");
    BAD("- id: a\n  digest: sha256:" H64("A") "\n", 2, "lowercase hex");
    BAD("- id: a\n  digest: SHA256:" H64("a") "\n", 2, "sha256");
    BAD("- id: a\n  digest: sha256:" H64("a") "a\n", 2, "64 lowercase");
    BAD("- id: a\n  digest: sha256:" H64("g") "\n", 2, "64 lowercase");
    BAD("- id: a\n  digest: sha256:\n", 2, "64 lowercase");
    BAD("- id: a\n  digest: sdk_AAAA\n", 2, "never stored");
}

static void test_parse_binds_refused(void **state)
{
    (void)state;
    BAD("# one\n# two\n- id: a\n  digest: " DIG_A "\n\n\n  bind: foo\n", 7,
        "bind: 'foo' is not a pattern (uri:..., dns:..., cn:..., ou:..., spki:...)");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: [dns:a.example, all]\n", 3, "bound to none");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: allow-all\n", 3, "bound to none");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: \"all:\"\n", 3, "bound to none");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: URI:dns.example\n", 3, "not a pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: URI:spiffe://x/y\n", 3, "URI pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: email:a@b\n", 3, "not a pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: \"\"\n", 3, "not a pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: uri:spiffe://example.org/a/../b\n", 3,
        "not a valid URI pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: spiffe://example.org/a?q\n", 3,
        "not a valid URI pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: uri:spiffe://*/x\n", 3, "URI pattern");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:*.example.com\n", 3, "not a DNS name");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: \"dns:a example\"\n", 3, "not a DNS name");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: \"cn:\"\n", 3, "non-empty");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: \"cn:a\\tb\"\n", 3, "control");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: spki:abcd\n", 3, "SHA-256");
    BAD("- id: a\n  digest: " DIG_A "\n  bind:\n    - dns:a.example\n    - dns:a.example\n", 5,
        "listed twice");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: [dns:a1.e, dns:a2.e, dns:a3.e, dns:a4.e, "
        "dns:a5.e, dns:a6.e, dns:a7.e, dns:a8.e, dns:a9.e, dns:a10.e, dns:a11.e, dns:a12.e, "
        "dns:a13.e, dns:a14.e, dns:a15.e, dns:a16.e, dns:a17.e]\n", 3, "more than 16");
    /* "dns://" is a URI of scheme dns, not the kind dns */
    {
        struct sd_apikeys *k = parse_ok("- id: a\n  digest: " DIG_A
                                        "\n  bind: dns://resolver.example/x\n");
        assert_true(sd_policy_has_kind(sd_apikeys_at(k, 0)->bind, SD_RULE_URI));
        sd_apikeys_free(k);
    }
    /* a control sequence in a refused value is not echoed as is */
    {
        struct sd_apikeys *k = NULL;
        struct sd_err err;
        static const char t[] = "- id: a\n  digest: " DIG_A "\n  bind: \"\\e[31mred\"\n";
        assert_int_equal(sd_apikeys_parse("keys.yaml", t, sizeof(t) - 1, &k, &err), -1);
        assert_null(strchr(err.msg, 0x1b));
        assert_non_null(strstr(err.msg, "?[31mred"));
    }
}

static void test_parse_paths_refused(void **state)
{
#define P(path, word) \
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  paths: [\"" path "\"]\n", 4, word)
    (void)state;
    P("api", "start with '/'");
    P("", "start with '/'");
    P("/a?b", "printable ASCII");
    P("/a#b", "printable ASCII");
    P("/a%2e", "printable ASCII");
    P("/a\\\\b", "printable ASCII");
    P("/a b", "printable ASCII");
    P("/a\\tb", "printable ASCII");
    P("/caf\xc3\xa9", "printable ASCII");
    P("/a/../b", "'..' segment");
    P("/a/./b", "'..' segment");
    P("/a/..", "'..' segment");
    P("/.", "'..' segment");
    P("/a/..;x/", "'..' segment");
    P("/a//b", "empty segment");
    P("//", "empty segment");
#undef P
    {
        char text[2048];
        char path[SD_APIKEY_PATH_MAX + 2];

        memset(path, 'a', sizeof(path) - 1);
        path[0] = '/';
        path[SD_APIKEY_PATH_MAX + 1] = '\0'; /* 1025 bytes */
        snprintf(text, sizeof(text), "- id: a\n  digest: " DIG_A
                 "\n  bind: dns:a.example\n  paths: \"%s\"\n", path);
        parse_bad(text, strlen(text), 4, "longer than 1024");
        path[SD_APIKEY_PATH_MAX] = '\0'; /* 1024 bytes: fine */
        snprintf(text, sizeof(text), "- id: a\n  digest: " DIG_A
                 "\n  bind: dns:a.example\n  paths: \"%s\"\n", path);
        sd_apikeys_free(parse_ok(text));
    }
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  paths: [/a, /b, /a]\n", 4,
        "listed twice");
    /* fine: trailing slash, dots inside a name, ';' params */
    sd_apikeys_free(parse_ok("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n"
                             "  paths: [/, /a/, /a.b/..c/...d, /v1;x]\n"));
}

static void test_parse_dates_refused(void **state)
{
    (void)state;
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  expires: 2027-02-30\n", 4,
        "expires: '2027-02-30' is not a date");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  revoked: yesterday\n", 4,
        "revoked: 'yesterday' is not a date");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  revoked: 1700000000\n", 4,
        "not a date");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n  expires:\n", 4, "not a date");
}

static void test_parse_duplicates_refused(void **state)
{
    (void)state;
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n"
        "- id: b\n  digest: " DIG_B "\n  bind: dns:a.example\n"
        "- id: a\n  digest: " DIG_C "\n  bind: dns:a.example\n", 7,
        "id 'a' is used twice (lines 1 and 7");
    /* ids differing only in case: a backend may compare them either way */
    BAD("- id: ci\n  digest: " DIG_A "\n  bind: dns:a.example\n"
        "- id: CI\n  digest: " DIG_B "\n  bind: dns:a.example\n", 4,
        "is used twice (lines 1 and 4");
    BAD("- id: a\n  digest: " DIG_A "\n  bind: dns:a.example\n"
        "- id: b\n  digest: " DIG_A "\n  bind: dns:b.example\n", 4, "same digest");
}

/* The size limits: SD_APIKEYS_MAX entries parse (and quickly: the
 * duplicate checks sort), one more is refused. */
static void test_parse_max_entries(void **state)
{
    size_t n, cap = (size_t)(SD_APIKEYS_MAX + 1) * 140 + 64, len = 0;
    char *text = malloc(cap);
    struct sd_apikeys *k = NULL;
    struct sd_err err;

    (void)state;
    assert_non_null(text);
    for (n = 0; n < SD_APIKEYS_MAX; n++)
        len += (size_t)snprintf(text + len, cap - len,
                                "- id: k%zu\n  digest: sha256:%064zx\n  bind: dns:a.example\n",
                                n, n);
    assert_int_equal(sd_apikeys_parse("keys.yaml", text, len, &k, &err), 0);
    assert_int_equal(sd_apikeys_count(k), SD_APIKEYS_MAX);
    sd_apikeys_free(k);
    len += (size_t)snprintf(text + len, cap - len,
                            "- id: k%zu\n  digest: sha256:%064zx\n  bind: dns:a.example\n", n, n);
    parse_bad(text, len, 0, "more than 10000 keys");
    free(text);
}

/* -------------------------------------------------------------- lookup */

static void test_find(void **state)
{
    static const char *const keys[] = {
        "sdk_one-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sdk_two-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        "sdk_three-CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
    };
    char text[4096], hex[65], big[SD_APIKEY_LEN_MAX + 1];
    struct sd_apikeys *k;
    const struct sd_apikey *e;
    size_t i, len = 0;

    (void)state;
    for (i = 0; i < 3; i++) {
        uint8_t d[32];
        sha256(keys[i], strlen(keys[i]), d);
        hex32(d, hex);
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "- id: key%zu\n  digest: sha256:%s\n  bind: dns:a.example\n%s",
                                i, hex, i == 1 ? "  revoked: 2026-01-01\n" : "");
    }
    k = parse_ok(text);
    for (i = 0; i < 3; i++) {
        e = sd_apikeys_find(k, guarded(keys[i], strlen(keys[i])), strlen(keys[i]));
        assert_ptr_equal(e, sd_apikeys_at(k, i));
    }
    /* a revoked entry is found (the caller says why it refuses it) */
    assert_int_not_equal(sd_apikeys_find(k, keys[1], strlen(keys[1]))->revoked, 0);
    /* misses: one byte changed, a prefix, one byte more */
    {
        char x[64];
        strcpy(x, keys[0]);
        x[strlen(x) - 1] = 'B';
        assert_null(sd_apikeys_find(k, guarded(x, strlen(x)), strlen(x)));
        assert_null(sd_apikeys_find(k, guarded(keys[0], 10), 10));
        strcpy(x, keys[0]);
        strcat(x, "A");
        assert_null(sd_apikeys_find(k, guarded(x, strlen(x)), strlen(x)));
    }
    /* lengths outside 1..SD_APIKEY_LEN_MAX: never a key */
    assert_null(sd_apikeys_find(k, guarded("", 0), 0));
    assert_null(sd_apikeys_find(k, NULL, 5));
    memset(big, 'A', sizeof(big));
    assert_null(sd_apikeys_find(k, guarded(big, sizeof(big)), sizeof(big)));
    assert_null(sd_apikeys_find(k, guarded(big, SD_APIKEY_LEN_MAX), SD_APIKEY_LEN_MAX));
    assert_null(sd_apikeys_find(k, big, (size_t)-1));
    sd_apikeys_free(k);

    /* a key of exactly SD_APIKEY_LEN_MAX bytes is still looked up */
    {
        uint8_t d[32];
        sha256(big, SD_APIKEY_LEN_MAX, d);
        hex32(d, hex);
        snprintf(text, sizeof(text), "- id: long\n  digest: sha256:%s\n  bind: cn:x\n", hex);
        k = parse_ok(text);
        assert_ptr_equal(sd_apikeys_find(k, guarded(big, SD_APIKEY_LEN_MAX), SD_APIKEY_LEN_MAX),
                         sd_apikeys_at(k, 0));
        sd_apikeys_free(k);
    }
    /* an empty set finds nothing */
    k = parse_ok("[]");
    assert_null(sd_apikeys_find(k, keys[0], strlen(keys[0])));
    sd_apikeys_free(k);
}

/* Every one of many entries is found, the first and the last included (the
 * index is folded into the result with a mask: an off-by-one would show). */
static void test_find_many(void **state)
{
    enum { N = 300 };
    size_t cap = N * 160, len = 0, i;
    char *text = malloc(cap), key[32], hex[65];
    struct sd_apikeys *k;

    (void)state;
    assert_non_null(text);
    for (i = 0; i < N; i++) {
        uint8_t d[32];
        snprintf(key, sizeof(key), "sdk_k%zu", i);
        sha256(key, strlen(key), d);
        hex32(d, hex);
        len += (size_t)snprintf(text + len, cap - len,
                                "- id: k%zu\n  digest: sha256:%s\n  bind: cn:c%zu\n", i, hex, i);
    }
    k = parse_ok(text);
    for (i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "sdk_k%zu", i);
        assert_ptr_equal(sd_apikeys_find(k, key, strlen(key)), sd_apikeys_at(k, i));
    }
    assert_null(sd_apikeys_find(k, "sdk_k300", 8));
    sd_apikeys_free(k);
    free(text);
}

static void test_generate(void **state)
{
    char a[SD_APIKEY_TEXT_LEN + 1], b[SD_APIKEY_TEXT_LEN + 1];
    uint8_t da[32], db[32], want[32];
    struct sd_err err;
    size_t i;

    (void)state;
    assert_int_equal(sd_apikeys_generate(a, da, &err), 0);
    assert_int_equal(sd_apikeys_generate(b, db, &err), 0);
    assert_int_equal(strlen(a), SD_APIKEY_TEXT_LEN);
    assert_int_equal(strncmp(a, "sdk_", 4), 0);
    for (i = 4; i < SD_APIKEY_TEXT_LEN; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               a[i]));
    sha256(a, strlen(a), want);
    assert_memory_equal(da, want, 32);
    assert_string_not_equal(a, b);
    assert_memory_not_equal(da, db, 32);
    sd_apikeys_wipe(a, sizeof(a));
    for (i = 0; i < sizeof(a); i++)
        assert_int_equal(a[i], 0);
    sd_apikeys_wipe(NULL, 0);
}

/* --------------------------------------------------------------- paths */

static int path_ok(char **prefixes, size_t n, const char *target, size_t len)
{
    struct sd_apikey e;

    memset(&e, 0, sizeof(e));
    e.paths = prefixes;
    e.npaths = n;
    return sd_apikey_path_ok(&e, guarded(target, len), len);
}

#define OK1(pre, t) path_ok1((pre), (t), sizeof(t) - 1, 1)
#define NO1(pre, t) path_ok1((pre), (t), sizeof(t) - 1, 0)

static void path_ok1(const char *prefix, const char *t, size_t len, int want)
{
    char *p[1];
    int got;

    p[0] = (char *)prefix;
    got = path_ok(p, 1, t, len);
    if (got != want)
        fail_msg("prefix '%s', target '%.*s': %d, expected %d", prefix, (int)len, t, got, want);
}

static void test_path_prefix_api(void **state)
{
    (void)state;
    /* admitted */
    OK1("/api", "/api");
    OK1("/api", "/api/");
    OK1("/api", "/api/x");
    OK1("/api", "/api?x");
    OK1("/api", "/api?x=/../admin");  /* only the path is checked */
    OK1("/api", "/api#frag");
    OK1("/api", "/api/x/y.json");
    OK1("/api", "/api/...");           /* not a dot segment */
    OK1("/api", "/api/.well-known");
    OK1("/api", "/api/x%20y");
    /* any percent-encoded byte above 0x7e: a key with paths is refused
     * there (fail closed: lax decoders and NFKC turn some into '.') */
    NO1("/api", "/api/caf%C3%A9");
    OK1("/api", "/api/x;v=1");
    OK1("/api", "https://host/api/x");
    OK1("/api", "http://host:8443/api?q");
    OK1("/api", "HTTPS://host/api");
    /* refused: other paths */
    NO1("/api", "/apix");
    NO1("/api", "/ap");
    NO1("/api", "/");
    NO1("/api", "/API");
    NO1("/api", "/api;x");
    NO1("/api", "//api");
    NO1("/api", "//api/x");
    NO1("/api", "/x/api");
    NO1("/api", "");
    NO1("/api", "*");
    NO1("/api", "api");
    NO1("/api", "host:443");
    NO1("/api", "https://host");       /* the path is "/" */
    NO1("/api", "https://host?/api");
    NO1("/api", "https://host/apix");
    NO1("/api", "https://api");
    NO1("/api", "https:/api");
    /* refused: a path a backend could read as another one */
    NO1("/api", "/api/../admin");
    NO1("/api", "/api/..");
    NO1("/api", "/api/.");
    NO1("/api", "/api/./x");
    NO1("/api", "/api/%2e%2e/admin");
    NO1("/api", "/api/%2E%2e/");
    NO1("/api", "/api/.%2e/admin");
    NO1("/api", "/api/%2e/x");
    NO1("/api", "/api;/../admin");
    NO1("/api", "/api/..;/admin");
    NO1("/api", "/api/.;x/admin");
    NO1("/api", "/api/..;jsessionid=1/admin");
    NO1("/api", "/api\\..\\admin");
    NO1("/api", "/api/x\\y");
    NO1("/api", "/api/%2f..");
    NO1("/api", "/api/%2F..%2Fadmin");
    NO1("/api", "/api/%5c..%5cadmin");
    NO1("/api", "/api/%3b/x");
    NO1("/api", "/api/%252e%252e/admin"); /* decoded twice by some */
    NO1("/api", "/api/%c0%ae%c0%ae/admin"); /* overlong '.' */
    NO1("/api", "/api/%e0%80%ae%e0%80%ae/admin"); /* 3-byte overlong '.' */
    NO1("/api", "/api/%f0%80%80%ae%f0%80%80%ae/admin"); /* 4-byte overlong '.' */
    NO1("/api", "/api/%ef%bc%8e%ef%bc%8e/admin"); /* fullwidth '.' (NFKC) */
    NO1("/api", "/api/%C1%9C");
    NO1("/api", "/api/%00");
    NO1("/api", "/api/%0a");
    NO1("/api", "/api/%7f");
    NO1("/api", "/api/%");
    NO1("/api", "/api/%2");
    NO1("/api", "/api/%zz");
    NO1("/api", "/api/%u002e%u002e/");
    NO1("/api", "/api/x y");
    NO1("/api", "/api/x\ty");
    NO1("/api", "/api/\x80");
    NO1("/api", "/api/x\0/../../admin");
    NO1("/api", "https://host/api/../admin");
    NO1("/api", "https://host\\@evil/api");
    NO1("/api", "https://host/api/%2e%2e/admin?x");
}

static void test_path_prefix_slash(void **state)
{
    (void)state;
    OK1("/api/", "/api/");
    OK1("/api/", "/api/x");
    OK1("/api/", "/api/x/y?z");
    OK1("/api/", "https://host/api/x");
    NO1("/api/", "/api");
    NO1("/api/", "/api?x");
    NO1("/api/", "/apix");
    NO1("/api/", "/api/../x");
    NO1("/api/", "https://host/api");
    /* the root admits every clean path */
    OK1("/", "/");
    OK1("/", "/anything/at/all");
    OK1("/", "/?q");
    OK1("/", "https://host");
    OK1("/", "https://host?q");
    OK1("/", "//api");
    NO1("/", "*");
    NO1("/", "/../etc/passwd");
    NO1("/", "/%2e%2e/etc/passwd");
    /* a deeper prefix */
    OK1("/v1/items", "/v1/items/3");
    NO1("/v1/items", "/v1/items3");
    NO1("/v1/items", "/v1/item");
    NO1("/v1/items", "/v1/x/../items");
}

static void test_path_several_and_none(void **state)
{
    char *two[2] = {"/a", "/b/"};
    struct sd_apikey none;

    (void)state;
    assert_int_equal(path_ok(two, 2, "/a/x", 4), 1);
    assert_int_equal(path_ok(two, 2, "/b/x", 4), 1);
    assert_int_equal(path_ok(two, 2, "/a", 2), 1);
    assert_int_equal(path_ok(two, 2, "/b", 2), 0);
    assert_int_equal(path_ok(two, 2, "/c", 2), 0);
    assert_int_equal(path_ok(two, 2, "/b/../a", 7), 0);
    /* no prefixes: every target */
    memset(&none, 0, sizeof(none));
    assert_int_equal(sd_apikey_path_ok(&none, "/x", 2), 1);
    assert_int_equal(sd_apikey_path_ok(&none, "*", 1), 1);
    assert_int_equal(sd_apikey_path_ok(&none, guarded("", 0), 0), 1);
    /* prefixes as parsed from a file behave the same */
    {
        struct sd_apikeys *k = parse_ok("- id: a\n  digest: " DIG_A
                                        "\n  bind: cn:x\n  paths: [/invoices/, /v2]\n");
        const struct sd_apikey *e = sd_apikeys_at(k, 0);
        assert_int_equal(sd_apikey_path_ok(e, "/invoices/7", 11), 1);
        assert_int_equal(sd_apikey_path_ok(e, "/v2?x", 5), 1);
        assert_int_equal(sd_apikey_path_ok(e, "/invoices", 9), 0);
        assert_int_equal(sd_apikey_path_ok(e, "/v2x", 4), 0);
        /* the length bounds the target, not a NUL */
        assert_int_equal(sd_apikey_path_ok(e, "/v2/../admin", 3), 1);
        sd_apikeys_free(k);
    }
}

/* --------------------------------------------------------------- dates */

static void time_ok(const char *text, int64_t want)
{
    struct sd_err err;
    int64_t got = -1;

    if (sd_apikeys_parse_time("expires", text, &got, &err) != 0)
        fail_msg("'%s' refused: %s", text, err.msg);
    if (got != want)
        fail_msg("'%s': %lld, expected %lld", text, (long long)got, (long long)want);
}

static void time_bad(const char *text)
{
    struct sd_err err;
    int64_t got = 42;

    memset(&err, 0, sizeof(err));
    if (sd_apikeys_parse_time("expires", text, &got, &err) == 0)
        fail_msg("'%s' accepted as %lld", text, (long long)got);
    assert_int_equal(got, 42);
    assert_non_null(strstr(err.msg, "expires: "));
    assert_non_null(strstr(err.msg, "not a date"));
}

static void test_parse_time(void **state)
{
    static const char *const bad[] = {
        "", "2027", "2027-01-3", "2027-1-31", "2027-01-31 ", " 2027-01-31", "2027/01/31",
        "2027-01-31T12:00:00", "2027-01-31T12:00Z", "2027-01-31t12:00:00z",
        "2027-01-31 12:00:00Z", "2027-01-31T12:00:00+00:00", "2027-01-31T12:00:00.5Z",
        "2027-01-3a", "+027-01-31", "-027-01-31", "2027-0x-01", "20270131",
        "2027-00-10", "2027-13-01", "2027-01-00", "2027-01-32", "2027-04-31", "2027-06-31",
        "2023-02-29", "2100-02-29", "1900-02-29", "2027-02-30",
        "2027-01-31T24:00:00Z", "2027-01-31T23:60:00Z", "2027-01-31T23:59:60Z",
        "1999-12-31", "1970-01-01", "1970-01-01T00:00:00Z", "0000-01-01",
        "10000-01-01", "2027-01-31T1:00:00Z",
    };
    size_t i;

    (void)state;
    time_ok("2027-01-31", 1801353600);
    time_ok("2027-01-31T00:00:00Z", 1801353600);
    time_ok("2027-01-31T12:00:00Z", 1801396800);
    time_ok("2024-02-29", 1709164800); /* leap year */
    time_ok("2000-02-29", 951782400);  /* divisible by 400: leap */
    time_ok("2000-01-01", 946684800);
    time_ok("2027-12-31T23:59:59Z", 1830297599);
    time_ok("9999-12-31T23:59:59Z", 253402300799);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        time_bad(bad[i]);
    /* `what` names the field */
    {
        struct sd_err err;
        int64_t t;
        assert_int_equal(sd_apikeys_parse_time("revoked", "x", &t, &err), -1);
        assert_int_equal(strncmp(err.msg, "revoked: 'x'", 12), 0);
    }
}

static void test_check_field(void **state)
{
    struct sd_err err;

    (void)state;
    assert_int_equal(sd_apikeys_check_field("id", "ci-1", &err), 0);
    assert_int_equal(sd_apikeys_check_field("id", "a b", &err), -1);
    assert_non_null(strstr(err.msg, "not an id"));
    assert_int_equal(sd_apikeys_check_field("bind", "spiffe://example.org/a", &err), 0);
    assert_int_equal(sd_apikeys_check_field("bind", "ou:Ops", &err), 0);
    assert_int_equal(sd_apikeys_check_field("bind", "foo", &err), -1);
    assert_string_equal(err.msg, "bind: 'foo' is not a pattern (uri:..., dns:..., cn:..., "
                        "ou:..., spki:...)");
    assert_int_equal(sd_apikeys_check_field("bind", "all", &err), -1);
    assert_non_null(strstr(err.msg, "bound to none"));
    assert_int_equal(sd_apikeys_check_field("paths", "/api/", &err), 0);
    assert_int_equal(sd_apikeys_check_field("paths", "/api/../x", &err), -1);
    assert_int_equal(sd_apikeys_check_field("expires", "2027-01-31", &err), 0);
    assert_int_equal(sd_apikeys_check_field("revoked", "2027-01-32", &err), -1);
    assert_int_equal(sd_apikeys_check_field("digest", "sha256:" H64("f"), &err), 0);
    assert_int_equal(sd_apikeys_check_field("digest", "sha256:", &err), -1);
    assert_int_equal(sd_apikeys_check_field("role", "x", &err), -1);
    assert_int_equal(sd_apikeys_check_field("id", NULL, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_parse_all_fields, guards_release),
        cmocka_unit_test_teardown(test_parse_empty, guards_release),
        cmocka_unit_test_teardown(test_free_null_and_accessors, guards_release),
        cmocka_unit_test_teardown(test_parse_shape_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_one_reading, guards_release),
        cmocka_unit_test_teardown(test_parse_fields_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_id_digest_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_binds_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_paths_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_dates_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_duplicates_refused, guards_release),
        cmocka_unit_test_teardown(test_parse_max_entries, guards_release),
        cmocka_unit_test_teardown(test_find, guards_release),
        cmocka_unit_test_teardown(test_find_many, guards_release),
        cmocka_unit_test_teardown(test_generate, guards_release),
        cmocka_unit_test_teardown(test_path_prefix_api, guards_release),
        cmocka_unit_test_teardown(test_path_prefix_slash, guards_release),
        cmocka_unit_test_teardown(test_path_several_and_none, guards_release),
        cmocka_unit_test_teardown(test_parse_time, guards_release),
        cmocka_unit_test_teardown(test_check_field, guards_release),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
