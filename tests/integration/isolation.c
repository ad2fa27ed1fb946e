/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Two clients of one kysod, each in its own process: A (this process) and B
 * (a child), run twice, once with B as the same uid and once with B as
 * another uid (nobody). Nothing A has may leak to B: handles, session
 * objects, or its login (the bug of OpenSC CVE-2023-40660: a second process
 * signed with an empty PIN after a first one logged in). And nothing B does
 * (logout, disconnect) may take A's login away.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

static const char *kyso_path, *label, *pin;

/* What A tells B, and the replies: one line each over pipes. */
typedef struct Shared {
        CK_SESSION_HANDLE a_session;  /* a session handle of A's that B does not have */
        CK_OBJECT_HANDLE a_secret;    /* A's session secret key */
        CK_OBJECT_HANDLE a_private;   /* a private token key, through A's handle */
} Shared;

static void say(int fd, const char *what)
{
        if (write(fd, what, strlen(what)) < 0 || write(fd, "\n", 1) < 0)
                p11t_diag("write failed: %s", strerror(errno));
}

static void hear(int fd, const char *what)
{
        char buf[64];
        size_t n = 0;

        while (n < sizeof(buf) - 1 && read(fd, buf + n, 1) == 1 && buf[n] != '\n')
                n++;
        buf[n] = '\0';
        if (strcmp(buf, what) != 0)
                p11t_ok(false, "expected \"%s\" from the other client, got \"%s\"", what, buf);
}

static bool find_label(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *l, CK_OBJECT_CLASS cls,
                       CK_ULONG *ret_n, CK_OBJECT_HANDLE *ret)
{
        CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *) l, strlen(l) }, { CKA_CLASS, &cls, sizeof(cls) } };
        CK_OBJECT_HANDLE h[16];
        CK_ULONG n = 0;

        if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
                return false;
        if (f->C_FindObjects(s, h, 16, &n) != CKR_OK) {
                f->C_FindObjectsFinal(s);
                return false;
        }
        f->C_FindObjectsFinal(s);
        *ret_n = n;
        if (ret && n > 0)
                *ret = h[0];
        return true;
}

static CK_RV sign_with(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32] = { 9 }, sig[128];
        CK_ULONG len = sizeof(sig);
        CK_RV rv = f->C_SignInit(s, &m, key);

        return rv != CKR_OK ? rv : f->C_Sign(s, hash, sizeof(hash), sig, &len);
}

static CK_STATE session_state(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s)
{
        CK_SESSION_INFO si = {};

        return f->C_GetSessionInfo(s, &si) == CKR_OK ? si.state : (CK_STATE) -1;
}

/* B: everything here runs in the child, as `uid`. Returns its exit status. */
static int client_b(uid_t uid, int in, int out, const Shared *a)
{
        P11Module m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE h = 0;
        CK_ULONG n = 99;
        CK_BYTE buf[64];
        CK_ATTRIBUTE t = { CKA_VALUE, buf, sizeof(buf) };
        const char *who = uid == 0 ? "same uid" : "other uid";
        bool found;

        if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(uid) < 0)) {
                p11t_ok(false, "[%s] drop to uid %u: %s", who, (unsigned) uid, strerror(errno));
                return 1;
        }
        if (!p11t_load(&m, "kyso", kyso_path) || p11t_initialize(m.f) != CKR_OK ||
            p11t_find_slot(m.f, label, &slot) != CKR_OK || p11t_open_login(m.f, slot, NULL, &s) != CKR_OK) {
                p11t_ok(false, "[%s] B: set up a session", who);
                return 1;
        }

        hear(in, "a-logged-in");
        CHECK(session_state(m.f, s) == CKS_RW_PUBLIC_SESSION,
              "[%s] B's session is public while A is logged in (state %lu)", who, session_state(m.f, s));
        CHECK_RV(m.f->C_GetSessionInfo(a->a_session, &(CK_SESSION_INFO) {}), CKR_SESSION_HANDLE_INVALID,
                 "[%s] A's session handle is invalid for B", who);
        CHECK_RV(m.f->C_GetAttributeValue(s, a->a_secret, &t, 1), CKR_OBJECT_HANDLE_INVALID,
                 "[%s] A's session-object handle is invalid for B", who);
        found = find_label(m.f, s, "a-secret", CKO_SECRET_KEY, &n, NULL);
        CHECK(found && n == 0,
              "[%s] C_FindObjects does not return A's session object (%lu found)", who, n);
        found = find_label(m.f, s, "a-key", CKO_PRIVATE_KEY, &n, NULL);
        CHECK(found && n == 0,
              "[%s] B, not logged in, finds no private key (%lu found)", who, n);
        CHECK(sign_with(m.f, s, a->a_private) != CKR_OK, "[%s] B cannot sign with A's key handle", who);

        CHECK_RV(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "", 0), CKR_PIN_INCORRECT,
                 "[%s] B's login with the empty PIN", who);
        CHECK_RV(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "0000000000", 10), CKR_PIN_INCORRECT,
                 "[%s] B's login with a wrong PIN", who);
        CHECK(session_state(m.f, s) == CKS_RW_PUBLIC_SESSION, "[%s] ... and B is still not logged in", who);
        found = find_label(m.f, s, "a-key", CKO_PRIVATE_KEY, &n, NULL);
        CHECK(found && n == 0,
              "[%s] ... and still finds no private key (%lu found)", who, n);

        CHECK_OK(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), "[%s] B logs in with the right PIN",
                 who);
        CHECK(session_state(m.f, s) == CKS_RW_USER_FUNCTIONS, "[%s] B's session is now a user session", who);
        found = find_label(m.f, s, "a-key", CKO_PRIVATE_KEY, &n, &h);
        CHECK(found && n == 1,
              "[%s] B now finds the private token key (%lu found)", who, n);
        CHECK_OK(sign_with(m.f, s, h), "[%s] B signs with it through its own handle", who);
        found = find_label(m.f, s, "a-secret", CKO_SECRET_KEY, &n, NULL);
        CHECK(found && n == 0,
              "[%s] A's session object stays invisible to B logged in (%lu found)", who, n);

        CHECK_OK(m.f->C_Logout(s), "[%s] B logs out", who);
        say(out, "b-logged-out");
        hear(in, "a-checked");

        /* B logs in again and stays so while A logs out; then B leaves without logging out. */
        CHECK_OK(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), "[%s] B logs in again", who);
        say(out, "b-logged-in");
        hear(in, "a-logged-out");
        CHECK(session_state(m.f, s) == CKS_RW_USER_FUNCTIONS, "[%s] A's logout left B logged in", who);
        CHECK_OK(sign_with(m.f, s, h), "[%s] B still signs after A logged out", who);
        _exit(p11t_failures() ? 1 : 0); /* leave without C_Logout or C_Finalize: a vanished client */
}

