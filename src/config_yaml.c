/*
 * config_yaml.c - loads the YAML configuration file with libyaml.
 *
 * The file is read as a libyaml document (a node tree) and walked; every key
 * must be known, so a misspelt or unsupported option stops the start instead
 * of being ignored. Keys use the same names as the command-line flags.
 */
#include "sd/config.h"

#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "sd/files.h"

#define SD_YAML_MAX_BYTES (1u << 20) /* a config file larger than 1 MiB is refused */

struct sd_yaml {
    yaml_document_t *doc;
    const char *path;
};

static const char *sd_yaml_scalar(yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static int sd_yaml_bool(const char *key, const char *v, int *out, struct sd_err *err)
{
    if (v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)) {
        *out = 1;
        return 0;
    }
    if (v != NULL && (strcmp(v, "false") == 0 || strcmp(v, "no") == 0)) {
        *out = 0;
        return 0;
    }
    return sd_err_set(err, "%s: expected true or false", key);
}

/* Applies a key that takes one string or a list of strings (allow rules,
 * CRL files) to listener l. */
static int sd_yaml_each(struct sd_yaml *y, yaml_node_t *vn, const char *k,
                        struct sd_listener_conf *l, struct sd_err *err)
{
    yaml_node_item_t *it;
    const char *v = sd_yaml_scalar(vn);

    if (v != NULL)
        return strcmp(k, "crl") == 0 ? sd_config_add_crl(l, v, err)
                                     : sd_config_add_rule(l, k, v, err);
    if (vn == NULL || vn->type != YAML_SEQUENCE_NODE)
        return sd_err_set(err, "'%s' must be a string or a list of strings", k);
    for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
        v = sd_yaml_scalar(yaml_document_get_node(y->doc, *it));
        if (v == NULL)
            return sd_err_set(err, "'%s' must be a string or a list of strings", k);
        if ((strcmp(k, "crl") == 0 ? sd_config_add_crl(l, v, err)
                                   : sd_config_add_rule(l, k, v, err)) != 0)
            return -1;
    }
    return 0;
}

static int sd_yaml_listener(struct sd_yaml *y, yaml_node_t *map,
                            struct sd_config *cfg, struct sd_err *err)
{
    struct sd_listener_conf *l;
    yaml_node_pair_t *p;

    if (map->type != YAML_MAPPING_NODE)
        return sd_err_set(err, "line %zu: each listener must be a mapping",
                          map->start_mark.line + 1);
    l = sd_config_add_listener(cfg, err);
    if (l == NULL)
        return -1;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *k = sd_yaml_scalar(kn), *v = sd_yaml_scalar(vn);
        char **slot = NULL;
        int rc = 0;

        if (k == NULL)
            return sd_err_set(err, "line %zu: keys must be plain words",
                              map->start_mark.line + 1);
        if (sd_config_refuse_weakening(k, err) != 0)
            goto bad;
        if ((strncmp(k, "allow-", 6) == 0 && strcmp(k, "allow-all") != 0) ||
            strcmp(k, "crl") == 0) {
            rc = sd_yaml_each(y, vn, k, l, err);
            if (rc != 0)
                goto bad;
            continue;
        }
        if (v == NULL)
            return sd_err_set(err, "line %zu: '%s' must have a single value",
                              kn->start_mark.line + 1, k);
        if (strcmp(k, "name") == 0) slot = &l->name;
        else if (strcmp(k, "listen") == 0) slot = &l->listen;
        else if (strcmp(k, "target") == 0) slot = &l->target;
        else if (strcmp(k, "cert") == 0) slot = &l->cert;
        else if (strcmp(k, "key") == 0) slot = &l->key;
        else if (strcmp(k, "cacert") == 0) slot = &l->cacert;
        else if (strcmp(k, "allow-all") == 0) {
            int on = 0;
            rc = sd_yaml_bool(k, v, &on, err);
            if (rc == 0 && on)
                rc = sd_config_add_rule(l, k, "", err);
        } else if (strcmp(k, "proxy-protocol") == 0)
            rc = sd_yaml_bool(k, v, &l->proxy_protocol, err);
        else if (strcmp(k, "crl-grace") == 0)
            rc = sd_config_parse_seconds(k, v, &l->crl_grace_s, err);
        else if (strcmp(k, "verify-depth") == 0)
            rc = sd_config_parse_uint(k, v, 0, SD_MAX_VERIFY_DEPTH, &l->verify_depth, err);
        else if (strcmp(k, "handshake-timeout") == 0)
            rc = sd_config_parse_duration(k, v, &l->handshake_timeout_ms, err);
        else if (strcmp(k, "connect-timeout") == 0)
            rc = sd_config_parse_duration(k, v, &l->connect_timeout_ms, err);
        else if (strcmp(k, "idle-timeout") == 0)
            rc = sd_config_parse_duration(k, v, &l->idle_timeout_ms, err);
        else
            return sd_err_set(err, "line %zu: unknown listener key '%s'",
                              kn->start_mark.line + 1, k);
        if (slot != NULL)
            rc = sd_config_set_str(slot, v, err);
        if (rc != 0)
            goto bad;
        continue;
bad:
        {
            char where[32];
            snprintf(where, sizeof(where), "line %zu", kn->start_mark.line + 1);
            return sd_err_prefix(err, where);
        }
    }
    return 0;
}

