/* Unit tests for the TLS boundary (src/tls): client and server streams in
 * one process, as s2n and libtls test theirs. Certificates are made here,
 * with OpenSSL, into a mkdtemp directory; the contexts are the real ones
 * (sd_tls_server_new, sd_tls_client_new).
 *
 * Over a non-blocking socketpair: handshake, data both ways, close_notify
 * and EOF, through the steeldoor socket BIO. Over a memory BIO pair (the
 * test-only constructor sd_tls_stream_new_bio): the verification and the
 * peer extraction, with every refusal the boundary names, on both sides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sd/config.h"
#include "sd/files.h"
#include "sd/peer.h"
#include "sd/policy.h"
#include "sd/reason.h"
#include "sd/stream.h"
#include "sd/tls.h"

#include "../../src/tls/tls_int.h" /* sd_tls_stream_new_bio, the stream's SSL */

#define URI_CLIENT "spiffe://example.org/ns/app/sa/billing"
#define URI_OTHER "spiffe://example.org/ns/app/sa/other"
#define DNS_SERVER "server.example.org"

enum { EKU_NONE = 0, EKU_CLIENT = 1, EKU_SERVER = 2 };

/* One certificate and its key. */
struct kc {
    X509 *x;
    EVP_PKEY *k;
};

static char dir[64];
static struct kc ca, ca2, srv, srv_wrong_name, srv_other_ca, srv_no_eku, cli, cli_other_ca,
    cli_expired, cli_no_eku, cli_ca, cli_other_uri, inter, cli_inter;
static struct sd_config *cfg;
static struct sd_files *files;
static struct sd_tls *server_tls, *client_tls, *client_rules_tls;
/* An HTTP mode listener with resumption (5 minutes) and allow-all: ALPN,
 * and the certificates handed on for full and resumed handshakes. */
static struct sd_tls *http_tls;
static struct sd_policy *server_rules;

static EVP_PKEY *mk_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    assert_non_null(k);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_true(X509_add_ext(x, e, -1));
    X509_EXTENSION_free(e);
}

/* A certificate for cn, signed by issuer (NULL: self-signed), valid from
 * nb to na seconds from now, with the given SAN (NULL: none) and EKU. */
static struct kc mk_cert(const struct kc *issuer, const char *cn, const char *san, int is_ca,
                         int eku, long nb, long na)
{
    static long serial = 1;
    struct kc r;
    X509_NAME *name;

    r.k = mk_key();
    r.x = X509_new();
    assert_non_null(r.x);
    assert_true(X509_set_version(r.x, 2));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(r.x), serial++));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(r.x), nb));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(r.x), na));
    assert_true(X509_set_pubkey(r.x, r.k));
    name = X509_get_subject_name(r.x);
    assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                                           -1, -1, 0));
    assert_true(X509_set_issuer_name(r.x, issuer != NULL ? X509_get_subject_name(issuer->x)
                                                         : name));
    if (is_ca) {
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_key_usage,
                "critical,keyCertSign,cRLSign,digitalSignature");
    } else {
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_key_usage, "critical,digitalSignature");
    }
    if (eku == EKU_CLIENT)
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_ext_key_usage, "clientAuth");
    else if (eku == EKU_SERVER)
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_ext_key_usage, "serverAuth");
    else if (eku == (EKU_CLIENT | EKU_SERVER))
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_ext_key_usage,
                "clientAuth,serverAuth");
    if (san != NULL)
        add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_subject_alt_name, san);
    add_ext(r.x, issuer != NULL ? issuer->x : r.x, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(r.x, issuer != NULL ? issuer->k : r.k, EVP_sha256()) > 0);
    return r;
}

static void kc_free(struct kc *c)
{
    X509_free(c->x);
    EVP_PKEY_free(c->k);
    memset(c, 0, sizeof(*c));
}

