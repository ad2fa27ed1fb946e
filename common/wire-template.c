/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Attribute templates on the wire, both directions on both sides: the
 * templates a call passes in ('a'), nested ones included, and the in/out
 * templates of C_GetAttributeValue ('A'), whose reply the client decodes
 * into the caller's buffers. wire.c calls these from the codec of those two
 * characters; the primitives come from wire-internal.h.
 */
#include <limits.h>
#include <string.h>

#include "macro.h"
#include "wire-internal.h"
#include "wire.h"

/* The smallest attribute entry in a request (u64 type, u8 kind, u8 flag, u64 length): bounds counts early. */
#define ATTR_ENTRY_MIN 18U

static size_t attr_unit(WireAttrKind kind)
{
        switch (kind) {
        case WIRE_ATTR_ULONGS:
                return sizeof(CK_ULONG);
        case WIRE_ATTR_TEMPLATE:
                return sizeof(CK_ATTRIBUTE);
        default:
                return 1;
        }
}

/* ---- attribute templates ('a') ---- */

static bool attr_kind_acceptable(CK_ATTRIBUTE_TYPE type, uint8_t kind)
{
        WireAttrKind expected = wire_attribute_kind(type);

        /* A ULONGS attribute whose length is no multiple of CK_ULONG travels as bytes. */
        return kind == expected || (expected == WIRE_ATTR_ULONGS && kind == WIRE_ATTR_BYTES);
}

