/*
 * pki_cli.c - the `steeldoor pki` command line: flags, help and exit codes.
 * The work is done by pki.c; this file only turns argv into calls and
 * sd_err messages into "steeldoor pki: ..." lines. It does not include
 * OpenSSL.
 *
 * Exit status: 0 ok, 1 the operation failed, 2 the command line is wrong
 * (checked here before any file is touched).
 */
#include "sd/pki.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/cli.h" /* the usage texts, shared with the man page */

#define SD_PKI_EXIT_OK    0
#define SD_PKI_EXIT_FAIL  1
#define SD_PKI_EXIT_USAGE 2
#define SD_PKI_DAYS_MAX   36500 /* a hundred years is already absurd */

/* Long-only options get values outside the char range. */
enum {
    SD_PKI_OPT_DIR = 256,
    SD_PKI_OPT_DAYS,
    SD_PKI_OPT_CN,
    SD_PKI_OPT_FORCE,
    SD_PKI_OPT_NAME,
    SD_PKI_OPT_SERVER,
    SD_PKI_OPT_CLIENT,
    SD_PKI_OPT_DNS,
    SD_PKI_OPT_IP,
    SD_PKI_OPT_URI,
    SD_PKI_OPT_REISSUE,
    SD_PKI_OPT_SERIAL,
};

const char sd_pki_usage_main[] =
    "usage: steeldoor pki COMMAND [OPTIONS]\n"
    "\n"
    "A small development PKI. One directory holds one CA and everything it\n"
    "issued. Keys are ECDSA P-256, stored unencrypted with mode 0600; do not\n"
    "use it for production certificates.\n"
    "\n"
    "commands:\n"
    "  init    create the CA: DIR/ca.crt, DIR/ca.key\n"
    "  issue   issue a server and/or client certificate: DIR/NAME.crt, DIR/NAME.key\n"
    "  revoke  record certificates as revoked in DIR/revoked.txt\n"
    "  crl     write DIR/crl.pem listing every revoked certificate\n"
    "\n"
    "Commands on one DIR may run concurrently: each holds a lock on DIR/.lock\n"
    "(waiting at most 60 s for it), so none loses another's changes.\n"
    "DIR and the files read from it must belong to you (or root) and must not\n"
    "be writable by group or others; DIR/ca.key must be mode 0600 or stricter.\n"
    "Anything else is refused, as ssh refuses such keys.\n"
    "A CA brought from elsewhere may be PEM or DER; an encrypted key or a\n"
    "PKCS#12 bundle is refused with the openssl command that converts it\n"
    "(no passphrase is ever asked for).\n"
    "\n"
    "Run 'steeldoor pki COMMAND --help' for a command's options.\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";

const char sd_pki_usage_init[] =
    "usage: steeldoor pki init --dir DIR [--days N] [--cn NAME] [--force]\n"
    "\n"
    "Creates a self-signed CA in DIR (created with mode 0700 if missing):\n"
    "DIR/ca.key (mode 0600) and DIR/ca.crt. DIR must be new or empty.\n"
    "\n"
    "  --dir DIR    CA directory\n"
    "  --days N     validity in days (default 3650)\n"
    "  --cn NAME    subject common name (default \"steeldoor dev CA\")\n"
    "  --force      replace the CA in an existing DIR (other files are kept);\n"
    "               certificates issued by the old CA will no longer verify\n";

