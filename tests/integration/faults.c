/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Faults in backends and in the daemon. kysod serves the ordinary SoftHSM2
 * token ("kyso-test") and four tokens behind tests/mock's fault-injection
 * module, steered at run time through their control files
 * ($KYSO_TEST_DIR/NAME.so.control) and watched through their stats files:
 *
 *   kyso-hang  a backend call that hangs: it blocks neither the other token nor
 *              other clients; with [backends] call_timeout_ms = 1000 the waiting
 *              client gets CKR_DEVICE_ERROR, kysod logs it, and stays healthy
 *              once the backend call returns;
 *   kyso-bad   lengths that do not fit the buffer (C_Sign, C_GetAttributeValue)
 *              give the client an error without disconnecting it; failures
 *              injected at the Nth call reach the client unchanged;
 *   kyso-gone  a pulled token (hardware=1): its sessions answer
 *              CKR_DEVICE_REMOVED / CKR_SESSION_HANDLE_INVALID, the slot leaves
 *              C_GetSlotList(TRUE), the daemon forgets the sessions (kysoctl
 *              status), and once it is back it needs new sessions and a login;
 *   kyso-slow  a slow signature (sign_delay_ms) during which kysod is killed
 *              with SIGKILL: the client gets an error, not a hang, and after a
 *              restart the module reconnects by itself.
 *
 * Order of events is proven with the mock's stats (a call is inside the
 * backend now), not with timing; alarm() is only a watchdog against hangs.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

static CK_FUNCTION_LIST_PTR f;
static const char *dir, *pin, *kyso_path, *kysoctl, *sock, *label;
static const char *volatile step = "start-up";

static void on_alarm(int sig)
{
        char msg[512];
        int n;

        (void) sig;
        n = snprintf(msg, sizeof(msg), "not ok - watchdog: a call hung during: %s (SIGALRM)\n", step);
        (void) !write(1, msg, (size_t) n);
        _exit(1);
}

/* ---- the mock backends: control and stats files ---- */

static bool control(const char *mock, const char *text)
{
        char path[4096], tmp[4200];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s.so.control", dir, mock);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fp = fopen(tmp, "we");
        if (!fp)
                return false;
        fputs(text, fp);
        if (fclose(fp) != 0)
                return false;
        return rename(tmp, path) == 0;
}

static bool read_stat(const char *mock, const char *key, long *ret)
{
        char path[4096], line[256];
        size_t n = strlen(key);
        bool found = false;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s.stats", dir, mock);
        fp = fopen(path, "re");
        if (!fp)
                return false;
        while (fgets(line, sizeof(line), fp))
                if (strncmp(line, key, n) == 0 && line[n] == '=') {
                        *ret = strtol(line + n + 1, NULL, 10);
                        found = true;
                }
        fclose(fp);
        return found;
}

static long stat_of(const char *mock, const char *key)
{
        long v = -1;

        (void) read_stat(mock, key, &v);
        return v;
}

/* Waits for a state, not for a time: the bound only keeps a broken run from lasting forever. */
static bool wait_stat(const char *mock, const char *key, long want, double bound)
{
        long v;

        for (double end = p11t_now() + bound; p11t_now() < end; usleep(10 * 1000))
                if (read_stat(mock, key, &v) && v == want)
                        return true;
        return false;
}

/* ---- the daemon ---- */

static pid_t daemon_pid(void)
{
        char path[4096];
        long pid = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/kysod.pid", dir);
        fp = fopen(path, "re");
        if (fp) {
                if (fscanf(fp, "%ld", &pid) != 1)
                        pid = 0;
                fclose(fp);
        }
        return (pid_t) pid;
}

static bool daemon_alive(void)
{
        char path[64], state = 0;
        pid_t pid = daemon_pid();
        FILE *fp;
        int r;

        if (pid <= 0)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fp = fopen(path, "re");
        if (!fp)
                return false;
        r = fscanf(fp, "%*d (%*[^)]) %c", &state);
        fclose(fp);
        return r == 1 && state != 'Z' && state != 'X';
}

