/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Key protection (policy.h, rules K1-K4, W1, R1): the checks around a call
 * that makes, changes, wraps or reads a key. Templates get what kyso adds
 * before the backend sees them; new keys the backend made against the rules
 * are destroyed; key material of a protected key does not go out.
 */
#include <stdlib.h>
#include <string.h>

#include "broker-internal.h"
#include "macro.h"
#include "policy.h"

/*
 * What the backend says of an object, for the key rules. Attributes it does
 * not give take the safe side. Returns the backend's error when the object
 * cannot be read at all. Call between slot_call_begin() and slot_call_end().
 */
static CK_RV key_facts(Slot *slot, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, KeyFacts *ret)
{
        CK_OBJECT_CLASS cls = CK_UNAVAILABLE_INFORMATION;
        CK_BBOOL b[7] = {};
        CK_ATTRIBUTE a[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_SENSITIVE, &b[0], sizeof(CK_BBOOL) },
                { CKA_EXTRACTABLE, &b[1], sizeof(CK_BBOOL) },
                { CKA_LOCAL, &b[2], sizeof(CK_BBOOL) },
                { CKA_ALWAYS_SENSITIVE, &b[3], sizeof(CK_BBOOL) },
                { CKA_NEVER_EXTRACTABLE, &b[4], sizeof(CK_BBOOL) },
                { CKA_DECRYPT, &b[5], sizeof(CK_BBOOL) },
                { CKA_TRUSTED, &b[6], sizeof(CK_BBOOL) },
        };
        WireArg args[3] = { { .value = session }, { .value = object }, { .ptr = a, .len = ELEMENTSOF(a) } };
        KeyFacts f;
        CK_RV rv;

        rv = backend_invoke(slot->backend, KYSO_CALL_C_GetAttributeValue, args);
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
                return rv;
        if (a[0].ulValueLen != sizeof(cls))
                cls = CK_UNAVAILABLE_INFORMATION;
        /* An object whose class cannot be read is judged as a secret key. */
        f = policy_key_facts_unknown(cls == CK_UNAVAILABLE_INFORMATION ? CKO_SECRET_KEY : cls);
#define FACT(i, field)                                                                 \
        do {                                                                           \
                if (a[(i) + 1].ulValueLen == sizeof(CK_BBOOL))                         \
                        f.field = b[i] != CK_FALSE;                                    \
        } while (0)
        FACT(0, sensitive);
        FACT(1, extractable);
        FACT(2, local);
        FACT(3, always_sensitive);
        FACT(4, never_extractable);
        FACT(5, decrypt);
        FACT(6, trusted);
#undef FACT
        *ret = f;
        return CKR_OK;
}

/* Facts of a key a call names (a mapped handle); an unreadable one is judged as unknown. False when there is
 * no such object: the backend then answers the call with its own error. */
static bool named_key_facts(Slot *slot, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, KeyFacts *ret)
{
        CK_RV rv;

        if (object == CK_INVALID_HANDLE)
                return false;
        slot_call_begin(slot);
        rv = key_facts(slot, session, object, ret);
        slot_call_end(slot);
        if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID)
                return false;
        if (rv != CKR_OK)
                *ret = policy_key_facts_unknown(CKO_SECRET_KEY);
        return true;
}

static bool caller_is_so(BrokerClient *bc, const Slot *slot)
{
        CK_USER_TYPE user;

        return client_logged_in(bc, slot, &user) && user == CKU_SO;
}

static CK_BBOOL attr_true = CK_TRUE, attr_false = CK_FALSE;

static CK_RV template_add(TemplateEdit *e, WireArg *arg, const KeyTemplateAdditions *add)
{
        size_t extra = add->sensitive + add->unextractable, n = arg->len;

        *e = (TemplateEdit) { .arg = arg, .ptr = arg->ptr, .len = arg->len };
        if (extra == 0)
                return CKR_OK;
        e->grown = calloc(n + extra, sizeof(CK_ATTRIBUTE));
        if (!e->grown)
                return CKR_HOST_MEMORY;
        if (n > 0)
                memcpy(e->grown, arg->ptr, n * sizeof(CK_ATTRIBUTE));
        if (add->sensitive)
                e->grown[n++] = (CK_ATTRIBUTE) { CKA_SENSITIVE, &attr_true, sizeof(CK_BBOOL) };
        if (add->unextractable)
                e->grown[n++] = (CK_ATTRIBUTE) { CKA_EXTRACTABLE, &attr_false, sizeof(CK_BBOOL) };
        arg->ptr = e->grown;
        arg->len = n;
        return CKR_OK;
}

