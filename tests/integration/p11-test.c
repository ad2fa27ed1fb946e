/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "p11-test.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned n_tests, n_failed;

const char *p11t_env(const char *name) {
        const char *v = getenv(name);
        if (!v || !*v) {
                printf("Bail out! environment variable %s is not set (run under with-kysod.sh)\n", name);
                fflush(stdout);
                exit(99);
        }
        return v;
}

bool p11t_load(P11Module *m, const char *name, const char *path) {
        CK_C_GetFunctionList get;
        CK_RV rv;

        m->name = name;
        m->f = NULL;
        m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!m->dl) {
                p11t_ok(false, "%s: dlopen(%s): %s", name, path, dlerror());
                return false;
        }
        get = (CK_C_GetFunctionList) dlsym(m->dl, "C_GetFunctionList");
        if (!get) {
                p11t_ok(false, "%s: %s has no C_GetFunctionList", name, path);
                return false;
        }
        rv = get(&m->f);
        if (rv != CKR_OK || !m->f) {
                p11t_ok(false, "%s: C_GetFunctionList: %s", name, p11t_rv_name(rv));
                return false;
        }
        return true;
}

void p11t_unload(P11Module *m) {
        if (m->dl)
                dlclose(m->dl);
        m->dl = NULL;
        m->f = NULL;
}

CK_RV p11t_initialize(CK_FUNCTION_LIST_PTR f) {
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        return f->C_Initialize(&args);
}

CK_RV p11t_find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *ret_slot) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);
        CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_OK)
                return rv;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                memset(&ti, 0, sizeof(ti));
                if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                if (!(ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (strcmp(p11t_str(ti.label, sizeof(ti.label)), label) == 0) {
                        *ret_slot = slots[i];
                        return CKR_OK;
                }
        }
        return CKR_TOKEN_NOT_PRESENT;
}

CK_RV p11t_open_login(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *ret_session) {
        CK_SESSION_HANDLE s;
        CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                return rv;
        if (pin) {
                rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin, strlen(pin));
                if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                        f->C_CloseSession(s);
                        return rv;
                }
        }
        *ret_session = s;
        return CKR_OK;
}

CK_RV p11t_gen_rsa(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_ULONG bits, const char *label, bool token,
                   CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv) {
        CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, tok = token ? CK_TRUE : CK_FALSE;
        CK_BYTE e[] = { 1, 0, 1 };
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &tok, sizeof(tok) },         { CKA_MODULUS_BITS, &bits, sizeof(bits) },
                { CKA_PUBLIC_EXPONENT, e, sizeof(e) },    { CKA_VERIFY, &yes, sizeof(yes) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },       { CKA_WRAP, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &tok, sizeof(tok) },      { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },  { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) },    { CKA_UNWRAP, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        return f->C_GenerateKeyPair(s, &mech, pub, ELEMENTSOF(pub), priv, ELEMENTSOF(priv), ret_pub, ret_priv);
}

static const CK_BYTE der_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const CK_BYTE der_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const CK_BYTE der_p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };
static const CK_BYTE der_k256[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a };
static const CK_BYTE der_ed25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
static const CK_BYTE der_ed448[] = { 0x06, 0x03, 0x2b, 0x65, 0x71 };

bool p11t_curve_der(const char *curve, const CK_BYTE **ret, CK_ULONG *ret_len) {
        static const struct {
                const char *name;
                const CK_BYTE *der;
                CK_ULONG len;
        } curves[] = {
                { "P-256", der_p256, sizeof(der_p256) },       { "P-384", der_p384, sizeof(der_p384) },
                { "P-521", der_p521, sizeof(der_p521) },       { "secp256k1", der_k256, sizeof(der_k256) },
                { "Ed25519", der_ed25519, sizeof(der_ed25519) }, { "Ed448", der_ed448, sizeof(der_ed448) },
        };
        for (size_t i = 0; i < ELEMENTSOF(curves); i++)
                if (strcmp(curves[i].name, curve) == 0) {
                        *ret = curves[i].der;
                        *ret_len = curves[i].len;
                        return true;
                }
        return false;
}