/* kysoctl --json status: clients.connected and clients.sessions. False when kysoctl fails. */
static bool daemon_clients(long *ret_connected, long *ret_sessions)
{
        char cmd[8192], *buf = NULL, *p, *q;
        size_t cap = 0, len = 0;
        FILE *pp;
        int st;

        snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' --json status 2>&1", kysoctl, sock);
        fflush(stdout);
        pp = popen(cmd, "r");
        if (!pp)
                return false;
        for (;;) {
                if (len + 4096 > cap) {
                        char *n = realloc(buf, cap + 65536);

                        if (!n)
                                break;
                        buf = n;
                        cap += 65536;
                }
                size_t r = fread(buf + len, 1, cap - len - 1, pp);

                if (r == 0)
                        break;
                len += r;
        }
        if (buf)
                buf[len] = '\0';
        st = pclose(pp);
        if (!buf || st != 0) {
                p11t_diag("kysoctl status failed (wait status %d): %s", st, buf ? buf : "");
                free(buf);
                return false;
        }
        p = strstr(buf, "\"clients\"");
        q = p ? strstr(p, "\"connected\"") : NULL;
        p = p ? strstr(p, "\"sessions\"") : NULL;
        if (!p || !q) {
                free(buf);
                return false;
        }
        p = strchr(p, ':');
        q = strchr(q, ':');
        if (ret_sessions)
                *ret_sessions = p ? strtol(p + 1, NULL, 10) : -1;
        if (ret_connected)
                *ret_connected = q ? strtol(q + 1, NULL, 10) : -1;
        free(buf);
        return true;
}

static long daemon_sessions(void)
{
        long n = -1;

        return daemon_clients(NULL, &n) ? n : -1;
}

static bool contains_ci(const char *hay, const char *needle)
{
        size_t n = strlen(needle);

        for (; *hay; hay++)
                if (strncasecmp(hay, needle, n) == 0)
                        return true;
        return false;
}

/*
 * The first line of kysod.log after byte `from` that holds `a` and one of the
 * words of `any` (separated by '|'); copied into ret. Case-insensitive.
 */
static bool log_line(long from, const char *a, const char *any, char *ret, size_t size)
{
        char path[4096], line[2048];
        bool found = false;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/kysod.log", dir);
        fp = fopen(path, "re");
        if (!fp)
                return false;
        if (from > 0)
                fseek(fp, from, SEEK_SET);
        while (!found && fgets(line, sizeof(line), fp)) {
                char words[256], *save = NULL;

                if (!contains_ci(line, a))
                        continue;
                snprintf(words, sizeof(words), "%s", any);
                for (char *w = strtok_r(words, "|", &save); w && !found; w = strtok_r(NULL, "|", &save))
                        found = contains_ci(line, w);
                if (found) {
                        line[strcspn(line, "\n")] = '\0';
                        snprintf(ret, size, "%s", line);
                }
        }
        fclose(fp);
        return found;
}

static void dump_log(long from)
{
        char path[4096], line[2048];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/kysod.log", dir);
        fp = fopen(path, "re");
        if (!fp)
                return;
        fseek(fp, from, SEEK_SET);
        while (fgets(line, sizeof(line), fp)) {
                line[strcspn(line, "\n")] = '\0';
                p11t_diag("kysod.log: %s", line);
        }
        fclose(fp);
}

static long log_size(void)
{
        char path[4096];
        long n = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/kysod.log", dir);
        fp = fopen(path, "re");
        if (fp) {
                fseek(fp, 0, SEEK_END);
                n = ftell(fp);
                fclose(fp);
        }
        return n;
}

/* ---- PKCS#11 helpers ---- */

static CK_RV find_key(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *l,
                      CK_OBJECT_HANDLE *ret)
{
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, (void *) l, strlen(l) } };
        CK_OBJECT_HANDLE h[4];
        CK_ULONG n = 0;
        CK_RV rv = fl->C_FindObjectsInit(s, t, 2);

        if (rv != CKR_OK)
                return rv;
        rv = fl->C_FindObjects(s, h, 4, &n);
        (void) fl->C_FindObjectsFinal(s);
        if (rv != CKR_OK)
                return rv;
        if (n == 0)
                return CKR_OBJECT_HANDLE_INVALID;
        *ret = h[0];
        return CKR_OK;
}

static CK_RV sign_with(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32] = { 1, 2, 3, 4 }, sig[256];
        CK_ULONG len = sizeof(sig);
        CK_RV rv = fl->C_SignInit(s, &m, key);

        return rv != CKR_OK ? rv : fl->C_Sign(s, hash, sizeof(hash), sig, &len);
}

/* A fresh client: session, login, the token key "fault-key", one signature. */
static CK_RV fresh_sign(CK_FUNCTION_LIST_PTR fl, const char *token)
{
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;
        CK_RV rv = p11t_find_slot(fl, token, &slot);

        if (rv == CKR_OK)
                rv = p11t_open_login(fl, slot, pin, &s);
        if (rv != CKR_OK)
                return rv;
        rv = find_key(fl, s, CKO_PRIVATE_KEY, "fault-key", &key);
        if (rv == CKR_OK)
                rv = sign_with(fl, s, key);
        (void) fl->C_CloseSession(s);
        return rv;
}

static bool in_list(CK_BBOOL present, CK_SLOT_ID slot)
{
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);

        if (f->C_GetSlotList(present, slots, &n) != CKR_OK)
                return false;
        for (CK_ULONG i = 0; i < n; i++)
                if (slots[i] == slot)
                        return true;
        return false;
}

