/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by kyso's C integration tests and the benchmark: load a PKCS#11
 * module by path, initialise it for a multi-threaded caller, find a token by its
 * label, log in, make keys, and report results in TAP form ("ok N - ...",
 * "not ok N - ...") with PKCS#11 return values by name. A test program ends with
 * `return p11t_summary();`, whose exit status is non-zero when any check failed.
 * The counters are thread-safe; a forked child reports through its exit status.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "pkcs11.h"

typedef struct P11Module {
        const char *name;               /* "kyso" or "direct", used in messages */
        void *dl;
        CK_FUNCTION_LIST_PTR f;
} P11Module;

/* Environment variable that must be set; exits the test (status 99) when it is not. */
const char *p11t_env(const char *name);

/* dlopen() path and call C_GetFunctionList. Returns false (and prints why) on failure. */
bool p11t_load(P11Module *m, const char *name, const char *path);
void p11t_unload(P11Module *m);

/* C_Initialize with CKF_OS_LOCKING_OK and no mutex callbacks. */
CK_RV p11t_initialize(CK_FUNCTION_LIST_PTR f);

/* Slot of the (initialised) token whose label is `label`; CKR_TOKEN_NOT_PRESENT when none. */
CK_RV p11t_find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *ret_slot);

/* Open a read/write session on slot and, when pin is not NULL, log the user in. */
CK_RV p11t_open_login(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *ret_session);

/* Key pairs and keys: session objects (token=false) unless `token`, labelled `label`. */
CK_RV p11t_gen_rsa(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_ULONG bits, const char *label, bool token,
                   CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv);
CK_RV p11t_gen_ec(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *curve, const char *label, bool token,
                  CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv);
CK_RV p11t_gen_secret(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mech, CK_KEY_TYPE type,
                      CK_ULONG len, const char *label, CK_OBJECT_HANDLE *ret_key);
/* A secret key with a known value (so both sides of a comparison hold the same key). */
CK_RV p11t_import_secret(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_KEY_TYPE type, const void *value,
                         CK_ULONG len, const char *label, CK_OBJECT_HANDLE *ret_key);
/* One whole search (Init, Find up to max, Final); *ret_n gets the number found. */
CK_RV p11t_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *ret,
                CK_ULONG max, CK_ULONG *ret_n);
/* Find all objects with CKA_LABEL = label (up to max); *ret_n gets the number found. */
CK_RV p11t_find_by_label(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *ret,
                         CK_ULONG max, CK_ULONG *ret_n);

/* DER of the named curve: "P-256", "P-384", "P-521", "secp256k1", "Ed25519", "Ed448". */
bool p11t_curve_der(const char *curve, const CK_BYTE **ret, CK_ULONG *ret_len);

const char *p11t_rv_name(CK_RV rv);
const char *p11t_mech_name(CK_MECHANISM_TYPE m);
/* Hex of at most 32 bytes (with "..." after), in a thread-local rotating buffer. */
const char *p11t_hex(const void *p, size_t n);
/* Space-padded PKCS#11 string field as a C string (thread-local rotating buffer). */
const char *p11t_str(const CK_UTF8CHAR *p, size_t n);
double p11t_now(void);

/* Reporting. Every check prints one TAP line; failures also go to the total. */
bool p11t_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void p11t_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report without printing "ok" lines for successes (for loops of thousands of checks). */
void p11t_count(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
unsigned p11t_failures(void);
int p11t_summary(void);

#define CHECK(cond, ...) p11t_ok(!!(cond), __VA_ARGS__)

/* rv must equal want; prints both names. Evaluates to whether it did. */
#define CHECK_RV(rv, want, what, ...)                                                                   \
        ({                                                                                              \
                CK_RV _r = (rv), _w = (want);                                                           \
                p11t_ok(_r == _w, what ": %s (expected %s)" __VA_OPT__(, ) __VA_ARGS__, p11t_rv_name(_r), \
                        p11t_rv_name(_w));                                                              \
                _r == _w;                                                                               \
        })

#define CHECK_OK(rv, what, ...) CHECK_RV(rv, CKR_OK, what __VA_OPT__(, ) __VA_ARGS__)

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
