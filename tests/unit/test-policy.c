/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The broker's policy decisions, as tables of facts and the decision each must give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kysod-config.h"
#include "policy.h"
#include "wire.h"

static void test_mechanism_parameter(void **state)
{
        static const struct {
                const char *what;
                CK_MECHANISM_TYPE mechanism;
                bool has_parameter;
                size_t struct_size, len;
                CK_RV want;
        } table[] = {
                { "no parameter", CKM_SHA256_RSA_PKCS, false, 0, 0, CKR_OK },
                { "no parameter, unknown mechanism", 0x80001234UL, false, 0, 0, CKR_OK },
                { "PSS structure rebuilt by the codec", CKM_RSA_PKCS_PSS, true, sizeof(CK_RSA_PKCS_PSS_PARAMS),
                  sizeof(CK_RSA_PKCS_PSS_PARAMS), CKR_OK },
                { "PSS with a parameter of another size", CKM_RSA_PKCS_PSS, true, sizeof(CK_RSA_PKCS_PSS_PARAMS), 7,
                  CKR_MECHANISM_PARAM_INVALID },
                { "AES-CBC IV as bytes", CKM_AES_CBC, true, 0, 16, CKR_OK },
                { "AES-CBC-PAD IV as bytes", CKM_AES_CBC_PAD, true, 0, 16, CKR_OK },
                { "AES key wrap with pad (SoftHSM2 value)", 0x210AUL, true, 0, 4, CKR_OK },
                { "DH derive public value as bytes", CKM_DH_PKCS_DERIVE, true, 0, 256, CKR_OK },
                { "DES3-CBC IV as bytes", CKM_DES3_CBC, true, 0, 8, CKR_OK },
                { "unknown mechanism with raw bytes", 0x80001234UL, true, 0, 24, CKR_MECHANISM_PARAM_INVALID },
                { "HKDF (pointer structure unknown to the codec) as raw bytes", 0x402aUL, true, 0, 64,
                  CKR_MECHANISM_PARAM_INVALID },
                { "ECDSA with a stray parameter", CKM_ECDSA, true, 0, 8, CKR_MECHANISM_PARAM_INVALID },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                PolicyDecision d = policy_mechanism_parameter(table[i].mechanism, table[i].has_parameter,
                                                              table[i].struct_size, table[i].len);

                if (d.rv != table[i].want)
                        fail_msg("%s: got 0x%lx, want 0x%lx", table[i].what, d.rv, table[i].want);
                if (d.rv != CKR_OK && !d.reason)
                        fail_msg("%s: a refusal must say why", table[i].what);
        }
}

/* The codec and the policy agree on which mechanisms travel as structures. */
static void test_codec_structures_pass(void **state)
{
        static const CK_MECHANISM_TYPE with_structures[] = {
                CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP, CKM_AES_CTR, CKM_AES_GCM,
                CKM_ECDH1_DERIVE, CKM_AES_CBC_ENCRYPT_DATA, CKM_DES3_ECB_ENCRYPT_DATA, CKM_SHA256_HMAC_GENERAL,
        };

        for (size_t i = 0; i < sizeof(with_structures) / sizeof(with_structures[0]); i++) {
                size_t size = wire_param_struct_size(wire_mechanism_param(with_structures[i]));

                assert_true(size > 0);
                assert_int_equal(policy_mechanism_parameter(with_structures[i], true, size, size).rv, CKR_OK);
        }
}

#define U POLICY_UNSET
#define NONE CK_UNAVAILABLE_INFORMATION

static const KeyFacts sensitive_secret = { .cls = CKO_SECRET_KEY, .sensitive = true, .extractable = true,
                                           .decrypt = false };
static const KeyFacts readable_secret = { .cls = CKO_SECRET_KEY, .sensitive = false, .extractable = true,
                                          .decrypt = true };
static const KeyFacts private_key = { .cls = CKO_PRIVATE_KEY, .sensitive = true, .decrypt = true };
static const KeyFacts data_object = { .cls = CKO_DATA };

