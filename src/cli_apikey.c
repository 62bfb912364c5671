/*
 * cli_apikey.c - the `steeldoor apikey` command line: new, list, revoke.
 *
 * The file's format, its parser and everything that needs OpenSSL (key
 * generation, SHA-256, wiping) are in src/auth/apikeys.c; this file reads
 * argv, locks, reads and rewrites the keys file, and turns sd_err messages
 * into "steeldoor apikey: ..." lines. It does not include OpenSSL.
 *
 * Every change is a read-modify-write of the whole file under an exclusive
 * flock on the keys file itself (not on a sibling lock file, which would
 * be one more file to create, leave behind and get wrong). The rename that
 * publishes a change replaces the inode, so a command that waited for the
 * lock on the old inode finds the path pointing elsewhere and starts over
 * with the new file: the lock is only trusted once the path still names
 * the locked inode. The new text is always parsed back in full, and every
 * entry compared with what was meant, before it replaces the file.
 *
 * Exit status: 0 ok, 1 the operation failed, 2 the command line is wrong
 * (checked before any file is touched).
 */
#include "sd/apikey_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sd/apikeys.h"
#include "sd/cli.h" /* the usage texts, shared with the man page */

#define SD_AK_EXIT_OK    0
#define SD_AK_EXIT_FAIL  1
#define SD_AK_EXIT_USAGE 2
#define SD_AK_FILE_MAX   (64u << 20) /* sd_apikeys_parse() refuses more anyway */
#define SD_AK_LOCK_WAIT_SECS 60
#define SD_AK_HEADER \
    "# steeldoor API keys: digests only, never keys (steeldoor apikey new|list|revoke)\n"

enum {
    SD_AK_OPT_FILE = 256,
    SD_AK_OPT_ID,
    SD_AK_OPT_BIND,
    SD_AK_OPT_EXPIRES,
    SD_AK_OPT_PATH,
    SD_AK_OPT_JSON,
};

const char sd_ak_usage_main[] =
    "usage: steeldoor apikey COMMAND [OPTIONS]\n"
    "\n"
    "API keys bound to client identities: an HTTP listener with api-keys FILE\n"
    "lets a request through only with a key from FILE that is bound to the\n"
    "client certificate of its connection (docs/auth.md). FILE holds, per key,\n"
    "its SHA-256 and never the key itself.\n"
    "\n"
    "commands:\n"
    "  new     create a key, add it to FILE and print it (once)\n"
    "  list    show the keys of FILE and their status\n"
    "  revoke  revoke a key (it stays in FILE, marked revoked)\n"
    "\n"
    "Run 'steeldoor apikey COMMAND --help' for a command's options.\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";

const char sd_ak_usage_new[] =
    "usage: steeldoor apikey new --file FILE --id ID --bind PATTERN [--bind PATTERN]...\n"
    "                            [--expires DATE] [--path PREFIX]...\n"
    "\n"
    "Generates a key (\"sdk_\" and 43 base64url characters: 32 random bytes),\n"
    "adds an entry with its SHA-256 to FILE (created with mode 0600 if missing)\n"
    "and prints the key, and only the key, on stdout:\n"
    "\n"
    "    KEY=$(steeldoor apikey new --file keys.yaml --id billing-ci \\\n"
    "              --bind uri:spiffe://example.org/billing)\n"
    "\n"
    "It is shown once: FILE keeps only its digest, so a lost key is revoked and\n"
    "replaced, never recovered. FILE is rewritten in its canonical form: comments\n"
    "and formatting added by hand are not kept (the entries are). An invalid\n"
    "FILE is never changed.\n"
    "\n"
    "  --file FILE      the keys file (the listener's api-keys)\n"
    "  --id ID          the key's name in logs and for revoke: 1 to 64 of\n"
    "                   A-Z a-z 0-9 . _ -, unique in FILE\n"
    "  --bind PATTERN   a client identity the key is bound to (repeatable, at\n"
    "                   least one, at most 16): uri:URI-PATTERN, dns:NAME, cn:CN,\n"
    "                   ou:OU or spki:SHA256, as the allow rules (a value with\n"
    "                   \"://\" and no kind is a URI); \"all\" is refused\n"
    "  --expires DATE   YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM:SSZ, in the\n"
    "                   future (default: never)\n"
    "  --path PREFIX    only request paths under PREFIX (repeatable, at most 16):\n"
    "                   \"/api\" admits /api and /api/..., \"/api/\" only /api/...\n"
    "                   (default: every path)\n";

const char sd_ak_usage_list[] =
    "usage: steeldoor apikey list --file FILE [--json]\n"
    "\n"
    "Shows each key of FILE: ID, STATUS (active, expired or revoked), BOUND TO,\n"
    "EXPIRES and PATHS. Neither keys (never stored) nor digests are shown.\n"
    "\n"
    "  --file FILE  the keys file\n"
    "  --json       one JSON array of objects (id, status, bind, expires,\n"
    "               revoked, paths) instead of the table\n";

