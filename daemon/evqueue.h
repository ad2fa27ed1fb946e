/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A queue from any thread to the main loop: producers push a node and the
 * queue's eventfd wakes the loop, which takes the whole list at once. Bounded
 * (a push beyond max fails: the producer frees its node) and closable (pushes
 * after closing fail too). The node is embedded first in the producer's own
 * event structure.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct EvNode {
        struct EvNode *next;
} EvNode;

typedef struct EvQueue {
        pthread_mutex_t lock;
        EvNode *head, *tail;
        size_t len, max;
        int fd; /* eventfd, readable while something is queued */
        bool open;
} EvQueue;

/* A closed queue, as a static initializer. */
#define EVQUEUE_INIT { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 }

/* Opens the queue (an eventfd for the main loop to watch). 0 or -errno. */
int evqueue_init(EvQueue *q, size_t max);
/* Appends n and wakes the loop; false (n not taken) when the queue is closed or full. */
bool evqueue_push(EvQueue *q, EvNode *n);
/* Takes everything queued, oldest first (clearing the eventfd); close: no push succeeds afterwards. */
EvNode *evqueue_take(EvQueue *q, bool close);
/* Closes the eventfd; what is still queued must have been taken. */
void evqueue_done(EvQueue *q);
