/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One process, C_Initialize with CKF_OS_LOCKING_OK, 16 threads each with its
 * own session doing 200 mixed operations (sign, digest, find, get attribute,
 * random) at the same time; every result is checked against a reference made
 * before the threads start. Meanwhile another thread sits in a blocking
 * C_WaitForSlotEvent: the workers must finish while it is blocked (the module
 * does not serialise calls behind it), and C_Finalize from the main thread
 * must then make the blocked call return CKR_CRYPTOKI_NOT_INITIALIZED promptly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p11-test.h"

#define N_THREADS 16
#define N_OPS 200

static CK_FUNCTION_LIST_PTR f;
static CK_SLOT_ID slot;
static CK_BYTE data[256];
static CK_BYTE ref_sig[256], ref_mod[256];
static CK_ULONG ref_sig_len, ref_mod_len;
static const char *key_label = "threads-rsa";
/* SHA-256("abc"), FIPS 180-2 appendix B.1 */
static const CK_BYTE sha256_abc[32] = { 0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };

typedef struct Worker {
        pthread_t thread;
        int id;
        unsigned ok, failed;
        CK_RV first_error;
        char first_what[96];
        double seconds;
} Worker;

static void fail(Worker *w, const char *what, CK_RV rv) {
        if (w->failed++ == 0) {
                w->first_error = rv;
                snprintf(w->first_what, sizeof(w->first_what), "%s", what);
        }
}

static void *worker(void *arg) {
        Worker *w = arg;
        CK_SESSION_HANDLE s;
        CK_RV rv;
        double t0 = p11t_now();

        rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK) {
                fail(w, "C_OpenSession", rv);
                return NULL;
        }
        CK_OBJECT_HANDLE objs[8], priv = 0, pub = 0;
        CK_ULONG n;
        CK_OBJECT_CLASS cls;
        CK_BYTE prev[32] = { 0 };
        for (int i = 0; i < N_OPS; i++) {
                CK_BYTE buf[512];
                CK_ULONG len = sizeof(buf);
                switch ((i + w->id) % 5) {
                case 0: /* find both keys by label, tell them apart by class */
                        rv = p11t_find_by_label(f, s, key_label, objs, ELEMENTSOF(objs), &n);
                        if (rv != CKR_OK || n != 2) {
                                fail(w, "find by label (expected 2 objects)", rv);
                                break;
                        }
                        for (CK_ULONG k = 0; k < n; k++) {
                                CK_ATTRIBUTE a = { CKA_CLASS, &cls, sizeof(cls) };
                                rv = f->C_GetAttributeValue(s, objs[k], &a, 1);
                                if (rv != CKR_OK)
                                        fail(w, "C_GetAttributeValue(CKA_CLASS)", rv);
                                else if (cls == CKO_PRIVATE_KEY)
                                        priv = objs[k];
                                else
                                        pub = objs[k];
                        }
                        w->ok++;
                        break;
                case 1: /* sign: PKCS#1 v1.5 is deterministic, so equal to the reference */
                        if (!priv) {
                                w->ok++; /* the key is found at the next find */
                                break;
                        }
                        rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_SHA256_RSA_PKCS, NULL, 0 }, priv);
                        if (rv == CKR_OK)
                                rv = f->C_Sign(s, data, sizeof(data), buf, &len);
                        if (rv != CKR_OK || len != ref_sig_len || memcmp(buf, ref_sig, len) != 0)
                                fail(w, "C_Sign (compared with the reference signature)", rv);
                        else
                                w->ok++;
                        break;
                case 2:
                        rv = f->C_DigestInit(s, &(CK_MECHANISM) { CKM_SHA256, NULL, 0 });
                        if (rv == CKR_OK)
                                rv = f->C_Digest(s, (CK_BYTE_PTR) "abc", 3, buf, &len);
                        if (rv != CKR_OK || len != 32 || memcmp(buf, sha256_abc, 32) != 0)
                                fail(w, "C_Digest(SHA256, \"abc\") (compared with FIPS 180-2)", rv);
                        else
                                w->ok++;
                        break;
                case 3: {
                        if (!pub) {
                                w->ok++;
                                break;
                        }
                        CK_ATTRIBUTE a = { CKA_MODULUS, buf, sizeof(buf) };
                        rv = f->C_GetAttributeValue(s, pub, &a, 1);
                        if (rv != CKR_OK || a.ulValueLen != ref_mod_len || memcmp(buf, ref_mod, ref_mod_len) != 0)
                                fail(w, "C_GetAttributeValue(CKA_MODULUS) (compared with the reference)", rv);
                        else
                                w->ok++;
                        break;
                }
                case 4: {
                        static const CK_BYTE zero[32];
                        memset(buf, 0, 32);
                        rv = f->C_GenerateRandom(s, buf, 32);
                        if (rv != CKR_OK || memcmp(buf, zero, 32) == 0 || memcmp(buf, prev, 32) == 0)
                                fail(w, "C_GenerateRandom(32)", rv);
                        else
                                w->ok++;
                        memcpy(prev, buf, 32);
                        break;
                }
                }
        }
        rv = f->C_CloseSession(s);
        if (rv != CKR_OK)
                fail(w, "C_CloseSession", rv);
        w->seconds = p11t_now() - t0;
        return NULL;
}