static void test_key_template(void **state)
{
        static const struct {
                const char *what;
                KeyOrigin origin;
                CK_OBJECT_CLASS cls;
                KeyTemplate t;
                const KeyFacts *source;
                bool so;
                CK_RV want;
                bool add_sensitive, add_unextractable;
        } table[] = {
                { "private key imported non-sensitive", KEY_ORIGIN_CREATE, CKO_PRIVATE_KEY,
                  { CKO_PRIVATE_KEY, 0, U, U, U }, NULL, false, CKR_ATTRIBUTE_VALUE_INVALID },
                { "private key generated extractable", KEY_ORIGIN_GENERATE, CKO_PRIVATE_KEY, { NONE, 1, 1, U, U },
                  NULL, false, CKR_ATTRIBUTE_VALUE_INVALID },
                { "private key generated, nothing said: kyso adds both", KEY_ORIGIN_GENERATE, CKO_PRIVATE_KEY,
                  { NONE, U, U, U, U }, NULL, false, CKR_OK, true, true },
                { "private key generated sensitive: kyso adds unextractable", KEY_ORIGIN_GENERATE, CKO_PRIVATE_KEY,
                  { NONE, 1, U, U, U }, NULL, false, CKR_OK, false, true },
                { "private key unwrapped extractable", KEY_ORIGIN_UNWRAP, CKO_PRIVATE_KEY,
                  { CKO_PRIVATE_KEY, 1, 1, U, U }, &sensitive_secret, false, CKR_ATTRIBUTE_VALUE_INVALID },
                { "private key made non-sensitive", KEY_ORIGIN_SET, CKO_PRIVATE_KEY, { NONE, 0, U, U, U },
                  &private_key, false, CKR_ATTRIBUTE_READ_ONLY },
                { "private key made extractable", KEY_ORIGIN_SET, CKO_PRIVATE_KEY, { NONE, U, 1, U, U }, &private_key,
                  false, CKR_ATTRIBUTE_READ_ONLY },
                { "private key copied extractable", KEY_ORIGIN_COPY, CKO_PRIVATE_KEY, { NONE, U, 1, U, U },
                  &private_key, false, CKR_ATTRIBUTE_READ_ONLY },
                { "private key label changed", KEY_ORIGIN_SET, CKO_PRIVATE_KEY, { NONE, U, U, U, U }, &private_key,
                  false, CKR_OK },
                { "secret key imported non-sensitive, extractable", KEY_ORIGIN_CREATE, CKO_SECRET_KEY,
                  { CKO_SECRET_KEY, 0, 1, 1, U }, NULL, false, CKR_OK },
                { "secret key generated non-sensitive (pkcs11-tool --keygen)", KEY_ORIGIN_GENERATE, CKO_SECRET_KEY,
                  { NONE, 0, 1, U, U }, NULL, false, CKR_OK },
                { "secret key unwrapped non-sensitive with a sensitive key", KEY_ORIGIN_UNWRAP, CKO_SECRET_KEY,
                  { CKO_SECRET_KEY, 0, 1, U, U }, &sensitive_secret, false, CKR_ATTRIBUTE_VALUE_INVALID },
                { "secret key unwrapped with a private key, nothing said: kyso adds sensitive", KEY_ORIGIN_UNWRAP,
                  CKO_SECRET_KEY, { CKO_SECRET_KEY, U, 1, U, U }, &private_key, false, CKR_OK, true, false },
                { "secret key unwrapped non-sensitive with a readable key", KEY_ORIGIN_UNWRAP, CKO_SECRET_KEY,
                  { CKO_SECRET_KEY, 0, 1, U, U }, &readable_secret, false, CKR_OK },
                { "secret key derived non-sensitive from a sensitive secret", KEY_ORIGIN_DERIVE, CKO_SECRET_KEY,
                  { CKO_SECRET_KEY, 0, U, U, U }, &sensitive_secret, false, CKR_ATTRIBUTE_VALUE_INVALID },
                { "secret key derived non-sensitive from a readable secret", KEY_ORIGIN_DERIVE, CKO_SECRET_KEY,
                  { CKO_SECRET_KEY, 0, U, U, U }, &readable_secret, false, CKR_OK },
                { "ECDH shared secret readable", KEY_ORIGIN_DERIVE, CKO_SECRET_KEY, { CKO_SECRET_KEY, 0, 1, U, U },
                  &private_key, false, CKR_OK },
                { "derived from an unjudgeable key", KEY_ORIGIN_DERIVE, CKO_SECRET_KEY, { NONE, 0, U, U, U }, NULL,
                  false, CKR_ATTRIBUTE_VALUE_INVALID },
                { "sensitive secret made non-sensitive", KEY_ORIGIN_SET, CKO_SECRET_KEY, { NONE, 0, U, U, U },
                  &sensitive_secret, false, CKR_ATTRIBUTE_READ_ONLY },
                { "sensitive secret copied non-sensitive", KEY_ORIGIN_COPY, CKO_SECRET_KEY, { NONE, 0, U, U, U },
                  &sensitive_secret, false, CKR_ATTRIBUTE_READ_ONLY },
                { "unextractable secret made extractable", KEY_ORIGIN_SET, CKO_SECRET_KEY, { NONE, U, 1, U, U },
                  &private_key /* unextractable */, false, CKR_ATTRIBUTE_READ_ONLY },
                { "sensitive non-decrypting secret made to decrypt (Clulow)", KEY_ORIGIN_SET, CKO_SECRET_KEY,
                  { NONE, U, U, 1, U }, &sensitive_secret, false, CKR_ATTRIBUTE_READ_ONLY },
                { "sensitive non-decrypting secret copied to decrypt (Clulow)", KEY_ORIGIN_COPY, CKO_SECRET_KEY,
                  { NONE, U, U, 1, U }, &sensitive_secret, false, CKR_ATTRIBUTE_READ_ONLY },
                { "readable secret made to decrypt", KEY_ORIGIN_SET, CKO_SECRET_KEY, { NONE, U, U, 1, U },
                  &readable_secret, false, CKR_OK },
                { "readable secret made sensitive", KEY_ORIGIN_SET, CKO_SECRET_KEY, { NONE, 1, U, U, U },
                  &readable_secret, false, CKR_OK },
                { "CKA_TRUSTED by a user", KEY_ORIGIN_SET, CKO_PUBLIC_KEY, { NONE, U, U, U, 1 }, &data_object, false,
                  CKR_ATTRIBUTE_READ_ONLY },
                { "CKA_TRUSTED by the SO", KEY_ORIGIN_SET, CKO_PUBLIC_KEY, { NONE, U, U, U, 1 }, &data_object, true,
                  CKR_OK },
                { "data object with CKA_SENSITIVE=FALSE", KEY_ORIGIN_CREATE, CKO_DATA, { CKO_DATA, 0, 1, U, U }, NULL,
                  false, CKR_OK },
                { "public key template of a key pair", KEY_ORIGIN_GENERATE, CKO_PUBLIC_KEY, { NONE, U, U, U, U }, NULL,
                  false, CKR_OK },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                KeyTemplateAdditions add;
                PolicyDecision d = policy_key_template(table[i].origin, table[i].cls, &table[i].t, table[i].source,
                                                       table[i].so, &add);

                if (d.rv != table[i].want)
                        fail_msg("%s: got 0x%lx, want 0x%lx", table[i].what, d.rv, table[i].want);
                if (d.rv != CKR_OK && !d.reason)
                        fail_msg("%s: a refusal must say why", table[i].what);
                if (d.rv == CKR_OK &&
                    (add.sensitive != table[i].add_sensitive || add.unextractable != table[i].add_unextractable))
                        fail_msg("%s: additions %d/%d, want %d/%d", table[i].what, add.sensitive, add.unextractable,
                                 table[i].add_sensitive, table[i].add_unextractable);
        }
}

