/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include "log.h"
#include "state.h"

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static Store *state;

int state_open(const char *path)
{
        Store *s = NULL;
        int r;

        r = store_open(path, &s);
        if (r < 0)
                return log_error_errno(r, "Failed to open the state database %s: %m", path);
        pthread_mutex_lock(&state_lock);
        store_close(state);
        state = s;
        pthread_mutex_unlock(&state_lock);
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
