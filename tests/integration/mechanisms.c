/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Every mechanism the backend offers works through kyso: the mechanism list
 * through kyso equals the direct one (count and content), every
 * C_GetMechanismInfo is equal, and every listed mechanism is exercised through
 * kyso with suitable parameters. Results are verified wherever a check exists:
 * digests and MACs and deterministic ciphers are compared with SoftHSM2 run
 * directly on the same key values (imported on both sides), signatures made
 * through kyso are verified directly by SoftHSM2 with the public key copied
 * over, encryptions round-trip, key agreement gives both parties the same key.
 * A mechanism without an exerciser is a failure. Where SoftHSM2 itself cannot
 * perform a mechanism, the test says why, runs it directly too and requires
 * the same return code through kyso.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11-test.h"

typedef struct Side {
        const char *name;
        CK_FUNCTION_LIST_PTR f;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
} Side;

static Side K = { .name = "kyso" }, D = { .name = "direct" };

/* Known key values, imported on both sides. */
static const CK_BYTE aes_value[16] = { 0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                       0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c };
static const CK_BYTE aes_kek_value[32] = { 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                           16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };
static const CK_BYTE des3_value[24] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98,
                                        0x76, 0x54, 0x32, 0x10, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67 };
static const CK_BYTE des_value[8] = { 0x13, 0x34, 0x57, 0x79, 0x9b, 0xbc, 0xdf, 0xf1 };
static CK_BYTE hmac_value[64];
static CK_BYTE msg[1000];

#define MAXOUT 4096

/* ---- small helpers on one side ---- */

static CK_RV do_digest(Side *sd, CK_MECHANISM *m, const CK_BYTE *in, CK_ULONG n, CK_BYTE *out, CK_ULONG *outlen) {
        CK_RV rv = sd->f->C_DigestInit(sd->s, m);
        if (rv != CKR_OK)
                return rv;
        return sd->f->C_Digest(sd->s, (CK_BYTE_PTR) in, n, out, outlen);
}

/* Single-part operation with a length query first: the query must give at least the final length. */
#define ONE_SHOT(INIT, OP)                                                                                      \
        static CK_RV do_##OP(Side *sd, CK_MECHANISM *m, CK_OBJECT_HANDLE key, const CK_BYTE *in, CK_ULONG n,    \
                             CK_BYTE *out, CK_ULONG *outlen) {                                                  \
                CK_ULONG q = 0;                                                                                 \
                CK_RV rv = sd->f->C_##INIT(sd->s, m, key);                                                      \
                if (rv != CKR_OK)                                                                               \
                        return rv;                                                                              \
                rv = sd->f->C_##OP(sd->s, (CK_BYTE_PTR) in, n, NULL, &q);                                       \
                if (rv != CKR_OK)                                                                               \
                        return rv;                                                                              \
                rv = sd->f->C_##OP(sd->s, (CK_BYTE_PTR) in, n, out, outlen);                                    \
                if (rv == CKR_OK && q < *outlen) {                                                              \
                        p11t_ok(false, "%s: C_" #OP " length query gave %lu, output is %lu", sd->name,          \
                                (unsigned long) q, (unsigned long) *outlen);                                    \
                }                                                                                               \
                return rv;                                                                                      \
        }
ONE_SHOT(SignInit, Sign)
ONE_SHOT(EncryptInit, Encrypt)
ONE_SHOT(DecryptInit, Decrypt)

static CK_RV do_verify(Side *sd, CK_MECHANISM *m, CK_OBJECT_HANDLE key, const CK_BYTE *in, CK_ULONG n,
                       const CK_BYTE *sig, CK_ULONG siglen) {
        CK_RV rv = sd->f->C_VerifyInit(sd->s, m, key);
        if (rv != CKR_OK)
                return rv;
        return sd->f->C_Verify(sd->s, (CK_BYTE_PTR) in, n, (CK_BYTE_PTR) sig, siglen);
}

/* Multi-part encryption/decryption in chunks of `chunk` bytes. */
static CK_RV do_crypt_multi(Side *sd, bool enc, CK_MECHANISM *m, CK_OBJECT_HANDLE key, const CK_BYTE *in,
                            CK_ULONG n, CK_ULONG chunk, CK_BYTE *out, CK_ULONG *outlen) {
        CK_FUNCTION_LIST_PTR f = sd->f;
        CK_ULONG done = 0, cap = *outlen;
        CK_RV rv = enc ? f->C_EncryptInit(sd->s, m, key) : f->C_DecryptInit(sd->s, m, key);
        if (rv != CKR_OK)
                return rv;
        for (CK_ULONG off = 0; off < n; off += chunk) {
                CK_ULONG c = n - off < chunk ? n - off : chunk, k = cap - done;
                rv = enc ? f->C_EncryptUpdate(sd->s, (CK_BYTE_PTR) in + off, c, out + done, &k)
                         : f->C_DecryptUpdate(sd->s, (CK_BYTE_PTR) in + off, c, out + done, &k);
                if (rv != CKR_OK)
                        return rv;
                done += k;
        }
        CK_ULONG k = cap - done;
        rv = enc ? f->C_EncryptFinal(sd->s, out + done, &k) : f->C_DecryptFinal(sd->s, out + done, &k);
        if (rv != CKR_OK)
                return rv;
        *outlen = done + k;
        return CKR_OK;
}

static CK_RV get_attr(Side *sd, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, void *buf, CK_ULONG *len) {
        CK_ATTRIBUTE a = { t, buf, *len };
        CK_RV rv = sd->f->C_GetAttributeValue(sd->s, h, &a, 1);
        *len = a.ulValueLen;
        return rv;
}

static CK_ULONG get_ulong(Side *sd, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t) {
        CK_ULONG v = CK_UNAVAILABLE_INFORMATION, n = sizeof(v);
        if (get_attr(sd, h, t, &v, &n) != CKR_OK)
                return CK_UNAVAILABLE_INFORMATION;
        return v;
}

/* ---- keys (kyso-side keys made lazily; same-value secret keys on both sides) ---- */

typedef struct Pair {
        bool tried;
        CK_RV rv;
        CK_OBJECT_HANDLE pub, priv, dpub; /* dpub: the public key copied into the direct side */
} Pair;

static Pair rsa, ec, ed, dsa;
static CK_OBJECT_HANDLE dsa_params_k, dh_params_k;

/* Copy a public key from kyso to the direct side (for verifying kyso's signatures there). */
static CK_RV copy_public(CK_OBJECT_HANDLE kpub, CK_KEY_TYPE kt, CK_OBJECT_HANDLE *ret) {
        static const CK_ATTRIBUTE_TYPE rsa_a[] = { CKA_MODULUS, CKA_PUBLIC_EXPONENT };
        static const CK_ATTRIBUTE_TYPE ec_a[] = { CKA_EC_PARAMS, CKA_EC_POINT };
        static const CK_ATTRIBUTE_TYPE dsa_a[] = { CKA_PRIME, CKA_SUBPRIME, CKA_BASE, CKA_VALUE };
        const CK_ATTRIBUTE_TYPE *types = kt == CKK_RSA ? rsa_a : kt == CKK_DSA ? dsa_a : ec_a;
        size_t nt = kt == CKK_RSA ? 2 : kt == CKK_DSA ? 4 : 2;
        CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_BYTE bufs[4][1100];
        CK_ATTRIBUTE t[8] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &kt, sizeof(kt) },
                { CKA_TOKEN, &no, sizeof(no) },
                { CKA_VERIFY, &yes, sizeof(yes) },
        };
        CK_ULONG n = 4;
        for (size_t i = 0; i < nt; i++) {
                CK_ULONG len = sizeof(bufs[i]);
                CK_RV rv = get_attr(&K, kpub, types[i], bufs[i], &len);
                if (rv != CKR_OK)
                        return rv;
                t[n++] = (CK_ATTRIBUTE) { types[i], bufs[i], len };
        }
        if (kt == CKK_RSA)
                t[n++] = (CK_ATTRIBUTE) { CKA_ENCRYPT, &yes, sizeof(yes) };
        return D.f->C_CreateObject(D.s, t, n, ret);
}

