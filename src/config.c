/* config.c - configuration defaults, value parsing and validation. */
#include "sd/config.h"

#include "sd/config_keys.h"
#include "sd/http_ident.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

const char *sd_config_mode_name(unsigned mode)
{
    return mode == SD_MODE_TCP       ? "tcp"
           : mode == SD_MODE_HTTP    ? "http"
           : mode == SD_MODE_CONNECT ? "connect"
           : mode == SD_MODE_ADMIN   ? "admin"
                                     : "?";
}

struct sd_config *sd_config_new(void)
{
    struct sd_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->workers = 0;
    cfg->drain_timeout_ms = SD_DEFAULT_DRAIN_TIMEOUT_MS;
    cfg->max_conns = SD_DEFAULT_MAX_CONNS;
    cfg->watch = 1;
    cfg->close_revoked = 1;
    cfg->expiry_warning_s = SD_DEFAULT_EXPIRY_WARNING_S;
    return cfg;
}

void sd_config_drop_listeners(struct sd_config *cfg)
{
    size_t i, c;

    for (i = 0; i < cfg->nlisteners; i++) {
        struct sd_listener_conf *l = &cfg->listeners[i];
        free(l->name);
        free(l->listen);
        free(l->target);
        free(l->cert);
        free(l->key);
        free(l->cacert);
        free(l->api_keys);
        free(l->api_key_header);
        free(l->jwks);
        free(l->jwt_issuer);
        free(l->jwt_audience);
        free(l->server_name);
        sd_policy_free(l->policy);
        for (c = 0; c < l->ncrls; c++)
            free(l->crls[c]);
        memset(l, 0, sizeof(*l));
    }
    cfg->nlisteners = 0;
}

void sd_config_free(struct sd_config *cfg)
{
    if (cfg == NULL)
        return;
    sd_config_drop_listeners(cfg);
    free(cfg->source);
    free(cfg->user);
    free(cfg->admin);
    free(cfg);
}

struct sd_listener_conf *sd_config_add_listener(struct sd_config *cfg,
                                                struct sd_err *err)
{
    struct sd_listener_conf *l;

    if (cfg->nlisteners >= SD_MAX_LISTENERS) {
        sd_err_set(err, "too many listeners (at most %d)", SD_MAX_LISTENERS);
        return NULL;
    }
    l = &cfg->listeners[cfg->nlisteners++];
    memset(l, 0, sizeof(*l));
    l->handshake_timeout_ms = SD_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    l->connect_timeout_ms = SD_DEFAULT_CONNECT_TIMEOUT_MS;
    l->idle_timeout_ms = SD_DEFAULT_IDLE_TIMEOUT_MS;
    l->session_lifetime_ms = SD_DEFAULT_SESSION_LIFETIME_MS;
    l->verify_depth = SD_DEFAULT_VERIFY_DEPTH;
    l->mode = SD_MODE_TCP;
    l->http_headers = SD_HTTP_H_DEFAULT;
    l->backend_idle_timeout_ms = SD_DEFAULT_BACKEND_IDLE_TIMEOUT_MS;
    l->backend_pool_size = SD_DEFAULT_BACKEND_POOL_SIZE;
    l->jwt_leeway_s = SD_DEFAULT_JWT_LEEWAY_S;
    l->listen_mode = SD_DEFAULT_LISTEN_MODE;
    l->warm_max_age_ms = SD_DEFAULT_WARM_MAX_AGE_MS;
    return l;
}

