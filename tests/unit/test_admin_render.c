/* Unit tests for admin_render.c (the admin listener's pages) and
 * tls/info.c (what a TLS context holds).
 *
 * A stats mapping of two workers, a small configuration (an HTTP listener
 * with API keys, an L4 listener whose name needs escaping, a connector and
 * the admin listener) and a generation around it without TLS contexts:
 * /metrics must hold the sums of both workers, a cumulative histogram
 * whose +Inf bucket is its _count, escaped label values, the reload
 * gauges, each family once with # HELP and # TYPE and its samples
 * together; /readyz and /status are parsed back with jansson. Then real
 * contexts (a CA, a server certificate and a CRL made here with OpenSSL):
 * their certificates and CRL in /metrics and /status, and /readyz at a
 * time after they expire. When promtool and Python's prometheus_client
 * are installed, the pages are also given to them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sd/admin.h"
#include "sd/cli.h"
#include "sd/config.h"
#include "sd/files.h"
#include "sd/gen.h"
#include "sd/stats.h"
#include "sd/tls.h"

/* A listener name with every byte the text format escapes, and a byte
 * that is not UTF-8 (shown as '?'). */
#define WEIRD_NAME "we\"ird\\name\nx\xff"
#define WEIRD_LABEL "we\\\"ird\\\\name\\nx?"

#define NOW_MS INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

struct fixture {
    struct sd_config *cfg;
    struct sd_gen g;
    struct sd_stats *st;
    struct sd_admin_out out;
};

static struct sd_listener_conf *add(struct sd_config *cfg, const char *name, unsigned mode,
                                    const char *listen, const char *target)
{
    struct sd_err err;
    struct sd_listener_conf *lc = sd_config_add_listener(cfg, &err);

    assert_non_null(lc);
    assert_int_equal(sd_config_set_str(&lc->name, name, &err), 0);
    assert_int_equal(sd_config_set_str(&lc->listen, listen, &err), 0);
    if (target != NULL)
        assert_int_equal(sd_config_set_str(&lc->target, target, &err), 0);
    lc->mode = (uint8_t)mode;
    return lc;
}

static struct sd_stats_lst *lst(struct fixture *f, int worker, const char *name)
{
    struct sd_stats_lst *l = sd_stats_lst(f->st, worker, sd_stats_slot(f->st, name));

    assert_non_null(l);
    return l;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct sd_stats_master *m;
    struct sd_stats_lst *w0, *w1;
    struct sd_err err;

    assert_non_null(f);
    f->cfg = sd_config_new();
    assert_non_null(f->cfg);
    assert_int_equal(sd_config_set_str(&add(f->cfg, "web", SD_MODE_HTTP, "127.0.0.1:8443",
                                            "127.0.0.1:8080")->api_keys,
                                        "/etc/steeldoor/keys", &err),
                     0);
    add(f->cfg, WEIRD_NAME, SD_MODE_TCP, "[::1]:9443", "unix:/run/app.sock");
    add(f->cfg, "out", SD_MODE_CONNECT, "127.0.0.1:7000", "db.example.org:5432");
    add(f->cfg, SD_ADMIN_NAME, SD_MODE_ADMIN, "127.0.0.1:9901", NULL);
    f->cfg->workers = 2;
    f->g.refs = 1;
    f->g.id = 5;
    f->g.cfg = f->cfg;
    f->g.tls = calloc(f->cfg->nlisteners, sizeof(*f->g.tls));
    assert_non_null(f->g.tls);
    f->st = sd_stats_new(2, &err);
    assert_non_null(f->st);
    sd_stats_assign(f->st, f->cfg, 5);

    m = sd_stats_master(f->st);
    sd_stats_master_begin(f->st);
    m->started_ms = INT64_C(1767225000123);
    m->reloads_ok = 4;
    m->reloads_failed = 1;
    m->stale = 1;
    m->last_reload_ms = INT64_C(1767225500000);
    m->last_reload_ok = 0;
    snprintf(m->last_reload_msg, sizeof(m->last_reload_msg),
             "/etc/steeldoor/ca.crt: CA bundle contains no CA certificate");
    m->worker_pid[0] = 4242;
    m->worker_pid[1] = 0; /* down, restart pending */
    m->worker_restarts_total = 3;
    m->probe_ok_ms[sd_stats_slot(f->st, "out")] = NOW_MS - 2000;
    sd_stats_master_end(f->st);

