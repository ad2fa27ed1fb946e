/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Slots and their events: the slot list, C_WaitForSlotEvent and the events
 * that answer it, rescans of the backends (a removed token ends every
 * client's sessions, handles and login on it), and closing the sessions
 * that custody no longer allows.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "log.h"
#include "macro.h"

CK_RV handle_get_slot_list(BrokerClient *bc, WireArg *args)
{
        bool token_present = args[0].value != CK_FALSE;
        _cleanup_(freep) Slot **all = NULL;
        CK_ULONG *out = args[1].ptr, capacity = args[1].len, count = 0;
        size_t n = 0;

        /* Applications look for new tokens by listing slots again, so look for them here. */
        broker_rescan();
        if (slots_snapshot(&all, &n) < 0)
                return CKR_HOST_MEMORY;

        for (size_t i = 0; i < n; i++) {
                if (!all[i]->listed || (token_present && !all[i]->token_present))
                        continue;
                if (token_present && token_hidden(bc, all[i]))
                        continue;
                if (out && count < capacity)
                        out[count] = all[i]->id;
                count++;
        }
        args[1].len = count;
        if (out && count > capacity)
                return CKR_BUFFER_TOO_SMALL;
        return CKR_OK;
}

/* Returns 1 when the call is parked until an event comes. */
int handle_wait_for_slot_event(BrokerClient *bc, uint32_t serial, WireArg *args, CK_RV *ret_rv)
{
        int r = 0;

        pthread_mutex_lock(&bc->lock);
        if (bc->n_events > 0) {
                args[1].value = bc->events[0];
                memmove(bc->events, bc->events + 1, (bc->n_events - 1) * sizeof(CK_SLOT_ID));
                bc->n_events--;
                *ret_rv = CKR_OK;
        } else if (args[0].value & CKF_DONT_BLOCK)
                *ret_rv = CKR_NO_EVENT;
        else if (bc->n_waiters >= CLIENT_WAITERS_MAX)
                *ret_rv = CKR_FUNCTION_FAILED;
        else {
                bc->waiters[bc->n_waiters++] = serial;
                r = 1;
        }
        pthread_mutex_unlock(&bc->lock);
        return r;
}

typedef struct PendingReply {
        Client *conn;
        Buffer frame;
        struct PendingReply *next;
} PendingReply;

void broker_slot_events(const CK_SLOT_ID *ids, size_t n)
{
        PendingReply *replies = NULL;

        /* A new or re-initialised token may be of another class. */
        for (size_t i = 0; i < n; i++)
                slot_class_forget(ids[i]);

        pthread_mutex_lock(&clients_lock);
        for (BrokerClient *bc = clients; bc; bc = bc->next) {
                pthread_mutex_lock(&bc->lock);
                for (size_t i = 0; i < n; i++) {
                        bool have = false;

                        for (size_t j = 0; j < bc->n_events; j++)
                                have = have || bc->events[j] == ids[i];
                        if (!have && bc->n_events < CLIENT_EVENTS_MAX)
                                bc->events[bc->n_events++] = ids[i];
                }
                while (bc->n_waiters > 0 && bc->n_events > 0) {
                        WireArg args[2] = {};
                        PendingReply *p = calloc(1, sizeof(PendingReply));

                        if (!p)
                                break;
                        args[1].value = bc->events[0];
                        args[1].ptr = &args[1].value;
                        buffer_init(&p->frame, 64);
                        if (wire_encode_reply(&p->frame, bc->waiters[0], KYSO_CALL_C_WaitForSlotEvent, CKR_OK,
                                              args) < 0) {
                                buffer_done(&p->frame);
                                free(p);
                                break;
                        }
                        memmove(bc->events, bc->events + 1, (bc->n_events - 1) * sizeof(CK_SLOT_ID));
                        bc->n_events--;
                        memmove(bc->waiters, bc->waiters + 1, (bc->n_waiters - 1) * sizeof(uint32_t));
                        bc->n_waiters--;
                        client_ref(bc->conn);
                        p->conn = bc->conn;
                        p->next = replies;
                        replies = p;
                }
                pthread_mutex_unlock(&bc->lock);
        }
        pthread_mutex_unlock(&clients_lock);

        /* Sent outside the locks: sending may end a connection, which takes them. */
        while (replies) {
                PendingReply *p = replies;

                replies = p->next;
                client_send(p->conn, p->frame.data, p->frame.len);
                client_unref(p->conn);
                buffer_done(&p->frame);
                free(p);
        }
}

/*
 * A token was removed: its sessions are gone in the backend, so every
 * client's sessions and handles on that slot go too, and so does the
 * login. Later calls on them get CKR_SESSION_HANDLE_INVALID.
 */
static void drop_slot_state(Slot *slot)
{
        pthread_mutex_lock(&clients_lock);
        for (BrokerClient *bc = clients; bc; bc = bc->next) {
                Session *dead[64];
                size_t n, state;
                uint64_t v;
                HandleKey k;

                pthread_mutex_lock(&bc->lock);
                do {
                        n = 0;
                        state = 0;
                        while (n < ELEMENTSOF(dead) && handle_map_next(bc->sessions, &state, &k, &v))
                                if (((Session *) (uintptr_t) v)->slot == slot)
                                        dead[n++] = (Session *) (uintptr_t) v;
                        for (size_t i = 0; i < n; i++) {
                                uid_session_release(bc->uid);
                                handle_map_remove(bc->sessions, key1(dead[i]->handle), NULL);
                                forget_session_objects_locked(bc, dead[i]->handle);
                                if (--dead[i]->refs == 0)
                                        free(dead[i]);
                        }
                } while (n == ELEMENTSOF(dead));
                handle_map_remove(bc->logins, key1(slot->id), NULL);
                pthread_mutex_unlock(&bc->lock);
        }
        pthread_mutex_unlock(&clients_lock);

        pthread_mutex_lock(&slot->login_lock);
        slot->login_count = 0;
        slot->pin_known = false;
        secure_zero(slot->pin_hash, sizeof(slot->pin_hash));
        __atomic_add_fetch(&slot->login_generation, 1, __ATOMIC_RELEASE);
        (void) pin_failures_set(slot, 0);
        pthread_mutex_unlock(&slot->login_lock);
        slot_class_forget(slot->id);
}

void broker_rescan(void)
{
        CK_SLOT_ID *events = NULL;
        int n;

        n = backends_scan(&events);
        for (int i = 0; i < n; i++) {
                Slot *slot = slot_get(events[i]);

                if (!slot)
                        continue;
                if (!slot->token_present)
                        drop_slot_state(slot);
                custody_note_slot(slot);
        }
        if (n > 0)
                broker_slot_events(events, (size_t) n);
        free(events);
}

void broker_custody_changed(CK_SLOT_ID id)
{
        Slot *slot = slot_get(id);
        BrokerClient **affected = NULL;
        size_t n = 0, cap = 0;

        if (!slot)
                return;

        /* Who has sessions there: held by a reference, so they can be judged and closed outside the list lock. */
        pthread_mutex_lock(&clients_lock);
        for (BrokerClient *bc = clients; bc; bc = bc->next) {
                bool has;

                pthread_mutex_lock(&bc->lock);
                has = client_sessions_on_slot_locked(bc, slot) > 0;
                pthread_mutex_unlock(&bc->lock);
                if (!has)
                        continue;
                if (n == cap) {
                        BrokerClient **a = realloc(affected, (cap = cap ? cap * 2 : 8) * sizeof(BrokerClient *));

                        if (!a)
                                break; /* the rest are stopped at their next call (session_custody()) */
                        affected = a;
                }
                client_ref(bc->conn);
                affected[n++] = bc;
        }
        pthread_mutex_unlock(&clients_lock);

        for (size_t i = 0; i < n; i++) {
                BrokerClient *bc = affected[i];

                if (custody_allows(bc, slot, "its open sessions", NULL) != CKR_OK) {
                        log_notice("Closing the sessions of pid %d (uid %u) on slot %lu: custody no longer allows "
                                   "them.",
                                   (int) client_pid(bc->conn), (unsigned) bc->uid, slot->id);
                        (void) close_sessions_on_slot(bc, slot);
                }
                client_unref(bc->conn);
        }
        free(affected);
}
