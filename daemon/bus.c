/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "audit.h"
#include "backend.h"
#include "bus.h"
#include "clock.h"
#include "config.h"
#include "custody.h"
#include "evqueue.h"
#include "log.h"
#include "macro.h"
#include "report.h"

#define BUS_NAME "org.kyso1"
#define MANAGER_PATH "/org/kyso1"
#define MANAGER_IFACE "org.kyso1.Manager"
#define TOKEN_PREFIX "/org/kyso1/token"
#define TOKEN_IFACE "org.kyso1.Token"
#define ERROR_NO_SUCH_TOKEN "org.kyso1.Error.NoSuchToken"
#define ERROR_CONFLICT "org.kyso1.Error.Conflict"
#define ERROR_STORE_FAILED "org.kyso1.Error.StoreFailed"

#define RECONNECT_USEC (2U * 1000000U)
/* How often every token's PIN age is looked at (PinExpiring, PinExpired); the test clock jumps, so faster. */
#define PIN_SWEEP_USEC (60U * 1000000U)
#define PIN_SWEEP_TEST_USEC (200U * 1000U)
/* Events wait here while the loop is busy; beyond this many they are dropped (properties keep the state). */
#define QUEUE_MAX 4096U

typedef enum BusEventType {
        BUS_EVENT_INSERTED,
        BUS_EVENT_REMOVED,
        BUS_EVENT_CHANGED,
        BUS_EVENT_ADDED, /* the token became known: InterfacesAdded, then as CHANGED */
        BUS_EVENT_DENIED,
        BUS_EVENT_PIN_EXPIRING,
        BUS_EVENT_PIN_EXPIRED,
        BUS_EVENT_PIN_LOCKED,
        BUS_EVENT_USB_ADDED,
        BUS_EVENT_USB_REMOVED,
} BusEventType;

typedef struct BusEvent {
        EvNode node; /* first: the queue's link */
        BusEventType type;
        char *serial;
        char *label;
        char *operation;
        char *reason;
        uid_t uid;
        pid_t pid;
        int64_t due_at;
        UsbDevice usb;
} BusEvent;

static BusMode bus_mode = BUS_NONE;
static sd_event *bus_event;
static sd_bus *bus;
static sd_event_source *reconnect_source, *queue_source, *sweep_source;
static bool warned_unreachable;
/* Closed (every push fails) until bus_start(): with --bus none, events go nowhere. */
static EvQueue queue = EVQUEUE_INIT;

static void bus_event_free(BusEvent *e)
{
        if (!e)
                return;
        free(e->serial);
        free(e->label);
        free(e->operation);
        free(e->reason);
        free(e);
}

static BusEvent *event_new(BusEventType type, const char *serial, const char *label, const char *operation,
                           const char *reason)
{
        BusEvent *e = calloc(1, sizeof(BusEvent));

        if (!e)
                return NULL;
        e->type = type;
        e->serial = strdup(serial ?: "");
        e->label = strdup(label ?: "");
        e->operation = strdup(operation ?: "");
        e->reason = strdup(reason ?: "");
        if (!e->serial || !e->label || !e->operation || !e->reason) {
                bus_event_free(e);
                return NULL;
        }
        return e;
}

static void push(BusEvent *e)
{
        if (e && !evqueue_push(&queue, &e->node))
                bus_event_free(e); /* no bus, or the loop is far behind: properties carry the state */
}

static void enqueue(BusEventType type, const char *serial, const char *label, uid_t uid, pid_t pid,
                    const char *operation, const char *reason, int64_t due_at)
{
        BusEvent *e = event_new(type, serial, label, operation, reason);

        if (e) {
                e->uid = uid;
                e->pid = pid;
                e->due_at = due_at;
        }
        push(e);
}

void bus_token_inserted(const char *serial, const char *label)
{
        enqueue(BUS_EVENT_INSERTED, serial, label, 0, 0, NULL, NULL, 0);
}

void bus_token_removed(const char *serial)
{
        enqueue(BUS_EVENT_REMOVED, serial, NULL, 0, 0, NULL, NULL, 0);
}

void bus_token_changed(const char *serial)
{
        enqueue(BUS_EVENT_CHANGED, serial, NULL, 0, 0, NULL, NULL, 0);
}

void bus_token_added(const char *serial)
{
        enqueue(BUS_EVENT_ADDED, serial, NULL, 0, 0, NULL, NULL, 0);
}

void bus_access_denied(const char *serial, uid_t uid, pid_t pid, const char *operation, const char *reason)
{
        enqueue(BUS_EVENT_DENIED, serial, NULL, uid, pid, operation, reason, 0);
}

void bus_usb_event(bool added, const UsbDevice *d)
{
        BusEvent *e = event_new(added ? BUS_EVENT_USB_ADDED : BUS_EVENT_USB_REMOVED, NULL, NULL, NULL, NULL);

        if (e)
                e->usb = *d;
        push(e);
}

