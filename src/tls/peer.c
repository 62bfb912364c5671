/*
 * tls/peer.c - a certificate read once into a struct sd_peer_cert (see
 * tls/peer.h, sd/peer.h).
 *
 * The extraction gathers what OpenSSL gives (the decoded SAN extension,
 * UTF-8 copies of CNs and OUs, the subject text, serial, hashes), then lays
 * the result out twice with the same function: once to measure, once to
 * fill one allocation of exactly that size. Measuring and filling cannot
 * disagree, and the result owns all its bytes: nothing points back into
 * OpenSSL, so the X509 may go away first.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

/* What OpenSSL gives, gathered once; sd_tls_peer_src_clear() frees it. */
struct sd_tls_peer_src {
    GENERAL_NAMES *gens;       /* the SAN extension as decoded, or NULL */
    unsigned char *cns[SD_PEER_MAX_ATTRS], *ous[SD_PEER_MAX_ATTRS]; /* UTF-8 */
    size_t cnlen[SD_PEER_MAX_ATTRS], oulen[SD_PEER_MAX_ATTRS];
    size_t ncns, nous;
    BIO *subj;                 /* holds the subject text */
    const char *subject;       /* into subj, or NULL if it could not be printed */
    size_t subjlen;
    char *serial;              /* BN_bn2hex, or NULL */
    const char *sig_alg, *key_alg; /* OpenSSL's names, or NULL */
    uint32_t flags;
};

/* One layout pass: measuring while bytes is NULL (lists untouched, counts
 * and nbytes computed), filling otherwise. */
struct sd_tls_peer_out {
    struct sd_name *uris, *dns, *cns, *ous, *emails, *ips;
    struct sd_peer_san *sans;
    char *bytes;
    size_t nuris, ndns, ncns, nous, nemails, nips, nsans, nbytes;
    uint32_t flags;
};

static void sd_tls_peer_src_clear(struct sd_tls_peer_src *src)
{
    size_t i;

    for (i = 0; i < src->ncns; i++)
        OPENSSL_free(src->cns[i]);
    for (i = 0; i < src->nous; i++)
        OPENSSL_free(src->ous[i]);
    GENERAL_NAMES_free(src->gens);
    BIO_free(src->subj);
    OPENSSL_free(src->serial);
    memset(src, 0, sizeof(*src));
}

/* Reads every CN or OU entry of name as UTF-8, at most SD_PEER_MAX_ATTRS;
 * one more, or one that does not convert, makes the identity malformed
 * (as the rules always had it: such a certificate is refused rather than
 * judged on part of its names). */
static void sd_tls_peer_attrs(struct sd_tls_peer_src *src, const X509_NAME *name, int nid,
                              unsigned char **out, size_t *lens, size_t *n)
{
    int idx = -1;

    while ((idx = X509_NAME_get_index_by_NID(name, nid, idx)) >= 0) {
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, s);

        if (len < 0 || *n >= SD_PEER_MAX_ATTRS) {
            OPENSSL_free(utf8);
            src->flags |= SD_PEER_MALFORMED;
            continue;
        }
        out[*n] = utf8;
        lens[*n] = (size_t)len;
        (*n)++;
    }
}

/* Decodes the SAN extension strictly: present but undecodable or present
 * twice, not byte-identical to the DER of what was decoded (OpenSSL's
 * decoder ignores trailing bytes and takes non-DER forms; a name must be
 * read one way only), or empty (RFC 5280 4.2.1.6): malformed. What did
 * decode is kept for the log either way. */
static void sd_tls_peer_sans(struct sd_tls_peer_src *src, const X509 *x)
{
    X509_EXTENSION *ext;
    const ASN1_OCTET_STRING *raw;
    unsigned char *enc = NULL;
    int crit = -1, enclen, same;

    src->gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (src->gens == NULL) {
        if (crit != -1)
            src->flags |= SD_PEER_MALFORMED;
        return;
    }
    ext = X509_get_ext(x, X509_get_ext_by_NID(x, NID_subject_alt_name, -1));
    raw = ext != NULL ? X509_EXTENSION_get_data(ext) : NULL;
    enclen = i2d_GENERAL_NAMES(src->gens, &enc);
    same = raw != NULL && enclen > 0 && enclen == ASN1_STRING_length(raw) &&
           memcmp(enc, ASN1_STRING_get0_data(raw), (size_t)enclen) == 0;
    OPENSSL_free(enc);
    if (!same || sk_GENERAL_NAME_num(src->gens) == 0)
        src->flags |= SD_PEER_MALFORMED;
}

