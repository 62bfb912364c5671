/* master.c - start-up, worker supervision and shutdown (see sd/master.h). */
#include "sd/master.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sd/files.h"
#include "sd/gen.h"
#include "sd/log.h"
#include "sd/notify.h"
#include "sd/privs.h"
#include "sd/probe.h"
#include "sd/sesscache.h"
#include "sd/stats.h"
#include "sd/tls.h"
#include "sd/watch.h"
#include "sd/worker.h"

#define SD_LISTEN_BACKLOG 4096
#define SD_RESTART_BACKOFF_MS 1000 /* a worker that dies young waits this long */
#define SD_KILL_GRACE_MS 5000      /* after the drain timeout, SIGKILL */

struct sd_worker_slot {
    int ctl;            /* master's end of the worker's control socket */
    pid_t pid;
    int64_t started_ms;
    int64_t restart_at_ms; /* 0: no restart pending */
};

struct sd_master {
    struct sd_gen *gen;          /* current generation (workers fork from it) */
    struct sd_files *files;      /* what it was built from: digests, no bytes */
    struct sd_files *tried;      /* the last snapshot that failed to load (digests), or NULL */
    const struct sd_source *src; /* where reloads read the configuration */
    int nworkers;                /* fixed at start */
    /* The listening sockets, one row per address, one socket per worker in
     * each row: row r's address is addrs[r], worker w's socket fds[r *
     * nworkers + w]. A row is known by its address (a reload may reorder,
     * rename, add and remove listeners), and so is it handed to workers. */
    size_t nls;                  /* rows in use */
    struct sd_addr *addrs;       /* [SD_MASTER_ROWS] */
    struct sd_unix_owned *owned; /* [SD_MASTER_ROWS]: row r's socket file, if unix */
    int *fds;                    /* [SD_MASTER_ROWS * nworkers] */
    struct sd_worker_slot *slots;
    struct sd_watch watch;
    int sigfd;
    int stopping;
    int64_t kill_at_ms;
    int64_t expiry_check_ms;     /* next CRL check (and certificates, if due) */
    int64_t cert_warn_ms;        /* next certificate check */
    struct sd_sesscache *cache;  /* shared by all workers */
    struct sd_stats *stats;      /* the counters, shared with the workers */
    struct sd_probe probe;       /* idle backends, tried for /readyz */
    struct sd_privs privs;       /* the --user account, when dropped is set */
    int dropped;                 /* runs as privs since start (no capabilities) */
};

/* Rows: a reload opens the sockets of the listeners it adds before it
 * closes those of the ones it removes. */
#define SD_MASTER_ROWS (2 * SD_MAX_LISTENERS)

#define SD_SESSION_CACHE_SLOTS 16384

#define SD_WATCH_DEBOUNCE_MS 200
#define SD_EXPIRY_PERIOD_MS (12 * 3600 * 1000LL)
#define SD_CRL_CHECK_PERIOD_MS (3600 * 1000LL)

static void sd_master_close_listeners(struct sd_master *m)
{
    size_t i, n = m->nls * (size_t)m->nworkers;

    for (i = 0; m->fds != NULL && i < n; i++) {
        if (m->fds[i] >= 0) {
            close(m->fds[i]);
            m->fds[i] = -1;
        }
    }
}

/* The master is leaving: the socket files it created go with it, so a
 * caller finds no path rather than a socket nobody accepts on. Only the
 * master calls this (a worker's exit must not remove the file under the
 * others). */
static void sd_master_unlink_owned(struct sd_master *m)
{
    size_t r;

    for (r = 0; m->owned != NULL && r < m->nls; r++)
        sd_net_unlink_unix(&m->addrs[r], &m->owned[r]);
}

static void sd_master_close_ctl(struct sd_master *m)
{
    int i;

    for (i = 0; m->slots != NULL && i < m->nworkers; i++) {
        if (m->slots[i].ctl >= 0)
            close(m->slots[i].ctl);
        m->slots[i].ctl = -1;
    }
}

static void sd_master_free(struct sd_master *m)
{
    sd_master_close_listeners(m);
    sd_master_close_ctl(m);
    sd_gen_unref(m->gen);
    m->gen = NULL;
    sd_files_free(m->files);
    m->files = NULL;
    sd_files_free(m->tried);
    m->tried = NULL;
    free(m->fds);
    m->fds = NULL;
    free(m->addrs);
    m->addrs = NULL;
    free(m->owned);
    m->owned = NULL;
    free(m->slots);
    sd_watch_close(&m->watch);
    if (m->sigfd >= 0)
        close(m->sigfd);
    sd_tls_set_session_cache(NULL);
    sd_sesscache_free(m->cache);
    m->cache = NULL;
    sd_probe_close(&m->probe);
    sd_stats_free(m->stats);
    m->stats = NULL;
}

/* Expiry warnings: certificates at load and every 12 hours, CRLs at load
 * and every hour (a CRL lives days, not years: a development one 7 days).
 * all: a load (certificates too, whenever the last time was). */
