/*
 * sd/gen.h - a configuration generation: a validated config plus the TLS
 * context of each of its listeners, built together, used read-only, and
 * reference-counted.
 *
 * Reload builds a whole new generation first and swaps it in only when
 * every part of it is valid, so a broken file never replaces a working
 * setup. New connections take a reference to the current generation; a
 * connection keeps the generation it was admitted under until it closes, so
 * a swap never disturbs it, and the old generation is freed with its last
 * connection.
 */
#ifndef SD_GEN_H
#define SD_GEN_H

#include <stdint.h>

#include "sd/config.h"
#include "sd/tls.h"

struct sd_gen {
    int refs;
    uint64_t id;             /* 1 at start, +1 per successful reload */
    struct sd_config *cfg;   /* owned */
    struct sd_tls **tls;     /* [cfg->nlisteners], owned */
    struct sd_auth **auth;   /* [cfg->nlisteners], owned: each listener's second
                              * factor, NULL where it has none (sd/auth.h) */
};

struct sd_auth;
struct sd_config_key;

/* One setting the command line made: a key of the table and its value as
 * text ("true"/"false" for a flag without a value, e.g. --no-watch is
 * watch = "false"). */
struct sd_source_setting {
    const struct sd_config_key *key;
    char *value; /* owned */
};

/* Where a configuration comes from, kept so a reload can build it again
 * without the command-line parser: what `steeldoor serve` was told, as
 * data. getopt runs once, at start (sd_cli_serve_parse()); the master, and
 * every worker it forks (a copy of this plain memory), replay it. */
struct sd_source {
    char *config;                       /* --config FILE, or NULL: flags only */
    struct sd_source_setting *settings; /* [cap], in command-line order */
    size_t nsettings, cap;
    int check;                          /* --check: validate, print, exit */
    int connect;                        /* `steeldoor connect`: the flags' one
                                         * listener is a connector */
};

struct sd_files;

/* Returns an empty source with room for cap settings, or NULL (out of
 * memory). The caller owns it and frees it with sd_gen_source_free(). */
struct sd_source *sd_gen_source_new(size_t cap);
/* Frees src and everything it holds; NULL is fine. */
void sd_gen_source_free(struct sd_source *src);
/* Appends (key, a copy of value) to src. Returns 0, or -1 with err (full,
 * or out of memory). */
int sd_gen_source_add(struct sd_source *src, const struct sd_config_key *key,
                      const char *value, struct sd_err *err);

/* Builds and validates the configuration from src with the table's
 * setters: flags only, the saved settings are replayed onto one listener;
 * with a config file, the file is loaded (through the snapshot `files`),
 * then the process-level settings of the command line override it.
 * Returns a new config, or NULL with err; *usage is set when the error is
 * in what the user wrote (a flag or file that does not parse, a bad value:
 * exit status 2 at start), not for a configuration that is incomplete or
 * inconsistent as a whole (a listener without its target: 1). */
struct sd_config *sd_gen_parse(const struct sd_source *src, struct sd_files *files,
                               int *usage, struct sd_err *err);

/* Builds a generation from cfg (taking ownership of it, also on failure):
 * every TLS context, every file checked, read through `files`. Returns it
 * with one reference, or NULL with err naming the file at fault. */
struct sd_gen *sd_gen_new(struct sd_config *cfg, struct sd_files *files, uint64_t id,
                          struct sd_err *err);

/* Parses src and builds a generation in one step. A new unfrozen snapshot
 * reads the disk; a frozen one (from the master) replays exactly the bytes
 * the master validated. */
struct sd_gen *sd_gen_load(const struct sd_source *src, struct sd_files *files,
                           uint64_t id, struct sd_err *err);

struct sd_gen *sd_gen_ref(struct sd_gen *g);
/* Drops a reference; frees the generation with its last one. NULL is fine. */
void sd_gen_unref(struct sd_gen *g);

/* Index of the listener of g listening on addr, or -1. A listener's
 * identity is its address: a listening socket is paired with the listener
 * of its address in every generation, never by position, so a reload may
 * reorder, rename, add and remove listeners (see master.c). */
int sd_gen_find_listener(const struct sd_gen *g, const struct sd_addr *addr);

#endif
