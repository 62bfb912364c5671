/*
 * admin_render.c - the admin listener's pages (see sd/admin.h): /metrics in
 * the Prometheus text format, /readyz and /status in JSON.
 *
 * A page is made in one pass into a bounded output, from a copy of the
 * master block and each listener's counters summed over the workers (one
 * snapshot per page: the numbers of one page agree with each other as far
 * as relaxed reads allow), and from the generation the answering worker
 * serves. Everything that comes from outside (listener names, paths, the
 * last reload's message, certificate names) is escaped where it lands:
 * label values per the text format, JSON strings by jansson after invalid
 * UTF-8 is replaced, since a name in a config file is bytes, not text.
 */
#include "sd/admin.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sd/cli.h" /* SD_VERSION */
#include "sd/config.h"
#include "sd/gen.h"
#include "sd/policy.h"
#include "sd/reason.h"
#include "sd/stats.h"
#include "sd/tls.h"

#define SD_ADMIN_OUT_FIRST 4096u  /* first allocation of an output */
#define SD_ADMIN_DETAIL_MAX 1024u /* bytes of a readyz check's detail */
#define SD_ADMIN_CHAIN_SEEN 32u   /* chain certificates told apart per listener */
#define SD_ADMIN_CRL_MAX 4096u    /* CRLs per listener (src/tls keeps at most as many) */
/* CA certificates shown per listener, the soonest to expire: a bundle of
 * thousands (a system-like store) must not push every other metric past
 * the page's cap; the count of all is a gauge of its own. */
#define SD_ADMIN_CA_SHOWN 64u
#define SD_ADMIN_CA_SCAN 65536u   /* CA certificates looked at per listener */

/* ----------------------------------------------------------- the output */

void sd_admin_out_init(struct sd_admin_out *o, size_t max)
{
    memset(o, 0, sizeof(*o));
    /* Far below SIZE_MAX, so the doubling below cannot wrap. */
    o->max = max < SIZE_MAX / 4 ? max : SIZE_MAX / 4;
}

void sd_admin_out_fini(struct sd_admin_out *o)
{
    size_t max = o->max;

    free(o->data);
    sd_admin_out_init(o, max);
}

/* Makes room for n more bytes and a NUL. Returns 0, or -1 (failed). */
static int sd_admin_out_room(struct sd_admin_out *o, size_t n)
{
    size_t need, cap;
    char *p;

    if (o->failed)
        return -1;
    if (n > o->max - o->len) {
        o->failed = 1;
        return -1;
    }
    need = o->len + n + 1;
    if (need <= o->cap)
        return 0;
    cap = o->cap > 0 ? o->cap : SD_ADMIN_OUT_FIRST;
    while (cap < need)
        cap *= 2;
    if (cap > o->max + 1)
        cap = o->max + 1;
    p = realloc(o->data, cap);
    if (p == NULL) {
        o->failed = 1;
        return -1;
    }
    o->data = p;
    o->cap = cap;
    return 0;
}

int sd_admin_out_put(struct sd_admin_out *o, const void *p, size_t n)
{
    if (sd_admin_out_room(o, n) != 0)
        return -1;
    if (n > 0)
        memcpy(o->data + o->len, p, n);
    o->len += n;
    o->data[o->len] = '\0';
    return 0;
}

int sd_admin_out_puts(struct sd_admin_out *o, const char *s)
{
    return sd_admin_out_put(o, s, strlen(s));
}