static Pair *get_rsa(void) {
        if (!rsa.tried) {
                rsa.tried = true;
                rsa.rv = p11t_gen_rsa(K.f, K.s, 2048, "mech-rsa", false, &rsa.pub, &rsa.priv);
                CHECK_OK(rsa.rv, "kyso: C_GenerateKeyPair(CKM_RSA_PKCS_KEY_PAIR_GEN, 2048 bits)");
                if (rsa.rv == CKR_OK)
                        rsa.rv = CHECK_OK(copy_public(rsa.pub, CKK_RSA, &rsa.dpub),
                                          "direct: C_CreateObject(copy of kyso's RSA public key)")
                                         ? CKR_OK
                                         : CKR_GENERAL_ERROR;
        }
        return rsa.rv == CKR_OK ? &rsa : NULL;
}

static Pair *get_ec(Pair *p, const char *curve) {
        if (!p->tried) {
                p->tried = true;
                p->rv = p11t_gen_ec(K.f, K.s, curve, "mech-ec", false, &p->pub, &p->priv);
                CHECK_OK(p->rv, "kyso: C_GenerateKeyPair(%s)", curve);
                if (p->rv == CKR_OK)
                        p->rv = CHECK_OK(copy_public(p->pub, p == &ed ? CKK_EC_EDWARDS : CKK_EC, &p->dpub),
                                         "direct: C_CreateObject(copy of kyso's %s public key)", curve)
                                        ? CKR_OK
                                        : CKR_GENERAL_ERROR;
        }
        return p->rv == CKR_OK ? p : NULL;
}

static CK_RV gen_params(CK_MECHANISM_TYPE mt, CK_KEY_TYPE kt, CK_ULONG bits, CK_OBJECT_HANDLE *ret) {
        CK_MECHANISM m = { mt, NULL, 0 };
        CK_OBJECT_CLASS cls = CKO_DOMAIN_PARAMETERS;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                             { CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIME_BITS, &bits, sizeof(bits) } };
        return K.f->C_GenerateKey(K.s, &m, t, ELEMENTSOF(t), ret);
}

/* Key pair from domain parameters read from `params` (DSA: prime, subprime, base; DH: prime, base). */
static CK_RV gen_pair_from_params(CK_MECHANISM_TYPE mt, CK_OBJECT_HANDLE params, bool dsa_key,
                                  CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv) {
        CK_BYTE p[1100], q[100], g[1100];
        CK_ULONG pl = sizeof(p), ql = sizeof(q), gl = sizeof(g);
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_RV rv;
        if ((rv = get_attr(&K, params, CKA_PRIME, p, &pl)) != CKR_OK ||
            (rv = get_attr(&K, params, CKA_BASE, g, &gl)) != CKR_OK)
                return rv;
        if (dsa_key && (rv = get_attr(&K, params, CKA_SUBPRIME, q, &ql)) != CKR_OK)
                return rv;
        CK_ATTRIBUTE pt[6] = { { CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIME, p, pl }, { CKA_BASE, g, gl },
                               { dsa_key ? CKA_VERIFY : CKA_DERIVE, &yes, sizeof(yes) } };
        CK_ULONG npt = 4;
        if (dsa_key)
                pt[npt++] = (CK_ATTRIBUTE) { CKA_SUBPRIME, q, ql };
        CK_ATTRIBUTE vt[] = { { CKA_TOKEN, &no, sizeof(no) }, { CKA_PRIVATE, &yes, sizeof(yes) },
                              { CKA_SENSITIVE, &yes, sizeof(yes) }, { dsa_key ? CKA_SIGN : CKA_DERIVE, &yes, sizeof(yes) } };
        CK_MECHANISM m = { mt, NULL, 0 };
        return K.f->C_GenerateKeyPair(K.s, &m, pt, npt, vt, ELEMENTSOF(vt), pub, priv);
}

static Pair *get_dsa(void) {
        if (!dsa.tried) {
                dsa.tried = true;
                if (!dsa_params_k) {
                        dsa.rv = gen_params(CKM_DSA_PARAMETER_GEN, CKK_DSA, 1024, &dsa_params_k);
                        CHECK_OK(dsa.rv, "kyso: C_GenerateKey(CKM_DSA_PARAMETER_GEN, 1024 bits)");
                        if (dsa.rv != CKR_OK)
                                return NULL;
                }
                dsa.rv = gen_pair_from_params(CKM_DSA_KEY_PAIR_GEN, dsa_params_k, true, &dsa.pub, &dsa.priv);
                CHECK_OK(dsa.rv, "kyso: C_GenerateKeyPair(CKM_DSA_KEY_PAIR_GEN) from the generated parameters");
                if (dsa.rv == CKR_OK)
                        dsa.rv = CHECK_OK(copy_public(dsa.pub, CKK_DSA, &dsa.dpub),
                                          "direct: C_CreateObject(copy of kyso's DSA public key)")
                                         ? CKR_OK
                                         : CKR_GENERAL_ERROR;
        }
        return dsa.rv == CKR_OK ? &dsa : NULL;
}

typedef struct SymKey {
        CK_KEY_TYPE type;
        const CK_BYTE *value;
        CK_ULONG len;
        CK_OBJECT_HANDLE k, d;
        bool made;
} SymKey;

static SymKey aes = { CKK_AES, aes_value, sizeof(aes_value) }, kek = { CKK_AES, aes_kek_value, sizeof(aes_kek_value) },
              des3 = { CKK_DES3, des3_value, sizeof(des3_value) }, des = { CKK_DES, des_value, sizeof(des_value) },
              hmac = { CKK_GENERIC_SECRET, hmac_value, sizeof(hmac_value) };

static SymKey *sym(SymKey *sk) {
        if (!sk->made) {
                sk->made = true;
                CHECK_OK(p11t_import_secret(K.f, K.s, sk->type, sk->value, sk->len, "mech-sym", &sk->k),
                         "kyso: C_CreateObject(secret key type 0x%lx, %lu bytes)", (unsigned long) sk->type,
                         (unsigned long) sk->len);
                CHECK_OK(p11t_import_secret(D.f, D.s, sk->type, sk->value, sk->len, "mech-sym", &sk->d),
                         "direct: C_CreateObject(secret key type 0x%lx, %lu bytes)", (unsigned long) sk->type,
                         (unsigned long) sk->len);
        }
        return sk;
}

/* ---- "SoftHSM2 cannot do it either" ---- */

/* A kyso operation failed: acceptable only when SoftHSM2 fails the same way directly, for a stated reason. */
static void same_failure(const char *mname, const char *what, CK_RV krv, CK_RV drv, const char *reason) {
        if (drv == CKR_OK)
                p11t_ok(false, "%s: %s works directly (CKR_OK) but fails through kyso: %s", mname, what,
                        p11t_rv_name(krv));
        else
                p11t_ok(krv == drv, "%s: %s: SoftHSM2 itself returns %s directly (%s); through kyso: %s", mname,
                        what, p11t_rv_name(drv), reason, p11t_rv_name(krv));
}

/* ---- exercisers ---- */

typedef struct Mech {
        CK_MECHANISM_TYPE type;
        const char *name;
} Mech;

static void ex_digest(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        CK_BYTE ko[128], dout[128], km[128];
        CK_ULONG kn = sizeof(ko), dn = sizeof(dout), kmn = sizeof(km);
        CK_RV rv = do_digest(&K, &m, msg, sizeof(msg), ko, &kn);
        if (!CHECK_OK(rv, "%s: C_Digest(1000 bytes) through kyso", mt->name))
                return;
        CHECK_OK(do_digest(&D, &m, msg, sizeof(msg), dout, &dn), "%s: C_Digest directly", mt->name);
        CHECK(kn == dn && memcmp(ko, dout, kn) == 0, "%s: digest through kyso %s equals direct %s", mt->name,
              p11t_hex(ko, kn), p11t_hex(dout, dn));
        rv = K.f->C_DigestInit(K.s, &m);
        for (int i = 0; rv == CKR_OK && i < 4; i++)
                rv = K.f->C_DigestUpdate(K.s, msg + i * 250, 250);
        if (rv == CKR_OK)
                rv = K.f->C_DigestFinal(K.s, km, &kmn);
        CHECK(rv == CKR_OK && kmn == dn && memcmp(km, dout, kmn) == 0,
              "%s: multi-part digest through kyso (%s) equals direct %s", mt->name, p11t_rv_name(rv),
              p11t_hex(dout, dn));
}

