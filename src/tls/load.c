/*
 * load.c - what a context is built from, read through the file snapshot
 * (sd/files.h): its own certificate chain and key, the CA bundle or
 * directory, the CRLs and their freshness; and the certificate expiry
 * warnings. Every file is checked here and a failure names it. Each may be
 * PEM or DER, told apart by content; a file that holds something else (a
 * PKCS#12 bundle, an encrypted key, the other file of the pair, nothing)
 * is named with what it holds and the fix, and nothing ever prompts.
 */
#include "tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "sd/files.h"
#include "sd/format.h"
#include "sd/log.h"

/* Unix seconds of an ASN.1 time; 0 when it cannot be read. */
int64_t sd_tls_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* *fout = path from the snapshot, which must be a regular file; what
 * names it in the message. */
static int sd_tls_file(struct sd_files *files, const char *path, const char *what,
                       const struct sd_file **fout, struct sd_err *err)
{
    if (sd_files_get(files, path, fout, err) != 0)
        return -1;
    if ((*fout)->kind != SD_FILE_REG)
        return sd_err_set(err, "%s: cannot read %s: not a regular file", path, what);
    return 0;
}

/* The swap hint of a certificate or key file that holds the other. */
#define SD_TLS_SWAP "--cert and --key"

/* role ("server", "client") names whose certificate it is in the message. */
static int sd_tls_check_validity(X509 *x, const char *path, const char *role,
                                 struct sd_err *err)
{
    char when[64] = "?";
    BIO *b;

    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        b = BIO_new(BIO_s_mem());
        if (b != NULL) {
            int n;
            ASN1_TIME_print(b, X509_get0_notAfter(x));
            n = BIO_read(b, when, sizeof(when) - 1);
            when[n > 0 ? n : 0] = '\0';
            BIO_free(b);
        }
        return sd_err_set(err, "%s: %s certificate expired (notAfter %s)", path, role, when);
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        return sd_err_set(err, "%s: %s certificate is not valid yet", path, role);
    return 0;
}

/* One CA certificate of a bundle (sd_tls_load_ca_file). */
struct sd_tls_ca_load {
    SSL_CTX *ctx;
    const char *path;
    EVP_MD_CTX *sid;
    int client_cas;
    int count;
};

/* Adds CA certificate number index of the bundle; takes x. Every
 * certificate of a bundle must be a CA certificate (a leaf in a trust
 * bundle would silently become a trust anchor). Feeds the session id
 * context digest with it, so that sessions are bound to this trust. */
static int sd_tls_add_ca(X509 *x, int index, void *arg, struct sd_err *err)
{
    struct sd_tls_ca_load *a = arg;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;

    if (X509_check_ca(x) != 1) {
        char subj[256];
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
        sd_err_set(err, "%s: certificate %d (%s) is not a CA certificate "
                   "(basicConstraints CA:TRUE missing)", a->path, index, subj);
        goto out;
    }
    if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(a->ctx), x) ||
        (a->client_cas && !SSL_CTX_add_client_CA(a->ctx, x)) ||
        !X509_digest(x, EVP_sha256(), md, &mdlen) || !EVP_DigestUpdate(a->sid, md, mdlen)) {
        sd_err_openssl(err, "%s: cannot add CA certificate %d", a->path, index);
        goto out;
    }
    a->count++;
    rc = 0;
out:
    X509_free(x);
    return rc;
}

/* Loads a CA bundle: PEM (every CERTIFICATE block), or DER (one or more
 * certificates back to back); there must be at least one. In a --cacert
 * directory (in_dir), a file with no certificate (a README, a key, a CRL,
 * a bundle emptied to remove a CA) is skipped with a cacert_skipped
 * warning naming it and what it holds: never a blocked start, or a
 * blocked reload that removes trust; *skipped counts them. */
