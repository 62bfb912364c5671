/* Unit tests for the one table of configuration keys (config_keys.c) and
 * what is derived from it: the flag parser, the replay of a saved command
 * line at reload (sd_gen_parse), `serve --help`, and docs/config.md, which
 * must document every key of the table (with its default) and name no key
 * the table lacks. Run from the source tree (make unit does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/cli.h"
#include "sd/config.h"
#include "sd/config_keys.h"
#include "sd/files.h"
#include "sd/gen.h"
#include "sd/http_ident.h"

/* ------------------------------------------------------------ the table */

static void test_table_is_consistent(void **state)
{
    size_t i, j;

    (void)state;
    assert_true(sd_config_nkeys >= 30);
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];

        assert_non_null(k->name);
        assert_non_null(k->help);
        assert_true(k->where != 0);
        assert_true(k->group < SD_GROUP_COUNT_);
        if (k->list) /* a list is added to, never stored at an offset */
            assert_non_null(k->set);
        /* a second spelling is a switch's: a bool's, or one that sets a
         * value of another type (--http is mode: http) */
        if (k->flag != NULL)
            assert_true(k->type == SD_KT_BOOL || k->flag_value != NULL);
        if (k->flag_value != NULL)
            assert_non_null(k->flag);
        if (k->type == SD_KT_BOOL || k->flag_value != NULL) /* a switch takes no value */
            assert_null(k->metavar);
        else if ((k->where & SD_KEY_FLAG) && strcmp(k->name, "help") != 0 &&
                 strcmp(k->name, "check") != 0) /* the two switches of their own */
            if (k->metavar == NULL)
                fail_msg("flag --%s takes a value but has no metavar", k->name);
        for (j = i + 1; j < sd_config_nkeys; j++) {
            const struct sd_config_key *o = &sd_config_keys[j];
            if ((k->where & o->where & SD_KEY_YAML) && k->scope == o->scope &&
                strcmp(k->name, o->name) == 0)
                fail_msg("YAML key '%s' is declared twice", k->name);
            if ((k->where & o->where & SD_KEY_FLAG) &&
                strcmp(sd_config_key_flag_name(k), sd_config_key_flag_name(o)) == 0)
                fail_msg("flag --%s is declared twice", sd_config_key_flag_name(k));
        }
    }
    /* each HTTP-only key has its own bit of sd_listener_conf.http_given */
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        if (k->http_only == 0)
            continue;
        assert_int_equal(k->scope, SD_SCOPE_LISTENER);
        assert_int_equal(k->http_only & (k->http_only - 1), 0);
        for (j = i + 1; j < sd_config_nkeys; j++)
            assert_int_equal(k->http_only & sd_config_keys[j].http_only, 0);
    }
    assert_ptr_equal(sd_config_key_flag("http"), sd_config_key_yaml("mode", SD_SCOPE_LISTENER));
    assert_null(sd_config_key_flag("mode"));
    assert_non_null(sd_config_key_flag("no-watch"));
    assert_ptr_equal(sd_config_key_flag("no-watch"), sd_config_key_yaml("watch", SD_SCOPE_PROCESS));
    assert_null(sd_config_key_flag("watch"));
    assert_null(sd_config_key_flag("listeners"));
    assert_null(sd_config_key_yaml("config", SD_SCOPE_PROCESS));
    assert_null(sd_config_key_yaml("listen", SD_SCOPE_PROCESS));
}

/* Each written default is what a config holds when the key is absent
 * (sd_config_new, sd_config_add_listener): applying it changes nothing. */
