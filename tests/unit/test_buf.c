/* Unit tests for buf.c: fixed capacity, compaction, and the free list cap. */
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
    sd_bufpool_init(&pool, 2);
    b = sd_bufpool_get(&pool);
    assert_non_null(b);
    assert_int_equal(sd_buf_len(b), 0);
    assert_int_equal(sd_buf_room(b), SD_BUF_SIZE);
    /* fill it: no more room, never more than SD_BUF_SIZE */
    memset(b->data, 'a', SD_BUF_SIZE);
    b->w = SD_BUF_SIZE;
    assert_int_equal(sd_buf_room(b), 0);
    /* consume 100 bytes: room appears by moving the rest to the front */
    b->data[100] = 'z';
    b->r = 100;
    assert_int_equal(sd_buf_room(b), 100);
    assert_int_equal(b->r, 0);
    assert_int_equal(b->data[0], 'z');
    assert_int_equal(sd_buf_len(b), SD_BUF_SIZE - 100);
    /* fully consumed: positions reset */
    b->r = b->w;
    assert_int_equal(sd_buf_room(b), SD_BUF_SIZE);
    assert_int_equal(sd_buf_len(b), 0);
    sd_bufpool_put(&pool, b);
    sd_bufpool_clear(&pool);
}

static void test_pool_reuse_and_cap(void **state)
{
    struct sd_bufpool pool;
    struct sd_buf *a, *b, *c, *again;

    (void)state;
    sd_bufpool_init(&pool, 2);
    a = sd_bufpool_get(&pool);
    b = sd_bufpool_get(&pool);
    c = sd_bufpool_get(&pool);
    a->w = 7;
    sd_bufpool_put(&pool, a);
    sd_bufpool_put(&pool, b);
    sd_bufpool_put(&pool, c); /* beyond the cap: freed, not kept */
    assert_int_equal(pool.nfree, 2);
    sd_bufpool_put(&pool, NULL);
    assert_int_equal(pool.nfree, 2);
    again = sd_bufpool_get(&pool);
    assert_true(again == a || again == b);
    assert_int_equal(sd_buf_len(again), 0); /* handed out empty */
    assert_int_equal(sd_buf_len(NULL), 0);
    sd_bufpool_put(&pool, again);
    sd_bufpool_clear(&pool);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_and_compaction),
        cmocka_unit_test(test_pool_reuse_and_cap),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