    /* web: counted in both workers */
    w0 = lst(f, 0, "web");
    w1 = lst(f, 1, "web");
    sd_stats_add(&w0->accepted, 3);
    sd_stats_add(&w1->accepted, 4);
    sd_stats_addi(&w0->open, 1);
    sd_stats_addi(&w1->open, 2);
    sd_stats_add(&w0->closed[SD_STATS_OK][SD_R_NONE], 5);
    sd_stats_add(&w1->closed[SD_STATS_REFUSED][SD_R_UNKNOWN_CA], 2);
    sd_stats_handshake(w0, 0, 400);      /* le 0.0005 */
    sd_stats_handshake(w1, 1, 700);      /* le 0.001 */
    sd_stats_handshake(w1, 0, 3000);     /* le 0.005 */
    sd_stats_handshake(w0, 0, 20000000); /* +Inf */
    sd_stats_add(&w0->bytes_from_client, 100);
    sd_stats_add(&w1->bytes_from_client, 23);
    sd_stats_add(&w1->bytes_to_client, 4567);
    sd_stats_add(&w0->backend_fail, 1);
    sd_stats_add(&w1->backend_fail, 1);
    sd_stats_seti(&w0->backend_ok_ms, NOW_MS - 60000);
    sd_stats_seti(&w1->backend_fail_ms, NOW_MS - 1000);
    sd_stats_add(&w0->http[200 - SD_STATS_HTTP_MIN], 3);
    sd_stats_add(&w1->http[200 - SD_STATS_HTTP_MIN], 1);
    sd_stats_add(&w1->http[401 - SD_STATS_HTTP_MIN], 2);
    sd_stats_add(&w0->auth_fail[sd_stats_auth_kind("apikey_unknown")], 1);
    sd_stats_add(&w1->auth_fail[sd_stats_auth_kind("apikey_unknown")], 1);
    /* the weird one: a little */
    sd_stats_add(&lst(f, 1, WEIRD_NAME)->accepted, 1);

    sd_admin_out_init(&f->out, SD_ADMIN_OUT_MAX);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    sd_admin_out_fini(&f->out);
    sd_stats_free(f->st);
    free(f->g.tls);
    sd_config_free(f->cfg);
    free(f);
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Is line (a whole line, without its newline) in text? */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
        p += 1;
    }
    return 0;
}

static void expect_line(const char *text, const char *line)
{
    if (!has_line(text, line))
        fail_msg("line not found: %s\n--- page ---\n%s", line, text);
}

static void expect_no(const char *text, const char *part)
{
    if (strstr(text, part) != NULL)
        fail_msg("unexpected: %s", part);
}

/* Each sample's family is announced once, by # HELP then # TYPE, before
 * its samples, and a family's samples are together. */
static void check_families(const char *text)
{
    char fams[128][96], types[128][16];
    size_t nf = 0, i;
    const char *p = text;
    int cur = -1;

    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        char name[96];
        size_t n;

        assert_non_null(eol); /* every line ends */
        if (strncmp(p, "# HELP ", 7) == 0) {
            n = strcspn(p + 7, " ");
            assert_true(n < sizeof(name));
            memcpy(name, p + 7, n);
            name[n] = '\0';
            for (i = 0; i < nf; i++)
                if (strcmp(fams[i], name) == 0)
                    fail_msg("family %s announced twice", name);
            assert_true(nf < 128);
            memcpy(fams[nf], name, n + 1);
            types[nf][0] = '\0';
            /* # TYPE follows at once */
            assert_true(strncmp(eol + 1, "# TYPE ", 7) == 0);
            assert_true(strncmp(eol + 8, name, n) == 0 && eol[8 + n] == ' ');
            n = strcspn(eol + 9 + n, "\n");
            assert_true(n < sizeof(types[0]));
            memcpy(types[nf], eol + 9 + strlen(name), n);
            types[nf][n] = '\0';
            cur = (int)nf++;
            p = strchr(eol + 1, '\n') + 1;
            continue;
        }
        assert_true(*p != '#');
        n = strcspn(p, "{ ");
        assert_true(n < sizeof(name));
        memcpy(name, p, n);
        name[n] = '\0';
        assert_true(cur >= 0);
        if (strcmp(types[cur], "histogram") == 0) {
            size_t fl = strlen(fams[cur]);
            assert_true(strncmp(name, fams[cur], fl) == 0);
            assert_true(strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                        strcmp(name + fl, "_count") == 0);
        } else if (strcmp(name, fams[cur]) != 0) {
            fail_msg("sample %s outside its family (current: %s)", name, fams[cur]);
        }
        p = eol + 1;
    }
}