const char sd_ak_usage_revoke[] =
    "usage: steeldoor apikey revoke --file FILE --id ID\n"
    "\n"
    "Marks key ID of FILE revoked now: requests with it are refused (401,\n"
    "logged as apikey_revoked) once a running steeldoor has reloaded FILE. The\n"
    "entry stays in FILE; delete it by hand when its uses no longer need\n"
    "naming. Revoking twice changes nothing. FILE is rewritten in its\n"
    "canonical form (comments added by hand are not kept).\n"
    "\n"
    "  --file FILE  the keys file\n"
    "  --id ID      the key to revoke\n";

/* ------------------------------------------------------------ messages */

static int sd_ak_usage_err(const char *cmd, const char *fmt, ...) SD_PRINTF(2, 3);

static int sd_ak_usage_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("steeldoor apikey: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'steeldoor apikey %s--help'.\n", cmd);
    return SD_AK_EXIT_USAGE;
}

static int sd_ak_fail(const char *fmt, ...) SD_PRINTF(1, 2);

static int sd_ak_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("steeldoor apikey: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return SD_AK_EXIT_FAIL;
}

/* As sd_pki_cli_bad_opt: a bad short option is named by optopt, a bad long
 * one by argv[optind - 1]. */
static int sd_ak_bad_opt(const char *cmd, int c, char **argv)
{
    const char *arg = argv[optind - 1];

    if (c == '?' && optopt > 0 && optopt < 256)
        return sd_ak_usage_err(cmd, "unknown option '-%c'", optopt);
    if (c == ':')
        return sd_ak_usage_err(cmd, "option '%s' needs a value", arg);
    return sd_ak_usage_err(cmd, "unknown option '%s'", arg);
}

static void sd_ak_getopt_reset(void)
{
    optind = 0; /* GNU: also forget the state of an earlier scan */
    opterr = 0;
}

static int sd_ak_common(const char *cmd, int argc, char **argv, const char *file)
{
    if (optind < argc)
        return sd_ak_usage_err(cmd, "unexpected argument '%s'", argv[optind]);
    if (file == NULL || file[0] == '\0')
        return sd_ak_usage_err(cmd, "--file is required");
    return 0;
}

/* "2027-06-30T00:00:00Z" into out[21]. */
static const char *sd_ak_time_text(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
    return out;
}

/* --------------------------------------------------------- text buffer */

struct sd_ak_text {
    char *s;
    size_t len, cap;
    int failed; /* out of memory, or a string that is not UTF-8 */
};

static void sd_ak_put(struct sd_ak_text *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 4096;
        char *ns;

        while (cap - b->len < n + 1)
            cap *= 2;
        if ((ns = realloc(b->s, cap)) == NULL) {
            b->failed = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sd_ak_puts(struct sd_ak_text *b, const char *s)
{
    sd_ak_put(b, s, strlen(s));
}

static void sd_ak_printf(struct sd_ak_text *b, const char *fmt, ...) SD_PRINTF(2, 3);

static void sd_ak_printf(struct sd_ak_text *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        b->failed = 1;
    else
        sd_ak_put(b, tmp, (size_t)n);
}

/* Decodes one UTF-8 sequence at s; returns its length with *cp, or 0 when
 * it is not one (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t sd_ak_utf8(const unsigned char *s, uint32_t *cp)
{
    size_t n, i;
    uint32_t v;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        v = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        v = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        v = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* a NUL ends the string here too */
        v = v << 6 | (s[i] & 0x3fu);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* s as a YAML double-quoted scalar that libyaml reads back as exactly s:
 * '"' and '\' escaped; what libyaml would not take literally (control
 * characters, the line breaks NEL, LS and PS that it folds, the BOM and
 * non-characters) as \x, \u or \U escapes. A string that is not UTF-8
 * fails the buffer. */
static void sd_ak_yaml_str(struct sd_ak_text *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    sd_ak_put(b, "\"", 1);
    while (*p != '\0') {
        uint32_t cp;
        size_t n = sd_ak_utf8(p, &cp);

        if (n == 0) {
            b->failed = 1;
            return;
        }
        if (cp == '"' || cp == '\\') {
            sd_ak_put(b, "\\", 1);
            sd_ak_put(b, (const char *)p, 1);
        } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            sd_ak_printf(b, "\\x%02x", (unsigned)cp);
        } else if (cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
                   cp == 0xffff) {
            sd_ak_printf(b, "\\u%04x", (unsigned)cp);
        } else {
            sd_ak_put(b, (const char *)p, n);
        }
        p += n;
    }
    sd_ak_put(b, "\"", 1);
}

static void sd_ak_yaml_list(struct sd_ak_text *b, const char *field, char *const *v, size_t n)
{
    size_t i;

    if (n == 0)
        return;
    sd_ak_printf(b, "  %s:\n", field);
    for (i = 0; i < n; i++) {
        sd_ak_puts(b, "    - ");
        sd_ak_yaml_str(b, v[i]);
        sd_ak_puts(b, "\n");
    }
}

/* One entry in the canonical form; revoked overrides e->revoked. The
 * digest comes last: a reader that catches the file half written in place
 * (an editor, `cat > keys.yaml`: not this command, which renames) finds the
 * last entry without its digest, which is an error, so the reload fails and
 * the keys in force stay; cut anywhere before it, an entry would lose its
 * revocation, expiry or paths and become a key with fewer limits. */
