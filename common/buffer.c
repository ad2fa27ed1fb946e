/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "macro.h"

#define BUFFER_ALLOC_MIN 256U
#define ARENA_ALIGN 16U
#define ARENA_CHUNK_SIZE (16U * 1024U)
/* Most requests decode into less than this: a first chunk that small comes from malloc's per-thread cache
 * (up to ~1 KiB) and needs no clearing of 16 KiB. */
#define ARENA_FIRST_CHUNK_SIZE 960U
/* Allocations above this get a chunk of their own, so a chunk never wastes more than a quarter. */
#define ARENA_LARGE (ARENA_CHUNK_SIZE / 4U)

void buffer_init(Buffer *b, size_t limit)
{
        *b = (Buffer) { .limit = limit };
}

void buffer_done(Buffer *b)
{
        if (!b)
                return;
        secure_zero(b->data, b->dirty);
        free(b->data);
        *b = (Buffer) {};
}

void buffer_reset(Buffer *b)
{
        secure_zero(b->data, b->dirty);
        b->len = b->dirty = 0;
        b->failed = false;
}

bool buffer_ok(const Buffer *b)
{
        return !b->failed;
}

/* Grows by copying rather than realloc(), so no stale copy of a PIN is left behind in freed memory. */
static bool buffer_grow(Buffer *b, size_t need)
{
        size_t alloc = b->alloc > 0 ? b->alloc : BUFFER_ALLOC_MIN;
        uint8_t *data;

        while (alloc < need) {
                if (alloc > SIZE_MAX / 2) {
                        alloc = need;
                        break;
                }
                alloc *= 2;
        }
        if (alloc > b->limit)
                alloc = b->limit;
        if (alloc < need)
                return false;

        data = malloc(alloc);
        if (!data)
                return false;
        if (b->len > 0)
                memcpy(data, b->data, b->len);
        secure_zero(b->data, b->dirty);
        free(b->data);
        b->data = data;
        b->alloc = alloc;
        b->dirty = b->len;
        return true;
}

uint8_t *buffer_append(Buffer *b, size_t n)
{
        uint8_t *p;

        if (b->failed)
                return NULL;
        if (n > b->limit || b->len > b->limit - n) {
                b->failed = true;
                return NULL;
        }
        if (b->len + n > b->alloc && !buffer_grow(b, b->len + n)) {
                b->failed = true;
                return NULL;
        }
        p = b->data + b->len;
        b->len += n;
        if (b->len > b->dirty)
                b->dirty = b->len;
        return p;
}

