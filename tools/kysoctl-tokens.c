/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.kyso1.Token objects: a table maps each property kysoctl knows to its
 * field in TokenProps and its key in the JSON output, so adding one is one
 * line (and a field).
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "kysoctl-bus.h"
#include "kysoctl-tokens.h"
#include "kysoctl-util.h"
#include "log.h"
#include "macro.h"

/* ------------------------------------------------------------------------- */
/* Token properties                                                          */

typedef enum PropType {
        PROP_STRING,
        PROP_BOOL,
        PROP_UINT32,
        PROP_UINT64,
        PROP_TIME,
        PROP_HANDOVERS,
} PropType;

static const char *const prop_signature[] = {
        [PROP_STRING] = "s",
        [PROP_BOOL] = "b",
        [PROP_UINT32] = "u",
        [PROP_UINT64] = "t",
        [PROP_TIME] = "x",
        [PROP_HANDOVERS] = "a(sssxs)",
};

/* In the order of the --json output. */
static const struct TokenProp {
        const char *name; /* on the bus */
        const char *key;  /* in --json */
        PropType type;
        size_t offset;
} token_props[] = {
        { "Serial", "serial", PROP_STRING, offsetof(TokenProps, serial) },
        { "Label", "label", PROP_STRING, offsetof(TokenProps, label) },
        { "Manufacturer", "manufacturer", PROP_STRING, offsetof(TokenProps, manufacturer) },
        { "Model", "model", PROP_STRING, offsetof(TokenProps, model) },
        { "Present", "present", PROP_BOOL, offsetof(TokenProps, present) },
        { "Slot", "slot", PROP_UINT64, offsetof(TokenProps, slot) },
        { "FirstSeen", "first_seen", PROP_TIME, offsetof(TokenProps, first_seen) },
        { "LastSeen", "last_seen", PROP_TIME, offsetof(TokenProps, last_seen) },
        { "Kind", "kind", PROP_STRING, offsetof(TokenProps, kind) },
        { "Holder", "holder", PROP_STRING, offsetof(TokenProps, holder) },
        { "Organization", "organization", PROP_STRING, offsetof(TokenProps, organization) },
        { "DecisionNumber", "decision_number", PROP_STRING, offsetof(TokenProps, decision_number) },
        { "DecisionDate", "decision_date", PROP_STRING, offsetof(TokenProps, decision_date) },
        { "DecisionSigner", "decision_signer", PROP_STRING, offsetof(TokenProps, decision_signer) },
        { "ValidFrom", "valid_from", PROP_TIME, offsetof(TokenProps, valid_from) },
        { "ValidUntil", "valid_until", PROP_TIME, offsetof(TokenProps, valid_until) },
        { "State", "state", PROP_STRING, offsetof(TokenProps, state) },
        { "StateReason", "state_reason", PROP_STRING, offsetof(TokenProps, state_reason) },
        { "PinChangeRequired", "pin_change_required", PROP_BOOL, offsetof(TokenProps, pin_change_required) },
        { "Handovers", "handovers", PROP_HANDOVERS, offsetof(TokenProps, handovers) },
        { "PinChangedAt", "pin_changed_at", PROP_TIME, offsetof(TokenProps, pin_changed_at) },
        { "PinDueAt", "pin_due_at", PROP_TIME, offsetof(TokenProps, pin_due_at) },
        { "PinState", "pin_state", PROP_STRING, offsetof(TokenProps, pin_state) },
        { "PinMinLength", "pin_min_length", PROP_UINT32, offsetof(TokenProps, pin_min_length) },
        { "PinMode", "pin_mode", PROP_STRING, offsetof(TokenProps, pin_mode) },
};
_Static_assert(ELEMENTSOF(token_props) <= 32, "TokenProps.seen has 32 bits");

void token_props_done(TokenProps *t)
{
        free(t->handovers);
        *t = (TokenProps) {};
}

void token_props_free(TokenProps *a, size_t n)
{
        for (size_t i = 0; a && i < n; i++)
                token_props_done(&a[i]);
        free(a);
}

static bool token_has(const TokenProps *t, size_t prop)
{
        return t->seen & (UINT32_C(1) << prop);
}

static int read_handovers(sd_bus_message *m, TokenProps *t)
{
        _cleanup_(freep) HandoverEntry *a = NULL;
        size_t n = 0, cap = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(sssxs)");
        if (r < 0)
                return r;
        for (;;) {
                HandoverEntry h;

                r = sd_bus_message_read(m, "(sssxs)", &h.from, &h.to, &h.minutes, &h.time, &h.recorded_by);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n == cap) {
                        HandoverEntry *p;

                        cap = cap ? cap * 2 : 8;
                        p = reallocarray(a, cap, sizeof(*a));
                        if (!p)
                                return -ENOMEM;
                        a = p;
                }
                a[n++] = h;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        free(t->handovers); /* a property sent twice: the last one counts */
        t->handovers = TAKE_PTR(a);
        t->n_handovers = n;
        return 0;
}

