/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The wire codec, client and server in one process: every call of the table goes client encode ->
 * server decode -> outputs filled as a backend would -> server encode -> client decode, with
 * values checked at each end; then the argument kinds' length semantics, call by call. Mechanism and
 * message parameters are in test-wire-params.c, the ways a frame can be wrong in test-wire-malformed.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "wire.h"

#include "test-wire-util.h"

/* ---- helpers ---- */

static void check_reply_truncations(WireCall call, const uint8_t *p, size_t len, WireArg *cargs)
{
        uint8_t *longer = malloc(len + 1);
        CK_RV rv;

        for (size_t n = 0; n < len; n++) {
                uint8_t *copy = malloc(n ? n : 1);

                memcpy(copy, p, n);
                assert_int_equal(wire_decode_reply(copy, n, call, cargs, &rv), -EBADMSG);
                free(copy);
        }
        memcpy(longer, p, len);
        longer[len] = 0;
        assert_int_equal(wire_decode_reply(longer, len + 1, call, cargs, &rv), -EBADMSG);
        free(longer);
}

/* ---- tables ---- */

static void test_call_table(void **state)
{
        assert_int_equal(KYSO_CALL_HELLO, 0);
        for (int i = 0; i < _KYSO_CALL_MAX; i++) {
                const WireCallInfo *info = wire_call_info(i);

                assert_non_null(info);
                assert_int_equal(wire_call_from_name(info->name), i);
                assert_true(strlen(info->signature) <= KYSO_WIRE_ARGS_MAX);
        }
        assert_null(wire_call_info(_KYSO_CALL_MAX));
        assert_null(wire_call_info(-1));
        assert_int_equal(wire_call_from_name("C_Sign"), KYSO_CALL_C_Sign);
        assert_string_equal(wire_call_info(KYSO_CALL_C_Sign)->signature, "Syo");
        assert_int_equal(wire_call_from_name("C_Nope"), _KYSO_CALL_INVALID);
        assert_int_equal(wire_call_from_name(NULL), _KYSO_CALL_INVALID);
}

static void test_rv_has_outputs(void **state)
{
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_Sign, CKR_OK));
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_Sign, CKR_BUFFER_TOO_SMALL));
        assert_false(wire_rv_has_outputs(KYSO_CALL_C_Sign, CKR_ATTRIBUTE_SENSITIVE));
        assert_false(wire_rv_has_outputs(KYSO_CALL_C_Sign, CKR_KEY_HANDLE_INVALID));
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_GetAttributeValue, CKR_ATTRIBUTE_SENSITIVE));
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_GetAttributeValue, CKR_ATTRIBUTE_TYPE_INVALID));
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_GetAttributeValue, CKR_BUFFER_TOO_SMALL));
        assert_false(wire_rv_has_outputs(KYSO_CALL_C_GetAttributeValue, CKR_OBJECT_HANDLE_INVALID));
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_GetSlotList, CKR_BUFFER_TOO_SMALL));
        assert_false(wire_rv_has_outputs(KYSO_CALL_C_OpenSession, CKR_BUFFER_TOO_SMALL));
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_OpenSession, CKR_OK));
        assert_false(wire_rv_has_outputs(KYSO_CALL_C_Logout, CKR_OK)); /* nothing to carry */
        assert_true(wire_rv_has_outputs(KYSO_CALL_C_SignMessageBegin, CKR_OK)); /* 'p' is in/out */
        assert_false(wire_rv_has_outputs(_KYSO_CALL_MAX, CKR_OK));
}

static void test_attribute_kinds(void **state)
{
        static const CK_ATTRIBUTE_TYPE ulongs[] = {
                CKA_CLASS, CKA_CERTIFICATE_TYPE, CKA_CERTIFICATE_CATEGORY, CKA_JAVA_MIDP_SECURITY_DOMAIN,
                CKA_NAME_HASH_ALGORITHM, CKA_KEY_TYPE, CKA_KEY_GEN_MECHANISM, CKA_MODULUS_BITS, CKA_PRIME_BITS,
                CKA_SUB_PRIME_BITS, CKA_VALUE_BITS, CKA_VALUE_LEN, CKA_HW_FEATURE_TYPE, CKA_PIXEL_X, CKA_PIXEL_Y,
                CKA_RESOLUTION, CKA_CHAR_ROWS, CKA_CHAR_COLUMNS, CKA_BITS_PER_PIXEL, CKA_MECHANISM_TYPE,
                CKA_OTP_FORMAT, CKA_OTP_LENGTH, CKA_OTP_TIME_INTERVAL, CKA_OTP_CHALLENGE_REQUIREMENT,
                CKA_OTP_TIME_REQUIREMENT, CKA_OTP_COUNTER_REQUIREMENT, CKA_OTP_PIN_REQUIREMENT,
                T_CKA_PROFILE_ID, CKA_ALLOWED_MECHANISMS,
        };

        for (size_t i = 0; i < ELEMENTSOF(ulongs); i++)
                assert_int_equal(wire_attribute_kind(ulongs[i]), WIRE_ATTR_ULONGS);
        assert_int_equal(wire_attribute_kind(0x601), WIRE_ATTR_ULONGS);
        assert_int_equal(wire_attribute_kind(0x40000600UL), WIRE_ATTR_ULONGS);
        assert_int_equal(wire_attribute_kind(CKA_WRAP_TEMPLATE), WIRE_ATTR_TEMPLATE);
        assert_int_equal(wire_attribute_kind(CKA_UNWRAP_TEMPLATE), WIRE_ATTR_TEMPLATE);
        assert_int_equal(wire_attribute_kind(CKA_DERIVE_TEMPLATE), WIRE_ATTR_TEMPLATE);
        assert_int_equal(wire_attribute_kind(0x40000211UL), WIRE_ATTR_TEMPLATE);
        assert_int_equal(wire_attribute_kind(CKA_LABEL), WIRE_ATTR_BYTES);
        assert_int_equal(wire_attribute_kind(CKA_OTP_USER_IDENTIFIER), WIRE_ATTR_BYTES);
        assert_int_equal(wire_attribute_kind(CKA_TOKEN), WIRE_ATTR_BYTES);
        assert_int_equal(wire_attribute_kind(CKA_VENDOR_DEFINED | 5), WIRE_ATTR_BYTES);
}

