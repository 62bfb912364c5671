/*
 * audit.c - the `steeldoor audit` command line and its report (table or
 * JSON). The probes live in audit_probe.c; this file does not include
 * OpenSSL.
 *
 * Exit status: 0 no open door, 1 at least one door (OPEN DOOR or REFUSED
 * LATE), 2 the audit could not run.
 */
#include "sd/audit.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/cli.h" /* the usage text, shared with the man page */

#define SD_AUDIT_EXIT_OK    0
#define SD_AUDIT_EXIT_DOOR  1
#define SD_AUDIT_EXIT_ERROR 2

#define SD_AUDIT_TIMEOUT_DEFAULT 5000u
#define SD_AUDIT_TIMEOUT_MIN     100u
#define SD_AUDIT_TIMEOUT_MAX     120000u

enum {
    SD_AUDIT_OPT_CACERT = 256,
    SD_AUDIT_OPT_CERT,
    SD_AUDIT_OPT_KEY,
    SD_AUDIT_OPT_SERVERNAME,
    SD_AUDIT_OPT_HTTP,
    SD_AUDIT_OPT_JSON,
    SD_AUDIT_OPT_TIMEOUT,
};

const char sd_audit_usage[] =
    "usage: steeldoor audit HOST:PORT --cacert CA.pem --cert CLIENT.crt --key CLIENT.key\n"
    "                       [--servername NAME]... [--http] [--json] [--timeout DUR]\n"
    "\n"
    "Looks for the wooden back door in a TLS endpoint that should require client\n"
    "certificates. The given client certificate must be one the endpoint accepts\n"
    "(the control); the auditor then tries what must be refused: no certificate,\n"
    "certificates it makes up in memory (self-signed, unknown CA, expired, not yet\n"
    "valid, serverAuth-only, forged signature), TLS 1.0/1.1, plaintext HTTP,\n"
    "session resumption across SNI names, renegotiation and, with --http, forged\n"
    "identity headers. Nothing is written to disk.\n"
    "\n"
    "A handshake that completes although the server never sent a CertificateRequest\n"
    "is an open door, whatever the server does next. A refusal after the handshake\n"
    "counts only if it is an alert, or if the control was treated otherwise.\n"
    "\n"
    "  --cacert FILE        the CA (PEM) that issued the client certificate; its\n"
    "                       name is borrowed by the forgeries, and the server's\n"
    "                       certificate is checked against it for the report\n"
    "  --cert FILE          a valid client certificate (PEM, chain may follow)\n"
    "  --key FILE           its private key (PEM, unencrypted)\n"
    "  --servername NAME    SNI to send; give it twice (A, B) to test session\n"
    "                       resumption across names\n"
    "  --http               the endpoint speaks HTTP: also send forged identity\n"
    "                       headers and look for them in an echoing backend\n"
    "  --json               print a JSON report instead of the table\n"
    "  --timeout DUR        per probe: connect+handshake, then again for reading\n"
    "                       (\"5s\", \"500ms\", default 5s)\n"
    "  -h, --help           this text\n"
    "\n"
    "Verdicts: PASS, OPEN DOOR, REFUSED LATE (past the handshake, refused only\n"
    "afterwards: a door too), NOT DETERMINED.\n"
    "Exit status: 0 no open door, 1 a door was found, 2 the audit could not run.\n";

static const char *sd_audit_verdict_name(enum sd_audit_verdict v)
{
    switch (v) {
    case SD_AUDIT_PASS:
        return "PASS";
    case SD_AUDIT_OPEN:
        return "OPEN DOOR";
    case SD_AUDIT_LATE:
        return "REFUSED LATE";
    case SD_AUDIT_UNDETERMINED:
        break;
    }
    return "NOT DETERMINED";
}