/* Prints the subject as the log always showed it: RFC 2253, UTF-8 kept,
 * specials escaped; cut at SD_PEER_MAX_SUBJECT on a UTF-8 boundary.
 * Returns -1 when out of memory. */
static int sd_tls_peer_subject(struct sd_tls_peer_src *src, const X509 *x)
{
    char *data = NULL;
    long n;

    if ((src->subj = BIO_new(BIO_s_mem())) == NULL)
        return -1;
    if (X509_NAME_print_ex(src->subj, X509_get_subject_name(x), 0,
                           XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB) < 0)
        return 0; /* no subject text: the log leaves it out */
    n = BIO_get_mem_data(src->subj, &data);
    if (n < 0)
        return 0;
    src->subject = data != NULL ? data : "";
    src->subjlen = (size_t)n;
    if (src->subjlen > SD_PEER_MAX_SUBJECT) {
        src->subjlen = SD_PEER_MAX_SUBJECT;
        while (src->subjlen > 0 && ((unsigned char)data[src->subjlen] & 0xC0) == 0x80)
            src->subjlen--;
        src->flags |= SD_PEER_TRUNCATED;
    }
    return 0;
}

static int64_t sd_tls_peer_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* Gathers everything from x, and both hashes. Returns 0, or -1 when out of
 * memory (or a hash cannot be computed, which for a parsed certificate only
 * allocation failure causes). */
static int sd_tls_peer_gather(struct sd_tls_peer_src *src, const X509 *x, uint8_t cert_md[32],
                              uint8_t spki_md[32])
{
    const X509_NAME *subj = X509_get_subject_name(x);
    unsigned char *der = NULL;
    unsigned int mdlen = 0;
    int derlen, ok;
    BIGNUM *bn;
    EVP_PKEY *pk;

    sd_tls_peer_sans(src, x);
    sd_tls_peer_attrs(src, subj, NID_commonName, src->cns, src->cnlen, &src->ncns);
    sd_tls_peer_attrs(src, subj, NID_organizationalUnitName, src->ous, src->oulen, &src->nous);
    if (sd_tls_peer_subject(src, x) != 0)
        return -1;
    if (!X509_digest(x, EVP_sha256(), cert_md, &mdlen) || mdlen != 32)
        return -1;
    derlen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    ok = derlen > 0 && EVP_Digest(der, (size_t)derlen, spki_md, &mdlen, EVP_sha256(), NULL) &&
         mdlen == 32;
    OPENSSL_free(der);
    if (!ok)
        return -1;
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    src->serial = bn != NULL ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    /* The names the PROXY v2 header always carried. */
    src->sig_alg = OBJ_nid2sn(X509_get_signature_nid(x));
    pk = X509_get0_pubkey(x);
    src->key_alg = pk != NULL ? EVP_PKEY_get0_type_name(pk) : NULL;
    return 0;
}

/* Copies n bytes (and a NUL not counted in the name) while filling. */
static struct sd_name sd_tls_peer_copy(struct sd_tls_peer_out *o, const void *s, size_t n)
{
    struct sd_name r = { NULL, n };

    if (o->bytes != NULL) {
        char *p = o->bytes + o->nbytes;
        if (n > 0)
            memcpy(p, s, n);
        p[n] = '\0';
        r.s = p;
    }
    o->nbytes += n + 1;
    return r;
}

/* Puts name at (*n)++ of list (while filling). */
static void sd_tls_peer_list(struct sd_name *list, size_t *n, struct sd_name name)
{
    if (list != NULL)
        list[*n] = name;
    (*n)++;
}

/* One SAN: kept in order (up to SD_PEER_MAX_SANS), and, if a URI or DNS
 * name, for the rules (up to SD_PEER_MAX_NAMES; one more is malformed).
 * Kept for both, its bytes are stored once. */
