/*
 * pki.c - the development PKI behind `steeldoor pki` (see sd/pki.h).
 *
 * Everything here runs once per command, never per connection, so it uses
 * sd_err throughout and favours plain code over speed. Only this file and
 * the test include OpenSSL; pki_cli.c sees the OpenSSL-free sd/pki.h.
 */
#include "sd/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define SD_PKI_CA_CN      "steeldoor dev CA"
#define SD_PKI_CURVE      "P-256"
/* Certificates start five minutes in the past so that a peer whose clock
 * is a little behind ours does not reject a certificate issued just now. */
#define SD_PKI_SKEW_SECS  (5L * 60L)
#define SD_PKI_SERIAL_LEN 16
#define SD_PKI_LINE_MAX   512
#define SD_PKI_CN_MAX     64   /* ub-common-name, RFC 5280 */
#define SD_PKI_DNS_MAX    253
#define SD_PKI_URI_MAX    1024

#define SD_PKI_REVOKED    "revoked.txt"
#define SD_PKI_CRLNUMBER  "crlnumber"
#define SD_PKI_CRL        "crl.pem"

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

int sd_pki_check_uri(const char *uri, struct sd_err *err)
{
    size_t i, len;

    if (uri == NULL || uri[0] == '\0')
        return sd_err_set(err, "URI is empty");
    len = strlen(uri);
    if (len > SD_PKI_URI_MAX)
        return sd_err_set(err, "URI '%.*s...' is longer than %d characters",
                          16, uri, SD_PKI_URI_MAX);
    /* RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
    if (!((uri[0] >= 'A' && uri[0] <= 'Z') || (uri[0] >= 'a' && uri[0] <= 'z')))
        return sd_err_set(err, "URI '%s' does not start with a scheme", uri);
    for (i = 1; uri[i] != ':'; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
            return sd_err_set(err, "URI '%s' does not start with 'scheme:'", uri);
    }
    if (uri[i + 1] == '\0')
        return sd_err_set(err, "URI '%s' is only a scheme", uri);
    /* The SAN holds an IA5String: ASCII only, and spaces are never valid. */
    for (; i < len; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c >= 0x7f)
            return sd_err_set(err, "URI '%s' contains a space, control or "
                              "non-ASCII character", uri);
    }
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

/* ------------------------------------------------------------------ */
/* Files                                                               */

static int sd_pki_path(char *buf, size_t size, const char *dir, const char *file,
                       const char *ext, struct sd_err *err)
{
    int n = snprintf(buf, size, "%s/%s%s", dir, file, ext);

    if (n < 0 || (size_t)n >= size)
        return sd_err_set(err, "%s/%s%s: path too long", dir, file, ext);
    return 0;
}

/* Writes one object to a stream; 0 or -1 (OpenSSL's queue may say why). */
typedef int (*sd_pki_emit_fn)(FILE *fp, const void *obj);

/*
 * Writes dir/file atomically: the bytes go to a new temporary file in dir
 * (same file system, so rename is atomic), which is fsynced and then moved
 * over the target. The temporary file is created with its final mode, so a
 * private key is never readable by anyone else, not even for a moment.
 * With noclobber the target is published with link(), which fails instead
 * of replacing a file that appeared in the meantime.
 */
static int sd_pki_write_file(const char *dir, const char *file, mode_t mode,
                             int noclobber, sd_pki_emit_fn emit, const void *obj,
                             struct sd_err *err)
{
    char path[PATH_MAX];
    char tmp[PATH_MAX];
    /* stdio's buffer holds key material: keep it where we can wipe it. */
    char iobuf[BUFSIZ];
    unsigned char rnd[8];
    FILE *fp = NULL;
    int fd = -1, dfd, have_tmp = 0, tries, rc = -1, n;