static void sd_master_warn_expiry(struct sd_master *m, int all)
{
    int64_t now = sd_now_ms();
    int certs = all || now >= m->cert_warn_ms;
    size_t i;

    for (i = 0; i < m->gen->cfg->nlisteners; i++) {
        if (m->gen->tls[i] == NULL) /* a plaintext admin listener has none */
            continue;
        if (certs)
            sd_tls_warn_expiry(m->gen->tls[i], &m->gen->cfg->listeners[i],
                               m->gen->cfg->expiry_warning_s);
        sd_tls_warn_crls(m->gen->tls[i], m->gen->cfg->listeners[i].name,
                         m->gen->cfg->expiry_warning_s);
    }
    if (certs)
        m->cert_warn_ms = now + SD_EXPIRY_PERIOD_MS;
    m->expiry_check_ms = now + SD_CRL_CHECK_PERIOD_MS;
}

/* Raises the soft open-file limit to the hard one: each connection needs
 * two descriptors. */
static void sd_master_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
}

/* Warns when the open-file limit cannot hold max-conns connections per
 * worker (two descriptors each) next to what a worker keeps open anyway.
 * Workers then accept no more than fits (worker.c), and the other clients
 * wait in the kernel queue rather than being handshaken and dropped. */
static void sd_master_check_nofile(const struct sd_master *m)
{
    const struct sd_config *cfg = m->gen->cfg;
    uint64_t fixed = SD_FD_FIXED(m->nls), need = (uint64_t)cfg->max_conns * 2 + fixed;
    struct sd_logline l;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        (uint64_t)rl.rlim_cur >= need)
        return;
    /* A warning when the user asked for max-conns; the default is only
     * what fits, and is said so quietly. */
    sd_log_begin(&l, cfg->max_conns_set ? "warn" : "info", "fd_limit");
    sd_log_u64(&l, "open_file_limit", (uint64_t)rl.rlim_cur);
    sd_log_u64(&l, "max_conns", cfg->max_conns);
    sd_log_u64(&l, "needed", need);
    sd_log_u64(&l, "accepts_at_most",
               (uint64_t)rl.rlim_cur > fixed ? ((uint64_t)rl.rlim_cur - fixed) / 2 : 0);
    sd_log_str(&l, "msg", "the open-file limit cannot hold max-conns connections per worker "
               "(two descriptors each, plus listeners and the process's own): each worker "
               "accepts at most accepts_at_most, the rest wait in the kernel queue");
    sd_log_end(&l);
}

/* Opens row m->nls for addr: one SO_REUSEPORT socket per worker, after
 * checking no other process holds the address. Returns 0, or -1 with err
 * (nothing kept open). */
static int sd_master_open_row(struct sd_master *m, const struct sd_addr *addr,
                              unsigned unix_mode, struct sd_err *err)
{
    size_t nw = (size_t)m->nworkers, r = m->nls, w;
    int ufd = -1;

    m->owned[r].set = 0;
    if (r >= SD_MASTER_ROWS)
        return sd_err_set(err, "%s: too many listening addresses", addr->text);
    /* A unix socket (a connector's): one socket, a descriptor of it per
     * worker, all accepting from the one queue. */
    if (addr->ss.ss_family == AF_UNIX &&
        (ufd = sd_net_listen_unix(addr, unix_mode, SD_LISTEN_BACKLOG, &m->owned[r], err)) < 0)
        return -1;
    if (ufd < 0 && sd_net_check_free(addr, err) != 0)
        return -1;
    for (w = 0; w < nw; w++) {
        int fd = ufd >= 0 ? (w == 0 ? ufd : fcntl(ufd, F_DUPFD_CLOEXEC, 0))
                          : sd_net_listen(addr, SD_LISTEN_BACKLOG, err);
        if (fd < 0 && ufd >= 0)
            sd_err_set(err, "%s: %s", addr->text, strerror(errno));
        if (fd < 0) {
            while (w-- > 0) {
                close(m->fds[r * nw + w]);
                m->fds[r * nw + w] = -1;
            }
            sd_net_unlink_unix(addr, &m->owned[r]);
            return -1;
        }
        m->fds[r * nw + w] = fd;
    }
    m->addrs[r] = *addr;
    m->nls++;
    return 0;
}

/* Closes row r (the master's copies: the address stops accepting once the
 * workers have closed theirs) and moves the later rows down. */
static void sd_master_drop_row(struct sd_master *m, size_t r)
{
    size_t nw = (size_t)m->nworkers, w;

    for (w = 0; w < nw; w++)
        if (m->fds[r * nw + w] >= 0)
            close(m->fds[r * nw + w]);
    /* The workers may still accept on their copies until they take the
     * reload; new callers find no file, as they would after it. */
    sd_net_unlink_unix(&m->addrs[r], &m->owned[r]);
    memmove(&m->fds[r * nw], &m->fds[(r + 1) * nw], (m->nls - r - 1) * nw * sizeof(*m->fds));
    memmove(&m->addrs[r], &m->addrs[r + 1], (m->nls - r - 1) * sizeof(*m->addrs));
    memmove(&m->owned[r], &m->owned[r + 1], (m->nls - r - 1) * sizeof(*m->owned));
    m->nls--;
    for (w = 0; w < nw; w++)
        m->fds[m->nls * nw + w] = -1;
}

