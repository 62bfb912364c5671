/*
 * verify.c - deciding who is admitted: OpenSSL's chain verification plus
 * steeldoor's own rules (the CA-leaf rule, EKU required, every loaded CRL
 * applied, the allow rules on the peer's extracted identity), the
 * verified-chain cache, and the re-judging of open connections after a
 * reload. The same callbacks serve the client role, where the peer is a
 * server (EKU serverAuth; allow rules or the host name check).
 */
#include "tls_int.h"

#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "compat.h"

/* ------------------------------------------------------------ allow rules */

/* Extracts the identity of x into c->peer.cert (known: x's extraction,
 * when the caller already has it, referenced instead) and applies the
 * context's allow rules. Returns 0 when admitted (c->peer.rule is the rule,
 * or -1 for a client context that checks the host name instead), -1 with
 * c's reason set when refused. */
int sd_tls_authorize(struct sd_tls_conn *c, const struct sd_tls *tls, X509 *x,
                     const struct sd_peer_cert *known)
{
    const struct sd_peer_cert *pc = known != NULL ? sd_peer_cert_ref(known)
                                                  : sd_tls_peer_cert_new(x);

    sd_peer_cert_unref(c->peer.cert);
    c->peer.cert = pc;
    c->peer.rule = -1;
    memset(&c->peer.hit, 0, sizeof(c->peer.hit));
    c->peer.hit.rule = -1;
    if (pc == NULL) {
        c->s.reason = SD_R_OUT_OF_MEMORY;
        c->s.detail = "cannot extract the certificate's names";
        return -1;
    }
    if (pc->flags & SD_PEER_MALFORMED) {
        c->s.reason = SD_R_MALFORMED_IDENTITY;
        c->s.detail = "certificate names are malformed or ambiguous (embedded NUL or "
                      "control byte, undecodable or too many names, more than one "
                      "SPIFFE ID or CN)";
        return -1;
    }
    if (tls->policy == NULL)
        return 0; /* a client context without rules: the host name was checked */
    c->peer.rule = sd_policy_match_hit(tls->policy, &pc->id, &c->peer.hit);
    if (c->peer.rule < 0) {
        c->s.reason = SD_R_NOT_AUTHORIZED;
        c->s.detail = "no allow rule matched";
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ chain cache */

/* Key of a presented chain: SHA-256 over each certificate's SHA-256. */
static int sd_tls_chain_key(STACK_OF(X509) *sk, unsigned char key[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int i, ok = md != NULL && sk != NULL && sk_X509_num(sk) > 0 &&
                EVP_DigestInit_ex(md, EVP_sha256(), NULL);

    for (i = 0; ok && i < sk_X509_num(sk); i++)
        ok = X509_digest(sk_X509_value(sk, i), EVP_sha256(), d, &dlen) &&
             EVP_DigestUpdate(md, d, dlen);
    ok = ok && EVP_DigestFinal_ex(md, key, &dlen) && dlen == 32;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static struct sd_chain_entry *sd_tls_chain_slot(struct sd_tls *tls, const unsigned char *key)
{
    size_t i = ((size_t)key[0] | (size_t)key[1] << 8) & tls->chain_mask;

    return &tls->chains[i];
}

/* Empties a chain cache slot (the context's free, an overwrite). */
void sd_tls_chain_entry_clear(struct sd_chain_entry *e)
{
    X509_free(e->leaf);
    sd_peer_cert_unref(e->peer);
    memset(e, 0, sizeof(*e));
}

static void sd_tls_chain_remember(struct sd_tls *tls, const unsigned char *key,
                                  X509_STORE_CTX *xs, const struct sd_tls_conn *c, int64_t now)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
    struct sd_chain_entry e, *slot;
    int i;

    memset(&e, 0, sizeof(e));
    memcpy(e.key, key, sizeof(e.key));
    e.rule = c->peer.rule;
    e.hit = c->peer.hit;
    e.not_after = c->not_after;
    e.expires = now + SD_CHAIN_CACHE_TTL;
    if (tls->crl_fresh_until != 0 && tls->crl_fresh_until < e.expires)
        e.expires = tls->crl_fresh_until;
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        int64_t nb = sd_tls_time(X509_get0_notBefore(x));
        int64_t na = sd_tls_time(X509_get0_notAfter(x));
        if (nb == 0 || na == 0)
            return; /* unreadable dates: do not cache */
        if (nb > e.not_before)
            e.not_before = nb;
        if (na < e.expires)
            e.expires = na;
    }
    if (chain == NULL || e.expires <= now)
        return;
    e.used = 1;
    e.leaf = X509_STORE_CTX_get0_cert(xs);
    if (e.leaf != NULL && !X509_up_ref(e.leaf))
        e.leaf = NULL;
    e.peer = c->peer.cert != NULL ? sd_peer_cert_ref(c->peer.cert) : NULL;
    slot = sd_tls_chain_slot(tls, key);
    sd_tls_chain_entry_clear(slot);
    *slot = e;
}

/* When a full handshake authenticated its client, for session-lifetime,
 * in whole seconds as OpenSSL counts session times: rounded up, so that a
 * session lives its whole lifetime (and at most one second more), never
 * less. */
int64_t sd_tls_auth_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec + (ts.tv_nsec > 0);
}

/* The earliest notAfter of chain's certificates; INT64_MAX if none, 0 if
 * one cannot be read (then nothing is cached or resumed). */
static int64_t sd_tls_chain_not_after(STACK_OF(X509) *chain)
{
    int64_t min = INT64_MAX;
    int i;

    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        int64_t na = sd_tls_time(X509_get0_notAfter(sk_X509_value(chain, i)));
        if (na == 0)
            return 0;
        if (na < min)
            min = na;
    }
    return min;
}