static void test_defaults_are_the_defaults(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        struct sd_config *fresh = sd_config_new(), *set = sd_config_new();
        struct sd_err err;
        const char *a, *b;

        assert_non_null(fresh);
        assert_non_null(set);
        assert_non_null(sd_config_add_listener(fresh, &err));
        assert_non_null(sd_config_add_listener(set, &err));
        if (k->def == NULL || k->type == SD_KT_SPECIAL)
            goto next;
        if (sd_config_key_apply(k, set, &set->listeners[0], k->def, k->name, &err) != 0)
            fail_msg("the default of %s, '%s', is refused: %s", k->name, k->def, err.msg);
        a = k->scope == SD_SCOPE_LISTENER ? (const char *)&fresh->listeners[0]
                                          : (const char *)fresh;
        b = k->scope == SD_SCOPE_LISTENER ? (const char *)&set->listeners[0]
                                          : (const char *)set;
        if (k->set == NULL) {
            if (memcmp(a + k->offset, b + k->offset, sizeof(uint32_t)) != 0)
                fail_msg("the default of %s, '%s', is not the value a config starts with",
                         k->name, k->def);
        } else if (strcmp(k->name, "max-conns") == 0) {
            assert_int_equal(set->max_conns, fresh->max_conns);
        } else if (strcmp(k->name, "allow-all") == 0) {
            assert_null(set->listeners[0].policy);
        } else if (strcmp(k->name, "mode") == 0) {
            assert_int_equal(set->listeners[0].mode, fresh->listeners[0].mode);
        } else if (strcmp(k->name, "listen-mode") == 0) {
            assert_int_equal(set->listeners[0].listen_mode, fresh->listeners[0].listen_mode);
        } else if (strcmp(k->name, "http-headers") == 0) {
            assert_int_equal(set->listeners[0].http_headers, fresh->listeners[0].http_headers);
        } else {
            fail_msg("%s has a default and a setter this test does not know", k->name);
        }
next:
        sd_config_free(fresh);
        sd_config_free(set);
    }
}

/* ------------------------------------------------ flags, saved, replayed */

static int parse(char **argv, int argc, struct sd_source **src, struct sd_err *err)
{
    *src = sd_gen_source_new((size_t)argc);
    assert_non_null(*src);
    return sd_cli_serve_parse(argc, argv, *src, err);
}

static void test_flags_replayed_without_getopt(void **state)
{
    char *argv[] = {
        "serve", "--listen", "127.0.0.1:8443", "--target", "unix:/run/app.sock",
        "--cert", "s.crt", "--key", "s.key", "--cacert", "ca.pem",
        "--allow-uri", "spiffe://example.org/a", "--allow-uri", "spiffe://example.org/b",
        "--crl", "a.crl", "--crl", "b.crl", "--crl-grace", "1h", "--verify-depth", "5",
        "--proxy-protocol", "--name", "api", "--handshake-timeout", "2s",
        "--connect-timeout", "3s", "--idle-timeout", "4s", "--session-lifetime", "0",
        "--workers", "2", "--drain-timeout", "9s", "--max-conns", "77", "--no-watch",
        "--keep-revoked-connections", "--expiry-warning", "1d", "--user", "nobody",
        "--http", "--http-headers", "xfcc, x-forwarded", "--backend-idle-timeout", "700ms",
        "--backend-pool-size", "0",
    };
    int argc = (int)(sizeof(argv) / sizeof(argv[0]));
    struct sd_source *src;
    struct sd_files *files = sd_files_new();
    struct sd_config *cfg;
    struct sd_listener_conf *l;
    struct sd_err err;
    int usage, round;

    (void)state;
    assert_non_null(files);
    if (parse(argv, argc, &src, &err) != 0)
        fail_msg("%s", err.msg);
    assert_null(src->config);
    /* every flag was saved, in order, with its value as text */
    assert_int_equal(src->nsettings, 28);
    assert_string_equal(src->settings[0].key->name, "listen");
    assert_string_equal(src->settings[0].value, "127.0.0.1:8443");
    /* twice: at start, and again as a reload (and every worker) does */
    for (round = 0; round < 2; round++) {
        cfg = sd_gen_parse(src, files, &usage, &err);
        if (cfg == NULL)
            fail_msg("%s", err.msg);
        assert_int_equal(cfg->nlisteners, 1);
        l = &cfg->listeners[0];
        assert_string_equal(l->listen, "127.0.0.1:8443");
        assert_string_equal(l->target, "unix:/run/app.sock");
        assert_string_equal(l->cert, "s.crt");
        assert_string_equal(l->key, "s.key");
        assert_string_equal(l->cacert, "ca.pem");
        assert_string_equal(l->name, "api");
        assert_int_equal(l->ncrls, 2);
        assert_string_equal(l->crls[1], "b.crl");
        assert_int_equal(l->crl_grace_s, 3600);
        assert_int_equal(l->verify_depth, 5);
        assert_int_equal(l->proxy_protocol, 1);
        assert_int_equal(l->handshake_timeout_ms, 2000);
        assert_int_equal(l->connect_timeout_ms, 3000);
        assert_int_equal(l->idle_timeout_ms, 4000);
        assert_int_equal(l->session_lifetime_ms, 0);
        assert_int_equal(cfg->workers, 2);
        assert_int_equal(cfg->drain_timeout_ms, 9000);
        assert_int_equal(cfg->max_conns, 77);
        assert_int_equal(cfg->max_conns_set, 1);
        assert_int_equal(cfg->watch, 0);
        assert_int_equal(cfg->close_revoked, 0);
        assert_int_equal(cfg->expiry_warning_s, 86400);
        assert_string_equal(cfg->user, "nobody");
        assert_int_equal(l->mode, SD_MODE_HTTP);
        assert_int_equal(l->http_headers, SD_HTTP_H_XFCC | SD_HTTP_H_XFF | SD_HTTP_H_XFP);
        assert_int_equal(l->backend_idle_timeout_ms, 700);
        assert_int_equal(l->backend_pool_size, 0);
        assert_null(cfg->source);
        sd_config_free(cfg);
    }
    sd_gen_source_free(src);
    sd_files_free(files);
}