static void sd_ak_emit(struct sd_ak_text *b, const struct sd_apikey *e, int64_t revoked)
{
    char t[32];
    size_t i;

    sd_ak_puts(b, "- id: ");
    sd_ak_yaml_str(b, e->id);
    sd_ak_puts(b, "\n");
    if (revoked != 0)
        sd_ak_printf(b, "  revoked: \"%s\"\n", sd_ak_time_text(revoked, t));
    if (e->expires != 0)
        sd_ak_printf(b, "  expires: \"%s\"\n", sd_ak_time_text(e->expires, t));
    sd_ak_yaml_list(b, "paths", e->paths, e->npaths);
    sd_ak_yaml_list(b, "bind", e->binds, e->nbinds);
    sd_ak_puts(b, "  digest: \"sha256:");
    for (i = 0; i < sizeof(e->digest); i++)
        sd_ak_printf(b, "%02x", e->digest[i]);
    sd_ak_puts(b, "\"\n");
}

static int sd_ak_same_list(char *const *a, size_t na, char *const *b, size_t nb)
{
    size_t i;

    if (na != nb)
        return 0;
    for (i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

/* 1 when the entry read back is the one meant (revoked overriding). */
static int sd_ak_same(const struct sd_apikey *got, const struct sd_apikey *want,
                      int64_t revoked)
{
    return strcmp(got->id, want->id) == 0 &&
           memcmp(got->digest, want->digest, sizeof(got->digest)) == 0 &&
           sd_ak_same_list(got->binds, got->nbinds, want->binds, want->nbinds) &&
           sd_ak_same_list(got->paths, got->npaths, want->paths, want->npaths) &&
           got->expires == want->expires && got->revoked == revoked;
}

/* ----------------------------------------------------- the locked file */

struct sd_ak_file {
    const char *path;
    int fd;           /* flock()ed, and the inode path names */
    int created;      /* by this command (so: mode 0600) */
    struct stat st;   /* of fd, once locked */
    char *data;       /* its bytes */
    size_t len;
};

static void sd_ak_file_close(struct sd_ak_file *f)
{
    /* Closing the descriptor releases the flock, after the rename. */
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    free(f->data);
    f->data = NULL;
}

static int sd_ak_open_err(const char *path, int e)
{
    if (e == ELOOP)
        return sd_ak_fail("%s: is a symbolic link; give the path of the file itself (a "
                          "rewrite would replace the link)", path);
    return sd_ak_fail("%s: cannot open: %s", path, strerror(e));
}

/* Reads the whole of fd (from offset 0) into f->data. */
static int sd_ak_read_fd(struct sd_ak_file *f, int fd)
{
    struct stat st;
    size_t cap, len = 0;
    char *buf;

    if (fstat(fd, &st) != 0)
        return sd_ak_fail("%s: %s", f->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sd_ak_fail("%s: not a regular file", f->path);
    if ((uintmax_t)st.st_size > SD_AK_FILE_MAX)
        return sd_ak_fail("%s: larger than %u bytes", f->path, SD_AK_FILE_MAX);
    cap = (size_t)st.st_size + 1;
    if ((buf = malloc(cap)) == NULL)
        return sd_ak_fail("out of memory");
    for (;;) {
        ssize_t r;

        if (len == cap) { /* the file grew: not under our lock, then */
            free(buf);
            return sd_ak_fail("%s: changed while being read", f->path);
        }
        r = pread(fd, buf + len, cap - len, (off_t)len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return sd_ak_fail("%s: cannot read: %s", f->path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    free(f->data);
    f->data = buf;
    f->len = len;
    return 0;
}

/* Opens f->path for reading only (list): no lock, the file is only ever
 * replaced whole. */
static int sd_ak_file_read(struct sd_ak_file *f)
{
    f->fd = open(f->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (f->fd < 0)
        return sd_ak_open_err(f->path, errno);
    return sd_ak_read_fd(f, f->fd);
}

static void sd_ak_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};

    (void)nanosleep(&ts, NULL);
}

/*
 * Opens f->path (creating it empty, mode 0600, when missing: an empty file
 * is a valid keys file with no key), takes an exclusive flock on it and
 * reads it. The lock counts only if, once held, the path still names the
 * locked inode: a command that held it before us may have renamed a new
 * file over the path, and then it is that file we must lock and read.
 * Polls (LOCK_NB) so that a stuck holder makes us fail after
 * SD_AK_LOCK_WAIT_SECS, naming the file, instead of hanging.
 */
static int sd_ak_file_lock(struct sd_ak_file *f)
{
    struct timespec start, now;
    long step_ms = 1;

    if (clock_gettime(CLOCK_MONOTONIC, &start) != 0)
        return sd_ak_fail("no monotonic clock: %s", strerror(errno));
    for (;;) {
        struct stat st, at;
        int fd, created = 0;

        if (clock_gettime(CLOCK_MONOTONIC, &now) != 0 ||
            now.tv_sec - start.tv_sec >= SD_AK_LOCK_WAIT_SECS)
            return sd_ak_fail("%s: another command has held its lock for %d s; is it stuck? "
                              "(fuser -v %s)", f->path, SD_AK_LOCK_WAIT_SECS, f->path);
        fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            fd = open(f->path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK |
                      O_NOCTTY | O_CLOEXEC, 0600);
            if (fd < 0 && errno == EEXIST)
                continue; /* created by another command meanwhile: open that */
            if (fd < 0)
                return sd_ak_fail("%s: cannot create: %s", f->path, strerror(errno));
            created = 1;
        }
        if (fd < 0)
            return sd_ak_open_err(f->path, errno);
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return sd_ak_fail("%s: not a regular file", f->path);
        }
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK && errno != EINTR) {
                int e = errno;
                close(fd);
                return sd_ak_fail("%s: cannot lock: %s", f->path, strerror(e));
            }
            if (clock_gettime(CLOCK_MONOTONIC, &now) != 0 ||
                now.tv_sec - start.tv_sec >= SD_AK_LOCK_WAIT_SECS) {
                close(fd);
                return sd_ak_fail("%s: another command has held its lock for %d s; is it "
                                  "stuck? (fuser -v %s)", f->path, SD_AK_LOCK_WAIT_SECS,
                                  f->path);
            }
            sd_ak_sleep_ms(step_ms);
            if (step_ms < 16)
                step_ms *= 2;
        }
        if (lstat(f->path, &at) != 0 || at.st_dev != st.st_dev || at.st_ino != st.st_ino) {
            close(fd); /* replaced (or removed) while we waited: start over */
            continue;
        }
        f->fd = fd;
        f->created = created;
        if (fstat(fd, &f->st) != 0)
            return sd_ak_fail("%s: %s", f->path, strerror(errno));
        return sd_ak_read_fd(f, fd);
    }
}

/*
 * Replaces f->path with text[0, len), atomically: a temporary file in the
 * same directory (so rename is atomic), created with O_EXCL and mode 0600,
 * given the mode (0600 for a new file) and owner of the file it replaces,
 * written, fsynced, renamed over the path; then the directory is fsynced
 * so that the new entry survives a crash. A reader (serve, list) sees the
 * old file or the new one, never half of one.
 */
static int sd_ak_file_replace(struct sd_ak_file *f, const char *text, size_t len)
{
    const char *slash = strrchr(f->path, '/');
    const char *base = slash != NULL ? slash + 1 : f->path;
    mode_t mode = f->created ? 0600 : (f->st.st_mode & 07777);
    char dir[4096], tmp[512];
    struct stat tst;
    size_t off = 0;
    int dfd = -1, fd = -1, have_tmp = 0, rc = SD_AK_EXIT_FAIL, i;

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if ((size_t)(slash - f->path) >= sizeof(dir)) {
        return sd_ak_fail("%s: path too long", f->path);
    } else {
        size_t n = slash == f->path ? 1 : (size_t)(slash - f->path);
        memcpy(dir, f->path, n);
        dir[n] = '\0';
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sd_ak_fail("%s: cannot open its directory %s: %s", f->path, dir, strerror(errno));
    for (i = 0; i < 100; i++) {
        int n = snprintf(tmp, sizeof(tmp), ".%s.%ld.%d.tmp", base, (long)getpid(), i);
        if (n < 0 || (size_t)n >= sizeof(tmp)) {
            sd_ak_fail("%s: name too long", f->path);
            goto out;
        }
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        sd_ak_fail("%s: cannot create a temporary file in %s: %s", f->path, dir,
                   strerror(errno));
        goto out;
    }
    have_tmp = 1;
    /* The umask may have taken bits off the mode of the file replaced (a
     * file the daemon's group reads); fchmod sets it exactly. The owner is
     * kept too: a root-owned copy of a file the daemon's user owned might
     * no longer be readable by serve. */
    if (fchmod(fd, mode) != 0) {
        sd_ak_fail("%s/%s: cannot set mode %04o: %s", dir, tmp, (unsigned)mode,
                   strerror(errno));
        goto out;
    }
    if (fstat(fd, &tst) != 0) {
        sd_ak_fail("%s/%s: %s", dir, tmp, strerror(errno));
        goto out;
    }
    if (!f->created && (tst.st_uid != f->st.st_uid || tst.st_gid != f->st.st_gid) &&
        fchown(fd, f->st.st_uid, f->st.st_gid) != 0) {
        sd_ak_fail("%s: cannot give the new file the owner of the old one (uid %ld, gid "
                   "%ld): %s", f->path, (long)f->st.st_uid, (long)f->st.st_gid,
                   strerror(errno));
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            sd_ak_fail("%s/%s: cannot write: %s", dir, tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        sd_ak_fail("%s/%s: cannot write: %s", dir, tmp, strerror(errno));
        goto out;
    }
    i = close(fd);
    fd = -1;
    if (i != 0) {
        sd_ak_fail("%s/%s: cannot write: %s", dir, tmp, strerror(errno));
        goto out;
    }
    if (renameat(dfd, tmp, dfd, base) != 0) {
        sd_ak_fail("%s: cannot rename %s into place: %s", f->path, tmp, strerror(errno));
        goto out;
    }
    have_tmp = 0;
    /* The new file is in place (and `new` must now show its key): a
     * directory that cannot be synced is worth a warning, not a failure. */
    if (fsync(dfd) != 0)
        fprintf(stderr, "steeldoor apikey: warning: %s is written, but its directory %s "
                "could not be synced: %s\n", f->path, dir, strerror(errno));
    rc = SD_AK_EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    if (have_tmp)
        unlinkat(dfd, tmp, 0);
    close(dfd);
    return rc;
}

/* Parses the locked file; an invalid one is named and left alone. */
static int sd_ak_file_parse(struct sd_ak_file *f, struct sd_apikeys **out)
{
    struct sd_err err;

    if (sd_apikeys_parse(f->path, f->data, f->len, out, &err) != 0)
        return sd_ak_fail("%s (not changing an invalid keys file: fix it or give another "
                          "--file)", err.msg);
    return 0;
}

/*
 * The canonical text of keys (entry `which` revoked at `revoked` when
 * revoked != 0) plus `extra` when not NULL, parsed back in full under
 * f->path's name: every entry must read back exactly as meant (so a
 * pattern the canonical form would change, or a duplicate, is caught
 * before anything is written). Then it replaces the file.
 */
static int sd_ak_rewrite(struct sd_ak_file *f, const struct sd_apikeys *keys, size_t which,
                         int64_t revoked, const struct sd_apikey *extra)
{
    struct sd_ak_text b = {0};
    struct sd_apikeys *back = NULL;
    struct sd_err err;
    size_t i, n = sd_apikeys_count(keys);
    int rc = SD_AK_EXIT_FAIL;

    sd_ak_puts(&b, SD_AK_HEADER);
    for (i = 0; i < n; i++) {
        const struct sd_apikey *e = sd_apikeys_at(keys, i);
        sd_ak_emit(&b, e, i == which && revoked != 0 ? revoked : e->revoked);
    }
    if (extra != NULL)
        sd_ak_emit(&b, extra, extra->revoked);
    if (b.failed) {
        sd_ak_fail("%s: cannot write the new text (out of memory, or a value that is not "
                   "UTF-8)", f->path);
        goto out;
    }
    if (sd_apikeys_parse(f->path, b.s, b.len, &back, &err) != 0) {
        sd_ak_fail("%s (the new text does not read back; nothing was changed)", err.msg);
        goto out;
    }
    if (sd_apikeys_count(back) != n + (extra != NULL)) {
        sd_ak_fail("%s: the new text does not read back; nothing was changed", f->path);
        goto out;
    }
    for (i = 0; i < sd_apikeys_count(back); i++) {
        const struct sd_apikey *want = i < n ? sd_apikeys_at(keys, i) : extra;
        int64_t rev = i == which && revoked != 0 ? revoked : want->revoked;

        if (!sd_ak_same(sd_apikeys_at(back, i), want, rev)) {
            sd_ak_fail("%s: key '%s' would not read back as it is; nothing was changed",
                       f->path, want->id);
            goto out;
        }
    }
    rc = sd_ak_file_replace(f, b.s, b.len);
out:
    sd_apikeys_free(back);
    free(b.s);
    return rc;
}

static const struct sd_apikey *sd_ak_by_id(const struct sd_apikeys *keys, const char *id,
                                           size_t *index)
{
    size_t i;

    for (i = 0; i < sd_apikeys_count(keys); i++)
        if (strcmp(sd_apikeys_at(keys, i)->id, id) == 0) {
            *index = i;
            return sd_apikeys_at(keys, i);
        }
    return NULL;
}

/* Writes all of s to fd 1 (no stdio: its buffer would keep a copy). */
static int sd_ak_write_stdout(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------ new */

/* Checks one value as the file's parser would; a usage error if bad. */
static int sd_ak_check(const char *cmd, const char *field, const char *value)
{
    struct sd_err err;

    if (sd_apikeys_check_field(field, value, &err) != 0)
        return sd_ak_usage_err(cmd, "%s", err.msg);
    return 0;
}

static int sd_ak_cli_new(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, SD_AK_OPT_FILE},
        {"id", required_argument, NULL, SD_AK_OPT_ID},
        {"bind", required_argument, NULL, SD_AK_OPT_BIND},
        {"expires", required_argument, NULL, SD_AK_OPT_EXPIRES},
        {"path", required_argument, NULL, SD_AK_OPT_PATH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "new ";
    struct sd_ak_file f = {.fd = -1};
    struct sd_apikeys *keys = NULL;
    struct sd_apikey e;
    struct sd_err err;
    const char *id = NULL, *expires = NULL;
    char **binds = NULL, **paths = NULL;
    char key[SD_APIKEY_TEXT_LEN + 2];
    size_t i, j, index;
    int rc = SD_AK_EXIT_USAGE, c, have_key = 0;

    memset(&e, 0, sizeof(e));
    binds = calloc((size_t)argc, sizeof(*binds));
    paths = calloc((size_t)argc, sizeof(*paths));
    if (binds == NULL || paths == NULL) {
        rc = sd_ak_fail("out of memory");
        goto out;
    }
    sd_ak_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_AK_OPT_FILE: f.path = optarg; break;
        case SD_AK_OPT_ID: id = optarg; break;
        case SD_AK_OPT_BIND: binds[e.nbinds++] = optarg; break;
        case SD_AK_OPT_PATH: paths[e.npaths++] = optarg; break;
        case SD_AK_OPT_EXPIRES: expires = optarg; break;
        case 'h':
            fputs(sd_ak_usage_new, stdout);
            rc = SD_AK_EXIT_OK;
            goto out;
        default:
            sd_ak_bad_opt(cmd, c, argv);
            goto out;
        }
    }
    if (sd_ak_common(cmd, argc, argv, f.path) != 0)
        goto out;
    if (id == NULL) {
        sd_ak_usage_err(cmd, "--id is required");
        goto out;
    }
    if (e.nbinds == 0) {
        sd_ak_usage_err(cmd, "--bind is required: the client identities the key is bound to");
        goto out;
    }
    if (e.nbinds > SD_APIKEY_MAX_BINDS || e.npaths > SD_APIKEY_MAX_PATHS) {
        sd_ak_usage_err(cmd, "at most %d --bind and %d --path", SD_APIKEY_MAX_BINDS,
                        SD_APIKEY_MAX_PATHS);
        goto out;
    }
    if (sd_ak_check(cmd, "id", id) != 0)
        goto out;
    for (i = 0; i < e.nbinds; i++) {
        if (sd_ak_check(cmd, "bind", binds[i]) != 0)
            goto out;
        for (j = 0; j < i; j++)
            if (strcmp(binds[i], binds[j]) == 0) {
                sd_ak_usage_err(cmd, "--bind '%s' is given twice", binds[i]);
                goto out;
            }
    }
    for (i = 0; i < e.npaths; i++) {
        if (sd_ak_check(cmd, "paths", paths[i]) != 0)
            goto out;
        for (j = 0; j < i; j++)
            if (strcmp(paths[i], paths[j]) == 0) {
                sd_ak_usage_err(cmd, "--path '%s' is given twice", paths[i]);
                goto out;
            }
    }
    if (expires != NULL) {
        if (sd_apikeys_parse_time("--expires", expires, &e.expires, &err) != 0) {
            sd_ak_usage_err(cmd, "%s", err.msg);
            goto out;
        }
        if (e.expires <= (int64_t)time(NULL)) {
            sd_ak_usage_err(cmd, "--expires '%s' is in the past", expires);
            goto out;
        }
    }
    memcpy(e.id, id, strlen(id) + 1);
    e.binds = binds;
    e.paths = paths;
    /* The entry alone, as it will be written and read back: a value the
     * checks above let through but the file could not hold (not UTF-8)
     * is still a command-line error, found before the file is touched. */
    {
        struct sd_ak_text b = {0};
        struct sd_apikeys *back = NULL;

        sd_ak_emit(&b, &e, 0);
        if (b.failed || sd_apikeys_parse("command line", b.s, b.len, &back, &err) != 0) {
            if (b.failed)
                sd_ak_usage_err(cmd, "a --bind or --path value is not UTF-8 text");
            else
                sd_ak_usage_err(cmd, "%s", err.msg);
            free(b.s);
            goto out;
        }
        sd_apikeys_free(back);
        free(b.s);
    }
    rc = SD_AK_EXIT_FAIL;
    if (sd_apikeys_generate(key, e.digest, &err) != 0) {
        sd_ak_fail("%s", err.msg);
        goto out;
    }
    have_key = 1;
    if (sd_ak_file_lock(&f) != 0 || sd_ak_file_parse(&f, &keys) != 0)
        goto out;
    if (sd_ak_by_id(keys, id, &index) != NULL) {
        sd_ak_fail("key '%s' already exists in %s (revoke it, or choose another --id)", id,
                   f.path);
        goto out;
    }
    if (sd_apikeys_count(keys) >= SD_APIKEYS_MAX) {
        sd_ak_fail("%s already holds %d keys, the most a file may", f.path, SD_APIKEYS_MAX);
        goto out;
    }
    if (sd_ak_rewrite(&f, keys, SIZE_MAX, 0, &e) != 0)
        goto out;
    sd_ak_file_close(&f); /* the lock: the file is in place */
    /* Only now that the digest is stored is the key shown. */
    i = strlen(key);
    key[i] = '\n';
    if (sd_ak_write_stdout(key, i + 1) != 0) {
        sd_ak_fail("cannot print the key: %s; key '%s' is in %s but nobody has it: revoke "
                   "it (steeldoor apikey revoke --file %s --id %s)", strerror(errno), id,
                   f.path, f.path, id);
        goto out;
    }
    fprintf(stderr, "steeldoor: key '%s' added to %s (shown once: it is not stored, only its "
            "SHA-256)\n", id, f.path);
    rc = SD_AK_EXIT_OK;
out:
    if (have_key)
        sd_apikeys_wipe(key, sizeof(key));
    sd_ak_file_close(&f);
    sd_apikeys_free(keys);
    free(binds);
    free(paths);
    return rc;
}

/* ----------------------------------------------------------------- list */

static const char *sd_ak_status(const struct sd_apikey *e, int64_t now)
{
    if (e->revoked != 0)
        return "revoked";
    if (e->expires != 0 && now >= e->expires)
        return "expired";
    return "active";
}

/* A value for the terminal: control bytes (C0, DEL, C1 in UTF-8) as '?'. */
static void sd_ak_shown(struct sd_ak_text *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    for (; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            sd_ak_put(b, "?", 1);
        } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            sd_ak_put(b, "?", 1);
            p++;
        } else if (p[0] == 0xe2 && ((p[1] == 0x80 && ((p[2] >= 0x8b && p[2] <= 0x8f) ||
                                                     (p[2] >= 0xaa && p[2] <= 0xae))) ||
                                    (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9))) {
            /* Zero-width and bidirectional controls (U+200B-200F,
             * U+202A-202E, U+2066-2069): a pattern must read on the
             * terminal as what it matches. */
            sd_ak_put(b, "?", 1);
            p += 2;
        } else {
            sd_ak_put(b, (const char *)p, 1);
        }
    }
}

