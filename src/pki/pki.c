/*
 * pki.c - the development PKI behind `steeldoor pki` (see sd/pki.h).
 *
 * Everything here runs once per command, never per connection, so it uses
 * sd_err throughout and favours plain code over speed. Only this file and
 * the test include OpenSSL; pki_cli.c sees the OpenSSL-free sd/pki.h.
 */
#include "sd/pki.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sd/format.h"
#include "sd/policy.h"

#define SD_PKI_CA_CN      "steeldoor dev CA"
#define SD_PKI_CURVE      "P-256"
/* Certificates start five minutes in the past so that a peer whose clock
 * is a little behind ours does not reject a certificate issued just now. */
#define SD_PKI_SKEW_SECS  (5L * 60L)
#define SD_PKI_SERIAL_LEN 16
#define SD_PKI_LINE_MAX   512
#define SD_PKI_CN_MAX     64   /* ub-common-name, RFC 5280 */
#define SD_PKI_DNS_MAX    253

#define SD_PKI_HEX_SIZE   (SD_PKI_SERIAL_HEX_MAX + 1)
/* Random 128-bit serials never collide in practice; the index is checked
 * anyway, and this bounds the retries should the RNG be broken. */
#define SD_PKI_SERIAL_TRIES 8

#define SD_PKI_ISSUED     "issued.txt"
#define SD_PKI_REVOKED    "revoked.txt"
#define SD_PKI_CRLNUMBER  "crlnumber"
#define SD_PKI_CRL        "crl.pem"
/* A leading '.' keeps it out of the NAME namespace (see check_name). */
#define SD_PKI_LOCK       ".lock"

/* ------------------------------------------------------------------ */
/* Argument checks                                                     */

int sd_pki_check_name(const char *name, struct sd_err *err)
{
    size_t i, len;

    if (name == NULL || name[0] == '\0')
        return sd_err_set(err, "certificate name is empty");
    len = strlen(name);
    if (len > SD_PKI_NAME_MAX)
        return sd_err_set(err, "certificate name '%.*s...' is longer than %d characters",
                          16, name, SD_PKI_NAME_MAX);
    /* A leading dot would make hidden files and allow "." / "..". */
    if (name[0] == '.')
        return sd_err_set(err, "certificate name '%s' must not start with '.'", name);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return sd_err_set(err, "certificate name '%s' may only contain "
                              "A-Z a-z 0-9 . _ -", name);
    }
    /* NAME.crt / NAME.key share the directory with the CA's files. */
    if (strcmp(name, "ca") == 0)
        return sd_err_set(err, "certificate name 'ca' is reserved for the CA");
    return 0;
}

int sd_pki_check_dns(const char *dns, struct sd_err *err)
{
    size_t i, len, label = 0;

    if (dns == NULL || dns[0] == '\0')
        return sd_err_set(err, "DNS name is empty");
    len = strlen(dns);
    if (len > SD_PKI_DNS_MAX)
        return sd_err_set(err, "DNS name '%.*s...' is longer than %d characters",
                          16, dns, SD_PKI_DNS_MAX);
    i = 0;
    /* A wildcard is only meaningful as the whole left-most label. */
    if (dns[0] == '*') {
        if (dns[1] != '.' || dns[2] == '\0')
            return sd_err_set(err, "DNS name '%s': '*' must be a whole first label", dns);
        i = 2;
    }
    for (; i <= len; i++) {
        unsigned char c = (unsigned char)dns[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63)
                return sd_err_set(err, "DNS name '%s' has an empty or over-long label", dns);
            if (dns[i - 1] == '-')
                return sd_err_set(err, "DNS name '%s': a label ends with '-'", dns);
            label = 0;
            continue;
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return sd_err_set(err, "DNS name '%s' may only contain letters, digits, "
                              "'-', '_' and '.'", dns);
        if (label == 0 && c == '-')
            return sd_err_set(err, "DNS name '%s': a label starts with '-'", dns);
        label++;
    }
    return 0;
}

/* Converts an IP address to its 4 or 16 network-order bytes; returns the
 * length or 0 when the text is not an address. */
static size_t sd_pki_ip_bytes(const char *ip, unsigned char out[16])
{
    if (inet_pton(AF_INET, ip, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, ip, out) == 1)
        return 16;
    return 0;
}

int sd_pki_check_ip(const char *ip, struct sd_err *err)
{
    unsigned char buf[16];

    if (ip == NULL || sd_pki_ip_bytes(ip, buf) == 0)
        return sd_err_set(err, "'%s' is not an IPv4 or IPv6 address",
                          ip != NULL ? ip : "");
    return 0;
}

/* The certificate's URI must be one that `serve --allow-uri` can name
 * exactly: the very validator serve applies to a certificate's URI before
 * any rule may match it (sd_policy_uri_valid without wildcards). Two
 * validators had drifted apart, and pki issued URIs no rule could admit. */
int sd_pki_check_uri(const char *uri, struct sd_err *err)
{
    size_t len;

    if (uri == NULL || uri[0] == '\0')
        return sd_err_set(err, "URI is empty");
    len = strlen(uri);
    if (len > SD_POLICY_MAX_NAME)
        return sd_err_set(err, "URI '%.*s...' is longer than %d characters",
                          16, uri, SD_POLICY_MAX_NAME);
    if (!sd_policy_uri_valid(uri, len, 0))
        return sd_err_set(err, "URI '%s' is not one an allow-uri rule can match "
                          "(scheme://authority/segments in printable ASCII; no wildcard, "
                          "no empty, '.' or '..' segments, percent-encoding, query or "
                          "fragment)", uri);
    return 0;
}

int sd_pki_check_cn(const char *cn, struct sd_err *err)
{
    size_t i, len;

    if (cn == NULL || cn[0] == '\0')
        return sd_err_set(err, "common name is empty");
    len = strlen(cn);
    if (len > SD_PKI_CN_MAX)
        return sd_err_set(err, "common name '%.*s...' is longer than %d characters",
                          16, cn, SD_PKI_CN_MAX);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)cn[i];
        if (c < 0x20 || c >= 0x7f)
            return sd_err_set(err, "common name '%s' contains a control or "
                              "non-ASCII character", cn);
    }
    return 0;
}


