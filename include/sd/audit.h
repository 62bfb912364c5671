/*
 * sd/audit.h - `steeldoor audit`: looks for the wooden back door in any
 * TLS endpoint that is supposed to require client certificates.
 *
 * The auditor is given one valid client certificate (the control). It
 * checks that the control gets in, then tries the ways in that a correct
 * mutual-TLS endpoint must refuse: no certificate, certificates it makes
 * up in memory (self-signed, unknown CA, expired, not yet valid, wrong
 * EKU, forged signature), old protocol versions, plaintext HTTP, session
 * resumption across SNI names, client renegotiation and forged identity
 * headers. See docs/audit.md.
 *
 * audit.c is the command line and the report and does not include
 * OpenSSL; audit_probe.c makes the certificates and runs the probes.
 * Everything below the first function is internal to those two files.
 */
#ifndef SD_AUDIT_H
#define SD_AUDIT_H

#include <stddef.h>

#include "sd/err.h"

/* Runs `steeldoor audit ARGS...`; argv[0] is "audit". Returns the process
 * exit status: 0 no open door, 1 at least one open door, 2 the audit could
 * not run (bad arguments, unreachable endpoint, control refused). */
int sd_audit_main(int argc, char **argv);

/* ------------------------------------------------ internal: audit*.c */

#define SD_AUDIT_NAMES_MAX 8    /* --servername given at most this often */
#define SD_AUDIT_TEXT_MAX  256  /* one "what happened" cell */
#define SD_AUDIT_PROBES_MAX 24

/* What a door means for the server's configuration: each probe that finds
 * a door names one; audit.c explains it (what to change in nginx, HAProxy,
 * steeldoor) under the table and in the JSON report. */
enum sd_audit_finding {
    SD_AUDIT_F_NONE = 0,
    SD_AUDIT_F_NO_CLIENT_AUTH,  /* handshake completed, no CertificateRequest */
    SD_AUDIT_F_OPTIONAL,        /* asked, let a client without a certificate in */
    SD_AUDIT_F_UNVERIFIED,      /* asked, let a bad certificate in */
    SD_AUDIT_F_LATE,            /* refused only after the handshake */
    SD_AUDIT_F_OLD_TLS,         /* TLS 1.0 or 1.1 accepted */
    SD_AUDIT_F_PLAINTEXT,       /* the TLS port answers plain HTTP */
    SD_AUDIT_F_SNI_RESUMPTION,  /* a session resumed under another name */
    SD_AUDIT_F_RENEGOTIATION,   /* client-initiated renegotiation accepted */
    SD_AUDIT_F_HEADERS,         /* forged identity headers reached the backend */
    SD_AUDIT_F_COUNT
};

enum sd_audit_verdict {
    SD_AUDIT_PASS = 0,      /* refused as it should be */
    SD_AUDIT_OPEN,          /* OPEN DOOR: got in */
    SD_AUDIT_LATE,          /* REFUSED LATE: got past the TLS layer, refused
                             * only afterwards (e.g. HTTP 400): a door too */
    SD_AUDIT_UNDETERMINED,  /* NOT DETERMINED: this probe cannot tell */
};

struct sd_audit_opts {
    const char *target;     /* HOST:PORT as given, for the report */
    char host[256];         /* without brackets */
    char port[8];
    const char *cacert;
    const char *cert;
    const char *key;
    const char *names[SD_AUDIT_NAMES_MAX];
    size_t n_names;
    int http;               /* --http: the endpoint speaks HTTP */
    unsigned int timeout_ms; /* per step: connect+handshake, then reading */
};

struct sd_audit_probe {
    const char *name;       /* "no-cert" */
    const char *expected;   /* "refused in the handshake" */
    char observed[SD_AUDIT_TEXT_MAX];
    enum sd_audit_verdict verdict;
    int no_connect;         /* could not even reach the endpoint */
    int cert_request;       /* a handshake got this far: 1 the server sent a
                             * CertificateRequest, 0 it did not; -1 unknown
                             * or not a handshake probe */
    enum sd_audit_finding finding; /* set with OPEN DOOR and REFUSED LATE */
};

struct sd_audit_report {
    struct sd_audit_probe probes[SD_AUDIT_PROBES_MAX];
    size_t n;
    char tls_version[16];   /* negotiated by the control */
};

/* Runs every probe in order and appends the results to rep. Returns 0 when
 * the audit ran (doors or not), -1 with err filled when it could not: bad
 * certificate files, endpoint unreachable, control refused. rep holds the
 * probes that ran even then. Defined in audit_probe.c. */
int sd_audit_run(const struct sd_audit_opts *o, struct sd_audit_report *rep,
                 struct sd_err *err) SD_MUST_CHECK;

#endif