CK_RV p11t_gen_ec(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *curve, const char *label, bool token,
                  CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv) {
        const CK_BYTE *der;
        CK_ULONG der_len;
        bool edwards = strncmp(curve, "Ed", 2) == 0;
        CK_MECHANISM mech = { edwards ? CKM_EC_EDWARDS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, tok = token ? CK_TRUE : CK_FALSE;

        if (!p11t_curve_der(curve, &der, &der_len))
                return CKR_CURVE_NOT_SUPPORTED;
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &tok, sizeof(tok) },
                { CKA_EC_PARAMS, (void *) der, der_len },
                { CKA_VERIFY, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &tok, sizeof(tok) },     { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_DERIVE, &yes, sizeof(yes) },    { CKA_LABEL, (void *) label, strlen(label) },
        };
        return f->C_GenerateKeyPair(s, &mech, pub, ELEMENTSOF(pub), priv, ELEMENTSOF(priv), ret_pub, ret_priv);
}

CK_RV p11t_gen_secret(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mtype, CK_KEY_TYPE type,
                      CK_ULONG len, const char *label, CK_OBJECT_HANDLE *ret_key) {
        CK_MECHANISM mech = { mtype, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },       { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_TOKEN, &no, sizeof(no) },         { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) },     { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_VERIFY, &yes, sizeof(yes) },      { CKA_WRAP, &yes, sizeof(yes) },
                { CKA_UNWRAP, &yes, sizeof(yes) },      { CKA_DERIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_VALUE_LEN, &len, sizeof(len) },
        };
        /* DES keys have a fixed length: CKA_VALUE_LEN is not allowed for them. */
        CK_ULONG n = len ? ELEMENTSOF(t) : ELEMENTSOF(t) - 1;
        return f->C_GenerateKey(s, &mech, t, n, ret_key);
}

CK_RV p11t_import_secret(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_KEY_TYPE type, const void *value,
                         CK_ULONG len, const char *label, CK_OBJECT_HANDLE *ret_key) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },       { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_TOKEN, &no, sizeof(no) },         { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) },     { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_VERIFY, &yes, sizeof(yes) },      { CKA_WRAP, &yes, sizeof(yes) },
                { CKA_UNWRAP, &yes, sizeof(yes) },      { CKA_DERIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_VALUE, (void *) value, len },
        };
        return f->C_CreateObject(s, t, ELEMENTSOF(t), ret_key);
}

CK_RV p11t_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *ret,
                CK_ULONG max, CK_ULONG *ret_n) {
        CK_RV rv = f->C_FindObjectsInit(s, tmpl, count);
        if (rv != CKR_OK)
                return rv;
        rv = f->C_FindObjects(s, ret, max, ret_n);
        CK_RV rv2 = f->C_FindObjectsFinal(s);
        return rv != CKR_OK ? rv : rv2;
}

CK_RV p11t_find_by_label(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *ret,
                         CK_ULONG max, CK_ULONG *ret_n) {
        CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *) label, strlen(label) } };
        return p11t_find(f, s, t, 1, ret, max, ret_n);
}

