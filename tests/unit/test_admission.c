/* Unit tests for sd_config_admission(): every setting that can change an
 * admission decision is part of what a TLS session is bound to (its session
 * id context), and no other setting is.
 *
 * The table below names every configuration key steeldoor knows, each with
 * a second value and whether it decides admission. A test reads the keys
 * out of the sources (the YAML loader and the command-line options), so a
 * key added later without a row here fails the suite: nobody can add a
 * setting and forget to decide whether sessions must be bound to it. */
#include <ctype.h>
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

enum scope { LISTENER, TOP, CLI_ONLY };

struct key {
    const char *key;
    const char *value; /* a value other than the baseline's (YAML text) */
    int admission;     /* 1: changing it must change the session binding */
    enum scope scope;
};

static const struct key keys[] = {
    /* who the listener is: a session never moves between listeners */
    { "name", "other-name", 1, LISTENER },
    { "listen", "127.0.0.1:9444", 1, LISTENER },
    /* trust and revocation (file contents are bound by the TLS layer) */
    { "cacert", "/etc/ssl/other-ca.pem", 1, LISTENER },
    { "crl", "/etc/ssl/other.crl", 1, LISTENER },
    { "crl-grace", "1h", 1, LISTENER },
    { "verify-depth", "1", 1, LISTENER },
    { "session-lifetime", "1m", 1, LISTENER },
    /* who may enter */
    { "allow-uri", "spiffe://example.org/other", 1, LISTENER },
    { "allow-dns", "other.example.org", 1, LISTENER },
    { "allow-cn", "other", 1, LISTENER },
    { "allow-ou", "other", 1, LISTENER },
    { "allow-spki", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1, LISTENER },
    { "allow-all", "true", 1, LISTENER },
    /* not admission: where bytes go, how long they may take, the server's
     * own certificate */
    { "target", "127.0.0.1:9090", 0, LISTENER },
    { "cert", "/etc/ssl/other.crt", 0, LISTENER },
    { "key", "/etc/ssl/other.key", 0, LISTENER },
    { "proxy-protocol", "true", 0, LISTENER },
    { "handshake-timeout", "3s", 0, LISTENER },
    { "connect-timeout", "3s", 0, LISTENER },
    { "idle-timeout", "3s", 0, LISTENER },
    /* process-wide settings: never part of a listener's admission */
    { "workers", "3", 0, TOP },
    { "drain-timeout", "3s", 0, TOP },
    { "max-conns", "77", 0, TOP },
    { "watch", "false", 0, TOP },
    { "close-revoked", "false", 0, TOP },
    { "expiry-warning", "1d", 0, TOP },
    { "user", "nobody", 0, TOP },
    { "listeners", NULL, 0, TOP },
    /* command-line only */
    { "config", NULL, 0, CLI_ONLY },
    { "help", NULL, 0, CLI_ONLY },
    { "no-watch", NULL, 0, CLI_ONLY },
    { "keep-revoked-connections", NULL, 0, CLI_ONLY },
};

static const struct key *find_key(const char *k)
{
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].key, k) == 0)
            return &keys[i];
    return NULL;
}

/* ------------------------------------------------------------- digests */

struct acc {
    unsigned char buf[16384];
    size_t len;
};

static void feed(void *arg, const void *p, size_t n)
{
    struct acc *a = arg;

    assert_true(a->len + n <= sizeof(a->buf));
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

static const char *listener_base(const char *skip)
{
    static char out[2048];
    static const char *const lines[][2] = {
        { "name", "api" },
        { "listen", "127.0.0.1:9443" },
        { "target", "127.0.0.1:9080" },
        { "cert", "/etc/ssl/api.crt" },
        { "key", "/etc/ssl/api.key" },
        { "cacert", "/etc/ssl/ca.pem" },
        { "allow-uri", "spiffe://example.org/api" },
        { "crl", "/etc/ssl/ca.crl" },
    };
    size_t i;

    out[0] = '\0';
    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char line[256];
        if (skip != NULL && strcmp(skip, lines[i][0]) == 0)
            continue;
        snprintf(line, sizeof(line), "    %s: %s\n", lines[i][0], lines[i][1]);
        strcat(out, line);
    }
    return out;
}