/* --config: the file, then the process flags over it; the file is read
 * again (through a new snapshot) on each build. */
static void test_config_file_with_process_overrides(void **state)
{
    char path[64] = "/tmp/sd_test_keys_XXXXXX";
    char *argv[] = { "serve", "--config", path, "--workers", "3", "--no-watch",
                     "--max-conns", "5" };
    const char *text = "workers: 2\nmax-conns: 9\nexpiry-warning: 2d\nlisteners:\n"
                       "  - listen: 127.0.0.1:9443\n    target: 127.0.0.1:9080\n"
                       "    cert: s.crt\n    key: s.key\n    cacert: ca.pem\n"
                       "    allow-all: true\n";
    struct sd_source *src;
    struct sd_files *files;
    struct sd_config *cfg;
    struct sd_err err;
    int fd, usage;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    if (parse(argv, 8, &src, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(src->config, path);
    files = sd_files_new();
    assert_non_null(files);
    cfg = sd_gen_parse(src, files, &usage, &err);
    unlink(path);
    if (cfg == NULL)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->max_conns, 5);
    assert_int_equal(cfg->watch, 0);
    assert_int_equal(cfg->expiry_warning_s, 2 * 86400);
    assert_string_equal(cfg->source, path);
    sd_config_free(cfg);
    /* the file gone: a reload now fails, naming it */
    sd_files_free(files);
    files = sd_files_new();
    assert_non_null(files);
    assert_null(sd_gen_parse(src, files, &usage, &err));
    assert_non_null(strstr(err.msg, path));
    sd_files_free(files);
    sd_gen_source_free(src);
}

static void expect_usage_error(char **argv, int argc, const char *needle)
{
    struct sd_source *src;
    struct sd_err err;

    memset(&err, 0, sizeof(err));
    assert_int_equal(parse(argv, argc, &src, &err), -1);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err.msg, needle);
    sd_gen_source_free(src);
}