static int put_template_entries(Writer *w, const CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth)
{
        for (CK_ULONG i = 0; i < count; i++) {
                const CK_ATTRIBUTE *at = &attrs[i];
                WireAttrKind kind = wire_attribute_kind(at->type);
                size_t unit;
                int k;

                if (kind == WIRE_ATTR_ULONGS && at->ulValueLen % sizeof(CK_ULONG) != 0)
                        kind = WIRE_ATTR_BYTES;
                unit = attr_unit(kind);
                if (at->pValue) {
                        if (at->ulValueLen > KYSO_WIRE_FRAME_MAX)
                                return -EMSGSIZE;
                        /* Raw bytes of a CK_ATTRIBUTE array would carry our pointers to the daemon. */
                        if (kind == WIRE_ATTR_TEMPLATE &&
                            (at->ulValueLen % unit != 0 || depth >= WIRE_TEMPLATE_DEPTH_MAX ||
                             at->ulValueLen / unit > WIRE_TEMPLATE_COUNT_MAX))
                                return -EINVAL;
                }

                w_ulong(w, at->type);
                w_u8(w, kind);
                w_u8(w, at->pValue != NULL);
                w_u64(w, at->ulValueLen == CK_UNAVAILABLE_INFORMATION ? UINT64_MAX : at->ulValueLen / unit);
                if (!at->pValue)
                        continue;
                switch (kind) {
                case WIRE_ATTR_BYTES:
                        w_bytes(w, at->pValue, at->ulValueLen);
                        break;
                case WIRE_ATTR_ULONGS:
                        for (CK_ULONG j = 0; j < at->ulValueLen / unit; j++)
                                w_ulong(w, ulong_at(at->pValue, j));
                        break;
                default:
                        k = put_template_entries(w, at->pValue, at->ulValueLen / unit, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                if (w->r < 0)
                        return w->r;
        }
        return 0;
}

int wire_put_template(Writer *w, const WireArg *arg)
{
        if (arg->len > WIRE_TEMPLATE_COUNT_MAX)
                return -EINVAL;
        w_u8(w, arg->ptr != NULL);
        w_u32(w, arg->len);
        if (!arg->ptr)
                return 0;
        return put_template_entries(w, arg->ptr, arg->len, 1);
}

static int get_template_entries(Reader *r, Arena *a, CK_ATTRIBUTE *attrs, size_t count, unsigned depth)
{
        int k;

        for (size_t i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                const uint8_t *p;
                bool present;
                uint8_t kind;
                uint64_t n;
                size_t unit;

                k = rd_ulong(r, &at->type);
                if (k < 0)
                        return k;
                k = rd_u8(r, &kind);
                if (k < 0)
                        return k;
                if (!attr_kind_acceptable(at->type, kind))
                        return -EBADMSG;
                k = rd_bool(r, &present);
                if (k < 0)
                        return k;
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                unit = attr_unit(kind);

                if (!present) {
                        at->pValue = NULL;
                        if (n == UINT64_MAX)
                                at->ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        else if (n > ULONG_MAX / unit)
                                return -EBADMSG;
                        else
                                at->ulValueLen = n * unit;
                        continue;
                }

                switch (kind) {
                case WIRE_ATTR_BYTES:
                        k = rd_bytes(r, n, &p);
                        if (k < 0)
                                return k;
                        at->pValue = arena_memdup(a, p, n);
                        if (!at->pValue)
                                return -ENOMEM;
                        break;
                case WIRE_ATTR_ULONGS:
                        /* Each value takes 8 bytes of the frame: that bounds n before allocating. */
                        if (n > reader_remaining(r) / 8)
                                return -EBADMSG;
                        at->pValue = arena_alloc_array(a, n, sizeof(CK_ULONG));
                        if (!at->pValue)
                                return -ENOMEM;
                        for (size_t j = 0; j < n; j++) {
                                CK_ULONG v;

                                k = rd_ulong(r, &v);
                                if (k < 0)
                                        return k;
                                set_ulong_at(at->pValue, j, v);
                        }
                        break;
                default:
                        if (depth >= WIRE_TEMPLATE_DEPTH_MAX || n > WIRE_TEMPLATE_COUNT_MAX ||
                            n > reader_remaining(r) / ATTR_ENTRY_MIN)
                                return -EBADMSG;
                        at->pValue = arena_alloc_array(a, n, sizeof(CK_ATTRIBUTE));
                        if (!at->pValue)
                                return -ENOMEM;
                        k = get_template_entries(r, a, at->pValue, n, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                at->ulValueLen = n * unit;
        }
        return 0;
}

int wire_get_template(Reader *r, Arena *a, WireArg *arg)
{
        bool present;
        uint32_t count;
        int k;

        k = rd_bool(r, &present);
        if (k < 0)
                return k;
        k = rd_u32(r, &count);
        if (k < 0)
                return k;
        if (count > WIRE_TEMPLATE_COUNT_MAX)
                return -EBADMSG;
        arg->len = count;
        if (!present)
                return 0;
        if (count > reader_remaining(r) / ATTR_ENTRY_MIN)
                return -EBADMSG;
        arg->ptr = arena_alloc_array(a, count, sizeof(CK_ATTRIBUTE));
        if (!arg->ptr)
                return -ENOMEM;
        return get_template_entries(r, a, arg->ptr, count, 1);
}

/* ---- C_GetAttributeValue templates ('A') ---- */

int wire_put_get_entries(Writer *w, const CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth)
{
        for (CK_ULONG i = 0; i < count; i++) {
                const CK_ATTRIBUTE *at = &attrs[i];
                WireAttrKind kind = wire_attribute_kind(at->type);
                size_t unit = attr_unit(kind);
                int k;

                if (kind == WIRE_ATTR_TEMPLATE && at->pValue &&
                    (depth >= WIRE_TEMPLATE_DEPTH_MAX || at->ulValueLen / unit > WIRE_TEMPLATE_COUNT_MAX))
                        return -EINVAL;
                w_ulong(w, at->type);
                w_u8(w, kind);
                w_u8(w, at->pValue != NULL);
                /* Whole units only: the value comes back no larger than this, so it fits. */
                w_u64(w, at->ulValueLen / unit);
                if (kind == WIRE_ATTR_TEMPLATE && at->pValue) {
                        k = wire_put_get_entries(w, at->pValue, at->ulValueLen / unit, depth + 1);
                        if (k < 0)
                                return k;
                }
                if (w->r < 0)
                        return w->r;
        }
        return 0;
}

/*
 * Server side. attrs has room for 2 * count entries: the second half keeps the buffers as
 * allocated (pointer, capacity, requested type), so the reply never trusts what the backend did
 * to the first half beyond the lengths and nested types it reports.
 */
static int get_get_entries(Reader *r, Arena *a, CK_ATTRIBUTE *attrs, size_t count, unsigned depth)
{
        int k;

        for (size_t i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                bool has_buffer;
                uint8_t kind;
                uint64_t cap;

                k = rd_ulong(r, &at->type);
                if (k < 0)
                        return k;
                k = rd_u8(r, &kind);
                if (k < 0)
                        return k;
                if (kind != wire_attribute_kind(at->type))
                        return -EBADMSG;
                k = rd_bool(r, &has_buffer);
                if (k < 0)
                        return k;
                k = rd_u64(r, &cap);
                if (k < 0)
                        return k;

                at->pValue = NULL;
                at->ulValueLen = 0;
                if (!has_buffer)
                        continue;

                /*
                 * A value larger than a frame could not come back anyway, so a larger capacity
                 * (a client with a generous buffer) is served with a frame's worth.
                 */
                switch (kind) {
                case WIRE_ATTR_BYTES:
                        if (cap > KYSO_WIRE_FRAME_MAX)
                                cap = KYSO_WIRE_FRAME_MAX;
                        at->pValue = arena_alloc(a, cap);
                        break;
                case WIRE_ATTR_ULONGS:
                        if (cap > KYSO_WIRE_FRAME_MAX / sizeof(CK_ULONG))
                                cap = KYSO_WIRE_FRAME_MAX / sizeof(CK_ULONG);
                        at->pValue = arena_alloc_array(a, cap, sizeof(CK_ULONG));
                        break;
                default:
                        if (depth >= WIRE_TEMPLATE_DEPTH_MAX || cap > WIRE_TEMPLATE_COUNT_MAX ||
                            cap > reader_remaining(r) / ATTR_ENTRY_MIN)
                                return -EBADMSG;
                        at->pValue = arena_alloc_array(a, 2 * cap, sizeof(CK_ATTRIBUTE));
                        if (!at->pValue)
                                return -ENOMEM;
                        k = get_get_entries(r, a, at->pValue, cap, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                if (!at->pValue)
                        return -ENOMEM;
                at->ulValueLen = cap * attr_unit(kind);
        }
        if (count > 0)
                memcpy(attrs + count, attrs, count * sizeof(CK_ATTRIBUTE));
        return 0;
}

int wire_get_get_template(Reader *r, Arena *a, WireArg *arg)
{
        uint32_t count;
        int k;

        k = rd_u32(r, &count);
        if (k < 0)
                return k;
        if (count > WIRE_TEMPLATE_COUNT_MAX || count > reader_remaining(r) / ATTR_ENTRY_MIN)
                return -EBADMSG;
        arg->ptr = arena_alloc_array(a, 2 * (size_t) count, sizeof(CK_ATTRIBUTE));
        if (!arg->ptr)
                return -ENOMEM;
        arg->len = count;
        return get_get_entries(r, a, arg->ptr, count, 1);
}

int wire_put_get_reply_entries(Writer *w, const CK_ATTRIBUTE *attrs, const CK_ATTRIBUTE *shadow, size_t count,
                               unsigned depth)
{
        for (size_t i = 0; i < count; i++) {
                const CK_ATTRIBUTE *at = &attrs[i], *sh = &shadow[i];
                /* Top level: the type asked for. Nested: the type the backend filled in. */
                CK_ATTRIBUTE_TYPE type = depth > 1 ? at->type : sh->type;
                WireAttrKind kind = wire_attribute_kind(type), allocated = wire_attribute_kind(sh->type);
                CK_ULONG len = at->ulValueLen;
                bool has_value;
                size_t unit;
                int k;

                if (depth > 1)
                        w_ulong(w, type);
                if (len == CK_UNAVAILABLE_INFORMATION) {
                        w_u8(w, kind);
                        w_u64(w, UINT64_MAX);
                        w_u8(w, false);
                        continue;
                }
                if (kind == WIRE_ATTR_ULONGS && len % sizeof(CK_ULONG) != 0)
                        kind = WIRE_ATTR_BYTES;
                unit = attr_unit(kind);
                if (kind == WIRE_ATTR_TEMPLATE && len % unit != 0)
                        return -EINVAL;

                /*
                 * A value goes back only from a buffer we allocated, within its size, and a template
                 * only from a buffer allocated as one (else arena pointers would leak as bytes, or
                 * bytes be read as pointers).
                 */
                /* A length past the buffer the backend was given is a backend bug: passing it on would
                 * send the client reading past its own buffer. */
                if (sh->pValue && len > sh->ulValueLen)
                        return -EINVAL;
                has_value = sh->pValue && (kind == WIRE_ATTR_TEMPLATE) == (allocated == WIRE_ATTR_TEMPLATE);
                w_u8(w, kind);
                w_u64(w, len / unit);
                w_u8(w, has_value);
                if (!has_value)
                        continue;
                switch (kind) {
                case WIRE_ATTR_BYTES:
                        w_bytes(w, sh->pValue, len);
                        break;
                case WIRE_ATTR_ULONGS:
                        for (size_t j = 0; j < len / unit; j++)
                                w_ulong(w, ulong_at(sh->pValue, j));
                        break;
                default:
                        k = wire_put_get_reply_entries(w, sh->pValue,
                                                       (const CK_ATTRIBUTE *) sh->pValue + sh->ulValueLen / unit,
                                                       len / unit, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                if (w->r < 0)
                        return w->r;
        }
        return 0;
}

/* Client side: writes nothing past the lengths the caller's attributes offered. */
int wire_get_get_reply_entries(Reader *r, CK_ATTRIBUTE *attrs, size_t count, unsigned depth, bool apply)
{
        int k;

        for (size_t i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                CK_ATTRIBUTE_TYPE type = at->type;
                CK_ULONG native;
                bool has_value;
                uint8_t kind;
                uint64_t n;
                size_t unit;

                if (depth > 1) {
                        k = rd_ulong(r, &type);
                        if (k < 0)
                                return k;
                }
                k = rd_u8(r, &kind);
                if (k < 0)
                        return k;
                if (!attr_kind_acceptable(type, kind))
                        return -EBADMSG;
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                k = rd_bool(r, &has_value);
                if (k < 0)
                        return k;
                unit = attr_unit(kind);

                if (n == UINT64_MAX) {
                        if (has_value)
                                return -EBADMSG;
                        native = CK_UNAVAILABLE_INFORMATION;
                } else if (n > ULONG_MAX / unit)
                        return -EBADMSG;
                else
                        native = n * unit;

                /* Where the caller offered a buffer, a real length past it must not reach the caller
                 * (it would read past its buffer): the token answers CK_UNAVAILABLE_INFORMATION then. */
                if (!has_value && at->pValue && native != CK_UNAVAILABLE_INFORMATION && native > at->ulValueLen)
                        return -EBADMSG;
                if (has_value) {
                        const uint8_t *p;

                        if (!at->pValue || native > at->ulValueLen)
                                return -EBADMSG;
                        switch (kind) {
                        case WIRE_ATTR_BYTES:
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                if (apply && n > 0)
                                        memcpy(at->pValue, p, n);
                                break;
                        case WIRE_ATTR_ULONGS:
                                for (size_t j = 0; j < n; j++) {
                                        CK_ULONG v;

                                        k = rd_ulong(r, &v);
                                        if (k < 0)
                                                return k;
                                        if (apply)
                                                set_ulong_at(at->pValue, j, v);
                                }
                                break;
                        default:
                                if (depth >= WIRE_TEMPLATE_DEPTH_MAX || n > WIRE_TEMPLATE_COUNT_MAX)
                                        return -EBADMSG;
                                k = wire_get_get_reply_entries(r, at->pValue, n, depth + 1, apply);
                                if (k < 0)
                                        return k;
                                break;
                        }
                }
                if (apply) {
                        at->type = type;
                        at->ulValueLen = native;
                }
        }
        return 0;
}
