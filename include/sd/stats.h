/*
 * sd/stats.h - the counters behind /metrics, /readyz and /status.
 *
 * One shared anonymous mapping, made by the master before the first fork
 * and inherited by every worker (and every restarted one):
 *
 *   master block   reloads by result, the generation in force, the stale
 *                  flag and the last reload's result, time and message,
 *                  worker restarts, which workers are up; written by the
 *                  master only.
 *   slot names     one row per listener name ever configured (reused when
 *                  full): a listener keeps its counters across reloads that
 *                  reorder or change it, because it is found by name.
 *                  Written by the master only, before the workers are told
 *                  of the generation that names it.
 *   worker blocks  [worker][slot]: the connection counters. Each block has
 *                  one writer, its worker, so the hot path takes no lock
 *                  and no atomic read-modify-write: a relaxed load and
 *                  store of a naturally aligned 64-bit word (one plain add
 *                  on x86-64 and arm64). Readers (any worker answering a
 *                  scrape, the master) sum the blocks with relaxed loads; a
 *                  sum may miss an increment in flight, never tear one.
 *                  A worker killed and restarted takes its block over, so
 *                  counters survive it; the master zeroes only its gauges
 *                  (open connections died with it).
 *
 * Metric names and labels are rendered by admin_render.c (docs/operations.md).
 */
#ifndef SD_STATS_H
#define SD_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "sd/config.h"
#include "sd/reason.h"

/* Listener names the table holds: a reload may add listeners while the
 * old names still have open connections. */
#define SD_STATS_SLOTS (2 * SD_MAX_LISTENERS)
#define SD_STATS_NAME_MAX 128 /* bytes kept of a name (longer ones are cut) */
/* Handshake duration histogram: upper bounds in microseconds (the
 * Prometheus `le` labels are these in seconds), then +Inf. */
#define SD_STATS_HS_BUCKETS 13
extern const uint32_t sd_stats_hs_bounds_us[SD_STATS_HS_BUCKETS];
/* HTTP statuses counted one by one: 100..599. */
#define SD_STATS_HTTP_MIN 100
#define SD_STATS_HTTP_N 500
/* Second-factor failures by kind: the words of sd_stats_auth_kinds[]
 * ("auth_missing", "apikey_unknown", ...), the last one "other". */
#define SD_STATS_AUTH_KINDS 19
extern const char *const sd_stats_auth_kinds[SD_STATS_AUTH_KINDS];
#define SD_STATS_MSG_MAX 512
/* A closed connection's result, as its log line says it. */
enum sd_stats_result { SD_STATS_OK = 0, SD_STATS_REFUSED, SD_STATS_ERROR, SD_STATS_RESULTS };
extern const char *const sd_stats_result_words[SD_STATS_RESULTS]; /* "ok", "refused", "error" */

/* One listener in one worker. Only that worker writes it. */
struct sd_stats_lst {
    uint64_t accepted;               /* connections accepted (TCP) */
    int64_t open;                    /* gauge: accepted and not yet closed */
    /* Closed connections by the log line's result and reason. */
    uint64_t closed[SD_STATS_RESULTS][SD_R_COUNT_];
    uint64_t hs_full, hs_resumed;    /* completed TLS handshakes */
    uint64_t hs_bucket[SD_STATS_HS_BUCKETS + 1]; /* not cumulative; last: +Inf */
    uint64_t hs_sum_us;
    uint64_t bytes_from_client;      /* read from the client (caller) */
    uint64_t bytes_to_client;        /* written to the client (caller) */
    uint64_t backend_fail;           /* backend connects that failed or timed out */
    int64_t backend_ok_ms;           /* wall clock of the last backend connect that
                                      * succeeded / failed, 0: none */
    int64_t backend_fail_ms;
    uint64_t http[SD_STATS_HTTP_N];  /* HTTP responses by status (HTTP mode) */
    uint64_t auth_fail[SD_STATS_AUTH_KINDS];
};

