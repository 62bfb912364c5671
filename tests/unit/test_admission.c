/* Unit tests for sd_config_admission(): every setting that can change an
 * admission decision is part of what a TLS session is bound to (its session
 * id context), and no other setting is.
 *
 * The keys come from the one table of keys (src/config_keys.c), where each
 * is marked as deciding admission or not: a key added there is tested here
 * without a line of this file changing, so nobody can add a setting and
 * forget to decide whether sessions must be bound to it. A second value is
 * made from the key's type; only keys whose type does not say enough about
 * a valid value have one below. */
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
#include "sd/config_keys.h"
#include "sd/files.h"

/* Values the type alone cannot produce (a rule's syntax). */
static const struct {
    const char *key, *value;
} samples[] = {
    { "allow-uri", "spiffe://example.org/other" },
    { "allow-dns", "other.example.org" },
    { "allow-spki", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
    { "mode", "http" },
    { "http-headers", "xfcc,forwarded" },
};

/* A value of k (YAML text) other than the baseline's and the default. */
static const char *value_for(const struct sd_config_key *k)
{
    static char buf[64];
    size_t i;

    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
        if (strcmp(samples[i].key, k->name) == 0)
            return samples[i].value;
    switch (k->type) {
    case SD_KT_STRING:
        snprintf(buf, sizeof(buf), "other-%s", k->name);
        return buf;
    case SD_KT_PATH:
        snprintf(buf, sizeof(buf), "/etc/ssl/other-%s", k->name);
        return buf;
    case SD_KT_DURATION:
    case SD_KT_DURATION0:
    case SD_KT_SECONDS:
        return "3s"; /* no default is 3s */
    case SD_KT_UINT:
        /* the largest value, unless it is the default */
        snprintf(buf, sizeof(buf), "%u",
                 k->def != NULL && (uint32_t)atol(k->def) == k->max ? k->min : k->max);
        return buf;
    case SD_KT_BOOL:
        return k->def != NULL && strcmp(k->def, "true") == 0 ? "false" : "true";
    case SD_KT_SPECIAL:
    default:
        return NULL;
    }
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

/* The admission bytes of the only listener of a config where key k (if
 * not NULL) has value. allow-* rules replace the baseline rule (allow-all
 * must stand alone); other keys replace or add their line. */
static void admission_of(const struct sd_config_key *k, const char *value, struct acc *a)
{
    char text[4096], path[64] = "/tmp/sd_test_adm_XXXXXX";
    const char *skip = NULL;
    struct sd_config *cfg = sd_config_new();
    struct sd_files *files = sd_files_new();
    struct sd_err err;
    int fd, rc;

    assert_non_null(cfg);
    assert_non_null(files);
    if (k != NULL && k->scope == SD_SCOPE_LISTENER)
        skip = strncmp(k->name, "allow-", 6) == 0 ? "allow-uri" : k->name;
    if (k == NULL)
        snprintf(text, sizeof(text), "listeners:\n  - %s", listener_base(NULL) + 4);
    else if (k->scope == SD_SCOPE_PROCESS)
        snprintf(text, sizeof(text), "%s: %s\nlisteners:\n  - %s", k->name, value,
                 listener_base(NULL) + 4);
    else
        snprintf(text, sizeof(text), "listeners:\n  - %s    %s: %s\n", listener_base(skip) + 4,
                 k->name, value);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    rc = sd_config_load_yaml(cfg, path, files, &err);
    unlink(path);
    if (rc != 0)
        fail_msg("config for key %s does not load: %s\n%s", k ? k->name : "(base)", err.msg,
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
    size_t i, tested = 0, admission = 0;

    (void)state;
    admission_of(NULL, NULL, &base);
    assert_true(base.len > 0);
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        const char *value = value_for(k);
        int differs;

        if (!(k->where & SD_KEY_YAML) || value == NULL) {
            /* flag-only keys (config, help) and the listeners list set
             * nothing of a listener; a process key never decides admission */
            assert_false(k->admission);
            continue;
        }
        /* A connector's own keys cannot be set on a listener (this test's
         * config): a connector is a TLS client, whose sessions carry no id
         * context; server-name is fed all the same. */
        if (k->connector == SD_KEY_CONNECT_ONLY)
            continue;
        if (k->scope == SD_SCOPE_PROCESS && k->admission)
            fail_msg("process key '%s' is marked as deciding admission; only listener "
                     "settings can", k->name);
        admission_of(k, value, &changed);
        differs = changed.len != base.len || memcmp(changed.buf, base.buf, base.len) != 0;
        if (differs != k->admission)
            fail_msg("changing '%s' %s the session binding, but the table says it %s "
                     "admission", k->name, differs ? "changes" : "does not change",
                     k->admission ? "decides" : "does not decide");
        tested++;
        admission += (size_t)k->admission;
    }
    /* the table itself must hold the keys (an emptied table tests nothing) */
    assert_true(tested >= 27);
    assert_true(admission >= 13);
}

/* ----------------------------------- the table is what the loaders know */

/* The YAML loader dispatches through the table: a key of the table that
 * it did not know would be refused as unknown. A key outside the table is
 * refused (no loader of its own left). */
static void test_yaml_knows_exactly_the_table(void **state)
{
    struct sd_config *cfg;
    struct sd_err err;
    char text[256];

    (void)state;
    cfg = sd_config_new();
    assert_non_null(cfg);
    snprintf(text, sizeof(text), "colour: red\nlisteners: []\n");
    assert_int_equal(sd_config_load_yaml_bytes(cfg, "t.yaml", text, strlen(text), &err), -1);
    assert_non_null(strstr(err.msg, "unknown key 'colour'"));
    sd_config_free(cfg);
    cfg = sd_config_new();
    assert_non_null(cfg);
    snprintf(text, sizeof(text), "listeners:\n  - colour: red\n");
    assert_int_equal(sd_config_load_yaml_bytes(cfg, "t.yaml", text, strlen(text), &err), -1);
    assert_non_null(strstr(err.msg, "unknown listener key 'colour'"));
    sd_config_free(cfg);
    /* a listener key is not a top-level key, and the reverse */
    cfg = sd_config_new();
    assert_non_null(cfg);
    snprintf(text, sizeof(text), "target: 127.0.0.1:1\nlisteners: []\n");
    assert_int_equal(sd_config_load_yaml_bytes(cfg, "t.yaml", text, strlen(text), &err), -1);
    assert_non_null(strstr(err.msg, "unknown key 'target'"));
    sd_config_free(cfg);
    cfg = sd_config_new();
    assert_non_null(cfg);
    snprintf(text, sizeof(text), "listeners:\n  - workers: 2\n");
    assert_int_equal(sd_config_load_yaml_bytes(cfg, "t.yaml", text, strlen(text), &err), -1);
    assert_non_null(strstr(err.msg, "unknown listener key 'workers'"));
    sd_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_setting_binds_sessions_iff_it_decides_admission),
        cmocka_unit_test(test_yaml_knows_exactly_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
