/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Attribute templates, nested ones included, in both directions:
 *
 *   server: a request for a call that carries templates ('a', or 'A' for C_GetAttributeValue), with
 *           the arguments before the first template fixed and valid and the fuzzed bytes in place of
 *           the templates; then the decoded request is re-encoded (canonical-form check), a hostile
 *           backend rewrites the lengths and nested types of a GetAttributeValue template, and a
 *           reply is encoded from what it left;
 *   client: the reply decoder for 'A', with the caller's template (types, buffers, capacities,
 *           nested arrays) chosen from the input, each buffer malloc()ed at its exact size; a reply
 *           it refuses must leave the caller's memory untouched.
 *
 * Input: u8 selector, FUZZ_CONFIG_SIZE bytes of configuration, then the fuzzed bytes.
 */
#include <stddef.h>
#include <stdint.h>

/*
 * GetAttributeValue capacities are allocated up front; with the daemon's arena size every input with
 * a large capacity zeroes and wipes megabytes three times (decode, re-decode, free) and the search
 * runs ten times slower. The limit is reached (-ENOMEM) either way.
 */
#define FUZZ_ARENA_LIMIT (256U * 1024U)

#include "fuzz-args.h"
#include "fuzz-request.h"
#include "wire.h"

#define OUTPUT_MAX 64U

static const WireCall tmpl_server_calls[] = {
        KYSO_CALL_C_CreateObject,  KYSO_CALL_C_CopyObject,      KYSO_CALL_C_SetAttributeValue,
        KYSO_CALL_C_FindObjectsInit, KYSO_CALL_C_GetAttributeValue, KYSO_CALL_C_GenerateKey,
        KYSO_CALL_C_GenerateKeyPair, KYSO_CALL_C_UnwrapKey,     KYSO_CALL_C_DeriveKey,
};

/* One selector value more than tmpl_server_calls: the client's reply decoder. */
#define TMPL_MODES (ELEMENTSOF(tmpl_server_calls) + 1)

static const CK_RV reply_rvs[] = {
        CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID, CKR_BUFFER_TOO_SMALL,
};

typedef struct Config {
        const uint8_t *bytes;
        size_t next;
} Config;

static uint8_t cfg_byte(Config *c)
{
        return c->bytes[c->next++ % FUZZ_CONFIG_SIZE];
}

/*
 * What a buggy or hostile backend may do to a GetAttributeValue template: report any length (larger
 * than the buffer, CK_UNAVAILABLE_INFORMATION), change the types inside a nested template, and
 * scribble over pValue in the array the daemon gave it. It never writes past a buffer: that would
 * be a bug of the backend, not of the codec.
 */
static CK_ULONG hostile_len(Config *c, CK_ULONG cap)
{
        uint8_t b = cfg_byte(c);

        switch (b % 6) {
        case 0:
                return cap;
        case 1:
                return CK_UNAVAILABLE_INFORMATION;
        case 2:
                return cap > b ? cap - b : 0;
        case 3:
                return cap + 1 + b % 9;
        case 4:
                return (CK_ULONG) b * sizeof(CK_ULONG);
        default:
                return cap < OUTPUT_MAX ? cap : OUTPUT_MAX;
        }
}

static void play_hostile_backend(Config *c, CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth)
{
        static const CK_ATTRIBUTE_TYPE types[] = {
                CKA_LABEL, CKA_CLASS, CKA_ALLOWED_MECHANISMS, CKA_WRAP_TEMPLATE, CKA_VALUE_LEN, CKA_ID,
        };

        for (CK_ULONG i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                /* What the daemon allocated, before the backend touches anything (second half). */
                const CK_ATTRIBUTE *sh = &attrs[count + i];
                uint8_t b = cfg_byte(c);

                if (depth > 1 && (b & 0x01))
                        at->type = types[(b >> 1) % ELEMENTSOF(types)];
                if (sh->pValue && wire_attribute_kind(sh->type) == WIRE_ATTR_TEMPLATE && (b & 0x10))
                        play_hostile_backend(c, sh->pValue, sh->ulValueLen / sizeof(CK_ATTRIBUTE), depth + 1);
                else if (sh->pValue && wire_attribute_kind(sh->type) != WIRE_ATTR_TEMPLATE && sh->ulValueLen > 0)
                        memset(sh->pValue, 'v', sh->ulValueLen < OUTPUT_MAX ? sh->ulValueLen : OUTPUT_MAX);
                if (b & 0x20)
                        at->ulValueLen = hostile_len(c, sh->ulValueLen);
                else if (wire_attribute_kind(sh->type) != WIRE_ATTR_TEMPLATE && at->ulValueLen > OUTPUT_MAX)
                        at->ulValueLen = OUTPUT_MAX; /* real values are short; whole frames only slow the search */
                if (b & 0x40)
                        at->pValue = (void *) (uintptr_t) 0x10; /* the reply must not follow it */
        }
}