/* "5", "5s", "500ms", "2m" -> milliseconds within the allowed range. */
static int sd_audit_parse_timeout(const char *s, unsigned int *ms, struct sd_err *err)
{
    unsigned long long v = 0, mult = 1000;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return sd_err_set(err, "--timeout '%s': not a duration (e.g. 5s, 500ms)", s);
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long long)(*p - '0');
        if (v > SD_AUDIT_TIMEOUT_MAX)
            return sd_err_set(err, "--timeout '%s': at most %us", s,
                              SD_AUDIT_TIMEOUT_MAX / 1000);
        p++;
    }
    if (strcmp(p, "ms") == 0)
        mult = 1;
    else if (strcmp(p, "s") == 0 || *p == '\0')
        mult = 1000;
    else if (strcmp(p, "m") == 0)
        mult = 60000;
    else
        return sd_err_set(err, "--timeout '%s': not a duration (e.g. 5s, 500ms)", s);
    v *= mult;
    if (v < SD_AUDIT_TIMEOUT_MIN || v > SD_AUDIT_TIMEOUT_MAX)
        return sd_err_set(err, "--timeout '%s': must be between %ums and %us", s,
                          SD_AUDIT_TIMEOUT_MIN, SD_AUDIT_TIMEOUT_MAX / 1000);
    *ms = (unsigned int)v;
    return 0;
}

/* HOST:PORT or [V6]:PORT into o->host and o->port. */
static int sd_audit_parse_target(const char *t, struct sd_audit_opts *o, struct sd_err *err)
{
    const char *colon, *hs = t, *he, *ps;
    size_t hlen, i;
    unsigned long port = 0;

    if (t[0] == '[') {
        he = strchr(t, ']');
        if (he == NULL || he[1] != ':')
            return sd_err_set(err, "'%s': expected [IPV6]:PORT", t);
        hs = t + 1;
        ps = he + 2;
    } else {
        colon = strrchr(t, ':');
        if (colon == NULL || strchr(t, ':') != colon)
            return sd_err_set(err, "'%s': expected HOST:PORT (IPv6 as [ADDR]:PORT)", t);
        he = colon;
        ps = colon + 1;
    }
    hlen = (size_t)(he - hs);
    if (hlen == 0 || hlen >= sizeof(o->host))
        return sd_err_set(err, "'%s': empty or too long host", t);
    if (ps[0] == '\0' || strlen(ps) > 5)
        return sd_err_set(err, "'%s': bad port", t);
    for (i = 0; ps[i] != '\0'; i++) {
        if (ps[i] < '0' || ps[i] > '9')
            return sd_err_set(err, "'%s': bad port", t);
        port = port * 10 + (unsigned long)(ps[i] - '0');
    }
    if (port == 0 || port > 65535)
        return sd_err_set(err, "'%s': port must be 1..65535", t);
    memcpy(o->host, hs, hlen);
    o->host[hlen] = '\0';
    snprintf(o->port, sizeof(o->port), "%lu", port);
    o->target = t;
    return 0;
}