void buffer_add_u8(Buffer *b, uint8_t v)
{
        uint8_t *p = buffer_append(b, 1);

        if (p)
                p[0] = v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

void buffer_add_u32(Buffer *b, uint32_t v)
{
        uint8_t *p = buffer_append(b, 4);

        if (p)
                put_be32(p, v);
}

void buffer_add_u64(Buffer *b, uint64_t v)
{
        uint8_t *p = buffer_append(b, 8);

        if (p) {
                put_be32(p, v >> 32);
                put_be32(p + 4, (uint32_t) v);
        }
}

void buffer_add_bytes(Buffer *b, const void *p, size_t n)
{
        uint8_t *d;

        if (n == 0)
                return;
        d = buffer_append(b, n);
        if (d)
                memcpy(d, p, n);
}

void buffer_set_u32(Buffer *b, size_t offset, uint32_t v)
{
        if (b->failed || offset > b->len || b->len - offset < 4) {
                b->failed = true;
                return;
        }
        put_be32(b->data + offset, v);
}

void reader_init(Reader *r, const void *data, size_t len)
{
        *r = (Reader) { .data = data, .len = len };
}

bool reader_ok(const Reader *r)
{
        return !r->failed;
}

bool reader_at_end(const Reader *r)
{
        return !r->failed && r->off == r->len;
}

size_t reader_remaining(const Reader *r)
{
        return r->failed ? 0 : r->len - r->off;
}

bool reader_bytes(Reader *r, size_t n, const uint8_t **ret)
{
        /* Written so that no addition can wrap, whatever n is. */
        if (r->failed || r->off > r->len || n > r->len - r->off) {
                r->failed = true;
                return false;
        }
        *ret = r->data + r->off;
        r->off += n;
        return true;
}

bool reader_u8(Reader *r, uint8_t *ret)
{
        const uint8_t *p;

        if (!reader_bytes(r, 1, &p))
                return false;
        *ret = p[0];
        return true;
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

bool reader_u32(Reader *r, uint32_t *ret)
{
        const uint8_t *p;

        if (!reader_bytes(r, 4, &p))
                return false;
        *ret = get_be32(p);
        return true;
}

bool reader_u64(Reader *r, uint64_t *ret)
{
        const uint8_t *p;

        if (!reader_bytes(r, 8, &p))
                return false;
        *ret = (uint64_t) get_be32(p) << 32 | get_be32(p + 4);
        return true;
}

typedef struct ArenaChunk ArenaChunk;
struct ArenaChunk {
        ArenaChunk *next;
        size_t size;
        size_t used;
        alignas(ARENA_ALIGN) uint8_t data[];
};

struct Arena {
        ArenaChunk *chunks; /* the first one is where small allocations go */
        size_t used;        /* bytes handed out, rounded up to the alignment */
        size_t limit;
};

Arena *arena_new(size_t limit)
{
        Arena *a = calloc(1, sizeof(Arena));

        if (!a)
                return NULL;
        a->limit = limit;
        return a;
}

Arena *arena_free(Arena *a)
{
        if (!a)
                return NULL;
        for (ArenaChunk *c = a->chunks, *next; c; c = next) {
                next = c->next;
                /* Only the part handed out can hold anything; the rest is still calloc()'s zeroes. */
                secure_zero(c->data, c->used);
                free(c);
        }
        free(a);
        return NULL;
}

static ArenaChunk *arena_chunk_new(size_t size)
{
        ArenaChunk *c;

        if (size > SIZE_MAX - sizeof(ArenaChunk))
                return NULL;
        c = calloc(1, sizeof(ArenaChunk) + size);
        if (!c)
                return NULL;
        c->size = size;
        return c;
}

void *arena_alloc(Arena *a, size_t n)
{
        ArenaChunk *c;
        size_t rounded;
        void *p;

        /* A zero-size request still gets its own non-NULL pointer: callers tell "empty" from "absent". */
        if (n == 0)
                n = 1;
        if (n > SIZE_MAX - (ARENA_ALIGN - 1))
                return NULL;
        rounded = (n + ARENA_ALIGN - 1) & ~(size_t) (ARENA_ALIGN - 1);
        if (rounded > a->limit || a->used > a->limit - rounded)
                return NULL;

        if (rounded > ARENA_LARGE) {
                c = arena_chunk_new(rounded);
                if (!c)
                        return NULL;
                c->used = rounded;
                /* Behind the current small chunk, which keeps serving small requests. */
                if (a->chunks) {
                        c->next = a->chunks->next;
                        a->chunks->next = c;
                } else
                        a->chunks = c;
                a->used += rounded;
                return c->data;
        }

        c = a->chunks;
        if (!c || c->size - c->used < rounded) {
                c = arena_chunk_new(!c && rounded <= ARENA_FIRST_CHUNK_SIZE ? ARENA_FIRST_CHUNK_SIZE : ARENA_CHUNK_SIZE);
                if (!c)
                        return NULL;
                c->next = a->chunks;
                a->chunks = c;
        }
        p = c->data + c->used;
        c->used += rounded;
        a->used += rounded;
        return p;
}

void *arena_alloc_array(Arena *a, size_t n, size_t size)
{
        size_t total;

        if (size_mul_overflow(n, size, &total))
                return NULL;
        return arena_alloc(a, total);
}

void *arena_memdup(Arena *a, const void *p, size_t n)
{
        void *d = arena_alloc(a, n);

        if (d && n > 0)
                memcpy(d, p, n);
        return d;
}

size_t arena_used(const Arena *a)
{
        return a->used;
}
