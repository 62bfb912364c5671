/* proxy_proto.c - PROXY protocol v2 header writer (see sd/proxy_proto.h). */
#include "sd/proxy_proto.h"

#include <netinet/in.h>
#include <string.h>

#include "sd/peer.h"

static const uint8_t sd_pp2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* A bounded writer: every put checks the capacity; once over, it stays
 * over and the build fails. */
struct sd_pp2_w {
    uint8_t *p;
    size_t len, cap;
    int over;
};

static void sd_pp2_put(struct sd_pp2_w *w, const void *src, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void sd_pp2_u8(struct sd_pp2_w *w, uint8_t v)
{
    sd_pp2_put(w, &v, 1);
}

static void sd_pp2_u16(struct sd_pp2_w *w, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    sd_pp2_put(w, b, 2);
}

static void sd_pp2_tlv(struct sd_pp2_w *w, uint8_t type, const void *v, size_t n)
{
    if (n > 0xFFFF) {
        w->over = 1;
        return;
    }
    sd_pp2_u8(w, type);
    sd_pp2_u16(w, (uint16_t)n);
    sd_pp2_put(w, v, n);
}

static void sd_pp2_tlv_str(struct sd_pp2_w *w, uint8_t type, const char *s)
{
    if (s != NULL && *s != '\0')
        sd_pp2_tlv(w, type, s, strlen(s));
}

static void sd_pp2_tlv_name(struct sd_pp2_w *w, uint8_t type, struct sd_name n)
{
    if (n.s != NULL && n.len > 0)
        sd_pp2_tlv(w, type, n.s, n.len);
}

static void sd_pp2_addresses(struct sd_pp2_w *w, const struct sockaddr *src,
                             const struct sockaddr *dst)
{
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
        sd_pp2_put(w, &s->sin_addr, 4);
        sd_pp2_put(w, &d->sin_addr, 4);
        sd_pp2_put(w, &s->sin_port, 2);
        sd_pp2_put(w, &d->sin_port, 2);
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
        const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;
        sd_pp2_put(w, &s->sin6_addr, 16);
        sd_pp2_put(w, &d->sin6_addr, 16);
        sd_pp2_put(w, &s->sin6_port, 2);
        sd_pp2_put(w, &d->sin6_port, 2);
    }
}

long sd_pp2_build(const struct sd_pp2_info *in, uint8_t *out, size_t cap)
{
    struct sd_pp2_w w = { out, 0, cap, 0 };
    size_t len_at, ssl_at, ssl_len, total, i;
    int v4 = in->src->sa_family == AF_INET && in->dst->sa_family == AF_INET;
    int v6 = in->src->sa_family == AF_INET6 && in->dst->sa_family == AF_INET6;
    static const uint8_t verify_ok[4] = { 0, 0, 0, 0 };

    if (!v4 && !v6)
        return -1; /* a listener's client is always TCP over IPv4 or IPv6 */
    sd_pp2_put(&w, sd_pp2_sig, sizeof(sd_pp2_sig));
    sd_pp2_u8(&w, 0x21);              /* version 2, PROXY command */
    sd_pp2_u8(&w, v4 ? 0x11 : 0x21);  /* TCP over IPv4 / IPv6 */
    len_at = w.len;
    sd_pp2_u16(&w, 0);                /* patched below */
    sd_pp2_addresses(&w, in->src, in->dst);

    sd_pp2_tlv_name(&w, SD_PP2_TYPE_ALPN, in->alpn);
    sd_pp2_tlv_name(&w, SD_PP2_TYPE_AUTHORITY, in->authority);

    /* PP2_TYPE_SSL: client flags, verify result (0 = verified), sub-TLVs */
    sd_pp2_u8(&w, SD_PP2_TYPE_SSL);
    ssl_at = w.len;
    sd_pp2_u16(&w, 0);
    sd_pp2_u8(&w, SD_PP2_CLIENT_SSL | SD_PP2_CLIENT_CERT_CONN | SD_PP2_CLIENT_CERT_SESS);
    sd_pp2_put(&w, verify_ok, 4);
    sd_pp2_tlv_str(&w, SD_PP2_SUBTYPE_SSL_VERSION, in->version);
    sd_pp2_tlv_name(&w, SD_PP2_SUBTYPE_SSL_CN, in->cn);
    sd_pp2_tlv_str(&w, SD_PP2_SUBTYPE_SSL_CIPHER, in->cipher);
    sd_pp2_tlv_str(&w, SD_PP2_SUBTYPE_SSL_SIG_ALG, in->sig_alg);
    sd_pp2_tlv_str(&w, SD_PP2_SUBTYPE_SSL_KEY_ALG, in->key_alg);
    if (w.over)
        return -1;
    ssl_len = w.len - ssl_at - 2;
    if (ssl_len > 0xFFFF)
        return -1;
    out[ssl_at] = (uint8_t)(ssl_len >> 8);
    out[ssl_at + 1] = (uint8_t)ssl_len;

    /* The identity that was admitted first, so a backend that reads one
     * value reads the one that matched. */
    sd_pp2_tlv_name(&w, SD_PP2_TYPE_SD_IDENTITY, in->identity);
    sd_pp2_tlv_str(&w, SD_PP2_TYPE_SD_RULE, in->rule);
    for (i = 0; i < in->nuris; i++)
        sd_pp2_tlv_name(&w, SD_PP2_TYPE_SD_URI, in->uris[i]);
    for (i = 0; i < in->ndns; i++)
        sd_pp2_tlv_name(&w, SD_PP2_TYPE_SD_DNS, in->dns[i]);
    if (in->cert_sha256 != NULL)
        sd_pp2_tlv(&w, SD_PP2_TYPE_SD_CERT_SHA256, in->cert_sha256, 32);
    sd_pp2_tlv_name(&w, SD_PP2_TYPE_SD_SUBJECT, in->subject);
    if (w.over)
        return -1;
    total = w.len - 16;
    if (total > 0xFFFF)
        return -1;
    out[len_at] = (uint8_t)(total >> 8);
    out[len_at + 1] = (uint8_t)total;
    return (long)w.len;
}

long sd_pp2_build_peer(const struct sd_peer *p, const struct sockaddr *src,
                       const struct sockaddr *dst, uint8_t *out, size_t cap)
{
    const struct sd_peer_cert *pc = p != NULL ? p->cert : NULL;
    const struct sd_name *hit;
    struct sd_pp2_info in;

    /* Only an admitted peer is handed on, whole: a subject cut at
     * SD_PEER_MAX_SUBJECT could not have fit in its TLV anyway. */
    if (pc == NULL || (pc->flags & (SD_PEER_MALFORMED | SD_PEER_TRUNCATED)) ||
        pc->subject.s == NULL)
        return -1;
    memset(&in, 0, sizeof(in));
    in.src = src;
    in.dst = dst;
    in.alpn = p->alpn;
    in.authority = p->authority;
    in.version = p->tls_version;
    in.cipher = p->cipher;
    in.sig_alg = pc->sig_alg;
    in.key_alg = pc->key_alg;
    if (pc->id.ncns > 0)
        in.cn = pc->id.cns[0];
    in.uris = pc->id.uris;
    in.nuris = pc->id.nuris;
    in.dns = pc->id.dns;
    in.ndns = pc->id.ndns;
    in.cert_sha256 = pc->cert_sha256;
    in.subject = pc->subject;
    hit = sd_peer_identity(p);
    if (hit != NULL)
        in.identity = *hit;
    if (p->rule >= 0)
        in.rule = p->rule_text;
    return sd_pp2_build(&in, out, cap);
}
