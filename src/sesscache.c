/* sesscache.c - shared-memory TLS session cache (see sd/sesscache.h). */
#include "sd/sesscache.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define SD_SESSCACHE_PROBE 8 /* slots looked at per key */
#define SD_REC_ALIGN 16u

/* Keys live in a dense hash index; session bytes go to a byte ring, each
 * entry taking only its own length (sessions are about 1 KiB, far below the
 * maximum). Probing reads a few index cache lines, and the ring is written
 * in order, so the memory a worker touches grows with the bytes actually
 * stored (untouched pages of a shared mapping cost nothing), not with the
 * table or the largest possible session. */
struct sd_slot {
    uint8_t used;
    uint8_t keylen;
    uint16_t len;
    uint32_t off;    /* offset of the entry's record in the ring */
    int64_t expires;
    uint8_t key[SD_SESSCACHE_KEY_MAX];
};

/* A record of the ring: this header, then the bytes, padded to 16. size 0
 * marks space never written (from there to the end of the ring). */
struct sd_rec {
    uint32_t owner; /* index slot + 1 that uses it, 0 when dead */
    uint32_t size;  /* whole record, header included */
};

struct sd_sesscache {
    pthread_mutex_t lock;
    size_t nslots;
    size_t map_len;
    uint32_t ring_len;      /* bytes, a multiple of SD_REC_ALIGN */
    uint32_t head;          /* where the next record goes */
    uint8_t *ring;          /* after the index */
    struct sd_slot slots[];
};

static struct sd_rec *sd_rec_at(struct sd_sesscache *c, uint32_t off)
{
    return (struct sd_rec *)(void *)(c->ring + off);
}

static uint32_t sd_rec_size(size_t len)
{
    return (uint32_t)((sizeof(struct sd_rec) + len + SD_REC_ALIGN - 1) & ~(SD_REC_ALIGN - 1));
}

/* A header that a torn write (a worker killed mid-update) could have left
 * is not followed. */
static int sd_rec_sane(const struct sd_sesscache *c, uint32_t off, const struct sd_rec *r)
{
    return r->size >= SD_REC_ALIGN && r->size % SD_REC_ALIGN == 0 &&
           r->size <= c->ring_len - off;
}

static void sd_slot_clear(struct sd_sesscache *c, struct sd_slot *s)
{
    struct sd_rec *r = sd_rec_at(c, s->off);

    if (s->used && r->owner == (uint32_t)(s - c->slots) + 1) {
        memset(r + 1, 0, s->len); /* the entry holds a master secret */
        r->owner = 0;
    }
    memset(s, 0, sizeof(*s));
}

struct sd_sesscache *sd_sesscache_new(size_t nslots, struct sd_err *err)
{
    size_t ring = nslots * sd_rec_size(SD_SESSCACHE_DATA_MAX);
    size_t len = sizeof(struct sd_sesscache) + nslots * sizeof(struct sd_slot) + ring;
    pthread_mutexattr_t attr;
    struct sd_sesscache *c;

    if (nslots == 0 || ring > UINT32_MAX) {
        sd_err_set(err, "session cache: %zu slots is out of range", nslots);
        return NULL;
    }
    c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED) {
        sd_err_set(err, "session cache: mmap %zu bytes: %s", len, strerror(errno));
        return NULL;
    }
    c->nslots = nslots;
    c->map_len = len;
    c->ring_len = (uint32_t)ring;
    c->ring = (uint8_t *)&c->slots[nslots];
    if (pthread_mutexattr_init(&attr) != 0 ||
        pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != 0 ||
        pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) != 0 ||
        pthread_mutex_init(&c->lock, &attr) != 0) {
        munmap(c, len);
        sd_err_set(err, "session cache: cannot create a process-shared lock");
        return NULL;
    }
    pthread_mutexattr_destroy(&attr);
    return c;
}

void sd_sesscache_free(struct sd_sesscache *c)
{
    if (c == NULL)
        return;
    munmap(c, c->map_len);
}

static int sd_sesscache_lock(struct sd_sesscache *c)
{
    int rc = pthread_mutex_lock(&c->lock);

    if (rc == EOWNERDEAD) {
        /* The holder died mid-update: its slot may be half written, so
         * wipe the table rather than serve a torn session. */
        size_t i;
        for (i = 0; i < c->nslots; i++)
            if (c->slots[i].used)
                sd_slot_clear(c, &c->slots[i]);
        c->head = 0;
        pthread_mutex_consistent(&c->lock);
        return 0;
    }
    return rc == 0 ? 0 : -1;
}