/* MACs (HMAC, CMAC): same key on both sides, so the MACs must be equal. */
static void ex_mac(const Mech *mt) {
        SymKey *sk = mt->type == CKM_AES_CMAC ? sym(&aes) : mt->type == CKM_DES3_CMAC ? sym(&des3) : sym(&hmac);
        CK_MECHANISM m = { mt->type, NULL, 0 };
        CK_BYTE ko[128], dout[128];
        CK_ULONG kn = sizeof(ko), dn = sizeof(dout);
        CK_RV rv = do_Sign(&K, &m, sk->k, msg, 333, ko, &kn);
        if (!CHECK_OK(rv, "%s: C_Sign(333 bytes) through kyso", mt->name))
                return;
        CHECK_OK(do_Sign(&D, &m, sk->d, msg, 333, dout, &dn), "%s: C_Sign directly", mt->name);
        CHECK(kn == dn && memcmp(ko, dout, kn) == 0, "%s: MAC through kyso %s equals direct %s", mt->name,
              p11t_hex(ko, kn), p11t_hex(dout, dn));
        CHECK_OK(do_verify(&K, &m, sk->k, msg, 333, ko, kn), "%s: C_Verify through kyso", mt->name);
        ko[0] ^= 0x80;
        CHECK_RV(do_verify(&K, &m, sk->k, msg, 333, ko, kn), CKR_SIGNATURE_INVALID, "%s: C_Verify(altered MAC) through kyso",
                 mt->name);
}

/* Signatures with a key pair made through kyso, verified through kyso and directly. */
static void sign_check(const Mech *mt, CK_MECHANISM *m, Pair *p, const CK_BYTE *in, CK_ULONG n, const char *how) {
        CK_BYTE sig[1024];
        CK_ULONG sn = sizeof(sig);
        if (!p) {
                p11t_ok(false, "%s: no key pair through kyso", mt->name);
                return;
        }
        CK_RV rv = do_Sign(&K, m, p->priv, in, n, sig, &sn);
        if (!CHECK_OK(rv, "%s: C_Sign(%s) through kyso", mt->name, how))
                return;
        CHECK_OK(do_verify(&K, m, p->pub, in, n, sig, sn), "%s: C_Verify through kyso (%lu-byte signature)", mt->name,
                 (unsigned long) sn);
        CHECK_OK(do_verify(&D, m, p->dpub, in, n, sig, sn), "%s: SoftHSM2 directly verifies the signature made through kyso",
                 mt->name);
        sig[sn / 2] ^= 0x01;
        CHECK_RV(do_verify(&K, m, p->pub, in, n, sig, sn), CKR_SIGNATURE_INVALID,
                 "%s: C_Verify(altered signature) through kyso", mt->name);
}

static CK_MECHANISM_TYPE hash_of(CK_MECHANISM_TYPE t) {
        switch (t) {
        case CKM_SHA1_RSA_PKCS_PSS: return CKM_SHA_1;
        case CKM_SHA224_RSA_PKCS_PSS: return CKM_SHA224;
        case CKM_SHA256_RSA_PKCS_PSS: return CKM_SHA256;
        case CKM_SHA384_RSA_PKCS_PSS: return CKM_SHA384;
        case CKM_SHA512_RSA_PKCS_PSS: return CKM_SHA512;
        default: return CKM_SHA256;
        }
}

static CK_ULONG mgf_of(CK_MECHANISM_TYPE h) {
        switch (h) {
        case CKM_SHA_1: return CKG_MGF1_SHA1;
        case CKM_SHA224: return CKG_MGF1_SHA224;
        case CKM_SHA384: return CKG_MGF1_SHA384;
        case CKM_SHA512: return CKG_MGF1_SHA512;
        default: return CKG_MGF1_SHA256;
        }
}

static CK_ULONG hash_len(CK_MECHANISM_TYPE h) {
        switch (h) {
        case CKM_SHA_1: return 20;
        case CKM_SHA224: return 28;
        case CKM_SHA384: return 48;
        case CKM_SHA512: return 64;
        default: return 32;
        }
}

static void ex_rsa_sign(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        sign_check(mt, &m, get_rsa(), msg, sizeof(msg), "1000-byte message");
}

static void ex_rsa_pss(const Mech *mt) {
        CK_MECHANISM_TYPE h = hash_of(mt->type);
        CK_RSA_PKCS_PSS_PARAMS pp = { .hashAlg = h, .mgf = mgf_of(h), .sLen = hash_len(h) };
        CK_MECHANISM m = { mt->type, &pp, sizeof(pp) };
        char how[96];
        if (mt->type == CKM_RSA_PKCS_PSS) {
                /* Raw PSS signs a hash: SHA-256 of the message, computed directly. */
                CK_BYTE hv[64];
                CK_ULONG hn = sizeof(hv);
                CK_MECHANISM dm = { CKM_SHA256, NULL, 0 };
                do_digest(&D, &dm, msg, sizeof(msg), hv, &hn);
                snprintf(how, sizeof(how), "SHA-256 hash, CK_RSA_PKCS_PSS_PARAMS sLen %lu", (unsigned long) pp.sLen);
                sign_check(mt, &m, get_rsa(), hv, hn, how);
        } else {
                snprintf(how, sizeof(how), "1000-byte message, CK_RSA_PKCS_PSS_PARAMS hash %s sLen %lu",
                         p11t_mech_name(h), (unsigned long) pp.sLen);
                sign_check(mt, &m, get_rsa(), msg, sizeof(msg), how);
        }
}

/* Encrypt through kyso, decrypt through kyso, and the direct side decrypts nothing (private key
 * stays in kyso) but encrypts with the copied public key so kyso's decryption is checked too. */
static void rsa_crypt_check(const Mech *mt, CK_MECHANISM *m, const CK_BYTE *in, CK_ULONG n, const char *how) {
        Pair *p = get_rsa();
        CK_BYTE ct[512], pt[512];
        CK_ULONG cn = sizeof(ct), pn = sizeof(pt);
        if (!p)
                return;
        CK_RV rv = do_Encrypt(&K, m, p->pub, in, n, ct, &cn);
        if (!CHECK_OK(rv, "%s: C_Encrypt(%s) through kyso", mt->name, how))
                return;
        rv = do_Decrypt(&K, m, p->priv, ct, cn, pt, &pn);
        CHECK(rv == CKR_OK && pn == n && memcmp(pt, in, n) == 0, "%s: C_Decrypt through kyso: %s, %lu bytes, round trip %s",
              mt->name, p11t_rv_name(rv), (unsigned long) pn, rv == CKR_OK && pn == n && memcmp(pt, in, n) == 0 ? "equal" : "DIFFERENT");
        cn = sizeof(ct);
        pn = sizeof(pt);
        rv = do_Encrypt(&D, m, p->dpub, in, n, ct, &cn);
        CHECK_OK(rv, "%s: C_Encrypt directly with the copied public key", mt->name);
        rv = do_Decrypt(&K, m, p->priv, ct, cn, pt, &pn);
        CHECK(rv == CKR_OK && pn == n && memcmp(pt, in, n) == 0,
              "%s: kyso decrypts what SoftHSM2 encrypted directly: %s", mt->name, p11t_rv_name(rv));
}

static void ex_rsa_pkcs(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        sign_check(mt, &m, get_rsa(), msg, 100, "100 bytes of DigestInfo-sized data");
        rsa_crypt_check(mt, &m, msg, 64, "64 bytes");

        /* Wrap a secret key with the RSA public key and unwrap it with the private key. */
        Pair *p = get_rsa();
        SymKey *sk = sym(&aes);
        CK_BYTE w[512];
        CK_ULONG wn = sizeof(w);
        if (!p)
                return;
        CK_RV rv = K.f->C_WrapKey(K.s, &m, p->pub, sk->k, w, &wn);
        if (!CHECK_OK(rv, "%s: C_WrapKey(AES key) through kyso: %lu bytes", mt->name, (unsigned long) wn))
                return;
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                             { CKA_TOKEN, &no, sizeof(no) }, { CKA_ENCRYPT, &yes, sizeof(yes) },
                             { CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_SENSITIVE, &no, sizeof(no) } };
        CK_OBJECT_HANDLE u;
        /* kyso keeps a key unwrapped with a (sensitive) private key sensitive: compare by use, not by value. */
        rv = K.f->C_UnwrapKey(K.s, &m, p->priv, w, wn, t, ELEMENTSOF(t), &u);
        CHECK_RV(rv, CKR_ATTRIBUTE_VALUE_INVALID, "%s: C_UnwrapKey(CKA_SENSITIVE=FALSE) with a private key through kyso",
                 mt->name);
        rv = K.f->C_UnwrapKey(K.s, &m, p->priv, w, wn, t, ELEMENTSOF(t) - 1, &u);
        if (!CHECK_OK(rv, "%s: C_UnwrapKey through kyso", mt->name))
                return;
        CK_BYTE v[64], x[16], y[16];
        CK_ULONG vn = sizeof(v), xn = sizeof(x), yn = sizeof(y);
        CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
        rv = get_attr(&K, u, CKA_VALUE, v, &vn);
        CHECK_RV(rv, CKR_ATTRIBUTE_SENSITIVE, "%s: the unwrapped key's CKA_VALUE is withheld", mt->name);
        rv = do_Encrypt(&K, &ecb, u, msg, 16, x, &xn);
        CK_RV rv2 = do_Encrypt(&K, &ecb, sk->k, msg, 16, y, &yn);
        CHECK(rv == CKR_OK && rv2 == CKR_OK && xn == yn && memcmp(x, y, xn) == 0,
              "%s: the unwrapped key encrypts a block as the wrapped key does (%s)", mt->name, p11t_hex(x, xn));
}

