/* watch.c - file change detection for automatic reload (see sd/watch.h). */
#include "sd/watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd/log.h"

#define SD_WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | \
                       IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
#define SD_WATCH_FILE_MAX (4u << 20) /* files past 4 MiB are fingerprinted by size */

int sd_watch_open(struct sd_watch *w, struct sd_err *err)
{
    memset(w, 0, sizeof(*w));
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0)
        return sd_err_set(err, "inotify: %s", strerror(errno));
    return 0;
}

void sd_watch_close(struct sd_watch *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->nwds = 0;
}

static uint64_t sd_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t sd_watch_file(uint64_t h, const char *path)
{
    char buf[8192];
    struct stat st;
    ssize_t n;
    size_t total = 0;
    int fd;

    h = sd_fnv(h, path, strlen(path) + 1);
    if (stat(path, &st) != 0)
        return sd_fnv(h, "missing", 7);
    if (S_ISDIR(st.st_mode)) {
        struct dirent **names = NULL;
        int i, count = scandir(path, &names, NULL, alphasort);
        for (i = 0; i < count; i++) {
            if (names[i]->d_name[0] != '.') {
                char sub[4096];
                snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
                h = sd_watch_file(h, sub);
            }
            free(names[i]);
        }
        free(names);
        return h;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sd_fnv(h, "unreadable", 10);
    while (total < SD_WATCH_FILE_MAX && (n = read(fd, buf, sizeof(buf))) > 0) {
        h = sd_fnv(h, buf, (size_t)n);
        total += (size_t)n;
    }
    close(fd);
    return sd_fnv(h, &st.st_size, sizeof(st.st_size));
}

uint64_t sd_watch_fingerprint(const struct sd_config *cfg)
{
    uint64_t h = 14695981039346656037ull;
    size_t i, c;

    if (cfg->source != NULL)
        h = sd_watch_file(h, cfg->source);
    for (i = 0; i < cfg->nlisteners; i++) {
        const struct sd_listener_conf *l = &cfg->listeners[i];
        h = sd_watch_file(h, l->cert);
        h = sd_watch_file(h, l->key);
        h = sd_watch_file(h, l->cacert);
        for (c = 0; c < l->ncrls; c++)
            h = sd_watch_file(h, l->crls[c]);
    }
    return h;
}

static void sd_watch_add(struct sd_watch *w, const char *path, int is_dir)
{
    char copy[4096];
    const char *dir;
    int wd, i;

    snprintf(copy, sizeof(copy), "%s", path);
    dir = is_dir ? copy : dirname(copy);
    wd = inotify_add_watch(w->fd, dir, SD_WATCH_MASK);
    if (wd < 0) {
        sd_log_msg("warn", "watch", "%s: cannot watch for changes: %s", dir, strerror(errno));
        return;
    }
    for (i = 0; i < w->nwds; i++)
        if (w->wds[i] == wd)
            return; /* inotify returns the same wd for the same directory */
    if (w->nwds < SD_WATCH_MAX_DIRS)
        w->wds[w->nwds++] = wd;
}

void sd_watch_set(struct sd_watch *w, const struct sd_config *cfg)
{
    struct stat st;
    size_t i, c;
    int k;

    if (w->fd < 0)
        return;
    for (k = 0; k < w->nwds; k++)
        (void)inotify_rm_watch(w->fd, w->wds[k]);
    w->nwds = 0;
    if (cfg->source != NULL)
        sd_watch_add(w, cfg->source, 0);
    for (i = 0; i < cfg->nlisteners; i++) {
        const struct sd_listener_conf *l = &cfg->listeners[i];
        sd_watch_add(w, l->cert, 0);
        sd_watch_add(w, l->key, 0);
        sd_watch_add(w, l->cacert, 0);
        if (stat(l->cacert, &st) == 0 && S_ISDIR(st.st_mode))
            sd_watch_add(w, l->cacert, 1);
        for (c = 0; c < l->ncrls; c++)
            sd_watch_add(w, l->crls[c], 0);
    }
    w->fingerprint = sd_watch_fingerprint(cfg);
}

int sd_watch_read(struct sd_watch *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;

    if (w->fd < 0)
        return 0;
    while (read(w->fd, buf, sizeof(buf)) > 0)
        any = 1; /* which file does not matter: the fingerprint decides */
    return any;
}
