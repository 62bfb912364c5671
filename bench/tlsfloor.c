/*
 * bench/tlsfloor.c - what OpenSSL alone costs the server per mTLS handshake.
 *
 * Runs client and server in one thread over an in-memory BIO pair (no
 * sockets, no kernel), with the benchmark's setup: TLS 1.3, X25519,
 * TLS_AES_128_GCM_SHA256, ECDSA P-256 certificates, a client certificate
 * required, stateful sessions with one ticket, plus one small request and
 * response per connection; then, on one kept-alive connection, the same
 * request/response many times. Only the server's calls are timed, with the
 * thread's CPU clock. The figures are the floor under any gateway built on
 * this OpenSSL: `make bench` subtracts nothing, this program just shows how
 * much of a gateway's CPU per handshake is the library's.
 *
 *   tlsfloor --cert S.crt --key S.key --cacert CA.crt --client-cert C.crt
 *            --client-key C.key [--count N] [--chain-cached]
 *
 * --chain-cached skips the client chain's verification (as steeldoor's
 * verified-chain cache does for a chain seen within a minute); the
 * handshake's signature checks still run. Prints one JSON line.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double tf_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int tf_skip_chain(X509_STORE_CTX *xs, void *arg)
{
    (void)arg;
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

static void tf_die(const char *what)
{
    fprintf(stderr, "tlsfloor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* One connection: handshake, 100-byte request, 100-byte response, close.
 * Adds the server's CPU time to *server_us; returns the client's new
 * session (for the next resumption) and whether this one resumed. */
static SSL_SESSION *tf_conn(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess,
                            double *server_us, int *resumed)
{
    static const unsigned char msg[100] = {0};
    unsigned char buf[256];
    BIO *sb = NULL, *cb = NULL;
    SSL *s, *c;
    double t;
    int sdone = 0, cdone = 0, i;
    size_t n;
    SSL_SESSION *next;

    t = tf_now_us();
    s = SSL_new(sctx);
    *server_us += tf_now_us() - t;
    c = SSL_new(cctx);
    if (s == NULL || c == NULL || !BIO_new_bio_pair(&sb, 0, &cb, 0))
        tf_die("SSL_new");
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_tlsext_host_name(c, "localhost");
    if (sess != NULL)
        SSL_set_session(c, sess);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    for (i = 0; i < 100 && !(sdone && cdone); i++) {
        if (!cdone)
            cdone = SSL_do_handshake(c) == 1;
        if (!sdone) {
            t = tf_now_us();
            sdone = SSL_do_handshake(s) == 1;
            *server_us += tf_now_us() - t;
        }
    }
    if (!(sdone && cdone))
        tf_die("handshake did not complete");
    if (!SSL_write_ex(c, msg, sizeof(msg), &n))
        tf_die("client write");
    t = tf_now_us();
    if (!SSL_read_ex(s, buf, sizeof(buf), &n) || !SSL_write_ex(s, msg, sizeof(msg), &n))
        tf_die("server read/write");
    *server_us += tf_now_us() - t;
    if (!SSL_read_ex(c, buf, sizeof(buf), &n)) /* also takes the ticket */
        tf_die("client read");
    *resumed = SSL_session_reused(s);
    next = SSL_get1_session(c);
    SSL_shutdown(c);
    t = tf_now_us();
    (void)SSL_read_ex(s, buf, sizeof(buf), &n); /* close_notify */
    SSL_shutdown(s);
    SSL_free(s);
    *server_us += tf_now_us() - t;
    SSL_free(c);
    return next;
}

/* One established connection, then count request/response exchanges like
 * the keep-alive phase's (32 bytes in, 128 out). Returns the server's CPU
 * per exchange: the decryption of one small record and the encryption of
 * another, with everything OpenSSL does around them. */