static void test_flag_errors(void **state)
{
    char *twice[] = { "serve", "--idle-timeout", "1s", "--idle-timeout", "2s" };
    char *no_watch_twice[] = { "serve", "--no-watch", "--no-watch" };
    char *bad[] = { "serve", "--verify-depth", "17" };
    char *unknown[] = { "serve", "--colour", "red" };
    char *yaml_only[] = { "serve", "--listeners", "x" };
    char *yaml_spelling[] = { "serve", "--watch" };
    char *mixed[] = { "serve", "--config", "x.yaml", "--target", "127.0.0.1:1" };
    char *weak[] = { "serve", "--insecure" };
    char *extra[] = { "serve", "--allow-all", "stray" };
    char *lists[] = { "serve", "--crl", "a", "--crl", "b", "--allow-cn", "a",
                      "--allow-cn", "b" };
    struct sd_source *src;
    struct sd_err err;

    (void)state;
    expect_usage_error(twice, 5, "--idle-timeout is given more than once");
    expect_usage_error(no_watch_twice, 3, "--no-watch is given more than once");
    expect_usage_error(bad, 3, "--verify-depth: '17' must be a whole number from 0 to 16");
    expect_usage_error(unknown, 3, "unknown option --colour");
    expect_usage_error(yaml_only, 3, "unknown option --listeners");
    expect_usage_error(yaml_spelling, 2, "unknown option --watch");
    expect_usage_error(mixed, 5, "--config cannot be combined with listener flags");
    expect_usage_error(weak, 2, "no optional client authentication");
    expect_usage_error(extra, 3, "unexpected argument 'stray'");
    assert_int_equal(parse(lists, 9, &src, &err), 0);
    assert_int_equal(src->nsettings, 4);
    sd_gen_source_free(src);
}

/* The flags of HTTP mode: --http is mode: http; its settings are refused
 * by validation without it, naming the flag and the switch, also when
 * they repeat the default (written, so expected to do something). */
static void test_http_flags(void **state)
{
    static const char *const base[] = {
        "serve", "--listen", "127.0.0.1:8443", "--target", "127.0.0.1:8080", "--cert", "s.crt",
        "--key", "s.key", "--cacert", "ca.pem", "--allow-all",
    };
    static const struct {
        const char *a, *b, *c, *want; /* extra flags; NULL want: accepted */
    } cases[] = {
        { "--http", NULL, NULL, NULL },
        { "--http-headers", "xfcc", NULL, "--http-headers needs --http" },
        { "--http-headers", "rfc9440", NULL, "--http-headers needs --http" },
        { "--backend-pool-size", "16", NULL, "--backend-pool-size needs --http" },
        { "--backend-idle-timeout", "1s", NULL, "--backend-idle-timeout needs --http" },
        { "--backend-pool-size", "4", "--http", NULL },
        { "--proxy-protocol", "--http", NULL, NULL },
    };
    struct sd_files *files = sd_files_new();
    size_t i, j;

    (void)state;
    assert_non_null(files);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[16];
        int argc = 0, usage;
        struct sd_source *src;
        struct sd_config *cfg;
        struct sd_err err;

        for (j = 0; j < sizeof(base) / sizeof(base[0]); j++)
            argv[argc++] = (char *)(uintptr_t)base[j];
        if (cases[i].a != NULL)
            argv[argc++] = (char *)(uintptr_t)cases[i].a;
        if (cases[i].b != NULL)
            argv[argc++] = (char *)(uintptr_t)cases[i].b;
        if (cases[i].c != NULL)
            argv[argc++] = (char *)(uintptr_t)cases[i].c;
        if (parse(argv, argc, &src, &err) != 0)
            fail_msg("case %zu: %s", i, err.msg);
        cfg = sd_gen_parse(src, files, &usage, &err);
        if (cases[i].want == NULL) {
            if (cfg == NULL)
                fail_msg("case %zu: %s", i, err.msg);
            assert_int_equal(cfg->listeners[0].mode, SD_MODE_HTTP);
        } else {
            assert_null(cfg);
            if (strstr(err.msg, cases[i].want) == NULL)
                fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, cases[i].want);
        }
        sd_config_free(cfg);
        sd_gen_source_free(src);
    }
    sd_files_free(files);
}