void bus_pin_event(BusPinEvent what, const char *serial, int64_t due_at)
{
        static const BusEventType types[] = {
                [BUS_PIN_EXPIRING] = BUS_EVENT_PIN_EXPIRING,
                [BUS_PIN_EXPIRED] = BUS_EVENT_PIN_EXPIRED,
                [BUS_PIN_LOCKED] = BUS_EVENT_PIN_LOCKED,
        };

        enqueue(types[what], serial, NULL, 0, 0, NULL, NULL, due_at);
}

/* ---- objects ---- */

static int token_path(const char *serial, char **ret)
{
        return sd_bus_path_encode(TOKEN_PREFIX, serial, ret);
}

/* The token an object path names; -ENOENT if none. */
static int view_of_path(const char *path, bool with_handovers, TokenView *ret)
{
        _cleanup_(freep) char *serial = NULL;
        int r;

        r = sd_bus_path_decode(path, TOKEN_PREFIX, &serial);
        if (r <= 0 || !serial || !serial[0])
                return r < 0 ? r : -ENOENT;
        return custody_view(serial, with_handovers, ret);
}

static int token_find(sd_bus *b, const char *path, const char *interface, void *userdata, void **found,
                      sd_bus_error *error)
{
        TokenView v;

        if (view_of_path(path, false, &v) < 0)
                return 0;
        token_view_done(&v);
        *found = NULL;
        return 1;
}

static int token_enumerate(sd_bus *b, const char *path, void *userdata, char ***nodes, sd_bus_error *error)
{
        char **serials = NULL, **paths;
        size_t n = 0;
        int r;

        r = custody_serials(&serials, &n);
        if (r < 0)
                return r;
        paths = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
                if (paths && token_path(serials[i], &paths[i]) < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(paths[j]);
                        free(paths);
                        paths = NULL;
                }
                free(serials[i]);
        }
        free(serials);
        if (!paths)
                return -ENOMEM;
        *nodes = paths;
        return 0;
}

static const char *str_or_empty(const char *s)
{
        return s ?: "";
}

