/*
 * test_pki.c - unit tests for src/pki.c and src/pki_cli.c.
 *
 * Every test works in its own mkdtemp directory with a fresh CA and reads
 * the results back with OpenSSL, so it checks what a peer would see, not
 * what pki.c meant to write.
 */
#include "sd/pki.h"
#include "sd/policy.h"

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct fixture {
    char dir[64];
};

static void path_of(char *buf, size_t size, const char *dir, const char *file)
{
    int n = snprintf(buf, size, "%s/%s", dir, file);

    assert_true(n > 0 && (size_t)n < size);
}

static void rm_rf(const char *dir)
{
    char path[512];
    struct dirent *de;
    DIR *d = opendir(dir);

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int setup_ca(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct sd_err err = {{0}};

    if (f == NULL)
        return -1;
    strcpy(f->dir, "/tmp/sd_test_pki.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    if (sd_pki_init(f->dir, NULL, 30, 0, &err) != 0) {
        fprintf(stderr, "sd_pki_init: %s\n", err.msg);
        rm_rf(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_ca(void **state)
{
    struct fixture *f = *state;

    if (f != NULL) {
        rm_rf(f->dir);
        free(f);
    }
    return 0;
}

static X509 *load_cert(const char *dir, const char *file)
{
    char path[512];
    FILE *fp;
    X509 *x;

    path_of(path, sizeof(path), dir, file);
    fp = fopen(path, "r");
    assert_non_null(fp);
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(const char *dir, const char *file)
{
    char path[512];
    FILE *fp;
    EVP_PKEY *k;

    path_of(path, sizeof(path), dir, file);
    fp = fopen(path, "r");
    assert_non_null(fp);
    k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(k);
    return k;
}

static X509_CRL *load_crl(const char *dir)
{
    char path[512];
    FILE *fp;
    X509_CRL *crl;

    path_of(path, sizeof(path), dir, "crl.pem");
    fp = fopen(path, "r");
    assert_non_null(fp);
    crl = PEM_read_X509_CRL(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(crl);
    return crl;
}

static unsigned int file_mode(const char *dir, const char *file)
{
    char path[512];
    struct stat st;

    path_of(path, sizeof(path), dir, file);
    assert_int_equal(stat(path, &st), 0);
    return (unsigned int)(st.st_mode & 07777);
}

static int file_exists(const char *dir, const char *file)
{
    char path[512];

    path_of(path, sizeof(path), dir, file);
    return access(path, F_OK) == 0;
}

/* Verifies leaf against the CA in dir for one purpose, like a TLS peer. */
static int verify_purpose(const char *dir, X509 *leaf, int purpose, X509_CRL *crl)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509 *ca = load_cert(dir, "ca.crt");
    int ok;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    if (crl != NULL) {
        assert_int_equal(X509_STORE_add_crl(store, crl), 1);
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    ok = X509_verify_cert(ctx);
    if (ok != 1)
        ok = -X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca);
    ERR_clear_error();
    return ok;
}

static int san_has(X509 *x, int type, const void *data, size_t len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i, found = 0;

    if (gens == NULL)
        return 0;
    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        int t;
        ASN1_STRING *v = GENERAL_NAME_get0_value(g, &t);

        if (t == type && (size_t)ASN1_STRING_length(v) == len &&
            memcmp(ASN1_STRING_get0_data(v), data, len) == 0)
            found = 1;
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static int ext_critical(X509 *x, int nid)
{
    int idx = X509_get_ext_by_NID(x, nid, -1);

    assert_true(idx >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

/* ---- init ---- */

static void test_init_ca(void **state)
{
    struct fixture *f = *state;
    X509 *ca = load_cert(f->dir, "ca.crt");
    EVP_PKEY *key = load_key(f->dir, "ca.key");
    X509_NAME *subj = X509_get_subject_name(ca);
    char cn[64];

    assert_int_equal(file_mode(f->dir, "ca.key"), 0600);
    assert_int_equal(file_mode(f->dir, "ca.crt"), 0644);
    assert_int_equal(X509_check_private_key(ca, key), 1);
    assert_int_equal(X509_check_ca(ca), 1);
    assert_true(ext_critical(ca, NID_basic_constraints));
    assert_true(ext_critical(ca, NID_key_usage));
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(ca) & KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_int_equal(X509_NAME_cmp(subj, X509_get_issuer_name(ca)), 0);
    assert_true(X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "steeldoor dev CA");
    assert_string_equal(OBJ_nid2sn(EVP_PKEY_get_base_id(key)), "id-ecPublicKey");
    EVP_PKEY_free(key);
    X509_free(ca);
}

static void test_init_refuses_overwrite(void **state)
{
    struct fixture *f = *state;
    struct sd_err err = {{0}};
    X509 *before = load_cert(f->dir, "ca.crt");
    X509 *after;

    assert_int_equal(sd_pki_init(f->dir, NULL, 30, 0, &err), -1);
    assert_non_null(strstr(err.msg, "ca.key"));
    after = load_cert(f->dir, "ca.crt");
    assert_int_equal(X509_cmp(before, after), 0);
    X509_free(after);

    assert_int_equal(sd_pki_init(f->dir, "Second CA", 30, 1, &err), 0);
    after = load_cert(f->dir, "ca.crt");
    assert_int_not_equal(X509_cmp(before, after), 0);
    assert_int_equal(file_mode(f->dir, "ca.key"), 0600);
    X509_free(after);
    X509_free(before);
}

/* ---- issue ---- */

static void test_issue_server_and_client(void **state)
{
    struct fixture *f = *state;
    static const char *const dns[] = {"api.example.test", "*.svc.test"};
    static const char *const ips[] = {"192.0.2.7", "2001:db8::1"};
    static const char *const uris[] = {"spiffe://steeldoor/api"};
    static const unsigned char ip4[4] = {192, 0, 2, 7};
    static const unsigned char ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 0, 1};
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "api", .usage = SD_PKI_SERVER | SD_PKI_CLIENT,
        .dns = dns, .n_dns = 2, .ips = ips, .n_ips = 2, .uris = uris, .n_uris = 1,
        .days = 10,
    };
    struct sd_err err = {{0}};
    const ASN1_INTEGER *serial;
    BIGNUM *bn;
    X509 *x, *ca;
    EVP_PKEY *key;
    time_t now = time(NULL);
    int day, sec;

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    assert_int_equal(file_mode(f->dir, "api.key"), 0600);
    assert_int_equal(file_mode(f->dir, "api.crt"), 0644);
    x = load_cert(f->dir, "api.crt");
    key = load_key(f->dir, "api.key");
    ca = load_cert(f->dir, "ca.crt");
    assert_int_equal(X509_check_private_key(x, key), 1);

    /* CA:FALSE, critical; keyUsage digitalSignature only, critical. */
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_get_extension_flags(x) & EXFLAG_BCONS);
    assert_true(ext_critical(x, NID_basic_constraints));
    assert_true(ext_critical(x, NID_key_usage));
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);

    assert_true(san_has(x, GEN_DNS, "api.example.test", 16));
    assert_true(san_has(x, GEN_DNS, "*.svc.test", 10));
    assert_true(san_has(x, GEN_IPADD, ip4, sizeof(ip4)));
    assert_true(san_has(x, GEN_IPADD, ip6, sizeof(ip6)));
    assert_true(san_has(x, GEN_URI, "spiffe://steeldoor/api", 22));

    /* SKI present; AKI names the CA's SKI. */
    assert_non_null(X509_get0_subject_key_id(x));
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
                                           X509_get0_subject_key_id(ca)), 0);

    /* Serial: positive, 16 bytes. */
    serial = X509_get0_serialNumber(x);
    assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER);
    assert_int_equal(ASN1_STRING_length(serial), 16);
    bn = ASN1_INTEGER_to_BN(serial, NULL);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    BN_free(bn);

    /* notBefore five minutes back (allow a few seconds of test run time),
     * notAfter `days` ahead. */
    assert_int_equal(ASN1_TIME_diff(&day, &sec, X509_get0_notBefore(x),
                                    X509_get0_notAfter(x)), 1);
    assert_int_equal(day, 10);
    assert_int_equal(sec, 300);
    assert_true(X509_cmp_time(X509_get0_notBefore(x), &(time_t){now - 290}) < 0);
    assert_true(X509_cmp_time(X509_get0_notBefore(x), &(time_t){now - 310}) > 0);

    assert_int_equal(verify_purpose(f->dir, x, X509_PURPOSE_SSL_SERVER, NULL), 1);
    assert_int_equal(verify_purpose(f->dir, x, X509_PURPOSE_SSL_CLIENT, NULL), 1);
    assert_int_equal(X509_check_host(x, "api.example.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "a.svc.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "2001:db8::1", 0), 1);
    X509_free(ca);
    EVP_PKEY_free(key);
    X509_free(x);
}

static void test_issue_client_only(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "alice", .cn = "Alice Example",
        .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};
    X509 *x;
    char cn[64];

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    x = load_cert(f->dir, "alice.crt");
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    /* No --dns/--ip/--uri: no (invalid, empty) SAN extension at all. */
    assert_true(X509_get_ext_by_NID(x, NID_subject_alt_name, -1) < 0);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                          cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "Alice Example");
    assert_int_equal(verify_purpose(f->dir, x, X509_PURPOSE_SSL_CLIENT, NULL), 1);
    assert_int_equal(verify_purpose(f->dir, x, X509_PURPOSE_SSL_SERVER, NULL),
                     -X509_V_ERR_INVALID_PURPOSE);
    X509_free(x);
}

