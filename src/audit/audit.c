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
#include <sys/ioctl.h>
#include <unistd.h>

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
    "  --cacert FILE        the CA (PEM or DER) that issued the client certificate\n"
    "                       (checked before any probe); its name is borrowed by\n"
    "                       the forgeries, and the server's certificate is\n"
    "                       checked against it for the report\n"
    "  --cert FILE          a valid client certificate (PEM or DER, chain may follow)\n"
    "  --key FILE           its private key (PEM or DER, unencrypted; the auditor\n"
    "                       never asks for a passphrase). PKCS#12 and encrypted\n"
    "                       files are refused with the openssl command that\n"
    "                       converts them\n"
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
    "afterwards: a door too), NOT DETERMINED. Each door carries a note under the\n"
    "table: what it means and what to change in nginx, HAProxy and steeldoor.\n"
    "The table fits $COLUMNS (else the terminal, else 80 columns).\n"
    "Exit status: 0 no open door, 1 a door was found, 2 the audit could not run.\n";

/*
 * What each finding means and what to change, for the servers an auditor
 * meets most: every text below was checked against the probe that reports
 * it (audit_probe.c) and, where the test suite can run one, against the
 * real server (tests/integration/test_audit_explain.py). A fix that
 * cannot apply to a server says so ("cannot happen"): then what answered
 * is not that server, or something in front of it ends TLS.
 */
struct sd_audit_advice {
    const char *id;         /* stable name, in the JSON */
    const char *what;       /* what the door means */
    const char *nginx;
    const char *haproxy;
    const char *steeldoor;
    const char *other;      /* Go, Java, OpenSSL...; may be NULL */
};