static int token_property(sd_bus *b, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        bool extras = streq(property, "Handovers") || streq(property, "Certificates");
        const CustodyRecord *c;
        TokenView v;
        int r;

        r = view_of_path(path, extras, &v);
        if (r < 0)
                return sd_bus_error_setf(error, ERROR_NO_SUCH_TOKEN, "The token of %s is no longer known.", path);
        c = v.has_record ? &v.record : NULL;

        if (streq(property, "Serial"))
                r = sd_bus_message_append(reply, "s", v.token.serial);
        else if (streq(property, "Label"))
                r = sd_bus_message_append(reply, "s", v.token.label);
        else if (streq(property, "Manufacturer"))
                r = sd_bus_message_append(reply, "s", v.token.manufacturer);
        else if (streq(property, "Model"))
                r = sd_bus_message_append(reply, "s", v.token.model);
        else if (streq(property, "Present"))
                r = sd_bus_message_append(reply, "b", v.present);
        else if (streq(property, "Slot"))
                r = sd_bus_message_append(reply, "t", (uint64_t) v.slot);
        else if (streq(property, "FirstSeen"))
                r = sd_bus_message_append(reply, "x", v.token.first_seen);
        else if (streq(property, "LastSeen"))
                r = sd_bus_message_append(reply, "x", v.token.last_seen);
        else if (streq(property, "Kind"))
                r = sd_bus_message_append(reply, "s", c ? custody_kind_to_string(c->kind) : "");
        else if (streq(property, "Holder"))
                r = sd_bus_message_append(reply, "s", c ? c->holder : "");
        else if (streq(property, "Organization"))
                r = sd_bus_message_append(reply, "s", c ? str_or_empty(c->organization) : "");
        else if (streq(property, "DecisionNumber"))
                r = sd_bus_message_append(reply, "s", c ? c->decision_ref : "");
        else if (streq(property, "DecisionDate"))
                r = sd_bus_message_append(reply, "s", c ? c->decision_date : "");
        else if (streq(property, "DecisionSigner"))
                r = sd_bus_message_append(reply, "s", c ? str_or_empty(c->decision_signer) : "");
        else if (streq(property, "ValidFrom"))
                r = sd_bus_message_append(reply, "x", c ? c->valid_from : (int64_t) 0);
        else if (streq(property, "ValidUntil"))
                r = sd_bus_message_append(reply, "x", c ? c->valid_until : (int64_t) 0);
        else if (streq(property, "State"))
                r = sd_bus_message_append(reply, "s", c ? custody_state_to_string(c->state) : "unassigned");
        else if (streq(property, "StateReason"))
                r = sd_bus_message_append(reply, "s", c ? str_or_empty(c->state_reason) : "");
        else if (streq(property, "PinChangeRequired"))
                r = sd_bus_message_append(reply, "b", c ? c->pin_change_required : false);
        else if (streq(property, "UsbDevice"))
                r = sd_bus_message_append(reply, "s", v.usb_device);
        else if (streq(property, "PinChangedAt"))
                r = sd_bus_message_append(reply, "x", v.pin_changed_at);
        else if (streq(property, "PinDueAt"))
                r = sd_bus_message_append(reply, "x", v.pin.due_at);
        else if (streq(property, "PinState"))
                r = sd_bus_message_append(reply, "s", pin_state_to_string(v.pin.state));
        else if (streq(property, "PinMinLength"))
                r = sd_bus_message_append(reply, "u", (uint32_t) v.pin_policy.min_length);
        else if (streq(property, "PinMode"))
                r = sd_bus_message_append(reply, "s", pin_mode_to_string((PinMode) v.pin_policy.mode));
        else if (streq(property, "Certificates")) {
                r = sd_bus_message_open_container(reply, 'a', "(sssxx)");
                for (size_t i = 0; r >= 0 && i < v.n_certificates; i++)
                        r = sd_bus_message_append(reply, "(sssxx)", v.certificates[i].key_id,
                                                  v.certificates[i].subject, v.certificates[i].issuer,
                                                  v.certificates[i].not_before, v.certificates[i].not_after);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        else if (streq(property, "Handovers")) {
                r = sd_bus_message_open_container(reply, 'a', "(sssxs)");
                for (size_t i = 0; r >= 0 && i < v.n_handovers; i++)
                        r = sd_bus_message_append(reply, "(sssxs)", v.handovers[i].from_holder,
                                                  v.handovers[i].to_holder, v.handovers[i].minutes_ref,
                                                  v.handovers[i].at, str_or_empty(v.handovers[i].recorded_by));
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        } else
                r = -ENOENT;
        token_view_done(&v);
        return r;
}

#define TOKEN_PROPERTY(name, sig)                                                                          \
        SD_BUS_PROPERTY(name, sig, token_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable token_vtable[] = {
        SD_BUS_VTABLE_START(0),
        TOKEN_PROPERTY("Serial", "s"),
        TOKEN_PROPERTY("Label", "s"),
        TOKEN_PROPERTY("Manufacturer", "s"),
        TOKEN_PROPERTY("Model", "s"),
        TOKEN_PROPERTY("Present", "b"),
        TOKEN_PROPERTY("Slot", "t"),
        TOKEN_PROPERTY("FirstSeen", "x"),
        TOKEN_PROPERTY("LastSeen", "x"),
        TOKEN_PROPERTY("Kind", "s"),
        TOKEN_PROPERTY("Holder", "s"),
        TOKEN_PROPERTY("Organization", "s"),
        TOKEN_PROPERTY("DecisionNumber", "s"),
        TOKEN_PROPERTY("DecisionDate", "s"),
        TOKEN_PROPERTY("DecisionSigner", "s"),
        TOKEN_PROPERTY("ValidFrom", "x"),
        TOKEN_PROPERTY("ValidUntil", "x"),
        TOKEN_PROPERTY("State", "s"),
        TOKEN_PROPERTY("StateReason", "s"),
        TOKEN_PROPERTY("PinChangeRequired", "b"),
        TOKEN_PROPERTY("Handovers", "a(sssxs)"),
        TOKEN_PROPERTY("UsbDevice", "s"),
        TOKEN_PROPERTY("PinChangedAt", "x"),
        TOKEN_PROPERTY("PinDueAt", "x"),
        TOKEN_PROPERTY("PinState", "s"),
        TOKEN_PROPERTY("PinMinLength", "u"),
        TOKEN_PROPERTY("PinMode", "s"),
        TOKEN_PROPERTY("Certificates", "a(sssxx)"),
        SD_BUS_VTABLE_END,
};

/* ---- the manager ---- */

static bool startswith_pin(const char *s)
{
        return strncmp(s, "Pin", 3) == 0;
}

static int manager_property(sd_bus *b, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        int r;

        if (streq(property, "Version"))
                return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
        if (streq(property, "UnknownTokens"))
                return sd_bus_message_append(reply, "s", custody_unknown_allowed() ? "allow" : "deny");
        if (streq(property, "AdminGroup"))
                return sd_bus_message_append(reply, "s", custody_admin_group());
        if (startswith_pin(property)) {
                PinPolicy p = custody_pin_default();

                if (streq(property, "PinMaxAgeDays"))
                        return sd_bus_message_append(reply, "u", (uint32_t) p.max_age_days);
                if (streq(property, "PinWarnDays"))
                        return sd_bus_message_append(reply, "u", (uint32_t) p.warn_days);
                if (streq(property, "PinMinLength"))
                        return sd_bus_message_append(reply, "u", (uint32_t) p.min_length);
                if (streq(property, "PinMode"))
                        return sd_bus_message_append(reply, "s", pin_mode_to_string((PinMode) p.mode));
        }
        if (streq(property, "Backends")) {
                r = sd_bus_message_open_container(reply, 'a', "(sss)");
                for (unsigned i = 0; r >= 0 && i < backends_count(); i++) {
                        Backend *be = backend_get(i);
                        char manufacturer[33], description[33];

                        snprintf(manufacturer, sizeof(manufacturer), "%.32s", (const char *) be->info.manufacturerID);
                        snprintf(description, sizeof(description), "%.32s",
                                 (const char *) be->info.libraryDescription);
                        for (int k = 31; k >= 0 && (manufacturer[k] == ' ' || manufacturer[k] == '\0'); k--)
                                manufacturer[k] = '\0';
                        for (int k = 31; k >= 0 && (description[k] == ' ' || description[k] == '\0'); k--)
                                description[k] = '\0';
                        r = sd_bus_message_append(reply, "(sss)", be->path, manufacturer, description);
                }
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        if (streq(property, "UsbDevices")) {
                _cleanup_(freep) UsbDevice *d = NULL;
                size_t n = 0;

                r = hotplug_devices(&d, &n);
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(reply, 'a', "(qqsss)");
                for (size_t i = 0; r >= 0 && i < n; i++)
                        r = sd_bus_message_append(reply, "(qqsss)", d[i].vendor, d[i].product, d[i].name, d[i].serial,
                                                  d[i].path);
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        if (streq(property, "Tokens")) {
                char **serials = NULL;
                size_t n = 0;

                r = custody_serials(&serials, &n);
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(reply, 'a', "o");
                for (size_t i = 0; i < n; i++) {
                        _cleanup_(freep) char *p = NULL;

                        if (r >= 0 && (r = token_path(serials[i], &p)) >= 0)
                                r = sd_bus_message_append(reply, "o", p);
                        free(serials[i]);
                }
                free(serials);
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        return -ENOENT;
}

/* The caller's uid as the bus daemon vouches for it. */
static int sender_uid(sd_bus_message *m, uid_t *ret)
{
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        int r;

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, ret);
        if (r < 0)
                r = sd_bus_creds_get_uid(creds, ret);
        return r;
}

/* Admin methods: root or the admin group. 1 if allowed; 0 with error set if not; -errno. */
static int check_admin(sd_bus_message *m, const char *what, uid_t *ret_uid, sd_bus_error *error)
{
        uid_t uid;
        int r;

        r = sender_uid(m, &uid);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to learn who is calling: %m");
        if (!custody_uid_is_admin(uid)) {
                log_notice("Refused %s over D-Bus to uid %u (%s): not root and not in the admin group %s.", what,
                           (unsigned) uid, sd_bus_message_get_sender(m) ?: "?", custody_admin_group());
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "%s needs root or membership in the group %s.", what, custody_admin_group());
                return 0;
        }
        *ret_uid = uid;
        return 1;
}

/* Maps a custody_*() failure to a D-Bus error with its message. */
static int custody_error(sd_bus_error *error, int r, const char *what, const char *message)
{
        const char *name;

        switch (r) {
        case -ENOENT:
                name = ERROR_NO_SUCH_TOKEN;
                break;
        case -EBUSY:
                name = ERROR_CONFLICT;
                break;
        case -EINVAL:
                name = SD_BUS_ERROR_INVALID_ARGS;
                break;
        case -ENOMEM:
                return -ENOMEM;
        default:
                name = ERROR_STORE_FAILED;
                break;
        }
        /* The message says what failed; kysoctl says what was attempted. */
        return sd_bus_error_setf(error, name, "%s", message ?: strerror(-r));
}

static int method_get_token(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *path = NULL;
        const char *serial;
        TokenView v;
        int r;

        r = sd_bus_message_read(m, "s", &serial);
        if (r < 0)
                return r;
        if (custody_view(serial, false, &v) < 0)
                return sd_bus_error_setf(error, ERROR_NO_SUCH_TOKEN, "No token with serial %s is known.", serial);
        token_view_done(&v);
        r = token_path(serial, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "o", path);
}

/*
 * Walks an a{sv}: entry() reads the variant of each key (and returns -ENOENT for a key it does not know).
 * Unknown keys and values of the wrong type are the caller's mistake: InvalidArgs naming the key.
 */
typedef int (*DictEntry)(sd_bus_message *m, const char *key, void *userdata);

static int read_dict(sd_bus_message *m, const char *what, DictEntry entry, void *userdata, sd_bus_error *error)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = entry(m, key, userdata);
                if (r == -ENOENT)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown %s \"%s\".", what, key);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "The %s \"%s\" has the wrong type.",
                                                 what, key);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int replace_option_string(sd_bus_message *m, char **field)
{
        const char *s;
        int r;

        r = sd_bus_message_read(m, "v", "s", &s);
        if (r < 0)
                return r;
        free(*field);
        *field = s[0] ? strdup(s) : NULL;
        return s[0] && !*field ? -ENOMEM : 0;
}

/* Assign's options, into the record. */
static int assign_option(sd_bus_message *m, const char *key, void *userdata)
{
        CustodyRecord *rec = userdata;
        int b, r;

        if (streq(key, "signed_by"))
                return replace_option_string(m, &rec->decision_signer);
        if (streq(key, "organization"))
                return replace_option_string(m, &rec->organization);
        if (streq(key, "valid_from"))
                return sd_bus_message_read(m, "v", "x", &rec->valid_from);
        if (streq(key, "valid_until"))
                return sd_bus_message_read(m, "v", "x", &rec->valid_until);
        if (streq(key, "pin_change_required")) {
                r = sd_bus_message_read(m, "v", "b", &b);
                rec->pin_change_required = b;
                return r;
        }
        return -ENOENT;
}

/* Handover's options: the PIN flag. */
static int handover_option(sd_bus_message *m, const char *key, void *userdata)
{
        int *pin_change = userdata, b = 0, r;

        if (!streq(key, "pin_change_required"))
                return -ENOENT;
        r = sd_bus_message_read(m, "v", "b", &b);
        *pin_change = !!b;
        return r;
}

static int method_assign(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *message = NULL, *path = NULL;
        const char *serial, *kind, *holder, *decision, *date;
        CustodyRecord rec = {};
        uid_t by;
        int r;

        r = check_admin(m, "Assigning a token", &by, error);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "sssss", &serial, &kind, &holder, &decision, &date);
        if (r < 0)
                return r;
        rec = (CustodyRecord) {
                .serial = (char *) serial,
                .kind = custody_kind_from_string(kind),
                .holder = (char *) holder,
                .decision_ref = (char *) decision,
                .decision_date = (char *) date,
                .valid_from = custody_now(),
                .state = CUSTODY_STATE_ACTIVE,
        };
        r = read_dict(m, "option", assign_option, &rec, error);
        if (r >= 0 && !sd_bus_error_is_set(error))
                r = custody_assign(&rec, by, &message);
        free(rec.organization);
        free(rec.decision_signer);
        if (sd_bus_error_is_set(error))
                return r;
        if (r < 0)
                return custody_error(error, r, "Assign", message);
        r = token_path(serial, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "o", path);
}