/* Runs cmd with the page on its standard input; returns its exit status,
 * or -1 when it could not run. */
static int run_with(const char *cmd, const char *text)
{
    char path[] = "/tmp/sd-admin-test-XXXXXX", line[512];
    int fd = mkstemp(path), st;
    size_t n = strlen(text);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    snprintf(line, sizeof(line), "%s < %s", cmd, path);
    st = system(line);
    unlink(path);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* The page passes promtool's checks and lint, and Python's parser reads
 * it (each when installed). */
static void check_with_tools(const char *text)
{
    static const char py[] =
        "/usr/bin/python3 -c 'import sys\n"
        "from prometheus_client.parser import text_string_to_metric_families as p\n"
        "fams = list(p(sys.stdin.read()))\n"
        "assert len(fams) > 5, fams\n'";

    if (access("/usr/bin/promtool", X_OK) == 0)
        assert_int_equal(run_with("/usr/bin/promtool check metrics", text), 0);
    else
        print_message("promtool not installed: not run\n");
    /* Debian's python3, as the Makefile's PYTHON (a python3 earlier in
     * PATH may lack Debian's packages). */
    if (system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") == 0)
        assert_int_equal(run_with(py, text), 0);
    else
        print_message("python3-prometheus-client not installed: not run\n");
}

static json_t *parse_json(const struct sd_admin_out *o)
{
    json_error_t e;
    json_t *j;

    assert_true(o->len > 0 && o->data[o->len - 1] == '\n');
    j = json_loadb(o->data, o->len, 0, &e);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", e.text, o->data);
    return j;
}

static json_t *check_named(json_t *readyz, const char *name)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(readyz, "checks"), i, c)
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return c;
    fail_msg("no check %s", name);
    return NULL;
}

/* ------------------------------------------------------------ /metrics */

static void test_metrics_sums(void **state)
{
    struct fixture *f = *state;
    const char *t;

    assert_int_equal(sd_admin_metrics(f->st, &f->g, &f->out), 0);
    t = f->out.data;
    expect_line(t, "steeldoor_connections_accepted_total{listener=\"web\"} 7");
    expect_line(t, "steeldoor_connections_open{listener=\"web\"} 3");
    expect_line(t, "steeldoor_connections_total{listener=\"web\",result=\"ok\",reason=\"none\"} 5");
    expect_line(t, "steeldoor_connections_total{listener=\"web\",result=\"refused\","
                   "reason=\"unknown_ca\"} 2");
    expect_line(t, "steeldoor_handshakes_total{listener=\"web\",kind=\"full\"} 3");
    expect_line(t, "steeldoor_handshakes_total{listener=\"web\",kind=\"resumed\"} 1");
    expect_line(t, "steeldoor_bytes_received_total{listener=\"web\"} 123");
    expect_line(t, "steeldoor_bytes_sent_total{listener=\"web\"} 4567");
    expect_line(t, "steeldoor_backend_connect_failures_total{listener=\"web\"} 2");
    expect_line(t, "steeldoor_http_responses_total{listener=\"web\",code=\"200\"} 4");
    expect_line(t, "steeldoor_http_responses_total{listener=\"web\",code=\"401\"} 2");
    expect_no(t, "code=\"500\"");
    expect_line(t, "steeldoor_auth_failures_total{listener=\"web\",kind=\"apikey_unknown\"} 2");
    expect_line(t, "steeldoor_auth_failures_total{listener=\"web\",kind=\"other\"} 0");
    /* The admin listener has no target; only HTTP listeners with keys or
     * tokens have auth series; zero series of closed connections are left
     * out except ok/none. */
    expect_no(t, "steeldoor_backend_connect_failures_total{listener=\"admin\"}");
    expect_no(t, "steeldoor_auth_failures_total{listener=\"out\"");
    expect_line(t, "steeldoor_backend_connect_failures_total{listener=\"out\"} 0");
    expect_line(t, "steeldoor_connections_total{listener=\"out\",result=\"ok\",reason=\"none\"} 0");
    expect_no(t, "steeldoor_connections_total{listener=\"out\",result=\"error\"");
    expect_line(t, "steeldoor_listener_info{listener=\"web\",mode=\"http\",listen=\"127.0.0.1:8443\"} 1");
    expect_line(t, "steeldoor_listener_info{listener=\"admin\",mode=\"admin\",listen=\"127.0.0.1:9901\"} 1");
    expect_line(t, "steeldoor_listener_info{listener=\"out\",mode=\"connect\",listen=\"127.0.0.1:7000\"} 1");
    /* no TLS context: no certificate series, and no empty family */
    expect_no(t, "steeldoor_certificate_not_after_timestamp_seconds");
    expect_no(t, "steeldoor_crl_next_update_timestamp_seconds");
    check_families(t);
    check_with_tools(t);
}