int sd_config_add_rule(struct sd_listener_conf *l, const char *word,
                       const char *value, struct sd_err *err)
{
    static const struct { const char *word; enum sd_rule_kind kind; } kinds[] = {
        { "allow-all", SD_RULE_ALL }, { "allow-uri", SD_RULE_URI },
        { "allow-dns", SD_RULE_DNS }, { "allow-cn", SD_RULE_CN },
        { "allow-ou", SD_RULE_OU }, { "allow-spki", SD_RULE_SPKI },
        /* a connector's rules on the server: the same matcher */
        { "verify-uri", SD_RULE_URI }, { "verify-dns", SD_RULE_DNS },
        { "verify-spki", SD_RULE_SPKI },
    };
    size_t i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(word, kinds[i].word) != 0)
            continue;
        if (l->policy == NULL && (l->policy = sd_policy_new()) == NULL)
            return sd_err_set(err, "out of memory");
        return sd_policy_add(l->policy, kinds[i].kind, value, err);
    }
    return sd_err_set(err, "unknown allow rule '%s'", word);
}

int sd_config_add_crl(struct sd_listener_conf *l, const char *path,
                      struct sd_err *err)
{
    if (l->ncrls >= SD_MAX_CRLS)
        return sd_err_set(err, "too many CRL files (at most %d)", SD_MAX_CRLS);
    l->crls[l->ncrls] = strdup(path);
    if (l->crls[l->ncrls] == NULL)
        return sd_err_set(err, "out of memory");
    l->ncrls++;
    return 0;
}

int sd_config_set_str(char **slot, const char *value, struct sd_err *err)
{
    char *copy = strdup(value);

    if (copy == NULL)
        return sd_err_set(err, "out of memory");
    free(*slot);
    *slot = copy;
    return 0;
}

/* Parses a duration into milliseconds, at most max_ms. */
static int sd_config_parse_ms(const char *what, const char *text, double max_ms,
                              double *ms, struct sd_err *err)
{
    char *end;
    double v, mult;

    /* Digits and one optional fraction only: strtod alone would also take
     * "nan", "inf", hex and exponents. */
    if (text[0] < '0' || text[0] > '9' || text[strspn(text, "0123456789.")] == 'e' ||
        strchr(text, 'x') != NULL)
        goto bad;
    errno = 0;
    v = strtod(text, &end);
    if (end == text || errno != 0 || v < 0)
        goto bad;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000.0;
    else if (strcmp(end, "ms") == 0)
        mult = 1.0;
    else if (strcmp(end, "m") == 0)
        mult = 60000.0;
    else if (strcmp(end, "h") == 0)
        mult = 3600000.0;
    else if (strcmp(end, "d") == 0)
        mult = 86400000.0;
    else
        goto bad;
    v *= mult;
    if (v < 1.0 || v > max_ms)
        return sd_err_set(err, "%s: '%s' is out of range (1ms to %.0fh)", what, text,
                          max_ms / 3600000.0);
    *ms = v;
    return 0;
bad:
    return sd_err_set(err, "%s: '%s' is not a duration (use e.g. 500ms, 10s, 5m, 2h, 7d)",
                      what, text);
}

int sd_config_parse_duration(const char *what, const char *text, uint32_t *ms,
                             struct sd_err *err)
{
    double v;

    if (sd_config_parse_ms(what, text, 86400000.0, &v, err) != 0)
        return -1;
    *ms = (uint32_t)v;
    return 0;
}

/* "0", "00", "0s", "0ms", ...: an explicit zero. */
static int sd_config_is_zero(const char *text)
{
    static const char *const units[] = { "", "ms", "s", "m", "h", "d" };
    size_t zeros = strspn(text, "0"), i;

    for (i = 0; zeros > 0 && zeros < 16 && i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(text + zeros, units[i]) == 0)
            return 1;
    return 0;
}

int sd_config_parse_seconds(const char *what, const char *text, uint32_t *s,
                            struct sd_err *err)
{
    double v;

    /* 0 is these settings' default (no CRL grace; warn only once expired),
     * so it can be written too. */
    if (sd_config_is_zero(text)) {
        *s = 0;
        return 0;
    }
    if (sd_config_parse_ms(what, text, 3650.0 * 86400000.0, &v, err) != 0)
        return -1;
    *s = (uint32_t)(v / 1000.0);
    return 0;
}