static void run(uid_t b_uid)
{
        const char *who = b_uid == 0 ? "same uid" : "other uid";
        int to_b[2], from_b[2], status = 0;
        P11Module m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s[3];
        CK_OBJECT_HANDLE pub, priv, secret = 0;
        CK_BYTE value[32] = { 1 };
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE secret_t[] = {
                { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                { CKA_TOKEN, &no, sizeof(no) },   { CKA_PRIVATE, &no, sizeof(no) },
                { CKA_SENSITIVE, &no, sizeof(no) }, { CKA_LABEL, "a-secret", 8 },
                { CKA_VALUE, value, sizeof(value) },
        };
        Shared shared;
        pid_t pid;

        if (!p11t_load(&m, "kyso", kyso_path) || pipe(to_b) < 0 || pipe(from_b) < 0)
                return;
        CHECK_OK(p11t_initialize(m.f), "[%s] A: C_Initialize", who);
        CHECK_OK(p11t_find_slot(m.f, label, &slot), "[%s] A: find the token", who);
        for (unsigned i = 0; i < 3; i++)
                CHECK_OK(p11t_open_login(m.f, slot, i == 0 ? pin : NULL, &s[i]), "[%s] A: session %u", who, i);
        /* Objects enough that A's handle numbers pass any B will be given. */
        for (unsigned i = 0; i < 8; i++)
                (void) m.f->C_CreateObject(s[0], secret_t, ELEMENTSOF(secret_t), &secret);
        CHECK_OK(p11t_gen_ec(m.f, s[0], "P-256", "a-key", true, &pub, &priv), "[%s] A: a private token key", who);
        shared = (Shared) { .a_session = s[2], .a_secret = secret, .a_private = priv };

        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                close(to_b[1]);
                close(from_b[0]);
                _exit(client_b(b_uid, to_b[0], from_b[1], &shared));
        }
        close(to_b[0]);
        close(from_b[1]);

        say(to_b[1], "a-logged-in");
        hear(from_b[0], "b-logged-out");
        CHECK(session_state(m.f, s[0]) == CKS_RW_USER_FUNCTIONS, "[%s] B's logout left A logged in", who);
        CHECK_OK(sign_with(m.f, s[0], priv), "[%s] A still signs after B logged out", who);
        say(to_b[1], "a-checked");

        hear(from_b[0], "b-logged-in");
        CHECK_OK(m.f->C_Logout(s[0]), "[%s] A logs out", who);
        say(to_b[1], "a-logged-out");
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "[%s] client B's checks passed", who);

        /* B vanished while logged in: its login ended with it, A is not logged in by B's leftovers. */
        CHECK(session_state(m.f, s[1]) == CKS_RW_PUBLIC_SESSION, "[%s] B's exit left no login behind for A", who);
        CHECK(sign_with(m.f, s[1], priv) != CKR_OK, "[%s] A, logged out, cannot sign", who);
        CHECK_RV(m.f->C_DestroyObject(s[0], priv), CKR_OBJECT_HANDLE_INVALID,
                 "[%s] A, logged out, cannot touch its private key", who);
        CHECK_OK(m.f->C_Login(s[0], CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), "[%s] A logs in again", who);
        /* The token's login ended with B's exit, and with it the backend's handles for private objects. */
        {
                CK_ULONG n = 0;

                CHECK(find_label(m.f, s[0], "a-key", CKO_PRIVATE_KEY, &n, &priv) && n == 1,
                      "[%s] A finds its private key again", who);
        }
        CHECK_OK(m.f->C_DestroyObject(s[0], priv), "[%s] A: remove the private key", who);
        (void) m.f->C_DestroyObject(s[0], pub);
        m.f->C_Finalize(NULL);
        p11t_unload(&m);
        close(to_b[1]);
        close(from_b[0]);
}

int main(void)
{
        kyso_path = p11t_env("KYSO_MODULE");
        label = p11t_env("KYSO_TEST_LABEL");
        pin = p11t_env("KYSO_TEST_PIN");

        run(0);
        if (geteuid() == 0)
                run(65534);
        else
                p11t_diag("not root: the other-uid half needs root to become nobody; skipped");
        return p11t_summary();
}