static char *path_of(const char *name)
{
    static char paths[16][128];
    static int next;
    char *p = paths[next++ % 16];

    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

static void write_pem(const char *name, const struct kc *c, int with_key)
{
    char file[128];
    FILE *f;

    snprintf(file, sizeof(file), "%s/%s.crt", dir, name);
    f = fopen(file, "w");
    assert_non_null(f);
    assert_true(PEM_write_X509(f, c->x));
    fclose(f);
    if (!with_key)
        return;
    snprintf(file, sizeof(file), "%s/%s.key", dir, name);
    f = fopen(file, "w");
    assert_non_null(f);
    assert_true(PEM_write_PrivateKey(f, c->k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    chmod(file, 0600);
}

static int setup(void **state)
{
    struct sd_listener_conf *lc;
    struct sd_tls_client_conf cc;
    struct sd_err err;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sd-tls-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(sd_tls_init(&err), 0);

    ca = mk_cert(NULL, "test CA", NULL, 1, EKU_NONE, -3600, 86400);
    ca2 = mk_cert(NULL, "other CA", NULL, 1, EKU_NONE, -3600, 86400);
    srv = mk_cert(&ca, "server", "DNS:" DNS_SERVER, 0, EKU_SERVER, -3600, 86400);
    srv_wrong_name = mk_cert(&ca, "server", "DNS:other.example.org", 0, EKU_SERVER, -3600, 86400);
    srv_other_ca = mk_cert(&ca2, "server", "DNS:" DNS_SERVER, 0, EKU_SERVER, -3600, 86400);
    srv_no_eku = mk_cert(&ca, "server", "DNS:" DNS_SERVER, 0, EKU_CLIENT, -3600, 86400);
    cli = mk_cert(&ca, "billing", "URI:" URI_CLIENT, 0, EKU_CLIENT, -3600, 86400);
    cli_other_ca = mk_cert(&ca2, "billing", "URI:" URI_CLIENT, 0, EKU_CLIENT, -3600, 86400);
    cli_expired = mk_cert(&ca, "billing", "URI:" URI_CLIENT, 0, EKU_CLIENT, -7200, -3600);
    cli_no_eku = mk_cert(&ca, "billing", "URI:" URI_CLIENT, 0, EKU_SERVER, -3600, 86400);
    cli_ca = mk_cert(&ca, "billing", "URI:" URI_CLIENT, 1, EKU_CLIENT, -3600, 86400);
    cli_other_uri = mk_cert(&ca, "other", "URI:" URI_OTHER, 0, EKU_CLIENT, -3600, 86400);
    inter = mk_cert(&ca, "intermediate CA", NULL, 1, EKU_NONE, -3600, 86400);
    cli_inter = mk_cert(&inter, "billing", "URI:" URI_CLIENT, 0, EKU_CLIENT, -3600, 86400);
    write_pem("ca", &ca, 0);
    write_pem("server", &srv, 1);
    write_pem("client", &cli, 1);

    cfg = sd_config_new();
    assert_non_null(cfg);
    lc = sd_config_add_listener(cfg, &err);
    assert_non_null(lc);
    assert_int_equal(sd_config_set_str(&lc->name, "test", &err), 0);
    assert_int_equal(sd_config_set_str(&lc->cert, path_of("server.crt"), &err), 0);
    assert_int_equal(sd_config_set_str(&lc->key, path_of("server.key"), &err), 0);
    assert_int_equal(sd_config_set_str(&lc->cacert, path_of("ca.crt"), &err), 0);
    assert_int_equal(sd_config_add_rule(lc, "allow-uri", URI_CLIENT, &err), 0);
    lc->session_lifetime_ms = 0;
    files = sd_files_new();
    assert_non_null(files);
    server_tls = sd_tls_server_new(lc, files, &err);
    if (server_tls == NULL)
        fail_msg("server context: %s", err.msg);

    lc = sd_config_add_listener(cfg, &err);
    assert_non_null(lc);
    assert_int_equal(sd_config_set_str(&lc->name, "http", &err), 0);
    assert_int_equal(sd_config_set_str(&lc->cert, path_of("server.crt"), &err), 0);
    assert_int_equal(sd_config_set_str(&lc->key, path_of("server.key"), &err), 0);
    assert_int_equal(sd_config_set_str(&lc->cacert, path_of("ca.crt"), &err), 0);
    assert_int_equal(sd_config_add_rule(lc, "allow-all", "", &err), 0);
    lc->mode = SD_MODE_HTTP;
    http_tls = sd_tls_server_new(lc, files, &err);
    if (http_tls == NULL)
        fail_msg("HTTP mode server context: %s", err.msg);

    memset(&cc, 0, sizeof(cc));
    cc.cert = path_of("client.crt");
    cc.key = path_of("client.key");
    cc.cacert = path_of("ca.crt");
    cc.server_name = DNS_SERVER;
    cc.verify_depth = 4;
    client_tls = sd_tls_client_new(&cc, files, &err);
    if (client_tls == NULL)
        fail_msg("client context: %s", err.msg);

    /* A client that admits the server by an allow rule instead. */
    server_rules = sd_policy_new();
    assert_non_null(server_rules);
    assert_int_equal(sd_policy_add(server_rules, SD_RULE_DNS, DNS_SERVER, &err), 0);
    cc.server_name = NULL;
    cc.policy = server_rules;
    client_rules_tls = sd_tls_client_new(&cc, files, &err);
    if (client_rules_tls == NULL)
        fail_msg("client context with rules: %s", err.msg);
    return 0;
}

static int teardown(void **state)
{
    const char *names[] = { "ca.crt", "server.crt", "server.key", "client.crt", "client.key" };
    size_t i;

    (void)state;
    sd_tls_free(server_tls);
    sd_tls_free(http_tls);
    sd_tls_free(client_tls);
    sd_tls_free(client_rules_tls);
    sd_policy_free(server_rules);
    sd_files_free(files);
    sd_config_free(cfg);
    kc_free(&ca);
    kc_free(&ca2);
    kc_free(&srv);
    kc_free(&srv_wrong_name);
    kc_free(&srv_other_ca);
    kc_free(&srv_no_eku);
    kc_free(&cli);
    kc_free(&cli_other_ca);
    kc_free(&cli_expired);
    kc_free(&cli_no_eku);
    kc_free(&cli_ca);
    kc_free(&cli_other_uri);
    kc_free(&inter);
    kc_free(&cli_inter);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path_of(names[i]));
    rmdir(dir);
    return 0;
}

/* ---------------------------------------------------------------- drivers */

static SSL *ssl_of(struct sd_stream *s)
{
    return ((struct sd_tls_conn *)s)->ssl;
}

/* Presents c (key and certificate) instead of the context's own. */
static void use_cert(struct sd_stream *s, const struct kc *c)
{
    assert_int_equal(SSL_use_certificate(ssl_of(s), c->x), 1);
    assert_int_equal(SSL_use_PrivateKey(ssl_of(s), c->k), 1);
}

/* Runs both handshakes until each is done or failed. Every step first
 * tells the stream its socket is readable, as epoll would. */
static void handshake_both(struct sd_stream *srv_s, struct sd_stream *cli_s, enum sd_io *sr,
                           enum sd_io *cr)
{
    int i;

    *sr = *cr = SD_IO_WANT_READ;
    for (i = 0; i < 200; i++) {
        if (*cr == SD_IO_WANT_READ || *cr == SD_IO_WANT_WRITE) {
            sd_stream_readable(cli_s, 0);
            *cr = sd_stream_handshake(cli_s);
        }
        if (*sr == SD_IO_WANT_READ || *sr == SD_IO_WANT_WRITE) {
            sd_stream_readable(srv_s, 0);
            *sr = sd_stream_handshake(srv_s);
        }
        if ((*sr == SD_IO_OK || *sr == SD_IO_ERROR) && (*cr == SD_IO_OK || *cr == SD_IO_ERROR))
            return;
        /* One side failed: the other has its alert, or waits forever. */
        if (*sr == SD_IO_ERROR && i > 4)
            return;
        if (*cr == SD_IO_ERROR && i > 4)
            return;
    }
}

/* A pair of streams over a memory BIO pair: server first, then client. */
static void pair_bio(struct sd_tls *ctls, struct sd_stream **srv_s, struct sd_stream **cli_s)
{
    BIO *a = NULL, *b = NULL;

    assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
    *srv_s = sd_tls_stream_new_bio(server_tls, a, SD_SIDE_CLIENT);
    *cli_s = sd_tls_stream_new_bio(ctls, b, SD_SIDE_BACKEND);
    assert_non_null(*srv_s);
    assert_non_null(*cli_s);
}

/* Client presenting c (NULL: the context's own certificate) to the
 * server; returns the server's verdict, and the client's in *client. */
static enum sd_reason refused_by_server(const struct kc *c, int no_cert, enum sd_reason *client)
{
    struct sd_stream *s, *k;
    enum sd_io sr, cr;
    enum sd_reason r;

    pair_bio(client_tls, &s, &k);
    if (no_cert)
        SSL_certs_clear(ssl_of(k));
    else if (c != NULL)
        use_cert(k, c);
    handshake_both(s, k, &sr, &cr);
    r = sr == SD_IO_ERROR ? s->reason : SD_R_NONE;
    if (client != NULL)
        *client = cr == SD_IO_ERROR ? k->reason : SD_R_NONE;
    sd_stream_free(s);
    sd_stream_free(k);
    return r;
}

/* The server presenting c; returns the client's verdict. */
static enum sd_reason refused_by_client(struct sd_tls *ctls, const struct kc *c)
{
    struct sd_stream *s, *k;
    enum sd_io sr, cr;
    enum sd_reason r;

    pair_bio(ctls, &s, &k);
    if (c != NULL)
        use_cert(s, c);
    handshake_both(s, k, &sr, &cr);
    r = cr == SD_IO_ERROR ? k->reason : SD_R_NONE;
    if (cr == SD_IO_OK)
        assert_int_equal(sr, SD_IO_OK);
    sd_stream_free(s);
    sd_stream_free(k);
    return r;
}

/* ------------------------------------------------------------------ tests */

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* Reads from s until n bytes arrived or an EOF/error. */
static enum sd_io read_some(struct sd_stream *s, char *buf, size_t cap, size_t *got)
{
    enum sd_io io = SD_IO_WANT_READ;
    size_t n;
    int i;

    *got = 0;
    for (i = 0; i < 100 && *got < cap; i++) {
        sd_stream_readable(s, 0);
        io = sd_stream_read(s, buf + *got, cap - *got, &n);
        if (io == SD_IO_OK)
            *got += n;
        else if (io != SD_IO_WANT_READ)
            break;
    }
    return io;
}

static void write_all(struct sd_stream *s, const char *buf, size_t len)
{
    size_t done = 0, n;
    int i;

    for (i = 0; i < 100 && done < len; i++) {
        enum sd_io io = sd_stream_write(s, buf + done, len - done, &n);
        if (io == SD_IO_OK)
            done += n;
        else
            assert_true(io == SD_IO_WANT_READ || io == SD_IO_WANT_WRITE);
    }
    assert_int_equal(done, len);
}

static void test_socketpair_handshake_data_eof(void **state)
{
    int sv[2];
    struct sd_stream *s, *k;
    enum sd_io sr, cr;
    char buf[64 * 1024], big[40000];
    size_t got;
    const struct sd_peer *p;
    unsigned char md[32];
    unsigned int mdlen = 0;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
    s = sd_tls_stream_new(server_tls, sv[0], SD_SIDE_CLIENT);
    k = sd_tls_stream_new(client_tls, sv[1], SD_SIDE_BACKEND);
    assert_non_null(s);
    assert_non_null(k);
    assert_string_equal(s->ops->name, "tls");
    handshake_both(s, k, &sr, &cr);
    assert_int_equal(sr, SD_IO_OK);
    assert_int_equal(cr, SD_IO_OK);

    /* The server's peer: the client, as verified, extracted once. */
    p = sd_stream_peer(s);
    assert_non_null(p);
    assert_non_null(p->cert);
    assert_false(p->cert->flags & SD_PEER_MALFORMED);
    assert_int_equal(p->cert->id.nuris, 1);
    assert_int_equal(p->cert->id.uris[0].len, strlen(URI_CLIENT));
    assert_memory_equal(p->cert->id.uris[0].s, URI_CLIENT, strlen(URI_CLIENT));
    assert_true(X509_digest(cli.x, EVP_sha256(), md, &mdlen));
    assert_int_equal(mdlen, 32);
    assert_memory_equal(p->cert->cert_sha256, md, 32);
    assert_string_equal(p->tls_version, "TLSv1.3");
    assert_non_null(p->cipher);
    assert_int_equal(p->resumed, 0);
    assert_int_equal(p->rule, 0);
    assert_string_equal(p->rule_text, "uri:" URI_CLIENT);
    assert_int_equal(p->sni.len, strlen(DNS_SERVER));
    assert_memory_equal(p->sni.s, DNS_SERVER, strlen(DNS_SERVER));
    assert_non_null(sd_peer_identity(p));
    assert_int_equal(sd_peer_identity(p)->len, strlen(URI_CLIENT));
    /* The client's peer: the server, admitted by its name. */
    p = sd_stream_peer(k);
    assert_non_null(p);
    assert_non_null(p->cert);
    assert_int_equal(p->cert->id.ndns, 1);
    assert_memory_equal(p->cert->id.dns[0].s, DNS_SERVER, strlen(DNS_SERVER));
    assert_int_equal(p->rule, -1);

    /* Data both ways, one small message and a multi-record burst. */
    write_all(k, "ping", 4);
    assert_int_equal(read_some(s, buf, 4, &got), SD_IO_OK);
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "ping", 4);
    memset(big, 'x', sizeof(big));
    big[sizeof(big) - 1] = 'y';
    write_all(s, big, sizeof(big));
    assert_int_equal(read_some(k, buf, sizeof(big), &got), SD_IO_OK);
    assert_int_equal(got, sizeof(big));
    assert_memory_equal(buf, big, sizeof(big));

    /* The client's close_notify is the server's EOF; the server may still
     * send, then closes too. */
    assert_int_equal(sd_stream_shutdown(k), SD_IO_OK);
    assert_int_equal(read_some(s, buf, sizeof(buf), &got), SD_IO_EOF);
    assert_int_equal(got, 0);
    assert_int_equal(s->reason, SD_R_CLIENT_RESET);
    write_all(s, "bye", 3);
    assert_int_equal(read_some(k, buf, 3, &got), SD_IO_OK);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(sd_stream_shutdown(s), SD_IO_OK);
    assert_int_equal(read_some(k, buf, sizeof(buf), &got), SD_IO_EOF);
    assert_int_equal(k->reason, SD_R_BACKEND_RESET); /* the client stream faces the backend */

    /* Re-judging against the same context admits; the stream judges. */
    assert_int_equal(sd_stream_judge(s, server_tls), SD_R_NONE);
    sd_stream_free(s);
    sd_stream_free(k);
    close(sv[0]);
    close(sv[1]);
}

static void test_socketpair_peer_reset(void **state)
{
    int sv[2];
    struct sd_stream *s, *k;
    enum sd_io sr, cr;
    char buf[16];
    size_t got;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
    s = sd_tls_stream_new(server_tls, sv[0], SD_SIDE_CLIENT);
    k = sd_tls_stream_new(client_tls, sv[1], SD_SIDE_BACKEND);
    handshake_both(s, k, &sr, &cr);
    assert_int_equal(sr, SD_IO_OK);
    /* A FIN without close_notify is the client's half-close (EOF). */
    sd_stream_free(k);
    shutdown(sv[1], SHUT_WR);
    assert_int_equal(read_some(s, buf, sizeof(buf), &got), SD_IO_EOF);
    sd_stream_free(s);
    close(sv[0]);
    close(sv[1]);
}

static void test_bio_pair_admitted(void **state)
{
    struct sd_stream *s, *k;
    enum sd_io sr, cr;
    const struct sd_peer *p;

    (void)state;
    pair_bio(client_tls, &s, &k);
    handshake_both(s, k, &sr, &cr);
    assert_int_equal(sr, SD_IO_OK);
    assert_int_equal(cr, SD_IO_OK);
    p = sd_stream_peer(s);
    assert_int_equal(p->rule, 0);
    assert_int_equal(p->cert->id.nuris, 1);
    assert_int_equal(s->reason, SD_R_NONE);
    sd_stream_free(s);
    sd_stream_free(k);

    /* Again: the chain cache admits the same chain, and the peer is the
     * very same extraction (shared, not extracted again). */
    {
        struct sd_stream *s2, *k2;
        const struct sd_peer_cert *first;

        pair_bio(client_tls, &s, &k);
        handshake_both(s, k, &sr, &cr);
        assert_int_equal(sr, SD_IO_OK);
        first = sd_stream_peer(s)->cert;
        pair_bio(client_tls, &s2, &k2);
        handshake_both(s2, k2, &sr, &cr);
        assert_int_equal(sr, SD_IO_OK);
        assert_ptr_equal(sd_stream_peer(s2)->cert, first);
        assert_int_equal(sd_stream_peer(s2)->rule, 0);
        sd_stream_free(s2);
        sd_stream_free(k2);
        sd_stream_free(s);
        sd_stream_free(k);
    }
}

static void test_refused_no_client_certificate(void **state)
{
    (void)state;
    assert_int_equal(refused_by_server(NULL, 1, NULL), SD_R_NO_CLIENT_CERTIFICATE);
}

static void test_refused_unknown_ca(void **state)
{
    (void)state;
    assert_int_equal(refused_by_server(&cli_other_ca, 0, NULL), SD_R_UNKNOWN_CA);
}

static void test_refused_expired(void **state)
{
    (void)state;
    assert_int_equal(refused_by_server(&cli_expired, 0, NULL), SD_R_CERTIFICATE_EXPIRED);
}

static void test_refused_wrong_eku(void **state)
{
    (void)state;
    assert_int_equal(refused_by_server(&cli_no_eku, 0, NULL), SD_R_WRONG_EKU);
}

static void test_refused_ca_certificate(void **state)
{
    (void)state;
    assert_int_equal(refused_by_server(&cli_ca, 0, NULL), SD_R_CA_CERTIFICATE);
}

static void test_refused_not_authorized(void **state)
{
    struct sd_stream *s, *k;
    enum sd_io sr, cr;
    const struct sd_peer *p;
    enum sd_reason client;

    (void)state;
    assert_int_equal(refused_by_server(&cli_other_uri, 0, &client), SD_R_NOT_AUTHORIZED);
    /* TLS 1.3: the client's handshake is over before the server judges;
     * it learns of the refusal (an alert) at its first read. */
    assert_true(client == SD_R_NONE || client == SD_R_CLIENT_ALERT);
    /* The refused leaf is extracted for the log, with no rule. */
    pair_bio(client_tls, &s, &k);
    use_cert(k, &cli_other_uri);
    handshake_both(s, k, &sr, &cr);
    assert_int_equal(sr, SD_IO_ERROR);
    assert_string_equal(sd_reason_str(s->reason), "not_authorized");
    assert_string_equal(s->detail, "no allow rule matched");
    p = sd_stream_peer(s);
    assert_non_null(p->cert);
    assert_int_equal(p->rule, -1);
    assert_null(p->rule_text);
    assert_memory_equal(p->cert->id.uris[0].s, URI_OTHER, strlen(URI_OTHER));
    sd_stream_free(s);
    sd_stream_free(k);
}

static void test_client_refuses_wrong_name(void **state)
{
    (void)state;
    assert_int_equal(refused_by_client(client_tls, &srv_wrong_name), SD_R_NOT_AUTHORIZED);
}

static void test_client_refuses_wrong_ca(void **state)
{
    (void)state;
    assert_int_equal(refused_by_client(client_tls, &srv_other_ca), SD_R_UNKNOWN_CA);
}

static void test_client_refuses_no_server_eku(void **state)
{
    (void)state;
    assert_int_equal(refused_by_client(client_tls, &srv_no_eku), SD_R_WRONG_EKU);
}

static void test_client_rules(void **state)
{
    struct sd_stream *s, *k;
    enum sd_io sr, cr;

    (void)state;
    /* Admitted by the rule dns:server.example.org. */
    pair_bio(client_rules_tls, &s, &k);
    handshake_both(s, k, &sr, &cr);
    assert_int_equal(cr, SD_IO_OK);
    assert_int_equal(sd_stream_peer(k)->rule, 0);
    assert_string_equal(sd_stream_peer(k)->rule_text, "dns:" DNS_SERVER);
    sd_stream_free(s);
    sd_stream_free(k);
    /* Not by another name: the rules, not a host name check, decide. */
    assert_int_equal(refused_by_client(client_rules_tls, &srv_wrong_name), SD_R_NOT_AUTHORIZED);
}

static void test_client_conf_needs_name_or_rules(void **state)
{
    struct sd_tls_client_conf cc;
    struct sd_err err;

    (void)state;
    memset(&cc, 0, sizeof(cc));
    cc.cacert = path_of("ca.crt");
    assert_null(sd_tls_client_new(&cc, files, &err));
    assert_non_null(strstr(err.msg, "server name"));
}

/* ------------------------------------ a plain OpenSSL client: resumption */

/* The session a raw client got last (its new-session callback keeps it). */
static SSL_SESSION *raw_session;

static int raw_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    SSL_SESSION_free(raw_session);
    raw_session = sess;
    return 1; /* the reference is ours */
}

