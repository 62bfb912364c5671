/*
 * sd/probe.h - the master's probes of idle backends, for /readyz.
 *
 * Workers record every backend connect they make (sd/stats.h). A listener
 * with no traffic has no such record, and one whose last connect failed
 * would stay "unreachable" for ever if nothing tried again: so, while an
 * admin listener exists, the master tries a TCP connect to each target no
 * worker reached in the last SD_PROBE_PERIOD_MS, at most one per target at
 * a time, and records the result in the master block (probe_ok_ms,
 * probe_fail_ms). A probe connects and closes: it sends nothing.
 */
#ifndef SD_PROBE_H
#define SD_PROBE_H

#include <poll.h>
#include <stdint.h>

#include "sd/config.h"

#define SD_PROBE_PERIOD_MS 5000
#define SD_PROBE_TIMEOUT_MS 2000

struct sd_stats;
struct sd_gen;

struct sd_probe {
    int fd[SD_MAX_LISTENERS];   /* -1: none in flight */
    int slot[SD_MAX_LISTENERS]; /* its listener's counters row */
    int64_t deadline_ms[SD_MAX_LISTENERS];
    int64_t next_ms;            /* when the next round starts */
};

void sd_probe_init(struct sd_probe *p);
/* Closes every probe in flight. */
void sd_probe_close(struct sd_probe *p);
/* Starts the round when it is due (now_ms: monotonic) for g's listeners.
 * Returns the time the master must wake up next (a deadline or the next
 * round), or -1 when g has no admin listener (nothing to do). */
int64_t sd_probe_tick(struct sd_probe *p, struct sd_stats *st, const struct sd_gen *g,
                      int64_t now_ms);
/* Adds the probes in flight to pfd (room for SD_MAX_LISTENERS); returns
 * how many. */
int sd_probe_pollfds(const struct sd_probe *p, struct pollfd *pfd);
/* After poll: records the probes that finished (pfd as filled above, n
 * entries) and those past their deadline. */
void sd_probe_events(struct sd_probe *p, struct sd_stats *st, const struct pollfd *pfd,
                     int n, int64_t now_ms);

#endif
