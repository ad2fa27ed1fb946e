/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The wire codec proper (see wire.h): structures field by field, mechanisms,
 * message parameters, one encoder and decoder per signature character and
 * direction, and the frames. The tables about PKCS#11 types it reads are in
 * wire-types.c, the attribute templates in wire-template.c, and the Writer
 * and Reader primitives in wire-internal.h.
 */
#include <string.h>

#include "macro.h"
#include "wire-internal.h"
#include "wire.h"

/* u32 serial, u32 call, u64 rv, u8 outputs-present */
#define REPLY_HEADER_SIZE 17U

static bool param_is_struct(WireParam kind)
{
        return kind > WIRE_PARAM_BYTES && kind < _WIRE_PARAM_MAX;
}

static bool param_is_message(WireParam kind)
{
        return kind == WIRE_PARAM_GCM_MESSAGE || kind == WIRE_PARAM_CCM_MESSAGE ||
               kind == WIRE_PARAM_CHACHA_POLY_MESSAGE;
}

/* ---- pointer fields ---- */

static uint64_t bits_to_bytes(CK_ULONG bits)
{
        return bits / 8 + (bits % 8 != 0);
}

static void *field_ptr(const void *s, size_t off)
{
        void *p;

        memcpy(&p, (const uint8_t *) s + off, sizeof(p));
        return p;
}

static void field_set_ptr(void *s, size_t off, void *p)
{
        memcpy((uint8_t *) s + off, &p, sizeof(p));
}

static uint64_t field_ptr_len(const void *s, const Field *f)
{
        switch (f->type) {
        case FIELD_PTR_LEN:
                return ulong_to_u64(field_ulong(s, f->aux));
        case FIELD_PTR_BITS:
                return bits_to_bytes(field_ulong(s, f->aux));
        default:
                return f->aux;
        }
}

/* ---- frames begin and end (the other Writer and Reader primitives are in wire-internal.h) ---- */

static void w_begin(Writer *w, Buffer *b)
{
        *w = (Writer) { .b = b, .start = b->len };
        if (!buffer_ok(b)) {
                w->r = -ENOMEM;
                w->failed_before = true;
        }
        w_u32(w, 0);
}

/* Fills in the header, or on failure leaves the buffer exactly as it was before w_begin(). */
static int w_end(Writer *w, int r)
{
        Buffer *b = w->b;

        if (r >= 0)
                r = w->r;
        if (r >= 0 && !buffer_ok(b))
                r = -ENOMEM;
        if (r < 0) {
                if (!w->failed_before) {
                        secure_zero(b->data + w->start, b->len - w->start);
                        b->len = w->start;
                        b->failed = false;
                }
                return r;
        }
        buffer_set_u32(b, w->start, (uint32_t) (b->len - w->start - KYSO_WIRE_HEADER_SIZE));
        return 0;
}

/* ---- structures ---- */

static void put_fields(Writer *w, const ParamLayout *l, const void *s)
{
        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const void *p;
                uint64_t n;

                switch (f->type) {
                case FIELD_ULONG:
                        w_ulong(w, field_ulong(s, f->off));
                        break;
                case FIELD_BBOOL:
                        w_u8(w, ((const uint8_t *) s)[f->off] ? CK_TRUE : CK_FALSE);
                        break;
                case FIELD_FIXED:
                        w_bytes(w, (const uint8_t *) s + f->off, f->aux);
                        break;
                default:
                        p = field_ptr(s, f->off);
                        n = field_ptr_len(s, f);
                        w_u8(w, p != NULL);
                        w_u64(w, n);
                        if (p)
                                w_bytes(w, p, n);
                        break;
                }
        }
}