static int sd_tls_load_ca_file(SSL_CTX *ctx, struct sd_files *files, const char *path,
                               EVP_MD_CTX *sid, int client_cas, int in_dir, int *total,
                               int *skipped, struct sd_err *err)
{
    struct sd_tls_ca_load a = {ctx, path, sid, client_cas, 0};
    const struct sd_file *f = NULL;
    struct sd_format h;
    int n;

    if (sd_tls_file(files, path, "CA bundle", &f, err) != 0)
        return -1;
    n = sd_format_certs(f->data, f->len, path, SD_FORMAT_WANT_CA, sd_tls_add_ca, &a, err);
    if (n < 0)
        return -1;
    if (n > 0) {
        *total += n;
        return 0;
    }
    sd_format_sniff(f->data, f->len, &h);
    if (!in_dir)
        return sd_format_not(err, path, &h, SD_FORMAT_WANT_CA, NULL);
    (*skipped)++;
    if (!sd_files_frozen(files)) { /* else the master warned */
        char why[SD_ERR_MAX];
        char msg[SD_ERR_MAX + 4200];
        struct sd_logline l;

        sd_format_why(why, sizeof(why), path, &h, SD_FORMAT_WANT_CA, NULL);
        snprintf(msg, sizeof(msg), "%s %s; skipped: a --cacert directory is read for its "
                 "CA certificate files only", path, why);
        sd_log_begin(&l, "warn", "cacert_skipped");
        sd_log_str(&l, "file", path);
        sd_log_str(&l, "why", why);
        sd_log_str(&l, "msg", msg);
        sd_log_end(&l);
    }
    return 0;
}

/* --cacert: a file, or a directory whose every regular, non-hidden file is
 * a CA bundle (read in name order, so the result does not depend on the
 * directory's internal order). */
int sd_tls_load_cas(SSL_CTX *ctx, struct sd_files *files, const char *path,
                    EVP_MD_CTX *sid, int client_cas, struct sd_err *err)
{
    const struct sd_file *dir, *f;
    size_t off;
    int total = 0, skipped = 0;

    if (sd_files_get(files, path, &dir, err) != 0)
        return -1;
    if (dir->kind != SD_FILE_DIR)
        return sd_tls_load_ca_file(ctx, files, path, sid, client_cas, 0, &total, &skipped,
                                   err);
    for (off = 0; off < dir->len; off += strlen((const char *)dir->data + off) + 1) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, (const char *)dir->data + off);
        if (sd_files_get(files, file, &f, err) != 0)
            return -1;
        if (f->kind != SD_FILE_REG)
            continue; /* subdirectories are not read */
        if (sd_tls_load_ca_file(ctx, files, file, sid, client_cas, 1, &total, &skipped,
                                err) != 0)
            return -1;
    }
    if (total == 0)
        return sd_err_set(err, "%s: CA directory contains no CA certificate (PEM or DER)%s",
                          path, skipped > 0 ? "; every file in it was skipped (see the "
                                              "cacert_skipped warnings)" : "");
    return 0;
}

#define SD_TLS_MAX_CRL_OBJECTS 4096 /* CRLs per listener, over all files */

static char *sd_tls_name_text(const X509_NAME *n, char *buf, int len)
{
    X509_NAME_oneline(n, buf, len);
    return buf;
}

/* Finds the CA of the bundle that signed crl and adds it to the store and
 * to the listener's CRL list. A CRL whose issuer is not a CA of the bundle
 * (typically a leftover of a CA just removed from --cacert) is kept with a
 * warning: it cannot admit anyone and only ever applies to a client that
 * presents that issuer as an intermediate, where its signature is checked
 * against that certificate. A CRL that names a CA of the bundle but does
 * not verify with it is corrupt or forged: an error. */
