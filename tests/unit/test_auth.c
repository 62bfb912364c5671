/* Unit tests for auth/auth.c: which field of a request is its credential
 * (Authorization: Bearer, or the listener's key header matched loosely),
 * two credentials refused, the per-connection cache (a hit only for the
 * same bytes under the same generation), binding to the certificate's
 * identity, expiry, paths, the keys file's permissions. Keys files are real
 * files read through a real snapshot, keys are real digests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "sd/auth.h"
#include "sd/config.h"
#include "sd/files.h"

#define KEY_A "sdk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define KEY_B "sdk_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
#define KEY_OLD "sdk_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"

struct fx {
    char dir[64];
    char path[128];
    struct sd_config *cfg;
    struct sd_listener_conf *lc;
    struct sd_files *files;
    struct sd_auth *auth;
    struct sd_auth_cache cache;
    struct sd_peer_cert pc;
    struct sd_peer peer;
    struct sd_name uri;
};

static void digest_hex(const char *key, char out[65])
{
    unsigned char d[32];
    size_t i;

    SHA256((const unsigned char *)key, strlen(key), d);
    for (i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void write_keys(struct fx *f, mode_t mode)
{
    char a[65], b[65], c[65];
    FILE *fp;

    digest_hex(KEY_A, a);
    digest_hex(KEY_B, b);
    digest_hex(KEY_OLD, c);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "- id: \"billing-ci\"\n  digest: \"sha256:%s\"\n"
            "  bind: [\"uri:spiffe://example.org/billing\"]\n"
            "- id: \"orders-ci\"\n  digest: \"sha256:%s\"\n"
            "  bind: [\"uri:spiffe://example.org/orders\"]\n  paths: [\"/api\"]\n"
            "- id: \"old\"\n  digest: \"sha256:%s\"\n"
            "  bind: [\"uri:spiffe://example.org/billing\"]\n  expires: \"2001-01-01\"\n",
            a, b, c);
    fclose(fp);
    assert_int_equal(chmod(f->path, mode), 0);
}

static int build(struct fx *f, const char *header, struct sd_err *err)
{
    struct sd_err e;

    f->cfg = sd_config_new();
    assert_non_null(f->cfg);
    f->lc = sd_config_add_listener(f->cfg, &e);
    assert_non_null(f->lc);
    f->lc->name = strdup("test");
    f->lc->api_keys = strdup(f->path);
    if (header != NULL)
        f->lc->api_key_header = strdup(header);
    f->files = sd_files_new();
    assert_non_null(f->files);
    return sd_auth_new(f->lc, f->files, &f->auth, err);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sd-test-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/keys.yaml", f->dir);
    write_keys(f, 0600);
    f->uri.s = "spiffe://example.org/billing";
    f->uri.len = strlen(f->uri.s);
    f->pc.id.uris = &f->uri;
    f->pc.id.nuris = 1;
    memset(f->pc.cert_sha256, 0xab, sizeof(f->pc.cert_sha256));
    f->peer.cert = &f->pc;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    sd_auth_cache_fini(&f->cache);
    sd_auth_free(f->auth);
    sd_files_free(f->files);
    sd_config_free(f->cfg);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Judges one request with the given fields (name, value pairs). */
static void judge(struct fx *f, const char *target, uint64_t gen, int64_t now,
                  const char *const *kv, size_t nkv, struct sd_auth_result *res)
{
    struct sd_http_field fields[8];
    struct sd_auth_request rq;
    size_t i;

    assert_true(nkv / 2 <= 8);
    for (i = 0; i < nkv / 2; i++) {
        fields[i].name = (struct sd_name){ kv[2 * i], strlen(kv[2 * i]) };
        fields[i].value = (struct sd_name){ kv[2 * i + 1], strlen(kv[2 * i + 1]) };
    }
    rq.f = fields;
    rq.nf = nkv / 2;
    rq.target = (struct sd_name){ target, strlen(target) };
    rq.peer = &f->peer;
    rq.now_s = now;
    rq.gen = gen;
    assert_int_equal(sd_auth_check(f->auth, &f->cache, &rq, res), 0);
}