/*
 * Is a certificate of chain (leaf first, as verified) listed as revoked by
 * any loaded CRL of its issuer? OpenSSL picks one CRL per issuer by dates
 * and order and ignores the others (and delta CRLs unless asked), so a
 * revocation in a second full CRL, or in a delta, could go unseen. Here a
 * certificate is revoked when ANY loaded CRL that its issuer really signed
 * lists it (removeFromCRL entries are not applied: a certificate on hold
 * stays refused until no loaded CRL lists it). Returns the depth of the
 * first revoked certificate, or -1.
 */
static int sd_tls_chain_revoked(const struct sd_tls *tls, STACK_OF(X509) *chain)
{
    int i, n = chain != NULL ? sk_X509_num(chain) : 0;
    size_t k;

    for (i = 0; i + 1 < n && tls->ncrls > 0; i++) {
        X509 *x = sk_X509_value(chain, i), *issuer = sk_X509_value(chain, i + 1);
        for (k = 0; k < tls->ncrls; k++) {
            const struct sd_tls_crl *r = &tls->crls[k];
            X509_REVOKED *rev = NULL;
            int from_issuer;

            if (X509_NAME_cmp(X509_CRL_get_issuer(r->crl), X509_get_subject_name(issuer)) != 0 ||
                X509_CRL_get0_by_cert(r->crl, &rev, x) != 1)
                continue;
            /* Listed. Count it only if this issuer signed the CRL: a CRL
             * from another CA of the same name is not its word. */
            if (r->signer != NULL)
                from_issuer = X509_cmp(r->signer, issuer) == 0 ||
                              EVP_PKEY_eq(X509_get0_pubkey(r->signer), X509_get0_pubkey(issuer)) == 1;
            else
                from_issuer = X509_CRL_verify(r->crl, X509_get0_pubkey(issuer)) == 1;
            if (from_issuer) {
                ERR_clear_error();
                return i;
            }
        }
    }
    ERR_clear_error();
    return -1;
}

/* Notes the leaf that failed verification, for the log. */
static void sd_tls_note_refused(struct sd_tls_conn *c, X509 *leaf)
{
    if (c->refused_leaf == NULL && leaf != NULL && X509_up_ref(leaf))
        c->refused_leaf = leaf;
}

/* Replaces X509_verify_cert() for peer chains (SSL_CTX_set_cert_verify_
 * callback): a chain verified and admitted within the last minute, by this
 * same listener context, is accepted again without re-verifying (and
 * without extracting its identity again: the entry's extraction is
 * shared); anything else goes through the full verification (and
 * sd_tls_verify_cb). Applies every loaded CRL after OpenSSL's own check. */
