/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Client-side argument sets for the reply fuzzer and the seed generator: for any call, buffers
 * and capacities chosen from a few configuration bytes, each buffer malloc()ed at its exact size
 * so that the sanitizers see any write past what the caller offered.
 */
#pragma once

#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "wire.h"

#define FUZZ_CONFIG_SIZE 32U
#define FUZZ_ALLOCS_MAX 128U

typedef struct FuzzArgs {
        WireArg args[KYSO_WIRE_ARGS_MAX];
        void *allocs[FUZZ_ALLOCS_MAX];
        size_t sizes[FUZZ_ALLOCS_MAX];
        size_t n_allocs;
        CK_OBJECT_HANDLE *handles;
        CK_ULONG handle_count;
        CK_ULONG lens[KYSO_WIRE_ARGS_MAX];
        CK_ULONG scalars[KYSO_WIRE_ARGS_MAX];
        const uint8_t *config;
        size_t next;
} FuzzArgs;

static inline uint8_t fuzz_byte(FuzzArgs *f)
{
        return f->config[f->next++ % FUZZ_CONFIG_SIZE];
}

static inline void *fuzz_alloc(FuzzArgs *f, size_t n)
{
        void *p;

        if (f->n_allocs >= FUZZ_ALLOCS_MAX)
                abort();
        p = calloc(1, n ? n : 1);
        if (!p)
                abort();
        f->sizes[f->n_allocs] = n;
        f->allocs[f->n_allocs++] = p;
        return p;
}

static inline CK_ATTRIBUTE_TYPE fuzz_attr_type(FuzzArgs *f, bool nested)
{
        static const CK_ATTRIBUTE_TYPE types[] = {
                CKA_LABEL, CKA_CLASS, CKA_ALLOWED_MECHANISMS, CKA_VALUE, CKA_KEY_TYPE, CKA_WRAP_TEMPLATE,
        };

        return types[fuzz_byte(f) % (nested ? ELEMENTSOF(types) - 1 : ELEMENTSOF(types))];
}

static inline void fuzz_attr(FuzzArgs *f, CK_ATTRIBUTE *at, bool nested)
{
        uint8_t b = fuzz_byte(f);

        at->type = fuzz_attr_type(f, nested);
        if (wire_attribute_kind(at->type) == WIRE_ATTR_TEMPLATE) {
                size_t n = b % 3;
                CK_ATTRIBUTE *inner = fuzz_alloc(f, n * sizeof(CK_ATTRIBUTE));

                for (size_t i = 0; i < n; i++)
                        fuzz_attr(f, &inner[i], true);
                at->pValue = (b & 0x80) ? NULL : inner;
                at->ulValueLen = n * sizeof(CK_ATTRIBUTE);
                return;
        }
        at->ulValueLen = fuzz_byte(f) % 40;
        at->pValue = (b & 0x80) ? NULL : fuzz_alloc(f, at->ulValueLen);
}

static inline void fuzz_message_param(FuzzArgs *f, WireArg *arg)
{
        uint8_t sel = fuzz_byte(f) % 5, n = fuzz_byte(f) % 24;

        switch (sel) {
        case 0:
                arg->value = CKM_AES_GCM;
                break;
        case 1:
                arg->value = CKM_VENDOR_DEFINED;
                arg->ptr = fuzz_alloc(f, n);
                arg->len = n;
                break;
        case 2: {
                CK_GCM_MESSAGE_PARAMS *p = fuzz_alloc(f, sizeof(*p));

                p->ulIvLen = n;
                p->pIv = fuzz_alloc(f, n);
                p->ulTagBits = fuzz_byte(f);
                p->pTag = fuzz_alloc(f, (p->ulTagBits + 7) / 8);
                arg->value = CKM_AES_GCM;
                arg->ptr = p;
                arg->len = sizeof(*p);
                break;
        }
        case 3: {
                CK_CCM_MESSAGE_PARAMS *p = fuzz_alloc(f, sizeof(*p));

                p->ulNonceLen = n;
                p->pNonce = fuzz_alloc(f, n);
                p->ulMACLen = fuzz_byte(f) % 17;
                p->pMAC = fuzz_alloc(f, p->ulMACLen);
                arg->value = CKM_AES_CCM;
                arg->ptr = p;
                arg->len = sizeof(*p);
                break;
        }
        default: {
                CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS *p = fuzz_alloc(f, sizeof(*p));

                p->ulNonceLen = n;
                p->pNonce = fuzz_alloc(f, n);
                p->pTag = fuzz_alloc(f, 16);
                arg->value = 0x4021; /* CKM_CHACHA20_POLY1305 */
                arg->ptr = p;
                arg->len = sizeof(*p);
                break;
        }
        }
}

