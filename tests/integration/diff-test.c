/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Differential test: the same sequence of PKCS#11 calls runs directly against
 * SoftHSM2 and through kyso (kyso-pkcs11.so -> kysod -> the same SoftHSM2 store),
 * and every return value and output is compared. Each side records a trace of
 * (step, CK_RV, output) and the traces are compared step by step. Handle numbers
 * differ by design (kyso issues its own), so they are never recorded; outputs
 * that depend on a side's own random keys are recorded by length and by whether
 * they verify, outputs of deterministic operations with the same key material
 * (imported on both sides) are recorded byte for byte.
 *
 * SoftHSM2 is loaded only after the daemon is up (with-kysod.sh starts it
 * first), so the two never C_Initialize the store at the same time.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11-test.h"

typedef enum { K_RV, K_BYTES, K_ULONG, K_TEXT } Kind;

typedef struct Rec {
        char what[128];
        CK_RV rv;
        CK_RV spec; /* where SoftHSM2 departs from the specification: the specified value, else CKR_OK */
        Kind kind;
        unsigned char *data;
        size_t len;
} Rec;

typedef struct Side {
        const char *name;
        CK_FUNCTION_LIST_PTR f;
        Rec *rec;
        size_t n, cap;
        const char *label, *pin, *so_pin;
} Side;

static void rec(Side *sd, Kind kind, CK_RV rv, const void *data, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));
static void rec(Side *sd, Kind kind, CK_RV rv, const void *data, size_t len, const char *fmt, ...) {
        va_list ap;
        if (sd->n == sd->cap) {
                sd->cap = sd->cap ? sd->cap * 2 : 256;
                sd->rec = realloc(sd->rec, sd->cap * sizeof(Rec));
                if (!sd->rec)
                        abort();
        }
        Rec *r = &sd->rec[sd->n++];
        va_start(ap, fmt);
        vsnprintf(r->what, sizeof(r->what), fmt, ap);
        va_end(ap);
        r->rv = rv;
        r->spec = CKR_OK;
        r->kind = kind;
        r->len = data ? len : 0;
        r->data = NULL;
        if (data && len) {
                r->data = malloc(len);
                memcpy(r->data, data, len);
        }
}

#define R(rv, ...) rec(sd, K_RV, (rv), NULL, 0, __VA_ARGS__)
/* The step's specified return value, recorded when SoftHSM2 is known to answer otherwise. */
#define SPEC(v) (sd->rec[sd->n - 1].spec = (v))
#define RB(rv, d, n, ...) rec(sd, K_BYTES, (rv), (d), (n), __VA_ARGS__)
#define RU(rv, u, ...)                                                         \
        do {                                                                   \
                CK_ULONG _u = (u);                                             \
                rec(sd, K_ULONG, (rv), &_u, sizeof(_u), __VA_ARGS__);          \
        } while (0)
#define RT(rv, s, ...)                                                         \
        do {                                                                   \
                const char *_s = (s);                                          \
                rec(sd, K_TEXT, (rv), _s, strlen(_s), __VA_ARGS__);            \
        } while (0)

/* A handle number no module has issued: kyso and SoftHSM2 both count up from small numbers. */
#define BOGUS_HANDLE ((CK_ULONG) 0x7ffff0f1UL)

static const char *ulong_str(CK_ULONG u) {
        static char buf[8][40];
        static unsigned i;
        i = (i + 1) % 8;
        if (u == CK_UNAVAILABLE_INFORMATION)
                return "CK_UNAVAILABLE_INFORMATION";
        snprintf(buf[i], sizeof(buf[i]), "%lu", (unsigned long) u);
        return buf[i];
}

static const char *rec_value(const Rec *r) {
        static char buf[4][200];
        static unsigned i;
        i = (i + 1) % 4;
        switch (r->kind) {
        case K_RV:
                return "";
        case K_ULONG: {
                CK_ULONG u;
                memcpy(&u, r->data, sizeof(u));
                snprintf(buf[i], sizeof(buf[i]), " %s", ulong_str(u));
                break;
        }
        case K_TEXT:
                snprintf(buf[i], sizeof(buf[i]), " \"%.*s\"", (int) r->len, r->data ? (char *) r->data : "");
                break;
        case K_BYTES:
                snprintf(buf[i], sizeof(buf[i]), " %zu bytes %s", r->len, p11t_hex(r->data, r->len));
                break;
        }
        return buf[i];
}

static void compare(const Side *direct, const Side *kyso) {
        size_t n = direct->n > kyso->n ? direct->n : kyso->n;
        for (size_t i = 0; i < n; i++) {
                const Rec *d = i < direct->n ? &direct->rec[i] : NULL;
                const Rec *k = i < kyso->n ? &kyso->rec[i] : NULL;
                if (!d || !k || strcmp(d->what, k->what) != 0) {
                        p11t_ok(false, "step %zu: sequences diverge: direct \"%s\", kyso \"%s\"", i,
                                d ? d->what : "(end)", k ? k->what : "(end)");
                        return;
                }
                bool same = d->rv == k->rv && d->kind == k->kind && d->len == k->len &&
                            (d->len == 0 || memcmp(d->data, k->data, d->len) == 0);
                if (same)
                        p11t_ok(true, "%s: %s%s (direct = kyso)", d->what, p11t_rv_name(d->rv), rec_value(d));
                else if (k->spec != CKR_OK && k->rv == k->spec && d->rv != d->spec && d->kind == K_RV)
                        p11t_ok(true, "%s: direct %s, kyso %s: SoftHSM2 departs from the specification here, kyso "
                                "answers what PKCS#11 specifies", d->what, p11t_rv_name(d->rv), p11t_rv_name(k->rv));
                else
                        p11t_ok(false, "%s: direct %s%s, kyso %s%s", d->what, p11t_rv_name(d->rv), rec_value(d),
                                p11t_rv_name(k->rv), rec_value(k));
        }
}

static int cmp_ulong(const void *a, const void *b) {
        CK_ULONG x = *(const CK_ULONG *) a, y = *(const CK_ULONG *) b;
        return x < y ? -1 : x > y;
}

/* ---- the sequence ---- */

