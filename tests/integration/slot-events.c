/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * C_WaitForSlotEvent through kyso: with CKF_DONT_BLOCK it answers CKR_NO_EVENT
 * when nothing happened; a blocking call in one thread is woken when a new slot
 * appears. The event is caused through kyso itself: C_InitToken on SoftHSM2's
 * free slot (it always offers one uninitialised token); the daemon rescans after
 * C_InitToken and reports the change. The woken call must return CKR_OK with a
 * slot id that C_GetSlotList lists, and the events must then drain to
 * CKR_NO_EVENT (no event storm). A second process blocked in the same call is
 * woken too.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "p11-test.h"

static CK_FUNCTION_LIST_PTR f;

typedef struct Waiter {
        pthread_t thread;
        volatile int state;
        CK_RV rv;
        CK_SLOT_ID slot;
        double returned_at;
} Waiter;

static void *waiter(void *arg) {
        Waiter *w = arg;
        w->state = 1;
        w->rv = f->C_WaitForSlotEvent(0, &w->slot, NULL);
        w->returned_at = p11t_now();
        w->state = 2;
        return NULL;
}

static bool join_within(pthread_t t, double seconds) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t) seconds;
        return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

static bool slot_listed(CK_SLOT_ID id) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);
        if (f->C_GetSlotList(CK_FALSE, slots, &n) != CKR_OK)
                return false;
        for (CK_ULONG i = 0; i < n; i++)
                if (slots[i] == id)
                        return true;
        return false;
}

/* The slot whose token is not initialised; false when there is none. */
static bool free_slot(CK_SLOT_ID *ret, CK_ULONG *ret_count) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);
        bool found = false;
        if (f->C_GetSlotList(CK_FALSE, slots, &n) != CKR_OK)
                return false;
        *ret_count = n;
        for (CK_ULONG i = 0; i < n && !found; i++) {
                CK_TOKEN_INFO ti;
                memset(&ti, 0, sizeof(ti));
                if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && !(ti.flags & CKF_TOKEN_INITIALIZED)) {
                        *ret = slots[i];
                        found = true;
                }
        }
        return found;
}

static CK_RV init_token(CK_SLOT_ID slot, const char *label, const char *so_pin) {
        CK_UTF8CHAR l[32];
        memset(l, ' ', sizeof(l));
        memcpy(l, label, strlen(label));
        return f->C_InitToken(slot, (CK_UTF8CHAR_PTR) so_pin, strlen(so_pin), l);
}

int main(void) {
        P11Module m;
        const char *so_pin = p11t_env("KYSO_TEST_SO_PIN");
        CK_SLOT_ID slot, freeslot;
        CK_ULONG count_before = 0, count_after = 0;
        CK_RV rv;

        alarm(120);
        if (!p11t_load(&m, "kyso", p11t_env("KYSO_MODULE")))
                return p11t_summary();
        f = m.f;
        if (!CHECK_OK(p11t_initialize(f), "C_Initialize(CKF_OS_LOCKING_OK)"))
                return p11t_summary();
        CHECK_OK(p11t_find_slot(f, p11t_env("KYSO_TEST_LABEL"), &slot), "slot of the test token");

        for (int i = 0; i < 3; i++) {
                CK_SLOT_ID s = 0xdead;
                rv = f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s, NULL);
                CHECK(rv == CKR_NO_EVENT, "C_WaitForSlotEvent(CKF_DONT_BLOCK) with nothing happening #%d: %s (expected CKR_NO_EVENT)",
                      i + 1, p11t_rv_name(rv));
        }
        bool have_free = free_slot(&freeslot, &count_before);
        if (!CHECK(have_free, "a slot with an uninitialised token is offered (%lu slots)", (unsigned long) count_before))
                return p11t_summary();

        /* A second process blocks in the same call; it reports through its exit status. */
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
                alarm(30);
                CK_SLOT_ID s;
                if (p11t_initialize(f) != CKR_OK)
                        _exit(2);
                CK_RV crv = f->C_WaitForSlotEvent(0, &s, NULL);
                printf("# second process: C_WaitForSlotEvent returned %s, slot %lu\n", p11t_rv_name(crv), (unsigned long) s);
                fflush(stdout);
                _exit(crv == CKR_OK ? 0 : 1);
        }

        Waiter w = { 0 };
        pthread_create(&w.thread, NULL, waiter, &w);
        usleep(500 * 1000);
        CHECK(w.state == 1, "C_WaitForSlotEvent(flags 0) blocks while nothing happens (%s)",
              w.state == 2 ? p11t_rv_name(w.rv) : "still blocked after 0.5 s");
        int status;
        CHECK(waitpid(pid, &status, WNOHANG) == 0, "the second process is blocked in C_WaitForSlotEvent too");

        double t0 = p11t_now();
        rv = init_token(freeslot, "kyso-events", so_pin);
        CHECK_OK(rv, "C_InitToken(free slot %lu, \"kyso-events\") through kyso", (unsigned long) freeslot);
        bool woke = join_within(w.thread, 10);
        if (!CHECK(woke, "the blocked C_WaitForSlotEvent returned within 10 s of C_InitToken")) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                fflush(stdout);
                _exit(p11t_summary());
        }
        CHECK(w.rv == CKR_OK, "it returned %s (expected CKR_OK) after %.3f s, slot %lu", p11t_rv_name(w.rv),
              w.returned_at - t0, (unsigned long) w.slot);
        CHECK(slot_listed(w.slot), "slot %lu from the event is in C_GetSlotList", (unsigned long) w.slot);

        int st = -1;
        for (int i = 0; i < 200; i++) {
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        st = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                        break;
                }
                usleep(50 * 1000);
        }
        if (st < 0) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
        }
        CHECK(st == 0, "the second process was woken with CKR_OK (exit status %d; -1: still blocked after 10 s)", st);

        CK_SLOT_ID newslot;
        CHECK_OK(p11t_find_slot(f, "kyso-events", &newslot), "the new token \"kyso-events\" is listed");
        CK_SLOT_ID again;
        have_free = free_slot(&again, &count_after);
        CHECK(have_free && count_after == count_before + 1,
              "after C_InitToken the rescan offers SoftHSM2's next free slot: %lu slots (before: %lu), free slot %s",
              (unsigned long) count_after, (unsigned long) count_before, have_free ? "present" : "MISSING");

        /* Pending events drain: at most a few more, then CKR_NO_EVENT. */
        int extra = 0;
        CK_SLOT_ID s;
        while ((rv = f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s, NULL)) == CKR_OK && extra < 20) {
                CHECK(slot_listed(s), "further event for slot %lu, which is listed", (unsigned long) s);
                extra++;
        }
        CHECK(rv == CKR_NO_EVENT, "events drain to CKR_NO_EVENT after %d more (last: %s)", extra, p11t_rv_name(rv));

        CK_SESSION_HANDLE sess;
        rv = p11t_open_login(f, slot, p11t_env("KYSO_TEST_PIN"), &sess);
        CHECK_OK(rv, "the test token still works after the rescan (C_OpenSession + C_Login)");
        CHECK_OK(f->C_Finalize(NULL), "C_Finalize");
        return p11t_summary();
}