/* Server side: rebuilds a structure in the arena, pointers to copies of the buffers. */
static int get_fields(Reader *r, Arena *a, const ParamLayout *l, void *s)
{
        int k;

        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const uint8_t *p;
                CK_ULONG v;
                uint64_t n;
                bool present;
                void *d;

                switch (f->type) {
                case FIELD_ULONG:
                        k = rd_ulong(r, &v);
                        if (k < 0)
                                return k;
                        field_set_ulong(s, f->off, v);
                        break;
                case FIELD_BBOOL:
                        k = rd_bool(r, &present);
                        if (k < 0)
                                return k;
                        ((uint8_t *) s)[f->off] = present ? CK_TRUE : CK_FALSE;
                        break;
                case FIELD_FIXED:
                        k = rd_bytes(r, f->aux, &p);
                        if (k < 0)
                                return k;
                        memcpy((uint8_t *) s + f->off, p, f->aux);
                        break;
                default:
                        k = rd_bool(r, &present);
                        if (k < 0)
                                return k;
                        k = rd_u64(r, &n);
                        if (k < 0)
                                return k;
                        if (f->type == FIELD_PTR_LEN) {
                                k = u64_to_ulong(n, &v);
                                if (k < 0)
                                        return k;
                                field_set_ulong(s, f->aux, v);
                        } else if (n != field_ptr_len(s, f))
                                /* The length is implied by a bit count or the mechanism; a different one is a lie. */
                                return -EBADMSG;
                        d = NULL;
                        if (present) {
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                d = arena_memdup(a, p, n);
                                if (!d)
                                        return -ENOMEM;
                        }
                        field_set_ptr(s, f->off, d);
                        break;
                }
        }
        return 0;
}

/*
 * Client side, reply of an in/out structure: the buffers come back with the lengths they were
 * sent with and are copied into the caller's; the scalars are the caller's inputs and are not
 * written back.
 */
static int get_fields_back(Reader *r, const ParamLayout *l, const void *s, bool apply)
{
        int k;

        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const uint8_t *p;
                uint64_t n, v;
                bool present;
                void *d;

                switch (f->type) {
                case FIELD_ULONG:
                        k = rd_u64(r, &v);
                        break;
                case FIELD_BBOOL:
                        k = rd_bool(r, &present);
                        break;
                case FIELD_FIXED:
                        k = rd_bytes(r, f->aux, &p);
                        break;
                default:
                        d = field_ptr(s, f->off);
                        k = rd_bool(r, &present);
                        if (k < 0)
                                return k;
                        k = rd_u64(r, &n);
                        if (k < 0)
                                return k;
                        if (present != (d != NULL) || n != field_ptr_len(s, f))
                                return -EBADMSG;
                        if (present) {
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                if (apply && n > 0)
                                        memcpy(d, p, n);
                        }
                        break;
                }
                if (k < 0)
                        return k;
        }
        return 0;
}

/* Client side, an output structure ('V', 'I', 'T', 'X', 'M'): every field is written. */
static int get_fields_out(Reader *r, const ParamLayout *l, void *s, bool apply)
{
        int k;

        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const uint8_t *p;
                CK_ULONG v;

                if (f->type == FIELD_ULONG) {
                        k = rd_ulong(r, &v);
                        if (k < 0)
                                return k;
                        if (apply)
                                field_set_ulong(s, f->off, v);
                } else {
                        /* Output layouts hold only integers and character arrays. */
                        k = rd_bytes(r, f->aux, &p);
                        if (k < 0)
                                return k;
                        if (apply)
                                memcpy((uint8_t *) s + f->off, p, f->aux);
                }
        }
        return 0;
}

/* ---- mechanisms ('m') ---- */

static WireParam mechanism_kind(const CK_MECHANISM *m)
{
        WireParam kind;

        if (!m->pParameter)
                return WIRE_PARAM_NONE;
        kind = wire_mechanism_param(m->mechanism);
        if (param_is_struct(kind) && m->ulParameterLen == wire_layouts[kind].size)
                return kind;
        return WIRE_PARAM_BYTES;
}

static void put_mechanism(Writer *w, const CK_MECHANISM *m)
{
        WireParam kind;

        w_u8(w, m != NULL);
        if (!m)
                return;
        kind = mechanism_kind(m);
        w_ulong(w, m->mechanism);
        w_u8(w, kind);
        switch (kind) {
        case WIRE_PARAM_NONE:
                w_ulong(w, m->ulParameterLen);
                break;
        case WIRE_PARAM_BYTES:
                w_u64(w, m->ulParameterLen);
                w_bytes(w, m->pParameter, m->ulParameterLen);
                break;
        default:
                put_fields(w, &wire_layouts[kind], m->pParameter);
                break;
        }
}

