/* gen.c - configuration generations (see sd/gen.h). */
#include "sd/gen.h"

#include <stdlib.h>

#include "sd/cli.h"

struct sd_config *sd_gen_parse(const struct sd_source *src, struct sd_files *files,
                               int *usage, struct sd_err *err)
{
    struct sd_config *cfg = sd_config_new();
    int rc;

    *usage = 0;
    if (cfg == NULL) {
        sd_err_set(err, "out of memory");
        return NULL;
    }
    rc = sd_cli_serve_parse(src->argc, src->argv, cfg, files, err);
    if (rc != 0) {
        *usage = 1;
        if (rc == 1)
            sd_err_set(err, "--help");
        sd_config_free(cfg);
        return NULL;
    }
    if (sd_config_validate(cfg, err) != 0) {
        sd_config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct sd_gen *sd_gen_new(struct sd_config *cfg, struct sd_files *files, uint64_t id,
                          struct sd_err *err)
{
    struct sd_gen *g = calloc(1, sizeof(*g));
    size_t i;

    if (g == NULL || (g->tls = calloc(cfg->nlisteners, sizeof(*g->tls))) == NULL) {
        free(g);
        sd_config_free(cfg);
        sd_err_set(err, "out of memory");
        return NULL;
    }
    g->refs = 1;
    g->id = id;
    g->cfg = cfg;
    for (i = 0; i < cfg->nlisteners; i++) {
        g->tls[i] = sd_tls_server_new(&cfg->listeners[i], files, err);
        if (g->tls[i] == NULL) {
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
    free(g->tls);
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