static void test_key_template_read(void **state)
{
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
        CK_ULONG wide = 1;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },       { CKA_SENSITIVE, &no, sizeof(no) },
                { CKA_EXTRACTABLE, &wide, sizeof(wide) }, /* wrong size: counts as absent */
                { CKA_DECRYPT, &yes, sizeof(yes) },     { CKA_TRUSTED, NULL, 1 },
        };
        KeyTemplate r;

        policy_key_template_read(t, sizeof(t) / sizeof(t[0]), &r);
        assert_int_equal(r.cls, CKO_SECRET_KEY);
        assert_int_equal(r.sensitive, 0);
        assert_int_equal(r.extractable, POLICY_UNSET);
        assert_int_equal(r.decrypt, 1);
        assert_int_equal(r.trusted, POLICY_UNSET);
        policy_key_template_read(NULL, 3, &r);
        assert_int_equal(r.cls, CK_UNAVAILABLE_INFORMATION);
}

static void test_key_created(void **state)
{
        KeyFacts p = private_key, s = readable_secret;

        assert_int_equal(policy_key_created(KEY_ORIGIN_GENERATE, &p, NULL).rv, CKR_OK);
        p.extractable = true;
        assert_int_equal(policy_key_created(KEY_ORIGIN_GENERATE, &p, NULL).rv, CKR_ATTRIBUTE_VALUE_INVALID);
        p = private_key;
        p.sensitive = false;
        assert_int_equal(policy_key_created(KEY_ORIGIN_CREATE, &p, NULL).rv, CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(policy_key_created(KEY_ORIGIN_CREATE, &s, NULL).rv, CKR_OK);
        assert_int_equal(policy_key_created(KEY_ORIGIN_UNWRAP, &s, &readable_secret).rv, CKR_OK);
        assert_int_equal(policy_key_created(KEY_ORIGIN_UNWRAP, &s, &private_key).rv, CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(policy_key_created(KEY_ORIGIN_DERIVE, &s, &sensitive_secret).rv,
                         CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(policy_key_created(KEY_ORIGIN_DERIVE, &s, &private_key).rv, CKR_OK);
}

static void test_wrap(void **state)
{
        static const KeyFacts good_kek = { .cls = CKO_SECRET_KEY, .sensitive = true, .local = true,
                                           .always_sensitive = true, .never_extractable = true, .decrypt = false };
        KeyFacts kek_decrypts = good_kek, kek_imported = good_kek, kek_was_extractable = good_kek,
                 kek_was_readable = good_kek, public_key = { .cls = CKO_PUBLIC_KEY, .local = true },
                 trusted_public = { .cls = CKO_PUBLIC_KEY, .trusted = true }, extractable_private = private_key;
        const struct {
                const char *what;
                const KeyFacts *wrapping, *key;
                CK_RV want;
        } table[] = {
                { "sensitive key under a local, never-readable, non-decrypting key", &good_kek, &sensitive_secret,
                  CKR_OK },
                { "sensitive key under a key that can decrypt (Clulow)", &kek_decrypts, &sensitive_secret,
                  CKR_KEY_NOT_WRAPPABLE },
                { "sensitive key under an imported key", &kek_imported, &sensitive_secret, CKR_KEY_NOT_WRAPPABLE },
                { "sensitive key under a key once extractable", &kek_was_extractable, &sensitive_secret,
                  CKR_KEY_NOT_WRAPPABLE },
                { "sensitive key under a key once readable", &kek_was_readable, &sensitive_secret,
                  CKR_KEY_NOT_WRAPPABLE },
                { "sensitive key under a public key", &public_key, &sensitive_secret, CKR_KEY_NOT_WRAPPABLE },
                { "sensitive key under a trusted public key", &trusted_public, &sensitive_secret, CKR_OK },
                { "readable key under anything", &public_key, &readable_secret, CKR_OK },
                { "private key, even one the backend calls extractable", &trusted_public, &extractable_private,
                  CKR_KEY_UNEXTRACTABLE },
        };

        kek_decrypts.decrypt = true;
        kek_imported.local = false;
        kek_was_extractable.never_extractable = false;
        kek_was_readable.always_sensitive = false;
        extractable_private.extractable = true;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                PolicyDecision d = policy_wrap(table[i].wrapping, table[i].key);

                if (d.rv != table[i].want)
                        fail_msg("%s: got 0x%lx, want 0x%lx", table[i].what, d.rv, table[i].want);
                if (d.rv != CKR_OK && !d.reason)
                        fail_msg("%s: a refusal must say why", table[i].what);
        }
}

static void test_attribute_read(void **state)
{
        KeyFacts unextractable = readable_secret, unknown = policy_key_facts_unknown(CKO_SECRET_KEY),
                 backend_says_readable_private = private_key;
        const struct {
                const char *what;
                const KeyFacts *o;
                CK_ATTRIBUTE_TYPE type;
                CK_RV want;
        } table[] = {
                { "CKA_VALUE of a readable secret", &readable_secret, CKA_VALUE, CKR_OK },
                { "CKA_VALUE of a sensitive secret", &sensitive_secret, CKA_VALUE, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_VALUE of an unextractable secret", &unextractable, CKA_VALUE, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_VALUE of an unjudgeable key", &unknown, CKA_VALUE, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_LABEL of a sensitive secret", &sensitive_secret, CKA_LABEL, CKR_OK },
                { "CKA_PRIVATE_EXPONENT", &private_key, CKA_PRIVATE_EXPONENT, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_PRIME_1", &private_key, CKA_PRIME_1, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_PRIME_2", &private_key, CKA_PRIME_2, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_EXPONENT_1", &private_key, CKA_EXPONENT_1, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_EXPONENT_2", &private_key, CKA_EXPONENT_2, CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_COEFFICIENT", &private_key, CKA_COEFFICIENT, CKR_ATTRIBUTE_SENSITIVE },
                { "EC private CKA_VALUE the backend calls readable", &backend_says_readable_private, CKA_VALUE,
                  CKR_ATTRIBUTE_SENSITIVE },
                { "CKA_MODULUS of a private key", &private_key, CKA_MODULUS, CKR_OK },
                { "CKA_VALUE of a data object", &data_object, CKA_VALUE, CKR_OK },
        };

        unextractable.extractable = false;
        backend_says_readable_private.sensitive = false;
        backend_says_readable_private.extractable = true;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                PolicyDecision d = policy_attribute_read(table[i].o, table[i].type);

                if (d.rv != table[i].want)
                        fail_msg("%s: got 0x%lx, want 0x%lx", table[i].what, d.rv, table[i].want);
        }
}

static void pad(CK_UTF8CHAR *dst, size_t n, const char *s)
{
        memset(dst, ' ', n);
        memcpy(dst, s, strlen(s));
}

static void test_token_class(void **state)
{
        TokenClass classes[] = {
                { .name = "gov", .match_manufacturer = "Bit4id*", .match_label = "VGCA*", .deny_so_login = true },
                { .name = "test", .match_label = "kyso-test", .deny_init_token = true, .deny_init_pin = true,
                  .deny_so_login = true, .deny_key_generation = true },
                { .name = "softhsm", .match_model = "SoftHSM v2" },
        };
        const struct {
                const char *manufacturer, *model, *label;
                int want;
        } table[] = {
                { "Bit4id srl", "TokenME", "VGCA user", 0 },
                { "Bit4id srl", "TokenME", "other", -1 },
                { "SoftHSM project", "SoftHSM v2", "kyso-test", 1 },
                { "SoftHSM project", "SoftHSM v2", "kyso-test-2", 2 },
                { "SoftHSM project", "SoftHSM v3", "kyso-test-2", -1 },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                CK_TOKEN_INFO ti;
                int c;

                memset(&ti, 0, sizeof(ti));
                pad(ti.manufacturerID, sizeof(ti.manufacturerID), table[i].manufacturer);
                pad(ti.model, sizeof(ti.model), table[i].model);
                pad(ti.label, sizeof(ti.label), table[i].label);
                c = policy_token_class(classes, sizeof(classes) / sizeof(classes[0]), &ti);
                if (c != table[i].want)
                        fail_msg("%s/%s/%s: class %d, want %d", table[i].manufacturer, table[i].model, table[i].label,
                                 c, table[i].want);
        }

        for (int op = 0; op < _TOKEN_OP_MAX; op++) {
                assert_int_equal(policy_token_operation(NULL, op).rv, CKR_OK);
                assert_int_equal(policy_token_operation(&classes[1], op).rv, CKR_FUNCTION_REJECTED);
                assert_int_equal(policy_token_operation(&classes[2], op).rv, CKR_OK);
        }
        assert_int_equal(policy_token_operation(&classes[0], TOKEN_OP_SO_LOGIN).rv, CKR_FUNCTION_REJECTED);
        assert_int_equal(policy_token_operation(&classes[0], TOKEN_OP_KEY_GENERATION).rv, CKR_OK);
}

static void test_session_open(void **state)
{
        assert_int_equal(policy_session_open(0, 0).rv, CKR_OK);
        assert_int_equal(policy_session_open(100000, 0).rv, CKR_OK);
        assert_int_equal(policy_session_open(3, 4).rv, CKR_OK);
        assert_int_equal(policy_session_open(4, 4).rv, CKR_SESSION_COUNT);
        assert_non_null(policy_session_open(5, 4).reason);
}

static void test_pin_tries(void **state)
{
        static const struct {
                const char *what;
                unsigned failures;
                CK_FLAGS token;
                CK_RV want;
                CK_FLAGS shown;
        } table[] = {
                { "no wrong PIN", 0, CKF_TOKEN_INITIALIZED, CKR_OK, CKF_TOKEN_INITIALIZED },
                { "one wrong", 1, 0, CKR_OK, CKF_USER_PIN_COUNT_LOW },
                { "two wrong: the next is the last", 2, 0, CKR_OK, CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY },
                { "three wrong: stop", 3, 0, CKR_PIN_LOCKED, CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY },
                { "token count low, one wrong: last", 1, CKF_USER_PIN_COUNT_LOW, CKR_OK,
                  CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY },
                { "token count low, two wrong: stop", 2, CKF_USER_PIN_COUNT_LOW, CKR_PIN_LOCKED,
                  CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY },
                { "token final try, none wrong", 0, CKF_USER_PIN_FINAL_TRY, CKR_OK, CKF_USER_PIN_FINAL_TRY },
                { "token final try, one wrong: stop", 1, CKF_USER_PIN_FINAL_TRY, CKR_PIN_LOCKED,
                  CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY },
                { "token locked", 0, CKF_USER_PIN_LOCKED, CKR_PIN_LOCKED, CKF_USER_PIN_LOCKED },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                PolicyDecision d = policy_pin_check(table[i].failures, table[i].token);
                CK_FLAGS f = policy_pin_flags(table[i].token, table[i].failures);

                if (d.rv != table[i].want)
                        fail_msg("%s: got 0x%lx, want 0x%lx", table[i].what, d.rv, table[i].want);
                if (f != table[i].shown)
                        fail_msg("%s: flags 0x%lx, want 0x%lx", table[i].what, f, table[i].shown);
                /* kyso never reports a lock of its own */
                if ((f & CKF_USER_PIN_LOCKED) && !(table[i].token & CKF_USER_PIN_LOCKED))
                        fail_msg("%s: CKF_USER_PIN_LOCKED invented", table[i].what);
        }
}

static void test_custody(void **state)
{
        enum { T0 = 1790000000, DAY = 86400 };
        static const struct {
                const char *what;
                CustodyFacts f;
                CK_RV want;
                int64_t want_recheck;
        } table[] = {
                { "no record, unknown tokens denied", { .now = T0 }, CKR_TOKEN_NOT_RECOGNIZED, POLICY_TIME_NEVER },
                { "no record, unknown tokens allowed", { .now = T0, .unknown_allowed = true }, CKR_OK,
                  POLICY_TIME_NEVER },
                { "holder, active, open-ended", { true, CUSTODY_STATE_ACTIVE, true, T0 - DAY, 0, T0, false }, CKR_OK,
                  POLICY_TIME_NEVER },
                { "holder, active, until tomorrow: recheck then",
                  { true, CUSTODY_STATE_ACTIVE, true, T0 - DAY, T0 + DAY, T0, false }, CKR_OK, T0 + DAY },
                { "holder, the last second of the window", { true, CUSTODY_STATE_ACTIVE, true, T0 - DAY, T0 + 1, T0 },
                  CKR_OK, T0 + 1 },
                { "holder, window ended at this second", { true, CUSTODY_STATE_ACTIVE, true, T0 - DAY, T0, T0 },
                  CKR_TOKEN_NOT_RECOGNIZED, POLICY_TIME_NEVER },
                { "holder, window not open yet: recheck when it opens",
                  { true, CUSTODY_STATE_ACTIVE, true, T0 + 60, 0, T0 }, CKR_TOKEN_NOT_RECOGNIZED, T0 + 60 },
                { "not the holder", { true, CUSTODY_STATE_ACTIVE, false, T0 - DAY, 0, T0 }, CKR_TOKEN_NOT_RECOGNIZED,
                  POLICY_TIME_NEVER },
                { "not the holder, unknown tokens allowed does not matter",
                  { true, CUSTODY_STATE_ACTIVE, false, T0 - DAY, 0, T0, true }, CKR_TOKEN_NOT_RECOGNIZED,
                  POLICY_TIME_NEVER },
                { "holder, lost", { true, CUSTODY_STATE_LOST, true, T0 - DAY, 0, T0 }, CKR_TOKEN_NOT_RECOGNIZED,
                  POLICY_TIME_NEVER },
                { "holder, revoked", { true, CUSTODY_STATE_REVOKED, true, T0 - DAY, 0, T0 }, CKR_TOKEN_NOT_RECOGNIZED,
                  POLICY_TIME_NEVER },
                { "holder, returned", { true, CUSTODY_STATE_RETURNED, true, T0 - DAY, 0, T0 },
                  CKR_TOKEN_NOT_RECOGNIZED, POLICY_TIME_NEVER },
                { "holder, locked", { true, CUSTODY_STATE_LOCKED, true, T0 - DAY, 0, T0 }, CKR_TOKEN_NOT_RECOGNIZED,
                  POLICY_TIME_NEVER },
                { "returned token, unknown tokens allowed: still refused",
                  { true, CUSTODY_STATE_RETURNED, true, T0 - DAY, 0, T0, true }, CKR_TOKEN_NOT_RECOGNIZED,
                  POLICY_TIME_NEVER },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                int64_t recheck = 42;
                PolicyDecision d = policy_custody(&table[i].f, &recheck);

                if (d.rv != table[i].want)
                        fail_msg("%s: got 0x%lx, want 0x%lx", table[i].what, d.rv, table[i].want);
                if (d.rv != CKR_OK && !d.reason)
                        fail_msg("%s: a refusal must say why", table[i].what);
                if (recheck != table[i].want_recheck)
                        fail_msg("%s: recheck at %lld, want %lld", table[i].what, (long long) recheck,
                                 (long long) table[i].want_recheck);
        }
}

static void test_custody_transitions(void **state)
{
        enum { NO_RECORD = -1 };
        /* Rows: the current state (NO_RECORD: no record); columns: assign, handover, lost, revoke, return. */
        static const struct {
                int current;
                bool allowed[_CUSTODY_OP_MAX];
        } table[] = {
                { NO_RECORD, { true, false, false, false, false } },
                { CUSTODY_STATE_ACTIVE, { false, true, true, true, true } },
                { CUSTODY_STATE_LOST, { false, false, false, true, true } },
                { CUSTODY_STATE_REVOKED, { true, false, false, false, false } },
                { CUSTODY_STATE_RETURNED, { true, false, false, true, false } },
                { CUSTODY_STATE_LOCKED, { false, false, true, true, true } },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                for (int op = 0; op < _CUSTODY_OP_MAX; op++) {
                        bool has = table[i].current != NO_RECORD;
                        const char *why = policy_custody_transition(has, has ? (CustodyState) table[i].current : 0,
                                                                    (CustodyOp) op);

                        if ((why == NULL) != table[i].allowed[op])
                                fail_msg("state %d, op %d: got %s, want %s", table[i].current, op,
                                         why ? why : "allowed", table[i].allowed[op] ? "allowed" : "refused");
                }
        assert_int_equal(policy_custody_op_state(CUSTODY_OP_REPORT_LOST), CUSTODY_STATE_LOST);
        assert_int_equal(policy_custody_op_state(CUSTODY_OP_REVOKE), CUSTODY_STATE_REVOKED);
        assert_int_equal(policy_custody_op_state(CUSTODY_OP_RETURN), CUSTODY_STATE_RETURNED);
        assert_int_equal(policy_custody_op_state(CUSTODY_OP_HANDOVER), CUSTODY_STATE_ACTIVE);
}

static void test_holder_valid(void **state)
{
        static const struct {
                const char *holder;
                bool valid;
        } table[] = {
                { "nguyenvana", true },  { "@vanthu", true },     { "_kyso", true },   { "user-1.x", true },
                { "machine$", true },    { "", false },           { "@", false },      { "1abc", false },
                { "a b", false },        { "@@g", false },        { "a/b", false },    { "a:b", false },
                { "an@example.gov.vn", true }, { "@clerks@example.gov.vn", true }, { "ma$chine", false },
                { "Đức", false },        { "a\n", false },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (policy_holder_valid(table[i].holder) != table[i].valid)
                        fail_msg("holder \"%s\": want %s", table[i].holder, table[i].valid ? "valid" : "invalid");
        assert_false(policy_holder_valid(NULL));

        char name[300];

        memset(name, 'a', sizeof(name));
        name[255] = '\0';
        assert_true(policy_holder_valid(name));
        name[255] = 'a';
        name[256] = '\0';
        assert_false(policy_holder_valid(name));
}

static void test_pin_quality(void **state)
{
        static const struct {
                const char *pin, *old;
                unsigned min;
                CK_RV want;
        } table[] = {
                { "7294061583", NULL, 8, CKR_OK },
                { "7294061583", "4815162342", 8, CKR_OK },
                { "Tr4ng-Ti3n", NULL, 8, CKR_OK },
                { "52917364", NULL, 8, CKR_OK },
                { "1234567", NULL, 8, CKR_PIN_LEN_RANGE },
                { "", NULL, 0, CKR_PIN_LEN_RANGE },
                { "7294", NULL, 4, CKR_OK },
                { "00000000", NULL, 8, CKR_PIN_INVALID },
                { "aaaaaaaaaa", NULL, 8, CKR_PIN_INVALID },
                { "12345678", NULL, 8, CKR_PIN_INVALID },
                { "87654321", NULL, 8, CKR_PIN_INVALID },
                { "90123456", NULL, 8, CKR_PIN_INVALID },
                { "3210987654", NULL, 8, CKR_PIN_INVALID },
                { "abcdefgh", NULL, 8, CKR_PIN_INVALID },
                { "HGFEDCBA", NULL, 8, CKR_PIN_INVALID },
                { "1234", NULL, 4, CKR_PIN_INVALID },
                { "88888888", NULL, 8, CKR_PIN_INVALID },
                { "PassWord", NULL, 8, CKR_PIN_INVALID },
                { "12341234", NULL, 8, CKR_PIN_INVALID },
                { "4815162342", "4815162342", 8, CKR_PIN_INVALID },
                { "12345679", NULL, 8, CKR_OK },
                { "abcdefgH", NULL, 8, CKR_OK },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                PolicyDecision d = policy_pin_quality((const uint8_t *) table[i].pin, strlen(table[i].pin),
                                                      (const uint8_t *) table[i].old,
                                                      table[i].old ? strlen(table[i].old) : 0, table[i].min);

                if (d.rv != table[i].want)
                        fail_msg("\"%s\" (old \"%s\", min %u): got 0x%lx, want 0x%lx", table[i].pin,
                                 table[i].old ?: "", table[i].min, d.rv, table[i].want);
                if (d.rv != CKR_OK && (!d.reason || (table[i].pin[0] && strstr(d.reason, table[i].pin))))
                        fail_msg("\"%s\": a refusal must say why, without the PIN", table[i].pin);
        }
}

static void test_pin_age(void **state)
{
        enum { T0 = 1790000000, DAY = 86400 };
        static const struct {
                const char *what;
                PinFacts f;
                PinState state;
                int64_t due;
                CK_RV login;
                bool flag;
        } table[] = {
                { "changed 10 days ago", { T0 - 10 * DAY, T0 - 400 * DAY, T0, 180, 14, PIN_MODE_ENFORCE },
                  PIN_STATE_OK, T0 + 170 * DAY, CKR_OK, false },
                { "never changed, assigned 10 days ago: counts from the assignment",
                  { 0, T0 - 10 * DAY, T0, 180, 14, PIN_MODE_ENFORCE }, PIN_STATE_OK, T0 + 170 * DAY, CKR_OK, false },
                { "neither: due now, enforced", { 0, 0, T0, 180, 14, PIN_MODE_ENFORCE }, PIN_STATE_EXPIRED, 0,
                  CKR_PIN_EXPIRED, true },
                { "neither: due now, warn mode", { 0, 0, T0, 180, 14, PIN_MODE_WARN }, PIN_STATE_EXPIRED, 0, CKR_OK,
                  false },
                { "13 days before due: expiring", { T0 - 167 * DAY, 0, T0, 180, 14, PIN_MODE_ENFORCE },
                  PIN_STATE_EXPIRING, T0 + 13 * DAY, CKR_OK, false },
                { "exactly 14 days before due: expiring", { T0 - 166 * DAY, 0, T0, 180, 14, PIN_MODE_ENFORCE },
                  PIN_STATE_EXPIRING, T0 + 14 * DAY, CKR_OK, false },
                { "a second before the window", { T0 - 166 * DAY + 1, 0, T0, 180, 14, PIN_MODE_ENFORCE },
                  PIN_STATE_OK, T0 + 14 * DAY + 1, CKR_OK, false },
                { "due this second, enforced", { T0 - 180 * DAY, 0, T0, 180, 14, PIN_MODE_ENFORCE },
                  PIN_STATE_EXPIRED, T0, CKR_PIN_EXPIRED, true },
                { "a second before due", { T0 - 180 * DAY + 1, 0, T0, 180, 14, PIN_MODE_ENFORCE },
                  PIN_STATE_EXPIRING, T0 + 1, CKR_OK, false },
                { "overdue, warn mode", { T0 - 200 * DAY, 0, T0, 180, 14, PIN_MODE_WARN }, PIN_STATE_EXPIRED,
                  T0 - 20 * DAY, CKR_OK, false },
                { "handover: change required in warn mode too",
                  { T0 - DAY, T0 - DAY, T0, 180, 14, PIN_MODE_WARN, true }, PIN_STATE_CHANGE_REQUIRED,
                  T0 + 179 * DAY, CKR_PIN_EXPIRED, true },
                { "token says count low", { T0 - DAY, 0, T0, 180, 14, PIN_MODE_ENFORCE, false, CKF_USER_PIN_COUNT_LOW },
                  PIN_STATE_COUNT_LOW, T0 + 179 * DAY, CKR_OK, false },
                { "final try outranks expiring",
                  { T0 - 170 * DAY, 0, T0, 180, 14, PIN_MODE_ENFORCE, false,
                    CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY },
                  PIN_STATE_FINAL_TRY, T0 + 10 * DAY, CKR_OK, false },
                { "locked outranks expired; the token answers the login",
                  { T0 - 400 * DAY, 0, T0, 180, 14, PIN_MODE_WARN, false, CKF_USER_PIN_LOCKED }, PIN_STATE_LOCKED,
                  T0 - 220 * DAY, CKR_OK, false },
                { "30-day policy for a kind", { T0 - 31 * DAY, 0, T0, 30, 7, PIN_MODE_ENFORCE }, PIN_STATE_EXPIRED,
                  T0 - DAY, CKR_PIN_EXPIRED, true },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                PinVerdict v = policy_pin_age(&table[i].f);

                if (v.state != table[i].state)
                        fail_msg("%s: state %s, want %s", table[i].what, pin_state_to_string(v.state),
                                 pin_state_to_string(table[i].state));
                if (v.due_at != table[i].due)
                        fail_msg("%s: due %lld, want %lld", table[i].what, (long long) v.due_at,
                                 (long long) table[i].due);
                if (v.login_rv != table[i].login)
                        fail_msg("%s: login 0x%lx, want 0x%lx", table[i].what, v.login_rv, table[i].login);
                if (v.to_be_changed != table[i].flag)
                        fail_msg("%s: CKF_USER_PIN_TO_BE_CHANGED %d, want %d", table[i].what, v.to_be_changed,
                                 table[i].flag);
                if (v.state != PIN_STATE_OK && v.state != PIN_STATE_COUNT_LOW && v.state != PIN_STATE_FINAL_TRY &&
                    v.state != PIN_STATE_LOCKED && !v.reason)
                        fail_msg("%s: no reason", table[i].what);
        }
        for (int s = 0; s < _PIN_STATE_MAX; s++)
                assert_non_null(pin_state_to_string((PinState) s));
        assert_int_equal(pin_mode_from_string("enforce"), PIN_MODE_ENFORCE);
        assert_int_equal(pin_mode_from_string("warn"), PIN_MODE_WARN);
        assert_int_equal(pin_mode_from_string("strict"), _PIN_MODE_INVALID);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mechanism_parameter),
                cmocka_unit_test(test_codec_structures_pass),
                cmocka_unit_test(test_key_template),
                cmocka_unit_test(test_key_template_read),
                cmocka_unit_test(test_key_created),
                cmocka_unit_test(test_wrap),
                cmocka_unit_test(test_attribute_read),
                cmocka_unit_test(test_token_class),
                cmocka_unit_test(test_session_open),
                cmocka_unit_test(test_pin_tries),
                cmocka_unit_test(test_custody),
                cmocka_unit_test(test_custody_transitions),
                cmocka_unit_test(test_holder_valid),
                cmocka_unit_test(test_pin_quality),
                cmocka_unit_test(test_pin_age),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