int sd_admin_out_printf(struct sd_admin_out *o, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    if (o->failed)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = 1;
        return -1;
    }
    if ((size_t)n < sizeof(small))
        return sd_admin_out_put(o, small, (size_t)n);
    if (sd_admin_out_room(o, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    (void)vsnprintf(o->data + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
    return 0;
}

/* --------------------------------------------------------------- text */

void sd_admin_rfc3339(int64_t t, char buf[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, 32, "1970-01-01T00:00:00Z");
}

/* The length of the valid UTF-8 sequence starting s[0, n) (n >= 1), or 0
 * when it is not one (a stray continuation byte, an overlong form, a
 * surrogate, past U+10FFFF, cut short). */
static size_t sd_admin_utf8(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A copy of s with every byte that is not part of valid UTF-8 replaced by
 * '?': jansson refuses invalid strings, and a label value must be UTF-8.
 * The caller frees it; NULL when out of memory. */
static char *sd_admin_clean(const char *s)
{
    size_t n = strlen(s), i = 0, k;
    char *c = malloc(n + 1);

    if (c == NULL)
        return NULL;
    memcpy(c, s, n + 1);
    while (i < n) {
        k = sd_admin_utf8((const unsigned char *)c + i, n - i);
        if (k == 0) {
            c[i] = '?';
            k = 1;
        }
        i += k;
    }
    return c;
}

/* v / 10^digits as a decimal without trailing zeros: 500 us at 6 digits
 * is "0.0005", 1000000 is "1". Exact, where a double would print
 * 0.00050000000000000001. */
static void sd_admin_fixed(uint64_t v, unsigned digits, char buf[48])
{
    uint64_t scale = 1, frac;
    char f[24];
    size_t n;
    unsigned i;

    for (i = 0; i < digits; i++)
        scale *= 10;
    frac = v % scale;
    if (frac == 0) {
        snprintf(buf, 48, "%" PRIu64, v / scale);
        return;
    }
    snprintf(f, sizeof(f), "%0*" PRIu64, (int)digits, frac);
    n = strlen(f);
    while (n > 0 && f[n - 1] == '0')
        f[--n] = '\0';
    snprintf(buf, 48, "%" PRIu64 ".%s", v / scale, f);
}

/* --------------------------------------------------- what a page shows */

/* The counters at one moment: a copy of the master block, and each
 * listener of the generation summed over the workers (zeros for a name
 * with no slot). Large (the sums hold every HTTP status): on the heap. */
struct sd_admin_snap {
    struct sd_stats_master m;
    size_t n;
    int slot[SD_MAX_LISTENERS];
    struct sd_stats_lst sum[SD_MAX_LISTENERS];
    int alive, configured;
};

/* The caller frees the snapshot; NULL when out of memory. */
static struct sd_admin_snap *sd_admin_snap_take(const struct sd_stats *st,
                                                const struct sd_gen *g)
{
    struct sd_admin_snap *s = calloc(1, sizeof(*s));
    int w, nw;
    size_t i;

    if (s == NULL)
        return NULL;
    if (st != NULL)
        sd_stats_master_read(st, &s->m);
    s->n = g->cfg->nlisteners < SD_MAX_LISTENERS ? g->cfg->nlisteners : SD_MAX_LISTENERS;
    for (i = 0; i < s->n; i++) {
        s->slot[i] = sd_stats_slot(st, g->cfg->listeners[i].name);
        sd_stats_sum(st, s->slot[i], &s->sum[i]);
    }
    nw = s->m.nworkers < 0 ? 0 : s->m.nworkers > SD_MAX_WORKERS ? SD_MAX_WORKERS : s->m.nworkers;
    s->configured = st != NULL ? nw : g->cfg->workers;
    for (w = 0; w < nw; w++)
        if (s->m.worker_pid[w] != 0)
            s->alive++;
    return s;
}

/* Does listener lc connect onward (a target: every mode but admin)? */
static int sd_admin_has_target(const struct sd_listener_conf *lc)
{
    return lc->mode != SD_MODE_ADMIN && lc->target != NULL;
}

static int sd_admin_has_auth(const struct sd_listener_conf *lc)
{
    return lc->mode == SD_MODE_HTTP && (lc->api_keys != NULL || lc->jwks != NULL);
}

/* ------------------------------------------------------------ /metrics */

/* One metric family being written: its header goes out with its first
 * sample, so a family without samples (no listener of that kind) is left
 * out whole, and a family's samples are together by construction (each
 * family is one loop). */
struct sd_admin_fam {
    struct sd_admin_out *o;
    const char *name, *type, *help;
    int started;
    int nl; /* labels of the sample being written */
};

static void sd_admin_fam(struct sd_admin_fam *f, struct sd_admin_out *o, const char *name,
                         const char *type, const char *help)
{
    f->o = o;
    f->name = name;
    f->type = type;
    f->help = help;
    f->started = 0;
    f->nl = 0;
}

/* Starts a sample: name, then suffix ("_bucket") when not NULL. */
static void sd_admin_s(struct sd_admin_fam *f, const char *suffix)
{
    if (!f->started) {
        (void)sd_admin_out_printf(f->o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
                                  f->name, f->type);
        f->started = 1;
    }
    (void)sd_admin_out_puts(f->o, f->name);
    if (suffix != NULL)
        (void)sd_admin_out_puts(f->o, suffix);
    f->nl = 0;
}

/* A label: its value escaped as the text format wants (backslash, double
 * quote, line feed), invalid UTF-8 replaced by '?'. */
static void sd_admin_l(struct sd_admin_fam *f, const char *key, const char *value)
{
    const unsigned char *p = (const unsigned char *)(value != NULL ? value : "");
    size_t n = strlen((const char *)p), i = 0, run = 0, k;

    (void)sd_admin_out_puts(f->o, f->nl++ == 0 ? "{" : ",");
    (void)sd_admin_out_puts(f->o, key);
    (void)sd_admin_out_put(f->o, "=\"", 2);
    while (i < n) {
        const char *esc = p[i] == '\\' ? "\\\\" : p[i] == '"' ? "\\\"" : p[i] == '\n' ? "\\n" : NULL;
        k = esc != NULL ? 0 : sd_admin_utf8(p + i, n - i);
        if (esc == NULL && k > 0) {
            i += k;
            continue;
        }
        (void)sd_admin_out_put(f->o, p + run, i - run);
        (void)sd_admin_out_puts(f->o, esc != NULL ? esc : "?");
        i++;
        run = i;
    }
    (void)sd_admin_out_put(f->o, p + run, n - run);
    (void)sd_admin_out_put(f->o, "\"", 1);
}

/* Ends the sample with its value (text). */
static void sd_admin_v(struct sd_admin_fam *f, const char *value)
{
    (void)sd_admin_out_printf(f->o, "%s %s\n", f->nl > 0 ? "}" : "", value);
}

static void sd_admin_vu(struct sd_admin_fam *f, uint64_t v)
{
    char b[24];

    snprintf(b, sizeof(b), "%" PRIu64, v);
    sd_admin_v(f, b);
}

static void sd_admin_vi(struct sd_admin_fam *f, int64_t v)
{
    char b[24];

    snprintf(b, sizeof(b), "%" PRId64, v);
    sd_admin_v(f, b);
}

/* A value in milliseconds, shown in seconds. */
static void sd_admin_vms(struct sd_admin_fam *f, int64_t ms)
{
    char b[48];

    sd_admin_fixed(ms > 0 ? (uint64_t)ms : 0, 3, b);
    sd_admin_v(f, b);
}

/* A process-wide gauge or counter without labels. */
static void sd_admin_one(struct sd_admin_out *o, const char *name, const char *type,
                         const char *help, uint64_t v)
{
    struct sd_admin_fam f;

    sd_admin_fam(&f, o, name, type, help);
    sd_admin_s(&f, NULL);
    sd_admin_vu(&f, v);
}

static void sd_admin_metrics_process(const struct sd_admin_snap *s, const struct sd_gen *g,
                                     struct sd_admin_out *o)
{
    struct sd_admin_fam f;

    sd_admin_fam(&f, o, "steeldoor_build_info", "gauge",
                 "The steeldoor version and the OpenSSL version it runs with (always 1).");
    sd_admin_s(&f, NULL);
    sd_admin_l(&f, "version", SD_VERSION);
    sd_admin_l(&f, "openssl", sd_tls_openssl_version());
    sd_admin_vu(&f, 1);
    sd_admin_fam(&f, o, "steeldoor_start_time_seconds", "gauge",
                 "When the master process started, in Unix seconds.");
    sd_admin_s(&f, NULL);
    sd_admin_vms(&f, s->m.started_ms);
    sd_admin_one(o, "steeldoor_generation", "gauge",
                 "The configuration generation this answer describes (1 at start, +1 per "
                 "successful reload).", g->id);
    sd_admin_one(o, "steeldoor_config_stale", "gauge",
                 "1 while the last reload failed (the previous configuration still serves), "
                 "else 0.", s->m.stale != 0);
    sd_admin_fam(&f, o, "steeldoor_reloads_total", "counter", "Configuration reloads by result.");
    sd_admin_s(&f, NULL);
    sd_admin_l(&f, "result", "ok");
    sd_admin_vu(&f, s->m.reloads_ok);
    sd_admin_s(&f, NULL);
    sd_admin_l(&f, "result", "failed");
    sd_admin_vu(&f, s->m.reloads_failed);
    if (s->m.last_reload_ms != 0) {
        sd_admin_fam(&f, o, "steeldoor_last_reload_timestamp_seconds", "gauge",
                     "When the last reload was attempted, in Unix seconds.");
        sd_admin_s(&f, NULL);
        sd_admin_vms(&f, s->m.last_reload_ms);
        sd_admin_one(o, "steeldoor_last_reload_success", "gauge",
                     "1 if the last reload succeeded, else 0.", s->m.last_reload_ok != 0);
    }
    sd_admin_one(o, "steeldoor_workers", "gauge", "Worker processes running.",
                 (uint64_t)s->alive);
    sd_admin_one(o, "steeldoor_workers_configured", "gauge", "Worker processes configured.",
                 s->configured > 0 ? (uint64_t)s->configured : 0);
    sd_admin_one(o, "steeldoor_worker_restarts_total", "counter",
                 "Worker processes started again after one exited.",
                 s->m.worker_restarts_total);
}

/* A counter family with one sample per listener (those want accepts, or
 * all): offset is that of its uint64_t field in struct sd_stats_lst. */
static void sd_admin_per_listener(const struct sd_admin_snap *s, const struct sd_gen *g,
                                  struct sd_admin_out *o, const char *name, const char *help,
                                  size_t offset, int (*want)(const struct sd_listener_conf *))
{
    struct sd_admin_fam f;
    size_t i;

    sd_admin_fam(&f, o, name, "counter", help);
    for (i = 0; i < s->n; i++) {
        const struct sd_listener_conf *lc = &g->cfg->listeners[i];
        uint64_t v;

        if (want != NULL && !want(lc))
            continue;
        memcpy(&v, (const char *)&s->sum[i] + offset, sizeof(v));
        sd_admin_s(&f, NULL);
        sd_admin_l(&f, "listener", lc->name);
        sd_admin_vu(&f, v);
    }
}

static void sd_admin_histogram(const struct sd_admin_snap *s, const struct sd_gen *g,
                               struct sd_admin_out *o)
{
    struct sd_admin_fam f;
    char le[48];
    size_t i, b;

    sd_admin_fam(&f, o, "steeldoor_handshake_duration_seconds", "histogram",
                 "Completed TLS handshakes by duration.");
    for (i = 0; i < s->n; i++) {
        const struct sd_stats_lst *l = &s->sum[i];
        const char *name = g->cfg->listeners[i].name;
        uint64_t cum = 0;

        for (b = 0; b <= SD_STATS_HS_BUCKETS; b++) {
            cum += l->hs_bucket[b];
            if (b < SD_STATS_HS_BUCKETS)
                sd_admin_fixed(sd_stats_hs_bounds_us[b], 6, le);
            sd_admin_s(&f, "_bucket");
            sd_admin_l(&f, "listener", name);
            sd_admin_l(&f, "le", b < SD_STATS_HS_BUCKETS ? le : "+Inf");
            sd_admin_vu(&f, cum);
        }
        sd_admin_fixed(l->hs_sum_us, 6, le);
        sd_admin_s(&f, "_sum");
        sd_admin_l(&f, "listener", name);
        sd_admin_v(&f, le);
        sd_admin_s(&f, "_count");
        sd_admin_l(&f, "listener", name);
        sd_admin_vu(&f, cum); /* the +Inf bucket: the same reads, so they agree */
    }
}

static void sd_admin_metrics_listeners(const struct sd_admin_snap *s, const struct sd_gen *g,
                                       struct sd_admin_out *o)
{
    struct sd_admin_fam f;
    size_t i, r, k;

    sd_admin_fam(&f, o, "steeldoor_listener_info", "gauge",
                 "Every listener of the configuration in force (always 1).");
    for (i = 0; i < s->n; i++) {
        const struct sd_listener_conf *lc = &g->cfg->listeners[i];
        sd_admin_s(&f, NULL);
        sd_admin_l(&f, "listener", lc->name);
        sd_admin_l(&f, "mode", sd_config_mode_name(lc->mode));
        sd_admin_l(&f, "listen", lc->listen);
        sd_admin_vu(&f, 1);
    }
    sd_admin_per_listener(s, g, o, "steeldoor_connections_accepted_total",
                          "Connections accepted.", offsetof(struct sd_stats_lst, accepted),
                          NULL);
    sd_admin_fam(&f, o, "steeldoor_connections_open", "gauge",
                 "Connections accepted and not closed yet.");
    for (i = 0; i < s->n; i++) {
        sd_admin_s(&f, NULL);
        sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
        /* A sum read while a worker opens and closes can dip below 0. */
        sd_admin_vi(&f, s->sum[i].open > 0 ? s->sum[i].open : 0);
    }
    sd_admin_fam(&f, o, "steeldoor_connections_total", "counter",
                 "Closed connections by the result and reason of their log line.");
    for (i = 0; i < s->n; i++)
        for (r = 0; r < SD_STATS_RESULTS; r++)
            for (k = 0; k < SD_R_COUNT_; k++) {
                uint64_t v = s->sum[i].closed[r][k];
                const char *word = sd_reason_str((enum sd_reason)k);
                /* Only what happened, and ok/none always: the family is
                 * there before the first connection closes. */
                if (v == 0 && !(r == SD_STATS_OK && k == SD_R_NONE))
                    continue;
                sd_admin_s(&f, NULL);
                sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
                sd_admin_l(&f, "result", sd_stats_result_words[r]);
                sd_admin_l(&f, "reason", word != NULL ? word : "none");
                sd_admin_vu(&f, v);
            }
    sd_admin_fam(&f, o, "steeldoor_handshakes_total", "counter",
                 "Completed TLS handshakes: full, or resumed from a session.");
    for (i = 0; i < s->n; i++) {
        sd_admin_s(&f, NULL);
        sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
        sd_admin_l(&f, "kind", "full");
        sd_admin_vu(&f, s->sum[i].hs_full);
        sd_admin_s(&f, NULL);
        sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
        sd_admin_l(&f, "kind", "resumed");
        sd_admin_vu(&f, s->sum[i].hs_resumed);
    }
    sd_admin_histogram(s, g, o);
    sd_admin_per_listener(s, g, o, "steeldoor_bytes_received_total",
                          "Bytes received from clients (a connector's: from its callers).",
                          offsetof(struct sd_stats_lst, bytes_from_client), NULL);
    sd_admin_per_listener(s, g, o, "steeldoor_bytes_sent_total",
                          "Bytes sent to clients (a connector's: to its callers).",
                          offsetof(struct sd_stats_lst, bytes_to_client), NULL);
    sd_admin_per_listener(s, g, o, "steeldoor_backend_connect_failures_total",
                          "Connections to the target that failed or timed out.",
                          offsetof(struct sd_stats_lst, backend_fail), sd_admin_has_target);
    sd_admin_fam(&f, o, "steeldoor_http_responses_total", "counter",
                 "HTTP responses sent to clients by status code (HTTP mode).");
    for (i = 0; i < s->n; i++) {
        char code[8];
        if (g->cfg->listeners[i].mode != SD_MODE_HTTP)
            continue;
        for (k = 0; k < SD_STATS_HTTP_N; k++) {
            if (s->sum[i].http[k] == 0)
                continue;
            snprintf(code, sizeof(code), "%zu", k + SD_STATS_HTTP_MIN);
            sd_admin_s(&f, NULL);
            sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
            sd_admin_l(&f, "code", code);
            sd_admin_vu(&f, s->sum[i].http[k]);
        }
    }
    sd_admin_fam(&f, o, "steeldoor_auth_failures_total", "counter",
                 "Requests refused by the second factor (API key or token), by kind.");
    for (i = 0; i < s->n; i++) {
        if (!sd_admin_has_auth(&g->cfg->listeners[i]))
            continue;
        for (k = 0; k < SD_STATS_AUTH_KINDS; k++) {
            sd_admin_s(&f, NULL);
            sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
            sd_admin_l(&f, "kind", sd_stats_auth_kinds[k]);
            sd_admin_vu(&f, s->sum[i].auth_fail[k]);
        }
    }
}

/* The certificates of one listener, as expiry gauges. Each certificate
 * once per role: the CA store keeps no duplicates, but a chain file may
 * name one certificate twice, and two equal series would make the page
 * invalid. */
/* Which CA certificates of a listener are shown: the SD_ADMIN_CA_SHOWN
 * that expire first. Two passes over the store: their notAfter times,
 * then the certificates at or before the cut. */
struct sd_admin_ca_cut {
    int64_t *t;       /* notAfter of each CA seen (first pass) */
    size_t n, cap;
    int64_t cut;      /* shown: not_after <= cut, at most SD_ADMIN_CA_SHOWN */
    size_t total;     /* CA certificates in the store */
    size_t shown;
};

static int sd_admin_ca_collect(void *arg, const struct sd_tls_cert_info *ci)
{
    struct sd_admin_ca_cut *k = arg;

    if (strcmp(ci->role, "ca") != 0)
        return 0;
    k->total++;
    if (k->n == k->cap) {
        size_t cap = k->cap > 0 ? k->cap * 2 : 64;
        int64_t *more;
        if (k->cap >= SD_ADMIN_CA_SCAN)
            return 0;
        if ((more = realloc(k->t, cap * sizeof(*more))) == NULL)
            return 0; /* shown by the order of the store instead */
        k->t = more;
        k->cap = cap;
    }
    k->t[k->n++] = ci->not_after;
    return 0;
}

static int sd_admin_i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void sd_admin_ca_cut_of(const struct sd_tls *tls, const struct sd_listener_conf *lc,
                               struct sd_admin_ca_cut *k)
{
    memset(k, 0, sizeof(*k));
    k->cut = INT64_MAX;
    (void)sd_tls_info_certs(tls, lc, sd_admin_ca_collect, k);
    if (k->n > SD_ADMIN_CA_SHOWN) {
        qsort(k->t, k->n, sizeof(k->t[0]), sd_admin_i64_cmp);
        k->cut = k->t[SD_ADMIN_CA_SHOWN - 1];
    }
    free(k->t);
    k->t = NULL;
}

/* Is this certificate shown (every one that is not a CA; CAs up to the cut)? */
static int sd_admin_ca_show(struct sd_admin_ca_cut *k, const struct sd_tls_cert_info *ci)
{
    if (strcmp(ci->role, "ca") != 0)
        return 1;
    if (ci->not_after > k->cut || k->shown >= SD_ADMIN_CA_SHOWN)
        return 0;
    k->shown++;
    return 1;
}

struct sd_admin_certs_metric {
    struct sd_admin_fam *f;
    struct sd_admin_ca_cut ca;
    const char *listener;
    char seen[SD_ADMIN_CHAIN_SEEN][65];
    size_t nseen;
};

static int sd_admin_cert_metric(void *arg, const struct sd_tls_cert_info *ci)
{
    struct sd_admin_certs_metric *m = arg;
    size_t i;

    if (!sd_admin_ca_show(&m->ca, ci))
        return 0;
    if (strcmp(ci->role, "chain") == 0) {
        for (i = 0; i < m->nseen; i++)
            if (strcmp(m->seen[i], ci->sha256) == 0)
                return 0;
        if (m->nseen < SD_ADMIN_CHAIN_SEEN)
            memcpy(m->seen[m->nseen++], ci->sha256, sizeof(m->seen[0]));
    }
    sd_admin_s(m->f, NULL);
    sd_admin_l(m->f, "listener", m->listener);
    sd_admin_l(m->f, "role", ci->role);
    sd_admin_l(m->f, "subject", ci->subject);
    sd_admin_l(m->f, "serial", ci->serial);
    sd_admin_l(m->f, "sha256", ci->sha256);
    sd_admin_vi(m->f, ci->not_after);
    return 0;
}

/* A listener's CRLs, collected (bounded) to be grouped or judged. */
struct sd_admin_crls {
    struct sd_tls_crl_info *v;
    size_t n, cap;
    int failed;
};

static int sd_admin_crl_collect(void *arg, const struct sd_tls_crl_info *ci)
{
    struct sd_admin_crls *c = arg;

    if (c->n == c->cap) {
        size_t cap = c->cap > 0 ? c->cap * 2 : 8;
        struct sd_tls_crl_info *more;
        if (c->cap >= SD_ADMIN_CRL_MAX)
            return 0; /* the rest is not shown */
        if (cap > SD_ADMIN_CRL_MAX)
            cap = SD_ADMIN_CRL_MAX;
        if ((more = realloc(c->v, cap * sizeof(*more))) == NULL) {
            c->failed = 1;
            return -1;
        }
        c->v = more;
        c->cap = cap;
    }
    c->v[c->n++] = *ci;
    return 0;
}

/* By file, issuer, then nextUpdate. */
static int sd_admin_crl_cmp(const void *a, const void *b)
{
    const struct sd_tls_crl_info *x = a, *y = b;
    int d = strcmp(x->file != NULL ? x->file : "", y->file != NULL ? y->file : "");

    if (d == 0)
        d = strcmp(x->issuer, y->issuer);
    if (d == 0)
        d = x->next_update < y->next_update ? -1 : x->next_update > y->next_update;
    return d;
}

/* Same file and issuer: one series of the CRL family. */
static int sd_admin_crl_group_eq(const struct sd_tls_crl_info *x, const struct sd_tls_crl_info *y)
{
    return strcmp(x->file != NULL ? x->file : "", y->file != NULL ? y->file : "") == 0 &&
           strcmp(x->issuer, y->issuer) == 0;
}

/* Returns -1 when out of memory. */
static int sd_admin_crls_of(const struct sd_tls *tls, struct sd_admin_crls *c)
{
    memset(c, 0, sizeof(*c));
    (void)sd_tls_info_crls(tls, sd_admin_crl_collect, c);
    return c->failed ? -1 : 0;
}

static void sd_admin_metrics_expiry(const struct sd_gen *g, struct sd_admin_out *o)
{
    struct sd_admin_certs_metric m;
    struct sd_admin_fam f;
    size_t i, j, *nca = calloc(g->cfg->nlisteners + 1, sizeof(*nca));

    if (nca == NULL) {
        o->failed = 1;
        return;
    }
    sd_admin_fam(&f, o, "steeldoor_certificate_not_after_timestamp_seconds", "gauge",
                 "When each certificate a listener presents or trusts expires (notAfter), in "
                 "Unix seconds; of its CA certificates, the 64 that expire first.");
    for (i = 0; i < g->cfg->nlisteners; i++) {
        memset(&m, 0, sizeof(m));
        m.f = &f;
        m.listener = g->cfg->listeners[i].name;
        sd_admin_ca_cut_of(g->tls[i], &g->cfg->listeners[i], &m.ca);
        nca[i] = m.ca.total;
        (void)sd_tls_info_certs(g->tls[i], &g->cfg->listeners[i], sd_admin_cert_metric, &m);
    }
    sd_admin_fam(&f, o, "steeldoor_ca_certificates", "gauge",
                 "CA certificates a listener trusts (its cacert).");
    for (i = 0; i < g->cfg->nlisteners; i++) {
        if (g->tls[i] == NULL)
            continue;
        sd_admin_s(&f, NULL);
        sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
        sd_admin_vi(&f, (int64_t)nca[i]);
    }
    free(nca);
    /* One series per listener, issuer and file: a file may hold several
     * CRLs of one issuer (an old one next to its successor), and the
     * newest nextUpdate is the one that decides. CRLs without one are
     * left out (they never go stale). */
    sd_admin_fam(&f, o, "steeldoor_crl_next_update_timestamp_seconds", "gauge",
                 "When each CRL file's newest CRL of an issuer is due for replacement "
                 "(nextUpdate), in Unix seconds.");
    for (i = 0; i < g->cfg->nlisteners; i++) {
        struct sd_admin_crls c;

        if (sd_admin_crls_of(g->tls[i], &c) != 0) {
            o->failed = 1;
            free(c.v);
            return;
        }
        if (c.n > 1)
            qsort(c.v, c.n, sizeof(c.v[0]), sd_admin_crl_cmp);
        for (j = 0; j < c.n; j++) {
            const struct sd_tls_crl_info *x = &c.v[j];
            /* Sorted: the last of a group has its latest nextUpdate. */
            if (j + 1 < c.n && sd_admin_crl_group_eq(x, &c.v[j + 1]))
                continue;
            if (x->next_update == 0)
                continue;
            sd_admin_s(&f, NULL);
            sd_admin_l(&f, "listener", g->cfg->listeners[i].name);
            sd_admin_l(&f, "issuer", x->issuer);
            sd_admin_l(&f, "file", x->file);
            sd_admin_vi(&f, x->next_update);
        }
        free(c.v);
    }
}

int sd_admin_metrics(const struct sd_stats *st, const struct sd_gen *g,
                     struct sd_admin_out *out)
{
    struct sd_admin_snap *s = sd_admin_snap_take(st, g);

    if (s == NULL) {
        out->failed = 1;
        return -1;
    }
    sd_admin_metrics_process(s, g, out);
    sd_admin_metrics_listeners(s, g, out);
    sd_admin_metrics_expiry(g, out);
    free(s);
    return out->failed ? -1 : 0;
}

/* --------------------------------------------------------------- JSON */

/* A JSON string of s (NULL: null), invalid UTF-8 replaced; NULL when out
 * of memory. */
static json_t *sd_admin_jstr(const char *s)
{
    json_t *j;
    char *c;

    if (s == NULL)
        return json_null();
    if ((c = sd_admin_clean(s)) == NULL)
        return NULL;
    j = json_string(c);
    free(c);
    return j;
}

/* RFC 3339 text of Unix seconds t, null for 0 (none). */
static json_t *sd_admin_jtime(int64_t t)
{
    char buf[32];

    if (t == 0)
        return json_null();
    sd_admin_rfc3339(t, buf);
    return json_string(buf);
}

static json_t *sd_admin_jint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* Sets o[key] = v (taking v); a failure (v NULL: out of memory) sets *bad.
 * Chains of these need no check between them: json_object_set_new takes
 * NULLs and drops v either way. */
static void sd_admin_jset(json_t *o, const char *key, json_t *v, int *bad)
{
    if (json_object_set_new(o, key, v) != 0)
        *bad = 1;
}

static void sd_admin_jpush(json_t *a, json_t *v, int *bad)
{
    if (json_array_append_new(a, v) != 0)
        *bad = 1;
}

static int sd_admin_json_put(const char *buf, size_t size, void *data)
{
    return sd_admin_out_put(data, buf, size);
}

/* Writes j (taking it) and a newline to out. Returns 0, or -1. */
static int sd_admin_json_out(json_t *j, int bad, size_t flags, struct sd_admin_out *out)
{
    int rc = -1;

    if (j != NULL && !bad && json_dump_callback(j, sd_admin_json_put, out, flags) == 0 &&
        sd_admin_out_put(out, "\n", 1) == 0)
        rc = 0;
    json_decref(j);
    if (rc != 0)
        out->failed = 1;
    return rc;
}

/* ------------------------------------------------------------- /readyz */

/* A check's detail: problems joined with "; ", cut (with "...") to fit. */
struct sd_admin_detail {
    char text[SD_ADMIN_DETAIL_MAX];
    size_t len;
    int n;
};

static void sd_admin_detail_add(struct sd_admin_detail *d, const char *fmt, ...) SD_PRINTF(2, 3);
static void sd_admin_detail_add(struct sd_admin_detail *d, const char *fmt, ...)
{
    char line[512];
    size_t n, room = sizeof(d->text) - 4; /* "..." and the NUL */
    va_list ap;

    d->n++;
    va_start(ap, fmt);
    (void)vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (d->len >= room)
        return; /* already cut */
    n = strlen(line) + (d->len > 0 ? 2 : 0);
    if (d->len + n > room) {
        memcpy(d->text + d->len, "...", 4);
        d->len = room;
        return;
    }
    snprintf(d->text + d->len, sizeof(d->text) - d->len, "%s%s", d->len > 0 ? "; " : "", line);
    d->len += n;
}

/* What the certificates check finds in one listener. */
struct sd_admin_certs_check {
    struct sd_admin_detail *d;
    const char *listener;
    int64_t now;
    int cas, cas_valid, certs;
};

static int sd_admin_cert_check(void *arg, const struct sd_tls_cert_info *ci)
{
    struct sd_admin_certs_check *k = arg;
    int valid = ci->not_before <= k->now && k->now < ci->not_after;
    char when[32];

    if (strcmp(ci->role, "ca") == 0) {
        k->cas++;
        k->cas_valid += valid;
        return 0;
    }
    k->certs++;
    if (valid)
        return 0;
    sd_admin_rfc3339(k->now < ci->not_before ? ci->not_before : ci->not_after, when);
    sd_admin_detail_add(k->d, "listener %s: %s certificate %s %s %s (%s)", k->listener,
                        ci->role, ci->subject, k->now < ci->not_before ? "is not valid before"
                                                                        : "expired",
                        when, ci->file != NULL ? ci->file : "?");
    return 0;
}

/* Names the issuers whose newest full CRL is past nextUpdate + grace (as
 * src/tls/load.c judges freshness). */
static void sd_admin_stale_crls(const struct sd_admin_crls *c, uint32_t grace, int64_t now,
                                const char *listener, struct sd_admin_detail *d)
{
    size_t i, j;

    for (i = 0; i < c->n; i++) {
        const struct sd_tls_crl_info *x = &c->v[i];
        int newest = 1;
        char when[32];

        if (x->delta || x->next_update == 0 || x->next_update + (int64_t)grace > now)
            continue;
        for (j = 0; j < c->n && newest; j++) {
            const struct sd_tls_crl_info *y = &c->v[j];
            if (j == i || y->delta || strcmp(y->issuer, x->issuer) != 0)
                continue;
            if (y->next_update == 0 || y->next_update > x->next_update ||
                (y->next_update == x->next_update && j < i))
                newest = 0;
        }
        if (!newest)
            continue;
        sd_admin_rfc3339(x->next_update, when);
        sd_admin_detail_add(d, "listener %s: the CRL of %s (%s) is past its nextUpdate %s%s: "
                            "every client it covers is refused", listener, x->issuer,
                            x->file != NULL ? x->file : "?", when,
                            grace > 0 ? " and the grace" : "");
    }
}

static json_t *sd_admin_check(const char *name, int ok, const char *detail)
{
    return json_pack("{s:s, s:b, s:o}", "name", name, "ok", ok, "detail", sd_admin_jstr(detail));
}

static json_t *sd_admin_check_config(const struct sd_admin_snap *s, const struct sd_gen *g,
                                     int *ok)
{
    char when[32], text[SD_STATS_MSG_MAX + 160];

    *ok = s->m.stale == 0;
    sd_admin_rfc3339(s->m.last_reload_ms / 1000, when);
    if (!*ok)
        snprintf(text, sizeof(text), "the last reload failed at %s: %s; generation %" PRIu64
                 " still serves", when, s->m.last_reload_msg, g->id);
    else if (s->m.last_reload_ms != 0)
        snprintf(text, sizeof(text), "generation %" PRIu64 "; the last reload %s at %s", g->id,
                 s->m.last_reload_ok ? "worked" : "failed", when);
    else
        snprintf(text, sizeof(text), "generation %" PRIu64 "; no reload yet", g->id);
    return sd_admin_check("config", *ok, text);
}

/* Returns NULL when out of memory. */
static json_t *sd_admin_check_certs(const struct sd_gen *g, int64_t now, int *ok)
{
    struct sd_admin_detail d;
    int certs = 0, fail = 0;
    size_t i;

    memset(&d, 0, sizeof(d));
    for (i = 0; i < g->cfg->nlisteners; i++) {
        const struct sd_listener_conf *lc = &g->cfg->listeners[i];
        struct sd_admin_certs_check k;
        struct sd_admin_crls c;
        int64_t fresh = sd_tls_info_crl_fresh_until(g->tls[i]);
        int before = d.n;

        if (g->tls[i] == NULL)
            continue;
        memset(&k, 0, sizeof(k));
        k.d = &d;
        k.listener = lc->name;
        k.now = now;
        (void)sd_tls_info_certs(g->tls[i], lc, sd_admin_cert_check, &k);
        certs += k.certs;
        if (k.cas > 0 && k.cas_valid == 0)
            sd_admin_detail_add(&d, "listener %s: no CA certificate of %s is valid now: "
                                "no peer can be verified", lc->name,
                                lc->cacert != NULL ? lc->cacert : "?");
        if (fresh != 0 && now >= fresh) {
            int named = d.n;
            if (sd_admin_crls_of(g->tls[i], &c) != 0) {
                free(c.v);
                return NULL;
            }
            sd_admin_stale_crls(&c, lc->crl_grace_s, now, lc->name, &d);
            free(c.v);
            if (d.n == named) {
                char when[32];
                sd_admin_rfc3339(fresh, when);
                sd_admin_detail_add(&d, "listener %s: its CRLs are stale since %s", lc->name,
                                    when);
            }
        }
        fail |= d.n > before;
    }
    *ok = !fail;
    if (!fail)
        snprintf(d.text, sizeof(d.text), "%d certificates presented, all valid now; CA "
                 "certificates and CRLs usable", certs);
    return sd_admin_check("certificates", *ok, d.text);
}

static json_t *sd_admin_check_backends(const struct sd_admin_snap *s, const struct sd_gen *g,
                                       int *ok)
{
    struct sd_admin_detail d;
    int fail = 0, known = 0, none = 0;
    size_t i;

    memset(&d, 0, sizeof(d));
    for (i = 0; i < s->n; i++) {
        const struct sd_listener_conf *lc = &g->cfg->listeners[i];
        int slot = s->slot[i];
        int64_t okm = s->sum[i].backend_ok_ms, failm = s->sum[i].backend_fail_ms;
        char when[32];

        if (!sd_admin_has_target(lc))
            continue;
        /* The latest event decides, the workers' connects or the master's
         * probes of an idle target. */
        if (slot >= 0 && s->m.probe_ok_ms[slot] > okm)
            okm = s->m.probe_ok_ms[slot];
        if (slot >= 0 && s->m.probe_fail_ms[slot] > failm)
            failm = s->m.probe_fail_ms[slot];
        if (okm == 0 && failm == 0) {
            none++;
            sd_admin_detail_add(&d, "%s: unknown", lc->name);
            continue;
        }
        known++;
        if (failm > okm) {
            fail = 1;
            sd_admin_rfc3339(failm / 1000, when);
            sd_admin_detail_add(&d, "%s: the last connect to %s failed at %s", lc->name,
                                lc->target, when);
        } else {
            sd_admin_rfc3339(okm / 1000, when);
            sd_admin_detail_add(&d, "%s: ok at %s", lc->name, when);
        }
    }
    *ok = !fail;
    if (known == 0 && none == 0)
        snprintf(d.text, sizeof(d.text), "no listener with a target");
    else if (known == 0)
        snprintf(d.text, sizeof(d.text), "unknown");
    return sd_admin_check("backends", *ok, d.text);
}

static json_t *sd_admin_check_workers(const struct sd_admin_snap *s, int *ok)
{
    char text[64];

    *ok = s->alive > 0;
    snprintf(text, sizeof(text), "%d/%d alive", s->alive, s->configured);
    return sd_admin_check("workers", *ok, text);
}

int sd_admin_readyz(const struct sd_stats *st, const struct sd_gen *g, int64_t now_ms,
                    struct sd_admin_out *out, int *ready)
{
    struct sd_admin_snap *s = sd_admin_snap_take(st, g);
    json_t *root = NULL, *checks = json_array();
    int ok[4] = { 0, 0, 0, 0 }, bad = 0;
    int64_t now = now_ms / 1000;

    *ready = 0;
    if (s == NULL || checks == NULL) {
        bad = 1;
        goto out;
    }
    sd_admin_jpush(checks, sd_admin_check_config(s, g, &ok[0]), &bad);
    sd_admin_jpush(checks, sd_admin_check_certs(g, now, &ok[1]), &bad);
    sd_admin_jpush(checks, sd_admin_check_backends(s, g, &ok[2]), &bad);
    sd_admin_jpush(checks, sd_admin_check_workers(s, &ok[3]), &bad);
    *ready = ok[0] && ok[1] && ok[2] && ok[3] && !bad;
    root = json_pack("{s:b, s:O}", "ready", *ready, "checks", checks);
out:
    json_decref(checks);
    free(s);
    return sd_admin_json_out(root, bad, JSON_COMPACT, out);
}

/* ------------------------------------------------------------- /status */

struct sd_admin_certs_json {
    json_t *a;
    int bad;
    struct sd_admin_ca_cut ca;
};

static int sd_admin_cert_json(void *arg, const struct sd_tls_cert_info *ci)
{
    struct sd_admin_certs_json *k = arg;
    json_t *o;

    if (!sd_admin_ca_show(&k->ca, ci))
        return 0;
    o = json_object();
    sd_admin_jset(o, "role", json_string(ci->role), &k->bad);
    sd_admin_jset(o, "subject", sd_admin_jstr(ci->subject), &k->bad);
    sd_admin_jset(o, "issuer", sd_admin_jstr(ci->issuer), &k->bad);
    sd_admin_jset(o, "serial", json_string(ci->serial), &k->bad);
    sd_admin_jset(o, "sha256", json_string(ci->sha256), &k->bad);
    sd_admin_jset(o, "not_before", sd_admin_jtime(ci->not_before), &k->bad);
    sd_admin_jset(o, "not_after", sd_admin_jtime(ci->not_after), &k->bad);
    sd_admin_jset(o, "file", sd_admin_jstr(ci->file), &k->bad);
    sd_admin_jpush(k->a, o, &k->bad);
    return k->bad ? -1 : 0;
}

static int sd_admin_crl_json(void *arg, const struct sd_tls_crl_info *ci)
{
    struct sd_admin_certs_json *k = arg;
    json_t *o = json_object();

    sd_admin_jset(o, "file", sd_admin_jstr(ci->file), &k->bad);
    sd_admin_jset(o, "issuer", sd_admin_jstr(ci->issuer), &k->bad);
    sd_admin_jset(o, "last_update", sd_admin_jtime(ci->last_update), &k->bad);
    sd_admin_jset(o, "next_update", sd_admin_jtime(ci->next_update), &k->bad);
    sd_admin_jset(o, "delta", json_boolean(ci->delta), &k->bad);
    sd_admin_jpush(k->a, o, &k->bad);
    return k->bad ? -1 : 0;
}

/* Listener i of g as JSON; *bad set on failure. */
static json_t *sd_admin_listener_json(const struct sd_admin_snap *s, const struct sd_gen *g,
                                      size_t i, int *bad)
{
    const struct sd_listener_conf *lc = &g->cfg->listeners[i];
    struct sd_admin_certs_json certs = { json_array(), 0, { 0 } },
                               crls = { json_array(), 0, { 0 } };
    json_t *o = json_object();

    sd_admin_jset(o, "name", sd_admin_jstr(lc->name), bad);
    sd_admin_jset(o, "mode", json_string(sd_config_mode_name(lc->mode)), bad);
    sd_admin_jset(o, "listen", sd_admin_jstr(lc->listen), bad);
    if (sd_admin_has_target(lc))
        sd_admin_jset(o, "target", sd_admin_jstr(lc->target), bad);
    sd_admin_jset(o, "tls", json_boolean(g->tls[i] != NULL), bad);
    /* A connector's rules judge its server (verify-*); the others' their
     * clients (allow-*). */
    sd_admin_jset(o, lc->mode == SD_MODE_CONNECT ? "verify_rules" : "allow_rules",
                  sd_admin_jint(sd_policy_count(lc->policy)), bad);
    sd_admin_jset(o, "crls", sd_admin_jint(lc->ncrls), bad);
    sd_admin_jset(o, "connections_open",
                  sd_admin_jint(s->sum[i].open > 0 ? (uint64_t)s->sum[i].open : 0), bad);
    if (certs.a == NULL || crls.a == NULL)
        *bad = 1;
    else {
        sd_admin_ca_cut_of(g->tls[i], lc, &certs.ca);
        (void)sd_tls_info_certs(g->tls[i], lc, sd_admin_cert_json, &certs);
        (void)sd_tls_info_crls(g->tls[i], sd_admin_crl_json, &crls);
    }
    /* All of them counted; the 64 that expire first listed. */
    sd_admin_jset(o, "ca_certificates", sd_admin_jint(certs.ca.total), bad);
    *bad |= certs.bad | crls.bad;
    sd_admin_jset(o, "certificates", certs.a, bad);
    sd_admin_jset(o, "crl_files", crls.a, bad);
    return o;
}

int sd_admin_status(const struct sd_stats *st, const struct sd_gen *g, int64_t now_ms,
                    struct sd_admin_out *out)
{
    struct sd_admin_snap *s = sd_admin_snap_take(st, g);
    json_t *root = json_object(), *o, *listeners = json_array();
    int bad = 0;
    size_t i;

    if (s == NULL || root == NULL || listeners == NULL) {
        json_decref(listeners);
        bad = 1;
        goto out;
    }
    sd_admin_jset(root, "version", json_string(SD_VERSION), &bad);
    sd_admin_jset(root, "openssl", sd_admin_jstr(sd_tls_openssl_version()), &bad);
    sd_admin_jset(root, "now", sd_admin_jtime(now_ms / 1000), &bad);
    sd_admin_jset(root, "start_time", sd_admin_jtime(s->m.started_ms / 1000), &bad);
    sd_admin_jset(root, "generation", sd_admin_jint(g->id), &bad);
    sd_admin_jset(root, "stale", json_boolean(s->m.stale != 0), &bad);
    if (s->m.last_reload_ms != 0) {
        o = json_object();
        sd_admin_jset(o, "time", sd_admin_jtime(s->m.last_reload_ms / 1000), &bad);
        sd_admin_jset(o, "result", json_string(s->m.last_reload_ok ? "ok" : "failed"), &bad);
        sd_admin_jset(o, "error", s->m.last_reload_ok ? json_null()
                                                      : sd_admin_jstr(s->m.last_reload_msg),
                      &bad);
    } else {
        o = json_null();
    }
    sd_admin_jset(root, "last_reload", o, &bad);
    o = json_object();
    sd_admin_jset(o, "ok", sd_admin_jint(s->m.reloads_ok), &bad);
    sd_admin_jset(o, "failed", sd_admin_jint(s->m.reloads_failed), &bad);
    sd_admin_jset(root, "reloads", o, &bad);
    o = json_object();
    sd_admin_jset(o, "configured", json_integer(s->configured), &bad);
    sd_admin_jset(o, "alive", json_integer(s->alive), &bad);
    sd_admin_jset(o, "restarts", sd_admin_jint(s->m.worker_restarts_total), &bad);
    sd_admin_jset(root, "workers", o, &bad);
    for (i = 0; i < s->n && !bad; i++)
        sd_admin_jpush(listeners, sd_admin_listener_json(s, g, i, &bad), &bad);
    sd_admin_jset(root, "listeners", listeners, &bad);
out:
    free(s);
    return sd_admin_json_out(root, bad, JSON_INDENT(2), out);
}