/* Reads an a{sv} of org.kyso1.Token properties. Unknown ones, or known ones of another type, are skipped. */
int token_props_read(sd_bus_message *m, TokenProps *t)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *contents = NULL;
                size_t i;
                char type;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                for (i = 0; i < ELEMENTSOF(token_props); i++)
                        if (streq(token_props[i].name, name))
                                break;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (i == ELEMENTSOF(token_props) || type != 'v' ||
                    !streq(contents, prop_signature[token_props[i].type])) {
                        if (i < ELEMENTSOF(token_props))
                                log_debug("Ignoring property %s of type %s.", name,
                                          contents ? contents : "?");
                        r = sd_bus_message_skip(m, "v");
                } else {
                        void *p = (uint8_t *) t + token_props[i].offset;

                        r = sd_bus_message_enter_container(m, 'v', contents);
                        if (r < 0)
                                return r;
                        if (token_props[i].type == PROP_HANDOVERS)
                                r = read_handovers(m, t);
                        else
                                r = sd_bus_message_read_basic(m, contents[0], p);
                        if (r < 0)
                                return r;
                        t->seen |= UINT32_C(1) << i;
                        r = sd_bus_message_exit_container(m);
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

const char *str_or(const char *s, const char *fallback)
{
        return s && *s ? s : fallback;
}

static int token_cmp(const void *a, const void *b)
{
        const TokenProps *x = a, *y = b;

        return strcmp(str_or(x->serial, ""), str_or(y->serial, ""));
}

int managed_objects_call(sd_bus *bus, uint64_t timeout_usec, bool auto_start, sd_bus_error *error,
                                sd_bus_message **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, KYSO_BUS_NAME, KYSO_BUS_PATH,
                                           "org.freedesktop.DBus.ObjectManager", "GetManagedObjects");
        if (r >= 0)
                r = sd_bus_message_set_auto_start(m, auto_start);
        if (r < 0)
                return r;
        return sd_bus_call(bus, m, timeout_usec, error, ret);
}

/*
 * The org.kyso1.Token objects of a GetManagedObjects reply, sorted by serial. Their strings
 * point into reply. -ENOMEM, or the -errno of a reply that does not have the expected shape.
 */
int tokens_parse(sd_bus_message *reply, TokenProps **ret, size_t *ret_n)
{
        TokenProps *a = NULL;
        size_t n = 0, cap = 0;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;

                r = sd_bus_message_read(reply, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        const char *iface;

                        r = sd_bus_message_read(reply, "s", &iface);
                        if (r < 0)
                                break;
                        if (!streq(iface, KYSO_TOKEN_IFACE)) {
                                r = sd_bus_message_skip(reply, "a{sv}");
                        } else {
                                if (n == cap) {
                                        TokenProps *p;

                                        cap = cap ? cap * 2 : 16;
                                        p = reallocarray(a, cap, sizeof(*a));
                                        if (!p) {
                                                r = -ENOMEM;
                                                break;
                                        }
                                        a = p;
                                }
                                a[n] = (TokenProps) { .path = path };
                                n++;
                                r = token_props_read(reply, &a[n - 1]);
                        }
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                token_props_free(a, n);
                return r;
        }
        if (n > 0)
                qsort(a, n, sizeof(*a), token_cmp);
        *ret = a;
        *ret_n = n;
        return 0;
}

/* ------------------------------------------------------------------------- */
/* Output                                                                    */

json_object *json_time(int64_t t)
{
        char buf[TIME_TEXT_MAX];

        if (t == 0)
                return NULL; /* null */
        if (format_time_utc(t, buf, sizeof(buf)))
                return json_object_new_string(buf);
        return json_object_new_int64(t); /* out of RFC 3339's range: the number rather than nothing */
}

static json_object *handovers_to_json(const TokenProps *t)
{
        json_object *a = json_object_new_array();

        for (size_t i = 0; a && i < t->n_handovers; i++) {
                const HandoverEntry *h = &t->handovers[i];
                json_object *o = json_object_new_object();

                if (!o)
                        break;
                json_object_object_add(o, "from", json_object_new_string(h->from));
                json_object_object_add(o, "to", json_object_new_string(h->to));
                json_object_object_add(o, "minutes", json_object_new_string(h->minutes));
                json_object_object_add(o, "time", json_time(h->time));
                json_object_object_add(o, "recorded_by", json_object_new_string(h->recorded_by));
                json_object_array_add(a, o);
        }
        return a;
}

json_object *token_to_json(const TokenProps *t)
{
        json_object *o = json_object_new_object();

        for (size_t i = 0; o && i < ELEMENTSOF(token_props); i++) {
                const void *p = (const uint8_t *) t + token_props[i].offset;
                json_object *v = NULL;

                if (!token_has(t, i)) {
                        json_object_object_add(o, token_props[i].key, NULL);
                        continue;
                }
                switch (token_props[i].type) {
                case PROP_STRING:
                        v = json_object_new_string(*(const char *const *) p);
                        break;
                case PROP_BOOL:
                        v = json_object_new_boolean(*(const int *) p);
                        break;
                case PROP_UINT32:
                        v = json_object_new_int64(*(const uint32_t *) p);
                        break;
                case PROP_UINT64:
                        v = json_object_new_uint64(*(const uint64_t *) p);
                        break;
                case PROP_TIME:
                        v = json_time(*(const int64_t *) p);
                        break;
                case PROP_HANDOVERS:
                        v = handovers_to_json(t);
                        break;
                }
                json_object_object_add(o, token_props[i].key, v);
        }
        return o;
}