static void test_metrics_histogram(void **state)
{
    struct fixture *f = *state;
    const char *t, *p;
    uint64_t prev = 0, v = 0, count;
    int buckets = 0;

    assert_int_equal(sd_admin_metrics(f->st, &f->g, &f->out), 0);
    t = f->out.data;
    expect_line(t, "# TYPE steeldoor_handshake_duration_seconds histogram");
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"web\",le=\"0.0005\"} 1");
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"web\",le=\"0.001\"} 2");
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"web\",le=\"0.0025\"} 2");
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"web\",le=\"0.005\"} 3");
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"web\",le=\"10\"} 3");
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"web\",le=\"+Inf\"} 4");
    expect_line(t, "steeldoor_handshake_duration_seconds_sum{listener=\"web\"} 20.0041");
    expect_line(t, "steeldoor_handshake_duration_seconds_count{listener=\"web\"} 4");
    /* Every bucket of web, in order: never decreasing, the last the count. */
    for (p = strstr(t, "_bucket{listener=\"web\""); p != NULL;
         p = strstr(p + 1, "_bucket{listener=\"web\"")) {
        const char *sp = strchr(p, ' ');
        assert_non_null(sp);
        v = strtoull(sp + 1, NULL, 10);
        assert_true(v >= prev);
        prev = v;
        buckets++;
    }
    assert_int_equal(buckets, SD_STATS_HS_BUCKETS + 1);
    p = strstr(t, "steeldoor_handshake_duration_seconds_count{listener=\"web\"} ");
    assert_non_null(p);
    count = strtoull(strchr(p, ' ') + 1, NULL, 10);
    assert_int_equal(count, v);
    /* Listeners without a handshake: zero buckets, zero sum. */
    expect_line(t, "steeldoor_handshake_duration_seconds_bucket{listener=\"admin\",le=\"+Inf\"} 0");
    expect_line(t, "steeldoor_handshake_duration_seconds_sum{listener=\"admin\"} 0");
}

static void test_metrics_label_escaping(void **state)
{
    struct fixture *f = *state;
    const char *t;

    assert_int_equal(sd_admin_metrics(f->st, &f->g, &f->out), 0);
    t = f->out.data;
    expect_line(t, "steeldoor_connections_accepted_total{listener=\"" WEIRD_LABEL "\"} 1");
    expect_line(t, "steeldoor_listener_info{listener=\"" WEIRD_LABEL "\",mode=\"tcp\","
                   "listen=\"[::1]:9443\"} 1");
    /* The raw bytes never reach the page. */
    expect_no(t, "\xff");
    expect_no(t, "we\"ird");
    check_families(t);
}

static void test_metrics_process(void **state)
{
    struct fixture *f = *state;
    const char *t;
    char line[160];

    assert_int_equal(sd_admin_metrics(f->st, &f->g, &f->out), 0);
    t = f->out.data;
    snprintf(line, sizeof(line), "steeldoor_build_info{version=\"%s\",openssl=\"%s\"} 1",
             SD_VERSION, sd_tls_openssl_version());
    expect_line(t, line);
    expect_line(t, "steeldoor_start_time_seconds 1767225000.123");
    expect_line(t, "steeldoor_generation 5");
    expect_line(t, "steeldoor_config_stale 1");
    expect_line(t, "steeldoor_reloads_total{result=\"ok\"} 4");
    expect_line(t, "steeldoor_reloads_total{result=\"failed\"} 1");
    expect_line(t, "steeldoor_last_reload_timestamp_seconds 1767225500");
    expect_line(t, "steeldoor_last_reload_success 0");
    expect_line(t, "steeldoor_workers 1");
    expect_line(t, "steeldoor_workers_configured 2");
    expect_line(t, "steeldoor_worker_restarts_total 3");
    expect_line(t, "# TYPE steeldoor_reloads_total counter");
    expect_line(t, "# TYPE steeldoor_config_stale gauge");
}