static void seq_slots(Side *sd, CK_SLOT_ID *ret_slot) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_SLOT_ID slots[32], one[1];
        CK_ULONG n;
        CK_RV rv;

        n = 0;
        rv = f->C_GetSlotList(CK_FALSE, NULL, &n);
        RU(rv, n, "C_GetSlotList(all, NULL) count");
        n = 0;
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
        RU(rv, n, "C_GetSlotList(present, NULL) count");
        n = 0;
        rv = f->C_GetSlotList(CK_TRUE, one, &n);
        RU(rv, n, "C_GetSlotList(present, buffer of 0) -> count");
        n = ELEMENTSOF(slots);
        rv = f->C_GetSlotList(CK_TRUE, slots, &n);
        RU(rv, n, "C_GetSlotList(present, buffer) count");

        /* Slot ids may be renumbered by the broker: describe the slots by their token labels. */
        char labels[32][40];
        CK_ULONG nl = 0;
        for (CK_ULONG i = 0; i < n && i < ELEMENTSOF(slots); i++) {
                CK_TOKEN_INFO ti;
                memset(&ti, 0, sizeof(ti));
                if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK)
                        snprintf(labels[nl++], sizeof(labels[0]), "%s%s", p11t_str(ti.label, 32),
                                 (ti.flags & CKF_TOKEN_INITIALIZED) ? "" : "(uninitialised)");
        }
        qsort(labels, nl, sizeof(labels[0]), (int (*)(const void *, const void *)) strcmp);
        char all[1024] = "";
        for (CK_ULONG i = 0; i < nl; i++) {
                strncat(all, labels[i], sizeof(all) - strlen(all) - 2);
                strncat(all, ";", sizeof(all) - strlen(all) - 1);
        }
        RT(CKR_OK, all, "token labels of present slots");

        rv = p11t_find_slot(f, sd->label, ret_slot);
        R(rv, "find slot of token \"%s\"", sd->label);

        CK_SLOT_INFO si;
        memset(&si, 0, sizeof(si));
        rv = f->C_GetSlotInfo(*ret_slot, &si);
        R(rv, "C_GetSlotInfo");
        RT(rv, p11t_str(si.slotDescription, 64), "slot info: slotDescription");
        RT(rv, p11t_str(si.manufacturerID, 32), "slot info: manufacturerID");
        RU(rv, si.flags, "slot info: flags");
        RU(rv, si.hardwareVersion.major << 8 | si.hardwareVersion.minor, "slot info: hardwareVersion");
        RU(rv, si.firmwareVersion.major << 8 | si.firmwareVersion.minor, "slot info: firmwareVersion");

        rv = f->C_GetSlotInfo(BOGUS_HANDLE, &si);
        R(rv, "C_GetSlotInfo(invalid slot id)");
        CK_TOKEN_INFO ti;
        rv = f->C_GetTokenInfo(BOGUS_HANDLE, &ti);
        R(rv, "C_GetTokenInfo(invalid slot id)");

        memset(&ti, 0, sizeof(ti));
        rv = f->C_GetTokenInfo(*ret_slot, &ti);
        R(rv, "C_GetTokenInfo");
        RT(rv, p11t_str(ti.label, 32), "token info: label");
        RT(rv, p11t_str(ti.manufacturerID, 32), "token info: manufacturerID");
        RT(rv, p11t_str(ti.model, 16), "token info: model");
        RT(rv, p11t_str(ti.serialNumber, 16), "token info: serialNumber");
        RU(rv, ti.flags, "token info: flags");
        RU(rv, ti.ulMaxSessionCount, "token info: ulMaxSessionCount");
        RU(rv, ti.ulMaxRwSessionCount, "token info: ulMaxRwSessionCount");
        RU(rv, ti.ulMaxPinLen, "token info: ulMaxPinLen");
        RU(rv, ti.ulMinPinLen, "token info: ulMinPinLen");
        RU(rv, ti.ulTotalPublicMemory, "token info: ulTotalPublicMemory");
        RU(rv, ti.ulFreePublicMemory, "token info: ulFreePublicMemory");
        RU(rv, ti.ulTotalPrivateMemory, "token info: ulTotalPrivateMemory");
        RU(rv, ti.ulFreePrivateMemory, "token info: ulFreePrivateMemory");
        RU(rv, ti.hardwareVersion.major << 8 | ti.hardwareVersion.minor, "token info: hardwareVersion");
        RU(rv, ti.firmwareVersion.major << 8 | ti.firmwareVersion.minor, "token info: firmwareVersion");

        /* Mechanisms: count query, too-small buffer, the sorted list, every info. */
        CK_MECHANISM_TYPE mechs[256], few[2];
        n = 0;
        rv = f->C_GetMechanismList(*ret_slot, NULL, &n);
        RU(rv, n, "C_GetMechanismList(NULL) count");
        CK_ULONG nfew = ELEMENTSOF(few);
        rv = f->C_GetMechanismList(*ret_slot, few, &nfew);
        RU(rv, nfew, "C_GetMechanismList(buffer of 2) -> count");
        n = ELEMENTSOF(mechs);
        rv = f->C_GetMechanismList(*ret_slot, mechs, &n);
        if (rv != CKR_OK)
                n = 0;
        qsort(mechs, n, sizeof(mechs[0]), cmp_ulong);
        RB(rv, mechs, n * sizeof(mechs[0]), "C_GetMechanismList (sorted)");
        CK_MECHANISM_INFO infos[256];
        CK_RV irv = CKR_OK;
        for (CK_ULONG i = 0; i < n; i++) {
                memset(&infos[i], 0, sizeof(infos[i]));
                CK_RV r = f->C_GetMechanismInfo(*ret_slot, mechs[i], &infos[i]);
                if (r != CKR_OK)
                        irv = r;
        }
        RB(irv, infos, n * sizeof(infos[0]), "C_GetMechanismInfo of every mechanism");
        CK_MECHANISM_INFO mi;
        memset(&mi, 0, sizeof(mi));
        rv = f->C_GetMechanismInfo(*ret_slot, 0x7ffffff0UL, &mi);
        R(rv, "C_GetMechanismInfo(unknown mechanism)");
        rv = f->C_GetMechanismList(BOGUS_HANDLE, NULL, &n);
        R(rv, "C_GetMechanismList(invalid slot id)");
}

static void seq_session_info(Side *sd, CK_SESSION_HANDLE s, const char *what) {
        CK_SESSION_INFO si;
        memset(&si, 0, sizeof(si));
        CK_RV rv = sd->f->C_GetSessionInfo(s, &si);
        RU(rv, si.state, "%s: C_GetSessionInfo state", what);
        RU(rv, si.flags, "%s: C_GetSessionInfo flags", what);
        RU(rv, si.ulDeviceError, "%s: C_GetSessionInfo ulDeviceError", what);
}

static void seq_login(Side *sd, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret_rw) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_SESSION_HANDLE ro, rw, h;
        CK_RV rv;

        rv = f->C_OpenSession(slot, 0, NULL, NULL, &h);
        R(rv, "C_OpenSession without CKF_SERIAL_SESSION");
        rv = f->C_OpenSession(BOGUS_HANDLE, CKF_SERIAL_SESSION, NULL, NULL, &h);
        R(rv, "C_OpenSession(invalid slot id)");
        rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro);
        R(rv, "C_OpenSession(read-only)");
        seq_session_info(sd, ro, "read-only session");

        rv = f->C_GetSessionInfo(BOGUS_HANDLE, &(CK_SESSION_INFO) { 0 });
        R(rv, "C_GetSessionInfo(invalid session handle)");
        rv = f->C_GetSessionInfo(CK_INVALID_HANDLE, &(CK_SESSION_INFO) { 0 });
        R(rv, "C_GetSessionInfo(handle 0)");

        rv = f->C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "000000", 6);
        R(rv, "C_Login(wrong PIN)");
        seq_session_info(sd, ro, "after wrong PIN");
        rv = f->C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) sd->pin, strlen(sd->pin));
        R(rv, "C_Login(user PIN)");
        rv = f->C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) sd->pin, strlen(sd->pin));
        R(rv, "C_Login again");
        rv = f->C_Login(ro, CKU_SO, (CK_UTF8CHAR_PTR) sd->so_pin, strlen(sd->so_pin));
        R(rv, "C_Login(SO) while user is logged in");
        seq_session_info(sd, ro, "read-only session, logged in");

        rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
        R(rv, "C_OpenSession(read/write)");
        seq_session_info(sd, rw, "read/write session, logged in");

        CK_BYTE data[] = "x";
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE tok[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_TOKEN, &yes, sizeof(yes) },
                               { CKA_VALUE, data, 1 } };
        rv = f->C_CreateObject(ro, tok, ELEMENTSOF(tok), &h);
        R(rv, "C_CreateObject(token object) in read-only session");

        rv = f->C_CloseSession(ro);
        R(rv, "C_CloseSession(read-only)");
        rv = f->C_CloseSession(ro);
        R(rv, "C_CloseSession again");
        rv = f->C_GetSessionInfo(ro, &(CK_SESSION_INFO) { 0 });
        R(rv, "C_GetSessionInfo(closed session)");
        *ret_rw = rw;
}