int sd_tls_cert_verify_cb(X509_STORE_CTX *xs, void *arg)
{
    struct sd_tls *tls = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sd_tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    unsigned char key[32];
    int64_t now = (int64_t)time(NULL);
    int have_key = c != NULL && tls->chains != NULL &&
                   sd_tls_chain_key(X509_STORE_CTX_get0_untrusted(xs), key) == 0;
    int ok;

    if (have_key) {
        struct sd_chain_entry *e = sd_tls_chain_slot(tls, key);
        if (e->used && CRYPTO_memcmp(e->key, key, sizeof(key)) == 0 &&
            now >= e->not_before && now < e->expires) {
            c->peer.rule = e->rule;
            c->peer.hit = e->hit;
            sd_peer_cert_unref(c->peer.cert);
            c->peer.cert = e->peer != NULL ? sd_peer_cert_ref(e->peer) : NULL;
            c->auth_time = sd_tls_auth_now();
            c->not_after = e->not_after;
            if (c->parsed_leaf == NULL)
                c->parsed_leaf = sd_tls_compat_share_leaf(X509_STORE_CTX_get0_untrusted(xs),
                                                          e->leaf);
            X509_STORE_CTX_set_error(xs, X509_V_OK);
            return 1;
        }
    }
    ok = X509_verify_cert(xs);
    if (ok > 0 && sd_tls_chain_revoked(tls, X509_STORE_CTX_get0_chain(xs)) >= 0) {
        /* OpenSSL used one CRL per issuer; another loaded CRL lists it. */
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REVOKED);
        if (c != NULL) {
            c->peer.rule = -1; /* refused: no rule admitted it */
            if (c->verify_err == 0)
                c->verify_err = X509_V_ERR_CERT_REVOKED;
            sd_tls_note_refused(c, X509_STORE_CTX_get0_cert(xs));
        }
        ok = 0;
    }
    /* Admitted: by an allow rule, or (a client context without rules) by
     * the server name the verification checked. */
    if (ok > 0 && have_key && (c->peer.rule >= 0 || (tls->role == SD_TLS_CLIENT && tls->policy == NULL)) &&
        X509_STORE_CTX_get_error(xs) == X509_V_OK)
        sd_tls_chain_remember(tls, key, xs, c, now);
    ERR_clear_error();
    return ok > 0 ? 1 : 0;
}

/* --------------------------------------------------------- verify callback */

/* The log reason for an X509_V_ERR_* code. */
enum sd_reason sd_tls_verify_reason(int verr)
{
    switch (verr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return SD_R_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return SD_R_CERTIFICATE_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return SD_R_CERTIFICATE_NOT_YET_VALID;
    case X509_V_ERR_INVALID_PURPOSE:
        return SD_R_WRONG_EKU;
    case X509_V_ERR_CERT_REVOKED:
        return SD_R_CERTIFICATE_REVOKED;
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return SD_R_CHAIN_TOO_LONG;
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return SD_R_CRL_EXPIRED;
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return SD_R_CRL_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return SD_R_CRL_MISSING;
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        return SD_R_CRL_INVALID;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return SD_R_UNKNOWN_CA;
    case X509_V_ERR_HOSTNAME_MISMATCH: /* client role only: not the server asked for */
        return SD_R_NOT_AUTHORIZED;
    default:
        return SD_R_BAD_CERTIFICATE;
    }
}

/*
 * Called by OpenSSL for each certificate of the peer's chain, root first.
 * Records the first failure for the log; on the leaf, additionally requires
 * the extendedKeyUsage extension to list clientAuth (serverAuth for a
 * client context). (RFC 5280 lets a certificate without EKU be used for
 * anything; a gateway that admits programs by certificate should not
 * accept a certificate that was never issued for client authentication,
 * so steeldoor requires it explicitly.) Then the allow rules.
 */