/* The row bound to addr, or -1. */
static long sd_master_row_of(const struct sd_master *m, const struct sd_addr *addr)
{
    size_t r;

    for (r = 0; r < m->nls; r++)
        if (sd_net_same_addr(&m->addrs[r], addr))
            return (long)r;
    return -1;
}

static int sd_master_prepare(struct sd_master *m, struct sd_err *err)
{
    const struct sd_config *cfg = m->gen->cfg;
    size_t i, nw = (size_t)m->nworkers;

    m->fds = malloc(SD_MASTER_ROWS * nw * sizeof(*m->fds));
    m->addrs = calloc(SD_MASTER_ROWS, sizeof(*m->addrs));
    m->owned = calloc(SD_MASTER_ROWS, sizeof(*m->owned));
    m->slots = calloc(nw, sizeof(*m->slots));
    if (m->fds == NULL || m->addrs == NULL || m->owned == NULL || m->slots == NULL)
        return sd_err_set(err, "out of memory");
    for (i = 0; i < SD_MASTER_ROWS * nw; i++)
        m->fds[i] = -1;
    for (i = 0; i < nw; i++)
        m->slots[i].ctl = -1;
    m->nls = 0;
    for (i = 0; i < cfg->nlisteners; i++)
        if (sd_master_open_row(m, &cfg->listeners[i].listen_addr,
                               cfg->listeners[i].listen_mode, err) != 0) {
            const struct sd_listener_conf *lc = &cfg->listeners[i];
            /* From flags a listener is named by its address, which the
             * error already starts with: say it once. */
            if (cfg->source == NULL && strcmp(lc->name, lc->listen) == 0)
                return sd_err_prefix(err, lc->mode == SD_MODE_CONNECT ? "connector"
                                          : lc->mode == SD_MODE_ADMIN ? "admin listener"
                                                                      : "listener");
            sd_config_where(cfg, lc, err);
            return -1;
        }
    return 0;
}

/* Child side of fork(): keeps only this worker's sockets, each with the
 * address of its row (the worker pairs them with listeners by address),
 * and runs it. */
static void sd_master_worker_main(struct sd_master *m, int index, int ctl)
{
    size_t i, nl = m->nls, nw = (size_t)m->nworkers;
    struct sd_listen_sock *mine = calloc(nl > 0 ? nl : 1, sizeof(*mine));
    int rc = 1;

    /* Die with the master rather than linger as an orphan holding ports. */
    (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(m->sigfd);
    m->sigfd = -1;
    sd_watch_close(&m->watch);
    sd_probe_close(&m->probe); /* the master's, in flight at the fork */
    if (mine != NULL) {
        for (i = 0; i < nl; i++) {
            mine[i].fd = m->fds[i * nw + (size_t)index];
            mine[i].addr = m->addrs[i];
            m->fds[i * nw + (size_t)index] = -1;
        }
        sd_master_close_listeners(m);
        sd_master_close_ctl(m);
        sd_files_free(m->files);
        m->files = NULL;
        rc = sd_worker_run(m->gen, m->src, mine, nl, index, ctl);
    }
    free(mine);
    sd_master_free(m);
    exit(rc);
}

static int sd_master_spawn(struct sd_master *m, int index)
{
    struct sd_logline l;
    int sv[2], restart;
    pid_t pid;

    /* The control socket carries configuration snapshots to the worker. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        sd_log_msg("error", "worker_start_failed", "socketpair: %s", strerror(errno));
        m->slots[index].restart_at_ms = sd_now_ms() + SD_RESTART_BACKOFF_MS;
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        sd_log_msg("error", "worker_start_failed", "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        m->slots[index].restart_at_ms = sd_now_ms() + SD_RESTART_BACKOFF_MS;
        return -1;
    }
    if (pid == 0) {
        sd_log_after_fork(); /* the master still owns its queued log lines */
        sd_notify_forget();  /* only the master speaks to systemd */
        close(sv[0]);
        sd_master_worker_main(m, index, sv[1]);
    }
    close(sv[1]);
    restart = m->slots[index].started_ms != 0;
    sd_stats_master_begin(m->stats);
    sd_stats_master(m->stats)->worker_pid[index] = pid;
    if (restart) {
        sd_stats_master(m->stats)->worker_restarts[index]++;
        sd_stats_master(m->stats)->worker_restarts_total++;
    }
    sd_stats_master_end(m->stats);
    if (m->slots[index].ctl >= 0)
        close(m->slots[index].ctl);
    m->slots[index].ctl = sv[0];
    m->slots[index].pid = pid;
    m->slots[index].started_ms = sd_now_ms();
    m->slots[index].restart_at_ms = 0;
    /* One event for every start (log pipelines follow worker_started); a
     * restart says so, with the counts /metrics shows. */
    sd_log_begin(&l, restart ? "warn" : "info", "worker_started");
    sd_log_i64(&l, "worker", index);
    sd_log_i64(&l, "worker_pid", pid);
    if (restart) {
        sd_log_bool(&l, "restart", 1);
        sd_log_u64(&l, "restarts", sd_stats_master(m->stats)->worker_restarts[index]);
        sd_log_u64(&l, "restarts_total", sd_stats_master(m->stats)->worker_restarts_total);
    }
    sd_log_end(&l);
    return 0;
}

