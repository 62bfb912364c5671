/* fuzz_format.c - libFuzzer target for what a certificate, key or CRL file
 * holds and reading it (tls/format.c): the bytes of any file a user points
 * serve, connect, pki or audit at.
 *
 * Input: the file's bytes, whole.
 *
 * Invariants (__builtin_trap() when broken):
 *   - sd_format_sniff says PEM only of bytes holding "-----BEGIN ", EMPTY
 *     only of bytes that are all white space, and DER only of bytes that
 *     start with a SEQUENCE tag (0x30);
 *   - every message (sd_format_why, for each thing a reader may want) is a
 *     NUL-terminated string inside its buffer, also a small one, and never
 *     empty;
 *   - sd_format_certs returns -1 with a message, or the number of
 *     certificates it handed over (each one exactly once, numbered 1, 2,
 *     ...), and hands over none from a file sniffed as holding none;
 *   - sd_format_key returns a key or NULL with a message, and NULL for a
 *     file sniffed as holding no unencrypted key;
 *   - sd_format_crls returns -1 with a message, or at least 1 (each CRL
 *     handed over once, numbered).
 * ASan sees every byte read past the input (the input is copied into a
 * buffer of exactly its size) and every object leaked or freed twice. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sd/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_count {
    int n;
};

static int fuzz_take_cert(X509 *x, int index, void *arg, struct sd_err *err)
{
    struct fuzz_count *c = arg;

    (void)err;
    if (x == NULL || index != c->n + 1)
        __builtin_trap();
    c->n++;
    X509_free(x);
    return 0;
}

static int fuzz_take_crl(X509_CRL *crl, int index, void *arg, struct sd_err *err)
{
    struct fuzz_count *c = arg;

    (void)err;
    if (crl == NULL || index != c->n + 1)
        __builtin_trap();
    c->n++;
    X509_CRL_free(crl);
    return 0;
}

static void fuzz_check_msg(const char *buf, size_t size)
{
    if (memchr(buf, '\0', size) == NULL || buf[0] == '\0')
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *d = malloc(size > 0 ? size : 1);
    struct sd_format f;
    struct sd_err err;
    struct fuzz_count c;
    char big[SD_ERR_MAX], small[24];
    EVP_PKEY *key;
    size_t i;
    int want, n;

    if (d == NULL)
        return 0;
    if (size > 0)
        memcpy(d, data, size);

    sd_format_sniff(d, size, &f);
    if (f.enc == SD_FORMAT_PEM && (size < 11 || memmem(d, size, "-----BEGIN ", 11) == NULL))
        __builtin_trap();
    if (f.enc == SD_FORMAT_EMPTY)
        for (i = 0; i < size; i++)
            if (d[i] != ' ' && d[i] != '\t' && d[i] != '\r' && d[i] != '\n')
                __builtin_trap();
    if (f.enc == SD_FORMAT_DER && (size == 0 || d[0] != 0x30))
        __builtin_trap();
    if (memchr(f.label, '\0', sizeof(f.label)) == NULL)
        __builtin_trap();

    for (want = SD_FORMAT_WANT_CERT; want <= SD_FORMAT_WANT_CRL; want++) {
        sd_format_why(big, sizeof(big), "dir/file.pem", &f, (enum sd_format_want)want,
                      want == SD_FORMAT_WANT_CERT ? "--cert and --key" : NULL);
        fuzz_check_msg(big, sizeof(big));
        sd_format_why(small, sizeof(small), "dir/file.pem", &f, (enum sd_format_want)want,
                      "--cert and --key");
        fuzz_check_msg(small, sizeof(small));
    }

    for (want = SD_FORMAT_WANT_CERT; want <= SD_FORMAT_WANT_CA; want += 2) {
        c.n = 0;
        err.msg[0] = '\0';
        n = sd_format_certs(d, size, "f", (enum sd_format_want)want, fuzz_take_cert, &c, &err);
        if (n < -1 || (n >= 0 && n != c.n) || (n == -1 && err.msg[0] == '\0'))
            __builtin_trap();
        if (n > 0 && !(f.kinds & (SD_FORMAT_CERT | SD_FORMAT_TRUSTED)))
            __builtin_trap();
    }

    err.msg[0] = '\0';
    key = sd_format_key(d, size, "f", "--cert and --key", &err);
    if (key == NULL && err.msg[0] == '\0')
        __builtin_trap();
    if (key != NULL && (!(f.kinds & SD_FORMAT_KEY) || (f.kinds & SD_FORMAT_KEY_ENC)))
        __builtin_trap();
    EVP_PKEY_free(key);

    c.n = 0;
    err.msg[0] = '\0';
    n = sd_format_crls(d, size, "f", fuzz_take_crl, &c, &err);
    if ((n == -1 && err.msg[0] == '\0') || (n != -1 && (n < 1 || n != c.n)))
        __builtin_trap();

    free(d);
    return 0;
}