static void test_http_flag_errors(void **state)
{
    char *twice[] = { "serve", "--http", "--http" };
    char *value[] = { "serve", "--http=yes" };
    char *bad_set[] = { "serve", "--http", "--http-headers", "client-cert,bogus" };
    char *pool[] = { "serve", "--backend-pool-size", "1025" };
    char *idle[] = { "serve", "--backend-idle-timeout", "0" };
    char *mode[] = { "serve", "--mode", "http" };

    (void)state;
    expect_usage_error(twice, 3, "--http is given more than once");
    expect_usage_error(value, 2, "--http=yes");
    expect_usage_error(bad_set, 4, "--http-headers: unknown HTTP header 'bogus'");
    expect_usage_error(bad_set, 4, "xfcc");
    expect_usage_error(pool, 3, "--backend-pool-size: '1025' must be a whole number from 0 "
                                "to 1024");
    expect_usage_error(idle, 3, "--backend-idle-timeout: '0' is out of range");
    expect_usage_error(mode, 3, "unknown option --mode");
}

/* Every flag of the table is known to getopt, with or without a value as
 * the table says. */
static void test_every_flag_parses(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        char flag[64], *argv[3];
        struct sd_source *src;
        struct sd_err err;
        int argc = 2, rc;

        if (!(k->where & SD_KEY_FLAG) || strcmp(k->name, "help") == 0)
            continue;
        snprintf(flag, sizeof(flag), "--%s", sd_config_key_flag_name(k));
        argv[0] = k->connector == SD_KEY_CONNECT_ONLY ? "connect" : "serve";
        argv[1] = flag;
        argv[2] = "x";
        if (k->type == SD_KT_UINT)
            argv[2] = "1";
        else if (k->type == SD_KT_DURATION || k->type == SD_KT_DURATION0 ||
                 k->type == SD_KT_SECONDS)
            argv[2] = "1s";
        else if (strcmp(k->name, "allow-uri") == 0 || strcmp(k->name, "verify-uri") == 0)
            argv[2] = "spiffe://example.org/a";
        else if (strcmp(k->name, "listen-mode") == 0)
            argv[2] = "0660";
        else if (strcmp(k->name, "allow-spki") == 0 || strcmp(k->name, "verify-spki") == 0)
            argv[2] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        else if (strcmp(k->name, "http-headers") == 0)
            argv[2] = "xfcc";
        if (k->metavar != NULL)
            argc = 3;
        if (k->connector == SD_KEY_CONNECT_ONLY) {
            src = sd_gen_source_new(3);
            assert_non_null(src);
            rc = sd_cli_connect_parse(argc, argv, src, &err);
            /* and serve refuses it: it is not a listener's */
            {
                struct sd_source *other = sd_gen_source_new(3);
                struct sd_err e2;
                assert_non_null(other);
                assert_int_not_equal(sd_cli_serve_parse(argc, argv, other, &e2), 0);
                sd_gen_source_free(other);
            }
        } else {
            rc = parse(argv, argc, &src, &err);
        }
        if (rc != 0)
            fail_msg("%s: %s", flag, err.msg);
        assert_int_equal(src->nsettings, k->type == SD_KT_SPECIAL ? 0 : 1);
        sd_gen_source_free(src);
    }
}

