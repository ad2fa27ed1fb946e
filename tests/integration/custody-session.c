/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A client that keeps one session open while a test changes custody around
 * it: test-custody.sh runs it as some user and drives it line by line.
 *
 *   custody-session MODULE LABEL PIN
 *
 * It opens a session on the token labelled LABEL, logs in with PIN and makes
 * a session EC key; it prints "ready" or "error CKR_...". Then, for each
 * line on stdin:
 *   sign      signs 32 bytes with the key; prints "ok" or the CKR_ name
 *   info      C_GetSessionInfo; prints "ok" or the CKR_ name
 *   quit      closes the session and exits
 * Each answer is one line, flushed, so the test can read it at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11-test.h"

static void answer(const char *s)
{
        printf("%s\n", s);
        fflush(stdout);
}

int main(int argc, char **argv)
{
        CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 };
        CK_OBJECT_HANDLE pub, priv;
        CK_SESSION_HANDLE s;
        CK_SESSION_INFO si;
        CK_SLOT_ID slot;
        P11Module m;
        char line[64];
        CK_RV rv;

        if (argc != 4) {
                fprintf(stderr, "usage: custody-session MODULE LABEL PIN\n");
                return 2;
        }
        if (!p11t_load(&m, "kyso", argv[1]))
                return 1;
        rv = p11t_initialize(m.f);
        if (rv == CKR_OK)
                rv = p11t_find_slot(m.f, argv[2], &slot);
        if (rv == CKR_OK)
                rv = p11t_open_login(m.f, slot, argv[3], &s);
        if (rv == CKR_OK)
                rv = p11t_gen_ec(m.f, s, "P-256", "custody-session", false, &pub, &priv);
        if (rv != CKR_OK) {
                printf("error %s\n", p11t_rv_name(rv));
                return 1;
        }
        answer("ready");

        while (fgets(line, sizeof(line), stdin)) {
                line[strcspn(line, "\n")] = '\0';
                if (strcmp(line, "sign") == 0) {
                        CK_BYTE data[32] = { 1 }, sig[128];
                        CK_ULONG len = sizeof(sig);

                        rv = m.f->C_SignInit(s, &ecdsa, priv);
                        if (rv == CKR_OK)
                                rv = m.f->C_Sign(s, data, sizeof(data), sig, &len);
                        answer(rv == CKR_OK ? "ok" : p11t_rv_name(rv));
                } else if (strcmp(line, "info") == 0) {
                        rv = m.f->C_GetSessionInfo(s, &si);
                        answer(rv == CKR_OK ? "ok" : p11t_rv_name(rv));
                } else if (strcmp(line, "quit") == 0)
                        break;
                else
                        answer("unknown command");
        }
        (void) m.f->C_CloseSession(s);
        (void) m.f->C_Finalize(NULL);
        p11t_unload(&m);
        return 0;
}
