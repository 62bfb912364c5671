/* cli_serve.c - `steeldoor serve` and `steeldoor connect`: flags or a
 * config file, then the master. Both parse their flags from the one table
 * of keys; `connect` takes the keys of a connector (and the process's). */
#include "sd/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/config.h"
#include "sd/config_keys.h"
#include "sd/files.h"
#include "sd/gen.h"
#include "sd/log.h"
#include "sd/master.h"
#include "sd/net.h"
#include "sd/privs.h"
#include "sd/admin.h"
#include "sd/policy.h"
#include "sd/tls.h"

/* getopt's value for the key sd_config_keys[i] is SD_CLI_OPT_BASE + i,
 * above every character getopt returns. */
#define SD_CLI_OPT_BASE 256
#define SD_CLI_HELP_COL 28   /* where the help text of a flag starts */
#define SD_CLI_HELP_WIDTH 80 /* longest line of --help */

const char sd_serve_usage_head[] =
    "Usage: steeldoor serve --listen ADDR:PORT --target ADDR:PORT|unix:/PATH\n"
    "                       --cert FILE --key FILE --cacert FILE|DIR RULE... [options]\n"
    "       steeldoor serve --config FILE [--workers N] [--drain-timeout DUR] [--max-conns N]\n"
    "                       [--user NAME[:GROUP]]\n"
    "\n"
    "Terminates TLS 1.3/1.2 and forwards the bytes to the target (with --http, the\n"
    "HTTP requests, each with the client's verified identity in headers). Every\n"
    "connection must present a client certificate that chains to --cacert; there is\n"
    "no way to make it optional and no plaintext listener.\n"
    "\n";

/* The titles of the key groups, in enum sd_key_group order. */
const char *const sd_serve_groups[SD_GROUP_COUNT_] = {
    [SD_GROUP_LISTENER] = "Listener (one listener from flags; many with --config):",
    [SD_GROUP_SERVER] = "The server (repeatable rules; any match admits):",
    [SD_GROUP_WHO] = ("Who may enter (repeatable; any match admits; without a rule "
                      "steeldoor refuses\nto start):"),
    [SD_GROUP_REVOCATION] = "Revocation and chains:",
    [SD_GROUP_IDENTITY] = "Identity to the backend:",
    [SD_GROUP_HTTP] = "HTTP mode (the other flags of this group need --http):",
    [SD_GROUP_AUTH] = "Second factor, on top of the client certificate (HTTP mode; "
                      "see docs/auth.md):",
    [SD_GROUP_PROCESS] = "Process:",
    [SD_GROUP_RELOAD] = "Reload (SIGHUP, or automatically when a file changes):",
};

/* connect's titles where serve's would mislead (a connector has a server,
 * not clients, on the far side); NULL: serve's title. */
static const char *const sd_connect_groups[SD_GROUP_COUNT_] = {
    [SD_GROUP_LISTENER] = "Connector (one from flags; many with 'connectors:' in serve --config):",
    [SD_GROUP_REVOCATION] = "Revocation and chains (of the server's certificate):",
    [SD_GROUP_IDENTITY] = "Names and timeouts:",
};

const char sd_connect_usage_head[] =
    "Usage: steeldoor connect --listen 127.0.0.1:PORT|[::1]:PORT|unix:/PATH\n"
    "                         --target HOST:PORT --cert FILE --key FILE --cacert FILE|DIR\n"
    "                         [--server-name NAME] [--verify-uri PATTERN | --verify-dns NAME |\n"
    "                          --verify-spki SHA256]... [options]\n"
    "\n"
    "Client mode: accepts plaintext on loopback or a unix socket and opens a\n"
    "mutual-TLS connection to the target for each caller, presenting --cert and\n"
    "verifying the server (chain to --cacert only, serverAuth, and the verify rules\n"
    "or, without any, --server-name, which defaults to the target's host). A server\n"
    "that does not ask for the client certificate is refused. Several connectors,\n"
    "and listeners, in one process: 'connectors:' in steeldoor serve --config.\n"
    "\n";

const char sd_serve_usage_foot[] =
    "DUR is 500ms, 10s, 5m, 1h or a number of seconds. Logs are JSON lines on stderr.\n";

/* A flag that would weaken client authentication gets an explanation, not
 * just "unknown option". */
static int sd_cli_refuse_weakening_flags(int argc, char **argv, struct sd_err *err)
{
    int i;

    for (i = 1; i < argc; i++) {
        char name[64];
        const char *a = argv[i];
        size_t n;

        if (strcmp(a, "--") == 0)
            break;
        if (strncmp(a, "--", 2) != 0)
            continue;
        a += 2;
        n = strcspn(a, "=");
        if (n >= sizeof(name))
            continue;
        memcpy(name, a, n);
        name[n] = '\0';
        if (sd_config_refuse_weakening(name, err) != 0)
            return -1;
    }
    return 0;
}