static void sd_tls_peer_san(struct sd_tls_peer_out *o, const GENERAL_NAME *gn)
{
    const ASN1_STRING *s = NULL;
    char ip[INET6_ADDRSTRLEN] = "?";
    enum sd_san_type type;
    struct sd_name *list;
    size_t *n, len;
    const void *bytes;
    struct sd_name name;
    int in_order, for_rules = 0;

    switch (gn->type) {
    case GEN_URI:
        type = SD_SAN_URI;
        s = gn->d.uniformResourceIdentifier;
        list = o->uris;
        n = &o->nuris;
        break;
    case GEN_DNS:
        type = SD_SAN_DNS;
        s = gn->d.dNSName;
        list = o->dns;
        n = &o->ndns;
        break;
    case GEN_EMAIL:
        type = SD_SAN_EMAIL;
        s = gn->d.rfc822Name;
        list = o->emails;
        n = &o->nemails;
        break;
    case GEN_IPADD:
        type = SD_SAN_IP;
        s = gn->d.iPAddress;
        list = o->ips;
        n = &o->nips;
        break;
    default:
        return; /* other types were never read nor logged */
    }
    if (type == SD_SAN_IP) {
        if (s != NULL && ASN1_STRING_length(s) == 4)
            inet_ntop(AF_INET, ASN1_STRING_get0_data(s), ip, sizeof(ip));
        else if (s != NULL && ASN1_STRING_length(s) == 16)
            inet_ntop(AF_INET6, ASN1_STRING_get0_data(s), ip, sizeof(ip));
        bytes = ip;
        len = strlen(ip);
    } else {
        bytes = s != NULL ? ASN1_STRING_get0_data(s) : NULL;
        len = s != NULL && ASN1_STRING_length(s) > 0 ? (size_t)ASN1_STRING_length(s) : 0;
    }
    in_order = o->nsans < SD_PEER_MAX_SANS;
    if (!in_order)
        o->flags |= SD_PEER_SANS_CAPPED;
    if (type == SD_SAN_URI || type == SD_SAN_DNS) {
        for_rules = *n < SD_PEER_MAX_NAMES;
        if (!for_rules)
            o->flags |= SD_PEER_MALFORMED;
    }
    if (!in_order && !for_rules)
        return;
    name = sd_tls_peer_copy(o, bytes, len);
    if (in_order) {
        if (o->sans != NULL) {
            o->sans[o->nsans].type = type;
            o->sans[o->nsans].name = name;
        }
        o->nsans++;
        if (type == SD_SAN_EMAIL || type == SD_SAN_IP)
            sd_tls_peer_list(list, n, name);
    }
    if (for_rules)
        sd_tls_peer_list(list, n, name);
}

static void sd_tls_peer_layout(const struct sd_tls_peer_src *src, struct sd_tls_peer_out *o)
{
    size_t i;
    int k;

    for (k = 0; src->gens != NULL && k < sk_GENERAL_NAME_num(src->gens); k++)
        sd_tls_peer_san(o, sk_GENERAL_NAME_value(src->gens, k));
    for (i = 0; i < src->ncns; i++)
        sd_tls_peer_list(o->cns, &o->ncns, sd_tls_peer_copy(o, src->cns[i], src->cnlen[i]));
    for (i = 0; i < src->nous; i++)
        sd_tls_peer_list(o->ous, &o->nous, sd_tls_peer_copy(o, src->ous[i], src->oulen[i]));
}

/* Copies a C string into the bytes (filling), or NULL. */
static const char *sd_tls_peer_cstr(struct sd_tls_peer_out *o, const char *s)
{
    struct sd_name n;

    if (s == NULL)
        return NULL;
    n = sd_tls_peer_copy(o, s, strlen(s));
    return n.s;
}

/* The texts after the names: subject, serial, algorithm names. */
static void sd_tls_peer_texts(const struct sd_tls_peer_src *src, struct sd_tls_peer_out *o,
                              struct sd_peer_cert *pc)
{
    struct sd_name subject = { NULL, 0 }, serial;
    const char *sig, *key;

