/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers for the targets that aim at one decoder inside a request (templates, mechanisms): fixed,
 * valid encodings of the arguments around the fuzzed one, so that every input reaches that decoder
 * instead of dying on the call id or a session handle; and the checks each decoded request must
 * pass. Shared with gen-seeds, which strips the same prefix and suffix from frames the client
 * encoder produced.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "wire.h"

/* Smaller than the daemon's (3 frames): the paths are the same, and wiping megabytes per input slows the search. */
#ifndef FUZZ_ARENA_LIMIT
#define FUZZ_ARENA_LIMIT (4U * 1024U * 1024U)
#endif
#define FUZZ_CANNED_MECHANISM CKM_AES_KEY_GEN

/* A valid request encoding of one argument, for every signature character. */
static inline void fuzz_canned_arg(Buffer *b, char c)
{
        switch (c) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                buffer_add_u64(b, 1);
                break;
        case 'b':
                buffer_add_u8(b, 1);
                break;
        case 'y':
                buffer_add_u8(b, 1);
                buffer_add_u64(b, 4);
                buffer_add_bytes(b, "abcd", 4);
                break;
        case 'z':
                buffer_add_u8(b, 1);
                buffer_add_bytes(b, "0123456789abcdef0123456789abcdef", 32);
                break;
        case 'a':
                buffer_add_u8(b, 1);
                buffer_add_u32(b, 0);
                break;
        case 'A':
                buffer_add_u32(b, 0);
                break;
        case 'm':
                buffer_add_u8(b, 1);
                buffer_add_u64(b, FUZZ_CANNED_MECHANISM);
                buffer_add_u8(b, WIRE_PARAM_NONE);
                buffer_add_u64(b, 0);
                break;
        case 'p':
                buffer_add_u8(b, WIRE_PARAM_NONE);
                buffer_add_u64(b, 0);
                break;
        case 'o':
        case 'l':
                buffer_add_u8(b, 0);
                buffer_add_u64(b, 32);
                break;
        case 'r':
                buffer_add_u64(b, 16);
                break;
        default: /* output-only characters carry nothing in a request */
                break;
        }
}

/* serial, call id, then the canned encodings of signature characters [from, to). */
static inline void fuzz_canned_args(Buffer *b, WireCall call, size_t from, size_t to)
{
        const char *sig = wire_call_info(call)->signature;

        for (size_t i = from; i < to && sig[i]; i++)
                fuzz_canned_arg(b, sig[i]);
}

static inline void fuzz_canned_header(Buffer *b, WireCall call)
{
        buffer_add_u32(b, 0x1234);
        buffer_add_u32(b, (uint32_t) call);
}

/* The first position of any of chars in call's signature; abort()s if there is none. */
static inline size_t fuzz_sig_find(WireCall call, const char *chars)
{
        const char *sig = wire_call_info(call)->signature;
        size_t i = strcspn(sig, chars);

        if (!sig[i])
                abort();
        return i;
}

#define fuzz_check(expr)                                                                                   \
        do {                                                                                               \
                if (!(expr)) {                                                                             \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);           \
                        abort();                                                                           \
                }                                                                                          \
        } while (0)

/*
 * The client encoder must accept anything the server decoder accepted and produce a canonical
 * form: re-encoding the decoded arguments gives a payload that decodes again and re-encodes to the
 * same bytes. A difference means the two directions disagree about a length, a kind or a flag.
 * The server's view of some characters is not a client's, so it is translated first.
 */
static inline void fuzz_client_view(WireCall call, const WireArg *server, WireArg *client, CK_ULONG *lens,
                                    CK_OBJECT_HANDLE **handles)
{
        const char *sig = wire_call_info(call)->signature;

        memcpy(client, server, sizeof(WireArg) * KYSO_WIRE_ARGS_MAX);
        for (size_t i = 0; sig[i]; i++) {
                WireArg *c = &client[i];

                switch (sig[i]) {
                case 'p':
                        /* The server holds the kind that arrived; a client holds the mechanism. */
                        switch (server[i].value) {
                        case WIRE_PARAM_GCM_MESSAGE:
                                c->value = CKM_AES_GCM;
                                break;
                        case WIRE_PARAM_CCM_MESSAGE:
                                c->value = CKM_AES_CCM;
                                break;
                        case WIRE_PARAM_CHACHA_POLY_MESSAGE:
                                c->value = CKM_CHACHA20_POLY1305;
                                break;
                        default:
                                c->value = CKM_VENDOR_DEFINED;
                                break;
                        }
                        break;
                case 'o':
                case 'l':
                        lens[i] = server[i].len;
                        c->len_ptr = &lens[i];
                        break;
                case 'H':
                        c->ptr = handles;
                        c->len_ptr = &lens[i];
                        break;
                default:
                        break;
                }
        }
}