static void test_issue_bad_input(void **state)
{
    struct fixture *f = *state;
    static const char *const bad_names[] = {
        "", ".hidden", "..", "../escape", "a/b", "sp ace", "ca", "semi;colon",
        "n\xc3\xa9", "nl\n",
    };
    char long_name[SD_PKI_NAME_MAX + 2];
    static const char *const bad_ip[] = {"1.2.3"};
    static const char *const bad_dns[] = {"a,DNS:evil.test"};
    static const char *const bad_uri[] = {"no scheme"};
    struct sd_pki_issue_req req = {.dir = f->dir, .usage = SD_PKI_SERVER, .days = 1};
    struct sd_err err = {{0}};
    size_t i;

    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(sd_pki_check_name(long_name, NULL), -1);
    long_name[SD_PKI_NAME_MAX] = '\0';
    assert_int_equal(sd_pki_check_name(long_name, NULL), 0);
    for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        req.name = bad_names[i];
        assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
        assert_int_equal(sd_pki_check_name(bad_names[i], NULL), -1);
    }
    assert_int_equal(sd_pki_check_name("web-1.prod_a", NULL), 0);

    req.name = "ok";
    req.usage = 0;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    req.usage = SD_PKI_SERVER;
    req.ips = bad_ip;
    req.n_ips = 1;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "1.2.3"));
    req.n_ips = 0;
    req.dns = bad_dns;
    req.n_dns = 1;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    req.n_dns = 0;
    req.uris = bad_uri;
    req.n_uris = 1;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    req.n_uris = 0;
    req.days = 0;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);

    /* Nothing may have been written for any refused request. */
    assert_false(file_exists(f->dir, "ok.crt"));
    assert_false(file_exists(f->dir, "ok.key"));
    assert_false(file_exists(f->dir, "escape.crt"));
    assert_int_equal(sd_pki_check_ip("::ffff:10.0.0.1", NULL), 0);
    assert_int_equal(sd_pki_check_dns("*.a.b", NULL), 0);
    assert_int_equal(sd_pki_check_dns("a.*.b", NULL), -1);
    assert_int_equal(sd_pki_check_dns("a..b", NULL), -1);
    /* URIs: exactly what serve accepts as a certificate's URI (the same
     * validator, sd_policy_uri_valid without wildcards) */
    assert_int_equal(sd_pki_check_uri("spiffe://example.org/ns/a", NULL), 0);
    assert_int_equal(sd_pki_check_uri("HTTPS://Example.org", NULL), 0);
    {
        static const char *const bad[] = {
            "urn:x", "no scheme", "spiffe://example.org/a b", "spiffe://example.org/../a",
            "spiffe://example.org/a//b", "spiffe://example.org/a/", "spiffe://example.org/%41",
            "spiffe://example.org/a?q", "spiffe://example.org/a#f", "spiffe://example.org/*",
            "spiffe://*/a", "spiffe:///a", "spiffe://example.org/\xc3\xa9", "",
        };
        char longest[SD_POLICY_MAX_NAME + 2];
        size_t j;

        for (j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            assert_int_equal(sd_pki_check_uri(bad[j], NULL), -1);
            assert_int_equal(sd_policy_uri_valid(bad[j], strlen(bad[j]), 0), 0);
        }
        memcpy(longest, "spiffe://e/", 11);
        memset(longest + 11, 'a', sizeof(longest) - 12);
        longest[SD_POLICY_MAX_NAME] = '\0';
        assert_int_equal(sd_pki_check_uri(longest, NULL), 0);
        longest[SD_POLICY_MAX_NAME] = 'a';
        longest[SD_POLICY_MAX_NAME + 1] = '\0';
        assert_int_equal(sd_pki_check_uri(longest, NULL), -1);
    }
}

