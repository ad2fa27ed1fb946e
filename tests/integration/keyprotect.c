/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Key protection, token classes, sessions per uid and the broker's count of
 * wrong PINs (daemon/policy.h has the rules), through kyso-pkcs11.so against
 * SoftHSM2, which itself would allow most of what is refused here. Runs
 * under with-kysod.sh --tokens 2 --config keyprotect.conf: the class "test"
 * matches the token labelled "kyso-test" and denies C_InitToken, C_InitPIN,
 * SO login and key generation; "kyso-test-2" is of no class and carries the
 * key tests. [limits] sessions_per_uid is 8.
 *
 * Forked children are second clients (their own connection, same uid); they
 * report through their exit status.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

#define SESSIONS_PER_UID 8

static P11Module m;
static const char *pin, *so_pin;
static CK_SLOT_ID slot_class, slot_keys;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static CK_RV get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_BBOOL *ret)
{
        CK_ATTRIBUTE a = { type, ret, sizeof(*ret) };

        return m.f->C_GetAttributeValue(s, o, &a, 1);
}

/* CKA_VALUE (or another attribute) as the client sees it: rv, and the length reported. */
static CK_RV get_value(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret_len)
{
        CK_BYTE buf[1024];
        CK_ATTRIBUTE a = { type, buf, sizeof(buf) };
        CK_RV rv;

        memset(buf, 0, sizeof(buf));
        rv = m.f->C_GetAttributeValue(s, o, &a, 1);
        *ret_len = a.ulValueLen;
        return rv;
}

static CK_RV gen_aes(CK_SESSION_HANDLE s, CK_BBOOL sensitive, CK_BBOOL extractable, CK_BBOOL wrap, CK_BBOOL decrypt,
                     CK_OBJECT_HANDLE *ret)
{
        CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_ULONG len = 32;
        CK_ATTRIBUTE t[] = {
                { CKA_TOKEN, &no, sizeof(no) },
                { CKA_VALUE_LEN, &len, sizeof(len) },
                { CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
                { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
                { CKA_WRAP, &wrap, sizeof(wrap) },
                { CKA_UNWRAP, &wrap, sizeof(wrap) },
                { CKA_ENCRYPT, &decrypt, sizeof(decrypt) },
                { CKA_DECRYPT, &decrypt, sizeof(decrypt) },
                { CKA_DERIVE, &yes, sizeof(yes) },
        };

        return m.f->C_GenerateKey(s, &mech, t, ELEMENTSOF(t), ret);
}

static int wait_child(pid_t pid)
{
        int st = 0;

        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
                return -1;
        return WEXITSTATUS(st);
}

/* Runs fn as a second client in a child process; returns its exit status (0: all its checks passed). */
static int as_second_client(const char *what, void (*fn)(void))
{
        pid_t pid;

        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                CHECK_OK(p11t_initialize(m.f), "[%s] second client: C_Initialize", what);
                fn();
                fflush(stdout);
                _exit(p11t_failures() > 0 ? 1 : 0);
        }
        return wait_child(pid);
}

/* ---- token classes ---- */

static void test_classes(void)
{
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub, priv, key;
        CK_UTF8CHAR label[32];

        if (!CHECK_OK(p11t_open_login(m.f, slot_class, pin, &s), "class: session on kyso-test, user logged in"))
                return;
        CHECK_RV(p11t_gen_secret(m.f, s, CKM_AES_KEY_GEN, CKK_AES, 32, "denied", &key), CKR_FUNCTION_REJECTED,
                 "class: C_GenerateKey refused on a token whose class denies key generation");
        CHECK_RV(p11t_gen_ec(m.f, s, "P-256", "denied", false, &pub, &priv), CKR_FUNCTION_REJECTED,
                 "class: C_GenerateKeyPair refused likewise");
        CHECK_RV(m.f->C_InitPIN(s, (CK_UTF8CHAR_PTR) pin, strlen(pin)), CKR_FUNCTION_REJECTED,
                 "class: C_InitPIN refused");
        m.f->C_Logout(s);
        CHECK_RV(m.f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) so_pin, strlen(so_pin)), CKR_FUNCTION_REJECTED,
                 "class: C_Login as CKU_SO refused (with the right SO PIN)");
        m.f->C_CloseSession(s);
        memset(label, ' ', sizeof(label));
        memcpy(label, "wiped", 5);
        CHECK_RV(m.f->C_InitToken(slot_class, (CK_UTF8CHAR_PTR) so_pin, strlen(so_pin), label),
                 CKR_FUNCTION_REJECTED, "class: C_InitToken refused");

        /* The other token is of no class: the same operations work there. */
        if (!CHECK_OK(p11t_open_login(m.f, slot_keys, NULL, &s), "class: session on kyso-test-2"))
                return;
        CHECK_OK(m.f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) so_pin, strlen(so_pin)),
                 "class: SO login works on a token of no class");
        m.f->C_Logout(s);
        m.f->C_CloseSession(s);
}