const char sd_pki_usage_issue[] =
    "usage: steeldoor pki issue --dir DIR --name NAME (--server | --client)...\n"
    "                           [--dns NAME]... [--ip ADDR]... [--uri URI]...\n"
    "                           [--cn CN] [--days N] [--reissue]\n"
    "\n"
    "Issues DIR/NAME.crt and DIR/NAME.key (mode 0600), signed by DIR/ca.crt and\n"
    "DIR/ca.key, and records the serial under NAME in DIR/issued.txt (one line\n"
    "per certificate: SERIAL-HEX ISSUED-AT-UNIX-TIME NAME). Prints the serial.\n"
    "\n"
    "  --dir DIR    CA directory\n"
    "  --name NAME  file name stem: A-Z a-z 0-9 . _ -, not starting with '.',\n"
    "               not \"ca\"\n"
    "  --server     allow TLS server authentication (EKU serverAuth)\n"
    "  --client     allow TLS client authentication (EKU clientAuth);\n"
    "               at least one of --server/--client, both allowed\n"
    "  --dns NAME   add a DNS subjectAltName (repeatable; \"*.x\" allowed)\n"
    "  --ip ADDR    add an IPv4 or IPv6 subjectAltName (repeatable)\n"
    "  --uri URI    add a URI subjectAltName, e.g. spiffe://... (repeatable)\n"
    "  --cn CN      subject common name (default NAME)\n"
    "  --days N     validity in days (default 365); the certificate is valid\n"
    "               from 5 minutes ago to allow for clock skew\n"
    "  --reissue    NAME already has a certificate: issue a new one and replace\n"
    "               the NAME files. The old certificate stays valid until revoked;\n"
    "               'revoke --name NAME' revokes every certificate NAME was issued.\n"
    "               Without --reissue, an existing NAME is an error.\n";

const char sd_pki_usage_revoke[] =
    "usage: steeldoor pki revoke --dir DIR (--name NAME | --serial HEX)\n"
    "\n"
    "Records certificates as revoked by appending lines to DIR/revoked.txt;\n"
    "run 'steeldoor pki crl' afterwards to publish them. With --name, every\n"
    "certificate ever issued to NAME (all its serials in DIR/issued.txt, and\n"
    "DIR/NAME.crt); with --serial, that one certificate.\n"
    "DIR/revoked.txt is plain text, one revoked certificate per line:\n"
    "\n"
    "    SERIAL-HEX REVOKED-AT-UNIX-TIME NAME\n"
    "\n"
    "Lines starting with '#' are comments. Deleting a line un-revokes the\n"
    "certificate with the next CRL. Revoking twice is harmless.\n"
    "\n"
    "  --dir DIR    CA directory\n"
    "  --name NAME  every certificate issued to NAME; DIR/NAME.crt, if present,\n"
    "               must be issued by DIR/ca.crt\n"
    "  --serial HEX one certificate, by its serial from DIR/issued.txt\n"
    "               (as 'pki issue' printed it; ':' separators allowed)\n";

const char sd_pki_usage_crl[] =
    "usage: steeldoor pki crl --dir DIR [--days N]\n"
    "\n"
    "Writes DIR/crl.pem: a v2 CRL signed by the CA, listing every serial in\n"
    "DIR/revoked.txt. Its CRL number is one more than the number kept in\n"
    "DIR/crlnumber (or in the current DIR/crl.pem, if larger), which is then\n"
    "updated, so numbers strictly increase. Re-run before nextUpdate.\n"
    "\n"
    "  --dir DIR    CA directory\n"
    "  --days N     days until nextUpdate (default 7)\n";

static int sd_pki_cli_fail(const struct sd_err *err)
{
    fprintf(stderr, "steeldoor pki: %s\n", err->msg);
    return SD_PKI_EXIT_FAIL;
}

static int sd_pki_cli_usage_err(const char *cmd, const char *fmt, ...)
    SD_PRINTF(2, 3);

static int sd_pki_cli_usage_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("steeldoor pki: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'steeldoor pki %s--help'.\n", cmd);
    return SD_PKI_EXIT_USAGE;
}

/* Reports a getopt_long failure. A bad short option is named by optopt
 * (optind may still point at its cluster, e.g. "-xh"); a bad long option
 * leaves optopt 0 or our value, and optind just past the culprit. */
