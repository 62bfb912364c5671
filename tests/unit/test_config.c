/* Unit tests for config.c and config_yaml.c: values, validation, the YAML
 * loader, and the refusal of anything that would weaken client auth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd/config.h"
#include "sd/files.h"
#include "sd/http_ident.h"

static char *write_tmp(const char *text)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/sd_test_cfg_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Loads text as a YAML config; returns the loader's result, err filled. */
static int load(const char *text, struct sd_config **out, struct sd_err *err)
{
    char *path = write_tmp(text);
    struct sd_config *cfg = sd_config_new();
    struct sd_files *files = sd_files_new();
    int rc;

    assert_non_null(cfg);
    assert_non_null(files);
    rc = sd_config_load_yaml(cfg, path, files, err);
    sd_files_free(files);
    if (rc == 0)
        rc = sd_config_validate(cfg, err);
    unlink(path);
    *out = cfg;
    return rc;
}

static const char good[] =
    "workers: 3\n"
    "drain-timeout: 2s\n"
    "max-conns: 500\n"
    "listeners:\n"
    "  - name: a\n"
    "    listen: 127.0.0.1:8443\n"
    "    target: unix:/run/app.sock\n"
    "    cert: s.crt\n"
    "    key: s.key\n"
    "    cacert: ca.crt\n"
    "    allow-all: true\n"
    "    idle-timeout: 5m\n"
    "  - listen: '[::1]:9443'\n"
    "    target: 127.0.0.1:8080\n"
    "    cert: s.crt\n"
    "    key: s.key\n"
    "    cacert: ca.crt\n"
    "    allow-all: yes\n"
    "    handshake-timeout: 500ms\n";

static void test_yaml_good(void **state)
{
    struct sd_config *cfg;
    struct sd_err err;

    (void)state;
    assert_int_equal(load(good, &cfg, &err), 0);
    assert_int_equal(cfg->nlisteners, 2);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->drain_timeout_ms, 2000);
    assert_int_equal(cfg->max_conns, 500);
    assert_string_equal(cfg->listeners[0].name, "a");
    assert_int_equal(cfg->listeners[0].idle_timeout_ms, 300000);
    assert_int_equal(cfg->listeners[0].target_addr.ss.ss_family, AF_UNIX);
    /* the name defaults to the listen address */
    assert_string_equal(cfg->listeners[1].name, "[::1]:9443");
    assert_int_equal(cfg->listeners[1].handshake_timeout_ms, 500);
    assert_int_equal(cfg->listeners[1].connect_timeout_ms, SD_DEFAULT_CONNECT_TIMEOUT_MS);
    sd_config_free(cfg);
}

static void expect_error(const char *text, const char *needle)
{
    struct sd_config *cfg;
    struct sd_err err;

    memset(&err, 0, sizeof(err));
    assert_int_equal(load(text, &cfg, &err), -1);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err.msg, needle);
    /* every loader error names the file */
    if (strstr(err.msg, "/tmp/sd_test_cfg_") == NULL)
        fail_msg("error '%s' does not name the file", err.msg);
    sd_config_free(cfg);
}

static void test_yaml_errors(void **state)
{
    (void)state;
    expect_error("listeners: [\n", "YAML error");
    expect_error("workers: 2\n", "no 'listeners'");
    expect_error("bogus: 1\nlisteners: []\n", "unknown key 'bogus'");
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    colour: red\n", "unknown listener key 'colour'");
    expect_error("workers: 0\nlisteners: []\n", "workers");
    expect_error("workers: lots\nlisteners: []\n", "workers");
    expect_error("listeners: []\n", "no listener");
    expect_error("- a\n- b\n", "mapping");
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    idle-timeout: soon\n", "not a duration");
    /* a listener missing a piece, and one without an allow rule */
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n", "cacert");
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n", "no allow rule");
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: false\n", "no allow rule");
    expect_error("listeners:\n  - listen: 127.0.0.1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n", "HOST:PORT");
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n"
                 "  - listen: 127.0.0.1:1\n    name: 127.0.0.1:1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n", "used twice");
    /* two listeners on one address would share connections at random */
    expect_error("listeners:\n  - listen: 127.0.0.1:1\n    name: x\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n"
                 "  - listen: 127.0.0.1:1\n    name: y\n    target: 127.0.0.1:3\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n", "both listen on");
}

