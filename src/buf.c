/* buf.c - fixed-size buffers and their free list (see sd/buf.h). */
#include "sd/buf.h"

#include <stdlib.h>
#include <string.h>

void sd_bufpool_init(struct sd_bufpool *p, size_t max_free)
{
    p->free = NULL;
    p->nfree = 0;
    p->max_free = max_free;
}

void sd_bufpool_clear(struct sd_bufpool *p)
{
    while (p->free != NULL) {
        struct sd_buf *b = p->free;
        p->free = b->next;
        free(b);
    }
    p->nfree = 0;
}

struct sd_buf *sd_bufpool_get(struct sd_bufpool *p)
{
    struct sd_buf *b = p->free;

    if (b != NULL) {
        p->free = b->next;
        p->nfree--;
    } else {
        b = malloc(sizeof(*b));
        if (b == NULL)
            return NULL;
    }
    b->r = b->w = 0;
    b->next = NULL;
    return b;
}

void sd_bufpool_put(struct sd_bufpool *p, struct sd_buf *b)
{
    if (b == NULL)
        return;
    if (p->nfree >= p->max_free) {
        free(b);
        return;
    }
    b->next = p->free;
    p->free = b;
    p->nfree++;
}

size_t sd_buf_room(struct sd_buf *b)
{
    if (b->r == b->w) {
        b->r = b->w = 0;
    } else if (b->w == SD_BUF_SIZE && b->r > 0) {
        memmove(b->data, b->data + b->r, b->w - b->r);
        b->w -= b->r;
        b->r = 0;
    }
    return SD_BUF_SIZE - b->w;
}
