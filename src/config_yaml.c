/*
 * config_yaml.c - loads the YAML configuration file with libyaml.
 *
 * The file is read as a libyaml document (a node tree) and walked; every key
 * must be known, so a misspelt or unsupported option stops the start instead
 * of being ignored. Keys are looked up in the table of keys
 * (config_keys.c) and set by its setters, as the flags are. For
 * the same reason nothing written is ever dropped: a key given twice, a
 * list entry given twice, a second document or a NUL byte in a value is an
 * error naming the line, as are two listeners with one name or address.
 */
#include "sd/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "sd/config_keys.h"
#include "sd/files.h"

#define SD_YAML_MAX_BYTES (1u << 20) /* a config file larger than 1 MiB is refused */

struct sd_yaml {
    yaml_document_t *doc;
    const char *path;
    /* Where each listener of the file was written (lines, 1-based; 0: the
     * key is absent), indexed from cfg's first listener from the file, so
     * that two listeners in conflict can both be pointed at. */
    size_t first;
    size_t map_line[SD_MAX_LISTENERS];
    size_t name_line[SD_MAX_LISTENERS];
    size_t listen_line[SD_MAX_LISTENERS];
};

static const char *sd_yaml_scalar(yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static size_t sd_yaml_line(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* libyaml keeps every pair of a mapping, so a key written twice would be
 * applied twice and the last would silently win (or, for a key taking a
 * list, add to the first). Refuses pair p's key k if a pair before it in
 * map has the same key. The walks stop at the first unknown key, so this
 * costs at most (number of known keys)^2 comparisons. */
static int sd_yaml_repeated(struct sd_yaml *y, yaml_node_t *map, yaml_node_pair_t *p,
                            const char *k, struct sd_err *err)
{
    yaml_node_pair_t *q;

    for (q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *qn = yaml_document_get_node(y->doc, q->key);
        const char *qk = sd_yaml_scalar(qn);
        if (qk != NULL && strcmp(qk, k) == 0)
            return sd_err_set(err, "line %zu: key '%s' is given twice (first on line %zu); "
                              "each key may appear once",
                              sd_yaml_line(yaml_document_get_node(y->doc, p->key)), k,
                              sd_yaml_line(qn));
    }
    return 0;
}

/* The loader reads scalars as C strings: a NUL byte (a "\0" escape) would
 * silently cut a key, a path or an allow rule short. Refuses any scalar of
 * the document with one; the document holds at most one node per byte of
 * the file, which bounds the walk. */
static int sd_yaml_no_nul(yaml_document_t *doc, struct sd_err *err)
{
    yaml_node_t *n;

    for (n = doc->nodes.start; n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE &&
            strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
            return sd_err_set(err, "line %zu: a value contains a NUL byte", sd_yaml_line(n));
    return 0;
}

/* Applies a list key (allow rules, CRL files: one string or a list of
 * strings) to listener l, one entry at a time, through the key's setter. */
/* Applies key's value v. A relative file name in the config file is the
 * file's neighbour, not the working directory's (as nginx and HAProxy
 * read theirs): "pki/api.crt" in /etc/steeldoor/steeldoor.yaml is
 * /etc/steeldoor/pki/api.crt, whichever directory steeldoor started in. */
static int sd_yaml_apply(const struct sd_yaml *y, const struct sd_config_key *key,
                         struct sd_config *cfg, struct sd_listener_conf *l, const char *v,
                         const char *k, struct sd_err *err)
{
    const char *slash = y->path != NULL ? strrchr(y->path, '/') : NULL;
    char path[4096];
    size_t dn;

    if (key->type != SD_KT_PATH || v[0] == '/' || v[0] == '\0' || slash == NULL)
        return sd_config_key_apply(key, cfg, l, v, k, err);
    dn = (size_t)(slash - y->path) + 1; /* with its '/' */
    if (dn + strlen(v) >= sizeof(path))
        return sd_err_set(err, "%s: path too long", k);
    memcpy(path, y->path, dn);
    memcpy(path + dn, v, strlen(v) + 1);
    return sd_config_key_apply(key, cfg, l, path, k, err);
}

static int sd_yaml_each(struct sd_yaml *y, yaml_node_t *vn, const struct sd_config_key *key,
                        struct sd_config *cfg, struct sd_listener_conf *l, struct sd_err *err)
{
    yaml_node_item_t *it;
    const char *k = key->name, *v = sd_yaml_scalar(vn);

    if (v != NULL)
        return sd_yaml_apply(y, key, cfg, l, v, k, err);
    if (vn == NULL || vn->type != YAML_SEQUENCE_NODE)
        return sd_err_set(err, "'%s' must be a string or a list of strings", k);
    for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
        yaml_node_t *in = yaml_document_get_node(y->doc, *it);
        yaml_node_item_t *prev;

        v = sd_yaml_scalar(in);
        if (v == NULL)
            return sd_err_set(err, "'%s' must be a string or a list of strings", k);
        /* An entry written twice changes nothing, so it is most likely a
         * copy of the line meant to be edited into another rule or file.
         * Bounded: the listener's caps on rules and CRLs stop the list. */
        for (prev = vn->data.sequence.items.start; prev < it; prev++) {
            yaml_node_t *pn = yaml_document_get_node(y->doc, *prev);
            if (strcmp(sd_yaml_scalar(pn), v) == 0)
                return sd_err_set(err, "'%s' lists '%s' twice (lines %zu and %zu)", k, v,
                                  sd_yaml_line(pn), sd_yaml_line(in));
        }
        if (sd_yaml_apply(y, key, cfg, l, v, k, err) != 0)
            return -1;
    }
    return 0;
}

/* A key whose value is a comma-separated list of words (http-headers) may
 * also be written as a YAML list of words: joined with commas into
 * out[0, cap), the one value its setter parses. An empty list is the word
 * "none". Refuses entries that are not plain words, or a list too long. */
static int sd_yaml_words(struct sd_yaml *y, yaml_node_t *vn, const char *k, char *out,
                         size_t cap, struct sd_err *err)
{
    yaml_node_item_t *it;
    size_t n = 0;

    for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
        const char *w = sd_yaml_scalar(yaml_document_get_node(y->doc, *it));
        size_t wl;

        if (w == NULL || w[0] == '\0' || strchr(w, ',') != NULL)
            return sd_err_set(err, "'%s' must be a string or a list of words", k);
        wl = strlen(w);
        if (n + (n > 0) + wl + 1 > cap)
            return sd_err_set(err, "'%s': the list is too long", k);
        if (n > 0)
            out[n++] = ',';
        memcpy(out + n, w, wl);
        n += wl;
    }
    if (n == 0 && cap > 4) {
        memcpy(out, "none", 4);
        n = 4;
    }
    out[n] = '\0';
    return 0;
}

/* The keys of the admin: mapping: where it listens, and the mutual TLS
 * that lets it listen beyond loopback. Names and targets are not its
 * (it is "admin" and answers itself). */
static int sd_yaml_admin_key(const char *k)
{
    static const char *const keys[] = {
        "listen", "cert", "key", "cacert", "crl", "crl-grace", "verify-depth",
        "handshake-timeout", "idle-timeout", "session-lifetime", "listen-mode",
    };
    size_t i;

    if (strncmp(k, "allow-", 6) == 0)
        return 1;
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(k, keys[i]) == 0)
            return 1;
    return 0;
}