static int method_handover(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *message = NULL;
        const char *serial, *to, *minutes;
        int pin_change = -1;
        uid_t by;
        int r;

        r = check_admin(m, "Handing over a token", &by, error);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "sss", &serial, &to, &minutes);
        if (r < 0)
                return r;
        r = read_dict(m, "option", handover_option, &pin_change, error);
        if (r < 0 || sd_bus_error_is_set(error))
                return r;
        r = custody_handover(serial, to, minutes, pin_change, by, &message);
        if (r < 0)
                return custody_error(error, r, "Handover", message);
        return sd_bus_reply_method_return(m, NULL);
}

static int change_state(sd_bus_message *m, CustodyOp op, const char *what, sd_bus_error *error)
{
        _cleanup_(freep) char *message = NULL;
        const char *serial, *reason;
        uid_t by;
        int r;

        r = check_admin(m, what, &by, error);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "ss", &serial, &reason);
        if (r < 0)
                return r;
        r = custody_change_state(serial, op, reason, by, &message);
        if (r < 0)
                return custody_error(error, r, what, message);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_report_lost(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return change_state(m, CUSTODY_OP_REPORT_LOST, "Reporting a token lost", error);
}

static int method_revoke(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return change_state(m, CUSTODY_OP_REVOKE, "Revoking a token", error);
}

