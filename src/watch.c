/* watch.c - file change detection for automatic reload (see sd/watch.h). */
#include "sd/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd/log.h"

/* What can change the entry a name refers to (created, deleted, renamed
 * to or from, rewritten in place, permissions), and the loss of the
 * directory itself. Reading a file (IN_ACCESS, IN_OPEN, IN_CLOSE_NOWRITE)
 * is not watched, so the fingerprint's own reads cause no event. */
#define SD_WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | \
                       IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
/* The directory as it is at this path, never a symlink's target (a path
 * being resolved here has no symlink left in it; one that became a symlink
 * meanwhile was a change its parent's watch reports). */
#define SD_WATCH_ADD_FLAGS (SD_WATCH_MASK | IN_ONLYDIR | IN_DONT_FOLLOW)
#define SD_WATCH_POOL (64u << 10) /* bytes for watched names */
#define SD_WATCH_READS 64         /* reads of the inotify fd per sd_watch_read() */

/* One set of watches: the directories (by watch descriptor) and, for each,
 * the names in it that matter, or all of them. */
struct sd_watch_table {
    int wd[SD_WATCH_MAX_DIRS];
    unsigned char all[SD_WATCH_MAX_DIRS];
    int ndirs;
    struct {
        int dir;
        unsigned off; /* into pool */
    } names[SD_WATCH_MAX_NAMES];
    int nnames;
    size_t used;
    int full; /* something did not fit */
    char pool[SD_WATCH_POOL];
};

struct sd_watch_state {
    char **paths; /* copies of the snapshot's paths */
    size_t npaths;
    /* The current table and the one a rescan builds; a rescan removes
     * only the watches the new layout no longer needs, so a directory
     * watched before and after keeps its watch and loses no event. */
    struct sd_watch_table tab[2];
    int cur;
};

int sd_watch_open(struct sd_watch *w, struct sd_err *err)
{
    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->st = calloc(1, sizeof(*w->st));
    if (w->st == NULL)
        return sd_err_set(err, "inotify: out of memory");
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        sd_err_set(err, "inotify: %s", strerror(errno));
        sd_watch_close(w);
        return -1;
    }
    return 0;
}

static void sd_watch_free_paths(struct sd_watch_state *st)
{
    size_t i;

    for (i = 0; i < st->npaths; i++)
        free(st->paths[i]);
    free(st->paths);
    st->paths = NULL;
    st->npaths = 0;
}

void sd_watch_close(struct sd_watch *w)
{
    if (w->fd >= 0)
        close(w->fd); /* drops every watch with it */
    w->fd = -1;
    if (w->st != NULL) {
        sd_watch_free_paths(w->st);
        free(w->st);
        w->st = NULL;
    }
}

static int sd_watch_find(const struct sd_watch_table *t, int wd)
{
    int i;

    for (i = 0; i < t->ndirs; i++)
        if (t->wd[i] == wd)
            return i;
    return -1;
}

/* Watches directory path in table t; returns its index, or -1. */
static int sd_watch_dir(struct sd_watch *w, struct sd_watch_table *t, const char *path,
                        int loud)
{
    const struct sd_watch_table *old = &w->st->tab[w->st->cur];
    int wd = inotify_add_watch(w->fd, path, SD_WATCH_ADD_FLAGS), i;

    if (wd < 0) {
        /* Gone or swapped since it was looked at: its parent's watch has
         * reported that, and the next resolution follows it. */
        if (loud && errno != ENOENT && errno != ENOTDIR)
            sd_log_msg("warn", "watch", "%s: cannot watch for changes: %s", path,
                       strerror(errno));
        return -1;
    }
    /* The same directory reached along two paths has one watch. */
    i = sd_watch_find(t, wd);
    if (i >= 0)
        return i;
    if (t->ndirs == SD_WATCH_MAX_DIRS) {
        t->full = 1;
        if (sd_watch_find(old, wd) < 0)
            (void)inotify_rm_watch(w->fd, wd); /* no one would read its events */
        return -1;
    }
    t->wd[t->ndirs] = wd;
    t->all[t->ndirs] = 0;
    return t->ndirs++;
}