static int sd_pki_cli_bad_opt(const char *cmd, int c, char **argv)
{
    const char *arg = argv[optind - 1];

    if (c == '?' && optopt > 0 && optopt < 256)
        return sd_pki_cli_usage_err(cmd, "unknown option '-%c'", optopt);
    if (c == ':')
        return sd_pki_cli_usage_err(cmd, "option '%s' needs a value", arg);
    return sd_pki_cli_usage_err(cmd, "unknown option '%s'", arg);
}

static int sd_pki_cli_days(const char *cmd, const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < 1 || v > SD_PKI_DAYS_MAX)
        return sd_pki_cli_usage_err(cmd, "--days '%s' is not a number of days "
                                    "from 1 to %d", s, SD_PKI_DAYS_MAX);
    *out = (int)v;
    return 0;
}

/* Extra arguments and a missing --dir are the same mistake in every command. */
static int sd_pki_cli_common(const char *cmd, int argc, char **argv, const char *dir)
{
    if (optind < argc)
        return sd_pki_cli_usage_err(cmd, "unexpected argument '%s'", argv[optind]);
    if (dir == NULL || dir[0] == '\0')
        return sd_pki_cli_usage_err(cmd, "--dir is required");
    return 0;
}

/* Resets getopt for a fresh scan; GNU getopt needs 0 (not 1) to also
 * forget its internal state from an earlier, possibly aborted, scan.
 * Errors are reported by us, in our own format. */
static void sd_pki_cli_getopt_reset(void)
{
    optind = 0;
    opterr = 0;
}

static int sd_pki_cli_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, SD_PKI_OPT_DIR},
        {"days", required_argument, NULL, SD_PKI_OPT_DAYS},
        {"cn", required_argument, NULL, SD_PKI_OPT_CN},
        {"force", no_argument, NULL, SD_PKI_OPT_FORCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "init ";
    const char *dir = NULL, *cn = NULL;
    int days = 3650, force = 0, c;
    struct sd_err err;

    sd_pki_cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_PKI_OPT_DIR: dir = optarg; break;
        case SD_PKI_OPT_CN: cn = optarg; break;
        case SD_PKI_OPT_FORCE: force = 1; break;
        case SD_PKI_OPT_DAYS:
            if (sd_pki_cli_days(cmd, optarg, &days) != 0)
                return SD_PKI_EXIT_USAGE;
            break;
        case 'h':
            fputs(sd_pki_usage_init, stdout);
            return SD_PKI_EXIT_OK;
        default:
            return sd_pki_cli_bad_opt(cmd, c, argv);
        }
    }
    if (sd_pki_cli_common(cmd, argc, argv, dir) != 0)
        return SD_PKI_EXIT_USAGE;
    if (cn != NULL && sd_pki_check_cn(cn, &err) != 0)
        return sd_pki_cli_usage_err(cmd, "--cn: %s", err.msg);
    if (sd_pki_init(dir, cn, days, force, &err) != 0)
        return sd_pki_cli_fail(&err);
    printf("wrote %s/ca.crt and %s/ca.key\n", dir, dir);
    return SD_PKI_EXIT_OK;
}

