/* cli_serve.c - `steeldoor serve`: flags or a config file, then the master. */
#include "sd/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/master.h"

static const char sd_serve_usage[] =
    "Usage: steeldoor serve --listen ADDR:PORT --target ADDR:PORT|unix:/PATH\n"
    "                       --cert FILE --key FILE --cacert FILE --allow-all [options]\n"
    "       steeldoor serve --config FILE [--workers N] [--drain-timeout DUR] [--max-conns N]\n"
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
    "  --cacert FILE             CA bundle that client certificates must chain to\n"
    "  --allow-all               admit any client whose certificate verifies\n"
    "                            (without an allow rule steeldoor refuses to start)\n"
    "  --name NAME               listener name in logs (default: the listen address)\n"
    "  --handshake-timeout DUR   default 10s\n"
    "  --connect-timeout DUR     backend connect, default 5s\n"
    "  --idle-timeout DUR        no bytes either way, default 5m\n"
    "Process:\n"
    "  --config FILE             YAML file with listeners (see docs/config.md)\n"
    "  --workers N               worker processes, default one per core\n"
    "  --drain-timeout DUR       on SIGTERM, wait this long for connections, default 30s\n"
    "  --max-conns N             connections per worker, default 10000\n"
    "  -h, --help                this text\n"
    "DUR is 500ms, 10s, 5m, 1h or a number of seconds. Logs are JSON lines on stderr.\n";

enum {
    OPT_LISTEN = 256, OPT_TARGET, OPT_CERT, OPT_KEY, OPT_CACERT, OPT_ALLOW_ALL,
    OPT_NAME, OPT_HS_TIMEOUT, OPT_CONNECT_TIMEOUT, OPT_IDLE_TIMEOUT, OPT_CONFIG,
    OPT_WORKERS, OPT_DRAIN_TIMEOUT, OPT_MAX_CONNS,
};

static const struct option sd_serve_opts[] = {
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "target", required_argument, NULL, OPT_TARGET },
    { "cert", required_argument, NULL, OPT_CERT },
    { "key", required_argument, NULL, OPT_KEY },
    { "cacert", required_argument, NULL, OPT_CACERT },
    { "allow-all", no_argument, NULL, OPT_ALLOW_ALL },
    { "name", required_argument, NULL, OPT_NAME },
    { "handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT },
    { "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
    { "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "workers", required_argument, NULL, OPT_WORKERS },
    { "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
    { "max-conns", required_argument, NULL, OPT_MAX_CONNS },
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

int sd_cli_serve_parse(int argc, char **argv, struct sd_config *cfg,
                       struct sd_err *err)
{
    struct sd_listener_conf *l = NULL;
    const char *config = NULL;
    int opt, listener_flags = 0, workers_set = 0;
    uint32_t workers = 0, drain = 0, maxc = 0;
    int drain_set = 0, maxc_set = 0;
    struct sd_listener_conf tmp;
    char *strs[6] = { NULL };
    int rc = -1;

    memset(&tmp, 0, sizeof(tmp));
    tmp.handshake_timeout_ms = SD_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    tmp.connect_timeout_ms = SD_DEFAULT_CONNECT_TIMEOUT_MS;
    tmp.idle_timeout_ms = SD_DEFAULT_IDLE_TIMEOUT_MS;
    if (sd_cli_refuse_weakening_flags(argc, argv, err) != 0)
        return -1;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", sd_serve_opts, NULL)) != -1) {
        char **slot = NULL;
        switch (opt) {
        case 'h':
            fputs(sd_serve_usage, stdout);
            rc = 1;
            goto out;
        case OPT_LISTEN: slot = &strs[0]; break;
        case OPT_TARGET: slot = &strs[1]; break;
        case OPT_CERT: slot = &strs[2]; break;
        case OPT_KEY: slot = &strs[3]; break;
        case OPT_CACERT: slot = &strs[4]; break;
        case OPT_NAME: slot = &strs[5]; break;
        case OPT_ALLOW_ALL: tmp.allow_all = 1; listener_flags = 1; break;
        case OPT_HS_TIMEOUT:
            if (sd_config_parse_duration("--handshake-timeout", optarg,
                                         &tmp.handshake_timeout_ms, err) != 0)
                goto out;
            listener_flags = 1;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (sd_config_parse_duration("--connect-timeout", optarg,
                                         &tmp.connect_timeout_ms, err) != 0)
                goto out;
            listener_flags = 1;
            break;
        case OPT_IDLE_TIMEOUT:
            if (sd_config_parse_duration("--idle-timeout", optarg,
                                         &tmp.idle_timeout_ms, err) != 0)
                goto out;
            listener_flags = 1;
            break;
        case OPT_CONFIG: config = optarg; break;
        case OPT_WORKERS:
            if (sd_config_parse_uint("--workers", optarg, 1, SD_MAX_WORKERS, &workers, err) != 0)
                goto out;
            workers_set = 1;
            break;
        case OPT_DRAIN_TIMEOUT:
            if (sd_config_parse_duration("--drain-timeout", optarg, &drain, err) != 0)
                goto out;
            drain_set = 1;
            break;
        case OPT_MAX_CONNS:
            if (sd_config_parse_uint("--max-conns", optarg, 1, 1000000, &maxc, err) != 0)
                goto out;
            maxc_set = 1;
            break;
        case ':':
            sd_err_set(err, "%s needs a value", argv[optind - 1]);
            goto out;
        default:
            sd_err_set(err, "unknown option %s (see steeldoor serve --help)",
                       argv[optind - 1]);
            goto out;
        }
        if (slot != NULL) {
            if (sd_config_set_str(slot, optarg, err) != 0)
                goto out;
            listener_flags = 1;
        }
    }
    if (optind < argc) {
        sd_err_set(err, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (config != NULL) {
        if (listener_flags) {
            sd_err_set(err, "--config cannot be combined with listener flags; "
                       "put the listener in the config file");
            goto out;
        }
        if (sd_config_load_yaml(cfg, config, err) != 0)
            goto out;
    } else {
        l = sd_config_add_listener(cfg, err);
        if (l == NULL)
            goto out;
        tmp.listen = strs[0]; tmp.target = strs[1]; tmp.cert = strs[2];
        tmp.key = strs[3]; tmp.cacert = strs[4]; tmp.name = strs[5];
        memset(strs, 0, sizeof(strs)); /* now owned by the config */
        *l = tmp;
    }
    if (workers_set)
        cfg->workers = (int)workers;
    if (drain_set)
        cfg->drain_timeout_ms = drain;
    if (maxc_set)
        cfg->max_conns = maxc;
    rc = 0;
out:
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(strs[i]);
    return rc;
}

int sd_cli_serve_main(int argc, char **argv)
{
    struct sd_config *cfg = sd_config_new();
    struct sd_err err;
    int rc;

    if (cfg == NULL) {
        fputs("steeldoor: out of memory\n", stderr);
        return 1;
    }
    rc = sd_cli_serve_parse(argc, argv, cfg, &err);
    if (rc == 1) {
        sd_config_free(cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "steeldoor serve: %s\n", err.msg);
        sd_config_free(cfg);
        return 2;
    }
    if (sd_config_validate(cfg, &err) != 0) {
        fprintf(stderr, "steeldoor serve: %s\n", err.msg);
        sd_config_free(cfg);
        return 1;
    }
    rc = sd_master_run(cfg);
    sd_config_free(cfg);
    return rc;
}