static inline void fuzz_args_build(FuzzArgs *f, WireCall call, const uint8_t config[FUZZ_CONFIG_SIZE])
{
        const char *sig = wire_call_info(call)->signature;

        memset(f, 0, sizeof(*f));
        f->config = config;
        for (size_t i = 0; sig[i]; i++) {
                WireArg *arg = &f->args[i];
                uint8_t b = fuzz_byte(f);

                switch (sig[i]) {
                case 'u':
                case 'S':
                case 'O':
                case 'L':
                case 'b':
                        arg->value = b & 1;
                        break;
                case 'y':
                        arg->len = b % 16;
                        arg->ptr = fuzz_alloc(f, arg->len);
                        break;
                case 'z':
                        arg->ptr = fuzz_alloc(f, 32);
                        break;
                case 'a':
                        break;
                case 'm': {
                        CK_MECHANISM *m = fuzz_alloc(f, sizeof(*m));

                        m->mechanism = CKM_RSA_PKCS;
                        arg->ptr = m;
                        break;
                }
                case 'p':
                        fuzz_message_param(f, arg);
                        break;
                case 'o':
                        f->lens[i] = b >> 1;
                        arg->ptr = (b & 1) ? NULL : fuzz_alloc(f, f->lens[i]);
                        arg->len_ptr = &f->lens[i];
                        break;
                case 'l':
                        f->lens[i] = (b >> 1) % 16;
                        arg->ptr = (b & 1) ? NULL : fuzz_alloc(f, f->lens[i] * sizeof(CK_ULONG));
                        arg->len_ptr = &f->lens[i];
                        break;
                case 'r':
                        arg->len = b;
                        arg->ptr = fuzz_alloc(f, b);
                        break;
                case 'A': {
                        CK_ATTRIBUTE *attrs;

                        arg->len = b % 5;
                        attrs = fuzz_alloc(f, arg->len * sizeof(CK_ATTRIBUTE));
                        for (size_t j = 0; j < arg->len; j++)
                                fuzz_attr(f, &attrs[j], false);
                        arg->ptr = attrs;
                        break;
                }
                case 'H':
                        arg->ptr = &f->handles;
                        arg->len_ptr = &f->handle_count;
                        break;
                case 'U':
                case 'n':
                case 's':
                        arg->ptr = &f->scalars[i];
                        break;
                case 'V':
                        arg->ptr = fuzz_alloc(f, sizeof(CK_INFO));
                        break;
                case 'I':
                        arg->ptr = fuzz_alloc(f, sizeof(CK_SLOT_INFO));
                        break;
                case 'T':
                        arg->ptr = fuzz_alloc(f, sizeof(CK_TOKEN_INFO));
                        break;
                case 'X':
                        arg->ptr = fuzz_alloc(f, sizeof(CK_SESSION_INFO));
                        break;
                case 'M':
                        arg->ptr = fuzz_alloc(f, sizeof(CK_MECHANISM_INFO));
                        break;
                default:
                        abort();
                }
        }
}

/* A copy of everything the decoder may write to: the caller's buffers, lengths and scalars. */
static inline uint8_t *fuzz_args_snapshot(const FuzzArgs *f)
{
        size_t total = sizeof(f->lens) + sizeof(f->scalars), off;
        uint8_t *copy;

        for (size_t i = 0; i < f->n_allocs; i++)
                total += f->sizes[i];
        copy = malloc(total);
        if (!copy)
                abort();
        memcpy(copy, f->lens, sizeof(f->lens));
        memcpy(copy + sizeof(f->lens), f->scalars, sizeof(f->scalars));
        off = sizeof(f->lens) + sizeof(f->scalars);
        for (size_t i = 0; i < f->n_allocs; i++) {
                memcpy(copy + off, f->allocs[i], f->sizes[i]);
                off += f->sizes[i];
        }
        return copy;
}

static inline bool fuzz_args_unchanged(const FuzzArgs *f, const uint8_t *copy)
{
        size_t off = sizeof(f->lens) + sizeof(f->scalars);

        if (memcmp(copy, f->lens, sizeof(f->lens)) != 0 ||
            memcmp(copy + sizeof(f->lens), f->scalars, sizeof(f->scalars)) != 0 || f->handles)
                return false;
        for (size_t i = 0; i < f->n_allocs; i++) {
                if (memcmp(copy + off, f->allocs[i], f->sizes[i]) != 0)
                        return false;
                off += f->sizes[i];
        }
        return true;
}

static inline void fuzz_args_free(FuzzArgs *f)
{
        for (size_t i = 0; i < f->n_allocs; i++)
                free(f->allocs[i]);
        free(f->handles);
        f->n_allocs = 0;
        f->handles = NULL;
}