/* A client context of OpenSSL's own, as curl's: it keeps the sessions the
 * server gives it, may be limited to one TLS version (0: any), and does
 * not check the server (not what these tests are about). */
static SSL_CTX *raw_ctx(int version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());

    assert_non_null(c);
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, raw_new_session);
    if (version != 0) {
        assert_true(SSL_CTX_set_min_proto_version(c, version));
        assert_true(SSL_CTX_set_max_proto_version(c, version));
    }
    return c;
}

/* What a raw client presents and asks for. */
struct raw_opts {
    const struct kc *cert;        /* leaf and key */
    const struct kc *chain[2];    /* sent after the leaf, NULL-terminated */
    SSL_SESSION *resume;          /* offered for resumption, or NULL */
    const unsigned char *alpn;    /* wire-format ALPN list, or NULL */
    unsigned int alpnlen;
};

/* Handshakes a raw client (ctx, o) with a steeldoor server stream of stls
 * over a memory BIO pair. Returns the server's result; *srv_s and *kp
 * are the two ends (the caller frees both), after the client has read
 * what the server sent after its handshake (TLS 1.3 tickets). */
static enum sd_io raw_handshake(struct sd_tls *stls, SSL_CTX *ctx, const struct raw_opts *o,
                                struct sd_stream **srv_s, SSL **kp)
{
    BIO *a = NULL, *b = NULL;
    enum sd_io sr = SD_IO_WANT_READ;
    int cr = 0, i;
    unsigned char byte;
    size_t n;

    assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
    *srv_s = sd_tls_stream_new_bio(stls, a, SD_SIDE_CLIENT);
    assert_non_null(*srv_s);
    *kp = SSL_new(ctx);
    assert_non_null(*kp);
    SSL_set_bio(*kp, b, b);
    SSL_set_connect_state(*kp);
    assert_int_equal(SSL_use_certificate(*kp, o->cert->x), 1);
    assert_int_equal(SSL_use_PrivateKey(*kp, o->cert->k), 1);
    for (i = 0; i < 2 && o->chain[i] != NULL; i++)
        assert_int_equal(SSL_add1_chain_cert(*kp, o->chain[i]->x), 1);
    if (o->resume != NULL)
        assert_int_equal(SSL_set_session(*kp, o->resume), 1);
    if (o->alpn != NULL)
        assert_int_equal(SSL_set_alpn_protos(*kp, o->alpn, o->alpnlen), 0);
    for (i = 0; i < 200; i++) {
        if (cr != 1) {
            cr = SSL_do_handshake(*kp);
            if (cr != 1 && SSL_get_error(*kp, cr) != SSL_ERROR_WANT_READ)
                break;
        }
        if (sr == SD_IO_WANT_READ || sr == SD_IO_WANT_WRITE) {
            sd_stream_readable(*srv_s, 0);
            sr = sd_stream_handshake(*srv_s);
        }
        if (cr == 1 && sr != SD_IO_WANT_READ && sr != SD_IO_WANT_WRITE)
            break;
    }
    /* The client takes the server's session ticket with its first read. */
    for (i = 0; i < 4 && cr == 1; i++)
        (void)SSL_read_ex(*kp, &byte, 1, &n);
    ERR_clear_error();
    return sr;
}

