/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon restart: with a session open through kyso, kysod is killed with
 * SIGKILL. A call in flight (a blocking C_WaitForSlotEvent) and the next calls
 * must return PKCS#11 errors promptly, never hang (alarm() is the watchdog);
 * C_GetSlotList with the daemon down fails promptly. After the daemon is
 * restarted ($KYSO_TEST_RESTART), the old session handle answers
 * CKR_SESSION_HANDLE_INVALID (or CKR_DEVICE_REMOVED) and new sessions work
 * without C_Finalize/C_Initialize: the module reconnects by itself.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p11-test.h"

static CK_FUNCTION_LIST_PTR f;

static void on_alarm(int sig) {
        static const char msg[] = "not ok - watchdog: a PKCS#11 call hung (SIGALRM)\n";
        (void) sig;
        (void) !write(1, msg, sizeof(msg) - 1);
        _exit(1);
}

typedef struct Waiter {
        pthread_t thread;
        volatile int state;
        CK_RV rv;
        double returned_at;
} Waiter;

static void *waiter(void *arg) {
        Waiter *w = arg;
        CK_SLOT_ID s;
        w->state = 1;
        w->rv = f->C_WaitForSlotEvent(0, &s, NULL);
        w->returned_at = p11t_now();
        w->state = 2;
        return NULL;
}

static pid_t read_pid(const char *dir) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/kysod.pid", dir);
        FILE *fp = fopen(path, "re");
        long pid = 0;
        if (fp) {
                if (fscanf(fp, "%ld", &pid) != 1)
                        pid = 0;
                fclose(fp);
        }
        return (pid_t) pid;
}

/* Gone or a zombie: either way its socket is closed. */
static bool wait_dead(pid_t pid, double seconds) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        for (double t0 = p11t_now(); p11t_now() - t0 < seconds; usleep(20 * 1000)) {
                FILE *fp = fopen(path, "re");
                if (!fp)
                        return true;
                char state = 0;
                int r = fscanf(fp, "%*d (%*[^)]) %c", &state);
                fclose(fp);
                if (r == 1 && (state == 'Z' || state == 'X'))
                        return true;
        }
        return false;
}

static CK_RV sign_once(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key) {
        CK_BYTE sig[512], data[32] = { 1, 2, 3 };
        CK_ULONG n = sizeof(sig);
        CK_RV rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_ECDSA, NULL, 0 }, key);
        return rv != CKR_OK ? rv : f->C_Sign(s, data, sizeof(data), sig, &n);
}