static void test_issue_mismatched_ca_key(void **state)
{
    struct fixture *f = *state;
    struct fixture other;
    char src[512], dst[512];
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "svc", .usage = SD_PKI_SERVER, .days = 1,
    };
    struct sd_err err = {{0}};

    /* Put another CA's key next to this CA's certificate. */
    strcpy(other.dir, "/tmp/sd_test_pki.XXXXXX");
    assert_non_null(mkdtemp(other.dir));
    assert_int_equal(sd_pki_init(other.dir, NULL, 30, 0, &err), 0);
    path_of(src, sizeof(src), other.dir, "ca.key");
    path_of(dst, sizeof(dst), f->dir, "ca.key");
    assert_int_equal(rename(src, dst), 0);
    rm_rf(other.dir);

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, dst));
    assert_non_null(strstr(err.msg, "does not match"));
    assert_false(file_exists(f->dir, "svc.key"));
    assert_int_equal(sd_pki_crl(f->dir, 1, NULL, &err), -1);
    assert_non_null(strstr(err.msg, dst));
    assert_false(file_exists(f->dir, "crl.pem"));
}

static void test_issue_missing_ca(void **state)
{
    struct fixture *f = *state;
    char path[512];
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "svc", .usage = SD_PKI_SERVER, .days = 1,
    };
    struct sd_err err = {{0}};
    FILE *fp;

    path_of(path, sizeof(path), f->dir, "ca.crt");
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not a certificate\n", fp);
    fclose(fp);
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, path));

    assert_int_equal(unlink(path), 0);
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_false(file_exists(f->dir, "svc.key"));
}