static void sd_master_reap(struct sd_master *m)
{
    int status, i;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (i = 0; i < m->nworkers; i++) {
            struct sd_worker_slot *s = &m->slots[i];
            struct sd_logline l;
            int64_t now = sd_now_ms();

            if (s->pid != pid)
                continue;
            s->pid = 0;
            /* Its connections died with it: its gauges go to zero; its
             * counters stay, and its successor adds to them. */
            sd_stats_master_begin(m->stats);
            sd_stats_master(m->stats)->worker_pid[i] = 0;
            sd_stats_master_end(m->stats);
            sd_stats_worker_down(m->stats, i);
            sd_log_begin(&l, m->stopping ? "info" : "error", "worker_exited");
            sd_log_i64(&l, "worker", i);
            sd_log_i64(&l, "worker_pid", pid);
            if (WIFEXITED(status))
                sd_log_i64(&l, "exit_status", WEXITSTATUS(status));
            else if (WIFSIGNALED(status))
                sd_log_str(&l, "signal", strsignal(WTERMSIG(status)));
            sd_log_bool(&l, "restart", !m->stopping);
            sd_log_end(&l);
            if (!m->stopping)
                s->restart_at_ms = now - s->started_ms < SD_RESTART_BACKOFF_MS
                                       ? now + SD_RESTART_BACKOFF_MS : now;
        }
    }
}

static int sd_master_alive(const struct sd_master *m)
{
    int i, n = 0;

    for (i = 0; i < m->nworkers; i++)
        n += m->slots[i].pid > 0;
    return n;
}

static void sd_master_stop(struct sd_master *m, const char *why)
{
    int i;

    if (m->stopping)
        return;
    m->stopping = 1;
    sd_notifyf("STOPPING=1\nSTATUS=draining connections (%s)", why);
    sd_log_msg("info", "shutdown", "%s: closing listeners, draining connections", why);
    /* Closing the master's copies as well as the workers' removes the
     * sockets from the kernel, so new connections are refused at once. */
    sd_master_close_listeners(m);
    for (i = 0; i < m->nworkers; i++) {
        m->slots[i].restart_at_ms = 0;
        if (m->slots[i].pid > 0)
            kill(m->slots[i].pid, SIGTERM);
    }
    m->kill_at_ms = sd_now_ms() + m->gen->cfg->drain_timeout_ms + SD_KILL_GRACE_MS;
}

/* Who the processes run as, once at start. */
static void sd_master_log_privileges(const struct sd_master *m)
{
    struct sd_logline l;

    if (!m->dropped) {
        sd_log_begin(&l, "warn", "privileges");
        sd_log_str(&l, "user", "root");
        sd_log_str(&l, "msg", "master and workers run as root with every capability; "
                   "--user NAME (or 'user:' in the config file) runs them unprivileged "
                   "once the listeners are bound");
        sd_log_end(&l);
        return;
    }
    sd_log_begin(&l, "info", "privileges_dropped");
    sd_log_str(&l, "user", m->privs.spec);
    sd_log_u64(&l, "uid", m->privs.uid);
    sd_log_u64(&l, "gid", m->privs.gid);
    sd_log_u64(&l, "groups", m->privs.ngroups);
    sd_log_bool(&l, "capabilities", 0);
    sd_log_bool(&l, "no_new_privs", 1);
    sd_log_bool(&l, "dumpable", 0);
    sd_log_end(&l);
}

/* After the switch: a file of the configuration the account cannot read
 * would make every later reload fail (a certificate rotation, say), so it
 * is said at start, not at the first rotation. access() checks with the
 * real ids, which are the account's now, and never opens (or waits on) the
 * file. */
static void sd_master_check_readable(const struct sd_file *f, void *arg)
{
    const struct sd_master *m = arg;
    struct sd_logline l;

    if (f->kind == SD_FILE_ERR ||
        access(f->path, f->kind == SD_FILE_DIR ? R_OK | X_OK : R_OK) == 0)
        return;
    sd_log_begin(&l, "warn", "privileges");
    sd_log_str(&l, "file", f->path);
    sd_log_str(&l, "user", m->privs.spec);
    sd_log_str(&l, "error", strerror(errno));
    sd_log_str(&l, "msg", "the account steeldoor now runs as cannot read this file: every "
               "reload fails until it can (make it and its directories readable by the "
               "account, e.g. group-owned by its group, mode 0640 / 0750)");
    sd_log_end(&l);
}

