/*
 * http/ident.c - the identity headers HTTP mode writes into each request
 * (sd/http_ident.h), and the header names no client may send.
 *
 * Building: every value comes from what the handshake verified (the peer's
 * extraction, the DER the client sent) and the client's TCP address; none
 * from the request. Values are written through one bounded writer that
 * refuses, rather than cuts, what does not fit: a cut identity header
 * would be a different identity.
 *
 * Certificate text is the one input that could carry bytes a field value
 * cannot (the RFC 2253 subject may hold any attribute the CA accepted).
 * Every CTL (0x00-0x1F, 0x7F: CR, LF and NUL among them, and HTAB too,
 * which is legal in a value but trimmed or mangled by some backends) is
 * written as "\xHH" inside a quoted XFCC value, never raw, so no
 * certificate can end a header line or start another one. Bytes >= 0x80
 * (UTF-8 in a subject) are kept as they are: RFC 9110 allows obs-text in a
 * field value, Envoy passes the subject's UTF-8 the same way, and the
 * usual backends (gunicorn, Werkzeug, Go, Node, Java) read it as Latin-1 or
 * UTF-8 without refusing the request.
 *
 * Reserved names: sd_http_ident_reserved runs for every field of every
 * request, so it dispatches on the first byte (and, for "X-" names, the
 * third) to a group of at most a dozen candidates and compares only those
 * of the right length: most fields (Host, Accept, User-Agent...) are
 * rejected after one or two byte tests. No OpenSSL here.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "sd/err.h"
#include "sd/http_ident.h"

/* ------------------------------------------------------------ header sets */

/* The words of `http-headers`, in the canonical order of
 * sd_http_ident_format_set (the single-header words come first, and that
 * order is the order the lines are written in). */
static const struct {
    const char *word;
    uint32_t bits;
} sd_http_ident_words[] = {
    { "client-cert", SD_HTTP_H_CLIENT_CERT },
    { "client-cert-chain", SD_HTTP_H_CLIENT_CERT_CHAIN },
    { "xfcc", SD_HTTP_H_XFCC },
    { "forwarded", SD_HTTP_H_FORWARDED },
    { "x-forwarded-for", SD_HTTP_H_XFF },
    { "x-forwarded-proto", SD_HTTP_H_XFP },
    { "rfc9440", SD_HTTP_H_CLIENT_CERT | SD_HTTP_H_CLIENT_CERT_CHAIN },
    { "x-forwarded", SD_HTTP_H_XFF | SD_HTTP_H_XFP },
    { "none", 0 },
};
#define SD_HTTP_IDENT_NWORDS (sizeof(sd_http_ident_words) / sizeof(sd_http_ident_words[0]))
/* The first words that each name exactly one header (format_set's list). */
#define SD_HTTP_IDENT_NSINGLE 6u
#define SD_HTTP_IDENT_VALID                                                             \
    "client-cert, client-cert-chain, rfc9440, xfcc, forwarded, x-forwarded-for, "      \
    "x-forwarded-proto, x-forwarded, or none alone"
/* How much of a bad word an error message quotes. */
#define SD_HTTP_IDENT_ERR_WORD 64

