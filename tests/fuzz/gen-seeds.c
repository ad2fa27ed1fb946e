/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the seed corpora of fuzz-wire-template and fuzz-wire-mechanism: realistic templates
 * (nested wrap/unwrap/derive templates, CK_ULONG arrays, absent values, unavailable lengths) and
 * every kind of mechanism and message parameter, encoded by the client side of the codec itself
 * and cut to the part each target fuzzes. Client-side seeds are replies the server side encoded
 * for the caller's buffers the target builds from the same configuration bytes.
 *   gen-seeds tests/fuzz/corpus
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The targets' own builders, so that a seed's configuration means the same thing here and there. */
#define LLVMFuzzerTestOneInput fuzz_template_one_input
#include "fuzz-wire-template.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_mechanism_one_input
#include "fuzz-wire-mechanism.c"
#undef LLVMFuzzerTestOneInput

#include "macro.h"

#define REPLY_HEADER (4U + 4U + 8U + 1U) /* serial, call, rv, outputs-present */

static const char *out_dir;

static void write_seed(const char *target, const char *name, uint8_t selector, const uint8_t cfg[FUZZ_CONFIG_SIZE],
                       const uint8_t *tail, size_t tail_size)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", out_dir, target);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                abort();
        snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
        f = fopen(path, "we");
        fuzz_check(f);
        fuzz_check(fwrite(&selector, 1, 1, f) == 1);
        fuzz_check(fwrite(cfg, 1, FUZZ_CONFIG_SIZE, f) == FUZZ_CONFIG_SIZE);
        fuzz_check(tail_size == 0 || fwrite(tail, 1, tail_size, f) == tail_size);
        fuzz_check(fclose(f) == 0);
}

