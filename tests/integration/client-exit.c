/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A client that exits, is killed with SIGKILL, or forks and exits loses
 * exactly its own sessions and login, and nothing of it survives in the
 * daemon: checked with the daemon's own count of sessions and connections
 * (kysoctl --json status) and with what another client can still do.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

static const char *kyso_path, *label, *pin;

/* "connected" and "sessions" from the daemon's status. */
static bool daemon_counts(long *ret_connected, long *ret_sessions)
{
        char cmd[4096], buf[65536];
        size_t n;
        FILE *p;
        const char *c, *s;

        snprintf(cmd, sizeof(cmd), "'%s' --json status", p11t_env("KYSOCTL"));
        p = popen(cmd, "r");
        if (!p)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, p);
        buf[n] = '\0';
        if (pclose(p) != 0)
                return false;
        c = strstr(buf, "\"connected\"");
        s = c ? strstr(c, "\"sessions\"") : NULL;
        if (!c || !s)
                return false;
        *ret_connected = strtol(strchr(c, ':') + 1, NULL, 10);
        *ret_sessions = strtol(strchr(s, ':') + 1, NULL, 10);
        return true;
}

/* Waits (up to 5 s) for the daemon to have this many connections and sessions: it notices an exit at once,
 * but the status call races with that. */
static bool wait_counts(long connected, long sessions, long *got_c, long *got_s)
{
        for (unsigned i = 0; i < 100; i++) {
                if (daemon_counts(got_c, got_s) && *got_c == connected && *got_s == sessions)
                        return true;
                usleep(50000);
        }
        return false;
}

/* In a child: connect, open n sessions, log in, tell the parent, then wait to be killed or exit. */
static pid_t spawn_client(unsigned n_sessions, bool login, int ready_fd, bool wait_forever)
{
        pid_t pid = fork();

        if (pid != 0)
                return pid;

        P11Module m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;

        if (!p11t_load(&m, "kyso", kyso_path) || p11t_initialize(m.f) != CKR_OK ||
            p11t_find_slot(m.f, label, &slot) != CKR_OK)
                _exit(2);
        for (unsigned i = 0; i < n_sessions; i++)
                if (p11t_open_login(m.f, slot, i == 0 && login ? pin : NULL, &s) != CKR_OK)
                        _exit(3);
        if (write(ready_fd, "r", 1) != 1)
                _exit(4);
        if (wait_forever)
                for (;;)
                        pause();
        _exit(0); /* no C_CloseSession, no C_Logout, no C_Finalize */
}

static CK_STATE state_of(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s)
{
        CK_SESSION_INFO si = {};

        return f->C_GetSessionInfo(s, &si) == CKR_OK ? si.state : (CK_STATE) -1;
}

int main(void)
{
        P11Module m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE mine;
        long base_c = -1, base_s = -1, c = -1, s = -1;
        int p[2];
        char ch;
        pid_t pid;
        bool ok;

        kyso_path = p11t_env("KYSO_MODULE");
        label = p11t_env("KYSO_TEST_LABEL");
        pin = p11t_env("KYSO_TEST_PIN");
        if (!CHECK(p11t_load(&m, "kyso", kyso_path), "load kyso-pkcs11.so") || pipe(p) < 0)
                return p11t_summary();
        CHECK_OK(p11t_initialize(m.f), "C_Initialize");
        CHECK_OK(p11t_find_slot(m.f, label, &slot), "find the token");
        CHECK_OK(p11t_open_login(m.f, slot, NULL, &mine), "this client: one session, not logged in");
        ok = daemon_counts(&base_c, &base_s);
        CHECK(ok, "the daemon reports %ld connection(s), %ld session(s)", base_c, base_s);

        /* A client killed with SIGKILL while logged in with five sessions. */
        pid = spawn_client(5, true, p[1], true);
        CHECK(read(p[0], &ch, 1) == 1, "a client opened 5 sessions and logged in");
        ok = wait_counts(base_c + 1, base_s + 5, &c, &s);
        CHECK(ok, "the daemon counts them (%ld connections, %ld sessions)",
              c, s);
        CHECK(state_of(m.f, mine) == CKS_RW_PUBLIC_SESSION, "its login did not log this client in");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ok = wait_counts(base_c, base_s, &c, &s);
        CHECK(ok,
              "after SIGKILL its connection and sessions are gone (%ld connections, %ld sessions)", c, s);
        CHECK_RV(m.f->C_Login(mine, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), CKR_OK,
                 "the token's login ended with it: this client's PIN is checked by the token again");
        CHECK_OK(m.f->C_Logout(mine), "log out again");

        /* A client that exits normally without cleaning up. */
        pid = spawn_client(3, true, p[1], false);
        CHECK(read(p[0], &ch, 1) == 1, "a client opened 3 sessions and logged in");
        waitpid(pid, NULL, 0);
        ok = wait_counts(base_c, base_s, &c, &s);
        CHECK(ok, "after it exited nothing of it is left (%ld, %ld)", c, s);

        /* This process forks; the child inherits the connection, uses nothing, and exits: the parent keeps
         * its session. Then a child that connected on its own exits: only its sessions go. */
        pid = fork();
        if (pid == 0)
                _exit(0);
        waitpid(pid, NULL, 0);
        CHECK(state_of(m.f, mine) == CKS_RW_PUBLIC_SESSION, "a forked child's exit left this client's session");
        ok = wait_counts(base_c, base_s, &c, &s);
        CHECK(ok, "... and the daemon's counts unchanged (%ld, %ld)", c, s);
        pid = spawn_client(2, false, p[1], false);
        CHECK(read(p[0], &ch, 1) == 1, "a forked child connected on its own with 2 sessions");
        waitpid(pid, NULL, 0);
        ok = wait_counts(base_c, base_s, &c, &s);
        CHECK(ok, "after it exited, only its sessions are gone (%ld, %ld)", c, s);
        CHECK(state_of(m.f, mine) == CKS_RW_PUBLIC_SESSION, "this client's session is still there");

        m.f->C_CloseSession(mine);
        m.f->C_Finalize(NULL);
        return p11t_summary();
}