static void sd_master_log_listening(const struct sd_master *m, const struct sd_listener_conf *lc)
{
    struct sd_logline l;

    sd_log_begin(&l, "info", "listening");
    sd_log_str(&l, "listener", lc->name);
    sd_log_str(&l, "listen", lc->listen);
    sd_log_str(&l, "target", lc->target);
    sd_log_str(&l, "cacert", lc->cacert);
    if (lc->mode == SD_MODE_ADMIN) {
        /* Plaintext only where this host alone reaches it (config.c). */
        sd_log_bool(&l, "mutual_tls", lc->cert != NULL);
        if (lc->cert != NULL)
            sd_log_u64(&l, "allow_rules", sd_policy_count(lc->policy));
    } else if (lc->mode == SD_MODE_CONNECT) {
        /* The other way round: which certificate goes out and how the
         * server is checked (client_cert_required would read as a claim
         * about the server, which is the server's to make). */
        sd_log_str(&l, "cert", lc->cert);
        if (lc->server_name != NULL)
            sd_log_str(&l, "server_name", lc->server_name);
        sd_log_u64(&l, "verify_rules", sd_policy_count(lc->policy));
        sd_log_u64(&l, "crls", lc->ncrls);
    } else {
        sd_log_bool(&l, "client_cert_required", 1);
        sd_log_u64(&l, "allow_rules", sd_policy_count(lc->policy));
        sd_log_u64(&l, "crls", lc->ncrls);
        sd_log_bool(&l, "proxy_protocol", lc->proxy_protocol);
    }
    sd_log_str(&l, "mode", sd_config_mode_name(lc->mode));
    sd_log_i64(&l, "workers", m->nworkers);
    sd_log_bool(&l, "watch", m->watch.fd >= 0);
    sd_log_end(&l);
}

/* Sends one worker a reload: the message (generation id, the addresses of
 * the listeners the reload adds), the snapshot's memfd and this worker's
 * socket of each added row (rows first..m->nls). */
static void sd_master_send(struct sd_master *m, int i, struct sd_ctl_msg *cm_msg,
                           size_t first, int memfd)
{
    size_t nw = (size_t)m->nworkers, nadd = m->nls - first, k;
    struct msghdr msg;
    struct iovec iov = { cm_msg, SD_CTL_MSG_SIZE(nadd) };
    union {
        char buf[CMSG_SPACE(sizeof(int) * (1 + SD_MAX_LISTENERS))];
        struct cmsghdr align;
    } u;
    int fds[1 + SD_MAX_LISTENERS];
    struct cmsghdr *cm;

    memset(&msg, 0, sizeof(msg));
    memset(&u, 0, sizeof(u));
    fds[0] = memfd;
    for (k = 0; k < nadd; k++)
        fds[1 + k] = m->fds[(first + k) * nw + (size_t)i];
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (1 + nadd));
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (1 + nadd));
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (1 + nadd));
    if (sendmsg(m->slots[i].ctl, &msg, MSG_NOSIGNAL) < 0) {
        /* The worker cannot apply the new configuration: replace it, so no
         * process keeps admitting by the old rules (a restarted worker
         * gets the current configuration and sockets at fork). */
        sd_log_msg("error", "reload", "worker %d: cannot send the new configuration (%s); "
                   "restarting it", i, strerror(errno));
        kill(m->slots[i].pid, SIGKILL);
    }
}

/* The lowest port an unprivileged process may bind. */
static unsigned sd_master_unprivileged_port(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
    unsigned port = 1024;

    if (f != NULL) {
        if (fscanf(f, "%u", &port) != 1)
            port = 1024;
        fclose(f);
    }
    return port;
}

/* After the switch to --user, a reload cannot bind a privileged port (no
 * capability is left to do it): says so, rather than leave a bare
 * "Permission denied" to puzzle over. */
static void sd_master_explain_bind(const struct sd_master *m, const struct sd_addr *addr,
                                   struct sd_err *err)
{
    unsigned port = 0, start;
    size_t n = strlen(err->msg);

    if (!m->dropped)
        return;
    if (addr->ss.ss_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)&addr->ss)->sin_port);
    else if (addr->ss.ss_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)&addr->ss)->sin6_port);
    start = sd_master_unprivileged_port();
    if (port >= start || n >= sizeof(err->msg) - 1)
        return;
    snprintf(err->msg + n, sizeof(err->msg) - n, " (port %u is below %u, "
             "net.ipv4.ip_unprivileged_port_start, and steeldoor runs as %s without any "
             "capability since it started: a listener on it can only be added by a restart)",
             port, start, m->privs.spec);
}

struct sd_master_diff {
    struct sd_logline *l;
    const char *want; /* "changed", "added" or "removed" */
    int open;
};

static void sd_master_diff_one(const char *path, const char *how, void *arg)
{
    struct sd_master_diff *d = arg;
    char key[16];

    if (strcmp(how, d->want) != 0)
        return;
    if (!d->open) {
        snprintf(key, sizeof(key), "files_%s", how);
        sd_log_array_begin_bounded(d->l, key, 2048);
        d->open = 1;
    }
    sd_log_array_strn_bounded(d->l, path, strlen(path), 512);
}

/* Which files a reload read differently from the running configuration's:
 * "files_changed", "files_added", "files_removed" (each only when not
 * empty), so an operator sees what the reload was for (or what broke it). */