static void test_metrics_no_reload_yet(void **state)
{
    struct fixture *f = *state;
    struct sd_stats *st;
    struct sd_err err;
    const char *t;

    st = sd_stats_new(2, &err);
    assert_non_null(st);
    assert_int_equal(sd_admin_metrics(st, &f->g, &f->out), 0);
    t = f->out.data;
    expect_no(t, "steeldoor_last_reload_timestamp_seconds");
    expect_no(t, "steeldoor_last_reload_success");
    expect_line(t, "steeldoor_config_stale 0");
    /* No slot for any name yet: zeros, every listener still listed. */
    expect_line(t, "steeldoor_connections_accepted_total{listener=\"web\"} 0");
    check_families(t);
    sd_stats_free(st);
    /* And without any mapping (tools, tests). */
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_metrics(NULL, &f->g, &f->out), 0);
    expect_line(f->out.data, "steeldoor_workers 0");
    expect_line(f->out.data, "steeldoor_workers_configured 2");
}

static void test_output_cap(void **state)
{
    struct fixture *f = *state;
    struct sd_admin_out small;
    int ready;

    (void)state;
    sd_admin_out_init(&small, 1024);
    assert_int_equal(sd_admin_metrics(f->st, &f->g, &small), -1);
    assert_true(small.failed);
    assert_true(small.len <= 1024);
    /* Failed stays failed. */
    assert_int_equal(sd_admin_out_puts(&small, "x"), -1);
    sd_admin_out_fini(&small);
    assert_int_equal(small.len, 0);
    assert_false(small.failed);
    sd_admin_out_init(&small, 16);
    assert_int_equal(sd_admin_readyz(f->st, &f->g, NOW_MS, &small, &ready), -1);
    sd_admin_out_fini(&small);
    sd_admin_out_init(&small, 16);
    assert_int_equal(sd_admin_status(f->st, &f->g, NOW_MS, &small), -1);
    sd_admin_out_fini(&small);
    /* Exactly at the cap is fine. */
    sd_admin_out_init(&small, 4);
    assert_int_equal(sd_admin_out_printf(&small, "%s", "abcd"), 0);
    assert_string_equal(small.data, "abcd");
    assert_int_equal(sd_admin_out_put(&small, "e", 1), -1);
    sd_admin_out_fini(&small);
    /* printf longer than its stack buffer */
    sd_admin_out_init(&small, 4096);
    assert_int_equal(sd_admin_out_printf(&small, "%0600d|", 7), 0);
    assert_int_equal(small.len, 601);
    assert_int_equal(small.data[600], '|');
    sd_admin_out_fini(&small);
}

/* ------------------------------------------------------ /readyz /status */

static void test_readyz(void **state)
{
    struct fixture *f = *state;
    json_t *j, *c;
    int ready = 1;

    assert_int_equal(sd_admin_readyz(f->st, &f->g, NOW_MS, &f->out, &ready), 0);
    j = parse_json(&f->out);
    assert_int_equal(ready, 0);
    assert_true(json_is_false(json_object_get(j, "ready")));
    assert_int_equal(json_array_size(json_object_get(j, "checks")), 4);
    /* config: stale, with the reload's message and time */
    c = check_named(j, "config");
    assert_true(json_is_false(json_object_get(c, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(c, "detail")),
                           "CA bundle contains no CA certificate"));
    assert_non_null(strstr(json_string_value(json_object_get(c, "detail")),
                           "2025-12-31T23:58:20Z"));
    /* certificates: no TLS context here, nothing to fail */
    assert_true(json_is_true(json_object_get(check_named(j, "certificates"), "ok")));
    /* backends: web's latest event is a failure; out's probe worked; the
     * weird one never connected (unknown) */
    c = check_named(j, "backends");
    assert_true(json_is_false(json_object_get(c, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(c, "detail")), "web: the last"));
    assert_non_null(strstr(json_string_value(json_object_get(c, "detail")), "out: ok"));
    assert_non_null(strstr(json_string_value(json_object_get(c, "detail")), "unknown"));
    /* workers: one of two */
    c = check_named(j, "workers");
    assert_true(json_is_true(json_object_get(c, "ok")));
    assert_string_equal(json_string_value(json_object_get(c, "detail")), "1/2 alive");
    json_decref(j);

    /* The reload works again, web connects again: ready. */
    sd_stats_master_begin(f->st);
    sd_stats_master(f->st)->stale = 0;
    sd_stats_master(f->st)->last_reload_ok = 1;
    sd_stats_master_end(f->st);
    sd_stats_seti(&lst(f, 0, "web")->backend_ok_ms, NOW_MS - 10);
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_readyz(f->st, &f->g, NOW_MS, &f->out, &ready), 0);
    j = parse_json(&f->out);
    assert_int_equal(ready, 1);
    assert_true(json_is_true(json_object_get(j, "ready")));
    json_decref(j);

    /* Every worker down: not ready. */
    sd_stats_master_begin(f->st);
    sd_stats_master(f->st)->worker_pid[0] = 0;
    sd_stats_master_end(f->st);
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_readyz(f->st, &f->g, NOW_MS, &f->out, &ready), 0);
    j = parse_json(&f->out);
    assert_int_equal(ready, 0);
    assert_true(json_is_false(json_object_get(check_named(j, "workers"), "ok")));
    json_decref(j);
}