int sd_config_parse_uint(const char *what, const char *text, uint32_t min,
                         uint32_t max, uint32_t *out, struct sd_err *err)
{
    char *end;
    unsigned long v;

    errno = 0;
    if (text[0] == '-' || text[0] == '\0')
        goto bad;
    v = strtoul(text, &end, 10);
    if (*end != '\0' || errno != 0 || v < min || v > max)
        goto bad;
    *out = (uint32_t)v;
    return 0;
bad:
    return sd_err_set(err, "%s: '%s' must be a whole number from %u to %u",
                      what, text, min, max);
}

int sd_config_refuse_weakening(const char *name, struct sd_err *err)
{
    static const char *const words[] = {
        "client-auth", "verify-client", "verify", "optional", "plaintext",
        "plain", "no-tls", "insecure", "disable-authentication", "no-client-auth",
    };
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasecmp(name, words[i]) == 0 ||
            strncasecmp(name, "insecure", 8) == 0)
            return sd_err_set(err,
                "'%s': steeldoor has no optional client authentication and no "
                "plaintext listener; every connection must present a valid "
                "client certificate at the TLS handshake", name);
    }
    return 0;
}

/* A setting of HTTP mode on a tcp listener would do nothing: refused, so
 * that nobody believes a tcp listener sets identity headers. from_flags
 * says how to name the key and the switch in the message. */
static int sd_config_validate_mode(const struct sd_listener_conf *l, const char *where,
                                   int from_flags, struct sd_err *err)
{
    size_t i;

    if (l->mode == SD_MODE_HTTP)
        return 0;
    if (l->mode != SD_MODE_TCP && l->mode != SD_MODE_CONNECT)
        return sd_err_set(err, "%s: unknown mode %u", where, (unsigned)l->mode);
    for (i = 0; i < sd_config_nkeys; i++) {
        const struct sd_config_key *k = &sd_config_keys[i];

        if ((k->http_only & l->http_given) == 0)
            continue;
        if (from_flags)
            return sd_err_set(err, "%s: --%s needs --http (it is a setting of HTTP mode; "
                              "this listener passes bytes through)", where, k->name);
        return sd_err_set(err, "%s: %s needs mode: http (it is a setting of HTTP mode; "
                          "this listener passes bytes through)", where, k->name);
    }
    return 0;
}

/* The second factor's settings hang together: tokens need the issuer and
 * audience they are checked against (a token minted by the same issuer for
 * another service must not pass here), and no setting of a factor is
 * accepted without the factor's file. */
static int sd_config_validate_auth(const struct sd_listener_conf *l, const char *where,
                                   int from_flags, struct sd_err *err)
{
    const char *pre = from_flags ? "--" : "";

    if (l->jwks != NULL && (l->jwt_issuer == NULL || l->jwt_audience == NULL))
        return sd_err_set(err, "%s: %sjwks needs %sjwt-issuer and %sjwt-audience (the "
                          "tokens' iss and aud are always checked)", where, pre, pre, pre);
    if (l->jwks == NULL && (l->jwt_issuer != NULL || l->jwt_audience != NULL ||
                            (l->http_given & (1u << 8)) != 0))
        return sd_err_set(err, "%s: %sjwt-issuer, %sjwt-audience and %sjwt-leeway need "
                          "%sjwks", where, pre, pre, pre, pre);
    if (l->api_keys == NULL && l->api_key_header != NULL)
        return sd_err_set(err, "%s: %sapi-key-header needs %sapi-keys", where, pre, pre);
    if (l->api_keys == NULL && l->jwks == NULL && l->forward_credentials)
        return sd_err_set(err, "%s: %sforward-credentials needs %sapi-keys or %sjwks", where,
                          pre, pre, pre);
    if (l->jwt_leeway_s > SD_MAX_JWT_LEEWAY_S)
        return sd_err_set(err, "%s: %sjwt-leeway: at most %us", where, pre,
                          SD_MAX_JWT_LEEWAY_S);
    if (l->jwt_issuer != NULL && l->jwt_issuer[0] == '\0')
        return sd_err_set(err, "%s: %sjwt-issuer is empty", where, pre);
    if (l->jwt_audience != NULL && l->jwt_audience[0] == '\0')
        return sd_err_set(err, "%s: %sjwt-audience is empty", where, pre);
    return 0;
}