/* Encodes a request from client args and returns the bytes of argument positions [from, to). */
static void request_slice(WireCall call, const WireArg *args, size_t from, size_t to, Buffer *ret)
{
        Buffer frame, before, after;
        size_t skip, tail;

        buffer_init(&frame, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        buffer_init(&before, KYSO_WIRE_FRAME_MAX);
        buffer_init(&after, KYSO_WIRE_FRAME_MAX);
        fuzz_check(wire_encode_request(&frame, 0x1234, call, args) == 0);
        /* The arguments around the slice have the canned shapes, so the canned lengths cut it out. */
        fuzz_canned_header(&before, call);
        fuzz_canned_args(&before, call, 0, from);
        fuzz_canned_args(&after, call, to, SIZE_MAX);
        skip = KYSO_WIRE_HEADER_SIZE + before.len;
        tail = after.len;
        fuzz_check(frame.len >= skip + tail);
        fuzz_check(tail == 0 || memcmp(frame.data + frame.len - tail, after.data, tail) == 0);
        buffer_add_bytes(ret, frame.data + skip, frame.len - skip - tail);
        buffer_done(&frame);
        buffer_done(&before);
        buffer_done(&after);
}

/* Client args with the canned shapes (see fuzz_canned_arg) for every character. */
static CK_MECHANISM canned_mechanism = { FUZZ_CANNED_MECHANISM, NULL, 0 };
static CK_ATTRIBUTE canned_empty[1];
static CK_BYTE canned_bytes[] = "abcd";
static CK_BYTE canned_out[32];
static CK_ULONG canned_len[KYSO_WIRE_ARGS_MAX];

static void canned_client_args(WireCall call, WireArg *args)
{
        const char *sig = wire_call_info(call)->signature;

        memset(args, 0, sizeof(WireArg) * KYSO_WIRE_ARGS_MAX);
        for (size_t i = 0; sig[i]; i++)
                switch (sig[i]) {
                case 'u':
                case 'S':
                case 'O':
                        args[i].value = 1;
                        break;
                case 'y':
                        args[i].ptr = canned_bytes;
                        args[i].len = 4;
                        break;
                case 'a':
                        args[i].ptr = canned_empty;
                        args[i].len = 0;
                        break;
                case 'm':
                        args[i].ptr = &canned_mechanism;
                        break;
                case 'o':
                        canned_len[i] = 32;
                        args[i].ptr = canned_out;
                        args[i].len_ptr = &canned_len[i];
                        break;
                case 'n':
                        args[i].ptr = &canned_len[i];
                        break;
                case 'H':
                        args[i].ptr = canned_out;
                        args[i].len_ptr = &canned_len[i];
                        break;
                default:
                        break;
                }
}

/* ---- templates ---- */

#define UL(v) ((CK_ULONG) (v))

static CK_OBJECT_CLASS c_priv = CKO_PRIVATE_KEY, c_pub = CKO_PUBLIC_KEY, c_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE k_rsa = CKK_RSA, k_aes = CKK_AES, k_ec = CKK_EC;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_ULONG bits = 2048, value_len = 32;
static CK_MECHANISM_TYPE allowed[] = { CKM_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP };
static CK_MECHANISM_TYPE allowed_aes[] = { CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD };
static CK_BYTE exponent[] = { 1, 0, 1 };
static CK_BYTE ec_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static CK_BYTE ragged[] = { 1, 2, 3, 4, 5 }; /* an ULONGS attribute with a length no multiple of CK_ULONG */

static CK_ATTRIBUTE wrap_tmpl[] = {
        { CKA_CLASS, &c_secret, sizeof(c_secret) },
        { CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
        { CKA_EXTRACTABLE, &no, sizeof(no) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
};
static CK_ATTRIBUTE unwrap_tmpl[] = {
        { CKA_CLASS, &c_priv, sizeof(c_priv) },
        { CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed) },
        { CKA_LABEL, "unwrapped", 9 },
};

static CK_ATTRIBUTE t_private[] = {
        { CKA_CLASS, &c_priv, sizeof(c_priv) },
        { CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
        { CKA_TOKEN, &yes, sizeof(yes) },
        { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
        { CKA_EXTRACTABLE, &no, sizeof(no) },
        { CKA_SIGN, &yes, sizeof(yes) },
        { CKA_LABEL, "signing key", 11 },
        { CKA_ID, "\x01\x02\x03\x04", 4 },
        { CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed) },
};
static CK_ATTRIBUTE t_public[] = {
        { CKA_CLASS, &c_pub, sizeof(c_pub) },
        { CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
        { CKA_MODULUS_BITS, &bits, sizeof(bits) },
        { CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent) },
        { CKA_VERIFY, &yes, sizeof(yes) },
        { CKA_ID, "\x01\x02\x03\x04", 4 },
};
static CK_ATTRIBUTE t_wrapping[] = {
        { CKA_CLASS, &c_secret, sizeof(c_secret) },
        { CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
        { CKA_VALUE_LEN, &value_len, sizeof(value_len) },
        { CKA_WRAP, &yes, sizeof(yes) },
        { CKA_UNWRAP, &yes, sizeof(yes) },
        { CKA_WRAP_TEMPLATE, wrap_tmpl, sizeof(wrap_tmpl) },
        { CKA_UNWRAP_TEMPLATE, unwrap_tmpl, sizeof(unwrap_tmpl) },
        { CKA_DERIVE_TEMPLATE, wrap_tmpl, 0 },
        { CKA_ALLOWED_MECHANISMS, allowed_aes, sizeof(allowed_aes) },
};
static CK_ATTRIBUTE t_odd[] = {
        { CKA_CLASS, NULL, sizeof(CK_ULONG) },
        { CKA_VALUE, NULL, CK_UNAVAILABLE_INFORMATION },
        { CKA_ALLOWED_MECHANISMS, ragged, sizeof(ragged) },
        { CKA_WRAP_TEMPLATE, NULL, 3 * sizeof(CK_ATTRIBUTE) },
        { CKA_LABEL, "", 0 },
        { CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
        { CKA_EC_PARAMS, ec_params, sizeof(ec_params) },
        { CKA_ALLOWED_MECHANISMS, allowed, 0 },
};
static CK_ATTRIBUTE t_find[] = {
        { CKA_CLASS, &c_priv, sizeof(c_priv) },
        { CKA_ID, "\x01\x02\x03\x04", 4 },
};

static const struct {
        const char *name;
        CK_ATTRIBUTE *attrs;
        CK_ULONG count;
} templates[] = {
        { "private", t_private, ELEMENTSOF(t_private) }, { "public", t_public, ELEMENTSOF(t_public) },
        { "wrapping", t_wrapping, ELEMENTSOF(t_wrapping) }, { "odd", t_odd, ELEMENTSOF(t_odd) },
        { "find", t_find, ELEMENTSOF(t_find) },          { "empty", NULL, 0 },
};

/* A C_GetAttributeValue template as a caller writes it: buffers, length queries, a nested template. */
static CK_BYTE g_label[32], g_id[16], g_class[8], g_mechs[4 * sizeof(CK_ULONG)], g_inner_label[16],
        g_inner_class[8];
static CK_ATTRIBUTE g_inner[] = {
        { CKA_CLASS, g_inner_class, sizeof(g_inner_class) },
        { CKA_LABEL, g_inner_label, sizeof(g_inner_label) },
        { CKA_VALUE_LEN, NULL, 0 },
};
static CK_ATTRIBUTE g_attrs[] = {
        { CKA_LABEL, g_label, sizeof(g_label) },         { CKA_VALUE, NULL, 0 },
        { CKA_ALLOWED_MECHANISMS, g_mechs, sizeof(g_mechs) }, { CKA_WRAP_TEMPLATE, g_inner, sizeof(g_inner) },
        { CKA_CLASS, g_class, sizeof(g_class) },         { CKA_ID, g_id, sizeof(g_id) },
        { CKA_UNWRAP_TEMPLATE, NULL, 0 },
};

static void template_server_seeds(void)
{
        static const uint8_t zero[FUZZ_CONFIG_SIZE];
        uint8_t hostile[FUZZ_CONFIG_SIZE];

        for (size_t i = 0; i < FUZZ_CONFIG_SIZE; i++)
                hostile[i] = (uint8_t) (0x35 + 37 * i);

        for (size_t s = 0; s < ELEMENTSOF(tmpl_server_calls); s++) {
                WireCall call = tmpl_server_calls[s];
                const char *sig = wire_call_info(call)->signature;
                size_t first = fuzz_sig_find(call, "aA");
                WireArg args[KYSO_WIRE_ARGS_MAX];
                char name[128];

                for (size_t t = 0; t < ELEMENTSOF(templates); t++) {
                        Buffer tail;

                        canned_client_args(call, args);
                        for (size_t i = 0; sig[i]; i++)
                                if (sig[i] == 'a') {
                                        /* GenerateKeyPair: public, then private. */
                                        size_t k = (i == first) ? t : (t + 1) % ELEMENTSOF(templates);

                                        args[i].ptr = templates[k].attrs;
                                        args[i].len = templates[k].count;
                                } else if (sig[i] == 'A') {
                                        args[i].ptr = g_attrs;
                                        args[i].len = t == 0 ? ELEMENTSOF(g_attrs) : (t * 2) % ELEMENTSOF(g_attrs);
                                }
                        buffer_init(&tail, KYSO_WIRE_FRAME_MAX);
                        request_slice(call, args, first, SIZE_MAX, &tail);
                        snprintf(name, sizeof(name), "%s-%s", wire_call_info(call)->name, templates[t].name);
                        write_seed("fuzz-wire-template", name, (uint8_t) s, (t % 2) ? hostile : zero, tail.data,
                                   tail.len);
                        buffer_done(&tail);
                        if (strchr(sig, 'A') && t >= 2)
                                break;
                }
        }
}

/* A backend that answers a GetAttributeValue honestly: lengths within the buffers, types kept. */
static void fill_honestly(CK_ATTRIBUTE *attrs, CK_ULONG count)
{
        for (CK_ULONG i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];

                if (!at->pValue) {
                        /* The length of a value the caller did not ask for yet, in whole units. */
                        if (i % 2)
                                at->ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        else if (wire_attribute_kind(at->type) == WIRE_ATTR_TEMPLATE)
                                at->ulValueLen = 2 * sizeof(CK_ATTRIBUTE);
                        else
                                at->ulValueLen = 9;
                        continue;
                }
                switch (wire_attribute_kind(at->type)) {
                case WIRE_ATTR_BYTES:
                        if (at->ulValueLen > 7)
                                at->ulValueLen = 7;
                        memset(at->pValue, 'v', at->ulValueLen);
                        break;
                case WIRE_ATTR_ULONGS:
                        at->ulValueLen -= at->ulValueLen % sizeof(CK_ULONG);
                        for (CK_ULONG j = 0; j < at->ulValueLen / sizeof(CK_ULONG); j++)
                                ((CK_ULONG *) at->pValue)[j] = 0x1000 + j;
                        break;
                default:
                        fill_honestly(at->pValue, at->ulValueLen / sizeof(CK_ATTRIBUTE));
                        break;
                }
        }
}

/* What the server side encodes as the reply to a client's args: encode, decode, answer, cut the header. */
static void server_reply(WireCall call, const WireArg *client, CK_RV rv, bool answer_attrs, Buffer *ret)
{
        WireArg args[KYSO_WIRE_ARGS_MAX];
        const char *sig = wire_call_info(call)->signature;
        Buffer frame, reply;
        uint32_t serial;
        WireCall got;
        Arena *arena = arena_new(FUZZ_ARENA_LIMIT);

        buffer_init(&frame, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        buffer_init(&reply, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        fuzz_check(arena);
        fuzz_check(wire_encode_request(&frame, 1, call, client) == 0);
        fuzz_check(wire_decode_request(frame.data + KYSO_WIRE_HEADER_SIZE, frame.len - KYSO_WIRE_HEADER_SIZE, arena,
                                       &serial, &got, args) == 0);
        for (size_t i = 0; sig[i]; i++)
                if (sig[i] == 'A' && answer_attrs)
                        fill_honestly(args[i].ptr, args[i].len);
        fuzz_check(wire_encode_reply(&reply, serial, call, rv, args) == 0);
        fuzz_check(reply.len >= KYSO_WIRE_HEADER_SIZE + REPLY_HEADER);
        buffer_add_bytes(ret, reply.data + KYSO_WIRE_HEADER_SIZE + REPLY_HEADER,
                         reply.len - KYSO_WIRE_HEADER_SIZE - REPLY_HEADER);
        buffer_done(&frame);
        buffer_done(&reply);
        arena_free(arena);
}

static void template_client_seeds(void)
{
        for (unsigned n = 0; n < 24; n++) {
                WireArg args[KYSO_WIRE_ARGS_MAX] = { 0 };
                uint8_t cfg[FUZZ_CONFIG_SIZE];
                FuzzTrack t = { .n = 0 };
                Config c = { .bytes = cfg };
                CK_ATTRIBUTE *attrs;
                size_t count;
                CK_RV rv;
                Buffer tail;
                char name[64];

                /* Varied but fixed: counts, types, absent buffers, nested arrays. */
                for (size_t i = 0; i < FUZZ_CONFIG_SIZE; i++)
                        cfg[i] = (uint8_t) (n * 53 + i * 29 + (i * i * n) % 7);
                cfg[0] = (uint8_t) (1 + n % 5);
                cfg[1] = (uint8_t) n;
                /* The same draws as tmpl_run_client. */
                count = cfg_byte(&c) % 6;
                rv = reply_rvs[cfg_byte(&c) % ELEMENTSOF(reply_rvs)];
                attrs = fuzz_track_alloc(&t, count * sizeof(CK_ATTRIBUTE));
                for (size_t i = 0; i < count; i++)
                        client_attr(&c, &t, &attrs[i], 1);
                args[0].value = 1;
                args[1].value = 2;
                args[2].ptr = attrs;
                args[2].len = count;

                buffer_init(&tail, KYSO_WIRE_FRAME_MAX);
                server_reply(KYSO_CALL_C_GetAttributeValue, args, rv, true, &tail);
                snprintf(name, sizeof(name), "client-GetAttributeValue-%u", n);
                write_seed("fuzz-wire-template", name, (uint8_t) ELEMENTSOF(tmpl_server_calls), cfg, tail.data,
                           tail.len);
                buffer_done(&tail);
                fuzz_track_free(&t);
        }
}

/* ---- mechanisms ---- */

static CK_BYTE iv12[12] = "0123456789ab", iv16[16] = "0123456789abcdef", aad[5] = "hdr01", point[65] = { 4 };
static CK_BYTE tag_buf[16], nonce_buf[13];
static CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
static CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, aad, sizeof(aad) };
static CK_RSA_PKCS_OAEP_PARAMS oaep_nolabel = { CKM_SHA_1, CKG_MGF1_SHA1, 0, NULL, 0 };
static CK_AES_CTR_PARAMS ctr = { 128, "0123456789abcdef" };
static CK_GCM_PARAMS gcm = { iv12, sizeof(iv12), 96, aad, sizeof(aad), 128 };
static CK_CCM_PARAMS ccm = { 64, nonce_buf, 13, aad, sizeof(aad), 16 };
static CK_ECDH1_DERIVE_PARAMS ecdh = { CKD_NULL, 0, NULL, sizeof(point), point };
static CK_ECDH1_DERIVE_PARAMS ecdh_kdf = { CKD_SHA256_KDF, sizeof(aad), aad, sizeof(point), point };
static CK_KEY_DERIVATION_STRING_DATA kds = { iv16, sizeof(iv16) };
static CK_DES_CBC_ENCRYPT_DATA_PARAMS des_cbc = { "01234567", iv16, sizeof(iv16) };
static CK_AES_CBC_ENCRYPT_DATA_PARAMS aes_cbc = { "0123456789abcdef", iv16, sizeof(iv16) };
static CK_EDDSA_PARAMS eddsa = { CK_TRUE, sizeof(aad), aad };
static CK_BYTE block_counter[8];
static CK_CHACHA20_PARAMS chacha = { block_counter, 32, iv12, 96 };
static CK_SALSA20_CHACHA20_POLY1305_PARAMS chachapoly = { iv12, sizeof(iv12), aad, sizeof(aad) };
static CK_ULONG mac_len = 16;
static CK_OBJECT_HANDLE base_key = 7;
static CK_BYTE vendor_param[5] = "vendr";

static const struct {
        const char *name;
        CK_MECHANISM m;
} mechanisms[] = {
        { "RSA_PKCS", { CKM_RSA_PKCS, NULL, 0 } },
        { "RSA_PKCS_PSS", { CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss) } },
        { "RSA_PKCS_OAEP", { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) } },
        { "RSA_PKCS_OAEP-nolabel", { CKM_RSA_PKCS_OAEP, &oaep_nolabel, sizeof(oaep_nolabel) } },
        { "AES_CTR", { CKM_AES_CTR, &ctr, sizeof(ctr) } },
        { "AES_GCM", { CKM_AES_GCM, &gcm, sizeof(gcm) } },
        { "AES_CCM", { CKM_AES_CCM, &ccm, sizeof(ccm) } },
        { "ECDH1_DERIVE", { CKM_ECDH1_DERIVE, &ecdh, sizeof(ecdh) } },
        { "ECDH1_COFACTOR_DERIVE", { CKM_ECDH1_COFACTOR_DERIVE, &ecdh_kdf, sizeof(ecdh_kdf) } },
        { "AES_ECB_ENCRYPT_DATA", { CKM_AES_ECB_ENCRYPT_DATA, &kds, sizeof(kds) } },
        { "DES_CBC_ENCRYPT_DATA", { CKM_DES_CBC_ENCRYPT_DATA, &des_cbc, sizeof(des_cbc) } },
        { "AES_CBC_ENCRYPT_DATA", { CKM_AES_CBC_ENCRYPT_DATA, &aes_cbc, sizeof(aes_cbc) } },
        { "EDDSA", { CKM_EDDSA, &eddsa, sizeof(eddsa) } },
        { "CHACHA20", { CKM_CHACHA20, &chacha, sizeof(chacha) } },
        { "CHACHA20_POLY1305", { CKM_CHACHA20_POLY1305, &chachapoly, sizeof(chachapoly) } },
        { "SHA256_HMAC_GENERAL", { CKM_SHA256_HMAC_GENERAL, &mac_len, sizeof(mac_len) } },
        { "CONCATENATE_BASE_AND_KEY", { CKM_CONCATENATE_BASE_AND_KEY, &base_key, sizeof(base_key) } },
        { "AES_CBC_PAD-iv", { CKM_AES_CBC_PAD, iv16, sizeof(iv16) } },
        { "vendor-bytes", { CKM_VENDOR_DEFINED | 0x42, vendor_param, sizeof(vendor_param) } },
        { "GCM-short-struct", { CKM_AES_GCM, iv12, sizeof(iv12) } }, /* known mechanism, raw bytes */
        { "EC_KEY_PAIR_GEN", { CKM_EC_KEY_PAIR_GEN, NULL, 0 } },
        { "empty-pointer", { CKM_AES_CBC, iv16, 0 } },
};

static CK_GCM_MESSAGE_PARAMS gcm_msg = { iv12, sizeof(iv12), 0, 2 /* CKG_GENERATE_COUNTER */, tag_buf, 128 };
static CK_CCM_MESSAGE_PARAMS ccm_msg = { 64, nonce_buf, sizeof(nonce_buf), 32, 3 /* CKG_GENERATE_RANDOM */, tag_buf, 16 };
static CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS chacha_msg = { iv12, sizeof(iv12), tag_buf };

static const struct {
        const char *name;
        CK_MECHANISM_TYPE value;
        void *ptr;
        CK_ULONG len;
} messages[] = {
        { "GCM_MESSAGE", CKM_AES_GCM, &gcm_msg, sizeof(gcm_msg) },
        { "CCM_MESSAGE", CKM_AES_CCM, &ccm_msg, sizeof(ccm_msg) },
        { "CHACHA_POLY_MESSAGE", CKM_CHACHA20_POLY1305, &chacha_msg, sizeof(chacha_msg) },
        { "bytes", CKM_VENDOR_DEFINED, vendor_param, sizeof(vendor_param) },
        { "none", CKM_AES_GCM, NULL, 0 },
};

static void mechanism_server_seeds(void)
{
        static const uint8_t cfg[FUZZ_CONFIG_SIZE] = { 1 };
        size_t next_m = 0, next_p = 0;

        for (size_t s = 0; s < ELEMENTSOF(mech_server_calls); s++) {
                WireCall call = mech_server_calls[s];
                size_t at = fuzz_sig_find(call, "mp");
                bool is_m = wire_call_info(call)->signature[at] == 'm';
                /* Round robin: every mechanism and message parameter kind at least twice. */
                size_t n = is_m ? 3 : 2;

                for (size_t k = 0; k < n; k++) {
                        WireArg args[KYSO_WIRE_ARGS_MAX];
                        Buffer tail;
                        char name[128];
                        const char *what;

                        canned_client_args(call, args);
                        if (is_m) {
                                size_t i = next_m++ % ELEMENTSOF(mechanisms);

                                args[at].ptr = (void *) &mechanisms[i].m;
                                what = mechanisms[i].name;
                        } else {
                                size_t i = next_p++ % ELEMENTSOF(messages);

                                args[at].value = messages[i].value;
                                args[at].ptr = messages[i].ptr;
                                args[at].len = messages[i].len;
                                what = messages[i].name;
                        }
                        buffer_init(&tail, KYSO_WIRE_FRAME_MAX);
                        request_slice(call, args, at, at + 1, &tail);
                        snprintf(name, sizeof(name), "%s-%s", wire_call_info(call)->name, what);
                        write_seed("fuzz-wire-mechanism", name, (uint8_t) s, cfg, tail.data, tail.len);
                        buffer_done(&tail);
                }
        }
}

static void mechanism_client_seeds(void)
{
        for (unsigned n = 0; n < 6 * ELEMENTSOF(mech_client_calls); n++) {
                WireCall call = mech_client_calls[n % ELEMENTSOF(mech_client_calls)];
                const char *sig = wire_call_info(call)->signature;
                WireArg args[KYSO_WIRE_ARGS_MAX] = { 0 };
                uint8_t cfg[FUZZ_CONFIG_SIZE] = { 0 };
                FuzzTrack t = { .n = 0 };
                Buffer tail;
                char name[128];

                cfg[0] = (uint8_t) (n / ELEMENTSOF(mech_client_calls)); /* the parameter's case */
                cfg[1] = 12;
                cfg[2] = (cfg[0] == 2) ? 128 : 16;
                cfg[3] = (cfg[0] == 1 && (n & 1)) ? 2 : 0; /* raw bytes the size of a GCM structure */
                /* The same arguments as mech_run_client. */
                args[0].value = 1;
                for (size_t i = 1; sig[i]; i++)
                        if (sig[i] == 'p')
                                mech_client_param(cfg, &t, &args[i]);
                        else if (sig[i] == 'y') {
                                args[i].len = 3;
                                args[i].ptr = fuzz_track_alloc(&t, 3);
                        }
                buffer_init(&tail, KYSO_WIRE_FRAME_MAX);
                server_reply(call, args, CKR_OK, false, &tail);
                snprintf(name, sizeof(name), "client-%s-%u", wire_call_info(call)->name, cfg[0]);
                write_seed("fuzz-wire-mechanism", name,
                           (uint8_t) (ELEMENTSOF(mech_server_calls) + n % ELEMENTSOF(mech_client_calls)), cfg,
                           tail.data, tail.len);
                buffer_done(&tail);
                fuzz_track_free(&t);
        }
}

int main(int argc, char *argv[])
{
        if (argc != 2) {
                fprintf(stderr, "Usage: %s CORPUS-DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        out_dir = argv[1];
        template_server_seeds();
        template_client_seeds();
        mechanism_server_seeds();
        mechanism_client_seeds();
        return EXIT_SUCCESS;
}
