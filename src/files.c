/* files.c - configuration file snapshots (see sd/files.h). */
#include "sd/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SD_FILES_MAGIC 0x73646673u /* "sdfs" */

struct sd_files {
    struct sd_file *v;
    size_t n, cap;
    size_t total;
    int frozen;
};

struct sd_files *sd_files_new(void)
{
    return calloc(1, sizeof(struct sd_files));
}

void sd_files_free(struct sd_files *fs)
{
    size_t i;

    if (fs == NULL)
        return;
    for (i = 0; i < fs->n; i++) {
        free(fs->v[i].path);
        if (fs->v[i].data != NULL) {
            /* may hold a private key */
            explicit_bzero(fs->v[i].data, fs->v[i].len);
            free(fs->v[i].data);
        }
    }
    free(fs->v);
    free(fs);
}

static struct sd_file *sd_files_add(struct sd_files *fs, const char *path)
{
    struct sd_file *f;

    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        struct sd_file *v = realloc(fs->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        fs->v = v;
        fs->cap = cap;
    }
    f = &fs->v[fs->n];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (f->path == NULL)
        return NULL;
    fs->n++;
    return f;
}

/* Names in a directory listing, sorted byte-wise (strcmp, not the locale's
 * collation) so that master and workers agree on the order. */
static int sd_files_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Grows a buffer that may hold a private key: the old bytes are wiped, never
 * left behind in freed memory as realloc() would. */
static unsigned char *sd_files_grow(unsigned char *old, size_t used, size_t cap)
{
    unsigned char *p = malloc(cap);

    if (p == NULL)
        return NULL;
    if (old != NULL) {
        memcpy(p, old, used);
        explicit_bzero(old, used);
        free(old);
    }
    return p;
}

/* Lists the directory open on fd (taken over: closed here) into f as
 * NUL-separated sorted names; hidden names are left out. Returns 0 or an
 * errno. The listing is of the very directory that was opened and checked. */
static int sd_files_list(struct sd_file *f, int fd, size_t cap)
{
    DIR *d = fdopendir(fd);
    char **names = NULL;
    size_t n = 0, ncap = 0, len = 0, off = 0, i;
    struct dirent *de;
    int e = 0;

    if (d == NULL) {
        e = errno;
        close(fd);
        return e;
    }
    for (;;) {
        size_t l;
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            e = errno; /* 0 at the end of the directory */
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        l = strlen(de->d_name) + 1;
        if (len + l > cap) {
            e = EFBIG; /* a listing is bounded like a file */
            break;
        }
        if (n == ncap) {
            size_t c = ncap ? ncap * 2 : 32;
            char **v = realloc(names, c * sizeof(*v));
            if (v == NULL) {
                e = ENOMEM;
                break;
            }
            names = v;
            ncap = c;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            e = ENOMEM;
            break;
        }
        n++;
        len += l;
    }
    closedir(d);
    if (e == 0) {
        if (n > 0) /* an empty directory has no array at all */
            qsort(names, n, sizeof(*names), sd_files_name_cmp);
        f->data = malloc(len ? len : 1);
        if (f->data == NULL)
            e = ENOMEM;
    }
    for (i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        if (e == 0) {
            memcpy(f->data + off, names[i], l);
            off += l;
        }
        free(names[i]);
    }
    free(names);
    if (e == 0) {
        f->kind = SD_FILE_DIR;
        f->len = len;
    }
    return e;
}

/* Fills f from disk. Returns 0, or an errno (f is then SD_FILE_ERR).
 *
 * Anyone who may write to a configured directory can put any kind of file
 * at a configured path, and swap it at any moment. So: the path is opened
 * without blocking (a FIFO opens at once instead of waiting for a writer,
 * O_NOCTTY keeps a terminal from becoming ours), the opened descriptor is
 * what is checked (a path checked before opening may be another file by
 * then), anything but a regular file or a directory is refused, and a file
 * is read to its end under a cap, whatever size it had a moment ago: the
 * bytes recorded (and later validated) are exactly those read. */
