/* stats.c - the shared counters (see sd/stats.h). */
#include "sd/stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#include "sd/err.h"

const uint32_t sd_stats_hs_bounds_us[SD_STATS_HS_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 10000000,
};

const char *const sd_stats_result_words[SD_STATS_RESULTS] = { "ok", "refused", "error" };

/* Every word sd_auth_check() refuses with (src/auth/auth.c, jwt.c), then
 * "other": tests/unit/test_stats.c checks the list against the sources. */
const char *const sd_stats_auth_kinds[SD_STATS_AUTH_KINDS] = {
    "auth_missing", "auth_multiple", "apikey_unknown", "apikey_revoked",
    "apikey_expired", "apikey_not_bound", "apikey_path_denied", "jwt_malformed",
    "jwt_alg_refused", "jwt_unknown_key", "jwt_bad_signature", "jwt_bad_claims",
    "jwt_expired", "jwt_not_yet_valid", "jwt_wrong_issuer", "jwt_wrong_audience",
    "jwt_no_cnf", "jwt_cnf_mismatch", "other",
};

struct sd_stats {
    struct sd_stats_master *master;
    struct sd_stats_lst *lst; /* [nworkers][SD_STATS_SLOTS] */
    int nworkers;
    size_t size;              /* of the whole mapping */
    void *base;
};

static struct sd_stats *sd_stats_current;

struct sd_stats *sd_stats_get(void)
{
    return sd_stats_current;
}

void sd_stats_set(struct sd_stats *st)
{
    sd_stats_current = st;
}

struct sd_stats *sd_stats_new(int nworkers, struct sd_err *err)
{
    struct sd_stats *st;
    size_t head, body;

    if (nworkers < 1 || nworkers > SD_MAX_WORKERS) {
        sd_err_set(err, "stats: %d workers", nworkers);
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        sd_err_set(err, "out of memory");
        return NULL;
    }
    /* The worker blocks start on a cache line of their own, so the
     * master's writes never share a line with a worker's counters. */
    head = (sizeof(struct sd_stats_master) + 63) & ~(size_t)63;
    body = (size_t)nworkers * SD_STATS_SLOTS * sizeof(struct sd_stats_lst);
    st->size = head + body;
    /* Anonymous and shared: inherited by every fork, zero-filled, and
     * only the pages a worker writes are ever backed by memory. */
    st->base = mmap(NULL, st->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (st->base == MAP_FAILED) {
        sd_err_set(err, "stats: mmap %zu bytes: %s", st->size, strerror(errno));
        free(st);
        return NULL;
    }
    st->master = st->base;
    st->lst = (struct sd_stats_lst *)((char *)st->base + head);
    st->nworkers = nworkers;
    st->master->nworkers = nworkers;
    return st;
}

void sd_stats_free(struct sd_stats *st)
{
    if (st == NULL)
        return;
    if (sd_stats_current == st)
        sd_stats_current = NULL;
    munmap(st->base, st->size);
    free(st);
}

struct sd_stats_master *sd_stats_master(struct sd_stats *st)
{
    return st != NULL ? st->master : NULL;
}

void sd_stats_master_begin(struct sd_stats *st)
{
    if (st == NULL)
        return;
    __atomic_store_n(&st->master->seq, st->master->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

void sd_stats_master_end(struct sd_stats *st)
{
    if (st == NULL)
        return;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&st->master->seq, st->master->seq + 1, __ATOMIC_RELAXED);
}

/* A seqlock read: the copy is kept only if no write began or ended during
 * it. The master writes rarely (a reload, a worker's death), so a few
 * tries always suffice; after them the last copy is taken as it is (a
 * scrape must answer, and a torn text is still NUL-terminated below). */
void sd_stats_master_read(const struct sd_stats *st, struct sd_stats_master *out)
{
    int tries;

    for (tries = 0; tries < 1000; tries++) {
        uint64_t s1 = __atomic_load_n(&st->master->seq, __ATOMIC_ACQUIRE);
        /* Copied every time, so that after the last try the last copy is
         * what is shown (never an untouched, zeroed buffer). */
        memcpy(out, st->master, sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!(s1 & 1) && __atomic_load_n(&st->master->seq, __ATOMIC_RELAXED) == s1)
            break;
        sched_yield(); /* the master is inside a write: let it finish */
    }
    out->last_reload_msg[SD_STATS_MSG_MAX - 1] = '\0';
    for (tries = 0; tries < SD_STATS_SLOTS; tries++)
        out->names[tries][SD_STATS_NAME_MAX - 1] = '\0';
}

/* FNV-1a over the whole name: the row keeps only its first bytes. */
static uint64_t sd_stats_name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *name != '\0'; name++)
        h = (h ^ (uint8_t)*name) * 0x100000001b3ull;
    return h;
}

int sd_stats_slot(const struct sd_stats *st, const char *name)
{
    uint64_t h;
    int i;

    if (st == NULL || name == NULL)
        return -1;
    h = sd_stats_name_hash(name);
    for (i = 0; i < SD_STATS_SLOTS; i++)
        if (st->master->names[i][0] != '\0' && st->master->name_hash[i] == h &&
            strncmp(st->master->names[i], name, SD_STATS_NAME_MAX - 1) == 0)
            return i;
    return -1;
}