static void sd_master_log_files(struct sd_logline *l, const struct sd_files *before,
                                const struct sd_files *now)
{
    static const char *const hows[] = { "changed", "added", "removed" };
    size_t i;

    for (i = 0; i < sizeof(hows) / sizeof(hows[0]); i++) {
        struct sd_master_diff d = { l, hows[i], 0 };
        (void)sd_files_diff(before, now, sd_master_diff_one, &d);
        if (d.open)
            sd_log_array_end(l);
    }
}

/* The result of a reload, for /metrics, /readyz and /status: a failure
 * leaves the old configuration serving and marks it stale until a reload
 * works. */
static void sd_master_record_reload(struct sd_master *m, int ok, const char *msg)
{
    struct sd_stats_master *sm = sd_stats_master(m->stats);

    sd_stats_master_begin(m->stats);
    if (ok)
        sm->reloads_ok++;
    else
        sm->reloads_failed++;
    sm->stale = !ok;
    sm->last_reload_ok = ok;
    sm->last_reload_ms = sd_stats_wall_ms();
    snprintf(sm->last_reload_msg, sizeof(sm->last_reload_msg), "%s", msg);
    sd_stats_master_end(m->stats);
}

/* Builds and checks a whole new generation from a fresh snapshot of the
 * files; only if all of it is valid (and the sockets of the listeners it
 * adds are open) is it swapped in, and the workers get that same snapshot,
 * so they apply exactly what was validated here. Listeners are known by
 * their address: a reordered or renamed one keeps its sockets, an added
 * one gets new sockets (passed to the live workers with the snapshot), a
 * removed one's sockets are closed here and by the workers. */
static void sd_master_reload(struct sd_master *m, const char *why)
{
    struct sd_err err;
    struct sd_files *files = sd_files_new(), *old_files;
    struct sd_gen *g = NULL;
    struct sd_logline l;
    struct sd_ctl_msg msg;
    size_t first = m->nls, r, k, nremoved = 0;
    int i, fd = -1;

    sd_notify_reloading();
    if (files == NULL) {
        sd_err_set(&err, "out of memory");
    } else {
        g = sd_gen_load(m->src, files, m->gen->id + 1, &err);
        for (k = 0; g != NULL && k < g->cfg->nlisteners; k++) {
            const struct sd_listener_conf *lc = &g->cfg->listeners[k];
            long row = sd_master_row_of(m, &lc->listen_addr);
            if (row >= 0) {
                /* Kept: its socket file takes the listen-mode in force. */
                if (sd_net_unix_set_mode(&m->addrs[row], &m->owned[row], lc->listen_mode,
                                         &err) != 0) {
                    sd_err_prefix(&err, lc->name);
                    sd_gen_unref(g);
                    g = NULL;
                }
                continue;
            }
            if (sd_master_open_row(m, &lc->listen_addr, lc->listen_mode, &err) != 0) {
                sd_master_explain_bind(m, &lc->listen_addr, &err);
                sd_err_prefix(&err, lc->name);
                sd_gen_unref(g);
                g = NULL;
            }
        }
        if (g != NULL && (fd = sd_files_pack(files, &err)) < 0) {
            sd_gen_unref(g);
            g = NULL;
        }
    }
    if (g == NULL) {
        sd_master_record_reload(m, 0, err.msg);
        while (m->nls > first)
            sd_master_drop_row(m, m->nls - 1);
        sd_log_begin(&l, "error", "reload_failed");
        sd_log_str(&l, "trigger", why);
        sd_log_str(&l, "msg", err.msg);
        sd_log_u64(&l, "generation", m->gen->id);
        sd_log_str(&l, "result", "the running configuration stays in force");
        if (files != NULL)
            sd_master_log_files(&l, m->files, files);
        sd_log_end(&l);
        /* Still serving (the old generation): systemd must not wait. */
        sd_notifyf("READY=1\nSTATUS=serving generation %llu; the last reload failed: %s",
                   (unsigned long long)m->gen->id, err.msg);
        /* Remember what was tried, so the same broken files are not tried
         * again on every event; the next change triggers the next attempt. */
        if (files != NULL) {
            sd_files_drop_data(files); /* only its digests are compared */
            sd_files_free(m->tried);
            m->tried = files;
            sd_watch_set(&m->watch, files);
        }
        return;
    }
    if (g->cfg->workers != m->nworkers)
        sd_log_msg("warn", "reload", "workers %d -> %d: the number of workers changes "
                   "only on restart", m->nworkers, g->cfg->workers);
    if ((g->cfg->user == NULL) != !m->dropped ||
        (m->dropped && strcmp(g->cfg->user, m->privs.spec) != 0))
        sd_log_msg("warn", "reload", "user: the configuration now says %s; the account "
                   "steeldoor runs as (%s) changes only on restart",
                   g->cfg->user != NULL ? g->cfg->user : "none",
                   m->dropped ? m->privs.spec : "the one it started as");
    g->cfg->workers = m->nworkers;
    sd_gen_unref(m->gen);
    m->gen = g;
    /* Validated and packed for the workers: from now on only the digests
     * are needed (change detection), so the bytes, private keys among
     * them, leave the master's memory. */
    sd_files_drop_data(files);
    old_files = m->files; /* freed after the reload's line names what changed */
    m->files = files;
    sd_files_free(m->tried);
    m->tried = NULL;
    /* The new names get their counters before any worker can count. */
    sd_stats_assign(m->stats, g->cfg, g->id);
    sd_master_record_reload(m, 1, "");
    memset(&msg, 0, offsetof(struct sd_ctl_msg, add));
    msg.gen_id = g->id;
    msg.nadd = (uint32_t)(m->nls - first);
    for (r = first; r < m->nls; r++)
        msg.add[r - first] = m->addrs[r];
    for (i = 0; i < m->nworkers; i++)
        if (m->slots[i].pid > 0 && m->slots[i].ctl >= 0)
            sd_master_send(m, i, &msg, first, fd);
    close(fd);
    /* The workers have their copies now (or get them at fork); the rows of
     * removed listeners go. Bounded: each turn drops a row or moves on. */
    for (r = 0; r < m->nls;) {
        if (sd_gen_find_listener(g, &m->addrs[r]) >= 0) {
            r++;
            continue;
        }
        sd_log_begin(&l, "info", "listener_removed");
        sd_log_str(&l, "listen", m->addrs[r].text);
        sd_log_u64(&l, "generation", g->id);
        sd_log_end(&l);
        sd_master_drop_row(m, r);
        first--; /* the added rows moved down with the others */
        nremoved++;
    }
    sd_log_begin(&l, "info", "reloaded");
    sd_log_str(&l, "trigger", why);
    sd_log_u64(&l, "generation", g->id);
    sd_log_u64(&l, "listeners_added", m->nls - first);
    sd_log_u64(&l, "listeners_removed", nremoved);
    sd_master_log_files(&l, old_files, files);
    sd_log_end(&l);
    sd_files_free(old_files);
    for (r = first; r < m->nls; r++) {
        int li = sd_gen_find_listener(g, &m->addrs[r]);
        if (li >= 0)
            sd_master_log_listening(m, &g->cfg->listeners[li]);
    }
    if (m->nls > first)
        sd_master_check_nofile(m);
    sd_watch_set(&m->watch, files);
    sd_master_warn_expiry(m, 1);
    sd_notifyf("READY=1\nSTATUS=serving generation %llu, %zu listeners",
               (unsigned long long)g->id, g->cfg->nlisteners);
}