static int get_mechanism(Reader *r, Arena *a, CK_MECHANISM **ret)
{
        WireParam expected;
        CK_MECHANISM *m;
        const uint8_t *p;
        bool present;
        uint8_t kind;
        uint64_t n;
        int k;

        k = rd_bool(r, &present);
        if (k < 0)
                return k;
        if (!present) {
                *ret = NULL;
                return 0;
        }
        m = arena_alloc(a, sizeof(CK_MECHANISM));
        if (!m)
                return -ENOMEM;
        k = rd_ulong(r, &m->mechanism);
        if (k < 0)
                return k;
        k = rd_u8(r, &kind);
        if (k < 0)
                return k;
        expected = wire_mechanism_param(m->mechanism);

        switch (kind) {
        case WIRE_PARAM_NONE:
                k = rd_ulong(r, &m->ulParameterLen);
                if (k < 0)
                        return k;
                break;
        case WIRE_PARAM_BYTES:
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                /*
                 * Raw bytes the size of the structure the backend expects would be taken for that
                 * structure, pointers included: the backend would follow pointers a client chose.
                 */
                if (param_is_struct(expected) && n == wire_layouts[expected].size)
                        return -EBADMSG;
                k = rd_bytes(r, n, &p);
                if (k < 0)
                        return k;
                m->pParameter = arena_memdup(a, p, n);
                if (!m->pParameter)
                        return -ENOMEM;
                m->ulParameterLen = n;
                break;
        default:
                if (kind != expected)
                        return -EBADMSG;
                m->pParameter = arena_alloc(a, wire_layouts[kind].size);
                if (!m->pParameter)
                        return -ENOMEM;
                m->ulParameterLen = wire_layouts[kind].size;
                k = get_fields(r, a, &wire_layouts[kind], m->pParameter);
                if (k < 0)
                        return k;
                break;
        }
        *ret = m;
        return 0;
}

/* ---- message parameters ('p') ---- */

static WireParam message_kind(const WireArg *arg)
{
        WireParam kind;

        if (!arg->ptr)
                return WIRE_PARAM_NONE;
        kind = wire_message_param(arg->value);
        if (param_is_message(kind) && arg->len == wire_layouts[kind].size)
                return kind;
        return WIRE_PARAM_BYTES;
}

/* Writes kind and contents; shared by the client's request and the server's reply. */
static void put_message_param(Writer *w, WireParam kind, const void *ptr, CK_ULONG len)
{
        w_u8(w, kind);
        switch (kind) {
        case WIRE_PARAM_NONE:
                w_ulong(w, len);
                break;
        case WIRE_PARAM_BYTES:
                w_u64(w, len);
                w_bytes(w, ptr, len);
                break;
        default:
                put_fields(w, &wire_layouts[kind], ptr);
                break;
        }
}

static int get_message_param(Reader *r, Arena *a, WireArg *arg)
{
        const uint8_t *p;
        uint8_t kind;
        uint64_t n;
        int k;

        k = rd_u8(r, &kind);
        if (k < 0)
                return k;
        arg->value = kind;
        switch (kind) {
        case WIRE_PARAM_NONE:
                return rd_ulong(r, &arg->len);
        case WIRE_PARAM_BYTES:
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                k = rd_bytes(r, n, &p);
                if (k < 0)
                        return k;
                arg->ptr = arena_memdup(a, p, n);
                if (!arg->ptr)
                        return -ENOMEM;
                arg->len = n;
                return 0;
        case WIRE_PARAM_GCM_MESSAGE:
        case WIRE_PARAM_CCM_MESSAGE:
        case WIRE_PARAM_CHACHA_POLY_MESSAGE:
                /* Two copies: the backend gets the first; the reply is built from the untouched second. */
                arg->ptr = arena_alloc_array(a, 2, wire_layouts[kind].size);
                if (!arg->ptr)
                        return -ENOMEM;
                arg->len = wire_layouts[kind].size;
                k = get_fields(r, a, &wire_layouts[kind], arg->ptr);
                if (k < 0)
                        return k;
                memcpy((uint8_t *) arg->ptr + arg->len, arg->ptr, arg->len);
                return 0;
        default:
                return -EBADMSG;
        }
}