/* ---- revoke and crl ---- */

static void test_revoke_and_crl(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "bob", .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *num;
    X509_CRL *crl;
    X509 *bob, *carol, *ca;
    struct sd_pki_revoke_res res;

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    req.name = "carol";
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    bob = load_cert(f->dir, "bob.crt");
    carol = load_cert(f->dir, "carol.crt");
    ca = load_cert(f->dir, "ca.crt");

    /* An empty CRL first, then one listing bob. */
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), 0);
    crl = load_crl(f->dir);
    assert_int_equal(verify_purpose(f->dir, bob, X509_PURPOSE_SSL_CLIENT, crl), 1);
    X509_CRL_free(crl);

    assert_int_equal(sd_pki_revoke(f->dir, "bob", NULL, &res, &err), 0);
    assert_int_equal(res.revoked, 1);
    assert_int_equal(res.already, 0);
    assert_int_equal(sd_pki_revoke(f->dir, "bob", NULL, &res, &err), 0);
    assert_int_equal(res.revoked, 0);
    assert_int_equal(res.already, 1);
    assert_int_equal(sd_pki_revoke(f->dir, "nobody", NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "nobody.crt"));
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), 0);

    crl = load_crl(f->dir);
    assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    assert_non_null(X509_CRL_get0_nextUpdate(crl));
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
    assert_int_equal(X509_CRL_get0_by_serial(crl, &rev,
                                             X509_get0_serialNumber(bob)), 1);
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(num);
    assert_int_equal(ASN1_INTEGER_get(num), 2); /* the second CRL */
    ASN1_INTEGER_free(num);
    assert_true(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) >= 0);

    assert_int_equal(verify_purpose(f->dir, bob, X509_PURPOSE_SSL_CLIENT, crl),
                     -X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify_purpose(f->dir, carol, X509_PURPOSE_SSL_CLIENT, crl), 1);
    X509_CRL_free(crl);
    X509_free(ca);
    X509_free(carol);
    X509_free(bob);
}

static void test_revoke_foreign_cert(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "old", .usage = SD_PKI_SERVER, .days = 1,
    };
    struct sd_err err = {{0}};

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    /* A new CA makes "old" a certificate of someone else. */
    assert_int_equal(sd_pki_init(f->dir, NULL, 30, 1, &err), 0);
    assert_int_equal(sd_pki_revoke(f->dir, "old", NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "not issued by"));
    assert_false(file_exists(f->dir, "revoked.txt"));
}

