/* gen.c - configuration generations (see sd/gen.h). */
#include "sd/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/auth.h"
#include "sd/config_keys.h"

/* A command line holds at most a few hundred settings; a cap keeps a
 * runaway wrapper script from growing the source without bound. */
#define SD_SOURCE_MAX_SETTINGS 4096u

struct sd_source *sd_gen_source_new(size_t cap)
{
    struct sd_source *src = calloc(1, sizeof(*src));

    if (cap == 0)
        cap = 1;
    if (cap > SD_SOURCE_MAX_SETTINGS)
        cap = SD_SOURCE_MAX_SETTINGS;
    if (src == NULL || (src->settings = calloc(cap, sizeof(*src->settings))) == NULL) {
        free(src);
        return NULL;
    }
    src->cap = cap;
    return src;
}

void sd_gen_source_free(struct sd_source *src)
{
    size_t i;

    if (src == NULL)
        return;
    for (i = 0; i < src->nsettings; i++)
        free(src->settings[i].value);
    free(src->settings);
    free(src->config);
    free(src);
}

int sd_gen_source_add(struct sd_source *src, const struct sd_config_key *key,
                      const char *value, struct sd_err *err)
{
    char *copy;

    if (src->nsettings >= src->cap)
        return sd_err_set(err, "too many settings (at most %zu)", src->cap);
    copy = strdup(value);
    if (copy == NULL)
        return sd_err_set(err, "out of memory");
    src->settings[src->nsettings].key = key;
    src->settings[src->nsettings].value = copy;
    src->nsettings++;
    return 0;
}

/* Replays src's settings onto cfg; with a config file, only the process
 * ones (sd_cli_serve_parse() refuses listener flags next to --config). */
static int sd_gen_apply_settings(const struct sd_source *src, struct sd_config *cfg,
                                 struct sd_err *err)
{
    size_t i;

    for (i = 0; i < src->nsettings; i++) {
        const struct sd_source_setting *s = &src->settings[i];
        struct sd_listener_conf *l = NULL;
        char what[64];

        snprintf(what, sizeof(what), "--%s", sd_config_key_flag_name(s->key));
        if (s->key->scope == SD_SCOPE_LISTENER) {
            if (src->config != NULL || cfg->nlisteners != 1)
                return sd_err_set(err, "--config cannot be combined with listener flags; "
                                  "put the listener in the config file");
            l = &cfg->listeners[0];
        }
        if (sd_config_key_apply(s->key, cfg, l, s->value, what, err) != 0)
            return -1;
    }
    return 0;
}

struct sd_config *sd_gen_parse(const struct sd_source *src, struct sd_files *files,
                               int *usage, struct sd_err *err)
{
    struct sd_config *cfg = sd_config_new();

    *usage = 0;
    if (cfg == NULL) {
        sd_err_set(err, "out of memory");
        return NULL;
    }
    if (src->config != NULL) {
        if (sd_config_load_yaml(cfg, src->config, files, err) != 0) {
            *usage = 1;
            goto fail;
        }
    } else {
        struct sd_listener_conf *l = sd_config_add_listener(cfg, err);
        if (l == NULL)
            goto fail;
        if (src->connect)
            l->mode = SD_MODE_CONNECT;
    }
    if (sd_gen_apply_settings(src, cfg, err) != 0) {
        *usage = 1;
        goto fail;
    }
    /* A configuration incomplete or inconsistent as a whole (a listener
     * without its target, two listeners on one port): exit status 1, as
     * for a file that cannot be read, not a usage error. */
    if (sd_config_validate(cfg, err) != 0)
        goto fail;
    return cfg;
fail:
    sd_config_free(cfg);
    return NULL;
}

struct sd_gen *sd_gen_new(struct sd_config *cfg, struct sd_files *files, uint64_t id,
                          struct sd_err *err)
{
    struct sd_gen *g = calloc(1, sizeof(*g));
    size_t i;

    if (g == NULL || (g->tls = calloc(cfg->nlisteners, sizeof(*g->tls))) == NULL ||
        (g->auth = calloc(cfg->nlisteners, sizeof(*g->auth))) == NULL) {
        if (g != NULL)
            free(g->tls);
        free(g);
        sd_config_free(cfg);
        sd_err_set(err, "out of memory");
        return NULL;
    }
    g->refs = 1;
    g->id = id;
    g->cfg = cfg;
    for (i = 0; i < cfg->nlisteners; i++) {
        const struct sd_listener_conf *lc = &cfg->listeners[i];
        /* A plaintext admin listener (loopback or unix only, checked by
         * sd_config_validate) has no TLS context. */
        if (lc->mode == SD_MODE_ADMIN && lc->cert == NULL)
            continue;
        g->tls[i] = lc->mode == SD_MODE_CONNECT ? sd_tls_connector_new(lc, files, err)
                                                : sd_tls_server_new(lc, files, err);
        if (g->tls[i] == NULL ||
            sd_auth_new(&cfg->listeners[i], files, &g->auth[i], err) != 0) {
            sd_config_where(cfg, lc, err);
            sd_gen_unref(g);
            return NULL;
        }
    }
    return g;
}

struct sd_gen *sd_gen_load(const struct sd_source *src, struct sd_files *files,
                           uint64_t id, struct sd_err *err)
{
    int usage;
    struct sd_config *cfg = sd_gen_parse(src, files, &usage, err);

    return cfg == NULL ? NULL : sd_gen_new(cfg, files, id, err);
}

struct sd_gen *sd_gen_ref(struct sd_gen *g)
{
    g->refs++;
    return g;
}

void sd_gen_unref(struct sd_gen *g)
{
    size_t i;

    if (g == NULL || --g->refs > 0)
        return;
    for (i = 0; g->tls != NULL && i < g->cfg->nlisteners; i++)
        sd_tls_free(g->tls[i]);
    for (i = 0; g->auth != NULL && i < g->cfg->nlisteners; i++)
        sd_auth_free(g->auth[i]);
    free(g->tls);
    free(g->auth);
    sd_config_free(g->cfg);
    free(g);
}

int sd_gen_find_listener(const struct sd_gen *g, const struct sd_addr *addr)
{
    size_t i;

    for (i = 0; i < g->cfg->nlisteners; i++)
        if (sd_net_same_addr(&g->cfg->listeners[i].listen_addr, addr))
            return (int)i;
    return -1;
}
