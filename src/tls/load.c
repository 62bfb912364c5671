/*
 * load.c - what a context is built from, read through the file snapshot
 * (sd/files.h): its own certificate chain and key, the CA bundle or
 * directory, the CRLs and their freshness; and the certificate expiry
 * warnings. Every file is checked here and a failure names it.
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
#include "sd/log.h"

/* Unix seconds of an ASN.1 time; 0 when it cannot be read. */
int64_t sd_tls_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* Fetches path from the snapshot as a regular file, as a memory BIO. */
static BIO *sd_tls_file_bio(struct sd_files *files, const char *path, const char *what,
                            const struct sd_file **fout, struct sd_err *err)
{
    const struct sd_file *f;
    BIO *bio;

    if (sd_files_get(files, path, &f, err) != 0)
        return NULL;
    if (f->kind != SD_FILE_REG) {
        sd_err_set(err, "%s: cannot read %s: not a regular file", path, what);
        return NULL;
    }
    bio = BIO_new_mem_buf(f->data, (int)f->len);
    if (bio == NULL)
        sd_err_set(err, "out of memory");
    if (fout != NULL)
        *fout = f;
    return bio;
}

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

/* Loads the CA bundle: every certificate in it must be a CA certificate
 * (a leaf in a trust bundle would silently become a trust anchor), and there
 * must be at least one. Feeds the session id context digest with each CA so
 * that sessions are bound to this trust. */
static int sd_tls_load_ca_file(SSL_CTX *ctx, struct sd_files *files, const char *path,
                               EVP_MD_CTX *sid, int client_cas, int in_dir, int *total,
                               struct sd_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = NULL;
    X509 *x = NULL;
    int count = 0, rc = -1, index = 0;

    bio = sd_tls_file_bio(files, path, "CA bundle", NULL, err);
    if (bio == NULL)
        return -1;
    for (;;) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                break;
            }
            sd_err_openssl(err, "%s: certificate %d of the CA bundle cannot be parsed",
                           path, index + 1);
            goto out;
        }
        index++;
        if (X509_check_ca(x) != 1) {
            char subj[256];
            X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
            sd_err_set(err, "%s: certificate %d (%s) is not a CA certificate "
                       "(basicConstraints CA:TRUE missing)", path, index, subj);
            goto out;
        }
        if (!X509_STORE_add_cert(store, x) || (client_cas && !SSL_CTX_add_client_CA(ctx, x)) ||
            !X509_digest(x, EVP_sha256(), md, &mdlen) ||
            !EVP_DigestUpdate(sid, md, mdlen)) {
            sd_err_openssl(err, "%s: cannot add CA certificate %d", path, index);
            goto out;
        }
        X509_free(x);
        x = NULL;
        count++;
    }
    if (count == 0 && in_dir) {
        /* A directory of bundles may hold other files (a README, CRLs, a
         * bundle emptied to remove a CA): skipped, never a blocked start or
         * a blocked reload that removes trust. */
        if (!sd_files_frozen(files))
            sd_log_msg("warn", "config", "%s: no PEM certificate in this file of the CA "
                       "directory; skipped", path);
        rc = 0;
        goto out;
    }
    if (count == 0) {
        sd_err_set(err, "%s: CA bundle contains no CA certificate", path);
        goto out;
    }
    *total += count;
    rc = 0;
out:
    X509_free(x);
    BIO_free(bio);
    return rc;
}

/* --cacert: a file, or a directory whose every regular, non-hidden file is
 * a CA bundle (read in name order, so the result does not depend on the
 * directory's internal order). */
