/*
 * config_keys.c - every configuration key, declared once (see
 * sd/config_keys.h), and the one function that applies a key's value.
 *
 * To add a key: add a row here (and the field it sets to sd/config.h),
 * document it in docs/config.md (test_config_keys checks), and decide
 * whether it decides admission (test_admission checks the answer).
 */
#include "sd/config_keys.h"

#include <stddef.h>
#include <string.h>

#include "sd/config.h"
#include "sd/http_ident.h"
#include "sd/http_req.h"

static int sd_config_key_set_rule(void *obj, const struct sd_config_key *k,
                                  const union sd_config_value *v, const char *what,
                                  struct sd_err *err)
{
    (void)what; /* the rule's own message names its kind */
    return sd_config_add_rule(obj, k->name, v->s, err);
}

/* allow-all is a yes/no in YAML (false: no rule) and a bare flag. */
static int sd_config_key_set_allow_all(void *obj, const struct sd_config_key *k,
                                       const union sd_config_value *v, const char *what,
                                       struct sd_err *err)
{
    (void)what;
    return v->b ? sd_config_add_rule(obj, k->name, "", err) : 0;
}

static int sd_config_key_set_crl(void *obj, const struct sd_config_key *k,
                                 const union sd_config_value *v, const char *what,
                                 struct sd_err *err)
{
    (void)k;
    (void)what;
    return sd_config_add_crl(obj, v->s, err);
}

/* listen-mode: octal permission bits of a unix listen socket, nothing
 * beyond 0777 (no setuid, sticky, or type bits). */
static int sd_config_key_set_file_mode(void *obj, const struct sd_config_key *k,
                                       const union sd_config_value *v, const char *what,
                                       struct sd_err *err)
{
    struct sd_listener_conf *l = obj;
    uint32_t mode = 0;
    const char *p = v->s;

    (void)k;
    if (*p == '\0' || strlen(p) > 4)
        return sd_err_set(err, "%s: '%s' is not a file mode (octal, e.g. 0660)", what, v->s);
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '7')
            return sd_err_set(err, "%s: '%s' is not a file mode (octal, e.g. 0660)", what,
                              v->s);
        mode = mode * 8 + (uint32_t)(*p - '0');
    }
    if (mode > 0777)
        return sd_err_set(err, "%s: '%s': only permission bits (at most 0777)", what, v->s);
    l->listen_mode = mode;
    return 0;
}

/* mode: tcp (L4, the default) or http. */
static int sd_config_key_set_mode(void *obj, const struct sd_config_key *k,
                                  const union sd_config_value *v, const char *what,
                                  struct sd_err *err)
{
    struct sd_listener_conf *l = obj;

    (void)k;
    if (strcmp(v->s, "tcp") == 0)
        l->mode = SD_MODE_TCP;
    else if (strcmp(v->s, "http") == 0)
        l->mode = SD_MODE_HTTP;
    else if (strcmp(v->s, "connect") == 0)
        return sd_err_set(err, "%s: a client-mode listener is a connector: put it in "
                          "'connectors:' (or use steeldoor connect)", what);
    else
        return sd_err_set(err, "%s: '%s' is not a mode (valid: tcp, http)", what, v->s);
    return 0;
}

/* http-headers: the set of identity headers, parsed by their module. */
static int sd_config_key_set_http_headers(void *obj, const struct sd_config_key *k,
                                          const union sd_config_value *v, const char *what,
                                          struct sd_err *err)
{
    struct sd_listener_conf *l = obj;
    uint32_t set = 0;

    (void)k;
    if (sd_http_ident_parse_set(v->s, &set, err) != 0)
        return sd_err_prefix(err, what);
    l->http_headers = set;
    return 0;
}

/* alpn: ALPN protocol names (RFC 7301), comma-separated (blanks around a
 * name are dropped), each of visible ASCII, none twice, at most
 * SD_MAX_ALPN bytes in all; "none" alone (an empty YAML list is "none"):
 * no ALPN. Kept normalised in the listener's own buffer. Which modes take
 * it is decided where the TLS context is built (src/tls/ctx.c). */
