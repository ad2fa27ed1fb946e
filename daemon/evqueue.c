/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "evqueue.h"

int evqueue_init(EvQueue *q, size_t max)
{
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

        if (fd < 0)
                return -errno;
        /* Producers may already be pushing (and failing) on the closed queue: change it under its lock. */
        pthread_mutex_lock(&q->lock);
        q->head = q->tail = NULL;
        q->len = 0;
        q->max = max;
        q->fd = fd;
        q->open = true;
        pthread_mutex_unlock(&q->lock);
        return 0;
}

bool evqueue_push(EvQueue *q, EvNode *n)
{
        uint64_t one = 1;

        n->next = NULL;
        pthread_mutex_lock(&q->lock);
        if (!q->open || q->len >= q->max) {
                pthread_mutex_unlock(&q->lock);
                return false;
        }
        if (q->tail)
                q->tail->next = n;
        else
                q->head = n;
        q->tail = n;
        q->len++;
        (void) !write(q->fd, &one, sizeof(one));
        pthread_mutex_unlock(&q->lock);
        return true;
}

EvNode *evqueue_take(EvQueue *q, bool close)
{
        EvNode *list;
        uint64_t v;

        pthread_mutex_lock(&q->lock);
        if (q->fd >= 0)
                (void) !read(q->fd, &v, sizeof(v));
        list = q->head;
        q->head = q->tail = NULL;
        q->len = 0;
        if (close)
                q->open = false;
        pthread_mutex_unlock(&q->lock);
        return list;
}

void evqueue_done(EvQueue *q)
{
        pthread_mutex_lock(&q->lock);
        if (q->fd >= 0)
                close(q->fd);
        q->fd = -1;
        q->open = false;
        pthread_mutex_unlock(&q->lock);
}