static int sd_files_load(struct sd_file *f, size_t budget)
{
    size_t cap = budget < SD_FILES_MAX_FILE ? budget : SD_FILES_MAX_FILE;
    size_t alloc = 0;
    struct stat st;
    int fd, e = 0;

    fd = open(f->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        goto out;
    }
    f->mode = (unsigned)(st.st_mode & 07777);
    if (S_ISDIR(st.st_mode)) {
        e = sd_files_list(f, fd, cap);
        fd = -1; /* closed by sd_files_list */
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
        goto out;
    }
    /* The size is only a first guess for the buffer; one byte more than
     * the cap is room to notice a file that is too large. */
    alloc = st.st_size > 0 && (size_t)st.st_size < cap ? (size_t)st.st_size + 1 : 4096;
    if (alloc > cap + 1)
        alloc = cap + 1;
    f->data = malloc(alloc);
    if (f->data == NULL) {
        e = ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t r;
        if (f->len == alloc) {
            size_t grown = alloc > (cap + 1) / 2 ? cap + 1 : alloc * 2;
            unsigned char *p;
            if (alloc == cap + 1) {
                e = EFBIG;
                goto out;
            }
            p = sd_files_grow(f->data, f->len, grown);
            if (p == NULL) {
                e = ENOMEM;
                goto out;
            }
            f->data = p;
            alloc = grown;
        }
        r = read(fd, f->data + f->len, alloc - f->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            goto out;
        }
        if (r == 0)
            break; /* end of file: what was read is the file */
        f->len += (size_t)r;
    }
    if (f->len > cap) {
        e = EFBIG;
        goto out;
    }
    f->kind = SD_FILE_REG;
out:
    if (fd >= 0)
        close(fd);
    if (e != 0) {
        if (f->data != NULL) {
            explicit_bzero(f->data, alloc); /* may hold part of a key */
            free(f->data);
        }
        f->data = NULL;
        f->len = 0;
        f->kind = SD_FILE_ERR;
        f->err_no = e;
    }
    return e;
}

static const char *sd_files_strerror(int e)
{
    if (e == EINVAL)
        return "not a regular file or directory";
    if (e == EFBIG)
        return "file too large";
    return strerror(e);
}

int sd_files_get(struct sd_files *fs, const char *path, const struct sd_file **out,
                 struct sd_err *err)
{
    struct sd_file *f = NULL;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        if (strcmp(fs->v[i].path, path) == 0) {
            f = &fs->v[i];
            break;
        }
    }
    if (f == NULL) {
        if (fs->frozen)
            return sd_err_set(err, "%s: not part of the validated configuration", path);
        f = sd_files_add(fs, path);
        if (f == NULL)
            return sd_err_set(err, "out of memory");
        sd_files_load(f, SD_FILES_MAX_TOTAL - fs->total);
        fs->total += f->len;
    }
    if (f->kind == SD_FILE_ERR)
        return sd_err_set(err, "%s: cannot read: %s", path, sd_files_strerror(f->err_no));
    *out = f;
    return 0;
}

static uint64_t sd_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t sd_files_hash_one(uint64_t h, const struct sd_file *f)
{
    h = sd_fnv(h, f->path, strlen(f->path) + 1);
    h = sd_fnv(h, &f->kind, sizeof(f->kind));
    h = sd_fnv(h, &f->err_no, sizeof(f->err_no));
    h = sd_fnv(h, &f->len, sizeof(f->len));
    return f->data != NULL ? sd_fnv(h, f->data, f->len) : h;
}

int sd_files_frozen(const struct sd_files *fs)
{
    return fs->frozen;
}

uint64_t sd_files_fingerprint(const struct sd_files *fs)
{
    uint64_t h = 14695981039346656037ull;
    size_t i;

    for (i = 0; i < fs->n; i++)
        h = sd_files_hash_one(h, &fs->v[i]);
    return h;
}

