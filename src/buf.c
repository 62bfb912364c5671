/* buf.c - bounded buffers in two sizes and their free lists (see sd/buf.h). */
#include "sd/buf.h"

#include <stdlib.h>
#include <string.h>

void sd_bufpool_init(struct sd_bufpool *p, size_t max_small, size_t max_large)
{
    memset(p, 0, sizeof(*p));
    p->small.max_free = max_small;
    p->large.max_free = max_large;
}

static void sd_bufpool_class_clear(struct sd_bufpool_class *k)
{
    while (k->free != NULL) {
        struct sd_buf *b = k->free;
        k->free = b->next;
        free(b);
    }
    k->nfree = 0;
}

void sd_bufpool_clear(struct sd_bufpool *p)
{
    sd_bufpool_class_clear(&p->small);
    sd_bufpool_class_clear(&p->large);
}

struct sd_buf *sd_bufpool_get(struct sd_bufpool *p, int large)
{
    struct sd_bufpool_class *k = large ? &p->large : &p->small;
    uint32_t cap = large ? SD_BUF_LARGE : SD_BUF_SMALL;
    struct sd_buf *b = k->free;

    if (b != NULL) {
        k->free = b->next;
        k->nfree--;
    } else {
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
    }
    b->r = b->w = 0;
    b->next = NULL;
    return b;
}

void sd_bufpool_put(struct sd_bufpool *p, struct sd_buf *b)
{
    struct sd_bufpool_class *k;

    if (b == NULL)
        return;
    k = b->cap == SD_BUF_LARGE ? &p->large : &p->small;
    if (k->nfree >= k->max_free) {
        free(b);
        return;
    }
    b->next = k->free;
    k->free = b;
    k->nfree++;
}

struct sd_buf *sd_bufpool_grow(struct sd_bufpool *p, struct sd_buf *b)
{
    struct sd_buf *big;

    if (b->cap == SD_BUF_LARGE || (big = sd_bufpool_get(p, 1)) == NULL)
        return b;
    big->w = (uint32_t)sd_buf_len(b);
    memcpy(big->data, b->data + b->r, big->w);
    sd_bufpool_put(p, b);
    return big;
}

size_t sd_buf_room(struct sd_buf *b)
{
    if (b->r == b->w) {
        b->r = b->w = 0;
    } else if (b->w == b->cap && b->r > 0) {
        memmove(b->data, b->data + b->r, b->w - b->r);
        b->w -= b->r;
        b->r = 0;
    }
    return b->cap - b->w;
}