static int method_return(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return change_state(m, CUSTODY_OP_RETURN, "Recording a token's return", error);
}

static int method_export(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *json = NULL;
        int r;

        r = custody_export(&json);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to read the registry: %m");
        return sd_bus_reply_method_return(m, "s", json);
}

static int method_import(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *message = NULL;
        const char *json;
        unsigned added = 0;
        uid_t by;
        int r;

        r = check_admin(m, "Importing custody records", &by, error);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "s", &json);
        if (r < 0)
                return r;
        r = custody_import(json, by, &added, &message);
        if (r < 0)
                return custody_error(error, r, "Import", message);
        return sd_bus_reply_method_return(m, "u", added);
}

typedef struct AuditFilterArgs {
        AuditFilter f;
        char *serial, *event;
} AuditFilterArgs;

static int audit_filter_entry(sd_bus_message *m, const char *key, void *userdata)
{
        AuditFilterArgs *a = userdata;
        uint32_t u;
        int r;

        if (streq(key, "since"))
                return sd_bus_message_read(m, "v", "x", &a->f.since);
        if (streq(key, "until"))
                return sd_bus_message_read(m, "v", "x", &a->f.until);
        if (streq(key, "serial"))
                return replace_option_string(m, &a->serial);
        if (streq(key, "event"))
                return replace_option_string(m, &a->event);
        if (streq(key, "uid") || streq(key, "limit")) {
                r = sd_bus_message_read(m, "v", "u", &u);
                if (streq(key, "uid"))
                        a->f.uid = u;
                else
                        a->f.limit = u;
                return r;
        }
        return -ENOENT;
}