static int sd_pki_cli_issue(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, SD_PKI_OPT_DIR},
        {"name", required_argument, NULL, SD_PKI_OPT_NAME},
        {"server", no_argument, NULL, SD_PKI_OPT_SERVER},
        {"client", no_argument, NULL, SD_PKI_OPT_CLIENT},
        {"dns", required_argument, NULL, SD_PKI_OPT_DNS},
        {"ip", required_argument, NULL, SD_PKI_OPT_IP},
        {"uri", required_argument, NULL, SD_PKI_OPT_URI},
        {"cn", required_argument, NULL, SD_PKI_OPT_CN},
        {"days", required_argument, NULL, SD_PKI_OPT_DAYS},
        {"reissue", no_argument, NULL, SD_PKI_OPT_REISSUE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "issue ";
    struct sd_pki_issue_req req = {.days = 365};
    struct sd_err err;
    char serial[SD_PKI_SERIAL_HEX_MAX + 1];
    const char **dns = NULL, **ips = NULL, **uris = NULL;
    int rc = SD_PKI_EXIT_USAGE, c;

    /* Each list can hold at most one entry per argument. */
    dns = calloc((size_t)argc, sizeof(*dns));
    ips = calloc((size_t)argc, sizeof(*ips));
    uris = calloc((size_t)argc, sizeof(*uris));
    if (dns == NULL || ips == NULL || uris == NULL) {
        fprintf(stderr, "steeldoor pki: out of memory\n");
        rc = SD_PKI_EXIT_FAIL;
        goto out;
    }
    sd_pki_cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_PKI_OPT_DIR: req.dir = optarg; break;
        case SD_PKI_OPT_NAME: req.name = optarg; break;
        case SD_PKI_OPT_CN: req.cn = optarg; break;
        case SD_PKI_OPT_SERVER: req.usage |= SD_PKI_SERVER; break;
        case SD_PKI_OPT_CLIENT: req.usage |= SD_PKI_CLIENT; break;
        case SD_PKI_OPT_REISSUE: req.reissue = 1; break;
        case SD_PKI_OPT_DNS:
            if (sd_pki_check_dns(optarg, &err) != 0) {
                sd_pki_cli_usage_err(cmd, "--dns: %s", err.msg);
                goto out;
            }
            dns[req.n_dns++] = optarg;
            break;
        case SD_PKI_OPT_IP:
            if (sd_pki_check_ip(optarg, &err) != 0) {
                sd_pki_cli_usage_err(cmd, "--ip: %s", err.msg);
                goto out;
            }
            ips[req.n_ips++] = optarg;
            break;
        case SD_PKI_OPT_URI:
            if (sd_pki_check_uri(optarg, &err) != 0) {
                sd_pki_cli_usage_err(cmd, "--uri: %s", err.msg);
                goto out;
            }
            uris[req.n_uris++] = optarg;
            break;
        case SD_PKI_OPT_DAYS:
            if (sd_pki_cli_days(cmd, optarg, &req.days) != 0)
                goto out;
            break;
        case 'h':
            fputs(sd_pki_usage_issue, stdout);
            rc = SD_PKI_EXIT_OK;
            goto out;
        default:
            sd_pki_cli_bad_opt(cmd, c, argv);
            goto out;
        }
    }
    if (sd_pki_cli_common(cmd, argc, argv, req.dir) != 0)
        goto out;
    if (req.name == NULL) {
        sd_pki_cli_usage_err(cmd, "--name is required");
        goto out;
    }
    if (sd_pki_check_name(req.name, &err) != 0) {
        sd_pki_cli_usage_err(cmd, "--name: %s", err.msg);
        goto out;
    }
    if (sd_pki_check_cn(req.cn != NULL ? req.cn : req.name, &err) != 0) {
        sd_pki_cli_usage_err(cmd, "%s: %s", req.cn != NULL ? "--cn" : "--name", err.msg);
        goto out;
    }
    if (req.usage == 0) {
        sd_pki_cli_usage_err(cmd, "--server or --client (or both) is required");
        goto out;
    }
    req.dns = dns;
    req.ips = ips;
    req.uris = uris;
    if (sd_pki_issue(&req, serial, sizeof(serial), &err) != 0) {
        rc = sd_pki_cli_fail(&err);
        goto out;
    }
    printf("wrote %s/%s.crt and %s/%s.key (serial %s)\n", req.dir, req.name, req.dir,
           req.name, serial);
    rc = SD_PKI_EXIT_OK;
out:
    free(dns);
    free(ips);
    free(uris);
    return rc;
}

