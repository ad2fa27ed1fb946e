/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Byte buffers for the wire protocol. A Buffer grows as it is written and
 * carries a sticky "failed" flag (allocation failure or its size limit
 * reached), so a writer appends everything and checks once at the end. A
 * Reader walks received bytes with bounds checks that cannot overflow, and
 * is likewise sticky: after the first short read every later read fails.
 * Integers are big-endian. Buffers are wiped when reset or freed, because
 * frames carry PINs.
 *
 * An Arena hands out zeroed memory for decoded values, all freed (and
 * wiped) at once, with a hard cap on the total so a hostile frame cannot
 * make the decoder allocate without bound.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Buffer {
        uint8_t *data;
        size_t len;
        size_t alloc;
        size_t dirty; /* the most ever written (len may go back): what a wipe must cover */
        size_t limit; /* the buffer fails rather than grow past this many bytes */
        bool failed;
} Buffer;

void buffer_init(Buffer *b, size_t limit);
void buffer_done(Buffer *b);  /* wipes and frees; the buffer may be initialised again */
void buffer_reset(Buffer *b); /* wipes the content, keeps the allocation and the limit */
bool buffer_ok(const Buffer *b);
uint8_t *buffer_append(Buffer *b, size_t n); /* room for n bytes at the end, or NULL (and failed) */
void buffer_add_u8(Buffer *b, uint8_t v);
void buffer_add_u32(Buffer *b, uint32_t v);
void buffer_add_u64(Buffer *b, uint64_t v);
void buffer_add_bytes(Buffer *b, const void *p, size_t n);
void buffer_set_u32(Buffer *b, size_t offset, uint32_t v); /* overwrite 4 bytes already written */

typedef struct Reader {
        const uint8_t *data;
        size_t len;
        size_t off;
        bool failed;
} Reader;

void reader_init(Reader *r, const void *data, size_t len);
bool reader_ok(const Reader *r);
bool reader_at_end(const Reader *r); /* all bytes consumed and no failure */
size_t reader_remaining(const Reader *r);
bool reader_u8(Reader *r, uint8_t *ret);
bool reader_u32(Reader *r, uint32_t *ret);
bool reader_u64(Reader *r, uint64_t *ret);
bool reader_bytes(Reader *r, size_t n, const uint8_t **ret); /* points into the data; no copy */

typedef struct Arena Arena;

Arena *arena_new(size_t limit);
Arena *arena_free(Arena *a); /* wipes and frees everything; accepts NULL; returns NULL */
void *arena_alloc(Arena *a, size_t n); /* zeroed, aligned for any type; NULL past the limit */
void *arena_alloc_array(Arena *a, size_t n, size_t size); /* overflow-checked */
void *arena_memdup(Arena *a, const void *p, size_t n);
size_t arena_used(const Arena *a);
