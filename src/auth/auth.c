/*
 * auth.c - the second factor of an HTTP listener (see sd/auth.h): finds
 * the credential of a request, verifies it (src/auth/apikeys.c,
 * src/auth/jwt.c), and checks it is bound to the client certificate the
 * handshake verified.
 *
 * Includes OpenSSL only for OPENSSL_cleanse (a remembered credential is
 * wiped when forgotten). The per-connection cache compares a presented
 * credential with the remembered one in constant time (sd_auth_same), so
 * how long a mismatch takes says nothing about the remembered bytes.
 */
#include "sd/auth.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd/apikeys.h"
#include "sd/config.h"
#include "sd/files.h"
#include "sd/jwt.h"
#include "sd/log.h"

struct sd_auth {
    struct sd_apikeys *keys;    /* NULL: no API keys */
    struct sd_jwks *jwks;       /* NULL: no tokens */
    char *key_header;           /* NULL: keys arrive as Authorization: Bearer */
    char *issuer, *audience;
    struct sd_jwt_rules rules;
    int forward;
    char ch_missing[160];       /* WWW-Authenticate values */
    char ch_invalid[192];
    char ch_request[192];
};

/* ------------------------------------------------------------ building */

/* Can anyone but root and us change what is in directory `dir` (or swap
 * the directory itself, through its parent: the caller checks each
 * ancestor)? Owned by root or us, and not writable by group or others
 * unless sticky (in /tmp, others cannot rename or remove our entries).
 * Returns 0, or -1 with err. */
static int sd_auth_dir_trusted(const char *what, const char *path, const char *dir,
                               struct sd_err *err)
{
    unsigned me = (unsigned)geteuid();
    struct stat st;