/* ---- issued.txt: re-issuing, revoking every serial of a name ---- */

static int crl_lists(X509_CRL *crl, X509 *x)
{
    X509_REVOKED *rev = NULL;

    return X509_CRL_get0_by_serial(crl, &rev, X509_get0_serialNumber(x)) == 1;
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    long n;

    assert_non_null(num);
    n = ASN1_INTEGER_get(num);
    ASN1_INTEGER_free(num);
    return n;
}

static void write_text(const char *dir, const char *file, const char *text)
{
    char path[512];
    FILE *fp;

    path_of(path, sizeof(path), dir, file);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

static void test_reissue_needs_flag_and_revoke_reaches_all(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "bob", .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};
    struct sd_pki_revoke_res res;
    char s1[SD_PKI_SERIAL_HEX_MAX + 1], s2[SD_PKI_SERIAL_HEX_MAX + 1];
    X509 *first, *again, *second, *carol;
    X509_CRL *crl;

    assert_int_equal(sd_pki_issue(&req, s1, sizeof(s1), &err), 0);
    assert_int_equal(strlen(s1), 32);
    first = load_cert(f->dir, "bob.crt");

    /* Without --reissue: refused, naming the existing certificate. */
    assert_int_equal(sd_pki_issue(&req, s2, sizeof(s2), &err), -1);
    assert_non_null(strstr(err.msg, "bob.crt"));
    assert_non_null(strstr(err.msg, s1));
    assert_non_null(strstr(err.msg, "--reissue"));
    again = load_cert(f->dir, "bob.crt");
    assert_int_equal(X509_cmp(first, again), 0);
    X509_free(again);

    req.reissue = 1;
    assert_int_equal(sd_pki_issue(&req, s2, sizeof(s2), &err), 0);
    assert_string_not_equal(s1, s2);
    second = load_cert(f->dir, "bob.crt");
    assert_int_not_equal(X509_cmp(first, second), 0);
    req.name = "carol";
    req.reissue = 0;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    carol = load_cert(f->dir, "carol.crt");

    assert_int_equal(sd_pki_revoke(f->dir, "bob", NULL, &res, &err), 0);
    assert_int_equal(res.revoked, 2);
    assert_int_equal(res.already, 0);
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), 0);
    crl = load_crl(f->dir);
    assert_true(crl_lists(crl, first));
    assert_true(crl_lists(crl, second));
    assert_false(crl_lists(crl, carol));
    assert_int_equal(verify_purpose(f->dir, first, X509_PURPOSE_SSL_CLIENT, crl),
                     -X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify_purpose(f->dir, second, X509_PURPOSE_SSL_CLIENT, crl),
                     -X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify_purpose(f->dir, carol, X509_PURPOSE_SSL_CLIENT, crl), 1);
    X509_CRL_free(crl);
    X509_free(carol);
    X509_free(second);
    X509_free(first);
}

static void test_revoke_by_serial(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "dave", .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};
    struct sd_pki_revoke_res res;
    char s1[SD_PKI_SERIAL_HEX_MAX + 1], colons[3 * SD_PKI_SERIAL_HEX_MAX];
    X509 *first, *second;
    X509_CRL *crl;
    size_t i, n = 0;

    assert_int_equal(sd_pki_issue(&req, s1, sizeof(s1), &err), 0);
    first = load_cert(f->dir, "dave.crt");
    req.reissue = 1;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    second = load_cert(f->dir, "dave.crt");

    /* "ab:cd:..." in lower case names the same serial. */
    for (i = 0; s1[i] != '\0'; i++) {
        if (i > 0 && i % 2 == 0)
            colons[n++] = ':';
        colons[n++] = (char)(s1[i] >= 'A' && s1[i] <= 'F' ? s1[i] - 'A' + 'a' : s1[i]);
    }
    colons[n] = '\0';
    assert_int_equal(sd_pki_revoke(f->dir, NULL, colons, &res, &err), 0);
    assert_int_equal(res.revoked, 1);
    assert_int_equal(sd_pki_revoke(f->dir, NULL, s1, &res, &err), 0);
    assert_int_equal(res.already, 1);
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), 0);
    crl = load_crl(f->dir);
    assert_true(crl_lists(crl, first));
    assert_false(crl_lists(crl, second));
    X509_CRL_free(crl);

    /* Unknown, malformed, both or neither. */
    assert_int_equal(sd_pki_revoke(f->dir, NULL, "0123", NULL, &err), -1);
    assert_non_null(strstr(err.msg, "issued.txt"));
    assert_int_equal(sd_pki_check_serial("12:34", NULL), 0);
    assert_int_equal(sd_pki_check_serial("12::34", NULL), -1);
    assert_int_equal(sd_pki_check_serial(":12", NULL), -1);
    assert_int_equal(sd_pki_check_serial("12:", NULL), -1);
    assert_int_equal(sd_pki_check_serial("xyz", NULL), -1);
    assert_int_equal(sd_pki_check_serial("", NULL), -1);
    assert_int_equal(sd_pki_check_serial(
        "00112233445566778899aabbccddeeff0011223344", NULL), -1); /* 42 digits */
    assert_int_equal(sd_pki_revoke(f->dir, "dave", s1, NULL, &err), -1);
    assert_int_equal(sd_pki_revoke(f->dir, NULL, NULL, NULL, &err), -1);
    X509_free(second);
    X509_free(first);
}