/* One mapping of 'listeners' (connector 0), of 'connectors' (1) or the
 * 'admin' mapping (2). */
static int sd_yaml_listener(struct sd_yaml *y, yaml_node_t *map, int connector,
                            struct sd_config *cfg, struct sd_err *err)
{
    const char *kind = connector == 2 ? "admin" : connector ? "connector" : "listener";
    struct sd_listener_conf *l;
    yaml_node_pair_t *p;
    size_t idx;

    if (map->type != YAML_MAPPING_NODE)
        return sd_err_set(err, "line %zu: each %s must be a mapping",
                          map->start_mark.line + 1, kind);
    l = sd_config_add_listener(cfg, err);
    if (l == NULL)
        return -1;
    if (connector)
        l->mode = connector == 2 ? SD_MODE_ADMIN : SD_MODE_CONNECT;
    idx = cfg->nlisteners - 1 - y->first;
    y->map_line[idx] = sd_yaml_line(map);
    l->line = (uint32_t)y->map_line[idx];
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *k = sd_yaml_scalar(kn), *v = sd_yaml_scalar(vn);
        const struct sd_config_key *key;
        char where[32];

        if (k == NULL)
            return sd_err_set(err, "line %zu: keys must be plain words", sd_yaml_line(kn));
        if (sd_yaml_repeated(y, map, p, k, err) != 0)
            return -1;
        if (strcmp(k, "name") == 0)
            y->name_line[idx] = sd_yaml_line(kn);
        else if (strcmp(k, "listen") == 0)
            y->listen_line[idx] = sd_yaml_line(kn);
        snprintf(where, sizeof(where), "line %zu", sd_yaml_line(kn));
        if (sd_config_refuse_weakening(k, err) != 0)
            return sd_err_prefix(err, where);
        key = sd_config_key_yaml(k, SD_SCOPE_LISTENER);
        if (connector == 2 && !sd_yaml_admin_key(k))
            return sd_err_set(err, "%s: '%s' is not an admin key (admin takes listen, and "
                              "for mutual TLS cert, key, cacert, allow-* rules, crl, "
                              "crl-grace, verify-depth, handshake-timeout, idle-timeout, "
                              "session-lifetime; listen-mode for a unix socket)", where, k);
        if (connector == 2 && strcmp(k, "listen-mode") == 0)
            key = sd_config_key_yaml(k, SD_SCOPE_LISTENER); /* a connector key, taken here */
        else if (key != NULL && !sd_config_key_for(key, connector == 1))
            return sd_err_set(err, "%s: '%s' is not a %s key%s", where, k, kind,
                              connector == 1 ? " (a connector verifies the server with "
                                          "verify-uri, verify-dns or verify-spki)"
                                        : " (it belongs in 'connectors:')");
        if (key != NULL && key->list) {
            if (sd_yaml_each(y, vn, key, cfg, l, err) != 0)
                return sd_err_prefix(err, where);
            continue;
        }
        /* An allow rule of a kind steeldoor does not have is named as
         * such: the rules are the one family of listener keys. */
        if (key == NULL && strncmp(k, "allow-", 6) == 0) {
            const char *near = sd_config_key_nearest(k, SD_KEY_YAML, SD_SCOPE_LISTENER,
                                                      connector == 1);
            sd_err_set(err, "unknown allow rule '%s'%s%s%s", k, near ? " (did you mean '" : "",
                       near ? near : "", near ? "'?)" : "");
            return sd_err_prefix(err, where);
        }
        if (key != NULL && key->words && vn != NULL && vn->type == YAML_SEQUENCE_NODE) {
            char words[512];
            if (sd_yaml_words(y, vn, k, words, sizeof(words), err) != 0 ||
                sd_config_key_apply(key, cfg, l, words, k, err) != 0)
                return sd_err_prefix(err, where);
            continue;
        }
        if (v == NULL)
            return sd_err_set(err, "%s: '%s' must have a single value", where, k);
        if (key == NULL)
        {
            const char *near = sd_config_key_nearest(k, SD_KEY_YAML, SD_SCOPE_LISTENER,
                                                     connector == 1);
            if (near == NULL) /* a top-level key put in a listener? */
                near = sd_config_key_nearest(k, SD_KEY_YAML, SD_SCOPE_PROCESS, -1);
            return sd_err_set(err, "%s: unknown %s key '%s'%s%s%s", where, kind, k,
                              near ? " (did you mean '" : "", near ? near : "",
                              near ? "'?)" : "");
        }
        if (sd_yaml_apply(y, key, cfg, l, v, k, err) != 0)
            return sd_err_prefix(err, where);
    }
    return 0;
}