static int method_get_audit(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *json = NULL;
        AuditFilterArgs a = { .f = { .uid = -1 } };
        uid_t uid;
        int r;

        r = sender_uid(m, &uid);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to learn who is calling: %m");
        r = read_dict(m, "filter", audit_filter_entry, &a, error);
        if (r >= 0 && !sd_bus_error_is_set(error)) {
                a.f.serial = a.serial;
                a.f.event = a.event;
                /* Who did what with which token is an admin's business; everyone may see their own records. */
                if (!custody_uid_is_admin(uid))
                        a.f.uid = uid;
                r = audit_query_json(&a.f, &json);
                if (r < 0)
                        r = sd_bus_error_set_errnof(error, r, "Failed to read the audit log: %m");
        }
        free(a.serial);
        free(a.event);
        if (r < 0 || sd_bus_error_is_set(error))
                return r;
        return sd_bus_reply_method_return(m, "s", json);
}

static int method_verify_audit(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        AuditVerdict v = {};
        uid_t by;
        int r;

        r = check_admin(m, "Verifying the audit log", &by, error);
        if (r <= 0)
                return r;
        r = audit_verify(&v);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to read the audit log: %m");
        if (!v.intact)
                log_warning("Audit log verification (asked by uid %u): broken at record %lld: %s.", (unsigned) by,
                            (long long) v.first_bad_id, v.reason);
        return sd_bus_reply_method_return(m, "btxs", v.intact, v.checked, v.first_bad_id, v.reason);
}

static int method_get_report(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(freep) char *json = NULL;
        int64_t since, until;
        uid_t by;
        int r;

        r = check_admin(m, "The subscriber report", &by, error);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "xx", &since, &until);
        if (r < 0)
                return r;
        if (since < 0 || until < 0 || (until > 0 && until <= since))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "The period must end after it begins.");
        r = report_json(since, until, &json);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to make the report: %m");
        return sd_bus_reply_method_return(m, "s", json);
}