/* Prints one word (n bytes) of a flag's help at column *col: after a
 * space, or on a new line indented to SD_CLI_HELP_COL when it would pass
 * SD_CLI_HELP_WIDTH. *first is set for the first word of a line of text,
 * which takes no space. */
static void sd_cli_word(FILE *out, const char *w, size_t n, int *first, size_t *col)
{
    if (!*first && *col + 1 + n > SD_CLI_HELP_WIDTH) {
        fprintf(out, "\n%*s", SD_CLI_HELP_COL, "");
        *col = SD_CLI_HELP_COL;
    } else if (!*first) {
        fputc(' ', out);
        (*col)++;
    }
    fwrite(w, 1, n, out);
    *col += n;
    *first = 0;
}

/* Is k a flag of `serve` (connector 0) or of `connect` (1)? --config is
 * serve's: connectors from a file run under serve. */
static int sd_cli_flag_of(const struct sd_config_key *k, int connector)
{
    if (!(k->where & SD_KEY_FLAG) || !sd_config_key_for(k, connector))
        return 0;
    return !(connector && k->type == SD_KT_SPECIAL && strcmp(k->name, "help") != 0 &&
             strcmp(k->name, "check") != 0);
}

static void sd_cli_usage(FILE *out, int connector)
{
    int g;
    size_t i;

    fputs(connector ? sd_connect_usage_head : sd_serve_usage_head, out);
    for (g = 0; g < SD_GROUP_COUNT_; g++) {
        int titled = 0;
        for (i = 0; i < sd_config_nkeys; i++) {
            const struct sd_config_key *k = &sd_config_keys[i];
            const char *h = connector && k->help_connect ? k->help_connect : k->help;
            char left[64], dflt[64];
            size_t col, start;
            int n, first = 1;

            if (!sd_cli_flag_of(k, connector) || (int)k->group != g)
                continue;
            if (!titled++)
                fprintf(out, "%s\n", connector && sd_connect_groups[g] != NULL
                                          ? sd_connect_groups[g] : sd_serve_groups[g]);
            n = snprintf(left, sizeof(left), "  %s--%s%s%s",
                         strcmp(k->name, "help") == 0 ? "-h, " : "",
                         sd_config_key_flag_name(k), k->metavar ? " " : "",
                         k->metavar ? k->metavar : "");
            if (n < 0)
                continue;
            /* The text starts in its column, or two spaces after a flag
             * too long for it. */
            start = (size_t)n + 2 > SD_CLI_HELP_COL ? (size_t)n + 2 : SD_CLI_HELP_COL;
            fprintf(out, "%-*s", (int)start, left);
            col = start;
            while (*h != '\0') {
                size_t w = strcspn(h, " ");
                sd_cli_word(out, h, w, &first, &col);
                h += w;
                h += strspn(h, " ");
            }
            /* A default is shown for a flag that takes a value; a switch
             * says in its text what it changes. Kept on one line. */
            if (k->metavar != NULL && k->def != NULL) {
                n = snprintf(dflt, sizeof(dflt), "(default %s)", k->def);
                if (n > 0 && (size_t)n < sizeof(dflt))
                    sd_cli_word(out, dflt, (size_t)n, &first, &col);
            }
            fputc('\n', out);
        }
    }
    fputs(sd_serve_usage_foot, out);
}

void sd_cli_serve_usage(FILE *out)
{
    sd_cli_usage(out, 0);
}

void sd_cli_connect_usage(FILE *out)
{
    sd_cli_usage(out, 1);
}

static int sd_cli_parse(int argc, char **argv, struct sd_source *src, int connector,
                        struct sd_err *err)
{
    struct option *opts = NULL;
    unsigned char *seen = NULL;
    struct sd_config *scratch = NULL;
    struct sd_listener_conf *l;
    size_t i, n = 0;
    int opt, rc = -1, listener_flags = 0;