static int sd_config_key_set_alpn(void *obj, const struct sd_config_key *k,
                                  const union sd_config_value *v, const char *what,
                                  struct sd_err *err)
{
    struct sd_listener_conf *l = obj;
    char out[SD_MAX_ALPN + 1];
    size_t n = 0;
    const char *p = v->s;

    (void)k;
    for (;;) {
        const char *a = p, *b, *q;
        size_t len, i;

        while (*p != '\0' && *p != ',')
            p++;
        b = p;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        len = (size_t)(b - a);
        if (len == 0)
            return sd_err_set(err, "%s: empty protocol name (a comma-separated list such "
                              "as h2,http/1.1, or none)", what);
        for (i = 0; i < len; i++)
            if ((unsigned char)a[i] < 0x21 || (unsigned char)a[i] > 0x7e)
                return sd_err_set(err, "%s: '%.*s' is not a protocol name (visible ASCII, "
                                  "e.g. h2, http/1.1)", what, len > 64 ? 64 : (int)len, a);
        if (len == 4 && memcmp(a, "none", 4) == 0) {
            if (n == 0 && *p == '\0') {
                l->alpn[0] = '\0';
                return 0;
            }
            return sd_err_set(err, "%s: none stands alone", what);
        }
        if (n + (n > 0) + len > SD_MAX_ALPN)
            return sd_err_set(err, "%s: the list is longer than %d bytes", what, SD_MAX_ALPN);
        for (q = out; q < out + n; q += strcspn(q, ",") + 1)
            if (strcspn(q, ",") == len && memcmp(q, a, len) == 0)
                return sd_err_set(err, "%s: '%.*s' is listed twice", what, (int)len, a);
        if (n > 0)
            out[n++] = ',';
        memcpy(out + n, a, len);
        n += len;
        out[n] = '\0';
        if (*p == '\0')
            break;
        p++;
    }
    memcpy(l->alpn, out, n + 1);
    return 0;
}

/* api-key-header: a header name that can carry a key, i.e. a token that is
 * none of the names steeldoor reserves (they are stripped from every
 * request before the key would be read) and none of the framing or
 * hop-by-hop fields. Authorization is the default (with "Bearer"). */
static int sd_config_key_set_api_key_header(void *obj, const struct sd_config_key *k,
                                            const union sd_config_value *v, const char *what,
                                            struct sd_err *err)
{
    static const char *const refused[] = {
        "host", "content-length", "transfer-encoding", "connection", "keep-alive",
        "te", "trailer", "upgrade", "proxy-connection", "proxy-authorization", "expect",
        "cookie", "proxy-authenticate", "http2-settings",
    };
    struct sd_listener_conf *l = obj;
    struct sd_name n = { v->s, strlen(v->s) };
    size_t i;

    if (n.len == 0 || n.len > 64)
        return sd_err_set(err, "%s: '%s' is not a header name (1 to 64 characters)", what,
                          v->s);
    for (i = 0; i < n.len; i++) {
        unsigned char ch = (unsigned char)v->s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return sd_err_set(err, "%s: '%s' is not a header name (letters, digits, '-')",
                              what, v->s);
    }
    if (sd_http_ident_reserved(n) != NULL)
        return sd_err_set(err, "%s: '%s' is a header steeldoor reserves (it strips every "
                          "client copy of it)", what, v->s);
    if (sd_http_name_eq_loose(n, (struct sd_name){ "authorization", 13 }))
        return sd_err_set(err, "%s: Authorization is where keys arrive by default (as "
                          "'Authorization: Bearer KEY'); leave api-key-header out", what);
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (sd_http_name_eq_loose(n, (struct sd_name){ refused[i], strlen(refused[i]) }))
            return sd_err_set(err, "%s: '%s' cannot carry a key (it is a framing, "
                              "hop-by-hop or cookie field)", what, v->s);
    return sd_config_set_str((char **)((char *)l + k->offset), v->s, err);
}

