/*
 * sd/apikey_cli.h - `steeldoor apikey new|list|revoke`: the keys file of an
 * HTTP listener's api-keys (format and semantics: sd/apikeys.h).
 *
 *   new     generates a key, appends its digest and bindings to the file,
 *           prints the key once on stdout (it is never stored)
 *   list    shows every entry and its status; never a key or a digest
 *   revoke  marks an entry revoked (it stays in the file, so that a use of
 *           the revoked key is logged as such)
 *
 * Writes are atomic (temporary file, fsync, rename, fsync of the directory)
 * and serialised by an exclusive flock on the keys file itself, so
 * concurrent commands on one file never lose an entry.
 */
#ifndef SD_APIKEY_CLI_H
#define SD_APIKEY_CLI_H

/* Runs `steeldoor apikey ...` (argv[0] is "apikey"); returns the exit
 * status: 0 ok, 1 failure, 2 usage error. */
int sd_apikey_main(int argc, char **argv);

#endif