#define N(x) { x, #x }
static const struct {
        CK_RV rv;
        const char *name;
} rv_names[] = {
        N(CKR_OK), N(CKR_CANCEL), N(CKR_HOST_MEMORY), N(CKR_SLOT_ID_INVALID), N(CKR_GENERAL_ERROR),
        N(CKR_FUNCTION_FAILED), N(CKR_ARGUMENTS_BAD), N(CKR_NO_EVENT), N(CKR_NEED_TO_CREATE_THREADS),
        N(CKR_CANT_LOCK), N(CKR_ATTRIBUTE_READ_ONLY), N(CKR_ATTRIBUTE_SENSITIVE), N(CKR_ATTRIBUTE_TYPE_INVALID),
        N(CKR_ATTRIBUTE_VALUE_INVALID), N(CKR_ACTION_PROHIBITED), N(CKR_DATA_INVALID), N(CKR_DATA_LEN_RANGE),
        N(CKR_DEVICE_ERROR), N(CKR_DEVICE_MEMORY), N(CKR_DEVICE_REMOVED), N(CKR_ENCRYPTED_DATA_INVALID),
        N(CKR_ENCRYPTED_DATA_LEN_RANGE), N(CKR_FUNCTION_CANCELED), N(CKR_FUNCTION_NOT_PARALLEL),
        N(CKR_FUNCTION_NOT_SUPPORTED), N(CKR_KEY_HANDLE_INVALID), N(CKR_KEY_SIZE_RANGE),
        N(CKR_KEY_TYPE_INCONSISTENT), N(CKR_KEY_NOT_NEEDED), N(CKR_KEY_CHANGED), N(CKR_KEY_NEEDED),
        N(CKR_KEY_INDIGESTIBLE), N(CKR_KEY_FUNCTION_NOT_PERMITTED), N(CKR_KEY_NOT_WRAPPABLE),
        N(CKR_KEY_UNEXTRACTABLE), N(CKR_MECHANISM_INVALID), N(CKR_MECHANISM_PARAM_INVALID),
        N(CKR_OBJECT_HANDLE_INVALID), N(CKR_OPERATION_ACTIVE), N(CKR_OPERATION_NOT_INITIALIZED),
        N(CKR_PIN_INCORRECT), N(CKR_PIN_INVALID), N(CKR_PIN_LEN_RANGE), N(CKR_PIN_EXPIRED), N(CKR_PIN_LOCKED),
        N(CKR_SESSION_CLOSED), N(CKR_SESSION_COUNT), N(CKR_SESSION_HANDLE_INVALID),
        N(CKR_SESSION_PARALLEL_NOT_SUPPORTED), N(CKR_SESSION_READ_ONLY), N(CKR_SESSION_EXISTS),
        N(CKR_SESSION_READ_ONLY_EXISTS), N(CKR_SESSION_READ_WRITE_SO_EXISTS), N(CKR_SIGNATURE_INVALID),
        N(CKR_SIGNATURE_LEN_RANGE), N(CKR_TEMPLATE_INCOMPLETE), N(CKR_TEMPLATE_INCONSISTENT),
        N(CKR_TOKEN_NOT_PRESENT), N(CKR_TOKEN_NOT_RECOGNIZED), N(CKR_TOKEN_WRITE_PROTECTED),
        N(CKR_UNWRAPPING_KEY_HANDLE_INVALID), N(CKR_UNWRAPPING_KEY_SIZE_RANGE),
        N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT), N(CKR_USER_ALREADY_LOGGED_IN), N(CKR_USER_NOT_LOGGED_IN),
        N(CKR_USER_PIN_NOT_INITIALIZED), N(CKR_USER_TYPE_INVALID), N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
        N(CKR_USER_TOO_MANY_TYPES), N(CKR_WRAPPED_KEY_INVALID), N(CKR_WRAPPED_KEY_LEN_RANGE),
        N(CKR_WRAPPING_KEY_HANDLE_INVALID), N(CKR_WRAPPING_KEY_SIZE_RANGE), N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
        N(CKR_RANDOM_SEED_NOT_SUPPORTED), N(CKR_RANDOM_NO_RNG), N(CKR_DOMAIN_PARAMS_INVALID),
        N(CKR_CURVE_NOT_SUPPORTED), N(CKR_BUFFER_TOO_SMALL), N(CKR_SAVED_STATE_INVALID),
        N(CKR_INFORMATION_SENSITIVE), N(CKR_STATE_UNSAVEABLE), N(CKR_CRYPTOKI_NOT_INITIALIZED),
        N(CKR_CRYPTOKI_ALREADY_INITIALIZED), N(CKR_MUTEX_BAD), N(CKR_MUTEX_NOT_LOCKED),
        N(CKR_NEW_PIN_MODE), N(CKR_NEXT_OTP), N(CKR_EXCEEDED_MAX_ITERATIONS), N(CKR_FIPS_SELF_TEST_FAILED),
        N(CKR_LIBRARY_LOAD_FAILED), N(CKR_PIN_TOO_WEAK), N(CKR_PUBLIC_KEY_INVALID),
        N(CKR_FUNCTION_REJECTED), N(CKR_OPERATION_CANCEL_FAILED), N(CKR_TOKEN_RESOURCE_EXCEEDED),
        N(CKR_VENDOR_DEFINED),
};