/* The line a listener's name comes from: its 'name' key, else its 'listen'
 * key (the name defaults to the listen text), else the listener itself. */
static size_t sd_yaml_name_line(const struct sd_yaml *y, size_t i)
{
    return y->name_line[i] ? y->name_line[i]
                           : (y->listen_line[i] ? y->listen_line[i] : y->map_line[i]);
}

/* Two listeners of the file with one name, or one listen address (the
 * kernel would spread clients over both at random), are refused here,
 * where the message can point at both lines; sd_config_validate() refuses
 * them too, for flags. An address that does not parse is left to
 * sd_config_validate(), which names the problem. */
static int sd_yaml_conflicts(const struct sd_yaml *y, const struct sd_config *cfg,
                             struct sd_err *err)
{
    size_t n = cfg->nlisteners - y->first, i, j;
    struct sd_addr *addr = calloc(n > 0 ? n : 1, sizeof(*addr));
    unsigned char parsed[SD_MAX_LISTENERS];
    struct sd_err ignored;
    int rc = 0;

    if (addr == NULL)
        return sd_err_set(err, "out of memory");
    for (i = 0; i < n; i++) {
        const char *listen = cfg->listeners[y->first + i].listen;
        parsed[i] = listen != NULL && sd_addr_parse(listen, 1, &addr[i], &ignored) == 0;
    }
    for (i = 0; i < n && rc == 0; i++) {
        const struct sd_listener_conf *a = &cfg->listeners[y->first + i];
        const char *an = a->name != NULL ? a->name : a->listen;

        for (j = i + 1; j < n && rc == 0; j++) {
            const struct sd_listener_conf *b = &cfg->listeners[y->first + j];
            const char *bn = b->name != NULL ? b->name : b->listen;

            if (an != NULL && bn != NULL && strcmp(an, bn) == 0)
                rc = sd_err_set(err, "listener name '%s' is used twice (lines %zu and %zu); "
                                "each listener needs its own name", an,
                                sd_yaml_name_line(y, i), sd_yaml_name_line(y, j));
            else if (parsed[i] && parsed[j] && sd_net_same_addr(&addr[i], &addr[j]))
                rc = sd_err_set(err, "listeners '%s' (line %zu) and '%s' (line %zu) both "
                                "listen on %s", an,
                                y->listen_line[i] ? y->listen_line[i] : y->map_line[i], bn,
                                y->listen_line[j] ? y->listen_line[j] : y->map_line[j],
                                b->listen);
        }
    }
    free(addr);
    return rc;
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
        const struct sd_config_key *key;
        char where[32];