static void sd_watch_name(struct sd_watch_table *t, int dir, const char *name)
{
    size_t l = strlen(name) + 1;
    int i;

    if (t->all[dir])
        return; /* every name of this directory matters already */
    for (i = 0; i < t->nnames; i++)
        if (t->names[i].dir == dir && strcmp(t->pool + t->names[i].off, name) == 0)
            return;
    if (t->nnames == SD_WATCH_MAX_NAMES || SD_WATCH_POOL - t->used < l) {
        t->full = 1;
        return;
    }
    memcpy(t->pool + t->used, name, l);
    t->names[t->nnames].dir = dir;
    t->names[t->nnames].off = (unsigned)t->used;
    t->nnames++;
    t->used += l;
}

/* dst = a "/" b (one slash between them), within SD_WATCH_PATH_MAX;
 * -1 when it would not fit. */
static int sd_watch_join(char *dst, const char *a, size_t alen, const char *b, size_t blen)
{
    size_t sep = alen > 0 && a[alen - 1] == '/' ? 0 : 1;

    if (alen + sep + blen >= SD_WATCH_PATH_MAX)
        return -1;
    memmove(dst, a, alen);
    if (sep)
        dst[alen] = '/';
    memmove(dst + alen + sep, b, blen);
    dst[alen + sep + blen] = '\0';
    return 0;
}

/* Resolves path one component at a time, as the kernel does, and watches
 * every directory in which a name is looked up, for that name: so a change
 * anywhere that alters what the path names (a directory or symlink along
 * it swapped or re-pointed, a symlink's target directory changed, the file
 * itself replaced) is reported. A configured directory is watched for
 * every name in it. A component that does not exist ends the walk: its
 * parent, watched for its name, reports when it appears. */
static void sd_watch_resolve(struct sd_watch *w, struct sd_watch_table *t, const char *path,
                             int loud)
{
    char cur[SD_WATCH_PATH_MAX], rest[SD_WATCH_PATH_MAX], tmp[SD_WATCH_PATH_MAX];
    char name[NAME_MAX + 1];
    const char *why = NULL;
    size_t pos = 0, clen, curlen;
    int links = 0, d;
    struct stat st;

    if (strlen(path) >= sizeof(rest)) {
        why = "path too long";
        goto out;
    }
    memcpy(rest, path, strlen(path) + 1);
    if (path[0] == '/') {
        strcpy(cur, "/");
    } else if (getcwd(cur, sizeof(cur)) == NULL) {
        /* A relative path starts at the working directory (an inode:
         * renaming its ancestors changes nothing), found by name here. */
        why = "working directory unknown";
        goto out;
    }
    for (;;) {
        while (rest[pos] == '/')
            pos++;
        if (rest[pos] == '\0') {
            /* The path names a directory: any name in it matters (a CA
             * directory's listing is part of the configuration). */
            d = sd_watch_dir(w, t, cur, loud);
            if (d >= 0)
                t->all[d] = 1;
            goto out;
        }
        clen = strcspn(rest + pos, "/");
        if (clen > NAME_MAX)
            goto out; /* cannot exist */
        memcpy(name, rest + pos, clen);
        name[clen] = '\0';
        pos += clen;
        if (strcmp(name, ".") == 0)
            continue;
        if (strcmp(name, "..") == 0) {
            /* cur has no symlink in it, so its parent is textual */
            char *slash = strrchr(cur, '/');
            if (slash == cur)
                cur[1] = '\0';
            else if (slash != NULL)
                *slash = '\0';
            continue;
        }
        d = sd_watch_dir(w, t, cur, loud);
        if (d >= 0)
            sd_watch_name(t, d, name);
        curlen = strlen(cur);
        if (sd_watch_join(tmp, cur, curlen, name, clen) != 0) {
            why = "path too long";
            goto out;
        }
        /* lstat and readlink never open the file: a FIFO here cannot
         * block them. */
        if (lstat(tmp, &st) != 0)
            goto out; /* missing: the watch on cur reports its arrival */
        if (S_ISLNK(st.st_mode)) {
            char target[SD_WATCH_PATH_MAX];
            ssize_t n;
            if (++links > SD_WATCH_MAX_LINKS) {
                why = "too many levels of symbolic links";
                goto out;
            }
            n = readlink(tmp, target, sizeof(target) - 1);
            if (n <= 0)
                goto out; /* replaced meanwhile: reported by cur's watch */
            target[n] = '\0';
            /* The rest of the path continues from the link's target. */
            if (sd_watch_join(tmp, target, (size_t)n, rest + pos, strlen(rest + pos)) != 0) {
                why = "path too long";
                goto out;
            }
            memcpy(rest, tmp, strlen(tmp) + 1);
            pos = 0;
            if (target[0] == '/')
                strcpy(cur, "/");
            continue;
        }
        if (!S_ISDIR(st.st_mode))
            goto out; /* the file itself (or a non-directory in the way) */
        memcpy(cur, tmp, strlen(tmp) + 1);
    }
out:
    if (why != NULL && loud)
        sd_log_msg("warn", "watch", "%s: changes not fully watched: %s", path, why);
}

