/*
 * sd/admin.h - the admin listener's pages, rendered (admin_render.c).
 *
 * Pure: a page is made from the shared counters (sd/stats.h), a generation
 * (its listeners and TLS contexts, read through sd_tls_info_*) and the
 * wall clock the caller passes, into a bounded output. No socket, no
 * OpenSSL type: the connection engine that serves them is mode/admin.c,
 * and tests/unit/test_admin_render.c renders them without one.
 *
 *   /metrics   Prometheus text format 0.0.4 (names: docs/operations.md)
 *   /readyz    {"ready":bool,"checks":[{"name","ok","detail"}...]}
 *   /status    what runs: version, reloads, workers, listeners and their
 *              certificates and CRLs (JSON)
 */
#ifndef SD_ADMIN_H
#define SD_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"

struct sd_gen;
struct sd_stats;

/* The largest page: a render that would pass it fails (answered 500). */
#define SD_ADMIN_OUT_MAX (8u * 1024u * 1024u)

/* A growable output with a cap: it grows (doubling) up to max bytes and
 * never past; a write that would pass max, or a failed allocation, marks
 * it failed and every later write is ignored. data is NUL-terminated
 * whenever it is non-NULL. */
struct sd_admin_out {
    char *data; /* owned: sd_admin_out_fini */
    size_t len, cap, max;
    int failed;
};

/* Starts an empty output holding at most max bytes. */
void sd_admin_out_init(struct sd_admin_out *o, size_t max);
/* Frees the bytes; o is empty (and may be used again) after. */
void sd_admin_out_fini(struct sd_admin_out *o);
/* Appends n bytes. Returns 0, or -1 (failed: the output is void). */
int sd_admin_out_put(struct sd_admin_out *o, const void *p, size_t n);
int sd_admin_out_puts(struct sd_admin_out *o, const char *s);
int sd_admin_out_printf(struct sd_admin_out *o, const char *fmt, ...) SD_PRINTF(2, 3);

/* Each renderer appends one page to out and returns 0, or -1 when out
 * failed (past its cap, or out of memory): what it holds is then no page.
 * st may be NULL (no shared counters: every counter reads zero); g is the
 * generation to describe (the worker's current one). now_ms is the wall
 * clock in milliseconds (sd_stats_wall_ms()). */

/* /metrics: every family of docs/operations.md, each with # HELP and
 * # TYPE, its samples together, label values escaped. */
int sd_admin_metrics(const struct sd_stats *st, const struct sd_gen *g,
                     struct sd_admin_out *out);

/* /readyz: the checks config, certificates, backends and workers; *ready
 * is set to 1 when every check passed (answer 200), else 0 (503). */
int sd_admin_readyz(const struct sd_stats *st, const struct sd_gen *g, int64_t now_ms,
                    struct sd_admin_out *out, int *ready);

/* /status: the process and every listener of g, as JSON. */
int sd_admin_status(const struct sd_stats *st, const struct sd_gen *g, int64_t now_ms,
                    struct sd_admin_out *out);

/* RFC 3339 UTC text of Unix seconds t ("2025-01-31T12:00:00Z") into
 * buf[0, 32). */
void sd_admin_rfc3339(int64_t t, char buf[32]);

#endif