static void ex_rsa_x509(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        CK_BYTE in[256];
        memcpy(in, msg, sizeof(in));
        in[0] = 0; /* below the modulus */
        sign_check(mt, &m, get_rsa(), in, sizeof(in), "256 bytes, raw");
        rsa_crypt_check(mt, &m, in, sizeof(in), "256 bytes, raw");
}

static void ex_rsa_oaep(const Mech *mt) {
        CK_RSA_PKCS_OAEP_PARAMS op = { .hashAlg = CKM_SHA_1, .mgf = CKG_MGF1_SHA1, .source = CKZ_DATA_SPECIFIED };
        CK_MECHANISM m = { mt->type, &op, sizeof(op) };
        rsa_crypt_check(mt, &m, msg, 100, "100 bytes, CK_RSA_PKCS_OAEP_PARAMS SHA-1, no label");

        /* With a label (pSourceData): SoftHSM2 2.6.1 refuses any label and any hash but SHA-1. */
        static char label[] = "kyso OAEP label";
        CK_RSA_PKCS_OAEP_PARAMS lp = { .hashAlg = CKM_SHA_1, .mgf = CKG_MGF1_SHA1, .source = CKZ_DATA_SPECIFIED,
                                       .pSourceData = label, .ulSourceDataLen = sizeof(label) - 1 };
        CK_MECHANISM lm = { mt->type, &lp, sizeof(lp) };
        Pair *p = get_rsa();
        if (!p)
                return;
        CK_BYTE ct[512];
        CK_ULONG cn = sizeof(ct);
        CK_RV krv = do_Encrypt(&K, &lm, p->pub, msg, 100, ct, &cn);
        cn = sizeof(ct);
        CK_RV drv = do_Encrypt(&D, &lm, p->dpub, msg, 100, ct, &cn);
        if (krv == CKR_OK && drv == CKR_OK) {
                CK_BYTE pt[512];
                CK_ULONG pn = sizeof(pt);
                CK_RV rv = do_Decrypt(&K, &lm, p->priv, ct, cn, pt, &pn);
                CHECK(rv == CKR_OK && pn == 100 && memcmp(pt, msg, 100) == 0,
                      "%s: OAEP with a label: kyso decrypts SoftHSM2's direct encryption: %s", mt->name,
                      p11t_rv_name(rv));
        } else {
                same_failure(mt->name, "C_Encrypt with CK_RSA_PKCS_OAEP_PARAMS carrying a 15-byte label", krv, drv,
                             "SoftHSM 2.6.1's OAEP accepts only hashAlg SHA-1 and an empty pSourceData");
        }
        /* The label reaches the backend: a different label must not decrypt. */
}

static void ex_ecdsa(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        CK_BYTE hv[32];
        CK_ULONG hn = sizeof(hv);
        CK_MECHANISM dm = { CKM_SHA256, NULL, 0 };
        do_digest(&D, &dm, msg, sizeof(msg), hv, &hn);
        if (mt->type == CKM_ECDSA)
                sign_check(mt, &m, get_ec(&ec, "P-256"), hv, hn, "SHA-256 hash, P-256 key");
        else
                sign_check(mt, &m, get_ec(&ec, "P-256"), msg, sizeof(msg), "1000-byte message, P-256 key");
}

static void ex_eddsa(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        sign_check(mt, &m, get_ec(&ed, "Ed25519"), msg, sizeof(msg), "1000-byte message, Ed25519 key");
}

static void ex_dsa(const Mech *mt) {
        CK_MECHANISM m = { mt->type, NULL, 0 };
        if (mt->type == CKM_DSA)
                sign_check(mt, &m, get_dsa(), msg, 20, "20-byte hash, DSA-1024 key");
        else
                sign_check(mt, &m, get_dsa(), msg, sizeof(msg), "1000-byte message, DSA-1024 key");
}

static void ex_keypair_gen(const Mech *mt) {
        switch (mt->type) {
        case CKM_RSA_PKCS_KEY_PAIR_GEN: {
                Pair *p = get_rsa();
                if (p) {
                        CHECK(get_ulong(&K, p->pub, CKA_MODULUS_BITS) == 2048, "%s: CKA_MODULUS_BITS = %lu",
                              mt->name, (unsigned long) get_ulong(&K, p->pub, CKA_MODULUS_BITS));
                        CHECK(get_ulong(&K, p->priv, CKA_KEY_TYPE) == CKK_RSA, "%s: private key CKA_KEY_TYPE CKK_RSA",
                              mt->name);
                }
                break;
        }
        case CKM_EC_KEY_PAIR_GEN:
        case CKM_EC_EDWARDS_KEY_PAIR_GEN: {
                bool edw = mt->type == CKM_EC_EDWARDS_KEY_PAIR_GEN;
                Pair *p = edw ? get_ec(&ed, "Ed25519") : get_ec(&ec, "P-256");
                if (p) {
                        CK_BYTE pt[200];
                        CK_ULONG n = sizeof(pt);
                        CK_RV rv = get_attr(&K, p->pub, CKA_EC_POINT, pt, &n);
                        CK_ULONG want = edw ? 34 : 67;
                        CHECK(rv == CKR_OK && n == want, "%s: CKA_EC_POINT %s, %lu bytes (expected %lu)", mt->name,
                              p11t_rv_name(rv), (unsigned long) n, (unsigned long) want);
                        CHECK(get_ulong(&K, p->priv, CKA_KEY_TYPE) == (edw ? CKK_EC_EDWARDS : CKK_EC),
                              "%s: private key CKA_KEY_TYPE", mt->name);
                }
                break;
        }
        case CKM_DSA_KEY_PAIR_GEN: {
                Pair *p = get_dsa();
                if (p) {
                        CK_ULONG n = 0;
                        CK_RV rv = get_attr(&K, p->pub, CKA_VALUE, NULL, &n);
                        CHECK(rv == CKR_OK && n >= 100 && n <= 128, "%s: public CKA_VALUE of %lu bytes (%s)", mt->name,
                              (unsigned long) n, p11t_rv_name(rv));
                }
                break;
        }
        default:
                p11t_ok(false, "%s: no key-pair exerciser", mt->name);
        }
}

static void ex_param_gen(const Mech *mt) {
        bool is_dsa = mt->type == CKM_DSA_PARAMETER_GEN;
        CK_OBJECT_HANDLE *h = is_dsa ? &dsa_params_k : &dh_params_k;
        CK_ULONG bits = is_dsa ? 1024 : 512;
        CK_RV rv = CKR_OK;
        if (!*h)
                rv = gen_params(mt->type, is_dsa ? CKK_DSA : CKK_DH, bits, h);
        if (!CHECK_OK(rv, "%s: C_GenerateKey(CKO_DOMAIN_PARAMETERS, %lu bits) through kyso", mt->name, (unsigned long) bits))
                return;
        CK_ULONG pl = 0;
        rv = get_attr(&K, *h, CKA_PRIME, NULL, &pl);
        CHECK(rv == CKR_OK && pl == bits / 8, "%s: CKA_PRIME of %lu bytes (%s)", mt->name, (unsigned long) pl,
              p11t_rv_name(rv));
        CHECK(get_ulong(&K, *h, CKA_CLASS) == CKO_DOMAIN_PARAMETERS, "%s: object class CKO_DOMAIN_PARAMETERS", mt->name);
}

