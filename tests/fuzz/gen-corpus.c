/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the seed corpus: for each call of the table, a valid request payload for
 * fuzz-wire-request and a (config + valid reply payload) input for fuzz-wire-reply, produced by
 * the codec itself. Run it after changing the protocol:
 *   gen-corpus tests/fuzz/corpus
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz-args.h"
#include "macro.h"
#include "wire.h"

static int write_file(const char *dir, const char *sub, const char *name, const uint8_t *a, size_t alen,
                      const uint8_t *b, size_t blen)
{
        _cleanup_(closep) int fd = -1;
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", dir, sub);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return negative_errno();
        snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return negative_errno();
        if ((alen > 0 && write(fd, a, alen) != (ssize_t) alen) || (blen > 0 && write(fd, b, blen) != (ssize_t) blen))
                return -EIO;
        return 0;
}

/* Makes the request richer than the reply fuzzer needs: real templates and mechanism parameters. */
static void enrich_inputs(FuzzArgs *f, WireCall call)
{
        const char *sig = wire_call_info(call)->signature;

        for (size_t i = 0; sig[i]; i++) {
                if (sig[i] == 'a') {
                        CK_ATTRIBUTE *attrs = fuzz_alloc(f, 4 * sizeof(CK_ATTRIBUTE));

                        for (size_t j = 0; j < 4; j++)
                                fuzz_attr(f, &attrs[j], false);
                        f->args[i].ptr = attrs;
                        f->args[i].len = 4;
                } else if (sig[i] == 'm') {
                        CK_MECHANISM *m = f->args[i].ptr;
                        CK_RSA_PKCS_OAEP_PARAMS *p = fuzz_alloc(f, sizeof(*p));

                        p->hashAlg = CKM_SHA256;
                        p->mgf = CKG_MGF1_SHA256;
                        p->source = CKZ_DATA_SPECIFIED;
                        p->pSourceData = fuzz_alloc(f, 3);
                        p->ulSourceDataLen = 3;
                        m->mechanism = CKM_RSA_PKCS_OAEP;
                        m->pParameter = p;
                        m->ulParameterLen = sizeof(*p);
                }
        }
}

static void fill_attrs(CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth)
{
        for (CK_ULONG i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];

                if (!at->pValue) {
                        at->ulValueLen = (i % 2) ? CK_UNAVAILABLE_INFORMATION : 7;
                        continue;
                }
                switch (wire_attribute_kind(at->type)) {
                case WIRE_ATTR_BYTES:
                        if (at->ulValueLen > 5)
                                at->ulValueLen = 5;
                        memset(at->pValue, 'v', at->ulValueLen);
                        break;
                case WIRE_ATTR_ULONGS:
                        if (at->ulValueLen >= sizeof(CK_ULONG)) {
                                at->ulValueLen = sizeof(CK_ULONG);
                                *(CK_ULONG *) at->pValue = CKO_PRIVATE_KEY;
                        } else
                                at->ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        break;
                default:
                        if (depth == 1)
                                fill_attrs(at->pValue, at->ulValueLen / sizeof(CK_ATTRIBUTE), depth + 1);
                        break;
                }
        }
}