static int put_message_param_reply(Writer *w, const WireArg *arg)
{
        WireParam kind = arg->value;

        if (param_is_message(kind)) {
                if (!arg->ptr || arg->len != wire_layouts[kind].size)
                        return -EINVAL;
                put_message_param(w, kind, (const uint8_t *) arg->ptr + arg->len, arg->len);
        } else if (kind == WIRE_PARAM_NONE || kind == WIRE_PARAM_BYTES) {
                if ((kind == WIRE_PARAM_BYTES) != (arg->ptr != NULL))
                        return -EINVAL;
                put_message_param(w, kind, arg->ptr, arg->len);
        } else
                return -EINVAL;
        return 0;
}

static int get_message_param_reply(Reader *r, const WireArg *arg, bool apply)
{
        WireParam kind = message_kind(arg);
        const uint8_t *p;
        uint8_t got;
        uint64_t n;
        int k;

        k = rd_u8(r, &got);
        if (k < 0)
                return k;
        if (got != kind)
                return -EBADMSG;
        switch (kind) {
        case WIRE_PARAM_NONE:
                return rd_u64(r, &n);
        case WIRE_PARAM_BYTES:
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                if (n != arg->len)
                        return -EBADMSG;
                k = rd_bytes(r, n, &p);
                if (k < 0)
                        return k;
                if (apply && n > 0)
                        memcpy(arg->ptr, p, n);
                return 0;
        default:
                return get_fields_back(r, &wire_layouts[kind], arg->ptr, apply);
        }
}

/* ---- one function per signature character and direction ---- */

static int encode_request_arg(Writer *w, char c, const WireArg *arg)
{
        switch (c) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                w_ulong(w, arg->value);
                return 0;
        case 'b':
                w_u8(w, arg->value != CK_FALSE ? CK_TRUE : CK_FALSE);
                return 0;
        case 'y':
                w_u8(w, arg->ptr != NULL);
                w_ulong(w, arg->len);
                if (arg->ptr)
                        w_bytes(w, arg->ptr, arg->len);
                return 0;
        case 'z':
                w_u8(w, arg->ptr != NULL);
                if (arg->ptr)
                        w_bytes(w, arg->ptr, 32);
                return 0;
        case 'a':
                return wire_put_template(w, arg);
        case 'm':
                put_mechanism(w, arg->ptr);
                return 0;
        case 'p':
                put_message_param(w, message_kind(arg), arg->ptr, arg->len);
                return 0;
        case 'o':
        case 'l':
                if (!arg->len_ptr)
                        return -EINVAL;
                w_u8(w, arg->ptr == NULL);
                w_ulong(w, *arg->len_ptr);
                return 0;
        case 'r':
                if ((!arg->ptr && arg->len > 0) || arg->len > KYSO_WIRE_FRAME_MAX - REPLY_HEADER_SIZE)
                        return arg->ptr ? -EMSGSIZE : -EINVAL;
                w_ulong(w, arg->len);
                return 0;
        case 'A':
                if ((!arg->ptr && arg->len > 0) || arg->len > WIRE_TEMPLATE_COUNT_MAX)
                        return -EINVAL;
                w_u32(w, arg->len);
                return wire_put_get_entries(w, arg->ptr, arg->len, 1);
        case 'H':
                return arg->ptr && arg->len_ptr ? 0 : -EINVAL;
        case 'U':
        case 'n':
        case 's':
        case 'V':
        case 'I':
        case 'T':
        case 'X':
        case 'M':
                return arg->ptr ? 0 : -EINVAL;
        default:
                return -EINVAL;
        }
}