static char *sd_ak_joined(char *const *v, size_t n, const char *none)
{
    struct sd_ak_text b = {0};
    size_t i;

    if (n == 0)
        sd_ak_puts(&b, none);
    for (i = 0; i < n; i++) {
        if (i > 0)
            sd_ak_puts(&b, ", ");
        sd_ak_shown(&b, v[i]);
    }
    if (b.failed || b.s == NULL) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static void sd_ak_json_str(struct sd_ak_text *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    sd_ak_put(b, "\"", 1);
    for (; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            sd_ak_put(b, "\\", 1);
            sd_ak_put(b, (const char *)p, 1);
        } else if (*p < 0x20 || *p == 0x7f) {
            sd_ak_printf(b, "\\u%04x", (unsigned)*p);
        } else {
            sd_ak_put(b, (const char *)p, 1);
        }
    }
    sd_ak_put(b, "\"", 1);
}

static void sd_ak_json_list(struct sd_ak_text *b, char *const *v, size_t n)
{
    size_t i;

    sd_ak_puts(b, "[");
    for (i = 0; i < n; i++) {
        if (i > 0)
            sd_ak_puts(b, ", ");
        sd_ak_json_str(b, v[i]);
    }
    sd_ak_puts(b, "]");
}

static void sd_ak_json_time(struct sd_ak_text *b, int64_t t)
{
    char text[32];

    if (t == 0)
        sd_ak_puts(b, "null");
    else
        sd_ak_json_str(b, sd_ak_time_text(t, text));
}