/* Parses argv into o. 0, 1 for --help, or -1 with err (a usage error). */
static int sd_audit_parse(int argc, char **argv, struct sd_audit_opts *o, int *json,
                          struct sd_err *err)
{
    static const struct option opts[] = {
        { "cacert", required_argument, NULL, SD_AUDIT_OPT_CACERT },
        { "cert", required_argument, NULL, SD_AUDIT_OPT_CERT },
        { "key", required_argument, NULL, SD_AUDIT_OPT_KEY },
        { "servername", required_argument, NULL, SD_AUDIT_OPT_SERVERNAME },
        { "http", no_argument, NULL, SD_AUDIT_OPT_HTTP },
        { "json", no_argument, NULL, SD_AUDIT_OPT_JSON },
        { "timeout", required_argument, NULL, SD_AUDIT_OPT_TIMEOUT },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof(*o));
    o->timeout_ms = SD_AUDIT_TIMEOUT_DEFAULT;
    *json = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case SD_AUDIT_OPT_CACERT:
            o->cacert = optarg;
            break;
        case SD_AUDIT_OPT_CERT:
            o->cert = optarg;
            break;
        case SD_AUDIT_OPT_KEY:
            o->key = optarg;
            break;
        case SD_AUDIT_OPT_SERVERNAME:
            if (o->n_names >= SD_AUDIT_NAMES_MAX)
                return sd_err_set(err, "--servername given more than %d times",
                                  SD_AUDIT_NAMES_MAX);
            if (optarg[0] == '\0' || strlen(optarg) > 253)
                return sd_err_set(err, "--servername '%s': empty or longer than 253", optarg);
            o->names[o->n_names++] = optarg;
            break;
        case SD_AUDIT_OPT_HTTP:
            o->http = 1;
            break;
        case SD_AUDIT_OPT_JSON:
            *json = 1;
            break;
        case SD_AUDIT_OPT_TIMEOUT:
            if (sd_audit_parse_timeout(optarg, &o->timeout_ms, err) != 0)
                return -1;
            break;
        case 'h':
            return 1;
        default:
            if (optopt != 0 && optopt < 256)
                return sd_err_set(err, "unknown option '-%c'", optopt);
            return sd_err_set(err, "unknown option or missing value: '%s'",
                              argv[optind - 1]);
        }
    }
    /* getopt_long moves the operands behind the options: the target may
     * come anywhere on the line. */
    if (optind < argc && sd_audit_parse_target(argv[optind++], o, err) != 0)
        return -1;
    if (optind < argc)
        return sd_err_set(err, "unexpected argument '%s'", argv[optind]);
    if (o->target == NULL)
        return sd_err_set(err, "missing HOST:PORT");
    if (o->cacert == NULL || o->cert == NULL || o->key == NULL)
        return sd_err_set(err, "--cacert, --cert and --key are all required");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

static void sd_audit_json_str(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (s == NULL) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

struct sd_audit_tally {
    size_t pass, open, late, undetermined, no_connect;
};

static void sd_audit_count(const struct sd_audit_report *rep, struct sd_audit_tally *t)
{
    size_t i;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < rep->n; i++) {
        switch (rep->probes[i].verdict) {
        case SD_AUDIT_PASS:
            t->pass++;
            break;
        case SD_AUDIT_OPEN:
            t->open++;
            break;
        case SD_AUDIT_LATE:
            t->late++;
            break;
        case SD_AUDIT_UNDETERMINED:
            t->undetermined++;
            break;
        }
        if (rep->probes[i].no_connect)
            t->no_connect++;
    }
}

static void sd_audit_print_json(FILE *out, const struct sd_audit_opts *o,
                                const struct sd_audit_report *rep, int status,
                                const char *result, const char *error)
{
    size_t i;

    fputs("{\"target\":", out);
    sd_audit_json_str(out, o->target);
    fputs(",\"servernames\":[", out);
    for (i = 0; i < o->n_names; i++) {
        if (i > 0)
            fputc(',', out);
        sd_audit_json_str(out, o->names[i]);
    }
    fputs("],\"tls_version\":", out);
    sd_audit_json_str(out, rep->tls_version[0] != '\0' ? rep->tls_version : NULL);
    fprintf(out, ",\"timeout_ms\":%u,\"http\":%s,\"result\":", o->timeout_ms,
            o->http ? "true" : "false");
    sd_audit_json_str(out, result);
    fprintf(out, ",\"exit_status\":%d,\"error\":", status);
    sd_audit_json_str(out, error);
    fputs(",\"probes\":[", out);
    for (i = 0; i < rep->n; i++) {
        const struct sd_audit_probe *p = &rep->probes[i];
        fputs(i > 0 ? ",\n  {\"name\":" : "\n  {\"name\":", out);
        sd_audit_json_str(out, p->name);
        fputs(",\"expected\":", out);
        sd_audit_json_str(out, p->expected);
        fputs(",\"observed\":", out);
        sd_audit_json_str(out, p->observed);
        fputs(",\"verdict\":", out);
        sd_audit_json_str(out, sd_audit_verdict_name(p->verdict));
        fputs(",\"door\":", out);
        fputs(p->verdict == SD_AUDIT_OPEN || p->verdict == SD_AUDIT_LATE ? "true" : "false",
              out);
        fputs(",\"certificate_request\":", out);
        fputs(p->cert_request > 0 ? "true" : p->cert_request == 0 ? "false" : "null", out);
        fputc('}', out);
    }
    fputs("\n]}\n", out);
}