static int sd_master_loop(struct sd_master *m)
{
    for (;;) {
        struct pollfd pfd[2 + SD_MAX_LISTENERS] = { { .fd = m->sigfd, .events = POLLIN },
                                                    { .fd = m->watch.fd, .events = POLLIN } };
        struct signalfd_siginfo si;
        int64_t now = sd_now_ms(), wake = -1, pw;
        int i, timeout, reload = 0, nprobe = 0;

        if (m->stopping && sd_master_alive(m) == 0)
            return 0;
        for (i = 0; i < m->nworkers; i++) {
            struct sd_worker_slot *s = &m->slots[i];
            if (s->restart_at_ms != 0 && s->restart_at_ms <= now)
                sd_master_spawn(m, i);
            if (s->restart_at_ms != 0 && (wake < 0 || s->restart_at_ms < wake))
                wake = s->restart_at_ms;
        }
        if (!m->stopping && m->watch.due_ms != 0) {
            if (now >= m->watch.due_ms) {
                m->watch.due_ms = 0;
                const struct sd_files *seen = m->tried != NULL ? m->tried : m->files;
                if (sd_files_fingerprint_disk(seen) != sd_files_fingerprint(seen))
                    sd_master_reload(m, "files changed");
            } else if (wake < 0 || m->watch.due_ms < wake) {
                wake = m->watch.due_ms;
            }
        }
        if (!m->stopping) {
            if (now >= m->expiry_check_ms)
                sd_master_warn_expiry(m, 0);
            if (wake < 0 || m->expiry_check_ms < wake)
                wake = m->expiry_check_ms;
        }
        if (!m->stopping && (pw = sd_probe_tick(&m->probe, m->stats, m->gen, now)) >= 0) {
            if (wake < 0 || pw < wake)
                wake = pw;
            nprobe = sd_probe_pollfds(&m->probe, &pfd[2]);
        }
        if (m->stopping) {
            if (now >= m->kill_at_ms) {
                for (i = 0; i < m->nworkers; i++)
                    if (m->slots[i].pid > 0)
                        kill(m->slots[i].pid, SIGKILL);
                m->kill_at_ms = now + SD_KILL_GRACE_MS;
            }
            wake = m->kill_at_ms;
        }
        timeout = wake < 0 ? -1 : (int)(wake > now ? wake - now : 0);
        timeout = sd_log_flush_timeout(timeout); /* queued log lines: retry soon */
        if (m->watch.fd < 0)
            pfd[1].fd = -1; /* poll ignores it; the probes follow at [2] */
        if (poll(pfd, (nfds_t)(2 + nprobe), timeout) < 0 && errno != EINTR)
            return 1;
        if (nprobe > 0)
            sd_probe_events(&m->probe, m->stats, &pfd[2], nprobe, sd_now_ms());
        if (m->watch.fd >= 0 && (pfd[1].revents & POLLIN) && sd_watch_read(&m->watch) &&
            m->watch.due_ms == 0)
            m->watch.due_ms = sd_now_ms() + SD_WATCH_DEBOUNCE_MS;
        while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            switch (si.ssi_signo) {
            case SIGCHLD:
                sd_master_reap(m);
                break;
            case SIGTERM:
                sd_master_stop(m, "SIGTERM");
                break;
            case SIGINT:
                sd_master_stop(m, "SIGINT");
                break;
            case SIGHUP:
                reload = 1;
                break;
            }
        }
        sd_master_reap(m); /* a SIGCHLD can be merged with another */
        if (reload && !m->stopping)
            sd_master_reload(m, "SIGHUP");
    }
}