/* Returns 1 for the blanks allowed around a word. */
static int sd_http_ident_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses text (a C string, borrowed) into *set; see the header. */
int sd_http_ident_parse_set(const char *text, uint32_t *set, struct sd_err *err)
{
    uint32_t bits = 0;
    size_t words = 0;
    int none = 0;
    const char *p = text;

    if (text == NULL)
        return sd_err_set(err, "empty list of HTTP headers (valid: %s)", SD_HTTP_IDENT_VALID);
    for (;;) {
        const char *end = p;
        size_t n, i;

        while (*end != '\0' && *end != ',')
            end++;
        const char *a = p, *b = end;
        while (a < b && sd_http_ident_blank(*a))
            a++;
        while (b > a && sd_http_ident_blank(b[-1]))
            b--;
        n = (size_t)(b - a);
        if (n == 0) {
            if (*end == '\0' && words == 0)
                return sd_err_set(err, "empty list of HTTP headers (valid: %s)",
                                  SD_HTTP_IDENT_VALID);
            return sd_err_set(err, "empty word in HTTP header list '%.*s' (valid: %s)",
                              SD_HTTP_IDENT_ERR_WORD * 2, text, SD_HTTP_IDENT_VALID);
        }
        for (i = 0; i < SD_HTTP_IDENT_NWORDS; i++) {
            const char *w = sd_http_ident_words[i].word;
            if (strlen(w) == n && memcmp(w, a, n) == 0)
                break;
        }
        if (i == SD_HTTP_IDENT_NWORDS)
            return sd_err_set(err, "unknown HTTP header '%.*s'%s (valid: %s)",
                              n > SD_HTTP_IDENT_ERR_WORD ? SD_HTTP_IDENT_ERR_WORD : (int)n, a,
                              n > SD_HTTP_IDENT_ERR_WORD ? "..." : "", SD_HTTP_IDENT_VALID);
        if (sd_http_ident_words[i].bits == 0)
            none = 1;
        bits |= sd_http_ident_words[i].bits;
        words++;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    /* "none" says the operator wants no header: with another word it is a
     * contradiction, not a union. */
    if (none && bits != 0)
        return sd_err_set(err, "none cannot be combined with other HTTP headers in '%.*s' "
                               "(valid: %s)", SD_HTTP_IDENT_ERR_WORD * 2, text,
                          SD_HTTP_IDENT_VALID);
    *set = bits;
    return 0;
}

/* Writes set as words into out[0, size), NUL-terminated and cut to size
 * (size 0: nothing written). Bits no word names are left out. */
void sd_http_ident_format_set(uint32_t set, char *out, size_t size)
{
    size_t len = 0;
    int any = 0;

    if (size == 0)
        return;
    for (size_t i = 0; i <= SD_HTTP_IDENT_NSINGLE; i++) {
        const char *w;
        if (i == SD_HTTP_IDENT_NSINGLE) {
            if (any)
                break;
            w = "none";
        } else if (set & sd_http_ident_words[i].bits) {
            w = sd_http_ident_words[i].word;
        } else {
            continue;
        }
        for (const char *s = any ? "," : ""; *s != '\0' && len + 1 < size; s++)
            out[len++] = *s;
        for (const char *s = w; *s != '\0' && len + 1 < size; s++)
            out[len++] = *s;
        any = 1;
    }
    out[len] = '\0';
}

/* --------------------------------------------------------- reserved names */

/* One reserved name: its folded spelling (lower case, '-'), what the log
 * shows, its length, and whether any name it starts is reserved too. */
struct sd_http_ident_rsv {
    const char *folded;
    const char *canonical;
    uint8_t len;
    uint8_t prefix;
};

#define SD_HTTP_IDENT_EXACT(f, c) { f, c, (uint8_t)(sizeof(f) - 1), 0 }
#define SD_HTTP_IDENT_PREFIX(f, c) { f, c, (uint8_t)(sizeof(f) - 1), 1 }

/* Groups by the first byte, "X-" names by their third. In each group the
 * exact names come before the prefixes, so "X-SSL-Client-Cert" is named
 * as itself rather than as "X-SSL-Client-*". Besides the headers of
 * sd/http_ident.h and the list there, the client-certificate headers of
 * the other common proxies are reserved too, since an application written
 * for one of them would trust a client's copy: nginx's documented
 * X-SSL-Cert, Traefik's X-Forwarded-Tls-Client-Cert(-Info), Azure's
 * X-ARR-ClientCert and AWS ALB's X-Amzn-Mtls-*. */
static const struct sd_http_ident_rsv sd_http_ident_rsv_c[] = {
    SD_HTTP_IDENT_EXACT("client-cert", "Client-Cert"),
    SD_HTTP_IDENT_EXACT("client-cert-chain", "Client-Cert-Chain"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_f[] = {
    SD_HTTP_IDENT_EXACT("forwarded", "Forwarded"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_s[] = {
    SD_HTTP_IDENT_EXACT("ssl-client-cert", "SSL-Client-Cert"),
    SD_HTTP_IDENT_PREFIX("steeldoor-", "Steeldoor-*"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_xa[] = {
    SD_HTTP_IDENT_EXACT("x-arr-clientcert", "X-ARR-ClientCert"),
    SD_HTTP_IDENT_PREFIX("x-amzn-mtls-", "X-Amzn-Mtls-*"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_xc[] = {
    SD_HTTP_IDENT_EXACT("x-client-cert", "X-Client-Cert"),
    SD_HTTP_IDENT_EXACT("x-client-verify", "X-Client-Verify"),
    SD_HTTP_IDENT_EXACT("x-client-dn", "X-Client-DN"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_xf[] = {
    SD_HTTP_IDENT_EXACT("x-forwarded-client-cert", "X-Forwarded-Client-Cert"),
    SD_HTTP_IDENT_EXACT("x-forwarded-for", "X-Forwarded-For"),
    SD_HTTP_IDENT_EXACT("x-forwarded-proto", "X-Forwarded-Proto"),
    SD_HTTP_IDENT_EXACT("x-forwarded-host", "X-Forwarded-Host"),
    SD_HTTP_IDENT_EXACT("x-forwarded-port", "X-Forwarded-Port"),
    SD_HTTP_IDENT_EXACT("x-forwarded-prefix", "X-Forwarded-Prefix"),
    SD_HTTP_IDENT_EXACT("x-forwarded-ssl", "X-Forwarded-Ssl"),
    SD_HTTP_IDENT_EXACT("x-forwarded-scheme", "X-Forwarded-Scheme"),
    SD_HTTP_IDENT_EXACT("x-forwarded-tls-client-cert", "X-Forwarded-Tls-Client-Cert"),
    SD_HTTP_IDENT_EXACT("x-forwarded-tls-client-cert-info", "X-Forwarded-Tls-Client-Cert-Info"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_xr[] = {
    SD_HTTP_IDENT_EXACT("x-real-ip", "X-Real-IP"),
};
static const struct sd_http_ident_rsv sd_http_ident_rsv_xs[] = {
    SD_HTTP_IDENT_EXACT("x-ssl-cert", "X-SSL-Cert"),
    SD_HTTP_IDENT_EXACT("x-ssl-client-cert", "X-SSL-Client-Cert"),
    SD_HTTP_IDENT_EXACT("x-steeldoor-request-id", SD_HTTP_REQUEST_ID_HEADER),
    SD_HTTP_IDENT_PREFIX("x-ssl-client-", "X-SSL-Client-*"),
    SD_HTTP_IDENT_PREFIX("x-steeldoor-", "X-Steeldoor-*"),
};

/* Points g and n at the group arr. */
#define SD_HTTP_IDENT_GROUP(arr) (g = (arr), n = sizeof(arr) / sizeof((arr)[0]))

/* Returns c as the loose comparison sees it: ASCII lower case, '_' as '-'. */
static unsigned char sd_http_ident_fold(char c)
{
    unsigned char u = (unsigned char)c;

    if (u >= 'A' && u <= 'Z')
        return (unsigned char)(u | 0x20);
    return u == '_' ? (unsigned char)'-' : u;
}

/* Returns 1 when s[0, n) folds to folded[0, n) (folded is already folded). */
static int sd_http_ident_fold_eq(const char *s, const char *folded, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sd_http_ident_fold(s[i]) != (unsigned char)folded[i])
            return 0;
    return 1;
}

/* Returns the canonical name if name (borrowed) is reserved, else NULL;
 * the result is static. */
const char *sd_http_ident_reserved(struct sd_name name)
{
    const struct sd_http_ident_rsv *g;
    size_t n;

    if (name.len < 9) /* "Forwarded" and "X-Real-IP" are the shortest */
        return NULL;
    switch (sd_http_ident_fold(name.s[0])) {
    case 'c': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_c); break;
    case 'f': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_f); break;
    case 's': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_s); break;
    case 'x':
        if (sd_http_ident_fold(name.s[1]) != '-')
            return NULL;
        switch (sd_http_ident_fold(name.s[2])) {
        case 'a': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_xa); break;
        case 'c': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_xc); break;
        case 'f': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_xf); break;
        case 'r': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_xr); break;
        case 's': SD_HTTP_IDENT_GROUP(sd_http_ident_rsv_xs); break;
        default: return NULL;
        }
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (g[i].prefix ? name.len < g[i].len : name.len != g[i].len)
            continue;
        if (sd_http_ident_fold_eq(name.s, g[i].folded, g[i].len))
            return g[i].canonical;
    }
    return NULL;
}

/* ---------------------------------------------------------------- writing */

/* A bounded writer over the caller's buffer: once something does not fit
 * it writes nothing more (full), and the build returns -1. */
struct sd_http_ident_out {
    char *p;
    size_t cap;
    size_t len;
    int full;
};

/* Returns room for n more bytes at the end (o->len is then advanced past
 * them), or NULL (and o->full) when they do not fit. */
static char *sd_http_ident_take(struct sd_http_ident_out *o, size_t n)
{
    char *at;

    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return NULL;
    }
    at = o->p + o->len;
    o->len += n;
    return at;
}

/* Appends s[0, n) (borrowed). */
static void sd_http_ident_put(struct sd_http_ident_out *o, const char *s, size_t n)
{
    char *at = sd_http_ident_take(o, n);

    if (at != NULL && n > 0)
        memcpy(at, s, n);
}

/* Appends the C string s (borrowed: a literal, or an address as text). */
static void sd_http_ident_puts(struct sd_http_ident_out *o, const char *s)
{
    sd_http_ident_put(o, s, strlen(s));
}

/* Appends the byte c. */
static void sd_http_ident_putc(struct sd_http_ident_out *o, char c)
{
    char *at = sd_http_ident_take(o, 1);

    if (at != NULL)
        *at = c;
}

static const char sd_http_ident_hexdigits[] = "0123456789abcdef";

/* Appends p[0, n) as standard base64 with padding (RFC 4648 section 4, the
 * alphabet RFC 8941 sf-binary uses), without line breaks. */
static void sd_http_ident_base64(struct sd_http_ident_out *o, const uint8_t *p, size_t n)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t groups = n / 3 + (n % 3 != 0);
    char *at;

    /* groups * 4 cannot overflow once it is known to be below the room. */
    if (o->full || groups > (o->cap - o->len) / 4) {
        o->full = 1;
        return;
    }
    at = sd_http_ident_take(o, groups * 4);
    for (size_t i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *at++ = alpha[v >> 18];
        *at++ = alpha[v >> 12 & 63];
        *at++ = alpha[v >> 6 & 63];
        *at++ = alpha[v & 63];
    }
    if (n % 3 != 0) {
        size_t i = n - n % 3;
        uint32_t v = (uint32_t)p[i] << 16 | (n % 3 == 2 ? (uint32_t)p[i + 1] << 8 : 0u);
        *at++ = alpha[v >> 18];
        *at++ = alpha[v >> 12 & 63];
        *at++ = n % 3 == 2 ? alpha[v >> 6 & 63] : '=';
        *at = '=';
    }
}

/* Appends der as an RFC 8941 sf-binary: ":base64:". */
static void sd_http_ident_binary(struct sd_http_ident_out *o, const struct sd_der *der)
{
    sd_http_ident_putc(o, ':');
    sd_http_ident_base64(o, der->p, der->len);
    sd_http_ident_putc(o, ':');
}

/* Returns 1 for a CTL (RFC 5234: 0x00-0x1F, 0x7F). */
static int sd_http_ident_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* Appends one XFCC value. Envoy quotes a value holding ',', ';', '=' or
 * '"' and escapes '"' with a backslash; this also quotes a value holding a
 * backslash (escaped, so that "\x01" below stays unambiguous), a blank or
 * a CTL (written as \xHH: never raw), and an empty one, and quotes always
 * when told (Subject, as Envoy does). */
static void sd_http_ident_xfcc_value(struct sd_http_ident_out *o, struct sd_name v, int quote)
{
    size_t i;

    for (i = 0; !quote && i < v.len; i++) {
        unsigned char c = (unsigned char)v.s[i];
        if (c == ',' || c == ';' || c == '=' || c == '"' || c == '\\' || c == ' ' ||
            sd_http_ident_ctl(c))
            quote = 1;
    }
    if (v.len == 0)
        quote = 1;
    if (!quote) {
        sd_http_ident_put(o, v.s, v.len);
        return;
    }
    sd_http_ident_putc(o, '"');
    for (i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.s[i];
        size_t run = i;

        /* Copy the run of ordinary bytes at once. */
        while (run < v.len && (unsigned char)v.s[run] != '"' && (unsigned char)v.s[run] != '\\' &&
               !sd_http_ident_ctl((unsigned char)v.s[run]))
            run++;
        if (run > i) {
            sd_http_ident_put(o, v.s + i, run - i);
            i = run - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            sd_http_ident_put(o, esc, 2);
        } else {
            char esc[4] = { '\\', 'x', sd_http_ident_hexdigits[c >> 4],
                            sd_http_ident_hexdigits[c & 15] };
            sd_http_ident_put(o, esc, 4);
        }
    }
    sd_http_ident_putc(o, '"');
}

/* The X-Forwarded-Client-Cert line of pc (borrowed): Hash, Subject (when
 * it could be printed), each URI SAN, each DNS SAN, in certificate order. */
static void sd_http_ident_xfcc(struct sd_http_ident_out *o, const struct sd_peer_cert *pc)
{
    char hex[64];

    for (size_t i = 0; i < 32; i++) {
        hex[2 * i] = sd_http_ident_hexdigits[pc->cert_sha256[i] >> 4];
        hex[2 * i + 1] = sd_http_ident_hexdigits[pc->cert_sha256[i] & 15];
    }
    sd_http_ident_puts(o, "X-Forwarded-Client-Cert: Hash=");
    sd_http_ident_put(o, hex, sizeof(hex));
    if (pc->subject.s != NULL) {
        sd_http_ident_puts(o, ";Subject=");
        sd_http_ident_xfcc_value(o, pc->subject, 1);
    }
    for (size_t i = 0; i < pc->id.nuris; i++) {
        sd_http_ident_puts(o, ";URI=");
        sd_http_ident_xfcc_value(o, pc->id.uris[i], 0);
    }
    for (size_t i = 0; i < pc->id.ndns; i++) {
        sd_http_ident_puts(o, ";DNS=");
        sd_http_ident_xfcc_value(o, pc->id.dns[i], 0);
    }
    sd_http_ident_puts(o, "\r\n");
}

/* The client's address as text. */
enum sd_http_ident_family { SD_HTTP_IDENT_UNKNOWN, SD_HTTP_IDENT_V4, SD_HTTP_IDENT_V6 };

/* Writes sa's address (len bytes of it, borrowed) into buf[0, 46) as
 * inet_ntop text, an IPv4-mapped IPv6 address as IPv4. Returns its family:
 * UNKNOWN (buf untouched) for NULL, a length too short for the family, a
 * Unix socket or any other family. */
static enum sd_http_ident_family sd_http_ident_addr(const struct sockaddr *sa, socklen_t len,
                                                    char buf[INET6_ADDRSTRLEN])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    if (sa == NULL || len < (socklen_t)sizeof(sa_family_t))
        return SD_HTTP_IDENT_UNKNOWN;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof(in));
        if (inet_ntop(AF_INET, &in.sin_addr, buf, INET6_ADDRSTRLEN) == NULL)
            return SD_HTTP_IDENT_UNKNOWN;
        return SD_HTTP_IDENT_V4;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof(in6));
        if (memcmp(in6.sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0) {
            if (inet_ntop(AF_INET, in6.sin6_addr.s6_addr + 12, buf, INET6_ADDRSTRLEN) == NULL)
                return SD_HTTP_IDENT_UNKNOWN;
            return SD_HTTP_IDENT_V4;
        }
        if (inet_ntop(AF_INET6, &in6.sin6_addr, buf, INET6_ADDRSTRLEN) == NULL)
            return SD_HTTP_IDENT_UNKNOWN;
        return SD_HTTP_IDENT_V6;
    }
    return SD_HTTP_IDENT_UNKNOWN;
}