static void test_status(void **state)
{
    struct fixture *f = *state;
    json_t *j, *l, *x;
    size_t i;

    assert_int_equal(sd_admin_status(f->st, &f->g, NOW_MS, &f->out), 0);
    j = parse_json(&f->out);
    assert_string_equal(json_string_value(json_object_get(j, "version")), SD_VERSION);
    assert_string_equal(json_string_value(json_object_get(j, "openssl")),
                        sd_tls_openssl_version());
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 5);
    assert_true(json_is_true(json_object_get(j, "stale")));
    assert_string_equal(json_string_value(json_object_get(j, "start_time")),
                        "2025-12-31T23:50:00Z");
    x = json_object_get(j, "last_reload");
    assert_string_equal(json_string_value(json_object_get(x, "result")), "failed");
    assert_string_equal(json_string_value(json_object_get(x, "time")), "2025-12-31T23:58:20Z");
    assert_non_null(strstr(json_string_value(json_object_get(x, "error")), "no CA certificate"));
    x = json_object_get(j, "reloads");
    assert_int_equal(json_integer_value(json_object_get(x, "ok")), 4);
    assert_int_equal(json_integer_value(json_object_get(x, "failed")), 1);
    x = json_object_get(j, "workers");
    assert_int_equal(json_integer_value(json_object_get(x, "configured")), 2);
    assert_int_equal(json_integer_value(json_object_get(x, "alive")), 1);
    assert_int_equal(json_integer_value(json_object_get(x, "restarts")), 3);
    l = json_object_get(j, "listeners");
    assert_int_equal(json_array_size(l), 4);
    json_array_foreach(l, i, x) {
        const char *name = json_string_value(json_object_get(x, "name"));
        const char *mode = json_string_value(json_object_get(x, "mode"));
        assert_non_null(name);
        assert_non_null(json_object_get(x, "listen"));
        assert_true(json_is_array(json_object_get(x, "certificates")));
        assert_true(json_is_array(json_object_get(x, "crl_files")));
        if (strcmp(mode, "admin") == 0)
            assert_null(json_object_get(x, "target"));
        else
            assert_non_null(json_object_get(x, "target"));
        if (strcmp(mode, "connect") == 0)
            assert_non_null(json_object_get(x, "verify_rules"));
        else
            assert_non_null(json_object_get(x, "allow_rules"));
    }
    x = json_array_get(l, 0);
    assert_string_equal(json_string_value(json_object_get(x, "name")), "web");
    assert_int_equal(json_integer_value(json_object_get(x, "connections_open")), 3);
    /* The weird name, invalid byte replaced, otherwise as it is. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "name")),
                        "we\"ird\\name\nx?");
    json_decref(j);
}

static void test_rfc3339(void **state)
{
    char buf[32];

    (void)state;
    sd_admin_rfc3339(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    sd_admin_rfc3339(1767225600, buf);
    assert_string_equal(buf, "2026-01-01T00:00:00Z");
}

/* --------------------------------------------- real contexts: tls/info.c */

static char dir[64];

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* A certificate for key, signed by issuer (NULL: self-signed), valid from
 * now + from to now + to seconds. */
static X509 *mk_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key, const char *cn, int ca,
                     long from, long to, long serial)
{
    X509 *x = X509_new();
    X509_NAME *n;
    X509V3_CTX v3;
    X509_EXTENSION *e;
    const char *exts[4][2] = {
        { "basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE" },
        { "keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature" },
        { "extendedKeyUsage", ca ? NULL : "serverAuth" },
        { "subjectAltName", ca ? NULL : "DNS:server.example.org" },
    };
    size_t i;

    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), serial));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to));
    assert_true(X509_set_pubkey(x, key));
    n = X509_get_subject_name(x);
    assert_true(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                           -1, 0));
    assert_true(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n));
    X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    for (i = 0; i < 4; i++) {
        if (exts[i][1] == NULL)
            continue;
        e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        assert_non_null(e);
        assert_true(X509_add_ext(x, e, -1));
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    return x;
}