int sd_master_run(struct sd_config *cfg, struct sd_files *files,
                  const struct sd_source *src)
{
    struct sd_master m;
    struct sd_err err;
    sigset_t set;
    size_t i;
    int w, rc = 1;

    memset(&m, 0, sizeof(m));
    sd_probe_init(&m.probe);
    m.sigfd = -1;
    m.watch.fd = -1;
    m.src = src;
    signal(SIGPIPE, SIG_IGN);
    m.files = files;
    /* The account is looked up before anything is bound or built, so a
     * typo stops the start at once (and while NSS is still reachable). */
    if ((cfg->user != NULL && sd_privs_resolve(cfg->user, &m.privs, &err) != 0) ||
        sd_tls_init(&err) != 0) {
        sd_config_free(cfg);
        sd_files_free(files);
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        return 1;
    }
    m.cache = sd_sesscache_new(SD_SESSION_CACHE_SLOTS, &err);
    if (m.cache == NULL) {
        sd_config_free(cfg);
        sd_files_free(files);
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        return 1;
    }
    /* Even with one worker: a reload replaces the TLS contexts and with
     * them OpenSSL's in-process caches; sessions a reload did not
     * invalidate are still found here. */
    sd_tls_set_session_cache(m.cache);
    m.gen = sd_gen_new(cfg, files, 1, &err);
    if (m.gen == NULL) {
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        goto out;
    }
    /* The generation is built (workers fork from it and get later
     * snapshots packed): keep only the files' digests, not their bytes. */
    sd_files_drop_data(m.files);
    m.nworkers = m.gen->cfg->workers;
    /* Before the first fork: every worker, and every restarted one,
     * inherits the one mapping. */
    if ((m.stats = sd_stats_new(m.nworkers, &err)) == NULL) {
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        goto out;
    }
    sd_stats_set(m.stats);
    sd_stats_master(m.stats)->started_ms = sd_stats_wall_ms();
    sd_stats_assign(m.stats, m.gen->cfg, m.gen->id);
    sd_master_raise_nofile(); /* before the sockets are opened */
    if (sd_master_prepare(&m, &err) != 0) {
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        goto out;
    }
    if (m.gen->cfg->watch && sd_watch_open(&m.watch, &err) != 0) {
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        goto out;
    }
    sd_watch_set(&m.watch, m.files);
    sd_master_check_nofile(&m);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
        (m.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        sd_err_set(&err, "signalfd: %s", strerror(errno));
        sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
        goto out;
    }
    for (i = 0; i < m.gen->cfg->nlisteners; i++)
        sd_master_log_listening(&m, &m.gen->cfg->listeners[i]);
    sd_master_warn_expiry(&m, 1);
    /* Every socket is bound and every key read: the privileges are no
     * longer needed. The lines above opened the log sink as root (an
     * unprivileged account could not reopen the caller's pipe or
     * terminal); workers are forked after this, so they never have any. */
    if (m.gen->cfg->user != NULL) {
        if (sd_privs_drop(&m.privs, &err) != 0) {
            sd_err_prefix(&err, m.privs.spec);
            sd_err_prefix(&err, "--user");
            sd_log_fatal(src->connect ? "connect" : "serve", err.msg);
            goto out;
        }
        m.dropped = 1;
        sd_master_log_privileges(&m);
        sd_files_each(m.files, sd_master_check_readable, &m);
    } else if (geteuid() == 0) {
        sd_master_log_privileges(&m);
    }
    for (w = 0; w < m.nworkers; w++)
        sd_master_spawn(&m, w);
    /* Every socket is bound and listening (the kernel queues for the
     * workers from now on): a client systemd lets in now is served. */
    sd_notifyf("READY=1\nMAINPID=%ld\nSTATUS=serving generation %llu, %zu listeners",
               (long)getpid(), (unsigned long long)m.gen->id, m.gen->cfg->nlisteners);
    rc = sd_master_loop(&m);
    sd_log_msg("info", "stopped", "all workers have exited");
out:
    sd_master_unlink_owned(&m);
    sd_master_free(&m);
    return rc;
}