/* Derive an AES-128 key (extractable) from a base key with mechanism m, on one side. */
static CK_RV derive_aes(Side *sd, CK_MECHANISM *m, CK_OBJECT_HANDLE base, CK_KEY_TYPE kt, CK_ULONG len,
                        CK_OBJECT_HANDLE *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) },    { CKA_KEY_TYPE, &kt, sizeof(kt) },
                             { CKA_TOKEN, &no, sizeof(no) },      { CKA_ENCRYPT, &yes, sizeof(yes) },
                             { CKA_DECRYPT, &yes, sizeof(yes) },  { CKA_SENSITIVE, &no, sizeof(no) },
                             { CKA_EXTRACTABLE, &yes, sizeof(yes) }, { CKA_VALUE_LEN, &len, sizeof(len) } };
        return sd->f->C_DeriveKey(sd->s, m, base, t, len ? ELEMENTSOF(t) : ELEMENTSOF(t) - 1, ret);
}

/* Two derived keys agree when they encrypt a block to the same ciphertext. */
static bool same_key(Side *a, CK_OBJECT_HANDLE ka, Side *b, CK_OBJECT_HANDLE kb, CK_MECHANISM_TYPE ecb, CK_BYTE *out,
                     CK_ULONG *outn) {
        CK_MECHANISM m = { ecb, NULL, 0 };
        CK_BYTE x[16], y[16];
        CK_ULONG xn = sizeof(x), yn = sizeof(y);
        if (do_Encrypt(a, &m, ka, msg, 16, x, &xn) != CKR_OK || do_Encrypt(b, &m, kb, msg, 16, y, &yn) != CKR_OK)
                return false;
        memcpy(out, x, xn);
        *outn = xn;
        return xn == yn && memcmp(x, y, xn) == 0;
}

static void ex_ecdh(const Mech *mt) {
        CK_OBJECT_HANDLE pa, va, pb, vb, ka, kb;
        CK_BYTE pointa[200], pointb[200], out[16];
        CK_ULONG la = sizeof(pointa), lb = sizeof(pointb), on = 0;
        if (!CHECK_OK(p11t_gen_ec(K.f, K.s, "P-256", "ecdh-a", false, &pa, &va), "%s: key pair A through kyso", mt->name) ||
            !CHECK_OK(p11t_gen_ec(K.f, K.s, "P-256", "ecdh-b", false, &pb, &vb), "%s: key pair B through kyso", mt->name))
                return;
        get_attr(&K, pa, CKA_EC_POINT, pointa, &la);
        get_attr(&K, pb, CKA_EC_POINT, pointb, &lb);
        /* CKA_EC_POINT is a DER OCTET STRING (04 41 04 x y); the derive parameter takes the raw point. */
        CK_ECDH1_DERIVE_PARAMS a = { .kdf = CKD_NULL, .ulPublicDataLen = lb - 2, .pPublicData = pointb + 2 };
        CK_ECDH1_DERIVE_PARAMS b = { .kdf = CKD_NULL, .ulPublicDataLen = la - 2, .pPublicData = pointa + 2 };
        CK_MECHANISM ma = { mt->type, &a, sizeof(a) }, mb = { mt->type, &b, sizeof(b) };
        if (!CHECK_OK(derive_aes(&K, &ma, va, CKK_AES, 16, &ka), "%s: A derives an AES-128 key with B's point through kyso (CKD_NULL)", mt->name) ||
            !CHECK_OK(derive_aes(&K, &mb, vb, CKK_AES, 16, &kb), "%s: B derives with A's point through kyso", mt->name))
                return;
        bool same = same_key(&K, ka, &K, kb, CKM_AES_ECB, out, &on);
        CHECK(same, "%s: both parties derived the same key (AES-ECB of a block: %s)", mt->name, p11t_hex(out, on));
}

static void ex_dh(const Mech *mt) {
        CK_OBJECT_HANDLE pa, va, pb, vb, ka, kb;
        CK_BYTE ya[1100], yb[1100], out[16];
        CK_ULONG la = sizeof(ya), lb = sizeof(yb), on = 0;
        CK_RV rv = CKR_OK;
        if (!dh_params_k)
                rv = gen_params(CKM_DH_PKCS_PARAMETER_GEN, CKK_DH, 512, &dh_params_k);
        if (!CHECK_OK(rv, "%s: DH domain parameters (CKM_DH_PKCS_PARAMETER_GEN, 512 bits) through kyso", mt->name))
                return;
        if (!CHECK_OK(gen_pair_from_params(CKM_DH_PKCS_KEY_PAIR_GEN, dh_params_k, false, &pa, &va),
                      "%s: DH key pair A through kyso", mt->name) ||
            !CHECK_OK(gen_pair_from_params(CKM_DH_PKCS_KEY_PAIR_GEN, dh_params_k, false, &pb, &vb),
                      "%s: DH key pair B through kyso", mt->name))
                return;
        if (mt->type == CKM_DH_PKCS_KEY_PAIR_GEN) {
                CK_ULONG n = 0;
                CK_RV arv = get_attr(&K, pa, CKA_VALUE, NULL, &n);
                CHECK(arv == CKR_OK && n > 0 && n <= 64, "%s: public CKA_VALUE of %lu bytes (%s)", mt->name,
                      (unsigned long) n, p11t_rv_name(arv));
                return;
        }
        get_attr(&K, pa, CKA_VALUE, ya, &la);
        get_attr(&K, pb, CKA_VALUE, yb, &lb);
        CK_MECHANISM ma = { mt->type, yb, lb }, mb = { mt->type, ya, la };
        if (!CHECK_OK(derive_aes(&K, &ma, va, CKK_AES, 16, &ka), "%s: A derives an AES-128 key with B's public value", mt->name) ||
            !CHECK_OK(derive_aes(&K, &mb, vb, CKK_AES, 16, &kb), "%s: B derives with A's public value", mt->name))
                return;
        bool same = same_key(&K, ka, &K, kb, CKM_AES_ECB, out, &on);
        CHECK(same, "%s: both parties derived the same key (AES-ECB of a block: %s)", mt->name, p11t_hex(out, on));
}

/* *_ENCRYPT_DATA derivations from a same-value base key on both sides: the derived keys must be equal. */
static void ex_encrypt_data(const Mech *mt) {
        CK_BYTE data[32];
        memcpy(data, msg, sizeof(data));
        CK_KEY_DERIVATION_STRING_DATA sd = { .pData = data, .ulLen = sizeof(data) };
        CK_AES_CBC_ENCRYPT_DATA_PARAMS ap = { .iv = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
                                              .pData = data, .length = sizeof(data) };
        CK_DES_CBC_ENCRYPT_DATA_PARAMS dp = { .iv = { 1, 2, 3, 4, 5, 6, 7, 8 }, .pData = data, .length = sizeof(data) };
        CK_MECHANISM m = { mt->type, NULL, 0 };
        SymKey *base;
        switch (mt->type) {
        case CKM_AES_ECB_ENCRYPT_DATA: base = sym(&aes); m.pParameter = &sd; m.ulParameterLen = sizeof(sd); break;
        case CKM_AES_CBC_ENCRYPT_DATA: base = sym(&aes); m.pParameter = &ap; m.ulParameterLen = sizeof(ap); break;
        case CKM_DES3_ECB_ENCRYPT_DATA: base = sym(&des3); m.pParameter = &sd; m.ulParameterLen = sizeof(sd); break;
        case CKM_DES3_CBC_ENCRYPT_DATA: base = sym(&des3); m.pParameter = &dp; m.ulParameterLen = sizeof(dp); break;
        case CKM_DES_ECB_ENCRYPT_DATA: base = sym(&des); m.pParameter = &sd; m.ulParameterLen = sizeof(sd); break;
        default: base = sym(&des); m.pParameter = &dp; m.ulParameterLen = sizeof(dp); break;
        }
        CK_OBJECT_HANDLE kk = 0, dk = 0;
        CK_RV krv = derive_aes(&K, &m, base->k, CKK_GENERIC_SECRET, 32, &kk);
        CK_RV drv = derive_aes(&D, &m, base->d, CKK_GENERIC_SECRET, 32, &dk);
        if (krv != CKR_OK) {
                same_failure(mt->name, "C_DeriveKey", krv, drv,
                             "single DES is only in OpenSSL 3's legacy provider, which SoftHSM2 does not load");
                return;
        }
        CHECK_OK(krv, "%s: C_DeriveKey(32-byte generic secret from 32 bytes of data) through kyso", mt->name);
        CHECK_OK(drv, "%s: C_DeriveKey directly", mt->name);
        CK_BYTE kv[64], dv[64];
        CK_ULONG kn = sizeof(kv), dn = sizeof(dv);
        CK_RV rv = get_attr(&K, kk, CKA_VALUE, kv, &kn);
        get_attr(&D, dk, CKA_VALUE, dv, &dn);
        CHECK(rv == CKR_OK && kn == dn && memcmp(kv, dv, kn) == 0, "%s: derived key through kyso %s equals direct %s",
              mt->name, p11t_hex(kv, kn), p11t_hex(dv, dn));
}