/* Is a a loopback address (127.0.0.0/8, ::1, ::ffff:127.x) or a unix
 * socket: a plaintext port only this host can reach? */
static int sd_config_local_only(const struct sd_addr *a)
{
    if (a->ss.ss_family == AF_UNIX)
        return 1;
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss.ss_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(in6);
    }
    return 0;
}

/* A connector: plaintext in, mutual TLS out. Its listen address must be
 * loopback or a unix socket, its server identified (a name or rules). */
static int sd_config_validate_connector(struct sd_listener_conf *l, const char *where,
                                        int from_flags, struct sd_err *err)
{
    const char *pre = from_flags ? "--" : "";
    struct sd_err sub;

    if (l->target == NULL)
        return sd_err_set(err, "%s: missing target (%starget HOST:PORT)", where, pre);
    if (l->cert == NULL || l->key == NULL)
        return sd_err_set(err, "%s: missing client certificate and key (%scert, %skey): "
                          "a connector always presents one", where, pre, pre);
    if (l->cacert == NULL)
        return sd_err_set(err, "%s: missing CA bundle for the server's certificate "
                          "(%scacert); the server is always verified", where, pre);
    if (sd_policy_check(l->policy, &sub) != 0 && l->policy != NULL)
        return sd_err_set(err, "%s: %s", where, sub.msg);
    if (sd_addr_parse(l->listen, 1, &l->listen_addr, &sub) != 0)
        return sd_err_set(err, "%s: listen: %s", where, sub.msg);
    if (l->listen_addr.ss.ss_family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&l->listen_addr.ss)->sin6_addr))
        return sd_err_set(err, "%s: listen %s is an IPv4-mapped IPv6 address, which steeldoor "
                          "does not listen on (its IPv6 sockets are IPv6-only): write the "
                          "IPv4 address (127.0.0.1:PORT)", where, l->listen);
    if (!sd_config_local_only(&l->listen_addr))
        return sd_err_set(err, "%s: listen %s is not a loopback address or a unix socket: "
                          "a connector accepts plaintext, and a plaintext port on the "
                          "network is the wooden door steeldoor exists to remove (use "
                          "127.0.0.1:PORT, [::1]:PORT or unix:/path)", where, l->listen);
    if (sd_addr_parse(l->target, 0, &l->target_addr, &sub) != 0)
        return sd_err_set(err, "%s: target: %s", where, sub.msg);
    if (l->server_name == NULL) {
        /* The target's host as written: "[v6]:port" gives the v6 text. */
        char host[256];
        const char *t = l->target, *end = strrchr(t, ':');
        size_t n;
        if (t[0] == '[') {
            t++;
            end = strchr(t, ']');
        }
        n = end != NULL ? (size_t)(end - t) : strlen(t);
        if (n == 0 || n >= sizeof(host))
            return sd_err_set(err, "%s: target: no host name to verify", where);
        memcpy(host, t, n);
        host[n] = '\0';
        if (sd_config_set_str(&l->server_name, host, err) != 0)
            return -1;
    }
    if (l->server_name[0] == '\0')
        return sd_err_set(err, "%s: server-name is empty", where);
    if (l->name == NULL && sd_config_set_str(&l->name, l->listen, err) != 0)
        return -1;
    return 0;
}

/* The admin listener: no back door either. Without a certificate it is
 * plaintext, so it may listen only where only this host reaches it; with
 * one it is mutual TLS like any listener (its own CA and allow rules, deny
 * by default), and may listen anywhere. Half a TLS setup is refused rather
 * than served in plaintext. */
