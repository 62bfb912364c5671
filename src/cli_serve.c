/* cli_serve.c - `steeldoor serve`: flags or a config file, then the master. */
#include "sd/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/files.h"
#include "sd/gen.h"
#include "sd/master.h"

static const char sd_serve_usage[] =
    "Usage: steeldoor serve --listen ADDR:PORT --target ADDR:PORT|unix:/PATH\n"
    "                       --cert FILE --key FILE --cacert FILE|DIR RULE... [options]\n"
    "       steeldoor serve --config FILE [--workers N] [--drain-timeout DUR] [--max-conns N]\n"
    "                       [--user NAME[:GROUP]]\n"
    "\n"
    "Terminates TLS 1.3/1.2 and forwards the bytes to the target. Every connection\n"
    "must present a client certificate that chains to --cacert; there is no way to\n"
    "make it optional and no plaintext listener.\n"
    "\n"
    "Listener (one listener from flags; many with --config):\n"
    "  --listen ADDR:PORT        address to accept TLS on ([::1]:8443 for IPv6)\n"
    "  --target ADDR:PORT        the protected service (or unix:/path/to.sock)\n"
    "  --cert FILE               server certificate chain (PEM)\n"
    "  --key FILE                server private key (PEM, mode 0600)\n"
    "  --cacert FILE|DIR         CA bundle client certificates must chain to (a\n"
    "                            directory: every PEM file in it; several roots)\n"
    "Who may enter (repeatable; any match admits; without a rule steeldoor refuses\n"
    "to start):\n"
    "  --allow-uri PATTERN       URI SAN, e.g. spiffe://example.org/ns/*/sa/api;\n"
    "                            '*' = one path segment, final '**' = one or more\n"
    "  --allow-dns NAME          DNS SAN, exact, case-insensitive\n"
    "  --allow-cn NAME           subject CN, exact\n"
    "  --allow-ou NAME           subject OU, exact\n"
    "  --allow-spki SHA256       pin: SHA-256 of the client's public key (hex or base64)\n"
    "  --allow-all               any client whose certificate verifies (alone only)\n"
    "Revocation and chains:\n"
    "  --crl FILE                CRL, PEM or DER (repeatable); leaf and intermediates\n"
    "                            are checked; every CA level then needs a CRL\n"
    "  --crl-grace DUR           accept a CRL this long past nextUpdate (default 0)\n"
    "  --verify-depth N          max intermediate CAs in a client chain (default 3)\n"
    "Identity to the backend:\n"
    "  --proxy-protocol          start each backend connection with a PROXY v2 header\n"
    "                            carrying the client address and verified identity\n"
    "  --name NAME               listener name in logs (default: the listen address)\n"
    "  --handshake-timeout DUR   default 10s\n"
    "  --connect-timeout DUR     backend connect, default 5s\n"
    "  --idle-timeout DUR        no bytes either way, default 5m\n"
    "  --session-lifetime DUR    a TLS session and those resumed from it live this\n"
    "                            long after the full handshake, default 5m; 0: none\n"
    "Process:\n"
    "  --config FILE             YAML file with listeners (see docs/config.md)\n"
    "  --workers N               worker processes, default one per core\n"
    "  --drain-timeout DUR       on SIGTERM, wait this long for connections, default 30s\n"
    "  --max-conns N             connections per worker, default 10000\n"
    "  --user NAME[:GROUP]       after binding, run as this account (start as root):\n"
    "                            no capabilities, no new privileges; reloads read\n"
    "                            the files as it\n"
    "Reload (SIGHUP, or automatically when a file changes):\n"
    "  --no-watch                reload on SIGHUP only, not on file changes\n"
    "  --keep-revoked-connections  on reload, keep open connections whose client\n"
    "                            is no longer admitted (default: close them)\n"
    "  --expiry-warning DUR      warn about certificates expiring within DUR\n"
    "                            (default 7d), at load and every 12 hours\n"
    "  -h, --help                this text\n"
    "DUR is 500ms, 10s, 5m, 1h or a number of seconds. Logs are JSON lines on stderr.\n";

enum {
    OPT_LISTEN = 256, OPT_TARGET, OPT_CERT, OPT_KEY, OPT_CACERT, OPT_ALLOW_ALL,
    OPT_NAME, OPT_HS_TIMEOUT, OPT_CONNECT_TIMEOUT, OPT_IDLE_TIMEOUT, OPT_CONFIG,
    OPT_WORKERS, OPT_DRAIN_TIMEOUT, OPT_MAX_CONNS, OPT_ALLOW_URI, OPT_ALLOW_DNS,
    OPT_ALLOW_CN, OPT_ALLOW_OU, OPT_ALLOW_SPKI, OPT_CRL, OPT_CRL_GRACE,
    OPT_VERIFY_DEPTH, OPT_PROXY_PROTOCOL, OPT_NO_WATCH, OPT_KEEP_REVOKED,
    OPT_EXPIRY_WARNING, OPT_SESSION_LIFETIME, OPT_USER,
    OPT_END_ /* keep last */
};
_Static_assert(OPT_END_ - OPT_LISTEN <= 64, "sd_cli_serve_parse: seen[] too small");