    if (stat(dir, &st) != 0)
        return sd_err_set(err, "%s: %s: cannot check directory %s: %s", what, path, dir,
                          strerror(errno));
    if ((st.st_uid != 0 && (unsigned)st.st_uid != me) ||
        ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0))
        return sd_err_set(err, "%s: %s: directory %s can be changed by others (owner uid %u, "
                          "mode %03o): they could replace the file; keep it where only root "
                          "or steeldoor can write, up to /", what, path, dir,
                          (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* Checks every directory from the one holding `abs` (absolute, no ".."
 * processing needed: realpath output, or a path checked as written) up to
 * "/". When `follow` is set, a directory component that is a symlink also
 * has its target's directories checked (a link in a trusted directory to
 * a place others control would redirect the file). */
static int sd_auth_chain_trusted(const char *what, const char *path, const char *abs,
                                 int follow, int depth, struct sd_err *err)
{
    char dir[PATH_MAX], real[PATH_MAX];
    size_t n = strlen(abs);
    struct stat st;

    if (n >= sizeof(dir) || depth > 8)
        return sd_err_set(err, "%s: %s: path too long or too many links to check", what, path);
    memcpy(dir, abs, n + 1);
    for (;;) {
        char *slash = strrchr(dir, '/');

        if (slash == NULL)
            return 0;
        if (slash == dir) {
            dir[1] = '\0';
            return sd_auth_dir_trusted(what, path, dir, err);
        }
        *slash = '\0';
        if (follow && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
            if (realpath(dir, real) == NULL)
                return sd_err_set(err, "%s: %s: cannot resolve %s: %s", what, path, dir,
                                  strerror(errno));
            if (sd_auth_dir_trusted(what, path, real, err) != 0 ||
                sd_auth_chain_trusted(what, path, real, 1, depth + 1, err) != 0)
                return -1;
        }
        if (sd_auth_dir_trusted(what, path, dir, err) != 0)
            return -1;
    }
}

/* Reads a second-factor file through the snapshot. Whoever can change it
 * can add a credential, and that is the whole factor: so (checked by the
 * master, which reads the disk; the workers replay what it validated) the
 * file must be a regular file owned by root or by steeldoor's own account,
 * writable by nobody else, and nobody else may be able to replace it: every
 * directory up to / of the path as written (with the targets of symlinks
 * on the way) and of the file's real path is owned by root or us and not
 * writable by others unless sticky (like OpenSSH's StrictModes). */
static int sd_auth_file(struct sd_files *files, const char *what, const char *path,
                        const struct sd_file **out, struct sd_err *err)
{
    const struct sd_file *f;
    unsigned me = (unsigned)geteuid();
    char abs[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX];

    if (sd_files_get(files, path, &f, err) != 0)
        return sd_err_prefix(err, what);
    if (f->kind != SD_FILE_REG)
        return sd_err_set(err, "%s: %s: not a regular file", what, path);
    *out = f;
    if (sd_files_frozen(files))
        return 0;
    if ((f->mode & 022) != 0)
        return sd_err_set(err, "%s: %s is writable by group or others (mode %03o): whoever "
                          "can write it can add a credential; run chmod go-w %s", what, path,
                          f->mode & 0777, path);
    if (f->uid != 0 && f->uid != me)
        return sd_err_set(err, "%s: %s is owned by uid %u: whoever owns it can add a "
                          "credential; it must belong to root or to steeldoor's account "
                          "(uid %u)", what, path, f->uid, me);
    if (path[0] == '/') {
        if (strlen(path) >= sizeof(abs))
            return sd_err_set(err, "%s: %s: path too long", what, path);
        snprintf(abs, sizeof(abs), "%s", path);
    } else {
        if (getcwd(cwd, sizeof(cwd)) == NULL ||
            (size_t)snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >= sizeof(abs))
            return sd_err_set(err, "%s: %s: cannot make the path absolute", what, path);
    }
    if (realpath(path, real) == NULL)
        return sd_err_set(err, "%s: %s: %s", what, path, strerror(errno));
    if (sd_auth_chain_trusted(what, path, abs, 1, 0, err) != 0 ||
        sd_auth_chain_trusted(what, path, real, 0, 0, err) != 0)
        return -1;
    return 0;
}

static void sd_auth_jwks_warn(void *arg, const char *text)
{
    (void)arg;
    sd_log_msg("warn", "config", "%s", text);
}

int sd_auth_new(const struct sd_listener_conf *lc, struct sd_files *files,
                struct sd_auth **out, struct sd_err *err)
{
    struct sd_auth *a;
    const struct sd_file *f;
    int quiet = sd_files_frozen(files);
    int bearer;

    *out = NULL;
    if (lc->api_keys == NULL && lc->jwks == NULL)
        return 0;
    if ((a = calloc(1, sizeof(*a))) == NULL)
        return sd_err_set(err, "out of memory");
    a->forward = lc->forward_credentials;
    if (lc->api_keys != NULL) {
        if (sd_auth_file(files, "api-keys", lc->api_keys, &f, err) != 0 ||
            sd_apikeys_parse(f->path, f->data, f->len, &a->keys, err) != 0)
            goto fail;
        if (!quiet && sd_apikeys_count(a->keys) == 0)
            sd_log_msg("warn", "config", "%s: no API key in this file: every request to "
                       "listener %s without a token is refused (steeldoor apikey new)",
                       lc->api_keys, lc->name);
        if (lc->api_key_header != NULL && (a->key_header = strdup(lc->api_key_header)) == NULL)
            goto oom;
    }
    if (lc->jwks != NULL) {
        if (sd_auth_file(files, "jwks", lc->jwks, &f, err) != 0 ||
            sd_jwks_parse(f->path, f->data, f->len, &a->jwks, quiet ? NULL : sd_auth_jwks_warn,
                          NULL, err) != 0)
            goto fail;
        if ((a->issuer = strdup(lc->jwt_issuer)) == NULL ||
            (a->audience = strdup(lc->jwt_audience)) == NULL)
            goto oom;
        a->rules.issuer = a->issuer;
        a->rules.audience = a->audience;
        a->rules.leeway_s = lc->jwt_leeway_s;
    }
    /* RFC 6750 section 3 challenges; a key in a header of its own has no
     * registered scheme, so the challenge names the header instead. */
    bearer = a->jwks != NULL || a->key_header == NULL;
    if (bearer) {
        snprintf(a->ch_missing, sizeof(a->ch_missing), "Bearer realm=\"steeldoor\"");
        snprintf(a->ch_invalid, sizeof(a->ch_invalid),
                 "Bearer realm=\"steeldoor\", error=\"invalid_token\"");
        snprintf(a->ch_request, sizeof(a->ch_request),
                 "Bearer realm=\"steeldoor\", error=\"invalid_request\"");
    } else {
        snprintf(a->ch_missing, sizeof(a->ch_missing), "ApiKey realm=\"steeldoor\", header=\"%s\"",
                 a->key_header);
        snprintf(a->ch_invalid, sizeof(a->ch_invalid),
                 "ApiKey realm=\"steeldoor\", header=\"%s\", error=\"invalid_key\"", a->key_header);
        snprintf(a->ch_request, sizeof(a->ch_request),
                 "ApiKey realm=\"steeldoor\", header=\"%s\", error=\"invalid_request\"",
                 a->key_header);
    }
    *out = a;
    return 0;
oom:
    sd_err_set(err, "out of memory");
fail:
    sd_auth_free(a);
    return -1;
}

void sd_auth_free(struct sd_auth *a)
{
    if (a == NULL)
        return;
    sd_apikeys_free(a->keys);
    sd_jwks_free(a->jwks);
    free(a->key_header);
    free(a->issuer);
    free(a->audience);
    free(a);
}

int sd_auth_forwards(const struct sd_auth *a)
{
    return a != NULL && a->forward;
}

void sd_auth_cache_fini(struct sd_auth_cache *cache)
{
    if (cache->cred != NULL) {
        OPENSSL_cleanse(cache->cred, cache->credlen);
        free(cache->cred);
    }
    memset(cache, 0, sizeof(*cache));
}

/* ------------------------------------------------------------- judging */

static int sd_auth_lower(unsigned char ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

/* 1 when n is `word` in any case. */
static int sd_auth_word(struct sd_name n, const char *word)
{
    size_t i, len = strlen(word);

    if (n.len != len)
        return 0;
    for (i = 0; i < len; i++)
        if (sd_auth_lower((unsigned char)n.s[i]) != (unsigned char)word[i])
            return 0;
    return 1;
}

/* Byte classes, one table lookup per byte: the token68 check runs over
 * every credential of every request (a token is hundreds of bytes). */
enum { SD_AUTH_TCHAR = 1, SD_AUTH_T68 = 2 };

static const uint8_t sd_auth_class[256] = {
#define T SD_AUTH_TCHAR
#define B (SD_AUTH_TCHAR | SD_AUTH_T68)
    ['!'] = T, ['#'] = T, ['$'] = T, ['%'] = T, ['&'] = T, ['\''] = T, ['*'] = T,
    ['+'] = B, ['-'] = B, ['.'] = B, ['^'] = T, ['_'] = B, ['`'] = T, ['|'] = T, ['~'] = B,
    ['/'] = SD_AUTH_T68,
    ['0'] = B, ['1'] = B, ['2'] = B, ['3'] = B, ['4'] = B, ['5'] = B, ['6'] = B, ['7'] = B,
    ['8'] = B, ['9'] = B,
    ['A'] = B, ['B'] = B, ['C'] = B, ['D'] = B, ['E'] = B, ['F'] = B, ['G'] = B, ['H'] = B,
    ['I'] = B, ['J'] = B, ['K'] = B, ['L'] = B, ['M'] = B, ['N'] = B, ['O'] = B, ['P'] = B,
    ['Q'] = B, ['R'] = B, ['S'] = B, ['T'] = B, ['U'] = B, ['V'] = B, ['W'] = B, ['X'] = B,
    ['Y'] = B, ['Z'] = B,
    ['a'] = B, ['b'] = B, ['c'] = B, ['d'] = B, ['e'] = B, ['f'] = B, ['g'] = B, ['h'] = B,
    ['i'] = B, ['j'] = B, ['k'] = B, ['l'] = B, ['m'] = B, ['n'] = B, ['o'] = B, ['p'] = B,
    ['q'] = B, ['r'] = B, ['s'] = B, ['t'] = B, ['u'] = B, ['v'] = B, ['w'] = B, ['x'] = B,
    ['y'] = B, ['z'] = B,
#undef T
#undef B
};

/* RFC 9110 tchar: what an auth-scheme is made of. */
static int sd_auth_tchar(unsigned char ch)
{
    return (sd_auth_class[ch] & SD_AUTH_TCHAR) != 0;
}

/* token68 (RFC 9110 11.2): what a Bearer credential is made of. */
static int sd_auth_token68(struct sd_name c)
{
    const unsigned char *p = (const unsigned char *)c.s;
    size_t i = 0;

    while (i < c.len && (sd_auth_class[p[i]] & SD_AUTH_T68) != 0)
        i++;
    if (i == 0)
        return 0;
    while (i < c.len && p[i] == '=')
        i++;
    return i == c.len;
}

/* How an Authorization value reads: not Bearer (*c untouched: another
 * scheme, the backend's), or Bearer with the credential in *c. The scheme
 * ends at the first byte that is not a tchar, as every parser reads it, so
 * "Bearer\tX" or "Bearer\xa0X" is Bearer too (a backend splitting on any
 * whitespace reads X as the token). *strict is 1 when the value is exactly
 * "Bearer" 1*SP token68 (RFC 6750 2.1); a Bearer value that is not is
 * returned whole as its credential, which then fails verification (401)
 * rather than being taken for "no credential" or handed to the backend. */
static int sd_auth_bearer(struct sd_name v, struct sd_name *c, int *strict)
{
    size_t i = 0, j;

    while (i < v.len && sd_auth_tchar((unsigned char)v.s[i]))
        i++;
    if (!sd_auth_word((struct sd_name){ v.s, i }, "bearer"))
        return 0;
    j = i;
    while (j < v.len && v.s[j] == ' ')
        j++;
    c->s = v.s + j;
    c->len = v.len - j;
    *strict = j > i && sd_auth_token68(*c);
    if (!*strict)
        *c = v;
    return 1;
}

/* Is c a JWT rather than an API key? A JWS compact serialisation has dots;
 * a key (sdk_ + base64url) never does. */
static int sd_auth_looks_jwt(struct sd_name c)
{
    return c.len > 0 && memchr(c.s, '.', c.len) != NULL;
}

static void sd_auth_refuse(struct sd_auth_result *res, int status, const char *why,
                           const char *challenge)
{
    res->status = status;
    res->why = why;
    res->challenge = challenge;
}

/* 1 when the n bytes at a and b are equal, in time that depends on n only:
 * the OR of their XOR, eight bytes at a time (CRYPTO_memcmp goes byte by
 * byte: an 8 KiB token would cost microseconds on every request). */
static int sd_auth_same(const char *a, const char *b, size_t n)
{
    uint64_t acc = 0, x, y;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        acc |= x ^ y;
    }
    for (; i < n; i++)
        acc |= (uint64_t)((unsigned char)a[i] ^ (unsigned char)b[i]);
    return acc == 0;
}

/* Remembers a verified credential for the connection's next requests. */
static int sd_auth_remember(struct sd_auth_cache *cache, const struct sd_auth_request *rq,
                            enum sd_auth_kind kind, struct sd_name cred, const void *entry,
                            int64_t expires, const char *who)
{
    sd_auth_cache_fini(cache);
    if ((cache->cred = malloc(cred.len)) == NULL)
        return -1;
    memcpy(cache->cred, cred.s, cred.len);
    cache->credlen = cred.len;
    cache->gen = rq->gen;
    cache->entry = entry;
    cache->kind = (uint8_t)kind;
    cache->expires = expires;
    snprintf(cache->who, sizeof(cache->who), "%s", who);
    return 0;
}

/* An API key, looked up (or remembered) and checked. */
static int sd_auth_key(const struct sd_auth *a, struct sd_auth_cache *cache,
                       const struct sd_auth_request *rq, struct sd_name cred,
                       struct sd_auth_result *res)
{
    const struct sd_apikey *e;

    if (cache->kind == SD_AUTH_KEY && cache->gen == rq->gen && cache->credlen == cred.len &&
        sd_auth_same(cache->cred, cred.s, cred.len)) {
        e = cache->entry;
    } else {
        e = sd_apikeys_find(a->keys, cred.s, cred.len);
        if (e == NULL) {
            sd_auth_refuse(res, 401, "apikey_unknown", a->ch_invalid);
            return 0;
        }
        if (e->revoked != 0) {
            sd_auth_refuse(res, 401, "apikey_revoked", a->ch_invalid);
            res->who = e->id;
            return 0;
        }
        /* Bound to this certificate? Checked before expiry and paths: a
         * key from the wrong certificate is the signal worth a warning. */
        if (sd_policy_match(e->bind, &rq->peer->cert->id) < 0) {
            sd_auth_refuse(res, 403, "apikey_not_bound", NULL);
            res->stolen = 1;
            res->who = e->id;
            res->binds = e->binds;
            res->nbinds = e->nbinds;
            return 0;
        }
        if (sd_auth_remember(cache, rq, SD_AUTH_KEY, cred, e, e->expires, e->id) != 0)
            return -1;
    }
    res->who = cache->who;
    if (e->expires != 0 && rq->now_s >= e->expires) {
        sd_auth_refuse(res, 401, "apikey_expired", a->ch_invalid);
        sd_auth_cache_fini(cache);
        res->who = e->id;
        return 0;
    }
    if (!sd_apikey_path_ok(e, rq->target.s, rq->target.len)) {
        sd_auth_refuse(res, 403, "apikey_path_denied", NULL);
        return 0;
    }
    return 0;
}

/* A token, verified (or remembered) and checked. */
static int sd_auth_token(const struct sd_auth *a, struct sd_auth_cache *cache,
                         const struct sd_auth_request *rq, struct sd_name cred,
                         struct sd_auth_result *res)
{
    struct sd_jwt_claims claims;
    enum sd_jwt_result r;

    if (cache->kind == SD_AUTH_TOKEN && cache->gen == rq->gen && cache->credlen == cred.len &&
        sd_auth_same(cache->cred, cred.s, cred.len)) {
        /* The same verified token: only time can have changed. */
        if (rq->now_s >= cache->expires + (int64_t)a->rules.leeway_s) {
            sd_auth_refuse(res, 401, sd_jwt_result_word(SD_JWT_EXPIRED), a->ch_invalid);
            sd_auth_cache_fini(cache);
            return 0;
        }
        res->who = cache->who;
        return 0;
    }
    memset(&claims, 0, sizeof(claims));
    r = sd_jwt_verify(a->jwks, &a->rules, cred.s, cred.len, rq->now_s,
                      rq->peer->cert->cert_sha256, &claims);
    if (r == SD_JWT_CNF_MISMATCH) {
        static const char hex[] = "0123456789abcdef";
        size_t i, o;

        sd_auth_refuse(res, 403, sd_jwt_result_word(r), NULL);
        res->stolen = 1;
        o = (size_t)snprintf(res->bound_to, sizeof(res->bound_to), "x5t#S256:");
        for (i = 0; i < sizeof(claims.x5t) && o + 2 < sizeof(res->bound_to); i++) {
            res->bound_to[o++] = hex[claims.x5t[i] >> 4];
            res->bound_to[o++] = hex[claims.x5t[i] & 15];
        }
        res->bound_to[o] = '\0';
        /* The sub of a token whose signature verified: the log names it. */
        if (claims.sub[0] != '\0') {
            snprintf(res->whobuf, sizeof(res->whobuf), "%s", claims.sub);
            res->who = res->whobuf;
        }
        return 0;
    }
    if (r != SD_JWT_OK) {
        sd_auth_refuse(res, 401, sd_jwt_result_word(r), a->ch_invalid);
        return 0;
    }
    if (sd_auth_remember(cache, rq, SD_AUTH_TOKEN, cred, NULL, claims.exp, claims.sub) != 0)
        return -1;
    res->who = cache->who;
    return 0;
}

int sd_auth_check(const struct sd_auth *a, struct sd_auth_cache *cache,
                  const struct sd_auth_request *rq, struct sd_auth_result *res)
{
    struct sd_name cred = { NULL, 0 };
    enum sd_auth_kind kind = SD_AUTH_NONE;
    int bearer = a->jwks != NULL || a->key_header == NULL;
    size_t i, found = 0, nauthz = 0;
    size_t plen = strlen(SD_APIKEY_PREFIX);

    memset(res, 0, sizeof(*res));
    res->field = -1;
    /* Every field that can carry a credential counts: two of them are two
     * credentials, and which one the gateway checked and which one the
     * backend would read could differ (RFC 6750 2.: one method per
     * request). The key header is matched loosely ('_' as '-', any case)
     * because that is how WSGI and CGI servers name it to the application. */
    for (i = 0; i < rq->nf; i++) {
        struct sd_name n = rq->f[i].name, c;
        enum sd_auth_kind k;

        if (sd_auth_word(n, "authorization")) {
            int strict;

            /* Authorization holds one credential (RFC 9110 11.6.2): in
             * Bearer mode, two fields are ambiguous whatever their
             * schemes. */
            if (bearer && ++nauthz > 1) {
                sd_auth_refuse(res, 400, "auth_multiple", a->ch_request);
                res->field = -1;
                return 0;
            }
            if (!sd_auth_bearer(rq->f[i].value, &c, &strict))
                continue; /* another scheme: not ours */
            /* With a key header of its own and no tokens, Authorization
             * belongs to the backend, except a Bearer value steeldoor must
             * judge: one in its own key format, or one that is not plainly
             * "Bearer SP token68" (no telling what the backend reads in
             * it). Either is a second key, and two are refused: the
             * backend must never be handed a key nobody checked. */
            if (!bearer && strict && (c.len < plen || memcmp(c.s, SD_APIKEY_PREFIX, plen) != 0))
                continue;
            if (a->keys == NULL)
                k = SD_AUTH_TOKEN;
            else if (a->jwks == NULL)
                k = SD_AUTH_KEY;
            else
                k = sd_auth_looks_jwt(c) ? SD_AUTH_TOKEN : SD_AUTH_KEY;
        } else if (a->key_header != NULL &&
                   sd_http_name_eq_loose(n, (struct sd_name){ a->key_header,
                                                              strlen(a->key_header) })) {
            c = rq->f[i].value;
            k = SD_AUTH_KEY;
        } else {
            continue;
        }
        if (++found > 1) {
            sd_auth_refuse(res, 400, "auth_multiple", a->ch_request);
            res->field = -1;
            return 0;
        }
        cred = c;
        kind = k;
        res->field = (long)i;
    }
    res->kind = kind;
    if (found == 0) {
        sd_auth_refuse(res, 401, "auth_missing", a->ch_missing);
        return 0;
    }
    if (kind == SD_AUTH_KEY)
        return sd_auth_key(a, cache, rq, cred, res);
    return sd_auth_token(a, cache, rq, cred, res);
}
