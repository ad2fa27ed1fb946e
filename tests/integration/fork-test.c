/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork() semantics: the parent initialises and opens a logged-in session; after
 * fork() the child must C_Initialize again (before that every call answers
 * CKR_CRYPTOKI_NOT_INITIALIZED, and the parent's handles are not the child's),
 * then it opens its own session, logs in, signs with the parent's token key and
 * exits 0. The signature (PKCS#1 v1.5, deterministic) must equal the parent's.
 * The parent's session must still work afterwards, also after a child that
 * exits without ever initialising (whose exit must not disturb the parent's
 * connection).
 *
 * The child reports its checks as "# child: ok/not ok" lines and through its
 * exit status; the parent turns that into one result.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

static CK_FUNCTION_LIST_PTR f;
static CK_BYTE data[64] = "data the parent and the child sign with the same key";
static int child_failures;
static char key_label[64], session_label[64];

static void child_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void child_check(bool cond, const char *fmt, ...) {
        va_list ap;
        printf("# child %d: %s - ", (int) getpid(), cond ? "ok" : "not ok");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
        if (!cond)
                child_failures++;
}

static CK_RV sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_BYTE *sig, CK_ULONG *len) {
        CK_RV rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_SHA256_RSA_PKCS, NULL, 0 }, key);
        if (rv != CKR_OK)
                return rv;
        return f->C_Sign(s, data, sizeof(data), sig, len);
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls) {
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, key_label, strlen(key_label) } };
        CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
        CK_ULONG n = 0;
        if (f->C_FindObjectsInit(s, t, ELEMENTSOF(t)) != CKR_OK)
                return CK_INVALID_HANDLE;
        if (f->C_FindObjects(s, &h, 1, &n) != CKR_OK || n != 1)
                h = CK_INVALID_HANDLE;
        f->C_FindObjectsFinal(s);
        return h;
}

/* The child that does everything right. Writes its signature to fd. */
static void child_main(CK_SESSION_HANDLE parent_session, const CK_BYTE *parent_sig, CK_ULONG parent_sig_len, int fd) {
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_ULONG n = 0;
        CK_RV rv;

        alarm(30);
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
        child_check(rv == CKR_CRYPTOKI_NOT_INITIALIZED, "C_GetSlotList before C_Initialize: %s (expected CKR_CRYPTOKI_NOT_INITIALIZED)",
                    p11t_rv_name(rv));
        rv = f->C_GetSessionInfo(parent_session, &(CK_SESSION_INFO) { 0 });
        child_check(rv == CKR_CRYPTOKI_NOT_INITIALIZED,
                    "C_GetSessionInfo(parent's session) before C_Initialize: %s (expected CKR_CRYPTOKI_NOT_INITIALIZED)",
                    p11t_rv_name(rv));
        rv = p11t_initialize(f);
        child_check(rv == CKR_OK, "C_Initialize in the child: %s", p11t_rv_name(rv));
        if (rv != CKR_OK)
                _exit(1);
        rv = f->C_GetSessionInfo(parent_session, &(CK_SESSION_INFO) { 0 });
        child_check(rv == CKR_SESSION_HANDLE_INVALID,
                    "C_GetSessionInfo(parent's session handle) in the initialised child: %s (expected CKR_SESSION_HANDLE_INVALID)",
                    p11t_rv_name(rv));
        rv = p11t_find_slot(f, p11t_env("KYSO_TEST_LABEL"), &slot);
        child_check(rv == CKR_OK, "slot of the test token: %s", p11t_rv_name(rv));
        rv = p11t_open_login(f, slot, p11t_env("KYSO_TEST_PIN"), &s);
        child_check(rv == CKR_OK, "C_OpenSession + C_Login in the child: %s", p11t_rv_name(rv));
        if (rv != CKR_OK)
                _exit(1);
        /* Session objects are per client: the parent's must be invisible here. */
        CK_OBJECT_HANDLE seen[4];
        CK_ULONG nseen = 99;
        rv = p11t_find_by_label(f, s, session_label, seen, ELEMENTSOF(seen), &nseen);
        child_check(rv == CKR_OK && nseen == 0, "the parent's session object \"%s\" is invisible in the child: %s, %lu found",
                    session_label, p11t_rv_name(rv), (unsigned long) nseen);
        CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY);
        child_check(key != CK_INVALID_HANDLE, "the parent's token key \"%s\" is found in the child", key_label);
        CK_BYTE sig[512];
        CK_ULONG len = sizeof(sig);
        rv = sign(s, key, sig, &len);
        child_check(rv == CKR_OK, "C_Sign in the child: %s", p11t_rv_name(rv));
        child_check(rv == CKR_OK && len == parent_sig_len && memcmp(sig, parent_sig, len) == 0,
                    "the child's signature %s equals the parent's %s", p11t_hex(sig, len), p11t_hex(parent_sig, parent_sig_len));
        if (rv == CKR_OK && write(fd, sig, len) != (ssize_t) len)
                child_check(false, "write the signature to the parent");
        rv = f->C_CloseSession(s);
        child_check(rv == CKR_OK, "C_CloseSession in the child: %s", p11t_rv_name(rv));
        rv = f->C_Finalize(NULL);
        child_check(rv == CKR_OK, "C_Finalize in the child: %s", p11t_rv_name(rv));
        exit(child_failures ? 1 : 0);
}

