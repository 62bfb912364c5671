/* Unit tests for stats.c, the shared counters: a listener keeps its slot
 * (found by name) across reloads that reorder listeners, a full table
 * gives the name unused longest to a new one with its counters zeroed,
 * a dead worker loses only its gauges, sums cover every worker, and the
 * auth failure kinds name every refusal word src/auth can give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sd/config.h"
#include "sd/jwt.h"
#include "sd/stats.h"

/* A config whose listeners are named names[0, n) (nothing else is set:
 * sd_stats_assign reads names only). */
static struct sd_config *cfg_named(const char *const *names, size_t n)
{
    struct sd_config *cfg = sd_config_new();
    struct sd_err err;
    size_t i;

    assert_non_null(cfg);
    for (i = 0; i < n; i++) {
        struct sd_listener_conf *lc = sd_config_add_listener(cfg, &err);
        assert_non_null(lc);
        assert_int_equal(sd_config_set_str(&lc->name, names[i], &err), 0);
    }
    return cfg;
}

/* A config of n listeners named PREFIX0 .. PREFIX<n-1>. */
static struct sd_config *cfg_series(const char *prefix, size_t n)
{
    struct sd_config *cfg = sd_config_new();
    struct sd_err err;
    char name[32];
    size_t i;

    assert_non_null(cfg);
    for (i = 0; i < n; i++) {
        struct sd_listener_conf *lc = sd_config_add_listener(cfg, &err);
        assert_non_null(lc);
        snprintf(name, sizeof(name), "%s%zu", prefix, i);
        assert_int_equal(sd_config_set_str(&lc->name, name, &err), 0);
    }
    return cfg;
}

static struct sd_stats *stats_new(int workers)
{
    struct sd_err err;
    struct sd_stats *st = sd_stats_new(workers, &err);

    if (st == NULL)
        fail_msg("sd_stats_new: %s", err.msg);
    return st;
}

static void test_new_bounds(void **state)
{
    struct sd_err err;

    (void)state;
    assert_null(sd_stats_new(0, &err));
    assert_null(sd_stats_new(SD_MAX_WORKERS + 1, &err));
    sd_stats_free(NULL);
    assert_int_equal(sd_stats_slot(NULL, "a"), -1);
    assert_null(sd_stats_lst(NULL, 0, 0));
}

static void test_slot_kept_across_reorder(void **state)
{
    static const char *const gen1[] = { "api", "web", "admin" };
    static const char *const gen2[] = { "admin", "new", "api", "web" };
    struct sd_stats *st = stats_new(2);
    struct sd_config *c1 = cfg_named(gen1, 3), *c2 = cfg_named(gen2, 4);
    int api, web, admin;

    (void)state;
    sd_stats_assign(st, c1, 1);
    api = sd_stats_slot(st, "api");
    web = sd_stats_slot(st, "web");
    admin = sd_stats_slot(st, "admin");
    assert_true(api >= 0 && web >= 0 && admin >= 0);
    assert_true(api != web && web != admin && api != admin);
    assert_int_equal(sd_stats_slot(st, "new"), -1);
    sd_stats_add(&sd_stats_lst(st, 1, web)->accepted, 9);

    sd_stats_assign(st, c2, 2);
    assert_int_equal(sd_stats_slot(st, "api"), api);
    assert_int_equal(sd_stats_slot(st, "web"), web);
    assert_int_equal(sd_stats_slot(st, "admin"), admin);
    assert_true(sd_stats_slot(st, "new") >= 0);
    assert_true(sd_stats_slot(st, "new") != api && sd_stats_slot(st, "new") != web &&
                sd_stats_slot(st, "new") != admin);
    /* The counters stay with the name. */
    assert_int_equal(sd_stats_lst(st, 1, web)->accepted, 9);
    assert_int_equal(sd_stats_master(st)->generation, 2);
    sd_config_free(c1);
    sd_config_free(c2);
    sd_stats_free(st);
}