/* ---- key protection ---- */

static void test_private_keys(CK_SESSION_HANDLE s)
{
        CK_MECHANISM rsa_gen = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        CK_ULONG bits = 2048, len;
        CK_BYTE e[] = { 1, 0, 1 };
        CK_ATTRIBUTE pub_t[] = { { CKA_TOKEN, &no, sizeof(no) }, { CKA_MODULUS_BITS, &bits, sizeof(bits) },
                                 { CKA_PUBLIC_EXPONENT, e, sizeof(e) } };
        CK_ATTRIBUTE nonsensitive_t[] = { { CKA_TOKEN, &no, sizeof(no) }, { CKA_SENSITIVE, &no, sizeof(no) } };
        CK_ATTRIBUTE extractable_t[] = { { CKA_TOKEN, &no, sizeof(no) }, { CKA_EXTRACTABLE, &yes, sizeof(yes) } };
        CK_ATTRIBUTE silent_t[] = { { CKA_TOKEN, &no, sizeof(no) }, { CKA_SIGN, &yes, sizeof(yes) } };
        CK_OBJECT_HANDLE pub, priv, copy, imported;
        CK_BBOOL b;

        CHECK_RV(m.f->C_GenerateKeyPair(s, &rsa_gen, pub_t, ELEMENTSOF(pub_t), nonsensitive_t,
                                        ELEMENTSOF(nonsensitive_t), &pub, &priv),
                 CKR_ATTRIBUTE_VALUE_INVALID, "private: C_GenerateKeyPair with CKA_SENSITIVE=FALSE refused");
        CHECK_RV(m.f->C_GenerateKeyPair(s, &rsa_gen, pub_t, ELEMENTSOF(pub_t), extractable_t,
                                        ELEMENTSOF(extractable_t), &pub, &priv),
                 CKR_ATTRIBUTE_VALUE_INVALID, "private: C_GenerateKeyPair with CKA_EXTRACTABLE=TRUE refused");
        if (!CHECK_OK(m.f->C_GenerateKeyPair(s, &rsa_gen, pub_t, ELEMENTSOF(pub_t), silent_t, ELEMENTSOF(silent_t),
                                             &pub, &priv),
                      "private: C_GenerateKeyPair saying nothing of sensitivity"))
                return;
        CHECK(get_bool(s, priv, CKA_SENSITIVE, &b) == CKR_OK && b == CK_TRUE,
              "private: kyso made it sensitive (SoftHSM2's default is not)");
        CHECK(get_bool(s, priv, CKA_EXTRACTABLE, &b) == CKR_OK && b == CK_FALSE, "private: and not extractable");
        for (CK_ATTRIBUTE_TYPE t = CKA_PRIVATE_EXPONENT; t <= CKA_COEFFICIENT; t++) {
                CK_RV rv = get_value(s, priv, t, &len);

                CHECK(rv == CKR_ATTRIBUTE_SENSITIVE && len == CK_UNAVAILABLE_INFORMATION,
                      "private: RSA component 0x%lx withheld (%s)", (unsigned long) t, p11t_rv_name(rv));
        }
        CHECK_RV(m.f->C_SetAttributeValue(s, priv, nonsensitive_t + 1, 1), CKR_ATTRIBUTE_READ_ONLY,
                 "private: C_SetAttributeValue(CKA_SENSITIVE=FALSE) refused");
        CHECK_RV(m.f->C_SetAttributeValue(s, priv, extractable_t + 1, 1), CKR_ATTRIBUTE_READ_ONLY,
                 "private: C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) refused");
        CHECK_RV(m.f->C_CopyObject(s, priv, extractable_t, ELEMENTSOF(extractable_t), &copy), CKR_ATTRIBUTE_READ_ONLY,
                 "private: C_CopyObject(CKA_EXTRACTABLE=TRUE) refused");
        CHECK_RV(m.f->C_CopyObject(s, priv, nonsensitive_t, ELEMENTSOF(nonsensitive_t), &copy),
                 CKR_ATTRIBUTE_READ_ONLY, "private: C_CopyObject(CKA_SENSITIVE=FALSE) refused");

        /* An imported EC private key: sensitive too, whatever the client knew. */
        static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_BYTE d[32];
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_KEY_TYPE kt = CKK_EC;
        memset(d, 0x11, sizeof(d));
        CK_ATTRIBUTE ec_t[] = { { CKA_CLASS, &cls, sizeof(cls) },    { CKA_KEY_TYPE, &kt, sizeof(kt) },
                                { CKA_TOKEN, &no, sizeof(no) },      { CKA_EC_PARAMS, (void *) p256, sizeof(p256) },
                                { CKA_VALUE, d, sizeof(d) },         { CKA_SENSITIVE, &no, sizeof(no) } };
        CHECK_RV(m.f->C_CreateObject(s, ec_t, ELEMENTSOF(ec_t), &imported), CKR_ATTRIBUTE_VALUE_INVALID,
                 "private: C_CreateObject of a non-sensitive EC private key refused");
        if (CHECK_OK(m.f->C_CreateObject(s, ec_t, ELEMENTSOF(ec_t) - 1, &imported),
                     "private: C_CreateObject of an EC private key saying nothing of sensitivity")) {
                CHECK(get_bool(s, imported, CKA_SENSITIVE, &b) == CKR_OK && b == CK_TRUE,
                      "private: the imported key is sensitive");
                CK_RV rv = get_value(s, imported, CKA_VALUE, &len);
                CHECK(rv == CKR_ATTRIBUTE_SENSITIVE && len == CK_UNAVAILABLE_INFORMATION,
                      "private: its CKA_VALUE is withheld (%s)", p11t_rv_name(rv));
        }
}