static int decode_request_arg(Reader *r, Arena *a, char c, WireArg *arg)
{
        const ParamLayout *l;
        const uint8_t *p;
        uint64_t n;
        bool flag = false;
        int k;

        switch (c) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                return rd_ulong(r, &arg->value);
        case 'b':
                k = rd_bool(r, &flag);
                arg->value = flag ? CK_TRUE : CK_FALSE;
                return k;
        case 'y':
                k = rd_bool(r, &flag);
                if (k < 0)
                        return k;
                k = rd_ulong(r, &arg->len);
                if (k < 0 || !flag)
                        return k;
                k = rd_bytes(r, arg->len, &p);
                if (k < 0)
                        return k;
                /* Input bytes are used where they are (a signature's megabyte is not copied again): the
                 * payload outlives the arguments, see wire_decode_request(). */
                arg->ptr = (uint8_t *) p;
                return 0;
        case 'z':
                k = rd_bool(r, &flag);
                if (k < 0 || !flag)
                        return k;
                k = rd_bytes(r, 32, &p);
                if (k < 0)
                        return k;
                arg->ptr = arena_memdup(a, p, 32);
                return arg->ptr ? 0 : -ENOMEM;
        case 'a':
                return wire_get_template(r, a, arg);
        case 'm':
                return get_mechanism(r, a, (CK_MECHANISM **) &arg->ptr);
        case 'p':
                return get_message_param(r, a, arg);
        case 'o':
        case 'l':
                k = rd_bool(r, &flag);
                if (k < 0)
                        return k;
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                arg->len_ptr = &arg->len;
                if (flag) /* a length query: the backend sees NULL */
                        return 0;
                /*
                 * Capacities are capped at what one reply can carry, so a client's generous buffer
                 * costs at most a frame. value keeps the capacity for the reply encoder.
                 */
                if (c == 'o') {
                        if (n > KYSO_WIRE_FRAME_MAX)
                                n = KYSO_WIRE_FRAME_MAX;
                        arg->ptr = arena_alloc(a, n);
                } else {
                        if (n > WIRE_LIST_COUNT_MAX)
                                n = WIRE_LIST_COUNT_MAX;
                        arg->ptr = arena_alloc_array(a, n, sizeof(CK_ULONG));
                }
                if (!arg->ptr)
                        return -ENOMEM;
                arg->value = arg->len = n;
                return 0;
        case 'r':
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                if (n > KYSO_WIRE_FRAME_MAX - REPLY_HEADER_SIZE)
                        return -EBADMSG;
                arg->ptr = arena_alloc(a, n);
                arg->len = n;
                return arg->ptr ? 0 : -ENOMEM;
        case 'A':
                return wire_get_get_template(r, a, arg);
        case 'H':
                return 0;
        case 'U':
        case 'n':
        case 's':
                arg->ptr = &arg->value;
                return 0;
        default:
                l = wire_output_layout(c);
                if (!l)
                        return -EINVAL;
                /* Zeroed: some backends (SoftHSM2) OR flags into what they are given. */
                arg->ptr = arena_alloc(a, l->size);
                return arg->ptr ? 0 : -ENOMEM;
        }
}

static int encode_reply_arg(Writer *w, char c, const WireArg *arg, CK_RV rv)
{
        const ParamLayout *l;
        CK_ULONG n;
        bool has;

        switch (c) {
        case 'o':
        case 'l':
                n = arg->len_ptr ? *arg->len_ptr : arg->len;
                has = arg->ptr && rv == CKR_OK;
                /* More than the buffer we allocated: the backend is lying; do not read past it. */
                if (has && n > arg->value)
                        return -EINVAL;
                w_ulong(w, n);
                w_u8(w, has);
                if (!has)
                        return 0;
                if (c == 'o')
                        w_bytes(w, arg->ptr, n);
                else
                        for (CK_ULONG i = 0; i < n; i++)
                                w_ulong(w, ulong_at(arg->ptr, i));
                return 0;
        case 'r':
                w_bytes(w, arg->ptr, arg->len);
                return 0;
        case 'A':
                return wire_put_get_reply_entries(w, arg->ptr, (const CK_ATTRIBUTE *) arg->ptr + arg->len,
                                                  arg->len, 1);
        case 'H':
                if (arg->len > WIRE_LIST_COUNT_MAX || (!arg->ptr && arg->len > 0))
                        return -EINVAL;
                w_u32(w, arg->len);
                for (CK_ULONG i = 0; i < arg->len; i++)
                        w_ulong(w, ulong_at(arg->ptr, i));
                return 0;
        case 'U':
        case 'n':
        case 's':
                w_ulong(w, arg->value);
                return 0;
        case 'p':
                return put_message_param_reply(w, arg);
        default:
                l = wire_output_layout(c);
                if (!l)
                        return 0; /* an input-only character */
                if (!arg->ptr)
                        return -EINVAL;
                put_fields(w, l, arg->ptr);
                return 0;
        }
}

