/*
 * sd/pki.h - `steeldoor pki`: a small development PKI.
 *
 * One directory holds one CA:
 *   ca.crt, ca.key         the CA (ECDSA P-256, self-signed)      sd_pki_init
 *   NAME.crt, NAME.key     leaf certificates signed by the CA     sd_pki_issue
 *   issued.txt             every serial ever issued, per name     sd_pki_issue
 *   revoked.txt            revoked serials, one per line          sd_pki_revoke
 *   crlnumber, crl.pem     the last CRL number and the CRL        sd_pki_crl
 *   .lock                  flock()ed by every command (never delete it)
 * Private keys are created 0600, everything else 0644; every file is
 * written to a temporary file in the same directory, fsynced and renamed
 * into place, so a reader never sees half a file.
 *
 * Every command holds an exclusive flock on DIR/.lock from its first read
 * to its last write, so concurrent commands run one after the other and
 * none loses another's update (a revocation, an issued serial, a CRL
 * number). A command waits at most SD_PKI_LOCK_WAIT_SECS for the lock.
 *
 * The directory and every file read from it must belong to the running
 * user (or root) and must not be writable by group or others; ca.key must
 * not be accessible by group or others at all; symbolic links inside the
 * directory are not followed. Otherwise another user could swap in their
 * own CA and have us sign with it. (The rule is ssh's StrictModes.)
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

/* Longest serial number in hex: RFC 5280 allows 20 octets. Ours are 16. */
#define SD_PKI_SERIAL_HEX_MAX 40

/* How long a command waits for another one to release DIR/.lock. */
#define SD_PKI_LOCK_WAIT_SECS 60

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
    int reissue;                /* NAME may already have a certificate */
};

/* Creates dir (0700) if missing and writes a new CA into it. Without force
 * the directory must be new or empty (apart from .lock): an existing CA,
 * or anything else, is never overwritten. With force, ca.key and ca.crt
 * are replaced and the rest is kept (issued.txt, revoked.txt, crlnumber:
 * CRL numbers keep increasing). cn NULL means "steeldoor dev CA". */
int sd_pki_init(const char *dir, const char *cn, int days, int force,
                struct sd_err *err) SD_MUST_CHECK;

/* Generates a key and a certificate signed by dir/ca.{crt,key}, records
 * its serial under NAME in dir/issued.txt, then writes dir/NAME.{key,crt}.
 * If NAME was issued before (dir/NAME.crt or .key exists, or issued.txt
 * lists NAME), it fails naming the existing certificate unless
 * req->reissue is set; then the files are replaced and every earlier
 * serial stays recorded, so that sd_pki_revoke by name still reaches the
 * old certificates. The new serial, in hex, goes to serial (when
 * non-NULL; SD_PKI_SERIAL_HEX_MAX + 1 bytes are enough). */
int sd_pki_issue(const struct sd_pki_issue_req *req, char *serial, size_t serial_size,
                 struct sd_err *err) SD_MUST_CHECK;

struct sd_pki_revoke_res {
    size_t revoked;  /* serials newly added to revoked.txt */
    size_t already;  /* serials that were already there */
};

/* Records certificates as revoked in dir/revoked.txt; takes effect with
 * the next sd_pki_crl. Exactly one of name and serial is given:
 *   name    every serial issued.txt lists for NAME, plus that of
 *           dir/NAME.crt (which must be signed by this CA);
 *   serial  one serial (hex, ':' separators allowed) from issued.txt.
 * Revoking twice is not an error: res (when non-NULL) counts the serials
 * newly revoked and those that already were. */
int sd_pki_revoke(const char *dir, const char *name, const char *serial,
                  struct sd_pki_revoke_res *res, struct sd_err *err) SD_MUST_CHECK;

/* Writes dir/crl.pem: a v2 CRL valid for `days`, listing every serial in
 * dir/revoked.txt. Its number is one above the larger of dir/crlnumber and
 * the number of the current dir/crl.pem, so numbers strictly increase even
 * if crlnumber was lost; *number (when non-NULL) is set to it. */
int sd_pki_crl(const char *dir, int days, unsigned long long *number,
               struct sd_err *err) SD_MUST_CHECK;

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
/* URI: one that `serve --allow-uri` can name exactly, checked with serve's
 * own validator (sd_policy_uri_valid without wildcards, sd/policy.h):
 * scheme://authority/segments, printable ASCII, at most SD_POLICY_MAX_NAME
 * bytes; no wildcard, empty, '.' or '..' segment, '%', query or fragment. */
int sd_pki_check_uri(const char *uri, struct sd_err *err) SD_MUST_CHECK;
/* Subject CN: 1..64 printable ASCII characters. */
int sd_pki_check_cn(const char *cn, struct sd_err *err) SD_MUST_CHECK;
/* Serial: 1..SD_PKI_SERIAL_HEX_MAX hex digits, optionally ':'-separated. */
int sd_pki_check_serial(const char *serial, struct sd_err *err) SD_MUST_CHECK;

#endif