static bool removed_rv(CK_RV rv)
{
        return rv == CKR_DEVICE_REMOVED || rv == CKR_SESSION_HANDLE_INVALID;
}

/* ---- other clients: child processes with their own connection ---- */

/* In a child: a new client that signs once on `token`; the exit status is 0 when it could. */
static pid_t spawn_signer(const char *token)
{
        pid_t pid;

        fflush(stdout);
        pid = fork();
        if (pid != 0)
                return pid;
        P11Module m;

        alarm(60);
        if (!p11t_load(&m, "kyso", kyso_path) || p11t_initialize(m.f) != CKR_OK)
                _exit(2);
        CK_RV rv = fresh_sign(m.f, token);
        (void) m.f->C_Finalize(NULL);
        _exit(rv == CKR_OK ? 0 : 3);
}

/* Waits for a child; false when it was not done within `bound` seconds (it is then killed). */
static bool reap(pid_t pid, const char *what, double bound)
{
        int status = 0;
        pid_t r = 0;

        for (double end = p11t_now() + bound; p11t_now() < end; usleep(20 * 1000)) {
                r = waitpid(pid, &status, WNOHANG);
                if (r != 0)
                        break;
        }
        if (r == 0) {
                kill(pid, SIGKILL);
                (void) waitpid(pid, &status, 0);
                return p11t_ok(false, "%s: still not done after %.0f s", what, bound);
        }
        return p11t_ok(r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s (child status %d)", what,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ---- a call in another thread, so a hang is a failed check and not the end of the run ---- */

typedef struct Call {
        pthread_t thread;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;
        volatile int done;
        CK_RV rv;
        double started, returned;
} Call;

static void *sign_thread(void *userdata)
{
        Call *c = userdata;
        CK_BYTE hash[32] = { 5 }, sig[256];
        CK_ULONG len = sizeof(sig);

        c->started = p11t_now();
        c->rv = f->C_Sign(c->s, hash, sizeof(hash), sig, &len);
        c->returned = p11t_now();
        __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
        return NULL;
}

static void call_start(Call *c, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
        *c = (Call) { .s = s, .key = key };
        pthread_create(&c->thread, NULL, sign_thread, c);
}

static bool call_wait(Call *c, double bound)
{
        for (double end = p11t_now() + bound; p11t_now() < end; usleep(10 * 1000))
                if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
                        return true;
        return false;
}

/* ---- the tokens ---- */

typedef struct Token {
        const char *label;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub, priv;
        bool ready;
} Token;

static Token ordinary, hang = { .label = "kyso-hang" }, bad = { .label = "kyso-bad" }, gone = { .label = "kyso-gone" },
             slow = { .label = "kyso-slow" };

static bool token_setup(Token *t)
{
        CK_RV rv = p11t_find_slot(f, t->label, &t->slot);

        if (!CHECK_OK(rv, "%s: the token is listed", t->label))
                return false;
        rv = p11t_open_login(f, t->slot, pin, &t->s);
        if (!CHECK_OK(rv, "%s: C_OpenSession + C_Login", t->label))
                return false;
        rv = p11t_gen_ec(f, t->s, "P-256", "fault-key", true, &t->pub, &t->priv);
        if (!CHECK_OK(rv, "%s: a P-256 token key pair \"fault-key\"", t->label))
                return false;
        t->ready = CHECK_OK(sign_with(f, t->s, t->priv), "%s: C_Sign works before any fault", t->label);
        return t->ready;
}

static int ordinary_work(unsigned n)
{
        int done = 0;

        for (unsigned i = 0; i < n; i++) {
                CK_SESSION_INFO si;

                if (f->C_GetSessionInfo(ordinary.s, &si) == CKR_OK && sign_with(f, ordinary.s, ordinary.priv) == CKR_OK)
                        done++;
        }
        return done;
}

/* ---- 1. a hung backend call blocks nothing else ---- */

static void test_hang_isolated(void)
{
        pid_t hung, other;
        CK_TOKEN_INFO ti;
        int done;

        step = "1: a hung C_Sign on kyso-hang";
        p11t_diag("1. A backend call that hangs blocks neither the other token nor other clients");
        if (!hang.ready || !ordinary.ready)
                return;
        CHECK(control("hang", "hang=C_Sign\n"), "hang: C_Sign set to hang");
        hung = spawn_signer("kyso-hang");
        if (!CHECK(wait_stat("hang", "in_hang", 1, 30), "a client's C_Sign is hung inside the kyso-hang backend")) {
                control("hang", "");
                reap(hung, "the hung signer returned", 30);
                return;
        }

        done = ordinary_work(20);
        CHECK(done == 20, "this client: 20 session queries and signatures on the ordinary token (%d done)", done);
        other = spawn_signer(label);
        reap(other, "another client: new connection, login and signature on the ordinary token", 60);
        memset(&ti, 0, sizeof(ti));
        CHECK_OK(f->C_GetTokenInfo(hang.slot, &ti), "C_GetTokenInfo of the token whose C_Sign hangs");
        CHECK(stat_of("hang", "in_hang") == 1 && stat_of("hang", "hangs") == 1,
              "... all while the hung C_Sign was still inside the backend (in_hang=%ld)", stat_of("hang", "in_hang"));

        CHECK(control("hang", ""), "hang: released");
        CHECK(wait_stat("hang", "in_hang", 0, 30), "the hung backend call returned");
        reap(hung, "the client whose C_Sign hung got an answer and exited", 30);
}

/* ---- 2. a hung backend call times out ---- */

static void test_hang_timeout(void)
{
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        char line[2048], slotword[64];
        long log_from = log_size();
        Call c;
        CK_RV rv;
        pid_t other;

        step = "2: call_timeout_ms";
        p11t_diag("2. A hung backend call times out (call_timeout_ms = 1000): logged, reported, the daemon survives");
        if (!hang.ready || !ordinary.ready)
                return;
        CHECK(control("hang", "hang=C_Sign\n"), "hang: C_Sign set to hang until released");
        if (!CHECK_OK(f->C_SignInit(hang.s, &m, hang.priv), "C_SignInit on kyso-hang"))
                return;
        call_start(&c, hang.s, hang.priv);
        CHECK(wait_stat("hang", "in_hang", 1, 30), "the C_Sign is hung inside the backend");
        /* The daemon should answer after about 1 s; 20 s is only the bound of a broken run. */
        if (CHECK(call_wait(&c, 20), "the hung C_Sign returned to the client while the backend still hangs")) {
                CHECK_RV(c.rv, CKR_DEVICE_ERROR, "the hung C_Sign after the call timeout");
                p11t_diag("C_Sign returned %s after %.2f s", p11t_rv_name(c.rv), c.returned - c.started);
                CHECK(stat_of("hang", "in_hang") == 1, "... and the backend call is still running (the timeout answered)");
        } else
                p11t_diag("C_Sign is still blocked after 20 s: no call timeout in kysod");

        snprintf(slotword, sizeof(slotword), "slot %lu", (unsigned long) hang.slot);
        if (CHECK(log_line(log_from, "C_Sign", "did not return|timed out|timeout|time out|took longer|too long", line, sizeof(line)),
                  "kysod.log has a line about the C_Sign that timed out"))
                CHECK(contains_ci(line, "kyso-hang") || contains_ci(line, "hang.so") || contains_ci(line, slotword),
                      "... naming the token (\"%s\")", line);
        else
                dump_log(log_from);

        other = spawn_signer(label);
        reap(other, "during the hang, another client signs on the ordinary token", 60);
        CHECK(ordinary_work(5) == 5, "during the hang, this client signs on the ordinary token");
        CHECK(daemon_sessions() >= 0, "during the hang, kysoctl status answers");
        CHECK(stat_of("hang", "in_hang") == 1, "... while the backend call was still hung");

        CHECK(control("hang", ""), "hang: released");
        CHECK(wait_stat("hang", "in_hang", 0, 30), "the hung backend call returned");
        if (!call_wait(&c, 30)) {
                p11t_ok(false, "the client's C_Sign returned once the backend call did");
                return;
        }
        pthread_join(c.thread, NULL);
        CHECK(daemon_alive(), "kysod is still running");
        CHECK(daemon_sessions() >= 0, "kysoctl status answers after the hang");
        rv = sign_with(f, hang.s, hang.priv);
        CHECK_OK(rv, "the session whose call timed out signs again once the backend returned");
        CHECK_OK(fresh_sign(f, "kyso-hang"), "a new session on kyso-hang logs in and signs");
        CHECK(ordinary_work(3) == 3, "the ordinary token still works");
}

/* ---- 3. bad lengths ---- */

static void test_bad_lengths(void)
{
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32] = { 3 }, sig[256], point[256], lbl[64];
        CK_ULONG len;
        CK_RV rv;
        CK_SESSION_INFO si;
        long conn0 = -1, conn1 = -1;
        bool ok;

        step = "3: bad lengths";
        p11t_diag("3. A backend that answers lengths longer than the buffer: an error, no disconnection");
        if (!bad.ready)
                return;
        (void) daemon_clients(&conn0, NULL);

        CHECK(control("bad", "badlen=C_Sign\n"), "bad: C_Sign claims 4096 bytes more than the buffer it got");
        if (CHECK_OK(f->C_SignInit(bad.s, &m, bad.priv), "C_SignInit on kyso-bad")) {
                len = sizeof(sig);
                rv = f->C_Sign(bad.s, hash, sizeof(hash), sig, &len);
                CHECK(rv == CKR_DEVICE_ERROR || rv == CKR_GENERAL_ERROR,
                      "C_Sign whose backend overstates the signature length: %s, length %lu (expected CKR_DEVICE_ERROR "
                      "or CKR_GENERAL_ERROR)", p11t_rv_name(rv), (unsigned long) len);
        }
        CHECK(stat_of("bad", "bad_lengths") >= 1, "... the backend did answer a bad length (%ld)", stat_of("bad", "bad_lengths"));
        CHECK_OK(f->C_GetSessionInfo(bad.s, &si), "the client is still connected: C_GetSessionInfo on the same session");
        CHECK_OK(f->C_GetSessionInfo(ordinary.s, &si), "... and its session on the ordinary token is valid");

        CHECK(control("bad", "badlen=C_GetAttributeValue\n"),
              "bad: C_GetAttributeValue claims 4096 bytes more than each buffer");
        {
                CK_ATTRIBUTE t[] = { { CKA_EC_POINT, point, sizeof(point) } };

                rv = f->C_GetAttributeValue(bad.s, bad.pub, t, 1);
                CHECK(rv == CKR_DEVICE_ERROR || rv == CKR_GENERAL_ERROR,
                      "C_GetAttributeValue(CKA_EC_POINT) with an overstated ulValueLen: %s, ulValueLen %ld (expected "
                      "CKR_DEVICE_ERROR or CKR_GENERAL_ERROR)", p11t_rv_name(rv), (long) t[0].ulValueLen);
        }
        {
                CK_ATTRIBUTE t[] = { { CKA_LABEL, lbl, sizeof(lbl) } };

                rv = f->C_GetAttributeValue(bad.s, bad.pub, t, 1);
                CHECK(rv == CKR_DEVICE_ERROR || rv == CKR_GENERAL_ERROR,
                      "C_GetAttributeValue(CKA_LABEL) with an overstated ulValueLen: %s, ulValueLen %ld (expected "
                      "CKR_DEVICE_ERROR or CKR_GENERAL_ERROR)", p11t_rv_name(rv), (long) t[0].ulValueLen);
        }
        CHECK_OK(f->C_GetSessionInfo(bad.s, &si), "the client is still connected after the bad attribute lengths");

        /* Not a check: what a client is told when the backend answers a length query with 2^40. */
        CHECK(control("bad", "badlen=C_Sign\nbadlen_query=0x10000000000\n"), "bad: C_Sign length queries answer 2^40");
        if (f->C_SignInit(bad.s, &m, bad.priv) == CKR_OK) {
                len = 0;
                rv = f->C_Sign(bad.s, hash, sizeof(hash), NULL, &len);
                p11t_diag("C_Sign length query answered 2^40 by the backend: %s, length %lu", p11t_rv_name(rv),
                          (unsigned long) len);
                len = sizeof(sig);
                (void) control("bad", "");
                rv = f->C_Sign(bad.s, hash, sizeof(hash), sig, &len);
                p11t_diag("... then C_Sign with a buffer: %s", p11t_rv_name(rv));
                if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) {
                        len = sizeof(sig);
                        (void) f->C_Sign(bad.s, hash, sizeof(hash), sig, &len);
                }
        }
        CHECK_OK(f->C_GetSessionInfo(bad.s, &si), "the client is still connected after the huge length");

        CHECK(control("bad", ""), "bad: lengths right again");
        CHECK_OK(sign_with(f, bad.s, bad.priv), "C_SignInit + C_Sign on the same session work again");
        {
                CK_ATTRIBUTE t[] = { { CKA_LABEL, lbl, sizeof(lbl) } };

                rv = f->C_GetAttributeValue(bad.s, bad.pub, t, 1);
                CHECK(rv == CKR_OK && t[0].ulValueLen == 9 && memcmp(lbl, "fault-key", 9) == 0,
                      "C_GetAttributeValue(CKA_LABEL) works again: %s, %lu bytes", p11t_rv_name(rv),
                      (unsigned long) t[0].ulValueLen);
        }
        CHECK(daemon_alive(), "kysod survived the bad lengths");
        ok = daemon_clients(&conn1, NULL);
        CHECK(ok && conn1 == conn0, "kysoctl status: %ld clients connected before, %ld after (nobody was disconnected)",
              conn0, conn1);
}