static void test_mechanism_params(void **state)
{
        static const struct {
                CK_MECHANISM_TYPE m;
                WireParam p;
        } table[] = {
                { CKM_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { CKM_SHA1_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { CKM_SHA224_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { CKM_SHA256_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { CKM_SHA384_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { CKM_SHA512_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { T_CKM_SHA3_224_RSA_PKCS_PSS, WIRE_PARAM_RSA_PKCS_PSS },
                { 0x63, WIRE_PARAM_RSA_PKCS_PSS },
                { 0x64, WIRE_PARAM_RSA_PKCS_PSS },
                { 0x65, WIRE_PARAM_RSA_PKCS_PSS },
                { 0x66, WIRE_PARAM_BYTES }, /* CKM_SHA3_224_RSA_PKCS: no parameter */
                { CKM_RSA_PKCS_OAEP, WIRE_PARAM_RSA_PKCS_OAEP },
                { CKM_AES_CTR, WIRE_PARAM_AES_CTR },
                { CKM_AES_GCM, WIRE_PARAM_GCM },
                { CKM_AES_CCM, WIRE_PARAM_CCM },
                { CKM_ECDH1_DERIVE, WIRE_PARAM_ECDH1_DERIVE },
                { CKM_ECDH1_COFACTOR_DERIVE, WIRE_PARAM_ECDH1_DERIVE },
                { CKM_DES_ECB_ENCRYPT_DATA, WIRE_PARAM_KEY_DERIVATION_STRING },
                { CKM_DES3_ECB_ENCRYPT_DATA, WIRE_PARAM_KEY_DERIVATION_STRING },
                { CKM_AES_ECB_ENCRYPT_DATA, WIRE_PARAM_KEY_DERIVATION_STRING },
                { CKM_CONCATENATE_BASE_AND_DATA, WIRE_PARAM_KEY_DERIVATION_STRING },
                { CKM_CONCATENATE_DATA_AND_BASE, WIRE_PARAM_KEY_DERIVATION_STRING },
                { CKM_XOR_BASE_AND_DATA, WIRE_PARAM_KEY_DERIVATION_STRING },
                { CKM_DES_CBC_ENCRYPT_DATA, WIRE_PARAM_DES_CBC_ENCRYPT_DATA },
                { CKM_DES3_CBC_ENCRYPT_DATA, WIRE_PARAM_DES_CBC_ENCRYPT_DATA },
                { CKM_AES_CBC_ENCRYPT_DATA, WIRE_PARAM_AES_CBC_ENCRYPT_DATA },
                { CKM_MD5_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_SHA_1_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_SHA224_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_SHA256_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_SHA384_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_SHA512_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { 0x2B7, WIRE_PARAM_ULONG },
                { T_CKM_SHA3_256_HMAC_GENERAL, WIRE_PARAM_ULONG },
                { 0x2C2, WIRE_PARAM_ULONG },
                { 0x2D2, WIRE_PARAM_ULONG },
                { CKM_AES_MAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_AES_CMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_DES3_MAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_DES3_CMAC_GENERAL, WIRE_PARAM_ULONG },
                { CKM_EXTRACT_KEY_FROM_KEY, WIRE_PARAM_ULONG },
                { CKM_CONCATENATE_BASE_AND_KEY, WIRE_PARAM_OBJECT_HANDLE },
                { CKM_EDDSA, WIRE_PARAM_EDDSA },
                { 0x1226, WIRE_PARAM_CHACHA20 },
                { 0x4021, WIRE_PARAM_SALSA20_CHACHA20_POLY1305 },
                { T_CKM_SALSA20_POLY1305, WIRE_PARAM_SALSA20_CHACHA20_POLY1305 },
                { 0x4020, WIRE_PARAM_BYTES }, /* CKM_SALSA20: CK_SALSA20_PARAMS, not known */
                { CKM_RSA_PKCS, WIRE_PARAM_BYTES },
                { CKM_AES_CBC, WIRE_PARAM_BYTES },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                if (wire_mechanism_param(table[i].m) != table[i].p)
                        fail_msg("mechanism 0x%lx", (unsigned long) table[i].m);
        }
        assert_int_equal(wire_message_param(CKM_AES_GCM), WIRE_PARAM_GCM_MESSAGE);
        assert_int_equal(wire_message_param(CKM_AES_CCM), WIRE_PARAM_CCM_MESSAGE);
        assert_int_equal(wire_message_param(0x4021), WIRE_PARAM_CHACHA_POLY_MESSAGE);
        assert_int_equal(wire_message_param(T_CKM_SALSA20_POLY1305), WIRE_PARAM_CHACHA_POLY_MESSAGE);
        assert_int_equal(wire_message_param(CKM_EDDSA), WIRE_PARAM_BYTES);
}

/* ---- every call: generic arguments per signature character ---- */

#define NESTED 2
#define A_ATTRS 5

/* The client's memory for one argument of any kind. */
typedef struct ClientArg {
        uint8_t bytes[64];
        uint8_t out[64];
        CK_ULONG out_len;
        CK_ULONG list[8];
        CK_ATTRIBUTE tmpl[4];
        CK_ULONG tmpl_class, tmpl_mechs[2];
        CK_ATTRIBUTE tmpl_nested[NESTED];
        CK_ULONG nested_class, nested_key_type;
        CK_ATTRIBUTE get[A_ATTRS];
        uint8_t get_label[32];
        CK_ULONG get_class, get_mechs[4];
        CK_ATTRIBUTE get_nested[NESTED];
        CK_ULONG get_nested_vals[NESTED];
        uint8_t get_id[4];
        CK_MECHANISM mech;
        CK_RSA_PKCS_PSS_PARAMS pss;
        CK_GCM_MESSAGE_PARAMS gcm;
        uint8_t iv[12], tag[16];
        CK_OBJECT_HANDLE *handles;
        CK_ULONG handle_count;
        CK_ULONG scalar;
        union {
                CK_INFO info;
                CK_SLOT_INFO slot;
                CK_TOKEN_INFO token;
                CK_SESSION_INFO session;
                CK_MECHANISM_INFO mechanism;
        } s;
} ClientArg;

static void client_arg_init(ClientArg *c, char ch, size_t i, WireArg *arg)
{
        memset(c, 0, sizeof(*c));
        memset(arg, 0, sizeof(*arg));
        switch (ch) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                arg->value = 0x1000 + i;
                break;
        case 'b':
                arg->value = CK_TRUE;
                break;
        case 'y':
                for (size_t j = 0; j < 40; j++)
                        c->bytes[j] = (uint8_t) (j * 7 + i);
                arg->ptr = c->bytes;
                arg->len = 40;
                break;
        case 'z':
                memset(c->bytes, ' ', 32);
                memcpy(c->bytes, "kyso token", 10);
                arg->ptr = c->bytes;
                break;
        case 'a':
                c->tmpl_class = CKO_PRIVATE_KEY;
                c->tmpl_mechs[0] = CKM_RSA_PKCS;
                c->tmpl_mechs[1] = CKM_SHA256_RSA_PKCS_PSS;
                c->nested_class = CKO_SECRET_KEY;
                c->nested_key_type = CKK_AES;
                c->tmpl_nested[0] = (CK_ATTRIBUTE) { CKA_CLASS, &c->nested_class, sizeof(CK_ULONG) };
                c->tmpl_nested[1] = (CK_ATTRIBUTE) { CKA_KEY_TYPE, &c->nested_key_type, sizeof(CK_ULONG) };
                memcpy(c->bytes, "my key", 6);
                c->tmpl[0] = (CK_ATTRIBUTE) { CKA_CLASS, &c->tmpl_class, sizeof(CK_ULONG) };
                c->tmpl[1] = (CK_ATTRIBUTE) { CKA_LABEL, c->bytes, 6 };
                c->tmpl[2] = (CK_ATTRIBUTE) { CKA_ALLOWED_MECHANISMS, c->tmpl_mechs, sizeof(c->tmpl_mechs) };
                c->tmpl[3] = (CK_ATTRIBUTE) { CKA_UNWRAP_TEMPLATE, c->tmpl_nested, sizeof(c->tmpl_nested) };
                arg->ptr = c->tmpl;
                arg->len = 4;
                break;
        case 'm':
                c->pss = (CK_RSA_PKCS_PSS_PARAMS) { CKM_SHA256, CKG_MGF1_SHA256, 32 };
                c->mech = (CK_MECHANISM) { CKM_SHA256_RSA_PKCS_PSS, &c->pss, sizeof(c->pss) };
                arg->ptr = &c->mech;
                break;
        case 'p':
                memset(c->iv, 0x11, sizeof(c->iv));
                memset(c->tag, 0x22, sizeof(c->tag));
                c->gcm = (CK_GCM_MESSAGE_PARAMS) { c->iv, sizeof(c->iv), 32, T_CKG_GENERATE_COUNTER, c->tag, 128 };
                arg->ptr = &c->gcm;
                arg->len = sizeof(c->gcm);
                arg->value = CKM_AES_GCM;
                break;
        case 'o':
                c->out_len = sizeof(c->out);
                arg->ptr = c->out;
                arg->len_ptr = &c->out_len;
                break;
        case 'l':
                c->out_len = ELEMENTSOF(c->list);
                arg->ptr = c->list;
                arg->len_ptr = &c->out_len;
                break;
        case 'r':
                arg->ptr = c->out;
                arg->len = 48;
                break;
        case 'A':
                c->get_nested[0] = (CK_ATTRIBUTE) { 0, &c->get_nested_vals[0], sizeof(CK_ULONG) };
                c->get_nested[1] = (CK_ATTRIBUTE) { 0, &c->get_nested_vals[1], sizeof(CK_ULONG) };
                c->get[0] = (CK_ATTRIBUTE) { CKA_LABEL, c->get_label, sizeof(c->get_label) };
                c->get[1] = (CK_ATTRIBUTE) { CKA_CLASS, &c->get_class, sizeof(CK_ULONG) };
                c->get[2] = (CK_ATTRIBUTE) { CKA_ALLOWED_MECHANISMS, c->get_mechs, sizeof(c->get_mechs) };
                c->get[3] = (CK_ATTRIBUTE) { CKA_WRAP_TEMPLATE, c->get_nested, sizeof(c->get_nested) };
                c->get[4] = (CK_ATTRIBUTE) { CKA_ID, NULL, 0 }; /* a length query */
                arg->ptr = c->get;
                arg->len = A_ATTRS;
                break;
        case 'H':
                arg->ptr = &c->handles;
                arg->len_ptr = &c->handle_count;
                break;
        case 'U':
        case 'n':
        case 's':
                c->scalar = 0xdead;
                arg->ptr = &c->scalar;
                break;
        default: /* the output structures */
                memset(&c->s, 0x5a, sizeof(c->s));
                arg->ptr = &c->s;
                break;
        }
}

static void check_version(const CK_VERSION *v, int major, int minor)
{
        assert_int_equal(v->major, major);
        assert_int_equal(v->minor, minor);
}

/* Checks what the server decoded and plays the backend: fills the outputs. */
static void server_arg_serve(char ch, size_t i, WireArg *arg, Arena *a)
{
        CK_ATTRIBUTE *at;
        CK_ULONG *ul;

        switch (ch) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                assert_int_equal(arg->value, 0x1000 + i);
                break;
        case 'b':
                assert_int_equal(arg->value, CK_TRUE);
                break;
        case 'y':
                assert_int_equal(arg->len, 40);
                for (size_t j = 0; j < 40; j++)
                        assert_int_equal(((uint8_t *) arg->ptr)[j], (uint8_t) (j * 7 + i));
                break;
        case 'z':
                assert_memory_equal(arg->ptr, "kyso token      ", 16);
                break;
        case 'a':
                at = arg->ptr;
                assert_int_equal(arg->len, 4);
                assert_int_equal(at[0].type, CKA_CLASS);
                assert_int_equal(at[0].ulValueLen, sizeof(CK_ULONG));
                assert_int_equal(*(CK_ULONG *) at[0].pValue, CKO_PRIVATE_KEY);
                assert_int_equal(at[1].type, CKA_LABEL);
                assert_int_equal(at[1].ulValueLen, 6);
                assert_memory_equal(at[1].pValue, "my key", 6);
                assert_int_equal(at[2].ulValueLen, 2 * sizeof(CK_ULONG));
                ul = at[2].pValue;
                assert_int_equal(ul[0], CKM_RSA_PKCS);
                assert_int_equal(ul[1], CKM_SHA256_RSA_PKCS_PSS);
                assert_int_equal(at[3].type, CKA_UNWRAP_TEMPLATE);
                assert_int_equal(at[3].ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
                at = at[3].pValue;
                assert_int_equal(at[0].type, CKA_CLASS);
                assert_int_equal(*(CK_ULONG *) at[0].pValue, CKO_SECRET_KEY);
                assert_int_equal(at[1].type, CKA_KEY_TYPE);
                assert_int_equal(*(CK_ULONG *) at[1].pValue, CKK_AES);
                break;
        case 'm': {
                CK_MECHANISM *m = arg->ptr;
                CK_RSA_PKCS_PSS_PARAMS *pss;

                assert_int_equal(m->mechanism, CKM_SHA256_RSA_PKCS_PSS);
                assert_int_equal(m->ulParameterLen, sizeof(CK_RSA_PKCS_PSS_PARAMS));
                pss = m->pParameter;
                assert_int_equal(pss->hashAlg, CKM_SHA256);
                assert_int_equal(pss->mgf, CKG_MGF1_SHA256);
                assert_int_equal(pss->sLen, 32);
                break;
        }
        case 'p': {
                CK_GCM_MESSAGE_PARAMS *g = arg->ptr;

                assert_int_equal(arg->value, WIRE_PARAM_GCM_MESSAGE);
                assert_int_equal(arg->len, sizeof(*g));
                assert_int_equal(g->ulIvLen, 12);
                assert_int_equal(g->ulIvFixedBits, 32);
                assert_int_equal(g->ivGenerator, T_CKG_GENERATE_COUNTER);
                assert_int_equal(g->ulTagBits, 128);
                assert_int_equal(g->pIv[11], 0x11);
                assert_int_equal(g->pTag[15], 0x22);
                /* The backend generates an IV and a tag. */
                memset(g->pIv, 0x33, 12);
                memset(g->pTag, 0x44, 16);
                break;
        }
        case 'o':
                assert_non_null(arg->ptr);
                assert_ptr_equal(arg->len_ptr, &arg->len);
                assert_int_equal(arg->len, 64);
                memset(arg->ptr, 0x77, 20);
                *arg->len_ptr = 20;
                break;
        case 'l':
                assert_ptr_equal(arg->len_ptr, &arg->len);
                assert_int_equal(arg->len, 8);
                ul = arg->ptr;
                ul[0] = 5;
                ul[1] = CK_UNAVAILABLE_INFORMATION;
                ul[2] = 0x80000001UL;
                *arg->len_ptr = 3;
                break;
        case 'r':
                assert_int_equal(arg->len, 48);
                for (size_t j = 0; j < 48; j++)
                        ((uint8_t *) arg->ptr)[j] = (uint8_t) (0xa0 + j);
                break;
        case 'A':
                at = arg->ptr;
                assert_int_equal(arg->len, A_ATTRS);
                assert_int_equal(at[0].type, CKA_LABEL);
                assert_int_equal(at[0].ulValueLen, 32);
                memcpy(at[0].pValue, "label!", 6);
                at[0].ulValueLen = 6;
                assert_int_equal(at[1].ulValueLen, sizeof(CK_ULONG));
                *(CK_ULONG *) at[1].pValue = CKO_CERTIFICATE;
                assert_int_equal(at[2].ulValueLen, 4 * sizeof(CK_ULONG));
                ((CK_ULONG *) at[2].pValue)[0] = CKM_ECDSA;
                ((CK_ULONG *) at[2].pValue)[1] = CKM_ECDSA_SHA256;
                ((CK_ULONG *) at[2].pValue)[2] = CKM_EDDSA;
                at[2].ulValueLen = 3 * sizeof(CK_ULONG);
                assert_int_equal(at[3].ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
                {
                        CK_ATTRIBUTE *n = at[3].pValue;

                        n[0].type = CKA_KEY_TYPE;
                        *(CK_ULONG *) n[0].pValue = CKK_EC;
                        n[1].type = CKA_CLASS;
                        *(CK_ULONG *) n[1].pValue = CKO_PUBLIC_KEY;
                }
                assert_null(at[4].pValue);
                at[4].ulValueLen = 20;
                break;
        case 'H': {
                CK_OBJECT_HANDLE *h = arena_alloc_array(a, 3, sizeof(CK_OBJECT_HANDLE));

                assert_null(arg->ptr);
                h[0] = 7;
                h[1] = 8;
                h[2] = 0xffff0000UL;
                arg->ptr = h;
                arg->len = 3;
                break;
        }
        case 'U':
        case 'n':
        case 's':
                assert_ptr_equal(arg->ptr, &arg->value);
                *(CK_ULONG *) arg->ptr = 0x4000 + i;
                break;
        case 'V': {
                CK_INFO *v = arg->ptr;

                assert_int_equal(v->flags, 0);
                v->cryptokiVersion = (CK_VERSION) { 3, 0 };
                memcpy(v->manufacturerID, "kyso", 4);
                v->flags = 0x5;
                memcpy(v->libraryDescription, "desc", 4);
                v->libraryVersion = (CK_VERSION) { 0, 1 };
                break;
        }
        case 'I': {
                CK_SLOT_INFO *v = arg->ptr;

                memcpy(v->slotDescription, "slot", 4);
                v->slotDescription[63] = 'Z';
                memcpy(v->manufacturerID, "m", 1);
                v->flags = CKF_TOKEN_PRESENT | CKF_REMOVABLE_DEVICE;
                v->hardwareVersion = (CK_VERSION) { 1, 2 };
                v->firmwareVersion = (CK_VERSION) { 3, 4 };
                break;
        }
        case 'T': {
                CK_TOKEN_INFO *v = arg->ptr;

                /* Zeroed, because some backends OR flags into it. */
                assert_int_equal(v->flags, 0);
                memcpy(v->label, "label", 5);
                memcpy(v->serialNumber, "0123456789abcdef", 16);
                v->flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_TO_BE_CHANGED;
                v->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
                v->ulSessionCount = CK_UNAVAILABLE_INFORMATION;
                v->ulMaxPinLen = 16;
                v->ulMinPinLen = 6;
                v->ulFreePrivateMemory = 12345;
                v->firmwareVersion = (CK_VERSION) { 9, 8 };
                memcpy(v->utcTime, "2024112408000000", 16);
                break;
        }
        case 'X': {
                CK_SESSION_INFO *v = arg->ptr;

                v->slotID = 3;
                v->state = CKS_RW_USER_FUNCTIONS;
                v->flags = CKF_RW_SESSION | CKF_SERIAL_SESSION;
                v->ulDeviceError = 42;
                break;
        }
        case 'M': {
                CK_MECHANISM_INFO *v = arg->ptr;

                assert_int_equal(v->flags, 0);
                v->ulMinKeySize = 2048;
                v->ulMaxKeySize = 4096;
                v->flags = CKF_SIGN | CKF_VERIFY;
                break;
        }
        default:
                fail_msg("unknown signature character %c", ch);
        }
}

static void client_arg_check(char ch, size_t i, const WireArg *arg, const ClientArg *c)
{
        switch (ch) {
        case 'p':
                for (size_t j = 0; j < 12; j++)
                        assert_int_equal(c->iv[j], 0x33);
                for (size_t j = 0; j < 16; j++)
                        assert_int_equal(c->tag[j], 0x44);
                assert_int_equal(c->gcm.ulIvLen, 12);
                break;
        case 'o':
                assert_int_equal(c->out_len, 20);
                for (size_t j = 0; j < 20; j++)
                        assert_int_equal(c->out[j], 0x77);
                assert_int_equal(c->out[20], 0);
                break;
        case 'l':
                assert_int_equal(c->out_len, 3);
                assert_int_equal(c->list[0], 5);
                assert_int_equal(c->list[1], CK_UNAVAILABLE_INFORMATION);
                assert_int_equal(c->list[2], 0x80000001UL);
                assert_int_equal(c->list[3], 0);
                break;
        case 'r':
                for (size_t j = 0; j < 48; j++)
                        assert_int_equal(c->out[j], (uint8_t) (0xa0 + j));
                assert_int_equal(c->out[48], 0);
                break;
        case 'A':
                assert_int_equal(c->get[0].ulValueLen, 6);
                assert_memory_equal(c->get_label, "label!", 6);
                assert_int_equal(c->get_label[6], 0);
                assert_int_equal(c->get[1].ulValueLen, sizeof(CK_ULONG));
                assert_int_equal(c->get_class, CKO_CERTIFICATE);
                assert_int_equal(c->get[2].ulValueLen, 3 * sizeof(CK_ULONG));
                assert_int_equal(c->get_mechs[0], CKM_ECDSA);
                assert_int_equal(c->get_mechs[1], CKM_ECDSA_SHA256);
                assert_int_equal(c->get_mechs[2], CKM_EDDSA);
                assert_int_equal(c->get_mechs[3], 0);
                assert_int_equal(c->get[3].ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
                assert_int_equal(c->get_nested[0].type, CKA_KEY_TYPE);
                assert_int_equal(c->get_nested[0].ulValueLen, sizeof(CK_ULONG));
                assert_int_equal(c->get_nested_vals[0], CKK_EC);
                assert_int_equal(c->get_nested[1].type, CKA_CLASS);
                assert_int_equal(c->get_nested_vals[1], CKO_PUBLIC_KEY);
                assert_null(c->get[4].pValue);
                assert_int_equal(c->get[4].ulValueLen, 20);
                break;
        case 'H':
                assert_int_equal(c->handle_count, 3);
                assert_non_null(c->handles);
                assert_int_equal(c->handles[0], 7);
                assert_int_equal(c->handles[1], 8);
                assert_int_equal(c->handles[2], 0xffff0000UL);
                break;
        case 'U':
        case 'n':
        case 's':
                assert_int_equal(c->scalar, 0x4000 + i);
                break;
        case 'V':
                check_version(&c->s.info.cryptokiVersion, 3, 0);
                assert_memory_equal(c->s.info.manufacturerID, "kyso", 4);
                assert_int_equal(c->s.info.manufacturerID[4], 0);
                assert_int_equal(c->s.info.flags, 5);
                assert_memory_equal(c->s.info.libraryDescription, "desc", 4);
                check_version(&c->s.info.libraryVersion, 0, 1);
                break;
        case 'I':
                assert_memory_equal(c->s.slot.slotDescription, "slot", 4);
                assert_int_equal(c->s.slot.slotDescription[63], 'Z');
                assert_int_equal(c->s.slot.flags, CKF_TOKEN_PRESENT | CKF_REMOVABLE_DEVICE);
                check_version(&c->s.slot.hardwareVersion, 1, 2);
                check_version(&c->s.slot.firmwareVersion, 3, 4);
                break;
        case 'T':
                assert_memory_equal(c->s.token.label, "label", 5);
                assert_memory_equal(c->s.token.serialNumber, "0123456789abcdef", 16);
                assert_int_equal(c->s.token.flags, CKF_LOGIN_REQUIRED | CKF_USER_PIN_TO_BE_CHANGED);
                assert_int_equal(c->s.token.ulMaxSessionCount, CK_EFFECTIVELY_INFINITE);
                assert_int_equal(c->s.token.ulSessionCount, CK_UNAVAILABLE_INFORMATION);
                assert_int_equal(c->s.token.ulMaxPinLen, 16);
                assert_int_equal(c->s.token.ulMinPinLen, 6);
                assert_int_equal(c->s.token.ulFreePrivateMemory, 12345);
                assert_int_equal(c->s.token.ulTotalPublicMemory, 0);
                check_version(&c->s.token.firmwareVersion, 9, 8);
                assert_memory_equal(c->s.token.utcTime, "2024112408000000", 16);
                break;
        case 'X':
                assert_int_equal(c->s.session.slotID, 3);
                assert_int_equal(c->s.session.state, CKS_RW_USER_FUNCTIONS);
                assert_int_equal(c->s.session.flags, CKF_RW_SESSION | CKF_SERIAL_SESSION);
                assert_int_equal(c->s.session.ulDeviceError, 42);
                break;
        case 'M':
                assert_int_equal(c->s.mechanism.ulMinKeySize, 2048);
                assert_int_equal(c->s.mechanism.ulMaxKeySize, 4096);
                assert_int_equal(c->s.mechanism.flags, CKF_SIGN | CKF_VERIFY);
                break;
        default:
                break;
        }
}

static void roundtrip_call(WireCall call)
{
        const char *sig = wire_call_info(call)->signature;
        ClientArg *c = calloc(KYSO_WIRE_ARGS_MAX, sizeof(ClientArg));
        ClientArg *snapshot = calloc(KYSO_WIRE_ARGS_MAX, sizeof(ClientArg));
        WireArg cargs[KYSO_WIRE_ARGS_MAX], sargs[KYSO_WIRE_ARGS_MAX];
        uint8_t *req, *rep;
        size_t req_len, rep_len;
        Arena *arena;
        CK_RV rv = 0;

        for (size_t i = 0; sig[i]; i++)
                client_arg_init(&c[i], sig[i], i, &cargs[i]);

        req = encode_request(call, cargs, &req_len);
        assert_int_equal(decode_request(req, req_len, &arena, call, sargs), 0);
        for (size_t i = 0; sig[i]; i++)
                server_arg_serve(sig[i], i, &sargs[i], arena);
        rep = encode_reply(call, CKR_OK, sargs, &rep_len);
        arena_free(arena);

        /* A bad reply must leave the caller's memory as it was. */
        memcpy(snapshot, c, KYSO_WIRE_ARGS_MAX * sizeof(ClientArg));
        check_reply_truncations(call, rep, rep_len, cargs);
        assert_memory_equal(snapshot, c, KYSO_WIRE_ARGS_MAX * sizeof(ClientArg));

        assert_int_equal(wire_decode_reply(rep, rep_len, call, cargs, &rv), 0);
        assert_int_equal(rv, CKR_OK);
        for (size_t i = 0; sig[i]; i++)
                client_arg_check(sig[i], i, &cargs[i], &c[i]);

        check_request_truncations(call, req, req_len);

        for (size_t i = 0; sig[i]; i++)
                free(c[i].handles);
        free(req);
        free(rep);
        free(c);
        free(snapshot);
}

static void test_every_call(void **state)
{
        for (int call = 0; call < _KYSO_CALL_MAX; call++)
                roundtrip_call(call);
}

/* An error reply for every call: no outputs touched, rv arrives. */
static void test_every_call_error(void **state)
{
        for (int call = 0; call < _KYSO_CALL_MAX; call++) {
                const char *sig = wire_call_info(call)->signature;
                ClientArg *c = calloc(KYSO_WIRE_ARGS_MAX, sizeof(ClientArg));
                ClientArg *snapshot = calloc(KYSO_WIRE_ARGS_MAX, sizeof(ClientArg));
                WireArg cargs[KYSO_WIRE_ARGS_MAX];
                Buffer b;
                size_t len;
                CK_RV rv = 0;

                for (size_t i = 0; sig[i]; i++)
                        client_arg_init(&c[i], sig[i], i, &cargs[i]);
                memcpy(snapshot, c, KYSO_WIRE_ARGS_MAX * sizeof(ClientArg));
                buffer_init(&b, SIZE_MAX);
                assert_int_equal(wire_encode_error_reply(&b, 9, call, CKR_DEVICE_REMOVED), 0);
                assert_int_equal(wire_frame_length(b.data, &len), 0);
                assert_int_equal(wire_decode_reply(b.data + 4, len, call, cargs, &rv), 0);
                assert_int_equal(rv, CKR_DEVICE_REMOVED);
                assert_memory_equal(snapshot, c, KYSO_WIRE_ARGS_MAX * sizeof(ClientArg));
                /* The same reply is not one for another call. */
                assert_int_equal(wire_decode_reply(b.data + 4, len, (call + 1) % _KYSO_CALL_MAX, cargs, &rv),
                                 -EBADMSG);
                buffer_done(&b);
                free(c);
                free(snapshot);
        }
}

static void test_error_reply_refuses_outputs(void **state)
{
        Buffer b;

        buffer_init(&b, SIZE_MAX);
        assert_int_equal(wire_encode_error_reply(&b, 1, KYSO_CALL_C_Sign, CKR_OK), -EINVAL);
        assert_int_equal(wire_encode_error_reply(&b, 1, KYSO_CALL_C_Sign, CKR_BUFFER_TOO_SMALL), -EINVAL);
        assert_int_equal(b.len, 0);
        assert_int_equal(wire_encode_error_reply(&b, 1, KYSO_CALL_C_Logout, CKR_OK), 0);
        buffer_done(&b);
}

/* ---- focused round trips ---- */

static void test_template_ulongs_odd_length(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t odd[5] = { 1, 2, 3, 4, 5 };
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, odd, sizeof(odd) },   /* not a multiple of CK_ULONG: goes as bytes */
                { CKA_VALUE_LEN, NULL, 0 },        /* absent value */
                { CKA_LABEL, odd, 0 },             /* present but empty */
                { CKA_ALLOWED_MECHANISMS, odd, 0 } /* empty list */
        };
        CK_OBJECT_HANDLE h;
        CK_ATTRIBUTE *st;
        Trip t = {};

        cargs[1] = (WireArg) { .ptr = tmpl, .len = ELEMENTSOF(tmpl) };
        cargs[2].ptr = &h;
        trip_request(&t, KYSO_CALL_C_CreateObject, cargs);
        st = t.sargs[1].ptr;
        assert_int_equal(st[0].ulValueLen, 5);
        assert_memory_equal(st[0].pValue, odd, 5);
        assert_null(st[1].pValue);
        assert_non_null(st[2].pValue);
        assert_int_equal(st[2].ulValueLen, 0);
        assert_non_null(st[3].pValue);
        assert_int_equal(st[3].ulValueLen, 0);
        trip_done(&t);

        /* NULL template with a count, and an empty template. */
        cargs[1] = (WireArg) { .ptr = NULL, .len = 0 };
        trip_request(&t, KYSO_CALL_C_FindObjectsInit, (WireArg[KYSO_WIRE_ARGS_MAX]) {
                                                             [1] = { .ptr = NULL, .len = 0 },
                                                             [2] = { .ptr = &st, .len_ptr = &h },
                                                     });
        assert_null(t.sargs[1].ptr);
        assert_int_equal(t.sargs[1].len, 0);
        trip_done(&t);
        trip_request(&t, KYSO_CALL_C_FindObjectsInit, (WireArg[KYSO_WIRE_ARGS_MAX]) {
                                                             [1] = { .ptr = tmpl, .len = 0 },
                                                             [2] = { .ptr = &st, .len_ptr = &h },
                                                     });
        assert_non_null(t.sargs[1].ptr);
        assert_int_equal(t.sargs[1].len, 0);
        trip_done(&t);
}

/* 'o': a length query, then CKR_BUFFER_TOO_SMALL, then the data. */
/* Input bytes are decoded in place, pointing into the request payload; nothing else is. */
static void test_input_bytes_in_place(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t data[3000], sig[10];
        CK_ULONG sig_len = sizeof(sig);
        Trip t = {};

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (i * 7);
        cargs[0].value = 1;
        cargs[1] = (WireArg) { .ptr = data, .len = sizeof(data) };
        cargs[2] = (WireArg) { .ptr = sig, .len = sizeof(sig), .len_ptr = &sig_len };
        trip_request(&t, KYSO_CALL_C_Sign, cargs);
        assert_int_equal(t.sargs[1].len, sizeof(data));
        assert_true((uint8_t *) t.sargs[1].ptr >= t.req &&
                    (uint8_t *) t.sargs[1].ptr + sizeof(data) <= t.req + t.req_len);
        assert_memory_equal(t.sargs[1].ptr, data, sizeof(data));
        /* The output buffer is the arena's: the backend writes there, never into the payload. */
        assert_false((uint8_t *) t.sargs[2].ptr >= t.req && (uint8_t *) t.sargs[2].ptr < t.req + t.req_len);
        trip_done(&t);
}

static void test_output_length_semantics(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t data[4] = "abc", sig[10];
        CK_ULONG sig_len = 12345;
        Trip t = {};
        CK_RV rv;

        memset(sig, 0xcc, sizeof(sig));
        cargs[0].value = 1;
        cargs[1] = (WireArg) { .ptr = data, .len = 3 };
        cargs[2] = (WireArg) { .ptr = NULL, .len_ptr = &sig_len };
        trip_request(&t, KYSO_CALL_C_Sign, cargs);
        assert_null(t.sargs[2].ptr); /* the backend sees a length query */
        *t.sargs[2].len_ptr = 256;
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(rv, CKR_OK);
        assert_int_equal(sig_len, 256);
        trip_done(&t);

        sig_len = sizeof(sig);
        cargs[2] = (WireArg) { .ptr = sig, .len_ptr = &sig_len };
        trip_request(&t, KYSO_CALL_C_Sign, cargs);
        assert_int_equal(t.sargs[2].len, 10);
        *t.sargs[2].len_ptr = 256;
        assert_int_equal(trip_reply(&t, CKR_BUFFER_TOO_SMALL, cargs, &rv), 0);
        assert_int_equal(rv, CKR_BUFFER_TOO_SMALL);
        assert_int_equal(sig_len, 256);
        assert_int_equal(sig[0], 0xcc);
        trip_done(&t);

        /* A backend that claims to have written more than the buffer: the server refuses to encode. */
        sig_len = sizeof(sig);
        trip_request(&t, KYSO_CALL_C_Sign, cargs);
        *t.sargs[2].len_ptr = 11;
        {
                Buffer b;

                buffer_init(&b, SIZE_MAX);
                assert_int_equal(wire_encode_reply(&b, 1, KYSO_CALL_C_Sign, CKR_OK, t.sargs), -EINVAL);
                assert_int_equal(b.len, 0);
                assert_true(buffer_ok(&b));
                buffer_done(&b);
        }
        *t.sargs[2].len_ptr = 10;
        memset(t.sargs[2].ptr, 0x5e, 10);
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(sig_len, 10);
        assert_int_equal(sig[9], 0x5e);
        trip_done(&t);

        /* A huge capacity is served with a frame's worth. */
        sig_len = CK_UNAVAILABLE_INFORMATION - 1;
        trip_request(&t, KYSO_CALL_C_Sign, cargs);
        assert_int_equal(t.sargs[2].len, KYSO_WIRE_FRAME_MAX);
        trip_done(&t);
}

/* 'l': C_GetSlotList's two calls. */
static void test_list_length_semantics(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        CK_SLOT_ID slots[2] = { 99, 99 };
        CK_ULONG count = 0;
        CK_ULONG *sl;
        Trip t = {};
        CK_RV rv;

        cargs[0].value = CK_TRUE;
        cargs[1] = (WireArg) { .ptr = NULL, .len_ptr = &count };
        trip_request(&t, KYSO_CALL_C_GetSlotList, cargs);
        assert_null(t.sargs[1].ptr);
        *t.sargs[1].len_ptr = 3;
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(count, 3);
        trip_done(&t);

        count = 2;
        cargs[1] = (WireArg) { .ptr = slots, .len_ptr = &count };
        trip_request(&t, KYSO_CALL_C_GetSlotList, cargs);
        *t.sargs[1].len_ptr = 3;
        assert_int_equal(trip_reply(&t, CKR_BUFFER_TOO_SMALL, cargs, &rv), 0);
        assert_int_equal(rv, CKR_BUFFER_TOO_SMALL);
        assert_int_equal(count, 3);
        assert_int_equal(slots[0], 99);
        trip_done(&t);

        count = 2;
        trip_request(&t, KYSO_CALL_C_GetSlotList, cargs);
        sl = t.sargs[1].ptr;
        sl[0] = 1;
        sl[1] = 2;
        *t.sargs[1].len_ptr = 2;
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(count, 2);
        assert_int_equal(slots[0], 1);
        assert_int_equal(slots[1], 2);
        trip_done(&t);
}

/* 'A': a length query, BUFFER_TOO_SMALL with CK_UNAVAILABLE_INFORMATION, sensitive attributes. */
static void test_get_attribute_semantics(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t small[4] = { 9, 9, 9, 9 }, value[64];
        CK_ULONG cls = 77;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_VALUE, NULL, 0 },
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_SUBJECT, small, sizeof(small) },
                { CKA_PRIVATE_EXPONENT, value, sizeof(value) },
        };
        CK_ATTRIBUTE *st;
        Trip t = {};
        CK_RV rv;

        cargs[0].value = 1;
        cargs[1].value = 2;
        cargs[2] = (WireArg) { .ptr = tmpl, .len = ELEMENTSOF(tmpl) };
        trip_request(&t, KYSO_CALL_C_GetAttributeValue, cargs);
        st = t.sargs[2].ptr;
        assert_null(st[0].pValue);
        assert_int_equal(st[2].ulValueLen, 4);
        assert_int_equal(st[3].ulValueLen, 64);
        /* What a backend does for CKR_BUFFER_TOO_SMALL + CKR_ATTRIBUTE_SENSITIVE. */
        st[0].ulValueLen = 1000;
        *(CK_ULONG *) st[1].pValue = CKO_PRIVATE_KEY;
        st[2].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        st[3].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        assert_int_equal(trip_reply(&t, CKR_BUFFER_TOO_SMALL, cargs, &rv), 0);
        assert_int_equal(rv, CKR_BUFFER_TOO_SMALL);
        assert_int_equal(tmpl[0].ulValueLen, 1000);
        assert_int_equal(tmpl[1].ulValueLen, sizeof(CK_ULONG));
        assert_int_equal(cls, CKO_PRIVATE_KEY);
        assert_int_equal(tmpl[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_int_equal(small[0], 9);
        assert_int_equal(tmpl[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        trip_done(&t);

        /* A length the backend claims past the buffer it was given is not sent on: the client would read
         * past its own buffer. The server refuses to encode it (and answers an error instead). */
        tmpl[2].ulValueLen = sizeof(small);
        tmpl[3].ulValueLen = sizeof(value);
        trip_request(&t, KYSO_CALL_C_GetAttributeValue, cargs);
        st = t.sargs[2].ptr;
        st[2].ulValueLen = 5;
        st[3].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        {
                Buffer b;

                buffer_init(&b, SIZE_MAX);
                assert_int_equal(wire_encode_reply(&b, 1, KYSO_CALL_C_GetAttributeValue, CKR_ATTRIBUTE_SENSITIVE,
                                                   t.sargs),
                                 -EINVAL);
                buffer_done(&b);
        }
        assert_int_equal(small[0], 9);
        trip_done(&t);

        /* A ULONGS attribute whose returned length is odd goes back as bytes. */
        tmpl[1].ulValueLen = sizeof(cls);
        cls = 0;
        trip_request(&t, KYSO_CALL_C_GetAttributeValue, cargs);
        st = t.sargs[2].ptr;
        memcpy(st[1].pValue, "\x01\x02\x03", 3);
        st[1].ulValueLen = 3;
        st[2].ulValueLen = 0;
        st[3].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(tmpl[1].ulValueLen, 3);
        assert_memory_equal(&cls, "\x01\x02\x03", 3);
        trip_done(&t);
}

static void test_unavailable_information(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        CK_ULONG size = 0;
        Trip t = {};
        CK_RV rv;

        cargs[0].value = CK_UNAVAILABLE_INFORMATION; /* ~0 in, ~0 out */
        cargs[1].value = 5;
        cargs[2].ptr = &size;
        trip_request(&t, KYSO_CALL_C_GetObjectSize, cargs);
        assert_int_equal(t.sargs[0].value, CK_UNAVAILABLE_INFORMATION);
        t.sargs[2].value = CK_UNAVAILABLE_INFORMATION;
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(size, CK_UNAVAILABLE_INFORMATION);
        /* On the wire it is UINT64_MAX, whatever the width of CK_ULONG. */
        {
                static const uint8_t ff[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

                assert_memory_equal(t.req + 8, ff, 8);
        }
        trip_done(&t);
}

static void test_find_objects_empty(void **state)
{
        CK_OBJECT_HANDLE *handles = (CK_OBJECT_HANDLE *) 0x1;
        CK_ULONG count = 99;
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        Trip t = {};
        CK_RV rv;

        cargs[2] = (WireArg) { .ptr = &handles, .len_ptr = &count };
        trip_request(&t, KYSO_CALL_C_FindObjectsInit, cargs);
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_null(handles);
        assert_int_equal(count, 0);
        trip_done(&t);
}

static void test_generate_random_limits(void **state)
{
        WireArg args[KYSO_WIRE_ARGS_MAX] = {};
        Buffer b;

        buffer_init(&b, SIZE_MAX);
        args[1] = (WireArg) { .ptr = &b, .len = KYSO_WIRE_FRAME_MAX };
        assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_GenerateRandom, args), -EMSGSIZE);
        args[1] = (WireArg) { .ptr = NULL, .len = 5 };
        assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_GenerateRandom, args), -EINVAL);
        assert_int_equal(b.len, 0);
        buffer_done(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_call_table),
                cmocka_unit_test(test_rv_has_outputs),
                cmocka_unit_test(test_attribute_kinds),
                cmocka_unit_test(test_mechanism_params),
                cmocka_unit_test(test_every_call),
                cmocka_unit_test(test_every_call_error),
                cmocka_unit_test(test_error_reply_refuses_outputs),
                cmocka_unit_test(test_template_ulongs_odd_length),
                cmocka_unit_test(test_input_bytes_in_place),
                cmocka_unit_test(test_output_length_semantics),
                cmocka_unit_test(test_list_length_semantics),
                cmocka_unit_test(test_get_attribute_semantics),
                cmocka_unit_test(test_unavailable_information),
                cmocka_unit_test(test_find_objects_empty),
                cmocka_unit_test(test_generate_random_limits),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
