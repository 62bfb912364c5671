/* privs.c - no core files, and dropping to an unprivileged account (see sd/privs.h). */
#include "sd/privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* getpwnam_r/getgrnam_r buffers grow up to this on ERANGE (a group with
 * thousands of members needs more than the usual 16 KiB). */
#define SD_PRIVS_BUF_START 16384
#define SD_PRIVS_BUF_MAX (1u << 20)

int sd_privs_no_core(struct sd_err *err)
{
    struct rlimit none = { 0, 0 };

    /* Not dumpable: the kernel writes no core file (whatever core_pattern
     * says, with fs.suid_dumpable at its default 0) and lets no process of
     * the same user attach with ptrace or read /proc/PID/mem. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return sd_err_set(err, "cannot make the process non-dumpable: %s", strerror(errno));
    /* And a core size of 0, hard limit too, for the case the flag is ever
     * set back (the kernel does on some credential changes; see drop). */
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        return sd_err_set(err, "cannot disable core files: %s", strerror(errno));
    return 0;
}

/* A decimal id (no sign, no blanks), below the invalid (uid_t)-1. */
static int sd_privs_number(const char *s, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || errno != 0 || v >= 0xffffffffUL)
        return -1;
    *out = v;
    return 0;
}

/* getpwnam_r / getgrnam_r with a buffer grown on ERANGE. Returns 0 (found
 * or not: *found says), or -1 with err. *buf is the caller's to free. */
static int sd_privs_getpw(const char *name, struct passwd *pw, char **buf, int *found,
                          struct sd_err *err)
{
    size_t size;
    struct passwd *res = NULL;

    for (size = SD_PRIVS_BUF_START; size <= SD_PRIVS_BUF_MAX; size *= 2) {
        char *b = realloc(*buf, size);
        int rc;

        if (b == NULL)
            return sd_err_set(err, "out of memory");
        *buf = b;
        rc = getpwnam_r(name, pw, b, size, &res);
        if (rc == ERANGE)
            continue;
        if (rc != 0 && rc != ENOENT && rc != ESRCH)
            return sd_err_set(err, "user '%s': cannot look it up: %s", name, strerror(rc));
        *found = res != NULL;
        return 0;
    }
    return sd_err_set(err, "user '%s': the entry is too large", name);
}

static int sd_privs_getgr(const char *name, struct group *gr, char **buf, int *found,
                          struct sd_err *err)
{
    size_t size;
    struct group *res = NULL;

    for (size = SD_PRIVS_BUF_START; size <= SD_PRIVS_BUF_MAX; size *= 2) {
        char *b = realloc(*buf, size);
        int rc;

        if (b == NULL)
            return sd_err_set(err, "out of memory");
        *buf = b;
        rc = getgrnam_r(name, gr, b, size, &res);
        if (rc == ERANGE)
            continue;
        if (rc != 0 && rc != ENOENT && rc != ESRCH)
            return sd_err_set(err, "group '%s': cannot look it up: %s", name, strerror(rc));
        *found = res != NULL;
        return 0;
    }
    return sd_err_set(err, "group '%s': the entry is too large", name);
}