#define MANAGER_PROPERTY(name, sig, flags) SD_BUS_PROPERTY(name, sig, manager_property, 0, flags)

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        MANAGER_PROPERTY("Version", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("Backends", "a(sss)", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("UnknownTokens", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("AdminGroup", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("Tokens", "ao", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        MANAGER_PROPERTY("UsbDevices", "a(qqsss)", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        MANAGER_PROPERTY("PinMaxAgeDays", "u", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("PinWarnDays", "u", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("PinMode", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        MANAGER_PROPERTY("PinMinLength", "u", SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_NAMES("GetToken", "s", SD_BUS_PARAM(serial), "o", SD_BUS_PARAM(token), method_get_token,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Assign", "sssssa{sv}",
                                 SD_BUS_PARAM(serial) SD_BUS_PARAM(kind) SD_BUS_PARAM(holder) SD_BUS_PARAM(decision)
                                         SD_BUS_PARAM(decision_date) SD_BUS_PARAM(options),
                                 "o", SD_BUS_PARAM(token), method_assign, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Handover", "sssa{sv}",
                                 SD_BUS_PARAM(serial) SD_BUS_PARAM(to) SD_BUS_PARAM(minutes) SD_BUS_PARAM(options),
                                 NULL, , method_handover, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ReportLost", "ss", SD_BUS_PARAM(serial) SD_BUS_PARAM(reason), NULL, ,
                                 method_report_lost, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Revoke", "ss", SD_BUS_PARAM(serial) SD_BUS_PARAM(reason), NULL, , method_revoke,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Return", "ss", SD_BUS_PARAM(serial) SD_BUS_PARAM(reason), NULL, , method_return,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Export", NULL, , "s", SD_BUS_PARAM(json), method_export,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Import", "s", SD_BUS_PARAM(json), "u", SD_BUS_PARAM(added), method_import,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetAudit", "a{sv}", SD_BUS_PARAM(filter), "s", SD_BUS_PARAM(json),
                                 method_get_audit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("VerifyAudit", NULL, , "btxs",
                                 SD_BUS_PARAM(intact) SD_BUS_PARAM(checked) SD_BUS_PARAM(first_bad_id)
                                         SD_BUS_PARAM(reason),
                                 method_verify_audit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetReport", "xx", SD_BUS_PARAM(since) SD_BUS_PARAM(until), "s", SD_BUS_PARAM(json),
                                 method_get_report, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("TokenInserted", "oss", SD_BUS_PARAM(token) SD_BUS_PARAM(serial) SD_BUS_PARAM(label),
                                 0),
        SD_BUS_SIGNAL_WITH_NAMES("TokenRemoved", "os", SD_BUS_PARAM(token) SD_BUS_PARAM(serial), 0),
        SD_BUS_SIGNAL_WITH_NAMES("PinExpiring", "osx", SD_BUS_PARAM(token) SD_BUS_PARAM(serial) SD_BUS_PARAM(due_at), 0),
        SD_BUS_SIGNAL_WITH_NAMES("PinExpired", "osx", SD_BUS_PARAM(token) SD_BUS_PARAM(serial) SD_BUS_PARAM(due_at), 0),
        SD_BUS_SIGNAL_WITH_NAMES("PinLocked", "os", SD_BUS_PARAM(token) SD_BUS_PARAM(serial), 0),
        SD_BUS_SIGNAL_WITH_NAMES("UsbDeviceAdded", "qqsss",
                                 SD_BUS_PARAM(vendor) SD_BUS_PARAM(product) SD_BUS_PARAM(name) SD_BUS_PARAM(serial)
                                         SD_BUS_PARAM(path),
                                 0),
        SD_BUS_SIGNAL_WITH_NAMES("UsbDeviceRemoved", "qqsss",
                                 SD_BUS_PARAM(vendor) SD_BUS_PARAM(product) SD_BUS_PARAM(name) SD_BUS_PARAM(serial)
                                         SD_BUS_PARAM(path),
                                 0),
        SD_BUS_SIGNAL_WITH_NAMES("AccessDenied", "osuuss",
                                 SD_BUS_PARAM(token) SD_BUS_PARAM(serial) SD_BUS_PARAM(uid) SD_BUS_PARAM(pid)
                                         SD_BUS_PARAM(operation) SD_BUS_PARAM(reason),
                                 0),
        SD_BUS_VTABLE_END,
};

/* ---- events from other threads ---- */

static void emit(const BusEvent *e)
{
        _cleanup_(freep) char *path = NULL;
        int r = 0;

        if (!bus)
                return;
        if (e->serial[0] && token_path(e->serial, &path) < 0)
                return;

        switch (e->type) {
        case BUS_EVENT_ADDED:
                r = sd_bus_emit_object_added(bus, path);
                if (r >= 0)
                        r = sd_bus_emit_properties_changed(bus, MANAGER_PATH, MANAGER_IFACE, "Tokens", NULL);
                break;
        case BUS_EVENT_INSERTED:
                r = sd_bus_emit_signal(bus, MANAGER_PATH, MANAGER_IFACE, "TokenInserted", "oss", path, e->serial,
                                       e->label);
                if (r >= 0)
                        r = sd_bus_emit_properties_changed_strv(bus, path, TOKEN_IFACE, NULL);
                break;
        case BUS_EVENT_REMOVED:
                r = sd_bus_emit_signal(bus, MANAGER_PATH, MANAGER_IFACE, "TokenRemoved", "os", path, e->serial);
                if (r >= 0)
                        r = sd_bus_emit_properties_changed_strv(bus, path, TOKEN_IFACE, NULL);
                break;
        case BUS_EVENT_CHANGED:
                r = sd_bus_emit_properties_changed_strv(bus, path, TOKEN_IFACE, NULL);
                break;
        case BUS_EVENT_PIN_EXPIRING:
        case BUS_EVENT_PIN_EXPIRED:
                r = sd_bus_emit_signal(bus, MANAGER_PATH, MANAGER_IFACE,
                                       e->type == BUS_EVENT_PIN_EXPIRING ? "PinExpiring" : "PinExpired", "osx", path,
                                       e->serial, e->due_at);
                break;
        case BUS_EVENT_PIN_LOCKED:
                r = sd_bus_emit_signal(bus, MANAGER_PATH, MANAGER_IFACE, "PinLocked", "os", path, e->serial);
                break;
        case BUS_EVENT_USB_ADDED:
        case BUS_EVENT_USB_REMOVED:
                r = sd_bus_emit_signal(bus, MANAGER_PATH, MANAGER_IFACE,
                                       e->type == BUS_EVENT_USB_ADDED ? "UsbDeviceAdded" : "UsbDeviceRemoved",
                                       "qqsss", e->usb.vendor, e->usb.product, e->usb.name, e->usb.serial,
                                       e->usb.path);
                if (r >= 0)
                        r = sd_bus_emit_properties_changed(bus, MANAGER_PATH, MANAGER_IFACE, "UsbDevices", NULL);
                break;
        case BUS_EVENT_DENIED:
                r = sd_bus_emit_signal(bus, MANAGER_PATH, MANAGER_IFACE, "AccessDenied", "osuuss",
                                       path ?: MANAGER_PATH, e->serial, (uint32_t) e->uid, (uint32_t) e->pid,
                                       e->operation, e->reason);
                break;
        }
        if (r < 0)
                log_debug_errno(r, "Failed to emit a D-Bus event for token %s: %m", e->serial);
}

/* Takes every queued event, emitting each (emit) or only freeing it; close stops the queue for good. */
static void queue_drain(bool emit_them, bool close)
{
        EvNode *list = evqueue_take(&queue, close);

        while (list) {
                BusEvent *e = (BusEvent *) list;

                list = list->next;
                if (emit_them)
                        emit(e);
                bus_event_free(e);
        }
}

static int on_queue(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        queue_drain(true, false);
        return 0;
}

/* ---- the connection ---- */

static int connect_bus(void);

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata)
{
        reconnect_source = sd_event_source_unref(reconnect_source);
        (void) connect_bus();
        return 0;
}

static void schedule_reconnect(void)
{
        int r;

        if (reconnect_source)
                return;
        r = sd_event_add_time_relative(bus_event, &reconnect_source, CLOCK_MONOTONIC, RECONNECT_USEC, 0,
                                       on_reconnect, NULL);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule a D-Bus reconnection: %m");
}

static void drop_bus(void)
{
        if (!bus)
                return;
        (void) sd_bus_detach_event(bus);
        bus = sd_bus_flush_close_unref(bus);
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        log_warning("Lost the D-Bus connection; PKCS#11 clients are still served. Reconnecting every %u s.",
                    RECONNECT_USEC / 1000000U);
        warned_unreachable = true;
        drop_bus();
        schedule_reconnect();
        return 0;
}

static int connect_bus(void)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *b = NULL;
        const char *step;
        int r;

        step = "connect";
        r = bus_mode == BUS_SESSION ? sd_bus_open_user(&b) : sd_bus_open_system(&b);
        if (r < 0)
                goto fail;
        (void) sd_bus_set_exit_on_disconnect(b, false);
        step = "register objects";
        r = sd_bus_add_object_manager(b, NULL, MANAGER_PATH);
        if (r >= 0)
                r = sd_bus_add_object_vtable(b, NULL, MANAGER_PATH, MANAGER_IFACE, manager_vtable, NULL);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(b, NULL, TOKEN_PREFIX, TOKEN_IFACE, token_vtable, token_find, NULL);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(b, NULL, TOKEN_PREFIX, token_enumerate, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(b, NULL, NULL, "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                        "Disconnected", on_disconnected, NULL);
        if (r < 0)
                goto fail;
        step = "take the name " BUS_NAME;
        r = sd_bus_request_name(b, BUS_NAME, 0);
        if (r < 0)
                goto fail;
        step = "attach to the event loop";
        r = sd_bus_attach_event(b, bus_event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;

        bus = TAKE_PTR(b);
        log_info("On the %s bus as %s.", bus_mode == BUS_SESSION ? "session" : "system", BUS_NAME);
        warned_unreachable = false;
        return 0;

fail:
        if (!warned_unreachable)
                log_warning_errno(r, "D-Bus: failed to %s (%m); serving PKCS#11 without it, retrying every %u s.",
                                  step, RECONNECT_USEC / 1000000U);
        else
                log_debug_errno(r, "D-Bus: failed to %s: %m", step);
        warned_unreachable = true;
        schedule_reconnect();
        return r;
}

static int on_sweep(sd_event_source *s, uint64_t usec, void *userdata)
{
        custody_pin_sweep();
        (void) sd_event_source_set_time_relative(s, clock_is_test() ? PIN_SWEEP_TEST_USEC : PIN_SWEEP_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

int bus_start(sd_event *event, BusMode mode)
{
        int r;

        bus_mode = mode;
        if (mode == BUS_NONE) {
                log_info("D-Bus disabled (--bus none).");
                return 0;
        }
        bus_event = sd_event_ref(event);
        r = evqueue_init(&queue, QUEUE_MAX);
        if (r < 0)
                return log_error_errno(r, "Failed to create the D-Bus event queue: %m");
        r = sd_event_add_io(event, &queue_source, queue.fd, EPOLLIN, on_queue, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the D-Bus event queue: %m");
        (void) connect_bus();
        /* The first look right away: a token overdue at start-up is announced then. */
        r = sd_event_add_time_relative(event, &sweep_source, CLOCK_MONOTONIC, 0, 0, on_sweep, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to schedule PIN age checks: %m");
        return 0;
}

void bus_stop(void)
{
        queue_drain(false, true);
        drop_bus();
        reconnect_source = sd_event_source_disable_unref(reconnect_source);
        sweep_source = sd_event_source_disable_unref(sweep_source);
        queue_source = sd_event_source_disable_unref(queue_source);
        evqueue_done(&queue);
        bus_event = sd_event_unref(bus_event);
}