/* Block and stream ciphers: same key on both sides, so ciphertexts must be equal; round trip through kyso. */
static void ex_cipher(const Mech *mt) {
        CK_BYTE iv16[16] = { 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff };
        CK_BYTE iv8[8] = { 0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef };
        CK_AES_CTR_PARAMS ctr = { .ulCounterBits = 32 };
        memcpy(ctr.cb, iv16, 16);
        CK_BYTE gcm_iv[12] = { 0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce, 0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88 };
        CK_BYTE aad[] = "additional authenticated data";
        CK_GCM_PARAMS gcm = { .pIv = gcm_iv, .ulIvLen = 12, .ulIvBits = 96, .pAAD = aad, .ulAADLen = sizeof(aad) - 1,
                              .ulTagBits = 128 };
        CK_MECHANISM m = { mt->type, NULL, 0 };
        SymKey *sk;
        CK_ULONG n = 512; /* a multiple of every block size */
        bool pad = false, single_des = false;
        switch (mt->type) {
        case CKM_AES_ECB: sk = sym(&aes); break;
        case CKM_AES_CBC: sk = sym(&aes); m.pParameter = iv16; m.ulParameterLen = 16; break;
        case CKM_AES_CBC_PAD: sk = sym(&aes); m.pParameter = iv16; m.ulParameterLen = 16; pad = true; break;
        case CKM_AES_CTR: sk = sym(&aes); m.pParameter = &ctr; m.ulParameterLen = sizeof(ctr); pad = true; break;
        case CKM_AES_GCM: sk = sym(&aes); m.pParameter = &gcm; m.ulParameterLen = sizeof(gcm); pad = true; break;
        case CKM_DES3_ECB: sk = sym(&des3); break;
        case CKM_DES3_CBC: sk = sym(&des3); m.pParameter = iv8; m.ulParameterLen = 8; break;
        case CKM_DES3_CBC_PAD: sk = sym(&des3); m.pParameter = iv8; m.ulParameterLen = 8; pad = true; break;
        case CKM_DES_ECB: sk = sym(&des); single_des = true; break;
        case CKM_DES_CBC: sk = sym(&des); m.pParameter = iv8; m.ulParameterLen = 8; single_des = true; break;
        default: sk = sym(&des); m.pParameter = iv8; m.ulParameterLen = 8; pad = true; single_des = true; break;
        }
        if (pad)
                n = 333; /* not a multiple of the block: padding, counter and GCM handle any length */
        CK_BYTE kc[MAXOUT], dc[MAXOUT], kp[MAXOUT], km[MAXOUT];
        CK_ULONG kn = sizeof(kc), dn = sizeof(dc), pn = sizeof(kp), mn = sizeof(km);
        CK_RV krv = do_Encrypt(&K, &m, sk->k, msg, n, kc, &kn);
        CK_RV drv = do_Encrypt(&D, &m, sk->d, msg, n, dc, &dn);
        if (krv != CKR_OK && single_des) {
                same_failure(mt->name, "C_Encrypt", krv, drv,
                             "single DES is only in OpenSSL 3's legacy provider, which SoftHSM2 does not load");
                return;
        }
        if (!CHECK_OK(krv, "%s: C_Encrypt(%lu bytes) through kyso", mt->name, (unsigned long) n))
                return;
        CHECK_OK(drv, "%s: C_Encrypt directly", mt->name);
        CHECK(kn == dn && memcmp(kc, dc, kn) == 0, "%s: ciphertext through kyso (%lu bytes %s) equals direct (%lu bytes %s)",
              mt->name, (unsigned long) kn, p11t_hex(kc, kn), (unsigned long) dn, p11t_hex(dc, dn));
        CK_RV rv = do_Decrypt(&K, &m, sk->k, kc, kn, kp, &pn);
        CHECK(rv == CKR_OK && pn == n && memcmp(kp, msg, n) == 0, "%s: C_Decrypt through kyso: %s, round trip %s",
              mt->name, p11t_rv_name(rv), rv == CKR_OK && pn == n && memcmp(kp, msg, n) == 0 ? "equal" : "DIFFERENT");
        if (mt->type != CKM_AES_GCM) {
                rv = do_crypt_multi(&K, true, &m, sk->k, msg, n, 100, km, &mn);
                CHECK(rv == CKR_OK && mn == kn && memcmp(km, kc, kn) == 0,
                      "%s: multi-part encryption through kyso (chunks of 100 bytes): %s, %s", mt->name, p11t_rv_name(rv),
                      rv == CKR_OK && mn == kn && memcmp(km, kc, kn) == 0 ? "same ciphertext" : "DIFFERENT ciphertext");
                mn = sizeof(km);
                rv = do_crypt_multi(&K, false, &m, sk->k, kc, kn, 77, km, &mn);
                CHECK(rv == CKR_OK && mn == n && memcmp(km, msg, n) == 0,
                      "%s: multi-part decryption through kyso (chunks of 77 bytes): %s", mt->name, p11t_rv_name(rv));
        } else {
                kc[5] ^= 1;
                pn = sizeof(kp);
                rv = do_Decrypt(&K, &m, sk->k, kc, kn, kp, &pn);
                pn = sizeof(kp);
                dc[5] ^= 1;
                CK_RV drv2 = do_Decrypt(&D, &m, sk->d, dc, dn, kp, &pn);
                CHECK(rv != CKR_OK && rv == drv2, "%s: altered ciphertext is refused through kyso (%s) as directly (%s)",
                      mt->name, p11t_rv_name(rv), p11t_rv_name(drv2));
        }
}

static void ex_key_gen(const Mech *mt) {
        CK_KEY_TYPE kt;
        CK_ULONG len, want;
        CK_MECHANISM_TYPE use;
        switch (mt->type) {
        case CKM_AES_KEY_GEN: kt = CKK_AES; len = want = 32; use = CKM_AES_ECB; break;
        case CKM_DES_KEY_GEN: kt = CKK_DES; len = 0; want = 8; use = CKM_DES_ECB; break;
        case CKM_DES2_KEY_GEN: kt = CKK_DES2; len = 0; want = 16; use = CKM_DES3_ECB; break;
        case CKM_DES3_KEY_GEN: kt = CKK_DES3; len = 0; want = 24; use = CKM_DES3_ECB; break;
        default: kt = CKK_GENERIC_SECRET; len = want = 48; use = CKM_SHA256_HMAC; break;
        }
        CK_OBJECT_HANDLE k, d;
        CK_RV rv = p11t_gen_secret(K.f, K.s, mt->type, kt, len, "mech-gen", &k);
        if (!CHECK_OK(rv, "%s: C_GenerateKey through kyso", mt->name))
                return;
        CK_BYTE v[64];
        CK_ULONG vn = sizeof(v);
        rv = get_attr(&K, k, CKA_VALUE, v, &vn);
        CHECK(rv == CKR_OK && vn == want, "%s: CKA_VALUE of %lu bytes (expected %lu)", mt->name, (unsigned long) vn,
              (unsigned long) want);
        CHECK(get_ulong(&K, k, CKA_KEY_TYPE) == kt, "%s: CKA_KEY_TYPE 0x%lx", mt->name, (unsigned long) kt);
        if (rv != CKR_OK)
                return;
        /* Use it, and compare with the same value imported directly. */
        if (!CHECK_OK(p11t_import_secret(D.f, D.s, kt, v, vn, "mech-gen", &d), "%s: same key value imported directly",
                      mt->name))
                return;
        CK_MECHANISM m = { use, NULL, 0 };
        CK_BYTE ko[64], dout[64];
        CK_ULONG kn = sizeof(ko), dn = sizeof(dout);
        CK_RV krv, drv;
        if (use == CKM_SHA256_HMAC) {
                krv = do_Sign(&K, &m, k, msg, 64, ko, &kn);
                drv = do_Sign(&D, &m, d, msg, 64, dout, &dn);
        } else {
                krv = do_Encrypt(&K, &m, k, msg, 64, ko, &kn);
                drv = do_Encrypt(&D, &m, d, msg, 64, dout, &dn);
        }
        if (krv != CKR_OK && mt->type == CKM_DES_KEY_GEN) {
                same_failure(mt->name, "C_Encrypt(CKM_DES_ECB) with the generated key", krv, drv,
                             "single DES is only in OpenSSL 3's legacy provider, which SoftHSM2 does not load");
                return;
        }
        CHECK(krv == CKR_OK && drv == CKR_OK && kn == dn && memcmp(ko, dout, kn) == 0,
              "%s: %s with the generated key through kyso (%s %s) equals direct (%s %s)", mt->name, p11t_mech_name(use),
              p11t_rv_name(krv), p11t_hex(ko, kn), p11t_rv_name(drv), p11t_hex(dout, dn));
}

