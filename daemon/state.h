/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod's state database (store.h), shared by the custody registry, the PIN
 * tracking and the audit log: one SQLite connection, used by one thread at a
 * time. state_acquire() locks it and returns it; state_release() unlocks.
 */
#pragma once

#include "store.h"

int state_open(const char *path);
void state_close(void);
/* Locks the store and returns it (NULL when it is not open); state_release() unlocks, in either case. */
Store *state_acquire(void);
void state_release(void);
/* The store without its lock, for the one function that takes a lock of its own (store_audit_append()).
 * Valid between state_open() and state_close(), which run while no worker does. */
Store *state_peek(void);
