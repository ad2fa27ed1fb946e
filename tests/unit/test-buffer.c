/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "macro.h"

static void test_buffer_big_endian(void **state)
{
        static const uint8_t expected[] = { 0xab, 0x01, 0x02, 0x03, 0x04, 0x01, 0x02, 0x03, 0x04,
                                            0x05, 0x06, 0x07, 0x08, 'h',  'i' };
        Buffer b;

        buffer_init(&b, 1024);
        buffer_add_u8(&b, 0xab);
        buffer_add_u32(&b, 0x01020304U);
        buffer_add_u64(&b, 0x0102030405060708ULL);
        buffer_add_bytes(&b, "hi", 2);
        assert_true(buffer_ok(&b));
        assert_int_equal(b.len, sizeof(expected));
        assert_memory_equal(b.data, expected, sizeof(expected));

        buffer_set_u32(&b, 1, 0xdeadbeefU);
        assert_true(buffer_ok(&b));
        assert_int_equal(b.data[1], 0xde);
        assert_int_equal(b.data[4], 0xef);
        /* Past the end is a failure, not a write. */
        buffer_set_u32(&b, b.len - 3, 1);
        assert_false(buffer_ok(&b));
        buffer_done(&b);
}

static void test_buffer_limit_sticky(void **state)
{
        uint8_t big[100] = {};
        Buffer b;

        buffer_init(&b, 10);
        buffer_add_bytes(&b, big, 8);
        assert_true(buffer_ok(&b));
        buffer_add_u32(&b, 1); /* 12 > 10 */
        assert_false(buffer_ok(&b));
        assert_int_equal(b.len, 8);
        /* Sticky: even a write that would fit fails now. */
        buffer_add_u8(&b, 1);
        assert_false(buffer_ok(&b));
        assert_int_equal(b.len, 8);
        assert_null(buffer_append(&b, 1));

        buffer_reset(&b);
        assert_true(buffer_ok(&b));
        assert_int_equal(b.len, 0);
        assert_int_equal(b.limit, 10);
        buffer_add_bytes(&b, big, 10);
        assert_true(buffer_ok(&b));
        assert_null(buffer_append(&b, SIZE_MAX));
        assert_false(buffer_ok(&b));
        buffer_done(&b);

        /* Reinitialising after done works. */
        buffer_init(&b, SIZE_MAX);
        for (int i = 0; i < 100000; i++)
                buffer_add_u32(&b, (uint32_t) i);
        assert_true(buffer_ok(&b));
        assert_int_equal(b.len, 400000);
        assert_int_equal(b.data[399999], (99999 & 0xff));
        assert_null(buffer_append(&b, SIZE_MAX - 10));
        assert_false(buffer_ok(&b));
        buffer_done(&b);
        buffer_done(&b);
}

static void test_buffer_reset_wipes(void **state)
{
        Buffer b;
        uint8_t *data;

        buffer_init(&b, 100);
        buffer_add_bytes(&b, "secret-pin", 10);
        data = b.data;
        /* A writer that gives bytes back (wire.c rewinds a failed write) leaves them past len. */
        b.len = 4;
        buffer_reset(&b);
        /* Same allocation, content gone, also what was past len. */
        assert_ptr_equal(b.data, data);
        for (size_t i = 0; i < 10; i++)
                assert_int_equal(data[i], 0);
        assert_int_equal(b.dirty, 0);
        buffer_done(&b);
        assert_null(b.data);
        assert_int_equal(b.len, 0);
}