static int decode_reply_arg(Reader *r, char c, WireArg *arg, CK_RV rv, bool apply)
{
        const ParamLayout *l;
        const uint8_t *p;
        CK_ULONG n, v;
        uint32_t count;
        bool has;
        int k;

        switch (c) {
        case 'o':
        case 'l':
                k = rd_ulong(r, &n);
                if (k < 0)
                        return k;
                k = rd_bool(r, &has);
                if (k < 0)
                        return k;
                if (has != (arg->ptr && rv == CKR_OK))
                        return -EBADMSG;
                if (has) {
                        if (n > *arg->len_ptr || (c == 'l' && n > WIRE_LIST_COUNT_MAX))
                                return -EBADMSG;
                        if (c == 'o') {
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                if (apply && n > 0)
                                        memcpy(arg->ptr, p, n);
                        } else
                                for (CK_ULONG i = 0; i < n; i++) {
                                        k = rd_ulong(r, &v);
                                        if (k < 0)
                                                return k;
                                        if (apply)
                                                set_ulong_at(arg->ptr, i, v);
                                }
                }
                if (apply)
                        *arg->len_ptr = n;
                return 0;
        case 'r':
                k = rd_bytes(r, arg->len, &p);
                if (k < 0)
                        return k;
                if (apply && arg->len > 0)
                        memcpy(arg->ptr, p, arg->len);
                return 0;
        case 'A':
                return wire_get_get_reply_entries(r, arg->ptr, arg->len, 1, apply);
        case 'H': {
                _cleanup_(freep) CK_OBJECT_HANDLE *handles = NULL;

                k = rd_u32(r, &count);
                if (k < 0)
                        return k;
                if (count > WIRE_LIST_COUNT_MAX || count > reader_remaining(r) / 8)
                        return -EBADMSG;
                if (apply && count > 0) {
                        handles = calloc(count, sizeof(CK_OBJECT_HANDLE));
                        if (!handles)
                                return -ENOMEM;
                }
                for (uint32_t i = 0; i < count; i++) {
                        k = rd_ulong(r, &v);
                        if (k < 0)
                                return k;
                        if (handles)
                                handles[i] = v;
                }
                if (apply) {
                        *(CK_OBJECT_HANDLE **) arg->ptr = TAKE_PTR(handles);
                        *arg->len_ptr = count;
                }
                return 0;
        }
        case 'U':
        case 'n':
        case 's':
                k = rd_ulong(r, &v);
                if (k < 0)
                        return k;
                if (apply)
                        *(CK_ULONG *) arg->ptr = v;
                return 0;
        case 'p':
                return get_message_param_reply(r, arg, apply);
        default:
                l = wire_output_layout(c);
                if (!l)
                        return 0;
                return get_fields_out(r, l, arg->ptr, apply);
        }
}

/* ---- frames ---- */

int wire_frame_length(const uint8_t header[KYSO_WIRE_HEADER_SIZE], size_t *ret_len)
{
        uint32_t len = (uint32_t) header[0] << 24 | (uint32_t) header[1] << 16 | (uint32_t) header[2] << 8 |
                       header[3];

        if (len > KYSO_WIRE_FRAME_MAX)
                return -EMSGSIZE;
        if (len < 8)
                return -EBADMSG;
        *ret_len = len;
        return 0;
}

int wire_peek(const uint8_t *payload, size_t size, uint32_t *ret_serial, uint32_t *ret_call)
{
        Reader r;
        uint32_t serial, call;

        reader_init(&r, payload, size);
        if (!reader_u32(&r, &serial) || !reader_u32(&r, &call))
                return -EBADMSG;
        if (ret_serial)
                *ret_serial = serial;
        if (ret_call)
                *ret_call = call;
        return 0;
}

int wire_encode_request(Buffer *out, uint32_t serial, WireCall call, const WireArg *args)
{
        const WireCallInfo *info = wire_call_info(call);
        Writer w;
        int r = 0;

        if (!info || !out || (!args && info->signature[0]))
                return -EINVAL;
        w_begin(&w, out);
        w_u32(&w, serial);
        w_u32(&w, (uint32_t) call);
        for (size_t i = 0; info->signature[i] && r >= 0; i++)
                r = encode_request_arg(&w, info->signature[i], &args[i]);
        return w_end(&w, r);
}