static void test_secret_keys(CK_SESSION_HANDLE s)
{
        CK_OBJECT_HANDLE target, clulow, kek, known, u, copy, readable, hidden, pub, priv, derived;
        CK_MECHANISM wrap = { CKM_AES_KEY_WRAP, NULL, 0 }, rsa = { CKM_RSA_PKCS, NULL, 0 };
        CK_BYTE blob[256];
        CK_ULONG n, len;
        CK_BBOOL b;
        CK_RV rv;

        if (!CHECK_OK(gen_aes(s, CK_TRUE, CK_TRUE, CK_FALSE, CK_TRUE, &target),
                      "secret: a sensitive, extractable AES key (the target)") ||
            !CHECK_OK(gen_aes(s, CK_TRUE, CK_FALSE, CK_TRUE, CK_TRUE, &clulow),
                      "secret: a sensitive key that may both wrap and decrypt") ||
            !CHECK_OK(gen_aes(s, CK_TRUE, CK_FALSE, CK_TRUE, CK_FALSE, &kek),
                      "secret: a sensitive, never extractable wrapping key that cannot decrypt"))
                return;

        rv = get_value(s, target, CKA_VALUE, &len);
        CHECK(rv == CKR_ATTRIBUTE_SENSITIVE && len == CK_UNAVAILABLE_INFORMATION, "secret: target CKA_VALUE withheld");

        /* Clulow: wrap the target with K, then C_Decrypt the blob with K. The wrap is refused. */
        n = sizeof(blob);
        CHECK_RV(m.f->C_WrapKey(s, &wrap, clulow, target, blob, &n), CKR_KEY_NOT_WRAPPABLE,
                 "Clulow: C_WrapKey of a sensitive key with a key that can decrypt refused");

        /* Known wrapping keys: an imported one, a public key. */
        static const CK_BYTE known_value[32] = { 7 };
        if (CHECK_OK(p11t_import_secret(m.f, s, CKK_AES, known_value, sizeof(known_value), "known", &known),
                     "secret: an imported AES key (its value is known)")) {
                n = sizeof(blob);
                CHECK_RV(m.f->C_WrapKey(s, &wrap, known, target, blob, &n), CKR_KEY_NOT_WRAPPABLE,
                         "secret: C_WrapKey of a sensitive key under an imported key refused");
        }
        if (CHECK_OK(p11t_gen_rsa(m.f, s, 2048, "wrap-rsa", false, &pub, &priv), "secret: an RSA key pair")) {
                n = sizeof(blob);
                CHECK_RV(m.f->C_WrapKey(s, &rsa, pub, target, blob, &n), CKR_KEY_NOT_WRAPPABLE,
                         "secret: C_WrapKey of a sensitive key under a public key refused (its private half decrypts)");
                n = sizeof(blob);
                CHECK_RV(m.f->C_WrapKey(s, &wrap, kek, priv, blob, &n), CKR_KEY_UNEXTRACTABLE,
                         "secret: C_WrapKey of a private key refused");
        }

        /* A proper wrapping key works, and its blob unwraps only to a sensitive key. */
        n = sizeof(blob);
        if (CHECK_OK(m.f->C_WrapKey(s, &wrap, kek, target, blob, &n),
                     "secret: C_WrapKey with a local, never-readable key that cannot decrypt")) {
                CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
                CK_KEY_TYPE kt = CKK_AES;
                CK_ATTRIBUTE ut[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                                      { CKA_TOKEN, &no, sizeof(no) },   { CKA_EXTRACTABLE, &yes, sizeof(yes) },
                                      { CKA_SENSITIVE, &no, sizeof(no) } };

                CHECK_RV(m.f->C_UnwrapKey(s, &wrap, kek, blob, n, ut, ELEMENTSOF(ut), &u), CKR_ATTRIBUTE_VALUE_INVALID,
                         "secret: C_UnwrapKey(CKA_SENSITIVE=FALSE) of a blob made with a sensitive key refused");
                if (CHECK_OK(m.f->C_UnwrapKey(s, &wrap, kek, blob, n, ut, ELEMENTSOF(ut) - 1, &u),
                             "secret: C_UnwrapKey saying nothing of sensitivity")) {
                        CHECK(get_bool(s, u, CKA_SENSITIVE, &b) == CKR_OK && b == CK_TRUE,
                              "secret: the unwrapped key is sensitive");
                        rv = get_value(s, u, CKA_VALUE, &len);
                        CHECK(rv == CKR_ATTRIBUTE_SENSITIVE, "secret: its CKA_VALUE is withheld (%s)",
                              p11t_rv_name(rv));
                }
        }
        CK_ATTRIBUTE decrypt_t[] = { { CKA_DECRYPT, &yes, sizeof(yes) } };
        CHECK_RV(m.f->C_SetAttributeValue(s, kek, decrypt_t, 1), CKR_ATTRIBUTE_READ_ONLY,
                 "Clulow: the wrapping key may not start to decrypt (C_SetAttributeValue)");
        CHECK_RV(m.f->C_CopyObject(s, kek, decrypt_t, 1, &copy), CKR_ATTRIBUTE_READ_ONLY,
                 "Clulow: nor may a copy of it (C_CopyObject)");

        /* Sensitivity and extractability do not go back. */
        CK_ATTRIBUTE nonsensitive_t[] = { { CKA_SENSITIVE, &no, sizeof(no) } };
        CK_ATTRIBUTE extractable_t[] = { { CKA_EXTRACTABLE, &yes, sizeof(yes) } };
        CHECK_RV(m.f->C_SetAttributeValue(s, target, nonsensitive_t, 1), CKR_ATTRIBUTE_READ_ONLY,
                 "secret: C_SetAttributeValue(CKA_SENSITIVE=FALSE) refused");
        CHECK_RV(m.f->C_CopyObject(s, target, nonsensitive_t, 1, &copy), CKR_ATTRIBUTE_READ_ONLY,
                 "secret: C_CopyObject(CKA_SENSITIVE=FALSE) refused");
        CHECK_RV(m.f->C_SetAttributeValue(s, kek, extractable_t, 1), CKR_ATTRIBUTE_READ_ONLY,
                 "secret: C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) on an unextractable key refused");

        /* Derivation from a sensitive secret key stays sensitive. */
        CK_BYTE data[16] = { 1, 2, 3 };
        CK_KEY_DERIVATION_STRING_DATA sd = { data, sizeof(data) };
        CK_MECHANISM dm = { CKM_AES_ECB_ENCRYPT_DATA, &sd, sizeof(sd) };
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
        CK_ULONG dl = 16;
        CK_ATTRIBUTE dt[] = { { CKA_CLASS, &cls, sizeof(cls) },       { CKA_KEY_TYPE, &gk, sizeof(gk) },
                              { CKA_TOKEN, &no, sizeof(no) },         { CKA_VALUE_LEN, &dl, sizeof(dl) },
                              { CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_SENSITIVE, &no, sizeof(no) } };
        CHECK_RV(m.f->C_DeriveKey(s, &dm, target, dt, ELEMENTSOF(dt), &derived), CKR_ATTRIBUTE_VALUE_INVALID,
                 "secret: C_DeriveKey(CKA_SENSITIVE=FALSE) from a sensitive key refused");
        if (CHECK_OK(m.f->C_DeriveKey(s, &dm, target, dt, ELEMENTSOF(dt) - 1, &derived),
                     "secret: C_DeriveKey saying nothing of sensitivity"))
                CHECK(get_bool(s, derived, CKA_SENSITIVE, &b) == CKR_OK && b == CK_TRUE,
                      "secret: the derived key is sensitive");

        /* The client's own readable keys stay readable; a non-extractable one is withheld although SoftHSM2 would
         * hand its value out. */
        if (CHECK_OK(gen_aes(s, CK_FALSE, CK_TRUE, CK_FALSE, CK_TRUE, &readable),
                     "secret: a generated key asked to be readable (as pkcs11-tool --keygen does)")) {
                rv = get_value(s, readable, CKA_VALUE, &len);
                CHECK(rv == CKR_OK && len == 32, "secret: its CKA_VALUE is readable (%s, %lu bytes)", p11t_rv_name(rv),
                      (unsigned long) len);
                n = sizeof(blob);
                CHECK_OK(m.f->C_WrapKey(s, &wrap, known, readable, blob, &n),
                         "secret: a readable key may be wrapped under any key");
        }
        if (CHECK_OK(gen_aes(s, CK_FALSE, CK_FALSE, CK_FALSE, CK_TRUE, &hidden),
                     "secret: a generated key, not sensitive but not extractable")) {
                CK_BYTE buf[64];
                CK_ATTRIBUTE a[] = { { CKA_VALUE, buf, sizeof(buf) }, { CKA_VALUE_LEN, &dl, sizeof(dl) } };

                memset(buf, 0, sizeof(buf));
                rv = m.f->C_GetAttributeValue(s, hidden, a, ELEMENTSOF(a));
                bool zero = true;
                for (size_t i = 0; i < sizeof(buf); i++)
                        zero = zero && buf[i] == 0;
                CHECK(rv == CKR_ATTRIBUTE_SENSITIVE && a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION && zero &&
                              a[1].ulValueLen == sizeof(CK_ULONG) && dl == 32,
                      "secret: kyso withholds its CKA_VALUE (%s), the other attributes still come back",
                      p11t_rv_name(rv));
        }
}