static int sd_ak_list_json(const struct sd_apikeys *keys, int64_t now)
{
    struct sd_ak_text b = {0};
    size_t i, n = sd_apikeys_count(keys);
    int rc = SD_AK_EXIT_OK;

    sd_ak_puts(&b, "[");
    for (i = 0; i < n; i++) {
        const struct sd_apikey *e = sd_apikeys_at(keys, i);

        sd_ak_puts(&b, i > 0 ? ",\n  {\"id\": " : "\n  {\"id\": ");
        sd_ak_json_str(&b, e->id);
        sd_ak_puts(&b, ", \"status\": ");
        sd_ak_json_str(&b, sd_ak_status(e, now));
        sd_ak_puts(&b, ", \"bind\": ");
        sd_ak_json_list(&b, e->binds, e->nbinds);
        sd_ak_puts(&b, ", \"expires\": ");
        sd_ak_json_time(&b, e->expires);
        sd_ak_puts(&b, ", \"revoked\": ");
        sd_ak_json_time(&b, e->revoked);
        sd_ak_puts(&b, ", \"paths\": ");
        sd_ak_json_list(&b, e->paths, e->npaths);
        sd_ak_puts(&b, "}");
    }
    sd_ak_puts(&b, n > 0 ? "\n]\n" : "]\n");
    if (b.failed)
        rc = sd_ak_fail("out of memory");
    else if (fputs(b.s, stdout) == EOF || fflush(stdout) != 0)
        rc = sd_ak_fail("cannot write to stdout: %s", strerror(errno));
    free(b.s);
    return rc;
}