static void template_restore(TemplateEdit *e)
{
        if (!e->arg)
                return;
        e->arg->ptr = e->ptr;
        e->arg->len = e->len;
        free(e->grown);
        *e = (TemplateEdit) {};
}

static CK_RV check_template(BrokerClient *bc, Slot *slot, WireCall call, KeyCall *kc, WireArg *arg,
                            CK_OBJECT_CLASS implied, size_t edit)
{
        KeyTemplate t;
        KeyTemplateAdditions add;
        PolicyDecision d;
        CK_OBJECT_CLASS cls;

        policy_key_template_read(arg->ptr, arg->len, &t);
        cls = kc->has_source && (kc->origin == KEY_ORIGIN_COPY || kc->origin == KEY_ORIGIN_SET) ? kc->source.cls
              : t.cls != CK_UNAVAILABLE_INFORMATION                                               ? t.cls
                                                                                                  : implied;
        d = policy_key_template(kc->origin, cls, &t, kc->has_source ? &kc->source : NULL, caller_is_so(bc, slot),
                                &add);
        if (d.rv != CKR_OK) {
                broker_refuse(bc, slot, wire_call_info(call)->name, d.reason);
                return d.rv;
        }
        return template_add(&kc->edits[edit], arg, &add);
}

/*
 * Before a call runs: the key rules for calls that make or change keys, wrap
 * them, or read their attributes. kc keeps what after_key_call() needs.
 * Returns CKR_OK to go on.
 */
CK_RV before_key_call(BrokerClient *bc, Session *session, WireCall call, WireArg *args, KeyCall *kc)
{
        Slot *slot = session ? session->slot : NULL;
        CK_SESSION_HANDLE real = session ? session->real : CK_INVALID_HANDLE;
        KeyFacts wrapping, key;
        PolicyDecision d;
        CK_RV rv;

        *kc = (KeyCall) { .origin = _KEY_ORIGIN_INVALID };
        if (!session)
                return CKR_OK;

        switch (call) {
        case KYSO_CALL_C_CreateObject:
                kc->origin = KEY_ORIGIN_CREATE;
                return check_template(bc, slot, call, kc, &args[1], CK_UNAVAILABLE_INFORMATION, 0);
        case KYSO_CALL_C_GenerateKey:
                kc->origin = KEY_ORIGIN_GENERATE;
                return check_template(bc, slot, call, kc, &args[2], CKO_SECRET_KEY, 0);
        case KYSO_CALL_C_GenerateKeyPair:
                kc->origin = KEY_ORIGIN_GENERATE;
                rv = check_template(bc, slot, call, kc, &args[2], CKO_PUBLIC_KEY, 0);
                if (rv == CKR_OK)
                        rv = check_template(bc, slot, call, kc, &args[3], CKO_PRIVATE_KEY, 1);
                return rv;
        case KYSO_CALL_C_UnwrapKey:
        case KYSO_CALL_C_DeriveKey:
                kc->origin = call == KYSO_CALL_C_UnwrapKey ? KEY_ORIGIN_UNWRAP : KEY_ORIGIN_DERIVE;
                if (!named_key_facts(slot, real, args[2].value, &kc->source))
                        return CKR_OK;
                kc->has_source = true;
                return check_template(bc, slot, call, kc, &args[call == KYSO_CALL_C_UnwrapKey ? 4 : 3],
                                      CKO_SECRET_KEY, 0);
        case KYSO_CALL_C_CopyObject:
        case KYSO_CALL_C_SetAttributeValue:
                kc->origin = call == KYSO_CALL_C_CopyObject ? KEY_ORIGIN_COPY : KEY_ORIGIN_SET;
                if (!named_key_facts(slot, real, args[1].value, &kc->source))
                        return CKR_OK;
                kc->has_source = true;
                return check_template(bc, slot, call, kc, &args[2], CK_UNAVAILABLE_INFORMATION, 0);
        case KYSO_CALL_C_WrapKey:
                if (!named_key_facts(slot, real, args[2].value, &wrapping) ||
                    !named_key_facts(slot, real, args[3].value, &key))
                        return CKR_OK;
                d = policy_wrap(&wrapping, &key);
                if (d.rv != CKR_OK)
                        broker_refuse(bc, slot, "C_WrapKey", d.reason);
                return d.rv;
        case KYSO_CALL_C_GetAttributeValue: {
                const CK_ATTRIBUTE *a = args[2].ptr;
                bool material = false;

                for (CK_ULONG i = 0; a && i < args[2].len; i++)
                        material = material || policy_attribute_is_key_material(a[i].type);
                if (material && named_key_facts(slot, real, args[1].value, &kc->source))
                        kc->has_source = true;
                return CKR_OK;
        }
        default:
                return CKR_OK;
        }
}

