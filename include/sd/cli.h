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

/* The date of the release SD_VERSION names (YYYY-MM-DD): the man page's
 * date, so that generating it twice gives the same bytes. */
#define SD_RELEASE_DATE "2026-12-02"

/* The texts of every --help, defined beside the code that prints them and
 * read by the man page too (sd_cli_man), so the two never disagree.
 * main.c's own (steeldoor --help) is passed to sd_cli_man() instead: main.o
 * is not linked into the unit tests. */
extern const char sd_serve_usage_head[];   /* cli_serve.c */
extern const char sd_connect_usage_head[];
extern const char sd_serve_usage_foot[];
extern const char *const sd_serve_groups[]; /* titles, by enum sd_key_group */
extern const char sd_pki_usage_main[];     /* pki/pki_cli.c */
extern const char sd_pki_usage_init[];
extern const char sd_pki_usage_issue[];
extern const char sd_pki_usage_revoke[];
extern const char sd_pki_usage_crl[];
extern const char sd_audit_usage[];        /* audit/audit.c */
extern const char sd_ak_usage_main[];      /* cli_apikey.c */
extern const char sd_ak_usage_new[];
extern const char sd_ak_usage_list[];
extern const char sd_ak_usage_revoke[];

/* Writes steeldoor(1) in roff (man(7) macros) to out, generated from
 * main_usage (the text of steeldoor --help), the texts above and the table
 * of keys: `steeldoor help-man`. Returns 0, or -1 when out fails. */
int sd_cli_man(FILE *out, const char *main_usage);

#endif
