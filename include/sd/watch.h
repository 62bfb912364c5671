/*
 * sd/watch.h - notices when the files a configuration uses change.
 *
 * A configured path can change what it names in many ways: the file is
 * replaced by a rename, a directory along the path is swapped (a
 * `current -> releases/v2` symlink, Kubernetes' `..data`), a symlink is
 * re-pointed, a directory is deleted and made again. So the path is not
 * watched as a file: it is resolved one component at a time, as the kernel
 * does, following every symlink, and each directory in which a name is
 * looked up is watched for changes to that name (a configured directory,
 * such as a CA directory, for any name in it). After any such change the
 * paths are resolved again, so the watches follow the new layout; a watch
 * the kernel drops (its directory deleted or moved) is re-established the
 * same way, and a directory that does not exist (yet) is noticed through
 * its nearest existing ancestor, which holds the missing name.
 *
 * Events are debounced by the caller, and a content fingerprint of every
 * file decides whether anything really changed, so a touch or an unrelated
 * file in the same directory does not cause a reload.
 *
 * Bounded: at most SD_WATCH_MAX_DIRS directories, SD_WATCH_MAX_NAMES
 * watched names and SD_WATCH_MAX_PATHS paths (more are logged and left
 * out); a path or symlink target longer than SD_WATCH_PATH_MAX is not
 * followed. Nothing here opens a configured file: resolving uses lstat and
 * readlink only, which never wait for a FIFO's writer.
 */
#ifndef SD_WATCH_H
#define SD_WATCH_H

#include <stdint.h>

#include "sd/files.h"

#define SD_WATCH_MAX_DIRS 256
#define SD_WATCH_MAX_NAMES 1024
#define SD_WATCH_MAX_PATHS 1024
#define SD_WATCH_PATH_MAX 4096
#define SD_WATCH_MAX_LINKS 40 /* symlinks followed per path, as the kernel */

struct sd_watch_state; /* private to watch.c */

struct sd_watch {
    int fd;                        /* inotify fd, -1 when watching is off */
    int64_t due_ms;                /* 0, or when to look at a pending change */
    struct sd_watch_state *st;     /* the paths and what is watched for them */
};

/* Opens the inotify instance. Returns 0, or -1 with err. */
int sd_watch_open(struct sd_watch *w, struct sd_err *err);
/* Closes it and frees the state; safe to call twice, and on a zeroed
 * struct whose fd is -1. */
void sd_watch_close(struct sd_watch *w);

/* Watches every path of the snapshot (whether a change matters is decided
 * by comparing the snapshot's fingerprint with the disk's:
 * sd_files_fingerprint_disk()). The paths are copied: the snapshot may be
 * freed afterwards. */
void sd_watch_set(struct sd_watch *w, const struct sd_files *files);

/* Reads pending events (a bounded number per call: a flood of events
 * cannot hold the caller); returns 1 when any may change what a configured
 * path names (a change may be due). Watches are moved to the current
 * layout before it returns. */
int sd_watch_read(struct sd_watch *w);

#endif