int sd_tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sd_tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    const struct sd_tls *tls = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    const struct sd_peer_cert *known = NULL;

    if (ssl == NULL) {
        /* Re-judging an open connection against a new context (no SSL). */
        const struct sd_tls_judging *j = X509_STORE_CTX_get_app_data(xs);
        if (j != NULL) {
            c = j->c;
            tls = j->tls;
            if (cert != NULL && cert == j->leaf)
                known = j->leaf_peer; /* the connection's own extraction */
        }
    }

    if (!ok && X509_STORE_CTX_get_error(xs) == X509_V_ERR_CRL_HAS_EXPIRED &&
        tls != NULL && tls->crl_grace_s > 0) {
        /* --crl-grace: a CRL a little past its nextUpdate is still used. */
        X509_CRL *crl = X509_STORE_CTX_get0_current_crl(xs);
        time_t limit = time(NULL) - (time_t)tls->crl_grace_s;
        if (crl != NULL && X509_CRL_get0_nextUpdate(crl) != NULL &&
            X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &limit) > 0)
            return 1;
    }
    if (ok && X509_STORE_CTX_get_error_depth(xs) == 0 && cert != NULL) {
        uint32_t flags = X509_get_extension_flags(cert);
        int client_role = tls != NULL && tls->role == SD_TLS_CLIENT;
        uint32_t eku = client_role ? XKU_SSL_SERVER : XKU_SSL_CLIENT;

        if ((flags & EXFLAG_CA) || X509_check_ca(cert) != 0) {
            /* A CA certificate (basicConstraints CA:TRUE, whatever its key
             * usage says; keyCertSign; or a v1 root) can sign certificates
             * for any name: it is never a client (nor a server). */
            X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
            if (c != NULL) {
                c->s.reason = SD_R_CA_CERTIFICATE;
                c->s.detail = client_role
                                  ? "a CA certificate is never accepted as a server certificate"
                                  : "a CA certificate is never accepted as a client certificate";
                sd_tls_note_refused(c, cert);
            }
            return 0;
        } else if (!(flags & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(cert) & eku)) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
            ok = 0;
        } else if (c != NULL && tls != NULL) {
            /* The chain is valid: now who is it? Deny unless a rule says
             * yes. Failing here fails the handshake itself. */
            if (sd_tls_authorize(c, tls, cert, known) != 0) {
                X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
                sd_tls_note_refused(c, cert);
                return 0;
            }
            c->auth_time = sd_tls_auth_now();
            c->not_after = sd_tls_chain_not_after(X509_STORE_CTX_get0_chain(xs));
        }
    }
    if (!ok && c != NULL) {
        if (c->verify_err == 0)
            c->verify_err = X509_STORE_CTX_get_error(xs);
        sd_tls_note_refused(c, X509_STORE_CTX_get0_cert(xs));
    }
    return ok;
}

/* ------------------------------------------------------- after a reload */

/* The certificates to offer as untrusted when c's client is verified
 * again: the verified chain's (full handshake), else those recorded in the
 * session (resumed), else what the client presented. Returns a new stack
 * owning its certificates (possibly empty), or NULL on allocation failure. */
static STACK_OF(X509) *sd_tls_conn_untrusted(const struct sd_tls_conn *c)
{
    STACK_OF(X509) *out = sk_X509_new_null();
    STACK_OF(X509) *chain = SSL_get0_verified_chain(c->ssl);
    struct sd_tls_adm a;
    int i;

    if (out == NULL)
        return NULL;
    /* (A client's session keeps the server's chain as presented.) */
    if (chain == NULL && (!SSL_session_reused(c->ssl) || !SSL_is_server(c->ssl)))
        chain = SSL_get_peer_cert_chain(c->ssl);
    if (chain != NULL) {
        for (i = 0; i < sk_X509_num(chain); i++) {
            X509 *x = sk_X509_value(chain, i);
            if (!X509_up_ref(x))
                goto fail;
            if (!sk_X509_push(out, x)) {
                X509_free(x);
                goto fail;
            }
        }
    } else if (sd_tls_adm_get(SSL_get_session(c->ssl), &a) == 0) {
        const unsigned char *p = a.chain, *end = a.chain + a.chainlen;
        while (p < end) {
            X509 *x = d2i_X509(NULL, &p, (long)(end - p));
            if (x == NULL)
                break;
            if (!sk_X509_push(out, x)) {
                X509_free(x);
                goto fail;
            }
        }
    }
    ERR_clear_error();
    return out;
fail:
    sk_X509_pop_free(out, X509_free);
    return NULL;
}

