/*
 * sd/watch.h - notices when the files a configuration uses change.
 *
 * inotify watches the directories that hold the files (not the files: a
 * certificate is usually replaced by a rename, and Kubernetes swaps a
 * symlinked directory), events are debounced, and a content fingerprint of
 * every file decides whether anything really changed, so a touch or an
 * unrelated file in the same directory does not cause a reload.
 */
#ifndef SD_WATCH_H
#define SD_WATCH_H

#include <stdint.h>

#include "sd/files.h"

#define SD_WATCH_MAX_DIRS 128

struct sd_watch {
    int fd;                        /* inotify fd, -1 when watching is off */
    int wds[SD_WATCH_MAX_DIRS];
    int nwds;
    int64_t due_ms;                /* 0, or when to look at a pending change */
};

/* Opens the inotify instance. Returns 0, or -1 with err. */
int sd_watch_open(struct sd_watch *w, struct sd_err *err);
void sd_watch_close(struct sd_watch *w);

/* Watches the directories of every file in the snapshot (whether a change
 * matters is decided by comparing the snapshot's fingerprint with the
 * disk's: sd_files_fingerprint_disk()). */
void sd_watch_set(struct sd_watch *w, const struct sd_files *files);

/* Reads pending events; returns 1 when any arrived (a change may be due). */
int sd_watch_read(struct sd_watch *w);

#endif