static int sd_tls_add_crl(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                          const char *path, X509_CRL *crl, EVP_MD_CTX *sid,
                          struct sd_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509 *signer = NULL;
    int i, named = 0;
    char issuer[256];

    for (i = 0; i < sk_X509_OBJECT_num(objs) && signer == NULL; i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca == NULL || X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) != 0)
            continue;
        named = 1;
        if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            signer = ca;
    }
    ERR_clear_error();
    sd_tls_name_text(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
    if (signer == NULL && named)
        return sd_err_set(err, "%s: CRL of %s does not verify with that CA's key in the "
                          "--cacert bundle (corrupt, forged, or from another CA of the "
                          "same name)", path, issuer);
    if (signer == NULL && !sd_files_frozen(files))
        sd_log_msg("warn", "crl_ignored", "%s: CRL issuer %s is not a CA of the --cacert "
                   "bundle (a CA removed from it?); the CRL is ignored unless a client "
                   "presents that issuer as an intermediate", path, issuer);
    if (tls->ncrls >= SD_TLS_MAX_CRL_OBJECTS)
        return sd_err_set(err, "%s: too many CRLs for one listener (at most %d)", path,
                          SD_TLS_MAX_CRL_OBJECTS);
    if (tls->ncrls % 16 == 0) {
        struct sd_tls_crl *more = realloc(tls->crls, (tls->ncrls + 16) * sizeof(*more));
        if (more == NULL)
            return sd_err_set(err, "out of memory");
        tls->crls = more;
    }
    if (!X509_STORE_add_crl(store, crl) ||
        !X509_CRL_digest(crl, EVP_sha256(), md, &mdlen) || !EVP_DigestUpdate(sid, md, mdlen) ||
        !X509_CRL_up_ref(crl) || (signer != NULL && !X509_up_ref(signer)))
        return sd_err_openssl(err, "%s: cannot use CRL", path);
    tls->crls[tls->ncrls].crl = crl;
    tls->crls[tls->ncrls].signer = signer;
    tls->crls[tls->ncrls].delta = X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0;
    tls->crls[tls->ncrls].path = path;
    tls->ncrls++;
    return 0;
}

/* CRL i, if it is the first full CRL of its issuer in tls: that issuer's
 * newest nextUpdate (*next, Unix seconds, 0: one of them has none, so the
 * issuer is never stale), the file it is in and its lastUpdate. Returns 0
 * for the first CRL of an issuer, -1 for any other (done at the first). */
static int sd_tls_crl_newest(const struct sd_tls *tls, size_t i, int64_t *next,
                             const char **path, int64_t *last)
{
    size_t j;

    *next = 0;
    *path = tls->crls[i].path;
    *last = 0;
    if (tls->crls[i].delta)
        return -1;
    for (j = 0; j < tls->ncrls; j++) {
        int64_t nu;
        if (tls->crls[j].delta ||
            X509_NAME_cmp(X509_CRL_get_issuer(tls->crls[i].crl),
                          X509_CRL_get_issuer(tls->crls[j].crl)) != 0)
            continue;
        if (j < i)
            return -1; /* this issuer was done at its first CRL */
        nu = sd_tls_time(X509_CRL_get0_nextUpdate(tls->crls[j].crl));
        if (nu == 0) {
            *next = 0; /* no nextUpdate: never stale */
            return 0;
        }
        if (nu > *next) {
            *next = nu;
            *path = tls->crls[j].path;
            *last = sd_tls_time(X509_CRL_get0_lastUpdate(tls->crls[j].crl));
        }
    }
    return 0;
}

/* After all CRLs are loaded: until when is the set fresh? For each issuer
 * the newest full CRL decides (an old CRL lying next to a fresh one must
 * not refuse everyone), the earliest of those over all issuers, plus the
 * grace. */