/* workers is an int in struct sd_config (0: one per core, filled by
 * sd_config_validate()). */
static int sd_config_key_set_workers(void *obj, const struct sd_config_key *k,
                                     const union sd_config_value *v, const char *what,
                                     struct sd_err *err)
{
    struct sd_config *cfg = obj;

    (void)k;
    (void)what;
    (void)err;
    cfg->workers = (int)v->u;
    return 0;
}

/* The master warns louder about a file-descriptor limit below a max-conns
 * the user asked for than below the default: remember it was given. */
static int sd_config_key_set_max_conns(void *obj, const struct sd_config_key *k,
                                       const union sd_config_value *v, const char *what,
                                       struct sd_err *err)
{
    struct sd_config *cfg = obj;

    (void)k;
    (void)what;
    (void)err;
    cfg->max_conns = v->u;
    cfg->max_conns_set = 1;
    return 0;
}

#define BOTH (SD_KEY_FLAG | SD_KEY_YAML)
#define L_OFF(f) offsetof(struct sd_listener_conf, f)
#define P_OFF(f) offsetof(struct sd_config, f)

/* In `steeldoor serve --help` order. Defaults are written as a user would
 * write them; they must equal the SD_DEFAULT_* values sd_config_new() and
 * sd_config_add_listener() set (test_config_keys checks each by loading it). */