static void write_cert(const char *name, X509 *x)
{
    char p[128];
    FILE *fp;

    path_of(p, sizeof(p), name);
    fp = fopen(p, "w");
    assert_non_null(fp);
    assert_true(PEM_write_X509(fp, x));
    fclose(fp);
}

static void test_tls_info(void **state)
{
    struct fixture *f = *state;
    EVP_PKEY *cakey = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    X509 *ca, *srv;
    X509_CRL *crl;
    ASN1_TIME *t;
    struct sd_listener_conf *lc;
    struct sd_files *files = sd_files_new();
    struct sd_gen g;
    struct sd_tls *tls[1] = { NULL };
    struct sd_err err;
    char p[128], line[512];
    const char *text, *s;
    json_t *j, *c, *x;
    FILE *fp;
    int ready = 1;
    int64_t now = (int64_t)time(NULL);

    snprintf(dir, sizeof(dir), "/tmp/sd-admin-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(sd_tls_init(&err), 0);
    assert_non_null(cakey);
    assert_non_null(key);
    assert_non_null(files);
    ca = mk_cert(NULL, cakey, cakey, "test admin CA", 1, -3600, 86400L * 30, 1);
    srv = mk_cert(ca, cakey, key, "admin.example.org", 0, -3600, 86400L * 10, 0x1234ab);
    write_cert("ca.crt", ca);
    write_cert("server.crt", srv);
    path_of(p, sizeof(p), "server.key");
    fp = fopen(p, "w");
    assert_non_null(fp);
    assert_true(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL));
    fclose(fp);
    chmod(p, 0600);
    /* A CRL due in a day. */
    crl = X509_CRL_new();
    assert_non_null(crl);
    assert_true(X509_CRL_set_version(crl, 1));
    assert_true(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)));
    t = ASN1_TIME_adj(NULL, (time_t)now, 0, -60);
    assert_true(X509_CRL_set1_lastUpdate(crl, t));
    ASN1_TIME_free(t);
    t = ASN1_TIME_adj(NULL, (time_t)now, 1, 0);
    assert_true(X509_CRL_set1_nextUpdate(crl, t));
    ASN1_TIME_free(t);
    assert_true(X509_CRL_sign(crl, cakey, EVP_sha256()) > 0);
    path_of(p, sizeof(p), "ca.crl");
    fp = fopen(p, "w");
    assert_non_null(fp);
    assert_true(PEM_write_X509_CRL(fp, crl));
    fclose(fp);

    /* One TLS admin listener. */
    memset(&g, 0, sizeof(g));
    g.cfg = sd_config_new();
    assert_non_null(g.cfg);
    lc = add(g.cfg, "admin", SD_MODE_ADMIN, "0.0.0.0:9901", NULL);
    path_of(p, sizeof(p), "server.crt");
    assert_int_equal(sd_config_set_str(&lc->cert, p, &err), 0);
    path_of(p, sizeof(p), "server.key");
    assert_int_equal(sd_config_set_str(&lc->key, p, &err), 0);
    path_of(p, sizeof(p), "ca.crt");
    assert_int_equal(sd_config_set_str(&lc->cacert, p, &err), 0);
    path_of(p, sizeof(p), "ca.crl");
    assert_int_equal(sd_config_add_crl(lc, p, &err), 0);
    lc->crl_grace_s = 3600;
    assert_int_equal(sd_config_add_rule(lc, "allow-all", "", &err), 0);
    lc->session_lifetime_ms = 0;
    tls[0] = sd_tls_server_new(lc, files, &err);
    if (tls[0] == NULL)
        fail_msg("server context: %s", err.msg);
    g.tls = tls;
    g.id = 1;
    assert_int_equal(sd_tls_info_crl_fresh_until(tls[0]), now + 86400 + 3600);
    assert_int_equal(sd_tls_info_crl_fresh_until(NULL), 0);
    assert_int_equal(sd_tls_info_certs(NULL, lc, NULL, NULL), 0);

    /* /metrics: the server certificate, the chain built from the store (the
     * CA), the CA, and the CRL. */
    assert_int_equal(sd_admin_metrics(f->st, &g, &f->out), 0);
    text = f->out.data;
    s = strstr(text, "steeldoor_certificate_not_after_timestamp_seconds{listener=\"admin\","
                     "role=\"server\",subject=\"CN=admin.example.org\",serial=\"1234AB\",sha256=\"");
    if (s == NULL)
        fail_msg("no server certificate series:\n%s", text);
    {
        /* notAfter was set from the clock when the certificate was made. */
        long long v = strtoll(strchr(s, '}') + 2, NULL, 10);
        assert_true(v >= now + 86400L * 10 && v <= now + 86400L * 10 + 60);
    }
    assert_non_null(strstr(text, "role=\"ca\",subject=\"CN=test admin CA\",serial=\"01\""));
    snprintf(line, sizeof(line),
             "steeldoor_crl_next_update_timestamp_seconds{listener=\"admin\",issuer=\"CN=test "
             "admin CA\",file=\"%s/ca.crl\"} %lld", dir, (long long)(now + 86400));
    expect_line(text, line);
    check_families(text);
    check_with_tools(text);

    /* /status: the same, as JSON. */
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_status(f->st, &g, now * 1000, &f->out), 0);
    j = parse_json(&f->out);
    x = json_array_get(json_object_get(j, "listeners"), 0);
    assert_true(json_is_true(json_object_get(x, "tls")));
    assert_int_equal(json_integer_value(json_object_get(x, "allow_rules")), 1);
    assert_int_equal(json_integer_value(json_object_get(x, "crls")), 1);
    c = json_array_get(json_object_get(x, "certificates"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "role")), "server");
    assert_string_equal(json_string_value(json_object_get(c, "subject")), "CN=admin.example.org");
    assert_string_equal(json_string_value(json_object_get(c, "issuer")), "CN=test admin CA");
    assert_string_equal(json_string_value(json_object_get(c, "serial")), "1234AB");
    assert_int_equal(strlen(json_string_value(json_object_get(c, "sha256"))), 64);
    assert_non_null(json_string_value(json_object_get(c, "not_after")));
    c = json_array_get(json_object_get(x, "crl_files"), 0);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "issuer")), "CN=test admin CA");
    assert_non_null(strstr(json_string_value(json_object_get(c, "file")), "ca.crl"));
    json_decref(j);

    /* /readyz now: the certificates are fine. In 40 days: the server
     * certificate and the CA have expired, and the CRL is stale. */
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_readyz(f->st, &g, now * 1000, &f->out, &ready), 0);
    j = parse_json(&f->out);
    assert_true(json_is_true(json_object_get(check_named(j, "certificates"), "ok")));
    json_decref(j);
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_readyz(f->st, &g, (now + 86400L * 40) * 1000, &f->out, &ready),
                     0);
    j = parse_json(&f->out);
    assert_int_equal(ready, 0);
    c = check_named(j, "certificates");
    assert_true(json_is_false(json_object_get(c, "ok")));
    s = json_string_value(json_object_get(c, "detail"));
    assert_non_null(strstr(s, "server certificate CN=admin.example.org expired"));
    assert_non_null(strstr(s, "no CA certificate of"));
    assert_non_null(strstr(s, "past its nextUpdate"));
    /* backends: the admin listener has no target */
    assert_true(json_is_true(json_object_get(check_named(j, "backends"), "ok")));
    json_decref(j);
    /* Only the CRL stale (2 days on, within the certificates' lives). */
    sd_admin_out_fini(&f->out);
    assert_int_equal(sd_admin_readyz(f->st, &g, (now + 86400L * 2) * 1000, &f->out, &ready),
                     0);
    j = parse_json(&f->out);
    s = json_string_value(json_object_get(check_named(j, "certificates"), "detail"));
    assert_non_null(strstr(s, "past its nextUpdate"));
    assert_null(strstr(s, "expired"));
    json_decref(j);

    sd_tls_free(tls[0]);
    sd_config_free(g.cfg);
    sd_files_free(files);
    X509_CRL_free(crl);
    X509_free(ca);
    X509_free(srv);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(key);
    path_of(p, sizeof(p), "ca.crt");
    unlink(p);
    path_of(p, sizeof(p), "server.crt");
    unlink(p);
    path_of(p, sizeof(p), "server.key");
    unlink(p);
    path_of(p, sizeof(p), "ca.crl");
    unlink(p);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_sums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_label_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_no_reload_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test_setup_teardown(test_tls_info, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
