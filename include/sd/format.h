/*
 * sd/format.h - what a certificate, key or CRL file holds, told from its
 * bytes (never from its name), and reading it: PEM or DER alike. A file
 * that holds something else (a PKCS#12 bundle, an encrypted key, a CSR,
 * the other file of a cert/key pair, nothing) is named with what it holds
 * and the command that fixes it; nothing here ever prompts for a
 * passphrase. One module for everything steeldoor reads: serve and
 * connect (tls/load.c), the PKI (pki/pki.c) and the auditor.
 *
 * The OpenSSL types appear only as incomplete struct tags (X509 is struct
 * x509_st, EVP_PKEY struct evp_pkey_st, X509_CRL struct X509_crl_st), so
 * this header includes no OpenSSL header.
 */
#ifndef SD_FORMAT_H
#define SD_FORMAT_H

#include <stddef.h>

#include "sd/err.h"

struct x509_st;
struct evp_pkey_st;
struct X509_crl_st;

/* What a file holds (bits: a PEM file may hold several things). */
#define SD_FORMAT_CERT    0x001u /* CERTIFICATE, X509 CERTIFICATE */
#define SD_FORMAT_TRUSTED 0x002u /* OpenSSL's TRUSTED CERTIFICATE */
#define SD_FORMAT_KEY     0x004u /* an unencrypted private key */
#define SD_FORMAT_KEY_ENC 0x008u /* an encrypted private key */
#define SD_FORMAT_CRL     0x010u
#define SD_FORMAT_P12     0x020u /* PKCS#12 (.p12, .pfx) */
#define SD_FORMAT_P7      0x040u /* PKCS#7 (.p7b, .p7c) */
#define SD_FORMAT_CSR     0x080u
#define SD_FORMAT_PUBKEY  0x100u
#define SD_FORMAT_OTHER   0x200u /* PEM of another label, DER of no known kind */

enum sd_format_enc { SD_FORMAT_EMPTY, SD_FORMAT_PEM, SD_FORMAT_DER, SD_FORMAT_TEXT,
                     SD_FORMAT_BINARY };

struct sd_format {
    enum sd_format_enc enc;
    unsigned kinds;  /* SD_FORMAT_* bits */
    char label[48];  /* PEM: the first label of no known kind */
};

/* What a reader was asked for; the noun goes into messages. */
enum sd_format_want { SD_FORMAT_WANT_CERT, SD_FORMAT_WANT_KEY, SD_FORMAT_WANT_CA,
                      SD_FORMAT_WANT_CRL };

/* A passphrase callback (OpenSSL's pem_password_cb) that refuses: give it
 * to every PEM read and SSL_CTX, in place of OpenSSL's default, which
 * prompts on the terminal. Returns -1. */
int sd_format_no_passphrase(char *buf, int size, int rwflag, void *u);

/* Fills *f with what data[len] holds. Reads nothing beyond len. */
void sd_format_sniff(const void *data, size_t len, struct sd_format *f);

/* buf[size] = why path is not what want asked for, from what f says it
 * holds: a sentence to put after the path ("is empty: ...", "holds a
 * private key, not a certificate: are --cert and --key swapped?"), with
 * the command that fixes it when there is one. swap names the pair for
 * the swap hint ("--cert and --key"); NULL gives no hint. */
void sd_format_why(char *buf, size_t size, const char *path, const struct sd_format *f,
                   enum sd_format_want want, const char *swap);

/* err = "PATH <why>" (sd_format_why); returns -1. */
int sd_format_not(struct sd_err *err, const char *path, const struct sd_format *f,
                  enum sd_format_want want, const char *swap);

/* Called with each certificate read, numbered from 1; takes x (frees it
 * or keeps it), success or not. Returns 0, or -1 with err set to stop. */
typedef int (*sd_format_cert_fn)(struct x509_st *x, int index, void *arg, struct sd_err *err);

/* Reads every certificate of data[len] (path names it in messages): PEM
 * (every CERTIFICATE block, other blocks skipped; the first may be a
 * TRUSTED CERTIFICATE when want is SD_FORMAT_WANT_CERT) or DER (one or
 * more back to back, nothing else). Returns how many fn took, 0 when the
 * file holds none (err untouched: the caller says why, sd_format_not), or
 * -1 with err (a block that does not parse, or fn's error). */
int sd_format_certs(const void *data, size_t len, const char *path, enum sd_format_want want,
                    sd_format_cert_fn fn, void *arg, struct sd_err *err);

/* sd_format_certs, for a file that must hold a certificate: none is an
 * error saying what the file holds instead (sd_format_not, swap as
 * there). Returns how many fn took (at least 1), or -1 with err. */
int sd_format_certs_required(const void *data, size_t len, const char *path,
                             enum sd_format_want want, const char *swap, sd_format_cert_fn fn,
                             void *arg, struct sd_err *err);

/* Reads the unencrypted private key of data[len]: PEM, or DER (PKCS#8,
 * or a traditional RSA, EC or DSA key). Anything else, an encrypted key
 * first, is refused with sd_format_not (swap as there). Returns a new key
 * (the caller frees it), or NULL with err. */
struct evp_pkey_st *sd_format_key(const void *data, size_t len, const char *path,
                                  const char *swap, struct sd_err *err);

/* Called with each CRL read, numbered from 1; takes crl. */
typedef int (*sd_format_crl_fn)(struct X509_crl_st *crl, int index, void *arg,
                                struct sd_err *err);

/* Reads the CRLs of data[len]: one DER CRL, or one or more PEM CRLs (a
 * bundle of them in one file is common). A file without one is refused
 * with sd_format_not. Returns how many fn took (at least 1), or -1. */
int sd_format_crls(const void *data, size_t len, const char *path, sd_format_crl_fn fn,
                   void *arg, struct sd_err *err);

#endif