const struct sd_config_key sd_config_keys[] = {
    /* ---- Listener */
    { .name = "listen", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_STRING,
      .admission = 1, .offset = L_OFF(listen), .metavar = "ADDR:PORT",
      .group = SD_GROUP_LISTENER, .help = "address to accept TLS on ([::1]:8443 for IPv6)",
      .help_connect = "address the local callers connect to in plaintext: loopback only, or unix:/path" },
    { .name = "target", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_STRING,
      .offset = L_OFF(target), .metavar = "ADDR:PORT",
      .group = SD_GROUP_LISTENER, .help = "the protected service (or unix:/path/to.sock)",
      .help_connect = "the server to open mutual TLS to (HOST:PORT)" },
    { .name = "cert", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_PATH,
      .offset = L_OFF(cert), .metavar = "FILE",
      .group = SD_GROUP_LISTENER, .help = "server certificate chain (PEM or DER)",
      .help_connect = "our client certificate chain (PEM or DER), presented to the server" },
    { .name = "key", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_PATH,
      .offset = L_OFF(key), .metavar = "FILE",
      .group = SD_GROUP_LISTENER, .help = "server private key (PEM or DER, unencrypted, mode 0600)",
      .help_connect = "our client private key (PEM or DER, unencrypted, mode 0600)" },
    { .name = "cacert", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_PATH,
      .admission = 1, .offset = L_OFF(cacert), .metavar = "FILE|DIR",
      .group = SD_GROUP_LISTENER,
      .help = "CA bundle client certificates must chain to, PEM or DER (a directory: "
              "every certificate file in it, other files skipped with a warning; several "
              "roots)",
      .help_connect = "CA bundle the server's certificate must chain to, PEM or DER (a directory: every certificate file in it; several roots); not the system store" },
    /* ---- The server (connectors only) */
    { .name = "server-name", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .connector = SD_KEY_CONNECT_ONLY, .admission = 1, .offset = L_OFF(server_name),
      .metavar = "NAME", .group = SD_GROUP_SERVER,
      .help = "sent as SNI; without a verify rule the server's certificate must carry it "
              "(default: the target's host)" },
    { .name = "verify-uri", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .connector = SD_KEY_CONNECT_ONLY, .list = 1, .admission = 1,
      .set = sd_config_key_set_rule, .metavar = "PATTERN", .group = SD_GROUP_SERVER,
      .help = "the server's URI SAN (SPIFFE ID pattern, as allow-uri); repeatable" },
    { .name = "verify-dns", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .connector = SD_KEY_CONNECT_ONLY, .list = 1, .admission = 1,
      .set = sd_config_key_set_rule, .metavar = "NAME", .group = SD_GROUP_SERVER,
      .help = "a DNS SAN of the server's, exact; repeatable" },
    { .name = "verify-spki", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .connector = SD_KEY_CONNECT_ONLY, .list = 1, .admission = 1,
      .set = sd_config_key_set_rule, .metavar = "SHA256", .group = SD_GROUP_SERVER,
      .help = "pin: SHA-256 of the server's public key (hex or base64); repeatable" },
    { .name = "listen-mode", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .connector = SD_KEY_CONNECT_ONLY, .set = sd_config_key_set_file_mode, .def = "0600",
      .metavar = "MODE", .group = SD_GROUP_LISTENER,
      .help = "file mode of a unix:/path listen socket (octal, e.g. 0660)" },
    { .name = "warm", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_UINT,
      .connector = SD_KEY_CONNECT_ONLY, .min = 0, .max = SD_MAX_WARM,
      .offset = L_OFF(warm), .def = "0", .metavar = "N", .group = SD_GROUP_SERVER,
      .help = "connections to the server kept handshaken ahead, per worker, so a "
              "caller skips the handshake; 0: none" },
    { .name = "warm-max-age", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_DURATION, .connector = SD_KEY_CONNECT_ONLY,
      .offset = L_OFF(warm_max_age_ms), .def = "15s", .metavar = "DUR",
      .group = SD_GROUP_SERVER,
      .help = "a warm connection not handed out within this is replaced; keep it below "
              "the server's idle timeout" },
    /* ---- Who may enter */
    { .name = "allow-uri", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .list = 1, .admission = 1, .set = sd_config_key_set_rule, .metavar = "PATTERN",
      .group = SD_GROUP_WHO,
      .help = "URI SAN, e.g. spiffe://example.org/ns/*/sa/api; '*' is one path "
              "segment, a final '**' one or more" },
    { .name = "allow-dns", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .list = 1, .admission = 1, .set = sd_config_key_set_rule, .metavar = "NAME",
      .group = SD_GROUP_WHO, .help = "DNS SAN, exact, case-insensitive" },
    { .name = "allow-cn", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .list = 1, .admission = 1, .set = sd_config_key_set_rule, .metavar = "NAME",
      .group = SD_GROUP_WHO, .help = "subject CN, exact" },
    { .name = "allow-ou", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .list = 1, .admission = 1, .set = sd_config_key_set_rule, .metavar = "NAME",
      .group = SD_GROUP_WHO, .help = "subject OU, exact" },
    { .name = "allow-spki", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .list = 1, .admission = 1, .set = sd_config_key_set_rule, .metavar = "SHA256",
      .group = SD_GROUP_WHO,
      .help = "pin: SHA-256 of the client's public key (hex or base64)" },
    { .name = "allow-all", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_BOOL,
      .flag_sets = 1, .admission = 1, .set = sd_config_key_set_allow_all, .def = "false",
      .group = SD_GROUP_WHO, .help = "any client whose certificate verifies (alone only)" },
    /* ---- Revocation and chains */
    { .name = "crl", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_PATH,
      .list = 1, .admission = 1, .set = sd_config_key_set_crl, .metavar = "FILE",
      .group = SD_GROUP_REVOCATION,
      .help = "CRL, PEM or DER (repeatable); leaf and intermediates are checked; every CA "
              "level then needs a CRL",
      .help_connect = "CRL, PEM or DER (repeatable), checked against the server's chain; every CA level then needs a CRL" },
    { .name = "crl-grace", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_SECONDS,
      .admission = 1, .offset = L_OFF(crl_grace_s), .def = "0", .metavar = "DUR",
      .group = SD_GROUP_REVOCATION, .help = "accept a CRL this long past nextUpdate" },
    { .name = "verify-depth", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_UINT,
      .min = 0, .max = SD_MAX_VERIFY_DEPTH, .admission = 1, .offset = L_OFF(verify_depth),
      .def = "3", .metavar = "N", .group = SD_GROUP_REVOCATION,
      .help = "max intermediate CAs in a client chain",
      .help_connect = "max intermediate CAs in the server's chain" },
    /* ---- Identity to the backend */
    { .name = "proxy-protocol", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_BOOL, .flag_sets = 1, .offset = L_OFF(proxy_protocol), .def = "false",
      .group = SD_GROUP_IDENTITY,
      .help = "start each backend connection with a PROXY v2 header carrying the client "
              "address and verified identity" },
    { .name = "alpn", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES,
      .type = SD_KT_STRING, .words = 1, .set = sd_config_key_set_alpn, .metavar = "LIST",
      .group = SD_GROUP_IDENTITY,
      .help = "tcp listeners: ALPN protocols to select, comma-separated (h2,http/1.1): the "
              "first of the list that the client offers; default none (HTTP mode always "
              "selects http/1.1)",
      .help_connect = "ALPN protocols to offer the server, comma-separated (h2); default "
                      "none" },
    { .name = "name", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES, .type = SD_KT_STRING,
      .admission = 1, .offset = L_OFF(name), .metavar = "NAME", .group = SD_GROUP_IDENTITY,
      .help = "listener name in logs (default: the listen address)",
      .help_connect = "connector name in logs (default: the listen address)" },
    { .name = "handshake-timeout", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES,
      .type = SD_KT_DURATION, .offset = L_OFF(handshake_timeout_ms), .def = "10s",
      .metavar = "DUR", .group = SD_GROUP_IDENTITY, .help = "TLS handshake" },
    { .name = "connect-timeout", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES,
      .type = SD_KT_DURATION, .offset = L_OFF(connect_timeout_ms), .def = "5s",
      .metavar = "DUR", .group = SD_GROUP_IDENTITY, .help = "backend connect",
      .help_connect = "TCP connect to the target" },
    { .name = "idle-timeout", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES,
      .type = SD_KT_DURATION, .offset = L_OFF(idle_timeout_ms), .def = "5m",
      .metavar = "DUR", .group = SD_GROUP_IDENTITY, .help = "no bytes either way" },
    { .name = "session-lifetime", .where = BOTH, .scope = SD_SCOPE_LISTENER, .connector = SD_KEY_BOTH_ROLES,
      .type = SD_KT_DURATION0, .admission = 1, .offset = L_OFF(session_lifetime_ms),
      .def = "5m", .metavar = "DUR", .group = SD_GROUP_IDENTITY,
      .help = "a TLS session and those resumed from it live this long after the full "
              "handshake; 0: none",
      .help_connect = "how long a TLS session to the target is resumed after its full handshake; 0: none" },
    /* ---- HTTP mode */
    { .name = "mode", .flag = "http", .flag_value = "http", .where = BOTH,
      .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING, .set = sd_config_key_set_mode,
      .def = "tcp", .group = SD_GROUP_HTTP,
      .help = "speak HTTP/1.1 to the target (YAML: mode: http): every request carries the "
              "verified identity in headers no client can forge; see docs/http.md" },
    { .name = "http-headers", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_STRING, .words = 1, .http_only = 1u << 0,
      .set = sd_config_key_set_http_headers, .def = "rfc9440", .metavar = "LIST",
      .group = SD_GROUP_HTTP,
      .help = "identity headers to set, comma-separated: client-cert, client-cert-chain, "
              "rfc9440 (both), xfcc, forwarded, x-forwarded-for, x-forwarded-proto, "
              "x-forwarded (both), or none" },
    { .name = "backend-idle-timeout", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_DURATION, .http_only = 1u << 1,
      .offset = L_OFF(backend_idle_timeout_ms), .def = "1.5s", .metavar = "DUR",
      .group = SD_GROUP_HTTP,
      .help = "close a pooled backend connection idle this long; keep it below the "
              "backend's keep-alive timeout" },
    { .name = "backend-pool-size", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_UINT, .min = 0, .max = SD_MAX_BACKEND_POOL_SIZE, .http_only = 1u << 2,
      .offset = L_OFF(backend_pool_size), .def = "16", .metavar = "N",
      .group = SD_GROUP_HTTP,
      .help = "idle backend connections kept for reuse, per worker and target; 0: none" },
    /* ---- The second factor (HTTP mode) */
    { .name = "api-keys", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_PATH,
      .http_only = 1u << 3, .offset = L_OFF(api_keys), .metavar = "FILE",
      .group = SD_GROUP_AUTH,
      .help = "API keys file (steeldoor apikey new): every request needs a key bound to "
              "its client certificate" },
    { .name = "api-key-header", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_STRING, .http_only = 1u << 4, .set = sd_config_key_set_api_key_header,
      .offset = L_OFF(api_key_header), .metavar = "NAME", .group = SD_GROUP_AUTH,
      .help = "header that carries the key (default: Authorization: Bearer KEY)" },
    { .name = "jwks", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_PATH,
      .http_only = 1u << 5, .offset = L_OFF(jwks), .metavar = "FILE",
      .group = SD_GROUP_AUTH,
      .help = "JWKS file: every request needs a JWT (Authorization: Bearer) signed by one "
              "of its keys and bound to the client certificate (RFC 8705); with api-keys, "
              "either credential" },
    { .name = "jwt-issuer", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_STRING,
      .http_only = 1u << 6, .offset = L_OFF(jwt_issuer), .metavar = "ISS",
      .group = SD_GROUP_AUTH, .help = "the tokens' required iss (required with jwks)" },
    { .name = "jwt-audience", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_STRING, .http_only = 1u << 7, .offset = L_OFF(jwt_audience),
      .metavar = "AUD", .group = SD_GROUP_AUTH,
      .help = "a value the tokens' aud must hold (required with jwks)" },
    { .name = "jwt-leeway", .where = BOTH, .scope = SD_SCOPE_LISTENER, .type = SD_KT_SECONDS,
      .http_only = 1u << 8, .offset = L_OFF(jwt_leeway_s), .def = "30s", .metavar = "DUR",
      .group = SD_GROUP_AUTH, .help = "clock skew allowed on exp and nbf (at most 5m)" },
    { .name = "forward-credentials", .where = BOTH, .scope = SD_SCOPE_LISTENER,
      .type = SD_KT_BOOL, .flag_sets = 1, .http_only = 1u << 9,
      .offset = L_OFF(forward_credentials), .def = "false", .group = SD_GROUP_AUTH,
      .help = "pass the key or token on to the backend (by default it is removed)" },
    /* ---- Process */
    { .name = "config", .where = SD_KEY_FLAG, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_SPECIAL, .metavar = "FILE", .group = SD_GROUP_PROCESS,
      .help = "YAML file with listeners (see docs/config.md)" },
    { .name = "listeners", .where = SD_KEY_YAML, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_SPECIAL, .group = SD_GROUP_PROCESS,
      .help = "one mapping per listener, with the listener keys" },
    { .name = "connectors", .where = SD_KEY_YAML, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_SPECIAL, .group = SD_GROUP_PROCESS,
      .help = "one mapping per connector (client mode), with the connector keys" },
    { .name = "workers", .where = BOTH, .scope = SD_SCOPE_PROCESS, .type = SD_KT_UINT,
      .min = 1, .max = SD_MAX_WORKERS, .set = sd_config_key_set_workers, .metavar = "N",
      .group = SD_GROUP_PROCESS, .help = "worker processes, default one per core" },
    { .name = "drain-timeout", .where = BOTH, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_DURATION, .offset = P_OFF(drain_timeout_ms), .def = "30s",
      .metavar = "DUR", .group = SD_GROUP_PROCESS,
      .help = "on SIGTERM, wait this long for connections" },
    { .name = "max-conns", .where = BOTH, .scope = SD_SCOPE_PROCESS, .type = SD_KT_UINT,
      .min = 1, .max = 1000000, .set = sd_config_key_set_max_conns, .def = "10000",
      .metavar = "N", .group = SD_GROUP_PROCESS, .help = "connections per worker" },
    { .name = "user", .where = BOTH, .scope = SD_SCOPE_PROCESS, .type = SD_KT_STRING,
      .offset = P_OFF(user), .metavar = "NAME[:GROUP]", .group = SD_GROUP_PROCESS,
      .help = "after binding, run as this account (start as root): no capabilities, no "
              "new privileges; reloads read the files as it" },
    { .name = "admin", .where = BOTH, .scope = SD_SCOPE_PROCESS, .type = SD_KT_STRING,
      .offset = P_OFF(admin), .metavar = "ADDR", .group = SD_GROUP_PROCESS,
      .help = "admin listener (/metrics, /healthz, /readyz, /status): 127.0.0.1:PORT, "
              "[::1]:PORT or unix:/path; mutual TLS on other addresses through the config "
              "file's admin: mapping (docs/operations.md)" },
    /* ---- Reload */
    { .name = "watch", .flag = "no-watch", .where = BOTH, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_BOOL, .flag_sets = 0, .offset = P_OFF(watch), .def = "true",
      .group = SD_GROUP_RELOAD, .help = "reload on SIGHUP only, not on file changes" },
    { .name = "close-revoked", .flag = "keep-revoked-connections", .where = BOTH,
      .scope = SD_SCOPE_PROCESS, .type = SD_KT_BOOL, .flag_sets = 0,
      .offset = P_OFF(close_revoked), .def = "true", .group = SD_GROUP_RELOAD,
      .help = "on reload, keep open connections whose client is no longer admitted "
              "(default: close them)" },
    { .name = "expiry-warning", .where = BOTH, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_SECONDS, .offset = P_OFF(expiry_warning_s), .def = "7d",
      .metavar = "DUR", .group = SD_GROUP_RELOAD,
      .help = "warn about certificates expiring within DUR, at load and every 12 hours" },
    { .name = "check", .where = SD_KEY_FLAG, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_SPECIAL, .group = SD_GROUP_RELOAD,
      .help = "load and check everything (files, keys against certificates, chains, rules, "
              "the --user account, that each address is this host's), print what would run "
              "and the start's warnings, and exit: 0 when it would start (binds nothing, so "
              "it can check a new configuration next to the running one)" },
    { .name = "help", .where = SD_KEY_FLAG, .scope = SD_SCOPE_PROCESS,
      .type = SD_KT_SPECIAL, .group = SD_GROUP_RELOAD, .help = "this text" },
};