static void seq_digest(Side *sd, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_MECHANISM sha256 = { CKM_SHA256, NULL, 0 }, sha1 = { CKM_SHA_1, NULL, 0 };
        CK_BYTE msg[] = "The quick brown fox jumps over the lazy dog";
        CK_BYTE out[128];
        CK_ULONG n;
        CK_RV rv;

        n = sizeof(out);
        rv = f->C_Digest(s, msg, sizeof(msg) - 1, out, &n);
        R(rv, "C_Digest without C_DigestInit");
        rv = f->C_DigestUpdate(s, msg, 3);
        R(rv, "C_DigestUpdate without C_DigestInit");
        rv = f->C_DigestInit(s, &(CK_MECHANISM) { 0x7ffffff0UL, NULL, 0 });
        R(rv, "C_DigestInit(unknown mechanism)");

        rv = f->C_DigestInit(s, &sha256);
        R(rv, "C_DigestInit(SHA256)");
        rv = f->C_DigestInit(s, &sha1);
        R(rv, "C_DigestInit while a digest is active");
        n = 0;
        rv = f->C_Digest(s, msg, sizeof(msg) - 1, NULL, &n);
        RU(rv, n, "C_Digest length query");
        n = 10;
        rv = f->C_Digest(s, msg, sizeof(msg) - 1, out, &n);
        RU(rv, n, "C_Digest into 10 bytes");
        n = sizeof(out);
        rv = f->C_Digest(s, msg, sizeof(msg) - 1, out, &n);
        RB(rv, out, rv == CKR_OK ? n : 0, "C_Digest(SHA256)");
        n = sizeof(out);
        rv = f->C_Digest(s, msg, sizeof(msg) - 1, out, &n);
        R(rv, "C_Digest after the digest finished");

        rv = f->C_DigestInit(s, &sha1);
        R(rv, "C_DigestInit(SHA-1) multi-part");
        rv = f->C_DigestUpdate(s, msg, 10);
        R(rv, "C_DigestUpdate 1");
        rv = f->C_DigestUpdate(s, msg + 10, 0);
        R(rv, "C_DigestUpdate empty");
        rv = f->C_DigestUpdate(s, msg + 10, sizeof(msg) - 11);
        R(rv, "C_DigestUpdate 2");
        n = 0;
        rv = f->C_DigestFinal(s, NULL, &n);
        RU(rv, n, "C_DigestFinal length query");
        n = 5;
        rv = f->C_DigestFinal(s, out, &n);
        RU(rv, n, "C_DigestFinal into 5 bytes");
        n = sizeof(out);
        rv = f->C_DigestFinal(s, out, &n);
        RB(rv, out, rv == CKR_OK ? n : 0, "C_DigestFinal(SHA-1)");
        rv = f->C_DigestUpdate(s, msg, 3);
        R(rv, "C_DigestUpdate after C_DigestFinal");

        rv = f->C_DigestInit(s, &sha256);
        R(rv, "C_DigestInit for C_Digest after C_DigestUpdate");
        rv = f->C_DigestUpdate(s, msg, 3);
        R(rv, "C_DigestUpdate");
        n = sizeof(out);
        rv = f->C_Digest(s, msg, 3, out, &n);
        R(rv, "C_Digest in the middle of a multi-part digest");
        n = sizeof(out);
        rv = f->C_DigestFinal(s, out, &n);
        R(rv, "C_DigestFinal after that");

        /* Digest of a key (same value on both sides). */
        static const CK_BYTE kv[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
        CK_OBJECT_HANDLE key;
        rv = p11t_import_secret(f, s, CKK_AES, kv, sizeof(kv), "diff-digest-key", &key);
        R(rv, "C_CreateObject(AES key with known value)");
        rv = f->C_DigestInit(s, &sha256);
        R(rv, "C_DigestInit for C_DigestKey");
        rv = f->C_DigestKey(s, key);
        R(rv, "C_DigestKey");
        n = sizeof(out);
        rv = f->C_DigestFinal(s, out, &n);
        RB(rv, out, rv == CKR_OK ? n : 0, "C_DigestFinal over the key");
        f->C_DestroyObject(s, key);
}

static void seq_objects(Side *sd, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
        CK_BYTE value[] = "data object value 0123456789";
        const char *label = "diff-data", *app = "kyso-diff";
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },       { CKA_TOKEN, &no, sizeof(no) },
                { CKA_PRIVATE, &yes, sizeof(yes) },     { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_APPLICATION, (void *) app, strlen(app) }, { CKA_VALUE, value, sizeof(value) - 1 },
        };
        CK_OBJECT_HANDLE obj, copy, found[8];
        CK_ULONG n;
        CK_RV rv;

        rv = f->C_CreateObject(s, t, ELEMENTSOF(t), &obj);
        R(rv, "C_CreateObject(data)");
        CK_ATTRIBUTE bad[] = { { CKA_CLASS, &cls, 3 } };
        rv = f->C_CreateObject(s, bad, 1, &copy);
        R(rv, "C_CreateObject(CKA_CLASS of 3 bytes)");

        /* Length queries, values, too-small buffers and invalid types in one template. */
        CK_BYTE vbuf[64], lbuf[4];
        CK_ULONG ulv;
        CK_ATTRIBUTE q[] = { { CKA_VALUE, NULL, 0 }, { CKA_LABEL, NULL, 0 }, { CKA_APPLICATION, NULL, 0 } };
        rv = f->C_GetAttributeValue(s, obj, q, ELEMENTSOF(q));
        RU(rv, q[0].ulValueLen, "C_GetAttributeValue length query: CKA_VALUE");
        RU(rv, q[1].ulValueLen, "C_GetAttributeValue length query: CKA_LABEL");
        RU(rv, q[2].ulValueLen, "C_GetAttributeValue length query: CKA_APPLICATION");
        CK_ATTRIBUTE g[] = { { CKA_VALUE, vbuf, sizeof(vbuf) }, { CKA_CLASS, &ulv, sizeof(ulv) } };
        rv = f->C_GetAttributeValue(s, obj, g, ELEMENTSOF(g));
        RB(rv, vbuf, g[0].ulValueLen <= sizeof(vbuf) ? g[0].ulValueLen : 0, "C_GetAttributeValue: CKA_VALUE");
        RU(rv, ulv, "C_GetAttributeValue: CKA_CLASS");
        memset(vbuf, 0, sizeof(vbuf));
        CK_ATTRIBUTE m[] = { { CKA_LABEL, lbuf, sizeof(lbuf) }, { 0x7777UL, vbuf, sizeof(vbuf) },
                             { CKA_VALUE, vbuf, sizeof(vbuf) } };
        rv = f->C_GetAttributeValue(s, obj, m, ELEMENTSOF(m));
        R(rv, "C_GetAttributeValue(label into 4 bytes, invalid type, value)");
        RU(rv, m[0].ulValueLen, "  ... CKA_LABEL ulValueLen");
        RU(rv, m[1].ulValueLen, "  ... type 0x7777 ulValueLen");
        RU(rv, m[2].ulValueLen, "  ... CKA_VALUE ulValueLen");
        RB(rv, vbuf, m[2].ulValueLen <= sizeof(vbuf) ? m[2].ulValueLen : 0, "  ... CKA_VALUE value");
        CK_ATTRIBUTE inv[] = { { 0x7777UL, NULL, 0 }, { CKA_VALUE, NULL, 0 } };
        rv = f->C_GetAttributeValue(s, obj, inv, ELEMENTSOF(inv));
        RU(rv, inv[0].ulValueLen, "C_GetAttributeValue(invalid type, value length): invalid type ulValueLen");
        RU(rv, inv[1].ulValueLen, "  ... CKA_VALUE ulValueLen");
        rv = f->C_GetAttributeValue(s, BOGUS_HANDLE, q, 1);
        R(rv, "C_GetAttributeValue(invalid object handle)");

        n = 0;
        rv = f->C_GetObjectSize(s, obj, &n);
        RU(rv, n, "C_GetObjectSize");

        const char *label2 = "diff-data-renamed";
        CK_ATTRIBUTE set[] = { { CKA_LABEL, (void *) label2, strlen(label2) } };
        rv = f->C_SetAttributeValue(s, obj, set, 1);
        R(rv, "C_SetAttributeValue(CKA_LABEL)");
        CK_ATTRIBUTE setc[] = { { CKA_CLASS, &cls, sizeof(cls) } };
        rv = f->C_SetAttributeValue(s, obj, setc, 1);
        R(rv, "C_SetAttributeValue(CKA_CLASS)");
        char lb[64] = "";
        CK_ATTRIBUTE gl[] = { { CKA_LABEL, lb, sizeof(lb) - 1 } };
        rv = f->C_GetAttributeValue(s, obj, gl, 1);
        RT(rv, lb, "label after C_SetAttributeValue");

        const char *label3 = "diff-data-copy";
        CK_ATTRIBUTE ct[] = { { CKA_LABEL, (void *) label3, strlen(label3) } };
        rv = f->C_CopyObject(s, obj, ct, 1, &copy);
        R(rv, "C_CopyObject");

        rv = p11t_find_by_label(f, s, label2, found, ELEMENTSOF(found), &n);
        RU(rv, n, "find by label \"%s\"", label2);
        rv = p11t_find_by_label(f, s, label3, found, ELEMENTSOF(found), &n);
        RU(rv, n, "find by label \"%s\"", label3);
        CK_ATTRIBUTE ft[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_APPLICATION, (void *) app, strlen(app) } };
        rv = f->C_FindObjectsInit(s, ft, ELEMENTSOF(ft));
        R(rv, "C_FindObjectsInit(class data, application)");
        rv = f->C_FindObjectsInit(s, ft, ELEMENTSOF(ft));
        R(rv, "C_FindObjectsInit while a search is active");
        for (int i = 0; i < 4; i++) {
                rv = f->C_FindObjects(s, found, 1, &n);
                RU(rv, n, "C_FindObjects(max 1) #%d", i + 1);
        }
        rv = f->C_FindObjectsFinal(s);
        R(rv, "C_FindObjectsFinal");
        rv = f->C_FindObjects(s, found, 1, &n);
        R(rv, "C_FindObjects after C_FindObjectsFinal");
        rv = f->C_FindObjectsFinal(s);
        R(rv, "C_FindObjectsFinal again");

        rv = f->C_DestroyObject(s, copy);
        R(rv, "C_DestroyObject(copy)");
        rv = f->C_DestroyObject(s, copy);
        R(rv, "C_DestroyObject(copy) again");
        rv = p11t_find_by_label(f, s, label3, found, ELEMENTSOF(found), &n);
        RU(rv, n, "find by label \"%s\" after destroy", label3);
        f->C_DestroyObject(s, obj);
}

