/*
 * sd/privs.h - keeping secrets out of core files, and running unprivileged.
 *
 * Every steeldoor process may hold a private key (the server's, a CA's in
 * `pki`, a client's in `audit`), so each one starts by making itself not
 * dumpable and its core file size 0: a crash, a `gcore` or a same-user
 * ptrace never writes the key to disk or hands it over.
 *
 * `serve --user NAME[:GROUP]` (YAML `user:`) resolves the account before
 * anything is bound; once the master has bound every listening socket and
 * built the first generation (reading the keys as root), it switches to the
 * account for good: supplementary groups, real/effective/saved gid and uid,
 * no capability in any set (bounding and ambient included), no new
 * privileges, and checks that none of it can be undone. Workers are forked
 * from that master, so they never hold a privilege either.
 */
#ifndef SD_PRIVS_H
#define SD_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

#include "sd/err.h"

#define SD_PRIVS_MAX_GROUPS 256
#define SD_PRIVS_MAX_NAME 256

struct sd_privs {
    char spec[SD_PRIVS_MAX_NAME]; /* as given: NAME or NAME:GROUP (for logs) */
    uid_t uid;
    gid_t gid;
    gid_t groups[SD_PRIVS_MAX_GROUPS]; /* supplementary groups to set */
    size_t ngroups;
    int switch_ids; /* 1: started as root, the ids change; 0: already the user */
};

/* Makes this process not dumpable (no core file, no ptrace or /proc/PID/mem
 * access by other processes of its user) and sets RLIMIT_CORE to 0, soft and
 * hard. Both are inherited by forked children. Returns 0, or -1 with err. */
int sd_privs_no_core(struct sd_err *err);

/* Resolves spec ("NAME" or "NAME:GROUP"; a number where no such name
 * exists) into p, without changing anything. NAME alone: its primary group
 * and every group the group database lists it in; NAME:GROUP: exactly that
 * group, no supplementary ones. Refuses uid 0 or gid 0 (a root account
 * without capabilities still owns most of the system's files), and, when
 * not started as root, any account but the current one. Returns 0, or -1
 * with err. */
int sd_privs_resolve(const char *spec, struct sd_privs *p, struct sd_err *err);

/* Switches to p for good and verifies it (see above). On failure the
 * process may be half-way: the caller must exit. Returns 0, or -1 with err. */
int sd_privs_drop(const struct sd_privs *p, struct sd_err *err);

#endif
