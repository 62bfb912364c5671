/*
 * sd/pki.h - `steeldoor pki`: a small development PKI.
 *
 * One directory holds one CA:
 *   ca.crt, ca.key         the CA (ECDSA P-256, self-signed)      sd_pki_init
 *   NAME.crt, NAME.key     leaf certificates signed by the CA     sd_pki_issue
 *   revoked.txt            revoked serials, one per line          sd_pki_revoke
 *   crlnumber, crl.pem     the last CRL number and the CRL        sd_pki_crl
 * Private keys are created 0600, everything else 0644; every file is
 * written to a temporary file in the same directory and renamed into
 * place, so a reader never sees half a file.
 *
 * This is a tool for tests and development, not a production CA: keys are
 * stored unencrypted.
 *
 * All functions follow sd/err.h: 0 on success, -1 with *err filled.
 */
#ifndef SD_PKI_H
#define SD_PKI_H

#include <stddef.h>

#include "sd/err.h"

/* Runs `steeldoor pki ARGS...`; argv[0] is "pki". Returns the process exit
 * status: 0 ok, 1 failure, 2 usage error. Errors go to stderr as
 * "steeldoor pki: <message>", help text to stdout. */
int sd_pki_main(int argc, char **argv);

/* Extended key usages of a leaf certificate (sd_pki_issue_req.usage). */
#define SD_PKI_SERVER 0x1u /* serverAuth */
#define SD_PKI_CLIENT 0x2u /* clientAuth */

/* Longest NAME accepted for a leaf certificate (file name stem). */
#define SD_PKI_NAME_MAX 64 /* also the longest CN, which defaults to NAME */

struct sd_pki_issue_req {
    const char *dir;            /* CA directory */
    const char *name;           /* writes dir/NAME.crt and dir/NAME.key */
    const char *cn;             /* subject CN; NULL means name */
    unsigned int usage;         /* SD_PKI_SERVER and/or SD_PKI_CLIENT */
    const char *const *dns;     /* subjectAltName dNSName entries */
    size_t n_dns;
    const char *const *ips;     /* iPAddress entries, IPv4 or IPv6 text */
    size_t n_ips;
    const char *const *uris;    /* uniformResourceIdentifier entries */
    size_t n_uris;
    int days;                   /* validity from now, > 0 */
};

/* Creates dir (0700) if missing and writes a new CA into it. Fails if
 * dir/ca.key exists, unless force is non-zero. cn NULL means
 * "steeldoor dev CA". */
int sd_pki_init(const char *dir, const char *cn, int days, int force,
                struct sd_err *err) SD_MUST_CHECK;

/* Generates a key and a certificate signed by dir/ca.{crt,key}; replaces
 * an existing dir/NAME.{crt,key}. */
int sd_pki_issue(const struct sd_pki_issue_req *req,
                 struct sd_err *err) SD_MUST_CHECK;

/* Appends the serial of dir/NAME.crt to dir/revoked.txt. Revoking a
 * certificate twice is not an error; *already (when non-NULL) is set to 1
 * then and to 0 otherwise. Takes effect with the next sd_pki_crl. */
int sd_pki_revoke(const char *dir, const char *name, int *already,
                  struct sd_err *err) SD_MUST_CHECK;

/* Writes dir/crl.pem: a v2 CRL valid for `days`, listing every serial in
 * dir/revoked.txt, numbered one above the previous one (dir/crlnumber). */
int sd_pki_crl(const char *dir, int days, struct sd_err *err) SD_MUST_CHECK;

/* Argument checks, shared by the library and the command line so that the
 * command line can report bad input as a usage error before doing work. */

/* NAME: 1..SD_PKI_NAME_MAX of [A-Za-z0-9._-], not starting with '.', and
 * not "ca" (which would overwrite the CA). */
int sd_pki_check_name(const char *name, struct sd_err *err) SD_MUST_CHECK;
/* DNS name: labels of [A-Za-z0-9_-] separated by dots, at most 253
 * characters, optionally starting with a "*." wildcard label. */
int sd_pki_check_dns(const char *dns, struct sd_err *err) SD_MUST_CHECK;
/* IP address: anything inet_pton accepts as IPv4 or IPv6. */
int sd_pki_check_ip(const char *ip, struct sd_err *err) SD_MUST_CHECK;
/* URI: "scheme:rest" with printable ASCII and no spaces. */
int sd_pki_check_uri(const char *uri, struct sd_err *err) SD_MUST_CHECK;
/* Subject CN: 1..64 printable ASCII characters. */
int sd_pki_check_cn(const char *cn, struct sd_err *err) SD_MUST_CHECK;

#endif