/*
 * The same search before and after every kind of change: kysod remembers a search's answer for the slot
 * (backend_find_all()), so each change below must make it search again.
 */
static void seq_find_again(Side *sd, CK_SLOT_ID slot, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_OBJECT_CLASS data = CKO_DATA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        const char *label = "diff-again", *label2 = "diff-again-2", *app = "kyso-diff-again";
        CK_ATTRIBUTE mk[] = {
                { CKA_CLASS, &data, sizeof(data) },     { CKA_TOKEN, &no, sizeof(no) },
                { CKA_PRIVATE, &yes, sizeof(yes) },     { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_APPLICATION, (void *) app, strlen(app) }, { CKA_VALUE, "v", 1 },
        };
        CK_ATTRIBUTE by_app[] = { { CKA_CLASS, &data, sizeof(data) }, { CKA_APPLICATION, (void *) app, strlen(app) } };
        CK_OBJECT_HANDLE obj[4], found[256], pub, priv, copy, key;
        CK_SESSION_HANDLE other;
        CK_ULONG n;
        CK_RV rv;

#define FIND(l, ...)                                                            \
        do {                                                                    \
                n = 0;                                                          \
                rv = p11t_find_by_label(f, s, (l), found, ELEMENTSOF(found), &n); \
                RU(rv, n, __VA_ARGS__);                                         \
        } while (0)
/* A search with the template t of count attributes. */
#define FIND_T(t, count, ...)                                                           \
        do {                                                                            \
                n = 0;                                                                  \
                rv = p11t_find(f, s, (t), (count), found, ELEMENTSOF(found), &n);       \
                RU(rv, n, __VA_ARGS__);                                                 \
        } while (0)
#define FIND_ALL(...) FIND_T(NULL, 0, __VA_ARGS__)
#define FIND_APP(...) FIND_T(by_app, ELEMENTSOF(by_app), __VA_ARGS__)

        FIND(label, "again: none yet");
        FIND(label, "again: none yet, asked twice");
        FIND_ALL("again: every object");
        FIND_ALL("again: every object, asked twice");
        rv = f->C_CreateObject(s, mk, ELEMENTSOF(mk), &obj[0]);
        R(rv, "again: C_CreateObject(session data object)");
        FIND(label, "again: after C_CreateObject");
        FIND_ALL("again: every object after C_CreateObject");
        mk[1].pValue = &yes;
        rv = f->C_CreateObject(s, mk, ELEMENTSOF(mk), &obj[1]);
        R(rv, "again: C_CreateObject(token data object)");
        FIND(label, "again: after a second C_CreateObject");
        FIND_APP("again: by application");

        CK_ATTRIBUTE rename[] = { { CKA_LABEL, (void *) label2, strlen(label2) } };
        rv = f->C_SetAttributeValue(s, obj[0], rename, 1);
        R(rv, "again: C_SetAttributeValue(CKA_LABEL)");
        FIND(label, "again: old label after C_SetAttributeValue");
        FIND(label2, "again: new label after C_SetAttributeValue");
        rv = f->C_CopyObject(s, obj[0], rename, 1, &copy);
        R(rv, "again: C_CopyObject");
        FIND(label2, "again: after C_CopyObject");
        FIND_APP("again: by application after C_CopyObject");

        rv = p11t_gen_ec(f, s, "P-256", label, false, &pub, &priv);
        R(rv, "again: C_GenerateKeyPair(EC P-256)");
        FIND(label, "again: after C_GenerateKeyPair");
        CK_BYTE aes[16] = { 1, 2, 3 };
        rv = p11t_import_secret(f, s, CKK_AES, aes, sizeof(aes), label, &key);
        R(rv, "again: an AES key made by C_CreateObject");
        FIND(label, "again: after the AES key");
        CK_BYTE wrapped[64];
        CK_ULONG wrapped_len = sizeof(wrapped);
        CK_MECHANISM wrap = { CKM_AES_KEY_WRAP, NULL, 0 };
        CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
        CK_KEY_TYPE aes_type = CKK_AES;
        CK_ATTRIBUTE unwrap_t[] = { { CKA_CLASS, &secret, sizeof(secret) }, { CKA_KEY_TYPE, &aes_type, sizeof(aes_type) },
                                    { CKA_TOKEN, &no, sizeof(no) }, { CKA_LABEL, (void *) label, strlen(label) } };
        rv = f->C_WrapKey(s, &wrap, key, key, wrapped, &wrapped_len);
        R(rv, "again: C_WrapKey(the AES key by itself)");
        rv = f->C_UnwrapKey(s, &wrap, key, wrapped, wrapped_len, unwrap_t, ELEMENTSOF(unwrap_t), &obj[2]);
        R(rv, "again: C_UnwrapKey");
        FIND(label, "again: after C_UnwrapKey");
        CK_BYTE seed[16] = "derivation data";
        CK_KEY_DERIVATION_STRING_DATA sdata = { seed, sizeof(seed) };
        CK_MECHANISM derive = { CKM_AES_ECB_ENCRYPT_DATA, &sdata, sizeof(sdata) };
        CK_OBJECT_HANDLE derived;
        CK_ULONG derived_len = sizeof(aes);
        CK_ATTRIBUTE derive_t[] = { { CKA_CLASS, &secret, sizeof(secret) }, { CKA_KEY_TYPE, &aes_type, sizeof(aes_type) },
                                    { CKA_VALUE_LEN, &derived_len, sizeof(derived_len) },
                                    { CKA_TOKEN, &no, sizeof(no) }, { CKA_LABEL, (void *) label, strlen(label) } };
        rv = f->C_DeriveKey(s, &derive, key, derive_t, ELEMENTSOF(derive_t), &derived);
        R(rv, "again: C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA)");
        FIND(label, "again: after C_DeriveKey");

        rv = f->C_Logout(s);
        R(rv, "again: C_Logout");
        FIND(label, "again: after C_Logout (private objects hidden)");
        rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) sd->pin, strlen(sd->pin));
        R(rv, "again: C_Login");
        FIND(label, "again: after C_Login");

        /* Handles of private objects do not outlive a logout: the token object is found again. */
        FIND_APP("again: by application after C_Login");
        for (CK_ULONG i = 0; i < n; i++) {
                rv = f->C_DestroyObject(s, found[i]);
                R(rv, "again: C_DestroyObject(the application's object %lu)", (unsigned long) i);
        }
        FIND(label, "again: after C_DestroyObject");
        FIND_APP("again: by application after C_DestroyObject");

        rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &other);
        R(rv, "again: C_OpenSession(a second session)");
        rv = f->C_CreateObject(other, mk, ELEMENTSOF(mk), &obj[3]);
        R(rv, "again: C_CreateObject in the second session");
        FIND(label, "again: the second session's object");
        rv = f->C_DestroyObject(other, obj[3]);
        R(rv, "again: C_DestroyObject in the second session");
        mk[1].pValue = &no;
        rv = f->C_CreateObject(other, mk, ELEMENTSOF(mk), &obj[3]);
        R(rv, "again: C_CreateObject(session object) in the second session");
        FIND(label, "again: with the second session's session object");
        rv = f->C_CloseSession(other);
        R(rv, "again: C_CloseSession(the second session)");
        FIND(label, "again: its session object went with it");

        f->C_DestroyObject(s, copy);
        f->C_DestroyObject(s, obj[0]);
        f->C_DestroyObject(s, obj[2]);
        f->C_DestroyObject(s, key);
        f->C_DestroyObject(s, derived);
        f->C_DestroyObject(s, pub);
        f->C_DestroyObject(s, priv);
        FIND(label, "again: all destroyed");
        FIND(label2, "again: all destroyed, new label");