    if (sd_pki_path(path, sizeof(path), dir, file, "", err) != 0)
        goto out;
    for (tries = 0; tries < 16; tries++) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            sd_err_openssl(err, "%s: no random bytes for a temporary name", path);
            goto out;
        }
        /* A leading '.' keeps it out of the NAME namespace (see check_name). */
        n = snprintf(tmp, sizeof(tmp), "%s/.%s.%02x%02x%02x%02x%02x%02x%02x%02x.tmp",
                     dir, file, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
                     rnd[6], rnd[7]);
        if (n < 0 || (size_t)n >= sizeof(tmp)) {
            sd_err_set(err, "%s: path too long", path);
            goto out;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        sd_err_set(err, "%s: cannot create temporary file: %s", path, strerror(errno));
        goto out;
    }
    have_tmp = 1;
    /* The umask may have taken bits off a public file (a certificate must
     * be readable by the daemon's user). Private files are left exactly as
     * open() made them: a umask can only make them stricter. */
    if ((mode & 0044) != 0 && fchmod(fd, mode) != 0) {
        sd_err_set(err, "%s: cannot set mode: %s", tmp, strerror(errno));
        goto out;
    }
    fp = fdopen(fd, "w");
    if (fp == NULL) {
        sd_err_set(err, "%s: %s", tmp, strerror(errno));
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
        if (link(tmp, path) != 0) {
            if (errno == EEXIST)
                sd_err_set(err, "%s: already exists", path);
            else
                sd_err_set(err, "%s: %s", path, strerror(errno));
            goto out;
        }
        /* the temporary name is unlinked below */
    } else {
        if (rename(tmp, path) != 0) {
            sd_err_set(err, "%s: cannot rename %s into place: %s", path, tmp,
                       strerror(errno));
            goto out;
        }
        have_tmp = 0;
    }
    /* Make the new directory entry durable too; losing it is not an error
     * worth failing a dev tool for, so this is best effort. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    if (fp != NULL)
        fclose(fp);
    if (fd >= 0)
        close(fd);
    if (have_tmp)
        unlink(tmp);
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

/* Refuses to prompt on the terminal for the passphrase of an encrypted
 * key: the PKI never writes one, so a prompt would only confuse. */
static int sd_pki_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int sd_pki_load_cert(const char *path, X509 **out, struct sd_err *err)
{
    FILE *fp;

    *out = NULL;
    fp = fopen(path, "re");
    if (fp == NULL)
        return sd_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    *out = PEM_read_X509(fp, NULL, sd_pki_no_passphrase, NULL);
    fclose(fp);
    if (*out == NULL)
        return sd_err_openssl(err, "%s: not a PEM certificate", path);
    return 0;
}

static int sd_pki_load_key(const char *path, EVP_PKEY **out, struct sd_err *err)
{
    char iobuf[BUFSIZ];
    FILE *fp;
    int rc = -1;

    *out = NULL;
    fp = fopen(path, "re");
    if (fp == NULL)
        return sd_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));
    *out = PEM_read_PrivateKey(fp, NULL, sd_pki_no_passphrase, NULL);
    if (*out == NULL)
        sd_err_openssl(err, "%s: not an unencrypted PEM private key", path);
    else
        rc = 0;
    fclose(fp);
    OPENSSL_cleanse(iobuf, sizeof(iobuf));
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

/* Loads dir/ca.crt (and dir/ca.key when need_key) and checks that they are
 * a CA and its key, so that a mix-up is reported here, naming the files,
 * instead of as a signature failure on every peer later. */
static int sd_pki_ca_load(struct sd_pki_ca *ca, const char *dir, int need_key,
                          struct sd_err *err)
{
    memset(ca, 0, sizeof(*ca));
    if (sd_pki_path(ca->crt_path, sizeof(ca->crt_path), dir, "ca", ".crt", err) != 0 ||
        sd_pki_path(ca->key_path, sizeof(ca->key_path), dir, "ca", ".key", err) != 0)
        return -1;
    if (sd_pki_load_cert(ca->crt_path, &ca->crt, err) != 0)
        goto fail;
    if (X509_check_ca(ca->crt) == 0) {
        sd_err_set(err, "%s: not a CA certificate", ca->crt_path);
        goto fail;
    }
    if (!need_key)
        return 0;
    if (sd_pki_load_key(ca->key_path, &ca->key, err) != 0)
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

int sd_pki_init(const char *dir, const char *cn, int days, int force,
                struct sd_err *err)
{
    char key_path[PATH_MAX];
    struct stat st;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    X509V3_CTX ctx;
    int rc = -1;

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
    if (sd_pki_path(key_path, sizeof(key_path), dir, "ca", ".key", err) != 0)
        goto out;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        sd_err_set(err, "%s: cannot create directory: %s", dir, strerror(errno));
        goto out;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        sd_err_set(err, "%s: not a directory", dir);
        goto out;
    }
    /* Checked here for a clear message before any work; the write below
     * uses link() so a key that appears meanwhile is still not replaced. */
    if (!force && lstat(key_path, &st) == 0) {
        sd_err_set(err, "%s: already exists; refusing to replace the CA "
                   "(use --force)", key_path);
        goto out;
    }