static uint64_t sd_sesscache_hash(const uint8_t *key, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct sd_slot *sd_sesscache_find(struct sd_sesscache *c, const uint8_t *key,
                                         size_t keylen)
{
    size_t i, base = (size_t)(sd_sesscache_hash(key, keylen) % c->nslots);

    for (i = 0; i < SD_SESSCACHE_PROBE; i++) {
        struct sd_slot *s = &c->slots[(base + i) % c->nslots];
        if (s->used && s->keylen == keylen && memcmp(s->key, key, keylen) == 0)
            return s;
    }
    return NULL;
}

/* Evicts the entry whose record starts at off, if its slot still uses it. */
static void sd_sesscache_evict(struct sd_sesscache *c, uint32_t off, struct sd_rec *r)
{
    if (r->owner != 0 && r->owner <= c->nslots) {
        struct sd_slot *s = &c->slots[r->owner - 1];
        if (s->used && s->off == off)
            sd_slot_clear(c, s);
    }
    r->owner = 0;
}

/* Returns room for a record of size bytes at the ring's head, evicting the
 * oldest entries it overwrites; the head moves past it. */
static struct sd_rec *sd_sesscache_take(struct sd_sesscache *c, uint32_t size)
{
    uint32_t start, end, p;
    struct sd_rec *r;

    if (c->head > c->ring_len - size) {
        /* no room before the end: the tail becomes one dead record */
        for (p = c->head; p < c->ring_len; p += r->size) {
            r = sd_rec_at(c, p);
            if (!sd_rec_sane(c, p, r))
                break;
            sd_sesscache_evict(c, p, r);
        }
        if (c->head < c->ring_len) {
            r = sd_rec_at(c, c->head);
            r->owner = 0;
            r->size = c->ring_len - c->head;
        }
        c->head = 0;
    }
    start = c->head;
    end = start + size;
    for (p = start; p < end;) {
        r = sd_rec_at(c, p);
        if (r->size == 0 || !sd_rec_sane(c, p, r)) {
            p = end; /* never written (or torn): nothing to evict */
            break;
        }
        sd_sesscache_evict(c, p, r);
        p += r->size;
    }
    if (p > end) {
        /* the tail of the last record overwritten stays a dead record */
        r = sd_rec_at(c, end);
        r->owner = 0;
        r->size = p - end;
    } else if (end < c->ring_len && !sd_rec_sane(c, end, sd_rec_at(c, end))) {
        r = sd_rec_at(c, end);
        r->owner = 0;
        r->size = 0;
    }
    c->head = end == c->ring_len ? 0 : end;
    r = sd_rec_at(c, start);
    r->size = size;
    return r;
}

int sd_sesscache_put(struct sd_sesscache *c, const uint8_t *key, size_t keylen,
                     const uint8_t *data, size_t len, int64_t expires)
{
    size_t i, base;
    struct sd_slot *victim = NULL;
    struct sd_rec *rec;

    if (keylen == 0 || keylen > SD_SESSCACHE_KEY_MAX || len > SD_SESSCACHE_DATA_MAX)
        return -1;
    if (sd_sesscache_lock(c) != 0)
        return -1;
    victim = sd_sesscache_find(c, key, keylen);
    base = (size_t)(sd_sesscache_hash(key, keylen) % c->nslots);
    for (i = 0; victim == NULL && i < SD_SESSCACHE_PROBE; i++) {
        struct sd_slot *s = &c->slots[(base + i) % c->nslots];
        if (!s->used)
            victim = s;
    }
    if (victim == NULL) {
        /* all taken: replace the one closest to expiry */
        victim = &c->slots[base];
        for (i = 1; i < SD_SESSCACHE_PROBE; i++) {
            struct sd_slot *s = &c->slots[(base + i) % c->nslots];
            if (s->expires < victim->expires)
                victim = s;
        }
    }
    if (victim->used)
        sd_slot_clear(c, victim);
    rec = sd_sesscache_take(c, sd_rec_size(len));
    rec->owner = (uint32_t)(victim - c->slots) + 1;
    victim->off = (uint32_t)((uint8_t *)rec - c->ring);
    victim->used = 1;
    victim->keylen = (uint8_t)keylen;
    victim->len = (uint16_t)len;
    victim->expires = expires;
    memcpy(victim->key, key, keylen);
    memcpy(rec + 1, data, len);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

long sd_sesscache_get(struct sd_sesscache *c, const uint8_t *key, size_t keylen,
                      uint8_t *out, size_t cap, int64_t now)
{
    struct sd_slot *s;
    long n = -1;

    if (keylen == 0 || keylen > SD_SESSCACHE_KEY_MAX || sd_sesscache_lock(c) != 0)
        return -1;
    s = sd_sesscache_find(c, key, keylen);
    if (s != NULL && s->expires <= now) {
        sd_slot_clear(c, s);
        s = NULL;
    }
    if (s != NULL) {
        /* Defence in depth: the record must still be this slot's. */
        const struct sd_rec *r = sd_rec_at(c, s->off);
        if (r->owner != (uint32_t)(s - c->slots) + 1 || r->size != sd_rec_size(s->len)) {
            sd_slot_clear(c, s);
            s = NULL;
        }
    }
    if (s != NULL && s->len <= cap) {
        memcpy(out, sd_rec_at(c, s->off) + 1, s->len);
        n = s->len;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

void sd_sesscache_remove(struct sd_sesscache *c, const uint8_t *key, size_t keylen)
{
    struct sd_slot *s;

    if (keylen == 0 || keylen > SD_SESSCACHE_KEY_MAX || sd_sesscache_lock(c) != 0)
        return;
    s = sd_sesscache_find(c, key, keylen);
    if (s != NULL)
        sd_slot_clear(c, s);
    pthread_mutex_unlock(&c->lock);
}