void sd_stats_assign(struct sd_stats *st, const struct sd_config *cfg, uint64_t gen_id)
{
    size_t k;
    int i, w;

    if (st == NULL)
        return;
    /* Only the master writes the table, so it searches it without the
     * sequence counter; readers see the counter odd only around the few
     * stores of each change (a scrape during a reload then waits a few
     * stores, not the whole assignment). */
    for (k = 0; k < cfg->nlisteners; k++) {
        const char *name = cfg->listeners[k].name;
        int slot = sd_stats_slot(st, name), oldest = -1;

        if (slot < 0) {
            /* A free row, else the one unused for longest: its counters
             * start again from zero under the new name (a counter reset,
             * which Prometheus's rate() handles). Never a row the
             * generation being assigned uses. */
            for (i = 0; i < SD_STATS_SLOTS && slot < 0; i++)
                if (st->master->names[i][0] == '\0')
                    slot = i;
            for (i = 0; i < SD_STATS_SLOTS && slot < 0; i++)
                if (st->master->name_gen[i] != gen_id &&
                    (oldest < 0 || st->master->name_gen[i] < st->master->name_gen[oldest]))
                    oldest = i;
            if (slot < 0 && oldest >= 0) {
                slot = oldest;
                for (w = 0; w < st->nworkers; w++)
                    memset(sd_stats_lst(st, w, slot), 0, sizeof(struct sd_stats_lst));
            }
            if (slot < 0)
                continue; /* cannot happen: SLOTS > MAX_LISTENERS */
            sd_stats_master_begin(st);
            memset(st->master->names[slot], 0, SD_STATS_NAME_MAX);
            strncpy(st->master->names[slot], name, SD_STATS_NAME_MAX - 1);
            st->master->name_hash[slot] = sd_stats_name_hash(name);
            sd_stats_master_end(st);
        }
        __atomic_store_n(&st->master->name_gen[slot], gen_id, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&st->master->generation, gen_id, __ATOMIC_RELAXED);
}

struct sd_stats_lst *sd_stats_lst(struct sd_stats *st, int worker, int slot)
{
    if (st == NULL || slot < 0 || slot >= SD_STATS_SLOTS || worker < 0 ||
        worker >= st->nworkers)
        return NULL;
    return &st->lst[(size_t)worker * SD_STATS_SLOTS + (size_t)slot];
}

void sd_stats_sum(const struct sd_stats *st, int slot, struct sd_stats_lst *out)
{
    const uint64_t *src;
    uint64_t *dst = (uint64_t *)out;
    size_t n = sizeof(*out) / sizeof(uint64_t), i;
    int64_t ok_ms = 0, fail_ms = 0;
    int w;

    _Static_assert(sizeof(struct sd_stats_lst) % sizeof(uint64_t) == 0,
                   "sd_stats_lst is made of 64-bit words");
    memset(out, 0, sizeof(*out));
    if (st == NULL || slot < 0 || slot >= SD_STATS_SLOTS)
        return;
    for (w = 0; w < st->nworkers; w++) {
        const struct sd_stats_lst *l = &st->lst[(size_t)w * SD_STATS_SLOTS + (size_t)slot];
        int64_t ok = __atomic_load_n(&l->backend_ok_ms, __ATOMIC_RELAXED);
        int64_t fail = __atomic_load_n(&l->backend_fail_ms, __ATOMIC_RELAXED);

        src = (const uint64_t *)l;
        for (i = 0; i < n; i++)
            dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
        ok_ms = ok > ok_ms ? ok : ok_ms;
        fail_ms = fail > fail_ms ? fail : fail_ms;
    }
    /* Times are not summed: the latest of any worker. */
    out->backend_ok_ms = ok_ms;
    out->backend_fail_ms = fail_ms;
}

void sd_stats_worker_down(struct sd_stats *st, int worker)
{
    int s;

    if (st == NULL || worker < 0 || worker >= st->nworkers)
        return;
    for (s = 0; s < SD_STATS_SLOTS; s++)
        __atomic_store_n(&st->lst[(size_t)worker * SD_STATS_SLOTS + (size_t)s].open, 0,
                         __ATOMIC_RELAXED);
}

void sd_stats_handshake(struct sd_stats_lst *l, int resumed, uint64_t duration_us)
{
    size_t b = 0;

    if (l == NULL)
        return;
    sd_stats_add(resumed ? &l->hs_resumed : &l->hs_full, 1);
    while (b < SD_STATS_HS_BUCKETS && duration_us > sd_stats_hs_bounds_us[b])
        b++;
    sd_stats_add(&l->hs_bucket[b], 1);
    sd_stats_add(&l->hs_sum_us, duration_us);
}

size_t sd_stats_auth_kind(const char *why)
{
    size_t i;

    for (i = 0; why != NULL && i < SD_STATS_AUTH_KINDS - 1; i++)
        if (strcmp(sd_stats_auth_kinds[i], why) == 0)
            return i;
    return SD_STATS_AUTH_KINDS - 1;
}

int64_t sd_stats_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