static int sd_pki_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int sd_pki_check_serial(const char *serial, struct sd_err *err)
{
    size_t i, digits = 0;

    if (serial == NULL || serial[0] == '\0')
        return sd_err_set(err, "serial number is empty");
    for (i = 0; serial[i] != '\0'; i++) {
        unsigned char c = (unsigned char)serial[i];

        /* "4A:3F:..." as openssl and browsers print it: single colons
         * between digits only. */
        if (c == ':' && i > 0 && serial[i - 1] != ':' && serial[i + 1] != '\0')
            continue;
        if (!sd_pki_is_hex(c))
            return sd_err_set(err, "serial number '%.*s' may only contain hex digits "
                              "and single ':' separators", 48, serial);
        if (++digits > SD_PKI_SERIAL_HEX_MAX)
            return sd_err_set(err, "serial number '%.*s...' is longer than %d hex digits",
                              16, serial, SD_PKI_SERIAL_HEX_MAX);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The CA directory: ownership checks, the lock, files                 */

/*
 * The CA directory is opened once, checked, and locked; every file is then
 * opened, created and renamed relative to that descriptor (openat and
 * friends), so renaming or replacing the path given on the command line
 * after the check changes nothing.
 */
struct sd_pki_dir {
    const char *path;  /* as given: for messages only */
    int fd;            /* the checked directory */
    int lock_fd;       /* DIR/.lock, flock()ed exclusively while open */
};

#define SD_PKI_DIR_NONE {NULL, -1, -1}

/* sd_pki_fopen flags */
#define SD_PKI_OPTIONAL 0x1u /* a missing file is not an error: *out = NULL */
#define SD_PKI_SECRET   0x2u /* a private key: no access at all for others */

static int sd_pki_path(char *buf, size_t size, const char *dir, const char *file,
                       const char *ext, struct sd_err *err)
{
    int n = snprintf(buf, size, "%s/%s%s", dir, file, ext);

    if (n < 0 || (size_t)n >= size)
        return sd_err_set(err, "%s/%s%s: path too long", dir, file, ext);
    return 0;
}

/*
 * ssh's StrictModes rule, for the directory and every file the PKI reads:
 * owned by the running user or by root, and not writable by group or
 * others. Whoever else can write them can swap in their own CA (and have
 * us sign with it) or their own revocation list. A private key must not
 * even be readable by them.
 */
static int sd_pki_check_stat(const char *path, const struct stat *st, int secret,
                             struct sd_err *err)
{
    unsigned long me = (unsigned long)geteuid();
    unsigned int mode = (unsigned int)(st->st_mode & 07777);

    if ((unsigned long)st->st_uid != me && st->st_uid != 0)
        return sd_err_set(err, "%s: owned by uid %lu, not by the running user (uid %lu) "
                          "or root; another user could swap in their own CA, so it is "
                          "not used (fix: check its contents, then chown %lu %s)",
                          path, (unsigned long)st->st_uid, me, me, path);
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return sd_err_set(err, "%s: writable by group or others (mode %04o); another "
                          "user could swap in their own CA, so it is not used "
                          "(fix: check its contents, then chmod go-w %s)", path, mode, path);
    if (secret && (st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
        return sd_err_set(err, "%s: private key accessible by group or others (mode "
                          "%04o), so it is not used (fix: chmod 600 %s; if others may "
                          "have read it, make a new CA)", path, mode, path);
    return 0;
}

static void sd_pki_dir_close(struct sd_pki_dir *d)
{
    /* Closing the lock's descriptor releases the flock, after every write
     * has been fsynced and renamed into place. */
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    if (d->fd >= 0)
        close(d->fd);
    d->lock_fd = -1;
    d->fd = -1;
}

/*
 * Takes the exclusive flock on DIR/.lock that every command holds from its
 * first read to its last write, so that read-modify-write cycles (the
 * index, the revocation list, the CRL number) never interleave. The file
 * is never written and never removed: removing it would let two commands
 * lock two different files. Polls with LOCK_NB rather than blocking, so
 * that a stuck holder makes us fail after SD_PKI_LOCK_WAIT_SECS, naming the
 * file, instead of hanging forever.
 */
static int sd_pki_lock(struct sd_pki_dir *d, struct sd_err *err)
{
    char path[PATH_MAX];
    struct stat st;
    struct timespec start, now, pause;
    long step_ms = 1;
    int rc = -1;

    if (sd_pki_path(path, sizeof(path), d->path, SD_PKI_LOCK, "", err) != 0)
        goto out;
    d->lock_fd = openat(d->fd, SD_PKI_LOCK,
                        O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        sd_err_set(err, "%s: cannot open the lock file: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(d->lock_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sd_err_set(err, "%s: not a regular file", path);
        goto out;
    }
    if (sd_pki_check_stat(path, &st, 0, err) != 0)
        goto out;
    if (clock_gettime(CLOCK_MONOTONIC, &start) != 0) {
        sd_err_set(err, "%s: no monotonic clock: %s", path, strerror(errno));
        goto out;
    }
    for (;;) {
        if (flock(d->lock_fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            sd_err_set(err, "%s: cannot lock: %s", path, strerror(errno));
            goto out;
        }
        /* A failing clock counts as "waited long enough": never loop forever. */
        if (clock_gettime(CLOCK_MONOTONIC, &now) != 0 ||
            now.tv_sec - start.tv_sec >= SD_PKI_LOCK_WAIT_SECS) {
            sd_err_set(err, "%s: another 'steeldoor pki' command has held this lock "
                       "for %d s; is it stuck? (fuser -v %s)", path,
                       SD_PKI_LOCK_WAIT_SECS, path);
            goto out;
        }
        pause.tv_sec = 0;
        pause.tv_nsec = step_ms * 1000000L;
        (void)nanosleep(&pause, NULL);
        if (step_ms < 32)
            step_ms *= 2;
    }
    rc = 0;
out:
    if (rc != 0 && d->lock_fd >= 0) {
        close(d->lock_fd);
        d->lock_fd = -1;
    }
    return rc;
}

/* Opens and checks the CA directory, then takes its lock. */
static int sd_pki_dir_open(struct sd_pki_dir *d, const char *path, struct sd_err *err)
{
    struct stat st;
    int rc = -1;

    d->path = path;
    d->fd = -1;
    d->lock_fd = -1;
    if (path == NULL || path[0] == '\0') {
        sd_err_set(err, "CA directory is empty");
        goto out;
    }
    /* The path itself may be a symbolic link to the real directory: what
     * is checked is the directory actually opened, and nothing afterwards
     * goes through the path again. */
    d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->fd < 0) {
        int e = errno;
        sd_err_set(err, "%s: cannot open the CA directory: %s%s", path, strerror(e),
                   e == ENOENT ? " (no CA there yet: run `steeldoor pki init --dir` with this "
                                 "directory first)"
                               : "");
        goto out;
    }
    if (fstat(d->fd, &st) != 0) {
        sd_err_set(err, "%s: %s", path, strerror(errno));
        goto out;
    }
    /* Checked before the lock file is created: nothing is written into a
     * directory we refuse. */
    if (sd_pki_check_stat(path, &st, 0, err) != 0 || sd_pki_lock(d, err) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        sd_pki_dir_close(d);
    return rc;
}

/* 1 if DIR/file exists (as anything, a symbolic link included), 0 if not,
 * -1 on error. */
static int sd_pki_exists(const struct sd_pki_dir *d, const char *file, struct sd_err *err)
{
    struct stat st;

    if (fstatat(d->fd, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    return sd_err_set(err, "%s/%s: %s", d->path, file, strerror(errno));
}

/*
 * Opens DIR/file for reading after the ownership check. O_NOFOLLOW: a
 * symbolic link in the CA directory could point at anybody's file, so it
 * is refused rather than followed. O_NONBLOCK: a FIFO would otherwise
 * block the open itself; it is then refused as not a regular file.
 */
static int sd_pki_fopen(const struct sd_pki_dir *d, const char *file, unsigned int flags,
                        FILE **out, struct sd_err *err)
{
    char path[PATH_MAX];
    struct stat st;
    int fd = -1, rc = -1;

    *out = NULL;
    if (sd_pki_path(path, sizeof(path), d->path, file, "", err) != 0)
        goto out;
    fd = openat(d->fd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && (flags & SD_PKI_OPTIONAL)) {
            rc = 0;
        } else if (errno == ELOOP) {
            sd_err_set(err, "%s: is a symbolic link; refusing to follow it (replace it "
                       "with the file itself)", path);
        } else {
            sd_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        }
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sd_err_set(err, "%s: not a regular file", path);
        goto out;
    }
    if (sd_pki_check_stat(path, &st, (flags & SD_PKI_SECRET) != 0, err) != 0)
        goto out;
    *out = fdopen(fd, "r");
    if (*out == NULL) {
        sd_err_set(err, "%s: %s", path, strerror(errno));
        goto out;
    }
    fd = -1; /* owned by *out now */
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Writes one object to a stream; 0 or -1 (OpenSSL's queue may say why). */
typedef int (*sd_pki_emit_fn)(FILE *fp, const void *obj);

/*
 * Writes DIR/file atomically: the bytes go to a new temporary file in the
 * directory (same file system, so rename is atomic), which is fsynced and
 * then moved over the target. The temporary file is created with its final
 * mode, so a private key is never readable by anyone else, not even for a
 * moment. With noclobber the target is published with link(), which fails
 * instead of replacing a file that appeared in the meantime.
 */
static int sd_pki_write_file(const struct sd_pki_dir *d, const char *file, mode_t mode,
                             int noclobber, sd_pki_emit_fn emit, const void *obj,
                             struct sd_err *err)
{
    char path[PATH_MAX];
    char tmp[SD_PKI_NAME_MAX + 64];
    /* stdio's buffer holds key material: keep it where we can wipe it. */
    char iobuf[BUFSIZ];
    unsigned char rnd[8];
    FILE *fp = NULL;
    int fd = -1, have_tmp = 0, tries, rc = -1, n;

    if (sd_pki_path(path, sizeof(path), d->path, file, "", err) != 0)
        goto out;
    for (tries = 0; tries < 16; tries++) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            sd_err_openssl(err, "%s: no random bytes for a temporary name", path);
            goto out;
        }
        /* A leading '.' keeps it out of the NAME namespace (see check_name). */
        n = snprintf(tmp, sizeof(tmp), ".%s.%02x%02x%02x%02x%02x%02x%02x%02x.tmp",
                     file, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
                     rnd[7]);
        if (n < 0 || (size_t)n >= sizeof(tmp)) {
            sd_err_set(err, "%s: path too long", path);
            goto out;
        }
        /* O_EXCL | O_NOFOLLOW: never write through anything already there.
         * The umask can only take bits away from mode, never add any. */
        fd = openat(d->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                    mode);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        sd_err_set(err, "%s: cannot create a temporary file: %s", path, strerror(errno));
        goto out;
    }
    have_tmp = 1;
    /* The umask may have taken bits off a public file (a certificate must
     * be readable by the daemon's user). Private files are left exactly as
     * open() made them: a umask can only make them stricter. */
    if ((mode & 0044) != 0 && fchmod(fd, mode) != 0) {
        sd_err_set(err, "%s/%s: cannot set mode: %s", d->path, tmp, strerror(errno));
        goto out;
    }
    fp = fdopen(fd, "w");
    if (fp == NULL) {
        sd_err_set(err, "%s/%s: %s", d->path, tmp, strerror(errno));
        goto out;
    }
    fd = -1; /* owned by fp now */
    setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));
    errno = 0;
    if (emit(fp, obj) != 0 || ferror(fp)) {
        /* A stdio failure leaves errno; an encoding one, OpenSSL's queue. */
        if (errno != 0)
            sd_err_openssl(err, "%s: cannot write: %s", path, strerror(errno));
        else
            sd_err_openssl(err, "%s: cannot write", path);
        goto out;
    }
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        sd_err_set(err, "%s: cannot write: %s", path, strerror(errno));
        goto out;
    }
    n = fclose(fp);
    fp = NULL;
    if (n != 0) {
        sd_err_set(err, "%s: cannot write: %s", path, strerror(errno));
        goto out;
    }
    if (noclobber) {
        if (linkat(d->fd, tmp, d->fd, file, 0) != 0) {
            if (errno == EEXIST)
                sd_err_set(err, "%s: already exists", path);
            else
                sd_err_set(err, "%s: %s", path, strerror(errno));
            goto out;
        }
        /* the temporary name is unlinked below */
    } else {
        if (renameat(d->fd, tmp, d->fd, file) != 0) {
            sd_err_set(err, "%s: cannot rename %s into place: %s", path, tmp,
                       strerror(errno));
            goto out;
        }
        have_tmp = 0;
    }
    /* Make the new directory entry durable too; losing it is not an error
     * worth failing a dev tool for, so this is best effort. */
    (void)fsync(d->fd);
    rc = 0;
out:
    if (fp != NULL)
        fclose(fp);
    if (fd >= 0)
        close(fd);
    if (have_tmp)
        unlinkat(d->fd, tmp, 0);
    OPENSSL_cleanse(iobuf, sizeof(iobuf));
    return rc;
}

static int sd_pki_emit_key(FILE *fp, const void *obj)
{
    /* Unencrypted PKCS#8: this is a development PKI (see sd/pki.h). */
    return PEM_write_PrivateKey(fp, (EVP_PKEY *)obj, NULL, NULL, 0, NULL, NULL)
        == 1 ? 0 : -1;
}

static int sd_pki_emit_cert(FILE *fp, const void *obj)
{
    return PEM_write_X509(fp, (X509 *)obj) == 1 ? 0 : -1;
}

static int sd_pki_emit_crl(FILE *fp, const void *obj)
{
    return PEM_write_X509_CRL(fp, (X509_CRL *)obj) == 1 ? 0 : -1;
}

/* What sd_pki_emit_append writes: the current file from its start (or a
 * header when there is none yet), then the new lines. Rewriting the whole
 * file through sd_pki_write_file, under the lock, means an interrupted
 * command leaves the old file intact and never half a line. */
struct sd_pki_append {
    FILE *old;            /* the current file, NULL when there is none */
    const char *header;
    const char *lines;
};

static int sd_pki_emit_append(FILE *fp, const void *obj)
{
    const struct sd_pki_append *a = obj;
    char buf[4096];
    size_t n;
    int last = '\n';

    if (a->old == NULL)
        return fputs(a->header, fp) == EOF || fputs(a->lines, fp) == EOF ? -1 : 0;
    rewind(a->old);
    while ((n = fread(buf, 1, sizeof(buf), a->old)) > 0) {
        if (fwrite(buf, 1, n, fp) != n)
            return -1;
        last = (unsigned char)buf[n - 1];
    }
    if (ferror(a->old))
        return -1;
    /* A hand edit may have left the last line without its newline. */
    if (last != '\n' && fputc('\n', fp) == EOF)
        return -1;
    return fputs(a->lines, fp) == EOF ? -1 : 0;
}

/* The files the PKI reads are its own (PEM, as it writes them), but a CA
 * brought from elsewhere may come as DER, encrypted, as PKCS#12, or with
 * its two files swapped: every such file is read by content (never by its
 * name), DER taken as well as PEM, and anything else named with the fix.
 * (sd/format.h: the same reading as serve and connect's.) */
#define SD_PKI_READ_MAX (1u << 20) /* far above any certificate or key file */

/* Reads all of fp (at most SD_PKI_READ_MAX bytes) into *out (to free,
 * after OPENSSL_cleanse for a key), without stdio's buffer: a key's bytes
 * are then only where we wipe them. */
static int sd_pki_slurp(FILE *fp, const char *path, unsigned char **out, size_t *len,
                        struct sd_err *err)
{
    unsigned char *buf = malloc(SD_PKI_READ_MAX + 1);
    size_t n = 0;

    *out = NULL;
    *len = 0;
    if (buf == NULL)
        return sd_err_set(err, "out of memory");
    for (;;) {
        ssize_t r = read(fileno(fp), buf + n, SD_PKI_READ_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sd_err_set(err, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        n += (size_t)r;
        if (r == 0 || n > SD_PKI_READ_MAX) {
            if (n <= SD_PKI_READ_MAX) {
                *out = buf;
                *len = n;
                return 0;
            }
            sd_err_set(err, "%s: larger than %u bytes: not a certificate, key or CRL file",
                       path, SD_PKI_READ_MAX);
            break;
        }
    }
    OPENSSL_cleanse(buf, n);
    free(buf);
    return -1;
}

/* swap[size] = the pair a swapped file belongs to ("ca.crt and ca.key"),
 * from file's name in the directory. */
static const char *sd_pki_swap(char *swap, size_t size, const char *file)
{
    const char *dot = strrchr(file, '.');
    int stem = dot != NULL ? (int)(dot - file) : (int)strlen(file);

    snprintf(swap, size, "%.*s.crt and %.*s.key", stem, file, stem, file);
    return swap;
}

/* Keeps the first certificate of a file (sd_format_certs): a chain after
 * it is not the PKI's to read. */
static int sd_pki_first_cert(X509 *x, int index, void *arg, struct sd_err *err)
{
    (void)err;
    if (index == 1)
        *(X509 **)arg = x;
    else
        X509_free(x);
    return 0;
}

static int sd_pki_first_crl(X509_CRL *crl, int index, void *arg, struct sd_err *err)
{
    (void)err;
    if (index == 1)
        *(X509_CRL **)arg = crl;
    else
        X509_CRL_free(crl);
    return 0;
}

/* Opens DIR/file (flags as sd_pki_fopen) and reads it whole: *data NULL
 * when an optional file is missing. */
static int sd_pki_read(const struct sd_pki_dir *d, const char *file, unsigned int flags,
                       char *path, size_t path_size, unsigned char **data, size_t *len,
                       struct sd_err *err)
{
    FILE *fp = NULL;
    int rc;

    *data = NULL;
    *len = 0;
    if (sd_pki_path(path, path_size, d->path, file, "", err) != 0 ||
        sd_pki_fopen(d, file, flags, &fp, err) != 0)
        return -1;
    if (fp == NULL)
        return 0;
    rc = sd_pki_slurp(fp, path, data, len, err);
    fclose(fp);
    return rc;
}

/* Loads DIR/file's (first) certificate, PEM or DER; with SD_PKI_OPTIONAL
 * a missing file gives *out NULL. */
static int sd_pki_load_cert(const struct sd_pki_dir *d, const char *file,
                            unsigned int flags, X509 **out, struct sd_err *err)
{
    char path[PATH_MAX], swap[2 * NAME_MAX + 16];
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (sd_pki_read(d, file, flags, path, sizeof(path), &data, &len, err) != 0)
        goto out;
    if (data == NULL) {
        rc = 0;
        goto out;
    }
    if (sd_format_certs_required(data, len, path, SD_FORMAT_WANT_CERT,
                                 sd_pki_swap(swap, sizeof(swap), file), sd_pki_first_cert, out,
                                 err) < 0) {
        X509_free(*out);
        *out = NULL;
        goto out;
    }
    rc = 0;
out:
    free(data);
    return rc;
}

static int sd_pki_load_crl(const struct sd_pki_dir *d, const char *file,
                           unsigned int flags, X509_CRL **out, struct sd_err *err)
{
    char path[PATH_MAX];
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (sd_pki_read(d, file, flags, path, sizeof(path), &data, &len, err) != 0)
        goto out;
    if (data == NULL) {
        rc = 0;
        goto out;
    }
    if (sd_format_crls(data, len, path, sd_pki_first_crl, out, err) < 0) {
        X509_CRL_free(*out);
        *out = NULL;
        goto out;
    }
    rc = 0;
out:
    free(data);
    return rc;
}

static int sd_pki_load_key(const struct sd_pki_dir *d, const char *file, EVP_PKEY **out,
                           struct sd_err *err)
{
    char path[PATH_MAX], swap[2 * NAME_MAX + 16];
    unsigned char *data = NULL;
    struct sd_format h;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (sd_pki_read(d, file, SD_PKI_SECRET, path, sizeof(path), &data, &len, err) != 0)
        goto out;
    sd_format_sniff(data, len, &h);
    if (h.kinds & SD_FORMAT_KEY_ENC) {
        /* The PKI reads its key from one place: the fix must put the
         * decrypted key there. */
        sd_err_set(err, "%s holds an encrypted private key, and steeldoor pki never asks for "
                   "a passphrase: decrypt it once with `(umask 077; openssl pkey -in %s -out "
                   "%s.plain)` and put %s.plain in its place", path, path, path, path);
        goto out;
    }
    *out = sd_format_key(data, len, path, sd_pki_swap(swap, sizeof(swap), file), err);
    if (*out == NULL)
        goto out;
    rc = 0;
out:
    if (data != NULL)
        OPENSSL_cleanse(data, len);
    free(data);
    ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------------ */
/* Serials and the lists of serials (issued.txt, revoked.txt)          */

/* Upper-case hex of x's serial, as BN_bn2hex writes it; what names it in
 * messages. */
static int sd_pki_cert_hex(const X509 *x, const char *what, char out[SD_PKI_HEX_SIZE],
                           struct sd_err *err)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    size_t len;
    int rc = -1;

    if (hex == NULL) {
        sd_err_openssl(err, "%s: cannot read the serial number", what);
        goto out;
    }
    len = strlen(hex);
    if (BN_is_negative(bn) || len > SD_PKI_SERIAL_HEX_MAX) {
        sd_err_set(err, "%s: serial number %.48s is not a positive number of at most "
                   "20 octets", what, hex);
        goto out;
    }
    memcpy(out, hex, len + 1);
    rc = 0;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

/* A serial given by the user, in the same form as sd_pki_cert_hex. */
static int sd_pki_serial_canon(const char *in, char out[SD_PKI_HEX_SIZE],
                               struct sd_err *err)
{
    char digits[SD_PKI_HEX_SIZE];
    BIGNUM *bn = NULL;
    char *hex = NULL;
    size_t i, n = 0;
    int rc = -1;

    if (sd_pki_check_serial(in, err) != 0)
        goto out;
    for (i = 0; in[i] != '\0'; i++)
        if (in[i] != ':')
            digits[n++] = in[i]; /* at most SD_PKI_SERIAL_HEX_MAX: checked */
    digits[n] = '\0';
    if (BN_hex2bn(&bn, digits) != (int)n || (hex = BN_bn2hex(bn)) == NULL) {
        sd_err_openssl(err, "serial number '%s': cannot convert", in);
        goto out;
    }
    /* n <= 40 digits is at most 20 octets, which BN_bn2hex writes in 40. */
    memcpy(out, hex, strlen(hex) + 1);
    rc = 0;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

/*
 * issued.txt and revoked.txt are plain text so that they can be read and
 * edited by hand, one certificate per line:
 *   # comment
 *   SERIAL-HEX UNIX-TIME NAME
 * (issued at, resp. revoked at). NAME may be missing in revoked.txt.
 */
struct sd_pki_entry {
    const BIGNUM *serial;
    const char *hex;     /* canonical: as sd_pki_cert_hex writes it */
    time_t when;
    const char *name;    /* NULL when the line has none */
};

/* Called per entry; returns 0 to go on, 1 to stop early, -1 on error. */
typedef int (*sd_pki_entry_fn)(const struct sd_pki_entry *e, void *arg,
                               struct sd_err *err);

/* Calls fn for each entry of DIR/file, open as fp from sd_pki_fopen (NULL:
 * no such file, no entries), from the start of the file. */
static int sd_pki_list_each(const struct sd_pki_dir *d, const char *file, FILE *fp,
                            sd_pki_entry_fn fn, void *arg, struct sd_err *err)
{
    char path[PATH_MAX];
    char line[SD_PKI_LINE_MAX];
    struct sd_pki_entry e;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    unsigned long lineno = 0;
    int rc = -1, r;

    if (fp == NULL)
        return 0; /* nothing issued / revoked yet */
    if (sd_pki_path(path, sizeof(path), d->path, file, "", err) != 0)
        goto out;
    rewind(fp);
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *save = NULL, *serial, *when, *end;
        long long t;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(fp)) {
            sd_err_set(err, "%s:%lu: line too long", path, lineno);
            goto out;
        }
        serial = strtok_r(line, " \t\r\n", &save);
        if (serial == NULL || serial[0] == '#')
            continue;
        when = strtok_r(NULL, " \t\r\n", &save);
        /* BN_hex2bn returns how many characters it used: all, or bad. */
        if (BN_hex2bn(&bn, serial) != (int)strlen(serial) || BN_is_negative(bn)) {
            sd_err_set(err, "%s:%lu: '%s' is not a hex serial", path, lineno, serial);
            goto out;
        }
        OPENSSL_free(hex);
        hex = BN_bn2hex(bn);
        if (hex == NULL) {
            sd_err_openssl(err, "%s:%lu: cannot convert the serial", path, lineno);
            goto out;
        }
        if (strlen(hex) > SD_PKI_SERIAL_HEX_MAX) {
            sd_err_set(err, "%s:%lu: serial longer than 20 octets", path, lineno);
            goto out;
        }
        if (when == NULL) {
            sd_err_set(err, "%s:%lu: missing time", path, lineno);
            goto out;
        }
        errno = 0;
        t = strtoll(when, &end, 10);
        if (errno != 0 || *end != '\0' || t < 0) {
            sd_err_set(err, "%s:%lu: '%s' is not a unix time", path, lineno, when);
            goto out;
        }
        e.serial = bn;
        e.hex = hex;
        e.when = (time_t)t;
        e.name = strtok_r(NULL, " \t\r\n", &save);
        r = fn(&e, arg, err);
        if (r < 0)
            goto out;
        if (r > 0)
            break;
    }
    if (ferror(fp)) {
        sd_err_set(err, "%s: read error", path);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The CA                                                              */

struct sd_pki_ca {
    X509 *crt;
    EVP_PKEY *key;  /* NULL unless loaded with need_key */
    char crt_path[PATH_MAX];
    char key_path[PATH_MAX];
};

static void sd_pki_ca_free(struct sd_pki_ca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->crt);
    EVP_PKEY_free(ca->key);
    ca->crt = NULL;
    ca->key = NULL;
}

/* Loads DIR/ca.crt (and DIR/ca.key when need_key) and checks that they are
 * a CA and its key, so that a mix-up is reported here, naming the files,
 * instead of as a signature failure on every peer later. */
static int sd_pki_ca_load(struct sd_pki_ca *ca, const struct sd_pki_dir *d, int need_key,
                          struct sd_err *err)
{
    memset(ca, 0, sizeof(*ca));
    if (sd_pki_path(ca->crt_path, sizeof(ca->crt_path), d->path, "ca", ".crt", err) != 0 ||
        sd_pki_path(ca->key_path, sizeof(ca->key_path), d->path, "ca", ".key", err) != 0)
        return -1;
    if (sd_pki_exists(d, "ca.crt", err) == 0 && sd_pki_exists(d, "ca.key", err) == 0) {
        sd_err_set(err, "%s: no CA in this directory yet: run `steeldoor pki init --dir %s` "
                   "first", d->path, d->path);
        goto fail;
    }
    if (sd_pki_load_cert(d, "ca.crt", 0, &ca->crt, err) != 0)
        goto fail;
    if (X509_check_ca(ca->crt) == 0) {
        sd_err_set(err, "%s: not a CA certificate", ca->crt_path);
        goto fail;
    }
    if (!need_key)
        return 0;
    if (sd_pki_load_key(d, "ca.key", &ca->key, err) != 0)
        goto fail;
    if (X509_check_private_key(ca->crt, ca->key) != 1) {
        ERR_clear_error();
        sd_err_set(err, "%s: private key does not match certificate %s",
                   ca->key_path, ca->crt_path);
        goto fail;
    }
    return 0;
fail:
    sd_pki_ca_free(ca);
    return -1;
}

/* 1 if the CA really signed x. A serial means nothing outside its issuer:
 * only certificates of this CA are recorded or revoked by serial. */
static int sd_pki_issued_by(const struct sd_pki_ca *ca, X509 *x)
{
    EVP_PKEY *pub = X509_get0_pubkey(ca->crt);
    int ok = X509_check_issued(ca->crt, x) == X509_V_OK && pub != NULL &&
             X509_verify(x, pub) == 1;

    ERR_clear_error();
    return ok;
}
/* ------------------------------------------------------------------ */
/* Certificates                                                        */

static int sd_pki_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext;
    int ok;

    ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* A random positive serial of exactly SD_PKI_SERIAL_LEN bytes (RFC 5280
 * allows up to 20): unpredictable, so unique without keeping state. */
static int sd_pki_set_serial(X509 *x)
{
    unsigned char b[SD_PKI_SERIAL_LEN];
    BIGNUM *bn = NULL;
    int rc = -1;

    if (RAND_bytes(b, sizeof(b)) != 1)
        goto out;
    /* Top bit clear: positive without a leading zero byte. Next bit set:
     * no leading zero byte to strip either, so always 16 bytes in DER. */
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
    bn = BN_bin2bn(b, (int)sizeof(b), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto out;
    rc = 0;
out:
    BN_free(bn);
    return rc;
}

/* The parts every certificate shares: v3, serial, validity, subject CN
 * and public key. The issuer and extensions are up to the caller. */
static X509 *sd_pki_cert_new(EVP_PKEY *key, const char *cn, int days)
{
    X509 *x = NULL;
    X509_NAME *name = NULL;

    x = X509_new();
    name = X509_NAME_new();
    if (x == NULL || name == NULL ||
        X509_set_version(x, X509_VERSION_3) != 1 ||
        sd_pki_set_serial(x) != 0 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -SD_PKI_SKEW_SECS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_pubkey(x, key) != 1) {
        X509_free(x);
        x = NULL;
    }
    X509_NAME_free(name);
    return x;
}

static int sd_pki_push_ia5(GENERAL_NAMES *gens, int type, const char *s)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *v = ASN1_IA5STRING_new();
    int rc = -1;

    if (gen == NULL || v == NULL || ASN1_STRING_set(v, s, -1) != 1)
        goto out;
    GENERAL_NAME_set0_value(gen, type, v);
    v = NULL;
    if (sk_GENERAL_NAME_push(gens, gen) <= 0)
        goto out;
    gen = NULL;
    rc = 0;
out:
    ASN1_IA5STRING_free(v);
    GENERAL_NAME_free(gen);
    return rc;
}

static int sd_pki_push_ip(GENERAL_NAMES *gens, const char *ip)
{
    unsigned char b[16];
    size_t len = sd_pki_ip_bytes(ip, b);
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
    int rc = -1;

    if (len == 0 || gen == NULL || v == NULL ||
        ASN1_OCTET_STRING_set(v, b, (int)len) != 1)
        goto out;
    GENERAL_NAME_set0_value(gen, GEN_IPADD, v);
    v = NULL;
    if (sk_GENERAL_NAME_push(gens, gen) <= 0)
        goto out;
    gen = NULL;
    rc = 0;
out:
    ASN1_OCTET_STRING_free(v);
    GENERAL_NAME_free(gen);
    return rc;
}

/* subjectAltName is built from typed GENERAL_NAMEs rather than a config
 * string, so a value containing ',' or ':' cannot inject another entry. */
static int sd_pki_add_san(X509 *x, const struct sd_pki_issue_req *req)
{
    GENERAL_NAMES *gens = NULL;
    size_t i;
    int rc = -1;

    if (req->n_dns + req->n_ips + req->n_uris == 0)
        return 0; /* an empty SAN extension is invalid: leave it out */
    gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL)
        goto out;
    for (i = 0; i < req->n_dns; i++)
        if (sd_pki_push_ia5(gens, GEN_DNS, req->dns[i]) != 0)
            goto out;
    for (i = 0; i < req->n_ips; i++)
        if (sd_pki_push_ip(gens, req->ips[i]) != 0)
            goto out;
    for (i = 0; i < req->n_uris; i++)
        if (sd_pki_push_ia5(gens, GEN_URI, req->uris[i]) != 0)
            goto out;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_REPLACE) != 1)
        goto out;
    rc = 0;
out:
    GENERAL_NAMES_free(gens);
    return rc;
}


/* ------------------------------------------------------------------ */
/* init                                                                */

/* 1 if the directory holds nothing but our lock and temporary files (a
 * crashed command's leftovers), 0 if it holds something else (its name
 * goes to first), -1 on error. */
static int sd_pki_dir_empty(const struct sd_pki_dir *d, char *first, size_t size,
                            struct sd_err *err)
{
    struct dirent *de;
    DIR *dp = NULL;
    size_t len;
    int fd, rc = -1;

    /* A descriptor of its own: readdir moves the offset. */
    fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        dp = fdopendir(fd);
    if (dp == NULL) {
        sd_err_set(err, "%s: cannot list: %s", d->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    rc = 1;
    errno = 0;
    while (rc == 1 && (de = readdir(dp)) != NULL) {
        len = strlen(de->d_name);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, SD_PKI_LOCK) == 0 ||
            (de->d_name[0] == '.' && len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0))
            continue;
        snprintf(first, size, "%s", de->d_name);
        rc = 0;
    }
    if (rc == 1 && errno != 0) {
        sd_err_set(err, "%s: cannot list: %s", d->path, strerror(errno));
        rc = -1;
    }
out:
    if (dp != NULL)
        closedir(dp);
    return rc;
}

int sd_pki_init(const char *dir, const char *cn, int days, int force,
                struct sd_err *err)
{
    struct sd_pki_dir d = SD_PKI_DIR_NONE;
    char first[256];
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    X509V3_CTX ctx;
    int rc = -1, r;

    if (cn == NULL)
        cn = SD_PKI_CA_CN;
    if (dir == NULL || dir[0] == '\0') {
        sd_err_set(err, "CA directory is empty");
        goto out;
    }
    if (days <= 0) {
        sd_err_set(err, "validity of %d days is not positive", days);
        goto out;
    }
    if (sd_pki_check_cn(cn, err) != 0)
        goto out;
    /* 0700: a new CA directory is private from the first moment; an
     * existing one is checked like any other below. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        sd_err_set(err, "%s: cannot create directory: %s", dir, strerror(errno));
        goto out;
    }
    if (sd_pki_dir_open(&d, dir, err) != 0)
        goto out;
    /* Under the lock, so that two inits, or an init and an issue, cannot
     * both see "no CA yet" and end up mixing two CAs' files. */
    if (!force) {
        r = sd_pki_exists(&d, "ca.key", err);
        if (r < 0)
            goto out;
        if (r > 0) {
            sd_err_set(err, "%s/ca.key: already exists; refusing to replace the CA "
                       "(use --force)", dir);
            goto out;
        }
        r = sd_pki_dir_empty(&d, first, sizeof(first), err);
        if (r < 0)
            goto out;
        if (r == 0) {
            sd_err_set(err, "%s: not empty (it holds '%s'); 'pki init' creates a CA "
                       "only in a new or empty directory (use --force to replace the "
                       "CA in it)", dir, first);
            goto out;
        }
    }

    key = EVP_EC_gen(SD_PKI_CURVE);
    if (key == NULL) {
        sd_err_openssl(err, "%s/ca.key: cannot generate a %s key", dir, SD_PKI_CURVE);
        goto out;
    }
    x = sd_pki_cert_new(key, cn, days);
    if (x == NULL || X509_set_issuer_name(x, X509_get_subject_name(x)) != 1) {
        sd_err_openssl(err, "%s/ca.crt: cannot build the CA certificate", dir);
        goto out;
    }
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (sd_pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
        sd_pki_add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        sd_pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0) {
        sd_err_openssl(err, "%s/ca.crt: cannot add extensions", dir);
        goto out;
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        sd_err_openssl(err, "%s/ca.crt: cannot sign", dir);
        goto out;
    }
    /* Key first: if the certificate write then fails, the next command
     * reports "ca.key does not match ca.crt" rather than using a
     * certificate whose key is lost. */
    if (sd_pki_write_file(&d, "ca.key", 0600, !force, sd_pki_emit_key, key, err) != 0 ||
        sd_pki_write_file(&d, "ca.crt", 0644, 0, sd_pki_emit_cert, x, err) != 0)
        goto out;
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key); /* clears the private scalar */
    sd_pki_dir_close(&d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* issue                                                               */

static int sd_pki_issue_check(const struct sd_pki_issue_req *req, struct sd_err *err)
{
    size_t i;

    if (req->dir == NULL || req->dir[0] == '\0')
        return sd_err_set(err, "CA directory is empty");
    if (sd_pki_check_name(req->name, err) != 0)
        return -1;
    if (sd_pki_check_cn(req->cn != NULL ? req->cn : req->name, err) != 0)
        return -1;
    if ((req->usage & (SD_PKI_SERVER | SD_PKI_CLIENT)) == 0 ||
        (req->usage & ~(SD_PKI_SERVER | SD_PKI_CLIENT)) != 0)
        return sd_err_set(err, "%s: usage must be server, client or both", req->name);
    if (req->days <= 0)
        return sd_err_set(err, "validity of %d days is not positive", req->days);
    for (i = 0; i < req->n_dns; i++)
        if (sd_pki_check_dns(req->dns[i], err) != 0)
            return -1;
    for (i = 0; i < req->n_ips; i++)
        if (sd_pki_check_ip(req->ips[i], err) != 0)
            return -1;
    for (i = 0; i < req->n_uris; i++)
        if (sd_pki_check_uri(req->uris[i], err) != 0)
            return -1;
    return 0;
}

/* What sd_pki_issue learns from issued.txt. */
struct sd_pki_issued_scan {
    const char *name;      /* NAME being issued */
    const char *new_hex;   /* the serial about to be issued */
    const char *old_hex;   /* serial of the NAME.crt being replaced, or "" */
    size_t n_name;         /* entries for NAME */
    char last_hex[SD_PKI_HEX_SIZE]; /* the latest of them */
    int new_taken;         /* new_hex is already listed */
    int old_listed;        /* old_hex is already listed */
};

static int sd_pki_issued_scan_cb(const struct sd_pki_entry *e, void *arg,
                                 struct sd_err *err)
{
    struct sd_pki_issued_scan *s = arg;

    (void)err;
    if (e->name != NULL && strcmp(e->name, s->name) == 0) {
        s->n_name++;
        snprintf(s->last_hex, sizeof(s->last_hex), "%s", e->hex);
    }
    if (strcmp(e->hex, s->new_hex) == 0)
        s->new_taken = 1;
    if (s->old_hex[0] != '\0' && strcmp(e->hex, s->old_hex) == 0)
        s->old_listed = 1;
    return 0;
}

/* When x was issued, for the index: its notBefore plus the backdating. */
static time_t sd_pki_issued_at(const X509 *x)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) != 1)
        return time(NULL);
    return timegm(&tm) + SD_PKI_SKEW_SECS;
}

static const char sd_pki_issued_header[] =
    "# steeldoor pki: every certificate this CA issued, read by 'steeldoor pki revoke'.\n"
    "# SERIAL-HEX ISSUED-AT-UNIX-TIME NAME\n";

static const char sd_pki_revoked_header[] =
    "# steeldoor pki revocation list, read by 'steeldoor pki crl'.\n"
    "# SERIAL-HEX REVOKED-AT-UNIX-TIME NAME\n";

int sd_pki_issue(const struct sd_pki_issue_req *req, char *serial, size_t serial_size,
                 struct sd_err *err)
{
    struct sd_pki_dir d = SD_PKI_DIR_NONE;
    struct sd_pki_ca ca;
    struct sd_pki_issued_scan scan;
    struct sd_pki_append app;
    char crt_file[SD_PKI_NAME_MAX + 8];
    char key_file[SD_PKI_NAME_MAX + 8];
    char crt_path[PATH_MAX];
    char new_hex[SD_PKI_HEX_SIZE];
    char cur_hex[SD_PKI_HEX_SIZE] = "";  /* serial of the current NAME.crt */
    char old_hex[SD_PKI_HEX_SIZE] = "";  /* the same, if this CA issued it */
    char lines[2 * SD_PKI_LINE_MAX];
    const char *eku;
    EVP_PKEY *key = NULL;
    X509 *x = NULL, *old = NULL;
    FILE *idx = NULL;
    X509V3_CTX ctx;
    size_t len = 0;
    int rc = -1, tries, have_crt, have_key, n;

    memset(&ca, 0, sizeof(ca));
    if (serial != NULL && serial_size > 0)
        serial[0] = '\0';
    if (req == NULL) {
        sd_err_set(err, "no certificate request");
        goto out;
    }
    if (sd_pki_issue_check(req, err) != 0)
        goto out;
    snprintf(crt_file, sizeof(crt_file), "%s.crt", req->name);
    snprintf(key_file, sizeof(key_file), "%s.key", req->name);
    if (sd_pki_path(crt_path, sizeof(crt_path), req->dir, crt_file, "", err) != 0 ||
        sd_pki_dir_open(&d, req->dir, err) != 0 ||
        sd_pki_ca_load(&ca, &d, 1, err) != 0)
        goto out;
    have_crt = sd_pki_exists(&d, crt_file, err);
    have_key = sd_pki_exists(&d, key_file, err);
    if (have_crt < 0 || have_key < 0)
        goto out;
    /* The certificate about to be replaced: its serial is recorded below
     * even if it predates issued.txt, so that it is never orphaned. One
     * from another CA (before an init --force) is not ours to record. An
     * unreadable one only matters when it is to be replaced. */
    if (have_crt && sd_pki_load_cert(&d, crt_file, 0, &old, err) != 0 && req->reissue)
        goto out;
    if (old != NULL) {
        if (sd_pki_cert_hex(old, crt_path, cur_hex, err) != 0)
            goto out;
        if (sd_pki_issued_by(&ca, old))
            memcpy(old_hex, cur_hex, sizeof(old_hex));
    }

    key = EVP_EC_gen(SD_PKI_CURVE);
    if (key == NULL) {
        sd_err_openssl(err, "%s/%s: cannot generate a %s key", req->dir, key_file,
                       SD_PKI_CURVE);
        goto out;
    }
    x = sd_pki_cert_new(key, req->cn != NULL ? req->cn : req->name, req->days);
    if (x == NULL || X509_set_issuer_name(x, X509_get_subject_name(ca.crt)) != 1) {
        sd_err_openssl(err, "%s: cannot build the certificate", crt_path);
        goto out;
    }
    if (sd_pki_fopen(&d, SD_PKI_ISSUED, SD_PKI_OPTIONAL, &idx, err) != 0)
        goto out;
    for (tries = 0;; tries++) {
        if (sd_pki_cert_hex(x, crt_path, new_hex, err) != 0)
            goto out;
        memset(&scan, 0, sizeof(scan));
        scan.name = req->name;
        scan.new_hex = new_hex;
        scan.old_hex = old_hex;
        if (sd_pki_list_each(&d, SD_PKI_ISSUED, idx, sd_pki_issued_scan_cb, &scan,
                             err) != 0)
            goto out;
        if (!scan.new_taken)
            break;
        if (tries >= SD_PKI_SERIAL_TRIES || sd_pki_set_serial(x) != 0) {
            sd_err_set(err, "%s/%s: cannot find an unused serial number", req->dir,
                       SD_PKI_ISSUED);
            goto out;
        }
    }
    /* Replacing NAME's files silently would orphan its certificate: still
     * valid, and no longer reachable by 'pki revoke --name'. */
    if (!req->reissue && (have_crt || have_key || scan.n_name > 0)) {
        if (have_crt)
            sd_err_set(err, "%s: already exists (serial %s); '%s' already has a "
                       "certificate: use --reissue to issue another (the old one stays "
                       "valid until 'pki revoke --name %s')", crt_path,
                       cur_hex[0] != '\0' ? cur_hex : "unreadable", req->name, req->name);
        else if (have_key)
            sd_err_set(err, "%s/%s: already exists: use --reissue to replace it",
                       req->dir, key_file);
        else
            sd_err_set(err, "%s/%s: '%s' was already issued serial %s: use --reissue to "
                       "issue another (the old one stays valid until 'pki revoke "
                       "--name %s')", req->dir, SD_PKI_ISSUED, req->name, scan.last_hex,
                       req->name);
        goto out;
    }

    if ((req->usage & SD_PKI_SERVER) && (req->usage & SD_PKI_CLIENT))
        eku = "serverAuth,clientAuth";
    else if (req->usage & SD_PKI_SERVER)
        eku = "serverAuth";
    else
        eku = "clientAuth";
    X509V3_set_ctx(&ctx, ca.crt, x, NULL, NULL, 0);
    /* digitalSignature alone: an ECDSA key signs the handshake; it never
     * encrypts (no keyEncipherment) and never signs certificates. */
    if (sd_pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        sd_pki_add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") != 0 ||
        sd_pki_add_ext(x, &ctx, NID_ext_key_usage, eku) != 0 ||
        sd_pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0 ||
        sd_pki_add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") != 0 ||
        sd_pki_add_san(x, req) != 0) {
        sd_err_openssl(err, "%s: cannot add extensions", crt_path);
        goto out;
    }
    if (X509_sign(x, ca.key, EVP_sha256()) <= 0) {
        sd_err_openssl(err, "%s: cannot sign with %s", crt_path, ca.key_path);
        goto out;
    }

    if (old_hex[0] != '\0' && !scan.old_listed) {
        n = snprintf(lines, sizeof(lines), "%s %lld %s\n", old_hex,
                     (long long)sd_pki_issued_at(old), req->name);
        if (n < 0 || (size_t)n >= sizeof(lines)) {
            sd_err_set(err, "%s/%s: entry too long", req->dir, SD_PKI_ISSUED);
            goto out;
        }
        len = (size_t)n;
    }
    /* Two lines of at most 40 + 21 + 64 + 3 bytes: they fit. */
    n = snprintf(lines + len, sizeof(lines) - len, "%s %lld %s\n", new_hex,
                 (long long)sd_pki_issued_at(x), req->name);
    if (n < 0 || (size_t)n >= sizeof(lines) - len) {
        sd_err_set(err, "%s/%s: entry too long", req->dir, SD_PKI_ISSUED);
        goto out;
    }
    /* The serial is recorded before the certificate exists: if a later
     * write fails, the index lists a serial nobody holds, which is
     * harmless; a certificate missing from the index is what is not. */
    app.old = idx;
    app.header = sd_pki_issued_header;
    app.lines = lines;
    if (sd_pki_write_file(&d, SD_PKI_ISSUED, 0644, 0, sd_pki_emit_append, &app, err) != 0)
        goto out;
    /* Key first, for the same reason as in sd_pki_init. */
    if (sd_pki_write_file(&d, key_file, 0600, 0, sd_pki_emit_key, key, err) != 0 ||
        sd_pki_write_file(&d, crt_file, 0644, 0, sd_pki_emit_cert, x, err) != 0)
        goto out;
    if (serial != NULL && serial_size > 0)
        snprintf(serial, serial_size, "%s", new_hex);
    rc = 0;
out:
    if (idx != NULL)
        fclose(idx);
    X509_free(old);
    X509_free(x);
    EVP_PKEY_free(key); /* clears the private scalar */
    sd_pki_ca_free(&ca);
    sd_pki_dir_close(&d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* revoke                                                              */

struct sd_pki_target {
    char hex[SD_PKI_HEX_SIZE];
    char name[SD_PKI_NAME_MAX + 1];
    int already;            /* listed in revoked.txt */
};

/* The serials a revoke is about: those of name, or the one serial hex. */
struct sd_pki_targets {
    const char *name;
    const char *hex;
    struct sd_pki_target *v;
    size_t n, cap;
};

static int sd_pki_targets_add(struct sd_pki_targets *t, const char *hex, const char *name,
                              struct sd_err *err)
{
    struct sd_pki_target *v;
    size_t i, cap;

    for (i = 0; i < t->n; i++)
        if (strcmp(t->v[i].hex, hex) == 0)
            return 0;
    if (t->n == t->cap) {
        cap = t->cap != 0 ? t->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(*v))
            return sd_err_set(err, "out of memory");
        v = realloc(t->v, cap * sizeof(*v));
        if (v == NULL)
            return sd_err_set(err, "out of memory");
        t->v = v;
        t->cap = cap;
    }
    v = &t->v[t->n++];
    snprintf(v->hex, sizeof(v->hex), "%s", hex);
    /* The name only labels the revoked.txt line; "-" when unknown. */
    snprintf(v->name, sizeof(v->name), "%s",
             name != NULL && sd_pki_check_name(name, NULL) == 0 ? name : "-");
    v->already = 0;
    return 0;
}

static int sd_pki_targets_issued_cb(const struct sd_pki_entry *e, void *arg,
                                    struct sd_err *err)
{
    struct sd_pki_targets *t = arg;

    if (t->name != NULL ? e->name != NULL && strcmp(e->name, t->name) == 0
                        : strcmp(e->hex, t->hex) == 0)
        return sd_pki_targets_add(t, e->hex, e->name, err);
    return 0;
}

static int sd_pki_targets_revoked_cb(const struct sd_pki_entry *e, void *arg,
                                     struct sd_err *err)
{
    struct sd_pki_targets *t = arg;
    size_t i;

    (void)err;
    for (i = 0; i < t->n; i++)
        if (strcmp(t->v[i].hex, e->hex) == 0)
            t->v[i].already = 1;
    return 0;
}

int sd_pki_revoke(const char *dir, const char *name, const char *serial,
                  struct sd_pki_revoke_res *res, struct sd_err *err)
{
    struct sd_pki_dir d = SD_PKI_DIR_NONE;
    struct sd_pki_ca ca;
    struct sd_pki_targets t;
    struct sd_pki_append app;
    char crt_file[SD_PKI_NAME_MAX + 8];
    char crt_path[PATH_MAX];
    char want[SD_PKI_HEX_SIZE];
    char hex[SD_PKI_HEX_SIZE];
    char *lines = NULL;
    size_t i, fresh = 0, cap, len = 0;
    FILE *idx = NULL, *rev = NULL;
    X509 *x = NULL;
    long long now = (long long)time(NULL);
    int rc = -1, n;

    memset(&ca, 0, sizeof(ca));
    memset(&t, 0, sizeof(t));
    if (res != NULL)
        res->revoked = res->already = 0;
    if (dir == NULL || dir[0] == '\0') {
        sd_err_set(err, "CA directory is empty");
        goto out;
    }
    if ((name == NULL) == (serial == NULL)) {
        sd_err_set(err, "give either a certificate name or a serial number");
        goto out;
    }
    if (name != NULL) {
        if (sd_pki_check_name(name, err) != 0)
            goto out;
        snprintf(crt_file, sizeof(crt_file), "%s.crt", name);
        if (sd_pki_path(crt_path, sizeof(crt_path), dir, crt_file, "", err) != 0)
            goto out;
        t.name = name;
    } else {
        if (sd_pki_serial_canon(serial, want, err) != 0)
            goto out;
        t.hex = want;
    }
    if (sd_pki_dir_open(&d, dir, err) != 0 || sd_pki_ca_load(&ca, &d, 0, err) != 0 ||
        sd_pki_fopen(&d, SD_PKI_ISSUED, SD_PKI_OPTIONAL, &idx, err) != 0 ||
        sd_pki_list_each(&d, SD_PKI_ISSUED, idx, sd_pki_targets_issued_cb, &t, err) != 0)
        goto out;
    if (name != NULL) {
        /* NAME.crt too: it may predate issued.txt. */
        if (sd_pki_load_cert(&d, crt_file, SD_PKI_OPTIONAL, &x, err) != 0)
            goto out;
        if (x != NULL) {
            if (!sd_pki_issued_by(&ca, x)) {
                sd_err_set(err, "%s: not issued by %s", crt_path, ca.crt_path);
                goto out;
            }
            if (sd_pki_cert_hex(x, crt_path, hex, err) != 0 ||
                sd_pki_targets_add(&t, hex, name, err) != 0)
                goto out;
        }
        if (t.n == 0) {
            sd_err_set(err, "%s: no such certificate, and %s/%s lists none issued to "
                       "'%s'", crt_path, dir, SD_PKI_ISSUED, name);
            goto out;
        }
    } else if (t.n == 0) {
        sd_err_set(err, "serial %s: not in %s/%s, so not known to be issued by this CA "
                   "(a certificate issued before %s existed can be revoked with --name)",
                   want, dir, SD_PKI_ISSUED, SD_PKI_ISSUED);
        goto out;
    }
    if (sd_pki_fopen(&d, SD_PKI_REVOKED, SD_PKI_OPTIONAL, &rev, err) != 0 ||
        sd_pki_list_each(&d, SD_PKI_REVOKED, rev, sd_pki_targets_revoked_cb, &t, err) != 0)
        goto out;
    for (i = 0; i < t.n; i++)
        if (!t.v[i].already)
            fresh++;
    if (fresh > 0) {
        /* One line per serial: "HEX TIME NAME\n"; TIME is at most 20 digits. */
        cap = fresh * (SD_PKI_HEX_SIZE + 24 + SD_PKI_NAME_MAX + 2) + 1;
        lines = malloc(cap);
        if (lines == NULL) {
            sd_err_set(err, "out of memory");
            goto out;
        }
        for (i = 0; i < t.n; i++) {
            if (t.v[i].already)
                continue;
            n = snprintf(lines + len, cap - len, "%s %lld %s\n", t.v[i].hex, now,
                         t.v[i].name);
            if (n < 0 || (size_t)n >= cap - len) {
                sd_err_set(err, "%s/%s: entry too long", dir, SD_PKI_REVOKED);
                goto out;
            }
            len += (size_t)n;
        }
        app.old = rev;
        app.header = sd_pki_revoked_header;
        app.lines = lines;
        if (sd_pki_write_file(&d, SD_PKI_REVOKED, 0644, 0, sd_pki_emit_append, &app,
                              err) != 0)
            goto out;
    }
    if (res != NULL) {
        res->revoked = fresh;
        res->already = t.n - fresh;
    }
    rc = 0;
out:
    if (idx != NULL)
        fclose(idx);
    if (rev != NULL)
        fclose(rev);
    free(lines);
    free(t.v);
    X509_free(x);
    sd_pki_ca_free(&ca);
    sd_pki_dir_close(&d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* CRL                                                                 */

static int sd_pki_emit_number(FILE *fp, const void *obj)
{
    return fprintf(fp, "%llu\n", *(const unsigned long long *)obj) < 0 ? -1 : 0;
}

/* Reads the last CRL number from DIR/crlnumber, open as fp (NULL: no such
 * file, 0). */
static int sd_pki_crlnumber_read(const char *path, FILE *fp, unsigned long long *out,
                                 struct sd_err *err)
{
    char buf[64];
    char *end = NULL;
    int ok;

    *out = 0;
    if (fp == NULL)
        return 0;
    ok = fgets(buf, sizeof(buf), fp) != NULL;
    errno = 0;
    if (ok && buf[0] >= '0' && buf[0] <= '9')
        *out = strtoull(buf, &end, 10);
    if (!ok || buf[0] < '0' || buf[0] > '9' || errno != 0 ||
        (*end != '\n' && *end != '\0') || *out >= UINT64_MAX)
        return sd_err_set(err, "%s: not a CRL number", path);
    return 0;
}

/* The number of the CRL now in DIR/crl.pem, so that a lost or edited
 * crlnumber cannot make a number go back; 0 when there is none. */
static int sd_pki_crl_last_number(const struct sd_pki_dir *d, unsigned long long *out,
                                  struct sd_err *err)
{
    X509_CRL *crl = NULL;
    ASN1_INTEGER *num = NULL;
    uint64_t v = 0;
    int rc = -1, crit = 0;

    *out = 0;
    if (sd_pki_load_crl(d, SD_PKI_CRL, SD_PKI_OPTIONAL, &crl, err) != 0)
        goto out;
    if (crl != NULL) {
        num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
        if (num == NULL && crit != -1) {
            sd_err_openssl(err, "%s/%s: unreadable CRL number", d->path, SD_PKI_CRL);
            goto out;
        }
        if (num != NULL && (ASN1_INTEGER_get_uint64(&v, num) != 1 || v >= UINT64_MAX)) {
            sd_err_openssl(err, "%s/%s: CRL number out of range", d->path, SD_PKI_CRL);
            goto out;
        }
        *out = (unsigned long long)v;
    }
    rc = 0;
out:
    ERR_clear_error();
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    return rc;
}

static int sd_pki_crl_add_cb(const struct sd_pki_entry *e, void *arg, struct sd_err *err)
{
    X509_CRL *crl = arg;
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *s = BN_to_ASN1_INTEGER(e->serial, NULL);
    ASN1_TIME *t = ASN1_TIME_set(NULL, e->when);
    int rc = -1;

    if (r == NULL || s == NULL || t == NULL ||
        X509_REVOKED_set_serialNumber(r, s) != 1 ||
        X509_REVOKED_set_revocationDate(r, t) != 1 ||
        X509_CRL_add0_revoked(crl, r) != 1) {
        sd_err_openssl(err, "cannot add revoked serial %s to the CRL", e->hex);
        goto out;
    }
    r = NULL; /* owned by crl */
    rc = 0;
out:
    X509_REVOKED_free(r);
    ASN1_INTEGER_free(s);
    ASN1_TIME_free(t);
    return rc;
}

int sd_pki_crl(const char *dir, int days, unsigned long long *number_out,
               struct sd_err *err)
{
    struct sd_pki_dir d = SD_PKI_DIR_NONE;
    struct sd_pki_ca ca;
    char num_path[PATH_MAX];
    char crl_path[PATH_MAX];
    unsigned long long number, last;
    X509_CRL *crl = NULL;
    ASN1_TIME *lastupd = NULL, *next = NULL;
    ASN1_INTEGER *num = NULL;
    X509_EXTENSION *aki = NULL;
    FILE *numfp = NULL, *rev = NULL;
    X509V3_CTX ctx;
    time_t now;
    int rc = -1;

    memset(&ca, 0, sizeof(ca));
    if (number_out != NULL)
        *number_out = 0;
    if (dir == NULL || dir[0] == '\0') {
        sd_err_set(err, "CA directory is empty");
        goto out;
    }
    if (days <= 0) {
        sd_err_set(err, "validity of %d days is not positive", days);
        goto out;
    }
    if (sd_pki_path(num_path, sizeof(num_path), dir, SD_PKI_CRLNUMBER, "", err) != 0 ||
        sd_pki_path(crl_path, sizeof(crl_path), dir, SD_PKI_CRL, "", err) != 0)
        goto out;
    /* Under the lock from the number read to the CRL write: two crl runs
     * can no longer both take the same number. */
    if (sd_pki_dir_open(&d, dir, err) != 0 || sd_pki_ca_load(&ca, &d, 1, err) != 0 ||
        sd_pki_fopen(&d, SD_PKI_CRLNUMBER, SD_PKI_OPTIONAL, &numfp, err) != 0 ||
        sd_pki_crlnumber_read(num_path, numfp, &number, err) != 0 ||
        sd_pki_crl_last_number(&d, &last, err) != 0)
        goto out;
    if (last > number)
        number = last;
    number++; /* both are below UINT64_MAX: checked when read */

    now = time(NULL);
    crl = X509_CRL_new();
    /* lastUpdate is backdated like certificates, for peers whose clock is
     * behind: a CRL "not yet valid" fails verification. */
    lastupd = ASN1_TIME_adj(NULL, now, 0, -SD_PKI_SKEW_SECS);
    next = ASN1_TIME_adj(NULL, now, days, 0);
    num = ASN1_INTEGER_new();
    if (crl == NULL || lastupd == NULL || next == NULL || num == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.crt)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, lastupd) != 1 ||
        X509_CRL_set1_nextUpdate(crl, next) != 1 ||
        ASN1_INTEGER_set_uint64(num, (uint64_t)number) != 1) {
        sd_err_openssl(err, "%s: cannot build the CRL", crl_path);
        goto out;
    }
    if (sd_pki_fopen(&d, SD_PKI_REVOKED, SD_PKI_OPTIONAL, &rev, err) != 0 ||
        sd_pki_list_each(&d, SD_PKI_REVOKED, rev, sd_pki_crl_add_cb, crl, err) != 0)
        goto out;
    X509V3_set_ctx(&ctx, ca.crt, NULL, NULL, crl, 0);
    aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (X509_CRL_sort(crl) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_REPLACE) != 1 ||
        aki == NULL || X509_CRL_add_ext(crl, aki, -1) != 1) {
        sd_err_openssl(err, "%s: cannot add CRL extensions", crl_path);
        goto out;
    }
    if (X509_CRL_sign(crl, ca.key, EVP_sha256()) <= 0) {
        sd_err_openssl(err, "%s: cannot sign with %s", crl_path, ca.key_path);
        goto out;
    }
    /* The number is saved first: if the CRL write then fails, a number is
     * skipped, which is allowed; reusing one for a different CRL is not. */
    if (sd_pki_write_file(&d, SD_PKI_CRLNUMBER, 0644, 0, sd_pki_emit_number, &number,
                          err) != 0 ||
        sd_pki_write_file(&d, SD_PKI_CRL, 0644, 0, sd_pki_emit_crl, crl, err) != 0)
        goto out;
    if (number_out != NULL)
        *number_out = number;
    rc = 0;
out:
    if (numfp != NULL)
        fclose(numfp);
    if (rev != NULL)
        fclose(rev);
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(lastupd);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    sd_pki_ca_free(&ca);
    sd_pki_dir_close(&d);
    return rc;
}