/*
 * Would `now` admit c's client if it connected now? The whole verification
 * runs again against the new context: its trust store (a CA removed),
 * CRLs (the leaf or any intermediate revoked, whatever the CRL layout),
 * chain depth, CRL freshness and grace, validity dates, EKU, the CA-leaf
 * and identity rules, and the allow rules. It starts from the chain that
 * verification built (so an intermediate that came from --cacert is judged
 * too), for full and resumed connections alike. The connection's identity
 * was extracted once, at its handshake: it is not extracted again.
 * Returns SD_R_NONE when now would admit it, else the reason.
 */
enum sd_reason sd_tls_judge(const struct sd_tls_conn *c, struct sd_tls *now)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE_CTX *xs = NULL;
    struct sd_tls_conn scratch;
    struct sd_tls_judging j;
    enum sd_reason reason = SD_R_INTERNAL_ERROR;
    unsigned char key[32];
    int64_t t = (int64_t)time(NULL);
    int ok, have_key = 0;

    if (peer == NULL)
        return SD_R_NO_CLIENT_CERTIFICATE;
    memset(&scratch, 0, sizeof(scratch));
    scratch.peer.rule = -1;
    j.c = &scratch;
    j.tls = now;
    j.leaf = peer;
    j.leaf_peer = c->peer.cert;
    untrusted = sd_tls_conn_untrusted(c);
    xs = X509_STORE_CTX_new();
    if (untrusted == NULL || xs == NULL ||
        !X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(now->ctx), peer, untrusted) ||
        !X509_STORE_CTX_set_default(xs, now->role == SD_TLS_CLIENT ? "ssl_server"
                                                                   : "ssl_client") ||
        !X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(xs), SSL_CTX_get0_param(now->ctx)))
        goto out; /* (the same set-up as OpenSSL's for a handshake) */
    /* Many connections of one client share one verdict: the new context's
     * chain cache is keyed by exactly the certificates given here. */
    if (now->chains != NULL && sk_X509_insert(untrusted, peer, 0) > 0) {
        have_key = sd_tls_chain_key(untrusted, key) == 0;
        (void)sk_X509_delete(untrusted, 0);
    }
    if (have_key) {
        const struct sd_chain_entry *e = sd_tls_chain_slot(now, key);
        if (e->used && CRYPTO_memcmp(e->key, key, sizeof(key)) == 0 &&
            t >= e->not_before && t < e->expires) {
            reason = SD_R_NONE;
            goto out;
        }
    }
    X509_STORE_CTX_set_app_data(xs, &j);
    X509_STORE_CTX_set_verify_cb(xs, sd_tls_verify_cb);
    ok = X509_verify_cert(xs);
    if (ok > 0 && sd_tls_chain_revoked(now, X509_STORE_CTX_get0_chain(xs)) >= 0) {
        ok = 0;
        scratch.verify_err = X509_V_ERR_CERT_REVOKED;
    }
    /* A connector without verify rules: the server name (in the copied
     * parameters) was checked by the verification itself. */
    if (ok > 0 && (scratch.peer.rule >= 0 || (now->role == SD_TLS_CLIENT && now->policy == NULL))) {
        reason = SD_R_NONE;
        if (have_key)
            sd_tls_chain_remember(now, key, xs, &scratch, t);
    } else if (scratch.s.reason != SD_R_NONE)
        reason = scratch.s.reason;
    else if (scratch.verify_err != 0)
        reason = sd_tls_verify_reason(scratch.verify_err);
    else
        reason = sd_tls_verify_reason(X509_STORE_CTX_get_error(xs));
out:
    X509_STORE_CTX_free(xs);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(scratch.refused_leaf);
    sd_peer_cert_unref(scratch.peer.cert);
    ERR_clear_error();
    return reason;
}