#undef FIND
#undef FIND_T
#undef FIND_ALL
#undef FIND_APP
}

static void seq_rsa(Side *sd, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_OBJECT_HANDLE pub, priv;
        CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };
        CK_BYTE msg[300], sig[512], sig2[512];
        CK_ULONG n, n2;
        CK_RV rv;

        for (size_t i = 0; i < sizeof(msg); i++)
                msg[i] = (CK_BYTE) (i * 7 + 1);
        rv = p11t_gen_rsa(f, s, 2048, "diff-rsa", false, &pub, &priv);
        R(rv, "C_GenerateKeyPair(RSA 2048)");

        CK_ULONG bits = 0, kt = 0, cls = 0;
        CK_BYTE e[8];
        CK_ATTRIBUTE pa[] = { { CKA_MODULUS_BITS, &bits, sizeof(bits) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                              { CKA_CLASS, &cls, sizeof(cls) }, { CKA_PUBLIC_EXPONENT, e, sizeof(e) },
                              { CKA_MODULUS, NULL, 0 } };
        rv = f->C_GetAttributeValue(s, pub, pa, ELEMENTSOF(pa));
        RU(rv, bits, "public key CKA_MODULUS_BITS");
        RU(rv, kt, "public key CKA_KEY_TYPE");
        RU(rv, cls, "public key CKA_CLASS");
        RB(rv, e, pa[3].ulValueLen <= sizeof(e) ? pa[3].ulValueLen : 0, "public key CKA_PUBLIC_EXPONENT");
        RU(rv, pa[4].ulValueLen, "public key CKA_MODULUS length");

        CK_BBOOL sign = 0, sens = 0, extr = 1, never = 0;
        CK_BYTE pe[512];
        CK_ATTRIBUTE sa[] = { { CKA_SIGN, &sign, sizeof(sign) }, { CKA_PRIVATE_EXPONENT, pe, sizeof(pe) },
                              { CKA_SENSITIVE, &sens, sizeof(sens) }, { CKA_PRIME_1, NULL, 0 },
                              { CKA_EXTRACTABLE, &extr, sizeof(extr) },
                              { CKA_NEVER_EXTRACTABLE, &never, sizeof(never) }, { CKA_MODULUS, NULL, 0 } };
        rv = f->C_GetAttributeValue(s, priv, sa, ELEMENTSOF(sa));
        R(rv, "C_GetAttributeValue(private key: sign, private exponent, sensitive, prime1, ...)");
        RU(rv, sign, "  ... CKA_SIGN");
        RU(rv, sa[1].ulValueLen, "  ... CKA_PRIVATE_EXPONENT ulValueLen");
        RU(rv, sens, "  ... CKA_SENSITIVE");
        RU(rv, sa[3].ulValueLen, "  ... CKA_PRIME_1 ulValueLen");
        RU(rv, extr, "  ... CKA_EXTRACTABLE");
        RU(rv, never, "  ... CKA_NEVER_EXTRACTABLE");
        RU(rv, sa[6].ulValueLen, "  ... CKA_MODULUS ulValueLen");
        CK_ATTRIBUTE sb[] = { { CKA_PRIVATE_EXPONENT, NULL, 0 }, { 0x7777UL, NULL, 0 } };
        rv = f->C_GetAttributeValue(s, priv, sb, ELEMENTSOF(sb));
        RU(rv, sb[0].ulValueLen, "C_GetAttributeValue(sensitive + invalid type): sensitive ulValueLen");
        RU(rv, sb[1].ulValueLen, "  ... invalid type ulValueLen");
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE un[] = { { CKA_SENSITIVE, &no, sizeof(no) } };
        rv = f->C_SetAttributeValue(s, priv, un, 1);
        R(rv, "C_SetAttributeValue(CKA_SENSITIVE=false) on a sensitive key");

        n = sizeof(sig);
        rv = f->C_Sign(s, msg, sizeof(msg), sig, &n);
        R(rv, "C_Sign without C_SignInit");
        rv = f->C_SignInit(s, &mech, BOGUS_HANDLE);
        R(rv, "C_SignInit(invalid key handle)");
        rv = f->C_SignInit(s, &mech, pub);
        R(rv, "C_SignInit(public key)");
        rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_AES_CMAC, NULL, 0 }, priv);
        R(rv, "C_SignInit(AES-CMAC with RSA key)");
        rv = f->C_SignInit(s, &mech, priv);
        R(rv, "C_SignInit(SHA256_RSA_PKCS)");
        n = 0;
        rv = f->C_Sign(s, msg, sizeof(msg), NULL, &n);
        RU(rv, n, "C_Sign length query");
        n = 100;
        rv = f->C_Sign(s, msg, sizeof(msg), sig, &n);
        RU(rv, n, "C_Sign into 100 bytes");
        n = sizeof(sig);
        rv = f->C_Sign(s, msg, sizeof(msg), sig, &n);
        RU(rv, n, "C_Sign signature length");
        n2 = sizeof(sig2);
        rv = f->C_Sign(s, msg, sizeof(msg), sig2, &n2);
        R(rv, "C_Sign after the signature was made");

        rv = f->C_SignInit(s, &mech, priv);
        R(rv, "C_SignInit multi-part");
        rv = f->C_SignUpdate(s, msg, 100);
        R(rv, "C_SignUpdate 1");
        rv = f->C_SignUpdate(s, msg + 100, sizeof(msg) - 100);
        R(rv, "C_SignUpdate 2");
        n2 = 0;
        rv = f->C_SignFinal(s, NULL, &n2);
        RU(rv, n2, "C_SignFinal length query");
        n2 = 16;
        rv = f->C_SignFinal(s, sig2, &n2);
        RU(rv, n2, "C_SignFinal into 16 bytes");
        n2 = sizeof(sig2);
        rv = f->C_SignFinal(s, sig2, &n2);
        RU(rv, n2, "C_SignFinal signature length");
        RU(CKR_OK, n == n2 && memcmp(sig, sig2, n) == 0, "multi-part signature equals single-part one");

        rv = f->C_VerifyInit(s, &mech, pub);
        R(rv, "C_VerifyInit");
        rv = f->C_Verify(s, msg, sizeof(msg), sig, n);
        R(rv, "C_Verify(good signature)");
        sig[10] ^= 1;
        rv = f->C_VerifyInit(s, &mech, pub);
        R(rv, "C_VerifyInit");
        rv = f->C_Verify(s, msg, sizeof(msg), sig, n);
        R(rv, "C_Verify(bad signature)");
        rv = f->C_Verify(s, msg, sizeof(msg), sig, n);
        R(rv, "C_Verify after a failed verification");
        rv = f->C_VerifyInit(s, &mech, pub);
        R(rv, "C_VerifyInit");
        rv = f->C_Verify(s, msg, sizeof(msg), sig, 10);
        R(rv, "C_Verify(signature of 10 bytes)");
        rv = f->C_VerifyInit(s, &mech, pub);
        R(rv, "C_VerifyInit multi-part");
        rv = f->C_VerifyUpdate(s, msg, 7);
        R(rv, "C_VerifyUpdate 1");
        rv = f->C_VerifyUpdate(s, msg + 7, sizeof(msg) - 7);
        R(rv, "C_VerifyUpdate 2");
        rv = f->C_VerifyFinal(s, sig2, n2);
        R(rv, "C_VerifyFinal(good signature)");

        /* Raw RSA PKCS#1 v1.5 encryption round trip. */
        CK_MECHANISM pk = { CKM_RSA_PKCS, NULL, 0 };
        CK_BYTE ct[512], pt[512];
        CK_ULONG nct = sizeof(ct), npt;
        rv = f->C_EncryptInit(s, &pk, pub);
        R(rv, "C_EncryptInit(RSA_PKCS)");
        nct = 0;
        rv = f->C_Encrypt(s, msg, 32, NULL, &nct);
        RU(rv, nct, "C_Encrypt length query");
        nct = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 32, ct, &nct);
        RU(rv, nct, "C_Encrypt(RSA_PKCS) ciphertext length");
        rv = f->C_DecryptInit(s, &pk, priv);
        R(rv, "C_DecryptInit(RSA_PKCS)");
        npt = 0;
        rv = f->C_Decrypt(s, ct, nct, NULL, &npt);
        R(rv, "C_Decrypt length query");
        npt = 4;
        rv = f->C_Decrypt(s, ct, nct, pt, &npt);
        R(rv, "C_Decrypt into 4 bytes");
        npt = sizeof(pt);
        rv = f->C_Decrypt(s, ct, nct, pt, &npt);
        RB(rv, pt, rv == CKR_OK ? npt : 0, "C_Decrypt(RSA_PKCS) plaintext");
        rv = f->C_EncryptInit(s, &pk, pub);
        R(rv, "C_EncryptInit(RSA_PKCS)");
        nct = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 250, ct, &nct);
        R(rv, "C_Encrypt(RSA_PKCS, 250 bytes: too long)");
        nct = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 32, ct, &nct);
        R(rv, "C_Encrypt after the too-long input");

        f->C_DestroyObject(s, pub);
        f->C_DestroyObject(s, priv);
}