static int sd_config_validate_admin(struct sd_listener_conf *l, int from_flags,
                                    struct sd_err *err)
{
    const char *pre = from_flags ? "--admin: " : "admin: ";
    int tls = l->cert != NULL || l->key != NULL || l->cacert != NULL;
    struct sd_err sub;

    if (l->target != NULL)
        return sd_err_set(err, "%shas no target (it answers /metrics, /healthz, /readyz "
                          "and /status itself)", pre);
    if (sd_addr_parse(l->listen, 1, &l->listen_addr, &sub) != 0)
        return sd_err_set(err, "%slisten: %s", pre, sub.msg);
    if (l->listen_addr.ss.ss_family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&l->listen_addr.ss)->sin6_addr))
        return sd_err_set(err, "%s%s is an IPv4-mapped IPv6 address, which steeldoor does "
                          "not listen on: write the IPv4 address (127.0.0.1:PORT)", pre,
                          l->listen);
    if (tls) {
        if (l->cert == NULL || l->key == NULL || l->cacert == NULL)
            return sd_err_set(err, "%smutual TLS needs cert, key and cacert together (the "
                              "admin listener never serves plaintext on an address a "
                              "certificate was meant to protect)", pre);
        if (sd_policy_check(l->policy, &sub) != 0)
            return sd_err_set(err, "%s%s", pre, sub.msg);
    } else {
        if (sd_policy_count(l->policy) > 0 || l->ncrls > 0)
            return sd_err_set(err, "%sallow rules and CRLs judge client certificates: they "
                              "need cert, key and cacert (mutual TLS)", pre);
        if (!sd_config_local_only(&l->listen_addr))
            return sd_err_set(err, "%slisten %s is not a loopback address or a unix socket: "
                              "a plaintext admin port on the network would be a back door "
                              "(use 127.0.0.1:PORT, [::1]:PORT or unix:/path, or give it "
                              "cert, key, cacert and allow rules in the config file's "
                              "admin: mapping for mutual TLS)", pre, l->listen);
    }
    if (l->name == NULL || strcmp(l->name, SD_ADMIN_NAME) != 0)
        return sd_config_set_str(&l->name, SD_ADMIN_NAME, err);
    return 0;
}

/* --admin ADDR (or `admin: ADDR`) becomes the admin listener, once. */
static int sd_config_add_admin(struct sd_config *cfg, struct sd_err *err)
{
    struct sd_listener_conf *l;
    size_t i;

    if (cfg->admin == NULL)
        return 0;
    for (i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].mode == SD_MODE_ADMIN)
            return sd_err_set(err, "admin is given twice (the --admin flag or admin: "
                              "address, and an admin: mapping)");
    if ((l = sd_config_add_listener(cfg, err)) == NULL)
        return -1;
    l->mode = SD_MODE_ADMIN;
    l->listen = cfg->admin;
    cfg->admin = NULL;
    return sd_config_set_str(&l->name, SD_ADMIN_NAME, err);
}