struct sd_stats_master {
    uint64_t seq;             /* even: stable; odd: the master is writing below */
    uint64_t reloads_ok, reloads_failed;
    uint64_t generation;      /* in force */
    uint64_t stale;           /* 1 while the last reload failed */
    int64_t started_ms;       /* wall clock of the start */
    int64_t last_reload_ms;   /* wall clock of the last reload attempt, 0: none */
    int64_t last_reload_ok;   /* its result: 1 ok, 0 failed */
    char last_reload_msg[SD_STATS_MSG_MAX]; /* its error, "" when it worked */
    int32_t nworkers;
    int32_t pad_;
    int64_t worker_pid[SD_MAX_WORKERS];    /* 0: down (restart pending) */
    uint64_t worker_restarts[SD_MAX_WORKERS];
    uint64_t worker_restarts_total;
    char names[SD_STATS_SLOTS][SD_STATS_NAME_MAX]; /* "" : free */
    uint64_t name_gen[SD_STATS_SLOTS]; /* last generation that had the name */
    uint64_t name_hash[SD_STATS_SLOTS]; /* of the whole name: two names alike in
                                         * their first bytes keep their own rows */
    /* The master's own probes of an idle listener's target (a TCP connect
     * when no worker connected to it lately): wall clock of the last that
     * succeeded / failed, 0: none. Single int64 stores, outside seq. */
    int64_t probe_ok_ms[SD_STATS_SLOTS];
    int64_t probe_fail_ms[SD_STATS_SLOTS];
};

struct sd_stats; /* the mapping */

/* Maps the shared region for nworkers workers (1..SD_MAX_WORKERS). The
 * caller owns it (sd_stats_free); NULL with err when the mapping fails. */
struct sd_stats *sd_stats_new(int nworkers, struct sd_err *err);
void sd_stats_free(struct sd_stats *st); /* NULL is fine */

/* The process's mapping (set by the master at start, inherited by forks);
 * NULL in tools and unit tests that made none. */
struct sd_stats *sd_stats_get(void);
void sd_stats_set(struct sd_stats *st);

/* The master block; readers use sd_stats_master_read. */
struct sd_stats_master *sd_stats_master(struct sd_stats *st);
/* A consistent copy of the master block (retries while it is written). */
void sd_stats_master_read(const struct sd_stats *st, struct sd_stats_master *out);
/* Master: bracket a change to the block (seq odd while inside). */
void sd_stats_master_begin(struct sd_stats *st);
void sd_stats_master_end(struct sd_stats *st);

/* Master: gives every listener of cfg a slot (its name's, else a free one,
 * else the one whose name has gone longest unused, zeroed), recording
 * generation gen_id. Called before the workers hear of the generation. */
void sd_stats_assign(struct sd_stats *st, const struct sd_config *cfg, uint64_t gen_id);
/* The slot of a listener name, or -1 (none yet). */
int sd_stats_slot(const struct sd_stats *st, const char *name);

/* Worker w's block for slot; NULL when st is NULL or slot < 0. */
struct sd_stats_lst *sd_stats_lst(struct sd_stats *st, int worker, int slot);
/* Sums slot over every worker into out (relaxed reads). */
void sd_stats_sum(const struct sd_stats *st, int slot, struct sd_stats_lst *out);
/* Master: worker w died; its connections with it: zero its gauges. */
void sd_stats_worker_down(struct sd_stats *st, int worker);

/* Hot path: single writer, no atomic read-modify-write. NULL-safe where
 * noted by the callers (they keep a pointer that may be NULL). */
static inline void sd_stats_add(uint64_t *p, uint64_t n)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void sd_stats_addi(int64_t *p, int64_t n)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void sd_stats_seti(int64_t *p, int64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline uint64_t sd_stats_load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* The wall clock in milliseconds (CLOCK_REALTIME): the times shown to
 * operators; durations use the monotonic clock. */
int64_t sd_stats_wall_ms(void);

/* A handshake of duration_us completed (resumed or full). */
void sd_stats_handshake(struct sd_stats_lst *l, int resumed, uint64_t duration_us);
/* The index of an auth failure word in sd_stats_auth_kinds (the last,
 * "other", for a word not listed). */
size_t sd_stats_auth_kind(const char *why);

#endif