/* ---- 4. failure at the Nth call ---- */

static void test_fail_at(void)
{
        CK_BYTE rnd[16];
        CK_OBJECT_HANDLE key;
        CK_RV rv[5];

        step = "4: fail at the Nth call";
        p11t_diag("4. A failure injected at the Nth call reaches the client unchanged; later calls work");
        if (!bad.ready)
                return;
        CHECK(control("bad", "fail_fn=C_GenerateRandom\nfail_at=3\nfail_rv=0x6\n"),
              "bad: the 3rd C_GenerateRandom fails with CKR_FUNCTION_FAILED");
        for (int i = 0; i < 5; i++)
                rv[i] = f->C_GenerateRandom(bad.s, rnd, sizeof(rnd));
        CHECK(rv[0] == CKR_OK && rv[1] == CKR_OK && rv[3] == CKR_OK && rv[4] == CKR_OK,
              "C_GenerateRandom calls 1, 2, 4, 5: %s %s %s %s", p11t_rv_name(rv[0]), p11t_rv_name(rv[1]),
              p11t_rv_name(rv[3]), p11t_rv_name(rv[4]));
        CHECK_RV(rv[2], CKR_FUNCTION_FAILED, "C_GenerateRandom call 3");
        CHECK(stat_of("bad", "fails") == 1, "the backend injected exactly one failure (%ld)", stat_of("bad", "fails"));

        CHECK(control("bad", "fail_fn=C_Sign\nfail_at=1\nfail_rv=0x30\n"), "bad: the next C_Sign fails with CKR_DEVICE_ERROR");
        CHECK_RV(sign_with(f, bad.s, bad.priv), CKR_DEVICE_ERROR, "C_SignInit + C_Sign");
        CHECK_OK(sign_with(f, bad.s, bad.priv), "C_SignInit + C_Sign right after (the failed operation ended)");

        CHECK(control("bad", "fail_fn=C_FindObjectsInit\nfail_at=1\nfail_rv=0x31\n"),
              "bad: the next C_FindObjectsInit fails with CKR_DEVICE_MEMORY");
        /* A template not searched before: kysod answers a search it ran within the last second itself. */
        CHECK_RV(find_key(f, bad.s, CKO_PUBLIC_KEY, "fault-key", &key), CKR_DEVICE_MEMORY, "C_FindObjectsInit");
        CHECK_OK(find_key(f, bad.s, CKO_PUBLIC_KEY, "fault-key", &key), "C_FindObjectsInit/C_FindObjects right after");

        CHECK(control("bad", "fail_fn=C_GetSessionInfo\nfail_at=1\nfail_rv=0xE0\n"),
              "bad: the next C_GetSessionInfo fails with CKR_TOKEN_NOT_PRESENT");
        {
                CK_SESSION_INFO si;
                CK_RV r = f->C_GetSessionInfo(bad.s, &si);

                CHECK_RV(r, CKR_TOKEN_NOT_PRESENT, "C_GetSessionInfo");
                CHECK_OK(f->C_GetSessionInfo(bad.s, &si), "C_GetSessionInfo right after");
        }
        CHECK(control("bad", ""), "bad: no more failures");
        CHECK_OK(fresh_sign(f, "kyso-bad"), "a new session on kyso-bad logs in and signs");
        CHECK(daemon_alive(), "kysod survived the injected failures");
}