static int sd_config_validate_listener(struct sd_listener_conf *l, size_t idx,
                                       int from_flags, struct sd_err *err)
{
    struct sd_err sub;
    char where[64];

    if (l->listen == NULL) {
        if (l->name != NULL)
            return sd_err_set(err, "%s %s: missing listen address (%slisten)",
                              l->mode == SD_MODE_CONNECT ? "connector" : "listener", l->name,
                              from_flags ? "--" : "");
        return sd_err_set(err, "%s %zu: missing listen address (%slisten)",
                          l->mode == SD_MODE_ADMIN ? "admin" : "listener", idx + 1,
                          from_flags ? "--" : "");
    }
    if (l->mode == SD_MODE_ADMIN)
        return sd_config_validate_admin(l, from_flags, err);
    if (l->mode == SD_MODE_CONNECT) {
        snprintf(where, sizeof(where), "connector %s", l->name ? l->name : l->listen);
        return sd_config_validate_connector(l, where, from_flags, err);
    }
    snprintf(where, sizeof(where), "listener %s", l->name ? l->name : l->listen);
    if (l->target == NULL)
        return sd_err_set(err, "%s: missing target (--target)", where);
    if (l->cert == NULL)
        return sd_err_set(err, "%s: missing server certificate (--cert)", where);
    if (l->key == NULL)
        return sd_err_set(err, "%s: missing server private key (--key)", where);
    if (l->cacert == NULL)
        return sd_err_set(err, "%s: missing CA bundle for client certificates "
                          "(--cacert); client certificates are always required", where);
    if (sd_policy_check(l->policy, &sub) != 0)
        return sd_err_set(err, "%s: %s", where, sub.msg);
    if (sd_config_validate_mode(l, where, from_flags, err) != 0 ||
        sd_config_validate_auth(l, where, from_flags, err) != 0)
        return -1;
    if (sd_addr_parse(l->listen, 0, &l->listen_addr, &sub) != 0)
        return sd_err_set(err, "%s: listen: %s", where, sub.msg);
    if (sd_addr_parse(l->target, 1, &l->target_addr, &sub) != 0)
        return sd_err_set(err, "%s: target: %s", where, sub.msg);
    if (l->name == NULL && sd_config_set_str(&l->name, l->listen, err) != 0)
        return -1;
    return 0;
}

void sd_config_where(const struct sd_config *cfg, const struct sd_listener_conf *lc,
                     struct sd_err *err)
{
    const char *kind = lc->mode == SD_MODE_CONNECT ? "connector"
                       : lc->mode == SD_MODE_ADMIN ? "admin listener" : "listener";
    char where[SD_ERR_MAX];

    if (cfg->source != NULL && lc->line > 0)
        snprintf(where, sizeof(where), "%s line %u: %s %s", cfg->source, lc->line, kind,
                 lc->name);
    else if (cfg->source != NULL)
        snprintf(where, sizeof(where), "%s: %s %s", cfg->source, kind, lc->name);
    else
        snprintf(where, sizeof(where), "%s %s", kind, lc->name);
    sd_err_prefix(err, where);
}

int sd_config_validate(struct sd_config *cfg, struct sd_err *err)
{
    size_t i, j, nadmin = 0;

    if (sd_config_add_admin(cfg, err) != 0)
        goto fail;
    for (i = 0; i < cfg->nlisteners; i++)
        nadmin += cfg->listeners[i].mode == SD_MODE_ADMIN;
    if (nadmin > 1) {
        sd_err_set(err, "admin is given twice");
        goto fail;
    }
    if (cfg->nlisteners == nadmin) {
        sd_err_set(err, "no listener configured (use --listen ... or --config FILE)");
        goto fail;
    }
    for (i = 0; i < cfg->nlisteners; i++) {
        if (sd_config_validate_listener(&cfg->listeners[i], i, cfg->source == NULL, err) != 0) {
            /* "FILE line N: listener NAME: ...": where it is written */
            if (cfg->source != NULL && cfg->listeners[i].line > 0) {
                char where[SD_ERR_MAX];
                snprintf(where, sizeof(where), "%s line %u", cfg->source,
                         cfg->listeners[i].line);
                return sd_err_prefix(err, where);
            }
            goto fail;
        }
    }
    for (i = 0; i < cfg->nlisteners; i++) {
        for (j = i + 1; j < cfg->nlisteners; j++) {
            if (strcmp(cfg->listeners[i].name, cfg->listeners[j].name) == 0) {
                sd_err_set(err, "listener name '%s' is used twice", cfg->listeners[i].name);
                goto fail;
            }
            if (sd_net_same_addr(&cfg->listeners[i].listen_addr,
                                 &cfg->listeners[j].listen_addr)) {
                sd_err_set(err, "listeners %s and %s both listen on %s",
                           cfg->listeners[i].name, cfg->listeners[j].name,
                           cfg->listeners[j].listen);
                goto fail;
            }
        }
    }
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n < 1 ? 1 : (n > SD_MAX_WORKERS ? SD_MAX_WORKERS : (int)n);
    }
    return 0;