static void test_full_table_reuses_oldest_zeroed(void **state)
{
    struct sd_stats *st = stats_new(2);
    struct sd_config *a = cfg_series("a", SD_MAX_LISTENERS);
    struct sd_config *b = cfg_series("b", SD_MAX_LISTENERS);
    static const char *const late[] = { "late" };
    struct sd_config *c = cfg_named(late, 1);
    struct sd_stats_master m;
    int slot, i, b0;
    char name[32];

    (void)state;
    _Static_assert(SD_STATS_SLOTS == 2 * SD_MAX_LISTENERS, "two generations fill the table");
    sd_stats_assign(st, a, 1); /* a0..a63: generation 1 */
    sd_stats_assign(st, b, 2); /* b0..b63: generation 2, the table is full */
    for (i = 0; i < SD_STATS_SLOTS; i++)
        assert_int_not_equal(sd_stats_master(st)->names[i][0], '\0');
    b0 = sd_stats_slot(st, "b0");
    /* Counters in every slot, both workers. */
    for (i = 0; i < SD_STATS_SLOTS; i++) {
        sd_stats_add(&sd_stats_lst(st, 0, i)->accepted, 5);
        sd_stats_add(&sd_stats_lst(st, 1, i)->hs_full, 7);
        sd_stats_addi(&sd_stats_lst(st, 1, i)->open, 2);
    }

    sd_stats_assign(st, c, 3);
    slot = sd_stats_slot(st, "late");
    assert_true(slot >= 0);
    /* It took a name of generation 1 (unused longest), never one of 2. */
    sd_stats_master_read(st, &m);
    assert_int_equal(m.name_gen[slot], 3);
    for (i = 0; i < SD_MAX_LISTENERS; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        assert_true(sd_stats_slot(st, name) >= 0);
        assert_int_not_equal(sd_stats_slot(st, name), slot);
    }
    {
        int gone = 0;
        for (i = 0; i < SD_MAX_LISTENERS; i++) {
            snprintf(name, sizeof(name), "a%d", i);
            gone += sd_stats_slot(st, name) < 0;
        }
        assert_int_equal(gone, 1);
    }
    /* Its counters start from zero, in every worker; the others keep theirs. */
    assert_int_equal(sd_stats_lst(st, 0, slot)->accepted, 0);
    assert_int_equal(sd_stats_lst(st, 1, slot)->hs_full, 0);
    assert_int_equal(sd_stats_lst(st, 1, slot)->open, 0);
    assert_int_equal(sd_stats_lst(st, 0, b0)->accepted, 5);
    assert_int_equal(sd_stats_lst(st, 1, b0)->hs_full, 7);
    sd_config_free(a);
    sd_config_free(b);
    sd_config_free(c);
    sd_stats_free(st);
}

static void test_worker_down_zeroes_gauges_only(void **state)
{
    static const char *const names[] = { "x", "y" };
    struct sd_stats *st = stats_new(2);
    struct sd_config *cfg = cfg_named(names, 2);
    struct sd_stats_lst *w0, *w1;
    int x;

    (void)state;
    sd_stats_assign(st, cfg, 1);
    x = sd_stats_slot(st, "x");
    w0 = sd_stats_lst(st, 0, x);
    w1 = sd_stats_lst(st, 1, x);
    sd_stats_addi(&w0->open, 3);
    sd_stats_addi(&w1->open, 4);
    sd_stats_add(&w1->accepted, 11);
    sd_stats_add(&w1->closed[SD_STATS_ERROR][SD_R_CLIENT_RESET], 2);
    sd_stats_add(&w1->bytes_to_client, 1234);
    sd_stats_seti(&w1->backend_ok_ms, 5000);
    sd_stats_handshake(w1, 0, 700);

    sd_stats_worker_down(st, 1);
    assert_int_equal(w1->open, 0);
    assert_int_equal(w0->open, 3);
    assert_int_equal(w1->accepted, 11);
    assert_int_equal(w1->closed[SD_STATS_ERROR][SD_R_CLIENT_RESET], 2);
    assert_int_equal(w1->bytes_to_client, 1234);
    assert_int_equal(w1->backend_ok_ms, 5000);
    assert_int_equal(w1->hs_full, 1);
    assert_int_equal(w1->hs_bucket[1], 1);
    sd_stats_worker_down(st, 7); /* no such worker: nothing */
    sd_stats_worker_down(NULL, 0);
    sd_config_free(cfg);
    sd_stats_free(st);
}

static void test_sum_over_workers(void **state)
{
    static const char *const names[] = { "x" };
    struct sd_stats *st = stats_new(3);
    struct sd_config *cfg = cfg_named(names, 1);
    struct sd_stats_lst sum;
    int x, w;

    (void)state;
    sd_stats_assign(st, cfg, 1);
    x = sd_stats_slot(st, "x");
    for (w = 0; w < 3; w++) {
        struct sd_stats_lst *l = sd_stats_lst(st, w, x);
        sd_stats_add(&l->accepted, (uint64_t)w + 1);
        sd_stats_addi(&l->open, w == 2 ? -1 : 2); /* a gauge may dip in one block */
        sd_stats_add(&l->http[404 - SD_STATS_HTTP_MIN], 1);
        sd_stats_seti(&l->backend_ok_ms, 1000 * (w + 1));
        sd_stats_seti(&l->backend_fail_ms, w == 0 ? 9000 : 0);
    }
    assert_null(sd_stats_lst(st, 3, x));
    sd_stats_sum(st, x, &sum);
    assert_int_equal(sum.accepted, 6);
    assert_int_equal(sum.open, 3);
    assert_int_equal(sum.http[404 - SD_STATS_HTTP_MIN], 3);
    /* Times are the latest of any worker, not a sum. */
    assert_int_equal(sum.backend_ok_ms, 3000);
    assert_int_equal(sum.backend_fail_ms, 9000);
    sd_stats_sum(st, -1, &sum);
    assert_int_equal(sum.accepted, 0);
    sd_config_free(cfg);
    sd_stats_free(st);
}