/* A directory from before issued.txt: the replaced certificate is recorded
 * when it is re-issued, so revoke --name still reaches it. */
static void test_reissue_records_legacy_cert(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "erin", .usage = SD_PKI_SERVER, .days = 1,
    };
    struct sd_err err = {{0}};
    struct sd_pki_revoke_res res;
    char path[512];
    X509 *first, *second;
    X509_CRL *crl;

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    first = load_cert(f->dir, "erin.crt");
    path_of(path, sizeof(path), f->dir, "issued.txt");
    assert_int_equal(unlink(path), 0);
    req.reissue = 1;
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    second = load_cert(f->dir, "erin.crt");
    assert_int_equal(sd_pki_revoke(f->dir, "erin", NULL, &res, &err), 0);
    assert_int_equal(res.revoked, 2);
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), 0);
    crl = load_crl(f->dir);
    assert_true(crl_lists(crl, first));
    assert_true(crl_lists(crl, second));
    X509_CRL_free(crl);
    X509_free(second);
    X509_free(first);
}

static void test_crl_number_never_goes_back(void **state)
{
    struct fixture *f = *state;
    struct sd_err err = {{0}};
    unsigned long long n = 0;
    char path[512];
    X509_CRL *crl;

    assert_int_equal(sd_pki_crl(f->dir, 7, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sd_pki_crl(f->dir, 7, &n, &err), 0);
    assert_int_equal(n, 2);
    /* crlnumber lost: the number of crl.pem still counts. */
    path_of(path, sizeof(path), f->dir, "crlnumber");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sd_pki_crl(f->dir, 7, &n, &err), 0);
    assert_int_equal(n, 3);
    crl = load_crl(f->dir);
    assert_int_equal(crl_number(crl), 3);
    X509_CRL_free(crl);
    /* crlnumber edited forward: followed. */
    write_text(f->dir, "crlnumber", "41\n");
    assert_int_equal(sd_pki_crl(f->dir, 7, &n, &err), 0);
    assert_int_equal(n, 42);
    write_text(f->dir, "crlnumber", "not a number\n");
    assert_int_equal(sd_pki_crl(f->dir, 7, &n, &err), -1);
    assert_non_null(strstr(err.msg, "crlnumber"));
}

/* ---- init on an existing directory ---- */

static void test_init_needs_empty_dir(void **state)
{
    struct fixture *f = *state;
    struct fixture other;
    struct sd_err err = {{0}};

    (void)f;
    strcpy(other.dir, "/tmp/sd_test_pki.XXXXXX");
    assert_non_null(mkdtemp(other.dir));
    write_text(other.dir, "notes.txt", "mine\n");
    assert_int_equal(sd_pki_init(other.dir, NULL, 30, 0, &err), -1);
    assert_non_null(strstr(err.msg, "not empty"));
    assert_non_null(strstr(err.msg, "notes.txt"));
    assert_false(file_exists(other.dir, "ca.key"));
    /* A stale temporary file of ours does not count. */
    rm_rf(other.dir);
    assert_non_null(mkdtemp(strcpy(other.dir, "/tmp/sd_test_pki.XXXXXX")));
    write_text(other.dir, ".ca.key.0011223344556677.tmp", "");
    assert_int_equal(sd_pki_init(other.dir, NULL, 30, 0, &err), 0);
    rm_rf(other.dir);
}

