/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A slow backend call blocks nobody else, and calls to one removable
 * hardware token are serialised while a software token runs them in
 * parallel. Runs under with-kysod.sh with two mock backends (tests/mock):
 * "slowhw" (removable hardware, signing takes 1.5 s) and "slowsw" (software,
 * signing takes 0.6 s), next to the ordinary SoftHSM2 token. The mock
 * records how many signatures ran inside it at once.
 *
 * Nothing here measures speed: each property is an order of events (the
 * fast token answered while the slow signature was still inside the
 * backend) or a count the backend itself recorded.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

static const char *test_dir;
static const char *pin;
static const char *kyso_path;

static bool read_stat(const char *name, const char *key, int *ret)
{
        char path[4096], line[256];
        bool found = false;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s.stats", test_dir, name);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f)) {
                size_t n = strlen(key);

                if (strncmp(line, key, n) == 0 && line[n] == '=') {
                        *ret = atoi(line + n + 1);
                        found = true;
                }
        }
        fclose(f);
        return found;
}

static bool wait_stat(const char *name, const char *key, int want, double timeout)
{
        double end = p11t_now() + timeout;
        int v;

        while (p11t_now() < end) {
                if (read_stat(name, key, &v) && v == want)
                        return true;
                usleep(10000);
        }
        return false;
}

/* A key to sign with on the token: a token object, so other processes find it by label. */
static bool make_key(CK_FUNCTION_LIST_PTR f, const char *label)
{
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub, priv;
        bool ok;

        if (p11t_find_slot(f, label, &slot) != CKR_OK || p11t_open_login(f, slot, pin, &s) != CKR_OK)
                return false;
        ok = p11t_gen_ec(f, s, "P-256", "slow-key", true, &pub, &priv) == CKR_OK;
        f->C_CloseSession(s);
        return ok;
}

/*
 * In a child process: connect, log in to the token, get ready to sign, wait
 * for the go byte on `go`, sign once, then report through the exit status.
 */
static pid_t spawn_signer(const char *label, int go, const char *done_marker)
{
        pid_t pid = fork();

        if (pid != 0)
                return pid;

        P11Module m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;
        CK_ULONG n = 0, sig_len = 128;
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32] = { 1, 2, 3 }, sig[128];
        char c;

        if (!p11t_load(&m, "kyso", kyso_path) || p11t_initialize(m.f) != CKR_OK ||
            p11t_find_slot(m.f, label, &slot) != CKR_OK || p11t_open_login(m.f, slot, pin, &s) != CKR_OK ||
            p11t_find_by_label(m.f, s, "slow-key", &key, 1, &n) != CKR_OK || n != 1)
                _exit(2);
        /* find_by_label may return the public key first: take the private one. */
        {
                CK_OBJECT_HANDLE all[4];
                CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
                CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, "slow-key", 8 } };

                if (m.f->C_FindObjectsInit(s, t, 2) != CKR_OK || m.f->C_FindObjects(s, all, 4, &n) != CKR_OK ||
                    n != 1 || m.f->C_FindObjectsFinal(s) != CKR_OK)
                        _exit(3);
                key = all[0];
        }
        if (m.f->C_SignInit(s, &mech, key) != CKR_OK)
                _exit(4);
        if (read(go, &c, 1) != 1)
                _exit(5);
        if (m.f->C_Sign(s, hash, sizeof(hash), sig, &sig_len) != CKR_OK)
                _exit(6);
        if (done_marker) {
                FILE *f = fopen(done_marker, "we");

                if (f)
                        fclose(f);
        }
        m.f->C_Finalize(NULL);
        _exit(0);
}

static bool reap(pid_t pid, const char *what)
{
        int status = 0;

        if (waitpid(pid, &status, 0) != pid)
                return p11t_ok(false, "%s: waitpid failed: %s", what, strerror(errno));
        return p11t_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child exited with status %d", what,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void go(int fd, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                if (write(fd, "g", 1) != 1)
                        p11t_diag("write to children failed: %s", strerror(errno));
}