static void sd_tls_crl_freshness(struct sd_tls *tls, struct sd_files *files)
{
    size_t i;

    (void)files;
    tls->crl_fresh_until = 0;
    for (i = 0; i < tls->ncrls; i++) {
        int64_t newest, last;
        const char *path;
        if (sd_tls_crl_newest(tls, i, &newest, &path, &last) != 0 || newest == 0)
            continue;
        newest += (int64_t)tls->crl_grace_s;
        if (tls->crl_fresh_until == 0 || newest < tls->crl_fresh_until)
            tls->crl_fresh_until = newest;
    }
}

void sd_tls_warn_crls(const struct sd_tls *tls, const char *listener, uint32_t within_s)
{
    int64_t now = (int64_t)time(NULL);
    size_t i;

    for (i = 0; tls != NULL && i < tls->ncrls; i++) {
        int64_t next, last, window;
        const char *path;
        char issuer[256];
        struct sd_logline l;

        if (sd_tls_crl_newest(tls, i, &next, &path, &last) != 0 || next == 0)
            continue;
        /* Warned a quarter of its life ahead (a 7-day CRL: 42 hours), at
         * least an hour, at most expiry-warning. */
        window = last > 0 && next > last ? (next - last) / 4 : 86400;
        if (window < 3600)
            window = 3600;
        if (window > (int64_t)within_s)
            window = (int64_t)within_s;
        if (next - now > window)
            continue;
        sd_tls_name_text(X509_CRL_get_issuer(tls->crls[i].crl), issuer, sizeof(issuer));
        sd_log_begin(&l, "warn", "crl_expiry"); /* as cert_expiry, expired or not */
        sd_log_str(&l, "listener", listener);
        sd_log_str(&l, "file", path);
        sd_log_str(&l, "issuer", issuer);
        sd_log_i64(&l, "seconds_left", next - now);
        if (tls->crl_grace_s > 0)
            sd_log_u64(&l, "grace_s", tls->crl_grace_s);
        sd_log_str(&l, "msg",
                   next + (int64_t)tls->crl_grace_s <= now
                       ? "the newest CRL of this issuer is past its nextUpdate: clients "
                         "whose chain it covers are refused (crl_expired) until a fresh CRL "
                         "is installed (steeldoor pki crl, or your CA's)"
                       : "the newest CRL of this issuer reaches its nextUpdate soon: install "
                         "a fresh one before then (steeldoor pki crl, or your CA's; the file "
                         "is watched), or clients whose chain it covers are refused");
        sd_log_end(&l);
    }
}

/* One CRL of a file (sd_tls_load_crl); takes crl. */
struct sd_tls_crl_load {
    struct sd_tls *tls;
    SSL_CTX *ctx;
    struct sd_files *files;
    const char *path;
    EVP_MD_CTX *sid;
};

static int sd_tls_take_crl(X509_CRL *crl, int index, void *arg, struct sd_err *err)
{
    struct sd_tls_crl_load *a = arg;
    int rc = sd_tls_add_crl(a->tls, a->ctx, a->files, a->path, crl, a->sid, err);

    (void)index;
    X509_CRL_free(crl);
    return rc;
}

/* Loads a CRL file: one DER CRL, or one or more PEM CRLs (CAs publish one
 * CRL each, and a bundle of them in one file is common). Every CRL in it
 * must be valid; a file without one names what it holds instead. */
static int sd_tls_load_crl(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                           const char *path, EVP_MD_CTX *sid, struct sd_err *err)
{
    struct sd_tls_crl_load a = {tls, ctx, files, path, sid};
    const struct sd_file *f = NULL;

    if (sd_tls_file(files, path, "CRL", &f, err) != 0)
        return -1;
    return sd_format_crls(f->data, f->len, path, sd_tls_take_crl, &a, err) < 0 ? -1 : 0;
}

/* Loads every CRL file of paths into tls and ctx (feeding sid), then
 * works out the set's freshness and turns CRL checking on for the leaf
 * and every intermediate. Returns 0, or -1 with err naming the file. */
int sd_tls_load_crls(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                     const char *const *paths, size_t n, EVP_MD_CTX *sid,
                     struct sd_err *err)
{
    unsigned long flags = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    size_t i;

