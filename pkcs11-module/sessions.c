/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "sessions.h"

#define SESSION_BUCKETS 256U

typedef struct Session {
        struct Session *next;
        CK_SESSION_HANDLE handle;
        CK_SLOT_ID slot;
        uint64_t generation;
        bool finding;
        CK_OBJECT_HANDLE *found;
        CK_ULONG n_found, pos;
        CK_MECHANISM_TYPE message[_MESSAGE_KIND_MAX];
} Session;

static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;
static Session *buckets[SESSION_BUCKETS];
/* The connection the newest session was opened on; entries of older ones are stale. */
static uint64_t newest_generation;

static Session **bucket_of(CK_SESSION_HANDLE handle)
{
        return &buckets[(handle ^ (handle >> 8)) % SESSION_BUCKETS];
}

static void session_free(Session *s)
{
        free(s->found);
        free(s);
}

static void session_end_find(Session *s)
{
        free(s->found);
        s->found = NULL;
        s->n_found = s->pos = 0;
        s->finding = false;
}

/* Removes every entry for which drop() holds. */
static void sessions_drop_locked(bool (*drop)(const Session *s, uint64_t arg), uint64_t arg)
{
        for (size_t i = 0; i < SESSION_BUCKETS; i++)
                for (Session **p = &buckets[i]; *p;) {
                        Session *s = *p;
                        if (drop(s, arg)) {
                                *p = s->next;
                                session_free(s);
                        } else
                                p = &s->next;
                }
}

static bool drop_all(const Session *s, uint64_t arg)
{
        return true;
}

static bool drop_other_generation(const Session *s, uint64_t generation)
{
        return s->generation != generation;
}

static bool drop_slot(const Session *s, uint64_t slot)
{
        return s->slot == slot;
}

/* The entry for handle on this connection; a stale entry of an older connection is dropped. */
static Session *session_get_locked(CK_SESSION_HANDLE handle, uint64_t generation)
{
        for (Session **p = bucket_of(handle); *p; p = &(*p)->next) {
                Session *s = *p;
                if (s->handle != handle)
                        continue;
                if (s->generation == generation)
                        return s;
                *p = s->next;
                session_free(s);
                return NULL;
        }
        return NULL;
}

static Session *session_new_locked(CK_SESSION_HANDLE handle, CK_SLOT_ID slot, uint64_t generation)
{
        Session *s, **b;

        /* A new connection: the daemon forgot every session of the old one. */
        if (generation != newest_generation) {
                sessions_drop_locked(drop_other_generation, generation);
                newest_generation = generation;
        }

        s = session_get_locked(handle, generation);
        if (s)
                return s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->handle = handle;
        s->slot = slot;
        s->generation = generation;
        for (size_t i = 0; i < _MESSAGE_KIND_MAX; i++)
                s->message[i] = CK_UNAVAILABLE_INFORMATION;
        b = bucket_of(handle);
        s->next = *b;
        *b = s;
        return s;
}

int sessions_add(CK_SESSION_HANDLE handle, CK_SLOT_ID slot, uint64_t generation)
{
        Session *s;

        pthread_mutex_lock(&sessions_lock);
        s = session_new_locked(handle, slot, generation);
        if (s)
                s->slot = slot;
        pthread_mutex_unlock(&sessions_lock);
        return s ? 0 : -ENOMEM;
}

void sessions_remove(CK_SESSION_HANDLE handle)
{
        pthread_mutex_lock(&sessions_lock);
        for (Session **p = bucket_of(handle); *p; p = &(*p)->next)
                if ((*p)->handle == handle) {
                        Session *s = *p;
                        *p = s->next;
                        session_free(s);
                        break;
                }
        pthread_mutex_unlock(&sessions_lock);
}

void sessions_remove_slot(CK_SLOT_ID slot)
{
        pthread_mutex_lock(&sessions_lock);
        sessions_drop_locked(drop_slot, slot);
        pthread_mutex_unlock(&sessions_lock);
}

