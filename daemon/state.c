/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdatomic.h>

#include "log.h"
#include "state.h"

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static Store *_Atomic state;

int state_open(const char *path)
{
        int r;

        /* One Store at a time: the audit spool's head lives in it, and two would fork the chain. */
        Store *s = NULL;

        pthread_mutex_lock(&state_lock);
        state = store_close(state);
        r = store_open(path, &s);
        state = s;
        pthread_mutex_unlock(&state_lock);
        if (r < 0)
                return log_error_errno(r, "Failed to open the state database %s: %m", path);
        return 0;
}

void state_close(void)
{
        pthread_mutex_lock(&state_lock);
        state = store_close(state);
        pthread_mutex_unlock(&state_lock);
}

Store *state_acquire(void)
{
        pthread_mutex_lock(&state_lock);
        return state;
}

void state_release(void)
{
        pthread_mutex_unlock(&state_lock);
}

Store *state_peek(void)
{
        return state;
}
