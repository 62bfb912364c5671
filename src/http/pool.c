/*
 * pool.c - one worker's idle keep-alive backend connections (sd/http_pool.h).
 *
 * Everything lives in one allocation made at sd_http_pool_new: SD_HTTP_POOL_MAX
 * entry slots, as many target records, and a small hash of the targets. Put
 * and get never allocate, so they cannot fail for memory, and the pool can
 * never grow past its cap. Slots are handed out from a free list, and then
 * from a high-water mark, so the pages of slots never used are never touched
 * by the pool (about 1.4 MB in all; glibc normally serves a calloc of this
 * size with a mapping of its own, zero pages it does not write, so the
 * resident cost follows the most connections the worker ever parked, not
 * the cap).
 *
 * Each parked fd is registered with the loop through the struct sd_ev of its
 * slot; the callback finds the slot with offsetof. A slot never moves, and a
 * free slot has ev.fd == -1, so an event harvested in the same epoll batch
 * as the slot's release (another source's callback took or closed it) lands
 * on a valid slot that ignores it. When the slot was reused in between by
 * another put, the event is not about the fd the slot now holds: the
 * callback therefore never trusts the event itself, only a MSG_PEEK of the
 * socket (sd_http_pool_alive), which keeps a connection that is still idle.
 *
 * Registration is level-triggered (EPOLLIN | EPOLLRDHUP): a callback that
 * keeps a connection it judged idle leaves nothing unseen, since whatever
 * state the socket really is in is reported again on the next wait; and a
 * backend that hung up or spoke between its response and the put is
 * reported at once. Edge triggering would save nothing here: the first
 * event closes the connection, so there is no second one to suppress.
 *
 * Lists, by slot index (SD_HTTP_POOL_NIL ends them): all entries in park
 * order (oldest first: the global cap and expiry), each target's entries
 * newest first (get takes the warmest: its congestion window and the
 * backend's caches are the most likely to be intact).
 */
#include "sd/http_pool.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SD_HTTP_POOL_NIL UINT32_MAX
#define SD_HTTP_POOL_BUCKETS 1024u /* power of two; targets are config backends */

/* One parked connection. The slot stays where it is for the pool's life. */
struct sd_http_pool_entry {
    struct sd_ev ev;           /* ev.fd is -1 while the slot is free */
    struct sd_http_pool *pool; /* for the callback */
    int64_t deadline;          /* expired once now_ms is past it */
    uint32_t target;           /* index of its target record */
    uint32_t older, newer;     /* park order, all targets; older: next free slot */
    uint32_t t_older, t_newer; /* park order within its target */
};

/* A target that has parked connections (freed with its last one). */
struct sd_http_pool_target {
    struct sd_addr key;      /* a copy: the caller's may go with a reload */
    uint32_t n;              /* its parked connections */
    uint32_t newest, oldest; /* its entries */
    uint32_t hnext;          /* next in its hash bucket; next free record */
};

struct sd_http_pool {
    struct sd_loop *loop;
    uint32_t count;             /* parked connections */
    uint32_t oldest, newest;    /* all entries in park order */
    uint32_t free_entry;        /* freed slots, then entries[entries_used..] */
    uint32_t entries_used;      /* high-water mark of slots ever handed out */
    uint32_t free_target;       /* likewise for target records */
    uint32_t targets_used;
    int64_t next_expiry;        /* no entry expires before: a tick is O(1) */
    uint32_t buckets[SD_HTTP_POOL_BUCKETS];
    struct sd_http_pool_target targets[SD_HTTP_POOL_MAX];
    struct sd_http_pool_entry entries[SD_HTTP_POOL_MAX];
};

/* FNV-1a over exactly the bytes sd_net_same_addr compares, so equal keys
 * hash alike. */
static uint32_t sd_http_pool_hash(const struct sd_addr *a)
{
    const unsigned char *b = (const unsigned char *)&a->ss;
    size_t len = a->len <= sizeof(a->ss) ? a->len : sizeof(a->ss);
    uint32_t h = 2166136261u ^ (uint32_t)a->len;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h & (SD_HTTP_POOL_BUCKETS - 1);
}