static int sd_yaml_root(struct sd_yaml *y, yaml_node_t *root,
                        struct sd_config *cfg, struct sd_err *err)
{
    yaml_node_pair_t *p;
    int have_listeners = 0;

    if (root == NULL)
        return sd_err_set(err, "empty configuration");
    if (root->type != YAML_MAPPING_NODE)
        return sd_err_set(err, "the top level must be a mapping");
    for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *k = sd_yaml_scalar(kn), *v = sd_yaml_scalar(vn);
        char where[32];
        uint32_t u;
        int rc;

        if (k == NULL)
            return sd_err_set(err, "line %zu: keys must be plain words",
                              root->start_mark.line + 1);
        snprintf(where, sizeof(where), "line %zu", kn->start_mark.line + 1);
        if (sd_config_refuse_weakening(k, err) != 0)
            return sd_err_prefix(err, where);
        if (strcmp(k, "listeners") == 0) {
            yaml_node_item_t *it;
            if (vn->type != YAML_SEQUENCE_NODE)
                return sd_err_set(err, "%s: 'listeners' must be a list", where);
            for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++)
                if (sd_yaml_listener(y, yaml_document_get_node(y->doc, *it), cfg, err) != 0)
                    return -1;
            have_listeners = 1;
            continue;
        }
        if (v == NULL)
            return sd_err_set(err, "%s: '%s' must have a single value", where, k);
        if (strcmp(k, "workers") == 0) {
            rc = sd_config_parse_uint(k, v, 1, SD_MAX_WORKERS, &u, err);
            cfg->workers = (int)u;
        } else if (strcmp(k, "drain-timeout") == 0) {
            rc = sd_config_parse_duration(k, v, &cfg->drain_timeout_ms, err);
        } else if (strcmp(k, "max-conns") == 0) {
            rc = sd_config_parse_uint(k, v, 1, 1000000, &cfg->max_conns, err);
        } else if (strcmp(k, "watch") == 0) {
            rc = sd_yaml_bool(k, v, &cfg->watch, err);
        } else if (strcmp(k, "close-revoked") == 0) {
            rc = sd_yaml_bool(k, v, &cfg->close_revoked, err);
        } else if (strcmp(k, "expiry-warning") == 0) {
            rc = sd_config_parse_seconds(k, v, &cfg->expiry_warning_s, err);
        } else {
            return sd_err_set(err, "%s: unknown key '%s'", where, k);
        }
        if (rc != 0)
            return sd_err_prefix(err, where);
    }
    if (!have_listeners)
        return sd_err_set(err, "no 'listeners' list");
    return 0;
}

int sd_config_load_yaml(struct sd_config *cfg, const char *path, struct sd_files *files,
                        struct sd_err *err)
{
    const struct sd_file *f = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    int parser_ok = 0, doc_ok = 0, rc = -1;
    struct sd_yaml y;

    if (sd_config_set_str(&cfg->source, path, err) != 0)
        return -1;
    if (sd_files_get(files, path, &f, err) != 0)
        return -1; /* the message already names the file */
    if (f->kind != SD_FILE_REG) {
        sd_err_set(err, "cannot read: not a regular file");
        goto out;
    }
    if (f->len > SD_YAML_MAX_BYTES) {
        sd_err_set(err, "larger than %u bytes", SD_YAML_MAX_BYTES);
        goto out;
    }
    if (!yaml_parser_initialize(&parser)) {
        sd_err_set(err, "out of memory");
        goto out;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, f->data, f->len);
    if (!yaml_parser_load(&parser, &doc)) {
        sd_err_set(err, "line %zu: YAML error: %s", parser.problem_mark.line + 1,
                   parser.problem ? parser.problem : "parse error");
        goto out;
    }
    doc_ok = 1;
    y.doc = &doc;
    y.path = path;
    rc = sd_yaml_root(&y, yaml_document_get_root_node(&doc), cfg, err);
out:
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    if (rc != 0)
        sd_err_prefix(err, path);
    return rc;
}