static void test_keys(void)
{
        CK_SESSION_HANDLE s;

        if (!CHECK_OK(p11t_open_login(m.f, slot_keys, pin, &s), "keys: session on kyso-test-2, logged in"))
                return;
        test_private_keys(s);
        test_secret_keys(s);
        m.f->C_CloseSession(s);
}

/* ---- sessions per uid ---- */

static void second_client_opens_none(void)
{
        CK_SESSION_HANDLE s;

        CHECK_RV(m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_SESSION_COUNT,
                 "sessions: another client of the same uid cannot open one beyond the limit");
}

static void second_client_opens_one(void)
{
        CK_SESSION_HANDLE s;

        CHECK_OK(m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s),
                 "sessions: another client of the same uid opens one after sessions were closed");
}

static void test_sessions(void)
{
        CK_SESSION_HANDLE s[SESSIONS_PER_UID + 1];
        unsigned n = 0;
        CK_RV rv = CKR_OK;

        while (n < ELEMENTSOF(s)) {
                rv = m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s[n]);
                if (rv != CKR_OK)
                        break;
                n++;
        }
        CHECK(rv == CKR_SESSION_COUNT && n == SESSIONS_PER_UID, "sessions: %u opened, then %s (limit %u)", n,
              p11t_rv_name(rv), SESSIONS_PER_UID);
        CHECK(as_second_client("sessions", second_client_opens_none) == 0,
              "sessions: the limit counts every client of the uid");
        if (n > 0)
                CHECK_OK(m.f->C_CloseSession(s[--n]), "sessions: close one");
        CHECK_OK(m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s[n]), "sessions: open one again");
        n++;
        CHECK_OK(m.f->C_CloseAllSessions(slot_keys), "sessions: close them all");
        CHECK(as_second_client("sessions", second_client_opens_one) == 0,
              "sessions: closed sessions no longer count (and the second client's ended with it)");
        /* The child's session ended with its connection: the whole allowance is back. */
        for (n = 0; n < SESSIONS_PER_UID; n++)
                if (m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s[n]) != CKR_OK)
                        break;
        CHECK(n == SESSIONS_PER_UID, "sessions: all %u can be opened again (%u)", SESSIONS_PER_UID, n);
        m.f->C_CloseAllSessions(slot_keys);
}