static double tf_keepalive(SSL_CTX *sctx, SSL_CTX *cctx, long count)
{
    static const unsigned char req[32] = {0}, resp[128] = {0};
    unsigned char buf[256];
    BIO *sb = NULL, *cb = NULL;
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    double us = 0, t;
    int i, sdone = 0, cdone = 0;
    long k;
    size_t n;

    if (s == NULL || c == NULL || !BIO_new_bio_pair(&sb, 0, &cb, 0))
        tf_die("SSL_new");
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_tlsext_host_name(c, "localhost");
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    for (i = 0; i < 100 && !(sdone && cdone); i++) {
        if (!cdone)
            cdone = SSL_do_handshake(c) == 1;
        if (!sdone)
            sdone = SSL_do_handshake(s) == 1;
    }
    if (!(sdone && cdone))
        tf_die("handshake did not complete");
    for (k = 0; k < count; k++) {
        if (!SSL_write_ex(c, req, sizeof(req), &n))
            tf_die("client write");
        t = tf_now_us();
        if (!SSL_read_ex(s, buf, sizeof(buf), &n) || !SSL_write_ex(s, resp, sizeof(resp), &n))
            tf_die("server read/write");
        us += tf_now_us() - t;
        if (!SSL_read_ex(c, buf, sizeof(buf), &n))
            tf_die("client read");
    }
    SSL_free(s);
    SSL_free(c);
    return us / (double)count;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *ca = NULL, *ccert = NULL, *ckey = NULL;
    long count = 2000, k, nres = 0;
    int chain_cached = 0, i, resumed;
    SSL_CTX *sctx, *cctx;
    SSL_SESSION *sess = NULL;
    double full_us = 0, res_us = 0, ka_us, t;

    for (i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--chain-cached")) {
            chain_cached = 1;
            continue;
        }
        if (v == NULL)
            tf_die("missing value (see the comment at the top of bench/tlsfloor.c)");
        if (!strcmp(argv[i], "--cert"))
            cert = v;
        else if (!strcmp(argv[i], "--key"))
            key = v;
        else if (!strcmp(argv[i], "--cacert"))
            ca = v;
        else if (!strcmp(argv[i], "--client-cert"))
            ccert = v;
        else if (!strcmp(argv[i], "--client-key"))
            ckey = v;
        else if (!strcmp(argv[i], "--count"))
            count = strtol(v, NULL, 10);
        else
            tf_die("unknown option");
        i++;
    }
    if (!cert || !key || !ca || !ccert || !ckey || count < 1 || count > 1000000)
        tf_die("usage: see the comment at the top of bench/tlsfloor.c");

    sctx = SSL_CTX_new(TLS_server_method());
    cctx = SSL_CTX_new(TLS_client_method());
    if (sctx == NULL || cctx == NULL)
        tf_die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
    SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(sctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(sctx, ca, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(cctx, ccert) != 1 ||
        SSL_CTX_use_PrivateKey_file(cctx, ckey, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(cctx, ca, NULL) != 1 ||
        SSL_CTX_set1_groups_list(sctx, "X25519") != 1 ||
        SSL_CTX_set1_groups_list(cctx, "X25519") != 1 ||
        SSL_CTX_set_ciphersuites(cctx, "TLS_AES_128_GCM_SHA256") != 1)
        tf_die("cannot load the certificates");
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    if (chain_cached)
        SSL_CTX_set_cert_verify_callback(sctx, tf_skip_chain, NULL);
    SSL_CTX_set_session_id_context(sctx, (const unsigned char *)"tlsfloor", 8);
    SSL_CTX_set_options(sctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(sctx, 1);
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);

    /* warm-up, then alternate: a full handshake, then a resumed one */
    for (k = 0; k < 50; k++) {
        double ignored = 0;
        SSL_SESSION *s2 = tf_conn(sctx, cctx, NULL, &ignored, &resumed);
        SSL_SESSION_free(tf_conn(sctx, cctx, s2, &ignored, &resumed));
        SSL_SESSION_free(s2);
    }
    for (k = 0; k < count; k++) {
        t = 0;
        sess = tf_conn(sctx, cctx, NULL, &t, &resumed);
        full_us += t;
        t = 0;
        SSL_SESSION_free(tf_conn(sctx, cctx, sess, &t, &resumed));
        SSL_SESSION_free(sess);
        res_us += t;
        nres += resumed;
    }
    ka_us = tf_keepalive(sctx, cctx, count * 20);
    printf("{\"openssl\":\"%s\",\"count\":%ld,\"chain_cached\":%s,"
           "\"server_full_us\":%.1f,\"server_resumed_us\":%.1f,\"resumed_fraction\":%.3f,"
           "\"server_keepalive_request_us\":%.2f}\n",
           OpenSSL_version(OPENSSL_VERSION), count, chain_cached ? "true" : "false",
           full_us / (double)count, res_us / (double)count, (double)nres / (double)count, ka_us);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return nres == count ? 0 : 1;
}