static const struct sd_audit_advice sd_audit_advice[SD_AUDIT_F_COUNT] = {
    [SD_AUDIT_F_NO_CLIENT_AUTH] = {
        "no-client-auth",
        "The handshake completed without a CertificateRequest: the server never asked for "
        "a client certificate, so it lets every client in.",
        "in the server block: ssl_client_certificate CA.pem; and ssl_verify_client on; "
        "(nginx then answers 400 after the handshake: REFUSED LATE, since no nginx setting "
        "refuses in the handshake)",
        "on the bind line: ca-file CA.pem verify required (the default, verify none, never "
        "asks)",
        "cannot happen: steeldoor always asks for a client certificate and requires one. "
        "What answered is not steeldoor: check that HOST:PORT is its --listen address and "
        "that nothing in front of it ends TLS",
        "Go: ClientAuth: tls.RequireAndVerifyClientCert with ClientCAs; Java: "
        "setNeedClientAuth(true); OpenSSL: SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT",
    },
    [SD_AUDIT_F_OPTIONAL] = {
        "optional-client-cert",
        "The server asked for a client certificate but let a client without one in (an "
        "optional client certificate).",
        "ssl_verify_client on; instead of optional or optional_no_ca (nginx then answers "
        "400 after the handshake: REFUSED LATE)",
        "verify required instead of verify optional on the bind line",
        "cannot happen: steeldoor refuses a client without a certificate in the handshake "
        "(alert certificate required)",
        "Go: tls.RequireAndVerifyClientCert, not VerifyClientCertIfGiven; Java: "
        "setNeedClientAuth(true), not setWantClientAuth; Python: ssl.CERT_REQUIRED, not "
        "CERT_OPTIONAL; OpenSSL: add SSL_VERIFY_FAIL_IF_NO_PEER_CERT",
    },
    [SD_AUDIT_F_UNVERIFIED] = {
        "unverified-client-cert",
        "The server let in a client certificate that does not verify against the CA "
        "(self-signed, from another CA, or signed by a key that is not the CA's): it does "
        "not check the chain, or goes by the issuer's name alone.",
        "ssl_verify_client on; with ssl_client_certificate CA.pem; (not optional_no_ca, "
        "which lets any certificate through)",
        "remove ca-ignore-err and crt-ignore-err from the bind line; keep ca-file CA.pem "
        "verify required",
        "cannot happen: steeldoor verifies every client certificate against its --cacert "
        "in the handshake",
        "Go: tls.RequireAndVerifyClientCert, not RequireAnyClientCert; a verify callback "
        "must not accept a certificate the chain check refused",
    },
    [SD_AUDIT_F_LATE] = {
        "refused-after-handshake",
        "The TLS handshake let the client in, and only the application refused it "
        "afterwards (an HTTP error, or with TLS 1.2 an alert or a close after the server's "
        "Finished). A path or backend that does not check stays open.",
        "this is nginx with ssl_verify_client on (or optional, for a bad certificate): it "
        "completes every handshake and answers 400 afterwards; no nginx setting refuses in "
        "the handshake. Keep ssl_verify_client on, let no error_page for 400, 495 or 496 "
        "serve content, or end TLS in front of nginx with a server that refuses in the "
        "handshake (HAProxy verify required, steeldoor)",
        "ca-file CA.pem verify required on the bind line, without ca-ignore-err or "
        "crt-ignore-err: HAProxy then refuses in the handshake, not with an http-request "
        "deny afterwards",
        "cannot happen: steeldoor refuses in the handshake (with TLS 1.3 by an alert right "
        "after the client's Finished)",
        "verify in the TLS library, during the handshake: Go tls.RequireAndVerifyClientCert, "
        "Java setNeedClientAuth(true), OpenSSL SSL_VERIFY_PEER | "
        "SSL_VERIFY_FAIL_IF_NO_PEER_CERT",
    },
    [SD_AUDIT_F_OLD_TLS] = {
        "old-tls",
        "The server accepts TLS 1.0 or 1.1, deprecated since 2021 (RFC 8996).",
        "ssl_protocols TLSv1.2 TLSv1.3; in the http block (before nginx 1.23.4 the default "
        "includes TLSv1 and TLSv1.1)",
        "ssl-min-ver TLSv1.2 on the bind line or in ssl-default-bind-options; remove any "
        "ssl-min-ver TLSv1.0 or TLSv1.1, force-tlsv10, force-tlsv11",
        "cannot happen: steeldoor speaks TLS 1.2 and 1.3 only",
        "OpenSSL: SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); Go: MinVersion: "
        "tls.VersionTLS12",
    },
    [SD_AUDIT_F_PLAINTEXT] = {
        "plaintext-http",
        "The TLS port also answers plain HTTP: an HTTP server reads requests that never went "
        "through TLS. A 2xx answer is content served without any client certificate.",
        "built in, and no directive turns it off: a listen ... ssl port answers plain HTTP "
        "with 400 (\"The plain HTTP request was sent to HTTPS port\"). Let no error_page 497 "
        "serve content",
        "a bind line with ssl never answers plain HTTP: a rule routes plain-text connections "
        "to HTTP (tcp-request content or use_backend on req.ssl_hello_type); remove it",
        "cannot happen: steeldoor closes a plain-text connection without answering (log "
        "reason plaintext_http)",
        NULL,
    },
    [SD_AUDIT_F_SNI_RESUMPTION] = {
        "sni-resumption",
        "A session made under the first --servername was resumed under the second, without "
        "a new certificate check (the CVE-2025-23419 pattern). A door when the two names have "
        "different client-certificate rules.",
        "upgrade to 1.26.3, 1.27.4 or later, or a distribution build with the CVE-2025-23419 "
        "fix (it refuses such a resumption); until then give every server block that checks "
        "client certificates its own listen address:port",
        "turn resumption off on a bind line whose names have different client-certificate "
        "rules: no-tls-tickets on the bind line and tune.ssl.cachesize 0 in global (both: "
        "either alone still resumes)",
        "cannot happen: steeldoor binds each session to the name it was made under (the SNI "
        "name is part of the session id context)",
        NULL,
    },
    [SD_AUDIT_F_RENEGOTIATION] = {
        "renegotiation",
        "The server accepted a client-initiated renegotiation (TLS 1.2).",
        "cannot happen: nginx refuses client-initiated renegotiation. What answered is not "
        "nginx, or something in front of it ends TLS",
        "cannot happen: HAProxy rejects client-initiated renegotiation. What answered is not "
        "HAProxy, or something in front of it ends TLS",
        "cannot happen: steeldoor refuses renegotiation (SSL_OP_NO_RENEGOTIATION)",
        "OpenSSL: no SSL_OP_ALLOW_CLIENT_RENEGOTIATION (OpenSSL 3 refuses without it), or "
        "SSL_OP_NO_RENEGOTIATION (before OpenSSL 3 the only way); or offer TLS 1.3 only",
    },
    [SD_AUDIT_F_HEADERS] = {
        "forged-identity-headers",
        "Identity headers the client made up (named in the row) reached the backend. A "
        "backend that trusts them can be told any identity.",
        "where proxy_pass is, for each header named: proxy_set_header NAME \"\"; (an empty "
        "value removes it) or proxy_set_header NAME with nginx's own $ssl_client_ value",
        "in the frontend, for each header named: http-request del-header NAME, before any "
        "http-request set-header that sets the real value",
        "in L4 mode (the default) steeldoor passes the client's bytes through untouched: use "
        "--http (mode: http), which removes every client-sent copy of these headers, or let "
        "the backend trust none of them (with --proxy-protocol the identity comes in the "
        "PROXY v2 header)",
        NULL,
    },
};

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
        fputs(",\"finding\":", out);
        if (p->finding > SD_AUDIT_F_NONE && p->finding < SD_AUDIT_F_COUNT) {
            const struct sd_audit_advice *a = &sd_audit_advice[p->finding];
            const char *const kv[][2] = {
                {"id", a->id},       {"what", a->what},           {"nginx", a->nginx},
                {"haproxy", a->haproxy}, {"steeldoor", a->steeldoor}, {"other", a->other},
            };
            size_t k;

            for (k = 0; k < sizeof(kv) / sizeof(kv[0]); k++) {
                fprintf(out, "%s\"%s\":", k == 0 ? "{" : ",", kv[k][0]);
                sd_audit_json_str(out, kv[k][1]);
            }
            fputc('}', out);
        } else {
            fputs("null", out);
        }
        fputc('}', out);
    }
    fputs("\n]}\n", out);
}