static void sd_audit_print_table(FILE *out, const struct sd_audit_opts *o,
                                 const struct sd_audit_report *rep, const char *result)
{
    size_t i, w_obs = 8;

    fprintf(out, "steeldoor audit %s", o->target);
    if (o->n_names > 0)
        fprintf(out, "  SNI %s", o->names[0]);
    if (rep->tls_version[0] != '\0')
        fprintf(out, "  control %s", rep->tls_version);
    fprintf(out, "  timeout %ums\n\n", o->timeout_ms);
    for (i = 0; i < rep->n; i++) {
        size_t l = strlen(rep->probes[i].observed);
        if (l > w_obs)
            w_obs = l;
    }
    if (w_obs > 72)
        w_obs = 72; /* longer cells just push their verdict right */
    fprintf(out, "%-17s %-28s %-*s  %s\n", "PROBE", "EXPECTED", (int)w_obs, "HAPPENED",
            "VERDICT");
    for (i = 0; i < rep->n; i++) {
        const struct sd_audit_probe *p = &rep->probes[i];
        fprintf(out, "%-17s %-28s %-*s  %s\n", p->name, p->expected, (int)w_obs,
                p->observed, sd_audit_verdict_name(p->verdict));
    }
    fprintf(out, "\nresult: %s\n", result);
}

int sd_audit_main(int argc, char **argv)
{
    struct sd_audit_opts o;
    struct sd_audit_report *rep = NULL;
    struct sd_audit_tally t;
    struct sd_err err = { "" };
    char result[SD_ERR_MAX + 64];
    const char *error = NULL;
    int json, r, status;

    r = sd_audit_parse(argc, argv, &o, &json, &err);
    if (r == 1) {
        fputs(sd_audit_usage, stdout);
        return SD_AUDIT_EXIT_OK;
    }
    if (r != 0) {
        fprintf(stderr, "steeldoor audit: %s\n\n%s", err.msg, sd_audit_usage);
        return SD_AUDIT_EXIT_ERROR;
    }
    rep = calloc(1, sizeof(*rep));
    if (rep == NULL) {
        fputs("steeldoor audit: out of memory\n", stderr);
        return SD_AUDIT_EXIT_ERROR;
    }
    /* A server that resets the connection must not kill the auditor. */
    signal(SIGPIPE, SIG_IGN);

    r = sd_audit_run(&o, rep, &err);
    sd_audit_count(rep, &t);
    if (r != 0) {
        status = SD_AUDIT_EXIT_ERROR;
        error = err.msg;
        snprintf(result, sizeof(result), "audit could not run: %s", err.msg);
    } else if (t.open + t.late > 0) {
        status = SD_AUDIT_EXIT_DOOR;
        snprintf(result, sizeof(result), "%zu door%s found (%zu OPEN DOOR, %zu REFUSED LATE)",
                 t.open + t.late, t.open + t.late == 1 ? "" : "s", t.open, t.late);
    } else if (t.no_connect > 0) {
        status = SD_AUDIT_EXIT_ERROR;
        snprintf(err.msg, sizeof(err.msg), "%s: %zu probe%s could not connect; the audit "
                 "is incomplete", o.target, t.no_connect, t.no_connect == 1 ? "" : "s");
        error = err.msg;
        snprintf(result, sizeof(result), "audit incomplete: %zu probe%s could not connect",
                 t.no_connect, t.no_connect == 1 ? "" : "s");
    } else {
        status = SD_AUDIT_EXIT_OK;
        snprintf(result, sizeof(result), "no open door (%zu PASS, %zu NOT DETERMINED)",
                 t.pass, t.undetermined);
    }
    if (json)
        sd_audit_print_json(stdout, &o, rep, status, result, error);
    else if (rep->n > 0)
        sd_audit_print_table(stdout, &o, rep, result);
    fflush(stdout);
    if (error != NULL)
        fprintf(stderr, "steeldoor audit: %s\n", error);
    free(rep);
    return status;
}