const size_t sd_config_nkeys = sizeof(sd_config_keys) / sizeof(sd_config_keys[0]);

const struct sd_config_key *sd_config_key_yaml(const char *name, enum sd_key_scope scope)
{
    size_t i;

    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        if ((k->where & SD_KEY_YAML) && k->scope == scope && strcmp(k->name, name) == 0)
            return k;
    }
    return NULL;
}

int sd_config_key_for(const struct sd_config_key *k, int connector)
{
    if (k->scope != SD_SCOPE_LISTENER)
        return 1;
    return connector ? k->connector != SD_KEY_SERVE_ONLY : k->connector != SD_KEY_CONNECT_ONLY;
}

const char *sd_config_key_flag_name(const struct sd_config_key *k)
{
    return k->flag != NULL ? k->flag : k->name;
}

const struct sd_config_key *sd_config_key_flag(const char *flag)
{
    size_t i;

    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        if ((k->where & SD_KEY_FLAG) && strcmp(sd_config_key_flag_name(k), flag) == 0)
            return k;
    }
    return NULL;
}

/* YAML 1.1's words for yes and no that steeldoor has always taken. */
static int sd_config_key_bool(const char *what, const char *text, int *out,
                              struct sd_err *err)
{
    if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0) {
        *out = 0;
        return 0;
    }
    return sd_err_set(err, "%s: expected true or false", what);
}

