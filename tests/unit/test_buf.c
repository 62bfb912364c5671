/* Unit tests for buf.c: fixed capacities, compaction, growth, and the free
 * list caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sd/buf.h"

static void test_room_and_compaction(void **state)
{
    struct sd_bufpool pool;
    struct sd_buf *b;

    (void)state;
    sd_bufpool_init(&pool, 2, 1);
    b = sd_bufpool_get(&pool, 0);
    assert_non_null(b);
    assert_int_equal(b->cap, SD_BUF_SMALL);
    assert_int_equal(sd_buf_len(b), 0);
    assert_int_equal(sd_buf_room(b), SD_BUF_SMALL);
    /* fill it: no more room, never more than SD_BUF_SMALL */
    memset(b->data, 'a', SD_BUF_SMALL);
    b->w = SD_BUF_SMALL;
    assert_int_equal(sd_buf_room(b), 0);
    /* consume 100 bytes: room appears by moving the rest to the front */
    b->data[100] = 'z';
    b->r = 100;
    assert_int_equal(sd_buf_room(b), 100);
    assert_int_equal(b->r, 0);
    assert_int_equal(b->data[0], 'z');
    assert_int_equal(sd_buf_len(b), SD_BUF_SMALL - 100);
    /* fully consumed: positions reset */
    b->r = b->w;
    assert_int_equal(sd_buf_room(b), SD_BUF_SMALL);
    assert_int_equal(sd_buf_len(b), 0);
    sd_bufpool_put(&pool, b);
    sd_bufpool_clear(&pool);
}

static void test_pool_reuse_and_cap(void **state)
{
    struct sd_bufpool pool;
    struct sd_buf *a, *b, *c, *again;

    (void)state;
    sd_bufpool_init(&pool, 2, 1);
    a = sd_bufpool_get(&pool, 0);
    b = sd_bufpool_get(&pool, 0);
    c = sd_bufpool_get(&pool, 0);
    a->w = 7;
    sd_bufpool_put(&pool, a);
    sd_bufpool_put(&pool, b);
    sd_bufpool_put(&pool, c); /* beyond the cap: freed, not kept */
    assert_int_equal(pool.small.nfree, 2);
    sd_bufpool_put(&pool, NULL);
    assert_int_equal(pool.small.nfree, 2);
    again = sd_bufpool_get(&pool, 0);
    assert_true(again == a || again == b);
    assert_int_equal(sd_buf_len(again), 0); /* handed out empty */
    assert_int_equal(sd_buf_len(NULL), 0);
    sd_bufpool_put(&pool, again);
    sd_bufpool_clear(&pool);
    assert_int_equal(pool.small.nfree, 0);
    assert_null(pool.small.free);
}

static void test_grow_keeps_bytes(void **state)
{
    struct sd_bufpool pool;
    struct sd_buf *s, *l, *same;

    (void)state;
    sd_bufpool_init(&pool, 2, 1);
    s = sd_bufpool_get(&pool, 0);
    memset(s->data, 'x', SD_BUF_SMALL);
    s->data[10] = 'y';
    s->w = SD_BUF_SMALL;
    s->r = 10;
    l = sd_bufpool_grow(&pool, s);
    assert_int_equal(l->cap, SD_BUF_LARGE);
    assert_int_equal(sd_buf_len(l), SD_BUF_SMALL - 10);
    assert_int_equal(l->r, 0);
    assert_int_equal(l->data[0], 'y');
    assert_int_equal(l->data[SD_BUF_SMALL - 11], 'x');
    assert_int_equal(pool.small.nfree, 1); /* the small one went back */
    assert_int_equal(sd_buf_room(l), SD_BUF_LARGE - (SD_BUF_SMALL - 10));
    /* growing a large buffer is a no-op */
    same = sd_bufpool_grow(&pool, l);
    assert_ptr_equal(same, l);
    sd_bufpool_put(&pool, l);
    assert_int_equal(pool.large.nfree, 1);
    /* a large buffer comes back from its own list, empty */
    l = sd_bufpool_get(&pool, 1);
    assert_int_equal(l->cap, SD_BUF_LARGE);
    assert_int_equal(pool.large.nfree, 0);
    assert_int_equal(sd_buf_len(l), 0);
    sd_bufpool_put(&pool, l);
    sd_bufpool_clear(&pool);
    assert_int_equal(pool.small.nfree + pool.large.nfree, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_and_compaction),
        cmocka_unit_test(test_pool_reuse_and_cap),
        cmocka_unit_test(test_grow_keeps_bytes),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