#define NOW 1800000000

static void test_bearer_key_passes(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *kv[] = { "Host", "x", "authorization", "bEaReR   " KEY_A };

    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/", 1, NOW, kv, 4, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.kind, SD_AUTH_KEY);
    assert_int_equal(r.field, 1);
    assert_string_equal(r.who, "billing-ci");
    /* the same bytes again: remembered */
    assert_int_equal(f->cache.kind, SD_AUTH_KEY);
    judge(f, "/x", 1, NOW, kv, 4, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.who, "billing-ci");
}

static void test_missing_and_other_schemes(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *none[] = { "Host", "x" };
    const char *basic[] = { "Authorization", "Basic dXNlcjpwYXNz" };
    const char *bearer_word[] = { "Authorization", "Bearerx " KEY_A };
    const char *empty[] = { "Authorization", "Bearer" };

    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/", 1, NOW, none, 2, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.why, "auth_missing");
    assert_non_null(strstr(r.challenge, "Bearer realm=\"steeldoor\""));
    judge(f, "/", 1, NOW, basic, 2, &r);
    assert_string_equal(r.why, "auth_missing");
    judge(f, "/", 1, NOW, bearer_word, 2, &r);
    assert_string_equal(r.why, "auth_missing");
    judge(f, "/", 1, NOW, empty, 2, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.why, "apikey_unknown");
}

static void test_two_credentials_refused(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *two[] = { "Authorization", "Bearer " KEY_A, "authorization", "Bearer " KEY_A };

    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/", 1, NOW, two, 4, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.why, "auth_multiple");
    assert_non_null(strstr(r.challenge, "invalid_request"));
}

/* The review's smuggle: a second Authorization whose scheme is Bearer but
 * not plainly "Bearer SP token68" is still a credential (the backend may
 * well read it as one), so it is never handed on unchecked. */
static void test_bearer_spellings_are_ours(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *tab[] = { "Authorization", "Bearer\t" KEY_A };
    const char *nbsp[] = { "Authorization", "Bearer\xa0" KEY_A };
    const char *comma[] = { "Authorization", "bearer," KEY_A };
    const char *basic_and_bearer[] = { "Authorization", "Basic eDp5", "Authorization",
                                       "Bearer " KEY_A };
    const char *hdr_and_tab[] = { "X-Api-Key", KEY_A, "Authorization", "Bearer\tforged.jwt.x" };
    const char *hdr_and_other[] = { "X-Api-Key", KEY_A, "Authorization", "Bearer backend" };

    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/", 1, NOW, tab, 2, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.why, "apikey_unknown");
    judge(f, "/", 1, NOW, nbsp, 2, &r);
    assert_int_equal(r.status, 401);
    judge(f, "/", 1, NOW, comma, 2, &r);
    assert_int_equal(r.status, 401);
    judge(f, "/", 1, NOW, basic_and_bearer, 4, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.why, "auth_multiple");
    sd_auth_free(f->auth);
    f->auth = NULL;
    sd_files_free(f->files);
    sd_config_free(f->cfg);
    assert_int_equal(build(f, "X-Api-Key", NULL), 0);
    judge(f, "/", 1, NOW, hdr_and_tab, 4, &r);
    assert_int_equal(r.status, 400);
    judge(f, "/", 1, NOW, hdr_and_other, 4, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.field, 0);
}

