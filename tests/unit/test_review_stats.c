/* Review regression (issue 16): sd_stats_master_read() while the master is
 * inside a write (seq odd) for longer than the reader's 100 spins - a
 * master preempted between sd_stats_master_begin() and _end(), or busy in
 * sd_stats_assign() (64 listeners x 256 slot lookups, and a memset of
 * every worker's block of each reused slot).
 *
 * stats.c promises "after them the last copy is taken as it is (a scrape
 * must answer ...)", but the loop `continue`s on an odd seq without ever
 * copying, so the caller's buffer is left as it was: all zeros in
 * admin_render.c (calloc). A scrape that lands in that window then reports
 * 0 workers alive of 0 configured (/readyz 503: a flap), reloads_total 0
 * and worker_restarts_total 0 (counters going backwards: Prometheus sees a
 * reset), start_time 0, generation-independent master fields all zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sd/config.h"
#include "sd/err.h"
#include "sd/stats.h"

static void test_read_while_master_writes_keeps_data(void **state)
{
    struct sd_err err;
    struct sd_stats *st = sd_stats_new(2, &err);
    struct sd_stats_master *m, *copy;

    (void)state;
    assert_non_null(st);
    m = sd_stats_master(st);
    sd_stats_master_begin(st);
    m->reloads_ok = 7;
    m->started_ms = 1700000000000;
    m->worker_pid[0] = 1234;
    m->worker_pid[1] = 1235;
    m->worker_restarts_total = 3;
    sd_stats_master_end(st);

    /* The master begins a change and is not done yet (preempted, or in a
     * long sd_stats_assign) while a worker renders a page. */
    sd_stats_master_begin(st);
    assert_int_equal(m->seq % 2, 1);

    copy = calloc(1, sizeof(*copy)); /* as sd_admin_snap_take() does */
    assert_non_null(copy);
    sd_stats_master_read(st, copy);
    /* Whatever the reader returns, it must not invent a stopped process:
     * the fields the master is not touching are what they were. */
    assert_int_equal(copy->nworkers, 2);
    assert_int_equal(copy->worker_pid[0], 1234);
    assert_int_equal(copy->reloads_ok, 7);
    assert_int_equal(copy->worker_restarts_total, 3);
    assert_true(copy->started_ms == 1700000000000);
    free(copy);
    sd_stats_master_end(st);
    sd_stats_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_while_master_writes_keeps_data),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
