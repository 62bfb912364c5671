/* files.c - configuration file snapshots (see sd/files.h). */
#include "sd/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SD_FILES_MAGIC 0x73646673u /* "sdfs" */

struct sd_files {
    struct sd_file *v;
    size_t n, cap;
    size_t total;
    int frozen;
    int dropped; /* the files' bytes are gone: digests only */
};

/* ------------------------------------------------------------- digests
 *
 * SipHash-2-4 (Aumasson, Bernstein), fed incrementally. The master keeps
 * only digests of the files it was built from (a private key's bytes must
 * not stay in its memory just to notice a change), so the digest must not
 * let anyone who can write a configured file make a different file look
 * unchanged: a keyed PRF with a per-process random key gives that without
 * a cryptographic library (files.c stays OpenSSL-free). Change detection
 * only: the digests never leave the process. */

struct sd_sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;  /* bytes not yet in a block, little-endian */
    unsigned ntail;
    uint64_t total; /* bytes fed */
};

static uint64_t sd_files_key[2];
static int sd_files_keyed;

static uint64_t sd_sip_rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static void sd_sip_round(struct sd_sip *s)
{
    s->v0 += s->v1;
    s->v1 = sd_sip_rotl(s->v1, 13) ^ s->v0;
    s->v0 = sd_sip_rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = sd_sip_rotl(s->v3, 16) ^ s->v2;
    s->v0 += s->v3;
    s->v3 = sd_sip_rotl(s->v3, 21) ^ s->v0;
    s->v2 += s->v1;
    s->v1 = sd_sip_rotl(s->v1, 17) ^ s->v2;
    s->v2 = sd_sip_rotl(s->v2, 32);
}

static void sd_sip_block(struct sd_sip *s, uint64_t m)
{
    s->v3 ^= m;
    sd_sip_round(s);
    sd_sip_round(s);
    s->v0 ^= m;
}

static void sd_sip_init(struct sd_sip *s)
{
    if (!sd_files_keyed) {
        /* Without randomness (no getrandom: an old kernel) the digest is
         * still a good change detector, only no longer secret-keyed. */
        if (getrandom(sd_files_key, sizeof(sd_files_key), 0) != (ssize_t)sizeof(sd_files_key)) {
            sd_files_key[0] = 0x0706050403020100ull;
            sd_files_key[1] = 0x0f0e0d0c0b0a0908ull;
        }
        sd_files_keyed = 1;
    }
    memset(s, 0, sizeof(*s));
    s->v0 = sd_files_key[0] ^ 0x736f6d6570736575ull;
    s->v1 = sd_files_key[1] ^ 0x646f72616e646f6dull;
    s->v2 = sd_files_key[0] ^ 0x6c7967656e657261ull;
    s->v3 = sd_files_key[1] ^ 0x7465646279746573ull;
}

static void sd_sip_update(struct sd_sip *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        s->tail |= (uint64_t)b[i] << (8 * s->ntail);
        if (++s->ntail == 8) {
            sd_sip_block(s, s->tail);
            s->tail = 0;
            s->ntail = 0;
        }
    }
    s->total += n;
}