/* The record of target, or SD_HTTP_POOL_NIL when nothing to it is parked. */
static uint32_t sd_http_pool_find(const struct sd_http_pool *p, const struct sd_addr *target)
{
    uint32_t t;

    for (t = p->buckets[sd_http_pool_hash(target)]; t != SD_HTTP_POOL_NIL;
         t = p->targets[t].hnext)
        if (sd_net_same_addr(&p->targets[t].key, target))
            return t;
    return SD_HTTP_POOL_NIL;
}

/* A new, empty record for target. There is always one: records in use
 * never outnumber parked connections, and the caller has made room for one
 * more of those. */
static uint32_t sd_http_pool_target_new(struct sd_http_pool *p, const struct sd_addr *target)
{
    uint32_t h = sd_http_pool_hash(target);
    struct sd_http_pool_target *tg;
    uint32_t t;

    if (p->free_target != SD_HTTP_POOL_NIL) {
        t = p->free_target;
        p->free_target = p->targets[t].hnext;
    } else {
        t = p->targets_used++;
    }
    tg = &p->targets[t];
    memcpy(&tg->key, target, sizeof(tg->key));
    tg->n = 0;
    tg->newest = tg->oldest = SD_HTTP_POOL_NIL;
    tg->hnext = p->buckets[h];
    p->buckets[h] = t;
    return t;
}

static void sd_http_pool_target_free(struct sd_http_pool *p, uint32_t t)
{
    uint32_t *link = &p->buckets[sd_http_pool_hash(&p->targets[t].key)];

    while (*link != t)
        link = &p->targets[*link].hnext;
    *link = p->targets[t].hnext;
    p->targets[t].hnext = p->free_target;
    p->free_target = t;
}

/* Takes slot i out of every list and the loop's watch and frees it.
 * Returns its fd, which the caller now owns. */
static int sd_http_pool_unlink(struct sd_http_pool *p, uint32_t i)
{
    struct sd_http_pool_entry *e = &p->entries[i];
    struct sd_http_pool_target *tg = &p->targets[e->target];
    int fd = e->ev.fd;

    /* Explicitly, not by close: it is what get needs anyway, and the
     * watch must end with the slot even if the fd was ever duplicated. */
    (void)sd_loop_del(p->loop, &e->ev);
    if (e->older != SD_HTTP_POOL_NIL)
        p->entries[e->older].newer = e->newer;
    else
        p->oldest = e->newer;
    if (e->newer != SD_HTTP_POOL_NIL)
        p->entries[e->newer].older = e->older;
    else
        p->newest = e->older;
    if (e->t_older != SD_HTTP_POOL_NIL)
        p->entries[e->t_older].t_newer = e->t_newer;
    else
        tg->oldest = e->t_newer;
    if (e->t_newer != SD_HTTP_POOL_NIL)
        p->entries[e->t_newer].t_older = e->t_older;
    else
        tg->newest = e->t_older;
    if (--tg->n == 0)
        sd_http_pool_target_free(p, e->target);
    e->ev.fd = -1; /* an event still in this batch for the slot is a no-op */
    e->older = p->free_entry;
    p->free_entry = i;
    p->count--;
    return fd;
}

/* Closes the connection in slot i and frees the slot. */
static void sd_http_pool_drop(struct sd_http_pool *p, uint32_t i)
{
    close(sd_http_pool_unlink(p, i));
}

/* Non-zero when fd is still an idle connection: nothing to read, no end of
 * file, no error. Peeks without consuming and without blocking. */