static void seq_aes(Side *sd, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        static const CK_BYTE kv[16] = { 0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                        0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c };
        CK_BYTE iv[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
        CK_MECHANISM cbcpad = { CKM_AES_CBC_PAD, iv, sizeof(iv) }, ecb = { CKM_AES_ECB, NULL, 0 };
        CK_BYTE msg[45], ct[128], ct2[128], pt[128];
        CK_OBJECT_HANDLE key;
        CK_ULONG n, n2, k;
        CK_RV rv;

        for (size_t i = 0; i < sizeof(msg); i++)
                msg[i] = (CK_BYTE) ('a' + i % 26);
        rv = p11t_import_secret(f, s, CKK_AES, kv, sizeof(kv), "diff-aes", &key);
        R(rv, "C_CreateObject(AES-128 key)");
        CK_BYTE vb[32];
        CK_ATTRIBUTE va[] = { { CKA_VALUE, vb, sizeof(vb) } };
        rv = f->C_GetAttributeValue(s, key, va, 1);
        RB(rv, vb, va[0].ulValueLen <= sizeof(vb) ? va[0].ulValueLen : 0, "AES key CKA_VALUE (extractable, not sensitive)");

        rv = f->C_EncryptInit(s, &(CK_MECHANISM) { CKM_AES_CBC_PAD, iv, 8 }, key);
        R(rv, "C_EncryptInit(AES_CBC_PAD with an 8-byte IV)");
        rv = f->C_EncryptInit(s, &cbcpad, key);
        R(rv, "C_EncryptInit(AES_CBC_PAD)");
        n = 0;
        rv = f->C_Encrypt(s, msg, sizeof(msg), NULL, &n);
        RU(rv, n, "C_Encrypt length query");
        n = 16;
        rv = f->C_Encrypt(s, msg, sizeof(msg), ct, &n);
        RU(rv, n, "C_Encrypt into 16 bytes");
        n = sizeof(ct);
        rv = f->C_Encrypt(s, msg, sizeof(msg), ct, &n);
        RB(rv, ct, rv == CKR_OK ? n : 0, "C_Encrypt(AES_CBC_PAD)");

        rv = f->C_EncryptInit(s, &cbcpad, key);
        R(rv, "C_EncryptInit(AES_CBC_PAD) multi-part");
        n2 = 0;
        k = sizeof(ct2);
        rv = f->C_EncryptUpdate(s, msg, 10, ct2, &k);
        RU(rv, k, "C_EncryptUpdate(10 bytes) output length");
        n2 += k;
        k = 0;
        rv = f->C_EncryptUpdate(s, msg + 10, 30, NULL, &k);
        RU(rv, k, "C_EncryptUpdate(30 bytes) length query");
        k = sizeof(ct2) - n2;
        rv = f->C_EncryptUpdate(s, msg + 10, 30, ct2 + n2, &k);
        RU(rv, k, "C_EncryptUpdate(30 bytes) output length");
        n2 += k;
        k = sizeof(ct2) - n2;
        rv = f->C_EncryptUpdate(s, msg + 40, sizeof(msg) - 40, ct2 + n2, &k);
        RU(rv, k, "C_EncryptUpdate(5 bytes) output length");
        n2 += k;
        k = 0;
        rv = f->C_EncryptFinal(s, NULL, &k);
        RU(rv, k, "C_EncryptFinal length query");
        k = sizeof(ct2) - n2;
        rv = f->C_EncryptFinal(s, ct2 + n2, &k);
        RU(rv, k, "C_EncryptFinal output length");
        n2 += k;
        RB(CKR_OK, ct2, n2, "multi-part AES_CBC_PAD ciphertext");

        rv = f->C_DecryptInit(s, &cbcpad, key);
        R(rv, "C_DecryptInit(AES_CBC_PAD)");
        k = sizeof(pt);
        rv = f->C_Decrypt(s, ct, n, pt, &k);
        RB(rv, pt, rv == CKR_OK ? k : 0, "C_Decrypt(AES_CBC_PAD)");
        rv = f->C_DecryptInit(s, &cbcpad, key);
        R(rv, "C_DecryptInit(AES_CBC_PAD)");
        k = sizeof(pt);
        rv = f->C_Decrypt(s, ct, 20, pt, &k);
        R(rv, "C_Decrypt(20 bytes: not a multiple of the block)");
        k = sizeof(pt);
        rv = f->C_Decrypt(s, ct, n, pt, &k);
        R(rv, "C_Decrypt after that error");

        rv = f->C_EncryptInit(s, &ecb, key);
        R(rv, "C_EncryptInit(AES_ECB)");
        k = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 15, ct, &k);
        R(rv, "C_Encrypt(AES_ECB, 15 bytes)");
        k = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 16, ct, &k);
        R(rv, "C_Encrypt(AES_ECB, 16 bytes) after that error");
        rv = f->C_EncryptInit(s, &ecb, key);
        R(rv, "C_EncryptInit(AES_ECB)");
        k = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 32, ct, &k);
        RB(rv, ct, rv == CKR_OK ? k : 0, "C_Encrypt(AES_ECB, 32 bytes)");

        CK_BYTE gcm_iv[12] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2 };
        CK_BYTE aad[] = "header that is authenticated";
        CK_GCM_PARAMS gp = { .pIv = gcm_iv, .ulIvLen = sizeof(gcm_iv), .ulIvBits = 96, .pAAD = aad,
                             .ulAADLen = sizeof(aad) - 1, .ulTagBits = 128 };
        CK_MECHANISM gcm = { CKM_AES_GCM, &gp, sizeof(gp) };
        rv = f->C_EncryptInit(s, &gcm, key);
        R(rv, "C_EncryptInit(AES_GCM with AAD)");
        k = sizeof(ct);
        rv = f->C_Encrypt(s, msg, sizeof(msg), ct, &k);
        RB(rv, ct, rv == CKR_OK ? k : 0, "C_Encrypt(AES_GCM)");
        n = k;
        rv = f->C_DecryptInit(s, &gcm, key);
        R(rv, "C_DecryptInit(AES_GCM)");
        k = sizeof(pt);
        rv = f->C_Decrypt(s, ct, n, pt, &k);
        RB(rv, pt, rv == CKR_OK ? k : 0, "C_Decrypt(AES_GCM)");
        ct[0] ^= 1;
        rv = f->C_DecryptInit(s, &gcm, key);
        R(rv, "C_DecryptInit(AES_GCM)");
        k = sizeof(pt);
        rv = f->C_Decrypt(s, ct, n, pt, &k);
        R(rv, "C_Decrypt(AES_GCM, tampered ciphertext)");

        rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_AES_CMAC, NULL, 0 }, key);
        R(rv, "C_SignInit(AES_CMAC)");
        k = sizeof(ct);
        rv = f->C_Sign(s, msg, sizeof(msg), ct, &k);
        RB(rv, ct, rv == CKR_OK ? k : 0, "C_Sign(AES_CMAC)");

        rv = f->C_EncryptInit(s, &cbcpad, key);
        R(rv, "C_EncryptInit(AES_CBC_PAD) to be replaced");
        rv = f->C_EncryptInit(s, &ecb, key);
        R(rv, "C_EncryptInit while an encryption is active");
        k = sizeof(ct);
        rv = f->C_Encrypt(s, msg, 32, ct, &k);
        RU(rv, k, "C_Encrypt ends the first operation");
        f->C_DestroyObject(s, key);
}