int sd_config_key_apply(const struct sd_config_key *k, struct sd_config *cfg,
                        struct sd_listener_conf *l, const char *text, const char *what,
                        struct sd_err *err)
{
    union sd_config_value v;
    void *obj = k->scope == SD_SCOPE_LISTENER ? (void *)l : (void *)cfg;
    int rc = 0;

    if (obj == NULL)
        return sd_err_set(err, "%s: not a setting of this object", what);
    memset(&v, 0, sizeof(v));
    switch (k->type) {
    case SD_KT_STRING:
    case SD_KT_PATH:
        v.s = text;
        break;
    case SD_KT_DURATION:
        rc = sd_config_parse_duration(what, text, &v.u, err);
        break;
    case SD_KT_DURATION0:
        rc = sd_config_parse_duration_or_zero(what, text, &v.u, err);
        break;
    case SD_KT_SECONDS:
        rc = sd_config_parse_seconds(what, text, &v.u, err);
        break;
    case SD_KT_UINT:
        rc = sd_config_parse_uint(what, text, k->min, k->max, &v.u, err);
        break;
    case SD_KT_BOOL:
        rc = sd_config_key_bool(what, text, &v.b, err);
        break;
    case SD_KT_SPECIAL:
    default:
        return sd_err_set(err, "%s: cannot be set here", what);
    }
    if (rc != 0)
        return -1;
    if (k->set != NULL) {
        rc = k->set(obj, k, &v, what, err);
    } else {
        switch (k->type) {
        case SD_KT_STRING:
        case SD_KT_PATH:
            rc = sd_config_set_str((char **)(void *)((char *)obj + k->offset), v.s, err);
            break;
        case SD_KT_BOOL:
            memcpy((char *)obj + k->offset, &v.b, sizeof(v.b));
            break;
        default:
            memcpy((char *)obj + k->offset, &v.u, sizeof(v.u));
            break;
        }
    }
    /* Remembered whatever the value, so that sd_config_validate() can
     * refuse an HTTP setting on a tcp listener even when it repeats the
     * default: it was written, so someone expects it to do something. */
    if (rc == 0 && k->http_only != 0 && k->scope == SD_SCOPE_LISTENER)
        ((struct sd_listener_conf *)obj)->http_given |= k->http_only;
    return rc;
}