int sd_privs_resolve(const char *spec, struct sd_privs *p, struct sd_err *err)
{
    char user[SD_PRIVS_MAX_NAME], *group = NULL, *buf = NULL;
    struct passwd pw;
    struct group gr;
    unsigned long id;
    int found = 0, rc = -1, have_gid = 0;
    size_t i;

    memset(p, 0, sizeof(*p));
    if (spec == NULL || spec[0] == '\0' || strlen(spec) >= sizeof(user))
        return sd_err_set(err, "--user: expected NAME or NAME:GROUP");
    snprintf(p->spec, sizeof(p->spec), "%s", spec);
    snprintf(user, sizeof(user), "%s", spec);
    group = strchr(user, ':');
    if (group != NULL)
        *group++ = '\0';
    if (user[0] == '\0' || (group != NULL && (group[0] == '\0' || strchr(group, ':'))))
        return sd_err_set(err, "--user '%s': expected NAME or NAME:GROUP", spec);
    if (sd_privs_getpw(user, &pw, &buf, &found, err) != 0)
        goto out;
    if (found) {
        p->uid = pw.pw_uid;
        p->gid = pw.pw_gid;
        have_gid = 1;
        if (group == NULL) {
            /* The account's own groups, as login would set them. */
            int n = SD_PRIVS_MAX_GROUPS;
            if (getgrouplist(pw.pw_name, pw.pw_gid, p->groups, &n) < 0) {
                sd_err_set(err, "user '%s' is in more than %d groups", user,
                           SD_PRIVS_MAX_GROUPS);
                goto out;
            }
            p->ngroups = (size_t)n;
        }
    } else if (sd_privs_number(user, &id) == 0) {
        p->uid = (uid_t)id; /* an id without a passwd entry (containers) */
    } else {
        sd_err_set(err, "--user: no such user '%s'", user);
        goto out;
    }
    if (group != NULL) {
        if (sd_privs_getgr(group, &gr, &buf, &found, err) != 0)
            goto out;
        if (found) {
            p->gid = gr.gr_gid;
        } else if (sd_privs_number(group, &id) == 0) {
            p->gid = (gid_t)id;
        } else {
            sd_err_set(err, "--user: no such group '%s'", group);
            goto out;
        }
        have_gid = 1;
        /* Exactly the group named: no supplementary group. */
        p->groups[0] = p->gid;
        p->ngroups = 1;
    }
    if (!have_gid) {
        sd_err_set(err, "--user '%s': uid %lu has no passwd entry, so no group: give "
                   "it as UID:GROUP", spec, (unsigned long)p->uid);
        goto out;
    }
    /* uid 0 without capabilities still owns /etc, the keys, the binary;
     * gid 0 still reads what is group-readable by root. Not unprivileged. */
    if (p->uid == 0) {
        sd_err_set(err, "--user '%s' is uid 0: name an unprivileged account (or leave "
                   "--user out to stay root)", spec);
        goto out;
    }
    for (i = 0; i <= p->ngroups; i++) {
        if ((i == p->ngroups ? p->gid : p->groups[i]) == 0) {
            sd_err_set(err, "--user '%s' is in group 0 (root): name an unprivileged "
                       "account or group", spec);
            goto out;
        }
    }
    if (geteuid() == 0) {
        p->switch_ids = 1;
    } else if (p->uid != getuid() || p->uid != geteuid() || p->gid != getgid() ||
               p->gid != getegid()) {
        /* Only root can switch; anything else could not be honoured. */
        sd_err_set(err, "--user '%s': steeldoor runs as uid %lu gid %lu, not as root, so "
                   "it can only run as that account (start it as root to switch)", spec,
                   (unsigned long)geteuid(), (unsigned long)getegid());
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* The highest capability number this kernel knows. */
static int sd_privs_last_cap(void)
{
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
    int last = -1;

    if (f != NULL) {
        if (fscanf(f, "%d", &last) != 1)
            last = -1;
        fclose(f);
    }
    if (last < 0 || last > 63) {
        /* No /proc: the headers' idea, then whatever the kernel also
         * knows (PR_CAPBSET_READ fails with EINVAL past its last). */
        last = CAP_LAST_CAP;
        while (last < 63 && prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0)
            last++;
    }
    return last;
}

static int sd_privs_capget(struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3])
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };

    memset(data, 0, sizeof(*data) * _LINUX_CAPABILITY_U32S_3);
    return (int)syscall(SYS_capget, &hdr, data);
}

/* Empties the bounding set (so nothing executed could ever get a
 * capability back); needs CAP_SETPCAP. When required is 0 (already the
 * user, not root) and the capability is missing, it is left as it is:
 * no_new_privs already keeps execve from granting anything. */