static void test_reader(void **state)
{
        static const uint8_t data[] = { 0x7f, 0x01, 0x02, 0x03, 0x04, 0xff, 0xfe, 0xfd, 0xfc,
                                        0xfb, 0xfa, 0xf9, 0xf8, 'x',  'y' };
        const uint8_t *p;
        uint64_t v64;
        uint32_t v32;
        uint8_t v8;
        Reader r;

        reader_init(&r, data, sizeof(data));
        assert_true(reader_u8(&r, &v8));
        assert_int_equal(v8, 0x7f);
        assert_true(reader_u32(&r, &v32));
        assert_int_equal(v32, 0x01020304U);
        assert_true(reader_u64(&r, &v64));
        assert_true(v64 == 0xfffefdfcfbfaf9f8ULL);
        assert_int_equal(reader_remaining(&r), 2);
        assert_false(reader_at_end(&r));
        assert_true(reader_bytes(&r, 2, &p));
        assert_memory_equal(p, "xy", 2);
        assert_true(reader_at_end(&r));
        assert_true(reader_bytes(&r, 0, &p));

        /* A short read fails and stays failed. */
        reader_init(&r, data, 3);
        assert_false(reader_u32(&r, &v32));
        assert_false(reader_ok(&r));
        assert_false(reader_u8(&r, &v8));
        assert_false(reader_at_end(&r));
        assert_int_equal(reader_remaining(&r), 0);

        /* Lengths that would wrap an addition. */
        reader_init(&r, data, sizeof(data));
        assert_true(reader_u8(&r, &v8));
        assert_false(reader_bytes(&r, SIZE_MAX, &p));
        reader_init(&r, data, sizeof(data));
        assert_false(reader_bytes(&r, SIZE_MAX - 1, &p));
        reader_init(&r, data, sizeof(data));
        assert_false(reader_bytes(&r, sizeof(data) + 1, &p));
        reader_init(&r, data, sizeof(data));
        assert_true(reader_bytes(&r, sizeof(data), &p));
        assert_true(reader_at_end(&r));
}

static void test_arena(void **state)
{
        Arena *a = arena_new(100000);
        uint8_t *p, *q, *big;

        assert_non_null(a);
        p = arena_alloc(a, 3);
        q = arena_alloc(a, 5);
        assert_non_null(p);
        assert_non_null(q);
        assert_true(((uintptr_t) p % 16) == 0);
        assert_true(((uintptr_t) q % 16) == 0);
        assert_ptr_not_equal(p, q);
        for (int i = 0; i < 5; i++)
                assert_int_equal(q[i], 0);
        /* Zero bytes is still a distinct non-NULL pointer. */
        assert_non_null(arena_alloc(a, 0));

        big = arena_alloc(a, 50000);
        assert_non_null(big);
        assert_true(((uintptr_t) big % 16) == 0);
        for (size_t i = 0; i < 50000; i++)
                assert_int_equal(big[i], 0);
        memset(big, 0xaa, 50000);
        /* Small allocations keep working after a large one. */
        p = arena_alloc(a, 10);
        assert_non_null(p);
        assert_int_equal(p[9], 0);

        assert_true(arena_used(a) >= 50000 + 3 + 5 + 10);
        assert_null(arena_alloc(a, 60000)); /* over the limit */
        assert_null(arena_alloc(a, SIZE_MAX));
        assert_null(arena_alloc_array(a, SIZE_MAX / 2, 3));
        assert_null(arena_alloc_array(a, (size_t) 1 << 33, (size_t) 1 << 33));
        q = arena_alloc_array(a, 10, 8);
        assert_non_null(q);

        p = arena_memdup(a, "abc", 3);
        assert_memory_equal(p, "abc", 3);
        assert_null(arena_free(a));
        assert_null(arena_free(NULL));
}

/* Small requests fill a small first chunk, then go on in bigger ones; each piece is zeroed and apart. */
static void test_arena_chunks(void **state)
{
        Arena *a = arena_new(100000);
        uint8_t *prev = NULL;

        assert_non_null(a);
        for (int i = 0; i < 200; i++) {
                uint8_t *p = arena_alloc(a, 40);

                assert_non_null(p);
                for (int k = 0; k < 40; k++)
                        assert_int_equal(p[k], 0);
                memset(p, 0x5a, 40);
                assert_ptr_not_equal(p, prev);
                prev = p;
        }
        assert_int_equal(arena_used(a), 200 * 48);
        arena_free(a);
}

static void test_arena_limit_exact(void **state)
{
        Arena *a = arena_new(64);

        assert_non_null(arena_alloc(a, 32));
        assert_non_null(arena_alloc(a, 17)); /* 32 after rounding */
        assert_int_equal(arena_used(a), 64);
        assert_null(arena_alloc(a, 1));
        arena_free(a);

        a = arena_new(0);
        assert_null(arena_alloc(a, 0));
        arena_free(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_buffer_big_endian), cmocka_unit_test(test_buffer_limit_sticky),
                cmocka_unit_test(test_buffer_reset_wipes), cmocka_unit_test(test_reader), cmocka_unit_test(test_arena_chunks),
                cmocka_unit_test(test_arena),             cmocka_unit_test(test_arena_limit_exact),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