static const struct {
        CK_MECHANISM_TYPE m;
        const char *name;
} mech_names[] = {
        N(CKM_RSA_PKCS_KEY_PAIR_GEN), N(CKM_RSA_PKCS), N(CKM_RSA_9796), N(CKM_RSA_X_509), N(CKM_MD5_RSA_PKCS),
        N(CKM_SHA1_RSA_PKCS), N(CKM_RSA_PKCS_OAEP), N(CKM_RSA_PKCS_PSS), N(CKM_SHA1_RSA_PKCS_PSS),
        N(CKM_DSA_KEY_PAIR_GEN), N(CKM_DSA), N(CKM_DSA_SHA1), N(CKM_DSA_SHA224), N(CKM_DSA_SHA256),
        N(CKM_DSA_SHA384), N(CKM_DSA_SHA512), N(CKM_DH_PKCS_KEY_PAIR_GEN), N(CKM_DH_PKCS_DERIVE),
        N(CKM_SHA256_RSA_PKCS), N(CKM_SHA384_RSA_PKCS), N(CKM_SHA512_RSA_PKCS), N(CKM_SHA256_RSA_PKCS_PSS),
        N(CKM_SHA384_RSA_PKCS_PSS), N(CKM_SHA512_RSA_PKCS_PSS), N(CKM_SHA224_RSA_PKCS),
        N(CKM_SHA224_RSA_PKCS_PSS), N(CKM_DES_KEY_GEN), N(CKM_DES_ECB), N(CKM_DES_CBC), N(CKM_DES_CBC_PAD),
        N(CKM_DES2_KEY_GEN), N(CKM_DES3_KEY_GEN), N(CKM_DES3_ECB), N(CKM_DES3_CBC), N(CKM_DES3_CBC_PAD),
        N(CKM_DES3_CMAC), N(CKM_MD5), N(CKM_MD5_HMAC), N(CKM_SHA_1), N(CKM_SHA_1_HMAC), N(CKM_SHA256),
        N(CKM_SHA256_HMAC), N(CKM_SHA224), N(CKM_SHA224_HMAC), N(CKM_SHA384), N(CKM_SHA384_HMAC),
        N(CKM_SHA512), N(CKM_SHA512_HMAC), N(CKM_GENERIC_SECRET_KEY_GEN), N(CKM_CONCATENATE_BASE_AND_KEY),
        N(CKM_CONCATENATE_BASE_AND_DATA), N(CKM_CONCATENATE_DATA_AND_BASE), N(CKM_XOR_BASE_AND_DATA),
        N(CKM_EC_KEY_PAIR_GEN), N(CKM_ECDSA), N(CKM_ECDSA_SHA1), N(CKM_ECDSA_SHA224), N(CKM_ECDSA_SHA256),
        N(CKM_ECDSA_SHA384), N(CKM_ECDSA_SHA512), N(CKM_ECDH1_DERIVE), N(CKM_EC_EDWARDS_KEY_PAIR_GEN),
        N(CKM_EDDSA), N(CKM_AES_KEY_GEN), N(CKM_AES_ECB), N(CKM_AES_CBC), N(CKM_AES_CBC_PAD), N(CKM_AES_CTR),
        N(CKM_AES_GCM), N(CKM_AES_CMAC), N(CKM_AES_KEY_WRAP), N(CKM_AES_KEY_WRAP_PAD),
        N(CKM_DES_ECB_ENCRYPT_DATA), N(CKM_DES_CBC_ENCRYPT_DATA), N(CKM_DES3_ECB_ENCRYPT_DATA),
        N(CKM_DES3_CBC_ENCRYPT_DATA), N(CKM_AES_ECB_ENCRYPT_DATA), N(CKM_AES_CBC_ENCRYPT_DATA),
        N(CKM_DSA_PARAMETER_GEN), N(CKM_DH_PKCS_PARAMETER_GEN), N(CKM_GOSTR3410_KEY_PAIR_GEN),
        N(CKM_GOSTR3410), N(CKM_GOSTR3410_WITH_GOSTR3411), N(CKM_GOSTR3411), N(CKM_GOSTR3411_HMAC),
        N(CKM_GOST28147_KEY_GEN), N(CKM_GOST28147_ECB), N(CKM_GOST28147), N(CKM_GOST28147_MAC),
        N(CKM_GOST28147_KEY_WRAP),
};
#undef N