static inline int fuzz_reencode(WireCall call, const WireArg *server, Buffer *out)
{
        WireArg client[KYSO_WIRE_ARGS_MAX];
        CK_ULONG lens[KYSO_WIRE_ARGS_MAX] = { 0 };
        CK_OBJECT_HANDLE *handles = NULL;

        fuzz_client_view(call, server, client, lens, &handles);
        return wire_encode_request(out, 0x1234, call, client);
}

static inline void fuzz_check_fixpoint(WireCall call, const WireArg *args)
{
        WireArg args2[KYSO_WIRE_ARGS_MAX];
        uint32_t serial;
        WireCall call2;
        Buffer p1, p2;
        Arena *arena;
        int r;

        buffer_init(&p1, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        buffer_init(&p2, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        arena = arena_new(FUZZ_ARENA_LIMIT);
        fuzz_check(arena);

        r = fuzz_reencode(call, args, &p1);
        if (r < 0)
                fprintf(stderr, "re-encoding %s: %s\n", wire_call_info(call)->name, strerror(-r));
        fuzz_check(r == 0);
        r = wire_decode_request(p1.data + KYSO_WIRE_HEADER_SIZE, p1.len - KYSO_WIRE_HEADER_SIZE, arena, &serial,
                                &call2, args2);
        /* -ENOMEM: a decoded copy may allocate more than the first one (capacities, both halves). */
        if (r == -ENOMEM)
                goto out;
        if (r < 0)
                fprintf(stderr, "decoding re-encoded %s: %s\n", wire_call_info(call)->name, strerror(-r));
        fuzz_check(r == 0);
        fuzz_check(call2 == call);
        fuzz_check(fuzz_reencode(call, args2, &p2) == 0);
        fuzz_check(p1.len == p2.len && memcmp(p1.data, p2.data, p1.len) == 0);
out:
        arena_free(arena);
        buffer_done(&p1);
        buffer_done(&p2);
}

/* Records the caller's buffers with their sizes, so that a failed decode can be shown to leave them alone. */
#define FUZZ_TRACK_MAX 256U

typedef struct FuzzTrack {
        void *ptr[FUZZ_TRACK_MAX];
        size_t size[FUZZ_TRACK_MAX];
        uint8_t *copy[FUZZ_TRACK_MAX];
        size_t n;
} FuzzTrack;

static inline void *fuzz_track_alloc(FuzzTrack *t, size_t n)
{
        void *p;

        if (t->n >= FUZZ_TRACK_MAX)
                abort();
        p = malloc(n ? n : 1); /* exact size: the sanitizers see any write past it */
        if (!p)
                abort();
        memset(p, 0xa5, n);
        t->ptr[t->n] = p;
        t->size[t->n] = n;
        t->copy[t->n] = NULL;
        t->n++;
        return p;
}

static inline void fuzz_track_snapshot(FuzzTrack *t)
{
        for (size_t i = 0; i < t->n; i++) {
                t->copy[i] = malloc(t->size[i] ? t->size[i] : 1);
                if (!t->copy[i])
                        abort();
                memcpy(t->copy[i], t->ptr[i], t->size[i]);
        }
}

static inline bool fuzz_track_unchanged(const FuzzTrack *t)
{
        for (size_t i = 0; i < t->n; i++)
                if (t->copy[i] && memcmp(t->copy[i], t->ptr[i], t->size[i]) != 0)
                        return false;
        return true;
}

static inline void fuzz_track_free(FuzzTrack *t)
{
        for (size_t i = 0; i < t->n; i++) {
                free(t->ptr[i]);
                free(t->copy[i]);
        }
        t->n = 0;
}