/* ------------------------------------------------------------------ */
/* The table                                                           */

#define SD_AUDIT_WIDTH_DEFAULT 80
#define SD_AUDIT_WIDTH_MIN     60
#define SD_AUDIT_WIDTH_MAX     200

/* The width the table is made for: $COLUMNS, else the terminal's, else 80;
 * within 60..200. */
static size_t sd_audit_width(FILE *out)
{
    const char *env = getenv("COLUMNS");
    struct winsize ws;
    unsigned long w = 0;
    char *end = NULL;

    if (env != NULL && *env != '\0') {
        errno = 0;
        w = strtoul(env, &end, 10);
        if (errno != 0 || *end != '\0')
            w = 0;
    }
    if (w == 0 && isatty(fileno(out)) && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0)
        w = ws.ws_col;
    if (w == 0)
        w = SD_AUDIT_WIDTH_DEFAULT;
    if (w < SD_AUDIT_WIDTH_MIN)
        w = SD_AUDIT_WIDTH_MIN;
    if (w > SD_AUDIT_WIDTH_MAX)
        w = SD_AUDIT_WIDTH_MAX;
    return (size_t)w;
}

/*
 * Prints s from column col on, in lines that end by column width: the
 * next lines start at column indent. Breaks at spaces; a word longer than
 * a line is cut. Only printable ASCII is printed: a cell may quote the
 * server. At least 20 characters go on a line, whatever the width.
 */
static void sd_audit_wrap(FILE *out, const char *s, size_t col, size_t indent, size_t width)
{
    size_t len, take, room, i;

    for (;;) {
        room = width > col + 20 ? width - col : 20;
        while (*s == ' ')
            s++;
        len = strlen(s);
        if (len <= room) {
            take = len;
        } else {
            for (take = room; take > 0 && s[take] != ' '; take--)
                ;
            if (take == 0)
                take = room;
        }
        for (i = 0; i < take; i++) {
            unsigned char c = (unsigned char)s[i];
            fputc(c >= 0x20 && c < 0x7f ? c : '?', out);
        }
        s += take;
        while (*s == ' ')
            s++;
        fputc('\n', out);
        if (*s == '\0')
            return;
        fprintf(out, "%*s", (int)indent, "");
        col = indent;
    }
}

/* The note number of each finding in this report, in order of first
 * appearance; 0 for none. */
static size_t sd_audit_notes(const struct sd_audit_report *rep,
                             size_t note[SD_AUDIT_F_COUNT])
{
    size_t i, n = 0;

    memset(note, 0, sizeof(size_t) * SD_AUDIT_F_COUNT);
    for (i = 0; i < rep->n; i++) {
        enum sd_audit_finding f = rep->probes[i].finding;
        if (f > SD_AUDIT_F_NONE && f < SD_AUDIT_F_COUNT && note[f] == 0)
            note[f] = ++n;
    }
    return n;
}