static int sd_pki_cli_revoke(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, SD_PKI_OPT_DIR},
        {"name", required_argument, NULL, SD_PKI_OPT_NAME},
        {"serial", required_argument, NULL, SD_PKI_OPT_SERIAL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "revoke ";
    const char *dir = NULL, *name = NULL, *serial = NULL;
    struct sd_pki_revoke_res res;
    struct sd_err err;
    int c;

    sd_pki_cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_PKI_OPT_DIR: dir = optarg; break;
        case SD_PKI_OPT_NAME: name = optarg; break;
        case SD_PKI_OPT_SERIAL: serial = optarg; break;
        case 'h':
            fputs(sd_pki_usage_revoke, stdout);
            return SD_PKI_EXIT_OK;
        default:
            return sd_pki_cli_bad_opt(cmd, c, argv);
        }
    }
    if (sd_pki_cli_common(cmd, argc, argv, dir) != 0)
        return SD_PKI_EXIT_USAGE;
    if ((name == NULL) == (serial == NULL))
        return sd_pki_cli_usage_err(cmd, "exactly one of --name and --serial is required");
    if (name != NULL && sd_pki_check_name(name, &err) != 0)
        return sd_pki_cli_usage_err(cmd, "--name: %s", err.msg);
    if (serial != NULL && sd_pki_check_serial(serial, &err) != 0)
        return sd_pki_cli_usage_err(cmd, "--serial: %s", err.msg);
    if (sd_pki_revoke(dir, name, serial, &res, &err) != 0)
        return sd_pki_cli_fail(&err);
    if (res.revoked == 0)
        printf("%s: already revoked (%zu certificate%s)\n",
               name != NULL ? name : serial, res.already, res.already == 1 ? "" : "s");
    else
        printf("revoked %zu certificate%s of %s (%zu already were); run "
               "'steeldoor pki crl --dir %s' to publish\n", res.revoked,
               res.revoked == 1 ? "" : "s", name != NULL ? name : serial, res.already,
               dir);
    return SD_PKI_EXIT_OK;
}

static int sd_pki_cli_crl(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, SD_PKI_OPT_DIR},
        {"days", required_argument, NULL, SD_PKI_OPT_DAYS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "crl ";
    const char *dir = NULL;
    struct sd_err err;
    unsigned long long number;
    int days = 7, c;

    sd_pki_cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_PKI_OPT_DIR: dir = optarg; break;
        case SD_PKI_OPT_DAYS:
            if (sd_pki_cli_days(cmd, optarg, &days) != 0)
                return SD_PKI_EXIT_USAGE;
            break;
        case 'h':
            fputs(sd_pki_usage_crl, stdout);
            return SD_PKI_EXIT_OK;
        default:
            return sd_pki_cli_bad_opt(cmd, c, argv);
        }
    }
    if (sd_pki_cli_common(cmd, argc, argv, dir) != 0)
        return SD_PKI_EXIT_USAGE;
    if (sd_pki_crl(dir, days, &number, &err) != 0)
        return sd_pki_cli_fail(&err);
    printf("wrote %s/crl.pem (CRL number %llu)\n", dir, number);
    return SD_PKI_EXIT_OK;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} sd_pki_cmds[] = {
    {"init", sd_pki_cli_init},
    {"issue", sd_pki_cli_issue},
    {"revoke", sd_pki_cli_revoke},
    {"crl", sd_pki_cli_crl},
};

int sd_pki_main(int argc, char **argv)
{
    size_t i;

    if (argc < 2 || argv[1] == NULL) {
        fputs(sd_pki_usage_main, stderr);
        return SD_PKI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(sd_pki_usage_main, stdout);
        return SD_PKI_EXIT_OK;
    }
    for (i = 0; i < sizeof(sd_pki_cmds) / sizeof(sd_pki_cmds[0]); i++)
        if (strcmp(argv[1], sd_pki_cmds[i].name) == 0)
            /* The command sees itself as argv[0], like a program would. */
            return sd_pki_cmds[i].run(argc - 1, argv + 1);
    return sd_pki_cli_usage_err("", "unknown command '%s'", argv[1]);
}