fail:
    if (cfg->source != NULL)
        sd_err_prefix(err, cfg->source);
    return -1;
}

static void sd_config_feed_str(void (*feed)(void *, const void *, size_t), void *arg,
                               const char *tag, const char *s)
{
    uint32_t n = s != NULL ? (uint32_t)strlen(s) : UINT32_MAX;

    feed(arg, tag, strlen(tag) + 1);
    feed(arg, &n, sizeof(n));
    if (s != NULL)
        feed(arg, s, n);
}

static void sd_config_feed_u32(void (*feed)(void *, const void *, size_t), void *arg,
                               const char *tag, uint32_t v)
{
    feed(arg, tag, strlen(tag) + 1);
    feed(arg, &v, sizeof(v));
}

void sd_config_admission(const struct sd_listener_conf *l,
                         void (*feed)(void *arg, const void *p, size_t n), void *arg)
{
    size_t i;

    /* A new field in sd_listener_conf must be sorted here: does it change
     * who is admitted? If so, feed it below; if not, add it to the list of
     * fields left out. This assertion fails the build until that is done
     * (and tests/unit/test_admission.c enumerates every config key). */
#if UINTPTR_MAX == UINT64_MAX /* the layout below is LP64's */
    _Static_assert(sizeof(struct sd_listener_conf) == 1480 &&
                       offsetof(struct sd_listener_conf, listen_addr) == 952,
                   "sd_listener_conf changed: decide in sd_config_admission() whether "
                   "the new field affects admission, then update this size");
#endif
    sd_config_feed_str(feed, arg, "name", l->name);
    sd_config_feed_str(feed, arg, "listen", l->listen);
    sd_config_feed_str(feed, arg, "cacert", l->cacert);
    for (i = 0; i < sd_policy_count(l->policy); i++)
        sd_config_feed_str(feed, arg, "rule", sd_policy_rule_text(l->policy, i));
    for (i = 0; i < l->ncrls; i++)
        sd_config_feed_str(feed, arg, "crl", l->crls[i]);
    sd_config_feed_u32(feed, arg, "crl-grace", l->crl_grace_s);
    sd_config_feed_u32(feed, arg, "verify-depth", l->verify_depth);
    sd_config_feed_u32(feed, arg, "session-lifetime", l->session_lifetime_ms);
    /* A connector's server name decides which server it admits. */
    sd_config_feed_str(feed, arg, "server-name", l->server_name);
    /* Left out: target, cert, key (the server's side), proxy_protocol,
     * handshake/connect/idle timeouts, the parsed addresses (derived from
     * listen and target), and HTTP mode's settings (mode, http_given,
     * http_headers, backend idle timeout and pool size): they change what
     * the backend is told about an admitted client, never who is admitted.
     * A session made while the listener was in one mode resumes in the
     * other with the identity its full handshake verified. The second
     * factor (api-keys, jwks and their settings) is judged on every
     * request against the current generation, never at the handshake, so
     * a change to it needs no new session either. A connector's
     * listen-mode is its socket file's permissions, line where the file
     * declares it, and warm and
     * warm-max-age how many of its connections are made ahead: not
     * admissions (a warm connection is verified by its own handshake).
     * alpn names the protocols the TLS layer may select (or a connector
     * offers), never who is admitted; OpenSSL negotiates ALPN again in
     * every handshake, resumed ones included, so a session made under one
     * list resumes under another with the new list's choice. */
}

int sd_config_parse_duration_or_zero(const char *what, const char *text, uint32_t *ms,
                                     struct sd_err *err)
{
    if (sd_config_is_zero(text)) {
        *ms = 0;
        return 0;
    }
    return sd_config_parse_duration(what, text, ms, err);
}