/* An error that must name several things (the key and both lines). */
static void expect_error_all(const char *text, const char *const *needles)
{
    struct sd_config *cfg;
    struct sd_err err;
    size_t i;

    memset(&err, 0, sizeof(err));
    assert_int_equal(load(text, &cfg, &err), -1);
    for (i = 0; needles[i] != NULL; i++)
        if (strstr(err.msg, needles[i]) == NULL)
            fail_msg("error '%s' does not mention '%s'", err.msg, needles[i]);
    if (strstr(err.msg, "/tmp/sd_test_cfg_") == NULL)
        fail_msg("error '%s' does not name the file", err.msg);
    sd_config_free(cfg);
}

#define LISTENER_A                                                           \
    "  - name: a\n"                          /* listener on lines 2-8 */    \
    "    listen: 127.0.0.1:1\n"                                              \
    "    target: 127.0.0.1:2\n"                                              \
    "    cert: a\n"                                                          \
    "    key: b\n"                                                           \
    "    cacert: c\n"                                                        \
    "    allow-all: true\n"

/* A key given twice must never be applied twice (the last silently
 * winning): at the top level, in a listener, for list-valued keys, and for
 * neighbours of the same mistake (a repeated list entry, a second
 * document, two listeners with one name or address). */
static void test_yaml_duplicates(void **state)
{
    (void)state;
    /* top level: scalar keys, and 'listeners' itself */
    expect_error_all("workers: 1\nworkers: 2\nlisteners:\n" LISTENER_A,
                     (const char *const[]){ "line 2", "'workers'", "given twice",
                                            "line 1", NULL });
    expect_error_all("listeners:\n" LISTENER_A "drain-timeout: 2s\nlisteners:\n" LISTENER_A,
                     (const char *const[]){ "line 10", "'listeners'", "given twice",
                                            "line 1", NULL });
    expect_error_all("close-revoked: true\nlisteners:\n" LISTENER_A "close-revoked: false\n",
                     (const char *const[]){ "line 10", "'close-revoked'", "line 1", NULL });
    /* in a listener: the second 'cert' would replace the first */
    expect_error_all("listeners:\n" LISTENER_A "    cert: other\n",
                     (const char *const[]){ "line 9", "'cert'", "given twice", "line 5",
                                            NULL });
    /* quoting does not make it another key */
    expect_error_all("listeners:\n" LISTENER_A "    'key': other\n",
                     (const char *const[]){ "line 9", "'key'", "line 6", NULL });
    expect_error_all("listeners:\n" LISTENER_A "    allow-all: false\n",
                     (const char *const[]){ "line 9", "'allow-all'", "line 8", NULL });
    expect_error_all("listeners:\n" LISTENER_A "    idle-timeout: 1s\n    idle-timeout: 2s\n",
                     (const char *const[]){ "line 10", "'idle-timeout'", "line 9", NULL });
    /* list-valued keys: a scalar, then a list; a list, then a list */
    expect_error_all("listeners:\n  - name: a\n    listen: 127.0.0.1:1\n"
                     "    allow-uri: spiffe://x/a\n    allow-uri: [spiffe://x/b]\n",
                     (const char *const[]){ "line 5", "'allow-uri'", "given twice", "line 4",
                                            NULL });
    expect_error_all("listeners:\n  - name: a\n    crl: [a.crl]\n    crl:\n      - b.crl\n",
                     (const char *const[]){ "line 4", "'crl'", "line 3", NULL });
    /* an entry repeated within one list */
    expect_error_all("listeners:\n  - name: a\n    allow-dns:\n      - a.example\n"
                     "      - b.example\n      - a.example\n",
                     (const char *const[]){ "'allow-dns'", "'a.example' twice", "lines 4 and 6",
                                            NULL });
    /* a key in a listener and the same word at the top level are different
     * mappings: only the unknown key is refused, not a duplicate */
    expect_error("name: x\nlisteners:\n" LISTENER_A, "unknown key 'name'");
    /* a second document would be ignored */
    expect_error_all("listeners:\n" LISTENER_A "---\nworkers: 1\n",
                     (const char *const[]){ "line 9", "second YAML document", NULL });
    /* a NUL byte would cut the value short */
    expect_error_all("listeners:\n" LISTENER_A "    name2: \"x\\0y\"\n",
                     (const char *const[]){ "line 9", "NUL", NULL });
    /* two listeners with one name (given, or defaulted from 'listen') */
    expect_error_all("listeners:\n" LISTENER_A
                     "  - name: a\n    listen: 127.0.0.1:3\n    target: 127.0.0.1:2\n"
                     "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n",
                     (const char *const[]){ "'a'", "used twice", "lines 2 and 9", NULL });
    expect_error_all("listeners:\n"
                     "  - listen: 127.0.0.1:5\n    target: 127.0.0.1:2\n"
                     "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n"
                     "  - target: 127.0.0.1:2\n    name: 127.0.0.1:5\n    listen: 127.0.0.1:6\n"
                     "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n",
                     (const char *const[]){ "'127.0.0.1:5'", "used twice", "lines 2 and 9",
                                            NULL });
    /* two listeners on one address, however it is written */
    expect_error_all("listeners:\n" LISTENER_A
                     "  - name: b\n    target: 127.0.0.1:2\n    listen: 127.0.0.1:01\n"
                     "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n",
                     (const char *const[]){ "'a' (line 3)", "'b' (line 11)", "both listen on",
                                            NULL });
    expect_error_all("listeners:\n"
                     "  - {name: a, listen: '[::1]:7', target: 127.0.0.1:2, cert: a, key: b,"
                     " cacert: c, allow-all: true}\n"
                     "  - {name: b, listen: '[0:0:0:0:0:0:0:1]:7', target: 127.0.0.1:2,"
                     " cert: a, key: b, cacert: c, allow-all: true}\n",
                     (const char *const[]){ "'a' (line 2)", "'b' (line 3)", "both listen on",
                                            NULL });
    /* an alias repeats a whole listener */
    expect_error_all("listeners:\n  - &l {name: a, listen: 127.0.0.1:1, target: 127.0.0.1:2,"
                     " cert: a, key: b, cacert: c, allow-all: true}\n  - *l\n",
                     (const char *const[]){ "'a'", "used twice", NULL });
}

