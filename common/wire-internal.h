/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the source files of the wire codec share; not for anything outside
 * the codec. The field lists that describe parameter and info structures
 * (wire-types.c fills them in), the CK_ULONG conversions, and the Writer
 * and Reader primitives every encoder and decoder is built from: these run
 * for each integer of each frame, so they are static inline here rather
 * than calls into another file. wire.c holds the codec of each signature
 * character and the frames, wire-template.c the attribute templates.
 */
#pragma once

#include <limits.h>
#include <string.h>

#include "macro.h"
#include "wire.h"

/*
 * Parameter structures, described as field lists so that one loop per direction handles them
 * all. A pointer field travels as u8 present, u64 length, bytes; its length comes from another
 * field (a byte count, or a bit count encoded before it) or is fixed by the mechanism.
 */
typedef enum FieldType {
        FIELD_ULONG,
        FIELD_BBOOL,
        FIELD_FIXED,    /* aux = size of an inline byte array */
        FIELD_PTR_LEN,  /* aux = offset of the CK_ULONG byte count */
        FIELD_PTR_BITS, /* aux = offset of the CK_ULONG bit count, an earlier FIELD_ULONG */
        FIELD_PTR_SIZE, /* aux = fixed byte count */
} FieldType;

typedef struct Field {
        uint8_t type;
        uint16_t off;
        uint16_t aux;
} Field;

#define PARAM_FIELDS_MAX 18 /* CK_TOKEN_INFO has the most */

typedef struct ParamLayout {
        size_t size;
        unsigned n_fields;
        Field fields[PARAM_FIELDS_MAX];
} ParamLayout;

/* wire-types.c: the structure of each WireParam above WIRE_PARAM_BYTES, and of each output character. */
extern const ParamLayout wire_layouts[_WIRE_PARAM_MAX];
const ParamLayout *wire_output_layout(char c);

/* ---- integers ---- */

static inline uint64_t ulong_to_u64(CK_ULONG v)
{
        return v == CK_UNAVAILABLE_INFORMATION ? UINT64_MAX : (uint64_t) v;
}

static inline int u64_to_ulong(uint64_t v, CK_ULONG *ret)
{
        if (v == UINT64_MAX) {
                *ret = CK_UNAVAILABLE_INFORMATION;
                return 0;
        }
        if (v > ULONG_MAX)
                return -EBADMSG;
        *ret = (CK_ULONG) v;
        return 0;
}

/* Fields are reached through memcpy: the caller's structures need not be aligned for us. */
static inline CK_ULONG field_ulong(const void *s, size_t off)
{
        CK_ULONG v;

        memcpy(&v, (const uint8_t *) s + off, sizeof(v));
        return v;
}

static inline void field_set_ulong(void *s, size_t off, CK_ULONG v)
{
        memcpy((uint8_t *) s + off, &v, sizeof(v));
}

static inline CK_ULONG ulong_at(const void *array, size_t i)
{
        return field_ulong(array, i * sizeof(CK_ULONG));
}

static inline void set_ulong_at(void *array, size_t i, CK_ULONG v)
{
        field_set_ulong(array, i * sizeof(CK_ULONG), v);
}

/* ---- writing ---- */

/*
 * Encoding state: w->r keeps the first error, so encoders append without checking each step. The
 * frame size is checked before each append, so an absurd length from a caller fails before any
 * byte of it is read or any memory is allocated for it.
 */
typedef struct Writer {
        Buffer *b;
        size_t start; /* offset of this frame's header in b */
        int r;
        bool failed_before; /* the caller handed us a failed buffer: leave it as it is */
} Writer;

static inline bool w_room(Writer *w, uint64_t n)
{
        size_t used;

        if (w->r < 0)
                return false;
        if (!buffer_ok(w->b)) {
                w->r = -ENOMEM;
                return false;
        }
        used = w->b->len - w->start;
        if (n > KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX - used || n > w->b->limit - w->b->len) {
                w->r = -EMSGSIZE;
                return false;
        }
        return true;
}

static inline void w_u8(Writer *w, uint8_t v)
{
        if (w_room(w, 1))
                buffer_add_u8(w->b, v);
}

static inline void w_u32(Writer *w, uint32_t v)
{
        if (w_room(w, 4))
                buffer_add_u32(w->b, v);
}

static inline void w_u64(Writer *w, uint64_t v)
{
        if (w_room(w, 8))
                buffer_add_u64(w->b, v);
}

static inline void w_ulong(Writer *w, CK_ULONG v)
{
        w_u64(w, ulong_to_u64(v));
}

static inline void w_bytes(Writer *w, const void *p, uint64_t n)
{
        if (n > 0 && w_room(w, n))
                buffer_add_bytes(w->b, p, n);
}

/* ---- reading ---- */

static inline int rd_u8(Reader *r, uint8_t *ret)
{
        return reader_u8(r, ret) ? 0 : -EBADMSG;
}

static inline int rd_bool(Reader *r, bool *ret)
{
        uint8_t v;

        if (!reader_u8(r, &v) || v > 1)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static inline int rd_u32(Reader *r, uint32_t *ret)
{
        return reader_u32(r, ret) ? 0 : -EBADMSG;
}

static inline int rd_u64(Reader *r, uint64_t *ret)
{
        return reader_u64(r, ret) ? 0 : -EBADMSG;
}

static inline int rd_ulong(Reader *r, CK_ULONG *ret)
{
        uint64_t v;

        if (!reader_u64(r, &v))
                return -EBADMSG;
        return u64_to_ulong(v, ret);
}

static inline int rd_bytes(Reader *r, uint64_t n, const uint8_t **ret)
{
        if (n > SIZE_MAX)
                return -EBADMSG;
        return reader_bytes(r, (size_t) n, ret) ? 0 : -EBADMSG;
}

/* wire-template.c: the attribute templates of 'a' and 'A', called by the codec of those characters in wire.c. */
int wire_put_template(Writer *w, const WireArg *arg);
int wire_get_template(Reader *r, Arena *a, WireArg *arg);
int wire_put_get_entries(Writer *w, const CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth);
int wire_get_get_template(Reader *r, Arena *a, WireArg *arg);
int wire_put_get_reply_entries(Writer *w, const CK_ATTRIBUTE *attrs, const CK_ATTRIBUTE *shadow, size_t count,
                               unsigned depth);
int wire_get_get_reply_entries(Reader *r, CK_ATTRIBUTE *attrs, size_t count, unsigned depth, bool apply);