        if (k == NULL)
            return sd_err_set(err, "line %zu: keys must be plain words", sd_yaml_line(kn));
        if (sd_yaml_repeated(y, root, p, k, err) != 0)
            return -1;
        snprintf(where, sizeof(where), "line %zu", kn->start_mark.line + 1);
        if (sd_config_refuse_weakening(k, err) != 0)
            return sd_err_prefix(err, where);
        if (strcmp(k, "listeners") == 0 || strcmp(k, "connectors") == 0) {
            int connector = k[0] == 'c';
            yaml_node_item_t *it;
            if (vn->type != YAML_SEQUENCE_NODE)
                return sd_err_set(err, "%s: '%s' must be a list", where, k);
            for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++)
                if (sd_yaml_listener(y, yaml_document_get_node(y->doc, *it), connector, cfg,
                                     err) != 0)
                    return -1;
            have_listeners = 1;
            continue;
        }
        if (strcmp(k, "admin") == 0 && vn != NULL && vn->type == YAML_MAPPING_NODE) {
            if (sd_yaml_listener(y, vn, 2, cfg, err) != 0)
                return -1;
            continue;
        }
        key = sd_config_key_yaml(k, SD_SCOPE_PROCESS);
        if (key == NULL) {
            /* The special keys (listeners, connectors) are suggested too. */
            const char *near = sd_config_key_nearest(k, SD_KEY_YAML, SD_SCOPE_PROCESS, -1);
            if (strcmp(k, "listener") == 0 || strcmp(k, "connector") == 0)
                near = k[0] == 'l' ? "listeners" : "connectors";
            return sd_err_set(err, "%s: unknown key '%s'%s%s%s", where, k,
                              near ? " (did you mean '" : "", near ? near : "",
                              near ? "'?)" : "");
        }
        if (v == NULL)
            return sd_err_set(err, "%s: '%s' must have a single value", where, k);
        if (sd_yaml_apply(y, key, cfg, NULL, v, k, err) != 0)
            return sd_err_prefix(err, where);
    }
    if (!have_listeners)
        return sd_err_set(err, "no 'listeners' or 'connectors' list");
    return sd_yaml_conflicts(y, cfg, err);
}