/* Levenshtein distance of a and b (each cut at 63 bytes), by rows. */
static size_t sd_config_key_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, 63), lb = strnlen(b, 63), i, j, row[64], prev, cur;

    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        prev = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            cur = row[j];
            row[j] = sub < row[j] + 1 ? sub : row[j] + 1;
            if (row[j - 1] + 1 < row[j])
                row[j] = row[j - 1] + 1;
            prev = cur;
        }
    }
    return row[lb];
}

const char *sd_config_key_nearest(const char *word, unsigned where, int scope, int role)
{
    const char *best = NULL;
    size_t i, bestd = SIZE_MAX, limit = strlen(word) / 3 + 1;

    if (limit > 3)
        limit = 3;
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];
        const char *name = (where & SD_KEY_FLAG) ? sd_config_key_flag_name(k) : k->name;
        size_t d, d2;

        if (!(k->where & where) || k->type == SD_KT_SPECIAL)
            continue;
        if (scope >= 0 && (int)k->scope != scope)
            continue;
        if (role >= 0 && k->scope == SD_SCOPE_LISTENER && !sd_config_key_for(k, role))
            continue;
        /* A key has two spellings (mode: http is --http): a word spelt
         * as the other one (--mode, http:) is the commonest slip. The
         * answer is in the spelling asked for. */
        d = sd_config_key_distance(word, k->name);
        d2 = sd_config_key_distance(word, sd_config_key_flag_name(k));
        if (d2 < d)
            d = d2;
        if (d < bestd) {
            bestd = d;
            best = name;
        }
    }
    return bestd <= limit ? best : NULL;
}