typedef struct Waiter {
        pthread_t thread;
        _Atomic int state; /* 0 not started, 1 calling, 2 returned */
        CK_RV rv;
        CK_SLOT_ID slot;
        double returned_at;
} Waiter;

static void *waiter(void *arg) {
        Waiter *wt = arg;
        wt->state = 1;
        wt->rv = f->C_WaitForSlotEvent(0, &wt->slot, NULL);
        wt->returned_at = p11t_now();
        wt->state = 2;
        return NULL;
}

static bool join_within(pthread_t t, double seconds) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t) seconds;
        ts.tv_nsec += (long) ((seconds - (time_t) seconds) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

int main(void) {
        P11Module m;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub, priv;
        Worker workers[N_THREADS];
        Waiter wt = { 0 };
        CK_RV rv;

        alarm(240); /* a hang is a failure, not a stuck test run */
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (CK_BYTE) i;
        if (!p11t_load(&m, "kyso", p11t_env("KYSO_MODULE")))
                return p11t_summary();
        f = m.f;
        if (!CHECK_OK(p11t_initialize(f), "C_Initialize(CKF_OS_LOCKING_OK)") ||
            !CHECK_OK(p11t_find_slot(f, p11t_env("KYSO_TEST_LABEL"), &slot), "slot of the test token") ||
            !CHECK_OK(p11t_open_login(f, slot, p11t_env("KYSO_TEST_PIN"), &s), "C_OpenSession + C_Login") ||
            !CHECK_OK(p11t_gen_rsa(f, s, 2048, key_label, false, &pub, &priv), "C_GenerateKeyPair(RSA 2048)"))
                return p11t_summary();
        ref_sig_len = sizeof(ref_sig);
        rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_SHA256_RSA_PKCS, NULL, 0 }, priv);
        if (rv == CKR_OK)
                rv = f->C_Sign(s, data, sizeof(data), ref_sig, &ref_sig_len);
        CHECK_OK(rv, "reference signature (%lu bytes)", (unsigned long) ref_sig_len);
        CK_ATTRIBUTE a = { CKA_MODULUS, ref_mod, sizeof(ref_mod) };
        rv = f->C_GetAttributeValue(s, pub, &a, 1);
        ref_mod_len = a.ulValueLen;
        CHECK_OK(rv, "reference modulus (%lu bytes)", (unsigned long) ref_mod_len);

        /* The blocking wait starts first and must still be blocked when all the work is done. */
        pthread_create(&wt.thread, NULL, waiter, &wt);
        usleep(200 * 1000);
        CHECK(wt.state == 1, "C_WaitForSlotEvent(flags 0) is blocked in its own thread (state %d%s%s)", wt.state,
              wt.state == 2 ? ", returned " : "", wt.state == 2 ? p11t_rv_name(wt.rv) : "");

        double t0 = p11t_now();
        for (int i = 0; i < N_THREADS; i++) {
                workers[i] = (Worker) { .id = i };
                pthread_create(&workers[i].thread, NULL, worker, &workers[i]);
        }
        unsigned total_ok = 0, total_failed = 0;
        for (int i = 0; i < N_THREADS; i++) {
                pthread_join(workers[i].thread, NULL);
                Worker *w = &workers[i];
                total_ok += w->ok;
                total_failed += w->failed;
                if (w->failed)
                        p11t_ok(false, "thread %d: %u of %d operations failed; first: %s -> %s", i, w->failed, N_OPS,
                                w->first_what, p11t_rv_name(w->first_error));
                else
                        p11t_ok(w->ok == N_OPS, "thread %d: %u/%d operations correct in %.2f s", i, w->ok, N_OPS,
                                w->seconds);
        }
        double elapsed = p11t_now() - t0;
        CHECK(total_failed == 0 && total_ok == N_THREADS * N_OPS,
              "%d threads x %d mixed operations: %u correct, %u failed, %.2f s (%.0f ops/s)", N_THREADS, N_OPS,
              total_ok, total_failed, elapsed, total_ok / elapsed);
        CHECK(wt.state == 1,
              "calls overlap: all %u operations completed while C_WaitForSlotEvent stayed blocked in another thread%s%s",
              total_ok, wt.state == 2 ? "; it returned " : "", wt.state == 2 ? p11t_rv_name(wt.rv) : "");

        CHECK_OK(f->C_CloseSession(s), "C_CloseSession");
        double tf = p11t_now();
        rv = f->C_Finalize(NULL);
        CHECK_OK(rv, "C_Finalize from the main thread while another thread is blocked in C_WaitForSlotEvent");
        bool joined = join_within(wt.thread, 5.0);
        if (!joined) {
                p11t_ok(false, "blocked C_WaitForSlotEvent did not return within 5 s of C_Finalize");
                /* Exit without joining: the thread is stuck in the module. */
                fflush(stdout);
                _exit(p11t_summary());
        }
        CHECK(wt.rv == CKR_CRYPTOKI_NOT_INITIALIZED,
              "blocked C_WaitForSlotEvent returned %s (expected CKR_CRYPTOKI_NOT_INITIALIZED) %.3f s after C_Finalize",
              p11t_rv_name(wt.rv), wt.returned_at - tf);
        CHECK(wt.returned_at - tf < 2.0, "... within 2 s (%.3f s)", wt.returned_at - tf);
        return p11t_summary();
}