    if (sd_cli_refuse_weakening_flags(argc, argv, err) != 0)
        return -1;
    opts = calloc(sd_config_nkeys + 1, sizeof(*opts));
    seen = calloc(sd_config_nkeys, 1);
    scratch = sd_config_new();
    if (opts == NULL || seen == NULL || scratch == NULL) {
        sd_err_set(err, "out of memory");
        goto out;
    }
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        if (!sd_cli_flag_of(k, connector))
            continue;
        opts[n].name = sd_config_key_flag_name(k);
        opts[n].has_arg = k->metavar != NULL ? required_argument : no_argument;
        opts[n].val = strcmp(k->name, "help") == 0 ? 'h' : SD_CLI_OPT_BASE + (int)i;
        n++;
    }
    /* Each value is applied to a scratch listener as it is read, so a bad
     * value is reported where it stands on the command line; the config
     * itself is built from src by sd_gen_parse(). */
    l = sd_config_add_listener(scratch, err);
    if (l == NULL)
        goto out;
    src->connect = connector;
    if (connector)
        l->mode = SD_MODE_CONNECT;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const struct sd_config_key *k;
        const char *value;
        char what[64];

        if (opt == 'h') {
            sd_cli_usage(stdout, connector);
            rc = 1;
            goto out;
        }
        if (opt == ':') {
            sd_err_set(err, "%s needs a value", argv[optind - 1]);
            goto out;
        }
        if (opt < SD_CLI_OPT_BASE || opt >= SD_CLI_OPT_BASE + (int)sd_config_nkeys) {
            const char *a = argv[optind - 1], *near = NULL;
            char word[64];
            if (strncmp(a, "--", 2) == 0) {
                snprintf(word, sizeof(word), "%.*s", (int)strcspn(a + 2, "="), a + 2);
                near = sd_config_key_nearest(word, SD_KEY_FLAG, -1, connector);
            }
            sd_err_set(err, "unknown option %s%s%s%s (see steeldoor %s --help)", a,
                       near ? "; did you mean --" : "", near ? near : "", near ? "?" : "",
                       connector ? "connect" : "serve");
            goto out;
        }
        k = &sd_config_keys[opt - SD_CLI_OPT_BASE];
        /* A setting given twice is a mistake (a pasted line, a wrapper
         * adding its own): refuse it rather than let the last one win
         * silently. Rules and CRLs are lists, so they repeat. */
        if (!k->list && seen[opt - SD_CLI_OPT_BASE]++) {
            sd_err_set(err, "--%s is given more than once", sd_config_key_flag_name(k));
            goto out;
        }
        if (k->type == SD_KT_SPECIAL && strcmp(k->name, "check") == 0) {
            src->check = 1;
            continue;
        }
        if (k->type == SD_KT_SPECIAL) { /* --config */
            if (sd_config_set_str(&src->config, optarg, err) != 0)
                goto out;
            continue;
        }
        /* A switch sets its one value: --http is mode: http, --no-watch is
         * watch: false. */
        if (k->metavar != NULL)
            value = optarg;
        else if (k->flag_value != NULL)
            value = k->flag_value;
        else
            value = k->flag_sets ? "true" : "false";
        snprintf(what, sizeof(what), "--%s", sd_config_key_flag_name(k));
        if (sd_config_key_apply(k, scratch, l, value, what, err) != 0 ||
            sd_gen_source_add(src, k, value, err) != 0)
            goto out;
        if (k->scope == SD_SCOPE_LISTENER)
            listener_flags = 1;
    }
    if (optind < argc) {
        sd_err_set(err, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (src->config != NULL && listener_flags) {
        sd_err_set(err, "--config cannot be combined with listener flags; "
                   "put the listener in the config file");
        goto out;
    }
    rc = 0;
out:
    sd_config_free(scratch);
    free(seen);
    free(opts);
    return rc;
}

int sd_cli_serve_parse(int argc, char **argv, struct sd_source *src, struct sd_err *err)
{
    return sd_cli_parse(argc, argv, src, 0, err);
}

int sd_cli_connect_parse(int argc, char **argv, struct sd_source *src, struct sd_err *err)
{
    return sd_cli_parse(argc, argv, src, 1, err);
}

static int sd_cli_check_cert(void *arg, const struct sd_tls_cert_info *ci)
{
    char when[32];

    (void)arg;
    if (strcmp(ci->role, "server") != 0 && strcmp(ci->role, "client") != 0)
        return 0;
    sd_admin_rfc3339(ci->not_after, when);
    printf("    %s certificate %s: %s, expires %s\n", ci->role, ci->file, ci->subject, when);
    return 0;
}

/* --check: builds the whole first generation as a start would (every file
 * read, every key matched with its certificate, chains, CRLs, rules, the
 * second factor's files), prints what would run, and binds nothing, so it
 * can check a new configuration while the old one serves. Takes cfg.
 * Returns the exit status: 0 when steeldoor would start. */
static int sd_cli_check(struct sd_config *cfg, struct sd_files *files, const char *cmd)
{
    char source[1024];
    struct sd_privs privs;
    struct sd_err err;
    struct sd_gen *g;
    size_t i;

    snprintf(source, sizeof(source), "%s", cfg->source != NULL ? cfg->source
                                                               : "the command line");
    /* What a start checks before it builds anything: the account, and
     * that every address could be listened on (binding none for good). */
    if (cfg->user != NULL && sd_privs_resolve(cfg->user, &privs, &err) != 0)
        goto failed;
    for (i = 0; i < cfg->nlisteners; i++) {
        if (sd_net_check_listenable(&cfg->listeners[i].listen_addr, &err) != 0) {
            sd_config_where(cfg, &cfg->listeners[i], &err);
            goto failed;
        }
    }
    if (sd_tls_init(&err) != 0)
        goto failed;
    g = sd_gen_new(cfg, files, 1, &err);
    cfg = NULL; /* sd_gen_new took it */
    if (g == NULL)
        goto failed;
    printf("steeldoor: %s: configuration OK, %zu listener%s, %d worker%s\n", source,
           g->cfg->nlisteners, g->cfg->nlisteners == 1 ? "" : "s", g->cfg->workers,
           g->cfg->workers == 1 ? "" : "s");
    for (i = 0; i < g->cfg->nlisteners; i++) {
        const struct sd_listener_conf *lc = &g->cfg->listeners[i];
        printf("  %s %s: %s %s", lc->mode == SD_MODE_CONNECT ? "connector" : "listener",
               lc->name, sd_config_mode_name(lc->mode), lc->listen);
        if (lc->target != NULL)
            printf(" -> %s", lc->target);
        printf("\n");
        if (lc->cacert != NULL)
            printf("    cacert %s, %zu %s rule%s, %zu CRL file%s\n", lc->cacert,
                   sd_policy_count(lc->policy),
                   lc->mode == SD_MODE_CONNECT ? "verify" : "allow",
                   sd_policy_count(lc->policy) == 1 ? "" : "s", lc->ncrls,
                   lc->ncrls == 1 ? "" : "s");
        (void)sd_tls_info_certs(g->tls[i], lc, sd_cli_check_cert, NULL);
    }
    /* The warnings a start gives (expiry, a CRL going stale, a server
     * certificate without a SAN), on stderr as log lines. */
    for (i = 0; i < g->cfg->nlisteners; i++) {
        if (g->tls[i] == NULL) /* a plaintext admin listener */
            continue;
        sd_tls_warn_expiry(g->tls[i], &g->cfg->listeners[i], g->cfg->expiry_warning_s);
        sd_tls_warn_crls(g->tls[i], g->cfg->listeners[i].name, g->cfg->expiry_warning_s);
    }
    sd_gen_unref(g);
    return 0;
failed:
    sd_config_free(cfg);
    sd_log_fatal(cmd, err.msg);
    printf("steeldoor: %s: configuration FAILED\n", source);
    return 1;
}

static int sd_cli_main(int argc, char **argv, int connector)
{
    const char *cmd = connector ? "connect" : "serve";
    struct sd_source *src;
    struct sd_files *files;
    struct sd_config *cfg;
    struct sd_err err;
    int usage, rc;

    src = sd_gen_source_new((size_t)(argc > 0 ? argc : 1));
    files = sd_files_new();
    if (src == NULL || files == NULL) {
        sd_gen_source_free(src);
        sd_files_free(files);
        sd_log_fatal(cmd, "out of memory");
        return 1;
    }
    rc = sd_cli_parse(argc, argv, src, connector, &err);
    if (rc == 0) {
        cfg = sd_gen_parse(src, files, &usage, &err);
        if (cfg != NULL && src->check) {
            rc = sd_cli_check(cfg, files, cmd);
            sd_files_free(files);
            sd_gen_source_free(src);
            return rc;
        }
        if (cfg != NULL) {
            /* The master and the workers it forks read src on every
             * reload; it lives until the master returns. */
            rc = sd_master_run(cfg, files, src);
            sd_gen_source_free(src);
            return rc;
        }
        rc = usage ? 2 : 1;
        if (src->check) {
            sd_log_fatal(cmd, err.msg);
            printf("steeldoor: %s: configuration FAILED\n",
                   src->config != NULL ? src->config : "the command line");
            sd_files_free(files);
            sd_gen_source_free(src);
            return rc;
        }
    } else {
        rc = rc == 1 ? 0 : 2;
    }
    if (rc != 0)
        sd_log_fatal(cmd, err.msg);
    sd_files_free(files);
    sd_gen_source_free(src);
    return rc;
}

int sd_cli_serve_main(int argc, char **argv)
{
    return sd_cli_main(argc, argv, 0);
}

int sd_cli_connect_main(int argc, char **argv)
{
    return sd_cli_main(argc, argv, 1);
}