    for (i = 0; i < n; i++)
        if (sd_tls_load_crl(tls, ctx, files, paths[i], sid, err) != 0)
            return -1;
    if (n == 0)
        return 0;
    sd_tls_crl_freshness(tls, files);
    /* Delta CRLs (the AD CS layout): OpenSSL applies them to their base
     * only when asked; sd_tls_chain_revoked() counts their revocations
     * in any case. */
    for (i = 0; i < tls->ncrls; i++)
        if (tls->crls[i].delta)
            flags |= X509_V_FLAG_USE_DELTAS;
    /* Check the leaf and every intermediate: a CA level without a CRL
     * from its issuer fails closed (crl_missing). */
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags);
    return 0;
}

/* The chain after our own certificate in our Certificate message, fixed
 * once per context. When the certificate file holds no chain, OpenSSL
 * would otherwise build it from the CA store on every full handshake
 * (X509_verify_cert, with its signature checks: about a tenth of a full
 * handshake's CPU); built here, the same certificates go out each time
 * and none is built again (SSL_MODE_NO_AUTO_CHAIN). A chain that cannot
 * be completed (our certificate from a CA the store does not hold) is kept
 * as far as it goes, as OpenSSL does per handshake. Call after the CAs are
 * loaded; returns 0, or -1 with err set. */
int sd_tls_fix_own_chain(SSL_CTX *ctx, const char *cert, struct sd_err *err)
{
    STACK_OF(X509) *chain = NULL;

    if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != NULL &&
        sk_X509_num(chain) > 0) {
        SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN); /* the file's chain, as given */
        return 0;
    }
    if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
                                          SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0) {
        sd_err_openssl(err, "%s: cannot build the certificate chain", cert);
        return -1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    ERR_clear_error();
    return 0;
}

/* Our own certificate chain, leaf first (sd_format_certs): the first
 * certificate is ours, the others its chain. */
struct sd_tls_own_load {
    SSL_CTX *ctx;
    const char *path;
};

static int sd_tls_add_own_cert(X509 *x, int index, void *arg, struct sd_err *err)
{
    struct sd_tls_own_load *a = arg;
    int ok;

    if (index == 1) {
        ok = SSL_CTX_use_certificate(a->ctx, x) == 1;
        X509_free(x);
    } else {
        ok = SSL_CTX_add0_chain_cert(a->ctx, x) == 1; /* takes x */
        if (!ok)
            X509_free(x);
    }
    return ok ? 0 : sd_err_openssl(err, "%s: cannot load certificate chain", a->path);
}

/* The context's own certificate chain (leaf first) and key, from the
 * snapshot; role ("server", "client") is for messages. */
int sd_tls_load_identity(SSL_CTX *ctx, struct sd_files *files, const char *cert,
                         const char *key_path, const char *role, struct sd_err *err)
{
    struct sd_tls_own_load own = {ctx, cert};
    const struct sd_file *cf = NULL, *kf = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    /* Nothing below reads an encrypted key, and nothing may prompt. */
    SSL_CTX_set_default_passwd_cb(ctx, sd_format_no_passphrase);
    if (sd_tls_file(files, cert, "certificate", &cf, err) != 0 ||
        sd_tls_file(files, key_path, "private key", &kf, err) != 0)
        goto out;
    if (sd_format_certs_required(cf->data, cf->len, cert, SD_FORMAT_WANT_CERT, SD_TLS_SWAP,
                                 sd_tls_add_own_cert, &own, err) < 0)
        goto out;
    if (sd_tls_check_validity(SSL_CTX_get0_certificate(ctx), cert, role, err) != 0)
        goto out;
    key = sd_format_key(kf->data, kf->len, key_path, SD_TLS_SWAP, err);
    if (key == NULL)
        goto out;
    /* Before SSL_CTX_use_PrivateKey, which refuses a mismatch with only
     * OpenSSL's "key values mismatch". */
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1) {
        ERR_clear_error();
        sd_err_set(err, "%s: private key does not match the certificate in %s (the key of "
                   "another certificate?)", key_path, cert);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        sd_err_openssl(err, "%s: cannot load private key", key_path);
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        sd_err_openssl(err, "%s: private key does not match certificate %s", key_path, cert);
        goto out;
    }
    /* Group read is how an unprivileged account (--user) is given a key
     * root owns (root:steeldoor 0640, as Debian's ssl-cert group); any
     * access by others, or group write, is a mistake. */
    if (!sd_files_frozen(files) && (kf->mode & 027) != 0)
        sd_log_msg("warn", "config", "%s: private key is accessible to others or writable "
                   "by its group (mode %03o); it should be 0600, or 0640 for a group "
                   "that only the steeldoor account is in", key_path, kf->mode & 0777);
    rc = 0;