uint64_t sd_files_fingerprint_disk(const struct sd_files *fs)
{
    uint64_t h = 14695981039346656037ull;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        struct sd_file f;
        memset(&f, 0, sizeof(f));
        f.path = fs->v[i].path;
        sd_files_load(&f, SD_FILES_MAX_TOTAL);
        h = sd_files_hash_one(h, &f);
        if (f.data != NULL) {
            explicit_bzero(f.data, f.len);
            free(f.data);
        }
    }
    return h;
}

void sd_files_each(const struct sd_files *fs, void (*fn)(const struct sd_file *f, void *arg),
                   void *arg)
{
    size_t i;

    for (i = 0; i < fs->n; i++)
        fn(&fs->v[i], arg);
}

/* ----------------------------------------------------------- pack/unpack */

static int sd_files_write(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int sd_files_pack(const struct sd_files *fs, struct sd_err *err)
{
    uint32_t hdr[2] = { SD_FILES_MAGIC, (uint32_t)fs->n };
    int fd = memfd_create("steeldoor-config", MFD_CLOEXEC);
    size_t i;

    if (fd < 0)
        return sd_err_set(err, "memfd_create: %s", strerror(errno));
    if (sd_files_write(fd, hdr, sizeof(hdr)) != 0)
        goto fail;
    for (i = 0; i < fs->n; i++) {
        const struct sd_file *f = &fs->v[i];
        uint32_t meta[4] = { (uint32_t)strlen(f->path), (uint32_t)f->kind,
                             (uint32_t)f->err_no, f->mode };
        uint64_t len = f->len;
        if (sd_files_write(fd, meta, sizeof(meta)) != 0 ||
            sd_files_write(fd, f->path, meta[0]) != 0 ||
            sd_files_write(fd, &len, sizeof(len)) != 0 ||
            (len > 0 && sd_files_write(fd, f->data, f->len) != 0))
            goto fail;
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        goto fail;
    return fd;
fail:
    sd_err_set(err, "cannot write the configuration snapshot: %s", strerror(errno));
    close(fd);
    return -1;
}

struct sd_files *sd_files_unpack(int fd, struct sd_err *err)
{
    struct sd_files *fs = sd_files_new();
    struct stat st;
    unsigned char *map = MAP_FAILED;
    size_t off = sizeof(uint32_t) * 2, size = 0, i;
    uint32_t hdr[2];

    if (fs == NULL || fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(hdr) ||
        (size_t)st.st_size > SD_FILES_MAX_TOTAL + (1u << 20))
        goto bad;
    size = (size_t)st.st_size;
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        goto bad;
    memcpy(hdr, map, sizeof(hdr));
    if (hdr[0] != SD_FILES_MAGIC)
        goto bad;
    for (i = 0; i < hdr[1]; i++) {
        uint32_t meta[4];
        uint64_t len;
        struct sd_file *f;
        char *path;

        if (size - off < sizeof(meta))
            goto bad;
        memcpy(meta, map + off, sizeof(meta));
        off += sizeof(meta);
        if (meta[0] == 0 || meta[0] > 4096 || size - off < meta[0] + sizeof(len))
            goto bad;
        path = strndup((const char *)map + off, meta[0]);
        off += meta[0];
        memcpy(&len, map + off, sizeof(len));
        off += sizeof(len);
        if (path == NULL || len > size - off || (f = sd_files_add(fs, path)) == NULL) {
            free(path);
            goto bad;
        }
        free(path);
        f->kind = (enum sd_file_kind)meta[1];
        f->err_no = (int)meta[2];
        f->mode = meta[3];
        if (f->kind == SD_FILE_REG || f->kind == SD_FILE_DIR) {
            f->data = malloc(len ? len : 1);
            if (f->data == NULL)
                goto bad;
            memcpy(f->data, map + off, len);
            f->len = len;
        } else if (f->kind != SD_FILE_ERR) {
            goto bad;
        }
        off += len;
    }
    munmap(map, size);
    fs->frozen = 1;
    return fs;
bad:
    if (map != MAP_FAILED)
        munmap(map, size);
    sd_files_free(fs);
    sd_err_set(err, "configuration snapshot from the master is malformed");
    return NULL;
}