int main(void) {
        P11Module m;
        const char *dir = p11t_env("KYSO_TEST_DIR"), *restart = p11t_env("KYSO_TEST_RESTART");
        const char *label = p11t_env("KYSO_TEST_LABEL"), *pin = p11t_env("KYSO_TEST_PIN");
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s, s2;
        CK_OBJECT_HANDLE pub, priv;
        CK_RV rv;
        double t0;

        signal(SIGALRM, on_alarm);
        alarm(120);
        if (!p11t_load(&m, "kyso", p11t_env("KYSO_MODULE")))
                return p11t_summary();
        f = m.f;
        if (!CHECK_OK(p11t_initialize(f), "C_Initialize(CKF_OS_LOCKING_OK)") ||
            !CHECK_OK(p11t_find_slot(f, label, &slot), "slot of the test token") ||
            !CHECK_OK(p11t_open_login(f, slot, pin, &s), "C_OpenSession + C_Login") ||
            !CHECK_OK(p11t_gen_ec(f, s, "P-256", "restart-ec", false, &pub, &priv), "C_GenerateKeyPair(P-256)") ||
            !CHECK_OK(sign_once(s, priv), "C_Sign(ECDSA) before the restart"))
                return p11t_summary();

        Waiter w = { 0 };
        pthread_create(&w.thread, NULL, waiter, &w);
        usleep(300 * 1000);
        CHECK(w.state == 1, "a C_WaitForSlotEvent(flags 0) call is in flight in another thread (%s)",
              w.state == 2 ? p11t_rv_name(w.rv) : "blocked");

        pid_t pid = read_pid(dir);
        if (!CHECK(pid > 0, "kysod pid %d from %s/kysod.pid", (int) pid, dir))
                return p11t_summary();
        t0 = p11t_now();
        CHECK(kill(pid, SIGKILL) == 0, "kill -KILL kysod (pid %d)", (int) pid);
        CHECK(wait_dead(pid, 5), "kysod is dead");

        /* The in-flight call returns an error, promptly. */
        alarm(20);
        for (int i = 0; i < 100 && w.state != 2; i++)
                usleep(50 * 1000);
        CHECK(w.state == 2 && w.rv != CKR_OK, "the in-flight C_WaitForSlotEvent returned %s %.3f s after SIGKILL",
              w.state == 2 ? p11t_rv_name(w.rv) : "NOTHING (still blocked after 5 s)", w.state == 2 ? w.returned_at - t0 : 0.0);
        if (w.state == 2)
                pthread_join(w.thread, NULL);

        t0 = p11t_now();
        rv = f->C_GetSessionInfo(s, &(CK_SESSION_INFO) { 0 });
        CHECK(rv != CKR_OK, "daemon down: C_GetSessionInfo(old session) fails: %s (%.3f s)", p11t_rv_name(rv), p11t_now() - t0);
        t0 = p11t_now();
        rv = sign_once(s, priv);
        CHECK(rv != CKR_OK, "daemon down: C_Sign(old session) fails: %s (%.3f s)", p11t_rv_name(rv), p11t_now() - t0);
        t0 = p11t_now();
        CK_ULONG n = 0;
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
        double dt = p11t_now() - t0;
        CHECK(rv != CKR_OK, "daemon down: C_GetSlotList fails: %s", p11t_rv_name(rv));
        CHECK(dt < 2.0, "daemon down: ... promptly (%.3f s)", dt);
        t0 = p11t_now();
        rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2);
        CHECK(rv != CKR_OK && p11t_now() - t0 < 2.0, "daemon down: C_OpenSession fails promptly: %s (%.3f s)",
              p11t_rv_name(rv), p11t_now() - t0);

        /* Restart; the module must reconnect by itself. */
        alarm(60);
        fflush(stdout);
        int st = system(restart);
        CHECK(st == 0, "%s: exit status %d", restart, st);
        pid_t pid2 = read_pid(dir);
        CHECK(pid2 > 0 && pid2 != pid, "kysod runs again (pid %d)", (int) pid2);

        rv = f->C_GetSessionInfo(s, &(CK_SESSION_INFO) { 0 });
        CHECK(rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_DEVICE_REMOVED,
              "after restart: C_GetSessionInfo(old session) %s (expected CKR_SESSION_HANDLE_INVALID or CKR_DEVICE_REMOVED)",
              p11t_rv_name(rv));
        rv = sign_once(s, priv);
        CHECK(rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_DEVICE_REMOVED,
              "after restart: C_SignInit(old session) %s (expected CKR_SESSION_HANDLE_INVALID or CKR_DEVICE_REMOVED)",
              p11t_rv_name(rv));
        n = 0;
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
        CHECK(rv == CKR_OK && n > 0, "after restart, without C_Initialize: C_GetSlotList %s, %lu slots", p11t_rv_name(rv),
              (unsigned long) n);
        rv = p11t_find_slot(f, label, &slot);
        CHECK_OK(rv, "after restart: slot of the test token");
        rv = p11t_open_login(f, slot, pin, &s2);
        if (CHECK_OK(rv, "after restart: new C_OpenSession + C_Login")) {
                CHECK_OK(p11t_gen_ec(f, s2, "P-256", "restart-ec2", false, &pub, &priv), "after restart: C_GenerateKeyPair(P-256)");
                CHECK_OK(sign_once(s2, priv), "after restart: C_Sign(ECDSA) in the new session");
                CK_SESSION_INFO si;
                memset(&si, 0, sizeof(si));
                rv = f->C_GetSessionInfo(s2, &si);
                CHECK(rv == CKR_OK && si.state == CKS_RW_USER_FUNCTIONS, "after restart: new session state %lu (%s)",
                      (unsigned long) si.state, p11t_rv_name(rv));
        }
        rv = f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &(CK_SLOT_ID) { 0 }, NULL);
        CHECK(rv == CKR_NO_EVENT || rv == CKR_OK, "after restart: C_WaitForSlotEvent(CKF_DONT_BLOCK) %s", p11t_rv_name(rv));
        CHECK_OK(f->C_Finalize(NULL), "C_Finalize");
        return p11t_summary();
}