/* ---- ownership and modes (ssh's StrictModes) ---- */

/* issue and (when crl_reads_it) crl refuse, naming culprit and why. */
static void expect_refused(const char *dir, const char *culprit, const char *why,
                           int crl_reads_it)
{
    struct sd_pki_issue_req req = {
        .dir = dir, .name = "mallory", .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, culprit));
    assert_non_null(strstr(err.msg, why));
    assert_false(file_exists(dir, "mallory.crt"));
    if (!crl_reads_it)
        return;
    assert_int_equal(sd_pki_crl(dir, 7, NULL, &err), -1);
    assert_non_null(strstr(err.msg, culprit));
    assert_non_null(strstr(err.msg, why));
    assert_false(file_exists(dir, "crl.pem"));
}

static void test_refuses_foreign_or_open_files(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "ok", .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};
    char key[512], other[512], idx[512];

    path_of(key, sizeof(key), f->dir, "ca.key");
    path_of(idx, sizeof(idx), f->dir, "issued.txt");
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);

    assert_int_equal(chmod(f->dir, 0770), 0);
    expect_refused(f->dir, f->dir, "writable by group or others", 1);
    assert_int_equal(sd_pki_init(f->dir, NULL, 30, 1, &err), -1);
    assert_non_null(strstr(err.msg, "writable by group or others"));
    assert_int_equal(chmod(f->dir, 0700), 0);

    assert_int_equal(chmod(key, 0640), 0);
    expect_refused(f->dir, key, "private key accessible", 1);
    assert_int_equal(chmod(key, 0600), 0);

    assert_int_equal(chmod(idx, 0666), 0);
    expect_refused(f->dir, "issued.txt", "writable by group or others", 0);
    assert_int_equal(sd_pki_revoke(f->dir, "ok", NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "issued.txt"));
    assert_int_equal(chmod(idx, 0644), 0);

    /* revoked.txt: read by revoke and crl. */
    assert_int_equal(sd_pki_revoke(f->dir, "ok", NULL, NULL, &err), 0);
    path_of(other, sizeof(other), f->dir, "revoked.txt");
    assert_int_equal(chmod(other, 0646), 0);
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "revoked.txt"));
    assert_int_equal(sd_pki_revoke(f->dir, "ok", NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "revoked.txt"));
    assert_false(file_exists(f->dir, "crl.pem"));
    assert_int_equal(chmod(other, 0644), 0);

    /* A symbolic link in place of the key is not followed. */
    path_of(other, sizeof(other), f->dir, "real.key");
    assert_int_equal(rename(key, other), 0);
    assert_int_equal(symlink("real.key", key), 0);
    expect_refused(f->dir, key, "symbolic link", 1);
    assert_int_equal(unlink(key), 0);
    assert_int_equal(rename(other, key), 0);

    if (geteuid() == 0) {
        /* As root: a directory or key owned by someone else. */
        assert_int_equal(chown(f->dir, 65534, 65534), 0);
        expect_refused(f->dir, f->dir, "owned by uid 65534", 1);
        assert_int_equal(sd_pki_revoke(f->dir, "ok", NULL, NULL, &err), -1);
        assert_non_null(strstr(err.msg, "owned by uid 65534"));
        assert_int_equal(sd_pki_init(f->dir, NULL, 30, 1, &err), -1);
        assert_non_null(strstr(err.msg, "owned by uid 65534"));
        assert_int_equal(chown(f->dir, 0, 0), 0);
        assert_int_equal(chown(key, 65534, 65534), 0);
        expect_refused(f->dir, key, "owned by uid 65534", 1);
        assert_int_equal(chown(key, 0, 0), 0);
    }

    /* Restored: everything works again. */
    req.name = "fine";
    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    assert_int_equal(sd_pki_revoke(f->dir, "ok", NULL, NULL, &err), 0);
    assert_int_equal(sd_pki_crl(f->dir, 7, NULL, &err), 0);
}

/* Keys are created 0600 whatever the umask; certificates 0644. */
static void test_modes_under_open_umask(void **state)
{
    struct fixture *f = *state;
    struct sd_pki_issue_req req = {
        .dir = f->dir, .name = "wide", .usage = SD_PKI_CLIENT, .days = 1,
    };
    struct sd_err err = {{0}};
    mode_t old = umask(0);

    assert_int_equal(sd_pki_issue(&req, NULL, 0, &err), 0);
    assert_int_equal(sd_pki_init(f->dir, NULL, 30, 1, &err), 0);
    umask(old);
    assert_int_equal(file_mode(f->dir, "wide.key"), 0600);
    assert_int_equal(file_mode(f->dir, "wide.crt"), 0644);
    assert_int_equal(file_mode(f->dir, "ca.key"), 0600);
    assert_int_equal(file_mode(f->dir, ".lock"), 0600);
    assert_int_equal(file_mode(f->dir, "issued.txt"), 0644);
}