/* Closes both ends cleanly (close_notify both ways): OpenSSL forgets the
 * session of a connection freed without it. */
static void raw_close(struct sd_stream *s, SSL *k)
{
    assert_int_equal(sd_stream_shutdown(s), SD_IO_OK);
    (void)SSL_shutdown(k);
    ERR_clear_error();
    sd_stream_free(s);
    SSL_free(k);
}

/* The certificates s hands on, as (length, DER)... in out; returns their
 * number (the function's result). */
static int certs_of(const struct sd_stream *s, unsigned char *out, size_t *outlen)
{
    static uint8_t buf[32768];
    struct sd_der certs[8];
    int n = sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 8), i;

    *outlen = 0;
    for (i = 0; i < n; i++) {
        uint32_t l = (uint32_t)certs[i].len;
        memcpy(out + *outlen, &l, sizeof(l));
        memcpy(out + *outlen + sizeof(l), certs[i].p, certs[i].len);
        *outlen += sizeof(l) + certs[i].len;
        /* every pointer is into buf, in order */
        assert_true(certs[i].p >= buf && certs[i].p + certs[i].len <= buf + sizeof(buf));
    }
    return n;
}

static void assert_der_is(const struct sd_der *d, X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);

    assert_true(len > 0);
    assert_int_equal(d->len, (size_t)len);
    assert_memory_equal(d->p, der, (size_t)len);
    OPENSSL_free(der);
}

