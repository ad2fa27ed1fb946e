/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The broker's policy decisions, as tables of facts and the decision each must give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mechanism_parameter),
                cmocka_unit_test(test_codec_structures_pass),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