static void seq_ec_random(Side *sd, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_OBJECT_HANDLE pub, priv;
        CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 };
        CK_BYTE hash[32], sig[256], rnd[64], params[32];
        CK_ULONG n;
        CK_RV rv;

        memset(hash, 0x5a, sizeof(hash));
        rv = p11t_gen_ec(f, s, "P-256", "diff-ec", false, &pub, &priv);
        R(rv, "C_GenerateKeyPair(EC P-256)");
        CK_ATTRIBUTE a[] = { { CKA_EC_PARAMS, params, sizeof(params) }, { CKA_EC_POINT, NULL, 0 } };
        rv = f->C_GetAttributeValue(s, pub, a, ELEMENTSOF(a));
        RB(rv, params, a[0].ulValueLen <= sizeof(params) ? a[0].ulValueLen : 0, "EC public key CKA_EC_PARAMS");
        RU(rv, a[1].ulValueLen, "EC public key CKA_EC_POINT length");
        rv = f->C_SignInit(s, &ecdsa, priv);
        R(rv, "C_SignInit(ECDSA)");
        n = 0;
        if (rv != CKR_OK)
                memset(sig, 0, sizeof(sig));
        rv = f->C_Sign(s, hash, sizeof(hash), NULL, &n);
        RU(rv, n, "C_Sign(ECDSA) length query");
        n = sizeof(sig);
        rv = f->C_Sign(s, hash, sizeof(hash), sig, &n);
        RU(rv, n, "C_Sign(ECDSA) signature length");
        rv = f->C_VerifyInit(s, &ecdsa, pub);
        R(rv, "C_VerifyInit(ECDSA)");
        rv = f->C_Verify(s, hash, sizeof(hash), sig, n);
        R(rv, "C_Verify(ECDSA)");
        f->C_DestroyObject(s, pub);
        f->C_DestroyObject(s, priv);

        n = sizeof(rnd);
        rv = f->C_GenerateRandom(s, rnd, 32);
        R(rv, "C_GenerateRandom(32)");
        rv = f->C_GenerateRandom(s, rnd, 0);
        R(rv, "C_GenerateRandom(0)");
        rv = f->C_SeedRandom(s, rnd, 16);
        R(rv, "C_SeedRandom");
        n = 0;
        rv = f->C_GetOperationState(s, NULL, &n);
        R(rv, "C_GetOperationState");
        rv = f->C_GetFunctionStatus(s);
        R(rv, "C_GetFunctionStatus");
        rv = f->C_CancelFunction(s);
        R(rv, "C_CancelFunction");
}