    if (src->subject != NULL)
        subject = sd_tls_peer_copy(o, src->subject, src->subjlen);
    serial = sd_tls_peer_copy(o, src->serial != NULL ? src->serial : "",
                              src->serial != NULL ? strlen(src->serial) : 0);
    sig = sd_tls_peer_cstr(o, src->sig_alg);
    key = sd_tls_peer_cstr(o, src->key_alg);
    if (pc != NULL) {
        pc->subject = subject;
        pc->serial = serial;
        pc->sig_alg = sig;
        pc->key_alg = key;
    }
}

struct sd_peer_cert *sd_tls_peer_cert_new(const X509 *x)
{
    struct sd_tls_peer_src src;
    struct sd_tls_peer_out o;
    struct sd_peer_cert *pc = NULL;
    struct sd_name *names;
    uint8_t cert_md[32], spki_md[32];
    size_t nnames, off;

    memset(&src, 0, sizeof(src));
    memset(&o, 0, sizeof(o));
    if (x == NULL || sd_tls_peer_gather(&src, x, cert_md, spki_md) != 0)
        goto out;
    sd_tls_peer_layout(&src, &o);
    sd_tls_peer_texts(&src, &o, NULL);

    /* One block: the struct, the name lists, the ordered SANs, the bytes.
     * Every part's size is a multiple of the next part's alignment. */
    nnames = o.nuris + o.ndns + o.ncns + o.nous + o.nemails + o.nips;
    off = sizeof(*pc) + nnames * sizeof(struct sd_name) + o.nsans * sizeof(struct sd_peer_san);
    if ((pc = calloc(1, off + o.nbytes)) == NULL)
        goto out;
    names = (struct sd_name *)(pc + 1);
    o.uris = names;
    o.dns = o.uris + o.nuris;
    o.cns = o.dns + o.ndns;
    o.ous = o.cns + o.ncns;
    o.emails = o.ous + o.nous;
    o.ips = o.emails + o.nemails;
    o.sans = (struct sd_peer_san *)(o.ips + o.nips);
    o.bytes = (char *)pc + off;
    o.nuris = o.ndns = o.ncns = o.nous = o.nemails = o.nips = o.nsans = o.nbytes = 0;
    o.flags = 0;
    sd_tls_peer_layout(&src, &o);
    sd_tls_peer_texts(&src, &o, pc);

    pc->refs = 1;
    pc->id.uris = o.uris;
    pc->id.nuris = o.nuris;
    pc->id.dns = o.dns;
    pc->id.ndns = o.ndns;
    pc->id.cns = o.cns;
    pc->id.ncns = o.ncns;
    pc->id.ous = o.ous;
    pc->id.nous = o.nous;
    memcpy(pc->spki_sha256, spki_md, sizeof(pc->spki_sha256));
    memcpy(pc->cert_sha256, cert_md, sizeof(pc->cert_sha256));
    pc->id.spki_sha256 = pc->spki_sha256;
    pc->sans = o.sans;
    pc->nsans = o.nsans;
    pc->emails = o.emails;
    pc->nemails = o.nemails;
    pc->ips = o.ips;
    pc->nips = o.nips;
    pc->not_before = sd_tls_peer_time(X509_get0_notBefore(x));
    pc->not_after = sd_tls_peer_time(X509_get0_notAfter(x));
    pc->flags = src.flags | o.flags;
    if (!sd_policy_identity_sane(&pc->id) || !sd_policy_identity_unambiguous(&pc->id))
        pc->flags |= SD_PEER_MALFORMED;
out:
    sd_tls_peer_src_clear(&src);
    ERR_clear_error();
    return pc;
}

struct sd_peer_cert *sd_peer_cert_from_der(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    struct sd_peer_cert *pc = NULL;
    X509 *x;

    if (der == NULL || len == 0 || len > LONG_MAX)
        return NULL;
    x = d2i_X509(NULL, &p, (long)len);
    /* One certificate and nothing after it, as in a TLS Certificate message. */
    if (x != NULL && p == der + len)
        pc = sd_tls_peer_cert_new(x);
    X509_free(x);
    ERR_clear_error();
    return pc;
}