/* ---- 5. token removal ---- */

/* Blocks (watchdog: alarm) until a slot event for `slot`; false when the wait itself fails. */
static bool wait_slot_event(CK_SLOT_ID slot, const char *what)
{
        CK_SLOT_ID got = (CK_SLOT_ID) -1;
        CK_RV rv;

        step = what;
        alarm(30);
        do
                rv = f->C_WaitForSlotEvent(0, &got, NULL);
        while (rv == CKR_OK && got != slot);
        alarm(300);
        return p11t_ok(rv == CKR_OK && got == slot, "C_WaitForSlotEvent: %s for slot %lu (%s)", p11t_rv_name(rv),
                       (unsigned long) got, what);
}

static void test_removal(void)
{
        CK_SESSION_HANDLE g2, fresh;
        CK_OBJECT_HANDLE spub, spriv, key;
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        CK_SESSION_INFO sinfo;
        CK_SLOT_ID got;
        long before, removed, after, mock_open;
        CK_RV rv;

        step = "5: token removal";
        p11t_diag("5. A token pulled while a logged-in client has sessions on it");
        if (!gone.ready)
                return;
        if (!CHECK_OK(f->C_OpenSession(gone.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &g2),
                      "a second session on kyso-gone") ||
            !CHECK_OK(p11t_gen_ec(f, gone.s, "P-256", "gone-session-key", false, &spub, &spriv),
                      "a session key pair on kyso-gone") ||
            !CHECK_OK(sign_with(f, g2, spriv), "signing in the second session (logged in)"))
                return;
        /* Forget the events so far: the next one for this slot is the removal. */
        while (f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL) == CKR_OK)
                ;
        before = daemon_sessions();
        CHECK(before >= 2, "kysoctl status: %ld sessions open in the daemon", before);

        CHECK(control("gone", "present=0\n"), "gone: the token is pulled");
        rv = sign_with(f, gone.s, gone.priv);
        CHECK(removed_rv(rv), "right after the pull: C_SignInit on a session of the pulled token: %s (expected "
                              "CKR_DEVICE_REMOVED or CKR_SESSION_HANDLE_INVALID)", p11t_rv_name(rv));
        if (wait_slot_event(gone.slot, "the daemon reports the removal")) {
                memset(&si, 0, sizeof(si));
                rv = f->C_GetSlotInfo(gone.slot, &si);
                CHECK(rv == CKR_OK && !(si.flags & CKF_TOKEN_PRESENT), "C_GetSlotInfo: %s, CKF_TOKEN_PRESENT %s",
                      p11t_rv_name(rv), si.flags & CKF_TOKEN_PRESENT ? "set" : "clear");
        }
        CHECK(!in_list(CK_TRUE, gone.slot), "C_GetSlotList(TRUE) leaves the slot out");
        CHECK(in_list(CK_FALSE, gone.slot), "C_GetSlotList(FALSE) still lists the slot (the reader is there)");
        CHECK(in_list(CK_TRUE, ordinary.slot), "C_GetSlotList(TRUE) still lists the ordinary token");
        memset(&ti, 0, sizeof(ti));
        rv = f->C_GetTokenInfo(gone.slot, &ti);
        CHECK(rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED,
              "C_GetTokenInfo of the pulled token: %s (expected CKR_TOKEN_NOT_PRESENT)", p11t_rv_name(rv));
        rv = f->C_GetSessionInfo(gone.s, &sinfo);
        CHECK(removed_rv(rv), "C_GetSessionInfo(first session): %s", p11t_rv_name(rv));
        rv = sign_with(f, g2, spriv);
        CHECK(removed_rv(rv), "C_SignInit(second session, session key): %s", p11t_rv_name(rv));
        rv = f->C_FindObjectsInit(g2, NULL, 0);
        CHECK(removed_rv(rv), "C_FindObjectsInit(second session): %s", p11t_rv_name(rv));
        rv = f->C_OpenSession(gone.slot, CKF_SERIAL_SESSION, NULL, NULL, &fresh);
        CHECK(rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED,
              "C_OpenSession on the empty slot: %s (expected CKR_TOKEN_NOT_PRESENT)", p11t_rv_name(rv));
        if (rv == CKR_OK)
                f->C_CloseSession(fresh);
        removed = daemon_sessions();
        CHECK(removed == before - 2, "kysoctl status: the daemon dropped the 2 sessions of the pulled token (%ld -> %ld)",
              before, removed);
        CHECK(ordinary_work(3) == 3, "the ordinary token keeps working");

        rv = f->C_CloseSession(gone.s);
        CHECK(rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_DEVICE_REMOVED,
              "C_CloseSession(first session): %s", p11t_rv_name(rv));
        rv = f->C_GetSessionInfo(gone.s, &sinfo);
        CHECK_RV(rv, CKR_SESSION_HANDLE_INVALID, "after C_CloseSession: C_GetSessionInfo(first session)");

        CHECK(control("gone", "present=1\n"), "gone: the token is put back");
        if (wait_slot_event(gone.slot, "the daemon reports the insertion"))
                CHECK(in_list(CK_TRUE, gone.slot), "C_GetSlotList(TRUE) lists the slot again");
        rv = f->C_GetSessionInfo(g2, &sinfo);
        CHECK(removed_rv(rv), "the old second session stays dead: %s", p11t_rv_name(rv));
        memset(&ti, 0, sizeof(ti));
        CHECK_OK(f->C_GetTokenInfo(gone.slot, &ti), "C_GetTokenInfo of the token put back");
        if (!CHECK_OK(f->C_OpenSession(gone.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &fresh),
                      "a new session on the token put back"))
                return;
        memset(&sinfo, 0, sizeof(sinfo));
        rv = f->C_GetSessionInfo(fresh, &sinfo);
        CHECK(rv == CKR_OK && sinfo.state == CKS_RW_PUBLIC_SESSION,
              "the new session is not logged in: %s, state %lu (expected CKS_RW_PUBLIC_SESSION)", p11t_rv_name(rv),
              (unsigned long) sinfo.state);
        rv = find_key(f, fresh, CKO_PRIVATE_KEY, "fault-key", &key);
        CHECK(rv != CKR_OK, "the private key is not found before a login: %s", p11t_rv_name(rv));
        rv = f->C_Login(fresh, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin));
        CHECK_OK(rv, "C_Login again (a fresh login, not CKR_USER_ALREADY_LOGGED_IN)");
        if (CHECK_OK(find_key(f, fresh, CKO_PRIVATE_KEY, "fault-key", &key), "the private token key is found"))
                CHECK_OK(sign_with(f, fresh, key), "C_Sign on the token put back");
        rv = sign_with(f, fresh, spriv);
        CHECK(rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID,
              "the handle of a session key made before the pull is dead: C_SignInit %s", p11t_rv_name(rv));
        rv = sign_with(f, fresh, gone.priv);
        p11t_diag("the handle of the token key found before the pull: C_SignInit %s", p11t_rv_name(rv));
        after = daemon_sessions();
        CHECK(after == removed + 1, "kysoctl status: %ld sessions (one new)", after);
        mock_open = stat_of("gone", "open_sessions");
        p11t_diag("kyso-gone backend: %ld sessions open, %ld lost with the token and not closed", mock_open,
                  stat_of("gone", "removed_sessions"));
        gone.s = fresh;
}