static void tmpl_run_server(WireCall call, Config *c, const uint8_t *tail, size_t tail_size)
{
        WireArg args[KYSO_WIRE_ARGS_MAX];
        const char *sig = wire_call_info(call)->signature;
        size_t first = fuzz_sig_find(call, "aA");
        uint32_t serial;
        WireCall got;
        Arena *arena;
        Buffer req, reply;
        int r;

        buffer_init(&req, KYSO_WIRE_FRAME_MAX);
        fuzz_canned_header(&req, call);
        fuzz_canned_args(&req, call, 0, first);
        buffer_add_bytes(&req, tail, tail_size);
        if (!buffer_ok(&req))
                goto out_req;

        arena = arena_new(FUZZ_ARENA_LIMIT);
        if (!arena)
                goto out_req;
        r = wire_decode_request(req.data, req.len, arena, &serial, &got, args);
        if (r < 0)
                goto out;
        fuzz_check(got == call && serial == 0x1234);

        fuzz_check_fixpoint(call, args);

        for (size_t i = 0; sig[i]; i++)
                if (sig[i] == 'A')
                        play_hostile_backend(c, args[i].ptr, args[i].len, 1);

        buffer_init(&reply, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        (void) wire_encode_reply(&reply, serial, call, reply_rvs[cfg_byte(c) % ELEMENTSOF(reply_rvs)], args);
        buffer_done(&reply);
out:
        arena_free(arena);
out_req:
        buffer_done(&req);
}

/* The caller's side of C_GetAttributeValue: types, buffers and capacities from the configuration. */
static void client_attr(Config *c, FuzzTrack *t, CK_ATTRIBUTE *at, unsigned depth)
{
        static const CK_ATTRIBUTE_TYPE types[] = {
                CKA_LABEL,          CKA_CLASS,        CKA_ALLOWED_MECHANISMS, CKA_VALUE,
                CKA_MODULUS_BITS,   CKA_ID,           CKA_WRAP_TEMPLATE,      CKA_UNWRAP_TEMPLATE,
                CKA_DERIVE_TEMPLATE,
        };
        uint8_t b = cfg_byte(c), n = cfg_byte(c);
        /* Nested templates only at the top level, like the codec; the other types below. */
        size_t n_types = depth > 1 ? ELEMENTSOF(types) - 3 : ELEMENTSOF(types);

        at->type = types[b % n_types];
        if (b & 0x80) {
                at->pValue = NULL;
                at->ulValueLen = n;
                return;
        }
        switch (wire_attribute_kind(at->type)) {
        case WIRE_ATTR_TEMPLATE: {
                size_t count = n % 4;
                CK_ATTRIBUTE *inner = fuzz_track_alloc(t, count * sizeof(CK_ATTRIBUTE));

                for (size_t i = 0; i < count; i++)
                        client_attr(c, t, &inner[i], depth + 1);
                at->pValue = inner;
                at->ulValueLen = count * sizeof(CK_ATTRIBUTE);
                break;
        }
        case WIRE_ATTR_ULONGS:
                /* Mostly whole CK_ULONGs, sometimes a ragged capacity. */
                at->ulValueLen = (b & 0x40) ? n % 29 : (n % 6) * sizeof(CK_ULONG);
                at->pValue = fuzz_track_alloc(t, at->ulValueLen);
                break;
        default:
                at->ulValueLen = n % 48;
                at->pValue = fuzz_track_alloc(t, at->ulValueLen);
                break;
        }
}

static void tmpl_run_client(Config *c, const uint8_t *tail, size_t tail_size)
{
        WireArg args[KYSO_WIRE_ARGS_MAX] = { 0 };
        FuzzTrack t = { .n = 0 };
        CK_ATTRIBUTE *attrs;
        size_t count = cfg_byte(c) % 6;
        CK_RV rv = reply_rvs[cfg_byte(c) % ELEMENTSOF(reply_rvs)], got_rv;
        Buffer reply;
        int r;

        attrs = fuzz_track_alloc(&t, count * sizeof(CK_ATTRIBUTE));
        for (size_t i = 0; i < count; i++)
                client_attr(c, &t, &attrs[i], 1);
        args[0].value = 1;
        args[1].value = 2;
        args[2].ptr = attrs;
        args[2].len = count;

        buffer_init(&reply, KYSO_WIRE_FRAME_MAX);
        buffer_add_u32(&reply, 7);
        buffer_add_u32(&reply, KYSO_CALL_C_GetAttributeValue);
        buffer_add_u64(&reply, rv);
        buffer_add_u8(&reply, 1);
        buffer_add_bytes(&reply, tail, tail_size);
        if (buffer_ok(&reply)) {
                fuzz_track_snapshot(&t);
                r = wire_decode_reply(reply.data, reply.len, KYSO_CALL_C_GetAttributeValue, args, &got_rv);
                if (r < 0)
                        fuzz_check(fuzz_track_unchanged(&t));
                else
                        fuzz_check(got_rv == rv);
        }
        buffer_done(&reply);
        fuzz_track_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Config c;
        size_t mode;

        if (size < 1 + FUZZ_CONFIG_SIZE || size > KYSO_WIRE_FRAME_MAX / 2)
                return 0;
        mode = data[0] % TMPL_MODES;
        c = (Config) { .bytes = data + 1 };
        data += 1 + FUZZ_CONFIG_SIZE;
        size -= 1 + FUZZ_CONFIG_SIZE;
        if (mode < ELEMENTSOF(tmpl_server_calls))
                tmpl_run_server(tmpl_server_calls[mode], &c, data, size);
        else
                tmpl_run_client(&c, data, size);
        return 0;
}