static void test_help_lists_every_flag(void **state)
{
    char *text = NULL, *ctext = NULL;
    size_t len = 0, clen = 0, i;
    FILE *f = open_memstream(&text, &len), *cf = open_memstream(&ctext, &clen);

    (void)state;
    assert_non_null(f);
    assert_non_null(cf);
    sd_cli_serve_usage(f);
    fclose(f);
    sd_cli_connect_usage(cf);
    fclose(cf);
    assert_non_null(strstr(ctext, "Usage: steeldoor connect --listen"));
    assert_null(strstr(ctext, "  --config FILE"));
    assert_null(strstr(ctext, "--allow-uri"));
    /* the shared keys read from the client's side in connect --help */
    assert_non_null(strstr(ctext, "our client certificate chain"));
    assert_non_null(strstr(ctext, "our client private key"));
    assert_null(strstr(ctext, "server certificate chain"));
    assert_null(strstr(ctext, "server private key"));
    assert_null(strstr(ctext, "client certificates must chain"));
    assert_null(strstr(ctext, "accept TLS on"));
    assert_null(strstr(ctext, "Identity to the backend"));
    assert_non_null(strstr(text, "Usage: steeldoor serve --listen ADDR:PORT"));
    assert_non_null(strstr(text, "DUR is 500ms, 10s, 5m, 1h or a number of seconds."));
    assert_non_null(strstr(text, "  -h, --help "));
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        char want[96];

        /* a connect-only text on a key connect does not have is dead text */
        if (k->help_connect != NULL && k->connector != SD_KEY_BOTH_ROLES)
            fail_msg("--%s: help_connect on a key that is not in both roles", k->name);
        if (!(k->where & SD_KEY_FLAG))
            continue;
        snprintf(want, sizeof(want), "  %s--%s%s%s ", strcmp(k->name, "help") == 0 ? "-h, " : "",
                 sd_config_key_flag_name(k), k->metavar ? " " : "",
                 k->metavar ? k->metavar : "");
        if (k->connector == SD_KEY_CONNECT_ONLY) {
            if (strstr(text, want) != NULL || strstr(ctext, want) == NULL)
                fail_msg("'%s' must be in connect --help only", want);
            continue;
        }
        if (k->connector == SD_KEY_BOTH_ROLES && strstr(ctext, want) == NULL)
            fail_msg("connect --help lacks '%s'", want);
        if (strstr(text, want) == NULL)
            fail_msg("--help lacks '%s'", want);
        if (k->metavar != NULL && k->def != NULL) {
            snprintf(want, sizeof(want), "(default %s)", k->def);
            if (strstr(text, want) == NULL)
                fail_msg("--help lacks the default of --%s, '%s'", k->name, want);
        }
    }
    for (i = 0; text[i] != '\0';) {
        size_t n = strcspn(text + i, "\n");
        /* the Usage lines are written by hand; generated lines fit 80 */
        if (n > 80 && strncmp(text + i, "Usage", 5) != 0 &&
            strncmp(text + i, "       steeldoor", 16) != 0 &&
            strncmp(text + i, "                       --cert", 29) != 0)
            fail_msg("--help line longer than 80: %.*s", (int)n, text + i);
        i += n + (text[i + n] != '\0');
    }
    for (i = 0; ctext[i] != '\0';) {
        size_t n = strcspn(ctext + i, "\n");
        if (n > 80 && strncmp(ctext + i, "Usage", 5) != 0 && ctext[i] != ' ')
            fail_msg("connect --help line longer than 80: %.*s", (int)n, ctext + i);
        if (n > 80 && ctext[i] == ' ' && strncmp(ctext + i, "                         ", 25) != 0)
            fail_msg("connect --help line longer than 80: %.*s", (int)n, ctext + i);
        i += n + (ctext[i + n] != '\0');
    }
    free(text);
    free(ctext);
}

/* ------------------------------------------------------ docs/config.md */

#define DOC "docs/config.md"

struct doc {
    char *text;
};