/* Writes the selected lines (see the header). in and everything it points
 * to are borrowed; out[0, cap) is the caller's, and nothing at or past
 * out + cap is ever written (on -1, out[0, cap) holds a partial result
 * the caller must discard). A line whose source is missing is left out
 * rather than written empty: Client-Cert without certs[0], XFCC without
 * in->peer->cert, X-Forwarded-For when the address is not IPv4 or IPv6
 * (as HAProxy does; Forwarded then says for=unknown, RFC 7239 section 6). */
long sd_http_ident_build(const struct sd_http_ident *in, char *out, size_t cap)
{
    struct sd_http_ident_out o = { out, cap, 0, 0 };
    const struct sd_peer_cert *pc = in->peer != NULL ? in->peer->cert : NULL;
    char addr[INET6_ADDRSTRLEN];
    enum sd_http_ident_family fam = SD_HTTP_IDENT_UNKNOWN;

    if (in->set & (SD_HTTP_H_FORWARDED | SD_HTTP_H_XFF))
        fam = sd_http_ident_addr(in->client, in->clientlen, addr);

    if ((in->set & SD_HTTP_H_CLIENT_CERT) && in->ncerts >= 1 && in->certs != NULL) {
        sd_http_ident_puts(&o, "Client-Cert: ");
        sd_http_ident_binary(&o, &in->certs[0]);
        sd_http_ident_puts(&o, "\r\n");
    }
    if ((in->set & SD_HTTP_H_CLIENT_CERT_CHAIN) && in->ncerts >= 2 && in->certs != NULL) {
        sd_http_ident_puts(&o, "Client-Cert-Chain: ");
        for (size_t i = 1; i < in->ncerts; i++) {
            if (i > 1)
                sd_http_ident_puts(&o, ", ");
            sd_http_ident_binary(&o, &in->certs[i]);
        }
        sd_http_ident_puts(&o, "\r\n");
    }
    if ((in->set & SD_HTTP_H_XFCC) && pc != NULL)
        sd_http_ident_xfcc(&o, pc);
    if (in->set & SD_HTTP_H_FORWARDED) {
        sd_http_ident_puts(&o, "Forwarded: for=");
        if (fam == SD_HTTP_IDENT_V4) {
            sd_http_ident_puts(&o, addr);
        } else if (fam == SD_HTTP_IDENT_V6) {
            /* RFC 7239 section 6: an IPv6 node is "[...]", and ':' and '['
             * are not token bytes, so the value is a quoted string. */
            sd_http_ident_puts(&o, "\"[");
            sd_http_ident_puts(&o, addr);
            sd_http_ident_puts(&o, "]\"");
        } else {
            sd_http_ident_puts(&o, "unknown");
        }
        sd_http_ident_puts(&o, ";proto=https\r\n");
    }
    if ((in->set & SD_HTTP_H_XFF) && fam != SD_HTTP_IDENT_UNKNOWN) {
        sd_http_ident_puts(&o, "X-Forwarded-For: ");
        sd_http_ident_puts(&o, addr);
        sd_http_ident_puts(&o, "\r\n");
    }
    if (in->set & SD_HTTP_H_XFP)
        sd_http_ident_puts(&o, "X-Forwarded-Proto: https\r\n");
    if (o.full)
        return -1;
    return (long)o.len;
}
