/* sesscache.c - shared-memory TLS session cache (see sd/sesscache.h). */
#include "sd/sesscache.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define SD_SESSCACHE_PROBE 8 /* slots looked at per key */

/* Keys live in a dense hash index; session bytes go to data slots taken in
 * turn from a ring. Probing reads a few index cache lines, and the data
 * written is contiguous, so memory grows with the sessions actually stored
 * (untouched pages of a shared mapping cost nothing), not with the table. */
struct sd_slot {
    uint8_t used;
    uint8_t keylen;
    uint16_t len;
    uint32_t dslot;  /* data slot holding the bytes */
    int64_t expires;
    uint8_t key[SD_SESSCACHE_KEY_MAX];
};

struct sd_dslot {
    uint32_t owner;  /* index slot + 1 that uses it, 0 when free */
    uint8_t bytes[SD_SESSCACHE_DATA_MAX];
};

struct sd_sesscache {
    pthread_mutex_t lock;
    size_t nslots;
    size_t map_len;
    uint64_t next;          /* next data slot of the ring */
    struct sd_dslot *data;  /* nslots data slots, after the index */
    struct sd_slot slots[];
};

static uint8_t *sd_slot_data(struct sd_sesscache *c, const struct sd_slot *s)
{
    return c->data[s->dslot].bytes;
}

static void sd_slot_clear(struct sd_sesscache *c, struct sd_slot *s)
{
    struct sd_dslot *d = &c->data[s->dslot];

    if (d->owner == (uint32_t)(s - c->slots) + 1) {
        memset(d->bytes, 0, s->len); /* the entry holds a master secret */
        d->owner = 0;
    }
    memset(s, 0, sizeof(*s));
}

struct sd_sesscache *sd_sesscache_new(size_t nslots, struct sd_err *err)
{
    size_t len = sizeof(struct sd_sesscache) +
                 nslots * (sizeof(struct sd_slot) + sizeof(struct sd_dslot));
    pthread_mutexattr_t attr;
    struct sd_sesscache *c;

    c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED) {
        sd_err_set(err, "session cache: mmap %zu bytes: %s", len, strerror(errno));
        return NULL;
    }
    c->nslots = nslots;
    c->map_len = len;
    c->data = (struct sd_dslot *)&c->slots[nslots];
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

int sd_sesscache_put(struct sd_sesscache *c, const uint8_t *key, size_t keylen,
                     const uint8_t *data, size_t len, int64_t expires)
{
    size_t i, base;
    struct sd_slot *victim = NULL;

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
    {
        /* take the next data slot of the ring, evicting its old owner */
        uint32_t d = (uint32_t)(c->next++ % c->nslots);
        struct sd_dslot *ds = &c->data[d];
        if (ds->owner != 0)
            sd_slot_clear(c, &c->slots[ds->owner - 1]);
        ds->owner = (uint32_t)(victim - c->slots) + 1;
        victim->dslot = d;
    }
    victim->used = 1;
    victim->keylen = (uint8_t)keylen;
    victim->len = (uint16_t)len;
    victim->expires = expires;
    memcpy(victim->key, key, keylen);
    memcpy(sd_slot_data(c, victim), data, len);
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
    if (s != NULL && s->len <= cap) {
        memcpy(out, sd_slot_data(c, s), s->len);
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