/*
 * Rule R1 on what the backend answered: key material of a protected key is
 * blanked, in the buffer the decoder allocated (the second half of the
 * array, see wire.h) as well as in the length.
 */
static CK_RV filter_attribute_values(BrokerClient *bc, Slot *slot, const KeyFacts *facts, WireArg *arg, CK_RV rv)
{
        CK_ATTRIBUTE *a = arg->ptr;
        size_t n = arg->len;
        bool withheld = false, leaked = false;

        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
            rv != CKR_BUFFER_TOO_SMALL)
                return rv;
        for (size_t i = 0; a && i < n; i++) {
                CK_ATTRIBUTE *shadow = &a[n + i];

                if (policy_attribute_read(facts, shadow->type).rv == CKR_OK)
                        continue;
                withheld = true;
                if (a[i].ulValueLen != CK_UNAVAILABLE_INFORMATION)
                        leaked = true;
                if (shadow->pValue && shadow->ulValueLen > 0)
                        secure_zero(shadow->pValue, shadow->ulValueLen);
                a[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        }
        if (leaked)
                broker_refuse(bc, slot, "C_GetAttributeValue",
                              "the backend handed out key material of a protected key; it was withheld");
        return withheld && rv == CKR_OK ? CKR_ATTRIBUTE_SENSITIVE : rv;
}

/* K1/K2 on the objects a call made, in case the backend ignored the template: refused ones are destroyed. */
static CK_RV check_created_keys(BrokerClient *bc, Session *session, WireCall call, const char *sig, WireArg *args,
                                const KeyCall *kc)
{
        Slot *slot = session->slot;
        PolicyDecision d = { CKR_OK, NULL };

        slot_call_begin(slot);
        for (size_t i = 0; sig[i] && d.rv == CKR_OK; i++) {
                KeyFacts f;

                if (sig[i] != 'n')
                        continue;
                if (key_facts(slot, session->real, args[i].value, &f) != CKR_OK)
                        f = policy_key_facts_unknown(CKO_SECRET_KEY);
                /* A copy or change keeps the class; a copy of a non-key is no business of these rules. */
                d = policy_key_created(kc->origin, &f, kc->has_source ? &kc->source : NULL);
        }
        if (d.rv != CKR_OK)
                for (size_t i = 0; sig[i]; i++)
                        if (sig[i] == 'n')
                                (void) backend_destroy_object(slot, session->real, args[i].value);
        slot_call_end(slot);
        if (d.rv != CKR_OK)
                broker_refuse(bc, slot, wire_call_info(call)->name, d.reason);
        return d.rv;
}

/* After the call ran: rule R1 on read values, K1/K2 on new keys, and the templates back as they came. */
CK_RV after_key_call(BrokerClient *bc, Session *session, WireCall call, const char *sig, WireArg *args,
                     KeyCall *kc, CK_RV rv)
{
        for (size_t i = 0; i < ELEMENTSOF(kc->edits); i++)
                template_restore(&kc->edits[i]);
        if (!session)
                return rv;
        if (call == KYSO_CALL_C_GetAttributeValue && kc->has_source)
                return filter_attribute_values(bc, session->slot, &kc->source, &args[2], rv);
        if (rv == CKR_OK && kc->origin != _KEY_ORIGIN_INVALID && kc->origin != KEY_ORIGIN_SET && strchr(sig, 'n'))
                return check_created_keys(bc, session, call, sig, args, kc);
        return rv;
}