static void doc_load(struct doc *d)
{
    FILE *f = fopen(DOC, "r");
    long n;

    if (f == NULL)
        fail_msg("cannot open %s (unit tests run from the source tree)", DOC);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0 && n < (1L << 20));
    rewind(f);
    d->text = calloc(1, (size_t)n + 1);
    assert_non_null(d->text);
    assert_int_equal(fread(d->text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

/* The section ("## ...") a position of the doc is in. */
static enum sd_key_scope doc_scope(const char *text, const char *at, int *known)
{
    const char *p = text, *last = NULL;

    while ((p = strstr(p, "\n## ")) != NULL && p < at)
        last = p++;
    *known = 1;
    if (last != NULL && strncmp(last, "\n## Top level", 13) == 0)
        return SD_SCOPE_PROCESS;
    if (last != NULL && (strncmp(last, "\n## Listener", 12) == 0 ||
                         strncmp(last, "\n## Connector", 13) == 0))
        return SD_SCOPE_LISTENER;
    *known = 0;
    return SD_SCOPE_PROCESS;
}

/* The table row of YAML key name in the doc's section for scope, or NULL. */
static const char *doc_row(const struct doc *d, const char *name, enum sd_key_scope scope)
{
    char want[96];
    const char *p = d->text;

    snprintf(want, sizeof(want), "\n| `%s` |", name);
    while ((p = strstr(p, want)) != NULL) {
        int known;
        if (doc_scope(d->text, p, &known) == scope && known)
            return p + 1;
        p++;
    }
    return NULL;
}

static void test_doc_documents_every_key(void **state)
{
    struct doc d;
    size_t i;
    int bad = 0;

    (void)state;
    doc_load(&d);
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        const char *row;
        char want[96];

        if (k->where & SD_KEY_YAML) {
            row = doc_row(&d, k->name, k->scope);
            if (row == NULL) {
                print_error("%s: no row for %s key `%s` in its section\n", DOC,
                            k->scope == SD_SCOPE_LISTENER ? "listener" : "top-level", k->name);
                bad++;
                continue;
            }
            if (k->def != NULL) {
                /* | `key` | type | default | meaning |: the third cell */
                const char *c = row;
                size_t n, cell;
                for (cell = 0; cell < 2 && c != NULL; cell++)
                    c = strchr(c + 1, '|');
                assert_non_null(c);
                n = strcspn(c + 1, "|\n");
                snprintf(want, sizeof(want), "`%s`", k->def);
                if (n >= sizeof(want) * 2 || strstr(c + 1, want) == NULL ||
                    (size_t)(strstr(c + 1, want) - (c + 1)) >= n) {
                    print_error("%s: the default of `%s` is not documented as %s\n", DOC,
                                k->name, want);
                    bad++;
                }
            }
        }
        /* a flag whose word is not a YAML key is documented as a flag */
        if ((k->where & SD_KEY_FLAG) &&
            (!(k->where & SD_KEY_YAML) || k->flag != NULL)) {
            snprintf(want, sizeof(want), "`--%s", sd_config_key_flag_name(k));
            if (strstr(d.text, want) == NULL) {
                print_error("%s: flag %s` is not documented\n", DOC, want);
                bad++;
            }
        }
    }
    free(d.text);
    assert_int_equal(bad, 0);
}

static void test_doc_names_no_unknown_key(void **state)
{
    struct doc d;
    const char *p;
    int bad = 0, rows = 0;

    (void)state;
    doc_load(&d);
    /* every key row of the key tables */
    for (p = d.text; (p = strstr(p, "\n| `")) != NULL; p++) {
        char name[64];
        size_t n = strcspn(p + 4, "`");
        int known;
        enum sd_key_scope scope = doc_scope(d.text, p, &known);

        if (n == 0 || n >= sizeof(name))
            continue;
        memcpy(name, p + 4, n);
        name[n] = '\0';
        if (strncmp(name, "--", 2) == 0)
            continue; /* flags: below */
        rows++;
        if (!known || sd_config_key_yaml(name, scope) == NULL) {
            print_error("%s: documents key `%s`, which %s\n", DOC, name,
                        known ? "the table does not have at this level"
                              : "is in a table outside 'Top level' and 'Listener'");
            bad++;
        }
    }
    /* every flag named anywhere: `--word` */
    for (p = d.text; (p = strstr(p, "`--")) != NULL; p++) {
        char name[64];
        size_t n = strspn(p + 3, "abcdefghijklmnopqrstuvwxyz0123456789-");

        if (n == 0 || n >= sizeof(name))
            continue;
        memcpy(name, p + 3, n);
        name[n] = '\0';
        if (sd_config_key_flag(name) == NULL) {
            print_error("%s: names flag --%s, which the table does not have\n", DOC, name);
            bad++;
        }
    }
    free(d.text);
    assert_true(rows >= 28);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_consistent),
        cmocka_unit_test(test_defaults_are_the_defaults),
        cmocka_unit_test(test_flags_replayed_without_getopt),
        cmocka_unit_test(test_config_file_with_process_overrides),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_http_flags),
        cmocka_unit_test(test_http_flag_errors),
        cmocka_unit_test(test_every_flag_parses),
        cmocka_unit_test(test_help_lists_every_flag),
        cmocka_unit_test(test_doc_documents_every_key),
        cmocka_unit_test(test_doc_names_no_unknown_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
