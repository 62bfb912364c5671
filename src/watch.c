/* watch.c - file change detection for automatic reload (see sd/watch.h). */
#include "sd/watch.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "sd/log.h"

#define SD_WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | \
                       IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

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

static void sd_watch_one(const struct sd_file *f, void *arg)
{
    struct sd_watch *w = arg;

    sd_watch_add(w, f->path, 0);
    if (f->kind == SD_FILE_DIR)
        sd_watch_add(w, f->path, 1);
}

void sd_watch_set(struct sd_watch *w, const struct sd_files *files)
{
    int k;

    if (w->fd < 0)
        return;
    for (k = 0; k < w->nwds; k++)
        (void)inotify_rm_watch(w->fd, w->wds[k]);
    w->nwds = 0;
    sd_files_each(files, sd_watch_one, w);
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