static void test_key_header_loose(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *one[] = { "x_api_KEY", KEY_A, "Authorization", "Bearer something-else" };
    const char *two[] = { "X-Api-Key", KEY_A, "X_Api_Key", KEY_B };
    const char *bearer_only[] = { "Authorization", "Bearer " KEY_A };
    const char *bearer_other[] = { "Authorization", "Bearer backend-token" };
    const char *both[] = { "X-Api-Key", KEY_A, "Authorization", "Bearer " KEY_A };

    assert_int_equal(build(f, "X-Api-Key", NULL), 0);
    judge(f, "/", 1, NOW, one, 4, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.field, 0); /* Authorization is the backend's */
    judge(f, "/", 1, NOW, two, 4, &r);
    assert_int_equal(r.status, 400);
    /* Authorization is the backend's, but a key in it is still a key */
    judge(f, "/", 1, NOW, bearer_other, 2, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.why, "auth_missing");
    assert_non_null(strstr(r.challenge, "header=\"X-Api-Key\""));
    judge(f, "/", 1, NOW, bearer_only, 2, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.field, 0);
    judge(f, "/", 1, NOW, both, 4, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.why, "auth_multiple");
}

static void test_not_bound_is_403(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *kv[] = { "Authorization", "Bearer " KEY_B };

    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/api", 1, NOW, kv, 2, &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.why, "apikey_not_bound");
    assert_true(r.stolen);
    assert_string_equal(r.who, "orders-ci");
    assert_int_equal(r.nbinds, 1);
    assert_string_equal(r.binds[0], "uri:spiffe://example.org/orders");
    assert_int_equal(f->cache.kind, SD_AUTH_NONE); /* never remembered */
}

static void test_paths_and_expiry(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *kv[] = { "Authorization", "Bearer " KEY_B };
    const char *old[] = { "Authorization", "Bearer " KEY_OLD };

    f->uri.s = "spiffe://example.org/orders";
    f->uri.len = strlen(f->uri.s);
    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/api/x", 1, NOW, kv, 2, &r);
    assert_int_equal(r.status, 0);
    /* remembered, yet paths are checked on every request */
    judge(f, "/apix", 1, NOW, kv, 2, &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.why, "apikey_path_denied");
    judge(f, "/api/../admin", 1, NOW, kv, 2, &r);
    assert_int_equal(r.status, 403);
    f->uri.s = "spiffe://example.org/billing";
    f->uri.len = strlen(f->uri.s);
    judge(f, "/", 1, NOW, old, 2, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.why, "apikey_expired");
}

static void test_cache_is_per_bytes_and_generation(void **state)
{
    struct fx *f = *state;
    struct sd_auth_result r;
    const char *good[] = { "Authorization", "Bearer " KEY_A };
    /* same length, last byte differs */
    const char *bad[] = { "Authorization", "Bearer " "sdk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB" };

    assert_int_equal(build(f, NULL, NULL), 0);
    judge(f, "/", 1, NOW, good, 2, &r);
    assert_int_equal(r.status, 0);
    judge(f, "/", 1, NOW, bad, 2, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.why, "apikey_unknown");
    judge(f, "/", 1, NOW, good, 2, &r);
    assert_int_equal(f->cache.gen, 1);
    /* a new generation: looked up again (and remembered under it) */
    judge(f, "/", 2, NOW, good, 2, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(f->cache.gen, 2);
}

static void test_keys_file_writable_by_others_refused(void **state)
{
    struct fx *f = *state;
    struct sd_err err;

    write_keys(f, 0620);
    assert_int_equal(build(f, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "writable by group or others"));
    assert_non_null(strstr(err.msg, f->path));
}

static void test_no_factor_no_object(void **state)
{
    struct fx *f = *state;
    struct sd_err e;
    struct sd_auth *a = (struct sd_auth *)&e;

    f->cfg = sd_config_new();
    f->lc = sd_config_add_listener(f->cfg, &e);
    f->files = sd_files_new();
    assert_int_equal(sd_auth_new(f->lc, f->files, &a, &e), 0);
    assert_null(a);
    sd_auth_free(NULL);
    assert_int_equal(sd_auth_forwards(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bearer_key_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_other_schemes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_credentials_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_header_loose, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_spellings_are_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_bound_is_403, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_is_per_bytes_and_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_file_writable_by_others_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_factor_no_object, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