/* Resolves every path again and moves the watches to what they name now. */
static void sd_watch_rescan(struct sd_watch *w, int loud)
{
    struct sd_watch_state *st = w->st;
    struct sd_watch_table *old = &st->tab[st->cur], *t = &st->tab[!st->cur];
    size_t i;
    int k;

    t->ndirs = 0;
    t->nnames = 0;
    t->used = 0;
    t->full = 0;
    for (i = 0; i < st->npaths; i++)
        sd_watch_resolve(w, t, st->paths[i], loud);
    /* Events still queued for these report IN_IGNORED with a descriptor no
     * table holds, and are skipped: removing a watch is no change. */
    for (k = 0; k < old->ndirs; k++)
        if (old->wd[k] >= 0 && sd_watch_find(t, old->wd[k]) < 0)
            (void)inotify_rm_watch(w->fd, old->wd[k]);
    st->cur = !st->cur;
    if (t->full && loud)
        sd_log_msg("warn", "watch", "more than %d directories or %d names to watch: "
                   "some changes are seen only on SIGHUP", SD_WATCH_MAX_DIRS,
                   SD_WATCH_MAX_NAMES);
}

/* sd_watch_set()'s copy of the snapshot's paths, bounded. */
struct sd_watch_copy {
    struct sd_watch_state *st;
    int dropped;
};

static void sd_watch_copy_path(const struct sd_file *f, void *arg)
{
    struct sd_watch_copy *c = arg;
    char *p;

    if (c->st->npaths == SD_WATCH_MAX_PATHS || (p = strdup(f->path)) == NULL) {
        c->dropped++;
        return;
    }
    c->st->paths[c->st->npaths++] = p;
}

void sd_watch_set(struct sd_watch *w, const struct sd_files *files)
{
    struct sd_watch_copy c = { w->st, 0 };

    if (w->fd < 0 || w->st == NULL)
        return;
    sd_watch_free_paths(w->st);
    w->st->paths = calloc(SD_WATCH_MAX_PATHS, sizeof(*w->st->paths));
    if (w->st->paths == NULL) {
        sd_log_msg("warn", "watch", "out of memory: changes are seen only on SIGHUP");
    } else {
        sd_files_each(files, sd_watch_copy_path, &c);
        if (c.dropped)
            sd_log_msg("warn", "watch", "more than %d paths: %d are not watched for "
                       "changes (SIGHUP reloads them)", SD_WATCH_MAX_PATHS, c.dropped);
    }
    sd_watch_rescan(w, 1);
}

int sd_watch_read(struct sd_watch *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    const struct sd_watch_table *t;
    int k, relevant = 0;

    if (w->fd < 0 || w->st == NULL)
        return 0;
    t = &w->st->tab[w->st->cur];
    for (k = 0; k < SD_WATCH_READS; k++) {
        ssize_t n = read(w->fd, buf, sizeof(buf)), off = 0;
        if (n <= 0)
            break; /* EAGAIN: drained */
        while (!relevant && off + (ssize_t)sizeof(struct inotify_event) <= n) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            int d = sd_watch_find(t, ev->wd), i;
            off += (ssize_t)sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                relevant = 1; /* events were lost: look at everything */
                break;
            }
            if (d < 0)
                continue; /* a watch a rescan removed */
            /* The directory itself deleted, moved, unmounted, dropped, or
             * its permissions changed; or any name in a configured one. */
            if (ev->len == 0 || t->all[d] ||
                (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT))) {
                relevant = 1;
                break;
            }
            for (i = 0; i < t->nnames && !relevant; i++)
                if (t->names[i].dir == d && strcmp(t->pool + t->names[i].off, ev->name) == 0)
                    relevant = 1;
        }
    }
    /* The layout may have changed (a directory swapped, deleted, made
     * again): watch what the paths name now, before the caller looks. */
    if (relevant)
        sd_watch_rescan(w, 0);
    return relevant;
}