/* Full handshakes (chain cache miss, then hit) and a resumed one hand on
 * byte-identical certificates: the leaf, then the intermediate the client
 * sent; a root it also sent is left out (the trust store holds it). TLS
 * 1.3 and 1.2. */
static void test_certs_der_full_and_resumed(void **state)
{
    static const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
    static unsigned char first[40000], again[40000];
    size_t firstlen, againlen, v, r;

    (void)state;
    for (v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
        for (r = 0; r < 2; r++) { /* r = 1: the client sends its root too */
            struct raw_opts o = { .cert = &cli_inter, .chain = { &inter, r ? &ca : NULL } };
            SSL_CTX *ctx = raw_ctx(versions[v]);
            struct sd_stream *s;
            SSL *k;
            uint8_t buf[32768];
            struct sd_der certs[4];
            int n, round;

            SSL_SESSION_free(raw_session);
            raw_session = NULL;
            for (round = 0; round < 3; round++) {
                /* 0: full, chain cache miss (or hit, after the first
                 * version: the same chain); 1: full again, a hit; 2: resumed */
                o.resume = round == 2 ? raw_session : NULL;
                assert_int_equal(raw_handshake(http_tls, ctx, &o, &s, &k), SD_IO_OK);
                assert_int_equal(sd_stream_peer(s)->resumed, round == 2);
                /* the second full handshake is a chain cache hit: OpenSSL
                 * built no chain, the presented one is filtered instead */
                if (round == 1)
                    assert_null(SSL_get0_verified_chain(ssl_of(s)));
                if (round == 0 && v == 0)
                    assert_non_null(SSL_get0_verified_chain(ssl_of(s)));
                if (round == 0) {
                    n = certs_of(s, first, &firstlen);
                    assert_int_equal(n, 2);
                    n = sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 4);
                    assert_int_equal(n, 2);
                    assert_der_is(&certs[0], cli_inter.x);
                    assert_der_is(&certs[1], inter.x);
                    /* too small a buffer, or too few slots: -1, never cut */
                    assert_int_equal(sd_tls_stream_certs_der(s, buf, certs[0].len, certs, 4),
                                     -1);
                    assert_int_equal(sd_tls_stream_certs_der(s, buf, certs[0].len - 1, certs,
                                                             4), -1);
                    assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 1), -1);
                    assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 0), -1);
                } else {
                    n = certs_of(s, again, &againlen);
                    assert_int_equal(n, 2);
                    assert_int_equal(againlen, firstlen);
                    assert_memory_equal(again, first, firstlen);
                }
                if (round < 2)
                    assert_non_null(raw_session);
                raw_close(s, k);
            }
            SSL_CTX_free(ctx);
        }
    }
    SSL_SESSION_free(raw_session);
    raw_session = NULL;
}