/* ---- 6. SIGKILL during a signature ---- */

static void test_kill(void)
{
        const char *restart = p11t_env("KYSO_TEST_RESTART");
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        CK_SESSION_INFO sinfo;
        pid_t pid, pid2, other;
        Call c;
        CK_RV rv;
        int st;

        step = "6: SIGKILL during a signature";
        p11t_diag("6. kysod killed with SIGKILL during a signature");
        if (!slow.ready)
                return;
        if (!CHECK_OK(f->C_SignInit(slow.s, &m, slow.priv), "C_SignInit on kyso-slow (C_Sign takes 700 ms)"))
                return;
        call_start(&c, slow.s, slow.priv);
        if (!CHECK(wait_stat("slow", "in_sign", 1, 30), "the C_Sign is inside the slow backend"))
                return;
        pid = daemon_pid();
        CHECK(pid > 0 && kill(pid, SIGKILL) == 0, "kill -KILL kysod (pid %d) during the signature", (int) pid);
        if (CHECK(call_wait(&c, 15), "the client's C_Sign returned (not hung)")) {
                CHECK(c.rv != CKR_OK, "... with an error: %s, %.2f s after it started", p11t_rv_name(c.rv),
                      c.returned - c.started);
                pthread_join(c.thread, NULL);
        } else {
                p11t_diag("C_Sign still blocked 15 s after SIGKILL");
                return;
        }
        for (double end = p11t_now() + 10; daemon_alive() && p11t_now() < end; usleep(20 * 1000))
                ;

        step = "6: restart";
        alarm(90);
        fflush(stdout);
        st = system(restart);
        CHECK(st == 0, "%s: exit status %d", restart, st);
        pid2 = daemon_pid();
        CHECK(pid2 > 0 && pid2 != pid && daemon_alive(), "kysod runs again (pid %d)", (int) pid2);
        alarm(300);

        step = "6: after the restart";
        rv = f->C_GetSessionInfo(slow.s, &sinfo);
        CHECK(removed_rv(rv), "the session of before the kill: %s", p11t_rv_name(rv));
        CHECK_OK(fresh_sign(f, "kyso-slow"), "without C_Initialize: a new session on kyso-slow logs in and signs");
        CHECK_OK(fresh_sign(f, label), "... and on the ordinary token");
        other = spawn_signer("kyso-slow");
        reap(other, "another client signs on kyso-slow after the restart", 60);
}

int main(void)
{
        P11Module mod;

        dir = p11t_env("KYSO_TEST_DIR");
        pin = p11t_env("KYSO_TEST_PIN");
        label = p11t_env("KYSO_TEST_LABEL");
        kyso_path = p11t_env("KYSO_MODULE");
        kysoctl = p11t_env("KYSOCTL");
        sock = p11t_env("KYSO_SOCKET");
        ordinary.label = label;
        signal(SIGALRM, on_alarm);
        signal(SIGPIPE, SIG_IGN);
        alarm(300);

        if (!p11t_load(&mod, "kyso", kyso_path))
                return p11t_summary();
        f = mod.f;
        if (!CHECK_OK(p11t_initialize(f), "C_Initialize"))
                return p11t_summary();
        token_setup(&ordinary);
        token_setup(&hang);
        token_setup(&bad);
        token_setup(&gone);
        token_setup(&slow);

        test_hang_isolated();
        test_hang_timeout();
        test_bad_lengths();
        test_fail_at();
        test_removal();
        test_kill();

        step = "the end";
        (void) control("hang", "");
        (void) f->C_CloseAllSessions(ordinary.slot);
        CHECK_OK(f->C_Finalize(NULL), "C_Finalize");
        return p11t_summary();
}
