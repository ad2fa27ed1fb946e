/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "policy.h"

/* Mechanisms whose parameter is a plain byte string (IV, nonce, public value, OID). */
static bool parameter_is_byte_string(CK_MECHANISM_TYPE m)
{
        switch (m) {
        case CKM_AES_CBC:
        case CKM_AES_CBC_PAD:
        case CKM_AES_OFB:
        case CKM_AES_CFB8:
        case CKM_AES_CFB64:
        case CKM_AES_CFB128:
        case 0x00002108UL: /* CKM_AES_CFB1 */
        case 0x00001089UL: /* CKM_AES_CTS */
        case CKM_AES_KEY_WRAP:
        case 0x0000210AUL: /* CKM_AES_KEY_WRAP_PAD (SoftHSM2's value) */
        case 0x0000210BUL: /* CKM_AES_KEY_WRAP_KWP */
        case CKM_DES_CBC:
        case CKM_DES_CBC_PAD:
        case CKM_DES3_CBC:
        case CKM_DES3_CBC_PAD:
        case CKM_DES_OFB64:
        case CKM_DES_CFB64:
        case CKM_DES_CFB8:
        case CKM_CAMELLIA_CBC:
        case CKM_CAMELLIA_CBC_PAD:
        case CKM_ARIA_CBC:
        case CKM_ARIA_CBC_PAD:
        case CKM_SEED_CBC:
        case CKM_SEED_CBC_PAD:
        case CKM_BLOWFISH_CBC:
        case CKM_TWOFISH_CBC:
        case CKM_DH_PKCS_DERIVE:
        case CKM_GOST28147:
        case CKM_GOST28147_KEY_WRAP:
        case CKM_GOSTR3411:
        case CKM_GOSTR3411_HMAC:
        case CKM_GOSTR3410_WITH_GOSTR3411:
                return true;
        default:
                return false;
        }
}

PolicyDecision policy_mechanism_parameter(CK_MECHANISM_TYPE mechanism, bool has_parameter, size_t struct_size,
                                          size_t len)
{
        if (!has_parameter)
                return (PolicyDecision) { CKR_OK, NULL };
        if (struct_size > 0) {
                if (len == struct_size)
                        return (PolicyDecision) { CKR_OK, NULL };
                return (PolicyDecision) { CKR_MECHANISM_PARAM_INVALID,
                                          "the parameter does not have the size of the mechanism's structure" };
        }
        if (parameter_is_byte_string(mechanism))
                return (PolicyDecision) { CKR_OK, NULL };
        return (PolicyDecision) { CKR_MECHANISM_PARAM_INVALID,
                                  "kyso does not know this mechanism's parameter and will not pass raw bytes that "
                                  "could be read as pointers" };
}
