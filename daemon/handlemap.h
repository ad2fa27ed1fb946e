/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An open-addressing hash map from a two-word key to a 64-bit value, used
 * for the broker's per-client handle tables: a client's handle to the
 * backend object it stands for, and back. Not thread-safe: the owner locks.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct HandleKey {
        uint64_t a;
        uint64_t b;
} HandleKey;

typedef struct HandleMap HandleMap;

HandleMap *handle_map_new(void);
HandleMap *handle_map_free(HandleMap *m); /* accepts NULL, returns NULL */
int handle_map_put(HandleMap *m, HandleKey key, uint64_t value); /* 0, or -ENOMEM; replaces an existing value */
bool handle_map_get(const HandleMap *m, HandleKey key, uint64_t *ret_value);
bool handle_map_remove(HandleMap *m, HandleKey key, uint64_t *ret_value);
size_t handle_map_size(const HandleMap *m);

/* Iterate: start with *state = 0; returns false when done. The map must not change while iterating. */
bool handle_map_next(const HandleMap *m, size_t *state, HandleKey *ret_key, uint64_t *ret_value);