/* Intermediates too large for a session's admission record (8 KiB): the
 * full handshake hands them all on, and the session is never resumed
 * (rather than resumed with a cut chain, which would hand on less). */
static void test_certs_der_chain_too_large_to_resume(void **state)
{
    static char comment[9000];
    struct kc big, leaf;
    struct raw_opts o = { .cert = NULL };
    SSL_CTX *ctx = raw_ctx(TLS1_3_VERSION);
    struct sd_stream *s;
    SSL *k;
    static uint8_t buf[32768];
    struct sd_der certs[4];
    int round;

    (void)state;
    memset(comment, 'c', sizeof(comment) - 1);
    big = mk_cert(&ca, "big intermediate CA", NULL, 1, EKU_NONE, -3600, 86400);
    /* re-signed with a large comment extension */
    add_ext(big.x, ca.x, NID_netscape_comment, comment);
    assert_true(X509_sign(big.x, ca.k, EVP_sha256()) > 0);
    leaf = mk_cert(&big, "billing", "URI:" URI_CLIENT, 0, EKU_CLIENT, -3600, 86400);
    o.cert = &leaf;
    o.chain[0] = &big;
    SSL_SESSION_free(raw_session);
    raw_session = NULL;
    for (round = 0; round < 2; round++) {
        o.resume = round == 1 ? raw_session : NULL;
        assert_int_equal(raw_handshake(http_tls, ctx, &o, &s, &k), SD_IO_OK);
        assert_int_equal(sd_stream_peer(s)->resumed, 0);
        assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 4), 2);
        assert_der_is(&certs[0], leaf.x);
        assert_der_is(&certs[1], big.x);
        assert_true(certs[1].len > 8192);
        raw_close(s, k);
    }
    SSL_SESSION_free(raw_session);
    raw_session = NULL;
    SSL_CTX_free(ctx);
    kc_free(&big);
    kc_free(&leaf);
}