/* Display width of a UTF-8 string (code points: good enough for a table). */
static int sd_ak_width(const char *s)
{
    int w = 0;

    for (; *s != '\0'; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

static void sd_ak_cell(const char *s, int width, int last)
{
    int pad = width - sd_ak_width(s);

    fputs(s, stdout);
    if (!last)
        printf("%*s", pad + 2, "");
}

static int sd_ak_list_table(const struct sd_apikeys *keys, int64_t now)
{
    static const char *const heads[5] = {"ID", "STATUS", "BOUND TO", "EXPIRES", "PATHS"};
    size_t i, n = sd_apikeys_count(keys);
    char *(*cells)[5] = calloc(n, sizeof(*cells));
    int width[5], k, rc = SD_AK_EXIT_OK;

    if (cells == NULL)
        return sd_ak_fail("out of memory");
    for (k = 0; k < 5; k++)
        width[k] = sd_ak_width(heads[k]);
    for (i = 0; i < n; i++) {
        const struct sd_apikey *e = sd_apikeys_at(keys, i);
        char t[32];

        cells[i][0] = strdup(e->id);
        cells[i][1] = strdup(sd_ak_status(e, now));
        cells[i][2] = sd_ak_joined(e->binds, e->nbinds, "-");
        cells[i][3] = strdup(e->expires != 0 ? sd_ak_time_text(e->expires, t) : "never");
        cells[i][4] = sd_ak_joined(e->paths, e->npaths, "(all)");
        for (k = 0; k < 5; k++) {
            int w;
            if (cells[i][k] == NULL) {
                rc = sd_ak_fail("out of memory");
                goto out;
            }
            if ((w = sd_ak_width(cells[i][k])) > width[k])
                width[k] = w;
        }
    }
    for (k = 0; k < 5; k++)
        sd_ak_cell(heads[k], width[k], k == 4);
    putchar('\n');
    for (i = 0; i < n; i++) {
        for (k = 0; k < 5; k++)
            sd_ak_cell(cells[i][k], width[k], k == 4);
        putchar('\n');
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        rc = sd_ak_fail("cannot write to stdout: %s", strerror(errno));
out:
    for (i = 0; i < n; i++)
        for (k = 0; k < 5; k++)
            free(cells[i][k]);
    free(cells);
    return rc;
}

static int sd_ak_cli_list(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, SD_AK_OPT_FILE},
        {"json", no_argument, NULL, SD_AK_OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "list ";
    struct sd_ak_file f = {.fd = -1};
    struct sd_apikeys *keys = NULL;
    struct sd_err err;
    int json = 0, c, rc = SD_AK_EXIT_FAIL;
    int64_t now = (int64_t)time(NULL);

    sd_ak_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_AK_OPT_FILE: f.path = optarg; break;
        case SD_AK_OPT_JSON: json = 1; break;
        case 'h':
            fputs(sd_ak_usage_list, stdout);
            return SD_AK_EXIT_OK;
        default:
            return sd_ak_bad_opt(cmd, c, argv);
        }
    }
    if (sd_ak_common(cmd, argc, argv, f.path) != 0)
        return SD_AK_EXIT_USAGE;
    if (sd_ak_file_read(&f) != 0)
        goto out;
    if (sd_apikeys_parse(f.path, f.data, f.len, &keys, &err) != 0) {
        sd_ak_fail("%s", err.msg);
        goto out;
    }
    if (json) {
        rc = sd_ak_list_json(keys, now);
    } else if (sd_apikeys_count(keys) == 0) {
        fprintf(stderr, "no keys\n");
        rc = SD_AK_EXIT_OK;
    } else {
        rc = sd_ak_list_table(keys, now);
    }
out:
    sd_ak_file_close(&f);
    sd_apikeys_free(keys);
    return rc;
}

/* --------------------------------------------------------------- revoke */

static int sd_ak_cli_revoke(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, SD_AK_OPT_FILE},
        {"id", required_argument, NULL, SD_AK_OPT_ID},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char cmd[] = "revoke ";
    struct sd_ak_file f = {.fd = -1};
    struct sd_apikeys *keys = NULL;
    const struct sd_apikey *e;
    const char *id = NULL;
    char t[32];
    size_t index = 0;
    int64_t now;
    int c, rc = SD_AK_EXIT_FAIL;

    sd_ak_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case SD_AK_OPT_FILE: f.path = optarg; break;
        case SD_AK_OPT_ID: id = optarg; break;
        case 'h':
            fputs(sd_ak_usage_revoke, stdout);
            return SD_AK_EXIT_OK;
        default:
            return sd_ak_bad_opt(cmd, c, argv);
        }
    }
    if (sd_ak_common(cmd, argc, argv, f.path) != 0)
        return SD_AK_EXIT_USAGE;
    if (id == NULL)
        return sd_ak_usage_err(cmd, "--id is required");
    if (sd_ak_check(cmd, "id", id) != 0)
        return SD_AK_EXIT_USAGE;
    /* Never creates the file: revoking in a file that does not exist is a
     * mistake about which file. */
    if (access(f.path, F_OK) != 0)
        return sd_ak_fail("%s: %s", f.path, strerror(errno));
    if (sd_ak_file_lock(&f) != 0 || sd_ak_file_parse(&f, &keys) != 0)
        goto out;
    if ((e = sd_ak_by_id(keys, id, &index)) == NULL) {
        sd_ak_fail("no key '%s' in %s", id, f.path);
        goto out;
    }
    if (e->revoked != 0) {
        fprintf(stderr, "steeldoor: key '%s' in %s was already revoked (%s); nothing changed\n",
                id, f.path, sd_ak_time_text(e->revoked, t));
        rc = SD_AK_EXIT_OK;
        goto out;
    }
    now = (int64_t)time(NULL);
    if (sd_ak_rewrite(&f, keys, index, now, NULL) != 0)
        goto out;
    printf("revoked key '%s' in %s at %s (a running steeldoor refuses it once it has "
           "reloaded the file)\n", id, f.path, sd_ak_time_text(now, t));
    rc = SD_AK_EXIT_OK;
out:
    sd_ak_file_close(&f);
    sd_apikeys_free(keys);
    return rc;
}

/* ------------------------------------------------------------- dispatch */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} sd_ak_cmds[] = {
    {"new", sd_ak_cli_new},
    {"list", sd_ak_cli_list},
    {"revoke", sd_ak_cli_revoke},
};

int sd_apikey_main(int argc, char **argv)
{
    size_t i;

    /* A closed stdout must be an error we report ("cannot print the key:
     * revoke it"), not a signal that kills us after the entry is written. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2 || argv[1] == NULL)
        return sd_ak_usage_err("", "a command is needed: new, list or revoke");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(sd_ak_usage_main, stdout);
        return SD_AK_EXIT_OK;
    }
    for (i = 0; i < sizeof(sd_ak_cmds) / sizeof(sd_ak_cmds[0]); i++)
        if (strcmp(argv[1], sd_ak_cmds[i].name) == 0)
            /* The command sees itself as argv[0], like a program would. */
            return sd_ak_cmds[i].run(argc - 1, argv + 1);
    return sd_ak_usage_err("", "unknown command '%s'", argv[1]);
}
