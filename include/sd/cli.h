/*
 * sd/cli.h - the command line: `steeldoor serve|pki|--version|--help`.
 */
#ifndef SD_CLI_H
#define SD_CLI_H

#include "sd/config.h"

#define SD_VERSION "0.1.0"

struct sd_files;
/* Parses `serve` flags (argv[0] is "serve") into cfg, reading a --config
 * file through the snapshot `files`. Returns 0, 1 when --help was printed,
 * or -1 with err (a usage error). */
int sd_cli_serve_parse(int argc, char **argv, struct sd_config *cfg,
                       struct sd_files *files, struct sd_err *err);

/* Runs `steeldoor serve ...`; returns the exit status. */
int sd_cli_serve_main(int argc, char **argv);

#endif