static void sd_audit_print_note(FILE *out, const struct sd_audit_report *rep,
                                enum sd_audit_finding f, size_t num, size_t width)
{
    const struct sd_audit_advice *a = &sd_audit_advice[f];
    const char *label[] = { "nginx:", "HAProxy:", "steeldoor:", "other:" };
    const char *text[] = { a->nginx, a->haproxy, a->steeldoor, a->other };
    char head[SD_AUDIT_PROBES_MAX * 20 + 512];
    char tag[16];
    size_t i, off = 0, lw = 11, ind;

    snprintf(tag, sizeof(tag), "[%zu] ", num);
    ind = strlen(tag);
    for (i = 0; i < rep->n; i++) {
        if (rep->probes[i].finding != f)
            continue;
        off += (size_t)snprintf(head + off, sizeof(head) - off, "%s%s",
                                off > 0 ? ", " : "", rep->probes[i].name);
        if (off >= sizeof(head))
            off = sizeof(head) - 1;
    }
    snprintf(head + off, sizeof(head) - off, ": %s", a->what);
    fputs(tag, out);
    sd_audit_wrap(out, head, ind, ind, width);
    for (i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        if (text[i] == NULL)
            continue;
        fprintf(out, "%*s%-*s", (int)ind, "", (int)lw, label[i]);
        sd_audit_wrap(out, text[i], ind + lw, ind + lw, width);
    }
}

/*
 * PROBE, VERDICT, HAPPENED: the verdicts line up in one column whatever the
 * server said, and a long HAPPENED wraps within the width. A door's verdict
 * carries a note number; the notes under the table say what the finding
 * means and what to change in nginx, HAProxy and steeldoor.
 */
static void sd_audit_print_table(FILE *out, const struct sd_audit_opts *o,
                                 const struct sd_audit_report *rep, const char *result)
{
    size_t note[SD_AUDIT_F_COUNT];
    char head[1024];
    char verdict[48];
    size_t i, n_notes, width = sd_audit_width(out), w_name = 5, w_verdict = 7;
    enum sd_audit_finding f;

    n_notes = sd_audit_notes(rep, note);
    for (i = 0; i < rep->n; i++) {
        const struct sd_audit_probe *p = &rep->probes[i];
        size_t l = strlen(sd_audit_verdict_name(p->verdict));
        if (note[p->finding] > 0)
            l += (size_t)snprintf(verdict, sizeof(verdict), " [%zu]", note[p->finding]);
        if (l > w_verdict)
            w_verdict = l;
        if (strlen(p->name) > w_name)
            w_name = strlen(p->name);
    }

    snprintf(head, sizeof(head), "steeldoor audit %s%s%s%s%s  timeout %ums", o->target,
             o->n_names > 0 ? "  SNI " : "", o->n_names > 0 ? o->names[0] : "",
             rep->tls_version[0] != '\0' ? "  control " : "", rep->tls_version, o->timeout_ms);
    sd_audit_wrap(out, head, 0, 4, width);
    fputc('\n', out);
    fprintf(out, "%-*s  %-*s  %s\n", (int)w_name, "PROBE", (int)w_verdict, "VERDICT",
            "HAPPENED");
    for (i = 0; i < rep->n; i++) {
        const struct sd_audit_probe *p = &rep->probes[i];
        if (note[p->finding] > 0)
            snprintf(verdict, sizeof(verdict), "%s [%zu]", sd_audit_verdict_name(p->verdict),
                     note[p->finding]);
        else
            snprintf(verdict, sizeof(verdict), "%s", sd_audit_verdict_name(p->verdict));
        fprintf(out, "%-*s  %-*s  ", (int)w_name, p->name, (int)w_verdict, verdict);
        sd_audit_wrap(out, p->observed, w_name + w_verdict + 4, w_name + w_verdict + 4, width);
    }
    if (n_notes > 0) {
        fputs("\nWhat to change:\n", out);
        for (i = 1; i <= n_notes; i++)
            for (f = SD_AUDIT_F_NONE + 1; f < SD_AUDIT_F_COUNT; f++)
                if (note[f] == i) {
                    if (i > 1)
                        fputc('\n', out);
                    sd_audit_print_note(out, rep, f, i, width);
                }
    }
    fputc('\n', out);
    fputs("result: ", out);
    sd_audit_wrap(out, result, 8, 8, width);
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