static int sd_http_pool_alive(int fd)
{
    char b;

    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* The loop's callback for a parked connection: whatever epoll reported
 * (data, FIN, reset), the connection is no longer reusable. The event may be
 * stale (see the top of the file), so the socket is asked, not the event. */
static void sd_http_pool_on_event(struct sd_ev *ev, uint32_t events)
{
    struct sd_http_pool_entry *e =
        (struct sd_http_pool_entry *)((char *)ev - offsetof(struct sd_http_pool_entry, ev));
    struct sd_http_pool *p = e->pool;

    (void)events;
    if (e->ev.fd < 0 || sd_http_pool_alive(e->ev.fd))
        return;
    sd_http_pool_drop(p, (uint32_t)(e - p->entries));
}

struct sd_http_pool *sd_http_pool_new(struct sd_loop *loop)
{
    struct sd_http_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->oldest = p->newest = SD_HTTP_POOL_NIL;
    p->free_entry = p->free_target = SD_HTTP_POOL_NIL;
    p->next_expiry = INT64_MAX;
    memset(p->buckets, 0xff, sizeof(p->buckets)); /* SD_HTTP_POOL_NIL */
    return p;
}

void sd_http_pool_free(struct sd_http_pool *p)
{
    if (p == NULL)
        return;
    while (p->oldest != SD_HTTP_POOL_NIL)
        sd_http_pool_drop(p, p->oldest);
    free(p);
}

void sd_http_pool_put(struct sd_http_pool *p, const struct sd_addr *target, int fd,
                      uint32_t max, uint32_t idle_ms, int64_t now_ms)
{
    struct sd_http_pool_entry *e;
    struct sd_http_pool_target *tg;
    uint32_t i, t;

    if (fd < 0)
        return;
    if (max == 0) {
        close(fd);
        return;
    }
    /* A loop, not an if: max may have shrunk with a reload. */
    while ((t = sd_http_pool_find(p, target)) != SD_HTTP_POOL_NIL && p->targets[t].n >= max)
        sd_http_pool_drop(p, p->targets[t].oldest);
    if (p->count >= SD_HTTP_POOL_MAX)
        sd_http_pool_drop(p, p->oldest);
    /* Looked up again: the drops above may have freed its record. */
    t = sd_http_pool_find(p, target);
    if (t == SD_HTTP_POOL_NIL)
        t = sd_http_pool_target_new(p, target);
    if (p->free_entry != SD_HTTP_POOL_NIL) {
        i = p->free_entry;
        p->free_entry = p->entries[i].older;
    } else {
        i = p->entries_used++;
    }
    e = &p->entries[i];
    e->ev.fd = fd;
    e->ev.mask = EPOLLIN | EPOLLRDHUP;
    e->ev.cb = sd_http_pool_on_event;
    if (sd_loop_add(p->loop, &e->ev) != 0) {
        /* Unwatched, a hang-up would go unseen until the next get: not
         * worth keeping. */
        close(fd);
        e->ev.fd = -1;
        e->older = p->free_entry;
        p->free_entry = i;
        if (p->targets[t].n == 0)
            sd_http_pool_target_free(p, t);
        return;
    }
    e->pool = p;
    e->deadline = now_ms + (int64_t)idle_ms;
    e->target = t;
    tg = &p->targets[t];
    e->older = p->newest;
    e->newer = SD_HTTP_POOL_NIL;
    if (p->newest != SD_HTTP_POOL_NIL)
        p->entries[p->newest].newer = i;
    else
        p->oldest = i;
    p->newest = i;
    e->t_older = tg->newest;
    e->t_newer = SD_HTTP_POOL_NIL;
    if (tg->newest != SD_HTTP_POOL_NIL)
        p->entries[tg->newest].t_newer = i;
    else
        tg->oldest = i;
    tg->newest = i;
    tg->n++;
    p->count++;
    if (e->deadline < p->next_expiry)
        p->next_expiry = e->deadline;
}

int sd_http_pool_get(struct sd_http_pool *p, const struct sd_addr *target, int64_t now_ms)
{
    uint32_t t;

    while ((t = sd_http_pool_find(p, target)) != SD_HTTP_POOL_NIL) {
        uint32_t i = p->targets[t].newest;
        struct sd_http_pool_entry *e = &p->entries[i];

        /* Closed on the way: expired, or dead in a way the loop has not
         * reported yet (a FIN or bytes that arrived since the last wait). */
        if (now_ms > e->deadline || !sd_http_pool_alive(e->ev.fd)) {
            sd_http_pool_drop(p, i);
            continue;
        }
        return sd_http_pool_unlink(p, i);
    }
    return -1;
}

void sd_http_pool_expire(struct sd_http_pool *p, int64_t now_ms)
{
    int64_t next = INT64_MAX;
    uint32_t i, older;

    if (now_ms <= p->next_expiry)
        return;
    /* older is read before i is dropped: the drop reuses that link for
     * the free list. */
    for (i = p->newest; i != SD_HTTP_POOL_NIL; i = older) {
        older = p->entries[i].older;
        if (now_ms > p->entries[i].deadline)
            sd_http_pool_drop(p, i);
        else if (p->entries[i].deadline < next)
            next = p->entries[i].deadline;
    }
    p->next_expiry = next;
}

unsigned sd_http_pool_count(const struct sd_http_pool *p)
{
    return p == NULL ? 0 : p->count;
}