static uint64_t sd_sip_final(struct sd_sip *s)
{
    uint64_t b = s->total << 56 | s->tail;

    sd_sip_block(s, b);
    s->v2 ^= 0xff;
    sd_sip_round(s);
    sd_sip_round(s);
    sd_sip_round(s);
    sd_sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

static uint64_t sd_files_digest(const unsigned char *p, size_t n)
{
    struct sd_sip s;

    sd_sip_init(&s);
    sd_sip_update(&s, p, n);
    return sd_sip_final(&s);
}

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
    f->uid = (unsigned)st.st_uid;
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
    if (e == 0)
        f->digest = sd_files_digest(f->data, f->len);
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
    /* The bytes are gone: nothing may be loaded from this snapshot again. */
    if (fs->dropped)
        return sd_err_set(err, "%s: the snapshot's data was already dropped", path);
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

/* A file's part of the fingerprint: what it is and its digest, never its
 * bytes (they may be gone). */
static void sd_files_hash_one(struct sd_sip *s, const struct sd_file *f)
{
    uint64_t len = f->len;
    int kind = (int)f->kind;

    sd_sip_update(s, f->path, strlen(f->path) + 1);
    sd_sip_update(s, &kind, sizeof(kind));
    sd_sip_update(s, &f->err_no, sizeof(f->err_no));
    sd_sip_update(s, &len, sizeof(len));
    sd_sip_update(s, &f->digest, sizeof(f->digest));
}

int sd_files_frozen(const struct sd_files *fs)
{
    return fs->frozen;
}

uint64_t sd_files_fingerprint(const struct sd_files *fs)
{
    struct sd_sip s;
    size_t i;

    sd_sip_init(&s);
    for (i = 0; i < fs->n; i++)
        sd_files_hash_one(&s, &fs->v[i]);
    return sd_sip_final(&s);
}

uint64_t sd_files_fingerprint_disk(const struct sd_files *fs)
{
    struct sd_sip s;
    size_t i;

    sd_sip_init(&s);
    for (i = 0; i < fs->n; i++) {
        struct sd_file f;
        memset(&f, 0, sizeof(f));
        f.path = fs->v[i].path;
        sd_files_load(&f, SD_FILES_MAX_TOTAL);
        if (f.data != NULL) {
            /* digested by the load; the bytes (maybe a key) go at once */
            explicit_bzero(f.data, f.len);
            free(f.data);
            f.data = NULL;
        }
        sd_files_hash_one(&s, &f);
    }
    return sd_sip_final(&s);
}

void sd_files_drop_data(struct sd_files *fs)
{
    size_t i;

    if (fs == NULL)
        return;
    for (i = 0; i < fs->n; i++) {
        if (fs->v[i].data != NULL) {
            explicit_bzero(fs->v[i].data, fs->v[i].len);
            free(fs->v[i].data);
            fs->v[i].data = NULL;
        }
    }
    fs->dropped = 1;
}

int sd_files_has_data(const struct sd_files *fs)
{
    return fs != NULL && !fs->dropped;
}

void sd_files_each(const struct sd_files *fs, void (*fn)(const struct sd_file *f, void *arg),
                   void *arg)
{
    size_t i;

    for (i = 0; i < fs->n; i++)
        fn(&fs->v[i], arg);
}

static const struct sd_file *sd_files_find(const struct sd_files *fs, const char *path)
{
    size_t i;

    for (i = 0; fs != NULL && i < fs->n; i++)
        if (strcmp(fs->v[i].path, path) == 0)
            return &fs->v[i];
    return NULL;
}

size_t sd_files_diff(const struct sd_files *before, const struct sd_files *now,
                     void (*fn)(const char *path, const char *how, void *arg), void *arg)
{
    size_t i, n = 0;

    for (i = 0; now != NULL && i < now->n; i++) {
        const struct sd_file *a = sd_files_find(before, now->v[i].path), *b = &now->v[i];
        if (a == NULL) {
            fn(b->path, "added", arg);
            n++;
        } else if (a->kind != b->kind || a->digest != b->digest || a->len != b->len ||
                   a->mode != b->mode || a->uid != b->uid || a->err_no != b->err_no) {
            fn(b->path, "changed", arg);
            n++;
        }
    }
    for (i = 0; before != NULL && i < before->n; i++)
        if (sd_files_find(now, before->v[i].path) == NULL) {
            fn(before->v[i].path, "removed", arg);
            n++;
        }
    return n;
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
    size_t i;
    int fd;

    if (fs->dropped)
        return sd_err_set(err, "cannot pack a snapshot whose data was dropped");
    fd = memfd_create("steeldoor-config", MFD_CLOEXEC);
    if (fd < 0)
        return sd_err_set(err, "memfd_create: %s", strerror(errno));
    if (sd_files_write(fd, hdr, sizeof(hdr)) != 0)
        goto fail;
    for (i = 0; i < fs->n; i++) {
        const struct sd_file *f = &fs->v[i];
        uint32_t meta[5] = { (uint32_t)strlen(f->path), (uint32_t)f->kind,
                             (uint32_t)f->err_no, f->mode, f->uid };
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
        uint32_t meta[5];
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
        f->uid = meta[4];
        if (f->kind == SD_FILE_REG || f->kind == SD_FILE_DIR) {
            f->data = malloc(len ? len : 1);
            if (f->data == NULL)
                goto bad;
            memcpy(f->data, map + off, len);
            f->len = len;
            f->digest = sd_files_digest(f->data, f->len);
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