const char *p11t_rv_name(CK_RV rv) {
        static __thread char buf[4][32];
        static __thread unsigned i;
        for (size_t k = 0; k < ELEMENTSOF(rv_names); k++)
                if (rv_names[k].rv == rv)
                        return rv_names[k].name;
        i = (i + 1) % 4;
        snprintf(buf[i], sizeof(buf[i]), "CKR_0x%lx", (unsigned long) rv);
        return buf[i];
}

const char *p11t_mech_name(CK_MECHANISM_TYPE m) {
        static __thread char buf[4][32];
        static __thread unsigned i;
        for (size_t k = 0; k < ELEMENTSOF(mech_names); k++)
                if (mech_names[k].m == m)
                        return mech_names[k].name;
        i = (i + 1) % 4;
        snprintf(buf[i], sizeof(buf[i]), "CKM_0x%lx", (unsigned long) m);
        return buf[i];
}

const char *p11t_hex(const void *p, size_t n) {
        static __thread char buf[8][80];
        static __thread unsigned i;
        const uint8_t *b = p;
        char *o;
        size_t k;

        i = (i + 1) % 8;
        o = buf[i];
        if (!p)
                return "(null)";
        for (k = 0; k < n && k < 32; k++)
                o += sprintf(o, "%02x", b[k]);
        if (k < n)
                strcpy(o, "...");
        else
                *o = 0;
        return buf[i];
}

const char *p11t_str(const CK_UTF8CHAR *p, size_t n) {
        static __thread char buf[8][72];
        static __thread unsigned i;
        i = (i + 1) % 8;
        if (n > sizeof(buf[i]) - 1)
                n = sizeof(buf[i]) - 1;
        memcpy(buf[i], p, n);
        while (n > 0 && (buf[i][n - 1] == ' ' || buf[i][n - 1] == 0))
                n--;
        buf[i][n] = 0;
        return buf[i];
}

double p11t_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 3, 0))) static void report(bool cond, bool print_ok, const char *fmt, va_list ap) {
        pthread_mutex_lock(&report_lock);
        n_tests++;
        if (!cond)
                n_failed++;
        if (!cond || print_ok) {
                printf("%s %u - ", cond ? "ok" : "not ok", n_tests);
                vprintf(fmt, ap);
                putchar('\n');
                fflush(stdout);
        }
        pthread_mutex_unlock(&report_lock);
}

bool p11t_ok(bool cond, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        report(cond, true, fmt, ap);
        va_end(ap);
        return cond;
}

void p11t_count(bool cond, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        report(cond, false, fmt, ap);
        va_end(ap);
}

void p11t_diag(const char *fmt, ...) {
        va_list ap;
        pthread_mutex_lock(&report_lock);
        fputs("# ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
        pthread_mutex_unlock(&report_lock);
}

unsigned p11t_failures(void) {
        unsigned r;
        pthread_mutex_lock(&report_lock);
        r = n_failed;
        pthread_mutex_unlock(&report_lock);
        return r;
}

int p11t_summary(void) {
        pthread_mutex_lock(&report_lock);
        printf("1..%u\n# %u passed, %u failed\n", n_tests, n_tests - n_failed, n_failed);
        fflush(stdout);
        int r = n_failed == 0 && n_tests > 0 ? 0 : 1;
        pthread_mutex_unlock(&report_lock);
        return r;
}
