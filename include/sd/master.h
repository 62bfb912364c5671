/*
 * sd/master.h - the supervising process of `steeldoor serve`.
 *
 * The master builds every TLS context and opens every listening socket
 * before the first worker starts (so any bad file or address stops the start
 * with a clear error), then forks the workers, restarts one that dies, and on
 * SIGTERM/SIGINT closes the listeners, lets the workers drain, and exits 0.
 */
#ifndef SD_MASTER_H
#define SD_MASTER_H

#include "sd/config.h"

struct sd_source;
struct sd_files;

/* Runs the gateway described by cfg (validated), built from the snapshot
 * files (ownership of both passes to the master), reloading from src on
 * SIGHUP or file changes. Returns the exit status. */
int sd_master_run(struct sd_config *cfg, struct sd_files *files,
                  const struct sd_source *src);

#endif