static int decode_reply_args(const Reader *start, const char *sig, WireArg *args, CK_RV rv, bool apply)
{
        Reader r = *start;
        int k;

        for (size_t i = 0; sig[i]; i++) {
                k = decode_reply_arg(&r, sig[i], &args[i], rv, apply);
                if (k < 0)
                        return k;
        }
        return reader_at_end(&r) ? 0 : -EBADMSG;
}

int wire_decode_reply(const uint8_t *payload, size_t size, WireCall call, WireArg *args, CK_RV *ret_rv)
{
        const WireCallInfo *info = wire_call_info(call);
        uint32_t serial, id;
        bool present;
        uint64_t rv64;
        CK_RV rv;
        Reader r;
        int k;

        if (!info || (!args && info->signature[0]))
                return -EINVAL;
        reader_init(&r, payload, size);
        if (rd_u32(&r, &serial) < 0 || rd_u32(&r, &id) < 0 || id != (uint32_t) call || rd_u64(&r, &rv64) < 0 ||
            u64_to_ulong(rv64, &rv) < 0 || rd_bool(&r, &present) < 0)
                return -EBADMSG;
        if (present != wire_rv_has_outputs(call, rv))
                return -EBADMSG;
        if (present) {
                /* Check everything first, so a bad reply leaves the caller's memory untouched. */
                k = decode_reply_args(&r, info->signature, args, rv, false);
                if (k < 0)
                        return k;
                k = decode_reply_args(&r, info->signature, args, rv, true);
                if (k < 0)
                        return k;
        } else if (!reader_at_end(&r))
                return -EBADMSG;
        if (ret_rv)
                *ret_rv = rv;
        return 0;
}

int wire_decode_request(const uint8_t *payload, size_t size, Arena *arena, uint32_t *ret_serial, WireCall *ret_call,
                        WireArg *args)
{
        const WireCallInfo *info;
        uint32_t serial, id;
        Reader r;
        int k;

        if (!arena || !args)
                return -EINVAL;
        reader_init(&r, payload, size);
        if (rd_u32(&r, &serial) < 0 || rd_u32(&r, &id) < 0)
                return -EBADMSG;
        if (ret_serial)
                *ret_serial = serial;
        if (ret_call)
                *ret_call = (WireCall) id;
        info = wire_call_info((WireCall) id);
        if (id >= _KYSO_CALL_MAX || !info)
                return -EPROTO;

        memset(args, 0, sizeof(WireArg) * KYSO_WIRE_ARGS_MAX);
        for (size_t i = 0; info->signature[i]; i++) {
                k = decode_request_arg(&r, arena, info->signature[i], &args[i]);
                if (k < 0)
                        return k;
        }
        return reader_at_end(&r) ? 0 : -EBADMSG;
}

int wire_encode_reply(Buffer *out, uint32_t serial, WireCall call, CK_RV rv, const WireArg *args)
{
        const WireCallInfo *info = wire_call_info(call);
        bool present;
        Writer w;
        int r = 0;

        if (!info || !out || (!args && info->signature[0]))
                return -EINVAL;
        present = wire_rv_has_outputs(call, rv);
        w_begin(&w, out);
        w_u32(&w, serial);
        w_u32(&w, (uint32_t) call);
        w_ulong(&w, rv);
        w_u8(&w, present);
        for (size_t i = 0; present && info->signature[i] && r >= 0; i++)
                r = encode_reply_arg(&w, info->signature[i], &args[i], rv);
        return w_end(&w, r);
}

int wire_encode_error_reply(Buffer *out, uint32_t serial, WireCall call, CK_RV rv)
{
        Writer w;

        /* A reply that should carry outputs but does not would leave the caller reading garbage. */
        if (!out || wire_rv_has_outputs(call, rv))
                return -EINVAL;
        w_begin(&w, out);
        w_u32(&w, serial);
        w_u32(&w, (uint32_t) call);
        w_ulong(&w, rv);
        w_u8(&w, false);
        return w_end(&w, 0);
}