void sessions_clear(void)
{
        pthread_mutex_lock(&sessions_lock);
        sessions_drop_locked(drop_all, 0);
        pthread_mutex_unlock(&sessions_lock);
}

int sessions_find_check(CK_SESSION_HANDLE handle, uint64_t generation)
{
        Session *s;
        int r;

        pthread_mutex_lock(&sessions_lock);
        s = session_get_locked(handle, generation);
        r = !s ? -ENOENT : s->finding ? -EBUSY : 0;
        pthread_mutex_unlock(&sessions_lock);
        return r;
}

int sessions_find_start(CK_SESSION_HANDLE handle, uint64_t generation, CK_OBJECT_HANDLE *found, CK_ULONG count)
{
        Session *s;
        int r = 0;

        pthread_mutex_lock(&sessions_lock);
        s = session_new_locked(handle, CK_UNAVAILABLE_INFORMATION, generation);
        if (!s)
                r = -ENOMEM;
        else if (s->finding)
                r = -EBUSY;
        else {
                s->finding = true;
                s->found = TAKE_PTR(found);
                s->n_found = count;
                s->pos = 0;
        }
        pthread_mutex_unlock(&sessions_lock);
        free(found);
        return r;
}

int sessions_find_next(CK_SESSION_HANDLE handle, uint64_t generation, CK_OBJECT_HANDLE *ret, CK_ULONG max,
                       CK_ULONG *ret_count)
{
        Session *s;
        CK_ULONG n = 0;
        int r = 0;

        pthread_mutex_lock(&sessions_lock);
        s = session_get_locked(handle, generation);
        if (!s)
                r = -ENOENT;
        else if (!s->finding)
                r = -ENODATA;
        else {
                n = s->n_found - s->pos;
                if (n > max)
                        n = max;
                if (n > 0)
                        memcpy(ret, s->found + s->pos, n * sizeof(CK_OBJECT_HANDLE));
                s->pos += n;
        }
        pthread_mutex_unlock(&sessions_lock);
        if (r >= 0)
                *ret_count = n;
        return r;
}

int sessions_find_final(CK_SESSION_HANDLE handle, uint64_t generation)
{
        Session *s;
        int r = 0;

        pthread_mutex_lock(&sessions_lock);
        s = session_get_locked(handle, generation);
        if (!s)
                r = -ENOENT;
        else if (!s->finding)
                r = -ENODATA;
        else
                session_end_find(s);
        pthread_mutex_unlock(&sessions_lock);
        return r;
}

void sessions_set_message(CK_SESSION_HANDLE handle, uint64_t generation, MessageKind kind, CK_MECHANISM_TYPE mech)
{
        Session *s;

        pthread_mutex_lock(&sessions_lock);
        s = mech == CK_UNAVAILABLE_INFORMATION ? session_get_locked(handle, generation)
                                              : session_new_locked(handle, CK_UNAVAILABLE_INFORMATION, generation);
        if (s)
                s->message[kind] = mech;
        pthread_mutex_unlock(&sessions_lock);
}

CK_MECHANISM_TYPE sessions_get_message(CK_SESSION_HANDLE handle, uint64_t generation, MessageKind kind)
{
        CK_MECHANISM_TYPE m = CK_UNAVAILABLE_INFORMATION;
        Session *s;

        pthread_mutex_lock(&sessions_lock);
        s = session_get_locked(handle, generation);
        if (s)
                m = s->message[kind];
        pthread_mutex_unlock(&sessions_lock);
        return m;
}

void sessions_lock_for_fork(void)
{
        pthread_mutex_lock(&sessions_lock);
}

void sessions_unlock_after_fork(void)
{
        pthread_mutex_unlock(&sessions_lock);
}

void sessions_reset_after_fork(void)
{
        /* The child holds the lock (taken before fork); the table is consistent. */
        sessions_drop_locked(drop_all, 0);
        pthread_mutex_unlock(&sessions_lock);
}