/* A client certificate straight from the root: only the leaf; before the
 * handshake, for a refused client and for a TCP stream: nothing. */
static void test_certs_der_leaf_only_and_none(void **state)
{
    struct raw_opts o = { .cert = &cli };
    struct raw_opts refused = { .cert = &cli_other_ca };
    SSL_CTX *ctx = raw_ctx(0);
    struct sd_stream *s, *t;
    SSL *k;
    uint8_t buf[8192];
    struct sd_der certs[4];

    (void)state;
    assert_int_equal(raw_handshake(http_tls, ctx, &o, &s, &k), SD_IO_OK);
    assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 4), 1);
    assert_der_is(&certs[0], cli.x);
    assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 1), 1);
    sd_stream_free(s);
    SSL_free(k);
    assert_int_equal(raw_handshake(http_tls, ctx, &refused, &s, &k), SD_IO_ERROR);
    assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 4), 0);
    sd_stream_free(s);
    SSL_free(k);
    s = sd_tls_stream_new_bio(http_tls, BIO_new(BIO_s_mem()), SD_SIDE_CLIENT);
    assert_non_null(s);
    assert_int_equal(sd_tls_stream_certs_der(s, buf, sizeof(buf), certs, 4), 0);
    sd_stream_free(s);
    t = sd_stream_tcp_new(-1, SD_SIDE_BACKEND);
    assert_non_null(t);
    assert_int_equal(sd_tls_stream_certs_der(t, buf, sizeof(buf), certs, 4), 0);
    sd_stream_free(t);
    assert_int_equal(sd_tls_stream_certs_der(NULL, buf, sizeof(buf), certs, 4), 0);
    SSL_CTX_free(ctx);
    SSL_SESSION_free(raw_session);
    raw_session = NULL;
}

/* ALPN: an HTTP mode listener picks http/1.1 wherever the client lists it,
 * and answers a client that does not offer it without ALPN (no alert); a
 * tcp listener never picks a protocol. */
static void test_alpn(void **state)
{
    static const unsigned char h2_h1[] = "\x02h2\x08http/1.1";
    static const unsigned char h1_h2[] = "\x08http/1.1\x02h2";
    static const unsigned char h2[] = "\x02h2";
    static const struct {
        int http;
        const unsigned char *alpn;
        unsigned int len;
        const char *want; /* NULL: no protocol */
    } cases[] = {
        { 1, h2_h1, sizeof(h2_h1) - 1, "http/1.1" },
        { 1, h1_h2, sizeof(h1_h2) - 1, "http/1.1" },
        { 1, h2, sizeof(h2) - 1, NULL },
        { 1, NULL, 0, NULL },
        { 0, h2_h1, sizeof(h2_h1) - 1, NULL },
    };
    SSL_CTX *ctx = raw_ctx(0);
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct raw_opts o = { .cert = &cli, .alpn = cases[i].alpn, .alpnlen = cases[i].len };
        const unsigned char *sel = NULL;
        unsigned int sellen = 0;
        const struct sd_peer *p;
        struct sd_stream *s;
        SSL *k;

        assert_int_equal(raw_handshake(cases[i].http ? http_tls : server_tls, ctx, &o, &s, &k),
                         SD_IO_OK);
        SSL_get0_alpn_selected(k, &sel, &sellen);
        p = sd_stream_peer(s);
        if (cases[i].want == NULL) {
            assert_int_equal(sellen, 0);
            assert_int_equal(p->alpn.len, 0);
        } else {
            assert_int_equal(sellen, strlen(cases[i].want));
            assert_memory_equal(sel, cases[i].want, sellen);
            assert_int_equal(p->alpn.len, strlen(cases[i].want));
            assert_memory_equal(p->alpn.s, cases[i].want, p->alpn.len);
        }
        sd_stream_free(s);
        SSL_free(k);
    }
    SSL_CTX_free(ctx);
    SSL_SESSION_free(raw_session);
    raw_session = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socketpair_handshake_data_eof),
        cmocka_unit_test(test_socketpair_peer_reset),
        cmocka_unit_test(test_bio_pair_admitted),
        cmocka_unit_test(test_refused_no_client_certificate),
        cmocka_unit_test(test_refused_unknown_ca),
        cmocka_unit_test(test_refused_expired),
        cmocka_unit_test(test_refused_wrong_eku),
        cmocka_unit_test(test_refused_ca_certificate),
        cmocka_unit_test(test_refused_not_authorized),
        cmocka_unit_test(test_client_refuses_wrong_name),
        cmocka_unit_test(test_client_refuses_wrong_ca),
        cmocka_unit_test(test_client_refuses_no_server_eku),
        cmocka_unit_test(test_client_rules),
        cmocka_unit_test(test_client_conf_needs_name_or_rules),
        cmocka_unit_test(test_certs_der_full_and_resumed),
        cmocka_unit_test(test_certs_der_leaf_only_and_none),
        cmocka_unit_test(test_certs_der_chain_too_large_to_resume),
        cmocka_unit_test(test_alpn),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