/* ---- PIN tries ---- */

static CK_FLAGS token_flags(void)
{
        CK_TOKEN_INFO ti;

        memset(&ti, 0, sizeof(ti));
        if (m.f->C_GetTokenInfo(slot_keys, &ti) != CKR_OK)
                return ~0UL;
        return ti.flags;
}

#define PIN_FLAGS (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)

static void second_client_guesses(void)
{
        CK_SESSION_HANDLE s;
        static const char *const wrong[] = { "0000", "1234", "4815162343" };

        if (!CHECK_OK(m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s), "PIN: B opens a session"))
                return;
        CHECK((token_flags() & PIN_FLAGS) == 0, "PIN: B sees no PIN trouble at first (0x%lx)", token_flags());
        for (unsigned i = 0; i < ELEMENTSOF(wrong); i++) {
                CK_FLAGS want = CKF_USER_PIN_COUNT_LOW | (i >= 1 ? CKF_USER_PIN_FINAL_TRY : 0), f;

                CHECK_RV(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) wrong[i], strlen(wrong[i])), CKR_PIN_INCORRECT,
                         "PIN: B's wrong PIN %u", i + 1);
                f = token_flags();
                CHECK((f & PIN_FLAGS) == want, "PIN: after %u wrong, B sees flags 0x%lx (want 0x%lx, never LOCKED)",
                      i + 1, f & PIN_FLAGS, want);
        }
        CHECK_RV(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), CKR_PIN_LOCKED,
                 "PIN: after 3 wrong PINs even the right one is refused while the token stays logged in");
        CHECK_RV(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "0000", 4), CKR_PIN_LOCKED,
                 "PIN: and no more guesses are checked");
}

