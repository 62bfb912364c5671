/*
 * compat.c - the certificate swaps inside OpenSSL's stacks (see compat.h).
 *
 * Why they are safe, in OpenSSL 3.0 (SD_TLS_COMPAT_SWAP):
 *
 * Shared leaf. tls_process_client_certificate() parses the client's chain
 * into a stack sk it owns (one reference per element), and
 * ssl_verify_cert_chain() builds the X509_STORE_CTX with ctx->cert =
 * sk[0] (no reference taken) and untrusted = sk, then calls our
 * cert-verify callback. After it returns, OpenSSL does
 * `session->peer = sk_X509_shift(sk); session->peer_chain = sk`, taking
 * over sk's references; it never compares certificate pointers. So when
 * sk[0] is replaced by another reference to an identical certificate
 * (same SHA-256 of the DER, then X509_cmp), the session receives the
 * shared object with the reference we added, and the stack's reference to
 * the parsed copy passes to the caller, which keeps it alive until the
 * handshake ends because the store context (freed when the verification
 * returns) and the handshake's own checks still point at it. Reference
 * counts stay balanced: one added (X509_up_ref(shared)), one moved.
 *
 * Shared chain. After the handshake, session->peer_chain (what
 * SSL_get_peer_cert_chain returns; on a server, without the leaf) is only
 * read (session serialisation, judging after a reload) and freed element
 * by element with the session. Replacing an element by another reference
 * to an identical certificate from the trust store, and dropping the
 * stack's reference to the old one, keeps the stack's one-reference-per-
 * element ownership. The verified chain (SSL_get0_verified_chain) holds its
 * own references and is not touched.
 */
#include "compat.h"

#include <openssl/x509_vfy.h>

#if SD_TLS_COMPAT_SWAP

X509 *sd_tls_compat_share_leaf(STACK_OF(X509) *sk, X509 *shared)
{
    X509 *parsed = sk != NULL && sk_X509_num(sk) > 0 ? sk_X509_value(sk, 0) : NULL;

    if (parsed == NULL || shared == NULL || parsed == shared ||
        X509_cmp(parsed, shared) != 0 || !X509_up_ref(shared))
        return NULL;
    (void)sk_X509_set(sk, 0, shared);
    return parsed;
}

/* The client's chain often repeats certificates the trust store holds
 * (clients that send their root, or intermediates steeldoor also trusts).
 * Each parsed copy costs about 4.5 KiB for as long as the session lives, so
 * copies identical to a store certificate are swapped for a reference to
 * the store's object: the same certificate, shared by every connection. */
void sd_tls_compat_share_chain(SSL *ssl)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    X509_STORE *store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
    STACK_OF(X509_OBJECT) *objs = store != NULL ? X509_STORE_get0_objects(store) : NULL;
    X509_OBJECT *probe;
    int i;

    if (chain == NULL || objs == NULL || (probe = X509_OBJECT_new()) == NULL)
        return;
    for (i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        X509_OBJECT *o;
        X509 *same;

        if (!X509_OBJECT_set1_X509(probe, x))
            break;
        o = X509_OBJECT_retrieve_match(objs, probe);
        same = o != NULL ? X509_OBJECT_get0_X509(o) : NULL;
        if (same != NULL && same != x && X509_up_ref(same)) {
            (void)sk_X509_set(chain, i, same);
            X509_free(x);
        }
    }
    X509_OBJECT_free(probe);
}

#else /* not checked against this OpenSSL: no sharing */

X509 *sd_tls_compat_share_leaf(STACK_OF(X509) *sk, X509 *shared)
{
    (void)sk;
    (void)shared;
    return NULL;
}

void sd_tls_compat_share_chain(SSL *ssl)
{
    (void)ssl;
}

#endif