static const struct option sd_serve_opts[] = {
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "target", required_argument, NULL, OPT_TARGET },
    { "cert", required_argument, NULL, OPT_CERT },
    { "key", required_argument, NULL, OPT_KEY },
    { "cacert", required_argument, NULL, OPT_CACERT },
    { "allow-all", no_argument, NULL, OPT_ALLOW_ALL },
    { "allow-uri", required_argument, NULL, OPT_ALLOW_URI },
    { "allow-dns", required_argument, NULL, OPT_ALLOW_DNS },
    { "allow-cn", required_argument, NULL, OPT_ALLOW_CN },
    { "allow-ou", required_argument, NULL, OPT_ALLOW_OU },
    { "allow-spki", required_argument, NULL, OPT_ALLOW_SPKI },
    { "crl", required_argument, NULL, OPT_CRL },
    { "crl-grace", required_argument, NULL, OPT_CRL_GRACE },
    { "verify-depth", required_argument, NULL, OPT_VERIFY_DEPTH },
    { "proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL },
    { "name", required_argument, NULL, OPT_NAME },
    { "handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT },
    { "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
    { "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
    { "session-lifetime", required_argument, NULL, OPT_SESSION_LIFETIME },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "workers", required_argument, NULL, OPT_WORKERS },
    { "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
    { "max-conns", required_argument, NULL, OPT_MAX_CONNS },
    { "no-watch", no_argument, NULL, OPT_NO_WATCH },
    { "keep-revoked-connections", no_argument, NULL, OPT_KEEP_REVOKED },
    { "expiry-warning", required_argument, NULL, OPT_EXPIRY_WARNING },
    { "user", required_argument, NULL, OPT_USER },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

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

static const char *sd_cli_opt_name(int opt)
{
    const struct option *o;

    for (o = sd_serve_opts; o->name != NULL; o++)
        if (o->val == opt)
            return o->name;
    return "?";
}

int sd_cli_serve_parse(int argc, char **argv, struct sd_config *cfg,
                       struct sd_files *files, struct sd_err *err)
{
    struct sd_listener_conf *l;
    const char *config = NULL, *user = NULL;
    int opt, listener_flags = 0, workers_set = 0, drain_set = 0, maxc_set = 0;
    int no_watch = 0, keep_revoked = 0, expiry_set = 0;
    uint32_t workers = 0, drain = 0, maxc = 0, expiry = 0;
    unsigned char seen[64] = { 0 };

    if (sd_cli_refuse_weakening_flags(argc, argv, err) != 0)
        return -1;
    /* Flags fill listener 0; a config file replaces it (and may not be
     * combined with listener flags). */
    l = sd_config_add_listener(cfg, err);
    if (l == NULL)
        return -1;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", sd_serve_opts, NULL)) != -1) {
        char **slot = NULL;
        int rc = 0;

        /* A setting given twice is a mistake (a pasted line, a wrapper
         * adding its own): refuse it rather than let the last one win
         * silently. Rules and CRLs are lists, so they repeat. */
        if (opt >= OPT_LISTEN && opt < OPT_LISTEN + (int)sizeof(seen) &&
            opt != OPT_ALLOW_URI && opt != OPT_ALLOW_DNS && opt != OPT_ALLOW_CN &&
            opt != OPT_ALLOW_OU && opt != OPT_ALLOW_SPKI && opt != OPT_CRL) {
            if (seen[opt - OPT_LISTEN]++)
                return sd_err_set(err, "--%s is given more than once", sd_cli_opt_name(opt));
        }
        switch (opt) {
        case 'h':
            fputs(sd_serve_usage, stdout);
            return 1;
        case OPT_LISTEN: slot = &l->listen; break;
        case OPT_TARGET: slot = &l->target; break;
        case OPT_CERT: slot = &l->cert; break;
        case OPT_KEY: slot = &l->key; break;
        case OPT_CACERT: slot = &l->cacert; break;
        case OPT_NAME: slot = &l->name; break;
        case OPT_ALLOW_ALL:
            rc = sd_config_add_rule(l, "allow-all", "", err);
            break;
        case OPT_ALLOW_URI:
            rc = sd_config_add_rule(l, "allow-uri", optarg, err);
            break;
        case OPT_ALLOW_DNS:
            rc = sd_config_add_rule(l, "allow-dns", optarg, err);
            break;
        case OPT_ALLOW_CN:
            rc = sd_config_add_rule(l, "allow-cn", optarg, err);
            break;
        case OPT_ALLOW_OU:
            rc = sd_config_add_rule(l, "allow-ou", optarg, err);
            break;
        case OPT_ALLOW_SPKI:
            rc = sd_config_add_rule(l, "allow-spki", optarg, err);
            break;
        case OPT_CRL:
            rc = sd_config_add_crl(l, optarg, err);
            break;
        case OPT_CRL_GRACE:
            rc = sd_config_parse_seconds("--crl-grace", optarg, &l->crl_grace_s, err);
            break;
        case OPT_VERIFY_DEPTH:
            rc = sd_config_parse_uint("--verify-depth", optarg, 0, SD_MAX_VERIFY_DEPTH,
                                      &l->verify_depth, err);
            break;
        case OPT_PROXY_PROTOCOL:
            l->proxy_protocol = 1;
            break;
        case OPT_HS_TIMEOUT:
            rc = sd_config_parse_duration("--handshake-timeout", optarg,
                                          &l->handshake_timeout_ms, err);
            break;
        case OPT_CONNECT_TIMEOUT:
            rc = sd_config_parse_duration("--connect-timeout", optarg,
                                          &l->connect_timeout_ms, err);
            break;
        case OPT_IDLE_TIMEOUT:
            rc = sd_config_parse_duration("--idle-timeout", optarg,
                                          &l->idle_timeout_ms, err);
            break;
        case OPT_SESSION_LIFETIME:
            rc = sd_config_parse_duration_or_zero("--session-lifetime", optarg,
                                          &l->session_lifetime_ms, err);
            break;
        case OPT_CONFIG:
            config = optarg;
            continue;
        case OPT_WORKERS:
            if (sd_config_parse_uint("--workers", optarg, 1, SD_MAX_WORKERS, &workers, err) != 0)
                return -1;
            workers_set = 1;
            continue;
        case OPT_DRAIN_TIMEOUT:
            if (sd_config_parse_duration("--drain-timeout", optarg, &drain, err) != 0)
                return -1;
            drain_set = 1;
            continue;
        case OPT_MAX_CONNS:
            if (sd_config_parse_uint("--max-conns", optarg, 1, 1000000, &maxc, err) != 0)
                return -1;
            maxc_set = 1;
            continue;
        case OPT_NO_WATCH:
            no_watch = 1;
            continue;
        case OPT_KEEP_REVOKED:
            keep_revoked = 1;
            continue;
        case OPT_EXPIRY_WARNING:
            if (sd_config_parse_seconds("--expiry-warning", optarg, &expiry, err) != 0)
                return -1;
            expiry_set = 1;
            continue;
        case OPT_USER:
            user = optarg; /* resolved by the master at start */
            continue;
        case ':':
            return sd_err_set(err, "%s needs a value", argv[optind - 1]);
        default:
            return sd_err_set(err, "unknown option %s (see steeldoor serve --help)",
                              argv[optind - 1]);
        }
        if (rc == 0 && slot != NULL)
            rc = sd_config_set_str(slot, optarg, err);
        if (rc != 0)
            return -1;
        listener_flags = 1;
    }
    if (optind < argc)
        return sd_err_set(err, "unexpected argument '%s'", argv[optind]);
    if (config != NULL) {
        if (listener_flags)
            return sd_err_set(err, "--config cannot be combined with listener flags; "
                              "put the listener in the config file");
        sd_config_drop_listeners(cfg);
        if (sd_config_load_yaml(cfg, config, files, err) != 0)
            return -1;
    }
    if (workers_set)
        cfg->workers = (int)workers;
    if (drain_set)
        cfg->drain_timeout_ms = drain;
    if (maxc_set) {
        cfg->max_conns = maxc;
        cfg->max_conns_set = 1;
    }
    if (no_watch)
        cfg->watch = 0;
    if (keep_revoked)
        cfg->close_revoked = 0;
    if (expiry_set)
        cfg->expiry_warning_s = expiry;
    if (user != NULL && sd_config_set_str(&cfg->user, user, err) != 0)
        return -1;
    return 0;
}

int sd_cli_serve_main(int argc, char **argv)
{
    struct sd_source src = { argc, argv };
    struct sd_files *files;
    struct sd_config *cfg;
    struct sd_err err;
    int usage;

    files = sd_files_new();
    if (files == NULL) {
        fputs("steeldoor serve: out of memory\n", stderr);
        return 1;
    }
    cfg = sd_gen_parse(&src, files, &usage, &err);
    if (cfg == NULL) {
        sd_files_free(files);
        if (usage && strcmp(err.msg, "--help") == 0)
            return 0;
        fprintf(stderr, "steeldoor serve: %s\n", err.msg);
        return usage ? 2 : 1;
    }
    return sd_master_run(cfg, files, &src);
}
