/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "handlemap.h"

enum { SLOT_EMPTY, SLOT_USED, SLOT_DELETED };

typedef struct Entry {
        HandleKey key;
        uint64_t value;
        uint8_t state;
} Entry;

struct HandleMap {
        Entry *entries;
        size_t capacity; /* a power of two, or 0 */
        size_t used;     /* live entries */
        size_t filled;   /* live + deleted: what probing has to step over */
};

static uint64_t hash_key(HandleKey k)
{
        /* splitmix64 finaliser over both words: handles are often small consecutive integers. */
        uint64_t x = k.a * 0x9e3779b97f4a7c15ULL ^ (k.b + 0x632be59bd9b4e019ULL);

        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        x ^= x >> 31;
        return x;
}

static bool key_eq(HandleKey x, HandleKey y)
{
        return x.a == y.a && x.b == y.b;
}

HandleMap *handle_map_new(void)
{
        return calloc(1, sizeof(HandleMap));
}

HandleMap *handle_map_free(HandleMap *m)
{
        if (!m)
                return NULL;
        free(m->entries);
        free(m);
        return NULL;
}

static Entry *find(const HandleMap *m, HandleKey key)
{
        size_t mask, i;

        if (m->capacity == 0)
                return NULL;
        mask = m->capacity - 1;
        for (i = hash_key(key) & mask;; i = (i + 1) & mask) {
                Entry *e = &m->entries[i];

                if (e->state == SLOT_EMPTY)
                        return NULL;
                if (e->state == SLOT_USED && key_eq(e->key, key))
                        return e;
        }
}

static int resize(HandleMap *m, size_t capacity)
{
        Entry *old = m->entries, *n;
        size_t old_capacity = m->capacity;

        n = calloc(capacity, sizeof(Entry));
        if (!n)
                return -ENOMEM;
        m->entries = n;
        m->capacity = capacity;
        m->used = m->filled = 0;
        for (size_t i = 0; i < old_capacity; i++)
                if (old[i].state == SLOT_USED)
                        (void) handle_map_put(m, old[i].key, old[i].value);
        free(old);
        return 0;
}

int handle_map_put(HandleMap *m, HandleKey key, uint64_t value)
{
        Entry *e = find(m, key);
        size_t mask, i;

        if (e) {
                e->value = value;
                return 0;
        }
        /* Keep the table at most 3/4 full, counting tombstones, so probing always ends. */
        /* Keep the table at most 3/4 full, counting tombstones, so probing always ends. Grow when
         * live entries need it, otherwise rehash in place to drop the tombstones. */
        if ((m->filled + 1) * 4 > m->capacity * 3) {
                size_t capacity = m->capacity == 0                     ? 16
                                  : (m->used + 1) * 2 > m->capacity ? m->capacity * 2
                                                                    : m->capacity;

                if (resize(m, capacity) < 0)
                        return -ENOMEM;
        }
        mask = m->capacity - 1;
        for (i = hash_key(key) & mask; m->entries[i].state == SLOT_USED; i = (i + 1) & mask)
                ;
        if (m->entries[i].state == SLOT_EMPTY)
                m->filled++;
        m->entries[i] = (Entry) { .key = key, .value = value, .state = SLOT_USED };
        m->used++;
        return 0;
}

bool handle_map_get(const HandleMap *m, HandleKey key, uint64_t *ret_value)
{
        const Entry *e = find(m, key);

        if (!e)
                return false;
        if (ret_value)
                *ret_value = e->value;
        return true;
}

bool handle_map_remove(HandleMap *m, HandleKey key, uint64_t *ret_value)
{
        Entry *e = find(m, key);

        if (!e)
                return false;
        if (ret_value)
                *ret_value = e->value;
        e->state = SLOT_DELETED;
        m->used--;
        return true;
}

size_t handle_map_size(const HandleMap *m)
{
        return m->used;
}

bool handle_map_next(const HandleMap *m, size_t *state, HandleKey *ret_key, uint64_t *ret_value)
{
        for (size_t i = *state; i < m->capacity; i++)
                if (m->entries[i].state == SLOT_USED) {
                        if (ret_key)
                                *ret_key = m->entries[i].key;
                        if (ret_value)
                                *ret_value = m->entries[i].value;
                        *state = i + 1;
                        return true;
                }
        *state = m->capacity;
        return false;
}