/* The admission bytes of the only listener of a config where key (if not
 * NULL) has value. allow-* rules replace the baseline rule (allow-all must
 * stand alone); other keys replace or add their line. */
static void admission_of(const struct key *k, struct acc *a)
{
    char text[4096], path[64] = "/tmp/sd_test_adm_XXXXXX";
    const char *skip = NULL;
    struct sd_config *cfg = sd_config_new();
    struct sd_files *files = sd_files_new();
    struct sd_err err;
    int fd, rc;

    assert_non_null(cfg);
    assert_non_null(files);
    if (k != NULL && k->scope == LISTENER)
        skip = strncmp(k->key, "allow-", 6) == 0 ? "allow-uri" : k->key;
    if (k == NULL)
        snprintf(text, sizeof(text), "listeners:\n  - %s", listener_base(NULL) + 4);
    else if (k->scope == TOP)
        snprintf(text, sizeof(text), "%s: %s\nlisteners:\n  - %s", k->key, k->value,
                 listener_base(NULL) + 4);
    else
        snprintf(text, sizeof(text), "listeners:\n  - %s    %s: %s\n", listener_base(skip) + 4,
                 k->key, k->value);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    rc = sd_config_load_yaml(cfg, path, files, &err);
    unlink(path);
    if (rc != 0)
        fail_msg("config for key %s does not load: %s\n%s", k ? k->key : "(base)", err.msg,
                 text);
    assert_int_equal(cfg->nlisteners, 1);
    a->len = 0;
    sd_config_admission(&cfg->listeners[0], feed, a);
    sd_config_free(cfg);
    sd_files_free(files);
}

static void test_each_setting_binds_sessions_iff_it_decides_admission(void **state)
{
    static struct acc base, changed;
    size_t i;

    (void)state;
    admission_of(NULL, &base);
    assert_true(base.len > 0);
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const struct key *k = &keys[i];
        int differs;
        if (k->scope == CLI_ONLY || k->value == NULL)
            continue;
        admission_of(k, &changed);
        differs = changed.len != base.len || memcmp(changed.buf, base.buf, base.len) != 0;
        if (differs != k->admission)
            fail_msg("changing '%s' %s the session binding, but it %s admission", k->key,
                     differs ? "changes" : "does not change",
                     k->admission ? "decides" : "does not decide");
    }
}

/* ------------------------------------------------- every key is listed */

/* Calls found() for each "word" literal that follows `marker` in file. */
static void scan(const char *file, const char *marker, void (*found)(const char *key))
{
    FILE *f = fopen(file, "r");
    char line[1024];

    if (f == NULL)
        fail_msg("cannot open %s (unit tests run from the source tree)", file);
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = line;
        while ((p = strstr(p, marker)) != NULL) {
            char key[128];
            size_t n = 0;
            p += strlen(marker);
            while (p[n] != '"' && p[n] != '\0' && n < sizeof(key) - 1) {
                key[n] = p[n];
                n++;
            }
            key[n] = '\0';
            if (p[n] == '"' && n > 0 && (islower((unsigned char)key[0])))
                found(key);
        }
    }
    fclose(f);
}

static int missing, seen;

static void must_be_listed(const char *key)
{
    seen++;
    if (find_key(key) == NULL) {
        print_error("configuration key '%s' has no row in tests/unit/test_admission.c: "
                    "decide whether it affects admission\n", key);
        missing++;
    }
}

static void test_every_key_is_in_the_table(void **state)
{
    (void)state;
    missing = seen = 0;
    scan("src/config_yaml.c", "strcmp(k, \"", must_be_listed);
    scan("src/cli_serve.c", "    { \"", must_be_listed);
    assert_int_equal(missing, 0);
    /* the scan itself must have found the keys (a renamed variable would
     * silently find none) */
    assert_true(seen >= 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_setting_binds_sessions_iff_it_decides_admission),
        cmocka_unit_test(test_every_key_is_in_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