static int sd_privs_clear_bounding(int required, int *cleared, struct sd_err *err)
{
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    int cap, last = sd_privs_last_cap();

    *cleared = 0;
    if (sd_privs_capget(data) != 0)
        return sd_err_set(err, "capget: %s", strerror(errno));
    if (!(data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP))) {
        if (!required)
            return 0;
        return sd_err_set(err, "cannot clear the capability bounding set: CAP_SETPCAP is "
                          "missing (a container without it?)");
    }
    for (cap = 0; cap <= last; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            return sd_err_set(err, "cannot drop capability %d from the bounding set: %s",
                              cap, strerror(errno));
    }
    *cleared = 1;
    return 0;
}

/* Checks the switch holds and cannot be undone. */
static int sd_privs_verify(const struct sd_privs *p, int bounding_cleared, struct sd_err *err)
{
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    int i, last;

    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return sd_err_set(err, "getresuid: %s", strerror(errno));
    if (ru != p->uid || eu != p->uid || su != p->uid || rg != p->gid || eg != p->gid ||
        sg != p->gid)
        return sd_err_set(err, "ids are %lu/%lu/%lu, %lu/%lu/%lu after the switch to %s",
                          (unsigned long)ru, (unsigned long)eu, (unsigned long)su,
                          (unsigned long)rg, (unsigned long)eg, (unsigned long)sg, p->spec);
    if (p->switch_ids && getgroups(0, NULL) != (int)p->ngroups)
        return sd_err_set(err, "supplementary groups were not set");
    if (sd_privs_capget(data) != 0)
        return sd_err_set(err, "capget: %s", strerror(errno));
    /* Ambient capabilities are a subset of permitted and inheritable, so
     * these three being empty means no capability is left in use. */
    for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        if (data[i].effective != 0 || data[i].permitted != 0 || data[i].inheritable != 0)
            return sd_err_set(err, "capabilities are left after the switch to %s", p->spec);
    if (bounding_cleared) {
        last = sd_privs_last_cap();
        for (i = 0; i <= last; i++)
            if (prctl(PR_CAPBSET_READ, i, 0, 0, 0) != 0)
                return sd_err_set(err, "capability %d is still in the bounding set", i);
    }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        return sd_err_set(err, "no_new_privs is not set");
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
        return sd_err_set(err, "the process is dumpable after the switch");
    /* The test that matters: root must be out of reach. */
    if (setuid(0) == 0 || setgid(0) == 0)
        return sd_err_set(err, "could switch back to root after the switch to %s", p->spec);
    return 0;
}

int sd_privs_drop(const struct sd_privs *p, struct sd_err *err)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
    int bounding_cleared;

    /* The bounding set first: clearing it takes CAP_SETPCAP, which the
     * uid switch below takes away. */
    if (sd_privs_clear_bounding(p->switch_ids, &bounding_cleared, err) != 0)
        return -1;
    /* EINVAL: a kernel before 4.3 has no ambient set to clear. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return sd_err_set(err, "cannot clear ambient capabilities: %s", strerror(errno));
    if (p->switch_ids) {
        /* Groups, then gid, then uid: each later step takes away the
         * right to do the earlier ones. All three uids and gids (real,
         * effective, saved), so there is no id to switch back to. */
        if (setgroups(p->ngroups, p->groups) != 0)
            return sd_err_set(err, "setgroups: %s", strerror(errno));
        if (setresgid(p->gid, p->gid, p->gid) != 0)
            return sd_err_set(err, "setresgid(%lu): %s", (unsigned long)p->gid,
                              strerror(errno));
        if (setresuid(p->uid, p->uid, p->uid) != 0)
            return sd_err_set(err, "setresuid(%lu): %s", (unsigned long)p->uid,
                              strerror(errno));
    }
    /* Leaving uid 0 empties the capability sets, unless securebits
     * inherited from whoever started us say otherwise: empty them here. */
    memset(none, 0, sizeof(none));
    if (syscall(SYS_capset, &hdr, none) != 0)
        return sd_err_set(err, "capset: %s", strerror(errno));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return sd_err_set(err, "cannot set no_new_privs: %s", strerror(errno));
    /* The uid change set the dumpable flag back to fs.suid_dumpable. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return sd_err_set(err, "cannot make the process non-dumpable: %s", strerror(errno));
    return sd_privs_verify(p, bounding_cleared, err);
}
