/*
 * sd/cli.h - the command line: `steeldoor serve|pki|--version|--help`.
 */
#ifndef SD_CLI_H
#define SD_CLI_H

#include <stdio.h>

#include "sd/err.h"

#define SD_VERSION "0.1.0"

struct sd_source;

/* Parses `serve` flags (argv[0] is "serve") with getopt, whose options
 * come from the table of keys (sd/config_keys.h), into src: the --config
 * path and every other setting as (key, value), each value checked by the
 * table's setter as it is read (so errors come in command-line order). It
 * reads no file: sd_gen_parse() builds the config from src. Returns 0, 1
 * when --help was printed, or -1 with err (a usage error). */
int sd_cli_serve_parse(int argc, char **argv, struct sd_source *src, struct sd_err *err);

/* Prints `steeldoor serve --help`, generated from the table of keys. */
void sd_cli_serve_usage(FILE *out);

/* Runs `steeldoor serve ...`; returns the exit status. */
int sd_cli_serve_main(int argc, char **argv);

/* `steeldoor connect`: the flags of one connector (client mode), parsed
 * from the same table as serve's, into src (src->connect set). */
int sd_cli_connect_parse(int argc, char **argv, struct sd_source *src, struct sd_err *err);
int sd_cli_connect_main(int argc, char **argv);
/* Prints `steeldoor connect --help` to out. */
void sd_cli_connect_usage(FILE *out);

#endif