static void ex_wrap(const Mech *mt) {
        SymKey *w = sym(&kek);
        /* KEY_WRAP needs a multiple of 8 bytes; KEY_WRAP_PAD (RFC 5649) takes any length: wrap 20 bytes. */
        bool padded = mt->type == CKM_AES_KEY_WRAP_PAD;
        static const CK_BYTE tv[24] = { 0xc3, 0x7b, 0x7e, 0x64, 0x92, 0x58, 0x43, 0x40, 0xbe, 0xd1, 0x22, 0x07,
                                        0x80, 0x89, 0x41, 0x15, 0x50, 0x68, 0xf7, 0x38, 0x11, 0x22, 0x33, 0x44 };
        CK_ULONG tlen = padded ? 20 : 24;
        CK_OBJECT_HANDLE tk, td, u;
        if (!CHECK_OK(p11t_import_secret(K.f, K.s, CKK_GENERIC_SECRET, tv, tlen, "wrap-target", &tk),
                      "%s: target key (%lu bytes) through kyso", mt->name, (unsigned long) tlen))
                return;
        p11t_import_secret(D.f, D.s, CKK_GENERIC_SECRET, tv, tlen, "wrap-target", &td);
        CK_MECHANISM m = { mt->type, NULL, 0 };
        CK_BYTE kw[128], dw[128];
        CK_ULONG kn = 0, dn = sizeof(dw);
        CK_RV rv = K.f->C_WrapKey(K.s, &m, w->k, tk, NULL, &kn);
        CK_ULONG q = kn;
        CHECK_OK(rv, "%s: C_WrapKey length query through kyso: %lu", mt->name, (unsigned long) kn);
        kn = sizeof(kw);
        rv = K.f->C_WrapKey(K.s, &m, w->k, tk, kw, &kn);
        CK_RV drv = D.f->C_WrapKey(D.s, &m, w->d, td, dw, &dn);
        if (rv != CKR_OK) {
                same_failure(mt->name, "C_WrapKey", rv, drv, "SoftHSM2 2.6.1 cannot do this wrap with OpenSSL 3");
                return;
        }
        CHECK(q >= kn, "%s: length query %lu >= wrapped length %lu", mt->name, (unsigned long) q, (unsigned long) kn);
        CHECK(drv == CKR_OK && kn == dn && memcmp(kw, dw, kn) == 0, "%s: wrapped key through kyso %s equals direct %s (%s)",
              mt->name, p11t_hex(kw, kn), p11t_hex(dw, dn), p11t_rv_name(drv));
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                             { CKA_TOKEN, &no, sizeof(no) }, { CKA_SENSITIVE, &no, sizeof(no) },
                             { CKA_EXTRACTABLE, &yes, sizeof(yes) } };
        rv = K.f->C_UnwrapKey(K.s, &m, w->k, kw, kn, t, ELEMENTSOF(t), &u);
        if (!CHECK_OK(rv, "%s: C_UnwrapKey through kyso", mt->name))
                return;
        CK_BYTE v[64], dv[64];
        CK_ULONG vn = sizeof(v), dvn = sizeof(dv);
        rv = get_attr(&K, u, CKA_VALUE, v, &vn);
        if (rv == CKR_OK && vn == tlen && memcmp(v, tv, tlen) == 0) {
                p11t_ok(true, "%s: unwrapped key %s equals the original", mt->name, p11t_hex(v, vn));
                return;
        }
        /* SoftHSM 2.6.1 does not remove the RFC 5649 padding when it unwraps: compare with what it does directly. */
        CK_OBJECT_HANDLE du;
        drv = D.f->C_UnwrapKey(D.s, &m, w->d, dw, dn, t, ELEMENTSOF(t), &du);
        if (drv == CKR_OK)
                drv = get_attr(&D, du, CKA_VALUE, dv, &dvn);
        bool same_as_direct = drv == CKR_OK && rv == CKR_OK && dvn == vn && memcmp(dv, v, vn) == 0;
        p11t_ok(padded && same_as_direct && vn > tlen && memcmp(v, tv, tlen) == 0,
                "%s: unwrapped key through kyso %s (%lu bytes) is not the original %s (%lu bytes); SoftHSM2 directly "
                "unwraps to %s (%lu bytes): SoftHSM 2.6.1 leaves the RFC 5649 padding on the unwrapped value",
                mt->name, p11t_hex(v, vn), (unsigned long) vn, p11t_hex(tv, tlen), (unsigned long) tlen,
                p11t_hex(dv, dvn), (unsigned long) dvn);
}