static void seq_pin_logout(Side *sd, CK_SLOT_ID slot, CK_SESSION_HANDLE s) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        const char *newpin = "7304962815";
        CK_OBJECT_HANDLE pub, priv, found[4];
        CK_ULONG n;
        CK_RV rv;

        rv = f->C_SetPIN(s, (CK_UTF8CHAR_PTR) "000000", 6, (CK_UTF8CHAR_PTR) newpin, strlen(newpin));
        R(rv, "C_SetPIN(wrong old PIN)");
        rv = f->C_SetPIN(s, (CK_UTF8CHAR_PTR) sd->pin, strlen(sd->pin), (CK_UTF8CHAR_PTR) newpin, strlen(newpin));
        R(rv, "C_SetPIN(to a new PIN)");
        rv = f->C_SetPIN(s, (CK_UTF8CHAR_PTR) newpin, strlen(newpin), (CK_UTF8CHAR_PTR) sd->pin, strlen(sd->pin));
        R(rv, "C_SetPIN(back)");
        rv = f->C_InitPIN(s, (CK_UTF8CHAR_PTR) sd->pin, strlen(sd->pin));
        R(rv, "C_InitPIN as user");

        rv = p11t_gen_ec(f, s, "P-256", "diff-private", false, &pub, &priv);
        R(rv, "C_GenerateKeyPair(EC P-256, private key is CKA_PRIVATE)");
        n = 0;
        rv = p11t_find_by_label(f, s, "diff-private", found, ELEMENTSOF(found), &n);
        RU(rv, n, "find by label before logout (private key shown)");
        rv = f->C_Logout(s);
        R(rv, "C_Logout");
        rv = f->C_Logout(s);
        R(rv, "C_Logout again");
        SPEC(CKR_USER_NOT_LOGGED_IN);
        seq_session_info(sd, s, "after C_Logout");
        n = 0;
        rv = p11t_find_by_label(f, s, "diff-private", found, ELEMENTSOF(found), &n);
        RU(rv, n, "find by label after logout (private key hidden)");
        rv = f->C_SignInit(s, &(CK_MECHANISM) { CKM_ECDSA, NULL, 0 }, priv);
        R(rv, "C_SignInit with the private key after logout");
        rv = f->C_GenerateKeyPair(s, &(CK_MECHANISM) { CKM_EC_KEY_PAIR_GEN, NULL, 0 }, NULL, 0, NULL, 0, &pub, &priv);
        R(rv, "C_GenerateKeyPair with empty templates, logged out");

        rv = f->C_CloseAllSessions(slot);
        R(rv, "C_CloseAllSessions");
        rv = f->C_GetSessionInfo(s, &(CK_SESSION_INFO) { 0 });
        R(rv, "C_GetSessionInfo after C_CloseAllSessions");
}

static void run(Side *sd) {
        CK_SLOT_ID slot = 0;
        CK_SESSION_HANDLE s = 0;
        CK_RV rv;

        rv = p11t_initialize(sd->f);
        R(rv, "C_Initialize(CKF_OS_LOCKING_OK)");
        rv = p11t_initialize(sd->f);
        R(rv, "C_Initialize again");
        CK_INFO info;
        memset(&info, 0, sizeof(info));
        rv = sd->f->C_GetInfo(&info);
        R(rv, "C_GetInfo");
        rv = sd->f->C_GetInfo(NULL);
        R(rv, "C_GetInfo(NULL)");

        seq_slots(sd, &slot);
        seq_login(sd, slot, &s);
        seq_digest(sd, s);
        seq_objects(sd, s);
        seq_find_again(sd, slot, s);
        seq_rsa(sd, s);
        seq_aes(sd, s);
        seq_ec_random(sd, s);
        seq_pin_logout(sd, slot, s);

        rv = sd->f->C_Finalize(NULL);
        R(rv, "C_Finalize");
        rv = sd->f->C_Finalize(NULL);
        R(rv, "C_Finalize again");
        rv = sd->f->C_GetSlotList(CK_TRUE, NULL, &(CK_ULONG) { 0 });
        R(rv, "C_GetSlotList after C_Finalize");
}

/* Finds objects labelled label; -1 when the search fails. */
static long count_label(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label) {
        CK_OBJECT_HANDLE found[8];
        CK_ULONG n = 0;
        return p11t_find_by_label(f, s, label, found, ELEMENTSOF(found), &n) == CKR_OK ? (long) n : -1;
}

/*
 * An object written around kysod, straight into the SoftHSM2 store it serves, while a kyso client keeps its
 * session: kysod remembers searches for at most a second (FOUND_CACHE_USEC), so the client finds the object,
 * and stops finding it once it is deleted, within that time, whatever it searched before.
 */
static void seq_around(const Side *kyso, const Side *direct) {
        const char *label = "diff-around-kysod";
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_TOKEN, &yes, sizeof(yes) },
                             { CKA_PRIVATE, &no, sizeof(no) }, { CKA_LABEL, (void *) label, strlen(label) },
                             { CKA_VALUE, "around", 6 } };
        CK_SLOT_ID ks, ds;
        CK_SESSION_HANDLE k = CK_INVALID_HANDLE, d = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE obj;

        p11t_diag("an object written straight into the store, beside a kyso client's remembered search");
        if (!CHECK_OK(p11t_initialize(kyso->f), "kyso: C_Initialize") ||
            !CHECK_OK(p11t_initialize(direct->f), "direct: C_Initialize") ||
            !CHECK_OK(p11t_find_slot(kyso->f, kyso->label, &ks), "kyso: the token's slot") ||
            !CHECK_OK(p11t_find_slot(direct->f, direct->label, &ds), "direct: the token's slot") ||
            !CHECK_OK(kyso->f->C_OpenSession(ks, CKF_SERIAL_SESSION, NULL, NULL, &k), "kyso: C_OpenSession") ||
            !CHECK_OK(p11t_open_login(direct->f, ds, direct->pin, &d), "direct: C_OpenSession + C_Login"))
                goto out;

        CHECK(count_label(kyso->f, k, label) == 0, "kyso finds no \"%s\" yet", label);
        if (!CHECK_OK(direct->f->C_CreateObject(d, t, ELEMENTSOF(t), &obj), "direct: C_CreateObject(token data object)"))
                goto out;
        usleep(1100 * 1000);
        CHECK(count_label(kyso->f, k, label) == 1, "kyso finds it a little over a second later (%ld)",
              count_label(kyso->f, k, label));
        CHECK_OK(direct->f->C_DestroyObject(d, obj), "direct: C_DestroyObject");
        usleep(1100 * 1000);
        CHECK(count_label(kyso->f, k, label) == 0, "kyso no longer finds it a little over a second later (%ld)",
              count_label(kyso->f, k, label));
out:
        if (k != CK_INVALID_HANDLE)
                kyso->f->C_CloseSession(k);
        if (d != CK_INVALID_HANDLE)
                direct->f->C_CloseSession(d);
        kyso->f->C_Finalize(NULL);
        direct->f->C_Finalize(NULL);
}

static void free_side(Side *sd) {
        for (size_t i = 0; i < sd->n; i++)
                free(sd->rec[i].data);
        free(sd->rec);
        sd->rec = NULL;
        sd->n = sd->cap = 0;
}

int main(void) {
        P11Module km, dm;
        Side kyso = { .name = "kyso" }, direct = { .name = "direct" };
        const char *kyso_path = p11t_env("KYSO_MODULE"), *softhsm_path = p11t_env("SOFTHSM_MODULE");

        kyso.label = direct.label = p11t_env("KYSO_TEST_LABEL");
        kyso.pin = direct.pin = p11t_env("KYSO_TEST_PIN");
        kyso.so_pin = direct.so_pin = p11t_env("KYSO_TEST_SO_PIN");
        p11t_env("SOFTHSM2_CONF");

        if (!p11t_load(&km, "kyso", kyso_path) || !p11t_load(&dm, "direct", softhsm_path))
                return p11t_summary();
        kyso.f = km.f;
        direct.f = dm.f;

        p11t_diag("running the sequence through kyso (%s)", kyso_path);
        run(&kyso);
        p11t_diag("running the sequence directly against SoftHSM2 (%s)", softhsm_path);
        run(&direct);
        p11t_diag("comparing %zu direct steps with %zu kyso steps", direct.n, kyso.n);
        compare(&direct, &kyso);
        seq_around(&kyso, &direct);
        free_side(&kyso);
        free_side(&direct);
        return p11t_summary();
}