static int wait_child(pid_t pid) {
        int status;
        for (int i = 0; i < 600; i++) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                usleep(50 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
}

static void parent_session_works(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, const CK_BYTE *ref, CK_ULONG ref_len,
                                 const char *when) {
        CK_SESSION_INFO si;
        memset(&si, 0, sizeof(si));
        CK_RV rv = f->C_GetSessionInfo(s, &si);
        CHECK(rv == CKR_OK && si.state == CKS_RW_USER_FUNCTIONS,
              "%s: parent's C_GetSessionInfo %s, state %lu (expected CKS_RW_USER_FUNCTIONS)", when, p11t_rv_name(rv),
              (unsigned long) si.state);
        CK_BYTE sig[512];
        CK_ULONG len = sizeof(sig);
        rv = sign(s, priv, sig, &len);
        CHECK(rv == CKR_OK && len == ref_len && memcmp(sig, ref, len) == 0,
              "%s: parent's C_Sign %s gives the same signature", when, p11t_rv_name(rv));
}

int main(void) {
        P11Module m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub, priv;
        CK_BYTE sig[512];
        CK_ULONG sig_len = sizeof(sig);
        int pfd[2];

        alarm(120);
        snprintf(key_label, sizeof(key_label), "fork-test-%d", (int) getpid());
        snprintf(session_label, sizeof(session_label), "fork-session-%d", (int) getpid());
        if (!p11t_load(&m, "kyso", p11t_env("KYSO_MODULE")))
                return p11t_summary();
        f = m.f;
        if (!CHECK_OK(p11t_initialize(f), "parent: C_Initialize(CKF_OS_LOCKING_OK)") ||
            !CHECK_OK(p11t_find_slot(f, p11t_env("KYSO_TEST_LABEL"), &slot), "parent: slot of the test token") ||
            !CHECK_OK(p11t_open_login(f, slot, p11t_env("KYSO_TEST_PIN"), &s), "parent: C_OpenSession + C_Login") ||
            !CHECK_OK(p11t_gen_rsa(f, s, 2048, key_label, true, &pub, &priv),
                      "parent: C_GenerateKeyPair(RSA 2048, token objects \"%s\")", key_label) ||
            !CHECK_OK(sign(s, priv, sig, &sig_len), "parent: C_Sign(SHA256_RSA_PKCS)"))
                return p11t_summary();
        CK_OBJECT_CLASS dcls = CKO_DATA;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE dt[] = { { CKA_CLASS, &dcls, sizeof(dcls) }, { CKA_TOKEN, &no, sizeof(no) },
                              { CKA_LABEL, session_label, strlen(session_label) } };
        CK_OBJECT_HANDLE dobj;
        CHECK_OK(f->C_CreateObject(s, dt, ELEMENTSOF(dt), &dobj), "parent: C_CreateObject(session data object \"%s\")",
                 session_label);

        /* 1. A child that initialises, logs in and signs. */
        if (pipe(pfd) < 0)
                return 99;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
                close(pfd[0]);
                child_main(s, sig, sig_len, pfd[1]);
        }
        close(pfd[1]);
        CK_BYTE csig[512];
        ssize_t clen = 0, r;
        while ((r = read(pfd[0], csig + clen, sizeof(csig) - clen)) > 0)
                clen += r;
        close(pfd[0]);
        int st = wait_child(pid);
        CHECK(st == 0, "child that re-initialises, logs in and signs exited with status %d (expected 0)", st);
        CHECK(clen == (ssize_t) sig_len, "child sent its %zd-byte signature", clen);
        CK_RV rv = f->C_VerifyInit(s, &(CK_MECHANISM) { CKM_SHA256_RSA_PKCS, NULL, 0 }, pub);
        if (rv == CKR_OK)
                rv = f->C_Verify(s, data, sizeof(data), csig, (CK_ULONG) clen);
        CHECK_OK(rv, "parent: C_Verify of the child's signature");
        parent_session_works(s, priv, sig, sig_len, "after the first child");

        /* 2. A child that never initialises, tries the inherited handles, and exits (running atexit handlers). */
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                alarm(30);
                CK_RV crv = f->C_GetSessionInfo(s, &(CK_SESSION_INFO) { 0 });
                child_check(crv == CKR_CRYPTOKI_NOT_INITIALIZED,
                            "uninitialised child: C_GetSessionInfo(parent's session) %s (expected CKR_CRYPTOKI_NOT_INITIALIZED)",
                            p11t_rv_name(crv));
                CK_ULONG n = sizeof(sig);
                crv = f->C_Sign(s, data, sizeof(data), sig, &n);
                child_check(crv == CKR_CRYPTOKI_NOT_INITIALIZED,
                            "uninitialised child: C_Sign(parent's session) %s (expected CKR_CRYPTOKI_NOT_INITIALIZED)",
                            p11t_rv_name(crv));
                crv = f->C_Finalize(NULL);
                child_check(crv == CKR_CRYPTOKI_NOT_INITIALIZED,
                            "uninitialised child: C_Finalize %s (expected CKR_CRYPTOKI_NOT_INITIALIZED)", p11t_rv_name(crv));
                exit(child_failures ? 1 : 0);
        }
        st = wait_child(pid);
        CHECK(st == 0, "child that never initialises exited with status %d (expected 0)", st);
        parent_session_works(s, priv, sig, sig_len, "after the uninitialised child exited");

        /* 3. Several children at once, each with its own session. */
        pid_t kids[4];
        for (int i = 0; i < 4; i++) {
                fflush(stdout);
                kids[i] = fork();
                if (kids[i] == 0) {
                        int devnull[2];
                        if (pipe(devnull) < 0)
                                _exit(2);
                        child_main(s, sig, sig_len, devnull[1]);
                }
        }
        int bad = 0;
        for (int i = 0; i < 4; i++)
                if (wait_child(kids[i]) != 0)
                        bad++;
        CHECK(bad == 0, "4 concurrent children initialised, logged in and signed: %d failed", bad);
        parent_session_works(s, priv, sig, sig_len, "after 4 concurrent children");

        CHECK_OK(f->C_DestroyObject(s, priv), "parent: C_DestroyObject(private token key)");
        CHECK_OK(f->C_DestroyObject(s, pub), "parent: C_DestroyObject(public token key)");
        CHECK_OK(f->C_Finalize(NULL), "parent: C_Finalize");
        return p11t_summary();
}