int main(void)
{
        P11Module m;
        CK_SLOT_ID fast;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub, priv;
        char marker[4096];
        int pipefd[2], v;
        pid_t a, b;

        test_dir = p11t_env("KYSO_TEST_DIR");
        pin = p11t_env("KYSO_TEST_PIN");
        kyso_path = p11t_env("KYSO_MODULE");

        if (!CHECK(p11t_load(&m, "kyso", kyso_path), "load kyso-pkcs11.so"))
                return p11t_summary();
        CHECK_OK(p11t_initialize(m.f), "C_Initialize");
        CHECK(make_key(m.f, "kyso-slowhw"), "EC key generated on the slow hardware token");
        CHECK(make_key(m.f, "kyso-slowsw"), "EC key generated on the slow software token");
        CHECK_OK(p11t_find_slot(m.f, "kyso-test", &fast), "the ordinary token is listed beside the mock ones");
        CHECK_OK(p11t_open_login(m.f, fast, pin, &s), "log in to the ordinary token");
        CHECK_OK(p11t_gen_ec(m.f, s, "P-256", "fast-key", false, &pub, &priv), "EC key on the ordinary token");

        /* 1. While a 1.5 s signature runs on the hardware token, the other token keeps answering. */
        snprintf(marker, sizeof(marker), "%s/slow-done", test_dir);
        if (pipe(pipefd) < 0)
                return 1;
        a = spawn_signer("kyso-slowhw", pipefd[0], marker);
        go(pipefd[1], 1);
        if (CHECK(wait_stat("slowhw", "in_sign", 1, 20), "the slow signature is inside the backend")) {
                unsigned done = 0;

                for (unsigned i = 0; i < 50; i++) {
                        CK_SESSION_INFO si;
                        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
                        CK_BYTE hash[32] = { 7 }, sig[128];
                        CK_ULONG sig_len = sizeof(sig);

                        if (m.f->C_GetSessionInfo(s, &si) == CKR_OK && m.f->C_SignInit(s, &mech, priv) == CKR_OK &&
                            m.f->C_Sign(s, hash, sizeof(hash), sig, &sig_len) == CKR_OK)
                                done++;
                }
                CHECK(done == 50, "50 session queries and signatures on the ordinary token completed (%u)", done);
                CHECK(access(marker, F_OK) < 0 && read_stat("slowhw", "in_sign", &v) && v == 1,
                      "... while the slow hardware signature was still running");
        }
        reap(a, "slow signer");
        CHECK(access(marker, F_OK) == 0, "the slow signature finished");

        /* 2. Two programs signing on one removable hardware token at once: the backend sees one at a time. */
        a = spawn_signer("kyso-slowhw", pipefd[0], NULL);
        b = spawn_signer("kyso-slowhw", pipefd[0], NULL);
        go(pipefd[1], 2);
        reap(a, "hardware signer 1");
        reap(b, "hardware signer 2");
        v = -1;
        (void) read_stat("slowhw", "max_concurrent_sign", &v);
        CHECK(v == 1,
              "calls to the hardware token were serialised (at most %d inside the backend at once)", v);

        /* 3. The same on a software token: both run inside the backend together. */
        a = spawn_signer("kyso-slowsw", pipefd[0], NULL);
        b = spawn_signer("kyso-slowsw", pipefd[0], NULL);
        go(pipefd[1], 2);
        reap(a, "software signer 1");
        reap(b, "software signer 2");
        v = -1;
        (void) read_stat("slowsw", "max_concurrent_sign", &v);
        CHECK(v == 2,
              "calls to the software token ran in parallel (%d inside the backend at once)", v);

        m.f->C_CloseSession(s);
        m.f->C_Finalize(NULL);
        return p11t_summary();
}
