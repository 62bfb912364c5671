/* probe.c - the master's probes of idle backends (see sd/probe.h). */
#include "sd/probe.h"

#include <string.h>
#include <unistd.h>

#include "sd/gen.h"
#include "sd/net.h"
#include "sd/stats.h"

void sd_probe_init(struct sd_probe *p)
{
    size_t i;

    memset(p, 0, sizeof(*p));
    for (i = 0; i < SD_MAX_LISTENERS; i++)
        p->fd[i] = -1;
}

void sd_probe_close(struct sd_probe *p)
{
    size_t i;

    for (i = 0; i < SD_MAX_LISTENERS; i++) {
        if (p->fd[i] >= 0)
            close(p->fd[i]);
        p->fd[i] = -1;
    }
}

static void sd_probe_done(struct sd_probe *p, struct sd_stats *st, size_t i, int ok)
{
    struct sd_stats_master *sm = sd_stats_master(st);

    close(p->fd[i]);
    p->fd[i] = -1;
    if (sm == NULL || p->slot[i] < 0 || p->slot[i] >= SD_STATS_SLOTS)
        return;
    __atomic_store_n(ok ? &sm->probe_ok_ms[p->slot[i]] : &sm->probe_fail_ms[p->slot[i]],
                     sd_stats_wall_ms(), __ATOMIC_RELAXED);
}

int64_t sd_probe_tick(struct sd_probe *p, struct sd_stats *st, const struct sd_gen *g,
                      int64_t now_ms)
{
    const struct sd_config *cfg = g->cfg;
    int64_t wall = sd_stats_wall_ms(), wake;
    size_t i, k;
    int admin = 0;

    for (i = 0; i < cfg->nlisteners; i++)
        admin |= cfg->listeners[i].mode == SD_MODE_ADMIN;
    if (!admin || st == NULL) {
        sd_probe_close(p);
        return -1;
    }
    if (now_ms >= p->next_ms) {
        p->next_ms = now_ms + SD_PROBE_PERIOD_MS;
        for (i = 0; i < cfg->nlisteners && i < SD_MAX_LISTENERS; i++) {
            const struct sd_listener_conf *lc = &cfg->listeners[i];
            struct sd_stats_lst sum;
            int slot = sd_stats_slot(st, lc->name);

            if (lc->mode == SD_MODE_ADMIN || lc->target == NULL || slot < 0)
                continue;
            /* Busy: the workers' own connects say enough. */
            sd_stats_sum(st, slot, &sum);
            if (sum.backend_ok_ms > sum.backend_fail_ms &&
                wall - sum.backend_ok_ms < SD_PROBE_PERIOD_MS)
                continue;
            for (k = 0; k < SD_MAX_LISTENERS && p->fd[k] >= 0; k++)
                ;
            if (k == SD_MAX_LISTENERS)
                break;
            p->slot[k] = slot;
            p->deadline_ms[k] = now_ms + SD_PROBE_TIMEOUT_MS;
            p->fd[k] = sd_net_connect(&lc->target_addr);
            if (p->fd[k] < 0) /* refused at once (no route, say) */
                __atomic_store_n(&sd_stats_master(st)->probe_fail_ms[slot], wall,
                                 __ATOMIC_RELAXED);
        }
    }
    wake = p->next_ms;
    for (k = 0; k < SD_MAX_LISTENERS; k++)
        if (p->fd[k] >= 0 && p->deadline_ms[k] < wake)
            wake = p->deadline_ms[k];
    return wake;
}

int sd_probe_pollfds(const struct sd_probe *p, struct pollfd *pfd)
{
    int n = 0;
    size_t k;

    for (k = 0; k < SD_MAX_LISTENERS; k++) {
        if (p->fd[k] < 0)
            continue;
        pfd[n].fd = p->fd[k];
        pfd[n].events = POLLOUT;
        pfd[n].revents = 0;
        n++;
    }
    return n;
}

void sd_probe_events(struct sd_probe *p, struct sd_stats *st, const struct pollfd *pfd,
                     int n, int64_t now_ms)
{
    size_t k;
    int j;

    for (j = 0; j < n; j++) {
        if (pfd[j].revents == 0)
            continue;
        for (k = 0; k < SD_MAX_LISTENERS; k++)
            if (p->fd[k] == pfd[j].fd)
                sd_probe_done(p, st, k, sd_net_connect_result(p->fd[k]) == 0);
    }
    for (k = 0; k < SD_MAX_LISTENERS; k++)
        if (p->fd[k] >= 0 && now_ms >= p->deadline_ms[k])
            sd_probe_done(p, st, k, 0);
}