out:
    EVP_PKEY_free(key);
    return rc;
}

static void sd_tls_warn_cert(X509 *x, const char *listener, const char *file,
                             const char *role, uint32_t within_s)
{
    time_t limit = time(NULL) + (time_t)within_s;
    int days = 0, secs = 0;
    char subj[256];
    struct sd_logline l;

    if (X509_cmp_time(X509_get0_notAfter(x), &limit) > 0)
        return;
    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    (void)ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x));
    sd_log_begin(&l, "warn", "cert_expiry");
    sd_log_str(&l, "listener", listener);
    sd_log_str(&l, "file", file);
    sd_log_str(&l, "role", role);
    sd_log_str(&l, "subject", subj);
    sd_log_i64(&l, "seconds_left", (int64_t)days * 86400 + secs);
    sd_log_str(&l, "msg", days * 86400 + secs <= 0 ? "certificate has expired"
                                                   : "certificate expires soon");
    sd_log_end(&l);
}

void sd_tls_warn_expiry(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                        uint32_t within_s)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(tls->ctx));
    STACK_OF(X509) *chain = NULL;
    X509 *leaf = SSL_CTX_get0_certificate(tls->ctx);
    int i;

    int client = lc->mode == SD_MODE_CONNECT; /* a connector's certificate is a client's */

    if (leaf != NULL)
        sd_tls_warn_cert(leaf, lc->name, lc->cert, client ? "client" : "server", within_s);
    /* Clients match the name they dialled against the SANs only (RFC 6125;
     * Go, curl, browsers, Python): a server certificate without them is
     * refused by every client, whatever its CN says. */
    if (leaf != NULL && lc->mode != SD_MODE_CONNECT &&
        X509_get_ext_by_NID(leaf, NID_subject_alt_name, -1) < 0) {
        struct sd_logline l;
        char subj[256];
        X509_NAME_oneline(X509_get_subject_name(leaf), subj, sizeof(subj));
        sd_log_begin(&l, "warn", "cert_no_san");
        sd_log_str(&l, "listener", lc->name);
        sd_log_str(&l, "file", lc->cert);
        sd_log_str(&l, "subject", subj);
        sd_log_str(&l, "msg", "the server certificate has no subjectAltName: clients ignore "
                   "the CN and will refuse it (reissue it with the names clients dial, e.g. "
                   "steeldoor pki issue --server --dns NAME --ip ADDR)");
        sd_log_end(&l);
    }
    if (SSL_CTX_get0_chain_certs(tls->ctx, &chain) == 1)
        for (i = 0; chain != NULL && i < sk_X509_num(chain); i++)
            sd_tls_warn_cert(sk_X509_value(chain, i), lc->name, lc->cert,
                             client ? "client_chain" : "server_chain", within_s);
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL)
            sd_tls_warn_cert(ca, lc->name, lc->cacert, client ? "server_ca" : "client_ca",
                             within_s);
    }
    ERR_clear_error();
}