    key = EVP_EC_gen(SD_PKI_CURVE);
    if (key == NULL) {
        sd_err_openssl(err, "%s: cannot generate a %s key", key_path, SD_PKI_CURVE);
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
    if (sd_pki_write_file(dir, "ca.key", 0600, !force, sd_pki_emit_key, key, err) != 0 ||
        sd_pki_write_file(dir, "ca.crt", 0644, 0, sd_pki_emit_cert, x, err) != 0)
        goto out;
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

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

int sd_pki_issue(const struct sd_pki_issue_req *req, struct sd_err *err)
{
    struct sd_pki_ca ca = {0};
    char crt_file[SD_PKI_NAME_MAX + 8];
    char key_file[SD_PKI_NAME_MAX + 8];
    const char *eku;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    X509V3_CTX ctx;
    int rc = -1;

    if (req == NULL) {
        sd_err_set(err, "no certificate request");
        goto out;
    }
    if (sd_pki_issue_check(req, err) != 0)
        goto out;
    snprintf(crt_file, sizeof(crt_file), "%s.crt", req->name);
    snprintf(key_file, sizeof(key_file), "%s.key", req->name);
    if (sd_pki_ca_load(&ca, req->dir, 1, err) != 0)
        goto out;

    key = EVP_EC_gen(SD_PKI_CURVE);
    if (key == NULL) {
        sd_err_openssl(err, "%s/%s: cannot generate a %s key", req->dir, key_file,
                       SD_PKI_CURVE);
        goto out;
    }
    x = sd_pki_cert_new(key, req->cn != NULL ? req->cn : req->name, req->days);
    if (x == NULL || X509_set_issuer_name(x, X509_get_subject_name(ca.crt)) != 1) {
        sd_err_openssl(err, "%s/%s: cannot build the certificate", req->dir, crt_file);
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
        sd_err_openssl(err, "%s/%s: cannot add extensions", req->dir, crt_file);
        goto out;
    }
    if (X509_sign(x, ca.key, EVP_sha256()) <= 0) {
        sd_err_openssl(err, "%s/%s: cannot sign with %s", req->dir, crt_file,
                       ca.key_path);
        goto out;
    }
    /* Key first, for the same reason as in sd_pki_init. */
    if (sd_pki_write_file(req->dir, key_file, 0600, 0, sd_pki_emit_key, key, err) != 0 ||
        sd_pki_write_file(req->dir, crt_file, 0644, 0, sd_pki_emit_cert, x, err) != 0)
        goto out;
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    sd_pki_ca_free(&ca);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Revocation                                                          */

/*
 * dir/revoked.txt is plain text so that it can be read and edited by hand:
 *   # comment
 *   SERIAL-HEX REVOKED-AT-UNIX-TIME NAME
 * one line per revoked certificate. The CRL is rebuilt from it each time.
 */

/* Called per entry; returns 0 to go on, 1 to stop early, -1 on error. */
typedef int (*sd_pki_revoked_fn)(const BIGNUM *serial, time_t when, void *arg,
                                 struct sd_err *err);

static int sd_pki_revoked_each(const char *path, sd_pki_revoked_fn fn, void *arg,
                               struct sd_err *err)
{
    char line[SD_PKI_LINE_MAX];
    FILE *fp;
    BIGNUM *bn = NULL;
    unsigned long lineno = 0;
    int rc = -1, r;

    fp = fopen(path, "re");
    if (fp == NULL) {
        if (errno == ENOENT)
            return 0; /* nothing revoked yet */
        return sd_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    }
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
        if (when == NULL) {
            sd_err_set(err, "%s:%lu: missing revocation time", path, lineno);
            goto out;
        }
        errno = 0;
        t = strtoll(when, &end, 10);
        if (errno != 0 || *end != '\0' || t < 0) {
            sd_err_set(err, "%s:%lu: '%s' is not a unix time", path, lineno, when);
            goto out;
        }
        r = fn(bn, (time_t)t, arg, err);
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
    BN_free(bn);
    fclose(fp);
    return rc;
}

struct sd_pki_find {
    const BIGNUM *serial;
    int found;
};

static int sd_pki_find_cb(const BIGNUM *serial, time_t when, void *arg,
                          struct sd_err *err)
{
    struct sd_pki_find *f = arg;

    (void)when;
    (void)err;
    if (BN_cmp(serial, f->serial) == 0) {
        f->found = 1;
        return 1;
    }
    return 0;
}

/* What sd_pki_emit_revoked writes: the old file, then one new line. */
struct sd_pki_append {
    const char *old_path;
    const char *line;
};

static int sd_pki_emit_revoked(FILE *fp, const void *obj)
{
    const struct sd_pki_append *a = obj;
    char buf[4096];
    size_t n;
    FILE *in;
    int rc = -1;

    in = fopen(a->old_path, "re");
    if (in == NULL) {
        if (errno != ENOENT)
            return -1;
        if (fputs("# steeldoor pki revocation list, read by 'steeldoor pki crl'.\n"
                  "# SERIAL-HEX REVOKED-AT-UNIX-TIME NAME\n", fp) == EOF)
            return -1;
    } else {
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            if (fwrite(buf, 1, n, fp) != n)
                goto out;
        if (ferror(in))
            goto out;
    }
    if (fputs(a->line, fp) == EOF)
        goto out;
    rc = 0;
out:
    if (in != NULL)
        fclose(in);
    return rc;
}

int sd_pki_revoke(const char *dir, const char *name, int *already, struct sd_err *err)
{
    struct sd_pki_ca ca = {0};
    char crt_path[PATH_MAX];
    char rev_path[PATH_MAX];
    char line[SD_PKI_LINE_MAX];
    struct sd_pki_find find = {0};
    struct sd_pki_append app;
    X509 *x = NULL;
    EVP_PKEY *ca_pub;
    BIGNUM *serial = NULL;
    char *hex = NULL;
    int rc = -1, n;

    if (already != NULL)
        *already = 0;
    if (dir == NULL || dir[0] == '\0') {
        sd_err_set(err, "CA directory is empty");
        goto out;
    }
    if (sd_pki_check_name(name, err) != 0 ||
        sd_pki_path(crt_path, sizeof(crt_path), dir, name, ".crt", err) != 0 ||
        sd_pki_path(rev_path, sizeof(rev_path), dir, SD_PKI_REVOKED, "", err) != 0)
        goto out;
    if (sd_pki_ca_load(&ca, dir, 0, err) != 0 ||
        sd_pki_load_cert(crt_path, &x, err) != 0)
        goto out;
    /* A serial means nothing outside its issuer: only record certificates
     * that this CA really signed. */
    ca_pub = X509_get0_pubkey(ca.crt);
    if (X509_check_issued(ca.crt, x) != X509_V_OK || ca_pub == NULL ||
        X509_verify(x, ca_pub) != 1) {
        ERR_clear_error();
        sd_err_set(err, "%s: not issued by %s", crt_path, ca.crt_path);
        goto out;
    }
    serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (serial == NULL || (hex = BN_bn2hex(serial)) == NULL) {
        sd_err_openssl(err, "%s: cannot read the serial number", crt_path);
        goto out;
    }
    find.serial = serial;
    if (sd_pki_revoked_each(rev_path, sd_pki_find_cb, &find, err) != 0)
        goto out;
    if (find.found) {
        if (already != NULL)
            *already = 1;
        rc = 0;
        goto out;
    }
    n = snprintf(line, sizeof(line), "%s %lld %s\n", hex, (long long)time(NULL), name);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        sd_err_set(err, "%s: entry too long", rev_path);
        goto out;
    }
    /* Rewritten whole through a temporary file, like every other file, so
     * an interrupted revoke leaves the old list intact. */
    app.old_path = rev_path;
    app.line = line;
    if (sd_pki_write_file(dir, SD_PKI_REVOKED, 0644, 0, sd_pki_emit_revoked, &app,
                          err) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_free(hex);
    BN_free(serial);
    X509_free(x);
    sd_pki_ca_free(&ca);
    return rc;
}

/* ------------------------------------------------------------------ */
/* CRL                                                                 */

static int sd_pki_emit_number(FILE *fp, const void *obj)
{
    return fprintf(fp, "%llu\n", *(const unsigned long long *)obj) < 0 ? -1 : 0;
}

/* Reads the last CRL number from dir/crlnumber; 0 when there is none. */
static int sd_pki_crlnumber_read(const char *path, unsigned long long *out,
                                 struct sd_err *err)
{
    char buf[64];
    char *end;
    FILE *fp;
    int ok;

    *out = 0;
    fp = fopen(path, "re");
    if (fp == NULL) {
        if (errno == ENOENT)
            return 0;
        return sd_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    }
    ok = fgets(buf, sizeof(buf), fp) != NULL;
    fclose(fp);
    errno = 0;
    if (ok && buf[0] >= '0' && buf[0] <= '9')
        *out = strtoull(buf, &end, 10);
    if (!ok || buf[0] < '0' || buf[0] > '9' || errno != 0 ||
        (*end != '\n' && *end != '\0') || *out >= UINT64_MAX)
        return sd_err_set(err, "%s: not a CRL number", path);
    return 0;
}

static int sd_pki_crl_add_cb(const BIGNUM *serial, time_t when, void *arg,
                             struct sd_err *err)
{
    X509_CRL *crl = arg;
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *s = BN_to_ASN1_INTEGER(serial, NULL);
    ASN1_TIME *t = ASN1_TIME_set(NULL, when);
    int rc = -1;

    if (r == NULL || s == NULL || t == NULL ||
        X509_REVOKED_set_serialNumber(r, s) != 1 ||
        X509_REVOKED_set_revocationDate(r, t) != 1 ||
        X509_CRL_add0_revoked(crl, r) != 1) {
        sd_err_openssl(err, "cannot add a revoked serial to the CRL");
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

int sd_pki_crl(const char *dir, int days, struct sd_err *err)
{
    struct sd_pki_ca ca = {0};
    char rev_path[PATH_MAX];
    char num_path[PATH_MAX];
    char crl_path[PATH_MAX];
    unsigned long long number;
    X509_CRL *crl = NULL;
    ASN1_TIME *last = NULL, *next = NULL;
    ASN1_INTEGER *num = NULL;
    X509_EXTENSION *aki = NULL;
    X509V3_CTX ctx;
    time_t now;
    int rc = -1;

    if (dir == NULL || dir[0] == '\0') {
        sd_err_set(err, "CA directory is empty");
        goto out;
    }
    if (days <= 0) {
        sd_err_set(err, "validity of %d days is not positive", days);
        goto out;
    }
    if (sd_pki_path(rev_path, sizeof(rev_path), dir, SD_PKI_REVOKED, "", err) != 0 ||
        sd_pki_path(num_path, sizeof(num_path), dir, SD_PKI_CRLNUMBER, "", err) != 0 ||
        sd_pki_path(crl_path, sizeof(crl_path), dir, SD_PKI_CRL, "", err) != 0)
        goto out;
    if (sd_pki_ca_load(&ca, dir, 1, err) != 0 ||
        sd_pki_crlnumber_read(num_path, &number, err) != 0)
        goto out;
    number++;

    now = time(NULL);
    crl = X509_CRL_new();
    /* lastUpdate is backdated like certificates, for peers whose clock is
     * behind: a CRL "not yet valid" fails verification. */
    last = ASN1_TIME_adj(NULL, now, 0, -SD_PKI_SKEW_SECS);
    next = ASN1_TIME_adj(NULL, now, days, 0);
    num = ASN1_INTEGER_new();
    if (crl == NULL || last == NULL || next == NULL || num == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.crt)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, last) != 1 ||
        X509_CRL_set1_nextUpdate(crl, next) != 1 ||
        ASN1_INTEGER_set_uint64(num, (uint64_t)number) != 1) {
        sd_err_openssl(err, "%s: cannot build the CRL", crl_path);
        goto out;
    }
    if (sd_pki_revoked_each(rev_path, sd_pki_crl_add_cb, crl, err) != 0)
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
    if (sd_pki_write_file(dir, SD_PKI_CRLNUMBER, 0644, 0, sd_pki_emit_number, &number,
                          err) != 0 ||
        sd_pki_write_file(dir, SD_PKI_CRL, 0644, 0, sd_pki_emit_crl, crl, err) != 0)
        goto out;
    rc = 0;
out:
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    sd_pki_ca_free(&ca);
    return rc;
}