/* ---- command line ---- */

static int run(int argc, ...)
{
    char *argv[32];
    va_list ap;
    int i;

    assert_true(argc < 32);
    va_start(ap, argc);
    for (i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    return sd_pki_main(argc, argv);
}

static void test_cli_exit_codes(void **state)
{
    struct fixture *f = *state;
    char *d = f->dir;

    assert_int_equal(run(2, "pki", "--help"), 0);
    assert_int_equal(run(3, "pki", "init", "--help"), 0);
    assert_int_equal(run(3, "pki", "issue", "--help"), 0);
    assert_int_equal(run(3, "pki", "revoke", "--help"), 0);
    assert_int_equal(run(3, "pki", "crl", "--help"), 0);
    assert_int_equal(run(1, "pki"), 2);
    assert_int_equal(run(2, "pki", "frobnicate"), 2);
    assert_int_equal(run(4, "pki", "init", "--dir", d), 1); /* ca.key exists */
    assert_int_equal(run(5, "pki", "issue", "--dir", d, "--server"), 2);
    assert_int_equal(run(6, "pki", "issue", "--dir", d, "--name", "x"), 2);
    assert_int_equal(run(7, "pki", "issue", "--dir", d, "--name", "../x", "--server"), 2);
    assert_int_equal(run(9, "pki", "issue", "--dir", d, "--name", "x", "--server",
                         "--ip", "999.1.1.1"), 2);
    assert_int_equal(run(9, "pki", "issue", "--dir", d, "--name", "x", "--client",
                         "--days", "-3"), 2);
    assert_int_equal(run(5, "pki", "crl", "--dir", d, "--bogus"), 2);
    assert_int_equal(run(3, "pki", "crl", "--dir"), 2);
    assert_false(file_exists(d, "x.crt"));

    assert_int_equal(run(13, "pki", "issue", "--dir", d, "--name", "web", "--server",
                         "--dns", "web.test", "--ip", "::1", "--days", "2"), 0);
    assert_int_equal(file_mode(d, "web.key"), 0600);
    assert_int_equal(run(7, "pki", "issue", "--dir", d, "--name", "web", "--server"), 1);
    assert_int_equal(run(8, "pki", "issue", "--dir", d, "--name", "web", "--server",
                         "--reissue"), 0);
    assert_int_equal(run(4, "pki", "revoke", "--dir", d), 2);
    assert_int_equal(run(8, "pki", "revoke", "--dir", d, "--name", "web", "--serial",
                         "01"), 2);
    assert_int_equal(run(6, "pki", "revoke", "--dir", d, "--serial", "zz"), 2);
    assert_int_equal(run(6, "pki", "revoke", "--dir", d, "--serial", "01"), 1);
    assert_int_equal(run(6, "pki", "revoke", "--dir", d, "--name", "web"), 0);
    assert_int_equal(run(6, "pki", "crl", "--dir", d, "--days", "1"), 0);
    assert_true(file_exists(d, "crl.pem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_ca, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_init_refuses_overwrite, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_issue_server_and_client, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_issue_client_only, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_issue_bad_input, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_issue_mismatched_ca_key, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_issue_missing_ca, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_revoke_and_crl, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_revoke_foreign_cert, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_reissue_needs_flag_and_revoke_reaches_all,
                                        setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_revoke_by_serial, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_reissue_records_legacy_cert, setup_ca,
                                        teardown_ca),
        cmocka_unit_test_setup_teardown(test_crl_number_never_goes_back, setup_ca,
                                        teardown_ca),
        cmocka_unit_test_setup_teardown(test_init_needs_empty_dir, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_refuses_foreign_or_open_files, setup_ca,
                                        teardown_ca),
        cmocka_unit_test_setup_teardown(test_modes_under_open_umask, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_cli_exit_codes, setup_ca, teardown_ca),
    };

    /* Certificates must come out 0644 whatever the caller's umask. */
    umask(077);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