/* yaml_parser_load() reads one document; a second one ("---" and more keys)
 * would be silently ignored, so it is refused. A bare trailing "---" (an
 * empty document) says nothing and is let be. */
static int sd_yaml_single(yaml_parser_t *parser, struct sd_err *err)
{
    yaml_document_t next;
    yaml_node_t *root;
    int rc = 0;

    if (!yaml_parser_load(parser, &next))
        return sd_err_set(err, "line %zu: YAML error: %s", parser->problem_mark.line + 1,
                          parser->problem ? parser->problem : "parse error");
    root = yaml_document_get_root_node(&next);
    if (root != NULL && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0))
        rc = sd_err_set(err, "line %zu: a second YAML document; the configuration must be "
                        "one document", next.start_mark.line + 1);
    yaml_document_delete(&next);
    return rc;
}

/* Parses len bytes of YAML into cfg; errors are not prefixed with the
 * file's name (the callers do that). */
static int sd_yaml_parse(struct sd_config *cfg, const char *path, const unsigned char *data,
                         size_t len, struct sd_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int parser_ok = 0, doc_ok = 0, rc = -1;
    struct sd_yaml y;

    if (len > SD_YAML_MAX_BYTES) {
        sd_err_set(err, "larger than %u bytes", SD_YAML_MAX_BYTES);
        goto out;
    }
    if (!yaml_parser_initialize(&parser)) {
        sd_err_set(err, "out of memory");
        goto out;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        sd_err_set(err, "line %zu: YAML error: %s", parser.problem_mark.line + 1,
                   parser.problem ? parser.problem : "parse error");
        goto out;
    }
    doc_ok = 1;
    if (sd_yaml_single(&parser, err) != 0 || sd_yaml_no_nul(&doc, err) != 0)
        goto out;
    memset(&y, 0, sizeof(y));
    y.doc = &doc;
    y.path = path;
    y.first = cfg->nlisteners;
    rc = sd_yaml_root(&y, yaml_document_get_root_node(&doc), cfg, err);
out:
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    return rc;
}

int sd_config_load_yaml_bytes(struct sd_config *cfg, const char *name, const void *data,
                              size_t len, struct sd_err *err)
{
    if (sd_config_set_str(&cfg->source, name, err) != 0)
        return -1;
    if (sd_yaml_parse(cfg, name, data, len, err) != 0)
        return sd_err_prefix(err, name);
    return 0;
}

int sd_config_load_yaml(struct sd_config *cfg, const char *path, struct sd_files *files,
                        struct sd_err *err)
{
    const struct sd_file *f = NULL;

    if (sd_config_set_str(&cfg->source, path, err) != 0)
        return -1;
    if (sd_files_get(files, path, &f, err) != 0)
        return -1; /* the message already names the file */
    if (f->kind != SD_FILE_REG) {
        sd_err_set(err, "cannot read: not a regular file");
        return sd_err_prefix(err, path);
    }
    if (sd_yaml_parse(cfg, path, f->data, f->len, err) != 0)
        return sd_err_prefix(err, path);
    return 0;
}