int sd_tls_load_cas(SSL_CTX *ctx, struct sd_files *files, const char *path,
                    EVP_MD_CTX *sid, int client_cas, struct sd_err *err)
{
    const struct sd_file *dir, *f;
    size_t off;
    int total = 0;

    if (sd_files_get(files, path, &dir, err) != 0)
        return -1;
    if (dir->kind != SD_FILE_DIR)
        return sd_tls_load_ca_file(ctx, files, path, sid, client_cas, 0, &total, err);
    for (off = 0; off < dir->len; off += strlen((const char *)dir->data + off) + 1) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, (const char *)dir->data + off);
        if (sd_files_get(files, file, &f, err) != 0)
            return -1;
        if (f->kind != SD_FILE_REG)
            continue; /* subdirectories are not read */
        if (sd_tls_load_ca_file(ctx, files, file, sid, client_cas, 1, &total, err) != 0)
            return -1;
    }
    if (total == 0)
        return sd_err_set(err, "%s: CA directory contains no CA certificate", path);
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

void sd_tls_warn_crls(const struct sd_tls *tls, uint32_t within_s)
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

/* Loads a CRL file: one DER CRL, or one or more PEM CRLs (CAs publish one
 * CRL each, and a bundle of them in one file is common). Every CRL in it
 * must be valid; anything else in a PEM file is an error, never skipped. */
static int sd_tls_load_crl(struct sd_tls *tls, SSL_CTX *ctx, struct sd_files *files,
                           const char *path, EVP_MD_CTX *sid, struct sd_err *err)
{
    X509_CRL *crl = NULL;
    BIO *bio = NULL;
    int n = 0, rc = -1;
    unsigned long e;

    bio = sd_tls_file_bio(files, path, "CRL", NULL, err);
    if (bio == NULL)
        return -1;
    crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    if (crl == NULL) {
        ERR_clear_error();
        (void)BIO_reset(bio);
        crl = d2i_X509_CRL_bio(bio, NULL);
        if (crl == NULL) {
            sd_err_openssl(err, "%s: not a CRL (PEM or DER)", path);
            goto out;
        }
        rc = sd_tls_add_crl(tls, ctx, files, path, crl, sid, err);
        goto out;
    }
    while (crl != NULL) {
        n++;
        if (sd_tls_add_crl(tls, ctx, files, path, crl, sid, err) != 0)
            goto out;
        X509_CRL_free(crl);
        crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        sd_err_openssl(err, "%s: CRL number %d of the file is not a valid PEM CRL", path,
                       n + 1);
        goto out;
    }
    ERR_clear_error();
    rc = 0;
out:
    X509_CRL_free(crl);
    BIO_free(bio);
    return rc;
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

/* The context's own certificate chain (leaf first) and key, from the
 * snapshot; role ("server", "client") is for messages. */
int sd_tls_load_identity(SSL_CTX *ctx, struct sd_files *files, const char *cert,
                         const char *key_path, const char *role, struct sd_err *err)
{
    const struct sd_file *kf = NULL;
    BIO *cb = NULL, *kb = NULL;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    cb = sd_tls_file_bio(files, cert, "certificate", NULL, err);
    if (cb == NULL)
        goto out;
    kb = sd_tls_file_bio(files, key_path, "private key", &kf, err);
    if (kb == NULL)
        goto out;
    x = PEM_read_bio_X509_AUX(cb, NULL, NULL, NULL);
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
        sd_err_openssl(err, "%s: cannot load certificate chain", cert);
        goto out;
    }
    X509_free(x);
    while ((x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            sd_err_openssl(err, "%s: cannot load certificate chain", cert);
            goto out;
        }
        x = NULL; /* owned by the context now */
    }
    {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
            ERR_clear_error();
        } else if (e != 0) {
            sd_err_openssl(err, "%s: cannot load certificate chain", cert);
            goto out;
        }
    }
    if (sd_tls_check_validity(SSL_CTX_get0_certificate(ctx), cert, role, err) != 0)
        goto out;
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
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
    X509_free(x);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

static void sd_tls_warn_cert(X509 *x, const char *file, const char *role, uint32_t within_s)
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

    if (leaf != NULL)
        sd_tls_warn_cert(leaf, lc->cert, "server", within_s);
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
            sd_tls_warn_cert(sk_X509_value(chain, i), lc->cert, "server_chain", within_s);
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL)
            sd_tls_warn_cert(ca, lc->cacert, "client_ca", within_s);
    }
    ERR_clear_error();
}