static void second_client_logs_in(void)
{
        CK_SESSION_HANDLE s;

        if (!CHECK_OK(m.f->C_OpenSession(slot_keys, CKF_SERIAL_SESSION, NULL, NULL, &s), "PIN: C opens a session"))
                return;
        CHECK_RV(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "0000", 4), CKR_PIN_INCORRECT, "PIN: C's wrong PIN");
        CHECK_OK(m.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), "PIN: C's right PIN");
        CHECK((token_flags() & PIN_FLAGS) == 0, "PIN: a right PIN clears the count (0x%lx)", token_flags());
}

static void test_pin_tries(void)
{
        CK_SESSION_HANDLE a;

        if (!CHECK_OK(p11t_open_login(m.f, slot_keys, pin, &a), "PIN: A logs in (the token checks its PIN)"))
                return;
        CHECK(as_second_client("PIN", second_client_guesses) == 0, "PIN: B's guesses were counted and stopped");
        CHECK((token_flags() & PIN_FLAGS) == (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY),
              "PIN: A sees the same flags (0x%lx)", token_flags() & PIN_FLAGS);
        CHECK_OK(m.f->C_Logout(a), "PIN: A logs out: the token's login ends");
        CHECK((token_flags() & PIN_FLAGS) == 0, "PIN: the count ended with the token's login (0x%lx)",
              token_flags() & PIN_FLAGS);
        CHECK_OK(m.f->C_Login(a, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin)), "PIN: A logs in again");
        CHECK(as_second_client("PIN", second_client_logs_in) == 0, "PIN: a wrong then a right PIN from C");
        m.f->C_CloseSession(a);
}

int main(void)
{
        const char *label = p11t_env("KYSO_TEST_LABEL");
        char label2[64];

        pin = p11t_env("KYSO_TEST_PIN");
        so_pin = p11t_env("KYSO_TEST_SO_PIN");
        snprintf(label2, sizeof(label2), "%s-2", label);
        if (!p11t_load(&m, "kyso", p11t_env("KYSO_MODULE")))
                return 1;
        if (!CHECK_OK(p11t_initialize(m.f), "C_Initialize") ||
            !CHECK_OK(p11t_find_slot(m.f, label, &slot_class), "find %s", label) ||
            !CHECK_OK(p11t_find_slot(m.f, label2, &slot_keys), "find %s", label2))
                return p11t_summary();

        test_classes();
        test_keys();
        test_sessions();
        test_pin_tries();

        m.f->C_Finalize(NULL);
        return p11t_summary();
}