/* What the duplicate checks must not refuse. */
static void test_yaml_not_duplicates(void **state)
{
    struct sd_config *cfg;
    struct sd_err err;

    (void)state;
    /* an explicit document start and a bare trailing '---' */
    assert_int_equal(load("---\nlisteners:\n" LISTENER_A "---\n", &cfg, &err), 0);
    sd_config_free(cfg);
    /* the same value under different keys, and in two listeners */
    assert_int_equal(load("listeners:\n  - name: a\n    listen: 127.0.0.1:1\n"
                          "    target: 127.0.0.1:2\n    cert: x\n    key: x\n    cacert: x\n"
                          "    allow-uri: spiffe://x/a\n    allow-dns: a.example\n"
                          "    allow-cn: a.example\n"
                          "  - name: b\n    listen: 127.0.0.1:3\n"
                          "    target: 127.0.0.1:2\n    cert: x\n    key: x\n    cacert: x\n"
                          "    allow-uri: [spiffe://x/a]\n",
                          &cfg, &err), 0);
    assert_int_equal(cfg->nlisteners, 2);
    sd_config_free(cfg);
    /* one port on two addresses */
    assert_int_equal(load("listeners:\n" LISTENER_A
                          "  - name: b\n    listen: 127.0.0.2:1\n    target: 127.0.0.1:2\n"
                          "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n",
                          &cfg, &err), 0);
    sd_config_free(cfg);
}