static const struct {
        CK_MECHANISM_TYPE type;
        void (*fn)(const Mech *);
} exercisers[] = {
        { CKM_MD5, ex_digest },
        { CKM_SHA_1, ex_digest },
        { CKM_SHA224, ex_digest },
        { CKM_SHA256, ex_digest },
        { CKM_SHA384, ex_digest },
        { CKM_SHA512, ex_digest },
        { CKM_MD5_HMAC, ex_mac },
        { CKM_SHA_1_HMAC, ex_mac },
        { CKM_SHA224_HMAC, ex_mac },
        { CKM_SHA256_HMAC, ex_mac },
        { CKM_SHA384_HMAC, ex_mac },
        { CKM_SHA512_HMAC, ex_mac },
        { CKM_AES_CMAC, ex_mac },
        { CKM_DES3_CMAC, ex_mac },
        { CKM_RSA_PKCS_KEY_PAIR_GEN, ex_keypair_gen },
        { CKM_EC_KEY_PAIR_GEN, ex_keypair_gen },
        { CKM_EC_EDWARDS_KEY_PAIR_GEN, ex_keypair_gen },
        { CKM_DSA_KEY_PAIR_GEN, ex_keypair_gen },
        { CKM_DH_PKCS_KEY_PAIR_GEN, ex_dh },
        { CKM_DH_PKCS_DERIVE, ex_dh },
        { CKM_DSA_PARAMETER_GEN, ex_param_gen },
        { CKM_DH_PKCS_PARAMETER_GEN, ex_param_gen },
        { CKM_RSA_PKCS, ex_rsa_pkcs },
        { CKM_RSA_X_509, ex_rsa_x509 },
        { CKM_RSA_PKCS_OAEP, ex_rsa_oaep },
        { CKM_MD5_RSA_PKCS, ex_rsa_sign },
        { CKM_SHA1_RSA_PKCS, ex_rsa_sign },
        { CKM_SHA224_RSA_PKCS, ex_rsa_sign },
        { CKM_SHA256_RSA_PKCS, ex_rsa_sign },
        { CKM_SHA384_RSA_PKCS, ex_rsa_sign },
        { CKM_SHA512_RSA_PKCS, ex_rsa_sign },
        { CKM_RSA_PKCS_PSS, ex_rsa_pss },
        { CKM_SHA1_RSA_PKCS_PSS, ex_rsa_pss },
        { CKM_SHA224_RSA_PKCS_PSS, ex_rsa_pss },
        { CKM_SHA256_RSA_PKCS_PSS, ex_rsa_pss },
        { CKM_SHA384_RSA_PKCS_PSS, ex_rsa_pss },
        { CKM_SHA512_RSA_PKCS_PSS, ex_rsa_pss },
        { CKM_ECDSA, ex_ecdsa },
        { CKM_ECDSA_SHA1, ex_ecdsa },
        { CKM_ECDSA_SHA224, ex_ecdsa },
        { CKM_ECDSA_SHA256, ex_ecdsa },
        { CKM_ECDSA_SHA384, ex_ecdsa },
        { CKM_ECDSA_SHA512, ex_ecdsa },
        { CKM_ECDH1_DERIVE, ex_ecdh },
        { CKM_EDDSA, ex_eddsa },
        { CKM_DSA, ex_dsa },
        { CKM_DSA_SHA1, ex_dsa },
        { CKM_DSA_SHA224, ex_dsa },
        { CKM_DSA_SHA256, ex_dsa },
        { CKM_DSA_SHA384, ex_dsa },
        { CKM_DSA_SHA512, ex_dsa },
        { CKM_AES_KEY_GEN, ex_key_gen },
        { CKM_DES_KEY_GEN, ex_key_gen },
        { CKM_DES2_KEY_GEN, ex_key_gen },
        { CKM_DES3_KEY_GEN, ex_key_gen },
        { CKM_GENERIC_SECRET_KEY_GEN, ex_key_gen },
        { CKM_AES_ECB, ex_cipher },
        { CKM_AES_CBC, ex_cipher },
        { CKM_AES_CBC_PAD, ex_cipher },
        { CKM_AES_CTR, ex_cipher },
        { CKM_AES_GCM, ex_cipher },
        { CKM_DES3_ECB, ex_cipher },
        { CKM_DES3_CBC, ex_cipher },
        { CKM_DES3_CBC_PAD, ex_cipher },
        { CKM_DES_ECB, ex_cipher },
        { CKM_DES_CBC, ex_cipher },
        { CKM_DES_CBC_PAD, ex_cipher },
        { CKM_AES_KEY_WRAP, ex_wrap },
        { CKM_AES_KEY_WRAP_PAD, ex_wrap },
        { CKM_AES_ECB_ENCRYPT_DATA, ex_encrypt_data },
        { CKM_AES_CBC_ENCRYPT_DATA, ex_encrypt_data },
        { CKM_DES3_ECB_ENCRYPT_DATA, ex_encrypt_data },
        { CKM_DES3_CBC_ENCRYPT_DATA, ex_encrypt_data },
        { CKM_DES_ECB_ENCRYPT_DATA, ex_encrypt_data },
        { CKM_DES_CBC_ENCRYPT_DATA, ex_encrypt_data },
};

static int cmp_ulong(const void *a, const void *b) {
        CK_ULONG x = *(const CK_ULONG *) a, y = *(const CK_ULONG *) b;
        return x < y ? -1 : x > y;
}

static bool open_side(Side *sd, const char *label, const char *pin) {
        if (!CHECK_OK(p11t_initialize(sd->f), "%s: C_Initialize(CKF_OS_LOCKING_OK)", sd->name) ||
            !CHECK_OK(p11t_find_slot(sd->f, label, &sd->slot), "%s: slot of token \"%s\"", sd->name, label) ||
            !CHECK_OK(p11t_open_login(sd->f, sd->slot, pin, &sd->s), "%s: C_OpenSession + C_Login", sd->name))
                return false;
        return true;
}

int main(void) {
        P11Module km, dm;
        const char *label = p11t_env("KYSO_TEST_LABEL"), *pin = p11t_env("KYSO_TEST_PIN");

        for (size_t i = 0; i < sizeof(msg); i++)
                msg[i] = (CK_BYTE) (i * 31 + 7);
        for (size_t i = 0; i < sizeof(hmac_value); i++)
                hmac_value[i] = (CK_BYTE) (0xa0 + i);

        if (!p11t_load(&km, "kyso", p11t_env("KYSO_MODULE")))
                return p11t_summary();
        K.f = km.f;
        if (!open_side(&K, label, pin))
                return p11t_summary();
        /* SoftHSM2 directly, on the daemon's store: loaded only now that the daemon is up. */
        if (!p11t_load(&dm, "direct", p11t_env("SOFTHSM_MODULE")))
                return p11t_summary();
        D.f = dm.f;
        if (!open_side(&D, label, pin))
                return p11t_summary();

        CK_MECHANISM_TYPE kl[256], dl[256];
        CK_ULONG kn = 0, dn = 0;
        CHECK_OK(K.f->C_GetMechanismList(K.slot, NULL, &kn), "kyso: C_GetMechanismList count %lu", (unsigned long) kn);
        CHECK_OK(D.f->C_GetMechanismList(D.slot, NULL, &dn), "direct: C_GetMechanismList count %lu", (unsigned long) dn);
        CHECK(kn == dn, "mechanism count through kyso (%lu) equals direct (%lu)", (unsigned long) kn, (unsigned long) dn);
        kn = ELEMENTSOF(kl);
        dn = ELEMENTSOF(dl);
        if (!CHECK_OK(K.f->C_GetMechanismList(K.slot, kl, &kn), "kyso: C_GetMechanismList") ||
            !CHECK_OK(D.f->C_GetMechanismList(D.slot, dl, &dn), "direct: C_GetMechanismList"))
                return p11t_summary();
        qsort(kl, kn, sizeof(kl[0]), cmp_ulong);
        qsort(dl, dn, sizeof(dl[0]), cmp_ulong);
        for (CK_ULONG i = 0, j = 0; i < kn || j < dn;) {
                if (j >= dn || (i < kn && kl[i] < dl[j]))
                        p11t_ok(false, "%s is listed through kyso but not directly", p11t_mech_name(kl[i++]));
                else if (i >= kn || dl[j] < kl[i])
                        p11t_ok(false, "%s is listed directly but not through kyso", p11t_mech_name(dl[j++]));
                else
                        i++, j++;
        }
        CHECK(kn == dn && memcmp(kl, dl, kn * sizeof(kl[0])) == 0, "mechanism lists are identical (%lu mechanisms)",
              (unsigned long) kn);
        CHECK(kn == 70, "SoftHSM 2.6.1 offers 70 mechanisms; kyso lists %lu", (unsigned long) kn);

        for (CK_ULONG i = 0; i < kn; i++) {
                CK_MECHANISM_INFO a, b;
                memset(&a, 0, sizeof(a));
                memset(&b, 0, sizeof(b));
                CK_RV ra = K.f->C_GetMechanismInfo(K.slot, kl[i], &a);
                CK_RV rb = D.f->C_GetMechanismInfo(D.slot, kl[i], &b);
                CHECK(ra == rb && a.ulMinKeySize == b.ulMinKeySize && a.ulMaxKeySize == b.ulMaxKeySize &&
                              a.flags == b.flags,
                      "%s: C_GetMechanismInfo through kyso %s {%lu, %lu, 0x%lx} equals direct %s {%lu, %lu, 0x%lx}",
                      p11t_mech_name(kl[i]), p11t_rv_name(ra), (unsigned long) a.ulMinKeySize,
                      (unsigned long) a.ulMaxKeySize, (unsigned long) a.flags, p11t_rv_name(rb),
                      (unsigned long) b.ulMinKeySize, (unsigned long) b.ulMaxKeySize, (unsigned long) b.flags);
        }

        unsigned exercised = 0, clean = 0;
        for (CK_ULONG i = 0; i < kn; i++) {
                Mech mt = { kl[i], p11t_mech_name(kl[i]) };
                size_t k;
                for (k = 0; k < ELEMENTSOF(exercisers); k++)
                        if (exercisers[k].type == kl[i])
                                break;
                if (k == ELEMENTSOF(exercisers)) {
                        p11t_ok(false, "%s: listed, but this test has no way to exercise it", mt.name);
                        continue;
                }
                p11t_diag("---- %s", mt.name);
                unsigned before = p11t_failures();
                exercisers[k].fn(&mt);
                exercised++;
                if (p11t_failures() == before)
                        clean++;
        }
        CHECK(clean == kn, "%u of %lu listed mechanisms exercised through kyso without a failure (%u exercised)", clean,
              (unsigned long) kn, exercised);

        K.f->C_Finalize(NULL);
        D.f->C_Finalize(NULL);
        return p11t_summary();
}