static void test_handshake_buckets(void **state)
{
    struct sd_stats_lst l;
    size_t b;

    (void)state;
    memset(&l, 0, sizeof(l));
    /* On a bound: that bucket (le is "less or equal"). */
    for (b = 0; b < SD_STATS_HS_BUCKETS; b++) {
        sd_stats_handshake(&l, (int)(b & 1), sd_stats_hs_bounds_us[b]);
        assert_int_equal(l.hs_bucket[b], 1);
        if (b > 0)
            assert_true(sd_stats_hs_bounds_us[b] > sd_stats_hs_bounds_us[b - 1]);
    }
    sd_stats_handshake(&l, 0, sd_stats_hs_bounds_us[SD_STATS_HS_BUCKETS - 1] + 1);
    assert_int_equal(l.hs_bucket[SD_STATS_HS_BUCKETS], 1);
    assert_int_equal(l.hs_full + l.hs_resumed, SD_STATS_HS_BUCKETS + 1);
    sd_stats_handshake(NULL, 0, 1);
}

/* The words sd_auth_refuse() is called with as literals in src/auth/auth.c
 * (the JWT words come through sd_jwt_result_word and are checked from its
 * table). Read at test time, so a word added there fails here until
 * sd_stats_auth_kinds has it. */
static size_t auth_literals(char words[][64], size_t max)
{
    char path[4096], *text, *p;
    const char *file = __FILE__, *cut = strstr(file, "tests/unit/");
    size_t n = 0, len;
    FILE *f;
    long size;

    snprintf(path, sizeof(path), "%.*ssrc/auth/auth.c", (int)(cut != NULL ? cut - file : 0),
             file);
    f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repository)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    for (p = strstr(text, "sd_auth_refuse("); p != NULL; p = strstr(p + 1, "sd_auth_refuse(")) {
        char *q, *end = strchr(p, ')');
        if (end == NULL)
            break;
        q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL)
            continue; /* the definition, or a word from sd_jwt_result_word() */
        len = strcspn(q + 1, "\"");
        assert_true(len > 0 && len < 64);
        assert_true(n < max);
        memcpy(words[n], q + 1, len);
        words[n][len] = '\0';
        n++;
    }
    free(text);
    return n;
}

static void test_auth_kinds_cover_src_auth(void **state)
{
    char words[64][64];
    size_t n, i;
    int r;

    (void)state;
    n = auth_literals(words, 64);
    assert_true(n >= 7); /* auth_missing, auth_multiple, apikey_* */
    for (i = 0; i < n; i++) {
        size_t k = sd_stats_auth_kind(words[i]);
        if (k == SD_STATS_AUTH_KINDS - 1)
            fail_msg("src/auth/auth.c refuses with \"%s\", which sd_stats_auth_kinds lacks",
                     words[i]);
        assert_string_equal(sd_stats_auth_kinds[k], words[i]);
    }
    for (r = SD_JWT_OK + 1; r < SD_JWT_RESULT_COUNT; r++) {
        const char *w = sd_jwt_result_word((enum sd_jwt_result)r);
        if (sd_stats_auth_kind(w) == SD_STATS_AUTH_KINDS - 1)
            fail_msg("jwt.c refuses with \"%s\", which sd_stats_auth_kinds lacks", w);
    }
    /* The last kind catches the rest; every kind is distinct. */
    assert_string_equal(sd_stats_auth_kinds[SD_STATS_AUTH_KINDS - 1], "other");
    assert_int_equal(sd_stats_auth_kind("no_such_word"), SD_STATS_AUTH_KINDS - 1);
    assert_int_equal(sd_stats_auth_kind(NULL), SD_STATS_AUTH_KINDS - 1);
    for (i = 0; i < SD_STATS_AUTH_KINDS; i++) {
        size_t j;
        for (j = i + 1; j < SD_STATS_AUTH_KINDS; j++)
            assert_string_not_equal(sd_stats_auth_kinds[i], sd_stats_auth_kinds[j]);
    }
}

static void test_master_read_terminates_text(void **state)
{
    struct sd_stats *st = stats_new(1);
    struct sd_stats_master *m = sd_stats_master(st), copy;

    (void)state;
    sd_stats_master_begin(st);
    memset(m->last_reload_msg, 'x', sizeof(m->last_reload_msg));
    m->reloads_failed = 1;
    sd_stats_master_end(st);
    assert_int_equal(m->seq % 2, 0);
    sd_stats_master_read(st, &copy);
    assert_int_equal(copy.reloads_failed, 1);
    assert_int_equal(strlen(copy.last_reload_msg), SD_STATS_MSG_MAX - 1);
    sd_stats_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_bounds),
        cmocka_unit_test(test_slot_kept_across_reorder),
        cmocka_unit_test(test_full_table_reuses_oldest_zeroed),
        cmocka_unit_test(test_worker_down_zeroes_gauges_only),
        cmocka_unit_test(test_sum_over_workers),
        cmocka_unit_test(test_handshake_buckets),
        cmocka_unit_test(test_auth_kinds_cover_src_auth),
        cmocka_unit_test(test_master_read_terminates_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