/* The back door: no spelling of "optional client auth" or "plaintext" is
 * accepted, at the top level or in a listener. */
static void test_yaml_refuses_weakening(void **state)
{
    static const char *keys[] = { "client-auth: optional", "verify-client: optional",
                                  "verify: none", "plaintext: true", "insecure-skip-verify: true",
                                  "optional: true" };
    char text[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(text, sizeof(text),
                 "listeners:\n  - listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n"
                 "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n    %s\n", keys[i]);
        expect_error(text, "no optional client authentication");
        snprintf(text, sizeof(text), "%s\nlisteners: []\n", keys[i]);
        expect_error(text, "no optional client authentication");
    }
}

/* HTTP mode in the file: mode: http, its settings (http-headers as a
 * string or a list of words), their defaults; on a tcp listener the
 * settings are refused, never ignored; an unknown mode names the valid
 * ones. */
static void test_yaml_http_mode(void **state)
{
    static const char http[] =
        "listeners:\n"
        "  - name: h\n"
        "    listen: 127.0.0.1:8443\n"
        "    target: 127.0.0.1:8080\n"
        "    cert: s.crt\n"
        "    key: s.key\n"
        "    cacert: ca.crt\n"
        "    allow-all: true\n"
        "    mode: http\n"
        "    http-headers: [rfc9440, xfcc, x-forwarded-for]\n"
        "    backend-idle-timeout: 800ms\n"
        "    backend-pool-size: 0\n"
        "    proxy-protocol: true\n"
        "  - name: d\n"
        "    listen: 127.0.0.1:8444\n"
        "    target: 127.0.0.1:8080\n"
        "    cert: s.crt\n"
        "    key: s.key\n"
        "    cacert: ca.crt\n"
        "    allow-all: true\n"
        "    http-headers: 'xfcc , forwarded'\n"
        "    mode: http\n"
        "  - name: t\n"
        "    listen: 127.0.0.1:8445\n"
        "    target: 127.0.0.1:8080\n"
        "    cert: s.crt\n"
        "    key: s.key\n"
        "    cacert: ca.crt\n"
        "    allow-all: true\n"
        "    mode: tcp\n";
#define TCP_LISTENER                                                         \
    "listeners:\n  - name: t\n    listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n"     \
    "    cert: a\n    key: b\n    cacert: c\n    allow-all: true\n"
    struct sd_config *cfg;
    struct sd_err err;
    const struct sd_listener_conf *l;

    (void)state;
    if (load(http, &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg->nlisteners, 3);
    l = &cfg->listeners[0];
    assert_int_equal(l->mode, SD_MODE_HTTP);
    assert_int_equal(l->http_headers, SD_HTTP_H_CLIENT_CERT | SD_HTTP_H_CLIENT_CERT_CHAIN |
                                          SD_HTTP_H_XFCC | SD_HTTP_H_XFF);
    assert_int_equal(l->backend_idle_timeout_ms, 800);
    assert_int_equal(l->backend_pool_size, 0);
    assert_int_equal(l->proxy_protocol, 1); /* allowed: then no pooling */
    /* the order of keys does not matter: validation decides */
    l = &cfg->listeners[1];
    assert_int_equal(l->mode, SD_MODE_HTTP);
    assert_int_equal(l->http_headers, SD_HTTP_H_XFCC | SD_HTTP_H_FORWARDED);
    assert_int_equal(l->backend_idle_timeout_ms, SD_DEFAULT_BACKEND_IDLE_TIMEOUT_MS);
    assert_int_equal(l->backend_pool_size, SD_DEFAULT_BACKEND_POOL_SIZE);
    l = &cfg->listeners[2];
    assert_int_equal(l->mode, SD_MODE_TCP);
    assert_int_equal(l->http_headers, SD_HTTP_H_DEFAULT);
    assert_string_equal(sd_config_mode_name(cfg->listeners[0].mode), "http");
    assert_string_equal(sd_config_mode_name(cfg->listeners[2].mode), "tcp");
    sd_config_free(cfg);

    /* an empty list is none */
    if (load(TCP_LISTENER "    mode: http\n    http-headers: []\n", &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg->listeners[0].http_headers, 0);
    sd_config_free(cfg);

    expect_error(TCP_LISTENER "    mode: h2\n", "mode: 'h2' is not a mode (valid: tcp, http)");
    expect_error(TCP_LISTENER "    mode: [http]\n", "'mode' must have a single value");
    expect_error(TCP_LISTENER "    http-headers: xfcc\n",
                 "listener t: http-headers needs mode: http");
    expect_error(TCP_LISTENER "    mode: tcp\n    http-headers: rfc9440\n",
                 "http-headers needs mode: http");
    expect_error(TCP_LISTENER "    backend-pool-size: 16\n",
                 "backend-pool-size needs mode: http");
    expect_error(TCP_LISTENER "    backend-idle-timeout: 1.5s\n",
                 "backend-idle-timeout needs mode: http");
    expect_error(TCP_LISTENER "    mode: http\n    http-headers: [xfcc, bogus]\n",
                 "http-headers: unknown HTTP header 'bogus'");
    expect_error(TCP_LISTENER "    mode: http\n    http-headers: [xfcc, [a]]\n",
                 "'http-headers' must be a string or a list of words");
    expect_error(TCP_LISTENER "    mode: http\n    http-headers: ['xfcc,forwarded']\n",
                 "'http-headers' must be a string or a list of words");
    expect_error(TCP_LISTENER "    mode: http\n    http-headers: none,xfcc\n",
                 "none cannot be combined");
    expect_error(TCP_LISTENER "    mode: http\n    backend-pool-size: 1025\n",
                 "backend-pool-size: '1025' must be a whole number from 0 to 1024");
    expect_error(TCP_LISTENER "    mode: http\n    backend-idle-timeout: 0\n",
                 "backend-idle-timeout: '0' is out of range");
    expect_error(TCP_LISTENER "    mode: http\n    mode: tcp\n", "key 'mode' is given twice");
#undef TCP_LISTENER
}

static void test_durations(void **state)
{
    uint32_t ms = 0;
    struct sd_err err;

    (void)state;
    assert_int_equal(sd_config_parse_duration("x", "10", &ms, &err), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(sd_config_parse_duration("x", "250ms", &ms, &err), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(sd_config_parse_duration("x", "1.5s", &ms, &err), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(sd_config_parse_duration("x", "2m", &ms, &err), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(sd_config_parse_duration("x", "1h", &ms, &err), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(sd_config_parse_duration("x", "", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "-1s", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "0", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "10 s", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "25h", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "1e30", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "nan", &ms, &err), -1);
    assert_int_equal(sd_config_parse_duration("x", "3d", &ms, &err), -1);
}

static void test_uints(void **state)
{
    uint32_t v = 0;
    struct sd_err err;

    (void)state;
    assert_int_equal(sd_config_parse_uint("n", "7", 1, 10, &v, &err), 0);
    assert_int_equal(v, 7);
    assert_int_equal(sd_config_parse_uint("n", "0", 1, 10, &v, &err), -1);
    assert_int_equal(sd_config_parse_uint("n", "11", 1, 10, &v, &err), -1);
    assert_int_equal(sd_config_parse_uint("n", "-1", 0, 10, &v, &err), -1);
    assert_int_equal(sd_config_parse_uint("n", "3x", 0, 10, &v, &err), -1);
    assert_int_equal(sd_config_parse_uint("n", "99999999999999999999", 0, 10, &v, &err), -1);
}

static void test_free_null(void **state)
{
    (void)state;
    sd_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_good),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_yaml_duplicates),
        cmocka_unit_test(test_yaml_not_duplicates),
        cmocka_unit_test(test_yaml_refuses_weakening),
        cmocka_unit_test(test_yaml_http_mode),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_uints),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