/* What a backend would put in the outputs. */
static void serve(WireCall call, WireArg *args, Arena *arena)
{
        const char *sig = wire_call_info(call)->signature;

        for (size_t i = 0; sig[i]; i++) {
                WireArg *arg = &args[i];

                switch (sig[i]) {
                case 'o':
                        if (arg->ptr) {
                                *arg->len_ptr = arg->len < 16 ? arg->len : 16;
                                memset(arg->ptr, 's', *arg->len_ptr);
                        } else
                                *arg->len_ptr = 100;
                        break;
                case 'l':
                        if (arg->ptr) {
                                *arg->len_ptr = arg->len < 3 ? arg->len : 3;
                                for (CK_ULONG j = 0; j < *arg->len_ptr; j++)
                                        ((CK_ULONG *) arg->ptr)[j] = j + 1;
                        } else
                                *arg->len_ptr = 3;
                        break;
                case 'r':
                        memset(arg->ptr, 'r', arg->len);
                        break;
                case 'A':
                        fill_attrs(arg->ptr, arg->len, 1);
                        break;
                case 'H': {
                        CK_OBJECT_HANDLE *h = arena_alloc_array(arena, 2, sizeof(CK_OBJECT_HANDLE));

                        h[0] = 1;
                        h[1] = 2;
                        arg->ptr = h;
                        arg->len = 2;
                        break;
                }
                case 'U':
                case 'n':
                case 's':
                        arg->value = 5;
                        break;
                case 'V':
                        ((CK_INFO *) arg->ptr)->cryptokiVersion = (CK_VERSION) { 3, 0 };
                        break;
                case 'T':
                        ((CK_TOKEN_INFO *) arg->ptr)->flags = CKF_TOKEN_INITIALIZED;
                        break;
                default:
                        break;
                }
        }
}

static int generate(const char *dir, WireCall call, unsigned variant)
{
        const WireCallInfo *info = wire_call_info(call);
        WireArg sargs[KYSO_WIRE_ARGS_MAX];
        uint8_t config[1 + FUZZ_CONFIG_SIZE];
        char name[128];
        Arena *arena = NULL;
        uint32_t serial;
        WireCall got;
        Buffer req, rep;
        FuzzArgs f;
        size_t len;
        int r;

        config[0] = (uint8_t) call;
        for (unsigned i = 0; i < FUZZ_CONFIG_SIZE; i++)
                config[1 + i] = (uint8_t) (i * 37 + call * 11 + variant * 101);
        fuzz_args_build(&f, call, config + 1);
        enrich_inputs(&f, call);

        buffer_init(&req, SIZE_MAX);
        buffer_init(&rep, SIZE_MAX);
        r = wire_encode_request(&req, 1, call, f.args);
        if (r < 0)
                goto out;
        r = wire_frame_length(req.data, &len);
        if (r < 0)
                goto out;
        snprintf(name, sizeof(name), "%s-%u", info->name, variant);
        r = write_file(dir, "fuzz-wire-request", name, req.data + KYSO_WIRE_HEADER_SIZE, len, NULL, 0);
        if (r < 0)
                goto out;

        arena = arena_new(3U * KYSO_WIRE_FRAME_MAX);
        r = wire_decode_request(req.data + KYSO_WIRE_HEADER_SIZE, len, arena, &serial, &got, sargs);
        if (r < 0)
                goto out;
        serve(call, sargs, arena);
        r = wire_encode_reply(&rep, serial, call, variant == 2 ? CKR_BUFFER_TOO_SMALL : CKR_OK, sargs);
        if (r < 0)
                goto out;
        r = wire_frame_length(rep.data, &len);
        if (r < 0)
                goto out;
        {
                /* It must decode, or the seed teaches the fuzzer nothing. */
                CK_RV rv;

                r = wire_decode_reply(rep.data + KYSO_WIRE_HEADER_SIZE, len, call, f.args, &rv);
                if (r < 0)
                        goto out;
        }
        r = write_file(dir, "fuzz-wire-reply", name, config, sizeof(config), rep.data + KYSO_WIRE_HEADER_SIZE, len);
out:
        if (r < 0)
                fprintf(stderr, "%s variant %u: %s\n", info->name, variant, strerror(-r));
        fuzz_args_free(&f);
        arena_free(arena);
        buffer_done(&req);
        buffer_done(&rep);
        return r;
}

int main(int argc, char *argv[])
{
        const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";

        for (int call = 0; call < _KYSO_CALL_MAX; call++)
                for (unsigned variant = 0; variant < 3; variant++)
                        if (generate(dir, call, variant) < 0)
                                return EXIT_FAILURE;
        return EXIT_SUCCESS;
}
